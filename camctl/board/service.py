"""`camctl install-service`: the systemd unit and how it gets onto a board.

Owns the unit text (:data:`UNIT_TEMPLATE`; ``systemd/camctl.service`` in the repository is
:func:`render_unit` with the defaults, and a test keeps the two identical) and
:func:`install_service`, which writes the unit, validates and copies the config, creates the system
user and enables the service. Every side effect goes through one list of actions, so ``--dry-run``
prints exactly what a real run does.

Example::

    >>> actions = install_service(unit_dir=Path("/tmp/units"), config_src=None,
    ...                           venv=Path("/opt/camctl/venv"), dry_run=True)  # doctest: +SKIP
    >>> print("\\n".join(actions))                                               # doctest: +SKIP
"""

from __future__ import annotations

import argparse
import os
import pwd
import shlex
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from camctl.board.config import load_config
from camctl.exc import ConfigError, InstallError

__all__ = [
    "UNIT_NAME",
    "UNIT_TEMPLATE",
    "add_arguments",
    "install_service",
    "main",
    "render_unit",
]

UNIT_NAME = "camctl.service"
DEFAULT_VENV = Path("/opt/camctl/venv")
DEFAULT_CONFIG = Path("/etc/camctl/camctl.toml")
DEFAULT_UNIT_DIR = Path("/etc/systemd/system")
DEFAULT_USER = "camctl"
STATE_DIR = Path("/var/lib/camctl")

