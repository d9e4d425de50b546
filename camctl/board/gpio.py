"""GPIO event lines: one gpiozero ``DigitalInputDevice`` per configured line, feeding named events.

The pin factory is injected: ``LGPIOFactory`` on a Pi, ``MockFactory`` in the simulator and the
tests, where :meth:`EventLines.drive` moves a ``MockPin``. Glitch rejection (``min_pulse_ms``: a
burst of bounces is one event, stamped at its first edge) lives here, debounce in the phase
machine. Edge times are the pins' own ``ticks`` (CLOCK_MONOTONIC), not the time the callback ran;
gpiozero's ``bounce_time`` is not used. docs/phases-and-gpio.md, section "GPIO", has the gpiozero
and lgpio facts behind this, with their sources.

Example::

    >>> from camctl.board.config import GpioConfig, GpioLine
    >>> seen = []
    >>> lines = EventLines(GpioConfig(backend="mock", lines=(GpioLine("release", 27),)),
    ...                    lambda name, t_ns, line: seen.append(name))
    >>> lines.drive("release", True); seen
    ['release']
    >>> lines.close()
"""

from __future__ import annotations

import contextlib
import logging
import math
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from camctl.board.config import GpioConfig, GpioLine
from camctl.common.lifecycle import Closeable
from camctl.exc import GpioError

__all__ = ["EventLines", "edge_time_ns", "make_pin_factory"]

log = logging.getLogger("camctl.board.gpio")
# A pin's ticks are trusted as the edge's CLOCK_MONOTONIC time when they are plausible for it: up to
# this long before the callback ran (docs/phases-and-gpio.md, "Edge times")
_TRUST_WINDOW_NS = 60_000_000_000

OnEdge = Callable[[str, int, str], None]  # (event name, edge monotonic ns, line label)


def edge_time_ns(ticks: Any, *, now_ns: int | None = None,
                 after_ns: int | None = None) -> int | None:
    """The edge time (``time.monotonic_ns`` clock) of a pin's ``ticks`` (seconds), or None when
    they are not a plausible CLOCK_MONOTONIC time of an edge delivered ``now_ns``: not a number,
    after now or a minute or more before it (an epoch-stamping kernel, a factory's own tick
    counter), or before ``after_ns`` (the line's previous trusted edge). Whatever the pin factory
    is called: its ticks are checked against the clock, not trusted by its name."""
    if (isinstance(ticks, bool) or not isinstance(ticks, int | float)
            or not math.isfinite(ticks)):
        return None
    t = round(ticks * 1e9)
    now = time.monotonic_ns() if now_ns is None else now_ns
    if not 0 <= now - t < _TRUST_WINDOW_NS:
        return None
    return None if after_ns is not None and t < after_ns else t


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
        raise GpioError(f"cannot open the GPIO chip: {exc} "
                        "(is the user in group 'gpio'?)") from None


@dataclass(slots=True)
class _Burst:
    """A line's touches, each within bounce_ms of the one before: one event, at the first."""

    first_ns: int
    last_ns: int
    confirmed: bool = False


