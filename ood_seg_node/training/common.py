# Copyright 2026 The ood_seg_node developers. Licensed under the Apache License, Version 2.0.
"""What every trainer shares: options that are also flags, cached synthetic frames, batching, LR schedules."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import Any, Iterator, Sequence

import numpy as np
import torch
from tqdm import tqdm

from ood_seg_node.datasets.base import Frame
from ood_seg_node.training import TRAIN_SEEDS, VAL_SEEDS


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def synthetic_frames(
    seeds: Sequence[int], frames_per_sequence: int, height: int, width: int, *, desc: str = "world"
) -> list[Frame]:
    """Render ``frames_per_sequence`` frames (spread over the sequence) of each seed's world, in memory."""
    from ood_seg_node.datasets.synthetic import SyntheticSequence

    frames: list[Frame] = []
    stride = 3  # frames apart, so that the cached frames of one sequence are not near-duplicates
    with tqdm(total=len(seeds) * frames_per_sequence, desc=f"rendering {desc}", unit="frame") as bar:
        for seed in seeds:
            sequence = SyntheticSequence(seed, frames_per_sequence * stride, height=height, width=width)
            for index in range(0, frames_per_sequence * stride, stride):
                frames.append(sequence[index])
                bar.update()
    return frames


def training_and_validation_frames(config: TrainingConfig) -> tuple[Sequence[Frame], Sequence[Frame]]:
    """The run's training and validation frames.

    ``--dataset synthetic`` (default): the synthetic world's ``TRAIN_SEEDS`` and ``VAL_SEEDS`` drives, rendered
    in memory. A real dataset (``cityscapes:<root>``, ``streethazards:<root>``, ``bdd-anomaly:<root>``): its
    training and validation splits, read from disk and resized to (height, width) on access, validation frames
    with ``--outliers`` objects pasted (:func:`ood_seg_node.training.real_data.training_sources`).
    """
    from ood_seg_node.training.real_data import training_sources

    sources = training_sources(config.dataset, config.outliers, height=config.height, width=config.width,
                               seed=config.seed, max_train=config.max_train or None, max_val=config.max_val or None)
    if sources is not None:
        return sources.train, sources.val
    return (synthetic_frames(TRAIN_SEEDS[: config.sequences], config.frames_per_sequence, config.height,
                             config.width, desc="training frames"),
            synthetic_frames(VAL_SEEDS[: config.val_sequences], config.frames_per_sequence, config.height,
                             config.width, desc="validation frames"))


def check_label_space(frames: Sequence[Frame], expected: str, model: str) -> None:
    """Refuse training data whose class ids are not those the model predicts (one line).

    Raises:
        ValueError: the frames' label space differs from ``expected``.
    """
    found = frames[0].label_space if len(frames) else expected
    if found != expected:
        raise ValueError(f"the training data's classes are {found}, {model} predicts {expected}: train on data "
                         f"labelled in its classes")


@dataclass
class Batch:
    """Images (B, 3, H, W) in [0, 1]; semantic (B, H, W) long with 255 void; ood (B, H, W) long 0/1/255."""

    images: torch.Tensor
    semantic: torch.Tensor
    ood: torch.Tensor


def to_batch(frames: Sequence[Frame], *, flip: Sequence[bool] | None = None) -> Batch:
    images, semantic, ood = [], [], []
    for i, frame in enumerate(frames):
        image, sem, gt = frame.image, frame.semantic, frame.ood_gt
        if flip is not None and flip[i]:
            image, sem, gt = image[:, ::-1], sem[:, ::-1], gt[:, ::-1]
        images.append(torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1))
        semantic.append(torch.from_numpy(np.ascontiguousarray(sem)).long())
        ood.append(torch.from_numpy(np.ascontiguousarray(gt)).long())
    return Batch(torch.stack(images).float() / 255.0, torch.stack(semantic), torch.stack(ood))


@dataclass
class SampledBatch(Batch):
    """A training batch that knows where its random draws come from, independently of the process count.

    ``positions`` are its samples' places in the epoch's order; every draw keyed on them (or on ``step``)
    is the same whichever process holds the sample, so N processes draw what one process draws.
    """

    seed: int = 0
    epoch: int = 0
    step: int = 0
    positions: tuple[int, ...] = ()

    def sample_rng(self, index: int, stream: int = 3) -> np.random.Generator:
        """The generator of sample ``index``'s own draws (outlier pasting, negatives, ...)."""
        return _keyed_rng(self.seed, self.epoch, stream, self.positions[index])

    def step_rng(self, stream: int = 4, rank: int = 0) -> np.random.Generator:
        """A generator of draws made once per step (and per ``rank`` for per-process draws)."""
        return _keyed_rng(self.seed, self.epoch, stream, self.step, rank)


