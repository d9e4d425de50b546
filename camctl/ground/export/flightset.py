"""Flight sets for export: the flights of different boards flown together, on one zero.

Owns :class:`Flight` (a downloaded flight with its event log, time base and camera segments),
the grouping of flights into sets (one flight per board, reference times within
:data:`SET_WINDOW_S`), the alignment of a set on a trigger edge every board saw (a GPIO line's,
or the board's IMU's: :data:`EDGE_SOURCES`; :func:`align_set`), and :class:`CamData`, what the
one read pass over a camera's segments keeps for the contact sheet and the timeline. A flight's
sensor folders (``imu/``, ``baro/``) are never cameras; their samples are read once, when asked
(:meth:`Flight.samples`).

A flight recorded by several runs of the daemon (a restart, a reboot: its monotonic clock started
again) is read on one timeline, run 0's clock (:class:`camctl.common.flightclock.FlightClock`):
:func:`load_flight` places every event record on it (:func:`placed_events`), a frame's sensor time
goes through :meth:`Flight.frame_ns` with its run, and :func:`reboot_notes` says where each reboot
was. A phase change applied at a resume from the line level (``source`` ``resume``: its edge came
while the board was down, at no known time) is a phase change but never an edge or a zero.

Example::

    >>> sets = flight_sets([load_flight(r) for r in find_flights(Path("drop-3"))])  # doctest: +SKIP
    >>> align_set(sets[0])
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from camctl.common.flightclock import FlightClock
from camctl.common.losses import describe_loss
from camctl.common.protocol import printable
from camctl.common.records import PhaseRecord, read
from camctl.ground.flights import FlightRef, TimeBase, camera_segments, flight_losses, load_events
from camctl.store.sources import SENSOR_KINDS, source_kinds

if TYPE_CHECKING:
    from camctl.ground.export.sheet import Pick, Picker
    from camctl.ground.samples import SampleSeries

__all__ = ["EDGE_SOURCES", "SET_WINDOW_S", "CamData", "Flight", "align_set", "flight_sets",
           "load_flight", "loss_notes", "peak_line", "placed_events", "reboot_notes"]

SET_WINDOW_S = 300.0
_NOT_EDGES = {"arm", "disarm", "timeout"}  # per-board switches and timers: never a shared edge
# the sources of a phase change that mark a physical moment every board of a set shares: a
# trigger line's edge, or the board's own IMU seeing it (free fall, canopy shock, impact)
EDGE_SOURCES = ("gpio", "imu")


@dataclass
class Flight:
    """A flight to export: its folder, event log (every ``mono_ns`` placed on the flight's
    timeline), time base (on that timeline) and each camera's segments."""

    ref: FlightRef
    events: list[dict]
    tb: TimeBase
    t0_ns: int | None  # release edge, else the first event: the zero of every relative time
    cameras: dict[str, list[Path]]
    # sensor source -> (kind, its segments): imu/baro folders are not cameras
    sensor_segs: dict[str, tuple[str, list[Path]]] = field(default_factory=dict)
    _samples: dict[str, SampleSeries] | None = field(default=None, repr=False)

    @property
    def board(self) -> str:
        return self.ref.board

    @property
    def clock(self) -> FlightClock:
        """How each run's monotonic clock maps onto the flight's timeline (the time base's)."""
        return self.tb.clock

    def frame_ns(self, timestamp_ns: int, run: int | None = 0) -> int:
        """A time of run ``run``'s clock (a frame's sensor time) on the flight's timeline."""
        return self.clock.flight_ns(timestamp_ns, run)

    def rel(self, t_ns: int, run: int | None = 0) -> float:
        """Seconds from the flight's zero of ``t_ns``, a time of run ``run``'s clock (run 0's
        clock is the flight's timeline)."""
        if self.t0_ns is None:
            return 0.0
        return (self.frame_ns(t_ns, run) - self.t0_ns) / 1e9

    def samples(self) -> dict[str, SampleSeries]:
        """The flight's sensor samples (:func:`camctl.ground.samples.load_samples`), read once and
        kept: the timeline, the sheet and the CSV share them."""
        if self._samples is None:
            from camctl.ground.samples import load_samples

            self._samples = load_samples(self.ref.path) if self.sensor_segs else {}
        return self._samples

    def ref_wall_s(self) -> float:
        if self.t0_ns is not None and self.tb.wall_offset_ns is not None:
            return (self.t0_ns + self.tb.wall_offset_ns) / 1e9
        try:
            info = json.loads((self.ref.path / "flight.json").read_text("utf-8"))
            return info["created_wall_ns"] / 1e9
        except (OSError, ValueError, KeyError, TypeError):
            return 0.0


