# Copyright 2026 The ood_seg_node developers. Licensed under the Apache License, Version 2.0.
"""SegFormer from a local Hugging Face model directory (``save_pretrained`` layout), never downloaded.

SegFormer (Xie et al., "SegFormer: Simple and Efficient Design for Semantic Segmentation with
Transformers", NeurIPS 2021) as published by NVIDIA on the Hugging Face hub
(``nvidia/segformer-b0-finetuned-cityscapes-1024-1024`` ... ``-b5-``). ``segmenter_checkpoint`` is the
directory a team already has (``config.json``, ``model.safetensors`` or ``pytorch_model.bin``,
``preprocessor_config.json``); ``transformers`` reads it with ``local_files_only=True``, so the network,
its key names and their conversion between ``transformers`` versions are the official ones.

The forward is the official one with one cut: the decode head runs as ``transformers`` wrote it
(per-stage MLP projections, bilinear upsampling to stride 4 with ``align_corners=False``, concatenation,
``linear_fuse``, ``batch_norm``, ReLU, dropout) but its final 1x1 ``classifier`` is moved out of it and
applied here, so the forward can return what the classifier reads. Taps: ``stage1``/``stage2`` = the
encoder's first two hidden states (strides 4, 8), ``stage3`` = its last (stride 32), ``neck`` = the fused
decoder features at stride 4, so ``classify(neck) == logits``.

The input normalisation is the directory's ``preprocessor_config.json`` (the Cityscapes checkpoints:
rescale by 1/255, ImageNet mean/std, RGB). Its ``do_resize`` is not applied: like the other published
segmenters here, SegFormer runs at the input's size (``inference_size`` overrides it). Logits stay at
stride 4; ``post_process_semantic_segmentation`` upsamples them bilinearly with ``align_corners=False``.
"""

from __future__ import annotations

import json
import pickle
import re
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ood_seg_node.checkpoints import CheckpointError, first_sentence
from ood_seg_node.cityscapes import CLASS_NAMES
from ood_seg_node.layers import Normalise
from ood_seg_node.segmenters.base import SEGMENTERS, Segmenter, SegmenterError

NAME = "segformer"
CONFIG = "config.json"
PREPROCESSOR = "preprocessor_config.json"
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                "pytorch_model.bin.index.json")
PUBLISHED = "nvidia/segformer-b0-finetuned-cityscapes-1024-1024"
# SegformerImageProcessor's defaults, for keys an older preprocessor_config.json leaves out
DEFAULT_RESCALE = 1 / 255
DEFAULT_MEAN = (0.485, 0.456, 0.406)
DEFAULT_STD = (0.229, 0.224, 0.225)
KEY_PROBLEMS = {"missing_keys": "missing", "unexpected_keys": "unexpected", "mismatched_keys": "wrong-shape"}


