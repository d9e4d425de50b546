"""The ground's flight model: flights on disk, their event logs, time bases and ``ls`` records.

Owns the discovery of flights in a folder (a fetch output ``<out>/<board>/<flight>``, one board's
store ``<store>/<flight>`` or a single flight folder), each flight's index and segments, and the
flight time base: each board's release edge (its release phase record) is its t=0, so boards wired
to the same release line line up. Every time is on the flight's one timeline
(:class:`~camctl.common.flightclock.FlightClock`: run 0's monotonic clock, each later run of the
daemon mapped by its resume record), so a reboot's records and frames sort after the earlier ones;
:attr:`TimeBase.clock` places a frame (``clock.flight_ns(timestamp_ns, run)``). A release applied
from the line level at a resume is not an edge (the edge came while the board was down): it is
t=0 but never aligned. :mod:`camctl.ground.views` prints what this module computes;
:mod:`camctl.ground.export` builds on it.

Example::

    >>> for ref in find_flights(Path("drop-3")):                    # doctest: +SKIP
    ...     print(ref.board, ref.flight, summarize_flight(ref)["cameras"].keys())
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from camctl.common.flightclock import FlightClock
from camctl.common.records import (
    CamerasRecord,
    FaultRecord,
    LedgerRecord,
    LossRecord,
    PhaseRecord,
    read,
)

__all__ = [
    "FlightRef",
    "TimeBase",
    "camera_segments",
    "find_flights",
    "flight_losses",
    "list_board",
    "load_events",
    "loss_dicts",
    "loss_totals",
    "read_index",
    "remote_events",
    "remote_flights",
    "remote_segment_runs",
    "remote_sensors",
    "remote_time_bases",
    "sensor_line",
    "sort_events",
    "summarize_flight",
]

_FLIGHT_JSON = "flight.json"
_NOT_CAMERAS = {"events", "thumbs", "export"}  # folders of a flight that hold no camera's segments


# --- discovery ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class FlightRef:
    """One flight folder on disk and the board that flew it."""

    board: str
    flight: str
    path: Path


def _is_flight(p: Path) -> bool:
    return p.is_dir() and ((p / _FLIGHT_JSON).is_file() or (p / "events").is_dir())


def _ref(path: Path, default_board: str) -> FlightRef:
    board, flight = default_board, path.name
    try:
        data = json.loads((path / _FLIGHT_JSON).read_text("utf-8"))
        if isinstance(data, dict):
            board = str(data.get("board") or board)
            flight = str(data.get("flight") or flight)
    except (OSError, ValueError):
        pass
    return FlightRef(board=board, flight=flight, path=path)


_NOT_FLIGHTS = {"export", "thumbs", "frames", "mp4", "events"}  # folders that never hold a flight


def find_flights(root: Path) -> list[FlightRef]:
    """Every flight at or beneath ``root``, however deep: a flight folder itself, a board's store
    (``<store>/<flight>``), a fetch output (``<out>/<board>/<flight>``), the demo's output folder
    (its download and its boards' stores) or any folder holding those. A flight folder is not
    searched further; export output and hidden folders are skipped. Sorted by board, flight id,
    then path."""
    root = Path(root)
    if not root.is_dir():
        return []
    if _is_flight(root):
        return [_ref(root, root.parent.name or "board")]
    out = []
    for dirpath, dirnames, _files in os.walk(root):
        here, deeper = Path(dirpath), []
        for name in sorted(dirnames):
            if name.startswith(".") or name in _NOT_FLIGHTS:
                continue
            if _is_flight(here / name):
                out.append(_ref(here / name, here.name))
            else:
                deeper.append(name)
        dirnames[:] = deeper
    return sorted(out, key=lambda r: (r.board, r.flight, str(r.path)))


def camera_segments(flight_dir: Path) -> dict[str, list[Path]]:
    """Each camera folder of a flight (event log, previews, export output and the sources
    ``flight.json`` names as another kind, a sensor's, left out) and its ``*.mcap`` segments in
    order; a folder without a segment is left out."""
    from camctl.store.sources import source_kinds

    cams: dict[str, list[Path]] = {}
    not_cameras = _NOT_CAMERAS | set(source_kinds(Path(flight_dir)))
    folders = (p for p in Path(flight_dir).iterdir() if p.is_dir() and p.name not in not_cameras)
    for sub in sorted(folders):
        segs = sorted(sub.glob("*.mcap"))
        if segs:
            cams[sub.name] = segs
    return cams


# --- events and the time base ---------------------------------------------------------------------
def load_events(flight_dir: Path) -> list[dict]:
    """Every event record of a flight (all ``events/*.mcap`` segments), in the order of their times
    on the flight's timeline (:func:`sort_events`)."""
    from camctl.store import iter_events

    recs: list[dict] = []
    for seg in sorted((Path(flight_dir) / "events").glob("*.mcap")):
        recs.extend(iter_events(seg))
    return sort_events(recs)


def sort_events(recs: list[dict]) -> list[dict]:
    """Event records in the order of their times on the flight's timeline (a reboot restarts the
    monotonic clock: its run's records follow the earlier ones); a record without a time first."""
    clock = FlightClock.from_events(recs)
    return sorted(recs, key=lambda r: clock.place(r) or 0)


RESUME_SOURCE = "resume"  # a phase record's source when a line level was applied at a resume


@dataclass
class TimeBase:
    """A board's flight clock: ``t0_ns`` (its release edge, or of the first frame when no release
    was logged) and a flight-timeline -> wall-clock offset from a record that carries both. Every
    ``*_ns`` here is on the flight's timeline (``clock``: run 0's monotonic clock; a resumed run's
    times are mapped by its resume record)."""

    t0_ns: int | None
    aligned: bool  # True when t0 is the release edge (boards can be compared)
    wall_offset_ns: int | None
    phases: list[tuple[int, str]]  # (flight ns, phase entered), in order
    event_ns: dict[str, int]  # event name -> flight ns of the first transition its edge caused
    event_phase: dict[str, str]  # event name -> the phase that transition entered
    unaligned_reason: str = ""  # why t0 is not a release edge (its times cannot be compared)
    clock: FlightClock = field(default_factory=lambda: FlightClock({}))
    # event name -> flight ns of a transition it caused from the line's level read at a resume
    # (the edge itself came while the board was down: not in event_ns, never aligned)
    resume_event_ns: dict[str, int] = field(default_factory=dict)

    @classmethod
    def from_events(cls, events: Iterable[dict], *, release: str = "release") -> TimeBase:
        recs = list(read(events))
        clock = FlightClock.from_events(recs)
        phases: list[tuple[int, str]] = []
        event_ns: dict[str, int] = {}
        event_phase: dict[str, str] = {}
        resumed: dict[str, int] = {}
        wall_offset = wall_offset_any = None
        first_descent = None
        for r in recs:
            t, wall = clock.place(r), r.wall_ns
            if t and wall:
                # run 0's clock is the timeline itself; a record the daemon stamped with its boot
                # is surely of it (recovery's loss records at a later boot have no run)
                if wall_offset is None and not r.run and getattr(r, "boot_id", None):
                    wall_offset = wall - t
                if wall_offset_any is None:
                    wall_offset_any = wall - t
            if not isinstance(r, PhaseRecord) or t is None:
                continue
            phases.append((t, r.phase_to))
            if r.source == RESUME_SOURCE:
                resumed.setdefault(r.event, t)
            else:
                event_ns.setdefault(r.event, t)
                event_phase.setdefault(r.event, r.phase_to)
            if first_descent is None and r.phase_from == "ARMED":
                first_descent = t
        phases.sort(key=lambda p: p[0])
        t0 = event_ns.get(release)
        reason = ""
        if t0 is None and release in resumed:
            t0 = resumed[release]
            reason = (f"its {release!r} was applied from the line level at a resume (the edge came "
                      "while the board was down); times are from the resume")
        elif t0 is None:  # its own first descent edge: a zero for this board alone, never aligned
            t0 = first_descent
            reason = f"no {release!r} edge in its event log" + (
                "; times are from its first descent phase" if t0 is not None else "")
        return cls(t0_ns=t0, aligned=not reason,
                   wall_offset_ns=wall_offset if wall_offset is not None else wall_offset_any,
                   phases=phases, event_ns=event_ns, event_phase=event_phase,
                   unaligned_reason=reason, clock=clock, resume_event_ns=resumed)

    def rel_s(self, mono_ns: int) -> float:
        """Seconds from t0 (0.0 when there is no t0)."""
        return (mono_ns - self.t0_ns) / 1e9 if self.t0_ns is not None else 0.0

    def wall_iso(self, mono_ns: int | None) -> str:
        if mono_ns is None or self.wall_offset_ns is None:
            return ""
        wall = (mono_ns + self.wall_offset_ns) / 1e9
        return (time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(wall))
                + f".{int(wall * 1000) % 1000:03d}Z")

    def phase_at(self, mono_ns: int) -> str:
        cur = ""
        for t, ph in self.phases:
            if t > mono_ns:
                break
            cur = ph
        return cur


# --- the index ------------------------------------------------------------------------------------
def read_index(flight_dir: Path) -> tuple[dict, str, int | None]:
    """(index, how, segments the board listed): ``how`` is current | rebuilt | missing."""
    from camctl.store.index import INDEX_NAME, build_index, index_is_stale

    listed = None
    try:
        raw = json.loads((flight_dir / INDEX_NAME).read_text("utf-8"))
    except (OSError, ValueError):
        raw = None
    if isinstance(raw, dict):
        try:
            listed = sum(len(c.get("segments", [])) for c in raw.get("cameras", {}).values())
        except (AttributeError, TypeError):
            listed = None
        if not index_is_stale(flight_dir, raw) or _same_files(flight_dir, raw):
            return raw, "current", listed
    return build_index(flight_dir), "rebuilt" if raw is not None else "missing", listed


def _same_files(flight_dir: Path, index: dict) -> bool:
    """A download's files have new mtimes: the index still describes them when every path and size
    match (``camctl fetch`` checked each sha256 already)."""
    from camctl.store.index import segment_paths

    try:
        entries = {e["path"]: e["size"] for c in index["cameras"].values() for e in c["segments"]}
        entries.update({e["path"]: e["size"] for c in index.get("sources", {}).values()
                        for e in c["segments"]})  # a sensor's segments are files of it too
        entries.update({e["path"]: e["size"] for e in index["events"]["segments"]})
        on_disk = {p.relative_to(flight_dir).as_posix(): p.stat().st_size
                   for paths in segment_paths(flight_dir).values() for p in paths}
    except (KeyError, TypeError, AttributeError, OSError):
        return False
    return entries == on_disk


# --- losses -------------------------------------------------------------------------------------
def flight_losses(events: Iterable[dict]) -> list[LossRecord]:
    """The loss records of a flight's event log (what recovery or verify cut or skipped, each with
    the exact seqs it cost: :mod:`camctl.common.losses`), in the log's order."""
    return [r for r in read(events) if isinstance(r, LossRecord)]


def loss_totals(losses: Iterable[LossRecord]) -> dict[str, int]:
    """``{"records", "frames", "unknown"}``: loss records, frames they cost (distinct camera and
    seq: a frame named twice is one frame lost) and records too old to name their seqs."""
    from camctl.common.losses import lost_seqs

    recs = list(losses)
    seqs = {(r.camera, s) for r in recs for s in lost_seqs(r) or ()}
    return {"records": len(recs), "frames": len(seqs),
            "unknown": sum(lost_seqs(r) is None for r in recs)}


def loss_dicts(losses: Iterable[LossRecord]) -> list[dict]:
    """Loss records as the ``ls`` JSON carries them: the event log's record without its times
    (``seqs`` included whenever the record names them)."""
    return [{k: v for k, v in r.encode().items() if k not in ("mono_ns", "wall_ns")}
            for r in losses]


# --- the ls record --------------------------------------------------------------------------------
def _not_fetched(ref: FlightRef) -> tuple[dict[str, list[str]], bool]:
    """A download's camera segments its board's index.json lists and the folder does not hold
    (``{camera: ["down/000002.mcap"]}``), and whether it holds none of them (previews only). On a
    board's store (not a download) a missing segment is a loss, not this: ``{}``."""
    from camctl.store.index import read_index_json, segment_entries
    from camctl.store.verify import is_download

    if not is_download(ref.path):
        return {}, False
    listed = segment_entries(read_index_json(ref.path))
    missing: dict[str, list[str]] = {}
    for rel in sorted(listed):
        if not (ref.path / rel).is_file():
            missing.setdefault(rel.split("/")[0], []).append(rel)
    gone = sum(len(v) for v in missing.values())
    return missing, bool(listed) and gone == len(listed)


def _not_checked(missing: list[str], listed: int, previews_only: bool) -> str:
    """Why a camera's books cannot be checked on the ground ("" when they can)."""
    if not missing:
        return ""
    if previews_only:
        return "previews only"
    return (f"{len(missing)} of {listed} segments not downloaded ({', '.join(missing)})")


def _camera_summary(ref: FlightRef, name: str, cam: dict, tb: TimeBase, ledger: dict,
                    not_checked: str = "") -> dict:
    from camctl.common.ledger import balance

    segs = cam.get("segments", [])
    first, last = _span(cam, tb.clock)
    stills = int(cam.get("stills", 0))
    folder = ref.path / name
    partial = sorted(p.name for p in folder.glob("*.part")) if folder.is_dir() else []
    both = first is not None and last is not None
    return {
        "frames": int(cam.get("frames", 0)) - stills,
        "stills": stills,
        "first_s": round(tb.rel_s(first), 3) if first is not None and tb.aligned else None,
        "last_s": round(tb.rel_s(last), 3) if last is not None and tb.aligned else None,
        "start_wall": tb.wall_iso(first),
        "duration_s": round((last - first) / 1e9, 3) if both else 0.0,
        "bytes": sum(int(s.get("size", 0)) for s in segs),
        "segments": len(segs),
        "partial_files": partial,
        "phases": dict(cam.get("phases", {})),
        # stills are frames too; books a download cannot check say why (never NOT BALANCED)
        "ledger": balance(ledger.get(name), int(cam.get("frames", 0)), not_checked=not_checked),
    }


def _sensor_summary(ref: FlightRef, name: str, src: dict, tb: TimeBase, ledger: dict,
                    not_checked: str = "") -> dict:
    """A sensor's ``ls`` record: its kind, samples and batches stored, times, size, and its books
    in samples (``captured = stored + dropped``, :func:`camctl.common.ledger.balance`)."""
    from camctl.common.ledger import balance

    segs = src.get("segments", [])
    first, last = _span(src, tb.clock)
    samples = int(src.get("samples", 0))
    folder = ref.path / name
    both = first is not None and last is not None
    return {
        "kind": str(src.get("kind", "")),
        "samples": samples,
        "batches": int(src.get("records", 0)),
        "first_s": round(tb.rel_s(first), 3) if first is not None and tb.aligned else None,
        "last_s": round(tb.rel_s(last), 3) if last is not None and tb.aligned else None,
        "duration_s": round((last - first) / 1e9, 3) if both else 0.0,
        "bytes": sum(int(s.get("size", 0)) for s in segs),
        "segments": len(segs),
        "partial_files": sorted(p.name for p in folder.glob("*.part")) if folder.is_dir() else [],
        "ledger": balance(ledger.get(name), samples, not_checked=not_checked),
    }


def sensor_line(name: str, s: dict) -> str:
    """``imu: 20,800 samples, 0 lost``: a sensor's samples stored and those its books say were not
    (dropped by any reason, recovery cuts included); ``lost ?`` without books."""
    books = s.get("ledger") or {}
    lost = sum((books.get("dropped") or {}).values()) if books.get("captured") is not None \
        else None
    return (f"{name}: {int(s.get('samples', 0)):,} samples, "
            f"{'?' if lost is None else f'{lost:,}'} lost")


def _span(cam: dict, clock: FlightClock) -> tuple[int | None, int | None]:
    """A camera's first and last frame on the flight's timeline: each segment's span placed by its
    run's clock (index.json says a segment's run; an older index does not: run 0)."""
    spans = []
    for seg in cam.get("segments", []):
        first, last = seg.get("first_ns"), seg.get("last_ns")
        if isinstance(first, int) and isinstance(last, int):
            run = seg.get("run")
            run = run if isinstance(run, int) and not isinstance(run, bool) and run >= 0 else 0
            spans.append((clock.flight_ns(first, run), clock.flight_ns(last, run)))
    if not spans:  # an index without segment spans: the camera's own (one clock, as before)
        return cam.get("first_ns"), cam.get("last_ns")
    return min(f for f, _ in spans), max(la for _, la in spans)


def _runs(tb: TimeBase) -> list[dict]:
    """Each resume of the flight (run 1 on): when on the flight's clock (seconds from t0), how long
    the board was down, whether it rebooted and which clock related the boots."""
    out = []
    for r in tb.clock.resumes:
        out.append({"run": r.run, "boot_id": r.boot_id,
                    "t_s": None if r.start_ns is None else round(tb.rel_s(r.start_ns), 3),
                    "gap_s": r.gap_s, "rebooted": r.rebooted, "clock": r.how,
                    "mapped": r.mapped})
    return out


def summarize_flight(ref: FlightRef) -> dict[str, Any]:
    """The ``ls`` record of one flight: per camera frames, stills, times from release, sizes; per
    sensor its samples and books."""
    from camctl.common.ledger import read_ledger
    from camctl.store.sources import SENSOR_KINDS

    index, how, listed = read_index(ref.path)
    events = load_events(ref.path)
    tb = TimeBase.from_events(events)
    ledger = read_ledger(events)
    missing, previews_only = _not_fetched(ref)
    typed = list(read(events))
    # a camera without a ledger record has no ``captured`` to compare with (a flight from before
    # the ledger, whose store drop or loss records alone would read as captured 0): not accounted,
    # never NOT BALANCED (camctl.common.ledger.read_ledger)
    accounted = {r.camera for r in typed if isinstance(r, LedgerRecord)}
    books = {name: b for name, b in ledger.items() if name in accounted}
    sensors: dict[str, dict] = {}
    for name, src in sorted((index.get("sources") or {}).items()):
        if isinstance(src, dict) and src.get("kind") in SENSOR_KINDS:
            gone = missing.get(name, [])
            why = _not_checked(gone, len(src.get("segments", [])) + len(gone), previews_only)
            sensors[name] = _sensor_summary(ref, name, src, tb, books, why)
            sensors[name]["not_fetched"] = gone
    cams: dict[str, dict] = {}
    for name, cam in sorted(index.get("cameras", {}).items()):
        if name in ("thumbs", "export") and not cam.get("segments", []):
            continue
        gone = missing.get(name, [])
        why = _not_checked(gone, len(cam.get("segments", [])) + len(gone), previews_only)
        cams[name] = _camera_summary(ref, name, cam, tb, books, why)
        cams[name]["not_fetched"] = gone  # a download's segments the board has and it does not
    losses = flight_losses(events)
    totals = loss_totals([r for r in losses if r.camera not in sensors])  # frames, not samples
    for r in typed:  # a camera added or removed at a resume (camctl.board.flight_cameras)
        if isinstance(r, CamerasRecord):
            for key, names in (("joined_run", r.added), ("left_run", r.removed)):
                for name in (n for n in names if n in cams):
                    cams[name][key] = r.run
    return {
        "board": ref.board, "flight": ref.flight, "path": str(ref.path), "index": how,
        "segments_listed": listed, "release_wall": tb.wall_iso(tb.t0_ns) if tb.aligned else "",
        # a download of previews only (no segment): its books cannot be checked
        "previews_only": previews_only,
        "aligned": tb.aligned, "unaligned_reason": tb.unaligned_reason,
        "events": len(events), "faults": sum(isinstance(r, FaultRecord) for r in typed),
        # ledger + store drops of frames (a sensor's, in samples, are its own books)
        "drops": sum(sum(c["dropped"].values()) for n, c in ledger.items() if n not in sensors),
        # what recovery cut or skipped (store/_repair.py describe_losses): byte ranges, seqs, camera
        "losses": loss_dicts(losses),
        # frames those records cost (distinct seqs), and records too old to name their seqs
        "lost_frames": totals["frames"], "losses_without_seqs": totals["unknown"],
        "phases": [{"t_s": round(tb.rel_s(t), 3), "phase": ph, "source": src}
                   for t, ph, src in _placed_phases(typed, tb.clock)],
        # where the release time came from: its edge, the line level read at a resume, or nowhere
        "release_source": ("edge" if "release" in tb.event_ns else
                           RESUME_SOURCE if "release" in tb.resume_event_ns else ""),
        "runs": _runs(tb),  # each resume: where on the timeline, down how long, rebooted or not
        "cameras": cams,
        # each sensor (imu, baro): samples, times and its books in samples
        "sensors": sensors,
    }


def _placed_phases(typed: list, clock: FlightClock) -> list[tuple[int, str, str]]:
    """(flight ns, phase entered, source) of each phase record, in the order of their times."""
    out = [(t, r.phase_to, r.source) for r in typed
           if isinstance(r, PhaseRecord) and (t := clock.place(r)) is not None]
    return sorted(out, key=lambda p: p[0])


# --- a board's listing (ls --connect) -------------------------------------------------------------
def remote_events(client: Any, segs: list[Any]) -> dict[str, list[dict]]:
    """Each listed flight's event log (every finished ``events`` segment the board lists, fetched
    into a temporary folder: they are small), in the order of their times (:func:`sort_events`)."""
    import tempfile

    from camctl.store import iter_events

    events: dict[str, list[dict]] = {}
    with tempfile.TemporaryDirectory(prefix="camctl-ls-") as tmp:
        for i, s in enumerate(x for x in segs if x.kind == "events"):
            dest = Path(tmp) / f"{i}.mcap"
            client.fetch_file(s, dest)
            events.setdefault(s.flight, []).extend(iter_events(dest))
    return {f: sort_events(r) for f, r in events.items()}


def remote_time_bases(client: Any, segs: list[Any]) -> dict[str, TimeBase]:
    """Each listed flight's time base, from its event log (:func:`remote_events`)."""
    return {f: TimeBase.from_events(r) for f, r in remote_events(client, segs).items()}


def remote_segment_runs(client: Any, segs: list[Any], bases: dict[str, TimeBase]) -> dict[str, int]:
    """``{segment path: run}`` of the flights whose runs are on different clocks (a LISTING does not
    say a segment's run; the flight's ``index.json`` does): one small fetch per such flight, none
    for a flight recorded by one run or on one boot."""
    import tempfile

    runs: dict[str, int] = {}
    with tempfile.TemporaryDirectory(prefix="camctl-ls-") as tmp:
        for i, s in enumerate(segs):
            tb = bases.get(s.flight)
            if s.kind != "meta" or not s.path.endswith("/index.json") or tb is None \
                    or tb.clock.trivial:
                continue
            dest = Path(tmp) / f"{i}.json"
            try:
                client.fetch_file(s, dest)
                index = json.loads(dest.read_text("utf-8"))
                for cam in index.get("cameras", {}).values():
                    for seg in cam.get("segments", []):
                        run = seg.get("run")
                        if isinstance(run, int) and not isinstance(run, bool) and run >= 0:
                            runs[f"{s.flight}/{seg['path']}"] = run
            except (OSError, ValueError, TypeError, KeyError, AttributeError):
                continue  # its segments stay on run 0's clock, as before runs
    return runs


def remote_flights(segs: list[Any], bases: dict[str, TimeBase],
                   runs: dict[str, int] | None = None) -> dict[str, dict[str, dict]]:
    """``{flight: {camera: record}}`` from a board's LIST: frames, bytes, segments, first/last
    seconds from the board's release edge (None when its flight is not aligned) and duration; each
    segment's times placed on its flight's timeline by its run (``runs``: path -> run; 0 when
    absent)."""
    flights: dict[str, dict[str, dict]] = {}
    for s in segs:
        if s.kind != "segment":
            continue  # the event log, flight.json/index.json and a sensor's samples: no camera
        cam = flights.setdefault(s.flight, {}).setdefault(s.camera, {
            "frames": 0, "bytes": 0, "segments": 0, "first_ns": None, "last_ns": None})
        cam["frames"] += s.frames
        cam["bytes"] += s.size
        cam["segments"] += 1
        if s.frames:
            tb = bases.get(s.flight)
            run = (runs or {}).get(s.path, 0)
            first, last = ((tb.clock.flight_ns(s.first_ns, run), tb.clock.flight_ns(s.last_ns, run))
                           if tb is not None else (s.first_ns, s.last_ns))
            f, la = cam["first_ns"], cam["last_ns"]
            cam["first_ns"] = first if f is None else min(f, first)
            cam["last_ns"] = last if la is None else max(la, last)
    for flight, cams in flights.items():
        tb = bases.get(flight)
        for cam in cams.values():
            f, la = cam.pop("first_ns"), cam.pop("last_ns")
            rel = tb.rel_s if tb is not None and tb.aligned else None
            cam["first_s"] = round(rel(f), 3) if rel is not None and f is not None else None
            cam["last_s"] = round(rel(la), 3) if rel is not None and la is not None else None
            both = f is not None and la is not None
            cam["duration_s"] = round((la - f) / 1e9, 3) if both else 0.0
    return flights


def remote_sensors(segs: list[Any], events: dict[str, list[dict]]) -> dict[str, dict[str, dict]]:
    """``{flight: {sensor: record}}`` from a board's LIST (its ``samples`` entries) and event logs:
    samples and bytes listed, segments, and ``ledger`` (the books in samples the event log gives,
    :func:`camctl.common.ledger.balance` against the samples listed; None without ledger
    records)."""
    from camctl.common.ledger import balance, read_ledger

    out: dict[str, dict[str, dict]] = {}
    for s in segs:
        if s.kind != "samples":
            continue
        rec = out.setdefault(s.flight, {}).setdefault(s.camera, {
            "samples": 0, "bytes": 0, "segments": 0})
        rec["samples"] += s.samples
        rec["bytes"] += s.size
        rec["segments"] += 1
    for flight, sensors in out.items():
        recs = events.get(flight, [])
        accounted = {r.camera for r in read(recs) if isinstance(r, LedgerRecord)}
        books = read_ledger(recs)
        for name, rec in sensors.items():
            rec["ledger"] = balance(books.get(name) if name in accounted else None,
                                    rec["samples"])
    return out


def list_board(url: str, *, timeout_s: float = 5.0, curve: Any = None) -> dict:
    """One board's ``ls --connect`` record: ``{"url", "board", "serving", "flights", "losses"}``
    (see :func:`remote_flights`; the event logs are fetched for the time bases, they are small), or
    ``{"url", "error"}`` when the board cannot be reached or refuses. ``losses`` is ``{flight:
    [loss record]}`` for the flights whose event log holds loss records (as ``ls DIR``'s: exact
    ``seqs``), read from the same event logs: no request of its own, and any board's logs say it."""
    from camctl.exc import FetchError, RemoteError
    from camctl.ground import Client

    with Client(url, timeout_s=timeout_s, curve=curve) as c:
        try:
            w = c.hello()
            segs = c.list()
            events = remote_events(c, segs)
            bases = {f: TimeBase.from_events(r) for f, r in events.items()}
            runs = remote_segment_runs(c, segs, bases)
        except (FetchError, RemoteError) as exc:
            return {"url": url, "error": str(exc)}
    losses = {f: loss_dicts(found) for f, r in sorted(events.items())
              if (found := flight_losses(r))}
    return {"url": url, "board": w.board, "serving": w.serving,
            "flights": remote_flights(segs, bases, runs), "losses": losses,
            "sensors": remote_sensors(segs, events)}
