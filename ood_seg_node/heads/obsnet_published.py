# Copyright 2026 The ood_seg_node developers. Licensed under the Apache License, Version 2.0.
"""ObsNet as its authors publish it: the road-anomaly observer ``DeepWV3Plus_Obsnet`` on ``deeplabv3plus_wrn38``.

Besnier et al., *Triggering Failures: Out-Of-Distribution detection by learning from local adversarial
attacks in Semantic Segmentation* (ICCV 2021), valeoai/obsnet (``Models/road_anomaly_networks/deepv3.py``).
The observer is a second DeepLabV3+ WideResNet38 with a one-channel ``final``; it reads the normalised image
and, at five points, adds the segmenter's own features: after ``mod2`` (the segmenter's ``m2``), after
``mod5``, after the ASPP (the segmenter's 1280-channel ASPP output), after ``bot_fine`` and on the decoder's
concatenated input (``dec0``). Its output is the logit of "the segmenter is wrong here"; the score is its
sigmoid. The published file (``best.pth``) is the observer's bare state dict.

Deviation: with ``score_resolution: native`` the sigmoid is taken at the decoder's stride-2 resolution and
the probability upsampled; with ``input`` the logit is upsampled to the input's size (``align_corners=True``,
the official ``Upsample``) before the sigmoid, as the official code does.
"""

from __future__ import annotations

import torch

from ood_seg_node.checkpoints import load_strict, published_payload, unwrap_state_dict
from ood_seg_node.heads.base import Head, HeadError
from ood_seg_node.segmenters.base import Segmenter, SegmenterOutput
from ood_seg_node.segmenters.wrn38 import DeepWV3Plus, upsample


def is_published_obsnet(payload: object) -> bool:
    """Whether a loaded file is ObsNet's observer: a state dict of a one-class DeepWV3Plus."""
    if not isinstance(payload, dict):
        return False
    final = payload.get("final.6.weight", payload.get("module.final.6.weight"))
    return isinstance(final, torch.Tensor) and final.ndim == 4 and final.shape[0] == 1


class PublishedObsNet(Head):
    """The published road-anomaly observer on the published segmenter (see the module docstring)."""

    name = "obsnet"
    required_taps = ("stage1", "stage2", "aspp", "decoder_in")
    fallback_threshold = 0.5

    def __init__(self, segmenter: Segmenter, *, meta: bool = False) -> None:
        super().__init__()
        if "decoder_in" not in segmenter.tap_channels or not hasattr(segmenter, "decoder_concat"):
            raise HeadError(f"ObsNet's published observer needs segmenter deeplabv3plus_wrn38, not {segmenter.spec}")
        self._segmenter = (segmenter,)  # a tuple hides it from nn.Module registration
        self.observer = DeepWV3Plus(meta=meta, num_classes=1)

    @classmethod
    def load(cls, segmenter: Segmenter, checkpoint: str, payload: object) -> PublishedObsNet:
        """The observer of ObsNet's file ``checkpoint`` (already read as ``payload``), built once and assigned."""
        head = cls(segmenter, meta=True)
        state = {key: value.float() if value.is_floating_point() else value
                 for key, value in unwrap_state_dict(payload, checkpoint, ()).items()}
        load_strict(head.observer, state, f"{checkpoint} does not fit ObsNet's observer", assign=True)
        return head.eval()

    def observer_logits(self, image: torch.Tensor, out: SegmenterOutput) -> torch.Tensor:
        """The observer's error logit (B, 1, h, w) at the decoder's stride-2 resolution."""
        segmenter, observer = self._segmenter[0], self.observer
        m2, m5, aspp = out.features["stage1"], out.features["stage2"], out.features["aspp"]
        fine = segmenter.bot_fine(m2)  # a 1x1 conv: cheaper to redo than to keep as a tap
        decoder_in = out.features["decoder_in"]

        own_m2 = observer.mod2(observer.pool2(observer.mod1(segmenter.normalise(image)))) + m2
        own_m5 = observer.mod5(observer.mod4(observer.mod3(observer.pool3(own_m2)))) + m5
        own_aspp = observer.aspp(observer.mod7(observer.mod6(own_m5))) + aspp
        own_fine = observer.bot_fine(own_m2) + fine
        own_in = observer.decoder_concat(own_fine, own_aspp) + decoder_in
        return observer.final(own_in)

    def score(self, image: torch.Tensor, out: SegmenterOutput) -> torch.Tensor:
        return torch.sigmoid(self.observer_logits(image, out))[:, 0]

    def score_input(self, image: torch.Tensor, out: SegmenterOutput, logits: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(upsample(self.observer_logits(image, out), logits.shape[-2:]))[:, 0]


def build_published_obsnet(segmenter: Segmenter, checkpoint: str) -> PublishedObsNet | None:
    """ObsNet's own file as ``head_checkpoint``: the published observer; None for a checkpoint of this package."""
    payload = published_payload(checkpoint)
    return PublishedObsNet.load(segmenter, checkpoint, payload) if is_published_obsnet(payload) else None
