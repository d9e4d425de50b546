"""Where the last flight stood when the daemon stopped: read back from the flight's own files at start.

Owns the reading side of a mid-flight restart. :func:`last_flight_state` reads the newest flight's event log
(every segment, torn tails tolerated: it runs after the store recovery) and returns the phase its last
phase record entered, when (wall clock: the monotonic clock restarts with the Pi), when the descent began,
and when the board was last heard of (the newest record of the event log or the newest frame of each camera's
last segment). The daemon decides what to do with it (:meth:`camctl.daemon.Daemon.start`); the phase machine
takes it through :meth:`camctl.events.PhaseMachine.resume`.

Example::

    >>> state = last_flight_state(Path("/srv/camctl"))          # doctest: +SKIP
    >>> state.flight, state.phase, state.gap_s(time.time_ns())  # doctest: +SKIP
    ('20261130T012233Z', 'DESCENT', 4.2)
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

from camctl.config import ARMED, LANDED, SAFE, TOUCHDOWN, PhasesConfig
from camctl.store import iter_events, iter_frames, list_flights

__all__ = ["FlightState", "last_flight_state"]

log = logging.getLogger("camctl.resume")


@dataclass(frozen=True)
class FlightState:
    """The persisted state of one flight. Times are wall-clock ns (``time.time_ns``)."""

    flight: str
    phase: str  # the phase the last phase record entered (ARMED when only the flight's open record exists)
    entered_wall_ns: int  # when that phase was entered
    descent_wall_ns: int | None  # when the first descent phase (or TOUCHDOWN) was entered, if it was
    last_seen_wall_ns: int  # the newest durable record of the board in this flight (event or frame)
    resumes: int = 0  # how many times this flight was resumed already

    @property
    def recording(self) -> bool:
        """True when the flight was still being recorded (not landed, not disarmed)."""
        return self.phase not in (SAFE, LANDED)

    def gap_s(self, now_wall_ns: int) -> float:
        """Seconds from the last durable record to ``now_wall_ns`` (never negative: clocks may step)."""
        return max(0.0, (now_wall_ns - self.last_seen_wall_ns) / 1e9)


def _segments(directory: Path) -> list[Path]:
    return sorted(directory.glob("*.mcap"))


def _last_frame_wall_ns(flight_dir: Path, cameras: list[str]) -> int:
    newest = 0
    for cam in cameras:
        segs = _segments(flight_dir / cam)
        for seg in reversed(segs):  # the newest segment with a durable frame
            walls = [f.log_ns for f in iter_frames(seg)]  # MCAP log_time: the frame's wall-clock time
            if walls:
                newest = max(newest, max(walls))
                break
    return newest


def last_flight_state(root: Path, phases: PhasesConfig | None = None) -> FlightState | None:
    """The state of the newest flight under ``root``, or None when there is none or its log says nothing."""
    flights = list_flights(Path(root))
    if not flights:
        return None
    flight = flights[-1]
    flight_dir = Path(root) / flight
    order = (phases or PhasesConfig()).order
    descent = set(order[order.index(ARMED) + 1:order.index(LANDED)])  # descent phases and TOUCHDOWN
    phase, entered, descent_at, last_seen, resumes = "", 0, None, 0, 0
    for seg in _segments(flight_dir / "events"):
        try:
            records = list(iter_events(seg))
        except Exception as exc:  # the salvage reader should not raise; never let it stop a start-up
            log.warning("cannot read %s: %s", seg, exc)
            continue
        for rec in records:
            wall = int(rec.get("wall_ns") or 0)
            last_seen = max(last_seen, wall)
            kind = rec.get("kind")
            if kind == "flight" and rec.get("name") == "open" and not phase:
                phase, entered = ARMED, wall
            elif kind == "phase" and isinstance(rec.get("phase_to"), str):
                phase, entered = rec["phase_to"], wall
                if phase in descent and descent_at is None:
                    descent_at = wall
                if phase in (SAFE, ARMED):
                    descent_at = None
            elif kind == "resume":
                resumes += 1
    if not phase:
        return None
    if phase not in order:
        log.warning("flight %s: last phase %r is not in this config's phases; treating it as %s",
                    flight, phase, TOUCHDOWN)
        phase = TOUCHDOWN
    cameras = sorted(p.name for p in flight_dir.iterdir() if p.is_dir() and p.name != "events")
    last_seen = max(last_seen, _last_frame_wall_ns(flight_dir, cameras)) or time.time_ns()
    return FlightState(flight, phase, entered, descent_at, last_seen, resumes)
