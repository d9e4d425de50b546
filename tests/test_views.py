"""camctl ls (local, remote); status (JSON, rich rendering, --watch over a real PUB socket)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
from flights import BOARDS, FLIGHT, Built
from netfixtures import FakeBoard, make_store, watch_while_publishing
from rich.console import Console

from camctl.board.config import PublishConfig
from camctl.board.publish import Publisher
from camctl.cli import main
from camctl.ground import views
from camctl.ground.status import STATUS_CAMERA_FIELDS, STATUS_FIELDS, normalize_status
from camctl.ground.views import render_status

LOOP = PublishConfig(bind="tcp://127.0.0.1:*", events="tcp://127.0.0.1:*")


def _ls_json(path: Path, capsys: pytest.CaptureFixture) -> dict:
    assert main(["ls", str(path), "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_ls_json_numbers(built: Built, capsys: pytest.CaptureFixture) -> None:
    data = _ls_json(built.root, capsys)
    flights = {(f["board"], f["flight"]): f for f in data["flights"]}
    assert set(flights) == {(b, FLIGHT) for b in BOARDS}
    for (board, flight), fl in flights.items():
        assert fl["index"] == "current" and fl["release_wall"] == "2026-01-01T00:00:00.000Z"
        for cam in ("down", "up"):
            frames = built.frames[(board, cam)]
            video = [f for f in frames if not f.still]
            c = fl["cameras"][cam]
            assert c["frames"] == len(video) and c["stills"] == len(frames) - len(video)
            first, last = min(f.timestamp_ns for f in frames), max(f.timestamp_ns for f in frames)
            assert c["first_s"] == round((first - BOARDS[board]) / 1e9, 3) == -1.0
            assert c["last_s"] == round((last - BOARDS[board]) / 1e9, 3)
            assert c["duration_s"] == round((last - first) / 1e9, 3)
            assert c["start_wall"] == "2025-12-31T23:59:59.000Z"
            segs = sorted((built.root / board / flight / cam).glob("*.mcap"))
            assert c["bytes"] == sum(p.stat().st_size for p in segs) and c["segments"] == len(segs)
    assert flights[("rig-b", FLIGHT)]["faults"] == 1 and flights[("rig-b", FLIGHT)]["drops"] == 3
    assert flights[("rig-a", FLIGHT)]["faults"] == 0
    phases = [p["phase"] for p in flights[("rig-a", FLIGHT)]["phases"]]
    assert phases == ["ARMED", "DESCENT", "SEPARATION", "TOUCHDOWN", "LANDED"]


def test_ls_stale_index_rebuilt_without_writing(built: Built, tmp_path: Path,
                                                capsys: pytest.CaptureFixture) -> None:
    flight = tmp_path / "rig-a" / FLIGHT
    shutil.copytree(built.root / "rig-a" / FLIGHT, flight)
    before = (flight / "index.json").read_bytes()
    # downloaded files get new mtimes: same paths and sizes stay current
    for p in flight.glob("*/*.mcap"):
        os.utime(p, ns=(1, 1))
    assert _ls_json(flight, capsys)["flights"][0]["index"] == "current"
    seg = sorted((flight / "up").glob("*.mcap"))[-1]
    seg.rename(seg.with_name(seg.name + ".part"))  # a download in progress
    fl = _ls_json(flight, capsys)["flights"][0]
    listed = fl["cameras"]["down"]["segments"] + 1 + fl["cameras"]["up"]["segments"]
    assert fl["index"] == "rebuilt" and fl["segments_listed"] == listed
    assert fl["cameras"]["up"]["partial_files"] == [seg.name + ".part"]
    assert (flight / "index.json").read_bytes() == before  # a download is never modified by ls
    assert main(["ls", str(flight)]) == 0
    out = capsys.readouterr().out
    assert "rig-a" in out and "1 of 2 segments downloaded" in out and "(+1 partial)" in out


def test_ls_no_flight_is_one_line_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["ls", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no flights under" in err


FAKE_STATUS = {"board": "rig-a", "phase": "DESCENT", "flight": "20260101T000000Z",
               "disk_free_mb": 1234.5, "serving": False, "version": "x",
               "cameras": {"down": {"state": "running", "fps": 30.0, "frames_captured": 100,
                                    "frames_stored": 98, "durable_frames": 90, "dropped": 2,
                                    "faults": 0, "role": "down"},
                           "up": {"state": "restarting", "frames_captured": 3}}}


def test_status_json_fields_and_rendering() -> None:
    st = normalize_status(FAKE_STATUS)
    assert set(STATUS_FIELDS) <= set(st) and st["version"] == "x"  # extra fields kept
    for cam in st["cameras"].values():
        assert set(STATUS_CAMERA_FIELDS) <= set(cam)
    assert (st["cameras"]["up"]["durable_frames"] == 0
            and st["cameras"]["up"]["frames_captured"] == 3)
    assert st["cameras"]["down"] == FAKE_STATUS["cameras"]["down"]
    console = Console(record=True, width=140)
    console.print(render_status([FAKE_STATUS, {"url": "tcp://x:5555", "error": "no answer"}]))
    text = console.export_text()
    assert "rig-a" in text and "DESCENT" in text and "1234 MB" in text and "restarting" in text
    assert "98" in text and "90" in text and "tcp://x:5555: no answer" in text


def test_status_and_ls_over_a_real_board(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    make_store(tmp_path, flights=("f1",), cameras=("down",), segments=2, frames=5)
    pub = Publisher(FakeBoard("rig-s", tmp_path), LOOP)
    pub.start()
    try:
        assert main(["status", "--connect", pub.router_endpoint, "--json"]) == 0
        st = json.loads(capsys.readouterr().out)
        assert list(st)[:len(STATUS_FIELDS)] == list(STATUS_FIELDS) and st["board"] == "rig-s"
        assert main(["ls", "--connect", pub.router_endpoint, "--json"]) == 0
        ls = json.loads(capsys.readouterr().out)
        assert ls["board"] == "rig-s" and ls["serving"] is True
        down = ls["flights"]["f1"]["down"]
        assert down["frames"] == 10 and down["segments"] == 2
        assert main(["status", "--connect", pub.router_endpoint]) == 0
        assert "rig-s" in capsys.readouterr().out
    finally:
        pub.close()


def _watch_sees_the_broadcast(pub: Publisher, board: str, **status_kw: Any) -> None:
    """``status --watch --json`` of ``pub``'s board: the board's own STATUS says LANDED, only the
    PUB broadcast says DESCENT; the watch must show the broadcast, then stop cleanly."""
    seen = watch_while_publishing(pub, {**FAKE_STATUS, "board": board},
                                  lambda phases: "DESCENT" in phases, **status_kw)
    assert seen[0] == "LANDED" and seen[-1] == "DESCENT"


def test_status_watch_takes_live_pub_updates(tmp_path: Path) -> None:
    pub = Publisher(FakeBoard("rig-w", tmp_path), LOOP)
    pub.start()
    _watch_sees_the_broadcast(pub, "rig-w")


def test_cli_uses_views(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    monkeypatch.setattr(views, "status_many", lambda *a, **k: calls.append("status") or 0)
    monkeypatch.setattr(views, "ls_local", lambda *a, **k: calls.append("ls") or 0)
    assert main(["status", "--connect", "tcp://127.0.0.1:1"]) == 0
    assert main(["ls", "."]) == 0
    assert calls == ["status", "ls"]


def test_status_watch_takes_pub_updates_from_a_board_with_curve_on(tmp_path: Path) -> None:
    from camctl.board.config import PublishConfig
    from camctl.common.keys import client_curves, create_keys

    keys = tmp_path / "keys"
    create_keys(keys, boards=["rig-c"])
    pub = Publisher(FakeBoard("rig-c", tmp_path), PublishConfig(bind="tcp://127.0.0.1:*",
                                                                 events="tcp://127.0.0.1:*",
                                                                 curve_keys=str(keys / "rig-c")))
    pub.start()
    curve = client_curves(keys / "ground", [pub.router_endpoint],
                          [str(keys / "ground" / "servers" / "rig-c.key")])
    _watch_sees_the_broadcast(pub, "rig-c", curve=curve)


def test_status_shows_each_sensor_and_what_it_reads_now() -> None:
    """`camctl status` of a board with sensors (issue 29): a row per sensor, its state and its
    newest |a| or altitude; a dead one in words."""
    st = {**FAKE_STATUS, "sensors": {
        "imu": {"kind": "imu", "ok": True, "rate_hz": 416, "samples": 4170, "read_errors": 0,
                "last": {"accel_g": 0.987}},
        "baro": {"kind": "baro", "ok": False, "error": "baro bmp390: no device answers",
                 "rate_hz": 50, "samples": 0, "read_errors": 3, "last": {}}}}
    console = Console(record=True, width=140)
    console.print(render_status([st]))
    text = console.export_text()
    assert "|a| 0.99 g" in text and "4170" in text
    assert "no device answers" in text and "baro" in text
    console = Console(record=True, width=140)
    console.print(render_status([FAKE_STATUS]))
    assert "read errors" not in console.export_text()  # a board without sensors: as before
