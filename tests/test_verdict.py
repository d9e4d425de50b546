"""The flight verdict (camctl/ground/verdict.py): its rule table, and a real flight where one of two
``camctl run`` sim boards is killed with SIGKILL in DESCENT: the mission, ``fetch``, ``ls`` and
``export`` each say RECORDED for the one that landed and LOST for the other, and the mission never
says LANDED.
"""

from __future__ import annotations

import contextlib
import io
import json
import queue
import time
from pathlib import Path

import pytest
from waiting import wait_for

from camctl.ground.mission.checks import evaluate, stage
from camctl.ground.verdict import (
    LOST,
    PARTIAL,
    RECORDED,
    BoardFlight,
    flight_done,
    from_summary,
    verdict,
)

LANDED = {"landed": True, "phase": "LANDED", "downloaded": 4, "listed": 4}


@pytest.mark.parametrize(("facts", "kind", "reason"), [
    ({"flew": False}, LOST, "no flight"),
    ({"contact": False, "lost_at": "in DESCENT at T+4.2 s"}, LOST,
     "lost contact in DESCENT at T+4.2 s; nothing downloaded"),
    # in contact, nothing downloaded: PARTIAL (LOST is for a silent board, or no flight)
    ({"final": True, "landed": True, "download_error": "refused"}, PARTIAL,
     "nothing downloaded (refused)"),
    ({**LANDED, "downloaded": 0, "final": True, "download_error": "previews only"}, PARTIAL,
     "download unfinished: 0 of 4 segments (previews only)"),
    ({**LANDED}, RECORDED, "landed, 4 segments, books balanced"),
    # an older board's flight (no ledger records): recorded, its books never said to balance
    ({**LANDED, "unchecked": ("up",)}, RECORDED, "landed, 4 segments, books not accounted: up"),
    ({**LANDED, "lost_frames": 3}, PARTIAL, "3 frames lost"),
    ({**LANDED, "downloaded": 2, "download_error": "no answer"}, PARTIAL,
     "download unfinished: 2 of 4 segments (no answer)"),
    ({**LANDED, "failed": ("up",)}, PARTIAL, "camera up failed"),
    ({**LANDED, "unbalanced": ("down",)}, PARTIAL, "books not balanced: down"),
    # an unfinished download cannot balance: said once, as the download
    ({**LANDED, "downloaded": 1, "unbalanced": ("down",)}, PARTIAL,
     "download unfinished: 1 of 4 segments"),
    ({**LANDED, "contact": False, "lost_at": "in LANDED at T+9.0 s", "downloaded": 1}, PARTIAL,
     "lost contact in LANDED at T+9.0 s; download unfinished: 1 of 4 segments"),
    ({**LANDED, "landed": False, "phase": "DESCENT", "final": True}, PARTIAL,
     "no landing (last phase DESCENT)"),
])
def test_the_rule_table(facts: dict, kind: str, reason: str) -> None:
    assert verdict(BoardFlight("rig", **facts)) == (kind, reason)


@pytest.mark.parametrize("facts", [
    {},  # still flying, in contact
    {"landed": True, "phase": "LANDED"},  # landed, nothing downloaded yet
    {**LANDED, "fetching": True},  # downloading
])
def test_live_boards_in_contact_have_no_verdict_until_done(facts: dict) -> None:
    f = BoardFlight("rig", **facts)
    assert verdict(f) is None
    assert not flight_done([verdict(f), verdict(BoardFlight("x", flew=False))])
    assert verdict(BoardFlight("rig", **{**facts, "final": True})) is not None  # ls: always one


def _view(name: str, phase: str, *, reachable: bool = True, lost: dict | None = None) -> dict:
    return {"name": name, "url": f"tcp://{name}:1", "reachable": reachable, "error": "no answer",
            "status": {"board": name, "phase": phase}, "release_mono_ns": 1, "lost_contact": lost}


