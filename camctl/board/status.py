"""What a board says about itself: the ``status`` dict (STATUS replies, the PUB status topic) and
the one-line sd_notify STATUS. Field names are part of the interface (``docs/protocol.md``): scripts
and the mission page depend on them.
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Any

from camctl import __version__
from camctl.board.capture import CameraRunner
from camctl.common.ledger import add_books, store_reason

if TYPE_CHECKING:
    from camctl.board.daemon import Daemon

__all__ = ["board_status", "camera_status", "sensors_status", "status_line"]

_NO_BOOKS = {"captured": 0, "aged_out": 0, "dropped": {}, "stills_missed": 0}


def board_status(d: Daemon) -> dict[str, Any]:
    """The board's status now: phase, flight, disk, serving, lines, every camera and sensor."""
    store = d.store
    store_stats = store.stats() if store is not None else {}
    totals = d.ledger.totals()
    before = d.recorder.before
    cams = {name: camera_status(runner, store_stats.get(name, {}), totals.get(name),
                                unavailable=d.fleet.unavailable.get(name),
                                before=before.get(name))
            for name, runner in d.runners.items()}
    return {
        "board": d.board,
        "phase": d.phase,
        "flight": d.flight,
        "resumed": d.resumed,
        # this run of the daemon in the current flight and its clock on the flight's timeline
        # (flight_ns = mono_ns + clock_offset_ns; camctl.common.flightclock): 0, 0 unless resumed
        **_run_clock(d.resumed, d.flight),
        "disk_free_mb": round(d.disk_free_mb(), 1),
        # the store's filesystem is full (whoever filled it): the board serves, records nothing
        "disk_full": bool(getattr(d, "disk_full", lambda: False)()),
        "serving": d.serving(),
        "checking": d.checking,  # the older flight the check after boot is on (held back), or None
        "version": __version__,
        "pid": os.getpid(),
        "uptime_s": round((time.monotonic_ns() - d.started_ns) / 1e9, 3),
        "mono_ns": time.monotonic_ns(),
        "wall_ns": time.time_ns(),
        "events_port": _events_port(d.publisher),
        # the publisher process (camctl.board.publish.process): pid, rss_mb, restarts
        "publisher": d.publisher.info() if hasattr(d.publisher, "info") else None,
        "lines": _line_levels(d.lines),
        "flights": d.recorder.flights(),
        "cameras": cams,
        # each [[sensors]] source: camctl.board.sensors.sampler.SensorSampler.status (live g and
        # altitude before the drop, ok/error: the mission page's NO-GO)
        "sensors": sensors_status(d),
    }


def sensors_status(d: Daemon) -> dict[str, dict[str, Any]]:
    """Each ``[[sensors]]`` table's STATUS (:meth:`SensorSampler.status`), in config order; one
    whose device could not be built has the same shape, ``ok`` false and its ``error``."""
    samplers = getattr(d, "samplers", {})
    errors = getattr(d, "sensor_errors", {})
    out: dict[str, dict[str, Any]] = {}
    for s in d.cfg.sensors:
        if s.name in samplers:
            out[s.name] = samplers[s.name].status()
        elif s.name in errors:
            out[s.name] = {"kind": s.kind, "backend": s.backend, "rate_hz": s.rate_hz,
                           "bus": s.bus, "address": s.address, "ok": False,
                           "error": errors[s.name], "samples": 0, "read_errors": 0, "last": {},
                           "age_s": None, "up_axis": s.up_axis}
    return out


def _run_clock(resumed: dict[str, Any] | None, flight: str) -> dict[str, Any]:
    if not resumed or resumed.get("flight") != flight:
        return {"run": 0, "clock_offset_ns": 0}
    return {"run": resumed.get("run") or 0, "clock_offset_ns": resumed.get("clock_offset_ns")}


