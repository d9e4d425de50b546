"""The phase machine: every rule-table row, timers, debounce, the GPIO edge path (MockFactory)."""

from __future__ import annotations

import threading
import time

import pytest
from gpiozero.pins.mock import MockFactory

from camctl.board.config import GpioConfig, GpioLine, PhasesConfig
from camctl.board.events import PhaseMachine, Transition
from camctl.board.gpio import EventLines

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
    path = {"ARMED": ["arm"], "DESCENT": ["arm", "release"],
            "SEPARATION": ["arm", "release", "separation"],
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


# the arm key turned off (or found off at a restart): phase -> phase after, outcome (None: nothing
# recorded). docs/phases-and-gpio.md, "The arm key".
KEY_OFF = [
    ("SAFE", "SAFE", None),
    ("ARMED", "SAFE", "transition"),
    ("DESCENT", "DESCENT", "in_flight"),
    ("SEPARATION", "SEPARATION", "in_flight"),
    ("TOUCHDOWN", "TOUCHDOWN", "in_flight"),
    ("LANDED", "LANDED", None),
]


@pytest.mark.parametrize(("start", "after", "outcome"), KEY_OFF)
@pytest.mark.parametrize("source", ["gpio", "resume"])
def test_arm_key_off_rule(start, after, outcome, source):
    clock = FakeClock()
    m = machine(start, clock)
    n = len(m.records)
    clock.advance(1.0)
    tr = m.arm_key_off(source=source)
    assert m.phase == after
    assert (tr is not None) == (outcome == "transition")
    new = [(r.name, r.source, r.phase, r.outcome, r.mono_ns) for r in m.records[n:]]
    assert new == ([] if outcome is None else [("disarm", source, start, outcome, clock.t)])
    if tr is not None:
        assert (tr.event, tr.source, tr.phase_to, tr.mono_ns) == ("disarm", source, "SAFE",
                                                                  clock.t)


def test_a_key_off_is_stamped_when_given_and_comes_from_gpio_by_default():
    m = machine("DESCENT")
    assert m.arm_key_off(mono_ns=123) is None
    assert (m.records[-1].source, m.records[-1].mono_ns) == ("gpio", 123)
    m = machine("ARMED")
    tr = m.arm_key_off(mono_ns=456)
    assert (tr.source, tr.mono_ns, m.records[-1].mono_ns) == ("gpio", 456, 456)


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


# --- the real gpiozero edge path, MockFactory pins ------------------------------------------------
LINES = (GpioLine("arm", 17), GpioLine("release", 27), GpioLine("separation", 22),
         GpioLine("touchdown", 23, pull_up=True, active_high=True))


def wired(bounce_ms=5.0, min_pulse_ms=0.0):
    clock = FakeClock()
    m = PhaseMachine(PhasesConfig(), bounce_ms=bounce_ms, clock_ns=clock)
    lines = EventLines(GpioConfig(backend="mock", bounce_ms=bounce_ms, min_pulse_ms=min_pulse_ms,
                                  lines=LINES),
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

    lines = EventLines(GpioConfig(backend="mock", min_pulse_ms=50, lines=LINES), on_edge,
                       pin_factory=MockFactory())
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
        # the wire broke: the pull-up holds the line high
        assert lines.factory.pin(23).state is True
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


# --- timers that end a phase, pulses the line filter must keep or drop ----------------------------
def test_touchdown_timeout_lands_before_post_touchdown():
    clock = FakeClock()
    m = machine("TOUCHDOWN", clock, post_touchdown_s=3.0, timeouts_s=(("TOUCHDOWN", 1.0),))
    assert m.deadline_ns() == (clock.t + 10**9, "LANDED")
    clock.advance(0.999)
    assert m.tick() is None
    clock.advance(0.002)
    tr = m.tick()
    assert (tr.phase_from, tr.phase_to, tr.event) == ("TOUCHDOWN", "LANDED", "timeout")


def test_armed_phase_timeout_disarms_to_safe():
    clock = FakeClock()
    m = machine("ARMED", clock, timeouts_s=(("ARMED", 5.0),))
    assert m.deadline_ns() == (clock.t + 5 * 10**9, "SAFE")
    clock.advance(5.001)
    tr = m.tick()
    assert (tr.phase_from, tr.phase_to) == ("ARMED", "SAFE")
    assert m.deadline_ns() is None  # no descent timer left running after an auto-disarm


def _edges_with_min_pulse(clock: FakeClock):
    got: list[tuple[str, int]] = []
    fired = threading.Event()

    def on_edge(ev, t, line):
        got.append((ev, t))
        fired.set()

    lines = EventLines(GpioConfig(backend="mock", min_pulse_ms=40, lines=LINES), on_edge,
                       pin_factory=MockFactory(), clock_ns=clock)
    return lines, got, fired


def _driven(lines: EventLines, event: str, active: bool) -> tuple[int, int]:
    """Drive a mock line; the monotonic window (ns) the pin's edge time must fall in."""
    before = time.monotonic_ns()
    lines.drive(event, active)
    # MockPin ticks are float seconds: allow rounding
    return before - 1_000, time.monotonic_ns() + 1_000


def test_min_pulse_edge_is_stamped_at_the_edge_not_at_confirmation():
    lines, got, fired = _edges_with_min_pulse(FakeClock())
    try:
        lo, hi = _driven(lines, "release", True)
        assert fired.wait(5)  # confirmed 40 ms later
        assert [ev for ev, _ in got] == ["release"] and lo <= got[0][1] <= hi, (lo, got, hi)
    finally:
        lines.close()


def test_a_glitch_then_a_held_press_fires_once_stamped_at_the_press():
    """The release of a glitch must cancel its confirmation: else the glitch's timer, finding the
    line held again by a later press, fires an edge stamped at the glitch (and the press fires a
    second one)."""
    clock = FakeClock()
    lines, got, fired = _edges_with_min_pulse(clock)
    try:
        lines.drive("release", True)
        lines.drive("release", False)  # a glitch
        # the stimulus: the real press comes 5 ms later, within the glitch's 40 ms window
        time.sleep(0.005)
        lo, hi = _driven(lines, "release", True)  # ... and is held
        assert fired.wait(5)
        fired.clear()
        assert not fired.wait(0.3)  # well past both windows: no second edge
        assert [ev for ev, _ in got] == ["release"] and lo <= got[0][1] <= hi, (lo, got, hi)
    finally:
        lines.close()


# --- records tell the whole story; bounce windows, exact timers, pin factories --------------------
class Wall:
    def __init__(self) -> None:
        self.t = 1_700_000_000_000_000_000

    def __call__(self) -> int:
        self.t += 1
        return self.t


def test_every_record_and_callback_carries_the_whole_story():
    clock, wall = FakeClock(), Wall()
    seen_tr, seen_rec = [], []
    m = PhaseMachine(PhasesConfig(), clock_ns=clock, wall_ns=wall, on_transition=seen_tr.append,
                     on_record=seen_rec.append)
    m.handle("release")  # ignored: not armed
    m.handle("arm")  # default source: the operator
    clock.advance(1)
    # the edge's own time, not the clock's
    m.handle("separation", source="gpio", mono_ns=clock.t - 5)
    assert seen_rec == m.records and seen_tr == m.history
    r0, r1, r2 = m.records
    assert (r0.name, r0.source, r0.phase, r0.outcome, r0.mono_ns, r0.phase_to) == (
        "release", "operator", "SAFE", "not_armed", 1_000_000_000, "")
    assert (r1.source, r1.phase, r1.outcome, r1.phase_to) == (
        "operator", "SAFE", "transition", "ARMED")
    assert (r2.source, r2.phase, r2.phase_to, r2.mono_ns) == (
        "gpio", "ARMED", "SEPARATION", clock.t - 5)
    assert all(isinstance(r.wall_ns, int) and r.wall_ns > wall.t - 10 for r in m.records)
    tr = m.history[-1]
    assert (tr.phase_from, tr.phase_to, tr.event, tr.source, tr.mono_ns, tr.skipped) == (
        "ARMED", "SEPARATION", "separation", "gpio", clock.t - 5, ("DESCENT",))
    # SAFE -> ARMED skips nothing (and from SAFE nothing is "skipped")
    assert m.history[0].skipped == ()
    assert r0.encode()["kind"] == "event" and r0.encode()["outcome"] == "not_armed"


def test_a_bounce_record_names_its_source_and_time():
    clock = FakeClock()
    m = PhaseMachine(PhasesConfig(), bounce_ms=5, clock_ns=clock)
    m.handle("arm", source="gpio", line="gpio17")
    m.handle("arm", source="gpio", line="gpio17")  # 0 ns later: still a bounce
    rec = m.records[-1]
    assert (rec.outcome, rec.source, rec.mono_ns) == ("bounce", "gpio", clock.t)


def test_bounce_window_edges():
    clock = FakeClock()
    m = PhaseMachine(PhasesConfig(), bounce_ms=5, clock_ns=clock)
    m.handle("arm", line="gpio17")
    clock.t += 5_000_000 - 1
    m.handle("arm", line="gpio17")
    assert m.records[-1].outcome == "bounce"  # inside the window by 1 ns
    clock.t += 5_000_000  # exactly one window after the last edge: a new edge
    m.handle("arm", line="gpio17")
    assert m.records[-1].outcome == "duplicate"
    m.handle("arm")  # no line (operator): never debounced
    assert m.records[-1].outcome == "duplicate"


def test_no_debounce_by_default():
    m = PhaseMachine(PhasesConfig(), clock_ns=FakeClock())
    m.handle("arm", line="gpio17")
    m.handle("disarm", line="gpio18")
    m.handle("arm", line="gpio17")  # same instant, same line: with no bounce_ms this is a real edge
    assert [r.outcome for r in m.records] == ["transition", "transition", "transition"]


def test_timers_fire_at_their_exact_nanosecond():
    clock = FakeClock()
    m = machine("DESCENT", clock, descent_timeout_s=10.0)
    due = clock.t + 10 * 10**9
    assert m.deadline_ns() == (due, "TOUCHDOWN")
    assert m.tick(due - 1) is None
    assert m.tick(due).phase_to == "TOUCHDOWN"  # at the deadline, not a tick after it
    clock2 = FakeClock()
    a = machine("ARMED", clock2, armed_timeout_s=2.5)
    assert a.deadline_ns() == (clock2.t + 2_500_000_000, "SAFE")
    assert a.tick(clock2.t + 2_499_999_999) is None and a.phase == "ARMED"
    assert machine("ARMED", FakeClock(), armed_timeout_s=0.0).deadline_ns() is None
    clock3 = FakeClock()
    assert machine("ARMED", clock3, armed_timeout_s=0.5).deadline_ns() == (
        clock3.t + 500_000_000, "SAFE")


def test_the_descent_timer_starts_at_the_first_descent_phase_only():
    clock = FakeClock()
    m = machine("ARMED", clock, descent_timeout_s=10.0)
    clock.advance(100)
    assert m.deadline_ns() is None  # ARMED is not a descent phase: no backup timer yet
    m.handle("release")
    assert m.deadline_ns() == (clock.t + 10 * 10**9, "TOUCHDOWN")


def test_records_stay_bounded():
    m = PhaseMachine(PhasesConfig(), clock_ns=FakeClock())
    for _ in range(10_000):
        m.handle("launch")
    assert len(m.records) == 10_000  # at the bound: nothing dropped yet
    m.handle("launch")
    assert len(m.records) == 5_001  # past it: the oldest half goes


def test_an_edge_without_min_pulse_comes_at_once_on_the_callers_thread():
    got = []
    lines = EventLines(GpioConfig(backend="mock", lines=LINES), lambda ev, t, line: got.append(
        (ev, t, line, threading.get_ident())), pin_factory=MockFactory())
    try:
        lo, hi = _driven(lines, "release", True)
        assert len(got) == 1 and lo <= got[0][1] <= hi  # at the edge's own time ...
        # ... no timer
        assert got[0][::2] == ("release", "gpio27") and got[0][3] == threading.get_ident()
    finally:
        lines.close()


def test_a_min_pulse_edge_names_its_line():
    labels, fired = [], threading.Event()
    lines = EventLines(GpioConfig(backend="mock", min_pulse_ms=20, lines=LINES),
                       lambda ev, t, line: (labels.append(line), fired.set()),
                       pin_factory=MockFactory())
    try:
        lines.drive("touchdown", True)
        assert fired.wait(5) and labels == ["gpio23"]
    finally:
        lines.close()


def test_pulse_holds_past_min_pulse_and_leaves_the_line_at_rest():
    got = []
    lines = EventLines(GpioConfig(backend="mock", min_pulse_ms=30, lines=LINES),
                       lambda ev, t, line: got.append(ev), pin_factory=MockFactory())
    try:
        lines.pulse("release")  # returns after the hold: the confirmation has fired by then
        assert got == ["release"] and lines.is_active("release") is False
        lines.pulse("separation", hold_s=0)  # a glitch: no edge
        assert got == ["release"] and lines.is_active("separation") is False
    finally:
        lines.close()


class CountingFactory(MockFactory):
    closes = 0

    def close(self):
        CountingFactory.closes += 1
        super().close()


def test_no_bounce_time_and_an_injected_factory_is_not_closed():
    """gpiozero's bounce_time is never used: lgpio's debounce stamps edges late (board/gpio.py)."""
    for backend, want in (("lgpio", None), ("mock", None)):
        CountingFactory.closes = 0
        factory = CountingFactory()
        lines = EventLines(GpioConfig(backend=backend, bounce_ms=5, lines=LINES), lambda *a: None,
                           pin_factory=factory)
        assert lines.factory is factory
        assert {ev: dev.pin.bounce for ev, dev in lines._devices.items()} == dict.fromkeys(
            ("arm", "release", "separation", "touchdown"), want)
        lines.close()
        assert CountingFactory.closes == 0  # the caller's factory: the caller closes it
        factory.close()
    lines = EventLines(GpioConfig(backend="lgpio", bounce_ms=0, lines=LINES), lambda *a: None,
                       pin_factory=MockFactory())
    # 0 ms: no bounce_time at all
    assert all(dev.pin.bounce is None for dev in lines._devices.values())
    lines.close()


def test_an_own_factory_is_made_from_the_config_and_closed(monkeypatch):
    import camctl.board.gpio

    made = []

    def make(gpio):
        made.append(gpio)
        return CountingFactory()

    monkeypatch.setattr(camctl.board.gpio, "make_pin_factory", make)
    CountingFactory.closes = 0
    cfg = GpioConfig(backend="mock", lines=LINES)
    lines = EventLines(cfg, lambda *a: None)
    assert made == [cfg] and lines.config is cfg
    lines.close()
    assert CountingFactory.closes == 1 and lines.closed


def test_gpio_errors_say_what_is_wrong():
    from camctl.exc import GpioError

    with pytest.raises(GpioError, match=r"cannot claim GPIO lines: .*17"):
        EventLines(GpioConfig(backend="mock", lines=(GpioLine("arm", 17), GpioLine("release", 17))),
                   lambda *a: None, pin_factory=MockFactory())
    empty = EventLines(GpioConfig(backend="mock"), lambda *a: None, pin_factory=MockFactory())
    with pytest.raises(GpioError, match=r"\(configured: none\)$"):
        empty.drive("arm", True)
    empty.close()
    _, lines, _ = wired()
    with pytest.raises(GpioError, match=r"\(configured: arm, release, separation, touchdown\)$"):
        lines.drive("launch", True)
    lines.close()


def test_make_pin_factory_never_falls_back_to_the_mock():
    from camctl.board.gpio import make_pin_factory
    from camctl.exc import GpioError

    f = make_pin_factory(GpioConfig(backend="mock"))
    assert isinstance(f, MockFactory)
    f.close()
    try:
        import lgpio  # noqa: F401
    except ImportError:
        with pytest.raises(GpioError, match=r"needs lgpio: on Raspberry Pi OS run "
                                            r"'sudo apt install python3-lgpio'.*"
                                            r"or set \[gpio\] backend = \"mock\" "
                                            r"for a bench without wiring$"):
            make_pin_factory(GpioConfig(backend="lgpio"))
    else:  # on a Pi: a chip or a one-line error, never the mock
        try:
            f = make_pin_factory(GpioConfig(backend="lgpio"))
        except GpioError as exc:
            assert "GPIO chip" in str(exc)
        else:
            assert not isinstance(f, MockFactory)
            f.close()


def test_in_flight_and_repr():
    m = machine("ARMED")
    assert not m.in_flight()
    m.handle("release")
    assert m.in_flight()
    _, lines, _ = wired()
    assert repr(lines) == ("<EventLines mock: arm=gpio17, release=gpio27, separation=gpio22, "
                           "touchdown=gpio23>")
    lines.close()
    assert repr(lines) == "<EventLines mock: closed>"


def test_gpio_watch_prints_every_edge_with_its_level():
    import re

    from camctl.board.gpio import watch

    CountingFactory.closes = 0
    out, stop, factory = [], threading.Event(), CountingFactory()
    cfg = GpioConfig(backend="mock",
                     lines=(GpioLine("arm", 17), GpioLine("touchdown", 23, active_high=True)))
    t = threading.Thread(target=watch, args=(cfg,), kwargs={"out": out.append, "stop": stop,
                                                            "pin_factory": factory})
    t.start()
    try:
        pause = threading.Event()
        for _ in range(4000):  # both lines printed at start (bounded wait: 20 s)
            if len(out) >= 2:
                break
            pause.wait(0.005)
        factory.pin(17).drive_low()  # pulled up: low is active
        factory.pin(17).drive_high()
        factory.pin(23).drive_high()
    finally:
        stop.set()
        t.join(10)
    assert not t.is_alive()  # the caller's stop ends it
    fields = [line.split()[2:6] for line in out]
    assert fields == [["gpio17", "arm", "high", "inactive"],
                      ["gpio23", "touchdown", "high", "ACTIVE"],
                      ["gpio17", "arm", "low", "ACTIVE"], ["gpio17", "arm", "high", "inactive"]]
    for line in out:
        secs, hms = line.split()[:2]
        assert 0 <= float(secs.rstrip("s")) < 60 and re.fullmatch(r"\d\d:\d\d:\d\d", hms), line
    assert CountingFactory.closes == 0  # the caller's factory stays open ...
    from gpiozero import DigitalInputDevice

    DigitalInputDevice(17, pin_factory=factory).close()  # ... and watch released its pins
    factory.close()


def test_gpio_watch_makes_its_own_factory_from_the_config(monkeypatch):
    import camctl.board.gpio

    made, stop = [], threading.Event()
    monkeypatch.setattr(camctl.board.gpio, "make_pin_factory",
                        lambda gpio: made.append(gpio) or CountingFactory())
    CountingFactory.closes = 0
    cfg = GpioConfig(backend="mock", lines=(GpioLine("arm", 17),))
    stop.set()
    camctl.board.gpio.watch(cfg, out=lambda _line: None, stop=stop)
    assert made == [cfg] and CountingFactory.closes == 1


# --- resume: a persisted phase re-entered with its timers -----------------------------------------
def test_resume_reenters_a_phase_with_its_timers_running_from_the_persisted_entry() -> None:
    from camctl.exc import ResumeError

    clock = FakeClock()
    m = PhaseMachine(PhasesConfig(post_touchdown_s=3.0), clock_ns=clock)
    tr = m.resume("TOUCHDOWN", entered_ns=clock.t - 1_000_000_000)
    assert (tr.phase_from, tr.phase_to, tr.event, m.phase) == (
        "SAFE", "TOUCHDOWN", "resume", "TOUCHDOWN")
    assert m.deadline_ns() == (clock.t + 2_000_000_000, "LANDED")  # only the remaining 2 s
    assert m.records == []  # no callbacks, no records: the daemon logs the resume itself
    with pytest.raises(ResumeError,
                       match=r"^resume only at start, before any event \(phase is TOUCHDOWN\)$"):
        m.resume("DESCENT", entered_ns=clock.t)
    clock.advance(2.0)
    assert m.tick().phase_to == "LANDED"
    with pytest.raises(ResumeError, match="'HOVER'"):
        PhaseMachine(PhasesConfig(), clock_ns=clock).resume("HOVER", entered_ns=clock.t)
    d = PhaseMachine(PhasesConfig(descent_timeout_s=10.0), clock_ns=clock)
    d.resume("DESCENT", entered_ns=clock.t - 1, descent_started_ns=clock.t - 9_000_000_000)
    # the backup timer keeps its start
    assert d.deadline_ns() == (clock.t + 1_000_000_000, "TOUCHDOWN")


def test_resume_returns_and_keeps_a_full_transition_and_refuses_after_a_disarmed_flight() -> None:
    from camctl.board.events import Transition
    from camctl.exc import ResumeError

    clock = FakeClock()
    m = PhaseMachine(PhasesConfig(), clock_ns=clock, wall_ns=lambda: 7)
    tr = m.resume("ARMED", entered_ns=clock.t - 5)
    assert tr == Transition("SAFE", "ARMED", "resume", "resume", clock.t, 7) and m.history == [tr]
    booted = PhaseMachine(PhasesConfig(), clock_ns=clock).resume("LANDED", entered_ns=0,
                                                                 source="boot")
    assert booted.source == "boot"
    with pytest.raises(ResumeError,
                       match=r"\(phases: SAFE, ARMED, DESCENT, SEPARATION, TOUCHDOWN, LANDED\)"):
        PhaseMachine(PhasesConfig(), clock_ns=clock).resume("HOVER", entered_ns=clock.t)
    disarmed = machine("ARMED", clock)
    disarmed.handle("disarm")  # back in SAFE, but not at start: its history is not empty
    with pytest.raises(ResumeError, match="before any event"):
        disarmed.resume("ARMED", entered_ns=clock.t)


def test_a_transition_records_what_the_daemon_writes_for_a_phase_change() -> None:
    tr = Transition("ARMED", "TOUCHDOWN", "touchdown", "gpio", 5, 7, ("DESCENT", "SEPARATION"))
    written = {"kind": "phase", "name": "TOUCHDOWN", "phase_from": "ARMED", "phase_to": "TOUCHDOWN",
               "event": "touchdown", "source": "gpio", "mono_ns": 5, "wall_ns": 7,
               "skipped": ["DESCENT", "SEPARATION"], "boot_id": "b"}  # board/daemon.py, today
    assert list(tr.record("b").encode().items()) == list(written.items())


# --- operator commands are never contact bounces -------------------------------------------------
def test_operator_events_are_never_debounced():
    m = PhaseMachine(PhasesConfig(), bounce_ms=5, clock_ns=FakeClock())
    for ev in ("arm", "arm", "disarm", "arm"):  # the same nanosecond: no line, no bounce
        m.handle(ev, source="operator")
    assert [r.outcome for r in m.records] == ["transition", "duplicate", "transition",
                                              "transition"]
    assert m.phase == "ARMED"


@pytest.mark.parametrize("min_pulse_ms", [0, 20])
def test_commands_that_pulse_mock_lines_are_never_debounced(tmp_path, min_pulse_ms):
    """On a mock board an operator's command moves the line (the real gpiozero edge path); it is
    still a command, not a contact that bounces."""
    from camctl.board.commands import OperatorCommands
    from camctl.board.config import parse_config

    cfg = parse_config({"board": "b", "store": {"dir": str(tmp_path / "store")},
                        "gpio": {"backend": "mock", "bounce_ms": 10_000,
                                 "min_pulse_ms": min_pulse_ms,
                                 "events": {"arm": 17, "disarm": 24, "release": 27}}})
    m = PhaseMachine(PhasesConfig(), bounce_ms=cfg.gpio.bounce_ms)
    lines = EventLines(cfg.gpio, lambda ev, t, line: m.handle(ev, source="gpio", mono_ns=t,
                                                              line=line),
                       pin_factory=MockFactory())
    ops = OperatorCommands(cfg, m, lines, wait_open=lambda _: None)
    try:
        # within 10 s, the lines' bounce window
        outcomes = [ops.command(name, {})["outcome"] for name in ("arm", "arm", "disarm", "arm")]
        assert outcomes == ["transition", "duplicate", "transition", "transition"]
        assert m.phase == "ARMED"
        held = ops.command("disarm", {"line": "hold"})  # a held line moved by a command, too
        assert (held["outcome"], m.phase) == ("transition", "SAFE")
        ops.command("disarm", {"line": "release"})
        n = len(m.records)
        # an edge that is no command is still debounced: the arm line chattering within the bounce
        # window of the last command's edge is no arm
        for active in (True, False, True):
            lines.drive("arm", active)
        assert m.phase == "SAFE" and {r.outcome for r in m.records[n:]} <= {"bounce"}
    finally:
        lines.close()


def test_make_pin_factory_errors_say_what_to_do(monkeypatch):
    import sys
    import types

    from camctl.board.gpio import make_pin_factory
    from camctl.exc import GpioError

    monkeypatch.setitem(sys.modules, "gpiozero.pins.lgpio", None)  # lgpio is not installed
    with pytest.raises(GpioError) as no_lgpio:
        make_pin_factory(GpioConfig(backend="lgpio"))
    assert str(no_lgpio.value) == (
        "the lgpio pin factory needs lgpio: on Raspberry Pi OS run 'sudo apt install "
        "python3-lgpio' (venv with --system-site-packages), or set [gpio] backend = \"mock\" for "
        "a bench without wiring")

    def no_chip():
        raise OSError("[Errno 2] No such file or directory: '/dev/gpiochip0'")

    monkeypatch.setitem(sys.modules, "gpiozero.pins.lgpio",
                        types.SimpleNamespace(LGPIOFactory=no_chip))
    with pytest.raises(GpioError) as cannot_open:
        make_pin_factory(GpioConfig(backend="lgpio"))
    assert str(cannot_open.value) == (
        "cannot open the GPIO chip: [Errno 2] No such file or directory: '/dev/gpiochip0' "
        "(is the user in group 'gpio'?)")


def test_tick_until_fires_a_resumed_timer_on_its_own_thread_until_stopped() -> None:
    """The daemon's start ticks from the resume on (PhaseMachine.tick_until): a resumed
    TOUCHDOWN lands at its time on the machine's clock, with nobody else calling tick."""
    from waiting import wait_for

    clock = FakeClock()
    m = PhaseMachine(PhasesConfig(post_touchdown_s=6.0), clock_ns=clock)
    m.resume("TOUCHDOWN", entered_ns=clock.t - 5 * 10**9)  # killed 5 s into a 6 s TOUCHDOWN
    stop = threading.Event()
    t = threading.Thread(target=m.tick_until, args=(stop,), kwargs={"max_wait_s": 0.001})
    t.start()
    try:
        clock.advance(0.999)
        assert m.phase == "TOUCHDOWN"
        clock.advance(0.001)  # touchdown + 6 s
        wait_for(lambda: m.phase == "LANDED", "the timer thread to land the board")
        assert m.history[-1].mono_ns == clock.t and m.history[-1].event == "timeout"
    finally:
        stop.set()
        t.join(10)
    assert not t.is_alive()
