# Copyright 2026 The ood_seg_node developers. Licensed under the Apache License, Version 2.0.
"""``ood_seg train-head --head obsnet``: train the ObsNet observer on Local-Adversarial-Attacked frames.

Besnier et al., ICCV 2021 (arXiv 2108.01634). The segmenter stays frozen. Each training batch is attacked
(``ood_seg_node.training.attacks``), the segmenter's error map on the attacked images -- its prediction,
argmax at native resolution upsampled like the node publishes it, differs from the semantic label, void
pixels excluded -- is the target, and the observer is trained with class-weighted binary cross-entropy
(positive weight 3, the official Cityscapes setting) by SGD with the poly schedule. Every epoch the head
is validated on held-out VAL_SEEDS frames against the *anomaly* ground truth (AP / AUROC / FPR95), and the
best-AP checkpoint is kept. Anomaly pixels are void in the semantic labels, so the observer never learns
from an anomaly: the attacks are its only stand-in for OOD objects, as in the paper.
"""

from __future__ import annotations

import argparse
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from ood_seg_node.checkpoints import save_checkpoint
from ood_seg_node.cityscapes import IGNORE_INDEX
from ood_seg_node.datasets.base import Frame
from ood_seg_node.heads.base import check_taps
from ood_seg_node.heads.obsnet import SIZES, ObsNet
from ood_seg_node.segmenters import Segmenter, build_segmenter
from ood_seg_node.training import TRAIN_SEEDS, VAL_SEEDS
from ood_seg_node.training.attacks import ATTACK_MODES, ATTACK_TARGETS, MASK_KINDS, AttackConfig, attack_batch
from ood_seg_node.training.common import (
    HeadTrainingConfig,
    RunLog,
    batches,
    evaluate_head,
    poly_lr,
    seed_everything,
    synthetic_frames,
)

DEFAULT_LR = 0.02
CHECKPOINT_NAME = "obsnet.pt"


@dataclass
class ObsNetOptions:
    """The ``--obsnet-*`` flags (see :func:`add_arguments` for their meaning)."""

    size: str = "full"
    init: str = "segmenter"
    pos_weight: float = 3.0
    momentum: float = 0.9
    weight_decay: float = 1e-4
    attack: AttackConfig = field(default_factory=AttackConfig)


def add_arguments(group: argparse._ArgumentGroup) -> None:
    """Register the ObsNet-specific ``train-head`` flags."""
    group.add_argument("--obsnet-size", choices=tuple(SIZES), default="full",
                       help="observer size: full = the builtin segmenter's widths (one more segmenter-sized "
                            "forward per frame), light = half the widths (default: full)")
    group.add_argument("--obsnet-init", choices=("segmenter", "scratch"), default="segmenter",
                       help="start the observer from the segmenter's weights where names and shapes match "
                            "(the official recipe; only a full observer of the builtin segmenter fits) "
                            "or from scratch (default: segmenter)")
    group.add_argument("--obsnet-attack", choices=ATTACK_MODES, default="local",
                       help="adversarial attack on training images: local (LAA), global (whole image) or "
                            "none, for the paper's ablation (default: local)")
    group.add_argument("--obsnet-attack-target", choices=ATTACK_TARGETS, default=AttackConfig.target,
                       help="FGSM direction: raise the true class' loss, or push towards one random class "
                            f"per image (default: {AttackConfig.target})")
    group.add_argument("--obsnet-mask", choices=MASK_KINDS, default="shapes",
                       help="local attack region: random shapes in a box, or the whole square box "
                            "(default: shapes)")
    group.add_argument("--obsnet-epsilon", type=float, default=AttackConfig.epsilon,
                       help=f"FGSM step in [0, 1] pixel units (default: {AttackConfig.epsilon})")
    group.add_argument("--obsnet-attack-prob", type=float, default=AttackConfig.probability,
                       help=f"probability that a batch is attacked (default: {AttackConfig.probability})")
    group.add_argument("--obsnet-box", type=float, default=AttackConfig.box,
                       help=f"side of the local attack box, fraction of the image height "
                            f"(default: {AttackConfig.box})")
    group.add_argument("--obsnet-pos-weight", type=float, default=ObsNetOptions.pos_weight,
                       help=f"BCE weight of segmenter-error pixels (default: {ObsNetOptions.pos_weight})")


