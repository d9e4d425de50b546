"""What the I2C drivers share: the bus they talk through and the register reads, writes and
checks every part needs, each I/O error turned into one :class:`SensorError` line naming the part.

:class:`I2CSensor` is the base of :mod:`~camctl.board.sensors.lsm6dsox`,
:mod:`~camctl.board.sensors.icm42688p` and :mod:`~camctl.board.sensors.bmp390`: it opens
``smbus2.SMBus(cfg.bus)`` in :meth:`~I2CSensor.open` unless a bus was passed in (tests pass
:class:`camctl.testing.i2c_regs.StubBus`, or an ``SMBus`` on the kernel's ``i2c-stub``), checks
the ID register, and leaves configuring, reading and powering down to the part.

Registers are read and written with byte and I2C-block transfers (``read_byte_data``,
``write_byte_data``, ``read_i2c_block_data``): they are what these parts speak (a register
address, then bytes with the address auto-incremented), and Linux's ``i2c-stub`` serves them the
way a chip does; its SMBus word transfers keep one 16-bit value per register instead
(drivers/i2c/i2c-stub.c, ``stub_xfer``), which no part here has.

The IMUs are read through their FIFOs (:meth:`I2CSensor.read_fifo`): every ``poll_s`` (20 ms) the
driver reads how many words the FIFO holds, then drains them from the FIFO's data register. On an
adapter that does plain I2C (``I2C_FUNC_I2C`` in ``smbus2.SMBus.funcs``: the Pi's i2c-bcm2835)
that is one combined transfer (``i2c_rdwr``: write the register, repeated start, read up to 8192
bytes, i2c-dev's limit per message, drivers/i2c/i2c-dev.c ``i2cdev_ioctl_rdwr``), so a poll is
two ioctls whatever the rate. An SMBus-only adapter, and ``i2c-stub`` (it has no ``master_xfer``
and advertises the SMBus functions only, ``stub_func``), gets I2C-block reads of 32 bytes at most
(I2C_SMBUS_BLOCK_MAX), each a whole number of words, all from the same FIFO register: the parts
serve the next words at that address (the ICM-42688-P's FIFO_DATA does not auto-increment; the
LSM6DSOX's FIFO output wraps from 7Eh back to 78h, which is how Linux's st_lsm6dsx reads it,
28 bytes at a time from FIFO_DATA_OUT_TAG: drivers/iio/imu/st_lsm6dsx/st_lsm6dsx_buffer.c,
``st_lsm6dsx_read_tagged_fifo``, ``ST_LSM6DSX_MAX_TAGGED_WORD_LEN``). On ``i2c-stub`` those
block reads see consecutive registers, which is how the tests give it a FIFO's words.

Example::

    >>> from camctl.board.sensors.i2c import nearest_at_least
    >>> nearest_at_least({12.5: 1, 26.0: 2, 52.0: 3}, 30)
    (52.0, 3)
"""

from __future__ import annotations

import errno
import time
from abc import abstractmethod
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar, Protocol

from camctl.board.config_sensors import SensorConfig
from camctl.board.sensors.base import Identity, Sample, SensorDevice, SensorError

__all__ = ["ABSENT_ERRNOS", "BLOCK_MAX", "FIFO_POLL_S", "I2C_FUNC_I2C", "RDWR_MAX", "Bus",
           "I2CSensor", "nearest_at_least", "stamp_back"]

# What a read from an address nobody acknowledges fails with: EREMOTEIO from the Pi's
# i2c-bcm2835 and most adapters on a NACK, ENXIO from others (Documentation/i2c/fault-codes.rst),
# ENODEV from i2c-stub for an address it does not serve (drivers/i2c/i2c-stub.c, stub_xfer)
ABSENT_ERRNOS = frozenset({errno.EREMOTEIO, errno.ENXIO, errno.ENODEV})
BLOCK_MAX = 32  # I2C_SMBUS_BLOCK_MAX (include/uapi/linux/i2c.h): one I2C block transfer
I2C_FUNC_I2C = 0x00000001  # include/uapi/linux/i2c.h: the adapter does plain I2C (I2C_RDWR)
RDWR_MAX = 8192  # bytes in one I2C_RDWR message (drivers/i2c/i2c-dev.c, i2cdev_ioctl_rdwr)
# How often a FIFO is drained: 50 wakes a second instead of two per sample, and a Pi's sampler
# thread batches 20 ms of samples per wake; the FIFOs hold far more (poll_s shortens it when not)
FIFO_POLL_S = 0.02


