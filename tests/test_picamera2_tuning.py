"""Issue 23: the exposure and gain caps reach libcamera, and a capped camera opens again.

libcamera reads a camera's tuning once, when its CameraManager registers the camera, and picamera2
keeps one manager per process (the double models both: tests/test_picamera2_strict.py pins them).
These run the backend (``Picamera2Camera``) on the double.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pytest
from fake_picamera2 import FakeRig

from camctl.board.cameras.picamera2 import Picamera2Camera
from camctl.board.cameras.picamera2_controls import TUNINGS
from camctl.board.config import CameraControls
from camctl.testing.picamera2_double import CONFIG_PATH_ENV, TUNING_FILE_ENV


def _cam(rig: FakeRig, name: str = "pi", index: int = 0, **controls) -> Picamera2Camera:
    return Picamera2Camera(name, index=index, size=(64, 48), fps=30.0, encoder="software",
                           controls=CameraControls(**controls) if controls else None,
                           picamera2=rig.module)


def _frame(c: Picamera2Camera):
    frame = c.capture(timeout_s=2.0)
    if frame.release is not None:
        frame.release()
    return frame


def test_caps_hold_across_the_boot_check_close_and_the_arm_time_open(rig):
    """The boot check opens every camera and closes it; ARM opens it again in the same process."""
    cam = _cam(rig, exposure_max_us=4000, analogue_gain_max=2.0)
    with cam:  # the boot check
        assert rig.instances[-1].agc_limits == (4000, 2.0)
        frame = _frame(cam)
        assert frame.exposure_us <= 4000 and frame.analogue_gain <= 2.0
    assert cam.unset_controls == []
    with cam:  # ARM: a new manager, made after the boot check's closed the last camera
        assert rig.instances[-1].agc_limits == (4000, 2.0)
        frame = _frame(cam)
        assert frame.exposure_us <= 4000 and frame.analogue_gain <= 2.0
    assert rig.libcamera_log == []  # no tuning file that was not there


def test_the_capped_tuning_is_a_file_per_model_on_libcamera_s_config_path(rig):
    cam = _cam(rig, exposure_max_us=4000)
    with cam:
        picam2 = rig.instances[-1]
        assert TUNING_FILE_ENV not in os.environ  # tuning=None: no temporary file involved
        first = os.environ[CONFIG_PATH_ENV].split(":")[0]
        for platform in ("vc4", "pisp"):
            tuning = json.loads((Path(first) / "rpi" / platform / "imx708.json").read_text())
            agc = picam2.find_tuning_algo(tuning, "rpi.agc")
            assert max(agc["channels"][0]["exposure_modes"]["normal"]["shutter"]) == 4000
    del cam  # forgotten: a camera without caps (the same process) has the system tuning again
    with _cam(rig) as plain:
        assert rig.instances[-1].agc_limits == (120000, 6.0)
        assert _frame(plain).exposure_us == rig.scene_exposure_us
        assert not (Path(first) / "rpi" / "pisp" / "imx708.json").exists()


def test_a_user_config_path_stays_after_camctl_s(rig, monkeypatch, tmp_path):
    monkeypatch.setenv(CONFIG_PATH_ENV, str(tmp_path))
    with _cam(rig, exposure_max_us=4000):
        paths = os.environ[CONFIG_PATH_ENV].split(":")
        assert paths[1:] == [str(tmp_path)] and paths[0] != str(tmp_path)


@pytest.mark.parametrize("picamera2_rig", [{"cameras": 2}], indirect=True)
def test_two_cameras_of_one_model_both_get_the_stricter_caps(picamera2_rig, caplog):
    rig = picamera2_rig
    down = _cam(rig, "down", 0, exposure_max_us=4000, analogue_gain_max=4.0)
    side = _cam(rig, "side", 1, exposure_max_us=8000, analogue_gain_max=2.0)
    with caplog.at_level(logging.WARNING, "camctl.board.cameras.picamera2"), down, side:
        assert [p.agc_limits for p in rig.instances] == [(4000, 2.0), (4000, 2.0)]
    warned = [r.getMessage() for r in caplog.records if "stricter" in r.getMessage()]
    assert warned and "'down'" in warned[0] and "'side'" in warned[0]


@pytest.mark.parametrize("picamera2_rig", [{"cameras": 2}], indirect=True)
def test_two_models_each_get_their_own_caps(picamera2_rig):
    rig = picamera2_rig
    rig.cameras[1]["Model"] = "imx477"
    down = _cam(rig, "down", 0, exposure_max_us=4000)
    side = _cam(rig, "side", 1, exposure_max_us=9000)
    # the first open writes both models' files: one manager serves both cameras
    with down, side:
        assert [p.agc_limits[0] for p in rig.instances] == [4000, 9000]
    assert rig.managers_created == 2  # the listing's, then the one made with the files written


@pytest.mark.parametrize("picamera2_rig", [{"cameras": 2}], indirect=True)
def test_caps_of_a_camera_made_while_another_is_open_wait_for_the_next_manager(picamera2_rig):
    rig = picamera2_rig
    with _cam(rig, "down", 0):
        late = _cam(rig, "side", 1, exposure_max_us=4000)  # made after the manager was
        with late:
            assert rig.instances[-1].agc_limits == (120000, 6.0)
            assert any("exposure_max_us" in line and "every camera" in line
                       for line in late.unset_controls)
    with late:  # none open any more: a new manager reads the caps
        assert rig.instances[-1].agc_limits == (4000, 6.0) and late.unset_controls == []


def test_the_registry_forgets_a_camera_nobody_holds(rig):
    cam = _cam(rig, exposure_max_us=4000)
    assert cam in TUNINGS.cameras()
    del cam
    assert not [c for c in TUNINGS.cameras() if c._source is rig.module]
