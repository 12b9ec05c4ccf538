# Copyright 2026 The ood_seg_node developers. Licensed under the Apache License, Version 2.0.
"""Replay a rosbag2 through ood_seg_node and evaluate it online (``replay.launch.py bag:=<path>``).

Plays the bag with ``/clock`` (the image on ``/camera/image_raw``, ground truth on ``/camera/ood_gt``) through
``ros2 bag play`` or, where rosbag2 is not installed, the package's own ``ood_seg play`` (``player:=``; one log
line says which and why), and runs the node with ``use_sim_time`` and reliable input (no frame lost in
transport; the node still keeps only the newest), the online evaluator ``ood_seg_evaluator`` writing its report
to ``out``, and RViz with ``rviz:=true`` if it is installed. When the bag ends, everything stops ``linger``
seconds later (the evaluator writes ``<out>/metrics.json`` on the way out) unless ``exit_when_done:=false``.
The launch stops when the evaluator exits, and fails (``ros2 launch`` exits 1) when it evaluated nothing.

Arguments: ``bag`` (required), ``out``, ``head`` and the model arguments ``segmenter``,
``segmenter_checkpoint``, ``head_checkpoint``, ``score_resolution``, ``device`` (each empty = the params
file's), ``params_file``, ``image``,
``rate``, ``player`` (auto, ros2bag, ood_seg), ``kind`` (obstacle or anomaly: which SMIYC component metrics),
``linger``, ``exit_when_done``, ``rviz``. Every process gets the large-image Fast DDS profile unless one is
configured.
"""

from __future__ import annotations

import importlib.util
import shutil

from launch import LaunchContext, LaunchDescription
from launch.actions import (
    DeclareLaunchArgument,
    EmitEvent,
    ExecuteProcess,
    LogInfo,
    OpaqueFunction,
    RegisterEventHandler,
    SetEnvironmentVariable,
    TimerAction,
)
from launch.conditions import IfCondition
from launch.event_handlers import OnProcessExit
from launch.events import Shutdown
from launch.events.process import ProcessExited
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue
from launch_ros.substitutions import ExecutableInPackage, FindPackageShare

from ood_seg_node.ros.dds import profile_environment
from ood_seg_node.ros.launch_helpers import MODEL_ARGUMENTS, given_parameters, model_arguments, rviz

PACKAGE = "ood_seg_node"
PLAYERS = ("auto", "ros2bag", "ood_seg")


def _evaluator_exited(event: ProcessExited, context: LaunchContext) -> list:
    """Stop everything with the evaluator; raising is what makes ``ros2 launch`` exit non-zero.

    LaunchService.run returns 1 only when an action or event handler raises (process exit codes are not
    propagated), so a failed evaluation (exit code 1: nothing matched) is turned into an exception here.
    """
    if event.returncode != 0:
        raise RuntimeError(f"ood_seg_evaluator exited with code {event.returncode}: the replay was not evaluated "
                           "(see its log above)")
    return [EmitEvent(event=Shutdown(reason="ood_seg_evaluator finished"))]


def _node_and_evaluator(context: LaunchContext) -> list:
    # Only non-empty head:= and model arguments override the params file (as in ood_seg.launch.py).
    overrides = {"use_sim_time": True, "reliable_input": True, "output_depth": 10}
    overrides.update(given_parameters(context, ("head", *MODEL_ARGUMENTS)))
    head = overrides.get("head", "")
    image = LaunchConfiguration("image")
    evaluator = Node(
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
    )
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
        evaluator,
        RegisterEventHandler(OnProcessExit(target_action=evaluator, on_exit=_evaluator_exited)),
    ]


def _choose_player(requested: str) -> tuple[str, str]:
    """The bag player for ``player:=`` (auto: ``ros2 bag`` when rosbag2 is installed) and why."""
    if requested != "auto":
        return requested, f"player:={requested}"
    missing = [what for what, found in (("the ros2 executable", shutil.which("ros2")),
                                        ("the ros2bag package", importlib.util.find_spec("ros2bag"))) if not found]
    if missing:
        return "ood_seg", f"ros2 bag is not installed ({' and '.join(missing)} not found)"
    return "ros2bag", "ros2 bag is installed"


def _bag_player(context: LaunchContext) -> list:
    player, reason = _choose_player(LaunchConfiguration("player").perform(context))
    if player == "ros2bag":
        name, command = "ros2 bag play", ["ros2", "bag", "play"]
    else:  # the console script: lib/ood_seg_node/ood_seg under colcon
        name, command = "ood_seg play", [ExecutableInPackage(package=PACKAGE, executable="ood_seg"), "play"]
    # The bag path goes before --clock: on Humble (and in ood_seg play) --clock takes an optional rate.
    play = ExecuteProcess(
        cmd=[*command, LaunchConfiguration("bag"), "--clock", "--rate", LaunchConfiguration("rate")],
        name="bag_play",
        output="screen",
    )
    return [
        LogInfo(msg=f"replay.launch.py: playing the bag with {name} ({reason})"),
        play,
        RegisterEventHandler(
            OnProcessExit(
                target_action=play,
                on_exit=[TimerAction(period=LaunchConfiguration("linger"),
                                     actions=[EmitEvent(event=Shutdown(reason="bag finished"))])],
            ),
            condition=IfCondition(LaunchConfiguration("exit_when_done")),
        ),
    ]


def generate_launch_description() -> LaunchDescription:
    """The launch description ``ros2 launch`` runs (see the module docstring for the arguments)."""
    share = FindPackageShare(PACKAGE)
    return LaunchDescription([
        DeclareLaunchArgument("bag", description="rosbag2 to replay (ood_seg make-bag writes one)"),
        DeclareLaunchArgument(
            "out", default_value="ood_seg_replay",
            description="directory the evaluator writes metrics.json and the report to",
        ),
        DeclareLaunchArgument(
            "head", default_value="",
            description="OOD head, a registry name (the node refuses another and lists the valid ones); "
                        "empty = the one in params_file",
        ),
        *model_arguments(),
        DeclareLaunchArgument(
            "params_file", default_value=PathJoinSubstitution([share, "config", "ood_seg.yaml"]),
            description="node parameters (use_sim_time, reliable_input and output_depth 10 are forced)",
        ),
        DeclareLaunchArgument("image", default_value="/camera/image_raw", description="bag image topic"),
        DeclareLaunchArgument("rate", default_value="1.0", description="bag playback rate (slow CPU: 0.25)"),
        DeclareLaunchArgument(
            "player", default_value="auto", choices=list(PLAYERS),
            description="bag player: ros2bag (ros2 bag play), ood_seg (ood_seg play, no rosbag2 needed), "
                        "auto (ros2bag when installed)",
        ),
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
        DeclareLaunchArgument(
            "rviz", default_value="false", description="start RViz (config/ood_seg.rviz) if it is installed"
        ),
        *[SetEnvironmentVariable(name, value) for name, value in profile_environment().items()],
        OpaqueFunction(function=_node_and_evaluator),
        OpaqueFunction(function=_bag_player),
        rviz(True),
    ])
