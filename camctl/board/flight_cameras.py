"""A flight's cameras across the runs of the daemon that record it.

``flight.json`` names every camera the flight ever had (``cameras``); when the config changed
between two runs (a camera renamed, added or removed), the resume records it there
(``camera_changes``: per change the run, its wall time, the cameras ``added`` and ``removed``
and the ``cameras`` of that run on) and in the event log
(:class:`~camctl.common.records.CamerasRecord`). An added camera's books start at the resume; a
removed camera's are closed as they stood (:func:`camctl.board.resume.restart_books`). Layout:
docs/store.md, "flight.json".
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from camctl.common.records import CamerasRecord
from camctl.exc import StoreError

__all__ = ["FlightCameras", "flight_cameras", "record_camera_change"]

log = logging.getLogger("camctl.board.daemon")


class FlightCameras:
    """What ``flight.json`` says of a flight's cameras: ``every`` camera it had (in the order they
    joined) and the cameras of its ``last`` run."""

    def __init__(self, every: list[str], last: list[str]) -> None:
        self.every = every
        self.last = last

    def __repr__(self) -> str:
        return f"<FlightCameras every={self.every} last={self.last}>"


def flight_cameras(flight_dir: Path) -> FlightCameras:
    """The flight's cameras from its ``flight.json`` (empty when it cannot be read)."""
    from camctl.store.index import read_flight_json

    try:
        info = read_flight_json(flight_dir)
    except StoreError as exc:
        log.warning("%s", exc)
        return FlightCameras([], [])
    every = [c for c in info.get("cameras", []) if isinstance(c, str)]
    changes = [c for c in info.get("camera_changes", []) if isinstance(c, dict)]
    last = changes[-1].get("cameras") if changes else None
    last = [c for c in last if isinstance(c, str)] if isinstance(last, list) else every
    return FlightCameras(every, last)


def record_camera_change(flight_dir: Path, cameras: Mapping[str, dict], *, run: int,
                         mono_ns: int, wall_ns: int,
                         boot_id: str | None = None) -> CamerasRecord | None:
    """This run records ``cameras`` (name -> role, size, fps, as the open record describes them):
    when they are not the cameras of the flight's last run, say so in ``flight.json`` (written
    atomically, fsync'd) and return the record for the event log; None when nothing changed."""
    from camctl.store.index import FLIGHT_NAME, read_flight_json, write_json_atomic

    had = flight_cameras(flight_dir)
    now = list(cameras)
    added = [c for c in now if c not in had.last]
    removed = [c for c in had.last if c not in now]
    if not added and not removed:
        return None
    rec = CamerasRecord(flight=flight_dir.name, added=tuple(added), removed=tuple(removed),
                        cameras=dict(cameras), mono_ns=mono_ns, wall_ns=wall_ns, boot_id=boot_id,
                        run=run)
    try:
        info: dict[str, Any] = read_flight_json(flight_dir)
        info["cameras"] = had.every + [c for c in now if c not in had.every]
        info["camera_changes"] = [*info.get("camera_changes", []),
                                  {"run": run, "wall_ns": wall_ns, "added": added,
                                   "removed": removed, "cameras": now}]
        write_json_atomic(flight_dir / FLIGHT_NAME, info)
    except (OSError, StoreError) as exc:  # the event log still says it
        log.warning("cannot record the changed cameras in %s: %s", flight_dir / FLIGHT_NAME, exc)
    log.warning("flight %s: cameras changed since its last run: added %s, removed %s",
                flight_dir.name, ", ".join(added) or "none", ", ".join(removed) or "none")
    return rec
