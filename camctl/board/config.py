"""The TOML config -> validated, frozen dataclasses.

Every problem is reported as a :class:`~camctl.exc.ConfigError` whose message names the key path
(``cameras[1].fps.DESCENT: must be > 0``), so ``camctl config check`` and ``camctl run`` print one
line and exit 2. Unknown keys are errors too: a typo in a flight config must not be silently
ignored.

A camera's keys are then checked against each other, its sensor (``sensor = "imx708"``, see
:mod:`camctl.board.cameras.sensor_modes`) and the hardware encoder; those errors name the camera
(``cameras 'down': controls.exposure_max_us 50000 is longer than the frame period at DESCENT's 30
fps (33333 us)``). What loads and flies but probably not as meant (an autofocus lens left at rest)
is a line in :attr:`Config.warnings`, which ``config check``, ``run`` and ``doctor`` print.

Example::

    >>> cfg = parse_config({"board": "rig-a", "cameras": [{"name": "down", "backend": "sim"}]})
    >>> cfg.cameras[0].fps_for("DESCENT")
    30.0
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from camctl.board.cameras.picamera2_hardware import CODEC_SIZE, codec_fits
from camctl.board.cameras.sensor_modes import GAIN_MAX_ANY, SENSORS, Sensor, sensor_named
from camctl.board.config_sensors import (
    IMU_RATE_WARN_HZ,
    MotionConfig,
    SensorConfig,
    parse_motion,
    parse_sensors,
)
from camctl.board.config_table import Table as _Table
from camctl.board.config_table import check_name as _name
from camctl.board.config_table import check_number as _number
from camctl.board.config_table import missing as _missing
from camctl.common.phases import (
    ARMED,
    DEFAULT_TRIGGERS,
    FIXED_PHASES,
    LANDED,
    RESERVED_EVENTS,
    SAFE,
    TOUCHDOWN,
)
from camctl.exc import ConfigError
from camctl.store.config import StoreConfig

__all__ = [
    "ARMED",
    "LANDED",
    "SAFE",
    "TOUCHDOWN",
    "CameraConfig",
    "CameraControls",
    "Config",
    "EncodeConfig",
    "GpioConfig",
    "GpioLine",
    "MotionConfig",
    "PhasesConfig",
    "PublishConfig",
    "SensorConfig",
    "StoreConfig",
    "load_config",
    "parse_config",
    "smallest_jpeg_bytes",
]


# Frame rate by role and phase when a camera does not give its own [cameras.fps].
ROLE_FPS: dict[str, dict[str, float]] = {
    "down": {"ARMED": 2, "DESCENT": 30, "SEPARATION": 60, "TOUCHDOWN": 30},
    "up": {"ARMED": 2, "DESCENT": 30, "SEPARATION": 30, "TOUCHDOWN": 10},
    "side": {"ARMED": 2, "DESCENT": 15, "SEPARATION": 30, "TOUCHDOWN": 30},
}


@dataclass(frozen=True)
class GpioLine:
    event: str
    pin: int
    pull_up: bool = True
    active_high: bool = False  # with a pull-up, a switch to ground is active low


@dataclass(frozen=True)
class GpioConfig:
    backend: str = "lgpio"
    bounce_ms: float = 5.0
    min_pulse_ms: float = 0.0
    lines: tuple[GpioLine, ...] = ()

    def pin_of(self, event: str) -> int | None:
        for line in self.lines:
            if line.event == event:
                return line.pin
        return None


@dataclass(frozen=True)
class PhasesConfig:
    # (event, phase) in order
    triggers: tuple[tuple[str, str], ...] = tuple(DEFAULT_TRIGGERS.items())
    post_touchdown_s: float = 3.0
    descent_timeout_s: float = 120.0
    armed_timeout_s: float = 0.0  # 0: wait armed for ever
    timeouts_s: tuple[tuple[str, float], ...] = ()  # per-phase backup timers (phase, seconds)

    @property
    def descent(self) -> tuple[str, ...]:
        return tuple(phase for _, phase in self.triggers)

    @property
    def order(self) -> tuple[str, ...]:
        return (SAFE, ARMED, *self.descent, TOUCHDOWN, LANDED)


# [[cameras]] still_size: "video" (from the running stream, no gap) or "full" (a mode switch)
STILL_SIZES = ("video", "full")

# libcamera AfModeEnum: Manual = 0, Auto = 1, Continuous = 2
AF_MODES = ("manual", "auto", "continuous")


@dataclass(frozen=True)
class CameraControls:
    """``[cameras.controls]``: what the sensor and lens are told at every open (picamera2 backend).

    TOML keys: ``AfMode`` and ``LensPosition`` are picamera2/libcamera control names, passed as they
    are (``af_mode``/``lens_position`` here; dioptres: 0 is infinity, 0.5 is sharp from ~1 m to
    infinity on a Camera Module 3, the last metre of a drop included). The others are camctl's own
    names, because libcamera has no such control: ``exposure_max_us`` and ``analogue_gain_max``
    cap the auto-exposure (against motion blur, and noise) through the tuning, ``sensor_mode`` is
    the sensor output size picamera2 picks the mode by (a full-field binned mode keeps the whole
    view at video sizes). ``None`` leaves the camera's own default.
    """

    af_mode: str | None = None
    lens_position: float | None = None
    exposure_max_us: int | None = None
    analogue_gain_max: float | None = None
    sensor_mode: tuple[int, int] | None = None


@dataclass(frozen=True)
class CameraConfig:
    name: str
    role: str = "down"
    backend: str = "picamera2"
    index: int = 0
    size: tuple[int, int] = (1920, 1080)
    jpeg_quality: int = 85
    pretrigger_s: float = 2.0
    pretrigger_mb: float = 64.0
    fps: tuple[tuple[str, float], ...] = ()
    encoder: str = "auto"
    # events at which a still is taken
    stills: tuple[str, ...] = ()
    # what a still is (STILL_SIZES): "video", the next frame of the running video stream at the
    # video size (the video never pauses), or "full", the whole sensor by a mode switch and back
    # (the video pauses for it: its frames lost are booked as still_mode_switch, its measured gap is
    # the still's video_gap_ms; docs/cameras.md). "full" is refused with encoder = "hardware"
    still_size: str = "video"
    seed: int = 0
    faults: tuple[tuple[str, float, float], ...] = ()  # sim only: (kind, at_s, duration_s)
    quality: tuple[tuple[str, int], ...] = ()  # JPEG quality by phase (jpeg_quality elsewhere)
    # the smaller stream, for phases that need less resolution
    lores_size: tuple[int, int] | None = None
    lores_phases: tuple[str, ...] = ()
    # sim only: scene seconds for the ground to come up (a demo sets it short)
    sim_descent_s: float = 90.0
    # sim only: replay this many frames rendered at open instead of rendering each one (0: render
    # each), so a frame costs what a Pi camera's does (its ISP fills the buffers off-CPU); for
    # benchmarks of board code
    sim_prerender: int = 0
    controls: CameraControls = field(default_factory=CameraControls)
    # the sensor's libcamera model ("imx708"; camctl.board.cameras.sensor_modes); "": not said,
    # and the checks that need it are skipped
    sensor: str = ""

    def sensor_fps(self) -> float:
        """The rate the sensor runs at from ARM to landing: the highest any phase needs (frames are
        thinned to each phase's rate before encoding, so a phase change never waits for the
        sensor)."""
        return max((fps for _, fps in self.fps), default=self.fps_for("ARMED"))

    def quality_for(self, phase: str) -> int:
        return dict(self.quality).get(phase, self.jpeg_quality)

    def lores_in(self, phase: str) -> bool:
        return self.lores_size is not None and phase in self.lores_phases

    def fps_for(self, phase: str) -> float:
        """Frames per second in ``phase`` (the ARMED rate in phases the table does not name)."""
        table = dict(self.fps)
        if phase in table:
            return table[phase]
        return table.get("ARMED", 2.0)


@dataclass(frozen=True)
class EncodeConfig:
    threads: int = 2
    max_inflight: int = 4


@dataclass(frozen=True)
class PublishConfig:
    bind: str = "tcp://*:5555"
    events: str = "tcp://*:5556"
    curve_keys: str = ""
    serve_during_flight: bool = False
    remote_events: bool = False  # COMMAND event accepted on a board whose GPIO lines are real
    chunk_kb: int = 256
    thumbs_every: int = 10
    # every frame within this many seconds of a phase edge (release, touchdown...) gets a preview
    # too: the first look's -1 s .. +1 s columns (0: only every thumbs_every-th frame)
    thumbs_dense_s: float = 1.0
    # COMMAND arm/disarm/event from anyone on a real-GPIO board without operator keys (unsafe)
    unsafe_remote_commands: bool = False
    # TCP connections served at once (ROUTER + PUB); more are refused. A ground station takes one
    # or two (fetch, status --watch): 64 leaves room for several, and their fds and libzmq
    # buffers stay far below the publisher's fd limit and memory budget
    max_connections: int = 64
    # the memory the network may make the publisher process use beyond its idle footprint: its
    # watchdog resets the sockets at 70% of it, its RLIMIT_DATA is the footprint plus all of it
    # (camctl.board.publish.child); a quarter of it bounds the reply bytes handed to libzmq and not
    # yet sent, across all peers
    memory_mb: int = 256


@dataclass(frozen=True)
class Config:
    board: str
    store: StoreConfig = field(default_factory=StoreConfig)
    gpio: GpioConfig = field(default_factory=GpioConfig)
    phases: PhasesConfig = field(default_factory=PhasesConfig)
    cameras: tuple[CameraConfig, ...] = ()
    encode: EncodeConfig = field(default_factory=EncodeConfig)
    publish: PublishConfig = field(default_factory=PublishConfig)
    # [[sensors]] (IMU, barometer: sources in the flight beside the cameras) and [motion.<event>]
    # (descent events from the IMU): camctl.board.config_sensors
    sensors: tuple[SensorConfig, ...] = ()
    motion: MotionConfig = field(default_factory=MotionConfig)
    source: str = ""
    # what loads and flies but probably not as meant, one line each ("<file>: cameras 'down': ..."):
    # `camctl config check`, `camctl run` and `camctl doctor` print them
    warnings: tuple[str, ...] = ()

    def camera(self, name: str) -> CameraConfig:
        for cam in self.cameras:
            if cam.name == name:
                return cam
        raise KeyError(name)


# --- sections -------------------------------------------------------------------------------------
def _store(t: _Table) -> StoreConfig:
    out = StoreConfig(
        dir=Path(t.str("dir", str(StoreConfig.dir))).expanduser(),
        segment_mb=t.num("segment_mb", StoreConfig.segment_mb, lo=0, lo_open=True),
        segment_s=t.num("segment_s", StoreConfig.segment_s, lo=0, lo_open=True),
        commit_interval_ms=t.num("commit_interval_ms", StoreConfig.commit_interval_ms, lo=1,
                                 hi=60_000, integer=True),
        reserve_mb=t.num("reserve_mb", StoreConfig.reserve_mb, lo=0),
        queue_frames=t.num("queue_frames", StoreConfig.queue_frames, lo=1, integer=True),
        mount=Path(t.str("mount", "")).expanduser() if t.str("mount", "") else None,
    )
    if out.mount is not None and not (out.mount.is_absolute()
                                      and out.dir.is_relative_to(out.mount)):
        raise ConfigError(f"store.dir {out.dir} is not inside store.mount {out.mount} "
                          "(an absolute mount point)", key=t.path("mount"))
    t.done()
    return out


def _gpio(t: _Table) -> GpioConfig:
    backend = t.str("backend", GpioConfig.backend, choices=("lgpio", "mock"))
    bounce = t.num("bounce_ms", GpioConfig.bounce_ms, lo=0, hi=10_000)
    min_pulse = t.num("min_pulse_ms", GpioConfig.min_pulse_ms, lo=0, hi=10_000)
    default_pull_up = t.bool("pull_up", True)
    default_active_high = t.bool("active_high", not default_pull_up)
    events = t.table("events")
    lines: list[GpioLine] = []
    seen_pins: dict[int, str] = {}
    for event, spec in events.data.items():
        key = events.path(event)
        events.used.add(event)
        _name(event, key)
        if isinstance(spec, dict):
            line = _Table(spec, key)
            if "pin" not in spec:
                _missing(line.path("pin"))
            pin = line.num("pin", 0, lo=0, hi=53, integer=True)
            pull_up = line.bool("pull_up", default_pull_up)
            active_high = line.bool("active_high", not pull_up)
            line.done()
        else:
            pin = _number(spec, key, lo=0, hi=53, integer=True)
            pull_up, active_high = default_pull_up, default_active_high
        if pin in seen_pins:
            raise ConfigError(f"pin {pin} is already used by event {seen_pins[pin]!r}", key=key)
        seen_pins[pin] = event
        lines.append(GpioLine(event=event, pin=pin, pull_up=pull_up, active_high=active_high))
    t.done()
    return GpioConfig(backend=backend, bounce_ms=bounce, min_pulse_ms=min_pulse, lines=tuple(lines))


def _phases(t: _Table) -> PhasesConfig:
    triggers_t = t.table("triggers")
    if triggers_t.data:
        triggers = []
        phases_seen: set[str] = set()
        for event, phase in triggers_t.data.items():
            key = triggers_t.path(event)
            triggers_t.used.add(event)
            _name(event, key)
            if event in RESERVED_EVENTS:
                raise ConfigError(f"event {event!r} is built in and cannot start a descent phase",
                                  key=key)
            if not isinstance(phase, str) or not re.match(r"^[A-Z][A-Z0-9_]*$", phase):
                raise ConfigError(f"must be a phase name in capitals, got {phase!r}", key=key)
            if phase in FIXED_PHASES:
                raise ConfigError(f"phase {phase!r} is built in; name a descent phase", key=key)
            if phase in phases_seen:
                raise ConfigError(f"phase {phase!r} is named twice", key=key)
            phases_seen.add(phase)
            triggers.append((event, phase))
        triggers_tuple = tuple(triggers)
    else:
        triggers_tuple = PhasesConfig.triggers
    order = (SAFE, ARMED, *(p for _, p in triggers_tuple), TOUCHDOWN, LANDED)
    timeouts_t = t.table("timeouts_s")
    timeouts = []
    for phase, seconds in timeouts_t.data.items():
        key = timeouts_t.path(phase)
        timeouts_t.used.add(phase)
        if phase not in order or phase in (SAFE, LANDED):
            raise ConfigError(f"unknown phase {phase!r} "
                              f"(phases with a timer: {', '.join(order[1:-1])})", key=key)
        timeouts.append((phase, _number(seconds, key, lo=0, lo_open=True)))
    out = PhasesConfig(
        triggers=triggers_tuple,
        post_touchdown_s=t.num("post_touchdown_s", PhasesConfig.post_touchdown_s, lo=0, hi=3600),
        descent_timeout_s=t.num("descent_timeout_s", PhasesConfig.descent_timeout_s, lo=0,
                                lo_open=True),
        armed_timeout_s=t.num("armed_timeout_s", PhasesConfig.armed_timeout_s, lo=0),
        timeouts_s=tuple(timeouts),
    )
    t.done()
    return out


def _camera(t: _Table, phases: PhasesConfig, index: int) -> CameraConfig:
    """One ``[[cameras]]`` table; its parts are checked in this order (the first error wins)."""
    name = _name(t.get("name"), t.path("name")) if t.has("name") else _missing(t.path("name"))
    role = t.str("role", "down")
    backend = t.str("backend", CameraConfig.backend, choices=("picamera2", "sim"))
    size = _pixel_size(t, "size", list(CameraConfig.size))
    w, h = size
    if not (16 <= w <= 8192 and 16 <= h <= 8192) or w % 2 or h % 2:
        raise ConfigError(f"must be even sizes from 16 to 8192 pixels, got {w}x{h}",
                          key=t.path("size"))
    fps = _camera_fps(t, role, phases)
    quality = _camera_quality(t, phases)
    lores_size, lores_phases = _lores(t, phases, size)
    stills = t.get("stills", [])
    if not isinstance(stills, list) or not all(isinstance(s, str) for s in stills):
        raise ConfigError("must be a list of event names", key=t.path("stills"))
    faults = _faults(t, backend)
    pre_s = t.num("pretrigger_s", CameraConfig.pretrigger_s, lo=0, hi=600)
    pre_mb = t.num("pretrigger_mb", CameraConfig.pretrigger_mb, lo=0)
    if pre_s > 0 and pre_mb == 0:
        raise ConfigError(f"is 0 while pretrigger_s = {pre_s:g}: the ring would hold nothing "
                          f"(set pretrigger_s = 0 to turn it off)", key=t.path("pretrigger_mb"))
    armed_w, armed_h = lores_size if lores_size and ARMED in lores_phases else size
    need = smallest_jpeg_bytes(armed_w, armed_h)
    if pre_s > 0 and int(pre_mb * 1024 * 1024) < need:  # the ring's cap, as the runner makes it
        raise ConfigError(f"{pre_mb:g} MB cannot hold one ARMED frame: the smallest JPEG of "
                          f"{armed_w}x{armed_h} (a uniform frame) takes {need / 2**20:.3f} MB, so "
                          f"every ARMED frame would be lost (raise it, or set pretrigger_s = 0 to "
                          f"turn the ring off)", key=t.path("pretrigger_mb"))
    controls = _controls(t.table("controls"))
    if controls != CameraControls() and backend != "picamera2":
        raise ConfigError("camera controls are only for the picamera2 backend",
                          key=t.path("controls"))
    sensor = t.str("sensor", choices=tuple(SENSORS)) if t.has("sensor") else ""
    if sensor and backend != "picamera2":
        raise ConfigError("a sensor is only for the picamera2 backend", key=t.path("sensor"))
    out = CameraConfig(
        name=name,
        role=role,
        backend=backend,
        index=t.num("index", index, lo=0, hi=16, integer=True),
        size=size,
        jpeg_quality=t.num("jpeg_quality", CameraConfig.jpeg_quality, lo=1, hi=100, integer=True),
        pretrigger_s=pre_s,
        pretrigger_mb=pre_mb,
        fps=fps,
        encoder=t.str("encoder", CameraConfig.encoder, choices=("auto", "hardware", "software")),
        stills=tuple(stills),
        still_size=t.str("still_size", CameraConfig.still_size, choices=STILL_SIZES),
        seed=t.num("seed", index, integer=True),
        faults=faults,
        quality=quality,
        lores_size=lores_size,
        lores_phases=lores_phases,
        sim_descent_s=t.num("sim_descent_s", CameraConfig.sim_descent_s, lo=0, lo_open=True,
                            hi=86_400),
        sim_prerender=int(t.num("sim_prerender", CameraConfig.sim_prerender, lo=0, hi=256,
                                integer=True)),
        controls=controls,
        sensor=sensor,
    )
    t.done()
    _cross_check(out)
    return out


def _cross_check(cam: CameraConfig) -> None:
    """The camera's parts against each other: what each one allows alone, together, cannot fly.

    The errors name the camera (``cameras 'down': controls.exposure_max_us ...``): the mistake is in
    how its keys fit together, not in one key's value.
    """
    where = f"cameras {cam.name!r}"
    c = cam.controls
    # The sensor runs at the flight's highest rate from ARM to landing (sensor_fps), so its frame
    # period bounds every exposure: a longer cap caps nothing.
    phase, fps = max(cam.fps, key=lambda pf: pf[1])
    if c.exposure_max_us is not None and c.exposure_max_us > 1e6 / fps:
        raise ConfigError(f"controls.exposure_max_us {c.exposure_max_us} is longer than the frame "
                          f"period at {phase}'s {fps:g} fps ({1e6 / fps:.0f} us)", key=where)
    sensor = sensor_named(cam.sensor)
    if sensor is not None:
        _sensor_check(cam, sensor, where)
    if c.analogue_gain_max is not None and c.analogue_gain_max > GAIN_MAX_ANY:
        top = max(SENSORS.values(), key=lambda s: s.gain_max)
        raise ConfigError(f"controls.analogue_gain_max {c.analogue_gain_max:g} is above the "
                          f"analogue gain of every known sensor (the {top.model} tops at "
                          f"{top.gain_max:.2f})", key=where)
    if cam.still_size == "full" and cam.encoder == "hardware":
        # a mode switch while the V4L2 encoder records would feed it full-resolution buffers
        # (docs/cameras.md, picamera2_hardware)
        raise ConfigError("still_size 'full' needs a mode switch, which the hardware encoder's "
                          "recording cannot take (use still_size = 'video', or encoder = "
                          "'software' or 'auto')", key=where)
    if cam.encoder == "hardware" and not codec_fits(cam.size):
        lo, hi = CODEC_SIZE
        raise ConfigError(f"encoder 'hardware' cannot take size {cam.size[0]}x{cam.size[1]}: the "
                          f"bcm2835-codec encoder takes {lo} to {hi} pixels per side (use encoder "
                          "= 'auto' or 'software', or a smaller size)", key=where)


def _sensor_check(cam: CameraConfig, sensor: Sensor, where: str) -> None:
    """The checks that need the camera's sensor (``sensor = "imx708"``)."""
    c = cam.controls
    for key, value in (("AfMode", c.af_mode), ("LensPosition", c.lens_position)):
        if value is not None and not sensor.autofocus:
            raise ConfigError(f"controls.{key} is set but the {sensor.model} ({sensor.module}) has "
                              "no focus lens", key=where)
    if c.analogue_gain_max is not None and c.analogue_gain_max > sensor.gain_max:
        raise ConfigError(f"controls.analogue_gain_max {c.analogue_gain_max:g} is above the "
                          f"{sensor.model}'s analogue gain range (1.0 to {sensor.gain_max:.1f})",
                          key=where)
    if c.sensor_mode is None:
        return
    w, h = c.sensor_mode
    mode = sensor.mode(c.sensor_mode)
    if mode is None:
        modes = ", ".join(f"{m.size[0]}x{m.size[1]}" for m in sensor.modes)
        raise ConfigError(f"controls.sensor_mode {w}x{h} is not a mode of the {sensor.model} "
                          f"({sensor.module}: {modes})", key=where)
    phase, fps = max(cam.fps, key=lambda pf: pf[1])
    if fps > mode.fps:
        raise ConfigError(f"fps.{phase} {fps:g} is faster than the {sensor.model}'s {w}x{h} mode "
                          f"runs ({mode.fps:g} fps)", key=where)


