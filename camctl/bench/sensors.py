"""Bench figures of the sensor path (issue 29): what a 1 kHz IMU and a 50 Hz barometer cost, and
whether camera capture moves when they run.

- ``sensor_cpu_share_1khz`` (figure ``sensor_cpu_share_1khz``): a
  :class:`~camctl.board.sensors.sampler.SensorSampler` per sensor (a sim IMU at 1000 Hz, a sim
  barometer at 50 Hz, :mod:`camctl.board.sensors.sim`, the drop scene at rest) feeding the motion
  detectors (every descent event watched on the IMU, the barometric descent check) and recording
  into a real :class:`~camctl.store.FlightStore` (real files, real ``fsync``, its own group
  commits) on the run's temp dir for a few seconds. The share of one core = (CPU of the two
  sampler threads, detectors included + CPU of the store's writer thread) / wall time. The store
  holds the sensors only, so all its writer's CPU is what the sensors add to a board's store.
- ``capture_with_sensors_x`` (figure ``capture_with_sensors_x``): two 1080p sim cameras through
  CameraRunner + EncoderPool(2) + FlightStore, as ``capture_fps_1080p_2cams`` runs them, asked for
  more than this machine encodes (:data:`SATURATE_FPS`, DESCENT), so the frames stored per second
  are the capture path's capacity. One run, its windows alternating without and with the sensor
  path recording into the cameras' store (ABBA: :func:`ab_order`); the figure is the median over
  adjacent pairs of (frames/s with) / (frames/s without). Below 1 the sensors took capacity from
  the cameras. At saturation every CPU ms the sensors take is the cameras' loss, so ~1 - their
  share of the two cores is expected; on a machine others load, windows swing far more than
  that. The note adds the same pairs' ratio of CPU ms per stored frame of the capture, encoder
  and store threads (informative: a sampler holding the GIL did not lift it reliably, so it is no
  target).

How CPU is counted: each thread's own CPU clock (the kernel's per-thread clock,
:func:`camctl.bench.realstack.thread_cpu`), read from this thread before and after the window. Not
``/proc/self/task/TID/stat``: its utime+stime count clock ticks (10 ms at ``CLK_TCK`` 100), and a
few seconds at a few percent is a few ticks per thread; not ``time.thread_time`` inside the
thread: that needs a hook in the sampler's loop, and it would miss the store's writer thread.

The Pi assumption (the target): ``< 0.05`` of one core of this machine. One Raspberry Pi 5 core
does :data:`~camctl.bench.realstack.PI5_CORE_SHARE` (0.77) of this machine's core (7-Zip single
thread; docs/bench.md), so 5 % here is 6.5 % of a Pi 5 core; a Pi 4 core does :data:`PI4_VS_PI5`
(0.54) of a Pi 5's, so 5 % here is 12 % of a Pi 4 core: below 20 % of a core on the core the
rig leaves beside encoding (docs/bench.md, ``realstack``), with room for a real part's I2C reads.

The sim devices compute their rows (the scene's physics, numpy noise) where a real part's driver
does I2C transfers: the read's cost differs, the sampling, batching, detectors and store do not.
"""

from __future__ import annotations

import contextlib
import math
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from camctl.bench.harness import Ctx, Figure, Metric, board_interpreter
from camctl.board.sensors.base import Sample, SensorDevice

__all__ = [
    "CAPTURE_FIGURE",
    "FIGURE",
    "FIGURES",
    "SHARE_TARGET",
    "CaptureAB",
    "SensorPath",
    "SensorShare",
    "Window",
    "ab_order",
    "capture_ab",
    "measure_share",
    "sim_devices",
]

IMU_HZ = 1000.0
BARO_HZ = 50.0
SHARE_TARGET = 0.05
# Raspberry Pi 4 vs Pi 5, one core: sysbench cpu (primes to 10000), --threads=1, 60 s: Pi 4
# 1477.83 events/s, Pi 5 2737.49 (https://leoncode.co.uk/articles/raspberry-pi-benchmarks,
# "Sysbench"). A second benchmark chained onto the 7-Zip ratio of PI5_CORE_SHARE: first order.
PI4_VS_PI5 = 1477.83 / 2737.49
# per camera; ~190 fps is what two cameras sustain drop-free here (README, capture_fps_1080p_2cams)
SATURATE_FPS = 240.0
WARM_S = 0.5  # storing before the first window: encoders and store past their first frames
SETTLE_S = 0.1  # before each window: samplers opened and past their first batches
# Python thread names of the sensor path: the samplers' ("camctl-sensor-<name>") and the store's
# writer ("store-<flight>")
SAMPLER_THREAD = "camctl-sensor-"
STORE_FLIGHT = "sensors"


