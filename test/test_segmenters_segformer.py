# Copyright 2026 The ood_seg_node developers. Licensed under the Apache License, Version 2.0.
"""``segformer``: a local Hugging Face directory loads strictly and gives the official model's outputs.

The directory is a tiny random SegFormer (4 stages, widths 8-32) written with ``save_pretrained`` beside a
``preprocessor_config.json`` as NVIDIA's Cityscapes checkpoints ship it, so the files have the published
key names and layout; nothing is downloaded. Parity is checked against ``transformers``' own model, image
processor and ``post_process_semantic_segmentation``.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from ood_seg_node.checkpoints import CheckpointError
from ood_seg_node.cityscapes import CLASS_NAMES
from ood_seg_node.layers import IMAGENET_MEAN, IMAGENET_STD
from ood_seg_node.pipeline import Pipeline
from ood_seg_node.segmenters import TAP_NAMES, SegmenterError, build_segmenter, segmenter_names
from ood_seg_node.segmenters.segformer import preprocessor_normalise

# ``nvidia/segformer-b0-finetuned-cityscapes-1024-1024``'s preprocessor_config.json (an older feature
# extractor: no do_rescale / rescale_factor, so the processor's defaults, 1/255, apply)
NVIDIA_PREPROCESSOR = {
    "do_normalize": True, "do_resize": True, "feature_extractor_type": "SegformerFeatureExtractor",
    "image_mean": list(IMAGENET_MEAN), "image_std": list(IMAGENET_STD), "reduce_labels": False, "resample": 2,
    "size": 1024,
}
# key names of the published files (transformers 4.x modules), whatever version wrote the directory
PUBLISHED_KEYS = (
    "segformer.encoder.patch_embeddings.0.proj.weight", "segformer.encoder.block.0.0.attention.self.query.weight",
    "segformer.encoder.block.0.0.attention.self.sr.weight", "segformer.encoder.block.3.0.mlp.dwconv.dwconv.weight",
    "segformer.encoder.layer_norm.3.weight", "decode_head.linear_c.0.proj.weight", "decode_head.linear_fuse.weight",
    "decode_head.batch_norm.running_var", "decode_head.classifier.weight",
)


@pytest.fixture(scope="module")
def transformers():
    return pytest.importorskip("transformers", reason="segmenter segformer needs transformers (pip install "
                                                       "-e .[segformer]); scripts/setup.sh installs it")


@pytest.fixture(scope="module")
def published(transformers, tmp_path_factory) -> tuple[Path, torch.nn.Module]:
    """A random SegFormer in the ``save_pretrained`` layout, with 19 Cityscapes labels."""
    config = transformers.SegformerConfig(
        num_encoder_blocks=4, depths=[1, 1, 1, 1], sr_ratios=[8, 4, 2, 1], hidden_sizes=[8, 16, 24, 32],
        num_attention_heads=[1, 1, 2, 2], decoder_hidden_size=16, num_labels=len(CLASS_NAMES),
        id2label=dict(enumerate(CLASS_NAMES)), label2id={name: i for i, name in enumerate(CLASS_NAMES)},
    )
    torch.manual_seed(0)
    model = transformers.SegformerForSemanticSegmentation(config).eval()
    with torch.no_grad():  # batch-norm statistics that are not the identity, so the check sees them
        model.decode_head.batch_norm.running_mean.normal_(0.0, 0.1)
        model.decode_head.batch_norm.running_var.uniform_(0.5, 1.5)
    directory = tmp_path_factory.mktemp("segformer") / "segformer-tiny-finetuned-cityscapes"
    model.save_pretrained(directory)
    (directory / "preprocessor_config.json").write_text(json.dumps(NVIDIA_PREPROCESSOR))
    return directory, model


@pytest.fixture(scope="module")
def segformer(published):
    return build_segmenter("segformer", str(published[0]))


def _copy(directory: Path, tmp_path: Path, name: str) -> Path:
    target = tmp_path / name
    shutil.copytree(directory, target)
    return target


def test_directory_loads_with_its_published_keys_and_normalisation(published, segformer):
    directory, _ = published
    from safetensors import safe_open

    with safe_open(str(directory / "model.safetensors"), "pt") as weights:
        keys = set(weights.keys())
    assert set(PUBLISHED_KEYS) <= keys
    assert "segformer" in segmenter_names()
    assert segformer.identity.startswith("segformer@") and not segformer.training
    assert segformer.default_input_size is None and segformer.upsample_align_corners is False
    assert segformer.class_names == CLASS_NAMES
    assert segformer.tap_channels == {"stage1": 8, "stage2": 16, "stage3": 32, "neck": 16}
    torch.testing.assert_close(segformer.normalise.mean.flatten(), torch.tensor(IMAGENET_MEAN))
    torch.testing.assert_close(segformer.normalise.std.flatten(), torch.tensor(IMAGENET_STD))


def test_outputs_equal_the_official_model(transformers, published, segformer):
    _, official = published
    rgb = np.random.default_rng(0).integers(0, 256, (65, 97, 3), dtype=np.uint8)
    processor = transformers.SegformerImageProcessor.from_pretrained(published[0], local_files_only=True)
    pixels = processor(images=rgb, do_resize=False, return_tensors="pt").pixel_values
    rgb01 = torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 255.0
    torch.testing.assert_close(segformer.normalise(rgb01), pixels, rtol=1e-5, atol=1e-5)
    with torch.no_grad():
        out = segformer.run(rgb01)
        expected = official(pixels, output_hidden_states=True)
        classified = segformer.classify(out.features["neck"])
    assert set(out.features) == set(TAP_NAMES)
    assert {k: v.shape[1] for k, v in out.features.items()} == segformer.tap_channels
    assert out.logits.shape == (1, 19, 17, 25)  # stride 4, as the official logits
    assert [tuple(out.features[k].shape[-2:]) for k in ("stage1", "stage2", "stage3", "neck")] == [
        (17, 25), (9, 13), (3, 4), (17, 25)]
    torch.testing.assert_close(out.logits, expected.logits, rtol=1e-5, atol=1e-5)
    for tap, index in (("stage1", 0), ("stage2", 1), ("stage3", 3)):
        torch.testing.assert_close(out.features[tap], expected.hidden_states[index], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(classified, out.logits, rtol=0, atol=0)
    assert segformer.classifier_is_pointwise_affine()
    from ood_seg_node.training.dicnet import neck_batchnorm

    assert neck_batchnorm(segformer) is segformer.decode_head.batch_norm


def test_pipeline_runs_at_the_input_size_with_the_official_labels(transformers, published):
    directory, official = published
    rgb = np.random.default_rng(1).integers(0, 256, (70, 90, 3), dtype=np.uint8)
    native = Pipeline.from_names(segmenter="segformer", segmenter_checkpoint=str(directory), head="msp", device="cpu")
    result = native.process(rgb)
    assert result.labels.shape == (70, 90) and result.labels.dtype == np.uint8 and result.labels.max() < 19
    assert result.score.shape == (70, 90) and np.isfinite(result.score).all()
    processor = transformers.SegformerImageProcessor.from_pretrained(directory, local_files_only=True)
    with torch.no_grad():
        logits = official(processor(images=rgb, do_resize=False, return_tensors="pt").pixel_values).logits
    labels = processor.post_process_semantic_segmentation(
        transformers.modeling_outputs.SemanticSegmenterOutput(logits=logits), target_sizes=[(70, 90)])[0]
    matching = Pipeline.from_names(segmenter="segformer", segmenter_checkpoint=str(directory), head="msp",
                                   device="cpu", score_resolution="input").process(rgb)
    np.testing.assert_array_equal(matching.labels, labels.numpy())


def test_preprocessor_config_gives_the_normalisation(tmp_path):
    path = tmp_path / "preprocessor_config.json"
    path.write_text(json.dumps({"do_rescale": False, "image_mean": [127.5] * 3, "image_std": [127.5] * 3}))
    normalise = preprocessor_normalise(path)  # a model fed 0..255: (255 x - 127.5) / 127.5
    x = torch.rand(1, 3, 4, 4)
    torch.testing.assert_close(normalise(x), (255 * x - 127.5) / 127.5)
    path.write_text(json.dumps({"do_normalize": False, "rescale_factor": 1 / 255}))
    torch.testing.assert_close(preprocessor_normalise(path)(x), x)
    path.write_text(json.dumps({"image_mean": [0.5, 0.5], "image_std": [0.5] * 3}))
    with pytest.raises(CheckpointError, match="image_mean / image_std must be 3 values"):
        preprocessor_normalise(path)


def test_wrong_directories_are_refused_in_one_line(published, tmp_path):
    directory, _ = published
    from safetensors.torch import load_file, save_file

    errors = []
    weightless = _copy(directory, tmp_path, "weightless")
    (weightless / "model.safetensors").unlink()
    cases = [
        (weightless, r"weightless has no weights \(model.safetensors or pytorch_model.bin\)$"),
        (tmp_path / "absent", r"absent does not exist \(segmenter segformer reads a local model directory\)$"),
        (directory / "config.json", r"config.json is a file; segmenter segformer reads a model directory"),
    ]
    cut = _copy(directory, tmp_path, "cut")
    state = load_file(cut / "model.safetensors")
    del state["decode_head.classifier.weight"]
    save_file(state, cut / "model.safetensors", metadata={"format": "pt"})
    cases.append((cut, r"cut does not fit segformer: missing key 'decode_head.classifier.weight' \(1 in all\)$"))
    bare = _copy(directory, tmp_path, "bare")
    (bare / "preprocessor_config.json").unlink()
    cases.append((bare, r"bare has no preprocessor_config.json \(the input normalisation\)"))
    for path, message in cases:
        with pytest.raises(CheckpointError, match=message) as error:
            build_segmenter("segformer", str(path))
        errors.append(error)
    ade = _copy(directory, tmp_path, "ade")
    config = json.loads((ade / "config.json").read_text())
    config["id2label"] = {str(i): f"class {i}" for i in range(150)}
    config["label2id"] = {f"class {i}": i for i in range(150)}
    (ade / "config.json").write_text(json.dumps(config))
    with pytest.raises(SegmenterError, match="ade predicts 150 classes; segmenter segformer needs the 19 Cityscapes"):
        build_segmenter("segformer", str(ade))
    with pytest.raises(SegmenterError, match="needs segmenter_checkpoint .*no weights are downloaded"):
        build_segmenter("segformer")
    with pytest.raises(SegmenterError, match="takes no architecture"):
        build_segmenter("segformer:b0", str(directory))
    assert all("\n" not in str(error.value) for error in errors)


def test_pytorch_model_bin_loads_and_damaged_or_pickled_weights_do_not(published, segformer, tmp_path, capsys):
    directory, _ = published
    from safetensors.torch import load_file

    legacy = _copy(directory, tmp_path, "legacy")  # the hub repos' older weights file
    state = load_file(legacy / "model.safetensors")
    (legacy / "model.safetensors").unlink()
    torch.save(state, legacy / "pytorch_model.bin")
    assert build_segmenter("segformer", str(legacy)).identity == segformer.identity
    torch.save({**state, "payload": Payload()}, legacy / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match=r"legacy does not fit segformer: its weights file is refused: it "
                                              r"holds Python code or objects \(print\)") as error:
        build_segmenter("segformer", str(legacy))
    assert "\n" not in str(error.value)
    assert "pwned" not in capsys.readouterr().out
    truncated = _copy(directory, tmp_path, "truncated")
    weights = truncated / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    with pytest.raises(CheckpointError, match=r"truncated does not fit segformer: ") as error:
        build_segmenter("segformer", str(truncated))
    assert "\n" not in str(error.value)


class Payload:
    """Unpickling it would run code."""

    def __reduce__(self):
        return (print, ("pwned",))


def test_a_missing_transformers_is_one_line(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "transformers", None)  # import transformers -> ImportError
    with pytest.raises(SegmenterError) as error:
        build_segmenter("segformer", str(tmp_path))
    assert str(error.value) == "segmenter segformer needs the transformers package: pip install transformers"


def test_exports_to_onnx_with_its_own_normalisation(segformer, tmp_path):
    """The Mix Transformer and its decode head in one ONNX graph, checked against PyTorch by the exporter."""
    from ood_seg_node.deploy import export_onnx
    from ood_seg_node.heads import build_head

    path = export_onnx(segformer, [build_head("energy", segformer)], ["energy"], (64, 128), tmp_path / "s.onnx")
    assert path.stat().st_size > 0  # export_onnx refuses (and deletes) a graph that differs from PyTorch
