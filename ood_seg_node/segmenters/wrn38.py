# Copyright 2026 The ood_seg_node developers. Licensed under the Apache License, Version 2.0.
"""NVIDIA's DeepLabV3+ on WideResNet38 (``DeepWV3Plus``), the segmenter of RPL, ObsNet and the SMIYC baseline.

DeepLabV3+ with a WideResNet38-A2 trunk (Wu et al., "Wider or Deeper: Revisiting the ResNet Model for Visual
Recognition", Pattern Recognition 2019; pre-activation blocks as in Mapillary's inplace_abn) as trained on
Cityscapes by Zhu et al., "Improving Semantic Segmentation via Video Propagation and Label Relaxation",
CVPR 2019 (NVIDIA/semantic-segmentation, ``sdcnet`` branch, ``network/deepv3.py`` and ``wider_resnet.py``).
RPL (yyliu01/RPL ``model/wide_network.py``), ObsNet (valeoai/obsnet ``Models/road_anomaly_networks``) and the
SegmentMeIfYouCan baseline all start from these weights. The modules here are written anew but keep the
official attribute names, so the published files load with ``strict=True`` and no key table:

- ``mod1`` (3x3 conv, stride 1), ``pool2`` and ``pool3`` (3x3 max pools, stride 2), ``mod2`` ... ``mod7``:
  WiderResNet38-A2 with structure (3, 3, 6, 3, 1, 1); ``mod4`` strides to 8, ``mod5`` is dilated 2 and
  ``mod6``/``mod7`` 4 (``dilation=True``). Blocks are ``IdentityResidualBlock``: ``bn1`` (BN + ReLU on the
  input), ``convs`` (``conv1``, ``bn2``, ``conv2`` [, ``bn3``, ``conv3``]) and ``proj_conv`` when the shape
  changes; every BN + ReLU pair is ``nn.Sequential(BatchNorm2d, ReLU)``, hence the ``.0.`` in ``bn1.0.weight``.
- ``aspp``: ``_AtrousSpatialPyramidPoolingModule(4096, 256, output_stride=8)``: ``img_pooling`` + ``img_conv``
  first in the concatenation, then ``features`` (1x1, 3x3 at rates 12/24/36), 1280 channels, no projection.
- ``bot_aspp`` (1x1, 1280 -> 256) and ``bot_fine`` (1x1 on ``mod2``'s output, 128 -> 48), both without BN.
- ``final``: 3x3 conv, BN, ReLU, 3x3 conv, BN, ReLU, 1x1 conv to 19 classes (no bias), at stride 2.

Every ``Upsample`` of the official code is bilinear with ``align_corners=True`` (``network/mynn.py``), so
``upsample_align_corners`` is True. Input: RGB in [0, 1] normalised with the ImageNet mean and std (NVIDIA's
``mean_std``, RPL's ``config.image_mean``/``image_std``, ObsNet's ``args.mean``/``args.std``).

Taps: ``stage1`` = ``mod2``'s output (128 channels, stride 2: the decoder's skip, ObsNet's first feature),
``stage2`` = ``mod5``'s output (1024 channels, stride 8: ObsNet's second feature), ``stage3`` = ``mod7``'s
output (4096 channels, stride 8: the ASPP input, which RPL's residual block also reads), ``neck`` = the input
of ``final``'s last 1x1 conv (256 channels, stride 2), so ``classify(neck) == logits``; and for the published
heads, which read them instead of computing them again, ``aspp`` (the 1280-channel ASPP output, stride 8)
and ``decoder_in`` (the official ``dec0``, the 304-channel input of ``final``, stride 2).

Deviation from the official forward, outside the network: logits stay at stride 2 (the official code
upsamples them to the input size; the pipeline does that with ``score_resolution: input``).
The ~137 M parameters are built on the meta device and the file's tensors are assigned to them, so the
weights exist once in memory and nothing is initialised only to be overwritten.
"""

from __future__ import annotations

from collections import OrderedDict
from contextlib import nullcontext

import torch
import torch.nn.functional as F
from torch import nn

