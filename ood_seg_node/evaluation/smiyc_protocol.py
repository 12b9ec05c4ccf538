# Copyright 2026 The ood_seg_node developers. Licensed under the Apache License, Version 2.0.
"""The SegmentMeIfYouCan (SMIYC) evaluator, rule by rule: pixel curve (``PixBinaryClass``) and ``SegEval``.

Why this module exists: SMIYC leaderboard numbers come from the benchmark's own *binned* pixel curve and its
component rules, not from the exact curve of :mod:`ood_seg_node.evaluation.metrics`; to compare with them,
``ood_seg evaluate --protocol smiyc`` must repeat that evaluator's arithmetic. Rules follow commit 1c7804e
(2023-08-24) of SegmentMeIfYouCan/road-anomaly-benchmark; each docstring names the official function
(``pc`` = road_anomaly_benchmark/metrics/pixel_classification.py, ``pcc`` = .../pixel_classification_curves.py,
``is`` = .../instance_segmentation.py). That code is not copied; it was read to check the details.

The benchmark casts every score map to float16 when storing it (evaluation.py ``Evaluation.save_output``).
Here scores are used as given: to reproduce SMIYC, cast to float16 before ``update``.

Deliberate deviations (the pinned numpy 1.23.3 is the reference):

* a frame without ROI pixel is skipped (``pc`` crashes on ``np.min`` of an empty array); non-finite scores
  on non-void pixels raise :class:`EvaluationError` (officially they silently corrupt the bin edges);
* pooled thresholds that tie are ordered smallest bin first (officially ``np.argsort``, unspecified for ties,
  over frames that the default parallel run delivers in arbitrary order). Only the top threshold's ties matter:
  the kept index 0 is a partial point there (see :func:`_pooled_points`). With saturated maps (many frames whose
  top edge is 1.0) the official AP moved by 0.015 over frame orders in a synthetic check; ours does not depend
  on frame order or sharding, and with the official tie order it matched the official code bit for bit;
* the segment threshold is compared in float64; numpy 1.23 compares a float16 (float32) map in float16
  (float32), numpy >= 2 in float64, so pixels within rounding of t may differ. Passing
  ``float(np.float16(t))`` for a float16 map reproduces the pinned numpy exactly;
* no anomaly pixel: pixel metrics are NaN (officially meaningless numbers); F1 over no component is NaN
  (officially ``ZeroDivisionError``); a mean over no component is NaN, as officially.

Legacy pixel metric (before August 2023, e.g. 7bf85bf; probably the 2021 leaderboard): outer bin edges were
the constants 0 and 1, thresholds were not de-duplicated and no origin or end point was added, leading points
with ``tp + fp == 0`` were dropped, AP was ``np.trapz(precision, recall)`` and AUROC had no (0, 0) start;
between 6bc8f37 and 1c7804e ``best_f1_threshold`` was misaligned with its F1. The segment rules are unchanged.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy import ndimage

from ood_seg_node.cityscapes import OOD_ANOMALY, OOD_IGNORE
from ood_seg_node.evaluation.components import SIZE_FILTERS
from ood_seg_node.evaluation.metrics import EvaluationError, _check_pair, _decode, _encode, _label_histogram

__all__ = ["SMIYC_SIOU_THRESHOLDS", "SmiycPixelMetric", "SmiycSegmentMetric"]

_QUANTILES = 768 // 2  # pc MetricPixelClassification.configs 'PixBinaryClass': num_bins=768, num_bins//2 per class
# is MetricSegment.configs thresh_sIoU; the 8th value is 0.6000000000000001, so a ratio of exactly 0.6 is below it.
SMIYC_SIOU_THRESHOLDS: np.ndarray = np.linspace(0.25, 0.75, 11, endpoint=True)
_F1_KEYS = {"f1_25": 0, "f1_50": 5, "f1_75": 10}  # is MetricSegment.aggregate keeps t in [0.25, 0.50, 0.75]
_CONNECTIVITY = np.ones((3, 3), dtype=bool)  # is default_instancer: structure = np.ones((3, 3)), 8-connected
_PIXEL_FORMAT = "ood_seg_node.SmiycPixelMetric"
_SEGMENT_FORMAT = "ood_seg_node.SmiycSegmentMetric"


def _checked_state(state: Any, format_name: str) -> str:
    """The error prefix for a state dict of ``format_name``; raises unless it is one, at version 1."""
    what = f"{format_name} state"
    if not isinstance(state, dict) or state.get("format") != format_name or state.get("version") != 1:
        raise EvaluationError(f"{what}: not a version-1 {format_name} state dict")
    return what


def _checked_scores(score: Any, label: Any, what: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Validate one frame; return (score, label, ROI mask ``label < 255``, the only void value as in ``pc``)."""
    score, label = np.asarray(score), np.asarray(label)
    _check_pair(score, label, what)
    _label_histogram(label)
    if not np.issubdtype(score.dtype, np.floating):
        raise EvaluationError(f"{what}: scores must be a floating-point array, got dtype {score.dtype}")
    roi = label != OOD_IGNORE
    if not np.isfinite(score[roi]).all():
        raise EvaluationError(f"{what}: non-finite scores (NaN/inf) on non-void pixels")
    return score, label, roi


