"""The simulated world's drop: the true moments of release, canopy opening and touchdown on the
board's ``CLOCK_MONOTONIC``, and the physics a sim IMU and barometer sample from them.

The moments come from outside the board, as the world would give them: ``camctl demo`` (and tests)
mark them through the operator port's ``scene`` command at the instant the scripted drop has them
happen, so a board whose events come from its IMU can be scored against them (the event log holds
each mark as a ``scene`` record). Sim cameras and sim sensors stamp on the same monotonic clock.

The physics (:meth:`DropScene.accel_mps2`, :meth:`DropScene.altitude_m`) is a pure function of the
marks and ``t``, in closed form per phase (no integration loop, nothing to keep in step):

- on the hook (before ``release``) and after ``touchdown``: at rest, the accelerometer feels 1 g;
- free fall with quadratic drag, terminal speed :data:`V_TERMINAL_MPS`: the speed is
  ``vt * tanh(g t / vt)``, the height lost ``vt^2 / g * ln cosh(g t / vt)``, and the specific force
  an accelerometer feels is the drag alone, ``g * tanh^2(g t / vt)`` (0 g at release, rising
  slowly toward 1 g);
- under canopy (after ``separation``) the speed relaxes exponentially from the free-fall speed to
  :data:`V_CANOPY_MPS` with time constant ``tau``; the felt force is what that deceleration needs,
  ``g + (v - v_canopy) / tau``, after a :data:`SHOCK_RISE_S` rise. ``tau`` is chosen so the peak is
  :data:`SHOCK_PEAK_G` (``tau = (v_sep - v_canopy) / ((peak - 1) g)``, clamped to
  [:data:`TAU_MIN_S`, :data:`TAU_MAX_S`]): the opening shock and the slowing down are one model, so
  the altitude and the accelerometer agree. A slow pendulum swing rides on it. A free fall too
  short to reach the canopy's speed with a full shock (under ~1 s, as a compressed demo may mark
  it) still gets the lines' snatch, a :data:`SHOCK_PEAK_G` jolt decaying over :data:`SNATCH_S`
  (there the felt force and the speed part ways: the speed never reverses);
- at ``touchdown`` an impact spike, a half-sine of :data:`IMPACT_PEAK_G` over :data:`IMPACT_S`,
  then rest; the speed is 0 from the touchdown mark on.

The altitude starts at :data:`SITE_M` + :data:`DROP_M` and stays where touchdown left it (a scene
whose touchdown is marked early lands "high"; a late one may go below the site: the marks, not the
height, are the truth here).
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass

from camctl.store.sources import G

__all__ = [
    "DROP_M",
    "IMPACT_PEAK_G",
    "SCENE_EVENTS",
    "SHOCK_PEAK_G",
    "SITE_M",
    "V_CANOPY_MPS",
    "V_TERMINAL_MPS",
    "DropScene",
]

SCENE_EVENTS = ("release", "separation", "touchdown")

SITE_M = 120.0  # the landing site's elevation above sea level
DROP_M = 1500.0  # released this high above the site (a helicopter drop)
V_TERMINAL_MPS = 45.0  # free-fall terminal speed of a compact test vehicle
V_CANOPY_MPS = 6.0  # steady descent under canopy
SHOCK_PEAK_G = 5.0  # the canopy's opening shock
SHOCK_RISE_S = 0.008  # the lines snatch: 1 g -> peak in this long
TAU_MIN_S, TAU_MAX_S = 0.12, 1.2  # the deceleration's time constant, see the module docstring
SNATCH_S = 0.1  # the snatch's decay (see accel_mps2)
SWING_G, SWING_HZ = 0.06, 0.4  # pendulum swing under canopy (felt force)
SWING_DPS = 25.0  # its rate of rotation (peak), for the sim gyro
IMPACT_PEAK_G = 18.0
IMPACT_S = 0.02
_NS = 1e-9


@dataclass(frozen=True)
class _Plan:
    """The drop's closed-form pieces for one set of marks (cached: marks change a few times)."""

    release: int | None
    separation: int | None  # only when after release
    touchdown: int | None  # only when after release
    v_sep: float = 0.0  # speed at separation (m/s, down)
    h_sep: float = 0.0  # height lost by separation
    tau: float = 1.0
    v_td: float = 0.0
    h_td: float = 0.0


