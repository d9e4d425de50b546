"""ST LSM6DSOX (accelerometer + gyroscope) on I2C, written against its datasheet DS12814,
sect. 8 "Register mapping" and sect. 9 "Register description" (cited below by register name, as
the datasheet heads them: "CTRL1_XL (10h)"); every address and code was checked against ST's own
register driver (github.com/STMicroelectronics/lsm6dsox-pid,
``lsm6dsox_reg.h`` v3.3.0: ``LSM6DSOX_ID``, the ``ctrl1_xl``/``ctrl2_g``/``ctrl3_c``/
``status_reg`` bit fields, ``lsm6dsox_odr_xl_t``, ``lsm6dsox_fs_xl_t``, ``lsm6dsox_fs_g_t``) and
its sensitivities (``lsm6dsox_reg.c``, ``lsm6dsox_from_fs*_to_mg``/``_to_mdps``, the datasheet's
table 2).

Reading, by default through the FIFO (DS12814 sect. 9: FIFO_CTRL3 (09h), FIFO_CTRL4 (0Ah),
FIFO_STATUS1 (3Ah), FIFO_STATUS2 (3Bh), FIFO_DATA_OUT_TAG (78h) .. FIFO_DATA_OUT_Z_H (7Eh); each
address, field and code checked against ``lsm6dsox_reg.h``: ``lsm6dsox_fifo_ctrl3_t``,
``_ctrl4_t``, ``lsm6dsox_bdr_xl_t``, ``lsm6dsox_fifo_mode_t``, ``lsm6dsox_fifo_status2_t``,
``lsm6dsox_fifo_tag_t``): the FIFO runs in continuous mode batching gyro and accelerometer at the
output data rate, each a tagged 7-byte word (the tag, then X, Y, Z low byte first). Every
``poll_s`` (20 ms) one 2-byte read gives the word count (DIFF_FIFO) and the overrun flags, then the
words are drained (:meth:`~camctl.board.sensors.i2c.I2CSensor.read_fifo`), gyro and accelerometer
words paired into samples by their TAG_CNT time slot (a word whose partner is still in the FIFO
waits for the next read; one whose partner was overwritten is dropped), and the samples stamped
back from the read at 1/ODR steps (:func:`~camctl.board.sensors.i2c.stamp_back`): the newest sample
is stamped when the count is read, up to one period after it was ready (0.6 ms at 1667 Hz), and the
ones before it carry the part's ODR error times their distance from it (1 % of a 20 ms read is 0.2
ms). The FIFO can also batch the part's own timestamp (25 us ticks, FIFO_CTRL4.DEC_TS_BATCH); it is
not used: mapping that counter onto CLOCK_MONOTONIC would still need this same anchor at the read.

``fifo=False`` polls STATUS_REG instead and reads one sample (gyro and accelerometer, 12 bytes
from OUTX_L_G) when both data-ready bits are set, stamped when seen: it wakes the sampler twice a
sample period (:attr:`~camctl.board.sensors.i2c.I2CSensor.poll_s`). Block data update is on in
both modes, so the high and low bytes of an axis come from the same sample.

Example::

    >>> from camctl.board.config_sensors import SensorConfig
    >>> from camctl.board.sensors.base import SensorError
    >>> from camctl.testing.i2c_regs import StubBus
    >>> bus = StubBus([0x6A])
    >>> bus.poke(0x6A, WHO_AM_I, [0x00])
    >>> dev = LSM6DSOX(SensorConfig("imu", "imu", "lsm6dsox", address=0x6A), bus=bus)
    >>> try:
    ...     dev.open()
    ... except SensorError as exc:
    ...     print(exc)
    imu lsm6dsox on /dev/i2c-1 at 0x6A: WHO_AM_I 0x00, want 0x6C
"""

from __future__ import annotations

import struct
import time

from camctl.board.sensors.base import G, Sample, imu_row
from camctl.board.sensors.i2c import I2CSensor, nearest_at_least, stamp_back

__all__ = ["LSM6DSOX"]