def camera_status(runner: CameraRunner, st: dict, books: dict | None, *,
                  unavailable: str | None = None, before: dict | None = None) -> dict[str, Any]:
    """One camera: the runner's snapshot, the store's counts ``st`` and this run's ``books``, on
    top of ``before``: the flight's books before this run of the daemon (a resumed flight; its
    ``stored`` frames too), so STATUS gives the whole flight's books, as ``ls`` does."""
    snap = runner.snapshot()
    led = add_books(before, books) if before else (books or _NO_BOOKS)
    if before and books is None:
        books = led
    dropped = dict(led["dropped"])  # this flight's losses by reason: the runner's and the store's
    for reason, n in (st.get("dropped") or {}).items():
        key = store_reason(reason)
        dropped[key] = dropped.get(key, 0) + n
    earlier = int((before or {}).get("stored", 0))  # stored by the runs before this one
    stored = earlier + int(st.get("frames_stored", 0))
    pending = runner.in_pipeline + int(st.get("queued", 0))
    state, last_error = snap["state"], snap["last_error"]
    if runner.isolated:
        state = "isolated"
    elif unavailable is not None and snap["frames_captured"] == 0:
        state, last_error = "unavailable", unavailable
    return {
        "state": state,
        "fps": snap["fps"],
        # the ledger's captured (docs/ledger.md), the number ls shows: the runner's own count
        # (the same definition) only before the board's first flight
        "frames_captured": led["captured"] if books is not None else snap["frames_captured"],
        "frames_stored": stored,
        "durable_frames": earlier + int(st.get("durable_frames", 0)),
        "dropped": sum(dropped.values()),
        "faults": snap["faults"],
        "role": runner.cfg.role,
        "target_fps": snap["target_fps"],
        "schedule": dict(runner.cfg.fps),  # rate by phase: the mission page sizes the disk by it
        # mean JPEG bytes of a video frame by phase, this flight: as recorded, or for a flight
        # phase not recorded yet measured at ARM (frame_bytes_source says which; docs/protocol.md)
        "frame_bytes_by_phase": snap["frame_bytes_by_phase"],
        "frame_bytes_source": snap["frame_bytes_source"],
        "frames_encoded": snap["frames_encoded"],
        "sensor_gaps": snap["sensor_gaps"],
        "pretrigger_flushed": snap["pretrigger_flushed"],
        "ring_frames": snap["ring_frames"],
        # with ring_frames: the frame size before anything is stored
        "ring_bytes": snap["ring_bytes"],
        "stills": snap["stills"],
        "restarts": snap["restarts"],
        "bytes_stored": int(st.get("bytes", 0)),
        "dropped_by_reason": dropped,
        "last_error": last_error,
        "activity": runner.activity,
        # captured = stored + dropped + aged_out (+ pending while frames are on their way)
        "ledger": {"captured": led["captured"], "stored": stored, "dropped": sum(dropped.values()),
                   "aged_out": led["aged_out"], "pending": pending,
                   "stills_missed": led["stills_missed"]},
    }


def status_line(st: dict[str, Any]) -> str:
    """The sd_notify STATUS line of a status dict: phase, flight, stored/durable frames, free disk,
    cameras and sensors down."""
    cams = st["cameras"]
    frames = " ".join(f"{n}={c['frames_stored']}/{c['durable_frames']}" for n, c in cams.items())
    line = (f"{st['phase']} flight={st['flight'] or '-'} stored/durable {frames} "
            f"free={st['disk_free_mb']}MB{' DISK FULL' if st.get('disk_full') else ''}")
    down = ("unavailable", "isolated")
    bad = [f"{n}={c['state']}" for n, c in cams.items() if c["state"] in down]
    # a sensor not reading (never opened, dead, failing): the board flies on without it
    quiet = [n for n, s in (st.get("sensors") or {}).items() if not s.get("ok")]
    return (line + (f" cameras down: {' '.join(bad)}" if bad else "")
            + (f" sensors down: {' '.join(quiet)}" if quiet else ""))


def _line_levels(lines: Any) -> dict[str, int]:
    """Each event line's level as the board reads it now (1 = active), for the mission page's
    checks."""
    if lines is None:
        return {}
    levels = {}
    for event in lines.events:
        try:
            levels[event] = int(lines.is_active(event))
        except Exception:  # a line that cannot be read is left out, never a failed STATUS
            continue
    return levels


def _events_port(publisher: Any) -> int | None:
    endpoint = getattr(publisher, "pub_endpoint", "") or ""
    tail = endpoint.rsplit(":", 1)[-1]
    return int(tail) if endpoint.startswith("tcp://") and tail.isdigit() else None