class HFSegFormer(Segmenter):
    """``segformer``: a ``SegformerForSemanticSegmentation`` split at its classifier; runs at the input's size.

    ``segformer`` and ``decode_head`` are the official model's own submodules (their state-dict keys are
    the ``transformers`` keys); ``classifier`` is the decode head's final 1x1 convolution.
    """

    def __init__(self, model: nn.Module, normalise: Normalise) -> None:
        config = model.config
        hidden = list(config.hidden_sizes)
        super().__init__(NAME, {"stage1": hidden[0], "stage2": hidden[min(1, len(hidden) - 1)],
                                "stage3": hidden[-1], "neck": config.decoder_hidden_size})
        self.segformer = model.segformer
        self.decode_head = model.decode_head
        self.classifier: nn.Conv2d = model.decode_head.classifier
        self.decode_head.classifier = nn.Identity()  # the head now ends at the features the classifier reads
        self.normalise = normalise
        self.default_input_size = None  # the Mix Transformer has no positional code: any size runs

    def forward_taps(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        hidden = self.segformer(x, output_hidden_states=True, return_dict=True).hidden_states
        neck = self.decode_head(hidden)
        return self.classifier(neck), hidden[0], hidden[min(1, len(hidden) - 1)], hidden[-1], neck

    def classify(self, neck: torch.Tensor) -> torch.Tensor:
        return self.classifier(neck)

    def neck_layers(self) -> list[nn.Module]:
        """``linear_fuse``, ``batch_norm``, ReLU (applied to the concatenated stage projections)."""
        head = self.decode_head
        return [head.linear_fuse, head.batch_norm, head.activation]


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CheckpointError(f"{path} is not readable JSON ({first_sentence(error)})") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{path} is not a JSON object")
    return data


def preprocessor_normalise(path: Path) -> Normalise:
    """The normalisation of a ``preprocessor_config.json`` as one ``(rgb01 - mean) / std``.

    The processor computes ``(rgb255 * rescale - mean) / std``; the pipeline feeds RGB in [0, 1], so
    ``mean`` and ``std`` are divided by ``255 * rescale`` (``rescale`` = 1 when ``do_rescale`` is false).
    """
    config = _read_json(path)
    scale = 255.0 * (float(config.get("rescale_factor", DEFAULT_RESCALE)) if config.get("do_rescale", True) else 1.0)
    if config.get("do_normalize", True):
        mean, std = config.get("image_mean", DEFAULT_MEAN), config.get("image_std", DEFAULT_STD)
    else:
        mean, std = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
    mean = [mean] * 3 if isinstance(mean, (int, float)) else list(mean)
    std = [std] * 3 if isinstance(std, (int, float)) else list(std)
    if len(mean) != 3 or len(std) != 3 or not all(float(s) > 0 for s in std):
        raise CheckpointError(f"{path}: image_mean / image_std must be 3 values (std > 0), got {mean} / {std}")
    return Normalise(tuple(float(m) / scale for m in mean), tuple(float(s) / scale for s in std))


def check_cityscapes_classes(config: Any, directory: str) -> None:
    """Refuse ``config.id2label`` unless it is the 19 Cityscapes train-id classes in order.

    The node's palette, ``ood/labels_color`` and evaluation's mIoU index classes by train id, so a model
    of another label set (ADE20K's 150 classes...) would be coloured and scored wrongly: it is refused.
    """
    labels = {int(k): str(v) for k, v in dict(config.id2label).items()}
    names = tuple(labels.get(i, "") for i in range(len(labels)))
    if len(names) != len(CLASS_NAMES):
        raise SegmenterError(f"{directory} predicts {len(names)} classes; segmenter {NAME} needs the 19 "
                             "Cityscapes classes (a *-finetuned-cityscapes-* model)")
    for index, (name, expected) in enumerate(zip(names, CLASS_NAMES)):
        if name.strip().lower() != expected:
            raise SegmenterError(f"{directory}: config.id2label[{index}] is {name!r}, expected {expected!r} "
                                 f"(segmenter {NAME} needs the 19 Cityscapes classes in train-id order)")


def check_directory(checkpoint: str) -> Path:
    """The model directory, refused in one line unless it holds a config, weights and a preprocessor config."""
    directory = Path(checkpoint).expanduser()
    if not directory.exists():
        raise CheckpointError(f"{checkpoint} does not exist (segmenter {NAME} reads a local model directory)")
    if not directory.is_dir():
        raise CheckpointError(f"{checkpoint} is a file; segmenter {NAME} reads a model directory "
                              f"(save_pretrained layout: {CONFIG}, model.safetensors, {PREPROCESSOR})")
    if not (directory / CONFIG).is_file():
        raise CheckpointError(f"{checkpoint} has no {CONFIG}: not a save_pretrained model directory")
    if not any((directory / name).is_file() for name in WEIGHT_FILES):
        raise CheckpointError(f"{checkpoint} has no weights ({' or '.join(WEIGHT_FILES[::2])})")
    if not (directory / PREPROCESSOR).is_file():
        raise CheckpointError(f"{checkpoint} has no {PREPROCESSOR} (the input normalisation); save the "
                              "image processor beside the model")
    return directory


def _transformers() -> Any:
    try:
        import transformers
    except ImportError:
        raise SegmenterError(f"segmenter {NAME} needs the transformers package: pip install transformers") from None
    return transformers


def load_config(directory: Path) -> Any:
    """The directory's ``SegformerConfig``, refused in one line unless it describes a segmentation SegFormer."""
    what = f"{directory} does not fit {NAME}"
    try:
        config = _transformers().SegformerConfig.from_pretrained(directory, local_files_only=True)
    except (OSError, ValueError, TypeError, KeyError) as error:
        raise CheckpointError(f"{what}: {first_sentence(error)}") from None
    if getattr(config, "model_type", "") != "segformer" or not getattr(config, "reshape_last_stage", True):
        raise CheckpointError(f"{what}: {CONFIG} is a {config.model_type!r} model, not a SegFormer for segmentation")
    return config


def load_model(directory: Path, config: Any) -> nn.Module:
    """``SegformerForSemanticSegmentation.from_pretrained(directory, local_files_only=True)``, strictly.

    ``transformers`` fills missing weights with random ones and only logs it; here a missing, unexpected or
    mis-shaped key refuses the directory, naming the first.
    """
    what = f"{directory} does not fit {NAME}"
    transformers = _transformers()
    log = transformers.utils.logging
    progress, verbosity = log.is_progress_bar_enabled(), log.get_verbosity()
    # its progress bar and key report would flood a node's log; the key checks below report in one line
    log.disable_progress_bar()
    log.set_verbosity_error()
    try:
        # mismatched sizes are loaded as random weights and listed, so the check below can name the key
        model, info = transformers.SegformerForSemanticSegmentation.from_pretrained(
            directory, config=config, local_files_only=True, output_loading_info=True, ignore_mismatched_sizes=True)
    except pickle.UnpicklingError as error:  # pytorch_model.bin is read weights-only: code is refused, not run
        found = re.search(r"GLOBAL (\S+) was not", str(error))
        raise CheckpointError(f"{what}: its weights file is refused: it holds Python code or objects "
                              f"({found.group(1) if found else 'unreadable pickle data'}) that weights-only "
                              "loading does not allow") from None
    except Exception as error:  # safetensors, torch and transformers raise many types for a damaged file
        raise CheckpointError(f"{what}: {first_sentence(error)}") from None
    finally:
        log.set_verbosity(verbosity)
        if progress:
            log.enable_progress_bar()
    for kind in KEY_PROBLEMS:
        keys = sorted(info.get(kind) or [])
        if keys:
            first = keys[0][0] if isinstance(keys[0], tuple) else keys[0]
            raise CheckpointError(f"{what}: {KEY_PROBLEMS[kind]} key {first!r} ({len(keys)} in all)")
    return model.float().eval()


@SEGMENTERS.register(NAME)
def build_segformer(arch: str, checkpoint: str) -> Segmenter:
    """SegFormer from the local ``save_pretrained`` directory ``checkpoint`` (19 Cityscapes classes)."""
    if arch:
        raise SegmenterError(f"segmenter {NAME!r} takes no architecture (got '{NAME}:{arch}'); the "
                             "variant (B0-B5) comes from the directory's config.json")
    if not checkpoint:
        raise SegmenterError(f"segmenter {NAME} needs segmenter_checkpoint (a local model directory such as "
                             f"{PUBLISHED}'s); no weights are downloaded")
    _transformers()
    directory = check_directory(checkpoint)
    normalise = preprocessor_normalise(directory / PREPROCESSOR)
    config = load_config(directory)
    check_cityscapes_classes(config, checkpoint)  # before reading weights: a wrong model fails fast
    segmenter = HFSegFormer(load_model(directory, config), normalise)
    segmenter.refresh_identity()
    return segmenter
