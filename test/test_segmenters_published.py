# Copyright 2026 The ood_seg_node developers. Licensed under the Apache License, Version 2.0.
"""VainF DeepLabV3+ segmenters: published keys, the published file layout, refusals, and the forward.

The key manifests are transcribed from VainF/DeepLabV3Plus-Pytorch (``network/modeling.py``,
``_deeplab.py``, ``backbone/mobilenetv2.py``, ``backbone/resnet.py``), not derived from our modules.
ResNet-101 is checked on the meta device (no memory, no init) and loaded once for the wrong-architecture
refusal; the full load + forward runs on MobileNet only, to keep this file fast on two cores.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from published_layouts import Manifest, batch_norm, bottleneck

from ood_seg_node.checkpoints import CheckpointError
from ood_seg_node.pipeline import Pipeline
from ood_seg_node.segmenters import TAP_NAMES, SegmenterError, build_segmenter, segmenter_names
from ood_seg_node.segmenters.deeplabv3plus import InvertedResidual, VainFDeepLabV3Plus

# --- manifests, transcribed from the official definitions --------------------------------------------------

def _official_mobilenet_backbone() -> Manifest:
    """``MobileNetV2.features`` split by ``_segm_mobilenet`` into ``[:4]`` and ``[4:-1]`` (indices kept)."""
    table = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
             (6, 320, 1, 1)]  # t, c, n, s

    def where(index: int) -> str:
        return f"backbone.{'low' if index < 4 else 'high'}_level_features.{index}"

    yield f"{where(0)}.0.weight", (32, 3, 3, 3)  # ConvBNReLU(3, 32, stride=2)
    yield from batch_norm(f"{where(0)}.1", 32)
    index, cin = 1, 32
    for t, c, n, _ in table:
        for _ in range(n):
            hidden, conv, j = cin * t, f"{where(index)}.conv", 0
            if t != 1:  # pw expansion
                yield f"{conv}.0.0.weight", (hidden, cin, 1, 1)
                yield from batch_norm(f"{conv}.0.1", hidden)
                j = 1
            yield f"{conv}.{j}.0.weight", (hidden, 1, 3, 3)  # depthwise
            yield from batch_norm(f"{conv}.{j}.1", hidden)
            yield f"{conv}.{j + 1}.weight", (c, hidden, 1, 1)  # pw-linear
            yield from batch_norm(f"{conv}.{j + 2}", c)
            index, cin = index + 1, c


def _official_resnet101_backbone() -> Manifest:
    """torchvision-style ResNet-101 up to ``layer4`` (``IntermediateLayerGetter`` drops avgpool and fc)."""
    yield "backbone.conv1.weight", (64, 3, 7, 7)
    yield from batch_norm("backbone.bn1", 64)
    inplanes = 64
    for layer, (planes, blocks) in enumerate(zip((64, 128, 256, 512), (3, 4, 23, 3)), start=1):
        for block in range(blocks):
            prefix = f"backbone.layer{layer}.{block}"
            yield from bottleneck(prefix, inplanes, planes)
            if block == 0:
                yield f"{prefix}.downsample.0.weight", (planes * 4, inplanes, 1, 1)
                yield from batch_norm(f"{prefix}.downsample.1", planes * 4)
            inplanes = planes * 4


def _official_head(high: int, low: int) -> Manifest:
    """``DeepLabHeadV3Plus(high, low, 19, [6, 12, 18])``."""
    yield "classifier.project.0.weight", (48, low, 1, 1)
    yield from batch_norm("classifier.project.1", 48)
    yield "classifier.aspp.convs.0.0.weight", (256, high, 1, 1)
    yield from batch_norm("classifier.aspp.convs.0.1", 256)
    for branch in (1, 2, 3):  # ASPPConv
        yield f"classifier.aspp.convs.{branch}.0.weight", (256, high, 3, 3)
        yield from batch_norm(f"classifier.aspp.convs.{branch}.1", 256)
    yield "classifier.aspp.convs.4.1.weight", (256, high, 1, 1)  # ASPPPooling: 0 is the pool
    yield from batch_norm("classifier.aspp.convs.4.2", 256)
    yield "classifier.aspp.project.0.weight", (256, 1280, 1, 1)
    yield from batch_norm("classifier.aspp.project.1", 256)
    yield "classifier.classifier.0.weight", (256, 304, 3, 3)
    yield from batch_norm("classifier.classifier.1", 256)
    yield "classifier.classifier.3.weight", (19, 256, 1, 1)
    yield "classifier.classifier.3.bias", (19,)


MANIFESTS = {
    "mobilenet": lambda: [*_official_mobilenet_backbone(), *_official_head(320, 24)],
    "resnet101": lambda: [*_official_resnet101_backbone(), *_official_head(2048, 256)],
}
# MobileNetV2 at OS16, worked out by hand from VainF's loop: strides 2 at blocks 2, 4, 7; the 160-channel
# stage turns its stride into dilation 2, its first block keeping the previous dilation 1
MOBILENET_STRIDE2 = {2, 4, 7}
MOBILENET_DILATED = {15, 16, 17}


@pytest.mark.parametrize("backbone", sorted(MANIFESTS))
def test_state_dict_matches_the_official_key_manifest(backbone):
    with torch.device("meta"):
        model = VainFDeepLabV3Plus(backbone)
    expected = MANIFESTS[backbone]()
    ours = {key: tuple(value.shape) for key, value in model.state_dict().items()}
    assert len({key for key, _ in expected}) == len(expected)
    missing = [key for key, _ in expected if key not in ours]
    unexpected = [key for key in ours if key not in dict(expected)]
    assert not missing and not unexpected, (missing[:3], unexpected[:3])
    assert [key for key, _ in expected] == list(ours)  # same order as the official modules register them
    assert ours == dict(expected)
    assert len(ours) == {"mobilenet": 356, "resnet101": 674}[backbone]


def test_strides_and_dilations_follow_the_official_output_stride_16():
    with torch.device("meta"):
        mobilenet = VainFDeepLabV3Plus("mobilenet")
        resnet = VainFDeepLabV3Plus("resnet101")
    blocks = {int(name): block for trunk in mobilenet.backbone.children() for name, block in trunk.named_children()}
    for index, block in blocks.items():
        if isinstance(block, InvertedResidual):
            assert block.stride == (2 if index in MOBILENET_STRIDE2 else 1), index
            assert block.dilation == (2 if index in MOBILENET_DILATED else 1), index
    for model in (mobilenet, resnet):
        rates = [model.classifier.aspp.convs[i][0] for i in (1, 2, 3)]
        assert [(conv.dilation, conv.padding) for conv in rates] == [((r, r), (r, r)) for r in (6, 12, 18)]
    assert [(b.conv2.stride, b.conv2.dilation) for b in resnet.backbone.layer4] == [((1, 1), (1, 1))] + [
        ((1, 1), (2, 2))] * 2
    assert resnet.backbone.layer3[0].conv2.stride == (2, 2)
    assert not hasattr(resnet.backbone, "fc") and not hasattr(resnet.backbone, "avgpool")


# --- published layout ------------------------------------------------------------------------------------------

def _randomised(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A state dict whose batch norms are not identities, so the forward checks see every tensor."""
    torch.manual_seed(0)
    state = model.state_dict()
    for key, value in state.items():
        if key.endswith("running_var") or (key.endswith(".weight") and value.dim() == 1):  # BN scale
            value.uniform_(0.5, 1.5)
        elif key.endswith(("running_mean", ".bias")):
            value.normal_(0.0, 0.1)
        elif key.endswith("num_batches_tracked"):
            value.fill_(1000)
    return {key: value.clone() for key, value in state.items()}


