# Copyright 2026 The ood_seg_node developers. Licensed under the Apache License, Version 2.0.
"""``ood_seg train-head --head nflowjs``: flow pre-training, then joint fine-tuning of segmenter and flow.

Grcić, Bevandić, Kalafatić, Šegvić, "Dense Out-of-Distribution Detection by Robust Learning on Synthetic
Negative Data", arXiv 2112.12833. Real negative data never cover the visual world, so the negatives are
*generated*: a normalizing flow (:class:`ood_seg_node.training.flows.PatchFlow`) is first trained by maximum
likelihood on inlier patches; then, jointly with the segmenter, its samples (random sizes, random positions)
are pasted into inlier training images, and one loss is minimised over both models::

    L = CE(inlier pixels) + lambda * JSD(softmax || uniform)(pasted pixels) + w * NLL_flow(inlier crops)

The segmenter learns to predict the uniform distribution on the pasted samples; because the samples are
differentiable functions of the flow's parameters, the JSD term also reaches the flow and pushes its samples
toward where the segmenter is uncertain, while the likelihood term keeps them near the inlier patches: the
samples settle at the border of the inlier distribution. The checkpoint carries the fine-tuned segmenter
(the flow is not needed at inference and is written next to it, ``nflowjs_flow.pt``).

Ablations: ``--nflowjs-negatives flow|procedural|none`` (flow samples, procedural obstacle patches from the
synthetic world's generator, or plain fine-tuning without negatives), ``--nflowjs-freeze-flow`` (pasted
samples from the pre-trained flow without joint training); every validation reports the JS score and MSP
on the same fine-tuned model, plus inlier mIoU (epoch 0 = the segmenter before fine-tuning).
"""

from __future__ import annotations

import argparse
import copy
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from ood_seg_node.checkpoints import load_checkpoint, save_checkpoint
from ood_seg_node.cityscapes import IGNORE_INDEX, OOD_ANOMALY
from ood_seg_node.datasets.base import Frame
from ood_seg_node.heads.nflowjs import STATE_PREFIX, NFlowJS, js_to_uniform
from ood_seg_node.segmenters import Segmenter, SegmenterError, build_segmenter
from ood_seg_node.training import TRAIN_SEEDS, VAL_SEEDS
from ood_seg_node.training.common import (
    HeadTrainingConfig,
    RunLog,
    batches,
    cosine_lr,
    seed_everything,
    synthetic_frames,
)
from ood_seg_node.training.flows import PatchFlow

NEGATIVES = ("flow", "procedural", "none")
DEFAULT_SEGMENTER_LR = 5e-4


@dataclass
class NFlowJSOptions:
    """The ``--nflowjs-*`` flags (see :func:`add_arguments` for their meaning)."""

    negatives: str = "flow"
    loss_weight: float = 1.0
    flow_weight: float = 1.0
    flow_steps: int = 400
    flow_batch: int = 32
    flow_crop: int = 32
    flow_lr: float = 1e-3
    joint_flow_lr: float = 1e-4
    flow_hidden: int = 48
    flow_checkpoint: str = ""
    freeze_flow: bool = False
    patch_min: int = 8
    patch_max: int = 48
    patches_per_image: int = 1
    temperature: float = 1.0

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> NFlowJSOptions:
        """Collect the ``--nflowjs-*`` values (defaults for those absent) and check them."""
        values = {f: getattr(args, f"nflowjs_{f}") for f in asdict(cls()) if hasattr(args, f"nflowjs_{f}")}
        options = cls(**values)
        if options.negatives not in NEGATIVES:
            raise ValueError(f"--nflowjs-negatives must be one of {', '.join(NEGATIVES)}, "
                             f"got {options.negatives!r}")
        if not 4 <= options.patch_min <= options.patch_max:
            raise ValueError(f"need 4 <= --nflowjs-patch-min <= --nflowjs-patch-max, got "
                             f"{options.patch_min}, {options.patch_max}")
        return options


