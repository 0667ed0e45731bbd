"""Decode sensor_msgs/Image-style raw buffers to RGB arrays, and check camera intrinsics.

No ROS import: the node passes msg.data, width, height, step and encoding through. Anything the
perception stage cannot use (too small, unknown encoding, short buffer, zero focal length) raises
InputError with a message meant for one log line, so no measurement is made from nonsense.
"""
from __future__ import annotations

import numpy as np

MIN_SIDE = 32  # pixels; below this no person can be resolved by the 224/256 px models
# encoding -> (channels, dtype)
_ENCODINGS: dict[str, tuple[int, np.dtype]] = {
    "rgb8": (3, np.dtype(np.uint8)), "bgr8": (3, np.dtype(np.uint8)),
    "rgba8": (4, np.dtype(np.uint8)), "bgra8": (4, np.dtype(np.uint8)),
    "mono8": (1, np.dtype(np.uint8)), "8uc1": (1, np.dtype(np.uint8)),
    "8uc3": (3, np.dtype(np.uint8)),  # OpenCV convention: BGR
    "mono16": (1, np.dtype(np.uint16)),
}
SUPPORTED_ENCODINGS = tuple(_ENCODINGS)


class InputError(ValueError):
    """Input the perception stage refuses (the message says why)."""


def decode_image(data: bytes | bytearray | memoryview | np.ndarray, width: int, height: int,
                 step: int, encoding: str, is_bigendian: bool = False) -> np.ndarray:
    """Raw sensor_msgs/Image fields -> (height, width, 3) uint8 RGB (a copy)."""
    enc = encoding.strip().lower()
    if enc not in _ENCODINGS:
        raise InputError(f"unsupported image encoding {encoding!r}; "
                         f"supported: {', '.join(SUPPORTED_ENCODINGS)}")
    channels, dtype = _ENCODINGS[enc]
    if width < MIN_SIDE or height < MIN_SIDE:
        raise InputError(f"image {width}x{height} is too small (min {MIN_SIDE} px per side)")
    row = width * channels * dtype.itemsize
    if step < row:
        raise InputError(f"image step {step} is smaller than width*channels*bytes = {row}")
    buf = (data.reshape(-1).view(np.uint8) if isinstance(data, np.ndarray)
           else np.frombuffer(data, dtype=np.uint8))
    if buf.size < step * height:
        raise InputError(f"image buffer has {buf.size} bytes, expected step*height = "
                         f"{step * height}")
    rows = buf[: step * height].reshape(height, step)[:, :row]
    dt = dtype.newbyteorder(">" if is_bigendian else "<") if dtype.itemsize > 1 else dtype
    img = np.ascontiguousarray(rows).view(dt).reshape(height, width, channels)
    if enc == "mono16":
        img = (img.astype(np.float32) * (255.0 / max(float(img.max()), 1.0))).astype(np.uint8)
    if channels == 1:
        return np.repeat(img, 3, axis=2)
    if enc in ("bgr8", "bgra8", "8uc3"):
        return np.ascontiguousarray(img[:, :, 2::-1])
    return np.ascontiguousarray(img[:, :, :3])


def check_rgb(image: np.ndarray) -> np.ndarray:
    """Validate an already decoded HxWx3 uint8 RGB array (as used by the offline tools)."""
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3:
        raise InputError(f"expected an HxWx3 RGB array, got {getattr(image, 'shape', type(image))}")
    if image.dtype != np.uint8:
        raise InputError(f"expected uint8 pixels, got {image.dtype}")
    h, w = image.shape[:2]
    if w < MIN_SIDE or h < MIN_SIDE:
        raise InputError(f"image {w}x{h} is too small (min {MIN_SIDE} px per side)")
    return np.ascontiguousarray(image)


def intrinsics_matrix(k: np.ndarray | list[float] | None, width: int, height: int) -> np.ndarray:
    """3x3 K from a CameraInfo.k-style 9-vector or 3x3; refuses missing, zero or absurd values."""
    if k is None:
        raise InputError("camera intrinsics are missing (no CameraInfo received yet?)")
    mat = np.asarray(k, dtype=np.float64).reshape(-1)
    if mat.size != 9 or not np.all(np.isfinite(mat)):
        raise InputError(f"camera intrinsics must be 9 finite numbers, got {mat.size} values")
    mat = mat.reshape(3, 3)
    fx, fy, cx, cy = mat[0, 0], mat[1, 1], mat[0, 2], mat[1, 2]
    if fx <= 0 or fy <= 0:
        raise InputError(f"camera intrinsics have non-positive focal length fx={fx} fy={fy} "
                         "(uncalibrated camera?)")
    if not (0 <= cx <= width and 0 <= cy <= height):
        raise InputError(f"principal point ({cx}, {cy}) lies outside the {width}x{height} image")
    return mat
