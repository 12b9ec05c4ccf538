# Copyright 2026 The ood_seg_node developers. Licensed under the Apache License, Version 2.0.
"""One frame in, one :class:`FrameResult` out: the inference path shared by the node, evaluation and demo.

Scores and the argmax are computed at the logits' native resolution and only the published maps are
upsampled (scoring 19-class logits upsampled to 1024x2048 costs 100-500 ms on CPU, at native resolution
1-6 ms). On CPU the segmenter runs through :class:`~ood_seg_node.fastpath.FastPath` (channels-last, traced
and frozen once per input size, checked against eager execution and dropped if it disagrees), as do the
heads with a network of their own.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Sequence

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from ood_seg_node.camera import CameraView
from ood_seg_node.deploy import BACKENDS, OnnxRuntimeRunner
from ood_seg_node.fastpath import FastPath
from ood_seg_node.heads import Head, build_head
from ood_seg_node.obstacles import Obstacle
from ood_seg_node.segmenters import Segmenter, SegmenterOutput, build_segmenter, name_outputs
from ood_seg_node.temporal import ObstacleTracker, TemporalFusion, Track

SCORE_RESOLUTIONS = ("native", "input")


def parse_size(text: str, *, minimum: int = 1, what: str = "size") -> tuple[int, int]:
    """``"512x1024"`` -> (512, 1024), i.e. (H, W); one line naming ``what`` otherwise.

    Raises:
        ValueError: not ``HxW`` with two integers >= ``minimum``.
    """
    height, sep, width = text.strip().lower().partition("x")
    if not (sep and height.isdigit() and width.isdigit() and min(int(height), int(width)) >= minimum):
        raise ValueError(f"{what} must be HxW with both sides >= {minimum} (e.g. 512x1024), got {text!r}")
    return int(height), int(width)


class PipelineError(RuntimeError):
    """A frame cannot be processed (bad image, non-finite scores); the caller skips that frame."""


@dataclass
class FrameResult:
    """Everything published for one frame, at the input image's size.

    Attributes:
        labels: HxW uint8 class ids in the segmenter's label space.
        score: HxW float32 anomaly score of the primary head (finite, higher = more anomalous).
        mask: HxW bool, ``score >= threshold``.
        obstacles: connected components of the mask at the score's native resolution (where its information
            is; 16x cheaper than at the input's at stride 4), with at least ``min_obstacle_area`` pixels, in
            the input image's pixels (boxes to the native stride).
        threshold: the threshold that made ``mask``.
        scores: every head's HxW score by its name in the pipeline (the primary one included).
        native_scores: every head's score at the logits' resolution (what ``scores`` were upsampled from;
            evaluation keeps these for its second pass).
        timings_ms: ``preprocess``, ``segmenter``, ``head`` (all heads), ``head:<name>`` (each),
            ``postprocess``, ``total``.
        logits: (C, h, w) float32 logits the labels were taken from, when the pipeline keeps them
            (``keep_logits``, torch backend: calibration measures need them), else None.
        tracks: the tracks of this frame's obstacles, in the order of ``obstacles`` (stable IDs across frames).
        restart: why this frame started a new temporal sequence (``first frame``, a stamp gap, ...), empty
            when it continued one; with ``temporal_fusion`` other than ``none`` such a frame is scored alone.
    """

    labels: np.ndarray
    score: np.ndarray
    mask: np.ndarray
    obstacles: list[Obstacle]
    threshold: float
    scores: dict[str, np.ndarray] = field(default_factory=dict)
    native_scores: dict[str, np.ndarray] = field(default_factory=dict)
    timings_ms: dict[str, float] = field(default_factory=dict)
    logits: np.ndarray | None = None
    tracks: list[Track] = field(default_factory=list)
    restart: str = ""


def resolve_device(device: str) -> torch.device:
    """``auto`` -> CUDA when available, else CPU; an unavailable CUDA device is an error."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device != "cpu" and not (device == "cuda" or device.startswith("cuda:")):
        raise ValueError(f"invalid device {device!r}; valid: auto, cpu, cuda, cuda:N")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but CUDA is not available (use auto or cpu)")
    return torch.device(device)