def options_from_args(args: argparse.Namespace) -> ObsNetOptions:
    """Read the ``--obsnet-*`` flags (missing ones take their defaults)."""
    defaults = AttackConfig()
    attack = AttackConfig(
        mode=getattr(args, "obsnet_attack", defaults.mode),
        target=getattr(args, "obsnet_attack_target", defaults.target),
        mask=getattr(args, "obsnet_mask", defaults.mask),
        epsilon=getattr(args, "obsnet_epsilon", defaults.epsilon),
        probability=getattr(args, "obsnet_attack_prob", defaults.probability),
        box=getattr(args, "obsnet_box", defaults.box),
    )
    return ObsNetOptions(size=getattr(args, "obsnet_size", "full"),
                         init=getattr(args, "obsnet_init", "segmenter"),
                         pos_weight=getattr(args, "obsnet_pos_weight", ObsNetOptions.pos_weight),
                         attack=attack)


def error_targets(logits: torch.Tensor, semantic: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The observer's target: where the segmenter is wrong, and where that is defined.

    Returns (errors, valid), both (B, H, W) bool: errors where the argmax (nearest-upsampled from the
    native resolution, as the node publishes labels) differs from the label; valid excludes void pixels.
    """
    predicted = logits.argmax(dim=1, keepdim=True).float()
    if predicted.shape[-2:] != semantic.shape[-2:]:
        predicted = F.interpolate(predicted, size=semantic.shape[-2:], mode="nearest")
    predicted = predicted[:, 0].long()
    valid = semantic != IGNORE_INDEX
    return (predicted != semantic) & valid, valid


def observer_loss(head: ObsNet, images: torch.Tensor, features: dict[str, torch.Tensor], errors: torch.Tensor,
                  valid: torch.Tensor, pos_weight: float) -> torch.Tensor:
    """Class-weighted BCE between the observer's (upsampled) logits and the error map, over valid pixels."""
    logits = head(images, features, tuple(errors.shape[-2:]))[:, 0]
    per_pixel = F.binary_cross_entropy_with_logits(
        logits, errors.float(), pos_weight=torch.tensor(pos_weight, device=logits.device), reduction="none"
    )
    return (per_pixel * valid).sum() / valid.sum().clamp(min=1)


def freeze(segmenter: Segmenter) -> Segmenter:
    segmenter.eval()
    for parameter in segmenter.parameters():
        parameter.requires_grad_(False)
    return segmenter


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


def make_head(segmenter: Segmenter, options: ObsNetOptions) -> tuple[ObsNet, int]:
    """A fresh observer for ``segmenter``; returns it and how many tensors came from the segmenter."""
    check_taps("obsnet", segmenter, ObsNet.required_taps)
    head = ObsNet(segmenter.tap_channels, options.size)
    copied = initialise_from_segmenter(head, segmenter) if options.init == "segmenter" else 0
    return head, copied


def train_observer(
    segmenter: Segmenter,
    head: ObsNet,
    train_frames: Sequence[Frame],
    val_frames: Sequence[Frame],
    config: HeadTrainingConfig,
    options: ObsNetOptions,
    *,
    log_config: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The training loop proper (``train`` renders frames and builds the models first).

    Returns the best epoch's metrics, the checkpoint path and the per-step training losses.
    """
    out = Path(config.out)
    device = torch.device(config.device)
    segmenter.to(device)
    head.to(device)
    head.fast_path.enabled = False  # validation scores the live weights; no frozen copy per epoch
    rng = np.random.default_rng(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    lr = config.lr or DEFAULT_LR
    optimizer = torch.optim.SGD(head.parameters(), lr=lr, momentum=options.momentum,
                                weight_decay=options.weight_decay)
    steps_per_epoch = -(-len(train_frames) // config.batch_size)
    total = steps_per_epoch * config.epochs
    log = RunLog(out, log_config or {}, monitor="val_ap")
    best: dict[str, Any] = {}
    losses: list[float] = []
    step = 0
    for epoch in range(1, config.epochs + 1):
        head.train()
        running, attacked_pixels = 0.0, 0.0
        bar = tqdm(batches(train_frames, config.batch_size, shuffle=True, augment=True),
                   total=steps_per_epoch, desc=f"obsnet epoch {epoch}/{config.epochs}", unit="batch")
        for batch in bar:
            for group in optimizer.param_groups:
                group["lr"] = poly_lr(step, total, lr)
            semantic = batch.semantic.to(device)
            images, mask = attack_batch(segmenter, batch.images.to(device), semantic, options.attack, rng,
                                        generator)
            with torch.no_grad():
                out_seg = segmenter.run(images)
                errors, valid = error_targets(out_seg.logits, semantic)
            loss = observer_loss(head, images, out_seg.features, errors, valid, options.pos_weight)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            value = float(loss.detach())
            losses.append(value)
            running += value
            attacked_pixels += float(mask.float().mean())
            step += 1
            bar.set_postfix(loss=f"{value:.3f}", err=f"{float(errors.float().mean()):.3f}")
        # validation runs on CPU, where evaluate_head keeps its batches; the models are small to move
        metrics = evaluate_head(segmenter.cpu(), head.cpu().eval(), val_frames, config.batch_size)
        segmenter.to(device)
        head.to(device)
        summary = {"train_loss": running / steps_per_epoch,
                   "attacked_fraction": attacked_pixels / steps_per_epoch, "val_ap": metrics["ap"],
                   "val_auroc": metrics["auroc"], "val_fpr95": metrics["fpr95"],
                   "val_threshold": metrics["threshold"]}
        if log.record(epoch, **summary):
            best = {**summary, "epoch": epoch}
            save_checkpoint(
                out / CHECKPOINT_NAME, head.state_dict(), kind="head", name="obsnet",
                config=head.config, segmenter=segmenter.identity,
                default_threshold=float(metrics["threshold"]),
                metrics={"val_ap": metrics["ap"], "val_auroc": metrics["auroc"],
                         "val_fpr95": metrics["fpr95"], "epoch": epoch},
                training=log_config or {},
            )
        tqdm.write(f"obsnet epoch {epoch}: loss {summary['train_loss']:.4f}  val AP {metrics['ap']:.4f}  "
                   f"AUROC {metrics['auroc']:.4f}  FPR95 {metrics['fpr95']:.4f}")
    head.fast_path.enabled = True
    return {**best, "checkpoint": str(out / CHECKPOINT_NAME), "losses": losses}


def train(config: HeadTrainingConfig, args: argparse.Namespace) -> dict[str, Any]:
    """Train ObsNet+LAA on the synthetic world; keeps the best-AP checkpoint at ``<out>/obsnet.pt``."""
    options = options_from_args(args)
    seed_everything(config.seed)
    segmenter = freeze(build_segmenter(config.segmenter, config.segmenter_checkpoint))
    head, copied = make_head(segmenter, options)
    if options.init == "segmenter" and copied == 0:
        tqdm.write(f"obsnet: no weights of {config.segmenter} fit a {options.size} observer; "
                   "training from scratch")
    train_frames = synthetic_frames(TRAIN_SEEDS[: config.sequences], config.frames_per_sequence,
                                    config.height, config.width, desc="training frames")
    val_frames = synthetic_frames(VAL_SEEDS[: config.val_sequences], config.frames_per_sequence,
                                  config.height, config.width, desc="validation frames")
    options_dict = asdict(options)
    log_config = {**asdict(config), "lr": config.lr or DEFAULT_LR, "obsnet": options_dict,
                  "initialised_tensors": copied, "segmenter_identity": segmenter.identity}
    result = train_observer(segmenter, head, train_frames, val_frames, config, options, log_config=log_config)
    result.pop("losses")
    return {**result, "size": options.size, "attack": options.attack.mode}

