"""One clock for a flight across restarts and reboots (issue 26, defect 4).

The store stamps its run on every record and frame; the resume maps a rebooted board's monotonic
clock onto the flight's timeline (wall-clock gap checked against the uptime); ``ls`` places every
record and frame on that timeline and says where a reboot was. In-process, except one real board
killed -9 in DESCENT and restarted as after a reboot (a time namespace and a new boot id).
"""

from __future__ import annotations

import itertools
import time
from pathlib import Path

import pytest
from store_helpers import frame
from waiting import wait_for

from camctl.board.config import StoreConfig
from camctl.board.rejoin import _resume_record
from camctl.board.resume import FlightState, clock_offset
from camctl.exc import StoreError
from camctl.store import FlightStore, iter_events, iter_frames, load_index
from camctl.testing.reboot import after_reboot, unavailable

S = 1_000_000_000


def _events(flight_dir: Path) -> list[dict]:
    return [e for seg in sorted((flight_dir / "events").glob("*.mcap")) for e in iter_events(seg)]


def _frames(flight_dir: Path, cam: str) -> list:
    return [f for seg in sorted((flight_dir / cam).glob("*.mcap")) for f in iter_frames(seg)]


# --- the store stamps its run ---------------------------------------------------------------------
def test_the_store_stamps_its_run_on_records_frames_stills_and_its_own_records(
        tmp_path: Path) -> None:
    cfg = StoreConfig()
    with FlightStore(tmp_path, "b", "F", cfg, cameras=["down"]) as st:  # a new flight: run 0
        st.log_event({"kind": "flight", "name": "open"})
        st.put(frame("down", 0))
    with FlightStore(tmp_path, "b", "F", cfg, cameras=["down"], resume=True, run=2) as st:
        st.log_event({"kind": "phase", "name": "DESCENT", "phase_to": "DESCENT"})
        st.log_event({"kind": "resume", "name": "x", "run": 5})  # a record's own run is kept
        for seq in range(1, 4):
            st.put(frame("down", seq, still=seq == 3))
    failing = {"n": 0}

    def opener(path: Path):  # the camera's first segment cannot be opened: the store's own records
        if path.parent.name == "down" and not failing["n"]:
            failing["n"] += 1
            raise OSError(5, "injected", str(path))
        return open(path, "xb", buffering=0)

    ticks = itertools.count(0.0, 5.0)  # a clock past the store's retry after each I/O error
    with FlightStore(tmp_path, "b", "F", cfg, cameras=["down"], resume=True, run=3,
                     opener=opener, clock=lambda: next(ticks)) as st:
        st.put(frame("down", 9))
    runs = [(e["kind"], e.get("run")) for e in _events(tmp_path / "F")]
    assert runs[:3] == [("flight", 0), ("phase", 2), ("resume", 5)], runs
    own = runs[3:]  # the store's own fault and drop records of the I/O error, of run 3
    assert {k for k, _ in own} == {"fault", "drop"} and {r for _, r in own} == {3}, own
    frames = _frames(tmp_path / "F", "down")
    assert [(f.seq, f.run, f.still) for f in frames] == [
        (0, 0, False), (1, 2, False), (2, 2, False), (3, 2, True)]
    segs = load_index(tmp_path / "F")["cameras"]["down"]["segments"]
    assert [s["run"] for s in segs if s["frames"]] == [0, 2]


def test_a_store_refuses_a_run_that_is_no_count(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="run must be an integer 0 or more, got -1"):
        FlightStore(tmp_path, "b", "F", StoreConfig(), run=-1)


# --- the resume maps the clock --------------------------------------------------------------------
def _state(**kw) -> FlightState:
    base = dict(flight="F", phase="DESCENT", entered_wall_ns=900 * S, descent_wall_ns=900 * S,
                last_seen_wall_ns=1_000 * S, resumes=1, run=1, boot_id="A",
                clock_offset_ns=5 * S, entered_flight_ns=80 * S, descent_flight_ns=80 * S,
                last_seen_flight_ns=100 * S)
    return FlightState(**{**base, **kw})


