"""`camctl doctor`'s sensor checks: each ``[[sensors]]`` part is opened, identified by its ID
register, and read for one sample, which must look like a board at rest (the IMU: 1 g along the
configured ``up_axis``, the gyroscope still; the barometer: an air pressure and a temperature a
pad can have). Results are :class:`camctl.board.doctor.Check` lines, each failure with its fix;
the device comes from :attr:`camctl.board.doctor.Probes.open_sensor`, so tests (and a laptop
without the parts) run the same code with a fake :class:`~camctl.board.sensors.base.SensorDevice`.

Example output (hardware/sensors.md, "Bring-up")::

    OK    imu lsm6dsox /dev/i2c-1 0x6A: WHO_AM_I 0x6C ok
    OK    imu lsm6dsox /dev/i2c-1 0x6A: a (0.05, -0.12, 9.79) m/s^2 = 1.00 g, 1 deg from +z; ...
"""

from __future__ import annotations

import contextlib
import errno
import math
import time
from typing import TYPE_CHECKING

from camctl.board.config_sensors import SensorConfig
from camctl.board.sensors.base import FIELDS, G, Sample, SensorDevice, SensorError

if TYPE_CHECKING:
    from camctl.board.config import Config
    from camctl.board.doctor import Check, Probes

__all__ = [
    "BARO_PA",
    "BARO_TEMP_C",
    "GYRO_REST_DPS",
    "REST_G",
    "UP_WITHIN_DEG",
    "check_sensors",
    "open_sensor_for_doctor",
]

# What "at rest on the pad" allows. 1 g +/- 0.1: a part's zero-g offset and sensitivity tolerance
# are tens of mg (the datasheets' "Mechanical characteristics" tables: LSM6DSOX DS12814 LA_TyOff,
# LA_So%; ICM-42688-P DS-000347 zero-g offset), so 0.1 g off is a wrong scale, a moving board or a
# broken part, not tolerance.
REST_G = (0.9, 1.1)
UP_WITHIN_DEG = 20.0
# A still gyroscope reads only its zero-rate offset, about a dps (LSM6DSOX DS12814 G_TyOff,
# ICM-42688-P DS-000347 ZRO); 5 dps is a board being moved or a broken part.
GYRO_REST_DPS = 5.0
# Air a pad can have: 30 kPa is ~9 km up (the BMP390's own range starts there, BST-BMP390-DS002
# "Operating pressure range" 300-1250 hPa), 110 kPa is above any sea-level record; the temperature
# range is where a rig is flown at all.
BARO_PA = (30_000.0, 110_000.0)
BARO_TEMP_C = (-20.0, 60.0)

# The name of each part's ID register (its address and values come from Identity): LSM6DSOX
# WHO_AM_I 0x0F = 0x6C, ICM-42688-P WHO_AM_I 0x75 = 0x47, BMP390 CHIP_ID 0x00 = 0x60 (the
# datasheets' register maps; the same constants in Adafruit_CircuitPython_LSM6DS
# adafruit_lsm6ds/__init__.py and Adafruit_CircuitPython_BMP3XX adafruit_bmp3xx.py)
_ID_REGISTER = {"lsm6dsox": "WHO_AM_I", "icm42688p": "WHO_AM_I", "bmp390": "CHIP_ID"}
_AXES = ("x", "y", "z")
# errno of a transfer nobody acknowledged: ENXIO is the code linux's Documentation/i2c/
# fault-codes.rst gives an address phase without ACK; some bus drivers still return EREMOTEIO for
# a NACK (kernel commit 59df9bb, "NOACK return code is currently inconsistent across various I2C
# host controller drivers").
_NO_ANSWER = (errno.ENXIO, errno.EREMOTEIO)


def open_sensor_for_doctor(cfg: SensorConfig) -> SensorDevice:
    """The (unopened) device for ``cfg``, as the daemon would build it; a ``sim`` sensor without
    a scene (at rest: the doctor runs before any drop)."""
    from camctl.board.sensors import open_sensor

    return open_sensor(cfg, scene=None) if cfg.backend == "sim" else open_sensor(cfg)


