# Copyright 2026 The ood_seg_node developers. Licensed under the Apache License, Version 2.0.
"""The node's parameters as one frozen dataclass: defaults, descriptions, validation, the pipeline they name.

No rclpy here: launch-file and YAML tests check parameters against this module without a ROS graph.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from ood_seg_node.deploy import BACKENDS
from ood_seg_node.encodings import DEFAULT_MAX_INPUT_PIXELS
from ood_seg_node.heads import head_names
from ood_seg_node.pipeline import SCORE_RESOLUTIONS, Pipeline, parse_size, resolve_device
from ood_seg_node.ros.runtime import one_line
from ood_seg_node.segmenters import segmenter_names
from ood_seg_node.temporal import FUSION_MODES, ObstacleTracker, TemporalFusion


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
    score_resolution: str = "native"
    backend: str = "torch"
    fp16: bool = False
    engine_cache_dir: str = ""
    warmup_size: str = ""
    threshold: float = math.nan
    calibrated_for: str = ""
    min_obstacle_area: int = 50
    compressed_input: bool = False
    reliable_input: bool = False
    output_depth: int = 1
    max_input_pixels: int = DEFAULT_MAX_INPUT_PIXELS
    publish_overlay: bool = True
    overlay_alpha: float = 0.5
    camera_height: float = 1.5
    camera_pitch: float = 0.0
    marker_scale: float = 0.01
    temporal_fusion: str = "none"
    temporal_alpha: float = 0.7
    temporal_max_gap: float = 0.5
    odometry_topic: str = ""
    track_confirm_hits: int = 3
    track_window: int = 5
    publish_confirmed_only: bool = False
    autostart: bool = True


DESCRIPTIONS = {
    "head": "OOD head scoring each pixel (registry name)",
    "head_checkpoint": "weights of a trained head; empty = the shipped default where one exists",
    "segmenter": "segmentation model, a registered name (builtin, torchvision:<arch>, torchscript, the "
                 "published-weights segmenters of docs/bring_your_own_model.md)",
    "segmenter_checkpoint": "segmenter weights file as its authors publish it; empty = the shipped builtin weights",
    "device": "inference device: auto, cpu, cuda or cuda:N",
    "score_resolution": "native (score at the logits' resolution, then upsample; cheap) or input (logits upsampled "
                        "to the input's size first, then labels and scores in the method's official order)",
    "backend": "torch, or onnxruntime (segmenter and head exported once per input size to one ONNX graph, run by "
               "ONNX Runtime: CPU, CUDA or TensorRT provider by device)",
    "fp16": "half-precision TensorRT engines (backend onnxruntime, device cuda, onnxruntime-gpu with TensorRT)",
    "engine_cache_dir": "where exported graphs and TensorRT engines are kept; empty = ~/.cache/ood_seg_node",
    "warmup_size": "HxW of one frame run when the pipeline is built, so the first camera frame is not the slow "
                   "one; empty = the segmenter's fixed input size, or none for segmenters that run at the input's",
    "threshold": "anomaly-mask threshold on the score; NaN = the head's calibrated default",
    "calibrated_for": "model identity a calibration (ood_seg validate's calibration.yaml) was fitted for; the node "
                      "refuses to run another segmenter/head/weights with it; empty = no check",
    "min_obstacle_area": "smallest anomaly component (pixels) reported on ood/obstacles, >= 1",
    "compressed_input": "subscribe to image/compressed (sensor_msgs/CompressedImage) instead of image",
    "reliable_input": "reliable input QoS (bag replay without loss) instead of best-effort sensor data",
    "output_depth": "history depth of every (reliable) output topic, >= 1, read at configure: 1 keeps only the newest "
                    "frame (live camera); a bag replay that evaluates every frame needs more (replay.launch.py: 10)",
    "max_input_pixels": "frames declaring more pixels (raw or compressed, read before decoding) are refused, >= 1",
    "publish_overlay": "publish ood/overlay (input with anomalies tinted red)",
    "overlay_alpha": "strength of the red tint on ood/overlay, in [0, 1]",
    "camera_height": "camera height above flat ground in metres (> 0), for ground-plane obstacle markers",
    "camera_pitch": "downward pitch of the optical axis in radians, in (-pi/2, pi/2)",
    "marker_scale": "metres per pixel of image-plane obstacle markers (used without camera_info), > 0",
    "temporal_fusion": "none, flow (each head's score fused with the previous frames' along the optical flow) or "
                       "ground (along the flat ground's motion between camera poses; needs odometry_topic)",
    "temporal_alpha": "weight of the current frame in the temporal fusion, in (0, 1]; 1 = no memory",
    "temporal_max_gap": "a larger gap (seconds) between image stamps starts a new sequence (fusion and tracks), > 0",
    "odometry_topic": "nav_msgs/Odometry of the vehicle base in a fixed frame (temporal_fusion ground); empty = none",
    "track_confirm_hits": "an obstacle track is confirmed when seen in this many of the last track_window frames, >= 1",
    "track_window": "frames of the track confirmation window, >= track_confirm_hits",
    "publish_confirmed_only": "ood/obstacles carries the markers of confirmed tracks only",
    "autostart": "configure and activate at start (read once); false = wait for a lifecycle manager",
}
PIPELINE_KEYS = ("head", "head_checkpoint", "segmenter", "segmenter_checkpoint", "device", "score_resolution",
                 "backend", "fp16", "engine_cache_dir", "warmup_size", "calibrated_for")
"""Parameters whose change rebuilds the pipeline."""
INPUT_KEYS = ("compressed_input", "reliable_input")
"""Parameters whose change re-creates the input subscription."""
TEMPORAL_KEYS = ("temporal_fusion", "temporal_alpha", "temporal_max_gap", "track_confirm_hits", "track_window")
"""Parameters whose change replaces the pipeline's fusion and tracker (a new sequence starts; no rebuild)."""


