# Copyright 2026 The ood_seg_node developers. Licensed under the Apache License, Version 2.0.
"""The ``ood_seg_node`` ROS 2 node: camera images in, anomaly maps, overlay, obstacles and diagnostics out.

A managed (lifecycle) node, as users of Nav2 and yolo_ros expect: ``configure`` loads the model and creates
the publishers, ``activate`` subscribes to the camera and starts the worker, ``deactivate`` stops them,
``cleanup`` frees the model (and the CUDA cache). With ``autostart`` (default) it drives itself to active
at start, so ``ros2 run`` and the launch files behave like a plain node; a model that cannot be loaded is
then a start-up error (one line, exit code 1).

Frames are keep-latest: the subscription callback only stores the newest message and a worker thread
decodes and infers it, so a slow model drops stale frames (counted in /diagnostics) instead of queueing them.
A publisher thread builds and publishes each inferred frame's outputs while the worker infers the next one
(at most one frame waits between them), so output building and publishing overlap with inference.
Nothing is inferred while no output has a subscriber. A malformed frame is logged (throttled) and skipped.
A parameter change that needs another model is built on a thread of its own while frames keep flowing
through the running one; a build that fails is reported, the running model stays and the parameters
return to what it runs.

Frames go through the pipeline with their header stamp (a zero stamp = unstamped: consecutive frames), so
temporal fusion and obstacle tracks restart on stamp gaps. ``temporal_fusion: ground`` also needs each
frame's camera: intrinsics from the latest CameraInfo, the mount from ``camera_height`` / ``camera_pitch``
and the vehicle base's pose at the image stamp from ``odometry_topic`` (:mod:`ood_seg_node.ros.odometry`:
interpolated between buffered poses); without one of them the frame is scored alone (logged, throttled).
Changing a temporal parameter replaces the pipeline's fusion and tracker (a new sequence, no rebuild).
"""

from __future__ import annotations

import math
import queue
import sys
import threading
import time
from dataclasses import dataclass, fields, replace
from typing import Any, Callable

import numpy as np
import torch
from diagnostic_msgs.msg import DiagnosticArray
from nav_msgs.msg import Odometry
from rcl_interfaces.msg import ParameterDescriptor, SetParametersResult
from rclpy.clock import Clock, ClockType
from rclpy.event_handler import QoSMessageLostInfo, SubscriptionEventCallbacks
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from std_msgs.msg import Header
from visualization_msgs.msg import MarkerArray

from ood_seg_node.camera import CameraView, mount_pose
from ood_seg_node.heads import head_names
from ood_seg_node.pipeline import FrameResult, Pipeline, PipelineError
from ood_seg_node.ros.diagnostics import STAGES, FrameStats, delivery_warning, diagnostic_status
from ood_seg_node.ros.imaging import ImageEncodingError, array_to_image_msg, msg_to_rgb, overlay_anomalies
from ood_seg_node.ros.markers import intrinsics_from_camera_info, obstacle_markers
from ood_seg_node.ros.node_config import (
    DESCRIPTIONS,
    INPUT_KEYS,
    PIPELINE_KEYS,
    TEMPORAL_KEYS,
    ConfigError,
    NodeConfig,
    build_pipeline,
    check_config,
    temporal_objects,
)
from ood_seg_node.ros.odometry import PoseBuffer, odometry_pose, stamp_seconds
from ood_seg_node.ros.runtime import one_line, spin_node
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
_DELIVERY_WARN_EVERY_S = 30.0


def _output_qos(depth: int) -> QoSProfile:
    """Reliable output QoS: reaches reliable and best-effort subscribers alike.

    Depth 1 never holds more than one large image per topic, but a reliable subscriber that acknowledges
    late loses a frame published meanwhile: replays that evaluate every frame ask for more (``output_depth``).
    """
    return QoSProfile(depth=depth, history=HistoryPolicy.KEEP_LAST, reliability=ReliabilityPolicy.RELIABLE)


