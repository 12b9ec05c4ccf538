# Copyright 2026 The ood_seg_node developers. Licensed under the Apache License, Version 2.0.
"""Training on several processes and machines with ``torch.distributed``, as ``torchrun`` launches them.

``torchrun --nproc_per_node N [--nnodes M --node_rank R --rdzv_endpoint HOST:PORT] -m ood_seg_node.cli
train-head ...`` starts one process per GPU (or N CPU processes); each reads ``RANK``, ``WORLD_SIZE`` and
``LOCAL_RANK`` from its environment. :func:`setup` joins the process group (NCCL on CUDA devices, gloo on
CPU) and picks ``cuda:<LOCAL_RANK>``; without those variables it returns the single-process
:class:`Runtime` and nothing changes. :func:`ood_seg_node.training.loop.fit` then wraps the trainer's
trained modules in ``DistributedDataParallel``.

So that N processes with a per-process batch of ``B / N`` reproduce one process with batch ``B``:

- every rank draws the same permutation of the epoch (from the seed and the epoch, like
  ``torch.utils.data.DistributedSampler``) and takes every N-th sample of each global batch;
- a loss that is a mean over pixels of the batch is a mean over the pixels of *every* rank's share
  (:func:`masked_mean`, :func:`global_denominator`): DDP averages gradients over ranks, so each rank's loss is
  its sum divided by the global count times N;
- batch-norm layers being trained normalise with the statistics of the global batch
  (:func:`sync_batch_norm`: ``torch.nn.SyncBatchNorm`` on CUDA, :class:`GlobalBatchNorm` on CPU).
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn


@dataclass(frozen=True)
class Runtime:
    """Where this process stands: its rank among ``world_size`` processes and its device.

    Attributes:
        rank: global rank (0 logs, validates and writes files).
        world_size: processes training together (1 without torchrun).
        local_rank: rank on this machine (its GPU index).
        device: the device torchrun assigned to the process (``cuda:<local_rank>`` or ``cpu``); ``None``
            in a single process, where the trainer's own ``--device`` holds.
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: str | None = None

    @property
    def main(self) -> bool:
        """The process that logs, validates and writes."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        """More than one process trains."""
        return self.world_size > 1


_RUNTIME = Runtime()


def launched() -> bool:
    """Started by torchrun (or anything that sets its ``RANK`` and ``WORLD_SIZE``)."""
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def setup(device: str = "cpu") -> Runtime:
    """Join torchrun's process group and pick this process's device; the single-process runtime otherwise.

    ``device`` is the run's ``--device``: a CUDA one becomes ``cuda:<LOCAL_RANK>`` with the NCCL backend,
    anything else trains on CPU with gloo. Calling it again returns the same runtime.
    """
    global _RUNTIME
    if not launched():
        return _RUNTIME
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if str(device).startswith("cuda"):
        if not torch.cuda.is_available():
            raise RuntimeError(f"--device {device} under torchrun, but this machine has no CUDA device")
        chosen, backend = f"cuda:{local}", "nccl"
        torch.cuda.set_device(local)
    else:
        chosen, backend = "cpu", "gloo"
    if not dist.is_initialized():
        # validation and checkpoints run on rank 0 while the others wait: allow long validations
        dist.init_process_group(backend, rank=rank, world_size=world, timeout=datetime.timedelta(hours=2))
    _RUNTIME = Runtime(rank, world, local, chosen)
    return _RUNTIME


def current() -> Runtime:
    """The runtime :func:`setup` established (single process until it is called under torchrun)."""
    return _RUNTIME


def shutdown() -> None:
    """Leave the process group (end of a torchrun run)."""
    global _RUNTIME
    if dist.is_initialized():
        dist.destroy_process_group()
    _RUNTIME = Runtime()


def check_batch_size(batch_size: int, world_size: int | None = None) -> int:
    """The per-process batch size; refuses a global batch size the world size does not divide."""
    world = current().world_size if world_size is None else world_size
    if batch_size < 1 or batch_size % world:
        raise ValueError(f"--batch-size {batch_size} is not divisible by the {world} training processes "
                         "(the global batch is split evenly across them)")
    return batch_size // world


def barrier() -> None:
    """Wait for every rank (no-op in a single process)."""
    if current().distributed:
        dist.barrier()


def broadcast(value):
    """Rank 0's ``value`` (any picklable object) on every rank."""
    if not current().distributed:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def _device_of(tensor: torch.Tensor) -> torch.device:
    # NCCL reduces CUDA tensors only; gloo CPU ones
    return tensor.device if dist.get_backend() == "nccl" else torch.device("cpu")


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """The sum over ranks of a tensor without gradient (a copy; the input is left alone)."""
    reduced = tensor.detach().clone().to(_device_of(tensor))
    dist.all_reduce(reduced)
    return reduced.to(tensor.device)


