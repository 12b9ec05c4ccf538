# Copyright 2026 The ood_seg_node developers. Licensed under the Apache License, Version 2.0.
"""The ood_seg_node process over real rclpy + Fast DDS: topics, headers, encodings, QoS, parameters.

One node process serves the module (started as a user starts it, ``python -m ood_seg_node.ros.node
--ros-args -p ...``); each test publishes uniquely stamped frames and waits for the outputs of that
stamp, re-publishing a fresh frame if discovery has not completed yet, so no test depends on sleeps.
"""

from __future__ import annotations

import math
import signal
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.qos import QoSProfile, ReliabilityPolicy
from ros_helpers import (
    TestGraph,
    compressed_msg,
    image_msg,
    isolated_env,
    random_domain_id,
    run_to_exit,
)
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from visualization_msgs.msg import Marker, MarkerArray

from ood_seg_node.encodings import decode_image
from ood_seg_node.label_spaces import CITYSCAPES
from ood_seg_node.ros.replay import NodeProcess

MODULE = "ood_seg_node.ros.node"
IMAGE_OUTPUTS = {
    "/ood/labels": "mono8",
    "/ood/labels_color": "rgb8",
    "/ood/anomaly_score": "32FC1",
    "/ood/anomaly_mask": "mono8",
    "/ood/overlay": "rgb8",
}
OBSTACLES = "/ood/obstacles"
ALL_OUTPUTS = (*IMAGE_OUTPUTS, OBSTACLES)
HEIGHT, WIDTH = 120, 160
MSP_THRESHOLD = 0.5  # msp's default, in effect while the threshold parameter is NaN


class Outputs:
    """Collects every output message by input stamp, and every diagnostics status."""

    def __init__(self, graph: TestGraph) -> None:
        self.graph = graph
        self.frames: dict[tuple[int, int], dict[str, Any]] = {}
        self.diagnostics: list[dict[str, str]] = []
        self._subscriptions: list[Any] = []
        graph.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, 10)
        self.subscribe()

    def subscribe(self) -> None:
        qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        for topic in IMAGE_OUTPUTS:
            self._subscriptions.append(
                self.graph.node.create_subscription(Image, topic, self._store(topic), qos)
            )
        self._subscriptions.append(
            self.graph.node.create_subscription(MarkerArray, OBSTACLES, self._store(OBSTACLES), qos)
        )

    def unsubscribe(self) -> None:
        for subscription in self._subscriptions:
            self.graph.node.destroy_subscription(subscription)
        self._subscriptions.clear()

    def _store(self, topic: str) -> Callable[[Any], None]:
        def store(msg: Any) -> None:
            header = msg.markers[0].header if topic == OBSTACLES else msg.header
            self.frames.setdefault((header.stamp.sec, header.stamp.nanosec), {})[topic] = msg

        return store

    def _on_diagnostics(self, msg: DiagnosticArray) -> None:
        for status in msg.status:
            if status.name.startswith("ood_seg_node"):
                self.diagnostics.append({kv.key: kv.value for kv in status.values})

    def complete(self, stamp_sec: int) -> bool:
        return len(self.frames.get((stamp_sec, 123), {})) == len(ALL_OUTPUTS)

    def frame(self, stamp_sec: int) -> dict[str, Any]:
        return self.frames.get((stamp_sec, 123), {})


