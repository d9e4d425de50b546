"""Ground-station views: what is on disk (``camctl ls DIR``), on a board (``ls --connect``), and
live board status (``camctl status``), as rich tables or JSON for scripts.

Owns the printing only: the flights, their time bases and ``ls`` records come from
:mod:`camctl.ground.flights`, the board status records from :mod:`camctl.ground.status`.

Example::

    >>> ls_local(Path("drop-3"), json_out=True)                      # doctest: +SKIP
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from camctl.common.losses import describe_loss
from camctl.common.protocol import printable
from camctl.common.records import LossRecord, read
from camctl.exc import ConfigError
from camctl.ground.flights import (
    find_flights,
    list_board,
    loss_totals,
    sensor_line,
    summarize_flight,
)
from camctl.ground.status import (
    StatusSubscriber,
    events_endpoint,
    normalize_status,
    poll_status,
    sensors_of,
)
from camctl.ground.verdict import from_summary, verdict

__all__ = [
    "loss_lines",
    "losses_count",
    "ls_local",
    "ls_remote",
    "render_ls",
    "render_ls_remote",
    "render_status",
    "status_many",
    "unbalanced",
]


def _console() -> Any:
    """A rich console; piped output gets 160 columns instead of rich's 80, so tables are not cut."""
    from rich.console import Console

    return Console() if sys.stdout.isatty() else Console(width=160)


def _safe(text: Any) -> str:
    """Board text for a rich table: no control characters (escape codes), no rich markup."""
    from rich.markup import escape

    return escape(printable(text, 200))


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB"


def _t(v: float | None) -> str:
    return "?" if v is None else f"{v:+.3f}s"


# --- losses (ls DIR and ls --connect) ----------------------------------------------------------
def _losses(records: list[dict]) -> list[LossRecord]:
    return [r for r in read(records) if isinstance(r, LossRecord)]


def losses_count(records: list[dict]) -> str:
    """``losses 2 (5 frames lost)``: the loss records and the frames they cost (``5+`` and how
    many records do not name their seqs, for records from before seqs were exact)."""
    t = loss_totals(_losses(records))
    if not t["records"]:
        return "losses 0"
    more = "+" if t["unknown"] else ""
    old = f"; {t['unknown']} without seqs" if t["unknown"] else ""
    return (f"losses {t['records']} ({t['frames']}{more} frame{'s' if t['frames'] != 1 else ''}"
            f" lost{old})")


def loss_lines(records: list[dict], indent: str = "  ") -> list[str]:
    """A line per loss record (:func:`camctl.common.losses.describe_loss`: exact seqs, where, why);
    board text, so control characters are taken out."""
    return [indent + printable(describe_loss(r), 2000) for r in _losses(records)]


# --- ls DIR -------------------------------------------------------------------------------------
def _flight_line(fl: dict) -> str:
    note = f"index {fl['index']}"
    seg_total = sum(c["segments"] for c in fl["cameras"].values())
    if fl["segments_listed"] is not None and fl["segments_listed"] != seg_total:
        note += f", {seg_total} of {fl['segments_listed']} segments downloaded"
    if fl.get("previews_only"):  # a --thumbs-only download: its books cannot be checked
        note += ", previews only"
    unaligned = fl.get("unaligned_reason")
    return (f"[b]{fl['board']} / {fl['flight']}[/b]  release {fl['release_wall'] or '?'}  "
            f"events {fl['events']}  faults {fl['faults']}  drops {fl['drops']}  "
            f"{losses_count(fl.get('losses', []))}  ({note})"
            + (f"  UNALIGNED: {unaligned}" if unaligned else ""))


def _run_line(r: dict) -> str:
    """Where a resume was on the flight's timeline: "resumed after a reboot at T+12.300 s, down
    8.1 s (clock: uptime (wall clock behind by 600.0 s))"."""
    why = "after a reboot" if r.get("rebooted") else "after a daemon restart"
    at = "T?" if r.get("t_s") is None else f"T{r['t_s']:+.3f} s"
    down = "" if r.get("gap_s") is None else f", down {r['gap_s']:.1f} s"
    how = f" (clock: {r['clock']})" if r.get("clock") else ""
    unmapped = "" if r.get("mapped", True) else " [no resume record: its times are its own clock's]"
    return f"  run {r['run']}: resumed {why} at {at}{down}{how}{unmapped}"


