# Copyright 2026 The ood_seg_node developers. Licensed under the Apache License, Version 2.0.
"""Offline evaluation of heads over a frame source (a dataset or a bag) or precomputed score maps.

Scores come from :meth:`ood_seg_node.pipeline.Pipeline.process`, the path the node runs, so an offline
figure and the node's output are computed alike; each segmenter runs once per frame for all heads that
share it. The metrics are accumulated by :class:`ood_seg_node.evaluation.accumulator.Accumulator`, as in
the online evaluator and the demo. Sharded runs (``shard=(i, n)``) take every n-th frame; their partial
states merge exactly, which needs a component threshold fixed before the run (the head's calibrated one
unless given).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, Protocol, Sequence

import cv2
import numpy as np
from tqdm import tqdm

from ood_seg_node.datasets.base import Frame
from ood_seg_node.evaluation.accumulator import Accumulator, EvaluationRun, HeadRun, resize_score
from ood_seg_node.evaluation.metrics import EvaluationError
from ood_seg_node.evaluation.report import overlay
from ood_seg_node.evaluation.score_layout import frame_id, read_score
from ood_seg_node.evaluation.temporal import TemporalMeter
from ood_seg_node.temporal import ObstacleTracker, TemporalFusion, Track


@dataclass
class Scores:
    """What a scorer produces for one frame."""

    full: dict[str, np.ndarray]  # head -> HxW score at the frame's size
    kept: dict[str, np.ndarray] = field(default_factory=dict)  # head -> score to keep for pass 2 (smaller)
    labels: np.ndarray | None = None  # HxW predicted class ids, when in the frame's label space
    latency_ms: dict[str, float] = field(default_factory=dict)
    tracks: dict[str, list[Track]] | None = None  # head -> the frame's obstacle tracks (temporal scorers)
    restarted: dict[str, bool] = field(default_factory=dict)  # head -> its fusion restarted without a cut
    fusion_ms: dict[str, float] = field(default_factory=dict)
    first: bool = False  # the frame starts a sequence
    pipeline_ms: float | None = None


class Scorer(Protocol):
    """Produces the scores of one or more heads for a frame."""

    names: list[str]
    thresholds: dict[str, float]  # calibrated default threshold per head (NaN if unknown)
    class_names: tuple[str, ...]  # the classes of ``Scores.labels`` (empty when it has none)

    def score(self, frame: Frame) -> Scores:
        """The frame's scores."""


class PipelineScorer:
    """Heads sharing one segmenter forward per frame (see :class:`ood_seg_node.pipeline.Pipeline`).

    With ``fusion_modes`` every head is also fused over time in each mode (one motion estimate per mode for
    all heads) and its obstacles tracked, as the node does: frames must come in sequence order; a new
    ``sequence`` or a gap in ``index`` starts a new sequence. One mode keeps the heads' names, several name
    them ``<head>@<mode>`` (``none`` keeps the plain name).
    """

    def __init__(self, pipeline, *, fusion_modes: Sequence[str] = (), alpha: float = 0.7,
                 confirm_hits: int = 3, window: int = 5, mask_thresholds: Mapping[str, float] | None = None) -> None:
        self.pipeline = pipeline
        self.thresholds = {name: float(head.default_threshold) for name, head in zip(pipeline.names, pipeline.heads)}
        self.label_space = pipeline.segmenter.label_space
        self.class_names = self.label_space.class_names
        self.fusions = {mode: TemporalFusion(mode, alpha=alpha) for mode in fusion_modes}
        self._label = {(mode, name): name if len(self.fusions) == 1 or mode == "none" else f"{name}@{mode}"
                       for mode in self.fusions for name in pipeline.names}
        self.names = list(self._label.values()) if self.fusions else list(pipeline.names)
        given = dict(mask_thresholds or {})  # by label (``msp@flow``), else by head (``msp``)
        self.mask_thresholds = {label: given.get(label, given.get(name, self.thresholds[name]))
                                for (_, name), label in self._label.items()}
        self.thresholds = {label: self.thresholds[name] for (_, name), label in self._label.items()} \
            if self.fusions else self.thresholds
        self._trackers = {label: ObstacleTracker(confirm_hits=confirm_hits, window=window)
                          for label in self._label.values()}
        self._last: tuple[str, int] | None = None

    @property
    def temporal(self) -> bool:
        return bool(self.fusions)

    def score(self, frame: Frame) -> Scores:
        """Scores and, when the frame's class ids are in the segmenter's label space, the predicted labels."""
        result = self.pipeline.process(frame.image)
        timings = result.timings_ms
        shared = timings["preprocess"] + timings["segmenter"]
        labels = result.labels if frame.label_space == self.label_space.name else None
        latency = {name: shared + timings[f"head:{name}"] for name in self.pipeline.names}
        if not self.fusions:
            return Scores(full=result.scores, kept=result.native_scores, labels=labels, latency_ms=latency)
        if "ground" in self.fusions and frame.view is None:
            raise EvaluationError(f"temporal fusion ground needs each frame's camera pose and intrinsics; frame "
                                  f"{frame.name} has none (the synthetic world has them; use flow elsewhere)")
        first = self._last is None or self._last != (frame.sequence, frame.index - 1)
        self._last = (frame.sequence, frame.index)
        if first:
            for fusion in self.fusions.values():
                fusion.reset()
            for tracker in self._trackers.values():
                tracker.reset()
        scores = Scores(full={}, labels=labels, tracks={}, first=first, pipeline_ms=timings["total"])
        size = frame.image.shape[:2]
        for mode, fusion in self.fusions.items():
            step = fusion.step(result.native_scores, frame.image, view=frame.view)
            for name, native in step.scores.items():
                label = self._label[mode, name]
                scores.full[label] = resize_score(native, size)
                scores.kept[label] = native
                _, scores.tracks[label] = self._trackers[label].follow(
                    native, self.mask_thresholds[label], self.pipeline.min_obstacle_area, size,
                    step.correspondence.get(native.shape))
                scores.restarted[label] = bool(step.restart) and not step.cut
                scores.fusion_ms[label] = step.elapsed_ms
                scores.latency_ms[label] = latency[name] + step.elapsed_ms
        return scores


