# Copyright 2026 The ood_seg_node developers. Licensed under the Apache License, Version 2.0.
"""Every dataset the package can evaluate on or bag, opened from one ``<format>:<root>`` string.

``open_dataset("lostandfound:/data/LostAndFound", split="test")`` returns an object with ``len()``,
indexing and iteration yielding :class:`~ood_seg_node.datasets.base.Frame` (files are read lazily, one
frame at a time), plus:

* ``kind`` -- ``"obstacle"`` or ``"anomaly"``: which SMIYC component-size filters the evaluation
  applies (obstacle-style: ``smiyc-obstacle``, ``lostandfound``, ``fishyscapes`` lostandfound subset,
  ``synthetic``; anomaly-style: ``smiyc-anomaly``, ``roadanomaly``, ``fishyscapes`` static subset);
* ``has_semantic`` -- whether frames carry class ids (``synthetic``: Cityscapes trainIds;
  ``streethazards``: StreetHazards ids), and ``label_space``, the class set they are in;
* ``camera`` -- the pinhole camera model when the source has one (``synthetic``), else None.

Formats and their options:

==================  ==============================================  ===================================
format              root                                            options
==================  ==============================================  ===================================
``lostandfound``    folder with ``leftImg8bit/`` and ``gtCoarse/``  ``split``, ``subset``
``fishyscapes``     folder with ``LostAndFound/`` and ``Static/``   ``subset``
``roadanomaly``     unpacked ``RoadAnomaly`` folder                 --
``smiyc-anomaly``   ``dataset_AnomalyTrack``                        --
``smiyc-obstacle``  ``dataset_ObstacleTrack``                       --
``streethazards``   folder with unpacked ``train/``, ``test/``      ``split``
``bdd-anomaly``     BDD100K's ``bdd100k/`` (holding ``seg/``)       ``split`` (``test`` = the anomaly images)
``synthetic``       none, or ``seed=3,frames=20``                   ``seed``, ``frames``, ``height``,
                                                                    ``width``, ``sequences``
==================  ==============================================  ===================================
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Protocol

from ood_seg_node.datasets.base import DatasetError, Frame
from ood_seg_node.label_spaces import CITYSCAPES
from ood_seg_node.registry import Registry

__all__ = [
    "FORMATS",
    "Dataset",
    "DatasetError",
    "Frame",
    "SyntheticDataset",
    "open_dataset",
    "parse_dataset_spec",
]


class Dataset(Protocol):
    """What :func:`open_dataset` returns."""

    kind: str
    has_semantic: bool
    label_space: str
    camera: Any

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> Frame: ...

    def __iter__(self) -> Iterator[Frame]: ...


@dataclass(frozen=True)
class DatasetFormat:
    """A registry entry: how to build a format and which options it takes."""

    build: Callable[..., Dataset]
    options: tuple[str, ...]
    needs_root: bool = True


FORMATS: Registry[DatasetFormat] = Registry("dataset format")


class SyntheticDataset:
    """The procedural Lost&Found-style world (``datasets/synthetic/``) behind the dataset interface."""

    kind: str = "obstacle"
    has_semantic: bool = True
    label_space: str = CITYSCAPES.name

    def __init__(self, *, seed: int = 0, frames: int = 100, height: int = 256, width: int = 512,
                 sequences: int = 1) -> None:
        """Create the drives, rendered on access and taken one after the other.

        ``sequences`` worlds of seeds ``seed``, ``seed + 1``, ..., ``frames`` frames each.

        Raises:
            DatasetError: a non-positive frame count, sequence count or image size.
        """
        for option, value in (("frames", frames), ("height", height), ("width", width), ("sequences", sequences)):
            if int(value) <= 0:
                raise DatasetError(f"synthetic {option} must be positive, got {value}")
        # Imported on use: the synthetic world is optional for every other format.
        synthetic = importlib.import_module("ood_seg_node.datasets.synthetic")
        self.seed: int = int(seed)
        self.sequences = [synthetic.SyntheticSequence(int(seed) + k, int(frames), height=int(height),
                                                      width=int(width)) for k in range(int(sequences))]
        self.sequence = self.sequences[0]
        self.camera: Any = self.sequence.camera

    def __len__(self) -> int:
        return sum(len(sequence) for sequence in self.sequences)

    def __getitem__(self, index: int) -> Frame:
        length = len(self.sequence)
        if not 0 <= index < len(self):
            raise IndexError(f"synthetic: frame {index} out of range 0..{len(self) - 1}")
        return self.sequences[index // length][index % length]

    def __iter__(self) -> Iterator[Frame]:
        for sequence in self.sequences:
            yield from sequence

    def __repr__(self) -> str:
        return f"SyntheticDataset(seed={self.seed}, {len(self.sequences)} sequence(s), {len(self)} frames)"


def _lostandfound(root: Path, **options: Any) -> Dataset:
    from ood_seg_node.datasets.lostandfound import LostAndFound

    return LostAndFound(root, **options)


def _fishyscapes(root: Path, **options: Any) -> Dataset:
    from ood_seg_node.datasets.fishyscapes import Fishyscapes

    return Fishyscapes(root, **options)


def _roadanomaly(root: Path, **options: Any) -> Dataset:
    from ood_seg_node.datasets.roadanomaly import RoadAnomaly

    return RoadAnomaly(root, **options)


def _smiyc(track: str) -> Callable[..., Dataset]:
    def build(root: Path, **options: Any) -> Dataset:
        from ood_seg_node.datasets.smiyc import SMIYC

        return SMIYC(root, track=track, **options)

    return build


def _streethazards(root: Path, **options: Any) -> Dataset:
    from ood_seg_node.datasets.streethazards import StreetHazards

    return StreetHazards(root, **options)


def _bdd_anomaly(root: Path, **options: Any) -> Dataset:
    from ood_seg_node.datasets.bdd_anomaly import BDDAnomaly

    return BDDAnomaly(root, **{"split": "test", **options})  # evaluation reads the anomaly images


def _synthetic(root: Path | None, *, skip_bad: bool = False, **options: Any) -> Dataset:
    return SyntheticDataset(**options)


FORMATS.register("lostandfound")(DatasetFormat(_lostandfound, ("split", "subset")))
FORMATS.register("fishyscapes")(DatasetFormat(_fishyscapes, ("subset",)))
FORMATS.register("roadanomaly")(DatasetFormat(_roadanomaly, ()))
FORMATS.register("smiyc-anomaly")(DatasetFormat(_smiyc("anomaly"), ()))
FORMATS.register("smiyc-obstacle")(DatasetFormat(_smiyc("obstacle"), ()))
FORMATS.register("streethazards")(DatasetFormat(_streethazards, ("split",)))
FORMATS.register("bdd-anomaly")(DatasetFormat(_bdd_anomaly, ("split",)))
FORMATS.register("synthetic")(
    DatasetFormat(_synthetic, ("seed", "frames", "height", "width", "sequences"), needs_root=False)
)


def parse_dataset_spec(spec: str) -> tuple[str, str]:
    """Split ``<format>:<root>`` into its two parts (``root`` is ``""`` for ``synthetic``).

    Raises:
        DatasetError: empty spec, unknown format (the message lists the valid ones), or a file-based
            format without a root.
    """
    name, _, root = spec.strip().partition(":")
    name = name.strip().lower()
    if not name:
        raise DatasetError(f"empty dataset spec {spec!r}; expected <format>:<root>, formats: "
                           f"{', '.join(FORMATS.names())}")
    if name not in FORMATS:
        raise DatasetError(f"unknown dataset format {name!r}; valid: {', '.join(FORMATS.names())}")
    if FORMATS.get(name).needs_root and not root.strip():
        raise DatasetError(f"dataset format {name!r} needs a root folder: {name}:<root>")
    return name, root.strip()


def _synthetic_options(text: str) -> dict[str, int]:
    options: dict[str, int] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, sep, value = item.partition("=")
        try:
            if not sep:
                raise ValueError
            options[key.strip()] = int(value)
        except ValueError:
            raise DatasetError(f"synthetic option {item!r} is not key=<integer>") from None
    return options


def open_dataset(spec: str, *, skip_bad: bool = False, **options: Any) -> Dataset:
    """Open a dataset from ``<format>:<root>``.

    Args:
        spec: ``lostandfound:<root>``, ``fishyscapes:<root>``, ``roadanomaly:<root>``,
            ``smiyc-anomaly:<root>``, ``smiyc-obstacle:<root>`` or ``synthetic`` (optionally
            ``synthetic:seed=3,frames=20``).
        skip_bad: skip frames with missing or corrupt files (logged warning) instead of raising.
        **options: format options (see the module docstring); options whose value is None are ignored,
            so command-line defaults can be passed through unchanged.

    Returns:
        A lazily loading dataset.

    Raises:
        DatasetError: unknown format or option, missing folders, bad files (without ``skip_bad``).
    """
    name, root = parse_dataset_spec(spec)
    entry = FORMATS.get(name)
    given = {key: value for key, value in options.items() if value is not None}
    if not entry.needs_root:
        for key, value in _synthetic_options(root).items():
            if key in given and given[key] != value:
                raise DatasetError(f"{name} option {key!r} given twice ({value} in the spec, {given[key]})")
            given[key] = value
    unknown = sorted(set(given) - set(entry.options))
    if unknown:
        valid = ", ".join(entry.options) or "none"
        raise DatasetError(f"dataset format {name!r} takes no option {unknown[0]!r}; valid options: {valid}")
    if entry.needs_root:
        path = Path(root).expanduser()
        if not path.is_dir():
            raise DatasetError(f"{name} root directory missing: {path}")
        return entry.build(path, skip_bad=skip_bad, **given)
    return entry.build(None, skip_bad=skip_bad, **given)
