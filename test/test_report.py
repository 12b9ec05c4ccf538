# Copyright 2026 The ood_seg_node developers. Licensed under the Apache License, Version 2.0.
"""Report files (JSON, CSV, PR/ROC plots), the terminal table and the score overlay."""

from __future__ import annotations

import csv
import json

import matplotlib.image
import numpy as np
import pytest

from ood_seg_node.evaluation import (
    CSV_COLUMNS,
    EvaluationError,
    StreamingOODMetrics,
    format_table,
    overlay,
    write_report,
)


def head_results(seed: int) -> tuple[dict, dict]:
    rng = np.random.default_rng(seed)
    metrics = StreamingOODMetrics(bins=1 << 14)
    for _ in range(3):
        label = (rng.random((32, 32)) < 0.2).astype(np.uint8)
        metrics.update(rng.normal(size=label.shape) + (1 + seed) * label, label)
    result = metrics.compute()
    result.update(siou=0.4, ppv=0.5, mean_f1=0.3, latency_ms=12.5)
    return result, metrics.curves()


def test_write_report(tmp_path) -> None:
    results, curves = {}, {}
    for seed, name in enumerate(["msp", "energy"]):
        results[name], curves[name] = head_results(seed)
    # NaN is written as null, numpy scalars as plain numbers.
    results["no_gt"] = {"ap": float("nan"), "frames": 4, "miou": np.float32(0.5)}
    write_report(tmp_path / "out", results, curves, meta={"dataset": "synthetic:7"})
    out = tmp_path / "out"

    document = json.loads((out / "metrics.json").read_text())
    assert set(document["heads"]) == {"msp", "energy", "no_gt"}
    assert document["heads"]["msp"]["ap"] == pytest.approx(results["msp"]["ap"])
    assert document["heads"]["no_gt"]["ap"] is None
    assert document["heads"]["no_gt"]["miou"] == pytest.approx(0.5)
    assert document["run"]["dataset"] == "synthetic:7" and "version" in document["run"]

    with (out / "metrics.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["head"] for row in rows] == ["msp", "energy", "no_gt"]
    assert tuple(rows[0]) == CSV_COLUMNS
    assert float(rows[1]["auroc"]) == pytest.approx(results["energy"]["auroc"], abs=1e-5)
    assert rows[2]["ap"] == "" and rows[2]["frames"] == "4"

    for name in ("pr_curves.png", "roc_curves.png"):
        picture = matplotlib.image.imread(out / name)
        assert picture.ndim == 3 and picture.shape[0] > 200 and picture.shape[1] > 200
        assert picture[..., :3].std() > 0.05  # something was drawn


def test_write_report_without_curves(tmp_path) -> None:
    write_report(tmp_path, {"msp": {"ap": 0.5}}, {})
    assert (tmp_path / "pr_curves.png").stat().st_size > 1000
    assert json.loads((tmp_path / "metrics.json").read_text())["heads"]["msp"]["ap"] == 0.5


def test_format_table() -> None:
    table = format_table({"msp": {"ap": 0.1234, "fpr95": 0.5, "frames": 20, "latency_ms": 3.25},
                          "a_long_head_name": {"auroc": float("nan")}})
    lines = table.splitlines()
    header = lines[0].split()
    assert header[:4] == ["head", "AP", "FPR95", "AUROC"] and header[-2:] == ["frames", "ms"]
    msp = lines[2].split()
    assert msp[:3] == ["msp", "12.34", "50.00"] and msp[-2:] == ["20", "3.2"]
    assert lines[3].split() == ["a_long_head_name"] + ["-"] * 9
    assert len(lines[2]) == len(lines[3])  # fixed width


def test_overlay() -> None:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (40, 50, 3), dtype=np.uint8)
    score = np.zeros((40, 50), np.float32)
    score[10:20, 10:20] = 5.0
    gt = np.zeros((40, 50), np.uint8)
    gt[25:35, 25:35] = 1
    out = overlay(image, score, gt, threshold=1.0)
    assert out.shape == (40, 50, 3) and out.dtype == np.uint8
    assert np.array_equal(out[0:5, 0:5], image[0:5, 0:5])  # below the threshold: untouched
    assert not np.array_equal(out[12:18, 12:18], image[12:18, 12:18])  # above: heat map blended
    assert np.all(out[25, 25:35] == (0, 255, 0))  # ground-truth outline
    assert not np.all(out[30, 30] == (0, 255, 0))  # ... but not its inside
    everywhere = overlay(image[..., 0], score)  # grey image, no threshold: blended everywhere
    assert everywhere.shape == (40, 50, 3) and not np.array_equal(everywhere[0:5, 0:5, 0], image[0:5, 0:5, 0])
    with pytest.raises(EvaluationError, match="score shape"):
        overlay(image, score[:, :10])
