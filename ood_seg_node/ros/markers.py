# Copyright 2026 The ood_seg_node developers. Licensed under the Apache License, Version 2.0.
"""Obstacles -> visualization_msgs/MarkerArray, for RViz and for consumers that want objects, not pixels.

Every array starts with a DELETEALL marker, so the previous frame's obstacles vanish even when the count
drops to zero, then holds one box and one text label per obstacle (namespaces ``ood_obstacles`` and
``ood_obstacle_labels``, largest obstacle first). With the frame's obstacle tracks
(:class:`~ood_seg_node.temporal.Track`, one per obstacle) the marker id of an obstacle's box and label is its
track id, so one object keeps one marker id in RViz from frame to frame, and the label reads
``#7 seen 4/5 (confirmed), score 0.83, 12.3 m``; ``confirmed_only`` leaves out the obstacles of unconfirmed
tracks (most one-frame false obstacles). Without tracks the ids are 0..n-1 and the label reads
``anomaly 0: 600 px, score 0.83, 12.3 m``.

Where the boxes go depends on what is known about the camera:

- with intrinsics (from CameraInfo), the obstacle's foot point (bottom-centre pixel) is intersected with
  flat ground ``camera_height`` metres below the camera pitched down by ``camera_pitch`` radians; a CUBE
  of the component's metric width and height stands there, in the camera's optical frame;
- without them (or for a foot at or above the horizon, or intrinsics so extreme that the cube would
  not be finite) the component's pixel box is drawn as a closed
  LINE_STRIP at ``(u, v, 0) * marker_scale`` metres: the image plane laid out in the camera frame.

Only message packages are imported here (no rclpy), so the layout is unit-testable without a ROS graph.
"""

from __future__ import annotations

import math
from typing import Sequence

from builtin_interfaces.msg import Duration
from geometry_msgs.msg import Point, Pose, Quaternion, Vector3
from sensor_msgs.msg import CameraInfo
from std_msgs.msg import ColorRGBA, Header
from visualization_msgs.msg import Marker, MarkerArray

from ood_seg_node.obstacles import Obstacle, ground_point
from ood_seg_node.temporal import Track

BOX_NAMESPACE = "ood_obstacles"
LABEL_NAMESPACE = "ood_obstacle_labels"

_BOX_COLOR = ColorRGBA(r=1.0, g=0.15, b=0.1, a=0.9)
_CUBE_COLOR = ColorRGBA(r=1.0, g=0.15, b=0.1, a=0.5)
_TEXT_COLOR = ColorRGBA(r=1.0, g=1.0, b=1.0, a=1.0)
_LINE_WIDTH_PX = 2.0
_TEXT_HEIGHT_PX = 14.0
_TEXT_HEIGHT_M = 0.3

Intrinsics = tuple[float, float, float, float]


def intrinsics_from_camera_info(info: CameraInfo, width: int, height: int) -> Intrinsics | None:
    """(fx, fy, cx, cy) of CameraInfo ``info`` for an image of ``width`` x ``height``, or None.

    A CameraInfo for another resolution (the image was rescaled after calibration) is scaled to the
    image; an uncalibrated one (``fx`` or ``fy`` zero) gives None.
    """
    k = list(info.k)
    if len(k) != 9 or not all(math.isfinite(v) for v in k) or k[0] <= 0.0 or k[4] <= 0.0:
        return None
    sx = width / info.width if info.width else 1.0
    sy = height / info.height if info.height else 1.0
    return (k[0] * sx, k[4] * sy, k[2] * sx, k[5] * sy)


