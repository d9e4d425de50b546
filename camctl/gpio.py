"""GPIO event lines: one gpiozero ``DigitalInputDevice`` per configured line, feeding named events.

The pin factory is injected (gpiozero's seam): ``LGPIOFactory`` on a Pi (Pi 5 included; lgpio talks to
``/dev/gpiochip*``), ``MockFactory`` in the simulator and the tests, where :meth:`EventLines.drive` moves a
``MockPin`` so the real gpiozero edge path runs. Glitch rejection (``min_pulse_ms``: a line must hold
active that long) lives here; debounce lives in the phase machine, because ``MockPin`` ignores gpiozero's
``bounce_time`` and real contacts bounce.

Example::

    >>> from camctl.config import GpioConfig, GpioLine
    >>> seen = []
    >>> lines = EventLines(GpioConfig(backend="mock", lines=(GpioLine("release", 27),)),
    ...                    lambda name, t_ns, line: seen.append(name))
    >>> lines.drive("release", True); seen
    ['release']
    >>> lines.close()
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from camctl.config import GpioConfig, GpioLine
from camctl.exc import GpioError

__all__ = ["EventLines", "make_pin_factory"]

OnEdge = Callable[[str, int, str], None]  # (event name, edge monotonic ns, line label)


def make_pin_factory(gpio: GpioConfig) -> Any:
    """The gpiozero pin factory the config names. Never falls back to the mock silently."""
    if gpio.backend == "mock":
        from gpiozero.pins.mock import MockFactory

        return MockFactory()
    try:
        from gpiozero.pins.lgpio import LGPIOFactory
    except ImportError:
        raise GpioError("the lgpio pin factory needs lgpio: on Raspberry Pi OS run "
                        "'sudo apt install python3-lgpio' (venv with --system-site-packages), "
                        "or set [gpio] backend = \"mock\" for a bench without wiring") from None
    try:
        return LGPIOFactory()
    except Exception as exc:  # lgpio.error, OSError: no /dev/gpiochip*, no permission
        raise GpioError(f"cannot open the GPIO chip: {exc} (is the user in group 'gpio'?)") from None


class EventLines:
    """Watches the configured lines and calls ``on_edge(event, t_ns, line)`` when one becomes active."""

    def __init__(self, gpio: GpioConfig, on_edge: OnEdge, *, pin_factory: Any = None,
                 clock_ns: Callable[[], int] = time.monotonic_ns,
                 initial: Mapping[str, bool] | None = None) -> None:
        self.config = gpio
        self._on_edge = on_edge
        self._clock_ns = clock_ns
        self._min_pulse_s = gpio.min_pulse_ms / 1000.0
        self._devices: dict[str, Any] = {}
        self._lines: dict[str, GpioLine] = {}
        self._pending: dict[str, threading.Timer] = {}
        self._lock = threading.Lock()
        self._closed = False
        self._own_factory = pin_factory is None
        self.factory = make_pin_factory(gpio) if pin_factory is None else pin_factory
        try:
            from gpiozero import DigitalInputDevice

            # MockPin ignores bounce_time; lgpio does it in its own thread, so pass it through there.
            bounce = gpio.bounce_ms / 1000.0 if gpio.backend == "lgpio" and gpio.bounce_ms else None
            for line in gpio.lines:
                dev = DigitalInputDevice(line.pin, pull_up=line.pull_up, bounce_time=bounce,
                                         pin_factory=self.factory)
                # gpiozero makes a pulled-up line active-low; our "active" may be the opposite (a
                # break-wire held to ground reads high when it breaks).
                fires_on_activate = line.active_high != line.pull_up
                self._devices[line.event] = dev
                self._lines[line.event] = line
                if hasattr(dev.pin, "drive_high"):
                    # a mock line starts where the wiring holds it: at rest, or as ``initial`` says (a held
                    # arm key across a daemon restart); set before the handlers, so it is a level, not an edge
                    self.drive(line.event, bool((initial or {}).get(line.event, False)))
                handler = self._make_handler(line)
                if fires_on_activate:
                    dev.when_activated = handler
                    dev.when_deactivated = self._make_release(line)
                else:
                    dev.when_deactivated = handler
                    dev.when_activated = self._make_release(line)
        except GpioError:
            self.close()
            raise
        except Exception as exc:  # gpiozero's PinInUse, PinInvalidPin ... on a bad wiring config
            self.close()
            raise GpioError(f"cannot claim GPIO lines: {exc}") from None

    def _make_handler(self, line: GpioLine) -> Callable[..., None]:
        def on_active(*_: Any) -> None:
            t = self._clock_ns()
            if self._min_pulse_s <= 0:
                self._on_edge(line.event, t, f"gpio{line.pin}")
                return
            timer = threading.Timer(self._min_pulse_s, self._confirm, args=(line, t))
            timer.daemon = True
            with self._lock:
                old = self._pending.pop(line.event, None)
                self._pending[line.event] = timer
            if old is not None:
                old.cancel()
            timer.start()

        return on_active

    def _make_release(self, line: GpioLine) -> Callable[..., None]:
        def on_inactive(*_: Any) -> None:
            with self._lock:
                timer = self._pending.pop(line.event, None)
            if timer is not None:
                timer.cancel()  # a glitch shorter than min_pulse_ms

        return on_inactive

    def _confirm(self, line: GpioLine, t_ns: int) -> None:
        with self._lock:
            self._pending.pop(line.event, None)
        if not self._closed and self.is_active(line.event):
            self._on_edge(line.event, t_ns, f"gpio{line.pin}")

    # -- state --------------------------------------------------------------------------------------
    @property
    def events(self) -> tuple[str, ...]:
        return tuple(self._lines)

    def levels(self) -> dict[str, bool]:
        """Every line's current level (True: active), read now: what a restarted daemon resumes from."""
        return {event: self.is_active(event) for event in self._lines}

    def is_active(self, event: str) -> bool:
        line = self._lines[event]
        dev = self._devices[event]
        return bool(dev.is_active) == (line.active_high != line.pull_up)

    def drive(self, event: str, active: bool) -> None:
        """Mock backend only: move the line as wiring would (runs gpiozero's edge callbacks)."""
        if event not in self._devices:
            raise GpioError(f"no GPIO line is configured for event {event!r} "
                            f"(configured: {', '.join(self._lines) or 'none'})")
        pin = self._devices[event].pin
        if not hasattr(pin, "drive_high"):
            raise GpioError(f"line {event!r} is a real GPIO pin; only mock lines can be driven")
        line = self._lines[event]
        level_high = active == line.active_high
        if level_high:
            pin.drive_high()
        else:
            pin.drive_low()

    def pulse(self, event: str, hold_s: float | None = None) -> None:
        """Mock backend only: active, hold (min_pulse + a margin by default), inactive."""
        self.drive(event, True)
        hold = self._min_pulse_s * 1.5 + 0.002 if hold_s is None else hold_s
        if hold > 0:
            deadline = time.monotonic() + hold
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                time.sleep(left)
        self.drive(event, False)

    # -- lifecycle ----------------------------------------------------------------------------------
    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        with self._lock:
            timers = list(self._pending.values())
            self._pending.clear()
        for t in timers:
            t.cancel()
        for dev in self._devices.values():
            with contextlib.suppress(Exception):  # closing must never raise during shutdown
                dev.close()
        self._devices.clear()
        if self._own_factory and self.factory is not None:
            with contextlib.suppress(Exception):
                self.factory.close()

    def __enter__(self) -> EventLines:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else ", ".join(f"{e}=gpio{ln.pin}" for e, ln in self._lines.items())
        return f"<EventLines {self.config.backend}: {state}>"


