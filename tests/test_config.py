"""Config validation: every error names its key path in one line; the CLI exits 2, no traceback."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from camctl.board.config import load_config, parse_config
from camctl.exc import ConfigError

GOOD = """
board = "rig-a"
[store]
dir = "/tmp/camctl-test"
commit_interval_ms = 100
[gpio]
backend = "mock"
[gpio.events]
arm = 17
release = 27
separation = 22
touchdown = { pin = 23, pull_up = true, active_high = true }
[phases]
post_touchdown_s = 1
[[cameras]]
name = "down"
backend = "sim"
size = [640, 480]
[cameras.fps]
DESCENT = 25
[[cameras]]
name = "up"
role = "up"
backend = "sim"
"""


def test_good_config_round_trip(tmp_path):
    p = tmp_path / "rig.toml"
    p.write_text(GOOD)
    cfg = load_config(p)
    assert cfg.board == "rig-a"
    assert cfg.phases.order == ("SAFE", "ARMED", "DESCENT", "SEPARATION", "TOUCHDOWN", "LANDED")
    assert cfg.cameras[0].fps_for("DESCENT") == 25.0
    assert cfg.cameras[0].fps_for("SEPARATION") == 60.0  # role default
    assert cfg.cameras[1].fps_for("TOUCHDOWN") == 10.0  # role "up"
    td = next(ln for ln in cfg.gpio.lines if ln.event == "touchdown")
    assert (td.pin, td.pull_up, td.active_high) == (23, True, True)
    assert cfg.gpio.pin_of("release") == 27
    assert cfg.store.commit_interval_ms == 100


def test_custom_descent_phases():
    cfg = parse_config({"board": "b",
                        "phases": {"triggers": {"release": "CHUTE", "skycrane": "SKYCRANE"}},
                        "cameras": [{"name": "c", "backend": "sim", "fps": {"SKYCRANE": 90}}]})
    assert cfg.phases.order == ("SAFE", "ARMED", "CHUTE", "SKYCRANE", "TOUCHDOWN", "LANDED")
    assert cfg.cameras[0].fps_for("SKYCRANE") == 90.0


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        ({"cameras": [{"name": "a", "backend": "sim"},
                      {"name": "b", "backend": "sim", "fps": {"DESCENT": 0}}]},
         "cameras[1].fps.DESCENT: must be > 0, got 0"),
        ({"cameras": [{"name": "a", "backend": "sim", "fps": {"DECENT": 5}}]},
         "cameras[0].fps.DECENT: unknown phase"),
        ({"cameras": [{"name": "a", "backend": "webcam"}]}, "cameras[0].backend: must be one of"),
        ({"cameras": [{"name": "a", "size": [1920]}]}, "cameras[0].size: must be [width, height]"),
        ({"cameras": [{"name": "a", "jpeg_quality": 101}]},
         "cameras[0].jpeg_quality: must be <= 100"),
        ({"cameras": [{"name": "a"}, {"name": "a"}]},
         "cameras[1].name: camera name 'a' is used twice"),
        ({"cameras": [{"role": "down"}]}, "cameras[0].name: is required"),
        ({"store": {"commit_interval_ms": "fast"}},
         "store.commit_interval_ms: must be a number, got a string"),
        ({"store": {"segmnt_mb": 3}}, "store.segmnt_mb: unknown key"),
        ({"gpio": {"events": {"arm": 17, "release": 17}}},
         "gpio.events.release: pin 17 is already used"),
        ({"gpio": {"events": {"launch": 5}}}, "gpio.events.launch: event 'launch' does nothing"),
        ({"gpio": {"backend": "rpigpio"}}, "gpio.backend: must be one of"),
        ({"gpio": {"events": {"arm": 99}}}, "gpio.events.arm: must be <= 53"),
        ({"phases": {"triggers": {"release": "LANDED"}}},
         "phases.triggers.release: phase 'LANDED' is built in"),
        ({"phases": {"post_touchdown_s": -1}}, "phases.post_touchdown_s: must be >= 0"),
        ({"publish": {"bind": "5555"}}, "publish.bind: must be a ZeroMQ endpoint"),
        ({"publish": {"bind": "tcp://*:5555", "events": "tcp://*:5555"}},
         "publish.events: must differ"),
        ({"board": "rig a"}, "board: must be a name"),
        ({"cameras": [{"name": "a", "quality": {"DESCENT": 0}}]},
         "cameras[0].quality.DESCENT: must be >= 1"),
        ({"cameras": [{"name": "a", "lores_phases": ["ARMED"]}]},
         "cameras[0].lores_phases: needs lores_size"),
        ({"cameras": [{"name": "a", "size": [640, 480], "lores_size": [1280, 720]}]},
         "cameras[0].lores_size: must be from 16x16 up to the main size 640x480"),
        ({"extra": 1}, "extra: unknown key"),
        # mistakes that used to change a flight silently
        ({"cameras": [{"name": "a", "role": "dwn"}]},
         "cameras[0].role: unknown role 'dwn' (roles with a schedule"),
        ({"cameras": [{"name": "a", "role": "belly", "fps": {"ARMED": 2, "DESCENT": 30}}]},
         "cameras[0].role: unknown role 'belly' (roles with a schedule: down, side, up); "
         "a role of your own needs [cameras.fps] for SEPARATION, TOUCHDOWN"),
        ({"cameras": [{"name": "a", "index": 1}, {"name": "b", "index": 1}]},
         "cameras[1].index: camera index 1 is already used by camera 'a'"),
        ({"cameras": [{"name": "a"}, {"name": "b", "index": 0}]},
         "cameras[1].index: camera index 0 is already used by camera 'a'"),
        ({"cameras": [{"name": "a", "pretrigger_mb": 0}]},
         "cameras[0].pretrigger_mb: is 0 while pretrigger_s = 2: the ring would hold nothing"),
        # a ring smaller than the smallest JPEG of one ARMED frame holds nothing: every ARMED frame
        # was "aged out" (1e-7 MB is 0 bytes); the smallest 1920x1080 JPEG (a uniform frame) is
        # 32400 bytes, 0.031 MB
        ({"cameras": [{"name": "a", "pretrigger_mb": 1e-7}]},
         "cameras[0].pretrigger_mb: 1e-07 MB cannot hold one ARMED frame: the smallest JPEG of "
         "1920x1080 (a uniform frame) takes 0.031 MB"),
        ({"cameras": [{"name": "a", "pretrigger_mb": 0.03}]},
         "cameras[0].pretrigger_mb: 0.03 MB cannot hold one ARMED frame"),
        # ARMED at the lores size: the lores frame is what the ring holds
        ({"cameras": [{"name": "a", "size": [640, 480], "lores_size": [320, 240],
                       "lores_phases": ["ARMED"], "pretrigger_mb": 0.001}]},
         "cameras[0].pretrigger_mb: 0.001 MB cannot hold one ARMED frame: the smallest JPEG of "
         "320x240"),
        # a segment smaller than one frame: every frame a file (and an fsync) of its own
        ({"store": {"segment_mb": 0.01}, "cameras": [{"name": "a"}]},
         "store.segment_mb: 0.01 MB holds no frame of camera 'a': the smallest JPEG of 1920x1080"),
        # a disarm stops the cameras: a still owed to it is never taken (only counted as missed)
        ({"cameras": [{"name": "a", "stills": ["touchdown", "disarm"]}]},
         "cameras[0].stills: 'disarm' stops the cameras: its still can never be taken (stills "
         "are taken at arm, release, separation, touchdown)"),
        ({"cameras": [{"name": "a", "size": [640, 480], "lores_size": [321, 240]}]},
         "cameras[0].lores_size: must be even sizes"),
        ({"cameras": [{"name": "a", "size": [640, 480], "lores_size": [320, 241]}]},
         "cameras[0].lores_size: must be even sizes"),
    ],
)
def test_errors_name_the_key(patch, message):
    data = {"board": "rig-a", **patch}
    with pytest.raises(ConfigError) as info:
        parse_config(data)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_missing_board():
    with pytest.raises(ConfigError, match="board: is required"):
        parse_config({})


def test_toml_syntax_error_names_the_file(tmp_path):
    p = tmp_path / "bad.toml"
    p.write_text("board = \n")
    with pytest.raises(ConfigError) as info:
        load_config(p)
    assert str(p) in str(info.value) and "TOML syntax error" in str(info.value)


def test_cli_config_check_one_line_exit_2(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text(textwrap.dedent("""
        board = "rig-a"
        [[cameras]]
        name = "a"
        backend = "sim"
        [[cameras]]
        name = "b"
        backend = "sim"
        [cameras.fps]
        DESCENT = 0
    """))
    r = subprocess.run([sys.executable, "-m", "camctl", "config", "check", str(bad)],
                       capture_output=True, text=True)
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0
    assert "cameras[1].fps.DESCENT: must be > 0" in r.stderr
    assert "Traceback" not in r.stderr
    good = tmp_path / "good.toml"
    good.write_text(GOOD)
    r = subprocess.run([sys.executable, "-m", "camctl", "config", "check", str(good)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "ok" in r.stdout


def test_cli_missing_file_is_one_line(tmp_path):
    r = subprocess.run([sys.executable, "-m", "camctl", "config", "check",
                        str(tmp_path / "nope.toml")], capture_output=True, text=True)
    assert r.returncode == 2 and "cannot read config" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.parametrize(("args", "message"), [
    (["fetch", "--connect", "bogus", "--out", "OUT"], "--connect 'bogus': not a ZeroMQ endpoint"),
    (["status", "--connect", "tcp://rig-a:5555", "--connect", "rig-b:5555"],
     "--connect 'rig-b:5555'"),
    (["keys", "/proc/camctl-no-such-dir/keys"], "camctl: error: No such file or directory"),
])
def test_cli_user_mistakes_are_one_line(tmp_path, args, message):
    args = [str(tmp_path / "out") if a == "OUT" else a for a in args]
    r = subprocess.run([sys.executable, "-m", "camctl", *args], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode in (1, 2) and message in r.stderr, r.stderr
    assert "Traceback" not in r.stderr and r.stderr.strip().count("\n") == 0


def test_what_is_still_allowed_around_the_new_checks():
    """Sims may share an index; a ring turned off whole and a free role with all rates are fine."""
    cfg = parse_config({"board": "b", "cameras": [
        {"name": "a", "backend": "sim", "index": 0, "pretrigger_s": 0, "pretrigger_mb": 0},
        {"name": "b", "backend": "sim", "index": 0, "role": "belly",
         "fps": {"ARMED": 1, "DESCENT": 20, "SEPARATION": 40, "TOUCHDOWN": 20}},
        {"name": "c", "index": 0},
        {"name": "d", "index": 1, "lores_size": [320, 240], "size": [640, 480]}]})
    assert cfg.cameras[1].fps_for("SEPARATION") == 40.0 and cfg.cameras[0].pretrigger_mb == 0


def test_a_ring_that_holds_one_smallest_frame_and_stills_at_every_forward_event_load():
    """The edges of the ring and stills checks: a ring of one uniform frame (it overflows, booked
    as ring_overflow, but it holds one), the ring off with a tiny pretrigger_mb, and a still at
    each event that starts a recording phase (an arm's still is stored: it bypasses the ring)."""
    cfg = parse_config({"board": "b", "cameras": [
        {"name": "a", "backend": "sim", "size": [320, 240], "pretrigger_mb": 1200 / 2**20},
        {"name": "b", "backend": "sim", "pretrigger_s": 0, "pretrigger_mb": 1e-7},
        {"name": "c", "backend": "sim", "stills": ["arm", "release", "separation", "touchdown"]}]})
    assert cfg.cameras[2].stills == ("arm", "release", "separation", "touchdown")
    with pytest.raises(ConfigError, match="cannot hold one ARMED frame"):
        parse_config({"board": "b", "cameras": [
            {"name": "a", "backend": "sim", "size": [320, 240], "pretrigger_mb": 1199 / 2**20}]})


# --- [cameras.controls]: focus, exposure, gain, sensor mode ---------------------------------------
def _controls(**controls):
    cfg = parse_config({"board": "b", "cameras": [{"name": "c", "controls": controls}]})
    return cfg.cameras[0].controls


def test_camera_controls_parse():
    from camctl.board.config import CameraControls

    assert _controls() == CameraControls()
    c = _controls(AfMode="manual", LensPosition=0, exposure_max_us=2000, analogue_gain_max=8,
                  sensor_mode=[2304, 1296])
    assert c == CameraControls(af_mode="manual", lens_position=0.0, exposure_max_us=2000,
                               analogue_gain_max=8.0, sensor_mode=(2304, 1296))
    assert _controls(LensPosition=0.5).af_mode is None  # manual is implied by a lens position


@pytest.mark.parametrize(
    ("controls", "message"),
    [
        ({"LensPositon": 0.0},
         "cameras[0].controls.LensPositon: unknown control (known: AfMode, LensPosition, "
         "exposure_max_us, analogue_gain_max, sensor_mode)"),
        ({"lens_position": 0.0}, "cameras[0].controls.lens_position: unknown control"),
        ({"AfMode": "macro"},
         "cameras[0].controls.AfMode: must be one of 'manual', 'auto', 'continuous'"),
        ({"LensPosition": -1}, "cameras[0].controls.LensPosition: must be >= 0, got -1"),
        ({"LensPosition": 40}, "cameras[0].controls.LensPosition: must be <= 32"),
        ({"AfMode": "continuous", "LensPosition": 0},
         "cameras[0].controls.LensPosition: needs AfMode = 'manual'"),
        ({"exposure_max_us": 10}, "cameras[0].controls.exposure_max_us: must be >= 100"),
        ({"exposure_max_us": 2.5e3}, None),
        ({"analogue_gain_max": 0.5}, "cameras[0].controls.analogue_gain_max: must be >= 1"),
        ({"sensor_mode": [2304]},
         "cameras[0].controls.sensor_mode: must be [width, height] of a sensor mode"),
        ({"sensor_mode": "full"}, "cameras[0].controls.sensor_mode: must be [width, height]"),
        ("manual", "cameras[0].controls: must be a table, got a string"),
    ],
)
def test_camera_controls_errors_name_the_key(controls, message):
    data = {"board": "b", "cameras": [{"name": "c", "controls": controls}]}
    if message is None:
        parse_config(data)
        return
    with pytest.raises(ConfigError) as info:
        parse_config(data)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_camera_controls_are_only_for_picamera2():
    with pytest.raises(ConfigError,
                       match=r"cameras\[0\].controls: camera controls are only for the picamera2"):
        parse_config({"board": "b", "cameras": [{"name": "c", "backend": "sim",
                                                 "controls": {"AfMode": "auto"}}]})


def test_sensor_fps_is_the_flight_maximum():
    cfg = parse_config({"board": "b",
                        "cameras": [{"name": "c", "fps": {"ARMED": 1, "DESCENT": 40}}]})
    assert cfg.cameras[0].sensor_fps() == 60.0  # the role's SEPARATION default is the highest


def test_the_smallest_jpeg_is_what_the_encoder_makes_of_a_uniform_frame():
    """The ring's floor is pinned to the real encoder: a uniform frame, at any quality, takes no
    less than smallest_jpeg_bytes, and little more (the headers)."""
    import numpy as np
    import simplejpeg

    from camctl.board.config import smallest_jpeg_bytes

    for w, h in ((320, 240), (1920, 1080)):
        for q in (1, 85, 100):
            img = np.full((h, w, 3), 128, np.uint8)
            n = len(simplejpeg.encode_jpeg(img, quality=q, colorspace="RGB",
                                           colorsubsampling="420"))
            assert smallest_jpeg_bytes(w, h) <= n <= smallest_jpeg_bytes(w, h) + 1500, (w, h, q, n)
