# Copyright 2026 The ood_seg_node developers. Licensed under the Apache License, Version 2.0.
"""Segmenter registry: ``builtin``, ``torchvision:<arch>``, ``torchscript``, ``deeplabv3plus_<backbone>``.

``deeplabv3plus_mobilenet`` and ``deeplabv3plus_resnet101`` load VainF's published Cityscapes files;
``segformer`` a local Hugging Face model directory (``transformers`` is imported only when it is built);
``pspnet_resnet50dilated`` the CSAIL encoder/decoder files (DiCNet's StreetHazards teacher).
``build_segmenter(spec, checkpoint)`` returns a :class:`Segmenter` in eval mode whose ``identity``
(``spec@digest``) ties trained heads to the exact weights they observed. Each family is one module that
registers its builder with ``@SEGMENTERS.register(name)``; the imports below register them, so a module
that fails to import is an ImportError here, never a silently missing segmenter.
"""

from __future__ import annotations

from ood_seg_node.segmenters import (  # noqa: F401  (registers)
    builtin,
    deeplabv3plus,
    pspnet,
    segformer,
    torchscript_model,
    torchvision_models,
    wrn38,
)
from ood_seg_node.segmenters.base import (
    SEGMENTERS,
    TAP_NAMES,
    Segmenter,
    SegmenterError,
    SegmenterOutput,
    name_outputs,
)

__all__ = [
    "SEGMENTERS", "TAP_NAMES", "Segmenter", "SegmenterError", "SegmenterOutput", "build_segmenter",
    "name_outputs", "segmenter_names",
]


def segmenter_names() -> list[str]:
    """Valid ``segmenter`` parameter values (``torchvision`` expands to one entry per architecture)."""
    names = [n for n in SEGMENTERS.names() if n != "torchvision"]
    return names + [f"torchvision:{arch}" for arch in torchvision_models.ARCHITECTURES]


def build_segmenter(spec: str, checkpoint: str = "") -> Segmenter:
    """Build the segmenter named by ``spec`` (``family`` or ``family:arch``) and load its weights."""
    family, _, arch = spec.partition(":")
    try:
        builder = SEGMENTERS.get(family)
    except ValueError:
        raise SegmenterError(f"unknown segmenter {spec!r}; valid: {', '.join(segmenter_names())}") from None
    return builder(arch, checkpoint).eval()
