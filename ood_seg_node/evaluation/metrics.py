# Copyright 2026 The ood_seg_node developers. Licensed under the Apache License, Version 2.0.
"""Streaming pixel-level OOD metrics (AP, FPR95, AUROC) and a streaming confusion matrix for mIoU.

Why this module exists: the benchmarks (Fishyscapes, SegmentMeIfYouCan) define AP, AUROC and FPR at 95 % TPR
over *all* pixels of a dataset pooled together, and their reference code sorts every pixel score at once --
gigabytes for a real dataset, and impossible for an evaluator that sees a bag frame by frame. Here each
frame's valid pixels are counted into a fixed-size histogram per class (inliers, anomalies), so memory is
constant, and the metrics stay within ~1e-4 of the exact (scikit-learn) values.

The histogram grid is dyadic: every bin is ``[k * 2**w, (k + 1) * 2**w)`` for integers k, w.

* Linear bins of width ``2**exp`` cover most of the range.
* Scores crowd where they saturate: near 0 (1 - max softmax, entropy, float32 probabilities underflowing)
  and near +-1 (probabilities, negated probabilities). Within ``2**(exp + 8)`` of 0, and of +-1 while the
  linear width is at most ``2**-9``, each octave of the distance ``[2**j, 2**(j + 1))`` gets 256 bins, down
  to ``2**(exp - 140)`` -- the resolution a linear grid over the whole range would lose there. (Smaller
  windows than the default 2**20 slots use fewer bins per octave and fewer octaves.)
* Each bin has two slots: values exactly on its lower edge, and the rest. Saturated values (0, +-1),
  integers and constant maps therefore always sit alone in a slot, as exact ties.

A window of ``bins`` consecutive slots is stored. The grid level ``exp`` is a function of the overall score
range only: the finest level on which that range spans fewer than ``bins`` slots. A frame (or a merged
shard) that widens the range may raise the level -- every bin of the old grid lies inside one bin of the new
(dyadic bins nest), so counts move over exactly -- or only shift the window. Hence ``merge`` of shards with
different ranges is exact, and the metrics do not depend on the order of frames or on the sharding.

Each slot also remembers whether all its pixels share one exact score. Such slots are true ties and give
the metrics exactly; in a slot holding several distinct scores, the step-wise AP and the FPR95 point are
taken as if its positives and negatives were evenly interleaved.
"""

from __future__ import annotations

import base64
import math
import zlib
from collections.abc import Sequence
from typing import Any

import numpy as np

from ood_seg_node.cityscapes import CLASS_NAMES, IGNORE_INDEX, OOD_ANOMALY, OOD_IGNORE, OOD_INLIER

__all__ = ["ConfusionMatrix", "EvaluationError", "StreamingOODMetrics"]

_STATE_FORMAT = "ood_seg_node.StreamingOODMetrics"
_CM_STATE_FORMAT = "ood_seg_node.ConfusionMatrix"
_MAX_SUB_BITS = 8  # up to 2**8 bins per octave in the logarithmic parts of the grid
_MAX_OCTAVES = 140  # up to 140 octaves below the linear part (float32 reaches 2**-149)
# Bounds on the grid exponents; ldexp by these stays within normal float64 numbers.
_EXP_MIN = -1000
_EXP_MAX = 1000
_FLOAT64_UNIT_SPACING = -52  # log2 of the float64 spacing just above 1: finer bins around +-1 stay empty


class EvaluationError(ValueError):
    """Bad input to an evaluation accumulator (shape, label values, non-finite scores, corrupt state)."""
_SLOT_CHUNK = 1 << 16  # values per slot computation (float64 + int64 temporaries stay in the L2 cache)


def _check_pair(score: np.ndarray, label: np.ndarray, what: str) -> None:
    if score.shape != label.shape:
        raise EvaluationError(f"{what}: score/prediction shape {score.shape} differs from label shape "
                              f"{label.shape}")


def _label_histogram(label: np.ndarray) -> np.ndarray:
    """Count each OOD label value (0/1/255); refuse anything else with the offending values named."""
    if label.dtype == np.bool_:
        label = label.view(np.uint8)
    if not np.issubdtype(label.dtype, np.integer):
        raise EvaluationError(f"OOD label must be an integer array (0 inlier, 1 anomaly, 255 ignore), "
                              f"got dtype {label.dtype}")
    if label.dtype != np.uint8 and label.size and (label.min() < 0 or label.max() > 255):
        raise EvaluationError(f"OOD label values must be 0, 1 or 255, got range [{label.min()}, "
                              f"{label.max()}]")
    counts = np.zeros(256, dtype=np.int64)
    for value in (OOD_INLIER, OOD_ANOMALY, OOD_IGNORE):  # three byte compares beat a bincount's int64 copy
        counts[value] = np.count_nonzero(label == value)
    if counts.sum() == label.size:
        return counts
    counts = np.bincount(label.ravel().astype(np.uint8, copy=False), minlength=256)
    allowed = np.zeros(256, dtype=bool)
    allowed[[OOD_INLIER, OOD_ANOMALY, OOD_IGNORE]] = True
    if counts[~allowed].any():
        bad = np.flatnonzero(counts * ~allowed)[:8].tolist()
        raise EvaluationError(f"OOD label values must be 0 (inlier), 1 (anomaly) or 255 (ignore); "
                              f"found {bad}")
    return counts


def _encode(array: np.ndarray, dtype: str) -> str:
    """Pack a numeric array into a short JSON-safe string (zlib + base64, little endian)."""
    return base64.b64encode(zlib.compress(array.astype(dtype).tobytes(), 6)).decode("ascii")


