# Copyright 2026 The ood_seg_node developers. Licensed under the Apache License, Version 2.0.
"""``deeplabv3plus_wrn38``: the published keys, every published layout, refusals, and the forward.

The manifest is transcribed from NVIDIA/semantic-segmentation (``sdcnet`` branch) ``network/wider_resnet.py``
(``WiderResNetA2``, ``IdentityResidualBlock``, ``bnrelu``) and ``network/deepv3.py`` (``DeepWV3Plus``,
``_AtrousSpatialPyramidPoolingModule``), which RPL and ObsNet copy; it is not derived from our module. The
137 M random weights are drawn once from the manifest; each layout's file is written, loaded and removed
in turn, so the test's disk and memory hold one copy at a time besides the shared model.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from published_layouts import Manifest, batch_norm, random_state

from ood_seg_node.checkpoints import CheckpointError, load_strict
from ood_seg_node.segmenters import TAP_NAMES, SegmenterError, build_segmenter, segmenter_names
from ood_seg_node.segmenters.wrn38 import DeepWV3Plus

NAME = "deeplabv3plus_wrn38"


# --- the manifest, transcribed from the official definitions ---------------------------------------------------

def _official_trunk() -> Manifest:
    """``wider_resnet38_a2(classes=1000, dilation=True)``'s ``mod1`` ... ``mod7`` (``bn_out``/``classifier`` unused)."""
    yield "mod1.conv1.weight", (64, 3, 3, 3)
    channels = [(128, 128), (256, 256), (512, 512), (512, 1024), (512, 1024, 2048), (1024, 2048, 4096)]
    cin = 64
    for mod_id, blocks in enumerate([3, 3, 6, 3, 1, 1]):
        widths = channels[mod_id]
        for block_id in range(blocks):
            prefix = f"mod{mod_id + 2}.block{block_id + 1}"
            yield from batch_norm(f"{prefix}.bn1.0", cin)  # bnrelu = Sequential(Norm2d, ReLU)
            if len(widths) == 2:
                yield f"{prefix}.convs.conv1.weight", (widths[0], cin, 3, 3)
                yield from batch_norm(f"{prefix}.convs.bn2.0", widths[0])
                yield f"{prefix}.convs.conv2.weight", (widths[1], widths[0], 3, 3)
            else:
                yield f"{prefix}.convs.conv1.weight", (widths[0], cin, 1, 1)
                yield from batch_norm(f"{prefix}.convs.bn2.0", widths[0])
                yield f"{prefix}.convs.conv2.weight", (widths[1], widths[0], 3, 3)
                yield from batch_norm(f"{prefix}.convs.bn3.0", widths[1])
                yield f"{prefix}.convs.conv3.weight", (widths[2], widths[1], 1, 1)
            stride = 2 if block_id == 0 and mod_id == 2 else 1
            if stride != 1 or cin != widths[-1]:
                yield f"{prefix}.proj_conv.weight", (widths[-1], cin, 1, 1)
            cin = widths[-1]


def _official_aspp(prefix: str) -> Manifest:
    """``_AtrousSpatialPyramidPoolingModule(4096, 256, output_stride=8)``: 1x1, three 3x3 branches, image pooling."""
    yield f"{prefix}.features.0.0.weight", (256, 4096, 1, 1)
    yield from batch_norm(f"{prefix}.features.0.1", 256)
    for branch in (1, 2, 3):
        yield f"{prefix}.features.{branch}.0.weight", (256, 4096, 3, 3)
        yield from batch_norm(f"{prefix}.features.{branch}.1", 256)
    yield f"{prefix}.img_conv.0.weight", (256, 4096, 1, 1)
    yield from batch_norm(f"{prefix}.img_conv.1", 256)


def _official_decoder() -> Manifest:
    """``aspp``, ``bot_fine``, ``bot_aspp``, ``final``."""
    yield from _official_aspp("aspp")
    yield "bot_fine.weight", (48, 128, 1, 1)
    yield "bot_aspp.weight", (256, 1280, 1, 1)
    yield "final.0.weight", (256, 304, 3, 3)
    yield from batch_norm("final.1", 256)
    yield "final.3.weight", (256, 256, 3, 3)
    yield from batch_norm("final.4", 256)
    yield "final.6.weight", (19, 256, 1, 1)


def official_manifest() -> list[tuple[str, tuple[int, ...]]]:
    return [*_official_trunk(), *_official_decoder()]


