# Copyright 2026 The ood_seg_node developers. Licensed under the Apache License, Version 2.0.
"""Tests for the NFlowJS head (JS score, checkpoint with its own segmenter) and its trainer."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from ood_seg_node.checkpoints import CheckpointError, load_checkpoint, save_checkpoint, state_digest
from ood_seg_node.heads import build_head
from ood_seg_node.heads.nflowjs import NFlowJS, js_max, js_to_uniform
from ood_seg_node.pipeline import Pipeline
from ood_seg_node.segmenters import build_segmenter
from ood_seg_node.segmenters.builtin import BuiltinSegmenter
from ood_seg_node.training.common import HeadTrainingConfig
from ood_seg_node.training.flows import PatchFlow
from ood_seg_node.training.loop import fit
from ood_seg_node.training.nflowjs import NFlowJSOptions, NFlowJSTrainer, paste_negatives


def _segmenter_checkpoint(path, seed: int) -> str:
    torch.manual_seed(seed)
    save_checkpoint(path, BuiltinSegmenter().state_dict(), kind="segmenter", name="builtin",
                    config={"input_size": [64, 128]})
    return str(path)


def _head_checkpoint(path, base, finetuned) -> str:
    save_checkpoint(path, {f"segmenter.{k}": v for k, v in finetuned.state_dict().items()}, kind="head",
                    name="nflowjs", config={"segmenter_spec": "builtin", "input_size": [64, 128]},
                    segmenter=base.identity, default_threshold=0.4, metrics={})
    return str(path)


def test_score_is_one_for_uniform_zero_for_confident_and_ordered():
    logits = torch.zeros(1, 19, 1, 4)
    logits[0, 0, 0, 1] = 2.0
    logits[0, 0, 0, 2] = 6.0
    logits[0, 0, 0, 3] = 1e4  # extreme logits stay finite
    score = NFlowJS.score_logits(logits)
    assert score.shape == (1, 1, 4)
    assert torch.isfinite(score).all()
    assert score[0, 0, 0] == pytest.approx(1.0, abs=1e-6)
    assert score[0, 0, 3] == pytest.approx(0.0, abs=1e-6)
    assert score[0, 0, 0] > score[0, 0, 1] > score[0, 0, 2] > score[0, 0, 3]


def test_js_matches_the_definition():
    logits = torch.randn(3, 19, 2, 2, dtype=torch.float64)
    p = torch.softmax(logits, dim=1)
    u = torch.full_like(p, 1 / 19)
    m = (p + u) / 2
    reference = 0.5 * ((p * (p / m).log()).sum(1) + (u * (u / m).log()).sum(1))
    assert torch.allclose(js_to_uniform(logits), reference, atol=1e-12)
    one_hot = torch.full((1, 19, 1, 1), -1e4, dtype=torch.float64)
    one_hot[0, 0] = 0
    assert js_to_uniform(one_hot).item() == pytest.approx(js_max(19), abs=1e-9)


def test_checkpoint_carries_the_finetuned_segmenter_and_the_pipeline_runs_it(tmp_path):
    base = build_segmenter("builtin", _segmenter_checkpoint(tmp_path / "seg.pt", 0))
    finetuned = BuiltinSegmenter()
    finetuned.load_state_dict(base.state_dict())
    with torch.no_grad():
        finetuned.classifier.bias.add_(0.5)
    head = build_head("nflowjs", base, _head_checkpoint(tmp_path / "nflowjs.pt", base, finetuned))
    override = head.segmenter_override()
    assert override is not None and override is not base
    assert override.identity == f"builtin@{state_digest(finetuned.state_dict())}" != base.identity
    assert torch.equal(override.classifier.bias, finetuned.classifier.bias)
    assert override.default_input_size == (64, 128)
    assert head.default_threshold == pytest.approx(0.4)
    assert "own fine-tuned segmenter" in head.description and base.identity in head.description
    pipeline = Pipeline(base, head, device="cpu", optimize=False)
    assert pipeline.segmenter is override
    result = pipeline.process(np.random.default_rng(0).integers(0, 255, (40, 70, 3), dtype=np.uint8))
    assert result.score.shape == (40, 70) and np.isfinite(result.score).all()
    assert 0.0 <= result.score.min() and result.score.max() <= 1.0


def test_checkpoint_for_another_base_segmenter_is_refused(tmp_path):
    base = build_segmenter("builtin", _segmenter_checkpoint(tmp_path / "seg.pt", 0))
    other = build_segmenter("builtin", _segmenter_checkpoint(tmp_path / "other.pt", 1))
    checkpoint = _head_checkpoint(tmp_path / "nflowjs.pt", base, base)
    with pytest.raises(CheckpointError, match="trained on segmenter"):
        build_head("nflowjs", other, checkpoint)


def test_negatives_are_pasted_and_the_segmenter_loss_reaches_the_flow():
    torch.manual_seed(0)
    flow = PatchFlow(hidden=8)
    with torch.no_grad():
        for parameter in flow.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    images = torch.full((2, 3, 48, 64), 0.5)
    semantic = torch.zeros(2, 48, 64, dtype=torch.long)
    options = NFlowJSOptions(patch_min=16, patch_max=16, patches_per_image=1)
    pasted, labels, negative = paste_negatives(images, semantic, options, flow, np.random.default_rng(0))
    assert negative.flatten(1).sum(1).tolist() == [256, 256]
    assert (labels[negative] == 255).all() and (labels[~negative] == 0).all()
    where = negative.unsqueeze(1).expand_as(images)
    assert not torch.equal(pasted[where], images[where])
    assert torch.equal(pasted[~where], images[~where])
    segmenter = BuiltinSegmenter().eval()
    logits = segmenter.run(pasted).logits
    logits = torch.nn.functional.interpolate(logits, size=(48, 64), mode="bilinear", align_corners=False)
    js_to_uniform(logits)[negative].mean().backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in flow.parameters())
    none = NFlowJSOptions(negatives="none")
    same, _, nothing = paste_negatives(images, semantic, none, None, np.random.default_rng(0))
    assert same is images and not nothing.any()


def test_bad_options_are_refused():
    with pytest.raises(ValueError, match="--nflowjs-patch-min"):
        NFlowJSOptions(patch_min=80, patch_max=64)
    with pytest.raises(ValueError, match="--nflowjs-negatives"):
        NFlowJSOptions(negatives="real")
    assert NFlowJSOptions(negatives="procedural").negatives == "procedural"


def test_short_training_run_lowers_the_loss_and_writes_a_loadable_checkpoint(tmp_path):
    torch.manual_seed(0)
    seg = _segmenter_checkpoint(tmp_path / "seg.pt", 0)
    config = HeadTrainingConfig(head="nflowjs", segmenter="builtin", segmenter_checkpoint=seg,
                                out=str(tmp_path / "run"), sequences=2, frames_per_sequence=2,
                                val_sequences=1, epochs=3, batch_size=2, lr=1e-3, height=64, width=128)
    options = NFlowJSOptions(flow_steps=12, flow_batch=8, flow_crop=16, flow_hidden=8, patch_min=16, patch_max=24)
    result = fit(NFlowJSTrainer(config, options), epochs=config.epochs, out=config.out)
    log = json.loads((tmp_path / "run" / "log.json").read_text())
    epochs = [record for record in log["epochs"] if record["epoch"] >= 1]
    assert [record["epoch"] for record in log["epochs"]] == [0, 1, 2, 3]
    assert epochs[-1]["train_loss"] < epochs[0]["train_loss"]
    assert math.isfinite(result["val_ap"]) and 0.0 <= result["val_miou"] <= 1.0
    assert (tmp_path / "run" / "nflowjs_flow.pt").is_file()
    assert (tmp_path / "run" / "nflowjs_samples.png").is_file()
    checkpoint = load_checkpoint(result["checkpoint"], kind="head", name="nflowjs")
    base = build_segmenter("builtin", seg)
    assert checkpoint.meta["segmenter"] == base.identity
    head = build_head("nflowjs", base, result["checkpoint"])
    assert head.segmenter_override().identity != base.identity
