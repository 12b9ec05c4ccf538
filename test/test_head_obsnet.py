# Copyright 2026 The ood_seg_node developers. Licensed under the Apache License, Version 2.0.
"""ObsNet head and its Local Adversarial Attack training, on tiny random-weight models and toy frames."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest
import torch

from ood_seg_node.checkpoints import CheckpointError, save_checkpoint
from ood_seg_node.commands import add_config_arguments, config_from_args
from ood_seg_node.datasets.base import Frame
from ood_seg_node.heads import build_head
from ood_seg_node.heads.obsnet import ObsNet
from ood_seg_node.segmenters import build_segmenter
from ood_seg_node.segmenters.builtin import BuiltinSegmenter
from ood_seg_node.training.attacks import (
    AttackConfig,
    AttackError,
    attack_batch,
    fgsm,
    local_masks,
    random_shapes,
    segmentation_loss,
)
from ood_seg_node.training.common import HeadTrainingConfig, to_batch
from ood_seg_node.training.head_trainer import freeze
from ood_seg_node.training.loop import fit
from ood_seg_node.training.obsnet import ObsNetOptions, ObsNetTrainer, error_targets, initialise_from_segmenter

H, W = 64, 128


def toy_frames(count: int, seed: int) -> list[Frame]:
    """Road (trainId 0) below, sky (10) above, a building (2) block and a void 'obstacle' on the road."""
    rng = np.random.default_rng(seed)
    frames = []
    for i in range(count):
        semantic = np.zeros((H, W), np.uint8)
        semantic[: H // 2] = 10
        left = int(rng.integers(0, W - 30))
        semantic[H // 4: H // 2, left:left + 30] = 2
        ood = np.zeros((H, W), np.uint8)
        top, col = int(rng.integers(H // 2, H - 10)), int(rng.integers(0, W - 12))
        ood[top:top + 8, col:col + 12] = 1
        semantic[ood == 1] = 255
        colours = np.array([[128, 64, 128]] + [[70, 70, 70]] * 2 + [[0, 0, 0]] * 7 + [[70, 130, 180]] +
                           [[0, 0, 0]] * 8, np.int32)
        image = colours[np.minimum(semantic, 18)]
        image[ood == 1] = (240, 200, 30)
        image = np.clip(image + rng.normal(0, 12, image.shape), 0, 255).astype(np.uint8)
        frames.append(Frame(image, ood, semantic, name=f"toy{seed}_{i}", sequence=str(seed), index=i))
    return frames


@pytest.fixture(scope="module")
def segmenter(random_builtin_checkpoint):
    return freeze(build_segmenter("builtin", random_builtin_checkpoint))


@pytest.fixture(scope="module")
def trained_segmenter():
    """A builtin segmenter fitted for a few steps to the toy frames: random weights are near-uniform, so
    an attack on them moves the loss by ~1e-5 only; a fitted model has a loss to raise."""
    torch.manual_seed(0)
    model = BuiltinSegmenter()
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    batch = to_batch(toy_frames(8, seed=10))
    for _ in range(25):
        loss = segmentation_loss(model.run(batch.images).logits, batch.semantic)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return freeze(model)


def test_local_mask_is_a_blob_inside_one_box():
    rng = np.random.default_rng(0)
    masks = local_masks(4, H, W, AttackConfig(box=0.5), rng)
    assert masks.shape == (4, 1, H, W)
    side = 32
    for mask in masks[:, 0]:
        rows, cols = torch.nonzero(mask, as_tuple=True)
        assert 0 < len(rows) < side * side  # random shapes: not empty, not the full box
        assert int(rows.max() - rows.min()) < side and int(cols.max() - cols.min()) < side
    square = local_masks(2, H, W, AttackConfig(box=0.5, mask="square"), rng)
    assert torch.all(square.flatten(1).sum(1) == side * side)
    assert random_shapes(40, 8, rng).dtype == bool


def test_attack_changes_pixels_only_inside_the_mask_and_raises_the_loss_there(trained_segmenter):
    segmenter = trained_segmenter
    batch = to_batch(toy_frames(2, seed=1))
    mask = local_masks(2, H, W, AttackConfig(box=0.6), np.random.default_rng(3))
    attacked = fgsm(segmenter, batch.images, batch.semantic, mask, epsilon=0.03, target="true")
    inside = mask.expand_as(batch.images) > 0
    changed = attacked != batch.images
    assert not changed[~inside].any()
    assert changed[inside].float().mean() > 0.5
    assert float((attacked - batch.images).abs().max()) <= 0.03 + 1e-6
    labels_inside = torch.where(mask[:, 0] > 0, batch.semantic, torch.full_like(batch.semantic, 255))
    with torch.no_grad():
        before = segmentation_loss(segmenter.run(batch.images).logits, labels_inside)
        after = segmentation_loss(segmenter.run(attacked).logits, labels_inside)
    assert after > before * 1.02


def test_random_target_attack_and_ablation_modes(segmenter):
    batch = to_batch(toy_frames(2, seed=2))
    rng = np.random.default_rng(0)
    images, mask = attack_batch(segmenter, batch.images, batch.semantic,
                                AttackConfig(target="random", box=0.5), rng, torch.Generator().manual_seed(0))
    assert not (images != batch.images)[mask.expand_as(images) == 0].any()
    assert (images != batch.images).any()
    images, mask = attack_batch(segmenter, batch.images, batch.semantic, AttackConfig(mode="global"), rng)
    assert float(mask.mean()) == 1.0 and (images != batch.images).float().mean() > 0.5
    images, mask = attack_batch(segmenter, batch.images, batch.semantic, AttackConfig(mode="none"), rng)
    assert torch.equal(images, batch.images) and float(mask.sum()) == 0.0
    with pytest.raises(AttackError, match="valid: local, global, none"):
        AttackConfig(mode="everywhere")


@pytest.mark.parametrize("size", ["full", "light"])
def test_observer_output_shape_and_range(segmenter, size):
    head = ObsNet(segmenter.tap_channels, size).eval()
    images = torch.rand(2, 3, H, W)
    with torch.inference_mode():
        out = segmenter.run(images)
        scores = head.score(images, out)
    assert scores.shape == (2, *out.logits.shape[-2:])
    assert torch.isfinite(scores).all() and scores.min() >= 0 and scores.max() <= 1
    assert head.config["size"] == size


def test_frozen_fast_path_matches_eager_scores(segmenter):
    torch.manual_seed(1)
    head = ObsNet(segmenter.tap_channels, "light").eval()
    for bn in (m for m in head.modules() if isinstance(m, torch.nn.BatchNorm2d)):
        torch.nn.init.uniform_(bn.running_mean, -0.5, 0.5)  # non-trivial BN, as folding must preserve it
        torch.nn.init.uniform_(bn.running_var, 0.5, 2.0)
    images = torch.rand(1, 3, H, W)
    with torch.inference_mode():
        out = segmenter.run(images)
        fast = head.score(images, out)
        assert head.fast_path.frozen_shapes()  # the frozen copy really ran
        head.fast_path.enabled = False
        eager = head.score(images, out)
    torch.testing.assert_close(fast, eager, rtol=1e-3, atol=1e-4)  # folded batch norm: other float order
    head.train()
    assert not head.fast_path.frozen_shapes()  # weights may change: the frozen copy is dropped
    head(images, segmenter.run(images).features).mean().backward()  # live weights still trainable


def test_full_observer_starts_from_the_segmenter_weights(segmenter):
    head = ObsNet(segmenter.tap_channels, "full")
    assert initialise_from_segmenter(head, segmenter) > 30
    torch.testing.assert_close(head.observer.stage2[0].conv1[0].weight, segmenter.stage2[0].conv1[0].weight)
    assert initialise_from_segmenter(ObsNet(segmenter.tap_channels, "light"), segmenter) == 0


def test_error_targets_exclude_void():
    logits = torch.zeros(1, 19, 2, 2)
    logits[0, 3] = 1.0  # predicts class 3 everywhere
    semantic = torch.tensor([[[3, 3, 5, 5], [3, 3, 255, 255]]])
    errors, valid = error_targets(logits, semantic)
    assert errors.tolist() == [[[False, False, True, True], [False, False, False, False]]]
    assert valid.sum() == 6


def test_training_reduces_the_loss_and_checkpoint_is_tied_to_its_segmenter(segmenter, random_builtin_checkpoint,
                                                                             tmp_path):
    config = HeadTrainingConfig(head="obsnet", segmenter_checkpoint=random_builtin_checkpoint,
                                out=str(tmp_path / "run"), sequences=2, frames_per_sequence=4, val_sequences=1,
                                epochs=3, batch_size=4, lr=0.05, height=H, width=W)
    options = ObsNetOptions(size="light", init="scratch", box=0.4)
    result = fit(ObsNetTrainer(config, options), epochs=config.epochs, out=config.out)
    losses = [record["train_loss"] for record in json.loads((tmp_path / "run" / "log.json").read_text())["epochs"]]
    assert len(losses) == 3 and losses[-1] < losses[0]

    built = build_head("obsnet", segmenter, result["checkpoint"])
    assert isinstance(built, ObsNet) and built.size == "light"
    assert 0.0 <= built.default_threshold <= 1.0
    other = BuiltinSegmenter()
    torch.nn.init.normal_(other.classifier.weight)
    other_path = tmp_path / "other.pt"
    save_checkpoint(other_path, other.state_dict(), kind="segmenter", name="builtin",
                    config={"input_size": [H, W]})
    with pytest.raises(CheckpointError, match="was trained on segmenter builtin@"):
        build_head("obsnet", build_segmenter("builtin", str(other_path)), result["checkpoint"])


def test_documented_command_line_flags():
    parser = argparse.ArgumentParser()
    add_config_arguments(parser.add_argument_group("obsnet"), ObsNetOptions, prefix="obsnet")
    args = parser.parse_args(["--obsnet-size", "light", "--obsnet-attack", "global",
                              "--obsnet-attack-target", "random", "--obsnet-mask", "square",
                              "--obsnet-epsilon", "0.05", "--obsnet-box", "0.25", "--obsnet-attack-prob", "0.5"])
    options = config_from_args(ObsNetOptions, args, prefix="obsnet")
    attack = options.attack_config()
    assert options.size == "light"
    assert (attack.mode, attack.target, attack.mask, attack.epsilon, attack.box, attack.probability) == (
        "global", "random", "square", 0.05, 0.25, 0.5)
    with pytest.raises(SystemExit):
        parser.parse_args(["--obsnet-attack", "everywhere"])
