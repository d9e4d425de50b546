"""camctl doctor's sensor checks, on fake parts through the ``Probes.open_sensor`` seam: a level
IMU and a barometer on a pad pass; a board on its side, the wrong part, no part, a dead part and
implausible air each fail with their one-line reason and fix, and fail ``camctl doctor``'s exit.

The fakes behave as the contract (camctl/board/sensors/base.py) says a driver does: ``open`` reads
the ID register and raises SensorError for the wrong part; the bus raises OSError with the
kernel's errno, as smbus2's ioctl does (Documentation/i2c/fault-codes.rst: ENXIO for no ACK).
"""

from __future__ import annotations

import argparse
import errno
from pathlib import Path
from types import SimpleNamespace

import pytest

from camctl.board.config import load_config
from camctl.board.config_sensors import SensorConfig
from camctl.board.doctor import FAIL, OK, WARN, Check, Probes, add_arguments, main, run_checks
from camctl.board.doctor_sensors import check_sensors
from camctl.board.sensors.base import G, Identity, SensorDevice, SensorError, imu_row


class FakeBus:
    """The part's registers as the bus answers them; ``error``: the errno every transfer fails with
    (a part that is not there, a bus not enabled)."""

    def __init__(self, who: int, error: int | None = None) -> None:
        self.who = who
        self.error = error

    def read_byte_data(self, address: int, register: int) -> int:
        if self.error is not None:
            raise OSError(self.error, f"[Errno {self.error}] {errno.errorcode[self.error]}")
        return self.who


class FakePart(SensorDevice):
    """A part on a fake bus: ``rows`` are the samples it has ready, one per read (``[]`` when it
    has none); ``check_id=False``: a driver that leaves the ID check to its caller."""

    register = 0x0F
    want = 0x6C

    def __init__(self, cfg: SensorConfig, *, bus: FakeBus, rows: list[tuple[float, ...]],
                 check_id: bool = True, wrap: bool = False) -> None:
        super().__init__(cfg)
        self.bus, self.rows, self.check_id, self.wrap = bus, list(rows), check_id, wrap
        self.opened = self.closed = False

    def _read_id(self) -> int:
        try:
            return self.bus.read_byte_data(self.cfg.address or 0, self.register)
        except OSError as exc:
            if self.wrap:  # a driver that wraps the bus error, keeping it as the cause
                raise SensorError(f"{self.where}: {exc}") from exc
            raise

    def open(self) -> None:
        got = self._read_id()
        if self.check_id and got != self.want:
            raise SensorError(f"{self.where}: WHO_AM_I 0x{got:02X}, want 0x{self.want:02X}")
        self.opened = True

    def identify(self) -> Identity:
        return Identity(self.register, self._read_id(), self.want)

    def read(self) -> list[tuple[int, tuple[float, ...]]]:
        assert self.opened, "read before open"
        return [(self.clock_ns(), self.rows.pop(0))] if self.rows else []

    def close(self) -> None:
        self.closed = True


class FakeImu(FakePart):
    kind, part = "imu", "lsm6dsox"


class FakeBaro(FakePart):
    kind, part, register, want = "baro", "bmp390", 0x00, 0x60


LEVEL = imu_row(0.05, -0.1, G * 0.998, 0.3, -0.2, 0.1)
ON_ITS_SIDE = imu_row(-G, 0.2, 0.3, 0.1, 0.0, -0.1)  # +z points along the ground, -x up
PAD_AIR = (98_700.0, 21.5, 220.0)


def imu_cfg(**kw) -> SensorConfig:
    return SensorConfig(**{"name": "imu", "kind": "imu", "backend": "lsm6dsox",
                           "address": 0x6A, **kw})


def baro_cfg(**kw) -> SensorConfig:
    return SensorConfig(**{"name": "baro", "kind": "baro", "backend": "bmp390", "address": 0x77,
                           "rate_hz": 50.0, **kw})


