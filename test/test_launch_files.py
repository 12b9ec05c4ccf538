# Copyright 2026 The ood_seg_node developers. Licensed under the Apache License, Version 2.0.
"""Launch files, parameter YAMLs and the RViz config, checked without a ROS launch installation.

``launch`` / ``launch_ros`` are not pip-installable, so the launch files are checked twice: statically
(syntax, declared arguments, every LaunchConfiguration declared, executables and config files that
exist) and by running ``generate_launch_description`` against recording stand-ins of the launch API,
which exercises the files' own logic (head override, remappings, the bag player and its command line,
RViz only when installed, obsnet.launch.py including ood_seg.launch.py, the evaluator's exit code).
"""

from __future__ import annotations

import ast
import importlib.util
import math
import shutil
import sys
import types
from dataclasses import fields
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml

from ood_seg_node.ros import dds, launch_helpers
from ood_seg_node.ros.launch_helpers import MODEL_ARGUMENTS
from ood_seg_node.ros.node_config import NodeConfig, check_config

ROOT = Path(__file__).resolve().parents[1]
LAUNCH = ROOT / "launch"
REQUIRED_ARGUMENTS = {  # SPEC.md plus what the README documents
    "ood_seg.launch.py": {"head", "params_file", "image", "camera_info", "use_sim_time", "rviz"},
    "obsnet.launch.py": {"params_file", "image", "camera_info", "use_sim_time", "rviz"},
    "replay.launch.py": {"bag", "out", "head", "params_file", "image", "rate", "player", "rviz"},
}
HELPERS = ROOT / "ood_seg_node" / "ros" / "launch_helpers.py"  # the RViz action every launch file shares


def _tree(name: str) -> ast.Module:
    return ast.parse((LAUNCH / name).read_text(), filename=name)


def _included(tree: ast.Module) -> list[str]:
    """The launch files a launch file includes (named by a string constant)."""
    return [n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and str(n.value).endswith(".launch.py")]


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


def _declared(name: str) -> set[str]:
    """Arguments a launch file declares, with those of the files it includes (which --show-args lists)."""
    tree = _tree(name)
    own = {_first_string(c, "name") for c in _calls(tree, "DeclareLaunchArgument")}
    if _calls(tree, "model_arguments"):
        own |= set(MODEL_ARGUMENTS)
    return own.union(*(_declared(included) for included in _included(tree)))


@pytest.mark.parametrize("name", sorted(REQUIRED_ARGUMENTS))
def test_launch_file_declares_its_arguments(name):
    tree = _tree(name)
    functions = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
    assert "generate_launch_description" in functions
    declared = _declared(name)
    assert REQUIRED_ARGUMENTS[name] <= declared, REQUIRED_ARGUMENTS[name] - declared
    used = {_first_string(c, "variable_name") for c in _calls(tree, "LaunchConfiguration")}
    assert used <= declared, f"LaunchConfiguration without DeclareLaunchArgument: {used - declared}"
    for included in _included(tree):
        assert (LAUNCH / included).is_file(), included


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
    for call in [*_calls(tree, "Node"), *_calls(tree, "ExecutableInPackage")]:
        keywords = {kw.arg: kw.value for kw in call.keywords}
        assert _constant(keywords["package"], tree) == "ood_seg_node"
        executable = _constant(keywords["executable"], tree)
        assert executable in scripts, f"{executable} is not a console script in setup.py"
        module, _, function = scripts[executable].partition(":")
        source = (ROOT / (module.replace(".", "/") + ".py")).read_text()
        assert f"def {function}(" in source


@pytest.mark.parametrize("path", [*sorted(LAUNCH.glob("*.launch.py")), HELPERS], ids=lambda p: p.name)
def test_referenced_config_files_exist(path):
    constants = [n.value for n in ast.walk(ast.parse(path.read_text())) if isinstance(n, ast.Constant)]
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


def _launch_stubs(configurations: dict[str, str]) -> dict[str, types.ModuleType]:
    class LaunchConfiguration(_Recorded):
        def perform(self, context: Any) -> str:
            return configurations.get(self.args[0], "")

    def classes(*names: str) -> dict[str, type]:
        return {name: type(name, (_Recorded,), {}) for name in names}

    contents = {
        "launch": classes("LaunchDescription", "LaunchContext"),
        "launch.actions": classes("DeclareLaunchArgument", "EmitEvent", "ExecuteProcess", "IncludeLaunchDescription",
                                  "LogInfo", "OpaqueFunction", "RegisterEventHandler", "SetEnvironmentVariable",
                                  "TimerAction"),
        "launch.conditions": classes("IfCondition"),
        "launch.event_handlers": classes("OnProcessExit"),
        "launch.events": classes("Shutdown"),
        "launch.events.process": classes("ProcessExited"),
        "launch.launch_description_sources": classes("PythonLaunchDescriptionSource"),
        "launch.substitutions": {
            "LaunchConfiguration": LaunchConfiguration, **classes("PathJoinSubstitution")
        },
        "launch_ros": {},
        "launch_ros.actions": classes("Node"),
        "launch_ros.parameter_descriptions": classes("ParameterValue"),
        "launch_ros.substitutions": classes("ExecutableInPackage", "FindPackageShare"),
    }
    modules = {}
    for name, attributes in contents.items():
        module = types.ModuleType(name)
        module.__dict__.update(attributes)
        modules[name] = module
    return modules


