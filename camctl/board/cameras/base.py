"""The camera backend contract every backend implements (sim, picamera2, test fakes).

A backend is built closed, opened with :meth:`Camera.open`, then yields frames from
:meth:`Camera.capture`, which blocks until the next frame at the current rate or raises a
:class:`~camctl.exc.CameraError` subclass (timeout, disconnect, any backend failure). The capture
thread owns restarts: on an error it calls :meth:`close`, waits, and calls :meth:`open` again.
"""

from __future__ import annotations

import abc
from typing import Self

from camctl.common.frames import Frame
from camctl.common.lifecycle import Closeable

__all__ = ["Camera"]


class Camera(Closeable):
    """Abstract camera: a subclass supplies the backend and :meth:`capture`.

    Subclasses must override :meth:`_open_backend`, :meth:`_close_backend` and :meth:`capture`.

    ``close()`` is safe to call twice; a camera is a context manager.
    """

    def __init__(self, name: str, *, size: tuple[int, int], fps: float) -> None:
        self.name = name
        self.size = (int(size[0]), int(size[1]))  # (width, height)
        self._fps = float(fps)
        self._open = False

    # -- lifecycle ---------------------------------------------------------------------------------
    def prepare(self) -> None:
        """One-time work before the first open (at daemon start, not at arm). Default: nothing."""
        return None

    def open(self) -> None:
        """Acquire the device and start streaming at the current rate."""
        if not self._open:
            self._open_backend()
            self._open = True

    def close(self) -> None:
        """Stop streaming and release the device. Safe to call twice, and after a failed open."""
        if self._open:
            self._open = False
            self._close_backend()

    @property
    def closed(self) -> bool:
        return not self._open  # built closed, and reopened by the capture thread after a failure

    def __enter__(self) -> Self:
        self.open()
        return self

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"open, {self._fps:g} fps"
        return f"<{type(self).__name__} {self.name!r} {self.size[0]}x{self.size[1]} {state}>"

    # -- rate --------------------------------------------------------------------------------------
    @property
    def fps(self) -> float:
        return self._fps

    def set_fps(self, fps: float) -> None:
        """Change the frame rate from the next frame on; backends may override it to reconfigure."""
        if fps <= 0:
            raise ValueError(f"fps must be > 0, got {fps}")
        self._fps = float(fps)

    # -- frames ------------------------------------------------------------------------------------
    @abc.abstractmethod
    def capture(self, timeout_s: float = 1.0) -> Frame:
        """Block until the next frame and return it, or raise a CameraError subclass."""

    # -- lores stream ------------------------------------------------------------------------------
    @property
    def supports_lores(self) -> bool:
        """Whether this camera can deliver its own lores stream (``Frame.yuv420``). Default: no."""
        return False

    def set_lores(self, enabled: bool) -> bool:
        """Switch to the lores stream (``enabled``) or back to the main one, from the next frame on.

        Thread-safe. Returns ``False`` when the camera has no lores stream (the capture runner then
        decimates the main frames itself), ``True`` when the request is honoured. Default:
        ``False``.
        """
        return False

    def recycle(self, image: object) -> None:
        """Take back a frame's pixels once they are encoded; backends with a buffer pool reuse them
        (fresh multi-MB buffers cost page faults on every frame). Default: let it go."""
        return None

    @property
    def full_stills(self) -> bool:
        """Whether :meth:`capture_still` takes the whole sensor by a mode switch now (the video
        pauses for it: config ``still_size = "full"``), not a frame of the running stream at the
        video size. Default: no."""
        return False

    def capture_still(self, timeout_s: float = 2.0) -> Frame:
        """Take one still: at the video size from the running stream, or the whole sensor by a
        mode switch where :attr:`full_stills` (that frame has ``mode_switch`` set). Default: the
        next video frame marked as a still."""
        frame = self.capture(timeout_s)
        frame.still = True
        return frame

    @abc.abstractmethod
    def _open_backend(self) -> None: ...

    @abc.abstractmethod
    def _close_backend(self) -> None: ...