def parts(*, imu: dict | None = None, baro: dict | None = None, made: list | None = None):
    """``Probes.open_sensor``: the fake part for each config, built as ``imu``/``baro`` say."""
    def open_sensor(cfg: SensorConfig) -> SensorDevice:
        spec = {"imu": {"rows": [LEVEL]}, "baro": {"rows": [PAD_AIR]}}[cfg.kind]
        spec.update((imu if cfg.kind == "imu" else baro) or {})
        bus = FakeBus(spec.pop("who", FakeImu.want if cfg.kind == "imu" else FakeBaro.want),
                      spec.pop("error", None))
        dev = (FakeImu if cfg.kind == "imu" else FakeBaro)(cfg, bus=bus, **spec)
        if made is not None:
            made.append(dev)
        return dev
    return open_sensor


def probes_with(**kw) -> Probes:
    """Probes for the sensor checks: no daemon running, a user in group i2c, a short wait."""
    return Probes(**{"running_daemon": lambda d: None, "sensor_seconds": 0.05,
                     "user_groups": lambda: ("camctl", {"video", "gpio", "i2c"}), **kw})


def run(sensors: tuple[SensorConfig, ...], *, daemon: dict | None = None, **kw) -> list[Check]:
    cfg = SimpleNamespace(sensors=sensors, store=SimpleNamespace(dir=Path("/nonexistent")))
    probes = probes_with(open_sensor=parts(**kw), running_daemon=lambda d: daemon)
    return check_sensors(cfg, probes)  # type: ignore[arg-type]


def lines(checks: list[Check]) -> list[str]:
    return [f"{c.level} {c.name}: {c.detail}" + (f" | fix: {c.fix}" if c.fix else "")
            for c in checks]


def failures(checks: list[Check]) -> list[Check]:
    return [c for c in checks if c.level == FAIL]


# --- at rest: OK ----------------------------------------------------------------------------------
def test_a_level_imu_and_a_barometer_at_rest_pass_and_show_identity_and_sample() -> None:
    made: list[FakePart] = []
    checks = run((imu_cfg(), baro_cfg()), made=made)
    assert failures(checks) == [], lines(checks)
    shown = lines(checks)
    assert shown[0] == "OK imu lsm6dsox /dev/i2c-1 0x6A: WHO_AM_I 0x6C ok"
    assert shown[1].startswith("OK imu lsm6dsox /dev/i2c-1 0x6A: a (0.05, -0.10, 9.79) m/s^2 = "
                               "1.00 g, 1 deg from +z; gyro (0.3, -0.2, 0.1) dps")
    assert shown[2] == "OK baro bmp390 /dev/i2c-1 0x77: CHIP_ID 0x60 ok"
    assert shown[3] == "OK baro bmp390 /dev/i2c-1 0x77: 98.70 kPa, 21.5 C (pressure altitude 220 m)"
    assert all(d.closed for d in made)


def test_the_sample_may_come_a_few_polls_after_open() -> None:
    checks = run((imu_cfg(),), imu={"rows": [], "check_id": True})
    assert [c.detail for c in failures(checks)] == ["no sample within 0.05 s of starting it at "
                                                    "416 Hz"]
    # ... and a part whose first sample comes after some empty polls passes
    calls = {"n": 0}

    class Slow(FakeImu):
        def read(self):
            calls["n"] += 1
            return super().read() if calls["n"] >= 3 else []

    probes = probes_with(open_sensor=lambda cfg: Slow(cfg, bus=FakeBus(0x6C), rows=[LEVEL]),
                         sensor_seconds=30.0)
    cfg = SimpleNamespace(sensors=(imu_cfg(),), store=SimpleNamespace(dir=Path("/x")))
    assert failures(check_sensors(cfg, probes)) == []  # type: ignore[arg-type]
    assert calls["n"] == 3


