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

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from ood_seg_node.checkpoints import Checkpoint, load_checkpoint, save_checkpoint
from ood_seg_node.cityscapes import IGNORE_INDEX, OOD_ANOMALY
from ood_seg_node.datasets.base import Frame
from ood_seg_node.heads.nflowjs import NFlowJS, js_to_uniform
from ood_seg_node.segmenters import Segmenter, SegmenterError
from ood_seg_node.training import distributed
from ood_seg_node.training.common import Batch, HeadTrainingConfig, SampledBatch, batches, cosine_lr, option
from ood_seg_node.training.distributed import masked_mean
from ood_seg_node.training.flows import PatchFlow
from ood_seg_node.training.head_trainer import TRAINERS, HeadTrainer
from ood_seg_node.training.segmenter import cross_entropy

NEGATIVES = ("flow", "procedural", "none")
PRETRAINED_FLOW = "nflowjs_flow_pretrained.pt"
FLOW = "nflowjs_flow.pt"  # the flow of the kept epoch, next to the head checkpoint
SAMPLES = "nflowjs_samples.png"


@dataclass
class NFlowJSOptions:
    """The ``--nflowjs-*`` options: negatives, loss weights, the flow's pre-training and sampling, patch sizes."""

    negatives: str = option("flow", "negatives pasted during fine-tuning: jointly trained flow samples (the "
                                    "method), procedural obstacle patches, or none (plain fine-tuning)",
                            choices=NEGATIVES)
    loss_weight: float = option(1.0, "lambda, weight of the JS-to-uniform loss on pasted pixels")
    flow_weight: float = option(1.0, "weight of the flow's NLL (bits/dim) on inlier crops in the joint loss")
    flow_steps: int = option(400, "flow pre-training steps (maximum likelihood on inlier crops)")
    flow_batch: int = option(32, "inlier crops per flow step")
    flow_crop: int = option(32, "side of the inlier crops the flow is trained on, a multiple of 4")
    flow_lr: float = option(1e-3, "flow pre-training learning rate")
    joint_flow_lr: float = option(1e-4, "flow learning rate during joint fine-tuning")
    flow_hidden: int = option(48, "width of the flow's coupling networks")
    flow_checkpoint: str = option("", "start from this pre-trained flow (a nflowjs_flow.pt) and skip pre-training")
    freeze_flow: bool = option(False, "ablation: paste samples of the pre-trained flow without training it jointly")
    patch_min: int = option(8, "smallest pasted negative patch side in pixels")
    patch_max: int = option(48, "largest pasted negative patch side in pixels")
    patches_per_image: int = option(1, "negative patches pasted into each training image")
    temperature: float = option(1.0, "standard deviation of the flow's latent samples")

    def __post_init__(self) -> None:
        if self.negatives not in NEGATIVES:
            raise ValueError(f"--nflowjs-negatives must be one of {', '.join(NEGATIVES)}, got {self.negatives!r}")
        if not 4 <= self.patch_min <= self.patch_max:
            raise ValueError(f"need 4 <= --nflowjs-patch-min <= --nflowjs-patch-max, got "
                             f"{self.patch_min}, {self.patch_max}")


# ---------------------------------------------------------------------------------------------- flow


def flow_checkpoint(flow: PatchFlow, **meta: Any) -> Checkpoint:
    """A flow checkpoint (kind ``flow``): its weights, architecture config and ``meta``."""
    return Checkpoint(flow.state_dict(), {"kind": "flow", "name": "patchflow", "config": dict(flow.config), **meta})


def save_flow(path: str | Path, flow: PatchFlow, **meta: Any) -> None:
    """Write :func:`flow_checkpoint` to ``path``."""
    checkpoint = flow_checkpoint(flow, **meta)
    save_checkpoint(path, checkpoint.state_dict, **checkpoint.meta)


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
                    flow: PatchFlow | None, rng: np.random.Generator, *, generator: torch.Generator | None = None
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Paste negatives at random positions; returns (images, semantic with pasted pixels void, negative mask).

    Flow patches stay attached to the autograd graph, so the segmenter's loss on them reaches the flow.
    ``generator`` draws the flow's latents (default: torch's global generator).
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
                patch = flow.sample(1, side, temperature=options.temperature, generator=generator)[0]
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


