"""Bosch BMP390 (pressure + temperature) on I2C, written against its datasheet BST-BMP390-DS002,
sect. 4 (memory map and register descriptions, cited below by register name) and the appendix's
floating-point compensation (sect. 8); addresses, codes and formulas checked against Bosch's own
BMP3 API (github.com/boschsensortec/BMP3_SensorAPI at db4cf8e: ``bmp3_defs.h``, and in ``bmp3.c``
``parse_calib_data``, the ``BMP3_FLOAT_COMPENSATION`` ``compensate_temperature`` and
``compensate_pressure``, ``validate_osr_and_odr_settings``).

The part runs in normal mode at the output data rate nearest at or above ``rate_hz``, with the
most pressure oversampling that fits in one period (temperature x1, IIR filter off: the
barometric descent check wants the newest pressure, not a smoothed one). Reading: STATUS's
drdy_press is polled and one sample (pressure and temperature, 6 bytes from DATA_0) is read in
one block transfer and compensated with the calibration read at :meth:`open`.

Example::

    >>> cal = Calibration.parse(bytes.fromhex("236B5849F65CFFCEF42300EA636E79F3F6AA4312C4"))
    >>> p, t = cal.compensate(0x6D9F97, 0x85D873)
    >>> round(p, 3), round(t, 3)
    (100876.006, 30.499)
"""

from __future__ import annotations

import struct
import time
from dataclasses import dataclass

from camctl.board.sensors.base import Sample, SensorError, altitude_m
from camctl.board.sensors.i2c import I2CSensor

__all__ = ["BMP390", "Calibration"]

# BST-BMP390-DS002 sect. 4 (memory map); values as bmp3_defs.h names them
CHIP_ID = 0x00  # CHIP_ID: 0x60 (BMP390_CHIP_ID)
ERR_REG = 0x02  # ERR_REG: conf_err[2] cmd_err[1] fatal_err[0]
STATUS = 0x03  # STATUS: drdy_temp[6] drdy_press[5] cmd_rdy[4]
DATA_0 = 0x04  # DATA_0..2 pressure, DATA_3..5 temperature: 24-bit unsigned, low byte first
PWR_CTRL = 0x1B  # PWR_CTRL: mode[5:4] temp_en[1] press_en[0]
OSR = 0x1C  # OSR: osr_t[5:3] osr_p[2:0]
ODR = 0x1D  # ODR: odr_sel[4:0]
CONFIG = 0x1F  # CONFIG: iir_filter[3:1]
NVM_PAR_T1 = 0x31  # NVM_PAR_T1 0x31 .. NVM_PAR_P11 0x45: 21 bytes (BMP3_LEN_CALIB_DATA)
CMD = 0x7E
ID = 0x60

SOFT_RESET = 0xB6  # CMD: softreset
RESET_S = 0.002  # bmp3_soft_reset waits 2 ms before reading ERR_REG
CMD_ERR, CONF_ERR, FATAL_ERR = 0x02, 0x04, 0x01
DRDY_PRESS = 0x20
NORMAL = 0b11 << 4 | 0x02 | 0x01  # mode normal, temperature and pressure enabled

# odr_sel: 200 Hz / 2^code (BMP3_ODR_200_HZ 0x00 .. BMP3_ODR_0_001_HZ 0x11)
ODRS = {200.0 / 2**code: code for code in range(0x12)}
# measurement time, us (bmp3.c validate_osr_and_odr_settings): 234 + pressure (392 settle +
# 2^osr_p x 2000 conversion) + temperature (313 + 2^osr_t x 2000); it must be under the period
_MEAS_BASE_US, _PRESS_SETTLE_US, _TEMP_SETTLE_US, _CONV_US = 234, 392, 313, 2000
_OSR_MAX = 5  # BMP3_OVERSAMPLING_32X


def measurement_us(osr_p: int, osr_t: int) -> int:
    """How long one pressure and temperature measurement takes at these oversampling codes."""
    return (_MEAS_BASE_US + _PRESS_SETTLE_US + (1 << osr_p) * _CONV_US
            + _TEMP_SETTLE_US + (1 << osr_t) * _CONV_US)


