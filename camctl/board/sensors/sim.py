"""The ``sim`` sensors: an IMU and a barometer that sample the simulated drop
(:class:`~camctl.board.sensors.scene.DropScene`) on the board's ``CLOCK_MONOTONIC``.

They behave like parts with a FIFO: the part produces a sample at every grid time
``t0 + k / rate_hz`` (``t0``: when it was opened), and :meth:`read` returns every sample produced
since the last read, stamped with its grid (data-ready) time. A late poll returns more samples and
skips none; only a gap longer than :data:`FIFO_S` loses the oldest, as a real FIFO in stream mode
overwrites them (counted in :attr:`SimDevice.overrun`, logged once).

Noise comes from a numpy ``Generator`` seeded by ``cfg.seed`` and is drawn sample by sample in
grid order, so the same seed gives the same samples however the reads are split.

Example::

    >>> from camctl.board.config_sensors import SensorConfig
    >>> t = [0]
    >>> imu = sim_device(SensorConfig("imu", "imu", "sim", rate_hz=100), clock_ns=lambda: t[0])
    >>> imu.open(); t[0] = 50_000_000
    >>> [s[0] for s in imu.read()]
    [10000000, 20000000, 30000000, 40000000, 50000000]
"""

from __future__ import annotations

import logging
import math
import time
from abc import abstractmethod
from collections.abc import Callable

import numpy as np

from camctl.board.config_sensors import SensorConfig
from camctl.board.sensors.base import (
    SEA_LEVEL_PA,
    Identity,
    Sample,
    SensorDevice,
    SensorError,
    altitude_m,
    imu_row,
)
from camctl.board.sensors.i2c import FIFO_POLL_S
from camctl.board.sensors.scene import DropScene
from camctl.store.sources import G

__all__ = ["BARO_NOISE_PA", "FIFO_S", "GYRO_NOISE_DPS", "SimBaro", "SimDevice", "SimImu",
           "pressure_pa", "sim_device"]

log = logging.getLogger("camctl.board.sensors")

FIFO_S = 2.0  # a read after a longer gap returns the newest FIFO_S of samples (the rest overrun)
# read every 20 ms, as the real IMUs' FIFOs are (camctl.board.sensors.i2c.FIFO_POLL_S): the bench's
# sensor cost and a sim board's decision latency are then a real board's (an event's time is its
# run's first sample either way; only when the phase moves depends on the poll)
IMU_POLL_S = FIFO_POLL_S
# The sim's identity: register 0x00 reads 0x5A, the value expected ("Z" for simulated). No real part
# answers at a sim's (absent) address, so doctor shows it as a healthy sim, not as a part.
SIM_ID = Identity(0x00, 0x5A, 0x5A)
# gyro noise at rest, 1 sigma: LSM6DSOX datasheet DS12814, table 2 "Rn rate noise density"
# 3.8 mdps/sqrt(Hz) over a ~200 Hz bandwidth (ODR 416 Hz) -> ~0.05 dps
GYRO_NOISE_DPS = 0.05
TUMBLE_DPS, TUMBLE_S = 300.0, 0.15  # the rotation an impact kicks, decaying with this time constant
# Barometer noise, 1 sigma: 3 Pa (~0.25 m at sea level). BMP390 datasheet BST-BMP390-DS002 table 1
# gives a relative accuracy of +-3 Pa (+-0.25 m) and an intrinsic RMS noise far lower (0.02 Pa at
# the highest oversampling with the IIR filter); on a falling vehicle the airflow's pressure
# fluctuations dominate, so the sim uses the larger, honest figure.
BARO_NOISE_PA = 3.0
TEMP_C, TEMP_NOISE_C = 17.0, 0.01  # BMP390 temperature resolution 0.005 C (table 1)
_AXES = {"x": 0, "y": 1, "z": 2}


def _clip(x: float, limit: float) -> float:
    return -limit if x < -limit else limit if x > limit else x


