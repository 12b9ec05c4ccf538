# Copyright 2026 The ood_seg_node developers. Licensed under the Apache License, Version 2.0.
"""Numerical parity of the package's published-weights loaders with the authors' own code, side by side.

Why this script exists: the package rewrites DiCNet's PSPNet teacher and ResNet-34 student, the DeepLabV3+
WideResNet38 of RPL and ObsNet, RPL's residual block and ObsNet's observer with the official attribute names,
so that the authors' files load strictly. Its unit tests check those modules against manifests and forwards
transcribed from the official code; only running the official code itself shows that nothing was lost in
the transcription (a stride, a padding, an ``align_corners``, the order of upsampling, energy and blur).
No real weights can be downloaded here, so for each method this script

1. builds the OFFICIAL model from a checkout of the authors' repository (``sys.path`` pointing into it; the
   official model-building and evaluation functions are executed verbatim, taken from the checkout's source
   with ``ast``, nothing is copied into this repository),
2. randomises its weights (random batch-norm scale and shift and conv biases, then batch-norm statistics
   measured on a batch of random frames: no batch norm is the identity, activations keep their scale),
3. saves them in the layout the authors publish and lets the official loader read that file back,
4. loads the same file through the package's public API (``Pipeline.from_names``) and
5. runs both on one random frame, printing the agreement of the labels (fraction of equal pixels), the
   maximum difference of the anomaly scores, intermediate tensors for diagnosis, and PASS/FAIL (labels equal
   on >= 99.9 % of pixels, score within 1e-4 absolute, plus 1e-4 relative for unbounded scores: energy).

Usage (each checkout optional; a missing one is skipped with a line)::

    .venv/bin/python bench/official_parity.py --dicnet /path/DiCNet --rpl /path/RPL --obsnet /path/obsnet \
        [--size 96x160] [--seed 0] [--threads 1]

Checkouts: ``git clone https://github.com/zhouhuan-hust/DiCNet``, ``.../yyliu01/RPL`` (``rpl_corocl.code``
is used), ``.../valeoai/obsnet``. Stubbed, and only where irrelevant to the forward: DiCNet's
``models.resnet.load_url`` (the ImageNet initialisation ``create_teacher`` downloads, overwritten by the
teacher files) returns an empty state dict; ``Tensor.cuda`` / ``Module.cuda`` are no-ops while the official
functions run (they call ``.cuda()``; this runs on the CPU). Nothing else: the official modules import as
they are. The WideResNet38 constructor of RPL and ObsNet sets ``torch.nn.Dropout = nn.Dropout2d`` process-wide;
the original is restored after each official build. Adapted: DiCNet's evaluation upsamples the teacher
classifier's logits to a hard-coded 720x1280 (StreetHazards); here to the frame's size.

``--eager`` runs the package's pipeline without its CPU fast path (``optimize=False``, contiguous memory like
the official code): then labels, logits and features are bit-identical, so what the default run shows beyond
that is float32 rounding of the channels-last convolutions.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import subprocess
import sys
import tempfile
import time
import types
from collections import OrderedDict
from functools import partial
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ood_seg_node.pipeline import Pipeline, parse_size

IMAGENET_MEAN = (0.485, 0.456, 0.406)  # all three official codes normalise with these (DiCNet's
IMAGENET_STD = (0.229, 0.224, 0.225)  # img_transform, RPL's config.image_mean/std, ObsNet's CityScapes args)
LABEL_AGREEMENT = 0.999
SCORE_ATOL = 1e-4
SCORE_RTOL = 1e-4


# --------------------------------------------------------------------------------------------- helpers


def commit_of(path: Path) -> str:
    try:
        return subprocess.run(["git", "-C", str(path), "rev-parse", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"


@contextlib.contextmanager
def official_imports(root: Path):
    """``sys.path`` points into the checkout; its modules are dropped afterwards (``models``, ``model``,
    ``Models``, ``utils`` of different repositories must not shadow each other). ``nn.Dropout`` is restored
    (the official WideResNet constructor replaces it with ``nn.Dropout2d`` process-wide)."""
    root = root.resolve()
    before = set(sys.modules)
    dropout = nn.Dropout
    sys.path.insert(0, str(root))
    try:
        yield
    finally:
        sys.path.remove(str(root))
        nn.Dropout = dropout
        for name in set(sys.modules) - before:
            file = getattr(sys.modules[name], "__file__", None) or ""
            paths = list(getattr(sys.modules[name], "__path__", []) or [])
            if any(str(p).startswith(str(root)) for p in [file, *paths]):
                del sys.modules[name]


@contextlib.contextmanager
def cpu_only():
    """The official functions call ``.cuda()`` on tensors and modules; here those calls are no-ops."""
    tensor_cuda, module_cuda = torch.Tensor.cuda, nn.Module.cuda
    torch.Tensor.cuda = lambda self, *args, **kwargs: self
    nn.Module.cuda = lambda self, *args, **kwargs: self
    try:
        yield
    finally:
        torch.Tensor.cuda, nn.Module.cuda = tensor_cuda, module_cuda


def official_function(source: Path, name: str, namespace: dict):
    """Function ``name`` of the official file ``source``, executed verbatim in ``namespace``.

    Used where importing the whole script would need its datasets, loggers and plotting (``valid.py``,
    ``evaluation_with_seg.py``, ``inference.py``): only the function's own source runs.
    """
    tree = ast.parse(source.read_text(encoding="utf-8"), filename=str(source))
    nodes = [node for node in tree.body if isinstance(node, ast.FunctionDef) and node.name == name]
    if len(nodes) != 1:
        raise SystemExit(f"{source}: expected one top-level function {name!r}, found {len(nodes)}")
    scope = dict(namespace)
    exec(compile(ast.Module(body=nodes, type_ignores=[]), str(source), "exec"), scope)  # noqa: S102
    return scope[name]


def randomise(module: nn.Module, calibrate, seed: int) -> None:
    """Random weights with sane activations, and no batch norm the identity.

    Every BN gets a random scale in [0.5, 1.5] and shift ~ N(0, 0.2), every conv bias ~ N(0, 0.1); then
    ``calibrate()`` runs the module in train mode with momentum 1, so each BN's running mean and variance
    become the statistics of its input on that batch (measured after the random affines upstream, so the
    activations keep their scale through ~40 layers instead of drifting by a factor per layer).
    """
    torch.manual_seed(seed)
    norms = [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    with torch.no_grad():
        for norm in norms:
            norm.weight.uniform_(0.5, 1.5)
            norm.bias.normal_(0.0, 0.2)
        for conv in module.modules():
            if isinstance(conv, nn.Conv2d) and conv.bias is not None:
                conv.bias.normal_(0.0, 0.1)
    momenta = [m.momentum for m in norms]
    for norm in norms:
        norm.momentum = 1.0
    module.train()
    with torch.no_grad():
        calibrate()
    module.eval()
    with torch.no_grad():
        for norm, momentum in zip(norms, momenta):
            norm.momentum = momentum
            norm.running_var.clamp_(min=1e-2)  # channels a ReLU silenced on the batch


def check_loaded(module: nn.Module, reference: dict[str, torch.Tensor], what: str) -> None:
    """The official loaders use ``strict=False`` in places: make sure every tensor did arrive."""
    state = module.state_dict()
    missing = sorted(set(state) ^ set(reference))
    wrong = [k for k in state if k in reference and not torch.equal(state[k], reference[k])]
    if missing or wrong:
        raise SystemExit(f"{what}: official loader did not restore the saved weights "
                         f"(keys differing: {missing[:3]}, values differing: {wrong[:3]})")


def random_frame(size: tuple[int, int], seed: int) -> np.ndarray:
    """HxWx3 uint8: smooth random blobs plus pixel noise (structure at several scales)."""
    rng = np.random.default_rng(seed)
    coarse = torch.from_numpy(rng.uniform(0, 255, (1, 3, max(2, size[0] // 16), max(2, size[1] // 16))))
    smooth = F.interpolate(coarse, size=size, mode="bilinear", align_corners=False)[0].permute(1, 2, 0).numpy()
    frame = 0.8 * smooth + 0.2 * rng.uniform(0, 255, (*size, 3))
    return np.clip(frame, 0, 255).astype(np.uint8)


def calibration_batch(rgb: np.ndarray, seed: int, count: int = 4) -> torch.Tensor:
    """Other random frames of the test frame's kind, normalised: the batch BN statistics are measured on.

    Frames of the same kind keep the test frame's activations at the scale BN normalises to; several of
    them give the globally pooled branches (PPM, ASPP image pooling) a spread to normalise by.
    """
    return torch.cat([official_input(random_frame(rgb.shape[:2], seed + 1000 + k)) for k in range(count)])


def to_unit_batch(rgb: np.ndarray) -> torch.Tensor:
    """(1, 3, H, W) float in [0, 1] from HxWx3 uint8 RGB: what the package's segmenters take."""
    return torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 255.0


