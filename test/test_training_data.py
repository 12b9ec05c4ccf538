# Copyright 2026 The ood_seg_node developers. Licensed under the Apache License, Version 2.0.
"""Training data loaders (Cityscapes, BDD-Anomaly, COCO outliers, the real-data API) on tiny fixtures.

Every fixture is written here, in the exact published layout: Cityscapes' ``leftImg8bit/`` + ``gtFine/``,
BDD100K's ``seg/images`` + ``seg/labels`` (and anomaly-seg's shifted ``seg/train_labels``), COCO 2017's
``annotations/instances_train2017.json`` + ``train2017/``.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from fixtures import make_streethazards
from PIL import Image

from ood_seg_node.datasets.base import DatasetError
from ood_seg_node.datasets.bdd_anomaly import BDDAnomaly
from ood_seg_node.datasets.cityscapes_train import CityscapesTrain, label_ids_to_train_ids
from ood_seg_node.training.coco_outliers import (
    CocoOutliers,
    annotation_mask,
    polygons_to_mask,
    rle_counts_to_string,
    rle_decode,
    rle_encode,
    rle_string_to_counts,
)
from ood_seg_node.training.outliers import FolderOutliers, OutlierError, ProceduralOutliers
from ood_seg_node.training.real_data import (
    Resized,
    WithOutliers,
    outlier_source,
    parse_training_dataset,
    training_sources,
)

H, W = 16, 32


def _png(path: Path, values: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(values.astype(np.uint8)).save(path)


def _rgb(path: Path, seed: int, shape: tuple[int, int] = (H, W)) -> np.ndarray:
    rgb = np.random.default_rng(seed).integers(0, 256, (*shape, 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    return rgb


def _flat_jpeg(path: Path, colour: tuple[int, int, int], shape: tuple[int, int]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rgb = np.empty((*shape, 3), np.uint8)
    rgb[:] = colour
    assert cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 100])


# --------------------------------------------------------------------------------------------- Cityscapes

# A labelIds map with hand-checked trainIds: road 7 -> 0, car 26 -> 13, bicycle 33 -> 18, train 31 -> 16,
# unlabeled 0, parking 9, caravan 29 -> 255.
LABEL_IDS = np.zeros((H, W), np.uint8)
LABEL_IDS[:8] = 7
LABEL_IDS[8:, :8] = 26
LABEL_IDS[8:, 8:12] = 33
LABEL_IDS[8:, 12:16] = 31
LABEL_IDS[8:, 16:20] = 9
LABEL_IDS[8:, 20:24] = 29


def make_cityscapes(root: Path) -> dict[str, np.ndarray]:
    """train: aachen (2 frames: one labelTrainIds, one labelIds only), bochum (1 frame); val: frankfurt (1)."""
    train_ids = np.full((H, W), 255, np.uint8)
    train_ids[:, :10] = 0
    train_ids[:, 10:20] = 11
    images = {}
    plan = [("train", "aachen", "aachen_000000_000019", "trainIds"),
            ("train", "aachen", "aachen_000001_000019", "labelIds"),
            ("train", "bochum", "bochum_000000_000313", "trainIds"),
            ("val", "frankfurt", "frankfurt_000000_000294", "labelIds")]
    for seed, (split, city, stem, kind) in enumerate(plan):
        images[stem] = _rgb(root / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png", seed)
        labels = root / "gtFine" / split / city
        _png(labels / f"{stem}_gtFine_labelIds.png", LABEL_IDS)
        _png(labels / f"{stem}_gtFine_color.png", np.zeros((H, W), np.uint8))  # ignored
        if kind == "trainIds":
            _png(labels / f"{stem}_gtFine_labelTrainIds.png", train_ids)
    return images


def test_label_ids_convert_with_the_official_table():
    ids = np.arange(34, dtype=np.uint8)
    expected = np.full(34, 255)
    for label_id, train_id in {7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10,
                               24: 11, 25: 12, 26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18}.items():
        expected[label_id] = train_id
    assert label_ids_to_train_ids(ids).tolist() == expected.tolist()


def test_cityscapes_frames_are_full_size_inliers_with_train_ids(tmp_path):
    images = make_cityscapes(tmp_path)
    train = CityscapesTrain(tmp_path, split="train")
    assert len(train) == 3 and train.label_space == "cityscapes"
    assert [r.name for r in train.records] == ["aachen_000000_000019", "aachen_000001_000019",
                                               "bochum_000000_000313"]
    first, converted = train[0], train[1]
    assert first.image.shape == (H, W, 3) and np.array_equal(first.image, images["aachen_000000_000019"])
    assert first.sequence == "aachen" and train[2].sequence == "bochum"
    # labelTrainIds is preferred over labelIds when both exist
    assert set(np.unique(first.semantic)) == {0, 11, 255}
    # the labelIds-only frame: hand-checked pixels
    sem = converted.semantic
    assert sem[0, 0] == 0 and sem[15, 0] == 13 and sem[15, 9] == 18 and sem[15, 13] == 16
    assert sem[15, 17] == 255 and sem[15, 21] == 255 and sem[15, 30] == 255
    for frame in (first, converted):
        assert frame.ood_gt.dtype == np.uint8
        assert np.array_equal(frame.ood_gt == 255, frame.semantic == 255)
        assert set(np.unique(frame.ood_gt)) <= {0, 255}
    assert len(CityscapesTrain(tmp_path, split="val")) == 1


def _one_line(error: pytest.ExceptionInfo) -> str:
    message = str(error.value)
    assert "\n" not in message
    return message


def test_cityscapes_layout_errors_are_one_line(tmp_path):
    with pytest.raises(DatasetError) as error:
        CityscapesTrain(tmp_path)
    assert "leftImg8bit" in _one_line(error)
    make_cityscapes(tmp_path)
    with pytest.raises(DatasetError) as error:
        CityscapesTrain(tmp_path, split="test")
    assert "split" in _one_line(error)
    (tmp_path / "gtFine" / "val" / "frankfurt" / "frankfurt_000000_000294_gtFine_labelIds.png").unlink()
    with pytest.raises(DatasetError) as error:
        CityscapesTrain(tmp_path, split="val")
    assert "frankfurt_000000_000294_leftImg8bit.png has no label" in _one_line(error)
    _png(tmp_path / "gtFine" / "val" / "frankfurt" / "frankfurt_000000_000294_gtFine_labelIds.png",
         np.zeros((H, W + 2), np.uint8))
    val = CityscapesTrain(tmp_path, split="val")
    with pytest.raises(DatasetError) as error:
        val[0]
    assert "34x16" in _one_line(error) and "32x16" in str(error.value)


# -------------------------------------------------------------------------------------------- BDD-Anomaly


def make_bdd(root: Path, *, shifted: bool = False) -> None:
    """train: 2 clean + 1 with a motorcycle; val: 1 clean + 1 with a train + 1 with a bicycle."""
    plan = {"train": [("0a-clean", None), ("0b-moto", 17), ("0c-clean", None)],
            "val": [("1a-clean", None), ("1b-train", 16), ("1c-bike", 18)]}
    for split, frames in plan.items():
        for seed, (stem, anomaly) in enumerate(frames):
            _rgb(root / "bdd100k" / "seg" / "images" / split / f"{stem}.jpg", seed)
            ids = np.full((H, W), 255, np.uint8)
            ids[:8] = 0  # road
            ids[8:, :8] = 13  # car
            if anomaly is not None:
                ids[10:14, 20:28] = anomaly
            if shifted:
                values = np.where(ids == 255, 1, ids + 2)
                _png(root / "bdd100k" / "seg" / "train_labels" / split / f"{stem}_train_id.png", values)
            else:
                _png(root / "bdd100k" / "seg" / "labels" / split / f"{stem}_train_id.png", ids)
    (root / "bdd100k" / "seg" / "images" / "test").mkdir()  # released without labels: never read


@pytest.mark.parametrize("shifted", [False, True])
def test_bdd_anomaly_split_follows_the_official_code(tmp_path, shifted):
    make_bdd(tmp_path, shifted=shifted)
    training = BDDAnomaly(tmp_path, split="training")
    validation = BDDAnomaly(tmp_path / "bdd100k", split="validation")
    test = BDDAnomaly(tmp_path, split="test")
    assert [r.name for r in training.records] == ["0a-clean", "0c-clean"]
    assert [r.name for r in validation.records] == ["1a-clean"]
    assert [r.name for r in test.records] == ["0b-moto", "1b-train", "1c-bike"]
    frame = training[0]
    assert frame.image.shape == (H, W, 3) and frame.label_space == "cityscapes"
    assert frame.semantic[0, 0] == 0 and frame.semantic[15, 0] == 13 and frame.semantic[15, 31] == 255
    assert np.array_equal(frame.ood_gt == 255, frame.semantic == 255)
    for anomalous in test:
        expected = np.zeros((H, W), np.uint8)
        expected[10:14, 20:28] = 1
        assert np.array_equal(anomalous.ood_gt, expected)  # void counts as inlier, as eval_ood.py scores it
        assert (anomalous.semantic[10:14, 20:28] == 255).all()  # held-out classes are void in semantic


def test_bdd_anomaly_errors_are_one_line(tmp_path):
    with pytest.raises(DatasetError) as error:
        BDDAnomaly(tmp_path)
    assert "seg/images" in _one_line(error)
    make_bdd(tmp_path)
    with pytest.raises(DatasetError) as error:
        BDDAnomaly(tmp_path, split="val")
    assert "training, validation, test" in _one_line(error)
    (tmp_path / "bdd100k" / "seg" / "labels" / "val" / "1a-clean_train_id.png").unlink()
    with pytest.raises(DatasetError) as error:
        BDDAnomaly(tmp_path, split="validation")
    assert "1a-clean.jpg has no label" in _one_line(error)


# ---------------------------------------------------------------------------------------------- COCO masks


def test_compressed_rle_matches_a_hand_computed_string():
    # counts 0, 40, 10, 30: "0"; 40 = 8 + 1 * 32 -> groups 8 | 0x20 ("X") and 1 ("1"); 10 -> ":";
    # the fourth is stored as 30 - 40 = -10 -> group 22 with the sign bit 0x10 -> "F"
    assert rle_counts_to_string([0, 40, 10, 30]) == "0X1:F"
    assert rle_string_to_counts("0X1:F") == [0, 40, 10, 30]
    mask = rle_decode("0X1:F", (8, 10))
    assert np.array_equal(mask, rle_decode([0, 40, 10, 30], (8, 10)))
    # column-major: columns 0-4 set, column 5 and the top two pixels of column 6 clear, the rest set
    assert mask[:, :5].all() and not mask[:, 5].any() and not mask[:2, 6].any() and mask[2:, 6:].all()


def test_compressed_and_uncompressed_rle_decode_to_the_same_mask():
    rng = np.random.default_rng(3)
    for _ in range(50):
        height, width = (int(v) for v in rng.integers(1, 40, 2))
        mask = rng.random((height, width)) < rng.random()
        counts = rle_encode(mask)
        assert np.array_equal(rle_decode(counts, (height, width)), mask)
        assert np.array_equal(rle_decode(rle_counts_to_string(counts), (height, width)), mask)
    with pytest.raises(ValueError, match="cover"):
        rle_decode([3, 4], (3, 3))


def test_polygons_fill_the_pixels_they_cover():
    square = polygons_to_mask([[10, 10, 20, 10, 20, 20, 10, 20]], 30, 30)
    assert square.sum() == 100 and square[10:20, 10:20].all()
    two = annotation_mask([[0, 0, 4, 0, 4, 4, 0, 4], [6, 6, 8, 6, 8, 8, 6, 8]], 10, 10)
    assert two.sum() == 16 + 4 and two[0:4, 0:4].all() and two[6:8, 6:8].all()
    with pytest.raises(ValueError, match="size"):
        annotation_mask({"counts": [100], "size": [10, 10]}, 10, 12)


# --------------------------------------------------------------------------------------------- COCO source

CATEGORIES = [(1, "person"), (2, "bicycle"), (3, "car"), (4, "motorcycle"), (6, "bus"), (7, "train"),
              (8, "truck"), (10, "traffic light"), (13, "stop sign"), (17, "cat"), (18, "dog"), (44, "bottle")]
SIZE = (480, 500)  # (h, w): Meta-OoD keeps images at least 480 px high and wide
COLOURS = {1: (200, 40, 40), 2: (40, 200, 40), 3: (40, 40, 200), 4: (200, 200, 40)}


def coco_masks() -> dict[str, np.ndarray]:
    h, w = SIZE
    dog = np.zeros(SIZE, bool)
    dog[100:200, 50:250] = True  # the polygon below
    bottle = np.zeros(SIZE, bool)
    bottle[300:380, 400:440] = True  # uncompressed RLE
    cat = np.zeros(SIZE, bool)
    cat[20:120, 300:360] = True  # compressed RLE
    cat[60:70, 360:380] = True
    crowd = np.zeros(SIZE, bool)
    crowd[400:470, 0:200] = True  # crowd region, uncompressed RLE
    tiny = np.zeros(SIZE, bool)
    tiny[5:10, 5:10] = True  # 25 px: below the instance area floor
    return {"dog": dog, "bottle": bottle, "cat": cat, "crowd": crowd, "tiny": tiny}


def make_coco(root: Path) -> dict[str, np.ndarray]:
    """Image 1: dog (polygon) + bottle (RLE) + tiny; 2: cat (compressed RLE) + crowd; 3: dog + car (excluded);
    4: too small; 5: annotated but its file is missing; 6: a file without annotations."""
    masks = coco_masks()
    h, w = SIZE

    def ann(i, image_id, category, segmentation, mask, crowd=0):
        return {"id": i, "image_id": image_id, "category_id": category, "segmentation": segmentation,
                "area": float(mask.sum()), "bbox": [0, 0, 1, 1], "iscrowd": crowd}

    def rle(mask, compressed=False):
        counts = rle_encode(mask)
        return {"counts": rle_counts_to_string(counts) if compressed else counts, "size": [h, w]}

    polygon = [[50, 100, 250, 100, 250, 200, 50, 200]]
    annotations = [
        ann(1, 1, 18, polygon, masks["dog"]),
        ann(2, 1, 44, rle(masks["bottle"]), masks["bottle"]),
        ann(3, 1, 44, [[5, 5, 10, 5, 10, 10, 5, 10]], masks["tiny"]),
        ann(4, 2, 17, rle(masks["cat"], compressed=True), masks["cat"]),
        ann(5, 2, 17, rle(masks["crowd"]), masks["crowd"], crowd=1),
        ann(6, 3, 18, polygon, masks["dog"]),
        ann(7, 3, 3, [[300, 300, 400, 300, 400, 400, 300, 400]], masks["dog"]),  # a car: image 3 is dropped
        ann(8, 4, 18, [[10, 10, 100, 10, 100, 100, 10, 100]], masks["dog"]),
        ann(9, 5, 18, polygon, masks["dog"]),
    ]
    images = [{"id": i, "file_name": f"{i:012d}.jpg", "height": h, "width": w} for i in (1, 2, 3, 5, 6)]
    images.append({"id": 4, "file_name": f"{4:012d}.jpg", "height": 400, "width": 640})
    data = {"images": images, "annotations": annotations,
            "categories": [{"id": i, "name": name, "supercategory": ""} for i, name in CATEGORIES]}
    (root / "annotations").mkdir(parents=True)
    (root / "annotations" / "instances_train2017.json").write_text(json.dumps(data))
    for image_id, colour in COLOURS.items():
        _flat_jpeg(root / "train2017" / f"{image_id:012d}.jpg", colour, SIZE if image_id != 4 else (400, 640))
    _flat_jpeg(root / "train2017" / f"{6:012d}.jpg", (90, 90, 90), SIZE)
    return masks


def _box(mask: np.ndarray) -> np.ndarray:
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    return mask[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]


def _image_id(rgb: np.ndarray) -> int:
    mean = rgb.reshape(-1, 3).mean(axis=0)
    return min(COLOURS, key=lambda i: float(np.abs(mean - COLOURS[i]).sum()))


def test_coco_protocol_drops_cityscapes_classes_small_and_missing_images(tmp_path):
    make_coco(tmp_path)
    coco = CocoOutliers(tmp_path)
    assert [image.path.name for image in coco.images] == ["000000000001.jpg", "000000000002.jpg"]
    assert [len(image.instances) for image in coco.images] == [2, 1]  # tiny and crowd are never sampled


def test_coco_samples_are_tight_instances_of_kept_images(tmp_path):
    masks = make_coco(tmp_path)
    coco = CocoOutliers(tmp_path)
    rng = np.random.default_rng(0)
    crops = {name: _box(mask) for name, mask in masks.items()}
    seen = set()
    for _ in range(40):
        rgb, mask = coco.sample(rng)
        assert rgb.shape[:2] == mask.shape and mask.dtype == bool
        assert mask[0].any() and mask[-1].any() and mask[:, 0].any() and mask[:, -1].any()  # tight
        name = next(n for n, crop in crops.items() if crop.shape == mask.shape and np.array_equal(crop, mask))
        seen.add(name)
        assert _image_id(rgb) == (1 if name in ("dog", "bottle") else 2)  # never image 3 (it has a car)
    assert seen == {"dog", "bottle", "cat"}


def test_coco_image_unit_pastes_an_images_union(tmp_path):
    masks = make_coco(tmp_path)
    coco = CocoOutliers(tmp_path, unit="image")
    rng = np.random.default_rng(1)
    unions = {1: masks["dog"] | masks["bottle"] | masks["tiny"], 2: masks["cat"] | masks["crowd"]}
    for _ in range(10):
        rgb, mask = coco.sample(rng)
        union = unions[_image_id(rgb)]
        assert np.array_equal(mask, _box(union))


def test_coco_context_labels_every_object_of_a_kept_image(tmp_path):
    masks = make_coco(tmp_path)
    coco = CocoOutliers(tmp_path)
    rng = np.random.default_rng(2)
    unions = {1: masks["dog"] | masks["bottle"] | masks["tiny"], 2: masks["cat"] | masks["crowd"]}
    seen = set()
    for _ in range(12):
        rgb, labels = coco.context(rng, *SIZE)
        image_id = _image_id(rgb)
        seen.add(image_id)
        assert rgb.shape == (*SIZE, 3) and labels.dtype == np.uint8
        assert np.array_equal(labels, unions[image_id].astype(np.uint8))
    assert seen == {1, 2}
    rgb, labels = coco.context(rng, 64, 128)
    assert rgb.shape == (64, 128, 3) and labels.shape == (64, 128) and set(np.unique(labels)) <= {0, 1}


def test_coco_errors(tmp_path):
    with pytest.raises(OutlierError, match="annotation file missing"):
        CocoOutliers(tmp_path)
    make_coco(tmp_path)
    with pytest.raises(OutlierError, match="no category 'zebra'"):
        CocoOutliers(tmp_path, exclude=("zebra",))
    with pytest.raises(OutlierError, match="no COCO image left"):
        CocoOutliers(tmp_path, min_image_size=1000)
    assert len(CocoOutliers(tmp_path, proxy_size=1, rng_seed=5)) == 1


# ------------------------------------------------------------------------------------------- the real API


def test_specs():
    assert training_sources("synthetic", height=8, width=16) is None
    assert parse_training_dataset("cityscapes:/data/cs") == ("cityscapes", "/data/cs")
    for bad, message in (("kitti:/x", "unknown training dataset"), ("cityscapes", "needs a root"),
                         ("", "unknown training dataset")):
        with pytest.raises(ValueError, match=message) as error:
            parse_training_dataset(bad)
        assert "\n" not in str(error.value)
    assert isinstance(outlier_source("procedural"), ProceduralOutliers)
    with pytest.raises(ValueError, match="needs a folder"):
        outlier_source("coco:")
    with pytest.raises(OutlierError):
        outlier_source("/nonexistent/outliers")


def test_cityscapes_with_coco_resizes_lazily_and_pastes_validation_objects(tmp_path):
    make_cityscapes(tmp_path / "cityscapes")
    make_coco(tmp_path / "coco")
    sources = training_sources(f"cityscapes:{tmp_path / 'cityscapes'}", f"coco:{tmp_path / 'coco'}",
                               height=8, width=12)
    assert sources is not None and sources.label_space == "cityscapes" and sources.dataset == "cityscapes"
    assert isinstance(sources.outliers, CocoOutliers)
    assert isinstance(sources.train, Resized) and isinstance(sources.val, WithOutliers)
    assert len(sources.train) == 3 and len(sources.val) == 1
    frame = sources.train[1]
    assert frame.image.shape == (8, 12, 3) and frame.semantic.shape == (8, 12) and frame.ood_gt.shape == (8, 12)
    assert set(np.unique(frame.semantic)) <= {0, 13, 16, 18, 255}  # nearest: no blended ids
    assert set(np.unique(frame.ood_gt)) <= {0, 255}
    assert sources.train[-1].name == "bochum_000000_000313"
    with pytest.raises(IndexError):
        sources.train[3]
    val = sources.val[0]
    assert val.image.shape == (8, 12, 3) and (val.ood_gt == 1).any()
    assert ((val.ood_gt == 1) <= (val.semantic == 255)).all()
    again = sources.val[0]
    assert np.array_equal(val.image, again.image) and np.array_equal(val.ood_gt, again.ood_gt)


def test_every_dataset_spec_opens(tmp_path):
    make_bdd(tmp_path / "bdd")
    sources = training_sources(f"bdd-anomaly:{tmp_path / 'bdd'}", "procedural", height=8, width=16, max_train=1)
    assert sources is not None and len(sources.train) == 1 and len(sources.val) == 1
    assert sources.train[0].image.shape == (8, 16, 3) and (sources.val[0].ood_gt == 1).any()

    folder = tmp_path / "objects"
    _rgb(folder / "images" / "a.png", 1)
    _png(folder / "masks" / "a.png", np.pad(np.full((4, 4), 255), ((2, H - 6), (3, W - 7))))
    make_streethazards(tmp_path / "sh", split="training")
    make_streethazards(tmp_path / "sh", split="validation")
    sources = training_sources(f"streethazards:{tmp_path / 'sh'}", str(folder), height=6, width=10)
    assert sources is not None and sources.label_space == "streethazards"
    assert isinstance(sources.outliers, FolderOutliers)
    assert sources.train[0].semantic.shape == (6, 10) and (sources.val[0].ood_gt == 1).any()


def test_missing_roots_are_one_line_errors(tmp_path):
    with pytest.raises(DatasetError) as error:
        training_sources(f"cityscapes:{tmp_path / 'nope'}", height=8, width=16)
    assert "root directory missing" in _one_line(error)
    with pytest.raises(DatasetError) as error:
        training_sources(f"bdd-anomaly:{tmp_path}", height=8, width=16)
    assert "seg/images" in _one_line(error)


def test_bdd_anomaly_is_an_evaluation_format_reading_the_anomaly_images(tmp_path):
    from ood_seg_node.cli import main as cli_main
    from ood_seg_node.datasets import open_dataset

    make_bdd(tmp_path / "bdd")
    dataset = open_dataset(f"bdd-anomaly:{tmp_path / 'bdd'}")
    assert len(dataset) > 0 and dataset.kind == "anomaly"
    assert all((frame.ood_gt == 1).any() for frame in dataset)
    assert cli_main(["evaluate", "--dataset", f"bdd-anomaly:{tmp_path / 'bdd'}", "--head", "msp", "--device", "cpu",
                     "--overlays", "0", "--out", str(tmp_path / "eval")]) == 0


# --------------------------------------------------------------------------------------------- end to end


def test_train_head_and_segmenter_on_cityscapes_with_coco_outliers(tmp_path, capsys):
    """train-head (every head) / train-segmenter read a Cityscapes layout and COCO objects; a head then scores."""
    from ood_seg_node.cli import main as cli_main
    from ood_seg_node.pipeline import Pipeline

    make_cityscapes(tmp_path / "cityscapes")
    make_coco(tmp_path / "coco")
    data = ["--dataset", f"cityscapes:{tmp_path / 'cityscapes'}", "--outliers", f"coco:{tmp_path / 'coco'}",
            "--height", "32", "--width", "64", "--epochs", "1", "--batch-size", "2"]
    assert cli_main(["train-head", "--head", "rpl", *data, "--rpl-corocl", "on", "--out", str(tmp_path / "rpl")]) == 0
    log = json.loads((tmp_path / "rpl" / "log.json").read_text())
    assert log["config"]["dataset"].startswith("cityscapes:") and log["config"]["outliers"].startswith("coco:")
    pipeline = Pipeline.from_names(head="rpl", head_checkpoint=str(tmp_path / "rpl" / "rpl.pt"), device="cpu")
    assert pipeline.process(np.zeros((32, 64, 3), np.uint8)).score.shape == (32, 64)
    small_flow = ["--nflowjs-flow-steps", "2", "--nflowjs-flow-crop", "16", "--nflowjs-patch-min", "8",
                  "--nflowjs-patch-max", "16"]
    for head, extra in (("obsnet", []), ("dicnet", []), ("nflowjs", small_flow)):
        assert cli_main(["train-head", "--head", head, *data, *extra, "--out", str(tmp_path / head)]) == 0, head
        assert (tmp_path / head / f"{head}.pt").is_file()
    assert cli_main(["train-segmenter", *data, "--out", str(tmp_path / "segmenter")]) == 0
    assert (tmp_path / "segmenter" / "builtin_segmenter.pt").is_file()


def test_training_data_in_other_classes_is_refused_in_one_line(tmp_path, capsys):
    from ood_seg_node.cli import main as cli_main

    root = tmp_path / "streethazards"
    for split in ("training", "validation"):
        _png(root / "train" / "annotations" / split / "t1" / "0.png", np.full((H, W), 8, np.uint8))
        _rgb(root / "train" / "images" / split / "t1" / "0.png", 1)
    assert cli_main(["train-head", "--head", "rpl", "--dataset", f"streethazards:{root}", "--height", "32",
                     "--width", "64", "--epochs", "1", "--batch-size", "1", "--out", str(tmp_path / "out")]) != 0
    error = capsys.readouterr().err.strip().splitlines()
    assert "classes are streethazards" in error[-1] and "predicts cityscapes" in error[-1]
