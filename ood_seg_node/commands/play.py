# Copyright 2026 The ood_seg_node developers. Licensed under the Apache License, Version 2.0.
"""``ood_seg play BAG``: replay a rosbag2 onto ROS topics where ``ros2 bag`` is missing (every pip install).

Every topic goes out as recorded (the bag's serialized bytes, so header stamps are untouched), paced by log
time like ``ros2 bag play`` with the pacing the demo's replayer uses (:func:`ood_seg_node.ros.replay.paced`),
on reliable keep-last 10 publishers: a node with ``reliable_input`` (as in ``replay.launch.py``, which runs
this player when ``ros2 bag`` is not installed) loses no frame. Ctrl-C / SIGTERM stop it with exit code 0.
"""

from __future__ import annotations

import argparse
import signal
import threading

from ood_seg_node.ros.replay import DEFAULT_CLOCK_HZ


def _positive(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text} is not a positive number")
    return value


def _seconds(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"{text} is not a number of seconds >= 0")
    return value


def _remap(text: str) -> tuple[str, str]:
    source, separator, target = text.partition(":=")
    if not (separator and source and target):
        raise argparse.ArgumentTypeError(f"{text!r} is not FROM:=TO")
    return source, target


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("bag", help="rosbag2 folder (mcap or sqlite3), e.g. from 'ood_seg make-bag'")
    parser.add_argument("--rate", type=_positive, default=1.0, help="playback speed factor (default: %(default)s)")
    parser.add_argument("--clock", type=_positive, nargs="?", const=DEFAULT_CLOCK_HZ, default=0.0, metavar="HZ",
                        help="publish /clock (rosgraph_msgs/Clock) in bag time, HZ times a second (default "
                             f"{DEFAULT_CLOCK_HZ:g}), for nodes with use_sim_time; put it after BAG")
    parser.add_argument("--loop", action="store_true", help="play the bag again and again until stopped")
    parser.add_argument("--start-offset", type=_seconds, default=0.0, metavar="SECONDS",
                        help="start this many seconds into the bag (every loop; default: %(default)s)")
    parser.add_argument("--remap", type=_remap, action="append", default=[], metavar="FROM:=TO",
                        help="publish the bag's topic FROM on TO (repeatable)")
    parser.add_argument("--wait-for", action="append", default=[], metavar="TOPIC",
                        help="before playing, wait until TOPIC (as published, after --remap) has a subscriber "
                             "(repeatable)")


def run(args: argparse.Namespace) -> int:
    from ood_seg_node.ros.player import play_bag

    stop = threading.Event()
    handlers = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        played = play_bag(args, stop)
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
    print(f"ood_seg play: {played} messages played{' (stopped)' if stop.is_set() else ''}", flush=True)
    return 0
