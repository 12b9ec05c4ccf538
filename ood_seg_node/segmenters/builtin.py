# Copyright 2026 The ood_seg_node developers. Licensed under the Apache License, Version 2.0.
"""The shipped builtin segmenter: a small DeepLabV3+-style network sized for CPU.

Residual encoder (strides 4, 8, 16), a light ASPP neck (dilations 1/2/4 + image pooling, as DiCNet's
teacher needs a pyramid neck), and a stride-4 decoder with a skip from stride 4, so that the small, far
obstacles of Lost&Found-style scenes still cover whole logit cells. About 0.6 M parameters (~2.5 MB).
The layers are :func:`ood_seg_node.layers.lite_deeplab`, which ObsNet's observer copies.
"""

from __future__ import annotations

import torch
from torch import nn

from ood_seg_node.checkpoints import load_checkpoint, load_strict, shipped_weights_dir
from ood_seg_node.cityscapes import NUM_CLASSES
from ood_seg_node.layers import LITE_WIDTHS, lite_deeplab, lite_deeplab_forward
from ood_seg_node.segmenters.base import SEGMENTERS, Segmenter, SegmenterError

DEFAULT_INPUT_SIZE = (256, 512)
WEIGHTS = "builtin_segmenter.pt"


class BuiltinSegmenter(Segmenter):
    """DeepLabV3+-lite; ``neck`` is the stride-4 decoder output that the 1x1 classifier reads."""

    def __init__(self, num_classes: int = NUM_CLASSES, *, input_size: tuple[int, int] = DEFAULT_INPUT_SIZE,
                 calibration: dict[str, float] | None = None) -> None:
        super().__init__("builtin", {tap: LITE_WIDTHS[tap] for tap in ("stage1", "stage2", "stage3", "neck")})
        self.default_input_size = input_size
        self.calibration = dict(calibration or {})
        for name, layer in lite_deeplab(LITE_WIDTHS).items():
            self.add_module(name, layer)
        self.classifier = nn.Conv2d(LITE_WIDTHS["neck"], num_classes, 1)

    def forward_taps(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        s1, s2, s3, neck = lite_deeplab_forward(self, x)
        return self.classifier(neck), s1, s2, s3, neck

    def classify(self, neck: torch.Tensor) -> torch.Tensor:
        return self.classifier(neck)

    def neck_layers(self) -> list[nn.Module]:
        return [self.decoder]


@SEGMENTERS.register("builtin")
def build_builtin(arch: str, checkpoint: str) -> Segmenter:
    """The builtin segmenter with ``checkpoint``'s weights (the shipped ones when empty)."""
    if arch:
        raise SegmenterError(f"segmenter 'builtin' takes no architecture (got 'builtin:{arch}')")
    path = checkpoint or str(shipped_weights_dir() / WEIGHTS)
    loaded = load_checkpoint(path, kind="segmenter", name="builtin")
    size = loaded.config.get("input_size")
    segmenter = BuiltinSegmenter(
        input_size=(int(size[0]), int(size[1])) if size else DEFAULT_INPUT_SIZE,
        calibration={str(k): float(v) for k, v in dict(loaded.meta.get("calibration", {})).items()},
    )
    load_strict(segmenter, loaded.state_dict, f"{path} does not fit the builtin segmenter")
    segmenter.refresh_identity()
    return segmenter
