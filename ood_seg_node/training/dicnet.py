# Copyright 2026 The ood_seg_node developers. Licensed under the Apache License, Version 2.0.
"""``ood_seg train-head --head dicnet``: distil the frozen segmenter's neck into a light student.

Zhou et al., "Anomaly Discovery in Semantic Segmentation via Distillation Comparison Networks",
arXiv:2112.09908. The student regresses the teacher's standardised ``neck`` features (MSE) on inlier
pixels only; after every epoch the score normalisation is recalibrated on inlier validation pixels and
AP / AUROC / FPR95 are measured on the validation frames. After training, the best checkpoint is analysed
on the same validation frames for the paper's argument -- the share of *misclassified* inlier pixels that
DiCNet and MSP flag at their 95 %-TPR thresholds -- and the head's CPU overhead is timed.
"""

from __future__ import annotations

import json
import math
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ood_seg_node.cityscapes import IGNORE_INDEX, OOD_ANOMALY, OOD_INLIER
from ood_seg_node.datasets.base import Frame
from ood_seg_node.fastpath import FastPath
from ood_seg_node.heads.dicnet import DiCNet, DistillationStudent, FeatureStandardiser, feature_discrepancy
from ood_seg_node.segmenters import Segmenter, name_outputs
from ood_seg_node.training.common import Batch, HeadTrainingConfig, batches, cosine_lr, option
from ood_seg_node.training.distributed import masked_mean
from ood_seg_node.training.head_trainer import TRAINERS, HeadTrainer

WEIGHT_DECAY = 1e-4
STANDARDISER_FRAMES = 64  # teacher maps used for measured standardisation (segmenters without a neck BN)
SCORE_QUANTILES = (0.5, 0.99)  # calibration: centre = q50, scale = q99 - q50 of inlier discrepancy
_MIN_BN_SCALE = 1e-2  # |gamma| floor: a near-dead channel must not dominate the mean over channels
_MAX_QUANTILE_SAMPLES = 1 << 22  # torch.quantile refuses huge inputs; subsample beyond this


def standardiser_from_batchnorm(bn: nn.BatchNorm2d) -> FeatureStandardiser:
    """Undo the affine part of the BN that (through a ReLU) produced the neck."""
    standardiser = FeatureStandardiser(bn.num_features)
    with torch.no_grad():
        standardiser.shift.copy_(bn.bias.detach().float())
        standardiser.scale.copy_(bn.weight.detach().float().abs().clamp_min(_MIN_BN_SCALE))
    return standardiser


def standardiser_from_features(features: list[torch.Tensor]) -> FeatureStandardiser:
    """Per-channel mean / std over every pixel of some (B, C, h, w) teacher feature maps."""
    channels = features[0].shape[1]
    flat = torch.cat([f.detach().float().transpose(0, 1).reshape(channels, -1) for f in features], dim=1)
    standardiser = FeatureStandardiser(channels)
    with torch.no_grad():
        standardiser.shift.copy_(flat.mean(dim=1))
        standardiser.scale.copy_(flat.std(dim=1).clamp_min(1e-4))
    return standardiser


def neck_batchnorm(segmenter: Segmenter) -> nn.BatchNorm2d | None:
    """The BN layer whose output, through a ReLU, *is* the ``neck`` tap; None when there is no such layer."""
    leaves = [m for p in segmenter.neck_layers() for m in p.modules() if not list(m.children())]
    leaves = [m for m in leaves if not isinstance(m, (nn.Dropout, nn.Identity))]  # no-ops at inference
    if len(leaves) < 2 or not isinstance(leaves[-1], nn.ReLU) or not isinstance(leaves[-2], nn.BatchNorm2d):
        return None
    bn = leaves[-2]
    if bn.num_features != segmenter.tap_channels.get("neck") or not bn.affine:
        return None
    return bn


def neck_stride(input_height: int, neck_height: int) -> int:
    """The supported stride (4, 8 or 16) nearest to ``input_height / neck_height`` on a log scale."""
    ratio = input_height / neck_height
    return min((4, 8, 16), key=lambda s: abs(math.log2(s) - math.log2(ratio)))


