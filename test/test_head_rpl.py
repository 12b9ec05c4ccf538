# Copyright 2026 The ood_seg_node developers. Licensed under the Apache License, Version 2.0.
"""Tests of the RPL head, its losses, the outlier sources and its trainer (tiny models and frames)."""

from __future__ import annotations

import json
import math

import cv2
import numpy as np
import pytest
import torch

from ood_seg_node.checkpoints import CheckpointError, save_checkpoint
from ood_seg_node.heads import build_head
from ood_seg_node.heads.rpl import RPLHead, gaussian_blur
from ood_seg_node.pipeline import Pipeline
from ood_seg_node.segmenters import build_segmenter
from ood_seg_node.segmenters.builtin import BuiltinSegmenter
from ood_seg_node.training.common import HeadTrainingConfig
from ood_seg_node.training.loop import fit
from ood_seg_node.training.outliers import FolderOutliers, OutlierError, context_batch, paste_outliers
from ood_seg_node.training.rpl import (
    ProjectionHead,
    RPLOptions,
    RPLTrainer,
    corocl_loss,
    info_nce,
    labels_at,
    positive_energy_loss,
    rpl_losses,
)

torch.set_num_threads(1)


def _builtin() -> BuiltinSegmenter:
    torch.manual_seed(0)
    return BuiltinSegmenter().eval()


def _head(segmenter, scale: float = 1.0) -> RPLHead:
    """An RPL head whose residual is far from zero, so the augmented path really differs."""
    torch.manual_seed(1)
    head = RPLHead(segmenter)
    torch.nn.init.normal_(head.module.to_residual.weight, std=scale)
    return head.eval()


def _outlier_folder(root, count: int = 3):
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    rng = np.random.default_rng(0)
    for i in range(count):
        image = rng.integers(0, 255, size=(40, 60, 3), dtype=np.uint8)
        mask = np.zeros((40, 60), np.uint8)
        cv2.circle(mask, (30, 20), 12 + i, 255, -1)
        cv2.imwrite(str(root / "images" / f"obj{i}.png"), image)
        cv2.imwrite(str(root / "masks" / f"obj{i}.png"), mask)
    return root


def test_inlier_predictions_identical_with_and_without_rpl():
    segmenter = _builtin()
    head = _head(segmenter)
    torch.manual_seed(2)
    images = torch.rand(2, 3, 64, 128)
    with torch.inference_mode():
        out = segmenter.run(images)
        before = out.logits.clone()
        score = head.score(images, out)
        augmented = head.augmented_logits(out)
    assert torch.equal(out.logits, before)  # the head never alters the segmentation path
    assert score.shape == (2, *before.shape[-2:]) and bool(torch.isfinite(score).all())
    # the residual is active (the augmented path differs), yet the published labels are the original ones
    assert not torch.equal(augmented.argmax(1), before.argmax(1))
    rgb = (images[0].permute(1, 2, 0).numpy() * 255).astype(np.uint8)
    msp = build_head("msp", segmenter)
    options = {"device": "cpu", "optimize": False, "inference_size": (64, 128)}
    with_rpl = Pipeline(segmenter, [head], **options).process(rgb)
    without = Pipeline(segmenter, [msp], **options).process(rgb)
    assert np.array_equal(with_rpl.labels, without.labels)


def test_zero_initialised_module_reproduces_the_energy_score():
    segmenter = _builtin()
    head = RPLHead(segmenter).eval()  # to_residual starts at zero
    images = torch.rand(1, 3, 64, 128)
    with torch.inference_mode():
        out = segmenter.run(images)
        expected = gaussian_blur(-torch.logsumexp(out.logits, dim=1))
        assert torch.allclose(head.score(images, out), expected, rtol=1e-4, atol=1e-4)


def test_works_on_a_torchvision_segmenter():
    from ood_seg_node.segmenters.torchvision_models import TorchvisionSegmenter

    torch.manual_seed(0)
    segmenter = TorchvisionSegmenter("lraspp_mobilenet_v3_large").eval()
    head = _head(segmenter, scale=0.5)
    images = torch.rand(1, 3, 64, 96)
    with torch.inference_mode():
        out = segmenter.run(images)
        before = out.logits.clone()
        score = head.score(images, out)
    assert score.shape == (1, *out.logits.shape[-2:])
    assert bool(torch.isfinite(score).all())
    assert torch.equal(out.logits, before)


def test_fast_path_equals_classifier_on_neck_plus_residual():
    from ood_seg_node.segmenters.torchvision_models import TorchvisionSegmenter

    torch.manual_seed(0)
    for segmenter in (_builtin(), TorchvisionSegmenter("lraspp_mobilenet_v3_large").eval()):
        head = _head(segmenter, scale=0.5)
        assert head._pointwise_affine
        with torch.inference_mode():
            out = segmenter.run(torch.rand(1, 3, 64, 96))
            fast = head.augmented_logits(out)
            neck = out.features["neck"]
            residual = head.module.residual(head.module.encode(out.features["stage3"]), neck.shape[-2:])
            assert torch.allclose(fast, segmenter.classify(neck + residual), rtol=1e-4, atol=1e-4)


