"""The closed ledger over a whole board: ``captured = stored + dropped (by reason) + aged out`` for
every camera in ``status``, in ``ls`` of the board's store and in ``ls`` of a ground download, with
losses forced by faults (a camera that throws and stalls, a pre-trigger ring too small for its
frames, a store with no room, a store that cannot open) and under load (two cameras at 60 fps on one
encoder thread)."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from boards import main_loop, make_config, replacements_fail, replacements_heal
from waiting import wait_for

from camctl.board.config import parse_config
from camctl.board.daemon import Daemon
from camctl.board.sdnotify import Notifier
from camctl.ground import fetch
from camctl.ground.flights import find_flights, summarize_flight
from camctl.store import iter_events


def config(tmp: Path, *, up_stills: str = "video", **store: Any):
    cams = []
    for i, name in enumerate(("down", "up")):
        cam: dict[str, Any] = {"name": name, "role": name, "backend": "sim", "size": [320, 240],
                               "seed": 3 + i, "pretrigger_s": 0.5, "stills": ["release"],
                               "fps": {"ARMED": 30, "DESCENT": 60, "SEPARATION": 60,
                                       "TOUCHDOWN": 60}}
        if name == "up":
            cam["still_size"] = up_stills
        # throws, then stalls (the sensor runs on: a sequence gap); its ring holds ~2 frames
        if name == "down":
            cam.update(faults=[{"kind": "exception", "at_s": 0.2},
                               {"kind": "stall", "at_s": 0.5, "duration_s": 0.5}],
                       pretrigger_mb=0.01)
        cams.append(cam)
    return parse_config({
        "board": "rig-l",
        "store": {"dir": str(tmp / "store"), "segment_mb": 4, "reserve_mb": 1, **store},
        "gpio": {"backend": "mock", "bounce_ms": 5,
                 "events": {"arm": 17, "release": 27, "touchdown": 23}},
        "phases": {"post_touchdown_s": 0.2},
        "encode": {"threads": 1, "max_inflight": 1},
        "cameras": cams,
        "publish": {"bind": "tcp://127.0.0.1:*", "events": "tcp://127.0.0.1:*",
                    "serve_during_flight": False},
    })


def _all_cameras(d: Daemon, ok: Callable[[dict], bool]) -> bool:
    return all(ok(c) for c in d.status()["cameras"].values())


def fly(d: Daemon) -> dict:
    with main_loop(d):
        d.command("arm", {})
        wait_for(lambda: _all_cameras(d, lambda c: c["frames_captured"] >= 40), "ARMED frames")
        d.command("event", {"name": "release"})
        wait_for(lambda: _all_cameras(d, lambda c: c["ledger"]["stored"] >= 60), "DESCENT frames")
        d.command("event", {"name": "touchdown"})
        return wait_for(lambda: (s := d.status())["phase"] == "LANDED" and s["serving"] and s,
                        "LANDED and serving")


def books_of(cams: dict) -> dict:
    return {n: (c["ledger"]["captured"], c["ledger"]["stored"], c["ledger"]["dropped"],
                c["ledger"]["aged_out"])
            for n, c in cams.items() if n in ("down", "up")}


def check(ls_cams: dict) -> None:
    for name in ("down", "up"):
        b = ls_cams[name]["ledger"]
        assert b["balanced"] is True, (name, b)
        assert b["captured"] == b["stored"] + sum(b["dropped"].values()) + b["aged_out"], (name, b)


def test_books_close_in_status_ls_and_a_ground_download(tmp_path: Path) -> None:
    with Daemon(config(tmp_path), notifier=Notifier(environ={})) as d:
        st = fly(d)
        cams = st["cameras"]
        for name, c in cams.items():
            led = c["ledger"]
            dropped = sum(c["dropped_by_reason"].values())
            assert led["pending"] == 0 and led["captured"] > 60, (name, led)
            assert led["captured"] == led["stored"] + dropped + led["aged_out"], (
                name, led, c["dropped_by_reason"])
            assert c["dropped"] == led["dropped"] == dropped
        down = cams["down"]["dropped_by_reason"]
        # forced by faults
        assert down.get("ring_overflow", 0) > 0 and down.get("sensor_gap", 0) > 0, down
        assert cams["up"]["ledger"]["aged_out"] > 0  # 0.5 s ring at 30 fps, armed for over a second
        fdir = tmp_path / "store" / st["flight"]
        on_board = summarize_flight(find_flights(fdir)[0])
        check(on_board["cameras"])
        status_books = {n: (c["ledger"]["captured"], c["ledger"]["stored"], c["ledger"]["dropped"],
                            c["ledger"]["aged_out"]) for n, c in cams.items()}
        ls_books = {n: (c["ledger"]["captured"], c["ledger"]["stored"],
                        sum(c["ledger"]["dropped"].values()), c["ledger"]["aged_out"])
                    for n, c in on_board["cameras"].items() if n in cams}
        assert ls_books == status_books
        assert on_board["drops"] == sum(c["dropped"] for c in cams.values())
        # per interval, not one total: a flight of a few seconds has several records per camera
        recs = [e for seg in sorted((fdir / "events").glob("*.mcap")) for e in iter_events(seg)
                if e.get("kind") == "ledger"]
        assert len([r for r in recs if r["camera"] == "down"]) >= 2
        # the ground's download tells the same story (ls reads the downloaded event log)
        report = fetch([d.publisher.router_endpoint], tmp_path / "out", progress=False,
                       give_up_after_s=30)
        assert report.ok, report.summary()
    got = summarize_flight(find_flights(tmp_path / "out" / "rig-l" / st["flight"])[0])
    check(got["cameras"])
    assert {n: c["ledger"] for n, c in got["cameras"].items() if n in cams} == \
        {n: c["ledger"] for n, c in on_board["cameras"].items() if n in cams}


def test_a_full_store_drops_are_in_the_books(tmp_path: Path) -> None:
    # never room enough
    with Daemon(config(tmp_path, reserve_mb=10**9), notifier=Notifier(environ={})) as d:
        st = fly_short(d)
    for name, c in st["cameras"].items():
        led = c["ledger"]
        assert c["dropped_by_reason"].get("store_full", 0) > 0, (name, c["dropped_by_reason"])
        assert led["captured"] == led["stored"] + led["dropped"] + led["aged_out"], (name, led)
    check(summarize_flight(find_flights(tmp_path / "store" / st["flight"])[0])["cameras"])


def test_frames_refused_when_the_flight_cannot_open_are_counted(tmp_path: Path,
                                                                monkeypatch) -> None:
    import camctl.store

    def cannot_open(*_a, **_k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(camctl.store, "FlightStore", cannot_open)
    with Daemon(config(tmp_path), notifier=Notifier(environ={})) as d:
        st = fly_short(d)
    assert st["flight"] == ""
    for name, c in st["cameras"].items():
        led = c["ledger"]
        assert c["dropped_by_reason"].get("store_refused", 0) > 0, (name, c)
        assert led["stored"] == 0 and led["captured"] == led["dropped"] + led["aged_out"], (
            name, led)


def test_a_full_resolution_still_is_stored_its_pause_booked_and_the_books_close(
        tmp_path: Path) -> None:
    """The sim's still_size 'full': the whole sensor after a mode switch, the video frames the
    switch cost under still_mode_switch, and every book still closes."""
    from camctl.store import iter_frames

    with Daemon(config(tmp_path, up_stills="full"), notifier=Notifier(environ={})) as d:
        st = fly_short(d)
    up = st["cameras"]["up"]
    assert up["dropped_by_reason"].get("still_mode_switch", 0) >= 3, up["dropped_by_reason"]
    assert "still_mode_switch" not in st["cameras"]["down"]["dropped_by_reason"]
    led = up["ledger"]
    assert led["captured"] == led["stored"] + led["dropped"] + led["aged_out"], led
    flight = find_flights(tmp_path / "store" / st["flight"])[0]
    check(summarize_flight(flight)["cameras"])
    stills = [(fr.width, fr.height) for seg in sorted((flight.path / "up").glob("*.mcap"))
              for fr in iter_frames(seg) if fr.still]
    assert stills == [(4608, 2592)]


def fly_short(d: Daemon) -> dict:
    d.command("arm", {})
    wait_for(lambda: _all_cameras(d, lambda c: c["frames_captured"] >= 10), "ARMED frames")
    d.command("event", {"name": "release"})
    wait_for(lambda: _all_cameras(d, lambda c: c["ledger"]["captured"] >= 40), "DESCENT")
    d.command("event", {"name": "touchdown"})
    with main_loop(d):
        return wait_for(lambda: (s := d.status())["phase"] == "LANDED" and all(
            c["state"] == "idle" for c in s["cameras"].values()) and s["serving"] and s, "LANDED")


pytestmark = pytest.mark.slow


def test_arming_does_no_disk_io_under_the_phase_machine_lock(tmp_path: Path, monkeypatch) -> None:
    """Opening a flight (mkdir, fsync) must not hold the GPIO thread: while the store's open is
    stuck, the edge returns and the next edge (release) still goes through the machine."""
    import camctl.store

    real, gate, entered = camctl.store.FlightStore, threading.Event(), threading.Event()

    def slow_open(*a, **k):
        entered.set()
        gate.wait(30)
        return real(*a, **k)

    monkeypatch.setattr(camctl.store, "FlightStore", slow_open)
    with Daemon(config(tmp_path), notifier=Notifier(environ={})) as d:
        done = threading.Event()

        def edges() -> None:
            d.machine.handle("arm", source="gpio")
            d.machine.handle("release", source="gpio")
            done.set()

        threading.Thread(target=edges, daemon=True).start()
        try:
            assert entered.wait(30)
            assert done.wait(30), "an edge waited for the flight's files to be opened"
            assert d.machine.phase == "DESCENT"
        finally:
            gate.set()
        flight = wait_for(lambda: d.flight, "the flight to open")
    events = tmp_path / "store" / flight / "events"
    phases = [e["phase_to"] for seg in sorted(events.glob("*.mcap"))
              for e in iter_events(seg) if e.get("kind") == "phase"]
    assert phases[:2] == ["ARMED", "DESCENT"]  # records made before the store opened are in its log


def test_a_disarm_while_the_flight_opens_still_finishes_it(tmp_path: Path, monkeypatch) -> None:
    """The open runs on its own thread: an arm and a disarm edge that both come before it ends must
    still leave a finished flight (not one open until the daemon stops)."""
    import camctl.store

    real, gate = camctl.store.FlightStore, threading.Event()

    def slow_open(*a, **k):
        gate.wait(30)
        return real(*a, **k)

    monkeypatch.setattr(camctl.store, "FlightStore", slow_open)
    with Daemon(config(tmp_path), notifier=Notifier(environ={})) as d:
        d.machine.handle("arm", source="gpio")
        d.machine.handle("disarm", source="gpio")
        gate.set()
        flight = wait_for(lambda: d.flight, "the flight to open")
        # the store writes index.json, then marks itself finished: wait for both (CI caught the gap)
        wait_for(lambda: (tmp_path / "store" / flight / "index.json").exists() and d.store.finished,
                 "the flight to be finished")
        assert d.serving()


def _ls_json(folder: Path) -> dict:
    out = subprocess.run([sys.executable, "-m", "camctl", "ls", str(folder), "--json"],
                         capture_output=True, text=True)
    assert out.returncode == 0, out
    return json.loads(out.stdout)


def test_a_camera_restarted_after_a_hang_is_in_the_books_on_the_board_and_the_ground(
        tmp_path: Path, monkeypatch) -> None:
    """The watchdog's replacement runner counts into the ledger: ``ls`` balances on both sides."""
    cfg = make_config(tmp_path, faults=[{"kind": "hang", "at_s": 1.0, "duration_s": 600}])
    d = Daemon(cfg, notifier=Notifier(environ={}))
    try:
        d.start()  # the boot check is done: every camera built from now on is a replacement
        replacements_heal(monkeypatch)
        hung = d.runners["down"]
        with main_loop(d):  # its watchdog restarts the hung camera
            d.command("arm", {})
            d.command("event", {"name": "release"})  # before the hang: the ring is flushed by then
            fresh = wait_for(lambda: d.runners["down"] is not hung and d.runners["down"],
                             "the camera restarted")
            wait_for(lambda: fresh.stats.frames_captured >= 10, "frames from the restarted camera")
            d.command("event", {"name": "touchdown"})
            wait_for(lambda: (s := d.status())["phase"] == "LANDED" and s["serving"],
                     "LANDED and serving")
            router = d.publisher.router_endpoint
            out = subprocess.run([sys.executable, "-m", "camctl", "fetch", "--connect", router,
                                  "--out", str(tmp_path / "out"), "--give-up-after", "30"],
                                 capture_output=True, text=True)
            assert out.returncode == 0, out
    finally:
        d.close()
    both = hung.stats.frames_captured + fresh.stats.frames_captured
    for folder in (tmp_path / "store", tmp_path / "out"):
        [flight] = _ls_json(folder)["flights"]
        books = flight["cameras"]["down"]["ledger"]
        assert books["balanced"] is True, (folder, books)
        assert books["captured"] >= both > hung.stats.frames_captured, (folder, books, both)


