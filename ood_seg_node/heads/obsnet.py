# Copyright 2026 The ood_seg_node developers. Licensed under the Apache License, Version 2.0.
"""ObsNet: an observer network that predicts, per pixel, whether the frozen segmenter is wrong.

Besnier, Bursuc, Briot, Picard, "Triggering Failures: Out-Of-Distribution detection by learning from
local adversarial attacks in Semantic Segmentation", ICCV 2021, arXiv 2108.01634 (code: valeoai/obsnet).

The observer sees the input image and the segmenter's intermediate activations, added at matching stages
of its own encoder/decoder, and outputs one logit per pixel; the anomaly score is its sigmoid, the
probability that the segmenter errs there. Training (``ood_seg_node.training.obsnet``) uses Local
Adversarial Attacks (``ood_seg_node.training.attacks``) to create segmenter failures to learn from.

Deviations from the paper, and why:

- The observer is a copy of the *builtin* segmenter's topology (stem, three residual stages, light ASPP,
  stride-4 decoder) for every segmenter: ``full`` uses the builtin widths (for the builtin segmenter, an
  exact copy of its encoder/decoder, which training initialises from the segmenter's weights as the
  official code does), ``light`` halves every width. For the torchvision segmenters the paper would copy
  a ResNet-50/101 DeepLab; that doubles the cost of an already heavy model, so they get the same small
  observer (a CPU budget choice).
- The segmenter's taps are projected with 1x1 convolution + batch norm to the observer's widths (and
  resized when strides differ) before being added; the paper adds equally-shaped features directly.
  This is what lets one observer design watch segmenters of any width.
- The ``neck`` tap (the features the segmenter's classifier reads) is added to the decoder output and
  followed by a small depthwise/pointwise refinement block before the 1-channel classifier, standing in
  for the paper's last decoder block that processes the added penultimate features.
- No dropout (the paper's MC-dropout variant is not used for scoring).
- The output is produced at the segmenter's logit resolution (stride 4 for the builtin segmenter) and
  upsampled by the pipeline, like every head; the paper outputs at input resolution.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ood_seg_node.fastpath import FastPath
from ood_seg_node.heads.base import HEADS, TrainedHead
from ood_seg_node.heads.obsnet_published import build_published_obsnet
from ood_seg_node.layers import (
    LITE_WIDTHS,
    Normalise,
    conv_bn_relu,
    lite_deeplab,
    lite_deeplab_forward,
    pointwise,
    resize,
)
from ood_seg_node.segmenters.base import Segmenter, SegmenterOutput

TAPS = ("stage1", "stage2", "stage3", "neck")
SIZES: dict[str, dict[str, int]] = {"full": dict(LITE_WIDTHS), "light": {k: v // 2 for k, v in LITE_WIDTHS.items()}}


class Observer(nn.Module):
    """The builtin segmenter's encoder/decoder (:func:`~ood_seg_node.layers.lite_deeplab`) plus tap inputs.

    Module names (``stem``, ``stage1``...``decoder``) match :class:`BuiltinSegmenter`, so that a ``full``
    observer can start from the segmenter's own weights.
    """

    def __init__(self, widths: dict[str, int], tap_channels: dict[str, int]) -> None:
        super().__init__()
        w = widths
        self.normalise = Normalise()
        for name, layer in lite_deeplab(w).items():
            self.add_module(name, layer)
        self.refine = nn.Sequential(conv_bn_relu(w["neck"], w["neck"], groups=w["neck"]),
                                    pointwise(w["neck"], w["neck"]))
        self.classifier = nn.Conv2d(w["neck"], 1, 1)
        # 1x1 projections of the segmenter taps to the observer's widths; batch norm evens out the very
        # different activation scales of the builtin and torchvision backbones
        self.taps = nn.ModuleDict({
            name: nn.Sequential(nn.Conv2d(tap_channels[name], w[name], 1, bias=False), nn.BatchNorm2d(w[name]))
            for name in TAPS
        })

    def forward(self, rgb01: torch.Tensor, *taps: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) image in [0, 1] and the segmenter's taps in :data:`TAPS` order -> error logits."""
        features = dict(zip(TAPS, taps, strict=True))

        def add_tap(name: str, x: torch.Tensor) -> torch.Tensor:
            return x + resize(self.taps[name](features[name]), x.shape[-2:])

        neck = lite_deeplab_forward(self, self.normalise(rgb01), add_tap)[-1]
        return self.classifier(self.refine(neck))


@HEADS.register("obsnet")
class ObsNet(TrainedHead):
    """ObsNet head: score = sigmoid(observer(image, segmenter taps)) at the logits' resolution.

    Args:
        tap_channels: channels of the observed segmenter's ``stage1``/``stage2``/``stage3``/``neck`` taps.
        size: ``full`` (the builtin segmenter's widths) or ``light`` (half of them).
    """

    name = "obsnet"
    required_taps = TAPS
    fallback_threshold = 0.5

    def __init__(self, tap_channels: dict[str, int], size: str = "full") -> None:
        super().__init__()
        if size not in SIZES:
            raise ValueError(f"unknown obsnet size {size!r}; valid: {', '.join(SIZES)}")
        self.size = size
        self.tap_channels = {tap: int(tap_channels[tap]) for tap in TAPS}
        self.observer = Observer(SIZES[size], self.tap_channels)
        self.fast_path = FastPath(self.observer)

    @property
    def config(self) -> dict[str, Any]:
        return {"size": self.size, "widths": dict(SIZES[self.size]), "tap_channels": dict(self.tap_channels)}

    @classmethod
    def from_config(cls, segmenter: Segmenter, config: dict[str, Any]) -> ObsNet:
        return cls(segmenter.tap_channels, config["size"])

    @classmethod
    def build(cls, segmenter: Segmenter, checkpoint: str = "") -> TrainedHead:
        """The package's own ObsNet checkpoint (the shipped one by default), or ObsNet's published observer."""
        published = build_published_obsnet(segmenter, checkpoint)
        return published if published is not None else super().build(segmenter, checkpoint)

    def forward(self, image: torch.Tensor, features: dict[str, torch.Tensor],
                size: tuple[int, int] | None = None) -> torch.Tensor:
        """(B, 3, H, W) image in [0, 1] and taps -> error logits (B, 1, h, w), resized to ``size``."""
        logits = self.fast_path(image.float(), *(features[tap].float() for tap in TAPS))
        return logits if size is None else resize(logits, size)

    def score(self, image: torch.Tensor, out: SegmenterOutput) -> torch.Tensor:
        """Probability that the segmenter is wrong, (B, h, w) at the segmenter's logit resolution."""
        return torch.sigmoid(self(image, out.features, tuple(out.logits.shape[-2:])))[:, 0]
