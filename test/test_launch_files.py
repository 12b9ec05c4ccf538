# Copyright 2026 The ood_seg_node developers. Licensed under the Apache License, Version 2.0.
"""Launch files, parameter YAMLs and the RViz config, checked without a ROS launch installation.

``launch`` / ``launch_ros`` are not pip-installable, so the launch files are checked twice: statically
(syntax, declared arguments, every LaunchConfiguration declared, executables and config files that
exist) and by running ``generate_launch_description`` against recording stand-ins of the launch API,
which exercises the files' own logic (head override, remappings, the bag command line).
"""

from __future__ import annotations

import ast
import importlib.util
import math
import sys
import types
from dataclasses import fields
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml

from ood_seg_node import dds
from ood_seg_node.node import NodeConfig, check_config

ROOT = Path(__file__).resolve().parents[1]
LAUNCH = ROOT / "launch"
REQUIRED_ARGUMENTS = {  # SPEC.md plus what the README documents
    "ood_seg.launch.py": {"head", "params_file", "image", "camera_info", "use_sim_time", "rviz"},
    "obsnet.launch.py": {"params_file", "image", "camera_info", "use_sim_time", "rviz"},
    "replay.launch.py": {"bag", "out", "head", "params_file", "image", "rate", "rviz"},
}


def _tree(name: str) -> ast.Module:
    return ast.parse((LAUNCH / name).read_text(), filename=name)


def _calls(tree: ast.AST, function: str) -> Iterator[ast.Call]:
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            callee = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            if callee == function:
                yield node


def _first_string(call: ast.Call, keyword: str) -> str | None:
    if call.args and isinstance(call.args[0], ast.Constant) and isinstance(call.args[0].value, str):
        return call.args[0].value
    for kw in call.keywords:
        if kw.arg == keyword and isinstance(kw.value, ast.Constant):
            return kw.value.value
    return None


def _console_scripts() -> dict[str, str]:
    scripts = {}
    for node in ast.walk(ast.parse((ROOT / "setup.py").read_text())):
        text = node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else ""
        if "=" in text and ":" in text:
            name, _, target = text.partition("=")
            scripts[name.strip()] = target.strip()
    return scripts


def test_every_launch_file_is_checked():
    assert sorted(p.name for p in LAUNCH.glob("*.launch.py")) == sorted(REQUIRED_ARGUMENTS)


@pytest.mark.parametrize("name", sorted(REQUIRED_ARGUMENTS))
def test_launch_file_declares_its_arguments(name):
    tree = _tree(name)
    functions = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
    assert "generate_launch_description" in functions
    declared = {_first_string(c, "name") for c in _calls(tree, "DeclareLaunchArgument")}
    assert REQUIRED_ARGUMENTS[name] <= declared, REQUIRED_ARGUMENTS[name] - declared
    used = {_first_string(c, "variable_name") for c in _calls(tree, "LaunchConfiguration")}
    assert used <= declared, f"LaunchConfiguration without DeclareLaunchArgument: {used - declared}"


def _constant(node: ast.expr, tree: ast.Module) -> Any:
    """A literal, or a module-level NAME = literal."""
    if isinstance(node, ast.Name):
        for statement in tree.body:
            targets = [getattr(t, "id", "") for t in getattr(statement, "targets", [])]
            if isinstance(statement, ast.Assign) and node.id in targets:
                return ast.literal_eval(statement.value)
    return ast.literal_eval(node)


@pytest.mark.parametrize("name", sorted(REQUIRED_ARGUMENTS))
def test_launched_executables_exist(name):
    scripts = _console_scripts()
    tree = _tree(name)
    for call in _calls(tree, "Node"):
        keywords = {kw.arg: kw.value for kw in call.keywords}
        package = _constant(keywords["package"], tree)
        executable = _constant(keywords["executable"], tree)
        if package == "ood_seg_node":
            assert executable in scripts, f"{executable} is not a console script in setup.py"
            module, _, function = scripts[executable].partition(":")
            source = (ROOT / (module.replace(".", "/") + ".py")).read_text()
            assert f"def {function}(" in source
        else:
            assert (package, executable) == ("rviz2", "rviz2")


@pytest.mark.parametrize("name", sorted(REQUIRED_ARGUMENTS))
def test_referenced_config_files_exist(name):
    constants = [n.value for n in ast.walk(_tree(name)) if isinstance(n, ast.Constant)]
    strings = [c for c in constants if isinstance(c, str)]
    referenced = [s for s in strings if s.endswith((".yaml", ".rviz", ".xml"))]
    assert referenced
    for file_name in referenced:
        assert (ROOT / "config" / file_name).is_file(), file_name


