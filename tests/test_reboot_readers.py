"""Issue 26 defect 4: every ground reader places a flight recorded across a reboot on one timeline.

One synthetic flight (the project's store writer, no board): run 0 arms and releases at mono
1002 s, records to T+1.9 s, then the board reboots; run 1 resumes 8.1 s later on a monotonic clock
that restarted near 0 (its resume record maps it: ``clock_offset_ns``), records T+10.6..T+12.1 s
with sensor seqs from 0 again, touches down at T+12.0 s. Each test checks one reader: frames after
the reboot come after the earlier ones, times from the release are right, the reboot is named.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from store_helpers import jpeg

from camctl.board.config import StoreConfig
from camctl.common.frames import EncodedFrame, FrameValue
from camctl.store import FlightStore

NS = 1_000_000_000
FLIGHT = "20260102T000000Z"
BOARD = "rig-a"
RELEASE = 1_002 * NS  # run 0's monotonic ns of the release edge
WALL0 = 1_767_312_000 * NS  # wall ns of the release
OFFSET = 992_100_000_000  # run 1: flight_ns = mono_ns + OFFSET (it came up 8.1 s after T+2.0)
RESUME_MONO = 20 * NS  # run 1's clock at its resume record: T+10.1 s
GAP_S = 8.1


def _t(flight_s: float) -> int:
    """Run 0's monotonic ns (the flight's timeline) of T+``flight_s``."""
    return RELEASE + round(flight_s * NS)


def _raw1(flight_s: float) -> int:
    """Run 1's own monotonic ns of T+``flight_s``."""
    return _t(flight_s) - OFFSET


def _rec(run: int, mono: int, **fields) -> dict:
    flight = mono + (OFFSET if run else 0)
    return {**fields, "mono_ns": mono, "wall_ns": WALL0 + flight - RELEASE, "run": run}


def _phase(run: int, mono: int, prev: str, to: str, event: str, source: str = "gpio") -> dict:
    return _rec(run, mono, kind="phase", name=to, phase_from=prev, phase_to=to, event=event,
                source=source, skipped=[], boot_id="A" if run == 0 else "B")


# (flight s of the first frame, of the last, run, phase)
RUN0 = [(-1.0, -0.1, "ARMED"), (0.0, 1.9, "DESCENT")]
RUN1 = [(10.6, 11.9, "DESCENT"), (12.0, 12.1, "TOUCHDOWN")]


def _frames(parts: list[tuple[float, float, str]], run: int) -> list[EncodedFrame]:
    out, seq = [], 0
    for first, last, phase in parts:
        for i in range(round((last - first) * 10) + 1):
            ts = _t(first + i / 10)
            value = FrameValue.PRETRIGGER if phase == "ARMED" else FrameValue.DESCENT
            out.append(EncodedFrame("down", seq, ts - (OFFSET if run else 0), jpeg(seq + 100 * run),
                                    32, 24, phase, int(value), meta={"run": run} if run else {}))
            seq += 1
    return out


