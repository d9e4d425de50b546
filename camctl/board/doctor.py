"""`camctl doctor`: is this board ready to fly? One line per check, OK/WARN/FAIL, and the fix.

Owns the pre-flight checks of a board: Python and camctl, the config, picamera2 and the cameras it
sees (each configured camera is opened for a second at its size, flight rate, encoder and controls:
the achieved rate and whatever could not be set are reported), the GPIO stack (lgpio, the header's
gpiochip, group membership), the event lines' current levels (an arm key left on, a break-wire
already broken: read from the lines, or, while a ``camctl run`` holds them, from that daemon's
STATUS on its ROUTER port, as ``daemon.json`` beside the store names it), each ``[[sensors]]``
part (its ID register and one sample at rest: :mod:`camctl.board.doctor_sensors`), power
(``vcgencmd get_throttled``: under-voltage, throttling), the flash store (exists, on the mount it
is meant to be on, a real create+fsync+delete probe, free space against ``store.reserve_mb`` and
the flight's expected size), the clock, and the ZeroMQ ports. Every contact with the machine goes
through :class:`Probes`, so tests (and a laptop without a Pi) run the same code with fakes.

Exit status of :func:`main`: 0 when every check is OK or WARN, 1 when any check FAILs.

Example::

    >>> from camctl.board.doctor import Probes, run_checks
    >>> checks = run_checks(None, probes=Probes(import_module=_no_module))   # doctest: +SKIP
    >>> print(format_check(checks[0]))                                       # doctest: +SKIP
    OK    python: Python 3.11.2, camctl 0.1.0
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import glob as _glob
import grp
import importlib
import os
import platform
import pwd
import re
import shutil
import subprocess
import sys
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import camctl
from camctl.board.config import ARMED, SAFE, CameraConfig, Config, load_config
from camctl.board.doctor_camera import check_picamera2
from camctl.board.doctor_sensors import check_sensors, open_sensor_for_doctor
from camctl.exc import ConfigError

if TYPE_CHECKING:
    from camctl.board.cameras.base import Camera
    from camctl.board.config_sensors import SensorConfig
    from camctl.board.sensors.base import SensorDevice

__all__ = [
    "FAIL",
    "OK",
    "WARN",
    "Check",
    "Probes",
    "add_arguments",
    "config_checks",
    "format_check",
    "main",
    "run_checks",
]

OK, WARN, FAIL = "OK", "WARN", "FAIL"
HEADER_LABELS = ("pinctrl-rp1", "pinctrl-bcm2712", "pinctrl-bcm2711", "pinctrl-bcm2835")
# Bytes per pixel of a JPEG frame at quality ~85 of an outdoor scene (1080p ~ 250 kB). Used for
# sizing only.
_JPEG_BYTES_PER_PIXEL = 0.12



@dataclass(frozen=True)
class Check:
    """One line: the check's ``name``, its ``level`` OK/WARN/FAIL, what was found, how to fix it."""

    name: str
    level: str
    detail: str
    fix: str = ""


def format_check(check: Check) -> str:
    """``LEVEL name: detail`` plus an indented ``fix:`` line when there is something to do."""
    line = f"{check.level:<5} {check.name}: {check.detail}"
    if check.fix and check.level != OK:
        line += f"\n      fix: {check.fix}"
    return line


# --- probes: everything that touches the machine --------------------------------------------------
def _read_text(path: str) -> str | None:
    try:
        return Path(path).read_text(errors="replace")
    except OSError:
        return None


def _run(argv: list[str]) -> subprocess.CompletedProcess[str] | None:
    """Run a short query command; None when it does not exist or hangs."""
    if shutil.which(argv[0]) is None:
        return None
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None


