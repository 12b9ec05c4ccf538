# Copyright 2026 The ood_seg_node developers. Licensed under the Apache License, Version 2.0.
"""DiCNet head: zero discrepancy for a perfect student, batch-independent scores, distillation, training."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from torch import nn

from ood_seg_node.checkpoints import CheckpointError, save_checkpoint
from ood_seg_node.heads import build_head
from ood_seg_node.heads.dicnet import DiCNet, FeatureStandardiser
from ood_seg_node.segmenters import build_segmenter
from ood_seg_node.segmenters.builtin import BuiltinSegmenter
from ood_seg_node.segmenters.torchvision_models import TorchvisionSegmenter
from ood_seg_node.training.common import Batch, HeadTrainingConfig
from ood_seg_node.training.dicnet import (
    DiCNetOptions,
    DiCNetTrainer,
    ValidationPass,
    anomaly_vs_misclassified,
    calibrate,
    distillation_loss,
    inlier_cells,
    misclassified_inlier_fpr,
    neck_batchnorm,
    new_head,
)
from ood_seg_node.training.loop import fit


def _images(n: int, height: int = 64, width: int = 128, seed: int = 0) -> torch.Tensor:
    """Smooth random pictures (low-resolution noise upsampled), closer to photos than white noise."""
    coarse = torch.rand(n, 3, height // 8, width // 8, generator=torch.Generator().manual_seed(seed))
    return torch.nn.functional.interpolate(coarse, size=(height, width), mode="bilinear", align_corners=False)


def _randomise_batchnorms(module: nn.Module, seed: int = 0) -> None:
    """Non-trivial BN statistics and affine parameters, as a trained network has."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for bn in module.modules():
            if isinstance(bn, nn.BatchNorm2d):
                n = bn.num_features
                bn.running_mean.copy_(torch.randn(n, generator=generator) * 0.3)
                bn.running_var.copy_(torch.rand(n, generator=generator) + 0.5)
                sign = torch.sign(torch.randn(n, generator=generator))
                bn.weight.copy_((torch.rand(n, generator=generator) + 0.5) * sign)
                bn.bias.copy_(torch.randn(n, generator=generator) * 0.5)


def _builtin() -> BuiltinSegmenter:
    torch.manual_seed(0)
    segmenter = BuiltinSegmenter()
    _randomise_batchnorms(segmenter)
    return segmenter.eval()


def _lraspp() -> TorchvisionSegmenter:
    torch.manual_seed(0)
    return TorchvisionSegmenter("lraspp_mobilenet_v3_large").eval()


class TeacherCopy(nn.Module):
    """A 'student' that is the teacher: the segmenter's own standardised neck."""

    def __init__(self, segmenter, standardiser: FeatureStandardiser) -> None:
        super().__init__()
        self.segmenter = segmenter
        self.standardiser = standardiser

    def forward(self, rgb01: torch.Tensor) -> torch.Tensor:
        return self.standardiser(self.segmenter.run(rgb01).features["neck"])


@pytest.mark.parametrize("make_segmenter", [_builtin, _lraspp], ids=["builtin", "lraspp"])
def test_discrepancy_is_zero_when_the_student_copies_the_teacher(make_segmenter):
    segmenter = make_segmenter()
    images = _images(2)
    with torch.inference_mode():
        out = segmenter.run(images)
        untrained = new_head(segmenter, out.features["neck"], images.shape[-2]).eval()
        copy = DiCNet(TeacherCopy(segmenter, untrained.standardiser), untrained.standardiser).eval()
        copy.fast_path.enabled = False  # the traced CPU path matches eager to 1e-4, not bit for bit
        zero = copy.discrepancy(images, out)
        nonzero = untrained.discrepancy(images, out)
        score = untrained.score(images, out)
    assert zero.shape == out.features["neck"].shape[:1] + out.features["neck"].shape[2:]
    assert float(zero.abs().max()) < 1e-10
    assert float(nonzero.mean()) > 1e-3  # an untrained student does disagree
    assert score.shape == out.logits.shape[:1] + out.logits.shape[2:]
    assert torch.isfinite(score).all()


def test_teacher_target_is_the_neck_bn_standardised_pre_activation():
    segmenter = _builtin()
    bn = neck_batchnorm(segmenter)
    assert bn is segmenter.decoder[-1][1]
    captured = {}
    hook = segmenter.decoder[-1][0].register_forward_hook(lambda m, i, o: captured.update(conv=o))
    images = _images(1)
    with torch.inference_mode():
        out = segmenter.run(images)
        head = new_head(segmenter, out.features["neck"], images.shape[-2])
        target = head.teacher_features(out)
    hook.remove()
    assert head.config["standardisation"] == "neck_bn"
    shape = (1, -1, 1, 1)
    z_hat = (captured["conv"] - bn.running_mean.view(shape)) / torch.sqrt(bn.running_var.view(shape) + bn.eps)
    active = out.features["neck"] > 0
    signed = z_hat * torch.sign(bn.weight).view(shape)
    torch.testing.assert_close(target[active], signed[active], rtol=1e-4, atol=1e-4)
    clipped = (-bn.bias / bn.weight.abs()).view(shape).expand_as(target)
    torch.testing.assert_close(target[~active], clipped[~active])