def _decode(text: str, dtype: str, size: int, what: str) -> np.ndarray:
    try:
        raw = zlib.decompress(base64.b64decode(text.encode("ascii"), validate=True))
    except (ValueError, zlib.error) as exc:
        raise EvaluationError(f"{what}: corrupt packed array ({exc})") from None
    arr = np.frombuffer(raw, dtype=dtype)
    if arr.size != size:
        raise EvaluationError(f"{what}: packed array has {arr.size} entries, expected {size}")
    return arr.astype(np.dtype(dtype).newbyteorder("="))


def _local_slot(d: np.ndarray, exp: int, jmin: int, sub: int) -> np.ndarray:
    """Slot number of each value ``d`` on the zero-centred grid (exp, jmin, sub); monotone in d.

    Bin widths: ``2**exp`` for ``|d| >= 2**(exp + sub)``; ``2**(j - sub)`` in the octave of ``|d|`` between
    ``2**jmin`` and there; ``2**(jmin - sub)`` below ``2**jmin``. Bin 0 starts at 0; negative values mirror
    positive ones, all bins half-open ``[lower, upper)``. Bin ``i`` has two slots: ``2i`` for values exactly
    on its lower edge (0, 1, -1, integers, ... are always exact ties this way) and ``2i + 1`` for the rest.

    With half-open bins on both sides the mirror is exact on slots: ``slot(-u) = -slot(u)`` (a negative
    value on a positive edge's mirror is the lower edge of the next bin down). In the octaves the bin is
    read off the float64 bits (exponent and the top ``sub`` mantissa bits); elsewhere it is a floor. Each
    part is computed for every value and blended arithmetically: masked numpy operations cost several
    plain passes each.
    """
    u = np.abs(d)
    bits = u.view(np.int64)
    slot = bits >> (52 - sub)  # biased exponent and top mantissa bits: the octave bin, up to a constant
    slot -= (jmin + 1022) << sub
    slot <<= 1
    slot += (bits & ((1 << (52 - sub)) - 1)) != 0
    linear = u >= math.ldexp(1.0, exp + sub)
    if linear.any():  # width 2**exp after all the octave bins
        slot += linear * (_floor_slot(u, math.ldexp(1.0, -exp), (exp + sub - jmin) << sub) - slot)
    below = u < math.ldexp(1.0, jmin)
    if below.any():  # width 2**(jmin - sub) from 0 (clipped first: the scale overflows elsewhere)
        clipped = np.minimum(u, math.ldexp(1.0, jmin))
        slot += below * (_floor_slot(clipped, math.ldexp(1.0, sub - jmin), 0) - slot)
    negative = d < 0
    if negative.any():
        slot -= 2 * negative * slot
    return slot


def _floor_slot(u: np.ndarray, scale: float, first_bin: int) -> np.ndarray:
    """Slots of evenly spaced bins ``first_bin + floor(u * scale)`` (scale a power of two: exact)."""
    scaled = u * scale
    whole = np.floor(scaled)
    slot = whole.astype(np.int64)
    slot += first_bin
    slot <<= 1
    slot += whole != scaled
    return slot


def _local_edge(index: np.ndarray, exp: int, jmin: np.ndarray | int, sub: int) -> np.ndarray:
    """Lower edge (float64, exact) of each bin number on the zero-centred grid (exp, jmin, sub)."""
    negative = index < 0
    # Negative bin -i-1 is the mirror of positive bin i, so its lower edge is minus bin i's upper edge.
    i = np.where(negative, -index, index)
    block = i >> sub
    octave = np.where(block == 0, jmin, np.minimum(jmin + block - 1, exp + sub))
    edge = np.ldexp((i - ((octave - jmin) << sub)).astype(np.float64), (octave - sub).astype(np.int32))
    return np.where(negative, -edge, edge)


