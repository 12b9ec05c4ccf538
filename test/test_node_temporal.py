# Copyright 2026 The ood_seg_node developers. Licensed under the Apache License, Version 2.0.
"""The node's temporal side over real rclpy + Fast DDS: stamps, fused scores, obstacle track ids, odometry.

Frames of one synthetic drive go out 0.1 s apart (header stamps), each after the previous one's outputs
arrived, so the node sees every frame of the sequence in order; a jump of the stamps starts a new sequence.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray
from nav_msgs.msg import Odometry
from rclpy.qos import QoSProfile, ReliabilityPolicy
from ros_helpers import TestGraph, image_msg, isolated_env, random_domain_id, run_to_exit
from sensor_msgs.msg import CameraInfo, Image
from visualization_msgs.msg import Marker, MarkerArray

from ood_seg_node.datasets.synthetic import SyntheticSequence
from ood_seg_node.encodings import decode_image
from ood_seg_node.pipeline import Pipeline
from ood_seg_node.ros.markers import BOX_NAMESPACE, LABEL_NAMESPACE
from ood_seg_node.ros.replay import NodeProcess

MODULE = "ood_seg_node.ros.node"
HEIGHT, WIDTH = 128, 256
FRAMES = 5
SPEED_MPS = 8.0
Stamp = tuple[int, int]


@pytest.fixture(scope="module")
def drive() -> SyntheticSequence:
    return SyntheticSequence(3, FRAMES, height=HEIGHT, width=WIDTH, speed_mps=SPEED_MPS)


@pytest.fixture(scope="module")
def images(drive) -> list[np.ndarray]:
    return [drive[i].image for i in range(FRAMES)]


class Rig:
    """A node process and a test graph collecting its score maps, markers and diagnostics by input stamp."""

    def __init__(self, params: dict[str, Any], log_path: Any) -> None:
        domain = random_domain_id()
        self.node = NodeProcess(MODULE, params, isolated_env(domain), log_path)
        self.graph = TestGraph(domain)
        reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        self.image_pub = self.graph.node.create_publisher(Image, "/image", reliable)
        self.info_pub = self.graph.node.create_publisher(CameraInfo, "/camera_info", reliable)
        self.odometry_pub = self.graph.node.create_publisher(Odometry, "/odom", QoSProfile(depth=50))
        self.scores: dict[Stamp, np.ndarray] = {}
        self.markers: dict[Stamp, list[Marker]] = {}
        self.diagnostics: list[dict[str, str]] = []
        self.graph.node.create_subscription(Image, "/ood/anomaly_score", self._on_score, reliable)
        self.graph.node.create_subscription(MarkerArray, "/ood/obstacles", self._on_markers, reliable)
        self.graph.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, 10)
        self.next_sequence = 1000

    def _on_score(self, msg: Image) -> None:
        self.scores[(msg.header.stamp.sec, msg.header.stamp.nanosec)] = decode_image(
            msg.encoding, msg.height, msg.width, msg.step, msg.data)

    def _on_markers(self, msg: MarkerArray) -> None:
        stamp = msg.markers[0].header.stamp
        self.markers[(stamp.sec, stamp.nanosec)] = list(msg.markers)

    def _on_diagnostics(self, msg: DiagnosticArray) -> None:
        self.diagnostics += [{kv.key: kv.value for kv in s.values} for s in msg.status
                             if s.name.startswith("ood_seg_node")]

    def started(self) -> None:
        up = self.graph.spin_until(lambda: self.image_pub.get_subscription_count() > 0 or not self.node.running(),
                                   60.0)
        assert up and self.node.running(), f"node did not come up:\n{self.node.log()}"

    def done(self, stamp: Stamp) -> bool:
        return stamp in self.scores and stamp in self.markers

    def send(self, rgb: np.ndarray, stamp: Stamp, timeout: float = 30.0) -> None:
        """Publish one frame and wait for its outputs."""
        msg = image_msg(rgb, "rgb8", stamp[0], "cam")
        msg.header.stamp.nanosec = stamp[1]
        self.image_pub.publish(msg)
        assert self.graph.spin_until(lambda: self.done(stamp), timeout), f"no outputs for {stamp}:\n{self.node.log()}"

    def new_sequence(self) -> list[Stamp]:
        """Stamps of the frames of a new sequence: 0.1 s apart, 1000 s after the previous sequence."""
        self.next_sequence += 1000
        return [(self.next_sequence, i * 100_000_000) for i in range(FRAMES)]

    def warm_up(self, rgb: np.ndarray) -> None:
        """Publish until the node's outputs arrive (discovery both ways), on a stamp of its own."""
        for attempt in range(10):
            stamp = (500 + attempt, 0)
            msg = image_msg(rgb, "rgb8", stamp[0], "cam")
            msg.header.stamp.nanosec = 0
            self.image_pub.publish(msg)
            if self.graph.spin_until(lambda s=stamp: self.done(s), 3.0):
                return
            assert self.node.running(), self.node.log()
        raise AssertionError(f"no outputs after discovery:\n{self.node.log()}")

    def set(self, **values: Any) -> list[Any]:
        return self.graph.set_parameters("/ood_seg_node", **values)

    def latest_diagnostics(self, predicate: Any, timeout: float = 15.0) -> dict[str, str]:
        """The newest /diagnostics values, received from now on, that satisfy ``predicate``."""
        start = len(self.diagnostics)
        found: list[dict[str, str]] = []

        def seen() -> bool:
            found[:] = [d for d in self.diagnostics[start:] if predicate(d)]
            return bool(found)

        assert self.graph.spin_until(seen, timeout), f"no such diagnostics: {self.diagnostics[-1:]}"
        return found[-1]

    def close(self) -> None:
        self.node.stop()
        self.graph.close()


