"""Ground views: flights found beneath any folder (ls, verify, export), ``ls --connect`` with
cameras only and times from release, ``status --watch --json`` one line per update, ``--log-json``
fields."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from flights import BOARDS, FLIGHT, Built
from netfixtures import FakeBoard, watch_while_publishing
from waiting import wait_for

from camctl.board.config import PublishConfig
from camctl.board.publish import Publisher
from camctl.cli import main
from camctl.common.logsetup import JsonFormatter
from camctl.demo import write_board_config
from camctl.ground import Client
from camctl.ground.flights import find_flights

ROOT = Path(__file__).resolve().parent.parent
LOOP = PublishConfig(bind="tcp://127.0.0.1:*", events="tcp://127.0.0.1:*")


@pytest.fixture(scope="module")
def demo_out(built: Built, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder shaped like ``camctl demo --keep``'s: the download under ground/, each board's store
    under boards/<board>/store/, an export with frame files beside them."""
    out = tmp_path_factory.mktemp("demo-out") / "run-1"
    for board in BOARDS:
        shutil.copytree(built.root / board, out / "ground" / board)
        shutil.copytree(built.root / board, out / "boards" / board / "store")
    (out / "ground" / "export" / FLIGHT / "frames").mkdir(parents=True)
    (out / "ground" / "export" / FLIGHT / "frames" / "x.jpg").write_bytes(b"\xff\xd8")
    return out


def test_find_flights_beneath_any_folder(demo_out: Path) -> None:
    refs = find_flights(demo_out.parent)  # even the folder above the demo's output
    assert sorted((r.board, r.path.relative_to(demo_out).parts[0]) for r in refs) == sorted(
        (b, where) for b in BOARDS for where in ("boards", "ground"))
    assert all(r.flight == FLIGHT for r in refs)


def test_ls_and_verify_of_the_demo_output(demo_out: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["ls", str(demo_out), "--json"]) == 0
    flights = json.loads(capsys.readouterr().out)["flights"]
    assert len(flights) == 4 and {f["board"] for f in flights} == set(BOARDS)
    assert main(["verify", str(demo_out), "--json", "--quiet"]) == 0
    cams = json.loads(capsys.readouterr().out)["cameras"]
    assert {"ground/rig-a/down", "boards/rig-b/store/up"} <= set(cams) and len(cams) == 8


def test_export_of_the_demo_output_takes_each_flight_once(demo_out: Path, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture) -> None:
    assert main(["export", str(demo_out), "--timeline", "--out", str(tmp_path / "x"),
                 "--quiet"]) == 0
    out = capsys.readouterr().out
    # one set: the copies are one flight
    assert sorted(p.name for p in (tmp_path / "x").iterdir()) == [FLIGHT]
    assert "also at" in out


def test_ls_connect_lists_cameras_with_times_from_release(built: Built,
                                                          capsys: pytest.CaptureFixture) -> None:
    pub = Publisher(FakeBoard("rig-a", built.root / "rig-a"), LOOP)
    pub.start()
    try:
        assert main(["ls", "--connect", pub.router_endpoint, "--json"]) == 0
        ls = json.loads(capsys.readouterr().out)
        cams = ls["flights"][FLIGHT]
        assert sorted(cams) == ["down", "up"]  # not the event log, not flight.json
        for cam, c in cams.items():
            frames = built.frames[("rig-a", cam)]
            first, last = min(f.timestamp_ns for f in frames), max(f.timestamp_ns for f in frames)
            assert c["first_s"] == round((first - BOARDS["rig-a"]) / 1e9, 3) == -1.0
            assert c["last_s"] == round((last - BOARDS["rig-a"]) / 1e9, 3)
            assert set(c) == {"frames", "bytes", "segments", "first_s", "last_s", "duration_s"}
        assert main(["ls", "--connect", pub.router_endpoint]) == 0
        text = capsys.readouterr().out
        assert "seconds from the board's release edge" in text and "best value" not in text
        listing = text.split("release edge")[0].split("segments", 1)[1]
        assert "-1.000s" in text and "events" not in listing
    finally:
        pub.close()


def test_status_watch_json_prints_one_line_per_update(tmp_path: Path,
                                                      capsys: pytest.CaptureFixture) -> None:
    board = FakeBoard("rig-w", tmp_path)
    pub = Publisher(board, LOOP)
    pub.start()
    # the same status, again and again
    seen = watch_while_publishing(pub, {**board.status(), "phase": "DESCENT"},
                                  lambda phases: phases.count("DESCENT") >= 5)
    lines = capsys.readouterr().out.splitlines()
    assert seen.count("DESCENT") >= 5  # five updates arrived...
    # ...two of them were news
    assert [json.loads(ln)["phase"] for ln in lines] == ["LANDED", "DESCENT"]


def test_log_json_fields_from_extra_and_key_values() -> None:
    rec = logging.LogRecord("camctl.board.daemon", logging.INFO, __file__, 1,
                            "phase %s -> %s frames=%d", ("A", "B", 12), None)
    rec.phase, rec.event, rec.flight = "DESCENT", "release", "F1"
    out = json.loads(JsonFormatter().format(rec))
    assert out["phase"] == "DESCENT" and out["event"] == "release" and out["flight"] == "F1"
    assert out["frames"] == 12 and out["msg"] == "phase A -> B frames=12" and out["level"] == "info"


def test_log_json_of_a_real_board(tmp_path: Path) -> None:
    cfg = write_board_config(tmp_path / "b", "log-board", 0, size=(160, 120), post_touchdown_s=0.2,
                             reserve_mb=0)
    store = tmp_path / "b" / "store"
    log = (tmp_path / "board.log").open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "camctl", "--log-json", "run",
                             "--config", str(cfg)],
                            stdout=log, stderr=subprocess.STDOUT,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        wait_for(lambda: (store / "daemon.json").exists() or proc.poll() is not None,
                 "the board's daemon.json")
        assert proc.poll() is None, (tmp_path / "board.log").read_text()
        with Client(json.loads((store / "daemon.json").read_text())["router"], timeout_s=10) as c:
            c.command("arm")
            c.command("event", name="release")
            time.sleep(0.3)  # the descent's length (the scenario, not a wait)
            c.command("event", name="touchdown")
            wait_for(lambda: c.status()["serving"], "the board to finish its flight")
    finally:
        proc.terminate()
        proc.wait(30)
        log.close()
    lines = [json.loads(ln) for ln in (tmp_path / "board.log").read_text().splitlines()
             if ln.startswith("{")]
    release = [r for r in lines if r.get("event") == "release" and r.get("phase") == "DESCENT"]
    assert release, lines
    assert (release[0]["phase_from"] == "ARMED" and release[0]["board"] == "log-board"
            and release[0]["flight"])
    done = [r for r in lines if "frames_stored" in r]
    assert (done and done[0]["flight"] == release[0]["flight"]
            and done[0]["frames_stored"] > 0), lines