# --- the sim devices and their detectors ----------------------------------------------------------
BENCH_CONFIG: dict[str, Any] = {
    "board": "bench", "cameras": [{"name": "down", "backend": "sim"}],
    "sensors": [{"name": "imu", "backend": "sim", "kind": "imu", "rate_hz": IMU_HZ},
                {"name": "baro", "backend": "sim", "kind": "baro", "rate_hz": BARO_HZ}],
    # every descent event watched on the IMU: each sample goes through three rules
    "motion": {e: {"sources": ["imu"]} for e in ("release", "separation", "touchdown")},
}


def sim_devices() -> tuple[list[SensorDevice], str]:
    """A sim IMU at :data:`IMU_HZ` and a sim barometer at :data:`BARO_HZ` (unopened), sampling a
    drop scene at rest (on the hook: 1 g), and a line saying what they are."""
    from camctl.board.config import parse_config
    from camctl.board.sensors import open_sensor
    from camctl.board.sensors.scene import DropScene

    scene = DropScene()
    devs = [open_sensor(c, scene=scene) for c in parse_config(BENCH_CONFIG).sensors]
    polls = ", ".join(f"{d.name} polled every {d.poll_s * 1e3:g} ms" for d in devs)
    return devs, f"camctl.board.sensors.sim ({polls})"


def detectors() -> Callable[[str, Sequence[Sample]], None]:
    """The sampler's ``on_samples``: the IMU's samples through the motion rules of
    :data:`BENCH_CONFIG` (release, separation, touchdown), the barometer's through the descent
    check, as a board feeds them."""
    from camctl.board.config import parse_config
    from camctl.board.sensors.motion import BaroCheck, MotionDetector

    motion = parse_config(BENCH_CONFIG).motion
    imu, baro = MotionDetector(motion), BaroCheck(motion.baro_descent_mps)

    def feed(name: str, samples: Sequence[Sample]) -> None:
        (imu if name == "imu" else baro).feed(samples)

    return feed


# --- the sensor path ------------------------------------------------------------------------------
class SensorPath:
    """Samplers of ``devices`` recording into ``store`` (its sources must name them), as a board's
    are during a flight: :meth:`start`, :meth:`stop`."""

    def __init__(self, store: Any, devices: Sequence[SensorDevice]) -> None:
        from camctl.board.sensors.sampler import SensorSampler
        from camctl.common.ledger import Ledger

        self.ledger = Ledger()
        feed = detectors()
        self.samplers = [SensorSampler(d, sink=store.put, recording=lambda: True,
                                       ledger=lambda: self.ledger, phase=lambda: "DESCENT",
                                       on_samples=feed)
                         for d in devices]

    def start(self) -> None:
        for s in self.samplers:
            s.start()
        for s in self.samplers:
            if s.error:
                self.stop()
                raise RuntimeError(f"sensor {s.error}")

    def stop(self) -> None:
        for s in self.samplers:
            s.stop()

    @property
    def samples(self) -> int:
        return sum(s.samples_read for s in self.samplers)

    @contextlib.contextmanager
    def running(self) -> Iterator[SensorPath]:
        self.start()
        try:
            yield self
        finally:
            self.stop()


def sources_of(devices: Sequence[SensorDevice]) -> list[Any]:
    from camctl.store.sources import Source

    return [Source(d.name, d.kind) for d in devices]


@dataclass
class SensorShare:
    """One measured window: wall seconds, CPU ns by thread group, samples read."""

    wall_s: float
    cpu_ns: dict[str, int]
    samples: int
    due: int  # samples the grid put in the window (IMU_HZ + BARO_HZ per second)
    batches_stored: int = 0

    @property
    def share(self) -> float:
        return sum(self.cpu_ns.values()) / 1e9 / self.wall_s

    def per_sample_us(self) -> float:
        return sum(self.cpu_ns.values()) / 1e3 / max(1, self.samples)


def _group(name: str) -> str | None:
    if name.startswith(SAMPLER_THREAD):
        return "samplers"
    if name == f"store-{STORE_FLIGHT}":
        return "store"
    return None


def threads_cpu(group: Callable[[str], str | None]) -> dict[int, tuple[str, int]]:
    """``{tid: (group, CPU ns)}`` of this process's Python threads whose name ``group`` maps to a
    group (CPython 3.11 does not give its threads' names to the kernel: matched by
    ``native_id``)."""
    import threading

    from camctl.bench.realstack import thread_cpu

    by_tid = {t.native_id: g for t in threading.enumerate() if (g := group(t.name)) is not None}
    return {tid: (by_tid[tid], ns) for tid, (_comm, ns) in thread_cpu().items() if tid in by_tid}