class Pipeline:
    """Segmenter + one or more heads sharing one forward pass per frame.

    Args:
        segmenter: a built segmenter (see :func:`ood_seg_node.segmenters.build_segmenter`).
        heads: the primary head first; every head is scored on the same forward.
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
        threshold: mask threshold; NaN = the primary head's calibrated default.
        min_obstacle_area: smallest component (pixels, at output size) reported as an obstacle.
        inference_size: (H, W) the segmenter sees; None = the segmenter's default (native if it has none).
        names: the key of each head's score in :class:`FrameResult` (default: the heads' registry names);
            two variants of one head (e.g. two checkpoints) need names of their own.
        score_resolution: ``native`` scores at the logits' resolution and upsamples the score (cheap);
            ``input`` upsamples the logits to the input's size first (as the segmenter's official code
            does), takes the labels as their argmax and each head's score in its official order
            (:meth:`~ood_seg_node.heads.Head.score_input`), for outputs that match the papers' code.
        optimize: on CPU, channels-last input and the segmenter's :class:`~ood_seg_node.fastpath.FastPath`.
        backend: ``torch`` (default) or ``onnxruntime``: the segmenter and the heads exported as one graph
            per input size and run by ONNX Runtime (see :mod:`ood_seg_node.deploy`).
        fp16: half-precision TensorRT engines (``onnxruntime`` on ``cuda`` only).
        cache_dir: where exported graphs and TensorRT engines are kept (default ``~/.cache/ood_seg_node``).
        keep_logits: return each frame's logits in :attr:`FrameResult.logits` (torch backend).
        temporal_fusion: ``none``, ``flow`` or ``ground``: every head's score fused with the previous frames'
            along the scene's motion (:mod:`ood_seg_node.temporal.fusion`); frames go through :meth:`process`
            in order, :meth:`restart` between sequences.
        temporal_alpha: weight of the current frame in the fusion, in (0, 1].
        temporal_max_gap: stamp gap (seconds) above which a frame starts a new sequence.
        track_confirm_hits: an obstacle track is confirmed when seen in this many of the last
            ``track_window`` frames.
        track_window: see ``track_confirm_hits``.
    """

    def __init__(
        self,
        segmenter: Segmenter,
        heads: Head | Sequence[Head],
        *,
        device: str = "auto",
        threshold: float = math.nan,
        min_obstacle_area: int = 50,
        inference_size: tuple[int, int] | None = None,
        optimize: bool = True,
        names: Sequence[str] | None = None,
        score_resolution: str = "native",
        backend: str = "torch",
        fp16: bool = False,
        cache_dir: str = "",
        keep_logits: bool = False,
        temporal_fusion: str = "none",
        temporal_alpha: float = 0.7,
        temporal_max_gap: float = 0.5,
        track_confirm_hits: int = 3,
        track_window: int = 5,
    ) -> None:
        self.heads: list[Head] = [heads] if isinstance(heads, Head) else list(heads)
        if not self.heads:
            raise ValueError("a pipeline needs at least one head")
        if score_resolution not in SCORE_RESOLUTIONS:
            raise ValueError(f"invalid score_resolution {score_resolution!r}; valid: {', '.join(SCORE_RESOLUTIONS)}")
        self.score_resolution = score_resolution
        self.names: list[str] = list(names) if names is not None else [head.name for head in self.heads]
        if len(self.names) != len(self.heads) or len(set(self.names)) != len(self.names):
            raise ValueError(f"one distinct name per head needed, got {self.names}")
        overrides = {id(o): o for o in (h.segmenter_override() for h in self.heads) if o is not None}
        if len(overrides) > 1 or (overrides and len(self.heads) > 1):
            raise ValueError("a head that carries its own segmenter must run in a pipeline of its own")
        self.segmenter: Segmenter = next(iter(overrides.values()), segmenter)
        self.device = resolve_device(device)
        self.segmenter.to(self.device).eval()
        for head in self.heads:
            head.to(self.device).eval()
        self.threshold = float(threshold)
        self.min_obstacle_area = int(min_obstacle_area)
        self.inference_size = inference_size or self.segmenter.default_input_size
        self.optimize = optimize and self.device.type == "cpu"
        self._memory_format = torch.channels_last if self.optimize else torch.contiguous_format
        if self.optimize:
            self.segmenter.to(memory_format=torch.channels_last)
        self.fast_path = FastPath(self.segmenter, enabled=self.optimize)
        if backend not in BACKENDS:
            raise ValueError(f"invalid backend {backend!r}; valid: {', '.join(BACKENDS)}")
        if fp16 and backend != "onnxruntime":
            raise ValueError("fp16 applies to backend onnxruntime with TensorRT (device cuda)")
        self.backend = backend
        if keep_logits and backend != "torch":
            raise ValueError("keep_logits needs backend torch (the exported graph returns labels and scores only)")
        self.keep_logits = keep_logits
        self._kept_logits: torch.Tensor | None = None
        self.fusion = TemporalFusion(temporal_fusion, alpha=temporal_alpha, max_gap_s=temporal_max_gap)
        self.tracker = ObstacleTracker(confirm_hits=track_confirm_hits, window=track_window)
        self.runner = OnnxRuntimeRunner(self.segmenter, self.heads, self.names, score_resolution=score_resolution,
                                        device=self.device, fp16=fp16, cache_dir=cache_dir or None) \
            if backend == "onnxruntime" else None

    @classmethod
    def from_names(
        cls,
        *,
        segmenter: str = "builtin",
        head: str | Sequence[str] = "msp",
        segmenter_checkpoint: str = "",
        head_checkpoint: str = "",
        **options,
    ) -> Pipeline:
        """Build from registry names, as the node's parameters and the CLI name them."""
        seg = build_segmenter(segmenter, segmenter_checkpoint)
        names = [head] if isinstance(head, str) else list(head)
        heads = [build_head(name, seg, head_checkpoint if i == 0 else "") for i, name in enumerate(names)]
        return cls(seg, heads, **options)

    @property
    def head(self) -> Head:
        return self.heads[0]

    @property
    def effective_threshold(self) -> float:
        return self.threshold if not math.isnan(self.threshold) else self.head.default_threshold

    def _forward(self, batch: torch.Tensor) -> SegmenterOutput:
        return name_outputs(self.fast_path(batch), tuple(self.segmenter.tap_channels))

    def resized(self, rgb: np.ndarray) -> np.ndarray:
        """HxWx3 uint8 RGB checked and resized to the inference size (area interpolation)."""
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise PipelineError(f"expected an HxWx3 uint8 RGB image, got {rgb.dtype} array of shape {rgb.shape}")
        if rgb.shape[0] == 0 or rgb.shape[1] == 0:
            raise PipelineError("empty image (zero width or height)")
        if self.inference_size and tuple(rgb.shape[:2]) != tuple(self.inference_size):
            height, width = self.inference_size
            rgb = cv2.resize(rgb, (width, height), interpolation=cv2.INTER_AREA)
        return np.ascontiguousarray(rgb)

    def to_tensor(self, rgb: np.ndarray) -> torch.Tensor:
        """HxWx3 uint8 RGB -> (1, 3, h, w) float in [0, 1] at the inference size, on the device."""
        tensor = torch.from_numpy(self.resized(rgb)).to(self.device).permute(2, 0, 1)[None].float() / 255.0
        return tensor.contiguous(memory_format=self._memory_format)

    @torch.inference_mode()
    def infer(self, rgb: np.ndarray) -> tuple[torch.Tensor, dict[str, torch.Tensor], dict[str, float]]:
        """(labels, {head: score}, timings in ms), at the logits' resolution (or the input's, see above)."""
        if self.runner is not None:
            return self._infer_onnxruntime(rgb)
        started = time.perf_counter()
        batch = self.to_tensor(rgb)
        prepared = time.perf_counter()
        out = self._forward(batch)
        segmented = time.perf_counter()
        scores = {}
        timings = {"preprocess": (prepared - started) * 1e3, "segmenter": (segmented - prepared) * 1e3}
        logits = self.segmenter.labels_logits(out.logits, rgb.shape[:2], self.score_resolution)
        for head, label in zip(self.heads, self.names):
            head_started = time.perf_counter()
            score = head.score_in_order(self.score_resolution, batch, out, logits)[0]
            if not bool(torch.isfinite(score).all()):
                raise PipelineError(f"head {label!r} produced non-finite scores (NaN/Inf); frame skipped")
            scores[label] = score
            timings[f"head:{label}"] = (time.perf_counter() - head_started) * 1e3
        labels = logits[0].argmax(dim=0)
        if self.keep_logits:
            self._kept_logits = logits[0]
        timings["head"] = (time.perf_counter() - segmented) * 1e3
        return labels, scores, timings

    def _infer_onnxruntime(self, rgb: np.ndarray) -> tuple[torch.Tensor, dict[str, torch.Tensor], dict[str, float]]:
        """:meth:`infer` through the exported graph (one timing covers the segmenter and every head)."""
        started = time.perf_counter()
        resized = self.resized(rgb)
        prepared = time.perf_counter()
        labels, scores = self.runner.run(resized)
        done = time.perf_counter()
        for name, score in scores.items():
            if not np.isfinite(score).all():
                raise PipelineError(f"head {name!r} produced non-finite scores (NaN/Inf); frame skipped")
        timings = {"preprocess": (prepared - started) * 1e3, "segmenter": (done - prepared) * 1e3, "head": 0.0,
                   **{f"head:{name}": 0.0 for name in scores}}
        return torch.from_numpy(labels), {name: torch.from_numpy(score) for name, score in scores.items()}, timings

    def warm_up(self, size: tuple[int, int]) -> None:
        """One grey (H, W) frame through everything: traces, exports and engines are built now, not on a frame."""
        self.process(np.full((*size, 3), 128, dtype=np.uint8))
        self.restart()

    def restart(self) -> None:
        """The next frame starts a new sequence: no fusion with the frames before it, no track continues."""
        self.fusion.reset()
        self.tracker.reset()

    def process(self, rgb: np.ndarray, *, stamp: float | None = None, view: CameraView | None = None) -> FrameResult:
        """Run the segmenter and every head on one HxWx3 uint8 RGB frame.

        Args:
            rgb: the frame.
            stamp: its time in seconds (temporal fusion restarts on a gap; None = the next frame in order).
            view: its camera's intrinsics, mount and pose (``temporal_fusion: ground`` needs it).
        """
        started = time.perf_counter()
        labels, scores, timings = self.infer(rgb)
        post_started = time.perf_counter()
        native_scores = {name: score.cpu().numpy() for name, score in scores.items()}
        fused = self.fusion.step(native_scores, rgb, stamp=stamp, view=view)
        if self.fusion.mode != "none":
            native_scores = fused.scores
            scores = {name: torch.from_numpy(score) for name, score in native_scores.items()}
            timings["fusion"] = fused.elapsed_ms
        if fused.cut:
            self.tracker.reset()
        height, width = rgb.shape[:2]
        full_scores = {name: upsample_score(score, (height, width)) for name, score in scores.items()}
        labels_np = labels.to(torch.uint8).cpu().numpy()
        if labels_np.shape != (height, width):
            labels_np = cv2.resize(labels_np, (width, height), interpolation=cv2.INTER_NEAREST)
        primary = full_scores[self.names[0]]
        threshold = self.effective_threshold
        mask = primary >= threshold
        native = native_scores[self.names[0]]
        obstacles, tracks = self.tracker.follow(native, threshold, self.min_obstacle_area, (height, width),
                                                fused.correspondence.get(native.shape))
        done = time.perf_counter()
        timings["postprocess"] = (done - post_started) * 1e3
        timings["total"] = (done - started) * 1e3
        kept = self._kept_logits.float().cpu().numpy() if self.keep_logits else None
        return FrameResult(labels_np, primary, mask, obstacles, threshold, full_scores, native_scores, timings,
                           kept, tracks, fused.restart)


def upsample_score(score: torch.Tensor, size: tuple[int, int]) -> np.ndarray:
    """Bilinear (h, w) -> size float32 numpy (pixel centres aligned); a no-op at the same size.

    On the GPU it upsamples there (one map comes back); on the CPU OpenCV's resize computes the same
    interpolation 4-5x faster than torch's.
    """
    if tuple(score.shape) == tuple(size):
        return score.cpu().numpy().astype(np.float32, copy=False)
    if score.device.type != "cpu":
        return F.interpolate(score[None, None].float(), size=size, mode="bilinear",
                             align_corners=False)[0, 0].cpu().numpy()
    native = np.ascontiguousarray(score.numpy(), dtype=np.float32)
    return cv2.resize(native, (size[1], size[0]), interpolation=cv2.INTER_LINEAR)
