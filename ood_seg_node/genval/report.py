# Copyright 2026 The ood_seg_node developers. Licensed under the Apache License, Version 2.0.
"""``ood_seg validate``'s outputs: report files, plots and a contact sheet of the generated conditions.

report.json / report.csv, metric-vs-severity plots and the reliability diagram (matplotlib with the Agg
backend, imported on use).
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from ood_seg_node.evaluation.report import to_jsonable
from ood_seg_node.genval.validate import ValidationResult

__all__ = ["format_summary", "write_validation_report"]

HEAD_METRICS = ("ap", "fpr95", "auroc", "mean_f1")
FRAME_METRICS = ("miou", "miou_drop", "ece", "ece_calibrated", "nll", "nll_calibrated")


def write_validation_report(out: str | Path, result: ValidationResult, meta: dict[str, Any]) -> list[Path]:
    """Write every output file; returns their paths."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    payload = {"meta": meta, "temperature": result.temperature, "thresholds": result.thresholds,
               "conditions": result.conditions, "reliability_clean": result.reliability_clean,
               "reliability_heldout": result.reliability_heldout,
               "seconds": result.seconds}
    written = [out / "report.json", out / "report.csv"]
    written[0].write_text(json.dumps(to_jsonable(payload), indent=2))
    with written[1].open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["condition", "shift", "severity", "head", *HEAD_METRICS, *FRAME_METRICS])
        for entry in result.conditions:
            for head, metrics in entry["heads"].items():
                writer.writerow([entry["condition"], entry["shift"], entry["severity"], head,
                                 *(_cell(metrics.get(k)) for k in HEAD_METRICS),
                                 *(_cell(entry.get(k)) for k in FRAME_METRICS)])
    written += _plot_severity(out, result)
    if result.reliability_clean:
        written.append(_plot_reliability(out / "reliability_clean.png", result))
    if result.examples:
        written.append(_contact_sheet(out / "conditions.png", result.examples))
    return written


def _cell(value: Any) -> str:
    return "" if value is None or (isinstance(value, float) and not math.isfinite(value)) else f"{value:.6g}"


def _plot_severity(out: Path, result: ValidationResult) -> list[Path]:
    """Per shift, each metric against severity (0 = clean): AP/FPR95 per head, mIoU and ECE per segmenter."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    clean = result.conditions[0]
    shifts = sorted({e["shift"] for e in result.conditions if e["shift"] != "none"})
    if not shifts:
        return []
    heads = list(clean["heads"])
    panels = [("ap", "AP (insertions)"), ("fpr95", "FPR at 95 % TPR"), ("miou", "mIoU"), ("ece", "pixel ECE")]
    figure = Figure(figsize=(4.2 * len(panels), 3.2 * len(shifts)), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(len(shifts), len(panels), squeeze=False)
    for row, shift in enumerate(shifts):
        entries = [clean] + sorted((e for e in result.conditions if e["shift"] == shift), key=lambda e: e["severity"])
        severities = [e["severity"] for e in entries]
        for col, (key, title) in enumerate(panels):
            axis = axes[row][col]
            if key in ("ap", "fpr95"):
                for head in heads:
                    axis.plot(severities, [_nan(e["heads"][head].get(key)) for e in entries], marker="o", label=head)
            else:
                axis.plot(severities, [_nan(e.get(key)) for e in entries], marker="o", color="k", label="T = 1")
                if key == "ece":
                    axis.plot(severities, [_nan(e.get("ece_calibrated")) for e in entries], marker="s",
                              linestyle="--", color="tab:green", label=f"T = {_fmt(result.temperature)}")
            axis.set_title(f"{shift}: {title}", fontsize=9)
            axis.set_xticks(severities)
            axis.set_xlabel("severity (0 = clean)", fontsize=8)
            axis.grid(alpha=0.3)
            if row == 0:
                axis.legend(fontsize=7)
    path = out / "metrics_vs_severity.png"
    figure.savefig(path, dpi=90)
    return [path]


def _nan(value: Any) -> float:
    return math.nan if value is None else float(value)


def _plot_reliability(path: Path, result: ValidationResult) -> Path:
    """Reliability diagram of the clean held-out pixels before and after temperature scaling."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(4.5, 4.2), layout="constrained")
    FigureCanvasAgg(figure)
    axis = figure.add_subplot()
    axis.plot([0, 1], [0, 1], color="grey", linestyle=":", label="perfect")
    for key, label, style in (("before", "T = 1", "o-"), ("after", f"T = {result.temperature:.2f}", "s--")):
        stats = result.reliability_clean[key]
        confidence = np.asarray(stats["bins"]["confidence"], dtype=float)
        accuracy = np.asarray(stats["bins"]["accuracy"], dtype=float)
        keep = np.isfinite(confidence) & np.isfinite(accuracy)
        axis.plot(confidence[keep], accuracy[keep], style, label=f"{label}: ECE {stats['ece']:.3f}")
    axis.set_xlabel("confidence (max softmax)")
    axis.set_ylabel("pixel accuracy")
    axis.set_title("clean held-out frames", fontsize=9)
    axis.legend(fontsize=8)
    figure.savefig(path, dpi=90)
    return path