def watch(gpio: GpioConfig, *, out: Callable[[str], None] = print, stop: threading.Event | None = None,
          pin_factory: Any = None) -> None:
    """``camctl gpio watch``: print every edge of every configured line with timestamps until ``stop``."""
    from gpiozero import DigitalInputDevice

    stop = stop or threading.Event()
    factory = make_pin_factory(gpio) if pin_factory is None else pin_factory
    t0 = time.monotonic_ns()
    devices = []
    try:
        for line in gpio.lines:
            dev = DigitalInputDevice(line.pin, pull_up=line.pull_up, pin_factory=factory)

            def edge(_dev: Any = None, line: GpioLine = line, dev: Any = dev) -> None:
                level = "high" if dev.pin.state else "low"
                active = bool(dev.is_active) == (line.active_high != line.pull_up)
                out(f"{(time.monotonic_ns() - t0) / 1e9:10.4f}s  {time.strftime('%H:%M:%S')}  "
                    f"gpio{line.pin:<3d} {line.event:<12s} {level:<4s} {'ACTIVE' if active else 'inactive'}")

            dev.when_activated = edge
            dev.when_deactivated = edge
            devices.append(dev)
            edge()
        stop.wait()
    finally:
        for dev in devices:
            dev.close()
        if pin_factory is None:
            factory.close()