def build_rebooted(root: Path, *, release_at_resume: bool = False) -> Path:
    """The flight under ``root/<board>/<flight>``. ``release_at_resume``: the board rebooted in
    ARMED and found the release line active at its resume (no release edge in run 0)."""
    cfg = StoreConfig(commit_interval_ms=50)
    store = FlightStore(root / BOARD, BOARD, FLIGHT, cfg, cameras=["down"])
    store.log_event(_rec(0, _t(-2.0), kind="flight", name="open", board=BOARD, flight=FLIGHT,
                         boot_id="A", cameras={"down": {"role": "down", "size": [32, 24]}}))
    store.log_event(_phase(0, _t(-1.0), "SAFE", "ARMED", "arm"))
    if not release_at_resume:
        store.log_event(_phase(0, _t(0.0), "ARMED", "DESCENT", "release"))
    for f in _frames(RUN0 if not release_at_resume else RUN0[:1], 0):
        assert store.put(f)
    store.close()
    # the reboot: run 1 on a clock that restarted near 0, placed by its resume record
    store = FlightStore(root / BOARD, BOARD, FLIGHT, cfg, cameras=["down"], resume=True)
    phase = "ARMED" if release_at_resume else "DESCENT"
    store.log_event(_rec(1, RESUME_MONO, kind="resume", name=phase, flight=FLIGHT, phase=phase,
                         gap_s=GAP_S, clock="wall (rebooted)", last_seen_wall_ns=0,
                         entered_wall_ns=0, entered_mono_ns=0, descent_mono_ns=None, resumes=1,
                         pid=2, levels={"release": True}, boot_id="B", clock_offset_ns=OFFSET))
    store.log_event(_phase(1, RESUME_MONO, "SAFE", phase, "resume", source="resume"))
    if release_at_resume:
        store.log_event(_phase(1, RESUME_MONO + 1000, "ARMED", "DESCENT", "release",
                               source="resume"))
    store.log_event(_phase(1, _raw1(12.0), "DESCENT", "TOUCHDOWN", "touchdown"))
    for f in _frames(RUN1, 1):
        assert store.put(f)
    store.close()
    return root / BOARD / FLIGHT


@pytest.fixture(scope="module")
def rebooted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("rebooted")
    build_rebooted(root)
    return root


ALL_S = [round(a + i / 10, 1) for a, b, _p in RUN0 + RUN1 for i in range(round((b - a) * 10) + 1)]


def test_flight_places_frames_and_events_on_one_timeline(rebooted: Path) -> None:
    from camctl.ground.export.flightset import load_flight
    from camctl.ground.flights import find_flights
    from camctl.store import iter_frames

    (ref,) = find_flights(rebooted)
    fl = load_flight(ref)
    assert fl.tb.aligned and fl.t0_ns == RELEASE
    assert fl.tb.event_ns["touchdown"] == _t(12.0)  # a run-1 edge, on the flight's timeline
    ts = [round(fl.rel(fr.timestamp_ns, fr.run), 3)
          for seg in fl.cameras["down"] for fr in iter_frames(seg)]
    assert ts == ALL_S


def test_mp4_across_a_reboot_is_monotonic_with_the_gap(rebooted: Path, tmp_path: Path) -> None:
    import av

    from camctl.ground.export import export_all

    res = export_all(rebooted, tmp_path / "out", contact_sheet=False, timeline=False, frames=True)
    (mp4,) = res.mp4
    with av.open(str(mp4)) as c:
        stream = c.streams.video[0]
        pts = [float(p.pts * stream.time_base) for p in c.demux(stream) if p.pts is not None]
        comment = c.metadata.get("comment", "")
    pts.sort()
    # every frame, none skipped as out of order; the reboot is a gap of the time it took
    assert [round(p + ALL_S[0], 3) for p in pts] == ALL_S
    assert "rebooted at T+10.100 s" in comment and "down 8.1 s" in comment
    names = sorted(p.name for p in res.frames)
    assert any("+10.600s" in n for n in names) and not any("s-9" in n for n in names)
    assert any("rebooted at T+10.100 s from release (down 8.1 s" in n for n in res.notes)


def test_timeline_lanes_on_the_flight_timeline_and_the_reboot_marked(rebooted: Path,
                                                                      tmp_path: Path) -> None:
    from camctl.ground.export import export_all

    res = export_all(rebooted, tmp_path / "out", mp4=False, contact_sheet=False)
    (svg,) = res.timeline_svgs
    assert "reboot: down 8.1 s" in svg.read_text()
    from camctl.ground.export.flightset import CamData, load_flight
    from camctl.ground.export.timeline import lane_of
    from camctl.ground.flights import find_flights

    fl = load_flight(find_flights(rebooted)[0])
    lane = lane_of(CamData(BOARD, "down", fl, times=[_t(s) for s in ALL_S]))
    assert lane.reboots == [(pytest.approx(10.1), "reboot: down 8.1 s")]
    assert [t for t, ph in lane.phases if ph == "TOUCHDOWN"] == [pytest.approx(12.0)]