def test_the_same_boot_keeps_the_last_runs_offset_and_the_gap_is_monotonic() -> None:
    rc = clock_offset(_state(), now_wall_ns=5_000 * S, now_mono_ns=97 * S, boot="A")
    assert (rc.offset_ns, rc.gap_ns, rc.how) == (5 * S, 2 * S, "monotonic")
    rec = _resume_record(_state(), 5_000 * S, 97 * S, {}, "A")
    # the descent began 20 s before the last-seen time, on the same (unbroken) clock
    assert (rec.run, rec.resumes, rec.clock_offset_ns) == (2, 2, 5 * S)
    assert rec.entered_mono_ns == rec.descent_mono_ns == 75 * S


def test_after_a_reboot_the_wall_gap_maps_the_new_clock_after_the_last_seen_time() -> None:
    # the wall clock says 30 s passed; this boot is 4 s old (the board was down 26 s, then booted)
    rc = clock_offset(_state(), now_wall_ns=1_030 * S, now_mono_ns=4 * S, boot="B")
    assert (rc.gap_ns, rc.how) == (30 * S, "wall (rebooted)")
    assert rc.offset_ns == 100 * S + 30 * S - 4 * S  # now (4 s) is 30 s after the last-seen 100 s
    rec = _resume_record(_state(), 1_030 * S, 4 * S, {}, "B")
    assert rec.clock == "wall (rebooted)" and rec.gap_s == 30.0 and rec.run == 2
    # the descent began 20 s before the last-seen time: 50 s before now, before this boot began
    assert rec.entered_mono_ns == rec.descent_mono_ns == 4 * S - 50 * S


def test_a_wall_clock_behind_the_uptime_is_not_believed() -> None:
    # a Pi without an RTC boots with its clock 10 min behind: the wall gap is negative, but the old
    # run ended before this boot began, 4 s ago
    rc = clock_offset(_state(), now_wall_ns=400 * S, now_mono_ns=4 * S, boot="B")
    assert rc.gap_ns == 4 * S and rc.offset_ns == 100 * S
    assert rc.how == "uptime (wall clock behind by 604.0 s)"
    rec = _resume_record(_state(), 400 * S, 4 * S, {}, "B")
    assert rec.gap_s == 4.0 and rec.entered_mono_ns == 4 * S - 24 * S


def test_records_without_a_boot_id_are_related_by_the_wall_clock_alone() -> None:
    st = _state(boot_id="", entered_flight_ns=None, descent_flight_ns=None,
                last_seen_flight_ns=None)
    rc = clock_offset(st, now_wall_ns=1_003 * S, now_mono_ns=50_000 * S, boot="B")
    assert (rc.offset_ns, rc.gap_ns, rc.how) == (None, 3 * S, "wall (boot unknown)")


def _log_run(root: Path, run: int, records: list[dict], frames: list[tuple[int, int]]) -> None:
    """Records and frames (seq, monotonic ns) of one run of the daemon into flight F."""
    cfg = StoreConfig(reserve_mb=0)
    with FlightStore(root, "b", "F", cfg, cameras=["down"], resume=run > 0, run=run) as st:
        for rec in records:
            st.log_event(rec)
        for seq, mono in frames:
            fr = frame("down", seq)
            fr.timestamp_ns = mono
            st.put(fr)
        st.commit(wait=True)


def _phase(to: str, frm: str, mono: int, wall: int, boot: str) -> dict:
    return {"kind": "phase", "name": to, "phase_from": frm, "phase_to": to, "event": "x",
            "source": "gpio", "mono_ns": mono, "wall_ns": wall, "boot_id": boot}


