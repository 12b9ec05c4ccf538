# Copyright 2026 The ood_seg_node developers. Licensed under the Apache License, Version 2.0.
from __future__ import annotations

import warnings

import pytest
import torch

from ood_seg_node.checkpoints import CheckpointError, save_checkpoint
from ood_seg_node.segmenters import TAP_NAMES, SegmenterError, build_segmenter, segmenter_names
from ood_seg_node.segmenters.builtin import BuiltinSegmenter
from ood_seg_node.segmenters.torchvision_models import ARCHITECTURES, TorchvisionSegmenter


def test_builtin_outputs_taps_and_classifier_consistency(random_builtin_checkpoint):
    segmenter = build_segmenter("builtin", random_builtin_checkpoint)
    assert segmenter.default_input_size == (64, 128)
    assert segmenter.identity.startswith("builtin@")
    with torch.no_grad():
        out = segmenter.run(torch.rand(2, 3, 64, 128))
    assert out.logits.shape == (2, 19, 16, 32)  # stride 4
    assert set(out.features) == set(TAP_NAMES)
    for name, channels in segmenter.tap_channels.items():
        assert out.features[name].shape[1] == channels
    torch.testing.assert_close(segmenter.classify(out.features["neck"]), out.logits)


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_torchvision_taps_match_the_original_model(arch):
    torch.manual_seed(0)
    segmenter = TorchvisionSegmenter(arch).eval()
    image = torch.rand(1, 3, 96, 96)
    with torch.no_grad():
        out = segmenter.run(image)
        reference = segmenter.model(segmenter.normalise(image))["out"]
        upsampled = torch.nn.functional.interpolate(out.logits, size=reference.shape[-2:], mode="bilinear",
                                                    align_corners=False)
        torch.testing.assert_close(segmenter.classify(out.features["neck"]), out.logits)
    assert set(out.features) == set(TAP_NAMES)
    assert torch.allclose(upsampled, reference, atol=2e-3)


def test_torchvision_checkpoint_roundtrip_and_mismatch(tmp_path):
    source = TorchvisionSegmenter("lraspp_mobilenet_v3_large")
    path = tmp_path / "lraspp.pth"
    torch.save({"model": source.model.state_dict()}, path)
    loaded = build_segmenter("torchvision:lraspp_mobilenet_v3_large", str(path))
    assert loaded.identity.split("@")[1] == source.identity.split("@")[0] or loaded.identity.count("@") == 1
    for key, value in source.model.state_dict().items():
        assert torch.equal(loaded.model.state_dict()[key], value)
    with pytest.raises(SegmenterError, match="does not match"):
        build_segmenter("torchvision:deeplabv3_mobilenet_v3_large", str(path))


def test_errors_are_one_clear_line(tmp_path, random_builtin_checkpoint):
    with pytest.raises(SegmenterError, match="valid: builtin"):
        build_segmenter("resnet")
    with pytest.raises(SegmenterError, match="valid: deeplabv3_mobilenet"):
        build_segmenter("torchvision:unet")
    with pytest.raises(SegmenterError, match="needs segmenter_checkpoint"):
        build_segmenter("torchvision:fcn_resnet50")
    with pytest.raises(CheckpointError, match="not found"):
        build_segmenter("builtin", str(tmp_path / "missing.pt"))
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"\x80\x04not a checkpoint")
    with pytest.raises(CheckpointError, match=r"corrupt.pt is not a PyTorch checkpoint \(a Python pickle that torch"):
        build_segmenter("builtin", str(corrupt))
    text = tmp_path / "notes.txt"
    text.write_text("weights: none\n")
    with pytest.raises(CheckpointError, match=r"notes.txt is not a PyTorch checkpoint \(text\)$"):
        build_segmenter("torchvision:lraspp_mobilenet_v3_large", str(text))
    wrong_kind = tmp_path / "head.pt"
    save_checkpoint(wrong_kind, {"w": torch.zeros(1)}, kind="head", name="obsnet")
    with pytest.raises(CheckpointError, match="expected 'segmenter'"):
        build_segmenter("builtin", str(wrong_kind))
    wrong_shape = tmp_path / "shape.pt"
    save_checkpoint(wrong_shape, {"classifier.weight": torch.zeros(3)}, kind="segmenter", name="builtin")
    with pytest.raises(CheckpointError, match="does not fit"):
        build_segmenter("builtin", str(wrong_shape))
    assert "torchvision:deeplabv3_resnet50" in segmenter_names()


def test_unsafe_pickle_is_refused(tmp_path):
    class Payload:
        def __reduce__(self):
            return (print, ("pwned",))

    path = tmp_path / "evil.pt"
    torch.save({"meta": {}, "state_dict": {}, "x": Payload()}, path)
    with pytest.raises(CheckpointError, match="evil.pt is refused: it holds Python code or objects"):
        build_segmenter("builtin", str(path))


def test_torchscript_segmenter_has_logits_only(tmp_path):
    model = BuiltinSegmenter().eval()

    class LogitsOnly(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = model

        def forward(self, x):
            return {"out": self.inner.forward_taps(x)[0]}

    path = tmp_path / "scripted.pt"
    torch.jit.trace(LogitsOnly(), torch.rand(1, 3, 32, 64), strict=False).save(str(path))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")  # overrides pytest's own filters, so torch's FutureWarning would show
        segmenter = build_segmenter("torchscript", str(path))
    assert [str(warning.message) for warning in caught] == []
    out = segmenter.run(torch.rand(1, 3, 32, 64))
    assert out.logits.shape == (1, 19, 8, 16)
    assert out.features == {}


def test_torchscript_refuses_other_files_in_one_line(tmp_path, random_builtin_checkpoint):
    with pytest.raises(CheckpointError, match=r"\.pt is a PyTorch checkpoint, not a TorchScript archive$"):
        build_segmenter("torchscript", random_builtin_checkpoint)
    text = tmp_path / "model.pt"
    text.write_text("weights: none\n")
    with pytest.raises(CheckpointError, match=r"model.pt is not a TorchScript archive \(text\)$"):
        build_segmenter("torchscript", str(text))
