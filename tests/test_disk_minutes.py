"""Disk minutes from each flight phase's rate and frame size, not ARMED's size times the flight rate
(issue 28, item 3: a camera with small frames while armed showed 69 min where 12 were true, and a
small card said GO).

Pure tests of :func:`camctl.ground.mission.checks.disk_estimate` and
:class:`~camctl.ground.mission.checks.FrameSizes` with the issue's numbers, then a real ``camctl
run`` sim board whose down camera is armed at ``lores_size``: the board measures its flight frames
at ARM (``frame_bytes_by_phase``), so the first drop's disk check is already NO-GO where the armed
size said GO, and the next drop's too.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from waiting import wait_for

from camctl.demo import _command, start_board, write_board_config
from camctl.ground.mission.checks import FrameSizes, Limits, disk_estimate, evaluate

SCHED = {"ARMED": 2, "DESCENT": 30, "SEPARATION": 30, "TOUCHDOWN": 30}
ARMED_B, FLIGHT_B = 20_000, 115_000  # a lores 640x360 frame while armed, 1920x1080 in flight
FREE_MB = 2484.0  # 69 min of 20 kB frames at 30 fps; 12 min of 115 kB frames


def _cam(**kw: object) -> dict:
    cam = {"state": "running", "fps": 2.0, "target_fps": 2.0, "frames_stored": 0,
           "bytes_stored": 0, "ring_frames": 8, "ring_bytes": 8 * ARMED_B, "dropped": 0,
           "faults": 0, "schedule": dict(SCHED)}
    cam.update(kw)
    return cam


def _view(flight: str, phase: str, **cam: object) -> dict:
    return {"name": "a", "url": "tcp://a:5555", "reachable": True, "offset_ms": 0.0,
            "status": {"board": "a", "phase": phase, "flight": flight, "disk_free_mb": FREE_MB,
                       "lines": {"arm": 1, "release": 0}, "cameras": {"down": _cam(**cam)}}}


def _disk(res: dict) -> dict:
    return next(c for c in res["checks"] if c["check"] == "disk")


def test_the_issues_numbers_69_min_from_armed_frames_12_from_the_flights() -> None:
    st = _view("f1", "ARMED")["status"]
    # what the board reports today: ARMED's frames only. The estimate says so, by camera
    armed_only = disk_estimate(st)
    assert armed_only is not None and armed_only.minutes == pytest.approx(69.0)
    assert armed_only.assumed == ("down",)
    # each phase's frame size reported (frame_bytes_by_phase: as recorded, or measured at ARM)
    st["cameras"]["down"]["frame_bytes_by_phase"] = {"ARMED": ARMED_B, **{
        p: FLIGHT_B for p in ("DESCENT", "SEPARATION", "TOUCHDOWN")}}
    est = disk_estimate(st)
    assert est is not None and est.minutes == pytest.approx(12.0) and est.assumed == ()
    assert est.bps == pytest.approx(30 * FLIGHT_B)
    # a small card: need 15 min, the banner is NO-GO and names the disk
    view = _view("f1", "ARMED", frame_bytes_by_phase={"DESCENT": FLIGHT_B})
    res = evaluate([view], Limits(min_record_min=15))
    assert res["go"] is False and res["failing"] == [
        "a: 2484 MB free = 12.0 min at the flight's schedule (need 15); DESCENT 3.45 MB/s"
    ], res["failing"]


def test_the_heaviest_phase_decides_with_every_cameras_rate_in_it() -> None:
    sizes = {"DESCENT": 100_000, "SEPARATION": 50_000, "TOUCHDOWN": 100_000}
    down = _cam(schedule={"ARMED": 2, "DESCENT": 10, "SEPARATION": 60, "TOUCHDOWN": 30},
                frame_bytes_by_phase=sizes)
    up = _cam(schedule={"ARMED": 2, "DESCENT": 30, "SEPARATION": 30, "TOUCHDOWN": 5},
              frame_bytes_by_phase=sizes)
    est = disk_estimate({"disk_free_mb": 600.0, "cameras": {"down": down, "up": up}})
    # DESCENT 4.0 MB/s, SEPARATION 4.5, TOUCHDOWN 3.5 (each camera's max would say 9.0)
    assert est is not None and (est.phase, est.bps) == ("SEPARATION", pytest.approx(4.5e6))
    assert est.minutes == pytest.approx(600e6 / 4.5e6 / 60)


def test_frame_sizes_are_learned_from_status_as_recorded_and_the_ring_is_armeds() -> None:
    sizes = FrameSizes()
    ring = {"ring_frames": 8, "ring_bytes": 8 * ARMED_B}
    for view in (
        _view("f1", "ARMED", **ring),
        _view("f1", "DESCENT", ring_frames=0, ring_bytes=0),  # the ring not yet stored
        # the 8 ring frames (ARMED's) and 10 descent frames stored in the same interval
        _view("f1", "DESCENT", frames_stored=18, bytes_stored=8 * ARMED_B + 10 * FLIGHT_B),
        _view("f1", "DESCENT", frames_stored=48, bytes_stored=8 * ARMED_B + 40 * FLIGHT_B),
        # an older status arriving late (the poll and the PUB cross) changes nothing
        _view("f1", "DESCENT", frames_stored=18, bytes_stored=8 * ARMED_B + 10 * FLIGHT_B),
        # an interval across the phase change is of both phases: not used
        _view("f1", "SEPARATION", frames_stored=60, bytes_stored=8 * ARMED_B + 52 * 9_999),
    ):
        sizes.update(view)
    assert sizes.of("a") == {"down": {"ARMED": pytest.approx(ARMED_B),
                                      "DESCENT": pytest.approx(FLIGHT_B)}}
    # the next drop: armed again, a new flight; the check uses the descent's size as recorded
    nxt = _view("f2", "ARMED")
    sizes.update(nxt)
    res = evaluate([nxt], Limits(min_record_min=15), sizes)
    assert _disk(res)["ok"] is False
    assert _disk(res)["detail"].startswith("2484 MB free = 12.0 min at the flight's schedule")


def _lores_armed_config(directory: Path) -> Path:
    """A sim board whose down camera records 64x48 while armed, 640x480 in flight."""
    cfg = write_board_config(directory, "dm-a", 0, size=(640, 480), stills=(), descent_s=30.0,
                             post_touchdown_s=0.3, reserve_mb=0,
                             fps={"down": {"ARMED": 4, "DESCENT": 12, "SEPARATION": 12,
                                           "TOUCHDOWN": 12},
                                  "up": {"ARMED": 4, "DESCENT": 4, "SEPARATION": 4,
                                         "TOUCHDOWN": 4}})
    text = cfg.read_text()
    first = text.index('name = "down"')
    at = text.index("size = [640, 480]\n", first) + len("size = [640, 480]\n")
    cfg.write_text(text[:at] + 'lores_size = [64, 48]\nlores_phases = ["ARMED"]\n' + text[at:])
    return cfg


def _armed_only(status: dict) -> dict:
    """``status`` as a board without frame sizes by phase reported it (before issue 28's fix)."""
    cams = {n: {k: v for k, v in c.items() if k not in ("frame_bytes_by_phase",
                                                         "frame_bytes_source")}
            for n, c in status["cameras"].items()}
    return {**status, "cameras": cams}


def test_a_real_board_armed_at_lores_is_no_go_on_its_first_drop(tmp_path: Path) -> None:
    """The board measures its flight frames at ARM: the first drop's disk check is NO-GO where the
    armed size said GO, within 25 % of the minutes the flight then records; the next drop too."""
    from camctl.ground.mission.session import Mission

    board = start_board(_lores_armed_config(tmp_path / "b"), tmp_path / "b" / "store", "dm-a")
    mission = None
    try:
        mission = Mission([board.router], tmp_path / "out", poll_s=0.2)
        mission.start()

        def status() -> dict:
            return mission.watcher.snapshot()[0].get("status") or {}

        def check(name: str) -> dict:
            return next(c for c in mission.go["checks"] if c["check"] == name)

        def minutes() -> float:
            return float(re.search(r"= (\d+\.\d) min", check("disk")["detail"]).group(1))

        def measured() -> bool:
            cams = status().get("cameras") or {}
            return status().get("phase") == "ARMED" and all(
                (c.get("frame_bytes_source") or {}).get("DESCENT") == "measured_at_arm"
                for c in cams.values()) and len(cams) == 2

        _command(board, "arm")
        wait_for(measured, "the flight's frame sizes measured at ARM", timeout_s=30)
        at_arm = status()
        est, armed_only = disk_estimate(at_arm), disk_estimate(_armed_only(at_arm))
        assert est is not None and armed_only is not None and est.assumed == ()
        # the down camera records 64x48 armed, 640x480 in flight: the armed size says far more
        assert armed_only.minutes > 3 * est.minutes, (armed_only, est)
        # a card between the two: GO by the armed size, NO-GO by the sizes measured at ARM
        limit = 2 * est.minutes
        mission.limits = Limits(min_record_min=limit)
        wait_for(lambda: check("armed")["ok"] and check("down rate")["ok"]
                 and not check("disk")["ok"], "NO-GO on the disk on the first drop", timeout_s=30)
        first = check("disk")["detail"]
        assert "not measured" not in first and minutes() < limit, first
        assert mission.go["go"] is False
        first_min = minutes()
        _command(board, "event", name="release")
        time.sleep(3.0)  # the flight's length in DESCENT (the scenario, not a wait)
        _command(board, "event", name="touchdown")
        wait_for(lambda: status().get("phase") == "LANDED", "the board to land", timeout_s=30)
        # the minutes the flight's frames as recorded give (the ground's own sizes, from the
        # bytes the store grew by in each phase), with the disk free at ARM: the descent's (the
        # 0.3 s of TOUCHDOWN are a few frames in one poll, too few to size a phase by)
        learned = mission.sizes.of("dm-a")
        assert learned["down"]["DESCENT"] > 4 * learned["down"]["ARMED"], learned
        flown = {n: {p: v for p, v in s.items() if p in ("ARMED", "DESCENT")}
                 for n, s in learned.items()}
        true = disk_estimate(_armed_only(at_arm), flown)
        assert true is not None and true.assumed == ()
        assert est.minutes == pytest.approx(true.minutes, rel=0.25), (est, true)
        # the next drop: disarm, arm, and the same card is still not enough
        _command(board, "disarm")
        _command(board, "arm")
        wait_for(lambda: check("armed")["ok"] and check("down rate")["ok"]
                 and not check("disk")["ok"], "armed again, and NO-GO on the disk", timeout_s=30)
        assert minutes() < limit and "not measured" not in check("disk")["detail"]
        print(f"disk minutes: armed size {armed_only.minutes:.1f}, measured at ARM "
              f"{first_min:.1f} ({est.minutes:.1f}), as recorded {true.minutes:.1f}")
    finally:
        if mission is not None:
            mission.close()
        board.stop()
