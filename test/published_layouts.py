# Copyright 2026 The ood_seg_node developers. Licensed under the Apache License, Version 2.0.
"""Helpers for the published-weights tests: key manifests and random weights drawn from them.

A manifest is the (key, shape) list transcribed from an official model definition; weights drawn from it
alone (not from our modules) make a file in the published layout without trusting the code under test.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import torch

Manifest = Iterator[tuple[str, tuple[int, ...]]]


def batch_norm(prefix: str, channels: int) -> Manifest:
    """The five state-dict entries of a ``BatchNorm2d`` at ``prefix``."""
    for name in ("weight", "bias", "running_mean", "running_var"):
        yield f"{prefix}.{name}", (channels,)
    yield f"{prefix}.num_batches_tracked", ()


def random_state(manifest: Iterable[tuple[str, tuple[int, ...]]], seed: int = 0, *,
                 positive: tuple[str, ...] = ()) -> dict[str, torch.Tensor]:
    """He-scaled convolutions and batch norms that are not identities (so a wrong BN order shows).

    ``positive``: key suffixes drawn in [0.5, 1.5) like BN scales and variances (1-D weights always are).
    """
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in manifest:
        if key.endswith("num_batches_tracked"):
            state[key] = torch.tensor(1000)
        elif key.endswith(("running_var", *positive)) or (key.endswith(".weight") and len(shape) == 1):
            state[key] = torch.rand(shape, generator=generator).add_(0.5)
        elif len(shape) == 1:  # bias, running_mean
            state[key] = torch.randn(shape, generator=generator).mul_(0.1)
        else:
            fan_in = shape[1] * shape[2] * shape[3]
            state[key] = torch.randn(shape, generator=generator).mul_((1.0 / fan_in) ** 0.5)
    return state


def bottleneck(prefix: str, inplanes: int, planes: int) -> Manifest:
    """A torchvision-style ResNet bottleneck's convolutions and batch norms (without ``downsample``)."""
    yield f"{prefix}.conv1.weight", (planes, inplanes, 1, 1)
    yield from batch_norm(f"{prefix}.bn1", planes)
    yield f"{prefix}.conv2.weight", (planes, planes, 3, 3)
    yield from batch_norm(f"{prefix}.bn2", planes)
    yield f"{prefix}.conv3.weight", (planes * 4, planes, 1, 1)
    yield from batch_norm(f"{prefix}.bn3", planes * 4)