def add_arguments(group: argparse._ArgumentGroup) -> None:
    """NFlowJS flags, all prefixed ``--nflowjs-``."""
    d = NFlowJSOptions()
    group.add_argument("--nflowjs-negatives", choices=NEGATIVES, default=d.negatives,
                       help="negatives pasted during fine-tuning: jointly trained flow samples (the method), "
                            "procedural obstacle patches, or none (plain fine-tuning); default %(default)s")
    group.add_argument("--nflowjs-loss-weight", type=float, default=d.loss_weight,
                       help="lambda, weight of the JS-to-uniform loss on pasted pixels (default %(default)s)")
    group.add_argument("--nflowjs-flow-weight", type=float, default=d.flow_weight,
                       help="weight of the flow's NLL (bits/dim) on inlier crops in the joint loss "
                            "(default %(default)s)")
    group.add_argument("--nflowjs-flow-steps", type=int, default=d.flow_steps,
                       help="flow pre-training steps (maximum likelihood on inlier crops; "
                            "default %(default)s)")
    group.add_argument("--nflowjs-flow-batch", type=int, default=d.flow_batch,
                       help="inlier crops per flow step (default %(default)s)")
    group.add_argument("--nflowjs-flow-crop", type=int, default=d.flow_crop,
                       help="side of the inlier crops the flow is trained on, a multiple of 4 "
                            "(default %(default)s)")
    group.add_argument("--nflowjs-flow-lr", type=float, default=d.flow_lr,
                       help="flow pre-training learning rate (default %(default)s)")
    group.add_argument("--nflowjs-joint-flow-lr", type=float, default=d.joint_flow_lr,
                       help="flow learning rate during joint fine-tuning (default %(default)s)")
    group.add_argument("--nflowjs-flow-hidden", type=int, default=d.flow_hidden,
                       help="width of the flow's coupling networks (default %(default)s)")
    group.add_argument("--nflowjs-flow-checkpoint", default=d.flow_checkpoint,
                       help="start from this pre-trained flow (a nflowjs_flow.pt) and skip pre-training")
    group.add_argument("--nflowjs-freeze-flow", action="store_true",
                       help="ablation: paste samples of the pre-trained flow without training it jointly")
    group.add_argument("--nflowjs-patch-min", type=int, default=d.patch_min,
                       help="smallest pasted negative patch side in pixels (default %(default)s)")
    group.add_argument("--nflowjs-patch-max", type=int, default=d.patch_max,
                       help="largest pasted negative patch side in pixels (default %(default)s)")
    group.add_argument("--nflowjs-patches-per-image", type=int, default=d.patches_per_image,
                       help="negative patches pasted into each training image (default %(default)s)")
    group.add_argument("--nflowjs-temperature", type=float, default=d.temperature,
                       help="standard deviation of the flow's latent samples (default %(default)s)")


# ---------------------------------------------------------------------------------------------- flow


def save_flow(path: str | Path, flow: PatchFlow, **meta: Any) -> None:
    """Write a flow checkpoint (kind ``flow``): its architecture config, weights and ``meta``."""
    save_checkpoint(path, flow.state_dict(), kind="flow", name="patchflow", config=dict(flow.config), **meta)


def load_flow(path: str | Path) -> PatchFlow:
    """A :class:`PatchFlow` saved by :func:`save_flow`."""
    loaded = load_checkpoint(path, kind="flow", name="patchflow")
    flow = PatchFlow(**loaded.config)
    flow.load_state_dict(loaded.state_dict)
    return flow


