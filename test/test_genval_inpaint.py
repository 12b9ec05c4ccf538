# Copyright 2026 The ood_seg_node developers. Licensed under the Apache License, Version 2.0.
"""Diffusion-inpainting insertion with a tiny randomly initialised Stable Diffusion inpainting pipeline."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest

pytest.importorskip("diffusers")  # the [inpaint] extra; setup installs it, so the suite runs these

from ood_seg_node.cli import main  # noqa: E402
from ood_seg_node.datasets import SyntheticDataset  # noqa: E402
from ood_seg_node.genval.inpaint import DiffusionInpainter  # noqa: E402
from ood_seg_node.genval.insertion import InsertionError  # noqa: E402


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    """A save_pretrained folder of a 4.6 MB random inpainting pipeline (UNet with 9 input channels)."""
    import torch
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionInpaintPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("tiny_sd")
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for letter in "abcdefghijklmnopqrstuvwxyz":
        vocab[letter] = len(vocab)
        vocab[letter + "</w>"] = len(vocab)
    (root / "vocab.json").write_text(json.dumps(vocab))
    (root / "merges.txt").write_text("#version: 0.2\n")
    tokenizer = CLIPTokenizer(str(root / "vocab.json"), str(root / "merges.txt"), model_max_length=16)
    text = CLIPTextModel(CLIPTextConfig(vocab_size=len(vocab), hidden_size=32, intermediate_size=37,
                                        num_attention_heads=4, num_hidden_layers=2, max_position_embeddings=16,
                                        projection_dim=32, bos_token_id=0, eos_token_id=1, pad_token_id=1))
    unet = UNet2DConditionModel(block_out_channels=(32, 64), layers_per_block=1, sample_size=16, in_channels=9,
                                out_channels=4, down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                                up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=32,
                                attention_head_dim=4, norm_num_groups=8)
    vae = AutoencoderKL(block_out_channels=(16, 32), down_block_types=("DownEncoderBlock2D",) * 2,
                        up_block_types=("UpDecoderBlock2D",) * 2, latent_channels=4, norm_num_groups=8)
    pipe = StableDiffusionInpaintPipeline(vae=vae, text_encoder=text, tokenizer=tokenizer, unet=unet,
                                          scheduler=DDIMScheduler(steps_offset=1), safety_checker=None,
                                          feature_extractor=None, requires_safety_checker=False)
    pipe.save_pretrained(root / "model")
    return root / "model"


def _frame():
    frame = SyntheticDataset(seed=5, frames=1, height=96, width=192)[0]
    return frame.image, frame.semantic == 0


def test_inpainted_objects_have_their_own_ground_truth(tiny_model):
    image, road = _frame()
    inpainter = DiffusionInpainter(tiny_model, device="cpu", steps=2, size=64)
    first = inpainter(image, road, count=2, seed=3)
    again = inpainter(image, road, count=2, seed=3)
    assert first.boxes and np.array_equal(first.image, again.image) and np.array_equal(first.ood_gt, again.ood_gt)
    assert set(np.unique(first.ood_gt)) <= {0, 1, 255} and (first.ood_gt == 1).any()
    assert not (first.ood_gt == 0)[~road].any()  # inliers only on the road
    changed = np.abs(first.image.astype(int) - image.astype(int)).sum(axis=2) > 0
    near = np.zeros_like(changed)
    for x0, y0, x1, y1 in first.boxes:  # the model only edits around its objects
        grow = max(x1 - x0, y1 - y0)
        near[max(0, y0 - grow):y1 + grow, max(0, x0 - grow):x1 + grow] = True
    assert changed.any() and not changed[~near].any()
    assert (first.ood_gt == 1)[near].sum() == (first.ood_gt == 1).sum()


def test_inpainting_model_errors_are_one_line(tmp_path, tiny_model, monkeypatch):
    with pytest.raises(InsertionError, match="no model_index.json"):
        DiffusionInpainter(tmp_path / "missing")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "model_index.json").write_text("{not json")
    with pytest.raises(InsertionError, match="cannot load the inpainting pipeline"):
        DiffusionInpainter(broken)
    with pytest.raises(InsertionError, match="multiple of 8"):
        DiffusionInpainter(tiny_model, size=30)
    monkeypatch.setitem(sys.modules, "diffusers", None)
    with pytest.raises(InsertionError, match="needs the diffusers package"):
        DiffusionInpainter(tiny_model)


def test_validate_with_an_inpainting_model(tmp_path, tiny_model):
    code = main(["validate", "--dataset", "synthetic", "--frames", "3", "--height", "96", "--width", "192",
                 "--head", "energy", "--shifts", "noise", "--severities", "2", "--inpaint-model", str(tiny_model),
                 "--inpaint-steps", "2", "--inpaint-size", "64", "--device", "cpu", "--out", str(tmp_path / "v")])
    assert code == 0
    report = json.loads((tmp_path / "v" / "report.json").read_text())
    assert report["meta"]["insertion"].startswith("inpainting")
    assert [c["condition"] for c in report["conditions"]] == ["clean", "noise@2"]
    assert report["conditions"][0]["heads"]["energy"]["pixels_out"] > 0
