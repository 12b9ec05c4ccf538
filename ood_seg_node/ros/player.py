# Copyright 2026 The ood_seg_node developers. Licensed under the Apache License, Version 2.0.
"""Playing a rosbag2 onto ROS topics without ``ros2 bag`` (``ood_seg play``; ``replay.launch.py player:=ood_seg``).

Every topic goes out as recorded (header stamps untouched), paced by log time with the pacing the demo's
replayer uses (:func:`ood_seg_node.ros.replay.paced`), on reliable keep-last 10 publishers: a node with
``reliable_input`` (as in ``replay.launch.py``) loses no frame.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import threading
from typing import Any


def message_class(msgtype: str) -> Any | None:
    """The rclpy message class of ``pkg/msg/Name``, or None when that package is not installed here."""
    module, _, name = msgtype.rpartition("/")
    try:
        return getattr(importlib.import_module(module.replace("/", ".")), name)
    except (ImportError, AttributeError, ValueError):
        return None


def _published_topics(info: Any, args: argparse.Namespace) -> dict[str, tuple[Any, str]]:
    """Bag topic -> (rclpy message class, name it is published on); topics of uninstalled types are skipped."""
    remaps = dict(args.remap)
    unknown = sorted(set(remaps) - set(info.topics))
    if unknown:
        raise ValueError(f"--remap {unknown[0]}: {info.path} has no such topic (it has {', '.join(info.topics)})")
    topics = {}
    for topic, (msgtype, _) in info.topics.items():
        msg_class = message_class(msgtype)
        if msg_class is None:
            print(f"ood_seg play: warning: {topic} skipped: its type {msgtype} is not installed", file=sys.stderr)
        else:
            topics[topic] = (msg_class, remaps.get(topic, topic))
    names = [name for _, name in topics.values()] + (["/clock"] if args.clock else [])
    missing = sorted(set(args.wait_for) - set(names))
    if missing:
        raise ValueError(f"--wait-for {missing[0]}: not a topic this player publishes ({', '.join(names)})")
    return topics


def _play(node: Any, info: Any, topics: dict[str, tuple[Any, str]], args: argparse.Namespace,
          stop: threading.Event) -> int:
    """Publish the bag (again and again with ``--loop``) until it ends or ``stop`` is set; returns the count."""
    from builtin_interfaces.msg import Time
    from rosgraph_msgs.msg import Clock

    from ood_seg_node import bags
    from ood_seg_node.ros.replay import paced, playback_qos

    publishers = {topic: node.create_publisher(msg_class, name, playback_qos())
                  for topic, (msg_class, name) in topics.items()}
    by_name = {name: publishers[topic] for topic, (_, name) in topics.items()}
    if args.clock:
        by_name["/clock"] = node.create_publisher(Clock, "/clock", playback_qos())

    def publish_clock(ns: int) -> None:
        by_name["/clock"].publish(Clock(clock=Time(sec=ns // 10**9, nanosec=ns % 10**9)))

    waited = [by_name[name] for name in args.wait_for]
    while not stop.is_set() and any(publisher.get_subscription_count() == 0 for publisher in waited):
        stop.wait(0.05)
    print(f"ood_seg play: {info.path} at rate {args.rate:g}: "
          + ", ".join(topic if topic == name else f"{topic} -> {name}" for topic, (_, name) in topics.items()),
          flush=True)
    start_ns = info.start_ns + round(args.start_offset * 1e9)
    store = bags.typestore()
    played = 0
    while not stop.is_set():
        # the reader behind read_bag, with its one-line errors for missing or corrupt bags
        timeline = (entry for entry in bags.iter_messages(info.path, publishers) if entry[2] >= start_ns)
        before = played
        for topic, msgtype, _, message in paced(timeline, lambda entry: entry[2], rate=args.rate, stop=stop,
                                                clock=publish_clock if args.clock else None, clock_hz=args.clock):
            publishers[topic].publish(bytes(store.serialize_cdr(message, msgtype)))
            played += 1
        if not args.loop or played == before:
            break
    return played


def play_bag(args: argparse.Namespace, stop: threading.Event) -> int:
    """Play ``args.bag`` as the ``ood_seg play`` options say until it ends or ``stop`` is set.

    Returns:
        The number of messages played.

    Raises:
        ood_seg_node.bags.BagError: a missing or corrupt bag. ValueError: a ``--remap`` or ``--wait-for``
            that names no topic of the bag.
    """
    from ood_seg_node.bags import bag_info
    from ood_seg_node.ros.dds import apply_default_profile
    from ood_seg_node.ros.replay import RosParticipant

    info = bag_info(args.bag)
    topics = _published_topics(info, args)
    apply_default_profile()  # before the participant exists: large images reach other processes whole
    with RosParticipant("ood_seg_play") as ros:
        return _play(ros.node, info, topics, args, stop)
