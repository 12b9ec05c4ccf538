# Copyright 2026 The ood_seg_node developers. Licensed under the Apache License, Version 2.0.
"""Benchmark: start-up, per-frame time and peak memory of the published segmenters.

Why this script exists: the published segmenters (VainF's DeepLabV3+ MobileNetV2 and ResNet-101, NVIDIA's
DeepLabV3+ WideResNet38, NVIDIA's SegFormer) are far larger than the builtin one, and choosing one for a
robot means knowing what it costs: the seconds to build it from its file, the milliseconds per frame through
the pipeline with eager PyTorch and with the pipeline's CPU fast path (``Pipeline(optimize=True)``:
channels-last, traced and frozen, see ``ood_seg_node/fastpath.py``), and the memory it takes.
docs/performance.md quotes its output.

No weights are downloaded. Each segmenter's own module (a SegFormer-B0 for ``segformer``) is built with
random weights and written once, in its published layout, to a temporary directory: VainF's
``{'model_state': ...}``, NVIDIA's ``{'state_dict': {'module.' + key: ...}}``, a ``save_pretrained``
directory with its ``preprocessor_config.json``. So the architectures and loaders are the real ones.
Batch-norm statistics are measured on one random batch, so activations are normalised as in a trained
network (instead of growing or vanishing with depth) and the fast path's equality check against eager
execution faces outputs of that order.

Each segmenter is measured in a fresh subprocess, so its peak RSS is its own. That is the kernel's
``VmHWM``: on Linux ``getrusage``'s ``ru_maxrss`` survives ``fork``/``exec``, so a child's would start at
this process's peak (it writes the 137 M-parameter WideResNet38) and hide the smaller segmenters' own. The child
times ``build_segmenter`` (start-up, the file being in the page cache as it was just written), then
``Pipeline.process`` on a random image with the ``energy`` head at the image's own size, eagerly and then
optimised: the median of ``--repeats`` after one warm-up (the optimised warm-up traces and freezes). The
WideResNet38 takes about 15 s per eager 512x1024 frame on two idle cores, so it runs with one repeat.

``--device cuda`` runs the same measurement on a GPU; the fast path is CPU-only, so both columns are then
eager, and peak RSS counts host memory only.

Usage: ``python bench/bench_published_segmenters.py [--size 512x1024] [--repeats 3] [--threads 2]
[--device cpu] [--json out.json] [--only name,name]``
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from ood_seg_node.cityscapes import CLASS_NAMES
from ood_seg_node.layers import IMAGENET_MEAN, IMAGENET_STD
from ood_seg_node.pipeline import Pipeline, parse_size
from ood_seg_node.segmenters import build_segmenter
from ood_seg_node.segmenters.deeplabv3plus import VainFDeepLabV3Plus
from ood_seg_node.segmenters.wrn38 import DeepWV3Plus

SEGMENTERS = ("deeplabv3plus_mobilenet", "deeplabv3plus_resnet101", "deeplabv3plus_wrn38", "segformer")
REPEAT_LIMITS = {"deeplabv3plus_wrn38": 1}  # ~15 s per eager 512x1024 frame on two cores
# two images: the batch norm after each ASPP's image pooling sees 1x1 maps and needs more than one value
CALIBRATION_BATCH = (2, 3, 128, 256)
# nvidia/segformer-b0-finetuned-cityscapes-1024-1024's preprocessor_config.json
SEGFORMER_PREPROCESSOR = {
    "do_normalize": True, "do_resize": True, "feature_extractor_type": "SegformerFeatureExtractor",
    "image_mean": list(IMAGENET_MEAN), "image_std": list(IMAGENET_STD), "reduce_labels": False, "resample": 2,
    "size": 1024,
}


# --- random weights in the published layouts -------------------------------------------------------------------

def with_measured_batch_norm(model: nn.Module) -> nn.Module:
    """``model`` in eval mode, its batch-norm statistics those of one random batch (not the identity)."""
    norms = [module for module in model.modules() if isinstance(module, nn.BatchNorm2d)]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # a cumulative average: after one batch, exactly that batch's statistics
    model.train()
    with torch.no_grad():
        model(torch.rand(CALIBRATION_BATCH))
    return model.eval()


def write_vainf(backbone: str, directory: Path) -> Path:
    """VainF's ``main.py`` ``save_ckpt`` layout."""
    state = with_measured_batch_norm(VainFDeepLabV3Plus(backbone)).state_dict()
    path = directory / f"best_deeplabv3plus_{backbone}_cityscapes_os16.pth"
    torch.save({"cur_itrs": 30000, "model_state": state, "optimizer_state": {}, "scheduler_state": {},
                "best_score": 0.0}, path)
    return path


