# Copyright 2026 The ood_seg_node developers. Licensed under the Apache License, Version 2.0.
"""Anomaly scores on disk in the SegmentMeIfYouCan benchmark's own layout, and reading them back.

The benchmark's ``Evaluation.save_output`` (SegmentMeIfYouCan/road-anomaly-benchmark, ``evaluation.py``) stores
each frame's score as ``<outputs>/anomaly_p/<method>/<dataset dir>/<frame id>.hdf5``: one HDF5 dataset named
``value``, cast to float16, gzip level 9; ``python -m road_anomaly_benchmark metric …`` reads exactly that. The
dataset directory is the full split the frame belongs to, not the evaluated subset: ``AnomalyTrack-all``,
``ObstacleTrack-all``, ``LostAndFound-test`` / ``LostAndFound-train``. Frame ids are the image stems, for
Lost&Found without ``_leftImg8bit``. Writing files there lets the official evaluator score this package's heads
unchanged; ``ood_seg evaluate --scores <folder>`` reads them back (or ``.npy`` maps, one per frame).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ood_seg_node.evaluation.metrics import EvaluationError

__all__ = ["SCORE_KEY", "benchmark_directory", "frame_id", "read_score", "score_path", "write_score"]

SCORE_KEY = "value"
_LAF_TAG = "_leftImg8bit"


def benchmark_directory(format_name: str, split: str | None = None) -> str:
    """The benchmark's directory for a dataset format (its own format name for sets the benchmark lacks)."""
    if format_name == "smiyc-anomaly":
        return "AnomalyTrack-all"
    if format_name == "smiyc-obstacle":
        return "ObstacleTrack-all"
    if format_name == "lostandfound":
        return f"LostAndFound-{split or 'test'}"
    return format_name


def frame_id(name: str) -> str:
    """The benchmark's frame id of a frame name (Lost&Found stems lose their ``_leftImg8bit`` tag)."""
    return name[: -len(_LAF_TAG)] if name.endswith(_LAF_TAG) else name


def score_path(outputs: str | Path, method: str, directory: str, name: str) -> Path:
    """``<outputs>/anomaly_p/<method>/<directory>/<frame id>.hdf5``."""
    if not method or "/" in method or method.startswith("."):
        raise EvaluationError(f"method name must be a plain folder name, got {method!r}")
    return Path(outputs) / "anomaly_p" / method / directory / f"{frame_id(name)}.hdf5"


def _h5py():
    try:
        import h5py
    except ImportError:
        raise EvaluationError("HDF5 score files need h5py (pip install h5py)") from None
    return h5py


def write_score(path: str | Path, score: np.ndarray) -> None:
    """One frame's HxW score as the benchmark's saver writes it: dataset ``value``, float16, gzip 9."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with _h5py().File(path, "w") as file:
        file.create_dataset(SCORE_KEY, data=np.asarray(score).astype(np.float16), compression=9)


def read_score(path: str | Path) -> np.ndarray:
    """An HxW float32 score from a ``.hdf5`` (dataset ``value``, squeezed as the benchmark does) or ``.npy`` file."""
    path = Path(path)
    try:
        if path.suffix == ".npy":
            score = np.load(path, allow_pickle=False)
        else:
            with _h5py().File(path, "r") as file:
                if SCORE_KEY not in file:
                    raise EvaluationError(f"score file {path} has no dataset {SCORE_KEY!r} "
                                          f"(has: {', '.join(file.keys()) or 'nothing'})")
                score = np.squeeze(file[SCORE_KEY][()])
    except (ValueError, OSError) as error:
        raise EvaluationError(f"cannot read score file {path}: {str(error).splitlines()[0]}") from None
    if score.ndim != 2:
        raise EvaluationError(f"score file {path} has shape {score.shape}, expected HxW")
    return score.astype(np.float32)
