# Copyright 2026 The ood_seg_node developers. Licensed under the Apache License, Version 2.0.
"""Deployment: the segmenter and its heads as one ONNX graph, run by ONNX Runtime (CPU, CUDA or TensorRT).

The graph takes what a camera delivers and returns what the pipeline publishes before upsampling:

- input ``rgb``: (1, H, W, 3) uint8 RGB at the inference size; the conversion to float and the segmenter's
  normalisation are inside the graph;
- outputs ``labels`` (1, h, w) uint8 class ids and ``score_<head>`` (1, h, w) float32 per head, at the
  logits' resolution (``score_resolution: native``) or at the input's (``input``, the official order).

The pipeline (``backend: onnxruntime``) exports the graph once per input size into a cache folder, keyed by
the weights' digests, the heads, the score order, the size and the torch/ONNX versions, and reuses the file
on later starts. Execution providers follow ``device``: ``cpu`` -> the CPU provider; ``cuda`` -> TensorRT
when ONNX Runtime has it (engines cached under ``<cache>/tensorrt-<precision>``, built on the first frame of
each size and reused after), else the CUDA provider. ``fp16`` asks TensorRT for half-precision engines; with
the CPU or plain CUDA provider it is refused (ONNX Runtime runs those graphs in the precision they were
exported in). The exported file is a plain ONNX model: ``trtexec --onnx=model.onnx`` and Isaac ROS
``isaac_ros_tensor_rt`` take it as it is (see ``docs/deployment.md``).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import os
import re
import warnings
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch
from torch import nn

from ood_seg_node.checkpoints import state_digest
from ood_seg_node.fastpath import FastPath
from ood_seg_node.heads import Head
from ood_seg_node.segmenters import Segmenter

log = logging.getLogger(__name__)

OPSET = 18
BACKENDS = ("torch", "onnxruntime")
INPUT_NAME = "rgb"


class DeployError(RuntimeError):
    """A graph cannot be exported or run (missing package, unsupported head, provider unavailable)."""


class DeployGraph(nn.Module):
    """uint8 RGB (1, H, W, 3) -> (labels uint8, one float32 score per head), see the module docstring."""

    def __init__(self, segmenter: Segmenter, heads: Sequence[Head], score_resolution: str = "native") -> None:
        super().__init__()
        self.segmenter = segmenter
        self.heads = nn.ModuleList(heads)
        self.score_resolution = score_resolution

    def forward(self, rgb: torch.Tensor) -> tuple[torch.Tensor, ...]:
        image = rgb.permute(0, 3, 1, 2).float() / 255.0
        out = self.segmenter.run(image)
        logits = self.segmenter.labels_logits(out.logits, image.shape[-2:], self.score_resolution)
        scores = [head.score_in_order(self.score_resolution, image, out, logits) for head in self.heads]
        return (logits.argmax(dim=1).to(torch.uint8), *scores)


def output_names(head_names: Sequence[str]) -> list[str]:
    return ["labels", *(f"score_{name}" for name in head_names)]


@contextlib.contextmanager
def _eager(module: nn.Module) -> Iterator[None]:
    """Every :class:`FastPath` inside ``module`` runs eagerly (the exporter traces the eager network)."""
    paths = [m for m in module.modules() if isinstance(m, FastPath)]
    states = [path.enabled for path in paths]
    for path in paths:
        path.enabled = False
    try:
        yield
    finally:
        for path, state in zip(paths, states):
            path.enabled = state


def export_onnx(segmenter: Segmenter, heads: Sequence[Head], names: Sequence[str], size: tuple[int, int],
                path: str | os.PathLike[str], *, score_resolution: str = "native", dynamic: bool = False) -> Path:
    """Write the segmenter and ``heads`` as one ONNX graph for (H, W) = ``size`` inputs; returns the path.

    Args:
        segmenter: the segmenter, in eval mode.
        heads: the heads, scored on the segmenter's one forward.
        names: the output name of each head's score (``score_<name>``).
        size: (H, W) of the inputs the graph takes.
        path: the ``.onnx`` file to write (weights inside it).
        score_resolution: ``native`` or ``input``, as the pipeline option.
        dynamic: height and width as dynamic axes (refused, in one line, by architectures whose ops need a
            fixed size, e.g. adaptive pooling to several grid sizes).

    Raises:
        DeployError: the ONNX packages are missing, or a head or segmenter cannot be expressed in ONNX
            (the message names them and the exporter's reason).
    """
    _require("onnx", "onnxscript")
    graph = DeployGraph(segmenter, heads, score_resolution).eval()
    height, width = size
    parameter = next(graph.parameters(), None)
    device = parameter.device if parameter is not None else torch.device("cpu")
    example = torch.zeros(1, int(height), int(width), 3, dtype=torch.uint8, device=device)
    dynamic_shapes = None
    if dynamic:
        dynamic_shapes = {INPUT_NAME: {1: torch.export.Dim("height", min=32), 2: torch.export.Dim("width", min=32)}}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    what = f"segmenter {segmenter.spec} with head(s) {', '.join(h.name for h in heads)}"
    try:
        with _eager(graph), torch.no_grad(), warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            program = torch.onnx.export(graph, (example,), input_names=[INPUT_NAME], output_names=output_names(names),
                                        dynamo=True, opset_version=OPSET, dynamic_shapes=dynamic_shapes,
                                        verbose=False, optimize=True)
            program.save(str(path))
    except Exception as error:  # the exporter raises many types; the first line says which op failed
        text = re.sub(r"\x1b\[[0-9;]*m", "", str(error)).strip()  # the exporter colours its messages
        reason = text.splitlines()[0] if text else type(error).__name__
        raise DeployError(f"{what} cannot be exported to ONNX{' with dynamic axes' if dynamic else ''}: "
                          f"{type(error).__name__}: {reason[:300]}") from None
    _check_against_torch(graph, path, example, what)
    return path


def _check_against_torch(graph: DeployGraph, path: Path, example: torch.Tensor, what: str) -> None:
    """Run the file on a random frame beside PyTorch: an op the exporter froze into a constant shows here.

    Raises:
        DeployError: labels equal on less than 99.9 % of pixels or a score off by more than 1e-3 (the file is
            removed).
    """
    _require("onnxruntime")
    import onnxruntime as ort

    frame = torch.randint(0, 256, example.shape, dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    with _eager(graph), torch.no_grad():
        expected = [t.cpu().numpy() for t in graph(frame.to(example.device))]
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {INPUT_NAME: frame.numpy()})
    agree = float((got[0] == expected[0]).mean())
    worst = max((float(np.abs(a - b).max()) for a, b in zip(got[1:], expected[1:])), default=0.0)
    if agree < 0.999 or not worst <= 1e-3:
        path.unlink(missing_ok=True)
        raise DeployError(f"{what} cannot be exported to ONNX faithfully: on a random frame the graph's labels "
                          f"equal PyTorch's on {100 * agree:.1f} % of pixels, scores differ by up to {worst:.3g}")


def graph_key(segmenter: Segmenter, heads: Sequence[Head], names: Sequence[str], size: tuple[int, int],
              score_resolution: str) -> str:
    """What identifies an exported graph: weights, heads, score order, input size, exporter versions."""
    import onnx

    parts = [segmenter.identity, score_resolution, f"{size[0]}x{size[1]}", torch.__version__, onnx.__version__,
             str(OPSET), *(f"{name}={head.name}@{state_digest(head.state_dict())}" for head, name in zip(heads, names))]
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:20]


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/ood_seg_node`` (``~/.cache/ood_seg_node``)."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "ood_seg_node"


def _require(*packages: str) -> None:
    import importlib.util

    missing = [name for name in packages if importlib.util.find_spec(name) is None]
    if missing:
        raise DeployError(f"backend onnxruntime / ood_seg export need {', '.join(missing)}: "
                          "pip install 'ood_seg_node[onnx]' (onnx, onnxscript, onnxruntime; onnxruntime-gpu on GPU)")


def providers(device: torch.device, *, fp16: bool, cache_dir: Path) -> list:
    """ONNX Runtime execution providers for ``device`` (see the module docstring)."""
    import onnxruntime as ort

    available = ort.get_available_providers()
    if device.type == "cpu":
        if fp16:
            raise DeployError("fp16 needs TensorRT (device cuda with onnxruntime-gpu built with TensorRT); the CPU "
                              "provider runs the fp32 graph")
        return ["CPUExecutionProvider"]
    index = device.index or 0
    chosen: list = []
    if "TensorrtExecutionProvider" in available:
        engines = cache_dir / f"tensorrt-{'fp16' if fp16 else 'fp32'}"
        engines.mkdir(parents=True, exist_ok=True)
        chosen.append(("TensorrtExecutionProvider", {
            "device_id": index, "trt_fp16_enable": fp16, "trt_engine_cache_enable": True,
            "trt_engine_cache_path": str(engines), "trt_timing_cache_enable": True,
            "trt_timing_cache_path": str(engines)}))
    elif fp16:
        raise DeployError("fp16 needs ONNX Runtime's TensorRT provider, which this onnxruntime does not have "
                          f"(available: {', '.join(available)})")
    if "CUDAExecutionProvider" not in available:
        raise DeployError(f"device {device} needs onnxruntime-gpu (available providers: {', '.join(available)})")
    chosen.append(("CUDAExecutionProvider", {"device_id": index}))
    return [*chosen, "CPUExecutionProvider"]


class OnnxRuntimeRunner:
    """Runs the pipeline's segmenter and heads through ONNX Runtime, one session per input size.

    Args:
        segmenter, heads, names, score_resolution: what to export (see :func:`export_onnx`).
        device: the torch device the pipeline was given; selects the providers.
        fp16: TensorRT half-precision engines.
        cache_dir: exported graphs and TensorRT engines (default :func:`default_cache_dir`).
    """

    def __init__(self, segmenter: Segmenter, heads: Sequence[Head], names: Sequence[str], *,
                 score_resolution: str, device: torch.device, fp16: bool = False,
                 cache_dir: str | os.PathLike[str] | None = None) -> None:
        _require("onnx", "onnxscript", "onnxruntime")
        self.segmenter, self.heads, self.names = segmenter, list(heads), list(names)
        self.score_resolution = score_resolution
        self.cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
        self.providers = providers(device, fp16=fp16, cache_dir=self.cache_dir)
        self._tensorrt = any(isinstance(p, tuple) and p[0] == "TensorrtExecutionProvider" for p in self.providers)
        self._sessions: dict[tuple[int, int], object] = {}

    def session(self, size: tuple[int, int]):
        """The session for (H, W) inputs: from the cached graph file, exported first if there is none."""
        if size not in self._sessions:
            key = graph_key(self.segmenter, self.heads, self.names, size, self.score_resolution)
            path = self.cache_dir / "onnx" / f"{key}.onnx"
            if not path.is_file():
                log.warning("exporting %s + %s for %dx%d inputs to %s (once per size)", self.segmenter.spec,
                            ", ".join(self.names), *size, path)
                partial = path.with_suffix(".partial.onnx")
                export_onnx(self.segmenter, self.heads, self.names, size, partial,
                            score_resolution=self.score_resolution)
                partial.replace(path)
            self.preload(size, path)
        return self._sessions[size]

    def preload(self, size: tuple[int, int], path: str | os.PathLike[str]) -> None:
        """Run (H, W) inputs through the graph file ``path`` (one this runner's settings exported)."""
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = torch.get_num_threads()
        if self._tensorrt:
            log.warning("building the TensorRT engine for %dx%d inputs (first run of this size; cached after)", *size)
        self._sessions[tuple(size)] = ort.InferenceSession(str(path), options, providers=self.providers)

    def run(self, rgb: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """HxWx3 uint8 RGB (at the inference size) -> (labels (h, w) uint8, {name: (h, w) float32 score})."""
        outputs = self.session(tuple(rgb.shape[:2])).run(None, {INPUT_NAME: np.ascontiguousarray(rgb)[None]})
        return outputs[0][0], {name: score[0] for name, score in zip(self.names, outputs[1:])}
