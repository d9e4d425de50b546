"""The full-disk policy: which frames to drop as free space runs out.

``store.reserve_mb`` (``R``) is the free space, above what finishing the flight needs (``F``, passed
to :meth:`QuotaPolicy.update` as ``need``), below which the store sheds its least valuable frames,
level by level (:class:`QuotaLevel`: OK, LOW, THIN, CRITICAL, FLOOR); frames stop entirely before
the free space reaches ``F``, so a flight always lands with every file finished. The writer thread
calls :meth:`QuotaPolicy.update` with fresh ``statvfs`` readings; :meth:`QuotaPolicy.admit` runs in
``put()`` and makes no system call. Stills are never thinned. The levels' table: docs/store.md.

Example::

    >>> q = QuotaPolicy(reserve_mb=512)
    >>> q.update(100 << 20, now=1.0, need=2 << 20)   # 100 MB free, 2 MB to finish: below R/4
    (<QuotaLevel.OK: 0>, <QuotaLevel.CRITICAL: 3>)
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
        return (f"<QuotaPolicy level={self.level.name} free={self.free_bytes} "
                f"thin={self.thin_camera}>")

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

    def update(self, free: int, *, now: float,
               need: int = 0) -> tuple[QuotaLevel, QuotaLevel] | None:
        """Take a free-space reading (and what finishing needs): (old, new) on a change or None."""
        self.free_bytes = free
        self.need_bytes = need
        if self._counts:
            self.thin_camera = max(self._counts, key=lambda c: self._counts[c])
        self._counts = {}
        self._last_update = now
        old, self.level = self.level, self.level_for(free, need)
        return (old, self.level) if old != self.level else None

    def admit(self, frame: EncodedFrame) -> bool:
        """True if the frame may be queued at this level (counts the camera's rate either way)."""
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