def measure_share(root: Path, seconds: float,
                  devices: Callable[[], tuple[list[SensorDevice], str]] = sim_devices,
                  ) -> tuple[SensorShare, str]:
    """Run the sensor path for ``seconds`` into a fresh store under ``root``; its CPU share."""
    from camctl.store import FlightStore
    from camctl.store.config import StoreConfig

    devs, which = devices()
    with FlightStore(root, "bench", STORE_FLIGHT, StoreConfig(dir=root, reserve_mb=0),
                     sources=sources_of(devs), reserve=False) as store:
        path = SensorPath(store, devs)
        with path.running():
            time.sleep(0.3)  # warm-up: threads started, first batches stored
            before, n0, t0 = threads_cpu(_group), path.samples, time.perf_counter()
            time.sleep(seconds)  # the measurement window
            after, n1, t1 = threads_cpu(_group), path.samples, time.perf_counter()
        stored = sum(st.get("durable_frames", 0) for st in store.stats().values())
    cpu: dict[str, int] = {}
    for tid, (g, ns) in after.items():
        cpu[g] = cpu.get(g, 0) + ns - before.get(tid, (g, 0))[1]
    if "samplers" not in cpu or "store" not in cpu:
        raise RuntimeError(f"sensor path threads not found (CPU by group: {cpu})")
    due = round((t1 - t0) * sum(d.cfg.rate_hz for d in devs))
    return SensorShare(t1 - t0, cpu, n1 - n0, due, stored), which


def bench_sensor_share(ctx: Ctx) -> dict[str, Any]:
    from camctl.bench.realstack import PI5_CORE_SHARE, pi_share

    seconds = 2.0 if ctx.quick else 6.0
    with board_interpreter():
        m, which = measure_share(ctx.tmp / ctx.name("sensors"), seconds)
    pi5 = pi_share(m.share)
    split = ", ".join(f"{k} {v / 1e6:.0f} ms" for k, v in sorted(m.cpu_ns.items()))
    return {"sensor_cpu_share_1khz": m.share,
            "_note": f"{which}: IMU {IMU_HZ:g} Hz + barometer {BARO_HZ:g} Hz through "
                     f"SensorSampler into a FlightStore (real fsync) for {m.wall_s:.1f} s: CPU "
                     f"{split} (per-thread CPU clocks); {m.samples} samples read of {m.due} due, "
                     f"{m.per_sample_us():.0f} us CPU per sample; a Pi 5 core "
                     f"({PI5_CORE_SHARE:.2f} of this one) {pi5:.1%}, a Pi 4 core "
                     f"({PI5_CORE_SHARE * PI4_VS_PI5:.2f}) "
                     f"{pi_share(m.share, PI5_CORE_SHARE * PI4_VS_PI5):.1%}; the samplers feed "
                     "the motion detectors (3 IMU rules, the baro descent check)"}


FIGURE = Figure("sensor_cpu_share_1khz", bench_sensor_share, (
    Metric("sensor_cpu_share_1khz", "share of one core: CPU of the sampler threads (sim IMU "
           "1 kHz + baro 50 Hz) and of the store's writer / wall time", "<", SHARE_TARGET),
))


# --- capture with and without the sensors ---------------------------------------------------------
@dataclass
class Window:
    """One measured window of the capture run: frames stored per second (both cameras), CPU ms per
    stored frame of the capture, encoder and store threads, sensor samples read in it."""

    with_sensors: bool
    stored_fps: float
    cpu_ms_per_frame: float
    samples: int = 0


@dataclass
class CaptureAB:
    """The windows of one capture run, in order; pairs are adjacent (without, with) windows."""

    windows: list[Window]

    def side(self, with_sensors: bool) -> list[Window]:
        return [w for w in self.windows if w.with_sensors == with_sensors]

    def ratios(self, what: str = "stored_fps") -> list[float]:
        """Per pair: ``what`` (``stored_fps`` or ``cpu_ms_per_frame``) with the sensors /
        without."""
        return [getattr(b, what) / getattr(a, what) if getattr(a, what) > 0 else math.inf
                for a, b in zip(self.side(False), self.side(True), strict=True)]

    @property
    def ratio(self) -> float:
        """Median of the pairs' frames/s ratios."""
        return statistics.median(self.ratios())

    @property
    def cpu_ratio(self) -> float:
        """Median of the pairs' CPU-per-frame ratios."""
        return statistics.median(self.ratios("cpu_ms_per_frame"))


