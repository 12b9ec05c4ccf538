# Copyright 2026 The ood_seg_node developers. Licensed under the Apache License, Version 2.0.
"""Make large images work out of the box on Fast DDS, the default ROS 2 middleware.

Fast DDS's builtin shared-memory transport has a 512 KB segment per participant; the fragments of one
1024x2048 camera frame (6 MB) do not fit, so such frames are silently lost between processes on one
host. The package ships ``config/fastdds_large_images.xml`` (a 32 MB segment plus UDPv4) and the node
points Fast DDS at it before ``rclpy.init`` unless the user already chose a profile. Discovery settings
(``ROS_AUTOMATIC_DISCOVERY_RANGE``, ``ROS_DOMAIN_ID``) are never touched: on a vehicle the node must
keep talking to other hosts.

No rclpy import: this runs before the middleware is loaded, and is testable on its own.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping, MutableMapping

PROFILE_FILENAME = "fastdds_large_images.xml"

# Fast DDS 3.x (Kilted and later) reads FASTDDS_*, Fast DDS 2.x (Humble, Iron, Jazzy) only FASTRTPS_*,
# and Kilted's rmw warns that FASTRTPS_* is deprecated: so exactly the one the distribution reads is set.
PROFILE_ENV_VARS = ("FASTDDS_DEFAULT_PROFILES_FILE", "FASTRTPS_DEFAULT_PROFILES_FILE")
_FASTDDS2_DISTROS = ("humble", "iron", "jazzy")
# Files Fast DDS loads from the working directory on its own when no variable is set.
_CWD_DEFAULT_FILES = ("DEFAULT_FASTDDS_PROFILES.xml", "DEFAULT_FASTRTPS_PROFILES.xml")
_FASTDDS_RMWS = ("", "rmw_fastrtps_cpp", "rmw_fastrtps_dynamic_cpp")


def profile_env_var(environ: Mapping[str, str] | None = None) -> str:
    """The profile variable this distribution's Fast DDS reads (by ``ROS_DISTRO``; the newest when unset)."""
    environ = os.environ if environ is None else environ
    distro = environ.get("ROS_DISTRO", "").lower()
    return PROFILE_ENV_VARS[1] if distro in _FASTDDS2_DISTROS else PROFILE_ENV_VARS[0]


def shipped_profile_path() -> Path | None:
    """The shipped profile: under ``share/ood_seg_node/config`` (colcon), else the Python package's copy."""
    try:
        from ament_index_python.packages import PackageNotFoundError, get_package_share_directory

        try:
            shared = Path(get_package_share_directory("ood_seg_node")) / "config" / PROFILE_FILENAME
            if shared.is_file():
                return shared
        except (PackageNotFoundError, OSError):  # OSError: AMENT_PREFIX_PATH unset (pip install)
            pass
    except ImportError:
        pass
    local = Path(__file__).resolve().parents[1] / "config" / PROFILE_FILENAME
    return local if local.is_file() else None


def apply_default_profile(environ: MutableMapping[str, str] | None = None, cwd: Path | None = None) -> str:
    """Point Fast DDS at the shipped profile unless the user configured the middleware otherwise.

    Must run before ``rclpy.init`` (Fast DDS reads the variable when the participant is created).
    Sets :func:`profile_env_var` when neither profile variable is set, the RMW is Fast DDS
    (``RMW_IMPLEMENTATION`` unset or ``rmw_fastrtps_*``) and no default profile file sits in ``cwd``.

    Args:
        environ: the environment to read and modify (``os.environ`` by default).
        cwd: the working directory Fast DDS will look in (the current one by default).

    Returns:
        One line saying which profile is in use and why, for the node's log.
    """
    environ = os.environ if environ is None else environ
    rmw = environ.get("RMW_IMPLEMENTATION", "")
    if rmw not in _FASTDDS_RMWS:
        return f"RMW_IMPLEMENTATION={rmw}: Fast DDS large-image profile not applied"
    for name in PROFILE_ENV_VARS:
        if environ.get(name):
            return f"Fast DDS profile from {name}={environ[name]} (user setting kept)"
    directory = Path.cwd() if cwd is None else cwd
    for name in _CWD_DEFAULT_FILES:
        if (directory / name).is_file():
            return f"Fast DDS profile {directory / name} from the working directory (user setting kept)"
    profile = shipped_profile_path()
    if profile is None:
        return f"shipped Fast DDS profile {PROFILE_FILENAME} not found: images over ~512 KB may be lost"
    environ[profile_env_var(environ)] = str(profile)
    return f"Fast DDS profile {profile} (32 MB shared-memory segment for large images)"


def profile_environment(environ: Mapping[str, str] | None = None, cwd: Path | None = None) -> dict[str, str]:
    """The variables :func:`apply_default_profile` would set, without setting them.

    Launch files pass these to every process they start (``ros2 bag play``, RViz, ...) so that a large
    image crosses between all of them, not only out of the node.
    """
    probe = dict(os.environ if environ is None else environ)
    before = dict(probe)
    apply_default_profile(probe, cwd)
    return {name: value for name, value in probe.items() if before.get(name) != value}
