"""Cross-checks of a camera's config against its rates, its sensor and the encoder (issue 23).

Each mistake here used to load without a word and fly: an exposure cap the frame period already
enforces, a sensor mode the sensor lacks, a gain the sensor cannot give, a hardware encoder at a
size the codec refuses. Each is now one line naming the file, the camera and the key.
"""

from __future__ import annotations

import pytest

from camctl.board.config import parse_config
from camctl.exc import ConfigError


def _camera(**camera) -> dict:
    return {"board": "b", "cameras": [{"name": "down", **camera}]}


def _error(data: dict) -> str:
    with pytest.raises(ConfigError) as info:
        parse_config(data, source="rig.toml")
    message = str(info.value)
    assert "\n" not in message
    return message


def test_exposure_cap_longer_than_the_frame_period_is_refused():
    data = _camera(fps={"ARMED": 2, "DESCENT": 30, "SEPARATION": 30, "TOUCHDOWN": 30},
                   controls={"exposure_max_us": 50000})
    assert _error(data) == ("rig.toml: cameras 'down': controls.exposure_max_us 50000 is longer "
                            "than the frame period at DESCENT's 30 fps (33333 us)")


def test_exposure_cap_is_checked_at_the_highest_rate_of_the_flight():
    # the role's SEPARATION default (60 fps) sets the sensor's rate from ARM to landing
    message = _error(_camera(controls={"exposure_max_us": 20000}))
    assert "controls.exposure_max_us 20000" in message
    assert "at SEPARATION's 60 fps (16667 us)" in message
    cfg = parse_config(_camera(controls={"exposure_max_us": 16666}))
    assert cfg.cameras[0].controls.exposure_max_us == 16666


def test_hardware_encoder_beyond_the_codec_size_is_refused():
    message = _error(_camera(size=[2304, 1296], encoder="hardware"))
    assert message == ("rig.toml: cameras 'down': encoder 'hardware' cannot take size 2304x1296: "
                       "the bcm2835-codec encoder takes 32 to 1920 pixels per side (use encoder = "
                       "'auto' or 'software', or a smaller size)")
    # at the codec's limit it is fine, and 'auto' picks software by itself at any size
    assert parse_config(_camera(size=[1920, 1080], encoder="hardware")).cameras[0].size == (1920,
                                                                                            1080)
    assert parse_config(_camera(size=[2304, 1296], encoder="auto")).cameras[0].encoder == "auto"


@pytest.mark.parametrize("gain", [30, 100])
def test_gain_cap_above_every_known_sensor_is_refused(gain):
    message = _error(_camera(controls={"analogue_gain_max": gain}))
    assert message == (f"rig.toml: cameras 'down': controls.analogue_gain_max {gain} is above the "
                       "analogue gain of every known sensor (the imx477 tops at 22.26)")
    assert parse_config(_camera(controls={"analogue_gain_max": 22})).cameras[0].controls


# --- checks that need the sensor: sensor = "imx708" in [[cameras]] --------------------------------
FLIGHT_30 = {"ARMED": 2, "DESCENT": 30, "SEPARATION": 30, "TOUCHDOWN": 30}


def test_the_sensor_is_named_by_its_libcamera_model():
    cfg = parse_config(_camera(sensor="imx708_wide", fps=FLIGHT_30))
    assert cfg.cameras[0].sensor == "imx708_wide"
    assert parse_config(_camera()).cameras[0].sensor == ""  # unknown: the model checks skip
    assert _error(_camera(sensor="imx999")).startswith(
        "rig.toml: cameras[0].sensor: must be one of 'imx708', 'imx708_wide', ")
    assert _error(_camera(sensor="imx708", backend="sim")) == (
        "rig.toml: cameras[0].sensor: a sensor is only for the picamera2 backend")


def test_sensor_mode_the_sensor_does_not_have_is_refused():
    message = _error(_camera(sensor="imx708", fps=FLIGHT_30,
                             controls={"sensor_mode": [2028, 1520]}))
    assert message == ("rig.toml: cameras 'down': controls.sensor_mode 2028x1520 is not a mode of "
                       "the imx708 (Camera Module 3: 1536x864, 2304x1296, 4608x2592)")
    # without a sensor named, any size is left to picamera2 (the doctor reports what it chose)
    assert parse_config(_camera(fps=FLIGHT_30, controls={"sensor_mode": [2028, 1520]}))


def test_a_flight_rate_above_the_sensor_modes_is_refused():
    # the role's SEPARATION default is 60 fps: more than the full-field mode gives
    message = _error(_camera(sensor="imx708", controls={"sensor_mode": [2304, 1296]}))
    assert message == ("rig.toml: cameras 'down': fps.SEPARATION 60 is faster than the imx708's "
                       "2304x1296 mode runs (56.03 fps)")
    assert parse_config(_camera(sensor="imx708", fps=FLIGHT_30,
                                controls={"sensor_mode": [2304, 1296]}))


