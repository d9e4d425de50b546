"""The board config's ``[[sensors]]`` and ``[motion.<event>]`` tables -> frozen dataclasses.

A sensor is an IMU or a barometer on I2C (or ``sim``), recorded as its own source in the flight; a
motion rule makes one descent event (``release``, ``separation``, ``touchdown``) fire from the IMU
beside or instead of its GPIO line. Errors name the key (``sensors[0].rate_hz: must be <= 1000, got
2000``; ``motion.release.sources: 'gpio' needs a [gpio.events] line for release``).

Example::

    [[sensors]]
    name = "imu"
    backend = "lsm6dsox"     # lsm6dsox | icm42688p | bmp390 | sim (then kind = "imu" | "baro")
    bus = 1                  # /dev/i2c-1
    address = 0x6A
    rate_hz = 416

    [motion.release]
    sources = ["gpio", "imu"]  # first wins, the other is logged as a confirmation
    threshold_g = 0.3          # free fall: |a| below this ...
    min_ms = 40                # ... for this long
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from camctl.board.config_table import Table, check_name, kind
from camctl.exc import ConfigError

__all__ = [
    "DETECTORS",
    "PARTS",
    "UP_AXES",
    "MotionConfig",
    "MotionRule",
    "SensorConfig",
    "parse_motion",
    "parse_sensors",
]

# backend -> (kind, default I2C address). Addresses: LSM6DSOX datasheet DS12814 sect. 6.1.1 (SA0
# low 0x6A, high 0x6B); ICM-42688-P datasheet DS-000347 sect. 9.3 (AP_AD0 low 0x68, high 0x69);
# BMP390 datasheet BST-BMP390-DS002 sect. 5.2 (SDO low 0x76, high 0x77; Adafruit's breakout 0x77)
PARTS: dict[str, tuple[str, int | None]] = {
    "lsm6dsox": ("imu", 0x6A),
    "icm42688p": ("imu", 0x68),
    "bmp390": ("baro", 0x77),
    "sim": ("", None),
}
SENSOR_KINDS = ("imu", "baro")
_NOUN = {"imu": "an IMU", "baro": "a barometer"}
# rates a sampler thread keeps up with on a Pi (the range: IMU 200-1000 Hz, barometer 25-50
# Hz); lower IMU rates load but are warned of: an impact spike lasts a few ms
RATE_LIMITS = {"imu": (50.0, 1000.0, 416.0), "baro": (1.0, 50.0, 50.0)}
IMU_RATE_WARN_HZ = 200.0
ACCEL_RANGES_G = (2, 4, 8, 16)
GYRO_RANGES_DPS = (250, 500, 1000, 2000)
UP_AXES = ("+x", "-x", "+y", "-y", "+z", "-z")

# detector -> (what crosses the threshold, default threshold g, default min ms, threshold range)
DETECTORS: dict[str, tuple[str, float, float, tuple[float, float]]] = {
    "freefall": ("below", 0.3, 40.0, (0.05, 0.8)),
    "shock": ("above", 2.5, 5.0, (1.3, 100.0)),
    "impact": ("above", 6.0, 0.0, (1.3, 200.0)),
}
# an event's detector when its table does not name one
DEFAULT_DETECTOR = {"release": "freefall", "separation": "shock", "touchdown": "impact"}
SOURCES = ("gpio", "imu")


@dataclass(frozen=True)
class SensorConfig:
    """One ``[[sensors]]`` table."""

    name: str
    kind: str  # imu | baro
    backend: str  # lsm6dsox | icm42688p | bmp390 | sim
    bus: int = 1
    address: int | None = None  # None for sim
    rate_hz: float = 416.0
    batch_ms: float = 50.0  # samples per stored record: one batch per this many ms
    accel_range_g: int = 16
    gyro_range_dps: int = 2000
    up_axis: str = "+z"  # the axis that points up when the vehicle hangs at rest (doctor, NO-GO)
    seed: int = 0  # sim only
    noise_g: float = 0.01  # sim only: accelerometer noise (1 sigma)

    @property
    def device(self) -> str:
        """The I2C character device (``/dev/i2c-1``)."""
        return f"/dev/i2c-{self.bus}"


@dataclass(frozen=True)
class MotionRule:
    """``[motion.<event>]``: the event fires from ``sources`` (first wins)."""

    event: str
    sources: tuple[str, ...]
    detect: str  # freefall | shock | impact
    threshold_g: float
    min_ms: float

    @property
    def below(self) -> bool:
        """The detector fires when |a| stays below (free fall) rather than above the threshold."""
        return DETECTORS[self.detect][0] == "below"


@dataclass(frozen=True)
class MotionConfig:
    """``[motion]``: per-event rules, and how long a first source waits for the other's
    confirmation before the event is logged unconfirmed."""

    rules: tuple[MotionRule, ...] = ()
    confirm_s: float = 3.0
    baro_descent_mps: float = 1.5  # the barometric check: descending faster than this

    def rule(self, event: str) -> MotionRule | None:
        for r in self.rules:
            if r.event == event:
                return r
        return None

    def sources_of(self, event: str) -> tuple[str, ...]:
        """Where ``event`` may come from: its rule's sources, else the GPIO line alone."""
        r = self.rule(event)
        return r.sources if r is not None else ("gpio",)


