# Copyright 2026 The ood_seg_node developers. Licensed under the Apache License, Version 2.0.
"""The one training loop: epochs, learning-rate schedule, optimisation steps, progress, ``log.json``, checkpoints.

A trainer (:class:`Trainer`) knows its models, its loss and its validation; :func:`fit` drives every one of
them the same way, so that every run of ``ood_seg train-segmenter`` and ``ood_seg train-head`` logs,
selects and saves alike. The loop adds no arithmetic of its own to a trainer's: epoch means are plain sums
of the per-step values divided by the steps, in step order.

The loop owns the optimisation step: a trainer computes its losses in :meth:`Trainer.losses`, called through
the forward of a :class:`TrainingModule` that holds the trained modules, and the loop zeroes the gradients,
back-propagates (through ``DistributedDataParallel`` under ``torchrun``, so that gradients are averaged over
processes; see :mod:`ood_seg_node.training.distributed`), applies mixed-precision scaling and steps the
optimizer. Every epoch ``<out>/last.pt`` holds everything a resumed run (``resume=<out>``) needs to end
as the uninterrupted run would.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import time
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar, Iterable

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from ood_seg_node.checkpoints import Checkpoint, save_checkpoint
from ood_seg_node.training import distributed
from ood_seg_node.training.common import Batch

LAST = "last.pt"
AMP_MODES = ("off", "bf16", "fp16")
_RESUME_FORMAT = 1


class Trainer(ABC):
    """A model being trained, as :func:`fit` drives it.

    A subclass sets the attributes below in ``__init__`` (building its models and data there) and writes
    :meth:`epoch`, :meth:`schedule`, :meth:`validate`, :meth:`checkpoints`, and either the pair
    :meth:`trained_modules` + :meth:`losses` (the loop then takes the optimisation step, on one or many
    processes) or, for a single process only, its own :meth:`step`. :meth:`pretrain` and :meth:`finish`
    are optional phases.

    Attributes:
        name: label of the progress bars and log lines.
        monitor: the validation metric whose highest value selects the checkpoint kept.
        validate_before: also validate before the first epoch, logged as epoch 0 -- the starting point of
            a trainer that fine-tunes an existing model (never a checkpoint candidate).
        total_name: the name :meth:`losses`' ``total`` is logged under.
        find_unused_parameters: ``DistributedDataParallel``'s flag, for a trainer whose steps leave some
            trained parameters out of the loss.
        optimizer: before every step, each parameter group's learning rate is set by :meth:`schedule` from
            the rate the group was created with.
        steps_per_epoch: batches one :meth:`epoch` yields.
        run_config: the run's options (JSON-able), written at the top of ``log.json``.
        current_epoch: the epoch :meth:`epoch` is asked for (set by :func:`fit`; keys the epoch's draws).
    """

    name: ClassVar[str]
    monitor: ClassVar[str] = "val_ap"
    validate_before: ClassVar[bool] = False
    total_name: ClassVar[str] = "train_loss"
    find_unused_parameters: ClassVar[bool] = False
    optimizer: torch.optim.Optimizer
    steps_per_epoch: int
    run_config: dict[str, Any]
    current_epoch: int = 1

    @abstractmethod
    def epoch(self) -> Iterable[Batch]:
        """Put the trained modules in training mode (validation leaves them in eval mode); one epoch of batches."""

    @abstractmethod
    def schedule(self, step: int, total: int, base: float) -> float:
        """The learning rate of a group created with rate ``base`` at ``step`` of ``total``."""

    def trained_modules(self) -> dict[str, nn.Module]:
        """Name -> module whose parameters the optimizer trains (wrapped by ``DistributedDataParallel``)."""
        raise NotImplementedError(f"{type(self).__name__} defines neither trained_modules/losses nor step")

    def state_modules(self) -> dict[str, nn.Module]:
        """Name -> module whose state a resumed run restores (default: :meth:`trained_modules`)."""
        return self.trained_modules()

    def losses(self, batch: Batch) -> dict[str, torch.Tensor]:
        """The loss terms of one batch: ``total`` is back-propagated, every term is logged.

        Called inside :class:`TrainingModule`'s forward: compute every trained module's output here, never
        before, so that ``DistributedDataParallel`` sees the forward it synchronises gradients for. ``total``
        is logged as :attr:`total_name`, the other terms under their own names.
        """
        raise NotImplementedError(f"{type(self).__name__} defines neither trained_modules/losses nor step")

    def before_optimizer_step(self) -> None:  # noqa: B027 -- an optional hook
        """Called after back-propagation (gradients unscaled, averaged over processes): e.g. clipping."""

    def step(self, batch: Batch) -> dict[str, float]:
        """One optimisation step on ``batch`` in this process; the logged values.

        By default the loop's own step (:class:`Stepper`) on :meth:`losses`. A trainer may override it
        with a step of its own, which :func:`fit` then calls instead -- in a single process only.
        """
        stepper = getattr(self, "_stepper", None)
        if stepper is None:
            stepper = self._stepper = Stepper(self)
        return stepper.step(batch)

    @abstractmethod
    def validate(self) -> dict[str, float]:
        """Validation metrics, logged under these names; :attr:`monitor` must be one of them."""

    @abstractmethod
    def checkpoints(self, record: dict[str, float]) -> dict[str, Checkpoint]:
        """File name -> checkpoint to write when ``record`` (the epoch just validated) is the best so far.

        The first file is the trained model's (:func:`fit` returns its path); others are its companions.
        """

    def pretrain(self, out: Path) -> dict[str, Any]:
        """A phase before the first epoch (NFlowJS pre-trains its flow); adds to :func:`fit`'s result.

        Runs on every process (rank 0 alone writes files); a resumed run skips it.
        """
        return {}

    def finish(self, best: dict[str, Any], out: Path) -> dict[str, Any]:
        """A phase after the last epoch (e.g. analysing the kept checkpoint); adds to :func:`fit`'s result.

        Runs on rank 0 only.
        """
        return {}

    def random_state(self) -> dict[str, Any]:
        """The state of the trainer's own generators, for ``last.pt``."""
        return {}

    def load_random_state(self, state: dict[str, Any]) -> None:  # noqa: B027 -- an optional hook
        """Restore what :meth:`random_state` returned."""


class TrainingModule(nn.Module):
    """The trained modules of a trainer, as one module whose forward is the trainer's :meth:`Trainer.losses`.

    ``DistributedDataParallel`` wraps this module: calling the wrapper computes the losses and registers
    the backward pass that averages gradients over processes.
    """

    def __init__(self, trainer: Trainer) -> None:
        super().__init__()
        self._trainer = (trainer,)  # a tuple hides it from nn.Module registration
        self.parts = nn.ModuleDict(trainer.trained_modules())

    def forward(self, batch: Batch) -> dict[str, torch.Tensor]:
        return self._trainer[0].losses(batch)


def _uses_own_step(trainer: Trainer) -> bool:
    return type(trainer).step is not Trainer.step


class Stepper:
    """The optimisation step of :func:`fit` and of :meth:`Trainer.step`.

    Forward through the (DDP-wrapped) :class:`TrainingModule`, backward, optional mixed precision,
    optimizer step; returns the logged values averaged over processes.
    """

    def __init__(self, trainer: Trainer, amp: str = "off", runtime: distributed.Runtime | None = None) -> None:
        self.trainer = trainer
        self.runtime = runtime or distributed.Runtime()
        module = TrainingModule(trainer)
        parameter = next((p for p in module.parameters()), None)
        self.device = parameter.device if parameter is not None else torch.device("cpu")
        self.amp = check_amp(amp, self.device)
        if self.runtime.distributed:
            distributed.sync_batch_norm(module, self.runtime.device)
            cuda = self.device.type == "cuda"
            module = nn.parallel.DistributedDataParallel(
                module, device_ids=[self.device] if cuda else None,
                find_unused_parameters=trainer.find_unused_parameters)
        self.module = module
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.amp == "fp16")

    def step(self, batch: Batch) -> dict[str, float]:
        optimizer = self.trainer.optimizer
        optimizer.zero_grad(set_to_none=True)
        if self.amp == "off":
            autocast = contextlib.nullcontext()
        else:
            dtype = torch.bfloat16 if self.amp == "bf16" else torch.float16
            autocast = torch.autocast(self.device.type, dtype=dtype)
        with autocast:
            losses = self.module(batch)
        total = losses["total"]
        if self.scaler.is_enabled():
            self.scaler.scale(total).backward()
            self.scaler.unscale_(optimizer)
            self.trainer.before_optimizer_step()
            self.scaler.step(optimizer)
            self.scaler.update()
        else:
            total.backward()
            self.trainer.before_optimizer_step()
            optimizer.step()
        values = {self.trainer.total_name if key == "total" else key: float(value.detach())
                  for key, value in losses.items()}
        return distributed.mean_over_ranks(values)


