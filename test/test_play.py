# Copyright 2026 The ood_seg_node developers. Licensed under the Apache License, Version 2.0.
"""``ood_seg play``: a bag replayed onto real rclpy + Fast DDS topics as recorded, paced, stoppable."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from nav_msgs.msg import Odometry
from rclpy.qos import QoSProfile, ReliabilityPolicy
from ros_helpers import REPO_ROOT, TestGraph, isolated_env, random_domain_id
from rosbags.rosbag2 import Writer
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import CameraInfo, CompressedImage, Image

from ood_seg_node.bags import (
    CAMERA_INFO_TOPIC,
    DEFAULT_START_NS,
    IMAGE_TOPIC,
    OOD_GT_TOPIC,
    iter_image_messages,
    typestore,
    write_bag,
)
from ood_seg_node.cli import main as cli_main
from ood_seg_node.datasets import open_dataset
from ood_seg_node.encodings import decode_image
from ood_seg_node.ros.imaging import stamp_ns
from ood_seg_node.ros.player import message_class
from ood_seg_node.ros.replay import paced

RATE_HZ = 4.0  # the bag's frame rate
COMPRESSED_TOPIC = "/camera/image_raw/compressed"


def _dataset():
    return open_dataset("synthetic", seed=2101, frames=4, height=32, width=64)


@pytest.fixture(scope="module")
def bag(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("play") / "bag"
    dataset = _dataset()
    write_bag(path, iter(dataset), rate_hz=RATE_HZ, camera=dataset.camera, kind=dataset.kind, progress=False)
    return path


@pytest.fixture(scope="module")
def compressed_bag(tmp_path_factory) -> Path:
    """A sqlite3 bag with CompressedImage frames, as image_transport records them."""
    path = tmp_path_factory.mktemp("play") / "compressed"
    store = typestore()
    types = store.types
    msgtype = "sensor_msgs/msg/CompressedImage"
    with Writer(path, version=8) as writer:
        connection = writer.add_connection(COMPRESSED_TOPIC, msgtype, typestore=store)
        for index, frame in enumerate(_dataset()):
            stamp = DEFAULT_START_NS + round(index * 1e9 / RATE_HZ)
            header = types["std_msgs/msg/Header"](
                stamp=types["builtin_interfaces/msg/Time"](sec=stamp // 10**9, nanosec=stamp % 10**9),
                frame_id="camera")
            data = cv2.imencode(".png", frame.image[:, :, ::-1])[1].reshape(-1)
            message = types[msgtype](header=header, format="rgb8; png compressed bgr8", data=data)
            writer.write(connection, stamp, store.serialize_cdr(message, msgtype))
    return path


class _Received:
    """What a test graph subscriber got, per topic, in arrival order."""

    def __init__(self, graph: TestGraph, topics: dict[str, type]) -> None:
        self.messages: dict[str, list] = {topic: [] for topic in topics}
        qos = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
        for topic, msg_type in topics.items():
            graph.node.create_subscription(msg_type, topic, self.messages[topic].append, qos)

    def stamps(self, topic: str) -> list[int]:
        return [stamp_ns(msg.header) for msg in self.messages[topic]]


def _player(bag: Path, domain: int, *args: str) -> subprocess.Popen:
    command = [sys.executable, "-m", "ood_seg_node.cli", "play", str(bag), *args]
    return subprocess.Popen(command, env=isolated_env(domain), cwd=str(REPO_ROOT), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def test_every_topic_is_played_with_its_recorded_stamps_and_clock(bag):
    recorded = {topic: list(iter_image_messages(bag, topic)) for topic in (IMAGE_TOPIC, OOD_GT_TOPIC)}
    stamps = [message.stamp_ns for message in recorded[IMAGE_TOPIC]]
    domain = random_domain_id()
    graph = TestGraph(domain)
    received = _Received(graph, {IMAGE_TOPIC: Image, OOD_GT_TOPIC: Image, CAMERA_INFO_TOPIC: CameraInfo,
                                 "/odom": Odometry, "/clock": Clock})
    waits = [arg for topic in received.messages for arg in ("--wait-for", topic)]
    player = _player(bag, domain, "--rate", "4", "--clock", *waits)
    try:
        graph.spin_until(lambda: player.poll() is not None, 60)
        out, err = player.communicate(timeout=30)
        assert player.returncode == 0, err
        graph.spin_until(lambda: all(len(received.messages[t]) >= 4 for t in (IMAGE_TOPIC, OOD_GT_TOPIC)), 10)
    finally:
        graph.close()
        if player.poll() is None:
            player.kill()
    assert "20 messages played" in out  # image, ground truth, semantic, camera info, odometry x 4 frames
    assert received.stamps("/odom") == stamps
    for topic in (IMAGE_TOPIC, OOD_GT_TOPIC):
        assert received.stamps(topic) == stamps, topic
        for message, original in zip(received.messages[topic], recorded[topic], strict=True):
            assert message.header.frame_id == original.frame_id
            array = decode_image(message.encoding, message.height, message.width, message.step, message.data)
            np.testing.assert_array_equal(array, original.array)
    assert received.stamps(CAMERA_INFO_TOPIC) == stamps
    clocks = [msg.clock.sec * 10**9 + msg.clock.nanosec for msg in received.messages["/clock"]]
    assert clocks == sorted(clocks) and clocks[0] >= stamps[0] and clocks[-1] == stamps[-1]


@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_loop_start_offset_and_remap_until_stopped(compressed_bag, stop_signal):
    stamps = [DEFAULT_START_NS + round(i * 1e9 / RATE_HZ) for i in range(4)]
    domain = random_domain_id()
    graph = TestGraph(domain)
    received = _Received(graph, {"/front/compressed": CompressedImage, COMPRESSED_TOPIC: CompressedImage})
    # 0.4 s into a 4 Hz bag: frames 2 and 3, on every loop
    player = _player(compressed_bag, domain, "--loop", "--start-offset", "0.4", "--rate", "4",
                     "--remap", f"{COMPRESSED_TOPIC}:=/front/compressed", "--wait-for", "/front/compressed")
    try:
        looped = graph.spin_until(lambda: len(received.messages["/front/compressed"]) >= 6, 60)
        assert looped and player.poll() is None, player.stderr.read() if player.poll() is not None else ""
        player.send_signal(stop_signal)
        out, err = player.communicate(timeout=30)
    finally:
        graph.close()
        if player.poll() is None:
            player.kill()
    assert player.returncode == 0 and "Traceback" not in err and "(stopped)" in out, err
    assert set(received.stamps("/front/compressed")) == set(stamps[2:])
    assert received.messages[COMPRESSED_TOPIC] == []
    first = received.messages["/front/compressed"][0]
    rgb = cv2.imdecode(np.asarray(first.data, np.uint8), cv2.IMREAD_COLOR)[:, :, ::-1]
    np.testing.assert_array_equal(rgb, list(_dataset())[2].image)


def test_missing_bag_is_one_line_and_exit_code_1(tmp_path, capsys):
    assert cli_main(["play", str(tmp_path / "missing")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not a rosbag2 folder" in err[0]


def test_corrupt_bag_is_one_line_and_exit_code_1(bag, tmp_path):
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    for file in bag.iterdir():
        data = file.read_bytes()
        (corrupt / file.name).write_bytes(data if file.name == "metadata.yaml" else data[: len(data) // 2])
    player = _player(corrupt, random_domain_id())
    _, err = player.communicate(timeout=60)
    assert player.returncode == 1
    assert len(err.strip().splitlines()) == 1 and err.startswith("ood_seg play: error:"), err


def test_unknown_remap_and_wait_for_topics_are_refused(bag, capsys):
    assert cli_main(["play", str(bag), "--remap", "/nope:=/x"]) == 1
    assert "--remap /nope" in capsys.readouterr().err
    assert cli_main(["play", str(bag), "--wait-for", "/clock"]) == 1  # /clock only with --clock
    assert "--wait-for /clock" in capsys.readouterr().err


def test_message_class_by_type_name():
    assert message_class("sensor_msgs/msg/CompressedImage") is CompressedImage
    assert message_class("rosgraph_msgs/msg/Clock") is Clock
    assert message_class("no_such_msgs/msg/Thing") is None


def test_paced_keeps_the_schedule_scaled_by_rate_and_stops_at_once():
    times = [0, 100_000_000, 300_000_000]  # ns
    clocks: list[int] = []
    started = time.perf_counter()
    assert list(paced(times, int, rate=2.0, clock=clocks.append, clock_hz=100.0)) == times
    assert time.perf_counter() - started >= 0.15 - 1e-3  # 0.3 s of items at twice the speed
    assert clocks == sorted(clocks) and clocks[-1] == times[-1] and len(clocks) > len(times)
    stop = threading.Event()
    threading.Timer(0.1, stop.set).start()
    started = time.perf_counter()
    assert list(paced([0, 10**9, 2 * 10**9], int, stop=stop)) == [0]
    assert time.perf_counter() - started < 0.9