def pressure_pa(alt_m: float, sea_level_pa: float = SEA_LEVEL_PA) -> float:
    """The inverse of :func:`~camctl.board.sensors.base.altitude_m` (ISA troposphere)."""
    return sea_level_pa * (1.0 - alt_m / 44330.0) ** 5.255


class SimDevice(SensorDevice):
    """A sim part with a FIFO on the grid ``t0 + k / rate_hz`` (see the module docstring)."""

    part = "sim"

    def __init__(self, cfg: SensorConfig, *, scene: DropScene | None = None,
                 clock_ns: Callable[[], int] = time.monotonic_ns) -> None:
        super().__init__(cfg, clock_ns=clock_ns)
        self.scene = scene if scene is not None else DropScene()
        self.rng = np.random.default_rng(cfg.seed)
        self.overrun = 0  # samples a too-late read lost (FIFO overflow)
        self._t0: int | None = None
        self._k = 1  # the next sample's index on the grid
        self._period_ns = 1e9 / cfg.rate_hz

    def open(self) -> None:
        if self._t0 is None:
            self._t0 = self.clock_ns()
            self._k = 1

    def identify(self) -> Identity:
        return SIM_ID

    def close(self) -> None:
        self._t0 = None

    def _t(self, k: int) -> int:
        assert self._t0 is not None
        return self._t0 + round(k * self._period_ns)

    def read(self) -> list[Sample]:
        if self._t0 is None:
            raise SensorError(f"{self.where}: not open (read before open, or after close)")
        now = self.clock_ns()
        last = math.floor((now - self._t0) / self._period_ns)
        # float rounding at the edge: the grid is round(k * period), the division is not
        while last >= 1 and self._t(last) > now:
            last -= 1
        while self._t(last + 1) <= now:
            last += 1
        if last < self._k:
            return []
        cap = max(1, round(FIFO_S * self.cfg.rate_hz))
        if last - self._k + 1 > cap:
            lost = last - self._k + 1 - cap
            if not self.overrun:  # logged once; self.overrun counts every loss
                log.warning("%s: read after %.1f s, the FIFO holds %g s: %d samples lost",
                            self.where, (last - self._k + 1) / self.cfg.rate_hz, FIFO_S, lost)
            self.overrun += lost
            self._k = last - cap + 1
        ts = [self._t(k) for k in range(self._k, last + 1)]
        self._k = last + 1
        return self._samples(ts)

    @abstractmethod
    def _samples(self, ts: list[int]) -> list[Sample]:
        """The samples at the grid times ``ts`` (drawing their noise in order)."""