@pytest.mark.parametrize("hang_s", [600.0, 5.0], ids=["stays-stuck", "comes-back-in-flight"])
def test_frames_of_a_camera_abandoned_in_armed_are_dropped_in_the_flights_books(
        tmp_path: Path, monkeypatch, hang_s: float) -> None:
    """A hang in ARMED: the abandoned runner's pre-trigger ring goes to its replacement (aged out
    there, the release coming seconds later) and whatever it still captures or encodes, should its
    thread come back while the flight is open, is dropped as ``abandoned`` in the flight's ledger,
    so ``ls`` of the board's store balances."""
    cfg = make_config(tmp_path, faults=[{"kind": "hang", "at_s": 1.0, "duration_s": hang_s}])
    d = Daemon(cfg, notifier=Notifier(environ={}))
    try:
        d.start()
        replacements_heal(monkeypatch)
        hung = d.runners["down"]
        with main_loop(d):
            d.command("arm", {})  # the hang comes 1 s after the open: the ring holds ARMED frames
            fresh = wait_for(lambda: d.runners["down"] is not hung and d.runners["down"],
                             "the restart")
            wait_for(lambda: fresh.stats.frames_captured >= 5, "frames from the restarted camera")
            d.command("event", {"name": "release"})
            wait_for(lambda: fresh.stats.sent_to_store >= 10,
                     "DESCENT frames of the restarted camera")
            if hang_s < 60:  # the stuck capture returns a frame while the flight is open
                wait_for(lambda: hung.stats.state == "stopped", "the abandoned thread to end")
            d.command("event", {"name": "touchdown"})
            wait_for(lambda: (s := d.status())["phase"] == "LANDED" and s["serving"],
                     "LANDED, serving")
    finally:
        d.close()
    [flight] = _ls_json(tmp_path / "store")["flights"]
    books = flight["cameras"]["down"]["ledger"]
    assert books["balanced"] is True, books
    # the ring held about 1 s of ARMED frames at 10 fps when the camera hung: handed over, then
    # aged out (camctl.board.cameras_fleet)
    assert len(hung.ring) == 0 and books["aged_out"] >= 10, books


