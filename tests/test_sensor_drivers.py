"""The I2C sensor drivers (LSM6DSOX, ICM-42688-P, BMP390) against a register file.

The ``check_*`` functions are a contract that takes any SMBus-like ``bus``: here they run on
:class:`camctl.testing.i2c_regs.StubBus`; tests/kernelvm/test_in_vm_i2c.py runs the same functions
on Linux's i2c-stub through ``/dev/i2c-N`` with ``smbus2.SMBus`` (the kernel tier), which also
pins the double to the kernel (:func:`check_stub_semantics`). Each check sets the registers a part
would hold (its ID, a known sample, the data-ready bit), then checks what the driver made of
them: the one-line error for a wrong ID, the configuration codes it wrote (expected values
written out from the datasheets, not taken from the drivers' tables) and the converted sample.

The IMUs' FIFOs (``check_*_fifo``): a register file returns the same bytes on every read, so a
check sets the FIFO count and, where the part's FIFO register would serve the next words, the
registers a block read of the FIFO runs over (i2c-stub's block reads go through consecutive
registers) to known words; the driver must return the samples those words make, stamped back
from the read at 1/ODR steps. What a register file cannot play (words that change from read to
read, one long I2C_RDWR transfer) runs on the host against :class:`_FifoBus`.
"""

from __future__ import annotations

import errno
import math
import struct
from collections.abc import Callable
from typing import Any

import pytest

from camctl.board.config_sensors import SensorConfig
from camctl.board.sensors import open_sensor
from camctl.board.sensors.base import G, SensorError, altitude_m, imu_row
from camctl.board.sensors.bmp390 import BMP390
from camctl.board.sensors.icm42688p import ICM42688P
from camctl.board.sensors.lsm6dsox import LSM6DSOX
from camctl.board.sensors.sampler import SensorSampler
from camctl.testing.i2c_regs import StubBus, clear, poke

LSM, ICM, BMP = 0x6A, 0x68, 0x77  # the parts' default addresses (config_sensors.PARTS)
ABSENT = 0x6B  # LSM6DSOX's other address: no chip there, on the double or the kernel's stub
ADDRESSES = (ICM, LSM, 0x76, BMP)  # what tools/kernelvm/guest.sh gives i2c-stub
T_NS = 123_456_789_000  # the clock's reading when data-ready is seen


def _cfg(backend: str, bus_num: int, address: int, **kw: Any) -> SensorConfig:
    kind = "baro" if backend == "bmp390" else "imu"
    return SensorConfig(name=kind, kind=kind, backend=backend, bus=bus_num, address=address, **kw)


def _clock() -> Callable[[], int]:
    return lambda: T_NS


def _reg(bus: Any, address: int, register: int) -> int:
    return int(bus.read_byte_data(address, register))


def _open_fails(dev: Any) -> str:
    with pytest.raises(SensorError) as caught:
        dev.open()
    return str(caught.value)


# --- the contract (host: the double; kernel tier: i2c-stub) ------------------------------------
def check_stub_semantics(bus: Any) -> None:
    """What the double claims about i2c-stub (drivers/i2c/i2c-stub.c, stub_xfer)."""
    clear(bus, LSM)
    with pytest.raises(OSError) as caught:
        bus.read_byte_data(ABSENT, 0x0F)
    assert caught.value.errno == errno.ENODEV
    bus.write_i2c_block_data(LSM, 0x28, [1, 2, 3])  # I2C block: consecutive registers
    assert [bus.read_byte_data(LSM, r) for r in (0x28, 0x29, 0x2A)] == [1, 2, 3]
    assert bus.read_i2c_block_data(LSM, 0x27, 5) == [0, 1, 2, 3, 0]
    bus.write_word_data(LSM, 0x40, 0xBEEF)  # a word is one register's 16 bits, not two bytes
    assert bus.read_word_data(LSM, 0x40) == 0xBEEF
    assert (bus.read_byte_data(LSM, 0x40), bus.read_byte_data(LSM, 0x41)) == (0xEF, 0x00)
    bus.write_byte_data(LSM, 0x40, 0x12)  # a byte write keeps the high byte
    assert bus.read_word_data(LSM, 0x40) == 0xBE12
    bus.write_byte_data(LSM, 0xFF, 0x55)  # a block read stops at the last register
    assert bus.read_i2c_block_data(LSM, 0xFE, 4) == [0, 0x55, 0, 0]
    bus.read_byte_data(LSM, 0x28)  # read-byte continues after the last byte-data transfer
    assert bus.read_byte(LSM) == 2
    with pytest.raises(OSError) as caught:
        bus.read_block_data(LSM, 0x90)  # SMBus block read with no block written
    assert caught.value.errno == errno.EOPNOTSUPP
    clear(bus, LSM)


