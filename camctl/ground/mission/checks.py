"""Go/no-go: the pre-drop checks of every board, as pure functions of the boards' latest status.

A board's view (what :mod:`camctl.ground.mission.watcher` keeps) is a dict: ``name``, ``url``,
``reachable``, ``error``, ``status`` (the board's STATUS object) and ``offset_ms`` (its wall clock
minus the ground's, measured on a STATUS round trip). :func:`evaluate` returns every check of every
board, each with a one-line ``detail``; the banner is green only when every check passes, else it
names each failing one.

Example::

    >>> evaluate([{"name": "a", "reachable": False, "error": "no answer"}])["go"]
    False
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from statistics import median
from typing import Any

from camctl.ground.verdict import BoardFlight, Verdict, flight_done, landed_line, verdict

__all__ = ["Limits", "board_verdict", "camera_rate_ok", "evaluate", "flight_lines", "frame_bytes",
           "lost_at", "recording_minutes", "stage"]

_NOT_FLIGHT = {"SAFE", "ARMED", "LANDED"}
_FLYING = ("DESCENT", "SEPARATION", "TOUCHDOWN")
# may be held by a switch; a descent line active before the drop is a fault
_ARM_LINES = {"arm", "disarm"}


@dataclass(frozen=True)
class Limits:
    """Thresholds of the checks (``camctl mission`` flags)."""

    # a camera's measured rate within 20 % of its schedule for the phase
    rate_tolerance: float = 0.2
    # disk room for at least this many minutes at the flight's schedule
    min_record_min: float = 10.0
    max_clock_ms: float = 50.0  # each board's clock within this of the boards' median


def frame_bytes(cam: dict) -> float | None:
    """Mean encoded frame size (stored frames, else the pre-trigger ring); None when unknown."""
    stored, nbytes = cam.get("frames_stored") or 0, cam.get("bytes_stored") or 0
    if stored > 0 and nbytes > 0:
        return nbytes / stored
    ring, rbytes = cam.get("ring_frames") or 0, cam.get("ring_bytes") or 0
    if ring > 0 and rbytes > 0:
        return rbytes / ring
    return None


def flight_rate(cam: dict) -> float:
    """The camera schedule's highest in-flight rate (DESCENT and after): the worst case for disk."""
    sched = cam.get("schedule")
    if isinstance(sched, dict):
        rates = [float(v) for k, v in sched.items()
                 if k not in _NOT_FLIGHT and isinstance(v, int | float)]
        if rates:
            return max(rates)
    return float(cam.get("target_fps") or 0.0)


def recording_minutes(status: dict) -> float | None:
    """Minutes of recording left on disk at the flight's schedule (every camera); None: unknown."""
    cams = status.get("cameras") or {}
    rate_bytes = 0.0
    for cam in cams.values():
        fb = frame_bytes(cam)
        if fb is None:
            return None
        rate_bytes += fb * flight_rate(cam)
    if rate_bytes <= 0:
        return None
    return float(status.get("disk_free_mb") or 0.0) * 1e6 / rate_bytes / 60.0


def camera_rate_ok(cam: dict, tolerance: float) -> bool:
    target = float(cam.get("target_fps") or 0.0)
    fps = float(cam.get("fps") or 0.0)
    return cam.get("state") == "running" and target > 0 and abs(fps - target) <= tolerance * target


def _check(board: str, name: str, ok: bool, detail: str) -> dict:
    return {"board": board, "check": name, "ok": bool(ok), "detail": detail}


