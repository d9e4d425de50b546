"""The first look after a flight: ``camctl fetch --first-look``.

Fetches the previews and event logs of every board (a thumbs-only :func:`camctl.ground.fetch`),
draws the contact sheet from them (:func:`camctl.ground.export.sheet.sheet_from_previews`: frames
around every event, every camera of every board) and says how long after touchdown it is ready, from
each board's own logged touchdown edge (wall clock). A flight recorded across a reboot is read on
its one timeline (:func:`camctl.ground.export.flightset.load_flight`): its events, the previews
that name their run, and the sheet's header says where the board rebooted. The full download can
follow with a plain ``camctl fetch`` into the same folder.

Example::

    $ camctl fetch --connect tcp://rig-a:5555 --connect tcp://rig-b:5555 --out drop-3 --first-look
    first look: drop-3/first-look.png (38 previews from 2/2 boards), 14.2 s after touchdown
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from camctl.common.protocol import printable
from camctl.ground.extra import require_ground
from camctl.ground.flights import FlightRef, find_flights

__all__ = ["FirstLook", "first_look", "first_look_main", "since_touchdown_s",
           "touchdown_words"]

SHEET_NAME = "first-look.png"


@dataclass
class FirstLook:
    """What :func:`first_look` did: the fetch report, the sheet (None when there were no previews)
    and the seconds from each board's touchdown edge to the sheet (None for a board that logged no
    touchdown)."""

    report: Any
    sheet: Path | None
    since_touchdown_s: dict[str, float | None] = field(default_factory=dict)


def since_touchdown_s(ref: FlightRef, now_ns: int) -> float | None:
    """Seconds from the flight's touchdown edge (its logged mono time placed on the flight's
    timeline, across a reboot too, and mapped to the board's wall clock) to ``now_ns`` on this
    machine's wall clock: as right as the clocks agree (chrony on the boards and the laptop, see
    hardware/)."""
    from camctl.ground.export.flightset import load_flight

    tb = load_flight(ref).tb
    t = tb.event_ns.get("touchdown")
    if t is None or tb.wall_offset_ns is None:
        return None
    return (now_ns - (t + tb.wall_offset_ns)) / 1e9


def _latest(refs: list[FlightRef], boards: set[str]) -> list[FlightRef]:
    """The newest flight of each fetched board (flight ids sort by time)."""
    best: dict[str, FlightRef] = {}
    for r in refs:
        if r.board in boards and (r.board not in best or r.flight > best[r.board].flight):
            best[r.board] = r
    return [best[b] for b in sorted(best)]


def first_look(urls: list[str], out: Path, *, give_up_after_s: float = 30.0, curve: Any = None,
               progress: bool = False, flight: str = "latest", timeout_s: float | None = None,
               sheet: Path | None = None) -> FirstLook:
    """Fetch every board's previews into ``out`` and draw the sheet (``sheet``, default
    ``out/first-look.png``) from the newest flight of each (``flight`` and ``timeout_s`` as for
    :func:`camctl.ground.fetch`). ConfigError, before anything is fetched, when Pillow (the
    ``ground`` extra) cannot be imported."""
    from camctl.ground import fetch
    from camctl.ground.export.sheet import has_previews, sheet_from_previews

    require_ground("camctl fetch --first-look", ["PIL"])  # the sheet is drawn with Pillow
    out = Path(out)
    report = fetch(urls, out, give_up_after_s=give_up_after_s, thumbs_only=True, progress=progress,
                   curve=curve, flight=flight, timeout_s=timeout_s)
    refs = _latest(find_flights(out), {b.board for b in report.boards if b.board})
    drawn = None
    if any(has_previews(r.path) for r in refs):
        drawn = Path(sheet) if sheet is not None else out / SHEET_NAME
        sheet_from_previews(refs, drawn)
    now = time.time_ns()
    return FirstLook(report, drawn, {r.board: since_touchdown_s(r, now) for r in refs})


def touchdown_words(look: FirstLook) -> str:
    """How long after touchdown the sheet is ready (the latest board's), or why that is not known:
    ``no touchdown logged by rig-a`` names the boards that answered without one; a board that was
    not reached is ``rig-b unreachable`` (or ``refused``: its touchdown is unknown, not
    missing)."""
    since = [s for s in look.since_touchdown_s.values() if s is not None]
    words = [f"{max(since):.2f} s after touchdown"] if since else []
    silent = sorted(b for b, s in look.since_touchdown_s.items() if s is None)
    if silent:
        words.append(f"no touchdown logged by {', '.join(silent)}")
    words += [f"{b.board or b.url} {'unreachable' if b.unreachable else 'refused'}"
              for b in look.report.boards
              if (b.unreachable or b.refused) and b.board not in look.since_touchdown_s]
    return "; ".join(words) or "no touchdown logged"


def first_look_main(args: argparse.Namespace, curve: Any = None) -> int:
    """``camctl fetch --first-look``: one line with the sheet's path and the time since touchdown.

    0 when every board answered and the sheet was drawn, 1 when a board's previews are missing or
    incomplete, 2 when a board could not be reached (camctl.cli's exit-code rule)."""
    look = first_look(args.connect, Path(args.out), give_up_after_s=args.give_up_after, curve=curve,
                      progress=not getattr(args, "quiet", False),
                      flight=getattr(args, "flight", "latest"),
                      timeout_s=max(0.1, min(args.timeout, args.give_up_after)))
    rep = look.report
    ok_boards = sum(b.ok for b in rep.boards)
    when = touchdown_words(look)
    previews = sum(b.thumbs for b in rep.boards)
    if look.sheet is not None:
        print(f"first look: {look.sheet} ({previews} previews from "
              f"{ok_boards}/{len(rep.boards)} boards), {when}")
    else:
        print(f"first look: no previews from {len(rep.boards)} boards ({when})")
    for b in rep.boards:
        if not b.ok:
            state = ("unreachable" if b.unreachable else "refused" if b.refused
                     else "incomplete")
            detail = ": " + "; ".join(b.errors) if b.errors else ""
            print(printable(f"  {b.board or '?'} ({b.url}): {state}{detail}", 2000))
    if any(b.unreachable or b.refused for b in rep.boards):
        return 2
    return 0 if rep.ok and look.sheet is not None else 1