@dataclass
class Rig:
    node: NodeProcess
    graph: TestGraph
    outputs: Outputs
    reliable_pub: Any
    compressed_pub: Any
    next_stamp: int = 1000

    def stamp(self) -> int:
        self.next_stamp += 1
        return self.next_stamp

    def publish_until_outputs(
        self, publish: Callable[[int], None], timeout: float = 30.0, retry: float = 3.0
    ) -> int:
        """Publish a fresh frame (``publish(stamp)``) every ``retry`` s until one stamp has every output."""
        elapsed = 0.0
        while elapsed < timeout:
            stamp = self.stamp()
            publish(stamp)
            if self.graph.spin_until(lambda s=stamp: self.outputs.complete(s), retry):
                return stamp
            assert self.node.running(), f"node died:\n{self.node.log()}"
            elapsed += retry
        raise AssertionError(f"no complete output set within {timeout} s; node log:\n{self.node.log()}")

    def publish_rgb(
        self, rgb: np.ndarray, encoding: str = "rgb8", frame_id: str = "cam", **kwargs: Any
    ) -> int:
        """Publish ``rgb`` reliably until its outputs arrive; ``{stamp}`` in ``frame_id`` is filled in."""

        def publish(stamp: int) -> None:
            self.reliable_pub.publish(image_msg(rgb, encoding, stamp, frame_id.format(stamp=stamp)))

        return self.publish_until_outputs(publish, **kwargs)

    def set(self, **values: Any) -> list[Any]:
        return self.graph.set_parameters("/ood_seg_node", **values)

    def latest_diagnostics(
        self, predicate: Callable[[dict[str, str]], bool], timeout: float = 10.0
    ) -> dict[str, str]:
        """The newest /diagnostics values, received from now on, that satisfy ``predicate``."""
        start = len(self.outputs.diagnostics)
        found: list[dict[str, str]] = []

        def seen() -> bool:
            found[:] = [d for d in self.outputs.diagnostics[start:] if predicate(d)]
            return bool(found)

        assert self.graph.spin_until(seen, timeout), f"no such diagnostics: {self.outputs.diagnostics[-1:]}"
        return found[-1]


@pytest.fixture(scope="module")
def rig(tmp_path_factory, random_builtin_checkpoint):
    tmp = tmp_path_factory.mktemp("node")
    domain = random_domain_id()
    params = {"segmenter_checkpoint": random_builtin_checkpoint, "reliable_input": True, "device": "cpu"}
    node = NodeProcess(MODULE, params, isolated_env(domain), tmp / "node.log")
    graph = TestGraph(domain)
    reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
    rig = Rig(
        node=node,
        graph=graph,
        outputs=Outputs(graph),
        reliable_pub=graph.node.create_publisher(Image, "/image", reliable),
        compressed_pub=graph.node.create_publisher(CompressedImage, "/image/compressed", reliable),
    )
    try:
        started = graph.spin_until(
            lambda: rig.reliable_pub.get_subscription_count() > 0 or not node.running(), 60.0
        )
        assert started and node.running(), f"node did not come up:\n{node.log()}"
        yield rig
    finally:
        node.stop()
        graph.close()


def _rgb(seed: int, height: int = HEIGHT, width: int = WIDTH) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def _decode(msg: Image) -> np.ndarray:
    return decode_image(msg.encoding, msg.height, msg.width, msg.step, msg.data)


def _check_frame(frame: dict[str, Any], stamp: int, frame_id: str, height: int, width: int) -> None:
    """Every output: the input's header, the right encoding and size, self-consistent content."""
    for topic, encoding in IMAGE_OUTPUTS.items():
        msg = frame[topic]
        assert (msg.header.stamp.sec, msg.header.stamp.nanosec, msg.header.frame_id) == (stamp, 123, frame_id)
        assert (msg.encoding, msg.height, msg.width) == (encoding, height, width), topic
    labels = _decode(frame["/ood/labels"])
    assert np.all((labels < 19) | (labels == 255))
    np.testing.assert_array_equal(_decode(frame["/ood/labels_color"]), CITYSCAPES.colorize(labels))
    score = _decode(frame["/ood/anomaly_score"])
    assert score.dtype == np.float32 and np.isfinite(score).all()
    mask = _decode(frame["/ood/anomaly_mask"])
    assert set(np.unique(mask).tolist()) <= {0, 255}
    markers = frame[OBSTACLES].markers
    assert markers[0].action == Marker.DELETEALL
    for marker in markers:
        assert (marker.header.stamp.sec, marker.header.stamp.nanosec, marker.header.frame_id) == (
            stamp, 123, frame_id)
    boxes = [m for m in markers[1:] if m.type in (Marker.LINE_STRIP, Marker.CUBE)]
    labels_text = [m for m in markers[1:] if m.type == Marker.TEXT_VIEW_FACING]
    assert len(boxes) == len(labels_text) == (len(markers) - 1) // 2


@pytest.mark.parametrize("encoding", ["rgb8", "bgr8", "rgba8", "bgra8", "mono8"])
def test_every_output_carries_the_input_header(rig, encoding):
    rgb = _rgb(1)
    stamp = rig.publish_rgb(rgb, encoding, frame_id=f"cam_{encoding}_{{stamp}}")
    frame = rig.outputs.frame(stamp)
    _check_frame(frame, stamp, f"cam_{encoding}_{stamp}", HEIGHT, WIDTH)
    score = _decode(frame["/ood/anomaly_score"])
    expected_mask = np.where(score >= MSP_THRESHOLD, 255, 0)
    np.testing.assert_array_equal(_decode(frame["/ood/anomaly_mask"]), expected_mask)


