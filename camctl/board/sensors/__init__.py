"""Sensors beside the cameras: an IMU and a barometer per board, recorded as sources of the flight
and feeding the motion detectors that fire descent events.

- :mod:`~camctl.board.sensors.base`: the device seam (:class:`SensorDevice`), rows and units;
- drivers on I2C through ``smbus2``: :mod:`~camctl.board.sensors.lsm6dsox`,
  :mod:`~camctl.board.sensors.icm42688p`, :mod:`~camctl.board.sensors.bmp390`;
- :mod:`~camctl.board.sensors.scene` and :mod:`~camctl.board.sensors.sim`: the simulated drop's
  physics and the ``sim`` devices that sample it;
- :mod:`~camctl.board.sensors.sampler`: one thread per sensor (batch, store, books, live values).

:func:`open_sensor` builds the device a ``[[sensors]]`` table names.
"""

from __future__ import annotations

import importlib
from typing import Any

from camctl.board.config_sensors import SensorConfig
from camctl.board.sensors.base import SensorDevice, SensorError

__all__ = ["BACKENDS", "SensorDevice", "SensorError", "open_sensor"]

# backend -> "module:factory"; a factory takes (cfg, **kw) and returns an unopened SensorDevice
BACKENDS = {
    "lsm6dsox": "camctl.board.sensors.lsm6dsox:LSM6DSOX",
    "icm42688p": "camctl.board.sensors.icm42688p:ICM42688P",
    "bmp390": "camctl.board.sensors.bmp390:BMP390",
    "sim": "camctl.board.sensors.sim:sim_device",
}


def open_sensor(cfg: SensorConfig, **kw: Any) -> SensorDevice:
    """The (unopened) device for ``cfg``. Keywords go to the backend: ``scene`` (a
    :class:`~camctl.board.sensors.scene.DropScene`, sim), ``bus`` (an ``smbus2.SMBus``-like object,
    real parts; default: opened on ``cfg.device`` at :meth:`SensorDevice.open`), ``clock_ns``."""
    module, name = BACKENDS[cfg.backend].split(":")
    factory = getattr(importlib.import_module(module), name)
    return factory(cfg, **kw)