def test_contact_sheet_around_a_run1_event_and_the_reboot_named(rebooted: Path, tmp_path: Path,
                                                                 monkeypatch) -> None:
    from camctl.ground.export import pipeline, sheet

    drawn = {}
    real = sheet.draw_sheet

    def spy(header, blocks, out_png):
        drawn["header"], drawn["blocks"] = header, blocks
        return real(header, blocks, out_png)

    monkeypatch.setattr(sheet, "draw_sheet", spy)
    pipeline.export_all(rebooted, tmp_path / "out", mp4=False, timeline=False)
    assert "rig-a rebooted at T+10.100 s from release (down 8.1 s" in drawn["header"]
    touchdown = next(b for b in drawn["blocks"] if b.title.startswith("touchdown"))
    assert "at +12.000 s from release" in touchdown.title
    captions = [t.caption for t in touchdown.rows[0][1] if t is not None]
    # the frames around the run-1 touchdown are run 1's (T+11.0..T+12.1), at their true offsets
    assert captions[:3] == ["-1.000 s DESCENT #4", "-0.500 s DESCENT #9", "+0.000 s TOUCHDOWN #14"]


def test_release_applied_at_resume_is_no_edge(tmp_path: Path) -> None:
    from camctl.ground.export.flightset import align_set, load_flight
    from camctl.ground.flights import find_flights

    build_rebooted(tmp_path, release_at_resume=True)
    fl = load_flight(find_flights(tmp_path)[0])
    assert not fl.tb.aligned and "at a resume" in fl.tb.unaligned_reason
    assert "release" not in fl.tb.event_ns
    # the set's zero is a real GPIO edge (run 1's touchdown), never the release read at resume
    assert align_set([fl])[BOARD]["edge"] == "touchdown" and fl.t0_ns == _t(12.0)


def test_foxglove_export_on_one_timeline_with_a_reboot_marker(rebooted: Path,
                                                              tmp_path: Path) -> None:
    from foxglove_schemas_protobuf.Log_pb2 import Log
    from mcap.reader import make_reader

    from camctl.ground.export import export_all

    res = export_all(rebooted, tmp_path / "out", mp4=False, contact_sheet=False, timeline=False,
                     foxglove=True)
    mcap = next(p for p in res.foxglove if p.suffix == ".mcap")
    images, logs = [], []
    with mcap.open("rb") as f:
        for _s, ch, msg in make_reader(f).iter_messages(log_time_order=True):
            if ch.topic == f"/{BOARD}/down/image":
                images.append((msg.log_time, msg.publish_time))
            elif ch.topic == f"/{BOARD}/log":
                log = Log()
                log.ParseFromString(msg.data)
                logs.append((msg.publish_time, log.timestamp.ToNanoseconds(), log.level,
                             log.message))
    # in Foxglove's order (log_time) the frames are in flight order, both times on one timeline
    assert [round((p - RELEASE) / NS, 3) for _l, p in images] == ALL_S
    assert [round((lt - WALL0) / NS, 3) for lt, _p in images] == pytest.approx(ALL_S, abs=0.01)
    (reboot,) = [x for x in logs if x[3].startswith("REBOOT (down 8.1 s, run 1)")]
    assert reboot[0] == _t(10.1) and reboot[1] == WALL0 + round(10.1 * NS)
    assert reboot[2] == Log.WARNING
    touchdown = next(x for x in logs if "phase_to=TOUCHDOWN" in x[3])
    assert touchdown[0] == _t(12.0)


def _previews(flight: Path, dest: Path) -> Path:
    """A thumbs-only download of the flight (first look): its event log and flight.json, a
    preview of every other frame; run-1 previews say their run (their seqs restarted at 0)."""
    import json
    import shutil

    from camctl.store import iter_frames

    out = dest / BOARD / FLIGHT
    shutil.copytree(flight / "events", out / "events")
    shutil.copy(flight / "flight.json", out / "flight.json")
    (out / "thumbs" / "down").mkdir(parents=True)
    index = {}
    for seg in sorted((flight / "down").glob("*.mcap")):
        for fr in iter_frames(seg):
            if fr.seq % 2 == 0:
                stem = f"r{fr.run}_{fr.seq:06d}"
                (out / "thumbs" / "down" / f"{stem}.jpg").write_bytes(fr.jpeg)
                index[f"down/{stem}"] = {"seq": fr.seq, "timestamp_ns": fr.timestamp_ns,
                                         "phase": fr.phase, "segment": f"down/{seg.name}",
                                         **({"run": fr.run} if fr.run else {})}
    (out / "thumbs" / "index.json").write_text(json.dumps(index))
    return out


