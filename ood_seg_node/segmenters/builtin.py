# Copyright 2026 The ood_seg_node developers. Licensed under the Apache License, Version 2.0.
"""The shipped builtin segmenter: a small DeepLabV3+-style network sized for CPU.

Residual encoder (strides 4, 8, 16), a light ASPP neck (dilations 1/2/4 + image pooling, as DiCNet's
teacher needs a pyramid neck), and a stride-4 decoder with a skip from stride 4, so that the small, far
obstacles of Lost&Found-style scenes still cover whole logit cells. About 0.6 M parameters (~2.5 MB).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ood_seg_node.cityscapes import NUM_CLASSES
from ood_seg_node.segmenters.base import Segmenter

WIDTHS = {"stem": 24, "stage1": 32, "stage2": 64, "stage3": 128, "aspp": 96, "neck": 64}
DEFAULT_INPUT_SIZE = (256, 512)


def conv_bn_relu(cin: int, cout: int, *, stride: int = 1, dilation: int = 1, groups: int = 1) -> nn.Sequential:
    """3x3 convolution (optionally strided, dilated or depthwise), batch norm, ReLU."""
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride, padding=dilation, dilation=dilation, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


def pointwise(cin: int, cout: int) -> nn.Sequential:
    """1x1 convolution, batch norm, ReLU."""
    return nn.Sequential(nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class ResidualBlock(nn.Module):
    """Basic residual block; the first block of a stage downsamples."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = conv_bn_relu(cin, cout, stride=stride)
        self.conv2 = nn.Sequential(nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout))
        self.shortcut = (
            nn.Identity() if stride == 1 and cin == cout
            else nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.conv2(self.conv1(x)) + self.shortcut(x))


class LightASPP(nn.Module):
    """Atrous spatial pyramid pooling (Chen et al. 2017) with few channels."""

    def __init__(self, cin: int, cout: int, dilations: tuple[int, ...] = (1, 2, 4)) -> None:
        super().__init__()
        self.branches = nn.ModuleList(
            [pointwise(cin, cout)] + [conv_bn_relu(cin, cout, dilation=d) for d in dilations[1:]]
        )
        self.image_pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(cin, cout, 1), nn.ReLU(inplace=True))
        self.project = pointwise(cout * (len(dilations) + 1), cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = self.image_pool(x).expand(-1, -1, x.shape[-2], x.shape[-1])
        return self.project(torch.cat([branch(x) for branch in self.branches] + [pooled], dim=1))


class BuiltinSegmenter(Segmenter):
    """DeepLabV3+-lite; ``neck`` is the stride-4 decoder output that the 1x1 classifier reads."""

    def __init__(self, num_classes: int = NUM_CLASSES) -> None:
        super().__init__("builtin", {"stage1": WIDTHS["stage1"], "stage2": WIDTHS["stage2"],
                                     "stage3": WIDTHS["stage3"], "neck": WIDTHS["neck"]})
        self.default_input_size = DEFAULT_INPUT_SIZE
        w = WIDTHS
        self.stem = nn.Sequential(conv_bn_relu(3, w["stem"], stride=2), conv_bn_relu(w["stem"], w["stem"]))
        self.stage1 = nn.Sequential(
            ResidualBlock(w["stem"], w["stage1"], 2), ResidualBlock(w["stage1"], w["stage1"], 1)
        )
        self.stage2 = nn.Sequential(
            ResidualBlock(w["stage1"], w["stage2"], 2), ResidualBlock(w["stage2"], w["stage2"], 1)
        )
        self.stage3 = nn.Sequential(
            ResidualBlock(w["stage2"], w["stage3"], 2), ResidualBlock(w["stage3"], w["stage3"], 1)
        )
        self.aspp = LightASPP(w["stage3"], w["aspp"])
        self.skip = pointwise(w["stage1"], 24)
        self.decoder = nn.Sequential(
            conv_bn_relu(w["aspp"] + 24, w["aspp"] + 24, groups=w["aspp"] + 24),
            pointwise(w["aspp"] + 24, w["neck"]),
            conv_bn_relu(w["neck"], w["neck"], groups=w["neck"]),
            pointwise(w["neck"], w["neck"]),
        )
        self.classifier = nn.Conv2d(w["neck"], num_classes, 1)

    def forward_taps(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        s1 = self.stage1(self.stem(x))
        s2 = self.stage2(s1)
        s3 = self.stage3(s2)
        context = F.interpolate(self.aspp(s3), size=s1.shape[-2:], mode="bilinear", align_corners=False)
        neck = self.decoder(torch.cat([context, self.skip(s1)], dim=1))
        return self.classifier(neck), s1, s2, s3, neck

    def classify(self, neck: torch.Tensor) -> torch.Tensor:
        return self.classifier(neck)
