"""A board that restarts mid-flight goes on with the same flight.

The kill -9 test runs real ``camctl run`` processes (sim cameras, mock GPIO lines held over the
operator port, ``camctl arm --hold``): the held levels live in ``mock-lines.json`` beside the store,
as wiring would hold them across the restart. The other tests write a flight's event log with the
real :class:`FlightStore` (the persisted state is just files) and start an in-process
:class:`Daemon` on it.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from boards import make_config, replacements_fail
from waiting import wait_for

from camctl.board.commands import MOCK_LINES
from camctl.board.config import Config
from camctl.board.daemon import Daemon
from camctl.board.sdnotify import Notifier
from camctl.demo import start_board, write_board_config
from camctl.ground import Client
from camctl.store import FlightStore, iter_events, iter_frames, list_flights, verify

pytestmark = pytest.mark.slow


def _events(flight_dir: Path) -> list[dict]:
    return [e for seg in sorted((flight_dir / "events").glob("*.mcap")) for e in iter_events(seg)]


def _frames(flight_dir: Path, cam: str) -> list:
    return [f for seg in sorted((flight_dir / cam).glob("*.mcap")) for f in iter_frames(seg)]


def test_kill9_in_descent_then_restart_goes_on_to_landed_in_the_same_flight(tmp_path: Path) -> None:
    cfg_path = write_board_config(tmp_path / "b", "resume-b", 0, size=(160, 120),
                                  post_touchdown_s=0.5, stills=())
    store = tmp_path / "b" / "store"
    board = start_board(cfg_path, store, "resume-b")
    try:
        # the arm key, turned on and left on, through the real CLI
        out = subprocess.run([sys.executable, "-m", "camctl", "arm", "--hold",
                              "--connect", board.router],
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 0 and "ARMED" in out.stdout, out
        with Client(board.router, timeout_s=10) as c:
            assert c.command("event", name="release")["phase"] == "DESCENT"
            flight = c.status()["flight"]

            def durable_status() -> dict:
                s = c.status()
                return s and all(cam["durable_frames"] >= 5 for cam in s["cameras"].values()) and s

            st = wait_for(durable_status, "durable frames before the kill")
        durable_before = {n: cam["durable_frames"] for n, cam in st["cameras"].items()}
        board.kill9()
        killed_wall = time.time_ns()
        assert json.loads((store / MOCK_LINES).read_text()) == {"arm": True, "release": False,
                                                                "separation": False,
                                                                "touchdown": False}

        board = start_board(cfg_path, store, "resume-b")
        with Client(board.router, timeout_s=10) as c:
            st = c.status()
            assert (st["phase"], st["flight"]) == ("DESCENT", flight), st
            assert st["resumed"]["gap_s"] > 0 and st["resumed"]["phase"] == "DESCENT"
            wait_for(lambda: all(cam["frames_stored"] >= 3
                                 for cam in c.status()["cameras"].values()),
                     "frames after the restart")
            assert c.command("event", name="touchdown")["phase"] == "TOUCHDOWN"
            wait_for(lambda: (s := c.status())["phase"] == "LANDED" and s["serving"],
                     "LANDED and serving")
            landed = c.status()["cameras"]
        from camctl.ground import fetch

        got = fetch([board.router], tmp_path / "ground", give_up_after_s=20, thumbs_only=True,
                    progress=False)
        previews = sum(b.thumbs for b in got.boards)
        # named by seq: a resumed flight whose seqs restarted at 0 gave 8 previews, 4 files
        files = list((tmp_path / "ground").rglob("thumbs/*/*.jpg"))
        assert got.ok and previews > 0 and len(files) == previews, (got.summary(), files)
        assert board.stop() == 0
    finally:
        board.kill9()
    assert list_flights(store) == [flight]
    fdir = store / flight
    assert verify(fdir).exit_code == 0
    for cam, n in durable_before.items():
        frames = _frames(fdir, cam)
        before = [f for f in frames if f.log_ns < killed_wall]
        after = [f for f in frames if f.log_ns > killed_wall]
        # every frame durable at the kill is still there
        assert len(before) >= n, (cam, len(before), n)
        assert len(after) >= 3, (cam, len(after))
        assert {f.phase for f in after} >= {"DESCENT"}
        seqs = [f.seq for f in frames]  # a frame's identity in the flight, across the restart
        assert len(seqs) == len(set(seqs)) and min(f.seq for f in after) > max(
            f.seq for f in before), (cam, seqs)
    events = _events(fdir)
    resumes = [e for e in events if e.get("kind") == "resume"]
    assert (len(resumes) == 1 and resumes[0]["phase"] == "DESCENT"
            and resumes[0]["gap_s"] > 0), resumes
    assert resumes[0]["clock"] == "monotonic"  # the same boot: a daemon restart, not a reboot
    phases = [e["phase_to"] for e in events if e.get("kind") == "phase"]
    assert phases == ["ARMED", "DESCENT", "TOUCHDOWN", "LANDED"], phases
    # every frame accounted for across the kill: what the dead process held or never counted is
    # closed by the resume's "restart" ledger records (ls said NOT BALANCED after every kill -9
    # before them)
    from camctl.ground.flights import find_flights, summarize_flight

    cams = summarize_flight(find_flights(fdir)[0])["cameras"]
    for cam in durable_before:
        assert cams[cam]["ledger"]["balanced"], (cam, cams[cam]["ledger"])
        # one set of books for the whole flight: STATUS after the restart says what ls says, not
        # the books of the run since the restart (issue 26, defect 10)
        books, said = cams[cam]["ledger"], landed[cam]["ledger"]
        assert (said["captured"], said["stored"], said["dropped"], said["aged_out"]) == (
            books["captured"], books["stored"], sum(books["dropped"].values()),
            books["aged_out"]), (cam, said, books)
    restarted = {e["camera"] for e in events
                 if e.get("kind") == "ledger" and e.get("name") == "restart"}
    assert restarted <= set(cams)


# --- in-process: a persisted flight, then a Daemon started on it ----------------------------------
def persist_flight(cfg: Config, phases: list[tuple[str, float]], *,
                   levels: dict[str, bool] | None = None) -> str:
    """Write a flight that entered ``phases`` (phase, seconds ago), as a killed daemon left it."""
    root = Path(cfg.store.dir)
    flight = "20261130T010000Z"
    now = time.time_ns()
    with FlightStore(root, cfg.board, flight, cfg.store,
                     cameras=[c.name for c in cfg.cameras]) as st:
        st.log_event({"kind": "flight", "name": "open", "flight": flight,
                      "wall_ns": now - int(phases[0][1] * 1e9)})
        prev = "SAFE"
        for phase, ago in phases:
            st.log_event({"kind": "phase", "name": phase, "phase_from": prev, "phase_to": phase,
                          "wall_ns": now - int(ago * 1e9), "mono_ns": 1})
            prev = phase
        st.commit(wait=True)
    if levels is not None:
        (root / MOCK_LINES).write_text(json.dumps(levels))
    return flight


def test_touchdown_resumes_with_only_its_remaining_time(tmp_path: Path, daemon) -> None:
    # 30 s: the timers run during the start, which must not outlast them here
    cfg = make_config(tmp_path, post_touchdown_s=30.0)
    flight = persist_flight(cfg, [("ARMED", 20), ("DESCENT", 10), ("TOUCHDOWN", 1.0)])
    d = daemon(cfg=cfg)
    assert (d.phase, d.flight) == ("TOUCHDOWN", flight)
    due, target = d.machine.deadline_ns()
    assert target == "LANDED"
    # measured from the resume itself (not from the end of start-up, which may be slow under load):
    # 30 s of post-touchdown time less the 1 s already spent in TOUCHDOWN before the restart
    assert 0 < due - d.resumed["mono_ns"] <= 29.0e9
    d.machine.tick(due)
    assert d.phase == "LANDED"
    wait_for(lambda: d.serving(), "the flight finished and served")
    assert list_flights(tmp_path / "store") == [flight]


def test_touchdown_older_than_post_touchdown_lands_at_the_first_tick(tmp_path: Path,
                                                                     daemon) -> None:
    cfg = make_config(tmp_path, post_touchdown_s=3.0)
    persist_flight(cfg, [("ARMED", 20), ("DESCENT", 10), ("TOUCHDOWN", 5.0)])
    d = daemon(cfg=cfg)
    # the start's first tick, right after the resume (the timers run from there, not from READY)
    assert d.phase == "LANDED" and d.machine.history[-1].event == "timeout"


def test_landed_stays_landed_and_records_nothing(tmp_path: Path, daemon) -> None:
    cfg = make_config(tmp_path)
    flight = persist_flight(cfg, [("ARMED", 30), ("DESCENT", 20), ("TOUCHDOWN", 10), ("LANDED", 9)],
                            levels={"arm": True})
    fdir = tmp_path / "store" / flight
    before = sorted(p.name for p in fdir.rglob("*.mcap"))
    d = daemon(cfg=cfg)
    st = d.status()
    assert (st["phase"], st["flight"], st["serving"]) == ("LANDED", flight, True)
    assert flight in st["flights"]
    assert sorted(p.name for p in fdir.rglob("*.mcap")) == before
    assert d.command("disarm", {})["phase"] == "SAFE"
    d.close()
    again = daemon(cfg=cfg)  # disarmed after landing: a restart now comes up SAFE, ready to arm
    assert (again.phase, again.flight, again.resumed) == ("SAFE", "", None)
    again.command("arm", {"line": "release"})  # the key was left on: off, then on again arms
    assert again.command("arm", {"line": "hold"})["phase"] == "ARMED" and again.flight != flight


def test_armed_with_the_arm_line_released_is_disarmed(tmp_path: Path, daemon) -> None:
    cfg = make_config(tmp_path)
    flight = persist_flight(cfg, [("ARMED", 5)], levels={"arm": False})
    d = daemon(cfg=cfg)
    assert d.phase == "SAFE"
    wait_for(lambda: d.store is not None and d.store.finished, "the flight finished")
    ev = _events(tmp_path / "store" / flight)
    disarm = next(e for e in ev if e.get("kind") == "event" and e["name"] == "disarm")
    assert disarm["source"] == "resume"
    assert [e["phase_to"] for e in ev if e.get("kind") == "phase"] == ["ARMED", "SAFE"]


def test_descent_with_the_arm_key_off_goes_on_and_the_key_off_is_recorded(tmp_path: Path,
                                                                         daemon) -> None:
    # the same rule as while running (tests/test_daemon.py): a key-off never stops a descent
    cfg = make_config(tmp_path)
    flight = persist_flight(cfg, [("ARMED", 30), ("DESCENT", 4)], levels={"arm": False})
    d = daemon(cfg=cfg)
    assert (d.phase, d.flight) == ("DESCENT", flight)
    # what the flight's event log gets (on_record)
    assert [(r.name, r.source, r.phase, r.outcome) for r in d.machine.records] == [
        ("disarm", "resume", "DESCENT", "in_flight")]


def test_armed_with_the_arm_line_held_stays_armed_and_an_edge_in_the_gap_counts(tmp_path: Path,
                                                                                 daemon) -> None:
    cfg = make_config(tmp_path)
    flight = persist_flight(cfg, [("ARMED", 5)], levels={"arm": True, "release": True})
    d = daemon(cfg=cfg)
    # the break-wire broke while the daemon was down
    assert (d.phase, d.flight) == ("DESCENT", flight)
    wait_for(lambda: d.status()["cameras"]["down"]["frames_stored"] >= 2,
             "frames into the same flight")


def test_descent_with_touchdown_line_active_goes_to_touchdown(tmp_path: Path, daemon) -> None:
    cfg = make_config(tmp_path, post_touchdown_s=60)  # not landed before the test looks
    persist_flight(cfg, [("ARMED", 30), ("DESCENT", 4)], levels={"arm": True, "touchdown": True})
    d = daemon(cfg=cfg)
    assert d.phase == "TOUCHDOWN"


def test_no_flight_or_a_disarmed_one_starts_safe_even_with_the_arm_key_on(tmp_path: Path,
                                                                          daemon) -> None:
    cfg = make_config(tmp_path)
    persist_flight(cfg, [("ARMED", 30), ("SAFE", 20)], levels={"arm": True})
    d = daemon(cfg=cfg)
    assert (d.phase, d.flight, d.resumed) == ("SAFE", "", None)


# --- READY after the cameras ----------------------------------------------------------------------
def test_a_camera_that_cannot_open_is_reported_from_boot_and_the_board_comes_up(
        tmp_path: Path, monkeypatch) -> None:
    import socket

    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    sock_path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(sock_path))
    sock.settimeout(30)
    cfg = make_config(tmp_path, faults=[{"kind": "disconnect", "at_s": 0.0, "duration_s": 3600}])
    d = Daemon(cfg, notifier=Notifier(environ={"NOTIFY_SOCKET": str(sock_path)}))
    try:
        d.start()
        ready = dict(line.split("=", 1) for line in sock.recv(4096).decode().split("\n"))
        assert ready.get("READY") == "1", ready
        # the STATUS sent with READY already knows: the check ran before READY
        assert "cameras down: down=unavailable" in ready["STATUS"], ready
        st = d.status()["cameras"]
        assert (st["down"]["state"] == "unavailable"
                and "disconnected" in st["down"]["last_error"]), st["down"]
        assert st["up"]["state"] == "idle" and st["up"]["last_error"] == "", st["up"]
        # retried at ARM: the runner opens its camera again (still unplugged), the other one records
        d.command("arm", {})
        wait_for(lambda: d.status()["cameras"]["down"]["faults"] >= 1, "the retry at ARM")
        wait_for(lambda: d.status()["cameras"]["up"]["frames_captured"] >= 3,
                 "the other camera at ARM")
    finally:
        d.close()
        sock.close()
    # the boot check's verdict is in the flight's log (it was held until the flight opened)
    ev = _events(tmp_path / "store" / list_flights(tmp_path / "store")[0])
    assert any(e.get("error") == "CameraCheck" and e.get("camera") == "down" for e in ev)


def test_the_boot_check_takes_one_frame_from_every_camera_before_ready(tmp_path: Path,
                                                                       daemon) -> None:
    from camctl.board.cameras.sim import SimCamera

    opened: list[str] = []
    real_capture = SimCamera.capture

    def counting(self: SimCamera, timeout_s: float = 1.0):
        opened.append(self.name)
        return real_capture(self, timeout_s)

    SimCamera.capture = counting  # type: ignore[method-assign]
    try:
        d = daemon(cfg=make_config(tmp_path))
    finally:
        SimCamera.capture = real_capture  # type: ignore[method-assign]
    assert sorted(opened) == ["down", "up"]
    assert all(c["state"] == "idle" for c in d.status()["cameras"].values())


# --- the capture watchdog -------------------------------------------------------------------------
def test_a_capture_thread_hung_in_the_backend_is_detected_and_its_camera_restarted(
        tmp_path: Path, monkeypatch) -> None:
    # 3 in service; 2 keeps this test short
    monkeypatch.setattr("camctl.board.cameras_fleet.MAX_REPLACEMENTS", 2)
    cfg = make_config(tmp_path, faults=[{"kind": "hang", "at_s": 0.5, "duration_s": 600}])
    d = Daemon(cfg, notifier=Notifier(environ={}))
    try:
        # no main loop: this test plays it, to see the watchdog's condition before the handling
        d.start()
        d.command("arm", {})
        d.command("event", {"name": "release"})
        hung = d.runners["down"]
        wait_for(lambda: not d.capture_ok(), "the hung capture thread to be noticed", timeout_s=60)
        assert hung.activity == "capturing" and d.runners["up"].overdue_s() == 0.0
        assert d.watch_capture() == ["down"]
        assert d.capture_ok()
        fresh = d.runners["down"]
        assert fresh is not hung
        wait_for(lambda: fresh.stats.frames_captured >= 3, "frames from the restarted camera")
        up_before = d.runners["up"].stats.frames_captured
        wait_for(lambda: d.runners["up"].stats.frames_captured >= up_before + 3,
                 "the other camera going on")
        # the fresh camera hangs too (same fault schedule): after MAX_REPLACEMENTS it is isolated
        for _ in range(10):
            wait_for(lambda: not d.capture_ok() or d.runners["down"].isolated, "the next hang",
                     timeout_s=60)
            if d.runners["down"].isolated:
                break
            d.watch_capture()
        assert d.runners["down"].isolated and d.capture_ok()
        assert d.status()["cameras"]["down"]["state"] == "isolated"
        d.command("event", {"name": "touchdown"})
        d.machine.tick(time.monotonic_ns() + 10**10)
        wait_for(lambda: d.serving(), "LANDED and served without the isolated camera's last frames")
        flight = d.flight
    finally:
        d.close()
    ev = _events(tmp_path / "store" / flight)
    hangs = [e for e in ev if e.get("error") == "CaptureHung"]
    assert ([e["message"].rsplit(" ", 1)[-1] for e in hangs]
            == ["restarted"] * 2 + ["isolated"]), hangs
    assert (len(_frames(tmp_path / "store" / flight, "up"))
            > len(_frames(tmp_path / "store" / flight, "down")))


def test_sd_watchdog_keeps_coming_through_a_handled_hang(tmp_path: Path, monkeypatch) -> None:
    import socket
    import threading

    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    sock_path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(sock_path))
    sock.settimeout(0.2)
    got: list[tuple[int, str]] = []
    done = threading.Event()

    def read() -> None:
        while not done.is_set():
            with contextlib.suppress(TimeoutError):
                got.append((time.monotonic_ns(), sock.recv(4096).decode()))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    cfg = make_config(tmp_path, faults=[{"kind": "hang", "at_s": 0.3, "duration_s": 600}])
    d = Daemon(cfg, notifier=Notifier(environ={"NOTIFY_SOCKET": str(sock_path),
                                               "WATCHDOG_USEC": "200000"}))
    t = threading.Thread(target=d.run_forever, kwargs={"install_signals": False}, daemon=True)
    try:
        d.start()
        t.start()
        d.command("arm", {})
        wait_for(lambda: d.status()["cameras"]["down"]["restarts"] >= 1, "the hang handled",
                 timeout_s=60)
        handled = time.monotonic_ns()
        wait_for(lambda: sum(m == "WATCHDOG=1" and at > handled for at, m in got) >= 3,
                 "WATCHDOG after it")
    finally:
        d.request_stop()
        t.join(30)
        d.close()
        done.set()
        reader.join(5)
        sock.close()
    assert any(m.startswith("READY=1") for _, m in got)


def test_an_edge_before_the_resume_wins_and_start_does_not_fail(tmp_path: Path) -> None:
    cfg = make_config(tmp_path)
    old = persist_flight(cfg, [("ARMED", 30), ("DESCENT", 4)])
    d = Daemon(cfg, notifier=Notifier(environ={}))
    try:
        d.lines.drive("arm", True)  # an arm edge between claiming the lines and the resume
        d.start()
        assert d.phase == "ARMED" and d.flight not in ("", old) and d.resumed is None
    finally:
        d.close()
    assert sorted(list_flights(tmp_path / "store")) == sorted([old, d.flight])


def test_a_hung_camera_that_cannot_be_rebuilt_is_isolated_at_once(tmp_path: Path,
                                                                  monkeypatch) -> None:
    cfg = make_config(tmp_path, faults=[{"kind": "hang", "at_s": 0.3, "duration_s": 600}])
    d = Daemon(cfg, notifier=Notifier(environ={}))
    try:
        d.start()
        replacements_fail(monkeypatch)
        d.command("arm", {})
        wait_for(lambda: not d.capture_ok(), "the hang", timeout_s=60)
        assert d.watch_capture() == ["down"]
        assert d.runners["down"].isolated and d.capture_ok()
        assert d.status()["cameras"]["down"]["state"] == "isolated"
    finally:
        d.close()


def test_the_check_after_ready_leaves_the_resumed_flight_alone(tmp_path: Path, monkeypatch,
                                                               daemon) -> None:
    import camctl.store

    checked: list[list[str]] = []
    monkeypatch.setattr(camctl.store, "verify_later",
                        lambda root, flights=None, **_: checked.append(list(flights)))
    cfg = make_config(tmp_path)
    flight = persist_flight(cfg, [("ARMED", 30), ("DESCENT", 4)])
    d = daemon(cfg=cfg)
    # its open segments are being written: no repair under it
    assert d.flight == flight and checked == [[]]
    d.close()
    landed = make_config(tmp_path / "b")
    other = persist_flight(landed, [("ARMED", 30), ("DESCENT", 20), ("TOUCHDOWN", 10),
                                    ("LANDED", 9)])
    daemon(cfg=landed)
    assert checked[-1] == [other]  # a landed flight is only read: it gets the full check


def persist_stepped_flight(cfg: Config, phases: list[tuple[str, float]], *, boot: str,
                           wall_shift_s: float) -> str:
    """A flight as a daemon of boot ``boot`` wrote it (monotonic times stamped), ``phases`` entered
    that many seconds ago; then the wall clock stepped forward ``wall_shift_s`` (NTP setting a Pi
    without an RTC)."""
    root = Path(cfg.store.dir)
    flight = "20261130T020000Z"
    now_wall, now_mono = time.time_ns(), time.monotonic_ns()  # after the step
    shift = int(wall_shift_s * 1e9)
    with FlightStore(root, cfg.board, flight, cfg.store,
                     cameras=[c.name for c in cfg.cameras]) as st:
        ago = int(phases[0][1] * 1e9)
        st.log_event({"kind": "flight", "name": "open", "flight": flight, "boot_id": boot,
                      "wall_ns": now_wall - shift - ago, "mono_ns": now_mono - ago})
        prev = "SAFE"
        for phase, ago_s in phases:
            ago = int(ago_s * 1e9)
            st.log_event({"kind": "phase", "name": phase, "phase_from": prev, "phase_to": phase,
                          "boot_id": boot, "wall_ns": now_wall - shift - ago,
                          "mono_ns": now_mono - ago})
            prev = phase
        st.commit(wait=True)
    return flight


def test_a_wall_clock_step_during_the_gap_changes_nothing_when_only_the_daemon_restarted(
        tmp_path: Path, daemon) -> None:
    from camctl.board.resume import boot_id

    assert boot_id(), "Linux gives every boot an id in /proc/sys/kernel/random/boot_id"
    cfg = make_config(tmp_path, post_touchdown_s=30.0)  # longer than the start, under any load
    # an hour's step: by the wall clock, TOUCHDOWN began an hour ago and the board would land at
    # once, losing the post-touchdown recording; by the (unbroken) monotonic clock it began 1 s ago
    persist_stepped_flight(cfg, [("ARMED", 20), ("DESCENT", 10), ("TOUCHDOWN", 1.0)],
                           boot=boot_id(), wall_shift_s=3600)
    d = daemon(cfg=cfg)
    assert d.phase == "TOUCHDOWN" and d.resumed["clock"] == "monotonic"
    assert d.resumed["gap_s"] < 60
    due, target = d.machine.deadline_ns()
    assert target == "LANDED" and 0 < due - d.resumed["mono_ns"] <= 29.0e9
    assert d.machine.tick() is None  # not landed at the first tick


def test_after_a_reboot_the_wall_clock_relates_the_two_boots(tmp_path: Path, daemon) -> None:
    cfg = make_config(tmp_path, post_touchdown_s=3.0)
    # another boot's monotonic times mean nothing now: the same records, read by the wall clock
    persist_stepped_flight(cfg, [("ARMED", 20), ("DESCENT", 10), ("TOUCHDOWN", 1.0)],
                           boot="an-earlier-boot", wall_shift_s=3600)
    d = daemon(cfg=cfg)
    # this process's boot is older than the hour the wall clock says (the uptime wins: issue 26)
    assert d.resumed["clock"].startswith(("wall (rebooted)", "uptime"))
    assert d.resumed["gap_s"] > 3000
    assert d.phase == "LANDED" and d.machine.history[-1].event == "timeout"  # at the start


def test_restart_books_close_the_ledger_both_ways(tmp_path: Path) -> None:
    """Counted but never stored (in RAM at the kill): lost as ``restart``; stored but never counted
    (the last ledger interval died with the process): counted as captured. A camera whose books
    close needs nothing."""
    from store_helpers import frame

    from camctl.board.config import StoreConfig
    from camctl.board.resume import restart_books
    from camctl.common.ledger import balance, read_ledger

    root = tmp_path / "store"
    with FlightStore(root, "b", "F", StoreConfig(reserve_mb=0), cameras=["a", "b", "c"]) as st:
        for i in range(10):
            for cam in ("a", "b", "c"):
                st.put(frame(cam, i))
        # the last ledger intervals written before the kill: "a" counted 14 (4 still in RAM), "b"
        # only 7 (3 stored after its last flush), "c" exactly what it stored and dropped
        for cam, captured, dropped in (("a", 14, {}), ("b", 7, {}),
                                       ("c", 12, {"encoder_behind": 2})):
            st.log_event({"kind": "ledger", "name": "interval", "camera": cam, "since_ns": 0,
                          "mono_ns": 1, "wall_ns": 1, "captured": captured, "aged_out": 0,
                          "dropped": dropped, "stills_missed": 0})
        st.commit(wait=True)
    recs = restart_books(root / "F", ["a", "b", "c"], mono_ns=5, wall_ns=6)
    by = {r["camera"]: r for r in recs}
    assert set(by) == {"a", "b"}
    assert by["a"]["dropped"] == {"restart": 4} and by["a"]["captured"] == 0
    assert by["b"]["dropped"] == {} and by["b"]["captured"] == 3
    events = [e for seg in sorted((root / "F" / "events").glob("*.mcap")) for e in iter_events(seg)]
    books = read_ledger(events + recs)
    assert all(balance(books[cam], 10)["balanced"] for cam in ("a", "b", "c"))


def test_a_flight_killed_between_landed_and_its_finish_gets_its_books_closed(
        tmp_path: Path, daemon) -> None:
    """Landed, then killed before the finish flushed the last ledger interval: the restart stays
    LANDED and records only what closes the books."""
    from store_helpers import frame

    from camctl.ground.flights import find_flights, summarize_flight

    cfg = make_config(tmp_path)
    root, flight, now = Path(cfg.store.dir), "20261130T030000Z", time.time_ns()
    with FlightStore(root, cfg.board, flight, cfg.store, cameras=["down", "up"]) as st:
        st.log_event({"kind": "flight", "name": "open", "flight": flight, "wall_ns": now - 10**9})
        for i in range(6):
            st.put(frame("down", i))
            st.put(frame("up", i))
        prev = "SAFE"
        for phase in ("ARMED", "DESCENT", "TOUCHDOWN", "LANDED"):
            st.log_event({"kind": "phase", "name": phase, "phase_from": prev, "phase_to": phase,
                          "wall_ns": now - 10**8, "mono_ns": 1})
            prev = phase
        # the last flushed interval: 'down' counted 4 of its 6 frames, 'up' all 6 plus one in RAM
        for cam, captured in (("down", 4), ("up", 7)):
            st.log_event({"kind": "ledger", "name": "interval", "camera": cam, "since_ns": 0,
                          "mono_ns": 1, "wall_ns": now, "captured": captured, "aged_out": 0,
                          "dropped": {}, "stills_missed": 0})
        st.commit(wait=True)
    ref = find_flights(root / flight)[0]
    assert not any(c["ledger"]["balanced"] for c in summarize_flight(ref)["cameras"].values())
    d = daemon(cfg=cfg)
    assert (d.phase, d.flight) == ("LANDED", flight)
    books = {name: c["ledger"] for name, c in summarize_flight(ref)["cameras"].items()}
    assert all(b["balanced"] for b in books.values()), books
    # STATUS of the landed flight gives its books from its files (it records nothing now)
    said = {n: c["ledger"] for n, c in d.status()["cameras"].items()}
    assert {n: (s["captured"], s["stored"], s["dropped"]) for n, s in said.items()} == {
        n: (b["captured"], b["stored"], sum(b["dropped"].values())) for n, b in books.items()}
    assert books["up"]["dropped"] == {"restart": 1} and books["down"]["captured"] == 6
