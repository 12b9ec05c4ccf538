# Copyright 2026 The ood_seg_node developers. Licensed under the Apache License, Version 2.0.
"""The odometry pose buffer: interpolation at an image stamp, the edges of the buffer, bad messages."""

from __future__ import annotations

import math

import numpy as np
import pytest
from nav_msgs.msg import Odometry

from ood_seg_node.camera import mount_pose, pose_matrix, rotation_quaternion
from ood_seg_node.ros.odometry import PoseBuffer, interpolate_pose, odometry_pose, slerp


def _yaw_pose(x: float, y: float, yaw: float) -> np.ndarray:
    return pose_matrix((x, y, 0.0), (0.0, 0.0, math.sin(yaw / 2), math.cos(yaw / 2)))


def _yaw_of(pose: np.ndarray) -> float:
    return math.atan2(pose[1, 0], pose[0, 0])


def test_interpolation_is_exact_at_the_ends_and_halfway():
    a, b = _yaw_pose(0.0, 0.0, 0.0), _yaw_pose(2.0, -4.0, math.radians(60.0))
    buffer = PoseBuffer()
    buffer.add(10.0, a)
    buffer.add(10.2, b)
    np.testing.assert_allclose(buffer.lookup(10.0), a, atol=1e-12)
    np.testing.assert_allclose(buffer.lookup(10.2), b, atol=1e-12)
    halfway = buffer.lookup(10.1)
    np.testing.assert_allclose(halfway[:3, 3], [1.0, -2.0, 0.0], atol=1e-9)
    assert _yaw_of(halfway) == pytest.approx(math.radians(30.0), abs=1e-9)  # slerp: half the rotation angle
    np.testing.assert_allclose(halfway[:3, :3] @ halfway[:3, :3].T, np.eye(3), atol=1e-9)
    quarter = buffer.lookup(10.05)
    np.testing.assert_allclose(quarter[:3, 3], [0.5, -1.0, 0.0], atol=1e-9)
    assert _yaw_of(quarter) == pytest.approx(math.radians(15.0), abs=1e-9)


def test_stamps_outside_the_buffer_give_none_beyond_the_tolerance():
    buffer = PoseBuffer(tolerance_s=0.05)
    assert buffer.lookup(1.0) is None  # empty
    a, b = _yaw_pose(0.0, 0.0, 0.0), _yaw_pose(1.0, 0.0, 0.0)
    buffer.add(1.0, a)
    buffer.add(1.1, b)
    assert buffer.lookup(0.9) is None
    assert buffer.lookup(1.3) is None
    assert buffer.lookup(math.nan) is None
    np.testing.assert_allclose(buffer.lookup(1.13), b)  # odometry lagging the camera by 30 ms: the newest pose
    np.testing.assert_allclose(buffer.lookup(0.97), a)


def test_no_interpolation_across_a_gap_in_the_odometry():
    buffer = PoseBuffer(max_interval_s=0.5)
    buffer.add(0.0, _yaw_pose(0.0, 0.0, 0.0))
    buffer.add(1.0, _yaw_pose(8.0, 0.0, 0.0))
    assert buffer.lookup(0.5) is None


def test_buffer_keeps_a_bounded_recent_history_and_restarts_when_time_goes_back():
    buffer = PoseBuffer(max_messages=5, span_s=2.0)
    for i in range(10):
        buffer.add(i * 0.1, _yaw_pose(i, 0.0, 0.0))
    assert len(buffer) == 5 and buffer.span() == (pytest.approx(0.5), pytest.approx(0.9))
    buffer.add(0.75, _yaw_pose(7.5, 0.0, 0.0))  # out of order but recent: sorted in
    assert buffer.lookup(0.75)[0, 3] == pytest.approx(7.5)
    buffer.add(100.0, _yaw_pose(0.0, 0.0, 0.0))  # 2 s span: everything older goes
    assert buffer.span() == (100.0, 100.0)
    buffer.add(3.0, _yaw_pose(1.0, 0.0, 0.0))  # a bag replayed from its start
    assert buffer.span() == (3.0, 3.0)
    assert buffer.lookup(100.0) is None


def test_non_finite_odometry_is_rejected_and_the_buffer_unchanged():
    buffer = PoseBuffer()
    buffer.add(1.0, np.eye(4))
    msg = Odometry()
    msg.header.stamp.sec = 2
    msg.pose.pose.position.x = math.nan
    with pytest.raises(ValueError, match="invalid pose"):
        odometry_pose(msg)
    msg.pose.pose.position.x = 0.0
    msg.pose.pose.orientation.w = 0.0  # a zero quaternion
    with pytest.raises(ValueError, match="invalid pose"):
        odometry_pose(msg)
    bad = np.eye(4)
    bad[0, 3] = math.inf
    with pytest.raises(ValueError, match="finite"):
        buffer.add(2.0, bad)
    with pytest.raises(ValueError, match="finite"):
        buffer.add(math.nan, np.eye(4))
    assert len(buffer) == 1


def test_odometry_message_gives_its_stamp_and_pose():
    msg = Odometry()
    msg.header.stamp.sec, msg.header.stamp.nanosec = 12, 500_000_000
    msg.pose.pose.position.x, msg.pose.pose.position.y = 3.0, -1.0
    msg.pose.pose.orientation.z, msg.pose.pose.orientation.w = math.sin(0.25), math.cos(0.25)
    stamp, pose = odometry_pose(msg)
    assert stamp == pytest.approx(12.5)
    np.testing.assert_allclose(pose, _yaw_pose(3.0, -1.0, 0.5), atol=1e-12)


@pytest.mark.parametrize("quaternion", [(0.0, 0.0, 0.0, 1.0), (1.0, 0.0, 0.0, 0.0), (0.0, 1.0, 0.0, 0.0),
                                        (0.0, 0.0, 1.0, 0.0), (0.3, -0.5, 0.1, 0.8), (-0.6, 0.2, 0.7, 0.1)])
def test_rotation_quaternion_inverts_pose_matrix(quaternion):
    pose = pose_matrix((0.0, 0.0, 0.0), quaternion)
    back = pose_matrix((0.0, 0.0, 0.0), tuple(rotation_quaternion(pose[:3, :3])))
    np.testing.assert_allclose(back, pose, atol=1e-12)


def test_slerp_takes_the_shorter_arc_and_camera_poses_interpolate():
    q = np.array([0.0, 0.0, math.sin(0.1), math.cos(0.1)])
    np.testing.assert_allclose(abs(slerp(q, -q, 0.5) @ q), 1.0, atol=1e-12)  # the same rotation both ends
    base_a, base_b = _yaw_pose(0.0, 0.0, 0.0), _yaw_pose(1.0, 0.0, 0.0)
    mount = mount_pose(1.5, 0.05)
    camera = interpolate_pose(base_a, base_b, 0.5) @ mount
    np.testing.assert_allclose(camera[:3, 3], [0.5, 0.0, 1.5], atol=1e-12)