def check_absent_part(bus: Any, bus_num: int) -> None:
    dev = LSM6DSOX(_cfg("lsm6dsox", bus_num, ABSENT), bus=bus)
    assert _open_fails(dev) == (f"imu lsm6dsox on /dev/i2c-{bus_num} at 0x6B: no device answers "
                                "(No such device)")
    dev.close()


# LSM6DSOX (DS12814): a known sample at +-4 g (0.122 mg/LSB) and 500 dps (17.5 mdps/LSB): 8197 LSB
# is 1.000034 g (1 g on +z, -1 g on y), 5714 LSB 99.995 dps; STATUS_REG XLDA|GDA = 0x03
LSM_RAW = (5714, 0, -2857, 0, -8197, 8197)  # gyro x y z, accel x y z, as OUTX_L_G.. holds them
# (rate, g, dps) -> CTRL1_XL, CTRL2_G: ODR code << 4 | FS << 2 (417 Hz 0110, 833 0111, 1667 1000,
# 208 0101; FS_XL 2 g 00, 4 g 10, 8 g 11, 16 g 01; FS_G 250 00, 500 01, 1000 10, 2000 11)
LSM_CODES = [((416, 4, 500), 0x68, 0x64), ((1000, 16, 2000), 0x84, 0x8C),
             ((200, 2, 250), 0x50, 0x50), ((800, 8, 1000), 0x7C, 0x78)]


def check_lsm6dsox(bus: Any, bus_num: int) -> None:
    clear(bus, LSM)
    cfg = _cfg("lsm6dsox", bus_num, LSM, rate_hz=416, accel_range_g=4, gyro_range_dps=500)
    assert _open_fails(LSM6DSOX(cfg, bus=bus)) == (
        f"imu lsm6dsox on /dev/i2c-{bus_num} at 0x6A: WHO_AM_I 0x00, want 0x6C")
    poke(bus, LSM, 0x0F, [0x6C])
    poke(bus, LSM, 0x22, struct.pack("<6h", *LSM_RAW))
    for (rate, g, dps), ctrl1, ctrl2 in LSM_CODES:
        dev = LSM6DSOX(_cfg("lsm6dsox", bus_num, LSM, rate_hz=rate, accel_range_g=g,
                            gyro_range_dps=dps), bus=bus, clock_ns=_clock())
        dev.open()
        got = tuple(_reg(bus, LSM, r) for r in (0x10, 0x11, 0x12, 0x18, 0x09, 0x0A))
        # CTRL3_C 0x44: BDU | IF_INC; CTRL9_XL 0x02: I3C_disable (the rest as the stub holds it);
        # FIFO_CTRL3: BDR_GY << 4 | BDR_XL, the ODR's code in each; FIFO_CTRL4 0x06: continuous
        odr = ctrl1 >> 4
        assert got == (ctrl1, ctrl2, 0x44, 0x02, odr << 4 | odr, 0x06), (
            f"{rate} Hz {g} g {dps} dps: {got}")
        dev.close()
        # power-down; FIFO_CTRL4 0: bypass (FIFO off)
        assert tuple(_reg(bus, LSM, r) for r in (0x10, 0x11, 0x0A)) == (0, 0, 0)
    poke(bus, LSM, 0x09, [0, 0])  # as the reset leaves them (a register file keeps the last)
    dev = LSM6DSOX(cfg, bus=bus, clock_ns=_clock(), fifo=False)  # data-ready polling
    dev.open()
    assert (_reg(bus, LSM, 0x09), _reg(bus, LSM, 0x0A)) == (0, 0)  # no FIFO set up
    assert dev.odr_hz == 417.0 and dev.poll_s == pytest.approx(0.5 / 417)
    poke(bus, LSM, 0x1E, [0x00])
    assert dev.read() == []
    poke(bus, LSM, 0x1E, [0x01])  # accelerometer ready, gyroscope not yet
    assert dev.read() == []
    poke(bus, LSM, 0x1E, [0x03])
    [(t_ns, row)] = dev.read()
    assert t_ns == T_NS
    ax, ay, az, gx, gy, gz, accel_g = row
    assert az / G == pytest.approx(1.0, abs=1e-4) and ay / G == pytest.approx(-1.0, abs=1e-4)
    assert ax == 0 and (gx, gy, gz) == pytest.approx((99.995, 0.0, -49.9975))
    assert az == pytest.approx(8197 * 0.122e-3 * G)
    assert accel_g == pytest.approx(math.sqrt(2) * 8197 * 0.122e-3)
    dev.close()
    dev.close()  # twice is safe


