"""The one polling wait of the test suite: ``wait_for(predicate, what, timeout_s=...)``.

A test waits on the condition it is about to check, never sleeps for it. The timeout is a liveness
bound (a hung thread fails the test instead of hanging it), never a speed claim: keep it generous.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

__all__ = ["wait_for"]

T = TypeVar("T")

# Bound at import: a test that patches ``time.monotonic`` or ``time.sleep`` (a fake clock for the
# code under test) must not stretch or freeze the wait itself.
_monotonic = time.monotonic
_sleep = time.sleep


def wait_for(predicate: Callable[[], T], what: str, *, timeout_s: float = 60.0,
             interval_s: float = 0.01) -> T:
    """Poll ``predicate`` every ``interval_s`` until it returns something truthy and return that.

    Raises AssertionError naming ``what`` if it is still falsy after ``timeout_s`` seconds
    (the predicate is always called once more at the deadline, so a slow poll cannot miss it).
    """
    deadline = _monotonic() + timeout_s
    while True:
        got = predicate()
        if got:
            return got
        if _monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout_s:g} s waiting for {what}")
        _sleep(interval_s)
