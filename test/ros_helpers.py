# Copyright 2026 The ood_seg_node developers. Licensed under the Apache License, Version 2.0.
"""Test helpers for running ROS 2 nodes of this package over real rclpy + Fast DDS.

Every test graph is isolated: ``ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST`` and a random
``ROS_DOMAIN_ID`` per graph, so parallel CI jobs on one host never see each other. The shipped Fast DDS
profile is exported process-wide when this module is imported, because Fast DDS reads its default
profile once per process (at the first participant); importing this module at collection time, before
any test creates a participant, makes the in-process test graph able to carry large images too.

Nodes under test run as users run them (``python -m <module> --ros-args -p ...``) in subprocesses whose
output goes to a file, and tests wait on the ROS graph (discovery, messages) rather than sleeping.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import cv2
import numpy as np
import rclpy
from rcl_interfaces.msg import Parameter as ParameterMsg
from rcl_interfaces.srv import GetParameters, SetParameters
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from sensor_msgs.msg import CompressedImage, Image

from ood_seg_node.encodings import array_to_image_fields
from ood_seg_node.ros import dds
from ood_seg_node.ros.replay import param_arg

REPO_ROOT = Path(__file__).resolve().parents[1]
PROFILE = dds.shipped_profile_path()
PROFILE_VAR = dds.profile_env_var()

if PROFILE is not None:  # see the module docstring: must happen before the first participant
    os.environ[PROFILE_VAR] = str(PROFILE)
os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"


def random_domain_id() -> int:
    """A domain in 1..100: valid for the default port mapping on every RMW, rarely shared by two runs."""
    return random.SystemRandom().randint(1, 100)


def isolated_env(domain_id: int, base: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for a node subprocess of the test graph ``domain_id``."""
    env = dict(os.environ if base is None else base)
    env.update({
        "ROS_DOMAIN_ID": str(domain_id),
        "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST",
        "PYTHONUNBUFFERED": "1",
        "RCUTILS_COLORIZED_OUTPUT": "0",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH", "")])),
        # Keep CPU inference from oversubscribing small CI machines.
        "OMP_NUM_THREADS": env.get("OMP_NUM_THREADS", "2"),
    })
    for name in ("ROS_LOCALHOST_ONLY", "ROS_STATIC_PEERS", "ROS_DISCOVERY_SERVER"):
        env.pop(name, None)
    if PROFILE is not None:
        env[PROFILE_VAR] = str(PROFILE)
    return env


class TestGraph:
    """An rclpy context + node + executor of its own on ``domain_id`` (other tests' contexts untouched)."""

    __test__ = False  # not a pytest test class

    def __init__(self, domain_id: int, name: str = "ood_seg_test") -> None:
        self.domain_id = domain_id
        self.context = Context()
        rclpy.init(context=self.context, domain_id=domain_id)
        self.node = Node(name, context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)

    def spin_until(self, predicate: Callable[[], bool], timeout: float) -> bool:
        """Spin until ``predicate()`` holds or ``timeout`` seconds pass; returns the last value."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return True
            self.executor.spin_once(timeout_sec=0.05)
        return bool(predicate())

    def spin_for(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self.executor.spin_once(timeout_sec=0.05)

    def call(self, service_type: Any, name: str, request: Any, timeout: float = 30.0) -> Any:
        """Call service ``name`` and return its response."""
        client = self.node.create_client(service_type, name)
        try:
            if not self.spin_until(client.service_is_ready, timeout):
                raise TimeoutError(f"{name} not available")
            future = client.call_async(request)
            if not self.spin_until(future.done, timeout):
                raise TimeoutError(f"{name} did not answer")
            return future.result()
        finally:
            self.node.destroy_client(client)

    def set_parameters(self, node_name: str, timeout: float = 30.0, **values: Any) -> list[Any]:
        """Call ``<node_name>/set_parameters``; returns the SetParametersResult list."""
        request = SetParameters.Request(
            parameters=[Parameter(name, value=value).to_parameter_msg() for name, value in values.items()]
        )
        return list(self.call(SetParameters, f"{node_name}/set_parameters", request, timeout).results)

    def get_parameters(self, node_name: str, *names: str, timeout: float = 30.0) -> dict[str, Any]:
        """Call ``<node_name>/get_parameters``; returns the values by name."""
        response = self.call(GetParameters, f"{node_name}/get_parameters", GetParameters.Request(names=list(names)),
                             timeout)
        return {name: Parameter.from_parameter_msg(ParameterMsg(name=name, value=value)).value
                for name, value in zip(names, response.values, strict=True)}

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.context)


def run_to_exit(module: str, params: dict[str, Any], env: dict[str, str], timeout: float = 60.0
                ) -> subprocess.CompletedProcess[str]:
    """Run a node that is expected to exit by itself (e.g. on invalid parameters)."""
    command = [sys.executable, "-m", module, "--ros-args"]
    for name, value in params.items():
        command += ["-p", param_arg(name, value)]
    return subprocess.run(command, env=env, cwd=str(REPO_ROOT), capture_output=True, text=True,
                          timeout=timeout, check=False)


def rgb_in_encoding(rgb: np.ndarray, encoding: str) -> np.ndarray:
    """An HxWx3 RGB array laid out as ``encoding`` (rgb8, bgr8, rgba8, bgra8, mono8) expects."""
    if encoding == "rgb8":
        return rgb
    if encoding == "bgr8":
        return np.ascontiguousarray(rgb[:, :, ::-1])
    alpha = np.full(rgb.shape[:2] + (1,), 255, dtype=np.uint8)
    if encoding == "rgba8":
        return np.concatenate([rgb, alpha], axis=2)
    if encoding == "bgra8":
        return np.concatenate([rgb[:, :, ::-1], alpha], axis=2)
    if encoding == "mono8":
        return cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    raise ValueError(f"no test layout for {encoding}")


def image_msg(rgb: np.ndarray, encoding: str, stamp_sec: int, frame_id: str) -> Image:
    """A sensor_msgs/Image of ``rgb`` in ``encoding`` with a distinctive header."""
    fields = array_to_image_fields(rgb_in_encoding(rgb, encoding), encoding)
    msg = Image(height=fields.height, width=fields.width, encoding=fields.encoding,
                is_bigendian=fields.is_bigendian, step=fields.step)
    msg.header.stamp.sec = stamp_sec
    msg.header.stamp.nanosec = 123
    msg.header.frame_id = frame_id
    msg.data = fields.data
    return msg


def compressed_msg(rgb: np.ndarray, stamp_sec: int, frame_id: str, fmt: str = "png") -> CompressedImage:
    """A sensor_msgs/CompressedImage as image_transport writes it (format ``rgb8; png compressed bgr8``)."""
    ok, encoded = cv2.imencode(f".{fmt}", rgb[:, :, ::-1])
    assert ok
    msg = CompressedImage(format=f"rgb8; {fmt} compressed bgr8")
    msg.header.stamp.sec = stamp_sec
    msg.header.stamp.nanosec = 123
    msg.header.frame_id = frame_id
    msg.data = encoded.tobytes()
    return msg
