# Copyright 2026 The ood_seg_node developers. Licensed under the Apache License, Version 2.0.
"""ood_seg_node with the ObsNet head: ``ros2 launch ood_seg_node obsnet.launch.py image:=<topic>``.

Parameters come from ``config/obsnet.yaml`` (``params_file:=`` replaces it; the head stays ``obsnet``).
Arguments: ``params_file``, ``image``, ``camera_info``, ``use_sim_time``, ``rviz``.
"""

from __future__ import annotations

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, SetEnvironmentVariable
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue
from launch_ros.substitutions import FindPackageShare

from ood_seg_node.dds import profile_environment

PACKAGE = "ood_seg_node"


def generate_launch_description() -> LaunchDescription:
    """The launch description ``ros2 launch`` runs (see the module docstring for the arguments)."""
    share = FindPackageShare(PACKAGE)
    image = LaunchConfiguration("image")
    use_sim_time = ParameterValue(LaunchConfiguration("use_sim_time"), value_type=bool)
    return LaunchDescription([
        DeclareLaunchArgument(
            "params_file", default_value=PathJoinSubstitution([share, "config", "obsnet.yaml"]),
            description="node parameters (the head is forced to obsnet)",
        ),
        DeclareLaunchArgument(
            "image", default_value="/camera/image_raw",
            description="input image topic (its /compressed sibling with compressed_input)",
        ),
        DeclareLaunchArgument(
            "camera_info", default_value="/camera/camera_info",
            description="CameraInfo topic; places obstacle markers on the ground plane",
        ),
        DeclareLaunchArgument("use_sim_time", default_value="false", description="use /clock (bag replay)"),
        DeclareLaunchArgument("rviz", default_value="false", description="start RViz (config/ood_seg.rviz)"),
        *[SetEnvironmentVariable(name, value) for name, value in profile_environment().items()],
        Node(
            package=PACKAGE,
            executable="ood_seg_node",
            name="ood_seg_node",
            output="screen",
            emulate_tty=True,
            parameters=[
                LaunchConfiguration("params_file"), {"head": "obsnet", "use_sim_time": use_sim_time}
            ],
            remappings=[
                ("image", image),
                ("image/compressed", [image, "/compressed"]),
                ("camera_info", LaunchConfiguration("camera_info")),
            ],
        ),
        Node(
            package="rviz2",
            executable="rviz2",
            name="rviz2",
            arguments=["-d", PathJoinSubstitution([share, "config", "ood_seg.rviz"])],
            parameters=[{"use_sim_time": use_sim_time}],
            condition=IfCondition(LaunchConfiguration("rviz")),
        ),
    ])
