# Copyright 2026 The ood_seg_node developers. Licensed under the Apache License, Version 2.0.
r"""SegmentMeIfYouCan component-level metrics: sIoU, PPV and mean F1 over connected anomaly components.

Why this module exists: pixel AP is dominated by large objects, while a vehicle cares whether each obstacle,
however small, was found as one blob and how many phantom blobs were reported. SMIYC (Chan et al.,
"SegmentMeIfYouCan: A Benchmark for Anomaly Segmentation", NeurIPS 2021 Datasets and Benchmarks) scores
exactly that. Definitions, per frame, with K the ground-truth anomaly components and K^ the predicted ones
(8-connectivity; predictions restricted to the region of interest, label != 255):

* sIoU(k) = |k ∩ K^(k)| / |(k ∪ K^(k)) \\ A(k)|, where K^(k) is the union of predicted components that
  intersect k and A(k) the pixels of all *other* ground-truth components -- a prediction covering two
  adjacent objects is not punished for the neighbour, only for background;
* PPV(k^) = |k^ ∩ K(k^)| / |k^|, the share of a predicted component that lies on anomaly ground truth;
* for tau in {0.25, 0.30, ..., 0.75}: TP = #{k : sIoU(k) > tau}, FN = the other ground-truth components,
  FP = #{k^ : PPV(k^) <= tau}; F1(tau) = 2 TP / (2 TP + FN + FP); ``mean_f1`` averages F1 over the 11 taus;
  counts are pooled over all frames, ``siou`` and ``ppv`` are means over all components of all frames.

Size filters as in the benchmark: predicted components smaller than ``min_pred_size`` pixels (counted inside
the ROI) are discarded, and ground-truth components smaller than ``min_gt_size`` become ignore region
(together with any predicted pixels on them): 100 / 500 for the anomaly track, 10 / 50 for the obstacle track.

Differences from the public ``road_anomaly_benchmark`` code, which we follow the paper on: that code counts
TP with ``sIoU >= tau`` (paper: ``>``) and decides FP with an adjusted IoU of the predicted component instead
of PPV; it also thresholds ``score > t`` where this package's node uses ``score >= t`` (see
:func:`best_f1_threshold`, whose threshold is chosen for ``>=``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from scipy import ndimage

from ood_seg_node.cityscapes import OOD_ANOMALY, OOD_IGNORE
from ood_seg_node.evaluation.metrics import (
    EvaluationError,
    StreamingOODMetrics,
    _check_pair,
    _label_histogram,
)

__all__ = ["SIOU_THRESHOLDS", "SIZE_FILTERS", "ComponentMetrics", "FrameComponents", "best_f1_threshold",
           "frame_components"]

SIOU_THRESHOLDS: tuple[float, ...] = tuple(round(0.25 + 0.05 * i, 2) for i in range(11))
# kind -> (min_gt_size, min_pred_size), the SMIYC anomaly-track and obstacle-track settings.
SIZE_FILTERS: dict[str, tuple[int, int]] = {"anomaly": (100, 500), "obstacle": (10, 50)}
_EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)
_STATE_FORMAT = "ood_seg_node.ComponentMetrics"


@dataclass(frozen=True)
class FrameComponents:
    """Per-component scores of one frame.

    ``siou`` holds one value per kept ground-truth component, ``ppv`` one per kept predicted component
    (float64 arrays, in component-label order).
    """

    siou: np.ndarray
    ppv: np.ndarray


def best_f1_threshold(metrics: StreamingOODMetrics) -> float:
    """Score threshold with the best pixel F1 over the pixels accumulated in ``metrics``.

    SMIYC binarises every method's score map at this threshold before computing component metrics, so an
    evaluation either runs two passes (pixel metrics, then components) or keeps the score maps.
    The mask that matches the histogram counts is ``score >= threshold``.

    Raises:
        EvaluationError: ``metrics`` has seen no anomaly pixel.
    """
    return metrics.best_f1()[0]


def frame_components(mask: np.ndarray, label: np.ndarray, *, min_gt_size: int, min_pred_size: int
                     ) -> FrameComponents:
    """Compute the sIoU of each ground-truth component and the PPV of each predicted component in one frame.

    Args:
        mask: HxW predicted anomaly mask (bool, or any numeric: non-zero = anomaly).
        label: HxW uint8 ground truth, 0 inlier, 1 anomaly, 255 ignore.
        min_gt_size: ground-truth components with fewer pixels become ignore region.
        min_pred_size: predicted components with fewer ROI pixels are discarded.
    """
    mask = np.asarray(mask)
    label = np.asarray(label)
    _check_pair(mask, label, "frame_components")
    _label_histogram(label)
    roi = label != OOD_IGNORE
    gt_ids, n_gt = ndimage.label(label == OOD_ANOMALY, structure=_EIGHT_CONNECTED)
    pred_ids, n_pred = ndimage.label((mask != 0) & roi, structure=_EIGHT_CONNECTED)
    if n_pred:
        small = np.bincount(pred_ids.ravel(), minlength=n_pred + 1) < min_pred_size
        small[0] = True
        if small[1:].any():
            pred_ids = np.where(small, 0, np.arange(n_pred + 1))[pred_ids]
    if n_gt:
        tiny = np.bincount(gt_ids.ravel(), minlength=n_gt + 1) < min_gt_size
        tiny[0] = False
        if tiny.any():
            roi &= ~tiny[gt_ids]
    g = gt_ids[roi].astype(np.int64)
    p = pred_ids[roi].astype(np.int64)
    touched = (g > 0) | (p > 0)
    g, p = g[touched], p[touched]
    # Sparse contingency table between gt components (0 = background) and predicted ones (0 = none).
    keys, counts = np.unique(g * (n_pred + 1) + p, return_counts=True)
    gk, pk = np.divmod(keys, n_pred + 1)
    counts = counts.astype(np.float64)
    gt_size = np.bincount(gk, counts, minlength=n_gt + 1)
    pred_size = np.bincount(pk, counts, minlength=n_pred + 1)
    on_background = gk == 0
    pred_background = np.bincount(pk[on_background], counts[on_background], minlength=n_pred + 1)
    pair = (gk > 0) & (pk > 0)
    intersection = np.bincount(gk[pair], counts[pair], minlength=n_gt + 1)
    # |(k ∪ K^(k)) \ A(k)| = |k| + background pixels of the predicted components touching k.
    union = gt_size + np.bincount(gk[pair], pred_background[pk[pair]], minlength=n_gt + 1)
    kept_gt = np.flatnonzero(gt_size[1:] > 0) + 1
    kept_pred = np.flatnonzero(pred_size[1:] > 0) + 1
    siou = intersection[kept_gt] / union[kept_gt]
    ppv = (pred_size[kept_pred] - pred_background[kept_pred]) / pred_size[kept_pred]
    return FrameComponents(siou=siou, ppv=ppv)


class ComponentMetrics:
    """Streaming SMIYC component metrics over binary anomaly masks.

    Memory is constant: only the TP/FN/FP counts per tau and the sIoU/PPV sums are kept.

    Args:
        kind: ``"anomaly"`` (min sizes gt 100 / prediction 500 px) or ``"obstacle"`` (10 / 50 px).
        min_gt_size: overrides the kind's ground-truth size filter.
        min_pred_size: overrides the kind's prediction size filter.
    """

    def __init__(self, kind: Literal["anomaly", "obstacle"] = "anomaly", *, min_gt_size: int | None = None,
                 min_pred_size: int | None = None) -> None:
        if kind not in SIZE_FILTERS:
            raise EvaluationError(f"unknown component-metric kind {kind!r}; valid: {sorted(SIZE_FILTERS)}")
        default_gt, default_pred = SIZE_FILTERS[kind]
        self.kind: str = kind
        self.min_gt_size: int = default_gt if min_gt_size is None else int(min_gt_size)
        self.min_pred_size: int = default_pred if min_pred_size is None else int(min_pred_size)
        self.thresholds: np.ndarray = np.array(SIOU_THRESHOLDS)
        self.frames: int = 0
        self.tp: np.ndarray = np.zeros(len(SIOU_THRESHOLDS), dtype=np.int64)
        self.fn: np.ndarray = np.zeros(len(SIOU_THRESHOLDS), dtype=np.int64)
        self.fp: np.ndarray = np.zeros(len(SIOU_THRESHOLDS), dtype=np.int64)
        self.gt_components: int = 0
        self.pred_components: int = 0
        self.siou_sum: float = 0.0
        self.ppv_sum: float = 0.0

    def update(self, mask: np.ndarray, label: np.ndarray) -> FrameComponents:
        """Add one frame (mask: non-zero = predicted anomaly; label 0/1/255).

        Returns:
            The frame's per-component scores.
        """
        result = frame_components(mask, label, min_gt_size=self.min_gt_size, min_pred_size=self.min_pred_size)
        tp = (result.siou[:, None] > self.thresholds).sum(axis=0)
        self.tp += tp
        self.fn += result.siou.size - tp
        self.fp += (result.ppv[:, None] <= self.thresholds).sum(axis=0)
        self.gt_components += result.siou.size
        self.pred_components += result.ppv.size
        self.siou_sum += float(result.siou.sum())
        self.ppv_sum += float(result.ppv.sum())
        self.frames += 1
        return result

    def merge(self, other: ComponentMetrics) -> ComponentMetrics:
        """Add another accumulator with the same size filters; returns self."""
        if not isinstance(other, ComponentMetrics):
            raise EvaluationError(f"can only merge ComponentMetrics, got {type(other).__name__}")
        if (other.min_gt_size, other.min_pred_size) != (self.min_gt_size, self.min_pred_size):
            raise EvaluationError("cannot merge component metrics with different size filters: "
                                  f"{(self.min_gt_size, self.min_pred_size)} vs "
                                  f"{(other.min_gt_size, other.min_pred_size)}")
        for name in ("tp", "fn", "fp"):
            getattr(self, name)[...] += getattr(other, name)
        self.frames += other.frames
        self.gt_components += other.gt_components
        self.pred_components += other.pred_components
        self.siou_sum += other.siou_sum
        self.ppv_sum += other.ppv_sum
        return self

    def compute(self) -> dict[str, Any]:
        """Pooled component metrics so far.

        Returns:
            ``siou`` (mean over gt components), ``ppv`` (mean over predicted components), ``mean_f1``,
            ``f1`` (tau -> F1, keys like ``"0.25"``), ``gt_components``, ``pred_components``, ``frames``.
            Means over no components and F1 with no components at all are NaN.
        """
        denom = 2 * self.tp + self.fn + self.fp
        with np.errstate(invalid="ignore", divide="ignore"):
            f1 = np.where(denom > 0, 2 * self.tp / np.maximum(denom, 1), np.nan)
        return {
            "siou": self.siou_sum / self.gt_components if self.gt_components else float("nan"),
            "ppv": self.ppv_sum / self.pred_components if self.pred_components else float("nan"),
            "mean_f1": float(np.mean(f1)) if np.all(denom > 0) else float("nan"),
            "f1": {f"{t:.2f}": float(v) for t, v in zip(SIOU_THRESHOLDS, f1, strict=True)},
            "gt_components": self.gt_components,
            "pred_components": self.pred_components,
            "frames": self.frames,
        }

    def state_dict(self) -> dict[str, Any]:
        """JSON-serialisable snapshot."""
        return {
            "format": _STATE_FORMAT, "version": 1, "kind": self.kind, "min_gt_size": self.min_gt_size,
            "min_pred_size": self.min_pred_size, "frames": self.frames, "tp": self.tp.tolist(),
            "fn": self.fn.tolist(), "fp": self.fp.tolist(), "gt_components": self.gt_components,
            "pred_components": self.pred_components, "siou_sum": self.siou_sum, "ppv_sum": self.ppv_sum,
        }

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> ComponentMetrics:
        """Rebuild from :meth:`state_dict` output."""
        if not isinstance(state, dict) or state.get("format") != _STATE_FORMAT:
            raise EvaluationError(f"not a {_STATE_FORMAT} state dict")
        try:
            metrics = cls(state["kind"], min_gt_size=state["min_gt_size"],
                          min_pred_size=state["min_pred_size"])
            for name in ("tp", "fn", "fp"):
                values = np.asarray(state[name], dtype=np.int64)
                if values.shape != metrics.tp.shape:
                    raise EvaluationError(f"component state: {name} has shape {values.shape}")
                setattr(metrics, name, values)
            metrics.frames = int(state["frames"])
            metrics.gt_components = int(state["gt_components"])
            metrics.pred_components = int(state["pred_components"])
            metrics.siou_sum = float(state["siou_sum"])
            metrics.ppv_sum = float(state["ppv_sum"])
        except KeyError as exc:
            raise EvaluationError(f"component state: missing key {exc}") from None
        return metrics
