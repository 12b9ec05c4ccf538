# Copyright 2026 The ood_seg_node developers. Licensed under the Apache License, Version 2.0.
"""The shipped Fast DDS profile and when the node applies it."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from ood_seg_node.ros import dds

NS = {"f": "http://www.eprosima.com"}


def test_shipped_profile_has_a_large_shm_segment_and_udp():
    path = dds.shipped_profile_path()
    assert path is not None and path.name == dds.PROFILE_FILENAME
    root = ET.parse(path).getroot()
    descriptors = root.iterfind(".//f:transport_descriptor", NS)
    transports = {t.findtext("f:transport_id", namespaces=NS): t for t in descriptors}
    kinds = {t.findtext("f:type", namespaces=NS) for t in transports.values()}
    assert kinds == {"SHM", "UDPv4"}
    shm = next(t for t in transports.values() if t.findtext("f:type", namespaces=NS) == "SHM")
    assert int(shm.findtext("f:segment_size", namespaces=NS)) >= 32 * 1024 * 1024
    participant = root.find(".//f:participant", NS)
    assert participant.get("is_default_profile") == "true"
    assert participant.findtext(".//f:useBuiltinTransports", namespaces=NS) == "false"
    used = [e.text for e in participant.iterfind(".//f:userTransports/f:transport_id", NS)]
    assert sorted(used) == sorted(transports)


def test_applied_when_nothing_is_configured(tmp_path):
    environ: dict[str, str] = {}
    note = dds.apply_default_profile(environ, cwd=tmp_path)
    assert environ == {"FASTDDS_DEFAULT_PROFILES_FILE": str(dds.shipped_profile_path())}
    assert str(dds.shipped_profile_path()) in note


@pytest.mark.parametrize(("distro", "variable"), [("humble", "FASTRTPS"), ("jazzy", "FASTRTPS"),
                                                  ("kilted", "FASTDDS"), ("rolling", "FASTDDS")])
def test_the_variable_matches_the_distribution(tmp_path, distro, variable):
    environ = {"ROS_DISTRO": distro, "RMW_IMPLEMENTATION": "rmw_fastrtps_cpp"}
    dds.apply_default_profile(environ, cwd=tmp_path)
    assert set(environ) == {"ROS_DISTRO", "RMW_IMPLEMENTATION", f"{variable}_DEFAULT_PROFILES_FILE"}


@pytest.mark.parametrize("variable", dds.PROFILE_ENV_VARS)
def test_a_user_profile_is_kept(tmp_path, variable):
    environ = {variable: "/etc/my_profile.xml"}
    note = dds.apply_default_profile(environ, cwd=tmp_path)
    assert environ == {variable: "/etc/my_profile.xml"}
    assert "/etc/my_profile.xml" in note and "kept" in note


def test_a_default_profile_in_the_working_directory_is_kept(tmp_path):
    (tmp_path / "DEFAULT_FASTDDS_PROFILES.xml").write_text("<dds/>")
    environ: dict[str, str] = {}
    assert "working directory" in dds.apply_default_profile(environ, cwd=tmp_path)
    assert environ == {}


def test_other_middleware_is_left_alone(tmp_path):
    environ = {"RMW_IMPLEMENTATION": "rmw_cyclonedds_cpp"}
    assert "not applied" in dds.apply_default_profile(environ, cwd=tmp_path)
    assert environ == {"RMW_IMPLEMENTATION": "rmw_cyclonedds_cpp"}


def test_discovery_settings_are_never_touched(tmp_path):
    environ = {"ROS_AUTOMATIC_DISCOVERY_RANGE": "SUBNET", "ROS_DOMAIN_ID": "7"}
    dds.apply_default_profile(environ, cwd=tmp_path)
    assert environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] == "SUBNET" and environ["ROS_DOMAIN_ID"] == "7"


def test_profile_environment_reports_without_modifying(tmp_path):
    environ = {"ROS_DISTRO": "jazzy"}
    assert dds.profile_environment(environ, cwd=tmp_path) == {
        "FASTRTPS_DEFAULT_PROFILES_FILE": str(dds.shipped_profile_path())
    }
    assert environ == {"ROS_DISTRO": "jazzy"}
    assert dds.profile_environment({"FASTDDS_DEFAULT_PROFILES_FILE": "/x.xml"}, cwd=tmp_path) == {}
