# Copyright 2026 The ood_seg_node developers. Licensed under the Apache License, Version 2.0.
"""Training under torchrun (2 CPU processes, gloo) against one process, resuming, mixed precision, refusals."""

from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from ood_seg_node import cli
from ood_seg_node.datasets.base import Frame
from ood_seg_node.training.common import HeadTrainingConfig, SampledBatch, batches
from ood_seg_node.training.loop import LAST, fit
from ood_seg_node.training.rpl import RPLOptions, RPLTrainer
from ood_seg_node.training.segmenter import SegmenterTrainer, SegmenterTrainingConfig

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--sequences", "2", "--frames-per-sequence", "2", "--val-sequences", "1", "--height", "32", "--width", "64",
        "--epochs", "2", "--batch-size", "2", "--threads", "1"]
SEGMENTER_TINY = [*TINY, "--crop-height", "32", "--crop-width", "64"]
# configurations whose every draw is keyed on the sample or the step, not on the process
EXACT_RUNS = {
    "rpl": ["train-head", "--head", "rpl", "--rpl-corocl", "off", "--rpl-width", "16", *TINY],
    "obsnet": ["train-head", "--head", "obsnet", "--obsnet-attack", "none", "--obsnet-size", "light",
               "--obsnet-init", "scratch", *TINY],
}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _run(args: list[str], *, processes: int = 0, timeout: float = 240) -> subprocess.CompletedProcess:
    """``ood_seg <args>`` in a fresh interpreter, or under torchrun with ``processes`` CPU processes."""
    env = {key: value for key, value in os.environ.items()
           if key not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")}
    env.update(OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT) + os.pathsep + env.get("PYTHONPATH", ""))
    launcher = [sys.executable, "-m", "ood_seg_node.cli"]
    if processes:
        launcher = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={processes}", "--nnodes=1",
                    "--master_addr=127.0.0.1", f"--master_port={_free_port()}", "-m", "ood_seg_node.cli"]
    return subprocess.run([*launcher, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


def _train_values(log_path: Path) -> list[dict[str, float]]:
    records = json.loads(log_path.read_text())["epochs"]
    return [{k: v for k, v in record.items() if k.startswith("train_") or k == "attacked_fraction"}
            for record in records]


def _assert_states_close(a: dict, b: dict, *, rtol: float, atol: float) -> None:
    assert a.keys() == b.keys()
    for key in a:
        if isinstance(a[key], dict):
            _assert_states_close(a[key], b[key], rtol=rtol, atol=atol)
        else:
            torch.testing.assert_close(a[key].double(), b[key].double(), rtol=rtol, atol=atol, msg=key)


@pytest.mark.parametrize("name", sorted(EXACT_RUNS))
def test_two_processes_reproduce_one_process(name, tmp_path):
    """Same data, seed and global batch: the same loss curve and weights; rank 0 alone writes and prints."""
    one, two = tmp_path / "one", tmp_path / "two"
    single = _run([*EXACT_RUNS[name], "--out", str(one)])
    assert single.returncode == 0, single.stderr[-2000:]
    double = _run([*EXACT_RUNS[name], "--out", str(two)], processes=2)
    assert double.returncode == 0, double.stderr[-2000:]

    first, second = _train_values(one / "log.json"), _train_values(two / "log.json")
    assert len(first) == len(second) == 2 and first[0].keys() == second[0].keys()
    for a, b in zip(first, second):
        for key in a:
            assert b[key] == pytest.approx(a[key], rel=1e-4, abs=1e-6), key
    assert first[0] != first[1]  # two epochs that trained, not one value logged twice
    _assert_states_close(torch.load(one / LAST, weights_only=True)["modules"],
                         torch.load(two / LAST, weights_only=True)["modules"], rtol=1e-4, atol=1e-5)
    _assert_states_close(torch.load(one / f"{name}.pt", weights_only=False)["state_dict"],
                         torch.load(two / f"{name}.pt", weights_only=False)["state_dict"], rtol=1e-4, atol=1e-5)
    # one result line (rank 0's) and exactly the single-process run's files, nothing left half-written
    printed = [line for line in double.stdout.splitlines() if line.startswith("{")]
    assert len(printed) == 1 and json.loads(printed[0])["checkpoint"] == str(two / f"{name}.pt")
    assert sorted(p.name for p in two.iterdir()) == sorted(p.name for p in one.iterdir())
    logs = [json.loads((out / "log.json").read_text()) for out in (one, two)]
    assert [log["world_size"] for log in logs] == [1, 2]
    assert {**logs[1]["config"], "out": ""} == {**logs[0]["config"], "out": ""}


def test_batch_size_not_divisible_by_the_processes_is_refused_in_one_line(tmp_path):
    result = _run(["train-segmenter", *SEGMENTER_TINY, "--batch-size", "3", "--out", str(tmp_path)], processes=2,
                  timeout=120)
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if line.startswith("ood_seg train-segmenter: error:")]
    assert errors and "--batch-size 3 is not divisible by the 2 training processes" in errors[0]
    assert not (tmp_path / "log.json").exists()


def _frames(count: int) -> list[Frame]:
    frames = []
    for i in range(count):
        image = np.zeros((4, 6, 3), np.uint8)
        image[..., 0] = i  # the frame's number, readable from the batch
        image[:, 0, 1] = 255  # left column marked: a flip moves it
        semantic = np.zeros((4, 6), np.uint8)
        frames.append(Frame(image=image, ood_gt=np.zeros((4, 6), np.uint8), semantic=semantic, name=str(i)))
    return frames


@pytest.mark.parametrize("count", [8, 7])
def test_shards_of_a_global_batch_are_the_one_process_batch(count):
    """Every rank's share, interleaved, is the one-process batch: same frames, same flips, same keys."""
    frames = _frames(count)
    whole = list(batches(frames, 4, shuffle=True, augment=True, seed=3, epoch=2))
    shares = [list(batches(frames, 4, shuffle=True, augment=True, seed=3, epoch=2, rank=r, world_size=2))
              for r in range(2)]
    assert len(shares[0]) == len(shares[1]) == len(whole) == math.ceil(count / 4)
    for step, batch in enumerate(whole):
        parts = [shares[r][step] for r in range(2)]
        assert isinstance(batch, SampledBatch) and all(p.step == step for p in parts)
        interleaved = [parts[i % 2].images[i // 2] for i in range(sum(p.images.shape[0] for p in parts))]
        if count % 2 == 0:  # a world size that divides the frames: exactly one process's batches
            assert torch.equal(torch.stack(interleaved), batch.images)
            assert sorted(parts[0].positions + parts[1].positions) == list(batch.positions)
    numbers = sorted(int(b.images[i, 0, 0, 0] * 255 + 0.5) for b in whole for i in range(b.images.shape[0]))
    assert numbers == list(range(count))
    other_epoch = list(batches(frames, 4, shuffle=True, augment=True, seed=3, epoch=3))
    assert any(not torch.equal(a.images, b.images) for a, b in zip(whole, other_epoch))
    with pytest.raises(ValueError, match="--batch-size 3 is not divisible by the 2"):
        next(batches(frames, 3, shuffle=True, augment=True, seed=0, world_size=2))


def _segmenter_config(out: Path, **changes) -> SegmenterTrainingConfig:
    options = dict(out=str(out), sequences=2, frames_per_sequence=2, val_sequences=1, epochs=2, batch_size=2,
                   height=32, width=64, crop_height=32, crop_width=64)
    return SegmenterTrainingConfig(**{**options, **changes})


def _rpl(out: Path, checkpoint: str) -> RPLTrainer:
    config = HeadTrainingConfig(head="rpl", segmenter_checkpoint=checkpoint, out=str(out), sequences=2,
                                frames_per_sequence=2, val_sequences=1, epochs=2, batch_size=2, height=64, width=128)
    return RPLTrainer(config, RPLOptions(corocl="on", width=16, max_views=32))


def _records(out: Path) -> list[dict[str, float]]:
    return [{k: v for k, v in r.items() if k != "elapsed_s"}
            for r in json.loads((out / "log.json").read_text())["epochs"]]


@pytest.mark.parametrize("kind", ["segmenter", "rpl"])
def test_a_run_stopped_after_one_epoch_and_resumed_ends_like_an_uninterrupted_run(kind, tmp_path,
                                                                                    random_builtin_checkpoint):
    def trainer(out: Path):
        return SegmenterTrainer(_segmenter_config(out)) if kind == "segmenter" else _rpl(out, random_builtin_checkpoint)

    whole, parted = tmp_path / "whole", tmp_path / "parted"
    expected = fit(trainer(whole), epochs=2, out=whole)
    stopped = fit(trainer(parted), epochs=2, out=parted, stop_after=1)
    assert stopped["stopped_after"] == 1 and len(_records(parted)) == 1
    state = torch.load(parted / LAST, weights_only=True)
    assert state["epoch"] == 1 and state["step"] > 0 and state["random"]["trainer"] is not None
    result = fit(trainer(parted), epochs=2, out=parted, resume=parted)

    first, second = _records(whole), _records(parted)
    assert [r["epoch"] for r in second] == [1, 2]
    for a, b in zip(first, second):
        assert b == pytest.approx(a, rel=1e-5, abs=1e-7)
    finals = [torch.load(out / LAST, weights_only=True) for out in (whole, parted)]
    assert finals[0]["epoch"] == finals[1]["epoch"] == 2
    _assert_states_close(finals[0]["modules"], finals[1]["modules"], rtol=1e-5, atol=1e-6)
    _assert_states_close(finals[0]["optimizer"]["state"], finals[1]["optimizer"]["state"], rtol=1e-5, atol=1e-6)
    assert result["epoch"] == expected["epoch"] and Path(result["checkpoint"]).parent == parted


def _cli(args: list[str], capsys) -> tuple[int, list[str]]:
    code = cli.main(args)
    return code, [line for line in capsys.readouterr().err.splitlines() if line.startswith("ood_seg ")]


def test_corrupt_or_mismatched_last_pt_is_refused_in_one_line(tmp_path, capsys):
    run = tmp_path / "run"
    fit(SegmenterTrainer(_segmenter_config(run, epochs=1)), epochs=1, out=run)
    base = ["train-segmenter", *SEGMENTER_TINY, "--resume", str(run)]

    code, errors = _cli([*base, "--seed", "1"], capsys)
    assert code == 1 and len(errors) == 1 and "its run had other options (seed)" in errors[0]

    (run / LAST).write_bytes(b"not a checkpoint at all")
    code, errors = _cli(base, capsys)
    assert code == 1 and len(errors) == 1 and "not a readable last.pt" in errors[0]

    code, errors = _cli(["train-segmenter", *SEGMENTER_TINY, "--resume", str(tmp_path / "nowhere")], capsys)
    assert code == 1 and len(errors) == 1 and "does not exist" in errors[0]

    code, errors = _cli([*base, "--out", str(tmp_path / "elsewhere")], capsys)
    assert code == 1 and len(errors) == 1 and "names another" in errors[0]


def test_amp_fp16_is_refused_on_cpu_and_bf16_trains(tmp_path, capsys):
    code, errors = _cli(["train-segmenter", *SEGMENTER_TINY, "--amp", "fp16", "--out", str(tmp_path / "fp16")],
                        capsys)
    assert code == 1 and len(errors) == 1 and "--amp fp16 needs a CUDA device" in errors[0]

    results = {}
    for amp in ("off", "bf16"):
        trainer = SegmenterTrainer(_segmenter_config(tmp_path / amp, epochs=1))
        before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
        results[amp] = fit(trainer, epochs=1, out=tmp_path / amp, amp=amp)
        after = trainer.model.state_dict()
        assert any(not torch.equal(before[k], after[k]) for k in before)
    # bf16 autocast: the same loss to bf16's precision, not bit for bit
    assert math.isfinite(results["bf16"]["train_loss"])
    assert results["bf16"]["train_loss"] == pytest.approx(results["off"]["train_loss"], rel=0.05)
    assert results["bf16"]["train_loss"] != results["off"]["train_loss"]
