# Copyright 2026 The ood_seg_node developers. Licensed under the Apache License, Version 2.0.
"""Launch-file pieces shared by ``launch/*.launch.py``: RViz when ``rviz:=true``, only if it is installed.

``rviz2`` is not a pip package and often missing from ROS base installs; a ``Node(package="rviz2")`` then
fails the whole launch ("package 'rviz2' not found") after the node has already started. ``launch`` and
``launch_ros`` are imported when an action is built, as only ``ros2 launch`` has them; :func:`find_rviz2`
needs neither.
"""

from __future__ import annotations

import shutil
from typing import Any

PACKAGE = "ood_seg_node"
RVIZ_MISSING = "rviz:=true but rviz2 is not installed (no rviz2 package, no rviz2 on PATH); continuing without RViz"


def find_rviz2() -> dict[str, str] | None:
    """How launch_ros can start rviz2 (``Node`` package/executable arguments), or None if it is not installed.

    From the ament index when it knows rviz2, else from ``PATH`` (launch_ros runs an executable without a
    package as a plain command).
    """
    try:
        from ament_index_python.packages import PackageNotFoundError, get_package_prefix

        try:
            get_package_prefix("rviz2")
            return {"package": "rviz2", "executable": "rviz2"}
        except (PackageNotFoundError, OSError):  # OSError: AMENT_PREFIX_PATH unset
            pass
    except ImportError:
        pass
    path = shutil.which("rviz2")
    return {"executable": path} if path else None


def rviz(use_sim_time: Any) -> Any:
    """RViz with ``config/ood_seg.rviz`` when ``rviz:=true``: a log line instead when rviz2 is missing."""
    from launch.actions import OpaqueFunction
    from launch.conditions import IfCondition
    from launch.substitutions import LaunchConfiguration

    return OpaqueFunction(function=_rviz_or_notice, kwargs={"use_sim_time": use_sim_time},
                          condition=IfCondition(LaunchConfiguration("rviz")))


def _rviz_or_notice(context: Any, use_sim_time: Any) -> list[Any]:
    from launch.actions import LogInfo
    from launch.substitutions import PathJoinSubstitution
    from launch_ros.actions import Node
    from launch_ros.substitutions import FindPackageShare

    found = find_rviz2()
    if found is None:
        return [LogInfo(msg=RVIZ_MISSING)]
    return [Node(
        **found,
        name="rviz2",
        arguments=["-d", PathJoinSubstitution([FindPackageShare(PACKAGE), "config", "ood_seg.rviz"])],
        parameters=[{"use_sim_time": use_sim_time}],
    )]
