# Copyright 2026 The ood_seg_node developers. Licensed under the Apache License, Version 2.0.
"""The online evaluator over real rclpy + Fast DDS gives the offline evaluation's metrics."""

from __future__ import annotations

import json
import math
import signal

import numpy as np
import pytest
import rclpy
from builtin_interfaces.msg import Time
from rclpy.context import Context
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile, ReliabilityPolicy
from ros_helpers import TestGraph, isolated_env, random_domain_id, run_to_exit
from sensor_msgs.msg import Image
from std_msgs.msg import Header, String

from ood_seg_node.datasets.base import Frame
from ood_seg_node.offline_evaluation import ScoreFileScorer, evaluate_frames
from ood_seg_node.ros.evaluator_node import EvaluatorNode
from ood_seg_node.ros.imaging import array_to_image_msg
from ood_seg_node.ros.replay import NodeProcess


def _message(array: np.ndarray, encoding: str, stamp_ns: int) -> Image:
    header = Header(stamp=Time(sec=stamp_ns // 10**9, nanosec=stamp_ns % 10**9), frame_id="camera")
    return array_to_image_msg(array, encoding, header)


def _frames(count: int):
    rng = np.random.default_rng(4)
    for i in range(count):
        gt = np.zeros((30, 40), np.uint8)
        gt[:4] = 255
        gt[10:16, 5 + i:15 + i] = 1
        score = (rng.random(gt.shape) + 0.7 * (gt == 1)).astype(np.float32)
        yield gt, score


def test_online_metrics_equal_offline_and_unmatched_frames_are_counted(tmp_path):
    domain = random_domain_id()
    out = tmp_path / "online"
    node = NodeProcess("ood_seg_node.ros.evaluator_node",
                       {"out_dir": str(out), "head": "test", "idle_timeout_s": 2.0, "kind": "obstacle"},
                       isolated_env(domain), tmp_path / "evaluator.log")
    graph = TestGraph(domain)
    try:
        qos = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
        scores = graph.node.create_publisher(Image, "ood/anomaly_score", qos)
        gts = graph.node.create_publisher(Image, "/camera/ood_gt", qos)
        summaries: list[dict] = []
        graph.node.create_subscription(String, "ood/eval_summary",
                                       lambda msg: summaries.append(json.loads(msg.data)), 10)
        connected = graph.spin_until(lambda: scores.get_subscription_count() and gts.get_subscription_count(), 60)
        assert connected, node.log()
        frames = list(_frames(6))
        for i, (gt, score) in enumerate(frames):
            stamp = (i + 1) * 10**8
            # ground truth first for even frames, score first for odd ones: pairing must not depend on order
            first, second = (gts, scores) if i % 2 == 0 else (scores, gts)
            messages = {gts: _message(gt, "mono8", stamp), scores: _message(score, "32FC1", stamp)}
            first.publish(messages[first])
            second.publish(messages[second])
        gts.publish(_message(frames[0][0], "mono8", 99 * 10**8))  # a ground truth the node never scored
        assert graph.spin_until(lambda: any(s["frames"] == 6 for s in summaries), 30), node.log()
        assert node.wait(timeout=30) == 0, node.log()
    finally:
        graph.close()
        node.stop()
    online = json.loads((out / "metrics.json").read_text())
    folder = tmp_path / "test"
    folder.mkdir()
    offline_frames = []
    for i, (gt, score) in enumerate(frames):
        np.save(folder / f"f{i}.npy", score)
        offline_frames.append(Frame(np.zeros((*gt.shape, 3), np.uint8), gt, None, name=f"f{i}", sequence="camera"))
    offline = evaluate_frames(lambda: iter(offline_frames), [ScoreFileScorer(folder)], kind="obstacle").results()
    for key in ("ap", "auroc", "fpr95", "siou", "ppv", "mean_f1", "frames"):
        value = online["heads"]["test"][key]  # JSON writes NaN (no predicted component) as null
        assert (math.nan if value is None else value) == pytest.approx(offline["test"][key], abs=1e-9, nan_ok=True)
    assert online["heads"]["test"]["ap"] > 0.5
    assert online["run"]["unmatched_gt"] == 1
    assert online["run"]["unmatched_scores"] == 0


def test_idle_timeout_writes_the_report_and_stops_the_node_without_raising(tmp_path):
    context = Context()
    rclpy.init(context=context, domain_id=random_domain_id())
    parameters = [Parameter("out_dir", value=str(tmp_path / "out")), Parameter("head", value="test"),
                  Parameter("idle_timeout_s", value=0.5)]
    node = EvaluatorNode(context=context, parameter_overrides=parameters)
    try:
        gt, score = next(_frames(1))
        node.on_gt(_message(gt, "mono8", 10**8))
        node.on_score(_message(score, "32FC1", 10**8))
        node.last_message -= 10.0  # idle for longer than idle_timeout_s
        node.tick()  # a timer callback: it asks spin_node to stop (finished), never raises out of the executor
        assert node.finished and node.exit_code == 0
    finally:
        node.destroy_node()
        rclpy.try_shutdown(context=context)
    assert json.loads((tmp_path / "out" / "metrics.json").read_text())["heads"]["test"]["frames"] == 1


def test_exit_code_1_when_no_frame_was_evaluated(tmp_path):
    domain = random_domain_id()
    out = tmp_path / "out"
    node = NodeProcess("ood_seg_node.ros.evaluator_node", {"out_dir": str(out), "idle_timeout_s": 1.0},
                       isolated_env(domain), tmp_path / "evaluator.log")
    graph = TestGraph(domain)
    try:
        qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        gts = graph.node.create_publisher(Image, "/camera/ood_gt", qos)
        assert graph.spin_until(lambda: gts.get_subscription_count() > 0, 60), node.log()
        gts.publish(_message(next(_frames(1))[0], "mono8", 10**8))  # ground truth the node never scored
        graph.spin_for(2.0)  # past idle_timeout_s: with nothing matched the evaluator keeps waiting
        assert node.running(), node.log()
    finally:
        graph.close()
        code = node.stop(signal.SIGINT)
    assert code == 1, node.log()
    assert "nothing written" in node.log() and not (out / "metrics.json").exists()


@pytest.mark.parametrize(
    ("params", "expected"),
    [({"kind": "road"}, "valid: obstacle, anomaly"), ({"idle_timeout_s": -1.0}, "seconds >= 0"),
     ({"component_threshold": math.inf}, "finite number or NaN"), ({"out_dir": ""}, "a folder path")],
)
def test_invalid_parameter_is_one_line_and_exit_1(params, expected):
    result = run_to_exit("ood_seg_node.ros.evaluator_node", params, isolated_env(random_domain_id()))
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 1
    assert len(lines) == 1 and expected in lines[0], result.stderr


def test_parameters_are_described_and_read_only(tmp_path):
    context = Context()
    rclpy.init(context=context, domain_id=random_domain_id())
    node = EvaluatorNode(context=context, parameter_overrides=[Parameter("out_dir", value=str(tmp_path))])
    try:
        descriptors = node.describe_parameters(["out_dir", "head", "kind", "component_threshold", "idle_timeout_s"])
        assert all(d.description and d.read_only for d in descriptors)
        (result,) = node.set_parameters([Parameter("kind", value="anomaly")])
        assert not result.successful  # the run accumulates under the parameters it started with
    finally:
        node.destroy_node()
        rclpy.try_shutdown(context=context)
