# Copyright 2026 The ood_seg_node developers. Licensed under the Apache License, Version 2.0.
"""The one training loop (on a fake trainer) and every registered trainer (one step, validation, checkpoint)."""

from __future__ import annotations

import argparse
import json
import math
import re
from pathlib import Path

import pytest
import torch

from ood_seg_node.checkpoints import Checkpoint, load_checkpoint, save_checkpoint
from ood_seg_node.commands import config_from_args, train_head
from ood_seg_node.heads import build_head
from ood_seg_node.segmenters import build_segmenter
from ood_seg_node.training.common import HeadTrainingConfig
from ood_seg_node.training.loop import Trainer, fit
from ood_seg_node.training.segmenter import SegmenterTrainer, SegmenterTrainingConfig
from ood_seg_node.training.trainers import TRAINERS

ROOT = Path(__file__).resolve().parents[1]


class FakeTrainer(Trainer):
    """A one-weight model; each validation returns the next scripted ``val_score``."""

    name = "fake"
    monitor = "val_score"

    def __init__(self, scores: list[float], *, validate_before: bool = False) -> None:
        self.weight = torch.nn.Parameter(torch.zeros(()))
        self.optimizer = torch.optim.SGD([self.weight], lr=0.5)
        self.steps_per_epoch = 2
        self.run_config = {"scores": scores}
        self.validate_before = validate_before
        self.scores = iter(scores)
        self.rates: list[float] = []
        self.calls: list[str] = []

    def epoch(self) -> list[float]:
        self.calls.append("epoch")
        return [1.0, 3.0]

    def schedule(self, step: int, total: int, base: float) -> float:
        return base * (total - step) / total

    def step(self, batch: float) -> dict[str, float]:
        self.rates.append(self.optimizer.param_groups[0]["lr"])
        loss = (self.weight - batch) ** 2
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        return {"train_loss": float(loss.detach()), "train_batch": batch}

    def validate(self) -> dict[str, float]:
        return {"val_score": next(self.scores)}

    def checkpoints(self, record: dict[str, float]) -> dict[str, Checkpoint]:
        state = {"weight": self.weight.detach().clone()}
        return {"fake.pt": Checkpoint(state, {"kind": "fake", "name": "fake", "config": {}, "epoch": record["epoch"]}),
                "companion.pt": Checkpoint(state, {"kind": "fake", "name": "companion", "config": {}})}

    def pretrain(self, out: Path) -> dict[str, float]:
        self.calls.append("pretrain")
        return {"pretrained": 1.0}

    def finish(self, best: dict[str, float], out: Path) -> dict[str, float]:
        self.calls.append("finish")
        return {"finished_epoch": best["epoch"]}


def test_fit_logs_every_epoch_and_keeps_the_best_checkpoint(tmp_path, capsys):
    trainer = FakeTrainer([0.2, 0.5, 0.3])
    result = fit(trainer, epochs=3, out=tmp_path)

    log = json.loads((tmp_path / "log.json").read_text())
    assert log["config"] == {"scores": [0.2, 0.5, 0.3]} and log["monitor"] == "val_score" and log["best"] == 0.5
    assert [record["epoch"] for record in log["epochs"]] == [1, 2, 3]
    assert [record["val_score"] for record in log["epochs"]] == [0.2, 0.5, 0.3]
    assert all(record["train_batch"] == 2.0 for record in log["epochs"])  # epoch means of the step values
    assert list(log["epochs"][0]) == ["epoch", "elapsed_s", "train_loss", "train_batch", "val_score"]

    saved = load_checkpoint(tmp_path / "fake.pt", kind="fake")
    assert saved.meta["epoch"] == 2  # the best epoch's, not the last one's
    assert (tmp_path / "companion.pt").is_file()
    assert result["epoch"] == 2 and result["val_score"] == 0.5
    assert result["checkpoint"] == str(tmp_path / "fake.pt") and result["log"] == str(tmp_path / "log.json")
    assert result["pretrained"] == 1.0 and result["finished_epoch"] == 2
    assert trainer.calls == ["pretrain", "epoch", "epoch", "epoch", "finish"]
    # the schedule sets every step's rate from the group's starting rate, over all epochs' steps
    assert trainer.rates == pytest.approx([0.5 * (6 - step) / 6 for step in range(6)])

    captured = capsys.readouterr()
    assert "fake epoch 3/3" in captured.err  # the progress bar
    assert "fake epoch 2: train_loss" in captured.out and "val_score 0.5000" in captured.out


