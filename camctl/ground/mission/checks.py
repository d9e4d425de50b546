"""Go/no-go: the pre-drop checks of every board, as pure functions of the boards' latest status.

A board's view (what :mod:`camctl.ground.mission.watcher` keeps) is a dict: ``name``, ``url``,
``reachable``, ``error``, ``status`` (the board's STATUS object) and ``offset_ms`` (its wall clock
minus the ground's, measured on a STATUS round trip). :func:`evaluate` returns every check of every
board, each with a one-line ``detail``; the banner is green only when every check passes, else it
names each failing one. Before the drop a board's sensors (STATUS ``sensors``) are checked too
(:func:`sensor_checks`): a sensor that does not read, or an IMU not hanging at 1 g along its up
axis, is NO-GO.

Example::

    >>> evaluate([{"name": "a", "reachable": False, "error": "no answer"}])["go"]
    False
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass, replace
from statistics import median
from typing import Any

from camctl.ground.mission.ground_link import sensors_of
from camctl.ground.verdict import BoardFlight, Verdict, flight_done, landed_line, verdict

__all__ = ["DiskEstimate", "FrameSizes", "Limits", "board_verdict", "camera_rate_ok",
           "disk_estimate", "evaluate", "flight_lines", "frame_bytes", "lost_at",
           "phase_frame_bytes", "recording_minutes", "sensor_checks", "stage", "tilt"]

_NOT_FLIGHT = {"SAFE", "ARMED", "LANDED"}
_FLYING = ("DESCENT", "SEPARATION", "TOUCHDOWN")
# may be held by a switch; a descent line active before the drop is a fault
_ARM_LINES = {"arm", "disarm"}
# the phases in which a sensor must read 1 g along its up axis: on the hook. From the release on,
# free fall (0 g), the canopy shock and the impact are what it is there to measure, not faults
_AT_REST = ("SAFE", "ARMED")
_AXES = {"x": 0, "y": 1, "z": 2}
_OPPOSITE = {"+": "-", "-": "+"}
_G = 9.80665  # m/s^2, one standard gravity (camctl.store.sources.G: the boards' accel_g unit)


@dataclass(frozen=True)
class Limits:
    """Thresholds of the checks (``camctl mission`` flags)."""

    # a camera's measured rate within 20 % of its schedule for the phase
    rate_tolerance: float = 0.2
    # disk room for at least this many minutes at the flight's schedule
    min_record_min: float = 10.0
    max_clock_ms: float = 50.0  # each board's clock within this of the boards' median
    # an IMU at rest reads |a| within this of 1 g, within this angle of its up axis
    g_tolerance: float = 0.15
    max_tilt_deg: float = 30.0
    max_sensor_age_s: float = 1.0  # a sensor's newest sample no older than this
    # a barometer's plausible pressure on the ground: ~9 km above sea level to ~700 m below in
    # the standard atmosphere (BMP280 datasheet BST-BMP280-DS001 "Key parameters": 300-1100 hPa
    # "equiv. to +9000...-500 m"); the BMP390's operating range starts at 300 hPa too
    # (BST-BMP390-DS002 "Key parameters", 300-1250 hPa). 0 Pa or a part's reset values are not
    pressure_kpa: tuple[float, float] = (30.0, 110.0)


def frame_bytes(cam: dict) -> float | None:
    """Mean encoded frame size (stored frames, else the pre-trigger ring); None when unknown.

    Before the drop both hold ARMED's frames only: a camera whose flight frames are bigger (a
    ``lores_size`` or a lower quality while armed) needs :func:`phase_frame_bytes`."""
    stored, nbytes = cam.get("frames_stored") or 0, cam.get("bytes_stored") or 0
    if stored > 0 and nbytes > 0:
        return nbytes / stored
    ring, rbytes = cam.get("ring_frames") or 0, cam.get("ring_bytes") or 0
    if ring > 0 and rbytes > 0:
        return rbytes / ring
    return None


def flight_rate(cam: dict) -> float:
    """The camera schedule's highest in-flight rate (DESCENT and after)."""
    rates = [_rate(cam, p) for p in _flight_phases(cam)]
    return max(rates) if rates else float(cam.get("target_fps") or 0.0)


