"""The seam every sensor backend fits: :class:`SensorDevice` (open, read what is ready, close).

A device is one IMU or barometer (a real part on I2C through ``smbus2``, or the ``sim`` one that
plays the simulated drop). :meth:`SensorDevice.read` returns the samples that became ready since
the last call, oldest first, each as ``(t_ns, row)``: ``t_ns`` is the sample's data-ready time on
``CLOCK_MONOTONIC`` (the clock camera frames are stamped on), ``row`` the numbers of the kind's
fields (:data:`~camctl.store.sources.IMU_FIELDS`, :data:`~camctl.store.sources.BARO_FIELDS`).
The sampler thread (:mod:`camctl.board.sensors.sampler`) calls it every :attr:`poll_s` and never
shares a lock with camera capture.

Example::

    >>> row = imu_row(0.0, 0.0, G, 0.0, 0.0, 0.0)
    >>> row[-1]
    1.0
"""

from __future__ import annotations

import math
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any, ClassVar

from camctl.board.config_sensors import SensorConfig
from camctl.exc import SensorError
from camctl.store.sources import BARO_FIELDS, IMU_FIELDS, G

__all__ = [
    "BARO_FIELDS",
    "FIELDS",
    "IMU_FIELDS",
    "G",
    "Identity",
    "Sample",
    "SensorDevice",
    "SensorError",
    "altitude_m",
    "imu_row",
]

Sample = tuple[int, tuple[float, ...]]  # (t_ns on CLOCK_MONOTONIC, the kind's fields)
FIELDS = {"imu": IMU_FIELDS, "baro": BARO_FIELDS}
SEA_LEVEL_PA = 101325.0


class Identity(tuple):
    """What identifies the part: the ID register's address, its value read and the value expected
    (``camctl doctor`` prints it)."""

    __slots__ = ()

    def __new__(cls, register: int, got: int, want: int) -> Identity:
        return super().__new__(cls, (register, got, want))

    @property
    def ok(self) -> bool:
        return self[1] == self[2]


def imu_row(ax: float, ay: float, az: float, gx: float, gy: float, gz: float) -> tuple[float, ...]:
    """An IMU sample's row in :data:`IMU_FIELDS` order: m/s^2, deg/s, and |a| in g."""
    return (ax, ay, az, gx, gy, gz, math.sqrt(ax * ax + ay * ay + az * az) / G)


def altitude_m(pressure_pa: float, sea_level_pa: float = SEA_LEVEL_PA) -> float:
    """Pressure altitude (the ICAO standard atmosphere's troposphere formula, as Bosch's BMP3 API
    and every barometer breakout library use it): metres above where ``sea_level_pa`` is read."""
    return 44330.0 * (1.0 - (pressure_pa / sea_level_pa) ** (1.0 / 5.255))


class SensorDevice(ABC):
    """One sensor. Not thread-safe: one sampler thread owns it (``doctor`` opens its own)."""

    kind: ClassVar[str]  # imu | baro
    part: ClassVar[str]  # the config's backend name: lsm6dsox | icm42688p | bmp390 | sim

    def __init__(self, cfg: SensorConfig, *, clock_ns: Callable[[], int] = time.monotonic_ns
                 ) -> None:
        self.cfg = cfg
        self.name = cfg.name
        self.clock_ns = clock_ns

    @property
    def fields(self) -> tuple[str, ...]:
        return FIELDS[self.kind]

    @property
    def poll_s(self) -> float:
        """How often the sampler should call :meth:`read` (a part with a FIFO: every few
        samples; one without: once a sample)."""
        return 1.0 / self.cfg.rate_hz

    @property
    def where(self) -> str:
        """``imu lsm6dsox on /dev/i2c-1 at 0x6A`` (the start of every error about it)."""
        a = self.cfg.address
        at = "" if a is None else f" on {self.cfg.device} at 0x{a:02X}"
        return f"{self.name} {self.part}{at}"

    @abstractmethod
    def open(self) -> None:
        """Check the part is there and is this part (its ID register), configure its rate and
        ranges, start it. SensorError naming what is wrong."""

    @abstractmethod
    def identify(self) -> Identity:
        """Read the part's ID register (SensorError when the bus cannot)."""

    @abstractmethod
    def read(self) -> list[Sample]:
        """The samples ready since the last call, oldest first (``[]`` when none). SensorError on
        an I/O error; the sampler counts it and carries on."""

    def close(self) -> None:  # noqa: B027 - a part with nothing to stop need not override it
        """Stop the part (power-down mode) and release the bus. Safe twice."""

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "backend": self.part, "rate_hz": self.cfg.rate_hz,
                "bus": self.cfg.bus, "address": self.cfg.address}

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.where}>"
