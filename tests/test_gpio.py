"""Edge times are the pin's own ticks (lgpio: the kernel's stamp), debounce is measured from them.

The facts camctl relies on are pinned to the installed gpiozero's source (read as text, not
imported), so an upgrade that changes how ticks reach a callback fails here. The behaviour is
exercised through MockFactory pins, with the edge delivered late by another thread, as lgpio's
callback thread delivers a kernel-stamped edge.
"""

from __future__ import annotations

import ast
import contextlib
import importlib.util
import logging
import math
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from gpiozero import DigitalInputDevice
from gpiozero.pins.mock import MockFactory, MockPin
from waiting import wait_for

from camctl.board.config import GpioConfig, GpioLine, PhasesConfig
from camctl.board.events import PhaseMachine
from camctl.board.gpio import EventLines, edge_time_ns, watch

PINS = Path(importlib.util.find_spec("gpiozero").origin).parent / "pins"


def _method(path: Path, cls: str, name: str) -> ast.FunctionDef:
    tree = ast.parse(path.read_text())
    klass = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == cls)
    return next(n for n in klass.body if isinstance(n, ast.FunctionDef) and n.name == name)


def test_installed_gpiozero_hands_lgpio_kernel_ticks_to_when_changed_in_seconds() -> None:
    fn = _method(PINS / "lgpio.py", "LGPIOPin", "_call_when_changed")
    assert [a.arg for a in fn.args.args] == ["self", "chip", "gpio", "level", "ticks"]
    assert ast.unparse(fn.body[-1]) == "super()._call_when_changed(ticks / 1000000000, level)"
    enable = ast.unparse(_method(PINS / "lgpio.py", "LGPIOPin", "_enable_event_detect"))
    # lgpio's thread calls it
    assert "lgpio.callback(" in enable and "self._call_when_changed" in enable


def test_installed_gpiozero_mock_ticks_are_monotonic_seconds_of_the_change() -> None:
    ticks = _method(PINS / "mock.py", "MockFactory", "ticks")
    assert ast.unparse(ticks.body[-1]) == "return monotonic()"
    call = _method(PINS / "mock.py", "MockPin", "_call_when_changed")
    assert ast.unparse(call.body[-1]) == (
        "super()._call_when_changed(self._last_change, self._state)")
    change = _method(PINS / "mock.py", "MockPin", "_change_state")
    assert "self._last_change = t" in ast.unparse(change)
    imports = [n for n in ast.parse((PINS / "mock.py").read_text()).body
               if isinstance(n, ast.ImportFrom)]
    assert any(n.module == "time" and "monotonic" in {a.name for a in n.names} for n in imports)
    # the documented callback signature, and the weak reference the pin keeps to it
    assert "the first will report the ticks" in (PINS / "__init__.py").read_text()
    assert "ref(value)" in ast.unparse(_method(PINS / "pi.py", "PiPin", "_set_when_changed"))


LINES = (GpioLine("arm", 17), GpioLine("release", 27),
         GpioLine("touchdown", 23, pull_up=True, active_high=True))


def _recording(seen: list[int], factory: Any = None) -> EventLines:
    """Mock lines whose callback appends each edge's time to ``seen``, on a clock that always says
    42 ns: a time taken from the callback's clock instead of the edge's tick shows as 42."""
    return EventLines(GpioConfig(backend="mock", lines=LINES), lambda ev, t, _: seen.append(t),
                      pin_factory=factory if factory is not None else MockFactory(),
                      clock_ns=lambda: 42)


def _late(lines: EventLines, event: str, level_high: bool, ticks: float, delay_s: float) -> None:
    """Deliver an edge stamped ``ticks`` on a thread ``delay_s`` later, as lgpio's callback does."""
    pin = lines._devices[event].pin

    def deliver() -> None:
        time.sleep(delay_s)
        pin.when_changed(ticks, level_high)

    t = threading.Thread(target=deliver)
    t.start()
    t.join()


def test_the_edge_time_is_the_pin_tick_not_the_callback_time() -> None:
    seen: list[tuple[str, int]] = []
    lines = EventLines(GpioConfig(backend="mock", lines=LINES),
                       lambda ev, t, _: seen.append((ev, t)), pin_factory=MockFactory())
    try:
        edge = time.monotonic()
        _late(lines, "release", False, edge, 0.05)  # pulled up, active low: low is the edge
        assert seen == [("release", round(edge * 1e9))]
        lines.drive("touchdown", True)  # the MockPin path: its tick is the change's monotonic time
        assert (seen[-1][0] == "touchdown"
                and seen[-1][1] == round(lines.factory.pin(23)._last_change * 1e9))
    finally:
        lines.close()


