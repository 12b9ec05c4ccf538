# Copyright 2026 The ood_seg_node developers. Licensed under the Apache License, Version 2.0.
"""Image message fields <-> numpy: every encoding, row padding, byte order, and each malformed case."""

from __future__ import annotations

import array

import numpy as np
import pytest

from ood_seg_node.encodings import (
    ImageEncodingError,
    array_to_image_fields,
    decode_image,
    image_to_array,
    infer_encoding,
)

RNG = np.random.default_rng(0)
RGB = RNG.integers(0, 256, (5, 7, 3), dtype=np.uint8)


@pytest.mark.parametrize(
    ("encoding", "native"),
    [
        ("rgb8", RGB),
        ("bgr8", RGB[:, :, ::-1]),
        ("rgba8", np.dstack([RGB, np.full((5, 7), 9, np.uint8)])),
        ("bgra8", np.dstack([RGB[:, :, ::-1], np.full((5, 7), 9, np.uint8)])),
    ],
)
def test_colour_encodings_round_trip_to_rgb(encoding, native):
    fields = array_to_image_fields(np.ascontiguousarray(native), encoding)
    assert (fields.height, fields.width, fields.encoding) == (5, 7, encoding)
    assert fields.step == 7 * native.shape[2] and len(fields.data) == fields.step * 5
    decoded = decode_image(fields.encoding, fields.height, fields.width, fields.step, fields.data)
    np.testing.assert_array_equal(decoded, native)
    rgb = image_to_array(fields.encoding, fields.height, fields.width, fields.step, fields.data)
    np.testing.assert_array_equal(rgb, RGB)


def test_mono8_decodes_to_2d_and_to_grey_rgb():
    mono = RGB[:, :, 0].copy()
    fields = array_to_image_fields(mono)
    assert fields.encoding == "mono8"
    np.testing.assert_array_equal(decode_image("mono8", 5, 7, 7, fields.data), mono)
    rgb = image_to_array("mono8", 5, 7, 7, fields.data)
    assert rgb.shape == (5, 7, 3) and (rgb == mono[:, :, None]).all()


def test_mono16_keeps_most_significant_byte_in_rgb():
    mono = np.array([[0x1234, 0xFF00]], dtype=np.uint16)
    fields = array_to_image_fields(mono)
    assert fields.encoding == "mono16" and fields.step == 4
    np.testing.assert_array_equal(decode_image("mono16", 1, 2, 4, fields.data), mono)
    np.testing.assert_array_equal(image_to_array("mono16", 1, 2, 4, fields.data)[0, :, 0], [0x12, 0xFF])


def test_32fc1_little_and_big_endian():
    score = RNG.normal(size=(3, 4)).astype(np.float32)
    fields = array_to_image_fields(score)
    assert fields.encoding == "32FC1" and fields.step == 16 and fields.is_bigendian == 0
    np.testing.assert_array_equal(decode_image("32FC1", 3, 4, 16, fields.data), score)
    big = score.astype(">f4").tobytes()
    decoded = decode_image("32FC1", 3, 4, 16, big, is_bigendian=1)
    assert decoded.dtype == np.float32 and decoded.dtype.isnative
    np.testing.assert_array_equal(decoded, score)
    with pytest.raises(ImageEncodingError, match="32FC1 is a float map"):
        image_to_array("32FC1", 3, 4, 16, fields.data)


def test_padded_rows_are_cropped():
    step = 7 * 3 + 5
    padded = np.zeros((5, step), np.uint8)
    padded[:, : 7 * 3] = RGB.reshape(5, -1)
    np.testing.assert_array_equal(image_to_array("rgb8", 5, 7, step, padded.tobytes()), RGB)


@pytest.mark.parametrize("buffer", [bytes, bytearray, memoryview, lambda b: array.array("B", b), list])
def test_accepts_every_buffer_kind_ros_bindings_use(buffer):
    data = buffer(RGB.tobytes()) if buffer is not list else list(RGB.tobytes())
    np.testing.assert_array_equal(image_to_array("rgb8", 5, 7, 21, data), RGB)


def test_decoded_array_does_not_alias_the_message():
    data = bytearray(RGB.tobytes())
    decoded = image_to_array("rgb8", 5, 7, 21, data)
    data[0] ^= 0xFF
    assert decoded[0, 0, 0] == RGB[0, 0, 0]


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (("yuv422", 5, 7, 14, b"\0" * 70), "unsupported image encoding 'yuv422'; supported: rgb8"),
        (("rgb8", 0, 7, 21, b""), "zero size"),
        (("mono8", 5, 0, 0, b""), "zero size"),
        (("rgb8", 5, 7, 20, b"\0" * 100), "step 20 is smaller than width \\* pixel size = 21"),
        (("rgb8", 5, 7, 21, b"\0" * 104), "truncated: 104 data bytes, step \\* height = 105"),
        (("mono8", 5, 7, 7, b"\0" * 36), "more than step \\* height = 35"),
        (("32FC1", 2, 2, 8, b"\0" * 15), "truncated"),
    ],
)
def test_malformed_messages_raise_one_line(args, match):
    with pytest.raises(ImageEncodingError, match=match) as error:
        decode_image(*args)
    assert "\n" not in str(error.value)


def test_encoding_refuses_mismatched_arrays():
    with pytest.raises(ImageEncodingError, match="mono8 needs a HxW uint8 array"):
        array_to_image_fields(RGB, "mono8")
    with pytest.raises(ImageEncodingError, match="rgb8 needs a HxWx3 uint8"):
        array_to_image_fields(RGB.astype(np.float32), "rgb8")
    with pytest.raises(ImageEncodingError, match="zero size"):
        array_to_image_fields(np.zeros((0, 4), np.uint8), "mono8")
    with pytest.raises(ImageEncodingError, match="no image encoding"):
        infer_encoding(np.zeros((2, 2), np.int64))
    with pytest.raises(ImageEncodingError, match="unsupported"):
        array_to_image_fields(RGB, "jpeg")