def check_amp(amp: str, device: torch.device) -> str:
    """``amp`` if it runs on ``device``: bf16 or fp16 on CUDA, bf16 on CPU; one-line refusal otherwise."""
    if amp not in AMP_MODES:
        raise ValueError(f"--amp must be one of {', '.join(AMP_MODES)}, got {amp!r}")
    if amp == "fp16" and device.type != "cuda":
        raise ValueError("--amp fp16 needs a CUDA device (on CPU use --amp bf16 or off)")
    return amp


def fit(trainer: Trainer, *, epochs: int, out: str | Path, resume: str | Path = "", amp: str = "off",
        stop_after: int | None = None) -> dict[str, Any]:
    """Train for ``epochs``, validating after each and keeping the best epoch's checkpoints in ``out``.

    ``out/log.json`` is rewritten after every epoch: the run config, the monitored metric, its best value,
    the number of training processes and one record per epoch -- its number, the seconds since training
    started, the epoch means of the step values and :meth:`Trainer.validate`'s metrics. ``out/last.pt`` is
    rewritten too: the trained and optimizer states, the loop's position, the records and every generator's
    state.

    Under torchrun (:func:`ood_seg_node.training.distributed.setup` called before the trainer was built),
    every process trains its share of each batch and rank 0 alone logs, validates and writes; the others
    wait for it and receive its records, so that every rank takes the same decisions.

    Args:
        trainer: what is trained.
        epochs: epochs of the whole run (a resumed run continues up to it).
        out: the output folder.
        resume: the output folder of an earlier run of the same configuration to continue from its
            ``last.pt`` (empty: start afresh).
        amp: ``off``, ``bf16`` or ``fp16`` (see :func:`check_amp`).
        stop_after: return after this epoch as if the run were stopped there (no :meth:`Trainer.finish`);
            ``resume`` continues it.

    Returns:
        The best epoch's record, ``checkpoint`` (the trained model's file), ``log``, and what
        :meth:`Trainer.pretrain` and :meth:`Trainer.finish` add.
    """
    if epochs < 1:
        raise ValueError(f"training needs at least one epoch, got {epochs}")
    runtime = distributed.current()
    main = runtime.main
    out = Path(out)
    if main:
        out.mkdir(parents=True, exist_ok=True)
    log_path = out / "log.json"
    own_step = _uses_own_step(trainer)
    if own_step and runtime.distributed:
        raise ValueError(f"{trainer.name}: a trainer with its own step() trains in a single process only "
                         "(define trained_modules() and losses() to train under torchrun)")
    if own_step and amp != "off":
        raise ValueError(f"{trainer.name}: --amp needs a trainer with losses() (this one takes its own step)")
    resumable = _has_state(trainer)
    if resume and not resumable:
        raise ResumeError(f"{trainer.name}: this trainer names no state_modules(), so it cannot resume")
    state = load_resume_state(Path(resume) / LAST, trainer) if resume else None
    pretrained = trainer.pretrain(out) if state is None else state["pretrained"]
    stepper = None if own_step else Stepper(trainer, amp, runtime)
    records: list[dict[str, Any]] = []
    best: dict[str, Any] = {}
    checkpoint = ""
    step = 0
    first = 1
    elapsed = 0.0
    if state is not None:
        restore(trainer, stepper, state)
        records, best, checkpoint, step = state["records"], state["best"], state["checkpoint"], state["step"]
        first = state["epoch"] + 1
        elapsed = records[-1]["elapsed_s"] if records else 0.0
    started = time.time() - elapsed
    if trainer.validate_before and state is None:
        record = _record(0, started, trainer.validate()) if main else None
        records.append(distributed.broadcast(record))
        if main:
            _report(trainer.name, records[-1])
    bases = [group["initial_lr"] if "initial_lr" in group else group["lr"]
             for group in trainer.optimizer.param_groups]
    for group, base in zip(trainer.optimizer.param_groups, bases):
        group["initial_lr"] = base  # the rate each group was created with, kept across resumes
    total = trainer.steps_per_epoch * epochs
    for epoch in range(first, epochs + 1):
        sums: dict[str, float] = {}
        trainer.current_epoch = epoch
        bar = tqdm(trainer.epoch(), total=trainer.steps_per_epoch, desc=f"{trainer.name} epoch {epoch}/{epochs}",
                   unit="batch", disable=not main)
        for batch in bar:
            for group, base in zip(trainer.optimizer.param_groups, bases):
                group["lr"] = trainer.schedule(step, total, base)
            values = trainer.step(batch) if stepper is None else stepper.step(batch)
            step += 1
            for key, value in values.items():
                sums[key] = sums.get(key, 0.0) + value
            bar.set_postfix({key.removeprefix("train_"): f"{value:.3f}" for key, value in values.items()})
        means = {key: value / trainer.steps_per_epoch for key, value in sums.items()}
        record = _record(epoch, started, {**means, **trainer.validate()}) if main else None
        record = distributed.broadcast(record)
        records.append(record)
        if not best or record[trainer.monitor] > best[trainer.monitor]:
            best = record
            if main:
                files = trainer.checkpoints(best)
                for file, saved in files.items():
                    save_checkpoint(out / file, saved.state_dict, **saved.meta)
                checkpoint = str(out / next(iter(files)))
            checkpoint = distributed.broadcast(checkpoint)
        if main:
            log = {"config": trainer.run_config, "monitor": trainer.monitor, "best": best[trainer.monitor],
                   "world_size": runtime.world_size, "epochs": records}
            log_path.write_text(json.dumps(log, indent=2))
            if resumable:
                save_resume_state(out / LAST, trainer, stepper, epoch=epoch, step=step, records=records, best=best,
                                  checkpoint=checkpoint, pretrained=pretrained)
            _report(trainer.name, record)
        distributed.barrier()
        if stop_after is not None and epoch >= stop_after and epoch < epochs:
            return {**best, "checkpoint": checkpoint, "log": str(log_path), **pretrained, "stopped_after": epoch}
    finished = trainer.finish(best, out) if main else {}
    distributed.barrier()
    return {**best, "checkpoint": checkpoint, "log": str(log_path), **pretrained, **finished}