@pytest.fixture(scope="module")
def published(tmp_path_factory) -> tuple[Path, dict[str, torch.Tensor]]:
    """A random-weight MobileNet file in VainF's published layout (``main.py``'s ``save_ckpt``)."""
    state = _randomised(VainFDeepLabV3Plus("mobilenet"))
    path = tmp_path_factory.mktemp("vainf") / "best_deeplabv3plus_mobilenet_cityscapes_os16.pth"
    torch.save({"cur_itrs": 30000, "model_state": state, "optimizer_state": {}, "scheduler_state": {},
                "best_score": 0.721}, path)
    return path, state


@pytest.fixture(scope="module")
def mobilenet(published) -> VainFDeepLabV3Plus:
    return build_segmenter("deeplabv3plus_mobilenet", str(published[0]))


def test_published_file_loads_strictly(published, mobilenet):
    _, state = published
    assert mobilenet.identity.startswith("deeplabv3plus_mobilenet@")
    assert mobilenet.default_input_size is None and not mobilenet.training
    assert len(mobilenet.class_names) == 19 and mobilenet.class_names[0] == "road"
    loaded = mobilenet.state_dict()
    assert loaded.keys() == state.keys()
    assert all(torch.equal(loaded[key], value) for key, value in state.items())
    assert {"deeplabv3plus_mobilenet", "deeplabv3plus_resnet101"} <= set(segmenter_names())