@dataclass
class CamData:
    """What the read pass over one camera's segments keeps: every video frame's sensor time, the
    contact sheet's frames around the events and the stills."""

    board: str
    camera: str
    fl: Flight
    times: list[int] = field(default_factory=list)  # sensor ns of every video frame
    picker: Picker | None = None  # the contact sheet's frames around the events
    stills: list[Pick] = field(default_factory=list)


def _first_event_ns(events: list[dict]) -> int | None:
    return next((int(r["mono_ns"]) for r in events if isinstance(r.get("mono_ns"), int)), None)


def placed_events(events: list[dict], clock: FlightClock) -> list[dict]:
    """Copies of ``events`` with ``mono_ns`` on the flight's timeline (``clock.place``), sorted by
    it; ``raw_mono_ns`` and ``raw_run`` keep the run's own time and number. A placed copy says
    ``run`` 0 (its time is on run 0's clock now), so placing it again changes nothing. The records
    themselves are untouched; a flight of one run reads exactly as before."""
    if clock.trivial:
        return list(events)
    out = []
    for r in events:
        t = clock.place(r)
        if t is None:
            out.append(r)
        else:
            out.append({**r, "mono_ns": t, "raw_mono_ns": r.get("mono_ns"), "run": 0,
                        "raw_run": r.get("run")})
    return sorted(out, key=lambda r: int(r["mono_ns"]) if isinstance(r.get("mono_ns"), int) else 0)


def load_flight(ref: FlightRef) -> Flight:
    """A flight folder read for export, on its one timeline: its zero is the release edge, else
    its first event."""
    raw = load_events(ref.path)
    # the time base places the raw records itself, and never takes a phase change applied at a
    # resume from a line's level as an edge (camctl.ground.flights.TimeBase)
    tb = TimeBase.from_events(raw)
    events = placed_events(raw, tb.clock)
    t0 = tb.t0_ns if tb.t0_ns is not None else _first_event_ns(events)
    from camctl.ground.samples import sensor_segments

    # a sensor's folder holds segments too: never read as a camera's
    sensors = {n for n, k in source_kinds(ref.path).items() if k in SENSOR_KINDS}
    cameras = {c: segs for c, segs in camera_segments(ref.path).items() if c not in sensors}
    return Flight(ref=ref, events=events, tb=tb, t0_ns=t0, cameras=cameras,
                  sensor_segs=sensor_segments(ref.path))


def reboot_notes(fl: Flight) -> list[str]:
    """Where each reboot of the flight was, for a summary: ``rig-a rebooted at T+10.100 s (down
    8.1 s; run 1 placed by its resume record)``; a run whose resume record is missing is named as
    not placed."""
    zero = "release" if fl.tb.aligned else "the first event"
    out = []
    for r in fl.clock.runs.values():
        if not r.mapped:
            out.append(f"{fl.board}: run {r.run} has no resume record; its times are left on its "
                       f"own clock{' (after a reboot)' if r.rebooted else ''}")
        elif r.rebooted:
            at = (f" at T{fl.rel(r.start_ns):+.3f} s from {zero}"
                  if r.start_ns is not None and fl.t0_ns is not None else "")
            down = f"down {r.gap_s:.1f} s; " if r.gap_s is not None else ""
            out.append(f"{fl.board} rebooted{at} ({down}run {r.run} placed on the flight's "
                       f"timeline by its resume record)")
    return out