def official_input(rgb: np.ndarray) -> torch.Tensor:
    """(1, 3, H, W): ``/ 255`` then ImageNet normalisation, as the official transforms do."""
    x = torch.from_numpy(np.float32(rgb) / 255.0).permute(2, 0, 1)
    mean, std = torch.tensor(IMAGENET_MEAN).view(3, 1, 1), torch.tensor(IMAGENET_STD).view(3, 1, 1)
    return ((x - mean) / std)[None].contiguous()


def max_rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(((a - b).abs() / b.abs().clamp_min(1e-12)).max())


class Report:
    def __init__(self, name: str) -> None:
        self.name, self.ok = name, True

    def line(self, text: str) -> None:
        print(f"  {text}", flush=True)

    def labels(self, what: str, package: np.ndarray, official: torch.Tensor, *, criterion: bool = True) -> None:
        official = official.cpu().numpy().astype(np.int64)
        package = package.astype(np.int64)
        equal = float((package == official).mean())
        differ = int((package != official).sum())
        verdict = ""
        if criterion:
            passed = equal >= LABEL_AGREEMENT
            self.ok &= passed
            verdict = "  ok" if passed else f"  FAIL (< {LABEL_AGREEMENT:.1%})"
        else:
            verdict = "  (informational)"
        self.line(f"labels {what}: {equal:.4%} equal ({differ} of {package.size} pixels differ), "
                  f"max |diff| {int(np.abs(package - official).max())}{verdict}")

    def score(self, what: str, package: np.ndarray, official: torch.Tensor, *, rtol: float = 0.0) -> None:
        package_t = torch.from_numpy(np.asarray(package, dtype=np.float32))
        official = official.float().cpu()
        if package_t.shape != official.shape:
            self.ok = False
            self.line(f"score {what}: shape {tuple(package_t.shape)} vs official {tuple(official.shape)}  FAIL")
            return
        diff = (package_t - official).abs()
        bound = SCORE_ATOL + rtol * official.abs()
        passed = bool((diff <= bound).all())
        self.ok &= passed
        tolerance = f"atol {SCORE_ATOL:g}" + (f" + rtol {rtol:g}" if rtol else "")
        self.line(f"score {what}: max |diff| {float(diff.max()):.3e}, max rel {max_rel(package_t, official):.3e} "
                  f"(official range [{float(official.min()):.4g}, {float(official.max()):.4g}]; {tolerance})"
                  + ("  ok" if passed else "  FAIL"))

    def tensor(self, what: str, package: torch.Tensor, official: torch.Tensor) -> None:
        """Intermediate tensors, for diagnosis only."""
        package, official = package.float().cpu(), official.float().cpu()
        if package.shape != official.shape:
            self.line(f"  {what}: shape {tuple(package.shape)} vs official {tuple(official.shape)}")
            return
        scale = float(official.abs().max())
        self.line(f"  {what}: max |diff| {float((package - official).abs().max()):.3e} (max |official| {scale:.3g})")

    def verdict(self) -> bool:
        print(f"  => {self.name}: {'PASS' if self.ok else 'FAIL'}", flush=True)
        return self.ok