def _class_quantiles(values: np.ndarray) -> np.ndarray:
    """``np.quantile(values, linspace(0, 1, min(384, n)))`` with numpy 1.23's 'linear' arithmetic.

    As ``pc binary_confusion_matrix`` under the pinned numpy: virtual index ``(n - 1) q``, and ``_lerp``
    takes ``b - a`` in the *input* dtype, then interpolates in float64 (from ``b`` when the weight is >= 1/2).
    Written out so the edges do not depend on the installed numpy. ``values`` must be sorted.
    """
    n = values.size
    virtual = (n - 1) * np.linspace(0.0, 1.0, min(_QUANTILES, n))
    below = np.floor(virtual)
    top = virtual >= n - 1  # numpy takes the last element there (a == b, so the weight is irrelevant)
    lo = np.where(top, n - 1, below).astype(np.intp)
    hi = np.where(top, n - 1, below + 1).astype(np.intp)
    weight = virtual - below
    a, b = values[lo], values[hi]
    diff = (b - a).astype(np.float64)
    out = a.astype(np.float64) + diff * weight
    upper = weight >= 0.5
    out[upper] = b[upper].astype(np.float64) - diff[upper] * (1.0 - weight[upper])
    return out


def _frame_bins(pos: np.ndarray, neg: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One frame's bins, highest first: lower edges (float64) and the positive and negative count per bin.

    As ``pc binary_confusion_matrix`` (percentiles): edges = ``vmin - eps``, ``vmax + eps`` with
    ``eps = max(0.01 (vmax - vmin), 0.01)`` (the range in the input dtype, the rest in float64 as numpy 1.23
    promotes these scalars), plus up to 384 quantiles of each class, de-duplicated. Counts follow
    ``np.histogram``: bin ``[e_b, e_b+1)``, last bin closed, i.e. a pixel counts at every threshold
    ``e_b <= score``. Only the lower edges are thresholds, high first (``bin_edges[::-1][1:]`` in ``pc``).
    """
    pos, neg = np.sort(pos), np.sort(neg)
    present = [v for v in (pos, neg) if v.size]
    vmin, vmax = min(v[0] for v in present), max(v[-1] for v in present)
    eps = max(float(vmax - vmin) * 1e-2, 1e-2)
    edges = np.unique(np.concatenate([[float(vmin) - eps, float(vmax) + eps],
                                      *(_class_quantiles(v) for v in present)]))
    counts = []
    for values in (pos, neg):
        v = values.astype(np.float64)  # exact; np.histogram compares in the common (float64) dtype too
        below = np.concatenate([np.searchsorted(v, edges[:-1], "left"), np.searchsorted(v, edges[-1:], "right")])
        counts.append(np.diff(below).astype(np.int64))
    return edges[-2::-1], counts[0][::-1], counts[1][::-1]


def _descending_order(thresholds: np.ndarray, tp_rel: np.ndarray, fp_rel: np.ndarray) -> np.ndarray:
    """Thresholds descending; ties smallest bin first, so the spurious index-0 point is as small as it can be.

    A function of the bins alone, so results do not depend on frame order or sharding.
    """
    return np.lexsort((tp_rel, tp_rel + fp_rel, -thresholds))


def _pooled_points(thresholds: np.ndarray, tp_rel: np.ndarray, fp_rel: np.ndarray, n_pos: int, n_neg: int
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Curve points (thresholds descending, cumulative TP and FP as float64) over all frames' bins.

    ``pc aggregate_dynamic_bins``: every bin of every frame sits at its own lower edge, sorted descending,
    cumulated. ``pcc curves_from_cmats``: keep index 0, the last occurrence of each threshold and the final
    index (so index 0 is a partial point when the top threshold repeats, and tie order matters only there);
    prepend the origin at ``max + 1`` unless the first point is (0, 0); append (P, N) at ``max - 1`` [sic]
    unless reached.
    """
    order = _descending_order(thresholds, tp_rel, fp_rel)
    t = thresholds[order]
    tp = np.cumsum(tp_rel[order]).astype(np.float64)
    fp = np.cumsum(fp_rel[order]).astype(np.float64)
    keep = np.concatenate([[0], np.flatnonzero(t[:-1] != t[1:]), [t.size - 1]])
    t, tp, fp = t[keep], tp[keep], fp[keep]
    if tp[0] != 0 or fp[0] != 0:
        t = np.concatenate([[float(np.max(t)) + 1], t])
        tp, fp = np.concatenate([[0.0], tp]), np.concatenate([[0.0], fp])
    if tp[-1] != n_pos or fp[-1] != n_neg:
        t = np.concatenate([t, [float(np.max(t)) - 1]])
        tp, fp = np.concatenate([tp, [float(n_pos)]]), np.concatenate([fp, [float(n_neg)]])
    return t, tp, fp


def _curve_metrics(t: np.ndarray, tp: np.ndarray, fp: np.ndarray, n_pos: int, n_neg: int) -> dict[str, float]:
    """AP, AUROC, FPR at 95 % TPR and best F1 on the curve points, as ``pcc curves_from_cmats``.

    AP is the right-step sum ``sum (R_k - R_k-1) P_k`` (precision 1 where ``tp + fp == 0``), AUROC the
    trapezoid over (FPR, TPR) (``np.trapz``, written out: numpy 2.4 removed it), FPR95 the FPR at the first
    point with TPR >= 0.95 (1.0 at threshold 0.0 if none -- unreachable on a pooled curve, whose last point has
    TPR 1), best F1 the first maximum of ``2tp / (2tp + fp + fn)`` at that point's threshold.
    """
    fn, tn = n_pos - tp, n_neg - fp
    with np.errstate(invalid="ignore", divide="ignore"):
        tpr, fpr = tp / (tp + fn), fp / (fp + tn)
        predicted = tp + fp
        precision = np.ones(tp.size)
        precision[predicted > 0] = tp[predicted > 0] / predicted[predicted > 0]
        f1 = (2 * tp) / (2 * tp + fp + fn)
    k = int(np.searchsorted(tpr, 0.95))
    ix = int(np.nanargmax(f1))
    return {
        "ap": float(np.sum(np.diff(tpr) * precision[1:])),
        "auroc": float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2.0)),
        "fpr95": float(fpr[k]) if k < tpr.size else 1.0,
        "fpr95_threshold": float(t[k]) if k < tpr.size else 0.0,
        "best_f1": float(f1[ix]),
        "best_f1_threshold": float(t[ix]),
    }