def new_head(segmenter: Segmenter, neck: torch.Tensor, input_height: int, *, width: float = 1.0,
             calibration_features: list[torch.Tensor] | None = None) -> DiCNet:
    """An untrained DiCNet head for ``segmenter``, whose neck for an input ``input_height`` high is ``neck``.

    The standardiser comes from the teacher's neck BN layer when there is one; otherwise from the
    per-channel statistics of ``calibration_features`` (teacher neck maps on training frames; ``[neck]``
    when not given).
    """
    stride = neck_stride(input_height, neck.shape[-2])
    bn = neck_batchnorm(segmenter)
    if bn is not None:
        standardiser, kind = standardiser_from_batchnorm(bn), "neck_bn"
    else:
        standardiser, kind = standardiser_from_features(calibration_features or [neck]), "measured"
    student = DistillationStudent(neck.shape[1], stride, width)
    return DiCNet(student, standardiser, {"student": dict(student.config), "standardisation": kind,
                                          "score_quantiles": list(SCORE_QUANTILES)})


@torch.no_grad()
def calibrate(head: DiCNet, inlier_discrepancy: torch.Tensor) -> dict[str, float]:
    """Fix the head's ``centre`` / ``scale`` from raw discrepancies of inlier validation pixels (any shape)."""
    values = inlier_discrepancy.detach().float().flatten()
    if values.numel() == 0:
        raise ValueError("DiCNet calibration needs at least one inlier pixel")
    if values.numel() > _MAX_QUANTILE_SAMPLES:
        generator = torch.Generator().manual_seed(0)
        values = values[torch.randperm(values.numel(), generator=generator)[:_MAX_QUANTILE_SAMPLES]]
    low, high = torch.quantile(values.cpu(), torch.tensor(SCORE_QUANTILES)).tolist()
    head.score_centre.fill_(low)
    head.score_scale.fill_(max(high - low, 1e-8))
    return {"centre": float(low), "scale": float(head.score_scale)}


@dataclass
class DiCNetOptions:
    """The ``--dicnet-*`` options: student width, passes per epoch, the overhead timing after training."""

    width: float = option(1.0, "student width multiplier (1.0 = ~0.37 M parameters for a 64-channel neck)")
    passes: int = option(2, "passes over the training frames per epoch (validation runs once per epoch); the "
                            "student is cheap, so the default spends the CPU budget on more steps")
    bench_runs: int = option(20, "timed runs for the overhead ratio measured after training (0 = skip)")


def inlier_cells(batch: Batch, size: Sequence[int]) -> torch.Tensor:
    """(B, h, w) bool: neck cells whose every pixel is inlier content (a known class, not anomalous).

    A cell touching an anomaly pixel or a void semantic pixel (the synthetic world's obstacles are void)
    is left out, so the student never sees an anomaly as a target. Pixels the *anomaly* ground truth
    ignores (Lost&Found-style: everything off the road, about 60 % of a frame) still carry a known class
    and are kept: the student must agree with the teacher on buildings and sky too, or the live mask,
    which covers the whole image, would fire there.
    """
    bad = (batch.ood == OOD_ANOMALY) | (batch.semantic == IGNORE_INDEX)
    pooled = F.adaptive_max_pool2d(bad[:, None].float(), tuple(size))[:, 0]
    return pooled < 0.5


def distillation_loss(head: DiCNet, images: torch.Tensor, teacher: torch.Tensor,
                      mask: torch.Tensor) -> torch.Tensor:
    """Mean over inlier cells of the per-cell MSE over channels between student and teacher features."""
    error = feature_discrepancy(head.student_features(images, teacher.shape[-2:]), teacher)
    return masked_mean(error, mask)  # over the inlier cells of every process's share of the batch


@dataclass
class ValidationPass:
    """Per-frame outputs of one pass over the validation frames (native resolution, CPU)."""

    discrepancy: list[torch.Tensor] = field(default_factory=list)  # (h, w) raw DiCNet maps
    msp: list[torch.Tensor] = field(default_factory=list)  # (h', w') 1 - max softmax
    prediction: list[torch.Tensor] = field(default_factory=list)  # (h', w') argmax trainIds
    ood: list[np.ndarray] = field(default_factory=list)  # (H, W) uint8 0/1/255
    semantic: list[np.ndarray] = field(default_factory=list)  # (H, W) uint8 trainIds
    inlier_values: list[torch.Tensor] = field(default_factory=list)  # raw discrepancy on inlier cells

    def inlier_discrepancy(self) -> torch.Tensor:
        """Raw discrepancies of every inlier validation cell, flattened."""
        return torch.cat(self.inlier_values)