# --- the IMU not at rest, or not mounted as configured --------------------------------------------
def test_an_imu_on_its_side_fails_with_the_axis_and_the_fix() -> None:
    checks = run((imu_cfg(),), imu={"rows": [ON_ITS_SIDE]})
    [bad] = failures(checks)
    assert bad.name == "imu lsm6dsox /dev/i2c-1 0x6A"
    assert bad.detail.startswith("gravity along -x, expected +z (")
    assert bad.fix.startswith("mount the IMU as hardware/sensors.md says or set up_axis")


def test_the_same_reading_passes_when_up_axis_says_the_part_is_mounted_that_way() -> None:
    assert failures(run((imu_cfg(up_axis="-x"),), imu={"rows": [ON_ITS_SIDE]})) == []
    # and a level board fails against -x, naming +z as where gravity is
    [bad] = failures(run((imu_cfg(up_axis="-x"),)))
    assert bad.detail.startswith("gravity along +z, expected -x")


def test_tilt_within_20_degrees_passes_and_beyond_fails() -> None:
    import math

    def tilted(deg: float) -> tuple[float, ...]:
        r = math.radians(deg)
        return imu_row(G * math.sin(r), 0.0, G * math.cos(r), 0, 0, 0)

    assert failures(run((imu_cfg(),), imu={"rows": [tilted(18)]})) == []
    [bad] = failures(run((imu_cfg(),), imu={"rows": [tilted(25)]}))
    assert "(25 deg off, at most 20)" in bad.detail


@pytest.mark.parametrize(("row", "words"), [
    (imu_row(0, 0, 1.3 * G, 0, 0, 0), "|a| 1.30 g at rest, expected 1.00 +/- 0.10 g"),
    (imu_row(0, 0, 0.8 * G, 0, 0, 0), "|a| 0.80 g at rest"),
    (imu_row(0, 0, G, 12.0, 0, 0), "gyro turns 12.0 dps at rest, expected < 5 dps"),
])
def test_an_imu_off_1g_or_turning_fails(row: tuple[float, ...], words: str) -> None:
    [bad] = failures(run((imu_cfg(),), imu={"rows": [row]}))
    assert bad.detail.startswith(words), bad.detail


# --- the wrong part, no part, a part that goes away -----------------------------------------------
def test_a_wrong_who_am_i_fails_whether_the_driver_or_the_doctor_checks_it() -> None:
    [bad] = failures(run((imu_cfg(),), imu={"who": 0x69}))  # an LSM6DS33 at 0x6A
    assert bad.detail == "WHO_AM_I 0x69, want 0x6C"  # the label names the device already
    assert "i2cdetect -y 1" in bad.fix
    [bad] = failures(run((imu_cfg(),), imu={"who": 0x69, "check_id": False}))
    assert bad.detail == "WHO_AM_I 0x69, expected 0x6C: not a lsm6dsox"
    assert "address-select pad" in bad.fix
    [bad] = failures(run((baro_cfg(),), baro={"who": 0x50, "check_id": False}))  # a BMP388
    assert bad.detail == "CHIP_ID 0x50, expected 0x60: not a bmp390"


@pytest.mark.parametrize("wrap", [False, True], ids=["oserror", "sensorerror-from-oserror"])
@pytest.mark.parametrize("code", [errno.ENXIO, errno.EREMOTEIO])
def test_no_device_at_the_address_is_one_line_with_the_wiring_fix(code: int, wrap: bool) -> None:
    made: list[FakePart] = []
    checks = run((imu_cfg(),), imu={"error": code, "wrap": wrap}, made=made)
    assert lines(checks) == [
        f"FAIL imu lsm6dsox /dev/i2c-1 0x6A: no device answers at 0x6A on /dev/i2c-1 "
        f"({errno.errorcode[code]} opening it) | fix: check SDA/SCL and 3V3, `i2cdetect -y 1` "
        "(hardware/sensors.md, Bring-up)"]
    assert made[0].closed


