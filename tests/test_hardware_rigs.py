"""Every example rig in hardware/rigs/ is a valid camctl config, wired to pins that exist on the header."""

from __future__ import annotations

from pathlib import Path

import pytest

from camctl.config import load_config

RIGS = sorted((Path(__file__).resolve().parent.parent / "hardware" / "rigs").glob("*.toml"))
HEADER_GPIOS = set(range(2, 28))  # BCM 2..27 are on the 40-pin header (0/1 are the HAT EEPROM bus)


def test_there_are_example_rigs() -> None:
    assert len(RIGS) >= 3, RIGS


@pytest.mark.parametrize("path", RIGS, ids=[p.name for p in RIGS])
def test_rig_loads(path: Path) -> None:
    cfg = load_config(path)
    assert cfg.cameras, f"{path.name}: a rig without cameras"
    for line in cfg.gpio.lines:
        assert line.pin in HEADER_GPIOS, f"{path.name}: {line.event} on BCM {line.pin} is not a header GPIO"
    if cfg.gpio.backend == "lgpio":
        assert all(c.backend == "picamera2" for c in cfg.cameras), f"{path.name}: a flight rig with sim cameras"


def test_board_names_are_unique() -> None:
    boards = [load_config(p).board for p in RIGS]
    assert len(set(boards)) == len(boards)