def _resume(run: int, mono: int, wall: int, boot: str, offset: int, entered: int) -> dict:
    return {"kind": "resume", "name": "DESCENT", "flight": "F", "phase": "DESCENT", "gap_s": 1.0,
            "clock": "x", "last_seen_wall_ns": 0, "entered_wall_ns": 0, "entered_mono_ns": entered,
            "descent_mono_ns": entered, "resumes": run, "pid": 1, "levels": {}, "mono_ns": mono,
            "wall_ns": wall, "boot_id": boot, "run": run, "clock_offset_ns": offset}


def test_the_last_state_of_a_flight_of_three_runs_on_three_boots(tmp_path: Path,
                                                                 monkeypatch) -> None:
    """Run 0 (boot A) released at 1000 s and was last seen at 1010 s; run 1 (boot B, offset
    1008 s) resumed at its 5 s; then run 2 (boot C) is asked where the flight stood."""
    import camctl.board.resume as resume

    W = 1_800_000_000 * S
    _log_run(tmp_path, 0, [
        {"kind": "flight", "name": "open", "flight": "F", "boot_id": "A", "mono_ns": 990 * S,
         "wall_ns": W},
        _phase("ARMED", "SAFE", 990 * S, W, "A"),
        _phase("DESCENT", "ARMED", 1_000 * S, W + 10 * S, "A")], [(0, 1_010 * S)])
    _log_run(tmp_path, 1, [_resume(1, 5 * S, W + 23 * S, "B", 1_008 * S, -8 * S),
                           {"kind": "ledger", "name": "interval", "camera": "down", "since_ns": 0,
                            "captured": 1, "aged_out": 0, "dropped": {}, "stills_missed": 0,
                            "mono_ns": 7 * S, "wall_ns": W + 25 * S}],
             [(1, 6 * S), (2, 9 * S)])  # its newest frame: 9 s on its clock, 1017 s on the flight's
    monkeypatch.setattr(resume, "boot_id", lambda: "C")
    st = resume.last_flight_state(tmp_path)
    assert st is not None
    assert (st.phase, st.resumes, st.run, st.boot_id) == ("DESCENT", 1, 1, "B")
    assert st.clock_offset_ns == 1_008 * S and st.last_seen_flight_ns == 1_017 * S
    assert st.entered_flight_ns == st.descent_flight_ns == 1_000 * S  # the resume's, mapped
    assert not st.same_boot and st.entered_mono_ns is None  # not this boot's clock
    # run 2 boots 3 s ago, the wall clock says 40 s since run 1 was last seen (wall W+25 s)
    rec = _resume_record(st, W + 65 * S, 3 * S, {}, "C")
    assert (rec.run, rec.clock, rec.gap_s) == (2, "wall (rebooted)", 40.0)
    assert rec.clock_offset_ns == 1_017 * S + 40 * S - 3 * S
    assert rec.entered_mono_ns == 1_000 * S - rec.clock_offset_ns  # 57 s before now
    monkeypatch.setattr(resume, "boot_id", lambda: "B")  # run 1's boot: only the daemon restarted
    st = resume.last_flight_state(tmp_path)
    assert st.same_boot and st.last_seen_mono_ns == 9 * S and st.entered_mono_ns == -8 * S


