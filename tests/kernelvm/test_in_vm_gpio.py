"""camctl's GPIO lines on a real kernel: gpio-sim lines read through lgpio and gpiozero's
LGPIOFactory (as camctl.testing.kernel_gpio's GpioSimFactory), the stack a Pi runs.

Runs only inside the kernel tier's VM (tests/test_kernel_gpio.py boots it; or
``python -m camctl.testing.kernelvm``); tests/conftest.py keeps it out of a host run. Times are the
kernel's (CLOCK_MONOTONIC, the VM's clock), compared with each other and with the clock read around
them, never with how long something took. The one measurement (trigger latency against a bare lgpio
callback) is printed and saved, not asserted.
"""

from __future__ import annotations

import itertools
import json
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from waiting import wait_for

from camctl.board.config import ARMED, SAFE, GpioConfig, GpioLine, PhasesConfig
from camctl.board.events import PhaseMachine
from camctl.board.gpio import EventLines
from camctl.testing import kernelvm

pytestmark = pytest.mark.skipif(not kernelvm.in_vm(), reason="runs in the kernel tier's VM only "
                                "(python -m camctl.testing.kernelvm)")

PIN = 17  # BCM17, the arm key's pin in the example rigs: line 17 of the sim chip


@pytest.fixture(scope="module")
def sim():
    from camctl.testing.kernel_gpio import GpioSim

    return GpioSim.from_env()


@pytest.fixture
def factory(sim) -> Iterator:
    """A fresh pin factory on the sim chip per test, left as the next test needs it (camctl's
    lines cancel their lgpio callbacks as they close: nothing to undo here)."""
    import lgpio

    f = sim.factory()
    yield f
    f.close()
    sim.pull(PIN, high=True)  # at rest for the next test
    assert lgpio._notify_thread.is_alive(), "lgpio's alert thread ended"


def _edges(factory, level: int) -> list[int]:
    """The kernel's times of the edges to ``level`` on PIN, oldest first."""
    return [t for line, lvl, t in factory.kernel_edges if line == PIN and lvl == level]


def test_each_edge_reaches_camctl_with_the_kernels_time(sim, factory):
    # trusted as the ticks they are, not by the factory's name (gpiozero's is LGPIOFactory)
    assert type(factory).__name__ != "LGPIOFactory"
    seen: list[tuple[str, int, str, int]] = []
    cfg = GpioConfig(backend="lgpio", bounce_ms=0, min_pulse_ms=0,
                     lines=(GpioLine("release", PIN, pull_up=True),))
    lines = EventLines(cfg, lambda ev, t, line: seen.append((ev, t, line, time.monotonic_ns())),
                       pin_factory=factory)
    try:
        # camctl's pull-up request is the sim line's pull: at rest, high, inactive
        assert sim.value(PIN) and not lines.is_active("release")
        written = []
        for n in range(1, 4):
            before = time.monotonic_ns()
            sim.pull(PIN, high=False)  # the break-wire breaks: active low
            written.append(before)
            wait_for(lambda n=n: len(seen) == n, f"camctl's edge {n}")
            sim.pull(PIN, high=True)
            wait_for(lambda n=n: len(_edges(factory, 1)) == n, f"the kernel's rising edge {n}")
        kernel = _edges(factory, 0)
        assert len(kernel) == 3, factory.kernel_edges
        for before, kernel_ns, (event, t_ns, label, called_ns) in zip(written, kernel, seen,
                                                                      strict=True):
            assert (event, label) == ("release", f"gpio{PIN}")
            # camctl's time is the kernel's stamp (ns through gpiozero's float seconds)...
            assert abs(t_ns - kernel_ns) <= 1, (t_ns, kernel_ns)
            # ...which the kernel took on the VM's monotonic clock: after the pull was written,
            # before camctl's callback ran
            assert before <= kernel_ns < called_ns, (before, kernel_ns, called_ns)
    finally:
        lines.close()


BOUNCE_MS = 200.0  # the whole burst is well inside it, even with the VM's slow writes
BURST_GAPS_S = (0.0002, 0.0006, 0.001, 0.0003, 0.0008, 0.0004)  # contact chatter, 0.2-1 ms


