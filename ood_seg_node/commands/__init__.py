# Copyright 2026 The ood_seg_node developers. Licensed under the Apache License, Version 2.0.
"""One module per ``ood_seg`` sub-command, each with ``add_arguments(parser)`` and ``run(args) -> int``."""

from __future__ import annotations

import argparse
from dataclasses import fields
from typing import Any


def add_config_arguments(parser: argparse.ArgumentParser, config_class: type, skip: tuple[str, ...] = ()) -> None:
    """One ``--flag`` per field of a training-config dataclass, typed and defaulted like the field."""
    for field in fields(config_class):
        if field.name not in skip:
            parser.add_argument(f"--{field.name.replace('_', '-')}", type=type(field.default),
                                default=field.default, help=f"(default: {field.default!r})")


def config_from_args(config_class: type, args: argparse.Namespace) -> Any:
    """The dataclass filled from the flags :func:`add_config_arguments` declared."""
    return config_class(**{field.name: getattr(args, field.name) for field in fields(config_class)})


COMMANDS: dict[str, str] = {
    "demo": "the embedded default end to end: synthetic bag -> real node over DDS -> evaluation report",
    "make-bag": "write a rosbag2 (mcap or sqlite3) from the synthetic world or a benchmark dataset",
    "play": "replay a rosbag2 onto ROS topics without ros2 bag (--clock, --rate, --loop, --remap)",
    "evaluate": "evaluate heads offline on a dataset, a bag, or precomputed score maps",
    "train-segmenter": "train the builtin segmenter on the synthetic world",
    "train-head": "train an OOD head (obsnet, rpl, nflowjs, dicnet) on the synthetic world",
    "bench": "print the performance ratios of the README's performance section",
}
