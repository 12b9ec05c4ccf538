# Copyright 2026 The ood_seg_node developers. Licensed under the Apache License, Version 2.0.
"""rosbag2 writing and reading, checked with rosbags, the ``mcap`` library, sqlite3 and metadata.yaml."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
import yaml
from fixtures import make_smiyc

from ood_seg_node import bags, cli
from ood_seg_node.bags import (
    CAMERA_INFO_TOPIC,
    DEFAULT_START_NS,
    IMAGE_TOPIC,
    OOD_GT_TOPIC,
    SEMANTIC_TOPIC,
    BagError,
    Intrinsics,
    bag_info,
    iter_image_messages,
    read_bag,
    write_bag,
)
from ood_seg_node.datasets.base import Frame

RATE = 5.0
START = 1_650_000_000_123_456_789
CAMERA = Intrinsics(fx=30.0, fy=31.0, cx=10.5, cy=6.5)


def _frames(count: int = 4, *, gt_every: int = 1, semantic: bool = True, size=(12, 20)) -> list[Frame]:
    rng = np.random.default_rng(7)
    frames = []
    for i in range(count):
        image = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
        gt = rng.choice(np.array([0, 1, 255], np.uint8), size) if i % gt_every == 0 else None
        sem = rng.integers(0, 19, size, dtype=np.uint8) if semantic else None
        frames.append(Frame(image=image, ood_gt=gt, semantic=sem, name=f"frame_{i:03d}", index=i))
    return frames


def _stamps(count: int) -> list[int]:
    return [START + round(i * 1e9 / RATE) for i in range(count)]


@pytest.fixture(params=["mcap", "sqlite3"])
def storage(request) -> str:
    return request.param


def test_round_trip_with_rosbags(tmp_path, storage):
    frames = _frames()
    summary = write_bag(tmp_path / "bag", frames, storage=storage, rate_hz=RATE, frame_id="cam0",
                        camera=CAMERA, start_ns=START, progress=False, kind="obstacle", source="unit-test")
    assert summary.frames == 4 and summary.storage == storage
    assert summary.topics == {IMAGE_TOPIC: 4, OOD_GT_TOPIC: 4, SEMANTIC_TOPIC: 4, CAMERA_INFO_TOPIC: 4}
    assert summary.duration_s == pytest.approx(3 / RATE)
    assert "4 frames" in str(summary)
    back = list(read_bag(tmp_path / "bag"))
    assert [f.stamp_ns for f in back] == _stamps(4)
    assert [f.name for f in back] == [f.name for f in frames]
    for original, read in zip(frames, back, strict=True):
        np.testing.assert_array_equal(read.image, original.image)
        np.testing.assert_array_equal(read.ood_gt, original.ood_gt)
        np.testing.assert_array_equal(read.semantic, original.semantic)
        assert read.frame_id == "cam0"
    as_frame = back[2].to_frame()
    assert (as_frame.name, as_frame.index, as_frame.sequence) == ("frame_002", 2, "cam0")
    info = bag_info(tmp_path / "bag")
    assert (info.kind, info.source, info.frame_names) == ("obstacle", "unit-test", [f.name for f in frames])
    assert info.topics[IMAGE_TOPIC] == ("sensor_msgs/msg/Image", 4)
    assert info.topics[CAMERA_INFO_TOPIC] == ("sensor_msgs/msg/CameraInfo", 4)


def test_camera_info_and_mono_topics(tmp_path, storage):
    write_bag(tmp_path / "bag", _frames(2), storage=storage, camera=CAMERA, start_ns=START, progress=False)
    gt = list(iter_image_messages(tmp_path / "bag", OOD_GT_TOPIC))
    assert [(m.encoding, m.array.shape, m.array.dtype) for m in gt] == [("mono8", (12, 20), np.uint8)] * 2
    assert [m.stamp_ns for m in gt] == [m.log_time_ns for m in gt] == [START, START + 100_000_000]
    rgb = list(iter_image_messages(tmp_path / "bag", IMAGE_TOPIC, rgb=True))
    assert rgb[0].encoding == "rgb8" and rgb[0].array.shape == (12, 20, 3)
    infos = list(bags.iter_messages(tmp_path / "bag", [CAMERA_INFO_TOPIC]))
    assert len(infos) == 2
    _, msgtype, log_time, info = infos[1]
    assert msgtype == "sensor_msgs/msg/CameraInfo" and log_time == START + 100_000_000
    assert (info.width, info.height, info.distortion_model) == (20, 12, "plumb_bob")
    np.testing.assert_allclose(info.k, [30, 0, 10.5, 0, 31, 6.5, 0, 0, 1])
    np.testing.assert_allclose(info.p, [30, 0, 10.5, 0, 0, 31, 6.5, 0, 0, 0, 1, 0])
    np.testing.assert_allclose(info.d, np.zeros(5))
    assert info.header.frame_id == "camera"


def test_mcap_file_readable_with_mcap_library(tmp_path):
    from mcap.reader import make_reader

    write_bag(tmp_path / "bag", _frames(3), storage="mcap", rate_hz=RATE, camera=CAMERA, start_ns=START,
              progress=False)
    files = list((tmp_path / "bag").glob("*.mcap"))
    assert len(files) == 1
    with files[0].open("rb") as stream:
        reader = make_reader(stream)
        summary = reader.get_summary()
        schemas = {s.id: s for s in summary.schemas.values()}
        channels = {c.topic: c for c in summary.channels.values()}
        assert set(channels) == {IMAGE_TOPIC, OOD_GT_TOPIC, SEMANTIC_TOPIC, CAMERA_INFO_TOPIC}
        for topic, channel in channels.items():
            schema = schemas[channel.schema_id]
            expected = "sensor_msgs/msg/CameraInfo" if topic == CAMERA_INFO_TOPIC else "sensor_msgs/msg/Image"
            assert schema.name == expected and schema.encoding == "ros2msg"
            assert channel.message_encoding == "cdr"
            assert "reliability" in channel.metadata["offered_qos_profiles"]
            assert summary.statistics.channel_message_counts[channel.id] == 3
        store = bags.typestore()
        seen: dict[str, list[int]] = {}
        for schema, channel, message in reader.iter_messages():
            decoded = store.deserialize_cdr(message.data, schema.name)
            stamp = decoded.header.stamp.sec * 10**9 + decoded.header.stamp.nanosec
            assert stamp == message.log_time == message.publish_time
            seen.setdefault(channel.topic, []).append(stamp)
    assert all(stamps == _stamps(3) for stamps in seen.values())


def test_sqlite3_database_and_metadata_yaml(tmp_path):
    write_bag(tmp_path / "bag", _frames(3, semantic=False), storage="sqlite3", rate_hz=RATE, start_ns=START,
              progress=False)
    dbs = list((tmp_path / "bag").glob("*.db3"))
    assert len(dbs) == 1
    with sqlite3.connect(dbs[0]) as db:
        topics = dict(db.execute("SELECT name, type FROM topics").fetchall())
        assert topics == {IMAGE_TOPIC: "sensor_msgs/msg/Image", OOD_GT_TOPIC: "sensor_msgs/msg/Image"}
        rows = db.execute(
            "SELECT t.name, m.timestamp FROM messages m JOIN topics t ON m.topic_id = t.id ORDER BY m.id"
        ).fetchall()
    assert [name for name, _ in rows] == [IMAGE_TOPIC, OOD_GT_TOPIC] * 3
    assert [stamp for _, stamp in rows[::2]] == _stamps(3)

    meta = yaml.safe_load((tmp_path / "bag" / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    assert meta["version"] == bags.BAG_VERSION and meta["storage_identifier"] == "sqlite3"
    assert meta["relative_file_paths"] == [dbs[0].name]
    assert meta["message_count"] == 6
    assert meta["starting_time"]["nanoseconds_since_epoch"] == START
    assert meta["duration"]["nanoseconds"] == _stamps(3)[-1] - START
    per_topic = {t["topic_metadata"]["name"]: t for t in meta["topics_with_message_count"]}
    assert {name: t["message_count"] for name, t in per_topic.items()} == {IMAGE_TOPIC: 3, OOD_GT_TOPIC: 3}
    qos = yaml.safe_load(per_topic[IMAGE_TOPIC]["topic_metadata"]["offered_qos_profiles"])
    assert qos[0]["reliability"] == 1 and qos[0]["durability"] == 2 and qos[0]["history"] == 1
    assert per_topic[IMAGE_TOPIC]["topic_metadata"]["type_description_hash"].startswith("RIHS01_")
    names = json.loads(meta["custom_data"]["ood_seg_node.frame_names"])
    assert names == ["frame_000", "frame_001", "frame_002"]


def test_frames_without_ground_truth_pair_correctly(tmp_path, storage):
    frames = _frames(5, gt_every=2, semantic=False)
    summary = write_bag(tmp_path / "bag", frames, storage=storage, start_ns=START, progress=False)
    assert summary.topics == {IMAGE_TOPIC: 5, OOD_GT_TOPIC: 3}
    back = list(read_bag(tmp_path / "bag"))
    assert [f.ood_gt is None for f in back] == [False, True, False, True, False]
    for original, read in zip(frames, back, strict=True):
        np.testing.assert_array_equal(read.image, original.image)
        if original.ood_gt is not None:
            np.testing.assert_array_equal(read.ood_gt, original.ood_gt)
        assert read.semantic is None


def test_default_start_stamp_is_fixed(tmp_path):
    write_bag(tmp_path / "a", _frames(1), progress=False)
    assert [f.stamp_ns for f in read_bag(tmp_path / "a")] == [DEFAULT_START_NS]


def test_existing_target_and_overwrite(tmp_path):
    write_bag(tmp_path / "bag", _frames(1), progress=False)
    with pytest.raises(BagError, match=r"bag exists already; pass --overwrite \(overwrite=True\) to replace it$"):
        write_bag(tmp_path / "bag", _frames(2), progress=False)
    write_bag(tmp_path / "bag", _frames(2), progress=False, overwrite=True)
    assert len(list(read_bag(tmp_path / "bag"))) == 2
    (tmp_path / "plain").mkdir()
    for overwrite in (False, True):  # --overwrite would not help: not suggested
        with pytest.raises(BagError, match=r"plain exists and is not a rosbag2 folder; not overwriting it \(choose"):
            write_bag(tmp_path / "plain", _frames(1), progress=False, overwrite=overwrite)


def test_bad_frame_or_arguments_leave_no_partial_bag(tmp_path):
    frames = _frames(3)
    frames[2].ood_gt = np.zeros((4, 4), np.uint8)
    with pytest.raises(BagError, match="frame 2 \\(frame_002\\): ood_gt must be 12x20 uint8"):
        write_bag(tmp_path / "bag", frames, progress=False)
    assert not (tmp_path / "bag").exists()
    with pytest.raises(BagError, match="valid: mcap, sqlite3"):
        write_bag(tmp_path / "bag", frames, storage="rosbag1", progress=False)
    with pytest.raises(BagError, match="rate must be positive"):
        write_bag(tmp_path / "bag", frames, rate_hz=0, progress=False)
    with pytest.raises(BagError, match="no frames"):
        write_bag(tmp_path / "bag", [], progress=False)
    assert not (tmp_path / "bag").exists()


def test_corrupt_or_missing_bags_raise_bag_error(tmp_path, storage):
    write_bag(tmp_path / "bag", _frames(3), storage=storage, progress=False)
    (data,) = [p for p in (tmp_path / "bag").iterdir() if p.name != "metadata.yaml"]
    raw = data.read_bytes()
    data.write_bytes(raw[:64] + b"\xde\xad\xbe\xef" * 200)
    with pytest.raises(BagError) as error:
        list(read_bag(tmp_path / "bag"))
    assert str(tmp_path / "bag") in str(error.value) and "\n" not in str(error.value)
    with pytest.raises(BagError, match="not a rosbag2"):
        list(read_bag(tmp_path / "missing"))
    (tmp_path / "bag" / "metadata.yaml").write_text("{not: [valid")
    with pytest.raises(BagError, match="metadata"):
        bag_info(tmp_path / "bag")


@pytest.fixture
def cli_main(monkeypatch):
    """``ood_seg`` with only these commands registered: the parser imports every command module it lists."""
    monkeypatch.setattr(cli, "COMMANDS", {name: cli.COMMANDS[name] for name in ("make-bag", "evaluate")})
    return cli.main


def test_make_bag_command_from_fixture_dataset(tmp_path, capsys, cli_main):
    written = make_smiyc(tmp_path / "ot", track="obstacle", unlabeled=("gravel_000003",))
    out = tmp_path / "ot_bag"
    code = cli_main(["make-bag", "--dataset", f"smiyc-obstacle:{tmp_path / 'ot'}", "--out", str(out),
                     "--storage", "sqlite3", "--rate", "2", "--frame-id", "cam",
                     "--camera-info", "20,20,10,6", "--no-progress"])
    assert code == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith("make-bag: wrote") and "3 frames" in line and "1.00 s" in line
    info = bag_info(out)
    assert info.storage == "sqlite3" and info.kind == "obstacle" and info.frame_names == written.names
    assert info.topics[CAMERA_INFO_TOPIC] == ("sensor_msgs/msg/CameraInfo", 3)
    assert info.topics[OOD_GT_TOPIC] == ("sensor_msgs/msg/Image", 2)
    back = list(read_bag(out))
    assert [f.ood_gt is None for f in back] == [False, False, True]
    np.testing.assert_array_equal(back[0].ood_gt, written.ood_gt[0])


def test_make_bag_command_limits_frames_and_reports_errors(tmp_path, capsys, cli_main):
    make_smiyc(tmp_path / "at")
    out = tmp_path / "at_bag"
    assert cli_main(["make-bag", "--dataset", f"smiyc-anomaly:{tmp_path / 'at'}", "--out", str(out),
                     "--frames", "2", "--no-progress"]) == 0
    assert bag_info(out).frame_names == ["validation0000", "validation0001"]
    assert bag_info(out).kind == "anomaly" and CAMERA_INFO_TOPIC not in bag_info(out).topics
    capsys.readouterr()
    assert cli_main(["make-bag", "--dataset", f"smiyc-anomaly:{tmp_path / 'at'}", "--out", str(out),
                     "--no-progress"]) == 1
    assert f"{out} exists already; pass --overwrite" in capsys.readouterr().err
    assert cli_main(["make-bag", "--dataset", "nosuch:/x", "--out", str(tmp_path / "b")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "valid: bdd-anomaly, fishyscapes, lostandfound" in err
    assert cli_main(["make-bag", "--dataset", f"smiyc-anomaly:{tmp_path / 'at'}", "--seed", "3",
                     "--out", str(tmp_path / "c")]) == 1
    assert "--seed does not apply" in capsys.readouterr().err
    assert cli_main(["make-bag", "--dataset", f"smiyc-anomaly:{tmp_path / 'at'}", "--camera-info", "1,2",
                     "--out", str(tmp_path / "d")]) == 1
    assert "fx,fy,cx,cy" in capsys.readouterr().err


def test_compressed_mcap_round_trip(tmp_path):
    from mcap.reader import make_reader

    frames = _frames(3)
    write_bag(tmp_path / "bag", frames, compress=True, start_ns=START, progress=False)
    (data,) = (tmp_path / "bag").glob("*.mcap")
    with data.open("rb") as stream:
        chunks = make_reader(stream).get_summary().chunk_indexes
    assert chunks and {chunk.compression for chunk in chunks} == {"zstd"}
    for original, read in zip(frames, read_bag(tmp_path / "bag"), strict=True):
        np.testing.assert_array_equal(read.image, original.image)
        np.testing.assert_array_equal(read.ood_gt, original.ood_gt)
    with pytest.raises(BagError, match="only available with the mcap storage"):
        write_bag(tmp_path / "db", frames, storage="sqlite3", compress=True, progress=False)


def test_make_bag_command_synthetic(tmp_path, capsys, cli_main):
    out = tmp_path / "synthetic_bag"
    assert cli_main(["make-bag", "--dataset", "synthetic", "--seed", "2", "--frames", "3", "--height", "48",
                     "--width", "96", "--out", str(out), "--no-progress"]) == 0
    line = capsys.readouterr().out.strip()
    assert "3 frames" in line and "0.20 s" in line and "5 topics" in line and "/odom x3" in line
    info = bag_info(out)
    assert info.storage == "mcap" and info.kind == "obstacle" and info.source == "synthetic"
    assert {topic: count for topic, (_, count) in info.topics.items()} == {
        IMAGE_TOPIC: 3, OOD_GT_TOPIC: 3, SEMANTIC_TOPIC: 3, CAMERA_INFO_TOPIC: 3, "/odom": 3}
    from ood_seg_node.datasets import open_dataset

    expected = list(open_dataset("synthetic", seed=2, frames=3, height=48, width=96))
    back = list(read_bag(out))
    assert [f.name for f in back] == [f.name for f in expected]
    for original, read in zip(expected, back, strict=True):
        np.testing.assert_array_equal(read.image, original.image)
        np.testing.assert_array_equal(read.ood_gt, original.ood_gt)
        np.testing.assert_array_equal(read.semantic, original.semantic)
    (_, _, _, info_msg), *_ = bags.iter_messages(out, [CAMERA_INFO_TOPIC])
    camera = open_dataset("synthetic", seed=2, frames=1, height=48, width=96).camera
    np.testing.assert_allclose(info_msg.k, camera.k.reshape(-1))
    assert (info_msg.width, info_msg.height) == (96, 48)


# ------------------------------------------------------------------------------------------ damaged bags

def _mcap_of(bag: Path) -> Path:
    (file,) = bag.glob("*.mcap")
    return file


def _big_bag(path: Path, **options) -> Path:
    """A bag of about 1.5 MB: two chunks, the middle of the file inside one."""
    write_bag(path, _frames(20, size=(96, 160)), start_ns=START, progress=False, **options)
    return path


def _overwrite(file: Path, offset: int, size: int = 4096) -> None:
    with file.open("r+b") as stream:
        stream.seek(offset)
        stream.write(np.random.default_rng(3).integers(0, 256, size, dtype=np.uint8).tobytes())


@pytest.mark.parametrize("compress", [False, True])
def test_written_mcap_carries_checksums(tmp_path, compress):
    from mcap.records import Chunk, DataEnd, Footer
    from mcap.stream_reader import StreamReader

    file = _mcap_of(_big_bag(tmp_path / "bag", compress=compress))
    with file.open("rb") as stream:  # validate_crcs: raises on a chunk or data-section CRC that does not match
        records = list(StreamReader(stream, emit_chunks=True, validate_crcs=True).records)
    chunks = [r for r in records if isinstance(r, Chunk)]
    (data_end,) = [r for r in records if isinstance(r, DataEnd)]
    (footer,) = [r for r in records if isinstance(r, Footer)]
    assert len(chunks) >= 2 and all(chunk.uncompressed_crc for chunk in chunks)
    assert data_end.data_section_crc
    raw = file.read_bytes()
    assert footer.summary_crc == zlib.crc32(raw[footer.summary_start:len(raw) - 8 - 4])  # through the footer's offsets
    assert len(list(read_bag(tmp_path / "bag"))) == 20


@pytest.mark.parametrize("compress", [False, True])
def test_damaged_mcap_chunk_is_one_error_line(tmp_path, compress):
    from mcap.reader import make_reader

    bag = _big_bag(tmp_path / "bag", compress=compress)
    file = _mcap_of(bag)
    middle = file.stat().st_size // 2
    with file.open("rb") as stream:
        chunks = make_reader(stream).get_summary().chunk_indexes
    hit = [c for c in chunks if c.chunk_start_offset < middle < c.chunk_start_offset + c.chunk_length - 4096]
    assert len(hit) == 1  # the garbage lands inside one chunk's records
    _overwrite(file, middle)
    expected = f"bag {bag} is corrupt: {file.name}: chunk at byte {hit[0].chunk_start_offset} fails its CRC check"
    for read in (lambda: list(read_bag(bag)), lambda: list(iter_image_messages(bag, IMAGE_TOPIC))):
        with pytest.raises(BagError) as error:
            read()
        assert str(error.value).startswith(expected) and "\n" not in str(error.value)


def test_damaged_mcap_summary_is_an_error(tmp_path):
    from mcap.reader import make_reader

    bag = _big_bag(tmp_path / "bag")
    file = _mcap_of(bag)
    with file.open("rb") as stream:
        index = make_reader(stream).get_summary().chunk_indexes[-1]
    raw = bytearray(file.read_bytes())
    at = raw.index(index.chunk_start_offset.to_bytes(8, "little"), index.chunk_start_offset + index.chunk_length)
    raw[at + 9] ^= 0x01  # the last chunk index now lists a message index at a wrong offset
    file.write_bytes(bytes(raw))
    with pytest.raises(BagError, match=r"is corrupt: bag\.mcap: summary at byte \d+ fails its CRC check"):
        list(read_bag(bag))


def test_damaged_sqlite3_database_is_one_error_line(tmp_path):
    bag = tmp_path / "bag"
    write_bag(bag, _frames(20, size=(96, 160)), storage="sqlite3", progress=False)
    (db,) = bag.glob("*.db3")
    with sqlite3.connect(db) as connection:
        (page_size,) = connection.execute("PRAGMA page_size").fetchone()
        (root,) = connection.execute("SELECT rootpage FROM sqlite_master WHERE name = 'messages'").fetchone()
    _overwrite(db, (root - 1) * page_size, page_size)  # the messages table's b-tree root
    with pytest.raises(BagError, match="database disk image is malformed") as error:
        list(read_bag(bag))
    assert str(bag) in str(error.value) and "\n" not in str(error.value)


def test_evaluate_on_a_damaged_bag_exits_with_one_line(tmp_path):
    bag = _big_bag(tmp_path / "bag")
    scores = tmp_path / "scores"
    scores.mkdir()
    for name in bag_info(bag).frame_names:
        np.save(scores / f"{name}.npy", np.zeros((96, 160), np.float32))
    _overwrite(_mcap_of(bag), _mcap_of(bag).stat().st_size // 2)
    done = subprocess.run(
        [sys.executable, "-m", "ood_seg_node.cli", "evaluate", "--bag", str(bag), "--scores", str(scores),
         "--out", str(tmp_path / "out")],
        capture_output=True, text=True, timeout=120, env={**os.environ, "TQDM_DISABLE": "1"},
    )
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1 and "fails its CRC check" in done.stderr, done.stderr


def test_evaluate_refuses_skip_bad_on_a_bag(tmp_path, capsys, cli_main):
    bag = _big_bag(tmp_path / "bag")
    assert cli_main(["evaluate", "--bag", str(bag), "--skip-bad", "--scores", str(tmp_path),
                     "--out", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--skip-bad does not apply to --bag" in err


def test_camera_poses_travel_as_odometry_and_sequences_stay_apart(tmp_path, storage):
    from ood_seg_node.camera import mount_pose
    from ood_seg_node.datasets import open_dataset

    dataset = open_dataset("synthetic", seed=2001, frames=3, height=48, width=96, sequences=2)
    write_bag(tmp_path / "b", iter(dataset), storage=storage, camera=dataset.camera, progress=False)
    info = bag_info(tmp_path / "b")
    assert info.topics["/odom"] == ("nav_msgs/msg/Odometry", 6)
    assert info.camera_mount == (dataset.camera.height_m, dataset.camera.pitch_rad)
    frames = [frame.to_frame() for frame in read_bag(tmp_path / "b")]
    assert [f.sequence for f in frames] == ["synthetic_s2001"] * 3 + ["synthetic_s2002"] * 3
    for read, original in zip(frames, dataset, strict=True):
        np.testing.assert_allclose(read.view.pose, original.view.pose, atol=1e-9)
        assert read.view.intrinsics == pytest.approx(original.view.intrinsics)
    base = frames[1].view.pose @ np.linalg.inv(mount_pose(info.camera_mount[0], info.camera_mount[1]))
    np.testing.assert_allclose(base[:3, 2], [0.0, 0.0, 1.0], atol=1e-9)  # the base stands upright in odom
    assert abs(base[2, 3]) < 1e-9
    write_bag(tmp_path / "plain", _frames(2), storage=storage, camera=CAMERA, progress=False)
    assert bag_info(tmp_path / "plain").camera_mount is None
    assert all(frame.view is None for frame in read_bag(tmp_path / "plain"))