def _ff_v(s: float) -> float:
    return V_TERMINAL_MPS * math.tanh(G * s / V_TERMINAL_MPS)


def _ff_h(s: float) -> float:
    return V_TERMINAL_MPS ** 2 / G * math.log(math.cosh(G * s / V_TERMINAL_MPS))


def _canopy_v(p: _Plan, s: float) -> float:
    return V_CANOPY_MPS + (p.v_sep - V_CANOPY_MPS) * math.exp(-s / p.tau)


def _canopy_h(p: _Plan, s: float) -> float:
    return V_CANOPY_MPS * s + (p.v_sep - V_CANOPY_MPS) * p.tau * (1.0 - math.exp(-s / p.tau))


class DropScene:
    """The true moments of one board's simulated drop (thread-safe; marks are set once each)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._marks: dict[str, int] = {}
        self._plan: _Plan | None = None

    def mark(self, event: str, mono_ns: int | None = None) -> int:
        """``event`` happens now (or at ``mono_ns``); returns its time. ValueError for an event
        the scene does not know; a second mark of the same event moves it (a new drop)."""
        if event not in SCENE_EVENTS:
            raise ValueError(f"unknown scene event {event!r} (known: {', '.join(SCENE_EVENTS)})")
        t = time.monotonic_ns() if mono_ns is None else int(mono_ns)
        with self._lock:
            if event == "release":  # a new drop: the later moments are of the old one
                self._marks.clear()
            self._marks[event] = t
            self._plan = None
        return t

    def marks(self) -> dict[str, int]:
        """Event -> its true time, for the events that happened."""
        with self._lock:
            return dict(self._marks)

    def reset(self) -> None:
        """Back on the hook, at rest (a re-armed rig)."""
        with self._lock:
            self._marks.clear()
            self._plan = None

    # -- physics -------------------------------------------------------------------------------
    # Each method takes the plan once, so a mark landing mid-call cannot mix two drops.
    def _get_plan(self) -> _Plan:
        with self._lock:
            if self._plan is None:
                self._plan = _make_plan(self._marks)
            return self._plan

    def phase(self, t_ns: int) -> str:
        """``hook``, ``freefall``, ``canopy`` or ``landed`` at ``t_ns``."""
        return _phase(self._get_plan(), t_ns)

    def velocity_mps(self, t_ns: int) -> float:
        """Vertical speed at ``t_ns``, m/s, positive down (0 on the hook and after touchdown)."""
        p = self._get_plan()
        ph = _phase(p, t_ns)
        if ph == "freefall":
            return _ff_v((t_ns - p.release) * _NS)
        if ph == "canopy":
            return _canopy_v(p, (t_ns - p.separation) * _NS)
        return 0.0

    def altitude_m(self, t_ns: int) -> float:
        """Altitude above sea level at ``t_ns``, m: continuous, falling between release and
        touchdown, flat before and after."""
        p = self._get_plan()
        top = SITE_M + DROP_M
        ph = _phase(p, t_ns)
        if ph == "hook":
            return top
        if ph == "freefall":
            return top - _ff_h((t_ns - p.release) * _NS)
        if ph == "canopy":
            return top - p.h_sep - _canopy_h(p, (t_ns - p.separation) * _NS)
        return top - p.h_td

    def accel_mps2(self, t_ns: int) -> float:
        """The specific force an accelerometer on the vehicle feels at ``t_ns`` (its magnitude,
        m/s^2): G at rest, ~0 in free fall, the opening shock, the impact spike."""
        p = self._get_plan()
        ph = _phase(p, t_ns)
        if ph == "hook":
            return G
        if ph == "freefall":
            return G * math.tanh(G * (t_ns - p.release) * _NS / V_TERMINAL_MPS) ** 2
        if ph == "canopy":
            s = (t_ns - p.separation) * _NS
            steady = G + (p.v_sep - V_CANOPY_MPS) / p.tau * math.exp(-s / p.tau)
            # the snatch: from the free-fall drag up to the shock over SHOCK_RISE_S
            rise = min(1.0, s / SHOCK_RISE_S)
            ff = G * math.tanh(G * (p.separation - p.release) * _NS / V_TERMINAL_MPS) ** 2
            swing = SWING_G * G * math.sin(2 * math.pi * SWING_HZ * s) * _settle(s)
            # the snatch of the lines: a free fall too short to need the full shock (under ~1 s)
            # still jolts the vehicle, decaying faster than the slowing does (SNATCH_S < TAU_MIN_S)
            snatch = SHOCK_PEAK_G * G * math.exp(-s / SNATCH_S)
            return max(0.0, ff + (max(steady, snatch) - ff) * rise + swing)
        s = (t_ns - p.touchdown) * _NS
        if s < IMPACT_S:
            return G * (1.0 + (IMPACT_PEAK_G - 1.0) * math.sin(math.pi * s / IMPACT_S))
        return G

    def tilt_deg(self, t_ns: int) -> float:
        """The pendulum swing's tilt from vertical under canopy (deg; 0 elsewhere)."""
        p = self._get_plan()
        if _phase(p, t_ns) != "canopy":
            return 0.0
        s = (t_ns - p.separation) * _NS
        amp = SWING_DPS / (2 * math.pi * SWING_HZ)
        return amp * math.sin(2 * math.pi * SWING_HZ * s) * _settle(s)

    def swing_dps(self, t_ns: int) -> float:
        """Rate of rotation of the pendulum swing under canopy (deg/s; 0 elsewhere)."""
        p = self._get_plan()
        if _phase(p, t_ns) != "canopy":
            return 0.0
        s = (t_ns - p.separation) * _NS
        return SWING_DPS * math.cos(2 * math.pi * SWING_HZ * s) * _settle(s)