def ab_order(pairs: int) -> list[bool]:
    """Which windows run the sensors: without, with, with, without, ... (ABBA: a load that drifts
    steadily through the run favours neither side)."""
    return [bool((i % 2) ^ ((i // 2) % 2)) for i in range(2 * pairs)]


CAPTURE_THREADS = ("camctl-cam-", "camctl-encode", "store-")


def _capture_thread(name: str) -> str | None:
    return "capture" if name.startswith(CAPTURE_THREADS) else None


def capture_ab(ctx: Ctx, pairs: int, seconds: float,
               devices: Callable[[], tuple[list[SensorDevice], str]] = sim_devices,
               fps: float = SATURATE_FPS) -> CaptureAB:
    """Two 1080p sim cameras at ``fps`` in DESCENT through CameraRunner + EncoderPool(2) +
    FlightStore (as ``capture_fps_1080p_2cams``), measured in ``2 * pairs`` windows of ``seconds``
    in :func:`ab_order`; in a window "with", the sensor path of ``devices`` (fresh samplers, started
    before the window, stopped after it) records into the cameras' store."""
    from camctl.bench.capture import two_cameras

    windows: list[Window] = []
    runners: list[Any] = []

    def stored() -> int:
        return sum(r.stats.sent_to_store for r in runners)

    def cpu() -> int:
        return sum(ns for _g, ns in threads_cpu(_capture_thread).values())

    with two_cameras(ctx, "capture-ab", fps, sources_of(devices()[0])) as (store, cams):
        runners.extend(cams)
        deadline = time.monotonic() + 20
        while stored() < 10:  # polling a condition, bounded
            if time.monotonic() > deadline:
                raise RuntimeError(f"cameras did not start within 20 s at {fps:g} fps")
            time.sleep(0.01)
        time.sleep(WARM_S)
        for with_sensors in ab_order(pairs):
            path = SensorPath(store, devices()[0]) if with_sensors else None
            with path.running() if path else contextlib.nullcontext():
                time.sleep(SETTLE_S)  # both sides: the same time from the last switch
                s0, c0, n0, t0 = stored(), cpu(), path.samples if path else 0, time.monotonic()
                time.sleep(seconds)  # the measurement window
                s1, c1, n1, t1 = stored(), cpu(), path.samples if path else 0, time.monotonic()
            if path and n1 <= n0:
                raise RuntimeError("the sensor path read no samples beside the cameras")
            windows.append(Window(with_sensors, (s1 - s0) / (t1 - t0),
                                  (c1 - c0) / 1e6 / max(1, s1 - s0), n1 - n0))
    return CaptureAB(windows)


def bench_capture_with_sensors(ctx: Ctx) -> dict[str, Any]:
    pairs, seconds = (6, 0.4) if ctx.quick else (16, 0.6)
    with board_interpreter():
        ab = capture_ab(ctx, pairs, seconds)
    which = sim_devices()[1]

    def mean(xs: list[float]) -> float:
        return statistics.fmean(xs) if xs else math.nan

    fps = [mean([w.stored_fps for w in ab.side(s)]) for s in (False, True)]
    cpu = [mean([w.cpu_ms_per_frame for w in ab.side(s)]) for s in (False, True)]
    rs, rc = sorted(ab.ratios()), sorted(ab.ratios("cpu_ms_per_frame"))
    run = (f"one run, {2 * pairs} windows of {seconds:g} s alternating without/with (ABBA), 2 sim "
           f"cameras asked for {SATURATE_FPS:g} fps each (more than this machine encodes); with = "
           f"{which}, IMU {IMU_HZ:g} Hz + baro {BARO_HZ:g} Hz recording into the cameras' store")
    return {"capture_with_sensors_x": ab.ratio,
            "_note": f"{run}; median of the pairs' ratios (range {rs[0]:.2f}-{rs[-1]:.2f}); mean "
                     f"frames stored/s without/with {fps[0]:.0f}/{fps[1]:.0f}; CPU ms per stored "
                     f"frame of the capture, encoder and store threads without/with "
                     f"{cpu[0]:.2f}/{cpu[1]:.2f} (pairs' median ratio {ab.cpu_ratio:.2f}, range "
                     f"{rc[0]:.2f}-{rc[-1]:.2f})"}


CAPTURE_FIGURE = Figure("capture_with_sensors_x", bench_capture_with_sensors, (
    Metric("capture_with_sensors_x", "frames stored/s of 2 saturated 1080p sim cameras with the "
           "1 kHz IMU + 50 Hz baro samplers running / without, alternating windows of one run",
           ">=", 0.9),
))

FIGURES = (FIGURE, CAPTURE_FIGURE)
