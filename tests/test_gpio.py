"""Edge times are the pin's own ticks (lgpio: the kernel's stamp), debounce is measured from them.

The facts camctl relies on are pinned to the installed gpiozero's source (read as text, not imported), so an
upgrade that changes how ticks reach a callback fails here. The behaviour is exercised through MockFactory
pins, with the edge delivered late by another thread, as lgpio's callback thread delivers a kernel-stamped
edge.
"""

from __future__ import annotations

import ast
import importlib.util
import logging
import threading
import time
from pathlib import Path

import pytest
from gpiozero.pins.mock import MockFactory

from camctl.config import GpioConfig, GpioLine, PhasesConfig
from camctl.events import PhaseMachine
from camctl.gpio import MONOTONIC_TICKS, EventLines, edge_time_ns

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
    assert "lgpio.callback(" in enable and "self._call_when_changed" in enable  # lgpio's thread calls it


def test_installed_gpiozero_mock_ticks_are_monotonic_seconds_of_the_change() -> None:
    assert ast.unparse(_method(PINS / "mock.py", "MockFactory", "ticks").body[-1]) == "return monotonic()"
    call = _method(PINS / "mock.py", "MockPin", "_call_when_changed")
    assert ast.unparse(call.body[-1]) == "super()._call_when_changed(self._last_change, self._state)"
    assert "self._last_change = t" in ast.unparse(_method(PINS / "mock.py", "MockPin", "_change_state"))
    imports = [n for n in ast.parse((PINS / "mock.py").read_text()).body if isinstance(n, ast.ImportFrom)]
    assert any(n.module == "time" and "monotonic" in {a.name for a in n.names} for n in imports)
    # the documented callback signature, and the weak reference the pin keeps to it
    assert "the first will report the ticks" in (PINS / "__init__.py").read_text()
    assert "ref(value)" in ast.unparse(_method(PINS / "pi.py", "PiPin", "_set_when_changed"))
    assert set(MONOTONIC_TICKS) == {"LGPIOFactory", "MockFactory"}


LINES = (GpioLine("arm", 17), GpioLine("release", 27),
         GpioLine("touchdown", 23, pull_up=True, active_high=True))


def _late(lines: EventLines, event: str, level_high: bool, ticks: float, delay_s: float) -> None:
    """Deliver an edge stamped ``ticks`` from another thread ``delay_s`` later, as lgpio's callback thread."""
    pin = lines._devices[event].pin

    def deliver() -> None:
        time.sleep(delay_s)
        pin.when_changed(ticks, level_high)

    t = threading.Thread(target=deliver)
    t.start()
    t.join()


def test_the_edge_time_is_the_pin_tick_not_the_callback_time() -> None:
    seen: list[tuple[str, int]] = []
    lines = EventLines(GpioConfig(backend="mock", lines=LINES), lambda ev, t, _: seen.append((ev, t)),
                       pin_factory=MockFactory())
    try:
        edge = time.monotonic()
        _late(lines, "release", False, edge, 0.05)  # pulled up, active low: low is the edge
        assert seen == [("release", round(edge * 1e9))]
        lines.drive("touchdown", True)  # the MockPin path: its tick is the change's monotonic time
        assert seen[-1][0] == "touchdown" and seen[-1][1] == round(lines.factory.pin(23)._last_change * 1e9)
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
        _late(lines, "arm", False, t0 + 0.002, 0.02)  # 2 ms after the first edge, delivered 20 ms later
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


def test_ticks_not_on_the_monotonic_clock_fall_back_to_the_callback_time(caplog: pytest.LogCaptureFixture) -> None:
    assert edge_time_ns(MockFactory(), time.time()) is None  # an epoch-stamping kernel
    assert edge_time_ns(object(), time.monotonic()) is None  # a factory whose ticks we do not know
    now = time.monotonic_ns()
    assert edge_time_ns(MockFactory(), now / 1e9, now_ns=now + 10) == round(now / 1e9 * 1e9)
    seen: list[int] = []
    lines = EventLines(GpioConfig(backend="mock", lines=LINES), lambda ev, t, _: seen.append(t),
                       pin_factory=MockFactory(), clock_ns=lambda: 42)
    try:
        with caplog.at_level(logging.WARNING, logger="camctl.gpio"):
            _late(lines, "release", False, time.time(), 0.0)
            _late(lines, "release", True, time.time(), 0.0)
            _late(lines, "release", False, time.time(), 0.0)
        assert seen == [42, 42]
        assert sum("not on the monotonic clock" in r.message for r in caplog.records) == 1
    finally:
        lines.close()


def test_gpio_watch_on_lines_a_running_daemon_holds_is_a_one_line_error(tmp_path: Path) -> None:
    import subprocess
    import sys

    from camctl.demo import start_board, write_board_config

    cfg = write_board_config(tmp_path / "b", "watch-b", 0, size=(160, 120), stills=())
    board = start_board(cfg, tmp_path / "b" / "store", "watch-b")
    try:
        out = subprocess.run([sys.executable, "-m", "camctl", "gpio", "watch", "--config", str(cfg)],
                             capture_output=True, text=True, timeout=60)
    finally:
        board.stop()
    assert out.returncode == 2, out
    assert out.stderr.count("\n") == 1 and "held by camctl run (pid" in out.stderr, out.stderr
    assert str(board.proc.pid) in out.stderr and out.stdout == ""


def test_gpio_watch_prints_levels_then_edges_with_their_gaps() -> None:
    from camctl.gpio import watch

    factory = MockFactory()
    lines: list[str] = []
    stop = threading.Event()
    cfg = GpioConfig(backend="mock", lines=LINES)
    t = threading.Thread(target=watch, args=(cfg,), kwargs={"out": lines.append, "stop": stop,
                                                           "pin_factory": factory}, daemon=True)
    t.start()
    deadline = time.monotonic() + 20
    while len(lines) < len(LINES) and time.monotonic() < deadline:
        time.sleep(0.01)
    try:
        assert all(line.endswith("(at start)") for line in lines), lines
        pin = factory.pin(27)  # release: pulled up, active low
        edge = time.monotonic() - 0.01  # stamped 10 ms ago, delivered now as lgpio's thread would
        pin.when_changed(edge, False)
        pin.when_changed(edge + 0.0015, True)  # a bounce 1.5 ms later
    finally:
        stop.set()
        t.join(10)
    first, bounce = lines[len(LINES):]
    assert "gpio27  release      low  ACTIVE" in first and "ms" not in first, first
    assert "high inactive  +1.500 ms" in bounce, bounce