class Bus(Protocol):
    """The part of ``smbus2.SMBus`` the drivers use."""

    def read_byte_data(self, i2c_addr: int, register: int) -> int: ...
    def write_byte_data(self, i2c_addr: int, register: int, value: int) -> None: ...
    def read_i2c_block_data(self, i2c_addr: int, register: int, length: int) -> list[int]: ...
    def close(self) -> None: ...


def stamp_back(t_ns: int, n: int, odr_hz: float) -> list[int]:
    """Times for ``n`` samples read from a FIFO at ``t_ns``, oldest first: the newest at
    ``t_ns``, each earlier one 1/``odr_hz`` before the next."""
    period = 1e9 / odr_hz
    return [t_ns - round((n - 1 - i) * period) for i in range(n)]


def nearest_at_least(table: Mapping[float, int], rate_hz: float) -> tuple[float, int]:
    """The slowest output data rate in ``table`` (Hz -> register code) that is at least
    ``rate_hz`` (the fastest when none is), and its code."""
    fits = sorted(hz for hz in table if hz >= rate_hz)
    hz = fits[0] if fits else max(table)
    return hz, table[hz]


class I2CSensor(SensorDevice):
    """One part on an I2C bus. Subclasses set :attr:`id_register`, :attr:`id_value` and
    :attr:`id_name` and implement :meth:`_configure`, :meth:`_sample` and :meth:`_power_down`."""

    id_register: int
    id_value: int
    id_name: str  # the ID register's name in the datasheet (WHO_AM_I, CHIP_ID)
    # a part with a FIFO: its size in bytes and the bytes one sample takes in it (0: no FIFO)
    fifo_bytes: ClassVar[int] = 0
    fifo_sample_bytes: ClassVar[int] = 0

    def __init__(self, cfg: SensorConfig, *, bus: Any = None,
                 clock_ns: Callable[[], int] = time.monotonic_ns, fifo: bool | None = None
                 ) -> None:
        super().__init__(cfg, clock_ns=clock_ns)
        if cfg.address is None:
            raise SensorError(f"{self.where}: no I2C address")
        if fifo and not self.fifo_bytes:
            raise ValueError(f"{self.part} has no FIFO mode here")
        self.address: int = cfg.address
        self._bus: Any = bus
        self._owns_bus = False
        self.odr_hz = float(cfg.rate_hz)  # the part's output data rate, once configured
        self.opened = False
        # read through the FIFO (the default where the part has one) or poll data-ready
        self.fifo = bool(self.fifo_bytes) if fifo is None else fifo
        self.overruns = 0  # FIFO reads that found samples overwritten unread (lost)
        self._plain_i2c = False  # the bus does I2C_RDWR: a FIFO drains in one transfer

    # -- life ----------------------------------------------------------------------------------
    @property
    def poll_s(self) -> float:
        """FIFO: :data:`FIFO_POLL_S`, or a quarter of the time the FIFO takes to fill when that
        is shorter. Data-ready: half the part's sample period: a flag polled at twice the output
        data rate is seen in every period however the poll's phase drifts, so no sample is
        overwritten unread (a poll that finds the flag clear costs one byte read)."""
        if self.fifo:
            fill_s = self.fifo_bytes / (self.fifo_sample_bytes * self.odr_hz)
            return min(FIFO_POLL_S, fill_s / 4)
        return 0.5 / self.odr_hz

    def open(self) -> None:
        if self._bus is None:
            self._bus = self._open_bus()
            self._owns_bus = True
        try:
            ident = self.identify()
            if not ident.ok:
                raise SensorError(f"{self.where}: {self.id_name} 0x{ident[1]:02X}, "
                                  f"want 0x{ident[2]:02X}")
            self._plain_i2c = (bool(int(getattr(self._bus, "funcs", 0)) & I2C_FUNC_I2C)
                               and hasattr(self._bus, "i2c_rdwr"))
            self._configure()
        except BaseException:
            self._release()
            raise
        self.opened = True

    def identify(self) -> Identity:
        if self._bus is None:
            self._bus = self._open_bus()
            self._owns_bus = True
        return Identity(self.id_register, self.read_u8(self.id_register), self.id_value)

    def read(self) -> list[Sample]:
        if not self.opened:
            raise SensorError(f"{self.where}: read before open")
        return self._sample()

    def close(self) -> None:
        if self.opened:
            self.opened = False
            try:
                self._power_down()
            finally:
                self._release()
        else:
            self._release()

    def _open_bus(self) -> Any:
        import smbus2  # a board dependency; imported where a real bus is opened

        try:
            return smbus2.SMBus(self.cfg.bus)
        except FileNotFoundError:
            raise SensorError(f"{self.where}: no {self.cfg.device} (I2C not enabled: "
                              "dtparam=i2c_arm=on in config.txt)") from None
        except OSError as exc:
            raise SensorError(f"{self.where}: cannot open {self.cfg.device}: "
                              f"{exc.strerror or exc}") from None

    def _release(self) -> None:
        """Close the bus when this device opened it (a bus passed in is the caller's)."""
        if self._owns_bus and self._bus is not None:
            bus, self._bus, self._owns_bus = self._bus, None, False
            bus.close()

    # -- registers -----------------------------------------------------------------------------
    def read_u8(self, register: int) -> int:
        """One register (an SMBus read-byte-data)."""
        try:
            return int(self._bus.read_byte_data(self.address, register))
        except OSError as exc:
            raise self._io_error(exc, f"reading 0x{register:02X}") from None

    def write_u8(self, register: int, value: int) -> None:
        """One register (an SMBus write-byte-data)."""
        try:
            self._bus.write_byte_data(self.address, register, value & 0xFF)
        except OSError as exc:
            raise self._io_error(exc, f"writing 0x{register:02X}") from None

    def read_block(self, register: int, length: int) -> bytes:
        """``length`` (<= 32) consecutive registers in one I2C transfer (the part increments the
        address: LSM6DSOX with CTRL3_C.IF_INC, the others always)."""
        try:
            return bytes(self._bus.read_i2c_block_data(self.address, register, length))
        except OSError as exc:
            raise self._io_error(exc, f"reading {length} bytes at 0x{register:02X}") from None

    def read_fifo(self, register: int, count: int, unit: int) -> bytes:
        """``count`` words of ``unit`` bytes from the FIFO data register ``register``, in as few
        transfers as the bus allows (the module's docstring says how)."""
        total = count * unit
        out = bytearray()
        if self._plain_i2c:
            from smbus2 import i2c_msg  # the bus is an smbus2.SMBus here

            per = RDWR_MAX // unit * unit
            for done in range(0, total, per):
                n = min(per, total - done)
                msgs = (i2c_msg.write(self.address, [register]), i2c_msg.read(self.address, n))
                try:
                    self._bus.i2c_rdwr(*msgs)
                except OSError as exc:
                    raise self._io_error(exc, f"reading {n} bytes at 0x{register:02X}") from None
                out += bytes(msgs[1])
            return bytes(out)
        per = BLOCK_MAX // unit * unit
        for done in range(0, total, per):
            out += self.read_block(register, min(per, total - done))
        return bytes(out)

    def write_checked(self, writes: Sequence[tuple[str, int, int]], *, settle_s: float = 0.0
                      ) -> None:
        """Write each ``(name, register, value)``, wait ``settle_s``, then read them all back: a
        value that did not stick (another part at this address, a bus that drops writes) is a
        one-line error."""
        for _, register, value in writes:
            self.write_u8(register, value)
        if settle_s:
            time.sleep(settle_s)
        for name, register, value in writes:
            got = self.read_u8(register)
            if got != value:
                raise SensorError(f"{self.where}: {name} reads back 0x{got:02X} after writing "
                                  f"0x{value:02X}")

    def _io_error(self, exc: OSError, doing: str) -> SensorError:
        if exc.errno in ABSENT_ERRNOS:
            return SensorError(f"{self.where}: no device answers ({exc.strerror or exc})")
        return SensorError(f"{self.where}: I2C error {doing}: {exc.strerror or exc}")

    # -- the part ------------------------------------------------------------------------------
    @abstractmethod
    def _configure(self) -> None:
        """Reset the part, set its rate and ranges, start it; set :attr:`odr_hz`."""

    @abstractmethod
    def _sample(self) -> list[Sample]:
        """The samples ready: drain the FIFO (:attr:`fifo`), or poll the data-ready flag and,
        when set, read one sample (one block transfer)."""

    @abstractmethod
    def _power_down(self) -> None:
        """Put the part in its lowest-power mode."""

    def describe(self) -> dict[str, Any]:
        """Adds the output data rate, the read mode and, reading a FIFO, ``overruns``: the reads
        that found it had overwritten samples unread (STATUS shows it beside ``samples``)."""
        out = {**super().describe(), "odr_hz": self.odr_hz}
        if self.fifo_bytes:
            out.update(mode="fifo" if self.fifo else "data-ready", overruns=self.overruns)
        return out
