# Copyright 2026 The ood_seg_node developers. Licensed under the Apache License, Version 2.0.
from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from ood_seg_node.datasets.base import Frame
from ood_seg_node.evaluation import EvaluationError, merge_partials
from ood_seg_node.offline_evaluation import ScoreFileScorer, evaluate_frames


def _frames(count=6, size=(40, 60), seed=0):
    rng = np.random.default_rng(seed)
    frames = []
    for i in range(count):
        gt = np.zeros(size, np.uint8)
        gt[:5] = 255
        gt[10 + i:20 + i, 20:30] = 1
        image = rng.integers(0, 255, (*size, 3), dtype=np.uint8)
        frames.append(Frame(image, gt, None, name=f"f{i:03d}", sequence=f"seq{i % 2}", index=i))
    return frames


def _write_scores(tmp_path, frames, seed=1):
    rng = np.random.default_rng(seed)
    folder = tmp_path / "method"
    folder.mkdir()
    scores = {}
    for frame in frames:
        score = rng.random(frame.ood_gt.shape).astype(np.float32) + (frame.ood_gt == 1) * 0.6
        np.save(folder / f"{frame.name}.npy", score)
        scores[frame.name] = score
    return folder, scores


def test_score_files_match_sklearn_and_write_a_report(tmp_path):
    frames = _frames()
    folder, scores = _write_scores(tmp_path, frames)
    run = evaluate_frames(lambda: iter(frames), [ScoreFileScorer(folder)], kind="obstacle", total=len(frames),
                          overlays_dir=tmp_path / "out" / "overlays", overlays=2)
    results = run.write(tmp_path / "out")
    valid = np.concatenate([(f.ood_gt != 255).ravel() for f in frames])
    labels = np.concatenate([f.ood_gt.ravel() for f in frames])[valid]
    flat = np.concatenate([scores[f.name].ravel() for f in frames])[valid]
    result = results["method"]
    assert result["ap"] == pytest.approx(average_precision_score(labels, flat), abs=1e-3)
    assert result["auroc"] == pytest.approx(roc_auc_score(labels, flat), abs=1e-3)
    assert result["frames"] == 6
    assert set(result["sequences"]) == {"seq0", "seq1"}
    assert 0 <= result["mean_f1"] <= 1 and result["gt_components"] == 6
    document = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert document["heads"]["method"]["ap"] == pytest.approx(result["ap"])
    assert len(list((tmp_path / "out" / "overlays").glob("worst_method_*.png"))) == 2
    assert (tmp_path / "out" / "pr_curves.png").stat().st_size > 1000


def test_shards_merge_to_the_unsharded_result(tmp_path):
    frames = _frames(7)
    folder, _ = _write_scores(tmp_path, frames)
    scorer = ScoreFileScorer(folder)
    whole = evaluate_frames(lambda: iter(frames), [scorer], kind="obstacle", component_thresholds={"method": 0.8})
    for i in range(3):
        part = evaluate_frames(lambda: iter(frames), [scorer], kind="obstacle", shard=(i, 3),
                               component_thresholds={"method": 0.8})
        part.write_partial(tmp_path / f"shard{i}" / "partial.json")
    merged = merge_partials([tmp_path / f"shard{i}" for i in range(3)]).results()["method"]
    expected = whole.results()["method"]
    for key in ("ap", "auroc", "fpr95", "siou", "ppv", "mean_f1", "frames"):
        assert merged[key] == pytest.approx(expected[key], abs=1e-9), key


def test_sharding_without_a_threshold_and_missing_scores_are_clear_errors(tmp_path):
    frames = _frames(3)
    folder, _ = _write_scores(tmp_path, frames)
    with pytest.raises(EvaluationError, match="fixed component threshold"):
        evaluate_frames(lambda: iter(frames), [ScoreFileScorer(folder)], kind="obstacle", shard=(0, 2))
    (folder / "f001.npy").unlink()
    with pytest.raises(EvaluationError, match="no score file for frame f001"):
        evaluate_frames(lambda: iter(frames), [ScoreFileScorer(folder)], kind="obstacle")


def test_score_files_may_drop_the_image_suffix(tmp_path):
    frames = _frames(2)
    for frame in frames:
        frame.name += "_leftImg8bit"
    folder = tmp_path / "m"
    folder.mkdir()
    for frame in frames:
        np.save(folder / f"{frame.name.removesuffix('_leftImg8bit')}.npy", np.zeros(frame.ood_gt.shape, np.float32))
    run = evaluate_frames(lambda: iter(frames), [ScoreFileScorer(folder)], kind="obstacle")
    assert run.results()["m"]["frames"] == 2


def test_both_score_resolutions_on_the_same_frames(tmp_path, random_builtin_checkpoint):
    from ood_seg_node.cli import main as cli_main

    assert cli_main(["evaluate", "--dataset", "synthetic", "--seed", "2000", "--frames", "2", "--height", "64",
                     "--width", "128", "--head", "msp", "--segmenter-checkpoint", random_builtin_checkpoint,
                     "--device", "cpu", "--score-resolution", "both", "--overlays", "0", "--out", str(tmp_path)]) == 0
    heads = json.loads((tmp_path / "metrics.json").read_text())["heads"]
    assert set(heads) == {"msp", "msp@input"}
    assert heads["msp"]["frames"] == heads["msp@input"]["frames"] == 2
    # the order of upsampling and scoring shows (6e-4 here), far above float noise between CPUs (~1e-6)
    assert abs(heads["msp"]["auroc"] - heads["msp@input"]["auroc"]) > 1e-4
