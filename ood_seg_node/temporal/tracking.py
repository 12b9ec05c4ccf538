# Copyright 2026 The ood_seg_node developers. Licensed under the Apache License, Version 2.0.
"""Obstacle tracks: the same object keeps its ID from frame to frame, and one-frame blobs stay unconfirmed.

Each frame's obstacles (connected components of the anomaly mask) are associated with the live tracks by the
IoU of their boxes after ego-motion compensation: a current box is moved to where its pixels were in the
previous frame (the median of the fusion's current -> previous correspondence inside it) and compared with
each track's last box. Pairs are taken greedily by IoU (highest first) down to ``min_iou``; an unmatched
obstacle starts a track with a new ID (IDs are never reused, so an RViz marker id names one object).

A track is *confirmed* while it was seen in at least ``confirm_hits`` of the last ``window`` frames, and is
dropped once it was seen in none of them. Most false obstacles are single-frame blobs; publishing confirmed
tracks only removes them at the price of ``confirm_hits - 1`` frames of latency for a new object.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

from ood_seg_node.obstacles import Obstacle, find_obstacles
from ood_seg_node.temporal.fusion import Correspondence


@dataclass(frozen=True)
class Track:
    """One object followed across frames, as it stands after a frame (a snapshot: safe to hand to another thread).

    Attributes:
        id: stable identifier (>= 1, never reused by the tracker that made it).
        obstacle: its component in this frame.
        age: frames since it was first seen (0 on its first frame).
        seen: frames of the last ``window`` it was seen in (this one included).
        window: the tracker's window M.
        seen_total: frames it was seen in, over its life so far.
        confirmed: seen in at least the tracker's ``confirm_hits`` of the last ``window`` frames.
    """

    id: int
    obstacle: Obstacle
    age: int
    seen: int
    window: int
    seen_total: int
    confirmed: bool

    @property
    def confidence(self) -> float:
        """Share of the window's frames it was seen in (evidence on every head's scale alike)."""
        return self.seen / self.window


@dataclass(eq=False)
class _LiveTrack:
    id: int
    obstacle: Obstacle
    hits: deque
    age: int = 0
    seen_total: int = 1


def box_iou(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> float:
    """IoU of two (x0, y0, x1, y1) boxes, x1/y1 exclusive."""
    width = min(a[2], b[2]) - max(a[0], b[0])
    height = min(a[3], b[3]) - max(a[1], b[1])
    if width <= 0 or height <= 0:
        return 0.0
    inter = width * height
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


class ObstacleTracker:
    """Associates each frame's obstacles with tracks (see the module docstring).

    Args:
        confirm_hits: N of "seen in N of the last M frames" (>= 1).
        window: M (>= confirm_hits).
        min_iou: smallest IoU of an association, in (0, 1].
    """

    def __init__(self, *, confirm_hits: int = 3, window: int = 5, min_iou: float = 0.1) -> None:
        if not 1 <= confirm_hits <= window:
            raise ValueError(f"need 1 <= track_confirm_hits <= track_window, got {confirm_hits} and {window}")
        if not 0.0 < min_iou <= 1.0:
            raise ValueError(f"min_iou must lie in (0, 1], got {min_iou}")
        self.confirm_hits, self.window, self.min_iou = int(confirm_hits), int(window), float(min_iou)
        self._next_id = 1
        self._tracks: list[_LiveTrack] = []

    def reset(self) -> None:
        """Drop every track (a new sequence); IDs keep counting up."""
        self._tracks = []

    def update(self, obstacles: list[Obstacle], correspondence: Correspondence | None = None,
               scale: tuple[float, float] = (1.0, 1.0)) -> list[Track]:
        """Associate one frame's obstacles; returns the tracks seen in this frame, in the obstacles' order.

        Args:
            obstacles: this frame's components (image pixels).
            correspondence: current -> previous pixel map of a (h, w) map (None: no motion compensation).
            scale: (sy, sx) from that map's pixels to image pixels.
        """
        previous_boxes = [self._moved_back(o, correspondence, scale) for o in obstacles]
        pairs = sorted(((box_iou(box, _box(track.obstacle)), i, j) for i, box in enumerate(previous_boxes)
                        for j, track in enumerate(self._tracks)), reverse=True)
        matched: dict[int, _LiveTrack] = {}
        taken: set[int] = set()
        for iou, i, j in pairs:
            if iou < self.min_iou:
                break
            if i in matched or j in taken:
                continue
            matched[i] = self._tracks[j]
            taken.add(j)
        existing, seen = list(self._tracks), []
        for i, obstacle in enumerate(obstacles):
            track = matched.get(i)
            if track is None:
                track = _LiveTrack(self._next_id, obstacle, deque(maxlen=self.window))
                self._next_id += 1
                self._tracks.append(track)
            else:
                track.obstacle, track.age, track.seen_total = obstacle, track.age + 1, track.seen_total + 1
            track.hits.append(True)
            seen.append(track)
        for j, track in enumerate(existing):
            if j not in taken:
                track.age += 1
                track.hits.append(False)
        self._tracks = [track for track in self._tracks if any(track.hits)]
        return [Track(t.id, t.obstacle, t.age, sum(t.hits), self.window, t.seen_total,
                      sum(t.hits) >= self.confirm_hits) for t in seen]

    def follow(self, score: np.ndarray, threshold: float, min_area: float, image_size: tuple[int, int],
               correspondence: Correspondence | None = None) -> tuple[list[Obstacle], list[Track]]:
        """Obstacles of a (h, w) score map and their tracks, in the same order.

        Components of ``score >= threshold`` are found at the map's resolution and reported in ``image_size``
        pixels (see :func:`~ood_seg_node.obstacles.find_obstacles`).
        """
        scale = (image_size[0] / score.shape[0], image_size[1] / score.shape[1])
        obstacles = find_obstacles(score >= threshold, score, min_area, scale)
        return obstacles, self.update(obstacles, correspondence, scale)

    @property
    def live(self) -> int:
        """Tracks alive now (seen in at least one of the last ``window`` frames)."""
        return len(self._tracks)

    @staticmethod
    def _moved_back(obstacle: Obstacle, correspondence: Correspondence | None,
                    scale: tuple[float, float]) -> tuple[float, float, float, float]:
        box = _box(obstacle)
        if correspondence is None:
            return box
        sy, sx = scale
        height, width = correspondence.valid.shape
        rows = slice(max(0, int(obstacle.y0 / sy)), min(height, max(int(obstacle.y0 / sy) + 1, int(obstacle.y1 / sy))))
        cols = slice(max(0, int(obstacle.x0 / sx)), min(width, max(int(obstacle.x0 / sx) + 1, int(obstacle.x1 / sx))))
        dy, dx = correspondence.displacement(rows, cols)
        return box[0] + dx * sx, box[1] + dy * sy, box[2] + dx * sx, box[3] + dy * sy


def _box(obstacle: Obstacle) -> tuple[float, float, float, float]:
    return float(obstacle.x0), float(obstacle.y0), float(obstacle.x1), float(obstacle.y1)
