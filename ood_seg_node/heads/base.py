# Copyright 2026 The ood_seg_node developers. Licensed under the Apache License, Version 2.0.
"""The head contract: (image, segmenter output) -> per-pixel anomaly score, higher = more anomalous.

A head scores at the logits' native resolution (cheap) and the pipeline upsamples only what it publishes.
Training-free heads subclass :class:`Head`; trained heads subclass :class:`TrainedHead`, whose one
``build`` loads the checkpoint (the shipped one by default), checks that it was trained on this exact
segmenter, rebuilds the head from the checkpoint's ``config`` and loads its weights strictly.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from ood_seg_node.checkpoints import (
    Checkpoint,
    CheckpointError,
    first_sentence,
    load_checkpoint,
    load_strict,
    shipped_weights_dir,
)
from ood_seg_node.registry import Registry
from ood_seg_node.segmenters.base import Segmenter, SegmenterOutput


class HeadError(RuntimeError):
    """A head cannot be built for this segmenter (missing taps, a checkpoint for a training-free head)."""


class Head(nn.Module):
    """Base class for OOD heads.

    Attributes:
        name: registry name.
        required_taps: feature taps the head reads; building it on a segmenter without them fails.
        fallback_threshold: ``default_threshold`` when nothing calibrated one.
        default_threshold: mask threshold used when the node's ``threshold`` parameter is left unset
            (NaN); calibrated heads store theirs in the checkpoint.
    """

    name: ClassVar[str] = ""
    required_taps: ClassVar[tuple[str, ...]] = ()
    fallback_threshold: ClassVar[float] = math.nan

    def __init__(self) -> None:
        super().__init__()
        self.default_threshold = self.fallback_threshold

    @classmethod
    def build(cls, segmenter: Segmenter, checkpoint: str = "") -> Head:
        """Create the head for ``segmenter``; training-free heads refuse a checkpoint."""
        if checkpoint:
            raise HeadError(f"head {cls.name!r} is training-free and takes no head_checkpoint")
        return cls()

    def score(self, image: torch.Tensor, out: SegmenterOutput) -> torch.Tensor:
        """(B, 3, H, W) image in [0, 1] and segmenter output -> (B, h, w) float score."""
        raise NotImplementedError

    def score_input(self, image: torch.Tensor, out: SegmenterOutput, logits: torch.Tensor) -> torch.Tensor:
        """The score in its official order, at the size of ``logits`` (already upsampled to the input's size).

        A head whose score is a function of the logits scores the upsampled logits (as the papers' code
        does); the default, for heads that score features at their own resolution, upsamples the native
        score bilinearly.
        """
        score = self.score(image, out)
        return F.interpolate(score[:, None].float(), size=logits.shape[-2:], mode="bilinear",
                             align_corners=False)[:, 0]

    def score_in_order(self, score_resolution: str, image: torch.Tensor, out: SegmenterOutput,
                       logits: torch.Tensor) -> torch.Tensor:
        """Float score as the pipeline orders it: ``native`` -> :meth:`score`, ``input`` -> :meth:`score_input`.

        ``logits`` are the ones the labels come from (upsampled to the input's size for ``input``).
        """
        if score_resolution == "input":
            return self.score_input(image, out, logits).float()
        return self.score(image, out).float()

    def segmenter_override(self) -> Segmenter | None:
        """A head that carries its own fine-tuned segmenter (NFlowJS) returns it here."""
        return None


class TrainedHead(Head):
    """A head with weights: one checkpoint template (checkpoint -> ``config`` -> module -> weights).

    A subclass defines :meth:`from_config`, the untrained head for the architecture its trainer saved in
    the checkpoint's ``config`` (heads that are trained as a module also expose that dict as ``config``).
    Every checkpoint problem is one :class:`~ood_seg_node.checkpoints.CheckpointError` line.
    """

    @classmethod
    def from_config(cls, segmenter: Segmenter, config: dict[str, Any]) -> TrainedHead:
        """An untrained head of the architecture ``config`` for ``segmenter``."""
        raise NotImplementedError

    @classmethod
    def build(cls, segmenter: Segmenter, checkpoint: str = "") -> TrainedHead:
        """Load the shipped (or given) checkpoint trained on exactly ``segmenter``."""
        loaded = load_head_checkpoint(cls.name, segmenter, checkpoint)
        try:
            head = cls.from_config(segmenter, loaded.config)
        except (KeyError, TypeError, ValueError) as error:
            raise CheckpointError(f"{loaded.path} has no usable {cls.name} config ({first_sentence(error)}): "
                                  f"{loaded.config}") from None
        load_strict(head, loaded.state_dict, f"{loaded.path} does not fit the {cls.name} head")
        head.default_threshold = float(loaded.meta.get("default_threshold", cls.fallback_threshold))
        return head


# head name -> head class; each head module registers its class with ``@HEADS.register(name)``
HEADS: Registry[type[Head]] = Registry("head")


def check_taps(head_name: str, segmenter: Segmenter, taps: tuple[str, ...]) -> None:
    """Refuse, in one line, a segmenter that lacks feature taps the head reads."""
    missing = [tap for tap in taps if tap not in segmenter.tap_channels]
    if missing:
        raise HeadError(
            f"head {head_name!r} needs feature taps {', '.join(missing)} that segmenter "
            f"{segmenter.spec} does not expose (use builtin or torchvision:<arch>)"
        )


def default_head_checkpoint(head_name: str, segmenter: Segmenter) -> Path:
    """Shipped weights path for a head trained on ``segmenter`` (e.g. ``weights/obsnet_builtin.pt``)."""
    return shipped_weights_dir() / f"{head_name}_{re.sub(r'[^A-Za-z0-9]+', '_', segmenter.spec)}.pt"


def load_head_checkpoint(head_name: str, segmenter: Segmenter, checkpoint: str = "") -> Checkpoint:
    """Load a head checkpoint (the shipped default when empty) and refuse it for another segmenter."""
    path = Path(checkpoint) if checkpoint else default_head_checkpoint(head_name, segmenter)
    if not checkpoint and not path.is_file():
        raise CheckpointError(
            f"no shipped {head_name} weights for segmenter {segmenter.spec}; train them with "
            f"'ood_seg train-head --head {head_name} --segmenter {segmenter.spec}' and pass head_checkpoint"
        )
    loaded = load_checkpoint(path, kind="head", name=head_name)
    trained_on = loaded.meta.get("segmenter")
    if trained_on != segmenter.identity:
        raise CheckpointError(
            f"{path} was trained on segmenter {trained_on}, but the running segmenter is {segmenter.identity}; "
            f"retrain with 'ood_seg train-head --head {head_name}' for this segmenter"
        )
    return loaded
