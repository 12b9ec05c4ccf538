# Copyright 2026 The ood_seg_node developers. Licensed under the Apache License, Version 2.0.
"""ObsNet: an observer network that predicts, per pixel, whether the frozen segmenter is wrong.

Besnier, Bursuc, Briot, Picard, "Triggering Failures: Out-Of-Distribution detection by learning from
local adversarial attacks in Semantic Segmentation", ICCV 2021, arXiv 2108.01634 (code: valeoai/obsnet).

The observer sees the input image and the segmenter's intermediate activations, added at matching stages
of its own encoder/decoder, and outputs one logit per pixel; the anomaly score is its sigmoid, the
probability that the segmenter errs there. Training (``ood_seg_node.training.obsnet``) uses Local
Adversarial Attacks (``ood_seg_node.training.attacks``) to create segmenter failures to learn from.

Deviations from the paper, and why:

- The observer is a copy of the *builtin* segmenter's topology (stem, three residual stages, light ASPP,
  stride-4 decoder) for every segmenter: ``full`` uses the builtin widths (for the builtin segmenter, an
  exact copy of its encoder/decoder, which training initialises from the segmenter's weights as the
  official code does), ``light`` halves every width. For the torchvision segmenters the paper would copy
  a ResNet-50/101 DeepLab; that doubles the cost of an already heavy model, so they get the same small
  observer (a CPU budget choice).
- The segmenter's taps are projected with 1x1 convolution + batch norm to the observer's widths (and
  resized when strides differ) before being added; the paper adds equally-shaped features directly.
  This is what lets one observer design watch segmenters of any width.
- The ``neck`` tap (the features the segmenter's classifier reads) is added to the decoder output and
  followed by a small depthwise/pointwise refinement block before the 1-channel classifier, standing in
  for the paper's last decoder block that processes the added penultimate features.
- No dropout (the paper's MC-dropout variant is not used for scoring).
- The output is produced at the segmenter's logit resolution (stride 4 for the builtin segmenter) and
  upsampled by the pipeline, like every head; the paper outputs at input resolution.
"""

from __future__ import annotations

import copy
import warnings
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ood_seg_node.checkpoints import CheckpointError
from ood_seg_node.heads import HEADS
from ood_seg_node.heads.base import Head, HeadError, load_head_checkpoint
from ood_seg_node.segmenters.base import IMAGENET_MEAN, IMAGENET_STD, Segmenter, SegmenterOutput
from ood_seg_node.segmenters.builtin import WIDTHS, LightASPP, ResidualBlock, conv_bn_relu, pointwise

