# Copyright 2026 The ood_seg_node developers. Licensed under the Apache License, Version 2.0.
"""Offline evaluation of heads over a frame source: a dataset, a bag, or precomputed score maps.

Pass 1 runs each segmenter once per frame for all heads that share it, accumulates the pooled pixel
metrics (and a per-sequence breakdown, and inlier mIoU where semantic labels exist), and keeps each head's
score at native resolution (float16) plus the ground truth as PNG bytes. Pass 2 replays the kept scores at
the SMIYC threshold (the run's best pixel F1, or a fixed one) for the component metrics and the worst
frames. Sharded runs (``shard=(i, n)``) take every n-th frame; their partial states merge exactly, which
needs a component threshold fixed before the run (the head's calibrated one unless given).
"""

from __future__ import annotations

import heapq
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Protocol, Sequence

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from ood_seg_node.cityscapes import NUM_CLASSES, OOD_ANOMALY, OOD_IGNORE
from ood_seg_node.datasets.base import Frame
from ood_seg_node.evaluation.components import ComponentMetrics, best_f1_threshold
from ood_seg_node.evaluation.metrics import ConfusionMatrix, EvaluationError, StreamingOODMetrics
from ood_seg_node.evaluation.report import overlay, write_report

SEQUENCE_BINS = 1 << 12  # per-sequence breakdowns are many; a coarser histogram keeps them small
PARTIAL_FORMAT = "ood_seg_node.evaluation.partial"
IMAGE_SUFFIXES = ("_leftImg8bit",)


class Scorer(Protocol):
    """Produces native-resolution scores of one or more heads for a frame."""

    names: list[str]
    thresholds: dict[str, float]  # calibrated default threshold per head (NaN if unknown)

    def score(self, frame: Frame) -> tuple[dict[str, np.ndarray], np.ndarray | None, dict[str, float]]:
        """-> ({head: score (h, w)}, labels (H, W) or None, {head: latency ms})."""


class PipelineScorer:
    """Heads sharing one segmenter forward per frame (see :class:`ood_seg_node.pipeline.Pipeline`)."""

    def __init__(self, pipeline) -> None:
        self.pipeline = pipeline
        self.names = [head.name for head in pipeline.heads]
        self.thresholds = {head.name: float(head.default_threshold) for head in pipeline.heads}

    def score(self, frame: Frame) -> tuple[dict[str, np.ndarray], np.ndarray | None, dict[str, float]]:
        labels, scores, timings = self.pipeline.infer(frame.image)
        shared = timings["preprocess"] + timings["segmenter"]
        height, width = frame.image.shape[:2]
        labels_np = cv2.resize(labels.to(torch.uint8).cpu().numpy(), (width, height),
                               interpolation=cv2.INTER_NEAREST)
        latency = {name: shared + timings[f"head:{name}"] for name in self.names}
        return {name: s.cpu().numpy() for name, s in scores.items()}, labels_np, latency


class ScoreFileScorer:
    """Precomputed score maps: ``<dir>/<frame name>.npy`` float32 per frame, as external methods write."""

    def __init__(self, directory: str | Path, name: str = "") -> None:
        self.directory = Path(directory)
        if not self.directory.is_dir():
            raise EvaluationError(f"score folder not found: {self.directory}")
        self.names = [name or self.directory.name]
        self.thresholds = {self.names[0]: math.nan}

    def path(self, frame: Frame) -> Path:
        """``<name>.npy``; benchmarks name Lost&Found / Cityscapes-style frames without the image suffix."""
        path = self.directory / f"{frame.name}.npy"
        if not path.is_file():
            for suffix in IMAGE_SUFFIXES:
                if frame.name.endswith(suffix) and (self.directory / f"{frame.name[:-len(suffix)]}.npy").is_file():
                    return self.directory / f"{frame.name[:-len(suffix)]}.npy"
        return path

    def score(self, frame: Frame) -> tuple[dict[str, np.ndarray], np.ndarray | None, dict[str, float]]:
        path = self.path(frame)
        if not path.is_file():
            raise EvaluationError(f"no score file for frame {frame.name}: {path}")
        try:
            score = np.load(path, allow_pickle=False)
        except (ValueError, OSError) as error:
            raise EvaluationError(f"cannot read score file {path}: {error}") from None
        if score.ndim != 2:
            raise EvaluationError(f"score file {path} has shape {score.shape}, expected HxW")
        return {self.names[0]: score.astype(np.float32, copy=False)}, None, {}