def test_non_pointwise_classifier_uses_the_general_path():
    class Smoothing(BuiltinSegmenter):
        def classify(self, neck):
            return super().classify(torch.nn.functional.avg_pool2d(neck, 3, 1, 1))

    torch.manual_seed(0)
    segmenter = Smoothing().eval()
    head = _head(segmenter)
    assert not head._pointwise_affine
    with torch.inference_mode():
        out = segmenter.run(torch.rand(1, 3, 64, 128))
        neck = out.features["neck"]
        residual = head.module.residual(head.module.encode(out.features["stage3"]), neck.shape[-2:])
        head.fast_path.enabled = False  # bit-equal only to the eager residual
        assert torch.equal(head.augmented_logits(out), segmenter.classify(neck + residual))


def test_gaussian_blur_keeps_constants_and_spreads_peaks():
    flat = torch.full((1, 10, 12), 3.0)
    assert torch.allclose(gaussian_blur(flat), flat)
    peak = torch.zeros(1, 11, 11)
    peak[0, 5, 5] = 1.0
    blurred = gaussian_blur(peak)
    assert math.isclose(float(blurred.sum()), 1.0, rel_tol=1e-5)
    assert float(blurred[0, 5, 5]) == pytest.approx(1 / (2 * math.pi), rel=0.05)
    assert gaussian_blur(torch.rand(1, 2, 3)).shape == (1, 2, 3)  # too small to reflect: replicated


def test_checkpoint_round_trip_and_segmenter_check(tmp_path):
    seg_path = tmp_path / "seg.pt"
    save_checkpoint(seg_path, _builtin().state_dict(), kind="segmenter", name="builtin",
                    config={"input_size": [64, 128]})
    segmenter = build_segmenter("builtin", str(seg_path))
    head = _head(segmenter)
    path = tmp_path / "rpl.pt"
    save_checkpoint(path, head.state_dict(), kind="head", name="rpl", config=head.config,
                    segmenter=segmenter.identity, default_threshold=-1.5)
    loaded = build_head("rpl", segmenter, str(path))
    assert loaded.default_threshold == -1.5
    images = torch.rand(1, 3, 64, 128)
    with torch.inference_mode():
        out = segmenter.run(images)
        assert torch.equal(loaded.score(images, out), head.score(images, out))
    other_path = tmp_path / "other.pt"
    torch.manual_seed(5)
    save_checkpoint(other_path, BuiltinSegmenter().state_dict(), kind="segmenter", name="builtin")
    with pytest.raises(CheckpointError, match="trained on segmenter"):
        build_head("rpl", build_segmenter("builtin", str(other_path)), str(path))


def test_info_nce_matches_the_definition():
    torch.manual_seed(0)
    anchors = torch.nn.functional.normalize(torch.randn(4, 8), dim=1)
    extra = torch.nn.functional.normalize(torch.randn(3, 8), dim=1)
    contrast = torch.cat([anchors, extra])
    a_labels = torch.tensor([1, 0, 1, 0])
    c_labels = torch.cat([a_labels, torch.tensor([1, 1, 0])])
    expected = []
    for i in range(4):
        sims = contrast @ anchors[i] / 0.1
        negatives = sum(math.exp(float(sims[k])) for k in range(7) if c_labels[k] != a_labels[i])
        terms = [float(sims[j]) - math.log(math.exp(float(sims[j])) + negatives)
                 for j in range(7) if j != i and c_labels[j] == a_labels[i]]
        expected.append(-sum(terms) / len(terms))
    loss = info_nce(anchors, a_labels, contrast, c_labels, 0.1)
    assert float(loss) == pytest.approx(np.mean(expected), rel=1e-4)


def test_corocl_loss_is_lower_when_outliers_and_inliers_separate():
    torch.manual_seed(0)
    labels = torch.zeros(2, 8, 8, dtype=torch.long)
    labels[:, 2:5, 2:5] = 1
    labels[:, 0, :] = 255

    def embeddings(separated: bool) -> torch.Tensor:
        noise = 0.1 * torch.randn(2, 16, 8, 8)
        if not separated:
            return torch.randn(2, 16, 8, 8)
        centre_in, centre_out = torch.zeros(16), torch.zeros(16)
        centre_in[0], centre_out[1] = 1.0, 1.0
        outlier = (labels == 1)[:, None]
        base = torch.where(outlier, centre_out[None, :, None, None], centre_in[None, :, None, None])
        return base + noise

    generator = torch.Generator().manual_seed(0)
    separated = corocl_loss(embeddings(True), labels, embeddings(True), labels, generator=generator)
    mixed = corocl_loss(embeddings(False), labels, embeddings(False), labels, generator=generator)
    assert float(separated) < 0.1 < float(mixed)
    no_outliers = torch.zeros_like(labels)
    assert float(corocl_loss(embeddings(False), no_outliers, embeddings(False), labels)) == 0.0


