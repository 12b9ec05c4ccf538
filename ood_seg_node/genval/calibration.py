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
from dataclasses import dataclass
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


def expected_calibration_error(confidence: np.ndarray, correct: np.ndarray, bins: int = ECE_BINS) -> float:
    """Pixel ECE: sum over equal-width confidence bins of |accuracy - mean confidence| weighted by the bin's share."""
    if confidence.size == 0:
        return math.nan
    index = np.minimum((confidence * bins).astype(np.int64), bins - 1)
    count = np.bincount(index, minlength=bins)
    gap = np.abs(np.bincount(index, correct.astype(np.float64), bins) - np.bincount(index, confidence, bins))
    return float(gap.sum() / count.sum())


def reliability(logits: np.ndarray, labels: np.ndarray, temperature: float = 1.0,
                bins: int = ECE_BINS) -> dict[str, object]:
    """ECE, NLL, accuracy and the reliability diagram (per-bin accuracy, confidence, share) at a temperature."""
    confidence, correct, nll = _softmax_stats(logits, labels, temperature)
    index = np.minimum((confidence * bins).astype(np.int64), bins - 1)
    count = np.bincount(index, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        accuracy = np.bincount(index, correct.astype(np.float64), bins) / count
        mean_confidence = np.bincount(index, confidence, bins) / count
    return {"ece": expected_calibration_error(confidence, correct, bins), "nll": float(nll.mean()),
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
    """A bounded random sample of labelled pixels' logits, for ECE/NLL and the temperature search.

    Every frame contributes at most ``per_frame`` pixels (at the logits' resolution, labels nearest-sampled),
    the whole sample at most ``limit``: memory stays flat whatever the number of frames.
    """

    def __init__(self, *, per_frame: int = 4000, limit: int = 400_000, seed: int = 0) -> None:
        self.per_frame, self.limit = per_frame, limit
        self.rng = np.random.default_rng(seed)
        self._logits: list[np.ndarray] = []
        self._labels: list[np.ndarray] = []
        self.size = 0

    def add(self, logits: np.ndarray, semantic: np.ndarray) -> None:
        """(C, h, w) float logits and the frame's HxW class ids (255 or >= C: not counted)."""
        classes, height, width = logits.shape
        labels = resample_nearest(semantic, (height, width)).ravel()
        valid = np.flatnonzero(labels < classes)
        room = min(self.per_frame, self.limit - self.size)
        if valid.size == 0 or room <= 0:
            return
        picked = self.rng.choice(valid, size=min(room, valid.size), replace=False)
        self._logits.append(logits.reshape(classes, -1)[:, picked].T.astype(np.float32))
        self._labels.append(labels[picked].astype(np.uint8))
        self.size += picked.size

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """(N, C) logits and (N,) labels."""
        if not self._labels:
            return np.zeros((0, 1), np.float32), np.zeros(0, np.uint8)
        return np.concatenate(self._logits), np.concatenate(self._labels)


@dataclass
class RateCounter:
    """Detection rates of a fixed threshold on held-out frames: anomaly pixels found, inlier pixels flagged."""

    threshold: float
    found: int = 0
    anomalies: int = 0
    flagged: int = 0
    inliers: int = 0

    def add(self, score: np.ndarray, gt: np.ndarray) -> None:
        above = score >= self.threshold
        anomaly, inlier = gt == 1, gt == 0
        self.found += int(np.count_nonzero(above & anomaly))
        self.anomalies += int(np.count_nonzero(anomaly))
        self.flagged += int(np.count_nonzero(above & inlier))
        self.inliers += int(np.count_nonzero(inlier))

    @property
    def tpr(self) -> float:
        return self.found / self.anomalies if self.anomalies else math.nan

    @property
    def fpr(self) -> float:
        return self.flagged / self.inliers if self.inliers else math.nan


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