# ICM-42688-P (DS-000347): +-4 g is 8192 LSB/g, 500 dps 65.5 LSB/(deg/s); data big-endian from
# ACCEL_DATA_X1 (0x1F); INT_STATUS DATA_RDY_INT = 0x08
ICM_RAW = (0, -4096, 8192, 6550, 0, -3275)  # accel x y z, gyro x y z
# (rate, g, dps) -> GYRO_CONFIG0, ACCEL_CONFIG0: FS_SEL << 5 | ODR (500 Hz 0xF, 1 kHz 0x6,
# 200 Hz 0x7, 100 Hz 0x8; accel 16 g 000, 4 g 010, 2 g 011; gyro 2000 dps 000, 500 010, 250 011)
ICM_CODES = [((416, 4, 500), 0x4F, 0x4F), ((1000, 16, 2000), 0x06, 0x06),
             ((200, 2, 250), 0x67, 0x67), ((100, 8, 1000), 0x28, 0x28)]


def check_icm42688p(bus: Any, bus_num: int) -> None:
    clear(bus, ICM)
    cfg = _cfg("icm42688p", bus_num, ICM, rate_hz=416, accel_range_g=4, gyro_range_dps=500)
    poke(bus, ICM, 0x75, [0x6C])  # an LSM6DSOX's ID where the ICM's should be
    assert _open_fails(ICM42688P(cfg, bus=bus)) == (
        f"imu icm42688p on /dev/i2c-{bus_num} at 0x68: WHO_AM_I 0x6C, want 0x47")
    poke(bus, ICM, 0x75, [0x47])
    poke(bus, ICM, 0x1F, struct.pack(">6h", *ICM_RAW))
    for (rate, g, dps), gyro0, accel0 in ICM_CODES:
        dev = ICM42688P(_cfg("icm42688p", bus_num, ICM, rate_hz=rate, accel_range_g=g,
                             gyro_range_dps=dps), bus=bus, clock_ns=_clock())
        dev.open()
        got = tuple(_reg(bus, ICM, r) for r in (0x4F, 0x50, 0x4E, 0x4C, 0x5F, 0x16))
        # PWR_MGMT0 0x0F: gyro and accel low-noise; INTF_CONFIG0 0x30: big-endian data;
        # FIFO_CONFIG1 0x07: temperature, gyro, accel (16-byte packets); FIFO_CONFIG 0x40: stream
        assert got == (gyro0, accel0, 0x0F, 0x30, 0x07, 0x40), f"{rate} Hz {g} g {dps} dps: {got}"
        dev.close()
        assert (_reg(bus, ICM, 0x4E), _reg(bus, ICM, 0x16)) == (0, 0)  # both off; FIFO bypass
    poke(bus, ICM, 0x5F, [0])  # as the reset leaves it (a register file keeps the last)
    dev = ICM42688P(cfg, bus=bus, clock_ns=_clock(), fifo=False)  # data-ready polling
    dev.open()
    assert (_reg(bus, ICM, 0x5F), _reg(bus, ICM, 0x16)) == (0, 0)  # no FIFO set up
    assert dev.odr_hz == 500.0
    poke(bus, ICM, 0x2D, [0x10])  # RESET_DONE_INT only
    assert dev.read() == []
    poke(bus, ICM, 0x2D, [0x08])
    [(t_ns, row)] = dev.read()
    assert t_ns == T_NS
    assert row == pytest.approx((0.0, -0.5 * G, G, 100.0, 0.0, -50.0, math.sqrt(1.25)))
    dev.close()


# LSM6DSOX FIFO words: TAG_SENSOR << 3 | TAG_CNT << 1 | TAG_PARITY, then X, Y, Z low byte first
# (FIFO_DATA_OUT_TAG (78h)): gyro is tag 1, accel tag 2, both in TAG_CNT time slot 1 (the parity
# bit must not matter). Gyro and accel of LSM_RAW.
LSM_GYRO_WORD = bytes([1 << 3 | 0b01 << 1 | 1]) + struct.pack("<3h", 5714, 0, -2857)
LSM_ACCEL_WORD = bytes([2 << 3 | 0b01 << 1]) + struct.pack("<3h", 0, -8197, 8197)
LSM_ROW = imu_row(0.0, -8197 * 0.122e-3 * G, 8197 * 0.122e-3 * G, 99.995, 0.0, -49.9975)


def _spaced(t_ns: int, n: int, hz: float) -> list[int]:
    """n times 1/hz apart, the last at t_ns."""
    return [t_ns - round(k * 1e9 / hz) for k in range(n - 1, -1, -1)]


