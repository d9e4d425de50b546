"""The torture run's invariants: what must hold of a flight after any mix of faults, kills, reboots.

Each check is a function of an :class:`Evidence` (what the run saw: the store, the download, the
durable frames read after every kill, the board's STATUS, ``camctl ls --json`` of the store and of
the download, the phase after every restart) returning :class:`Failure` s, each named after its
invariant with a one-line message. They read files only (the store's salvage reader, the event
log, :class:`~camctl.common.flightclock.FlightClock`), so a doctored store exercises them without a
board (tests/test_torture.py).

The invariants (:data:`CHECKS`):

- ``one_flight``: one flight in the store and in the download (no restart made a second one);
- ``durable_kept``: every frame the store held after a kill -9 (read before the restart, by
  camera, run, seq and sha256 of the JPEG) is in the store and in the download, byte-identical;
- ``download_complete``: the download holds exactly the store's frames;
- ``frame_identity``: no two different frames share (camera, run, seq); ``seq_unique``: a camera's
  seqs are unique in its flight (they go on across camera replacements and resumes);
- ``ledger_balanced``: captured = stored + dropped + aged out per camera, in the board's STATUS, in
  ``ls`` of the store and of the download; ``ledger_agrees``: ``ls`` of the store and of the
  download say the same; ``status_books``: so does STATUS once landed (the flight's books, not only
  those of the run since the last restart);
- ``timeline``: per camera, frames in capture order (run, seq) strictly increase on the flight's
  timeline; phase records do too; every resume comes after all frames of the runs before it;
- ``phases``: the log's phases are the script's; every restart came up in the phase it was killed
  in (or the one its timer led to), in the same flight; never SAFE or ARMED after a descent kill.
"""

from __future__ import annotations

import hashlib
import itertools
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from camctl.common.flightclock import FlightClock
from camctl.common.records import PhaseRecord, ResumeRecord, read
from camctl.store import iter_events, iter_frames, list_flights

__all__ = ["CHECKS", "Evidence", "Failure", "FrameKey", "Restart", "check_all", "event_records",
           "flight_frames", "frame_keys"]

_NOT_CAMERAS = {"events", "thumbs", "export"}


class FrameKey(NamedTuple):
    """A frame's identity: camera, run, seq and the sha256 of its JPEG."""

    camera: str
    run: int
    seq: int
    sha256: str


class Failure(NamedTuple):
    invariant: str
    message: str

    def __str__(self) -> str:
        return f"{self.invariant}: {self.message}"


@dataclass(frozen=True)
class Frame:
    key: FrameKey
    timestamp_ns: int
    still: bool


@dataclass
class Restart:
    """One kill -9 and what the board said after the restart that followed it."""

    stage: str  # where the kill landed (torture_plan.STAGES)
    how: str  # "plain" | "reboot"
    allowed: tuple[str, ...]  # phases it may come up in
    phase: str = ""  # STATUS after the restart
    flight: str = ""
    flights: tuple[str, ...] = ()


@dataclass
class Evidence:
    """What one torture run saw (see the module doc); ``flight`` is the flight the run opened."""

    store: Path
    flight: str
    ground: Path | None = None
    # label -> the durable frames read from the store after that kill, before the restart
    snapshots: list[tuple[str, list[FrameKey]]] = field(default_factory=list)
    status: dict[str, Any] | None = None  # STATUS once LANDED and serving
    ls_store: dict[str, Any] | None = None  # camctl ls --json <store>
    ls_ground: dict[str, Any] | None = None  # camctl ls --json <ground>
    restarts: list[Restart] = field(default_factory=list)
    expected_phases: list[str] = field(default_factory=list)


# --- reading --------------------------------------------------------------------------------------
def _cameras(flight_dir: Path) -> dict[str, list[Path]]:
    out: dict[str, list[Path]] = {}
    if not flight_dir.is_dir():
        return out
    for sub in sorted(p for p in flight_dir.iterdir() if p.is_dir() and p.name not in _NOT_CAMERAS):
        segs = sorted(sub.glob("*.mcap"))
        if segs:
            out[sub.name] = segs
    return out


