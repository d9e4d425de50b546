"""One timeline for a flight recorded by several runs of the daemon, across restarts and reboots.

A flight is recorded by one or more *runs*: the run that opened it (run 0), then one per resume
after a restart (run k, the k-th resume). Each run stamps its records (``run``) and frames (meta
``run``) with monotonic times of its own boot. A reboot restarts the monotonic clock, so times of
different boots cannot be compared as they are. The flight's timeline is run 0's monotonic clock;
each resume record says how its run's clock maps onto it (``clock_offset_ns``:
``flight_ns = mono_ns + offset``), worked out by the board at resume from the wall clock and
checked against the uptime (docs/phases-and-gpio.md, "Resume clocks").

:class:`FlightClock` reads that mapping back from a flight's event records; every reader that puts
times side by side (``ls``, export, the contact sheet, the timeline, first look, the mission page,
the Foxglove export) places frames and records with it, and says where a reboot was
(:attr:`FlightClock.reboots`). Records and frames written before runs existed have no ``run``:
they are run 0, and a flight without resume records maps every time to itself.

Example::

    >>> clock = FlightClock.from_events([
    ...     {"kind": "flight", "name": "open", "mono_ns": 5_000, "boot_id": "A", "run": 0},
    ...     {"kind": "resume", "name": "DESCENT", "flight": "F", "phase": "DESCENT",
    ...      "gap_s": 2.0, "clock": "wall (rebooted)", "last_seen_wall_ns": 0,
    ...      "entered_wall_ns": 0, "entered_mono_ns": 100, "descent_mono_ns": None,
    ...      "resumes": 1, "pid": 1, "levels": {}, "mono_ns": 300, "boot_id": "B", "run": 1,
    ...      "clock_offset_ns": 9_000}])
    >>> clock.flight_ns(300, run=1), clock.flight_ns(5_000), [r.run for r in clock.reboots]
    (9300, 5000, [1])
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from camctl.common.records import FlightRecord, PhaseRecord, Record, ResumeRecord, read

__all__ = ["FlightClock", "Run", "frame_run"]


@dataclass(frozen=True)
class Run:
    """One run of the daemon in a flight: its boot, how its clock maps onto the flight's."""

    run: int
    boot_id: str | None
    offset_ns: int  # flight_ns = mono_ns + offset_ns
    # where the run began on the flight's timeline (its resume record's time); None for run 0
    start_ns: int | None = None
    gap_s: float | None = None  # how long the board was down before it (its resume record's)
    rebooted: bool = False  # its boot differs from the run before it: the monotonic clock restarted
    how: str = ""  # the resume record's ``clock``: which clock related the boots
    # False: no resume record of this run was found (its times are left on their own clock)
    mapped: bool = True


class FlightClock:
    """The runs of one flight and the map of each run's monotonic clock onto the flight's."""

    def __init__(self, runs: Mapping[int, Run]) -> None:
        self.runs: dict[int, Run] = dict(sorted(runs.items())) or {0: Run(0, None, 0)}

    @classmethod
    def from_events(cls, events: Iterable[dict | Record]) -> FlightClock:
        """The flight's clock from its event records (in any order; dicts or typed records)."""
        boots: dict[int, str] = {}
        resumes: dict[int, ResumeRecord] = {}
        seen: set[int] = set()
        wall_offset0: int | None = None  # run 0's wall - mono, from any run-0 record with both
        for rec in read(e.encode() if isinstance(e, Record) else e for e in events):
            run = rec.run or 0
            seen.add(run)
            if isinstance(rec, ResumeRecord):
                run = rec.run if rec.run is not None else rec.resumes
                seen.add(run)
                resumes.setdefault(run, rec)
            boot = getattr(rec, "boot_id", None)
            if isinstance(rec, FlightRecord | PhaseRecord | ResumeRecord) and boot:
                boots.setdefault(run, boot)
            if run == 0 and wall_offset0 is None and rec.mono_ns and rec.wall_ns:
                wall_offset0 = rec.wall_ns - rec.mono_ns
        runs: dict[int, Run] = {0: Run(0, boots.get(0), 0)}
        prev = runs[0]
        for k in sorted(seen | set(resumes)):
            if k == 0:
                continue
            res = resumes.get(k)
            boot = boots.get(k)
            if res is None:  # its resume record was lost (a torn log): its times stay as they are
                runs[k] = prev = Run(k, boot, prev.offset_ns, mapped=False,
                                     rebooted=bool(boot and prev.boot_id and boot != prev.boot_id))
                continue
            rebooted = bool(boot and prev.boot_id and boot != prev.boot_id)
            offset = res.clock_offset_ns
            if offset is None:  # written before clock_offset_ns: the same boot keeps its clock
                if not rebooted:
                    offset = prev.offset_ns
                elif wall_offset0 is not None and res.wall_ns and res.mono_ns:
                    offset = res.wall_ns - wall_offset0 - res.mono_ns  # the wall clock's word
                else:
                    offset = prev.offset_ns
            start = None if res.mono_ns is None else res.mono_ns + offset
            runs[k] = prev = Run(k, boot, offset, start_ns=start, gap_s=float(res.gap_s),
                                 rebooted=rebooted, how=res.clock)
        return cls(runs)

    def offset_ns(self, run: int | None) -> int:
        r = self.runs.get(run or 0)
        return r.offset_ns if r is not None else 0

    def flight_ns(self, mono_ns: int, run: int | None = 0) -> int:
        """``mono_ns`` of run ``run``'s clock on the flight's timeline."""
        return mono_ns + self.offset_ns(run)

    def place(self, rec: Mapping[str, Any] | Record) -> int | None:
        """A record's ``mono_ns`` on the flight's timeline (None: it has none)."""
        if isinstance(rec, Record):
            mono, run = rec.mono_ns, rec.run
            if isinstance(rec, ResumeRecord) and run is None:  # as from_events reads it
                run = rec.resumes
        else:
            mono, run = rec.get("mono_ns"), rec.get("run")
            if isinstance(rec.get("kind"), str) and rec.get("kind") == "resume" and run is None:
                run = rec.get("resumes")
        if not isinstance(mono, int) or isinstance(mono, bool):
            return None
        return self.flight_ns(mono, run if isinstance(run, int) and run >= 0 else 0)

    @property
    def reboots(self) -> list[Run]:
        """The runs that began after a reboot (their clock restarted), in order."""
        return [r for r in self.runs.values() if r.rebooted]

    @property
    def resumes(self) -> list[Run]:
        """Every run after the first (each began with a resume), in order."""
        return [r for r in self.runs.values() if r.run > 0]

    @property
    def trivial(self) -> bool:
        """True when every time is already on the flight's timeline (no offset anywhere)."""
        return all(r.offset_ns == 0 for r in self.runs.values())

    def __repr__(self) -> str:
        return f"<FlightClock {len(self.runs)} runs, {len(self.reboots)} reboots>"


def frame_run(meta: Mapping[str, Any]) -> int:
    """A frame's run from its metadata (0 when absent or malformed)."""
    value = meta.get("run")
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0