class ScoreFileScorer:
    """Precomputed score maps, one file per frame, as external methods and the SMIYC benchmark write them.

    ``<dir>/<frame id>.hdf5`` (the benchmark's ``anomaly_p/<method>/<dataset>/`` folder: dataset ``value``,
    float16) or ``<dir>/<frame name>.npy`` (float32). Frame ids drop Lost&Found's ``_leftImg8bit`` tag. The
    method is named after the folder, or after ``<method>`` for a benchmark folder.
    """

    def __init__(self, directory: str | Path, name: str = "") -> None:
        self.directory = Path(directory)
        if not self.directory.is_dir():
            raise EvaluationError(f"score folder not found: {self.directory}")
        benchmark = self.directory.parent.parent.name == "anomaly_p"
        self.names = [name or (self.directory.parent.name if benchmark else self.directory.name)]
        self.thresholds = {self.names[0]: math.nan}
        self.class_names: tuple[str, ...] = ()

    def path(self, frame: Frame) -> Path:
        """The frame's score file: ``<id>.hdf5``, else ``<name>.npy`` or ``<id>.npy``."""
        candidates = [self.directory / f"{frame_id(frame.name)}.hdf5", self.directory / f"{frame.name}.npy",
                      self.directory / f"{frame_id(frame.name)}.npy"]
        return next((path for path in candidates if path.is_file()), candidates[1])

    def score(self, frame: Frame) -> Scores:
        path = self.path(frame)
        if not path.is_file():
            raise EvaluationError(f"no score file for frame {frame.name}: {path} (or {frame_id(frame.name)}.hdf5)")
        score = read_score(path)
        name = self.names[0]
        size = frame.image.shape[:2]
        return Scores(full={name: resize_score(score, size)}, kept={name: score})


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
    protocol: str = "exact",
    float16: bool = False,
) -> EvaluationRun:
    """Evaluate every scorer's heads on the frames (``frames()`` is called again for overlays).

    Args:
        frames: returns a fresh iterable of frames each call (a dataset, or a bag reader factory).
        scorers: heads grouped by the forward pass they share.
        kind: ``obstacle`` or ``anomaly`` (SMIYC component size filters).
        total: frame count for the progress bar.
        shard: (i, n): evaluate frames whose position p satisfies p % n == i. Frames without anomaly ground
            truth are skipped and counted (``frames_without_labels`` in the run's metadata).
        component_thresholds: fixed component thresholds per head; required per head when sharding
            (defaults to the head's calibrated threshold there).
        overlays_dir: where to write the worst frames' overlays (None = none).
        overlays: worst frames kept per head.
        meta: run metadata stored in the report.
        protocol: ``exact`` or ``smiyc`` (the benchmark's binned computation, see
            :mod:`ood_seg_node.evaluation.smiyc_protocol`).
        float16: round every score to float16 first, as the SMIYC benchmark's saver stores them.
    """
    index_of_shard, shards = shard
    sharded = shards > 1
    fixed = dict(component_thresholds or {})
    thresholds: dict[str, float | None] = {}
    for scorer in scorers:
        for name in scorer.names:
            if name in thresholds:
                raise EvaluationError(f"head {name} given twice")
            threshold = fixed.get(name)
            if sharded and threshold is None:
                threshold = scorer.thresholds.get(name, math.nan)
                if math.isnan(threshold):
                    raise EvaluationError(f"sharded evaluation needs a fixed component threshold for {name} "
                                          "(--component-threshold)")
            thresholds[name] = threshold
    temporal = [scorer for scorer in scorers if getattr(scorer, "temporal", False)]
    if temporal and sharded:
        raise EvaluationError("temporal fusion needs every frame of a sequence in order: no --shard with it")
    meter = TemporalMeter({name: value for scorer in temporal for name, value in scorer.mask_thresholds.items()},
                          min_area=temporal[0].pipeline.min_obstacle_area) if temporal else None
    accumulator = Accumulator(kind, thresholds, {name: scorer.class_names for scorer in scorers
                                                 for name in scorer.names if scorer.class_names},
                              protocol=protocol, float16=float16)
    unlabelled = 0
    for position, frame in enumerate(tqdm(frames(), total=total, desc="evaluating", unit="frame")):
        if position % shards != index_of_shard:
            continue
        if frame.ood_gt is None:  # e.g. a benchmark's test frames, whose labels are not public
            unlabelled += 1
            continue
        scores = [scorer.score(frame) for scorer in scorers]
        accumulator.add(
            position, frame.ood_gt, {k: v for s in scores for k, v in s.full.items()}, sequence=frame.sequence,
            kept={k: v for s in scores for k, v in s.kept.items()},
            predicted={name: s.labels for s in scores if s.labels is not None for name in s.full},
            semantic=frame.semantic, latency={k: v for s in scores for k, v in s.latency_ms.items()},
        )
        fused = [scored for scored in scores if scored.tracks is not None]
        if meter is not None:
            meter.add(frame, {k: v for s in fused for k, v in s.full.items()},
                      {k: v for s in fused for k, v in s.tracks.items()}, first=any(s.first for s in fused),
                      restarted={k: v for s in fused for k, v in s.restarted.items()},
                      fusion_ms={k: v for s in fused for k, v in s.fusion_ms.items()},
                      pipeline_ms={k: s.pipeline_ms for s in fused for k in s.full})
    if not accumulator.frames:
        raise EvaluationError(f"none of the {unlabelled} frames has anomaly ground truth (a benchmark's test labels "
                              "are not public: evaluate its validation frames, or export-scores for a submission)")
    run = accumulator.finish(keep_worst=overlays, meta={**(meta or {}), "frames_without_labels": unlabelled,
                                                        **({"shard": f"{index_of_shard}/{shards}"} if sharded else {})})
    if meter is not None:
        for name, figures in meter.result().items():
            run.heads[name].temporal = figures
    if overlays_dir is not None and overlays > 0:
        _write_overlays(Path(overlays_dir), frames, run.heads)
    return run