def _label(cfg: SensorConfig) -> str:
    """``imu lsm6dsox /dev/i2c-1 0x6A`` (``imu sim`` for a sim sensor)."""
    at = "" if cfg.address is None else f" {cfg.device} 0x{cfg.address:02X}"
    return f"{cfg.name} {cfg.backend}{at}"


def _os_error(exc: BaseException) -> OSError | None:
    """The OSError behind ``exc`` (itself, or what a driver's SensorError was raised from)."""
    seen = 0
    while exc is not None and seen < 5:
        if isinstance(exc, OSError) and exc.errno is not None:
            return exc
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
        seen += 1
    return None


def _bus_failure(cfg: SensorConfig, exc: BaseException, doing: str, user: str = "USER"
                 ) -> tuple[str, str]:
    """(what went wrong, the fix) for an error opening or reading ``cfg``'s part."""
    os_err = _os_error(exc)
    bus = f"i2cdetect -y {cfg.bus}"
    where = f"0x{cfg.address:02X} on {cfg.device}" if cfg.address is not None else cfg.device
    if os_err is not None and cfg.address is not None:
        code = os_err.errno
        if code in _NO_ANSWER:
            return (f"no device answers at {where} ({errno.errorcode.get(code, code)} {doing})",
                    f"check SDA/SCL and 3V3, `{bus}` (hardware/sensors.md, Bring-up)")
        if code == errno.ENOENT:
            return (f"{cfg.device} does not exist: I2C is off or bus {cfg.bus} is not this "
                    "board's", "sudo raspi-config nonint do_i2c 0, reboot; `ls /dev/i2c-*`; "
                           "the header's bus is 1")
        if code in (errno.EACCES, errno.EPERM):
            return (f"{cfg.device} is not readable+writable by {user}",
                    f"sudo usermod -aG i2c {user} (then log in again)")
        if code in (errno.EIO, errno.ETIMEDOUT, errno.EAGAIN):
            return (f"I/O error {doing} at {where}: {os_err.strerror or os_err}",
                    f"a loose wire, a bus held low or too weak pull-ups: reseat the cable, "
                    f"`{bus}`, see hardware/sensors.md (pull-ups)")
    return (f"{doing} failed: {exc}",
            f"check the wiring and the config's [[sensors]] table, `{bus}`")


def _import_failure(cfg: SensorConfig, exc: ImportError) -> tuple[str, str]:
    missing = getattr(exc, "name", None) or ""
    if missing == "smbus2":
        return ("smbus2 is not installed (the I2C drivers need it)",
                "pip install smbus2 in camctl's venv (it is a camctl dependency: reinstall camctl)")
    return (f"this camctl has no driver for backend {cfg.backend!r} ({exc})",
            "install a camctl that has it (pip show camctl), or choose another backend")


def _vector_text(v: tuple[float, ...], fmt: str) -> str:
    return "(" + ", ".join(format(x, fmt) for x in v) + ")"


def _up_vector(up_axis: str) -> tuple[float, float, float]:
    sign = -1.0 if up_axis[0] == "-" else 1.0
    i = _AXES.index(up_axis[1])
    return tuple(sign if k == i else 0.0 for k in range(3))  # type: ignore[return-value]


def _dominant_axis(a: tuple[float, ...]) -> str:
    """``-x`` for a vector mostly along -x."""
    i = max(range(3), key=lambda k: abs(a[k]))
    return f"{'-' if a[i] < 0 else '+'}{_AXES[i]}"