def _board_checks(view: dict, limits: Limits, ref_offset_ms: float | None) -> list[dict]:
    name = view.get("name") or view.get("url", "?")
    if not view.get("reachable"):
        return [_check(name, "reachable", False,
                       f"unreachable: {view.get('error') or 'no answer'}")]
    st = view.get("status") or {}
    out = [_check(name, "reachable", True, "answers STATUS")]
    phase = st.get("phase", "?")
    out.append(_check(name, "armed", phase == "ARMED",
                      f"phase {phase}" + ("" if phase == "ARMED" else " (needs ARMED)")))
    cams = st.get("cameras") or {}
    if not cams:
        out.append(_check(name, "cameras", False, "no cameras in status"))
    for cam_name, cam in cams.items():
        fps, target = float(cam.get("fps") or 0.0), float(cam.get("target_fps") or 0.0)
        out.append(_check(name, f"{cam_name} rate", camera_rate_ok(cam, limits.rate_tolerance),
                          f"{cam_name} {cam.get('state', '?')} at {fps:.1f} fps, "
                          f"schedule {target:g} fps"))
        out.append(_check(name, f"{cam_name} faults", not cam.get("faults"),
                          f"{cam_name} {cam.get('faults', 0)} faults"
                          + (f" ({cam['last_error']})"
                             if cam.get("faults") and cam.get("last_error") else "")))
        out.append(_check(name, f"{cam_name} drops", not cam.get("dropped"),
                          f"{cam_name} {cam.get('dropped', 0)} frames dropped"))
    lines = st.get("lines")
    if isinstance(lines, dict) and lines:
        held = sorted(e for e, level in lines.items() if level and e not in _ARM_LINES)
        out.append(_check(name, "lines", not held,
                          "event lines " + " ".join(f"{e}={lv}" for e, lv in sorted(lines.items()))
                          + (f" ({', '.join(held)} already active)" if held else "")))
    minutes = recording_minutes(st)
    free = float(st.get("disk_free_mb") or 0.0)
    if minutes is None:
        out.append(_check(name, "disk", False,
                          f"{free:.0f} MB free; frame size unknown until armed"))
    else:
        out.append(_check(name, "disk", minutes >= limits.min_record_min,
                          f"{free:.0f} MB free = {minutes:.1f} min at the flight's schedule "
                          f"(need {limits.min_record_min:g})"))
    off = view.get("offset_ms")
    if ref_offset_ms is None or off is None:
        out.append(_check(name, "clock", off is not None or ref_offset_ms is None,
                          "clock offset not measured yet" if off is None else "only board"))
    else:
        d = off - ref_offset_ms
        out.append(_check(name, "clock", abs(d) <= limits.max_clock_ms,
                          f"clock {d:+.1f} ms against the other boards "
                          f"(limit {limits.max_clock_ms:g})"))
    return out


def stage(views: list[dict[str, Any]]) -> str:
    """``"pre-drop"``, ``"in flight"`` (a reachable board in a descent phase), ``"landed"`` (every
    board LANDED and answering) or ``"lost contact"`` (the others are down, a board is silent): the
    banner says GO/NO-GO only before the drop, LANDED only when every board is down."""
    phases = [(v.get("status") or {}).get("phase") for v in views if v.get("reachable")]
    if any(p in _FLYING for p in phases):
        return "in flight"
    if views and len(phases) == len(views) and all(p == "LANDED" for p in phases):
        return "landed"
    last = [(v.get("status") or {}).get("phase") for v in views]  # a silent board's: its last
    if any(v.get("lost_contact") for v in views) or (
            "LANDED" in last and len(phases) < len(views)):
        return "lost contact"
    return "pre-drop"


def lost_at(view: dict[str, Any]) -> str:
    """``in DESCENT at T+4.2 s``: where a board that went silent in flight was last heard."""
    lost = view.get("lost_contact") or {}
    t = lost.get("t_rel_s")
    return f"in {lost.get('phase', '?')}" + (f" at T{t:+.1f} s" if isinstance(t, int | float)
                                             else "")


