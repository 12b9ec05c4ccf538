# Copyright 2026 The ood_seg_node developers. Licensed under the Apache License, Version 2.0.
"""Local Adversarial Attacks (LAA): make the frozen segmenter fail inside a small region of the image.

ObsNet (Besnier, Bursuc, Briot, Picard, "Triggering Failures: Out-Of-Distribution detection by learning
from local adversarial attacks in Semantic Segmentation", ICCV 2021, arXiv 2108.01634) has no OOD pixels
to learn from, so it manufactures segmenter failures: a one-step FGSM perturbation (Goodfellow et al.,
ICLR 2015) restricted to a *local* mask -- several random shapes inside a box at a random position, or the
box itself -- turns a patch of the image into a blind spot of the segmenter, like an unknown object would.

Variants (all selectable, so that the paper's ablation can be re-run):

- ``mode``: ``local`` (the LAA), ``global`` (whole image attacked) or ``none``;
- ``target``: ``true`` raises the cross-entropy of the true labels (x + eps * sign(grad)), ``random``
  lowers the cross-entropy of one random class per image (x - eps * sign(grad));
- ``mask``: ``shapes`` (random rectangles, ellipses and triangles in the box, overlapping) or ``square``.

As in the official code, a little Gaussian noise is added inside the mask before the gradient step so that
the attacks are more diverse. Unlike it, epsilon and noise are in pixel units of [0, 1] images (the
official code works on ImageNet-normalised inputs, where its values are ~4x larger), and images stay
clamped to [0, 1].
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from ood_seg_node.cityscapes import IGNORE_INDEX, NUM_CLASSES

ATTACK_MODES = ("local", "global", "none")
ATTACK_TARGETS = ("true", "random")
MASK_KINDS = ("shapes", "square")


class AttackError(ValueError):
    """An attack option is invalid (unknown mode, target or mask kind, epsilon out of range)."""


@dataclass
class AttackConfig:
    """How training batches are attacked.

    Attributes:
        mode: ``local``, ``global`` or ``none``.
        target: ``true`` (raise the true class' loss) or ``random`` (push towards a random class).
        mask: ``shapes`` or ``square`` (local mode only).
        epsilon: FGSM step in [0, 1] pixel units.
        noise: std of the Gaussian noise added inside the mask before the step (pixel units).
        box: side of the square box holding the local mask, as a fraction of the image height.
        shapes: (min, max) number of random shapes drawn in the box.
        probability: chance that a training batch is attacked at all.
    """

    mode: str = "local"
    target: str = "random"
    mask: str = "shapes"
    epsilon: float = 0.06
    noise: float = 0.007
    box: float = 1.0
    shapes: tuple[int, int] = (6, 10)
    probability: float = 1.0

    def __post_init__(self) -> None:
        for value, valid, what in ((self.mode, ATTACK_MODES, "attack mode"),
                                   (self.target, ATTACK_TARGETS, "attack target"),
                                   (self.mask, MASK_KINDS, "attack mask")):
            if value not in valid:
                raise AttackError(f"unknown {what} {value!r}; valid: {', '.join(valid)}")
        if not 0.0 <= self.epsilon <= 1.0:
            raise AttackError(f"attack epsilon must lie in [0, 1] (pixel units), got {self.epsilon}")
        if not 0.0 < self.box <= 1.0:
            raise AttackError(f"attack box must be a fraction of the image height in (0, 1], got {self.box}")
        if not 0.0 <= self.probability <= 1.0:
            raise AttackError(f"attack probability must lie in [0, 1], got {self.probability}")


def random_shapes(side: int, count: int, rng: np.random.Generator) -> np.ndarray:
    """A ``side`` x ``side`` bool mask: the union of ``count`` random rectangles, ellipses and triangles.

    Shape sizes are 45-65 % of the box side (the official Cityscapes setting is 60-80 px in a 128 px box),
    so that a handful of overlapping shapes gives one irregular blob rather than a filled square.
    """
    canvas = np.zeros((side, side), np.uint8)
    low, high = max(2, round(0.45 * side)), max(3, round(0.65 * side))
    for _ in range(count):
        size = int(rng.integers(low, high + 1))
        x0, y0 = (int(v) for v in rng.integers(0, max(1, side - size + 1), size=2))
        kind = int(rng.integers(0, 3))
        if kind == 0:
            w, h = (int(v) for v in rng.integers(max(1, size // 2), size + 1, size=2))
            cv2.rectangle(canvas, (x0, y0), (x0 + w - 1, y0 + h - 1), 1, thickness=-1)
        elif kind == 1:
            axes = tuple(int(v) for v in rng.integers(max(1, size // 4), size // 2 + 1, size=2))
            center = (x0 + size // 2, y0 + size // 2)
            cv2.ellipse(canvas, center, axes, float(rng.uniform(0, 180)), 0, 360, 1, thickness=-1)
        else:
            points = rng.integers(0, size, size=(3, 2)) + np.array([x0, y0])
            cv2.fillPoly(canvas, [points.astype(np.int32)], 1)
    return canvas.astype(bool)


def local_masks(batch: int, height: int, width: int, config: AttackConfig,
                rng: np.random.Generator) -> torch.Tensor:
    """(B, 1, H, W) float masks: per image, a box of side ``config.box * H`` at a random position."""
    side = max(2, min(round(config.box * height), height, width))
    masks = np.zeros((batch, 1, height, width), np.float32)
    for i in range(batch):
        top = int(rng.integers(0, height - side + 1))
        left = int(rng.integers(0, width - side + 1))
        if config.mask == "square":
            patch = np.ones((side, side), bool)
        else:
            patch = random_shapes(side, int(rng.integers(config.shapes[0], config.shapes[1] + 1)), rng)
        masks[i, 0, top:top + side, left:left + side] = patch
    return torch.from_numpy(masks)


def attack_masks(batch: int, height: int, width: int, config: AttackConfig,
                 rng: np.random.Generator) -> torch.Tensor:
    """The masks of ``config.mode``: local boxes, the whole image (global) or nothing (none)."""
    if config.mode == "global":
        return torch.ones(batch, 1, height, width)
    if config.mode == "none":
        return torch.zeros(batch, 1, height, width)
    return local_masks(batch, height, width, config, rng)


def segmentation_loss(logits: torch.Tensor, labels: torch.Tensor, *, reduction: str = "mean") -> torch.Tensor:
    """Cross-entropy of native-resolution logits against (B, H, W) labels, logits upsampled bilinearly."""
    if logits.shape[-2:] != labels.shape[-2:]:
        logits = F.interpolate(logits, size=labels.shape[-2:], mode="bilinear", align_corners=False)
    return F.cross_entropy(logits, labels, ignore_index=IGNORE_INDEX, reduction=reduction)


def labels_at(labels: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(B, H, W) labels nearest-resampled to ``size``.

    The attack's loss is taken at logit resolution: upsampling 19-channel logits to the label size made
    the attack ~1.6x slower on CPU, for a gradient of nearly the same sign.
    """
    if tuple(labels.shape[-2:]) == tuple(size):
        return labels
    return F.interpolate(labels[:, None].float(), size=size, mode="nearest")[:, 0].long()


def fgsm(segmenter, images: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor, *, epsilon: float,
         target: str = "true", noise: float = 0.0, generator: torch.Generator | None = None) -> torch.Tensor:
    """One masked FGSM step on (B, 3, H, W) images in [0, 1]; pixels outside ``mask`` are returned unchanged.

    Args:
        segmenter: a :class:`~ood_seg_node.segmenters.base.Segmenter` (its weights get no gradient).
        images: the clean batch.
        labels: (B, H, W) long trainIds, 255 = void (ignored by the ``true`` loss).
        mask: (B, 1, H, W) with 1 where the attack may change pixels.
        epsilon: step size in pixel units.
        target: ``true`` or ``random`` (see the module docstring).
        noise: std of the Gaussian noise added inside the mask before the step.
        generator: random source for the noise and the random target classes.
    """
    mask = mask.to(images.dtype)
    start = images
    if noise > 0:
        jitter = torch.randn(images.shape, generator=generator, dtype=images.dtype).to(images.device)
        start = (images + noise * jitter * mask).clamp(0.0, 1.0)
    x = start.detach().requires_grad_(True)
    with torch.enable_grad():
        logits = segmenter.run(x).logits
        small = labels_at(labels, tuple(logits.shape[-2:]))
        if target == "random":
            # one random class per image, as the official code does; the step *lowers* its loss
            classes = torch.randint(0, NUM_CLASSES, (images.shape[0], 1, 1), generator=generator)
            loss = F.cross_entropy(logits, classes.to(images.device).expand_as(small))
        else:
            if not bool((small != IGNORE_INDEX).any()):
                return start.detach()  # nothing labelled: no loss to raise
            loss = F.cross_entropy(logits, small, ignore_index=IGNORE_INDEX)
        (grad,) = torch.autograd.grad(loss, x)
    step = grad.sign() * mask * (epsilon if target == "true" else -epsilon)
    attacked = (start + step).clamp(0.0, 1.0)
    # clamping aside, outside the mask the image is bit-for-bit the input
    return torch.where(mask.expand_as(images) > 0, attacked, images).detach()


def attack_batch(segmenter, images: torch.Tensor, labels: torch.Tensor, config: AttackConfig,
                 rng: np.random.Generator, generator: torch.Generator | None = None
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """Attack a training batch as ``config`` says; returns (images, mask), mask all zero when not attacked."""
    batch, _, height, width = images.shape
    if config.mode == "none" or config.epsilon == 0 or rng.random() >= config.probability:
        return images, torch.zeros(batch, 1, height, width, device=images.device)
    mask = attack_masks(batch, height, width, config, rng).to(images.device)
    attacked = fgsm(segmenter, images, labels, mask, epsilon=config.epsilon, target=config.target,
                    noise=config.noise, generator=generator)
    return attacked, mask
