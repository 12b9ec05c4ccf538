# Copyright 2026 The ood_seg_node developers. Licensed under the Apache License, Version 2.0.
"""Dataset registry and the benchmark loaders, on tiny datasets written in the published layouts."""

from __future__ import annotations

import logging
import shutil

import cv2
import numpy as np
import pytest
from fixtures import make_fishyscapes, make_lostandfound, make_roadanomaly, make_smiyc, make_streethazards

from ood_seg_node.datasets import FORMATS, DatasetError, open_dataset, parse_dataset_spec
from ood_seg_node.datasets.files import read_rgb


def _assert_matches(dataset, written) -> None:
    frames = list(dataset)
    assert [f.name for f in frames] == written.names
    for frame, gt, image_path in zip(frames, written.ood_gt, written.images, strict=True):
        assert frame.image.dtype == np.uint8 and frame.image.shape[2] == 3
        expected_rgb = cv2.cvtColor(cv2.imread(str(image_path)), cv2.COLOR_BGR2RGB)
        np.testing.assert_array_equal(frame.image, expected_rgb)
        if gt is None:
            assert frame.ood_gt is None
        else:
            assert frame.ood_gt.dtype == np.uint8
            np.testing.assert_array_equal(frame.ood_gt, gt)
        assert frame.semantic is None
    # random access reads the same frame as iteration
    np.testing.assert_array_equal(dataset[len(dataset) - 1].image, frames[-1].image)


def test_registry_lists_every_format():
    assert FORMATS.names() == sorted(
        ["lostandfound", "fishyscapes", "roadanomaly", "smiyc-anomaly", "smiyc-obstacle", "streethazards",
         "synthetic", "bdd-anomaly"]
    )


def test_parse_dataset_spec():
    assert parse_dataset_spec("lostandfound:/data/laf") == ("lostandfound", "/data/laf")
    assert parse_dataset_spec("synthetic") == ("synthetic", "")
    assert parse_dataset_spec("SMIYC-Obstacle:rel/dir") == ("smiyc-obstacle", "rel/dir")


def test_unknown_format_lists_valid_ones(tmp_path):
    with pytest.raises(DatasetError) as error:
        open_dataset(f"cityscapes:{tmp_path}")
    message = str(error.value)
    assert "cityscapes" in message and "lostandfound" in message and "smiyc-obstacle" in message
    assert "\n" not in message


def test_file_format_needs_existing_root(tmp_path):
    with pytest.raises(DatasetError, match="needs a root"):
        open_dataset("roadanomaly")
    with pytest.raises(DatasetError, match="missing"):
        open_dataset(f"roadanomaly:{tmp_path / 'nope'}")


def test_unknown_option_is_refused(tmp_path):
    make_smiyc(tmp_path)
    with pytest.raises(DatasetError, match="takes no option 'split'"):
        open_dataset(f"smiyc-anomaly:{tmp_path}", split="test")
    # None-valued options are ignored, so command-line defaults pass through
    assert len(open_dataset(f"smiyc-anomaly:{tmp_path}", split=None)) == 3


def test_lostandfound_order_names_sequences_and_labels(tmp_path):
    written = make_lostandfound(tmp_path)
    make_lostandfound(tmp_path, split="train")
    dataset = open_dataset(f"lostandfound:{tmp_path}")
    assert dataset.kind == "obstacle" and dataset.has_semantic is False
    assert len(dataset) == 6  # right stereo images and the train split are not mixed in
    _assert_matches(dataset, written)
    frames = list(dataset)
    assert [(f.sequence, f.index) for f in frames] == [
        ("02_Hanns_Klemm_Str_44_000000", 10),
        ("02_Hanns_Klemm_Str_44_000000", 40),
        ("02_Hanns_Klemm_Str_44_000001", 20),
        ("04_Maurener_Weg_8_000000", 30),
        ("04_Maurener_Weg_8_000003", 50),
        ("04_Maurener_Weg_8_000003", 60),
    ]
    gt = frames[0].ood_gt
    assert set(np.unique(gt)) == {0, 1, 255}
    assert (gt[:4] == 255).all() and (gt[6:9, 5:9] == 1).all() and gt[10, 0] == 0