def _adjtimex_state() -> int | None:
    """adjtimex(2), modes=0 (read only): the clock state, 5 (TIME_ERROR) when not synchronised."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        buf = ctypes.create_string_buffer(512)  # struct timex is ~208 bytes; modes=0 at offset 0
        state = libc.adjtimex(buf)
    except (OSError, AttributeError):
        return None
    return None if state < 0 else int(state)


def _user_groups() -> tuple[str, set[str]]:
    name = pwd.getpwuid(os.getuid()).pw_name
    groups = set()
    for gid in {os.getgid(), *os.getgroups()}:
        with contextlib.suppress(KeyError):
            groups.add(grp.getgrgid(gid).gr_name)
    return name, groups


def _disk_free_mb(path: Path) -> float:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize / 1e6


def _write_probe(directory: Path) -> None:
    """Create, write, fsync, close, delete a probe file and fsync the directory; raises OSError."""
    probe = directory / f".camctl-doctor-{uuid.uuid4().hex}"
    fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, b"camctl doctor probe\n" * 64)
        os.fsync(fd)
    finally:
        os.close(fd)
        try:
            os.unlink(probe)
        finally:
            dfd = os.open(directory, os.O_RDONLY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)


def _line_levels(cfg: Config) -> dict[str, bool]:
    """The configured event lines' levels now (True: active); CamctlError if they cannot be read."""
    from camctl.board.commands import read_mock_levels
    from camctl.board.gpio import EventLines
    from camctl.board.pin_env import env_pin_factory

    if cfg.gpio.backend == "mock":  # the mock board's lines: what `camctl arm --hold` left held
        held = read_mock_levels(cfg.store.dir)
        return {line.event: held.get(line.event, False) for line in cfg.gpio.lines}
    factory = env_pin_factory(cfg.gpio)  # a test rig's (camctl.board.pin_env), else the config's
    try:
        with EventLines(cfg.gpio, lambda *_: None, pin_factory=factory) as lines:
            return lines.levels()
    finally:
        if factory is not None:
            factory.close()


def _mounts() -> list[tuple[str, str, str]]:
    """(device, mount point, fs type) of each mount in /proc/self/mounts, octal escapes decoded."""
    out = []
    text = _read_text("/proc/self/mounts") or ""
    for row in text.splitlines():
        parts = row.split()
        if len(parts) >= 3:
            dev, point, fstype = (re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), x)
                                  for x in parts[:3])
            out.append((dev, point, fstype))
    return out


def _running_daemon(store_dir: Path) -> dict | None:
    from camctl.board.daemon import running_daemon

    return running_daemon(store_dir)


def _local_endpoint(endpoint: str) -> str:
    """A bound ROUTER endpoint as this machine connects to it (a wildcard bind is loopback)."""
    return re.sub(r"^tcp://(0\.0\.0\.0|\*|\[::\]|\[\*\])(?=:\d+$)",
                  lambda m: "tcp://[::1]" if "[" in m.group(1) else "tcp://127.0.0.1", endpoint)


def _daemon_status(info: dict, cfg: Config, *, timeout_s: float = 5.0) -> dict:
    """The running daemon's STATUS (``info``: its ``daemon.json``), asked on its ROUTER port as the
    protocol says (docs/protocol.md; the board does not import the ground's client); with CURVE on
    (``publish.curve_keys``), as the board itself: its own key pair, which the board lets read
    (``camctl.common.keys.AllowList``). RemoteError for an ERROR reply, TimeoutError for none
    (a board that refused the key says nothing either)."""
    import zmq

    from camctl.common import protocol as p
    from camctl.common.keys import ClientCurve, load_server_curve, use_curve
    from camctl.exc import RemoteError

    url = _local_endpoint(str(info["router"]))
    ctx = zmq.Context()
    try:
        sock = ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        if cfg.publish.curve_keys:
            own = load_server_curve(cfg.publish.curve_keys)
            use_curve(sock, ClientCurve(public=own.public, secret=own.secret,
                                        server_public=own.public))
        try:
            sock.connect(url)
            sock.send_multipart(p.Status(id=1).encode())
            if not sock.poll(int(timeout_s * 1000)):
                raise TimeoutError(f"no STATUS reply from {url} in {timeout_s:g} s")
            reply = p.decode(sock.recv_multipart(), allowed=p.REPLIES)
        finally:
            sock.close(0)
    finally:
        ctx.term()
    if isinstance(reply, p.Error):
        raise RemoteError(url, reply.code, reply.message)
    if not isinstance(reply, p.State):
        raise RemoteError(url, "BAD_REPLY", f"expected STATE, got {type(reply).__name__}")
    return reply.status


def _bind_zmq(endpoint: str) -> None:
    """Bind and close a ZeroMQ socket on ``endpoint``: raises an exception naming the problem."""
    import zmq

    ctx = zmq.Context()
    try:
        sock = ctx.socket(zmq.PUB)
        sock.setsockopt(zmq.LINGER, 0)
        try:
            sock.bind(endpoint)
        finally:
            sock.close(0)
    finally:
        ctx.term()


