# Copyright 2026 The ood_seg_node developers. Licensed under the Apache License, Version 2.0.
"""Replaying frames through the real node over DDS, as ``ros2 bag play`` would: used by the demo and bench.

:class:`NodeProcess` starts ``ood_seg_node`` as a user would (its own process, ``--ros-args``), and
:class:`Replayer` publishes frames on ``/camera/image_raw`` paced by their stamps, and collects what the node
publishes by header stamp. Its pacing (:func:`paced`) and QoS (:func:`playback_qos`) are also those of the
bag player ``ood_seg play``. Everything stays on this host: :func:`local_ros_environment` sets
``ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST`` and a per-run ``ROS_DOMAIN_ID`` for the replay only (the node
itself never forces them), plus the shipped Fast DDS large-image profile.
"""

from __future__ import annotations

import json
import math
import os
import random
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence, TypeVar

import numpy as np

from ood_seg_node.encodings import decode_image
from ood_seg_node.ros.dds import apply_default_profile

IMAGE_TOPIC = "/camera/image_raw"
CAMERA_INFO_TOPIC = "/camera/camera_info"
GT_TOPIC = "/camera/ood_gt"
ODOMETRY_TOPIC = "/odom"
DEFAULT_CLOCK_HZ = 40.0
"""How often ``--clock`` publishes /clock while waiting for the next message (``ros2 bag play``'s default)."""

T = TypeVar("T")


def local_ros_environment(environ: dict[str, str] | None = None) -> dict[str, str]:
    """A copy of the environment confined to this host, with a fresh domain id unless one is set."""
    env = dict(os.environ if environ is None else environ)
    env["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    env.setdefault("ROS_DOMAIN_ID", str(random.randint(5, 94)))
    apply_default_profile(env)
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def param_arg(name: str, value: object) -> str:
    """``name:=value`` for ``--ros-args -p``, typed as the node declares it (strings quoted)."""
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, float):
        text = repr(value) if math.isfinite(value) else (".nan" if math.isnan(value) else ".inf")
    elif isinstance(value, int):
        text = str(value)
    else:  # quoted so that '1' or 'true' stay strings and '' is an empty string
        text = "'" + str(value).replace("'", "''") + "'"
    return f"{name}:={text}"


class NodeProcess:
    """A node started as a user starts it: ``python -m <module> --ros-args -p name:=value -r from:=to``.

    Output goes to a file (a chatty node can never block on a pipe); used as a context manager it is
    stopped with SIGINT (then killed) on exit.
    """

    def __init__(self, module: str, params: dict[str, object], env: dict[str, str], log_path: str | Path, *,
                 remaps: dict[str, str] | None = None, extra_args: Iterable[str] = (),
                 cwd: str | Path | None = None) -> None:
        command = [sys.executable, "-m", module, *extra_args, "--ros-args"]
        for name, value in params.items():
            command += ["-p", param_arg(name, value)]
        for source, target in (remaps or {}).items():
            command += ["-r", f"{source}:={target}"]
        self.log_path = Path(log_path)
        self._log = open(self.log_path, "w", encoding="utf-8")  # noqa: SIM115 -- closed in stop()
        self.process = subprocess.Popen(command, env=env, cwd=None if cwd is None else str(cwd),
                                        stdout=self._log, stderr=subprocess.STDOUT)

    def __enter__(self) -> NodeProcess:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def log(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def running(self) -> bool:
        return self.process.poll() is None

    def wait(self, timeout: float) -> int:
        try:
            return self.process.wait(timeout=timeout)
        finally:
            if self.process.poll() is not None:
                self._log.close()

    def stop(self, sig: int = signal.SIGINT, timeout: float = 15.0) -> int:
        """Send ``sig`` and wait; kills the process (and returns -9) if it does not exit in time."""
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()
        return self.process.returncode

    def check_alive(self) -> None:
        if self.process.poll() is not None:
            tail = self.log().strip().splitlines()[-1:] or ["(no output)"]
            raise RuntimeError(f"{self.process.args[2]} exited with code {self.process.returncode}: {tail[0]}")


def ood_seg_node_process(params: dict[str, object], env: dict[str, str], log_path: str | Path) -> NodeProcess:
    """The OOD node reading the bag's camera topics, keeping every output for slow reliable subscribers."""
    return NodeProcess("ood_seg_node.ros.node", {"output_depth": 10, **params}, env, log_path,
                       remaps={"image": IMAGE_TOPIC, "camera_info": CAMERA_INFO_TOPIC})


@dataclass
class Received:
    """What came back for one stamp."""

    score: np.ndarray | None = None
    labels: np.ndarray | None = None
    received_at: float = 0.0


@dataclass
class ReplayStats:
    sent: int = 0
    sent_at: dict[int, float] = field(default_factory=dict)


def playback_qos() -> Any:
    """What players offer: reliable keep-last 10, received by reliable and best-effort subscribers alike.

    The node subscribes best-effort by default and reliable for replays (``reliable_input``), where a
    reliable publisher loses no frame in transport.
    """
    from rclpy.qos import QoSProfile, ReliabilityPolicy

    return QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)