def flight_frames(flight_dir: Path) -> list[Frame]:
    """Every frame (stills too) of a flight folder, read through the store's salvage reader, in
    file order per camera."""
    out = []
    for cam, segs in _cameras(flight_dir).items():
        for seg in segs:
            for f in iter_frames(seg):
                key = FrameKey(cam, f.run, f.seq, hashlib.sha256(f.jpeg).hexdigest())
                out.append(Frame(key, f.timestamp_ns, f.still))
    return out


def frame_keys(flight_dir: Path) -> list[FrameKey]:
    """What the store holds now (after a kill: what it had made durable, the page cache being the
    disk for a kill -9): every frame in a CRC-valid chunk."""
    return [f.key for f in flight_frames(flight_dir)]


def event_records(flight_dir: Path) -> list[dict]:
    """The flight's event records in the order they were written (segments by name, records in
    file order): not by ``mono_ns``, which restarts at a reboot."""
    return [e for seg in sorted((flight_dir / "events").glob("*.mcap")) for e in iter_events(seg)]


def _ground_flights(ground: Path) -> list[Path]:
    """Flight folders of a fetch output (``<out>/<board>/<flight>``)."""
    return sorted(f for b in ground.iterdir() if b.is_dir() and not b.name.startswith(".")
                  for f in b.iterdir() if f.is_dir() and not f.name.startswith("."))


def _ground_flight(ev: Evidence) -> Path | None:
    if ev.ground is None or not ev.ground.is_dir():
        return None
    found = [p for p in _ground_flights(ev.ground) if p.name == ev.flight]
    return found[0] if found else None


# --- the checks -----------------------------------------------------------------------------------
def check_one_flight(ev: Evidence) -> list[Failure]:
    out = []
    stored = list_flights(ev.store)
    if stored != [ev.flight]:
        out.append(Failure("one_flight", f"store holds flights {stored}, expected [{ev.flight!r}]"))
    if ev.ground is not None:
        got = [p.name for p in _ground_flights(ev.ground)] if ev.ground.is_dir() else []
        if got != [ev.flight]:
            out.append(Failure("one_flight", f"download holds flights {got}, "
                                             f"expected [{ev.flight!r}]"))
    return out


def _missing(want: Iterable[FrameKey], have: Counter) -> list[FrameKey]:
    need = Counter(want)
    return sorted(k for k, n in need.items() if have[k] < n)


def _name(k: FrameKey) -> str:
    return f"{k.camera} run {k.run} seq {k.seq} ({k.sha256[:10]})"


def check_durable_kept(ev: Evidence) -> list[Failure]:
    out = []
    store = Counter(frame_keys(ev.store / ev.flight))
    gdir = _ground_flight(ev)
    ground = Counter(frame_keys(gdir)) if gdir is not None else None
    for label, keys in ev.snapshots:
        for where, have in (("store", store), ("download", ground)):
            if have is None:
                continue
            gone = _missing(keys, have)
            if gone:
                out.append(Failure("durable_kept",
                                   f"{len(gone)} of {len(keys)} frames durable at {label} are "
                                   f"missing from the {where}, e.g. {_name(gone[0])}"))
    return out


def check_download_complete(ev: Evidence) -> list[Failure]:
    gdir = _ground_flight(ev)
    if ev.ground is None:
        return []
    if gdir is None:
        return [Failure("download_complete", f"flight {ev.flight} not in the download")]
    store = Counter(frame_keys(ev.store / ev.flight))
    ground = Counter(frame_keys(gdir))
    if store == ground:
        return []
    gone, extra = store - ground, ground - store
    first = _name(min(gone or extra))
    return [Failure("download_complete", f"{sum(gone.values())} stored frames not downloaded, "
                                         f"{sum(extra.values())} downloaded not stored, "
                                         f"e.g. {first}")]