def _has_state(trainer: Trainer) -> bool:
    try:
        return bool(trainer.state_modules())
    except NotImplementedError:
        return False


def _record(epoch: int, started: float, metrics: dict[str, float]) -> dict[str, Any]:
    return {"epoch": epoch, "elapsed_s": round(time.time() - started, 1), **metrics}


def _report(name: str, record: dict[str, Any]) -> None:
    metrics = "  ".join(f"{key} {value:.4f}" for key, value in record.items() if key not in ("epoch", "elapsed_s"))
    tqdm.write(f"{name} epoch {record['epoch']}: {metrics}")


# ------------------------------------------------------------------------------------------------ resume


class ResumeError(ValueError):
    """A ``last.pt`` that cannot continue this run (unreadable, another trainer or configuration)."""


# options that may differ between a run and its resumption
_RESUMABLE_CHANGES = ("epochs", "out", "resume", "device", "amp")


def _comparable(config: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in config.items() if key not in _RESUMABLE_CHANGES}


def save_resume_state(path: Path, trainer: Trainer, stepper: Stepper | None, *, epoch: int, step: int,
                      records: list[dict[str, Any]], best: dict[str, Any], checkpoint: str,
                      pretrained: dict[str, Any]) -> None:
    """Write ``last.pt`` atomically (a run killed while writing keeps the previous one)."""
    numpy_state = np.random.get_state(legacy=False)
    numpy_state["state"] = {"key": numpy_state["state"]["key"].tolist(), "pos": int(numpy_state["state"]["pos"])}
    state = {
        "format": _RESUME_FORMAT, "trainer": trainer.name, "config": trainer.run_config,
        "epoch": epoch, "step": step, "records": records, "best": best, "checkpoint": checkpoint,
        "pretrained": pretrained,
        "modules": {name: module.state_dict() for name, module in trainer.state_modules().items()},
        "optimizer": trainer.optimizer.state_dict(),
        "scaler": stepper.scaler.state_dict() if stepper is not None and stepper.scaler.is_enabled() else {},
        "random": {"python": random.getstate(), "numpy": numpy_state, "torch": torch.get_rng_state(),
                   "trainer": trainer.random_state()},
    }
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    torch.save(state, temporary)
    os.replace(temporary, path)