def _segments_hold_a_frame(store: StoreConfig, cameras: tuple[CameraConfig, ...]) -> StoreConfig:
    """``store.segment_mb`` against the cameras: a segment smaller than the smallest JPEG of the
    largest video frame holds one frame at most, so every frame would open (and fsync) a file of
    its own."""
    if cameras:
        big = max(cameras, key=lambda c: c.size[0] * c.size[1])
        need = smallest_jpeg_bytes(*big.size)
        if store.segment_mb * 1024 * 1024 < need:
            raise ConfigError(f"{store.segment_mb:g} MB holds no frame of camera {big.name!r}: the "
                              f"smallest JPEG of {big.size[0]}x{big.size[1]} (a uniform frame) "
                              f"takes {need / 2**20:.3f} MB, so every frame would be a file of "
                              f"its own", key="store.segment_mb")
    return store


def smallest_jpeg_bytes(width: int, height: int) -> int:
    """The fewest bytes a baseline 4:2:0 JPEG of ``width`` x ``height`` takes: a uniform frame,
    whose every 8x8 block is a DC code and an end-of-block code (6 bits a luma block, 4 a chroma
    one with the standard Huffman tables: 4 bytes a 16x16 macroblock), at any quality. Measured:
    simplejpeg gives 33265 bytes for a uniform 1920x1080 frame at quality 1 to 100, headers
    included; this is 32400."""
    return width * height // 64