def _perform(value: Any) -> Any:
    return value.perform(None) if type(value).__name__ == "LaunchConfiguration" else value


def _expand(entities: list[_Recorded], configurations: dict[str, str]) -> list[_Recorded]:
    """Actions in launch order, as the launch system visits them: argument defaults applied, conditions
    evaluated (as IfCondition does), OpaqueFunctions called and included files expanded in place."""
    actions = []
    for action in entities:
        condition = action.kwargs.get("condition")
        if condition is not None and _perform(condition.args[0]).lower() not in ("true", "1"):
            continue
        kind = type(action).__name__
        actions.append(action)
        if kind == "DeclareLaunchArgument" and isinstance(action.kwargs.get("default_value"), str):
            configurations.setdefault(action.args[0], action.kwargs["default_value"])
        elif kind == "OpaqueFunction":
            function, args, kwargs = (action.kwargs.get(k) for k in ("function", "args", "kwargs"))
            actions.extend(_expand(function(object(), *(args or ()), **(kwargs or {})), configurations))
        elif kind == "IncludeLaunchDescription":
            for name, value in action.kwargs["launch_arguments"]:
                configurations[name] = _perform(value)
            actions.extend(_expand(_description(Path(action.args[0].args[0])), configurations))
    return actions


def _description(path: Path) -> list[_Recorded]:
    spec = importlib.util.spec_from_file_location(f"launch_file_{path.name.split('.')[0]}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.generate_launch_description().args[0]


def _run_launch_file(name: str, values: dict[str, str], monkeypatch) -> list[_Recorded]:
    """generate_launch_description() with stand-ins, expanded as by :func:`_expand`. Returns all actions."""
    configurations = dict(values)
    for module_name, module in _launch_stubs(configurations).items():
        monkeypatch.setitem(sys.modules, module_name, module)
    return _expand(_description(LAUNCH / name), configurations)


def _of(actions: list[_Recorded], kind: str) -> list[_Recorded]:
    return [a for a in actions if type(a).__name__ == kind]


def _nodes(actions: list[_Recorded], executable: str) -> list[_Recorded]:
    return [a for a in actions if type(a).__name__ == "Node" and a.kwargs["executable"] == executable]


def _names(value: Any) -> Any:
    """LaunchConfiguration('x') -> '$x', ExecutableInPackage -> 'package/executable', recursively."""
    if type(value).__name__ == "LaunchConfiguration":
        return f"${value.args[0]}"
    if type(value).__name__ == "ExecutableInPackage":
        return f"{value.kwargs['package']}/{value.kwargs['executable']}"
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


@pytest.mark.parametrize("name", ["ood_seg.launch.py", "replay.launch.py"])
def test_model_arguments_set_node_parameters_only_when_given(monkeypatch, name):
    given = {"segmenter": "deeplabv3plus_wrn38", "segmenter_checkpoint": "/w/rev3.pth",
             "head_checkpoint": "/w/rev3.pth", "score_resolution": "input"}
    for values, expected in ((given, given), ({}, {})):
        actions = _run_launch_file(name, {"head": "rpl", "bag": "b", **values}, monkeypatch)
        (node,) = _nodes(actions, "ood_seg_node")
        overrides = node.kwargs["parameters"][1]
        assert {k: v for k, v in overrides.items() if k in MODEL_ARGUMENTS} == expected
        assert overrides["head"] == "rpl"
    assert MODEL_ARGUMENTS.keys() <= _declared(name)


@pytest.mark.parametrize("name", sorted(REQUIRED_ARGUMENTS))
def test_input_topics_are_remapped(monkeypatch, name):
    (node,) = _nodes(_run_launch_file(name, {"bag": "b"}, monkeypatch), "ood_seg_node")
    remaps = dict(_names(node.kwargs["remappings"]))
    assert remaps["image"] == "$image"
    assert remaps["image/compressed"] == ["$image", "/compressed"]
    assert "camera_info" in remaps


def test_obsnet_launch_includes_ood_seg_launch_with_the_obsnet_head(monkeypatch):
    actions = _run_launch_file("obsnet.launch.py", {}, monkeypatch)
    (include,) = _of(actions, "IncludeLaunchDescription")
    assert Path(include.args[0].args[0]) == LAUNCH / "ood_seg.launch.py"
    arguments = {name: _names(value) for name, value in include.kwargs["launch_arguments"]}
    assert arguments == {"head": "obsnet", "params_file": "$params_file"}
    assert not list(_calls(_tree("obsnet.launch.py"), "Node"))  # no copy of ood_seg.launch.py's node block
    (node,) = _nodes(actions, "ood_seg_node")
    assert node.kwargs["parameters"][1]["head"] == "obsnet"


def _fake_tools(monkeypatch, *, ros2: bool, ros2bag: bool) -> None:
    """Whether the ros2 executable and the rosbag2 ros2bag package are installed, as the launch file sees it."""
    real_which, real_find_spec = shutil.which, importlib.util.find_spec

    def which(name: str, *args: Any, **kwargs: Any) -> str | None:
        if name == "ros2":
            return "/opt/ros/kilted/bin/ros2" if ros2 else None
        return real_which(name, *args, **kwargs)

    def find_spec(name: str, *args: Any) -> Any:
        if name == "ros2bag":
            return object() if ros2bag else None
        return real_find_spec(name, *args)

    monkeypatch.setattr(shutil, "which", which)
    monkeypatch.setattr(importlib.util, "find_spec", find_spec)


@pytest.mark.parametrize(("player", "ros2", "ros2bag", "expected", "why"), [
    ("auto", True, True, "ros2bag", "ros2 bag is installed"),
    ("auto", False, True, "ood_seg", "the ros2 executable not found"),
    ("auto", True, False, "ood_seg", "the ros2bag package not found"),
    ("ros2bag", False, False, "ros2bag", "player:=ros2bag"),
    ("ood_seg", True, True, "ood_seg", "player:=ood_seg"),
    (None, False, False, "ood_seg", "ros2 bag is not installed"),  # the default is auto
])
def test_replay_chooses_the_bag_player_and_says_why(monkeypatch, player, ros2, ros2bag, expected, why):
    _fake_tools(monkeypatch, ros2=ros2, ros2bag=ros2bag)
    values = {"bag": "b"} if player is None else {"bag": "b", "player": player}
    actions = _run_launch_file("replay.launch.py", values, monkeypatch)
    (play,) = _of(actions, "ExecuteProcess")
    command = _names(play.kwargs["cmd"])
    head = ["ros2", "bag", "play"] if expected == "ros2bag" else ["ood_seg_node/ood_seg", "play"]
    assert command == [*head, "$bag", "--clock", "--rate", "$rate"]
    (log,) = _of(actions, "LogInfo")
    label = "ros2 bag play" if expected == "ros2bag" else "ood_seg play"
    assert f"with {label} (" in log.kwargs["msg"] and why in log.kwargs["msg"]
    (declared,) = [a for a in _of(actions, "DeclareLaunchArgument") if a.args[0] == "player"]
    assert declared.kwargs["default_value"] == "auto"
    assert list(declared.kwargs["choices"]) == ["auto", "ros2bag", "ood_seg"]


def test_replay_runs_node_and_evaluator_and_stops_when_the_bag_ends(monkeypatch):
    actions = _run_launch_file("replay.launch.py", {"bag": "b"}, monkeypatch)
    (play,) = _of(actions, "ExecuteProcess")
    (node,) = _nodes(actions, "ood_seg_node")
    assert node.kwargs["parameters"][1]["use_sim_time"] is True
    assert node.kwargs["parameters"][1]["reliable_input"] is True
    (evaluator,) = _nodes(actions, "ood_seg_evaluator")
    evaluator_params = evaluator.kwargs["parameters"][0]
    assert evaluator_params["use_sim_time"] is True
    assert _names(evaluator_params["out_dir"].args[0]) == "$out"
    handlers = {h.args[0].kwargs["target_action"]: h for h in _of(actions, "RegisterEventHandler")}
    assert set(handlers) == {play, evaluator}
    assert _names(handlers[play].kwargs["condition"].args[0]) == "$exit_when_done"
    (linger,) = handlers[play].args[0].kwargs["on_exit"]
    assert _names(linger.kwargs["period"]) == "$linger"
    kept = _of(_run_launch_file("replay.launch.py", {"bag": "b", "exit_when_done": "false"}, monkeypatch),
               "RegisterEventHandler")
    assert [h.args[0].kwargs["target_action"].kwargs["executable"] for h in kept] == ["ood_seg_evaluator"]


def test_replay_fails_when_the_evaluator_evaluated_nothing(monkeypatch):
    actions = _run_launch_file("replay.launch.py", {"bag": "b"}, monkeypatch)
    (evaluator,) = _nodes(actions, "ood_seg_evaluator")
    (handler,) = [h.args[0] for h in _of(actions, "RegisterEventHandler")
                  if h.args[0].kwargs["target_action"] is evaluator]
    on_exit = handler.kwargs["on_exit"]
    # LaunchService.run returns 1 when an event handler raises: that is how 'ros2 launch' fails
    with pytest.raises(RuntimeError, match="ood_seg_evaluator exited with code 1"):
        on_exit(types.SimpleNamespace(returncode=1), object())
    (shutdown,) = on_exit(types.SimpleNamespace(returncode=0), object())
    assert type(shutdown).__name__ == "EmitEvent" and type(shutdown.kwargs["event"]).__name__ == "Shutdown"


@pytest.mark.parametrize("name", sorted(REQUIRED_ARGUMENTS))
def test_rviz_without_rviz2_is_one_log_line_and_the_rest_runs(monkeypatch, name):
    monkeypatch.setattr(launch_helpers, "find_rviz2", lambda: None)
    actions = _run_launch_file(name, {"bag": "b", "rviz": "true"}, monkeypatch)
    assert not _nodes(actions, "rviz2")
    assert [a.kwargs["msg"] for a in _of(actions, "LogInfo")].count(launch_helpers.RVIZ_MISSING) == 1
    assert _nodes(actions, "ood_seg_node")


@pytest.mark.parametrize("name", sorted(REQUIRED_ARGUMENTS))
@pytest.mark.parametrize("found", [{"package": "rviz2", "executable": "rviz2"}, {"executable": "/usr/bin/rviz2"}])
def test_rviz_starts_with_the_shipped_config_when_installed(monkeypatch, name, found):
    monkeypatch.setattr(launch_helpers, "find_rviz2", lambda: found)
    (rviz,) = _nodes(_run_launch_file(name, {"bag": "b", "rviz": "true"}, monkeypatch), found["executable"])
    assert {k: v for k, v in rviz.kwargs.items() if k in ("package", "executable")} == found
    flag, config = rviz.kwargs["arguments"]
    assert flag == "-d" and config.args[0][1:] == ["config", "ood_seg.rviz"]
    assert "use_sim_time" in rviz.kwargs["parameters"][0]
    for off in ({"bag": "b", "rviz": "false"}, {"bag": "b"}):  # rviz defaults to false
        assert not _nodes(_run_launch_file(name, off, monkeypatch), found["executable"])


def test_find_rviz2_by_ament_index_then_path(monkeypatch, tmp_path):
    monkeypatch.delenv("AMENT_PREFIX_PATH", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    assert launch_helpers.find_rviz2() is None
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "rviz2").write_text("#!/bin/sh\n")
    (tmp_path / "bin" / "rviz2").chmod(0o755)
    assert launch_helpers.find_rviz2() == {"executable": str(tmp_path / "bin" / "rviz2")}
    index = tmp_path / "prefix" / "share" / "ament_index" / "resource_index" / "packages"
    index.mkdir(parents=True)
    (index / "rviz2").write_text("")
    monkeypatch.setenv("AMENT_PREFIX_PATH", str(tmp_path / "prefix"))
    assert launch_helpers.find_rviz2() == {"package": "rviz2", "executable": "rviz2"}


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


def test_config_accepts_checkpoint_folders_and_pairs_and_refuses_bad_deployment_values(tmp_path):
    """segformer takes a folder, pspnet_resnet50dilated a folder or 'encoder,decoder': neither is refused."""
    from ood_seg_node.ros.node_config import ConfigError

    (tmp_path / "encoder.pth").write_bytes(b"x")
    (tmp_path / "decoder.pth").write_bytes(b"x")
    for checkpoint in (str(tmp_path), f"{tmp_path / 'encoder.pth'},{tmp_path / 'decoder.pth'}"):
        check_config(NodeConfig(segmenter="pspnet_resnet50dilated", segmenter_checkpoint=checkpoint))
    refused = {
        "segmenter_checkpoint": ({"segmenter_checkpoint": f"{tmp_path / 'encoder.pth'},{tmp_path / 'nope'}"},
                                 "an existing file or folder"),
        "backend": ({"backend": "tensorrt"}, "torch, onnxruntime"),
        "fp16": ({"fp16": True}, "false unless backend is onnxruntime"),
        "warmup_size": ({"warmup_size": "720"}, "empty or HxW"),
    }
    for name, (values, valid) in refused.items():
        with pytest.raises(ConfigError, match=f"invalid {name} .*; valid: {valid}"):
            check_config(NodeConfig(**values))
