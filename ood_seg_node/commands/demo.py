# Copyright 2026 The ood_seg_node developers. Licensed under the Apache License, Version 2.0.
"""``ood_seg demo``: the embedded default end to end, with nothing downloaded.

1. writes a held-out synthetic Lost&Found-style sequence as a rosbag2 (mcap);
2. for every head that can run on the builtin segmenter, starts the real ``ood_seg_node`` process and replays
   the bag's images through it over Fast DDS on this host, paced like ``ros2 bag play``;
3. pairs the published ``ood/anomaly_score`` maps with the bag's ground truth by header stamp, evaluates them
   (AP, FPR95, AUROC, SMIYC component metrics, inlier mIoU from ``ood/labels``), prints a table and writes a
   report folder: metrics.json, metrics.csv, PR/ROC curves, overlays of a few frames per head.
"""

from __future__ import annotations

import argparse
import time


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ood_seg_node.training import HELD_OUT_SEED_START

    parser.add_argument("--out", default="ood_seg_demo", help="report folder (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=HELD_OUT_SEED_START,
                        help="synthetic world seed, held out from training (default: %(default)s)")
    parser.add_argument("--frames", type=int, default=40, help="frames in the sequence (default: %(default)s)")
    parser.add_argument("--height", type=int, default=256, help="image height (default: %(default)s)")
    parser.add_argument("--width", type=int, default=512, help="image width (default: %(default)s)")
    parser.add_argument("--rate", type=float, default=5.0, help="replay rate in Hz (default: %(default)s)")
    parser.add_argument("--head", action="append", default=[],
                        help="heads to run (default: every head with weights for the builtin segmenter)")
    parser.add_argument("--overlays", type=int, default=3, help="overlay pictures per head (default 3)")
    parser.add_argument("--temporal-fusion", choices=("none", "flow", "ground"), default="none",
                        help="the node's temporal_fusion; ground reads the bag's /odom and camera info, replayed "
                             "with the images (default: %(default)s)")


def _heads(requested: list[str]) -> tuple[list[str], list[str]]:
    from ood_seg_node.benchmarks import available_heads
    from ood_seg_node.segmenters import build_segmenter

    built, skipped = available_heads(build_segmenter("builtin"))
    names = [head.name for head in built]
    if requested:
        unknown = [name for name in requested if name not in names]
        if unknown:
            raise ValueError(f"head(s) {', '.join(unknown)} cannot run here; available: {', '.join(names)}")
        names = requested
    return names, skipped


