# Copyright 2026 The ood_seg_node developers. Licensed under the Apache License, Version 2.0.
"""Training of the RPL head: outlier exposure on a frozen segmenter, with or without CoroCL.

Liu, Ding, Tian, Pang, Belagiannis, Reid, Carneiro, "Residual Pattern Learning for Pixel-wise
Out-of-Distribution Detection in Semantic Segmentation", ICCV 2023 (arXiv 2211.14512).

Every step pastes outlier objects into inlier scenes (:func:`ood_seg_node.training.outliers.paste_outliers`)
and trains only the RPL module (plus, for CoroCL, a projection head that is discarded afterwards) with

- inlier consistency on non-outlier, non-void pixels: cross-entropy of the augmented logits to the frozen
  segmenter's own argmax, plus the squared difference of the two softmax entropies;
- the positive energy loss on pasted pixels, ``mean(relu(logsumexp(augmented logits)))``, weighted 0.05
  as in the authors' code: it pushes the free energy of outliers above zero and leaves inliers alone;
- CoroCL: a pixel InfoNCE (temperature 0.1) whose anchors are outlier and inlier pixels of the pasted
  scenes and whose contrast set adds outlier and context pixels of images in the outlier source's own
  context, so that outliers are pulled together across contexts.

Deviations (besides those of :mod:`ood_seg_node.heads.rpl`): by default the synthetic world replaces Cityscapes
and procedural objects replace COCO (``--dataset cityscapes:<root> --outliers coco:<root>`` read them as the
paper does); the world's own
obstacles in training frames are ignored (void), so only pasted objects are trained as outliers; losses
are computed at the logits' native resolution (stride 4) on labels area-downsampled to it (a cell is an
outlier when at least half of it is pasted, an inlier when none of it is pasted or void) rather than on
logits upsampled to full resolution; the outlier source's context images pass through the module with
the pasted scenes' batch-norm statistics instead of sharing one batch with them (procedural contexts
skewed the running statistics used at inference); Adam with a poly schedule at 1e-3 for a few hundred
steps replaces 7.5e-5 for 40 Cityscapes epochs (CPU budget); CoroCL samples up to 256 pixels per group
instead of 512.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from ood_seg_node.cityscapes import IGNORE_INDEX, OOD_ANOMALY, OOD_IGNORE, OOD_INLIER
from ood_seg_node.heads.rpl import DEFAULT_DILATIONS, DEFAULT_WIDTH, RPLHead
from ood_seg_node.segmenters import Segmenter
from ood_seg_node.training import distributed
from ood_seg_node.training.common import Batch, HeadTrainingConfig, option
from ood_seg_node.training.distributed import masked_mean
from ood_seg_node.training.head_trainer import TRAINERS, HeadTrainer
from ood_seg_node.training.outliers import DEFAULT_SCALES, context_batch, paste_outliers
from ood_seg_node.training.real_data import outlier_source

TEMPERATURE = 0.1


@dataclass
class RPLOptions:
    """The ``--rpl-*`` options: outlier source, loss weights, module width, CoroCL sampling."""

    corocl: str = option("on", "context-robust contrastive learning (off = the paper's RPL-only ablation)",
                         choices=("on", "off"))
    outliers: str = option("", "outlier source when it differs from --outliers: 'procedural' (the world's obstacle "
                               "generator), coco:<root>, or a folder of images with masks (images/ + masks/, or "
                               "RPL's annotations/ood_seg_<split>/ + <split>/); empty: --outliers")
    energy_weight: float = option(0.05, "weight of the positive energy loss on pasted pixels (paper: 0.05)")
    corocl_weight: float = option(1.0, "weight of the CoroCL loss")
    width: int = option(DEFAULT_WIDTH, "ASPP width of the RPL module")
    max_views: int = option(256, "CoroCL pixels sampled per group (outlier/inlier x pasted/context) per step")
    scales: str = option(",".join(str(s) for s in DEFAULT_SCALES),
                         "comma-separated pasted-object heights as fractions of the image height")

    def scale_values(self) -> list[float]:
        """:attr:`scales` as numbers."""
        return [float(scale) for scale in self.scales.split(",") if scale.strip()]


# ----------------------------------------------------------------------------------------------- losses


def labels_at(labels: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Area-downsample 0/1/255 labels (B, H, W) to ``size``: 1 if >= half outlier, 0 if clean, else 255."""
    if tuple(labels.shape[-2:]) == tuple(size):
        return labels.long()
    outlier = F.interpolate((labels == OOD_ANOMALY).float()[:, None], size=size, mode="area")[:, 0]
    other = F.interpolate((labels != OOD_INLIER).float()[:, None], size=size, mode="area")[:, 0]
    result = torch.full(outlier.shape, OOD_IGNORE, dtype=torch.long, device=labels.device)
    result[other < 1e-6] = OOD_INLIER
    result[outlier >= 0.5] = OOD_ANOMALY
    return result