def _make_camera(cfg: CameraConfig) -> Camera:
    from camctl.board.cameras import make_camera

    return make_camera(cfg)


@dataclass
class Probes:
    """The machine as doctor sees it. Replace any field in tests; defaults touch the real system."""

    import_module: Callable[[str], ModuleType] = importlib.import_module
    read_text: Callable[[str], str | None] = _read_text
    glob: Callable[[str], list[str]] = field(default=lambda pattern: sorted(_glob.glob(pattern)))
    realpath: Callable[[str], str] = os.path.realpath
    access: Callable[[str, int], bool] = os.access
    run: Callable[[list[str]], Any] = _run
    adjtimex_state: Callable[[], int | None] = _adjtimex_state
    user_groups: Callable[[], tuple[str, set[str]]] = _user_groups
    disk_free_mb: Callable[[Path], float] = _disk_free_mb
    write_probe: Callable[[Path], None] = _write_probe
    bind: Callable[[str], None] = _bind_zmq
    is_dir: Callable[[Path], bool] = field(default=lambda p: p.is_dir())
    line_levels: Callable[[Config], dict[str, bool]] = _line_levels
    mounts: Callable[[], list[tuple[str, str, str]]] = _mounts
    running_daemon: Callable[[Path], dict | None] = _running_daemon
    daemon_status: Callable[[dict, Config], dict] = _daemon_status
    # built closed, as the daemon builds it
    make_camera: Callable[[CameraConfig], Camera] = _make_camera
    camera_seconds: float = 1.0  # how long each camera is run for its rate
    # a [[sensors]] table's device, unopened (camctl.board.sensors.open_sensor; sim: no scene)
    open_sensor: Callable[[SensorConfig], SensorDevice] = open_sensor_for_doctor
    sensor_seconds: float = 0.5  # how long doctor waits for a sensor's first sample


# --- checks ---------------------------------------------------------------------------------------
def _check_python() -> Check:
    version = platform.python_version()
    return Check("python", OK, f"Python {version} ({sys.executable}), camctl {camctl.__version__}")


def _chip_labels(probes: Probes) -> dict[str, str]:
    """gpiochipN -> label from /sys/bus/gpio/devices/*/label, or /sys/class/gpio/gpiochip*/label."""
    labels: dict[str, str] = {}
    for path in probes.glob("/sys/bus/gpio/devices/gpiochip*"):
        text = probes.read_text(f"{path}/label")
        if text:
            labels[Path(path).name] = text.strip("\0\n ")
    if labels:
        return labels
    # named by base; 'device' points at gpiochipN
    for path in probes.glob("/sys/class/gpio/gpiochip*"):
        text = probes.read_text(f"{path}/label")
        chip = Path(probes.realpath(f"{path}/device")).name
        if text and chip.startswith("gpiochip"):
            labels[chip] = text.strip("\0\n ")
    return labels


def _check_gpio(cfg: Config | None, probes: Probes) -> list[Check]:
    if cfg is not None and cfg.gpio.backend == "mock":
        return [Check("gpio", OK, "backend 'mock': no GPIO hardware used")]
    checks: list[Check] = []
    try:
        probes.import_module("lgpio")
        checks.append(Check("lgpio", OK, "importable"))
    except ImportError as exc:
        checks.append(Check("lgpio", FAIL, f"cannot import lgpio ({exc})",
                            "sudo apt install python3-lgpio (venv with --system-site-packages)"))
    model = ((probes.read_text("/proc/device-tree/model") or "").strip("\0\n ")
             or "unknown (not a Pi?)")
    chips = [Path(p).name for p in probes.glob("/dev/gpiochip*")]
    if not chips:
        checks.append(Check("gpiochip", FAIL, f"no /dev/gpiochip* on {model}",
                            "this is not a Pi, or the GPIO driver is missing: "
                            "use [gpio] backend = \"mock\" off the rig"))
        return checks
    labels = _chip_labels(probes)
    header = next((chip for chip, label in sorted(labels.items()) if label in HEADER_LABELS), None)
    # gpiozero's LGPIOFactory opens gpiochip4 on a Pi 5 when it exists (older kernels), else
    # gpiochip0.
    opened = "gpiochip4" if "Raspberry Pi 5" in model and "gpiochip4" in chips else "gpiochip0"
    opened_real = Path(probes.realpath(f"/dev/{opened}")).name
    if header is None:
        seen = ", ".join(f"{c}={labels[c]}" for c in sorted(labels)) or "no labels readable"
        checks.append(Check("gpiochip", WARN, f"{model}: header controller not identified "
                                              f"({seen}); gpiozero will open /dev/{opened}",
                            "check with `gpiodetect` that the header is on that chip "
                            "(pinctrl-rp1 on a Pi 5, pinctrl-bcm2711 on a Pi 4)"))
    elif opened_real != header:
        checks.append(Check("gpiochip", FAIL, f"{model}: the header is /dev/{header} "
                                              f"({labels[header]}) "
                                              f"but gpiozero will open /dev/{opened}",
                            "update gpiozero/lgpio and the kernel together (apt full-upgrade), "
                            "or add the udev symlink "
                            f"/dev/gpiochip4 -> {header} (raspberrypi-sys-mods)"))
    else:
        checks.append(Check("gpiochip", OK, f"{model}: header on /dev/{header} ({labels[header]})"))
    target = header or opened
    if not probes.access(f"/dev/{target}", os.R_OK | os.W_OK):
        user, _ = probes.user_groups()
        checks.append(Check("gpiochip access", FAIL,
                            f"/dev/{target} is not readable+writable by {user}",
                            f"sudo usermod -aG gpio {user} (then log in again)"))
    return checks


