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

Deviations (besides those of :mod:`ood_seg_node.heads.rpl`): the synthetic world replaces Cityscapes and
procedural objects replace COCO (a COCO-like folder can be given with ``--rpl-outliers``); the world's own
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

import argparse
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from ood_seg_node.checkpoints import save_checkpoint
from ood_seg_node.cityscapes import IGNORE_INDEX, OOD_ANOMALY, OOD_IGNORE, OOD_INLIER
from ood_seg_node.heads.base import check_taps
from ood_seg_node.heads.rpl import DEFAULT_DILATIONS, DEFAULT_WIDTH, RPLHead
from ood_seg_node.segmenters import Segmenter, build_segmenter
from ood_seg_node.training import TRAIN_SEEDS, VAL_SEEDS
from ood_seg_node.training.common import (
    HeadTrainingConfig,
    RunLog,
    batches,
    evaluate_head,
    poly_lr,
    seed_everything,
    synthetic_frames,
)
from ood_seg_node.training.outliers import DEFAULT_SCALES, build_outlier_source, context_batch, paste_outliers

DEFAULT_LR = 1e-3
TEMPERATURE = 0.1


def add_arguments(group: argparse._ArgumentGroup) -> None:
    """RPL's own ``train-head`` flags."""
    group.add_argument("--rpl-corocl", choices=("on", "off"), default="on",
                       help="context-robust contrastive learning (off = the paper's RPL-only ablation)")
    group.add_argument("--rpl-outliers", default="procedural",
                       help="outlier source: 'procedural' (the world's obstacle generator) or a folder of "
                            "images with masks in a COCO-like layout (images/ + masks/, or RPL's "
                            "annotations/ood_seg_<split>/ + <split>/)")
    group.add_argument("--rpl-energy-weight", type=float, default=0.05,
                       help="weight of the positive energy loss on pasted pixels (paper: 0.05)")
    group.add_argument("--rpl-corocl-weight", type=float, default=1.0, help="weight of the CoroCL loss")
    group.add_argument("--rpl-width", type=int, default=DEFAULT_WIDTH, help="ASPP width of the RPL module")
    group.add_argument("--rpl-max-views", type=int, default=256,
                       help="CoroCL pixels sampled per group (outlier/inlier x pasted/context) per step")
    group.add_argument("--rpl-scales", default=",".join(str(s) for s in DEFAULT_SCALES),
                       help="comma-separated pasted-object heights as fractions of the image height")


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
    """Keep the augmented path equal to the original on inliers: CE to its argmax + entropy matching."""
    if not bool(inlier.any()):
        zero = augmented.sum() * 0.0
        return {"inlier_ce": zero, "inlier_entropy": zero}
    pseudo = vanilla.argmax(dim=1)
    ce = F.cross_entropy(augmented, pseudo, reduction="none")[inlier].mean()
    entropy = (softmax_entropy(augmented) - softmax_entropy(vanilla).detach()) ** 2
    return {"inlier_ce": ce, "inlier_entropy": entropy[inlier].mean()}


def positive_energy_loss(augmented: torch.Tensor, outlier: torch.Tensor) -> torch.Tensor:
    """``mean(relu(logsumexp(l)))`` over outlier pixels: free energy of outliers pushed above zero."""
    if not bool(outlier.any()):
        return augmented.sum() * 0.0
    return F.relu(torch.logsumexp(augmented, dim=1)[outlier]).mean()


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


def _arg(args: Any, name: str, default: Any) -> Any:
    value = getattr(args, name, None)
    return default if value is None else value