def load_resume_state(path: Path, trainer: Trainer) -> dict[str, Any]:
    """``last.pt`` read with ``weights_only=True`` and checked against ``trainer``; one-line errors."""
    if not path.is_file():
        raise ResumeError(f"cannot resume: {path} does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 -- any unreadable file is the same one-line refusal
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ResumeError(f"cannot resume from {path}: not a readable last.pt ({reason[:160]})") from None
    if not isinstance(state, dict) or state.get("format") != _RESUME_FORMAT:
        raise ResumeError(f"cannot resume from {path}: not a last.pt written by this version's training loop")
    if state.get("trainer") != trainer.name:
        raise ResumeError(f"cannot resume from {path}: it is a {state.get('trainer')!r} run, not {trainer.name!r}")
    saved, ours = _comparable(state.get("config", {})), _comparable(trainer.run_config)
    changed = sorted(key for key in set(saved) | set(ours) if saved.get(key) != ours.get(key))
    if changed:
        raise ResumeError(f"cannot resume from {path}: its run had other options ({', '.join(changed)})")
    return state


def restore(trainer: Trainer, stepper: Stepper | None, state: dict[str, Any]) -> None:
    """Put the trainer, its optimizer, the scaler and every generator back where ``last.pt`` left them."""
    modules = trainer.state_modules()
    if set(modules) != set(state["modules"]):
        raise ResumeError(f"cannot resume: last.pt holds modules {sorted(state['modules'])}, "
                          f"the trainer {sorted(modules)}")
    try:
        for name, module in modules.items():
            module.load_state_dict(state["modules"][name])
        trainer.optimizer.load_state_dict(state["optimizer"])
    except (RuntimeError, ValueError, KeyError) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ResumeError(f"cannot resume: last.pt does not fit this trainer ({first[:160]})") from None
    if stepper is not None and state["scaler"] and stepper.scaler.is_enabled():
        stepper.scaler.load_state_dict(state["scaler"])
    saved = state["random"]
    version, internal, gauss = saved["python"]
    random.setstate((version, tuple(internal), gauss))
    numpy_state = dict(saved["numpy"])
    numpy_state["state"] = {"key": np.asarray(numpy_state["state"]["key"], dtype=np.uint32),
                            "pos": numpy_state["state"]["pos"]}
    np.random.set_state(numpy_state)
    torch.set_rng_state(saved["torch"])
    trainer.load_random_state(saved["trainer"])