def _check_lines(cfg: Config, probes: Probes) -> list[Check]:
    """An arm key left on in SAFE arms nothing (a level is not an edge) and a broken break-wire
    fires nothing: both mean the board will not do what the operator expects on the pad. The levels
    are the running daemon's when one holds the lines (its STATUS), else read from the lines."""
    if not cfg.gpio.lines:
        return [Check("lines", OK,
                      "no event lines configured: the board arms and triggers by command only")]
    held = probes.running_daemon(cfg.store.dir)
    phase: str | None = None
    if held is not None:
        who = f"the running camctl (pid {held.get('pid')})"
        try:
            st = probes.daemon_status(held, cfg)
            levels = {str(e): bool(v) for e, v in (st.get("lines") or {}).items()}
            phase = str(st.get("phase") or "?")
        except Exception as exc:  # BoardTimeout, KeyRejected, ...: report, never crash the doctor
            return [Check("lines", WARN, f"{who} holds the event lines and did not answer STATUS "
                                         f"on {held.get('router')}: {exc}",
                          "is it stuck? journalctl -u camctl; "
                          f"camctl status --connect {held.get('router')}")]
        source = f"from the running camctl (pid {held.get('pid')}, phase {phase})"
    else:
        try:
            levels = probes.line_levels(cfg)
        except Exception as exc:  # GpioError, lgpio.error: report, never crash the doctor
            return [Check("lines", WARN, f"cannot read the event lines: {exc}",
                          "is another program holding them? (gpioinfo shows the consumer)")]
        source = "read from the lines"
    pins = {line.event: line.pin for line in cfg.gpio.lines}

    def level(event: str, active: bool) -> str:
        if event == "arm":
            return "on" if active else "off"
        return "ACTIVE" if active else "at rest"

    shown = " ".join(f"{e}=BCM{pins.get(e, '?')} {level(e, a)}" for e, a in levels.items())
    warnings = []
    if levels.get("arm") and phase in (None, SAFE):
        where = "" if phase is None else " while the board is SAFE"
        warnings.append(Check("lines", WARN,
                              f"the arm key is ON (arm, BCM{pins['arm']}, active){where}: "
                              "the daemon does not arm on a level, only on an edge",
                              "turn the arm key off (and on again on the pad to arm)"))
    if phase in (None, SAFE, ARMED):  # in flight the trigger lines have fired: as they should
        for event, active in levels.items():
            if active and event not in ("arm", "disarm"):
                what = ("switch already closed" if event == "touchdown"
                        else "break-wire already broken")
                warnings.append(Check("lines", WARN,
                                      f"{event} (BCM{pins.get(event, '?')}) is active now: {what}",
                                      f"check the {event} wiring and its connector; "
                                      f"the line must be at rest before arming"))
    if not warnings and phase is None:
        return [Check("lines", OK, f"every event line at rest ({shown}), {source}")]
    return [Check("lines", OK, f"{shown}, {source}"), *warnings]