def test_torchvision_lraspp_uses_measured_standardisation():
    segmenter = _lraspp()
    images = _images(2)
    with torch.inference_mode():
        neck = segmenter.run(images).features["neck"]
        head = new_head(segmenter, neck, images.shape[-2], calibration_features=[neck])
        standardised = head.standardiser(neck)
    assert neck_batchnorm(segmenter) is None
    assert head.config["standardisation"] == "measured"
    assert head.config["student"]["neck_stride"] == 8
    channel_means = standardised.transpose(0, 1).reshape(neck.shape[1], -1).mean(dim=1)
    assert float(channel_means.abs().max()) < 1e-3


def test_frozen_cpu_student_matches_eager():
    segmenter = _builtin()
    images = _images(2)
    with torch.inference_mode():
        out = segmenter.run(images)
        head = new_head(segmenter, out.features["neck"], images.shape[-2]).eval()
        fast = head.discrepancy(images, out)
        assert head.fast_path.frozen_shapes() == [(tuple(images.shape),)]
        head.fast_path.enabled = False
        eager = head.discrepancy(images, out)
    torch.testing.assert_close(fast, eager, rtol=1e-3, atol=1e-4)
    head.train()
    assert not head.fast_path.frozen_shapes()  # weights may change: the frozen copy is dropped


def test_scores_are_fixed_after_calibration_whatever_the_batch():
    segmenter = _builtin()
    images = _images(3)
    odd_one = torch.ones(1, 3, 64, 128)  # a frame unlike the others; per-batch min-max would shift them
    with torch.inference_mode():
        head = new_head(segmenter, segmenter.run(images[:1]).features["neck"], 64).eval()
        raw = head.discrepancy(images, segmenter.run(images))
        calibration = calibrate(head, raw)
        alone = head.score(images[:1], segmenter.run(images[:1]))
        batch = torch.cat([odd_one, images[2:], images[:1]])
        together = head.score(batch, segmenter.run(batch))[2:3]
        mixed = torch.cat([images, odd_one])
        again = head.score(mixed, segmenter.run(mixed))[:1]
        recalibrated = head.normalise(raw)
    torch.testing.assert_close(alone, together, rtol=1e-3, atol=1e-4)  # batch size changes the kernels
    torch.testing.assert_close(alone, again, rtol=1e-3, atol=1e-4)
    # the calibration maps the inlier median to 0 and the 99th percentile to 1
    assert float(recalibrated.median()) == pytest.approx(0.0, abs=1e-3)
    assert float(torch.quantile(recalibrated.flatten(), 0.99)) == pytest.approx(1.0, abs=1e-2)
    assert calibration["scale"] > 0


def test_a_short_distillation_reduces_the_loss():
    segmenter = _builtin()
    images = _images(4, seed=1)
    torch.manual_seed(0)
    with torch.no_grad():
        out = segmenter.run(images)
        head = new_head(segmenter, out.features["neck"], images.shape[-2])
        teacher = head.teacher_features(out)
    mask = torch.ones(teacher.shape[0], *teacher.shape[2:], dtype=torch.bool)
    optimizer = torch.optim.Adam(head.student.parameters(), lr=3e-3)
    head.train()
    losses = []
    for _ in range(25):
        loss = distillation_loss(head, images, teacher, mask)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    head.eval()
    with torch.no_grad():
        final = float(distillation_loss(head, images, teacher, mask))
    assert final < 0.7 * losses[0]


def test_only_inlier_cells_enter_the_loss():
    ood = torch.zeros(1, 8, 8, dtype=torch.long)
    semantic = torch.zeros(1, 8, 8, dtype=torch.long)
    ood[0, 0, 0] = 1  # anomaly in cell (0, 0)
    ood[0, 7, 7] = 255  # off-road pixel the anomaly metrics ignore, still a known class: kept
    semantic[0, 0, 7] = 255  # void in cell (0, 1)
    semantic[0, 6, 1] = 255  # void in cell (1, 0)
    cells = inlier_cells(Batch(torch.zeros(1, 3, 8, 8), semantic, ood), (2, 2))
    assert cells.tolist() == [[[False, False], [False, True]]]
    # the loss ignores whatever the student does on masked cells
    head = new_head(_builtin(), torch.zeros(1, 64, 2, 2), 8)
    teacher = torch.zeros(1, 64, 2, 2)
    student = torch.zeros(1, 64, 2, 2)
    student[..., 0, 0] = 100.0
    head.student_features = lambda images, size: student  # type: ignore[method-assign]
    assert float(distillation_loss(head, torch.zeros(1, 3, 8, 8), teacher, cells)) == 0.0


