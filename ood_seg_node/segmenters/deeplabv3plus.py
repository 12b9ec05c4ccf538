# Copyright 2026 The ood_seg_node developers. Licensed under the Apache License, Version 2.0.
"""VainF's DeepLabV3+ (MobileNetV2 / ResNet-101, output stride 16) loading the published Cityscapes files.

DeepLabV3+ (Chen et al., "Encoder-Decoder with Atrous Separable Convolution for Semantic Image
Segmentation", ECCV 2018) as implemented by VainF/DeepLabV3Plus-Pytorch (MIT), whose Cityscapes checkpoints
``best_deeplabv3plus_mobilenet_cityscapes_os16.pth`` and ``best_deeplabv3plus_resnet101_cityscapes_os16.pth``
many teams already have. The modules here are written anew but keep that code's attribute names, so the
published ``model_state`` loads with ``strict=True`` and no key table:

- ``backbone``: the trunk. MobileNetV2 is split as in VainF's ``_segm_mobilenet`` into ``low_level_features``
  (``features[:4]``, stride 4, 24 channels) and ``high_level_features`` (``features[4:-1]``, 320 channels);
  the slices keep the original indices (``high_level_features.4`` ...), as ``nn.Sequential`` slicing does.
  ResNet-101 is torchvision's (VainF's ``resnet.py`` is the same code) with the last stage dilated and
  ``avgpool``/``fc`` dropped, as VainF's ``IntermediateLayerGetter`` drops them.
- ``classifier``: VainF's ``DeepLabHeadV3Plus``: ``project`` (low-level 1x1 to 48 channels), ``aspp``
  (1x1, three 3x3 atrous branches at rates 6/12/18 for OS16, image pooling; ``project`` with dropout),
  then ``classifier`` (3x3 conv on the 48 + 256 concatenation, BN, ReLU, 1x1 to 19 classes).

Taps: ``stage1`` = the low-level features the decoder projects (stride 4), ``stage2`` = the last stride-8
features (MobileNetV2 block 6, ResNet ``layer2``), ``stage3`` = the ASPP input (stride 16), ``neck`` = the
256-channel decoder output the final 1x1 classifier reads (stride 4), so ``classify(neck) == logits``.

Deviations from the official forward, both outside the network: logits stay at stride 4 (VainF's
``_SimpleSegmentationModel`` upsamples them to the input size, bilinear, ``align_corners=False``; the
pipeline does that for what it publishes), and there is no ``aux_classifier`` (VainF has none either).
The input normalisation is VainF's: ImageNet mean/std on RGB in [0, 1] (``predict.py``, ``main.py``).
Only output stride 16 and width multiplier 1.0 are built: those are the published files.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn

from ood_seg_node.checkpoints import load_strict, read_weights, unwrap_state_dict
from ood_seg_node.cityscapes import NUM_CLASSES
from ood_seg_node.layers import resize
from ood_seg_node.segmenters.base import SEGMENTERS, Segmenter, SegmenterError

OUTPUT_STRIDE = 16
ASPP_RATES = (6, 12, 18)  # VainF's rates for OS16 (12/24/36 are for OS8)
ASPP_WIDTH = 256
LOW_LEVEL_WIDTH = 48
# MobileNetV2 inverted-residual table (Sandler et al., CVPR 2018): expansion t, channels c, repeats n, stride s
MOBILENET_V2_BLOCKS: tuple[tuple[int, int, int, int], ...] = (
    (1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1),
)
MOBILENET_LOW_LEVEL_END = 4  # features[:4] end at stride 4 with 24 channels: the decoder's skip
MOBILENET_STAGE2 = "6"  # the last stride-8 block (32 channels)
BACKBONES = ("mobilenet", "resnet101")
PUBLISHED_FILES = {name: f"best_deeplabv3plus_{name}_cityscapes_os16.pth" for name in BACKBONES}


def _conv_bn_relu6(cin: int, cout: int, kernel: int, *, stride: int = 1, dilation: int = 1,
                   groups: int = 1) -> nn.Sequential:
    """VainF's MobileNetV2 ``ConvBNReLU``: no padding in the conv (blocks pad their input instead)."""
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel, stride, 0, dilation=dilation, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU6(inplace=True),
    )