def check_lsm6dsox_fifo(bus: Any, bus_num: int) -> None:
    clear(bus, LSM)
    poke(bus, LSM, 0x0F, [0x6C])
    cfg = _cfg("lsm6dsox", bus_num, LSM, rate_hz=1000, accel_range_g=4, gyro_range_dps=500)
    dev = LSM6DSOX(cfg, bus=bus, clock_ns=_clock())
    dev.open()
    assert dev.fifo and dev.odr_hz == 1667.0 and dev.poll_s == 0.02
    # FIFO_CTRL3 0x88: gyro and accel batched at 1667 Hz (1000); FIFO_CTRL4 0x06: continuous
    assert (_reg(bus, LSM, 0x09), _reg(bus, LSM, 0x0A)) == (0x88, 0x06)
    # what one 28-byte read from 78h (four words: the FIFO output wraps 7Eh -> 78h) sees
    poke(bus, LSM, 0x78, (LSM_GYRO_WORD + LSM_ACCEL_WORD) * 2)
    poke(bus, LSM, 0x3A, [0, 0])  # FIFO_STATUS1/2: empty
    assert dev.read() == []
    poke(bus, LSM, 0x3A, [10, 0])  # 10 words: 5 samples, read as 4 + 4 + 2 words
    got = dev.read()
    assert [t for t, _ in got] == _spaced(T_NS, 5, 1667.0)
    for _, row in got:
        assert row == pytest.approx(LSM_ROW)
    poke(bus, LSM, 0x3A, [0x2C, 0x01])  # DIFF_FIFO 0x12C = 300 words, the high bits in 3Bh
    got = dev.read()
    assert len(got) == 150 and got[0][0] == T_NS - round(149 * 1e9 / 1667.0)
    assert dev.overruns == 0
    for ovr in (0x40, 0x08):  # FIFO_OVR_IA, FIFO_OVR_LATCHED
        poke(bus, LSM, 0x3A, [2, ovr])
        assert len(dev.read()) == 1
    assert dev.overruns == 2 and dev.describe()["overruns"] == 2
    dev.close()
    assert _reg(bus, LSM, 0x0A) == 0  # bypass


# ICM-42688-P FIFO packets (packet 3): header 0x68 (HEADER_ACCEL | HEADER_GYRO | ODR timestamp),
# accel X Y Z, gyro X Y Z big-endian, temperature, timestamp; two different ones, at 500 Hz
ICM_PACKET_A = struct.pack(">B6hbH", 0x68, *ICM_RAW, 25, 1000)
ICM_PACKET_B = struct.pack(">B6hbH", 0x68, 8192, 0, 0, 0, 655, 0, 26, 3000)
ICM_ROW_A = (0.0, -0.5 * G, G, 100.0, 0.0, -50.0, math.sqrt(1.25))
ICM_ROW_B = (G, 0.0, 0.0, 0.0, 10.0, 0.0, 1.0)


def check_icm42688p_fifo(bus: Any, bus_num: int) -> None:
    clear(bus, ICM)
    poke(bus, ICM, 0x75, [0x47])
    cfg = _cfg("icm42688p", bus_num, ICM, rate_hz=416, accel_range_g=4, gyro_range_dps=500)
    dev = ICM42688P(cfg, bus=bus, clock_ns=_clock())
    dev.open()
    assert dev.fifo and dev.odr_hz == 500.0 and dev.poll_s == 0.02
    assert (_reg(bus, ICM, 0x5F), _reg(bus, ICM, 0x16)) == (0x07, 0x40)
    # what one 32-byte read from FIFO_DATA (0x30) sees on a register file: two packets (on the
    # part, FIFO_DATA serves them one after the other)
    poke(bus, ICM, 0x30, ICM_PACKET_A + ICM_PACKET_B)
    poke(bus, ICM, 0x2D, [0x00, 0, 15])  # INT_STATUS; FIFO_COUNT 15 bytes: no whole packet
    assert dev.read() == []
    poke(bus, ICM, 0x2D, [0x00, 0, 5 * 16 + 3])  # 5 packets (and a partial one): 32 + 32 + 16
    got = dev.read()
    assert [t for t, _ in got] == _spaced(T_NS, 5, 500.0)
    for (_, row), want in zip(got, [ICM_ROW_A, ICM_ROW_B] * 2 + [ICM_ROW_A], strict=True):
        assert row == pytest.approx(want)
    poke(bus, ICM, 0x2D, [0x00, 0x01, 0x00])  # FIFO_COUNT 256 bytes: the high byte counts
    assert len(dev.read()) == 16
    assert dev.overruns == 0
    poke(bus, ICM, 0x2D, [0x02, 0, 32])  # FIFO_FULL_INT
    assert len(dev.read()) == 2 and dev.overruns == 1
    assert dev.describe()["overruns"] == 1
    dev.close()
    assert _reg(bus, ICM, 0x16) == 0  # bypass


