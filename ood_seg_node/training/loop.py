# Copyright 2026 The ood_seg_node developers. Licensed under the Apache License, Version 2.0.
"""The one training loop: epochs, learning-rate schedule, progress, ``log.json`` and the best checkpoint.

A trainer (:class:`Trainer`) knows its models, its loss and its validation; :func:`fit` drives every one of
them the same way, so that every run of ``ood_seg train-segmenter`` and ``ood_seg train-head`` logs,
selects and saves alike. The loop adds no arithmetic of its own to a trainer's: epoch means are plain sums
of the per-step values divided by the steps, in step order.
"""

from __future__ import annotations

import json
import time
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar, Iterable

import torch
from tqdm import tqdm

from ood_seg_node.checkpoints import Checkpoint, save_checkpoint
from ood_seg_node.training.common import Batch


class Trainer(ABC):
    """A model being trained, as :func:`fit` drives it.

    A subclass sets the attributes below in ``__init__`` (building its models and data there) and writes
    the five abstract methods; :meth:`pretrain` and :meth:`finish` are optional phases.

    Attributes:
        name: label of the progress bars and log lines.
        monitor: the validation metric whose highest value selects the checkpoint kept.
        validate_before: also validate before the first epoch, logged as epoch 0 -- the starting point of
            a trainer that fine-tunes an existing model (never a checkpoint candidate).
        optimizer: before every step, each parameter group's learning rate is set by :meth:`schedule` from
            the rate the group was created with.
        steps_per_epoch: batches one :meth:`epoch` yields.
        run_config: the run's options (JSON-able), written at the top of ``log.json``.
    """

    name: ClassVar[str]
    monitor: ClassVar[str] = "val_ap"
    validate_before: ClassVar[bool] = False
    optimizer: torch.optim.Optimizer
    steps_per_epoch: int
    run_config: dict[str, Any]

    @abstractmethod
    def epoch(self) -> Iterable[Batch]:
        """Put the trained modules in training mode (validation leaves them in eval mode); one epoch of batches."""

    @abstractmethod
    def schedule(self, step: int, total: int, base: float) -> float:
        """The learning rate of a group created with rate ``base`` at ``step`` of ``total``."""

    @abstractmethod
    def step(self, batch: Batch) -> dict[str, float]:
        """One optimisation step; the values are averaged over the epoch and logged under these names."""

    @abstractmethod
    def validate(self) -> dict[str, float]:
        """Validation metrics, logged under these names; :attr:`monitor` must be one of them."""

    @abstractmethod
    def checkpoints(self, record: dict[str, float]) -> dict[str, Checkpoint]:
        """File name -> checkpoint to write when ``record`` (the epoch just validated) is the best so far.

        The first file is the trained model's (:func:`fit` returns its path); others are its companions.
        """

    def pretrain(self, out: Path) -> dict[str, Any]:
        """A phase before the first epoch (NFlowJS pre-trains its flow); adds to :func:`fit`'s result."""
        return {}

    def finish(self, best: dict[str, Any], out: Path) -> dict[str, Any]:
        """A phase after the last epoch (e.g. analysing the kept checkpoint); adds to :func:`fit`'s result."""
        return {}


def fit(trainer: Trainer, *, epochs: int, out: str | Path) -> dict[str, Any]:
    """Train for ``epochs``, validating after each and keeping the best epoch's checkpoints in ``out``.

    ``out/log.json`` is rewritten after every epoch: the run config, the monitored metric, its best value
    and one record per epoch -- its number, the seconds since training started, the epoch means of
    :meth:`Trainer.step`'s values and :meth:`Trainer.validate`'s metrics.

    Returns:
        The best epoch's record, ``checkpoint`` (the trained model's file), ``log``, and what
        :meth:`Trainer.pretrain` and :meth:`Trainer.finish` add.
    """
    if epochs < 1:
        raise ValueError(f"training needs at least one epoch, got {epochs}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    log_path = out / "log.json"
    pretrained = trainer.pretrain(out)
    started = time.time()
    records: list[dict[str, Any]] = []
    if trainer.validate_before:
        records.append(_record(0, started, trainer.validate()))
        _report(trainer.name, records[-1])
    bases = [group["lr"] for group in trainer.optimizer.param_groups]
    total = trainer.steps_per_epoch * epochs
    step = 0
    best: dict[str, Any] = {}
    checkpoint = ""
    for epoch in range(1, epochs + 1):
        sums: dict[str, float] = {}
        bar = tqdm(trainer.epoch(), total=trainer.steps_per_epoch, desc=f"{trainer.name} epoch {epoch}/{epochs}",
                   unit="batch")
        for batch in bar:
            for group, base in zip(trainer.optimizer.param_groups, bases):
                group["lr"] = trainer.schedule(step, total, base)
            values = trainer.step(batch)
            step += 1
            for key, value in values.items():
                sums[key] = sums.get(key, 0.0) + value
            bar.set_postfix({key.removeprefix("train_"): f"{value:.3f}" for key, value in values.items()})
        means = {key: value / trainer.steps_per_epoch for key, value in sums.items()}
        records.append(_record(epoch, started, {**means, **trainer.validate()}))
        if not best or records[-1][trainer.monitor] > best[trainer.monitor]:
            best = records[-1]
            files = trainer.checkpoints(best)
            for file, saved in files.items():
                save_checkpoint(out / file, saved.state_dict, **saved.meta)
            checkpoint = str(out / next(iter(files)))
        log = {"config": trainer.run_config, "monitor": trainer.monitor, "best": best[trainer.monitor],
               "epochs": records}
        log_path.write_text(json.dumps(log, indent=2))
        _report(trainer.name, records[-1])
    return {**best, "checkpoint": checkpoint, "log": str(log_path), **pretrained, **trainer.finish(best, out)}


def _record(epoch: int, started: float, metrics: dict[str, float]) -> dict[str, Any]:
    return {"epoch": epoch, "elapsed_s": round(time.time() - started, 1), **metrics}


def _report(name: str, record: dict[str, Any]) -> None:
    metrics = "  ".join(f"{key} {value:.4f}" for key, value in record.items() if key not in ("epoch", "elapsed_s"))
    tqdm.write(f"{name} epoch {record['epoch']}: {metrics}")
