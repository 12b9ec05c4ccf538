# Copyright 2026 The ood_seg_node developers. Licensed under the Apache License, Version 2.0.
"""The SMIYC evaluator rules, one hand-computed case each (official: SegmentMeIfYouCan/road-anomaly-benchmark)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import ndimage
from sklearn.metrics import average_precision_score

from ood_seg_node.evaluation.metrics import EvaluationError
from ood_seg_node.evaluation.smiyc_protocol import (
    SMIYC_SIOU_THRESHOLDS,
    SmiycPixelMetric,
    SmiycSegmentMetric,
    _class_quantiles,
    _curve_metrics,
    _frame_bins,
    _frame_segments,
    _pooled_points,
)


def row(*values: float) -> np.ndarray:
    return np.array([values], dtype=np.float64)


def labels(*values: int) -> np.ndarray:
    return np.array([values], dtype=np.uint8)


def pixel_metric(*frames: tuple[np.ndarray, np.ndarray]) -> SmiycPixelMetric:
    metric = SmiycPixelMetric()
    for score, label in frames:
        metric.update(score, label)
    return metric


# ---------------------------------------------------------------- pixel metric: per-frame bins


def test_frame_bins_tiny_frame_edges_and_counts():
    # vmin 0.1, vmax 0.9: eps = max(0.8 * 0.01, 0.01) = 0.01; quantiles: all 2 positives, all 3 negatives.
    edges, tp, fp = _frame_bins(np.array([0.8, 0.9]), np.array([0.1, 0.2, 0.5]))
    # 7 edges (2 outer + 2 + 3); the top one (0.91) is no threshold, so 6 lower edges, highest first.
    np.testing.assert_allclose(edges, [0.9, 0.8, 0.5, 0.2, 0.1, 0.09], rtol=0, atol=1e-15)
    assert tp.tolist() == [1, 1, 0, 0, 0, 0]
    assert fp.tolist() == [0, 0, 1, 1, 1, 0]  # the bottom bin [vmin - eps, vmin) is always empty


def test_frame_bins_eps_follows_the_range_and_void_is_ignored():
    metric = pixel_metric((row(2.0, 0.0, 50.0), labels(1, 0, 255)))  # the void 50.0 widens nothing
    edges, tp, fp = metric._arrays()
    np.testing.assert_allclose(edges, [2.0, 0.0, -0.02])  # eps = 0.01 * range 2
    assert (tp.tolist(), fp.tolist()) == ([1, 0, 0], [0, 1, 0])


def test_outer_edges_in_float64_from_float16_scores():
    # numpy 1.23 promotes vmin - eps to float64; the float16 value itself is used, as given.
    metric = pixel_metric((np.array([[0.1, 0.7]], dtype=np.float16), labels(0, 1)))
    edges, _, _ = metric._arrays()
    vmin, vmax = float(np.float16(0.1)), float(np.float16(0.7))
    assert edges[-1] == vmin - max((vmax - vmin) * 0.01, 0.01)


def test_frame_bins_edge_count_and_interpolated_quantiles():
    rng = np.random.default_rng(0)
    pos, neg = rng.uniform(0.6, 1.0, 500), rng.uniform(0.0, 0.5, 1000)
    edges, tp, fp = _frame_bins(pos, neg)
    assert edges.size == 384 + 384 + 2 - 1  # 770 distinct edges, all but the top are thresholds
    expected = np.sort(np.concatenate([np.quantile(pos, np.linspace(0, 1, 384)),
                                       np.quantile(neg, np.linspace(0, 1, 384))]))
    np.testing.assert_allclose(np.sort(edges)[1:], expected, rtol=0, atol=1e-15)
    full = np.concatenate([edges[::-1], [pos.max() + 0.01]])
    assert tp[::-1].tolist() == np.histogram(pos, bins=full)[0].tolist()  # most positives lie inside bins
    assert fp[::-1].tolist() == np.histogram(neg, bins=full)[0].tolist()
    assert (tp.sum(), fp.sum()) == (500, 1000)


def test_quantiles_take_the_difference_in_the_input_dtype():
    # numpy 1.23.3's np.quantile gives 0.002710982651374483 here: b - a = 1 - 0.0001 rounds to 1.0 in float16
    # before the float64 interpolation (the float64 difference would give 0.0027107215114423205).
    values = np.array([0.0001] * 2 + [1.0] * 383, dtype=np.float16)
    assert _class_quantiles(values)[1] == 0.002710982651374483


def test_bin_membership_is_score_ge_lower_edge():
    # The negative 0.5 equals the positive quantile 0.5: it counts at threshold 0.5 (score >= edge).
    edges, tp, fp = _frame_bins(np.array([0.5]), np.array([0.5, 0.2]))
    np.testing.assert_allclose(edges, [0.5, 0.2, 0.19])
    assert (tp.tolist(), fp.tolist()) == ([1, 0, 0], [1, 1, 0])


# ---------------------------------------------------------------- pixel metric: pooled curve


def test_pooling_two_frames_ap_auroc_fpr95_best_f1():
    a = (row(0.9, 0.1), labels(1, 0))  # bins at 0.9 (1 pos), 0.1 (1 neg), 0.09 (empty)
    b = (row(0.6, 0.7), labels(1, 0))  # bins at 0.7 (1 neg), 0.6 (1 pos), 0.59 (empty)
    got = pixel_metric(a, b).compute()
    # Points (tp, fp): origin, (1,0) at 0.9, (1,1) at 0.7, (2,1) at 0.6, (2,2) at 0.1; P = N = 2.
    assert got["ap"] == pytest.approx(0.5 * 1 + 0.5 * 2 / 3, abs=1e-15)  # right steps, no trapezoid
    assert got["auroc"] == pytest.approx(0.75, abs=1e-15)
    assert (got["fpr95"], got["fpr95_threshold"]) == (0.5, 0.6)  # first point with TPR >= 0.95
    assert got["best_f1"] == pytest.approx(0.8) and got["best_f1_threshold"] == 0.6  # 2*2 / (4 + 1 + 0)
    assert (got["pixels_in"], got["pixels_out"], got["frames"]) == (2, 2, 2)
    assert pixel_metric(b, a).compute() == got  # frame order does not matter


def test_repeated_thresholds_collapse_to_their_last_occurrence():
    # 0.5 is a bin edge of both frames: A's negative and B's positive join one point, (2, 1).
    a = (row(0.9, 0.5), labels(1, 0))
    b = (row(0.5, 0.1), labels(1, 0))
    metric = pixel_metric(a, b)
    t, tp, fp = _pooled_points(*metric._arrays(), 2, 2)
    np.testing.assert_allclose(t, [1.9, 0.9, 0.9, 0.5, 0.49, 0.1, 0.09])  # origin at max + 1, index 0 twice
    assert tp.tolist() == [0, 1, 1, 2, 2, 2, 2]
    assert fp.tolist() == [0, 0, 0, 1, 1, 2, 2]
    assert metric.compute()["ap"] == pytest.approx(5 / 6, abs=1e-15)


def test_top_threshold_tie_keeps_the_partial_index0_point():
    # Both frames' top bin sits at 0.9: A's holds (1 pos, 1 neg), B's (1 pos). pcc curves_from_cmats keeps
    # index 0, so the first tied bin becomes a point of its own. Ours puts the smallest bin first (B):
    # points origin, (1,0), (2,1), (2,3) -> AP = 0.5 * 1 + 0.5 * 2/3. Fully collapsed it would be 2/3, and
    # with A first (one official quicksort order) 0.5 * 0.5 + 0.5 * 2/3.
    a = (row(0.9, 0.9, 0.1), labels(1, 0, 0))
    b = (row(0.9, 0.1), labels(1, 0))
    for frames in ((a, b), (b, a)):
        assert pixel_metric(*frames).compute()["ap"] == pytest.approx(5 / 6, abs=1e-15)


def test_auroc_trapezoid_starts_at_the_prepended_origin():
    # First point (1 pos, 1 neg) at 0.9: from the origin, the trapezoid adds 0.5 * (0 + 1) / 2.
    got = pixel_metric((row(0.9, 0.9, 0.1), labels(1, 0, 0))).compute()
    assert got["auroc"] == pytest.approx(0.25 + 0.5, abs=1e-15)
    assert got["ap"] == pytest.approx(0.5)


def test_fpr95_is_the_first_point_reaching_095():
    pos = np.round(0.30 + 0.01 * np.arange(20), 2)  # 20 positives 0.30 ... 0.49
    neg = np.array([0.55, 0.45, 0.305, 0.1])
    score = np.concatenate([pos, neg])[None]
    label = np.concatenate([np.ones(20), np.zeros(4)]).astype(np.uint8)[None]
    got = pixel_metric((score, label)).compute()
    # TPR 19/20 first at 0.31 (FPR 2/4); the next point, 0.305, also has TPR 0.95 but FPR 3/4.
    assert got["fpr95"] == 0.5
    assert got["fpr95_threshold"] == pytest.approx(0.31, abs=1e-12)


def test_fpr95_without_a_point_at_095():
    # Unreachable on a pooled curve (its end point has TPR 1); pcc's fallback: FPR 1.0 at threshold 0.0.
    got = _curve_metrics(np.array([2.0, 1.0, 0.5]), np.array([0.0, 5.0, 9.0]), np.array([0.0, 1.0, 3.0]), 10, 10)
    assert (got["fpr95"], got["fpr95_threshold"]) == (1.0, 0.0)
    assert got["best_f1"] == pytest.approx(18 / 22) and got["best_f1_threshold"] == 0.5


def test_pixel_metric_guards():
    metric = SmiycPixelMetric()
    metric.update(row(0.5, 0.2), labels(255, 255))  # no ROI pixel: skipped (the official code crashes)
    assert metric.frames == 0 and np.isnan(metric.compute()["ap"])
    metric.update(row(0.5, 0.2), labels(0, 0))  # no anomaly yet: NaN, not meaningless numbers
    got = metric.compute()
    assert np.isnan(got["ap"]) and np.isnan(got["best_f1_threshold"]) and got["pixels_in"] == 2
    with pytest.raises(EvaluationError, match="non-finite"):
        metric.update(row(np.nan, 0.2), labels(1, 0))
    metric.update(row(np.nan, 0.2), labels(255, 0))  # NaN on void is fine
    with pytest.raises(EvaluationError, match="floating-point"):
        metric.update(np.array([[1, 0]]), labels(1, 0))
    with pytest.raises(EvaluationError, match="label values"):
        metric.update(row(0.5, 0.2), labels(1, 7))


# ---------------------------------------------------------------- segment metric


def canvas(h: int = 30, w: int = 40) -> np.ndarray:
    return np.zeros((h, w), dtype=np.uint8)


def segments(track: str, *frames: tuple[np.ndarray, np.ndarray], threshold: float = 0.5) -> SmiycSegmentMetric:
    """Frames of (predicted mask, label); the mask becomes a 0/1 score map."""
    metric = SmiycSegmentMetric(track, threshold)
    for mask, label in frames:
        metric.update(mask.astype(np.float32), label)
    return metric


def blob(shape: tuple[int, int], n: int, y: int = 0, x: int = 0, width: int = 10) -> np.ndarray:
    """An 8-connected blob of exactly n pixels: full rows of `width`, then a partial row."""
    mask = np.zeros(shape, dtype=bool)
    flat = np.zeros(((n + width - 1) // width) * width, dtype=bool)
    flat[:n] = True
    block = flat.reshape(-1, width)
    mask[y:y + block.shape[0], x:x + width] = block
    return mask


def test_threshold_is_strict():
    label = canvas()
    label[5:15, 5:15] = 1
    score = np.where(label == 1, 0.5, 0.0).astype(np.float32)
    at = SmiycSegmentMetric("obstacle", 0.5)
    at.update(score, label)  # score == threshold: not predicted
    below = SmiycSegmentMetric("obstacle", float(np.nextafter(0.5, 0)))
    below.update(score, label)
    assert (at.compute()["siou"], at.compute()["pred_components"]) == (0.0, 0)
    assert (below.compute()["siou"], below.compute()["pred_components"]) == (1.0, 1)


def test_void_is_removed_before_labelling():
    label = canvas(10, 30)
    label[:, 15] = 255
    wide = np.zeros((10, 30), dtype=bool)
    wide[:, 5:26] = True  # 210 px, split by the void column into 100 + 100
    small = np.zeros((10, 30), dtype=bool)
    small[2:8, 8:24] = True  # 96 px, split into 42 + 48: both under the obstacle minimum 50
    assert segments("obstacle", (wide, label)).compute()["pred_components"] == 2
    assert segments("obstacle", (small, label)).compute()["pred_components"] == 0
    assert segments("obstacle", (small, canvas(10, 30))).compute()["pred_components"] == 1  # no void: 96 px


@pytest.mark.parametrize(("track", "min_pred", "min_gt"), [("anomaly", 500, 100), ("obstacle", 50, 10)])
def test_size_filters_per_track(track, min_pred, min_gt):
    shape = (120, 120)
    pred = blob(shape, min_pred - 1, 0, 0, 30) | blob(shape, min_pred, 60, 0, 30)
    got = segments(track, (pred, np.zeros(shape, np.uint8))).compute()
    assert (got["pred_components"], got["fp_mean"]) == (1, 1.0)  # the smaller one is gone
    label = (blob(shape, min_gt - 1, 0, 80, 20) | blob(shape, min_gt, 60, 80, 20)).astype(np.uint8)
    got = segments(track, (np.zeros(shape, bool), label)).compute()
    assert (got["gt_components"], got["fn_mean"]) == (1, 1.0)  # the smaller one turned void


def test_small_gt_turns_void_after_the_prediction_size_filter():
    label = canvas()
    label[10:13, 10:13] = 1  # 9 px < 10: void
    pred = np.zeros_like(label, dtype=bool)
    pred[8:15, 8:16] = True  # 56 px, 47 left after the small GT turns void; the size filter already ran
    got = segments("obstacle", (pred, label))
    assert (got.compute()["gt_components"], got.compute()["pred_components"], got.compute()["ppv"]) == (0, 1, 0.0)
    assert got.fp.tolist() == [1] * 11
    # A prediction lying only on the small GT leaves no ROI pixel, so it is no component at all. (With the
    # track minima it could not pass the size filter anyway: it has at most min_gt - 1 < min_pred pixels.)
    siou, ppv = _frame_segments(label == 1, label, min_pred=1, min_gt=10)
    assert siou.size == 0 and ppv.size == 0


def test_siou_adjustment_for_neighbouring_instances():
    label = canvas(10, 30)
    label[:, 0:10] = 1
    label[:, 11:21] = 1  # a second instance, one background column apart (not 8-connected)
    pred = np.zeros((10, 30), dtype=bool)
    pred[:, 0:21] = True  # one component over both (210 px)
    got = segments("obstacle", (pred, label)).compute()
    # sIoU = 100 / (210 + 100 - 100 - 100 on the other instance) = 100 / 110 each, not 100 / 210.
    assert got["gt_components"] == 2 and got["siou"] == 100 / 110
    assert got["ppv"] == 200 / 210


def test_ppv_ignores_void_pixels():
    label = canvas(10, 20)
    label[:, 0:5] = 1
    label[:, 10:12] = 255
    pred = np.zeros((10, 20), dtype=bool)
    pred[:, 0:12] = True  # 120 px, 20 of them void
    got = segments("obstacle", (pred, label)).compute()
    assert got["ppv"] == 0.5  # 50 / 100, not 50 / 120
    assert got["siou"] == 0.5  # 50 / (50 + 50 background)


def test_tp_needs_siou_ge_t_and_fp_ppv_below_t():
    label = canvas(10, 10)
    label[:, :] = 1
    pred = np.zeros((10, 10), dtype=bool)
    pred[:5] = True  # sIoU 50 / 100 = 0.5, exactly t[5]
    assert segments("obstacle", (pred, label)).tp[5:7].tolist() == [1, 0]
    label[5:] = 0
    spread = segments("obstacle", (np.ones((10, 10), dtype=bool), label))  # PPV 50 / 100
    assert spread.fp[5:7].tolist() == [0, 1]


def test_ratio_of_exactly_06_is_below_the_060_threshold():
    assert SMIYC_SIOU_THRESHOLDS[7] == 0.6000000000000001
    label = canvas(10, 10)
    label[:, :] = 1
    pred = np.zeros((10, 10), dtype=bool)
    pred[:6] = True  # sIoU 60 / 100
    covered = segments("obstacle", (pred, label))
    assert covered.tp[6:8].tolist() == [1, 0] and covered.fn[6:8].tolist() == [0, 1]  # t = 0.55, 0.60
    label = canvas(10, 10)
    label[:6] = 1
    pred = np.ones((10, 10), dtype=bool)  # PPV 60 / 100 (and sIoU 60 / 100)
    spread = segments("obstacle", (pred, label))
    assert spread.fp[6:8].tolist() == [0, 1] and spread.fn[6:8].tolist() == [0, 1]


def test_frames_without_anomalies_count_every_component_as_fp():
    pred = np.zeros((30, 40), dtype=bool)
    pred[0:6, 0:10] = True
    pred[20:26, 20:30] = True
    got = segments("obstacle", (pred, canvas())).compute()
    assert (got["pred_components"], got["gt_components"], got["ppv"]) == (2, 0, 0.0)
    assert (got["fp_mean"], got["tp_mean"], got["mean_f1"]) == (2.0, 0.0, 0.0)
    assert np.isnan(got["siou"])


def test_segment_metrics_are_pooled_over_instances():
    hit = canvas()
    hit[0:10, 0:10] = 1
    missed = canvas()
    for x in (0, 12, 24):
        missed[20:30, x:x + 10] = 1
    got = segments("obstacle", (hit == 1, hit), (np.zeros_like(missed, bool), missed)).compute()
    assert got["siou"] == 0.25  # (1 + 0 + 0 + 0) / 4, not the per-frame mean 0.5
    assert got["mean_f1"] == pytest.approx(2 / (2 + 3)) and got["f1_25"] == got["f1_75"]
    assert (got["tp_mean"], got["fn_mean"], got["gt_components"]) == (1.0, 3.0, 4)


def test_segment_metric_guards():
    with pytest.raises(EvaluationError, match="track"):
        SmiycSegmentMetric("road", 0.5)
    with pytest.raises(EvaluationError, match="finite"):
        SmiycSegmentMetric("obstacle", float("nan"))
    metric = SmiycSegmentMetric("obstacle", 0.5)
    with pytest.raises(EvaluationError, match="non-finite"):
        metric.update(np.full((4, 4), np.inf), canvas(4, 4))
    with pytest.raises(EvaluationError, match="cannot merge"):
        metric.merge(SmiycSegmentMetric("obstacle", 0.25))


# ---------------------------------------------------------------- state, merge, randomized


def random_frames(seed: int, n: int, p_empty: float, blob_max: int, shape=(64, 96)):
    rng = np.random.default_rng(seed)
    frames = []
    for _ in range(n):
        label = np.zeros(shape, dtype=np.uint8)
        label[:8] = 255
        signal = np.zeros(shape)
        for _ in range(0 if rng.random() < p_empty else int(rng.integers(1, 4))):
            h, w = rng.integers(3, blob_max, 2)
            y, x = rng.integers(8, shape[0] - h), rng.integers(0, shape[1] - w)
            label[y:y + h, x:x + w] = 1
            signal[y:y + h, x:x + w] = rng.uniform(0.5, 1.0)
        logit = ndimage.gaussian_filter(rng.normal(0, 1, shape), 1.5) * 4 + 3 * signal - 2
        frames.append(((1 / (1 + np.exp(-logit))).astype(np.float32), label))
    return frames


def sklearn_ap(frames) -> float:
    score = np.concatenate([s[lab != 255] for s, lab in frames]).astype(np.float64)
    return average_precision_score(np.concatenate([lab[lab != 255] for _, lab in frames]), score)


def test_state_round_trip_and_merge_equal_one_accumulator():
    frames = random_frames(1, 8, 0.25, 20)
    whole = pixel_metric(*frames)
    first, second = pixel_metric(*frames[:3]), pixel_metric(*frames[3:])
    restored = SmiycPixelMetric.from_state_dict(json.loads(json.dumps(second.state_dict())))
    assert SmiycPixelMetric.from_state_dict(json.loads(json.dumps(first.state_dict()))).merge(restored).compute() \
        == whole.compute()
    assert pixel_metric(*frames[3:]).merge(pixel_metric(*frames[:3])).compute() == whole.compute()
    threshold = whole.compute()["best_f1_threshold"]
    seg = segments("obstacle", *frames, threshold=threshold)
    part = [segments("obstacle", *chunk, threshold=threshold) for chunk in (frames[:5], frames[5:])]
    merged = SmiycSegmentMetric.from_state_dict(json.loads(json.dumps(part[0].state_dict()))).merge(part[1])
    assert merged.compute() == seg.compute() and merged.frames == 8
    with pytest.raises(EvaluationError, match="state"):
        SmiycPixelMetric.from_state_dict({**whole.state_dict(), "pixels_out": 1})


def test_binned_ap_against_exact_sklearn_ap():
    frames = random_frames(2, 8, 0.0, 24)  # every frame has anomalies: binned 0.8229, exact 0.8212
    assert abs(pixel_metric(*frames).compute()["ap"] - sklearn_ap(frames)) < 0.02
    # Low prevalence (most frames empty, small blobs): the coarse top bins of anomaly-free frames delay their
    # false positives, so the binned AP drifts above the exact one (here 0.3254 vs 0.2699). That is the
    # benchmark's number, by its rules; only check that it is defined.
    sparse = random_frames(3, 8, 0.7, 8)
    assert np.isfinite(pixel_metric(*sparse).compute()["ap"] - sklearn_ap(sparse))


def _synthetic_args(out, *extra):
    return ["evaluate", "--dataset", "synthetic", "--seed", "3", "--frames", "4", "--height", "64", "--width", "128",
            "--head", "energy", "--device", "cpu", "--protocol", "smiyc", "--overlays", "0", *extra, "--out", str(out)]


def test_evaluate_with_the_smiyc_protocol_reports_the_benchmark_computation(tmp_path):
    import json

    from ood_seg_node.cli import main
    from ood_seg_node.datasets import SyntheticDataset
    from ood_seg_node.pipeline import Pipeline

    assert main(_synthetic_args(tmp_path / "run", "--float16")) == 0
    result = json.loads((tmp_path / "run" / "metrics.json").read_text())["heads"]["energy"]
    pipeline = Pipeline.from_names(head="energy", device="cpu")
    frames = list(SyntheticDataset(seed=3, frames=4, height=64, width=128))
    scores = [pipeline.process(f.image).score.astype(np.float16).astype(np.float32) for f in frames]
    pixel = SmiycPixelMetric()
    for score, frame in zip(scores, frames):
        pixel.update(score, frame.ood_gt)
    expected = pixel.compute()
    segments = SmiycSegmentMetric("obstacle", float(np.float16(expected["best_f1_threshold"])))
    for score, frame in zip(scores, frames):
        segments.update(score, frame.ood_gt)
    assert result["protocol"] == "smiyc" and result["float16"] is True and set(result["exact"]) == {"ap", "fpr95",
                                                                                                    "auroc"}
    for key in ("ap", "fpr95", "auroc"):
        assert result[key] == pytest.approx(expected[key], abs=1e-6)
    assert result["component_threshold"] == pytest.approx(expected["best_f1_threshold"], abs=1e-6)
    for key, value in segments.compute().items():
        if key in ("siou", "ppv", "mean_f1"):
            assert result[key] == pytest.approx(value, abs=1e-6, nan_ok=True)


def test_sharded_smiyc_runs_merge_to_the_whole_run(tmp_path):
    import json

    from ood_seg_node.cli import main

    fixed = ["--component-threshold", "-8.0"]
    assert main(_synthetic_args(tmp_path / "whole", *fixed)) == 0
    for i in (0, 1):
        assert main(_synthetic_args(tmp_path / f"s{i}", *fixed, "--shard", f"{i}/2")) == 0
    assert main(["evaluate", "--merge", str(tmp_path / "s0"), str(tmp_path / "s1"), "--out", str(tmp_path / "m")]) == 0
    whole, merged = (json.loads((tmp_path / d / "metrics.json").read_text())["heads"]["energy"] for d in ("whole", "m"))
    for key in ("ap", "fpr95", "auroc", "siou", "ppv", "mean_f1"):
        assert merged[key] == pytest.approx(whole[key], abs=1e-12, nan_ok=True), key
    assert merged["protocol"] == "smiyc"