def test_debounce_is_measured_between_edge_times() -> None:
    m = PhaseMachine(PhasesConfig(), bounce_ms=5)
    lines = EventLines(GpioConfig(backend="mock", bounce_ms=5, lines=LINES),
                       lambda ev, t, line: m.handle(ev, source="gpio", mono_ns=t, line=line),
                       pin_factory=MockFactory())
    try:
        t0 = time.monotonic()
        _late(lines, "arm", False, t0, 0.0)
        _late(lines, "arm", True, t0 + 0.001, 0.0)
        # 2 ms after the first edge, delivered 20 ms later
        _late(lines, "arm", False, t0 + 0.002, 0.02)
        assert [r.outcome for r in m.records] == ["transition", "bounce"]
        _late(lines, "release", False, t0 + 0.003, 0.0)
        assert m.phase == "DESCENT" and m.history[-1].mono_ns == round((t0 + 0.003) * 1e9)
    finally:
        lines.close()


def test_min_pulse_is_confirmed_from_the_edge_time() -> None:
    fired = threading.Event()
    got: list[int] = []
    lines = EventLines(GpioConfig(backend="mock", min_pulse_ms=40, lines=LINES),
                       lambda ev, t, _: (got.append(t), fired.set()), pin_factory=MockFactory())
    try:
        lines.drive("release", True)  # held
        assert fired.wait(10) and got == [round(lines.factory.pin(27)._last_change * 1e9)]
    finally:
        lines.close()


def test_ticks_not_on_the_monotonic_clock_fall_back_to_the_callback_time(
        caplog: pytest.LogCaptureFixture) -> None:
    assert edge_time_ns(time.time()) is None  # an epoch-stamping kernel
    now = time.monotonic_ns()
    assert edge_time_ns(now / 1e9, now_ns=now + 10) == round(now / 1e9 * 1e9)
    seen: list[int] = []
    lines = _recording(seen)
    try:
        with caplog.at_level(logging.WARNING, logger="camctl.board.gpio"):
            _late(lines, "release", False, time.time(), 0.0)
            _late(lines, "release", True, time.time(), 0.0)
            _late(lines, "release", False, time.time(), 0.0)
        assert seen == [42, 42]
        assert sum("not a monotonic clock time" in r.message for r in caplog.records) == 1
    finally:
        lines.close()


@contextlib.contextmanager
def _watching(factory: MockFactory) -> Iterator[tuple[list[str], list[BaseException]]]:
    """``gpio watch`` of LINES on its own thread: the lines it prints and what it raised. It has
    printed a line per event at start when this yields; it is stopped on exit."""
    out: list[str] = []
    errors: list[BaseException] = []
    stop = threading.Event()

    def run() -> None:
        try:
            watch(GpioConfig(backend="mock", lines=LINES), out=out.append, stop=stop,
                  pin_factory=factory)
        except BaseException as exc:  # reported by the test's assertions
            errors.append(exc)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    try:
        wait_for(lambda: len(out) >= len(LINES) or errors, "a line per event at start")
        yield out, errors
    finally:
        stop.set()
        t.join(10)


def test_gpio_watch_prints_levels_then_edges_with_their_gaps() -> None:
    factory = MockFactory()
    with _watching(factory) as (lines, errors):
        assert all(line.endswith("(at start)") for line in lines), (lines, errors)
        pin = factory.pin(27)  # release: pulled up, active low
        edge = time.monotonic() - 0.01  # stamped 10 ms ago, delivered now as lgpio's thread would
        pin.when_changed(edge, False)
        pin.when_changed(edge + 0.0015, True)  # a bounce 1.5 ms later
    assert errors == []
    first, bounce = lines[len(LINES):]
    assert "gpio27  release      low  ACTIVE" in first and "ms" not in first, first
    assert "high inactive  +1.500 ms" in bounce, bounce


def test_edge_ticks_are_trusted_from_now_back_to_just_under_a_minute() -> None:
    t = 5_000_000_000
    assert edge_time_ns(5.0, now_ns=t) == t  # stamped this very nanosecond
    assert edge_time_ns(5, now_ns=t + 60_000_000_000 - 1) == t
    # a minute old: an epoch-stamping kernel, or a factory's own tick counter
    assert edge_time_ns(5.0, now_ns=t + 60_000_000_000) is None
    assert edge_time_ns(5.0, now_ns=t - 1) is None  # from the future
    # not a number of seconds
    assert all(edge_time_ns(x, now_ns=t) is None
               for x in (None, "5.0", True, float("nan"), float("inf"), -float("inf")))
    # not before the line's previous trusted edge (the same nanosecond is not before it)
    assert edge_time_ns(5.0, now_ns=t, after_ns=t) == t
    assert edge_time_ns(5.0, now_ns=t, after_ns=t + 1) is None