def run(args: argparse.Namespace) -> int:
    import os
    from pathlib import Path

    from tqdm import tqdm

    from ood_seg_node.bags import DEFAULT_START_NS, read_bag, write_bag
    from ood_seg_node.datasets import open_dataset
    from ood_seg_node.evaluation import EvaluationRun, HeadRun
    from ood_seg_node.ros.replay import Replayer, local_ros_environment, ood_seg_node_process

    started = time.perf_counter()
    heads, skipped = _heads(args.head)  # a bad --head or --frames must not leave an empty report folder behind
    dataset = open_dataset("synthetic", seed=args.seed, frames=args.frames, height=args.height, width=args.width)
    for note in skipped:
        print(f"demo: skipping head {note}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    bag = out / "bag"
    summary = write_bag(bag, iter(dataset), rate_hz=args.rate, camera=dataset.camera, total=len(dataset),
                        kind=dataset.kind, source=f"synthetic:seed={args.seed}", overwrite=True)
    print(f"demo: wrote {summary}")
    frames = [frame.to_frame() for frame in read_bag(bag)]
    stamps = {DEFAULT_START_NS + int(round(i * 1e9 / args.rate)): frame for i, frame in enumerate(frames)}

    env = local_ros_environment()
    os.environ.update(env)  # this process's own participant must be confined to the host as well
    replayer = Replayer(int(env["ROS_DOMAIN_ID"]))
    runs: dict[str, HeadRun] = {}
    delivery: dict[str, str] = {}
    try:
        for head in tqdm(heads, desc="heads", unit="head"):
            replayer.received.clear()
            log = out / "logs" / f"node_{head}.log"
            log.parent.mkdir(exist_ok=True)
            params = {"head": head, "reliable_input": True, "temporal_fusion": args.temporal_fusion}
            if args.temporal_fusion == "ground":
                params.update(odometry_topic="/odom", camera_height=dataset.camera.height_m,
                              camera_pitch=dataset.camera.pitch_rad)
            with ood_seg_node_process(params, env, log) as node:
                replayer.wait_for_node(node)
                stats = replayer.play(tqdm(frames, desc=f"replaying to {head}", unit="frame", leave=False),
                                      rate_hz=args.rate, start_ns=DEFAULT_START_NS, node=node)
            latencies = {stamp: (entry.received_at - stats.sent_at[stamp]) * 1e3
                         for stamp, entry in replayer.received.items() if stamp in stats.sent_at}
            runs[head] = _evaluate(head, replayer.received, stamps, latencies, dataset.kind, out / "overlays",
                                   args.overlays)
            delivery[head] = f"{runs[head].pixel.frames}/{stats.sent}"
    finally:
        replayer.close()

    report = EvaluationRun(runs, {"source": f"synthetic seed {args.seed}", "bag": str(bag),
                                  "temporal_fusion": args.temporal_fusion,
                                  "frames_scored": delivery, "rate_hz": args.rate})
    results = report.write(out)
    print(_table(results))
    print(f"frames scored per head (received/sent): {delivery}")
    print(f"demo: report in {out}/ (metrics.json, metrics.csv, pr_curves.png, roc_curves.png, overlays/), "
          f"wall time {time.perf_counter() - started:.0f} s")
    return 0


def _table(results: dict[str, dict]) -> str:
    """The evaluation table with the demo's own footer: its ms are end to end through the node, not in-process."""
    from ood_seg_node.evaluation import format_table

    rows = format_table(results).splitlines()[:-1]  # the generic footer: "ms = mean latency per frame"
    return "\n".join([
        *rows,
        "(AP, FPR95, AUROC, sIoU, PPV, mean F1, mIoU in %; frames = score maps that came back,",
        " fewer when a head is slower than the replay, which drops stale frames by design;",
        " ms = image published -> score map received, mean per frame)",
    ])


def _evaluate(head: str, received: dict, stamps: dict, latencies: dict, kind: str, folder, overlays: int):
    """Pair the node's score maps with the bag's ground truth by stamp and accumulate the metrics.

    ``latencies`` (stamp -> ms) are end to end: image published -> score map received over DDS.
    """
    import cv2

    from ood_seg_node.evaluation import Accumulator, EvaluationError
    from ood_seg_node.evaluation.report import overlay

    accumulator = Accumulator(kind, {head: None})
    pictures = []
    for index, (stamp, frame) in enumerate(sorted(stamps.items())):
        entry = received.get(stamp)
        if entry is None or entry.score is None:
            continue
        accumulator.add(index, frame.ood_gt, {head: entry.score}, sequence=frame.sequence,
                        predicted=None if entry.labels is None else {head: entry.labels}, semantic=frame.semantic,
                        latency={head: latencies[stamp]} if stamp in latencies else None)
        if (frame.ood_gt == 1).sum() >= 20 and len(pictures) < overlays:
            pictures.append((frame, entry.score))
    try:
        run = accumulator.finish().heads[head]
    except EvaluationError:
        raise RuntimeError(f"no score map came back from the node running head {head}") from None
    folder.mkdir(parents=True, exist_ok=True)
    for frame, score in pictures:
        picture = overlay(frame.image, score, frame.ood_gt, run.component_threshold)
        cv2.imwrite(str(folder / f"{head}_{frame.name}.png"), cv2.cvtColor(picture, cv2.COLOR_RGB2BGR))
    return run