def test_colour_encodings_and_compressed_input_decode_to_the_same_picture(rig):
    rgb = _rgb(2)
    results = {}
    for encoding in ("rgb8", "bgr8", "rgba8", "bgra8"):
        results[encoding] = rig.outputs.frame(rig.publish_rgb(rgb, encoding))
    assert all(r.successful for r in rig.set(compressed_input=True))
    try:
        stamp = rig.publish_until_outputs(
            lambda s: rig.compressed_pub.publish(compressed_msg(rgb, s, "cam_png"))
        )
        results["png"] = rig.outputs.frame(stamp)
        _check_frame(results["png"], stamp, "cam_png", HEIGHT, WIDTH)
    finally:
        assert all(r.successful for r in rig.set(compressed_input=False))
    reference = results["rgb8"]
    for name, frame in results.items():  # a swapped channel order would change the scores
        np.testing.assert_array_equal(_decode(frame["/ood/labels"]), _decode(reference["/ood/labels"]), name)
        np.testing.assert_allclose(
            _decode(frame["/ood/anomaly_score"]), _decode(reference["/ood/anomaly_score"]),
            rtol=1e-5, atol=1e-6, err_msg=name,
        )


def _malformed(kind: str, stamp: int) -> Image:
    msg = image_msg(_rgb(3), "rgb8", stamp, "bad")
    if kind == "truncated":
        msg.data = bytes(msg.data)[:-10]
    elif kind == "zero_size":
        msg.height = msg.width = msg.step = 0
        msg.data = b""
    elif kind == "unknown_encoding":
        msg.encoding = "no_such_encoding"
    elif kind == "wrong_step":
        msg.step = WIDTH * 3 - 3
    return msg


@pytest.mark.parametrize("kind", ["truncated", "zero_size", "unknown_encoding", "wrong_step"])
def test_malformed_frame_is_skipped_and_the_next_one_processed(rig, kind):
    rig.publish_rgb(_rgb(4))
    failed_before = int(rig.latest_diagnostics(lambda d: True)["frames_failed"])
    bad = rig.stamp()
    rig.reliable_pub.publish(_malformed(kind, bad))
    rig.latest_diagnostics(lambda d: int(d["frames_failed"]) > failed_before)
    stamp = rig.publish_rgb(_rgb(4))
    _check_frame(rig.outputs.frame(stamp), stamp, "cam", HEIGHT, WIDTH)
    assert rig.outputs.frame(bad) == {}
    assert rig.node.running()
    assert "frame skipped" in rig.node.log()


def test_large_image_round_trips(rig):
    rgb = _rgb(5, 1024, 2048)
    stamp = rig.publish_rgb(rgb, frame_id="cam_large", timeout=90.0, retry=15.0)
    frame = rig.outputs.frame(stamp)
    _check_frame(frame, stamp, "cam_large", 1024, 2048)
    assert len(frame["/ood/anomaly_score"].data) == 1024 * 2048 * 4


def test_default_sensor_data_qos_input(rig):
    best_effort = QoSProfile(depth=1, reliability=ReliabilityPolicy.BEST_EFFORT)
    publisher = rig.graph.node.create_publisher(Image, "/image", best_effort)
    assert all(r.successful for r in rig.set(reliable_input=False))
    try:
        # Best effort may lose a frame during discovery; publish_until_outputs publishes again.
        stamp = rig.publish_until_outputs(
            lambda s: publisher.publish(image_msg(_rgb(6), "rgb8", s, "cam_be")), retry=2.0
        )
        _check_frame(rig.outputs.frame(stamp), stamp, "cam_be", HEIGHT, WIDTH)
    finally:
        assert all(r.successful for r in rig.set(reliable_input=True))
        rig.graph.node.destroy_publisher(publisher)