# BMP390 (BST-BMP390-DS002): a calibration set (NVM_PAR_T1 0x31 .. NVM_PAR_P11 0x45) and raw
# DATA_0..5, with the pressure and temperature an independent implementation of Bosch's
# floating-point compensation gives for them (elixir-sensors/bmp3xx,
# test/bmp3xx/bmp388/calibration_test.exs: the BMP3 family shares the formulas)
BMP_CAL = bytes.fromhex("236B5849F65CFFCEF42300EA636E79F3F6AA4312C4")
BMP_DATA = bytes([151, 159, 109, 115, 216, 133])
BMP_PA, BMP_C = 100_876.00634692199, 30.499314453874284
# rate -> OSR, ODR: odr_sel = log2(200 Hz / rate) (50 Hz 0x02, 25 Hz 0x03, 12.5 Hz 0x04); osr_p
# the most that fits a period with osr_t x1 (x8 = 3 at 50 Hz: 18.9 ms of 20; x16 = 4 at 25 Hz;
# 10 Hz runs at 12.5 Hz, x32 = 5)
BMP_CODES = [(50, 0x03, 0x02), (25, 0x04, 0x03), (40, 0x03, 0x02), (10, 0x05, 0x04)]


def check_bmp390(bus: Any, bus_num: int) -> None:
    clear(bus, BMP)
    cfg = _cfg("bmp390", bus_num, BMP, rate_hz=50)
    assert _open_fails(BMP390(cfg, bus=bus)) == (
        f"baro bmp390 on /dev/i2c-{bus_num} at 0x77: CHIP_ID 0x00, want 0x60")
    poke(bus, BMP, 0x00, [0x60])
    poke(bus, BMP, 0x31, BMP_CAL)
    poke(bus, BMP, 0x04, BMP_DATA)
    poke(bus, BMP, 0x02, [0x04])  # ERR_REG conf_err
    assert _open_fails(BMP390(cfg, bus=bus)) == (
        f"baro bmp390 on /dev/i2c-{bus_num} at 0x77: ERR_REG 0x04 (conf_err) after soft reset")
    poke(bus, BMP, 0x02, [0x00])
    for rate, osr, odr in BMP_CODES:
        dev = BMP390(_cfg("bmp390", bus_num, BMP, rate_hz=rate), bus=bus, clock_ns=_clock())
        dev.open()
        got = tuple(_reg(bus, BMP, r) for r in (0x1C, 0x1D, 0x1F, 0x1B, 0x7E))
        # CONFIG 0: IIR off; PWR_CTRL 0x33: normal mode, pressure and temperature on; CMD 0xB6:
        # the soft reset (a register file keeps it)
        assert got == (osr, odr, 0x00, 0x33, 0xB6), f"{rate} Hz: {got}"
        dev.close()
        assert _reg(bus, BMP, 0x1B) == 0  # sleep mode
    dev = BMP390(cfg, bus=bus, clock_ns=_clock())
    dev.open()
    assert dev.odr_hz == 50.0
    poke(bus, BMP, 0x03, [0x10])  # cmd_rdy only
    assert dev.read() == []
    poke(bus, BMP, 0x03, [0x70])  # drdy_temp, drdy_press, cmd_rdy
    [(t_ns, (pressure, temperature, altitude))] = dev.read()
    assert t_ns == T_NS
    assert pressure == pytest.approx(BMP_PA, abs=1e-6)
    assert temperature == pytest.approx(BMP_C, abs=1e-9)
    assert altitude == pytest.approx(altitude_m(BMP_PA), abs=1e-6)  # 37.45 m above 1013.25 hPa
    dev.close()


# --- on the double -----------------------------------------------------------------------------
@pytest.fixture
def bus() -> StubBus:
    return StubBus(ADDRESSES)


def test_the_double_behaves_as_i2c_stub(bus: StubBus):
    check_stub_semantics(bus)


def test_an_absent_part_is_one_line(bus: StubBus):
    check_absent_part(bus, 1)


def test_lsm6dsox(bus: StubBus):
    check_lsm6dsox(bus, 1)


def test_icm42688p(bus: StubBus):
    check_icm42688p(bus, 1)


def test_lsm6dsox_fifo(bus: StubBus):
    check_lsm6dsox_fifo(bus, 1)


def test_icm42688p_fifo(bus: StubBus):
    check_icm42688p_fifo(bus, 1)


def test_bmp390(bus: StubBus):
    check_bmp390(bus, 1)


