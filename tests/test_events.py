"""The phase machine: every row of the rule table, timers, debounce, and the GPIO edge path (MockFactory)."""

from __future__ import annotations

import threading

import pytest
from gpiozero.pins.mock import MockFactory

from camctl.config import GpioConfig, GpioLine, PhasesConfig
from camctl.events import PhaseMachine
from camctl.gpio import EventLines

ORDER = ("SAFE", "ARMED", "DESCENT", "SEPARATION", "TOUCHDOWN", "LANDED")


class FakeClock:
    def __init__(self) -> None:
        self.t = 1_000_000_000

    def __call__(self) -> int:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += int(seconds * 1e9)


def machine(phase: str = "SAFE", clock: FakeClock | None = None, **kw) -> PhaseMachine:
    clock = clock or FakeClock()
    m = PhaseMachine(PhasesConfig(**kw), clock_ns=clock)
    path = {"ARMED": ["arm"], "DESCENT": ["arm", "release"], "SEPARATION": ["arm", "release", "separation"],
            "TOUCHDOWN": ["arm", "touchdown"], "LANDED": ["arm", "touchdown"]}.get(phase, [])
    for ev in path:
        m.handle(ev)
    if phase == "LANDED":
        clock.advance(m.config.post_touchdown_s + 0.001)
        m.tick()
    assert m.phase == phase
    return m


# (phase, event) -> expected phase after, expected outcome
RULES = [
    ("SAFE", "arm", "ARMED", "transition"),
    ("ARMED", "arm", "ARMED", "duplicate"),
    ("DESCENT", "arm", "DESCENT", "in_flight"),
    ("LANDED", "arm", "LANDED", "in_flight"),
    ("ARMED", "disarm", "SAFE", "transition"),
    ("LANDED", "disarm", "SAFE", "transition"),
    ("DESCENT", "disarm", "DESCENT", "in_flight"),
    ("SEPARATION", "disarm", "SEPARATION", "in_flight"),
    ("TOUCHDOWN", "disarm", "TOUCHDOWN", "in_flight"),
    ("SAFE", "disarm", "SAFE", "duplicate"),
    ("SAFE", "release", "SAFE", "not_armed"),
    ("ARMED", "release", "DESCENT", "transition"),
    ("ARMED", "separation", "SEPARATION", "transition"),  # release line never fired: skip ahead
    ("DESCENT", "separation", "SEPARATION", "transition"),
    ("DESCENT", "release", "DESCENT", "duplicate"),
    ("SEPARATION", "release", "SEPARATION", "out_of_order"),
    ("TOUCHDOWN", "release", "TOUCHDOWN", "out_of_order"),
    ("LANDED", "separation", "LANDED", "out_of_order"),
    ("ARMED", "touchdown", "TOUCHDOWN", "transition"),  # a touchdown without a release still lands
    ("DESCENT", "touchdown", "TOUCHDOWN", "transition"),
    ("SEPARATION", "touchdown", "TOUCHDOWN", "transition"),
    ("TOUCHDOWN", "touchdown", "TOUCHDOWN", "duplicate"),
    ("LANDED", "touchdown", "LANDED", "duplicate"),
    ("SAFE", "touchdown", "SAFE", "not_armed"),
    ("DESCENT", "launch", "DESCENT", "unknown_event"),
]


@pytest.mark.parametrize(("start", "event", "after", "outcome"), RULES)
def test_rule_table(start, event, after, outcome):
    m = machine(start)
    tr = m.handle(event, source="operator")
    assert m.phase == after
    assert (tr is not None) == (outcome == "transition")
    rec = m.records[-1]
    assert (rec.name, rec.outcome, rec.phase) == (event, outcome, start)


def test_skipped_phases_are_recorded():
    m = machine("ARMED")
    tr = m.handle("touchdown")
    assert tr.skipped == ("DESCENT", "SEPARATION")


def test_every_transition_has_both_clocks():
    walls = iter(range(10**18, 10**18 + 100))
    clock = FakeClock()
    m = PhaseMachine(PhasesConfig(), clock_ns=clock, wall_ns=lambda: next(walls))
    for ev in ("arm", "release", "separation", "touchdown"):
        clock.advance(0.5)
        m.handle(ev)
    assert [t.phase_to for t in m.history] == ["ARMED", "DESCENT", "SEPARATION", "TOUCHDOWN"]
    monos = [t.mono_ns for t in m.history]
    assert monos == sorted(monos) and len(set(monos)) == 4
    assert all(t.wall_ns >= 10**18 for t in m.history)


def test_post_touchdown_timer_lands():
    clock = FakeClock()
    m = machine("TOUCHDOWN", clock, post_touchdown_s=3.0)
    clock.advance(2.9)
    assert m.tick() is None and m.phase == "TOUCHDOWN"
    clock.advance(0.2)
    tr = m.tick()
    assert tr.phase_to == "LANDED" and tr.source == "timer"


def test_descent_timeout_ends_a_flight_without_touchdown():
    clock = FakeClock()
    m = machine("DESCENT", clock, descent_timeout_s=10.0, post_touchdown_s=1.0)
    clock.advance(5)
    m.handle("separation")  # the backup timer counts from the first descent phase, not the last
    clock.advance(4.9)
    assert m.tick() is None
    clock.advance(0.2)
    assert m.tick().phase_to == "TOUCHDOWN"
    clock.advance(1.01)
    assert m.tick().phase_to == "LANDED"


