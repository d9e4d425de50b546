"""TDK InvenSense ICM-42688-P (accelerometer + gyroscope) on I2C, written against its datasheet
DS-000347, the "User Bank 0 register map" and its register descriptions (cited below by register
name), sensitivities from sect. 3.1/3.2 (gyroscope and accelerometer specifications); addresses,
bit fields and codes checked against Zephyr's driver (zephyrproject-rtos/zephyr,
``drivers/sensor/tdk/icm42688/icm42688_reg.h``).

Only bank 0 is used: REG_BANK_SEL (0x76) is 0 after reset. Reading: INT_STATUS's DATA_RDY_INT
(cleared by reading INT_STATUS, INT_CONFIG0's reset setting) is polled and one sample,
accelerometer then gyroscope, 12 bytes from ACCEL_DATA_X1, is read in one block transfer. No
FIFO, for the reasons :mod:`~camctl.board.sensors.lsm6dsox` gives.

Example::

    >>> from camctl.board.config_sensors import SensorConfig
    >>> dev = ICM42688P(SensorConfig("imu", "imu", "icm42688p", address=0x68, rate_hz=416))
    >>> dev.where
    'imu icm42688p on /dev/i2c-1 at 0x68'
"""

from __future__ import annotations

import struct
import time

from camctl.board.sensors.base import G, Sample, imu_row
from camctl.board.sensors.i2c import I2CSensor, nearest_at_least

__all__ = ["ICM42688P"]

# DS-000347 User Bank 0 register map
DEVICE_CONFIG = 0x11  # DEVICE_CONFIG: SOFT_RESET_CONFIG[0]
ACCEL_DATA_X1 = 0x1F  # ACCEL_DATA_X1 0x1F .. ACCEL_DATA_Z0 0x24, GYRO_DATA_X1 0x25 .. Z0 0x2A
INT_STATUS = 0x2D  # INT_STATUS: DATA_RDY_INT[3]
INTF_CONFIG0 = 0x4C  # INTF_CONFIG0: FIFO_COUNT_ENDIAN[5] SENSOR_DATA_ENDIAN[4] UI_SIFS_CFG[1:0]
PWR_MGMT0 = 0x4E  # PWR_MGMT0: TEMP_DIS[5] IDLE[4] GYRO_MODE[3:2] ACCEL_MODE[1:0]
GYRO_CONFIG0 = 0x4F  # GYRO_CONFIG0: GYRO_FS_SEL[7:5] GYRO_ODR[3:0]
ACCEL_CONFIG0 = 0x50  # ACCEL_CONFIG0: ACCEL_FS_SEL[7:5] ACCEL_ODR[3:0]
WHO_AM_I = 0x75  # WHO_AM_I: 0x47
ID = 0x47

SOFT_RESET = 0x01
RESET_S = 0.001  # DEVICE_CONFIG: wait 1 ms after a soft reset before any register access
POWER_ON_S = 0.0002  # PWR_MGMT0: no register writes for 200 us after leaving OFF
BIG_ENDIAN_DATA = 0x30  # SENSOR_DATA_ENDIAN and FIFO_COUNT_ENDIAN: big endian (the reset value)
LOW_NOISE = 0b11 << 2 | 0b11  # GYRO_MODE and ACCEL_MODE: low noise (LN) mode
DATA_RDY_INT = 0x08

# GYRO_ODR / ACCEL_ODR codes, Hz (the two share these)
ODR = {12.5: 0x0B, 25.0: 0x0A, 50.0: 0x09, 100.0: 0x08, 200.0: 0x07, 500.0: 0x0F, 1000.0: 0x06,
       2000.0: 0x05, 4000.0: 0x04, 8000.0: 0x03}
# ACCEL_FS_SEL and sensitivity, LSB/g (sect. 3.2)
ACCEL_FS = {16: (0b000, 2048.0), 8: (0b001, 4096.0), 4: (0b010, 8192.0), 2: (0b011, 16384.0)}
# GYRO_FS_SEL and sensitivity, LSB/(deg/s) (sect. 3.1)
GYRO_FS = {2000: (0b000, 16.4), 1000: (0b001, 32.8), 500: (0b010, 65.5), 250: (0b011, 131.0)}
_SAMPLE = struct.Struct(">6h")  # two's complement, high byte first (SENSOR_DATA_ENDIAN = 1)


class ICM42688P(I2CSensor):
    kind = "imu"
    part = "icm42688p"
    id_register, id_value, id_name = WHO_AM_I, ID, "WHO_AM_I"
    _lsb_per_g: float  # set by open() from the range
    _lsb_per_dps: float

    def _configure(self) -> None:
        self.write_u8(DEVICE_CONFIG, SOFT_RESET)
        time.sleep(RESET_S)
        self.odr_hz, odr = nearest_at_least(ODR, self.cfg.rate_hz)
        fs_a, self._lsb_per_g = ACCEL_FS[self.cfg.accel_range_g]
        fs_g, self._lsb_per_dps = GYRO_FS[self.cfg.gyro_range_dps]
        self.write_checked([
            ("INTF_CONFIG0", INTF_CONFIG0, BIG_ENDIAN_DATA),
            ("GYRO_CONFIG0", GYRO_CONFIG0, fs_g << 5 | odr),
            ("ACCEL_CONFIG0", ACCEL_CONFIG0, fs_a << 5 | odr),
            ("PWR_MGMT0", PWR_MGMT0, LOW_NOISE),  # last: the sensors start configured
        ], settle_s=POWER_ON_S)

    def _sample(self) -> list[Sample]:
        if not self.read_u8(INT_STATUS) & DATA_RDY_INT:
            return []
        t_ns = self.clock_ns()
        ax, ay, az, gx, gy, gz = _SAMPLE.unpack(self.read_block(ACCEL_DATA_X1, _SAMPLE.size))
        a = G / self._lsb_per_g
        w = 1.0 / self._lsb_per_dps
        return [(t_ns, imu_row(ax * a, ay * a, az * a, gx * w, gy * w, gz * w))]

    def _power_down(self) -> None:
        self.write_u8(PWR_MGMT0, 0)  # GYRO_MODE and ACCEL_MODE off