def test_frames_of_a_camera_isolated_in_armed_are_dropped_in_the_flights_books(
        tmp_path: Path, monkeypatch) -> None:
    """A hang in ARMED with no fresh camera to be had (the backend cannot build one): the camera is
    isolated, and its pre-trigger ring is dropped as ``abandoned`` in the flight's ledger at once,
    not left counted as captured when the flight's last books are written."""
    cfg = make_config(tmp_path, faults=[{"kind": "hang", "at_s": 1.0, "duration_s": 600.0}])
    d = Daemon(cfg, notifier=Notifier(environ={}))
    try:
        d.start()
        replacements_fail(monkeypatch)
        hung = d.runners["down"]
        with main_loop(d):
            d.command("arm", {})  # the hang comes 1 s after the open: the ring holds ARMED frames
            wait_for(lambda: hung.isolated, "the isolation")
            d.command("event", {"name": "release"})
            wait_for(lambda: d.runners["up"].stats.sent_to_store >= 10, "DESCENT frames of 'up'")
            d.command("event", {"name": "touchdown"})
            wait_for(lambda: (s := d.status())["phase"] == "LANDED" and s["serving"],
                     "LANDED, serving")
            assert d.status()["cameras"]["down"]["state"] == "isolated"
    finally:
        d.close()
    [flight] = _ls_json(tmp_path / "store")["flights"]
    books = flight["cameras"]["down"]["ledger"]
    assert books["balanced"] is True, books
    assert len(hung.ring) == 0 and books["dropped"].get("abandoned", 0) >= 10, books