def test_a_resumed_board_says_its_run_and_offset_and_records_under_its_run(tmp_path: Path,
                                                                          daemon) -> None:
    from boards import make_config

    # the uptime may make the gap hours long (the earlier boot is made up): the descent must not
    # time out at the resume (its timers run from the resume since issue 26's defect 7)
    cfg = make_config(tmp_path, descent_timeout_s=1e7)
    now_wall, now_mono = time.time_ns(), time.monotonic_ns()
    _log_run(Path(cfg.store.dir), 0, [
        {"kind": "flight", "name": "open", "flight": "F", "boot_id": "an-earlier-boot",
         "mono_ns": 50 * S, "wall_ns": now_wall - 20 * S},
        _phase("ARMED", "SAFE", 50 * S, now_wall - 20 * S, "an-earlier-boot"),
        _phase("DESCENT", "ARMED", 60 * S, now_wall - 10 * S, "an-earlier-boot")], [])
    d = daemon(cfg=cfg)
    st = d.status()
    assert (st["phase"], st["flight"], st["run"]) == ("DESCENT", "F", 1)
    # the earlier boot was last seen at its 60 s; this one is older than the 10 s the wall clock
    # says, so it began after that: now is 60 s + uptime on the flight's timeline
    assert st["clock_offset_ns"] == d.resumed["clock_offset_ns"] is not None
    if now_mono > 60 * S:  # (a machine up for a minute at least: every one but a fresh VM's)
        assert st["clock_offset_ns"] == 60 * S and d.resumed["clock"].startswith("uptime")
    wait_for(lambda: d.status()["cameras"]["down"]["durable_frames"] >= 2, "frames after resume")
    d.close()
    fdir = Path(cfg.store.dir) / "F"
    assert {f.run for f in _frames(fdir, "down")} == {1}
    after = [e for e in _events(fdir) if e.get("mono_ns", 0) >= now_mono]
    assert after and {e["run"] for e in after} == {1}, after


# --- ls on the one timeline -----------------------------------------------------------------------
def _rebooted_flight(root: Path, *, release_source: str = "gpio") -> Path:
    """Run 0 (boot A) released at its 1000 s (frames 999-1010 s); the board was down 7 s, then
    run 1 (boot B, up 2 s: its clock reads 1019 s less 1017 s) stored frames at its 3-9 s and
    touched down at its 8 s."""
    W = 1_700_000_000 * S
    _log_run(root, 0, [
        {"kind": "flight", "name": "open", "flight": "F", "boot_id": "A", "mono_ns": 990 * S,
         "wall_ns": W},
        _phase("ARMED", "SAFE", 990 * S, W, "A"),
        {**_phase("DESCENT", "ARMED", 1_000 * S, W + 10 * S, "A"), "event": "release",
         "source": release_source}],
        [(i, (999 + i) * S) for i in range(12)])
    _log_run(root, 1, [
        {**_resume(1, 2 * S, W + 29 * S, "B", 1_017 * S, -17 * S), "gap_s": 7.0,
         "clock": "wall (rebooted)"},
        {**_phase("TOUCHDOWN", "DESCENT", 8 * S, W + 35 * S, "B"), "event": "touchdown"}],
        [(i, (i - 9) * S) for i in range(12, 19)])
    return root / "F"


def test_ls_places_a_rebooted_runs_frames_and_records_after_the_earlier_ones(tmp_path: Path,
                                                                            capsys) -> None:
    from camctl.ground.flights import find_flights, load_events, summarize_flight
    from camctl.ground.views import render_ls

    fdir = _rebooted_flight(tmp_path)
    ls = summarize_flight(find_flights(fdir)[0])
    down = ls["cameras"]["down"]
    # run 1's last frame (its 9 s) is 1026 s on the flight's timeline: 26 s after the release
    assert (down["first_s"], down["last_s"], down["duration_s"]) == (-1.0, 26.0, 27.0)
    assert ls["aligned"] and ls["release_source"] == "edge"
    assert [(p["t_s"], p["phase"]) for p in ls["phases"]] == [
        (-10.0, "ARMED"), (0.0, "DESCENT"), (25.0, "TOUCHDOWN")]
    assert ls["runs"] == [{"run": 1, "boot_id": "B", "t_s": 19.0, "gap_s": 7.0, "rebooted": True,
                           "clock": "wall (rebooted)", "mapped": True}]
    assert [e.get("run", 0) for e in load_events(fdir) if e["kind"] != "ledger"] == [0, 0, 0, 1, 1]
    render_ls([ls])
    out = capsys.readouterr().out
    assert "run 1: resumed after a reboot at T+19.000 s, down 7.0 s (clock: wall (rebooted))" in out