OPTIMIZE = True  # --eager sets False


def package_pipeline(**names) -> Pipeline:
    """The package's public entry point, as the node builds it (``optimize`` as the node's default)."""
    return Pipeline.from_names(score_resolution="input", device="cpu", optimize=OPTIMIZE, **names)


# ---------------------------------------------------------------------------------------------- DiCNet


def run_dicnet(root: Path, rgb: np.ndarray, work: Path, seed: int) -> bool:
    report = Report("DiCNet")
    x = official_input(rgb)
    height, width = rgb.shape[:2]
    with official_imports(root):
        from models import resnet as official_resnet
        from models.model import ModelBuilder, SegmentationModule
        from models.teacher import T2, T

        # Teacher and student exactly as the official builders make them (no download: pretrained=False).
        encoder = ModelBuilder.build_encoder("resnet50dilated", 2048, pretrained=False)
        decoder = ModelBuilder.build_decoder("ppm_deepsup", fc_dim=2048, num_class=13)
        teacher_net = nn.Sequential(OrderedDict([("net_enc", encoder), ("net_dec", decoder)]))
        calibration = calibration_batch(rgb, seed)
        randomise(teacher_net, lambda: decoder(encoder(calibration, return_feature_maps=True)), seed)
        s_encoder = ModelBuilder.build_encoder("resnet34dilated", 512, pretrained=False)
        s_decoder = ModelBuilder.build_decoder("ppm_deepsup", fc_dim=512, num_class=13)
        student_net = T2(nn.Sequential(OrderedDict([("net_enc", s_encoder), ("net_dec", s_decoder)])))
        randomise(student_net, lambda: student_net({"img_data": calibration}), seed + 1)

        # Published layout: CSAIL's encoder / decoder files in a folder; the student as saved from its
        # (UserScattered)DataParallel wrapper, i.e. T2's state dict with 'module.' prefixes.
        folder = work / "dicnet_teacher"
        folder.mkdir()
        encoder_file, decoder_file = folder / "encoder_epoch_30.pth", folder / "decoder_epoch_30.pth"
        torch.save(encoder.state_dict(), encoder_file)
        torch.save(decoder.state_dict(), decoder_file)
        student_file = work / "student_epoch_115.pth"
        torch.save(nn.DataParallel(student_net).state_dict(), student_file)

        # The official evaluation's own builders (evaluation_with_seg.py), reading those files back.
        # Stub: models.resnet.load_url (create_teacher builds the encoder with pretrained=True, i.e. downloads
        # the ImageNet ResNet-50, which the teacher file then overwrites): returns an empty state dict.
        namespace = {"ModelBuilder": ModelBuilder, "T": T, "T2": T2, "nn": nn, "torch": torch,
                     "OrderedDict": OrderedDict}
        script = root / "evaluation_with_seg.py"
        create_teacher = official_function(script, "create_teacher", namespace)
        create_student = official_function(script, "create_student", namespace)
        cfg = types.SimpleNamespace(t_arch="resnet50dilated", teacher_weight=(str(encoder_file), str(decoder_file)),
                                    s_arch="resnet34dilated", weight_student=str(student_file), test_epoch=115)
        load_url = official_resnet.load_url
        official_resnet.load_url = lambda *args, **kwargs: {}
        try:
            with cpu_only(), contextlib.redirect_stdout(sys.stderr):
                teacher, bn_param = create_teacher(cfg)
                student = create_student(cfg, bn_param)
        finally:
            official_resnet.load_url = load_url
        check_loaded(teacher.model.encoder, encoder.state_dict(), "DiCNet teacher encoder")
        check_loaded(teacher.model.decoder, {k: v for k, v in decoder.state_dict().items()
                                             if k.startswith(("ppm.", "conv_last.0.", "conv_last.1."))},
                     "DiCNet teacher decoder (T)")
        check_loaded(teacher.classifier[2], {k.removeprefix("conv_last.4."): v for k, v in
                                             decoder.state_dict().items() if k.startswith("conv_last.4.")},
                     "DiCNet teacher classifier")
        check_loaded(student, student_net.state_dict(), "DiCNet student (T2)")
        teacher.eval()
        student.eval()
        batch_data = {"img_data": x}
        with torch.no_grad():
            # evaluation_with_seg.py main(), lines for one frame (batch_per_gpu = 1):
            tf, logits_batch = teacher(batch_data)
            sf = student(batch_data)
            score_map = torch.pow(tf - sf, 2).mean(dim=1)
            score_map = nn.functional.interpolate(score_map.unsqueeze(1), (height, width), mode="bilinear",
                                                  align_corners=True)
            score_map = (score_map - torch.min(score_map)) / (torch.max(score_map) - torch.min(score_map))
            score_map.squeeze_(1)
            # the official evaluation upsamples to (720, 1280), StreetHazards' size; here: the frame's size
            logits_batch = nn.functional.interpolate(logits_batch, (height, width), mode="bilinear",
                                                     align_corners=False)
            # The PSPNet's proper inference (CSAIL): decoder with use_softmax and segSize.
            decoder.use_softmax = True
            probabilities = SegmentationModule(encoder, decoder, crit=None)(batch_data, segSize=(height, width))

    report.line(f"official: models/model.py ModelBuilder, models/teacher.py T / T2, evaluation_with_seg.py "
                f"create_teacher / create_student + its score lines; input {height}x{width}")
    pipeline = package_pipeline(segmenter="pspnet_resnet50dilated", segmenter_checkpoint=str(folder),
                                head="dicnet", head_checkpoint=str(student_file))
    result = pipeline.process(rgb)
    report.labels("vs PSPNet forward (segSize path)", result.labels, probabilities[0].argmax(0))
    report.labels("vs evaluation's teacher classifier (BN affine applied twice)", result.labels,
                  logits_batch[0].argmax(0), criterion=False)
    report.score("dicnet (per-frame min-max)", result.scores["dicnet"], score_map[0])

    with torch.no_grad():  # intermediate tensors through the package's lower-level API
        rgb01 = to_unit_batch(rgb)
        out = pipeline.segmenter.run(rgb01)
        report.tensor("softmax at input size", torch.softmax(
            pipeline.segmenter.labels_logits(out.logits, (height, width), "input"), 1), probabilities)
        report.tensor("teacher feature (neck_preact vs T)", out.features["neck_preact"], tf)
        report.tensor("student feature (vs T2)", pipeline.head.student(pipeline.segmenter.normalise(rgb01)), sf)
    return report.verdict()