def loss_notes(fl: Flight) -> list[str]:
    """What the flight's event log says was lost, for a summary: a line per loss record with the
    board's name (``rig-a: down: 3 frames lost (seqs 12-14) in down/000001.mcap bytes 25230..31097:
    torn tail: ...``, :func:`camctl.common.losses.describe_loss`)."""
    # board text (its event log) reaches the terminal and the sheet: no escape codes
    return [printable(f"{fl.board}: {describe_loss(loss)}", 2000)
            for loss in flight_losses(fl.events)]


def peak_line(fl: Flight) -> str:
    """The flight's peak g at separation and touchdown (:func:`camctl.ground.verdict.peak_g_line`),
    times from its own release edge: ``peak g: separation 7.9 g at T+1.050 s from release (+0.050
    s from its edge); touchdown ...``; "" for a flight without sensors."""
    from camctl.ground.samples import peaks_of
    from camctl.ground.verdict import peak_g_line

    peaks = peaks_of(fl.samples(), fl.tb.event_ns)
    if peaks is None:
        return ""
    release = fl.tb.event_ns.get("release")
    return peak_g_line(peaks, release)


def _edges(fl: Flight) -> dict[str, int]:
    """Event name -> monotonic ns of the first phase change that a trigger edge caused on this
    board: a GPIO line's, or its IMU's (:data:`EDGE_SOURCES`)."""
    out: dict[str, int] = {}
    for r in read(fl.events):
        if (isinstance(r, PhaseRecord) and r.source in EDGE_SOURCES and r.event
                and r.event not in _NOT_EDGES and r.mono_ns is not None):
            out.setdefault(r.event, r.mono_ns)
    return out


def _choose_edge(edges: list[dict[str, int]], prefer: str) -> str | None:
    common = set.intersection(*(set(e) for e in edges)) if edges else set()
    if common:
        return prefer if prefer in common else min(common, key=lambda ev: edges[0][ev])
    counts: dict[str, int] = {}
    for e in edges:
        for ev in e:
            counts[ev] = counts.get(ev, 0) + 1
    return min(counts, key=lambda ev: (-counts[ev], ev != prefer, ev)) if counts else None


def align_set(fset: list[Flight], *, prefer: str = "release") -> dict[str, dict]:
    """Put the boards of a flight set on one zero: a trigger edge every board saw (``prefer``
    if they all saw it, else the earliest such edge on the first board). With no edge common to all,
    the edge most boards saw is the zero of those boards; any board without the chosen edge is
    marked unaligned, with the reason, and keeps its own first event as zero: it is never shifted
    onto the others silently.

    Sets each flight's ``t0_ns`` and ``tb.aligned``; returns
    ``{board: {"aligned", "edge", "reason"}}``."""
    edges = [_edges(fl) for fl in fset]
    edge = _choose_edge(edges, prefer)
    report: dict[str, dict] = {}
    for fl, e in zip(fset, edges, strict=True):
        if edge is not None and edge in e:
            fl.t0_ns = fl.tb.t0_ns = e[edge]
            fl.tb.aligned, reason = True, ""
        else:
            theirs = ", ".join(sorted(e)) or "none"
            reason = (f"no {edge!r} edge in its event log (its GPIO edges: {theirs})"
                      if edge is not None else "no GPIO trigger edge in its event log")
            fl.t0_ns = _first_event_ns(fl.events)
            fl.tb.t0_ns, fl.tb.aligned = fl.t0_ns, False
        fl.tb.unaligned_reason = reason
        report[fl.board] = {"aligned": not reason, "edge": edge if not reason else None,
                            "reason": reason}
    return report


def flight_sets(flights: list[Flight]) -> list[list[Flight]]:
    """Group flights of different boards flown together (one per board, reference times close)."""
    sets: list[list[Flight]] = []
    for fl in sorted(flights, key=lambda f: (f.ref_wall_s(), f.board)):
        for s in sets:
            if (fl.board not in {f.board for f in s}
                    and abs(fl.ref_wall_s() - s[0].ref_wall_s()) <= SET_WINDOW_S):
                s.append(fl)
                break
        else:
            sets.append([fl])
    return [sorted(s, key=lambda f: f.board) for s in sets]