def softmax_entropy(logits: torch.Tensor) -> torch.Tensor:
    """Per-pixel softmax entropy (nats) of (B, C, h, w) logits."""
    log_p = torch.log_softmax(logits, dim=1)
    return -(log_p.exp() * log_p).sum(dim=1)


def inlier_losses(
    augmented: torch.Tensor, vanilla: torch.Tensor, inlier: torch.Tensor
) -> dict[str, torch.Tensor]:
    """Keep the augmented path equal to the original on inliers: CE to its argmax + entropy matching.

    Means over the inlier pixels of the global batch (:func:`~ood_seg_node.training.distributed.masked_mean`).
    """
    if not distributed.current().distributed and not bool(inlier.any()):
        zero = augmented.sum() * 0.0
        return {"inlier_ce": zero, "inlier_entropy": zero}
    pseudo = vanilla.argmax(dim=1)
    ce = masked_mean(F.cross_entropy(augmented, pseudo, reduction="none"), inlier)
    entropy = (softmax_entropy(augmented) - softmax_entropy(vanilla).detach()) ** 2
    return {"inlier_ce": ce, "inlier_entropy": masked_mean(entropy, inlier)}


def positive_energy_loss(augmented: torch.Tensor, outlier: torch.Tensor) -> torch.Tensor:
    """``mean(relu(logsumexp(l)))`` over outlier pixels: free energy of outliers pushed above zero."""
    if not distributed.current().distributed and not bool(outlier.any()):
        return augmented.sum() * 0.0
    return masked_mean(F.relu(torch.logsumexp(augmented, dim=1)), outlier)


def info_nce(
    anchors: torch.Tensor, anchor_labels: torch.Tensor, contrast: torch.Tensor, contrast_labels: torch.Tensor,
    temperature: float = TEMPERATURE,
) -> torch.Tensor:
    """Supervised pixel InfoNCE: each anchor vs every same-label contrast (itself excluded) and all others.

    The contrast set must start with the anchors themselves, in order (so row i's self-pair is column i).
    Embeddings are L2-normalised rows; labels are 1-D.
    """
    logits = anchors @ contrast.T / temperature
    logits = logits - logits.amax(dim=1, keepdim=True).detach()
    same = anchor_labels[:, None] == contrast_labels[None, :]
    positive = same.clone()
    positive.fill_diagonal_(False)
    negatives = (logits.exp() * (~same)).sum(dim=1, keepdim=True)
    log_prob = logits - torch.log(logits.exp() + negatives)
    counts = positive.sum(dim=1).clamp(min=1)
    return -((log_prob * positive).sum(dim=1) / counts).mean()