class SmiycPixelMetric:
    """Per-frame percentile binning (768 bins: up to 384 quantiles of each class + 2 outer edges), pooled over frames.

    Keeps every frame's lower edges and counts (up to 769 per frame), since the pooled curve sorts them all.
    """

    def __init__(self) -> None:
        self._edges: list[np.ndarray] = []  # chunks in frame order: lower edges (float64)
        self._tp: list[np.ndarray] = []  # positives per bin (int64)
        self._fp: list[np.ndarray] = []  # negatives per bin (int64)
        self.pixels_in: int = 0
        self.pixels_out: int = 0
        self.frames: int = 0

    def update(self, score: np.ndarray, label: np.ndarray) -> None:
        """Add one frame (``pc MetricPixelClassification.process_frame``): ROI = label < 255, positive = 1."""
        score, label, roi = _checked_scores(score, label, "SmiycPixelMetric.update")
        s = score[roi]
        if s.size == 0:
            return  # deviation: the official code crashes on a frame without ROI pixel
        positive = label[roi] == OOD_ANOMALY
        edges, tp, fp = _frame_bins(s[positive], s[~positive])
        self._edges.append(edges)
        self._tp.append(tp)
        self._fp.append(fp)
        self.pixels_out += int(np.count_nonzero(positive))
        self.pixels_in += int(positive.size - np.count_nonzero(positive))
        self.frames += 1

    def _arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        def cat(chunks: list[np.ndarray], dtype: type) -> np.ndarray:
            return np.concatenate(chunks) if chunks else np.zeros(0, dtype=dtype)

        return cat(self._edges, np.float64), cat(self._tp, np.int64), cat(self._fp, np.int64)

    def compute(self) -> dict[str, Any]:
        """Pooled metrics; NaN while no anomaly pixel has been seen (``pcc`` has no guard there)."""
        result: dict[str, Any] = dict.fromkeys(("ap", "auroc", "fpr95", "fpr95_threshold", "best_f1",
                                                "best_f1_threshold"), float("nan"))
        edges, tp, fp = self._arrays()
        if self.pixels_out and edges.size:
            points = _pooled_points(edges, tp, fp, self.pixels_out, self.pixels_in)
            result.update(_curve_metrics(*points, self.pixels_out, self.pixels_in))
        result.update(pixels_in=self.pixels_in, pixels_out=self.pixels_out, frames=self.frames)
        return result

    def merge(self, other: SmiycPixelMetric) -> SmiycPixelMetric:
        """Append another shard's frames (after this one's, as if fed in that order); returns self."""
        if not isinstance(other, SmiycPixelMetric):
            raise EvaluationError(f"can only merge SmiycPixelMetric, got {type(other).__name__}")
        edges, tp, fp = other._arrays()
        self._edges.append(edges)
        self._tp.append(tp)
        self._fp.append(fp)
        self.pixels_in += other.pixels_in
        self.pixels_out += other.pixels_out
        self.frames += other.frames
        return self

    def state_dict(self) -> dict[str, Any]:
        """JSON-serialisable snapshot (arrays zlib+base64 packed)."""
        edges, tp, fp = self._arrays()
        return {"format": _PIXEL_FORMAT, "version": 1, "frames": self.frames, "pixels_in": self.pixels_in,
                "pixels_out": self.pixels_out, "bins": int(edges.size), "edges": _encode(edges, "<f8"),
                "tp": _encode(tp, "<i8"), "fp": _encode(fp, "<i8")}

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> SmiycPixelMetric:
        """Rebuild from :meth:`state_dict` output (e.g. after ``json.load``)."""
        what = _checked_state(state, _PIXEL_FORMAT)
        try:
            metric = cls()
            n = int(state["bins"])
            tp, fp = _decode(state["tp"], "<i8", n, what), _decode(state["fp"], "<i8", n, what)
            metric._edges, metric._tp, metric._fp = [_decode(state["edges"], "<f8", n, what)], [tp], [fp]
            metric.frames, metric.pixels_in, metric.pixels_out = (int(state[k]) for k in
                                                                  ("frames", "pixels_in", "pixels_out"))
        except KeyError as exc:
            raise EvaluationError(f"{what}: missing key {exc}") from None
        if int(tp.sum()) != metric.pixels_out or int(fp.sum()) != metric.pixels_in:
            raise EvaluationError(f"{what}: bin counts do not add up to the pixel counts")
        return metric


