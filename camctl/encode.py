"""The JPEG encoder pool: simplejpeg on a few threads (it releases the GIL while it encodes).

Capture threads submit raw RGB frames (or planar I420 from a camera's lores stream) and get futures back;
each capture thread keeps its own futures in order, so the pool can run frames of several cameras side by side
without reordering any camera's stream.

Example::

    >>> import numpy as np
    >>> with EncoderPool(threads=2) as pool:
    ...     jpeg = pool.submit(np.zeros((64, 64, 3), np.uint8), quality=85).result()
    >>> jpeg[:2] == b"\\xff\\xd8"
    True
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np
import simplejpeg

__all__ = ["EncoderPool", "encode_jpeg", "encode_jpeg_yuv420"]


def encode_jpeg(image: np.ndarray, quality: int = 85, *, colorspace: str = "RGB") -> bytes:
    """Encode one ``HxWx3`` uint8 frame the way the board does (4:2:0, like camera hardware encoders)."""
    if not image.flags.c_contiguous:
        image = np.ascontiguousarray(image)
    return simplejpeg.encode_jpeg(image, quality=quality, colorspace=colorspace, colorsubsampling="420",
                                  fastdct=True)


def encode_jpeg_yuv420(y: np.ndarray, u: np.ndarray, v: np.ndarray, quality: int = 85) -> bytes:
    """Encode planar I420 (``y`` HxW, ``u``/``v`` H/2 x W/2, full-range BT.601) straight to a 4:2:0 JPEG:
    no colour conversion and no chroma subsampling to do, so it costs less CPU than :func:`encode_jpeg`.
    Strided views (a camera buffer's padding cropped off) are fine."""
    h, w = y.shape[:2]
    if y.ndim != 2 or u.shape != ((h + 1) // 2, (w + 1) // 2) or v.shape != u.shape:
        raise ValueError(f"not I420 planes: Y {y.shape}, U {u.shape}, V {v.shape}")
    return simplejpeg.encode_jpeg_yuv_planes(y, u, v, quality=quality, fastdct=True)


class EncoderPool:
    """A fixed pool of encoder threads shared by all cameras of a board."""

    def __init__(self, threads: int = 2) -> None:
        if threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        self.threads = threads
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="camctl-encode")
        self._closed = False

    def submit(self, image: np.ndarray, quality: int = 85, *, colorspace: str = "RGB") -> Future[bytes]:
        return self._pool.submit(encode_jpeg, image, quality, colorspace=colorspace)

    def submit_yuv(self, planes: tuple[np.ndarray, np.ndarray, np.ndarray], quality: int = 85) -> Future[bytes]:
        """Encode an I420 ``(Y, U, V)`` frame (see :func:`encode_jpeg_yuv420`) on the pool."""
        y, u, v = planes
        return self._pool.submit(encode_jpeg_yuv420, y, u, v, quality)

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._pool.shutdown(wait=True, cancel_futures=False)

    def __enter__(self) -> EncoderPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<EncoderPool {self.threads} threads{' closed' if self._closed else ''}>"