def _settle(s: float) -> float:
    """The swing builds up over the first second under canopy."""
    return 1.0 - math.exp(-s / 0.5)


def _phase(p: _Plan, t_ns: int) -> str:
    if p.release is None or t_ns < p.release:
        return "hook"
    if p.touchdown is not None and t_ns >= p.touchdown:
        return "landed"
    if p.separation is not None and t_ns >= p.separation:
        return "canopy"
    return "freefall"


def _make_plan(marks: dict[str, int]) -> _Plan:
    rel = marks.get("release")
    if rel is None:
        return _Plan(None, None, None)
    sep = marks.get("separation")
    td = marks.get("touchdown")
    sep = sep if sep is not None and sep > rel and (td is None or sep < td) else None
    td = td if td is not None and td > rel else None
    v_sep = h_sep = 0.0
    tau = 1.0
    if sep is not None:
        s = (sep - rel) * _NS
        v_sep, h_sep = _ff_v(s), _ff_h(s)
        tau = (v_sep - V_CANOPY_MPS) / ((SHOCK_PEAK_G - 1.0) * G)
        tau = min(TAU_MAX_S, max(TAU_MIN_S, tau))
    p = _Plan(rel, sep, td, v_sep, h_sep, tau)
    if td is not None:
        if sep is not None:
            s = (td - sep) * _NS
            v_td, h_td = _canopy_v(p, s), h_sep + _canopy_h(p, s)
        else:
            s = (td - rel) * _NS
            v_td, h_td = _ff_v(s), _ff_h(s)
        p = _Plan(rel, sep, td, v_sep, h_sep, tau, v_td, h_td)
    return p
