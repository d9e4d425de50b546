"""The simulated world's drop: the true moments of release, canopy opening and touchdown on the
board's ``CLOCK_MONOTONIC``, and the physics a sim IMU and barometer sample from them.

The moments come from outside the board, as the world would give them: ``camctl demo`` (and tests)
mark them through the operator port's ``scene`` command at the instant the scripted drop has them
happen, so a board whose events come from its IMU can be scored against them (the event log holds
each mark as a ``scene`` record). Sim cameras and sim sensors stamp on the same monotonic clock.
"""

from __future__ import annotations

import threading
import time

__all__ = ["SCENE_EVENTS", "DropScene"]

SCENE_EVENTS = ("release", "separation", "touchdown")


class DropScene:
    """The true moments of one board's simulated drop (thread-safe; marks are set once each)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._marks: dict[str, int] = {}

    def mark(self, event: str, mono_ns: int | None = None) -> int:
        """``event`` happens now (or at ``mono_ns``); returns its time. ValueError for an event
        the scene does not know; a second mark of the same event moves it (a new drop)."""
        if event not in SCENE_EVENTS:
            raise ValueError(f"unknown scene event {event!r} (known: {', '.join(SCENE_EVENTS)})")
        t = time.monotonic_ns() if mono_ns is None else int(mono_ns)
        with self._lock:
            if event == "release":  # a new drop: the later moments are of the old one
                self._marks.clear()
            self._marks[event] = t
        return t

    def marks(self) -> dict[str, int]:
        """Event -> its true time, for the events that happened."""
        with self._lock:
            return dict(self._marks)

    def reset(self) -> None:
        """Back on the hook, at rest (a re-armed rig)."""
        with self._lock:
            self._marks.clear()
