"""Raw sensor_msgs/Image-style buffers decode to RGB; bad images and intrinsics are refused."""
from __future__ import annotations

import numpy as np
import pytest

from glopro_ros.perception.image_io import InputError, check_rgb, decode_image, intrinsics_matrix

RGB = np.random.default_rng(0).integers(0, 255, (40, 50, 3), dtype=np.uint8)


def _padded(img: np.ndarray, pad: int = 6) -> tuple[bytes, int]:
    rows = img.reshape(img.shape[0], -1)
    step = rows.shape[1] + pad
    buf = np.zeros((img.shape[0], step), np.uint8)
    buf[:, : rows.shape[1]] = rows
    return buf.tobytes(), step


@pytest.mark.parametrize("encoding,make", [
    ("rgb8", lambda x: x), ("bgr8", lambda x: x[:, :, ::-1]),
    ("rgba8", lambda x: np.dstack([x, np.full(x.shape[:2], 7, np.uint8)])),
    ("bgra8", lambda x: np.dstack([x[:, :, ::-1], np.full(x.shape[:2], 7, np.uint8)])),
])
def test_colour_encodings_with_row_padding(encoding, make) -> None:
    data, step = _padded(np.ascontiguousarray(make(RGB)))
    out = decode_image(data, 50, 40, step, encoding)
    np.testing.assert_array_equal(out, RGB)


def test_mono8_becomes_grey_rgb() -> None:
    grey = RGB[:, :, 0].copy()
    out = decode_image(grey.tobytes(), 50, 40, 50, "mono8")
    assert out.shape == (40, 50, 3)
    np.testing.assert_array_equal(out[:, :, 2], grey)


@pytest.mark.parametrize("args,match", [
    ((RGB.tobytes(), 50, 40, 150, "yuv422"), "unsupported image encoding"),
    ((RGB.tobytes(), 10, 8, 30, "rgb8"), "too small"),
    ((RGB.tobytes()[:100], 50, 40, 150, "rgb8"), "buffer has 100 bytes"),
    ((RGB.tobytes(), 50, 40, 100, "rgb8"), "step 100 is smaller"),
    ((b"", 0, 0, 0, "rgb8"), "too small"),
])
def test_bad_images_raise_clear_errors(args, match) -> None:
    with pytest.raises(InputError, match=match):
        decode_image(*args)


def test_check_rgb_refuses_wrong_arrays() -> None:
    with pytest.raises(InputError, match="HxWx3"):
        check_rgb(np.zeros((40, 50), np.uint8))
    with pytest.raises(InputError, match="uint8"):
        check_rgb(np.zeros((40, 50, 3), np.float32))
    with pytest.raises(InputError, match="too small"):
        check_rgb(np.zeros((0, 0, 3), np.uint8))


@pytest.mark.parametrize("k,match", [
    (None, "missing"), ([0.0] * 9, "non-positive focal"), ([1.0] * 4, "9 finite"),
    ([500, 0, 2000, 0, 500, 240, 0, 0, 1], "principal point"),
    ([np.nan, 0, 320, 0, 500, 240, 0, 0, 1], "9 finite"),
])
def test_bad_intrinsics_are_refused(k, match) -> None:
    with pytest.raises(InputError, match=match):
        intrinsics_matrix(k, 640, 480)


def test_camera_info_k_is_accepted() -> None:
    k = intrinsics_matrix([537.0, 0, 320.7, 0, 537.6, 227.7, 0, 0, 1], 640, 480)
    assert k.shape == (3, 3) and k[0, 0] == 537.0