def paced(items: Iterable[T], time_ns: Callable[[T], int], *, rate: float = 1.0,
          clock: Callable[[int], None] | None = None, clock_hz: float = DEFAULT_CLOCK_HZ,
          stop: threading.Event | None = None) -> Iterator[T]:
    """Yield each item at its turn, as ``ros2 bag play`` paces: time ``t`` at start + (t - first) / rate.

    Shared by :class:`Replayer` and ``ood_seg play``. ``clock`` receives the playback time (ns, in the items'
    time) ``clock_hz`` times a second while waiting and once just before each item, as ``--clock`` needs;
    setting ``stop`` (e.g. from a signal handler) ends the iteration at once, even mid-wait.
    """
    stop = threading.Event() if stop is None else stop
    first: int | None = None
    started = 0.0
    for item in items:
        if stop.is_set():
            return
        when = time_ns(item)
        if first is None:
            first, started = when, time.perf_counter()
        due = started + (when - first) / 1e9 / rate
        while (remaining := due - time.perf_counter()) > 0:
            if clock is not None:
                clock(first + int((time.perf_counter() - started) * rate * 1e9))
                remaining = min(remaining, 1.0 / clock_hz)
            if stop.wait(remaining):
                return
        if clock is not None:
            clock(when)
        yield item


class RosParticipant:
    """An rclpy node in a context of its own: nothing global is initialised or shut down.

    The domain is ``domain_id``, else ``ROS_DOMAIN_ID``; no signal handler is installed.
    """

    def __init__(self, name: str, domain_id: int | None = None) -> None:
        import rclpy
        from rclpy.context import Context

        self._rclpy = rclpy
        self.context = Context()
        rclpy.init(context=self.context, domain_id=domain_id)
        self.node = rclpy.create_node(name, context=self.context)

    def __enter__(self) -> RosParticipant:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self.node.destroy_node()
        self._rclpy.try_shutdown(context=self.context)


