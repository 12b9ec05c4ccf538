# Copyright 2026 The ood_seg_node developers. Licensed under the Apache License, Version 2.0.
from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
import torch

from ood_seg_node.heads import build_head
from ood_seg_node.pipeline import Pipeline, PipelineError, resolve_device
from ood_seg_node.segmenters import Segmenter, build_segmenter


@pytest.fixture(scope="module")
def segmenter(random_builtin_checkpoint):
    return build_segmenter("builtin", random_builtin_checkpoint)


def _image(height=96, width=160, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def test_outputs_have_input_size_and_types(segmenter):
    pipeline = Pipeline(segmenter, [build_head(n, segmenter) for n in ("msp", "energy")], device="cpu",
                        threshold=0.3, min_obstacle_area=1)
    result = pipeline.process(_image())
    assert result.labels.shape == result.score.shape == result.mask.shape == (96, 160)
    assert result.labels.dtype == np.uint8 and result.labels.max() < 19
    assert result.score.dtype == np.float32 and np.isfinite(result.score).all()
    assert set(result.scores) == {"msp", "energy"}
    np.testing.assert_array_equal(result.mask, result.score >= 0.3)
    # components at the native resolution, scaled: their area is the mask's up to the upsampling at the borders
    assert sum(o.area for o in result.obstacles) == pytest.approx(int(result.mask.sum()), rel=0.25, abs=200)
    assert {"preprocess", "segmenter", "head", "postprocess", "total"} <= set(result.timings_ms)


def test_optimised_path_equals_eager(segmenter):
    fast = Pipeline(segmenter, build_head("energy", segmenter), device="cpu", optimize=True)
    eager = Pipeline(segmenter, build_head("energy", segmenter), device="cpu", optimize=False)
    image = _image(64, 128, seed=3)
    a, b = fast.process(image), eager.process(image)
    assert fast.fast_path.frozen_shapes() == [((1, 3, 64, 128),)]  # the frozen path really ran
    np.testing.assert_allclose(a.score, b.score, atol=1e-3)
    assert (a.labels != b.labels).mean() < 1e-3


def test_large_networks_are_not_copied_for_the_fast_path(monkeypatch):
    """Above MAX_FROZEN_PARAMETERS the fast path runs eagerly: no deep copy, no frozen constants."""
    import torch

    from ood_seg_node import fastpath

    network = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU()).eval()
    small = fastpath.FastPath(network)
    with torch.no_grad():
        small(torch.rand(1, 3, 16, 16))
    assert small.frozen_shapes() == [((1, 3, 16, 16),)]
    monkeypatch.setattr(fastpath, "MAX_FROZEN_PARAMETERS", sum(p.numel() for p in network.parameters()) - 1)
    monkeypatch.setattr(fastpath.copy, "deepcopy", lambda *a, **k: pytest.fail("copied a large network"))
    large = fastpath.FastPath(network)
    with torch.no_grad():
        assert large(torch.rand(1, 3, 16, 16)).shape == (1, 8, 14, 14)
    assert large.frozen_shapes() == []


def test_scores_are_computed_at_native_resolution(segmenter):
    pipeline = Pipeline(segmenter, build_head("msp", segmenter), device="cpu", optimize=False)
    labels, scores, _ = pipeline.infer(_image(64, 128))
    assert labels.shape == scores["msp"].shape == (16, 32)


def test_bad_frames_raise_pipeline_error(segmenter):
    pipeline = Pipeline(segmenter, build_head("msp", segmenter), device="cpu")
    with pytest.raises(PipelineError, match="empty image"):
        pipeline.process(np.zeros((0, 10, 3), np.uint8))
    with pytest.raises(PipelineError, match="HxWx3 uint8"):
        pipeline.process(np.zeros((10, 10), np.uint8))


