"""The full-disk policy: which frames to drop as free space runs out below ``store.reserve_mb``.

Levels (free space ``free``, reserve ``R``):

=========  =====================  ==========================================================
level      when                   dropped at put()
=========  =====================  ==========================================================
OK         free >= R              nothing
LOW        free < R               IDLE frames (value 0)
THIN       free < R/2             also every other frame of the camera with the highest rate
CRITICAL   free < R/4             everything below DESCENT (keep values >= 2)
FLOOR      free < R/16            everything
=========  =====================  ==========================================================

The writer thread calls :meth:`QuotaPolicy.update` with a fresh ``statvfs`` reading (at most every
``check_interval_s``); :meth:`QuotaPolicy.admit` runs on the caller's thread in ``put()`` and makes no
system call. Stills (value 4) are never thinned.

Example::

    >>> q = QuotaPolicy(reserve_mb=512)
    >>> q.update(100 << 20, now=1.0)        # 100 MB free: below R/4
    (<QuotaLevel.OK: 0>, <QuotaLevel.CRITICAL: 3>)
"""

from __future__ import annotations

from enum import IntEnum

from camctl.frames import EncodedFrame, FrameValue

__all__ = ["QuotaLevel", "QuotaPolicy"]

_MB = 1 << 20


class QuotaLevel(IntEnum):
    OK = 0
    LOW = 1
    THIN = 2
    CRITICAL = 3
    FLOOR = 4


class QuotaPolicy:
    """Decides per frame whether the store still has room for it. Not thread-safe: call under a lock."""

    def __init__(self, reserve_mb: float, *, floor_mb: float | None = None) -> None:
        self.reserve_bytes = int(reserve_mb * _MB)
        self.floor_bytes = int((reserve_mb / 16 if floor_mb is None else floor_mb) * _MB)
        self.level = QuotaLevel.OK
        self.free_bytes: int | None = None
        self.thin_camera: str | None = None
        self._counts: dict[str, int] = {}
        self._last_update: float | None = None
        self._toggle: dict[str, bool] = {}

    def __repr__(self) -> str:
        return f"<QuotaPolicy level={self.level.name} free={self.free_bytes} thin={self.thin_camera}>"

    def level_for(self, free: int) -> QuotaLevel:
        r = self.reserve_bytes
        if r <= 0:
            return QuotaLevel.OK
        if free < self.floor_bytes:
            return QuotaLevel.FLOOR
        if free < r / 4:
            return QuotaLevel.CRITICAL
        if free < r / 2:
            return QuotaLevel.THIN
        if free < r:
            return QuotaLevel.LOW
        return QuotaLevel.OK

    def update(self, free: int, *, now: float) -> tuple[QuotaLevel, QuotaLevel] | None:
        """Take a new free-space reading; return (old, new) when the level changed, else None."""
        self.free_bytes = free
        if self._counts:
            self.thin_camera = max(self._counts, key=lambda c: self._counts[c])
        self._counts = {}
        self._last_update = now
        old, self.level = self.level, self.level_for(free)
        return (old, self.level) if old != self.level else None

    def admit(self, frame: EncodedFrame) -> bool:
        """True if the frame may be queued at the current level (counts the camera's rate either way)."""
        cam = frame.camera
        self._counts[cam] = self._counts.get(cam, 0) + 1
        level = self.level
        if level == QuotaLevel.OK:
            return True
        if level == QuotaLevel.FLOOR:
            return False
        if level >= QuotaLevel.CRITICAL:
            return frame.value >= FrameValue.DESCENT
        if frame.value <= FrameValue.IDLE:
            return False
        if level == QuotaLevel.THIN and cam == self.thin_camera and frame.value < FrameValue.STILL:
            keep = self._toggle[cam] = not self._toggle.get(cam, False)
            return keep
        return True
