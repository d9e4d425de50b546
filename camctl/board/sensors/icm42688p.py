"""TDK InvenSense ICM-42688-P (accelerometer + gyroscope) on I2C, written against its datasheet
DS-000347, the "User Bank 0 register map" and its register descriptions (cited below by register
name), sensitivities from sect. 3.1/3.2 (gyroscope and accelerometer specifications); addresses,
bit fields and codes checked against Zephyr's driver (zephyrproject-rtos/zephyr,
``drivers/sensor/tdk/icm42688/icm42688_reg.h``).

Only bank 0 is used: REG_BANK_SEL (0x76) is 0 after reset.

Reading, by default through the FIFO (DS-000347's "FIFO" section and the registers FIFO_CONFIG,
INT_STATUS, FIFO_COUNTH/L, FIFO_DATA, FIFO_CONFIG1; addresses and bits checked against Zephyr's
``icm42688_reg.h``, the reading against its ``icm42688_rtio_stream.c`` and ``icm42688_decoder.c``):
FIFO_CONFIG1 puts accelerometer, gyroscope and temperature in the FIFO, which makes every packet
"packet 3", 16 bytes: a header (FIFO_HEADER_ACCEL bit 6, FIFO_HEADER_GYRO bit 5, FIFO_HEADER_MSG
bit 7 set when the FIFO is empty), accelerometer X, Y, Z and gyroscope X, Y, Z big-endian, the
temperature (1 byte) and a 16-bit timestamp; FIFO_CONFIG sets stream-to-FIFO mode. Every ``poll_s``
(20 ms) one 3-byte read from INT_STATUS gives the status (FIFO_FULL_INT, cleared by that read,
counts an overrun) and FIFO_COUNTH/L (bytes, big-endian: INTF_CONFIG0's reset setting, which Zephyr
reads the same way), then the whole packets are drained from FIFO_DATA, which does not
auto-increment (:meth:`~camctl.board.sensors.i2c.I2CSensor.read_fifo`), and stamped back from the
read at 1/ODR steps (:func:`~camctl.board.sensors.i2c.stamp_back`): the newest when the count is
read, up to one period (1 ms at 1 kHz) after it was ready, the ones before it off by the part's ODR
error times their distance from it. The packets' own 16-bit timestamps (1 us ticks, wrapping every
65 ms) are not used: they would still need the same anchor at the read to land on CLOCK_MONOTONIC.

``fifo=False`` polls INT_STATUS's DATA_RDY_INT (cleared by reading INT_STATUS, INT_CONFIG0's reset
setting) and reads one sample, accelerometer then gyroscope, 12 bytes from ACCEL_DATA_X1, in one
block transfer, stamped when seen, twice a sample period.

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
from camctl.board.sensors.i2c import I2CSensor, nearest_at_least, stamp_back

__all__ = ["ICM42688P"]

# DS-000347 User Bank 0 register map
DEVICE_CONFIG = 0x11  # DEVICE_CONFIG: SOFT_RESET_CONFIG[0]
FIFO_CONFIG = 0x16  # FIFO_CONFIG: FIFO_MODE[7:6]
ACCEL_DATA_X1 = 0x1F  # ACCEL_DATA_X1 0x1F .. ACCEL_DATA_Z0 0x24, GYRO_DATA_X1 0x25 .. Z0 0x2A
INT_STATUS = 0x2D  # INT_STATUS: DATA_RDY_INT[3] FIFO_FULL_INT[1]; then FIFO_COUNTH 0x2E, _L 0x2F
FIFO_DATA = 0x30  # FIFO_DATA
INTF_CONFIG0 = 0x4C  # INTF_CONFIG0: FIFO_COUNT_ENDIAN[5] SENSOR_DATA_ENDIAN[4] UI_SIFS_CFG[1:0]
PWR_MGMT0 = 0x4E  # PWR_MGMT0: TEMP_DIS[5] IDLE[4] GYRO_MODE[3:2] ACCEL_MODE[1:0]
GYRO_CONFIG0 = 0x4F  # GYRO_CONFIG0: GYRO_FS_SEL[7:5] GYRO_ODR[3:0]
ACCEL_CONFIG0 = 0x50  # ACCEL_CONFIG0: ACCEL_FS_SEL[7:5] ACCEL_ODR[3:0]
# FIFO_CONFIG1: FIFO_RESUME_PARTIAL_RD[6] FIFO_WM_GT_TH[5] FIFO_HIRES_EN[4] FIFO_TMST_FSYNC_EN[3]
# FIFO_TEMP_EN[2] FIFO_GYRO_EN[1] FIFO_ACCEL_EN[0]
FIFO_CONFIG1 = 0x5F
WHO_AM_I = 0x75  # WHO_AM_I: 0x47
ID = 0x47

SOFT_RESET = 0x01
RESET_S = 0.001  # DEVICE_CONFIG: wait 1 ms after a soft reset before any register access
POWER_ON_S = 0.0002  # PWR_MGMT0: no register writes for 200 us after leaving OFF
BIG_ENDIAN_DATA = 0x30  # SENSOR_DATA_ENDIAN and FIFO_COUNT_ENDIAN: big endian (the reset value)
LOW_NOISE = 0b11 << 2 | 0b11  # GYRO_MODE and ACCEL_MODE: low noise (LN) mode
DATA_RDY_INT = 0x08
FIFO_FULL_INT = 0x02
STREAM_TO_FIFO = 0b01 << 6  # FIFO_MODE (Zephyr: BIT_FIFO_MODE_STREAM in MASK_FIFO_MODE)
FIFO_PACKET3 = 0x07  # FIFO_TEMP_EN | FIFO_GYRO_EN | FIFO_ACCEL_EN: 16-byte packets
# the packet header: ACCEL and GYRO as Zephyr's FIFO_HEADER_*; HEADER_MSG (bit 7, "FIFO is
# empty") from the datasheet's header table only: Zephyr defines no name for it
HEADER_MSG, HEADER_ACCEL, HEADER_GYRO = 0x80, 0x40, 0x20
PACKET = 16
FIFO_BYTES = 2048  # "2 KB FIFO" (DS-000347, features)

# GYRO_ODR / ACCEL_ODR codes, Hz (the two share these)
ODR = {12.5: 0x0B, 25.0: 0x0A, 50.0: 0x09, 100.0: 0x08, 200.0: 0x07, 500.0: 0x0F, 1000.0: 0x06,
       2000.0: 0x05, 4000.0: 0x04, 8000.0: 0x03}
# ACCEL_FS_SEL and sensitivity, LSB/g (sect. 3.2)
ACCEL_FS = {16: (0b000, 2048.0), 8: (0b001, 4096.0), 4: (0b010, 8192.0), 2: (0b011, 16384.0)}
# GYRO_FS_SEL and sensitivity, LSB/(deg/s) (sect. 3.1)
GYRO_FS = {2000: (0b000, 16.4), 1000: (0b001, 32.8), 500: (0b010, 65.5), 250: (0b011, 131.0)}
_SAMPLE = struct.Struct(">6h")  # two's complement, high byte first (SENSOR_DATA_ENDIAN = 1)
_PACKET = struct.Struct(">B6hbH")  # header, accel X Y Z, gyro X Y Z, temperature, timestamp
_STATUS = struct.Struct(">BH")  # INT_STATUS, FIFO_COUNTH:FIFO_COUNTL


class ICM42688P(I2CSensor):
    kind = "imu"
    part = "icm42688p"
    id_register, id_value, id_name = WHO_AM_I, ID, "WHO_AM_I"
    fifo_bytes, fifo_sample_bytes = FIFO_BYTES, PACKET
    _lsb_per_g: float  # set by open() from the range
    _lsb_per_dps: float

    def _configure(self) -> None:
        self.write_u8(DEVICE_CONFIG, SOFT_RESET)
        time.sleep(RESET_S)
        self.odr_hz, odr = nearest_at_least(ODR, self.cfg.rate_hz)
        fs_a, self._lsb_per_g = ACCEL_FS[self.cfg.accel_range_g]
        fs_g, self._lsb_per_dps = GYRO_FS[self.cfg.gyro_range_dps]
        writes = [
            ("INTF_CONFIG0", INTF_CONFIG0, BIG_ENDIAN_DATA),
            ("GYRO_CONFIG0", GYRO_CONFIG0, fs_g << 5 | odr),
            ("ACCEL_CONFIG0", ACCEL_CONFIG0, fs_a << 5 | odr),
        ]
        if self.fifo:
            writes += [("FIFO_CONFIG1", FIFO_CONFIG1, FIFO_PACKET3),
                       ("FIFO_CONFIG", FIFO_CONFIG, STREAM_TO_FIFO)]
        # last: the sensors start configured, and no write may follow for 200 us
        writes.append(("PWR_MGMT0", PWR_MGMT0, LOW_NOISE))
        self.write_checked(writes, settle_s=POWER_ON_S)

    def _sample(self) -> list[Sample]:
        return self._drain() if self.fifo else self._data_ready()

    def _drain(self) -> list[Sample]:
        status, count = _STATUS.unpack(self.read_block(INT_STATUS, _STATUS.size))
        t_ns = self.clock_ns()
        if status & FIFO_FULL_INT:
            self.overruns += 1
        packets = count // PACKET
        if not packets:
            return []
        data = self.read_fifo(FIFO_DATA, packets, PACKET)
        a = G / self._lsb_per_g
        w = 1.0 / self._lsb_per_dps
        rows = []
        for at in range(0, len(data), PACKET):
            header, ax, ay, az, gx, gy, gz, _, _ = _PACKET.unpack_from(data, at)
            if header & HEADER_MSG:
                break  # the FIFO ran empty (it holds no more than the count said)
            if header & (HEADER_ACCEL | HEADER_GYRO) == HEADER_ACCEL | HEADER_GYRO:
                rows.append(imu_row(ax * a, ay * a, az * a, gx * w, gy * w, gz * w))
        return list(zip(stamp_back(t_ns, len(rows), self.odr_hz), rows, strict=True))

    def _data_ready(self) -> list[Sample]:
        if not self.read_u8(INT_STATUS) & DATA_RDY_INT:
            return []
        t_ns = self.clock_ns()
        ax, ay, az, gx, gy, gz = _SAMPLE.unpack(self.read_block(ACCEL_DATA_X1, _SAMPLE.size))
        a = G / self._lsb_per_g
        w = 1.0 / self._lsb_per_dps
        return [(t_ns, imu_row(ax * a, ay * a, az * a, gx * w, gy * w, gz * w))]

    def _power_down(self) -> None:
        self.write_u8(PWR_MGMT0, 0)  # GYRO_MODE and ACCEL_MODE off
        if self.fifo:
            self.write_u8(FIFO_CONFIG, 0)  # bypass
