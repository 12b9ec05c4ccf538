# Copyright 2026 The ood_seg_node developers. Licensed under the Apache License, Version 2.0.
"""What the node counts per frame, and the /diagnostics status and transport warning made from it.

Besides rates, latencies and frame counters, the status reports the temporal sequence (see
:mod:`ood_seg_node.temporal`): ``temporal_fusion`` (the mode), ``frames_fused`` (processed frames whose scores
were fused with the previous frames'; stays 0 with ``none``), ``temporal_restarts`` (processed frames that
started a new sequence: first frame, stamp gap, a failed motion estimate, ``no camera pose`` for ``ground``
without CameraInfo or odometry at the image's stamp) and ``last_restart`` (the latest such reason).
"""

from __future__ import annotations

import math
import threading
from collections import deque
from dataclasses import dataclass, field

import numpy as np
from diagnostic_msgs.msg import DiagnosticStatus, KeyValue

from ood_seg_node.ros import dds

RATE_WINDOW_S = 5.0
STAGES = ("wait", "decode", "pipeline", "outputs", "publish")
"""Where a processed frame's time goes: queued behind the previous frame, message -> RGB, inference and
post-processing, building the output messages, handing them to the middleware."""
DELIVERY_WINDOW_S = 5.0  # a matched publisher whose frames do not arrive for this long is reported


@dataclass
class FrameStats:
    """Counters and recent timings, shared by the subscription callback, the worker and the timer."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    received: deque[float] = field(default_factory=lambda: deque(maxlen=1000))
    lost: deque[tuple[float, int]] = field(default_factory=lambda: deque(maxlen=1000))
    latencies_ms: deque[float] = field(default_factory=lambda: deque(maxlen=200))
    stages_ms: dict[str, deque[float]] = field(default_factory=lambda: {s: deque(maxlen=200) for s in STAGES})
    frames_received: int = 0
    frames_processed: int = 0
    frames_dropped: int = 0
    frames_failed: int = 0
    frames_idle: int = 0
    frames_lost: int = 0  # reported lost by the middleware (message_lost events)
    failed_since_report: int = 0
    last_error: str = ""
    frames_fused: int = 0
    temporal_restarts: int = 0
    last_restart: str = ""

    def count_sequence(self, restart: str, fusing: bool) -> None:
        """One processed frame's place in its temporal sequence (the caller holds the lock)."""
        if restart:
            self.temporal_restarts += 1
            self.last_restart = restart
        elif fusing:
            self.frames_fused += 1

    def counters(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in ("frames_received", "frames_processed", "frames_dropped",
                                                      "frames_failed", "frames_idle", "frames_lost")}

    def input_rate(self, now: float) -> float:
        recent = [t for t in self.received if now - t <= RATE_WINDOW_S]
        if len(recent) < 2:
            return 0.0
        return (len(recent) - 1) / max(recent[-1] - recent[0], 1e-6)

    def delivery_problem(self, now: float) -> str | None:
        """What went wrong with input delivery over the last window, or None when frames arrive.

        A few lost best-effort frames are normal; more than one in five, or none at all, is not.
        """
        since = now - DELIVERY_WINDOW_S
        received = sum(1 for t in self.received if t >= since)
        lost = sum(count for t, count in self.lost if t >= since)
        if received and lost * 4 <= received:
            return None
        return f"{lost} frame(s) lost in transport, {received} received" if lost else "no frame arrived"


def delivery_warning(topic: str, problem: str) -> str:
    """The actionable line for frames a matched publisher loses: its Fast DDS segment is the usual cause."""
    profile = dds.shipped_profile_path() or dds.PROFILE_FILENAME
    return (
        f"input {topic}: a publisher is matched but {problem} in the last {DELIVERY_WINDOW_S:.0f} s. Images "
        f"over ~512 KB are lost between processes unless the publisher's Fast DDS has a large shared-memory "
        f"segment too: start the camera driver with {dds.profile_env_var()}={profile} (README: 'Large images')"
    )


def diagnostic_status(stats: FrameStats, now: float, *, name: str, state: str,
                      identity: dict[str, str]) -> DiagnosticStatus:
    """One status: rate, latency percentiles (and each stage's median), counters, the model, the last error.

    Args:
        stats: the node's counters (read under their lock; the failures since the last report are reset).
        now: monotonic time.
        name: status name.
        state: lifecycle state label (``active``, ``inactive``, ...).
        identity: ``device``, ``head``, ``segmenter``, ``threshold`` (and ``temporal_fusion``) of the running
            pipeline.
    """
    with stats.lock:
        latencies = np.array(stats.latencies_ms, dtype=np.float64)
        stages = {name: np.median(times) if times else math.nan for name, times in stats.stages_ms.items()}
        rate = stats.input_rate(now)
        failed_recently, stats.failed_since_report = stats.failed_since_report, 0
        counters = stats.counters()
        last_error = stats.last_error
        sequence = {"frames_fused": str(stats.frames_fused), "temporal_restarts": str(stats.temporal_restarts),
                    "last_restart": stats.last_restart}
    p50, p95 = np.percentile(latencies, [50, 95]) if latencies.size else (math.nan, math.nan)
    if failed_recently:
        level, message = DiagnosticStatus.WARN, f"{failed_recently} frame(s) skipped: {last_error}"
    elif state != "active":
        level, message = DiagnosticStatus.OK, f"{state}: not processing"
    elif rate == 0.0:
        level, message = DiagnosticStatus.OK, "waiting for images"
    else:
        level, message = DiagnosticStatus.OK, "processing"
    values = {
        "state": state,
        "input_rate_hz": f"{rate:.2f}",
        "latency_p50_ms": f"{p50:.1f}",
        "latency_p95_ms": f"{p95:.1f}",
        **{f"{name}_p50_ms": f"{value:.1f}" for name, value in stages.items()},
        **{key: str(value) for key, value in counters.items()},
        **identity,
        **sequence,
        "last_error": last_error,
    }
    return DiagnosticStatus(level=level, name=name, message=message, hardware_id=identity.get("device", ""),
                            values=[KeyValue(key=key, value=value) for key, value in values.items()])