def _keyed_rng(*key: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([int(k) for k in key]))


def epoch_order(count: int, *, shuffle: bool, seed: int, epoch: int, world_size: int = 1) -> list[int]:
    """The epoch's sample order, as ``torch.utils.data.DistributedSampler`` draws it on every rank.

    A permutation from ``seed + epoch`` (identity without ``shuffle``), padded with its own beginning to a
    multiple of ``world_size`` (nothing is padded when the world size divides ``count``).
    """
    if shuffle:
        generator = torch.Generator().manual_seed(seed + epoch)
        order = torch.randperm(count, generator=generator).tolist()
    else:
        order = list(range(count))
    padded = -(-count // world_size) * world_size
    while len(order) < padded:
        order += order[: padded - len(order)]
    return order


def batches(frames: Sequence[Frame], batch_size: int, *, shuffle: bool, augment: bool,
            crop: tuple[int, int] | None = None, seed: int | None = None, epoch: int = 1, rank: int = 0,
            world_size: int = 1) -> Iterator[Batch]:
    """One epoch of batches; augmentation is a horizontal flip (the world is left/right symmetric).

    ``crop`` (H, W) cuts one random window per batch, at full scale, to make CPU training steps cheaper.

    With a ``seed`` (training), the epoch's order comes from :func:`epoch_order`, each sample's flip from
    ``(seed, epoch, its position)`` and each global batch's crop window from ``(seed, epoch, step)``:
    process ``rank`` of ``world_size`` yields its interleaved share (``batch_size / world_size`` samples) of
    each global batch of ``batch_size``, as :class:`SampledBatch`, and the union of the shares is what one
    process draws. Without a seed the draws come from Python's ``random``, unsharded.
    """
    if seed is None:
        yield from _unkeyed_batches(frames, batch_size, shuffle=shuffle, augment=augment, crop=crop)
        return
    if batch_size % world_size:
        raise ValueError(f"--batch-size {batch_size} is not divisible by the {world_size} training processes "
                         "(the global batch is split evenly across them)")
    order = epoch_order(len(frames), shuffle=shuffle, seed=seed, epoch=epoch, world_size=world_size)
    for step, start in enumerate(range(0, len(order), batch_size)):
        positions = tuple(range(start, min(start + batch_size, len(order))))[rank::world_size]
        chosen = [frames[order[p]] for p in positions]
        flips = [bool(_keyed_rng(seed, epoch, 1, p).random() < 0.5) for p in positions] if augment else None
        batch = to_batch(chosen, flip=flips)
        if crop is not None:
            height, width = batch.semantic.shape[-2:]
            draw = _keyed_rng(seed, epoch, 2, step)
            top = int(draw.integers(0, max(0, height - crop[0]) + 1))
            left = int(draw.integers(0, max(0, width - crop[1]) + 1))
            window = (slice(None), slice(top, top + crop[0]), slice(left, left + crop[1]))
            batch = Batch(batch.images[(slice(None), *window)], batch.semantic[window], batch.ood[window])
        yield SampledBatch(batch.images, batch.semantic, batch.ood, seed=seed, epoch=epoch, step=step,
                           positions=positions)


def _unkeyed_batches(frames: Sequence[Frame], batch_size: int, *, shuffle: bool, augment: bool,
                     crop: tuple[int, int] | None = None) -> Iterator[Batch]:
    order = list(range(len(frames)))
    if shuffle:
        random.shuffle(order)
    for start in range(0, len(order), batch_size):
        chosen = [frames[i] for i in order[start:start + batch_size]]
        flips = [random.random() < 0.5 for _ in chosen] if augment else None
        batch = to_batch(chosen, flip=flips)
        if crop is not None:
            height, width = batch.semantic.shape[-2:]
            top = random.randint(0, max(0, height - crop[0]))
            left = random.randint(0, max(0, width - crop[1]))
            window = (slice(None), slice(top, top + crop[0]), slice(left, left + crop[1]))
            batch = Batch(batch.images[(slice(None), *window)], batch.semantic[window], batch.ood[window])
        yield batch


def cosine_lr(step: int, total: int, base: float, warmup: int = 50) -> float:
    if step < warmup:
        return base * (step + 1) / warmup
    return 0.5 * base * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))


