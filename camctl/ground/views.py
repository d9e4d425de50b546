"""Ground-station views: what is on disk (``camctl ls DIR``), on a board (``ls --connect``), and live board
status (``camctl status``), as rich tables or JSON for scripts.

Owns the discovery of flights in a folder (a fetch output ``<out>/<board>/<flight>``, one board's store
``<store>/<flight>`` or a single flight folder) and the flight time base: each board's release edge
(``mono_ns`` of its release phase record) is its t=0, so boards wired to the same release line line up.
:mod:`camctl.ground.export` builds on both.

Example::

    >>> for ref in find_flights(Path("drop-3")):                    # doctest: +SKIP
    ...     print(ref.board, ref.flight, summarize_flight(ref)["cameras"].keys())
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from camctl.exc import ConfigError

__all__ = [
    "STATUS_CAMERA_FIELDS",
    "STATUS_FIELDS",
    "FlightRef",
    "TimeBase",
    "find_flights",
    "load_events",
    "ls_local",
    "ls_remote",
    "normalize_status",
    "render_ls",
    "render_status",
    "status_many",
    "summarize_flight",
]

STATUS_FIELDS = ("board", "phase", "flight", "disk_free_mb", "serving", "cameras")
STATUS_CAMERA_FIELDS = ("state", "fps", "frames_captured", "frames_stored", "durable_frames", "dropped", "faults")
_FLIGHT_JSON = "flight.json"


# --- discovery ----------------------------------------------------------------------------------------
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
    (``<store>/<flight>``), a fetch output (``<out>/<board>/<flight>``), the demo's output folder (its
    download and its boards' stores) or any folder holding those. A flight folder is not searched further;
    export output and hidden folders are skipped. Sorted by board, flight id, then path."""
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


# --- events and the time base -------------------------------------------------------------------------
def load_events(flight_dir: Path) -> list[dict]:
    """Every event record of a flight (all ``events/*.mcap`` segments), sorted by ``mono_ns``."""
    from camctl.store import iter_events

    recs: list[dict] = []
    for seg in sorted((Path(flight_dir) / "events").glob("*.mcap")):
        recs.extend(iter_events(seg))
    return sorted(recs, key=lambda r: int(r.get("mono_ns") or 0))


@dataclass
class TimeBase:
    """A board's flight clock: ``t0_ns`` (monotonic ns of its release edge, or of the first frame when no
    release was logged) and a monotonic -> wall-clock offset from any record that carries both."""

    t0_ns: int | None
    aligned: bool  # True when t0 is the release edge (boards can be compared)
    wall_offset_ns: int | None
    phases: list[tuple[int, str]]  # (mono_ns, phase entered), in order
    event_ns: dict[str, int]  # event name -> mono_ns of the first transition it caused
    event_phase: dict[str, str]  # event name -> the phase that transition entered
    unaligned_reason: str = ""  # why t0 is not a release edge (the board's times cannot be compared)

    @classmethod
    def from_events(cls, events: Iterable[dict], *, release: str = "release") -> TimeBase:
        phases: list[tuple[int, str]] = []
        event_ns: dict[str, int] = {}
        event_phase: dict[str, str] = {}
        wall_offset = None
        first_descent = None
        for r in events:
            mono, wall = r.get("mono_ns"), r.get("wall_ns")
            if wall_offset is None and isinstance(mono, int) and isinstance(wall, int) and mono and wall:
                wall_offset = wall - mono
            if r.get("kind") != "phase" or not isinstance(mono, int):
                continue
            phases.append((mono, str(r.get("phase_to", r.get("name", "")))))
            ev = str(r.get("event", ""))
            event_ns.setdefault(ev, mono)
            event_phase.setdefault(ev, phases[-1][1])
            if first_descent is None and r.get("phase_from") == "ARMED":
                first_descent = mono
        t0 = event_ns.get(release)
        reason = ""
        if t0 is None:  # its own first descent edge is a zero for this board alone, never an aligned one
            t0 = first_descent
            reason = f"no {release!r} edge in its event log" + (
                "; times are from its first descent phase" if t0 is not None else "")
        return cls(t0_ns=t0, aligned=not reason, wall_offset_ns=wall_offset, phases=phases,
                   event_ns=event_ns, event_phase=event_phase, unaligned_reason=reason)

    def rel_s(self, mono_ns: int) -> float:
        """Seconds from t0 (0.0 when there is no t0)."""
        return (mono_ns - self.t0_ns) / 1e9 if self.t0_ns is not None else 0.0

    def wall_iso(self, mono_ns: int | None) -> str:
        if mono_ns is None or self.wall_offset_ns is None:
            return ""
        wall = (mono_ns + self.wall_offset_ns) / 1e9
        return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(wall)) + f".{int(wall * 1000) % 1000:03d}Z"

    def phase_at(self, mono_ns: int) -> str:
        cur = ""
        for t, ph in self.phases:
            if t > mono_ns:
                break
            cur = ph
        return cur


