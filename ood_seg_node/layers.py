# Copyright 2026 The ood_seg_node developers. Licensed under the Apache License, Version 2.0.
"""Layers shared by the builtin segmenter and the heads with a network of their own.

The builtin segmenter is a DeepLabV3+-lite (residual encoder at strides 4/8/16, a light ASPP, a stride-4
decoder with a skip from stride 4). ObsNet's observer copies that exact topology (so it can start from the
segmenter's weights), DiCNet's student and RPL reuse its blocks. Keeping the blocks here lets the heads
share them without importing a concrete segmenter. Every module's names are part of checkpoint keys.
"""

from __future__ import annotations

from typing import Callable, Mapping

import torch
import torch.nn.functional as F
from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# DeepLabV3+-lite widths of the builtin segmenter; ``skip`` is the decoder's low-level skip, ``neck`` the
# decoder output the classifier reads
LITE_WIDTHS = {"stem": 24, "stage1": 32, "stage2": 64, "stage3": 128, "aspp": 96, "neck": 64, "skip": 24}


class Normalise(nn.Module):
    """``(rgb01 - mean) / std`` per channel; the statistics are constants, not part of the state dict."""

    def __init__(self, mean: tuple[float, ...] = IMAGENET_MEAN, std: tuple[float, ...] = IMAGENET_STD) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1), persistent=False)

    def forward(self, rgb01: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) RGB in [0, 1] -> normalised image."""
        return (rgb01 - self.mean) / self.std


def resize(x: torch.Tensor, size: tuple[int, ...] | torch.Size) -> torch.Tensor:
    """Bilinear resize of (B, C, h, w) maps to ``size`` = (H, W); a no-op when they already have it."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False)


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
    """Atrous spatial pyramid pooling (Chen et al., arXiv 1706.05587) with few channels."""

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


def stage(cin: int, cout: int) -> nn.Sequential:
    """A downsampling residual block followed by a plain one."""
    return nn.Sequential(ResidualBlock(cin, cout, 2), ResidualBlock(cout, cout, 1))


def lite_deeplab(widths: Mapping[str, int]) -> dict[str, nn.Module]:
    """The DeepLabV3+-lite encoder/decoder as named modules, to ``add_module`` under these exact names.

    ``stem`` (stride 2), ``stage1``/``stage2``/``stage3`` (strides 4/8/16), ``aspp``, ``skip`` (the stride-4
    low-level features) and ``decoder`` (fused context + skip -> ``neck``). Run them with
    :func:`lite_deeplab_forward`.
    """
    w = widths
    fused = w["aspp"] + w["skip"]
    return {
        "stem": nn.Sequential(conv_bn_relu(3, w["stem"], stride=2), conv_bn_relu(w["stem"], w["stem"])),
        "stage1": stage(w["stem"], w["stage1"]),
        "stage2": stage(w["stage1"], w["stage2"]),
        "stage3": stage(w["stage2"], w["stage3"]),
        "aspp": LightASPP(w["stage3"], w["aspp"]),
        "skip": pointwise(w["stage1"], w["skip"]),
        "decoder": nn.Sequential(
            conv_bn_relu(fused, fused, groups=fused),
            pointwise(fused, w["neck"]),
            conv_bn_relu(w["neck"], w["neck"], groups=w["neck"]),
            pointwise(w["neck"], w["neck"]),
        ),
    }


def lite_deeplab_forward(
    net: nn.Module, x: torch.Tensor, mix: Callable[[str, torch.Tensor], torch.Tensor] | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Run the modules of :func:`lite_deeplab` held by ``net``: normalised image -> (stage1, stage2, stage3, neck).

    ``mix(name, features)``, when given, transforms each of the four outputs before the next layer reads
    it (ObsNet adds the observed segmenter's features there).
    """
    mix = mix or (lambda name, features: features)
    s1 = mix("stage1", net.stage1(net.stem(x)))
    s2 = mix("stage2", net.stage2(s1))
    s3 = mix("stage3", net.stage3(s2))
    context = F.interpolate(net.aspp(s3), size=s1.shape[-2:], mode="bilinear", align_corners=False)
    neck = mix("neck", net.decoder(torch.cat([context, net.skip(s1)], dim=1)))
    return s1, s2, s3, neck


def gaussian_blur(score: torch.Tensor, kernel_size: int = 7, sigma: float = 1.0) -> torch.Tensor:
    """Separable Gaussian blur of a (B, h, w) map, reflect-padded like torchvision's ``GaussianBlur``.

    Maps smaller than the kernel's half-width cannot be reflected and are padded by replication instead.
    """
    radius = kernel_size // 2
    offsets = torch.arange(kernel_size, dtype=score.dtype, device=score.device) - radius
    kernel = torch.exp(-0.5 * (offsets / sigma) ** 2)
    kernel = kernel / kernel.sum()
    height, width = score.shape[-2:]
    mode = "reflect" if height > radius and width > radius else "replicate"
    x = F.pad(score[:, None], (radius, radius, radius, radius), mode=mode)
    x = F.conv2d(x, kernel.view(1, 1, 1, kernel_size))
    x = F.conv2d(x, kernel.view(1, 1, kernel_size, 1))
    return x[:, 0]
