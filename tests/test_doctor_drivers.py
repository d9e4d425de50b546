"""`camctl doctor` on the real drivers: the LSM6DSOX and BMP390 drivers over a bus that behaves as
Linux's i2c-stub (camctl/testing/i2c_regs.py; the drivers' own contract runs on the real i2c-stub
in the kernel tier), through doctor's ``Probes.open_sensor`` seam. The fake parts of
test_doctor_sensors.py test doctor's rules; these check that what the real drivers give doctor is
what its rules expect (WHO_AM_I, a FIFO sample in m/s^2, a compensated pressure)."""

from __future__ import annotations

import struct
from pathlib import Path
from types import SimpleNamespace

from test_doctor_sensors import failures, lines, probes_with

from camctl.board.config_sensors import SensorConfig
from camctl.board.doctor_sensors import check_sensors
from camctl.board.sensors import open_sensor
from camctl.testing.i2c_regs import StubBus, poke

LSM, BMP = 0x6A, 0x77
# LSM6DSOX FIFO words (ST lsm6dsox_reg.h: FIFO_DATA_OUT_TAG's TAG_SENSOR 0x01 gyro, 0x02 accel,
# TAG_CNT in bits 2:1); at +-16 g an LSB is 0.488 mg, so 2049 LSB is 1.000 g
GYRO = bytes([1 << 3 | 0b01 << 1 | 1]) + struct.pack("<3h", 0, 0, 0)
# BMP390: test_sensor_drivers.py's worked example (100876 Pa, 30.5 C)
BMP_CAL = bytes.fromhex("236B5849F65CFFCEF42300EA636E79F3F6AA4312C4")
BMP_DATA = bytes([151, 159, 109, 115, 216, 133])


def _accel(x: int, y: int, z: int) -> bytes:
    return bytes([2 << 3 | 0b01 << 1]) + struct.pack("<3h", x, y, z)


def _bus(*, who: int = 0x6C, accel: tuple[int, int, int] = (0, 0, 2049)) -> StubBus:
    bus = StubBus((LSM, BMP))
    poke(bus, LSM, 0x0F, [who])
    poke(bus, LSM, 0x78, (GYRO + _accel(*accel)) * 2)  # what a 28-byte FIFO read sees
    poke(bus, LSM, 0x3A, [2, 0])  # FIFO_STATUS1/2: two words waiting (one sample)
    poke(bus, BMP, 0x00, [0x60])
    poke(bus, BMP, 0x31, BMP_CAL)
    poke(bus, BMP, 0x04, BMP_DATA)
    poke(bus, BMP, 0x03, [0x70])  # drdy_temp, drdy_press, cmd_rdy
    return bus


def _doctor(bus: StubBus) -> list:
    sensors = (SensorConfig(name="imu", kind="imu", backend="lsm6dsox", address=LSM),
               SensorConfig(name="baro", kind="baro", backend="bmp390", address=BMP,
                            rate_hz=50))
    cfg = SimpleNamespace(sensors=sensors, store=SimpleNamespace(dir=Path("/nonexistent")))
    probes = probes_with(open_sensor=lambda c: open_sensor(c, bus=bus), sensor_seconds=0.5)
    return check_sensors(cfg, probes)  # type: ignore[arg-type]


def test_doctor_passes_a_level_lsm6dsox_and_a_bmp390_at_rest() -> None:
    checks = _doctor(_bus())
    shown = lines(checks)
    assert failures(checks) == [], shown
    assert shown[0] == "OK imu lsm6dsox /dev/i2c-1 0x6A: WHO_AM_I 0x6C ok"
    assert "1.00 g, 0 deg from +z" in shown[1]
    assert shown[2] == "OK baro bmp390 /dev/i2c-1 0x77: CHIP_ID 0x60 ok"
    assert shown[3].startswith("OK baro bmp390 /dev/i2c-1 0x77: 100.88 kPa, 30.5 C")


def test_doctor_fails_the_wrong_part_and_a_board_on_its_side() -> None:
    bad = failures(_doctor(_bus(who=0x6B)))
    assert lines(bad) == ["FAIL imu lsm6dsox /dev/i2c-1 0x6A: WHO_AM_I 0x6B, want 0x6C | fix: "
                          "`i2cdetect -y 1` shows what answers at 0x6A; check the backend and "
                          "the address-select pad (hardware/sensors.md)"]
    side = failures(_doctor(_bus(accel=(2049, 0, 0))))
    assert any("gravity along +x, expected +z" in c.detail for c in side), lines(side)
