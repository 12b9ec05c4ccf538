# Copyright 2026 The ood_seg_node developers. Licensed under the Apache License, Version 2.0.
"""The segmenter contract: RGB in, 19-class logits at native resolution plus named feature taps out.

Feature-based heads need the segmenter's intermediate activations: ObsNet adds them to its own stages,
RPL adds a residual to the features the classifier reads (``neck``) and re-runs the classifier on them,
DiCNet distils ``neck``. Every segmenter therefore exposes the same taps:

- ``stage1``, ``stage2``, ``stage3``: backbone activations of increasing depth (strides ~4, ~8, deepest);
- ``neck``: the features the final 1x1 classifier reads, so ``classify(neck) == logits``.

``forward`` returns a plain tuple ``(logits, *taps)`` so the module can be traced and frozen for CPU speed;
:meth:`Segmenter.run` names the parts.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

TAP_NAMES: tuple[str, ...] = ("stage1", "stage2", "stage3", "neck")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class SegmenterError(RuntimeError):
    """A segmenter cannot be built or loaded (unknown architecture, bad checkpoint, wrong classes)."""


@dataclass
class SegmenterOutput:
    """Logits (B, 19, h, w) at the network's native resolution and the named feature taps."""

    logits: torch.Tensor
    features: dict[str, torch.Tensor]


class Segmenter(nn.Module):
    """Base class: subclasses implement ``forward_taps(x_normalised)`` and ``classify(neck)``.

    Attributes:
        spec: the registry spec it was built from (``builtin``, ``torchvision:deeplabv3_resnet50``...).
        identity: ``spec@<weights digest>``; trained heads record it and refuse any other segmenter.
        tap_channels: channels of each tap, so heads can size their layers.
        default_input_size: (H, W) the pipeline resizes inputs to, or None for native resolution.
        calibration: training-free head name -> mask threshold fixed on validation data (may be empty).
    """

    def __init__(self, spec: str, tap_channels: dict[str, int]) -> None:
        super().__init__()
        self.spec = spec
        self.identity = spec
        self.tap_channels = dict(tap_channels)
        self.default_input_size: tuple[int, int] | None = None
        self.calibration: dict[str, float] = {}
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    @property
    def has_taps(self) -> bool:
        return bool(self.tap_channels)

    def normalise(self, rgb01: torch.Tensor) -> torch.Tensor:
        return (rgb01 - self.mean) / self.std

    def forward(self, rgb01: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """(B, 3, H, W) RGB in [0, 1] -> (logits, stage1, stage2, stage3, neck)."""
        return self.forward_taps(self.normalise(rgb01))

    def forward_taps(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        raise NotImplementedError

    def classify(self, neck: torch.Tensor) -> torch.Tensor:
        """The segmenter's own final classifier, applied to (possibly modified) ``neck`` features."""
        raise SegmenterError(f"segmenter {self.spec} does not expose its classifier")

    def run(self, rgb01: torch.Tensor) -> SegmenterOutput:
        return name_outputs(self(rgb01), tuple(self.tap_channels))


def name_outputs(outputs: tuple[torch.Tensor, ...] | torch.Tensor, tap_names: tuple[str, ...]) -> SegmenterOutput:
    """Turn the traced tuple back into a :class:`SegmenterOutput`."""
    if isinstance(outputs, torch.Tensor):
        return SegmenterOutput(outputs, {})
    return SegmenterOutput(outputs[0], dict(zip(tap_names, outputs[1:])))
