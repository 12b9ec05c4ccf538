# Copyright 2026 The ood_seg_node developers. Licensed under the Apache License, Version 2.0.
"""One module per ``ood_seg`` sub-command, each with ``add_arguments(parser)`` and ``run(args) -> int``."""

from __future__ import annotations

import argparse
from dataclasses import fields
from typing import Any


def add_config_arguments(parser: argparse.ArgumentParser | argparse._ArgumentGroup, config_class: type, *,
                         prefix: str = "", skip: tuple[str, ...] = ()) -> None:
    """One flag per field of an options dataclass, typed and defaulted like the field.

    Field ``x_y`` becomes ``--x-y``, or ``--<prefix>-x-y`` with a prefix (a head's own options carry the
    head's name, ``--obsnet-attack``); the help text and valid choices come from the field's metadata
    (``ood_seg_node.training.common.option``), and a bool field is a ``--flag`` / ``--no-flag`` switch.
    """
    for field in fields(config_class):
        if field.name in skip:
            continue
        dest = _dest(field.name, prefix)
        help_text = f"{field.metadata.get('help', '')} (default: %(default)r)".lstrip()
        if isinstance(field.default, bool):
            kind: dict[str, Any] = {"action": argparse.BooleanOptionalAction}
        else:
            kind = {"type": type(field.default), "choices": field.metadata.get("choices") or None}
        parser.add_argument(f"--{dest.replace('_', '-')}", dest=dest, default=field.default, help=help_text, **kind)


def config_from_args(config_class: type, args: argparse.Namespace, *, prefix: str = "") -> Any:
    """The dataclass filled from the flags :func:`add_config_arguments` declared (same ``prefix``)."""
    return config_class(**{field.name: getattr(args, _dest(field.name, prefix)) for field in fields(config_class)})


def _dest(name: str, prefix: str) -> str:
    return f"{prefix}_{name}" if prefix else name


COMMANDS: dict[str, str] = {
    "demo": "the embedded default end to end: synthetic bag -> real node over DDS -> evaluation report",
    "make-bag": "write a rosbag2 (mcap or sqlite3) from the synthetic world or a benchmark dataset",
    "play": "replay a rosbag2 onto ROS topics without ros2 bag (--clock, --rate, --loop, --remap)",
    "evaluate": "evaluate heads offline on a dataset, a bag, or precomputed score maps",
    "train-segmenter": "train the builtin segmenter on the synthetic world",
    "train-head": "train an OOD head (one with a registered trainer) on the synthetic world",
    "export-scores": "write a head's score maps in the SegmentMeIfYouCan benchmark's layout (hdf5, float16)",
    "export": "write the segmenter and its head(s) as one ONNX graph (ONNX Runtime, TensorRT, Isaac ROS)",
    "validate": "GenVal-style validation on your own frames (shifts, OOD insertions) and a calibration.yaml",
    "bench": "print the performance ratios of the README's performance section",
}