def _camera_warnings(cam: CameraConfig) -> list[str]:
    """What the camera's config leaves to chance: an autofocus lens left where it rests."""
    sensor = sensor_named(cam.sensor)
    c = cam.controls
    if sensor is None or not sensor.autofocus or c.lens_position is not None:
        return []
    if c.af_mode == "continuous":  # chosen: the lens follows the scene
        return []
    # libcamera's default AfMode is manual, and AfModeAuto "will never move the lens ... unless the
    # AfTrigger control is used" (control_ids_core.yaml); either way the lens stays at the
    # tuning's rpi.af default, 1.0 dioptre for the IMX708 (raspberrypi/libcamera
    # src/ipa/rpi/{vc4,pisp}/data/imx708.json).
    why = {None: "no focus set",
           "manual": "controls.AfMode 'manual' without controls.LensPosition",
           "auto": "controls.AfMode 'auto' moves the lens only on an AfTrigger, which camctl never "
                   "sends"}[c.af_mode]
    return [f"{why}: the {sensor.model} ({sensor.module}) lens rests at the tuning's default, "
            "1 dioptre (~1 m), so the ground is soft until the last metres; set controls.AfMode = "
            "'manual' and controls.LensPosition = 0.5 (dioptres: sharp from ~1 m to infinity)"]