class _Layout:
    """Where every score goes on grid level ``exp``: zero-centred octaves, plus octaves around -1 and +1.

    The level fixes everything: linear width ``2**exp``, ``2**sub`` bins per octave and octaves down to
    ``jmin = exp - octaves`` (``sub`` and ``octaves`` depend only on the window size), so a higher level is
    coarser everywhere and every bin of a lower level lies inside one bin of a higher level.

    Scores saturate at 0 and +-1 (probabilities, 1 - max softmax, negated probabilities), so while the
    linear width is at most ``2**-(sub + 1)``, values within ``2**(exp + sub)`` of -1 or +1 are binned by
    octaves of their distance to it, exactly like values near 0 (zones split at -1/2 and +1/2).
    """

    def __init__(self, exp: int, sub: int, octaves: int) -> None:
        self.exp, self.sub = exp, sub
        self.jmin = jmin = max(exp - octaves, _EXP_MIN)
        # Only while the anchors' octaves fit inside their zones (|x - a| < 1/2), and while +-1/2 is still an
        # exact integer number of linear bins (the magnitude bound that keeps bin numbers exact).
        self.anchored = -52 <= exp <= -1 - sub
        # Around +-1, octaves finer than the float64 spacing there would stay empty.
        self.jmin_unit = min(max(jmin, _FLOAT64_UNIT_SPACING + sub), exp + sub)
        self.low = self.high = 0
        self.offset_low = self.offset_high = 0
        if self.anchored:
            # Slots of -1/2 and +1/2 on the zero-centred grid: the first slots of the middle and upper zones.
            self.low = self._scalar(_local_slot, -0.5, jmin)
            self.high = self._scalar(_local_slot, 0.5, jmin)
            self.offset_low = self.low - self._scalar(_local_slot, 0.5, self.jmin_unit)
            self.offset_high = self.high - self._scalar(_local_slot, -0.5, self.jmin_unit)
        self._linear_shortcut()

    def _scalar(self, fn: Any, value: float, jmin: int) -> int:
        return int(fn(np.array([value]), self.exp, jmin, self.sub)[0])

    def _linear_shortcut(self) -> None:
        """Constants for :meth:`slot`'s few-pass formula outside the logarithmic zones.

        Away from the anchors (0, and +-1 when anchored) every bin is ``2**exp`` wide, so a slot there is
        ``2 * (floor(x / 2**exp) + c) + interior`` with one constant ``c`` per stretch between the anchors and
        the zone splits at +-1/2. Each ``c`` is read off the exact slot of one point in its stretch, so the
        shortcut agrees with :meth:`exact_slot` by construction; values within ``2**(exp + sub)`` of an
        anchor (the logarithmic zones, edges included) still take :meth:`exact_slot`.
        """
        self.zone_radius = math.ldexp(1.0, self.exp + self.sub)
        self.inverse_width = math.ldexp(1.0, -self.exp)
        anchors = (-1.0, 0.0, 1.0) if self.anchored else (0.0,)
        splits = sorted({*anchors, *((-0.5, 0.5) if self.anchored else ())})
        outer = 2 * self.zone_radius
        points = [splits[0] - outer, *((a + b) / 2 for a, b in zip(splits, splits[1:])), splits[-1] + outer]
        bins = self.exact_slot(np.array(points)) >> 1
        constants = (bins - np.floor(np.array(points) * self.inverse_width)).astype(np.float64)
        self.linear_base = float(constants[0])
        self.linear_steps = [(split, float(step)) for split, step in zip(splits, np.diff(constants)) if step]

    def slot(self, x: np.ndarray) -> np.ndarray:
        """Absolute slot (int64) of each float64 score; monotone.

        Same as :meth:`exact_slot`, in fewer passes when most scores lie outside the logarithmic zones.
        """
        distance = np.abs(x)
        near = distance <= self.zone_radius
        if self.anchored:
            distance -= 1.0
            np.abs(distance, out=distance)
            near |= distance <= self.zone_radius
        index = np.flatnonzero(near)
        if 4 * index.size > x.size:  # crowded near the anchors (probabilities): the shortcut would not pay
            return self.exact_slot(x)
        scaled = x * self.inverse_width  # exact: a power-of-two scaling, |scaled| < 2**53 (see _finest_exp)
        whole = np.floor(scaled)
        interior = whole != scaled
        whole += self.linear_base
        for split, step in self.linear_steps:
            whole += (x >= split) * step
        slot = whole.astype(np.int64)
        slot <<= 1
        slot += interior
        if index.size:
            slot[index] = self.exact_slot(x[index])
        return slot

    def exact_slot(self, x: np.ndarray) -> np.ndarray:
        """Absolute slot (int64) of each float64 score, by the grid's definition; monotone."""
        if not self.anchored:
            return _local_slot(x, self.exp, self.jmin, self.sub)
        # Zone number 0, 1, 2 for anchors -1, 0, +1 (split at -1/2 and +1/2).
        zone = (x >= -0.5).view(np.int8) + (x >= 0.5).view(np.int8)
        counts = np.bincount(zone.view(np.uint8), minlength=3)
        # the most common zone over the whole array (scalar parameters are cheaper), the others on their pixels
        main = int(np.argmax(counts))
        slot = self._zone_slot(x, main)
        for other in {0, 1, 2} - {main}:
            if counts[other]:
                index = np.flatnonzero(zone == other)
                slot[index] = self._zone_slot(x[index], other)
        return slot

    def _zone_slot(self, x: np.ndarray, zone: int) -> np.ndarray:
        """Absolute slots of scores in one zone (0, 1, 2: around -1, 0, +1) of an anchored layout."""
        if zone == 1:
            return _local_slot(x, self.exp, self.jmin, self.sub)
        # x - anchor is exact: |x| < 2**(exp + 53) keeps every score a multiple of the 2**exp grid spacing.
        slot = _local_slot(x + (1.0 if zone == 0 else -1.0), self.exp, self.jmin_unit, self.sub)
        slot += self.offset_low if zone == 0 else self.offset_high
        return slot

    def lower(self, slot: np.ndarray) -> np.ndarray:
        """Lower edge (float64, exact) of the bin holding each slot."""
        slot = np.asarray(slot, dtype=np.int64)
        if not self.anchored:
            return _local_edge(slot >> 1, self.exp, self.jmin, self.sub)
        zone = (slot >= self.high).astype(np.int8) - (slot < self.low)
        local = slot - np.where(zone == 0, 0, np.where(zone > 0, self.offset_high, self.offset_low))
        edge = _local_edge(local >> 1, self.exp, np.where(zone == 0, self.jmin, self.jmin_unit), self.sub)
        return edge + zone

    def threshold(self, slot: np.ndarray, float32: bool) -> np.ndarray:
        """Threshold t such that ``score >= t`` holds exactly for the scores in this slot and above.

        An edge slot's threshold is its bin's lower edge; an interior slot's the next number above the edge.
        With ``float32`` (every score seen was a float32 number) that is the next float32 number, so a
        float32 score map compared with t (numpy casts t to float32) selects the same pixels.
        """
        slot = np.asarray(slot, dtype=np.int64)
        edge = self.lower(slot)
        above = np.nextafter(edge, np.inf)
        if float32:
            edge32 = edge.astype(np.float32)
            up32 = np.nextafter(edge32, np.float32(np.inf)).astype(np.float64)
            above = np.where(edge32 == edge, up32, above)
        return np.where(slot & 1, above, edge)

    def scalar_slot(self, value: float) -> int:
        return int(self.slot(np.array([value], dtype=np.float64))[0])

    def scalar_lower(self, slot: int) -> float:
        """Lower edge of the bin holding a slot: a value inside or at the bottom of every slot of that bin."""
        return float(self.lower(np.array([slot], dtype=np.int64))[0])


