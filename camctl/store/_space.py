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

    def has_room(self, nbytes: int, *, events: bool = False) -> bool:
        """True when ``nbytes`` more leave what finishing needs free (and, but for events, the
        log's room)."""
        free = self.free_estimate()
        return free is None or free - nbytes >= self.finish_need() + (0 if events else _EVENTS_ROOM)

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
