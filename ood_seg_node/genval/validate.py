# Copyright 2026 The ood_seg_node developers. Licensed under the Apache License, Version 2.0.
"""``ood_seg validate``'s engine: synthetic validation conditions from the user's frames, measured and calibrated.

GenVal (Loiseau et al., ECCV 2024) evaluates a segmenter on label-preserving synthetic variants of in-domain
images -- the same scenes under covariate shifts, and with OOD objects inserted with exact masks -- and uses the
data to calibrate. Here every source frame is rendered under each condition: ``clean`` and ``<shift>@<severity>``
for each selected shift and severity, each with the same objects inserted when insertion is on (the objects
get their own ground truth, so frames without labels still measure the heads). Per condition: mIoU (where the
frames have class labels; inserted objects are left out), pixel ECE and NLL before and after temperature
scaling, and per head AP / FPR95 / AUROC / component F1. The temperature (ECE grid search, as the paper) and
each head's mask threshold for a target TPR or FPR are fitted on the fit frames of every condition and
checked on held-out frames (every ``holdout``-th source frame).

Deviations from the paper, and why: the shifts are seeded image-space effects (with the source's depth or a
flat-ground prior for fog, and the synthetic world's own wet road) rather than diffusion-generated weather, so
that a run is reproducible and cheap enough for every recording; objects are pasted (procedural or the user's
RGBA cut-outs) unless a local diffusion inpainting model is given (:mod:`ood_seg_node.genval.inpaint`).
"""

from __future__ import annotations

import functools
import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

import cv2
import numpy as np
from tqdm import tqdm

from ood_seg_node.datasets.base import Frame
from ood_seg_node.evaluation import EvaluationError, StreamingOODMetrics
from ood_seg_node.evaluation.accumulator import Accumulator
from ood_seg_node.genval.calibration import (
    CalibrationSample,
    RateCounter,
    fit_temperature,
    reliability,
    resample_nearest,
)
from ood_seg_node.genval.geometry import GroundCamera
from ood_seg_node.genval.insertion import Inserted, ObjectBank, insert_objects
from ood_seg_node.genval.shifts import apply_shift

__all__ = ["Condition", "ValidationOptions", "ValidationResult", "conditions_for", "run_validation"]


@dataclass(frozen=True)
class Condition:
    """One synthetic validation condition (``shift`` None = the clean frames)."""

    shift: str | None = None
    severity: int = 0
    insert: bool = False

    @property
    def name(self) -> str:
        return "clean" if self.shift is None else f"{self.shift}@{self.severity}"


WORLD_WETNESS = {1: 0.4, 2: 0.7, 3: 1.0}  # road wetness the synthetic world renders for rain at each severity


def conditions_for(shifts: Iterable[str], severities: Iterable[int], insert: bool) -> list[Condition]:
    """``clean`` first, then every shift at every severity; all with insertions when ``insert``."""
    return [Condition(None, 0, insert)] + [Condition(s, k, insert) for s in shifts for k in severities]


@dataclass
class ValidationOptions:
    """What to generate and fit (the command's flags)."""

    shifts: tuple[str, ...] = ()
    severities: tuple[int, ...] = (1, 2, 3)
    objects_per_frame: int = 2
    bank: ObjectBank | None = None
    seed: int = 0
    holdout_every: int = 3
    target_tpr: float | None = None
    target_fpr: float | None = None
    kind: str = "obstacle"
    camera: GroundCamera | None = None  # the source's camera; None = the flat-ground prior per image size
    horizon_fraction: float | None = None  # the prior's horizon row / image height (None = 0.47)
    inserter: Callable[..., Inserted] | None = None  # e.g. a DiffusionInpainter; None = paste from ``bank``
    world: Any = None  # the synthetic source's sequence: renders the wet road of ``rain`` itself


@dataclass
class ValidationResult:
    """Everything ``report.json`` holds, plus the fitted calibration."""

    conditions: list[dict[str, Any]] = field(default_factory=list)
    temperature: float | None = None  # None: no class labels to fit one on
    thresholds: dict[str, dict[str, Any]] = field(default_factory=dict)
    reliability_clean: dict[str, Any] = field(default_factory=dict)
    reliability_heldout: dict[str, Any] = field(default_factory=dict)  # every condition's held-out pixels
    examples: list[tuple[str, np.ndarray]] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)