# --- ls DIR -------------------------------------------------------------------------------------------
def _index_for(flight_dir: Path) -> tuple[dict, str, int | None]:
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
    """A download's files have new mtimes: the index still describes them when every path and size match
    (``camctl fetch`` checked each sha256 already)."""
    from camctl.store.index import segment_paths

    try:
        entries = {e["path"]: e["size"] for c in index["cameras"].values() for e in c["segments"]}
        entries.update({e["path"]: e["size"] for e in index["events"]["segments"]})
        on_disk = {p.relative_to(flight_dir).as_posix(): p.stat().st_size
                   for paths in segment_paths(flight_dir).values() for p in paths}
    except (KeyError, TypeError, AttributeError, OSError):
        return False
    return entries == on_disk


def summarize_flight(ref: FlightRef) -> dict[str, Any]:
    """The ``ls`` record of one flight: per camera frames, stills, time range from release, sizes."""
    from camctl.common.ledger import balance, read_ledger

    index, how, listed = _index_for(ref.path)
    events = load_events(ref.path)
    tb = TimeBase.from_events(events)
    ledger = read_ledger(events)
    cams: dict[str, dict] = {}
    for name, cam in sorted(index.get("cameras", {}).items()):
        segs = cam.get("segments", [])
        if name in ("thumbs", "export") and not segs:
            continue
        first, last = cam.get("first_ns"), cam.get("last_ns")
        stills = int(cam.get("stills", 0))
        partial = sorted(p.name for p in (ref.path / name).glob("*.part")) if (ref.path / name).is_dir() else []
        cams[name] = {
            "frames": int(cam.get("frames", 0)) - stills,
            "stills": stills,
            "first_s": round(tb.rel_s(first), 3) if first is not None and tb.aligned else None,
            "last_s": round(tb.rel_s(last), 3) if last is not None and tb.aligned else None,
            "start_wall": tb.wall_iso(first),
            "duration_s": round((last - first) / 1e9, 3) if first is not None and last is not None else 0.0,
            "bytes": sum(int(s.get("size", 0)) for s in segs),
            "segments": len(segs),
            "partial_files": partial,
            "phases": dict(cam.get("phases", {})),
            "ledger": balance(ledger.get(name), int(cam.get("frames", 0))),  # stills are frames too
        }
    kinds: dict[str, int] = {}
    for r in events:
        kinds[str(r.get("kind", "event"))] = kinds.get(str(r.get("kind", "event")), 0) + 1
    return {
        "board": ref.board, "flight": ref.flight, "path": str(ref.path), "index": how,
        "segments_listed": listed, "release_wall": tb.wall_iso(tb.t0_ns) if tb.aligned else "",
        "aligned": tb.aligned, "unaligned_reason": tb.unaligned_reason,
        "events": len(events), "faults": kinds.get("fault", 0),
        "drops": sum(sum(c["dropped"].values()) for c in ledger.values()),  # ledger + store drop records
        # what recovery cut or skipped (store/_repair.py describe_losses): byte ranges, seqs, camera
        "losses": [{k: v for k, v in r.items() if k not in ("mono_ns", "wall_ns")}
                   for r in events if r.get("kind") == "loss"],
        "phases": [{"t_s": round(tb.rel_s(t), 3), "phase": ph} for t, ph in tb.phases],
        "cameras": cams,
    }


def _console() -> Any:
    """A rich console; piped output gets 160 columns instead of rich's 80, so tables are not cut."""
    from rich.console import Console

    return Console() if sys.stdout.isatty() else Console(width=160)


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB"


def _t(v: float | None) -> str:
    return "?" if v is None else f"{v:+.3f}s"


