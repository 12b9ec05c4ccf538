# Copyright 2026 The ood_seg_node developers. Licensed under the Apache License, Version 2.0.
"""Head registry. Each head is one module; importing it registers it with ``@HEADS.register(name)``.

Adding a head = one new file + one line in ``_HEAD_MODULES`` below.
"""

from __future__ import annotations

import importlib

from ood_seg_node.heads.base import Head, HeadError, check_taps, load_head_checkpoint
from ood_seg_node.registry import Registry
from ood_seg_node.segmenters.base import Segmenter

HEADS: Registry[type[Head]] = Registry("head")

_HEAD_MODULES = ("logit_scores", "obsnet", "rpl", "nflowjs", "dicnet")

__all__ = ["HEADS", "Head", "HeadError", "build_head", "check_taps", "head_names", "load_head_checkpoint"]


def _load_head_modules() -> None:
    for module in _HEAD_MODULES:
        try:
            importlib.import_module(f"ood_seg_node.heads.{module}")
        except ModuleNotFoundError as error:
            if error.name != f"ood_seg_node.heads.{module}":
                raise


def head_names() -> list[str]:
    _load_head_modules()
    return HEADS.names()


def build_head(name: str, segmenter: Segmenter, checkpoint: str = "") -> Head:
    """Build head ``name`` for ``segmenter``; unknown names raise listing the valid ones."""
    _load_head_modules()
    head_class = HEADS.get(name)
    check_taps(name, segmenter, head_class.required_taps)
    return head_class.build(segmenter, checkpoint).eval()
