# Copyright 2026 The ood_seg_node developers. Licensed under the Apache License, Version 2.0.
"""ood_seg_node as a managed node: a lifecycle manager drives it through every transition."""

from __future__ import annotations

import numpy as np
import pytest
from lifecycle_msgs.msg import State, Transition
from lifecycle_msgs.srv import ChangeState, GetState
from rclpy.qos import QoSProfile, ReliabilityPolicy
from ros_helpers import TestGraph, image_msg, isolated_env, random_domain_id
from sensor_msgs.msg import Image

from ood_seg_node.ros.replay import NodeProcess

NODE = "/ood_seg_node"


@pytest.fixture()
def managed(tmp_path, random_builtin_checkpoint):
    domain = random_domain_id()
    params = {"segmenter_checkpoint": random_builtin_checkpoint, "reliable_input": True, "device": "cpu",
              "autostart": False}
    node = NodeProcess("ood_seg_node.ros.node", params, isolated_env(domain), tmp_path / "node.log")
    graph = TestGraph(domain)
    try:
        yield node, graph
    finally:
        assert node.stop() == 0, node.log()
        graph.close()


def _state(graph: TestGraph) -> int:
    return graph.call(GetState, f"{NODE}/get_state", GetState.Request()).current_state.id


def _transition(graph: TestGraph, transition: int) -> bool:
    return graph.call(ChangeState, f"{NODE}/change_state",
                      ChangeState.Request(transition=Transition(id=transition))).success


def test_a_lifecycle_manager_drives_every_transition(managed):
    node, graph = managed
    reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
    publisher = graph.node.create_publisher(Image, "/image", reliable)
    scores: list[Image] = []
    graph.node.create_subscription(Image, "/ood/anomaly_score", scores.append, reliable)
    assert _state(graph) == State.PRIMARY_STATE_UNCONFIGURED, node.log()
    assert "waiting for a lifecycle manager" in node.log()

    assert _transition(graph, Transition.TRANSITION_CONFIGURE)
    assert _state(graph) == State.PRIMARY_STATE_INACTIVE
    graph.spin_for(1.0)
    assert publisher.get_subscription_count() == 0  # inactive: no camera subscription, no inference

    assert _transition(graph, Transition.TRANSITION_ACTIVATE)
    assert graph.spin_until(lambda: publisher.get_subscription_count() == 1, 10.0)
    rgb = np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8)

    def scored() -> bool:
        publisher.publish(image_msg(rgb, "rgb8", 7, "cam"))
        return graph.spin_until(lambda: bool(scores), 1.0)

    assert any(scored() for _ in range(20)), node.log()
    assert (scores[0].height, scores[0].width) == (48, 64)

    assert _transition(graph, Transition.TRANSITION_DEACTIVATE)
    assert graph.spin_until(lambda: publisher.get_subscription_count() == 0, 10.0)
    assert _transition(graph, Transition.TRANSITION_CLEANUP)
    assert _state(graph) == State.PRIMARY_STATE_UNCONFIGURED
    assert _transition(graph, Transition.TRANSITION_CONFIGURE)  # the model loads again
    assert _transition(graph, Transition.TRANSITION_ACTIVATE)
    assert graph.spin_until(lambda: publisher.get_subscription_count() == 1, 10.0)
    assert "Traceback" not in node.log()


def test_configure_fails_cleanly_on_a_model_that_cannot_load(tmp_path, managed):
    node, graph = managed
    not_weights = tmp_path / "weights.pt"
    not_weights.write_text("not a checkpoint")
    assert all(r.successful for r in graph.set_parameters(NODE, segmenter_checkpoint=str(not_weights)))
    assert not _transition(graph, Transition.TRANSITION_CONFIGURE)
    assert _state(graph) == State.PRIMARY_STATE_UNCONFIGURED
    assert "configure failed" in node.log() and str(not_weights) in node.log()
    assert node.running()
