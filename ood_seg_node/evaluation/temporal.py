# Copyright 2026 The ood_seg_node developers. Licensed under the Apache License, Version 2.0.
"""What temporal fusion and tracking change, measured on sequences: flicker, obstacle-level detection, cuts.

Per evaluated name (a head, or a head under one fusion mode) and frames in sequence order:

- **flicker**: of the pixels masked in the current frame or in the previous one (warped into the current frame
  by the true ego-motion: depth and poses where the source renders them, DIS optical flow between the images
  otherwise), the share whose mask value changed, counted on static inlier pixels only (ground truth 0 in
  both frames: the road surface) and pooled over the run;
- **obstacles**: each frame's obstacles (components of the mask, as the node reports them) against the ground
  truth's objects (8-connected components of anomaly pixels with at least ``min_area`` pixels), matched
  one-to-one greedily by box IoU >= ``match_iou``; precision and recall of every per-frame component and of
  confirmed tracks only, and how many of the false ones were one-frame blobs (their track was seen in one
  frame only) or never confirmed;
- **after a cut**: AP and FPR95 on the first frame of each sequence (scored alone in every mode) and on the
  frames after it.

The mask threshold is fixed before the run (the head's calibrated default, as the node uses it, unless given),
since flicker and tracks are measured while the frames stream.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from ood_seg_node.cityscapes import OOD_ANOMALY
from ood_seg_node.evaluation.accumulator import SEQUENCE_BINS
from ood_seg_node.evaluation.metrics import StreamingOODMetrics
from ood_seg_node.temporal import Correspondence, Track
from ood_seg_node.temporal.fusion import depth_correspondence, flow_correspondence, grey
from ood_seg_node.temporal.tracking import box_iou

MATCH_IOU = 0.25


@dataclass
class _Counts:
    tp: int = 0
    fp: int = 0
    fn: int = 0

    def result(self) -> dict[str, float]:
        precision = self.tp / (self.tp + self.fp) if self.tp + self.fp else float("nan")
        recall = self.tp / (self.tp + self.fn) if self.tp + self.fn else float("nan")
        f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else float("nan")
        return {"precision": precision, "recall": recall, "f1": f1, "tp": self.tp, "fp": self.fp, "fn": self.fn}


@dataclass
class _NameState:
    changed: int = 0
    masked: int = 0
    frames: Mapping[str, _Counts] = field(default_factory=lambda: {"components": _Counts(), "confirmed": _Counts()})
    false_tracks: list[int] = field(default_factory=list)  # track id of each false per-frame component
    seen_total: dict[int, int] = field(default_factory=dict)
    ever_confirmed: set[int] = field(default_factory=set)
    first: StreamingOODMetrics = field(default_factory=lambda: StreamingOODMetrics(SEQUENCE_BINS))
    later: StreamingOODMetrics = field(default_factory=lambda: StreamingOODMetrics(SEQUENCE_BINS))
    previous_mask: np.ndarray | None = None
    restarts: int = 0
    fusion_ms: list[float] = field(default_factory=list)
    pipeline_ms: list[float] = field(default_factory=list)


def gt_objects(gt: np.ndarray, min_area: int) -> list[tuple[int, int, int, int]]:
    """Boxes (x0, y0, x1, y1; exclusive) of the ground truth's anomaly components of >= ``min_area`` pixels."""
    count, _, stats, _ = cv2.connectedComponentsWithStats((gt == OOD_ANOMALY).astype(np.uint8), connectivity=8)
    return [(int(x), int(y), int(x + w), int(y + h)) for x, y, w, h, area in stats[1:count] if area >= min_area]


def match(predicted: list[tuple[float, float, float, float]], truth: list[tuple[int, int, int, int]],
          min_iou: float = MATCH_IOU) -> tuple[int, list[bool]]:
    """Greedy one-to-one matching by box IoU; (true positives, whether each prediction matched)."""
    pairs = sorted(((box_iou(p, t), i, j) for i, p in enumerate(predicted) for j, t in enumerate(truth)),
                   reverse=True)
    hit, used = [False] * len(predicted), set()
    for iou, i, j in pairs:
        if iou < min_iou:
            break
        if not hit[i] and j not in used:
            hit[i] = True
            used.add(j)
    return len(used), hit


