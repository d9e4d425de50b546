"""Bench figure ``camera_rates``: the picamera2 backend's rate switch and still cost, on the strict
double.

The double (:mod:`camctl.testing.picamera2_double`) behaves as the real stack does at run time: a
control set while streaming lands ``buffer_count`` + 3 frames late, a mode switch rebuilds the
controls and costs time, ``capture_request`` waits for the next frame. Both figures are sensor time
(the double's timestamps), so a busy machine shows up only as frames a late consumer lost, as on a
Pi.

- ``rate_switch_ms``: release edge (``CameraRunner.set_phase("DESCENT")``) to the first frame that
  the next one follows at the DESCENT interval, ARMED at 0.5 fps (the slowest rate the issue allows;
  a slow ARMED rate is what made a ``set_controls`` rate change take seconds) and DESCENT at 30 fps.
  The sensor runs at 30 fps from ARM and the backend thins frames, so the first frame after the edge
  is at most one sensor period late.
- ``still_video_gap_ms``: the ``video_gap_ms`` a still reports (the longest interval of the video
  across it, measured from the stored frames) at DESCENT 30 fps; two frame periods are 66.7 ms.
"""

from __future__ import annotations

import itertools
import statistics
import time
from types import ModuleType
from typing import Any

from camctl.bench.harness import Ctx, Figure, Metric

_ARMED, _DESCENT = 0.5, 30.0
_SIZE = (640, 480)


def _runner(cfg: Any, sink: Any, picamera2: ModuleType) -> Any:
    from camctl.board.cameras.picamera2 import Picamera2Camera
    from camctl.board.capture import CameraRunner
    from camctl.board.encode import EncoderPool

    pool = EncoderPool(1)
    camera = Picamera2Camera.from_config(cfg, picamera2=picamera2)
    runner = CameraRunner(camera, cfg, pool, sink)
    runner.start()
    return runner, pool


def _wait(pred: Any, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not pred():  # polling a condition, bounded
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.005)


def _rate_switch_ms(picamera2: ModuleType) -> float:
    """One ARM -> release on a fresh runner: ms from the edge to the first frame of the DESCENT-rate
    run."""
    from camctl.board.config import CameraConfig

    cfg = CameraConfig(name="down", size=_SIZE, encoder="software", pretrigger_s=0.0,
                       fps=(("ARMED", _ARMED), ("DESCENT", _DESCENT), ("TOUCHDOWN", _DESCENT)))
    frames: list[int] = []
    runner, pool = _runner(cfg, lambda ef: frames.append(ef.timestamp_ns) or True, picamera2)
    try:
        runner.set_phase("ARMED")
        _wait(lambda: runner.stats.frames_captured >= 1, 10, "the first ARMED frame")
        time.sleep(0.7)  # somewhere inside the 2 s ARMED interval
        edge_ns = time.monotonic_ns()
        runner.set_phase("DESCENT")
        _wait(lambda: len([t for t in frames if t > edge_ns]) >= 15, 20, "DESCENT frames")
    finally:
        runner.stop()
        pool.close()
    after = [t for t in frames if t > edge_ns]
    period_ns = 1e9 / _DESCENT
    # The first frame followed at the DESCENT period (a consumer the machine delayed may lose a
    # frame: the real stack drops it too, and the run starts at the next pair).
    for a, b in itertools.pairwise(after):
        if abs((b - a) - period_ns) < 2e6:
            return (a - edge_ns) / 1e6
    raise RuntimeError(f"no run of frames at the DESCENT interval after the edge: {after}")


def _still_gap_ms(picamera2: ModuleType) -> float:
    from camctl.board.config import CameraConfig

    cfg = CameraConfig(name="down", size=_SIZE, encoder="software", pretrigger_s=0.0,
                       stills=("separation",),
                       fps=(("ARMED", _ARMED), ("DESCENT", _DESCENT), ("TOUCHDOWN", _DESCENT)))
    stills: list[Any] = []
    runner, pool = _runner(cfg, lambda ef: (stills.append(ef) if ef.still else None) or True,
                           picamera2)
    try:
        runner.set_phase("DESCENT")
        _wait(lambda: runner.stats.frames_captured >= 5, 10, "DESCENT frames")
        runner.request_still("separation")
        _wait(lambda: bool(stills), 10, "the still")
    finally:
        runner.stop()
        pool.close()
    gap = stills[0].meta.get("video_gap_ms")
    if gap is None:
        raise RuntimeError("the still reported no video gap")
    return float(gap)


def bench_camera(ctx: Ctx) -> dict[str, Any]:
    from camctl.testing.picamera2_double import FakeRig

    trials = 3 if ctx.quick else 8
    picamera2 = FakeRig().module
    switch = [_rate_switch_ms(picamera2) for _ in range(trials)]
    gaps = [_still_gap_ms(picamera2) for _ in range(trials)]
    return {
        "rate_switch_ms": max(switch), "still_video_gap_ms": max(gaps),
        "_note": (f"strict picamera2 double, {trials} trials each, worst reported; "
                  f"rate switch (ARMED {_ARMED:g} -> DESCENT {_DESCENT:g} fps, "
                  f"sensor at {_DESCENT:g} from ARM, frames thinned) median "
                  f"{statistics.median(switch):.1f} ms; "
                  f"still gap median {statistics.median(gaps):.1f} ms "
                  f"(one DESCENT period is {1000 / _DESCENT:.1f} ms, "
                  f"two {2000 / _DESCENT:.1f} ms)"),
    }


FIGURE = Figure("camera_rates", bench_camera, (
    Metric("rate_switch_ms", "release edge -> first frame at the DESCENT interval "
           "(ARMED 0.5 fps), strict double", "<", 100, "ms"),
    Metric("still_video_gap_ms", "video interruption across a still at 30 fps "
           "(2 periods = 66.7 ms), strict double", "<", 66.7, "ms"),
))