class Replayer(RosParticipant):
    """An rclpy node publishing camera frames and collecting the node's score maps and labels by stamp."""

    def __init__(self, domain_id: int, *, collect_labels: bool = True) -> None:
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import CameraInfo, Image
        from std_msgs.msg import String

        super().__init__(f"ood_seg_replayer_{os.getpid()}", domain_id)
        collect = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
        self.image_pub = self.node.create_publisher(Image, IMAGE_TOPIC, playback_qos())
        self.info_pub = self.node.create_publisher(CameraInfo, CAMERA_INFO_TOPIC, playback_qos())
        self.gt_pub = self.node.create_publisher(Image, GT_TOPIC, playback_qos())
        from nav_msgs.msg import Odometry

        self.odometry_pub = self.node.create_publisher(Odometry, ODOMETRY_TOPIC, playback_qos())
        self.received: dict[int, Received] = {}
        self._lock = threading.Lock()
        self.node.create_subscription(Image, "ood/anomaly_score", self._on_score, collect)
        self.evaluator_summary: dict[str, Any] = {}
        self.node.create_subscription(String, "ood/eval_summary", self._on_summary, 10)
        if collect_labels:
            self.node.create_subscription(Image, "ood/labels", self._on_labels, collect)
        self.node_diagnostics: dict[str, str] = {}  # the newest /diagnostics values of ood_seg_node
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, 10)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self._spinner = threading.Thread(target=self._spin, daemon=True)
        self._stop = threading.Event()
        self._spinner.start()

    def _spin(self) -> None:
        while not self._stop.is_set() and self.context.ok():
            self.executor.spin_once(timeout_sec=0.05)

    def close(self) -> None:
        self._stop.set()
        self._spinner.join(timeout=2)
        self.executor.remove_node(self.node)
        super().close()

    def _entry(self, msg) -> Received:
        from ood_seg_node.ros.imaging import stamp_ns

        stamp = stamp_ns(msg.header)
        return self.received.setdefault(stamp, Received())

    def _on_score(self, msg) -> None:
        received_at = time.perf_counter()  # before decoding: latency ends at delivery
        array = decode_image(msg.encoding, msg.height, msg.width, msg.step, msg.data)
        with self._lock:
            entry = self._entry(msg)
            entry.score, entry.received_at = array, received_at

    def _on_diagnostics(self, msg) -> None:
        for status in msg.status:
            if status.name.startswith("ood_seg_node"):
                self.node_diagnostics = {value.key: value.value for value in status.values}

    def _on_summary(self, msg) -> None:
        self.evaluator_summary = json.loads(msg.data)

    def _on_labels(self, msg) -> None:
        array = decode_image(msg.encoding, msg.height, msg.width, msg.step, msg.data)
        with self._lock:
            self._entry(msg).labels = array

    def _wait_for_score(self, stamp: int, node: NodeProcess | None, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if stamp in self.received and self.received[stamp].score is not None:
                    return
            if node is not None:
                node.check_alive()
            time.sleep(0.01)
        raise TimeoutError(f"no score map for stamp {stamp} within {timeout:.0f} s")

    def scored(self) -> int:
        with self._lock:
            return sum(entry.score is not None for entry in self.received.values())

    def wait_for_node(self, node: NodeProcess | None, timeout: float = 120.0, *,
                      evaluator: NodeProcess | None = None) -> None:
        """Until the node is ready (subscribed to images, publishing scores to us: the model is loaded).

        With ``evaluator``, also until the online evaluator's summary says it is matched with the node's
        score publisher and with the replayer's ground truth publisher (so it misses no frame).
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for process in (node, evaluator):
                if process is not None:
                    process.check_alive()
            if (self.image_pub.get_subscription_count() > 0
                    and self.node.count_publishers("ood/anomaly_score") > 0
                    # the evaluator reports the publishers matched on its inputs: the node's and ours
                    and (evaluator is None or (self.evaluator_summary.get("score_publishers", 0) > 0
                                               and self.evaluator_summary.get("gt_publishers", 0) > 0))):
                time.sleep(0.5)  # let the reliable endpoints finish matching both ways
                return
            time.sleep(0.1)
        raise TimeoutError(f"ood_seg_node did not appear within {timeout:.0f} s")

    def play(self, frames: Iterable, *, rate_hz: float, start_ns: int, frame_id: str = "camera",
             camera_info=None, node: NodeProcess | None = None, drain_s: float = 3.0,
             lockstep: bool = False) -> ReplayStats:
        """Publish frames at ``rate_hz`` (stamps ``start_ns + i / rate``), then wait for the last results.

        Like ``ros2 bag play``, every topic of the frame goes out with the same header: the image, the
        camera info when given, and the ground truth when the frame has one. A frame with a camera view
        (a bag with odometry) also publishes ``/odom`` (the base pose) and, without ``camera_info``, its
        intrinsics, as ``ros2 bag play`` of that bag does. With ``lockstep`` a frame
        goes out only once the previous one's score came back (at most ``rate_hz``): a node slower than
        the rate then drops no frame, whatever the machine's load, for comparisons frame by frame.
        """
        from builtin_interfaces.msg import Time
        from std_msgs.msg import Header

        from ood_seg_node.ros.imaging import array_to_image_msg

        stats = ReplayStats()
        timeline = ((start_ns + int(round(index * 1e9 / rate_hz)), frame) for index, frame in enumerate(frames))
        for stamp, frame in paced(timeline, lambda item: item[0]):
            header = Header(stamp=Time(sec=stamp // 1_000_000_000, nanosec=stamp % 1_000_000_000),
                            frame_id=frame_id)
            view = getattr(frame, "view", None)
            if camera_info is not None or view is not None:
                info = camera_info if camera_info is not None else _camera_info(view, frame.image.shape[:2])
                info.header = header
                self.info_pub.publish(info)
            if view is not None:  # before the image: the node looks the pose up at the image's stamp
                self.odometry_pub.publish(_odometry(view, header))
            if frame.ood_gt is not None:
                self.gt_pub.publish(array_to_image_msg(frame.ood_gt, "mono8", header))
            message = array_to_image_msg(frame.image, "rgb8", header)
            stats.sent_at[stamp] = time.perf_counter()
            self.image_pub.publish(message)
            stats.sent += 1
            if node is not None:
                node.check_alive()
            if lockstep:
                self._wait_for_score(stamp, node)
        deadline = time.perf_counter() + drain_s
        last_count = -1
        while time.perf_counter() < deadline:
            count = self.scored()
            if count != last_count:
                deadline = max(deadline, time.perf_counter() + 1.0)
                last_count = count
            if count >= stats.sent:
                break
            time.sleep(0.05)
        return stats


def _paced_totals(pipeline, images: Sequence[np.ndarray], frames: int, rate_hz: float) -> list[float]:
    """``pipeline.process`` total times with one frame every ``1 / rate_hz`` s, as the node receives them."""
    totals = []
    for index in range(frames):
        started = time.monotonic()
        totals.append(pipeline.process(images[index % len(images)]).timings_ms["total"])
        time.sleep(max(0.0, 1.0 / rate_hz - (time.monotonic() - started)))
    return totals


def _subscribe_every_output(replayer: Replayer) -> None:
    """Subscribers on every other output, as RViz and a vehicle stack would have: the node then builds them all."""
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image
    from visualization_msgs.msg import MarkerArray

    qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
    for topic in ("ood/labels", "ood/labels_color", "ood/anomaly_mask", "ood/overlay"):
        replayer.node.create_subscription(Image, topic, lambda msg: None, qos)
    replayer.node.create_subscription(MarkerArray, "ood/obstacles", lambda msg: None, qos)


def _camera_run(replayer: Replayer, node: NodeProcess, images: Sequence[np.ndarray], rate_hz: float,
                seconds: float = 6.0) -> dict:
    """A camera at ``rate_hz`` for ``seconds``: frames the node published per second and their latency."""
    import statistics

    from ood_seg_node.datasets.base import Frame

    replayer.received.clear()
    count = int(rate_hz * seconds)
    batch = [Frame(images[i % len(images)], None, None, name=str(i)) for i in range(count)]
    stats = replayer.play(batch, rate_hz=rate_hz, start_ns=5_000_000_000, node=node)
    arrivals = sorted((entry.received_at, stamp) for stamp, entry in replayer.received.items()
                      if entry.score is not None and stamp in stats.sent_at)
    latencies = [(at - stats.sent_at[stamp]) * 1e3 for at, stamp in arrivals]
    if len(arrivals) < 2:
        return {"camera_hz": rate_hz, "published_fps": 0.0, "latency_p50_ms": math.nan, "latency_p95_ms": math.nan}
    span = arrivals[-1][0] - stats.sent_at[arrivals[0][1]]
    return {"camera_hz": rate_hz, "published_fps": (len(arrivals) - 1) / span,
            "latency_p50_ms": statistics.median(latencies), "latency_p95_ms": float(np.percentile(latencies, 95))}


def node_latency(*, segmenter_spec: str, checkpoint: str, sizes: Sequence[tuple[int, int]], frames: int,
                 rate_hz: float = 4.0, camera_hz: float = 30.0) -> list[dict]:
    """Per input size: node end-to-end latency (publish -> score received) vs in-process pipeline compute.

    Every output has a subscriber, so the node builds and publishes all of them. Frames are sent slowly
    enough that none queues, so the difference is conversion, publishing every output and DDS transport;
    the node's own stage medians (``/diagnostics``) say which. The in-process reference runs at the same
    frame rate: on a machine whose cores idle between frames (power states, a
    virtual CPU descheduled), the same computation measured back to back is up to 3x faster than one frame
    every 250 ms, which would otherwise be counted as node overhead. A second run plays a ``camera_hz``
    camera: the node (keep-latest) publishes what it can, compared with the pipeline's back-to-back rate.
    """
    import statistics
    import tempfile

    from ood_seg_node.datasets.base import Frame
    from ood_seg_node.pipeline import Pipeline
    from ood_seg_node.ros.diagnostics import STAGES

    env = local_ros_environment()
    os.environ.update(env)  # Fast DDS reads its profile for this process's participant from the environment
    replayer = Replayer(int(env["ROS_DOMAIN_ID"]), collect_labels=False)
    _subscribe_every_output(replayer)
    rows = []
    try:
        for size in sizes:
            rng = np.random.default_rng(0)
            images = [rng.integers(0, 256, (*size, 3), dtype=np.uint8) for _ in range(4)]
            batch = [Frame(images[i % 4], None, None, name=str(i)) for i in range(frames)]
            pipeline = Pipeline.from_names(segmenter=segmenter_spec, segmenter_checkpoint=checkpoint, head="msp",
                                           device="cpu")
            pipeline.process(images[0])
            back_to_back = statistics.median(pipeline.process(images[i % 4]).timings_ms["total"]
                                             for i in range(frames))
            compute = statistics.median(_paced_totals(pipeline, images, frames, rate_hz))
            replayer.received.clear()
            parameters = {"head": "msp", "segmenter": segmenter_spec, "reliable_input": True, "device": "cpu"}
            if checkpoint:
                parameters["segmenter_checkpoint"] = checkpoint
            with ood_seg_node_process(parameters, env, tempfile.mktemp(suffix=".log")) as node:
                replayer.wait_for_node(node)
                stats = replayer.play(batch, rate_hz=rate_hz, start_ns=1_000_000_000, node=node)
                processed = str(stats.sent)
                deadline = time.monotonic() + 5.0  # the node reports once a second
                while replayer.node_diagnostics.get("frames_processed") != processed and time.monotonic() < deadline:
                    time.sleep(0.1)
                stages = {stage: float(replayer.node_diagnostics.get(f"{stage}_p50_ms", "nan")) for stage in STAGES}
                latencies = [(entry.received_at - stats.sent_at[stamp]) * 1e3
                             for stamp, entry in replayer.received.items()
                             if entry.score is not None and stamp in stats.sent_at]
                received = replayer.scored()
                camera = _camera_run(replayer, node, images, camera_hz)
            latencies = latencies[2:] or latencies  # the first frames include lazy tracing
            e2e = statistics.median(latencies) if latencies else float("nan")
            rows.append({"size": f"{size[0]}x{size[1]}", "e2e_p50_ms": e2e, "pipeline_p50_ms": compute,
                         "pipeline_back_to_back_p50_ms": back_to_back,
                         "ratio": e2e / compute, "sent": stats.sent, "received": received,
                         "node_stages_p50_ms": stages, "camera": {**camera,
                                                                  "pipeline_fps": 1000.0 / back_to_back}})
    finally:
        replayer.close()
    return rows


def _camera_info(view, size: tuple[int, int]):
    """CameraInfo of a camera view's intrinsics for an image of ``size`` (no distortion)."""
    from sensor_msgs.msg import CameraInfo

    fx, fy, cx, cy = (float(value) for value in view.intrinsics)
    return CameraInfo(height=size[0], width=size[1], distortion_model="plumb_bob", d=[0.0] * 5,
                      k=[fx, 0.0, cx, 0.0, fy, cy, 0.0, 0.0, 1.0], r=[1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0],
                      p=[fx, 0.0, cx, 0.0, 0.0, fy, cy, 0.0, 0.0, 0.0, 1.0, 0.0])


def _odometry(view, header):
    """nav_msgs/Odometry of the vehicle base under a camera view, stamped like the frame, in ``odom``."""
    from geometry_msgs.msg import Point, Pose, Quaternion
    from nav_msgs.msg import Odometry
    from std_msgs.msg import Header

    from ood_seg_node.camera import rotation_quaternion

    base = view.base_pose
    x, y, z, w = (float(value) for value in rotation_quaternion(base[:3, :3]))
    message = Odometry(header=Header(stamp=header.stamp, frame_id="odom"), child_frame_id="base_link")
    message.pose.pose = Pose(position=Point(x=float(base[0, 3]), y=float(base[1, 3]), z=float(base[2, 3])),
                             orientation=Quaternion(x=x, y=y, z=z, w=w))
    return message
