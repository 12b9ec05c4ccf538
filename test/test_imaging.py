# Copyright 2026 The ood_seg_node developers. Licensed under the Apache License, Version 2.0.
"""sensor_msgs Image / CompressedImage <-> numpy for the node, with and without cv_bridge."""

from __future__ import annotations

import struct
import sys
import types
import zlib

import cv2
import numpy as np
import pytest
from ros_helpers import compressed_msg, image_msg, rgb_in_encoding
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header

from ood_seg_node.obstacles import Obstacle
from ood_seg_node.ros import imaging
from ood_seg_node.ros.imaging import (
    ImageEncodingError,
    array_to_image_msg,
    compressed_msg_to_rgb,
    image_msg_to_rgb,
    msg_to_rgb,
    overlay_anomalies,
)

RGB = np.random.default_rng(0).integers(0, 256, (6, 10, 3), dtype=np.uint8)


@pytest.mark.parametrize("encoding", ["rgb8", "bgr8", "rgba8", "bgra8"])
def test_colour_encodings_decode_to_the_same_rgb(encoding):
    decoded = image_msg_to_rgb(image_msg(RGB, encoding, 1, "cam"))
    assert decoded.dtype == np.uint8 and decoded.shape == RGB.shape
    np.testing.assert_array_equal(decoded, RGB)


def test_mono8_is_replicated_to_three_channels():
    grey = rgb_in_encoding(RGB, "mono8")
    decoded = image_msg_to_rgb(image_msg(RGB, "mono8", 1, "cam"))
    np.testing.assert_array_equal(decoded, np.repeat(grey[:, :, None], 3, axis=2))


def test_padded_rows_are_honoured():
    msg = image_msg(RGB, "bgr8", 1, "cam")
    rows = np.frombuffer(bytes(msg.data), np.uint8).reshape(6, 30)
    msg.step = 32  # two padding bytes per row, as some drivers align rows
    msg.data = np.concatenate([rows, np.full((6, 2), 7, np.uint8)], axis=1).tobytes()
    np.testing.assert_array_equal(image_msg_to_rgb(msg), RGB)


def test_decoded_array_does_not_alias_the_message():
    msg = image_msg(RGB, "rgb8", 1, "cam")
    decoded = image_msg_to_rgb(msg)
    decoded[:] = 0
    np.testing.assert_array_equal(image_msg_to_rgb(msg), RGB)


def _broken(kind: str) -> Image:
    msg = image_msg(RGB, "rgb8", 1, "cam")
    if kind == "truncated":
        msg.data = bytes(msg.data)[:-1]
    elif kind == "zero":
        msg.width = msg.height = msg.step = 0
        msg.data = b""
    elif kind == "encoding":
        msg.encoding = "no_such_encoding"
    elif kind == "step":
        msg.step = 10 * 3 - 1
    elif kind == "float":
        msg.encoding = "32FC1"
    return msg


@pytest.mark.parametrize(
    ("kind", "words"),
    [
        ("truncated", "truncated"),
        ("zero", "zero size"),
        ("encoding", "no_such_encoding"),
        ("step", "step"),
        ("float", "32FC1"),
    ],
)
def test_malformed_image_raises_one_clear_error(kind, words):
    with pytest.raises(ImageEncodingError) as raised:
        image_msg_to_rgb(_broken(kind))
    assert words in str(raised.value) and "\n" not in str(raised.value)


def test_unknown_encoding_error_lists_the_supported_ones():
    with pytest.raises(ImageEncodingError, match="rgb8, bgr8, rgba8, bgra8, mono8"):
        image_msg_to_rgb(_broken("encoding"))


class _FakeBridge:
    def __init__(self, fail: bool = False) -> None:
        self.calls: list[str] = []
        self.fail = fail

    def imgmsg_to_cv2(self, msg: Image, desired_encoding: str) -> np.ndarray:
        self.calls.append(msg.encoding)
        if self.fail:
            raise TypeError("buffer is too small")
        assert desired_encoding == "rgb8"
        return np.zeros((msg.height, msg.width, 3), np.uint8)


