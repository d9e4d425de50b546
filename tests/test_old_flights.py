"""A flight written by an older camctl (tests/fixtures/old-store, see its README) still lists,
verifies, exports and serves with today's code: the format on a board's flash is a promise kept
across upgrades."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import av
import pytest

from camctl.cli import main

OLD = Path(__file__).parent / "fixtures" / "old-store"
FLIGHT = "20261206T211516Z"


@pytest.fixture
def store(tmp_path: Path) -> Path:
    """A copy: verify and export must not need to write into the flight, but a bug that did would
    otherwise change the fixture for every later run."""
    shutil.copytree(OLD, tmp_path / "store", ignore=shutil.ignore_patterns("README.md"))
    return tmp_path / "store"


def test_an_old_flight_verifies_clean(store: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = {p: p.read_bytes() for p in store.rglob("*") if p.is_file()}
    assert main(["verify", "--json", str(store)]) == 0
    report = json.loads(capsys.readouterr().out)
    for cam in ("down", "up"):  # every frame read back as a frame, none as garbage
        c = report["cameras"][cam]
        assert (c["frames"], c["segments"], c["bad_frames"], c["lost_bytes"]) == (16, 1, 0, 0), c
    assert not report["losses"] and not report["unrecoverable"] and not report["repaired"]
    assert before == {p: p.read_bytes() for p in store.rglob("*") if p.is_file()}


@pytest.mark.parametrize("index", ["kept", "rebuilt"])
def test_an_old_flight_lists_with_balanced_books(store: Path, index: str,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """With the index it was written with, and with one built now from its old segments."""
    if index == "rebuilt":
        (store / FLIGHT / "index.json").unlink()
    assert main(["ls", "--json", str(store)]) == 0
    (flight,) = json.loads(capsys.readouterr().out)["flights"]
    assert (flight["board"], flight["flight"]) == ("rig-old", FLIGHT)
    assert flight["index"] == ("current" if index == "kept" else "missing")
    assert [p["phase"] for p in flight["phases"]] == ["ARMED", "DESCENT", "SEPARATION", "TOUCHDOWN",
                                                       "LANDED"]
    for cam in ("down", "up"):
        c = flight["cameras"][cam]
        assert c["frames"] == 16 and c["segments"] == 1
        assert c["ledger"]["balanced"] and c["ledger"]["captured"] == 18


def test_an_old_flight_exports(store: Path, tmp_path: Path) -> None:
    out = tmp_path / "export"
    assert main(["export", str(store), "--mp4", "--contact-sheet", "--timeline", "--frames",
                 "--foxglove", "--out", str(out), "--quiet"]) == 0
    mp4s = sorted(out.rglob("*.mp4"))
    assert [p.name for p in mp4s] == ["rig-old_down.mp4", "rig-old_up.mp4"]
    for p in mp4s:
        with av.open(str(p)) as c:
            assert sum(1 for _ in c.decode(video=0)) == 16
    assert len(list(out.rglob("*.jpg"))) == 32
    sets = out / FLIGHT
    for name in ("contact_sheet.png", "timeline.png", "timeline.svg", f"foxglove/{FLIGHT}.mcap"):
        assert (sets / name).stat().st_size > 0, name