def _flight_phases(cam: dict) -> list[str]:
    sched = cam.get("schedule")
    if not isinstance(sched, dict):
        return []
    return [k for k, v in sched.items() if k not in _NOT_FLIGHT and isinstance(v, int | float)]


def _rate(cam: dict, phase: str) -> float:
    """The camera's rate in ``phase``: its schedule's, else ARMED's (as the board's
    ``CameraConfig.fps_for``), else its target."""
    sched = cam.get("schedule") if isinstance(cam.get("schedule"), dict) else {}
    for key in (phase, "ARMED"):
        if isinstance(sched.get(key), int | float):
            return float(sched[key])
    return float(cam.get("target_fps") or 0.0)


def phase_frame_bytes(cam: dict, learned: dict[str, float] | None = None) -> dict[str, float]:
    """The camera's mean frame size by phase, where known: the board's own ``frame_bytes_by_phase``
    (as recorded, or measured at ARM) over the sizes the ground saw recorded (``learned``,
    :class:`FrameSizes`)."""
    out = {k: float(v) for k, v in (learned or {}).items() if v and v > 0}
    told = cam.get("frame_bytes_by_phase")
    if isinstance(told, dict):
        out.update({str(k): float(v) for k, v in told.items()
                    if isinstance(v, int | float) and v > 0})
    return out


@dataclass(frozen=True)
class DiskEstimate:
    """``minutes`` of recording the free disk holds in the flight's heaviest ``phase`` (``bps``
    bytes a second, every camera); ``assumed``: cameras none of whose flight frames are known, for
    which their measured (armed) size stands in. A flight phase not measured of a camera with
    others measured takes the biggest of those."""

    minutes: float
    phase: str
    bps: float
    assumed: tuple[str, ...] = ()


def disk_estimate(status: dict, learned: dict[str, dict[str, float]] | None = None
                  ) -> DiskEstimate | None:
    """Minutes of recording left on disk at the flight's schedule: in each flight phase, every
    camera's rate in it times its frame size in it; the heaviest phase decides. None: unknown.

    ``learned``: camera -> phase -> mean frame size the ground saw recorded (:class:`FrameSizes`).
    """
    cams = status.get("cameras") or {}
    sizes = {n: phase_frame_bytes(c, (learned or {}).get(n)) for n, c in cams.items()}
    phases = sorted({p for c in cams.values() for p in _flight_phases(c)}) or ["flight"]
    best: tuple[float, str] | None = None
    assumed: set[str] = set()
    for phase in phases:
        bps = 0.0
        for name, cam in cams.items():
            size = sizes[name].get(phase)
            if size is None:  # the biggest flight frames known of it, else its armed ones
                flown = [v for p, v in sizes[name].items() if p not in _NOT_FLIGHT]
                size = max(flown) if flown else frame_bytes(cam)
                if size is None:
                    return None
                if not flown:
                    assumed.add(name)
            bps += size * (_rate(cam, phase) if phase != "flight" else flight_rate(cam))
        if best is None or bps > best[0]:
            best = (bps, phase)
    if best is None or best[0] <= 0:
        return None
    minutes = float(status.get("disk_free_mb") or 0.0) * 1e6 / best[0] / 60.0
    return DiskEstimate(minutes, best[1], best[0], tuple(sorted(assumed)))


def recording_minutes(status: dict, learned: dict[str, dict[str, float]] | None = None
                      ) -> float | None:
    """Minutes of recording left on disk at the flight's schedule (:func:`disk_estimate`)."""
    est = disk_estimate(status, learned)
    return None if est is None else est.minutes


