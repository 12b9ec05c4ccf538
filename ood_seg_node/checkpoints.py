# Copyright 2026 The ood_seg_node developers. Licensed under the Apache License, Version 2.0.
"""Checkpoints: a dict of tensors plus a small JSON-able metadata dict, loaded with ``weights_only=True``.

A checkpoint is untrusted input, so it never unpickles code; the metadata says what it is (``kind``:
``segmenter`` or ``head``, ``name``) and which segmenter a head was trained on, so that a head is refused,
with a message naming both, when it is paired with another segmenter.

Files are identified before torch reads them: torch's own errors for a file it did not write are its
internals (``pop from empty list``, ``101``, miniz messages), so such a file is refused in one line saying
what it is instead.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch

FORMAT_VERSION = 1
CHECKPOINT = "PyTorch checkpoint"
TORCHSCRIPT = "TorchScript archive"
_ZIP_MAGIC = b"PK\x03\x04"
_LEGACY_MAGIC = (0x1950A86A20F9469CFC6C).to_bytes(10, "little")  # pickled at the start of pre-zip torch.save files
# The weights-only unpickler refusing an object; a name ending in "." is a pickle cut short, not an object.
_UNSAFE = re.compile(r"GLOBAL (\S*[^.\s]) (?:was not|whose)|Can only (?:create|build)")


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


def first_sentence(error: BaseException) -> str:
    """The gist of a library error: its first sentence (torch appends paragraphs of advice), or its type."""
    text = str(error).strip()
    return text.splitlines()[0].split(". ")[0].rstrip(".") if text else type(error).__name__


def _torch_format(path: Path) -> str:
    """:data:`CHECKPOINT` (``torch.save``), :data:`TORCHSCRIPT` (``torch.jit.save``), or what the file is instead.

    Raises:
        CheckpointError: a zip archive without its directory (a torch file cut short).
    """
    with path.open("rb") as stream:
        head = stream.read(64)
    if head.startswith(_ZIP_MAGIC):
        try:
            with zipfile.ZipFile(path) as archive:
                names = archive.namelist()
        except zipfile.BadZipFile:
            raise CheckpointError(f"{path} is truncated or damaged (its zip directory is missing)") from None
        root = names[0].partition("/")[0] if names else ""  # torch writes every entry under one folder
        if f"{root}/data.pkl" not in names:
            return "a zip archive that torch did not write"
        return TORCHSCRIPT if f"{root}/constants.pkl" in names else CHECKPOINT
    if head.startswith(b"\x80"):
        return CHECKPOINT if _LEGACY_MAGIC in head else "a Python pickle that torch did not write"
    if not head:
        return "an empty file"
    if all(32 <= byte < 127 or byte in b"\t\n\r" for byte in head):
        return "text"
    return "unrecognised binary data"


def check_torch_file(path: str | os.PathLike[str], expected: str) -> Path:
    """Refuse, in one line, a missing file or one that is not the ``expected`` kind (:data:`CHECKPOINT`, ...).

    Raises:
        CheckpointError: ``<path> is not a PyTorch checkpoint (text)``, ``<path> is a TorchScript archive, not
            a PyTorch checkpoint``, ``<path> is truncated or damaged (...)``, ``checkpoint not found: <path>``.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    found = _torch_format(path)
    if found in (CHECKPOINT, TORCHSCRIPT) and found != expected:
        raise CheckpointError(f"{path} is a {found}, not a {expected}")
    if found != expected:
        raise CheckpointError(f"{path} is not a {expected} ({found})")
    return path


def read_weights(path: str | os.PathLike[str], *, mmap: bool = False) -> Any:
    """``torch.load`` with ``weights_only=True`` of a ``torch.save`` file; every failure is one line.

    Args:
        path: the file.
        mmap: map the tensors from the file instead of reading them (zip-format files; a pre-1.6 file is
            read): a caller that keeps a few tensors of a large file then never holds the rest in memory.

    Raises:
        CheckpointError: not a checkpoint (see :func:`check_torch_file`), refused by weights-only loading
            (it holds code or objects), or truncated / damaged.
    """
    path = check_torch_file(path, CHECKPOINT)
    with path.open("rb") as stream:
        mmap = mmap and stream.read(len(_ZIP_MAGIC)) == _ZIP_MAGIC
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as error:
        unsafe = _UNSAFE.search(str(error))
        if unsafe is None:
            raise CheckpointError(f"{path} is truncated or damaged (unreadable pickle data)") from None
        what = f"Python code or objects ({unsafe.group(1)})" if unsafe.group(1) else "Python objects"
        raise CheckpointError(
            f"{path} is refused: it holds {what} that weights-only loading does not allow; "
            "re-save just its tensors (a state dict)"
        ) from None
    except Exception as error:  # torch raises many types for a damaged file
        raise CheckpointError(f"{path} is truncated or damaged ({first_sentence(error)})") from None