# ------------------------------------------------------------------------------------------------- RPL


def run_rpl(root: Path, rgb: np.ndarray, work: Path, seed: int) -> bool:
    report = Report("RPL")
    code = root / "rpl_corocl.code"
    x = official_input(rgb)
    height, width = rgb.shape[:2]
    checkpoint = work / "rpl_corocl.pth"
    with official_imports(code):
        import torchvision
        from model.network import Network

        network = Network(19)
        calibration = calibration_batch(rgb, seed)
        randomise(network, partial(network, calibration), seed)
        with torch.no_grad():  # logits of about +-10 as a trained model's (default init: +-1, a flat energy)
            network.branch1.final[6].weight.mul_(10.0)
        # Published layout: engine.save_checkpoint, {'model': state dict without 'module.', 'epoch', ...}
        torch.save({"model": OrderedDict(network.state_dict()), "epoch": 0, "iteration": 0}, checkpoint)
        reference = {k: v.clone() for k, v in network.state_dict().items()}
        del network
        # test.py's own loader (strict) and valid.py's score, executed from the checkout.
        config = types.SimpleNamespace(num_classes=19)
        get_anomaly_detector = official_function(code / "test.py", "get_anomaly_detector",
                                                 {"Network": Network, "config": config, "torch": torch,
                                                  "OrderedDict": OrderedDict})
        compute_anomaly_score = official_function(code / "valid.py", "compute_anomaly_score",
                                                  {"torch": torch, "torchvision": torchvision})
        model = get_anomaly_detector(str(checkpoint))
        check_loaded(model, reference, "RPL network")
        del reference
        model.eval()
        with torch.no_grad():
            inlier_logits, logits, _ = model(x)  # valid_anomaly(): out1, out2 (perturbed), proj
            anomaly_score = compute_anomaly_score(logits, mode="energy")
        del model

    report.line(f"official: rpl_corocl.code model/network.py Network, test.py get_anomaly_detector, valid.py "
                f"compute_anomaly_score(mode='energy'); input {height}x{width}")
    pipeline = package_pipeline(segmenter="deeplabv3plus_wrn38", segmenter_checkpoint=str(checkpoint),
                                head="rpl", head_checkpoint=str(checkpoint))
    result = pipeline.process(rgb)
    report.labels("vs official out1 argmax", result.labels, inlier_logits[0].argmax(0))
    report.score("rpl (energy, blurred)", result.scores["rpl"], anomaly_score, rtol=SCORE_RTOL)
    with torch.no_grad():
        rgb01 = to_unit_batch(rgb)
        out = pipeline.segmenter.run(rgb01)
        report.tensor("segmenter logits at input size (vs out1)",
                      pipeline.segmenter.labels_logits(out.logits, (height, width), "input"), inlier_logits)
        perturbed = F.interpolate(pipeline.head.perturbed_logits(out), size=(height, width), mode="bilinear",
                                  align_corners=True)
        report.tensor("perturbed logits at input size (vs out2)", perturbed, logits)
    del pipeline
    return report.verdict()