def test_first_look_sheet_across_a_reboot(rebooted: Path, tmp_path: Path, monkeypatch) -> None:
    from camctl.ground.export import sheet
    from camctl.ground.flights import find_flights

    _previews(rebooted / BOARD / FLIGHT, tmp_path)
    drawn = {}
    monkeypatch.setattr(sheet, "draw_sheet",
                        lambda header, blocks, out: drawn.update(header=header, blocks=blocks))
    sheet.sheet_from_previews(find_flights(tmp_path), tmp_path / "first-look.png")
    assert "rig-a rebooted at T+10.100 s from release (down 8.1 s" in drawn["header"]
    touchdown = next(b for b in drawn["blocks"] if b.title.startswith("touchdown"))
    assert "at +12.000 s from release" in touchdown.title
    captions = [t.caption for t in touchdown.rows[0][1] if t is not None]
    assert captions[:3] == ["-1.000 s DESCENT #4", "-0.600 s DESCENT #8", "+0.000 s TOUCHDOWN #14"]


def test_first_look_time_since_a_touchdown_before_the_reboot(tmp_path: Path) -> None:
    from camctl.ground.firstlook import since_touchdown_s
    from camctl.ground.flights import find_flights

    store = FlightStore(tmp_path / BOARD, BOARD, FLIGHT, StoreConfig(), cameras=["down"])
    for rec in (_phase(0, _t(0.0), "ARMED", "DESCENT", "release"),
                _phase(0, _t(2.0), "DESCENT", "TOUCHDOWN", "touchdown")):
        store.log_event(rec)
    store.close()
    store = FlightStore(tmp_path / BOARD, BOARD, FLIGHT, StoreConfig(), cameras=["down"],
                        resume=True)
    store.log_event(_rec(1, RESUME_MONO, kind="resume", name="TOUCHDOWN", flight=FLIGHT,
                         phase="TOUCHDOWN", gap_s=GAP_S, clock="wall (rebooted)",
                         last_seen_wall_ns=0, entered_wall_ns=0, entered_mono_ns=0,
                         descent_mono_ns=None, resumes=1, pid=2, levels={}, boot_id="B",
                         clock_offset_ns=OFFSET))
    store.close()
    (ref,) = find_flights(tmp_path)
    assert since_touchdown_s(ref, WALL0 + 15 * NS) == pytest.approx(13.0)


def test_mission_page_times_across_a_reboot_and_no_release_from_resume() -> None:
    from camctl.ground.mission.watcher import Watcher

    url = "tcp://rig-a:5555"
    changes: list[dict] = []
    w = Watcher([url], on_change=changes.append)
    st0 = {"board": BOARD, "flight": FLIGHT, "phase": "ARMED", "mono_ns": _t(-0.5),
           "wall_ns": WALL0, "run": 0, "clock_offset_ns": 0}
    w._polled(url, st0, WALL0, WALL0)

    def pub(run: int, mono: int, prev: str, to: str, event: str, source: str = "gpio") -> None:
        w._pub(b"phase", {"board": BOARD, "flight": FLIGHT,
                          **_phase(run, mono, prev, to, event, source)})

    pub(0, _t(0.0), "ARMED", "DESCENT", "release")
    # the reboot: the resume record comes over PUB, then a release read from the line level
    w._pub(b"phase", {"board": BOARD, "flight": FLIGHT,
                      **_rec(1, RESUME_MONO, kind="resume", name="DESCENT", phase="DESCENT",
                             gap_s=GAP_S, clock="wall (rebooted)", resumes=1, boot_id="B",
                             clock_offset_ns=OFFSET)})
    pub(1, RESUME_MONO + 1000, "DESCENT", "DESCENT", "release", source="resume")
    pub(1, _raw1(12.0), "DESCENT", "TOUCHDOWN", "touchdown")
    w._polled(url, {**st0, "phase": "TOUCHDOWN", "mono_ns": _raw1(12.5), "run": 1,
                    "clock_offset_ns": OFFSET}, WALL0, WALL0)
    (view,) = w.snapshot()
    assert view["release_mono_ns"] == RELEASE  # the gpio edge, not the one read at resume
    timed = [(p["phase"], p["event"], p["t_rel_s"]) for p in view["phases"] if p["source"] == "pub"]
    assert timed == [("DESCENT", "release", 0.0), ("DESCENT", "reboot (down 8.1 s)", 10.1),
                     ("DESCENT", "release", 10.1), ("TOUCHDOWN", "touchdown", 12.0)]
    assert view["reboots"][0]["t_rel_s"] == 10.1