TAPS = ("stage1", "stage2", "stage3", "neck")
SKIP_WIDTH = 24  # the builtin decoder's low-level skip width
SIZES: dict[str, dict[str, int]] = {
    "full": {**WIDTHS, "skip": SKIP_WIDTH},
    "light": {**{k: v // 2 for k, v in WIDTHS.items()}, "skip": SKIP_WIDTH // 2},
}


class Observer(nn.Module):
    """Encoder/decoder with the builtin segmenter's layout; segmenter taps are added after each stage.

    Module names (``stem``, ``stage1``...``decoder``) match :class:`BuiltinSegmenter`, so that a ``full``
    observer can start from the segmenter's own weights.
    """

    def __init__(self, widths: dict[str, int], tap_channels: dict[str, int]) -> None:
        super().__init__()
        w = widths
        self.stem = nn.Sequential(conv_bn_relu(3, w["stem"], stride=2), conv_bn_relu(w["stem"], w["stem"]))
        self.stage1 = nn.Sequential(ResidualBlock(w["stem"], w["stage1"], 2),
                                    ResidualBlock(w["stage1"], w["stage1"], 1))
        self.stage2 = nn.Sequential(ResidualBlock(w["stage1"], w["stage2"], 2),
                                    ResidualBlock(w["stage2"], w["stage2"], 1))
        self.stage3 = nn.Sequential(ResidualBlock(w["stage2"], w["stage3"], 2),
                                    ResidualBlock(w["stage3"], w["stage3"], 1))
        self.aspp = LightASPP(w["stage3"], w["aspp"])
        self.skip = pointwise(w["stage1"], w["skip"])
        fused = w["aspp"] + w["skip"]
        self.decoder = nn.Sequential(
            conv_bn_relu(fused, fused, groups=fused),
            pointwise(fused, w["neck"]),
            conv_bn_relu(w["neck"], w["neck"], groups=w["neck"]),
            pointwise(w["neck"], w["neck"]),
        )
        self.refine = nn.Sequential(conv_bn_relu(w["neck"], w["neck"], groups=w["neck"]),
                                    pointwise(w["neck"], w["neck"]))
        self.classifier = nn.Conv2d(w["neck"], 1, 1)
        # 1x1 projections of the segmenter taps to the observer's widths; batch norm evens out the very
        # different activation scales of the builtin and torchvision backbones
        self.taps = nn.ModuleDict({
            name: nn.Sequential(nn.Conv2d(tap_channels[name], w[name], 1, bias=False),
                                nn.BatchNorm2d(w[name]))
            for name in TAPS
        })

    def _add_tap(self, name: str, x: torch.Tensor, features: dict[str, torch.Tensor]) -> torch.Tensor:
        tap = self.taps[name](features[name])
        if tap.shape[-2:] != x.shape[-2:]:
            tap = F.interpolate(tap, size=x.shape[-2:], mode="bilinear", align_corners=False)
        return x + tap

    def forward(self, x: torch.Tensor, features: dict[str, torch.Tensor]) -> torch.Tensor:
        """Normalised image (B, 3, H, W) and segmenter taps -> error logits (B, 1, H/4, W/4)."""
        s1 = self._add_tap("stage1", self.stage1(self.stem(x)), features)
        s2 = self._add_tap("stage2", self.stage2(s1), features)
        s3 = self._add_tap("stage3", self.stage3(s2), features)
        context = F.interpolate(self.aspp(s3), size=s1.shape[-2:], mode="bilinear", align_corners=False)
        neck = self.decoder(torch.cat([context, self.skip(s1)], dim=1))
        return self.classifier(self.refine(self._add_tap("neck", neck, features)))


@HEADS.register("obsnet")
class ObsNet(Head):
    """ObsNet head: score = sigmoid(observer(image, segmenter taps)) at the logits' resolution.

    Args:
        tap_channels: channels of the observed segmenter's ``stage1``/``stage2``/``stage3``/``neck`` taps.
        size: ``full`` (the builtin segmenter's widths) or ``light`` (half of them).
    """

    name = "obsnet"
    required_taps = TAPS

    def __init__(self, tap_channels: dict[str, int], size: str = "full") -> None:
        super().__init__()
        if size not in SIZES:
            raise HeadError(f"unknown obsnet size {size!r}; valid: {', '.join(SIZES)}")
        missing = [tap for tap in TAPS if tap not in tap_channels]
        if missing:
            raise HeadError(f"obsnet needs the taps {', '.join(missing)}")
        self.size = size
        self.tap_channels = {tap: int(tap_channels[tap]) for tap in TAPS}
        self.observer = Observer(SIZES[size], self.tap_channels)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        # On CPU in eval mode, score() runs a channels-last traced-and-frozen copy (BN folded into the
        # convolutions): ~1.6x faster than eager for the full observer. Kept per input shape, only when it
        # reproduces eager outputs, and dropped whenever the weights may change (train(), load_state_dict).
        self.optimise = True
        self._frozen: dict[tuple, torch.jit.ScriptModule | None] = {}

    def architecture(self) -> dict[str, Any]:
        """What a checkpoint must record to rebuild this observer."""
        return {"size": self.size, "widths": dict(SIZES[self.size]), "tap_channels": dict(self.tap_channels)}

    @classmethod
    def from_architecture(cls, config: dict[str, Any]) -> ObsNet:
        size = config.get("size")
        taps = config.get("tap_channels")
        if size not in SIZES or not isinstance(taps, dict):
            raise CheckpointError(f"obsnet checkpoint config lacks a valid size/tap_channels: {config}")
        return cls(taps, size)

    @classmethod
    def build(cls, segmenter: Segmenter, checkpoint: str = "") -> ObsNet:
        """Load the shipped (or given) observer trained on exactly this segmenter."""
        loaded = load_head_checkpoint(cls.name, segmenter, checkpoint)
        head = cls.from_architecture(loaded.config)
        if head.tap_channels != {tap: segmenter.tap_channels.get(tap) for tap in TAPS}:
            raise CheckpointError(f"{loaded.path} observes taps {head.tap_channels}, but segmenter "
                                  f"{segmenter.spec} has {segmenter.tap_channels}")
        try:
            head.load_state_dict(loaded.state_dict)
        except RuntimeError as error:
            raise CheckpointError(f"{loaded.path} does not fit the obsnet head: "
                                  f"{str(error).splitlines()[0]}") from None
        head.default_threshold = float(loaded.meta.get("default_threshold", 0.5))
        return head

    def train(self, mode: bool = True) -> ObsNet:
        self._frozen.clear()
        return super().train(mode)

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):  # noqa: D102
        self._frozen.clear()
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    def forward(self, image: torch.Tensor, features: dict[str, torch.Tensor],
                size: tuple[int, int] | None = None) -> torch.Tensor:
        """(B, 3, H, W) image in [0, 1] and taps -> error logits (B, 1, h, w), resized to ``size``."""
        logits = self.observer((image - self.mean) / self.std, features)
        if size is not None and tuple(logits.shape[-2:]) != tuple(size):
            logits = F.interpolate(logits, size=size, mode="bilinear", align_corners=False)
        return logits

    def score(self, image: torch.Tensor, out: SegmenterOutput) -> torch.Tensor:
        """Probability that the segmenter is wrong, (B, h, w) at the segmenter's logit resolution."""
        image = image.float()
        features = {tap: out.features[tap].float() for tap in TAPS}
        size = tuple(out.logits.shape[-2:])
        frozen = self._frozen_observer(image, features) if self._can_freeze(image) else None
        if frozen is None:
            logits = self(image, features, size)
        else:
            logits = frozen(*self._frozen_inputs(image, features))
            if tuple(logits.shape[-2:]) != size:
                logits = F.interpolate(logits, size=size, mode="bilinear", align_corners=False)
        return torch.sigmoid(logits)[:, 0]

    def _can_freeze(self, image: torch.Tensor) -> bool:
        cpu = image.device.type == "cpu"
        return self.optimise and cpu and not self.training and not torch.is_grad_enabled()

    def _frozen_inputs(self, image: torch.Tensor,
                       features: dict[str, torch.Tensor]) -> tuple[torch.Tensor, ...]:
        tensors = (image, *(features[tap] for tap in TAPS))
        return tuple(t.contiguous(memory_format=torch.channels_last) for t in tensors)

    def _frozen_observer(self, image: torch.Tensor,
                         features: dict[str, torch.Tensor]) -> torch.jit.ScriptModule | None:
        inputs = self._frozen_inputs(image, features)
        key = tuple(tuple(t.shape) for t in inputs)
        if key not in self._frozen:
            self._frozen[key] = None
            try:
                module = _NormalisedObserver(self).to(memory_format=torch.channels_last).eval()
                with warnings.catch_warnings():  # TorchScript: deprecated upstream, still fastest on CPU
                    warnings.simplefilter("ignore")
                    frozen = torch.jit.freeze(torch.jit.trace(module, inputs, check_trace=False))
                if torch.allclose(frozen(*inputs), module(*inputs), rtol=1e-4, atol=1e-4):
                    self._frozen[key] = frozen
            except (RuntimeError, torch.jit.Error):
                pass
        return self._frozen[key]


class _NormalisedObserver(nn.Module):
    """Tensor-only wrapper (image, stage1, stage2, stage3, neck) -> logits, for tracing."""

    def __init__(self, head: ObsNet) -> None:
        super().__init__()
        # a copy: converting the live weights to channels-last under inference mode would turn them into
        # inference tensors that autograd refuses if training continues
        self.observer = copy.deepcopy(head.observer)
        self.register_buffer("mean", head.mean.clone(), persistent=False)
        self.register_buffer("std", head.std.clone(), persistent=False)

    def forward(self, image: torch.Tensor, *taps: torch.Tensor) -> torch.Tensor:
        return self.observer((image - self.mean) / self.std, dict(zip(TAPS, taps)))


def initialise_from_segmenter(head: ObsNet, segmenter: Segmenter) -> int:
    """Copy every segmenter weight whose name and shape match an observer weight.

    The official code starts the observer from the segmenter's weights the same way. Returns how many
    tensors were copied (0 = none fit, e.g. a light observer).
    """
    source = segmenter.state_dict()
    target = head.observer.state_dict()
    copied = {k: v.clone() for k, v in source.items()
              if k in target and v.ndim > 0 and target[k].shape == v.shape and not k.startswith("classifier")}
    target.update(copied)
    head.observer.load_state_dict(target)
    return len(copied)
