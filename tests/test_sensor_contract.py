"""The sensors' shared contract: [[sensors]]/[motion] config, the sampler's books and batches, and
the imu/baro store kinds (one JSON message per sample, batches read back whole)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mcap.reader import make_reader

from camctl.board.config import parse_config
from camctl.board.config_sensors import SensorConfig
from camctl.board.sensors.base import G, SensorDevice, imu_row
from camctl.board.sensors.sampler import SensorSampler
from camctl.common.ledger import Ledger
from camctl.exc import ConfigError
from camctl.store import FlightStore, iter_samples, verify
from camctl.store.config import StoreConfig
from camctl.store.sources import IMU_FIELDS, Source

BASE = {"board": "b", "cameras": [{"name": "down", "backend": "sim"}],
        "gpio": {"backend": "mock", "events": {"arm": 17, "release": 27}}}


class Scripted(SensorDevice):
    kind, part = "imu", "sim"

    def __init__(self, cfg: SensorConfig, reads: list) -> None:
        super().__init__(cfg)
        self.reads = reads

    def open(self) -> None:
        pass

    def identify(self):  # pragma: no cover - not used here
        raise NotImplementedError

    def read(self):
        return self.reads.pop(0) if self.reads else []


@pytest.mark.parametrize(("extra", "error"), [
    ({"sensors": [{"name": "down", "backend": "sim", "kind": "imu"}]},
     "sensors[0].name: name 'down' is already used"),
    ({"sensors": [{"name": "i", "backend": "lsm6dsox", "rate_hz": 2000}]},
     "sensors[0].rate_hz: must be <= 1000"),
    ({"sensors": [{"name": "i", "backend": "bmp390", "kind": "imu"}]},
     "sensors[0].kind: a bmp390 is a barometer, not an IMU"),
    ({"motion": {"release": {"sources": ["imu"]}}},
     "motion.release.sources: 'imu' needs a [[sensors]] table of kind imu"),
    ({"sensors": [{"name": "i", "backend": "sim", "kind": "imu"}],
      "motion": {"touchdown": {"sources": ["gpio"]}}},
     "motion.touchdown.sources: 'gpio' needs a [gpio.events] line for touchdown"),
    ({"sensors": [{"name": "i", "backend": "sim", "kind": "imu"}],
      "motion": {"release": {"threshold_g": 2}}}, "motion.release.threshold_g: must be <= 0.8"),
    ({"sensors": [{"name": "i", "backend": "sim", "kind": "imu"}],
      "motion": {"separation": {"threshold_g": 5}, "touchdown": {"threshold_g": 4}}},
     "motion.touchdown.threshold_g: an impact threshold (4 g) must be above"),
])
def test_bad_sensor_config_is_one_line_naming_the_key(extra: dict, error: str) -> None:
    with pytest.raises(ConfigError) as exc:
        parse_config({**BASE, **extra})
    assert str(exc.value).startswith(error) and "\n" not in str(exc.value)


def test_motion_defaults_by_event() -> None:
    cfg = parse_config({**BASE, "sensors": [{"name": "imu", "backend": "sim", "kind": "imu"}],
                        "motion": {"release": {}, "touchdown": {}}})
    rel, td = cfg.motion.rule("release"), cfg.motion.rule("touchdown")
    assert (rel.sources, rel.detect, rel.below) == (("gpio", "imu"), "freefall", True)
    assert (td.sources, td.detect, td.below) == (("imu",), "impact", False)
    assert cfg.motion.sources_of("separation") == ("gpio",)


def test_sampler_batches_books_and_store(tmp_path: Path) -> None:
    cfg = SensorConfig(name="imu", kind="imu", backend="sim", rate_hz=1000, batch_ms=10)
    reads = [[(1_000_000 * (10 * r + i), imu_row(0, 0, G, 0, 0, 0)) for i in range(10)]
             for r in range(6)]
    want = [t for r in reads[1:] for t, _ in r]
    dev = Scripted(cfg, list(reads))
    store = FlightStore(tmp_path, "b", "F", StoreConfig(dir=tmp_path), cameras=[],
                        sources=[Source("imu", "imu")])
    ledger = Ledger()
    recording = [False]
    smp = SensorSampler(dev, sink=store.put, recording=lambda: recording[0],
                        ledger=lambda: ledger, phase=lambda: "ARMED")
    smp.poll()  # not recording yet: live values only
    assert smp.status()["last"]["accel_g"] == pytest.approx(1.0) and smp.batches == 0
    recording[0] = True
    for _ in range(5):
        smp.poll()
    smp.flush()
    store.commit(wait=True)
    store.finish()
    store.close()
    assert ledger.totals()["imu"]["captured"] == 50
    seg = next((tmp_path / "F" / "imu").glob("*.mcap"))
    got = [t for b in iter_samples(seg) for t in b.t_ns]
    assert got == want == sorted(set(got))
    assert verify(tmp_path / "F").status == "clean"


def test_one_plottable_message_per_sample(tmp_path: Path) -> None:
    cfg = SensorConfig(name="imu", kind="imu", backend="sim", rate_hz=1000, batch_ms=5)
    dev = Scripted(cfg, [[(i * 1_000_000, imu_row(0, 0, G * i, 0, 0, 0)) for i in range(7)]])
    store = FlightStore(tmp_path, "b", "F", StoreConfig(dir=tmp_path),
                        sources=[Source("imu", "imu")])
    smp = SensorSampler(dev, sink=store.put, recording=lambda: True, ledger=lambda: None)
    smp.poll()
    store.finish()
    store.close()
    with open(next((tmp_path / "F" / "imu").glob("*.mcap")), "rb") as f:
        msgs = list(make_reader(f).iter_messages())
    assert [(s.name, c.topic) for s, c, _ in msgs[:1]] == [("camctl.Imu", "/imu/imu")]
    assert [json.loads(m.data)["accel_g"] for _, _, m in msgs] == [float(i) for i in range(7)]
    assert set(json.loads(msgs[0][2].data)) == {"t_ns", *IMU_FIELDS, "batch"}


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf"), True, "1.0", None])
def test_a_batch_refuses_a_value_that_is_not_a_finite_number(bad: object) -> None:
    from camctl.store.sources import SampleBatch

    rows = ((1.0, 2.0, 3.0), (4.0, bad, 6.0))
    with pytest.raises(ValueError, match="is not a finite number"):
        SampleBatch("baro", 0, ("a", "b", "c"), (1, 2), rows)  # type: ignore[arg-type]


def test_a_batch_takes_numpy_floats_ints_and_values_whose_sum_overflows() -> None:
    import numpy as np

    from camctl.store.sources import SampleBatch

    rows = ((np.float64(1.5), 2, 1e308), (1e308, 1e308, -3.0))
    assert SampleBatch("baro", 0, ("a", "b", "c"), (1, 2), rows).rows == rows