def test_the_banner_names_the_silent_board_and_never_says_landed() -> None:
    views = [_view("rig-a", "LANDED"), _view("rig-c", "LANDED"),
             _view("rig-b", "DESCENT", reachable=False,
                   lost={"phase": "DESCENT", "t_rel_s": 4.2})]
    assert stage(views) == "lost contact"
    ok = {"state": "ok", "facts": {**LANDED, "board": "", "final": True}}
    go = evaluate(views, downloads={"rig-a": ok})
    assert go["stage"] == "lost contact" and not go["done"]  # rig-c not downloaded yet
    assert go["flight"][0] == "2 of 3 boards landed; rig-b: lost contact in DESCENT at T+4.2 s"
    assert go["verdicts"]["rig-b"] == {"kind": LOST, "reason":
                                       "lost contact in DESCENT at T+4.2 s; nothing downloaded"}
    assert go["verdicts"]["rig-a"]["kind"] == RECORDED and go["verdicts"]["rig-c"] is None
    go = evaluate(views, downloads={"rig-a": ok, "rig-c": ok})
    assert go["done"] and go["stage"] == "lost contact"
    # every board down: LANDED (a board that went silent after its download is down too)
    views[2] = _view("rig-b", "LANDED", reachable=False)
    go = evaluate(views, downloads={"rig-a": ok, "rig-c": ok, "rig-b": ok})
    assert go["stage"] == "landed" and go["flight"][0] == "rig-a: RECORDED: landed, 4 segments, " \
                                                         "books balanced"


def test_a_downloads_facts_and_the_boards_status_make_its_verdict_on_the_page() -> None:
    facts = {**LANDED, "board": "", "final": True, "lost_frames": 5}
    view = _view("rig-a", "LANDED")
    view["status"]["cameras"] = {"down": {"state": "running"}, "up": {"state": "failed"}}
    go = evaluate([view], downloads={"rig-a": {"state": "ok", "facts": facts}})
    assert go["verdicts"]["rig-a"] == {"kind": PARTIAL,
                                       "reason": "5 frames lost; camera up failed"}
    # a download cut when the board went silent: what arrived, and that contact was lost
    cut = {"state": "failed", "facts": {**facts, "lost_frames": 0, "downloaded": 1}}
    lost = _view("rig-a", "LANDED", reachable=False, lost=None)
    go = evaluate([lost], downloads={"rig-a": cut})
    assert go["verdicts"]["rig-a"] == {"kind": PARTIAL, "reason": "no contact; download "
                                       "unfinished: 1 of 4 segments"}
    assert go["done"]