def test_a_release_applied_from_the_line_level_at_a_resume_is_no_aligned_edge(
        tmp_path: Path) -> None:
    from camctl.ground.flights import TimeBase, find_flights, load_events, summarize_flight

    fdir = _rebooted_flight(tmp_path, release_source="resume")
    tb = TimeBase.from_events(load_events(fdir))
    assert tb.t0_ns == 1_000 * S and not tb.aligned and "release" not in tb.event_ns
    ls = summarize_flight(find_flights(fdir)[0])
    assert ls["release_source"] == "resume" and not ls["aligned"]
    assert "applied from the line level at a resume" in ls["unaligned_reason"]
    assert ls["cameras"]["down"]["first_s"] is None  # not comparable with other boards


# --- a real board, killed -9 in DESCENT and restarted as after a reboot ---------------------------
@pytest.mark.slow
@pytest.mark.skipif(bool(unavailable()), reason=f"after_reboot: {unavailable()}")
def test_a_board_rebooted_mid_descent_puts_its_frames_on_the_flights_timeline(
        tmp_path: Path) -> None:
    import json
    import subprocess
    import sys

    from camctl.common.flightclock import FlightClock
    from camctl.demo import BoardProcess, start_board, write_board_config
    from camctl.ground import Client
    from camctl.ground.flights import find_flights, summarize_flight
    from camctl.store import list_flights

    cfg_path = write_board_config(tmp_path / "b", "clock-b", 0, size=(160, 120),
                                  post_touchdown_s=0.5, stills=())
    store = tmp_path / "b" / "store"
    board = start_board(cfg_path, store, "clock-b")
    try:
        with Client(board.router, timeout_s=10) as c:
            assert c.command("arm", line="hold")["phase"] == "ARMED"
            assert c.command("event", name="release")["phase"] == "DESCENT"
            wait_for(lambda: all(cam["durable_frames"] >= 5
                                 for cam in c.status()["cameras"].values()),
                     "durable frames before the kill")
        board.kill9()
        killed_wall = time.time_ns()
        time.sleep(3.0)  # the board is down (power), then boots: up 1 s when the daemon starts
        (store / "daemon.json").unlink(missing_ok=True)
        argv = after_reboot([sys.executable, "-m", "camctl", "run", "--config", str(cfg_path)],
                            state_dir=tmp_path / "reboot", uptime_s=1.0, boot_id="boot-two")
        with (tmp_path / "b" / "daemon.log").open("ab") as log:
            proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL)
        board = BoardProcess("clock-b", cfg_path, store, proc)
        info = wait_for(lambda: proc.poll() is None and (store / "daemon.json").is_file()
                        and json.loads((store / "daemon.json").read_text() or "{}"),
                        "the rebooted board's sockets", timeout_s=60)
        assert info["pid"] == proc.pid, (info, proc.poll())
        board.router = info["router"]
        with Client(board.router, timeout_s=10) as c:
            st = c.status()
            res = st["resumed"]
            assert (st["phase"], st["run"], res["clock"]) == ("DESCENT", 1, "wall (rebooted)"), res
            assert res["mono_ns"] < 60 * S and res["boot_id"] == "boot-two"  # a fresh clock
            assert st["clock_offset_ns"] == res["clock_offset_ns"] > 0
            wait_for(lambda: all(cam["durable_frames"] >= 3
                                 for cam in c.status()["cameras"].values()),
                     "frames after the reboot")
            assert c.command("event", name="touchdown")["phase"] == "TOUCHDOWN"
            wait_for(lambda: (s := c.status())["phase"] == "LANDED" and s["serving"],
                     "LANDED and serving")
        assert board.stop() == 0
    finally:
        board.kill9()
    [flight] = list_flights(store)
    fdir = store / flight
    events = _events(fdir)
    clock = FlightClock.from_events(events)
    assert [r.run for r in clock.reboots] == [1]
    phases = [(e["phase_to"], e["run"], e["boot_id"] == "boot-two") for e in events
              if e["kind"] == "phase"]
    assert phases == [("ARMED", 0, False), ("DESCENT", 0, False), ("TOUCHDOWN", 1, True),
                      ("LANDED", 1, True)], phases
    assert {e["run"] for e in events if e.get("wall_ns", 0) > killed_wall} == {1}
    for cam in ("down", "up"):
        frames = _frames(fdir, cam)  # in file order: run 1 wrote new segments after run 0's
        assert {f.run for f in frames if f.log_ns < killed_wall} == {0}
        assert {f.run for f in frames if f.log_ns > killed_wall} == {1}
        placed = [clock.flight_ns(f.timestamp_ns, f.run) for f in frames]
        assert placed == sorted(placed), cam  # monotonic on the flight's timeline
        last0 = max((f for f in frames if f.run == 0), key=lambda f: f.timestamp_ns)
        first1 = min((f for f in frames if f.run == 1), key=lambda f: f.timestamp_ns)
        mapped = clock.flight_ns(first1.timestamp_ns, 1) - clock.flight_ns(last0.timestamp_ns)
        real = first1.log_ns - last0.log_ns  # the wall clock of both processes (the same one)
        assert abs(mapped - real) < 2 * S, (cam, mapped / S, real / S)
    ls = summarize_flight(find_flights(fdir)[0])
    assert ls["aligned"] and ls["runs"][0]["rebooted"], ls["runs"]
    for cam in ls["cameras"].values():  # the pre-trigger before the release, not -thousands of s
        assert -10 < cam["first_s"] < 0 < cam["last_s"] < 120, cam