def test_non_finite_scores_are_refused(segmenter):
    head = build_head("energy", segmenter)
    head.score = lambda image, out: torch.full(out.logits[:, 0].shape, math.nan)
    pipeline = Pipeline(segmenter, head, device="cpu")
    with pytest.raises(PipelineError, match="non-finite"):
        pipeline.process(_image())
    head.score = lambda image, out: torch.zeros(out.logits[:, 0].shape)  # the next frame goes through
    result = pipeline.process(_image(seed=1))
    assert result.score.shape == (96, 160) and not result.score.any()


def test_default_threshold_comes_from_the_head(segmenter):
    pipeline = Pipeline(segmenter, build_head("msp", segmenter), device="cpu")
    assert pipeline.effective_threshold == 0.5


def test_device_resolution():
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type in ("cpu", "cuda")
    with pytest.raises(ValueError, match="valid: auto, cpu, cuda"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="not available"):
            resolve_device("cuda:0")


def test_variants_of_one_head_are_keyed_by_their_names(segmenter):
    heads = [build_head("msp", segmenter), build_head("msp", segmenter)]
    pipeline = Pipeline(segmenter, heads, device="cpu", names=["msp:a", "msp:b"])
    result = pipeline.process(np.zeros((32, 64, 3), np.uint8))
    assert set(result.scores) == set(result.native_scores) == {"msp:a", "msp:b"}
    np.testing.assert_array_equal(result.score, result.scores["msp:a"])
    with pytest.raises(ValueError, match="one distinct name per head"):
        Pipeline(segmenter, heads, device="cpu")  # both would be "msp"


class _KnownLogits(Segmenter):
    """A segmenter whose logits are fixed, whatever the image: confident 4x4 blocks of one random vector each."""

    def __init__(self) -> None:
        super().__init__("known", {})
        blocks = 4.0 * torch.randn(1, 19, 3, 5, generator=torch.Generator().manual_seed(0))
        self.register_buffer("logits", blocks.repeat_interleave(4, dim=2).repeat_interleave(4, dim=3))

    def forward_taps(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return (self.logits.expand(x.shape[0], -1, -1, -1),)


def test_input_score_resolution_is_the_official_order():
    """``input``: logits upsampled first, then argmax and score; ``native``: score, then upsample."""
    import torch.nn.functional as F
    from scipy import ndimage

    known = _KnownLogits()
    image = _image()
    size = image.shape[:2]
    native = Pipeline(known, build_head("msp", known), device="cpu", optimize=False)
    official = Pipeline(known, build_head("msp", known), device="cpu", optimize=False, score_resolution="input")
    logits = known.logits
    upsampled = F.interpolate(logits, size=size, mode="bilinear", align_corners=False)
    expected_input = 1.0 - torch.softmax(upsampled, dim=1).amax(dim=1)[0]
    expected_native = F.interpolate((1.0 - torch.softmax(logits, dim=1).amax(dim=1))[:, None], size=size,
                                    mode="bilinear", align_corners=False)[0, 0]
    a, b = official.process(image), native.process(image)
    np.testing.assert_allclose(a.score, expected_input.numpy(), atol=1e-5)
    np.testing.assert_allclose(b.score, expected_native.numpy(), atol=1e-5)
    assert np.abs(a.score - b.score).max() > 1e-2  # msp is not linear: the order shows
    np.testing.assert_array_equal(a.labels, upsampled[0].argmax(dim=0).numpy())
    # Away from class boundaries (every native neighbour of a pixel's source has one class) the labels agree.
    native_labels = logits[0].argmax(dim=0).numpy()
    uniform = ndimage.minimum_filter(native_labels, 3) == ndimage.maximum_filter(native_labels, 3)
    interior = cv2.resize(uniform.astype(np.uint8), size[::-1], interpolation=cv2.INTER_NEAREST).astype(bool)
    assert interior.any()
    np.testing.assert_array_equal(a.labels[interior], b.labels[interior])


def test_invalid_score_resolution_is_refused(segmenter):
    with pytest.raises(ValueError, match="valid: native, input"):
        Pipeline(segmenter, build_head("msp", segmenter), device="cpu", score_resolution="full")
