# Copyright 2026 The ood_seg_node developers. Licensed under the Apache License, Version 2.0.
"""Replay a rosbag2 through ood_seg_node and evaluate it online (``replay.launch.py bag:=<path>``).

Starts ``ros2 bag play <bag> --clock`` (the image on ``/camera/image_raw``, ground truth on
``/camera/ood_gt``), the node with ``use_sim_time`` and reliable input (no frame lost in transport; the node
still keeps only the newest), the online evaluator ``ood_seg_evaluator`` writing its report to ``out``,
and RViz with ``rviz:=true``. When the bag ends, everything stops ``linger`` seconds later (the evaluator
writes ``<out>/metrics.json`` on the way out) unless ``exit_when_done:=false``.

Arguments: ``bag`` (required), ``out``, ``head`` (empty = the params file's), ``params_file``, ``image``,
``rate``, ``kind`` (obstacle or anomaly: which SMIYC component metrics), ``linger``, ``exit_when_done``,
``rviz``. Every process gets the large-image Fast DDS profile unless one is configured.
"""

from __future__ import annotations

from launch import LaunchContext, LaunchDescription
from launch.actions import (
    DeclareLaunchArgument,
    EmitEvent,
    ExecuteProcess,
    OpaqueFunction,
    RegisterEventHandler,
    SetEnvironmentVariable,
    TimerAction,
)
from launch.conditions import IfCondition
from launch.event_handlers import OnProcessExit
from launch.events import Shutdown
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue
from launch_ros.substitutions import FindPackageShare

from ood_seg_node.dds import profile_environment

PACKAGE = "ood_seg_node"


def _node_and_evaluator(context: LaunchContext) -> list[Node]:
    # Only a non-empty head:= overrides the params file (as in ood_seg.launch.py).
    overrides = {"use_sim_time": True, "reliable_input": True}
    head = LaunchConfiguration("head").perform(context)
    if head:
        overrides["head"] = head
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
                ("camera_info", "/camera/camera_info"),
            ],
        ),
        Node(
            package=PACKAGE,
            executable="ood_seg_evaluator",
            name="ood_seg_evaluator",
            output="screen",
            emulate_tty=True,
            parameters=[{
                "use_sim_time": True,
                "out_dir": ParameterValue(LaunchConfiguration("out"), value_type=str),
                "head": head or "online",
                "kind": ParameterValue(LaunchConfiguration("kind"), value_type=str),
            }],
            # The component pass runs on shutdown; give it time before launch escalates to SIGTERM.
            sigterm_timeout="600",
        ),
    ]


def generate_launch_description() -> LaunchDescription:
    """The launch description ``ros2 launch`` runs (see the module docstring for the arguments)."""
    share = FindPackageShare(PACKAGE)
    bag_play = ExecuteProcess(
        # The bag path goes before --clock: on Humble --clock takes an optional rate and would swallow it.
        cmd=["ros2", "bag", "play", LaunchConfiguration("bag"),
             "--clock", "--rate", LaunchConfiguration("rate")],
        name="bag_play",
        output="screen",
    )
    return LaunchDescription([
        DeclareLaunchArgument("bag", description="rosbag2 to replay (ood_seg make-bag writes one)"),
        DeclareLaunchArgument(
            "out", default_value="ood_seg_replay",
            description="directory the evaluator writes metrics.json and the report to",
        ),
        DeclareLaunchArgument(
            "head", default_value="",
            description="OOD head (msp, maxlogit, energy, entropy, obsnet, rpl, nflowjs, dicnet); "
                        "empty = the one in params_file",
        ),
        DeclareLaunchArgument(
            "params_file", default_value=PathJoinSubstitution([share, "config", "ood_seg.yaml"]),
            description="node parameters (use_sim_time and reliable_input are forced on)",
        ),
        DeclareLaunchArgument("image", default_value="/camera/image_raw", description="bag image topic"),
        DeclareLaunchArgument("rate", default_value="1.0", description="bag playback rate (slow CPU: 0.25)"),
        DeclareLaunchArgument(
            "kind", default_value="obstacle", description="component metrics for obstacle or anomaly track"
        ),
        DeclareLaunchArgument(
            "linger", default_value="5.0", description="seconds between the end of the bag and shutdown"
        ),
        DeclareLaunchArgument(
            "exit_when_done", default_value="true",
            description="stop everything (and write the report) when the bag ends",
        ),
        DeclareLaunchArgument("rviz", default_value="false", description="start RViz (config/ood_seg.rviz)"),
        *[SetEnvironmentVariable(name, value) for name, value in profile_environment().items()],
        OpaqueFunction(function=_node_and_evaluator),
        bag_play,
        RegisterEventHandler(
            OnProcessExit(
                target_action=bag_play,
                on_exit=[TimerAction(period=LaunchConfiguration("linger"),
                                     actions=[EmitEvent(event=Shutdown(reason="bag finished"))])],
            ),
            condition=IfCondition(LaunchConfiguration("exit_when_done")),
        ),
        Node(
            package="rviz2",
            executable="rviz2",
            name="rviz2",
            arguments=["-d", PathJoinSubstitution([share, "config", "ood_seg.rviz"])],
            parameters=[{"use_sim_time": True}],
            condition=IfCondition(LaunchConfiguration("rviz")),
        ),
    ])
