"""The simulated drop's physics (DropScene) and the sim IMU and barometer that sample it."""

from __future__ import annotations

import numpy as np
import pytest

from camctl.board.config_sensors import SensorConfig
from camctl.board.sensors.base import G, SensorError
from camctl.board.sensors.i2c import FIFO_POLL_S
from camctl.board.sensors.scene import DropScene
from camctl.board.sensors.sim import BARO_NOISE_PA, FIFO_S, SimBaro, SimImu, pressure_pa, sim_device

S = 1_000_000_000
MS = 1_000_000
REL, SEP, TD = 10 * S, 13 * S, 40 * S


def dropped() -> DropScene:
    sc = DropScene()
    for event, t in (("release", REL), ("separation", SEP), ("touchdown", TD)):
        sc.mark(event, t)
    return sc


def g_at(sc: DropScene, t_ns: int) -> float:
    return sc.accel_mps2(t_ns) / G


def test_scene_at_rest_and_in_free_fall() -> None:
    sc = dropped()
    assert g_at(DropScene(), 123 * S) == pytest.approx(1.0)  # never marked: at rest forever
    assert g_at(sc, REL - 1) == pytest.approx(1.0)
    assert g_at(sc, REL + 1 * MS) < 0.01
    assert g_at(sc, (REL + SEP) // 2) < 0.1  # mid free fall
    assert g_at(sc, TD + 1 * S) == pytest.approx(1.0)


def test_scene_shock_and_impact_peaks() -> None:
    sc = dropped()
    shock = [g_at(sc, SEP + k * MS) for k in range(400)]
    assert 4.0 <= max(shock) <= 6.0
    assert shock[int(np.argmax(shock))] and int(np.argmax(shock)) < 20  # the snatch is fast
    above = [k for k, g in enumerate(shock) if g > 2.5]
    assert 100 <= len(above) <= 400  # ~0.1-0.4 s of opening shock
    canopy = [g_at(sc, SEP + 3 * S + k * 10 * MS) for k in range(500)]
    assert 0.85 < min(canopy) < 0.99 < 1.01 < max(canopy) < 1.15  # hanging, with a swing
    impact = [g_at(sc, TD + k * 100_000) for k in range(400)]
    assert 12.0 <= max(impact) <= 25.0
    spike = [k for k, g in enumerate(impact) if g > 2.0]
    assert 10 * 10 <= len(spike) <= 30 * 10  # 10-30 ms (samples every 0.1 ms)


@pytest.mark.parametrize("free_fall_s", [0.3, 0.8, 1.5, 8.0])
def test_scene_shock_after_any_free_fall(free_fall_s: float) -> None:
    sc = DropScene()
    sc.mark("release", REL)
    sep = REL + int(free_fall_s * S)
    sc.mark("separation", sep)
    shock = [g_at(sc, sep + k * MS) for k in range(2000)]
    assert 4.0 <= max(shock) <= 6.0 and shock[5] > 2.5  # a compressed demo's drop has one too
    assert 0.9 < g_at(sc, sep + 20 * S) < 1.1
    if free_fall_s <= 1.5:  # the opening shock lasts ~0.1-0.3 s; only a long fall's lasts longer
        assert 50 <= sum(g > 2.5 for g in shock) <= 300
    alt = [sc.altitude_m(sep + k * 10 * MS) for k in range(300)]
    assert np.all(np.diff(alt) < 0)  # still falling, never up


def test_scene_altitude_falls_continuously_then_stays() -> None:
    sc = dropped()
    ts = np.arange(REL - S, TD + 5 * S, 1 * MS)
    alt = np.array([sc.altitude_m(int(t)) for t in ts])
    descent = alt[(ts >= REL) & (ts <= TD)]
    assert np.all(np.diff(descent) < 0)
    assert np.max(np.abs(np.diff(alt))) < 0.05  # continuous: < 50 m/s * 1 ms anywhere
    assert np.all(alt[ts >= TD] == alt[ts >= TD][0]) and np.all(alt[ts <= REL] == alt[0])
    speed = [(sc.altitude_m(t) - sc.altitude_m(t + 100 * MS)) * 10 for t in (SEP - S, TD - S)]
    assert 17 < speed[0] < 19.6 and 5 <= speed[1] <= 7  # 2 s of free fall (drag), canopy


def test_scene_accelerometer_agrees_with_altitude() -> None:
    # the felt force is g - dv/dt (v down): integrating it back gives the altitude's speed
    sc = dropped()
    t0, t1 = SEP + 20 * MS, SEP + 2 * S
    ts = np.arange(t0, t1, MS)
    f = np.array([sc.accel_mps2(int(t)) for t in ts])
    dv = float(np.sum(G - f) * 1e-3)
    assert sc.velocity_mps(t1) - sc.velocity_mps(t0) == pytest.approx(dv, abs=1.0)


def cfg(kind: str = "imu", **kw: object) -> SensorConfig:
    return SensorConfig(name=kind, kind=kind, backend="sim", **kw)  # type: ignore[arg-type]


class Clock:
    def __init__(self, t: int = 5 * S) -> None:
        self.t = t

    def __call__(self) -> int:
        return self.t


def test_kind_picks_the_device_and_identity() -> None:
    assert isinstance(sim_device(cfg("imu")), SimImu)
    assert isinstance(sim_device(cfg("baro", rate_hz=50)), SimBaro)
    dev = sim_device(cfg("imu"))
    assert (dev.kind, dev.part, dev.identify().ok) == ("imu", "sim", True)
    with pytest.raises(SensorError, match="imu sim: not open"):
        dev.read()
    dev.open()
    dev.close()
    with pytest.raises(SensorError, match="not open"):
        dev.read()


@pytest.mark.parametrize("rate", [200.0, 416.0, 1000.0])
def test_fifo_returns_each_grid_sample_once(rate: float) -> None:
    clock = Clock()
    dev = sim_device(cfg(rate_hz=rate), clock_ns=clock)
    dev.open()
    t0 = clock.t
    got: list[int] = []
    for step in [0, 1, 3 * MS, 7 * MS + 3, 1, 0, 13 * MS, 250 * MS, 2 * MS, 999 * MS]:
        clock.t += step
        batch = dev.read()
        assert all(t <= clock.t for t, _ in batch)
        got += [t for t, _ in batch]
    k = np.arange(1, len(got) + 1)
    assert got == [t0 + round(i * 1e9 / rate) for i in k]  # on the grid, none lost or twice
    assert got[-1] > clock.t - 1e9 / rate  # every sample ready by now was returned
    assert dev.poll_s == FIFO_POLL_S  # read as often as the real IMUs' FIFOs are


@pytest.mark.parametrize("rate", [416.0, 1000.0 / 3, 833.0])
def test_a_read_at_a_data_ready_time_returns_that_sample(rate: float) -> None:
    clock = Clock(7)
    dev = sim_device(cfg(rate_hz=rate), clock_ns=clock)
    dev.open()
    for k in range(1, 400):
        grid = 7 + round(k * 1e9 / rate)
        clock.t = grid - 1
        assert dev.read() == []  # one ns before it is ready
        clock.t = grid
        assert [t for t, _ in dev.read()] == [grid]


def test_late_poll_caps_at_the_fifo_and_counts_the_overrun() -> None:
    clock = Clock()
    dev = sim_device(cfg(rate_hz=1000), clock_ns=clock)
    dev.open()
    clock.t += 5 * S
    got = dev.read()
    assert len(got) == FIFO_S * 1000 and dev.overrun == 3000
    assert got[-1][0] == clock.t  # the newest kept
    clock.t += 10 * MS
    assert [t for t, _ in dev.read()] == [got[-1][0] + i * MS for i in range(1, 11)]


@pytest.mark.parametrize(("up", "axis", "sign"), [("+z", 2, 1), ("-x", 0, -1), ("+y", 1, 1)])
def test_gravity_on_the_up_axis(up: str, axis: int, sign: int) -> None:
    clock = Clock()
    dev = sim_device(cfg(rate_hz=416, up_axis=up, noise_g=0.0), clock_ns=clock)
    dev.open()
    clock.t += S
    rows = np.array([r for _, r in dev.read()])
    assert rows[:, axis] == pytest.approx(sign * G)
    assert np.abs(np.delete(rows[:, :3], axis, axis=1)).max() < 1e-9
    assert rows[:, 6] == pytest.approx(1.0)


def read_all(dev, clock: Clock, until: int, step: int = 37 * MS) -> list:
    dev.open()
    out = []
    while clock.t < until:
        clock.t += step
        out += dev.read()
    return out


def test_seeded_and_split_independent() -> None:
    c1, c2, c3 = Clock(), Clock(), Clock()
    one = read_all(sim_device(cfg(seed=7), clock_ns=c1), c1, 7 * S, step=37 * MS)
    two = read_all(sim_device(cfg(seed=7), clock_ns=c2), c2, 7 * S, step=101 * MS)
    other = read_all(sim_device(cfg(seed=8), clock_ns=c3), c3, 7 * S)
    n = min(len(one), len(two))
    assert one[:n] == two[:n] and n > 400
    assert one[:n] != other[:n]


@pytest.mark.parametrize("noise_g", [0.0, 0.01, 0.05])
def test_imu_noise_level(noise_g: float) -> None:
    clock = Clock()
    rows = np.array([r for _, r in read_all(sim_device(cfg(rate_hz=1000, noise_g=noise_g),
                                                       clock_ns=clock), clock, 10 * S)])
    sd = rows[:, :3].std(axis=0) / G
    assert sd == pytest.approx([noise_g] * 3, rel=0.05, abs=1e-6)
    assert rows[:, 3:6].std() == pytest.approx(0.05, rel=0.1)  # gyro at rest
    assert abs(rows[:, 3:6].mean()) < 0.01


def test_imu_under_canopy_swings_and_tumbles_at_impact() -> None:
    clock = Clock(0)
    dev = sim_device(cfg(rate_hz=416, noise_g=0.0), scene=dropped(), clock_ns=clock)
    rows = read_all(dev, clock, TD + 2 * S)
    canopy = np.array([r for t, r in rows if SEP + 3 * S < t < TD])
    landed = np.array([r for t, r in rows if TD < t < TD + 100 * MS])
    assert np.abs(canopy[:, 0]).max() > 0.5  # tilted: gravity's reaction leaks onto x
    assert np.abs(canopy[:, 3:6]).max() > 10  # and rotates
    assert np.linalg.norm(landed[:, 3:6], axis=1).max() > 100  # the tumble


def test_baro_follows_the_altitude_with_its_noise() -> None:
    sc = dropped()
    clock = Clock(0)
    rows = read_all(sim_device(cfg("baro", rate_hz=50, seed=2), scene=sc, clock_ns=clock), clock,
                    TD + 20 * S)
    t = np.array([t for t, _ in rows])
    p, temp, alt = np.array([r for _, r in rows]).T
    truth = np.array([sc.altitude_m(int(x)) for x in t])
    err = alt - truth
    assert np.abs(err.mean()) < 0.05
    assert err[t > TD].std() == pytest.approx(0.25, rel=0.15)  # 3 Pa ~ 0.25 m near sea level
    assert (p - np.array([pressure_pa(a) for a in truth])).std() == pytest.approx(BARO_NOISE_PA,
                                                                                 rel=0.1)
    assert 15 < temp.min() <= temp.max() < 20


@pytest.mark.parametrize(("accel_range_g", "gyro_range_dps"), [(8, 250), (16, 2000)])
def test_imu_saturates_at_full_scale(accel_range_g: int, gyro_range_dps: int) -> None:
    clock = Clock(0)
    dev = sim_device(cfg(rate_hz=1000, noise_g=0.0, accel_range_g=accel_range_g,
                         gyro_range_dps=gyro_range_dps), scene=dropped(), clock_ns=clock)
    rows = np.array([r for t, r in read_all(dev, clock, TD + S) if t >= TD])
    assert np.abs(rows[:, 2]).max() == pytest.approx(accel_range_g * G)  # the 18 g impact
    assert np.abs(rows[:, 3:6]).max() <= gyro_range_dps
    assert rows[:, 6].max() == pytest.approx(accel_range_g, rel=0.01)


@pytest.mark.parametrize("up_axis", ["+z", "-x", "+y"])
def test_the_rest_fast_path_gives_the_per_sample_physics_numbers(
        monkeypatch: pytest.MonkeyPatch, up_axis: str) -> None:
    """On the hook the IMU computes its samples as arrays (the bench's sensor cost is mostly
    there); they must be the very numbers the per-sample physics gives."""
    import camctl.board.sensors.sim as sim_mod

    def rows(fast: bool) -> list:
        monkeypatch.setattr(sim_mod, "_on_the_hook", lambda ts, marks: fast)
        clock = [0]
        cfg = SensorConfig(name="imu", kind="imu", backend="sim", rate_hz=1000, seed=7,
                           noise_g=0.05, up_axis=up_axis, accel_range_g=2)
        dev = sim_mod.sim_device(cfg, clock_ns=lambda: clock[0])
        dev.open()
        out = []
        for step in (3_000_000, 17_000_000, 1_000_000, 40_000_000):
            clock[0] += step
            out += dev.read()
        return out

    fast, slow = rows(True), rows(False)
    assert len(fast) == len(slow) > 50
    assert fast == slow