def validation_metrics(segmenter: Segmenter, frames: Sequence[Frame], batch_size: int,
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
    smallest = min(frames[0].image.shape[:2])
    sides = [side for side in sides if side <= smallest] or [smallest]  # frames smaller than a patch size
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


@TRAINERS.register("nflowjs")
class NFlowJSTrainer(HeadTrainer):
    """Flow pre-training, then segmenter and flow fine-tuned jointly by Adam with a warm-up cosine schedule.

    The segmenter before fine-tuning is validated as epoch 0; the best JS AP epoch is kept, its flow
    beside it, and a figure of real patches and flow samples is drawn at the end.
    """

    name = "nflowjs"
    options_class = NFlowJSOptions
    default_lr = 5e-4  # of the segmenter; the flow's is --nflowjs-joint-flow-lr
    validate_before = True

    def __init__(self, config: HeadTrainingConfig, options: NFlowJSOptions) -> None:
        super().__init__(config, options)
        self.options = options
        self.finetuned = copy.deepcopy(self.segmenter).requires_grad_(True)  # ``segmenter`` stays the base
        self.head = NFlowJS(self.finetuned, self.segmenter.identity)
        self.flow: PatchFlow | None = None
        if options.negatives == "flow":
            given = options.flow_checkpoint
            self.flow = (load_flow(given) if given else PatchFlow(hidden=options.flow_hidden)).to(self.device)
        self.joint_flow = self.flow is not None and not options.freeze_flow
        if self.flow is not None and options.freeze_flow:
            self.flow.requires_grad_(False)  # pre-training (if any) trains it, fine-tuning does not
        groups = [{"params": list(self.finetuned.parameters()), "lr": self.lr}]
        if self.joint_flow:
            groups.append({"params": list(self.flow.parameters()), "lr": options.joint_flow_lr})
        self.optimizer = torch.optim.Adam(groups)

    def check_segmenter(self) -> None:
        """NFlowJS fine-tunes the segmenter, so it must be a module whose weights train here (not TorchScript)."""
        if self.segmenter.spec.split(":")[0] == "torchscript":
            raise SegmenterError(f"NFlowJS fine-tunes the segmenter; {self.segmenter.spec} cannot be fine-tuned "
                                 "(a TorchScript file holds no trainable module: use its source model)")

    def pretrain(self, out: Path) -> dict[str, Any]:
        """Pre-train the flow (unless one was given), saved as ``nflowjs_flow_pretrained.pt``."""
        if self.flow is None:
            return {}
        report: dict[str, Any] = {}
        if not self.options.flow_checkpoint:
            self.flow.requires_grad_(True)
            # every process pre-trains the same flow (same seed); rank 0's is what DDP starts from
            history = pretrain_flow(self.flow, self.train_frames, self.options, self.device, seed=self.config.seed)
            if distributed.current().main:
                save_flow(out / PRETRAINED_FLOW, self.flow, bits_per_dim=history[-1])
            report["flow_final_bpd"] = history[-1]
        if self.options.freeze_flow:
            self.flow.requires_grad_(False)
        return report

    def trained_modules(self) -> dict[str, torch.nn.Module]:
        """The fine-tuned segmenter and, when trained jointly, the flow."""
        return {"segmenter": self.finetuned, **({"flow": self.flow} if self.joint_flow else {})}

    def state_modules(self) -> dict[str, torch.nn.Module]:
        """The fine-tuned segmenter and the flow (pre-trained or joint), which a resumed run does not redo."""
        return {"segmenter": self.finetuned, **({"flow": self.flow} if self.flow is not None else {})}

    def epoch(self) -> Iterable[Batch]:
        self.finetuned.train()
        _freeze_batchnorm(self.finetuned)
        if self.flow is not None:
            self.flow.train()
        return self.train_batches()

    def schedule(self, step: int, total: int, base: float) -> float:
        return cosine_lr(step, total, base, warmup=max(1, min(10, total // 10)))

    def losses(self, batch: Batch) -> dict[str, torch.Tensor]:
        """Paste negatives; CE on inliers + lambda JSD-to-uniform on negatives (+ the flow's NLL when joint).

        Each image's negatives come from its own keyed generators and the flow's inlier crops are split
        across processes; the flow's dequantisation noise comes from each process's global generator.
        """
        options, device = self.options, self.device
        images, semantic = batch.images.to(device), batch.semantic.to(device)
        # the world's own obstacles are never learnt (already void in ``semantic``; made sure here)
        semantic = semantic.masked_fill(batch.ood.to(device) == OOD_ANOMALY, IGNORE_INDEX)
        pasted = []
        for i, rng in enumerate(self.sample_rngs(batch)):
            generator = torch.Generator(device=device).manual_seed(int(rng.integers(2**62)))
            pasted.append(paste_negatives(images[i:i + 1], semantic[i:i + 1], options, self.flow, rng,
                                          generator=generator))
        images, semantic, negative = (torch.cat([p[k] for p in pasted]) for k in range(3))
        logits = self.finetuned.run(images).logits
        logits = F.interpolate(logits, size=semantic.shape[-2:], mode="bilinear", align_corners=False)
        ce = cross_entropy(logits, semantic)
        if distributed.current().distributed:
            js = masked_mean(js_to_uniform(logits), negative)
        else:
            js = js_to_uniform(logits)[negative].mean() if bool(negative.any()) else logits.new_zeros(())
        loss = ce + options.loss_weight * js
        nll = logits.new_zeros(())
        if self.joint_flow:
            nll = self.flow.bits_per_dim(self.flow_crops(batch).to(device))
            loss = loss + options.flow_weight * nll
        return {"total": loss, "train_ce": ce, "train_js": js, "train_nll": nll}

    def flow_crops(self, batch: Batch) -> torch.Tensor:
        """The current process's share of the step's ``flow_batch`` inlier crops, each from its own keyed generator."""
        options = self.options
        if not isinstance(batch, SampledBatch):
            return inlier_crops(self.train_frames, options.flow_crop, options.flow_batch, self.rng)
        runtime = distributed.current()
        crops = [inlier_crops(self.train_frames, options.flow_crop, 1, batch.step_rng(stream=6 + k))
                 for k in range(runtime.rank, options.flow_batch, runtime.world_size)]
        return torch.cat(crops)

    def before_optimizer_step(self) -> None:
        if self.joint_flow:
            torch.nn.utils.clip_grad_norm_(self.flow.parameters(), 50.0)

    def validate(self) -> dict[str, float]:
        """JS and MSP AP / AUROC / FPR95 (+ best-F1 thresholds) and mIoU of the fine-tuned segmenter."""
        metrics = validation_metrics(self.finetuned, self.val_frames, self.config.batch_size, self.device)
        return {f"val_{key}": value for key, value in metrics.items()}

    def head_state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """The head's weights (the fine-tuned segmenter's) and the base segmenter with its input size."""
        base = self.segmenter
        input_size = list(base.default_input_size or (self.config.height, self.config.width))
        config = {"segmenter_spec": base.spec, "input_size": input_size, "score": "1 - JSD(p||U)/JSD_max"}
        return self.head.state_dict(), config

    def checkpoints(self, record: dict[str, float]) -> dict[str, Checkpoint]:
        """The head checkpoint and, beside it, the flow of the same epoch."""
        files = super().checkpoints(record)
        if self.flow is not None:
            files[FLOW] = flow_checkpoint(self.flow, epoch=record["epoch"])
        return files

    def finish(self, best: dict[str, Any], out: Path) -> dict[str, Any]:
        """Draw real inlier patches next to samples of the pre-trained and the kept flow."""
        if self.flow is None:
            return {}
        flows = {"pre-trained": load_flow(out / PRETRAINED_FLOW)} if (out / PRETRAINED_FLOW).is_file() else {}
        flows["joint" if self.joint_flow else "flow"] = load_flow(out / FLOW)
        save_sample_figure(flows, self.train_frames, out / SAMPLES)
        return {"samples": str(out / SAMPLES)}
