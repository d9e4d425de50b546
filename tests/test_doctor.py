"""camctl doctor with injected probes: a healthy fake Pi 5, then one thing broken at a time.

The store checks use real directories in tmp (real create + fsync + delete); the port check binds
real ZeroMQ sockets on loopback.
"""

from __future__ import annotations

import argparse
import functools
import os
import socket
import stat
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import ClassVar

import pytest

from camctl.board.cameras import make_camera
from camctl.board.doctor import FAIL, OK, WARN, Check, Probes, add_arguments, main, run_checks
from camctl.common.keys import create_keys
from camctl.testing.picamera2_double import FakeRig


@pytest.fixture
def strict_rig() -> FakeRig:
    """Cameras for the doctor to open: the strict picamera2 double (two IMX708s); pass it to
    :func:`healthy` as ``rig=``."""
    return FakeRig(cameras=2)


class FakePicamera2:
    cameras: ClassVar[list[dict]] = [{"Model": "imx708", "Num": 0}, {"Model": "imx296", "Num": 1}]

    @classmethod
    def global_camera_info(cls) -> list[dict]:
        return cls.cameras


def _importer(missing: dict[str, str] | None = None):
    missing = missing or {}

    def import_module(name: str) -> ModuleType:
        if name in missing:
            raise ModuleNotFoundError(f"No module named {missing[name]!r}", name=missing[name])
        mod = ModuleType(name)
        mod.Picamera2 = FakePicamera2  # type: ignore[attr-defined]
        return mod
    return import_module