from ood_seg_node.checkpoints import load_strict, read_weights, unwrap_state_dict, with_batch_counters
from ood_seg_node.cityscapes import NUM_CLASSES
from ood_seg_node.segmenters.base import SEGMENTERS, Segmenter, SegmenterError

NAME = "deeplabv3plus_wrn38"
# WiderResNet38-A2 (structure and widths of ``wider_resnet38_a2``): blocks per module and each block's widths
STRUCTURE = (3, 3, 6, 3, 1, 1)
WIDTHS: tuple[tuple[int, ...], ...] = ((128, 128), (256, 256), (512, 512), (512, 1024), (512, 1024, 2048),
                                       (1024, 2048, 4096))
DILATIONS = (1, 1, 1, 2, 4, 4)  # mod2 ... mod7 with ``dilation=True``: output stride 8
DROPOUT = {6: 0.3, 7: 0.5}  # mod6 / mod7 (Dropout2d, before the last conv; identity in eval)
ASPP_RATES = (12, 24, 36)  # (6, 12, 18) doubled for output stride 8
ASPP_WIDTH = 256
FINE_WIDTH = 48
PUBLISHED_FILES = ("cityscapes_best.pth", "cityscapes_cv0_wideresnet38_nosdcaug.pth",
                   "DeepLabV3+_WideResNet38_baseline.pth", "rev3.pth", "res.pth", "ObsNet's segmenter file")
RPL_PREFIX = "branch1."  # RPL's ``Network.branch1`` is a DeepWV3Plus holding its own ``residual_block``
RPL_HEAD_PREFIX = "branch1.residual_block."


def upsample(x: torch.Tensor, size: tuple[int, ...] | torch.Size) -> torch.Tensor:
    """The official ``mynn.Upsample``: bilinear with ``align_corners=True``."""
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=True)


def _bn_relu(channels: int) -> nn.Sequential:
    """The official ``bnrelu``: ``Norm2d`` (BatchNorm2d) then an in-place ReLU, as one ``Sequential``."""
    return nn.Sequential(nn.BatchNorm2d(channels), nn.ReLU(inplace=True))


def _conv(cin: int, cout: int, kernel: int, *, stride: int = 1, dilation: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel, stride=stride, padding=dilation if kernel == 3 else 0, dilation=dilation,
                     bias=False)


class IdentityResidualBlock(nn.Module):
    """Pre-activation residual block: ``convs(bn1(x)) + (proj_conv(bn1(x)) or x)``.

    Two widths make two 3x3 convs; three make a 1x1 / 3x3 / 1x1 bottleneck. The stride is on the first conv;
    the dilation on the 3x3 convs. Dropout (before the last conv) has no weights and is off in eval.
    """

    def __init__(self, cin: int, widths: tuple[int, ...], *, stride: int, dilation: int,
                 dropout: float | None) -> None:
        super().__init__()
        self.bn1 = _bn_relu(cin)
        if len(widths) == 2:
            layers = [("conv1", _conv(cin, widths[0], 3, stride=stride, dilation=dilation)),
                      ("bn2", _bn_relu(widths[0])),
                      ("conv2", _conv(widths[0], widths[1], 3, dilation=dilation))]
        else:
            layers = [("conv1", _conv(cin, widths[0], 1, stride=stride)),
                      ("bn2", _bn_relu(widths[0])),
                      ("conv2", _conv(widths[0], widths[1], 3, dilation=dilation)),
                      ("bn3", _bn_relu(widths[1])),
                      ("conv3", _conv(widths[1], widths[2], 1))]
        if dropout is not None:
            layers.insert(len(layers) - 1, ("dropout", nn.Dropout2d(dropout)))
        self.convs = nn.Sequential(OrderedDict(layers))
        self.proj_conv = _conv(cin, widths[-1], 1, stride=stride) if stride != 1 or cin != widths[-1] else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        activated = self.bn1(x)
        shortcut = x if self.proj_conv is None else self.proj_conv(activated)
        return self.convs(activated) + shortcut