def test_state_dict_matches_the_official_key_manifest():
    model = DeepWV3Plus(meta=True)
    expected = official_manifest()
    ours = {key: tuple(value.shape) for key, value in model.state_dict().items()}
    missing = [key for key, _ in expected if key not in ours]
    unexpected = [key for key in ours if key not in dict(expected)]
    assert not missing and not unexpected, (missing[:3], unexpected[:3])
    assert [key for key, _ in expected] == list(ours)  # the official registration order
    assert ours == dict(expected)
    assert len(ours) == 268
    assert sum(p.numel() for p in model.parameters()) == 137_103_936
    assert not any(t.is_meta for t in model.normalise.buffers())


def test_strides_dilations_and_rates_follow_the_official_output_stride_8():
    model = DeepWV3Plus(meta=True)
    convs = {name: m for name, m in model.named_modules() if isinstance(m, torch.nn.Conv2d)}
    strided = sorted(name for name, conv in convs.items() if conv.stride != (1, 1))
    assert strided == ["mod4.block1.convs.conv1", "mod4.block1.proj_conv"]
    for mod, dilation in (("mod3", 1), ("mod4", 1), ("mod5", 2), ("mod6", 4), ("mod7", 4)):
        threes = [conv for name, conv in convs.items() if name.startswith(mod) and conv.kernel_size == (3, 3)]
        assert threes and all(c.dilation == (dilation,) * 2 and c.padding == (dilation,) * 2 for c in threes)
    rates = [model.aspp.features[i][0] for i in (1, 2, 3)]
    assert [(c.dilation, c.padding) for c in rates] == [((r, r), (r, r)) for r in (12, 24, 36)]
    assert [name for name, m in model.named_modules() if isinstance(m, torch.nn.Dropout2d)] == [
        "mod6.block1.convs.dropout", "mod7.block1.convs.dropout"]
    assert model.upsample_align_corners and model.default_input_size is None


# --- the published layouts -------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def published(tmp_path_factory) -> tuple[Path, dict[str, torch.Tensor], DeepWV3Plus]:
    """NVIDIA's layout (``{'state_dict': {'module.…'}, ...}``, as ``train.py`` saves it), built once."""
    state = random_state(official_manifest(), positive=("bn1.0.weight",))
    path = tmp_path_factory.mktemp("wrn38") / "cityscapes_best.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}, "epoch": 175, "mean_iu": 0.86,
                "command": "python train.py --arch network.deepv3.DeepWV3Plus"}, path)
    model = build_segmenter(NAME, str(path))
    return path, state, model


def test_every_published_layout_loads_strictly_and_runs(published, tmp_path):
    path, state, model = published
    assert model.identity.startswith(f"{NAME}@") and not model.training and NAME in segmenter_names()
    assert all(torch.equal(model.state_dict()[key], value) for key, value in state.items())
    head = {"branch1.residual_block.atten_aspp.features.0.0.weight": torch.zeros(2, 2, 1, 1),
            "branch1.residual_block.atten_aspp_final.weight": torch.zeros(3, 2, 1, 1)}
    no_counters = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    layouts = {
        "rev3.pth": ({"model": {**{f"branch1.{k}": v for k, v in state.items()}, **head}, "epoch": 40}, state),
        "obsnet_segmenter.pth": (state, state),  # ObsNet: a bare state dict, loaded before DataParallel
        "pre_0_4_1.pth": ({"state_dict": {f"module.{k}": v for k, v in no_counters.items()}}, no_counters),
    }
    for name, (payload, saved) in layouts.items():
        file = tmp_path / name
        torch.save(payload, file)
        loaded = build_segmenter(NAME, str(file))
        file.unlink()
        loaded_state = loaded.state_dict()
        assert all(torch.equal(loaded_state[key], value) for key, value in saved.items()), name
        if saved is state:
            assert loaded.identity == model.identity, name
        del loaded

    image = torch.rand(1, 3, 64, 80)
    with torch.no_grad():
        out = model.run(image)
        classified = model.classify(out.features["neck"])
        recomputed = _official_decoder_forward(model.state_dict(), out.features["stage1"], out.features["stage3"])
    assert set(out.features) == {*TAP_NAMES, "aspp", "decoder_in"}  # the published heads read the last two
    assert {k: v.shape[1] for k, v in out.features.items()} == model.tap_channels == {
        "stage1": 128, "stage2": 1024, "stage3": 4096, "neck": 256, "aspp": 1280, "decoder_in": 304}
    torch.testing.assert_close(out.features["decoder_in"], model.decoder_input(out.features["stage1"],
                                                                               out.features["stage3"]))
    assert out.logits.shape == (1, 19, 32, 40)  # stride 2: the decoder runs at mod2's resolution
    assert [tuple(out.features[k].shape[-2:]) for k in ("stage2", "stage3")] == [(8, 10), (8, 10)]
    assert torch.isfinite(out.logits).all()
    torch.testing.assert_close(classified, out.logits)
    torch.testing.assert_close(recomputed, out.logits, rtol=1e-4, atol=1e-4)
    assert model.classifier_is_pointwise_affine()