def parse_sensors(value: Any, *, taken: set[str]) -> tuple[SensorConfig, ...]:
    """The ``[[sensors]]`` array; ``taken``: names already used (cameras, ``events``)."""
    if not isinstance(value, list):
        raise ConfigError(f"must be an array of tables ([[sensors]]), got {kind(value)}",
                          key="sensors")
    out: list[SensorConfig] = []
    seen = set(taken)
    addresses: dict[tuple[int, int], str] = {}
    for i, spec in enumerate(value):
        t = Table(spec, f"sensors[{i}]")
        s = _sensor(t, i)
        if s.name in seen:
            raise ConfigError(f"name {s.name!r} is already used by a camera or sensor "
                              "(each source needs its own)", key=t.path("name"))
        seen.add(s.name)
        if s.address is not None:
            where = (s.bus, s.address)
            if where in addresses:
                raise ConfigError(f"bus {s.bus} address 0x{s.address:02X} is already sensor "
                                  f"{addresses[where]!r}", key=t.path("address"))
            addresses[where] = s.name
        out.append(s)
    return tuple(out)


def _sensor(t: Table, index: int) -> SensorConfig:
    name = check_name(t.get("name"), t.path("name")) if t.has("name") else _required(t, "name")
    if name == "events":
        raise ConfigError("'events' is reserved for the event log", key=t.path("name"))
    backend = t.str("backend", choices=tuple(PARTS))
    part_kind, default_address = PARTS[backend]
    if backend == "sim":
        k = t.str("kind", choices=SENSOR_KINDS) if t.has("kind") else _required(t, "kind")
    else:
        k = t.str("kind", part_kind, choices=SENSOR_KINDS)
        if k != part_kind:
            raise ConfigError(f"a {backend} is {_NOUN[part_kind]}, not {_NOUN[k]}",
                              key=t.path("kind"))
    lo, hi, default_rate = RATE_LIMITS[k]
    rate = t.num("rate_hz", default_rate, lo=lo, hi=hi)
    bus = t.num("bus", 1, lo=0, hi=255, integer=True)
    if backend == "sim":
        if t.has("address"):
            raise ConfigError("a sim sensor has no I2C address", key=t.path("address"))
        address = None
    else:
        address = t.num("address", default_address, lo=0x03, hi=0x77, integer=True)
    imu_only = {"accel_range_g", "gyro_range_dps", "up_axis"}
    if k != "imu":
        for key in sorted(imu_only & set(t.data)):
            raise ConfigError(f"only an IMU has {key}", key=t.path(key))
    accel = t.num("accel_range_g", 16, integer=True)
    if accel not in ACCEL_RANGES_G:
        raise ConfigError(f"must be one of {', '.join(map(str, ACCEL_RANGES_G))}, got {accel}",
                          key=t.path("accel_range_g"))
    gyro = t.num("gyro_range_dps", 2000, integer=True)
    if gyro not in GYRO_RANGES_DPS:
        raise ConfigError(f"must be one of {', '.join(map(str, GYRO_RANGES_DPS))}, got {gyro}",
                          key=t.path("gyro_range_dps"))
    up = t.str("up_axis", "+z", choices=UP_AXES)
    if backend != "sim":
        for key in ("seed", "noise_g"):
            if t.has(key):
                raise ConfigError(f"only a sim sensor has {key}", key=t.path(key))
    out = SensorConfig(
        name=name, kind=k, backend=backend, bus=bus, address=address, rate_hz=rate,
        batch_ms=t.num("batch_ms", 50.0, lo=5, hi=1000),
        accel_range_g=accel, gyro_range_dps=gyro, up_axis=up,
        seed=t.num("seed", index, lo=0, integer=True),
        noise_g=t.num("noise_g", 0.01, lo=0, hi=1.0),
    )
    if out.batch_ms < 1000.0 / out.rate_hz:
        raise ConfigError(f"{out.batch_ms:g} ms holds no sample at {out.rate_hz:g} Hz "
                          f"(one every {1000.0 / out.rate_hz:g} ms)", key=t.path("batch_ms"))
    t.done()
    return out