def test_untrusted_ticks_warn_once_at_the_first_edge_naming_the_ticks_and_factory(
        caplog: pytest.LogCaptureFixture) -> None:
    seen: list[int] = []
    lines = _recording(seen)
    try:
        with caplog.at_level(logging.WARNING, logger="camctl.board.gpio"):
            _late(lines, "release", False, 1e12, 0.0)  # far ahead of the monotonic clock
            assert [r.getMessage() for r in caplog.records] == [
                "GPIO edge ticks 1000000000000.0 from MockFactory are not a monotonic clock time "
                "of this edge; using callback times (late by the callback's scheduling delay)"]
            for level in (True, False, True, False):
                _late(lines, "release", level, 1e12, 0.0)
        assert seen == [42, 42, 42] and len(caplog.records) == 1
    finally:
        lines.close()


def test_initial_levels_are_set_without_an_edge_and_levels_reads_them_back() -> None:
    seen: list[str] = []
    cfg = GpioConfig(backend="mock",
                     lines=(*LINES, GpioLine("separation", 24, pull_up=False, active_high=True)))
    lines = EventLines(cfg, lambda ev, t, _: seen.append(ev), pin_factory=MockFactory(),
                       initial={"arm": True})
    try:
        assert lines.levels() == {"arm": True, "release": False, "touchdown": False,
                                  "separation": False}
        assert seen == []  # a level held across a restart is not an edge
        assert {e: lines._devices[e].pin.pull for e in lines.events} == {
            "arm": "up", "release": "up", "touchdown": "up", "separation": "down"}
        lines.drive("separation", True)
        assert seen == ["separation"] and lines.levels()["separation"] is True
    finally:
        lines.close()


def test_a_second_active_edge_without_a_release_restarts_the_min_pulse_wait_and_fires_once(
) -> None:
    # e.g. lgpio's event buffer dropped the release between two presses: the older wait is
    # cancelled. No bounce window: the second press is a burst of its own (within bounce_ms it
    # would be the first's, stamped at the first: the test above)
    got: list[int] = []
    fired = threading.Event()
    lines = EventLines(GpioConfig(backend="mock", bounce_ms=0, min_pulse_ms=20, lines=LINES),
                       lambda ev, t, _: (got.append(t), fired.set()), pin_factory=MockFactory())
    try:
        lines.drive("release", True)
        second = time.monotonic()
        # active again, no inactive edge between
        lines._devices["release"].pin.when_changed(second, False)
        assert fired.wait(10)
        for timer in [t for t in threading.enumerate() if isinstance(t, threading.Timer)]:
            timer.join(10)  # every min_pulse wait has run or been cancelled
        assert got == [round(second * 1e9)]
    finally:
        lines.close()


def test_gpio_watch_lines_are_exact_and_untrusted_ticks_say_callback_time() -> None:
    import re

    factory = MockFactory()
    with _watching(factory) as (out, errors):
        pin = factory.pin(27)  # release: pulled up, active low
        edge = time.monotonic() - 3.0
        pin.when_changed(edge, False)
        pin.when_changed(edge + 2.0, True)  # 2 s later: the gap's millisecond decimals are exact
        pin.when_changed(1e12, False)  # ticks not on the monotonic clock
    head = r"^ *-?\d+\.\d{4}s  \d\d:\d\d:\d\d  "
    expected = [r"gpio17  arm          high inactive  \(at start\)$",
                r"gpio27  release      high inactive  \(at start\)$",
                r"gpio23  touchdown    high ACTIVE  \(at start\)$",
                r"gpio27  release      low  ACTIVE$",
                r"gpio27  release      high inactive  \+2000\.000 ms$",
                r"gpio27  release      low  ACTIVE  \+\d+\.\d{3} ms  \(callback time\)$"]
    assert len(out) == len(expected) and errors == [], (out, errors)
    for line, pattern in zip(out, expected, strict=True):
        assert re.match(head + pattern, line), line
    for p in (17, 23, 27):  # watch closed every device it claimed
        DigitalInputDevice(p, pin_factory=factory).close()