class FrameSizes:
    """Each camera's mean frame size by phase as the board recorded it, learned from its successive
    STATUS replies (``frames_stored`` / ``bytes_stored`` grow by the frames of the phase it is in).

    The pre-trigger ring (ARMED's frames, ``ring_frames`` / ``ring_bytes`` in the last ARMED
    status) is stored just after the release: those first frames are ARMED's, not the descent's.
    An interval that spans a phase change is not used (its frames are of both). Sizes are kept
    across flights, so the next drop's pre-drop check uses the last flight's."""

    MIN_FRAMES = 3  # a phase's size once this many of its frames were seen stored

    def __init__(self) -> None:
        self._last: dict[tuple[str, str], tuple] = {}
        self._owed: dict[tuple[str, str], list[float]] = {}
        self._acc: dict[tuple[str, str], dict[str, list[float]]] = {}
        self._lock = threading.Lock()

    def update(self, view: dict) -> None:
        """Take one board view (the watcher's: ``name``, ``reachable``, ``status``); thread-safe
        (the watcher's threads call it)."""
        if not view.get("reachable"):
            return
        with self._lock:
            self._update(view)

    def _update(self, view: dict) -> None:
        st = view.get("status") or {}
        board, phase, flight = view.get("name") or view.get("url", "?"), st.get("phase"), \
            st.get("flight")
        for cam_name, cam in (st.get("cameras") or {}).items():
            key = (board, cam_name)
            now = (phase, flight, int(cam.get("frames_stored") or 0),
                   int(cam.get("bytes_stored") or 0), int(cam.get("ring_frames") or 0),
                   int(cam.get("ring_bytes") or 0))
            prev = self._last.get(key)
            if prev is not None and prev[1] == flight and (now[2] < prev[2] or now[3] < prev[3]):
                continue  # an older status (the poll's and the PUB's cross): counts only grow
            self._last[key] = now
            if prev is None or prev[1] != flight:
                self._owed.pop(key, None)  # a new flight: its counts start over
                continue
            if prev[0] == "ARMED" and phase != "ARMED" and prev[4] > 0:
                owed = self._owed.setdefault(key, [0.0, 0.0])
                owed[0] += prev[4]
                owed[1] += prev[5]
            frames, nbytes = float(now[2] - prev[2]), float(now[3] - prev[3])
            owed = self._owed.get(key)
            if owed and owed[0] > 0 and frames > 0:
                take = min(frames, owed[0])
                took = owed[1] * take / owed[0]
                self._add(key, "ARMED", take, took)
                owed[0] -= take
                owed[1] -= took
                frames, nbytes = frames - take, max(0.0, nbytes - took)
            if frames > 0 and prev[0] == phase and phase not in ("SAFE", "LANDED"):
                self._add(key, phase, frames, nbytes)

    def _add(self, key: tuple[str, str], phase: str, frames: float, nbytes: float) -> None:
        acc = self._acc.setdefault(key, {}).setdefault(phase, [0.0, 0.0])
        acc[0] += frames
        acc[1] += nbytes

    def of(self, board: str) -> dict[str, dict[str, float]]:
        """camera -> phase -> mean frame size seen recorded on ``board``."""
        out: dict[str, dict[str, float]] = {}
        with self._lock:
            acc = [(k, {p: tuple(v) for p, v in ph.items()}) for k, ph in self._acc.items()]
        for (b, cam), phases in acc:
            if b == board:
                out[cam] = {p: nb / n for p, (n, nb) in phases.items() if n >= self.MIN_FRAMES}
        return out


def camera_rate_ok(cam: dict, tolerance: float) -> bool:
    target = float(cam.get("target_fps") or 0.0)
    fps = float(cam.get("fps") or 0.0)
    return cam.get("state") == "running" and target > 0 and abs(fps - target) <= tolerance * target


def _check(board: str, name: str, ok: bool, detail: str) -> dict:
    return {"board": board, "check": name, "ok": bool(ok), "detail": detail}