def _official_decoder_forward(state: dict[str, torch.Tensor], m2: torch.Tensor, deep: torch.Tensor) -> torch.Tensor:
    """``DeepWV3Plus.forward`` after the trunk, from the weights alone (``Upsample``: align_corners=True)."""
    def cbr(x: torch.Tensor, conv: str, bn: str, **options) -> torch.Tensor:
        x = F.conv2d(x, state[f"{conv}.weight"], **options)
        return F.relu(F.batch_norm(x, state[f"{bn}.running_mean"], state[f"{bn}.running_var"],
                                   state[f"{bn}.weight"], state[f"{bn}.bias"], training=False, eps=1e-5))

    pooled = cbr(deep.mean(dim=(2, 3), keepdim=True), "aspp.img_conv.0", "aspp.img_conv.1")
    branches = [pooled.expand(-1, -1, *deep.shape[-2:]), cbr(deep, "aspp.features.0.0", "aspp.features.0.1")]
    branches += [cbr(deep, f"aspp.features.{i}.0", f"aspp.features.{i}.1", padding=r, dilation=r)
                 for i, r in ((1, 12), (2, 24), (3, 36))]
    up = F.conv2d(torch.cat(branches, 1), state["bot_aspp.weight"])
    up = F.interpolate(up, size=m2.shape[-2:], mode="bilinear", align_corners=True)
    dec0 = torch.cat([F.conv2d(m2, state["bot_fine.weight"]), up], 1)
    dec1 = cbr(cbr(dec0, "final.0", "final.1", padding=1), "final.3", "final.4", padding=1)
    return F.conv2d(dec1, state["final.6.weight"])


# --- refusals --------------------------------------------------------------------------------------------------

class Payload:
    """Unpickling it would run code."""

    def __reduce__(self):
        return (print, ("pwned",))