def _frame_segments(pred: np.ndarray, label: np.ndarray, min_pred: int, min_gt: int
                    ) -> tuple[np.ndarray, np.ndarray]:
    """The sIoU of each GT instance and PPV of each predicted component in one frame (ids ascending).

    ``is default_instancer``: void zeroed in the prediction before 8-connected labelling; GT instances =
    components of ``label == 1``; predicted components under ``min_pred`` pixels removed *first*, then GT
    components (index 0, the background, included) under ``min_gt`` pixels turned void; everything restricted
    to the ROI left. ``is segment_metrics``: sIoU(i) = |A ∩ P_K| / (|P_K| + |A| - |A ∩ P_K| - |P_K on other
    GT|) = |A ∩ P_K| / (|A| + |P_K on background|), K the components touching A; PPV(j) = |P_j on GT| / |P_j|.
    """
    gt_ids, n_gt = ndimage.label(label == OOD_ANOMALY, structure=_CONNECTIVITY)
    pred_ids, n_pred = ndimage.label(pred & (label != OOD_IGNORE), structure=_CONNECTIVITY)
    small = np.bincount(pred_ids.ravel(), minlength=n_pred + 1) < min_pred
    pred_ids = np.where(small, 0, np.arange(n_pred + 1))[pred_ids]
    roi = (label != OOD_IGNORE) & ~(np.bincount(gt_ids.ravel(), minlength=n_gt + 1) < min_gt)[gt_ids]
    g, p = gt_ids[roi].astype(np.int64), pred_ids[roi].astype(np.int64)
    touched = (g > 0) | (p > 0)
    keys, counts = np.unique(g[touched] * (n_pred + 1) + p[touched], return_counts=True)
    gk, pk = np.divmod(keys, n_pred + 1)  # sparse contingency table, background/none = 0
    gt_size = np.bincount(gk, counts, minlength=n_gt + 1)
    pred_size = np.bincount(pk, counts, minlength=n_pred + 1)
    pred_bg = np.bincount(pk[gk == 0], counts[gk == 0], minlength=n_pred + 1)  # |P_j on background|
    pair = (gk > 0) & (pk > 0)
    inter = np.bincount(gk[pair], counts[pair], minlength=n_gt + 1)
    union = gt_size + np.bincount(gk[pair], pred_bg[pk[pair]], minlength=n_gt + 1)
    gts = np.flatnonzero(gt_size[1:]) + 1  # instances left in the ROI
    preds = np.flatnonzero(pred_size[1:]) + 1
    return inter[gts] / union[gts], (pred_size[preds] - pred_bg[preds]) / pred_size[preds]