def _imu_checks(label: str, cfg: SensorConfig, row: tuple[float, ...]) -> list[Check]:
    """The IMU at rest: 1 g, along ``up_axis`` (an accelerometer at rest reads the support's push,
    +1 g towards the sky: "a sensor in a steady state on a horizontal surface will measure 0 g on
    both the X-axis and Y-axis, whereas the Z-axis will measure 1 g", ST's LSM6DSO/LSM6DSOX
    datasheets, "Zero-g and zero-rate level"), the gyroscope still."""
    from camctl.board.doctor import FAIL, OK, Check

    accel, gyro = tuple(row[0:3]), tuple(row[3:6])
    norm = math.sqrt(sum(x * x for x in accel))
    g = norm / G
    up = _up_vector(cfg.up_axis)
    off = (math.degrees(math.acos(max(-1.0, min(1.0, sum(a * u for a, u in zip(accel, up,
                                                                              strict=True))
                                                 / norm))))
           if norm > 0 else 180.0)
    spin = math.sqrt(sum(x * x for x in gyro))
    shown = (f"a {_vector_text(accel, '.2f')} m/s^2 = {g:.2f} g, {off:.0f} deg from "
             f"{cfg.up_axis}; gyro {_vector_text(gyro, '.1f')} dps")
    out: list[Check] = [Check(label, OK, shown)]
    if not REST_G[0] <= g <= REST_G[1]:
        out.append(Check(label, FAIL, f"|a| {g:.2f} g at rest, expected 1.00 +/- 0.10 g",
                         "keep the board still while doctor reads it; still off: a wrong "
                         "accel_range_g scale in the driver or a damaged part (replace it)"))
    if off > UP_WITHIN_DEG and norm > 0:
        out.append(Check(label, FAIL,
                         f"gravity along {_dominant_axis(accel)}, expected {cfg.up_axis} "
                         f"({off:.0f} deg off, at most {UP_WITHIN_DEG:g})",
                         f"mount the IMU as hardware/sensors.md says or set up_axis in "
                         f"[[sensors]] {cfg.name!r} (the axis that points up at rest)"))
    if spin >= GYRO_REST_DPS:
        out.append(Check(label, FAIL, f"gyro turns {spin:.1f} dps at rest, expected "
                                      f"< {GYRO_REST_DPS:g} dps",
                         "keep the board still while doctor reads it; a steady rate on a still "
                         "board is a broken gyroscope (replace the breakout)"))
    return out


def _baro_checks(label: str, row: tuple[float, ...]) -> list[Check]:
    from camctl.board.doctor import FAIL, OK, Check

    pressure, temp, alt = row[0], row[1], row[2]
    out: list[Check] = [Check(label, OK, f"{pressure / 1000:.2f} kPa, {temp:.1f} C "
                                         f"(pressure altitude {alt:.0f} m)")]
    if not BARO_PA[0] <= pressure <= BARO_PA[1]:
        out.append(Check(label, FAIL, f"pressure {pressure / 1000:.2f} kPa, expected "
                                      f"{BARO_PA[0] / 1000:g}-{BARO_PA[1] / 1000:g} kPa",
                         "a wrong reading, not the weather: the part's calibration (NVM) read "
                         "wrong or the port is blocked airtight; power-cycle, replace the "
                         "breakout"))
    if not BARO_TEMP_C[0] <= temp <= BARO_TEMP_C[1]:
        out.append(Check(label, FAIL, f"temperature {temp:.1f} C, expected "
                                      f"{BARO_TEMP_C[0]:g}..{BARO_TEMP_C[1]:g} C",
                         "the part sits on something hot (the Pi's SoC, a regulator) or reads "
                         "wrong: move it off the heat (hardware/sensors.md, Mounting)"))
    return out


def _one_sample(dev: SensorDevice, seconds: float) -> Sample | None:
    """The newest sample of the first read that has any, polling for up to ``seconds``."""
    deadline = time.monotonic() + seconds
    while True:
        samples = dev.read()
        if samples:
            return samples[-1]
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        time.sleep(min(dev.poll_s, left, 0.05))