# --- host only: what the kernel's stub cannot play ---------------------------------------------
class _Failing(StubBus):
    """Reads fail with ``code`` (a NACK on a Pi's bus is EREMOTEIO; a glitch EIO)."""

    def __init__(self, code: int) -> None:
        super().__init__(ADDRESSES)
        self.code = code

    def read_byte_data(self, i2c_addr: int, register: int, force: bool | None = None) -> int:
        raise OSError(self.code, {errno.EREMOTEIO: "Remote I/O error",
                                  errno.EIO: "Input/output error"}[self.code])


@pytest.mark.parametrize(("code", "said"), [
    (errno.EREMOTEIO, "no device answers (Remote I/O error)"),
    (errno.EIO, "I2C error reading 0x0F: Input/output error"),
])
def test_bus_errors_are_one_line(code: int, said: str):
    dev = LSM6DSOX(_cfg("lsm6dsox", 1, LSM), bus=_Failing(code))
    assert _open_fails(dev) == f"imu lsm6dsox on /dev/i2c-1 at 0x6A: {said}"


class _DropsWrites(StubBus):
    def write_byte_data(self, i2c_addr: int, register: int, value: int,
                        force: bool | None = None) -> None:
        if register != 0x10:
            super().write_byte_data(i2c_addr, register, value)


def test_a_write_that_does_not_stick_is_one_line():
    bus = _DropsWrites(ADDRESSES)
    poke(bus, LSM, 0x0F, [0x6C])
    dev = LSM6DSOX(_cfg("lsm6dsox", 1, LSM, rate_hz=416, accel_range_g=4), bus=bus)
    assert _open_fails(dev) == ("imu lsm6dsox on /dev/i2c-1 at 0x6A: CTRL1_XL reads back 0x00 "
                                "after writing 0x68")


def test_a_missing_bus_device_is_one_line_and_a_read_before_open_too(tmp_path):
    dev = LSM6DSOX(_cfg("lsm6dsox", 250, LSM))  # no bus passed: smbus2.SMBus(250) is opened
    assert _open_fails(dev) == ("imu lsm6dsox on /dev/i2c-250 at 0x6A: no /dev/i2c-250 (I2C not "
                                "enabled: dtparam=i2c_arm=on in config.txt)")
    with pytest.raises(SensorError, match="read before open"):
        dev.read()
    dev.close()


def test_open_sensor_builds_each_part_on_the_given_bus(bus: StubBus):
    for backend, address, cls in (("lsm6dsox", LSM, LSM6DSOX), ("icm42688p", ICM, ICM42688P),
                                  ("bmp390", BMP, BMP390)):
        dev = open_sensor(_cfg(backend, 1, address), bus=bus, clock_ns=_clock())
        assert type(dev) is cls and dev.address == address


def test_a_bus_passed_in_stays_open_and_the_sampler_reads_the_part(bus: StubBus):
    poke(bus, LSM, 0x0F, [0x6C])
    poke(bus, LSM, 0x78, LSM_GYRO_WORD + LSM_ACCEL_WORD)
    poke(bus, LSM, 0x3A, [2, 0])
    dev = LSM6DSOX(_cfg("lsm6dsox", 1, LSM, accel_range_g=4, gyro_range_dps=500), bus=bus,
                   clock_ns=_clock())
    sampler = SensorSampler(dev, sink=lambda batch: True, recording=lambda: False,
                            ledger=lambda: None)
    dev.open()
    assert sampler.poll() == 1  # what the sampler thread calls every poll_s
    assert sampler.last["accel_g"] == pytest.approx(math.sqrt(2) * 8197 * 0.122e-3)
    assert sampler.last_ns == T_NS
    sampler.stop()
    assert not bus.closed and bus.peek(LSM, 0x10) == 0  # stop() powered the part down


def test_bmp390_calibration_fields_have_the_datasheets_types():
    """Every NVM_PAR byte 0xFF: unsigned fields (T1, T2, P5, P6) read 65535, signed ones -1, each
    scaled as Bosch's parse_calib_data does (the worked example above has P3, P4, P9 and P10
    positive, so it cannot tell signed from unsigned there)."""
    from camctl.board.sensors.bmp390 import Calibration

    got = Calibration.parse(bytes([0xFF] * 21))
    assert got == Calibration(
        t1=65535 * 2.0**8, t2=65535 / 2.0**30, t3=-1 / 2.0**48,
        p1=(-1 - 16384) / 2.0**20, p2=(-1 - 16384) / 2.0**29, p3=-1 / 2.0**32, p4=-1 / 2.0**37,
        p5=65535 * 2.0**3, p6=65535 / 2.0**6, p7=-1 / 2.0**8, p8=-1 / 2.0**15,
        p9=-1 / 2.0**48, p10=-1 / 2.0**48, p11=-1 / 2.0**65)