def _boxes(markers: list[Marker]) -> list[Marker]:
    return [m for m in markers if m.action == Marker.ADD and m.ns == BOX_NAMESPACE]


def _labels(markers: list[Marker]) -> list[Marker]:
    return [m for m in markers if m.action == Marker.ADD and m.ns == LABEL_NAMESPACE]


@pytest.fixture(scope="module")
def threshold(random_builtin_checkpoint, images) -> float:
    """A low threshold: 95 % of the drive's pixels are anomalous, so every frame has a large obstacle."""
    pipeline = Pipeline.from_names(segmenter_checkpoint=random_builtin_checkpoint, head="energy", device="cpu")
    scores = np.concatenate([pipeline.process(rgb).native_scores["energy"].ravel() for rgb in images])
    return float(np.percentile(scores, 5))


@pytest.fixture(scope="module")
def flow_rig(tmp_path_factory, random_builtin_checkpoint, threshold, images):
    params = {"segmenter_checkpoint": random_builtin_checkpoint, "head": "energy", "threshold": threshold,
              "temporal_fusion": "flow", "reliable_input": True, "device": "cpu"}
    rig = Rig(params, tmp_path_factory.mktemp("flow") / "node.log")
    try:
        rig.started()
        rig.warm_up(images[0])
        yield rig
    finally:
        rig.close()


def test_marker_ids_are_track_ids_that_persist_across_frames(flow_rig, images):
    stamps = flow_rig.new_sequence()
    for rgb, stamp in zip(images, stamps, strict=True):
        flow_rig.send(rgb, stamp)
    largest = [_boxes(flow_rig.markers[s])[0] for s in stamps]  # obstacles come largest first
    ids = {box.id for box in largest}
    assert len(ids) == 1, [box.id for box in largest]
    (track_id,) = ids
    labels = [_labels(flow_rig.markers[s])[0] for s in stamps]
    assert all(label.id == track_id for label in labels)
    assert labels[0].text.startswith(f"#{track_id} seen 1/5 (tentative)"), labels[0].text
    assert labels[1].text.startswith(f"#{track_id} seen 2/5 (tentative)"), labels[1].text
    assert labels[2].text.startswith(f"#{track_id} seen 3/5 (confirmed)"), labels[2].text
    diagnostics = flow_rig.latest_diagnostics(lambda d: int(d.get("frames_fused", "0")) >= FRAMES - 1)
    assert diagnostics["temporal_fusion"] == "flow"
    assert int(diagnostics["temporal_restarts"]) >= 2  # the warm-up frame and this sequence's first frame
    assert diagnostics["last_restart"].startswith("stamp gap")


def test_confirmed_only_publishes_no_box_before_a_track_is_confirmed(flow_rig, images):
    assert all(r.successful for r in flow_rig.set(publish_confirmed_only=True))
    try:
        stamps = flow_rig.new_sequence()
        for rgb, stamp in zip(images[:3], stamps, strict=False):
            flow_rig.send(rgb, stamp)
        first = flow_rig.markers[stamps[0]]
        assert [m.action for m in first] == [Marker.DELETEALL]
        third = flow_rig.markers[stamps[2]]
        assert third[0].action == Marker.DELETEALL and _boxes(third)
        assert all("(confirmed)" in label.text for label in _labels(third))
    finally:
        assert all(r.successful for r in flow_rig.set(publish_confirmed_only=False))


