# Copyright 2026 The ood_seg_node developers. Licensed under the Apache License, Version 2.0.
"""sensor_msgs/Image field layouts <-> numpy, in pure numpy.

The ROS node (through rclpy messages) and the bag tools (through rosbags messages) both see an image as
the same five fields: ``encoding``, ``height``, ``width``, ``step`` and ``data``. Decoding and encoding
them lives here, once, with no ROS import, so both ends validate the same way and a malformed message
produces one clear :class:`ImageEncodingError` instead of a numpy reshape traceback.

Supported encodings (sensor_msgs/image_encodings.hpp names): ``rgb8``, ``bgr8``, ``rgba8``, ``bgra8``,
``mono8`` (alias ``8UC1``), ``mono16`` (alias ``16UC1``) and ``32FC1``.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image as PILImage
from PIL import UnidentifiedImageError


class ImageEncodingError(ValueError):
    """An image message cannot be decoded or an array cannot be encoded (the message says why)."""


@dataclass(frozen=True)
class _Layout:
    channels: int
    dtype: np.dtype


_LAYOUTS: dict[str, _Layout] = {
    "rgb8": _Layout(3, np.dtype(np.uint8)),
    "bgr8": _Layout(3, np.dtype(np.uint8)),
    "rgba8": _Layout(4, np.dtype(np.uint8)),
    "bgra8": _Layout(4, np.dtype(np.uint8)),
    "mono8": _Layout(1, np.dtype(np.uint8)),
    "8UC1": _Layout(1, np.dtype(np.uint8)),
    "mono16": _Layout(1, np.dtype(np.uint16)),
    "16UC1": _Layout(1, np.dtype(np.uint16)),
    "32FC1": _Layout(1, np.dtype(np.float32)),
}

SUPPORTED_ENCODINGS: tuple[str, ...] = tuple(_LAYOUTS)
"""Every encoding :func:`decode_image` accepts."""

DEFAULT_MAX_INPUT_PIXELS = 64_000_000
"""Frames declaring more pixels are refused before decoding (a 64 MP frame is 8x a 4K camera's)."""

COLOR_ENCODINGS: tuple[str, ...] = ("rgb8", "bgr8", "rgba8", "bgra8", "mono8", "8UC1", "mono16", "16UC1")
"""Encodings :func:`image_to_array` can turn into an RGB picture."""


@dataclass(frozen=True)
class ImageFields:
    """The layout fields of a sensor_msgs/msg/Image, ready to copy onto a message of any ROS binding."""

    encoding: str
    height: int
    width: int
    step: int
    is_bigendian: int
    data: bytes

    def layout(self) -> dict[str, int | str]:
        """Every field but ``data``, as keyword arguments of an Image message in any ROS binding."""
        return {"height": self.height, "width": self.width, "encoding": self.encoding,
                "is_bigendian": self.is_bigendian, "step": self.step}


def _layout(encoding: str) -> _Layout:
    try:
        return _LAYOUTS[encoding]
    except KeyError:
        raise ImageEncodingError(
            f"unsupported image encoding {encoding!r}; supported: {', '.join(SUPPORTED_ENCODINGS)}"
        ) from None


def _as_bytes(data: object) -> np.ndarray:
    """View any buffer (bytes, bytearray, memoryview, array.array, uint8 ndarray, list) as flat uint8."""
    if isinstance(data, np.ndarray):
        return data.reshape(-1).view(np.uint8) if data.dtype != np.uint8 else data.reshape(-1)
    try:
        return np.frombuffer(memoryview(data).cast("B"), dtype=np.uint8)  # type: ignore[arg-type]
    except TypeError:
        # rclpy may hand out plain Python sequences for uint8[] fields when built without numpy support.
        try:
            return np.asarray(data, dtype=np.uint8).reshape(-1)
        except (TypeError, ValueError):
            kind = type(data).__name__
            raise ImageEncodingError(f"image data of type {kind} is not a byte buffer") from None


def decode_image(
    encoding: str, height: int, width: int, step: int, data: object, *, is_bigendian: int | bool = False
) -> np.ndarray:
    """Decode image message fields to an array in the message's own layout (no colour conversion).

    Args:
        encoding: the message encoding, one of :data:`SUPPORTED_ENCODINGS`.
        height: rows.
        width: columns.
        step: bytes per row, at least ``width * channels * itemsize`` (rows may be padded).
        data: the ``height * step`` bytes of the message.
        is_bigendian: byte order of multi-byte encodings (``mono16``, ``32FC1``).

    Returns:
        HxW for one-channel encodings (uint8, uint16 or float32), HxWxC uint8 otherwise, in native
        byte order. The array owns its memory (it does not alias ``data``).

    Raises:
        ImageEncodingError: unknown encoding, zero size, step too small or misaligned, data truncated or
            longer than ``height * step``.
    """
    layout = _layout(encoding)
    height, width, step = int(height), int(width), int(step)
    if height <= 0 or width <= 0:
        raise ImageEncodingError(f"{encoding} image has zero size ({width}x{height})")
    row_bytes = width * layout.channels * layout.dtype.itemsize
    if step < row_bytes:
        raise ImageEncodingError(
            f"{encoding} image {width}x{height}: step {step} is smaller than width * pixel size = {row_bytes}"
        )
    flat = _as_bytes(data)
    expected = step * height
    if flat.size < expected:
        raise ImageEncodingError(
            f"{encoding} image {width}x{height} truncated: {flat.size} data bytes, step * height = {expected}"
        )
    if flat.size > expected:
        raise ImageEncodingError(
            f"{encoding} image {width}x{height}: {flat.size} data bytes, more than step * height = {expected}"
        )
    rows = flat.reshape(height, step)[:, :row_bytes]
    dtype = layout.dtype
    if dtype.itemsize > 1:
        dtype = dtype.newbyteorder(">" if is_bigendian else "<")
    pixels = np.ascontiguousarray(rows).view(dtype).astype(layout.dtype, copy=True)
    if layout.channels == 1:
        return pixels.reshape(height, width)
    return pixels.reshape(height, width, layout.channels)


def image_to_array(
    encoding: str, height: int, width: int, step: int, data: object, *, is_bigendian: int | bool = False
) -> np.ndarray:
    """Decode image message fields to an HxWx3 uint8 RGB picture.

    Colour encodings are reordered to RGB (alpha dropped); mono8 is replicated to three channels; mono16
    keeps its 8 most significant bits.

    Raises:
        ImageEncodingError: as :func:`decode_image`, and for ``32FC1`` (a score map, not a picture).
    """
    if encoding == "32FC1":
        raise ImageEncodingError("32FC1 is a float map, not a colour image; decode it with decode_image()")
    pixels = decode_image(encoding, height, width, step, data, is_bigendian=is_bigendian)
    if encoding == "rgb8":
        return pixels
    if encoding in ("bgr8", "bgra8"):
        return np.ascontiguousarray(pixels[:, :, 2::-1])
    if encoding == "rgba8":
        return np.ascontiguousarray(pixels[:, :, :3])
    if pixels.dtype == np.uint16:
        pixels = (pixels >> 8).astype(np.uint8)
    return np.repeat(pixels[:, :, None], 3, axis=2)


def infer_encoding(array: np.ndarray) -> str:
    """The encoding an array is published with when none is given: mono8, rgb8, rgba8, mono16 or 32FC1."""
    if array.ndim == 2:
        by_dtype = {np.dtype(np.uint8): "mono8", np.dtype(np.uint16): "mono16", np.dtype(np.float32): "32FC1"}
        if array.dtype in by_dtype:
            return by_dtype[array.dtype]
    elif array.ndim == 3 and array.dtype == np.uint8 and array.shape[2] in (3, 4):
        return "rgb8" if array.shape[2] == 3 else "rgba8"
    raise ImageEncodingError(f"no image encoding for an array of shape {array.shape} and dtype {array.dtype}")


def array_to_image_fields(array: np.ndarray, encoding: str | None = None) -> ImageFields:
    """Encode an array into image message fields, without colour conversion.

    Args:
        array: HxW (one channel) or HxWxC, already in the layout of ``encoding`` (an RGB array for
            ``rgb8``, a BGR array for ``bgr8``, float32 for ``32FC1``, ...).
        encoding: target encoding; inferred from shape and dtype when None (see :func:`infer_encoding`).

    Returns:
        Tightly packed little-endian fields (``step = width * pixel size``).

    Raises:
        ImageEncodingError: unknown encoding, zero size, or an array whose shape/dtype does not match.
    """
    array = np.asarray(array)
    if encoding is None:
        encoding = infer_encoding(array)
    layout = _layout(encoding)
    expected_ndim = 2 if layout.channels == 1 else 3
    if (
        array.ndim != expected_ndim
        or (layout.channels > 1 and array.shape[2] != layout.channels)
        or array.dtype != layout.dtype
    ):
        shape = "HxW" if layout.channels == 1 else f"HxWx{layout.channels}"
        raise ImageEncodingError(
            f"{encoding} needs a {shape} {layout.dtype} array, got shape {array.shape} dtype {array.dtype}"
        )
    height, width = int(array.shape[0]), int(array.shape[1])
    if height == 0 or width == 0:
        raise ImageEncodingError(f"{encoding} image has zero size ({width}x{height})")
    packed = np.ascontiguousarray(array, dtype=layout.dtype.newbyteorder("<"))
    return ImageFields(
        encoding=encoding,
        height=height,
        width=width,
        step=width * layout.channels * layout.dtype.itemsize,
        is_bigendian=0,
        data=packed.tobytes(),
    )


def check_input_size(width: int, height: int, max_pixels: int, what: str = "image") -> None:
    """Refuse a frame whose declared size exceeds ``max_pixels``, before any memory is spent on it."""
    pixels = int(width) * int(height)
    if pixels > max_pixels:
        raise ImageEncodingError(
            f"{what} declares {width}x{height} = {pixels / 1e6:.1f} MP, more than max_input_pixels "
            f"{max_pixels} ({max_pixels / 1e6:g} MP); refused"
        )


def decode_compressed(data: object, fmt: str = "", *, max_pixels: int = DEFAULT_MAX_INPUT_PIXELS) -> np.ndarray:
    """Decode compressed image bytes (JPEG, PNG, ... as a CompressedImage carries them) to HxWx3 uint8 RGB.

    The size the header declares is read first and checked against ``max_pixels``, so a tiny file that
    declares 100000x100000 pixels (a decompression bomb) is refused without being decoded. JPEG is
    decoded by Pillow: OpenCV's libjpeg prints "Corrupt JPEG data" warnings straight to stderr, one per
    frame and past any log throttle, where Pillow recovers silently; a truncated JPEG is refused.

    Raises:
        ImageEncodingError: no data, a declared size over ``max_pixels``, or bytes that do not decode.
    """
    buffer = _as_bytes(data)
    label = f"compressed image ({fmt or 'no format'}, {buffer.size} bytes)"
    if buffer.size == 0:
        raise ImageEncodingError(f"compressed image ({fmt or 'no format'}) has no data")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PILImage.DecompressionBombWarning)
        try:
            picture = PILImage.open(io.BytesIO(buffer.tobytes()))
        except PILImage.DecompressionBombError:
            raise ImageEncodingError(f"{label} declares more pixels than the decoder allows; refused") from None
        except (UnidentifiedImageError, OSError, ValueError):
            picture = None  # a format Pillow does not know: OpenCV's decoder (and its own size limit) decides
        if picture is not None:
            check_input_size(*picture.size, max_pixels, label)
            if picture.format == "JPEG":
                try:
                    return np.asarray(picture.convert("RGB")).copy()
                except (OSError, ValueError) as error:
                    raise ImageEncodingError(f"cannot decode {label}: {error}") from None
    # IMREAD_COLOR gives 8-bit BGR for every input (grey, 16-bit and alpha PNGs included).
    bgr = cv2.imdecode(buffer, cv2.IMREAD_COLOR)
    if bgr is None or bgr.size == 0:
        raise ImageEncodingError(f"cannot decode {label}")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
