# Copyright 2026 The ood_seg_node developers. Licensed under the Apache License, Version 2.0.
"""Evaluation of anomaly scores: streaming pixel metrics, SMIYC component metrics, mIoU and reports.

Why a package: the online evaluator node, ``ood_seg evaluate`` and the demo all score frames one at a time
and must agree on the benchmarks' definitions, so they share one :class:`Accumulator`; everything here is
numpy/scipy/OpenCV (matplotlib only, lazily, for plots) and imports neither torch, the datasets nor rclpy
(sequence figures reuse the post-processing layer's fusion and tracks).
"""

from __future__ import annotations

from ood_seg_node.evaluation.accumulator import (
    Accumulator,
    CompressedLabels,
    EvaluationRun,
    HeadRun,
    merge_partials,
    resize_score,
)
from ood_seg_node.evaluation.components import (
    SIOU_THRESHOLDS,
    SIZE_FILTERS,
    ComponentMetrics,
    FrameComponents,
    best_f1_threshold,
    frame_components,
)
from ood_seg_node.evaluation.metrics import ConfusionMatrix, EvaluationError, StreamingOODMetrics
from ood_seg_node.evaluation.report import (
    CSV_COLUMNS,
    format_table,
    format_temporal_table,
    overlay,
    to_jsonable,
    write_report,
)

__all__ = [
    "Accumulator",
    "CompressedLabels",
    "EvaluationRun",
    "HeadRun",
    "merge_partials",
    "resize_score",
    "CSV_COLUMNS",
    "SIOU_THRESHOLDS",
    "SIZE_FILTERS",
    "ComponentMetrics",
    "ConfusionMatrix",
    "EvaluationError",
    "FrameComponents",
    "StreamingOODMetrics",
    "best_f1_threshold",
    "format_table",
    "format_temporal_table",
    "frame_components",
    "overlay",
    "to_jsonable",
    "write_report",
]