def test_setup_installs_launch_and_config_files():
    setup = (ROOT / "setup.py").read_text()
    for pattern in ('"launch/*.launch.py"', '"config/*.yaml"', '"config/*.rviz"', '"config/*.xml"'):
        assert pattern in setup, pattern
    # The profile also travels inside the Python package (pip installs, and the node's fallback).
    assert (ROOT / "ood_seg_node" / "config" / "fastdds_large_images.xml").is_file()
    assert '"config/*.xml"' in setup.split("package_data", 1)[1].split("\n", 1)[0]


def _node_parameters(path: Path) -> dict[str, Any]:
    document = yaml.safe_load(path.read_text())
    return document["ood_seg_node"]["ros__parameters"]


@pytest.mark.parametrize("path", sorted((ROOT / "config").glob("*.yaml")), ids=lambda p: p.name)
def test_parameter_files_are_valid_for_the_node(path):
    params = _node_parameters(path)
    defaults = {f.name: f.default for f in fields(NodeConfig)}
    unknown = set(params) - set(defaults) - {"use_sim_time"}
    assert not unknown, f"unknown parameters {unknown}"
    for key, value in params.items():
        if key in defaults:  # rclpy refuses a type change, e.g. threshold: 1 for a double
            expected = type(defaults[key])
            assert type(value) is expected, f"{key}: {value!r} is not a {expected.__name__}"
    check_config(NodeConfig(**{k: v for k, v in params.items() if k in defaults}))


def test_default_parameter_file_lists_every_parameter_with_its_default():
    params = _node_parameters(ROOT / "config" / "ood_seg.yaml")
    for field in fields(NodeConfig):
        value = params[field.name]
        assert value == field.default or (math.isnan(value) and math.isnan(field.default)), field.name


def test_obsnet_parameter_file_selects_obsnet():
    assert _node_parameters(ROOT / "config" / "obsnet.yaml")["head"] == "obsnet"


def test_rviz_config_shows_every_output():
    config = yaml.safe_load((ROOT / "config" / "ood_seg.rviz").read_text())
    manager = config["Visualization Manager"]
    assert manager["Global Options"]["Fixed Frame"] == "camera"
    displays = {d["Topic"]["Value"]: d["Class"] for d in manager["Displays"] if "Topic" in d}
    assert displays == {
        "/camera/image_raw": "rviz_default_plugins/Image",
        "/ood/overlay": "rviz_default_plugins/Image",
        "/ood/anomaly_mask": "rviz_default_plugins/Image",
        "/ood/labels_color": "rviz_default_plugins/Image",
        "/ood/obstacles": "rviz_default_plugins/MarkerArray",
    }


# -- running the launch files against recording stand-ins of the launch API ----------------------------