def render_ls(flights: list[dict], *, console: Any = None) -> None:
    """Print ``ls`` records as one rich table per flight."""
    from rich.table import Table

    from camctl.common.ledger import describe

    console = console or _console()
    for fl in flights:
        console.print(_flight_line(fl), soft_wrap=True)
        if fl.get("verdict"):  # RECORDED / PARTIAL / LOST with its reason (camctl.ground.verdict)
            v = fl["verdict"]
            console.print(f"  verdict {v['kind']}: {printable(v['reason'], 2000)}", markup=False,
                          soft_wrap=True)
        for r in fl.get("runs", []):  # each resume: a reboot's frames are on the same timeline
            console.print(_safe(_run_line(r)), soft_wrap=True)
        for line in loss_lines(fl.get("losses", [])):  # the flight's loss records: exact seqs
            console.print(line, markup=False, soft_wrap=True)
        table = Table()
        for col in ("camera", "frames", "stills", "first", "last", "start (UTC)", "duration",
                    "size", "segments"):
            table.add_column(col, justify="left" if col in ("camera", "start (UTC)") else "right")
        for name, c in fl["cameras"].items():
            partial = f" (+{len(c['partial_files'])} partial)" if c["partial_files"] else ""
            table.add_row(name, str(c["frames"]), str(c["stills"]), _t(c["first_s"]),
                          _t(c["last_s"]), c["start_wall"] or "?", f"{c['duration_s']:.3f}s",
                          _mb(c["bytes"]), str(c["segments"]) + partial)
        console.print(table)
        for name, c in fl["cameras"].items():
            if "ledger" in c and name not in ("thumbs", "export"):
                runs = "".join(f"; {how} at resume {c[key]}" for key, how in
                               (("joined_run", "joined"), ("left_run", "left"))
                               if c.get(key) is not None)
                console.print("  " + describe(name, c["ledger"]) + runs, soft_wrap=True)
        for name, sn in (fl.get("sensors") or {}).items():  # each sensor's books, in samples
            console.print(f"  {_safe(sensor_line(name, sn))} ({_safe(sn.get('kind', ''))}, "
                          f"{sn['segments']} segments, {_mb(sn['bytes'])})", soft_wrap=True)
            if "ledger" in sn:
                console.print("  " + _safe(describe(name, sn["ledger"])), soft_wrap=True)


def unbalanced(flights: list[dict]) -> list[str]:
    """``board/flight/camera`` of each camera (or sensor) whose books really do not balance (one
    whose books cannot be checked, a download without its segments, is not one)."""
    return [f"{fl['board']}/{fl['flight']}/{name}" for fl in flights
            for name, c in [*fl["cameras"].items(), *(fl.get("sensors") or {}).items()]
            if name not in ("thumbs", "export")
            and (c.get("ledger") or {}).get("balanced") is False]


def ls_local(directory: Path, *, json_out: bool = False) -> int:
    """``camctl ls DIR``: flights under a fetch folder, a board store or one flight folder.

    Returns 1 (a problem found in the data, camctl.cli's rule) when a camera's books do not
    balance (:func:`unbalanced`), else 0; books a download cannot check (previews only, segments
    not fetched) say so and are not that."""
    refs = find_flights(Path(directory))
    if not refs:
        raise ConfigError(f"no flights under {directory} (expected <board>/<flight>/flight.json, "
                          f"<flight>/flight.json or a flight folder)")
    flights = [summarize_flight(r) for r in refs]
    for fl in flights:  # what is on disk is all there is: a verdict for every flight
        v = verdict(from_summary(fl, download_error="previews only" if fl.get("previews_only")
                                 else ""))
        fl["verdict"] = None if v is None else {"kind": v.kind, "reason": v.reason}
    if json_out:
        print(json.dumps({"root": str(directory), "flights": flights}, indent=1))
    else:
        render_ls(flights)
    return 1 if unbalanced(flights) else 0