def obstacle_markers(
    obstacles: Sequence[Obstacle],
    header: Header,
    *,
    intrinsics: Intrinsics | None = None,
    camera_height: float = 1.5,
    camera_pitch: float = 0.0,
    marker_scale: float = 0.01,
    tracks: Sequence[Track] | None = None,
    confirmed_only: bool = False,
) -> MarkerArray:
    """Build the ``ood/obstacles`` MarkerArray for one frame.

    Args:
        obstacles: the frame's obstacles (pixel coordinates of the published images).
        header: the input image's header; every marker carries it.
        intrinsics: (fx, fy, cx, cy) at the published image size; None = image-plane markers.
        camera_height: camera height above flat ground, metres.
        camera_pitch: downward pitch of the optical axis, radians.
        marker_scale: metres per pixel for image-plane markers.
        tracks: the obstacles' tracks, in the obstacles' order (``FrameResult.tracks``); None = ids 0..n-1.
        confirmed_only: only the obstacles whose track is confirmed (needs ``tracks``).

    Returns:
        DELETEALL, then per obstacle a box (CUBE on the ground or LINE_STRIP in the image plane) and a
        TEXT_VIEW_FACING label.

    Raises:
        ValueError: ``tracks`` not one per obstacle, or ``confirmed_only`` without ``tracks``.
    """
    if tracks is not None and len(tracks) != len(obstacles):
        raise ValueError(f"need one track per obstacle, got {len(tracks)} tracks for {len(obstacles)} obstacles")
    if confirmed_only and tracks is None:
        raise ValueError("confirmed_only needs the obstacles' tracks")
    array = MarkerArray()
    array.markers.append(Marker(header=header, action=Marker.DELETEALL))
    for index, obstacle in enumerate(obstacles):
        track = tracks[index] if tracks is not None else None
        if confirmed_only and not track.confirmed:
            continue
        marker_id = track.id if track is not None else index
        placed = None
        if intrinsics is not None:
            placed = _ground_box(obstacle, header, marker_id, intrinsics, camera_height, camera_pitch)
        if placed is None:
            placed = _image_plane_box(obstacle, header, marker_id, marker_scale)
        box, label_position, text_height, distance = placed
        if track is None:
            text = f"anomaly {index}: {obstacle.area} px, score {obstacle.mean_score:.2f}"
        else:
            status = "confirmed" if track.confirmed else "tentative"
            text = f"#{track.id} seen {track.seen}/{track.window} ({status}), score {obstacle.mean_score:.2f}"
        if distance is not None:
            text += f", {distance:.1f} m"
        array.markers.append(box)
        array.markers.append(
            _marker(header, LABEL_NAMESPACE, marker_id, Marker.TEXT_VIEW_FACING,
                    pose=Pose(position=label_position, orientation=Quaternion(w=1.0)),
                    scale=Vector3(z=text_height), color=_TEXT_COLOR, text=text)
        )
    return array


def _marker(header: Header, namespace: str, index: int, marker_type: int, **fields: object) -> Marker:
    """An ADD marker of this frame that lives until the next DELETEALL (lifetime 0)."""
    return Marker(header=header, ns=namespace, id=index, type=marker_type, action=Marker.ADD, lifetime=Duration(),
                  **fields)


def _image_plane_box(
    obstacle: Obstacle, header: Header, index: int, scale: float
) -> tuple[Marker, Point, float, None]:
    # Pixel edges, not centres, so a one-pixel component still draws a visible square.
    corners = [(obstacle.x0, obstacle.y0), (obstacle.x1, obstacle.y0), (obstacle.x1, obstacle.y1),
               (obstacle.x0, obstacle.y1), (obstacle.x0, obstacle.y0)]
    box = _marker(header, BOX_NAMESPACE, index, Marker.LINE_STRIP, pose=Pose(orientation=Quaternion(w=1.0)),
                  scale=Vector3(x=_LINE_WIDTH_PX * scale), color=_BOX_COLOR,
                  points=[Point(x=float(u) * scale, y=float(v) * scale, z=0.0) for u, v in corners])
    label = Point(
        x=(obstacle.x0 + obstacle.x1) / 2.0 * scale,
        y=(obstacle.y0 - _TEXT_HEIGHT_PX) * scale,  # above the box: image v grows downwards
        z=0.0,
    )
    return box, label, _TEXT_HEIGHT_PX * scale, None


def _ground_box(
    obstacle: Obstacle, header: Header, index: int, intrinsics: Intrinsics, height: float, pitch: float
) -> tuple[Marker, Point, float, float] | None:
    foot = ground_point(*obstacle.foot, intrinsics, height, pitch)
    if foot is None:
        return None
    fx, fy, _, _ = intrinsics
    depth = foot[2]
    # The component's pixel extent at the foot's depth gives its metric size (an object standing on
    # the road); its extent along the road is unknown, so the cube is as deep as it is wide.
    width = max((obstacle.x1 - obstacle.x0) * depth / fx, 0.05)
    tall = max((obstacle.y1 - obstacle.y0) * depth / fy, 0.05)
    # World "up" in the pitched optical frame (x right, y down, z forward).
    up = (0.0, -math.cos(pitch), -math.sin(pitch))
    centre = [foot[i] + up[i] * tall / 2.0 for i in range(3)]
    top = [foot[i] + up[i] * (tall + _TEXT_HEIGHT_M) for i in range(3)]
    distance = math.sqrt(foot[0] ** 2 + foot[1] ** 2 + foot[2] ** 2)
    if not all(math.isfinite(value) for value in (width, tall, distance, *centre, *top)):
        return None  # absurd intrinsics: the image-plane box is still meaningful
    box = _marker(
        header, BOX_NAMESPACE, index, Marker.CUBE,
        # Rotating about x by the pitch aligns the cube's y axis with world "down".
        pose=Pose(
            position=Point(x=centre[0], y=centre[1], z=centre[2]),
            orientation=Quaternion(x=math.sin(pitch / 2.0), w=math.cos(pitch / 2.0)),
        ),
        scale=Vector3(x=width, y=tall, z=width),
        color=_CUBE_COLOR,
    )
    return box, Point(x=top[0], y=top[1], z=top[2]), _TEXT_HEIGHT_M, distance