# The one source of the unit. {exec_start}, {user}, {config} are filled by render_unit(); braces
# that systemd needs literally would have to be doubled (there are none).
UNIT_TEMPLATE = """\
# camctl: one EDL camera daemon per Raspberry Pi board. Installed by `camctl install-service`; local
# changes go in `systemctl edit camctl` (a drop-in), so a re-install does not lose them. Check a
# change with `systemd-analyze verify` and `systemd-analyze security`.

[Unit]
Description=camctl EDL camera daemon (arm, buffer, record to flash, serve after touchdown)
# No After=network-online.target / time-sync.target on purpose: a rig in a field may have no network
# and no time source, and must still record. Events carry monotonic and wall-clock times; the ground
# aligns boards on the shared release edge (hardware/timesync.md).
After=local-fs.target
# DeviceAllow=char-<group> only resolves groups whose driver is loaded when the unit starts: load
# the V4L2 core (video4linux) and media controller (media) first. Harmless if they are built in.
Wants=modprobe@videodev.service modprobe@mc.service
After=modprobe@videodev.service modprobe@mc.service
# Never give up restarting during a flight: RestartSec bounds the loop rate instead of a start
# limit.
StartLimitIntervalSec=0

[Service]
# Type=notify: "started" means cameras open, GPIO lines claimed, store writable (the daemon sends
# READY=1), not merely "process forked". Only the main process may notify (libcamera IPA helpers may
# not).
Type=notify
NotifyAccess=main
ExecStart={exec_start}
# The daemon sends WATCHDOG=1 every WatchdogSec/2 from its event loop; a hung event path is killed
# (SIGABRT, core in the journal) and restarted. A stalled camera alone does not stop the pings.
WatchdogSec=10s
Restart=on-failure
RestartSec=2s
# SIGTERM to the main process only (KillMode=mixed): the daemon finishes its open segments, fsyncs
# and stops its own helpers; whatever is left after TimeoutStopSec gets SIGKILL. 20 s covers a final
# group commit on a slow microSD with margin; segments are recoverable even if it is exceeded.
KillSignal=SIGTERM
KillMode=mixed
TimeoutStopSec=20s
# Last to be chosen by the OOM killer: losing the camera daemon loses the flight.
OOMScoreAdjust=-500
# The network side (ZeroMQ sockets, previews, the catalog) runs in a child process
# (camctl.board.publish.process) that lowers its own limits as it starts: 1024 open files,
# publish.memory_mb of data memory (RLIMIT_DATA), nice 10 and oom_score_adj 1000, so under memory
# pressure it goes first; the daemon restarts it on the same ports. One unit on purpose: the child
# lives and dies with the daemon, and the sim and the tests run the very same code path. The
# capture process's own open-file limit stays high: no connection can take the store's fds.
LimitNOFILE=8192
Environment=PYTHONUNBUFFERED=1

# A dedicated unprivileged user; video (cameras, dma heaps) and gpio (/dev/gpiochip*) give device
# access.
User={user}
Group={user}
SupplementaryGroups=video gpio
# The daemon needs no capabilities at all (ports 5555/5556 are unprivileged).
CapabilityBoundingSet=
AmbientCapabilities=
# lgpio creates its notification pipe (.lgd-nfy*) in the current directory: it must be writable.
WorkingDirectory=/var/lib/camctl
# Creates /var/lib/camctl owned by the service user before start (and fixes its ownership).
StateDirectory=camctl
UMask=0027

# --- hardening: each line is a thing the daemon never needs ---------------------------------------
# The whole file system is read-only for the daemon...
ProtectSystem=strict
# ...except the flight store. A store on a USB SSD elsewhere needs its own line in a drop-in, e.g.
# ReadWritePaths=/mnt/ssd/camctl (store.dir in {config}).
ReadWritePaths=/var/lib/camctl
# No setuid escalation, ever (also implied by an empty capability set, stated for clarity).
NoNewPrivileges=yes
# A private /tmp: nothing is shared with other services through it.
PrivateTmp=yes
# Home directories are invisible: the daemon reads only its config and writes only its store.
ProtectHome=yes
# /proc/sys, /sys and friends read-only: libcamera and the doctor read sysfs, nothing writes it.
ProtectKernelTunables=yes
# The cgroup tree is read-only.
ProtectControlGroups=yes
# No module loading (modprobe@ above runs as root, outside this sandbox) and no kernel log access.
ProtectKernelModules=yes
ProtectKernelLogs=yes
# AF_UNIX: journald and the sd_notify socket; AF_INET/AF_INET6: ZeroMQ fetch and events;
# AF_NETLINK: libudev device enumeration in libcamera and interface lookup in ZeroMQ. Nothing else.
RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_NETLINK
# No new namespaces, no realtime scheduling, no setuid/setgid files, native syscalls only.
RestrictNamespaces=yes
RestrictRealtime=yes
RestrictSUIDSGID=yes
SystemCallArchitectures=native
# personality(2) is locked (no switching to a legacy execution domain).
LockPersonality=yes
# The daemon never sets the clock or the hostname (timesync is chrony's: hardware/timesync.md).
ProtectClock=yes
ProtectHostname=yes
# MemoryDenyWriteExecute is OFF on purpose. numpy and simplejpeg do not JIT and would tolerate it,
# but the rest of the process is not proven: ctypes/libffi closures (used by GPIO and camera
# helpers) may need W+X trampolines on some libffi builds, and libcamera loads IPA modules whose
# builds we do not control. A seccomp kill in flight is worse than the protection. Turn it on in a
# drop-in after a bench drop with it.
MemoryDenyWriteExecute=no

# --- devices --------------------------------------------------------------------------------------
# DevicePolicy=closed: only the pseudo devices (/dev/null, /dev/zero, /dev/urandom...) plus the
# groups below. libcamera fails ("Permission denied" / no cameras) unless ALL of them are allowed:
# it opens the sensor subdevices, the CSI receiver and ISP video nodes, the media controller graph
# and allocates buffers from dma heaps. Globs are not allowed in DeviceAllow paths, so these are
# /proc/devices group names, which also cover devices that appear after start (a re-seated ribbon):
#   char-video4linux  /dev/video* (unicam/CFE, ISP, Pi 4 JPEG encoder),
#                     /dev/v4l-subdev* (sensors)
#   char-media        /dev/media* (the media controller graphs libcamera walks)
#   char-dma_heap     /dev/dma_heap/* (frame buffers)
#   char-gpiochip     /dev/gpiochip* (lgpio: the arm/release/separation/touchdown lines)
# PrivateDevices=yes is NOT used: it would hide all of these.
DevicePolicy=closed
DeviceAllow=char-video4linux rw
DeviceAllow=char-media rw
DeviceAllow=char-dma_heap rw
DeviceAllow=char-gpiochip rw

[Install]
WantedBy=multi-user.target
"""


