# Copyright 2026 The ood_seg_node developers. Licensed under the Apache License, Version 2.0.
"""torchvision segmentation models with 19 Cityscapes classes and a user checkpoint, wrapped with taps.

No weights are downloaded: the architecture is built with ``weights=None, weights_backbone=None`` and the
user's checkpoint (a plain state dict, or a dict with ``model`` / ``state_dict``) is loaded strictly.
Taps are read by running the backbone's children one by one; ``neck`` is the input of the last 1x1
classifier (for LR-ASPP, whose two classifiers read two inputs, ``neck`` is their channel concatenation so
that ``classify`` stays linear in it).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ood_seg_node.checkpoints import read_weights, unwrap_state_dict
from ood_seg_node.cityscapes import NUM_CLASSES
from ood_seg_node.segmenters.base import SEGMENTERS, Segmenter, SegmenterError

# backbone child names whose outputs are the stage1/2/3 taps
_TAPS = {
    "deeplabv3_resnet50": ("layer1", "layer2", "layer4"),
    "deeplabv3_resnet101": ("layer1", "layer2", "layer4"),
    "fcn_resnet50": ("layer1", "layer2", "layer4"),
    "deeplabv3_mobilenet_v3_large": ("3", "6", "16"),
    "lraspp_mobilenet_v3_large": ("3", "6", "16"),
}
ARCHITECTURES = tuple(sorted(_TAPS))


def _build_architecture(arch: str) -> nn.Module:
    from torchvision.models import segmentation

    kwargs = {"weights": None, "weights_backbone": None, "num_classes": NUM_CLASSES}
    if not arch.startswith("lraspp"):
        kwargs["aux_loss"] = False
    return getattr(segmentation, arch)(**kwargs)


class TorchvisionSegmenter(Segmenter):
    """Wraps a torchvision ``deeplabv3_* / fcn_* / lraspp_*`` model; logits stay at the head's stride."""

    def __init__(self, arch: str) -> None:
        if arch not in _TAPS:
            raise SegmenterError(f"unknown torchvision architecture {arch!r}; valid: {', '.join(ARCHITECTURES)}")
        self.arch = arch
        model = _build_architecture(arch)
        channels = self._probe_channels(model, arch)
        super().__init__(f"torchvision:{arch}", channels)
        self.model = model
        self.model.aux_classifier = None

    @staticmethod
    def _probe_channels(model: nn.Module, arch: str) -> dict[str, int]:
        was_training = model.training
        model.eval()
        with torch.no_grad():
            outputs = TorchvisionSegmenter._taps_of(model, arch, torch.zeros(1, 3, 64, 64))
        model.train(was_training)
        return {name: int(t.shape[1]) for name, t in zip(("stage1", "stage2", "stage3", "neck"), outputs[1:])}

    @staticmethod
    def _taps_of(model: nn.Module, arch: str, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        wanted = _TAPS[arch]
        taps: dict[str, torch.Tensor] = {}
        features = x
        low = None
        for name, child in model.backbone.named_children():
            features = child(features)
            if name in wanted:
                taps[name] = features
            if arch.startswith("lraspp") and name == "6":
                low = features
        deep = features
        head = model.classifier
        if arch.startswith("lraspp"):
            high = head.cbr(deep) * head.scale(deep)
            high = F.interpolate(high, size=low.shape[-2:], mode="bilinear", align_corners=False)
            neck = torch.cat([low, high], dim=1)
        else:
            neck = deep
            for layer in list(head.children())[:-1]:
                neck = layer(neck)
        logits = TorchvisionSegmenter._classify(model, arch, neck, low)
        return (logits, *(taps[name] for name in wanted), neck)

    @staticmethod
    def _classify(model: nn.Module, arch: str, neck: torch.Tensor, low: torch.Tensor | None = None) -> torch.Tensor:
        head = model.classifier
        if arch.startswith("lraspp"):
            c_low = head.low_classifier.in_channels
            return head.low_classifier(neck[:, :c_low]) + head.high_classifier(neck[:, c_low:])
        return list(head.children())[-1](neck)

    def forward_taps(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return self._taps_of(self.model, self.arch, x)

    def classify(self, neck: torch.Tensor) -> torch.Tensor:
        return self._classify(self.model, self.arch, neck)

    def neck_layers(self) -> list[nn.Module]:
        if self.arch.startswith("lraspp"):  # two branches meet in the neck: no single chain ends in it
            return []
        return list(self.model.classifier.children())[:-1]

    def load_user_state(self, state_dict: dict[str, torch.Tensor], source: str) -> None:
        """Load a torchvision-layout state dict (aux classifier weights are ignored)."""
        state = {k.removeprefix("model."): v for k, v in state_dict.items() if "aux_classifier" not in k}
        missing, unexpected = self.model.load_state_dict(state, strict=False)
        if missing or unexpected:
            detail = f"missing {missing[:3]}" if missing else f"unexpected {unexpected[:3]}"
            raise SegmenterError(f"{source} does not match {self.spec} ({detail})")
        self.refresh_identity()


@SEGMENTERS.register("torchvision")
def build_torchvision(arch: str, checkpoint: str) -> Segmenter:
    """``torchvision:<arch>`` with the user's 19-class weights (a state dict, or one under ``state_dict``/``model``)."""
    segmenter = TorchvisionSegmenter(arch)
    if not checkpoint:
        raise SegmenterError(
            f"segmenter torchvision:{arch} needs segmenter_checkpoint (19-class Cityscapes weights); "
            "no weights are downloaded"
        )
    segmenter.load_user_state(unwrap_state_dict(read_weights(checkpoint), checkpoint, ("state_dict", "model")),
                              checkpoint)
    return segmenter