def test_a_board_killed_in_descent_is_lost_everywhere(tmp_path: Path) -> None:
    from camctl.demo import _command, start_board, write_board_config
    from camctl.ground import fetch, print_report
    from camctl.ground.export.pipeline import export_all
    from camctl.ground.mission.session import Mission
    from camctl.ground.views import ls_local

    boards, mission = [], None
    try:
        for i, name in enumerate(("vd-a", "vd-b")):
            cfg = write_board_config(tmp_path / name, name, i, size=(160, 120), descent_s=30,
                                     post_touchdown_s=0.5)
            boards.append(start_board(cfg, tmp_path / name / "store", name))
        a, b = boards
        got: queue.Queue[dict] = queue.Queue()
        mission = Mission([a.router, b.router], tmp_path / "m", poll_s=0.2, timeout_s=0.5)
        mission.listen(got.put)
        mission.start()
        for x in boards:
            _command(x, "arm")
        time.sleep(0.5)  # pre-trigger frames (the scenario, not a wait)
        for x in boards:
            _command(x, "event", name="release")
        views: dict[str, dict] = {}
        go: dict = {}

        def seen(pred: object) -> object:
            nonlocal go
            while True:
                try:
                    m = got.get(timeout=0.2)
                except queue.Empty:
                    return pred()  # type: ignore[operator]
                if m["type"] == "board":
                    views[m["view"]["name"]] = m["view"]
                elif m["type"] == "go":
                    go = m
                if pred():  # type: ignore[operator]
                    return True

        wait_for(lambda: seen(lambda: all(
            (views.get(n) or {}).get("release_ground_ms") for n in ("vd-a", "vd-b"))),
            "both boards' release on the page", timeout_s=60, interval_s=0)
        time.sleep(1.0)  # a second of descent
        b.kill9()
        _command(a, "event", name="touchdown")
        wait_for(lambda: seen(lambda: go.get("done")), "every board's verdict", timeout_s=120,
                 interval_s=0)
        lost = views["vd-b"]["lost_contact"]
        assert lost["phase"] == "DESCENT" and 0.5 < lost["t_rel_s"] < 10, lost
        assert go["stage"] == "lost contact", go["stage"]
        assert go["flight"][0].startswith(
            "1 of 2 boards landed; vd-b: lost contact in DESCENT at T+"), go["flight"]
        assert go["verdicts"]["vd-a"]["kind"] == RECORDED, go["verdicts"]
        assert go["verdicts"]["vd-b"]["kind"] == LOST, go["verdicts"]
        assert go["verdicts"]["vd-b"]["reason"].startswith("lost contact in DESCENT at T+")
        mission.close()
        mission = None

        # fetch's closing lines: one verdict per board
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            print_report(fetch([a.router, b.router], tmp_path / "f", give_up_after_s=2))
        text = out.getvalue()
        # a board never reached is named by its host (fetch's summary does the same)
        assert "verdict: 127.0.0.1: LOST: no contact; nothing downloaded" in text, text
        assert any(line.startswith("verdict: vd-a ") and ": RECORDED: landed" in line
                   for line in text.splitlines()), text
        # ls and export's summary of what arrived
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            ls_local(tmp_path / "f", json_out=True)
        (fl,) = json.loads(out.getvalue())["flights"]
        assert fl["verdict"]["kind"] == RECORDED, fl.get("verdict")
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            ls_local(tmp_path / "f")
        assert "  verdict RECORDED: landed, 2 segments, books balanced" in out.getvalue()
        res = export_all(tmp_path / "f", tmp_path / "x", mp4=False, contact_sheet=False,
                         timeline=False)
        assert len(res.verdicts) == 2 and res.verdicts[0].startswith("vd-a ")
        assert ": RECORDED: landed" in res.verdicts[0]
        # the killed board has no folder: the fetch's record of it names it in the export
        assert res.verdicts[1] == "127.0.0.1: LOST: no contact; nothing downloaded (no answer " \
                                  "for 2 s: gave up)", res.verdicts
    finally:
        if mission is not None:
            mission.close()
        for x in boards:
            x.stop()


def test_from_summary_reads_an_ls_record() -> None:
    fl = {"board": "r", "release_source": "edge", "segments_listed": 3, "lost_frames": 2,
          "phases": [{"phase": "ARMED"}, {"phase": "DESCENT"}, {"phase": "LANDED"}],
          "cameras": {"down": {"frames": 5, "segments": 2, "ledger": {"balanced": True}},
                      "up": {"frames": 0, "segments": 0, "ledger": {"balanced": None}}}}
    assert verdict(from_summary(fl)) == (PARTIAL, "download unfinished: 2 of 3 segments; "
                                                  "2 frames lost; camera up failed")
    # an older board's camera without ledger records: recorded, never "books balanced"
    old = {"board": "r", "release_source": "edge", "segments_listed": 1,
           "phases": [{"phase": "DESCENT"}, {"phase": "LANDED"}],
           "cameras": {"down": {"frames": 5, "segments": 1,
                                "ledger": {"captured": None, "balanced": None}}}}
    assert verdict(from_summary(old)) == (RECORDED,
                                          "landed, 1 segment, books not accounted: down")
