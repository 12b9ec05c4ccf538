# Copyright 2026 The ood_seg_node developers. Licensed under the Apache License, Version 2.0.
"""DiCNet: anomalies are where a distilled student stops agreeing with the segmenter's own features.

Zhou, Gong, Zhou, Zheng, Liu, Bai, "Anomaly Discovery in Semantic Segmentation via Distillation
Comparison Networks", arXiv:2112.09908 (2021). The paper's observation: scores read off the classifier
(MSP, entropy, ...) flag *misclassified* inlier pixels as anomalies. DiCNet drops the classifier at
inference: the teacher is the trained segmenter up to its high-level features (after the pyramid neck),
normalised with the teacher's own batch-norm statistics; a lighter student with the same neck structure
regresses those features on inlier images only. On known classes the two agree, on unknown objects they
disagree, and the anomaly score is the per-pixel mean squared difference over channels.

How the pieces map onto this package:

- teacher features = the segmenter's ``neck`` tap (builtin: after the ASPP neck and the stride-4 decoder;
  torchvision DeepLabV3: after ASPP and its 3x3 conv block; FCN: after its 3x3 conv block; LR-ASPP: the
  concatenation its two classifiers read), standardised per channel by :class:`FeatureStandardiser`;
- student = :class:`DistillationStudent`, a small residual encoder + the builtin segmenter's ASPP neck and
  decoder blocks, predicting the standardised teacher features at the neck's resolution;
- score = ``(mean_c (student - teacher)^2 - centre) / scale`` at the neck's resolution, resized to the
  logits' resolution when the two differ.

What is normalised with what (the paper's "teacher's own BN statistics"): the official code takes the
pre-activation output of the teacher's last convolution standardised by that layer's BN running mean and
variance, without the affine part. Our ``neck`` tap is ``ReLU(gamma * z_hat + beta)`` where ``z_hat`` is
exactly that standardised value, so for segmenters whose neck ends in BN + ReLU (builtin, DeepLabV3, FCN)
the teacher target is ``(neck - beta) / |gamma|`` with the last BN layer's fixed ``beta`` and ``gamma``:
it equals ``+-z_hat`` wherever the ReLU passes and the constant ``-beta / |gamma|`` where it clipped.
LR-ASPP's neck has no single BN layer in front (a gated branch concatenated with a backbone block), so
there the shift and scale are the per-channel mean and standard deviation of the teacher's neck measured
once on the training frames before distillation. Either way the statistics are buffers of the head,
saved in its checkpoint and never updated at inference.

Deviations from the paper, and why:

- Score normalisation: the official evaluation min-max normalises the discrepancy over each batch, which
  makes one frame's score depend on the others and a fixed mask threshold meaningless on a live stream.
  Here the discrepancy is mapped with constants fixed on validation data -- ``centre`` = median and
  ``scale`` = 99th percentile minus median of the discrepancy over inlier validation pixels -- so 0 is a
  typical inlier pixel, 1 the 99th inlier percentile, and a frame's score never depends on its batch.
- Student and teacher sizes: the paper distils a ResNet-50-dilated PSPNet teacher into a ResNet-34
  student over 150 epochs on StreetHazards/BDD-Anomaly; here the teacher is whatever segmenter runs (the
  ~1.0 M-parameter builtin by default) and the student is a ~0.37 M-parameter CPU network trained for
  minutes on the synthetic world, sharing the teacher's neck *structure* (ASPP + decoder) but not its
  weights, and ending in a 1x1 regression convolution (as the official student ends in a bare conv).
- Inlier-only distillation: cells of the neck grid that contain any anomaly or void pixel are left out
  of the loss (the paper's training sets contain no anomalies; our synthetic frames do).
- On CPU the student runs as a traced, frozen, channels-last copy (checked against eager at 1e-4).
"""

from __future__ import annotations

import copy
import math
import warnings
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ood_seg_node.checkpoints import CheckpointError
from ood_seg_node.heads import HEADS
from ood_seg_node.heads.base import Head, load_head_checkpoint
from ood_seg_node.segmenters.base import IMAGENET_MEAN, IMAGENET_STD, Segmenter, SegmenterOutput
from ood_seg_node.segmenters.builtin import LightASPP, ResidualBlock, conv_bn_relu, pointwise