def test_without_a_bus_the_part_opens_smbus2_on_its_bus_and_closes_it(monkeypatch):
    import smbus2

    opened: list[tuple[int, StubBus]] = []

    def smbus(n: int) -> StubBus:
        b = StubBus(ADDRESSES)
        poke(b, LSM, 0x0F, [0x6C if not opened else 0x00])  # the second one: a wrong part
        opened.append((n, b))
        return b

    monkeypatch.setattr(smbus2, "SMBus", smbus)
    dev = LSM6DSOX(_cfg("lsm6dsox", 3, LSM))
    dev.open()
    assert opened[0][0] == 3 and not opened[0][1].closed
    dev.close()
    assert opened[0][1].closed
    assert "WHO_AM_I 0x00" in _open_fails(dev)
    assert opened[1][1].closed  # a failed open leaves nothing open


class _Counting(StubBus):
    """Counts reads, so a clock can tell when in a read() it was asked."""

    reads = 0

    def read_byte_data(self, i2c_addr: int, register: int, force: bool | None = None) -> int:
        self.reads += 1
        return super().read_byte_data(i2c_addr, register)

    def read_i2c_block_data(self, i2c_addr: int, register: int, length: int,
                            force: bool | None = None) -> list[int]:
        self.reads += 1
        return super().read_i2c_block_data(i2c_addr, register, length)


@pytest.mark.parametrize(("cls", "address", "setup"), [
    (LSM6DSOX, LSM, [(0x0F, [0x6C]), (0x1E, [0x03])]),
    (ICM42688P, ICM, [(0x75, [0x47]), (0x2D, [0x08])]),
    (BMP390, BMP, [(0x00, [0x60]), (0x31, list(BMP_CAL)), (0x03, [0x20])]),
])
def test_a_sample_is_stamped_when_its_data_ready_flag_is_seen(cls: type, address: int,
                                                               setup: list):
    bus = _Counting(ADDRESSES)
    for register, data in setup:
        poke(bus, address, register, data)
    fifo = {"fifo": False} if cls.fifo_bytes else {}  # data-ready polling
    dev = cls(_cfg(cls.part, 1, address), bus=bus, clock_ns=lambda: bus.reads, **fifo)
    dev.open()
    bus.reads = 0
    [(t_ns, _)] = dev.read()
    assert (t_ns, bus.reads) == (1, 2)  # after the status read, before the data's block read


# --- host only: a FIFO that serves the next bytes on every read --------------------------------
class _FifoBus(StubBus):
    """A part whose FIFO data register serves the next bytes of :attr:`fifo` on every read, by
    I2C-block or (with ``plain_i2c``, as on a Pi's adapter) by an I2C_RDWR write+read; every other
    register is the register file. :attr:`transfers` lists the FIFO reads."""

    def __init__(self, fifo_register: int, *, plain_i2c: bool) -> None:
        super().__init__(ADDRESSES)
        self.fifo_register = fifo_register
        self.fifo = bytearray()
        self.transfers: list[tuple[str, int]] = []
        if plain_i2c:
            import smbus2

            self.funcs = smbus2.I2cFunc.I2C | smbus2.I2cFunc.SMBUS_I2C_BLOCK

    def _take(self, n: int) -> bytes:
        assert len(self.fifo) >= n, f"read {n} bytes of a FIFO holding {len(self.fifo)}"
        out = bytes(self.fifo[:n])
        del self.fifo[:n]
        return out

    def read_i2c_block_data(self, i2c_addr: int, register: int, length: int,
                            force: bool | None = None) -> list[int]:
        if register != self.fifo_register:
            return super().read_i2c_block_data(i2c_addr, register, length)
        assert length <= 32
        self.transfers.append(("block", length))
        return list(self._take(length))

    def i2c_rdwr(self, *msgs: Any) -> None:
        import ctypes

        write, read = msgs
        assert bytes(write) == bytes([self.fifo_register]) and write.addr == read.addr
        assert read.len <= 8192
        self.transfers.append(("rdwr", read.len))
        ctypes.memmove(read.buf, self._take(read.len), read.len)


def _rows(got: list, want: list) -> bool:
    return len(got) == len(want) and all(
        row == pytest.approx(w) for (_, row), w in zip(got, want, strict=True))


def _lsm_word(tag: int, slot: int, x: int, y: int, z: int) -> bytes:
    return bytes([tag << 3 | slot << 1]) + struct.pack("<3h", x, y, z)


def _lsm_row(k: int) -> tuple[float, ...]:
    """The sample of gyro word (k, 0, 0) and accel word (0, 0, 100 k) at 4 g and 500 dps."""
    return imu_row(0.0, 0.0, 100 * k * 0.122e-3 * G, k * 17.5e-3, 0.0, 0.0)


