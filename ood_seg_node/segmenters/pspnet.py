# Copyright 2026 The ood_seg_node developers. Licensed under the Apache License, Version 2.0.
"""PSPNet on a dilated ResNet-50 as the MIT CSAIL code trains it: the StreetHazards teacher DiCNet publishes.

PSPNet (Zhao et al., "Pyramid Scene Parsing Network", CVPR 2017) in the layout of CSAILVision's
semantic-segmentation-pytorch (``resnet50dilated`` encoder + ``ppm_deepsup`` decoder), the code Hendrycks et
al. trained the StreetHazards baseline with and DiCNet (zhouhuan-hust/DiCNet, ``models/model.py``) loads as
its teacher. That code saves the encoder and the decoder as two files (``encoder_epoch_N.pth``,
``decoder_epoch_N.pth``; DiCNet's ``pretrained/encoder.pth``, ``decoder.pth``), each a bare state dict, so
``segmenter_checkpoint`` is the folder holding one of each or the two paths joined by a comma. The modules
here are written anew with the official attribute names, so both files load with ``strict=True``:

- ``encoder`` (``ResnetDilated``): CSAIL's ResNet with a deep stem (three 3x3 convs ``conv1``-``conv3``,
  64/64/128 channels, the first with stride 2, then a max pool), torchvision-style bottleneck blocks in
  ``layer1``-``layer4``; ``layer3`` and ``layer4`` keep stride 1 and dilate their 3x3 convolutions (the
  block that used to stride by half the layer's dilation, 1 and 2; the others by 2 and 4): output stride 8.
- ``decoder`` (``PPMDeepsup``): four pyramid-pooling branches (adaptive average pool to 1, 2, 3, 6,
  1x1 conv to 512, BN, ReLU, bilinearly upsampled back with ``align_corners=False``) concatenated with the
  2048-channel features; ``conv_last`` = 3x3 conv to 512, BN, ReLU, dropout, 1x1 conv to the classes; the
  deep-supervision branch (``cbr_deepsup``, ``conv_last_deepsup``) is trained, published and unused at
  inference, as in the official forward with ``segSize``.

The class count is read from the decoder file: 13 is StreetHazards (the published teacher), 19 Cityscapes.
Input: RGB in [0, 1] normalised with the ImageNet mean and std (the official ``img_transform``). Logits stay
at stride 8; the official inference upsamples them bilinearly with ``align_corners=False``.

Taps: ``stage1`` = ``layer1`` (256 channels, stride 4), ``stage2`` = ``layer2`` (512, stride 8), ``stage3`` =
``layer4`` (2048, stride 8), ``neck`` = the ReLU output of ``conv_last`` (512), so ``classify(neck) ==
logits``, and ``neck_preact`` = ``conv_last``'s batch-norm output before that ReLU: DiCNet's teacher feature.

CSAIL files written by PyTorch before 0.4.1 have no ``num_batches_tracked`` counters; when a file has none
at all they are filled with zeros (they play no part at inference).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from torchvision.models.resnet import BasicBlock, Bottleneck

from ood_seg_node.checkpoints import CheckpointError, load_strict, read_weights, unwrap_state_dict, with_batch_counters
from ood_seg_node.label_spaces import label_space_with
from ood_seg_node.layers import resize
from ood_seg_node.segmenters.base import SEGMENTERS, Segmenter, SegmenterError

NAME = "pspnet_resnet50dilated"
POOL_SCALES = (1, 2, 3, 6)
PPM_WIDTH = 512
RESNET_WIDTHS = (64, 128, 256, 512)
RESNET_BLOCKS = {"resnet34": (BasicBlock, (3, 4, 6, 3)), "resnet50": (Bottleneck, (3, 4, 6, 3))}


def _dilated_layer(block: type[nn.Module], inplanes: int, planes: int, blocks: int, *, stride: int,
                   dilation: int) -> nn.Sequential:
    """A ResNet layer; with ``dilation > 1`` it keeps stride 1 and dilates its 3x3 convs instead.

    The 3x3 conv that would have strided (the first block's) takes ``dilation // 2``, every other 3x3 conv
    ``dilation``: CSAIL's conversion of an ImageNet ResNet to output stride 8.
    """
    expansion = block.expansion  # type: ignore[attr-defined]
    downsample = None
    if stride != 1 or inplanes != planes * expansion:
        downsample = nn.Sequential(nn.Conv2d(inplanes, planes * expansion, 1, stride=stride, bias=False),
                                   nn.BatchNorm2d(planes * expansion))
    layer = nn.Sequential(block(inplanes, planes, stride, downsample),
                          *(block(planes * expansion, planes) for _ in range(blocks - 1)))
    if dilation > 1:
        for conv in layer.modules():
            if not isinstance(conv, nn.Conv2d):
                continue
            strided, conv.stride = conv.stride == (2, 2), (1, 1)
            if conv.kernel_size == (3, 3):
                rate = dilation // 2 if strided else dilation
                conv.dilation, conv.padding = (rate, rate), (rate, rate)
    return layer


def _conv_bn_relu(cin: int, cout: int, kernel: int, *, stride: int = 1, padding: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, kernel, stride=stride, padding=padding, bias=False), nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True)]


class DilatedResNet(nn.Module):
    """CSAIL's ``ResnetDilated`` (deep stem, ResNet-50) or DiCNet's ``ResnetDilated1`` (7x7 stem, ResNet-34).

    DiCNet's student stem is its ``conv7x7``: a 7x7 stride-2 conv with padding 1 (not 3), kept as published.
    ``forward`` returns the four layers' outputs.
    """

    def __init__(self, depth: str, *, deep_stem: bool) -> None:
        super().__init__()
        block, blocks = RESNET_BLOCKS[depth]
        if deep_stem:
            self.conv1, self.bn1, self.relu1 = _conv_bn_relu(3, 64, 3, stride=2)
            self.conv2, self.bn2, self.relu2 = _conv_bn_relu(64, 64, 3)
            self.conv3, self.bn3, self.relu3 = _conv_bn_relu(64, 128, 3)
            inplanes = 128
        else:
            self.conv1, self.bn1, self.relu1 = _conv_bn_relu(3, 64, 7, stride=2, padding=1)
            inplanes = 64
        self.deep_stem = deep_stem
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        expansion = block.expansion
        for index, (planes, count, stride, dilation) in enumerate(
                zip(RESNET_WIDTHS, blocks, (1, 2, 2, 2), (1, 1, 2, 4)), start=1):
            setattr(self, f"layer{index}",
                    _dilated_layer(block, inplanes, planes, count, stride=stride, dilation=dilation))
            inplanes = planes * expansion
        self.out_channels = inplanes

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        x = self.relu1(self.bn1(self.conv1(x)))
        if self.deep_stem:
            x = self.relu3(self.bn3(self.conv3(self.relu2(self.bn2(self.conv2(x))))))
        x = self.maxpool(x)
        l1 = self.layer1(x)
        l2 = self.layer2(l1)
        l3 = self.layer3(l2)
        return l1, l2, l3, self.layer4(l3)


class PyramidPooling(nn.Module):
    """The PPM branches: ``ppm.<i>`` = (adaptive pool, 1x1 conv, BN, ReLU), concatenated after the input."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.ppm = nn.ModuleList(
            nn.Sequential(nn.AdaptiveAvgPool2d(scale), *_conv_bn_relu(channels, PPM_WIDTH, 1, padding=0))
            for scale in POOL_SCALES
        )

    def pool(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, h, w) -> (B, C + 4 * 512, h, w), each branch upsampled with ``align_corners=False``."""
        return torch.cat([x, *(resize(branch(x), x.shape[-2:]) for branch in self.ppm)], dim=1)


class PPMDeepsup(PyramidPooling):
    """CSAIL's ``PPMDeepsup`` decoder with its published attribute names (see the module docstring)."""

    def __init__(self, channels: int, num_classes: int) -> None:
        super().__init__(channels)
        self.cbr_deepsup = nn.Sequential(*_conv_bn_relu(channels // 2, channels // 4, 3))
        self.conv_last = nn.Sequential(
            *_conv_bn_relu(channels + len(POOL_SCALES) * PPM_WIDTH, PPM_WIDTH, 3),
            nn.Dropout2d(0.1),
            nn.Conv2d(PPM_WIDTH, num_classes, 1),
        )
        self.conv_last_deepsup = nn.Conv2d(channels // 4, num_classes, 1)
        self.dropout_deepsup = nn.Dropout2d(0.1)


class CSAILPSPNet(Segmenter):
    """``pspnet_resnet50dilated``: logits at stride 8, runs at the input's size."""

    def __init__(self, num_classes: int) -> None:
        space = label_space_with(num_classes)
        if space is None:
            raise SegmenterError(f"segmenter {NAME} predicts {num_classes} classes; known label spaces have "
                                 "13 (StreetHazards) or 19 (Cityscapes)")
        super().__init__(NAME, {"stage1": 256, "stage2": 512, "stage3": 2048, "neck": PPM_WIDTH,
                                "neck_preact": PPM_WIDTH})
        self.label_space = space
        self.encoder = DilatedResNet("resnet50", deep_stem=True)
        self.decoder = PPMDeepsup(self.encoder.out_channels, num_classes)
        self.default_input_size = None  # the official evaluation runs StreetHazards' 720x1280 frames whole

    def forward_taps(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        l1, l2, _, l4 = self.encoder(x)
        conv, bn = self.decoder.conv_last[:2]
        preact = bn(conv(self.decoder.pool(l4)))
        neck = torch.relu(preact)  # not the in-place ReLU module: ``preact`` is a tap too
        return self.classify(neck), l1, l2, l4, neck, preact

    def classify(self, neck: torch.Tensor) -> torch.Tensor:
        return self.decoder.conv_last[4](neck)

    def neck_layers(self) -> list[nn.Module]:
        """``conv_last``'s 3x3 conv, BN and ReLU (applied to the pyramid-pooled features)."""
        return list(self.decoder.conv_last[:3])


def encoder_decoder_files(checkpoint: str) -> tuple[Path, Path]:
    """``enc.pth,dec.pth``, or a folder holding exactly one ``encoder*.pth`` and one ``decoder*.pth``."""
    if "," in checkpoint:
        encoder, _, decoder = checkpoint.partition(",")
        return Path(encoder.strip()), Path(decoder.strip())
    folder = Path(checkpoint)
    if not folder.is_dir():
        raise CheckpointError(f"segmenter {NAME} needs a folder holding encoder*.pth and decoder*.pth, or "
                              f"'encoder.pth,decoder.pth'; {checkpoint} is neither")
    found = []
    for part in ("encoder", "decoder"):
        files = sorted(folder.glob(f"{part}*.pth"))
        if len(files) != 1:
            listing = ", ".join(f.name for f in files) or "none"
            raise CheckpointError(f"{folder} must hold exactly one {part}*.pth (found {listing}); name the two "
                                  "files as 'encoder.pth,decoder.pth' instead")
        found.append(files[0])
    return found[0], found[1]


@SEGMENTERS.register(NAME)
def build_pspnet(arch: str, checkpoint: str) -> Segmenter:
    """CSAIL's PSPNet (ResNet-50 dilated + PPM) from its published encoder and decoder files."""
    if arch:
        raise SegmenterError(f"segmenter {NAME!r} takes no architecture (got '{NAME}:{arch}')")
    if not checkpoint:
        raise SegmenterError(f"segmenter {NAME} needs segmenter_checkpoint: the folder with the CSAIL encoder "
                             "and decoder files (DiCNet's StreetHazards teacher); no weights are downloaded")
    encoder_file, decoder_file = encoder_decoder_files(checkpoint)
    decoder_state = unwrap_state_dict(read_weights(decoder_file), str(decoder_file), ())
    classifier = decoder_state.get("conv_last.4.weight")
    if classifier is None or classifier.ndim != 4:
        raise CheckpointError(f"{decoder_file} does not fit {NAME}'s decoder: missing key 'conv_last.4.weight'")
    segmenter = CSAILPSPNet(int(classifier.shape[0]))
    encoder_state = unwrap_state_dict(read_weights(encoder_file), str(encoder_file), ())
    load_strict(segmenter.encoder, with_batch_counters(encoder_state, segmenter.encoder),
                f"{encoder_file} does not fit {NAME}'s encoder")
    load_strict(segmenter.decoder, with_batch_counters(decoder_state, segmenter.decoder),
                f"{decoder_file} does not fit {NAME}'s decoder")
    segmenter.refresh_identity()
    return segmenter