def render_ls(flights: list[dict], *, console: Any = None) -> None:
    """Print ``ls`` records as one rich table per flight."""
    from rich.table import Table

    from camctl.common.ledger import describe

    console = console or _console()
    for fl in flights:
        note = f"index {fl['index']}"
        seg_total = sum(c["segments"] for c in fl["cameras"].values())
        if fl["segments_listed"] is not None and fl["segments_listed"] != seg_total:
            note += f", {seg_total} of {fl['segments_listed']} segments downloaded"
        console.print(f"[b]{fl['board']} / {fl['flight']}[/b]  release {fl['release_wall'] or '?'}  "
                      f"events {fl['events']}  faults {fl['faults']}  drops {fl['drops']}  "
                      f"losses {len(fl.get('losses', []))}  ({note})"
                      + (f"  UNALIGNED: {fl['unaligned_reason']}" if fl.get("unaligned_reason") else ""),
                      soft_wrap=True)
        for loss in fl.get("losses", []):
            console.print(f"  lost at recovery: {loss.get('segment')} bytes {loss.get('range')} "
                          f"({loss.get('reason')}), frames after seq {loss.get('seq_after')}", markup=False)
        table = Table()
        for col in ("camera", "frames", "stills", "first", "last", "start (UTC)", "duration", "size", "segments"):
            table.add_column(col, justify="left" if col in ("camera", "start (UTC)") else "right")
        for name, c in fl["cameras"].items():
            table.add_row(name, str(c["frames"]), str(c["stills"]), _t(c["first_s"]), _t(c["last_s"]),
                          c["start_wall"] or "?", f"{c['duration_s']:.3f}s", _mb(c["bytes"]),
                          str(c["segments"]) + (f" (+{len(c['partial_files'])} partial)" if c["partial_files"]
                                                else ""))
        console.print(table)
        for name, c in fl["cameras"].items():
            if "ledger" in c and name not in ("thumbs", "export"):
                console.print("  " + describe(name, c["ledger"]), soft_wrap=True)


def ls_local(directory: Path, *, json_out: bool = False) -> int:
    """``camctl ls DIR``: flights under a fetch folder, a board store or one flight folder."""
    refs = find_flights(Path(directory))
    if not refs:
        raise ConfigError(f"no flights under {directory} (expected <board>/<flight>/flight.json, "
                          f"<flight>/flight.json or a flight folder)")
    flights = [summarize_flight(r) for r in refs]
    if json_out:
        print(json.dumps({"root": str(directory), "flights": flights}, indent=1))
    else:
        render_ls(flights)
    return 0


# --- ls --connect -------------------------------------------------------------------------------------
def ls_remote(urls: list[str], *, json_out: bool = False, timeout_s: float = 5.0, curve: Any = None) -> int:
    """``camctl ls --connect``: each board's cameras per flight, frames, times from the board's release edge
    (its event log is fetched, it is small), duration, size, segments. Exit 2 when a board cannot be reached.
    """
    from camctl.exc import FetchError, RemoteError
    from camctl.ground import Client

    rc = 0
    boards: list[dict] = []
    for url in urls:
        with Client(url, timeout_s=timeout_s, curve=curve) as c:
            try:
                w = c.hello()
                segs = c.list()
                bases = _remote_time_bases(c, segs)
            except (FetchError, RemoteError) as exc:
                boards.append({"url": url, "error": str(exc)})
                rc = 2  # a board that cannot be reached or refuses: a connection error (camctl.cli's rule)
                continue
        flights: dict[str, dict[str, dict]] = {}
        for s in segs:
            if s.kind != "segment":
                continue  # the event log and flight.json/index.json are not cameras
            cam = flights.setdefault(s.flight, {}).setdefault(s.camera, {
                "frames": 0, "bytes": 0, "segments": 0, "first_ns": None, "last_ns": None})
            cam["frames"] += s.frames
            cam["bytes"] += s.size
            cam["segments"] += 1
            if s.frames:
                cam["first_ns"] = s.first_ns if cam["first_ns"] is None else min(cam["first_ns"], s.first_ns)
                cam["last_ns"] = s.last_ns if cam["last_ns"] is None else max(cam["last_ns"], s.last_ns)
        for flight, cams in flights.items():
            tb = bases.get(flight)
            for cam in cams.values():
                f, la = cam.pop("first_ns"), cam.pop("last_ns")
                aligned = tb is not None and tb.aligned
                cam["first_s"] = round(tb.rel_s(f), 3) if aligned and f is not None else None  # type: ignore[union-attr]
                cam["last_s"] = round(tb.rel_s(la), 3) if aligned and la is not None else None  # type: ignore[union-attr]
                cam["duration_s"] = round((la - f) / 1e9, 3) if f is not None and la is not None else 0.0
        boards.append({"url": url, "board": w.board, "serving": w.serving, "flights": flights})
    if json_out:
        print(json.dumps(boards[0] if len(boards) == 1 else boards, indent=1))
        return rc
    from rich.table import Table

    console = _console()
    for b in boards:
        if "error" in b:
            console.print(f"[red]{b['url']}: {b['error']}[/red]")
            continue
        table = Table(title=f"{b['board']} ({b['url']})  {'serving' if b['serving'] else 'not serving yet'}",
                      title_justify="left", caption="first/last: seconds from the board's release edge",
                      caption_justify="left")
        for col in ("flight", "camera", "frames", "first", "last", "duration", "size", "segments"):
            table.add_column(col, justify="left" if col in ("flight", "camera") else "right")
        for fl, cams in sorted(b["flights"].items()):
            for name, c in sorted(cams.items()):
                table.add_row(fl, name, str(c["frames"]), _t(c["first_s"]), _t(c["last_s"]),
                              f"{c['duration_s']:.3f}s", _mb(c["bytes"]), str(c["segments"]))
        console.print(table)
    return rc


