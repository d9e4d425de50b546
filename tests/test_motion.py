"""Descent events from the sim IMU's |a| (MotionDetector) and the barometric check (BaroCheck)."""

from __future__ import annotations

import pytest

from camctl.board.config_sensors import MotionConfig, MotionRule, SensorConfig
from camctl.board.sensors.base import Sample, imu_row
from camctl.board.sensors.motion import BaroCheck, MotionDetector, MotionEvent
from camctl.board.sensors.scene import DropScene
from camctl.board.sensors.sim import sim_device
from camctl.store.sources import G

S = 1_000_000_000
MS = 1_000_000
RULES = (MotionRule("release", ("imu",), "freefall", 0.3, 40.0),
         MotionRule("separation", ("imu",), "shock", 2.5, 5.0),
         MotionRule("touchdown", ("imu",), "impact", 6.0, 0.0))
# odd offsets: the marks fall anywhere between samples
REL, SEP, TD = 10 * S + 123_457, 13 * S + 901_111, 40 * S + 3_333


class Clock:
    def __init__(self) -> None:
        self.t = 0

    def __call__(self) -> int:
        return self.t


def drop(rel: int = REL, sep: int | None = SEP, td: int | None = TD) -> DropScene:
    sc = DropScene()
    sc.mark("release", rel)
    if sep is not None:
        sc.mark("separation", sep)
    if td is not None:
        sc.mark("touchdown", td)
    return sc


def sampled(scene: DropScene, until: int, *, kind: str = "imu", rate: float = 416.0,
            noise_g: float = 0.01, seed: int = 1, step: int = 23 * MS) -> list[Sample]:
    clock = Clock()
    cfg = SensorConfig(name=kind, kind=kind, backend="sim", rate_hz=rate, noise_g=noise_g,
                       seed=seed)
    dev = sim_device(cfg, scene=scene, clock_ns=clock)
    dev.open()
    out: list[Sample] = []
    while clock.t < until:
        clock.t += step
        out += dev.read()
    return out


def detect(samples: list[Sample], rules: tuple[MotionRule, ...] = RULES,
           chunk: int = 17) -> list[MotionEvent]:
    det = MotionDetector(MotionConfig(rules))
    out: list[MotionEvent] = []
    for i in range(0, len(samples), chunk):
        out += det.feed(samples[i:i + chunk])
    return out


@pytest.mark.parametrize("noise_g", [0.0, 0.02, 0.05])
@pytest.mark.parametrize("rate", [200.0, 416.0, 1000.0])
def test_events_within_20_ms_of_the_marks(rate: float, noise_g: float) -> None:
    sc = drop()
    events = detect(sampled(sc, TD + 3 * S, rate=rate, noise_g=noise_g))
    first = {}
    for e in events:
        first.setdefault(e.event, e)
    assert set(first) == {"release", "separation", "touchdown"}
    marks = sc.marks()
    for name, e in first.items():
        assert 0 <= e.t_ns - marks[name] <= 20 * MS, (name, (e.t_ns - marks[name]) / MS)
        assert e.decided_ns >= e.t_ns
    rel, sep, td = first["release"], first["separation"], first["touchdown"]
    assert rel.decided_ns - rel.t_ns >= 40 * MS and rel.peak_g < 0.3
    assert 4 <= sep.peak_g <= 6 and td.peak_g > 6
    # each rule once per phase: the only repeat is the shock rule seeing the impact too
    assert [e.event for e in events].count("release") == 1
    assert [e.event for e in events].count("touchdown") == 1


def test_no_event_from_a_noisy_rest() -> None:
    rest = sampled(DropScene(), 60 * S, rate=1000.0, noise_g=0.05)
    assert len(rest) >= 60_000
    assert detect(rest) == []


def rows_of(gs: list[float], t0: int = 0, period: int = 5 * MS) -> list[Sample]:
    return [(t0 + i * period, imu_row(0.0, 0.0, g * G, 0.0, 0.0, 0.0)) for i, g in enumerate(gs)]