def check_config(config: NodeConfig) -> None:
    """Raise :class:`ConfigError` naming the parameter and its valid values for the first invalid one.

    Cheap checks only (names, ranges, that checkpoint files exist): building the pipeline finds the rest.
    """
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
        ("score_resolution", config.score_resolution in SCORE_RESOLUTIONS, ", ".join(SCORE_RESOLUTIONS)),
        ("backend", config.backend in BACKENDS, ", ".join(BACKENDS)),
        ("fp16", not config.fp16 or config.backend == "onnxruntime", "false unless backend is onnxruntime"),
        ("warmup_size", not config.warmup_size or _is_size(config.warmup_size), "empty or HxW, e.g. 720x1280"),
        ("threshold", not math.isinf(config.threshold), "a finite number or NaN"),
        ("min_obstacle_area", config.min_obstacle_area >= 1, "an integer >= 1"),
        ("max_input_pixels", config.max_input_pixels >= 1, "an integer >= 1"),
        ("output_depth", config.output_depth >= 1, "an integer >= 1"),
        ("overlay_alpha", 0.0 <= config.overlay_alpha <= 1.0, "a number in [0, 1]"),
        ("camera_height", math.isfinite(config.camera_height) and config.camera_height > 0.0, "a number > 0"),
        ("camera_pitch", abs(config.camera_pitch) < math.pi / 2, "a number in (-pi/2, pi/2) radians"),
        ("marker_scale", math.isfinite(config.marker_scale) and config.marker_scale > 0.0, "a number > 0"),
        ("temporal_fusion", config.temporal_fusion in FUSION_MODES, ", ".join(FUSION_MODES)),
        ("temporal_fusion", config.temporal_fusion != "ground" or bool(config.odometry_topic),
         "ground needs odometry_topic (nav_msgs/Odometry)"),
        ("temporal_alpha", 0.0 < config.temporal_alpha <= 1.0, "a number in (0, 1]"),
        ("temporal_max_gap", math.isfinite(config.temporal_max_gap) and config.temporal_max_gap > 0.0,
         "a number of seconds > 0"),
        ("track_confirm_hits", config.track_confirm_hits >= 1, "an integer >= 1"),
        ("track_window", config.track_window >= config.track_confirm_hits,
         f"an integer >= track_confirm_hits ({config.track_confirm_hits})"),
        ("head_checkpoint", not config.head_checkpoint or Path(config.head_checkpoint).is_file(), "an existing file"),
        ("segmenter_checkpoint", all(Path(part.strip()).exists() for part in config.segmenter_checkpoint.split(",")
                                     if config.segmenter_checkpoint), "an existing file or folder (two files: a,b)"),
    ]
    for name, ok, valid in checks:
        if not ok:
            raise ConfigError(f"invalid {name} {getattr(config, name)!r}; valid: {valid}")


def temporal_objects(config: NodeConfig) -> tuple[TemporalFusion, ObstacleTracker]:
    """A new fusion and tracker for the temporal parameters (both start a new sequence)."""
    fusion = TemporalFusion(config.temporal_fusion, alpha=config.temporal_alpha, max_gap_s=config.temporal_max_gap)
    return fusion, ObstacleTracker(confirm_hits=config.track_confirm_hits, window=config.track_window)


def _is_size(text: str) -> bool:
    try:
        parse_size(text)
    except ValueError:
        return False
    return True


def build_pipeline(config: NodeConfig) -> Pipeline:
    """The pipeline the parameters name, warmed up; any failure (a refused checkpoint, ...) is a ConfigError."""
    try:
        pipeline = Pipeline.from_names(
            segmenter=config.segmenter,
            head=config.head,
            segmenter_checkpoint=config.segmenter_checkpoint,
            head_checkpoint=config.head_checkpoint,
            device=config.device,
            score_resolution=config.score_resolution,
            threshold=config.threshold,
            min_obstacle_area=config.min_obstacle_area,
            backend=config.backend,
            fp16=config.fp16,
            cache_dir=config.engine_cache_dir,
            temporal_fusion=config.temporal_fusion,
            temporal_alpha=config.temporal_alpha,
            temporal_max_gap=config.temporal_max_gap,
            track_confirm_hits=config.track_confirm_hits,
            track_window=config.track_window,
        )
        if config.calibrated_for:
            from ood_seg_node.genval.calibration import calibration_identity

            running = calibration_identity(pipeline)
            if running != config.calibrated_for:
                raise ConfigError(f"the calibration (threshold) was fitted for {config.calibrated_for} but this node "
                                  f"runs {running}; refit it with ood_seg validate, or clear calibrated_for")
        size = parse_size(config.warmup_size, what="warmup_size") if config.warmup_size else pipeline.inference_size
        if size:
            pipeline.warm_up(size)
        return pipeline
    except ConfigError:
        raise
    except (ValueError, RuntimeError, OSError) as error:
        raise ConfigError(one_line(error)) from None