def global_denominator(count: torch.Tensor, minimum: float | None = None) -> torch.Tensor:
    """The denominator that turns a rank's sum into its share of the mean over every rank's elements.

    In a single process it is ``count`` itself (clamped to ``minimum``). With N ranks it is the count summed
    over ranks (clamped) divided by N: DDP averages the ranks' gradients, so the average of the ranks'
    ``sum / denominator`` is the global sum over the global count.
    """
    world = current().world_size
    if world > 1:
        count = all_reduce_sum(count)
    if minimum is not None:
        count = count.clamp(min=minimum)
    return count / world if world > 1 else count


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``values[mask]`` over every rank's batch; an attached zero when no rank selects anything.

    A single process computes ``values[mask].mean()`` exactly as before; every rank takes part in the same
    reductions whatever its own mask holds, so ranks never wait on each other.
    """
    if not current().distributed:
        return values[mask].mean() if bool(mask.any()) else values.sum() * 0.0
    count = all_reduce_sum(mask.sum().double())
    if float(count) == 0:
        return values.sum() * 0.0
    return values[mask].sum() * (current().world_size / count.to(values.dtype))


def mean_over_ranks(values: dict[str, float]) -> dict[str, float]:
    """Each logged value averaged over ranks (with :func:`masked_mean` losses: the global batch's value)."""
    runtime = current()
    if not runtime.distributed or not values:
        return values
    device = torch.device(runtime.device) if dist.get_backend() == "nccl" else torch.device("cpu")
    stacked = torch.tensor(list(values.values()), dtype=torch.float64, device=device)
    dist.all_reduce(stacked)
    return {key: float(value) / runtime.world_size for key, value in zip(values, stacked.tolist())}


# -------------------------------------------------------------------------------------------- batch norm


class GlobalBatchNorm(nn.modules.batchnorm._BatchNorm):
    """Batch norm whose training statistics are those of the global batch, over gloo (CPU) processes.

    ``torch.nn.SyncBatchNorm`` does the same on GPUs only. The mean and the biased variance are reduced
    over ranks in two passes through differentiable all-reduces (``torch.distributed.nn``), so gradients
    flow to every rank's inputs; the running statistics are updated as ``BatchNorm`` does (unbiased
    variance). In evaluation mode, or outside a process group, it is a plain batch norm.
    """

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected at least 2D input (got {input.dim()}D input)")

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(input)
        self._check_input_dim(input)
        dims = [0, *range(2, input.dim())]
        shape = [1, -1] + [1] * (input.dim() - 2)
        x = input.float()
        local = torch.tensor([x.numel() / x.shape[1]], dtype=x.dtype, device=x.device)
        totals = _differentiable_all_reduce(torch.cat([x.sum(dims), local]))
        count = totals[-1].detach()
        mean = totals[:-1] / count
        centred = x - mean.view(shape)
        var = _differentiable_all_reduce((centred * centred).sum(dims)) / count
        out = centred * torch.rsqrt(var + self.eps).view(shape)
        if self.affine:
            out = out * self.weight.view(shape) + self.bias.view(shape)
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                momentum = (1.0 / float(self.num_batches_tracked) if self.momentum is None
                            else self.momentum)
                unbiased = var.detach() * (count / (count - 1).clamp(min=1))
                self.running_mean.mul_(1 - momentum).add_(mean.detach().to(self.running_mean.dtype),
                                                          alpha=momentum)
                self.running_var.mul_(1 - momentum).add_(unbiased.to(self.running_var.dtype), alpha=momentum)
        return out.to(input.dtype)


def sync_batch_norm(module: nn.Module, device: str | None) -> nn.Module:
    """Make every batch-norm layer of ``module`` normalise over the global batch (in place; returns it).

    ``torch.nn.SyncBatchNorm`` on CUDA; :class:`GlobalBatchNorm` on CPU. Weights, buffers, state-dict
    keys and training mode are kept, so checkpoints load into the plain layers.
    """
    if device is not None and str(device).startswith("cuda"):
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    for name, child in list(module.named_children()):
        if isinstance(child, nn.modules.batchnorm._BatchNorm) and not isinstance(child, (GlobalBatchNorm,
                                                                                         nn.SyncBatchNorm)):
            replacement = GlobalBatchNorm(child.num_features, child.eps, child.momentum, child.affine,
                                          child.track_running_stats)
            if child.affine:  # the very parameters the optimizer holds
                replacement.weight, replacement.bias = child.weight, child.bias
            if child.track_running_stats:
                replacement.running_mean, replacement.running_var = child.running_mean, child.running_var
                replacement.num_batches_tracked = child.num_batches_tracked
            replacement.train(child.training)
            setattr(module, name, replacement)
        else:
            sync_batch_norm(child, device)
    return module


def _differentiable_all_reduce(tensor: torch.Tensor) -> torch.Tensor:
    """Sum over ranks with a gradient (the sum of the ranks' gradients flows back to each).

    ``torch.distributed.nn.functional.all_reduce`` is the public autograd-aware collective; torch 2.14 marks it
    deprecated in favour of a private module, so its FutureWarning (printed on every call, by every rank) is
    silenced here rather than the private API used.
    """
    import warnings

    from torch.distributed.nn.functional import all_reduce

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning, message=".*all_reduce is deprecated")
        return all_reduce(tensor)