def test_gpio_watch_names_the_line_it_cannot_claim_and_releases_the_others() -> None:
    from camctl.board.gpio import watch
    from camctl.exc import GpioError

    factory = MockFactory()
    held = DigitalInputDevice(23, pin_factory=factory)
    try:
        with pytest.raises(GpioError, match=r"^cannot claim gpio23 \(touchdown\): .+ "
                                            r"\(is camctl run holding it\?\)$"):
            watch(GpioConfig(backend="mock", lines=LINES), out=lambda _: None, pin_factory=factory)
    finally:
        held.close()
    for p in (17, 27):
        DigitalInputDevice(p, pin_factory=factory).close()


def test_the_min_pulse_wait_is_shortened_by_the_edge_delivery_delay() -> None:
    lines = EventLines(GpioConfig(backend="mock", min_pulse_ms=60_000, lines=LINES),
                       lambda *_: None, pin_factory=MockFactory())
    try:
        # an edge stamped 1 s ago (a late lgpio callback) waits out only the rest of the minute
        lines._devices["release"].pin.when_changed(time.monotonic() - 1.0, False)
        assert 0 < lines._pending["release"].interval <= 59.0
    finally:
        lines.close()


class _LGPIOClosePin(MockPin):
    """A MockPin that closes as gpiozero 2.0.1's ``LGPIOPin`` does: it resets the line's function
    and keeps its edge callback (lgpio's stays registered on the chip's handle)."""

    def close(self) -> None:
        self.function = "input"


def test_installed_gpiozero_lgpio_pin_close_keeps_its_callback() -> None:
    close = ast.unparse(_method(PINS / "lgpio.py", "LGPIOPin", "close"))
    assert "when_changed" not in close and "_callback" not in close, close


def test_closing_the_lines_cancels_each_pins_edge_callback() -> None:
    """lgpio's callback outlives a closed pin unless ``when_changed`` is cleared: the next edge on
    the same handle and line reaches it (in lgpio it raises and ends the alert thread)."""
    seen: list[str] = []
    factory = MockFactory(pin_class=_LGPIOClosePin)
    lines = EventLines(GpioConfig(backend="mock", lines=LINES), lambda ev, t, _: seen.append(ev),
                       pin_factory=factory)
    lines.close()
    factory.pin(27).drive_low()  # release's active level, after the close
    assert seen == []
    assert [factory.pin(p).when_changed for p in (17, 27, 23)] == [None, None, None]


class _RigFactory(MockFactory):
    """A pin factory of another name on the same clock: a subclass or a wrapper of gpiozero's
    (as camctl.testing.kernel_gpio's for a gpio-sim chip)."""


def test_ticks_on_the_monotonic_clock_are_trusted_whatever_the_factory_is_called() -> None:
    seen: list[int] = []
    lines = _recording(seen, _RigFactory())
    try:
        edge = time.monotonic()
        _late(lines, "release", False, edge, 0.01)  # stamped, then delivered 10 ms later
        lines.drive("touchdown", True)  # the MockPin path: its tick is the change's monotonic time
        assert seen == [round(edge * 1e9), round(lines.factory.pin(23)._last_change * 1e9)]
    finally:
        lines.close()


def test_a_tick_before_the_lines_previous_edge_is_not_trusted(
        caplog: pytest.LogCaptureFixture) -> None:
    seen: list[int] = []
    lines = _recording(seen)
    try:
        with caplog.at_level(logging.WARNING, logger="camctl.board.gpio"):
            t0 = time.monotonic() - 1.0
            _late(lines, "release", False, t0, 0.0)
            _late(lines, "release", True, t0 + 0.5, 0.0)
            _late(lines, "release", False, t0 + 0.5, 0.0)  # the same stamp: not before
            _late(lines, "release", True, t0 + 0.6, 0.0)
            _late(lines, "release", False, t0 + 0.2, 0.0)  # before the line's previous edge
            _late(lines, "release", True, t0 + 0.7, 0.0)
            _late(lines, "arm", False, t0 + 0.1, 0.0)  # another line keeps its own order
            _late(lines, "release", False, t0 + 0.8, 0.0)
        assert seen == [round(t0 * 1e9), round((t0 + 0.5) * 1e9), 42, round((t0 + 0.1) * 1e9),
                        round((t0 + 0.8) * 1e9)]
        assert len(caplog.records) == 1
    finally:
        lines.close()


def _set_level(lines: EventLines, event: str, active: bool) -> None:
    """Move a mock line without running its callback: the level an edge still on its way to
    camctl (on lgpio's thread) has already set."""
    pin = lines._devices[event].pin
    callback = pin.when_changed
    pin.when_changed = None
    try:
        lines.drive(event, active)
    finally:
        pin.when_changed = callback


def _settled() -> None:
    """Every min_pulse wait started so far has fired or been cancelled."""
    for timer in [t for t in threading.enumerate() if isinstance(t, threading.Timer)]:
        timer.join(60)