def write_nvidia_wrn38(directory: Path) -> Path:
    """NVIDIA/semantic-segmentation's ``train.py`` layout (the model saved from inside DataParallel)."""
    state = with_measured_batch_norm(DeepWV3Plus()).state_dict()
    path = directory / "cityscapes_best.pth"
    torch.save({"state_dict": {f"module.{key}": value for key, value in state.items()}, "epoch": 0}, path)
    return path


def write_segformer_b0(directory: Path) -> Path:
    """A ``save_pretrained`` SegFormer-B0 directory with 19 Cityscapes labels, as NVIDIA publishes it."""
    import transformers

    config = transformers.SegformerConfig(
        hidden_sizes=[32, 64, 160, 256], depths=[2, 2, 2, 2], decoder_hidden_size=256,
        num_labels=len(CLASS_NAMES), id2label=dict(enumerate(CLASS_NAMES)),
        label2id={name: index for index, name in enumerate(CLASS_NAMES)},
    )
    model = with_measured_batch_norm(transformers.SegformerForSemanticSegmentation(config))
    path = directory / "segformer-b0-finetuned-cityscapes-1024-1024"
    model.save_pretrained(path)
    (path / "preprocessor_config.json").write_text(json.dumps(SEGFORMER_PREPROCESSOR))
    return path


def write_published(name: str, directory: Path) -> Path:
    torch.manual_seed(0)
    if name == "deeplabv3plus_wrn38":
        return write_nvidia_wrn38(directory)
    if name == "segformer":
        return write_segformer_b0(directory)
    return write_vainf(name.removeprefix("deeplabv3plus_"), directory)


# --- the measurement, in a child process of its own ------------------------------------------------------------

