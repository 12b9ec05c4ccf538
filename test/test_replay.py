# Copyright 2026 The ood_seg_node developers. Licensed under the Apache License, Version 2.0.
"""A bag replayed through the real node and the online evaluator (replay.launch.py's parts, over Fast DDS)
gives the score maps and metrics of the offline ``ood_seg evaluate --bag`` on the same bag.

Online and offline run the same code (:meth:`Pipeline.process` on the same decoded frame) but in two
processes, and they are not bit-identical by construction: the node runs torch with the machine's default
thread count, the test process with one thread, and oneDNN's convolutions sum in another order with
another thread count or instruction set (measured: up to 2.4e-7 on energy scores of magnitude 3). So
the test compares with tolerances that such float noise cannot reach but a real difference would:

- score maps per frame within 1e-4 (relative and absolute): a wrong colour order, resize or
  interpolation moves scores by 1e-2 or more;
- AP, AUROC and FPR95 within 1e-3: they are rank statistics, and a near-tie that float noise reorders
  moves AUROC by 1 / (inlier pixels x anomaly pixels), about 1e-6 here; a frame paired with the wrong
  ground truth or a dropped frame moves them by 1e-2 or more.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from ros_helpers import isolated_env, random_domain_id

from ood_seg_node.bags import DEFAULT_START_NS, read_bag, write_bag
from ood_seg_node.cli import main as cli_main
from ood_seg_node.datasets import open_dataset
from ood_seg_node.pipeline import Pipeline
from ood_seg_node.ros.replay import NodeProcess, Replayer, ood_seg_node_process

SCORE_TOLERANCE = 1e-4
METRIC_TOLERANCE = 1e-3


def test_online_replay_equals_offline_evaluation(tmp_path, random_builtin_checkpoint):
    dataset = open_dataset("synthetic", seed=2003, frames=8, height=64, width=128)
    bag = tmp_path / "bag"
    write_bag(bag, iter(dataset), rate_hz=4.0, camera=dataset.camera, kind=dataset.kind, progress=False)
    assert cli_main(["evaluate", "--bag", str(bag), "--head", "energy", "--segmenter-checkpoint",
                     random_builtin_checkpoint, "--device", "cpu", "--overlays", "0",
                     "--out", str(tmp_path / "offline")]) == 0
    offline = json.loads((tmp_path / "offline" / "metrics.json").read_text())["heads"]["energy"]

    domain = random_domain_id()
    env = isolated_env(domain)
    online_dir = tmp_path / "online"
    frames = [frame.to_frame() for frame in read_bag(bag)]
    evaluator = NodeProcess("ood_seg_node.ros.evaluator_node", {"out_dir": str(online_dir), "head": "energy"}, env,
                            tmp_path / "evaluator.log")
    replayer = Replayer(domain)
    try:
        params = {"head": "energy", "segmenter_checkpoint": random_builtin_checkpoint, "reliable_input": True,
                  "device": "cpu"}
        with ood_seg_node_process(params, env, tmp_path / "node.log") as node:
            replayer.wait_for_node(node, evaluator=evaluator)
            stats = replayer.play(frames, rate_hz=2.0, start_ns=DEFAULT_START_NS, node=node, lockstep=True)
        assert replayer.scored() == stats.sent == len(frames), node.log()
    finally:
        replayer.close()
        assert evaluator.stop() == 0, evaluator.log()

    pipeline = Pipeline.from_names(head="energy", segmenter_checkpoint=random_builtin_checkpoint, device="cpu")
    for frame, stamp in zip(frames, sorted(replayer.received), strict=True):
        np.testing.assert_allclose(replayer.received[stamp].score, pipeline.process(frame.image).score,
                                   rtol=SCORE_TOLERANCE, atol=SCORE_TOLERANCE, err_msg=frame.name)

    online = json.loads((online_dir / "metrics.json").read_text())
    assert online["run"]["unmatched_scores"] == 0 and online["run"]["unmatched_gt"] == 0
    online = online["heads"]["energy"]
    assert online["frames"] == offline["frames"] == len(frames)
    for key in ("ap", "auroc", "fpr95"):
        assert online[key] == pytest.approx(offline[key], abs=METRIC_TOLERANCE), key
    for key in ("siou", "ppv", "mean_f1"):  # online keeps full-resolution float16 maps, offline native ones
        a, b = (math.nan if v is None else v for v in (online[key], offline[key]))
        assert a == pytest.approx(b, abs=0.05, nan_ok=True), key


@pytest.mark.parametrize("mode", ["flow", "ground"])
def test_node_fuses_a_replayed_drive_like_the_pipeline(tmp_path, mode):
    """The node over DDS (stamps, CameraInfo, /odom from the bag) fuses as Pipeline.process with the bag's views."""
    dataset = open_dataset("synthetic", seed=2003, frames=5, height=64, width=128)
    bag = tmp_path / "bag"
    write_bag(bag, iter(dataset), rate_hz=4.0, camera=dataset.camera, kind=dataset.kind, progress=False)
    frames = [frame.to_frame() for frame in read_bag(bag)]
    assert all(frame.view is not None for frame in frames)
    domain = random_domain_id()
    replayer = Replayer(domain)
    params = {"head": "energy", "reliable_input": True, "device": "cpu", "temporal_fusion": mode,
              "odometry_topic": "/odom", "camera_height": dataset.camera.height_m,
              "camera_pitch": dataset.camera.pitch_rad}
    try:
        with ood_seg_node_process(params, isolated_env(domain), tmp_path / "node.log") as node:
            replayer.wait_for_node(node)
            stats = replayer.play(frames, rate_hz=4.0, start_ns=DEFAULT_START_NS, node=node, lockstep=True)
        assert replayer.scored() == stats.sent == len(frames), node.log()
    finally:
        replayer.close()
    fused = Pipeline.from_names(head="energy", device="cpu", temporal_fusion=mode)  # the shipped weights
    alone = Pipeline.from_names(head="energy", device="cpu")
    stamps = sorted(replayer.received)
    for index, (frame, stamp) in enumerate(zip(frames, stamps, strict=True)):
        expected = fused.process(frame.image, stamp=stamp / 1e9, view=frame.view)
        assert expected.restart == ("first frame" if index == 0 else "")
        np.testing.assert_allclose(replayer.received[stamp].score, expected.score, rtol=SCORE_TOLERANCE,
                                   atol=SCORE_TOLERANCE, err_msg=frame.name)
    assert np.abs(expected.score - alone.process(frames[-1].image).score).max() > 1e-2  # it did fuse