def test_positive_energy_loss_only_penalises_positive_logsumexp():
    outlier = torch.ones(1, 2, 2, dtype=torch.bool)
    assert float(positive_energy_loss(torch.full((1, 19, 2, 2), -10.0), outlier)) == 0.0
    logits = torch.full((1, 19, 2, 2), 2.0, requires_grad=True)
    loss = positive_energy_loss(logits, outlier)
    loss.backward()
    assert float(loss.detach()) == pytest.approx(2.0 + math.log(19), rel=1e-5)
    assert bool((logits.grad > 0).all())  # descending lowers the logits of outlier pixels


def test_labels_at_area_rule():
    labels = torch.zeros(1, 8, 8, dtype=torch.long)
    labels[0, :4, :4] = 1  # one full cell of outliers
    labels[0, 4:6, 4:8] = 1  # half a cell -> outlier
    labels[0, 0:1, 4:8] = 255  # partly void -> ignored
    small = labels_at(labels, (2, 2))
    assert small.tolist() == [[[1, 255], [0, 1]]]


def test_paste_outliers_changes_only_pasted_pixels(tmp_path):
    source = FolderOutliers(_outlier_folder(tmp_path / "objects"))
    images = torch.rand(2, 3, 64, 128)
    semantic = torch.zeros(2, 64, 128, dtype=torch.long)
    ood = torch.zeros(2, 64, 128, dtype=torch.long)
    originals = images.clone()
    rng = np.random.default_rng(0)
    new_images, new_semantic, new_ood = paste_outliers(images, semantic, ood, source, rng, scales=(0.3,),
                                                       per_image=(2, 2))
    assert torch.equal(images, originals)  # inputs untouched
    pasted = new_ood == 1
    assert int(pasted.sum()) > 100
    assert torch.equal((new_semantic == 255), pasted)
    assert torch.equal(new_images.permute(1, 0, 2, 3)[:, ~pasted], originals.permute(1, 0, 2, 3)[:, ~pasted])
    ctx_images, ctx_labels = context_batch(source, np.random.default_rng(1), 2, 64, 128)
    assert ctx_images.shape == (2, 3, 64, 128) and set(ctx_labels.unique().tolist()) == {0, 1}


def test_outlier_folder_errors_name_the_problem(tmp_path):
    with pytest.raises(OutlierError, match="not found"):
        FolderOutliers(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(OutlierError, match="no image/mask pairs"):
        FolderOutliers(tmp_path / "empty")


def test_short_training_reduces_the_losses():
    segmenter = _builtin()
    for parameter in segmenter.parameters():
        parameter.requires_grad_(False)
    torch.manual_seed(3)
    head = RPLHead(segmenter).train()
    projector = ProjectionHead(head.width)
    images = torch.rand(2, 3, 64, 128)
    labels = torch.zeros(2, 64, 128, dtype=torch.long)
    labels[:, 20:44, 30:60] = 1
    images[:, :, 20:44, 30:60] = torch.tensor([1.0, 0.0, 1.0])[:, None, None]
    ctx_images = torch.rand(1, 3, 64, 128)
    ctx_labels = torch.zeros(1, 64, 128, dtype=torch.long)
    ctx_labels[:, 10:40, 60:100] = 1
    optimizer = torch.optim.Adam(list(head.parameters()) + list(projector.parameters()), lr=3e-3)
    history = []
    for _ in range(25):
        losses = rpl_losses(segmenter, head, projector, images, labels, ctx_images, ctx_labels,
                            energy_weight=1.0, generator=torch.Generator().manual_seed(0))
        optimizer.zero_grad()
        losses["total"].backward()
        optimizer.step()
        history.append({k: float(v.detach()) for k, v in losses.items()})
    assert history[-1]["total"] < 0.7 * history[0]["total"]
    assert history[-1]["energy"] < history[0]["energy"]
    assert history[-1]["corocl"] < history[0]["corocl"]


@pytest.mark.parametrize("corocl", ["on", "off"])
def test_train_head_end_to_end(tmp_path, corocl):
    seg_path = tmp_path / "seg.pt"
    save_checkpoint(seg_path, _builtin().state_dict(), kind="segmenter", name="builtin",
                    config={"input_size": [64, 128]})
    config = HeadTrainingConfig(head="rpl", segmenter_checkpoint=str(seg_path), out=str(tmp_path / "run"),
                                sequences=2, frames_per_sequence=2, val_sequences=1, epochs=1, batch_size=2,
                                height=64, width=128)
    result = fit(RPLTrainer(config, RPLOptions(corocl=corocl)), epochs=1, out=config.out)
    log = json.loads((tmp_path / "run" / "log.json").read_text())
    assert 0.0 <= log["epochs"][0]["val_ap"] <= 1.0
    assert ("train_corocl" in log["epochs"][0]) == (corocl == "on")
    segmenter = build_segmenter("builtin", str(seg_path))
    head = build_head("rpl", segmenter, result["checkpoint"])
    assert math.isfinite(head.default_threshold)