class _Generator:
    """Renders a source frame under a condition; insertions identical across conditions (same seed per frame)."""

    def __init__(self, options: ValidationOptions) -> None:
        self.options = options
        self.insert = options.inserter or functools.partial(
            insert_objects, bank=options.bank or ObjectBank.procedural(seed=options.seed))
        # position -> (packed road mask, its shape); from the labels, or the segmenter's prediction on the clean frame
        self.roads: dict[int, tuple[np.ndarray, tuple[int, int]]] = {}
        self.wet_worlds: dict[int, Any] = {}

    def remember_road(self, position: int, road: np.ndarray) -> None:
        self.roads[position] = np.packbits(road), road.shape

    def road(self, position: int) -> np.ndarray:
        packed, (height, width) = self.roads[position]
        return np.unpackbits(packed, count=height * width).reshape(height, width).astype(bool)

    def render(self, position: int, frame: Frame, condition: Condition) -> tuple[np.ndarray, np.ndarray,
                                                                                np.ndarray | None]:
        """(image, anomaly ground truth 0/1/255, class labels with inserted objects void or None)."""
        image, gt, semantic = frame.image, frame.ood_gt, frame.semantic
        height, width = image.shape[:2]
        world_wet = condition.shift == "rain" and self.options.world is not None
        if world_wet:  # the same frame with the world's own wet road (same geometry, same labels)
            if condition.severity not in self.wet_worlds:
                self.wet_worlds[condition.severity] = self.options.world.under(wet=WORLD_WETNESS[condition.severity])
            image = self.wet_worlds[condition.severity][frame.index].image
        camera = self.options.camera
        if camera is None or (camera.height, camera.width) != (height, width):
            camera = GroundCamera.default(height, width, horizon_fraction=self.options.horizon_fraction or 0.47)
        road = self.road(position)
        if condition.insert and self.options.objects_per_frame > 0:
            inserted = self.insert(image, road, count=self.options.objects_per_frame,
                                   seed=self.options.seed * 100003 + position, camera=camera, ood_gt=gt)
            objects = (inserted.ood_gt == 1) & ~((gt == 1) if gt is not None else False)
            image, gt = inserted.image, inserted.ood_gt
            if semantic is not None:
                semantic = np.where(objects, np.uint8(255), semantic)
        elif gt is None:
            gt = np.where(road, np.uint8(0), np.uint8(255))
        if condition.shift is not None:
            # fog by the source's own depth where it has one (the synthetic world's), else the flat-ground prior
            depth = np.minimum(frame.depth, camera.max_depth) if frame.depth is not None else camera.depth_map()
            image = apply_shift(image, condition.shift, condition.severity, seed=self.options.seed * 7919 + position,
                                depth=depth, road_rendered_wet=world_wet)
        return image, gt, semantic


def _road_mask(frame: Frame, predicted: np.ndarray | None, space) -> np.ndarray:
    """Drivable area: labelled road when the frame has labels in the segmenter's space, else the prediction's."""
    road = space.class_names.index("road") if "road" in space.class_names else 0
    return (frame.semantic if predicted is None else predicted) == road


def _thumbnail(image: np.ndarray, width: int = 480) -> np.ndarray:
    if image.shape[1] <= width:
        return image
    height = round(image.shape[0] * width / image.shape[1])
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)


def run_validation(frames: Callable[[], Iterable[Frame]], pipeline, options: ValidationOptions, *,
                   total: int | None = None) -> ValidationResult:
    """Generate every condition from the frames, measure the pipeline's heads on it, fit the calibration.

    Args:
        frames: returns a fresh iterable of source frames each call (one pass per condition).
        pipeline: a :class:`~ood_seg_node.pipeline.Pipeline` built with ``keep_logits=True``; its first head is
            the one the threshold is written for (every head is measured and gets a threshold).
        options: conditions, insertion and calibration targets.
        total: number of source frames (progress bars).
    """
    if (options.target_tpr is None) == (options.target_fpr is None):
        raise ValueError("give exactly one of target_tpr and target_fpr")
    result = ValidationResult()
    generator = _Generator(options)
    space = pipeline.segmenter.label_space
    conditions = conditions_for(options.shifts, options.severities, options.objects_per_frame > 0)
    fit_scores = {name: StreamingOODMetrics(1 << 16) for name in pipeline.names}
    fit_sample = CalibrationSample(seed=options.seed)
    held_samples: dict[str, CalibrationSample] = {}
    held_rates: dict[str, list[tuple[int, np.ndarray, dict[str, np.ndarray]]]] = {}
    started = time.perf_counter()
    for condition in conditions:
        accumulator = Accumulator(options.kind, {name: None for name in pipeline.names},
                                  {name: space.class_names for name in pipeline.names})
        held = held_samples.setdefault(condition.name, CalibrationSample(limit=60_000, seed=options.seed + 1))
        for position, frame in enumerate(tqdm(frames(), total=total, desc=f"validate {condition.name}",
                                              unit="frame", leave=False)):
            source = None  # the segmenter's result on the source frame, when the road had to be predicted
            if position not in generator.roads:
                known = frame.semantic is not None and frame.label_space == space.name
                source = None if known else pipeline.process(frame.image)
                generator.remember_road(position, _road_mask(frame, None if known else source.labels, space))
            image, gt, semantic = generator.render(position, frame, condition)
            out = source if source is not None and image is frame.image else pipeline.process(image)
            labelled = semantic is not None and frame.label_space == space.name
            accumulator.add(position, gt, out.scores, kept=out.native_scores,
                            predicted={name: out.labels for name in out.scores} if labelled else None,
                            semantic=semantic if labelled else None)
            is_held = position % options.holdout_every == options.holdout_every - 1
            if labelled and out.logits is not None:
                (held if is_held else fit_sample).add(out.logits, semantic)
            # thresholds are fitted and checked at the scores' native resolution (what the node thresholds
            # for its obstacles; the upsampled mask covers the same share of pixels)
            native_gt = resample_nearest(gt, next(iter(out.native_scores.values())).shape)
            if is_held:
                held_rates.setdefault(condition.name, []).append((position, native_gt, out.native_scores))
            else:
                for name in pipeline.names:
                    fit_scores[name].update(out.native_scores[name], native_gt)
            if position == 0:
                result.examples.append((condition.name, _thumbnail(image)))
        if not accumulator.frames:
            raise EvaluationError("no source frames to validate on")
        heads = accumulator.finish(meta={"condition": condition.name}).results()
        result.conditions.append({"condition": condition.name, "shift": condition.shift or "none",
                                  "severity": condition.severity, "insertions": condition.insert,
                                  "heads": {name: _head_summary(r) for name, r in heads.items()},
                                  "miou": next((r["miou"] for r in heads.values() if "miou" in r), math.nan)})
    result.seconds["generate_and_measure"] = time.perf_counter() - started
    _calibrate(result, pipeline.names, fit_scores, fit_sample, held_samples, held_rates, options)
    return result