PI5 = {
    "/proc/device-tree/model": "Raspberry Pi 5 Model B Rev 1.0\0",
    "/sys/bus/gpio/devices/gpiochip0/label": "pinctrl-rp1\n",
    "/sys/bus/gpio/devices/gpiochip10/label": "gpio-brcmstb@107d508500\n",
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def healthy(*, rig: FakeRig | None = None, **overrides) -> Probes:
    """A healthy Pi 5 whose cameras are ``rig``'s (a fresh two-camera double unless given): the
    camera probe opens them through ``make_camera(..., picamera2=rig.module)``."""
    rig = FakeRig(cameras=2) if rig is None else rig
    files = dict(PI5)
    globs = {"/sys/bus/gpio/devices/gpiochip*": ["/sys/bus/gpio/devices/gpiochip0",
                                                 "/sys/bus/gpio/devices/gpiochip10"],
             "/dev/gpiochip*": ["/dev/gpiochip0", "/dev/gpiochip10", "/dev/gpiochip4"]}
    probes = Probes(
        import_module=_importer(),
        read_text=files.get,
        glob=lambda pattern: globs.get(pattern, []),
        realpath=lambda p: "/dev/gpiochip0" if p == "/dev/gpiochip4" else p,
        access=lambda path, mode: True,
        run=lambda argv: (SimpleNamespace(returncode=0, stdout="yes\n")
                          if argv[0] == "timedatectl" else None),
        adjtimex_state=lambda: 0,
        user_groups=lambda: ("camctl", {"camctl", "video", "gpio"}),
        disk_free_mb=lambda path: 100_000.0,
        make_camera=functools.partial(make_camera, picamera2=rig.module),
        camera_seconds=0.2,
    )
    for key, value in overrides.items():
        setattr(probes, key, value)
    return probes


@pytest.fixture
def config(tmp_path: Path):
    store = tmp_path / "store"
    store.mkdir()
    path = tmp_path / "rig.toml"

    keys = tmp_path / "keys"

    def write(*, store_dir: Path = store, backend: str = "picamera2", indexes=(0, 1),
              gpio: str = "lgpio", reserve_mb: int = 512, curve: bool = True,
              publish: str = "") -> Path:
        cams = "".join(f'[[cameras]]\nname = "cam{i}"\nbackend = "{backend}"\nindex = {i}\n'
                       for i in indexes)
        if curve and not keys.exists():
            create_keys(keys, boards=["rig-a"])
        curve_keys = f'curve_keys = "{keys / "rig-a"}"\n' if curve else ""
        path.write_text(f'board = "rig-a"\n[store]\ndir = "{store_dir}"\n'
                        f'reserve_mb = {reserve_mb}\n[gpio]\nbackend = "{gpio}"\n'
                        f'[publish]\nbind = "tcp://127.0.0.1:{_free_port()}"\n'
                        f'events = "tcp://127.0.0.1:{_free_port()}"\n{curve_keys}{publish}{cams}')
        return path
    write.store = store
    return write


def _by_name(checks: list[Check]) -> dict[str, Check]:
    out: dict[str, Check] = {}
    for c in checks:
        out.setdefault(c.name, c) if c.level == OK else out.__setitem__(c.name, c)
    return out


def test_healthy_board_is_all_ok(config) -> None:
    checks = run_checks(config(), probes=healthy())
    assert [c for c in checks if c.level != OK] == []
    names = _by_name(checks)
    assert "imx708" in names["cameras"].detail
    assert "gpiochip0 (pinctrl-rp1)" in names["gpiochip"].detail
    assert "writable" in names["store"].detail


def test_missing_picamera2_fails_with_the_apt_hint(config) -> None:
    probes = healthy(import_module=_importer({"picamera2": "picamera2"}))
    check = _by_name(run_checks(config(), probes=probes))["picamera2"]
    assert check.level == FAIL
    assert ("sudo apt install python3-picamera2" in check.fix
            and "--system-site-packages" in check.fix)


def test_pip_picamera2_without_libcamera_says_so(config) -> None:
    probes = healthy(import_module=_importer({"picamera2": "libcamera"}))
    check = _by_name(run_checks(config(), probes=probes))["picamera2"]
    assert (check.level == FAIL and "libcamera" in check.detail
            and "pip uninstall picamera2" in check.fix)


def test_missing_picamera2_is_fine_for_sim_cameras(config) -> None:
    probes = healthy(import_module=_importer({"picamera2": "picamera2"}))
    assert _by_name(run_checks(config(backend="sim"), probes=probes))["picamera2"].level == OK


def test_configured_camera_index_not_detected_fails(config) -> None:
    checks = _by_name(run_checks(config(indexes=(0, 1, 2)), probes=healthy()))
    assert checks["cameras"].level == FAIL and "2 (cam2)" in checks["cameras"].detail


def test_writable_tmp_store_is_ok_and_leaves_nothing_behind(config) -> None:
    checks = _by_name(run_checks(config(), probes=healthy()))
    assert checks["store"].level == OK
    assert list(config.store.iterdir()) == []


def test_unwritable_store_fails_for_real(config) -> None:
    # A real directory that refuses the real probe: a read-only-mode dir for a normal user; for root
    # (CI), which ignores mode bits, /proc, where nobody can create a file.
    if os.geteuid() != 0:
        config.store.chmod(stat.S_IRUSR | stat.S_IXUSR)
        target = config.store
    else:
        target = Path("/proc")
    try:
        check = _by_name(run_checks(config(store_dir=target), probes=healthy()))["store"]
    finally:
        config.store.chmod(0o755)
    assert check.level == FAIL and str(target) in check.detail and "not writable" in check.detail


def test_unwritable_store_fails(config, tmp_path: Path) -> None:
    # Root (as in CI) may write anywhere, so a "directory" that is really a regular file makes the
    # real create+fsync+delete probe fail for everyone: os.open(<file>/probe) raises
    # NotADirectoryError.
    not_a_dir = tmp_path / "file-not-dir"
    not_a_dir.write_text("x")
    probes = healthy(is_dir=lambda p: True)
    check = _by_name(run_checks(config(store_dir=not_a_dir), probes=probes))["store"]
    assert check.level == FAIL and "not writable" in check.detail and "chown" in check.fix


def test_missing_store_fails(config, tmp_path: Path) -> None:
    check = _by_name(run_checks(config(store_dir=tmp_path / "absent"), probes=healthy()))["store"]
    assert check.level == FAIL and "does not exist" in check.detail and "install -d" in check.fix


def test_disk_below_reserve_fails_and_tight_disk_warns(config) -> None:
    low = _by_name(run_checks(config(reserve_mb=512), probes=healthy(disk_free_mb=lambda p: 100.0)))
    assert low["disk"].level == FAIL
    tight = _by_name(run_checks(config(reserve_mb=512),
                                probes=healthy(disk_free_mb=lambda p: 600.0)))
    assert tight["disk"].level == WARN and "writes up to" in tight["disk"].detail


def test_gpio_problems(config) -> None:
    no_lgpio = _by_name(run_checks(config(),
                                   probes=healthy(import_module=_importer({"lgpio": "lgpio"}))))
    assert no_lgpio["lgpio"].level == FAIL and "python3-lgpio" in no_lgpio["lgpio"].fix
    no_chip = _by_name(run_checks(config(), probes=healthy(glob=lambda pattern: [])))
    assert no_chip["gpiochip"].level == FAIL
    denied = _by_name(run_checks(config(), probes=healthy(access=lambda path, mode: False)))
    access = denied["gpiochip access"]
    assert access.level == FAIL and "usermod -aG gpio" in access.fix
    # old-kernel Pi 5: gpiochip4 is the real rp1 chip and gpiozero opens it: OK; if it were a
    # different chip than the header, doctor must say so
    wrong = healthy(realpath=lambda p: p)  # /dev/gpiochip4 is not a symlink to the header chip
    assert _by_name(run_checks(config(), probes=wrong))["gpiochip"].level == FAIL
    mock = _by_name(run_checks(config(gpio="mock"),
                               probes=healthy(import_module=_importer({"lgpio": "x"}))))
    assert mock["gpio"].level == OK and "lgpio" not in mock


def test_groups(config) -> None:
    probes = healthy(user_groups=lambda: ("pi", {"pi", "video"}))
    check = _by_name(run_checks(config(), probes=probes))["groups"]
    assert check.level == FAIL and "gpio" in check.detail and "usermod -aG gpio pi" in check.fix


def test_clock_fallbacks(config) -> None:
    no_td = {"run": lambda argv: None}
    clock = _by_name(run_checks(config(), probes=healthy(**no_td)))["clock"]
    assert clock.detail.startswith("synchronised")
    unsynced = _by_name(run_checks(config(),
                                   probes=healthy(**no_td, adjtimex_state=lambda: 5)))["clock"]
    assert unsynced.level == WARN
    chrony = SimpleNamespace(returncode=0,
                             stdout="Reference ID : 0A000001\nLeap status     : Normal\n")
    probes = healthy(run=lambda argv: chrony if argv[0] == "chronyc" else None,
                     adjtimex_state=lambda: None)
    assert _by_name(run_checks(config(), probes=probes))["clock"].level == OK


def test_port_in_use_fails(config) -> None:
    import zmq

    path = config()
    text = path.read_text()
    ctx = zmq.Context()
    holder = ctx.socket(zmq.PUB)
    holder.setsockopt(zmq.LINGER, 0)
    port = holder.bind_to_random_port("tcp://127.0.0.1")
    try:
        bind = text.split('bind = "')[1].split('"')[0]
        path.write_text(text.replace(bind, f"tcp://127.0.0.1:{port}"))
        checks = [c for c in run_checks(path, probes=healthy()) if c.name == "port"]
        assert [c.level for c in checks] == [FAIL, OK]
        assert str(port) in checks[0].detail
    finally:
        holder.close(0)
        ctx.term()


def test_invalid_config_fails_and_checks_go_on(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('board = "rig-a"\n[gpio.events]\nrelease = 99\n')
    checks = run_checks(bad, probes=healthy(is_dir=lambda p: False))
    config_check = _by_name(checks)["config"]
    assert config_check.level == FAIL and "gpio.events.release" in config_check.detail
    assert {c.name for c in checks} >= {"store", "clock", "port"}


def test_main_exit_codes(config, capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    assert main(parser.parse_args(["--config", str(config())]), probes=healthy()) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].startswith("OK    python: Python")
    probes = healthy(import_module=_importer({"picamera2": "picamera2"}))
    assert main(parser.parse_args(["--config", str(config())]), probes=probes) == 1
    out = capsys.readouterr().out
    assert "FAIL  picamera2" in out and "fix: sudo apt install python3-picamera2" in out


# --- event lines, power, the store's mount --------------------------------------------------------
def _lines_config(tmp_path: Path, *, gpio: str = "mock", extra_store: str = "") -> Path:
    store = tmp_path / "store"
    store.mkdir(exist_ok=True)
    path = tmp_path / "lines.toml"
    path.write_text(f'board = "rig-a"\n[store]\ndir = "{store}"\n{extra_store}'
                    f'[gpio]\nbackend = "{gpio}"\n'
                    f'[gpio.events]\narm = 17\nrelease = 27\ntouchdown = 23\n[publish]\n'
                    f'bind = "tcp://127.0.0.1:{_free_port()}"\n'
                    f'events = "tcp://127.0.0.1:{_free_port()}"\n')
    return path


def test_an_arm_key_left_on_and_a_broken_break_wire_are_warned(tmp_path: Path) -> None:
    import json

    from camctl.board.commands import MOCK_LINES

    path = _lines_config(tmp_path)
    lines = [c for c in run_checks(path, probes=healthy()) if c.name == "lines"]
    assert [c.level for c in lines] == [OK] and "at rest" in lines[0].detail
    # the mock board's held levels, as `camctl arm --hold` and `camctl event release --hold`
    # leave them
    (tmp_path / "store" / MOCK_LINES).write_text(json.dumps({"arm": True, "release": True}))
    lines = [c for c in run_checks(path, probes=healthy()) if c.name == "lines"]
    assert [c.level for c in lines] == [OK, WARN, WARN], lines
    assert "arm=BCM17 on release=BCM27 ACTIVE touchdown=BCM23 at rest" in lines[0].detail
    assert "arm key is ON" in lines[1].detail and "BCM17" in lines[1].detail
    assert "release (BCM27)" in lines[2].detail and "break-wire already broken" in lines[2].detail


def test_real_lines_that_cannot_be_read_are_a_warning_not_a_crash(tmp_path: Path) -> None:
    path = _lines_config(tmp_path, gpio="lgpio")  # not a Pi: the real probe fails
    lines = [c for c in run_checks(path, probes=healthy(running_daemon=lambda d: None))
             if c.name == "lines"]
    assert [c.level for c in lines] == [WARN] and "cannot read the event lines" in lines[0].detail
    touch = healthy(line_levels=lambda cfg: {"arm": False, "release": False, "touchdown": True},
                    running_daemon=lambda d: None)
    lines = [c for c in run_checks(path, probes=touch) if c.name == "lines"]
    assert [c.level for c in lines] == [OK, WARN] and "switch already closed" in lines[1].detail



@pytest.mark.parametrize(("bound", "asked"), [
    ("tcp://0.0.0.0:5555", "tcp://127.0.0.1:5555"), ("tcp://[::]:5555", "tcp://[::1]:5555"),
    ("tcp://127.0.0.1:40001", "tcp://127.0.0.1:40001"), ("tcp://rig-a:5555", "tcp://rig-a:5555"),
    ("ipc:///run/camctl/router", "ipc:///run/camctl/router")])
def test_doctor_asks_a_wildcard_bound_daemon_on_loopback(bound: str, asked: str) -> None:
    from camctl.board.doctor import _local_endpoint

    assert _local_endpoint(bound) == asked


def test_lines_held_by_a_running_daemon_are_read_from_its_status(tmp_path: Path) -> None:
    path = _lines_config(tmp_path, gpio="lgpio")
    daemon = {"pid": 4242, "router": "tcp://0.0.0.0:5555"}
    asked: list[str] = []

    def status(phase: str, **levels: int):
        def ask(info: dict, cfg) -> dict:
            asked.append(info["router"])
            return {"phase": phase, "lines": levels}
        return ask

    def lines_of(probes: Probes) -> list[Check]:
        return [c for c in run_checks(path, probes=probes) if c.name == "lines"]

    def never(cfg):
        raise AssertionError("the daemon holds the lines: doctor must not open them")

    on_in_safe = healthy(running_daemon=lambda d: daemon, line_levels=never,
                         daemon_status=status("SAFE", arm=1, release=0, touchdown=0))
    lines = lines_of(on_in_safe)
    assert [c.level for c in lines] == [OK, WARN], lines
    assert "from the running camctl (pid 4242, phase SAFE)" in lines[0].detail
    assert "arm=BCM17 on release=BCM27 at rest touchdown=BCM23 at rest" in lines[0].detail
    assert "arm key is ON" in lines[1].detail and "SAFE" in lines[1].detail
    assert asked == ["tcp://0.0.0.0:5555"]
    # in flight the key and the break-wire are where they should be
    lines = lines_of(healthy(running_daemon=lambda d: daemon, line_levels=never,
                             daemon_status=status("DESCENT", arm=1, release=1, touchdown=0)))
    assert [c.level for c in lines] == [OK] and "release=BCM27 ACTIVE" in lines[0].detail
    # a broken break-wire on a SAFE board is warned as without a daemon
    lines = lines_of(healthy(running_daemon=lambda d: daemon, line_levels=never,
                             daemon_status=status("SAFE", arm=0, release=1, touchdown=0)))
    assert [c.level for c in lines] == [OK, WARN] and "break-wire" in lines[1].detail

    def silent(info: dict, cfg) -> dict:
        raise TimeoutError("no reply")

    lines = lines_of(healthy(running_daemon=lambda d: daemon, line_levels=never,
                             daemon_status=silent))
    assert [c.level for c in lines] == [WARN], lines
    assert "pid 4242" in lines[0].detail and "no reply" in lines[0].detail


@pytest.mark.parametrize(("value", "level", "words"), [
    ("0x0", OK, "no under-voltage"),
    ("0x50000", WARN, "undervoltage has occurred, throttling has occurred (since boot)"),
    ("0x50005", FAIL, "undervoltage detected, currently throttled, undervoltage has occurred"),
    ("0x80008", WARN, "soft temperature limit active, soft temperature limit has occurred"),
])
def test_vcgencmd_get_throttled_bits(config, value: str, level: str, words: str) -> None:
    def run(argv: list[str]):
        if argv[:2] == ["vcgencmd", "get_throttled"]:
            return SimpleNamespace(returncode=0, stdout=f"throttled={value}\n", stderr="")
        return SimpleNamespace(returncode=0, stdout="yes\n") if argv[0] == "timedatectl" else None

    power = [c for c in run_checks(config(), probes=healthy(run=run)) if c.name == "power"]
    assert [c.level for c in power] == [level] and words in power[0].detail, power


def test_no_vcgencmd_no_power_line(config) -> None:
    assert not [c for c in run_checks(config(), probes=healthy()) if c.name == "power"]


def test_the_store_on_the_bare_mount_point_fails(tmp_path: Path) -> None:
    ssd = tmp_path / "ssd"
    (ssd / "camctl").mkdir(parents=True)
    path = tmp_path / "rig.toml"
    path.write_text(f'board = "rig-a"\n[store]\ndir = "{ssd / "camctl"}"\n'
                    '[gpio]\nbackend = "mock"\n')
    fstab = {"/etc/fstab": f"# comment\nUUID=abc  {ssd}  ext4  defaults,nofail  0 2\n"
                           "proc /proc proc defaults 0 0\n"}
    bare = healthy(read_text=lambda p: fstab.get(p, PI5.get(p)),
                   mounts=lambda: [("/dev/mmcblk0p2", "/", "ext4")])
    mount = next(c for c in run_checks(path, probes=bare) if c.name == "mount")
    assert mount.level == FAIL and f"not on {ssd} as /etc/fstab says" in mount.detail, mount
    assert "/dev/mmcblk0p2" in mount.detail
    mounted = healthy(read_text=lambda p: fstab.get(p, PI5.get(p)),
                      mounts=lambda: [("/dev/mmcblk0p2", "/", "ext4"),
                                      ("/dev/sda1", str(ssd), "ext4")])
    mount = next(c for c in run_checks(path, probes=mounted) if c.name == "mount")
    assert mount.level == OK and "/dev/sda1" in mount.detail
    # store.mount in the config says the same without fstab
    path.write_text(f'board = "rig-a"\n[store]\ndir = "{ssd / "camctl"}"\nmount = "{ssd}"\n'
                    '[gpio]\nbackend = "mock"\n')
    root_only = healthy(mounts=lambda: [("/dev/root", "/", "ext4")])
    mount = next(c for c in run_checks(path, probes=root_only) if c.name == "mount")
    assert mount.level == FAIL and "as store.mount says" in mount.detail


def test_store_mount_must_contain_store_dir(tmp_path: Path) -> None:
    from camctl.board.config import parse_config
    from camctl.exc import ConfigError

    with pytest.raises(ConfigError, match=r"store\.mount"):
        parse_config({"board": "b", "store": {"dir": "/srv/camctl", "mount": "/mnt/ssd"}})
    cfg = parse_config({"board": "b", "store": {"dir": "/mnt/ssd/c", "mount": "/mnt/ssd"}})
    assert cfg.store.mount == Path("/mnt/ssd")


# --- the camera probe: each configured camera opened on the strict double -------------------------
def _camera_config(tmp_path: Path, extra: str = "", encoder: str = "software") -> Path:
    path = tmp_path / "cams.toml"
    store = tmp_path / "store"
    store.mkdir(exist_ok=True)
    path.write_text(f'board = "rig-a"\n[store]\ndir = "{store}"\nreserve_mb = 1\n'
                    '[gpio]\nbackend = "lgpio"\n'
                    f'[publish]\nbind = "tcp://127.0.0.1:{_free_port()}"\n'
                    f'events = "tcp://127.0.0.1:{_free_port()}"\n'
                    '[[cameras]]\nname = "down"\nindex = 0\nsize = [320, 240]\n'
                    f'encoder = "{encoder}"\n'
                    '[cameras.fps]\nARMED = 1\nDESCENT = 30\nSEPARATION = 30\n'
                    f'TOUCHDOWN = 30\n{extra}')
    return path


def test_camera_probe_reports_the_achieved_rate(tmp_path, strict_rig) -> None:
    checks = run_checks(_camera_config(tmp_path), probes=healthy(rig=strict_rig))
    check = _by_name(checks)["camera down"]
    assert check.level == OK, check
    assert check.detail.startswith("320x240 at 30 fps, encoder software, sensor mode 1536x864: ")
    achieved = float(check.detail.split(": sensor ")[1].split(" fps")[0])
    assert achieved == pytest.approx(30, abs=1.5)  # from sensor timestamps, not the wall clock
    assert strict_rig.instances[-1].camera_config["controls"]["FrameRate"] == 30.0


def test_camera_probe_warns_about_what_it_could_not_set(tmp_path) -> None:
    rig = FakeRig(cameras=2, lens=False, model="imx477")  # an HQ camera: no focus lens
    rig.max_fps = 20.0  # and a sensor mode slower than the flight
    extra = '[cameras.controls]\nAfMode = "manual"\nLensPosition = 0.0\n'
    checks = run_checks(_camera_config(tmp_path, extra), probes=healthy(rig=rig))
    check = _by_name(checks)["camera down"]
    assert check.level == WARN
    assert "could not set AfMode: not advertised by camera 0 (no focus lens)" in check.detail
    assert "could not set LensPosition" in check.detail
    assert "of 30 fps" in check.detail and "sensor_mode" in check.fix


def test_camera_probe_fails_a_dead_camera_and_an_impossible_encoder(tmp_path, strict_rig) -> None:
    strict_rig.unplug()
    checks = run_checks(_camera_config(tmp_path), probes=healthy(rig=strict_rig))
    check = _by_name(checks)["camera down"]
    assert check.level == FAIL and "no frame within 1 s" in check.detail
    strict_rig.stalled = False
    checks = run_checks(_camera_config(tmp_path, encoder="hardware"),
                        probes=healthy(rig=strict_rig))
    check = _by_name(checks)["camera down"]
    assert check.level == FAIL and "encoder 'hardware' requested but" in check.detail


def test_camera_probe_checks_the_exposure_and_gain_caps_against_the_frames(tmp_path,
                                                                           strict_rig) -> None:
    extra = '[cameras.controls]\nexposure_max_us = 4000\nanalogue_gain_max = 2.0\n'
    checks = run_checks(_camera_config(tmp_path, extra), probes=healthy(rig=strict_rig))
    check = _by_name(checks)["camera down"]
    assert check.level == OK, check  # the capped tuning held: the frames say so
    strict_rig.has_tuning = False  # no tuning file for this sensor: the caps cannot be applied
    checks = run_checks(_camera_config(tmp_path, extra), probes=healthy(rig=strict_rig))
    check = _by_name(checks)["camera down"]
    assert check.level == WARN
    assert "could not set exposure_max_us/analogue_gain_max: no tuning for 'imx708'" in check.detail
    assert "exposures up to 30000 us, over exposure_max_us = 4000" in check.detail
    assert "analogue gain up to 6, over analogue_gain_max = 2" in check.detail


@pytest.mark.parametrize("encoder", ["software", "hardware"])
def test_camera_probe_measures_the_sensor_rate_on_either_encoder_path(tmp_path, encoder) -> None:
    rig = FakeRig(cameras=2, hardware_jpeg=True)
    rig.max_fps = 20.0  # the sensor mode cannot reach the flight's 30 fps
    checks = run_checks(_camera_config(tmp_path, encoder=encoder), probes=healthy(rig=rig))
    check = _by_name(checks)["camera down"]
    assert check.detail.startswith(f"320x240 at 30 fps, encoder {encoder}, sensor mode ")
    achieved = float(check.detail.split(": sensor ")[1].split(" fps")[0])
    assert achieved == pytest.approx(20, abs=1)  # MJPEG frames carry only the nominal duration
    assert check.level == WARN and "only 20.0 of 30 fps" in check.detail, check


@pytest.mark.parametrize("encoder", ["software", "hardware"])
def test_camera_probe_checks_the_caps_on_either_encoder_path(tmp_path, encoder) -> None:
    rig = FakeRig(cameras=2, hardware_jpeg=True)
    extra = '[cameras.controls]\nexposure_max_us = 4000\nanalogue_gain_max = 2.0\n'
    checks = run_checks(_camera_config(tmp_path, extra, encoder), probes=healthy(rig=rig))
    check = _by_name(checks)["camera down"]
    assert check.level == OK, check
    rig.has_tuning = False  # the caps cannot be applied: the exposure metadata must say so
    checks = run_checks(_camera_config(tmp_path, extra, encoder), probes=healthy(rig=rig))
    check = _by_name(checks)["camera down"]
    assert f"encoder {encoder}" in check.detail
    assert "exposures up to 30000 us, over exposure_max_us = 4000" in check.detail, check
    assert "analogue gain up to 6, over analogue_gain_max = 2" in check.detail


def test_real_gpio_without_curve_warns_who_can_reach_the_board(config) -> None:
    open_board = _by_name(run_checks(config(curve=False), probes=healthy()))["remote"]
    assert open_board.level == WARN and "CURVE is off" in open_board.detail
    assert "refused" in open_board.detail and "publish.curve_keys" in open_board.fix
    unsafe = _by_name(run_checks(config(curve=False, publish="unsafe_remote_commands = true\n"),
                                 probes=healthy()))["remote"]
    assert unsafe.level == WARN and "can arm, disarm or end a flight" in unsafe.detail
    keyed = _by_name(run_checks(config(), probes=healthy()))["remote"]
    assert keyed.level == OK and "1 operator key" in keyed.detail
    mock = _by_name(run_checks(config(curve=False, gpio="mock"), probes=healthy()))["remote"]
    assert mock.level == OK and "mock" in mock.detail
