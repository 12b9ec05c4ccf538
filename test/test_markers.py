# Copyright 2026 The ood_seg_node developers. Licensed under the Apache License, Version 2.0.
"""ood/obstacles MarkerArray layout: DELETEALL first, image-plane boxes, ground-plane cubes, track ids."""

from __future__ import annotations

import math
import warnings

import pytest
from sensor_msgs.msg import CameraInfo
from std_msgs.msg import Header
from visualization_msgs.msg import Marker

from ood_seg_node.obstacles import Obstacle
from ood_seg_node.ros.markers import (
    BOX_NAMESPACE,
    LABEL_NAMESPACE,
    intrinsics_from_camera_info,
    obstacle_markers,
)
from ood_seg_node.temporal import Track

INTRINSICS = (100.0, 100.0, 80.0, 60.0)  # fx, fy, cx, cy of a 160x120 image


def _header() -> Header:
    header = Header(frame_id="camera")
    header.stamp.sec, header.stamp.nanosec = 5, 6
    return header


def _obstacle(x0: int, y0: int, x1: int, y1: int) -> Obstacle:
    area = (x1 - x0) * (y1 - y0)
    return Obstacle(x0, y0, x1, y1, area, 0.75, 0.9, ((x0 + x1) / 2, (y0 + y1) / 2))


def test_no_obstacles_still_clears_the_previous_frame():
    markers = obstacle_markers([], _header()).markers
    assert len(markers) == 1
    assert markers[0].action == Marker.DELETEALL and markers[0].header == _header()


def test_image_plane_boxes_without_intrinsics():
    obstacles = [_obstacle(10, 20, 30, 50), _obstacle(100, 5, 104, 9)]
    markers = obstacle_markers(obstacles, _header(), marker_scale=0.01).markers
    assert [m.action for m in markers] == [Marker.DELETEALL] + [Marker.ADD] * 4
    assert all(m.header == _header() for m in markers)
    boxes, labels = markers[1::2], markers[2::2]
    assert [(m.ns, m.id, m.type) for m in boxes] == [(BOX_NAMESPACE, 0, Marker.LINE_STRIP),
                                                     (BOX_NAMESPACE, 1, Marker.LINE_STRIP)]
    assert [(m.ns, m.id, m.type) for m in labels] == [(LABEL_NAMESPACE, 0, Marker.TEXT_VIEW_FACING),
                                                      (LABEL_NAMESPACE, 1, Marker.TEXT_VIEW_FACING)]
    corners = [(round(p.x, 6), round(p.y, 6), p.z) for p in boxes[0].points]
    assert corners == [(0.1, 0.2, 0.0), (0.3, 0.2, 0.0), (0.3, 0.5, 0.0), (0.1, 0.5, 0.0), (0.1, 0.2, 0.0)]
    assert boxes[0].scale.x > 0 and boxes[0].color.a > 0
    assert "600 px" in labels[0].text and "0.75" in labels[0].text
    assert labels[0].pose.position.y < 0.2  # above the box (image v grows downwards)
    assert labels[0].scale.z > 0


def test_ground_plane_cube_with_intrinsics():
    # Level camera 1.5 m above the road: row cy + fy * 1.5 / 10 = 75 is road 10 m ahead.
    obstacle = _obstacle(70, 55, 91, 76)  # foot (80, 75): straight ahead
    markers = obstacle_markers([obstacle], _header(), intrinsics=INTRINSICS, camera_height=1.5).markers
    box, label = markers[1], markers[2]
    assert box.type == Marker.CUBE and box.ns == BOX_NAMESPACE
    tall = 21 * 10.0 / 100.0  # 21 px at 10 m with fy = 100
    assert box.pose.position.x == pytest.approx(0.0, abs=1e-9)
    assert box.pose.position.y == pytest.approx(1.5 - tall / 2)  # y is down in the optical frame
    assert box.pose.position.z == pytest.approx(10.0)
    assert (box.scale.x, box.scale.y) == (pytest.approx(21 * 10.0 / 100.0), pytest.approx(tall))
    assert (box.pose.orientation.x, box.pose.orientation.w) == (pytest.approx(0.0), pytest.approx(1.0))
    assert label.pose.position.y < box.pose.position.y - tall / 2  # label above the cube
    assert "10.1 m" in label.text  # distance to the foot point: sqrt(1.5^2 + 10^2)


def test_pitched_camera_places_the_cube_nearer_and_tilts_it():
    obstacle = _obstacle(70, 55, 91, 76)
    pitch = math.radians(5.0)
    level = obstacle_markers([obstacle], _header(), intrinsics=INTRINSICS, camera_height=1.5).markers[1]
    pitched = obstacle_markers(
        [obstacle], _header(), intrinsics=INTRINSICS, camera_height=1.5, camera_pitch=pitch
    ).markers[1]
    assert pitched.pose.position.z < level.pose.position.z
    assert pitched.pose.orientation.x == pytest.approx(math.sin(pitch / 2))
    assert pitched.pose.orientation.w == pytest.approx(math.cos(pitch / 2))


