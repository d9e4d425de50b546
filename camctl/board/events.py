"""The phase machine, driven by named events: SAFE -> ARMED -> descent -> TOUCHDOWN -> LANDED.

It owns the rules, not the wiring: GPIO lines, operator commands and timers all call
:meth:`PhaseMachine.handle` (or :meth:`PhaseMachine.tick` for timers), and every decision (a
transition, or an event that changed nothing and why) is reported to ``on_record`` with monotonic
and wall-clock times, so the store's event log holds the whole story and the ground can align boards
on shared trigger edges. It also debounces. The rule table and the debounce rule are in
docs/phases-and-gpio.md, sections "Phase rules" and "Debounce".

Example::

    >>> from camctl.board.config import PhasesConfig
    >>> m = PhaseMachine(PhasesConfig())
    >>> m.handle("arm").phase_to, m.handle("touchdown").phase_to
    ('ARMED', 'TOUCHDOWN')
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from camctl.board.config import ARMED, LANDED, SAFE, TOUCHDOWN, PhasesConfig
from camctl.common.records import EventRecord, PhaseRecord
from camctl.exc import ResumeError

# what the machine reports (camctl.common.records.EventRecord) is what the store writes
__all__ = ["PhaseMachine", "Transition"]


@dataclass(frozen=True, slots=True)
class Transition:
    """A phase change."""

    phase_from: str
    phase_to: str
    event: str
    source: str  # gpio | operator | timer
    mono_ns: int
    wall_ns: int
    skipped: tuple[str, ...] = ()

    def record(self, boot_id: str | None = None) -> PhaseRecord:
        """The event log's record of this change (``boot_id`` dates ``mono_ns``)."""
        return PhaseRecord(self.phase_from, self.phase_to, self.event, self.source, self.mono_ns,
                           self.wall_ns, self.skipped, boot_id)


