# Copyright 2026 The ood_seg_node developers. Licensed under the Apache License, Version 2.0.
"""The segmenter contract: RGB in, class logits at native resolution plus named feature taps out.

Feature-based heads need the segmenter's intermediate activations: ObsNet adds them to its own stages,
RPL adds a residual to the features the classifier reads (``neck``) and re-runs the classifier on them,
DiCNet distils ``neck``. Every segmenter therefore exposes the same taps:

- ``stage1``, ``stage2``, ``stage3``: backbone activations of increasing depth (strides ~4, ~8, deepest);
- ``neck``: the features the final 1x1 classifier reads, so ``classify(neck) == logits``.

A segmenter may expose more taps for the published heads of its architecture (``neck_preact``: the
pre-activation of ``neck``, which DiCNet's published teacher distils). Its ``label_space`` names its
classes and palette (Cityscapes' 19 by default).

``forward`` returns a plain tuple ``(logits, *taps)`` so the module can be traced and frozen for CPU speed;
:meth:`Segmenter.run` names the parts. Heads ask a segmenter what they need to know about it
(:meth:`Segmenter.classify`, :meth:`Segmenter.neck_layers`, :meth:`Segmenter.classifier_is_pointwise_affine`)
instead of testing its class.
"""

from __future__ import annotations

from copy import deepcopy
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ood_seg_node.checkpoints import state_digest
from ood_seg_node.label_spaces import CITYSCAPES, LabelSpace
from ood_seg_node.layers import Normalise
from ood_seg_node.registry import Registry

TAP_NAMES: tuple[str, ...] = ("stage1", "stage2", "stage3", "neck")


class SegmenterError(RuntimeError):
    """A segmenter cannot be built or loaded (unknown architecture, bad checkpoint, wrong classes)."""


@dataclass
class SegmenterOutput:
    """Logits (B, classes, h, w) at the network's native resolution and the named feature taps."""

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
        upsample_align_corners: how the segmenter's official code upsamples logits to the input size
            (bilinear; torchvision and most: ``align_corners=False``), for ``score_resolution: input``.
        normalise: the input normalisation the network was trained with (ImageNet statistics).
        label_space: the classes it predicts, their names and palette.
    """

    upsample_align_corners: bool = False
    label_space: LabelSpace = CITYSCAPES

    def __init__(self, spec: str, tap_channels: dict[str, int]) -> None:
        super().__init__()
        self.spec = spec
        self.identity = spec
        self.tap_channels = dict(tap_channels)
        self.default_input_size: tuple[int, int] | None = None
        self.calibration: dict[str, float] = {}
        self.normalise = Normalise()

    def deployed_copy(self, *, input_size: tuple[int, int] | None, calibration: dict[str, float]) -> Segmenter:
        """A deep copy to load other weights into (a fine-tuned model), with its own input size and calibration."""
        copy = deepcopy(self)
        copy.default_input_size = input_size
        copy.calibration = dict(calibration)
        return copy

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.label_space.class_names

    @property
    def has_taps(self) -> bool:
        return bool(self.tap_channels)

    def forward(self, rgb01: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """(B, 3, H, W) RGB in [0, 1] -> (logits, stage1, stage2, stage3, neck)."""
        return self.forward_taps(self.normalise(rgb01))

    def forward_taps(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        raise NotImplementedError

    def classify(self, neck: torch.Tensor) -> torch.Tensor:
        """The segmenter's own final classifier, applied to (possibly modified) ``neck`` features."""
        raise SegmenterError(f"segmenter {self.spec} does not expose its classifier")

    def neck_layers(self) -> list[nn.Module]:
        """The layers that, applied in order, end in the ``neck`` tap; empty when no single chain does.

        DiCNet standardises its distillation target with the batch norm at the end of this chain.
        """
        return []

    def labels_logits(self, logits: torch.Tensor, size: tuple[int, ...], score_resolution: str) -> torch.Tensor:
        """The logits labels are taken from: as they are (``native``) or upsampled to ``size`` the official way."""
        if score_resolution != "input":
            return logits
        return F.interpolate(logits.float(), size=tuple(size), mode="bilinear",
                             align_corners=self.upsample_align_corners)

    def run(self, rgb01: torch.Tensor) -> SegmenterOutput:
        return name_outputs(self(rgb01), tuple(self.tap_channels))

    def refresh_identity(self) -> None:
        """Set ``identity`` to ``spec@<digest of the current weights>`` (after loading weights)."""
        self.identity = f"{self.spec}@{state_digest(self.state_dict())}"

    def classifier_is_pointwise_affine(self) -> bool:
        """Whether :meth:`classify` maps each pixel alone and affinely (a 1x1 conv, as everywhere here).

        Checked numerically on random features: additivity up to the bias, and a one-pixel change that
        stays at that pixel. A segmenter without ``classify`` or with a wider classifier returns False.
        RPL then adds its residual to the 19 logits instead of the wider ``neck``.
        """
        channels = self.tap_channels.get("neck")
        if not channels:
            return False
        parameter = next(self.parameters(), None)
        device = parameter.device if parameter is not None else torch.device("cpu")
        generator = torch.Generator().manual_seed(0)
        a = torch.randn(1, channels, 5, 5, generator=generator).to(device)
        b = torch.randn(1, channels, 5, 5, generator=generator).to(device)
        try:
            with torch.no_grad():
                zero = self.classify(torch.zeros_like(a))
                additive = torch.allclose(self.classify(a + b) - self.classify(b), self.classify(a) - zero,
                                          rtol=1e-3, atol=1e-3)
                moved = a.clone()
                moved[..., 2, 2] += 1.0
                change = (self.classify(moved) - self.classify(a)).abs().sum(dim=1)[0]
        except Exception:  # no classifier, or one that cannot take these shapes: not pointwise
            return False
        change[2, 2] = 0.0
        return bool(additive) and tuple(change.shape) == (5, 5) and float(change.max()) < 1e-5


# family name -> builder(arch, checkpoint); each segmenter module registers its family
SEGMENTERS: Registry[Callable[[str, str], Segmenter]] = Registry("segmenter")


def name_outputs(outputs: tuple[torch.Tensor, ...] | torch.Tensor, tap_names: tuple[str, ...]) -> SegmenterOutput:
    """Turn the traced tuple back into a :class:`SegmenterOutput`."""
    if isinstance(outputs, torch.Tensor):
        return SegmenterOutput(outputs, {})
    return SegmenterOutput(outputs[0], dict(zip(tap_names, outputs[1:])))