@pytest.mark.parametrize(("code", "words", "fix"), [
    (errno.ENOENT, "/dev/i2c-1 does not exist", "sudo raspi-config nonint do_i2c 0"),
    (errno.EACCES, "/dev/i2c-1 is not readable+writable by camctl", "usermod -aG i2c camctl"),
    (errno.EIO, "I/O error opening it at 0x6A on /dev/i2c-1", "pull-ups"),
])
def test_bus_errors_name_their_cause(code: int, words: str, fix: str) -> None:
    [bad] = failures(run((imu_cfg(),), imu={"error": code}))
    assert bad.detail.startswith(words) and fix in bad.fix, (bad.detail, bad.fix)


def test_a_bus_that_does_not_exist_through_real_smbus2_reads_as_i2c_off() -> None:
    """The errno the fakes raise is smbus2's own: opening /dev/i2c-250 (absent on any machine)
    through the real library, as a driver's open() does, fails with ENOENT -> "I2C is off"."""
    import smbus2

    class OnRealBus(FakeImu):
        def open(self) -> None:
            self.bus = smbus2.SMBus(self.cfg.bus)

    probes = probes_with(open_sensor=lambda cfg: OnRealBus(cfg, bus=FakeBus(0x6C), rows=[]))
    cfg = SimpleNamespace(sensors=(imu_cfg(bus=250),), store=SimpleNamespace(dir=Path("/x")))
    [bad] = check_sensors(cfg, probes)  # type: ignore[arg-type]
    assert (bad.level, bad.detail) == (FAIL, "/dev/i2c-250 does not exist: I2C is off or bus 250 "
                                             "is not this board's")
    assert bad.fix.startswith("sudo raspi-config nonint do_i2c 0")


def test_any_other_driver_error_is_still_one_line() -> None:
    class Broken(FakeImu):
        def open(self) -> None:
            raise RuntimeError("calibration block CRC mismatch")

    probes = probes_with(open_sensor=lambda cfg: Broken(cfg, bus=FakeBus(0x6C), rows=[]))
    cfg = SimpleNamespace(sensors=(imu_cfg(),), store=SimpleNamespace(dir=Path("/x")))
    assert lines(check_sensors(cfg, probes)) == [  # type: ignore[arg-type]
        "FAIL imu lsm6dsox /dev/i2c-1 0x6A: opening it failed: calibration block CRC mismatch | "
        "fix: check the wiring and the config's [[sensors]] table, `i2cdetect -y 1`"]


def test_a_read_error_after_open_fails_and_the_other_sensors_are_still_checked() -> None:
    class Flaky(FakeImu):
        def read(self):
            raise OSError(errno.EREMOTEIO, "Remote I/O error")

    probes = probes_with(open_sensor=lambda cfg: (Flaky(cfg, bus=FakeBus(0x6C), rows=[])
                                                  if cfg.kind == "imu" else parts()(cfg)))
    cfg = SimpleNamespace(sensors=(imu_cfg(), baro_cfg()), store=SimpleNamespace(dir=Path("/x")))
    checks = check_sensors(cfg, probes)  # type: ignore[arg-type]
    assert [c.detail for c in failures(checks)] == [
        "no device answers at 0x6A on /dev/i2c-1 (EREMOTEIO reading a sample)"]
    assert checks[-1].level == OK and checks[-1].name.startswith("baro bmp390")


def test_a_driver_row_of_the_wrong_shape_is_a_line_not_a_traceback() -> None:
    [bad] = failures(run((imu_cfg(),), imu={"rows": [(0.0, 0.0, 9.8)]}))
    assert bad.detail.startswith("the driver gave 3 value(s) (0.0, 0.0, 9.8), expected 7 numbers")
    [bad] = failures(run((baro_cfg(),), baro={"rows": [(None, 21.0, 0.0)]}))
    assert bad.detail.startswith("the driver gave 3 value(s) (None, 21.0, 0.0), expected 3")


