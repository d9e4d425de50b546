"""Every example rig in hardware/rigs/ is a valid camctl config, wired to pins on the header."""

from __future__ import annotations

import re
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


# --- sensors: the rigs' addresses, hardware/sensors.md's scan, the BOM ---------------------------
HARDWARE = Path(__file__).resolve().parent.parent / "hardware"
# the addresses each part can take (its address-select pin low / high): LSM6DSOX DS12814 SA0,
# ICM-42688-P DS-000347 AP_AD0, BMP390 BST-BMP390-DS002 SDO (hardware/sensors.md, Address-select)
SELECTABLE = {"lsm6dsox": {0x6A, 0x6B}, "icm42688p": {0x68, 0x69}, "bmp390": {0x76, 0x77}}
CHIP = {"lsm6dsox": "LSM6DSOX", "icm42688p": "ICM-42688-P", "bmp390": "BMP390"}


def test_every_sensor_part_has_its_addresses_here() -> None:
    from camctl.board.config_sensors import PARTS

    assert set(SELECTABLE) == {b for b in PARTS if b != "sim"} == set(CHIP)
    for backend, (_, default) in PARTS.items():
        if backend != "sim":
            assert default in SELECTABLE[backend], backend


@pytest.mark.parametrize("path", RIGS, ids=[p.name for p in RIGS])
def test_rig_sensors_sit_on_the_header_bus_at_an_address_their_part_can_take(path: Path) -> None:
    cfg = load_config(path)
    for s in cfg.sensors:
        if cfg.gpio.backend == "lgpio":
            assert s.backend != "sim", f"{path.name}: a flight rig with a sim sensor {s.name}"
        if s.backend == "sim":
            continue
        assert s.bus == 1, f"{path.name} sensor {s.name}: GPIO2/3 are /dev/i2c-1"
        assert s.address in SELECTABLE[s.backend], (
            f"{path.name} sensor {s.name}: a {s.backend} answers at "
            f"{sorted(hex(a) for a in SELECTABLE[s.backend])}, not {s.address:#x}")


def _scan_in_sensors_md() -> set[int]:
    """The addresses hardware/sensors.md's expected `i2cdetect -y 1` shows."""
    text = (HARDWARE / "sensors.md").read_text()
    rows = re.findall(r"^\s*([0-7]0):((?: {3}|(?: [0-9a-f]{2}| --))+)\s*$", text, re.M)
    assert len(rows) == 8, "the i2cdetect grid in hardware/sensors.md is not whole"
    found = set()
    for row, cells in rows:
        for i in range(0, len(cells), 3):
            cell = cells[i + 1:i + 3]
            if cell.strip() and cell != "--":
                assert int(cell, 16) == int(row, 16) + i // 3, f"{cell} in the wrong column"
                found.add(int(cell, 16))
    return found


def test_sensors_md_scan_shows_the_example_rigs_sensors() -> None:
    """The bring-up's expected `i2cdetect` output is what the example flight rig wires."""
    wired = {s.address for p in RIGS for s in load_config(p).sensors
             if load_config(p).gpio.backend == "lgpio" and s.address is not None}
    assert wired, "no example rig wires a sensor"
    assert _scan_in_sensors_md() == wired


def _bom_rows() -> list[list[str]]:
    rows = []
    for line in (HARDWARE / "bom.md").read_text().splitlines():
        if line.startswith("| ") and not line.startswith("| Part ") and "---" not in line:
            rows.append([c.strip() for c in line.strip().strip("|").split("|")])
    return rows


def test_the_bom_lists_a_checked_breakout_for_every_sensor_part() -> None:
    rows = _bom_rows()
    assert all(len(r) == 6 for r in rows), [r[0] for r in rows if len(r) != 6]
    for chip in CHIP.values():
        named = [r for r in rows if re.search(rf"\(chip: (\w+ )?{re.escape(chip)}\)", r[2])]
        assert named, f"no BOM row names a {chip} breakout"
        for r in named:
            assert re.match(r"(Adafruit|DFRobot|SparkFun) [A-Z]*\d+", r[2]), r[2]
            assert r[3].split()[0] in ("maker", "listing"), f"{chip}: checked is {r[3]!r}"
