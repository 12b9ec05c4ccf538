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

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from tqdm import tqdm

from ood_seg_node.cityscapes import IGNORE_INDEX
from ood_seg_node.heads.obsnet import SIZES, ObsNet
from ood_seg_node.segmenters import Segmenter
from ood_seg_node.training.attacks import ATTACK_MODES, ATTACK_TARGETS, MASK_KINDS, AttackConfig, attack_batch
from ood_seg_node.training.common import Batch, HeadTrainingConfig, option
from ood_seg_node.training.distributed import global_denominator
from ood_seg_node.training.head_trainer import TRAINERS, HeadTrainer


@dataclass
class ObsNetOptions:
    """The ``--obsnet-*`` options: the observer, its loss and optimiser, and the attack of each batch."""

    size: str = option("full", "observer size: full = the builtin segmenter's widths (one more segmenter-sized "
                               "forward per frame), light = half the widths", choices=tuple(SIZES))
    init: str = option("segmenter", "start the observer from the segmenter's weights where names and shapes "
                                    "match (the official recipe; only a full observer of the builtin segmenter "
                                    "fits) or from scratch", choices=("segmenter", "scratch"))
    attack: str = option(AttackConfig.mode, "adversarial attack on training images: local (LAA), global "
                                            "(whole image) or none, for the paper's ablation",
                         choices=ATTACK_MODES)
    attack_target: str = option(AttackConfig.target, "FGSM direction: raise the true class' loss, or push "
                                                     "towards one random class per image", choices=ATTACK_TARGETS)
    mask: str = option(AttackConfig.mask, "local attack region: random shapes in a box, or the whole square box",
                       choices=MASK_KINDS)
    epsilon: float = option(AttackConfig.epsilon, "FGSM step in [0, 1] pixel units")
    attack_prob: float = option(AttackConfig.probability, "probability that a batch is attacked")
    box: float = option(AttackConfig.box, "side of the local attack box, fraction of the image height")
    pos_weight: float = option(3.0, "BCE weight of segmenter-error pixels (the official Cityscapes setting)")
    momentum: float = option(0.9, "SGD momentum")
    weight_decay: float = option(1e-4, "SGD weight decay")

    def attack_config(self) -> AttackConfig:
        """The attack these options describe (noise and shape count at their defaults); checks them."""
        return AttackConfig(mode=self.attack, target=self.attack_target, mask=self.mask, epsilon=self.epsilon,
                            probability=self.attack_prob, box=self.box)


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
    # the valid pixels of every process's share of the batch (this process's alone without torchrun)
    return (per_pixel * valid).sum() / global_denominator(valid.sum(), minimum=1)


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
    head = ObsNet(segmenter.tap_channels, options.size)
    copied = initialise_from_segmenter(head, segmenter) if options.init == "segmenter" else 0
    return head, copied


@TRAINERS.register("obsnet")
class ObsNetTrainer(HeadTrainer):
    """The observer, trained on attacked batches by SGD with the poly schedule; best validation AP kept."""

    name = "obsnet"
    options_class = ObsNetOptions
    default_lr = 0.02

    def __init__(self, config: HeadTrainingConfig, options: ObsNetOptions) -> None:
        super().__init__(config, options)
        self.options = options
        self.attack = options.attack_config()
        self.head, copied = make_head(self.segmenter, options)
        if options.init == "segmenter" and copied == 0:
            tqdm.write(f"obsnet: no weights of {config.segmenter} fit a {options.size} observer; "
                       "training from scratch")
        self.head.to(self.device)
        self.head.fast_path.enabled = False  # validation scores the live weights; no frozen copy per epoch
        self.run_config["initialised_tensors"] = copied
        self.optimizer = torch.optim.SGD(self.head.parameters(), lr=self.lr, momentum=options.momentum,
                                         weight_decay=options.weight_decay)

    def losses(self, batch: Batch) -> dict[str, torch.Tensor]:
        """Attack the batch, take the segmenter's errors on it as the target; the observer's BCE.

        The attack (whether the batch is attacked, its regions and targets) is drawn once per step and
        process, so with several processes each one attacks its share independently.
        """
        semantic = batch.semantic.to(self.device)
        images, mask = attack_batch(self.segmenter, batch.images.to(self.device), semantic, self.attack,
                                    self.step_rng(batch), self.step_generator(batch))
        with torch.no_grad():
            out = self.segmenter.run(images)
            errors, valid = error_targets(out.logits, semantic)
        loss = observer_loss(self.head, images, out.features, errors, valid, self.options.pos_weight)
        return {"total": loss, "attacked_fraction": mask.float().mean()}