def test_a_single_sample_neither_starts_nor_breaks_a_run() -> None:
    impact = (MotionRule("touchdown", ("imu",), "impact", 6.0, 0.0),)
    free = (MotionRule("release", ("imu",), "freefall", 0.3, 40.0),)
    assert detect(rows_of([1.0] * 50 + [9.0] + [1.0] * 50), impact) == []  # a lone spike
    assert detect(rows_of([1.0] * 50 + [0.1] + [1.0] * 50), free) == []  # a lone dip
    # a free fall of 60 ms with one noisy sample in its middle is still one run from its start
    ev = detect(rows_of([1.0] * 10 + [0.05] * 6 + [0.5] + [0.05] * 6 + [1.0] * 10), free)
    assert [(e.event, e.t_ns, e.decided_ns) for e in ev] == [("release", 50 * MS, 90 * MS)]
    # two samples back inside break it: 30 ms + 30 ms never lasts 40 ms
    assert detect(rows_of([1.0] * 10 + [0.05] * 6 + [0.5] * 2 + [0.05] * 6 + [1.0] * 10),
                  free) == []


def test_a_gap_breaks_a_run() -> None:
    free = (MotionRule("release", ("imu",), "freefall", 0.3, 40.0),)
    before = rows_of([1.0] * 10 + [0.05] * 5)  # 20 ms of free fall, then nothing for 60 ms
    after = rows_of([0.05] * 5 + [1.0] * 10, t0=before[-1][0] + 60 * MS)
    assert detect(before + after, free) == []
    after = rows_of([0.05] * 5 + [1.0] * 10, t0=before[-1][0] + 5 * MS)  # no gap: one run
    assert [e.t_ns for e in detect(before + after, free)] == [50 * MS]


def test_a_bounce_fires_touchdown_once_and_rest_rearms() -> None:
    impact = (MotionRule("touchdown", ("imu",), "impact", 6.0, 0.0),)
    bounce = [1.0] * 20 + [15.0] * 4 + [1.0] * 40 + [8.0] * 4 + [1.0] * 20  # 2nd hit 0.2 s later
    assert [e.t_ns for e in detect(rows_of(bounce), impact)] == [100 * MS]
    rested = [1.0] * 20 + [15.0] * 4 + [1.0] * 110 + [8.0] * 4 + [1.0] * 20  # 0.55 s of rest
    assert [e.t_ns for e in detect(rows_of(rested), impact)] == [100 * MS, 670 * MS]
    tumbling = [1.0] * 20 + [15.0] * 4 + [2.0] * 60 + [0.5] * 60 + [8.0] * 4  # 0.6 s, not rest
    assert [e.t_ns for e in detect(rows_of(tumbling), impact)] == [100 * MS]
    det = MotionDetector(MotionConfig(impact))
    assert len(det.feed(rows_of(bounce[:30]))) == 1
    det.reset()
    assert len(det.feed(rows_of([15.0] * 4, t0=200 * MS))) == 1  # re-armed at once


def test_thresholds_are_respected() -> None:
    rules = (MotionRule("separation", ("imu",), "shock", 2.5, 5.0),
             MotionRule("touchdown", ("imu",), "impact", 6.0, 0.0))
    shock = rows_of([1.0] * 10 + [3.0] * 40 + [1.0] * 10, period=2 * MS)
    assert [e.event for e in detect(shock, rules)] == ["separation"]
    short = rows_of([1.0] * 10 + [3.0] * 3 + [1.0] * 10, period=2 * MS)  # 4 ms < min_ms 5
    assert detect(short, rules) == []
    ev = detect(rows_of([1.0, 7.0, 9.5, 12.0, 1.0]), rules[1:])
    assert [(e.t_ns, e.decided_ns, e.peak_g) for e in ev] == [(5 * MS, 10 * MS, 9.5)]


def test_baro_check_descending_after_release_and_stopped_after_touchdown() -> None:
    sc = drop()
    for rate in (25.0, 50.0):
        events = BaroCheck(1.5).feed(sampled(sc, TD + 10 * S, kind="baro", rate=rate, seed=4))
        assert [e.what for e in events] == ["descending", "stopped"]
        down, stop = events
        assert REL < down.t_ns < REL + S and down.rate_mps < -1.5
        assert TD < stop.t_ns < TD + 5 * S and abs(stop.rate_mps) <= 0.3


def test_baro_check_quiet_at_rest() -> None:
    assert BaroCheck(1.5).feed(sampled(DropScene(), 120 * S, kind="baro", rate=50.0)) == []


