# Copyright 2026 The ood_seg_node developers. Licensed under the Apache License, Version 2.0.
"""The ``ood_seg_node`` ROS 2 node: camera images in, anomaly maps, overlay, obstacles and diagnostics out.

The node is the thin ROS edge around :class:`ood_seg_node.pipeline.Pipeline`: it declares and validates
parameters, converts messages (:mod:`ood_seg_node.ros.imaging`), and publishes every result with the input's
header. Frames are keep-latest: the subscription callback only stores the newest message and a worker
thread processes it, so a slow model drops stale frames (counted in /diagnostics) instead of queueing
them. Nothing is inferred while no output has a subscriber. A malformed frame is logged (throttled) and
skipped; the node keeps running.
"""

from __future__ import annotations

import math
import signal
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, fields, replace
from typing import Any, Callable

import numpy as np
import rclpy
import torch
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import ParameterDescriptor, SetParametersResult
from rclpy.clock import Clock, ClockType
from rclpy.exceptions import ParameterException
from rclpy.event_handler import QoSMessageLostInfo, SubscriptionEventCallbacks
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.signals import SignalHandlerOptions
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from std_msgs.msg import Header
from visualization_msgs.msg import MarkerArray

from ood_seg_node.ros import dds
from ood_seg_node.cityscapes import colorize
from ood_seg_node.encodings import DEFAULT_MAX_INPUT_PIXELS
from ood_seg_node.heads import head_names
from ood_seg_node.ros.imaging import ImageEncodingError, array_to_image_msg, msg_to_rgb, overlay_anomalies
from ood_seg_node.ros.markers import intrinsics_from_camera_info, obstacle_markers
from ood_seg_node.pipeline import Pipeline, PipelineError, resolve_device
from ood_seg_node.segmenters import segmenter_names

NODE_NAME = "ood_seg_node"
IMAGE_OUTPUTS = {  # topic -> encoding
    "ood/labels": "mono8",
    "ood/labels_color": "rgb8",
    "ood/anomaly_score": "32FC1",
    "ood/anomaly_mask": "mono8",
    "ood/overlay": "rgb8",
}
OBSTACLES_TOPIC = "ood/obstacles"
_LOG_THROTTLE_S = 5.0
_RATE_WINDOW_S = 5.0
_DELIVERY_WINDOW_S = 5.0  # a matched publisher whose frames do not arrive for this long is reported
_DELIVERY_WARN_EVERY_S = 30.0


class ConfigError(ValueError):
    """A parameter value is invalid or the pipeline it names cannot be built (the message says which)."""


@dataclass(frozen=True)
class NodeConfig:
    """The node's parameters; field defaults are the declared defaults."""

    head: str = "msp"
    head_checkpoint: str = ""
    segmenter: str = "builtin"
    segmenter_checkpoint: str = ""
    device: str = "auto"
    threshold: float = math.nan
    min_obstacle_area: int = 50
    compressed_input: bool = False
    reliable_input: bool = False
    max_input_pixels: int = DEFAULT_MAX_INPUT_PIXELS
    publish_overlay: bool = True
    overlay_alpha: float = 0.5
    camera_height: float = 1.5
    camera_pitch: float = 0.0
    marker_scale: float = 0.01


DESCRIPTIONS = {
    "head": "OOD head scoring each pixel (registry name)",
    "head_checkpoint": "weights of a trained head; empty = the shipped default where one exists",
    "segmenter": "segmentation model: builtin, torchvision:<arch> or torchscript",
    "segmenter_checkpoint": "segmenter weights file; empty = the shipped builtin weights",
    "device": "inference device: auto, cpu, cuda or cuda:N",
    "threshold": "anomaly-mask threshold on the score; NaN = the head's calibrated default",
    "min_obstacle_area": "smallest anomaly component (pixels) reported on ood/obstacles, >= 1",
    "compressed_input": "subscribe to image/compressed (sensor_msgs/CompressedImage) instead of image",
    "reliable_input": "reliable input QoS (bag replay without loss) instead of best-effort sensor data",
    "max_input_pixels": "frames declaring more pixels (raw or compressed, read before decoding) are refused, >= 1",
    "publish_overlay": "publish ood/overlay (input with anomalies tinted red)",
    "overlay_alpha": "strength of the red tint on ood/overlay, in [0, 1]",
    "camera_height": "camera height above flat ground in metres (> 0), for ground-plane obstacle markers",
    "camera_pitch": "downward pitch of the optical axis in radians, in (-pi/2, pi/2)",
    "marker_scale": "metres per pixel of image-plane obstacle markers (used without camera_info), > 0",
}
PIPELINE_KEYS = ("head", "head_checkpoint", "segmenter", "segmenter_checkpoint", "device")
INPUT_KEYS = ("compressed_input", "reliable_input")