def _input_qos(*, reliable: bool) -> QoSProfile:
    """Depth 1 keep-last: only the newest frame matters; best effort unless ``reliable``."""
    return QoSProfile(
        depth=1,
        history=HistoryPolicy.KEEP_LAST,
        reliability=ReliabilityPolicy.RELIABLE if reliable else ReliabilityPolicy.BEST_EFFORT,
        durability=DurabilityPolicy.VOLATILE,
    )


@dataclass
class _Inferred:
    """A frame the worker has inferred, handed to the publisher thread with what its outputs need."""

    header: Any
    rgb: np.ndarray
    result: FrameResult
    pipeline: Pipeline
    config: NodeConfig
    wanted: dict[str, bool]
    want_obstacles: bool
    fusing: bool  # the pipeline fused scores (temporal_fusion other than none)
    marks: tuple[float, float, float, float]  # received, started, decoded, inferred (monotonic s)


class OODSegNode(LifecycleNode):
    """Pixel-wise OOD segmentation node; see the module docstring and README for topics and parameters.

    Raises:
        ConfigError: an invalid parameter.
        rclpy.exceptions.ParameterException: a parameter override of the wrong type.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(NODE_NAME, **kwargs)
        try:
            self._config = self._declare_parameters()
            check_config(self._config)
        except BaseException:
            self.destroy_node()  # nothing half-built may outlive a failed start
            raise
        self._lock = threading.Lock()  # guards the pipeline, its config, the pending frame and rebuild requests
        self._pipeline: Pipeline | None = None
        self._pipeline_config: NodeConfig | None = None  # what the running pipeline was built from
        self._rebuild_request: NodeConfig | None = None
        self._rebuilder: threading.Thread | None = None
        self._pending: tuple[Image | CompressedImage, float] | None = None
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._worker: threading.Thread | None = None
        # inferred frames waiting for their outputs: one, so inference runs at most one frame ahead
        self._outbox: queue.Queue[_Inferred | None] = queue.Queue(maxsize=1)
        self._publisher: threading.Thread | None = None
        self._stats = FrameStats()
        self._state = "unconfigured"
        self._camera_info: CameraInfo | None = None
        self._first_frame_logged = False
        self._publishers_matched_since: float | None = None
        self._delivery_warned_at = -math.inf
        self._image_pubs: dict[str, Any] = {}
        self._obstacles_pub: Any = None
        self._diagnostics_pub: Any = None
        self._diagnostics_timer: Any = None
        self._input_sub: Any = None
        self._camera_info_sub: Any = None
        self._odometry_sub: Any = None
        self._poses = PoseBuffer()
        self.add_on_set_parameters_callback(self._on_set_parameters)

    def _declare_parameters(self) -> NodeConfig:
        valid = {"head": ", ".join(head_names()), "segmenter": ", ".join(segmenter_names())}
        for field in fields(NodeConfig):
            descriptor = ParameterDescriptor(
                description=DESCRIPTIONS[field.name],
                additional_constraints=f"one of: {valid[field.name]}" if field.name in valid else "",
                read_only=field.name in ("autostart", "output_depth"),
            )
            self.declare_parameter(field.name, field.default, descriptor)
        return NodeConfig(**{f.name: self.get_parameter(f.name).value for f in fields(NodeConfig)})

    @property
    def config(self) -> NodeConfig:
        """The parameters in effect."""
        return self._config

    @property
    def state(self) -> str:
        """Lifecycle state: ``unconfigured``, ``inactive``, ``active`` or ``finalized``."""
        return self._state

    def autostart(self) -> None:
        """With ``autostart``: load the model now (a failure raises ConfigError), configure and activate."""
        if not self._config.autostart:
            self.get_logger().info("unconfigured: waiting for a lifecycle manager (autostart:=false)")
            return
        self._install(build_pipeline(self._config), self._config)
        self.trigger_configure()
        self.trigger_activate()

    def close(self) -> None:
        """Stop processing and free the model, whatever the state (the process is ending)."""
        self._stop_processing()
        self._release()

    def describe(self) -> str:
        """One line for the log when the node becomes active."""
        pipeline, config = self._pipeline, self._pipeline_config
        source = "image/compressed" if self._config.compressed_input else "image"
        qos = "reliable" if self._config.reliable_input else "best-effort"
        line = (f"ready: head={config.head} segmenter={pipeline.segmenter.identity} device={pipeline.device} "
                f"threshold={pipeline.effective_threshold:g} input={self.resolve_topic_name(source)} ({qos})")
        note = getattr(pipeline.head, "description", "")  # e.g. NFlowJS: it carries its own segmenter
        return f"{line}; {note}" if note else line

    # -- lifecycle -------------------------------------------------------------------------------

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        if self._pipeline is None:
            try:
                self._install(build_pipeline(self._config), self._config)
            except ConfigError as error:
                self.get_logger().error(f"configure failed: {error}")
                return TransitionCallbackReturn.FAILURE
        output_qos = _output_qos(self._config.output_depth)
        self._image_pubs = {topic: self.create_publisher(Image, topic, output_qos) for topic in IMAGE_OUTPUTS}
        self._obstacles_pub = self.create_publisher(MarkerArray, OBSTACLES_TOPIC, output_qos)
        self._diagnostics_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        # Steady clock: diagnostics keep flowing while a paused bag holds simulated time still.
        self._diagnostics_timer = self.create_timer(1.0, self._publish_diagnostics,
                                                    clock=Clock(clock_type=ClockType.STEADY_TIME))
        self._state = "inactive"
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._subscribe_input()
        self._camera_info_sub = self.create_subscription(CameraInfo, "camera_info", self._on_camera_info,
                                                         _input_qos(reliable=False))
        self._subscribe_odometry()
        self._stop.clear()
        self._publisher = threading.Thread(target=self._publish_outputs, name="ood_seg_publisher", daemon=True)
        self._publisher.start()
        self._worker = threading.Thread(target=self._work, name="ood_seg_worker", daemon=True)
        self._worker.start()
        self._state = "active"
        self.get_logger().info(self.describe())
        return super().on_activate(state)

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop_processing()
        self._state = "inactive"
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._release()
        self._state = "unconfigured"
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.close()
        self._state = "finalized"
        return TransitionCallbackReturn.SUCCESS

    def _stop_processing(self) -> None:
        for subscription in (self._input_sub, self._camera_info_sub, self._odometry_sub):
            if subscription is not None:
                self.destroy_subscription(subscription)
        self._input_sub = self._camera_info_sub = self._odometry_sub = None
        self._stop.set()
        self._wake.set()
        if self._worker is not None and self._worker.is_alive():
            self._worker.join(timeout=10.0)  # the frame in progress finishes
        if self._publisher is not None and self._publisher.is_alive():
            self._outbox.put(None)  # after the worker's last frame: its outputs are published first
            self._publisher.join(timeout=10.0)
        self._worker = self._publisher = None

    def _release(self) -> None:
        rebuilder = self._rebuilder
        if rebuilder is not None:
            rebuilder.join()  # a model being built must not appear after the release
        for publisher in (*self._image_pubs.values(), self._obstacles_pub, self._diagnostics_pub):
            if publisher is not None:
                self.destroy_publisher(publisher)
        if self._diagnostics_timer is not None:
            self.destroy_timer(self._diagnostics_timer)
        self._image_pubs, self._obstacles_pub, self._diagnostics_pub, self._diagnostics_timer = {}, None, None, None
        with self._lock:
            pipeline, self._pipeline, self._pipeline_config = self._pipeline, None, None
        _free(pipeline)

    # -- pipeline --------------------------------------------------------------------------------

    def _install(self, pipeline: Pipeline, built_from: NodeConfig) -> Pipeline | None:
        """Make ``pipeline`` the running one with the current mask and temporal settings; returns the old one."""
        with self._lock:
            self._apply_mask_settings(pipeline)
            self._apply_temporal_settings(pipeline)
            replaced, self._pipeline, self._pipeline_config = self._pipeline, pipeline, built_from
        return replaced

    def _apply_mask_settings(self, pipeline: Pipeline) -> None:
        """The node's ``threshold`` and ``min_obstacle_area`` onto the pipeline; the caller holds the lock."""
        pipeline.threshold = float(self._config.threshold)
        pipeline.min_obstacle_area = int(self._config.min_obstacle_area)

    def _apply_temporal_settings(self, pipeline: Pipeline) -> None:
        """A new fusion and tracker when the temporal parameters differ from the pipeline's; the caller holds the lock.

        New objects rather than changed ones: the worker may be inside ``pipeline.process`` with the old pair,
        and the next frame starts a new sequence with the new settings.
        """
        config, fusion, tracker = self._config, pipeline.fusion, pipeline.tracker
        running = (fusion.mode, fusion.alpha, fusion.max_gap_s, tracker.confirm_hits, tracker.window)
        wanted = (config.temporal_fusion, float(config.temporal_alpha), float(config.temporal_max_gap),
                  int(config.track_confirm_hits), int(config.track_window))
        if running != wanted:
            pipeline.fusion, pipeline.tracker = temporal_objects(config)

    def _request_rebuild(self, config: NodeConfig) -> None:
        with self._lock:
            self._rebuild_request = config
            if self._rebuilder is None:
                self._rebuilder = threading.Thread(target=self._rebuild, name="ood_seg_rebuild", daemon=True)
                self._rebuilder.start()

    def _rebuild(self) -> None:
        """Build the newest requested pipeline off the executor thread; frames keep using the running one."""
        while True:
            with self._lock:
                config, self._rebuild_request = self._rebuild_request, None
                running = self._pipeline_config
                if config is None or self._pipeline is None:
                    self._rebuilder = None
                    return
            if all(getattr(config, key) == getattr(running, key) for key in PIPELINE_KEYS):
                continue
            try:
                pipeline = build_pipeline(config)
            except ConfigError as error:
                self._rebuild_failed(config, running, error)
                continue
            _free(self._install(pipeline, config))
            self.get_logger().info(f"pipeline rebuilt: {_model_of(config)}")

    def _rebuild_failed(self, wanted: NodeConfig, running: NodeConfig, error: ConfigError) -> None:
        message = f"pipeline rebuild failed ({_model_of(wanted)}): {error}; still running {_model_of(running)}"
        self.get_logger().error(message)
        with self._stats.lock:
            self._stats.last_error = message
        with self._lock:
            superseded = self._rebuild_request is not None
        if not superseded:  # the parameters go back to what the running pipeline was built from
            self.set_parameters([Parameter(key, value=getattr(running, key)) for key in PIPELINE_KEYS])

    # -- subscriptions ---------------------------------------------------------------------------

    def _subscribe_input(self) -> None:
        if self._input_sub is not None:
            self.destroy_subscription(self._input_sub)
        config = self._config
        # Fast DDS reports best-effort samples that never arrived whole (e.g. large frames that do not
        # fit a publisher's shared-memory segment): counted, and explained by _check_input_delivery.
        events = SubscriptionEventCallbacks(message_lost=self._on_message_lost)
        msg_type, topic = (CompressedImage, "image/compressed") if config.compressed_input else (Image, "image")
        self._input_sub = self.create_subscription(msg_type, topic, self._on_image,
                                                   _input_qos(reliable=config.reliable_input),
                                                   event_callbacks=events)
        self._publishers_matched_since = None

    def _on_image(self, msg: Image | CompressedImage) -> None:
        now = time.monotonic()
        with self._lock:
            dropped, self._pending = self._pending is not None, (msg, now)
        with self._stats.lock:
            self._stats.frames_dropped += dropped
            self._stats.frames_received += 1
            self._stats.received.append(now)
        self._wake.set()

    def _on_camera_info(self, msg: CameraInfo) -> None:
        self._camera_info = msg

    def _subscribe_odometry(self) -> None:
        """Subscribe to ``odometry_topic`` (none when empty), with an empty pose buffer."""
        if self._odometry_sub is not None:
            self.destroy_subscription(self._odometry_sub)
            self._odometry_sub = None
        self._poses.clear()
        topic = self._config.odometry_topic
        if topic:
            # best effort, deep enough for 100 Hz odometry: matches reliable and best-effort publishers alike
            qos = QoSProfile(depth=50, history=HistoryPolicy.KEEP_LAST, reliability=ReliabilityPolicy.BEST_EFFORT)
            self._odometry_sub = self.create_subscription(Odometry, topic, self._on_odometry, qos)

    def _on_odometry(self, msg: Odometry) -> None:
        try:
            stamp, pose = odometry_pose(msg)
            self._poses.add(stamp, pose)
        except ValueError as error:  # a bad message is skipped; the node keeps running
            self.get_logger().warning(f"odometry message ignored: {one_line(error)}",
                                      throttle_duration_sec=_LOG_THROTTLE_S)

    def _camera_view(self, stamp: float | None, width: int, height: int, config: NodeConfig) -> CameraView | None:
        """The frame's camera for ground fusion, or None (logged, throttled, with the reason)."""
        info = self._camera_info
        intrinsics = intrinsics_from_camera_info(info, width, height) if info is not None else None
        base = self._poses.lookup(stamp) if stamp is not None else None
        if intrinsics is not None and base is not None:
            return CameraView(intrinsics, config.camera_height, config.camera_pitch,
                              base @ mount_pose(config.camera_height, config.camera_pitch))
        # one log call per reason: each is throttled on its own, so a second problem is not hidden by the first
        if intrinsics is None:
            self.get_logger().info("ground fusion: frame scored alone, no calibrated CameraInfo on camera_info yet",
                                   throttle_duration_sec=_LOG_THROTTLE_S)
            return None
        span = self._poses.span()
        held = f"odometry buffer {span[0]:.3f}..{span[1]:.3f} s" if span else "no odometry received"
        at = f"the image stamp {stamp:.3f} s" if stamp is not None else "an unstamped image"
        self.get_logger().info(f"ground fusion: frame scored alone, no odometry pose at {at} ({held}) on "
                               f"{config.odometry_topic}", throttle_duration_sec=_LOG_THROTTLE_S)
        return None

    def _on_message_lost(self, info: QoSMessageLostInfo) -> None:
        with self._stats.lock:
            self._stats.frames_lost += info.total_count_change
            self._stats.lost.append((time.monotonic(), info.total_count_change))

    def _check_input_delivery(self, now: float) -> None:
        """Warn (every 30 s at most) when a matched publisher's frames are lost or never arrive."""
        if self._input_sub is None or self._input_sub.get_publisher_count() == 0:
            self._publishers_matched_since = None
            return
        if self._publishers_matched_since is None:
            self._publishers_matched_since = now
        window_full = now - self._publishers_matched_since >= 5.0
        if not window_full or now - self._delivery_warned_at < _DELIVERY_WARN_EVERY_S:
            return
        with self._stats.lock:
            problem = self._stats.delivery_problem(now)
        if problem is not None:
            self._delivery_warned_at = now
            self.get_logger().warning(delivery_warning(self._input_sub.topic_name, problem))

    # -- processing ------------------------------------------------------------------------------

    def _work(self) -> None:
        while not self._stop.is_set():
            if not self._wake.wait(timeout=0.5):
                continue
            with self._lock:
                item, self._pending = self._pending, None
                self._wake.clear()
                pipeline, config = self._pipeline, self._config
            if item is not None and pipeline is not None and not self._stop.is_set():
                try:
                    self._process(item[0], item[1], pipeline, config)
                except Exception as error:  # a bug on one frame must not end the worker: log, count, go on
                    self._frame_failed(f"frame failed: {type(error).__name__}: {one_line(error)}")

    def _process(
        self, msg: Image | CompressedImage, received: float, pipeline: Pipeline, config: NodeConfig
    ) -> None:
        wanted = {topic: pub.get_subscription_count() > 0 for topic, pub in self._image_pubs.items()}
        wanted["ood/overlay"] = wanted["ood/overlay"] and config.publish_overlay
        want_obstacles = self._obstacles_pub.get_subscription_count() > 0
        if not any(wanted.values()) and not want_obstacles:
            with self._stats.lock:
                self._stats.frames_idle += 1
            return
        started = time.monotonic()
        try:
            rgb = msg_to_rgb(msg, max_pixels=config.max_input_pixels)
            decoded = time.monotonic()
            stamp = stamp_seconds(msg.header.stamp) or None  # zero = unstamped: consecutive frames
            view = self._camera_view(stamp, rgb.shape[1], rgb.shape[0], config) \
                if pipeline.fusion.mode == "ground" else None
            result = pipeline.process(rgb, stamp=stamp, view=view)
        except (ImageEncodingError, PipelineError) as error:
            self._frame_failed(f"frame skipped: {one_line(error)}")
            return
        except Exception as error:  # e.g. CUDA out of memory: this frame is lost, the node is not
            self._frame_failed(f"frame skipped, inference failed: {type(error).__name__}: {one_line(error)}")
            return
        self._outbox.put(_Inferred(msg.header, rgb, result, pipeline, config, wanted, want_obstacles,
                                   "fusion" in result.timings_ms, (received, started, decoded, time.monotonic())))

    def _publish_outputs(self) -> None:
        """Build and publish each inferred frame's outputs while the worker infers the next frame."""
        while (item := self._outbox.get()) is not None:
            try:
                self._publish_frame(item)
            except Exception as error:  # a bug on one frame must not end the thread: log, count, go on
                self._frame_failed(f"publishing failed: {type(error).__name__}: {one_line(error)}")

    def _publish_frame(self, item: _Inferred) -> None:
        rgb, result, pipeline, config, wanted = item.rgb, item.result, item.pipeline, item.config, item.wanted
        header = item.header
        height, width = rgb.shape[:2]
        # what a vehicle stack reads first goes out first: score, mask, obstacles, then the pictures for RViz
        outputs: dict[str, Callable[[], Any]] = {
            "ood/anomaly_score": lambda: result.score,
            "ood/anomaly_mask": lambda: result.mask.astype(np.uint8) * np.uint8(255),
            "ood/labels": lambda: result.labels,
            "ood/labels_color": lambda: pipeline.segmenter.label_space.colorize(result.labels),
            "ood/overlay": lambda: overlay_anomalies(rgb, result.mask, result.obstacles, config.overlay_alpha),
        }
        senders = [(self._image_pubs[topic], lambda make=make, topic=topic: array_to_image_msg(
            make(), IMAGE_OUTPUTS[topic], header)) for topic, make in outputs.items() if wanted[topic]]
        if item.want_obstacles:
            info = self._camera_info
            intrinsics = intrinsics_from_camera_info(info, width, height) if info is not None else None
            senders.insert(min(2, len(senders)), (self._obstacles_pub, lambda: obstacle_markers(
                result.obstacles, header, intrinsics=intrinsics, camera_height=config.camera_height,
                camera_pitch=config.camera_pitch, marker_scale=config.marker_scale, tracks=result.tracks,
                confirmed_only=config.publish_confirmed_only,
            )))
        building = publishing = 0.0
        for publisher, build in senders:  # each is published as soon as it is built
            begun = time.monotonic()
            message = build()
            built = time.monotonic()
            publisher.publish(message)
            building, publishing = building + built - begun, publishing + time.monotonic() - built
        received, started, decoded, inferred = item.marks
        latency_ms = (time.monotonic() - received) * 1e3
        seconds = (started - received, decoded - started, inferred - decoded, building, publishing)
        with self._stats.lock:
            self._stats.frames_processed += 1
            self._stats.count_sequence(result.restart, item.fusing)
            self._stats.latencies_ms.append(latency_ms)
            for stage, duration in zip(STAGES, seconds, strict=True):
                self._stats.stages_ms[stage].append(duration * 1e3)
        if not self._first_frame_logged:
            self._first_frame_logged = True
            self.get_logger().info(
                f"first frame processed: {width}x{height}, {latency_ms:.0f} ms "
                f"(segmenter {result.timings_ms.get('segmenter', 0.0):.0f} ms)"
            )

    def _frame_failed(self, message: str) -> None:
        with self._stats.lock:
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
        except (ConfigError, TypeError) as error:
            self.get_logger().warning(f"parameter change refused: {error}")
            return SetParametersResult(successful=False, reason=str(error))
        with self._lock:
            self._config = new
            pipeline, running = self._pipeline, self._pipeline_config
            if pipeline is not None:
                self._apply_mask_settings(pipeline)
                self._apply_temporal_settings(pipeline)
        rebuild = running is not None and any(getattr(new, k) != getattr(running, k) for k in PIPELINE_KEYS)
        if rebuild:
            self._request_rebuild(new)
        if self._input_sub is not None and any(getattr(new, k) != getattr(old, k) for k in INPUT_KEYS):
            self._subscribe_input()
        if self._input_sub is not None and new.odometry_topic != old.odometry_topic:
            self._subscribe_odometry()
        changed = ", ".join(f"{k}={v!r}" for k, v in changes.items())
        notes = [note for note, applies in (
            ("rebuilding the pipeline", rebuild),
            ("new temporal sequence", any(getattr(new, k) != getattr(old, k) for k in TEMPORAL_KEYS)),
        ) if applies]
        self.get_logger().info(f"parameters set: {changed}" + (f" ({'; '.join(notes)})" if notes else ""))
        return SetParametersResult(successful=True)

    # -- diagnostics -----------------------------------------------------------------------------

    def _publish_diagnostics(self) -> None:
        now = time.monotonic()
        self._check_input_delivery(now)
        with self._lock:
            pipeline, running = self._pipeline, self._pipeline_config
        if pipeline is None:
            return
        identity = {"device": str(pipeline.device), "head": running.head, "segmenter": running.segmenter,
                    "threshold": f"{pipeline.effective_threshold:g}", "temporal_fusion": pipeline.fusion.mode}
        status = diagnostic_status(self._stats, now, name=f"{self.get_name()}: OOD segmentation",
                                   state=self._state, identity=identity)
        header = Header(stamp=self.get_clock().now().to_msg())
        self._diagnostics_pub.publish(DiagnosticArray(header=header, status=[status]))


def _model_of(config: NodeConfig) -> str:
    return ", ".join(f"{key}={getattr(config, key)!r}" for key in PIPELINE_KEYS if getattr(config, key))


def _free(pipeline: Pipeline | None) -> None:
    """Drop a pipeline; on CUDA give its memory back (the worker may hold it for one more frame)."""
    if pipeline is not None and pipeline.device.type == "cuda":
        del pipeline
        torch.cuda.empty_cache()


def _start() -> OODSegNode:
    node = OODSegNode()
    try:
        node.autostart()
    except BaseException:
        node.destroy_node()
        raise
    return node


def main(args: list[str] | None = None) -> int:
    """Console script ``ood_seg_node``."""
    return spin_node(NODE_NAME, _start, (ConfigError,), args)


if __name__ == "__main__":
    sys.exit(main())