def test_temporal_parameter_change_starts_a_new_sequence(flow_rig, images):
    assert all(r.successful for r in flow_rig.set(track_confirm_hits=2, track_window=4))
    try:
        stamps = flow_rig.new_sequence()
        for rgb, stamp in zip(images[:2], stamps, strict=False):
            flow_rig.send(rgb, stamp)
        assert "seen 2/4 (confirmed)" in _labels(flow_rig.markers[stamps[1]])[0].text
        assert "new temporal sequence" in flow_rig.node.log()
    finally:
        assert all(r.successful for r in flow_rig.set(track_confirm_hits=3, track_window=5))


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({"temporal_fusion": "ground"}, "ground needs odometry_topic"),
        ({"temporal_fusion": "optical"}, "none, flow, ground"),
        ({"temporal_alpha": 0.0}, "(0, 1]"),
        ({"temporal_max_gap": -1.0}, "temporal_max_gap"),
        ({"track_window": 2}, "track_confirm_hits (3)"),
    ],
)
def test_invalid_runtime_temporal_parameter_is_refused(flow_rig, values, expected):
    (result,) = flow_rig.set(**values)
    assert not result.successful
    assert expected in result.reason


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"temporal_fusion": "ground"}, "invalid temporal_fusion 'ground'; valid: ground needs odometry_topic"),
        ({"temporal_alpha": 0.0}, "invalid temporal_alpha 0.0; valid: a number in (0, 1]"),
        ({"track_confirm_hits": 4, "track_window": 3}, "invalid track_window 3"),
    ],
)
def test_invalid_temporal_start_parameter_exits_with_one_line(params, expected):
    result = run_to_exit(MODULE, {"device": "cpu", **params}, isolated_env(random_domain_id()))
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 1
    assert len(lines) == 1 and expected in lines[0] and "error" in lines[0], result.stderr


# -- ground: CameraInfo and odometry -----------------------------------------------------------------


def _odometry(stamp: Stamp, x: float) -> Odometry:
    """The vehicle base driving straight along x of ``odom``."""
    msg = Odometry()
    msg.header.stamp.sec, msg.header.stamp.nanosec = stamp
    msg.header.frame_id, msg.child_frame_id = "odom", "base_link"
    msg.pose.pose.position.x = x
    msg.pose.pose.orientation.w = 1.0
    return msg


def test_ground_fusion_fuses_once_odometry_and_camera_info_arrive(tmp_path, random_builtin_checkpoint, drive,
                                                                  images):
    camera = drive.camera
    params = {"segmenter_checkpoint": random_builtin_checkpoint, "head": "energy", "temporal_fusion": "ground",
              "odometry_topic": "/odom", "camera_height": float(camera.height_m),
              "camera_pitch": float(camera.pitch_rad), "reliable_input": True, "device": "cpu"}
    rig = Rig(params, tmp_path / "node.log")
    try:
        rig.started()
        info = CameraInfo(width=WIDTH, height=HEIGHT,
                          k=[camera.fx, 0.0, camera.cx, 0.0, camera.fy, camera.cy, 0.0, 0.0, 1.0])
        assert rig.graph.spin_until(lambda: rig.info_pub.get_subscription_count() > 0
                                    and rig.odometry_pub.get_subscription_count() > 0, 30.0), rig.node.log()
        for _ in range(5):
            rig.info_pub.publish(info)
            rig.graph.spin_for(0.05)
        rig.warm_up(images[0])

        # without odometry every frame is scored alone
        alone = rig.new_sequence()
        for rgb, stamp in zip(images[:2], alone, strict=False):
            rig.info_pub.publish(info)
            rig.send(rgb, stamp)
        assert "no odometry pose at the image stamp" in rig.node.log()
        diagnostics = rig.latest_diagnostics(lambda d: d.get("last_restart") == "no camera pose")
        assert diagnostics["frames_fused"] == "0"

        # a bad odometry message is skipped, the node goes on
        bad = _odometry((1, 0), math.nan)
        rig.odometry_pub.publish(bad)
        assert rig.graph.spin_until(lambda: "odometry message ignored" in rig.node.log(), 10.0), rig.node.log()
        assert rig.node.running()

        fused = rig.new_sequence()
        for i, stamp in enumerate(fused):
            rig.odometry_pub.publish(_odometry(stamp, SPEED_MPS * 0.1 * i))
        rig.graph.spin_for(0.5)
        for rgb, stamp in zip(images[:2], fused, strict=False):
            rig.info_pub.publish(info)
            rig.send(rgb, stamp)
        diagnostics = rig.latest_diagnostics(lambda d: int(d.get("frames_fused", "0")) >= 1)
        assert diagnostics["temporal_fusion"] == "ground"
        first_alone, first_fused = rig.scores[alone[0]], rig.scores[fused[0]]
        second_alone, second_fused = rig.scores[alone[1]], rig.scores[fused[1]]
        spread = float(second_alone.max() - second_alone.min())
        np.testing.assert_allclose(first_fused, first_alone, atol=1e-3 * spread)  # both start a sequence
        assert float(np.abs(second_fused - second_alone).max()) > 1e-2 * spread  # the previous frame blended in
    finally:
        rig.close()