# --- ls --connect -------------------------------------------------------------------------------
def ls_remote(urls: list[str], *, json_out: bool = False, timeout_s: float = 5.0,
              curve: Any = None) -> int:
    """``camctl ls --connect``: each board's cameras per flight, frames, times from the board's
    release edge (its event log is fetched, it is small), duration, size, segments. Exit 2 when a
    board cannot be reached."""
    boards = [list_board(url, timeout_s=timeout_s, curve=curve) for url in urls]
    # a board that cannot be reached or refuses: a connection error (camctl.cli's rule)
    rc = 2 if any("error" in b for b in boards) else 0
    if json_out:
        print(json.dumps(boards[0] if len(boards) == 1 else boards, indent=1))
    else:
        render_ls_remote(boards)
    return rc


def render_ls_remote(boards: list[dict], *, console: Any = None) -> None:
    """Print :func:`camctl.ground.flights.list_board` records: one table per board."""
    from rich.table import Table

    console = console or _console()
    for b in boards:
        if "error" in b:
            console.print(f"[red]{_safe(b['url'])}: {_safe(b['error'])}[/red]")
            continue
        serving = "serving" if b["serving"] else "not serving yet"
        table = Table(title=f"{_safe(b['board'])} ({_safe(b['url'])})  {serving}",
                      title_justify="left",
                      caption="first/last: seconds from the board's release edge",
                      caption_justify="left")
        for col in ("flight", "camera", "frames", "first", "last", "duration", "size", "segments"):
            table.add_column(col, justify="left" if col in ("flight", "camera") else "right")
        for fl, cams in sorted(b["flights"].items()):
            for name, c in sorted(cams.items()):
                table.add_row(_safe(fl), _safe(name), str(c["frames"]), _t(c["first_s"]),
                              _t(c["last_s"]),
                              f"{c['duration_s']:.3f}s", _mb(c["bytes"]), str(c["segments"]))
        console.print(table)
        for fl, sensors in sorted((b.get("sensors") or {}).items()):  # books in samples
            for name, sn in sorted(sensors.items()):
                console.print(f"{printable(fl, 200)} {_safe(sensor_line(name, sn))}",
                              soft_wrap=True)
        for fl, records in sorted(b.get("losses", {}).items()):  # from the boards' event logs
            console.print(f"{printable(fl, 200)}: {losses_count(records)}", markup=False,
                          soft_wrap=True)
            for line in loss_lines(records):
                console.print(line, markup=False, soft_wrap=True)