def _remote_time_bases(client: Any, segs: list[Any]) -> dict[str, TimeBase]:
    """Each listed flight's time base, from its event log fetched into a temporary folder."""
    import tempfile

    from camctl.store import iter_events

    events: dict[str, list[dict]] = {}
    with tempfile.TemporaryDirectory(prefix="camctl-ls-") as tmp:
        for i, s in enumerate(x for x in segs if x.kind == "events"):
            dest = Path(tmp) / f"{i}.mcap"
            client.fetch_file(s, dest)
            events.setdefault(s.flight, []).extend(iter_events(dest))
    return {f: TimeBase.from_events(sorted(r, key=lambda e: int(e.get("mono_ns") or 0))) for f, r in events.items()}


# --- status -------------------------------------------------------------------------------------------
_CAM_DEFAULTS: dict[str, Any] = {"state": "?", "fps": 0.0, "frames_captured": 0, "frames_stored": 0,
                                 "durable_frames": 0, "dropped": 0, "faults": 0}


def normalize_status(st: dict) -> dict:
    """A board's STATUS with every DESIGN.md field present (defaults filled in), extra fields kept.

    An unreachable board is ``{"url": ..., "error": ...}`` and is returned as it is."""
    if "error" in st:
        return dict(st)
    out = dict(st)
    out.setdefault("board", "?")
    out.setdefault("phase", "?")
    out.setdefault("flight", "")
    out.setdefault("disk_free_mb", 0)
    out.setdefault("serving", False)
    cams = out.get("cameras")
    out["cameras"] = {name: {**_CAM_DEFAULTS, **(c if isinstance(c, dict) else {})}
                      for name, c in (cams.items() if isinstance(cams, dict) else [])}
    return out


def render_status(statuses: list[dict]) -> Any:
    """A rich renderable: one table per board (phase, flight, disk, serving; one row per camera)."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    parts: list[Any] = []
    for st in statuses:
        if "error" in st:
            url, err = str(st.get("url", "?")), str(st["error"])
            parts.append(Text(err if err.startswith(url) else f"{url}: {err}", style="red"))
            continue
        st = normalize_status(st)
        serving = "[green]serving[/green]" if st["serving"] else "not serving"
        table = Table(title=f"[b]{st['board']}[/b]  phase [b]{st['phase']}[/b]  flight {st['flight'] or '-'}  "
                            f"disk free {float(st['disk_free_mb']):.0f} MB  {serving}", title_justify="left")
        for col in ("camera", "state", "fps", "captured", "stored", "durable", "dropped", "faults"):
            table.add_column(col, justify="left" if col in ("camera", "state") else "right")
        for name, c in st["cameras"].items():
            state = str(c["state"])
            style = "green" if state == "running" else "yellow" if state in ("idle", "stopped") else "red"
            table.add_row(name, f"[{style}]{state}[/{style}]", f"{float(c['fps']):.1f}",
                          str(c["frames_captured"]), str(c["frames_stored"]), str(c["durable_frames"]),
                          str(c["dropped"]), ("[red]" + str(c["faults"]) + "[/red]") if c["faults"]
                          else "0")
        parts.append(table)
    return Group(*parts)


def _poll(urls: list[str], timeout_s: float, curve: Any) -> list[dict]:
    from camctl.exc import FetchError, RemoteError
    from camctl.ground import Client

    results: list[dict] = []
    for url in urls:
        with Client(url, timeout_s=timeout_s, curve=curve) as c:
            try:
                results.append(normalize_status(c.status()))
            except (FetchError, RemoteError) as exc:
                results.append({"url": url, "error": str(exc)})
    return results


class _Subscriber:
    """SUB to boards' PUB endpoints; keeps the latest ``status`` body per board name.

    ``endpoints`` are ``(endpoint, curve)``: a board with CURVE on serves its PUB socket with the same keys as
    its ROUTER, so each connect carries that board's client keys (None: plain)."""

    def __init__(self, endpoints: list[tuple[str, Any]]) -> None:
        import zmq

        self._zmq = zmq
        self._ctx = zmq.Context.instance()
        self.sock = self._ctx.socket(zmq.SUB)
        self.sock.setsockopt(zmq.LINGER, 0)
        for topic in (b"status", b"phase", b"fault"):
            self.sock.setsockopt(zmq.SUBSCRIBE, topic)
        from camctl.common.keys import use_curve

        for ep, curve in endpoints:
            use_curve(self.sock, curve)  # taken by this connect only
            self.sock.connect(ep)

    def drain(self, wait_s: float) -> tuple[dict[str, dict], bool]:
        """(latest status per board, whether a phase/fault came) within ``wait_s``."""
        latest: dict[str, dict] = {}
        poke = False
        deadline = time.monotonic() + wait_s
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not self.sock.poll(max(1, int(left * 1000))):
                break
            try:
                topic, data = self.sock.recv_multipart(self._zmq.NOBLOCK)[:2]
                body = json.loads(data)
            except (ValueError, self._zmq.ZMQError):
                continue
            if topic == b"status" and isinstance(body, dict) and "board" in body:
                latest[str(body["board"])] = normalize_status(body)
                if not poke:
                    break  # show a fresh status at once
            elif topic != b"status":
                poke = True
        return latest, poke

    def close(self) -> None:
        self.sock.close(linger=0)


