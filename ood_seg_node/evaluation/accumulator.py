# Copyright 2026 The ood_seg_node developers. Licensed under the Apache License, Version 2.0.
"""One accumulator for every way frames are evaluated: ``ood_seg evaluate``, the online evaluator, the demo.

Pass 1 (:meth:`Accumulator.add`, one call per frame): each head's full-resolution score updates the pooled
pixel metrics and a per-sequence breakdown (and inlier mIoU where semantic labels exist); the score is kept
at the resolution it was produced at (float16) and the ground truth as PNG bytes. Pass 2
(:meth:`Accumulator.finish`) replays the kept scores at the SMIYC threshold (the run's best pixel F1, or a
fixed one) for the component metrics and the worst frames. Partial states merge exactly (sharded runs),
which needs a component threshold fixed before the run.

``protocol="smiyc"`` computes the reported pixel and component figures the SegmentMeIfYouCan benchmark's way
(:mod:`ood_seg_node.evaluation.smiyc_protocol`: binned curve, its best-F1 threshold, its segment rules) and
keeps the exact pixel figures beside them; ``float16=True`` rounds every score to float16 first, as the
benchmark's saver stores them.
"""

from __future__ import annotations

import heapq
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from ood_seg_node.cityscapes import CLASS_NAMES, OOD_ANOMALY, OOD_IGNORE
from ood_seg_node.evaluation.components import ComponentMetrics, best_f1_threshold
from ood_seg_node.evaluation.metrics import ConfusionMatrix, EvaluationError, StreamingOODMetrics
from ood_seg_node.evaluation.report import write_report
from ood_seg_node.evaluation.smiyc_protocol import SmiycPixelMetric, SmiycSegmentMetric

SEQUENCE_BINS = 1 << 12  # per-sequence breakdowns are many; a coarser histogram keeps them small
PARTIAL_FORMAT = "ood_seg_node.evaluation.partial"
PROTOCOLS = ("exact", "smiyc")