# --- status -------------------------------------------------------------------------------------
def render_status(statuses: list[dict]) -> Any:
    """A rich renderable: one table per board (phase, flight, disk, serving; one row per camera)."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    parts: list[Any] = []
    for st in statuses:
        if "error" in st:
            url, err = str(st.get("url", "?")), str(st["error"])
            parts.append(Text(printable(err if err.startswith(url) else f"{url}: {err}"),
                              style="red"))
            continue
        st = normalize_status(st)
        serving = "[green]serving[/green]" if st["serving"] else "not serving"
        table = Table(title=f"[b]{_safe(st['board'])}[/b]  phase [b]{_safe(st['phase'])}[/b]  "
                            f"flight {_safe(st['flight'] or '-')}  "
                            f"disk free {float(st['disk_free_mb']):.0f} MB  {serving}",
                      title_justify="left")
        for col in ("camera", "state", "fps", "captured", "stored", "durable", "dropped", "faults"):
            table.add_column(col, justify="left" if col in ("camera", "state") else "right")
        for name, c in st["cameras"].items():
            state = _safe(c["state"])
            style = ("green" if state == "running" else "yellow" if state in ("idle", "stopped")
                     else "red")
            table.add_row(_safe(name), f"[{style}]{state}[/{style}]", f"{float(c['fps']):.1f}",
                          str(c["frames_captured"]), str(c["frames_stored"]),
                          str(c["durable_frames"]), str(c["dropped"]),
                          ("[red]" + str(c["faults"]) + "[/red]") if c["faults"] else "0")
        parts.append(table)
        sensors = sensors_of(st)
        if sensors:
            parts.append(_sensor_table(sensors))
    return Group(*parts)


def _sensor_table(sensors: dict[str, dict]) -> Any:
    """One row per sensor of a STATUS (issue 29): state, rate, samples, read errors, its newest
    value (|a| for an IMU, altitude and pressure for a barometer)."""
    from rich.table import Table

    table = Table(title_justify="left")
    for col in ("sensor", "kind", "state", "Hz", "samples", "read errors", "now"):
        table.add_column(col, justify="left" if col in ("sensor", "kind", "state", "now")
                         else "right")
    for name, s in sensors.items():
        state = "ok" if s["ok"] else f"[red]{_safe(str(s['error'] or 'not reading'))[:60]}[/red]"
        last = s["last"]
        if "accel_g" in last:
            now = f"|a| {last['accel_g']:.2f} g"
        elif "altitude_m" in last:
            now = f"{last['altitude_m']:.1f} m, {last.get('pressure_pa', 0.0) / 1000:.2f} kPa"
        else:
            now = "-"
        rate = s.get("rate_hz")
        table.add_row(_safe(name), _safe(str(s["kind"])), state,
                      f"{float(rate):g}" if isinstance(rate, int | float) else "-",
                      str(s["samples"]), str(s["read_errors"]), now)
    return table


class _JsonLines:
    """Prints the statuses as one JSON line per change: a poll and a broadcast of the same status
    are one line (one object for one board, a list for several)."""

    def __init__(self) -> None:
        self.last = ""

    def __call__(self, res: list[dict]) -> None:
        line = json.dumps(res[0] if len(res) == 1 else res)
        if line != self.last:
            print(line, flush=True)
            self.last = line


def _rc(results: list[dict]) -> int:
    """2 when a board did not answer: a connection error (camctl.cli's rule)."""
    return 2 if any("error" in r for r in results) else 0


def status_many(urls: list[str], *, json_out: bool = False, watch: bool = False,
                timeout_s: float = 5.0, curve: Any = None, events: list[str] | None = None,
                interval_s: float = 1.0, stop: threading.Event | None = None,
                on_update: Callable[[list[dict]], None] | None = None) -> int:
    """``camctl status``: a table per board, or JSON (one object, a list for several boards).

    ``watch`` refreshes until Ctrl-C (or ``stop`` is set): a STATUS poll of every board each
    ``interval_s``, and, for boards whose PUB endpoints are given in ``events``, their live
    ``status`` broadcasts in between (a ``phase`` or ``fault`` broadcast triggers an immediate
    re-poll). With ``json_out`` a watch prints one JSON line per refresh. Exit 2 if a board did not
    answer (in the last refresh): a connection error.
    """
    results = poll_status(urls, timeout_s, curve)
    if not watch:
        if json_out:
            _JsonLines()(results)
        else:
            _console().print(render_status(results))
        return _rc(results)
    from camctl.common.keys import curve_for

    found = events or [events_endpoint(url, r) for url, r in zip(urls, results, strict=False)]
    pubs = [(ep, curve_for(curve, urls[i]) if i < len(urls) else None)
            for i, ep in enumerate(found) if ep]
    results = _watch(urls, results, pubs, json_out=json_out, timeout_s=timeout_s, curve=curve,
                     interval_s=interval_s, stop=stop or threading.Event(), on_update=on_update)
    sys.stdout.flush()
    return _rc(results)


def _watch(urls: list[str], results: list[dict], pubs: list[tuple[str, Any]], *, json_out: bool,
           timeout_s: float, curve: Any, interval_s: float, stop: threading.Event,
           on_update: Callable[[list[dict]], None] | None) -> list[dict]:
    """The ``--watch`` loop of :func:`status_many`; returns the statuses of its last refresh."""
    emit = _JsonLines()
    sub = StatusSubscriber(pubs) if pubs else None
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
                emit(results)
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
            results = poll_status(urls, timeout_s, curve)
            next_poll = time.monotonic() + interval_s
    except KeyboardInterrupt:
        pass
    finally:
        if live is not None:
            live.stop()
        if sub is not None:
            sub.close()
    return results
