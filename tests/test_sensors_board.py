"""Sensors on a board: a real ``camctl run`` with a sim IMU and barometer and no release or
touchdown line, driven by the ``scene`` command: its IMU fires the phases near the scene's true
moments, its flight holds imu/ and baro/ segments that verify clean with balanced books. And the
scene command's refusals, a sensor that does not open."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from camctl.board.commands import OperatorCommands
from camctl.board.config import parse_config
from camctl.board.events import PhaseMachine
from camctl.board.status import status_line
from camctl.common.ledger import read_ledger
from camctl.common.records import FaultRecord, PhaseRecord, SceneRecord, read
from camctl.demo import _command, _status, start_board, write_board_config
from camctl.exc import CommandRefused
from camctl.store import iter_events, iter_samples, verify

TOLERANCE_MS = 20.0  # the "within 20 ms of the scene's true moments"


def _wait(board: Any, ok: Any, what: str, timeout_s: float = 60.0) -> dict:
    deadline = time.monotonic() + timeout_s
    while True:
        st = _status(board)
        if ok(st):
            return st
        if time.monotonic() > deadline:  # a hang, not a speed limit: the board never got there
            raise AssertionError(f"{what}: {st['phase']} {st.get('sensors')}")
        time.sleep(0.05)


def _events(flight_dir: Path) -> list[Any]:
    return [r for seg in sorted((flight_dir / "events").glob("*.mcap"))
            for r in read(iter_events(seg))]


def test_a_board_without_release_and_touchdown_lines_flies_on_its_imu(tmp_path: Path) -> None:
    cfg = write_board_config(tmp_path / "b", "imu-board", 0, size=(160, 120), descent_s=3,
                             post_touchdown_s=0.5, stills=(), sensors=True,
                             lines=("arm", "separation"))
    store = tmp_path / "b" / "store"
    board = start_board(cfg, store, "imu-board")
    try:
        # before the drop: live values, the vehicle at rest on the hook (1 g)
        st = _wait(board, lambda s: all(v["ok"] for v in s["sensors"].values()), "sensors live")
        assert set(st["sensors"]) == {"imu", "baro"}
        assert st["sensors"]["imu"]["last"]["accel_g"] == pytest.approx(1.0, abs=0.2)
        assert st["sensors"]["imu"]["kind"] == "imu" and st["sensors"]["baro"]["kind"] == "baro"
        _command(board, "arm")
        time.sleep(0.6)
        reply = _command(board, "scene", event="release")
        assert reply["outcome"] == "scene" and reply["changed"] is False
        _wait(board, lambda s: s["phase"] == "DESCENT", "the IMU's release")
        time.sleep(0.8)
        _command(board, "scene", event="separation")
        _wait(board, lambda s: s["phase"] == "SEPARATION", "the IMU's separation")
        # the separation line (gpio, imu): its edge after the IMU's is a confirmation, and the
        # operator's pulse says so
        reply = _command(board, "event", name="separation")
        assert (reply["outcome"], reply["changed"]) == ("confirmed", False), reply
        time.sleep(0.8)
        _command(board, "scene", event="touchdown")
        st = _wait(board, lambda s: s["phase"] == "LANDED" and s["serving"], "landed")
    finally:
        board.stop()
    flight = store / st["flight"]
    events = _events(flight)
    scene = {r.name: r.mono_ns for r in events if isinstance(r, SceneRecord)}
    fired = {r.event: r for r in events if isinstance(r, PhaseRecord)}
    assert set(scene) == {"release", "separation", "touchdown"}
    for event in ("release", "separation", "touchdown"):
        rec = fired[event]
        assert rec.source == "imu", (event, rec)
        offset_ms = (rec.mono_ns - scene[event]) / 1e6
        assert abs(offset_ms) <= TOLERANCE_MS, (event, offset_ms)
    # the flight holds both sensors, clean, with books that balance
    assert verify(flight).status == "clean"
    books = read_ledger([r.encode() for r in events])
    for name in ("imu", "baro"):
        segs = sorted((flight / name).glob("*.mcap"))
        assert segs, name
        stored = sum(len(b.t_ns) for seg in segs for b in iter_samples(seg))
        b = books[name]
        assert b["captured"] > 0 and b["captured"] == stored + sum(b["dropped"].values()), (
            name, b, stored)


def _machine_and_cfg(tmp_path: Path) -> tuple[PhaseMachine, Any]:
    cfg = parse_config({"board": "b", "store": {"dir": str(tmp_path)},
                        "cameras": [{"name": "down", "backend": "sim"}]})
    return PhaseMachine(cfg.phases), cfg


def test_the_scene_command_is_refused_without_a_sim_sensor_and_for_an_unknown_event(
        tmp_path: Path) -> None:
    machine, cfg = _machine_and_cfg(tmp_path)
    ops = OperatorCommands(cfg, machine, None, wait_open=lambda _t: None)
    with pytest.raises(CommandRefused, match="scene needs a sim sensor"):
        ops.command("scene", {"event": "release"})
    marks: list[str] = []
    ops = OperatorCommands(cfg, machine, None, wait_open=lambda _t: None,
                           scene=lambda e: marks.append(e) or 5)
    with pytest.raises(CommandRefused, match=r"scene needs an event \(release, separation, "
                                             r"touchdown\), got 'landing'"):
        ops.command("scene", {"event": "landing"})
    assert ops.command("scene", {"event": "touchdown"})["scene_ns"] == 5
    assert marks == ["touchdown"] and machine.phase == "SAFE"  # the world moved, not the board


@pytest.mark.parametrize("where", ["open", "build"])
def test_a_sensor_that_does_not_open_is_a_fault_and_the_board_flies_on(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str) -> None:
    import camctl.board.daemon as daemon_mod
    from camctl.board.sensors.base import SensorError

    real = daemon_mod.open_sensor

    def broken_baro(scfg: Any, **kw: Any) -> Any:
        if scfg.kind == "baro" and where == "build":  # its driver does not even load
            raise SensorError("baro bmp390: no answer at its address (smbus2 missing)")
        dev = real(scfg, **kw)
        if scfg.kind == "baro":
            def refuse() -> None:
                raise SensorError(f"{dev.where}: no answer at its address")
            dev.open = refuse  # type: ignore[method-assign]
        return dev

    monkeypatch.setattr(daemon_mod, "open_sensor", broken_baro)
    cfg = parse_config({
        "board": "b", "store": {"dir": str(tmp_path / "store"), "reserve_mb": 1},
        "gpio": {"backend": "mock", "events": {"arm": 17, "release": 27}},
        "cameras": [{"name": "down", "backend": "sim", "size": [160, 120]}],
        "sensors": [{"name": "imu", "backend": "sim", "kind": "imu"},
                    {"name": "baro", "backend": "sim", "kind": "baro"}],
        "publish": {"bind": "tcp://127.0.0.1:*", "events": "tcp://127.0.0.1:*"}})
    faults: list[dict] = []
    d = daemon_mod.Daemon(cfg)
    monkeypatch.setattr(d, "_publish", lambda topic, body: faults.append(body)
                        if topic == "fault" else None)
    with d:
        deadline = time.monotonic() + 30  # a hang, not a speed limit: the IMU's first sample
        while not d.status()["sensors"]["imu"]["ok"] and time.monotonic() < deadline:
            time.sleep(0.01)
        full = d.status()
        st = full["sensors"]
        assert st["baro"]["ok"] is False and "no answer at its address" in st["baro"]["error"]
        assert st["baro"]["kind"] == "baro" and set(st["baro"]) == set(st["imu"])
        assert status_line(full).endswith(" sensors down: baro"), status_line(full)
        assert d.command("arm", {})["phase"] == "ARMED"  # flies on
    [fault] = [FaultRecord.decode(f) for f in faults if f.get("name") == "sensor_open_failed"]
    assert fault.extra["sensor"] == "baro" and "no answer" in fault.message


def test_a_resumed_flight_records_its_sensors_on(tmp_path: Path) -> None:
    cfg = write_board_config(tmp_path / "b", "resume-s", 0, size=(160, 120), descent_s=3,
                             post_touchdown_s=0.5, stills=(), sensors=True)
    store = tmp_path / "b" / "store"
    board = start_board(cfg, store, "resume-s")
    try:
        _command(board, "arm")
        _command(board, "scene", event="release")
        st = _wait(board, lambda s: s["phase"] == "DESCENT" and s["flight"], "descent")
        # the release line (gpio, imu) held after the IMU's release: a confirmation, and the
        # operator's reply says so; let go, it is at rest again at the restart
        reply = _command(board, "event", name="release", line="hold")
        assert (reply["outcome"], reply["line"]) == ("confirmed", "hold"), reply
        _command(board, "event", name="release", line="release")
        flight = store / st["flight"]
        # a committed batch of each sensor before the kill
        _wait(board, lambda s: all(list((flight / n).glob("*.mcap")) for n in ("imu", "baro"))
              and all(c["durable_frames"] > 0 for c in s["cameras"].values()), "durable")
        time.sleep(0.5)
        board.kill9()
        before = {n: len(list((flight / n).glob("*.mcap"))) for n in ("imu", "baro")}
        board = start_board(cfg, store, "resume-s")
        st = _wait(board, lambda s: s["phase"] == "DESCENT", "resumed")
        assert store / st["flight"] == flight
        time.sleep(0.5)
        _command(board, "event", name="touchdown")
        _wait(board, lambda s: s["phase"] == "LANDED" and s["serving"], "landed")
        assert board.stop() == 0
    finally:
        board.kill9()
    assert verify(flight).status == "clean", verify(flight).errors
    for name, n in before.items():
        segs = sorted((flight / name).glob("*.mcap"))
        assert len(segs) > n, (name, segs)  # the resumed run's own segments
        assert sum(len(b.t_ns) for b in iter_samples(segs[-1])) > 0, name
        # a batch's seq is unique in its source across the runs: the resumed run numbers on
        seqs = [b.seq for seg in segs for b in iter_samples(seg)]
        assert len(seqs) == len(set(seqs)) and seqs == sorted(seqs), (name, seqs)
        # the whole flight's books balance: the killed run's last interval closed at the resume
        books = read_ledger([r.encode() for r in _events(flight)])[name]
        stored = sum(len(b.t_ns) for seg in segs for b in iter_samples(seg))
        assert books["captured"] == stored + sum(books["dropped"].values()), (name, books, stored)
