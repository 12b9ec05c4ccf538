# Copyright 2026 The ood_seg_node developers. Licensed under the Apache License, Version 2.0.
"""Evaluation report: metrics.json, metrics.csv, PR/ROC plots, a terminal table and score overlays.

Why this module exists: ``ood_seg evaluate`` and ``ood_seg demo`` compare heads on the same frames and must
leave results a person can read (table, plots) and a program can parse (JSON, CSV) in one consistent layout.
matplotlib is imported lazily with the Agg backend, so importing the evaluation package stays cheap and
never needs a display.
"""

from __future__ import annotations

import csv
import datetime as _dt
import json
import math
import platform
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from ood_seg_node.cityscapes import OOD_ANOMALY
from ood_seg_node.evaluation.metrics import EvaluationError

__all__ = ["CSV_COLUMNS", "format_table", "overlay", "to_jsonable", "write_report"]

CSV_COLUMNS: tuple[str, ...] = ("head", "ap", "fpr95", "auroc", "siou", "ppv", "mean_f1", "miou", "frames",
                                "latency_ms")
# (key in a head's results, column title, format); fractions are shown in percent like the leaderboards.
_TABLE_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("ap", "AP", "pct"), ("fpr95", "FPR95", "pct"), ("auroc", "AUROC", "pct"), ("siou", "sIoU", "pct"),
    ("ppv", "PPV", "pct"), ("mean_f1", "mean F1", "pct"), ("miou", "mIoU", "pct"),
    ("frames", "frames", "int"), ("latency_ms", "ms", "float"),
)


def to_jsonable(value: Any) -> Any:
    """Convert numpy scalars/arrays and non-finite floats (-> None) into plain JSON values, recursively."""
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return to_jsonable(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Path):
        return str(value)
    return value


def _number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _run_metadata(meta: Mapping[str, Any] | None) -> dict[str, Any]:
    try:
        from ood_seg_node import __version__ as version
    except ImportError:  # pragma: no cover - the package always defines it
        version = "unknown"
    info: dict[str, Any] = {
        "package": "ood_seg_node",
        "version": version,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "platform": platform.platform(),
        "argv": list(sys.argv),
    }
    info.update(meta or {})
    return info


def write_report(out_dir: str | Path, results: dict[str, dict], curves: dict[str, dict], *,
                 meta: Mapping[str, Any] | None = None) -> None:
    """Write ``metrics.json``, ``metrics.csv``, ``pr_curves.png`` and ``roc_curves.png`` into ``out_dir``.

    Args:
        out_dir: folder, created if missing.
        results: head name -> that head's metrics (``ap``, ``fpr95``, ``auroc``, ``siou``, ``ppv``,
            ``mean_f1``, ``miou``, ``frames``, ``latency_ms`` and anything else worth keeping).
        curves: head name -> :meth:`StreamingOODMetrics.curves` output; heads without curves get no line.
        meta: extra run metadata (dataset, bag, threshold, ...) stored under ``"run"`` in the JSON.

    ``metrics.json`` is ``{"run": {...}, "heads": {name: {...}}}`` with NaN written as ``null``;
    ``metrics.csv`` has the columns :data:`CSV_COLUMNS`, one row per head, empty cells for missing values.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    document = {"run": _run_metadata(meta), "heads": to_jsonable(results)}
    (out / "metrics.json").write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    with (out / "metrics.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(CSV_COLUMNS)
        for head, values in results.items():
            row: list[Any] = [head]
            for key in CSV_COLUMNS[1:]:
                number = _number(values.get(key))
                if number is None:
                    row.append("")
                elif key == "frames":
                    row.append(int(number))
                else:
                    row.append(f"{number:.6g}")
            writer.writerow(row)
    _plot_curves(out / "pr_curves.png", results, curves, roc=False)
    _plot_curves(out / "roc_curves.png", results, curves, roc=True)
    if any(values.get("temporal") for values in results.values()):
        _plot_temporal(out / "temporal.png", results)


def _plot_temporal(path: Path, results: dict[str, dict]) -> None:
    """Per head, one bar per fusion mode (``<head>@<mode>`` names): FPR95, flicker, obstacle F1 of confirmed tracks."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rows = {name: values for name, values in results.items() if values.get("temporal")}
    heads = list(dict.fromkeys(name.split("@")[0] for name in rows))
    modes = list(dict.fromkeys(name.partition("@")[2] or "none" for name in rows))
    panels = (("FPR95 (%)", lambda v: v.get("fpr95")), ("flicker (%)", lambda v: v["temporal"]["flicker"]),
              ("confirmed-track F1 (%)", lambda v: v["temporal"]["confirmed"]["f1"]))
    fig = Figure(figsize=(max(6.0, 0.9 * len(heads)), 2.4 * len(panels)), dpi=110)
    FigureCanvasAgg(fig)
    width = 0.8 / len(modes)
    for column, (title, value) in enumerate(panels):
        ax = fig.add_subplot(len(panels), 1, column + 1)
        for k, mode in enumerate(modes):
            names = [head if mode == "none" else f"{head}@{mode}" for head in heads]
            heights = [100 * (_number(value(rows[n])) or 0.0) if n in rows else 0.0 for n in names]
            ax.bar(np.arange(len(heads)) + (k - (len(modes) - 1) / 2) * width, heights, width, label=mode)
        ax.set_xticks(np.arange(len(heads)), heads if column == len(panels) - 1 else [], fontsize=8)
        ax.set_title(title, fontsize=9)
    fig.axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)


