# Copyright 2026 The ood_seg_node developers. Licensed under the Apache License, Version 2.0.
"""``ood_seg bench``: the performance ratios of README's performance section, measured in one run."""

from __future__ import annotations

import argparse
import json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--segmenter", default="builtin", help="segmenter spec (default: %(default)s)")
    parser.add_argument("--segmenter-checkpoint", default="", help="segmenter weights")
    parser.add_argument("--sizes", default="512x1024,1024x2048", help="input sizes HxW, comma separated")
    parser.add_argument("--repeats", type=int, default=5, help="timed repetitions per figure (median)")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch default)")
    parser.add_argument("--no-node", action="store_true", help="skip the node end-to-end measurement over DDS")
    parser.add_argument("--frames", type=int, default=30, help="frames sent through the node (default 30)")
    parser.add_argument("--json", default="", help="also write all figures to this JSON file")


def run(args: argparse.Namespace) -> int:
    import torch

    from ood_seg_node import benchmarks
    from ood_seg_node.pipeline import parse_size
    from ood_seg_node.segmenters import build_segmenter

    if args.threads:
        torch.set_num_threads(args.threads)
    sizes = [parse_size(item, what="each of --sizes") for item in args.sizes.split(",")]
    segmenter = build_segmenter(args.segmenter, args.segmenter_checkpoint)
    figures: dict = {"segmenter": segmenter.identity, "threads": torch.get_num_threads(), "device": "cpu"}
    print(f"ood_seg bench: segmenter {segmenter.identity}, {torch.get_num_threads()} CPU threads, "
          "inference at the input size (no resize)")

    print("\n(head + post-processing) / segmenter forward, per head and input size")
    print(f"{'size':>10} {'head':>9} {'forward ms':>11} {'head ms':>8} {'post ms':>8} {'ratio':>7}")
    figures["head_overhead"] = benchmarks.head_overhead(segmenter, sizes, args.repeats)
    for row in figures["head_overhead"]:
        if "skipped" in row:
            print(f"  skipped: {row['skipped']}")
            continue
        print(f"{row['size']:>10} {row['head']:>9} {row['segmenter_ms']:>11.1f} {row['head_ms']:>8.2f} "
              f"{row['post_ms']:>8.2f} {row['ratio']:>7.3f}")

    print("\nscore_resolution input (logits upsampled first) vs native, time after the segmenter (energy)")
    figures["score_resolution"] = [benchmarks.score_resolution_cost(segmenter, s, args.repeats) for s in sizes]
    for row in figures["score_resolution"]:
        print(f"{row['size']:>10}: native {row['native_ms']:.1f} ms, input {row['input_ms']:.1f} ms"
              f" -> {row['ratio']:.1f}x")

    gflops = benchmarks.matmul_gflops(args.repeats)
    figures["matmul_gflops"] = gflops
    print(f"\nsegmenter + msp: PyTorch eager, channels-last traced/frozen, ONNX Runtime (equal outputs); floor = "
          f"forward FLOPs at this machine's matmul rate ({gflops:.0f} GFLOP/s)")
    figures["backends"] = [benchmarks.backend_speedup(segmenter, s, args.repeats, gflops) for s in sizes]
    for row in figures["backends"]:
        print(f"{row['size']:>10}: eager {row['eager_ms']:.1f} ms, optimised {row['optimised_ms']:.1f} ms "
              f"({row['speedup']:.2f}x), onnxruntime {row['onnxruntime_ms']:.1f} ms "
              f"({row['onnxruntime_speedup']:.2f}x); floor {row['floor_ms']:.1f} ms -> "
              f"{row['eager_over_floor']:.1f} / {row['optimised_over_floor']:.1f} / "
              f"{row['onnxruntime_over_floor']:.1f} x floor")

    if not args.no_node:
        from ood_seg_node.ros.replay import node_latency

        print("\nnode end to end over DDS (publish -> ood/anomaly_score received) vs pipeline compute")
        figures["node"] = node_latency(segmenter_spec=args.segmenter, checkpoint=args.segmenter_checkpoint,
                                       sizes=sizes, frames=args.frames)
        for row in figures["node"]:
            print(f"{row['size']:>10}: end-to-end p50 {row['e2e_p50_ms']:.1f} ms, pipeline p50 at the same rate "
                  f"{row['pipeline_p50_ms']:.1f} ms (back to back {row['pipeline_back_to_back_p50_ms']:.1f} ms) "
                  f"-> ratio {row['ratio']:.2f} ({row['received']}/{row['sent']} frames received)")
            stages = row["node_stages_p50_ms"]
            print(f"{'':>12}node stages p50: " + ", ".join(f"{name} {value:.1f}" for name, value in stages.items())
                  + " ms (outputs and publish: every output; the score goes out first)")
            camera = row["camera"]
            print(f"{'':>12}{camera['camera_hz']:.0f} Hz camera: {camera['published_fps']:.1f} frames/s published vs "
                  f"{camera['pipeline_fps']:.1f} frames/s of back-to-back pipeline compute "
                  f"({camera['published_fps'] / camera['pipeline_fps']:.2f}); latency p50 "
                  f"{camera['latency_p50_ms']:.0f} ms, p95 {camera['latency_p95_ms']:.0f} ms")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(figures, handle, indent=2)
    return 0
