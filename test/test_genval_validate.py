# Copyright 2026 The ood_seg_node developers. Licensed under the Apache License, Version 2.0.
"""GenVal validation: calibration measures, the operating point, ``ood_seg validate`` end to end (labelled
synthetic frames, an unlabelled bag), and the node's check of the calibration it is given."""

from __future__ import annotations

import json
import math
from dataclasses import fields, replace

import numpy as np
import pytest
import torch
import yaml
from fixtures import make_roadanomaly

from ood_seg_node.bags import write_bag
from ood_seg_node.cli import main
from ood_seg_node.datasets import SyntheticDataset
from ood_seg_node.datasets.base import Frame
from ood_seg_node.evaluation import EvaluationError, StreamingOODMetrics
from ood_seg_node.genval.calibration import (
    CalibrationSample,
    expected_calibration_error,
    fit_temperature,
    reliability,
    write_calibration_yaml,
)
from ood_seg_node.genval.geometry import GroundCamera
from ood_seg_node.ros.node_config import ConfigError, NodeConfig, build_pipeline, check_config


def test_ece_by_hand():
    # two bins used: 0.95 confidence, 3 of 4 right (gap 0.2); 0.55 confidence, 2 of 4 right (gap 0.05)
    confidence = np.array([0.95] * 4 + [0.55] * 4)
    correct = np.array([1, 1, 1, 0, 1, 1, 0, 0], dtype=bool)
    assert expected_calibration_error(confidence, correct) == pytest.approx(0.5 * 0.2 + 0.5 * 0.05)


def test_temperature_search_recovers_an_overconfident_segmenter():
    rng = np.random.default_rng(0)
    calibrated = rng.normal(0, 2.0, (40_000, 5))
    labels = torch.distributions.Categorical(logits=torch.from_numpy(calibrated)).sample().numpy()
    overconfident = (calibrated * 2.5).astype(np.float32)  # the same beliefs, 2.5x too sharp
    temperature, ece = fit_temperature(overconfident, labels)
    assert temperature == pytest.approx(2.5, rel=0.12)
    before, after = reliability(overconfident, labels), reliability(overconfident, labels, temperature)
    assert after["ece"] < 0.3 * before["ece"] and after["nll"] < before["nll"] and ece == pytest.approx(after["ece"])


def test_calibration_sample_is_bounded_and_skips_void():
    sample = CalibrationSample(per_frame=50, limit=120, seed=1)
    semantic = np.full((32, 64), 255, np.uint8)
    semantic[16:] = 2
    for _ in range(4):
        sample.add(np.random.default_rng(0).normal(size=(19, 8, 16)).astype(np.float32), semantic)
    logits, labels = sample.arrays()
    assert logits.shape == (120, 19) and set(labels.tolist()) == {2}


def test_calibration_sample_keeps_late_frames_as_much_as_early_ones():
    sample = CalibrationSample(per_frame=100, limit=200, seed=0)
    logits = np.zeros((19, 10, 10), np.float32)
    for label in range(10):  # ten frames, each of one class, offering 100 pixels each
        sample.add(logits, np.full((10, 10), label, np.uint8))
    counts = np.bincount(sample.arrays()[1], minlength=10)
    assert counts.sum() == 200 and counts.min() >= 5 and counts[9] > 0  # not the first two frames only


def test_operating_point_meets_the_target_rate():
    rng = np.random.default_rng(3)
    metrics = StreamingOODMetrics(1 << 14)
    gt = (rng.random((64, 64)) < 0.2).astype(np.uint8)
    score = rng.normal(0, 1, gt.shape) + 2.0 * gt
    metrics.update(score.astype(np.float32), gt)
    threshold, tpr, fpr = metrics.operating_point(fpr=0.05)
    flagged = score[gt == 0] >= threshold
    assert fpr <= 0.05 and flagged.mean() == pytest.approx(fpr, abs=1e-3)
    assert (score[gt == 1] >= threshold).mean() == pytest.approx(tpr, abs=1e-3)
    threshold, tpr, _ = metrics.operating_point(tpr=0.9)
    assert tpr >= 0.9 and (score[gt == 1] >= threshold).mean() == pytest.approx(tpr, abs=1e-3)
    with pytest.raises(EvaluationError, match="one target"):
        metrics.operating_point(tpr=0.9, fpr=0.1)