def test_module_prefix_and_bare_state_dict_load(published, mobilenet, tmp_path):
    _, state = published
    prefixed = tmp_path / "dataparallel.pth"
    torch.save({"model_state": {f"module.{k}": v for k, v in state.items()}}, prefixed)
    bare = tmp_path / "bare.pth"
    torch.save(state, bare)
    for path in (prefixed, bare):
        assert build_segmenter("deeplabv3plus_mobilenet", str(path)).identity == mobilenet.identity


def test_pipeline_runs_at_the_input_size(published):
    pipeline = Pipeline.from_names(segmenter="deeplabv3plus_mobilenet", segmenter_checkpoint=str(published[0]),
                                   head="msp", device="cpu")
    rgb = np.random.default_rng(0).integers(0, 256, (70, 90, 3), dtype=np.uint8)
    result = pipeline.process(rgb)
    assert result.labels.shape == (70, 90) and result.labels.dtype == np.uint8 and result.labels.max() < 19
    assert result.score.shape == (70, 90) and np.isfinite(result.score).all()


class Payload:
    """Unpickling it would run code."""

    def __reduce__(self):
        return (print, ("pwned",))


def test_wrong_files_are_refused_in_one_line(published, tmp_path, capsys):
    path, state = published
    with pytest.raises(CheckpointError) as wrong:
        build_segmenter("deeplabv3plus_resnet101", str(path))
    assert str(wrong.value) == f"{path} does not fit deeplabv3plus_resnet101: missing key 'backbone.conv1.weight'"
    extra = tmp_path / "extra.pth"
    torch.save({"model_state": {**state, "classifier.aux.weight": torch.zeros(1)}}, extra)
    with pytest.raises(CheckpointError, match=r"does not fit deeplabv3plus_mobilenet: unexpected key "
                                              r"'classifier.aux.weight'$"):
        build_segmenter("deeplabv3plus_mobilenet", str(extra))
    cut = tmp_path / "cut.pth"
    cut.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(CheckpointError, match=r"cut.pth is truncated or damaged \(") as truncated:
        build_segmenter("deeplabv3plus_mobilenet", str(cut))
    unsafe = tmp_path / "unsafe.pth"
    torch.save({"model_state": state, "optimizer_state": Payload()}, unsafe)
    with pytest.raises(CheckpointError, match=r"unsafe.pth is refused: it holds Python code") as pickled:
        build_segmenter("deeplabv3plus_mobilenet", str(unsafe))
    other = tmp_path / "other.pth"
    torch.save({"model": state}, other)
    with pytest.raises(CheckpointError, match=r"holds no state dict \(no 'model_state'; found 'model'\)$") as layout:
        build_segmenter("deeplabv3plus_mobilenet", str(other))
    assert "pwned" not in capsys.readouterr().out
    for error in (wrong, truncated, pickled, layout):
        assert "\n" not in str(error.value)
    with pytest.raises(SegmenterError, match="needs segmenter_checkpoint .*best_deeplabv3plus_resnet101_cityscapes"):
        build_segmenter("deeplabv3plus_resnet101")
    with pytest.raises(SegmenterError, match="takes no architecture"):
        build_segmenter("deeplabv3plus_mobilenet:os8", str(path))


