# Copyright 2026 The ood_seg_node developers. Licensed under the Apache License, Version 2.0.
"""DiCNet's published StreetHazards teacher (CSAIL PSPNet) and student: keys, layouts, the official score.

The manifests are transcribed from zhouhuan-hust/DiCNet ``models/resnet.py`` (``ResNet`` with its deep stem
for ResNet-50, ``ResNet1`` with the 7x7 stem for ResNet-34), ``models/model.py`` (``ResnetDilated``,
``ResnetDilated1``, ``PPMDeepsup``) and ``models/teacher.py`` (``T2``: the decoder cut to ``ppm`` and
``conv_last.0``), not derived from our modules. The reference forward below is written over the raw state
dicts with ``torch.nn.functional`` and the official dilation rule, independently of the package's modules.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from fixtures import make_streethazards
from published_layouts import Manifest, batch_norm, bottleneck, random_state

from ood_seg_node.checkpoints import CheckpointError
from ood_seg_node.datasets import open_dataset
from ood_seg_node.heads import build_head
from ood_seg_node.heads.base import HeadError
from ood_seg_node.heads.dicnet_published import DiCNetStudent, PublishedDiCNet
from ood_seg_node.label_spaces import STREETHAZARDS
from ood_seg_node.offline_evaluation import PipelineScorer, evaluate_frames
from ood_seg_node.pipeline import Pipeline
from ood_seg_node.segmenters import SegmenterError, build_segmenter
from ood_seg_node.segmenters.pspnet import NAME, CSAILPSPNet

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


# --- manifests, transcribed from the official definitions --------------------------------------------------

def _official_resnet(prefix: str, depth: int) -> Manifest:
    """ResNet-50 (``ResNet``: 3x3 stem 64/64/128, bottlenecks) or ResNet-34 (``ResNet1``: 7x7 stem, basic)."""
    if depth == 50:
        for index, (cin, cout) in enumerate(((3, 64), (64, 64), (64, 128)), start=1):
            yield f"{prefix}conv{index}.weight", (cout, cin, 3, 3)
            yield from batch_norm(f"{prefix}bn{index}", cout)
        inplanes, expansion, blocks = 128, 4, (3, 4, 6, 3)
    else:
        yield f"{prefix}conv1.weight", (64, 3, 7, 7)
        yield from batch_norm(f"{prefix}bn1", 64)
        inplanes, expansion, blocks = 64, 1, (3, 4, 6, 3)
    for layer, (planes, count) in enumerate(zip((64, 128, 256, 512), blocks), start=1):
        for block in range(count):
            name = f"{prefix}layer{layer}.{block}"
            if expansion == 4:
                yield from bottleneck(name, inplanes, planes)
            else:
                yield f"{name}.conv1.weight", (planes, inplanes, 3, 3)
                yield from batch_norm(f"{name}.bn1", planes)
                yield f"{name}.conv2.weight", (planes, planes, 3, 3)
                yield from batch_norm(f"{name}.bn2", planes)
            if block == 0 and (layer > 1 or inplanes != planes * expansion):
                yield f"{name}.downsample.0.weight", (planes * expansion, inplanes, 1, 1)
                yield from batch_norm(f"{name}.downsample.1", planes * expansion)
            inplanes = planes * expansion


def _official_ppm(prefix: str, fc_dim: int) -> Manifest:
    for index in range(4):
        yield f"{prefix}ppm.{index}.1.weight", (512, fc_dim, 1, 1)
        yield from batch_norm(f"{prefix}ppm.{index}.2", 512)


def official_decoder(num_classes: int = 13) -> list[tuple[str, tuple[int, ...]]]:
    """``PPMDeepsup(num_class, fc_dim=2048)``."""
    return [*_official_ppm("", 2048),
            ("cbr_deepsup.0.weight", (512, 1024, 3, 3)), *batch_norm("cbr_deepsup.1", 512),
            ("conv_last.0.weight", (512, 4096, 3, 3)), *batch_norm("conv_last.1", 512),
            ("conv_last.4.weight", (num_classes, 512, 1, 1)), ("conv_last.4.bias", (num_classes,)),
            ("conv_last_deepsup.weight", (num_classes, 512, 1, 1)), ("conv_last_deepsup.bias", (num_classes,))]


def official_student() -> list[tuple[str, tuple[int, ...]]]:
    """``T2``: ``encoder`` = ``ResnetDilated1(resnet34)``, ``decoder`` = ``ppm`` + ``conv_last.0``."""
    return [*_official_resnet("encoder.", 34), *_official_ppm("decoder.", 512),
            ("decoder.conv_last.0.weight", (512, 2560, 3, 3))]


def _keys(module: torch.nn.Module) -> list[tuple[str, tuple[int, ...]]]:
    return [(key, tuple(value.shape)) for key, value in module.state_dict().items()]


def test_state_dicts_match_the_official_manifests():
    with torch.device("meta"):
        teacher, student = CSAILPSPNet(13), DiCNetStudent()
    assert _keys(teacher.encoder) == list(_official_resnet("", 50))
    assert _keys(teacher.decoder) == official_decoder()
    assert _keys(student) == official_student()
    assert teacher.label_space is STREETHAZARDS and teacher.class_names[7] == "road"


# --- an independent forward over the raw state dicts ---------------------------------------------------------

def _f_bn(x: torch.Tensor, state: dict, prefix: str) -> torch.Tensor:
    return F.batch_norm(x, state[f"{prefix}.running_mean"], state[f"{prefix}.running_var"],
                        state[f"{prefix}.weight"], state[f"{prefix}.bias"], False, 0.0, 1e-5)


def _f_resnet(x: torch.Tensor, state: dict, prefix: str, depth: int) -> torch.Tensor:
    """The official dilated ResNet: layer3/4 unstrided, 3x3 convs dilated 2/4 (1/2 where they strided)."""
    if depth == 50:
        for index in (1, 2, 3):
            x = F.relu(_f_bn(F.conv2d(x, state[f"{prefix}conv{index}.weight"], stride=2 if index == 1 else 1,
                                      padding=1), state, f"{prefix}bn{index}"))
    else:
        x = F.relu(_f_bn(F.conv2d(x, state[f"{prefix}conv1.weight"], stride=2, padding=1), state, f"{prefix}bn1"))
    x = F.max_pool2d(x, 3, 2, 1)
    for layer, count in zip((1, 2, 3, 4), (3, 4, 6, 3)):
        dilate = {3: 2, 4: 4}.get(layer, 1)
        for block in range(count):
            name = f"{prefix}layer{layer}.{block}"
            first_stride = 2 if (block == 0 and layer > 1) else 1
            stride = first_stride if dilate == 1 else 1
            rate = dilate // 2 if (first_stride == 2 and dilate > 1) else dilate
            if depth == 50:
                out = F.relu(_f_bn(F.conv2d(x, state[f"{name}.conv1.weight"]), state, f"{name}.bn1"))
                out = F.relu(_f_bn(F.conv2d(out, state[f"{name}.conv2.weight"], stride=stride, padding=rate,
                                            dilation=rate), state, f"{name}.bn2"))
                out = _f_bn(F.conv2d(out, state[f"{name}.conv3.weight"]), state, f"{name}.bn3")
            else:
                out = F.relu(_f_bn(F.conv2d(x, state[f"{name}.conv1.weight"], stride=stride, padding=rate,
                                            dilation=rate), state, f"{name}.bn1"))
                out = _f_bn(F.conv2d(out, state[f"{name}.conv2.weight"], padding=dilate, dilation=dilate), state,
                            f"{name}.bn2")
            if f"{name}.downsample.0.weight" in state:
                x = _f_bn(F.conv2d(x, state[f"{name}.downsample.0.weight"], stride=stride), state,
                          f"{name}.downsample.1")
            x = F.relu(out + x)
    return x


def _f_ppm(x: torch.Tensor, state: dict, prefix: str) -> torch.Tensor:
    branches = [x]
    for index, scale in enumerate((1, 2, 3, 6)):
        pooled = F.relu(_f_bn(F.conv2d(F.adaptive_avg_pool2d(x, scale), state[f"{prefix}ppm.{index}.1.weight"]),
                              state, f"{prefix}ppm.{index}.2"))
        branches.append(F.interpolate(pooled, x.shape[-2:], mode="bilinear", align_corners=False))
    return torch.cat(branches, 1)


def official_outputs(image: torch.Tensor, encoder: dict, decoder: dict, student: dict) -> tuple[torch.Tensor, ...]:
    """(teacher feature Tf, student feature Sf, teacher logits) as DiCNet's evaluation computes them."""
    x = (image - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)
    pooled = _f_ppm(_f_resnet(x, encoder, "", 50), decoder, "")
    teacher = _f_bn(F.conv2d(pooled, decoder["conv_last.0.weight"], padding=1), decoder, "conv_last.1")  # affine
    logits = F.conv2d(F.relu(teacher), decoder["conv_last.4.weight"], decoder["conv_last.4.bias"])
    student_pooled = _f_ppm(_f_resnet(x, student, "encoder.", 34), student, "decoder.")
    return teacher, F.conv2d(student_pooled, student["decoder.conv_last.0.weight"], padding=1), logits