class TemporalMeter:
    """Flicker, obstacle-level detection and first-frame figures per name (see the module docstring).

    Args:
        thresholds: name -> the mask threshold (fixed for the run).
        min_area: smallest ground-truth object counted, in pixels (the node's ``min_obstacle_area``).
        match_iou: box IoU of a correct obstacle.
    """

    def __init__(self, thresholds: Mapping[str, float], *, min_area: int = 50, match_iou: float = MATCH_IOU) -> None:
        self.thresholds = dict(thresholds)
        self.min_area, self.match_iou = int(min_area), float(match_iou)
        self.names = {name: _NameState() for name in self.thresholds}
        self._previous: Any = None

    def add(self, frame: Any, scores: Mapping[str, np.ndarray], tracks: Mapping[str, list[Track]], *,
            first: bool, restarted: Mapping[str, bool] | None = None, fusion_ms: Mapping[str, float] | None = None,
            pipeline_ms: Mapping[str, float] | None = None) -> None:
        """One frame, in sequence order.

        Args:
            frame: a dataset Frame (``ood_gt``, ``image``; ``depth`` and ``view`` where the source knows them).
            scores: name -> HxW score at the frame's size.
            tracks: name -> the frame's obstacles as tracks.
            first: the frame starts a sequence.
            restarted: name -> its fusion restarted on this frame without a cut (a motion failure).
            fusion_ms: name -> time its fusion took on this frame.
            pipeline_ms: name -> the time of the pipeline that scored it on this frame (segmenter and heads),
                for the overhead ratio.
        """
        gt = frame.ood_gt
        motion = None if first or self._previous is None else self._motion(self._previous, frame)
        previous_gt = self._previous.ood_gt if self._previous is not None else None
        objects = gt_objects(gt, self.min_area)
        for name, score in scores.items():
            state = self.names[name]
            mask = score >= self.thresholds[name]
            (state.first if first else state.later).update(score, gt)
            if motion is not None and state.previous_mask is not None and previous_gt is not None:
                self._flicker(state, mask, motion, gt, previous_gt)
            state.previous_mask = mask
            self._detections(state, tracks.get(name, []), objects)
            state.restarts += bool((restarted or {}).get(name))
            if fusion_ms and name in fusion_ms:
                state.fusion_ms.append(fusion_ms[name])
            if pipeline_ms and name in pipeline_ms:
                state.pipeline_ms.append(pipeline_ms[name])
        self._previous = frame

    @staticmethod
    def _motion(previous: Any, frame: Any) -> Correspondence | None:
        if frame.depth is not None and frame.view is not None and previous.view is not None:
            return depth_correspondence(previous.view, frame.view, frame.depth, previous.depth)
        if previous.image.shape != frame.image.shape:
            return None
        shape = frame.image.shape[:2]
        return flow_correspondence(grey(frame.image, shape), grey(previous.image, shape))

    @staticmethod
    def _flicker(state: _NameState, mask: np.ndarray, motion: Correspondence, gt: np.ndarray,
                 previous_gt: np.ndarray) -> None:
        rows = np.clip(np.rint(motion.map_y).astype(np.intp), 0, gt.shape[0] - 1)
        cols = np.clip(np.rint(motion.map_x).astype(np.intp), 0, gt.shape[1] - 1)
        static = motion.valid & (gt == 0) & (previous_gt[rows, cols] == 0)
        before = state.previous_mask[rows, cols]
        state.changed += int((static & (mask != before)).sum())
        state.masked += int((static & (mask | before)).sum())

    def _detections(self, state: _NameState, tracks: list[Track], objects: list[tuple[int, int, int, int]]) -> None:
        for track in tracks:
            state.seen_total[track.id] = track.seen_total
            if track.confirmed:
                state.ever_confirmed.add(track.id)
        for kind, chosen in (("components", tracks), ("confirmed", [t for t in tracks if t.confirmed])):
            boxes = [(t.obstacle.x0, t.obstacle.y0, t.obstacle.x1, t.obstacle.y1) for t in chosen]
            found, hit = match(boxes, objects, self.match_iou)
            counts = state.frames[kind]
            counts.tp += found
            counts.fp += len(chosen) - found
            counts.fn += len(objects) - found
            if kind == "components":
                state.false_tracks += [t.id for t, ok in zip(chosen, hit, strict=True) if not ok]

    def result(self) -> dict[str, dict[str, Any]]:
        """Per name: the figures of the module docstring.

        ``flicker``, ``components`` / ``confirmed`` detection counts, false-positive shares, ``first_frame``
        / ``later_frames`` AP and FPR95, ``restarts``, ``fusion_ms`` and ``overhead`` (its ratio to the
        pipeline's mean time).
        """
        out = {}
        for name, state in self.names.items():
            false = state.false_tracks
            fusion_ms = float(np.mean(state.fusion_ms)) if state.fusion_ms else 0.0
            pipeline_ms = float(np.mean(state.pipeline_ms)) if state.pipeline_ms else float("nan")
            out[name] = {
                "threshold": self.thresholds[name],
                "flicker": state.changed / state.masked if state.masked else float("nan"),
                "flicker_pixels": {"changed": state.changed, "masked": state.masked},
                **{kind: counts.result() for kind, counts in state.frames.items()},
                "false_one_frame_share": sum(state.seen_total[i] == 1 for i in false) / len(false) if false
                else float("nan"),
                "false_never_confirmed_share": sum(i not in state.ever_confirmed for i in false) / len(false)
                if false else float("nan"),
                **{key: {k: v for k, v in metrics.compute().items() if k in ("ap", "fpr95", "frames")}
                   if metrics.frames else {} for key, metrics in (("first_frame", state.first),
                                                                   ("later_frames", state.later))},
                "restarts": state.restarts,
                "fusion_ms": fusion_ms,
                "pipeline_ms": pipeline_ms,
                "overhead": fusion_ms / pipeline_ms if pipeline_ms > 0 else float("nan"),
            }
        return out