# vcgencmd get_throttled bits, from the Raspberry Pi documentation (raspberrypi/documentation,
# documentation/asciidoc/computers/os/graphics-utilities.adoc, "get_throttled";
# https://www.raspberrypi.com/documentation/computers/os.html#get_throttled).
THROTTLED_NOW = {0: "undervoltage detected", 1: "Arm frequency capped", 2: "currently throttled",
                 3: "soft temperature limit active"}
THROTTLED_SINCE_BOOT = {16: "undervoltage has occurred", 17: "Arm frequency capping has occurred",
                        18: "throttling has occurred", 19: "soft temperature limit has occurred"}


def _check_power(probes: Probes) -> list[Check]:
    result = probes.run(["vcgencmd", "get_throttled"])
    if result is None:
        return []  # not a Pi (or no vcgencmd): nothing to report
    match = re.search(r"throttled=(0x[0-9a-fA-F]+|\d+)", getattr(result, "stdout", "") or "")
    if getattr(result, "returncode", 1) != 0 or match is None:
        stderr = (result.stderr or "").strip()
        return [Check("power", WARN, f"vcgencmd get_throttled gave no answer ({stderr})",
                      "sudo usermod -aG video USER (vcgencmd needs /dev/vcio)")]
    value = int(match.group(1), 0)
    now = [text for bit, text in THROTTLED_NOW.items() if value >> bit & 1]
    since = [text for bit, text in THROTTLED_SINCE_BOOT.items() if value >> bit & 1]
    fix = ("use the specified supply and a short, thick cable (hardware/power.md); "
           "under-voltage during a flight browns out cameras and the SSD")
    if value & 1:
        return [Check("power", FAIL, f"throttled={match.group(1)}: {', '.join(now + since)}", fix)]
    if now or since:
        return [Check("power", WARN, f"throttled={match.group(1)}: {', '.join(now + since)}"
                                     f"{' (since boot)' if not now else ''}", fix)]
    return [Check("power", OK, "vcgencmd get_throttled: no under-voltage or throttling since boot")]


def _mount_of(path: str, points: list[str]) -> str:
    """The longest mount point that contains ``path`` (both absolute, normalised)."""
    best = "/"
    for point in points:
        if (path == point or path.startswith(point.rstrip("/") + "/")) and len(point) > len(best):
            best = point
    return best


def _check_mount(cfg: Config, probes: Probes) -> list[Check]:
    """store.dir must be on the mount the config means (store.mount, else its /etc/fstab entry):
    with the SSD missing, the bare mount point is a folder on the SD card that would silently fill
    up."""
    directory = probes.realpath(str(cfg.store.dir))
    mounts = probes.mounts()
    actual = _mount_of(directory, [m[1] for m in mounts])
    device = next((f"{m[0]} ({m[2]})" for m in reversed(mounts) if m[1] == actual), "?")
    if cfg.store.mount is not None:
        intended, source = probes.realpath(str(cfg.store.mount)), "store.mount"
    else:
        fstab = [row.split()[1] for row in (probes.read_text("/etc/fstab") or "").splitlines()
                 if row.strip() and not row.lstrip().startswith("#") and len(row.split()) >= 3
                 and row.split()[1].startswith("/")]
        intended, source = _mount_of(directory, fstab), "/etc/fstab"
        if intended == "/":
            return [Check("mount", OK, f"{cfg.store.dir} is on {actual}: {device}")]
    if actual == intended:
        return [Check("mount", OK, f"{cfg.store.dir} is on {actual} as {source} says: {device}")]
    return [Check("mount", FAIL, f"{cfg.store.dir} is on {actual} ({device}), "
                                 f"not on {intended} as {source} says: "
                                 f"the disk is not mounted, flights would fill {actual}",
                  f"plug the disk in and `sudo mount {intended}` (lsblk shows it); "
                  "camctl install-service makes the service wait for it (RequiresMountsFor=)")]


def _check_groups(probes: Probes) -> Check:
    user, groups = probes.user_groups()
    if user == "root":
        return Check("groups", WARN,
                     "running as root: device access is not representative of the service",
                     "run doctor as the service user: sudo -u camctl camctl doctor --config FILE")
    missing = [g for g in ("video", "gpio") if g not in groups]
    if missing:
        return Check("groups", FAIL, f"user {user} is not in group(s) {', '.join(missing)}",
                     f"sudo usermod -aG {','.join(missing)} {user} (then log in again)")
    return Check("groups", OK, f"user {user} is in video and gpio")


