"""The arm key while the daemon runs: a key turned off reaches the phase machine's one rule for it
(:meth:`camctl.board.events.PhaseMachine.arm_key_off`; docs/phases-and-gpio.md, "The arm key").

The event lines call the daemon on a line's active edge only (:mod:`camctl.board.gpio`), so a
key-off is read as a level: the daemon's main loop calls :meth:`ArmKey.poll` (every 50 ms or
sooner), which reads the arm line and applies the rule once the key has read off for ``hold_s``
(contact chatter and a vibrating contact are shorter; every arm edge starts the wait again). The
disarm is stamped when the key was first read off: a disarm needs no edge time. One key-off is
applied once; the key turned on (its edge, or a read) makes the next key-off count again. The
level at start is the restart's business (:func:`camctl.board.rejoin.apply_levels`), not this.

Example::

    key = ArmKey(machine, lambda: lines.is_active("arm"), hold_s=0.1)
    key.start(lines.is_active("arm"))
    while running:
        key.poll()
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from camctl.board.events import PhaseMachine, Transition

__all__ = ["KEY_OFF_HOLD_S", "ArmKey"]

log = logging.getLogger("camctl.board.daemon")
# How long the key must read off before it counts (at least: bounce_ms and min_pulse_ms raise it)
KEY_OFF_HOLD_S = 0.1


class ArmKey:
    """Applies a key turned off to ``machine``; ``read()`` is the arm line's level now (True: on)
    or None when the board has no arm line."""

    def __init__(self, machine: PhaseMachine, read: Callable[[], bool | None], *,
                 hold_s: float = KEY_OFF_HOLD_S,
                 clock_ns: Callable[[], int] = time.monotonic_ns) -> None:
        self._machine = machine
        self._read = read
        self._hold_ns = int(hold_s * 1e9)
        self._clock_ns = clock_ns
        # key_on comes on the GPIO thread, poll on the main loop's: one at a time, so a key turned
        # on again while a key-off is applied arms after the disarm, never before it
        self._lock = threading.Lock()
        self._off_since: int | None = None
        self._done = True  # until start(): nothing to apply

    def start(self, on: bool | None) -> None:
        """The key as the start read it: a key off at start was the restart's to apply."""
        with self._lock:
            self._off_since = None
            self._done = not on

    def key_on(self) -> None:
        """The arm line's active edge (call it before the machine hears the edge): a key-off from
        now on is a new one."""
        with self._lock:
            self._off_since = None
            self._done = False

    def poll(self, now_ns: int | None = None) -> Transition | None:
        """Read the key; apply a key-off held for ``hold_s`` (once). The transition, if any."""
        with self._lock:
            return self._poll(now_ns)

    def _poll(self, now_ns: int | None) -> Transition | None:
        try:
            on = self._read()
        except Exception:  # a line that cannot be read (closing): nothing to apply
            return None
        if on is None:
            return None
        if on:
            self._off_since = None
            self._done = False
            return None
        if self._done:
            return None
        now = self._clock_ns() if now_ns is None else now_ns
        if self._off_since is None:
            self._off_since = now
        if now - self._off_since < self._hold_ns:
            return None
        self._done = True
        phase = self._machine.phase
        tr = self._machine.arm_key_off(source="gpio", mono_ns=self._off_since)
        if tr is None and phase not in ("SAFE", "LANDED"):
            log.warning("the arm key was turned off in %s: ignored (a key-off never stops a "
                        "descent)", phase)
        return tr