def check_config(config: NodeConfig) -> None:
    """Raise :class:`ConfigError` naming the parameter and its valid values for the first invalid one."""
    heads = head_names()
    if config.head not in heads:
        raise ConfigError(f"invalid head {config.head!r}; valid: {', '.join(heads)}")
    segmenters = segmenter_names()
    if config.segmenter not in segmenters:
        raise ConfigError(f"invalid segmenter {config.segmenter!r}; valid: {', '.join(segmenters)}")
    try:
        resolve_device(config.device)
    except ValueError as error:
        raise ConfigError(str(error)) from None
    checks = [
        ("threshold", not math.isinf(config.threshold), "a finite number or NaN"),
        ("min_obstacle_area", config.min_obstacle_area >= 1, "an integer >= 1"),
        ("max_input_pixels", config.max_input_pixels >= 1, "an integer >= 1"),
        ("overlay_alpha", 0.0 <= config.overlay_alpha <= 1.0, "a number in [0, 1]"),
        ("camera_height", math.isfinite(config.camera_height) and config.camera_height > 0.0, "a number > 0"),
        ("camera_pitch", abs(config.camera_pitch) < math.pi / 2, "a number in (-pi/2, pi/2) radians"),
        ("marker_scale", math.isfinite(config.marker_scale) and config.marker_scale > 0.0, "a number > 0"),
    ]
    for name, ok, valid in checks:
        if not ok:
            raise ConfigError(f"invalid {name} {getattr(config, name)!r}; valid: {valid}")


def build_pipeline(config: NodeConfig) -> Pipeline:
    """The pipeline the parameters name; any failure (missing checkpoint, ...) becomes a ConfigError."""
    try:
        return Pipeline.from_names(
            segmenter=config.segmenter,
            head=config.head,
            segmenter_checkpoint=config.segmenter_checkpoint,
            head_checkpoint=config.head_checkpoint,
            device=config.device,
            threshold=config.threshold,
            min_obstacle_area=config.min_obstacle_area,
        )
    except (ValueError, RuntimeError, OSError) as error:
        raise ConfigError(_one_line(error)) from None


def _one_line(error: BaseException) -> str:
    text = " ".join(part.strip() for part in str(error).splitlines() if part.strip())
    return text or type(error).__name__


class _Stats:
    """Counters and recent timings for /diagnostics; touched by the callback and the worker."""

    def __init__(self) -> None:
        self.received: deque[float] = deque(maxlen=1000)
        self.latencies_ms: deque[float] = deque(maxlen=200)
        self.frames_received = 0
        self.frames_processed = 0
        self.frames_dropped = 0
        self.frames_failed = 0
        self.frames_idle = 0
        self.frames_lost = 0  # reported lost by the middleware (message_lost events)
        self.lost: deque[tuple[float, int]] = deque(maxlen=1000)
        self.failed_since_report = 0
        self.last_error = ""

    def received_since(self, since: float) -> int:
        return sum(1 for t in self.received if t >= since)

    def lost_since(self, since: float) -> int:
        return sum(count for t, count in self.lost if t >= since)

    def input_rate(self, now: float) -> float:
        recent = [t for t in self.received if now - t <= _RATE_WINDOW_S]
        if len(recent) < 2:
            return 0.0
        return (len(recent) - 1) / max(recent[-1] - recent[0], 1e-6)


