"""The I2C sensor drivers on a real kernel's I2C: Linux's i2c-stub (chips at the parts' addresses,
tools/kernelvm/guest.sh) through i2c-dev's /dev/i2c-N with smbus2.SMBus, the path a Pi uses.

The checks are tests/test_sensor_drivers.py's ``check_*`` contract, which runs on the host against
camctl.testing.i2c_regs.StubBus: the same functions here pin that double to the kernel
(:func:`check_stub_semantics`) and the drivers to a bus the kernel serves. Runs only inside the
kernel tier's VM (tests/test_kernel_gpio.py boots it and requires every test here to pass).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator

import pytest
import test_sensor_drivers as contract

from camctl.testing import kernelvm

pytestmark = pytest.mark.skipif(not kernelvm.in_vm(), reason="runs in the kernel tier's VM only "
                                "(python -m camctl.testing.kernelvm)")


@pytest.fixture(scope="module")
def bus_num() -> int:
    dev = os.environ["CAMCTL_KERNELVM_I2C"]
    m = re.fullmatch(r"/dev/i2c-(\d+)", dev)
    assert m, f"CAMCTL_KERNELVM_I2C={dev!r} is not /dev/i2c-N"
    served = {int(a, 16) for a in os.environ["CAMCTL_KERNELVM_I2C_ADDRS"].split(",")}
    missing = {contract.LSM, contract.ICM, contract.BMP} - served
    assert not missing, (f"i2c-stub serves {sorted(map(hex, served))}, "
                         f"not {sorted(map(hex, missing))}")
    assert contract.ABSENT not in served
    return int(m.group(1))


@pytest.fixture
def bus(bus_num: int) -> Iterator:
    import smbus2

    with smbus2.SMBus(bus_num) as b:
        yield b


def test_i2c_stub_behaves_as_the_double_says(bus):
    contract.check_stub_semantics(bus)


def test_an_absent_part_is_one_line_on_the_kernel(bus, bus_num: int):
    contract.check_absent_part(bus, bus_num)


def test_lsm6dsox_on_i2c_stub(bus, bus_num: int):
    contract.check_lsm6dsox(bus, bus_num)


def test_icm42688p_on_i2c_stub(bus, bus_num: int):
    contract.check_icm42688p(bus, bus_num)


def test_lsm6dsox_fifo_on_i2c_stub(bus, bus_num: int):
    contract.check_lsm6dsox_fifo(bus, bus_num)


def test_icm42688p_fifo_on_i2c_stub(bus, bus_num: int):
    contract.check_icm42688p_fifo(bus, bus_num)


def test_bmp390_on_i2c_stub(bus, bus_num: int):
    contract.check_bmp390(bus, bus_num)