def _head_summary(r: dict[str, Any]) -> dict[str, Any]:
    keys = ("ap", "fpr95", "auroc", "siou", "ppv", "mean_f1", "component_threshold", "pixels_out")
    return {k: r[k] for k in keys if k in r}


def _calibrate(result: ValidationResult, names: list[str], fit_scores: dict[str, StreamingOODMetrics],
               fit_sample: CalibrationSample, held_samples: dict[str, CalibrationSample],
               held_rates: dict[str, list[tuple[int, np.ndarray, dict[str, np.ndarray]]]],
               options: ValidationOptions) -> None:
    """Temperature (ECE grid search on fit pixels) and per-head thresholds; both checked on held-out frames."""
    logits, labels = fit_sample.arrays()
    temperature = fit_temperature(logits, labels)[0] if labels.size else None
    result.temperature = temperature
    clean = result.conditions[0]["miou"]
    for entry in result.conditions:
        entry["miou_drop"] = clean - entry["miou"] if math.isfinite(entry["miou"]) else math.nan
        held_logits, held_labels = held_samples[entry["condition"]].arrays()
        if held_labels.size:
            before, after = reliability(held_logits, held_labels), reliability(held_logits, held_labels, temperature)
            entry.update(ece=before["ece"], nll=before["nll"], ece_calibrated=after["ece"],
                         nll_calibrated=after["nll"])
            if entry["condition"] == "clean":
                result.reliability_clean = {"before": before, "after": after}
        else:
            entry.update(ece=math.nan, nll=math.nan, ece_calibrated=math.nan, nll_calibrated=math.nan)
    pooled = [held.arrays() for held in held_samples.values() if held.size]
    if pooled:
        held_logits, held_labels = np.concatenate([p[0] for p in pooled]), np.concatenate([p[1] for p in pooled])
        result.reliability_heldout = {"before": reliability(held_logits, held_labels),
                                      "after": reliability(held_logits, held_labels, temperature)}
    target = {"tpr": options.target_tpr} if options.target_tpr is not None else {"fpr": options.target_fpr}
    for name in names:
        try:
            threshold, fit_tpr, fit_fpr = fit_scores[name].operating_point(**target)
        except EvaluationError as error:
            raise EvaluationError(f"cannot fit the {name} threshold: {error} (insert objects, or validate on "
                                  "frames with anomaly labels)") from None
        counter = RateCounter(threshold)
        for frames in held_rates.values():
            for position, gt, scores in frames:
                counter.add(scores[name], gt, group=position)
        result.thresholds[name] = {"threshold": threshold, "target": target, "fit_tpr": fit_tpr,
                                   "fit_fpr": fit_fpr, "heldout_tpr": counter.tpr, "heldout_fpr": counter.fpr,
                                   "heldout_tpr_ci95": counter.interval("tpr"),
                                   "heldout_fpr_ci95": counter.interval("fpr"),
                                   "heldout_frames": len({p for frames in held_rates.values() for p, _, _ in frames}),
                                   "heldout_anomaly_pixels": counter.anomalies,
                                   "heldout_inlier_pixels": counter.inliers}
