# Copyright 2026 The ood_seg_node developers. Licensed under the Apache License, Version 2.0.
"""Segmenter registry: ``builtin``, ``torchvision:<arch>``, ``torchscript``.

``build_segmenter(spec, checkpoint)`` returns a :class:`Segmenter` in eval mode whose ``identity``
(``spec@digest``) ties trained heads to the exact weights they observed.
"""

from __future__ import annotations

from typing import Callable

from ood_seg_node.checkpoints import (
    CheckpointError,
    load_checkpoint,
    read_weights,
    shipped_weights_dir,
    state_digest,
)
from ood_seg_node.registry import Registry
from ood_seg_node.segmenters.base import (
    TAP_NAMES,
    Segmenter,
    SegmenterError,
    SegmenterOutput,
    name_outputs,
)

SEGMENTERS: Registry[Callable[[str, str], Segmenter]] = Registry("segmenter")
BUILTIN_WEIGHTS = "builtin_segmenter.pt"

__all__ = [
    "SEGMENTERS", "TAP_NAMES", "Segmenter", "SegmenterError", "SegmenterOutput", "build_segmenter",
    "name_outputs", "segmenter_names",
]


def segmenter_names() -> list[str]:
    """Valid ``segmenter`` parameter values (``torchvision`` expands to one entry per architecture)."""
    from ood_seg_node.segmenters.torchvision_models import ARCHITECTURES

    names = [n for n in SEGMENTERS.names() if n != "torchvision"]
    return names + [f"torchvision:{arch}" for arch in ARCHITECTURES]


def build_segmenter(spec: str, checkpoint: str = "") -> Segmenter:
    """Build the segmenter named by ``spec`` (``family`` or ``family:arch``) and load its weights."""
    family, _, arch = spec.partition(":")
    try:
        builder = SEGMENTERS.get(family)
    except ValueError:
        raise SegmenterError(f"unknown segmenter {spec!r}; valid: {', '.join(segmenter_names())}") from None
    segmenter = builder(arch, checkpoint)
    return segmenter.eval()


def _with_identity(segmenter: Segmenter) -> Segmenter:
    segmenter.identity = f"{segmenter.spec}@{state_digest(segmenter.state_dict())}"
    return segmenter


@SEGMENTERS.register("builtin")
def _builtin(arch: str, checkpoint: str) -> Segmenter:
    from ood_seg_node.segmenters.builtin import BuiltinSegmenter

    if arch:
        raise SegmenterError(f"segmenter 'builtin' takes no architecture (got 'builtin:{arch}')")
    path = checkpoint or str(shipped_weights_dir() / BUILTIN_WEIGHTS)
    loaded = load_checkpoint(path, kind="segmenter", name="builtin")
    segmenter = BuiltinSegmenter()
    try:
        segmenter.load_state_dict(loaded.state_dict)
    except RuntimeError as error:
        raise CheckpointError(f"{path} does not fit the builtin segmenter: {str(error).splitlines()[0]}") from None
    size = loaded.config.get("input_size")
    if size:
        segmenter.default_input_size = (int(size[0]), int(size[1]))
    segmenter.calibration = {str(k): float(v) for k, v in dict(loaded.meta.get("calibration", {})).items()}
    return _with_identity(segmenter)


@SEGMENTERS.register("torchvision")
def _torchvision(arch: str, checkpoint: str) -> Segmenter:
    from ood_seg_node.segmenters.torchvision_models import TorchvisionSegmenter

    segmenter = TorchvisionSegmenter(arch)
    if not checkpoint:
        raise SegmenterError(
            f"segmenter torchvision:{arch} needs segmenter_checkpoint (19-class Cityscapes weights); "
            "no weights are downloaded"
        )
    payload = read_weights(checkpoint)
    if isinstance(payload, dict) and isinstance(payload.get("state_dict"), dict):
        payload = payload["state_dict"]
    elif isinstance(payload, dict) and isinstance(payload.get("model"), dict):
        payload = payload["model"]
    if not isinstance(payload, dict):
        raise CheckpointError(f"{checkpoint} holds no state dict")
    segmenter.load_user_state(payload, checkpoint)
    return _with_identity(segmenter)


@SEGMENTERS.register("torchscript")
def _torchscript(arch: str, checkpoint: str) -> Segmenter:
    from ood_seg_node.segmenters.torchscript_model import TorchScriptSegmenter

    if not checkpoint:
        raise SegmenterError("segmenter torchscript needs segmenter_checkpoint (a TorchScript .pt file)")
    return TorchScriptSegmenter(checkpoint)