def _combine_values(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Merge per-bin 'single value' markers: NaN = empty, +inf = several distinct values."""
    return np.where(np.isnan(a), b, np.where(np.isnan(b) | (a == b), a, np.inf))


class _Grid:
    """One histogram window: counts per class, per-bin value marker, and the grid it lives on."""

    def __init__(self, bins: int) -> None:
        self.bins = bins
        self.hist = np.zeros((2, bins), dtype=np.int64)  # per slot: row 0 inlier, row 1 anomaly pixels
        self.value = np.full(bins, np.nan)  # NaN empty, the slot's only score, or +inf when it holds several
        self.mixed = np.zeros(bins, dtype=bool)  # value == +inf, compact (fast to look up per pixel)
        self.layout: _Layout | None = None  # None until the first valid pixel
        self.start: int = 0  # absolute number of the window's first slot
        self.lo: int = 0  # absolute numbers of the lowest and highest occupied slots
        self.hi: int = 0
        self.vmin: float = 0.0  # lowest and highest score seen (they alone choose the grid level)
        self.vmax: float = 0.0

    def set_values(self, value: np.ndarray) -> None:
        self.value = value
        self.mixed = np.isinf(value)

    def remapped(self, layout: _Layout, start: int) -> tuple[np.ndarray, np.ndarray]:
        """Counts and value markers moved onto a coarser-or-equal layout (exact: dyadic bins nest)."""
        hist = np.zeros((2, self.bins), dtype=np.int64)
        value = np.full(self.bins, np.nan)
        nz = np.flatnonzero(self.hist.any(axis=0))
        if nz.size == 0:
            return hist, value
        slots = nz + np.int64(self.start)
        # A bin's lower edge lands in the new bin containing the whole old bin; an interior slot stays
        # interior there, an edge slot stays an edge slot only if its edge is also the new bin's edge.
        target = layout.slot(self.layout.lower(slots)) | (slots & 1)
        target -= np.int64(start)
        if target[0] < 0 or target[-1] >= self.bins:
            raise AssertionError("remap target outside the window")
        first = np.flatnonzero(np.r_[True, target[1:] != target[:-1]])
        hist[:, target[first]] = np.add.reduceat(self.hist[:, nz], first, axis=1)
        low = np.minimum.reduceat(self.value[nz], first)
        high = np.maximum.reduceat(self.value[nz], first)
        value[target[first]] = np.where(low == high, low, np.inf)
        return hist, value


class StreamingOODMetrics:
    """Pooled pixel-level AP, FPR95 and AUROC over a stream of frames in constant memory.

    Conventions (those of the Fishyscapes and SegmentMeIfYouCan reference code):

    * higher score = more anomalous; positives are label 1, negatives label 0, label 255 is skipped;
    * ``ap`` is the step-wise average precision of scikit-learn, ``sum_n (R_n - R_{n-1}) P_n``, over
      thresholds from high to low (no interpolation);
    * ``auroc`` is the area under the ROC curve with ties counted one half (trapezoid), as
      ``sklearn.metrics.roc_auc_score``;
    * ``fpr95`` is the smallest FPR among all thresholds with TPR >= 0.95, i.e.
      ``fpr[searchsorted(tpr, 0.95)]`` on the *full* ROC curve (``roc_curve(..., drop_intermediate=False)``).
      The Fishyscapes benchmark (``bdlb``) and the SMIYC ``road_anomaly_benchmark`` both take this point;
      sklearn's default curve can drop it when it lies inside a straight segment, which only happens with
      tied scores.

    Scores are histogrammed (see the module docstring); slots whose pixels all share one score are exact
    ties, so integer scores, saturated probabilities and constant maps give the exact values, and other
    scores agree with the exact values to well below 1e-3 (about 1e-4 or better in our stress tests:
    float32/float64 sigmoids, 1 - softmax, logits, energies, over 2**20 slots).

    Non-finite scores (NaN, +-Inf) on non-ignored pixels are refused with :class:`EvaluationError`; pixels
    labelled 255 are skipped before that check, so whatever a method writes there does not matter.

    Args:
        bins: histogram slots per class (a power of two >= 4096). Memory is ``25 * bins`` bytes, 25 MiB at
            the default 2**20; fewer slots are coarser (and a little less accurate).
    """

    def __init__(self, bins: int = 1 << 20) -> None:
        if bins < 4096 or bins & (bins - 1):
            raise EvaluationError(f"bins must be a power of two >= 4096, got {bins}")
        self.bins: int = int(bins)
        # Octave resolution shrinks with the window so the logarithmic parts never crowd out the rest:
        # 2**20 slots -> 256 bins per octave over 140 octaves, 2**16 -> 64 x 122, 2**12 -> 16 x 28.
        self._sub: int = min(_MAX_SUB_BITS, (self.bins.bit_length() - 1 - 4) // 2)
        self._octaves: int = min(_MAX_OCTAVES, self.bins // (4 << (self._sub + 1)) - self._sub)
        self.frames: int = 0
        self.pixels_ignored: int = 0
        self._grid: _Grid = _Grid(self.bins)
        self._float32: bool = True  # every score so far exactly a float32 number (picks threshold spacing)

    # ------------------------------------------------------------------ accumulation
    def update(self, score: np.ndarray, label: np.ndarray) -> None:
        """Add one frame.

        Args:
            score: HxW anomaly score map (any float or integer dtype, any range), higher = more anomalous.
            label: HxW uint8 ground truth, 0 inlier, 1 anomaly, 255 ignore.

        Raises:
            EvaluationError: shapes differ, label values outside {0, 1, 255}, or a non-ignored score is
                NaN or infinite.
        """
        score = np.asarray(score)
        label = np.asarray(label)
        _check_pair(score, label, "StreamingOODMetrics.update")
        if not (np.issubdtype(score.dtype, np.floating) or np.issubdtype(score.dtype, np.integer)
                or score.dtype == np.bool_):
            raise EvaluationError(f"score map must be numeric, got dtype {score.dtype}")
        counts = _label_histogram(label)
        if counts[OOD_INLIER] + counts[OOD_ANOMALY] > 0:
            if counts[OOD_IGNORE]:
                valid = label != OOD_IGNORE
                values, classes = score[valid], label[valid]
            else:
                values, classes = score.ravel(), label.ravel()
            if self._float32 and values.dtype not in (np.float32, np.float16, np.uint8, np.int8, np.int16,
                                                      np.uint16, np.bool_):
                self._float32 = bool(np.all(values.astype(np.float32).astype(np.float64) == values))
            self._add(values.astype(np.float64, copy=False), classes)
        self.frames += 1
        self.pixels_ignored += int(counts[OOD_IGNORE])

    def _add(self, values: np.ndarray, classes: np.ndarray) -> None:
        vmin, vmax = float(values.min()), float(values.max())
        if not (math.isfinite(vmin) and math.isfinite(vmax)):
            bad = int(np.count_nonzero(~np.isfinite(values)))
            kind = "NaN" if np.isnan(values).any() else "infinite"
            raise EvaluationError(f"score map has {bad} non-finite ({kind}) values on non-ignored pixels; "
                                  "scores must be finite")
        grid = self._grid
        self._cover(vmin, vmax)
        # in cache-sized pieces: the slot arithmetic is a dozen passes over the values, 2.3x faster this way
        rel = np.concatenate([grid.layout.slot(values[i:i + _SLOT_CHUNK]) for i in range(0, values.size, _SLOT_CHUNK)])
        rel -= grid.start
        key = classes.astype(np.int64) * self.bins
        key += rel
        # unbuffered in-place counting: no 2 x bins temporary per frame, unlike bincount
        np.add.at(grid.hist.reshape(-1), key, 1)
        # Track whether each slot still holds a single exact value (a true tie). Slots already known to hold
        # several need nothing, which after a few frames of continuous scores is nearly all of them.
        open_ = np.flatnonzero(~grid.mixed[rel])
        if open_.size:
            rel, values = rel[open_], values[open_]
            marker = grid.value[rel]
            fresh = np.isnan(marker)
            if fresh.any():
                grid.value[rel[fresh]] = values[fresh]  # any one of them: duplicates are caught just below
                marker[fresh] = grid.value[rel[fresh]]
            differs = np.flatnonzero(marker != values)
            if differs.size:
                grid.value[rel[differs]] = np.inf
                grid.mixed[rel[differs]] = True

    def merge(self, other: StreamingOODMetrics) -> StreamingOODMetrics:
        """Add another accumulator's counts to this one; returns self.

        Exact, whatever either range is: the result is the same as one accumulator fed all frames of both.
        """
        if not isinstance(other, StreamingOODMetrics):
            raise EvaluationError(f"can only merge StreamingOODMetrics, got {type(other).__name__}")
        if other.bins != self.bins:
            raise EvaluationError(f"cannot merge accumulators with {self.bins} and {other.bins} bins")
        theirs = other._grid
        if theirs.layout is not None:
            self._cover(theirs.vmin, theirs.vmax)
            mine = self._grid
            hist, value = theirs.remapped(mine.layout, mine.start)
            mine.set_values(_combine_values(mine.value, value))
            mine.hist += hist
        self.frames += other.frames
        self.pixels_ignored += other.pixels_ignored
        self._float32 = self._float32 and other._float32
        return self

    def _layout(self, exp: int) -> _Layout:
        return _Layout(exp, self._sub, self._octaves)

    def _cover(self, vmin: float, vmax: float) -> None:
        """Make the window hold all scores so far and [vmin, vmax], coarsening or shifting as needed.

        The grid level is a function of the overall score range only (the smallest level from an estimate
        on whose grid the range spans fewer than ``bins`` slots), so the binning -- and every metric -- does
        not depend on the order of frames or on how shards were merged.
        """
        grid = self._grid
        old = grid.layout
        if old is not None:
            vmin, vmax = min(vmin, grid.vmin), max(vmax, grid.vmax)
        exp = self._finest_exp(vmin, vmax)
        layout = old if old is not None and old.exp == exp else self._layout(exp)
        lo, hi = layout.scalar_slot(vmin), layout.scalar_slot(vmax) | 1
        while hi - lo >= self.bins:
            if layout.exp >= _EXP_MAX:
                raise EvaluationError(f"score range [{vmin:g}, {vmax:g}] is too wide to histogram")
            layout = old if old is not None and old.exp == layout.exp + 1 else self._layout(layout.exp + 1)
            lo, hi = layout.scalar_slot(vmin), layout.scalar_slot(vmax) | 1
        if old is not None and layout.exp < old.exp:
            raise AssertionError("grid levels only grow with the score range")
        if layout is not old or not (grid.start <= lo and hi < grid.start + self.bins):
            # Centre the occupied range so that moderate growth on either side needs no further regrid.
            start = lo - (self.bins - (hi - lo + 1)) // 2
            if old is not None:
                grid.hist, value = grid.remapped(layout, start)
                grid.set_values(value)
            grid.layout, grid.start = layout, start
        grid.lo, grid.hi, grid.vmin, grid.vmax = lo, hi, vmin, vmax

    def _finest_exp(self, vmin: float, vmax: float) -> int:
        """Lower bound for the grid level of values in [vmin, vmax]; non-decreasing as the range grows."""
        half_span = vmax / 2 - vmin / 2  # halves avoid overflow for ranges near the float64 limit
        exp = _EXP_MIN
        if half_span > 0:
            exp = max(exp, math.floor(math.log2(half_span * 2 / self.bins)) - 1)
        magnitude = max(abs(vmin), abs(vmax))
        if magnitude > 0:
            # Keep |value| / 2**exp below 2**53, so float64 bin numbers stay exact integers.
            exp = max(exp, math.frexp(magnitude)[1] - 53)
        return exp

    # ------------------------------------------------------------------ results
    def _ranked(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Occupied slots from the highest score down: (absolute slot, positives, negatives, tied)."""
        grid = self._grid
        occupied = np.flatnonzero(grid.hist.any(axis=0))[::-1]
        return (occupied + grid.start, grid.hist[1, occupied], grid.hist[0, occupied],
                np.isfinite(grid.value[occupied]))

    def compute(self) -> dict[str, Any]:
        """Pooled metrics so far.

        Returns:
            ``ap``, ``fpr95``, ``auroc`` (fractions in [0, 1]; NaN when a class has no pixels -- ``ap`` only
            needs anomaly pixels), ``pixels_in`` / ``pixels_out`` (inlier / anomaly pixels counted),
            ``pixels_ignored``, ``frames``.
        """
        _, pos, neg, tied = self._ranked()
        n_pos = int(pos.sum())
        n_neg = int(neg.sum())
        ap = fpr95 = auroc = float("nan")
        if n_pos:
            tp = np.cumsum(pos)
            fp = np.cumsum(neg)
            ap = float(np.sum(_ap_terms(pos, neg, tp, fp, tied)) / n_pos)
            if n_neg:
                # Each negative beats every positive in a higher bin and ties (1/2) with its own bin's.
                auroc = float(np.sum(neg * ((tp - pos) + 0.5 * pos)) / n_pos / n_neg)
                k = int(np.searchsorted(tp / n_pos, 0.95, side="left"))
                false_pos = float(fp[k])
                if not tied[k]:
                    # Evenly interleaved: the threshold falls at the `need`-th positive of this bin.
                    need = math.ceil(0.95 * n_pos - (tp[k] - pos[k]) - 1e-9)
                    false_pos = fp[k] - neg[k] + neg[k] * need / (pos[k] + 1)
                fpr95 = float(false_pos / n_neg)
        return {
            "ap": ap,
            "fpr95": fpr95,
            "auroc": auroc,
            "pixels_in": n_neg,
            "pixels_out": n_pos,
            "pixels_ignored": self.pixels_ignored,
            "frames": self.frames,
        }

    def best_f1(self) -> tuple[float, float]:
        """Pixel threshold with the best F1 of ``score >= threshold``, and that F1.

        The threshold is a histogram slot's lower bound, so ``score >= threshold`` selects exactly the pixels
        counted above it. This is how SMIYC picks the threshold for its component metrics.

        Raises:
            EvaluationError: no anomaly pixel has been seen (F1 undefined).
        """
        bins, pos, neg, _ = self._ranked()
        n_pos = int(pos.sum())
        if n_pos == 0:
            raise EvaluationError("no anomaly pixels accumulated: the best-F1 threshold is undefined")
        tp = np.cumsum(pos)
        fp = np.cumsum(neg)
        f1 = 2 * tp / (tp + fp + n_pos)
        k = int(np.argmax(f1))
        return float(self._grid.layout.threshold(bins[k:k + 1], self._float32)[0]), float(f1[k])

    def operating_point(self, *, tpr: float | None = None, fpr: float | None = None) -> tuple[float, float, float]:
        """The mask threshold for a target rate, and the (TPR, FPR) that ``score >= threshold`` achieves here.

        ``fpr``: the lowest threshold whose FPR stays at or below the target (the most anomalies found within
        the false-alarm budget); ``tpr``: the highest threshold whose TPR reaches the target (the fewest false
        alarms that find that share). Exactly one target is given.

        Raises:
            EvaluationError: no target or both, a target outside [0, 1], or a class without pixels.
        """
        if (tpr is None) == (fpr is None) or not 0.0 <= (tpr if fpr is None else fpr) <= 1.0:
            raise EvaluationError(f"give one target rate in [0, 1] (tpr={tpr}, fpr={fpr})")
        bins, pos, neg, _ = self._ranked()
        n_pos, n_neg = int(pos.sum()), int(neg.sum())
        if n_pos == 0 or n_neg == 0:
            raise EvaluationError("a target rate needs both anomaly and inlier pixels")
        rates_tpr, rates_fpr = np.cumsum(pos) / n_pos, np.cumsum(neg) / n_neg
        if fpr is not None:
            k = max(int(np.searchsorted(rates_fpr, fpr, side="right")) - 1, 0)
        else:
            k = min(int(np.searchsorted(rates_tpr, tpr, side="left")), rates_tpr.size - 1)
        threshold = float(self._grid.layout.threshold(bins[k:k + 1], self._float32)[0])
        return threshold, float(rates_tpr[k]), float(rates_fpr[k])

    def curves(self, max_points: int = 2000) -> dict[str, np.ndarray]:
        """PR and ROC curves at the histogram thresholds, subsampled for plotting.

        Points are kept evenly spaced in threshold rank, in recall and in FPR (so both plots stay smooth),
        first and last included; at most about ``max_points`` of them.

        Returns:
            Equal-length float64 arrays ``thresholds`` (descending), ``precision``, ``recall``, ``tpr``
            (= recall), ``fpr``. Empty arrays while either class has no pixels. The ROC's (0, 0) start is
            not included.
        """
        bins, pos, neg, _ = self._ranked()
        n_pos, n_neg = int(pos.sum()), int(neg.sum())
        if n_pos == 0 or n_neg == 0:
            empty = np.zeros(0)
            return {"thresholds": empty, "precision": empty, "recall": empty, "tpr": empty, "fpr": empty}
        tp = np.cumsum(pos)
        fp = np.cumsum(neg)
        recall = tp / n_pos
        fpr = fp / n_neg
        n = recall.size
        if n > max_points:
            per = max(max_points // 3, 2)
            grid = np.linspace(0.0, 1.0, per)
            keep = np.concatenate([
                np.linspace(0, n - 1, per).round().astype(np.int64),
                np.searchsorted(recall, grid, side="left"),
                np.searchsorted(fpr, grid, side="left"),
                [0, n - 1],
            ])
            keep = np.unique(np.clip(keep, 0, n - 1))
        else:
            keep = np.arange(n)
        return {
            "thresholds": self._grid.layout.threshold(bins[keep], self._float32),
            "precision": tp[keep] / (tp[keep] + fp[keep]),
            "recall": recall[keep],
            "tpr": recall[keep],
            "fpr": fpr[keep],
        }

    def nbytes(self) -> int:
        """Bytes held by the internal arrays (constant for the accumulator's lifetime)."""
        grid = self._grid
        return int(grid.hist.nbytes + grid.value.nbytes + grid.mixed.nbytes)

    # ------------------------------------------------------------------ persistence
    def state_dict(self) -> dict[str, Any]:
        """JSON-serialisable snapshot (only the occupied bins, zlib+base64 packed); see from_state_dict."""
        grid = self._grid
        state: dict[str, Any] = {
            "format": _STATE_FORMAT,
            "version": 1,
            "bins": self.bins,
            "frames": self.frames,
            "pixels_ignored": self.pixels_ignored,
            "float32": self._float32,
            "exp": None if grid.layout is None else grid.layout.exp,
        }
        if grid.layout is not None:
            a, b = grid.lo - grid.start, grid.hi - grid.start + 1
            state.update(vmin=grid.vmin, vmax=grid.vmax, start=grid.start, lo=grid.lo, hi=grid.hi,
                         inlier=_encode(grid.hist[0, a:b], "<i8"), anomaly=_encode(grid.hist[1, a:b], "<i8"),
                         values=_encode(grid.value[a:b], "<f8"))
        return state

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> StreamingOODMetrics:
        """Rebuild an accumulator from :meth:`state_dict` output (e.g. after ``json.load``)."""
        what = "StreamingOODMetrics state"
        if not isinstance(state, dict) or state.get("format") != _STATE_FORMAT:
            raise EvaluationError(f"{what}: not a {_STATE_FORMAT} state dict")
        if state.get("version") != 1:
            raise EvaluationError(f"{what}: unsupported version {state.get('version')!r}")
        try:
            metrics = cls(bins=int(state["bins"]))
            metrics.frames = int(state["frames"])
            metrics.pixels_ignored = int(state["pixels_ignored"])
            metrics._float32 = bool(state["float32"])
            if state["exp"] is not None:
                grid = metrics._grid
                exp, start, lo, hi = (int(state[k]) for k in ("exp", "start", "lo", "hi"))
                vmin, vmax = float(state["vmin"]), float(state["vmax"])
                if not (_EXP_MIN <= exp <= _EXP_MAX and math.isfinite(vmin) and math.isfinite(vmax)):
                    raise EvaluationError(f"{what}: invalid grid level {exp} or score range [{vmin}, {vmax}]")
                layout = metrics._layout(exp)
                if (lo, hi) != (layout.scalar_slot(vmin), layout.scalar_slot(vmax) | 1):
                    raise EvaluationError(f"{what}: occupied slots [{lo}, {hi}] do not match the score range")
                if not (start <= lo <= hi < start + metrics.bins):
                    raise EvaluationError(f"{what}: occupied slots [{lo}, {hi}] outside the window")
                n, a = hi - lo + 1, lo - start
                grid.layout, grid.start, grid.lo, grid.hi = layout, start, lo, hi
                grid.vmin, grid.vmax = vmin, vmax
                grid.hist[0, a:a + n] = _decode(state["inlier"], "<i8", n, what)
                grid.hist[1, a:a + n] = _decode(state["anomaly"], "<i8", n, what)
                grid.value[a:a + n] = _decode(state["values"], "<f8", n, what)
                grid.mixed[a:a + n] = np.isinf(grid.value[a:a + n])
        except KeyError as exc:
            raise EvaluationError(f"{what}: missing key {exc}") from None
        except (TypeError, ValueError) as exc:
            if isinstance(exc, EvaluationError):
                raise
            raise EvaluationError(f"{what}: bad value ({exc})") from None
        return metrics


def _ap_terms(pos: np.ndarray, neg: np.ndarray, tp: np.ndarray, fp: np.ndarray, tied: np.ndarray
              ) -> np.ndarray:
    """Each bin's ``(R_n - R_{n-1}) P_n`` sum, times the positive count, from the highest bin down.

    A tied bin is one threshold: all its positives get the precision at its end. A bin with several
    distinct scores is integrated as if its positives and negatives were evenly interleaved:
    ``∫_0^p (a + s) / (c + r s) ds`` with a = TP and c = TP + FP above it, r = (p + n) / p.
    """
    end = pos * (tp / (tp + fp))
    mixed = ~tied & (pos > 0)
    if not mixed.any():
        return end
    p = pos[mixed].astype(np.float64)
    a = (tp - pos)[mixed].astype(np.float64)
    c = a + (fp - neg)[mixed]
    r = (p + neg[mixed]) / p
    with np.errstate(divide="ignore", invalid="ignore"):
        integral = p / r + (a * r - c) / (r * r) * np.log1p(r * p / c)
    # Nothing above the bin (c == 0): precision is the bin's own, p / (p + n), all the way.
    integral = np.where(c > 0, integral, p / r)
    out = end.astype(np.float64)
    out[mixed] = integral
    return out


class ConfusionMatrix:
    """Streaming semantic-segmentation confusion matrix for mIoU (Cityscapes trainIds by default).

    Target pixels equal to 255 are ignored. Predictions outside ``[0, num_classes)`` (e.g. a void 255) count
    as misses for the target's class but as nobody's false positive.

    Args:
        num_classes: number of classes.
        class_names: names for ``iou_per_class``; the Cityscapes names when ``num_classes`` is 19.
    """

    def __init__(self, num_classes: int = 19, class_names: Sequence[str] | None = None) -> None:
        if num_classes < 1:
            raise EvaluationError(f"num_classes must be >= 1, got {num_classes}")
        if class_names is None:
            default = num_classes == len(CLASS_NAMES)
            class_names = CLASS_NAMES if default else [str(i) for i in range(num_classes)]
        if len(class_names) != num_classes:
            raise EvaluationError(f"{len(class_names)} class names for {num_classes} classes")
        self.num_classes: int = int(num_classes)
        self.class_names: tuple[str, ...] = tuple(class_names)
        # Rows: target class; columns: predicted class, plus a last column for out-of-range predictions.
        self.matrix: np.ndarray = np.zeros((self.num_classes, self.num_classes + 1), dtype=np.int64)

    def update(self, pred: np.ndarray, target: np.ndarray) -> None:
        """Add one frame of predicted and ground-truth class ids (same shape; target 255 = ignore)."""
        pred = np.asarray(pred)
        target = np.asarray(target)
        _check_pair(pred, target, "ConfusionMatrix.update")
        for name, arr in (("prediction", pred), ("target", target)):
            if not np.issubdtype(arr.dtype, np.integer):
                raise EvaluationError(f"ConfusionMatrix.update: {name} must hold integer class ids, "
                                      f"got dtype {arr.dtype}")
        valid = target != IGNORE_INDEX
        t = target[valid].astype(np.int64)
        if t.size and (t.min() < 0 or t.max() >= self.num_classes):
            raise EvaluationError(f"ConfusionMatrix.update: target class ids must be in "
                                  f"[0, {self.num_classes}) or {IGNORE_INDEX}, "
                                  f"found range [{t.min()}, {t.max()}]")
        p = pred[valid].astype(np.int64)
        p[(p < 0) | (p >= self.num_classes)] = self.num_classes
        cols = self.num_classes + 1
        counts = np.bincount(t * cols + p, minlength=self.num_classes * cols)
        self.matrix += counts.reshape(self.num_classes, cols)

    def merge(self, other: ConfusionMatrix) -> ConfusionMatrix:
        """Add another matrix's counts (same class count); returns self."""
        if not isinstance(other, ConfusionMatrix) or other.num_classes != self.num_classes:
            raise EvaluationError("can only merge a ConfusionMatrix with the same number of classes")
        self.matrix += other.matrix
        return self

    def compute(self) -> dict[str, Any]:
        """IoU results so far.

        Returns:
            ``miou`` (mean over classes present in target or prediction; NaN if none), ``iou_per_class``
            (name -> IoU, classes absent from both omitted) and ``pixel_accuracy``.
        """
        tp = np.diag(self.matrix[:, : self.num_classes]).astype(np.float64)
        fn = self.matrix.sum(axis=1) - tp
        fp = self.matrix[:, : self.num_classes].sum(axis=0) - tp
        denom = tp + fp + fn
        present = np.flatnonzero(denom > 0)
        iou = {self.class_names[c]: float(tp[c] / denom[c]) for c in present}
        total = int(self.matrix.sum())
        return {
            "miou": float(np.mean(list(iou.values()))) if iou else float("nan"),
            "iou_per_class": iou,
            "pixel_accuracy": float(tp.sum() / total) if total else float("nan"),
        }

    def state_dict(self) -> dict[str, Any]:
        """JSON-serialisable snapshot."""
        return {"format": _CM_STATE_FORMAT, "version": 1, "class_names": list(self.class_names),
                "matrix": self.matrix.tolist()}

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> ConfusionMatrix:
        """Rebuild from :meth:`state_dict` output."""
        if not isinstance(state, dict) or state.get("format") != _CM_STATE_FORMAT:
            raise EvaluationError(f"not a {_CM_STATE_FORMAT} state dict")
        names = state.get("class_names") or []
        cm = cls(num_classes=len(names), class_names=names)
        matrix = np.asarray(state.get("matrix"), dtype=np.int64)
        if matrix.shape != cm.matrix.shape:
            raise EvaluationError(f"confusion matrix state has shape {matrix.shape}, "
                                  f"expected {cm.matrix.shape}")
        cm.matrix[...] = matrix
        return cm
