# Copyright 2026 The ood_seg_node developers. Licensed under the Apache License, Version 2.0.
"""Every kind of file that is not a loadable checkpoint is refused in one line saying what it is."""

from __future__ import annotations

import pickle
import re
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from ood_seg_node.checkpoints import CheckpointError, load_checkpoint, save_checkpoint


class Payload:
    """Unpickling it runs code: the reason weights-only loading exists."""

    def __reduce__(self):
        return (print, ("pwned",))


def _checkpoint(path: Path, **options) -> Path:
    save_checkpoint(path, {"w": torch.zeros(4096)}, kind="head", name="msp")
    if options:  # the pre-1.6 (non-zip) torch.save format, as old published weights use
        torch.save(torch.load(path, weights_only=True), path, **options)
    return path


def _scripted(path: Path) -> Path:
    torch.jit.trace(torch.nn.Conv2d(3, 19, 1), torch.rand(1, 3, 4, 4)).save(str(path))
    return path


def _cut(path: Path) -> Path:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return path


def _zip(path: Path) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("notes.txt", "not weights")
    return path


def _write(data: bytes):
    def make(path: Path) -> Path:
        path.write_bytes(data)
        return path

    return make


def _unsafe(**options):
    def make(path: Path) -> Path:
        torch.save({"meta": {}, "state_dict": {}, "x": Payload()}, path, **options)
        return path

    return make


LEGACY = {"_use_new_zipfile_serialization": False}
CASES = {
    "text": (_write(b"weights: none\n"), r"is not a PyTorch checkpoint \(text\)"),
    "random bytes": (_write(np.random.default_rng(0).bytes(5000)),
                     r"is not a PyTorch checkpoint \(unrecognised binary data\)"),
    "empty": (_write(b""), r"is not a PyTorch checkpoint \(an empty file\)"),
    "plain zip": (_zip, r"is not a PyTorch checkpoint \(a zip archive that torch did not write\)"),
    "plain pickle": (_write(pickle.dumps({"w": [1, 2]})),
                     r"is not a PyTorch checkpoint \(a Python pickle that torch did not write\)"),
    "torchscript": (_scripted, r"is a TorchScript archive, not a PyTorch checkpoint$"),
    "truncated": (lambda path: _cut(_checkpoint(path)), r"is truncated or damaged \(its zip directory is missing\)"),
    "truncated legacy": (lambda path: _cut(_checkpoint(path, **LEGACY)), r"is truncated or damaged \("),
    "unsafe": (_unsafe(), r"is refused: it holds Python code or objects \(\S*print\) that weights-only loading "
                          r"does not allow; re-save just its tensors"),
    "unsafe legacy": (_unsafe(**LEGACY), r"is refused: it holds Python code or objects \(\S*print\)"),
}


@pytest.mark.parametrize("case", CASES)
def test_a_file_that_is_no_checkpoint_is_one_line_saying_what_it_is(tmp_path, case):
    make, expected = CASES[case]
    path = make(tmp_path / "weights.pt")
    with pytest.raises(CheckpointError) as error:
        load_checkpoint(path)
    message = str(error.value)
    assert message.startswith(f"{path} ") and "\n" not in message and "\x1b" not in message
    assert re.search(expected, message), message


def test_both_torch_save_formats_load(tmp_path):
    for path in (_checkpoint(tmp_path / "zip.pt"), _checkpoint(tmp_path / "legacy.pt", **LEGACY)):
        loaded = load_checkpoint(path, kind="head", name="msp")
        assert loaded.state_dict["w"].shape == (4096,)