def tilt(last: dict[str, float], up_axis: str) -> tuple[float, str] | None:
    """``(degrees, axis)``: the angle between the IMU's measured acceleration and its ``up_axis``
    (``"+z"``), and the signed axis nearest the measured vector (``"-x"``: up is -x). None when the
    sample has no axes or no acceleration to tell up by (under 0.2 g, as in free fall).

    At rest an accelerometer reads the reaction to gravity, +1 g along the axis that points up
    (Android's SensorEvent TYPE_ACCELEROMETER: "Ad = -g - sum(F)/mass"; Cordova's Acceleration:
    lying flat facing up reads x=0, y=0, z=9.81), which is what ``[[sensors]] up_axis`` names."""
    try:
        a = [float(last[f"accel_{c}_mps2"]) for c in "xyz"]
    except KeyError:
        return None
    norm = math.sqrt(sum(v * v for v in a))
    if norm < 0.2 * _G or len(up_axis) != 2 or up_axis[1] not in _AXES:
        return None
    sign = -1.0 if up_axis[0] == "-" else 1.0
    cos = max(-1.0, min(1.0, sign * a[_AXES[up_axis[1]]] / norm))
    i = max(range(3), key=lambda k: abs(a[k]))
    return math.degrees(math.acos(cos)), ("-" if a[i] < 0 else "+") + "xyz"[i]


def _g_of(last: dict[str, float]) -> float | None:
    if "accel_g" in last:
        return last["accel_g"]
    axes = [last.get(f"accel_{c}_mps2") for c in "xyz"]
    if any(v is None for v in axes):
        return None
    return math.sqrt(sum(v * v for v in axes if v is not None)) / _G


def _since(base: dict | None) -> str:
    return {"arming": "since arming", "disarm": "since disarm",
            "restart": "since its count restarted"}.get(str((base or {}).get("at")),
                                                        "since the mission first saw it")


def sensor_checks(board: str, status: dict, base: dict[str, dict] | None,
                  limits: Limits) -> list[dict]:
    """The checks of a board's sensors before the drop (``SAFE``/``ARMED``; none in any other
    phase, none for a board without sensors): each reads, its newest sample is fresh, its read
    errors did not grow since ``base`` (the watcher's ``sensor_base``: the counts at arming,
    disarm or first sight), an IMU reads 1 g along its up axis, a barometer a plausible pressure.
    A sensor that does not read gets its health check only (its values are old)."""
    if status.get("phase") not in _AT_REST:
        return []
    out: list[dict] = []
    for name, s in sensors_of(status).items():
        kind, last, age = s["kind"], s["last"], s["age_s"]
        label = name if name == kind else f"{name} ({kind})"
        errors = s["read_errors"] if isinstance(s["read_errors"], int) else 0
        b = (base or {}).get(name) or {}
        grew = errors - int(b.get("read_errors") or 0) if "read_errors" in b else 0
        why = s["error"] or ""
        if not s["ok"] or not isinstance(age, int | float):
            health = (f"{label} not reading: "
                      + (why or ("no sample yet" if age is None else "reported not ok")))
        elif age > limits.max_sensor_age_s:
            health = (f"{label} last sample {age:.1f} s old "
                      f"(limit {limits.max_sensor_age_s:g} s): not reading")
        elif grew > 0:
            health = (f"{label} {grew} read errors {_since(b)}"
                      + (f" ({why})" if why else "") + ": a loose wire or a failing part")
        else:
            health = ""
        rate = s.get("rate_hz")
        out.append(_check(board, f"{name} sensor", not health, health or (
            f"{label} {s['backend']} reading"
            + (f" at {rate:g} Hz" if isinstance(rate, int | float) and rate else "")
            + f", {errors} read errors")))
        if health:
            continue
        if kind == "imu":
            out += _imu_checks(board, name, label, last, str(s["up_axis"]), limits)
        elif kind == "baro":
            out.append(_baro_check(board, name, label, last, limits))
    return out