def board_verdict(view: dict[str, Any], download: dict | None) -> Verdict | None:
    """The board's verdict (:mod:`camctl.ground.verdict`) from its view and its download (the
    mission's ``download`` message: ``facts`` from the downloaded flight once the fetch ended)."""
    st = view.get("status") or {}
    name = str(view.get("name") or view.get("url", "?"))
    phase = str(st.get("phase") or "")
    d = download or {}
    # a camera the board reports failed (its last status) fails the flight's record too
    dead = tuple(n for n, c in (st.get("cameras") or {}).items()
                 if isinstance(c, dict) and c.get("state") == "failed")
    if d.get("facts") and d.get("state") in ("ok", "failed"):
        f = BoardFlight(**{**d["facts"], "board": name})
        f = replace(f, failed=tuple(dict.fromkeys([*f.failed, *dead])))
        # a complete download does not need the board any more; a cut one says it lost it
        contact = bool(view.get("reachable")) or d.get("state") == "ok"
        return verdict(replace(f, final=False, contact=contact, fetching=False,
                               lost_at=lost_at(view) if view.get("lost_contact") and not contact
                               else ""))
    flew = bool(view.get("release_mono_ns") is not None or phase in (*_FLYING, "LANDED")
                or view.get("lost_contact") or not view.get("reachable"))
    return verdict(BoardFlight(name, flew=flew, landed=phase == "LANDED", phase=phase,
                               contact=bool(view.get("reachable")),
                               lost_at=lost_at(view) if view.get("lost_contact") else "",
                               fetching=d.get("state") == "fetching"))


def flight_lines(views: list[dict[str, Any]], verdicts: dict[str, Verdict | None],
                 home: set[str] | None = None) -> list[str]:
    """The banner after the drop: ``2 of 3 boards landed; rig-b: lost contact in DESCENT at
    T+4.2 s`` when a board is not down, then each board's verdict (or why it has none yet).
    ``home``: boards whose flight is downloaded whole (down, even if they stopped answering)."""
    home = home or set()
    names = [str(v.get("name") or v.get("url", "?")) for v in views]
    landed, missing = [], {}
    for name, v in zip(names, views, strict=True):
        phase = (v.get("status") or {}).get("phase")
        if (v.get("reachable") and phase == "LANDED") or name in home:
            landed.append(name)
        elif v.get("lost_contact"):
            missing[name] = f"lost contact {lost_at(v)}"
        elif not v.get("reachable"):
            missing[name] = f"unreachable ({v.get('error') or 'no answer'})"
        else:
            missing[name] = f"in {phase}"
    silent = any(not v.get("reachable") for v in views if v.get("name") not in home)
    out = [landed_line(names, landed, missing)] if missing and (landed or silent) else []
    for name in names:
        vd = verdicts.get(name)
        out.append(f"{name}: {vd}" if vd is not None else f"{name}: no verdict yet")
    return out


def evaluate(views: list[dict[str, Any]], limits: Limits | None = None,
             downloads: dict[str, dict] | None = None) -> dict:
    """``{"go": bool, "failing": [...], "checks": [every check], "stage": ..., "verdicts": {board:
    {kind, reason} or None}, "flight": [banner lines after the drop], "done": bool}``.

    ``failing`` holds one line per failing check; ``downloads`` maps a board to its download
    message. ``done``: every board has a verdict (:func:`camctl.ground.verdict.flight_done`)."""
    limits = limits or Limits()
    downloads = downloads or {}
    offsets = [v["offset_ms"] for v in views
               if v.get("reachable") and v.get("offset_ms") is not None]
    ref = median(offsets) if len(offsets) >= 2 else None
    checks = [c for v in views for c in _board_checks(v, limits, ref)]
    failing = [f"{c['board']}: {c['detail']}" for c in checks if not c["ok"]]
    if not views:
        failing.append("no boards")
    where = stage(views)
    verdicts = {} if where == "pre-drop" else {
        str(v.get("name") or v.get("url", "?")): board_verdict(v, downloads.get(str(v.get("name"))))
        for v in views}
    # a board whose flight was downloaded whole is down, even if it stopped answering since
    home = {b for b, d in downloads.items() if d.get("state") == "ok"}
    if where == "lost contact" and all(
            ((v.get("status") or {}).get("phase") == "LANDED" and v.get("reachable"))
            or (v.get("name") in home and not v.get("lost_contact")) for v in views):
        where = "landed"
    return {"go": not failing, "failing": failing, "checks": checks, "stage": where,
            "verdicts": {b: None if vd is None else vd._asdict() for b, vd in verdicts.items()},
            "flight": [] if where == "pre-drop" else flight_lines(views, verdicts, home),
            "done": where != "pre-drop" and flight_done(verdicts.values())}