def _write_overlays(out: Path, frames: Callable[[], Iterable[Frame]], heads: dict[str, HeadRun]) -> None:
    """The worst frames of each head, drawn from the scores pass 2 kept.

    No second forward: and a fused score is the one of the frame's place in its sequence.
    """
    wanted: dict[int, list[tuple[str, int]]] = {index: [] for run in heads.values() for _, index in run.worst}
    for run in heads.values():
        for rank, (_, index) in enumerate(sorted(run.worst, reverse=True)):
            wanted[index].append((run.name, rank))
    out.mkdir(parents=True, exist_ok=True)
    for position, frame in _pick(frames(), wanted):
        for name, rank in wanted[position]:
            run = heads[name]
            score = resize_score(run.worst_scores[position], frame.image.shape[:2])
            picture = overlay(frame.image, score, frame.ood_gt, run.component_threshold)
            path = out / f"worst_{name}_{rank + 1}_{frame.name}.png"
            cv2.imwrite(str(path), cv2.cvtColor(picture, cv2.COLOR_RGB2BGR))


def _pick(frames: Iterable[Frame], wanted: dict[int, Any]) -> Iterator[tuple[int, Frame]]:
    last = max(wanted, default=-1)
    for position, frame in enumerate(frames):
        if position in wanted:
            yield position, frame
        if position >= last:
            return
