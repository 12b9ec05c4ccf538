# Copyright 2026 The ood_seg_node developers. Licensed under the Apache License, Version 2.0.
"""Reliability measures and the calibration ``ood_seg validate`` fits: ECE, NLL, temperature, mask threshold.

Loiseau et al. (GenVal, ECCV 2024) measure a segmenter's calibration as the pixel-wise expected calibration
error of its max-softmax confidence (15 equal-width bins) and fit a temperature on synthetic validation data by
minimising that ECE over a grid, as done here. The mask threshold of an OOD head is fitted for a target rate on
the drivable area: a false-positive rate on inlier road pixels (a false-alarm budget) or a true-positive rate
on anomaly pixels. Both are written as a ROS 2 parameters file the node loads (``params_file``), stamped with
the model identity they were fitted for, which the node checks.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from ood_seg_node.checkpoints import state_digest

__all__ = ["CalibrationSample", "RateCounter", "calibration_identity", "expected_calibration_error",
           "fit_temperature", "reliability", "resample_nearest", "write_calibration_yaml"]

ECE_BINS = 15
TEMPERATURES = np.round(np.exp(np.linspace(math.log(0.25), math.log(8.0), 71)), 4)


def _softmax_stats(logits: np.ndarray, labels: np.ndarray, temperature: float) -> tuple[np.ndarray, np.ndarray,
                                                                                         np.ndarray]:
    """(confidence, correct, negative log-likelihood) per pixel of (N, C) logits at a temperature."""
    scaled = torch.from_numpy(logits).double() / temperature
    log_probs = torch.log_softmax(scaled, dim=1)
    best, predicted = log_probs.max(dim=1)
    target = torch.from_numpy(labels.astype(np.int64))
    nll = -log_probs.gather(1, target[:, None])[:, 0]
    return best.exp().numpy(), (predicted == target).numpy(), nll.numpy()


def _confidence_bins(confidence: np.ndarray, correct: np.ndarray, bins: int) -> tuple[np.ndarray, np.ndarray,
                                                                                      np.ndarray]:
    """Per equal-width confidence bin: pixel count, correct pixels, summed confidence."""
    index = np.minimum((confidence * bins).astype(np.int64), bins - 1)
    return (np.bincount(index, minlength=bins), np.bincount(index, correct.astype(np.float64), bins),
            np.bincount(index, confidence, bins))


def _ece(count: np.ndarray, right: np.ndarray, confident: np.ndarray) -> float:
    return float(np.abs(right - confident).sum() / count.sum()) if count.sum() else math.nan


def expected_calibration_error(confidence: np.ndarray, correct: np.ndarray, bins: int = ECE_BINS) -> float:
    """Pixel ECE: sum over equal-width confidence bins of |accuracy - mean confidence| weighted by the bin's share."""
    return _ece(*_confidence_bins(confidence, correct, bins))


