"""Pixel formats of the picamera2 backend: a main stream as RGB, a YUV420 stream as I420 planes.

- Colour order: libcamera names formats by their 32-bit word order, so picamera2's ``"BGR888"``
  arrives in memory as R, G, B (and ``"RGB888"`` as B, G, R). We ask for ``"BGR888"`` and get RGB
  with no copy; :func:`to_rgb` still handles ``RGB888``/``XBGR8888``/``XRGB8888`` should a stream
  come back in one.
- A YUV420 ``make_array`` (the lores stream; the main stream on the hardware path) is shaped
  ``(h * 3 // 2, stride)`` and holds I420 planes one after the other: ``h`` rows of Y at ``stride``
  bytes, then ``h/2`` rows of U and ``h/2`` of V at ``stride/2`` bytes (picamera2's own JPEG path
  for YUV420 splits it the same way), so the planes are views cropped to the size
  (:func:`split_i420`).
- The video colour space picamera2 picks (``Smpte170m`` below 1280x720, ``Rec709`` above) is
  limited range, while JPEG (JFIF) means full range: :func:`full_range` expands the planes with a
  256-entry table (a fraction of a millisecond at lores sizes). The Rec709 matrix is not converted
  to BT.601: at 720p and up a lores frame's hues are off by a few percent.
"""

from __future__ import annotations

import numpy as np

__all__ = ["LORES_FORMAT", "MAIN_FORMAT", "Planes", "full_range", "split_i420", "to_rgb"]

MAIN_FORMAT = "BGR888"  # R, G, B bytes in memory (see the module docstring)
LORES_FORMAT = "YUV420"  # the only lores format a Pi 4 ISP gives; JPEG encodes it as it is

Planes = tuple[np.ndarray, np.ndarray, np.ndarray]
"""The ``(Y, U, V)`` planes of an I420 image."""


def to_rgb(array: np.ndarray, fmt: str) -> np.ndarray:
    """Pixels of a picamera2 ``make_array`` in format ``fmt`` as ``HxWx3`` RGB (a view when
    possible)."""
    if fmt == "BGR888":  # memory order R, G, B
        return array
    if fmt == "RGB888":  # memory order B, G, R
        return np.ascontiguousarray(array[..., ::-1])
    if fmt == "XBGR8888":  # R, G, B, 255
        return np.ascontiguousarray(array[..., :3])
    if fmt == "XRGB8888":  # B, G, R, 255
        return np.ascontiguousarray(array[..., 2::-1])
    raise ValueError(f"unsupported stream format {fmt!r}")


def split_i420(array: np.ndarray, size: tuple[int, int], stride: int) -> Planes:
    """The ``(Y, U, V)`` planes (views, padding cropped) of a picamera2 YUV420 ``make_array``.

    ``array`` is ``(h * 3 // 2, stride)`` uint8: Y is ``h`` rows of ``stride`` bytes, then U and V
    are ``h/2`` rows of ``stride/2`` bytes each. ``size`` is ``(w, h)``, both even.
    """
    w, h = size
    if w % 2 or h % 2 or stride < w or stride % 2:
        raise ValueError(f"not an I420 layout: size {w}x{h}, stride {stride}")
    if array.dtype != np.uint8 or array.size < h * stride * 3 // 2:
        raise ValueError(f"I420 {w}x{h} stride {stride} needs {h * stride * 3 // 2} bytes, got "
                         f"array {array.shape} {array.dtype}")
    flat = array.reshape(-1)
    cs, ch = stride // 2, h // 2
    y = flat[: h * stride].reshape(h, stride)[:, :w]
    u = flat[h * stride: h * stride + ch * cs].reshape(ch, cs)[:, : w // 2]
    v = flat[h * stride + ch * cs: h * stride + 2 * ch * cs].reshape(ch, cs)[:, : w // 2]
    return y, u, v


def _range_lut(lo: int, hi: int, mid: int | None) -> np.ndarray:
    x = np.arange(256, dtype=np.float64)
    out = (x - lo) * 255.0 / (hi - lo) if mid is None else (x - mid) * 255.0 / (hi - lo) + 128.0
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


_LUMA_FULL = _range_lut(16, 235, None)  # limited (video) range -> full (JFIF) range
_CHROMA_FULL = _range_lut(16, 240, 128)


def full_range(planes: Planes) -> Planes:
    """Limited-range I420 planes -> new contiguous full-range planes (what JPEG decoders assume)."""
    y, u, v = planes
    return np.take(_LUMA_FULL, y), np.take(_CHROMA_FULL, u), np.take(_CHROMA_FULL, v)