# --- the published files ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def published(tmp_path_factory) -> dict:
    """CSAIL's two teacher files (bare state dicts) and DiCNet's student as DataParallel saved it."""
    folder = tmp_path_factory.mktemp("dicnet")
    states = {"encoder": random_state(_official_resnet("", 50), 0), "decoder": random_state(official_decoder(), 1),
              "student": random_state(official_student(), 2)}
    teacher = folder / "pretrained"
    teacher.mkdir()
    torch.save(states["encoder"], teacher / "encoder_epoch_40.pth")
    torch.save(states["decoder"], teacher / "decoder_epoch_40.pth")
    torch.save({f"module.{k}": v for k, v in states["student"].items()}, folder / "student_epoch_115.pth")
    return {"teacher": teacher, "student_file": folder / "student_epoch_115.pth", **states}


def test_published_files_give_the_official_labels_and_score(published):
    segmenter = build_segmenter(NAME, str(published["teacher"]))
    assert segmenter.identity.startswith(f"{NAME}@") and segmenter.label_space is STREETHAZARDS
    pipelines = {resolution: Pipeline.from_names(segmenter=NAME, segmenter_checkpoint=str(published["teacher"]),
                                                 head="dicnet", head_checkpoint=str(published["student_file"]),
                                                 score_resolution=resolution)
                 for resolution in ("input", "native")}
    assert isinstance(pipelines["input"].head, PublishedDiCNet)
    rgb = np.random.default_rng(0).integers(0, 256, (72, 128, 3), dtype=np.uint8)
    image = torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 255.0
    with torch.no_grad():
        teacher, student, logits = official_outputs(image, published["encoder"], published["decoder"],
                                                    published["student"])
    discrepancy = (teacher - student).pow(2).mean(1, keepdim=True)
    upsampled = F.interpolate(discrepancy, size=(72, 128), mode="bilinear", align_corners=True)[0, 0]
    official = (upsampled - upsampled.min()) / (upsampled.max() - upsampled.min())
    official_labels = F.interpolate(logits, size=(72, 128), mode="bilinear", align_corners=False).argmax(1)[0]

    result = pipelines["input"].process(rgb)
    np.testing.assert_allclose(result.score, official.numpy(), atol=1e-4)
    assert (result.labels == official_labels.numpy()).mean() >= 0.999
    native = pipelines["native"].process(rgb)
    assert native.score.shape == (72, 128) and native.score.min() >= 0.0 and native.score.max() <= 1.0
    assert native.native_scores["dicnet"].max() == pytest.approx(1.0) and native.native_scores["dicnet"].min() == 0.0