def test_mission_phase_of_an_unknown_run_waits_for_its_offset() -> None:
    from camctl.ground.mission.watcher import Watcher

    url = "tcp://rig-a:5555"
    w = Watcher([url], on_change=lambda _v: None)
    w._polled(url, {"board": BOARD, "flight": FLIGHT, "phase": "ARMED", "mono_ns": _t(-0.5)},
              WALL0, WALL0)  # an older board: no run, no offset
    w._pub(b"phase", {"board": BOARD, "flight": FLIGHT,
                      **_phase(0, _t(0.0), "ARMED", "DESCENT", "release")})
    w._pub(b"phase", {"board": BOARD, "flight": FLIGHT,
                      **_phase(1, _raw1(12.0), "DESCENT", "TOUCHDOWN", "touchdown")})
    assert w.snapshot()[0]["phases"][-1]["t_rel_s"] is None  # run 1's clock not known yet
    w._polled(url, {"board": BOARD, "flight": FLIGHT, "phase": "TOUCHDOWN", "mono_ns": 0,
                    "run": 1, "clock_offset_ns": OFFSET}, WALL0, WALL0)
    assert [p["t_rel_s"] for p in w.snapshot()[0]["phases"] if p["source"] == "pub"] == [0.0, 12.0]


def test_mission_previews_timed_on_the_flight_timeline(rebooted: Path, tmp_path: Path) -> None:
    from camctl.ground.mission.recovery import Recovery

    _previews(rebooted / BOARD / FLIGHT, tmp_path / "ground")
    rec = Recovery(tmp_path, emit=lambda _m: None)
    rec.downloads[BOARD] = {"url": "tcp://rig-a:5555", "flight": FLIGHT, "state": "fetching",
                            "done": 0, "total": 0, "detail": "", "release_mono_ns": None,
                            "ended": 0.0}
    rec._scan_once()
    times = sorted(p["t_rel_s"] for p in rec.previews.values())
    run0 = [s for i, s in enumerate(ALL_S[:30]) if i % 2 == 0]  # every other seq was previewed
    assert times == run0 + [round(10.6 + 0.2 * i, 1) for i in range(8)]


def test_mission_preview_strip_in_flight_order_across_a_reboot() -> None:
    from camctl.ground.mission.previews import pick

    run0 = [{"camera": "down", "seq": i, "run": 0, "phase": "ARMED" if i < 10 else "DESCENT"}
            for i in range(30)]
    run1 = [{"camera": "down", "seq": i, "run": 1, "phase": "DESCENT" if i < 14 else "TOUCHDOWN"}
            for i in range(16)]
    shown = pick(run1 + run0, 4)
    # the first of each phase and the last, in flight order: seqs of run 1 restarted at 0
    assert [(p["run"], p["seq"], p["phase"]) for p in shown] == [
        (0, 0, "ARMED"), (0, 10, "DESCENT"), (1, 14, "TOUCHDOWN"), (1, 15, "TOUCHDOWN")]
