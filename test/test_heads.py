# Copyright 2026 The ood_seg_node developers. Licensed under the Apache License, Version 2.0.
from __future__ import annotations

import math

import pytest
import torch

from ood_seg_node.heads import HEADS, HeadError, build_head, head_names
from ood_seg_node.registry import Registry, UnknownNameError
from ood_seg_node.segmenters import SegmenterOutput, build_segmenter

LOGIT_HEADS = ("msp", "maxlogit", "energy", "entropy")


def _scores(name: str, logits: torch.Tensor) -> torch.Tensor:
    head_names()  # imports the head modules, which registers them
    return HEADS.get(name)().score(torch.zeros(1, 3, 1, 1), SegmenterOutput(logits, {}))


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


def test_training_free_heads_refuse_a_checkpoint(random_builtin_checkpoint):
    segmenter = build_segmenter("builtin", random_builtin_checkpoint)
    with pytest.raises(HeadError, match="training-free"):
        build_head("msp", segmenter, "some.pt")


def test_registry_refuses_duplicates():
    registry: Registry[int] = Registry("thing")
    registry.register("a")(1)
    with pytest.raises(ValueError, match="already registered"):
        registry.register("a")(2)
    assert registry.names() == ["a"]


def test_calibrated_thresholds_come_from_the_segmenter_checkpoint(tmp_path):
    from ood_seg_node.checkpoints import save_checkpoint
    from ood_seg_node.segmenters.builtin import BuiltinSegmenter

    path = tmp_path / "seg.pt"
    save_checkpoint(path, BuiltinSegmenter().state_dict(), kind="segmenter", name="builtin",
                    calibration={"energy": -7.25})
    segmenter = build_segmenter("builtin", str(path))
    assert build_head("energy", segmenter).default_threshold == -7.25
    assert build_head("msp", segmenter).default_threshold == 0.5  # no calibration: the fallback