def test_a_burst_of_bounces_is_one_event_stamped_at_its_first_edge(sim, factory):
    machine = PhaseMachine(PhasesConfig(), bounce_ms=BOUNCE_MS)
    cfg = GpioConfig(backend="lgpio", bounce_ms=BOUNCE_MS, min_pulse_ms=0,
                     lines=(GpioLine("arm", PIN, pull_up=True),))
    lines = EventLines(cfg, lambda ev, t, line: machine.handle(ev, source="gpio", mono_ns=t,
                                                              line=line),
                       pin_factory=factory)
    try:
        # the key turns: low, then chatter, then held low
        levels = [i % 2 == 1 for i in range(len(BURST_GAPS_S) + 1)]  # low, high, low, ... low
        for high, gap in itertools.zip_longest(levels, BURST_GAPS_S):
            sim.pull(PIN, high=high)
            if gap:
                time.sleep(gap)
        wait_for(lambda: len(factory.kernel_edges) == len(levels), "every edge of the burst")
        presses = _edges(factory, 0)
        assert len(presses) == 4, factory.kernel_edges
        gaps_ms = [(b - a) / 1e6 for a, b in itertools.pairwise(presses)]
        assert max(gaps_ms) < BOUNCE_MS, f"the burst was not one burst: {gaps_ms} ms"
        wait_for(lambda: len(machine.records) == len(presses), "camctl's record of every press")
        assert lines.is_active("arm") and machine.phase == ARMED
        [tr] = machine.history
        assert (tr.phase_from, tr.phase_to, tr.event, tr.source) == (SAFE, ARMED, "arm", "gpio")
        assert abs(tr.mono_ns - presses[0]) <= 1  # the first edge, as the kernel stamped it
        # every later press arrived and was rejected as a bounce, at its own kernel time
        later = [(r.outcome, r.mono_ns) for r in machine.records[1:]]
        assert [o for o, _ in later] == ["bounce"] * 3
        assert all(abs(t - k) <= 1 for (_, t), k in zip(later, presses[1:], strict=True))
    finally:
        lines.close()


def test_a_second_event_lines_on_the_chip_hears_edges_after_the_first_closed(sim):
    """Closing camctl's lines cancels their lgpio callbacks: a stale one, reached by the next edge
    on the same handle and line, would raise in lgpio's one alert thread and end it."""
    import lgpio

    cfg = GpioConfig(backend="lgpio", bounce_ms=0, min_pulse_ms=0,
                     lines=(GpioLine("release", PIN, pull_up=True),))
    handles = []
    for n in (1, 2):
        seen: list[int] = []
        f = sim.factory()
        handles.append(f._handle)
        lines = EventLines(cfg, lambda ev, t, line, seen=seen: seen.append(t), pin_factory=f)
        try:
            sim.pull(PIN, high=False)
            wait_for(lambda seen=seen: seen, f"EventLines {n}'s edge")
            sim.pull(PIN, high=True)
            wait_for(lambda f=f: len(_edges(f, 1)) == 1, f"EventLines {n}'s rising edge")
        finally:
            lines.close()
            f.close()
        [kernel_ns] = _edges(f, 0)
        assert len(seen) == 1 and abs(seen[0] - kernel_ns) <= 1
        assert lgpio._notify_thread.is_alive(), f"lgpio's alert thread ended after {n}"
    assert handles[0] == handles[1]  # the second factory had the first's handle back from lgpio


MIN_PULSE_MS = 300.0  # far longer than the glitch below: two writes to the sim chip


def test_min_pulse_a_burst_of_bounces_is_one_event_at_its_first_edge_and_a_glitch_none(
        sim, factory):
    machine = PhaseMachine(PhasesConfig(), bounce_ms=BOUNCE_MS)
    cfg = GpioConfig(backend="lgpio", bounce_ms=BOUNCE_MS, min_pulse_ms=MIN_PULSE_MS,
                     lines=(GpioLine("arm", PIN, pull_up=True),))
    lines = EventLines(cfg, lambda ev, t, line: machine.handle(ev, source="gpio", mono_ns=t,
                                                              line=line),
                       pin_factory=factory)
    try:
        # a glitch: low and straight back high
        sim.pull(PIN, high=False)
        sim.pull(PIN, high=True)
        wait_for(lambda: len(factory.kernel_edges) == 2, "the glitch's two edges")
        (_, _, down), (_, _, up) = factory.kernel_edges
        assert (up - down) / 1e6 < MIN_PULSE_MS, "the stimulus: the glitch was no glitch"
        _settled()
        assert machine.records == [] and machine.phase == SAFE
        # the key turns, bounce_ms after the glitch: low, chatter, held low
        time.sleep(BOUNCE_MS * 1.5 / 1000)
        levels = [i % 2 == 1 for i in range(len(BURST_GAPS_S) + 1)]
        for high, gap in itertools.zip_longest(levels, BURST_GAPS_S):
            sim.pull(PIN, high=high)
            if gap:
                time.sleep(gap)
        wait_for(lambda: len(factory.kernel_edges) == 2 + len(levels), "the burst's edges")
        presses = _edges(factory, 0)[1:]
        assert (presses[0] - up) / 1e6 >= BOUNCE_MS, "the stimulus: the burst was no new burst"
        gaps_ms = [(b - a) / 1e6 for a, b in itertools.pairwise(presses)]
        assert max(gaps_ms) < BOUNCE_MS, f"the stimulus: the burst was not one burst: {gaps_ms}"
        wait_for(lambda: machine.records, "camctl's one event for the burst")
        _settled()
        [rec] = machine.records
        [tr] = machine.history
        assert (tr.phase_from, tr.phase_to, rec.outcome) == (SAFE, ARMED, "transition")
        assert abs(tr.mono_ns - presses[0]) <= 1  # the first touch, as the kernel stamped it
    finally:
        lines.close()


