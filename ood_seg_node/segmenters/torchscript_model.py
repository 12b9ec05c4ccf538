# Copyright 2026 The ood_seg_node developers. Licensed under the Apache License, Version 2.0.
"""A user's TorchScript segmenter: logits only, so only the logit-based heads work with it.

Contract for the scripted module: input (B, 3, H, W) float, ImageNet-normalised RGB; output a (B, 19, h, w)
logit tensor, or a dict with key ``out`` (the torchvision convention). TorchScript archives hold code, so
load only files you trust; they are not loaded with ``weights_only``.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch

from ood_seg_node.checkpoints import TORCHSCRIPT, CheckpointError, check_torch_file, first_sentence
from ood_seg_node.cityscapes import NUM_CLASSES
from ood_seg_node.segmenters.base import SEGMENTERS, Segmenter, SegmenterError


class TorchScriptSegmenter(Segmenter):
    """Wraps ``torch.jit.load(path)``; exposes no feature taps."""

    def __init__(self, path: str) -> None:
        super().__init__("torchscript", {})
        check_torch_file(path, TORCHSCRIPT)
        try:
            with warnings.catch_warnings():  # torch's deprecation notice: two lines of noise on every start
                warnings.filterwarnings("ignore", r"`torch\.jit\.load` is deprecated", FutureWarning)
                self.module = torch.jit.load(path, map_location="cpu")
        except Exception as error:
            raise CheckpointError(f"cannot load TorchScript {path}: {first_sentence(error)}") from None
        self.identity = f"torchscript@{Path(path).name}"

    def forward_taps(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = self.module(x)
        if isinstance(out, dict):
            out = out["out"]
        if out.ndim != 4 or out.shape[1] != NUM_CLASSES:
            raise SegmenterError(f"TorchScript segmenter returned shape {tuple(out.shape)}, expected (B, 19, h, w)")
        return (out,)


@SEGMENTERS.register("torchscript")
def build_torchscript(arch: str, checkpoint: str) -> Segmenter:
    """The user's TorchScript archive ``checkpoint`` (logits only)."""
    if not checkpoint:
        raise SegmenterError("segmenter torchscript needs segmenter_checkpoint (a TorchScript .pt file)")
    return TorchScriptSegmenter(checkpoint)
