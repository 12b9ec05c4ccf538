# Copyright 2026 The ood_seg_node developers. Licensed under the Apache License, Version 2.0.
"""Every import of every module follows the layer table of README's architecture section.

The table is the source of truth: a module belongs to the layer whose ``modules`` cell names it (a file, or
a folder with a trailing slash), and may import its own layer and the layers its last cell names ("every
layer", or a list; "(no torch)" forbids torch there). ROS packages are for the ROS edge alone.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "ood_seg_node"
ROS_PACKAGES = {
    "rclpy", "sensor_msgs", "std_msgs", "visualization_msgs", "diagnostic_msgs", "geometry_msgs", "nav_msgs",
    "builtin_interfaces", "rcl_interfaces", "lifecycle_msgs", "rosgraph_msgs", "launch", "launch_ros",
    "cv_bridge", "ament_index_python",
}
ROS_LAYER = "ROS edge"


def _layer_table() -> dict[str, tuple[list[str], set[str] | None, bool]]:
    """layer -> (module paths, allowed layers (None = every layer), torch allowed)."""
    section = (ROOT / "README.md").read_text().split("<!-- ARCH -->")[1].split("<!-- /ARCH -->")[0]
    table = {}
    for row in section.splitlines():
        if not row.startswith("| ") or row.startswith("| layer"):
            continue
        name, modules, _, allowed = (cell.strip() for cell in row.strip().strip("|").split("|"))
        paths = re.findall(r"`([^`]+)`", modules)
        layers = None if allowed.startswith("every layer") else {
            part.split("(")[0].strip() for part in allowed.split(",") if part.split("(")[0].strip()}
        table[name] = (paths, layers, "no torch" not in allowed)
    return table


TABLE = _layer_table()


def _layer_of(relative: str) -> str | None:
    for name, (paths, _, _) in TABLE.items():
        for path in paths:
            if relative == path or (path.endswith("/") and relative.startswith(path)):
                return name
    return None


def _module_path(dotted: str) -> str | None:
    """``ood_seg_node.heads.base`` -> ``heads/base.py`` (or ``heads/__init__.py``), relative to the package."""
    parts = dotted.split(".")[1:]
    for candidate in (Path(*parts).with_suffix(".py") if parts else None, Path(*parts, "__init__.py")):
        if candidate is not None and (PACKAGE / candidate).is_file():
            return candidate.as_posix()
    return None


def _imports(path: Path) -> list[str]:
    """Absolute module names imported by a file (``from ood_seg_node import bags`` -> ``ood_seg_node.bags``)."""
    names = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.append(node.module)
            if node.module == "ood_seg_node":
                names += [f"ood_seg_node.{alias.name}" for alias in node.names
                          if _module_path(f"ood_seg_node.{alias.name}")]
    return names


MODULES = sorted(p.relative_to(PACKAGE).as_posix() for p in PACKAGE.rglob("*.py"))


def test_the_table_names_layers_that_exist():
    assert ROS_LAYER in TABLE
    for name, (paths, allowed, _) in TABLE.items():
        assert paths, name
        assert allowed is None or allowed <= set(TABLE), (name, allowed - set(TABLE))


@pytest.mark.parametrize("relative", MODULES)
def test_module_imports_follow_the_layer_table(relative):
    layer = _layer_of(relative)
    assert layer is not None, f"{relative} is in no row of README's layer table"
    _, allowed, torch_allowed = TABLE[layer]
    for name in _imports(PACKAGE / relative):
        top = name.split(".")[0]
        if top in ROS_PACKAGES:
            assert layer == ROS_LAYER, f"{relative} ({layer}) imports {name}: ROS belongs in ros/"
        elif top in ("torch", "torchvision"):
            assert torch_allowed, f"{relative} ({layer}) imports {name}"
        elif top == "ood_seg_node":
            target = _module_path(name)
            assert target is not None, f"{relative} imports {name}, which does not exist"
            target_layer = _layer_of(target)
            ok = allowed is None or target_layer == layer or target_layer in allowed
            assert ok, f"{relative} ({layer}) imports {name} ({target_layer}); allowed: {sorted(allowed or [])}"


@pytest.mark.parametrize("module", ["ood_seg_node.ros.evaluator_node", "ood_seg_node.evaluation", "ood_seg_node.bags"])
def test_torch_free_modules_load_without_torch(module):
    """The online evaluator, the metrics and the bag tools start without loading torch."""
    code = f"import sys, {module}; assert 'torch' not in sys.modules, sorted(m for m in sys.modules if 'ood' in m)"
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