# ---------------------------------------------------------------------------------------------- ObsNet


def run_obsnet(root: Path, rgb: np.ndarray, work: Path, seed: int) -> bool:
    report = Report("ObsNet")
    x = official_input(rgb)
    height, width = rgb.shape[:2]
    segnet_file, obsnet_folder = work / "segnet_road_anomaly.pth", work / "obsnet"
    obsnet_folder.mkdir()
    with official_imports(root):
        from Models.road_anomaly_networks.deepv3 import DeepWV3Plus, DeepWV3Plus_Obsnet

        segnet = DeepWV3Plus(19)
        calibration = calibration_batch(rgb, seed)
        randomise(segnet, partial(segnet, calibration), seed)
        torch.save(segnet.state_dict(), segnet_file)  # bare state dict: load_net.py torch.load(args.segnet_file)
        with torch.no_grad():
            feats = segnet(calibration, return_feat=True)
        reference_seg = {k: v.clone() for k, v in segnet.state_dict().items()}
        del segnet
        observer = DeepWV3Plus_Obsnet(num_classes=1)
        randomise(observer, partial(observer, calibration, feats), seed + 1)
        torch.save(observer.state_dict(), obsnet_folder / "best.pth")  # main.py: obsnet.module.state_dict()
        reference_obs = {k: v.clone() for k, v in observer.state_dict().items()}
        del observer, feats
        # load_net.py net_loader (test_only) and inference.py _inference, executed from the checkout.
        net_loader = official_function(root / "Models" / "load_net.py", "net_loader",
                                       {"DeepWV3Plus": DeepWV3Plus, "DeepWV3Plus_Obsnet": DeepWV3Plus_Obsnet,
                                        "torch": torch, "nn": nn, "os": __import__("os")})
        inference = official_function(root / "inference.py", "_inference", {"torch": torch})
        args = types.SimpleNamespace(model="road_anomaly", nclass=19, device=torch.device("cpu"),
                                     segnet_file=str(segnet_file), obsnet_file=str(obsnet_folder), test_only=True,
                                     resume=False)
        obsnet, segnet = net_loader(args)
        check_loaded(segnet, reference_seg, "ObsNet segmenter")
        check_loaded(obsnet, reference_obs, "ObsNet observer")
        del reference_seg, reference_obs
        with torch.no_grad():
            seg_logits, obs_pred = inference(x, segnet, obsnet)  # sigmoid(obsnet(img, segnet feats))
            observer_logit = obsnet(x, segnet(x, return_feat=True))
        del obsnet, segnet

    report.line(f"official: Models/road_anomaly_networks/deepv3.py DeepWV3Plus / DeepWV3Plus_Obsnet, "
                f"Models/load_net.py net_loader, inference.py _inference; input {height}x{width}")
    pipeline = package_pipeline(segmenter="deeplabv3plus_wrn38", segmenter_checkpoint=str(segnet_file),
                                head="obsnet", head_checkpoint=str(obsnet_folder / "best.pth"))
    result = pipeline.process(rgb)
    report.labels("vs official segnet argmax", result.labels, seg_logits[0].argmax(0))
    report.score("obsnet (sigmoid)", result.scores["obsnet"], obs_pred)
    with torch.no_grad():
        rgb01 = to_unit_batch(rgb)
        out = pipeline.segmenter.run(rgb01)
        report.tensor("segmenter logits at input size", pipeline.segmenter.labels_logits(
            out.logits, (height, width), "input"), seg_logits)
        own = F.interpolate(pipeline.head.observer_logits(rgb01, out), size=(height, width), mode="bilinear",
                            align_corners=True)
        report.tensor("observer logit at input size", own, observer_logit)
    del pipeline
    return report.verdict()