class OODSegNode(Node):
    """Pixel-wise OOD segmentation node; see the module docstring and README for topics and parameters.

    Raises:
        ConfigError: invalid parameters or a pipeline that cannot be built.
        rclpy.exceptions.ParameterException: a parameter override of the wrong type.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(NODE_NAME, **kwargs)
        try:
            self._start()
        except BaseException:
            self.destroy_node()  # nothing half-built may outlive a failed start (no thread was started yet)
            raise

    def _start(self) -> None:
        valid = {"head": ", ".join(head_names()), "segmenter": ", ".join(segmenter_names())}
        for field in fields(NodeConfig):
            descriptor = ParameterDescriptor(
                description=DESCRIPTIONS[field.name],
                additional_constraints=f"one of: {valid[field.name]}" if field.name in valid else "",
            )
            self.declare_parameter(field.name, field.default, descriptor)
        self._config = NodeConfig(**{f.name: self.get_parameter(f.name).value for f in fields(NodeConfig)})
        check_config(self._config)
        self._pipeline = build_pipeline(self._config)

        self._lock = threading.Lock()
        self._pending: tuple[Image | CompressedImage, float] | None = None
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._stats = _Stats()
        self._camera_info: CameraInfo | None = None
        self._first_frame_logged = False
        self._publishers_matched_since: float | None = None
        self._delivery_warned_at = -math.inf

        # Reliable depth 1 reaches reliable and best-effort subscribers alike, and never holds more
        # than one large image per topic.
        output_qos = QoSProfile(
            depth=1, history=HistoryPolicy.KEEP_LAST, reliability=ReliabilityPolicy.RELIABLE
        )
        self._image_pubs = {
            topic: self.create_publisher(Image, topic, output_qos) for topic in IMAGE_OUTPUTS
        }
        self._obstacles_pub = self.create_publisher(MarkerArray, OBSTACLES_TOPIC, output_qos)
        self._diagnostics_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self._input_sub = None
        self._subscribe_input(self._config)
        self.create_subscription(CameraInfo, "camera_info", self._on_camera_info, _input_qos(reliable=False))
        self.add_on_set_parameters_callback(self._on_set_parameters)
        # Steady clock: diagnostics keep flowing while a paused bag holds simulated time still.
        self.create_timer(1.0, self._publish_diagnostics, clock=Clock(clock_type=ClockType.STEADY_TIME))
        self._worker = threading.Thread(target=self._work, name="ood_seg_worker", daemon=True)
        self._worker.start()

    @property
    def config(self) -> NodeConfig:
        """The parameters in effect."""
        return self._config

    def close(self) -> None:
        """Stop the worker thread (waits for the frame in progress)."""
        self._stop.set()
        self._wake.set()
        if self._worker.is_alive():
            self._worker.join(timeout=10.0)

    def describe(self) -> str:
        """One line for the start-up log."""
        config = self._config
        threshold = self._pipeline.effective_threshold
        source = "image/compressed" if config.compressed_input else "image"
        qos = "reliable" if config.reliable_input else "best-effort"
        line = (
            f"ready: head={config.head} segmenter={self._pipeline.segmenter.identity} "
            f"device={self._pipeline.device} threshold={threshold:g} input={self.resolve_topic_name(source)} ({qos})"
        )
        note = getattr(self._pipeline.head, "description", "")  # e.g. NFlowJS: it carries its own segmenter
        return f"{line}; {note}" if note else line

    # -- subscriptions ---------------------------------------------------------------------------

    def _subscribe_input(self, config: NodeConfig) -> None:
        if self._input_sub is not None:
            self.destroy_subscription(self._input_sub)
        qos = _input_qos(reliable=config.reliable_input)
        # Fast DDS reports best-effort samples that never arrived whole (e.g. large frames that do not
        # fit a publisher's shared-memory segment): counted, and explained by _check_input_delivery.
        events = SubscriptionEventCallbacks(message_lost=self._on_message_lost)
        msg_type, topic = (CompressedImage, "image/compressed") if config.compressed_input else (Image, "image")
        self._input_sub = self.create_subscription(msg_type, topic, self._on_image, qos, event_callbacks=events)
        self._publishers_matched_since = None

    def _on_image(self, msg: Image | CompressedImage) -> None:
        now = time.monotonic()
        with self._lock:
            if self._pending is not None:
                self._stats.frames_dropped += 1
            self._pending = (msg, now)
            self._stats.frames_received += 1
            self._stats.received.append(now)
        self._wake.set()

    def _on_camera_info(self, msg: CameraInfo) -> None:
        self._camera_info = msg

    def _on_message_lost(self, info: QoSMessageLostInfo) -> None:
        with self._lock:
            self._stats.frames_lost += info.total_count_change
            self._stats.lost.append((time.monotonic(), info.total_count_change))

    def _check_input_delivery(self, now: float) -> None:
        """Warn (every 30 s at most) when a matched publisher's frames are lost or never arrive.

        The usual cause is Fast DDS's default 512 KB shared-memory segment on the publisher's side: the
        node's own profile cannot help a camera driver that was started without it.
        """
        if self._input_sub.get_publisher_count() == 0:
            self._publishers_matched_since = None
            return
        if self._publishers_matched_since is None:
            self._publishers_matched_since = now
        since = now - _DELIVERY_WINDOW_S
        if self._publishers_matched_since > since or now - self._delivery_warned_at < _DELIVERY_WARN_EVERY_S:
            return
        with self._lock:
            received, lost = self._stats.received_since(since), self._stats.lost_since(since)
        if received and lost * 4 <= received:  # a few lost best-effort frames are normal
            return
        self._delivery_warned_at = now
        what = f"{lost} frame(s) lost in transport, {received} received" if lost else "no frame arrived"
        topic = self._input_sub.topic_name
        self.get_logger().warning(
            f"input {topic}: a publisher is matched but {what} in the last {_DELIVERY_WINDOW_S:.0f} s. "
            f"Images over ~512 KB are lost between processes unless the publisher's Fast DDS has a large "
            f"shared-memory segment too: start the camera driver with "
            f"{dds.profile_env_var()}={dds.shipped_profile_path() or dds.PROFILE_FILENAME} "
            f"(README: 'Large images')"
        )

    # -- processing ------------------------------------------------------------------------------

    def _work(self) -> None:
        while not self._stop.is_set():
            if not self._wake.wait(timeout=0.5):
                continue
            with self._lock:
                item, self._pending = self._pending, None
                self._wake.clear()
                pipeline, config = self._pipeline, self._config
            if item is not None and not self._stop.is_set():
                try:
                    self._process(item[0], item[1], pipeline, config)
                except Exception as error:  # a bug on one frame must not end the worker: log, count, go on
                    self._frame_failed(f"frame failed: {type(error).__name__}: {_one_line(error)}")

    def _process(
        self, msg: Image | CompressedImage, received: float, pipeline: Pipeline, config: NodeConfig
    ) -> None:
        wanted = {topic: pub.get_subscription_count() > 0 for topic, pub in self._image_pubs.items()}
        wanted["ood/overlay"] = wanted["ood/overlay"] and config.publish_overlay
        want_obstacles = self._obstacles_pub.get_subscription_count() > 0
        if not any(wanted.values()) and not want_obstacles:
            self._stats.frames_idle += 1
            return
        try:
            rgb = msg_to_rgb(msg, max_pixels=config.max_input_pixels)
            result = pipeline.process(rgb)
        except (ImageEncodingError, PipelineError) as error:
            self._frame_failed(f"frame skipped: {_one_line(error)}")
            return
        except Exception as error:  # e.g. CUDA out of memory: this frame is lost, the node is not
            self._frame_failed(f"frame skipped, inference failed: {type(error).__name__}: {_one_line(error)}")
            return
        header = msg.header
        height, width = rgb.shape[:2]
        outputs = {
            "ood/labels": lambda: result.labels,
            "ood/labels_color": lambda: colorize(result.labels),
            "ood/anomaly_score": lambda: result.score,
            "ood/anomaly_mask": lambda: result.mask.astype(np.uint8) * np.uint8(255),
            "ood/overlay": lambda: overlay_anomalies(
                rgb, result.mask, result.obstacles, config.overlay_alpha
            ),
        }
        for topic, make in outputs.items():
            if wanted[topic]:
                self._image_pubs[topic].publish(array_to_image_msg(make(), IMAGE_OUTPUTS[topic], header))
        if want_obstacles:
            info = self._camera_info
            intrinsics = intrinsics_from_camera_info(info, width, height) if info is not None else None
            self._obstacles_pub.publish(
                obstacle_markers(
                    result.obstacles,
                    header,
                    intrinsics=intrinsics,
                    camera_height=config.camera_height,
                    camera_pitch=config.camera_pitch,
                    marker_scale=config.marker_scale,
                )
            )
        latency_ms = (time.monotonic() - received) * 1e3
        with self._lock:
            self._stats.frames_processed += 1
            self._stats.latencies_ms.append(latency_ms)
        if not self._first_frame_logged:
            self._first_frame_logged = True
            self.get_logger().info(
                f"first frame processed: {width}x{height}, {latency_ms:.0f} ms "
                f"(segmenter {result.timings_ms.get('segmenter', 0.0):.0f} ms)"
            )

    def _frame_failed(self, message: str) -> None:
        with self._lock:
            self._stats.frames_failed += 1
            self._stats.failed_since_report += 1
            self._stats.last_error = message
        self.get_logger().warning(message, throttle_duration_sec=_LOG_THROTTLE_S)

    # -- parameters ------------------------------------------------------------------------------

    def _on_set_parameters(self, params: list[Parameter]) -> SetParametersResult:
        names = {f.name for f in fields(NodeConfig)}
        changes = {p.name: p.value for p in params if p.name in names}
        if not changes:
            return SetParametersResult(successful=True)
        old = self._config
        try:
            new = replace(old, **changes)
            check_config(new)
            rebuild = any(getattr(new, key) != getattr(old, key) for key in PIPELINE_KEYS)
            pipeline = build_pipeline(new) if rebuild else self._pipeline
        except ConfigError as error:
            self.get_logger().warning(f"parameter change refused: {error}")
            return SetParametersResult(successful=False, reason=str(error))
        pipeline.threshold = float(new.threshold)
        pipeline.min_obstacle_area = int(new.min_obstacle_area)
        with self._lock:
            replaced, self._pipeline, self._config = self._pipeline, pipeline, new
        if rebuild and replaced.device.type == "cuda":
            del replaced  # the worker may still hold it for one frame; the cache frees what is unused
            torch.cuda.empty_cache()
        if any(getattr(new, key) != getattr(old, key) for key in INPUT_KEYS):
            self._subscribe_input(new)
        changed = ", ".join(f"{k}={v!r}" for k, v in changes.items())
        self.get_logger().info(f"parameters set: {changed}" + (" (pipeline rebuilt)" if rebuild else ""))
        return SetParametersResult(successful=True)

    # -- diagnostics -----------------------------------------------------------------------------

    def _publish_diagnostics(self) -> None:
        now = time.monotonic()
        self._check_input_delivery(now)
        with self._lock:
            stats = self._stats
            latencies = np.array(stats.latencies_ms, dtype=np.float64)
            rate = stats.input_rate(now)
            failed_recently, stats.failed_since_report = stats.failed_since_report, 0
            counters = {
                "frames_received": stats.frames_received,
                "frames_processed": stats.frames_processed,
                "frames_dropped": stats.frames_dropped,
                "frames_failed": stats.frames_failed,
                "frames_idle": stats.frames_idle,
                "frames_lost": stats.frames_lost,
            }
            last_error = stats.last_error
            pipeline, config = self._pipeline, self._config
        p50, p95 = (np.percentile(latencies, [50, 95]) if latencies.size else (math.nan, math.nan))
        if failed_recently:
            level, message = DiagnosticStatus.WARN, f"{failed_recently} frame(s) skipped: {last_error}"
        elif rate == 0.0:
            level, message = DiagnosticStatus.OK, "waiting for images"
        else:
            level, message = DiagnosticStatus.OK, "processing"
        values = {
            "input_rate_hz": f"{rate:.2f}",
            "latency_p50_ms": f"{p50:.1f}",
            "latency_p95_ms": f"{p95:.1f}",
            **{key: str(value) for key, value in counters.items()},
            "device": str(pipeline.device),
            "head": config.head,
            "segmenter": config.segmenter,
            "threshold": f"{pipeline.effective_threshold:g}",
            "last_error": last_error,
        }
        status = DiagnosticStatus(
            level=level,
            name=f"{self.get_name()}: OOD segmentation",
            message=message,
            hardware_id=str(pipeline.device),
            values=[KeyValue(key=key, value=value) for key, value in values.items()],
        )
        header = Header(stamp=self.get_clock().now().to_msg())
        self._diagnostics_pub.publish(DiagnosticArray(header=header, status=[status]))


def _input_qos(*, reliable: bool) -> QoSProfile:
    """Depth 1 keep-last: only the newest frame matters; best effort unless ``reliable``."""
    return QoSProfile(
        depth=1,
        history=HistoryPolicy.KEEP_LAST,
        reliability=ReliabilityPolicy.RELIABLE if reliable else ReliabilityPolicy.BEST_EFFORT,
        durability=DurabilityPolicy.VOLATILE,
    )


class _Stop(BaseException):
    """Raised by the first SIGINT/SIGTERM while a node is being built (model loading can take seconds)."""


class _ShutdownSignals:
    """SIGINT and SIGTERM, whoever sends them, ask for one clean stop; later ones are ignored.

    A shell's Ctrl-C reaches every process of the group and launch forwards its own SIGINT too, so a
    node typically gets two or more. Once the first has arrived both signals are ignored for the rest
    of the process's life: a later one can neither interrupt ``destroy_node`` nor kill the interpreter
    while it exits (which launch reported as ``exit code -2``). rclpy's own handlers are not installed:
    they re-raise the signal as KeyboardInterrupt in whatever code is running.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.requested = threading.Event()
        self.interrupt = True  # while building: abort the build; once spinning: just set the flag

    def install(self) -> None:
        for sig in self.SIGNALS:
            signal.signal(sig, self._handle)

    def ignore(self) -> None:
        for sig in self.SIGNALS:
            signal.signal(sig, signal.SIG_IGN)

    def _handle(self, signum: int, frame: object) -> None:
        self.ignore()
        self.requested.set()
        if self.interrupt:
            raise _Stop