class SimImu(SimDevice):
    """The sim IMU: the scene's specific force on ``cfg.up_axis``, a swing under canopy, a tumble
    at impact, gaussian noise (``cfg.noise_g`` per axis, :data:`GYRO_NOISE_DPS`), each axis
    saturating at the configured full scale (``accel_range_g``, ``gyro_range_dps``)."""

    kind = "imu"

    def __init__(self, cfg: SensorConfig, **kw: object) -> None:
        super().__init__(cfg, **kw)  # type: ignore[arg-type]
        sign = -1.0 if cfg.up_axis[0] == "-" else 1.0
        up = _AXES[cfg.up_axis[1]]
        self._up = (up, sign)
        self._side = (up + 1) % 3  # the swing tilts the up axis toward this one
        self._pivot = (up + 2) % 3  # ... rotating about this one
        tumble = np.random.default_rng(cfg.seed + 1).normal(size=3)
        self._tumble = tumble / np.linalg.norm(tumble)

    @property
    def poll_s(self) -> float:
        return IMU_POLL_S

    def _samples(self, ts: list[int]) -> list[Sample]:
        n = len(ts)
        # six draws per sample, in sample order: the same seed gives the same samples however
        # the reads split them
        z = self.rng.standard_normal(size=(n, 6))
        scene = self.scene
        marks = scene.marks()
        td = marks.get("touchdown")
        up, sign = self._up
        # a real part saturates at its full scale (the config's ranges): an 18 g impact on a
        # +-16 g accelerometer reads 16 g on that axis
        amax, wmax = self.cfg.accel_range_g * G, float(self.cfg.gyro_range_dps)
        if _on_the_hook(ts, marks):
            return self._at_rest(ts, z, up, sign, amax, wmax)
        acc_noise = (z[:, :3] * (self.cfg.noise_g * G)).tolist()
        gyro_noise = (z[:, 3:] * GYRO_NOISE_DPS).tolist()
        out: list[Sample] = []
        for i, t in enumerate(ts):
            f = scene.accel_mps2(t)
            rate = scene.swing_dps(t)
            tilt = math.radians(scene.tilt_deg(t))
            a = [0.0, 0.0, 0.0]
            w = [0.0, 0.0, 0.0]
            a[up] = sign * f * math.cos(tilt)
            a[self._side] = f * math.sin(tilt)
            w[self._pivot] = rate
            if td is not None and t >= td and scene.phase(t) == "landed":
                s = (t - td) * 1e-9
                if s < 5 * TUMBLE_S:
                    k = TUMBLE_DPS * math.exp(-s / TUMBLE_S)
                    w = [w[j] + k * float(self._tumble[j]) for j in range(3)]
            ax, ay, az = (_clip(a[j] + acc_noise[i][j], amax) for j in range(3))
            gx, gy, gz = (_clip(w[j] + gyro_noise[i][j], wmax) for j in range(3))
            out.append((t, imu_row(ax, ay, az, gx, gy, gz)))
        return out


    def _at_rest(self, ts: list[int], z: np.ndarray, up: int, sign: float, amax: float,
                 wmax: float) -> list[Sample]:
        """:meth:`_samples` for samples all on the hook (the board armed and waiting, most of a
        flight's samples), as arrays: the same draws and the same numbers as the per-sample
        physics gives there (G on the up axis, no swing, no tumble), at a fraction of its CPU."""
        a = z[:, :3] * (self.cfg.noise_g * G)
        a[:, up] += sign * G
        np.clip(a, -amax, amax, out=a)
        w = np.clip(z[:, 3:] * GYRO_NOISE_DPS, -wmax, wmax)
        g = np.sqrt(a[:, 0] * a[:, 0] + a[:, 1] * a[:, 1] + a[:, 2] * a[:, 2]) / G
        rows = np.column_stack((a, w, g)).tolist()
        return [(t, tuple(r)) for t, r in zip(ts, rows, strict=True)]


def _on_the_hook(ts: list[int], marks: dict[str, int]) -> bool:
    """Every time in ``ts`` is before the drop's release (or there is no drop yet)."""
    release = marks.get("release")
    return release is None or ts[-1] < release


class SimBaro(SimDevice):
    """The sim barometer: the scene's altitude as ISA pressure, :data:`BARO_NOISE_PA` noise; the
    row's ``altitude_m`` is :func:`~camctl.board.sensors.base.altitude_m` of the noisy pressure,
    as a real driver computes it."""

    kind = "baro"

    def _samples(self, ts: list[int]) -> list[Sample]:
        n = len(ts)
        z = self.rng.standard_normal(size=(n, 2))  # two draws per sample, in sample order
        p_noise = (z[:, 0] * BARO_NOISE_PA).tolist()
        t_noise = (z[:, 1] * TEMP_NOISE_C).tolist()
        out: list[Sample] = []
        for i, t in enumerate(ts):
            p = pressure_pa(self.scene.altitude_m(t)) + p_noise[i]
            out.append((t, (p, TEMP_C + t_noise[i], altitude_m(p))))
        return out


def sim_device(cfg: SensorConfig, *, scene: DropScene | None = None,
               clock_ns: Callable[[], int] = time.monotonic_ns) -> SensorDevice:
    """The sim IMU or barometer ``cfg.kind`` names, sampling ``scene`` (its own, at rest until
    marked, when None)."""
    cls = {"imu": SimImu, "baro": SimBaro}.get(cfg.kind)
    if cls is None:
        raise SensorError(f"{cfg.name} sim: unknown kind {cfg.kind!r} (imu or baro)")
    return cls(cfg, scene=scene, clock_ns=clock_ns)
