"""The full-disk policy: which frames to drop as free space runs out.

``store.reserve_mb`` (``R``) is the free space, *above what finishing the flight needs*, below which
the store starts shedding its least valuable frames. What finishing needs (``F``: the summary and
footer of every open segment, the event log's room, ``index.json``) is computed by the store as it
writes and passed to :meth:`QuotaPolicy.update` as ``need``; frames stop entirely before the free
space reaches it, so a flight always lands with every file finished. Levels (free space ``free``,
``room = free - F``):

=========  =====================  ==========================================================
level      when                   dropped at put()
=========  =====================  ==========================================================
OK         room >= R              nothing
LOW        room < R               IDLE frames (value 0)
THIN       room < R/2             also every other frame of the camera with the highest rate
CRITICAL   room < R/4             everything below DESCENT (keep values >= 2)
FLOOR      room < 0               everything (with R = 0: as soon as room < 0)
=========  =====================  ==========================================================

The writer thread calls :meth:`QuotaPolicy.update` with a fresh ``statvfs`` reading (at most every
``check_interval_s``); :meth:`QuotaPolicy.admit` runs on the caller's thread in ``put()`` and makes
no system call. Stills (value 4) are never thinned.

Example::

    >>> q = QuotaPolicy(reserve_mb=512)
    >>> q.update(100 << 20, now=1.0, need=2 << 20)        # 100 MB free, 2 MB to finish: below R/4
    (<QuotaLevel.OK: 0>, <QuotaLevel.CRITICAL: 3>)
    >>> q.update(1 << 20, now=2.0, need=2 << 20)          # less than finishing needs: no more frames
    (<QuotaLevel.CRITICAL: 3>, <QuotaLevel.FLOOR: 4>)
"""

from __future__ import annotations

from enum import IntEnum

from camctl.common.frames import EncodedFrame, FrameValue

__all__ = ["QuotaLevel", "QuotaPolicy"]

_MB = 1 << 20


class QuotaLevel(IntEnum):
    OK = 0
    LOW = 1
    THIN = 2
    CRITICAL = 3
    FLOOR = 4


class QuotaPolicy:
    """Decides per frame whether the store still has room for it. Not thread-safe: call under a
    lock."""

    def __init__(self, reserve_mb: float) -> None:
        self.reserve_bytes = int(reserve_mb * _MB)
        self.need_bytes = 0  # what finishing needs, from the last update()
        self.level = QuotaLevel.OK
        self.free_bytes: int | None = None
        self.thin_camera: str | None = None
        self._counts: dict[str, int] = {}
        self._last_update: float | None = None
        self._toggle: dict[str, bool] = {}

    def __repr__(self) -> str:
        return f"<QuotaPolicy level={self.level.name} free={self.free_bytes} thin={self.thin_camera}>"

    def level_for(self, free: int, need: int = 0) -> QuotaLevel:
        """The level for ``free`` bytes free when finishing needs ``need`` bytes."""
        r, room = self.reserve_bytes, free - need
        if room < 0:
            return QuotaLevel.FLOOR
        if room < r / 4:
            return QuotaLevel.CRITICAL
        if room < r / 2:
            return QuotaLevel.THIN
        if room < r:
            return QuotaLevel.LOW
        return QuotaLevel.OK

    def update(self, free: int, *, now: float, need: int = 0) -> tuple[QuotaLevel, QuotaLevel] | None:
        """Take a new free-space reading (and what finishing needs); return (old, new) on a change,
        else None."""
        self.free_bytes = free
        self.need_bytes = need
        if self._counts:
            self.thin_camera = max(self._counts, key=lambda c: self._counts[c])
        self._counts = {}
        self._last_update = now
        old, self.level = self.level, self.level_for(free, need)
        return (old, self.level) if old != self.level else None

    def admit(self, frame: EncodedFrame) -> bool:
        """True if the frame may be queued at the current level (counts the camera's rate either
        way)."""
        return self.admit_value(frame.camera, frame.value)

    def admit_value(self, source: str, value: int) -> bool:
        """True if a record of ``source`` worth ``value`` may be queued now (counts its rate)."""
        cam = source
        self._counts[cam] = self._counts.get(cam, 0) + 1
        level = self.level
        if level == QuotaLevel.OK:
            return True
        if level == QuotaLevel.FLOOR:
            return False
        if level >= QuotaLevel.CRITICAL:
            return value >= FrameValue.DESCENT
        if value <= FrameValue.IDLE:
            return False
        if level == QuotaLevel.THIN and cam == self.thin_camera and value < FrameValue.STILL:
            keep = self._toggle[cam] = not self._toggle.get(cam, False)
            return keep
        return True
