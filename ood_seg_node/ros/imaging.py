# Copyright 2026 The ood_seg_node developers. Licensed under the Apache License, Version 2.0.
"""sensor_msgs Image / CompressedImage <-> numpy, for the node's two ROS edges.

Incoming images become HxWx3 uint8 RGB (what :class:`ood_seg_node.pipeline.Pipeline` takes); results go
out as ``mono8``, ``rgb8`` and ``32FC1`` Images carrying the input's header (the RViz overlay included).
The byte-level decoding and its validation (unknown encoding, zero size, bad step, truncated data) live
in the ROS-free :mod:`ood_seg_node.encodings`, so a malformed message is refused with the same one-line
:class:`ImageEncodingError` whether or not cv_bridge is installed.

cv_bridge is optional: where a real ROS install provides a working one, it decodes the encodings the
own decoder does not know (Bayer, YUV, 16-bit colour, ...). The own decoder stays first for the
common encodings because it validates every field and needs no compiled ROS package.
"""

from __future__ import annotations

from typing import Any, Sequence

import cv2
import numpy as np
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header

from ood_seg_node.encodings import (
    COLOR_ENCODINGS,
    DEFAULT_MAX_INPUT_PIXELS,
    ImageEncodingError,
    array_to_image_fields,
    check_input_size,
    decode_compressed,
    image_to_array,
)
from ood_seg_node.obstacles import Obstacle

__all__ = [
    "INPUT_ENCODINGS",
    "ImageEncodingError",
    "array_to_image_msg",
    "compressed_msg_to_rgb",
    "image_msg_to_rgb",
    "msg_to_rgb",
    "overlay_anomalies",
]

INPUT_ENCODINGS: tuple[str, ...] = COLOR_ENCODINGS
"""Encodings decoded without cv_bridge; others need a working cv_bridge."""


class _CvBridge:
    """Lazily imported cv_bridge, used only if it imports *and* converts a probe image correctly.

    A cv_bridge built against another numpy or Python (a common state of mixed installs) imports but
    fails at the first conversion; probing once keeps that failure out of the frame path.
    """

    def __init__(self) -> None:
        self._bridge: Any = None
        self._probed = False

    def get(self) -> Any:
        if not self._probed:
            self._probed = True
            try:
                from cv_bridge import CvBridge  # a ROS distribution package, absent from pip installs

                bridge = CvBridge()
                probe = Image(height=1, width=2, encoding="bgr8", step=6, data=bytes([1, 2, 3, 4, 5, 6]))
                converted = bridge.imgmsg_to_cv2(probe, desired_encoding="rgb8")
                if converted.shape == (1, 2, 3) and converted[0, 0].tolist() == [3, 2, 1]:
                    self._bridge = bridge
            except Exception:  # any failure just means "no usable cv_bridge"
                self._bridge = None
        return self._bridge


_CV_BRIDGE = _CvBridge()


def stamp_ns(header: Header) -> int:
    """A header's stamp in integer nanoseconds: the key outputs and ground truth are paired by."""
    return header.stamp.sec * 1_000_000_000 + header.stamp.nanosec


def cv_bridge_available() -> bool:
    """Whether a working cv_bridge extends the input encodings beyond :data:`INPUT_ENCODINGS`."""
    return _CV_BRIDGE.get() is not None