def _flight_mb(cfg: Config) -> float:
    """MB one flight may write: every camera at its fastest descent rate for descent_timeout_s."""
    total = 0.0
    for cam in cfg.cameras:
        rate = max((fps for phase, fps in cam.fps if phase != "ARMED"), default=0.0)
        frame_mb = cam.size[0] * cam.size[1] * _JPEG_BYTES_PER_PIXEL * (cam.jpeg_quality / 85) / 1e6
        total += frame_mb * (rate * cfg.phases.descent_timeout_s + cam.pretrigger_s * rate)
    return total


def _check_store(cfg: Config, probes: Probes) -> list[Check]:
    directory = cfg.store.dir
    if not probes.is_dir(directory):
        return [Check("store", FAIL, f"{directory} does not exist",
                      f"sudo install -d -o camctl -g camctl -m 0750 {directory} "
                      "(mount the SSD first if it is on one)")]
    try:
        probes.write_probe(directory)
    except OSError as exc:
        user, _ = probes.user_groups()
        return [Check("store", FAIL,
                      f"{directory} is not writable by {user}: {exc.strerror or exc}",
                      f"sudo chown -R camctl:camctl {directory} "
                      "(and check it is not mounted read-only)")]
    checks = [Check("store", OK, f"{directory} writable (create + fsync + delete)")]
    try:
        free = probes.disk_free_mb(directory)
    except OSError as exc:
        return [*checks, Check("disk", FAIL, f"statvfs({directory}) failed: {exc}")]
    need = _flight_mb(cfg)
    reserve = cfg.store.reserve_mb
    detail = (f"{free:.0f} MB free; reserve {reserve:.0f} MB; a flight at the configured rates for "
              f"descent_timeout_s={cfg.phases.descent_timeout_s:g} writes up to ~{need:.0f} MB")
    if free < reserve:
        checks.append(Check("disk", FAIL, detail, "free space below store.reserve_mb: "
                                                  f"fetch and delete old flights from {directory}"))
    elif free - reserve < need:
        checks.append(Check("disk", WARN, detail,
                            "the quota policy will drop idle-rate frames first; "
                            "fetch and delete old flights or use a bigger disk"))
    else:
        checks.append(Check("disk", OK, detail))
    return checks


def _check_clock(probes: Probes) -> Check:
    fix = ("enable chrony (hardware/timesync.md); "
           "unsynchronised boards are still aligned on the shared release edge")
    result = probes.run(["timedatectl", "show", "-p", "NTPSynchronized", "--value"])
    if result is not None and result.returncode == 0 and result.stdout.strip() in ("yes", "no"):
        if result.stdout.strip() == "yes":
            return Check("clock", OK, "synchronised (timedatectl NTPSynchronized=yes)")
        return Check("clock", WARN, "not synchronised (timedatectl NTPSynchronized=no)", fix)
    state = probes.adjtimex_state()
    if state is not None:
        if state != 5:
            return Check("clock", OK, f"synchronised (adjtimex state {state})")
        return Check("clock", WARN, "not synchronised (adjtimex TIME_ERROR)", fix)
    result = probes.run(["chronyc", "tracking"])
    if result is not None and result.returncode == 0:
        leap = re.search(r"Leap status\s*:\s*(.+)", result.stdout)
        if leap and leap.group(1).strip() == "Normal":
            return Check("clock", OK, "synchronised (chronyc tracking: Leap status Normal)")
        status = leap.group(1).strip() if leap else "no leap status"
        return Check("clock", WARN, f"chronyc tracking: {status}", fix)
    return Check("clock", WARN, "synchronisation unknown (no timedatectl, adjtimex or chronyc)",
                 fix)


def _check_ports(cfg: Config, probes: Probes) -> list[Check]:
    checks = []
    service_active: bool | None = None
    endpoints = (("publish.bind", cfg.publish.bind), ("publish.events", cfg.publish.events))
    for key, endpoint in endpoints:
        try:
            probes.bind(endpoint)
        except Exception as exc:  # zmq.ZMQError and friends: report, never crash the doctor
            if service_active is None:
                result = probes.run(["systemctl", "is-active", "--quiet", "camctl"])
                service_active = result is not None and result.returncode == 0
            if service_active:
                checks.append(Check("port", OK,
                                    f"{key} {endpoint} is held by the running camctl service"))
            else:
                port = endpoint.rsplit(":", 1)[-1]
                checks.append(Check("port", FAIL, f"cannot bind {key} {endpoint}: {exc}",
                                    f"another process holds it (ss -ltnp | grep {port}); "
                                    f"stop it or change {key}"))
        else:
            checks.append(Check("port", OK, f"{key} {endpoint} bindable"))
    return checks


