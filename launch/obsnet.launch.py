# Copyright 2026 The ood_seg_node developers. Licensed under the Apache License, Version 2.0.
"""ood_seg_node with the ObsNet head: ``ros2 launch ood_seg_node obsnet.launch.py image:=<topic>``.

``ood_seg.launch.py`` with ``head:=obsnet`` and parameters from ``config/obsnet.yaml`` (``params_file:=``
replaces it; the head stays ``obsnet``). Arguments: ``params_file``, and those of ``ood_seg.launch.py``:
``image``, ``camera_info``, ``use_sim_time``, ``rviz``, ``temporal_fusion``.
"""

from __future__ import annotations

from pathlib import Path

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, IncludeLaunchDescription
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.substitutions import FindPackageShare

PACKAGE = "ood_seg_node"
# A plain path (the sibling file, in share/ood_seg_node/launch once installed) lets 'ros2 launch --show-args'
# list the included file's arguments too.
OOD_SEG_LAUNCH = str(Path(__file__).with_name("ood_seg.launch.py"))


def generate_launch_description() -> LaunchDescription:
    """The launch description ``ros2 launch`` runs (see the module docstring for the arguments)."""
    return LaunchDescription([
        DeclareLaunchArgument(
            "params_file", default_value=PathJoinSubstitution([FindPackageShare(PACKAGE), "config", "obsnet.yaml"]),
            description="node parameters (the head is forced to obsnet)",
        ),
        IncludeLaunchDescription(
            PythonLaunchDescriptionSource(OOD_SEG_LAUNCH),
            launch_arguments={"head": "obsnet", "params_file": LaunchConfiguration("params_file")}.items(),
        ),
    ])