def test_ground_prior_distances():
    camera = GroundCamera.default(100, 200)
    depth = camera.row_depth()
    below = int(camera.horizon) + 10
    assert depth[below] == pytest.approx(camera.focal * camera.mount_height / (below - camera.horizon), rel=1e-5)
    assert depth[-1] < depth[below] and depth.max() <= camera.max_depth
    assert camera.pixels_for(1.0, below + 10) == pytest.approx(2 * camera.pixels_for(1.0, below - 0), rel=0.1)


def test_calibration_yaml_is_a_valid_parameter_file(tmp_path):
    path = tmp_path / "calibration.yaml"
    write_calibration_yaml(path, parameters={"head": "energy", "threshold": -2.5, "calibrated_for": 'a|b"c',
                                             "segmenter_checkpoint": ""}, comment=["fitted here"])
    params = yaml.safe_load(path.read_text())["ood_seg_node"]["ros__parameters"]
    defaults = {f.name: f.default for f in fields(NodeConfig)}
    assert params == {"head": "energy", "threshold": -2.5, "calibrated_for": 'a|b"c', "segmenter_checkpoint": ""}
    assert all(type(value) is type(defaults[key]) for key, value in params.items())
    check_config(NodeConfig(**params))


def _validate(tmp_path, *source: str, extra: tuple[str, ...] = ()) -> tuple[dict, dict]:
    out = tmp_path / "val"
    code = main(["validate", *source, "--head", "energy", "--head", "msp", "--shifts", "fog,noise",
                 "--severities", "1,3", "--out", str(out), *extra])
    assert code == 0
    report = json.loads((out / "report.json").read_text())
    params = yaml.safe_load((out / "calibration.yaml").read_text())["ood_seg_node"]["ros__parameters"]
    for name in ("report.csv", "metrics_vs_severity.png", "conditions.png"):
        assert (out / name).stat().st_size > 0
    return report, params


def test_validate_on_labelled_synthetic_frames(tmp_path):
    report, params = _validate(tmp_path, "--dataset", "synthetic", "--frames", "6", "--height", "96",
                               "--width", "192", extra=("--target-fpr", "0.1"))
    names = [c["condition"] for c in report["conditions"]]
    assert names == ["clean", "fog@1", "fog@3", "noise@1", "noise@3"]
    clean = report["conditions"][0]
    assert 0 < clean["miou"] <= 1 and clean["ece"] is not None and clean["heads"]["energy"]["ap"] > 0
    fog = {c["condition"]: c for c in report["conditions"]}
    assert fog["fog@3"]["miou"] < clean["miou"]  # a strong fog costs accuracy
    fit = report["thresholds"]["energy"]
    assert fit["fit_fpr"] <= 0.1 and fit["heldout_fpr"] is not None
    assert params["head"] == "energy" and params["threshold"] == fit["threshold"]
    assert params["calibrated_for"] == report["meta"]["calibrated_for"] and (tmp_path / "val" /
                                                                              "reliability_clean.png").is_file()
    assert 0.25 <= report["temperature"] <= 8.0
    pooled = report["reliability_heldout"]
    assert pooled["after"]["pixels"] == pooled["before"]["pixels"] > 0


def test_validate_on_a_bag_without_labels(tmp_path):
    dataset = SyntheticDataset(seed=4, frames=6, height=96, width=192)
    unlabelled = [Frame(f.image, None, None, f.name, f.sequence, f.index) for f in dataset]
    write_bag(tmp_path / "drive", unlabelled, progress=False)
    report, params = _validate(tmp_path, "--bag", str(tmp_path / "drive"))
    clean = report["conditions"][0]
    # no labels: no mIoU, ECE or temperature ...
    assert clean["miou"] is None and clean["ece"] is None and report["temperature"] is None
    assert clean["heads"]["energy"]["pixels_out"] > 0  # ... but the inserted objects are anomalies to find
    assert math.isfinite(params["threshold"]) and report["thresholds"]["msp"]["target"] == {"fpr": 0.05}


def test_validate_refuses_bad_options(tmp_path, capsys):
    for bad in (["--severities", "4"], ["--shifts", "hail"], ["--target-fpr", "1.5"], ["--holdout-every", "1"]):
        code = main(["validate", "--dataset", "synthetic", "--frames", "3", "--head", "energy", *bad,
                     "--out", str(tmp_path / "x")])
        assert code == 1
        assert capsys.readouterr().err.count("\n") == 1