def _sensor_warnings(sensors: tuple[SensorConfig, ...], motion: MotionConfig,
                     lines: set[str]) -> list[str]:
    out = [f"sensors {s.name!r}: rate_hz {s.rate_hz:g} may miss an impact's peak (a few ms long; "
           f"{IMU_RATE_WARN_HZ:g} Hz or more catches it)"
           for s in sensors if s.kind == "imu" and s.rate_hz < IMU_RATE_WARN_HZ]
    out += [f"motion.{r.event}: its GPIO line is wired but not a source (its edges change nothing)"
            for r in motion.rules if r.event in lines and "gpio" not in r.sources]
    return out


def _pixel_size(t: _Table, name: str, default: Any = None) -> tuple[int, int]:
    """``[width, height]``, two integers (not bools), at ``name``."""
    value = t.get(name, default)
    if (not isinstance(value, list) or len(value) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) for v in value)):
        raise ConfigError(f"must be [width, height] in pixels, got {value!r}", key=t.path(name))
    return value[0], value[1]


def _camera_fps(t: _Table, role: str, phases: PhasesConfig) -> tuple[tuple[str, float], ...]:
    """``[cameras.fps]`` over the role's schedule: a rate for every recording phase."""
    fps_t = t.table("fps")
    recording = phases.order[1:-1]
    if role not in ROLE_FPS:  # a free name has no schedule to fall back on: every rate is needed
        missing = [p for p in recording if p not in fps_t.data]
        if missing:
            raise ConfigError(f"unknown role {role!r} (roles with a schedule: "
                              f"{', '.join(sorted(ROLE_FPS))}); a role of your own needs "
                              f"[cameras.fps] for {', '.join(missing)}", key=t.path("role"))
    base = dict(ROLE_FPS.get(role, {}))
    for phase, value in fps_t.data.items():
        key = fps_t.path(phase)
        fps_t.used.add(phase)
        if phase not in phases.order or phase in ("SAFE", "LANDED"):
            raise ConfigError(
                f"unknown phase {phase!r} (recording phases: {', '.join(recording)})", key=key)
        base[phase] = _number(value, key, lo=0, lo_open=True, hi=240)
    return tuple((p, float(base.get(p, base.get("ARMED", 2.0)))) for p in recording)