def _check_remote(cfg: Config) -> Check:
    """Who may fetch from and COMMAND this board over the network: on real GPIO lines without
    CURVE, anyone who reaches its ports (docs/protocol.md, Security)."""
    pub = cfg.publish
    fix = (f"camctl keys DIR --board {cfg.board}, copy DIR/{cfg.board} to this board and set "
           "publish.curve_keys to it (docs/keys.md)")
    if cfg.gpio.backend == "mock":
        return Check("remote", OK, "mock GPIO lines: COMMAND arm/disarm/event accepted "
                                   "(they are this rig's wiring)")
    if not pub.curve_keys:
        if pub.unsafe_remote_commands:
            return Check("remote", WARN, "CURVE is off and publish.unsafe_remote_commands = true: "
                                         f"anyone who reaches {pub.bind} can arm, disarm or end "
                                         "a flight of this board", fix)
        return Check("remote", WARN, f"CURVE is off on real GPIO lines: anyone who reaches "
                                     f"{pub.bind} can fetch this board's flights (COMMAND arm, "
                                     "disarm and event are refused)", fix)
    from camctl.common.keys import load_server_curve

    try:
        keys = load_server_curve(pub.curve_keys)
    except (ConfigError, OSError) as exc:
        return Check("remote", FAIL, f"publish.curve_keys: {exc}", fix)
    operators = sorted(keys.operators_dir.glob("*.key")) if keys.operators_dir.is_dir() else []
    if not operators:
        return Check("remote", WARN, f"CURVE on, but no operator key in {keys.operators_dir}: no "
                                     "one can arm or disarm this board over the network",
                     "camctl keys makes DIR/<board>/operators/client.key")
    return Check("remote", OK, f"CURVE on, {len(operators)} operator key(s)")


def config_checks(config_path: Path | None) -> tuple[Config | None, list[Check]]:
    """The config (None without a valid one) and its checks: loaded, and each of its warnings."""
    if config_path is None:
        return None, [Check("config", WARN, "no --config given: checking the defaults",
                            "camctl doctor --config /etc/camctl/camctl.toml")]
    try:
        cfg = load_config(config_path)
    except ConfigError as exc:
        return None, [Check("config", FAIL, str(exc), f"camctl config check {config_path}")]
    checks = [Check("config", OK, f"{config_path}: board {cfg.board!r}, "
                                  f"{len(cfg.cameras)} camera(s), "
                                  f"gpio backend {cfg.gpio.backend!r}")]
    checks += [Check("config", WARN, warning) for warning in cfg.warnings]
    return cfg, checks


def run_checks(config_path: Path | None, *, probes: Probes | None = None) -> list[Check]:
    """Every check in order; without a (valid) config, camctl.board.config's defaults apply."""
    probes = probes or Probes()
    checks = [_check_python()]
    cfg, found = config_checks(config_path)
    checks += found
    effective = cfg if cfg is not None else Config(board="default")
    checks += check_picamera2(cfg, probes)
    checks += _check_gpio(cfg, probes)
    if cfg is not None:
        checks += _check_lines(cfg, probes)
    checks += check_sensors(cfg, probes)
    checks += _check_power(probes)
    checks.append(_check_groups(probes))
    checks += _check_mount(effective, probes)
    checks += _check_store(effective, probes)
    checks.append(_check_clock(probes))
    checks += _check_ports(effective, probes)
    checks.append(_check_remote(effective))
    return checks


# --- CLI ------------------------------------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add doctor's options to ``parser`` (the CLI owner calls this for the subcommand)."""
    parser.add_argument("--config", type=Path, default=None, metavar="FILE",
                        help="the board's config")


def main(args: argparse.Namespace, *, probes: Probes | None = None) -> int:
    """Print one line per check; 0 when nothing FAILs, 1 otherwise."""
    checks = run_checks(args.config, probes=probes)
    for check in checks:
        print(format_check(check))
    failed = sum(c.level == FAIL for c in checks)
    warned = sum(c.level == WARN for c in checks)
    print(f"{len(checks)} checks: {failed} FAIL, {warned} WARN")
    return 1 if failed else 0
