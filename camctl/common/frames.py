"""The frame records that flow through the pipeline: camera -> encoder -> store.

:class:`Frame` is what a camera backend yields (raw pixels or an already-encoded JPEG);
:class:`EncodedFrame` is what the store takes (always a JPEG, tagged with the phase it was taken in
and its value for the full-disk policy).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import IntEnum

import numpy as np

__all__ = ["EncodedFrame", "Frame", "FrameValue"]


class FrameValue(IntEnum):
    """How much a frame is worth when space or bandwidth runs out (higher is kept longer).

    Idle ARMED frames go first, then thinned frames of fast cameras, descent and touchdown frames
    last.
    """

    IDLE = 0  # ARMED ring frames that were never promoted, post-LANDED leftovers
    PRETRIGGER = 1  # ring frames flushed at the first descent event
    DESCENT = 2  # live descent frames
    TOUCHDOWN = 3  # the phase the whole test exists for
    STILL = 4  # stills at chosen events (video size, or the full sensor: config still_size)


@dataclass(slots=True)
class Frame:
    """One frame from a camera backend.

    ``image`` is an ``HxWx3`` ``uint8`` RGB array, or ``None`` when the backend already produced
    ``jpeg`` or ``yuv420``. ``yuv420`` is a lores frame as planar I420 ``(Y, U, V)``: ``Y`` is
    ``HxW``, ``U`` and ``V`` are ``H/2 x W/2`` (even ``W``/``H``), ``uint8``, full-range BT.601 as
    JPEG (JFIF) expects; views are fine. ``timestamp_ns`` is the sensor timestamp on
    ``CLOCK_MONOTONIC``; ``seq`` the sensor's own sequence number (gaps mean the sensor dropped
    frames).

    ``release`` set means the pixels are *lent*: ``image`` (or ``yuv420``) is a view of the
    backend's own capture buffer (a libcamera request, a sensor buffer), not a copy, so no 6 MB copy
    per 1080p frame. The buffer is the camera's until ``release()`` is called, exactly once, when
    nothing reads the pixels any more (the capture runner does it after encoding or dropping the
    frame); until then the camera has one buffer less to capture into. A backend lends only while it
    has buffers to spare and copies otherwise, so a slow encoder costs copies, never sensor frames.
    ``release`` is ``None`` for frames the caller owns.

    ``mode_switch`` marks a still the camera took by switching the sensor to another mode and back
    (``still_size = "full"``): the video paused for it.
    """

    camera: str
    seq: int
    timestamp_ns: int
    image: np.ndarray | None = None
    jpeg: bytes | None = None
    width: int = 0
    height: int = 0
    exposure_us: int = 0
    analogue_gain: float = 1.0
    frame_duration_us: int = 0
    still: bool = False
    yuv420: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
    release: Callable[[], None] | None = None
    mode_switch: bool = False

    def __post_init__(self) -> None:
        if self.image is not None and not self.width:
            self.height, self.width = int(self.image.shape[0]), int(self.image.shape[1])
        elif self.yuv420 is not None and not self.width:
            self.height, self.width = int(self.yuv420[0].shape[0]), int(self.yuv420[0].shape[1])


@dataclass(slots=True)
class EncodedFrame:
    """A JPEG frame ready for the store."""

    camera: str
    seq: int
    timestamp_ns: int
    jpeg: bytes
    width: int
    height: int
    phase: str
    value: int = int(FrameValue.DESCENT)
    exposure_us: int = 0
    analogue_gain: float = 1.0
    still: bool = False
    meta: dict = field(default_factory=dict)

    @property
    def size(self) -> int:
        return len(self.jpeg)
