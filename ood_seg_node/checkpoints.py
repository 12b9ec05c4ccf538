# Copyright 2026 The ood_seg_node developers. Licensed under the Apache License, Version 2.0.
"""Checkpoints: a dict of tensors plus a small JSON-able metadata dict, loaded with ``weights_only=True``.

A checkpoint is untrusted input, so it never unpickles code; the metadata says what it is (``kind``:
``segmenter`` or ``head``, ``name``) and which segmenter a head was trained on, so that a head is refused,
with a message naming both, when it is paired with another segmenter.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

FORMAT_VERSION = 1


class CheckpointError(RuntimeError):
    """A checkpoint is missing, unreadable, of the wrong kind, or belongs to another segmenter."""


@dataclass
class Checkpoint:
    """Loaded checkpoint: tensors and metadata (``kind``, ``name``, ``segmenter``, ``config``, ...)."""

    state_dict: dict[str, torch.Tensor]
    meta: dict[str, Any] = field(default_factory=dict)
    path: str = ""

    @property
    def config(self) -> dict[str, Any]:
        return dict(self.meta.get("config", {}))


def state_digest(state_dict: dict[str, torch.Tensor]) -> str:
    """Short content hash of a state dict: identifies *which* weights a head was trained against."""
    digest = hashlib.sha256()
    for key in sorted(state_dict):
        tensor = state_dict[key].detach().to("cpu").contiguous()
        digest.update(key.encode())
        digest.update(str(tensor.dtype).encode())
        digest.update(tensor.numpy().tobytes() if tensor.dtype != torch.bfloat16 else tensor.float().numpy().tobytes())
    return digest.hexdigest()[:12]


def save_checkpoint(
    path: str | os.PathLike[str],
    state_dict: dict[str, torch.Tensor],
    *,
    kind: str,
    name: str,
    config: dict[str, Any] | None = None,
    **meta: Any,
) -> None:
    """Write tensors + metadata atomically (a crash mid-write never leaves a truncated checkpoint)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "meta": {"format": FORMAT_VERSION, "kind": kind, "name": name, "config": config or {}, **meta},
        "state_dict": {k: v.detach().to("cpu").contiguous() for k, v in state_dict.items()},
    }
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)


def load_checkpoint(
    path: str | os.PathLike[str], *, kind: str | None = None, name: str | None = None
) -> Checkpoint:
    """Load safely and check ``kind``/``name`` when given; raises :class:`CheckpointError` with one line."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for corrupt / unsafe files
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise CheckpointError(f"cannot read checkpoint {path}: {first_line}") from None
    if not isinstance(payload, dict) or "state_dict" not in payload or "meta" not in payload:
        raise CheckpointError(f"{path} is not an ood_seg_node checkpoint (no 'meta'/'state_dict')")
    checkpoint = Checkpoint(state_dict=payload["state_dict"], meta=dict(payload["meta"]), path=str(path))
    if kind is not None and checkpoint.meta.get("kind") != kind:
        raise CheckpointError(f"{path} is a {checkpoint.meta.get('kind')!r} checkpoint, expected {kind!r}")
    if name is not None and checkpoint.meta.get("name") != name:
        raise CheckpointError(
            f"{path} holds a {checkpoint.meta.get('name')!r} {kind or 'model'}, expected {name!r}"
        )
    return checkpoint


def shipped_weights_dir() -> Path:
    """Where the package's own trained weights live (installed under share/ too by colcon)."""
    return Path(__file__).resolve().parent / "weights"