def _events_url(url: str, status: dict) -> str | None:
    """The board's PUB endpoint: its ``events_port`` (from STATUS) on the host of the ROUTER URL."""
    port = status.get("events_port")
    if not isinstance(port, int) or not url.startswith("tcp://") or ":" not in url[6:]:
        return None
    host = url[6:].rsplit(":", 1)[0]
    return f"tcp://{host}:{port}"


def status_many(urls: list[str], *, json_out: bool = False, watch: bool = False, timeout_s: float = 5.0,
                curve: Any = None, events: list[str] | None = None, interval_s: float = 1.0,
                stop: threading.Event | None = None,
                on_update: Callable[[list[dict]], None] | None = None) -> int:
    """``camctl status``: a table per board, or JSON (one object, a list for several boards).

    ``watch`` refreshes until Ctrl-C (or ``stop`` is set): a STATUS poll of every board each ``interval_s``,
    and, for boards whose PUB endpoints are given in ``events``, their live ``status`` broadcasts in between
    (a ``phase`` or ``fault`` broadcast triggers an immediate re-poll). With ``json_out`` a watch prints one
    JSON line per refresh. Exit 2 if a board did not answer (in the last refresh): a connection error.
    """
    results = _poll(urls, timeout_s, curve)

    last_line = [""]

    def emit_json(res: list[dict]) -> None:
        line = json.dumps(res[0] if len(res) == 1 else res)
        if line != last_line[0]:  # one line per update: a poll and a broadcast of the same status are one
            print(line, flush=True)
            last_line[0] = line

    rc = lambda res: 2 if any("error" in r for r in res) else 0  # noqa: E731
    if not watch:
        if json_out:
            emit_json(results)
        else:
            _console().print(render_status(results))
        return rc(results)
    stop = stop or threading.Event()
    from camctl.common.keys import curve_for

    found = events or [_events_url(url, r) for url, r in zip(urls, results, strict=False)]
    pubs = [(ep, curve_for(curve, urls[i]) if i < len(urls) else None) for i, ep in enumerate(found) if ep]
    sub = _Subscriber(pubs) if pubs else None
    live: Any = None
    try:
        if not json_out:
            from rich.live import Live

            live = Live(render_status(results), refresh_per_second=4, transient=False)
            live.start()
        next_poll = time.monotonic() + interval_s
        while True:
            if on_update is not None:
                on_update(results)
            if json_out:
                emit_json(results)
            elif live is not None:
                live.update(render_status(results))
            if stop.is_set():
                break
            wait = max(0.0, next_poll - time.monotonic())
            if sub is not None:
                latest, poke = sub.drain(wait)
                if latest:
                    results = [latest.get(str(r.get("board")), r) for r in results]
                if not poke and time.monotonic() < next_poll:
                    continue
            elif stop.wait(wait):
                continue
            results = _poll(urls, timeout_s, curve)
            next_poll = time.monotonic() + interval_s
    except KeyboardInterrupt:
        pass
    finally:
        if live is not None:
            live.stop()
        if sub is not None:
            sub.close()
    sys.stdout.flush()
    return rc(results)