def render_store_dropin(store_dir: Path) -> str:
    """A drop-in letting the sandboxed daemon write a store outside /var/lib/camctl (a USB SSD).

    RequiresMountsFor= orders the service after the mount and keeps it from starting on the bare
    mount point (which would silently fill the SD card instead of the SSD).
    """
    return ("# Written by camctl install-service: "
            "the store (store.dir) is outside the StateDirectory.\n"
            "[Unit]\n"
            f"RequiresMountsFor={store_dir}\n\n"
            "[Service]\n"
            f"ReadWritePaths={store_dir}\n")


def render_i2c_dropin() -> str:
    """A drop-in giving the sandboxed daemon the I2C bus, for a config with real sensors.

    ``/dev/i2c-*`` belong to group ``i2c`` on Raspberry Pi OS (raspberrypi-sys-mods' udev rule);
    their char major's name in /proc/devices is ``i2c`` (drivers/i2c/i2c-dev.c registers
    "i2c"), which DeviceAllow= resolves only once i2c-dev is loaded: hence the modprobe unit. A
    drop-in, not the unit itself: SupplementaryGroups= naming a group a machine lacks stops the
    unit from starting, and a camera-only board needs neither.
    """
    return ("# Written by camctl install-service: the config has I2C sensors ([[sensors]]).\n"
            "[Unit]\n"
            "Wants=modprobe@i2c_dev.service\n"
            "After=modprobe@i2c_dev.service\n\n"
            "[Service]\n"
            "SupplementaryGroups=i2c\n"
            "DeviceAllow=char-i2c rw\n")


def render_unit(*, exec_path: Path | str = DEFAULT_VENV / "bin" / "camctl",
                config: Path | str = DEFAULT_CONFIG, user: str = DEFAULT_USER) -> str:
    """The unit text: ExecStart = ``exec_path run --config config``, User/Group = ``user``."""
    exec_start = shlex.join([str(exec_path), "run", "--config", str(config)])
    return UNIT_TEMPLATE.format(exec_start=exec_start, user=user, config=config)


@dataclass
class _Action:
    text: str
    do: Callable[[], Any]


def _user_exists(user: str) -> bool:
    try:
        pwd.getpwnam(user)
    except KeyError:
        return False
    return True


def _run_checked(run: Callable[..., Any], argv: list[str]) -> None:
    result = run(argv, check=False)
    code = getattr(result, "returncode", 0)
    if code:
        raise InstallError(f"command failed with exit status {code}: {shlex.join(argv)}")