def test_cv_bridge_extends_encodings_without_replacing_the_own_decoder(monkeypatch):
    fake = _FakeBridge()
    monkeypatch.setattr(imaging._CV_BRIDGE, "get", lambda: fake)
    msg = image_msg(RGB, "rgb8", 1, "cam")
    np.testing.assert_array_equal(image_msg_to_rgb(msg), RGB)  # own decoder: validated, no cv_bridge
    msg.encoding = "yuv422"
    assert image_msg_to_rgb(msg).shape == (6, 10, 3)
    assert fake.calls == ["yuv422"]
    with pytest.raises(ImageEncodingError, match="zero size"):  # validation still ours
        image_msg_to_rgb(_broken("zero"))


def test_cv_bridge_failure_becomes_an_image_encoding_error(monkeypatch):
    monkeypatch.setattr(imaging._CV_BRIDGE, "get", lambda: _FakeBridge(fail=True))
    msg = image_msg(RGB, "rgb8", 1, "cam")
    msg.encoding = "bayer_rggb8"
    with pytest.raises(ImageEncodingError, match="bayer_rggb8.*buffer is too small"):
        image_msg_to_rgb(msg)


class _ProbedBridge:
    def __init__(self, swap: bool) -> None:
        self.swap = swap

    def imgmsg_to_cv2(self, msg: Image, desired_encoding: str) -> np.ndarray:
        pixels = np.frombuffer(bytes(msg.data), np.uint8).reshape(msg.height, msg.width, 3)
        return pixels if not self.swap else pixels[:, :, ::-1]


@pytest.mark.parametrize(("works", "usable"), [(True, True), (False, False)])
def test_cv_bridge_is_used_only_if_its_probe_conversion_is_right(monkeypatch, works, usable):
    module = types.ModuleType("cv_bridge")
    module.CvBridge = lambda: _ProbedBridge(swap=works)  # a correct bgr8 -> rgb8 conversion swaps channels
    monkeypatch.setitem(sys.modules, "cv_bridge", module)
    assert (imaging._CvBridge().get() is not None) is usable


def test_missing_cv_bridge_is_not_an_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "cv_bridge", None)  # import raises ImportError
    assert imaging._CvBridge().get() is None


def test_png_compressed_image_is_lossless():
    np.testing.assert_array_equal(compressed_msg_to_rgb(compressed_msg(RGB, 1, "cam", "png")), RGB)


def test_jpeg_compressed_image_decodes_to_rgb_order():
    red = np.zeros((16, 16, 3), np.uint8)
    red[:, :, 0] = 255
    decoded = msg_to_rgb(compressed_msg(red, 1, "cam", "jpg"))
    assert decoded.shape == (16, 16, 3)
    assert decoded[:, :, 0].mean() > 200 and decoded[:, :, 2].mean() < 50


def test_grey_png_becomes_three_channels():
    ok, encoded = cv2.imencode(".png", RGB[:, :, 0])
    assert ok
    msg = CompressedImage(format="png", data=encoded.tobytes())
    np.testing.assert_array_equal(compressed_msg_to_rgb(msg), np.repeat(RGB[:, :, :1], 3, axis=2))


@pytest.mark.parametrize(
    ("msg", "words"),
    [
        (CompressedImage(format="jpeg", data=b""), "no data"),
        (CompressedImage(format="jpeg", data=b"not an image at all"), "cannot decode"),
        (CompressedImage(format="16UC1; compressedDepth png", data=b"\x00" * 16), "depth map"),
    ],
)
def test_bad_compressed_image_raises(msg, words):
    with pytest.raises(ImageEncodingError, match=words):
        compressed_msg_to_rgb(msg)