def test_misclassified_inlier_fpr_counts_flagged_wrong_pixels():
    ood = np.zeros((2, 4), dtype=np.uint8)
    ood[0, :2] = 1  # two anomaly pixels, scores 0.9 and 0.8 -> threshold 0.8 keeps both (TPR 100 %)
    semantic = np.zeros((2, 4), dtype=np.uint8)
    prediction = torch.zeros(2, 4, dtype=torch.long)
    prediction[1, :2] = 5  # two misclassified inlier pixels
    score = np.array([[0.9, 0.8, 0.1, 0.95], [0.85, 0.2, 0.1, 0.1]], dtype=np.float32)
    valid = ValidationPass(prediction=[prediction], ood=[ood], semantic=[semantic])
    result = misclassified_inlier_fpr([score], valid)
    assert result["threshold"] == pytest.approx(0.8)
    assert result["fpr_misclassified_inliers"] == pytest.approx(0.5)  # 0.85 flagged, 0.2 not
    assert result["fpr_correct_inliers"] == pytest.approx(1 / 4)  # 0.95 flagged of 0.1, 0.95, 0.1, 0.1
    assert result["pixels_misclassified_inliers"] == 2
    assert result["fpr_misclassified_inliers_whole_frame"] == pytest.approx(0.5)
    assert misclassified_inlier_fpr([score], valid, threshold=0.5)["fpr_misclassified_inliers"] == 0.5
    assert misclassified_inlier_fpr([score], valid, threshold=0.9)["fpr_misclassified_inliers"] == 0.0
    # anomalies (0.9, 0.8) against misclassified inliers (0.85, 0.2): 3 of 4 pairs ordered right
    assert anomaly_vs_misclassified([score], valid)["auroc"] == pytest.approx(0.75)


def test_train_head_writes_a_checkpoint_the_node_can_build(tmp_path, random_builtin_checkpoint):
    config = HeadTrainingConfig(head="dicnet", segmenter_checkpoint=random_builtin_checkpoint,
                                out=str(tmp_path / "run"), sequences=2, frames_per_sequence=2,
                                val_sequences=1, epochs=1, batch_size=2, height=64, width=128)
    summary = fit(DiCNetTrainer(config, DiCNetOptions(width=0.5, passes=1, bench_runs=1)), epochs=1, out=config.out)
    assert (tmp_path / "run" / "summary.json").is_file()
    log = json.loads((tmp_path / "run" / "log.json").read_text())
    assert len(log["epochs"]) == 1 and math.isfinite(log["epochs"][0]["val_loss"])
    validation = summary["validation"]
    for name in ("dicnet", "msp"):
        assert 0.0 <= validation[name]["at_tpr95"]["fpr_misclassified_inliers"] <= 1.0
        assert 0.0 <= validation[name]["anomaly_vs_misclassified"]["auroc"] <= 1.0
    assert summary["overhead"]["eager"]["overhead_ratio"] > 0
    assert summary["overhead"]["deployed"]["overhead_ratio"] > 0

    segmenter = build_segmenter("builtin", random_builtin_checkpoint)
    head = build_head("dicnet", segmenter, summary["checkpoint"])
    assert math.isfinite(head.default_threshold)
    images = _images(1)
    with torch.inference_mode():
        out = segmenter.run(images)
        score = head.score(images, out)
    assert score.shape == (1, *out.logits.shape[-2:]) and torch.isfinite(score).all()

    other = tmp_path / "other_segmenter.pt"
    torch.manual_seed(1)
    save_checkpoint(other, BuiltinSegmenter().state_dict(), kind="segmenter", name="builtin",
                    config={"input_size": [64, 128]})
    with pytest.raises(CheckpointError, match="trained on segmenter"):
        build_head("dicnet", build_segmenter("builtin", str(other)), summary["checkpoint"])


def test_train_head_on_a_torchvision_segmenter(tmp_path):
    torch.manual_seed(0)
    weights = tmp_path / "lraspp.pt"
    torch.save(TorchvisionSegmenter("lraspp_mobilenet_v3_large").model.state_dict(), weights)
    spec = "torchvision:lraspp_mobilenet_v3_large"
    config = HeadTrainingConfig(head="dicnet", segmenter=spec, segmenter_checkpoint=str(weights),
                                out=str(tmp_path / "run"), sequences=1, frames_per_sequence=2,
                                val_sequences=1, epochs=1, batch_size=2, height=64, width=128)
    summary = fit(DiCNetTrainer(config, DiCNetOptions(width=0.5, passes=1, bench_runs=0)), epochs=1, out=config.out)
    segmenter = build_segmenter(spec, str(weights))
    head = build_head("dicnet", segmenter, summary["checkpoint"])
    assert head.config["standardisation"] == "measured" and head.config["student"]["neck_stride"] == 8
    images = _images(1)
    with torch.inference_mode():
        out = segmenter.run(images)
        score = head.score(images, out)
    assert score.shape == (1, *out.logits.shape[-2:]) and torch.isfinite(score).all()