def test_keep_latest_processes_the_newest_frame_of_a_burst(rig):
    rig.publish_rgb(_rgb(7))
    burst = [rig.stamp() for _ in range(20)]
    messages = [image_msg(_rgb(stamp), "rgb8", stamp, "burst") for stamp in burst]
    for message in messages:  # far faster than the model: the node must skip stale frames, not queue them
        rig.reliable_pub.publish(message)
    assert rig.graph.spin_until(lambda: rig.outputs.complete(burst[-1]), 30.0), rig.node.log()
    processed = [s for s in burst if rig.outputs.frame(s)]
    assert burst[-1] in processed and len(processed) < len(burst)

    def settled(d: dict[str, str]) -> bool:
        counters = ("frames_processed", "frames_dropped", "frames_failed", "frames_idle")
        counted = sum(int(d[k]) for k in counters)
        return int(d["frames_received"]) == counted

    diagnostics = rig.latest_diagnostics(settled)
    assert int(diagnostics["frames_received"]) >= len(processed)


def test_diagnostics_report_rate_latency_and_identity(rig):
    rig.publish_rgb(_rgb(8))
    diagnostics = rig.latest_diagnostics(lambda d: int(d.get("frames_processed", "0")) > 0)
    for key in ("input_rate_hz", "latency_p50_ms", "latency_p95_ms", "frames_dropped"):
        assert math.isfinite(float(diagnostics[key])), key
    assert float(diagnostics["latency_p95_ms"]) >= float(diagnostics["latency_p50_ms"]) > 0.0
    stages = [float(diagnostics[f"{stage}_p50_ms"]) for stage in ("wait", "decode", "pipeline", "outputs", "publish")]
    assert all(value >= 0.0 for value in stages) and stages[2] > 0.0  # the pipeline always takes time
    assert sum(stages) <= float(diagnostics["latency_p95_ms"]) * 1.5  # stages split the latency (medians differ)
    assert (diagnostics["device"], diagnostics["head"], diagnostics["segmenter"]) == ("cpu", "msp", "builtin")
    assert "Fast DDS profile" in rig.node.log()


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({"head": "no_such_head"}, "msp"),
        ({"segmenter": "no_such_segmenter"}, "builtin"),
        ({"device": "tpu"}, "cuda:N"),
        ({"score_resolution": "full"}, "native, input"),
        ({"min_obstacle_area": 0}, ">= 1"),
        ({"threshold": math.inf}, "NaN"),
        ({"head_checkpoint": "/no/such/head.pt"}, "an existing file"),
    ],
)
def test_invalid_runtime_parameter_is_refused(rig, values, expected):
    (result,) = rig.set(**values)
    assert not result.successful
    assert expected in result.reason


def test_runtime_parameters_take_effect(rig):
    assert all(r.successful for r in rig.set(threshold=0.0))  # msp >= 0 everywhere: all anomalous
    try:
        stamp = rig.publish_rgb(_rgb(9))
        assert np.all(_decode(rig.outputs.frame(stamp)["/ood/anomaly_mask"]) == 255)
        assert all(r.successful for r in rig.set(head="entropy"))  # rebuilds the pipeline
        stamp = rig.publish_rgb(_rgb(9))
        _check_frame(rig.outputs.frame(stamp), stamp, "cam", HEIGHT, WIDTH)
        rig.latest_diagnostics(lambda d: d.get("head") == "entropy")
    finally:
        assert all(r.successful for r in rig.set(head="msp", threshold=math.nan))


def test_onnxruntime_backend_publishes_the_scores_of_the_torch_pipeline(rig, random_builtin_checkpoint, tmp_path):
    """backend:=onnxruntime at run time: the node exports its graph, warms up and publishes what torch computes."""
    from ood_seg_node.pipeline import Pipeline

    rgb = _rgb(21)
    reference = Pipeline.from_names(segmenter_checkpoint=random_builtin_checkpoint, head="energy",
                                    device="cpu").process(rgb)
    assert all(r.successful for r in rig.set(head="energy", backend="onnxruntime",
                                             engine_cache_dir=str(tmp_path)))

    def rebuilt() -> bool:  # the parameters arrive one by one: wait for the pipeline built from all three
        return any("pipeline rebuilt" in line and "backend='onnxruntime'" in line and str(tmp_path) in line
                   for line in rig.node.log().splitlines())

    try:
        assert rig.graph.spin_until(rebuilt, 120.0), rig.node.log()
        assert len(list(tmp_path.glob("onnx/*.onnx"))) == 1, rig.node.log()  # exported while warming up
        stamp = rig.publish_rgb(rgb)
        frame = rig.outputs.frame(stamp)
        _check_frame(frame, stamp, "cam", HEIGHT, WIDTH)
        np.testing.assert_allclose(_decode(frame["/ood/anomaly_score"]), reference.score, atol=1e-4)
        assert (_decode(frame["/ood/labels"]) == reference.labels).mean() >= 0.999
    finally:
        assert all(r.successful for r in rig.set(head="msp", backend="torch"))


