"""The mission page's only door into the ground code: status, commands, resumable fetch, exports.

``camctl.ground`` is being split into client/download/fetch modules and ``camctl.ground.export``
reworked; every name the mission package uses from them is imported here and nowhere else, so a
rename touches one file. The functions take plain values and return plain values (dicts, paths),
never the ground's classes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from camctl.exc import CamctlError
from camctl.ground.status import (
    events_endpoint,  # the board's PUB endpoint: one rule, status's
    sensors_of,  # a STATUS's sensors, well formed
)

__all__ = ["LINK_ERRORS", "StatusLink", "command", "events_endpoint", "export_flights",
           "fetch_boards", "flight_losses", "flight_time", "listing_total", "release_mono_ns",
           "sensors_of"]

# A board that does not answer, drops the link or answers with ERROR: the mission shows it, never
# crashes.
LINK_ERRORS: tuple[type[BaseException], ...] = (CamctlError,)


class StatusLink:
    """One board's STATUS poll socket (a DEALER; a timeout or a dropped link recreates it)."""

    def __init__(self, url: str, *, timeout_s: float = 1.0, curve: Any = None) -> None:
        from camctl.ground import Client

        self.url = url
        self._client = Client(url, timeout_s=timeout_s, curve=curve)

    def status(self) -> dict:
        return self._client.status()

    def close(self) -> None:
        self._client.close()


def command(url: str, name: str, *, curve: Any = None, timeout_s: float = 5.0) -> dict:
    """Send an operator COMMAND (the caller restricts ``name``); the board's DONE result."""
    from camctl.ground import Client

    with Client(url, timeout_s=timeout_s, curve=curve) as client:
        return client.command(name)


def listing_total(url: str, *, curve: Any = None, timeout_s: float = 5.0) -> tuple[str, int]:
    """(board name, bytes of every file the board serves) for a progress bar."""
    from camctl.ground import Client

    with Client(url, timeout_s=timeout_s, curve=curve) as client:
        board = client.hello().board
        return board, sum(s.size for s in client.list())


def fetch_boards(urls: list[str], out: Path, *, curve: Any = None,
                 give_up_after_s: float = 30.0) -> dict[str, dict]:
    """``camctl fetch`` of these boards into ``out/<board>/...`` (resumable, previews first, sha256
    checked; it holds ``out`` for the whole call). Returns ``{url: {"ok", "board", "errors"}}``."""
    from camctl.ground import fetch

    report = fetch(list(urls), Path(out), give_up_after_s=give_up_after_s, progress=False,
                   curve=curve)
    return {b.url: {"ok": b.ok, "board": b.board, "errors": list(b.errors)} for b in report.boards}


def export_flights(root: Path, out: Path) -> dict[str, list[Path]]:
    """The CLI's ``camctl export`` (MP4s, contact sheet, timeline) of every flight in ``root``."""
    from camctl.ground.export import export_all

    res = export_all(Path(root), Path(out), mp4=True, contact_sheet=True, timeline=True,
                     frames=False, progress=False)
    return {"mp4": list(res.mp4), "contact_sheet": list(res.contact_sheets),
            "timeline": list(res.timelines)}


def flight_time(flight_dir: Path) -> tuple[int | None, dict[int, int]]:
    """(the release edge on the flight's timeline, or None: not logged; each run's clock offset
    onto that timeline) from a downloaded flight's events. A release applied at a resume from the
    line level is no edge (camctl.ground.flights.TimeBase)."""
    from camctl.ground.export.flightset import load_flight
    from camctl.ground.flights import FlightRef

    fl = load_flight(FlightRef(board="", flight=Path(flight_dir).name, path=Path(flight_dir)))
    offsets = {k: r.offset_ns for k, r in fl.clock.runs.items() if r.mapped}
    return (fl.tb.t0_ns if fl.tb.aligned else None), offsets


def release_mono_ns(flight_dir: Path) -> int | None:
    """The release edge (on the flight's timeline: run 0's monotonic ns) from a downloaded flight's
    events; None: not logged."""
    return flight_time(flight_dir)[0]


def flight_losses(flight_dir: Path) -> dict:
    """What a downloaded flight's event log says was lost, for the board's card: ``{"lost_frames",
    "losses_without_seqs", "losses_total", "losses"}`` -- the frames lost (distinct seqs), the
    records too old to name their seqs, the ``ls`` count (``losses 2 (5 frames lost)``) and one
    line per loss record (:func:`camctl.common.losses.describe_loss`: exact seqs, where, why);
    ``losses`` empty when nothing was lost."""
    from camctl.ground.flights import flight_losses as losses_of
    from camctl.ground.flights import load_events, loss_dicts, loss_totals
    from camctl.ground.views import loss_lines, losses_count

    records = loss_dicts(losses_of(load_events(Path(flight_dir))))
    totals = loss_totals(losses_of(records))
    return {"lost_frames": totals["frames"], "losses_without_seqs": totals["unknown"],
            "losses_total": losses_count(records) if records else "",
            "losses": loss_lines(records, indent="")}
