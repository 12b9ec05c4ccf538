# Copyright 2026 The ood_seg_node developers. Licensed under the Apache License, Version 2.0.
"""``ood_seg_evaluator``: online evaluation during rosbag replay.

Subscribes to the node's ``ood/anomaly_score`` and the bag's ``/camera/ood_gt``, pairs them by exact header
stamp, accumulates the same metrics as ``ood_seg evaluate`` (:mod:`ood_seg_node.evaluation.accumulator`),
publishes a running JSON summary on ``ood/eval_summary`` and writes the report (``metrics.json`` ...) to
``out_dir`` when it stops (Ctrl-C, SIGTERM, or ``idle_timeout_s`` after the last message). It exits with code 1
when no frame was matched, so that a replay which evaluated nothing fails (``replay.launch.py`` propagates it).

Component metrics need the run's best-F1 threshold, known only at the end, so each matched frame's score is
kept as float16 (256x512: 256 KB a frame) unless ``component_threshold`` fixes it up front.
"""

from __future__ import annotations

import json
import math
import sys
import time
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.node import Node
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image
from std_msgs.msg import String

from ood_seg_node.encodings import ImageEncodingError, decode_image
from ood_seg_node.evaluation.accumulator import Accumulator
from ood_seg_node.ros.imaging import stamp_ns
from ood_seg_node.ros.runtime import spin_node

PENDING_LIMIT = 200  # unmatched messages kept per side; older ones are counted as unmatched


@dataclass(frozen=True)
class EvaluatorConfig:
    """The evaluator's parameters; field defaults are the declared defaults."""

    out_dir: str = "ood_eval"
    head: str = "online"
    kind: str = "obstacle"
    component_threshold: float = math.nan
    idle_timeout_s: float = 0.0


EVALUATOR_DESCRIPTIONS = {
    "out_dir": "folder the report (metrics.json, curves) is written to when the evaluator stops",
    "head": "label of the evaluated head in the report",
    "kind": "SMIYC component metrics of the obstacle or the anomaly track: obstacle, anomaly",
    "component_threshold": "threshold of the component metrics; NaN = the run's best-F1 threshold",
    "idle_timeout_s": "finish this many seconds after the last message; 0 = only on Ctrl-C / SIGTERM",
}