def _camera_quality(t: _Table, phases: PhasesConfig) -> tuple[tuple[str, int], ...]:
    """``[cameras.quality]``: a JPEG quality per recording phase that has one."""
    quality_t = t.table("quality")
    recording = phases.order[1:-1]
    quality = []
    for phase, value in quality_t.data.items():
        key = quality_t.path(phase)
        quality_t.used.add(phase)
        if phase not in recording:
            raise ConfigError(f"unknown phase {phase!r} (recording phases: {', '.join(recording)})",
                              key=key)
        quality.append((phase, _number(value, key, lo=1, hi=100, integer=True)))
    return tuple(quality)


def _lores(t: _Table, phases: PhasesConfig,
           size: tuple[int, int]) -> tuple[tuple[int, int] | None, tuple[str, ...]]:
    """``lores_size`` (even, within the main ``size``) and the ``lores_phases`` that use it."""
    w, h = size
    lores_size = None
    if t.get("lores_size") is not None:
        lw, lh = _pixel_size(t, "lores_size")
        if not (16 <= lw <= w and 16 <= lh <= h):
            raise ConfigError(f"must be from 16x16 up to the main size {w}x{h}, got {lw}x{lh}",
                              key=t.path("lores_size"))
        if lw % 2 or lh % 2:  # I420 halves both axes for its chroma planes
            raise ConfigError(f"must be even sizes (4:2:0 chroma halves both), got {lw}x{lh}",
                              key=t.path("lores_size"))
        lores_size = (lw, lh)
    lores_phases = t.get("lores_phases", [])
    if not isinstance(lores_phases, list) or not all(isinstance(x, str) for x in lores_phases):
        raise ConfigError("must be a list of phase names", key=t.path("lores_phases"))
    for phase in lores_phases:
        if phase not in phases.order[1:-1]:
            raise ConfigError(f"unknown phase {phase!r}", key=t.path("lores_phases"))
    if lores_phases and lores_size is None:
        raise ConfigError("needs lores_size = [width, height]", key=t.path("lores_phases"))
    return lores_size, tuple(lores_phases)


