"""The flight's one timeline across runs of the daemon (camctl.common.flightclock)."""

from __future__ import annotations

import doctest

import camctl.common.flightclock as fc
from camctl.common.flightclock import FlightClock

S = 1_000_000_000


def _open(mono: int, boot: str = "A", wall: int = 1_000 * S) -> dict:
    return {"kind": "flight", "name": "open", "board": "b", "flight": "F", "mono_ns": mono,
            "wall_ns": wall, "boot_id": boot, "run": 0}


def _resume(run: int, mono: int, boot: str, offset: int | None, wall: int = 2_000 * S) -> dict:
    rec = {"kind": "resume", "name": "DESCENT", "flight": "F", "phase": "DESCENT", "gap_s": 3.0,
           "clock": "x", "last_seen_wall_ns": 0, "entered_wall_ns": 0, "entered_mono_ns": 1,
           "descent_mono_ns": None, "resumes": run, "pid": 1, "levels": {}, "mono_ns": mono,
           "wall_ns": wall, "boot_id": boot, "run": run}
    if offset is not None:
        rec["clock_offset_ns"] = offset
    return rec


def test_the_doctest_runs() -> None:
    assert doctest.testmod(fc).failed == 0


def test_a_flight_of_one_run_maps_every_time_to_itself() -> None:
    clock = FlightClock.from_events([_open(5 * S), {"kind": "ledger", "camera": "c",
                                                    "mono_ns": 7 * S}])
    assert clock.trivial and clock.reboots == [] and clock.flight_ns(7 * S) == 7 * S


def test_each_run_maps_by_its_resume_record_and_reboots_are_named() -> None:
    events = [_open(500 * S), _resume(1, 600 * S, "A", 0), _resume(2, 4 * S, "B", 610 * S),
              {"kind": "ledger", "camera": "c", "mono_ns": 9 * S, "run": 2}]
    clock = FlightClock.from_events(reversed(events))  # any order
    assert [r.run for r in clock.reboots] == [2]
    assert [r.run for r in clock.resumes] == [1, 2]
    assert clock.place(events[-1]) == 619 * S
    assert clock.runs[2].start_ns == 614 * S
    assert clock.flight_ns(9 * S, run=1) == 9 * S


def test_an_older_resume_record_without_an_offset_is_placed_by_the_wall_clock() -> None:
    # run 0: mono 500 s at wall 1000 s; rebooted, resumed at wall 1100 s with mono 4 s: the flight
    # timeline there is 600 s, so the offset is 596 s
    events = [_open(500 * S, wall=1_000 * S), _resume(1, 4 * S, "B", None, wall=1_100 * S)]
    clock = FlightClock.from_events(events)
    assert clock.offset_ns(1) == 596 * S and clock.runs[1].rebooted


def test_a_run_whose_resume_record_was_lost_is_flagged_unmapped() -> None:
    clock = FlightClock.from_events([_open(5 * S), {"kind": "phase", "name": "LANDED",
                                                    "phase_to": "LANDED", "mono_ns": 3 * S,
                                                    "boot_id": "B", "run": 1}])
    assert not clock.runs[1].mapped and clock.runs[1].rebooted
