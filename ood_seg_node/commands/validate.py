# Copyright 2026 The ood_seg_node developers. Licensed under the Apache License, Version 2.0.
r"""``ood_seg validate``: GenVal-style synthetic validation on your own frames, and a calibration for the node.

Examples::

    ood_seg validate --bag my_drive --head rpl --target-fpr 0.05 --out val
    ood_seg validate --dataset synthetic --frames 30 --head energy --head msp --shifts fog,night --out val_syn
    ood_seg validate --images ~/frames --head obsnet --objects ~/cutouts --target-tpr 0.95 --out val_img
    ood_seg validate --dataset synthetic --head energy --head msp --head maxlogit --real lostandfound:/data/laf \
        --out val_corr

Then: ``ros2 launch ood_seg_node ood_seg.launch.py params_file:=val/calibration.yaml``.
"""

from __future__ import annotations

import argparse
import itertools
import math
from pathlib import Path

from ood_seg_node.commands.dataset_options import add_dataset_arguments, add_model_arguments, open_from_args


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = __doc__.split("\n\n", 1)[1]
    source = parser.add_argument_group("source frames (one of --dataset, --bag, --images)")
    add_dataset_arguments(source, required=False)
    source.add_argument("--bag", help="a rosbag2 recording (labels optional: insertions bring their own)")
    source.add_argument("--images", metavar="DIR", help="a folder of images (png, jpg), no labels needed")
    model = parser.add_argument_group("model")
    model.add_argument("--head", action="append", default=[], metavar="NAME",
                       help="head to measure; repeat to compare (the first is the one calibration.yaml is for)")
    model.add_argument("--head-checkpoint", default="", help="weights of the first head (default: shipped)")
    add_model_arguments(model)
    generate = parser.add_argument_group("synthetic conditions")
    generate.add_argument("--shifts", default="all",
                          help="comma-separated covariate shifts, 'all' or 'none' (default: %(default)s)")
    generate.add_argument("--severities", default="1,2,3", help="severities to render (default: %(default)s)")
    generate.add_argument("--insert", type=int, default=2, metavar="N",
                          help="OOD objects inserted per frame, 0 = none (default: %(default)s)")
    generate.add_argument("--objects", metavar="DIR", help="RGBA cut-outs (png) added to the procedural objects")
    generate.add_argument("--inpaint-model", metavar="DIR",
                          help="insert objects by Stable Diffusion inpainting from this local diffusers folder "
                               "instead of pasting (GPU when available; nothing is downloaded)")
    generate.add_argument("--inpaint-steps", type=int, default=25, help="denoising steps per object (default 25)")
    generate.add_argument("--inpaint-size", type=int, default=512,
                          help="square crop side the inpainting model sees, a multiple of 8 (default 512)")
    generate.add_argument("--horizon", type=float, default=None, metavar="FRACTION",
                          help="horizon row as a fraction of the image height, for the flat-ground prior "
                               "(default: the source's camera, else 0.47)")
    calibrate = parser.add_argument_group("calibration")
    target = calibrate.add_mutually_exclusive_group()
    target.add_argument("--target-fpr", type=float, default=None,
                        help="mask threshold for this false-positive rate on inlier road pixels (default 0.05)")
    target.add_argument("--target-tpr", type=float, default=None,
                        help="mask threshold for this true-positive rate on anomaly pixels")
    calibrate.add_argument("--holdout-every", type=int, default=3, metavar="K",
                           help="every K-th source frame is held out to check the calibration (default 3)")
    calibrate.add_argument("--real", metavar="FORMAT:ROOT",
                           help="a real labelled OOD / shifted set: correlate synthetic and real head rankings")
    parser.add_argument("--out", required=True, help="output folder")


