# Copyright 2026 The ood_seg_node developers. Licensed under the Apache License, Version 2.0.
"""Streaming pixel metrics and the confusion matrix against scikit-learn's exact computation."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

from ood_seg_node.evaluation import ConfusionMatrix, EvaluationError, StreamingOODMetrics, best_f1_threshold

TOL = 1e-3


def exact(scores: list[np.ndarray], labels: list[np.ndarray]) -> dict[str, float]:
    """The metrics over all non-ignored pixels, computed exactly with scikit-learn."""
    label = np.concatenate([np.ravel(lab) for lab in labels])
    score = np.concatenate([np.ravel(s) for s in scores]).astype(np.float64)
    valid = label != 255
    y, s = label[valid], score[valid]
    fpr, tpr, _ = roc_curve(y, s, drop_intermediate=False)
    return {
        "ap": average_precision_score(y, s),
        "auroc": roc_auc_score(y, s),
        "fpr95": float(fpr[np.searchsorted(tpr, 0.95, side="left")]),
    }


def assert_close(metrics: StreamingOODMetrics, scores: list[np.ndarray], labels: list[np.ndarray],
                 tol: float = TOL) -> dict:
    got = metrics.compute()
    want = exact(scores, labels)
    for key, value in want.items():
        assert abs(got[key] - value) <= tol, f"{key}: streaming {got[key]!r} vs exact {value!r}"
    return got


def make_labels(rng: np.random.Generator, shape: tuple[int, int], anomaly: float = 0.15,
                ignore: float = 0.1) -> np.ndarray:
    label = (rng.random(shape) < anomaly).astype(np.uint8)
    label[rng.random(shape) < ignore] = 255
    return label


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def stream(make_score, frames: int = 6, shape: tuple[int, int] = (48, 64), seed: int = 0,
           separation: float = 1.0, **metric_kwargs) -> tuple[StreamingOODMetrics, list, list]:
    """Feed frames whose anomaly pixels get `separation` added to a latent logit."""
    rng = np.random.default_rng(seed)
    metrics = StreamingOODMetrics(**metric_kwargs)
    scores, labels = [], []
    for _ in range(frames):
        label = make_labels(rng, shape)
        latent = rng.normal(0.0, 1.0, shape) + separation * (label == 1)
        score = make_score(latent, rng)
        metrics.update(score, label)
        scores.append(score)
        labels.append(label)
    return metrics, scores, labels


SCORE_KINDS = {
    "uniform": lambda z, rng: 0.5 * rng.random(z.shape) + 0.5 * sigmoid(z),
    "energy": lambda z, rng: -12.0 + 4.0 * z,  # roughly -30 .. +5
    "probability_float32": lambda z, rng: sigmoid(3.0 * z).astype(np.float32),
    "sigmoid_saturated_float32": lambda z, rng: sigmoid(15.0 * z).astype(np.float32),
    "sigmoid_near_one_float64": lambda z, rng: sigmoid(12.0 * z + 8.0),
    "one_minus_softmax_float32": lambda z, rng: (1.0 - sigmoid(-10.0 * z).astype(np.float32)),
    "negated_probability": lambda z, rng: -sigmoid(-10.0 * z).astype(np.float32),
    "integers": lambda z, rng: np.round(2.0 * z).astype(np.int32),
    "tiny_range": lambda z, rng: 1e-9 * z,
    "narrow_far_from_zero": lambda z, rng: 1000.0 + 1e-7 * z,
    "huge_range": lambda z, rng: 1e12 * z,
}


@pytest.mark.parametrize("kind", sorted(SCORE_KINDS))
def test_matches_sklearn(kind: str) -> None:
    metrics, scores, labels = stream(SCORE_KINDS[kind], seed=sum(map(ord, kind)))
    got = assert_close(metrics, scores, labels)
    valid = np.concatenate([lab.ravel() for lab in labels])
    assert got["pixels_out"] == int(np.sum(valid == 1))
    assert got["pixels_in"] == int(np.sum(valid == 0))
    assert got["pixels_ignored"] == int(np.sum(valid == 255))
    assert got["frames"] == 6


@pytest.mark.parametrize("kind", ["sigmoid_near_one_float64", "one_minus_softmax_float32",
                                  "negated_probability", "sigmoid_saturated_float32"])
def test_matches_sklearn_on_larger_frames(kind: str) -> None:
    # ~200k pixels: enough for many distinct scores to share histogram slots near the saturation points.
    metrics, scores, labels = stream(SCORE_KINDS[kind], frames=3, shape=(256, 256), seed=4, separation=0.7)
    assert_close(metrics, scores, labels, tol=2e-4)


def test_integer_ties_are_exact() -> None:
    metrics, scores, labels = stream(lambda z, rng: np.clip(np.round(z), -2, 3), frames=5)
    assert_close(metrics, scores, labels, tol=1e-12)


def test_fifty_frames_streaming_with_growing_range() -> None:
    # Ranges widen over time (frame i spans about +-(i+1)), forcing the grid to coarsen while streaming.
    rng = np.random.default_rng(7)
    metrics = StreamingOODMetrics()
    scores, labels = [], []
    for i in range(50):
        label = make_labels(rng, (24, 32))
        score = (i + 1) * (rng.normal(size=label.shape) + 0.8 * (label == 1))
        metrics.update(score, label)
        scores.append(score)
        labels.append(label)
    assert_close(metrics, scores, labels)
    assert metrics.compute()["frames"] == 50


def test_one_class_and_empty_frames_mixed_in() -> None:
    rng = np.random.default_rng(3)
    metrics = StreamingOODMetrics()
    scores, labels = [], []
    for i in range(12):
        label = make_labels(rng, (20, 20))
        if i % 4 == 1:
            label[label != 255] = 0  # no anomaly at all
        elif i % 4 == 2:
            label[label != 255] = 1  # anomalies only
        elif i % 4 == 3:
            label[:] = 255  # nothing valid (e.g. empty ROI)
        score = rng.normal(size=label.shape) + (label == 1)
        metrics.update(score, label)
        scores.append(score)
        labels.append(label)
    got = assert_close(metrics, scores, labels)
    assert got["frames"] == 12


def test_constant_maps() -> None:
    label = np.array([[0, 1, 0, 0], [0, 0, 1, 255]], dtype=np.uint8)
    metrics = StreamingOODMetrics()
    for _ in range(3):
        metrics.update(np.full(label.shape, 0.25), label)
    got = metrics.compute()
    assert got["auroc"] == pytest.approx(0.5)
    assert got["ap"] == pytest.approx(2 / 7)  # one threshold: precision = prevalence
    assert got["fpr95"] == pytest.approx(1.0)
    # A constant first frame, then varied ones: the grid must widen from a zero-width range.
    rng = np.random.default_rng(1)
    scores, labels = [np.full(label.shape, 0.25)], [label]
    metrics = StreamingOODMetrics()
    metrics.update(scores[0], label)
    for _ in range(4):
        lab = make_labels(rng, (16, 16))
        sc = rng.random(lab.shape) + 0.3 * (lab == 1)
        metrics.update(sc, lab)
        scores.append(sc)
        labels.append(lab)
    assert_close(metrics, scores, labels)


def test_all_zero_first_frame_then_probabilities() -> None:
    rng = np.random.default_rng(2)
    fine, small = StreamingOODMetrics(), StreamingOODMetrics(bins=1 << 12)
    labels = [make_labels(rng, (16, 16)) for _ in range(4)]
    scores = [np.zeros(labels[0].shape, np.float32)]
    for lab in labels[1:]:
        scores.append(sigmoid(rng.normal(size=lab.shape) * 4 + 2 * (lab == 1)).astype(np.float32))
    for score, label in zip(scores, labels, strict=True):
        fine.update(score, label)
        small.update(score, label)
    assert_close(fine, scores, labels)
    # 4096 slots over [0, 1] are ~2**-12 wide: coarser, but the zero-width start must still have widened.
    assert_close(small, scores, labels, tol=2e-2)


@pytest.mark.parametrize("bins", [1 << 12, 1 << 16])
def test_small_windows_fit_wide_ranges_near_the_anchors(bins: int) -> None:
    rng = np.random.default_rng(9)
    metrics, scores, labels = StreamingOODMetrics(bins=bins), [], []
    for _ in range(3):
        label = make_labels(rng, (32, 32))
        score = np.concatenate([sigmoid(rng.normal(0, 30, 512)), -sigmoid(rng.normal(0, 30, 512))])
        score = score.reshape(label.shape) + 0.2 * (label == 1)
        metrics.update(score, label)
        scores.append(score)
        labels.append(label)
    assert_close(metrics, scores, labels, tol=2e-2)


def test_fpr95_convention_uses_the_full_roc_curve() -> None:
    # Points (fpr, tpr): (0, .9), (.1, .95), (.2, 1): the middle one is collinear, so sklearn's default
    # roc_curve drops it and would report 0.2; Fishyscapes/SMIYC code (and we) take 0.1.
    score = np.r_[np.full(18, 3.0), np.full(3, 2.0), np.full(3, 1.0), np.full(16, 0.0)]
    label = np.r_[np.ones(18), [1, 0, 0], [1, 0, 0], np.zeros(16)].astype(np.uint8)
    metrics = StreamingOODMetrics()
    metrics.update(score, label)
    fpr, tpr, _ = roc_curve(label, score)  # default drop_intermediate=True
    assert float(fpr[np.searchsorted(tpr, 0.95)]) == pytest.approx(0.2)
    assert metrics.compute()["fpr95"] == pytest.approx(0.1)


def test_merge_equals_single_pass_even_with_different_ranges() -> None:
    rng = np.random.default_rng(11)
    frames = []
    for i in range(8):
        label = make_labels(rng, (20, 24))
        # The shards see very different ranges: octaves around +-1 on one grid, none on the other.
        scale = 1e-3 if i < 4 else 1e4
        frames.append((scale * (rng.normal(size=label.shape) + (label == 1)), label))
    single, left, right = StreamingOODMetrics(), StreamingOODMetrics(), StreamingOODMetrics()
    for i, (score, label) in enumerate(frames):
        single.update(score, label)
        (left if i < 4 else right).update(score, label)
    merged = left.merge(right)
    assert merged.compute() == single.compute()
    assert_close(merged, [f[0] for f in frames], [f[1] for f in frames])
    # Merging into an empty accumulator, and merging an empty one, change nothing.
    assert StreamingOODMetrics().merge(single).compute() == single.compute()
    assert single.merge(StreamingOODMetrics()).compute()["ap"] == merged.compute()["ap"]


def test_state_round_trip_through_json(tmp_path) -> None:
    metrics, scores, labels = stream(SCORE_KINDS["energy"], frames=4)
    path = tmp_path / "partial.json"
    path.write_text(json.dumps(metrics.state_dict()))
    restored = StreamingOODMetrics.from_state_dict(json.loads(path.read_text()))
    assert restored.compute() == metrics.compute()
    # Restored accumulators keep streaming exactly like the original.
    rng = np.random.default_rng(5)
    label = make_labels(rng, (48, 64))
    score = -12 + 40 * rng.normal(size=label.shape)
    metrics.update(score, label)
    restored.update(score, label)
    assert restored.compute() == metrics.compute()
    assert StreamingOODMetrics.from_state_dict(StreamingOODMetrics().state_dict()).compute()["frames"] == 0
    with pytest.raises(EvaluationError, match="not a"):
        StreamingOODMetrics.from_state_dict({"format": "something else"})
    broken = metrics.state_dict()
    broken["inlier"] = broken["inlier"][:-8]
    with pytest.raises(EvaluationError):
        StreamingOODMetrics.from_state_dict(broken)


def test_memory_is_flat() -> None:
    rng = np.random.default_rng(0)
    metrics = StreamingOODMetrics()

    def sizes() -> tuple[int, ...]:
        return metrics.nbytes(), metrics._grid.hist.nbytes, metrics._grid.value.nbytes

    for i in range(200):
        label = make_labels(rng, (8, 8))
        metrics.update(rng.normal(size=label.shape) * (1 + i), label)  # the range keeps growing
        if i == 9:
            after_10 = sizes()
    assert sizes() == after_10
    assert metrics.nbytes() == 25 * metrics.bins
    assert len(json.dumps(metrics.state_dict())) < 200_000  # only occupied slots are stored


def test_best_f1_threshold_matches_exhaustive_search() -> None:
    metrics, scores, labels = stream(lambda z, rng: np.round(z, 1).astype(np.float32), frames=3)
    score = np.concatenate([s.ravel() for s in scores])
    label = np.concatenate([lab.ravel() for lab in labels])
    score, label = score[label != 255], label[label != 255]
    threshold, f1 = metrics.best_f1()
    assert best_f1_threshold(metrics) == threshold

    def f1_at(t: float) -> float:
        predicted = score >= t
        tp = np.sum(predicted & (label == 1))
        return 2 * tp / (np.sum(predicted) + np.sum(label == 1))

    assert f1_at(threshold) == pytest.approx(f1)
    assert f1 == pytest.approx(max(f1_at(t) for t in np.unique(score)))


def test_curves_are_monotone_and_subsampled() -> None:
    metrics, _, _ = stream(SCORE_KINDS["energy"], frames=6)
    curves = metrics.curves(max_points=300)
    n = curves["recall"].size
    assert 10 < n <= 310
    assert all(curves[k].size == n for k in ("precision", "fpr", "tpr", "thresholds"))
    assert np.all(np.diff(curves["recall"]) >= 0) and np.all(np.diff(curves["fpr"]) >= 0)
    assert np.all(np.diff(curves["thresholds"]) < 0)
    assert curves["recall"][-1] == 1.0 and curves["fpr"][-1] == 1.0
    assert np.all((curves["precision"] >= 0) & (curves["precision"] <= 1))
    assert StreamingOODMetrics().curves()["recall"].size == 0


def test_refuses_bad_input() -> None:
    metrics = StreamingOODMetrics()
    label = np.zeros((4, 4), np.uint8)
    score = np.zeros((4, 4))
    score[1, 1] = np.nan
    with pytest.raises(EvaluationError, match="NaN"):
        metrics.update(score, label)
    score[1, 1] = np.inf
    with pytest.raises(EvaluationError, match="infinite"):
        metrics.update(score, label)
    label[1, 1] = 255  # non-finite values on ignored pixels do not matter
    metrics.update(score, label)
    label[0, 0] = 7
    with pytest.raises(EvaluationError, match=r"\[7\]"):
        metrics.update(np.zeros((4, 4)), label)
    with pytest.raises(EvaluationError, match="shape"):
        metrics.update(np.zeros((4, 5)), np.zeros((4, 4), np.uint8))
    with pytest.raises(EvaluationError, match="power of two"):
        StreamingOODMetrics(bins=5000)
    with pytest.raises(EvaluationError, match="bins"):
        StreamingOODMetrics().merge(StreamingOODMetrics(bins=1 << 12))
    assert metrics.compute()["frames"] == 1


def test_confusion_matrix() -> None:
    target = np.array([[0, 0, 1, 1], [2, 2, 255, 1]], dtype=np.uint8)
    pred = np.array([[0, 1, 1, 1], [2, 0, 5, 255]], dtype=np.uint8)
    cm = ConfusionMatrix(num_classes=19)
    cm.update(pred, target)
    result = cm.compute()
    # road: tp 1, fp 1 (a building pixel), fn 1 -> 1/3; sidewalk: tp 2, fp 1, fn 1 (void prediction) -> 1/2;
    # building: tp 1, fn 1 -> 1/2. Classes absent from both are left out; the ignored pixel counts for nobody.
    assert result["iou_per_class"] == pytest.approx({"road": 1 / 3, "sidewalk": 0.5, "building": 0.5})
    assert result["miou"] == pytest.approx((1 / 3 + 0.5 + 0.5) / 3)
    assert result["pixel_accuracy"] == pytest.approx(4 / 7)
    other = ConfusionMatrix()
    other.update(np.full((2, 2), 18, np.uint8), np.full((2, 2), 18, np.uint8))
    merged = ConfusionMatrix().merge(cm).merge(other)
    assert merged.compute()["iou_per_class"]["bicycle"] == 1.0
    restored = ConfusionMatrix.from_state_dict(json.loads(json.dumps(merged.state_dict())))
    assert restored.compute() == merged.compute()
    with pytest.raises(EvaluationError, match="target class ids"):
        cm.update(np.zeros((1, 2), np.uint8), np.array([[0, 30]], np.uint8))
    assert np.isnan(ConfusionMatrix().compute()["miou"])


@pytest.mark.parametrize("exp", [-60, -52, -30, -14, -9, -1, 0, 10, 200])
@pytest.mark.parametrize(("sub", "octaves"), [(8, 140), (4, 28)])
def test_slot_shortcut_equals_the_grid_definition(exp, sub, octaves):
    """The few-pass slot formula (linear stretches, float64 bits in the octaves) against the zone-by-zone one,
    on values crowding every region boundary: anchors, zone edges, octave edges, bin edges, +-1/2."""
    from ood_seg_node.evaluation.metrics import _Layout

    layout = _Layout(exp, sub, octaves)
    rng = np.random.default_rng(exp + 1000 * sub)
    radius, jmin = layout.zone_radius, layout.jmin
    edges = np.array([0.0, 0.5, -0.5, 1.0, -1.0, radius, 2 * radius, 1 + radius, 1 - radius, 2.0 ** jmin,
                      np.nextafter(radius, 1), np.nextafter(2.0 ** jmin, 0), np.nextafter(0.5, 0), 5e-324])
    values = np.concatenate([
        edges, -edges, rng.normal(0, 1, 3000) * 2.0 ** exp * 2 ** (sub + 6), rng.normal(0, 3 * radius, 2000),
        rng.uniform(-1.2, 1.2, 3000), 1 + rng.normal(0, 2 * radius, 1000), -1 + rng.normal(0, 2 * radius, 1000),
        rng.integers(-1000, 1000, 1000) * 2.0 ** exp, rng.integers(-5, 5, 300).astype(float),
        np.exp2(rng.uniform(jmin - 5, exp + sub + 3, 3000)) * rng.choice([-1, 1], 3000)])
    values = values[np.abs(values) < 2.0 ** (exp + 50)]
    crowded = np.concatenate([1 / (1 + np.exp(-rng.normal(-9, 6, 4000))), values[:500]])  # mostly near 0
    for x in (values, crowded):
        assert np.array_equal(layout.slot(x), layout.exact_slot(x))
        assert np.all(np.diff(layout.slot(np.sort(x))) >= 0)
    # the definition itself, through the independent edge formula: lower edge <= x < next bin's lower edge,
    # and the even (edge) slot exactly for values on their bin's lower edge (on grids this coarse, scores
    # whose scaling to the finest bin width underflows are counted as 0: leave those out)
    values = values[(values == 0) | (np.abs(values) * 2.0 ** (sub - jmin) >= 2.0 ** -1022)]
    slot = layout.slot(values)
    lower, upper = layout.lower(slot), layout.lower(((slot >> 1) + 1) << 1)
    assert np.all(lower <= values) and np.all(values < upper)
    assert np.array_equal(slot & 1 == 0, values == lower)
