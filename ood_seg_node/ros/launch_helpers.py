# Copyright 2026 The ood_seg_node developers. Licensed under the Apache License, Version 2.0.
"""Launch-file pieces shared by ``launch/*.launch.py``: the model arguments, and RViz only if it is installed.

The model arguments (``segmenter``, ``segmenter_checkpoint``, ``head_checkpoint``, ``score_resolution``,
``device``) set the node parameter of the same name when given and leave the params file's value otherwise,
so ``ros2 launch ood_seg_node ood_seg.launch.py head:=rpl segmenter:=deeplabv3plus_wrn38
segmenter_checkpoint:=/path/rev3.pth head_checkpoint:=/path/rev3.pth`` runs a published model without a
params file of its own.

``rviz2`` is not a pip package and often missing from ROS base installs; a ``Node(package="rviz2")`` then
fails the whole launch ("package 'rviz2' not found") after the node has already started. ``launch`` and
``launch_ros`` are imported when an action is built, as only ``ros2 launch`` has them; :func:`find_rviz2`
needs neither.
"""

from __future__ import annotations

import shutil
from typing import Any

PACKAGE = "ood_seg_node"
MODEL_ARGUMENTS = {
    "segmenter": "segmenter registry name (builtin, deeplabv3plus_wrn38, segformer, ...)",
    "segmenter_checkpoint": "the segmenter's weights as published (README: Bring your own model)",
    "head_checkpoint": "head weights: a train-head output or the method's published file",
    "score_resolution": "native (cheap) or input (logits upsampled first, the official codes' order)",
    "device": "auto, cpu, cuda or cuda:N",
}
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


def model_arguments() -> list[Any]:
    """``DeclareLaunchArgument`` for each of :data:`MODEL_ARGUMENTS`, empty by default (= the params file's)."""
    from launch.actions import DeclareLaunchArgument

    return [DeclareLaunchArgument(name, default_value="", description=f"{description}; empty = the params file's")
            for name, description in MODEL_ARGUMENTS.items()]


def given_parameters(context: Any, names: Any = tuple(MODEL_ARGUMENTS)) -> dict[str, str]:
    """The launch arguments among ``names`` given a non-empty value: node parameters overriding the file."""
    from launch.substitutions import LaunchConfiguration

    values = {name: LaunchConfiguration(name).perform(context) for name in names}
    return {name: value for name, value in values.items() if value}


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