def _image_frames(folder: str, limit: int | None):
    from ood_seg_node.datasets.base import Frame
    from ood_seg_node.datasets.files import list_images, read_rgb

    paths = list_images(Path(folder))
    if not paths:
        raise ValueError(f"--images {folder}: no png/jpg images found")
    paths = paths[:limit] if limit else paths
    return (lambda: (Frame(read_rgb(p), None, None, name=p.stem, sequence=Path(folder).name, index=i)
                     for i, p in enumerate(paths))), len(paths), None


def _source(args: argparse.Namespace):
    """(frames factory, count, camera or None, synthetic sequence or None) from --dataset / --bag / --images."""
    given = [flag for flag in ("dataset", "bag", "images") if getattr(args, flag)]
    if len(given) != 1:
        raise ValueError("give exactly one of --dataset, --bag and --images")
    if args.images:
        return (*_image_frames(args.images, args.frames), None)
    if args.bag:
        from ood_seg_node.bags import bag_info, read_bag

        count = len(bag_info(args.bag).frame_names) or None
        limit = args.frames or count
        return (lambda: (f.to_frame() for f in itertools.islice(read_bag(args.bag), limit))), limit, None, None
    dataset, frames, total = open_from_args(args)
    from ood_seg_node.datasets import SyntheticDataset

    if isinstance(dataset, SyntheticDataset) and len(dataset.sequences) > 1:
        raise ValueError("validate renders one synthetic drive: --sequences does not apply")
    world = dataset.sequence if isinstance(dataset, SyntheticDataset) else None
    return frames, total, getattr(dataset, "camera", None), world


def run(args: argparse.Namespace) -> int:
    from ood_seg_node.genval.calibration import calibration_identity, write_calibration_yaml
    from ood_seg_node.genval.geometry import GroundCamera
    from ood_seg_node.genval.insertion import ObjectBank
    from ood_seg_node.genval.report import format_summary, write_validation_report
    from ood_seg_node.genval.shifts import SEVERITIES, ShiftError, parse_shifts
    from ood_seg_node.genval.validate import ValidationOptions, run_validation
    from ood_seg_node.pipeline import Pipeline

    if not args.head:
        raise ValueError("give at least one --head")
    if args.holdout_every < 2:
        raise ValueError(f"--holdout-every must be >= 2, got {args.holdout_every}")
    if args.insert < 0:
        raise ValueError(f"--insert must be >= 0, got {args.insert}")
    for rate in (args.target_fpr, args.target_tpr):
        if rate is not None and not 0.0 < rate < 1.0:
            raise ValueError(f"target rates must lie in (0, 1), got {rate}")
    severities = tuple(int(s) for s in args.severities.split(",") if s.strip())
    if not severities or any(s not in SEVERITIES for s in severities):
        raise ShiftError(f"--severities must be a subset of {','.join(map(str, SEVERITIES))}, got {args.severities}")
    if args.horizon is not None and not 0.0 < args.horizon < 1.0:
        raise ValueError(f"--horizon must be a fraction in (0, 1), got {args.horizon}")
    frames, total, camera, world = _source(args)
    seed = args.seed or 0
    bank = ObjectBank.procedural(seed=seed)
    if args.objects:
        bank = bank.combined(ObjectBank.from_folder(args.objects, seed=seed))
    inserter = None
    if args.inpaint_model:
        from ood_seg_node.genval.inpaint import DiffusionInpainter

        inserter = DiffusionInpainter(args.inpaint_model, device=args.device, steps=args.inpaint_steps,
                                      size=args.inpaint_size)
    # the source's camera, unless --horizon asks for the flat-ground prior (built per image size)
    ground = GroundCamera.from_camera_model(camera) if camera is not None and args.horizon is None else None
    pipeline = Pipeline.from_names(segmenter=args.segmenter, head=args.head,
                                   segmenter_checkpoint=args.segmenter_checkpoint,
                                   head_checkpoint=args.head_checkpoint, device=args.device, keep_logits=True)
    options = ValidationOptions(
        shifts=parse_shifts(args.shifts), severities=severities, objects_per_frame=args.insert, bank=bank,
        seed=seed, holdout_every=args.holdout_every, target_tpr=args.target_tpr,
        target_fpr=args.target_fpr if args.target_tpr is not None or args.target_fpr is not None else 0.05,
        camera=ground, horizon_fraction=args.horizon, inserter=inserter, world=world,
    )
    result = run_validation(frames, pipeline, options, total=total)
    meta = {"source": args.bag or args.images or args.dataset, "frames": total, "segmenter": args.segmenter,
            "segmenter_checkpoint": args.segmenter_checkpoint, "heads": pipeline.names,
            "calibrated_for": calibration_identity(pipeline), "shifts": list(options.shifts),
            "severities": list(severities), "objects_per_frame": args.insert, "seed": options.seed,
            "insertion": f"inpainting ({args.inpaint_model})" if args.inpaint_model else "paste"}
    if args.real:
        meta["real"] = _correlate(args.real, pipeline, result)
    out = Path(args.out)
    written = write_validation_report(out, result, meta)
    primary = pipeline.names[0]
    fit = result.thresholds[primary]
    (kind, target), = fit["target"].items()
    write_calibration_yaml(out / "calibration.yaml", parameters={
        "head": primary, "head_checkpoint": str(Path(args.head_checkpoint).resolve()) if args.head_checkpoint else "",
        "segmenter": args.segmenter,
        "segmenter_checkpoint": str(Path(args.segmenter_checkpoint).resolve()) if args.segmenter_checkpoint else "",
        "threshold": fit["threshold"], "calibrated_for": meta["calibrated_for"],
    }, comment=[
        f"ood_seg validate: {primary} threshold for {kind.upper()} {target} on {meta['source']} "
        f"({total} source frames x {len(result.conditions)} conditions)",
        f"held-out frames: TPR {fit['heldout_tpr']:.4f}, FPR {fit['heldout_fpr']:.4f}",
        (f"label temperature {result.temperature:.4f} (ECE fit; the node publishes no confidences, so it is "
         "recorded here and in report.json only)") if result.temperature is not None
        else "label temperature: not fitted (the frames have no class labels)",
        f"use: ros2 launch ood_seg_node ood_seg.launch.py params_file:={out / 'calibration.yaml'}",
    ])
    print(format_summary(result))
    print(f"validate: {len(written) + 1} files in {out} (report.json, report.csv, calibration.yaml, plots)")
    return 0


