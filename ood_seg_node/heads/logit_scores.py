# Copyright 2026 The ood_seg_node developers. Licensed under the Apache License, Version 2.0.
"""Training-free scores read off the segmenter's logits, all oriented so that higher = more anomalous.

- ``msp``: 1 - maximum softmax probability (Hendrycks & Gimpel, ICLR 2017).
- ``maxlogit``: negative maximum logit (Hendrycks et al., "Scaling OOD detection...", ICML 2022).
- ``energy``: free energy -T log sum_c exp(l_c / T), T = 1 (Liu et al., NeurIPS 2020).
- ``entropy``: softmax entropy divided by log(C), so it lies in [0, 1].
"""

from __future__ import annotations

import math

import torch

from ood_seg_node.heads.base import HEADS, Head
from ood_seg_node.segmenters.base import Segmenter, SegmenterOutput


class LogitScore(Head):
    """A head whose score is a pure function of the logits (B, C, h, w) -> (B, h, w).

    The default mask threshold is the segmenter's calibrated one for this score when its checkpoint has
    one (see ``training.segmenter.calibrate_logit_heads``), else ``fallback_threshold``.
    """

    def __init__(self, threshold: float | None = None) -> None:
        super().__init__()
        if threshold is not None:
            self.default_threshold = threshold

    @classmethod
    def build(cls, segmenter: Segmenter, checkpoint: str = "") -> Head:
        super().build(segmenter, checkpoint)  # refuses a checkpoint
        return cls(segmenter.calibration.get(cls.name))

    @staticmethod
    def score_logits(logits: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def score(self, image: torch.Tensor, out: SegmenterOutput) -> torch.Tensor:
        return self.score_logits(out.logits.float())

    def score_input(self, image: torch.Tensor, out: SegmenterOutput, logits: torch.Tensor) -> torch.Tensor:
        return self.score_logits(logits.float())


@HEADS.register("msp")
class MSP(LogitScore):
    """1 - max_c softmax(l)_c."""

    name = "msp"
    fallback_threshold = 0.5

    @staticmethod
    def score_logits(logits: torch.Tensor) -> torch.Tensor:
        return 1.0 - torch.softmax(logits, dim=1).amax(dim=1)


@HEADS.register("maxlogit")
class MaxLogit(LogitScore):
    """-max_c l_c."""

    name = "maxlogit"
    fallback_threshold = -5.0

    @staticmethod
    def score_logits(logits: torch.Tensor) -> torch.Tensor:
        return -logits.amax(dim=1)


@HEADS.register("energy")
class Energy(LogitScore):
    """-log sum_c exp(l_c), the free energy at temperature 1."""

    name = "energy"
    fallback_threshold = -5.0

    @staticmethod
    def score_logits(logits: torch.Tensor) -> torch.Tensor:
        return -torch.logsumexp(logits, dim=1)


@HEADS.register("entropy")
class Entropy(LogitScore):
    """-sum_c p_c log p_c / log C."""

    name = "entropy"
    fallback_threshold = 0.5

    @staticmethod
    def score_logits(logits: torch.Tensor) -> torch.Tensor:
        log_p = torch.log_softmax(logits, dim=1)
        return -(log_p.exp() * log_p).sum(dim=1) / math.log(logits.shape[1])
