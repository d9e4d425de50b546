"""`verify` and `ls` on real downloads that lack segments (issue 28, item 7): a segment not fetched
is an incomplete download, not a loss (the board still has it), a `--thumbs-only` download has no
books to check, and `ls` exits 1 when the books of a flight with its segments really do not
balance.

One sim board (`camctl run`, a real process) flies a short flight; `camctl fetch` downloads it whole
and previews only; each test works on a copy."""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from waiting import wait_for

BOARD = "dl-a"


@dataclass(frozen=True)
class Flown:
    store: Path  # the board's store (not a download)
    full: Path  # camctl fetch --out full
    thumbs: Path  # camctl fetch --thumbs-only --out thumbs
    flight: str


@pytest.fixture(scope="module")
def flown(tmp_path_factory: pytest.TempPathFactory) -> Flown:
    from camctl.demo import _command, _status, start_board, write_board_config
    from camctl.ground import fetch

    tmp = tmp_path_factory.mktemp("download-books")
    # small segments: several per camera, so one can be missing from the middle
    cfg = write_board_config(tmp / "b", BOARD, 0, size=(160, 120), descent_s=30,
                             post_touchdown_s=0.3, segment_mb=0.05, reserve_mb=0)
    board = start_board(cfg, tmp / "b" / "store", BOARD)
    try:
        _command(board, "arm")
        time.sleep(0.5)  # the phases' lengths: frames in each (the scenario, not a wait)
        _command(board, "event", name="release")
        time.sleep(1.0)
        _command(board, "event", name="touchdown")
        wait_for(lambda: (s := _status(board))["phase"] == "LANDED" and s["serving"],
                 "the board to land and serve", timeout_s=60, interval_s=0.1)
        full = fetch([board.router], tmp / "full", give_up_after_s=20, progress=False)
        assert full.ok, full.summary()
        thumbs = fetch([board.router], tmp / "thumbs", give_up_after_s=20, progress=False,
                       thumbs_only=True)
        assert thumbs.ok and thumbs.boards[0].thumbs > 0, thumbs.summary()
    finally:
        assert board.stop() == 0, board.log_path.read_text()[-2000:]
    (flight,) = [p.name for p in (tmp / "full" / BOARD).iterdir() if p.is_dir()]
    return Flown(tmp / "b" / "store", tmp / "full", tmp / "thumbs", flight)


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def _middle_segment(flight: Path, camera: str = "down") -> str:
    """A finished segment the index lists that is neither the camera's first nor its last."""
    index = json.loads((flight / "index.json").read_text())
    paths = [e["path"] for e in index["cameras"][camera]["segments"]]
    assert len(paths) >= 3, paths
    return paths[1]


def _bytes(flight: Path) -> dict[str, bytes]:
    """index.json and the event log, byte for byte."""
    files = [flight / "index.json", *sorted((flight / "events").glob("*"))]
    return {p.relative_to(flight).as_posix(): p.read_bytes() for p in files}


def test_verify_repair_of_a_download_missing_a_segment_says_incomplete(flown, tmp_path,
                                                                      camctl_cli):
    out = _copy(flown.full, tmp_path / "out")
    flight = out / BOARD / flown.flight
    gone = _middle_segment(flight)
    (flight / gone).unlink()
    before = _bytes(flight)
    for args in (("verify", str(out)), ("verify", "--repair", str(out)),
                 ("verify", "--repair", str(flight))):
        r = camctl_cli(*args)
        assert r.returncode == 1, (args, r.stdout, r.stderr)
        assert "result: incomplete download (exit 1)" in r.stdout, r.stdout
        assert "incomplete download: 1 segment not fetched (" in r.stdout
        assert gone in r.stdout and "LOST" not in r.stdout and "clean" not in r.stdout
        # the board's index and the download's event log stay as the board wrote them
        assert _bytes(flight) == before, args
    rep = json.loads(camctl_cli("verify", "--json", str(out)).stdout)
    assert rep["not_fetched"] == [f"{BOARD}/{gone}"] and rep["losses"] == [], rep


def test_verify_of_a_whole_download_is_clean(flown, camctl_cli):
    r = camctl_cli("verify", str(flown.full))
    assert r.returncode == 0 and "result: clean (exit 0)" in r.stdout, r.stdout


def test_verify_of_a_thumbs_only_download_says_previews_only(flown, tmp_path, camctl_cli):
    out = _copy(flown.thumbs, tmp_path / "out")
    flight = out / BOARD / flown.flight
    before = _bytes(flight)
    for args in (("verify", str(out)), ("verify", "--repair", str(out))):
        r = camctl_cli(*args)
        assert r.returncode == 1, (args, r.stdout, r.stderr)
        assert "result: previews only (exit 1)" in r.stdout, r.stdout
        assert f"previews only, no segments: {flight}" in r.stdout
        assert "repairable" not in r.stdout and "LOST" not in r.stdout
        assert _bytes(flight) == before, args


def test_a_board_store_missing_a_segment_is_still_a_loss(flown, tmp_path):
    from camctl.store import verify

    store = _copy(flown.store, tmp_path / "store")
    flight = store / flown.flight
    gone = _middle_segment(flight)
    (flight / gone).unlink()
    report = verify(store)
    assert report.status == "frames lost, repairable" and not report.not_fetched, report.to_dict()


def test_a_download_index_rebuilt_for_another_reason_keeps_the_segments_not_fetched(flown,
                                                                                    tmp_path):
    from camctl.store import verify

    out = _copy(flown.full, tmp_path / "out")
    flight = out / BOARD / flown.flight
    gone = _middle_segment(flight)
    (flight / gone).unlink()
    index = json.loads((flight / "index.json").read_text())
    board_entry = next(e for e in index["cameras"]["down"]["segments"] if e["path"] == gone)
    # a fetched segment's entry that no longer says what the folder holds: index.json is stale
    index["cameras"]["up"]["segments"][0]["sha256"] = "0" * 64
    (flight / "index.json").write_text(json.dumps(index))
    assert str(flight / "index.json") in verify(out).repairable
    fixed = verify(out, repair=True)
    assert str(flight / "index.json") in fixed.repaired and not fixed.losses, fixed.to_dict()
    rebuilt = json.loads((flight / "index.json").read_text())
    kept = [e for e in rebuilt["cameras"]["down"]["segments"] if e["path"] == gone]
    assert kept == [board_entry], rebuilt["cameras"]["down"]
    # and it goes on saying the download is incomplete, never clean
    again = verify(out)
    assert again.status == "incomplete download" and again.not_fetched == [f"{BOARD}/{gone}"]
    assert not again.repairable and not again.losses, again.to_dict()