def reliability(logits: np.ndarray, labels: np.ndarray, temperature: float = 1.0,
                bins: int = ECE_BINS) -> dict[str, object]:
    """ECE, NLL, accuracy and the reliability diagram (per-bin accuracy, confidence, share) at a temperature."""
    confidence, correct, nll = _softmax_stats(logits, labels, temperature)
    count, right, confident = _confidence_bins(confidence, correct, bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        accuracy, mean_confidence = right / count, confident / count
    return {"ece": _ece(count, right, confident), "nll": float(nll.mean()),
            "accuracy": float(correct.mean()), "pixels": int(labels.size),
            "bins": {"accuracy": accuracy.tolist(), "confidence": mean_confidence.tolist(),
                     "share": (count / max(count.sum(), 1)).tolist()}}


def fit_temperature(logits: np.ndarray, labels: np.ndarray, grid: np.ndarray = TEMPERATURES) -> tuple[float, float]:
    """The temperature on ``grid`` with the lowest ECE on these pixels (GenVal's search), and that ECE."""
    if labels.size == 0:
        raise ValueError("no labelled pixels to fit a temperature on (the source needs semantic labels)")
    eces = [expected_calibration_error(*_softmax_stats(logits, labels, float(t))[:2]) for t in grid]
    best = int(np.argmin(eces))
    return float(grid[best]), float(eces[best])


def resample_nearest(array: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resample of an HxW label map to ``shape`` (a no-op at the same size)."""
    if array.shape == tuple(shape):
        return array
    rows = (np.arange(shape[0]) * array.shape[0] // shape[0])[:, None]
    cols = (np.arange(shape[1]) * array.shape[1] // shape[1])[None, :]
    return array[rows, cols]


class CalibrationSample:
    """A bounded uniform sample of labelled pixels' logits, for ECE/NLL and the temperature search.

    Every frame offers at most ``per_frame`` random pixels (at the logits' resolution, labels nearest-sampled);
    a reservoir keeps ``limit`` of all offered pixels uniformly (Vitter's algorithm R), so frames and conditions
    seen late count as much as the first ones and memory stays flat whatever the number of frames.
    """

    def __init__(self, *, per_frame: int = 4000, limit: int = 400_000, seed: int = 0) -> None:
        self.per_frame, self.limit = per_frame, limit
        self.rng = np.random.default_rng(seed)
        self._logits: np.ndarray | None = None
        self._labels = np.zeros(limit, np.uint8)
        self.offered = 0  # pixels offered so far
        self.size = 0  # pixels held (at most limit)

    def add(self, logits: np.ndarray, semantic: np.ndarray) -> None:
        """(C, h, w) float logits and the frame's HxW class ids (255 or >= C: not counted)."""
        classes, height, width = logits.shape
        labels = resample_nearest(semantic, (height, width)).ravel()
        valid = np.flatnonzero(labels < classes)
        if valid.size == 0:
            return
        if self._logits is None:
            self._logits = np.zeros((self.limit, classes), np.float32)
        picked = self.rng.choice(valid, size=min(self.per_frame, valid.size), replace=False)
        rows = logits.reshape(classes, -1)[:, picked].T
        # algorithm R: the k-th pixel ever offered takes a random slot with probability limit / k
        order = self.offered + 1 + np.arange(picked.size)
        slots = np.where(order <= self.limit, order - 1, self.rng.integers(0, order))
        keep = slots < self.limit
        self._logits[slots[keep]] = rows[keep]
        self._labels[slots[keep]] = labels[picked[keep]]
        self.offered += picked.size
        self.size = min(self.offered, self.limit)

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """(N, C) logits and (N,) labels."""
        if self._logits is None:
            return np.zeros((0, 1), np.float32), np.zeros(0, np.uint8)
        return self._logits[:self.size], self._labels[:self.size]


class RateCounter:
    """Detection rates of a fixed threshold on held-out frames, with a bootstrap interval over source frames.

    Pixels of one frame are not independent samples (an object is found or missed as a whole, and every
    condition renders the same source frame), so the interval resamples source frames (``group``).
    """

    def __init__(self, threshold: float) -> None:
        self.threshold = threshold
        self._groups: dict[int, np.ndarray] = {}  # group -> [anomalies found, anomalies, inliers flagged, inliers]

    def add(self, score: np.ndarray, gt: np.ndarray, group: int = 0) -> None:
        above = score >= self.threshold
        anomaly, inlier = gt == 1, gt == 0
        counts = np.array([np.count_nonzero(above & anomaly), np.count_nonzero(anomaly),
                           np.count_nonzero(above & inlier), np.count_nonzero(inlier)], dtype=np.int64)
        self._groups[group] = self._groups.get(group, 0) + counts

    def _totals(self) -> np.ndarray:
        return np.sum(list(self._groups.values()), axis=0) if self._groups else np.zeros(4, np.int64)

    @property
    def anomalies(self) -> int:
        return int(self._totals()[1])

    @property
    def inliers(self) -> int:
        return int(self._totals()[3])

    @property
    def tpr(self) -> float:
        found, anomalies = self._totals()[:2]
        return found / anomalies if anomalies else math.nan

    @property
    def fpr(self) -> float:
        flagged, inliers = self._totals()[2:]
        return flagged / inliers if inliers else math.nan

    def interval(self, rate: str, *, level: float = 0.95, resamples: int = 2000, seed: int = 0) -> tuple[float, float]:
        """Percentile bootstrap interval of ``tpr`` or ``fpr`` over the groups (NaN, NaN with fewer than 2)."""
        if len(self._groups) < 2:
            return math.nan, math.nan
        counts = np.stack(list(self._groups.values()))
        hit, total = (counts[:, 0], counts[:, 1]) if rate == "tpr" else (counts[:, 2], counts[:, 3])
        picks = np.random.default_rng(seed).integers(0, len(counts), (resamples, len(counts)))
        totals = total[picks].sum(axis=1)
        rates = hit[picks].sum(axis=1)[totals > 0] / totals[totals > 0]
        if rates.size == 0:
            return math.nan, math.nan
        low, high = np.quantile(rates, [(1 - level) / 2, (1 + level) / 2])
        return float(low), float(high)


def calibration_identity(pipeline) -> str:
    """``<segmenter identity>|<head>@<weights digest>``: what a calibration was fitted for (the node checks it)."""
    head = pipeline.head
    return f"{pipeline.segmenter.identity}|{head.name}@{state_digest(head.state_dict())}"


def write_calibration_yaml(path: str | Path, *, parameters: dict[str, object], comment: list[str]) -> None:
    """A ROS 2 parameters file for the node (``ood_seg_node: ros__parameters:``), with a comment header."""
    lines = [f"# {line}" for line in comment]
    lines += ["ood_seg_node:", "  ros__parameters:"]
    for key, value in parameters.items():
        if isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, float):
            text = repr(value) if math.isfinite(value) else ".nan"
        elif isinstance(value, int):
            text = str(value)
        else:
            text = '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'
        lines.append(f"    {key}: {text}")
    Path(path).write_text("\n".join(lines) + "\n")