# --- the barometer --------------------------------------------------------------------------------
@pytest.mark.parametrize(("row", "words"), [
    ((5_000.0, 21.0, 20_000.0), "pressure 5.00 kPa, expected 30-110 kPa"),
    ((125_000.0, 21.0, -1_800.0), "pressure 125.00 kPa, expected 30-110 kPa"),
    ((98_000.0, 85.0, 280.0), "temperature 85.0 C, expected -20..60 C"),
    ((98_000.0, -40.0, 280.0), "temperature -40.0 C, expected -20..60 C"),
])
def test_an_implausible_barometer_fails(row: tuple[float, ...], words: str) -> None:
    [bad] = failures(run((baro_cfg(),), baro={"rows": [row]}))
    assert bad.detail == words and bad.name == "baro bmp390 /dev/i2c-1 0x77"


# --- drivers not there, a running daemon, no sensors ----------------------------------------------
def test_a_backend_whose_driver_module_is_missing_reads_as_one_line(monkeypatch) -> None:
    """The real seam (``camctl.board.sensors.open_sensor``) with a backend whose module does not
    exist: the import error is a doctor line, not a traceback."""
    from camctl.board import sensors

    monkeypatch.setitem(sensors.BACKENDS, "lsm6dsox", "camctl.board.sensors._no_such_part:X")
    cfg = SimpleNamespace(sensors=(imu_cfg(),), store=SimpleNamespace(dir=Path("/x")))
    [bad] = check_sensors(cfg, probes_with())  # type: ignore[arg-type]
    assert bad.level == FAIL
    assert bad.detail == ("this camctl has no driver for backend 'lsm6dsox' (No module named "
                          "'camctl.board.sensors._no_such_part')")


def test_a_missing_smbus2_says_so() -> None:
    def no_smbus(cfg: SensorConfig) -> SensorDevice:
        raise ModuleNotFoundError("No module named 'smbus2'", name="smbus2")

    cfg = SimpleNamespace(sensors=(imu_cfg(),), store=SimpleNamespace(dir=Path("/x")))
    [bad] = check_sensors(cfg, probes_with(open_sensor=no_smbus))  # type: ignore[arg-type]
    assert bad.level == FAIL and bad.detail.startswith("smbus2 is not installed")


def test_sensors_a_running_daemon_samples_are_not_opened() -> None:
    made: list[FakePart] = []
    checks = run((imu_cfg(), baro_cfg()), daemon={"pid": 4242}, made=made)
    assert made == []
    assert [(c.level, c.name) for c in checks] == [(WARN, "sensors")]
    assert "pid 4242" in checks[0].detail and "imu, baro" in checks[0].detail


def test_a_user_outside_group_i2c_fails_before_any_part_is_opened() -> None:
    cfg = SimpleNamespace(sensors=(imu_cfg(),), store=SimpleNamespace(dir=Path("/x")))
    outside = probes_with(open_sensor=parts(), user_groups=lambda: ("camctl", {"video", "gpio"}))
    checks = check_sensors(cfg, outside)  # type: ignore[arg-type]
    assert lines(checks)[0] == ("FAIL sensors: user camctl is not in group i2c: it cannot open "
                                "the sensors' /dev/i2c-* | fix: sudo usermod -aG i2c camctl "
                                "(then log in again)")
    # root (doctor warns about it elsewhere) and a sim-only board need no group
    for who, sensors in (("root", (imu_cfg(),)),
                         ("camctl", (SensorConfig(name="s", kind="imu", backend="sim"),))):
        p = probes_with(open_sensor=parts(), user_groups=lambda w=who: (w, set()))
        cfg = SimpleNamespace(sensors=sensors, store=SimpleNamespace(dir=Path("/x")))
        assert not [c for c in check_sensors(cfg, p) if c.name == "sensors"]  # type: ignore