def test_wrong_files_are_refused_in_one_line(published, tmp_path):
    def refusal(error: type[Exception], checkpoint: str, match: str, head: str = "") -> None:
        with pytest.raises(error, match=match) as caught:
            if head:
                build_head("dicnet", build_segmenter("builtin"), head)
            else:
                build_segmenter(NAME, checkpoint)
        assert "\n" not in str(caught.value)

    encoder, decoder = published["teacher"] / "encoder_epoch_40.pth", published["teacher"] / "decoder_epoch_40.pth"
    ade = tmp_path / "ade_decoder.pth"
    torch.save(random_state(official_decoder(150), 3), ade)
    refusal(SegmenterError, f"{encoder},{ade}", "predicts 150 classes")
    refusal(CheckpointError, f"{decoder},{decoder}", "does not fit pspnet_resnet50dilated's encoder: missing key "
                                                      "'conv1.weight'")
    two = tmp_path / "two"
    two.mkdir()
    for name in ("encoder_epoch_20.pth", "encoder_epoch_40.pth", "decoder_epoch_40.pth"):
        (two / name).symlink_to(published["teacher"] / ("decoder_epoch_40.pth" if "decoder" in name else
                                                          "encoder_epoch_40.pth"))
    refusal(CheckpointError, str(two), r"must hold exactly one encoder\*.pth \(found encoder_epoch_20.pth, "
                                       "encoder_epoch_40.pth\\)")
    refusal(HeadError, "", "needs segmenter pspnet_resnet50dilated", head=str(published["student_file"]))
    truncated = tmp_path / "encoder.pth"
    truncated.write_bytes(encoder.read_bytes()[: 1 << 16])
    refusal(CheckpointError, f"{truncated},{decoder}", "truncated or damaged")