# --- the forward -----------------------------------------------------------------------------------------------

def _bn_eval(x: torch.Tensor, state: dict[str, torch.Tensor], prefix: str) -> torch.Tensor:
    return F.batch_norm(x, state[f"{prefix}.running_mean"], state[f"{prefix}.running_var"],
                        state[f"{prefix}.weight"], state[f"{prefix}.bias"], training=False, eps=1e-5)


def _official_decoder(state: dict[str, torch.Tensor], low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
    """``DeepLabHeadV3Plus.forward`` rewritten with functional ops from the weights alone."""
    def cbr(x: torch.Tensor, conv: str, bn: str, **options) -> torch.Tensor:
        return F.relu(_bn_eval(F.conv2d(x, state[f"{conv}.weight"], **options), state, bn))

    skip = cbr(low, "classifier.project.0", "classifier.project.1")
    aspp = "classifier.aspp.convs"
    branches = [cbr(high, f"{aspp}.0.0", f"{aspp}.0.1")]
    branches += [cbr(high, f"{aspp}.{i}.0", f"{aspp}.{i}.1", padding=r, dilation=r)
                 for i, r in ((1, 6), (2, 12), (3, 18))]
    pooled = cbr(high.mean(dim=(2, 3), keepdim=True), f"{aspp}.4.1", f"{aspp}.4.2")
    branches.append(pooled.expand(-1, -1, *high.shape[-2:]))
    context = cbr(torch.cat(branches, 1), "classifier.aspp.project.0", "classifier.aspp.project.1")
    context = F.interpolate(context, size=skip.shape[-2:], mode="bilinear", align_corners=False)
    neck = cbr(torch.cat([skip, context], 1), "classifier.classifier.0", "classifier.classifier.1", padding=1)
    return F.conv2d(neck, state["classifier.classifier.3.weight"], state["classifier.classifier.3.bias"])


def test_forward_matches_an_independent_recomputation(mobilenet):
    image = torch.rand(1, 3, 65, 97)
    state = mobilenet.state_dict()
    with torch.no_grad():
        out = mobilenet.run(image)
        official = _official_decoder(state, out.features["stage1"], out.features["stage3"])
        classified = mobilenet.classify(out.features["neck"])
    assert set(out.features) == set(TAP_NAMES)
    assert {k: v.shape[1] for k, v in out.features.items()} == mobilenet.tap_channels
    # VainF's stem conv is unpadded: (65 - 3) // 2 + 1 = 32 rows, then ceil-halvings to stride 4 / 8 / 16
    assert out.logits.shape == (1, 19, 16, 24)
    assert [tuple(out.features[k].shape[-2:]) for k in ("stage1", "stage2", "stage3")] == [(16, 24), (8, 12), (4, 6)]
    torch.testing.assert_close(classified, out.logits)
    torch.testing.assert_close(official, out.logits, rtol=1e-4, atol=1e-4)


def test_inverted_residual_pads_its_input_before_the_expansion(mobilenet):
    """VainF pads the block input, so the expanded map's border is relu6(bn(0)), not 0."""
    block = mobilenet.backbone.high_level_features[1]  # index 5: 32 -> 32, residual, expansion 6
    state = {k.removeprefix("backbone.high_level_features.5."): v for k, v in mobilenet.state_dict().items()}
    x = torch.rand(1, 32, 9, 11)
    padded = F.pad(x, (1, 1, 1, 1))
    expanded = F.relu6(_bn_eval(F.conv2d(padded, state["conv.0.0.weight"]), state, "conv.0.1"))
    depthwise = F.relu6(_bn_eval(F.conv2d(expanded, state["conv.1.0.weight"], groups=192), state, "conv.1.1"))
    expected = x + _bn_eval(F.conv2d(depthwise, state["conv.2.weight"]), state, "conv.3")
    with torch.no_grad():
        torch.testing.assert_close(block(x), expected, rtol=1e-5, atol=1e-5)
    assert mobilenet.classifier_is_pointwise_affine()