class _Recorded:
    """Stands in for any launch class: remembers how it was constructed."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.args, self.kwargs = args, kwargs

    def __repr__(self) -> str:
        return f"{type(self).__name__}{self.args}"


def _launch_stubs(values: dict[str, str]) -> dict[str, types.ModuleType]:
    class LaunchConfiguration(_Recorded):
        def perform(self, context: Any) -> str:
            return values.get(self.args[0], "")

    def classes(*names: str) -> dict[str, type]:
        return {name: type(name, (_Recorded,), {}) for name in names}

    contents = {
        "launch": classes("LaunchDescription", "LaunchContext"),
        "launch.actions": classes("DeclareLaunchArgument", "EmitEvent", "ExecuteProcess", "OpaqueFunction",
                                  "RegisterEventHandler", "SetEnvironmentVariable", "TimerAction"),
        "launch.conditions": classes("IfCondition"),
        "launch.event_handlers": classes("OnProcessExit"),
        "launch.events": classes("Shutdown"),
        "launch.substitutions": {
            "LaunchConfiguration": LaunchConfiguration, **classes("PathJoinSubstitution")
        },
        "launch_ros": {},
        "launch_ros.actions": classes("Node"),
        "launch_ros.parameter_descriptions": classes("ParameterValue"),
        "launch_ros.substitutions": classes("FindPackageShare"),
    }
    modules = {}
    for name, attributes in contents.items():
        module = types.ModuleType(name)
        module.__dict__.update(attributes)
        modules[name] = module
    return modules


def _run_launch_file(name: str, values: dict[str, str], monkeypatch) -> list[_Recorded]:
    """generate_launch_description() with stand-ins; OpaqueFunctions are expanded. Returns all actions."""
    for module_name, module in _launch_stubs(values).items():
        monkeypatch.setitem(sys.modules, module_name, module)
    spec = importlib.util.spec_from_file_location(f"launch_file_{name.split('.')[0]}", LAUNCH / name)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    description = module.generate_launch_description()
    actions = []
    for action in description.args[0]:
        if type(action).__name__ == "OpaqueFunction":
            actions.extend(action.kwargs["function"](object()))
        else:
            actions.append(action)
    return actions


def _nodes(actions: list[_Recorded], executable: str) -> list[_Recorded]:
    return [a for a in actions if type(a).__name__ == "Node" and a.kwargs["executable"] == executable]


def _names(value: Any) -> Any:
    """LaunchConfiguration('x') -> '$x', recursively, to compare substitution lists."""
    if type(value).__name__ == "LaunchConfiguration":
        return f"${value.args[0]}"
    if isinstance(value, (list, tuple)):
        return type(value)(_names(v) for v in value)
    return value


@pytest.mark.parametrize("name", ["ood_seg.launch.py", "replay.launch.py"])
@pytest.mark.parametrize("head", ["", "rpl"])
def test_head_argument_overrides_the_params_file_only_when_given(monkeypatch, name, head):
    actions = _run_launch_file(name, {"head": head, "bag": "b"}, monkeypatch)
    (node,) = _nodes(actions, "ood_seg_node")
    params_file, overrides = node.kwargs["parameters"]
    assert _names(params_file) == "$params_file"
    assert overrides.get("head") == (head or None)


@pytest.mark.parametrize("name", sorted(REQUIRED_ARGUMENTS))
def test_input_topics_are_remapped(monkeypatch, name):
    (node,) = _nodes(_run_launch_file(name, {"bag": "b"}, monkeypatch), "ood_seg_node")
    remaps = dict(_names(node.kwargs["remappings"]))
    assert remaps["image"] == "$image"
    assert remaps["image/compressed"] == ["$image", "/compressed"]
    assert "camera_info" in remaps


def test_obsnet_launch_forces_the_obsnet_head(monkeypatch):
    (node,) = _nodes(_run_launch_file("obsnet.launch.py", {}, monkeypatch), "ood_seg_node")
    assert node.kwargs["parameters"][1]["head"] == "obsnet"


def test_replay_plays_the_bag_with_clock_and_runs_node_evaluator_rviz(monkeypatch):
    actions = _run_launch_file("replay.launch.py", {"bag": "b"}, monkeypatch)
    (play,) = [a for a in actions if type(a).__name__ == "ExecuteProcess"]
    command = _names(play.kwargs["cmd"])
    assert command[:4] == ["ros2", "bag", "play", "$bag"] and "--clock" in command
    (node,) = _nodes(actions, "ood_seg_node")
    assert node.kwargs["parameters"][1]["use_sim_time"] is True
    assert node.kwargs["parameters"][1]["reliable_input"] is True
    (evaluator,) = _nodes(actions, "ood_seg_evaluator")
    evaluator_params = evaluator.kwargs["parameters"][0]
    assert evaluator_params["use_sim_time"] is True
    assert _names(evaluator_params["out_dir"].args[0]) == "$out"
    (rviz,) = _nodes(actions, "rviz2")
    assert _names(rviz.kwargs["condition"].args[0]) == "$rviz"
    handlers = [a for a in actions if type(a).__name__ == "RegisterEventHandler"]
    assert handlers and handlers[0].args[0].kwargs["target_action"] is play


@pytest.mark.parametrize("name", sorted(REQUIRED_ARGUMENTS))
def test_launch_passes_the_large_image_profile_to_every_process(monkeypatch, name):
    monkeypatch.delenv("FASTDDS_DEFAULT_PROFILES_FILE", raising=False)
    monkeypatch.delenv("FASTRTPS_DEFAULT_PROFILES_FILE", raising=False)
    monkeypatch.delenv("RMW_IMPLEMENTATION", raising=False)
    actions = _run_launch_file(name, {"bag": "b"}, monkeypatch)
    set_env = [a for a in actions if type(a).__name__ == "SetEnvironmentVariable"]
    profile = dds.shipped_profile_path()  # the installed share/ copy under colcon, else the package's own
    assert profile is not None and profile.name == "fastdds_large_images.xml"
    assert [a.args[1] for a in set_env] == [str(profile)]
    first_process = min(i for i, a in enumerate(actions) if type(a).__name__ in ("Node", "ExecuteProcess"))
    assert all(actions.index(a) < first_process for a in set_env)