def test_gain_cap_above_the_sensors_range_is_refused():
    message = _error(_camera(sensor="imx708", fps=FLIGHT_30, controls={"analogue_gain_max": 20}))
    assert message == ("rig.toml: cameras 'down': controls.analogue_gain_max 20 is above the "
                       "imx708's analogue gain range (1.0 to 16.0)")
    assert parse_config(_camera(sensor="imx477", fps=FLIGHT_30,
                                controls={"analogue_gain_max": 20}))


@pytest.mark.parametrize("controls", [{"LensPosition": 0.5}, {"AfMode": "manual"}])
def test_focus_controls_on_a_sensor_without_a_focus_lens_are_refused(controls):
    message = _error(_camera(sensor="imx477", fps=FLIGHT_30, controls=controls))
    key = next(iter(controls))
    assert message == (f"rig.toml: cameras 'down': controls.{key} is set but the imx477 (HQ "
                       "Camera) has no focus lens")


# --- autofocus: a warning, not an error (the flight still works, the ground is soft) --------------
REST = ("the imx708 (Camera Module 3) lens rests at the tuning's default, 1 dioptre (~1 m), so the "
        "ground is soft until the last metres; set controls.AfMode = 'manual' and "
        "controls.LensPosition = 0.5 (dioptres: sharp from ~1 m to infinity)")


@pytest.mark.parametrize(("controls", "why"), [
    ({}, "no focus set: "),
    ({"AfMode": "manual"}, "controls.AfMode 'manual' without controls.LensPosition: "),
    ({"AfMode": "auto"},
     "controls.AfMode 'auto' moves the lens only on an AfTrigger, which camctl never sends: "),
])
def test_an_autofocus_camera_without_focus_warns(controls, why):
    cfg = parse_config(_camera(sensor="imx708", fps=FLIGHT_30, controls=controls),
                       source="rig.toml")
    assert cfg.warnings == (f"rig.toml: cameras 'down': {why}{REST}",)


@pytest.mark.parametrize(("camera", "controls"), [
    ({"sensor": "imx708"}, {"LensPosition": 0.5}),
    ({"sensor": "imx708"}, {"AfMode": "manual", "LensPosition": 0.0}),
    ({"sensor": "imx708"}, {"AfMode": "continuous"}),  # chosen: the lens follows the scene
    ({"sensor": "imx477"}, {}),  # no focus lens
    ({}, {}),  # sensor not named: nothing known to warn about
])
def test_no_focus_warning_where_focus_is_set_or_there_is_no_lens(camera, controls):
    cfg = parse_config(_camera(**camera, fps=FLIGHT_30, controls=controls))
    assert cfg.warnings == ()
    sim = parse_config({"board": "b", "cameras": [{"name": "s", "backend": "sim"}]})
    assert sim.warnings == ()


def _rig_without_focus(tmp_path):
    path = tmp_path / "rig.toml"
    path.write_text(f'board = "b"\n[store]\ndir = "{tmp_path / "store"}"\n'
                    '[[cameras]]\nname = "down"\nsensor = "imx708"\n'
                    '[cameras.fps]\nARMED = 2\nDESCENT = 30\nSEPARATION = 30\nTOUCHDOWN = 30\n')
    return path


def test_config_check_prints_the_warnings_and_still_passes(tmp_path):
    import subprocess
    import sys

    path = _rig_without_focus(tmp_path)
    r = subprocess.run([sys.executable, "-m", "camctl", "config", "check", str(path)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "ok" in r.stdout
    assert r.stderr == f"camctl: warning: {path}: cameras 'down': no focus set: {REST}\n"


def test_doctor_reports_the_config_warnings(tmp_path):
    from camctl.board.doctor import WARN, config_checks

    path = _rig_without_focus(tmp_path)
    cfg, checks = config_checks(path)
    assert cfg is not None and cfg.warnings
    assert [(c.name, c.level) for c in checks] == [("config", "OK"), ("config", WARN)]
    assert checks[1].detail == f"{path}: cameras 'down': no focus set: {REST}"


def test_still_size_is_video_by_default_and_full_on_request():
    assert parse_config(_camera()).cameras[0].still_size == "video"
    for backend in ("picamera2", "sim"):
        cfg = parse_config(_camera(backend=backend, still_size="full"))
        assert cfg.cameras[0].still_size == "full"
    # 'auto' may resolve to the hardware encoder at open: the camera then takes video-size stills
    # and says so (tests/test_cameras_picamera2.py)
    assert parse_config(_camera(still_size="full", encoder="auto")).cameras[0].still_size == "full"


def test_still_size_must_be_video_or_full():
    assert _error(_camera(still_size="max")) == ("rig.toml: cameras[0].still_size: must be one of "
                                                 "'video', 'full', got 'max'")
    assert _error(_camera(still_size=1)).endswith("still_size: must be a string, got an integer")


def test_full_stills_are_refused_on_the_hardware_encoder():
    """A mode switch while the V4L2 encoder records would feed it full-resolution buffers."""
    assert _error(_camera(still_size="full", encoder="hardware", size=[1536, 864])) == (
        "rig.toml: cameras 'down': still_size 'full' needs a mode switch, which the hardware "
        "encoder's recording cannot take (use still_size = 'video', or encoder = 'software' or "
        "'auto')")
    assert parse_config(_camera(still_size="video", encoder="hardware", size=[1536, 864]))
