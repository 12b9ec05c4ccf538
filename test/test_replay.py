# Copyright 2026 The ood_seg_node developers. Licensed under the Apache License, Version 2.0.
"""A bag replayed through the real node and the online evaluator (replay.launch.py's parts, over Fast DDS)
gives the metrics of the offline ``ood_seg evaluate --bag`` on the same bag."""

from __future__ import annotations

import json
import math

import pytest
from ros_helpers import isolated_env, random_domain_id

from ood_seg_node.bags import DEFAULT_START_NS, read_bag, write_bag
from ood_seg_node.cli import main as cli_main
from ood_seg_node.datasets import open_dataset
from ood_seg_node.ros_replay import NodeProcess, Replayer, ood_seg_node_process


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
    evaluator = NodeProcess("ood_seg_node.evaluator_node", {"out_dir": str(online_dir), "head": "energy"}, env,
                            tmp_path / "evaluator.log")
    replayer = Replayer(domain)
    try:
        params = {"head": "energy", "segmenter_checkpoint": random_builtin_checkpoint, "reliable_input": True,
                  "device": "cpu"}
        with ood_seg_node_process(params, env, tmp_path / "node.log") as node:
            replayer.wait_for_node(node, evaluator=evaluator)
            stats = replayer.play(frames, rate_hz=2.0, start_ns=DEFAULT_START_NS, node=node)
        assert replayer.scored() == stats.sent == len(frames), node.log()
    finally:
        replayer.close()
        assert evaluator.stop() == 0, evaluator.log()
    online = json.loads((online_dir / "metrics.json").read_text())
    assert online["run"]["unmatched_scores"] == 0 and online["run"]["unmatched_gt"] == 0
    online = online["heads"]["energy"]
    assert online["frames"] == offline["frames"] == len(frames)
    for key in ("ap", "auroc", "fpr95"):
        assert online[key] == pytest.approx(offline[key], abs=1e-6), key
    for key in ("siou", "ppv", "mean_f1"):  # online keeps full-resolution float16 maps, offline native ones
        a, b = (math.nan if v is None else v for v in (online[key], offline[key]))
        assert a == pytest.approx(b, abs=0.05, nan_ok=True), key