def validation_pass(segmenter: Segmenter, head: DiCNet, frames: Sequence[Frame], batch_size: int,
                    device: torch.device) -> ValidationPass:
    """One forward of segmenter + student per validation frame; everything else is derived from it."""
    result = ValidationPass()
    head.eval()
    with torch.inference_mode():
        for batch in batches(frames, batch_size, shuffle=False, augment=False):
            images = batch.images.to(device)
            out = segmenter.run(images)
            discrepancy = head.discrepancy(images, out).cpu()
            logits = out.logits.float().cpu()
            mask = inlier_cells(batch, discrepancy.shape[-2:])
            result.inlier_values.append(discrepancy[mask])
            result.discrepancy.extend(discrepancy)
            result.msp.extend(1.0 - logits.softmax(dim=1).amax(dim=1))
            result.prediction.extend(logits.argmax(dim=1))
            result.ood.extend(batch.ood.numpy().astype(np.uint8))
            result.semantic.extend(batch.semantic.numpy().astype(np.uint8))
    return result


def _upsample(score: torch.Tensor, size: Sequence[int]) -> np.ndarray:
    if tuple(score.shape) != tuple(size):
        score = F.interpolate(score[None, None].float(), size=tuple(size), mode="bilinear",
                              align_corners=False)[0, 0]
    return score.numpy().astype(np.float32, copy=False)


def dicnet_scores(head: DiCNet, valid: ValidationPass) -> list[np.ndarray]:
    """Normalised DiCNet scores at label resolution, as the pipeline publishes them."""
    scores = []
    for raw, msp, ood in zip(valid.discrepancy, valid.msp, valid.ood, strict=True):
        score = head.normalise(raw)
        if score.shape != msp.shape:  # the head scores at the logits' resolution
            score = F.interpolate(score[None, None], size=msp.shape, mode="bilinear",
                                  align_corners=False)[0, 0]
        scores.append(_upsample(score, ood.shape))
    return scores


def pixel_metrics(scores: Sequence[np.ndarray], labels: Sequence[np.ndarray]) -> dict[str, float]:
    """AP / AUROC / FPR95 and the best-F1 threshold (the head's default mask threshold)."""
    from ood_seg_node.evaluation import StreamingOODMetrics
    from ood_seg_node.evaluation.components import best_f1_threshold

    metrics = StreamingOODMetrics()
    for score, label in zip(scores, labels, strict=True):
        metrics.update(score, label)
    result = metrics.compute()
    return {"ap": result["ap"], "auroc": result["auroc"], "fpr95": result["fpr95"],
            "threshold": float(best_f1_threshold(metrics))}


def _predictions_at(prediction: torch.Tensor, size: Sequence[int]) -> np.ndarray:
    """Native-resolution argmax resized (nearest) to the label size, as the node publishes labels."""
    if tuple(prediction.shape) != tuple(size):
        prediction = F.interpolate(prediction[None, None].float(), size=tuple(size), mode="nearest")[0, 0]
    return prediction.to(torch.uint8).numpy()


def tpr95_threshold(scores: Sequence[np.ndarray], valid: ValidationPass) -> float:
    """The largest threshold with ``score >= threshold`` on at least 95 % of the anomaly pixels."""
    anomaly = np.concatenate([s[o == OOD_ANOMALY] for s, o in zip(scores, valid.ood, strict=True)])
    if anomaly.size == 0:
        raise ValueError("validation frames hold no anomaly pixel")
    return float(np.sort(anomaly)[int(np.floor(0.05 * anomaly.size))])


def misclassified_inlier_fpr(scores: Sequence[np.ndarray], valid: ValidationPass,
                             threshold: float | None = None) -> dict[str, float]:
    """Share of inlier pixels flagged at ``threshold`` (default: the 95 %-TPR threshold), by classification.

    Split into misclassified inlier pixels (prediction != semantic label) and correctly classified ones:
    the paper's claim is that classifier-based scores flag the former far more than DiCNet does. Counted
    over the evaluated inliers (anomaly label 0: the road region) and, ``*_whole_frame``, over every pixel
    of a known class (also the off-road part the anomaly metrics ignore, where most misclassification is).
    """
    threshold = tpr95_threshold(scores, valid) if threshold is None else float(threshold)
    flagged: dict[str, int] = {}
    total: dict[str, int] = {}
    for score, ood, semantic, prediction in zip(scores, valid.ood, valid.semantic, valid.prediction,
                                                 strict=True):
        known = semantic != IGNORE_INDEX
        wrong = _predictions_at(prediction, semantic.shape) != semantic
        evaluated = known & (ood == OOD_INLIER)
        whole = known & (ood != OOD_ANOMALY)
        groups = {"misclassified_inliers": evaluated & wrong, "correct_inliers": evaluated & ~wrong,
                  "misclassified_inliers_whole_frame": whole & wrong,
                  "correct_inliers_whole_frame": whole & ~wrong}
        for key, pixels in groups.items():
            total[key] = total.get(key, 0) + int(pixels.sum())
            flagged[key] = flagged.get(key, 0) + int((score[pixels] >= threshold).sum())
    result: dict[str, float] = {"threshold": threshold}
    for key in total:
        result[f"fpr_{key}"] = flagged[key] / max(total[key], 1)
        result[f"pixels_{key}"] = total[key]
    return result


