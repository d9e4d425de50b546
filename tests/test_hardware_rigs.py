"""Every example rig in hardware/rigs/ is a valid camctl config, wired to pins on the header."""

from __future__ import annotations

from pathlib import Path

import pytest

from camctl.board.config import load_config

RIGS = sorted((Path(__file__).resolve().parent.parent / "hardware" / "rigs").glob("*.toml"))
HEADER_GPIOS = set(range(2, 28))  # BCM 2..27 are on the 40-pin header (0/1 are the HAT EEPROM bus)


def test_there_are_example_rigs() -> None:
    assert len(RIGS) >= 3, RIGS


@pytest.mark.parametrize("path", RIGS, ids=[p.name for p in RIGS])
def test_rig_loads(path: Path) -> None:
    cfg = load_config(path)
    assert cfg.cameras, f"{path.name}: a rig without cameras"
    for line in cfg.gpio.lines:
        assert line.pin in HEADER_GPIOS, (
            f"{path.name}: {line.event} on BCM {line.pin} is not a header GPIO")
    if cfg.gpio.backend == "lgpio":
        assert all(c.backend == "picamera2" for c in cfg.cameras), (
            f"{path.name}: a flight rig with sim cameras")


def test_board_names_are_unique() -> None:
    boards = [load_config(p).board for p in RIGS]
    assert len(set(boards)) == len(boards)


@pytest.mark.parametrize("path", RIGS, ids=[p.name for p in RIGS])
def test_rigs_name_their_sensors_and_load_without_warnings(path: Path) -> None:
    """The config's cross-checks (exposure, sensor mode and rate, gain, codec size) apply in full
    only to a camera that names its sensor; every shipped rig does, and passes them."""
    cfg = load_config(path)
    assert cfg.warnings == ()
    for cam in cfg.cameras:
        if cam.backend == "picamera2":
            assert cam.sensor, f"{path.name} camera {cam.name}: no sensor named"


@pytest.mark.parametrize("path", RIGS, ids=[p.name for p in RIGS])
def test_flight_cameras_set_focus_exposure_gain_and_a_full_field_mode(path: Path) -> None:
    from camctl.board.cameras.picamera2 import codec_fits

    for cam in load_config(path).cameras:
        if cam.backend != "picamera2":
            continue
        c = cam.controls
        where = f"{path.name} camera {cam.name}"
        assert c.af_mode == "manual" and c.lens_position is not None, where
        if cam.role == "down":  # sharp from ~1 m to infinity: the whole drop, touchdown included
            assert 0.4 <= c.lens_position <= 0.6, where
        assert c.exposure_max_us is not None and c.exposure_max_us <= 1e6 / cam.sensor_fps(), where
        # the IPA's range
        assert c.analogue_gain_max is not None and c.analogue_gain_max <= 16.0, where
        assert (c.sensor_mode is not None and c.sensor_mode[0] >= cam.size[0]
                and c.sensor_mode[1] >= cam.size[1])
        assert cam.sensor_fps() <= 56, f"{where}: the IMX708 full-field mode tops out at 56 fps"
        if cam.encoder == "hardware":
            assert codec_fits(cam.size), f"{where}: {cam.size} is beyond the bcm2835-codec encoder"