def check_frame_identity(ev: Evidence) -> list[Failure]:
    out = []
    keys = frame_keys(ev.store / ev.flight)
    by_id: dict[tuple[str, int, int], set[str]] = {}
    for k in keys:
        by_id.setdefault((k.camera, k.run, k.seq), set()).add(k.sha256)
    clash = sorted(i for i, shas in by_id.items() if len(shas) > 1)
    if clash:
        cam, run, seq = clash[0]
        out.append(Failure("frame_identity", f"{len(clash)} (camera, run, seq) name different "
                                             f"frames, e.g. {cam} run {run} seq {seq}"))
    per_seq = Counter((k.camera, k.seq) for k in keys)
    dup = sorted(i for i, n in per_seq.items() if n > 1)
    if dup:
        cam, seq = dup[0]
        runs = sorted({k.run for k in keys if (k.camera, k.seq) == (cam, seq)})
        out.append(Failure("seq_unique", f"{len(dup)} seqs used twice in one camera's flight, "
                                         f"e.g. {cam} seq {seq} (runs {runs})"))
    return out


def _books(view: str, cams: dict[str, dict], ledger: Callable[[dict], dict]) -> tuple[
        list[Failure], dict[str, tuple[int | None, int]]]:
    out, seen = [], {}
    for name, cam in sorted(cams.items()):
        led = ledger(cam)
        captured, stored = led.get("captured"), int(led.get("stored", 0))
        dropped = led.get("dropped", 0)
        dropped = sum(dropped.values()) if isinstance(dropped, dict) else int(dropped)
        aged, pending = int(led.get("aged_out", 0)), int(led.get("pending", 0))
        seen[name] = (captured, stored)
        if captured is None or captured != stored + dropped + aged or pending:
            out.append(Failure("ledger_balanced", f"{view}: {name} captured {captured} != stored "
                                                  f"{stored} + dropped {dropped} + aged out {aged}"
                                                  + (f" (pending {pending})" if pending else "")))
    return out, seen


def _ls_cameras(ls: dict, flight: str) -> dict[str, dict] | None:
    for f in ls.get("flights", []):
        if f.get("flight") == flight:
            return dict(f.get("cameras", {}))
    return None


def check_ledger(ev: Evidence) -> list[Failure]:
    out: list[Failure] = []
    views: dict[str, dict[str, tuple[int | None, int]]] = {}
    if ev.status is not None:
        bad, views["status"] = _books("status", ev.status.get("cameras", {}),
                                      lambda c: c.get("ledger", {}))
        out += bad
    for view, ls in (("ls of the store", ev.ls_store), ("ls of the download", ev.ls_ground)):
        if ls is None:
            continue
        cams = _ls_cameras(ls, ev.flight)
        if cams is None:
            out.append(Failure("ledger_balanced", f"{view}: no flight {ev.flight}"))
            continue
        bad, views[view] = _books(view, cams, lambda c: c.get("ledger", {}))
        out += bad
    store, ground = "ls of the store", "ls of the download"
    for a, b, name in ((store, ground, "ledger_agrees"), (store, "status", "status_books")):
        if a not in views or b not in views:
            continue
        for cam in sorted(set(views[a]) | set(views[b])):
            # a camera that recorded nothing may be left out of a view
            if views[a].get(cam, (0, 0)) != views[b].get(cam, (0, 0)):
                out.append(Failure(name, f"{cam}: (captured, stored) {a} {views[a].get(cam)} "
                                         f"!= {b} {views[b].get(cam)}"))
    return out