def choose_rate(rate_hz: float) -> tuple[float, int, int]:
    """``(odr_hz, odr_sel, osr_p)``: the slowest rate at least ``rate_hz`` (200 Hz at most) and the
    most pressure oversampling (temperature x1) whose measurement fits in its period."""
    fits = [hz for hz in ODRS if hz >= rate_hz]
    hz = min(fits) if fits else max(ODRS)
    period_us = 1e6 / hz
    osr_p = max((o for o in range(_OSR_MAX + 1) if measurement_us(o, 0) < period_us), default=0)
    return hz, ODRS[hz], osr_p


@dataclass(frozen=True)
class Calibration:
    """The part's trimming coefficients as floats (datasheet sect. 8; ``parse_calib_data``)."""

    t1: float
    t2: float
    t3: float
    p1: float
    p2: float
    p3: float
    p4: float
    p5: float
    p6: float
    p7: float
    p8: float
    p9: float
    p10: float
    p11: float

    _LAYOUT = struct.Struct("<HHbhhbbHHbbhbb")  # NVM_PAR_T1 .. NVM_PAR_P11, low byte first

    @classmethod
    def parse(cls, raw: bytes) -> Calibration:
        t1, t2, t3, p1, p2, p3, p4, p5, p6, p7, p8, p9, p10, p11 = cls._LAYOUT.unpack(raw)
        return cls(
            t1=t1 * 2.0**8, t2=t2 / 2.0**30, t3=t3 / 2.0**48,
            p1=(p1 - 2**14) / 2.0**20, p2=(p2 - 2**14) / 2.0**29, p3=p3 / 2.0**32,
            p4=p4 / 2.0**37, p5=p5 * 2.0**3, p6=p6 / 2.0**6, p7=p7 / 2.0**8, p8=p8 / 2.0**15,
            p9=p9 / 2.0**48, p10=p10 / 2.0**48, p11=p11 / 2.0**65,
        )

    def compensate(self, raw_pressure: int, raw_temperature: int) -> tuple[float, float]:
        """``(pressure_pa, temperature_c)`` from the raw 24-bit readings."""
        d = raw_temperature - self.t1
        t = d * self.t2 + d * d * self.t3
        out1 = self.p5 + self.p6 * t + self.p7 * t * t + self.p8 * t ** 3
        out2 = raw_pressure * (self.p1 + self.p2 * t + self.p3 * t * t + self.p4 * t ** 3)
        p2 = float(raw_pressure) * raw_pressure
        out3 = p2 * (self.p9 + self.p10 * t) + p2 * raw_pressure * self.p11
        return out1 + out2 + out3, t


class BMP390(I2CSensor):
    kind = "baro"
    part = "bmp390"
    id_register, id_value, id_name = CHIP_ID, ID, "CHIP_ID"
    calibration: Calibration  # read by open()

    def _configure(self) -> None:
        self.write_u8(CMD, SOFT_RESET)
        time.sleep(RESET_S)
        self._check_errors("soft reset")
        self.calibration = Calibration.parse(
            self.read_block(NVM_PAR_T1, Calibration._LAYOUT.size))
        self.odr_hz, odr_sel, osr_p = choose_rate(self.cfg.rate_hz)
        self.write_checked([
            ("OSR", OSR, 0 << 3 | osr_p),
            ("ODR", ODR, odr_sel),
            ("CONFIG", CONFIG, 0),
            ("PWR_CTRL", PWR_CTRL, NORMAL),  # last: measuring starts configured
        ])
        self._check_errors("configuration")

    def _check_errors(self, after: str) -> None:
        err = self.read_u8(ERR_REG)
        if err & (FATAL_ERR | CMD_ERR | CONF_ERR):
            names = [n for bit, n in ((FATAL_ERR, "fatal_err"), (CMD_ERR, "cmd_err"),
                                      (CONF_ERR, "conf_err")) if err & bit]
            raise SensorError(f"{self.where}: ERR_REG 0x{err:02X} ({', '.join(names)}) after "
                              f"{after}")

    def _sample(self) -> list[Sample]:
        if not self.read_u8(STATUS) & DRDY_PRESS:
            return []
        t_ns = self.clock_ns()
        raw = self.read_block(DATA_0, 6)
        pressure, temperature = self.calibration.compensate(
            int.from_bytes(raw[:3], "little"), int.from_bytes(raw[3:], "little"))
        return [(t_ns, (pressure, temperature, altitude_m(pressure)))]

    def _power_down(self) -> None:
        self.write_u8(PWR_CTRL, 0)  # mode sleep, both measurements off