def test_lostandfound_no_known_drops_bicycles_children_and_unlabelled(tmp_path):
    make_lostandfound(tmp_path)
    dataset = open_dataset(f"lostandfound:{tmp_path}", subset="no-known")
    assert [f.name for f in dataset] == [
        "02_Hanns_Klemm_Str_44_000000_000010_leftImg8bit",
        "04_Maurener_Weg_8_000000_000030_leftImg8bit",
        "04_Maurener_Weg_8_000003_000060_leftImg8bit",
    ]


def test_lostandfound_train_split_and_bad_options(tmp_path):
    make_lostandfound(tmp_path, split="train")
    assert len(open_dataset(f"lostandfound:{tmp_path}", split="train")) == 6
    with pytest.raises(DatasetError, match="leftImg8bit/test"):
        open_dataset(f"lostandfound:{tmp_path}")
    with pytest.raises(DatasetError, match="valid: test, train"):
        open_dataset(f"lostandfound:{tmp_path}", split="val")
    with pytest.raises(DatasetError, match="valid: all, no-known"):
        open_dataset(f"lostandfound:{tmp_path}", split="train", subset="some")


def test_fishyscapes_subsets_and_kinds(tmp_path):
    written = make_fishyscapes(tmp_path)
    laf = open_dataset(f"fishyscapes:{tmp_path}")
    assert laf.kind == "obstacle" and len(laf) == 3
    _assert_matches(laf, written["LostAndFound"])
    static = open_dataset(f"fishyscapes:{tmp_path}", subset="static")
    assert static.kind == "anomaly" and len(static) == 2
    _assert_matches(static, written["Static"])
    # the subset folder itself is accepted as root
    assert len(open_dataset(f"fishyscapes:{tmp_path / 'Static'}", subset="static")) == 2
    with pytest.raises(DatasetError, match="lostandfound, static"):
        open_dataset(f"fishyscapes:{tmp_path}", subset="web")


def test_roadanomaly_official_layout_follows_frame_list(tmp_path):
    written = make_roadanomaly(tmp_path)
    dataset = open_dataset(f"roadanomaly:{tmp_path}")
    assert dataset.kind == "anomaly"
    _assert_matches(dataset, written)  # palette labels: background and road -> 0, anomaly -> 1
    assert written.names == ["zebra01_crossing", "animals02_cows", "cones03_road"]


def test_streethazards_reads_classes_and_anomaly_in_town_then_number_order(tmp_path):
    written = make_streethazards(tmp_path)
    for root in (tmp_path, tmp_path / "test"):  # the folder of both archives, or the test archive itself
        dataset = open_dataset(f"streethazards:{root}")
        assert dataset.kind == "anomaly" and dataset.has_semantic and dataset.label_space == "streethazards"
        frames = list(dataset)
        assert [f.name for f in frames] == written.names
        assert [f.sequence for f in frames] == ["t5", "t5", "t6"]
        for frame, gt, semantic in zip(frames, written.ood_gt, written.semantic, strict=True):
            np.testing.assert_array_equal(frame.ood_gt, gt)
            np.testing.assert_array_equal(frame.semantic, semantic)
            assert frame.label_space == "streethazards"
            assert frame.semantic[frame.semantic != 255].max() == 12  # 13 (traffic sign) - 1
            assert (frame.semantic[frame.ood_gt == 1] == 255).all()  # the anomaly is no class
    train = make_streethazards(tmp_path / "sh", split="validation")
    assert [f.name for f in open_dataset(f"streethazards:{tmp_path / 'sh'}", split="validation")] == train.names
    with pytest.raises(DatasetError, match="unknown StreetHazards split 'val'"):
        open_dataset(f"streethazards:{tmp_path}", split="val")
    with pytest.raises(DatasetError, match="StreetHazards layout not found"):
        open_dataset(f"streethazards:{tmp_path / 'sh'}")  # no test archive there


def test_roadanomaly_converted_layout(tmp_path):
    written = make_roadanomaly(tmp_path, layout="converted")
    _assert_matches(open_dataset(f"roadanomaly:{tmp_path}"), written)


@pytest.mark.parametrize("track", ["anomaly", "obstacle"])
def test_smiyc_tracks_with_and_without_labels(tmp_path, track):
    unlabeled = ("validation0001",) if track == "anomaly" else ("gravel_000003",)
    written = make_smiyc(tmp_path, track=track, unlabeled=unlabeled)
    dataset = open_dataset(f"smiyc-{track}:{tmp_path}")
    assert dataset.kind == track
    _assert_matches(dataset, written)
    assert sum(f.ood_gt is None for f in dataset) == 1