def test_peak_g_follows_the_fired_run_to_its_end() -> None:
    impact = (MotionRule("touchdown", ("imu",), "impact", 6.0, 0.0),
              MotionRule("release", ("imu",), "freefall", 0.3, 10.0))
    det = MotionDetector(MotionConfig(impact))
    assert det.peak_g("touchdown") is None
    gs = [1.0] * 10 + [7.0, 9.0, 12.0, 3.0, 17.5, 4.0, 2.0, 25.0] + [1.0] * 200
    ev = det.feed(rows_of(gs))
    # decided on the 2nd sample (peak 9 then); one sample back inside is bridged, two end it
    assert [(e.event, e.peak_g) for e in ev] == [("touchdown", 9.0)]
    assert det.peak_g("touchdown") == 17.5  # kept after re-arming (1 s of rest)
    det.feed(rows_of([0.2, 0.1, 0.05, 0.08, 0.5, 0.6] + [1.0] * 10, t0=2 * S))
    assert det.peak_g("release") == 0.05
    second = det.feed(rows_of([1.0, 8.0, 9.0, 11.0, 1.0, 1.0], t0=3 * S))  # another one, later
    assert det.peak_g("touchdown") == 11.0 and det.peak_g("touchdown", ev[0].t_ns) == 17.5
    assert det.peak_g("touchdown", second[0].t_ns) == 11.0 and det.peak_g("touchdown", 1) is None
    det.reset()
    assert det.peak_g("touchdown") is None and det.peak_g("nothing") is None
    assert det.peak_g("touchdown", ev[0].t_ns) is None  # a re-armed board forgets the old drop


def test_rules_without_imu_and_time_going_back() -> None:
    gpio_only = MotionRule("touchdown", ("gpio",), "impact", 6.0, 0.0)
    det = MotionDetector(MotionConfig((gpio_only, RULES[0])))
    assert det.events == ("release",)
    assert det.feed(rows_of([1.0] * 5 + [20.0] * 5)) == []
    free = rows_of([1.0] * 10 + [0.05] * 5, t0=S)
    back = rows_of([0.05] * 30 + [1.0] * 10, t0=free[-1][0] - 100 * MS)  # a reopened part
    assert [e.t_ns for e in detect(free + back, (RULES[0],))] == [back[0][0]]


def test_a_compressed_drop_through_the_sampler() -> None:
    # a demo's drop: 0.6 s of free fall, 4 s under canopy; the sim IMU polled by the real
    # sampler (as the board runs it), the detector fed from its on_samples hook
    from camctl.board.sensors.sampler import SensorSampler

    sc = drop(REL, REL + 600 * MS, REL + 4600 * MS)
    clock = Clock()
    cfg = SensorConfig(name="imu", kind="imu", backend="sim", rate_hz=416.0, noise_g=0.05)
    dev = sim_device(cfg, scene=sc, clock_ns=clock)
    det = MotionDetector(MotionConfig(RULES))
    events: list[MotionEvent] = []
    smp = SensorSampler(dev, sink=lambda b: True, recording=lambda: False, ledger=lambda: None,
                        on_samples=lambda name, got: events.extend(det.feed(got)), clock_ns=clock)
    dev.open()
    while clock.t < REL + 6 * S:
        clock.t += int(dev.poll_s * 1e9) + 313_000  # a sampler thread a little late each time
        smp.poll()
    marks = sc.marks()
    # the impact is a shock too: the phase machine, not the detector, knows separation is past
    assert [e.event for e in events] == ["release", "separation", "touchdown", "separation"]
    truth = [marks["release"], marks["separation"], marks["touchdown"], marks["touchdown"]]
    assert all(0 <= e.t_ns - t <= 20 * MS for e, t in zip(events, truth, strict=True))
    assert smp.samples_read == len(range(1, (clock.t * 416) // S + 1))


def test_baro_check_starts_again_when_time_goes_back() -> None:
    def alt_rows(t0: int, n: int, alt0: float, rate: float) -> list[Sample]:
        return [(t0 + i * 20 * MS, (0.0, 17.0, alt0 + rate * i * 0.02)) for i in range(n)]

    check = BaroCheck(1.5)
    assert [e.what for e in check.feed(alt_rows(10 * S, 150, 1000.0, -10.0))] == ["descending"]
    # the part reopens and its clock restarts earlier: it lies still now
    events = check.feed(alt_rows(5 * S, 200, 900.0, 0.0))
    # the 2 s window is used from 1.6 s on (80 %), then still for 1 s
    assert [(e.what, e.t_ns) for e in events] == [("stopped", 5 * S + 2600 * MS)]