def resize_score(score: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize (pixel centres aligned, as the pipeline upsamples) to ``size``; float32."""
    score = np.asarray(score, dtype=np.float32)
    if score.shape == tuple(size):
        return score
    return cv2.resize(score, (size[1], size[0]), interpolation=cv2.INTER_LINEAR)


class CompressedLabels(dict):
    """Ground truth kept as PNG bytes by frame index and decoded on access (pass-2 memory stays small)."""

    def keep(self, index: int, gt: np.ndarray) -> None:
        self[index] = cv2.imencode(".png", gt)[1].tobytes()

    def __getitem__(self, index: int) -> np.ndarray:
        return cv2.imdecode(np.frombuffer(super().__getitem__(index), np.uint8), cv2.IMREAD_UNCHANGED)


@dataclass
class HeadRun:
    """One head's accumulators for one run (or one shard)."""

    name: str
    kind: str
    component_threshold: float | None
    pixel: StreamingOODMetrics = field(default_factory=StreamingOODMetrics)
    sequences: dict[str, StreamingOODMetrics] = field(default_factory=dict)
    components: ComponentMetrics | None = None
    confusion: ConfusionMatrix | None = None
    latencies: list[float] = field(default_factory=list)
    kept: list[tuple[int, np.ndarray]] = field(default_factory=list)
    worst: list[tuple[int, int]] = field(default_factory=list)  # min-heap of (error pixels, frame index)
    worst_scores: dict[int, np.ndarray] = field(default_factory=dict)  # the kept score of each worst frame
    temporal: dict[str, Any] | None = None  # flicker, obstacle tracks (see evaluation.temporal), when measured
    class_names: tuple[str, ...] = CLASS_NAMES  # the label space of ``predicted`` and ``semantic``
    protocol: str = "exact"  # exact (unbinned) or smiyc (the benchmark's own computation)
    float16: bool = False  # round scores to float16 first, as the benchmark stores them
    smiyc_pixel: SmiycPixelMetric | None = None
    smiyc_segments: SmiycSegmentMetric | None = None

    def __post_init__(self) -> None:
        if self.protocol not in PROTOCOLS:
            raise EvaluationError(f"unknown protocol {self.protocol!r}; valid: {', '.join(PROTOCOLS)}")
        if self.protocol == "smiyc" and self.smiyc_pixel is None:
            self.smiyc_pixel = SmiycPixelMetric()

    def _stored(self, score: np.ndarray) -> np.ndarray:
        return score.astype(np.float16).astype(np.float32) if self.float16 else score

    def add(self, index: int, score: np.ndarray, gt: np.ndarray, *, sequence: str = "",
            kept: np.ndarray | None = None, predicted: np.ndarray | None = None,
            semantic: np.ndarray | None = None, latency: float | None = None) -> None:
        """One frame: ``score`` at the ground truth's size; ``kept`` (default ``score``) for pass 2."""
        if score.shape != gt.shape:
            raise EvaluationError(f"head {self.name}: score {score.shape} and ground truth {gt.shape} differ")
        score = self._stored(score)
        self.pixel.update(score, gt)
        if self.smiyc_pixel is not None:
            self.smiyc_pixel.update(score, gt)
        self.sequences.setdefault(sequence, StreamingOODMetrics(SEQUENCE_BINS)).update(score, gt)
        # smiyc replays the very scores of pass 1 (resized again in float32); exact needs float16 only
        kept_type = np.float32 if self.protocol == "smiyc" else np.float16
        self.kept.append((index, (score if kept is None else kept).astype(kept_type)))
        if predicted is not None and semantic is not None:
            if self.confusion is None:
                self.confusion = ConfusionMatrix(len(self.class_names), self.class_names)
            self.confusion.update(predicted, semantic)
        if latency is not None:
            self.latencies.append(latency)

    def threshold(self) -> float:
        if self.component_threshold is not None and not math.isnan(self.component_threshold):
            return self.component_threshold
        if self.smiyc_pixel is not None:
            return float(self.smiyc_pixel.compute()["best_f1_threshold"])
        return float(best_f1_threshold(self.pixel))

    def second_pass(self, labels: Mapping[int, np.ndarray], keep_worst: int) -> None:
        """Component metrics (and worst frames) at the SMIYC threshold from the kept scores, then frees them."""
        threshold = self.threshold()
        self.component_threshold = threshold
        if self.protocol == "smiyc":
            if self.float16:  # the benchmark (numpy 1.23, as it pins) compares float16 maps in float16
                threshold = float(np.float16(threshold))
            self.smiyc_segments = SmiycSegmentMetric(self.kind, threshold)
        else:
            self.components = ComponentMetrics(self.kind)
        for index, score in self.kept:
            gt = labels[index]
            full = self._stored(resize_score(score, gt.shape))
            if self.smiyc_segments is not None:
                self.smiyc_segments.update(full, gt)
                mask = full > threshold  # the benchmark's comparison
            else:
                mask = full >= threshold
                self.components.update(mask, gt)
            errors = int(((mask != (gt == OOD_ANOMALY)) & (gt != OOD_IGNORE)).sum())
            heapq.heappush(self.worst, (errors, index))
            self.worst_scores[index] = score
            if len(self.worst) > keep_worst:
                self.worst_scores.pop(heapq.heappop(self.worst)[1])
        self.kept.clear()

    def result(self) -> dict[str, Any]:
        pixel = self.pixel.compute()
        result: dict[str, Any] = {"protocol": self.protocol, "float16": self.float16}
        result.update({k: pixel[k] for k in ("ap", "fpr95", "auroc", "pixels_in", "pixels_out")})
        result["frames"] = pixel["frames"]
        if self.smiyc_pixel is not None:
            result["exact"] = {k: pixel[k] for k in ("ap", "fpr95", "auroc")}
            result.update({k: v for k, v in self.smiyc_pixel.compute().items() if k in ("ap", "fpr95", "auroc")})
        components = (self.smiyc_segments or self.components)
        if components is not None:
            components = components.compute()
            result.update({k: components[k] for k in ("siou", "ppv", "mean_f1", "gt_components",
                                                      "pred_components")})
        result["component_threshold"] = self.component_threshold
        if self.confusion is not None:
            miou = self.confusion.compute()
            result["miou"] = miou["miou"]
            result["iou_per_class"] = miou["iou_per_class"]
        if self.latencies:
            latencies = np.asarray(self.latencies)
            result.update(latency_ms=float(latencies.mean()), latency_p50_ms=float(np.percentile(latencies, 50)),
                          latency_p95_ms=float(np.percentile(latencies, 95)))
        if self.temporal is not None:
            result["temporal"] = self.temporal
        result["sequences"] = {
            name: {k: v for k, v in metrics.compute().items() if k in ("ap", "fpr95", "auroc", "frames")}
            for name, metrics in sorted(self.sequences.items())
        }
        return result

    def state_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "kind": self.kind, "component_threshold": self.component_threshold,
            "pixel": self.pixel.state_dict(),
            "sequences": {k: v.state_dict() for k, v in self.sequences.items()},
            "components": self.components.state_dict() if self.components else None,
            "confusion": self.confusion.state_dict() if self.confusion else None,
            "latencies": self.latencies,
            "protocol": self.protocol, "float16": self.float16,
            "smiyc_pixel": self.smiyc_pixel.state_dict() if self.smiyc_pixel else None,
            "smiyc_segments": self.smiyc_segments.state_dict() if self.smiyc_segments else None,
        }

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> HeadRun:
        run = cls(state["name"], state["kind"], state["component_threshold"],
                  pixel=StreamingOODMetrics.from_state_dict(state["pixel"]),
                  protocol=state.get("protocol", "exact"), float16=bool(state.get("float16", False)),
                  smiyc_pixel=SmiycPixelMetric.from_state_dict(state["smiyc_pixel"]) if state.get("smiyc_pixel")
                  else None)
        if state.get("smiyc_segments"):
            run.smiyc_segments = SmiycSegmentMetric.from_state_dict(state["smiyc_segments"])
        run.sequences = {k: StreamingOODMetrics.from_state_dict(v) for k, v in state["sequences"].items()}
        if state.get("components"):
            run.components = ComponentMetrics.from_state_dict(state["components"])
        if state.get("confusion"):
            run.confusion = ConfusionMatrix.from_state_dict(state["confusion"])
        run.latencies = list(state.get("latencies", []))
        return run

    def merge(self, other: HeadRun) -> HeadRun:
        if other.component_threshold != self.component_threshold:
            raise EvaluationError(f"head {self.name}: shards used different component thresholds "
                                  f"({self.component_threshold} vs {other.component_threshold})")
        self.pixel.merge(other.pixel)
        for name, metrics in other.sequences.items():
            if name in self.sequences:
                self.sequences[name].merge(metrics)
            else:
                self.sequences[name] = metrics
        if (other.protocol, other.float16) != (self.protocol, self.float16):
            raise EvaluationError(f"head {self.name}: shards used different protocols ({self.protocol} vs "
                                  f"{other.protocol}, float16 {self.float16} vs {other.float16})")
        for attr in ("components", "confusion", "smiyc_pixel", "smiyc_segments"):
            mine, theirs = getattr(self, attr), getattr(other, attr)
            if mine is not None and theirs is not None:
                mine.merge(theirs)
            elif theirs is not None:
                setattr(self, attr, theirs)
        self.latencies.extend(other.latencies)
        return self