def _faults(t: _Table, backend: str) -> tuple[tuple[str, float, float], ...]:
    """``[[cameras.faults]]``: ``(kind, at_s, duration_s)`` each, for the sim backend only."""
    faults_v = t.get("faults", [])
    faults = []
    if not isinstance(faults_v, list):
        raise ConfigError("must be an array of tables", key=t.path("faults"))
    for i, f in enumerate(faults_v):
        ft = _Table(f, f"{t.path('faults')}[{i}]")
        faults.append((ft.str("kind", choices=("stall", "exception", "disconnect", "hang")),
                       ft.num("at_s", 0.0, lo=0), ft.num("duration_s", 1.0, lo=0)))
        ft.done()
    if faults and backend != "sim":
        raise ConfigError("fault injection is only for the sim backend", key=t.path("faults"))
    return tuple(faults)


_CONTROL_KEYS = ("AfMode", "LensPosition", "exposure_max_us", "analogue_gain_max", "sensor_mode")


def _controls(t: _Table) -> CameraControls:
    """``[cameras.controls]``, every key checked (a misspelt control is an error, never ignored)."""
    known = list(_CONTROL_KEYS)
    for key in sorted(t.data):
        if key not in known:
            raise ConfigError(f"unknown control (known: {', '.join(known)})", key=t.path(key))
    af_mode = t.str("AfMode", choices=AF_MODES) if t.has("AfMode") else None
    # IPA: 0..32 dioptres
    lens = t.num("LensPosition", 0.0, lo=0, hi=32) if t.has("LensPosition") else None
    if lens is not None and af_mode not in (None, "manual"):
        raise ConfigError(f"needs AfMode = 'manual' (AfMode is {af_mode!r}: the lens would move)",
                          key=t.path("LensPosition"))
    exposure = (t.num("exposure_max_us", 0, lo=100, hi=1_000_000, integer=True)
                if t.has("exposure_max_us") else None)
    # the top is the sensor's (checked with the camera: _cross_check)
    gain = t.num("analogue_gain_max", 1.0, lo=1.0) if t.has("analogue_gain_max") else None
    mode = None
    if t.has("sensor_mode"):
        v = t.get("sensor_mode")
        if (not isinstance(v, list) or len(v) != 2
                or not all(isinstance(x, int) and not isinstance(x, bool) and 16 <= x <= 16384
                           for x in v)):
            raise ConfigError(f"must be [width, height] of a sensor mode in pixels, got {v!r}",
                              key=t.path("sensor_mode"))
        mode = (v[0], v[1])
    t.done()
    return CameraControls(af_mode=af_mode, lens_position=lens, exposure_max_us=exposure,
                          analogue_gain_max=gain, sensor_mode=mode)