def peak_rss_mib() -> float:
    """This process's peak resident set size (``VmHWM``), not ``ru_maxrss``: see the module docstring."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024  # kB
    raise RuntimeError("no VmHWM in /proc/self/status (this benchmark needs Linux)")


def measure(name: str, checkpoint: str, size: tuple[int, int], repeats: int, device: str) -> dict:
    """Start-up, eager and optimised ms per frame, and the peak RSS after each, for one segmenter."""
    imported_rss_mib = peak_rss_mib()  # torch, OpenCV and the package, before any segmenter
    started = time.perf_counter()
    segmenter = build_segmenter(name, checkpoint)
    result = {"segmenter": name, "startup_s": time.perf_counter() - started,
              "params_m": sum(p.numel() for p in segmenter.parameters()) / 1e6, "repeats": repeats,
              "imported_rss_mib": imported_rss_mib, "startup_peak_rss_mib": peak_rss_mib()}
    del segmenter
    rgb = np.random.default_rng(0).integers(0, 256, (*size, 3), dtype=np.uint8)
    for path, optimize in (("eager", False), ("optimised", True)):
        pipeline = Pipeline.from_names(segmenter=name, segmenter_checkpoint=checkpoint, head="energy",
                                       inference_size=None, device=device, optimize=optimize)
        pipeline.process(rgb)  # warm-up; the optimised path traces and freezes here
        frame_ms = []
        for _ in range(repeats):
            frame_started = time.perf_counter()
            pipeline.process(rgb)
            frame_ms.append((time.perf_counter() - frame_started) * 1e3)
        result[f"{path}_ms"] = statistics.median(frame_ms)
        result[f"{path}_peak_rss_mib"] = peak_rss_mib()
        if optimize:
            result["fast_path_frozen"] = bool(pipeline.fast_path.frozen_shapes())
        del pipeline
    result["eager_over_optimised"] = result["eager_ms"] / result["optimised_ms"]
    result["peak_rss_mib"] = peak_rss_mib()
    return result


def measure_in_child(name: str, checkpoint: Path, args: argparse.Namespace) -> dict:
    repeats = min(args.repeats, REPEAT_LIMITS.get(name, args.repeats))
    command = [sys.executable, __file__, "--child", name, str(checkpoint), "--size", args.size,
               "--repeats", str(repeats), "--threads", str(args.threads), "--device", args.device]
    completed = subprocess.run(command, stdout=subprocess.PIPE, text=True, check=True)
    return json.loads(completed.stdout.strip().splitlines()[-1])


# --- report ----------------------------------------------------------------------------------------------------

def table(results: list[dict]) -> str:
    header = (f"{'segmenter':>24}  {'params M':>8}  {'start-up s':>10}  {'eager ms':>9}  {'optimised ms':>12}  "
              f"{'eager/opt':>9}  {'peak RSS MiB':>12}")
    lines = [header]
    for r in results:
        lines.append(f"{r['segmenter']:>24}  {r['params_m']:8.1f}  {r['startup_s']:10.2f}  {r['eager_ms']:9.0f}  "
                     f"{r['optimised_ms']:12.0f}  {r['eager_over_optimised']:8.2f}x  {r['peak_rss_mib']:12.0f}")
    lines.append(f"peak RSS includes the {min(r['imported_rss_mib'] for r in results):.0f} MiB a process holds after "
                 "importing torch and the package")
    for r in results:
        if r["repeats"] == 1:
            lines.append(f"{r['segmenter']}: one timed frame per path (after one warm-up)")
        if not r["fast_path_frozen"]:
            lines.append(f"{r['segmenter']}: no frozen copy was kept (tracing failed or it differed from eager "
                         "beyond fastpath.TOLERANCE); its optimised path ran eagerly, channels-last")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="512x1024", help="input HxW (default 512x1024)")
    parser.add_argument("--repeats", type=int, default=3, help="timed frames per path, median (WRN38: 1)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (0 = torch default)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (the fast path is CPU-only)")
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    parser.add_argument("--only", help=f"comma-separated subset of {','.join(SEGMENTERS)}")
    parser.add_argument("--child", nargs=2, metavar=("NAME", "CHECKPOINT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    if args.child:
        name, checkpoint = args.child
        print(json.dumps(measure(name, checkpoint, parse_size(args.size), args.repeats, args.device)))
        return

    names = args.only.split(",") if args.only else list(SEGMENTERS)
    unknown = sorted(set(names) - set(SEGMENTERS))
    if unknown:
        parser.error(f"unknown segmenter(s) {', '.join(unknown)}; valid: {', '.join(SEGMENTERS)}")
    with tempfile.TemporaryDirectory(prefix="published-segmenters-") as temporary:
        checkpoints = {name: write_published(name, Path(temporary))
                       for name in tqdm(names, desc="writing random published files")}
        load_before = os.getloadavg()[0]
        results = [measure_in_child(name, checkpoints[name], args)
                   for name in tqdm(names, desc="measuring, one process each")]
        load_after = os.getloadavg()[0]
    print(f"{args.size} input, energy head, {args.threads} threads, device {args.device}, "
          f"median of {args.repeats} frames after one warm-up; 1-minute load average {load_before:.2f} before "
          f"the measurements, {load_after:.2f} after (other work on the machine slows every figure)")
    print(table(results))
    if args.json:
        report = {"size": args.size, "threads": args.threads, "device": args.device, "repeats": args.repeats,
                  "torch": torch.__version__, "machine": platform.machine(), "cpus": os.cpu_count(),
                  "load_average_before": load_before, "load_average_after": load_after, "results": results}
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