def spin_node(name: str, factory: Callable[[], Node], startup_errors: tuple[type[BaseException], ...],
              args: list[str] | None = None, on_ready: Callable[[Node], None] | None = None) -> int:
    """Run a node of this package until SIGINT / SIGTERM / shutdown; returns the exit code.

    Stopped by a signal or an external shutdown: 0, with the node's ``close()`` (if any) and
    ``destroy_node`` run uninterrupted. A node stops itself by setting its ``finished`` attribute, and
    sets ``exit_code`` (if it has one) to what the process returns. A start-up error prints one line
    and returns 1. The Fast DDS large-image profile is applied first (Fast DDS reads it at participant
    creation).
    """
    profile_note = dds.apply_default_profile()
    signals = _ShutdownSignals()
    signals.install()
    try:
        rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
        node = factory()
        signals.interrupt = False
    except BaseException as error:
        signals.ignore()
        rclpy.try_shutdown()
        if isinstance(error, _Stop):
            return 0
        if isinstance(error, (*startup_errors, ParameterException)):
            print(f"{name}: error: {_one_line(error)}", file=sys.stderr)
        elif isinstance(error, Exception):  # malformed --ros-args (rclpy raises RCLError) and the like
            print(f"{name}: error: {type(error).__name__}: {_one_line(error)}", file=sys.stderr)
        else:
            raise
        return 1
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    try:
        node.get_logger().info(profile_note)
        if on_ready is not None:
            on_ready(node)
        while not (signals.requested.is_set() or getattr(node, "finished", False)) and rclpy.ok():
            executor.spin_once(timeout_sec=0.1)
    except ExternalShutdownException:
        pass
    finally:
        signals.ignore()  # however the node stopped, cleanup and exit run to the end
        if hasattr(node, "close"):
            node.close()
        executor.shutdown(timeout_sec=1.0)
        node.destroy_node()
        rclpy.try_shutdown()
    return int(getattr(node, "exit_code", 0))


def main(args: list[str] | None = None) -> int:
    """Console script ``ood_seg_node``."""
    return spin_node(NODE_NAME, OODSegNode, (ConfigError,), args,
                     on_ready=lambda node: node.get_logger().info(node.describe()))


if __name__ == "__main__":
    sys.exit(main())