def test_per_phase_timeout_and_auto_disarm():
    clock = FakeClock()
    m = machine("ARMED", clock, armed_timeout_s=60.0, timeouts_s=(("DESCENT", 2.0),))
    clock.advance(61)
    assert m.tick().phase_to == "SAFE"
    m.handle("arm")
    m.handle("release")
    clock.advance(2.5)
    assert m.tick().phase_to == "SEPARATION"


def test_deadline_reports_the_next_timer():
    clock = FakeClock()
    m = machine("TOUCHDOWN", clock, post_touchdown_s=3.0)
    t, target = m.deadline_ns()
    assert target == "LANDED" and t == clock.t + 3 * 10**9


def test_debounce_ignores_bounces_on_a_line():
    clock = FakeClock()
    m = PhaseMachine(PhasesConfig(), bounce_ms=5, clock_ns=clock)
    m.handle("arm", line="gpio17")
    clock.advance(0.002)
    m.handle("arm", line="gpio17")
    assert m.records[-1].outcome == "bounce"
    clock.advance(0.010)
    m.handle("arm", line="gpio17")
    assert m.records[-1].outcome == "duplicate"


# --- the real gpiozero edge path, MockFactory pins --------------------------------------------------------
LINES = (GpioLine("arm", 17), GpioLine("release", 27), GpioLine("separation", 22),
         GpioLine("touchdown", 23, pull_up=True, active_high=True))


def wired(bounce_ms=5.0, min_pulse_ms=0.0):
    clock = FakeClock()
    m = PhaseMachine(PhasesConfig(), bounce_ms=bounce_ms, clock_ns=clock)
    lines = EventLines(GpioConfig(backend="mock", bounce_ms=bounce_ms, min_pulse_ms=min_pulse_ms, lines=LINES),
                       lambda ev, t, line: m.handle(ev, source="gpio", line=line),
                       pin_factory=MockFactory(), clock_ns=clock)
    return m, lines, clock


def test_mock_pins_drive_a_whole_flight():
    m, lines, _ = wired()
    try:
        for ev in ("arm", "release", "separation", "touchdown"):
            lines.pulse(ev, hold_s=0)
        assert m.phase == "TOUCHDOWN"
        assert all(t.source == "gpio" for t in m.history)
    finally:
        lines.close()


def test_bouncing_contact_fires_once():
    """MockPin ignores gpiozero's bounce_time, so this proves camctl debounces on its own."""
    m, lines, clock = wired(bounce_ms=5)
    try:
        lines.pulse("arm", hold_s=0)
        for _ in range(5):  # contact chatter 1 ms apart
            clock.advance(0.001)
            lines.drive("arm", False)
            lines.drive("arm", True)
        outcomes = [r.outcome for r in m.records if r.name == "arm"]
        assert outcomes[0] == "transition" and set(outcomes[1:]) == {"bounce"}
    finally:
        lines.close()


def test_glitch_shorter_than_min_pulse_is_ignored():
    fired = threading.Event()
    names = []

    def on_edge(ev, t, line):
        names.append(ev)
        fired.set()

    lines = EventLines(GpioConfig(backend="mock", min_pulse_ms=50, lines=LINES), on_edge, pin_factory=MockFactory())
    try:
        lines.drive("release", True)
        lines.drive("release", False)  # released long before 50 ms
        assert not fired.wait(0.2)
        lines.drive("release", True)  # held
        assert fired.wait(5)
        assert names == ["release"]
    finally:
        lines.close()


def test_break_wire_line_active_high_with_pull_up():
    m, lines, _ = wired()
    try:
        lines.pulse("arm", hold_s=0)
        assert lines.is_active("touchdown") is False
        lines.drive("touchdown", True)
        assert m.phase == "TOUCHDOWN"
        assert lines.factory.pin(23).state is True  # the wire broke: the pull-up holds the line high
    finally:
        lines.close()


def test_close_twice_and_unknown_line():
    from camctl.exc import GpioError

    _, lines, _ = wired()
    with pytest.raises(GpioError, match="no GPIO line is configured for event 'launch'"):
        lines.drive("launch", True)
    lines.close()
    lines.close()
    assert lines.closed


# --- resume (issue 13) --------------------------------------------------------------------------------------
def test_resume_reenters_a_phase_with_its_timers_running_from_the_persisted_entry() -> None:
    from camctl.exc import ResumeError

    clock = FakeClock()
    m = PhaseMachine(PhasesConfig(post_touchdown_s=3.0), clock_ns=clock)
    tr = m.resume("TOUCHDOWN", entered_ns=clock.t - 1_000_000_000)
    assert (tr.phase_from, tr.phase_to, tr.event, m.phase) == ("SAFE", "TOUCHDOWN", "resume", "TOUCHDOWN")
    assert m.deadline_ns() == (clock.t + 2_000_000_000, "LANDED")  # only the remaining 2 s
    assert m.records == []  # no callbacks, no records: the daemon logs the resume itself
    with pytest.raises(ResumeError, match="before any event"):
        m.resume("DESCENT", entered_ns=clock.t)
    clock.advance(2.0)
    assert m.tick().phase_to == "LANDED"
    with pytest.raises(ResumeError, match="'HOVER'"):
        PhaseMachine(PhasesConfig(), clock_ns=clock).resume("HOVER", entered_ns=clock.t)
    d = PhaseMachine(PhasesConfig(descent_timeout_s=10.0), clock_ns=clock)
    d.resume("DESCENT", entered_ns=clock.t - 1, descent_started_ns=clock.t - 9_000_000_000)
    assert d.deadline_ns() == (clock.t + 1_000_000_000, "TOUCHDOWN")  # the backup timer keeps its start
