# Copyright 2026 The ood_seg_node developers. Licensed under the Apache License, Version 2.0.
"""Start-up errors of ``ood_seg`` as a user sees them: exit status 1 and exactly one line on stderr."""

from __future__ import annotations

import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch


def _ood_seg(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ood_seg_node.cli", *args], capture_output=True, text=True,
                          timeout=120, cwd=cwd)


@pytest.fixture(scope="module")
def scripted(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("torchscript") / "logits.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit.trace's own deprecation notice
        torch.jit.trace(torch.nn.Conv2d(3, 19, 1), torch.rand(1, 3, 4, 4)).save(str(path))
    return path


def test_evaluate_with_a_text_file_as_checkpoint(tmp_path):
    text = tmp_path / "weights.pt"
    text.write_text("weights: none\n")
    for segmenter, expected in (("builtin", "not a PyTorch checkpoint"), ("torchscript", "not a TorchScript archive")):
        done = _ood_seg("evaluate", "--dataset", "synthetic", "--frames", "1", "--head", "msp", "--segmenter",
                        segmenter, "--segmenter-checkpoint", str(text), "--out", str(tmp_path / "out"), cwd=tmp_path)
        assert done.returncode == 1
        assert done.stderr == f"ood_seg evaluate: error: {text} is {expected} (text)\n"
    assert not (tmp_path / "out").exists()


def test_a_torchscript_segmenter_adds_no_warning_to_the_error(tmp_path, scripted):
    done = _ood_seg("evaluate", "--dataset", "synthetic", "--frames", "1", "--head", "obsnet", "--segmenter",
                    "torchscript", "--segmenter-checkpoint", str(scripted), "--out", str(tmp_path / "out"),
                    cwd=tmp_path)
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1 and "needs feature taps" in done.stderr, done.stderr


@pytest.mark.parametrize("wrong", [["--head", "nosuch"], ["--frames", "0"]])
def test_demo_with_a_bad_option_fails_fast_and_leaves_no_folder(tmp_path, wrong):
    out = tmp_path / "demo"
    done = _ood_seg("demo", *wrong, "--out", str(out), cwd=tmp_path)
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("ood_seg demo: error: "), done.stderr
    assert not out.exists()


def test_demo_table_footer_says_what_its_ms_are():
    from ood_seg_node.commands.demo import _table

    table = _table({"msp": {"ap": 0.5, "frames": 40, "latency_ms": 36.0}})
    assert "mean latency per frame" not in table
    assert table.splitlines()[-1] == " ms = image published -> score map received, mean per frame)"
