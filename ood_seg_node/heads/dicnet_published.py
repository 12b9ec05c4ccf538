# Copyright 2026 The ood_seg_node developers. Licensed under the Apache License, Version 2.0.
"""DiCNet as its authors publish it: the ResNet-34 student of the StreetHazards PSPNet teacher.

Zhou et al., *Anomaly Discovery in Semantic Segmentation via Distillation Comparison Networks*
(arXiv:2112.09908), zhouhuan-hust/DiCNet (``models/teacher.py``, ``evaluation_with_seg.py``). The teacher is
the CSAIL PSPNet of segmenter ``pspnet_resnet50dilated``; its feature is the output of ``conv_last``'s 3x3
conv and batch norm, before the ReLU (the segmenter's ``neck_preact`` tap). The official ``T`` sets the
batch norm's ``affine`` attribute to False after construction, which PyTorch's forward ignores, so that
feature keeps the BN's scale and shift; it is used as computed. The student (``T2``) is a dilated ResNet-34
(7x7 stem) with the same pyramid pooling and ``conv_last``'s 3x3 conv only; its file is the bare state dict
``student_epoch_N.pth`` (``module.`` prefixes from DataParallel are stripped).

Score, as ``evaluation_with_seg.py`` computes it: the channel mean of ``(teacher - student)^2`` at stride 8,
upsampled to the label's size (bilinear, ``align_corners=True``) and min-max normalised over the frame (the
official evaluation runs one frame per batch), so every frame spans [0, 1]; the official overlays threshold
it at 0.8, the default here. Per-frame normalisation makes a threshold select each frame's most anomalous
region even when there is none: for a stable threshold on a stream, train the package's own DiCNet head on
this segmenter (fixed normalisation, see ``docs/heads/dicnet.md``).

Deviations: with ``score_resolution: native`` the min-max is taken at stride 8 and the map upsampled, so
the extreme values can sit between pixels of the input; ``input`` is the official order. A constant
discrepancy map (the official code divides by zero) scores 0 everywhere. When the student's map and the
teacher's differ in size (its 7x7 stem pads by 1, so some input sizes round differently; 720x1280 does
not), the student's is resized bilinearly to the teacher's.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ood_seg_node.checkpoints import load_strict, published_payload, unwrap_state_dict, with_batch_counters
from ood_seg_node.heads.base import Head, HeadError
from ood_seg_node.layers import resize
from ood_seg_node.segmenters.base import Segmenter, SegmenterOutput
from ood_seg_node.segmenters.pspnet import POOL_SCALES, PPM_WIDTH, DilatedResNet, PyramidPooling

STUDENT_MARKER = "decoder.conv_last.0.weight"


class StudentDecoder(PyramidPooling):
    """``T2``'s decoder: the pyramid pooling and ``conv_last`` reduced to its 3x3 conv."""

    def __init__(self, channels: int) -> None:
        super().__init__(channels)
        self.conv_last = nn.Sequential(
            nn.Conv2d(channels + len(POOL_SCALES) * PPM_WIDTH, PPM_WIDTH, 3, padding=1, bias=False))

    def forward(self, deep: torch.Tensor) -> torch.Tensor:
        return self.conv_last(self.pool(deep))


class DiCNetStudent(nn.Module):
    """The official student ``T2``: ``encoder`` (ResNet-34 dilated, 7x7 stem) and ``decoder``."""

    def __init__(self) -> None:
        super().__init__()
        self.encoder = DilatedResNet("resnet34", deep_stem=False)
        self.decoder = StudentDecoder(self.encoder.out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) normalised image -> (B, 512, H / 8, W / 8) predicted teacher features."""
        return self.decoder(self.encoder(x)[-1])


def is_published_dicnet(payload: object) -> bool:
    """Whether a loaded file is DiCNet's student (a bare ``T2`` state dict), not this package's checkpoint."""
    return isinstance(payload, dict) and any(key in payload for key in (STUDENT_MARKER, f"module.{STUDENT_MARKER}"))


def frame_min_max(score: torch.Tensor) -> torch.Tensor:
    """(B, h, w) -> each frame mapped to [0, 1] by its own minimum and maximum (0 for a constant frame)."""
    low = score.amin(dim=(1, 2), keepdim=True)
    span = score.amax(dim=(1, 2), keepdim=True) - low
    return (score - low) / span.clamp_min(torch.finfo(score.dtype).tiny)


class PublishedDiCNet(Head):
    """The published DiCNet student on the published PSPNet teacher (see the module docstring)."""

    name = "dicnet"
    required_taps = ("neck_preact",)
    fallback_threshold = 0.8  # the official overlays' threshold on the per-frame min-max score

    def __init__(self, segmenter: Segmenter) -> None:
        super().__init__()
        if segmenter.tap_channels.get("neck_preact") != PPM_WIDTH:
            raise HeadError(f"DiCNet's published student needs segmenter pspnet_resnet50dilated (its teacher), "
                            f"not {segmenter.spec}")
        self._segmenter = (segmenter,)  # a tuple hides it from nn.Module registration
        self.student = DiCNetStudent()

    @classmethod
    def load(cls, segmenter: Segmenter, checkpoint: str, payload: object) -> PublishedDiCNet:
        """The student of DiCNet's file ``checkpoint`` (already read as ``payload``), loaded strictly."""
        head = cls(segmenter)
        state = unwrap_state_dict(payload, checkpoint, ())
        load_strict(head.student, with_batch_counters(state, head.student),
                    f"{checkpoint} does not fit DiCNet's student")
        return head.eval()

    def discrepancy(self, image: torch.Tensor, out: SegmenterOutput) -> torch.Tensor:
        """``mean_c (teacher - student)^2`` (B, h, w) at the teacher's stride 8."""
        teacher = out.features["neck_preact"].float()
        student = resize(self.student(self._segmenter[0].normalise(image)).float(), teacher.shape[-2:])
        return (teacher - student).pow(2).mean(dim=1)

    def score(self, image: torch.Tensor, out: SegmenterOutput) -> torch.Tensor:
        return frame_min_max(self.discrepancy(image, out))

    def score_input(self, image: torch.Tensor, out: SegmenterOutput, logits: torch.Tensor) -> torch.Tensor:
        upsampled = F.interpolate(self.discrepancy(image, out)[:, None], size=tuple(logits.shape[-2:]),
                                  mode="bilinear", align_corners=True)[:, 0]
        return frame_min_max(upsampled)


def build_published_dicnet(segmenter: Segmenter, checkpoint: str) -> PublishedDiCNet | None:
    """DiCNet's own student file as ``head_checkpoint``; None for a checkpoint of this package."""
    payload = published_payload(checkpoint)
    return PublishedDiCNet.load(segmenter, checkpoint, payload) if is_published_dicnet(payload) else None