@dataclass
class EvaluationRun:
    """Per-head accumulators after pass 2, ready for a report or a partial file."""

    heads: dict[str, HeadRun]
    meta: dict[str, Any]

    def results(self) -> dict[str, dict[str, Any]]:
        return {name: run.result() for name, run in self.heads.items()}

    def write(self, out_dir: str | Path) -> dict[str, dict[str, Any]]:
        """``metrics.json``, CSV, PR/ROC curves; returns the per-head results."""
        results = self.results()
        curves = {name: run.pixel.curves() for name, run in self.heads.items() if run.pixel.frames}
        write_report(out_dir, results, curves, meta=self.meta)
        return results

    def write_partial(self, path: str | Path) -> None:
        payload = {"format": PARTIAL_FORMAT, "meta": self.meta,
                   "heads": {name: run.state_dict() for name, run in self.heads.items()}}
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(payload))


class Accumulator:
    """Frames in, an :class:`EvaluationRun` out; the same add-a-frame sequence for every caller.

    Args:
        kind: ``obstacle`` or ``anomaly`` (SMIYC component size filters).
        thresholds: head name -> fixed component threshold (None = the run's best-F1 threshold).
        class_names: head name -> the classes its segmenter predicts (Cityscapes' when not given).
        protocol: ``exact`` or ``smiyc`` (see the module docstring).
        float16: round scores to float16 before every metric, as the SMIYC benchmark stores them.
    """

    def __init__(self, kind: str, thresholds: Mapping[str, float | None],
                 class_names: Mapping[str, Sequence[str]] | None = None, *, protocol: str = "exact",
                 float16: bool = False) -> None:
        names = dict(class_names or {})
        self.heads = {name: HeadRun(name, kind, threshold, class_names=tuple(names.get(name, CLASS_NAMES)),
                                    protocol=protocol, float16=float16)
                      for name, threshold in thresholds.items()}
        self.labels = CompressedLabels()
        self.kind = kind

    @property
    def frames(self) -> int:
        return len(self.labels)

    def add(self, index: int, gt: np.ndarray, scores: Mapping[str, np.ndarray], *, sequence: str = "",
            kept: Mapping[str, np.ndarray] | None = None, predicted: Mapping[str, np.ndarray] | None = None,
            semantic: np.ndarray | None = None, latency: Mapping[str, float] | None = None) -> None:
        """One frame's ground truth and its heads' scores.

        Args:
            index: the frame's position (names the worst frames; must be unique within the run).
            gt: HxW 0/1/255 anomaly ground truth.
            scores: head -> HxW score at the ground truth's size.
            sequence: the sequence the frame belongs to (per-sequence breakdown).
            kept: head -> the score to keep for pass 2 (e.g. at the logits' resolution; default ``scores``).
            predicted: head -> HxW class ids its segmenter predicted (inlier mIoU against ``semantic``).
            semantic: HxW class ids of the frame in its heads' label space, when known.
            latency: head -> milliseconds for this frame.
        """
        if index in self.labels:
            raise EvaluationError(f"frame index {index} added twice")
        for name, score in scores.items():
            self.heads[name].add(index, score, gt, sequence=sequence, kept=(kept or {}).get(name),
                                 predicted=(predicted or {}).get(name), semantic=semantic,
                                 latency=(latency or {}).get(name))
        self.labels.keep(index, gt)

    def finish(self, *, keep_worst: int = 0, meta: Mapping[str, Any] | None = None) -> EvaluationRun:
        """Pass 2 for every head; raises EvaluationError when no frame was added."""
        if not self.frames:
            raise EvaluationError("no frames to evaluate")
        for run in self.heads.values():
            run.second_pass(self.labels, keep_worst)
        return EvaluationRun(self.heads, {**(meta or {}), "kind": self.kind, "frames": self.frames})


def merge_partials(paths: Sequence[str | Path]) -> EvaluationRun:
    """Merge shard results (``partial.json`` files or the folders holding them) into one run."""
    merged: EvaluationRun | None = None
    for path in paths:
        path = Path(path)
        if path.is_dir():
            path = path / "partial.json"
        try:
            payload = json.loads(path.read_text())
        except (OSError, ValueError) as error:
            raise EvaluationError(f"cannot read partial result {path}: {error}") from None
        if payload.get("format") != PARTIAL_FORMAT:
            raise EvaluationError(f"{path} is not a partial evaluation result")
        run = EvaluationRun({k: HeadRun.from_state_dict(v) for k, v in payload["heads"].items()}, payload["meta"])
        if merged is None:
            merged = run
            merged.meta = {**run.meta, "merged_from": []}
        else:
            for name, head in run.heads.items():
                if name not in merged.heads:
                    raise EvaluationError(f"{path} has head {name} that the first partial lacks")
                merged.heads[name].merge(head)
        merged.meta["merged_from"].append(str(path))
    if merged is None:
        raise EvaluationError("nothing to merge")
    merged.meta.pop("shard", None)
    return merged
