# Copyright 2026 The ood_seg_node developers. Licensed under the Apache License, Version 2.0.
"""Head registry. Each head is one module that registers its class with ``@HEADS.register(name)``.

Adding a head = one new file + its line in the import below. The import registers every head, so a head
module that fails to import is an ImportError here, never a silently missing head.
"""

from __future__ import annotations

from ood_seg_node.heads import dicnet, logit_scores, nflowjs, obsnet, rpl  # noqa: F401  (registers the heads)
from ood_seg_node.heads.base import HEADS, Head, HeadError, TrainedHead, check_taps, load_head_checkpoint
from ood_seg_node.segmenters.base import Segmenter

__all__ = [
    "HEADS", "Head", "HeadError", "TrainedHead", "build_head", "check_taps", "head_names", "load_head_checkpoint",
]


def head_names() -> list[str]:
    """Every registered head name, sorted."""
    return HEADS.names()


def build_head(name: str, segmenter: Segmenter, checkpoint: str = "") -> Head:
    """Build head ``name`` for ``segmenter``; unknown names raise listing the valid ones."""
    head_class = HEADS.get(name)
    check_taps(name, segmenter, head_class.required_taps)
    return head_class.build(segmenter, checkpoint).eval()