def test_a_failed_rebuild_keeps_the_running_model_and_restores_the_parameters(rig, tmp_path):
    not_weights = tmp_path / "weights.pt"
    not_weights.write_text("not a checkpoint")
    (result,) = rig.set(segmenter_checkpoint=str(not_weights))
    assert result.successful  # cheap checks pass; the model is built off the parameter callback
    restored = rig.graph.spin_until(
        lambda: rig.graph.get_parameters("/ood_seg_node", "segmenter_checkpoint")["segmenter_checkpoint"]
        != str(not_weights), 30.0)
    assert restored, rig.node.log()
    assert "pipeline rebuild failed" in rig.node.log() and str(not_weights) in rig.node.log()
    stamp = rig.publish_rgb(_rgb(12))  # still running the model it had
    _check_frame(rig.outputs.frame(stamp), stamp, "cam", HEIGHT, WIDTH)


def test_obstacles_are_image_plane_boxes_until_camera_info_puts_them_on_the_ground(rig):
    assert all(r.successful for r in rig.set(threshold=0.0))  # the whole frame is one obstacle
    info_pub = rig.graph.node.create_publisher(CameraInfo, "/camera_info", 10)
    try:
        stamp = rig.publish_rgb(_rgb(12))
        assert [m.type for m in rig.outputs.frame(stamp)[OBSTACLES].markers[1:]] == [
            Marker.LINE_STRIP, Marker.TEXT_VIEW_FACING]
        info = CameraInfo(width=WIDTH, height=HEIGHT, k=[100.0, 0.0, 80.0, 0.0, 100.0, 60.0, 0.0, 0.0, 1.0])
        for _ in range(20):  # camera_info is best effort: it may need a few tries after discovery
            info_pub.publish(info)
            rig.graph.spin_for(0.1)
            markers = rig.outputs.frame(rig.publish_rgb(_rgb(12)))[OBSTACLES].markers
            if markers[1].type == Marker.CUBE:
                break
        assert [m.type for m in markers[1:]] == [Marker.CUBE, Marker.TEXT_VIEW_FACING]
        # Foot at the bottom row (v = 119), 59 px below the horizon, camera 1.5 m high: 1.5 * 100 / 59 ahead.
        assert markers[1].pose.position.z == pytest.approx(1.5 * 100.0 / 59.0, rel=1e-3)
    finally:
        rig.graph.node.destroy_publisher(info_pub)
        assert all(r.successful for r in rig.set(threshold=math.nan))


def test_no_inference_without_subscribers(rig):
    rig.outputs.unsubscribe()
    try:
        before = rig.latest_diagnostics(lambda d: True)
        stamps = []

        def idle_counted() -> bool:
            stamp = rig.stamp()
            stamps.append(stamp)
            rig.reliable_pub.publish(image_msg(_rgb(10), "rgb8", stamp, "idle"))
            diagnostics = rig.latest_diagnostics(lambda d: True, timeout=5.0)
            return int(diagnostics["frames_idle"]) > int(before["frames_idle"])

        assert any(idle_counted() for _ in range(10)), rig.node.log()
    finally:
        rig.outputs.subscribe()
    stamp = rig.publish_rgb(_rgb(11))
    assert rig.outputs.complete(stamp)


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"head": "no_such_head"}, "valid: "),
        ({"threshold": 1}, "threshold"),  # an integer for a double parameter
        ({"segmenter_checkpoint": "/no/such/weights.pt"}, "/no/such/weights.pt"),
    ],
)
def test_invalid_start_parameter_exits_with_one_line(params, expected):
    result = run_to_exit(MODULE, {"device": "cpu", **params}, isolated_env(random_domain_id()))
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 1
    assert len(lines) == 1 and expected in lines[0] and "error" in lines[0], result.stderr


def test_sigterm_shuts_down_cleanly(rig):
    """Runs last in this module: stops the shared node the way systemd or ros2 launch does."""
    assert rig.node.stop(signal.SIGTERM) == 0
    assert "Traceback" not in rig.node.log()