def test_wrong_files_are_refused_in_one_line(published, tmp_path, capsys):
    resnet = {"layer0.0.weight": torch.zeros(64, 3, 7, 7), "final.6.weight": torch.zeros(19, 256, 1, 1)}
    wrong = tmp_path / "cityscapes_cv0_seresnext50_nosdcaug.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in resnet.items()}}, wrong)
    with pytest.raises(CheckpointError) as refused:
        build_segmenter(NAME, str(wrong))
    assert str(refused.value) == f"{wrong} does not fit {NAME}: missing key 'mod1.conv1.weight'"
    cut = tmp_path / "cut.pth"
    cut.write_bytes(wrong.read_bytes()[: wrong.stat().st_size // 2])
    with pytest.raises(CheckpointError, match=r"cut.pth is truncated or damaged \(") as truncated:
        build_segmenter(NAME, str(cut))
    unsafe = tmp_path / "unsafe.pth"
    torch.save({"state_dict": resnet, "optimizer": Payload()}, unsafe)
    with pytest.raises(CheckpointError, match=r"unsafe.pth is refused: it holds Python code") as pickled:
        build_segmenter(NAME, str(unsafe))
    assert "pwned" not in capsys.readouterr().out
    for error in (refused, truncated, pickled):
        assert "\n" not in str(error.value)
    # a file of another dataset, a foreign key, a lost counter: checked before any tensor is assigned
    state = published[1]

    def refusal(candidate: dict) -> str:
        with pytest.raises(CheckpointError) as refused:
            load_strict(DeepWV3Plus(meta=True), candidate, "f", assign=True)
        return str(refused.value)

    camvid = {**state, "final.6.weight": torch.zeros(11, 256, 1, 1)}
    assert refusal(camvid) == ("f: size mismatch for final.6.weight: the file has (11, 256, 1, 1), "
                               "the model (19, 256, 1, 1)")
    assert refusal({**state, "bn_out.0.weight": state["final.1.weight"]}) == "f: unexpected key 'bn_out.0.weight'"
    partial = {k: v for k, v in state.items() if k != "final.4.num_batches_tracked"}
    assert refusal(partial) == "f: missing key 'final.4.num_batches_tracked'"
    with pytest.raises(SegmenterError, match="needs segmenter_checkpoint .*cityscapes_best.pth"):
        build_segmenter(NAME)
    with pytest.raises(SegmenterError, match="takes no architecture"):
        build_segmenter(f"{NAME}:os16", str(published[0]))


def _official_residual_block() -> Manifest:
    """RPL's ``ResidualAnomalyBlock`` (rpl_corocl.code/model/wide_network.py), under ``branch1.residual_block.``."""
    yield from _official_aspp("atten_aspp")
    yield "bot_atten_aspp.weight", (256, 1280, 1, 1)
    yield "atten_aspp_final.weight", (304, 256, 1, 1)
    yield "proj_head.proj.0.weight", (304, 256, 1, 1)
    yield "proj_head.proj.0.bias", (304,)


def test_rpl_published_file_gives_the_official_score(published, tmp_path):
    """RPL's rev3.pth layout: the segmenter from ``branch1.*``, the head from ``branch1.residual_block.*``."""
    from ood_seg_node.heads import build_head
    from ood_seg_node.heads.rpl_published import PublishedRPL, ResidualBlock
    from ood_seg_node.layers import gaussian_blur

    _, state, model = published
    block = ResidualBlock().eval()
    assert [(k, tuple(v.shape)) for k, v in block.state_dict().items()] == list(_official_residual_block())
    torch.manual_seed(0)
    for module in block.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            torch.nn.init.uniform_(module.running_var, 0.5, 2.0)
    rev3 = tmp_path / "rev3.pth"
    torch.save({"model": {**{f"branch1.{k}": v for k, v in state.items()},
                          **{f"branch1.residual_block.{k}": v for k, v in block.state_dict().items()}},
                "epoch": 40}, rev3)
    head = build_head("rpl", model, str(rev3))
    assert isinstance(head, PublishedRPL)
    image = torch.rand(1, 3, 48, 64)
    with torch.no_grad():
        out = model.run(image)
        perturbed = head.perturbed_logits(out)
        native = head.score(image, out)
        official = head.score_input(image, out, torch.zeros(1, 19, 48, 64))
        expected = gaussian_blur(-torch.logsumexp(
            F.interpolate(perturbed, size=(48, 64), mode="bilinear", align_corners=True), dim=1))
        block.atten_aspp_final.weight.zero_()  # no residual: the segmenter's own logits
        unperturbed = model.final(model.decoder_input(out.features["stage1"], out.features["stage3"])
                                  + block(out.features["stage3"], tuple(out.features["stage1"].shape[-2:])))
    torch.testing.assert_close(unperturbed, out.logits)
    assert not torch.allclose(perturbed, out.logits)
    torch.testing.assert_close(official, expected)
    torch.testing.assert_close(native, gaussian_blur(-torch.logsumexp(perturbed, dim=1)))
    assert native.shape == out.logits.shape[:1] + out.logits.shape[-2:]
    wrong = tmp_path / "rev3_wrong.pth"
    torch.save({"model": {"branch1.residual_block.atten_aspp_final.weight": torch.zeros(3, 2, 1, 1)}}, wrong)
    with pytest.raises(CheckpointError, match="does not fit RPL's residual block: missing key"):
        build_head("rpl", model, str(wrong))


def test_obsnet_published_observer_loads_and_reads_the_segmenter(published, tmp_path):
    """ObsNet's best.pth: a bare state dict of a one-class DeepWV3Plus, fed the segmenter's features."""
    from ood_seg_node.heads import build_head
    from ood_seg_node.heads.obsnet_published import PublishedObsNet

    _, _, model = published
    expected = [(k, (1, 256, 1, 1) if k == "final.6.weight" else shape) for k, shape in official_manifest()]
    observer = DeepWV3Plus(num_classes=1)
    assert [(k, tuple(v.shape)) for k, v in observer.state_dict().items()] == expected
    best = tmp_path / "best.pth"
    torch.save({f"module.{k}": v for k, v in observer.state_dict().items()}, best)
    del observer
    head = build_head("obsnet", model, str(best))
    best.unlink()
    assert isinstance(head, PublishedObsNet)
    image = torch.rand(1, 3, 48, 64)
    with torch.no_grad():
        out = model.run(image)
        logits = head.observer_logits(image, out)
        native = head.score(image, out)
        official = head.score_input(image, out, torch.zeros(1, 19, 48, 64))
        out.features["stage2"] = out.features["stage2"] + 1.0  # the observer reads the segmenter's features
        moved = head.observer_logits(image, out)
    assert logits.shape == (1, 1, *out.logits.shape[-2:])
    torch.testing.assert_close(native, torch.sigmoid(logits)[:, 0])
    torch.testing.assert_close(official, torch.sigmoid(
        F.interpolate(logits, size=(48, 64), mode="bilinear", align_corners=True))[:, 0])
    assert bool(((official >= 0) & (official <= 1)).all()) and not torch.allclose(logits, moved)
    wrong = tmp_path / "observer_wrong.pth"
    torch.save({"final.6.weight": torch.zeros(1, 256, 1, 1)}, wrong)
    with pytest.raises(CheckpointError, match="does not fit ObsNet's observer: missing key 'mod1.conv1.weight'"):
        build_head("obsnet", model, str(wrong))