def _check_one(cfg: SensorConfig, probes: Probes, user: str) -> list[Check]:
    from camctl.board.doctor import FAIL, OK, Check

    label = _label(cfg)
    try:
        dev = probes.open_sensor(cfg)
    except ImportError as exc:
        detail, fix = _import_failure(cfg, exc)
        return [Check(label, FAIL, detail, fix)]
    except Exception as exc:  # a backend that cannot be built: report, never crash the doctor
        return [Check(label, FAIL, f"cannot build the device: {exc}",
                      "check the [[sensors]] table (camctl config check)")]
    try:
        try:
            dev.open()
        except Exception as exc:  # SensorError, OSError from smbus2: one line each
            detail, fix = _bus_failure(cfg, exc, "opening it", user)
            if isinstance(exc, SensorError) and _os_error(exc) is None:
                # the driver's line starts with the device, which the check's label names already
                detail = str(exc).removeprefix(f"{dev.where}: ")
                fix = (f"`i2cdetect -y {cfg.bus}` shows what answers at 0x{cfg.address:02X}; "
                       "check the backend and the address-select pad (hardware/sensors.md)"
                       if cfg.address is not None else "see hardware/sensors.md")
            return [Check(label, FAIL, detail, fix)]
        try:
            ident = dev.identify()
        except Exception as exc:
            return [Check(label, FAIL, *_bus_failure(cfg, exc, "reading its ID register", user))]
        reg = _ID_REGISTER.get(cfg.backend, f"ID register 0x{ident[0]:02X}")
        if not ident.ok:
            return [Check(label, FAIL, f"{reg} 0x{ident[1]:02X}, expected 0x{ident[2]:02X}: "
                                       f"not a {cfg.backend}",
                          f"another part answers at 0x{cfg.address or 0:02X}: check the "
                          f"address-select pad and the backend (hardware/sensors.md)")]
        out = [Check(label, OK, f"{reg} 0x{ident[1]:02X} ok")]
        try:
            sample = _one_sample(dev, probes.sensor_seconds)
        except Exception as exc:
            return [*out, Check(label, FAIL, *_bus_failure(cfg, exc, "reading a sample", user))]
        if sample is None:
            return [*out, Check(label, FAIL, f"no sample within {probes.sensor_seconds:g} s of "
                                             f"starting it at {cfg.rate_hz:g} Hz",
                                "the part answers but does not measure: power-cycle it; "
                                "a clone or a wrong part answers the ID and nothing else")]
        _, row = sample
        want = len(FIELDS[cfg.kind])
        if len(row) != want or not all(isinstance(x, (int, float)) for x in row):
            return [*out, Check(label, FAIL, f"the driver gave {len(row)} value(s) {row!r:.80}, "
                                             f"expected {want} numbers "
                                             f"({', '.join(FIELDS[cfg.kind])})",
                                "a camctl bug: report it with this line")]
        if cfg.kind == "imu":
            return [*out, *_imu_checks(label, cfg, row)]
        return [*out, *_baro_checks(label, row)]
    finally:
        with contextlib.suppress(Exception):  # a close failing after a failure adds nothing
            dev.close()


def check_sensors(cfg: Config | None, probes: Probes) -> list[Check]:
    """Each configured sensor: identity, one sample, at rest. Not while a running camctl samples
    them: opening a part configures it and closing it powers it down, under the daemon's feet."""
    from camctl.board.doctor import FAIL, OK, WARN, Check

    if cfg is None:
        return []
    if not cfg.sensors:
        return [Check("sensors", OK, "none configured ([[sensors]]): no IMU or barometer")]
    out: list[Check] = []
    user, groups = probes.user_groups()
    if any(s.address is not None for s in cfg.sensors) and user != "root" and "i2c" not in groups:
        # Raspberry Pi OS gives /dev/i2c-* to group i2c (raspberrypi-sys-mods' udev rules), as it
        # gives /dev/gpiochip* to gpio: the service user needs it beside video and gpio
        out.append(Check("sensors", FAIL, f"user {user} is not in group i2c: it cannot open the "
                                          "sensors' /dev/i2c-*",
                         f"sudo usermod -aG i2c {user} (then log in again)"))
    held = probes.running_daemon(cfg.store.dir)
    if held is not None:
        return [*out, Check("sensors", WARN,
                      f"not opened: the running camctl (pid {held.get('pid')}) samples "
                      f"{', '.join(s.name for s in cfg.sensors)} (opening a part reconfigures "
                      "it, closing it powers it down)",
                      "stop the service to check them (sudo systemctl stop camctl)")]
    for s in cfg.sensors:
        out += _check_one(s, probes, user)
    return out