def _encode(t: _Table) -> EncodeConfig:
    out = EncodeConfig(
        threads=t.num("threads", EncodeConfig.threads, lo=1, hi=64, integer=True),
        max_inflight=t.num("max_inflight", EncodeConfig.max_inflight, lo=1, hi=1024, integer=True),
    )
    t.done()
    return out


def _publish(t: _Table) -> PublishConfig:
    bind = t.str("bind", PublishConfig.bind)
    events = t.str("events", PublishConfig.events)
    for key, url in (("bind", bind), ("events", events)):
        if not re.match(r"^(tcp|ipc|inproc)://\S+$", url):
            raise ConfigError(f"must be a ZeroMQ endpoint like 'tcp://*:5555', got {url!r}",
                              key=t.path(key))
    if bind == events and not bind.endswith((":*", ":0")):  # wildcard ports are two different ports
        raise ConfigError(f"must differ from publish.bind (both {bind!r})", key=t.path("events"))
    out = PublishConfig(
        bind=bind,
        events=events,
        curve_keys=t.str("curve_keys", ""),
        serve_during_flight=t.bool("serve_during_flight", False),
        remote_events=t.bool("remote_events", False),
        chunk_kb=t.num("chunk_kb", PublishConfig.chunk_kb, lo=1, hi=4096, integer=True),
        thumbs_every=t.num("thumbs_every", PublishConfig.thumbs_every, lo=1, integer=True),
        thumbs_dense_s=t.num("thumbs_dense_s", PublishConfig.thumbs_dense_s, lo=0, hi=60),
        unsafe_remote_commands=t.bool("unsafe_remote_commands", False),
        max_connections=t.num("max_connections", PublishConfig.max_connections, lo=1, hi=10_000,
                              integer=True),
        memory_mb=t.num("memory_mb", PublishConfig.memory_mb, lo=32, hi=65_536, integer=True),
    )
    t.done()
    return out