def test_no_sensors_configured_is_one_ok_line_and_no_config_none() -> None:
    assert lines(run(())) == ["OK sensors: none configured ([[sensors]]): no IMU or barometer"]
    assert check_sensors(None, Probes()) == []


# --- through camctl doctor: the config, the order, the exit code ----------------------------------
def _rig(tmp_path: Path, sensors: str) -> Path:
    store = tmp_path / "store"
    store.mkdir(exist_ok=True)
    path = tmp_path / "rig.toml"
    path.write_text(f'board = "rig-s"\n[store]\ndir = "{store}"\n[gpio]\nbackend = "mock"\n'
                    '[publish]\nbind = "tcp://127.0.0.1:0"\nevents = "tcp://127.0.0.1:0"\n'
                    '[[cameras]]\nname = "down"\nbackend = "sim"\n' + sensors)
    return path


SENSORS = ('[[sensors]]\nname = "imu"\nbackend = "lsm6dsox"\naddress = 0x6A\n'
           '[[sensors]]\nname = "baro"\nbackend = "bmp390"\n')


def _quiet_probes(**kw) -> Probes:
    """This machine with everything but the sensors answered as a healthy board would."""
    return Probes(run=lambda argv: None, adjtimex_state=lambda: 0, mounts=lambda: [],
                  read_text=lambda p: None, running_daemon=lambda d: None,
                  user_groups=lambda: ("camctl", {"video", "gpio", "i2c"}), bind=lambda e: None,
                  sensor_seconds=0.05, **kw)


def test_doctor_exit_code_follows_the_sensors(tmp_path: Path, capsys) -> None:
    path = _rig(tmp_path, SENSORS)
    assert [s.address for s in load_config(path).sensors] == [0x6A, 0x77]
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["--config", str(path)])
    assert main(args, probes=_quiet_probes(open_sensor=parts())) == 0
    out = capsys.readouterr().out
    assert "OK    imu lsm6dsox /dev/i2c-1 0x6A: WHO_AM_I 0x6C ok" in out
    assert "OK    baro bmp390 /dev/i2c-1 0x77: CHIP_ID 0x60 ok" in out
    assert main(args, probes=_quiet_probes(open_sensor=parts(imu={"rows": [ON_ITS_SIDE]}))) == 1
    out = capsys.readouterr().out
    assert "FAIL  imu lsm6dsox /dev/i2c-1 0x6A: gravity along -x, expected +z" in out
    assert "      fix: mount the IMU as hardware/sensors.md says or set up_axis" in out
    checks = run_checks(path, probes=_quiet_probes(open_sensor=parts(baro={"error": errno.ENXIO})))
    names = [c.name for c in checks]
    assert names.index("baro bmp390 /dev/i2c-1 0x77") < names.index("store")
    assert [c.detail for c in checks if c.level == FAIL] == [
        "no device answers at 0x77 on /dev/i2c-1 (ENXIO opening it)"]


def test_hardware_sensors_md_shows_what_doctor_prints() -> None:
    """The bring-up's expected doctor lines (hardware/sensors.md) are this code's, for the sample
    they show: the doc changes when the output does."""
    from camctl.board.doctor import format_check
    from camctl.board.sensors.base import altitude_m

    doc = (Path(__file__).resolve().parent.parent / "hardware" / "sensors.md").read_text()
    block = doc[doc.index("Expected sensor lines"):]
    shown = [ln.strip() for ln in block.split("```")[1].splitlines() if ln.strip()]
    imu = imu_row(0.12, -0.07, 9.79, 0.4, -0.3, 0.1)
    baro = (98_650.0, 21.4, altitude_m(98_650.0))
    printed = [format_check(c) for c in run((imu_cfg(), baro_cfg()), imu={"rows": [imu]},
                                            baro={"rows": [baro]})]
    assert shown == printed