@pytest.mark.parametrize(("plain_i2c", "transfers"), [
    (True, [("rdwr", 42)]),  # one I2C_RDWR for the six words
    (False, [("block", 28), ("block", 14)]),  # I2C block reads of four words at most
])
def test_lsm6dsox_fifo_pairs_words_by_time_slot_in_few_transfers(plain_i2c: bool,
                                                                 transfers: list):
    bus = _FifoBus(0x78, plain_i2c=plain_i2c)
    poke(bus, LSM, 0x0F, [0x6C])
    dev = LSM6DSOX(_cfg("lsm6dsox", 1, LSM, rate_hz=1000, accel_range_g=4,
                        gyro_range_dps=500), bus=bus, clock_ns=_clock())
    dev.open()
    g, a = 1, 2
    bus.fifo += (_lsm_word(g, 0, 1, 0, 0) + _lsm_word(a, 0, 0, 0, 100)
                 + _lsm_word(a, 1, 0, 0, 200) + _lsm_word(g, 1, 2, 0, 0)  # accel first: fine
                 + _lsm_word(5, 1, 0, 0, 0)  # CFG_CHANGE: no sample
                 + _lsm_word(g, 2, 3, 0, 0))  # its accel word is not in the FIFO yet
    poke(bus, LSM, 0x3A, [6, 0])
    got = dev.read()
    assert bus.transfers == transfers and not bus.fifo
    assert [t for t, _ in got] == _spaced(T_NS, 2, 1667.0)
    assert _rows(got, [_lsm_row(1), _lsm_row(2)])
    bus.fifo += (_lsm_word(a, 2, 0, 0, 300)  # the held gyro word's partner
                 + _lsm_word(g, 3, 9, 0, 0)  # its accel word was overwritten: dropped
                 + _lsm_word(a, 0, 0, 0, 400) + _lsm_word(g, 0, 4, 0, 0))
    poke(bus, LSM, 0x3A, [4, 0])
    assert _rows(dev.read(), [_lsm_row(3), _lsm_row(4)])
    bus.fifo += _lsm_word(g, 1, 5, 0, 0)
    poke(bus, LSM, 0x3A, [1, 0])
    assert dev.read() == []  # held
    bus.fifo += _lsm_word(a, 1, 0, 0, 900)  # slot 1 again, but after an overrun: not its partner
    poke(bus, LSM, 0x3A, [1, 0x40])
    assert dev.read() == [] and dev.overruns == 1


@pytest.mark.parametrize(("plain_i2c", "transfers"), [
    (True, [("rdwr", 80)]),
    (False, [("block", 32), ("block", 32), ("block", 16)]),  # two 16-byte packets per read
])
def test_icm42688p_fifo_skips_what_is_not_a_sample_in_few_transfers(plain_i2c: bool,
                                                                    transfers: list):
    bus = _FifoBus(0x30, plain_i2c=plain_i2c)
    poke(bus, ICM, 0x75, [0x47])
    dev = ICM42688P(_cfg("icm42688p", 1, ICM, rate_hz=1000, accel_range_g=4,
                         gyro_range_dps=500), bus=bus, clock_ns=_clock())
    dev.open()
    assert dev.poll_s == 0.02  # 2 KB of 16-byte packets at 1 kHz: 128 ms, a quarter is 32 ms
    accel_only = struct.pack(">B6hbH", 0x40, 8192, 0, 0, 0, 0, 0, 0, 0)
    # a header with HEADER_MSG (bit 7, "FIFO is empty") set ends the packets: here all ones, a
    # header that would otherwise pass for accel and gyro, and a packet after it
    empty = b"\xff" * 16
    bus.fifo += ICM_PACKET_A + accel_only + ICM_PACKET_B + empty + ICM_PACKET_A
    poke(bus, ICM, 0x2D, [0x00, 0, 80])
    got = dev.read()
    assert bus.transfers == transfers and not bus.fifo
    assert [t for t, _ in got] == _spaced(T_NS, 2, 1000.0)
    assert _rows(got, [ICM_ROW_A, ICM_ROW_B])


def test_a_fast_fifo_is_drained_before_it_fills():
    """At 8 kHz the ICM-42688-P's 2 KB fill in 16 ms: it is read every 4 ms, not 20."""
    dev = ICM42688P(_cfg("icm42688p", 1, ICM, rate_hz=8000), bus=StubBus(ADDRESSES))
    dev.odr_hz = 8000.0  # as open() sets it
    assert dev.poll_s == pytest.approx(2048 / 16 / 8000 / 4)
    with pytest.raises(ValueError, match="bmp390 has no FIFO"):
        BMP390(_cfg("bmp390", 1, BMP), fifo=True)
