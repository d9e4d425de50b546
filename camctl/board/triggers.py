"""Descent events from more than one source: GPIO lines and the IMU, first wins.

Every GPIO edge (``Daemon._on_edge``) and every event the IMU's motion detector decides
(:class:`camctl.board.sensors.motion.MotionDetector`, fed by the IMU sampler's ``on_samples``)
goes through one :class:`TriggerArbiter`. An event's sources are ``[motion.<event>] sources``
(:meth:`camctl.board.config_sensors.MotionConfig.sources_of`; no table: its GPIO line alone, as
before sensors existed). The rules (docs/phases-and-gpio.md, "Sensor and line events"):

- a report from a source the event does not list is logged as ignored (``not_a_source``);
- the first source to report an event in the current descent (from ARM on) moves the phase
  machine, at the report's moment (the IMU's is backdated to the start of its run: the first
  sample of free fall, of the shock, of the impact);
- the first report of another of its sources is logged as a :class:`ConfirmRecord` with its
  offset from the first in ms (``confirmed``, or ``late`` after ``[motion] confirm_s``); none by
  then: ``unconfirmed`` (:meth:`TriggerArbiter.tick`, from the main loop); later reports go to
  the machine as before (a bounce, a duplicate);
- the IMU is believed only where its event makes sense: ``release`` only in ARMED, ``separation``
  and ``touchdown`` only after the release, in a descent phase; anywhere else it is logged as
  ignored with why (``not_armed``, ``before_release``, ``after_release``, ``after_descent``): a
  bump on the bench in SAFE or ARMED never fires a touchdown.

The barometer's :class:`~camctl.board.sensors.motion.BaroCheck` is a check, never a trigger: its
results are logged as :class:`CheckRecord`.

Locks: the arbiter's own lock orders every report (so "first" is well defined) and is taken
before the machine's, never after: :meth:`armed` (called under the machine's lock, at ARM) only
bumps a counter that the reports and the detectors read. The sampler threads feed the detectors
without any lock; they take the arbiter's (and through it the machine's) only when a detector
decided an event.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from camctl.board.config import ARMED, LANDED, SAFE, TOUCHDOWN
from camctl.board.config_sensors import MotionConfig, SensorConfig
from camctl.board.events import PhaseMachine
from camctl.common.records import CheckRecord, ConfirmRecord, EventRecord, Record

__all__ = ["IMU_REFUSALS", "NOT_A_SOURCE", "TriggerArbiter"]

log = logging.getLogger("camctl.board.triggers")
NOT_A_SOURCE = "not_a_source"
# why an IMU event is not believed in a phase (EventRecord.outcome)
IMU_REFUSALS = ("not_armed", "before_release", "after_release", "after_descent")


class TriggerArbiter:
    """The one way GPIO edges and IMU events reach ``machine`` (the module docstring).

    ``on_record`` gets every record the arbiter makes (EventRecords of what it ignored, confirm
    and check records); ``detector`` / ``baro_check`` build one detector per IMU / barometer
    sensor (default: :mod:`camctl.board.sensors.motion`'s, from ``motion``)."""

    def __init__(self, machine: PhaseMachine, motion: MotionConfig, *,
                 sensors: Sequence[SensorConfig] = (),
                 on_record: Callable[[Record], None] = lambda rec: None,
                 clock_ns: Callable[[], int] = time.monotonic_ns,
                 wall_ns: Callable[[], int] = time.time_ns,
                 detector: Callable[[], Any] | None = None,
                 baro_check: Callable[[], Any] | None = None) -> None:
        self.machine = machine
        self.motion = motion
        self._on_record = on_record
        self._clock_ns = clock_ns
        self._wall_ns = wall_ns
        self._confirm_ns = int(motion.confirm_s * 1e9)
        self._lock = threading.Lock()
        self._generation = 0  # bumped at ARM: a new descent
        self._seen_generation = 0
        # event -> (first source, its moment); the sources heard; when the others are due
        self._first: dict[str, tuple[str, int]] = {}
        self._heard: dict[str, set[str]] = {}
        self._due: dict[str, int] = {}
        self._detectors: dict[str, Any] = {}
        self._checks: dict[str, Any] = {}
        self._reset_at: dict[str, int] = {}
        # the GPIO edges decided and the last one's (event, outcome): an operator's mock pulse
        # waits for its edge's and answers with it (camctl.board.commands)
        self._last_edge: tuple[int, str, str] = (0, "", "")
        imus = [s.name for s in sensors if s.kind == "imu"]
        baros = [s.name for s in sensors if s.kind == "baro"]
        if imus and detector is None:
            from camctl.board.sensors.motion import MotionDetector

            def detector() -> Any:
                return MotionDetector(motion)
        if baros and baro_check is None:
            from camctl.board.sensors.motion import BaroCheck

            def baro_check() -> Any:
                return BaroCheck(motion.baro_descent_mps)
        for name in imus:
            self._detectors[name] = detector()  # type: ignore[misc]
        for name in baros:
            self._checks[name] = baro_check()  # type: ignore[misc]
        self._reset_at = dict.fromkeys([*imus, *baros], 0)

    # -- the descent -----------------------------------------------------------------------------
    def armed(self) -> None:
        """A new descent starts (ARM): the detectors reset, no event has a first source. Called
        under the machine's lock: takes no lock (the reports and the samplers see the counter)."""
        self._generation += 1

    def _sync(self) -> None:  # under self._lock
        if self._seen_generation != self._generation:
            self._seen_generation = self._generation
            self._first.clear()
            self._heard.clear()
            self._due.clear()

    # -- reports ---------------------------------------------------------------------------------
    def edge(self, event: str, t_ns: int, line: str | None = None) -> None:
        """A GPIO line's edge (lgpio's alert thread, or a mock pulse)."""
        with self._lock:
            outcome = "error"
            try:
                outcome = self._report(event, "gpio", t_ns, line)
            finally:
                self._last_edge = (self._last_edge[0] + 1, event, outcome)

    def last_edge(self) -> tuple[int, str, str]:
        """How many GPIO edges were decided, and the last one's event and outcome (``transition``,
        the machine's reason, ``confirmed``, ``late``, ``not_a_source``)."""
        return self._last_edge

    def motion_events(self, events: Iterable[Any]) -> None:
        """MotionEvents the IMU's detector decided (``event``, ``t_ns`` backdated)."""
        with self._lock:
            for ev in events:
                self._report(ev.event, "imu", int(ev.t_ns), None)

    def samples(self, name: str, samples: Sequence[Any]) -> None:
        """A sampler's ``on_samples``: feed sensor ``name``'s detector (no lock on this path)."""
        gen = self._generation
        if self._reset_at.get(name, gen) != gen:
            self._reset_at[name] = gen
            for d in (self._detectors.get(name), self._checks.get(name)):
                if d is not None:
                    d.reset()
        det = self._detectors.get(name)
        if det is not None:
            events = det.feed(samples)
            if events:
                self.motion_events(events)
            return
        check = self._checks.get(name)
        if check is not None:
            for ev in check.feed(samples):
                self._emit(CheckRecord(ev.what, source=name, rate_mps=round(ev.rate_mps, 2),
                                       mono_ns=int(ev.t_ns), wall_ns=self._wall_ns()))

    def _report(self, event: str, source: str, t_ns: int, line: str | None) -> str:
        """Decide one report; returns its outcome."""
        self._sync()
        sources = self.motion.sources_of(event)
        if source not in sources:
            self._ignored(event, source, NOT_A_SOURCE, t_ns)
            return NOT_A_SOURCE
        first = self._first.get(event)
        heard = self._heard.get(event, set())
        if first is not None and source not in heard:
            heard.add(source)
            due = self._due.get(event)
            on_time = due is not None and t_ns <= due
            if on_time and heard >= set(sources):
                del self._due[event]
            name = "confirmed" if on_time else "late"
            self._emit(ConfirmRecord(event, source, first[0],
                                     round((t_ns - first[1]) / 1e6, 3), name=name, mono_ns=t_ns,
                                     wall_ns=self._wall_ns()))
            return name
        if source == "imu":
            why = self._refusal(event, self.machine.phase)
            if why:
                self._ignored(event, source, why, t_ns)
                return why
        tr = self.machine.handle(event, source=source, mono_ns=t_ns, line=line)
        if tr is None:
            recs = self.machine.records
            return recs[-1].outcome if recs else ""
        if first is None and len(sources) > 1:
            self._first[event] = (source, t_ns)
            self._heard[event] = {source}
            self._due[event] = t_ns + self._confirm_ns
        return "transition"

    def tick(self, now_ns: int | None = None) -> None:
        """Log ``unconfirmed`` for every event whose other sources said nothing within
        ``confirm_s`` of its first (the main loop calls it)."""
        now = self._clock_ns() if now_ns is None else now_ns
        with self._lock:
            self._sync()
            for event, due in list(self._due.items()):
                if now < due:
                    continue
                del self._due[event]
                first = self._first[event]
                heard = self._heard[event]
                for source in self.motion.sources_of(event):
                    if source not in heard:  # a report from it after this is "late"
                        self._emit(ConfirmRecord(event, source, first[0], None,
                                                 name="unconfirmed", mono_ns=due,
                                                 wall_ns=self._wall_ns()))

    @staticmethod
    def _refusal(event: str, phase: str) -> str:
        """Why an IMU ``event`` is not believed in ``phase`` ("" when it is)."""
        if phase == SAFE:
            return "not_armed"
        if event == "release":
            return "" if phase == ARMED else "after_release"
        if phase == ARMED:
            return "before_release"
        if phase in (TOUCHDOWN, LANDED):
            return "after_descent"
        return ""

    def _ignored(self, event: str, source: str, why: str, t_ns: int) -> None:
        self._emit(EventRecord(event, source, self.machine.phase, why, t_ns, self._wall_ns()))

    def _emit(self, rec: Record) -> None:
        try:
            self._on_record(rec)
        except Exception:  # a record that cannot be logged never stops a trigger
            log.exception("cannot log %s", rec)
