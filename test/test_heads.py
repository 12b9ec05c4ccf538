# Copyright 2026 The ood_seg_node developers. Licensed under the Apache License, Version 2.0.
from __future__ import annotations

import math

import pytest
import torch

from ood_seg_node.checkpoints import CheckpointError, save_checkpoint
from ood_seg_node.heads import HEADS, HeadError, TrainedHead, build_head, head_names
from ood_seg_node.registry import Registry, UnknownNameError
from ood_seg_node.segmenters import SegmenterOutput, build_segmenter
from ood_seg_node.segmenters.builtin import BuiltinSegmenter

LOGIT_HEADS = ("msp", "maxlogit", "energy", "entropy")
# a small architecture per trained head, in the ``config`` its trainer saves (a new trained head adds one)
TRAINED_CONFIGS = {
    "obsnet": {"size": "light"},
    "rpl": {"width": 16, "dilations": [1, 2]},
    "dicnet": {"student": {"out_channels": 64, "neck_stride": 4, "width": 0.5}},
    "nflowjs": {"input_size": [64, 128]},
}


def _scores(name: str, logits: torch.Tensor) -> torch.Tensor:
    return HEADS.get(name)().score(torch.zeros(1, 3, 1, 1), SegmenterOutput(logits, {}))


@pytest.fixture(scope="module")
def segmenter(random_builtin_checkpoint):
    return build_segmenter("builtin", random_builtin_checkpoint)


def _random_checkpoint(name: str, segmenter, path, state_filter=lambda state: state) -> str:
    """A checkpoint in the head's own format, with the random weights of a fresh head."""
    torch.manual_seed(0)
    head = HEADS.get(name).from_config(segmenter, TRAINED_CONFIGS[name])
    save_checkpoint(path, state_filter(head.state_dict()), kind="head", name=name, config=TRAINED_CONFIGS[name],
                    segmenter=segmenter.identity, default_threshold=0.25)
    return str(path)


def _is_trained(name: str) -> bool:
    return issubclass(HEADS.get(name), TrainedHead)


def test_every_trained_head_has_a_test_config():
    assert {name for name in head_names() if _is_trained(name)} == set(TRAINED_CONFIGS)


@pytest.mark.parametrize("name", head_names())
def test_every_head_builds_and_scores(name, segmenter, tmp_path):
    checkpoint = _random_checkpoint(name, segmenter, tmp_path / f"{name}.pt") if _is_trained(name) else ""
    head = build_head(name, segmenter, checkpoint)
    runner = head.segmenter_override() or segmenter
    images = torch.rand(2, 3, 64, 128, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():  # as the pipeline runs it: the CPU fast path where the head has one
        out = runner.run(images)
        score = head.score(images, out)
    assert score.shape == (2, *out.logits.shape[-2:])
    assert score.dtype == torch.float32 and bool(torch.isfinite(score).all())
    assert math.isfinite(head.default_threshold)
    assert head.name == name and not head.training


@pytest.mark.parametrize("name", [name for name in head_names() if name not in TRAINED_CONFIGS])
def test_training_free_heads_refuse_a_checkpoint(name, segmenter):
    with pytest.raises(HeadError, match="training-free"):
        build_head(name, segmenter, "some.pt")


@pytest.mark.parametrize("name", sorted(TRAINED_CONFIGS))
def test_trained_heads_refuse_another_segmenters_checkpoint_in_one_line(name, segmenter, tmp_path):
    checkpoint = _random_checkpoint(name, segmenter, tmp_path / f"{name}.pt")
    torch.manual_seed(1)
    other = tmp_path / "other.pt"
    save_checkpoint(other, BuiltinSegmenter().state_dict(), kind="segmenter", name="builtin")
    with pytest.raises(CheckpointError, match="was trained on segmenter builtin@") as error:
        build_head(name, build_segmenter("builtin", str(other)), checkpoint)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("name", sorted(TRAINED_CONFIGS))
def test_trained_heads_refuse_weights_that_do_not_fit_in_one_line(name, segmenter, tmp_path):
    def drop_first(state):
        return dict(list(state.items())[1:])

    def add_extra(state):
        return {**state, "extra.weight": torch.zeros(1)}

    missing = _random_checkpoint(name, segmenter, tmp_path / "missing.pt", drop_first)
    first = next(iter(HEADS.get(name).from_config(segmenter, TRAINED_CONFIGS[name]).state_dict()))
    with pytest.raises(CheckpointError, match=f"does not fit the {name} head: missing key '{first}'$"):
        build_head(name, segmenter, missing)
    extra = _random_checkpoint(name, segmenter, tmp_path / "extra.pt", add_extra)
    with pytest.raises(CheckpointError, match="unexpected key 'extra.weight'$"):
        build_head(name, segmenter, extra)


@pytest.mark.parametrize("name", LOGIT_HEADS)
def test_confident_pixels_score_lower_than_uncertain_ones(name):
    confident = torch.zeros(1, 19, 1, 1)
    confident[0, 3] = 12.0
    uncertain = torch.zeros(1, 19, 1, 1)
    scores = _scores(name, torch.cat([confident, uncertain], dim=3))
    assert scores.shape == (1, 1, 2)
    assert scores[0, 0, 0] < scores[0, 0, 1]
    assert torch.isfinite(scores).all()


def test_logit_score_formulas():
    logits = torch.randn(2, 19, 3, 4)
    probs = logits.softmax(1)
    torch.testing.assert_close(_scores("msp", logits), 1 - probs.amax(1))
    torch.testing.assert_close(_scores("maxlogit", logits), -logits.amax(1))
    torch.testing.assert_close(_scores("energy", logits), -logits.logsumexp(1))
    entropy = -(probs * probs.log()).sum(1) / math.log(19)
    torch.testing.assert_close(_scores("entropy", logits), entropy)
    assert float(_scores("entropy", torch.zeros(1, 19, 1, 1))) == pytest.approx(1.0)


def test_unknown_head_lists_valid_names(random_builtin_checkpoint):
    segmenter = build_segmenter("builtin", random_builtin_checkpoint)
    with pytest.raises(UnknownNameError) as error:
        build_head("nonexistent", segmenter)
    for name in LOGIT_HEADS:
        assert name in str(error.value)
    assert set(LOGIT_HEADS) <= set(head_names())


def test_registry_refuses_duplicates():
    registry: Registry[int] = Registry("thing")
    registry.register("a")(1)
    with pytest.raises(ValueError, match="already registered"):
        registry.register("a")(2)
    assert registry.names() == ["a"]


def test_calibrated_thresholds_come_from_the_segmenter_checkpoint(tmp_path):
    path = tmp_path / "seg.pt"
    save_checkpoint(path, BuiltinSegmenter().state_dict(), kind="segmenter", name="builtin",
                    calibration={"energy": -7.25})
    segmenter = build_segmenter("builtin", str(path))
    assert build_head("energy", segmenter).default_threshold == -7.25
    assert build_head("msp", segmenter).default_threshold == 0.5  # no calibration: the fallback
