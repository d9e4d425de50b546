"""The JPEG encoder pool: simplejpeg on a few threads (it releases the GIL while it encodes).

Capture threads submit raw RGB frames (or planar I420 from a camera's lores stream) and get futures
back, each keeping its own in order, so no camera's stream is reordered. Built with ``capacity``,
the pool drops by value on overload: a lower-value frame always goes before a higher-value one (a
cancelled future: ``encoder_behind``); without it nothing is dropped. ``nice`` puts the encoder
threads below the board's latency work. docs/phases-and-gpio.md, section "Encoder pool", has the
overload rule and the priority in full.

Example::

    >>> import numpy as np
    >>> with EncoderPool(threads=2) as pool:
    ...     jpeg = pool.submit(np.zeros((64, 64, 3), np.uint8), quality=85).result()
    >>> jpeg[:2] == b"\\xff\\xd8"
    True
"""

from __future__ import annotations

import itertools
import logging
import os
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np
import simplejpeg

__all__ = ["EncoderPool", "encode_jpeg", "encode_jpeg_yuv420"]

log = logging.getLogger("camctl.board.encode")


def encode_jpeg(image: np.ndarray, quality: int = 85, *, colorspace: str = "RGB") -> bytes:
    """Encode one ``HxWx3`` uint8 frame as the board does (4:2:0, like camera hardware encoders)."""
    if not image.flags.c_contiguous:
        image = np.ascontiguousarray(image)
    return simplejpeg.encode_jpeg(image, quality=quality, colorspace=colorspace,
                                  colorsubsampling="420", fastdct=True)


def encode_jpeg_yuv420(y: np.ndarray, u: np.ndarray, v: np.ndarray, quality: int = 85) -> bytes:
    """Encode planar I420 (``y`` HxW, ``u``/``v`` H/2 x W/2, full-range BT.601) straight to a 4:2:0
    JPEG: no colour conversion and no chroma subsampling to do, so it costs less CPU than
    :func:`encode_jpeg`. Strided views (a camera buffer's padding cropped off) are fine."""
    h, w = y.shape[:2]
    if y.ndim != 2 or u.shape != ((h + 1) // 2, (w + 1) // 2) or v.shape != u.shape:
        raise ValueError(f"not I420 planes: Y {y.shape}, U {u.shape}, V {v.shape}")
    return simplejpeg.encode_jpeg_yuv_planes(y, u, v, quality=quality, fastdct=True)


def _lower_priority(nice: int) -> None:
    """Run as each encoder thread starts: raise its nice value by ``nice`` (module docstring)."""
    try:
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + nice))
    except (OSError, AttributeError) as exc:  # not Linux: the encoders keep the caller's priority
        log.debug("cannot lower the encoder threads' priority: %s", exc)


class _Waiting:
    """A job not started yet: what value it has, when it came, its future (set once submitted)."""

    __slots__ = ("future", "order", "value")

    def __init__(self, value: int, order: int) -> None:
        self.value = value
        self.order = order
        self.future: Future | None = None


class EncoderPool:
    """Encoder threads shared by all cameras of a board (value-ordered with ``capacity``)."""

    def __init__(self, threads: int = 2, *, capacity: int | None = None, nice: int = 0) -> None:
        if threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        if capacity is not None and capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        if not 0 <= nice <= 19:
            raise ValueError(f"nice must be 0..19 (a lower priority than the caller's), got {nice}")
        self.threads = threads
        self.capacity = capacity
        self.nice = nice
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="camctl-encode",
                                        initializer=_lower_priority if nice else None,
                                        initargs=(nice,))
        self._closed = False
        # RLock: cancel() runs done-callbacks on the cancelling thread
        self._lock = threading.RLock()
        self._waiting: dict[int, _Waiting] = {}  # by order
        self._order = itertools.count()
        self.evicted = 0  # waiting frames pushed out by a frame of higher value
        self.refused = 0  # frames refused because nothing waiting was worth less

    def submit(self, image: np.ndarray, quality: int = 85, *, colorspace: str = "RGB",
               value: int = 2) -> Future[bytes]:
        """Encode an RGB frame; ``value`` is its :class:`~camctl.common.frames.FrameValue`.

        See the overload rule in the module docstring."""
        return self.run(encode_jpeg, image, quality, colorspace=colorspace, value=value)

    def submit_yuv(self, planes: tuple[np.ndarray, np.ndarray, np.ndarray], quality: int = 85, *,
                   value: int = 2) -> Future[bytes]:
        """Encode an I420 ``(Y, U, V)`` frame (see :func:`encode_jpeg_yuv420`) on the pool."""
        y, u, v = planes
        return self.run(encode_jpeg_yuv420, y, u, v, quality, value=value)

    def run(self, fn: Callable[..., Any], *args: Any, value: int = 2, **kwargs: Any) -> Future:
        """Run ``fn`` on an encoder thread under the same value-ordered admission as a frame."""
        if self.capacity is None:
            return self._pool.submit(fn, *args, **kwargs)
        with self._lock:
            if len(self._waiting) >= self.capacity and not self._evict_below(value):
                self.refused += 1
                refused: Future = Future()
                refused.cancel()
                return refused
            job = _Waiting(value, next(self._order))
            self._waiting[job.order] = job
            fut = self._pool.submit(self._start, job, fn, args, kwargs)
            job.future = fut
        fut.add_done_callback(lambda _f, order=job.order: self._forget(order))
        return fut

    def _start(self, job: _Waiting, fn: Callable[..., Any], args: tuple, kwargs: dict) -> Any:
        self._forget(job.order)  # running: no longer a frame that can be pushed out
        return fn(*args, **kwargs)

    def _forget(self, order: int) -> None:
        with self._lock:
            self._waiting.pop(order, None)

    def make_room(self, value: int) -> bool:
        """Push out the oldest waiting job of the lowest value under ``value`` (as a full pool does
        for a newcomer); False when nothing waiting is worth less. A camera at its own in-flight
        limit asks this before it refuses a frame (camctl.board.pipeline)."""
        if self.capacity is None:
            return False
        with self._lock:
            return self._evict_below(value)

    def _evict_below(self, value: int) -> bool:
        """Cancel the oldest waiting job of the lowest value under ``value``; False if none."""
        while True:
            low = min(self._waiting.values(), key=lambda j: (j.value, j.order), default=None)
            if low is None or low.value >= value:
                return False
            del self._waiting[low.order]
            if low.future is not None and low.future.cancel():
                self.evicted += 1
                return True
            # it started between the check and the cancel: it is not waiting any more; look again

    @property
    def waiting(self) -> int:
        """Jobs queued and not started (only counted with ``capacity``)."""
        with self._lock:
            return len(self._waiting)

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