def test_an_older_resume_record_is_placed_by_its_resumes_typed_or_not() -> None:
    from camctl.common.flightclock import FlightClock
    from camctl.common.records import decode

    old = {**_resume(1, 3 * S, 0, "B", 500 * S, 0), "run": None}
    del old["run"]
    clock = FlightClock.from_events([old])
    assert clock.place(old) == clock.place(decode(old)) == 503 * S


def test_ls_connect_places_a_rebooted_runs_segments_by_the_flights_index(tmp_path: Path) -> None:
    import shutil

    from camctl.common.protocol import SegmentInfo
    from camctl.ground.flights import remote_flights, remote_segment_runs, remote_time_bases

    fdir = _rebooted_flight(tmp_path)
    index = load_index(fdir)

    def info(path: str, kind: str, camera: str = "", **kw) -> SegmentInfo:
        return SegmentInfo(path=f"F/{path}", size=1, sha256="0" * 64, flight="F", camera=camera,
                           kind=kind, **kw)

    segs = [info(e["path"], "segment", "down", frames=e["frames"], first_ns=e["first_ns"],
                 last_ns=e["last_ns"]) for e in index["cameras"]["down"]["segments"]]
    segs += [info(e["path"], "events", "events") for e in index["events"]["segments"]]
    segs.append(info("index.json", "meta"))

    class Board:  # a LIST's files, fetched from the flight folder
        def fetch_file(self, s: SegmentInfo, dest: Path) -> None:
            shutil.copyfile(tmp_path / s.path, dest)

    bases = remote_time_bases(Board(), segs)
    runs = remote_segment_runs(Board(), segs, bases)
    down = remote_flights(segs, bases, runs)["F"]["down"]
    assert (down["first_s"], down["last_s"], down["duration_s"]) == (-1.0, 26.0, 27.0)


def test_a_loss_record_logged_at_a_later_boot_does_not_set_the_wall_clock(tmp_path: Path) -> None:
    from camctl.ground.flights import TimeBase, load_events
    from camctl.store._eventlog import append_events

    fdir = _rebooted_flight(tmp_path)
    # recovery at run 1's boot logged what it cut, stamped on that boot's clock (1 s) without a run
    append_events(fdir, [{"kind": "loss", "camera": "down", "segment": "down/000001.mcap",
                          "reason": "torn", "mono_ns": 1 * S, "wall_ns": 1_700_000_028 * S}])
    tb = TimeBase.from_events(load_events(fdir))
    assert tb.wall_offset_ns == 1_700_000_000 * S - 990 * S  # run 0's flight record's