def poly_lr(step: int, total: int, base: float, power: float = 0.9) -> float:
    """The 'poly' schedule of DeepLab / ObsNet training."""
    return base * (1 - min(step, total - 1) / total) ** power


def option(default: Any, help: str, *, choices: Sequence[str] = ()) -> Any:
    """A dataclass field that is also a command-line flag.

    ``ood_seg_node.commands.add_config_arguments`` turns each field of an options dataclass into a flag;
    ``help`` and ``choices`` are kept in the field's metadata for it, so that a trainer's options, their
    defaults and their documentation are written once.
    """
    return field(default=default, metadata={"help": help, "choices": tuple(choices)})


@dataclass
class TrainingConfig:
    """Options every training run shares: where it writes, which frames, how long, how many at once."""

    out: str = option("", "output folder for the checkpoint and log.json (empty: runs/<head>)")
    sequences: int = option(40, "synthetic: training sequences of the world")
    frames_per_sequence: int = option(8, "frames rendered per training and validation sequence")
    val_sequences: int = option(6, "validation sequences (checkpoint selection, thresholds)")
    epochs: int = option(6, "training epochs, each followed by a validation")
    batch_size: int = option(8, "frames per training and validation batch")
    lr: float = option(0.0, "base learning rate (0: the head's own default)")
    height: int = option(256, "frame height")
    width: int = option(512, "frame width")
    seed: int = option(0, "seed of every random draw")
    dataset: str = option("synthetic", "training data: synthetic, cityscapes:<root>, streethazards:<root> or "
                                       "bdd-anomaly:<root> (docs/training_data.md)")
    outliers: str = option("procedural", "objects pasted as anomalies (RPL's training, real data's validation "
                                         "frames): procedural, coco:<root> or folder:<path>")
    max_train: int = option(0, "real data: at most this many training frames, spread over the split (0: all)")
    max_val: int = option(0, "real data: at most this many validation frames (0: all)")
    resume: str = option("", "continue the run whose output folder (its last.pt) this is; --out defaults to it")
    amp: str = option("off", "mixed precision: bf16 or fp16 autocast (fp16 with gradient scaling) on CUDA; "
                             "bf16 also on CPU", choices=("off", "bf16", "fp16"))


@dataclass
class HeadTrainingConfig(TrainingConfig):
    """Options shared by every ``ood_seg train-head --head <name>`` run (each head adds its own, prefixed)."""

    head: str = ""
    segmenter: str = option("builtin", "segmenter the head is trained on (builtin, torchvision:<arch>, ...)")
    segmenter_checkpoint: str = option("", "its weights (empty: the shipped ones)")
    device: str = option("cpu", "torch device")


def head_scores(segmenter, head, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Native-resolution head scores and segmenter logits for a batch, without gradients."""
    with torch.inference_mode():
        out = segmenter.run(images)
        return head.score(images, out), out.logits


def evaluate_head(segmenter, head, frames: Sequence[Frame], batch_size: int = 8,
                  device: torch.device | str = "cpu") -> dict[str, float]:
    """Validation AP / AUROC / FPR95 of ``head`` over frames' anomaly labels, and the best-F1 threshold.

    Scores are computed on ``device`` (where the models are) at native resolution and upsampled to the label
    size, as the pipeline does; the metrics accumulate on the CPU.
    """
    from ood_seg_node.evaluation import StreamingOODMetrics
    from ood_seg_node.evaluation.components import best_f1_threshold

    metrics = StreamingOODMetrics()
    head.eval()
    segmenter.eval()
    for batch in batches(frames, batch_size, shuffle=False, augment=False):
        scores, _ = head_scores(segmenter, head, batch.images.to(device))
        scores = torch.nn.functional.interpolate(
            scores[:, None].float(), size=batch.ood.shape[-2:], mode="bilinear", align_corners=False
        )[:, 0].cpu()
        for score, label in zip(scores.numpy(), batch.ood.numpy().astype(np.uint8)):
            metrics.update(score, label)
    result = metrics.compute()
    return {"ap": result["ap"], "auroc": result["auroc"], "fpr95": result["fpr95"],
            "threshold": float(best_f1_threshold(metrics))}