def parse_config(data: dict[str, Any], *, source: str = "") -> Config:
    """Validate a parsed TOML document into a :class:`Config`; raise ConfigError on any problem."""
    try:
        top = _Table(data, "")
        board = _name(top.get("board"), "board") if top.has("board") else _missing("board")
        phases = _phases(top.table("phases"))
        cams_v = top.get("cameras", [])
        if not isinstance(cams_v, list):
            raise ConfigError("must be an array of tables ([[cameras]])", key="cameras")
        cameras = tuple(_camera(_Table(c, f"cameras[{i}]"), phases, i)
                        for i, c in enumerate(cams_v))
        names = [c.name for c in cameras]
        for i, n in enumerate(names):
            if n in names[:i]:
                raise ConfigError(f"camera name {n!r} is used twice", key=f"cameras[{i}].name")
            if n == "events":
                raise ConfigError("'events' is reserved for the event log",
                                  key=f"cameras[{i}].name")
        claimed: dict[int, str] = {}
        for i, cam in enumerate(cameras):
            if cam.backend != "picamera2":
                continue
            if cam.index in claimed:  # two runners would fight over one sensor
                raise ConfigError(f"camera index {cam.index} is already used by camera "
                                  f"{claimed[cam.index]!r}", key=f"cameras[{i}].index")
            claimed[cam.index] = cam.name
        gpio = _gpio(top.table("gpio"))
        known_events = {*RESERVED_EVENTS, *(e for e, _ in phases.triggers)}
        for line in gpio.lines:
            if line.event not in known_events:
                raise ConfigError(
                    f"event {line.event!r} does nothing (known: {', '.join(sorted(known_events))})",
                    key=f"gpio.events.{line.event}")
        # a still is served by the cameras running in the phase its event enters; a disarm enters
        # SAFE, where they rest and drop what is owed (counted as stills missed)
        forward = ("arm", *(e for e, _ in phases.triggers), "touchdown")
        for i, cam in enumerate(cameras):
            for ev in cam.stills:
                if ev not in known_events:
                    raise ConfigError(f"unknown event {ev!r}", key=f"cameras[{i}].stills")
                if ev not in forward:
                    raise ConfigError(f"{ev!r} stops the cameras: its still can never be taken "
                                      f"(stills are taken at {', '.join(forward)})",
                                      key=f"cameras[{i}].stills")
        sensors = parse_sensors(top.get("sensors", []), taken={*names, "events"})
        lines = {line.event for line in gpio.lines}
        motion = parse_motion(top.table("motion"), sensors=sensors, lines=lines,
                              events={*(e for e, _ in phases.triggers), "touchdown"})
        cfg = Config(
            board=board,
            store=_segments_hold_a_frame(_store(top.table("store")), cameras),
            gpio=gpio,
            phases=phases,
            cameras=cameras,
            encode=_encode(top.table("encode")),
            publish=_publish(top.table("publish")),
            sensors=sensors,
            motion=motion,
            source=source,
            warnings=tuple(f"{source + ': ' if source else ''}cameras {cam.name!r}: {w}"
                           for cam in cameras for w in _camera_warnings(cam))
            + tuple(f"{source + ': ' if source else ''}{w}"
                    for w in _sensor_warnings(sensors, motion, lines)),
        )
        top.done()
    except ConfigError as exc:
        if source and not exc.path:
            exc.path = source
        raise
    return cfg


def load_config(path: str | Path) -> Config:
    """Read and validate a TOML config file."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read config: {exc.strerror or exc}", path=str(path)) from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError(f"not UTF-8 text (byte {exc.start})", path=str(path)) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"TOML syntax error: {exc}", path=str(path)) from None
    return parse_config(data, source=str(path))