def test_legacy_files_without_batch_counters_load(published, tmp_path):
    legacy = {k: v for k, v in published["decoder"].items() if not k.endswith("num_batches_tracked")}
    path = tmp_path / "decoder_legacy.pth"
    torch.save(legacy, path)
    segmenter = build_segmenter(NAME, f"{published['teacher'] / 'encoder_epoch_40.pth'},{path}")
    assert torch.equal(segmenter.decoder.conv_last[4].weight, published["decoder"]["conv_last.4.weight"])


def test_streethazards_evaluation_reports_miou_in_the_segmenters_classes(published, tmp_path):
    make_streethazards(tmp_path)
    dataset = open_dataset(f"streethazards:{tmp_path}")
    pipeline = Pipeline.from_names(segmenter=NAME, segmenter_checkpoint=str(published["teacher"]), head="msp")
    run = evaluate_frames(lambda: dataset, [PipelineScorer(pipeline)], kind=dataset.kind, total=len(dataset))
    result = run.results()["msp"]
    assert set(result["iou_per_class"]) <= set(STREETHAZARDS.class_names) and result["frames"] == 3
    cityscapes = Pipeline.from_names(segmenter="builtin", head="msp")
    assert "miou" not in evaluate_frames(lambda: dataset, [PipelineScorer(cityscapes)], kind="anomaly").results()["msp"]
    colours = pipeline.segmenter.label_space.colorize(np.array([[7, 12, 255]], dtype=np.uint8))
    assert colours.tolist() == [[[128, 64, 128], [220, 220, 0], [0, 0, 0]]]


def test_published_teacher_and_student_export_as_one_onnx_graph(published, tmp_path):
    """PSPNet teacher + DiCNet student + the official score order in one graph, checked by the exporter."""
    from ood_seg_node.deploy import export_onnx

    pipeline = Pipeline.from_names(segmenter=NAME, segmenter_checkpoint=str(published["teacher"]), head="dicnet",
                                   head_checkpoint=str(published["student_file"]), score_resolution="input",
                                   device="cpu")
    path = export_onnx(pipeline.segmenter, pipeline.heads, ["dicnet"], (64, 96), tmp_path / "dicnet.onnx",
                       score_resolution="input")
    import onnxruntime

    rgb = np.random.default_rng(3).integers(0, 256, (64, 96, 3), dtype=np.uint8)
    labels, score = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(
        None, {"rgb": rgb[None]})
    expected = pipeline.process(rgb)
    np.testing.assert_allclose(score[0], expected.score, atol=1e-4)  # per-frame min-max in the graph too
    assert score.max() == pytest.approx(1.0) and (labels[0] == expected.labels).mean() >= 0.999