class AtrousSpatialPyramidPooling(nn.Module):
    """The official ``_AtrousSpatialPyramidPoolingModule``: image pooling, 1x1 and three atrous 3x3 branches.

    The five 256-channel maps are concatenated (pooling first) without a projection: ``bot_aspp`` follows.
    """

    def __init__(self, cin: int, width: int = ASPP_WIDTH, rates: tuple[int, ...] = ASPP_RATES) -> None:
        super().__init__()
        self.features = nn.ModuleList(
            [nn.Sequential(_conv(cin, width, 1), nn.BatchNorm2d(width), nn.ReLU(inplace=True))]
            + [nn.Sequential(_conv(cin, width, 3, dilation=rate), nn.BatchNorm2d(width), nn.ReLU(inplace=True))
               for rate in rates]
        )
        self.img_pooling = nn.AdaptiveAvgPool2d(1)
        self.img_conv = nn.Sequential(_conv(cin, width, 1), nn.BatchNorm2d(width), nn.ReLU(inplace=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = upsample(self.img_conv(self.img_pooling(x)), x.shape[-2:])
        return torch.cat([pooled, *(branch(x) for branch in self.features)], dim=1)


class DeepWV3Plus(Segmenter):
    """``deeplabv3plus_wrn38``: logits at stride 2, runs at the input's size.

    Its attributes are the official ``DeepWV3Plus`` attributes, so ``state_dict()`` keys are the published
    keys (after the ``module.`` / ``branch1.`` prefixes are unwrapped).

    Args:
        meta: build every layer on the meta device (no memory, no initialisation), to be filled with
            ``load_state_dict(..., assign=True)``; the input normalisation stays on the CPU.
    """

    upsample_align_corners = True

    def __init__(self, *, meta: bool = False, num_classes: int = NUM_CLASSES) -> None:
        super().__init__(NAME, {"stage1": WIDTHS[0][-1], "stage2": WIDTHS[3][-1], "stage3": WIDTHS[5][-1],
                                "neck": ASPP_WIDTH, "aspp": 5 * ASPP_WIDTH, "decoder_in": ASPP_WIDTH + FINE_WIDTH})
        self.default_input_size = None  # NVIDIA trains on 800x800 crops and evaluates on full frames
        with torch.device("meta") if meta else nullcontext():
            self.mod1 = nn.Sequential(OrderedDict([("conv1", _conv(3, 64, 3))]))
            cin = 64
            for index, (blocks, widths, dilation) in enumerate(zip(STRUCTURE, WIDTHS, DILATIONS), start=2):
                if index in (2, 3):
                    self.add_module(f"pool{index}", nn.MaxPool2d(3, stride=2, padding=1))
                module = []
                for block in range(blocks):
                    stride = 2 if index == 4 and block == 0 else 1
                    module.append((f"block{block + 1}", IdentityResidualBlock(
                        cin, widths, stride=stride, dilation=dilation, dropout=DROPOUT.get(index))))
                    cin = widths[-1]
                self.add_module(f"mod{index}", nn.Sequential(OrderedDict(module)))
            self.aspp = AtrousSpatialPyramidPooling(cin)
            self.bot_fine = _conv(WIDTHS[0][-1], FINE_WIDTH, 1)
            self.bot_aspp = _conv(5 * ASPP_WIDTH, ASPP_WIDTH, 1)
            self.final = nn.Sequential(
                _conv(ASPP_WIDTH + FINE_WIDTH, ASPP_WIDTH, 3), nn.BatchNorm2d(ASPP_WIDTH), nn.ReLU(inplace=True),
                _conv(ASPP_WIDTH, ASPP_WIDTH, 3), nn.BatchNorm2d(ASPP_WIDTH), nn.ReLU(inplace=True),
                _conv(ASPP_WIDTH, num_classes, 1),
            )

    def trunk(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Normalised image -> (``mod2`` out at stride 2, ``mod5`` out at stride 8, ``mod7`` out at stride 8)."""
        m2 = self.mod2(self.pool2(self.mod1(x)))
        m5 = self.mod5(self.mod4(self.mod3(self.pool3(m2))))
        return m2, m5, self.mod7(self.mod6(m5))

    def decoder_input(self, m2: torch.Tensor, deep: torch.Tensor) -> torch.Tensor:
        """The official ``dec0``: ``bot_fine(m2)`` and the upsampled ``bot_aspp(aspp(deep))``, 304 channels.

        RPL adds its residual here, before ``final``.
        """
        return self.decoder_concat(self.bot_fine(m2), self.aspp(deep))

    def decoder_concat(self, fine: torch.Tensor, aspp: torch.Tensor) -> torch.Tensor:
        """``bot_fine`` features beside ``bot_aspp(aspp)`` upsampled to their size: the decoder's input.

        Separate from :meth:`decoder_input` because ObsNet's observer adds features to both parts first.
        """
        return torch.cat([fine, upsample(self.bot_aspp(aspp), fine.shape[-2:])], dim=1)

    def forward_taps(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        m2, m5, deep = self.trunk(x)
        aspp = self.aspp(deep)
        decoder_in = self.decoder_concat(self.bot_fine(m2), aspp)
        neck = decoder_in
        for layer in self.neck_layers():
            neck = layer(neck)
        return self.classify(neck), m2, m5, deep, neck, aspp, decoder_in

    def classify(self, neck: torch.Tensor) -> torch.Tensor:
        return self.final[-1](neck)

    def neck_layers(self) -> list[nn.Module]:
        """``final`` without its last conv: 3x3 conv, BN, ReLU, 3x3 conv, BN, ReLU."""
        return list(self.final)[:-1]


def published_state_dict(payload: object, source: str) -> dict[str, torch.Tensor]:
    """The segmenter's weights in any published layout, keys as :class:`DeepWV3Plus` names them.

    - NVIDIA (``cityscapes_best.pth``...) and SMIYC: ``{'state_dict': {'module.mod1.conv1.weight': ...}, ...}``;
    - RPL (``rev3.pth``, ``res.pth``): ``{'model': {'branch1.mod1.conv1.weight': ...}, 'optimizer': ...}``;
      only ``branch1.`` is read, without ``branch1.residual_block.`` (RPL's head, loaded by the ``rpl`` head);
    - ObsNet: a bare state dict. A ``module.`` prefix on every key is stripped in each layout.
    """
    payload = unwrap_state_dict(payload, source, ("state_dict", "model"))
    if any(key.startswith(RPL_PREFIX) for key in payload):
        payload = {key.removeprefix(RPL_PREFIX): value for key, value in payload.items()
                   if key.startswith(RPL_PREFIX) and not key.startswith(RPL_HEAD_PREFIX)}
    return payload


def load_published(checkpoint: str) -> DeepWV3Plus:
    """Build :class:`DeepWV3Plus` on the meta device and assign the file's tensors to it, strictly.

    Raises:
        CheckpointError: one line naming the first missing / unexpected key or size mismatch, or saying why the
            file could not be read (not a checkpoint, truncated, holds code).
    """
    state = published_state_dict(read_weights(checkpoint), checkpoint)
    segmenter = DeepWV3Plus(meta=True)
    state = with_batch_counters(state, segmenter)
    state = {key: value.float() if value.is_floating_point() else value for key, value in state.items()}
    load_strict(segmenter, state, f"{checkpoint} does not fit {NAME}", assign=True)
    segmenter.refresh_identity()
    return segmenter


@SEGMENTERS.register(NAME)
def build_wrn38(arch: str, checkpoint: str) -> Segmenter:
    """NVIDIA's DeepLabV3+ WideResNet38 (OS8) from a published Cityscapes file (NVIDIA, SMIYC, RPL or ObsNet)."""
    if arch:
        raise SegmenterError(f"segmenter {NAME!r} takes no architecture (got '{NAME}:{arch}')")
    if not checkpoint:
        raise SegmenterError(
            f"segmenter {NAME} needs segmenter_checkpoint (NVIDIA's cityscapes_best.pth, SMIYC's "
            "DeepLabV3+_WideResNet38_baseline.pth, RPL's rev3.pth or ObsNet's segmenter file); "
            "no weights are downloaded"
        )
    return load_published(checkpoint)