# ------------------------------------------------------------------------------------------------ main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dicnet", type=Path, help="checkout of zhouhuan-hust/DiCNet")
    parser.add_argument("--rpl", type=Path, help="checkout of yyliu01/RPL")
    parser.add_argument("--obsnet", type=Path, help="checkout of valeoai/obsnet")
    parser.add_argument("--size", type=parse_size, default=(96, 160), help="HxW of the random frame (96x160)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--eager", action="store_true",
                        help="Pipeline(optimize=False): contiguous memory layout like the official code, to tell "
                             "the channels-last fast path's float rounding from real differences")
    args = parser.parse_args(argv)
    global OPTIMIZE
    OPTIMIZE = not args.eager
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, frame {args.size[0]}x{args.size[1]}, seed {args.seed}, "
          f"{args.threads} thread(s), package pipeline {'eager' if args.eager else 'optimize=True (channels-last)'}")
    rgb = random_frame(args.size, args.seed)
    results = {}
    runs = (("DiCNet", args.dicnet, run_dicnet, "zhouhuan-hust/DiCNet"),
            ("RPL", args.rpl, run_rpl, "yyliu01/RPL"),
            ("ObsNet", args.obsnet, run_obsnet, "valeoai/obsnet"))
    for name, path, run, repo in runs:
        if path is None:
            print(f"== {name}: skipped (no --{name.lower()} checkout given)")
            continue
        print(f"== {name}: {repo} @ {commit_of(path)} ({path})", flush=True)
        started = time.perf_counter()
        torch.manual_seed(args.seed)  # the official constructors initialise from the global generator
        with tempfile.TemporaryDirectory(prefix=f"parity_{name.lower()}_") as work:
            results[name] = run(path, rgb, Path(work), args.seed)
        print(f"  ({time.perf_counter() - started:.0f} s)")
    if results:
        print("summary: " + ", ".join(f"{name} {'PASS' if ok else 'FAIL'}" for name, ok in results.items()))
    return 0 if all(results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
