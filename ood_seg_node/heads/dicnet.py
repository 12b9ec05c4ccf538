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
  concatenation its two classifiers read), standardised per channel by :class:`FeatureStandardiser`
  (whose statistics training fixes, see :mod:`ood_seg_node.training.dicnet`);
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
- The authors' published StreetHazards student and teacher run unchanged through
  :mod:`ood_seg_node.heads.dicnet_published` (``head_checkpoint`` = their student file).
- On CPU the student runs through :class:`~ood_seg_node.fastpath.FastPath` (a traced, frozen,
  channels-last copy checked against eager at 1e-4).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ood_seg_node.fastpath import FastPath
from ood_seg_node.heads.base import HEADS, TrainedHead
from ood_seg_node.heads.dicnet_published import build_published_dicnet
from ood_seg_node.layers import LightASPP, Normalise, ResidualBlock, conv_bn_relu, pointwise, resize
from ood_seg_node.segmenters.base import Segmenter, SegmenterOutput

# student widths at width multiplier 1; the teacher (builtin) uses 24/32/64/128/96/64
STUDENT_WIDTHS = {"stem": 16, "stage1": 24, "stage2": 40, "stage3": 80, "aspp": 64, "skip": 16, "decoder": 64}


class FeatureStandardiser(nn.Module):
    """Fixed per-channel ``(x - shift) / scale`` of the teacher's neck features (see module docstring)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.register_buffer("shift", torch.zeros(channels))
        self.register_buffer("scale", torch.ones(channels))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """(B, C, h, w) raw neck features -> standardised features."""
        return (features - self.shift.view(1, -1, 1, 1)) / self.scale.view(1, -1, 1, 1)


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
        self.normalise = Normalise()

    def forward(self, rgb01: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) RGB in [0, 1] -> (B, out_channels, H / stride, W / stride) predicted features."""
        s1 = self.stage1(self.stem(self.normalise(rgb01)))
        s2 = self.stage2(s1)
        context = self.aspp(self.stage3(s2))
        if self.skip is None:
            return self.regress(self.decoder(context))
        low = s1 if self.config["neck_stride"] == 4 else s2
        return self.regress(self.decoder(torch.cat([resize(context, low.shape[-2:]), self.skip(low)], dim=1)))


@HEADS.register("dicnet")
class DiCNet(TrainedHead):
    """Teacher-student feature discrepancy (Zhou et al., arXiv:2112.09908), normalised with fixed statistics.

    Args:
        student: maps the (B, 3, H, W) image to predicted standardised neck features (B, C, h', w').
        standardiser: the fixed teacher-feature standardisation.
        config: architecture saved in checkpoints (``student``: :class:`DistillationStudent` kwargs,
            ``standardisation``: ``neck_bn`` or ``measured``, ``score_quantiles``).
    """

    name = "dicnet"
    required_taps = ("neck",)

    def __init__(self, student: nn.Module, standardiser: FeatureStandardiser,
                 config: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.student = student
        self.standardiser = standardiser
        self._config: dict[str, Any] = dict(config or {})
        # the fixed affine map of the raw discrepancy, calibrated on inlier validation pixels
        self.register_buffer("score_centre", torch.tensor(0.0))
        self.register_buffer("score_scale", torch.tensor(1.0))
        self.fast_path = FastPath(self.student)

    @property
    def config(self) -> dict[str, Any]:
        return dict(self._config)

    @classmethod
    def from_config(cls, segmenter: Segmenter, config: dict[str, Any]) -> DiCNet:
        return cls(DistillationStudent(**config["student"]), FeatureStandardiser(segmenter.tap_channels["neck"]),
                   config)

    @classmethod
    def build(cls, segmenter: Segmenter, checkpoint: str = "") -> TrainedHead:
        """The package's own DiCNet checkpoint (the shipped one by default), or DiCNet's published student."""
        published = build_published_dicnet(segmenter, checkpoint)
        return published if published is not None else super().build(segmenter, checkpoint)

    def teacher_features(self, out: SegmenterOutput) -> torch.Tensor:
        """The distillation target: the segmenter's ``neck`` tap, standardised (B, C, h, w)."""
        return self.standardiser(out.features["neck"].float())

    def student_features(self, image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """Student prediction resized (only if needed) to the teacher neck's ``size``."""
        return resize(self.fast_path(image), size).float()

    def discrepancy(self, image: torch.Tensor, out: SegmenterOutput) -> torch.Tensor:
        """Raw DiCNet map (B, h, w) at the neck's resolution: mean over channels of (student - teacher)^2."""
        teacher = self.teacher_features(out)
        return feature_discrepancy(self.student_features(image, teacher.shape[-2:]), teacher)

    def normalise(self, discrepancy: torch.Tensor) -> torch.Tensor:
        """Fixed affine map calibrated on inlier validation pixels (never per batch)."""
        return (discrepancy - self.score_centre) / self.score_scale

    def score(self, image: torch.Tensor, out: SegmenterOutput) -> torch.Tensor:
        """Normalised discrepancy (B, h, w) at the logits' resolution; higher = more anomalous."""
        return resize(self.normalise(self.discrepancy(image, out))[:, None], out.logits.shape[-2:])[:, 0]


def feature_discrepancy(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """DiCNet's anomaly map: ``mean_c (student_c - teacher_c)^2``, (B, C, h, w) x2 -> (B, h, w)."""
    return (student - teacher).pow(2).mean(dim=1)