def _contact_sheet(path: Path, examples: list[tuple[str, np.ndarray]], columns: int = 4) -> Path:
    """The first source frame under every condition, labelled, in a grid."""
    height, width = examples[0][1].shape[:2]
    rows = math.ceil(len(examples) / columns)
    sheet = np.full((rows * (height + 18), columns * width, 3), 255, np.uint8)
    for i, (name, image) in enumerate(examples):
        top, left = (i // columns) * (height + 18), (i % columns) * width
        tile = cv2.resize(image, (width, height)) if image.shape[:2] != (height, width) else image
        sheet[top + 18:top + 18 + height, left:left + width] = tile
        cv2.putText(sheet, name, (left + 4, top + 13), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.imwrite(str(path), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR))
    return path


def format_summary(result: ValidationResult) -> str:
    """The console table: per condition, mIoU / ECE and each head's AP and FPR95."""
    heads = list(result.conditions[0]["heads"])
    lines = [f"{'condition':<16} {'mIoU':>6} {'ECE':>6} {'ECE(T)':>7} " + " ".join(f"{h + ' AP':>12} {'FPR95':>6}"
                                                                             for h in heads)]
    for entry in result.conditions:
        cells = " ".join(f"{_fmt(entry['heads'][h].get('ap')):>12} {_fmt(entry['heads'][h].get('fpr95')):>6}"
                         for h in heads)
        lines.append(f"{entry['condition']:<16} {_fmt(entry.get('miou')):>6} {_fmt(entry.get('ece')):>6} "
                     f"{_fmt(entry.get('ece_calibrated')):>7} {cells}")
    lines.append(f"temperature {result.temperature:.3f}" if result.temperature is not None
                 else "temperature: not fitted (the frames have no class labels)")
    if result.reliability_heldout:
        before, after = result.reliability_heldout["before"], result.reliability_heldout["after"]
        lines.append(f"held-out pixels of every condition: ECE {before['ece']:.4f} -> {after['ece']:.4f}, NLL "
                     f"{before['nll']:.4f} -> {after['nll']:.4f} with the temperature")
    for head, fit in result.thresholds.items():
        (kind, target), = fit["target"].items()
        low, high = fit[f"heldout_{kind}_ci95"]
        lines.append(f"{head}: threshold {fit['threshold']:.6g} for {kind.upper()} {target:.3f}: fit TPR "
                     f"{fit['fit_tpr']:.3f} FPR {fit['fit_fpr']:.3f}; held-out ({fit['heldout_frames']} frames) TPR "
                     f"{_fmt(fit['heldout_tpr'])} FPR {_fmt(fit['heldout_fpr'])}, {kind.upper()} 95 % interval "
                     f"[{_fmt(low)}, {_fmt(high)}]")
    return "\n".join(lines)


def _fmt(value: Any) -> str:
    return "-" if value is None or (isinstance(value, float) and not math.isfinite(value)) else f"{value:.3f}"
