"""The sensor path's bench figures respond to what they measure (issue 29): a sampler made expensive
lifts ``sensor_cpu_share_1khz`` past its target; a "with sensors" side slowed by a sampler that
holds the GIL drops ``capture_with_sensors_x`` below its target; the windows alternate ABBA and
pair up adjacently; the detectors the samplers feed are counted.

No wall-clock limit: only CPU ratios and the A/B ratio of the same run. The injected costs are
large (a CPU-time busy loop per sample, a sampler holding the GIL most of the time) so a shared,
noisy machine does not turn them either way.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import pytest

from camctl.bench import sensors
from camctl.bench.harness import Ctx, board_interpreter
from camctl.bench.registry import figures
from camctl.board.sensors.base import Sample, SensorDevice

BUSY_US = 300  # CPU per sample of the expensive sampler: 0.3 of a core at 1 kHz
SECONDS = 1.5
# windows swing several-fold on a machine others load: the median of 8 pairs is what a GIL held by
# the sampler most of the time (the ratio ~0.4 here) cannot hide behind
PAIRS = 8


def _burn_cpu(us: float) -> None:
    """Spend ``us`` of this thread's CPU time (not wall time: a starved thread still pays it)."""
    end = time.thread_time_ns() + us * 1000
    while time.thread_time_ns() < end:
        pass


class _Costly:
    """Wraps a device; its read costs ``per_sample()`` for each sample it returns, or
    ``per_read()`` once."""

    def __init__(self, dev: SensorDevice, per_sample: Callable[[], None] | None = None,
                 per_read: Callable[[], None] | None = None) -> None:
        self._dev, self._per_sample, self._per_read = dev, per_sample, per_read

    def __getattr__(self, name: str) -> object:
        return getattr(self._dev, name)

    def read(self) -> list[Sample]:
        got = self._dev.read()
        if self._per_read is not None:
            self._per_read()
        if self._per_sample is not None:
            for _ in got:
                self._per_sample()
        return got


def _with_imu_cost(**cost: Callable[[], None]) -> Callable[[], tuple[list[SensorDevice], str]]:
    def devices() -> tuple[list[SensorDevice], str]:
        devs, which = sensors.sim_devices()
        return [_Costly(devs[0], **cost), devs[1]], which  # type: ignore[list-item]
    return devices


def test_an_expensive_sampler_lifts_the_share_past_its_target(tmp_path: Path) -> None:
    with board_interpreter():
        cheap, _ = sensors.measure_share(tmp_path / "cheap", SECONDS)
        costly, _ = sensors.measure_share(tmp_path / "costly", SECONDS,
                                          _with_imu_cost(per_sample=lambda: _burn_cpu(BUSY_US)))
    assert cheap.samples > 0 and costly.samples > 0
    assert set(cheap.cpu_ns) == {"samplers", "store"}
    # 300 us of CPU a sample at 1 kHz is 0.3 of a core, whatever the machine; the figure sees it
    assert costly.share > 2 * sensors.SHARE_TARGET, (costly.cpu_ns, costly.wall_s)
    assert costly.share > cheap.share + 0.1, (cheap.share, costly.share)


def _hold_gil() -> None:
    # sum over a range is one C call: it never lets the interpreter switch threads, so the
    # capture path's threads wait for the GIL (a few ms here) at every poll of the IMU (per read,
    # not per sample: a sampler that falls behind still stops when told)
    sum(range(500_000))


def test_a_with_side_holding_the_gil_drops_the_capture_ratio_below_target(tmp_path: Path
                                                                          ) -> None:
    ctx = Ctx(quick=True)
    try:
        with board_interpreter():
            ab = sensors.capture_ab(ctx, PAIRS, 0.25, devices=_with_imu_cost(per_read=_hold_gil))
    finally:
        ctx.close()
    assert [w.with_sensors for w in ab.windows] == sensors.ab_order(PAIRS)
    assert all(w.samples > 0 for w in ab.side(True)) and all(w.samples == 0
                                                              for w in ab.side(False))
    by = {m.key: m for f in figures() for m in f.metrics}
    assert not by["capture_with_sensors_x"].passes(ab.ratio), (
        ab.ratios(), [w.stored_fps for w in ab.windows])


def test_windows_alternate_abba_and_pair_adjacent_windows() -> None:
    assert sensors.ab_order(3) == [False, True, True, False, False, True]
    ws = [sensors.Window(w, fps, 1.0) for w, fps in zip(sensors.ab_order(3),
                                                       (100, 90, 50, 100, 80, 40), strict=True)]
    ab = sensors.CaptureAB(ws)
    # pairs: (100, 90), (100, 50), (80, 40): each "without" with the "with" beside it
    assert ab.ratios() == [pytest.approx(0.9), pytest.approx(0.5), pytest.approx(0.5)]
    assert ab.ratio == pytest.approx(0.5)
    assert ab.ratios("cpu_ms_per_frame") == [1.0, 1.0, 1.0] and ab.cpu_ratio == 1.0


def test_the_motion_detectors_cost_is_counted(tmp_path: Path, monkeypatch) -> None:
    """The samplers feed the motion detectors, as a board's do: a detector made expensive lifts
    the share as an expensive read does."""
    from camctl.board.sensors.motion import MotionDetector

    feed = MotionDetector.feed

    def costly_feed(self: MotionDetector, samples: list[Sample]) -> list:
        for _ in samples:
            _burn_cpu(BUSY_US)
        return feed(self, samples)

    monkeypatch.setattr(MotionDetector, "feed", costly_feed)
    with board_interpreter():
        m, _ = sensors.measure_share(tmp_path, SECONDS)
    assert m.share > 2 * sensors.SHARE_TARGET, (m.cpu_ns, m.wall_s)


def test_the_figures_are_registered_with_their_targets() -> None:
    by = {m.key: m for f in figures() for m in f.metrics}
    assert by["sensor_cpu_share_1khz"].target == f"< {sensors.SHARE_TARGET:g}"
    assert by["capture_with_sensors_x"].target == ">= 0.9"
    names = [f.name for f in figures()]
    assert names.index("sensor_cpu_share_1khz") == names.index("capture_fps_1080p_2cams") + 1


def test_the_share_figure_reports_its_note(tmp_path: Path) -> None:
    out = sensors.bench_sensor_share(SimpleNamespace(quick=True, tmp=tmp_path,  # type: ignore
                                                     name=lambda p: p))
    assert out["sensor_cpu_share_1khz"] > 0
    assert "Pi 5" in out["_note"] and "Pi 4" in out["_note"]


def test_a_sensor_that_does_not_open_fails_the_figure_by_name(tmp_path: Path) -> None:
    """A dead sensor is the figure failing with its one-line reason, its samplers stopped (not a
    share measured without it)."""
    import threading

    from camctl.board.sensors.base import SensorError

    class Dead(_Costly):
        def open(self) -> None:
            raise SensorError(f"{self._dev.where}: WHO_AM_I 0x00, want 0x5A")

    def devices() -> tuple[list[SensorDevice], str]:
        devs, which = sensors.sim_devices()
        return [devs[0], Dead(devs[1])], which  # type: ignore[list-item]

    with pytest.raises(RuntimeError, match=r"^sensor baro sim: WHO_AM_I 0x00, want 0x5A$"):
        sensors.measure_share(tmp_path, SECONDS, devices)
    assert not [t for t in threading.enumerate() if t.name.startswith("camctl-sensor-")]
