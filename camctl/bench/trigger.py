"""Bench figure ``trigger_latency``: mock GPIO edge to the cameras' phase change, through the
Daemon's wiring.

The edge is timed where the kernel would stamp it (before anything runs) and then handed to a
separate callback thread, as lgpio delivers it: lgpio's Python module reads alerts on its own thread
and calls gpiozero's ``LGPIOPin._call_when_changed`` from there (gpiozero/pins/lgpio.py), so the
figure includes a real thread hop (wake-up and GIL hand-over), not a synchronous call from the
driving thread.
"""

from __future__ import annotations

import contextlib
import queue
import statistics
import threading
import time
from typing import Any

import numpy as np

from camctl.bench.harness import SIZE, Ctx, Figure, Metric, board_interpreter


def bench_trigger(ctx: Ctx) -> dict[str, Any]:
    """GPIO edge (MockPin) -> EventLines -> PhaseMachine -> Daemon -> CameraRunner.set_phase, many
    phase walks."""
    cycles = 6 if ctx.quick else 30
    with board_interpreter():  # what Daemon.start sets, undone when the figure is done
        lat = _phase_walks(ctx, cycles)
    allv = sorted(v for vs in lat.values() for v in vs)
    p99 = float(np.percentile(allv, 99))
    per = ", ".join(f"{ev} p50 {statistics.median(v):.2f}/max {max(v):.2f}"
                    for ev, v in lat.items())
    return {"trigger_latency_p50_ms": float(np.percentile(allv, 50)), "trigger_latency_p99_ms": p99,
            "_note": f"{len(allv)} edges in {cycles} phase walks, 2x1080p sim cameras running, "
                     f"each edge delivered by a callback thread (as lgpio's); ms by event: {per}"}


def _phase_walks(ctx: Ctx, cycles: int) -> dict[str, list[float]]:
    """Ms from each edge to the cameras' phase change, by event, over ``cycles`` arm-to-disarm
    walks."""
    from gpiozero.pins.mock import MockFactory

    from camctl.board.daemon import Daemon

    lat: dict[str, list[float]] = {}
    factory = MockFactory()
    daemon = Daemon(_trigger_config(ctx), pin_factory=factory)
    hop = _CallbackHop()
    try:
        daemon.start()
        assert daemon.lines is not None
        hop.start(daemon.lines)
        runners = list(daemon.runners.values())

        def edge(event: str, phase: str) -> None:
            t0 = time.monotonic_ns()  # the edge, as the kernel stamps it
            hop.drive(event, True)
            if any(r.phase != phase for r in runners):
                raise RuntimeError(f"edge {event!r} did not move the cameras to {phase} "
                                   f"(phase {daemon.phase})")
            lat.setdefault(event, []).append((max(r.phase_changed_ns for r in runners) - t0) / 1e6)
            hop.drive(event, False)

        for _ in range(cycles):
            edge("arm", "ARMED")
            time.sleep(0.05)  # cameras running armed, as on a real pad
            for ev, ph in (("release", "DESCENT"), ("separation", "SEPARATION"),
                           ("touchdown", "TOUCHDOWN")):
                edge(ev, ph)
                time.sleep(0.02)
            _wait_landed(daemon)
            edge("disarm", "SAFE")
    finally:
        hop.close()
        daemon.close()
        with contextlib.suppress(Exception):
            factory.close()
    return lat


def _trigger_config(ctx: Ctx) -> Any:
    """A mock-GPIO board with two 1080p cameras replaying frames at 30 fps in every phase."""
    from camctl.board.config import parse_config

    fps = {"ARMED": 30, "DESCENT": 30, "SEPARATION": 30, "TOUCHDOWN": 30}
    return parse_config({
        "board": "bench-trigger",
        "store": {"dir": str(ctx.tmp / "trigger-store"), "reserve_mb": 0},
        "gpio": {"backend": "mock", "bounce_ms": 5,
                 "events": {"arm": 17, "release": 27, "separation": 22, "touchdown": 23,
                            "disarm": 24}},
        "phases": {"post_touchdown_s": 0},
        "encode": {"threads": 2},
        # replayed frames: a frame costs what a Pi camera's does, not the simulator's renderer
        # (whose numpy calls hold the GIL for milliseconds: an artefact no Pi has)
        "cameras": [{"name": n, "role": n, "backend": "sim", "size": list(SIZE), "fps": fps,
                     "sim_prerender": 16} for n in ("down", "up")],
        "publish": {"bind": "tcp://127.0.0.1:*", "events": "tcp://127.0.0.1:*"},
    })


def _wait_landed(daemon: Any) -> None:
    """Tick the phase machine until the board has landed and serves (its files finished)."""
    deadline = time.monotonic() + 30
    while not (daemon.phase == "LANDED" and daemon.serving()):  # polling a condition, bounded
        daemon.machine.tick()
        if time.monotonic() > deadline:
            raise RuntimeError(f"board did not land and finish (phase {daemon.phase})")
        time.sleep(0.005)


class _CallbackHop:
    """lgpio's alert thread: it, not the edge's thread, runs the callbacks."""

    def __init__(self) -> None:
        self._alerts: queue.SimpleQueue[tuple[str, bool] | None] = queue.SimpleQueue()
        self._delivered = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, lines: Any) -> None:
        self._thread = threading.Thread(target=self._run, args=(lines,),
                                        name="bench-lgpio-callbacks", daemon=True)
        self._thread.start()

    def _run(self, lines: Any) -> None:
        while (item := self._alerts.get()) is not None:
            lines.drive(*item)
            self._delivered.set()

    def drive(self, event: str, active: bool) -> None:
        """Hand the edge to the callback thread and wait until it has run the callbacks."""
        self._delivered.clear()
        self._alerts.put((event, active))
        if not self._delivered.wait(10):
            raise RuntimeError(f"the callback thread did not deliver {event!r}")

    def close(self) -> None:
        self._alerts.put(None)
        if self._thread is not None:
            self._thread.join(10)


FIGURE = Figure("trigger_latency", bench_trigger, (
    Metric("trigger_latency_p50_ms",
           "mock GPIO edge -> callback thread hop -> CameraRunner.phase_changed_ns", "<", 2, "ms"),
    Metric("trigger_latency_p99_ms", "the same, 99th percentile", "<", 2, "ms"),
))