def _write_atomic(path: Path, data: bytes, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def install_service(*, unit_dir: Path = DEFAULT_UNIT_DIR, config_src: Path | None,
                    config_dest: Path = DEFAULT_CONFIG, venv: Path, user: str = DEFAULT_USER,
                    dry_run: bool = False, force: bool = False, enable: bool = True,
                    run: Callable[..., Any] = subprocess.run,
                    user_exists: Callable[[str], bool] = _user_exists) -> list[str]:
    """Install the unit for ``venv``'s camctl and return the actions taken (or, with ``dry_run``,
    planned).

    Order: validate the config (any error raises before anything is touched), write
    ``unit_dir/camctl.service``, copy the config to ``config_dest`` (refused when it exists and
    differs, unless ``force``), ``useradd --system --groups video,gpio`` if ``user`` is missing,
    ``systemctl daemon-reload`` and (if ``enable``) ``systemctl enable camctl.service``.
    """
    venv, config_dest, unit_dir = Path(venv), Path(config_dest), Path(unit_dir)
    exec_path = venv / "bin" / "camctl"
    if not dry_run and not os.access(exec_path, os.X_OK):
        raise InstallError(f"no executable camctl at {exec_path} (is --venv {venv} the right "
                           f"virtualenv?)")
    actions: list[_Action] = []
    new_config: bytes | None = None
    store_dir: Path | None = None
    i2c = False
    if config_src is not None:
        config_src = Path(config_src)
        store_dir, new_config, i2c = _read_config(config_src, config_dest, force=force)
    elif not config_dest.exists():
        actions.append(_Action(f"warning: no config at {config_dest}; the service will not start "
                               "until one is installed (camctl install-service --config FILE)",
                               lambda: None))
    unit_path = unit_dir / UNIT_NAME
    unit_text = render_unit(exec_path=exec_path, config=config_dest, user=user)
    actions.append(_Action(f"write {unit_path} (ExecStart={exec_path} run --config {config_dest})",
                           lambda: _write_atomic(unit_path, unit_text.encode())))
    if new_config is not None:
        assert config_src is not None
        actions += _config_actions(config_src, config_dest, new_config)
    dropin_actions, outside = _store_actions(unit_dir, store_dir)
    actions += dropin_actions
    actions += _i2c_actions(unit_dir, i2c, config_known=new_config is not None)
    actions += _user_actions(user, outside, run=run, user_exists=user_exists, i2c=i2c)
    actions += _systemctl_actions(enable, run=run)
    if not dry_run:
        for action in actions:
            action.do()
    return [a.text for a in actions]


def _read_config(config_src: Path, config_dest: Path, *,
                 force: bool) -> tuple[Path, bytes, bool]:
    """The store folder and bytes of the config to install, validated, and whether it has sensors
    on I2C; InstallError when it would overwrite a different config without ``force``."""
    cfg = load_config(config_src)  # raises ConfigError naming the file and key
    new_config = config_src.read_bytes()
    if config_dest.exists() and config_dest.read_bytes() != new_config and not force:
        raise InstallError(f"{config_dest} exists and differs from {config_src}; "
                           "pass --force to overwrite it (the old file is kept as .bak)")
    return cfg.store.dir, new_config, any(s.backend != "sim" for s in cfg.sensors)


def _i2c_actions(unit_dir: Path, i2c: bool, *, config_known: bool) -> list[_Action]:
    """The I2C drop-in for a config with real sensors (or its removal when it has none now)."""
    dropin = unit_dir / f"{UNIT_NAME}.d" / "20-i2c.conf"
    if i2c:
        text = render_i2c_dropin()
        return [_Action(f"write {dropin} (group i2c, DeviceAllow=char-i2c: the config's sensors)",
                        lambda: _write_atomic(dropin, text.encode()))]
    if config_known and dropin.exists():
        return [_Action(f"remove {dropin} (the config has no I2C sensors)",
                        lambda: dropin.unlink(missing_ok=True))]
    return []


def _config_actions(config_src: Path, config_dest: Path, new_config: bytes) -> list[_Action]:
    """Keep an identical config; else back up the old one (if any) and copy the new one."""
    if config_dest.exists() and config_dest.read_bytes() == new_config:
        return [_Action(f"keep {config_dest} (identical to {config_src})", lambda: None)]
    actions: list[_Action] = []
    if config_dest.exists():
        backup = config_dest.with_name(config_dest.name + ".bak")
        actions.append(_Action(f"back up {config_dest} to {backup}",
                               lambda: shutil.copy2(config_dest, backup)))
    actions.append(_Action(f"copy {config_src} to {config_dest}",
                           lambda: _write_atomic(config_dest, new_config)))
    return actions


def _store_actions(unit_dir: Path, store_dir: Path | None) -> tuple[list[_Action], Path | None]:
    """The drop-in that lets the unit write a store outside :data:`STATE_DIR` (or its removal
    when the store moved back), and that outside folder (None when there is none)."""
    dropin = unit_dir / f"{UNIT_NAME}.d" / "10-store.conf"
    outside = None
    if store_dir is not None and not store_dir.is_relative_to(STATE_DIR):
        outside = store_dir
    if outside is not None:
        if any(c.isspace() for c in str(outside)):
            raise InstallError(f"store.dir {str(outside)!r} contains whitespace; systemd's "
                               "ReadWritePaths cannot name it: choose a path without spaces")
        text = render_store_dropin(outside)
        return [_Action(f"write {dropin} (ReadWritePaths={outside}, RequiresMountsFor={outside})",
                        lambda: _write_atomic(dropin, text.encode()))], outside
    if store_dir is not None and dropin.exists():
        return [_Action(f"remove {dropin} (store.dir is under {STATE_DIR} again)",
                        lambda: dropin.unlink(missing_ok=True))], None
    return [], None


def _user_actions(user: str, outside: Path | None, *, run: Callable[..., Any],
                  user_exists: Callable[[str], bool], i2c: bool = False) -> list[_Action]:
    """The system user (created when missing; in group i2c too for I2C sensors) and the store
    folder outside STATE_DIR it owns."""
    groups = "video,gpio,i2c" if i2c else "video,gpio"
    if user_exists(user):
        actions = [_Action(f"keep existing user {user}", lambda: None)]
        if i2c:
            mod_argv = ["usermod", "--append", "--groups", "i2c", user]
            actions.append(_Action(shlex.join(mod_argv), lambda: _run_checked(run, mod_argv)))
    else:
        argv = ["useradd", "--system", "--user-group", "--groups", groups, "--home-dir",
                str(STATE_DIR), "--no-create-home", "--shell", "/usr/sbin/nologin", user]
        actions = [_Action(shlex.join(argv), lambda: _run_checked(run, argv))]
    if outside is not None:
        mk_argv = ["install", "-d", "-o", user, "-g", user, "-m", "0750", str(outside)]
        actions.append(_Action(shlex.join(mk_argv), lambda: _run_checked(run, mk_argv)))
    return actions


def _systemctl_actions(enable: bool, *, run: Callable[..., Any]) -> list[_Action]:
    argvs = [["systemctl", "daemon-reload"]]
    if enable:
        argvs.append(["systemctl", "enable", UNIT_NAME])
    return [_Action(shlex.join(argv), lambda argv=argv: _run_checked(run, argv)) for argv in argvs]


# --- CLI ------------------------------------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add install-service's options to ``parser`` (the CLI owner calls this for the subcommand)."""
    parser.add_argument("--config", type=Path, default=None, metavar="FILE",
                        help=f"config to validate and install as {DEFAULT_CONFIG}")
    parser.add_argument("--venv", type=Path, default=None, metavar="DIR",
                        help="virtualenv holding camctl (default: the one running this command)")
    parser.add_argument("--user", default=DEFAULT_USER, help="service user (created if missing)")
    parser.add_argument("--unit-dir", type=Path, default=DEFAULT_UNIT_DIR, help=argparse.SUPPRESS)
    parser.add_argument("--config-dest", type=Path, default=DEFAULT_CONFIG, help=argparse.SUPPRESS)
    parser.add_argument("--force", action="store_true",
                        help="overwrite an existing, different config")
    parser.add_argument("--no-enable", dest="enable", action="store_false",
                        help="write and reload but do not enable the service")
    parser.add_argument("--dry-run", action="store_true",
                        help="print what would be done, do nothing")


def main(args: argparse.Namespace) -> int:
    """Run install-service from parsed arguments; print each action. 0 ok, 2 when it cannot be done
    (a bad config, a config that would be overwritten, a failing command or path): camctl.cli's
    exit-code rule."""
    venv = args.venv if args.venv is not None else Path(sys.prefix)
    try:
        actions = install_service(unit_dir=args.unit_dir, config_src=args.config,
                                  config_dest=args.config_dest, venv=venv, user=args.user,
                                  dry_run=args.dry_run, force=args.force, enable=args.enable)
    except ConfigError as exc:
        print(f"camctl install-service: {exc}", file=sys.stderr)
        return 2
    except (InstallError, OSError) as exc:
        print(f"camctl install-service: {exc}", file=sys.stderr)
        return 2
    prefix = "would: " if args.dry_run else ""
    for line in actions:
        print(f"{prefix}{line}")
    if not args.dry_run and args.enable:
        print("then: sudo systemctl start camctl && journalctl -u camctl -f")
    return 0