def _png_declaring(width: int, height: int) -> bytes:
    """A valid PNG header (IHDR) declaring ``width`` x ``height``, with no pixel data behind it."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IEND", b""))


def _jpeg_declaring(width: int, height: int) -> bytes:
    """A real 8x8 JPEG whose start-of-frame header is patched to declare ``width`` x ``height``."""
    data = bytearray(cv2.imencode(".jpg", np.zeros((8, 8, 3), np.uint8))[1].tobytes())
    sof = data.index(b"\xff\xc0")
    data[sof + 5:sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


@pytest.mark.parametrize("payload", [_png_declaring(100_000, 100_000), _jpeg_declaring(65_000, 65_000)],
                         ids=["png", "jpeg"])
def test_decompression_bomb_is_refused_by_its_declared_size(payload):
    assert len(payload) < 1000
    with pytest.raises(ImageEncodingError, match="more than max_input_pixels|more pixels than the decoder"):
        compressed_msg_to_rgb(CompressedImage(format="png", data=payload))


def test_declared_size_is_checked_against_the_limit():
    msg = compressed_msg(RGB, 1, "cam", "png")  # 10x6 = 60 pixels
    assert compressed_msg_to_rgb(msg, max_pixels=60).shape == RGB.shape
    with pytest.raises(ImageEncodingError, match="10x6 = 0.0 MP, more than max_input_pixels 59"):
        compressed_msg_to_rgb(msg, max_pixels=59)
    raw = image_msg(RGB, "rgb8", 1, "cam")
    assert image_msg_to_rgb(raw, max_pixels=60).shape == RGB.shape
    with pytest.raises(ImageEncodingError, match="rgb8 image declares 10x6"):
        msg_to_rgb(raw, max_pixels=59)


def test_corrupt_jpeg_decodes_without_writing_to_stderr(capfd):
    picture = np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    data = bytearray(cv2.imencode(".jpg", picture)[1].tobytes())
    middle = len(data) // 2
    data[middle:middle + 20] = b"\xff\xd0" * 10  # restart markers in the entropy-coded data
    assert cv2.imdecode(np.frombuffer(bytes(data), np.uint8), cv2.IMREAD_COLOR) is not None
    assert "Corrupt JPEG data" in capfd.readouterr().err  # what OpenCV's libjpeg does
    decoded = compressed_msg_to_rgb(CompressedImage(format="jpeg", data=bytes(data)))
    assert decoded.shape == picture.shape
    assert capfd.readouterr().err == ""


def test_truncated_jpeg_is_refused():
    data = cv2.imencode(".jpg", RGB)[1].tobytes()
    with pytest.raises(ImageEncodingError, match="cannot decode"):
        compressed_msg_to_rgb(CompressedImage(format="jpeg", data=data[: len(data) // 2]))


@pytest.mark.parametrize(
    ("array", "encoding", "itemsize", "channels"),
    [
        (np.arange(60, dtype=np.uint8).reshape(6, 10), "mono8", 1, 1),
        (RGB, "rgb8", 1, 3),
        (np.linspace(-1, 1, 60, dtype=np.float32).reshape(6, 10), "32FC1", 4, 1),
    ],
)
def test_output_messages_carry_header_and_layout(array, encoding, itemsize, channels):
    header = Header(frame_id="camera_optical")
    header.stamp.sec, header.stamp.nanosec = 42, 7
    msg = array_to_image_msg(array, encoding, header)
    assert (msg.header.stamp.sec, msg.header.stamp.nanosec, msg.header.frame_id) == (42, 7, "camera_optical")
    assert (msg.encoding, msg.height, msg.width, msg.step) == (encoding, 6, 10, 10 * itemsize * channels)
    assert msg.is_bigendian == 0
    restored = np.frombuffer(bytes(msg.data), dtype=array.dtype).reshape(array.shape)
    np.testing.assert_array_equal(restored, array)


def test_output_with_the_wrong_dtype_is_refused():
    with pytest.raises(ImageEncodingError, match="32FC1"):
        array_to_image_msg(np.zeros((4, 4), np.float64), "32FC1", Header())


def test_overlay_tints_only_anomalies():
    rgb = np.full((20, 30, 3), 100, np.uint8)
    mask = np.zeros((20, 30), bool)
    mask[5:10, 5:10] = True
    out = overlay_anomalies(rgb, mask, alpha=0.5)
    np.testing.assert_array_equal(out[~mask], rgb[~mask])
    assert out[mask][:, 0].min() > 150 and out[mask][:, 1].max() <= 50
    np.testing.assert_array_equal(overlay_anomalies(rgb, mask, alpha=0.0), rgb)
    assert rgb[0, 0].tolist() == [100, 100, 100]  # input untouched


def test_overlay_outlines_obstacles():
    rgb = np.zeros((20, 30, 3), np.uint8)
    mask = np.zeros((20, 30), bool)
    out = overlay_anomalies(rgb, mask, [Obstacle(4, 6, 12, 15, 72, 0.9, 1.0, (8.0, 10.0))])
    assert out[6, 4].tolist() == [255, 255, 0] and out[14, 11].tolist() == [255, 255, 0]
    assert out[10, 8].tolist() == [0, 0, 0]