# student widths at width multiplier 1; the teacher (builtin) uses 24/32/64/128/96/64
STUDENT_WIDTHS = {"stem": 16, "stage1": 24, "stage2": 40, "stage3": 80, "aspp": 64, "skip": 16, "decoder": 64}
SCORE_QUANTILES = (0.5, 0.99)  # calibration: centre = q50, scale = q99 - q50 of inlier discrepancy
_MIN_BN_SCALE = 1e-2  # |gamma| floor: a near-dead channel must not dominate the mean over channels
_MAX_QUANTILE_SAMPLES = 1 << 22  # torch.quantile refuses huge inputs; subsample beyond this


class FeatureStandardiser(nn.Module):
    """Fixed per-channel ``(x - shift) / scale`` of the teacher's neck features (see module docstring)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.register_buffer("shift", torch.zeros(channels))
        self.register_buffer("scale", torch.ones(channels))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """(B, C, h, w) raw neck features -> standardised features."""
        return (features - self.shift.view(1, -1, 1, 1)) / self.scale.view(1, -1, 1, 1)

    @classmethod
    def from_batchnorm(cls, bn: nn.BatchNorm2d) -> FeatureStandardiser:
        """Undo the affine part of the BN that (through a ReLU) produced the neck."""
        standardiser = cls(bn.num_features)
        with torch.no_grad():
            standardiser.shift.copy_(bn.bias.detach().float())
            standardiser.scale.copy_(bn.weight.detach().float().abs().clamp_min(_MIN_BN_SCALE))
        return standardiser

    @classmethod
    def from_features(cls, features: list[torch.Tensor]) -> FeatureStandardiser:
        """Per-channel mean / std over every pixel of some (B, C, h, w) teacher feature maps."""
        channels = features[0].shape[1]
        flat = torch.cat([f.detach().float().transpose(0, 1).reshape(channels, -1) for f in features], dim=1)
        standardiser = cls(channels)
        with torch.no_grad():
            standardiser.shift.copy_(flat.mean(dim=1))
            standardiser.scale.copy_(flat.std(dim=1).clamp_min(1e-4))
        return standardiser


def neck_batchnorm(segmenter: Segmenter) -> nn.BatchNorm2d | None:
    """The BN layer whose output, through a ReLU, *is* the ``neck`` tap; None when there is no such layer."""
    from ood_seg_node.segmenters.builtin import BuiltinSegmenter
    from ood_seg_node.segmenters.torchvision_models import TorchvisionSegmenter

    if isinstance(segmenter, BuiltinSegmenter):
        producers: list[nn.Module] = [segmenter.decoder]
    elif isinstance(segmenter, TorchvisionSegmenter) and not segmenter.arch.startswith("lraspp"):
        producers = list(segmenter.model.classifier.children())[:-1]
    else:
        return None
    leaves = [m for p in producers for m in p.modules() if not list(m.children())]
    leaves = [m for m in leaves if not isinstance(m, (nn.Dropout, nn.Identity))]  # no-ops at inference
    if len(leaves) < 2 or not isinstance(leaves[-1], nn.ReLU) or not isinstance(leaves[-2], nn.BatchNorm2d):
        return None
    bn = leaves[-2]
    if bn.num_features != segmenter.tap_channels.get("neck") or not bn.affine:
        return None
    return bn


class DistillationStudent(nn.Module):
    """Light encoder + the teacher's neck structure (ASPP, skip-fusion decoder) -> teacher features.

    Args:
        out_channels: channels of the teacher's ``neck``.
        neck_stride: 4, 8 or 16, the teacher neck's stride; the skip comes from the encoder stage at that
            stride (none at 16).
        width: multiplier on :data:`STUDENT_WIDTHS`.
    """

    def __init__(self, out_channels: int, neck_stride: int = 4, width: float = 1.0) -> None:
        super().__init__()
        if neck_stride not in (4, 8, 16):
            raise ValueError(f"DiCNet student supports neck strides 4, 8 and 16, got {neck_stride}")
        self.config: dict[str, Any] = {"out_channels": int(out_channels), "neck_stride": int(neck_stride),
                                       "width": float(width)}
        w = {k: max(8, int(round(v * width / 8)) * 8) for k, v in STUDENT_WIDTHS.items()}
        self.stem = conv_bn_relu(3, w["stem"], stride=2)
        self.stage1 = ResidualBlock(w["stem"], w["stage1"], 2)
        self.stage2 = ResidualBlock(w["stage1"], w["stage2"], 2)
        self.stage3 = nn.Sequential(ResidualBlock(w["stage2"], w["stage3"], 2),
                                    ResidualBlock(w["stage3"], w["stage3"], 1))
        self.aspp = LightASPP(w["stage3"], w["aspp"])
        skip_in = {4: w["stage1"], 8: w["stage2"], 16: 0}[neck_stride]
        self.skip = pointwise(skip_in, w["skip"]) if skip_in else None
        fused = w["aspp"] + (w["skip"] if skip_in else 0)
        self.decoder = nn.Sequential(
            conv_bn_relu(fused, fused, groups=fused),
            pointwise(fused, w["decoder"]),
            conv_bn_relu(w["decoder"], w["decoder"], groups=w["decoder"]),
        )
        # a bare regression conv: standardised targets are signed (the official student also ends in a conv)
        self.regress = nn.Conv2d(w["decoder"], out_channels, 1)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, rgb01: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) RGB in [0, 1] -> (B, out_channels, H / stride, W / stride) predicted features."""
        x = (rgb01 - self.mean) / self.std
        s1 = self.stage1(self.stem(x))
        s2 = self.stage2(s1)
        context = self.aspp(self.stage3(s2))
        stride = self.config["neck_stride"]
        if self.skip is None:
            return self.regress(self.decoder(context))
        low = s1 if stride == 4 else s2
        context = F.interpolate(context, size=low.shape[-2:], mode="bilinear", align_corners=False)
        return self.regress(self.decoder(torch.cat([context, self.skip(low)], dim=1)))