def test_obstacle_above_the_horizon_falls_back_to_the_image_plane():
    sky = _obstacle(10, 5, 20, 15)  # foot row 14 < cy: the ray never meets the road
    markers = obstacle_markers([sky], _header(), intrinsics=INTRINSICS).markers
    assert markers[1].type == Marker.LINE_STRIP
    assert " m" not in markers[2].text.split(",")[-1]


def test_camera_info_intrinsics_scale_to_the_image():
    info = CameraInfo(width=320, height=240, k=[200.0, 0.0, 160.0, 0.0, 220.0, 120.0, 0.0, 0.0, 1.0])
    assert intrinsics_from_camera_info(info, 160, 120) == (100.0, 110.0, 80.0, 60.0)
    assert intrinsics_from_camera_info(info, 320, 240) == (200.0, 220.0, 160.0, 120.0)


def test_uncalibrated_camera_info_gives_no_intrinsics():
    assert intrinsics_from_camera_info(CameraInfo(width=320, height=240), 320, 240) is None


@pytest.mark.parametrize(
    "k",
    [[1e-300, 0.0, 1e300, 0.0, 100.0, 60.0, 0.0, 0.0, 1.0],  # fx tiny, cx huge: -inf * 0 in the ray
     [1e-300, 0.0, 80.0, 0.0, 1e-300, 60.0, 0.0, 0.0, 1.0],  # overflowing ray, finite pose impossible
     [1e300, 0.0, 80.0, 0.0, 1e300, -1e300, 0.0, 0.0, 1.0]],  # a foot "below" the image at 1e300
    ids=["tiny-fx-huge-cx", "tiny-focal", "huge-focal"],
)
def test_extreme_but_finite_camera_info_gives_finite_markers_without_warnings(k):
    info = CameraInfo(width=160, height=120, k=k)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # numpy's overflow / invalid-value warnings fail the test
        intrinsics = intrinsics_from_camera_info(info, 160, 120)
        markers = obstacle_markers([_obstacle(70, 80, 91, 110)], _header(), intrinsics=intrinsics).markers
    values = [v for m in markers[1:] for v in (m.pose.position.x, m.pose.position.y, m.pose.position.z,
                                               m.pose.orientation.x, m.pose.orientation.w,
                                               m.scale.x, m.scale.y, m.scale.z)]
    values += [c for m in markers[1:] for p in m.points for c in (p.x, p.y, p.z)]
    assert all(math.isfinite(v) for v in values)
    assert markers[1].type in (Marker.LINE_STRIP, Marker.CUBE)


def _track(track_id: int, obstacle: Obstacle, seen: int, confirmed: bool) -> Track:
    return Track(track_id, obstacle, age=seen - 1, seen=seen, window=5, seen_total=seen, confirmed=confirmed)


def test_track_ids_name_the_markers_and_labels_show_id_and_confidence():
    obstacles = [_obstacle(10, 20, 30, 50), _obstacle(100, 5, 104, 9)]
    tracks = [_track(7, obstacles[0], 4, True), _track(12, obstacles[1], 1, False)]
    markers = obstacle_markers(obstacles, _header(), tracks=tracks).markers
    assert markers[0].action == Marker.DELETEALL
    assert [(m.ns, m.id) for m in markers[1:]] == [(BOX_NAMESPACE, 7), (LABEL_NAMESPACE, 7),
                                                  (BOX_NAMESPACE, 12), (LABEL_NAMESPACE, 12)]
    assert markers[2].text == "#7 seen 4/5 (confirmed), score 0.75"
    assert markers[4].text == "#12 seen 1/5 (tentative), score 0.75"


def test_track_label_on_the_ground_carries_the_distance():
    obstacle = _obstacle(70, 55, 91, 76)
    markers = obstacle_markers([obstacle], _header(), intrinsics=INTRINSICS, camera_height=1.5,
                               tracks=[_track(3, obstacle, 5, True)]).markers
    assert markers[1].type == Marker.CUBE and markers[1].id == 3
    assert markers[2].text == "#3 seen 5/5 (confirmed), score 0.75, 10.1 m"


def test_confirmed_only_keeps_the_confirmed_tracks_after_deleteall():
    obstacles = [_obstacle(10, 20, 30, 50), _obstacle(100, 5, 104, 9), _obstacle(40, 40, 60, 60)]
    tracks = [_track(1, obstacles[0], 2, False), _track(2, obstacles[1], 3, True), _track(5, obstacles[2], 1, False)]
    markers = obstacle_markers(obstacles, _header(), tracks=tracks, confirmed_only=True).markers
    assert markers[0].action == Marker.DELETEALL
    assert [(m.ns, m.id) for m in markers[1:]] == [(BOX_NAMESPACE, 2), (LABEL_NAMESPACE, 2)]
    assert "#2 " in markers[2].text
    unconfirmed = obstacle_markers(obstacles, _header(), tracks=[_track(9, o, 1, False) for o in obstacles],
                                   confirmed_only=True).markers
    assert [m.action for m in unconfirmed] == [Marker.DELETEALL]


def test_tracks_must_match_the_obstacles():
    obstacles = [_obstacle(10, 20, 30, 50)]
    with pytest.raises(ValueError, match="one track per obstacle"):
        obstacle_markers(obstacles, _header(), tracks=[])
    with pytest.raises(ValueError, match="needs the obstacles' tracks"):
        obstacle_markers(obstacles, _header(), confirmed_only=True)
