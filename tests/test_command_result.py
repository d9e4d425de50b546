"""An operator command the board ignored or could not save is never shown as done (issue 28, 2).

Pure tests of :func:`camctl.ground.command_result.judge` / ``offered`` against the phase
machine's own rule table, then ``camctl arm|disarm|event`` against a real sim board (``camctl
run``): a disarm in DESCENT is a one-line warning and exit 2, never "-> DESCENT" and 0.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from camctl.board.config import PhasesConfig
from camctl.board.events import PhaseMachine
from camctl.demo import start_board, write_board_config
from camctl.ground.command_result import judge, offered

PHASE_PATH = {"SAFE": [], "ARMED": ["arm"], "DESCENT": ["arm", "release"],
              "SEPARATION": ["arm", "release", "separation"],
              "TOUCHDOWN": ["arm", "release", "touchdown"]}


def _machine_in(phase: str) -> PhaseMachine:
    m = PhaseMachine(PhasesConfig())
    for event in PHASE_PATH[phase]:
        m.handle(event)
    assert m.phase == phase
    return m


@pytest.mark.parametrize("phase", [*PHASE_PATH, "LANDED"])
@pytest.mark.parametrize("command", ["arm", "disarm"])
def test_a_button_is_offered_exactly_where_the_phase_machine_acts_on_it(
        phase: str, command: str) -> None:
    if phase == "LANDED":  # a restarted board comes back LANDED as persisted
        m = PhaseMachine(PhasesConfig())
        m.resume("LANDED", entered_ns=0)
    else:
        m = _machine_in(phase)
    acts = m.handle(command) is not None
    assert (command in offered(phase)) == acts, (phase, command, m.records[-1])


def test_an_ignored_disarm_is_named_with_its_reason_and_phase() -> None:
    reply = {"phase": "DESCENT", "event": "disarm", "changed": False, "outcome": "in_flight"}
    assert judge("disarm", reply) == ("ignored", "disarm ignored: in flight (phase DESCENT)")
    dup = {"phase": "ARMED", "event": "arm", "changed": False, "outcome": "duplicate"}
    assert judge("arm", dup) == ("ignored", "arm ignored: already done (phase ARMED)")
    # a reply without `changed` (an older board) is not taken for done
    assert judge("arm", {"phase": "ARMED"}).level == "ignored"
    # a mock line moved back to rest moves no phase, and is not an ignored command
    rest = {"phase": "ARMED", "event": "release", "changed": False, "outcome": "",
            "line": "release"}
    assert judge("event release", rest).level == "ok"


def test_a_disarm_the_board_could_not_save_is_not_durable() -> None:
    reply = {"phase": "SAFE", "event": "disarm", "changed": True, "outcome": "", "saved": False}
    level, text = judge("disarm", reply)
    assert level == "not_durable" and text.startswith("disarm not durable: phase SAFE"), text
    assert judge("disarm", {**reply, "saved": True}) == ("ok", "disarm: done, phase SAFE")


def test_the_cli_warns_and_exits_2_for_a_command_a_real_board_ignored(
        tmp_path: Path, camctl_cli) -> None:
    cfg = write_board_config(tmp_path / "b", "cr-a", 0, size=(160, 120), stills=(),
                             descent_s=30.0)
    board = start_board(cfg, tmp_path / "b" / "store", "cr-a")
    try:
        url = board.router
        ok = camctl_cli("arm", "--connect", url)
        assert (ok.returncode, ok.stdout.strip(), ok.stderr) == (0, f"{url}: arm -> ARMED", "")
        again = camctl_cli("arm", "--connect", url)
        assert again.returncode == 2 and again.stdout == "", again
        assert again.stderr.strip() == (f"camctl: warning: {url}: arm ignored: already done "
                                        "(phase ARMED)")
        assert camctl_cli("event", "release", "--connect", url).returncode == 0
        r = camctl_cli("disarm", "--connect", url)
        assert r.returncode == 2 and r.stdout == "", r
        assert r.stderr.strip() == (f"camctl: warning: {url}: disarm ignored: in flight "
                                    "(phase DESCENT)")
        r = camctl_cli("event", "release", "--connect", url)
        assert r.returncode == 2 and "event release ignored: already done (phase DESCENT)" \
            in r.stderr, r
    finally:
        board.stop()


def test_the_mission_sends_an_unsaved_disarm_as_not_durable_and_the_buttons_phase_map(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from camctl.ground.mission import ground_link
    from camctl.ground.mission.session import Mission

    replies = {"disarm": {"phase": "SAFE", "event": "disarm", "changed": True, "outcome": "",
                          "saved": False},
               "arm": {"phase": "DESCENT", "event": "arm", "changed": False,
                       "outcome": "in_flight"}}
    monkeypatch.setattr(ground_link, "command", lambda url, name, **kw: replies[name])
    m = Mission(["tcp://127.0.0.1:9"], tmp_path / "out", operator=True)
    seen: list[dict] = []
    m.listen(seen.append)
    try:
        m.command("tcp://127.0.0.1:9", "disarm")
        m.command("tcp://127.0.0.1:9", "arm")
        hello = m.snapshot()[0]
    finally:
        m.close()
    assert [(s["ok"], s["code"], s["text"]) for s in seen] == [
        (False, "NOT_DURABLE", "disarm not durable: phase SAFE but not saved "
                               "(a restart may come up in the phase it left)"),
        (False, "IGNORED", "arm ignored: in flight (phase DESCENT)")]
    assert hello["commands_by_phase"] == {"SAFE": ["arm"], "ARMED": ["disarm"],
                                          "LANDED": ["disarm"]}
