# Copyright 2026 The ood_seg_node developers. Licensed under the Apache License, Version 2.0.
"""RPL head: a residual on the frozen segmenter's features, scored by the energy of the augmented logits.

Liu, Ding, Tian, Pang, Belagiannis, Reid, Carneiro, "Residual Pattern Learning for Pixel-wise
Out-of-Distribution Detection in Semantic Segmentation", ICCV 2023 (arXiv 2211.14512).

The segmenter stays frozen. A small ASPP branch reads the deepest tap (``stage3``) and produces a residual
with the channel count of ``neck`` (the features the segmenter's classifier reads); the segmenter's own
classifier runs on ``neck + residual`` and the anomaly score is the negative log-sum-exp of those augmented
logits, smoothed by a 7x7 Gaussian (sigma 1). The segmentation itself is always read from the original
path (``out.logits``, which this head never touches), so inlier predictions are exactly unchanged.
Training (outlier pasting, inlier consistency, positive energy loss, CoroCL) is in
:mod:`ood_seg_node.training.rpl`.

Deviations from the paper:

- The residual is added to ``neck``, the input of the final 1x1 classifier, because that is the feature
  every segmenter here exposes (:meth:`Segmenter.classify`); the paper adds it to the decoder input of
  DeepLabV3+ (WideResNet38) and re-runs the decoder's last convolutions as well.
- The ASPP branch is narrow (64 channels instead of 256, dilations 1/2/4 instead of 12/24/36) to suit the
  CPU budget and the stride-16 ``stage3`` of the builtin segmenter.
- The residual's last 1x1 convolution is zero-initialised, so training starts exactly from the
  segmenter's own energy score; the paper initialises it randomly.
- The last 1x1 convolution is applied before the bilinear upsampling to ``neck``'s resolution instead of
  after it: both are linear and commute, so the result is the same at a fraction of the cost. When the
  classifier is itself a per-pixel affine map (:meth:`Segmenter.classifier_is_pointwise_affine`), the
  residual is classified at ``stage3``'s resolution and the 19-channel difference is upsampled instead.
- The score is blurred at the logits' native resolution (the pipeline upsamples it afterwards); the paper
  blurs at full image resolution.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import nn

from ood_seg_node.fastpath import FastPath
from ood_seg_node.heads.base import HEADS, TrainedHead
from ood_seg_node.heads.rpl_published import build_published_rpl
from ood_seg_node.layers import gaussian_blur, resize
from ood_seg_node.segmenters.base import Segmenter, SegmenterOutput

DEFAULT_WIDTH = 64
DEFAULT_DILATIONS = (1, 2, 4)


class ResidualPatternModule(nn.Module):
    """ASPP on ``stage3`` -> bottleneck features -> 1x1 conv to a residual with ``neck``'s channel count.

    Args:
        in_channels: channels of the ``stage3`` tap.
        neck_channels: channels of the ``neck`` tap (the residual's channels).
        width: channels of each ASPP branch and of the bottleneck.
        dilations: one 1x1 branch for the first entry, one 3x3 dilated branch for each further entry.
    """

    def __init__(
        self, in_channels: int, neck_channels: int, *, width: int = DEFAULT_WIDTH,
        dilations: Sequence[int] = DEFAULT_DILATIONS,
    ) -> None:
        super().__init__()
        if not dilations:
            raise ValueError("rpl needs at least one ASPP dilation")
        branches = [nn.Sequential(nn.Conv2d(in_channels, width, 1, bias=False), nn.BatchNorm2d(width),
                                  nn.ReLU(inplace=True))]
        for rate in dilations[1:]:
            branches.append(nn.Sequential(
                nn.Conv2d(in_channels, width, 3, padding=rate, dilation=rate, bias=False),
                nn.BatchNorm2d(width), nn.ReLU(inplace=True)))
        self.branches = nn.ModuleList(branches)
        # no batch norm on the 1x1 pooled map: its batch statistics would be degenerate for batch size 1
        self.image_pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(in_channels, width, 1),
                                        nn.ReLU(inplace=True))
        self.bottleneck = nn.Conv2d(width * (len(dilations) + 1), width, 1, bias=False)
        self.to_residual = nn.Conv2d(width, neck_channels, 1, bias=False)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
        nn.init.zeros_(self.to_residual.weight)  # start from the segmenter's own logits

    def encode(self, stage3: torch.Tensor) -> torch.Tensor:
        """Bottleneck features at ``stage3``'s resolution (CoroCL's projection head reads these)."""
        pooled = self.image_pool(stage3).expand(-1, -1, stage3.shape[-2], stage3.shape[-1])
        return self.bottleneck(torch.cat([branch(stage3) for branch in self.branches] + [pooled], dim=1))

    def residual(self, features: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
        """The residual for ``neck``, at ``size`` (1x1 conv first: it commutes with bilinear upsampling)."""
        return resize(self.to_residual(features), size)

    def forward(self, stage3: torch.Tensor) -> torch.Tensor:
        """``stage3`` (B, C, h3, w3) -> residual (B, neck channels, h3, w3), before any upsampling."""
        return self.to_residual(self.encode(stage3))


@HEADS.register("rpl")
class RPLHead(TrainedHead):
    """Residual Pattern Learning (Liu et al., ICCV 2023, arXiv 2211.14512): energy of augmented logits.

    The head keeps a reference to the segmenter (not registered as a submodule, so its weights are neither
    saved with the head nor switched to training mode) because it re-runs ``segmenter.classify``.
    Deviations from the paper are listed in the module docstring.

    Args:
        segmenter: the frozen segmenter; needs the ``stage3`` and ``neck`` taps and ``classify``.
        width: ASPP width; dilations: ASPP rates; blur_kernel / blur_sigma: score smoothing.
    """

    name = "rpl"
    required_taps = ("stage3", "neck")

    def __init__(
        self, segmenter: Segmenter, *, width: int = DEFAULT_WIDTH,
        dilations: Sequence[int] = DEFAULT_DILATIONS, blur_kernel: int = 7, blur_sigma: float = 1.0,
    ) -> None:
        super().__init__()
        self._segmenter = (segmenter,)  # a tuple hides it from nn.Module registration
        self.width = int(width)
        self.dilations = tuple(int(d) for d in dilations)
        self.blur_kernel = int(blur_kernel)
        self.blur_sigma = float(blur_sigma)
        self.module = ResidualPatternModule(segmenter.tap_channels["stage3"], segmenter.tap_channels["neck"],
                                            width=self.width, dilations=self.dilations)
        self.fast_path = FastPath(self.module)
        self._pointwise_affine = segmenter.classifier_is_pointwise_affine()

    @property
    def segmenter(self) -> Segmenter:
        """The frozen segmenter whose classifier the head re-runs."""
        return self._segmenter[0]

    @property
    def config(self) -> dict[str, Any]:
        return {"width": self.width, "dilations": list(self.dilations), "blur_kernel": self.blur_kernel,
                "blur_sigma": self.blur_sigma}

    @classmethod
    def from_config(cls, segmenter: Segmenter, config: dict[str, Any]) -> RPLHead:
        return cls(segmenter, **config)

    @classmethod
    def build(cls, segmenter: Segmenter, checkpoint: str = "") -> TrainedHead:
        """The package's own RPL checkpoint (the shipped one by default), or RPL's published file."""
        published = build_published_rpl(segmenter, checkpoint)
        return published if published is not None else super().build(segmenter, checkpoint)

    def augmented_logits(self, out: SegmenterOutput) -> torch.Tensor:
        """The classifier's logits on ``neck + residual``.

        When the classifier is a per-pixel affine map (checked once, at construction) this is computed as
        ``logits + up(classify(r) - classify(0))`` on the residual ``r`` at ``stage3``'s resolution: equal
        (affine maps commute with bilinear upsampling), and it upsamples 19 channels instead of ``neck``'s.
        """
        neck = out.features["neck"]
        residual = self.fast_path(out.features["stage3"])
        if not self._pointwise_affine:
            return self.segmenter.classify(neck + resize(residual, neck.shape[-2:]).to(neck.dtype))
        residual = residual.to(neck.dtype)
        delta = self.segmenter.classify(residual) - self.segmenter.classify(torch.zeros_like(residual[..., :1, :1]))
        return out.logits + resize(delta, out.logits.shape[-2:])

    def score(self, image: torch.Tensor, out: SegmenterOutput) -> torch.Tensor:
        """-logsumexp of the augmented logits, Gaussian-blurred, (B, h, w) at the logits' resolution."""
        energy = -torch.logsumexp(self.augmented_logits(out).float(), dim=1)
        return gaussian_blur(energy, self.blur_kernel, self.blur_sigma)
