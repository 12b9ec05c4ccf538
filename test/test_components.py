# Copyright 2026 The ood_seg_node developers. Licensed under the Apache License, Version 2.0.
"""SMIYC component metrics on small hand-built masks whose sIoU / PPV / F1 are worked out by hand."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ood_seg_node.evaluation import (
    SIOU_THRESHOLDS,
    ComponentMetrics,
    EvaluationError,
    StreamingOODMetrics,
    best_f1_threshold,
    frame_components,
)

H, W = 40, 60


def blank() -> tuple[np.ndarray, np.ndarray]:
    return np.zeros((H, W), dtype=bool), np.zeros((H, W), dtype=np.uint8)


def components(mask: np.ndarray, label: np.ndarray, gt: int = 0, pred: int = 0) -> tuple[list, list]:
    result = frame_components(mask, label, min_gt_size=gt, min_pred_size=pred)
    return result.siou.tolist(), result.ppv.tolist()


def test_perfect_match() -> None:
    mask, label = blank()
    label[5:15, 5:15] = 1
    mask[5:15, 5:15] = True
    assert components(mask, label) == ([1.0], [1.0])


def test_merged_prediction_over_two_objects_is_not_punished_for_the_neighbour() -> None:
    mask, label = blank()
    label[5:15, 0:10] = 1  # object A, 100 px
    label[5:15, 20:30] = 1  # object B, 100 px
    mask[5:15, 0:30] = True  # one blob over both and the 100 px of road between them
    siou, ppv = components(mask, label)
    # sIoU(A) = |A ∩ P| / |(A ∪ P) \ B| = 100 / (300 - 100) = 0.5 (plain IoU would be 1/3); same for B.
    assert siou == pytest.approx([0.5, 0.5])
    assert ppv == pytest.approx([200 / 300])


def test_split_predictions_of_one_object() -> None:
    mask, label = blank()
    label[5:15, 0:30] = 1  # 300 px
    mask[5:15, 0:10] = True
    mask[5:15, 20:30] = True  # two predicted parts, 100 px each, both inside the object
    siou, ppv = components(mask, label)
    assert siou == pytest.approx([200 / 300])
    assert ppv == pytest.approx([1.0, 1.0])


def test_partial_overlap_and_a_missed_object_and_a_false_blob() -> None:
    mask, label = blank()
    label[0:10, 0:10] = 1
    mask[0:10, 5:15] = True  # half on the object: I = 50, union = 100 + 50 background
    label[20:30, 40:50] = 1  # missed entirely
    mask[25:35, 20:30] = True  # on road only
    siou, ppv = components(mask, label)
    assert siou == pytest.approx([50 / 150, 0.0])
    assert ppv == pytest.approx([0.5, 0.0])


def test_eight_connectivity() -> None:
    mask, label = blank()
    label[3, 3] = label[4, 4] = 1  # diagonal neighbours: one component
    mask[3, 3] = mask[4, 4] = True
    assert components(mask, label) == ([1.0], [1.0])


def test_size_filters() -> None:
    mask, label = blank()
    label[0:3, 0:3] = 1  # 9 px object: below the obstacle track's 10 px -> ignored, with predictions on it
    mask[0:3, 0:3] = True
    label[20:30, 20:30] = 1  # 100 px object, predicted by a 7x7 = 49 px blob (below 50 -> removed)
    mask[22:29, 22:29] = True
    mask[10:18, 40:47] = True  # 56 px false blob on road: kept, PPV 0
    siou, ppv = components(mask, label, gt=10, pred=50)
    assert siou == pytest.approx([0.0])
    assert ppv == pytest.approx([0.0])
    # The same frame with the anomaly-track sizes (100 / 500): the 100 px object stays, no blob survives.
    metrics = ComponentMetrics("anomaly")
    metrics.update(mask, label)
    assert (metrics.min_gt_size, metrics.min_pred_size) == (100, 500)
    result = metrics.compute()
    assert (result["gt_components"], result["pred_components"]) == (1, 0)
    obstacle = ComponentMetrics("obstacle")
    assert (obstacle.min_gt_size, obstacle.min_pred_size) == (10, 50)


def test_predictions_outside_the_roi_are_ignored() -> None:
    mask, label = blank()
    label[:, 40:] = 255
    mask[0:10, 45:55] = True  # entirely in the ignore region: no component at all
    label[20:30, 20:30] = 1
    mask[20:30, 20:45] = True  # 10x25 blob, of which 10x20 = 200 px lie in the ROI (100 on the object)
    siou, ppv = components(mask, label)
    assert ppv == pytest.approx([0.5])
    assert siou == pytest.approx([100 / 200])
    # The size filter counts ROI pixels only: 200 px in the ROI is too small for min_pred_size=201.
    assert components(mask, label, pred=201) == ([0.0], [])


def test_f1_uses_strict_siou_and_inclusive_ppv_thresholds() -> None:
    mask, label = blank()
    label[5:15, 0:10] = 1
    label[5:15, 20:30] = 1
    mask[5:15, 0:30] = True  # sIoU 0.5, 0.5 and PPV 2/3 (see the merged test)
    metrics = ComponentMetrics("obstacle", min_gt_size=0, min_pred_size=0)
    metrics.update(mask, label)
    result = metrics.compute()
    # tau < 0.5: TP 2, FN 0, FP 0 -> F1 1. tau = 0.5 .. 0.65: sIoU 0.5 is not > tau -> TP 0 -> F1 0.
    # tau >= 0.7: also FP 1 (PPV 2/3 <= tau) -> F1 0. Five of eleven thresholds give 1.
    assert result["f1"]["0.45"] == 1.0 and result["f1"]["0.50"] == 0.0
    assert result["mean_f1"] == pytest.approx(5 / 11)
    assert result["siou"] == pytest.approx(0.5)
    assert result["ppv"] == pytest.approx(2 / 3)
    assert list(result["f1"]) == [f"{t:.2f}" for t in SIOU_THRESHOLDS]


def test_streaming_merge_and_state() -> None:
    frames = []
    for shift in range(4):
        mask, label = blank()
        label[5:15, 5 + shift:15 + shift] = 1
        mask[5:15, 5:15] = True  # sIoU = (100 - 10 s) / (100 + 10 s)
        frames.append((mask, label))
    single = ComponentMetrics("obstacle", min_gt_size=0, min_pred_size=0)
    left = ComponentMetrics("obstacle", min_gt_size=0, min_pred_size=0)
    right = ComponentMetrics("obstacle", min_gt_size=0, min_pred_size=0)
    for i, (mask, label) in enumerate(frames):
        single.update(mask, label)
        (left if i < 2 else right).update(mask, label)
    expected = np.mean([(100 - 10 * s) / (100 + 10 * s) for s in range(4)])
    assert single.compute()["siou"] == pytest.approx(expected)
    merged, whole = left.merge(right).compute(), single.compute()
    assert merged.pop("f1") == pytest.approx(whole.pop("f1"))
    assert merged == pytest.approx(whole)
    restored = ComponentMetrics.from_state_dict(json.loads(json.dumps(single.state_dict())))
    assert restored.compute() == single.compute()
    assert restored.compute()["frames"] == 4
    with pytest.raises(EvaluationError, match="size filters"):
        single.merge(ComponentMetrics("anomaly"))


def test_empty_frames_and_bad_input() -> None:
    mask, label = blank()
    metrics = ComponentMetrics("anomaly")
    metrics.update(mask, label)
    result = metrics.compute()
    assert result["gt_components"] == 0 and np.isnan(result["mean_f1"]) and np.isnan(result["siou"])
    with pytest.raises(EvaluationError, match="shape"):
        metrics.update(mask[:, :10], label)
    label[0, 0] = 3
    with pytest.raises(EvaluationError, match="0 \\(inlier\\)"):
        metrics.update(mask, label)
    with pytest.raises(EvaluationError, match="valid"):
        ComponentMetrics("road")


def test_best_f1_threshold_gives_the_mask_for_component_metrics() -> None:
    rng = np.random.default_rng(0)
    _, label = blank()
    label[10:20, 10:30] = 1
    label[0:2, :] = 255
    score = rng.random((H, W)).astype(np.float32) * 0.6 + 0.4 * (label == 1)
    pixel = StreamingOODMetrics()
    pixel.update(score, label)
    threshold = best_f1_threshold(pixel)
    mask = score >= threshold
    valid = label != 255
    tp = np.sum(mask & (label == 1))
    f1 = 2 * tp / (np.sum(mask & valid) + np.sum(label == 1))
    assert f1 == pytest.approx(pixel.best_f1()[1])
    assert f1 > 0.6
    metrics = ComponentMetrics("obstacle")
    metrics.update(mask, label)
    assert metrics.compute()["gt_components"] == 1
    with pytest.raises(EvaluationError, match="no anomaly pixels"):
        best_f1_threshold(StreamingOODMetrics())
