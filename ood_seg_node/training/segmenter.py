# Copyright 2026 The ood_seg_node developers. Licensed under the Apache License, Version 2.0.
"""Train the builtin segmenter on the synthetic world (CPU-sized; obstacle pixels are void, never a class)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterable

import torch
import torch.nn.functional as F
from tqdm import tqdm

from ood_seg_node.checkpoints import Checkpoint, save_checkpoint
from ood_seg_node.cityscapes import IGNORE_INDEX, NUM_CLASSES
from ood_seg_node.label_spaces import CITYSCAPES
from ood_seg_node.segmenters.builtin import BuiltinSegmenter
from ood_seg_node.training import distributed
from ood_seg_node.training.common import (
    Batch,
    TrainingConfig,
    batches,
    check_label_space,
    cosine_lr,
    option,
    seed_everything,
    training_and_validation_frames,
)
from ood_seg_node.training.loop import Trainer

CHECKPOINT = "builtin_segmenter.pt"


@dataclass
class SegmenterTrainingConfig(TrainingConfig):
    """The ``ood_seg train-segmenter`` options: the shared ones with the segmenter's defaults, and crops."""

    out: str = option("runs/segmenter", "output folder for the checkpoint and log.json")
    sequences: int = option(60, "training sequences of the synthetic world")
    epochs: int = option(10, "training epochs, each followed by a validation")
    lr: float = option(3e-3, "base learning rate (AdamW, warm-up cosine schedule)")
    weight_decay: float = option(1e-4, "AdamW weight decay")
    # random crops keep CPU training short; inference runs on whole frames
    crop_height: int = option(160, "training crop height")
    crop_width: int = option(320, "training crop width")
    device: str = option("cpu", "torch device (under torchrun: cuda gives each process cuda:<LOCAL_RANK>)")


def evaluate_miou(model: BuiltinSegmenter, frames, batch_size: int,
                  device: torch.device | str = "cpu") -> dict[str, float]:
    """Validation mIoU over the frames' semantic labels (255 = void, obstacles included)."""
    from ood_seg_node.evaluation import ConfusionMatrix

    confusion = ConfusionMatrix(NUM_CLASSES)
    model.eval()
    with torch.inference_mode():
        for batch in batches(frames, batch_size, shuffle=False, augment=False):
            logits = model.run(batch.images.to(device)).logits.float().cpu()
            logits = F.interpolate(logits, size=batch.semantic.shape[-2:], mode="bilinear", align_corners=False)
            for pred, target in zip(logits.argmax(1).numpy(), batch.semantic.numpy()):
                confusion.update(pred, target)
    return confusion.compute()


class SegmenterTrainer(Trainer):
    """The builtin segmenter by cross-entropy on random crops (AdamW, warm-up cosine); best validation mIoU kept.

    After training, each training-free head's threshold is calibrated into the kept checkpoint.
    """

    name = "segmenter"
    monitor = "val_miou"

    def __init__(self, config: SegmenterTrainingConfig) -> None:
        seed_everything(config.seed)
        self.config = config
        self.device = torch.device(config.device)
        self.train_frames, self.val_frames = training_and_validation_frames(config)
        check_label_space(self.train_frames, CITYSCAPES.name, "the builtin segmenter")
        self.model = BuiltinSegmenter().to(self.device)
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        self.steps_per_epoch = -(-len(self.train_frames) // config.batch_size)
        self.run_config = asdict(config)
        self.iou_per_class: dict[str, float] = {}  # of the last validation, for the checkpoint's metrics

    def epoch(self) -> Iterable[Batch]:
        self.model.train()
        runtime = distributed.current()
        return batches(self.train_frames, self.config.batch_size, shuffle=True, augment=True,
                       crop=(self.config.crop_height, self.config.crop_width), seed=self.config.seed,
                       epoch=self.current_epoch, rank=runtime.rank, world_size=runtime.world_size)

    def schedule(self, step: int, total: int, base: float) -> float:
        return cosine_lr(step, total, base)

    def trained_modules(self) -> dict[str, torch.nn.Module]:
        return {"model": self.model}

    def losses(self, batch: Batch) -> dict[str, torch.Tensor]:
        """Cross-entropy of the upsampled logits; void pixels (obstacles included) ignored."""
        semantic = batch.semantic.to(self.device)
        logits = self.model.run(batch.images.to(self.device)).logits
        logits = F.interpolate(logits, size=semantic.shape[-2:], mode="bilinear", align_corners=False)
        return {"total": cross_entropy(logits, semantic)}

    def validate(self) -> dict[str, float]:
        """Validation mIoU; the per-class IoUs are kept for the checkpoint."""
        metrics = evaluate_miou(self.model, self.val_frames, self.config.batch_size, self.device)
        self.iou_per_class = metrics["iou_per_class"]
        return {"val_miou": metrics["miou"]}

    def checkpoints(self, record: dict[str, float]) -> dict[str, Checkpoint]:
        """``builtin_segmenter.pt``, with the input size the pipeline resizes to."""
        config = {"input_size": [self.config.height, self.config.width], "training": self.run_config}
        meta = {"kind": "segmenter", "name": "builtin", "config": config,
                "metrics": {"val_miou": record["val_miou"], "iou_per_class": self.iou_per_class}}
        return {CHECKPOINT: Checkpoint(self.model.state_dict(), meta)}

    def finish(self, best: dict[str, Any], out: Path) -> dict[str, Any]:
        """Calibrate the training-free heads' thresholds into the kept checkpoint."""
        return {"calibration": calibrate_logit_heads(out / CHECKPOINT, self.val_frames)}


def cross_entropy(logits: torch.Tensor, semantic: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over the non-void pixels of the (global) batch."""
    if not distributed.current().distributed:
        return F.cross_entropy(logits, semantic, ignore_index=IGNORE_INDEX)
    per_pixel = F.cross_entropy(logits, semantic, ignore_index=IGNORE_INDEX, reduction="none")
    return distributed.masked_mean(per_pixel, semantic != IGNORE_INDEX)


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