def _imu_checks(board: str, name: str, label: str, last: dict[str, float], up: str,
                limits: Limits) -> list[dict]:
    g = _g_of(last)
    tol = limits.g_tolerance
    if g is None:
        return [_check(board, f"{name} g", False, f"{label} sample has no acceleration")]
    out = [_check(board, f"{name} g", abs(g - 1.0) <= tol,
                  f"{label} |a| {g:.2f} g" + ("" if abs(g - 1.0) <= tol else
                                                 f" at rest (want 1 \u00b1 {tol:g} g): "
                                                 "moving, or a wrong range or scale"))]
    t = tilt(last, up)
    if t is None:
        return out
    deg, axis = t
    if deg <= limits.max_tilt_deg:
        out.append(_check(board, f"{name} tilt", True,
                          f"{label} up {up}, tilt {deg:.0f} deg (limit "
                          f"{limits.max_tilt_deg:g})"))
        return out
    what = ("board upside down" if deg >= 135 else "board lying on its side" if deg >= 60
            else f"board tilted {deg:.0f} deg")
    out.append(_check(board, f"{name} tilt", False,
                      f"{label} {what}: gravity along {_OPPOSITE[axis[0]]}{axis[1]} (up is "
                      f"{axis}), expected up {up}; tilt {deg:.0f} deg > {limits.max_tilt_deg:g}"))
    return out


def _baro_check(board: str, name: str, label: str, last: dict[str, float],
                limits: Limits) -> dict:
    pa = last.get("pressure_pa")
    if pa is None:
        return _check(board, f"{name} pressure", False, f"{label} sample has no pressure")
    lo, hi = limits.pressure_kpa
    ok = lo <= pa / 1e3 <= hi
    alt = last.get("altitude_m")
    return _check(board, f"{name} pressure", ok,
                  f"{label} {pa / 1e3:.1f} kPa"
                  + (f", {alt:.1f} m" if alt is not None and ok else "")
                  + ("" if ok else f" implausible (want {lo:g}-{hi:g} kPa): a dead or "
                                   "unconfigured part"))


def _board_checks(view: dict, limits: Limits, ref_offset_ms: float | None,
                  learned: dict[str, dict[str, float]] | None = None) -> list[dict]:
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
    out += sensor_checks(name, st, view.get("sensor_base"), limits)
    lines = st.get("lines")
    if isinstance(lines, dict) and lines:
        held = sorted(e for e, level in lines.items() if level and e not in _ARM_LINES)
        out.append(_check(name, "lines", not held,
                          "event lines " + " ".join(f"{e}={lv}" for e, lv in sorted(lines.items()))
                          + (f" ({', '.join(held)} already active)" if held else "")))
    est = disk_estimate(st, learned)
    free = float(st.get("disk_free_mb") or 0.0)
    if est is None:
        out.append(_check(name, "disk", False,
                          f"{free:.0f} MB free; frame size unknown until armed"))
    else:
        # the heaviest flight phase decides; a camera whose flight frames were never measured is
        # named (its armed frames may be far smaller than its descent's)
        guess = (f"; flight frames not measured ({', '.join(est.assumed)}): armed size assumed"
                 if est.assumed else "")
        out.append(_check(name, "disk", est.minutes >= limits.min_record_min,
                          f"{free:.0f} MB free = {est.minutes:.1f} min at the flight's schedule "
                          f"(need {limits.min_record_min:g}); {est.phase} "
                          f"{est.bps / 1e6:.2f} MB/s{guess}"))
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
             sizes: FrameSizes | None = None, downloads: dict[str, dict] | None = None) -> dict:
    """``{"go": bool, "failing": [...], "checks": [every check], "stage": ..., "verdicts": {board:
    {kind, reason} or None}, "flight": [banner lines after the drop], "done": bool}``.

    ``failing`` holds one line per failing check; ``sizes``: the frame sizes by phase the ground
    saw recorded (the disk check's sizes where the board does not report them); ``downloads``
    maps a board to its download message. ``done``: every board has a verdict
    (:func:`camctl.ground.verdict.flight_done`)."""
    limits = limits or Limits()
    downloads = downloads or {}
    offsets = [v["offset_ms"] for v in views
               if v.get("reachable") and v.get("offset_ms") is not None]
    ref = median(offsets) if len(offsets) >= 2 else None
    checks = [c for v in views for c in _board_checks(
        v, limits, ref, sizes.of(v.get("name") or v.get("url", "?")) if sizes else None)]
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
