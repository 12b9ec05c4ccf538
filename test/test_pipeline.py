# Copyright 2026 The ood_seg_node developers. Licensed under the Apache License, Version 2.0.
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ood_seg_node.heads import build_head
from ood_seg_node.pipeline import Pipeline, PipelineError, resolve_device
from ood_seg_node.segmenters import build_segmenter


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
    assert sum(o.area for o in result.obstacles) == int(result.mask.sum())
    assert {"preprocess", "segmenter", "head", "postprocess", "total"} <= set(result.timings_ms)


def test_optimised_path_equals_eager(segmenter):
    fast = Pipeline(segmenter, build_head("energy", segmenter), device="cpu", optimize=True)
    eager = Pipeline(segmenter, build_head("energy", segmenter), device="cpu", optimize=False)
    image = _image(64, 128, seed=3)
    a, b = fast.process(image), eager.process(image)
    assert fast.fast_path.frozen_shapes() == [((1, 3, 64, 128),)]  # the frozen path really ran
    np.testing.assert_allclose(a.score, b.score, atol=1e-3)
    assert (a.labels != b.labels).mean() < 1e-3


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