class PhaseMachine:
    """Thread-safe phase machine. ``handle`` is O(1) and never blocks on I/O (callbacks must not
    either: they run under the machine's lock, so that transitions reach them in order)."""

    def __init__(
        self,
        phases: PhasesConfig,
        *,
        bounce_ms: float = 0.0,
        clock_ns: Callable[[], int] = time.monotonic_ns,
        wall_ns: Callable[[], int] = time.time_ns,
        on_transition: Callable[[Transition], None] | None = None,
        on_record: Callable[[EventRecord], None] | None = None,
    ) -> None:
        self.config = phases
        self.order = phases.order
        self._trigger_phase = dict(phases.triggers)
        self._timeouts = dict(phases.timeouts_s)
        self._bounce_ns = int(bounce_ms * 1e6)
        self._clock_ns = clock_ns
        self._wall_ns = wall_ns
        self._on_transition = on_transition
        self._on_record = on_record
        self._lock = threading.RLock()
        self._phase = SAFE
        self._entered_ns = clock_ns()
        self._descent_started_ns: int | None = None
        self._last_seen: dict[tuple[str, str], int] = {}
        self.history: list[Transition] = []
        self.records: list[EventRecord] = []

    @property
    def phase(self) -> str:
        with self._lock:  # every phase field is written under this lock; read it there too
            return self._phase

    @property
    def events(self) -> tuple[str, ...]:
        return ("arm", "disarm", *self._trigger_phase, "touchdown")

    def in_flight(self) -> bool:
        """True from the first descent phase until LANDED (no disarm, no serving by default)."""
        return self.phase not in (SAFE, ARMED, LANDED)

    # -- events ------------------------------------------------------------------------------------
    def handle(self, event: str, *, source: str = "operator", mono_ns: int | None = None,
               line: str | None = None) -> Transition | None:
        """Apply one event. Returns the transition it caused, or None (the record says why)."""
        now = self._clock_ns() if mono_ns is None else mono_ns
        with self._lock:
            if self._bounce_ns and line is not None:
                key = (line, event)
                last = self._last_seen.get(key)
                # the window restarts on every edge: chatter is one event
                self._last_seen[key] = now
                if last is not None and 0 <= now - last < self._bounce_ns:
                    self._record(event, source, "bounce", now)
                    return None
            target, outcome = self._rule(event)
            if target is None:
                self._record(event, source, outcome, now)
                return None
            return self._go(target, event, source, now)

    def forget_edges(self, line: str) -> None:
        """Forget ``line``'s earlier edges: its next is no bounce of them. An operator's command
        that moves a mock board's line calls this first (camctl.board.commands): a command is
        never debounced, however soon after another it comes."""
        with self._lock:
            for key in [k for k in self._last_seen if k[0] == line]:
                del self._last_seen[key]

    def _rule(self, event: str) -> tuple[str | None, str]:
        phase = self._phase
        idx = self.order.index(phase)
        if event == "arm":
            if phase == SAFE:
                return ARMED, ""
            return None, "duplicate" if phase == ARMED else "in_flight"
        if event == "disarm":
            if phase in (ARMED, LANDED):
                return SAFE, ""
            return None, "duplicate" if phase == SAFE else "in_flight"
        if event == "touchdown":
            if phase == SAFE:
                return None, "not_armed"
            if phase in (TOUCHDOWN, LANDED):
                return None, "duplicate"
            return TOUCHDOWN, ""
        target = self._trigger_phase.get(event)
        if target is None:
            return None, "unknown_event"
        if phase == SAFE:
            return None, "not_armed"
        t_idx = self.order.index(target)
        if idx == t_idx:
            return None, "duplicate"
        if idx > t_idx:
            return None, "out_of_order"
        return target, ""

    def arm_key_off(self, *, source: str = "gpio", mono_ns: int | None = None
                    ) -> Transition | None:
        """The arm key turned off (``source`` gpio), or found off at a restart (``resume``): the
        one rule for the key, live and at restart alike (docs/phases-and-gpio.md, "The arm key").
        In ARMED it disarms (a ``disarm`` transition); in a descent phase or TOUCHDOWN it is
        refused (``in_flight``: a key-off never stops a recording in flight); in SAFE and LANDED
        it changes nothing and nothing is recorded (a key at rest is not an event there)."""
        now = self._clock_ns() if mono_ns is None else mono_ns
        with self._lock:
            if self._phase == ARMED:
                return self._go(SAFE, "disarm", source, now)
            if self._phase not in (SAFE, LANDED):
                self._record("disarm", source, "in_flight", now)
            return None

    # -- resume ------------------------------------------------------------------------------------
    def resume(self, phase: str, *, entered_ns: int, descent_started_ns: int | None = None,
               source: str = "resume") -> Transition:
        """Re-enter ``phase`` after a restart, as persisted: no callbacks (the caller wires the
        capture and the log itself), timers run from ``entered_ns`` / ``descent_started_ns`` (this
        clock, possibly in the past), so TOUCHDOWN keeps only its remaining post-touchdown time.
        Only from SAFE, before any event."""
        if phase not in self.order:
            raise ResumeError(f"cannot resume into unknown phase {phase!r} "
                              f"(phases: {', '.join(self.order)})")
        with self._lock:
            if self._phase != SAFE or self.history:
                raise ResumeError("resume only at start, before any event "
                                  f"(phase is {self._phase})")
            now = self._clock_ns()
            self._phase = phase
            self._entered_ns = min(entered_ns, now)
            if phase not in (SAFE, ARMED, LANDED):
                start = entered_ns if descent_started_ns is None else descent_started_ns
                self._descent_started_ns = min(start, now)
            tr = Transition(SAFE, phase, "resume", source, now, self._wall_ns())
            self.history.append(tr)
            return tr

    # -- timers ------------------------------------------------------------------------------------
    def deadline_ns(self) -> tuple[int, str] | None:
        """The next timer (monotonic ns, target phase), or None."""
        with self._lock:
            return self._deadline()

    def _deadline(self) -> tuple[int, str] | None:
        phase, cfg = self._phase, self.config
        candidates: list[tuple[int, str]] = []
        if phase == TOUCHDOWN:
            candidates.append((self._entered_ns + int(cfg.post_touchdown_s * 1e9), LANDED))
        if self._descent_started_ns is not None and phase not in (TOUCHDOWN, LANDED, SAFE):
            deadline = self._descent_started_ns + int(cfg.descent_timeout_s * 1e9)
            candidates.append((deadline, TOUCHDOWN))
        if phase == ARMED and cfg.armed_timeout_s > 0:
            candidates.append((self._entered_ns + int(cfg.armed_timeout_s * 1e9), SAFE))
        if phase in self._timeouts:
            nxt = SAFE if phase == ARMED else self.order[self.order.index(phase) + 1]
            candidates.append((self._entered_ns + int(self._timeouts[phase] * 1e9), nxt))
        return min(candidates) if candidates else None

    def tick(self, now_ns: int | None = None) -> Transition | None:
        """Fire an expired timer, if any. Call it from the main loop (and at least every 100 ms)."""
        now = self._clock_ns() if now_ns is None else now_ns
        with self._lock:
            due = self._deadline()
            if due is None or now < due[0]:
                return None
            return self._go(due[1], "timeout", "timer", now)

    def tick_until(self, stop: threading.Event, *, max_wait_s: float = 0.05) -> None:
        """Fire the timers as they fall due until ``stop`` is set (the daemon's start runs this on
        a thread from the resume on, until its main loop ticks: a resumed phase's remaining time
        never waits for READY)."""
        while not stop.is_set():
            self.tick()
            due = self.deadline_ns()
            wait = max_wait_s
            if due is not None:
                wait = max(0.0, min(wait, (due[0] - self._clock_ns()) / 1e9))
            stop.wait(wait)

    # -- internals ---------------------------------------------------------------------------------
    def _go(self, target: str, event: str, source: str, now: int) -> Transition:
        prev = self._phase
        lo, hi = self.order.index(prev), self.order.index(target)
        skipped = tuple(self.order[lo + 1:hi]) if hi > lo + 1 and prev != SAFE else ()
        self._phase = target
        self._entered_ns = now
        if target in self._trigger_phase.values() and self._descent_started_ns is None:
            self._descent_started_ns = now
        if target == SAFE:
            self._descent_started_ns = None
        tr = Transition(prev, target, event, source, now, self._wall_ns(), skipped)
        self.history.append(tr)
        if self._on_transition is not None:
            self._on_transition(tr)  # first: the capture schedule changes before anything is logged
        self._record(event, source, "transition", now, target, prev)
        return tr

    def _record(self, event: str, source: str, outcome: str, now: int, phase_to: str = "",
                phase: str | None = None) -> None:
        rec = EventRecord(event, source, phase or self._phase, outcome, now, self._wall_ns(),
                          phase_to)
        self.records.append(rec)
        if len(self.records) > 10_000:  # bounded: a chattering line must not eat the RAM
            del self.records[:5_000]
        if self._on_record is not None:
            self._on_record(rec)