class EventLines(Closeable):
    """Watches the configured lines; calls ``on_edge(event, t_ns, line)`` as one becomes active."""

    def __init__(self, gpio: GpioConfig, on_edge: OnEdge, *, pin_factory: Any = None,
                 clock_ns: Callable[[], int] = time.monotonic_ns,
                 initial: Mapping[str, bool] | None = None) -> None:
        self.config = gpio
        self._on_edge = on_edge
        self._clock_ns = clock_ns
        self._min_pulse_s = gpio.min_pulse_ms / 1000.0
        self._devices: dict[str, Any] = {}
        self._callbacks: dict[str, Callable[[Any, Any], None]] = {}
        self._lines: dict[str, GpioLine] = {}
        self._pending: dict[str, threading.Timer] = {}  # min_pulse waits
        self._bursts: dict[str, _Burst] = {}  # each line's latest burst of touches (min_pulse)
        self._bounce_ns = int(gpio.bounce_ms * 1e6)
        self._lock = threading.Lock()
        self._closed = False
        self._untrusted_ticks = 0  # edges stamped with the callback time instead (see edge_time_ns)
        self._trusted_ns: dict[str, int] = {}  # each line's last edge stamped with its ticks
        self._own_factory = pin_factory is None
        self.factory = make_pin_factory(gpio) if pin_factory is None else pin_factory
        try:
            from gpiozero import DigitalInputDevice

            for line in gpio.lines:
                # the device claims the pin and sets its pull; no bounce_time (see the module
                # docstring)
                dev = DigitalInputDevice(line.pin, pull_up=line.pull_up, bounce_time=None,
                                         pin_factory=self.factory)
                self._devices[line.event] = dev
                self._lines[line.event] = line
                if hasattr(dev.pin, "drive_high"):
                    # a mock line starts where the wiring holds it: at rest, or as ``initial`` says
                    # (a held arm key across a daemon restart); set before the handlers, so it is a
                    # level, not an edge
                    self.drive(line.event, bool((initial or {}).get(line.event, False)))
                # the pin's own edge callback (ticks, state), in place of the device's (which drops
                # ticks). The pin keeps only a weak reference (gpiozero/pins/pi.py
                # PiPin._set_when_changed): we keep the strong one.
                self._callbacks[line.event] = self._make_changed(line)
                dev.pin.when_changed = self._callbacks[line.event]
        except GpioError:
            self.close()
            raise
        except Exception as exc:  # gpiozero's PinInUse, PinInvalidPin ... on a bad wiring config
            self.close()
            raise GpioError(f"cannot claim GPIO lines: {exc}") from None

    def _make_changed(self, line: GpioLine) -> Callable[[Any, Any], None]:
        on_active, on_inactive = self._make_handler(line), self._make_release(line)

        def on_changed(ticks: Any, state: Any) -> None:
            # the line is active when its level is the configured active level (a break-wire pulled
            # up reads high when it breaks: active_high)
            if bool(state) == line.active_high:
                on_active(ticks)
            else:
                on_inactive()

        return on_changed

    def _edge_ns(self, line: GpioLine, ticks: Any) -> int:
        t = edge_time_ns(ticks, after_ns=self._trusted_ns.get(line.event))
        if t is not None:
            self._trusted_ns[line.event] = t
            return t
        self._untrusted_ticks += 1
        if self._untrusted_ticks == 1:
            log.warning("GPIO edge ticks %r from %s are not a monotonic clock time of this edge; "
                        "using callback times (late by the callback's scheduling delay)",
                        ticks, type(self.factory).__name__)
        return self._clock_ns()

    def _make_handler(self, line: GpioLine) -> Callable[[Any], None]:
        def on_active(ticks: Any) -> None:
            t = self._edge_ns(line, ticks)
            if self._min_pulse_s <= 0:
                self._on_edge(line.event, t, self.label(line.event))
                return
            with self._lock:
                burst = self._bursts.get(line.event)
                if burst is None or not t - burst.last_ns < self._bounce_ns:
                    # bounce_ms or more after the line's previous touch: a new burst
                    burst = self._bursts[line.event] = _Burst(t, t)
                else:
                    burst.last_ns = t
                if burst.confirmed:
                    return  # chatter of a contact already reported: one event
                # held min_pulse after this touch (the edge, not this callback), reported at the
                # burst's first
                left = max(0.0, self._min_pulse_s - (time.monotonic_ns() - t) / 1e9)
                timer = threading.Timer(left, lambda: self._confirm(line, burst, timer))
                timer.daemon = True
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
                timer.cancel()  # not held min_pulse_ms: a glitch, or a bounce of a burst

        return on_inactive

    def _confirm(self, line: GpioLine, burst: _Burst, timer: threading.Timer) -> None:
        with self._lock:
            if self._pending.get(line.event) is not timer:
                return  # released (or touched again) since: cancelled too late
            del self._pending[line.event]
            # the level now, should a release still be on its way (lgpio's own thread)
            if not self.is_active(line.event):
                return
            burst.confirmed = True
        self._on_edge(line.event, burst.first_ns, self.label(line.event))

    def forget_touches(self, event: str) -> None:
        """Forget the line's earlier touches (``min_pulse_ms`` bursts): its next active edge
        starts a burst of its own. For an operator's command that moves a mock line
        (camctl.board.commands): a command is no bounce of the edges before it."""
        with self._lock:
            self._bursts.pop(event, None)

    def label(self, event: str) -> str:
        """The line's name in the records and the phase machine's debounce: ``gpio<pin>``."""
        return f"gpio{self._lines[event].pin}"

    # -- state -------------------------------------------------------------------------------------
    @property
    def events(self) -> tuple[str, ...]:
        return tuple(self._lines)

    def levels(self) -> dict[str, bool]:
        """Every line's level now (True: active): what a restarted daemon resumes from."""
        return {event: self.is_active(event) for event in self._lines}

    def is_active(self, event: str) -> bool:
        return bool(self._devices[event].pin.state) == self._lines[event].active_high

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

    # -- lifecycle ---------------------------------------------------------------------------------
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
            # first the edge callback: only clearing ``when_changed`` cancels lgpio's (gpiozero
            # 2.0.1's LGPIOPin.close keeps it registered on the handle, where the next edge on the
            # line reaches it, raises, and ends lgpio's one alert thread)
            with contextlib.suppress(Exception):  # closing must never raise during shutdown
                dev.pin.when_changed = None
            with contextlib.suppress(Exception):
                dev.close()
        self._devices.clear()
        if self._own_factory and self.factory is not None:
            with contextlib.suppress(Exception):
                self.factory.close()

    def __repr__(self) -> str:
        state = ("closed" if self._closed
                 else ", ".join(f"{e}=gpio{ln.pin}" for e, ln in self._lines.items()))
        return f"<EventLines {self.config.backend}: {state}>"