def test_fit_validates_before_training_without_making_it_a_candidate(tmp_path):
    result = fit(FakeTrainer([0.9, 0.1], validate_before=True), epochs=1, out=tmp_path)
    log = json.loads((tmp_path / "log.json").read_text())
    assert [record["epoch"] for record in log["epochs"]] == [0, 1]
    assert log["epochs"][0]["val_score"] == 0.9 and log["best"] == 0.1 and result["epoch"] == 1


def test_fit_refuses_zero_epochs(tmp_path):
    with pytest.raises(ValueError, match="at least one epoch"):
        fit(FakeTrainer([]), epochs=0, out=tmp_path)


def _tiny_config(name: str, segmenter_checkpoint: str, out: Path) -> HeadTrainingConfig:
    return HeadTrainingConfig(head=name, segmenter_checkpoint=segmenter_checkpoint, out=str(out), sequences=1,
                              frames_per_sequence=2, val_sequences=1, epochs=1, batch_size=2, height=64, width=128)


TINY_OPTIONS = {"obsnet": {"size": "light", "init": "scratch"}, "dicnet": {"width": 0.5},
                "nflowjs": {"flow_hidden": 8, "patch_min": 16, "patch_max": 24}, "rpl": {"width": 16}}


def test_every_trainer_has_tiny_options():
    assert sorted(TINY_OPTIONS) == TRAINERS.names()


@pytest.mark.parametrize("name", TRAINERS.names())
def test_trainer_steps_validates_and_writes_a_checkpoint_its_head_loads(name, random_builtin_checkpoint, tmp_path):
    trainer_class = TRAINERS.get(name)
    trainer = trainer_class(_tiny_config(name, random_builtin_checkpoint, tmp_path),
                            trainer_class.options_class(**TINY_OPTIONS[name]))
    assert trainer.name == name and len(trainer.train_frames) == len(trainer.val_frames) == 2
    assert 0.0 < trainer.schedule(0, 10, 1.0) <= 1.0
    values = trainer.step(next(iter(trainer.epoch())))
    assert values and all(isinstance(v, float) and math.isfinite(v) for v in values.values())
    metrics = trainer.validate()
    assert trainer.monitor in metrics and trainer.threshold_key in metrics
    record = {"epoch": 1, **values, **metrics}
    files = trainer.checkpoints(record)
    for file, checkpoint in files.items():
        save_checkpoint(tmp_path / file, checkpoint.state_dict, **checkpoint.meta)
    head_file = tmp_path / next(iter(files))
    meta = load_checkpoint(head_file, kind="head", name=name).meta
    assert meta["training"]["lr"] == trainer_class.default_lr
    head = build_head(name, build_segmenter("builtin", random_builtin_checkpoint), str(head_file))
    assert head.default_threshold == pytest.approx(metrics[trainer.threshold_key])


def test_segmenter_trainer_writes_a_checkpoint_the_segmenter_loads(tmp_path):
    config = SegmenterTrainingConfig(out=str(tmp_path), sequences=1, frames_per_sequence=2, val_sequences=1,
                                     batch_size=2, crop_height=32, crop_width=64, height=64, width=128)
    trainer = SegmenterTrainer(config)
    values = trainer.step(next(iter(trainer.epoch())))
    record = {"epoch": 1, **values, **trainer.validate()}
    ((file, checkpoint),) = trainer.checkpoints(record).items()
    save_checkpoint(tmp_path / file, checkpoint.state_dict, **checkpoint.meta)
    segmenter = build_segmenter("builtin", str(tmp_path / file))
    assert segmenter.default_input_size == (64, 128)


def _train_head_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser()
    train_head.add_arguments(parser)
    return parser


@pytest.mark.parametrize("name", TRAINERS.names())
def test_every_option_is_a_flag_prefixed_with_the_head_name(name):
    options_class = TRAINERS.get(name).options_class
    args = _train_head_parser().parse_args(["--head", name])
    assert config_from_args(options_class, args, prefix=name) == options_class()
    flags = {flag for action in _train_head_parser()._actions for flag in action.option_strings}
    for field in options_class.__dataclass_fields__:
        assert f"--{name}-{field.replace('_', '-')}" in flags


def test_flags_named_in_the_docs_exist():
    flags = {flag for action in _train_head_parser()._actions for flag in action.option_strings}
    pattern = re.compile(rf"--(?:{'|'.join(TRAINERS.names())})-[a-z-]*[a-z]")
    named = {flag for page in (ROOT / "docs").rglob("*.md") for flag in pattern.findall(page.read_text())}
    assert named and not named - flags
