# Copyright 2026 The ood_seg_node developers. Licensed under the Apache License, Version 2.0.
"""``ood_seg make-bag``: turn the synthetic world or a benchmark dataset into a rosbag2 to replay.

Examples::

    ood_seg make-bag --dataset synthetic --seed 3 --frames 200 --out runs/synthetic_bag
    ood_seg make-bag --dataset lostandfound:/data/LostAndFound --subset no-known --out runs/laf_bag
    ood_seg make-bag --dataset smiyc-obstacle:/data/dataset_ObstacleTrack --storage sqlite3 --out runs/ot
"""

from __future__ import annotations

import argparse

from ood_seg_node.commands.dataset_options import add_dataset_arguments, open_from_args


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the command's options."""
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = (
        "dataset formats: synthetic, lostandfound:<root>, fishyscapes:<root>, roadanomaly:<root>, "
        "smiyc-anomaly:<root>, smiyc-obstacle:<root>\n"
        "topics: /camera/image_raw (rgb8), /camera/ood_gt (mono8 0/1/255), /camera/semantic (mono8, "
        "synthetic only), /camera/camera_info (when intrinsics are known)"
    )
    add_dataset_arguments(parser, required=True)
    parser.add_argument("--out", required=True, metavar="BAG", help="bag folder to create")
    parser.add_argument("--storage", choices=("mcap", "sqlite3"), default="mcap",
                        help="rosbag2 storage plugin (default: %(default)s)")
    parser.add_argument("--rate", type=float, default=10.0, metavar="HZ",
                        help="frame rate of the stamps, i.e. playback rate (default: %(default)s)")
    parser.add_argument("--frame-id", default="camera", help="header frame_id (default: %(default)s)")
    parser.add_argument("--compress", action="store_true",
                        help="zstd-compress the MCAP chunks (mcap only; ros2 bag play reads them as is)")
    parser.add_argument("--camera-info", default=None, metavar="FX,FY,CX,CY",
                        help="pinhole intrinsics for /camera/camera_info (overrides the synthetic camera)")
    parser.add_argument("--start-ns", type=int, default=None,
                        help="stamp of the first frame in ns since the epoch (default: a fixed 2023 date)")
    parser.add_argument("--overwrite", action="store_true", help="replace BAG if it is an existing bag")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    """Open the dataset, write the bag, print a one-line summary."""
    import logging

    from ood_seg_node import bags

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    camera = bags.Intrinsics.parse(args.camera_info) if args.camera_info is not None else None
    dataset, frames, total = open_from_args(args)
    if camera is None:
        camera = getattr(dataset, "camera", None)
    summary = bags.write_bag(
        args.out,
        frames(),
        storage=args.storage,
        rate_hz=args.rate,
        frame_id=args.frame_id,
        camera=camera,
        start_ns=bags.DEFAULT_START_NS if args.start_ns is None else args.start_ns,
        progress=not args.no_progress,
        total=total,
        kind=dataset.kind,
        source=args.dataset,
        label_space=dataset.label_space,
        overwrite=args.overwrite,
        compress=args.compress,
    )
    print(f"make-bag: wrote {summary}")
    return 0
