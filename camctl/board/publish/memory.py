"""The publisher's memory watchdog: the process's resident size against ``publish.memory_mb``.

libzmq holds every frame of a multipart message until its last frame arrives, and no socket option
bounds that: ZMQ_MAXMSGSIZE limits one frame, and a pipe's high-water mark counts whole messages
only (libzmq ``src/pipe.cpp``, ``pipe_t::write`` counts ``msgs_written`` on the last frame), so a
peer that sends frames with MORE set and never the last one grows the process without limit
(issue 25: +209 MB in 1.4 s). The watchdog is the bound: past a soft mark the publisher closes its
ROUTER (which frees every connection's queue, the unfinished message included) and opens it again.

It measures growth over the resident size when the publisher started, not the absolute size: the
same code then holds in the publisher's own process (whose start is its imports) and in-process
under a test runner whose resident size is already large. The RSS source is injectable.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import time
from collections.abc import Callable

__all__ = ["MemoryWatch", "malloc_trim", "rss_bytes"]

SOFT = 0.7  # the share of the budget that trips the watchdog (the hard limit is RLIMIT_DATA)
_EVERY_S = 0.0  # the least time between two reads of the resident size (the caller paces)
_SETTLE_S = 0.05  # after a trip, time for libzmq to free what the reset released


def rss_bytes() -> int:
    """This process's resident set size, bytes (``/proc/self/statm``, second field, pages)."""
    with open("/proc/self/statm", "rb") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def malloc_trim() -> bool:
    """Give freed heap memory back to the system (glibc ``malloc_trim(0)``); False where there is
    no glibc."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return bool(libc.malloc_trim(0))
    except (OSError, AttributeError):
        return False


class MemoryWatch:
    """Trips when the resident size grew more than ``soft`` x ``budget_bytes`` since :meth:`start`.

    :meth:`check` is cheap: it reads the resident size at most every ``every_s``, and not for
    ``settle_s`` after a trip (libzmq frees a closed socket's messages on its I/O thread); it
    returns the resident size when tripped, else None.
    """

    def __init__(self, budget_bytes: int, *, rss: Callable[[], int] = rss_bytes,
                 soft: float = SOFT, every_s: float = _EVERY_S, settle_s: float = _SETTLE_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.budget = int(budget_bytes)
        self.mark = int(self.budget * soft)
        self._rss = rss
        self._every = every_s
        self._settle = settle_s
        self._clock = clock
        self.baseline = 0  # the resident size at start
        self.peak = 0  # the most growth over the baseline seen, bytes
        self.trips = 0
        self._next = 0.0

    def start(self) -> None:
        self.baseline = self._rss()
        self._next = 0.0

    def growth(self) -> int:
        """Growth over the start, bytes."""
        return self._rss() - self.baseline

    def check(self) -> int | None:
        now = self._clock()
        if now < self._next:
            return None
        self._next = now + self._every
        rss = self._rss()
        self.peak = max(self.peak, rss - self.baseline)
        if rss - self.baseline <= self.mark:
            return None
        self.trips += 1
        self._next = now + self._settle
        return rss