def published_payload(path: str) -> object | None:
    """A head checkpoint read as its authors may have published it (weights-only), or None.

    None for an empty path or a file this reader refuses: the package's own loader then reports it in its
    words. Heads that accept their method's published file look at the payload's layout first. The tensors
    are mapped, not read: RPL's file also holds the 550 MB segmenter that the segmenter loader reads itself.
    """
    if not path:
        return None
    try:
        return read_weights(path, mmap=True)
    except CheckpointError:
        return None


def load_checkpoint(
    path: str | os.PathLike[str], *, kind: str | None = None, name: str | None = None
) -> Checkpoint:
    """Load safely and check ``kind``/``name`` when given; raises :class:`CheckpointError` with one line."""
    path = Path(path)
    payload = read_weights(path)
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


def load_strict(module: torch.nn.Module, state_dict: dict[str, torch.Tensor], what: str, *,
                assign: bool = False) -> None:
    """Load every tensor of ``state_dict`` into ``module`` and nothing else, or fail in one line.

    Keys are compared before shapes: a file of another architecture differs in both, and its key names
    say which network it is for (torch would report a shape first).

    Args:
        module: the freshly built model.
        state_dict: its weights, keys exactly as the model names them.
        what: the start of the error message, e.g. ``x.pt does not fit the obsnet head``.
        assign: take the tensors themselves instead of copying them into the module's (a large model
            built on the ``meta`` device is then never initialised nor held twice).

    Raises:
        CheckpointError: ``<what>: missing key 'a.b'``, ``<what>: unexpected key 'c'`` or
            ``<what>: size mismatch for d: ...`` (the first one found).
    """
    expected = module.state_dict(keep_vars=True)
    missing = next((key for key in expected if key not in state_dict), None)
    if missing is not None:
        raise CheckpointError(f"{what}: missing key {missing!r}")
    unexpected = next((key for key in state_dict if key not in expected), None)
    if unexpected is not None:
        raise CheckpointError(f"{what}: unexpected key {unexpected!r}")
    for key, tensor in expected.items():
        if tuple(state_dict[key].shape) != tuple(tensor.shape):
            raise CheckpointError(f"{what}: size mismatch for {key}: the file has {tuple(state_dict[key].shape)}, "
                                  f"the model {tuple(tensor.shape)}")
    module.load_state_dict(state_dict, strict=True, assign=assign)


def with_batch_counters(state: dict[str, torch.Tensor], module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Add zero ``num_batches_tracked`` counters to a file that has none (PyTorch < 0.4.1 did not save them).

    They only matter for training with ``momentum=None``; a file with some counters but not all is left as it
    is, so :func:`load_strict` reports the first missing one.
    """
    if any(key.endswith(".num_batches_tracked") for key in state):
        return state
    counters = {key: torch.zeros((), dtype=torch.long) for key in module.state_dict()
                if key.endswith(".num_batches_tracked")}
    return {**state, **counters}


def unwrap_state_dict(payload: object, source: str, containers: Sequence[str]) -> dict[str, torch.Tensor]:
    """The state dict inside a file as its authors publish it.

    Published files wrap the weights in a container (``{'model_state': ...}``, ``{'state_dict': ...}``,
    ``{'model': ...}``, beside optimizer state and counters) or are a bare state dict; a model saved
    through ``nn.DataParallel`` prefixes every key with ``module.``. The first of ``containers`` present is
    unwrapped and the prefix stripped.

    Raises:
        CheckpointError: no state dict where one was expected (one line naming what the file holds).
    """
    if isinstance(payload, dict):
        payload = next((payload[name] for name in containers if isinstance(payload.get(name), dict)), payload)
    if not isinstance(payload, dict) or not payload or not all(
            isinstance(key, str) and isinstance(value, torch.Tensor) for key, value in payload.items()):
        found = ", ".join(map(repr, list(payload)[:4])) if isinstance(payload, dict) else type(payload).__name__
        wanted = f"no {' or '.join(repr(name) for name in containers)}; " if containers else ""
        raise CheckpointError(f"{source} holds no state dict ({wanted}found {found or 'nothing'})")
    if all(key.startswith("module.") for key in payload):
        payload = {key.removeprefix("module."): value for key, value in payload.items()}
    return payload