def _settled() -> None:
    """Every min_pulse wait started so far has fired or been cancelled."""
    for timer in [t for t in threading.enumerate() if isinstance(t, threading.Timer)]:
        timer.join(60)


# -- trigger latency: the kernel's edge time to camctl's phase change, against a bare lgpio callback
LATENCY_JSON_ENV = "CAMCTL_KERNELVM_LATENCY_JSON"
ROUNDS, EDGES = 3, 20  # alternating rounds of each path, so load changes hit both alike


def _bare_lgpio_latencies(sim, n: int) -> list[int]:
    """ns from each falling edge's kernel time to the moment a bare lgpio callback ran."""
    import lgpio

    got: list[int] = []
    fell, rose = threading.Event(), threading.Event()

    def on_edge(chip: int, gpio: int, level: int, tick: int) -> None:
        if level == 0:
            got.append(time.monotonic_ns() - tick)
            fell.set()
        else:
            rose.set()

    h = lgpio.gpiochip_open(sim.chip)
    try:
        lgpio.gpio_claim_alert(h, PIN, lgpio.BOTH_EDGES, lgpio.SET_PULL_UP)
        cb = lgpio.callback(h, PIN, lgpio.BOTH_EDGES, on_edge)
        try:
            for _ in range(n):
                fell.clear()
                rose.clear()
                sim.pull(PIN, high=False)
                assert fell.wait(60), "the bare callback's falling edge"
                sim.pull(PIN, high=True)
                assert rose.wait(60), "the bare callback's rising edge"
        finally:
            cb.cancel()
    finally:
        lgpio.gpiochip_close(h)
    return got


def _camctl_latencies(sim, n: int) -> list[int]:
    """ns from each arm edge's kernel time to camctl's phase change (the phase machine's
    transition callback, where the cameras' capture schedule changes on a board)."""
    got: list[int] = []
    armed = threading.Event()

    def on_transition(tr) -> None:
        if tr.phase_to == ARMED:
            got.append(time.monotonic_ns() - tr.mono_ns)
            armed.set()

    machine = PhaseMachine(PhasesConfig(), on_transition=on_transition)
    cfg = GpioConfig(backend="lgpio", bounce_ms=0, min_pulse_ms=0,
                     lines=(GpioLine("arm", PIN, pull_up=True),))
    f = sim.factory()
    lines = EventLines(cfg, lambda ev, t, line: machine.handle(ev, source="gpio", mono_ns=t,
                                                              line=line), pin_factory=f)
    try:
        for i in range(n):
            armed.clear()
            sim.pull(PIN, high=False)
            assert armed.wait(60), "camctl's phase change"
            sim.pull(PIN, high=True)
            wait_for(lambda i=i: len(_edges(f, 1)) == i + 1, "camctl's rising edge")
            machine.handle("disarm")
    finally:
        lines.close()
        f.close()
    return got


def _ms(ns: list[int], q: float) -> float:
    return float(np.percentile(ns, q)) / 1e6


def test_trigger_latency_against_a_bare_lgpio_callback(sim):
    """Measured, not asserted: printed (pytest -rA shows it) and saved as JSON to
    $CAMCTL_KERNELVM_LATENCY_JSON when set (camctl.bench.trigger_vm reads it)."""
    import lgpio

    bare: list[int] = []
    camctl: list[int] = []
    for _ in range(ROUNDS):
        bare += _bare_lgpio_latencies(sim, EDGES)
        camctl += _camctl_latencies(sim, EDGES)
    assert lgpio._notify_thread.is_alive()
    assert len(bare) == len(camctl) == ROUNDS * EDGES and min(bare + camctl) > 0
    out = {"edges": len(camctl),
           "camctl_p50_ms": _ms(camctl, 50), "camctl_p99_ms": _ms(camctl, 99),
           "bare_p50_ms": _ms(bare, 50), "bare_p99_ms": _ms(bare, 99)}
    out["ratio_p50"] = out["camctl_p50_ms"] / out["bare_p50_ms"]
    out["ratio_p99"] = out["camctl_p99_ms"] / out["bare_p99_ms"]
    print(f"trigger_latency in the VM ({out['edges']} edges each, kernel edge time -> callback): "
          f"camctl phase change p50 {out['camctl_p50_ms']:.3f} ms p99 "
          f"{out['camctl_p99_ms']:.3f} ms; bare lgpio callback p50 {out['bare_p50_ms']:.3f} ms "
          f"p99 {out['bare_p99_ms']:.3f} ms; ratio p50 {out['ratio_p50']:.2f} p99 "
          f"{out['ratio_p99']:.2f}")
    path = os.environ.get(LATENCY_JSON_ENV)
    if path:
        Path(path).write_text(json.dumps(out, indent=1) + "\n")