class InvertedResidual(nn.Module):
    """MobileNetV2 block as VainF writes it: the *block input* is zero-padded for the 3x3 depthwise conv.

    The padding happens before the 1x1 expansion, so the border of the expanded map is
    ``relu6(bn(0))``, not zero as in torchvision's MobileNetV2. The published weights were trained with
    this, so it is kept: the border pixels' logits depend on it.
    """

    def __init__(self, cin: int, cout: int, stride: int, dilation: int, expand_ratio: int) -> None:
        super().__init__()
        hidden = int(round(cin * expand_ratio))
        layers: list[nn.Module] = [] if expand_ratio == 1 else [_conv_bn_relu6(cin, hidden, 1)]
        layers += [
            _conv_bn_relu6(hidden, hidden, 3, stride=stride, dilation=dilation, groups=hidden),
            nn.Conv2d(hidden, cout, 1, bias=False),
            nn.BatchNorm2d(cout),
        ]
        self.conv = nn.Sequential(*layers)
        self.stride = stride
        self.dilation = dilation
        self.use_residual = stride == 1 and cin == cout
        # a dilated 3x3 spans 2*dilation + 1 pixels: pad dilation on every side ("fixed padding")
        self.input_padding = (dilation, dilation, dilation, dilation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv(F.pad(x, self.input_padding))
        return x + out if self.use_residual else out


def mobilenet_v2_features(output_stride: int = OUTPUT_STRIDE) -> list[nn.Module]:
    """VainF's ``MobileNetV2.features`` without the final 1x1 to 1280 channels (DeepLabV3+ never uses it).

    Once the running stride reaches ``output_stride``, later strides become dilation; the first block of a
    stage keeps the previous stage's dilation, as in VainF's code.
    """
    layers: list[nn.Module] = [_conv_bn_relu6(3, 32, 3, stride=2)]  # unpadded, as VainF's stem
    cin, current_stride, dilation = 32, 2, 1
    for expand, cout, repeats, stage_stride in MOBILENET_V2_BLOCKS:
        first_dilation = dilation
        if current_stride == output_stride:
            stride, dilation = 1, dilation * stage_stride
        else:
            stride, current_stride = stage_stride, current_stride * stage_stride
        for index in range(repeats):
            layers.append(InvertedResidual(cin, cout, stride if index == 0 else 1,
                                           first_dilation if index == 0 else dilation, expand))
            cin = cout
    return layers


class MobileNetV2Trunk(nn.Module):
    """``low_level_features`` (blocks 0-3) and ``high_level_features`` (4-17), keeping VainF's indices."""

    def __init__(self) -> None:
        super().__init__()
        layers = list(enumerate(mobilenet_v2_features()))
        cut = MOBILENET_LOW_LEVEL_END
        self.low_level_features = nn.Sequential(OrderedDict((str(i), m) for i, m in layers[:cut]))
        self.high_level_features = nn.Sequential(OrderedDict((str(i), m) for i, m in layers[cut:]))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """-> (stride-4 low-level features, last stride-8 features, stride-16 features)."""
        low = self.low_level_features(x)
        x, mid = low, low
        for name, block in self.high_level_features.named_children():
            x = block(x)
            if name == MOBILENET_STAGE2:
                mid = x
        return low, mid, x


class ResNet101Trunk(nn.Module):
    """torchvision's ResNet-101 with ``layer4`` dilated (OS16), without ``avgpool``/``fc``.

    VainF's ``resnet.py`` is torchvision's ResNet (stride on the 3x3 conv), wrapped in an
    ``IntermediateLayerGetter`` that stops after ``layer4``; adopting torchvision's children under the same
    names gives the same keys (``backbone.conv1.weight``, ``backbone.layer3.22.bn3.bias``...).
    """

    def __init__(self) -> None:
        super().__init__()
        from torchvision.models import resnet101

        network = resnet101(weights=None, replace_stride_with_dilation=[False, False, True])
        for name, child in network.named_children():
            if name not in ("avgpool", "fc"):
                self.add_module(name, child)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """-> (``layer1`` (stride 4, 256 ch), ``layer2`` (stride 8, 512 ch), ``layer4`` (stride 16, 2048 ch))."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        low = self.layer1(x)
        mid = self.layer2(low)
        return low, mid, self.layer4(self.layer3(mid))


def _conv_bn_relu(cin: int, cout: int, kernel: int, *, dilation: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel, padding=dilation if kernel == 3 else 0, dilation=dilation, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class ASPPPooling(nn.Sequential):
    """Image-level branch: global average, 1x1 conv, BN, ReLU, broadcast back (bilinear from 1x1)."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__(nn.AdaptiveAvgPool2d(1), nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout),
                         nn.ReLU(inplace=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(super().forward(x), size=x.shape[-2:], mode="bilinear", align_corners=False)


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling (Chen et al., arXiv 1706.05587): five branches, concatenated, projected."""

    def __init__(self, cin: int, rates: tuple[int, int, int] = ASPP_RATES, width: int = ASPP_WIDTH) -> None:
        super().__init__()
        self.convs = nn.ModuleList([
            _conv_bn_relu(cin, width, 1),
            *(_conv_bn_relu(cin, width, 3, dilation=rate) for rate in rates),
            ASPPPooling(cin, width),
        ])
        self.project = nn.Sequential(
            nn.Conv2d(5 * width, width, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True),
            nn.Dropout(0.1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.project(torch.cat([branch(x) for branch in self.convs], dim=1))


class DeepLabV3PlusHead(nn.Module):
    """VainF's ``DeepLabHeadV3Plus``; :meth:`decode` stops before the final 1x1 so the neck can be tapped."""

    def __init__(self, high_channels: int, low_channels: int, num_classes: int = NUM_CLASSES) -> None:
        super().__init__()
        self.project = nn.Sequential(
            nn.Conv2d(low_channels, LOW_LEVEL_WIDTH, 1, bias=False), nn.BatchNorm2d(LOW_LEVEL_WIDTH),
            nn.ReLU(inplace=True),
        )
        self.aspp = ASPP(high_channels)
        self.classifier = nn.Sequential(
            nn.Conv2d(LOW_LEVEL_WIDTH + ASPP_WIDTH, ASPP_WIDTH, 3, padding=1, bias=False),
            nn.BatchNorm2d(ASPP_WIDTH),
            nn.ReLU(inplace=True),
            nn.Conv2d(ASPP_WIDTH, num_classes, 1),
        )

    def decode(self, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
        """Low-level (stride 4) and deep (stride 16) features -> the 256-channel neck at stride 4."""
        skip = self.project(low)
        context = resize(self.aspp(high), skip.shape[-2:])  # bilinear, align_corners=False, as VainF
        neck = torch.cat([skip, context], dim=1)
        for layer in self.neck_layers():
            neck = layer(neck)
        return neck

    def neck_layers(self) -> list[nn.Module]:
        return list(self.classifier)[:-1]

    def final(self) -> nn.Conv2d:
        return self.classifier[-1]


class VainFDeepLabV3Plus(Segmenter):
    """``deeplabv3plus_mobilenet`` / ``deeplabv3plus_resnet101``: logits at stride 4, runs at the input's size.

    The attributes ``backbone`` and ``classifier`` are VainF's ``DeepLabV3`` attributes, so
    ``state_dict()`` keys are the published ``model_state`` keys.
    """

    def __init__(self, backbone: str) -> None:
        if backbone == "mobilenet":
            trunk: nn.Module = MobileNetV2Trunk()
            low, mid, high = 24, 32, 320
        elif backbone == "resnet101":
            trunk = ResNet101Trunk()
            low, mid, high = 256, 512, 2048
        else:
            raise SegmenterError(f"unknown DeepLabV3+ backbone {backbone!r}; valid: {', '.join(BACKBONES)}")
        super().__init__(f"deeplabv3plus_{backbone}",
                         {"stage1": low, "stage2": mid, "stage3": high, "neck": ASPP_WIDTH})
        self.backbone = trunk
        self.classifier = DeepLabV3PlusHead(high, low)
        self.default_input_size = None  # trained on 768x768 crops, validated on full 1024x2048 frames

    def forward_taps(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        low, mid, high = self.backbone(x)
        neck = self.classifier.decode(low, high)
        return self.classifier.final()(neck), low, mid, high, neck

    def classify(self, neck: torch.Tensor) -> torch.Tensor:
        return self.classifier.final()(neck)

    def neck_layers(self) -> list[nn.Module]:
        """The decoder's 3x3 conv, BN, ReLU (applied to the skip + ASPP concatenation)."""
        return self.classifier.neck_layers()


def build_published(backbone: str, arch: str, checkpoint: str) -> Segmenter:
    """VainF's DeepLabV3+ with ``backbone`` and the published Cityscapes file ``checkpoint``, loaded strictly."""
    spec = f"deeplabv3plus_{backbone}"
    if arch:
        raise SegmenterError(f"segmenter {spec!r} takes no architecture (got '{spec}:{arch}')")
    if not checkpoint:
        raise SegmenterError(
            f"segmenter {spec} needs segmenter_checkpoint (VainF's {PUBLISHED_FILES[backbone]}); "
            "no weights are downloaded"
        )
    # VainF saves {'model_state', 'optimizer_state', 'scheduler_state', 'cur_itrs', 'best_score'}
    state = unwrap_state_dict(read_weights(checkpoint), checkpoint, ("model_state",))
    segmenter = VainFDeepLabV3Plus(backbone)
    load_strict(segmenter, state, f"{checkpoint} does not fit {spec}")
    segmenter.refresh_identity()
    return segmenter


@SEGMENTERS.register("deeplabv3plus_mobilenet")
def build_mobilenet(arch: str, checkpoint: str) -> Segmenter:
    """VainF DeepLabV3+ MobileNetV2, OS16, from ``best_deeplabv3plus_mobilenet_cityscapes_os16.pth``."""
    return build_published("mobilenet", arch, checkpoint)


@SEGMENTERS.register("deeplabv3plus_resnet101")
def build_resnet101(arch: str, checkpoint: str) -> Segmenter:
    """VainF DeepLabV3+ ResNet-101, OS16, from ``best_deeplabv3plus_resnet101_cityscapes_os16.pth``."""
    return build_published("resnet101", arch, checkpoint)
