# Copyright 2026 The ood_seg_node developers. Licensed under the Apache License, Version 2.0.
"""The ament_python package builds with colcon and installs what SPEC.md promises under share/ and lib/."""

from __future__ import annotations

import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def test_package_xml_declares_every_run_dependency():
    root = ET.parse(REPO / "package.xml").getroot()
    assert root.get("format") == "3"
    assert root.findtext("name") == "ood_seg_node"
    assert root.find("export/build_type").text == "ament_python"
    depends = {element.text for element in root.iter() if element.tag in ("exec_depend", "depend")}
    for key in ("rclpy", "sensor_msgs", "visualization_msgs", "diagnostic_msgs", "std_msgs", "geometry_msgs",
                "python3-torch", "python3-torchvision", "python3-numpy", "python3-opencv", "launch", "launch_ros",
                "ros2bag"):
        assert key in depends, key


@pytest.mark.slow  # minutes: skip locally with -m 'not slow'; CI runs it
def test_colcon_build_installs_launch_config_weights_and_executables(tmp_path):
    workspace = tmp_path / "ws"
    source = workspace / "src" / "ood_seg_node"
    shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(".venv", ".git", "build", "install", "log",
                                                                   "__pycache__", "*.egg-info", "runs"))
    result = subprocess.run([sys.executable, "-m", "colcon", "build", "--base-paths", "src"], cwd=workspace,
                            capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    share = workspace / "install" / "ood_seg_node" / "share" / "ood_seg_node"
    for launch in ("ood_seg.launch.py", "obsnet.launch.py", "replay.launch.py"):
        assert (share / "launch" / launch).is_file(), launch
    for config in ("ood_seg.yaml", "obsnet.yaml", "ood_seg.rviz", "fastdds_large_images.xml"):
        assert (share / "config" / config).is_file(), config
    assert (share / "weights" / "builtin_segmenter.pt").is_file()
    assert (share / "package.xml").is_file()
    assert (workspace / "install" / "ood_seg_node" / "share" / "ament_index" / "resource_index" / "packages"
            / "ood_seg_node").is_file()
    lib = workspace / "install" / "ood_seg_node" / "lib" / "ood_seg_node"
    for executable in ("ood_seg_node", "ood_seg_evaluator", "ood_seg"):
        assert (lib / executable).is_file(), executable
