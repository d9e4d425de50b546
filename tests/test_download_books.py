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


def test_ls_of_a_thumbs_only_download_says_books_not_checked(flown, camctl_cli):
    r = camctl_cli("ls", str(flown.thumbs))
    assert r.returncode == 0, (r.stdout, r.stderr)
    assert "NOT BALANCED" not in r.stdout, r.stdout
    for cam in ("down", "up"):
        assert f"  {cam}: books not checked: previews only; captured " in r.stdout, r.stdout
    assert "previews only" in r.stdout.splitlines()[0]
    (fl,) = json.loads(camctl_cli("ls", "--json", str(flown.thumbs)).stdout)["flights"]
    assert fl["previews_only"] and fl["verdict"]["kind"] == "PARTIAL"
    assert all(c["ledger"]["balanced"] is None and c["ledger"]["not_checked"] == "previews only"
               for c in fl["cameras"].values()), fl["cameras"]


def test_ls_of_a_download_missing_a_segment_names_it_and_does_not_fail(flown, tmp_path,
                                                                       camctl_cli):
    out = _copy(flown.full, tmp_path / "out")
    flight = out / BOARD / flown.flight
    gone = _middle_segment(flight)
    (flight / gone).unlink()
    r = camctl_cli("ls", str(out))
    assert r.returncode == 0, (r.stdout, r.stderr)
    assert "NOT BALANCED" not in r.stdout, r.stdout
    assert "  down: books not checked: 1 of " in r.stdout, r.stdout
    assert f"not downloaded ({gone})" in r.stdout
    assert "  up: captured " in r.stdout  # the camera with all its segments is checked


def test_ls_exits_1_when_the_books_do_not_balance(flown, tmp_path, camctl_cli):
    assert camctl_cli("ls", str(flown.full)).returncode == 0  # every camera's books balance
    # the board's own store (not a download) without a finished segment, no loss on record: the
    # frames it held are neither stored nor dropped
    store = _copy(flown.store, tmp_path / "store")
    flight = store / flown.flight
    (flight / _middle_segment(flight)).unlink()
    r = camctl_cli("ls", str(store))
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert "  down: captured " in r.stdout and "NOT BALANCED" in r.stdout, r.stdout
    assert "  up: captured " in r.stdout and r.stdout.count("NOT BALANCED") == 1
    r = camctl_cli("ls", "--json", str(store))
    assert r.returncode == 1 and json.loads(r.stdout)["flights"][0]["cameras"]["down"][
        "ledger"]["balanced"] is False


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


def test_ls_of_a_flight_without_ledger_records_says_not_accounted_and_exits_0(tmp_path,
                                                                               camctl_cli):
    from flights import build_download

    # rig-b's down camera has a store drop record (3 frames) and, like every flight from before
    # the ledger, no ledger record: no captured count to check the books against
    built = build_download(tmp_path / "dl")
    r = camctl_cli("ls", str(built.root))
    assert r.returncode == 0, (r.stdout, r.stderr)
    assert "NOT BALANCED" not in r.stdout, r.stdout
    assert "  down: no ledger records (losses not accounted)" in r.stdout
    (fl,) = [f for f in json.loads(camctl_cli("ls", "--json", str(built.root)).stdout)["flights"]
             if f["board"] == "rig-b"]
    assert fl["drops"] == 3 and fl["cameras"]["down"]["ledger"]["balanced"] is None
