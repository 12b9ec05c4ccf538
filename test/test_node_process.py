# Copyright 2026 The ood_seg_node developers. Licensed under the Apache License, Version 2.0.
"""The node process as a terminal, launch and a camera driver treat it: signals, start-up, lost frames."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from ros_helpers import PROFILE_VAR, REPO_ROOT, isolated_env, random_domain_id

from ood_seg_node.ros.replay import param_arg

PUBLISHER = """
import sys, time
import numpy as np, rclpy
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image
rclpy.init()
node = rclpy.create_node("camera_driver")
publisher = node.create_publisher(Image, "/image", QoSProfile(depth=1, reliability=ReliabilityPolicy.BEST_EFFORT))
node.create_subscription(Image, "/ood/anomaly_score", lambda msg: None, 1)  # so the node infers
height, width = 480, 640  # 921 KB: more than Fast DDS's default 512 KB shared-memory segment
data = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8).tobytes()
deadline = time.monotonic() + float(sys.argv[1])
while time.monotonic() < deadline and rclpy.ok():
    publisher.publish(Image(height=height, width=width, encoding="rgb8", step=width * 3, data=data))
    rclpy.spin_once(node, timeout_sec=0.2)
"""


def _start_node(tmp_path: Path, env: dict[str, str], **params: object) -> tuple[subprocess.Popen, Path]:
    """The node in a process group of its own, as a shell starts a foreground job."""
    command = [sys.executable, "-m", "ood_seg_node.ros.node", "--ros-args"]
    for name, value in {"device": "cpu", **params}.items():
        command += ["-p", param_arg(name, value)]
    log = tmp_path / "node.log"
    with open(log, "w", encoding="utf-8") as out:
        process = subprocess.Popen(command, env=env, cwd=str(REPO_ROOT), stdout=out, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    return process, log


def _wait_for(log: Path, text: str, process: subprocess.Popen, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text in log.read_text():
            return
        assert process.poll() is None, f"node exited early:\n{log.read_text()}"
        time.sleep(0.1)
    raise AssertionError(f"{text!r} not in the node's log within {timeout} s:\n{log.read_text()}")


@pytest.mark.parametrize(
    ("signals", "gap_s", "busy"),
    [((signal.SIGINT, signal.SIGINT), 0.05, True), ((signal.SIGINT,) * 3, 0.3, True),
     ((signal.SIGTERM, signal.SIGINT), 0.05, False)],
    ids=["ctrl-c-under-launch", "ctrl-c-three-times", "sigterm-then-sigint"],
)
def test_signals_to_the_process_group_stop_the_node_with_exit_0(tmp_path, random_builtin_checkpoint, signals,
                                                                gap_s, busy):
    """A shell sends Ctrl-C to the whole group and launch forwards one more, often while a frame is in
    flight: one clean stop (exit 0), no traceback, nothing published on a dead context, and no late
    signal killing the interpreter on its way out."""
    env = isolated_env(random_domain_id())
    process, log = _start_node(tmp_path, env, segmenter_checkpoint=random_builtin_checkpoint)
    camera = None
    try:
        _wait_for(log, "ready:", process)
        if busy:
            camera = subprocess.Popen([sys.executable, "-c", PUBLISHER, "60"], env=env)
            _wait_for(log, "first frame processed", process)
        for sig in signals:
            os.killpg(process.pid, sig)
            time.sleep(gap_s)
        assert process.wait(timeout=20) == 0, log.read_text()
    finally:
        for child in (process, camera):
            if child is not None and child.poll() is None:
                child.kill()
                child.wait()
    text = log.read_text()
    for sign in ("Traceback", "KeyboardInterrupt", "context is invalid"):
        assert sign not in text, text


def test_start_up_failure_exits_at_once(tmp_path):
    """A checkpoint that is refused: one line, exit 1, no thread or participant left waiting."""
    bad = tmp_path / "weights.pt"
    bad.write_bytes(b"\x80\x02 not a checkpoint")
    started = time.monotonic()
    process, log = _start_node(tmp_path, isolated_env(random_domain_id()),
                               segmenter="torchvision:lraspp_mobilenet_v3_large", segmenter_checkpoint=str(bad))
    try:
        assert process.wait(timeout=60) == 1, log.read_text()
    finally:
        if process.poll() is None:
            process.kill()
    lines = [line for line in log.read_text().splitlines() if line.strip()]
    assert len(lines) == 1 and "error" in lines[0] and str(bad) in lines[0], lines
    assert time.monotonic() - started < 60


@pytest.mark.parametrize("publisher_has_profile", [False, True], ids=["default-fastdds", "shipped-profile"])
def test_frames_lost_in_transport_are_reported_with_the_fix(tmp_path, random_builtin_checkpoint,
                                                            publisher_has_profile):
    """A camera driver without the large-image profile loses most 640x480 frames: the node says why."""
    env = isolated_env(random_domain_id())
    process, log = _start_node(tmp_path, env, segmenter_checkpoint=random_builtin_checkpoint)
    publisher_env = dict(env)
    if not publisher_has_profile:
        publisher_env.pop(PROFILE_VAR)
    try:
        _wait_for(log, "ready:", process)
        subprocess.run([sys.executable, "-c", PUBLISHER, "9"], env=publisher_env, check=True, timeout=60)
    finally:
        os.killpg(process.pid, signal.SIGINT)
        assert process.wait(timeout=20) == 0
    text = log.read_text()
    warned = "frame(s) lost in transport" in text or "no frame arrived" in text
    assert warned != publisher_has_profile, text
    if warned:
        assert f"{PROFILE_VAR}=" in text and "fastdds_large_images.xml" in text


def test_a_validate_calibration_file_runs_the_node_and_guards_its_model(tmp_path, random_builtin_checkpoint):
    """``--params-file calibration.yaml`` (what ``params_file:=`` hands the node in a launch file): the node runs
    with its threshold for the model it was fitted for, and refuses to start with another head in one line."""
    from ood_seg_node.genval.calibration import calibration_identity, write_calibration_yaml
    from ood_seg_node.pipeline import Pipeline

    pipeline = Pipeline.from_names(head="energy", segmenter_checkpoint=random_builtin_checkpoint, device="cpu")
    calibration = tmp_path / "calibration.yaml"
    write_calibration_yaml(calibration, comment=["test"], parameters={
        "head": "energy", "segmenter_checkpoint": random_builtin_checkpoint, "threshold": -1.25,
        "calibrated_for": calibration_identity(pipeline)})
    env = isolated_env(random_domain_id())
    for extra, expected in (((), 0), (("-p", "head:=msp"), 1)):
        command = [sys.executable, "-m", "ood_seg_node.ros.node", "--ros-args", "--params-file", str(calibration),
                   "-p", "device:=cpu", *extra]
        log = tmp_path / f"node{expected}.log"
        with open(log, "w", encoding="utf-8") as out:
            process = subprocess.Popen(command, env=env, cwd=str(REPO_ROOT), stdout=out, stderr=subprocess.STDOUT,
                                       start_new_session=True)
        try:
            if expected == 0:
                _wait_for(log, "ready:", process)
                assert "head=energy" in log.read_text() and "threshold=-1.25" in log.read_text()
                os.killpg(process.pid, signal.SIGINT)
            assert process.wait(timeout=60) == expected, log.read_text()
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
    lines = [line for line in (tmp_path / "node1.log").read_text().splitlines() if line.strip()]
    assert len(lines) == 1 and "fitted for" in lines[0] and "|msp@" in lines[0], lines
