# Copyright 2026 The ood_seg_node developers. Licensed under the Apache License, Version 2.0.
"""ood_seg_node on a live camera: ``ros2 launch ood_seg_node ood_seg.launch.py head:=<name>``.

Arguments: ``head`` and the model arguments ``segmenter``, ``segmenter_checkpoint``, ``head_checkpoint``,
``score_resolution``, ``device``, and ``temporal_fusion`` (each empty = the params file's), ``params_file``
(default ``config/ood_seg.yaml``), ``image`` / ``camera_info`` (input topics, remapped), ``use_sim_time``,
``rviz`` (start RViz with ``config/ood_seg.rviz``; without rviz2 installed, one log line and the rest runs).
Every process gets the large-image Fast DDS profile unless one is configured.
"""

from __future__ import annotations

from launch import LaunchContext, LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction, SetEnvironmentVariable
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue
from launch_ros.substitutions import FindPackageShare

from ood_seg_node.ros.dds import profile_environment
from ood_seg_node.ros.launch_helpers import MODEL_ARGUMENTS, given_parameters, model_arguments, rviz

PACKAGE = "ood_seg_node"


def _node(context: LaunchContext) -> list[Node]:
    # Only non-empty head:=, model and temporal_fusion:= arguments override the params file
    # (params_file:=config/rpl.yaml alone runs RPL).
    overrides = {"use_sim_time": ParameterValue(LaunchConfiguration("use_sim_time"), value_type=bool)}
    overrides.update(given_parameters(context, ("head", *MODEL_ARGUMENTS, "temporal_fusion")))
    image = LaunchConfiguration("image")
    return [
        Node(
            package=PACKAGE,
            executable="ood_seg_node",
            name="ood_seg_node",
            output="screen",
            emulate_tty=True,
            parameters=[LaunchConfiguration("params_file"), overrides],
            remappings=[
                ("image", image),
                ("image/compressed", [image, "/compressed"]),
                ("camera_info", LaunchConfiguration("camera_info")),
            ],
        )
    ]


def generate_launch_description() -> LaunchDescription:
    """The launch description ``ros2 launch`` runs (see the module docstring for the arguments)."""
    share = FindPackageShare(PACKAGE)
    use_sim_time = ParameterValue(LaunchConfiguration("use_sim_time"), value_type=bool)
    return LaunchDescription([
        DeclareLaunchArgument(
            "head", default_value="",
            description="OOD head, a registry name (the node refuses another and lists the valid ones); "
                        "empty = the one in params_file",
        ),
        *model_arguments(),
        DeclareLaunchArgument(
            "temporal_fusion", default_value="",
            description="none, flow or ground (ground also needs odometry_topic in params_file); "
                        "empty = the one in params_file",
        ),
        DeclareLaunchArgument(
            "params_file", default_value=PathJoinSubstitution([share, "config", "ood_seg.yaml"]),
            description="node parameters (YAML with an ood_seg_node: ros__parameters: section)",
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
        DeclareLaunchArgument(
            "rviz", default_value="false", description="start RViz (config/ood_seg.rviz) if it is installed"
        ),
        *[SetEnvironmentVariable(name, value) for name, value in profile_environment().items()],
        OpaqueFunction(function=_node),
        rviz(use_sim_time),
    ])
