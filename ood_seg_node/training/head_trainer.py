# Copyright 2026 The ood_seg_node developers. Licensed under the Apache License, Version 2.0.
"""What every trained head's trainer shares, and the registry ``ood_seg train-head --head <name>`` reads.

A head trainer is a :class:`HeadTrainer` subclass registered with ``@TRAINERS.register(name)`` under its
head's name: an options dataclass (each field is a ``--<name>-<field>`` flag of ``train-head``), its head and
optimizer built in ``__init__``, and ``losses(batch)`` (the loss terms of one batch, ``total`` among them; the
loop back-propagates and steps the optimizer); the base class supplies the rest of what
:func:`ood_seg_node.training.loop.fit` calls -- ``trained_modules`` is the head -- for a trainer to override
where its method differs. The
checkpoint it writes is the one its head's ``build`` loads: the head's weights and architecture config, the
identity of the segmenter it was trained on, and the best-F1 validation threshold.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any, ClassVar, Iterable

import numpy as np
import torch
from torch import nn

from ood_seg_node.checkpoints import Checkpoint
from ood_seg_node.heads import HEADS, TrainedHead, check_taps
from ood_seg_node.registry import Registry
from ood_seg_node.segmenters import Segmenter, build_segmenter
from ood_seg_node.training import distributed
from ood_seg_node.training.common import (
    Batch,
    HeadTrainingConfig,
    SampledBatch,
    batches,
    check_label_space,
    evaluate_head,
    poly_lr,
    seed_everything,
    training_and_validation_frames,
)
from ood_seg_node.training.loop import Trainer


def freeze(segmenter: Segmenter) -> Segmenter:
    """The segmenter in eval mode without gradients: a head learns from it, never changes it."""
    segmenter.eval()
    for parameter in segmenter.parameters():
        parameter.requires_grad_(False)
    return segmenter


class HeadTrainer(Trainer):
    """A trained head's trainer on the synthetic world, on a frozen segmenter.

    ``__init__`` seeds every generator, builds and freezes the segmenter, checks it, and renders the
    training and validation frames; the subclass then sets :attr:`head` and the optimizer. By default an
    epoch trains :attr:`head` on shuffled, flipped batches under the poly schedule (DeepLab's, as ObsNet and
    RPL train), validation scores it like the pipeline does, and the checkpoint holds its ``state_dict`` and
    ``config``.

    Attributes:
        options_class: the dataclass of the head's own options.
        default_lr: the learning rate when ``--lr`` is 0.
        threshold_key: the validation metric saved as the checkpoint's ``default_threshold``.
        head: the head being trained (set by the subclass).
        rng: NumPy generator of the trainer's own random draws (pasting, attack regions).
        generator: torch generator of the same (attack targets, pixel sampling).
    """

    options_class: ClassVar[type]
    default_lr: ClassVar[float]
    threshold_key: ClassVar[str] = "val_threshold"
    head: TrainedHead

    def __init__(self, config: HeadTrainingConfig, options: Any) -> None:
        seed_everything(config.seed)
        self.config = config
        self.device = torch.device(config.device)
        self.lr = config.lr or self.default_lr
        self.segmenter = freeze(build_segmenter(config.segmenter, config.segmenter_checkpoint)).to(self.device)
        self.check_segmenter()
        self.train_frames, self.val_frames = training_and_validation_frames(config)
        check_label_space(self.train_frames, self.segmenter.label_space.name, f"segmenter {config.segmenter}")
        self.steps_per_epoch = -(-len(self.train_frames) // config.batch_size)
        self.rng = np.random.default_rng(config.seed)
        self.generator = torch.Generator().manual_seed(config.seed)
        self.run_config: dict[str, Any] = {
            **asdict(config), "lr": self.lr, **{f"{self.name}_{k}": v for k, v in asdict(options).items()},
            "segmenter_identity": self.segmenter.identity,
        }

    @property
    def checkpoint_file(self) -> str:
        """The head checkpoint's file name in the output folder."""
        return f"{self.name}.pt"

    def check_segmenter(self) -> None:
        """Refuse, before any frame is rendered, a segmenter the head cannot work with (missing taps)."""
        check_taps(self.name, self.segmenter, HEADS.get(self.name).required_taps)

    def train_batches(self, epoch: int | None = None) -> Iterable[Batch]:
        """One shuffled, flip-augmented epoch of the training frames: this process's share of each batch.

        The order and the flips are keyed on the seed and ``epoch`` (default: :attr:`current_epoch`).
        """
        runtime = distributed.current()
        return batches(self.train_frames, self.config.batch_size, shuffle=True, augment=True,
                       seed=self.config.seed, epoch=self.current_epoch if epoch is None else epoch,
                       rank=runtime.rank, world_size=runtime.world_size)

    def sample_rngs(self, batch: Batch) -> list[np.random.Generator]:
        """One generator per sample of ``batch`` for the trainer's per-sample draws.

        Keyed on the sample's place in the epoch (:class:`~ood_seg_node.training.common.SampledBatch`), so
        that the draws do not depend on how many processes share the batch; :attr:`rng` for other batches.
        """
        if isinstance(batch, SampledBatch) and len(batch.positions) == batch.images.shape[0]:
            return [batch.sample_rng(i) for i in range(len(batch.positions))]
        return [self.rng] * batch.images.shape[0]

    def step_rng(self, batch: Batch) -> np.random.Generator:
        """A generator of the draws a trainer makes once per step in this process (keyed on step and rank)."""
        if isinstance(batch, SampledBatch):
            return batch.step_rng(rank=distributed.current().rank)
        return self.rng

    def step_generator(self, batch: Batch) -> torch.Generator:
        """The torch counterpart of :meth:`step_rng`."""
        if isinstance(batch, SampledBatch):
            seed = int(batch.step_rng(stream=5, rank=distributed.current().rank).integers(2**62))
            return torch.Generator().manual_seed(seed)
        return self.generator

    def trained_modules(self) -> dict[str, nn.Module]:
        """The head (the segmenter stays frozen, outside the wrapped module)."""
        return {"head": self.head}

    def random_state(self) -> dict[str, Any]:
        return {"rng": self.rng.bit_generator.state, "generator": self.generator.get_state()}

    def load_random_state(self, state: dict[str, Any]) -> None:
        if state:
            self.rng.bit_generator.state = state["rng"]
            self.generator.set_state(state["generator"])

    def epoch(self) -> Iterable[Batch]:
        self.head.train()
        return self.train_batches()

    def schedule(self, step: int, total: int, base: float) -> float:
        return poly_lr(step, total, base)

    def validate(self) -> dict[str, float]:
        """AP / AUROC / FPR95 of the head's scores against the *anomaly* ground truth, best-F1 threshold.

        Runs where the models are (no copy of a large segmenter per epoch; a DDP-wrapped head stays put).
        """
        metrics = evaluate_head(self.segmenter, self.head.eval(), self.val_frames, self.config.batch_size,
                                self.device)
        return {f"val_{key}": float(value) for key, value in metrics.items()}

    def head_state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """The head's weights and the architecture config its ``from_config`` rebuilds it from."""
        return self.head.state_dict(), self.head.config

    def checkpoints(self, record: dict[str, float]) -> dict[str, Checkpoint]:
        """``<name>.pt``: what the head's ``build`` loads, tied to this segmenter, with its threshold."""
        state, config = self.head_state()
        meta = {"kind": "head", "name": self.name, "config": config, "segmenter": self.segmenter.identity,
                "default_threshold": float(record[self.threshold_key]), "metrics": record,
                "training": self.run_config}
        return {self.checkpoint_file: Checkpoint(state, meta)}


# head name -> its trainer; ood_seg_node.training.trainers imports every trainer module, which registers it
TRAINERS: Registry[type[HeadTrainer]] = Registry("trainer")
