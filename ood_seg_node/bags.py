# Copyright 2026 The ood_seg_node developers. Licensed under the Apache License, Version 2.0.
"""rosbag2 files (mcap or sqlite3) written and read with ``rosbags``, without a ROS installation.

A bag made here holds, per frame and all with the same header stamp and log time
(``start_ns + i / rate_hz``):

==========================  ===============================  ============================================
topic                       type                             content
==========================  ===============================  ============================================
``/camera/image_raw``       sensor_msgs/msg/Image ``rgb8``   the camera image
``/camera/ood_gt``          sensor_msgs/msg/Image ``mono8``  anomaly ground truth 0 / 1 / 255 (if any)
``/camera/semantic``        sensor_msgs/msg/Image ``mono8``  Cityscapes trainIds (extension; if any)
``/camera/camera_info``     sensor_msgs/msg/CameraInfo       ``plumb_bob``, no distortion (if a camera
                                                             model is known)
``/odom``                   nav_msgs/msg/Odometry            the vehicle base's pose in ``odom`` (if the
                                                             frames know their camera pose)
==========================  ===============================  ============================================

With odometry, ``custom_data`` also records the camera mount (``camera_height``, ``camera_pitch``: the camera
above the base origin, looking forward), so reading gives each frame its camera view for ground-plane
temporal fusion, as the node computes it from the same topics and its parameters of those names; and the
sequence of each frame (``frame_sequences``), so fusion never spans two recordings.

Message definitions and type hashes come from the newest ROS 2 typestore ``rosbags`` ships (Kilted,
else Jazzy); ``sensor_msgs`` Image/CameraInfo are identical from Humble to Kilted. The bag is written
in rosbag2 format version 8 (the newest both Jazzy and Kilted read; Humble reads the fields it knows),
with offered QoS profiles (reliable, volatile, keep-last 10) so ``ros2 bag play`` can re-create the
publishers, and a ``metadata.yaml`` that ``ros2 bag info`` reads. ``custom_data`` records the frame
names, the dataset kind (``obstacle``/``anomaly``), the source and the label space of the semantic maps,
so an evaluation of the bag can match precomputed score files, apply the right component filters and
compute mIoU only for a segmenter of the same classes.

Reading pairs the image, ground truth and semantic messages by header stamp; it also accepts
``sensor_msgs/msg/CompressedImage`` on the image topic and any encoding of
:mod:`ood_seg_node.encodings`.

MCAP bags carry CRC-32s of every chunk, of the data section and of the summary, so a damaged file is an
error naming the bad chunk rather than a silently shorter or altered run (sqlite3 has no checksums: only
damage to the database's structure is detected there).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import struct
import zlib
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, BinaryIO, Iterable, Iterator, Protocol

import numpy as np

from ood_seg_node.camera import CameraView, mount_pose, pose_matrix, rotation_quaternion
from ood_seg_node.datasets.base import Frame
from ood_seg_node.encodings import (
    ImageEncodingError,
    array_to_image_fields,
    decode_compressed,
    decode_image,
    image_to_array,
)
from ood_seg_node.label_spaces import CITYSCAPES

log = logging.getLogger(__name__)

IMAGE_TOPIC = "/camera/image_raw"
OOD_GT_TOPIC = "/camera/ood_gt"
SEMANTIC_TOPIC = "/camera/semantic"
CAMERA_INFO_TOPIC = "/camera/camera_info"
STORAGES: tuple[str, ...] = ("mcap", "sqlite3")
BAG_VERSION = 8
DEFAULT_START_NS = 1_700_000_000 * 10**9
"""Fixed default start stamp (2023-11-14T22:13:20Z), so the same input always gives the same bag."""

IMAGE_TYPE = "sensor_msgs/msg/Image"
COMPRESSED_TYPE = "sensor_msgs/msg/CompressedImage"
CAMERA_INFO_TYPE = "sensor_msgs/msg/CameraInfo"
ODOMETRY_TOPIC = "/odom"
ODOMETRY_TYPE = "nav_msgs/msg/Odometry"
_CUSTOM_PREFIX = "ood_seg_node."
_PENDING_LIMIT = 8  # stamps kept waiting for partners while reading; bounds memory on unpaired topics


class BagError(RuntimeError):
    """A bag cannot be written or read (the message names the bag and the reason, on one line)."""


class CameraIntrinsics(Protocol):
    """Anything with pinhole intrinsics in pixels (the synthetic CameraModel, :class:`Intrinsics`)."""

    fx: float
    fy: float
    cx: float
    cy: float


@dataclass(frozen=True)
class Intrinsics:
    """Plain pinhole intrinsics, e.g. from ``make-bag --camera-info fx,fy,cx,cy``."""

    fx: float
    fy: float
    cx: float
    cy: float

    @classmethod
    def parse(cls, text: str) -> Intrinsics:
        """Parse ``"fx,fy,cx,cy"``.

        Raises:
            ValueError: not four numbers, or a non-positive focal length.
        """
        parts = [p.strip() for p in text.split(",")]
        try:
            fx, fy, cx, cy = (float(p) for p in parts)
        except ValueError:
            raise ValueError(f"camera intrinsics {text!r} are not four numbers fx,fy,cx,cy") from None
        if fx <= 0 or fy <= 0:
            raise ValueError(f"camera intrinsics {text!r}: focal lengths must be positive")
        return cls(fx, fy, cx, cy)


@dataclass
class BagSummary:
    """What :func:`write_bag` wrote."""

    path: Path
    storage: str
    frames: int
    topics: dict[str, int]
    start_ns: int
    end_ns: int

    @property
    def duration_s(self) -> float:
        """Seconds between the first and the last message."""
        return max(0, self.end_ns - self.start_ns) / 1e9

    def __str__(self) -> str:
        topics = ", ".join(f"{topic} x{count}" for topic, count in self.topics.items())
        return (
            f"{self.path} ({self.storage}): {self.frames} frames, {self.duration_s:.2f} s, "
            f"{len(self.topics)} topics [{topics}]"
        )


@dataclass
class ImageMessage:
    """One decoded image-like message of a topic."""

    topic: str
    msgtype: str
    stamp_ns: int
    log_time_ns: int
    frame_id: str
    encoding: str
    array: np.ndarray
    """Message layout for Image (HxW mono / float, HxWxC colour); RGB HxWx3 for CompressedImage."""


@dataclass
class BagFrame:
    """One frame of a bag: the image and whatever ground truth shares its header stamp."""

    stamp_ns: int
    image: np.ndarray
    ood_gt: np.ndarray | None
    semantic: np.ndarray | None
    frame_id: str
    index: int = 0
    name: str = ""
    label_space: str = CITYSCAPES.name
    sequence: str = ""
    view: CameraView | None = None

    def to_frame(self) -> Frame:
        """The dataset-frame view (sequence = the recorded one, else frame_id; name = recorded name or stamp)."""
        return Frame(
            image=self.image,
            ood_gt=self.ood_gt,
            semantic=self.semantic,
            name=self.name or str(self.stamp_ns),
            sequence=self.sequence or self.frame_id,
            index=self.index,
            label_space=self.label_space,
            view=self.view,
        )


@dataclass
class BagInfo:
    """The header of a bag: storage, topics with types and counts, and the package's ``custom_data``."""

    path: Path
    storage: str
    version: int
    start_ns: int
    duration_ns: int
    topics: dict[str, tuple[str, int]]
    frame_names: list[str] = field(default_factory=list)
    kind: str | None = None
    source: str | None = None
    label_space: str = CITYSCAPES.name
    frame_sequences: list[str] = field(default_factory=list)
    camera_mount: tuple[float, float] | None = None  # (height m, pitch rad) when the bag has odometry