def inlier_crops(frames: Sequence[Frame], size: int, count: int, rng: np.random.Generator,
                 tries: int = 8) -> torch.Tensor:
    """``count`` random ``size`` px square crops (count, 3, size, size) in [0, 1] free of anomaly pixels.

    A crop is re-drawn up to ``tries`` times until none of its pixels is one of the world's anomalies, so
    the flow learns the inlier distribution (every class, not only the road that ``ood_gt`` marks 0).
    Crops are cut from the uint8 frames directly: a float copy of every frame would not fit in memory.
    """
    crops = []
    for _ in range(count):
        for _ in range(tries):
            frame = frames[int(rng.integers(len(frames)))]
            height, width = frame.image.shape[:2]
            top, left = int(rng.integers(height - size + 1)), int(rng.integers(width - size + 1))
            window = None if frame.ood_gt is None else frame.ood_gt[top:top + size, left:left + size]
            if window is None or not bool((window == OOD_ANOMALY).any()):
                break
        patch = frame.image[top:top + size, left:left + size]
        if rng.random() < 0.5:
            patch = patch[:, ::-1]
        crops.append(torch.from_numpy(np.ascontiguousarray(patch)).permute(2, 0, 1))
    return torch.stack(crops).float() / 255.0


def pretrain_flow(flow: PatchFlow, frames: Sequence[Frame], options: NFlowJSOptions,
                  device: torch.device, seed: int = 0) -> list[float]:
    """Maximum likelihood on random inlier crops; returns the bits/dim of every step."""
    rng = np.random.default_rng(seed)
    optimizer = torch.optim.Adam(flow.parameters(), lr=options.flow_lr)
    flow.train()
    history = []
    bar = tqdm(range(options.flow_steps), desc="flow pre-training", unit="step")
    for step in bar:
        for group in optimizer.param_groups:
            group["lr"] = cosine_lr(step, options.flow_steps, options.flow_lr,
                                    warmup=max(1, min(20, options.flow_steps // 10)))
        crops = inlier_crops(frames, options.flow_crop, options.flow_batch, rng).to(device)
        loss = flow.bits_per_dim(crops)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(flow.parameters(), 50.0)
        optimizer.step()
        history.append(loss.item())
        bar.set_postfix(bpd=f"{history[-1]:.3f}")
    return history


# --------------------------------------------------------------------------------------------- pasting


def _patch_sides(options: NFlowJSOptions, multiple: int) -> list[int]:
    low = max(multiple, -(-options.patch_min // multiple) * multiple)
    return list(range(low, max(low, options.patch_max) + 1, multiple))


def _procedural_patch(size: int, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """A procedural obstacle (RGB in [0, 1], mask) from the synthetic world's generator."""
    from ood_seg_node.datasets.synthetic import make_obstacle_patch

    rgb, mask = make_obstacle_patch(rng, size, size)
    rgb, mask = np.asarray(rgb, dtype=np.uint8), np.asarray(mask, dtype=bool)
    if rgb.shape[:2] != (size, size):  # the generator may return another size; the square is what is pasted
        rgb = cv2.resize(rgb, (size, size), interpolation=cv2.INTER_LINEAR)
        mask = cv2.resize(mask.astype(np.uint8), (size, size), interpolation=cv2.INTER_NEAREST).astype(bool)
    rgb_tensor = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1).float() / 255.0
    return rgb_tensor, torch.from_numpy(np.ascontiguousarray(mask))


def paste_negatives(images: torch.Tensor, semantic: torch.Tensor, options: NFlowJSOptions,
                    flow: PatchFlow | None, rng: np.random.Generator
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Paste negatives at random positions; returns (images, semantic with pasted pixels void, negative mask).

    Flow patches stay attached to the autograd graph, so the segmenter's loss on them reaches the flow.
    """
    if options.negatives == "none":
        return images, semantic, torch.zeros_like(semantic, dtype=torch.bool)
    images, semantic = images.clone(), semantic.clone()
    negative = torch.zeros_like(semantic, dtype=torch.bool)
    batch, _, height, width = images.shape
    multiple = flow.multiple if flow is not None else 1
    sides = [s for s in _patch_sides(options, multiple) if s <= min(height, width)] or [multiple]
    for i in range(batch):
        for _ in range(options.patches_per_image):
            side = int(rng.choice(sides))
            top = int(rng.integers(0, height - side + 1))
            left = int(rng.integers(0, width - side + 1))
            if options.negatives == "flow":
                patch = flow.sample(1, side, temperature=options.temperature)[0]
                mask = torch.ones(side, side, dtype=torch.bool, device=images.device)
            else:
                patch, mask = _procedural_patch(side, rng)
                patch, mask = patch.to(images.device), mask.to(images.device)
            region = images[i, :, top:top + side, left:left + side]
            images[i, :, top:top + side, left:left + side] = torch.where(mask, patch, region)
            negative[i, top:top + side, left:left + side] |= mask
    semantic[negative] = IGNORE_INDEX
    return images, semantic, negative


# ------------------------------------------------------------------------------------------ validation


def validate(segmenter: Segmenter, frames: Sequence[Frame], batch_size: int,
             device: torch.device) -> dict[str, float]:
    """JS and MSP AP / AUROC / FPR95 (+ best-F1 threshold) and mIoU of one segmenter, in one pass."""
    from ood_seg_node.evaluation import ConfusionMatrix, StreamingOODMetrics, best_f1_threshold
    from ood_seg_node.heads.logit_scores import MSP

    js, msp = StreamingOODMetrics(), StreamingOODMetrics()
    confusion = ConfusionMatrix()
    segmenter.eval()
    with torch.inference_mode():
        for batch in batches(frames, batch_size, shuffle=False, augment=False):
            logits = segmenter.run(batch.images.to(device)).logits.float()
            size = batch.ood.shape[-2:]
            up = F.interpolate(logits, size=size, mode="bilinear", align_corners=False)
            for metrics, score in ((js, NFlowJS.score_logits(logits)), (msp, MSP.score_logits(logits))):
                score = F.interpolate(score[:, None], size=size, mode="bilinear", align_corners=False)[:, 0]
                for s, label in zip(score.cpu().numpy(), batch.ood.numpy().astype(np.uint8), strict=True):
                    metrics.update(s, label)
            for pred, target in zip(up.argmax(1).cpu().numpy(), batch.semantic.numpy(), strict=True):
                confusion.update(pred, target)
    result: dict[str, float] = {"miou": float(confusion.compute()["miou"])}
    for prefix, metrics in (("", js), ("msp_", msp)):
        computed = metrics.compute()
        result.update({f"{prefix}ap": computed["ap"], f"{prefix}auroc": computed["auroc"],
                       f"{prefix}fpr95": computed["fpr95"],
                       f"{prefix}threshold": float(best_f1_threshold(metrics))})
    return result


# -------------------------------------------------------------------------------------------- figure


def save_sample_figure(flows: dict[str, PatchFlow], frames: Sequence[Frame], path: str | Path, *,
                       count: int = 8, sides: Sequence[int] = (16, 32, 48), seed: int = 0) -> None:
    """Per patch size, a row of real inlier patches, then a row of samples of each flow (label -> flow)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rng = np.random.default_rng(seed)
    rows_per_side = 1 + len(flows)
    fig, axes = plt.subplots(rows_per_side * len(sides), count,
                             figsize=(count * 1.1, 1.15 * rows_per_side * len(sides) + 0.4), squeeze=False)
    with torch.no_grad():
        for block, side in enumerate(sides):
            rows = [("real", inlier_crops(frames, side, count, rng))]
            for label, flow in flows.items():
                generator = torch.Generator().manual_seed(seed + side)  # same latents for every flow
                rows.append((label, flow.eval().sample(count, side, generator=generator)))
            for offset, (label, patches) in enumerate(rows):
                for col in range(count):
                    ax = axes[block * rows_per_side + offset, col]
                    image = patches[col].permute(1, 2, 0).clamp(0, 1).cpu().numpy()
                    ax.imshow(image, interpolation="nearest")
                    ax.set_xticks([])
                    ax.set_yticks([])
                    if col == 0:
                        ax.set_ylabel(f"{label}\n{side} px", fontsize=7)
    fig.suptitle("NFlowJS: real inlier patches and flow samples (same latents per column)", fontsize=9)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


# -------------------------------------------------------------------------------------------- training


def _freeze_batchnorm(module: torch.nn.Module) -> None:
    """Fine-tune with frozen batch-norm statistics: pasted patches must not shift the inlier statistics."""
    for child in module.modules():
        if isinstance(child, torch.nn.modules.batchnorm._BatchNorm):
            child.eval()


def _save(path: Path, segmenter: Segmenter, base: Segmenter, config: HeadTrainingConfig,
          options: NFlowJSOptions, metrics: dict[str, Any]) -> None:
    state = {f"{STATE_PREFIX}{k}": v for k, v in segmenter.state_dict().items()}
    input_size = list(base.default_input_size) if base.default_input_size else [config.height, config.width]
    save_checkpoint(
        path, state, kind="head", name="nflowjs",
        config={"segmenter_spec": base.spec, "input_size": input_size, "score": "1 - JSD(p||U)/JSD_max"},
        segmenter=base.identity, default_threshold=float(metrics["val_threshold"]),
        metrics=metrics, training=_run_config(config, options),
    )


def _run_config(config: HeadTrainingConfig, options: NFlowJSOptions) -> dict[str, Any]:
    return {**asdict(config), **{f"nflowjs_{k}": v for k, v in asdict(options).items()}}


def train(config: HeadTrainingConfig, args: argparse.Namespace) -> dict[str, Any]:
    """Pre-train the flow, fine-tune segmenter + flow jointly; best-AP checkpoint at ``<out>/nflowjs.pt``."""
    options = NFlowJSOptions.from_args(args)
    seed_everything(config.seed)
    rng = np.random.default_rng(config.seed)
    device = torch.device(config.device)
    out = Path(config.out)
    base = build_segmenter(config.segmenter, config.segmenter_checkpoint)
    if base.spec.split(":")[0] not in ("builtin", "torchvision"):
        raise SegmenterError(f"NFlowJS fine-tunes the segmenter; {base.spec} cannot be fine-tuned "
                             "(use builtin or torchvision:<arch>)")
    segmenter = copy.deepcopy(base).to(device)
    for parameter in segmenter.parameters():
        parameter.requires_grad_(True)
    train_frames = synthetic_frames(TRAIN_SEEDS[: config.sequences], config.frames_per_sequence,
                                    config.height, config.width, desc="training frames")
    val_frames = synthetic_frames(VAL_SEEDS[: config.val_sequences], config.frames_per_sequence,
                                  config.height, config.width, desc="validation frames")

    flow: PatchFlow | None = None
    flow_history: list[float] = []
    if options.negatives == "flow":
        if options.flow_checkpoint:
            flow = load_flow(options.flow_checkpoint).to(device)
        else:
            flow = PatchFlow(hidden=options.flow_hidden).to(device)
            flow_history = pretrain_flow(flow, train_frames, options, device, seed=config.seed)
            save_flow(out / "nflowjs_flow_pretrained.pt", flow, bits_per_dim=flow_history[-1])
        if options.freeze_flow:
            flow.requires_grad_(False)

    log = RunLog(out, _run_config(config, options), monitor="val_ap")
    before = validate(segmenter, val_frames, config.batch_size, device)
    tqdm.write(f"before fine-tuning: JS AP {before['ap']:.3f}  MSP AP {before['msp_ap']:.3f}  "
               f"mIoU {before['miou']:.3f}")
    log.records.append({"epoch": 0, **{f"val_{k}": v for k, v in before.items()}})

    seg_lr = config.lr or DEFAULT_SEGMENTER_LR
    groups = [{"params": list(segmenter.parameters()), "lr": seg_lr, "base": seg_lr}]
    joint_flow = flow is not None and not options.freeze_flow
    if joint_flow:
        flow_lr = options.joint_flow_lr
        groups.append({"params": list(flow.parameters()), "lr": flow_lr, "base": flow_lr})
    optimizer = torch.optim.Adam(groups)
    steps_per_epoch = -(-len(train_frames) // config.batch_size)
    total = steps_per_epoch * config.epochs
    warmup = max(1, min(10, total // 10))
    step = 0
    best: dict[str, Any] = {}
    for epoch in range(1, config.epochs + 1):
        segmenter.train()
        _freeze_batchnorm(segmenter)
        if flow is not None:
            flow.train()
        sums = {"loss": 0.0, "ce": 0.0, "js": 0.0, "nll": 0.0}
        bar = tqdm(batches(train_frames, config.batch_size, shuffle=True, augment=True),
                   total=steps_per_epoch, desc=f"epoch {epoch}/{config.epochs}", unit="batch")
        for batch in bar:
            for group in optimizer.param_groups:
                group["lr"] = cosine_lr(step, total, group["base"], warmup=warmup)
            images, semantic = batch.images.to(device), batch.semantic.to(device)
            # the world's own obstacles are never learnt (already void in ``semantic``; made sure here)
            semantic = semantic.masked_fill(batch.ood.to(device) == OOD_ANOMALY, IGNORE_INDEX)
            images, semantic, negative = paste_negatives(images, semantic, options, flow, rng)
            logits = segmenter.run(images).logits
            logits = F.interpolate(logits, size=semantic.shape[-2:], mode="bilinear", align_corners=False)
            ce = F.cross_entropy(logits, semantic, ignore_index=IGNORE_INDEX)
            js = js_to_uniform(logits)[negative].mean() if bool(negative.any()) else logits.new_zeros(())
            loss = ce + options.loss_weight * js
            nll = logits.new_zeros(())
            if joint_flow:
                crops = inlier_crops(train_frames, options.flow_crop, options.flow_batch, rng)
                nll = flow.bits_per_dim(crops.to(device))
                loss = loss + options.flow_weight * nll
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if joint_flow:
                torch.nn.utils.clip_grad_norm_(flow.parameters(), 50.0)
            optimizer.step()
            step += 1
            values = {"loss": loss.item(), "ce": ce.item(), "js": js.item(), "nll": nll.item()}
            for key, value in values.items():
                sums[key] += value
            bar.set_postfix(ce=f"{values['ce']:.3f}", js=f"{values['js']:.3f}", nll=f"{values['nll']:.2f}")
        metrics = validate(segmenter, val_frames, config.batch_size, device)
        summary = {**{f"train_{k}": v / steps_per_epoch for k, v in sums.items()},
                   **{f"val_{k}": v for k, v in metrics.items()}}
        if log.record(epoch, **summary):
            best = {**summary, "epoch": epoch, "val_miou_before": before["miou"],
                    "val_ap_before": before["ap"], "val_msp_ap_before": before["msp_ap"]}
            _save(out / "nflowjs.pt", segmenter, base, config, options, best)
            if flow is not None:
                save_flow(out / "nflowjs_flow.pt", flow, epoch=epoch)
        tqdm.write(f"epoch {epoch}: loss {summary['train_loss']:.3f}  JS AP {metrics['ap']:.3f}  "
                   f"MSP AP {metrics['msp_ap']:.3f}  FPR95 {metrics['fpr95']:.3f}  "
                   f"mIoU {metrics['miou']:.3f}")
    if flow is not None:
        figure_flows = {}
        if (out / "nflowjs_flow_pretrained.pt").is_file():
            figure_flows["pre-trained"] = load_flow(out / "nflowjs_flow_pretrained.pt")
        best_flow = out / "nflowjs_flow.pt"
        label = "joint" if joint_flow else "flow"
        figure_flows[label] = load_flow(best_flow) if best_flow.is_file() else flow
        save_sample_figure(figure_flows, train_frames, out / "nflowjs_samples.png")
    result = {"checkpoint": str(out / "nflowjs.pt"), "negatives": options.negatives,
              "flow_final_bpd": flow_history[-1] if flow_history else math.nan, **best}
    return result