class EvaluatorNode(Node):
    """Pairs score maps with ground truth by stamp and accumulates pixel and component metrics."""

    def __init__(self, **node_options: Any) -> None:
        super().__init__("ood_seg_evaluator", **node_options)
        try:
            config = self._declare_parameters()
        except BaseException:
            self.destroy_node()
            raise
        self.out_dir = Path(config.out_dir)
        self.head = config.head
        self.idle_timeout = config.idle_timeout_s
        threshold = config.component_threshold
        self.accumulator = Accumulator(config.kind, {self.head: None if math.isnan(threshold) else threshold})
        self.scores: dict[int, np.ndarray] = {}
        self.gts: dict[int, np.ndarray] = {}
        self.unmatched = {"score": 0, "gt": 0}
        self.matched = 0
        self.last_message = time.monotonic()
        qos = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST)
        self._score_sub = self.create_subscription(Image, "ood/anomaly_score", self.on_score, qos)
        self._gt_sub = self.create_subscription(Image, "/camera/ood_gt", self.on_gt, qos)
        self.summary = self.create_publisher(String, "ood/eval_summary", 10)
        self.create_timer(1.0, self.tick)
        self.finished = False

    def _declare_parameters(self) -> EvaluatorConfig:
        """Declare every parameter read-only (the run accumulates under them) and validate it."""
        for field in fields(EvaluatorConfig):
            self.declare_parameter(field.name, field.default,
                                   ParameterDescriptor(description=EVALUATOR_DESCRIPTIONS[field.name], read_only=True))
        config = EvaluatorConfig(**{f.name: self.get_parameter(f.name).value for f in fields(EvaluatorConfig)})
        checks = [
            ("out_dir", bool(config.out_dir.strip()), "a folder path"),
            ("head", bool(config.head.strip()), "a non-empty label"),
            ("kind", config.kind in ("obstacle", "anomaly"), "obstacle, anomaly"),
            ("component_threshold", not math.isinf(config.component_threshold), "a finite number or NaN"),
            ("idle_timeout_s", math.isfinite(config.idle_timeout_s) and config.idle_timeout_s >= 0, "seconds >= 0"),
        ]
        for name, ok, valid in checks:
            if not ok:
                raise ValueError(f"invalid {name} {getattr(config, name)!r}; valid: {valid}")
        return config

    def _decode(self, msg: Image, expected: str) -> np.ndarray | None:
        if msg.encoding != expected:
            self.get_logger().warn(f"ignoring {msg.encoding} image, expected {expected}", throttle_duration_sec=5.0)
            return None
        try:
            return decode_image(msg.encoding, msg.height, msg.width, msg.step, msg.data,
                                is_bigendian=msg.is_bigendian)
        except ImageEncodingError as error:
            self.get_logger().warn(f"malformed image skipped: {error}", throttle_duration_sec=5.0)
            return None

    def on_score(self, msg: Image) -> None:
        self._arrive(self.scores, self.gts, msg.header, self._decode(msg, "32FC1"), "score")

    def on_gt(self, msg: Image) -> None:
        self._arrive(self.gts, self.scores, msg.header, self._decode(msg, "mono8"), "gt")

    def _arrive(self, mine: dict, theirs: dict, header, array: np.ndarray | None, side: str) -> None:
        stamp, frame_id = stamp_ns(header), header.frame_id
        self.last_message = time.monotonic()
        if array is None:
            return
        if stamp not in theirs:
            mine[stamp] = array
            while len(mine) > PENDING_LIMIT:
                mine.pop(min(mine))
                self.unmatched[side] += 1
            return
        partner = theirs.pop(stamp)
        score, gt = (array, partner) if side == "score" else (partner, array)
        if score.shape != gt.shape:
            self.get_logger().warn(f"score {score.shape} and gt {gt.shape} differ at stamp {stamp}; skipped")
            return
        self.accumulator.add(self.matched, gt, {self.head: score}, sequence=frame_id)
        self.matched += 1

    def tick(self) -> None:
        # The publishers matched on each input tell a player when the evaluator will see every frame.
        summary = {"frames": self.matched, "unmatched_scores": len(self.scores) + self.unmatched["score"],
                   "unmatched_gt": len(self.gts) + self.unmatched["gt"],
                   "score_publishers": self._score_sub.get_publisher_count(),
                   "gt_publishers": self._gt_sub.get_publisher_count()}
        if self.matched:
            pixel = self.accumulator.heads[self.head].pixel.compute()
            summary.update({k: v for k, v in pixel.items() if k in ("ap", "auroc", "fpr95")})
        self.summary.publish(String(data=json.dumps(summary)))
        idle = time.monotonic() - self.last_message
        if self.idle_timeout > 0 and self.matched and idle > self.idle_timeout:
            self.get_logger().info(f"no message for {idle:.1f} s: finishing")
            self.finish()  # sets finished: spin_node ends its loop and destroys the node, as on Ctrl-C

    @property
    def exit_code(self) -> int:
        """What the process returns (read by spin_node): 1 when no frame was evaluated."""
        return 0 if self.matched else 1

    def close(self) -> None:
        self.finish()

    def finish(self) -> dict | None:
        """Component pass + report; idempotent."""
        if self.finished:
            return None
        self.finished = True
        if not self.matched:
            self.get_logger().error("no score map matched a ground-truth stamp; nothing written (exit code 1)")
            return None
        unmatched = {"unmatched_scores": len(self.scores) + self.unmatched["score"],
                     "unmatched_gt": len(self.gts) + self.unmatched["gt"]}
        results = self.accumulator.finish(meta={"source": "online", **unmatched}).write(self.out_dir)
        self.get_logger().info(
            f"{self.matched} frames evaluated, {unmatched}: AP {results[self.head]['ap']:.4f} "
            f"-> {self.out_dir / 'metrics.json'}"
        )
        return results


def main(args: list[str] | None = None) -> int:
    """Console script ``ood_seg_evaluator``; the report is written however it stops (exit code 1 if empty)."""
    return spin_node("ood_seg_evaluator", EvaluatorNode, (ValueError,), args)


if __name__ == "__main__":
    sys.exit(main())
