"""A register-file double of an ``smbus2.SMBus``, behaving as Linux's ``i2c-stub`` does, so the
sensor drivers' tests run on any machine and, unchanged, on the kernel tier's real ``i2c-stub``
(``tests/kernelvm/test_in_vm_i2c.py`` runs the same contract there through ``/dev/i2c-N``).

What it copies from the kernel (drivers/i2c/i2c-stub.c, ``stub_xfer``, as in Linux 6.1 and since:
read at torvalds/linux and intel-lab-lkp/linux), each a claim the in-VM run checks:

- one chip per address given (``chip_addr``), each 256 registers of 16 bits (``words[256]``),
  zero at load; any other address fails with ENODEV (``if (!chip) return -ENODEV``), which
  i2c-dev hands to the caller as the ioctl's errno;
- byte-data reads and writes use a register's low byte and leave the high byte alone;
- word-data reads and writes use the register's whole 16-bit word: a word written at r is NOT
  read back as bytes r and r+1 (a real chip's auto-increment would do that);
- I2C-block reads and writes run over consecutive registers' low bytes (the auto-increment a part
  does), at most 32 bytes (longer: EINVAL; smbus2 refuses with ValueError first), cut short at
  register 0xFF (``data->block[0] = 256 - command``; smbus2 then returns the rest of its
  zero-filled buffer);
- read-byte / write-byte go through a pointer that byte-data transfers leave at register + 1;
- SMBus block transfers (not advertised by default, but served) keep their own store per
  command: a read before any write fails with EOPNOTSUPP, the largest write sets the length, and
  a write sets the command's word to ``block[0] << 8 | len``.

It is not kinder than the stub in the other direction either: a register never changes unless a
test writes it, so a data-ready flag set by a test stays set and a self-clearing reset bit stays
written, exactly as on the real stub (the drivers wait a fixed time after a reset for this).
Nor has it a FIFO: a part's FIFO data register serves the next bytes on every read, a register
file the same ones. The FIFO drivers read it with I2C-block reads of whole words from that one
register (an adapter without I2C_FUNC_I2C, as here, gets no I2C_RDWR), and a block read here
runs over consecutive registers, so a test that sets the registers from the FIFO's address on
to the words a read should see, and the FIFO count, plays a FIFO holding those words over and
over (tests/test_sensor_drivers.py, ``check_*_fifo``).

Example::

    >>> bus = StubBus([0x6A])
    >>> bus.write_i2c_block_data(0x6A, 0x28, [1, 2, 3])
    >>> bus.read_i2c_block_data(0x6A, 0x28, 4)
    [1, 2, 3, 0]
    >>> bus.read_byte_data(0x10, 0)
    Traceback (most recent call last):
    ...
    OSError: [Errno 19] No such device
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterable, Sequence
from typing import Any

__all__ = ["BLOCK_MAX", "StubBus", "clear", "poke"]

BLOCK_MAX = 32  # I2C_SMBUS_BLOCK_MAX (include/uapi/linux/i2c.h)


class _Chip:
    __slots__ = ("blocks", "pointer", "words")

    def __init__(self) -> None:
        self.pointer = 0
        self.words = [0] * 256
        self.blocks: dict[int, list[int]] = {}  # SMBus block transfers' own store, by command


def _err(code: int) -> OSError:
    return OSError(code, os.strerror(code))


class StubBus:
    """An i2c-stub adapter with chips at ``addresses``; the methods ``smbus2.SMBus`` has for
    SMBus transfers (``force`` accepted and ignored: the stub binds no kernel driver)."""

    def __init__(self, addresses: Iterable[int]) -> None:
        self.chips = {a: _Chip() for a in addresses}
        for a in self.chips:
            if not 0x03 <= a <= 0x77:  # i2c_stub_init: "Invalid chip address"
                raise ValueError(f"i2c-stub serves addresses 0x03-0x77, not 0x{a:02X}")
        self.closed = False

    def _chip(self, addr: int) -> _Chip:
        if self.closed:
            raise _err(errno.EBADF)
        chip = self.chips.get(addr)
        if chip is None:
            raise _err(errno.ENODEV)
        return chip

    # -- SMBus transfers, as smbus2.SMBus names them ---------------------------------------------
    def write_quick(self, i2c_addr: int, force: bool | None = None) -> None:
        self._chip(i2c_addr)

    def read_byte(self, i2c_addr: int, force: bool | None = None) -> int:
        chip = self._chip(i2c_addr)
        value = chip.words[chip.pointer] & 0xFF
        chip.pointer = (chip.pointer + 1) & 0xFF  # a u8 in the stub
        return value

    def write_byte(self, i2c_addr: int, value: int, force: bool | None = None) -> None:
        self._chip(i2c_addr).pointer = value & 0xFF

    def read_byte_data(self, i2c_addr: int, register: int, force: bool | None = None) -> int:
        chip = self._chip(i2c_addr)
        chip.pointer = (register + 1) & 0xFF
        return chip.words[register] & 0xFF

    def write_byte_data(self, i2c_addr: int, register: int, value: int,
                        force: bool | None = None) -> None:
        chip = self._chip(i2c_addr)
        chip.words[register] = (chip.words[register] & 0xFF00) | (value & 0xFF)
        chip.pointer = (register + 1) & 0xFF

    def read_word_data(self, i2c_addr: int, register: int, force: bool | None = None) -> int:
        return self._chip(i2c_addr).words[register]

    def write_word_data(self, i2c_addr: int, register: int, value: int,
                        force: bool | None = None) -> None:
        self._chip(i2c_addr).words[register] = value & 0xFFFF

    def read_i2c_block_data(self, i2c_addr: int, register: int, length: int,
                            force: bool | None = None) -> list[int]:
        if length > BLOCK_MAX:  # smbus2's own check, before the ioctl
            raise ValueError(f"Desired block length over {BLOCK_MAX} bytes")
        chip = self._chip(i2c_addr)
        n = min(length, 256 - register)
        return [w & 0xFF for w in chip.words[register:register + n]] + [0] * (length - n)

    def write_i2c_block_data(self, i2c_addr: int, register: int, data: Sequence[int],
                             force: bool | None = None) -> None:
        if len(data) > BLOCK_MAX:
            raise ValueError(f"Data length cannot exceed {BLOCK_MAX} bytes")
        chip = self._chip(i2c_addr)
        for i, b in enumerate(data[:256 - register]):
            chip.words[register + i] = (chip.words[register + i] & 0xFF00) | (b & 0xFF)

    def read_block_data(self, i2c_addr: int, register: int, force: bool | None = None
                        ) -> list[int]:
        chip = self._chip(i2c_addr)
        block = chip.blocks.get(register)
        if block is None:  # "SMBus block read command without prior block write not supported"
            raise _err(errno.EOPNOTSUPP)
        return list(block)

    def write_block_data(self, i2c_addr: int, register: int, data: Sequence[int],
                         force: bool | None = None) -> None:
        if len(data) > BLOCK_MAX:  # smbus2's own check, before the ioctl
            raise ValueError(f"Data length cannot exceed {BLOCK_MAX} bytes")
        chip = self._chip(i2c_addr)
        if not data:
            raise _err(errno.EINVAL)
        old = chip.blocks.get(register, [])
        block = [b & 0xFF for b in data] + old[len(data):]  # the largest write sets the length
        chip.blocks[register] = block
        chip.words[register] = block[0] << 8 | len(block)  # "update for byte and word commands"

    def close(self) -> None:
        self.closed = True

    def __enter__(self) -> StubBus:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- for tests -------------------------------------------------------------------------------
    def poke(self, i2c_addr: int, register: int, data: Sequence[int]) -> None:
        """Set registers from ``register`` on (as :func:`poke` does on any bus)."""
        poke(self, i2c_addr, register, data)

    def peek(self, i2c_addr: int, register: int) -> int:
        """One register's low byte."""
        return self.chips[i2c_addr].words[register] & 0xFF


def poke(bus: Any, i2c_addr: int, register: int, data: Sequence[int]) -> None:
    """Set registers ``register`` .. on the chip at ``i2c_addr`` of ``bus`` (this double or an
    ``smbus2.SMBus`` on the real i2c-stub) with I2C-block writes of at most 32 bytes."""
    for i in range(0, len(data), BLOCK_MAX):
        bus.write_i2c_block_data(i2c_addr, register + i, list(data[i:i + BLOCK_MAX]))


def clear(bus: Any, i2c_addr: int) -> None:
    """Every register of the chip at ``i2c_addr`` to 0 (its state at module load), so one test's
    registers do not leak into the next on the real stub, which keeps them for the VM's life."""
    for register in range(256):
        bus.write_word_data(i2c_addr, register, 0)  # the whole 16-bit register