class SmiycSegmentMetric:
    """SMIYC component metrics (``is MetricSegment``, configs SegEval-AnomalyTrack / SegEval-ObstacleTrack).

    Args:
        track: ``"anomaly"`` (predicted components >= 500 px, GT >= 100 px) or ``"obstacle"`` (50 / 10).
        threshold: the pixel metric's ``best_f1_threshold`` on the same method and dataset, as
            ``is MetricSegment.get_thresh_p_from_curve`` reads it (an oracle threshold, by the benchmark's rule).
    """

    def __init__(self, track: str, threshold: float) -> None:
        if track not in SIZE_FILTERS:
            raise EvaluationError(f"unknown SMIYC track {track!r}; valid: {sorted(SIZE_FILTERS)}")
        if not math.isfinite(float(threshold)):
            raise EvaluationError(f"SMIYC segment threshold must be finite, got {threshold!r}")
        self.track: str = track
        self.threshold: float = float(threshold)
        self.min_gt, self.min_pred = SIZE_FILTERS[track]
        n = SMIYC_SIOU_THRESHOLDS.size
        self.tp, self.fn, self.fp = (np.zeros(n, dtype=np.int64) for _ in range(3))
        self.gt_components: int = 0
        self.pred_components: int = 0
        self.frames: int = 0
        # Per frame, np.sum of its values: is MetricSegment.aggregate sums per frame, then over frames.
        self._siou_sums: list[float] = []
        self._ppv_sums: list[float] = []

    def update(self, score: np.ndarray, label: np.ndarray) -> None:
        """Add one frame: ``score > threshold`` (strict, as ``is default_instancer``; compared in float64)."""
        score, label, _ = _checked_scores(score, label, "SmiycSegmentMetric.update")
        siou, ppv = _frame_segments(score.astype(np.float64) > self.threshold, label, self.min_pred, self.min_gt)
        t = SMIYC_SIOU_THRESHOLDS
        # is segment_metrics: TP sIoU >= t, FN sIoU < t, FP PPV < t (PPV since commit 76665e5).
        self.tp += np.count_nonzero(siou[:, None] >= t, axis=0)
        self.fn += np.count_nonzero(siou[:, None] < t, axis=0)
        self.fp += np.count_nonzero(ppv[:, None] < t, axis=0)
        self.gt_components += siou.size
        self.pred_components += ppv.size
        self._siou_sums.append(float(np.sum(siou)))
        self._ppv_sums.append(float(np.sum(ppv)))
        self.frames += 1

    def compute(self) -> dict[str, Any]:
        """Pooled as ``is MetricSegment.aggregate``: instance-weighted means, F1 from summed counts per t."""
        f1 = [2 * tp / d if (d := 2 * tp + fn + fp) else float("nan")
              for tp, fn, fp in zip(self.tp.tolist(), self.fn.tolist(), self.fp.tolist())]

        def mean(values: list[float] | list[int]) -> float:  # sequential sum, then divide, as the official loop
            total = 0.0
            for v in values:
                total += v
            return total / len(values) if values else float("nan")

        def pooled(sums: list[float], count: int) -> float:
            return sum(sums) / count if count else float("nan")

        return {
            "siou": pooled(self._siou_sums, self.gt_components),
            "ppv": pooled(self._ppv_sums, self.pred_components),
            "mean_f1": mean(f1),
            **{key: f1[i] for key, i in _F1_KEYS.items()},
            "gt_components": self.gt_components,
            "pred_components": self.pred_components,
            "tp_mean": mean(self.tp.tolist()),
            "fn_mean": mean(self.fn.tolist()),
            "fp_mean": mean(self.fp.tolist()),
        }

    def merge(self, other: SmiycSegmentMetric) -> SmiycSegmentMetric:
        """Append another shard with the same track and threshold; returns self."""
        if not isinstance(other, SmiycSegmentMetric):
            raise EvaluationError(f"can only merge SmiycSegmentMetric, got {type(other).__name__}")
        if (other.track, other.threshold) != (self.track, self.threshold):
            raise EvaluationError(f"cannot merge SMIYC segment metrics of {(other.track, other.threshold)} "
                                  f"into {(self.track, self.threshold)}")
        for name in ("tp", "fn", "fp"):
            getattr(self, name)[...] += getattr(other, name)
        self.gt_components += other.gt_components
        self.pred_components += other.pred_components
        self.frames += other.frames
        self._siou_sums += other._siou_sums
        self._ppv_sums += other._ppv_sums
        return self

    def state_dict(self) -> dict[str, Any]:
        """JSON-serialisable snapshot (floats round-trip exactly through JSON)."""
        return {"format": _SEGMENT_FORMAT, "version": 1, "track": self.track, "threshold": self.threshold,
                "frames": self.frames, "tp": self.tp.tolist(), "fn": self.fn.tolist(), "fp": self.fp.tolist(),
                "gt_components": self.gt_components, "pred_components": self.pred_components,
                "siou_sums": list(self._siou_sums), "ppv_sums": list(self._ppv_sums)}

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> SmiycSegmentMetric:
        """Rebuild from :meth:`state_dict` output."""
        what = _checked_state(state, _SEGMENT_FORMAT)
        try:
            metric = cls(state["track"], state["threshold"])
            for name in ("tp", "fn", "fp"):
                values = np.asarray(state[name], dtype=np.int64)
                if values.shape != metric.tp.shape:
                    raise EvaluationError(f"{what}: {name} has shape {values.shape}")
                setattr(metric, name, values)
            metric.frames, metric.gt_components, metric.pred_components = (
                int(state[k]) for k in ("frames", "gt_components", "pred_components"))
            metric._siou_sums = [float(v) for v in state["siou_sums"]]
            metric._ppv_sums = [float(v) for v in state["ppv_sums"]]
        except KeyError as exc:
            raise EvaluationError(f"{what}: missing key {exc}") from None
        return metric