def train(config: HeadTrainingConfig, args: Any) -> dict[str, Any]:
    """Train the RPL module on a frozen segmenter; best-validation-AP checkpoint at ``<out>/rpl.pt``."""
    use_corocl = _arg(args, "rpl_corocl", "on") == "on"
    energy_weight = float(_arg(args, "rpl_energy_weight", 0.05))
    corocl_weight = float(_arg(args, "rpl_corocl_weight", 1.0))
    width = int(_arg(args, "rpl_width", DEFAULT_WIDTH))
    max_views = int(_arg(args, "rpl_max_views", 256))
    scales_arg = _arg(args, "rpl_scales", DEFAULT_SCALES)
    scales = ([float(s) for s in scales_arg.split(",") if s.strip()] if isinstance(scales_arg, str)
              else [float(s) for s in scales_arg])
    outliers_spec = str(_arg(args, "rpl_outliers", "procedural"))
    lr = config.lr or DEFAULT_LR

    seed_everything(config.seed)
    rng = np.random.default_rng(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    device = torch.device(config.device)
    out_dir = Path(config.out or "runs/rpl")
    source = build_outlier_source(outliers_spec)

    segmenter = build_segmenter(config.segmenter, config.segmenter_checkpoint).to(device).eval()
    for parameter in segmenter.parameters():
        parameter.requires_grad_(False)
    check_taps("rpl", segmenter, RPLHead.required_taps)
    head = RPLHead(segmenter, width=width, dilations=DEFAULT_DILATIONS).to(device)
    projector = ProjectionHead(width).to(device) if use_corocl else None
    params = list(head.parameters()) + (list(projector.parameters()) if projector is not None else [])
    optimizer = torch.optim.Adam(params, lr=lr, weight_decay=1e-4)

    train_frames = synthetic_frames(TRAIN_SEEDS[: config.sequences], config.frames_per_sequence,
                                    config.height, config.width, desc="training frames")
    val_frames = synthetic_frames(VAL_SEEDS[: config.val_sequences], config.frames_per_sequence,
                                  config.height, config.width, desc="validation frames")
    run_config = {**asdict(config), "rpl_corocl": "on" if use_corocl else "off",
                  "rpl_outliers": outliers_spec, "rpl_energy_weight": energy_weight,
                  "rpl_corocl_weight": corocl_weight, "rpl_width": width, "rpl_max_views": max_views,
                  "rpl_scales": scales, "lr": lr}
    log = RunLog(out_dir, run_config, monitor="val_ap")
    steps_per_epoch = -(-len(train_frames) // config.batch_size)
    total_steps = steps_per_epoch * config.epochs
    checkpoint_path = out_dir / "rpl.pt"
    best: dict[str, Any] = {}
    step = 0
    for epoch in range(1, config.epochs + 1):
        head.train()
        sums: dict[str, float] = {}
        bar = tqdm(batches(train_frames, config.batch_size, shuffle=True, augment=True),
                   total=steps_per_epoch, desc=f"rpl epoch {epoch}/{config.epochs}", unit="batch")
        for batch in bar:
            for group in optimizer.param_groups:
                group["lr"] = poly_lr(step, total_steps, lr)
            semantic, clean = training_labels(batch.semantic, batch.ood)
            images, _, labels = paste_outliers(batch.images, semantic, clean, source, rng, scales=scales)
            ctx_images = ctx_labels = None
            if use_corocl:
                ctx_images, ctx_labels = context_batch(source, rng, max(1, images.shape[0] // 2),
                                                       config.height, config.width)
                ctx_images, ctx_labels = ctx_images.to(device), ctx_labels.to(device)
            losses = rpl_losses(segmenter, head, projector, images.to(device), labels.to(device), ctx_images,
                                ctx_labels, energy_weight=energy_weight, corocl_weight=corocl_weight,
                                max_views=max_views, generator=generator)
            optimizer.zero_grad(set_to_none=True)
            losses["total"].backward()
            optimizer.step()
            step += 1
            for key, value in losses.items():
                sums[key] = sums.get(key, 0.0) + float(value.detach())
            bar.set_postfix(loss=f"{float(losses['total'].detach()):.3f}",
                            energy=f"{float(losses['energy'].detach()):.2f}")
        train_metrics = {f"train_{k}": v / max(1, steps_per_epoch) for k, v in sums.items()}
        val = evaluate_head(segmenter, head, val_frames, batch_size=config.batch_size)
        val_metrics = {f"val_{k}": float(v) for k, v in val.items()}
        if log.record(epoch, **train_metrics, **val_metrics):
            best = {"epoch": epoch, **train_metrics, **val_metrics}
            save_checkpoint(checkpoint_path, head.state_dict(), kind="head", name="rpl", config=head.config,
                            segmenter=segmenter.identity, default_threshold=float(val["threshold"]),
                            metrics={k: float(v) for k, v in val.items()}, training=run_config)
        print(f"epoch {epoch}: val AP {val['ap']:.4f} FPR95 {val['fpr95']:.4f} AUROC {val['auroc']:.4f}")
    return {"head": "rpl", "checkpoint": str(checkpoint_path), "log": str(out_dir / "log.json"), **best}