def corocl_loss(
    proj_mix: torch.Tensor, labels_mix: torch.Tensor, proj_ctx: torch.Tensor, labels_ctx: torch.Tensor,
    *, temperature: float = TEMPERATURE, max_views: int = 256, generator: torch.Generator | None = None,
) -> torch.Tensor:
    """CoroCL (Liu et al., ICCV 2023): InfoNCE across the pasted-scene and outlier-own contexts.

    Anchors are ``n`` outlier and ``n`` inlier pixels of the pasted scenes; the contrast set adds ``n``
    outlier and ``n`` context pixels of the outlier source's own images, with
    ``n = min(max_views, size of each of the four groups)``. Outliers are positives of outliers in either
    context, inliers and context pixels positives of each other.

    Args:
        proj_mix: (B, D, h, w) projections of the pasted scenes.
        labels_mix: (B, h, w) their 0 / 1 / 255 labels.
        proj_ctx: (B', D, h, w) projections of the outlier source's context images.
        labels_ctx: (B', h, w) their labels.
        temperature: InfoNCE temperature (paper: 0.1).
        max_views: most pixels sampled per group.
        generator: torch generator for the sampling.
    """
    def flat(proj: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return F.normalize(proj, dim=1).permute(0, 2, 3, 1).reshape(-1, proj.shape[1]), labels.reshape(-1)

    mix, mix_labels = flat(proj_mix, labels_mix)
    ctx, ctx_labels = flat(proj_ctx, labels_ctx)
    groups = [mix[mix_labels == OOD_ANOMALY], mix[mix_labels == OOD_INLIER],
              ctx[ctx_labels == OOD_ANOMALY], ctx[ctx_labels == OOD_INLIER]]
    n = min([max_views] + [g.shape[0] for g in groups])
    if n == 0:
        return proj_mix.sum() * 0.0
    picked = [g[torch.randperm(g.shape[0], generator=generator)[:n].to(g.device)] for g in groups]
    group_labels = [torch.full((n,), label, device=proj_mix.device) for label in (1, 0, 1, 0)]
    anchors, anchor_labels = torch.cat(picked[:2]), torch.cat(group_labels[:2])
    return info_nce(anchors, anchor_labels, torch.cat(picked), torch.cat(group_labels), temperature)


class ProjectionHead(nn.Module):
    """CoroCL's training-only 1x1 projection of the RPL bottleneck features (as in the authors' code)."""

    def __init__(self, width: int, dim: int = 32) -> None:
        super().__init__()
        self.proj = nn.Conv2d(width, dim, 1)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """(B, width, h, w) -> (B, dim, h, w) embeddings (normalised by the loss)."""
        return self.proj(features)


@contextmanager
def running_batch_norm(module: nn.Module) -> Iterator[None]:
    """Temporarily normalise with running statistics (and leave them untouched) in ``module``'s BN layers."""
    layers = [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training]
    for layer in layers:
        layer.eval()
    try:
        yield
    finally:
        for layer in layers:
            layer.train()


def rpl_losses(
    segmenter: Segmenter, head: RPLHead, projector: ProjectionHead | None, images: torch.Tensor,
    labels: torch.Tensor, ctx_images: torch.Tensor | None = None, ctx_labels: torch.Tensor | None = None,
    *, energy_weight: float = 0.05, corocl_weight: float = 1.0, max_views: int = 256,
    generator: torch.Generator | None = None,
) -> dict[str, torch.Tensor]:
    """All RPL(+CoroCL) loss terms and their weighted ``total`` for one batch.

    Args:
        segmenter: the frozen segmenter.
        head: the RPL head being trained.
        projector: CoroCL's projection head, or None for RPL alone.
        images: (B, 3, H, W) pasted scenes in [0, 1].
        labels: (B, H, W) 0 inlier / 1 pasted / 255 void.
        ctx_images: (B', 3, H, W) outlier-source context images, or None (no CoroCL).
        ctx_labels: (B', H, W) their labels.
        energy_weight: weight of the positive energy loss.
        corocl_weight: weight of CoroCL.
        max_views: CoroCL pixels per group.
        generator: torch generator for CoroCL's sampling.
    """
    use_corocl = projector is not None and ctx_images is not None and ctx_labels is not None
    batch = images.shape[0]
    with torch.no_grad():
        out = segmenter.run(torch.cat([images, ctx_images]) if use_corocl else images)
    stage3 = out.features["stage3"]
    neck = out.features["neck"]
    features = head.module.encode(stage3[:batch])
    residual = head.module.residual(features, neck.shape[-2:])
    augmented = segmenter.classify(neck[:batch] + residual).float()
    vanilla = out.logits[:batch].float()
    small = labels_at(labels, tuple(augmented.shape[-2:]))
    losses = inlier_losses(augmented, vanilla, small == OOD_INLIER)
    losses["energy"] = positive_energy_loss(augmented, small == OOD_ANOMALY)
    total = losses["inlier_ce"] + losses["inlier_entropy"] + energy_weight * losses["energy"]
    if use_corocl:
        # context images go through the module with the road scenes' batch-norm statistics: their own
        # (colour fields, other-world photos) would shift the running statistics used at inference
        with running_batch_norm(head.module):
            ctx_features = head.module.encode(stage3[batch:])
        proj = projector(torch.cat([features, ctx_features]))
        proj = F.interpolate(proj, size=neck.shape[-2:], mode="bilinear", align_corners=False)
        ctx_small = labels_at(ctx_labels, tuple(neck.shape[-2:]))
        losses["corocl"] = corocl_loss(proj[:batch], small, proj[batch:], ctx_small, max_views=max_views,
                                       generator=generator)
        total = total + corocl_weight * losses["corocl"]
    losses["total"] = total
    return losses


# ---------------------------------------------------------------------------------------------- training


def training_labels(semantic: torch.Tensor, ood: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Labels before pasting: void and the world's own obstacles are ignored, everything else is inlier.

    Returns ``(semantic, ood)`` where ``ood`` is 0 inlier / 255 ignore, ready for :func:`paste_outliers`.
    """
    ignore = (semantic == IGNORE_INDEX) | (ood == OOD_ANOMALY)
    clean = torch.where(ignore, torch.full_like(ood, OOD_IGNORE), torch.full_like(ood, OOD_INLIER))
    return semantic, clean


@TRAINERS.register("rpl")
class RPLTrainer(HeadTrainer):
    """The RPL module (and CoroCL's projection) by Adam with the poly schedule; best validation AP kept."""

    name = "rpl"
    options_class = RPLOptions
    default_lr = 1e-3
    total_name = "train_total"

    def __init__(self, config: HeadTrainingConfig, options: RPLOptions) -> None:
        super().__init__(config, options)
        self.options = options
        self.scales = options.scale_values()
        self.source = outlier_source(options.outliers or config.outliers, seed=config.seed)
        self.head = RPLHead(self.segmenter, width=options.width, dilations=DEFAULT_DILATIONS).to(self.device)
        self.projector = ProjectionHead(options.width).to(self.device) if options.corocl == "on" else None
        params = list(self.head.parameters())
        if self.projector is not None:
            params += list(self.projector.parameters())
        self.optimizer = torch.optim.Adam(params, lr=self.lr, weight_decay=1e-4)

    def trained_modules(self) -> dict[str, nn.Module]:
        """The RPL head and, for CoroCL, the projection head."""
        return {"head": self.head, **({"projector": self.projector} if self.projector is not None else {})}

    def losses(self, batch: Batch) -> dict[str, torch.Tensor]:
        """Paste outliers (and draw the outlier source's contexts for CoroCL); every RPL loss term.

        Each image's outliers are drawn from its own keyed generator (the same in any number of
        processes); CoroCL's contexts and pixel sampling are drawn per step and process.
        """
        semantic, clean = training_labels(batch.semantic, batch.ood)
        pasted = [paste_outliers(batch.images[i:i + 1], semantic[i:i + 1], clean[i:i + 1], self.source, rng,
                                 scales=self.scales) for i, rng in enumerate(self.sample_rngs(batch))]
        images, labels = torch.cat([p[0] for p in pasted]), torch.cat([p[2] for p in pasted])
        ctx_images = ctx_labels = None
        if self.projector is not None:
            ctx_images, ctx_labels = context_batch(self.source, self.step_rng(batch), max(1, images.shape[0] // 2),
                                                   self.config.height, self.config.width)
            ctx_images, ctx_labels = ctx_images.to(self.device), ctx_labels.to(self.device)
        losses = rpl_losses(self.segmenter, self.head, self.projector, images.to(self.device),
                            labels.to(self.device), ctx_images, ctx_labels,
                            energy_weight=self.options.energy_weight, corocl_weight=self.options.corocl_weight,
                            max_views=self.options.max_views, generator=self.step_generator(batch))
        return {**{f"train_{key}": value for key, value in losses.items() if key != "total"},
                "total": losses["total"]}
