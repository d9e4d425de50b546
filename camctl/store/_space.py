"""The store's space accounting: free space, the room finishing needs, and the disk's error state.

:class:`SpaceBudget` reads ``statvfs`` at most every 0.1 s, estimates free space between readings
from what the store wrote since, feeds the :class:`~camctl.store.quota.QuotaPolicy` that sheds
records by value at ``put()``, and remembers a full disk (until space returns) or an I/O error
(retried after 1 s).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable

from camctl.common.records import QuotaRecord
from camctl.store.config import StoreConfig
from camctl.store.quota import QuotaPolicy
from camctl.store.reserve import BASE as RESERVE_BASE
from camctl.store.reserve import Reserve

__all__ = ["SpaceBudget", "statvfs_free"]

_MB = 1 << 20
_RESUME_MARGIN = (
    1 * _MB
)  # after ENOSPC, resume once this much more space is free than at the failure
_IO_RETRY_S = 1.0
_QUOTA_CHECK_S = 0.1
_EVENTS_ROOM = (
    1 * _MB
)  # the event log may still grow this much after frames stop (drop reports, landing)
_GROW_RETRY_S = 1.0  # a reserve that could not grow is tried again after this


def statvfs_free(path: object) -> Callable[[], int]:
    """A ``free_bytes()`` reading ``statvfs(path)`` (bytes available to an unprivileged writer)."""

    def free() -> int:
        st = os.statvfs(path)  # type: ignore[arg-type]
        return st.f_bavail * st.f_frsize

    return free


class SpaceBudget:
    """Free space and disk state for one store; writer thread only, but for :attr:`quota` (under
    ``lock``)."""

    def __init__(
        self,
        config: StoreConfig,
        free_bytes: Callable[[], int],
        *,
        lock: threading.Lock,
        clock: Callable[[], float],
        written: Callable[[], int],
        finish_need: Callable[[], int],
        reserve: Reserve | None = None,
    ) -> None:
        self.config = config
        self.free_bytes = free_bytes
        self.quota = QuotaPolicy(config.reserve_mb)
        self._lock = lock
        self._clock = clock
        self._written = written
        self.finish_need = finish_need
        self.full_free: int | None = None  # free bytes when the disk filled up (None: not full)
        self.io_retry_at = 0.0
        self._last_quota = float("-inf")
        self._free_at_check: int | None = None  # statvfs at the last quota check ...
        self._written_at_check = 0  # ... and what the store had written by then
        # the store's full-disk reserve (camctl.store.reserve) and its size at the last check
        self.reserve = reserve
        self.reserve_size = reserve.size() if reserve is not None else 0
        self._grow_at = 0.0

    def blocked(self, now: float) -> str:
        """Why nothing may be written now (``disk_full``, ``io_error``), or "" when writing may go
        on."""
        if self.full_free is not None:
            return "disk_full"
        return "io_error" if now < self.io_retry_at else ""

    def free_estimate(self) -> int | None:
        """Free bytes now: the last statvfs reading less what the store wrote since (None:
        unknown)."""
        if self._free_at_check is None:
            return None
        return self._free_at_check - (self._written() - self._written_at_check)

    def reserve_target(self, finish_need: int | None = None) -> int:
        """What the reserve should hold now: finishing every open segment and the flight's closing
        records, index.json, daemon.json and a margin (0 without a reserve)."""
        if self.reserve is None:
            return 0
        return (self.finish_need() if finish_need is None else finish_need) + RESERVE_BASE

    def has_room(self, nbytes: int, *, events: bool = False) -> bool:
        """True when ``nbytes`` more leave what finishing needs free (and, but for events, the
        log's room), and what the reserve still lacks: a record never takes the room the reserve
        is about to grow into."""
        free = self.free_estimate()
        if free is None:
            return True
        need = self.finish_need()
        lack = max(0, self.reserve_target(need) - self.reserve_size) if self.reserve else 0
        return free - nbytes >= need + lack + (0 if events else _EVENTS_ROOM)

    def released(self, nbytes: int) -> None:
        """``nbytes`` of the reserve were given back for a finishing step: they are not space
        returned (a full disk stays full for records) and the estimate of free space grows."""
        if nbytes <= 0:
            return
        self.reserve_size = max(0, self.reserve_size - nbytes)
        if self.full_free is not None:
            self.full_free += nbytes
        if self._free_at_check is not None:
            self._free_at_check += nbytes

    def grow_reserve(self, free: int | None = None) -> int:
        """Grow the reserve to its target when it lacks some and the disk has the room (writer
        thread, at most every 0.1 s from :meth:`tick`; a failed attempt waits a second). The bytes
        it grew by."""
        if self.reserve is None:
            return 0
        self.reserve_size = old = self.reserve.size()  # a repair may have taken some meanwhile
        target = self.reserve_target()
        now = self._clock()
        if target <= old or now < self._grow_at or self.full_free is not None:
            return 0
        if free is not None and free < target - old:
            self._grow_at = now + _GROW_RETRY_S
            return 0
        if not self.reserve.grow(target):
            self._grow_at = now + _GROW_RETRY_S
        self.reserve_size = self.reserve.size()
        return max(0, self.reserve_size - old)

    def failed(self, reason: str) -> bool:
        """Remember an I/O failure; True when it is the disk filling up now (not already known
        full)."""
        if reason != "disk_full":
            self.io_retry_at = self._clock() + _IO_RETRY_S
            return False
        if self.full_free is not None:
            return False
        try:
            self.full_free = self.free_bytes()
        except OSError:
            self.full_free = 0
        return True

    def tick(
        self, event: Callable[[QuotaRecord], None], fault: Callable[[str, BaseException], None]
    ) -> None:
        """At most every 0.1 s: read statvfs, update the quota level, notice space returning; what
        changed goes to ``event(record)``, a failed reading to ``fault(name, exc)``."""
        now = self._clock()
        if now - self._last_quota < _QUOTA_CHECK_S:
            return
        self._last_quota = now
        try:
            free = self.free_bytes()
        except OSError as exc:
            fault("statvfs_failed", exc)
            return
        free -= self.grow_reserve(free)
        self._free_at_check, self._written_at_check = free, self._written()
        need = self.finish_need() + _EVENTS_ROOM
        with self._lock:
            change = self.quota.update(free, now=now, need=need)
        if change:
            event(QuotaRecord(name=change[1].name, from_level=change[0].name,
                              free_mb=round(free / _MB, 1), finish_need_mb=round(need / _MB, 2),
                              reserve_mb=self.config.reserve_mb))
        if self.full_free is not None and free >= self.full_free + _RESUME_MARGIN:
            self.full_free = None
            event(QuotaRecord(name="disk_space_returned", free_mb=round(free / _MB, 1)))
