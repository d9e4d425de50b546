"""Descent events from motion: free fall, the canopy shock and the impact from the IMU's |a|
(:class:`MotionDetector`), and the barometer's descent as a check (:class:`BaroCheck`).

One detector per ``[motion.<event>]`` rule. A rule watches ``accel_g`` (|a| in g, a row's last
field) for a *run*: free fall is |a| below the threshold, a shock or an impact |a| above it. The
run fires its event once it has lasted ``min_ms``; the event's time is backdated to the run's
first sample, so it is within one sample period of the true moment although the decision comes
``min_ms`` later.

Noise: a run starts only on two samples in a row beyond the threshold and breaks only on two in a
row back inside it. One noisy sample (a knock, an I2C glitch read as a spike, a noise excursion)
can neither start a run nor break one, at the price of one sample of decision delay; a true event
shorter than two samples (under 10 ms at 200 Hz) is not seen, which the impact (10-30 ms) and the
shock (>100 ms) are not. A plain hysteresis band would not do it: a glitch is not small.

Gaps: samples more than :data:`GAP_NS` apart (or not in time order) break a run: nothing is known
of the time between.

Re-arming: a rule fires once, then waits until |a| has been near 1 g (:data:`REST_BAND_G`) for
:data:`REARM_S`: a bounce after an impact does not fire touchdown twice, the shock of an impact
does not end a free fall early. :meth:`MotionDetector.reset` re-arms every rule at once (the board
re-arms).

Example::

    >>> from camctl.board.config_sensors import MotionConfig, MotionRule
    >>> det = MotionDetector(MotionConfig((MotionRule("release", ("imu",), "freefall", 0.3, 10),)))
    >>> rows = [(i * 5_000_000, (0, 0, 0, 0, 0, 0, 1.0 if i < 4 else 0.02)) for i in range(10)]
    >>> [(e.event, e.t_ns) for e in det.feed(rows)]
    [('release', 20000000)]
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from camctl.board.config_sensors import MotionConfig, MotionRule
from camctl.board.sensors.base import Sample

__all__ = [
    "GAP_NS",
    "REARM_S",
    "REST_BAND_G",
    "BaroCheck",
    "BaroEvent",
    "MotionDetector",
    "MotionEvent",
]

GAP_NS = 50_000_000  # samples further apart than this break a run
REST_BAND_G = (0.8, 1.3)  # |a| "near 1 g": at rest, or hanging under canopy with its swing
REARM_S = 0.5
FIRED_KEPT = 16  # fired runs whose peaks peak_g() answers for, per rule


@dataclass(frozen=True)
class MotionEvent:
    """An event a motion rule fired. ``t_ns``: the first sample of the run (the event's time);
    ``decided_ns``: the sample at which the run had lasted ``min_ms`` (when it fired); ``peak_g``:
    the extreme |a| of the run up to the decision (free fall: its minimum; the run's extreme to
    its end: :meth:`MotionDetector.peak_g` with this ``t_ns``)."""

    event: str
    t_ns: int
    detect: str
    peak_g: float
    decided_ns: int


class _Rule:
    """One rule's state (see the module docstring)."""

    def __init__(self, rule: MotionRule) -> None:
        self.rule = rule
        self.below = rule.below
        self.threshold = rule.threshold_g
        self.min_ns = int(rule.min_ms * 1e6)
        self.fired: dict[int, float] = {}  # a fired run's t_ns -> its extreme, followed to its end
        self.fired_t: int | None = None  # the last fired run's
        self.reset()

    def reset(self) -> None:
        self.armed = True
        self.rest_since: int | None = None
        self.tail = False  # following the last fired run to its end (its peak)
        self.pending: tuple[int, float] | None = None  # one sample beyond, not yet a run
        self.start: int | None = None  # the run's first sample
        self.peak = 0.0
        self.inside = 0  # samples in a row back inside, during a run
        self.last_beyond = 0

    def _beyond(self, g: float) -> bool:
        return g < self.threshold if self.below else g > self.threshold

    def _extreme(self, a: float, b: float) -> float:
        return min(a, b) if self.below else max(a, b)

    def gap(self) -> None:
        self.pending = None
        self.start = None
        self.inside = 0
        self.rest_since = None
        self.tail = False

    def step(self, t: int, g: float) -> MotionEvent | None:
        if not self.armed:
            if self.tail:
                if self._beyond(g):
                    self.inside = 0
                    t0 = self.fired_t
                    assert t0 is not None
                    self.fired[t0] = self._extreme(self.fired[t0], g)
                else:
                    self.inside += 1
                    self.tail = self.inside < 2
            lo, hi = REST_BAND_G
            if lo <= g <= hi:
                if self.rest_since is None:
                    self.rest_since = t
                if t - self.rest_since >= REARM_S * 1e9:
                    self.reset()
            else:
                self.rest_since = None
            return None
        beyond = self._beyond(g)
        if self.start is None:
            if not beyond:
                self.pending = None
                return None
            if self.pending is None:
                self.pending = (t, g)
                return None
            self.start, first_g = self.pending
            self.pending = None
            self.peak = self._extreme(first_g, g)
            self.inside = 0
            self.last_beyond = t
        elif beyond:
            self.inside = 0
            self.last_beyond = t
            self.peak = self._extreme(self.peak, g)
        else:
            self.inside += 1
            if self.inside >= 2:
                self.start = None
            return None
        if self.last_beyond - self.start >= self.min_ns:
            ev = MotionEvent(self.rule.event, self.start, self.rule.detect, round(self.peak, 4), t)
            self.armed = False
            self.start = None
            self.rest_since = None
            self.tail, self.fired_t = True, ev.t_ns
            self.fired[ev.t_ns] = self.peak
            while len(self.fired) > FIRED_KEPT:
                del self.fired[next(iter(self.fired))]
            return ev
        return None


class MotionDetector:
    """The motion rules of ``motion`` over one IMU's samples (not thread-safe: the sampler thread
    feeds it). A rule whose ``sources`` do not name ``imu`` (a GPIO line alone) is not watched."""

    def __init__(self, motion: MotionConfig) -> None:
        self.motion = motion
        self._rules = [_Rule(r) for r in motion.rules if "imu" in r.sources]
        self._prev_t: int | None = None

    @property
    def events(self) -> tuple[str, ...]:
        """The events watched, in rule order."""
        return tuple(r.rule.event for r in self._rules)

    def peak_g(self, event: str, t_ns: int | None = None) -> float | None:
        """The extreme |a| of a run that fired ``event``, followed past the decision to the run's
        end (the canopy shock's or the impact's true peak; a :class:`MotionEvent` carries the
        peak up to its decision only): the run of the event whose ``t_ns`` is given, else the
        last one (mind that the impact fires the shock rule too: ask with the accepted event's
        ``t_ns``). None when there is none (the last :data:`FIRED_KEPT` per rule are kept)."""
        for r in self._rules:
            if r.rule.event == event:
                peak = r.fired.get(r.fired_t if t_ns is None else t_ns)  # type: ignore[arg-type]
                return None if peak is None else round(peak, 4)
        return None

    def feed(self, samples: Sequence[Sample]) -> list[MotionEvent]:
        """IMU samples, oldest first (``row[-1]`` is ``accel_g``) -> the events they fire."""
        out: list[MotionEvent] = []
        for t, row in samples:
            if self._prev_t is not None and not 0 < t - self._prev_t <= GAP_NS:
                # a gap, or time going back (a reopened part): nothing is known in between
                for r in self._rules:
                    r.gap()
            self._prev_t = t
            g = float(row[-1])
            for r in self._rules:
                ev = r.step(t, g)
                if ev is not None:
                    out.append(ev)
        return out

    def reset(self) -> None:
        """Re-arm every rule and forget any run (the board re-arms)."""
        for r in self._rules:
            r.reset()
            r.fired.clear()
            r.fired_t = None
        self._prev_t = None


@dataclass(frozen=True)
class BaroEvent:
    """What the barometer saw: ``descending`` or ``stopped``, at the sample that decided it
    (``t_ns``), with the vertical speed then (``rate_mps``, m/s, positive up: a descent is
    negative)."""

    what: str
    t_ns: int
    rate_mps: float


DESCENT_WINDOW_S = 0.75  # the least-squares slope for "descending" spans this much altitude
STOP_WINDOW_S = 2.0  # ... and for "stopped" (longer: noise matters more against 0.3 m/s)
STOP_MPS = 0.3
STOP_HOLD_S = 1.0


class BaroCheck:
    """The barometric descent check: ``descending`` when the altitude's least-squares slope over
    :data:`DESCENT_WINDOW_S` is faster than ``descent_mps`` down (two samples in a row), then
    ``stopped`` when the slope over :data:`STOP_WINDOW_S` has been within :data:`STOP_MPS` for
    :data:`STOP_HOLD_S`. A check logged as confirmation, never a trigger.

    A window is used once it spans at least 80 % of its length (a gap in the samples only thins
    it); samples going back in time empty it."""

    def __init__(self, descent_mps: float) -> None:
        self.descent_mps = float(descent_mps)
        self._t: deque[int] = deque()
        self._alt: deque[float] = deque()
        self.descending = False
        self._fast = 0
        self._still_since: int | None = None

    def reset(self) -> None:
        self._t.clear()
        self._alt.clear()
        self.descending = False
        self._fast = 0
        self._still_since = None

    def _slope(self, t_now: int, span_s: float) -> float | None:
        t = np.fromiter(self._t, dtype=np.int64)
        keep = t >= t_now - int(span_s * 1e9)
        if not keep.any() or (t_now - t[keep][0]) < 0.8 * span_s * 1e9 or keep.sum() < 3:
            return None
        x = (t[keep] - t_now) * 1e-9
        y = np.fromiter(self._alt, dtype=float)[keep]
        return float(np.polyfit(x, y, 1)[0])

    def feed(self, samples: Sequence[Sample]) -> list[BaroEvent]:
        """Barometer samples, oldest first (``row[-1]`` is ``altitude_m``) -> what they show."""
        out: list[BaroEvent] = []
        keep_ns = int(max(DESCENT_WINDOW_S, STOP_WINDOW_S) * 1e9)
        for t, row in samples:
            if self._t and t <= self._t[-1]:  # time went back (a reopened part): start again
                self._t.clear()
                self._alt.clear()
            self._t.append(t)
            self._alt.append(float(row[-1]))
            while self._t[0] < t - keep_ns:
                self._t.popleft()
                self._alt.popleft()
            if not self.descending:
                rate = self._slope(t, DESCENT_WINDOW_S)
                self._fast = self._fast + 1 if rate is not None and rate < -self.descent_mps else 0
                if self._fast >= 2 and rate is not None:
                    self.descending = True
                    self._still_since = None
                    out.append(BaroEvent("descending", t, round(rate, 3)))
            else:
                rate = self._slope(t, STOP_WINDOW_S)
                if rate is not None and abs(rate) <= STOP_MPS:
                    if self._still_since is None:
                        self._still_since = t
                    if t - self._still_since >= STOP_HOLD_S * 1e9:
                        self.descending = False
                        self._fast = 0
                        out.append(BaroEvent("stopped", t, round(rate, 3)))
                else:
                    self._still_since = None
        return out