# DS12814 sect. 8 (register address map); bit fields from sect. 9 and lsm6dsox_reg.h
FIFO_CTRL3 = 0x09  # FIFO_CTRL3 (09h): BDR_GY[7:4] BDR_XL[3:0]
FIFO_CTRL4 = 0x0A  # FIFO_CTRL4 (0Ah): DEC_TS_BATCH[7:6] ODR_T_BATCH[5:4] - FIFO_MODE[2:0]
WHO_AM_I = 0x0F  # WHO_AM_I (0Fh): fixed 0x6C (LSM6DSOX_ID)
CTRL1_XL = 0x10  # CTRL1_XL (10h): ODR_XL[7:4] FS_XL[3:2] LPF2_XL_EN[1]
CTRL2_G = 0x11  # CTRL2_G (11h): ODR_G[7:4] FS_G[3:2] FS_125[1]
CTRL3_C = 0x12  # CTRL3_C (12h): BOOT BDU H_LACTIVE PP_OD SIM IF_INC - SW_RESET
CTRL9_XL = 0x18  # CTRL9_XL (18h): DEN_X DEN_Y DEN_Z DEN_XL_G DEN_XL_EN DEN_LH I3C_disable -
STATUS_REG = 0x1E  # STATUS_REG (1Eh): - - - - - TDA GDA XLDA
OUTX_L_G = 0x22  # OUTX_L_G (22h) .. OUTZ_H_G (27h), then OUTX_L_A (28h) .. OUTZ_H_A (2Dh)
FIFO_STATUS1 = 0x3A  # FIFO_STATUS1 (3Ah): DIFF_FIFO[7:0], the unread words
# FIFO_STATUS2 (3Bh): FIFO_WTM_IA FIFO_OVR_IA FIFO_FULL_IA COUNTER_BDR_IA FIFO_OVR_LATCHED -
# DIFF_FIFO[9:8]
FIFO_DATA_OUT_TAG = 0x78  # FIFO_DATA_OUT_TAG (78h): TAG_SENSOR[7:3] TAG_CNT[2:1] TAG_PARITY[0]
ID = 0x6C

SW_RESET = 0x01
IF_INC = 0x04  # register address auto-increment on multi-byte access (default on; set anyway)
BDU = 0x40  # block data update: output registers not updated until MSB and LSB are read
# the part sits on an I2C bus only: ST's examples disable its I3C interface after the reset
# (lsm6dsox_i3c_disable_set(&dev_ctx, LSM6DSOX_I3C_DISABLE), setting this bit)
I3C_DISABLE = 0x02
XLDA, GDA = 0x01, 0x02
STREAM_MODE = 0b110  # FIFO_MODE continuous: the newest data overwrite the oldest when full
FIFO_OVR_IA, FIFO_OVR_LATCHED = 0x40, 0x08  # FIFO_STATUS2; the latched one clears on read
DIFF_FIFO_HIGH = 0x03
GYRO_NC_TAG, XL_NC_TAG = 0x01, 0x02  # TAG_SENSOR (lsm6dsox_fifo_tag_t): gyro, accel, uncompressed
TAG_CNT = 0x03  # the word's time slot (2 bits, wrapping): a gyro and an accel word of one ODR
# tick carry the same one (DS12814 FIFO_DATA_OUT_TAG (78h): "identifies sensor time slot")
WORD = 7  # a FIFO word: the tag and 6 data bytes
FIFO_BYTES = 9 * 1024  # "smart FIFO up to 9 kbyte" (DS12814, features)
# SW_RESET self-clears when the reset is done (CTRL3_C (12h)); ST's driver polls it, but a
# register file (i2c-stub) never clears it, so this waits a fixed time, ample for the part
RESET_S = 0.01

# ODR_XL / ODR_G codes (CTRL1_XL, CTRL2_G; lsm6dsox_odr_xl_t): high-performance rates, Hz
ODR = {12.5: 0x1, 26.0: 0x2, 52.0: 0x3, 104.0: 0x4, 208.0: 0x5, 417.0: 0x6, 833.0: 0x7,
       1667.0: 0x8, 3333.0: 0x9, 6667.0: 0xA}
# FS_XL[1:0] (CTRL1_XL, CTRL8_XL.XL_FS_MODE at its reset 0) and sensitivity, mg/LSB (table 2)
ACCEL_FS = {2: (0b00, 0.061), 4: (0b10, 0.122), 8: (0b11, 0.244), 16: (0b01, 0.488)}
# FS_G[1:0] (CTRL2_G, FS_125 = 0; lsm6dsox_fs_g_t) and sensitivity, mdps/LSB (table 2)
GYRO_FS = {250: (0b00, 8.75), 500: (0b01, 17.5), 1000: (0b10, 35.0), 2000: (0b11, 70.0)}
_SAMPLE = struct.Struct("<6h")  # two's complement, low byte first (OUTX_L_G (22h) ...)
_AXES = struct.Struct("<3h")  # a FIFO word's data: X, Y, Z low byte first (FIFO_DATA_OUT_X_L ..)