def image_msg_to_rgb(msg: Image, *, max_pixels: int = DEFAULT_MAX_INPUT_PIXELS) -> np.ndarray:
    """Decode a sensor_msgs/Image to an HxWx3 uint8 RGB array (owning its memory).

    Raises:
        ImageEncodingError: a declared size over ``max_pixels``, unknown encoding (and no cv_bridge that
            knows it), zero width or height, step smaller than a row, data shorter or longer than
            ``height * step``.
    """
    check_input_size(msg.width, msg.height, max_pixels, f"{msg.encoding or 'image'} image")
    if msg.encoding not in INPUT_ENCODINGS:
        bridge = _CV_BRIDGE.get()
        if bridge is not None and msg.encoding and msg.width > 0 and msg.height > 0:
            try:
                rgb = bridge.imgmsg_to_cv2(msg, desired_encoding="rgb8")
            except Exception as error:  # cv_bridge raises its own and numpy errors
                raise ImageEncodingError(
                    f"cannot convert {msg.encoding} image {msg.width}x{msg.height} with cv_bridge: "
                    f"{str(error).splitlines()[0] if str(error) else type(error).__name__}"
                ) from None
            return np.array(rgb, dtype=np.uint8, copy=True)
        if msg.encoding == "32FC1":
            raise ImageEncodingError("32FC1 is a float map, not a colour image; input needs one of "
                                     f"{', '.join(INPUT_ENCODINGS)}")
        raise ImageEncodingError(
            f"unsupported image encoding {msg.encoding!r}; supported: {', '.join(INPUT_ENCODINGS)}"
        )
    return image_to_array(
        msg.encoding, msg.height, msg.width, msg.step, msg.data, is_bigendian=msg.is_bigendian
    )


def compressed_msg_to_rgb(msg: CompressedImage, *, max_pixels: int = DEFAULT_MAX_INPUT_PIXELS) -> np.ndarray:
    """Decode a sensor_msgs/CompressedImage (JPEG, PNG, ...) to HxWx3 uint8 RGB.

    Raises:
        ImageEncodingError: empty data, a ``compressedDepth`` map, a declared size over ``max_pixels``,
            or bytes that do not decode (see :func:`ood_seg_node.encodings.decode_compressed`).
    """
    fmt = str(msg.format)
    if "compressedDepth" in fmt:
        raise ImageEncodingError(f"compressed image format {fmt!r} is a depth map, not a colour image")
    return decode_compressed(msg.data, fmt, max_pixels=max_pixels)


def msg_to_rgb(msg: Image | CompressedImage, *, max_pixels: int = DEFAULT_MAX_INPUT_PIXELS) -> np.ndarray:
    """Either kind of image message -> HxWx3 uint8 RGB (see the two functions above)."""
    if isinstance(msg, CompressedImage):
        return compressed_msg_to_rgb(msg, max_pixels=max_pixels)
    return image_msg_to_rgb(msg, max_pixels=max_pixels)


def array_to_image_msg(array: np.ndarray, encoding: str, header: Header) -> Image:
    """Pack an array into a sensor_msgs/Image with ``header`` (the input's stamp and frame_id).

    Args:
        array: HxW uint8 for ``mono8``, HxWx3 uint8 RGB for ``rgb8``, HxW float32 for ``32FC1``.
        encoding: the output encoding.
        header: copied onto the message.

    Raises:
        ImageEncodingError: the array's shape or dtype does not fit ``encoding``.
    """
    fields = array_to_image_fields(array, encoding)
    msg = Image(header=header, **fields.layout())
    msg.data = fields.data  # assigned, not passed: bytes go in without a per-element check
    return msg


def overlay_anomalies(
    rgb: np.ndarray, mask: np.ndarray, obstacles: Sequence[Obstacle] = (), alpha: float = 0.5
) -> np.ndarray:
    """The input with anomalous pixels tinted red and obstacle boxes drawn in yellow, for RViz.

    Args:
        rgb: HxWx3 uint8 RGB input.
        mask: HxW bool anomaly mask.
        obstacles: boxes to outline.
        alpha: tint strength in [0, 1].
    """
    out = rgb.copy()
    if alpha > 0.0 and mask.any():
        # whole-image SIMD blend then a masked copy: 10x faster than gathering the masked pixels at 1024x2048
        red = np.zeros_like(rgb)
        red[..., 0] = 255
        tinted = cv2.addWeighted(rgb, 1.0 - alpha, red, alpha, 0.0)
        cv2.copyTo(tinted, np.ascontiguousarray(mask).view(np.uint8) if mask.dtype == bool
                   else mask.astype(np.uint8), out)
    thickness = max(1, round(min(rgb.shape[:2]) / 300))  # visible at 1024x2048 and at 64x128 alike
    for obstacle in obstacles:
        cv2.rectangle(out, (obstacle.x0, obstacle.y0), (obstacle.x1 - 1, obstacle.y1 - 1), (255, 255, 0),
                      thickness)
    return out