def test_missing_label_fails_or_is_skipped(tmp_path, caplog):
    written = make_fishyscapes(tmp_path)
    missing = written["LostAndFound"].labels[1]
    missing.unlink()
    with pytest.raises(DatasetError) as error:
        open_dataset(f"fishyscapes:{tmp_path}")
    assert str(missing) in str(error.value) and "\n" not in str(error.value)
    with caplog.at_level(logging.WARNING):
        dataset = open_dataset(f"fishyscapes:{tmp_path}", skip_bad=True)
    assert [f.name for f in dataset] == ["0", "2"]
    assert str(missing) in caplog.text


def test_corrupt_image_fails_or_is_skipped(tmp_path, caplog):
    written = make_smiyc(tmp_path)
    corrupt = written.images[0]
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    dataset = open_dataset(f"smiyc-anomaly:{tmp_path}")
    with pytest.raises(DatasetError) as error:
        list(dataset)
    assert str(corrupt) in str(error.value) and "\n" not in str(error.value)
    with caplog.at_level(logging.WARNING):
        frames = list(open_dataset(f"smiyc-anomaly:{tmp_path}", skip_bad=True))
    assert [f.name for f in frames] == written.names[1:]
    assert str(corrupt) in caplog.text


def test_corrupt_label_and_size_mismatch(tmp_path):
    written = make_lostandfound(tmp_path)
    written.labels[0].write_bytes(b"not a png")
    dataset = open_dataset(f"lostandfound:{tmp_path}")
    with pytest.raises(DatasetError, match="cannot decode label file"):
        dataset[0]
    cv2.imwrite(str(written.labels[1]), np.zeros((3, 3), np.uint8))
    with pytest.raises(DatasetError, match="3x3, its image is 20x12"):
        dataset[1]
    with pytest.raises(DatasetError, match="cannot decode label file"):
        open_dataset(f"lostandfound:{tmp_path}", subset="no-known")
    # frame 10 (corrupt label) is skipped; frame 40 now has an all-zero 3x3 label: unlabelled, dropped
    kept = open_dataset(f"lostandfound:{tmp_path}", subset="no-known", skip_bad=True)
    assert [f.index for f in kept] == [30, 60]


def test_lostandfound_bad_name_and_empty_split(tmp_path):
    written = make_lostandfound(tmp_path)
    odd = written.images[0].with_name("strange_leftImg8bit.png")
    shutil.copy(written.images[0], odd)
    with pytest.raises(DatasetError, match="strange_leftImg8bit.png"):
        open_dataset(f"lostandfound:{tmp_path}")
    assert len(open_dataset(f"lostandfound:{tmp_path}", skip_bad=True)) == 6
    (tmp_path / "leftImg8bit" / "train").mkdir()
    with pytest.raises(DatasetError, match="no Lost&Found images"):
        open_dataset(f"lostandfound:{tmp_path}", split="train")


def test_read_rgb_reports_missing_file(tmp_path):
    with pytest.raises(DatasetError, match="image file missing"):
        read_rgb(tmp_path / "absent.png")


def test_synthetic_through_the_registry():
    dataset = open_dataset("synthetic:seed=2,frames=3", height=64, width=128)
    assert dataset.kind == "obstacle" and dataset.has_semantic is True and len(dataset) == 3
    assert (dataset.camera.width, dataset.camera.height) == (128, 64)
    frames = list(dataset)
    assert [f.index for f in frames] == [0, 1, 2] and len({f.name for f in frames}) == 3
    for frame in frames:
        assert frame.image.shape == (64, 128, 3) and frame.semantic.shape == frame.ood_gt.shape == (64, 128)
        assert set(np.unique(frame.ood_gt)) <= {0, 1, 255}
    np.testing.assert_array_equal(dataset[1].image, frames[1].image)  # deterministic rendering
    with pytest.raises(DatasetError, match="given twice"):
        open_dataset("synthetic:seed=2", seed=3)
    with pytest.raises(DatasetError, match="not key=<integer>"):
        open_dataset("synthetic:seed=two")
    with pytest.raises(DatasetError, match="takes no option 'subset'"):
        open_dataset("synthetic", subset="all")
    with pytest.raises(DatasetError, match="frames must be positive"):
        open_dataset("synthetic", frames=0)
