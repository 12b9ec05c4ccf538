# Copyright 2026 The ood_seg_node developers. Licensed under the Apache License, Version 2.0.
"""NFlowJS: a segmenter fine-tuned on flow-generated negatives, scored by Jensen-Shannon divergence.

Paper: M. Grcić, P. Bevandić, Z. Kalafatić, S. Šegvić, "Dense Out-of-Distribution Detection by Robust
Learning on Synthetic Negative Data", arXiv 2112.12833 (Sensors 24(4):1248, 2024).

The method fine-tunes the segmenter itself (see :mod:`ood_seg_node.training.nflowjs`): cross-entropy on
inlier pixels, and on pixels of pasted normalizing-flow samples the Jensen-Shannon divergence between the
softmax and the uniform distribution. At inference the same criterion is the score, so the head adds no
network, only one pass over the logits. Its checkpoint therefore carries the fine-tuned segmenter's full
state dict (the head's ``segmenter`` submodule: a copy of the base segmenter with those weights), and
:meth:`NFlowJS.segmenter_override` hands that segmenter to the pipeline, which runs it in place of the
configured one. The checkpoint records the *base* segmenter it was fine-tuned from and is refused for
any other base.

Score: ``1 - JSD(softmax(l) || U) / JSD_max(C)`` where ``JSD_max(C)`` is the divergence between a one-hot
distribution and the uniform one over C classes (the largest possible). It lies in [0, 1]: 0 for a
one-hot prediction, 1 for a uniform one; higher = more anomalous, a monotone map of the paper's -JSD.

Deviations from the paper (all for a CPU budget and this package's synthetic world):
- the flow is a small RealNVP (:class:`ood_seg_node.training.flows.PatchFlow`, ~0.2 M parameters) instead of
  DenseFlow-25-6, pre-trained for minutes on 32 px inlier crops of synthetic frames, not on Cityscapes;
- samples are 16-64 px squares on 256x512 frames (the paper's 16-216 px on full-resolution crops, at scale);
- the segmenter is the builtin DeepLabV3+-lite (or a torchvision model), fine-tuned for a few epochs with
  batch-norm statistics frozen; the paper fine-tunes LDN-121 / DeepLabV3+ on Cityscapes for far longer;
- pixels of the synthetic world's own obstacles are ignored during training (never used as negatives).
"""

from __future__ import annotations

import math
from typing import Any

import torch

from ood_seg_node.heads.base import HEADS, TrainedHead
from ood_seg_node.segmenters.base import Segmenter, SegmenterOutput

STATE_PREFIX = "segmenter."  # checkpoint keys: the head's ``segmenter`` submodule


def js_max(num_classes: int) -> float:
    """JSD (nats) between a one-hot distribution and the uniform one over ``num_classes`` classes."""
    c = float(num_classes)
    kl_onehot = math.log(2 * c / (c + 1))
    kl_uniform = math.log(2 / (c + 1)) / c + (c - 1) / c * math.log(2)
    return 0.5 * (kl_onehot + kl_uniform)


def js_to_uniform(logits: torch.Tensor) -> torch.Tensor:
    """Jensen-Shannon divergence (nats) between softmax(logits) over dim 1 and the uniform distribution.

    JSD(P || U) = (KL(P || M) + KL(U || M)) / 2 with M = (P + U) / 2. ``log P`` comes from log-softmax and
    M >= 1 / (2C) everywhere, so every term is finite and differentiable for any logits.
    (B, C, ...) -> (B, ...).
    """
    classes = logits.shape[1]
    log_p = torch.log_softmax(logits, dim=1)
    p = log_p.exp()
    log_m = torch.log(0.5 * p + 0.5 / classes)
    kl_pm = (p * (log_p - log_m)).sum(dim=1)
    kl_um = -math.log(classes) - log_m.mean(dim=1)
    return 0.5 * (kl_pm + kl_um)


@HEADS.register("nflowjs")
class NFlowJS(TrainedHead):
    """NFlowJS score (Grcić et al., arXiv 2112.12833) on the segmenter fine-tuned with flow negatives.

    Args:
        segmenter: the fine-tuned segmenter (its weights are the checkpoint's state dict).
        base_identity: identity of the segmenter it was fine-tuned from.
    """

    name = "nflowjs"

    def __init__(self, segmenter: Segmenter, base_identity: str) -> None:
        super().__init__()
        self.segmenter = segmenter
        self.base_identity = base_identity

    @classmethod
    def from_config(cls, segmenter: Segmenter, config: dict[str, Any]) -> NFlowJS:
        """A copy of the base ``segmenter`` to load the fine-tuned weights into, at the training input size."""
        size = config.get("input_size")
        finetuned = segmenter.deployed_copy(  # the base's thresholds do not hold for the fine-tuned weights
            input_size=(int(size[0]), int(size[1])) if size else segmenter.default_input_size, calibration={})
        return cls(finetuned, segmenter.identity)

    @classmethod
    def build(cls, segmenter: Segmenter, checkpoint: str = "") -> NFlowJS:
        """The checkpoint's fine-tuned segmenter, named after its own weights."""
        head = super().build(segmenter, checkpoint)
        head.segmenter.refresh_identity()
        return head

    @property
    def description(self) -> str:
        """One line for the node's start-up log: the head carries its own segmenter."""
        return (f"head nflowjs carries its own fine-tuned segmenter {self.segmenter.identity} "
                f"(fine-tuned from {self.base_identity}); it replaces the configured segmenter")

    @staticmethod
    def score_logits(logits: torch.Tensor) -> torch.Tensor:
        """1 - JSD(softmax(l) || U) / JSD_max(C): (B, C, h, w) -> (B, h, w) in [0, 1], higher = anomalous."""
        return (1.0 - js_to_uniform(logits.float()) / js_max(logits.shape[1])).clamp_(0.0, 1.0)

    def score(self, image: torch.Tensor, out: SegmenterOutput) -> torch.Tensor:
        """The JS score of the (fine-tuned) segmenter's logits, at their native resolution."""
        return self.score_logits(out.logits)

    def score_input(self, image: torch.Tensor, out: SegmenterOutput, logits: torch.Tensor) -> torch.Tensor:
        """The JS score of the logits upsampled to the input's size, the official order."""
        return self.score_logits(logits)

    def segmenter_override(self) -> Segmenter | None:
        """The fine-tuned segmenter the pipeline must run instead of the configured one."""
        return self.segmenter