def _correlate(spec: str, pipeline, result) -> dict:
    """GenVal's headline check: heads ranked alike on the synthetic conditions and on a real set."""
    from scipy.stats import pearsonr, spearmanr

    from ood_seg_node.datasets import open_dataset
    from ood_seg_node.offline_evaluation import PipelineScorer, evaluate_frames

    dataset = open_dataset(spec)
    real = evaluate_frames(lambda: iter(dataset), [PipelineScorer(pipeline)], kind=dataset.kind, total=len(dataset),
                           overlays=0).results()
    report = {"source": spec, "heads": {}}
    for metric in ("ap", "fpr95", "auroc"):
        synthetic = [_mean(e["heads"][h][metric] for e in result.conditions) for h in pipeline.names]
        measured = [real[h][metric] for h in pipeline.names]
        report["heads"].update({h: {**report["heads"].get(h, {}), f"synthetic_{metric}": s, f"real_{metric}": m}
                                for h, s, m in zip(pipeline.names, synthetic, measured)})
        if len(pipeline.names) >= 3:
            report[f"spearman_{metric}"] = float(spearmanr(synthetic, measured).statistic)
            report[f"pearson_{metric}"] = float(pearsonr(synthetic, measured).statistic)
    if len(pipeline.names) < 3:
        report["note"] = "correlations need at least 3 heads (--head repeated)"
    return report


def _mean(values) -> float:
    values = [v for v in values if v is not None and math.isfinite(v)]
    return sum(values) / len(values) if values else math.nan