def test_with_min_pulse_a_bouncing_contact_is_stamped_at_its_first_edge() -> None:
    got: list[int] = []
    cfg = GpioConfig(backend="mock", bounce_ms=5, min_pulse_ms=20, lines=LINES)
    lines = EventLines(cfg, lambda ev, t, _: got.append(t), pin_factory=MockFactory())
    pin = lines._devices["release"].pin  # pulled up, active low
    t0 = float(math.floor(time.monotonic()) - 2)  # whole seconds: the offsets below are exact ns

    def ns(ms: float) -> int:
        return round((t0 + ms / 1000) * 1e9)

    def edge(ms: float, active: bool, level: bool | None = None) -> None:
        _set_level(lines, "release", active if level is None else level)
        pin.when_changed(t0 + ms / 1000, not active)  # stamped ms after t0, delivered now

    try:
        assert ns(10.8) - ns(5.8) == 5_000_000 and ns(4.999) - ns(0) == 4_999_000
        edge(0, True, level=False)  # the contact touches, and bounces off (not held: no confirm)
        edge(1, False)
        edge(4.999, True)  # 4.999 ms after the first touch: the same burst; held
        _settled()
        assert got == [ns(0)]  # confirmed min_pulse after the last bounce, stamped at the first
        edge(5.5, False)  # chatter of the held contact, within bounce_ms: the same burst
        edge(5.8, True)
        _settled()
        assert got == [ns(0)]
        edge(6, False)
        edge(10.8, True)  # bounce_ms after the previous touch: a new burst, stamped at its edge
        _settled()
        assert got == [ns(0), ns(10.8)]
        edge(11, False)
        edge(100, True, level=False)  # a glitch shorter than min_pulse: rejected
        edge(100.5, False)
        _settled()
        assert got == [ns(0), ns(10.8)]
    finally:
        lines.close()


def test_with_min_pulse_the_wait_runs_from_the_bursts_last_touch() -> None:
    lines = EventLines(GpioConfig(backend="mock", bounce_ms=60_000, min_pulse_ms=60_000,
                                  lines=LINES), lambda *_: None, pin_factory=MockFactory())
    try:
        pin = lines._devices["release"].pin
        now = time.monotonic()
        pin.when_changed(now - 30, False)  # the first touch, 30 s ago
        pin.when_changed(now - 29, True)
        pin.when_changed(now - 1, False)  # the last touch: the line must hold a minute from here
        assert 45 < lines._pending["release"].interval <= 59.0
    finally:
        lines.close()


def test_a_glitch_then_a_press_whose_edge_is_on_its_way_reports_the_press_once() -> None:
    """lgpio delivers edges on its own thread: when a glitch's min_pulse wait is due, a later press
    may have set the line active before its edge reached camctl. The glitch's release must have
    ended that wait, else it reports the press early (at the glitch) and the press then reports
    again."""
    got: list[int] = []
    # no bounce window: the press is a burst of its own, not a bounce after the glitch
    lines = EventLines(GpioConfig(backend="mock", bounce_ms=0, min_pulse_ms=20, lines=LINES),
                       lambda ev, t, _: got.append(t), pin_factory=MockFactory())
    try:
        pin = lines._devices["release"].pin
        lines.drive("release", True)  # the glitch: a touch...
        lines.drive("release", False)  # ...released well within min_pulse
        _set_level(lines, "release", True)  # the press: the line is active, its edge on its way
        press = pin._last_change
        _settled()  # the glitch's wait is over
        pin.when_changed(press, False)  # the press's edge reaches camctl
        wait_for(lambda: got, "the press")
        _settled()
        assert got == [round(press * 1e9)]
    finally:
        lines.close()


class _WiredPin(MockPin):
    """A pin wiring moves and camctl cannot (as an lgpio pin): no ``drive_high``; its pull sets
    its level directly."""

    @property
    def drive_high(self) -> None:
        raise AttributeError("drive_high")

    def _set_pull(self, value: str) -> None:
        self._pull = value
        self._change_state(value == "up")


def test_only_mock_lines_can_be_driven() -> None:
    from camctl.exc import GpioError

    lines = EventLines(GpioConfig(backend="mock", lines=LINES), lambda *_: None,
                       pin_factory=MockFactory(pin_class=_WiredPin))
    try:
        with pytest.raises(GpioError) as refused:
            lines.drive("release", True)
        assert str(refused.value) == (
            "line 'release' is a real GPIO pin; only mock lines can be driven")
    finally:
        lines.close()