def watch(gpio: GpioConfig, *, out: Callable[[str], None] = print,
          stop: threading.Event | None = None, pin_factory: Any = None) -> None:
    """``camctl gpio watch``: print every edge of every configured line until ``stop``, at its
    kernel time (the pin's ticks, as :class:`EventLines` records them) with the gap since that
    line's previous edge, so contact bounce shows as edges closer than ``bounce_ms``. The first line
    per pin is its level at start."""
    from gpiozero import DigitalInputDevice

    stop = stop or threading.Event()
    factory = make_pin_factory(gpio) if pin_factory is None else pin_factory
    t0 = time.monotonic_ns()
    devices: list[Any] = []
    callbacks: list[Callable[[Any, Any], None]] = []  # the pins keep weak references only
    last: dict[str, int] = {}

    def report(line: GpioLine, level_high: bool, t_ns: int, note: str) -> None:
        gap = f"  +{(t_ns - last[line.event]) / 1e6:.3f} ms" if line.event in last else ""
        if note != "at start":
            last[line.event] = t_ns
        active = level_high == line.active_high
        out(f"{(t_ns - t0) / 1e9:10.4f}s  {time.strftime('%H:%M:%S')}  "
            f"gpio{line.pin:<3d} {line.event:<12s} "
            f"{'high' if level_high else 'low':<4s} {'ACTIVE' if active else 'inactive'}{gap}"
            f"{f'  ({note})' if note else ''}")

    try:
        for line in gpio.lines:
            try:
                dev = DigitalInputDevice(line.pin, pull_up=line.pull_up, pin_factory=factory)
            except Exception as exc:  # lgpio 'GPIO busy', PinInUse: one line, not a traceback
                raise GpioError(f"cannot claim gpio{line.pin} ({line.event}): {exc} "
                                "(is camctl run holding it?)") from None
            devices.append(dev)

            def changed(ticks: Any, state: Any, line: GpioLine = line) -> None:
                t = edge_time_ns(ticks)
                report(line, bool(state), time.monotonic_ns() if t is None else t,
                       "callback time" if t is None else "")

            callbacks.append(changed)
            dev.pin.when_changed = changed
            report(line, bool(dev.pin.state), time.monotonic_ns(), "at start")
        stop.wait()
    finally:
        for dev in devices:
            dev.close()
        if pin_factory is None:
            factory.close()