def parse_motion(t: Table, *, sensors: tuple[SensorConfig, ...], lines: set[str],
                 events: set[str]) -> MotionConfig:
    """``[motion]``; ``lines``: events with a GPIO line; ``events``: events that move the phase
    forward in a descent (the triggers and ``touchdown``)."""
    has_imu = any(s.kind == "imu" for s in sensors)
    rules: list[MotionRule] = []
    confirm_s = t.num("confirm_s", MotionConfig.confirm_s, lo=0, hi=600)
    descent = t.num("baro_descent_mps", MotionConfig.baro_descent_mps, lo=0.1, lo_open=False,
                    hi=200)
    for event, spec in t.data.items():
        if event in ("confirm_s", "baro_descent_mps"):
            continue
        key = t.path(event)
        t.used.add(event)
        if event not in events:
            raise ConfigError(f"event {event!r} cannot fire from motion (descent events: "
                              f"{', '.join(sorted(events))})", key=key)
        r = Table(spec, key)
        detect = r.str("detect", DEFAULT_DETECTOR.get(event, "freefall"), choices=tuple(DETECTORS))
        _, default_g, default_ms, (glo, ghi) = DETECTORS[detect]
        threshold = r.num("threshold_g", default_g, lo=glo, hi=ghi)
        min_ms = r.num("min_ms", default_ms, lo=0, hi=2000)
        default_sources = ["gpio", "imu"] if event in lines else ["imu"]
        raw = r.get("sources", default_sources)
        if not isinstance(raw, list) or not raw or not all(isinstance(s, str) for s in raw):
            raise ConfigError(f"must be a non-empty list of {', '.join(map(repr, SOURCES))}, "
                              f"got {raw!r}", key=r.path("sources"))
        for s in raw:
            if s not in SOURCES:
                raise ConfigError(f"unknown source {s!r} (sources: {', '.join(SOURCES)})",
                                  key=r.path("sources"))
        if len(set(raw)) != len(raw):
            raise ConfigError(f"a source is named twice: {raw!r}", key=r.path("sources"))
        if "gpio" in raw and event not in lines:
            raise ConfigError(f"'gpio' needs a [gpio.events] line for {event}",
                              key=r.path("sources"))
        if "imu" in raw and not has_imu:
            raise ConfigError("'imu' needs a [[sensors]] table of kind imu",
                              key=r.path("sources"))
        r.done()
        rules.append(MotionRule(event, tuple(raw), detect, threshold, min_ms))
    shock = [r for r in rules if r.detect == "shock"]
    for r in rules:
        if r.detect == "impact" and any(r.threshold_g <= s.threshold_g for s in shock):
            raise ConfigError(f"an impact threshold ({r.threshold_g:g} g) must be above the canopy "
                              f"shock's ({max(s.threshold_g for s in shock):g} g)",
                              key=t.path(f"{r.event}.threshold_g"))
    t.done()
    return MotionConfig(rules=tuple(rules), confirm_s=confirm_s, baro_descent_mps=descent)


def _required(t: Table, name: str) -> Any:
    raise ConfigError("is required", key=t.path(name))