def _plot_curves(path: Path, results: dict[str, dict], curves: dict[str, dict], *, roc: bool) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    # A bare Figure on an Agg canvas: no pyplot, no global backend switch, no display needed.
    fig = Figure(figsize=(6.4, 5.2), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    drawn = 0
    for head, curve in curves.items():
        if roc:
            x, y = np.asarray(curve.get("fpr", [])), np.asarray(curve.get("tpr", []))
            area = _number(results.get(head, {}).get("auroc"))
            label = f"{head} (AUROC {area:.3f})" if area is not None else head
        else:
            x, y = np.asarray(curve.get("recall", [])), np.asarray(curve.get("precision", []))
            area = _number(results.get(head, {}).get("ap"))
            label = f"{head} (AP {area:.3f})" if area is not None else head
        if x.size == 0:
            continue
        # Step plots mirror the step-wise AP definition; ROC is piecewise linear from (0, 0).
        if roc:
            ax.plot(np.r_[0.0, x], np.r_[0.0, y], label=label, linewidth=1.5)
        else:
            ax.step(x, y, where="post", label=label, linewidth=1.5)
        drawn += 1
    if roc:
        ax.plot([0, 1], [0, 1], color="0.7", linestyle=":", linewidth=1)
        ax.axhline(0.95, color="0.6", linestyle="--", linewidth=0.8)
        ax.set_xlabel("false positive rate")
        ax.set_ylabel("true positive rate")
        ax.set_title("ROC (pixels pooled over frames)")
    else:
        ax.set_xlabel("recall")
        ax.set_ylabel("precision")
        ax.set_title("Precision-recall (pixels pooled over frames)")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.grid(True, alpha=0.3)
    if drawn:
        ax.legend(loc="lower right" if roc else "lower left", fontsize="small")
    else:
        ax.text(0.5, 0.5, "no curves (a class had no pixels)", ha="center", va="center",
                transform=ax.transAxes)
    fig.tight_layout()
    fig.savefig(path)


def format_table(results: dict[str, dict]) -> str:
    """Format results as a fixed-width text table for the terminal.

    One row per head: AP, FPR95, AUROC, sIoU, PPV, mean F1, mIoU (all in %), frames and latency in ms;
    missing or NaN values are shown as ``-``.
    """
    head_width = max([4, *(len(h) for h in results)])
    titles = [title for _, title, _ in _TABLE_COLUMNS]
    widths = [max(len(t), 7) for t in titles]
    header = [f"{'head':<{head_width}}", *(f"{t:>{w}}" for t, w in zip(titles, widths, strict=True))]
    lines = ["  ".join(header)]
    lines.append("-" * len(lines[0]))
    for head, values in results.items():
        cells = [f"{head:<{head_width}}"]
        for (key, _, kind), width in zip(_TABLE_COLUMNS, widths, strict=True):
            number = _number(values.get(key))
            if number is None:
                text = "-"
            elif kind == "pct":
                text = f"{100 * number:.2f}"
            elif kind == "int":
                text = f"{int(number)}"
            else:
                text = f"{number:.1f}"
            cells.append(f"{text:>{width}}")
        lines.append("  ".join(cells))
    lines.append("(AP, FPR95, AUROC, sIoU, PPV, mean F1, mIoU in %; ms = mean latency per frame)")
    return "\n".join(lines)


def format_temporal_table(results: dict[str, dict]) -> str:
    """The sequence figures of the heads that have them (``evaluate --temporal-fusion``), or ``""``.

    One row per head: flicker, obstacle precision / recall / F1 of per-frame components and of confirmed
    tracks, the share of false components that were one-frame blobs, FPR95 on first frames vs later frames,
    fusion time as a ratio of the pipeline's.
    """
    rows = {name: values["temporal"] for name, values in results.items() if values.get("temporal")}
    if not rows:
        return ""
    width = max(4, *(len(name) for name in rows))
    titles = ("flicker", "obj P", "obj R", "obj F1", "conf P", "conf R", "conf F1", "1-frame FP", "FPR95 1st",
              "FPR95 rest", "overhead")
    lines = ["  ".join([f"{'head':<{width}}", *(f"{t:>10}" for t in titles)])]
    lines.append("-" * len(lines[0]))

    def pct(value: Any) -> str:
        number = _number(value)
        return "-" if number is None else f"{100 * number:.1f}"

    for name, t in rows.items():
        cells = [t["flicker"], t["components"]["precision"], t["components"]["recall"], t["components"]["f1"],
                 t["confirmed"]["precision"], t["confirmed"]["recall"], t["confirmed"]["f1"],
                 t["false_one_frame_share"], t["first_frame"].get("fpr95"), t["later_frames"].get("fpr95")]
        overhead = _number(t["overhead"])
        lines.append("  ".join([f"{name:<{width}}", *(f"{pct(c):>10}" for c in cells),
                                f"{'-' if overhead is None else f'{overhead:.3f}x':>10}"]))
    lines.append("(% except overhead; obj = every per-frame component, conf = confirmed tracks; 1-frame FP = false "
                 "components whose track lived one frame; overhead = fusion time / pipeline time)")
    return "\n".join(lines)


def overlay(image: np.ndarray, score: np.ndarray, gt: np.ndarray | None = None,
            threshold: float | None = None, *, alpha: float = 0.55, cmap: str = "inferno") -> np.ndarray:
    """Blend an anomaly score heat map over an image and outline the anomaly ground truth.

    Args:
        image: HxWx3 uint8 RGB (or HxW grey).
        score: HxW finite scores; colours are normalised between the map's 1st and 99th percentile.
        gt: optional HxW 0/1/255 ground truth; anomaly (1) outlines are drawn in green.
        threshold: when given (and finite), the heat map is blended only where ``score >= threshold``.
        alpha: heat-map opacity.
        cmap: matplotlib colormap name.

    Returns:
        HxWx3 uint8 RGB array, ready for PNG writing or an ``rgb8`` Image message.
    """
    image = np.asarray(image)
    score = np.asarray(score, dtype=np.float64)
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    if image.ndim != 3 or image.shape[2] not in (3, 4):
        raise EvaluationError(f"overlay: image must be HxW or HxWx3 RGB, got shape {image.shape}")
    if score.shape != image.shape[:2]:
        raise EvaluationError(f"overlay: score shape {score.shape} differs from image size {image.shape[:2]}")
    if gt is not None and np.asarray(gt).shape != score.shape:
        raise EvaluationError(f"overlay: gt shape {np.asarray(gt).shape} differs from score shape "
                              f"{score.shape}")
    import matplotlib

    base = image[..., :3].astype(np.float64)
    finite = np.isfinite(score)
    if finite.any():
        lo, hi = np.percentile(score[finite], [1, 99])
    else:
        lo, hi = 0.0, 1.0
    norm = np.clip((np.where(finite, score, lo) - lo) / (hi - lo if hi > lo else 1.0), 0.0, 1.0)
    heat = matplotlib.colormaps[cmap](norm)[..., :3] * 255.0
    weight = np.full(score.shape, alpha)
    if threshold is not None and math.isfinite(threshold):
        weight = np.where(score >= threshold, alpha, 0.0)
    out = base * (1 - weight[..., None]) + heat * weight[..., None]
    if gt is not None:
        anomaly = np.asarray(gt) == OOD_ANOMALY
        edge = anomaly & ~ndimage.binary_erosion(anomaly, iterations=2, border_value=0)
        out[edge] = (0.0, 255.0, 0.0)
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)
