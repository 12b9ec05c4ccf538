# Copyright 2026 The ood_seg_node developers. Licensed under the Apache License, Version 2.0.
"""RPL as its authors publish it: the residual block of ``rev3.pth`` / ``res.pth`` on ``deeplabv3plus_wrn38``.

Liu et al., *Residual Pattern Learning for Pixel-wise Out-of-Distribution Detection in Semantic
Segmentation* (ICCV 2023), yyliu01/RPL. The published file holds the frozen DeepLabV3+ WideResNet38
(``branch1.*``, loaded by the segmenter) and, inside it, the trained ``branch1.residual_block``: an ASPP on
the trunk's deepest features (``atten_aspp``, the segmenter's own ASPP layout, rates 12/24/36), a 1x1
reduction (``bot_atten_aspp``), upsampled to the decoder's stride-2 resolution, and a 1x1 projection to the
decoder's 304-channel input (``atten_aspp_final``). The residual is added to that input before the
segmenter's ``final`` block, and the anomaly score is the energy of those perturbed logits, Gaussian-blurred
(kernel 7, sigma 1) as the official ``valid.py`` computes it. CoroCL's projection head (``proj_head``) is a
training-time module: its weights are read (so the file loads strictly) but never used.

Deviation: with ``score_resolution: native`` the energy is taken and blurred at the logits' stride-2
resolution and then upsampled (cheap); ``score_resolution: input`` is the official order (logits upsampled
to the input's size with ``align_corners=True``, then energy, then the blur).
"""

from __future__ import annotations

import torch
from torch import nn

from ood_seg_node.checkpoints import load_strict, published_payload, unwrap_state_dict
from ood_seg_node.heads.base import Head, HeadError
from ood_seg_node.layers import gaussian_blur
from ood_seg_node.segmenters.base import Segmenter, SegmenterOutput
from ood_seg_node.segmenters.wrn38 import AtrousSpatialPyramidPooling, upsample

HEAD_PREFIX = "branch1.residual_block."


class ResidualBlock(nn.Module):
    """The official ``ResidualAnomalyBlock`` with its published attribute names."""

    def __init__(self, deep_channels: int = 4096, width: int = 256, decoder_channels: int = 304) -> None:
        super().__init__()
        self.atten_aspp = AtrousSpatialPyramidPooling(deep_channels, width)
        self.bot_atten_aspp = nn.Conv2d(5 * width, width, kernel_size=1, bias=False)
        self.atten_aspp_final = nn.Conv2d(width, decoder_channels, kernel_size=1, bias=False)
        self.proj_head = nn.Module()  # CoroCL's projection: trained, published, unused at inference
        self.proj_head.proj = nn.Sequential(nn.Conv2d(width, decoder_channels, kernel_size=1))

    def forward(self, deep: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        reduced = self.bot_atten_aspp(self.atten_aspp(deep))
        return self.atten_aspp_final(upsample(reduced, size))


def is_published_rpl(payload: object) -> bool:
    """Whether a loaded file is RPL's own (``{'model': {'branch1.residual_block.…'}}``), not this package's."""
    model = payload.get("model") if isinstance(payload, dict) else None
    return isinstance(model, dict) and any(str(key).startswith(HEAD_PREFIX) for key in model)


class PublishedRPL(Head):
    """The published RPL residual block on the published segmenter (see the module docstring)."""

    name = "rpl"
    required_taps = ("stage3", "decoder_in")
    fallback_threshold = -10.0  # energies of a 19-class Cityscapes model; calibrate on your data

    def __init__(self, segmenter: Segmenter) -> None:
        super().__init__()
        if "decoder_in" not in segmenter.tap_channels or not hasattr(segmenter, "final"):
            raise HeadError(f"RPL's published residual block needs segmenter deeplabv3plus_wrn38, not {segmenter.spec}")
        self._segmenter = (segmenter,)  # a tuple hides it from nn.Module registration
        self.residual_block = ResidualBlock(segmenter.tap_channels["stage3"])

    @classmethod
    def load(cls, segmenter: Segmenter, checkpoint: str, payload: object) -> PublishedRPL:
        """The head of RPL's file ``checkpoint`` (already read as ``payload``), loaded strictly."""
        state = unwrap_state_dict(payload, checkpoint, ("model",))
        head_state = {key.removeprefix(HEAD_PREFIX): value for key, value in state.items()
                      if key.startswith(HEAD_PREFIX)}
        head = cls(segmenter)
        load_strict(head.residual_block, head_state, f"{checkpoint} does not fit RPL's residual block")
        return head.eval()

    def perturbed_logits(self, out: SegmenterOutput) -> torch.Tensor:
        """``final(dec0 + residual)``: the segmenter's decoder on its input plus RPL's residual, stride 2."""
        decoder_in = out.features["decoder_in"]
        residual = self.residual_block(out.features["stage3"], tuple(decoder_in.shape[-2:]))
        return self._segmenter[0].final(decoder_in + residual)

    def score(self, image: torch.Tensor, out: SegmenterOutput) -> torch.Tensor:
        energy = -torch.logsumexp(self.perturbed_logits(out).float(), dim=1)
        return gaussian_blur(energy)

    def score_input(self, image: torch.Tensor, out: SegmenterOutput, logits: torch.Tensor) -> torch.Tensor:
        perturbed = upsample(self.perturbed_logits(out).float(), logits.shape[-2:])
        return gaussian_blur(-torch.logsumexp(perturbed, dim=1))


def build_published_rpl(segmenter: Segmenter, checkpoint: str) -> PublishedRPL | None:
    """RPL's own file as ``head_checkpoint``: the published head; None for a checkpoint of this package."""
    payload = published_payload(checkpoint)
    return PublishedRPL.load(segmenter, checkpoint, payload) if is_published_rpl(payload) else None
