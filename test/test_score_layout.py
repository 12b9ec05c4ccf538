# Copyright 2026 The ood_seg_node developers. Licensed under the Apache License, Version 2.0.
"""Scores in the SMIYC benchmark's layout: export, read back with h5py, evaluate from the files."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
from fixtures import make_lostandfound, make_smiyc

from ood_seg_node.cli import main
from ood_seg_node.datasets import open_dataset
from ood_seg_node.evaluation import EvaluationError
from ood_seg_node.evaluation.score_layout import benchmark_directory, frame_id, read_score, score_path, write_score
from ood_seg_node.pipeline import Pipeline


def test_layout_names_follow_the_benchmark(tmp_path):
    assert benchmark_directory("smiyc-anomaly") == "AnomalyTrack-all"
    assert benchmark_directory("smiyc-obstacle") == "ObstacleTrack-all"
    assert benchmark_directory("lostandfound", "train") == "LostAndFound-train"
    assert frame_id("04_Maurener_Weg_8_000000_000030_leftImg8bit") == "04_Maurener_Weg_8_000000_000030"
    path = score_path(tmp_path, "M", "LostAndFound-test", "04_Maurener_Weg_8_000000_000030_leftImg8bit")
    assert path == tmp_path / "anomaly_p" / "M" / "LostAndFound-test" / "04_Maurener_Weg_8_000000_000030.hdf5"
    with pytest.raises(EvaluationError, match="plain folder name"):
        score_path(tmp_path, "../x", "d", "f")


def test_written_file_is_what_the_benchmark_saver_writes(tmp_path):
    score = np.random.default_rng(0).normal(size=(6, 9)).astype(np.float32)
    write_score(tmp_path / "f.hdf5", score)
    with h5py.File(tmp_path / "f.hdf5", "r") as file:
        stored = file["value"]
        assert list(file.keys()) == ["value"] and stored.dtype == np.float16 and stored.compression == "gzip"
        assert stored.compression_opts == 9 and stored.shape == (6, 9)
    assert np.array_equal(read_score(tmp_path / "f.hdf5"), score.astype(np.float16).astype(np.float32))
    with h5py.File(tmp_path / "other.hdf5", "w") as file:
        file.create_dataset("scores", data=score)
    with pytest.raises(EvaluationError, match="no dataset 'value'"):
        read_score(tmp_path / "other.hdf5")
    (tmp_path / "broken.hdf5").write_bytes(b"not hdf5")
    with pytest.raises(EvaluationError, match="cannot read score file"):
        read_score(tmp_path / "broken.hdf5")


def test_export_scores_round_trip_and_evaluate_from_the_files(tmp_path):
    make_smiyc(tmp_path / "at", unlabeled=("validation0002",))
    spec = f"smiyc-anomaly:{tmp_path / 'at'}"
    assert main(["export-scores", "--dataset", spec, "--head", "energy", "--device", "cpu", "--method", "mine",
                 "--out", str(tmp_path / "outputs")]) == 0
    folder = tmp_path / "outputs" / "anomaly_p" / "mine" / "AnomalyTrack-all"
    assert sorted(p.name for p in folder.iterdir()) == [f"validation000{i}.hdf5" for i in range(3)]
    pipeline = Pipeline.from_names(head="energy", device="cpu")
    for frame in open_dataset(spec):  # every frame, labelled or not, within float16 of the pipeline's score
        expected = pipeline.process(frame.image).score
        with h5py.File(folder / f"{frame.name}.hdf5", "r") as file:
            stored = file["value"][()]
        assert stored.dtype == np.float16 and stored.shape == expected.shape
        np.testing.assert_allclose(stored.astype(np.float32), expected, rtol=1e-3, atol=1e-3)
    make_smiyc(tmp_path / "labelled")
    labelled = f"smiyc-anomaly:{tmp_path / 'labelled'}"
    assert main(["export-scores", "--dataset", labelled, "--head", "energy", "--device", "cpu", "--method", "mine",
                 "--out", str(tmp_path / "o2")]) == 0
    exported = tmp_path / "o2" / "anomaly_p" / "mine" / "AnomalyTrack-all"
    runs = {"from_files": ["--scores", str(exported)], "from_head": ["--head", "energy", "--device", "cpu"]}
    for out, extra in runs.items():
        assert main(["evaluate", "--dataset", labelled, *extra, "--overlays", "0", "--out", str(tmp_path / out)]) == 0
    from_files = json.loads((tmp_path / "from_files" / "metrics.json").read_text())
    from_head = json.loads((tmp_path / "from_head" / "metrics.json").read_text())
    files, head = from_files["heads"]["mine"], from_head["heads"]["energy"]  # named after the method folder
    assert files["auroc"] == pytest.approx(head["auroc"], abs=0.02)
    assert files["ap"] == pytest.approx(head["ap"], abs=0.02)


def test_lostandfound_ids_drop_the_image_tag(tmp_path):
    written = make_lostandfound(tmp_path / "laf")
    assert main(["export-scores", "--dataset", f"lostandfound:{tmp_path / 'laf'}", "--head", "msp", "--device", "cpu",
                 "--method", "m", "--out", str(tmp_path / "out")]) == 0
    folder = tmp_path / "out" / "anomaly_p" / "m" / "LostAndFound-test"
    names = sorted(p.stem for p in folder.iterdir())
    assert names == sorted(frame_id(n) for n in written.names) and not any("leftImg8bit" in n for n in names)


def test_evaluate_skips_frames_without_labels_and_counts_them(tmp_path):
    make_smiyc(tmp_path / "at", unlabeled=("validation0002",))
    spec = f"smiyc-anomaly:{tmp_path / 'at'}"
    assert main(["evaluate", "--dataset", spec, "--head", "msp", "--device", "cpu", "--overlays", "0",
                 "--out", str(tmp_path / "e")]) == 0
    report = json.loads((tmp_path / "e" / "metrics.json").read_text())
    assert report["run"]["frames_without_labels"] == 1 and report["heads"]["msp"]["frames"] == 2
    make_smiyc(tmp_path / "none", unlabeled=("validation0000", "validation0001", "validation0002"))
    assert main(["evaluate", "--dataset", f"smiyc-anomaly:{tmp_path / 'none'}", "--head", "msp", "--device", "cpu",
                 "--out", str(tmp_path / "n")]) == 1