def check_timeline(ev: Evidence) -> list[Failure]:
    fdir = ev.store / ev.flight
    events = event_records(fdir)
    clock = FlightClock.from_events(events)
    out = []
    by_cam: dict[str, list[Frame]] = {}
    for f in flight_frames(fdir):
        by_cam.setdefault(f.key.camera, []).append(f)
    last_by_run: dict[int, int] = {}
    for cam, frames in sorted(by_cam.items()):
        frames.sort(key=lambda f: (f.key.run, f.key.seq))
        prev: Frame | None = None
        for f in frames:
            t = clock.flight_ns(f.timestamp_ns, f.key.run)
            run = f.key.run
            last_by_run[run] = max(last_by_run.get(run, t), t)
            if prev is not None:
                tp = clock.flight_ns(prev.timestamp_ns, prev.key.run)
                if t <= tp:
                    out.append(Failure("timeline", f"{cam}: run {run} seq {f.key.seq} at "
                                                   f"{t / 1e9:.3f} s is not after run "
                                                   f"{prev.key.run} seq {prev.key.seq} at "
                                                   f"{tp / 1e9:.3f} s on the flight's timeline"))
                    break
            prev = f
    typed = list(read(events))
    phases = [(clock.place(r), r.phase_to) for r in typed if isinstance(r, PhaseRecord)]
    for (ta, pa), (tb, pb) in itertools.pairwise(phases):
        if ta is None or tb is None or tb < ta:
            out.append(Failure("timeline", f"phase {pb} at {_s(tb)} comes before phase {pa} at "
                                           f"{_s(ta)} on the flight's timeline"))
            break
    for r in typed:
        if not isinstance(r, ResumeRecord):
            continue
        k = r.run if r.run is not None else r.resumes
        at = clock.place(r)
        before = max((t for run, t in last_by_run.items() if run < k), default=None)
        if at is not None and before is not None and at <= before:
            out.append(Failure("timeline", f"resume of run {k} at {at / 1e9:.3f} s is not after "
                                           f"the frames before it (last at "
                                           f"{before / 1e9:.3f} s)"))
    return out


def _s(t: int | None) -> str:
    return "?" if t is None else f"{t / 1e9:.3f} s"


def check_phases(ev: Evidence) -> list[Failure]:
    out = []
    events = event_records(ev.store / ev.flight)
    got = [r.phase_to for r in read(events) if isinstance(r, PhaseRecord)]
    if ev.expected_phases and got != ev.expected_phases:
        out.append(Failure("phases", f"the flight's log went {' > '.join(got)}; the script drove "
                                     f"{' > '.join(ev.expected_phases)}"))
    for i, r in enumerate(ev.restarts, 1):
        if r.phase not in r.allowed:
            out.append(Failure("phases", f"kill {i} in {r.stage}, {r.how} restart: came up "
                                         f"{r.phase}, expected {'/'.join(r.allowed)}"))
        if r.stage == "DISARM":
            if r.flight:  # disarmed: no flight open, the landed one stays in the store
                out.append(Failure("phases", f"kill {i} after the disarm: came up in flight "
                                             f"{r.flight!r}"))
        elif r.flight != ev.flight:
            out.append(Failure("phases", f"kill {i} in {r.stage}: came up in flight "
                                         f"{r.flight!r}, not {ev.flight!r}"))
    return out


CHECKS: dict[str, Callable[[Evidence], list[Failure]]] = {
    "one_flight": check_one_flight,
    "durable_kept": check_durable_kept,
    "download_complete": check_download_complete,
    "frame_identity": check_frame_identity,
    "ledger_balanced": check_ledger,
    "timeline": check_timeline,
    "phases": check_phases,
}


def check_all(ev: Evidence) -> list[Failure]:
    """Every check's failures, in :data:`CHECKS` order (a check that raises is a failure too)."""
    out = []
    for name, check in CHECKS.items():
        try:
            out += check(ev)
        except Exception as exc:  # a flight so broken the check cannot read it: say so
            out.append(Failure(name, f"check raised {type(exc).__name__}: {exc}"))
    return out