def anomaly_vs_misclassified(scores: Sequence[np.ndarray], valid: ValidationPass) -> dict[str, float]:
    """AP / AUROC of anomaly pixels against misclassified inlier pixels only (all other pixels ignored).

    The threshold-free form of the paper's argument: how well a score tells anomalies from the
    segmenter's own errors.
    """
    from ood_seg_node.evaluation import StreamingOODMetrics

    metrics = StreamingOODMetrics()
    for score, ood, semantic, prediction in zip(scores, valid.ood, valid.semantic, valid.prediction,
                                                 strict=True):
        wrong = (_predictions_at(prediction, semantic.shape) != semantic) & (semantic != IGNORE_INDEX)
        label = np.full(ood.shape, 255, dtype=np.uint8)
        label[wrong & (ood != OOD_ANOMALY)] = OOD_INLIER
        label[ood == OOD_ANOMALY] = OOD_ANOMALY
        metrics.update(score, label)
    result = metrics.compute()
    return {"ap": result["ap"], "auroc": result["auroc"], "fpr95": result["fpr95"]}


def measure_overhead(segmenter: Segmenter, head: DiCNet, size: tuple[int, int] = (256, 512),
                     runs: int = 20) -> dict[str, Any]:
    """Median single-thread CPU times (ms) of segmenter forward and student forward + score, and their ratio.

    ``eager``: both modules as written. ``deployed``: as the pipeline runs them on CPU -- the segmenter
    traced, frozen and channels-last, the student through the head's own frozen copy. Segmenter and head
    run alternately on the same random frame, so machine load affects both alike.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    segmenter, head = segmenter.cpu().eval(), head.cpu().eval()
    image = torch.rand(1, 3, *size, generator=torch.Generator().manual_seed(0))
    fast_image = image.contiguous(memory_format=torch.channels_last)
    result: dict[str, Any] = {"runs": runs, "input_size": list(size), "threads": 1}
    fast_segmenter = FastPath(segmenter)
    try:
        with torch.inference_mode():
            taps = tuple(segmenter.tap_channels)
            variants = {
                "eager": (lambda: segmenter.run(image), image, False),
                "deployed": (lambda: name_outputs(fast_segmenter(fast_image), taps), fast_image, True),
            }
            for name, (forward, frame, optimise) in variants.items():
                head.fast_path.enabled = optimise
                seg_ms, head_ms = [], []
                for i in range(runs + 3):
                    start = time.perf_counter()
                    out = forward()
                    middle = time.perf_counter()
                    head.score(frame, out)
                    end = time.perf_counter()
                    if i >= 3:  # warm-up runs (and the head's one-off tracing) are not counted
                        seg_ms.append((middle - start) * 1e3)
                        head_ms.append((end - middle) * 1e3)
                seg, hd = statistics.median(seg_ms), statistics.median(head_ms)
                result[name] = {"segmenter_ms": seg, "head_ms": hd, "overhead_ratio": hd / seg}
    finally:
        head.fast_path.enabled = True
        torch.set_num_threads(threads)
    return result


@TRAINERS.register("dicnet")
class DiCNetTrainer(HeadTrainer):
    """The student, distilled by AdamW with a warm-up cosine schedule; recalibrated and validated every epoch.

    :meth:`finish` analyses the kept checkpoint against MSP on the validation frames (the paper's
    misclassified-inlier argument) and times its CPU overhead, into ``summary.json``.
    """

    name = "dicnet"
    options_class = DiCNetOptions
    default_lr = 2e-3
    threshold_key = "threshold"

    def __init__(self, config: HeadTrainingConfig, options: DiCNetOptions) -> None:
        super().__init__(config, options)
        self.options = options
        self.passes = max(1, options.passes)
        necks = self._standardiser_features()
        self.head = new_head(self.segmenter, necks[0], config.height, width=options.width,
                             calibration_features=necks).to(self.device)
        self.steps_per_epoch *= self.passes
        self.run_config["head_config"] = self.head.config
        self.optimizer = torch.optim.AdamW(self.head.student.parameters(), lr=self.lr, weight_decay=WEIGHT_DECAY)

    def _standardiser_features(self) -> list[torch.Tensor]:
        chosen = self.train_frames[:: max(1, len(self.train_frames) // STANDARDISER_FRAMES)][:STANDARDISER_FRAMES]
        with torch.inference_mode():
            return [self.segmenter.run(b.images.to(self.device)).features["neck"].float().cpu()
                    for b in batches(chosen, self.config.batch_size, shuffle=False, augment=False)]

    def epoch(self) -> Iterable[Batch]:
        self.head.train()
        # pass p of epoch e draws its order as epoch (e - 1) * passes + p + 1 would
        first = (self.current_epoch - 1) * self.passes + 1
        return (batch for p in range(self.passes) for batch in self.train_batches(first + p))

    def schedule(self, step: int, total: int, base: float) -> float:
        return cosine_lr(step, total, base, warmup=min(50, total // 10))

    def trained_modules(self) -> dict[str, nn.Module]:
        """The student (the head's standardiser and score calibration are not trained by gradient)."""
        return {"student": self.head.student}

    def state_modules(self) -> dict[str, nn.Module]:
        """The whole head: the student and the calibration every validation refits."""
        return {"head": self.head}

    def losses(self, batch: Batch) -> dict[str, torch.Tensor]:
        """MSE of the student to the teacher's standardised neck, on inlier cells."""
        images = batch.images.to(self.device)
        with torch.no_grad():
            teacher = self.head.teacher_features(self.segmenter.run(images))
        mask = inlier_cells(batch, teacher.shape[-2:]).to(self.device)
        return {"total": distillation_loss(self.head, images, teacher, mask)}

    def validate(self) -> dict[str, float]:
        """Recalibrate the score normalisation on inlier validation cells, then AP / AUROC / FPR95."""
        valid = validation_pass(self.segmenter, self.head, self.val_frames, self.config.batch_size, self.device)
        calibration = calibrate(self.head, valid.inlier_discrepancy())
        metrics = pixel_metrics(dicnet_scores(self.head, valid), valid.ood)
        return {"val_loss": float(valid.inlier_discrepancy().mean()), "val_ap": metrics["ap"],
                "val_auroc": metrics["auroc"], "val_fpr95": metrics["fpr95"], "threshold": metrics["threshold"],
                "score_centre": calibration["centre"], "score_scale": calibration["scale"]}

    def finish(self, best: dict[str, Any], out: Path) -> dict[str, Any]:
        """The kept checkpoint vs MSP on misclassified inlier pixels, and its CPU overhead (``summary.json``)."""
        checkpoint = out / self.checkpoint_file
        head = DiCNet.build(self.segmenter, str(checkpoint)).to(self.device)
        analysis: dict[str, Any] = {"validation": compare_with_msp(self.segmenter, head, self.val_frames,
                                                                   self.config.batch_size, self.device)}
        if self.options.bench_runs > 0:
            analysis["overhead"] = measure_overhead(self.segmenter, head, (self.config.height, self.config.width),
                                                    self.options.bench_runs)
            self.segmenter.to(self.device)
        summary = {"checkpoint": str(checkpoint), "best": best, **analysis}
        (out / "summary.json").write_text(json.dumps(summary, indent=2))
        return analysis


def compare_with_msp(segmenter: Segmenter, head: DiCNet, frames: Sequence[Frame], batch_size: int = 8,
                     device: torch.device | str = "cpu") -> dict[str, Any]:
    """DiCNet vs MSP on ``frames``: AP / AUROC / FPR95 and the misclassified-inlier analysis of each."""
    valid = validation_pass(segmenter, head, frames, batch_size, torch.device(device))
    scores = {"dicnet": dicnet_scores(head, valid),
              "msp": [_upsample(s, o.shape) for s, o in zip(valid.msp, valid.ood, strict=True)]}
    comparison: dict[str, Any] = {}
    for name, maps in scores.items():
        pixels = pixel_metrics(maps, valid.ood)
        comparison[name] = {
            **{k: pixels[k] for k in ("ap", "auroc", "fpr95")},
            "at_tpr95": misclassified_inlier_fpr(maps, valid),
            "at_best_f1_threshold": misclassified_inlier_fpr(maps, valid, pixels["threshold"]),
            "anomaly_vs_misclassified": anomaly_vs_misclassified(maps, valid),
        }
    return comparison