class LSM6DSOX(I2CSensor):
    kind = "imu"
    part = "lsm6dsox"
    id_register, id_value, id_name = WHO_AM_I, ID, "WHO_AM_I"
    fifo_bytes, fifo_sample_bytes = FIFO_BYTES, 2 * WORD
    _mg_per_lsb: float  # set by open() from the range
    _mdps_per_lsb: float
    # the last gyro and accel FIFO words read whose partner is not read yet: (TAG_CNT, X Y Z)
    _gyro: tuple[int, tuple[int, ...]] | None = None
    _accel: tuple[int, tuple[int, ...]] | None = None

    def _configure(self) -> None:
        self.write_u8(CTRL3_C, SW_RESET)
        time.sleep(RESET_S)
        self.odr_hz, odr = nearest_at_least(ODR, self.cfg.rate_hz)
        fs_xl, self._mg_per_lsb = ACCEL_FS[self.cfg.accel_range_g]
        fs_g, self._mdps_per_lsb = GYRO_FS[self.cfg.gyro_range_dps]
        ctrl9 = self.read_u8(CTRL9_XL) | I3C_DISABLE  # keeping the DEN bits as reset left them
        writes = [
            ("CTRL9_XL", CTRL9_XL, ctrl9),
            ("CTRL3_C", CTRL3_C, BDU | IF_INC),
            ("CTRL1_XL", CTRL1_XL, odr << 4 | fs_xl << 2),
            ("CTRL2_G", CTRL2_G, odr << 4 | fs_g << 2),
        ]
        if self.fifo:
            # BDR_XL and BDR_GY (lsm6dsox_bdr_xl_t, _gy_t) share ODR's codes 1-10: batch both at
            # the output data rate; no temperature, no timestamp; continuous mode
            writes += [("FIFO_CTRL3", FIFO_CTRL3, odr << 4 | odr),
                       ("FIFO_CTRL4", FIFO_CTRL4, STREAM_MODE)]
        self._gyro = self._accel = None
        self.write_checked(writes)

    def _sample(self) -> list[Sample]:
        return self._drain() if self.fifo else self._data_ready()

    def _drain(self) -> list[Sample]:
        status1, status2 = self.read_block(FIFO_STATUS1, 2)
        t_ns = self.clock_ns()
        if status2 & (FIFO_OVR_IA | FIFO_OVR_LATCHED):
            self.overruns += 1
            # words were lost: a held word's partner may be among them, and TAG_CNT wraps
            self._gyro = self._accel = None
        words = (status2 & DIFF_FIFO_HIGH) << 8 | status1
        if not words:
            return []
        data = self.read_fifo(FIFO_DATA_OUT_TAG, words, WORD)
        pairs = []
        for at in range(0, len(data), WORD):
            tag, slot = data[at] >> 3, data[at] >> 1 & TAG_CNT
            if tag == GYRO_NC_TAG:
                self._gyro = (slot, _AXES.unpack_from(data, at + 1))
            elif tag == XL_NC_TAG:
                self._accel = (slot, _AXES.unpack_from(data, at + 1))
            else:
                continue  # CFG_CHANGE after a rate change; nothing else is batched
            if self._gyro and self._accel and self._gyro[0] == self._accel[0]:
                pairs.append((self._gyro[1], self._accel[1]))
                self._gyro = self._accel = None
        a = self._mg_per_lsb * 1e-3 * G
        w = self._mdps_per_lsb * 1e-3
        return [(t, imu_row(ax * a, ay * a, az * a, gx * w, gy * w, gz * w))
                for t, ((gx, gy, gz), (ax, ay, az)) in zip(
                    stamp_back(t_ns, len(pairs), self.odr_hz), pairs, strict=True)]

    def _data_ready(self) -> list[Sample]:
        status = self.read_u8(STATUS_REG)
        if status & (XLDA | GDA) != XLDA | GDA:
            return []
        t_ns = self.clock_ns()
        gx, gy, gz, ax, ay, az = _SAMPLE.unpack(self.read_block(OUTX_L_G, _SAMPLE.size))
        a = self._mg_per_lsb * 1e-3 * G
        w = self._mdps_per_lsb * 1e-3
        return [(t_ns, imu_row(ax * a, ay * a, az * a, gx * w, gy * w, gz * w))]

    def _power_down(self) -> None:
        # ODR 0000: power-down (CTRL1_XL, CTRL2_G); bypass mode empties the FIFO
        if self.fifo:
            self.write_u8(FIFO_CTRL4, 0)
        self.write_u8(CTRL1_XL, 0)
        self.write_u8(CTRL2_G, 0)