def test_node_refuses_a_calibration_for_another_model():
    from ood_seg_node.genval.calibration import calibration_identity

    config = NodeConfig(head="energy", warmup_size="")
    identity = calibration_identity(build_pipeline(config))
    assert identity.startswith("builtin@") and "|energy@" in identity
    build_pipeline(replace(config, calibrated_for=identity))  # the model it was fitted for: accepted
    with pytest.raises(ConfigError, match="fitted for .* but this node runs"):
        build_pipeline(replace(config, head="msp", calibrated_for=identity))


def test_synthetic_world_renders_the_wet_road_and_its_depth():
    sequence = SyntheticDataset(seed=2001, frames=3, height=96, width=192).sequence
    dry, wet = sequence[2], sequence.under(wet=1.0)[2]
    assert np.array_equal(dry.semantic, wet.semantic) and np.array_equal(dry.ood_gt, wet.ood_gt)
    change = np.abs(wet.image.astype(int) - dry.image.astype(int)).sum(axis=2)
    road = dry.semantic == 0
    assert change[road].mean() > 3 * change[~road].mean()  # the world wets the road, not the rest
    rows = np.flatnonzero(road.any(axis=1))
    near, far = dry.depth[rows[-1]][road[rows[-1]]].mean(), dry.depth[rows[0]][road[rows[0]]].mean()
    assert 0 < near < far < np.inf  # true camera depth: the road recedes towards the horizon


def test_validate_correlates_synthetic_and_real_rankings(tmp_path):
    make_roadanomaly(tmp_path / "ra")
    out = tmp_path / "val"
    code = main(["validate", "--dataset", "synthetic", "--frames", "3", "--height", "96", "--width", "192",
                 "--head", "energy", "--head", "msp", "--head", "maxlogit", "--shifts", "noise", "--severities",
                 "3", "--real", f"roadanomaly:{tmp_path / 'ra'}", "--out", str(out)])
    assert code == 0
    real = json.loads((out / "report.json").read_text())["meta"]["real"]
    assert set(real["heads"]) == {"energy", "msp", "maxlogit"}
    for metric in ("ap", "fpr95", "auroc"):
        assert -1.0 <= real[f"spearman_{metric}"] <= 1.0 and -1.0 <= real[f"pearson_{metric}"] <= 1.0
        assert all(0.0 <= real["heads"][h][f"real_{metric}"] <= 1.0 for h in real["heads"])


def test_held_out_rate_interval_resamples_frames():
    from ood_seg_node.genval.calibration import RateCounter

    counter = RateCounter(0.5)
    rng = np.random.default_rng(0)
    for frame in range(20):  # each frame: one object found or missed as a whole, half the time
        gt = np.zeros((8, 8), np.uint8)
        gt[:2, :2] = 1
        score = np.where(gt == 1, float(frame % 2), rng.random((8, 8)) * 0.4)
        counter.add(score, gt, group=frame)
    low, high = counter.interval("tpr")
    assert counter.tpr == pytest.approx(0.5) and counter.fpr == 0.0
    assert low < 0.4 and high > 0.6  # 20 objects, not 80 independent pixels: a wide interval
    assert counter.interval("fpr") == (0.0, 0.0)
    single = RateCounter(0.5)
    single.add(np.ones((2, 2)), np.ones((2, 2), np.uint8))
    assert all(math.isnan(v) for v in single.interval("tpr"))


def test_without_insertions_the_clean_frame_is_segmented_once(monkeypatch):
    """Frames with anomaly labels but no classes: the road comes from the prediction, reused for ``clean``."""
    from ood_seg_node.genval.validate import ValidationOptions, run_validation
    from ood_seg_node.pipeline import Pipeline

    frames = [Frame(f.image, f.ood_gt, None, f.name, f.sequence, f.index)
              for f in SyntheticDataset(seed=4, frames=4, height=64, width=128)]
    pipeline = Pipeline.from_names(head="energy", device="cpu", keep_logits=True)
    calls = []
    process = pipeline.process
    monkeypatch.setattr(pipeline, "process", lambda image: calls.append(image) or process(image))
    result = run_validation(lambda: iter(frames), pipeline, ValidationOptions(objects_per_frame=0, target_fpr=0.2,
                                                                              holdout_every=2))
    assert len(calls) == len(frames) and [c["condition"] for c in result.conditions] == ["clean"]