@lru_cache(maxsize=1)
def typestore() -> Any:
    """The newest ROS 2 typestore available in the installed ``rosbags`` (Kilted, else Jazzy)."""
    from rosbags.typesys import Stores, get_typestore

    store = getattr(Stores, "ROS2_KILTED", None) or Stores.ROS2_JAZZY
    return get_typestore(store)


def _qos_profiles() -> list[Any]:
    from rosbags.interfaces import Qos, QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime

    zero = QosTime(0, 0)  # 0 = "unspecified", i.e. the RMW default (infinite) on playback
    return [
        Qos(
            history=QosHistory.KEEP_LAST,
            depth=10,
            reliability=QosReliability.RELIABLE,
            durability=QosDurability.VOLATILE,
            deadline=zero,
            lifespan=zero,
            liveliness=QosLiveliness.AUTOMATIC,
            liveliness_lease_duration=zero,
            avoid_ros_namespace_conventions=False,
        )
    ]


def _header(store: Any, stamp_ns: int, frame_id: str) -> Any:
    types = store.types
    stamp = types["builtin_interfaces/msg/Time"](sec=stamp_ns // 10**9, nanosec=stamp_ns % 10**9)
    return types["std_msgs/msg/Header"](stamp=stamp, frame_id=frame_id)


def _image_message(store: Any, array: np.ndarray, encoding: str, header: Any) -> Any:
    fields = array_to_image_fields(array, encoding)
    return store.types[IMAGE_TYPE](header=header, data=np.frombuffer(fields.data, dtype=np.uint8), **fields.layout())


def _camera_info_message(store: Any, camera: CameraIntrinsics, height: int, width: int, header: Any) -> Any:
    types = store.types
    fx, fy, cx, cy = float(camera.fx), float(camera.fy), float(camera.cx), float(camera.cy)
    return types[CAMERA_INFO_TYPE](
        header=header,
        height=height,
        width=width,
        distortion_model="plumb_bob",
        d=np.zeros(5, dtype=np.float64),
        k=np.array([fx, 0.0, cx, 0.0, fy, cy, 0.0, 0.0, 1.0]),
        r=np.eye(3).reshape(-1),
        p=np.array([fx, 0.0, cx, 0.0, 0.0, fy, cy, 0.0, 0.0, 0.0, 1.0, 0.0]),
        binning_x=0,
        binning_y=0,
        roi=types["sensor_msgs/msg/RegionOfInterest"](
            x_offset=0, y_offset=0, height=0, width=0, do_rectify=False
        ),
    )


def _odometry_message(store: Any, view: CameraView, header: Any) -> Any:
    """The base pose in ``odom`` of a frame whose camera view is known (camera pose over the inverse mount)."""
    types = store.types
    base = view.base_pose
    x, y, z, w = (float(value) for value in rotation_quaternion(base[:3, :3]))
    pose = types["geometry_msgs/msg/Pose"](
        position=types["geometry_msgs/msg/Point"](x=float(base[0, 3]), y=float(base[1, 3]), z=float(base[2, 3])),
        orientation=types["geometry_msgs/msg/Quaternion"](x=x, y=y, z=z, w=w))
    twist = types["geometry_msgs/msg/Twist"](linear=types["geometry_msgs/msg/Vector3"](x=0.0, y=0.0, z=0.0),
                                             angular=types["geometry_msgs/msg/Vector3"](x=0.0, y=0.0, z=0.0))
    odom_header = types["std_msgs/msg/Header"](stamp=header.stamp, frame_id="odom")
    return types[ODOMETRY_TYPE](
        header=odom_header, child_frame_id="base_link",
        pose=types["geometry_msgs/msg/PoseWithCovariance"](pose=pose, covariance=np.zeros(36)),
        twist=types["geometry_msgs/msg/TwistWithCovariance"](twist=twist, covariance=np.zeros(36)))


def _check_frame(frame: Frame, index: int) -> None:
    where = f"frame {index} ({frame.name or 'unnamed'})"
    image = frame.image
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise BagError(f"{where}: image must be HxWx3 uint8 RGB, got {image.shape} {image.dtype}")
    for what, labels in (("ood_gt", frame.ood_gt), ("semantic", frame.semantic)):
        if labels is not None and (labels.shape != image.shape[:2] or labels.dtype != np.uint8):
            raise BagError(
                f"{where}: {what} must be {image.shape[0]}x{image.shape[1]} uint8, "
                f"got {labels.shape} {labels.dtype}"
            )


# -------------------------------------------------------------------------------------- MCAP checksums
# rosbags' MCAP writer leaves every CRC 0 ("not recorded"), so damage inside a chunk read as a shorter or
# altered but complete bag. write_bag fills them in (layout: https://mcap.dev/spec); rosbags checks chunk
# CRCs while reading, the summary is checked on opening, and a read failure names the chunk that fails.

_MCAP_MAGIC = b"\x89MCAP0\r\n"
_OP_FOOTER, _OP_CHUNK, _OP_DATA_END = 0x02, 0x06, 0x0F
_RECORD_HEAD = struct.Struct("<BQ")  # opcode, body length
_FOOTER = struct.Struct("<BQQQI")  # opcode, body length, summary start, summary offset start, summary CRC
_CRC = struct.Struct("<I")
_CHUNK_CRC_AT = 24  # a chunk body starts with message start time, end time, uncompressed size, then the CRC


class _McapDamageError(ValueError):
    """An MCAP file fails a checksum or is malformed (the message says where, in bytes)."""


def _records(stream: BinaryIO, start: int, end: int) -> Iterator[tuple[int, int, bytes]]:
    """(offset, opcode, body) of the records from byte ``start`` to ``end``, in file order."""
    offset = start
    while offset < end:
        stream.seek(offset)
        opcode, length = _RECORD_HEAD.unpack(stream.read(_RECORD_HEAD.size))  # end is before the footer
        if offset + _RECORD_HEAD.size + length > end:
            raise _McapDamageError(f"record at byte {offset} runs past byte {end} (damaged length)")
        yield offset, opcode, stream.read(length)
        offset += _RECORD_HEAD.size + length


def _chunk_crc(offset: int, body: bytes) -> int:
    """CRC-32 of a chunk's records after decompression: what its ``uncompressed_crc`` must hold."""
    from rosbags.rosbag2.storage_mcap import decompress  # the reader's own: same codecs, same size check

    size = int.from_bytes(body[16:24], "little")
    name_end = 32 + int.from_bytes(body[28:32], "little")
    data_start = name_end + 8
    data_end = data_start + int.from_bytes(body[name_end:data_start], "little")
    try:
        return zlib.crc32(decompress(body[data_start:data_end], body[32:name_end].decode(), size, 0))
    except Exception as error:  # garbage compression name, sizes or compressed bytes
        raise _McapDamageError(f"chunk at byte {offset} cannot be decompressed ({error})") from None


def _mcap_checksums(file: Path, *, fill: bool = False, data: bool = True) -> None:
    """Check an MCAP file's CRCs, or with ``fill`` write them (chunks, then data section, then summary).

    ``data=False`` checks only the summary (cheap, done on every opening). A stored 0 means "not recorded"
    (bags written before CRCs were filled in) and passes.

    Raises:
        _McapDamageError: the first CRC that does not match, or a malformed record, naming its byte offset.
    """
    with file.open("r+b" if fill else "rb") as stream:

        def settle(what: str, at: int, stored: bytes, computed: int) -> None:
            if fill:
                stream.seek(at)
                stream.write(_CRC.pack(computed))
            elif (value := _CRC.unpack(stored)[0]) and value != computed:
                raise _McapDamageError(f"{what} fails its CRC check (stored {value:#010x}, computed {computed:#010x})")

        footer_at = stream.seek(0, os.SEEK_END) - _FOOTER.size - len(_MCAP_MAGIC)
        stream.seek(max(footer_at, 0))
        footer = stream.read(_FOOTER.size)
        if footer_at < len(_MCAP_MAGIC) or footer[0] != _OP_FOOTER:
            raise _McapDamageError("no MCAP footer at its end (truncated?)")
        summary_start = _FOOTER.unpack(footer)[2]  # 0: no summary section
        if summary_start and not len(_MCAP_MAGIC) <= summary_start <= footer_at:
            raise _McapDamageError(f"footer at byte {footer_at} points outside the file (damaged)")
        if summary_start:
            stream.seek(summary_start)
            summary = stream.read(footer_at + _FOOTER.size - _CRC.size - summary_start)
            settle(f"summary at byte {summary_start}", footer_at + _FOOTER.size - _CRC.size, footer[-_CRC.size:],
                   zlib.crc32(summary))
        if not data:
            return
        data_crc = zlib.crc32(_MCAP_MAGIC)
        for offset, opcode, body in _records(stream, len(_MCAP_MAGIC), summary_start or footer_at):
            at = offset + _RECORD_HEAD.size
            if opcode == _OP_DATA_END:
                settle("data section", at, body[: _CRC.size], data_crc)
                break
            if opcode == _OP_CHUNK:
                computed = _chunk_crc(offset, body)
                crc_field = slice(_CHUNK_CRC_AT, _CHUNK_CRC_AT + _CRC.size)
                settle(f"chunk at byte {offset}", at + _CHUNK_CRC_AT, body[crc_field], computed)
                if fill:
                    body = body[: crc_field.start] + _CRC.pack(computed) + body[crc_field.stop :]
            data_crc = zlib.crc32(body, zlib.crc32(_RECORD_HEAD.pack(opcode, len(body)), data_crc))


def _prepare_target(path: Path, overwrite: bool) -> None:
    if not path.exists():
        return
    if not (path.is_dir() and (path / "metadata.yaml").is_file()):
        raise BagError(f"{path} exists and is not a rosbag2 folder; not overwriting it (choose another output)")
    if not overwrite:  # worded for both callers: make-bag's flag and write_bag's argument
        raise BagError(f"{path} exists already; pass --overwrite (overwrite=True) to replace it")
    shutil.rmtree(path)


def write_bag(
    path: str | Path,
    frames: Iterable[Frame],
    *,
    storage: str = "mcap",
    rate_hz: float = 10.0,
    frame_id: str = "camera",
    camera: CameraIntrinsics | None = None,
    start_ns: int = DEFAULT_START_NS,
    progress: bool = True,
    total: int | None = None,
    kind: str | None = None,
    source: str | None = None,
    label_space: str = CITYSCAPES.name,
    overwrite: bool = False,
    compress: bool = False,
) -> BagSummary:
    """Write frames into a new rosbag2 folder.

    Args:
        path: bag folder to create (must not exist unless ``overwrite`` and it is a bag).
        frames: the frames, in playback order (a dataset or any iterable).
        storage: ``mcap`` or ``sqlite3``.
        rate_hz: playback rate; frame ``i`` is stamped ``start_ns + i / rate_hz``.
        frame_id: header frame_id of every message.
        camera: intrinsics for ``/camera/camera_info``; None writes no camera info.
        start_ns: stamp of the first frame (ns since the epoch).
        progress: show a tqdm progress bar.
        total: number of frames for the progress bar when ``frames`` has no ``len()``.
        kind: ``obstacle`` or ``anomaly``, recorded for evaluation (see :mod:`ood_seg_node.datasets`).
        source: free text recorded in ``custom_data`` (e.g. the dataset spec).
        label_space: the class set of the frames' ``semantic`` maps, recorded for evaluation.
        overwrite: replace an existing bag folder.
        compress: zstd-compress the MCAP chunks (mcap only; transparent to ``ros2 bag play``).

    Returns:
        What was written.

    Raises:
        BagError: bad arguments, the target exists, a malformed frame, or a storage failure. A bag that
            fails half-way is removed.
    """
    from rosbags.rosbag2 import CompressionFormat, CompressionMode, StoragePlugin, Writer, WriterError
    from tqdm import tqdm

    if storage not in STORAGES:
        raise BagError(f"unknown bag storage {storage!r}; valid: {', '.join(STORAGES)}")
    if not rate_hz > 0:
        raise BagError(f"bag rate must be positive, got {rate_hz}")
    if compress and storage != "mcap":
        raise BagError("compression is only available with the mcap storage (chunk compression)")
    path = Path(path)
    _prepare_target(path, overwrite)
    store = typestore()
    qos = _qos_profiles()
    plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
    counts: dict[str, int] = {}
    names: list[str] = []
    sequences: list[str] = []
    mount: tuple[float, float] | None = None
    end_ns = start_ns
    if total is None and hasattr(frames, "__len__"):
        total = len(frames)  # type: ignore[arg-type]
    try:
        writer = Writer(path, version=BAG_VERSION, storage_plugin=plugin)
        if compress:
            writer.set_compression(CompressionMode.STORAGE, CompressionFormat.ZSTD)
        with writer:
            connections: dict[str, Any] = {}

            def emit(topic: str, msgtype: str, message: Any, stamp_ns: int) -> None:
                if topic not in connections:
                    connections[topic] = writer.add_connection(
                        topic, msgtype, typestore=store, offered_qos_profiles=qos
                    )
                writer.write(connections[topic], stamp_ns, store.serialize_cdr(message, msgtype))
                counts[topic] = counts.get(topic, 0) + 1

            bar = tqdm(frames, total=total, disable=not progress, unit="frame", desc=f"bag {path.name}")
            for index, frame in enumerate(bar):
                _check_frame(frame, index)
                stamp_ns = start_ns + round(index * 1e9 / rate_hz)
                header = _header(store, stamp_ns, frame_id)
                emit(IMAGE_TOPIC, IMAGE_TYPE, _image_message(store, frame.image, "rgb8", header), stamp_ns)
                if frame.ood_gt is not None:
                    message = _image_message(store, frame.ood_gt, "mono8", header)
                    emit(OOD_GT_TOPIC, IMAGE_TYPE, message, stamp_ns)
                if frame.semantic is not None:
                    message = _image_message(store, frame.semantic, "mono8", header)
                    emit(SEMANTIC_TOPIC, IMAGE_TYPE, message, stamp_ns)
                if camera is not None:
                    height, width = frame.image.shape[:2]
                    message = _camera_info_message(store, camera, height, width, header)
                    emit(CAMERA_INFO_TOPIC, CAMERA_INFO_TYPE, message, stamp_ns)
                if frame.view is not None:
                    if mount is not None and mount != (frame.view.height, frame.view.pitch):
                        raise BagError(f"frame {index}: camera mount {frame.view.height} m / {frame.view.pitch} rad "
                                       f"differs from the bag's {mount[0]} m / {mount[1]} rad")
                    mount = (frame.view.height, frame.view.pitch)
                    emit(ODOMETRY_TOPIC, ODOMETRY_TYPE, _odometry_message(store, frame.view, header), stamp_ns)
                names.append(frame.name)
                sequences.append(frame.sequence)
                end_ns = stamp_ns
            if not names:
                raise BagError(f"no frames to write into {path}")
            writer.set_custom_data(f"{_CUSTOM_PREFIX}frame_names", json.dumps(names))
            writer.set_custom_data(f"{_CUSTOM_PREFIX}frames", str(len(names)))
            if kind is not None:
                writer.set_custom_data(f"{_CUSTOM_PREFIX}kind", kind)
            if source is not None:
                writer.set_custom_data(f"{_CUSTOM_PREFIX}source", source)
            writer.set_custom_data(f"{_CUSTOM_PREFIX}label_space", label_space)
            writer.set_custom_data(f"{_CUSTOM_PREFIX}frame_sequences", json.dumps(sequences))
            if mount is not None:
                writer.set_custom_data(f"{_CUSTOM_PREFIX}camera_height", repr(mount[0]))
                writer.set_custom_data(f"{_CUSTOM_PREFIX}camera_pitch", repr(mount[1]))
        for file in _mcap_files(path):
            _mcap_checksums(file, fill=True)
    except BaseException as error:
        # A half-written bag is worse than none: players and readers choke on it.
        shutil.rmtree(path, ignore_errors=True)
        if isinstance(error, WriterError):
            raise BagError(f"cannot write bag {path}: {error}") from None
        raise
    return BagSummary(
        path=path, storage=storage, frames=len(names), topics=counts, start_ns=start_ns, end_ns=end_ns
    )


# ----------------------------------------------------------------------------------------------- reading


def _read_metadata(path: Path) -> dict[str, Any]:
    import yaml

    meta_path = path / "metadata.yaml"
    try:
        data = yaml.safe_load(meta_path.read_text())
        return dict(data["rosbag2_bagfile_information"])
    except (OSError, yaml.YAMLError, KeyError, TypeError) as error:
        raise BagError(f"{meta_path} is not a rosbag2 metadata file: {error}") from None


def bag_info(path: str | Path) -> BagInfo:
    """Read a bag folder's header (topics, counts, recorded frame names and kind).

    Raises:
        BagError: not a rosbag2 folder, or unreadable metadata.
    """
    path = Path(path)
    if not path.is_dir() or not (path / "metadata.yaml").is_file():
        raise BagError(f"{path} is not a rosbag2 folder (no metadata.yaml)")
    meta = _read_metadata(path)
    try:
        topics = {
            entry["topic_metadata"]["name"]: (entry["topic_metadata"]["type"], int(entry["message_count"]))
            for entry in meta.get("topics_with_message_count") or []
        }
        custom = meta.get("custom_data") or {}
        names = json.loads(custom.get(f"{_CUSTOM_PREFIX}frame_names", "[]"))
        sequences = json.loads(custom.get(f"{_CUSTOM_PREFIX}frame_sequences", "[]"))
        height, pitch = (custom.get(f"{_CUSTOM_PREFIX}camera_{key}") for key in ("height", "pitch"))
        return BagInfo(
            path=path,
            storage=str(meta.get("storage_identifier", "")),
            version=int(meta.get("version", 0)),
            start_ns=int(meta["starting_time"]["nanoseconds_since_epoch"]),
            duration_ns=int(meta["duration"]["nanoseconds"]),
            topics=topics,
            frame_names=[str(n) for n in names] if isinstance(names, list) else [],
            kind=custom.get(f"{_CUSTOM_PREFIX}kind"),
            source=custom.get(f"{_CUSTOM_PREFIX}source"),
            label_space=custom.get(f"{_CUSTOM_PREFIX}label_space", CITYSCAPES.name),
            frame_sequences=[str(n) for n in sequences] if isinstance(sequences, list) else [],
            camera_mount=(float(height), float(pitch)) if height is not None and pitch is not None else None,
        )
    except (KeyError, TypeError, ValueError) as error:
        raise BagError(f"{path / 'metadata.yaml'} is malformed: {error!r}") from None


def _mcap_files(path: Path) -> list[Path]:
    """The MCAP files of a bag folder, or the file itself when it is one."""
    return [path] if path.suffix == ".mcap" else sorted(path.glob("*.mcap"))


def _damage(path: Path, *, data: bool) -> str | None:
    """Where the bag's MCAP files fail their checksums (``data=False``: their summaries only), or None."""
    for file in _mcap_files(path):
        try:
            _mcap_checksums(file, data=data)
        except (_McapDamageError, OSError) as damage:
            return f"{file.name}: {damage}"
    return None


def _open_reader(path: Path) -> Any:
    from rosbags.rosbag2 import Reader

    try:
        reader = Reader(path)
        reader.open()
    except FileNotFoundError:
        raise BagError(f"{path} is not a rosbag2 bag (missing, or no metadata.yaml)") from None
    except Exception as error:  # ReaderError, but storage plugins raise assorted types on corrupt files
        raise BagError(f"cannot open bag {path}: {_damage(path, data=True) or error}") from None
    problem = _damage(path, data=False)  # rosbags trusts the summary's chunk index: a damaged one drops chunks
    if problem is not None:
        reader.close()
        raise BagError(f"bag {path} is corrupt: {problem}")
    return reader


def iter_messages(path: Path, topics: Iterable[str]) -> Iterator[tuple[str, str, int, Any]]:
    """(topic, msgtype, log time, message) of the given topics, in log-time order."""
    store = typestore()
    wanted = set(topics)
    reader = _open_reader(path)
    try:
        connections = [c for c in reader.connections if c.topic in wanted]
        iterator = reader.messages(connections=connections) if connections else iter(())
        while True:
            try:
                connection, log_time, raw = next(iterator)
            except StopIteration:
                return
            except Exception as error:  # corrupt chunk / page: one line naming the bag and the chunk
                raise BagError(f"bag {path} is corrupt: {_damage(path, data=True) or error}") from None
            try:
                message = store.deserialize_cdr(raw, connection.msgtype)
            except Exception as error:
                raise BagError(
                    f"bag {path}: cannot deserialize a {connection.msgtype} on {connection.topic}: {error}"
                ) from None
            yield connection.topic, connection.msgtype, log_time, message
    finally:
        try:
            reader.close()
        except Exception as error:  # closing a reader that failed mid-way must not hide the first error
            log.debug("closing bag %s failed: %s", path, error)


def _stamp_ns(message: Any) -> int:
    return int(message.header.stamp.sec) * 10**9 + int(message.header.stamp.nanosec)


def _decode(path: Path, topic: str, msgtype: str, message: Any, rgb: bool) -> tuple[str, np.ndarray]:
    try:
        if msgtype == COMPRESSED_TYPE:
            return message.format, decode_compressed(message.data, message.format)
        if msgtype != IMAGE_TYPE:
            raise ImageEncodingError(f"{msgtype} is not an image type")
        fields = (message.encoding, message.height, message.width, message.step, message.data)
        decode = image_to_array if rgb else decode_image
        return message.encoding, decode(*fields, is_bigendian=message.is_bigendian)
    except ImageEncodingError as error:
        raise BagError(f"bag {path}, topic {topic}: {error}") from None


def iter_image_messages(path: str | Path, topic: str, *, rgb: bool = False) -> Iterator[ImageMessage]:
    """Every Image / CompressedImage message of one topic, decoded, in log-time order.

    Args:
        path: bag folder (or a single ``.mcap`` / ``.db3`` file).
        topic: the topic to read.
        rgb: convert each picture to HxWx3 uint8 RGB (refused for ``32FC1``); by default arrays keep the
            message layout (HxW for mono8 / 32FC1).

    Raises:
        BagError: unreadable or corrupt bag, or a malformed image.
    """
    path = Path(path)
    for name, msgtype, log_time, message in iter_messages(path, [topic]):
        encoding, array = _decode(path, name, msgtype, message, rgb)
        yield ImageMessage(
            topic=name,
            msgtype=msgtype,
            stamp_ns=_stamp_ns(message),
            log_time_ns=log_time,
            frame_id=str(message.header.frame_id),
            encoding=encoding,
            array=array,
        )


def read_bag(
    path: str | Path,
    *,
    image_topic: str = IMAGE_TOPIC,
    gt_topic: str = OOD_GT_TOPIC,
    semantic_topic: str = SEMANTIC_TOPIC,
) -> Iterator[BagFrame]:
    """Frames of a bag: each image with the ground truth and semantic maps carrying the same stamp.

    Frames come in stamp order of their images. Ground truth without an image is dropped; an image
    whose partners never arrive is yielded with ``ood_gt`` / ``semantic`` None. Memory stays bounded:
    at most a few stamps wait for partners.

    Raises:
        BagError: unreadable or corrupt bag, a malformed image, or a label map whose size differs from
            its image.
    """
    path = Path(path)
    names: list[str] = []
    sequences: list[str] = []
    label_space = CITYSCAPES.name
    mount = None
    if path.is_dir():
        info = bag_info(path)
        names, label_space, sequences, mount = info.frame_names, info.label_space, info.frame_sequences, \
            info.camera_mount
    pending: dict[int, dict[str, Any]] = {}
    emitted = 0

    def finish(stamp: int) -> BagFrame | None:
        nonlocal emitted
        parts = pending.pop(stamp)
        if "image" not in parts:
            return None
        image = parts["image"]
        for key in ("ood_gt", "semantic"):
            labels = parts.get(key)
            if labels is not None and (labels.ndim != 2 or labels.shape != image.shape[:2]):
                raise BagError(
                    f"bag {path}: {key} at stamp {stamp} is {labels.shape}, its image {image.shape}"
                )
        view = None
        if mount is not None and "odom" in parts and "camera_info" in parts:
            view = CameraView(parts["camera_info"], mount[0], mount[1], parts["odom"] @ mount_pose(*mount))
        frame = BagFrame(
            stamp_ns=stamp,
            image=image,
            ood_gt=parts.get("ood_gt"),
            semantic=parts.get("semantic"),
            frame_id=parts.get("frame_id", ""),
            index=emitted,
            name=names[emitted] if emitted < len(names) else "",
            label_space=label_space,
            sequence=sequences[emitted] if emitted < len(sequences) else "",
            view=view,
        )
        emitted += 1
        return frame

    roles = {image_topic: "image", gt_topic: "ood_gt", semantic_topic: "semantic"}
    if mount is not None:
        roles.update({CAMERA_INFO_TOPIC: "camera_info", ODOMETRY_TOPIC: "odom"})
    present = {role for topic, role in roles.items() if topic in _topics_in(path)}
    for topic, msgtype, _, message in iter_messages(path, roles):
        role = roles[topic]
        stamp = _stamp_ns(message)
        parts = pending.setdefault(stamp, {})
        if role == "camera_info":
            parts[role] = _intrinsics(message)
        elif role == "odom":
            parts[role] = _pose(path, message)
        else:
            parts[role] = _decode(path, topic, msgtype, message, rgb=role == "image")[1]
        if role == "image":
            parts["frame_id"] = str(message.header.frame_id)
        # A complete frame releases itself and every older stamp (whose partners, in log-time order,
        # are not coming); the size bound covers bags whose partners never arrive at all.
        ready = [s for s in sorted(pending) if s <= stamp] if present <= parts.keys() else []
        while len(pending) - len(ready) > _PENDING_LIMIT:
            ready.append(min(s for s in pending if s not in ready))
        for done in sorted(ready):
            frame = finish(done)
            if frame is not None:
                yield frame
    for stamp in sorted(pending):
        frame = finish(stamp)
        if frame is not None:
            yield frame


def _intrinsics(message: Any) -> tuple[float, float, float, float]:
    k = [float(v) for v in message.k]
    return k[0], k[4], k[2], k[5]


def _pose(path: Path, message: Any) -> np.ndarray:
    pose = message.pose.pose
    try:
        return pose_matrix((pose.position.x, pose.position.y, pose.position.z),
                           (pose.orientation.x, pose.orientation.y, pose.orientation.z, pose.orientation.w))
    except ValueError as error:
        raise BagError(f"bag {path}, topic {ODOMETRY_TOPIC}: {error}") from None


def _topics_in(path: Path) -> set[str]:
    reader = _open_reader(path)
    try:
        return {connection.topic for connection in reader.connections}
    finally:
        reader.close()
