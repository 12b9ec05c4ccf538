# Copyright 2026 The ood_seg_node developers. Licensed under the Apache License, Version 2.0.
"""Train the builtin segmenter on the synthetic world (CPU-sized; obstacle pixels are void, never a class)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm import tqdm

from ood_seg_node.checkpoints import save_checkpoint
from ood_seg_node.cityscapes import IGNORE_INDEX, NUM_CLASSES
from ood_seg_node.segmenters.builtin import BuiltinSegmenter
from ood_seg_node.training import TRAIN_SEEDS, VAL_SEEDS
from ood_seg_node.training.common import RunLog, batches, cosine_lr, seed_everything, synthetic_frames


@dataclass
class SegmenterTrainingConfig:
    out: str = "runs/segmenter"
    sequences: int = 60
    frames_per_sequence: int = 8
    val_sequences: int = 6
    epochs: int = 10
    batch_size: int = 8
    crop_height: int = 160  # random crops keep CPU training short; inference runs on whole frames
    crop_width: int = 320
    lr: float = 3e-3
    weight_decay: float = 1e-4
    height: int = 256
    width: int = 512
    seed: int = 0


def evaluate_miou(model: BuiltinSegmenter, frames, batch_size: int) -> dict[str, float]:
    """Validation mIoU over the frames' semantic labels (255 = void, obstacles included)."""
    from ood_seg_node.evaluation import ConfusionMatrix

    confusion = ConfusionMatrix(NUM_CLASSES)
    model.eval()
    with torch.inference_mode():
        for batch in batches(frames, batch_size, shuffle=False, augment=False):
            logits = model.run(batch.images).logits
            logits = F.interpolate(logits, size=batch.semantic.shape[-2:], mode="bilinear", align_corners=False)
            for pred, target in zip(logits.argmax(1).numpy(), batch.semantic.numpy()):
                confusion.update(pred, target)
    return confusion.compute()


def train_segmenter(config: SegmenterTrainingConfig) -> dict[str, float]:
    """Train, validate each epoch, keep the best-mIoU checkpoint at ``<out>/builtin_segmenter.pt``."""
    seed_everything(config.seed)
    out = Path(config.out)
    train = synthetic_frames(TRAIN_SEEDS[: config.sequences], config.frames_per_sequence,
                             config.height, config.width, desc="training frames")
    val = synthetic_frames(VAL_SEEDS[: config.val_sequences], config.frames_per_sequence,
                           config.height, config.width, desc="validation frames")
    model = BuiltinSegmenter()
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    steps_per_epoch = -(-len(train) // config.batch_size)
    total = steps_per_epoch * config.epochs
    log = RunLog(out, asdict(config), monitor="val_miou")
    step = 0
    best: dict[str, float] = {}
    for epoch in range(1, config.epochs + 1):
        model.train()
        running = 0.0
        crop = (config.crop_height, config.crop_width)
        bar = tqdm(batches(train, config.batch_size, shuffle=True, augment=True, crop=crop), total=steps_per_epoch,
                   desc=f"epoch {epoch}/{config.epochs}", unit="batch")
        for batch in bar:
            for group in optimizer.param_groups:
                group["lr"] = cosine_lr(step, total, config.lr)
            logits = model.run(batch.images).logits
            logits = F.interpolate(logits, size=batch.semantic.shape[-2:], mode="bilinear", align_corners=False)
            loss = F.cross_entropy(logits, batch.semantic, ignore_index=IGNORE_INDEX)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            running += float(loss)
            step += 1
            bar.set_postfix(loss=f"{float(loss):.3f}")
        metrics = evaluate_miou(model, val, config.batch_size)
        summary = {"train_loss": running / steps_per_epoch, "val_miou": metrics["miou"]}
        if log.record(epoch, **summary):
            best = {**summary, "epoch": epoch}
            save_checkpoint(
                out / "builtin_segmenter.pt", model.state_dict(), kind="segmenter", name="builtin",
                config={"input_size": [config.height, config.width], "training": asdict(config)},
                metrics={"val_miou": metrics["miou"], "iou_per_class": metrics.get("iou_per_class", {})},
            )
        tqdm.write(f"epoch {epoch}: loss {summary['train_loss']:.3f}  val mIoU {metrics['miou']:.3f}")
    best["calibration"] = calibrate_logit_heads(out / "builtin_segmenter.pt", val)
    return best


def calibrate_logit_heads(checkpoint: str | Path, frames) -> dict[str, float]:
    """Store each training-free head's best-F1 threshold on validation frames in the segmenter checkpoint.

    The node's ``threshold`` parameter defaults to these (GenVal-style: thresholds fixed on synthetic
    validation data rather than guessed), since a logit score's scale depends on the segmenter.
    """
    from ood_seg_node.checkpoints import load_checkpoint
    from ood_seg_node.heads import build_head
    from ood_seg_node.segmenters import build_segmenter
    from ood_seg_node.training.common import evaluate_head

    loaded = load_checkpoint(checkpoint, kind="segmenter", name="builtin")
    segmenter = build_segmenter("builtin", str(checkpoint))
    calibration = {}
    for name in ("msp", "maxlogit", "energy", "entropy"):
        result = evaluate_head(segmenter, build_head(name, segmenter), frames)
        calibration[name] = result["threshold"]
        tqdm.write(f"calibration {name}: threshold {result['threshold']:.4f} (val AP {result['ap']:.3f})")
    meta = {k: v for k, v in loaded.meta.items() if k not in ("format", "kind", "name", "config")}
    save_checkpoint(checkpoint, loaded.state_dict, kind="segmenter", name="builtin", config=loaded.config,
                    **{**meta, "calibration": calibration})
    return calibration