def upsample(score: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of a score map to the label size (the pipeline's convention)."""
    if score.shape == tuple(size):
        return score.astype(np.float32, copy=False)
    tensor = torch.from_numpy(np.ascontiguousarray(score, dtype=np.float32))[None, None]
    return F.interpolate(tensor, size=size, mode="bilinear", align_corners=False)[0, 0].numpy()


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

    def add(self, index: int, frame: Frame, score: np.ndarray, latency: float | None) -> None:
        full = upsample(score, frame.ood_gt.shape)
        self.pixel.update(full, frame.ood_gt)
        self.sequences.setdefault(frame.sequence, StreamingOODMetrics(SEQUENCE_BINS)).update(full, frame.ood_gt)
        self.kept.append((index, score.astype(np.float16)))
        if latency is not None:
            self.latencies.append(latency)

    def threshold(self) -> float:
        if self.component_threshold is not None and not math.isnan(self.component_threshold):
            return self.component_threshold
        return float(best_f1_threshold(self.pixel))

    def second_pass(self, labels: dict[int, np.ndarray], keep_worst: int) -> None:
        """Component metrics (and worst frames) at the SMIYC threshold from the kept scores, then frees them."""
        threshold = self.threshold()
        self.component_threshold = threshold
        self.components = ComponentMetrics(self.kind)
        for index, score in self.kept:
            gt = labels[index]
            mask = upsample(score.astype(np.float32), gt.shape) >= threshold
            self.components.update(mask, gt)
            errors = int(((mask != (gt == OOD_ANOMALY)) & (gt != OOD_IGNORE)).sum())
            heapq.heappush(self.worst, (errors, index))
            if len(self.worst) > keep_worst:
                heapq.heappop(self.worst)
        self.kept.clear()

    def result(self) -> dict[str, Any]:
        pixel = self.pixel.compute()
        result: dict[str, Any] = {k: pixel[k] for k in ("ap", "fpr95", "auroc", "pixels_in", "pixels_out")}
        result["frames"] = pixel["frames"]
        if self.components is not None:
            components = self.components.compute()
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
        }

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> HeadRun:
        run = cls(state["name"], state["kind"], state["component_threshold"],
                  pixel=StreamingOODMetrics.from_state_dict(state["pixel"]))
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
        for attr in ("components", "confusion"):
            mine, theirs = getattr(self, attr), getattr(other, attr)
            if mine is not None and theirs is not None:
                mine.merge(theirs)
            elif theirs is not None:
                setattr(self, attr, theirs)
        self.latencies.extend(other.latencies)
        return self


@dataclass
class EvaluationRun:
    """Result of :func:`evaluate_frames`: per-head accumulators, ready for a report or a partial file."""

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


def evaluate_frames(
    frames: Callable[[], Iterable[Frame]],
    scorers: Sequence[Scorer],
    *,
    kind: str,
    total: int | None = None,
    shard: tuple[int, int] = (0, 1),
    component_thresholds: dict[str, float] | None = None,
    overlays_dir: str | Path | None = None,
    overlays: int = 4,
    meta: dict[str, Any] | None = None,
) -> EvaluationRun:
    """Evaluate every scorer's heads on the frames (``frames()`` is called again for overlays).

    Args:
        frames: returns a fresh iterable of frames each call (a dataset, or a bag reader factory).
        scorers: heads grouped by the forward pass they share.
        kind: ``obstacle`` or ``anomaly`` (SMIYC component size filters).
        total: frame count for the progress bar.
        shard: (i, n): evaluate frames whose position p satisfies p % n == i.
        component_thresholds: fixed component thresholds per head; required per head when sharding
            (defaults to the head's calibrated threshold there).
        overlays_dir: where to write the worst frames' overlays (None = none).
        overlays: worst frames kept per head.
        meta: run metadata stored in the report.
    """
    index_of_shard, shards = shard
    sharded = shards > 1
    fixed = dict(component_thresholds or {})
    heads: dict[str, HeadRun] = {}
    for scorer in scorers:
        for name in scorer.names:
            if name in heads:
                raise EvaluationError(f"head {name} given twice")
            threshold = fixed.get(name)
            if sharded and threshold is None:
                threshold = scorer.thresholds.get(name, math.nan)
                if math.isnan(threshold):
                    raise EvaluationError(f"sharded evaluation needs a fixed component threshold for {name} "
                                          "(--component-threshold)")
            heads[name] = HeadRun(name, kind, threshold)
    labels: dict[int, bytes] = {}
    evaluated = 0
    for position, frame in enumerate(tqdm(frames(), total=total, desc="evaluating", unit="frame")):
        if position % shards != index_of_shard:
            continue
        if frame.ood_gt is None:
            raise EvaluationError(f"frame {frame.name} has no anomaly ground truth")
        for scorer in scorers:
            scores, predicted, latency = scorer.score(frame)
            for name, score in scores.items():
                heads[name].add(position, frame, score, latency.get(name))
                if predicted is not None and frame.semantic is not None:
                    if heads[name].confusion is None:
                        heads[name].confusion = ConfusionMatrix(NUM_CLASSES)
                    heads[name].confusion.update(predicted, frame.semantic)
        labels[position] = cv2.imencode(".png", frame.ood_gt)[1].tobytes()
        evaluated += 1
    if not evaluated:
        raise EvaluationError("no frames to evaluate")
    decoded = CompressedLabels(labels)
    for run in heads.values():
        run.second_pass(decoded, overlays)
    if overlays_dir is not None and overlays > 0:
        _write_overlays(Path(overlays_dir), frames, scorers, heads)
    return EvaluationRun(heads, {**(meta or {}), "kind": kind, "frames": evaluated,
                                 **({"shard": f"{index_of_shard}/{shards}"} if sharded else {})})


class CompressedLabels(dict):
    """PNG-compressed ground truth decoded on access (keeps pass-2 memory small)."""

    def __getitem__(self, index: int) -> np.ndarray:
        return cv2.imdecode(np.frombuffer(super().__getitem__(index), np.uint8), cv2.IMREAD_UNCHANGED)


def _write_overlays(out: Path, frames: Callable[[], Iterable[Frame]], scorers: Sequence[Scorer],
                    heads: dict[str, HeadRun]) -> None:
    wanted = {index: [] for run in heads.values() for _, index in run.worst}
    for run in heads.values():
        for rank, (_, index) in enumerate(sorted(run.worst, reverse=True)):
            wanted[index].append((run.name, rank))
    out.mkdir(parents=True, exist_ok=True)
    for position, frame in _pick(frames(), wanted):
        for scorer in scorers:
            scores, _, _ = scorer.score(frame)
            for name, rank in wanted[position]:
                if name in scores:
                    full = upsample(scores[name], frame.ood_gt.shape)
                    picture = overlay(frame.image, full, frame.ood_gt, heads[name].component_threshold)
                    path = out / f"worst_{name}_{rank + 1}_{frame.name}.png"
                    cv2.imwrite(str(path), cv2.cvtColor(picture, cv2.COLOR_RGB2BGR))


def _pick(frames: Iterable[Frame], wanted: dict[int, Any]) -> Iterator[tuple[int, Frame]]:
    last = max(wanted, default=-1)
    for position, frame in enumerate(frames):
        if position in wanted:
            yield position, frame
        if position >= last:
            return