@HEADS.register("dicnet")
class DiCNet(Head):
    """Teacher-student feature discrepancy (Zhou et al., arXiv:2112.09908), normalised with fixed statistics.

    Args:
        student: maps the (B, 3, H, W) image to predicted standardised neck features (B, C, h', w').
        standardiser: the fixed teacher-feature standardisation.
        config: architecture description saved in checkpoints (``student``: DistillationStudent kwargs,
            ``standardisation``: ``neck_bn`` or ``measured``).
    """

    name = "dicnet"
    required_taps = ("neck",)

    def __init__(self, student: nn.Module, standardiser: FeatureStandardiser,
                 config: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.student = student
        self.standardiser = standardiser
        self.config: dict[str, Any] = dict(config or {})
        self.register_buffer("score_centre", torch.tensor(0.0))
        self.register_buffer("score_scale", torch.tensor(1.0))
        # On CPU at inference, the student runs as a channels-last traced-and-frozen copy (BN folded into
        # the convolutions, ~2x faster than eager), kept per input shape only when it reproduces eager
        # outputs, and dropped whenever the weights may change (train(), load_state_dict()).
        self.optimise = True
        self._frozen: dict[tuple[int, ...], torch.jit.ScriptModule | None] = {}

    @classmethod
    def build(cls, segmenter: Segmenter, checkpoint: str = "") -> DiCNet:
        """Load the shipped (or given) student trained against exactly this segmenter."""
        loaded = load_head_checkpoint(cls.name, segmenter, checkpoint)
        config = loaded.config
        try:
            student = DistillationStudent(**config["student"])
            head = cls(student, FeatureStandardiser(int(config["student"]["out_channels"])), config)
            head.load_state_dict(loaded.state_dict)
        except (KeyError, TypeError, ValueError, RuntimeError) as error:
            detail = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise CheckpointError(f"{loaded.path} is not a usable dicnet checkpoint: {detail}") from None
        if head.standardiser.shift.numel() != segmenter.tap_channels["neck"]:
            raise CheckpointError(f"{loaded.path} expects {head.standardiser.shift.numel()} neck channels, "
                                  f"segmenter {segmenter.spec} has {segmenter.tap_channels['neck']}")
        head.default_threshold = float(loaded.meta.get("default_threshold", math.nan))
        return head

    def train(self, mode: bool = True) -> DiCNet:  # noqa: D102
        self._frozen.clear()
        return super().train(mode)

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):  # noqa: D102
        self._frozen.clear()
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    def teacher_features(self, out: SegmenterOutput) -> torch.Tensor:
        """The distillation target: the segmenter's ``neck`` tap, standardised (B, C, h, w)."""
        return self.standardiser(out.features["neck"].float())

    def student_features(self, image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """Student prediction resized (only if needed) to the teacher neck's ``size``."""
        frozen = self._frozen_student(image) if self._can_freeze(image) else None
        if frozen is None:
            predicted = self.student(image)
        else:
            predicted = frozen(image.contiguous(memory_format=torch.channels_last))
        if tuple(predicted.shape[-2:]) != tuple(size):
            predicted = F.interpolate(predicted, size=size, mode="bilinear", align_corners=False)
        return predicted.float()

    def discrepancy(self, image: torch.Tensor, out: SegmenterOutput) -> torch.Tensor:
        """Raw DiCNet map (B, h, w) at the neck's resolution: mean over channels of (student - teacher)^2."""
        teacher = self.teacher_features(out)
        return feature_discrepancy(self.student_features(image, teacher.shape[-2:]), teacher)

    def normalise(self, discrepancy: torch.Tensor) -> torch.Tensor:
        """Fixed affine map calibrated on inlier validation pixels (never per batch)."""
        return (discrepancy - self.score_centre) / self.score_scale

    def score(self, image: torch.Tensor, out: SegmenterOutput) -> torch.Tensor:
        """Normalised discrepancy (B, h, w) at the logits' resolution; higher = more anomalous."""
        score = self.normalise(self.discrepancy(image, out))
        if tuple(score.shape[-2:]) != tuple(out.logits.shape[-2:]):
            score = F.interpolate(score[:, None], size=out.logits.shape[-2:], mode="bilinear",
                                  align_corners=False)[:, 0]
        return score

    def _can_freeze(self, image: torch.Tensor) -> bool:
        cpu = image.device.type == "cpu"
        return self.optimise and cpu and not self.training and not torch.is_grad_enabled()

    def _frozen_student(self, image: torch.Tensor) -> torch.jit.ScriptModule | None:
        key = tuple(image.shape)
        if key not in self._frozen:
            self._frozen[key] = None
            image = image.float().contiguous(memory_format=torch.channels_last)
            try:
                # a copy: converting the live weights under inference mode would make them inference tensors
                student = copy.deepcopy(self.student).to(memory_format=torch.channels_last).eval()
                with warnings.catch_warnings():  # TorchScript: deprecated upstream, still fastest on CPU
                    warnings.simplefilter("ignore")
                    frozen = torch.jit.freeze(torch.jit.trace(student, image, check_trace=False))
                if torch.allclose(frozen(image), student(image), rtol=1e-4, atol=1e-4):
                    self._frozen[key] = frozen
            except (RuntimeError, torch.jit.Error):
                pass
        return self._frozen[key]

    @torch.no_grad()
    def calibrate(self, inlier_discrepancy: torch.Tensor) -> dict[str, float]:
        """Fix ``centre`` / ``scale`` from raw discrepancies of inlier validation pixels (any shape)."""
        values = inlier_discrepancy.detach().float().flatten()
        if values.numel() == 0:
            raise ValueError("DiCNet calibration needs at least one inlier pixel")
        if values.numel() > _MAX_QUANTILE_SAMPLES:
            generator = torch.Generator().manual_seed(0)
            values = values[torch.randperm(values.numel(), generator=generator)[:_MAX_QUANTILE_SAMPLES]]
        low, high = torch.quantile(values.cpu(), torch.tensor(SCORE_QUANTILES)).tolist()
        self.score_centre.fill_(low)
        self.score_scale.fill_(max(high - low, 1e-8))
        return {"centre": float(low), "scale": float(self.score_scale)}


def feature_discrepancy(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """DiCNet's anomaly map: ``mean_c (student_c - teacher_c)^2``, (B, C, h, w) x2 -> (B, h, w)."""
    return (student - teacher).pow(2).mean(dim=1)


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
        standardiser, kind = FeatureStandardiser.from_batchnorm(bn), "neck_bn"
    else:
        standardiser, kind = FeatureStandardiser.from_features(calibration_features or [neck]), "measured"
    student = DistillationStudent(neck.shape[1], stride, width)
    return DiCNet(student, standardiser, {"student": dict(student.config), "standardisation": kind,
                                          "score_quantiles": list(SCORE_QUANTILES)})


def neck_stride(input_height: int, neck_height: int) -> int:
    """The supported stride (4, 8 or 16) nearest to ``input_height / neck_height`` on a log scale."""
    ratio = input_height / neck_height
    return min((4, 8, 16), key=lambda s: abs(math.log2(s) - math.log2(ratio)))
