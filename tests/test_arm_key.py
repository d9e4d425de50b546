"""The arm key: one rule while the daemon runs and at a restart (docs/phases-and-gpio.md, "The arm
key"), on in-process boards (sim cameras, gpiozero's MockFactory lines). The restart half is in
tests/test_resume.py, the rule table in tests/test_events.py.

A board with ``[gpio] backend = "lgpio"`` here gets a MockFactory injected: its lines are "real"
to the daemon (commands cannot move them) while the test moves them as wiring would.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from boards import main_loop, make_config
from gpiozero.pins.mock import MockFactory
from waiting import wait_for

from camctl.board.armkey import ArmKey
from camctl.board.config import Config, PhasesConfig
from camctl.board.daemon import Daemon
from camctl.board.events import PhaseMachine
from camctl.exc import CommandRefused


def real_lines(cfg: Config) -> Config:
    return dataclasses.replace(cfg, gpio=dataclasses.replace(cfg.gpio, backend="lgpio"))


# --- operator commands on a board with an arm line ------------------------------------------------
def test_an_operator_arm_on_a_mock_board_turns_the_key_on_and_leaves_it_on(daemon) -> None:
    d = daemon()
    assert d.command("arm", {}) == {"phase": "ARMED", "event": "arm", "changed": True,
                                    "outcome": "transition"}
    assert d.lines.is_active("arm")  # a key, not a pulse: off again would disarm
    [tr] = d.machine.history
    assert (tr.event, tr.source) == ("arm", "gpio")  # through the key's edge, as wiring would
    # with the key on, an operator's disarm and arm move the machine, not the key
    assert d.command("disarm", {})["phase"] == "SAFE" and d.lines.is_active("arm")
    again = d.command("arm", {})
    assert (again["phase"], again["changed"]) == ("ARMED", True)
    assert d.machine.history[-1].source == "operator"


def test_an_operator_arm_with_the_real_key_off_is_refused(daemon, tmp_path: Path) -> None:
    d = daemon(real_lines(make_config(tmp_path)), pin_factory=MockFactory())
    with pytest.raises(CommandRefused, match=r"the arm key is off \(arm, BCM17\)"):
        d.command("arm", {})
    assert d.phase == "SAFE" and d.flight == ""
    d.lines.drive("arm", True)  # the key turned on: that arms
    assert d.phase == "ARMED"
    assert d.command("disarm", {})["phase"] == "SAFE"
    # the key is still on: an operator may arm again
    assert d.command("arm", {})["phase"] == "ARMED"
    assert d.machine.history[-1].source == "operator"


# --- the key turned off while the daemon runs -----------------------------------------------------
def _records(d: Daemon, name: str) -> list[tuple[str, str, str]]:
    return [(r.source, r.phase, r.outcome) for r in d.machine.records if r.name == name]


@pytest.mark.parametrize("backend", ["mock", "lgpio"])
def test_the_key_turned_off_in_armed_disarms_while_running(daemon, tmp_path: Path,
                                                           backend: str) -> None:
    cfg = make_config(tmp_path)
    d = daemon(cfg) if backend == "mock" else daemon(real_lines(cfg), pin_factory=MockFactory())
    with main_loop(d):
        d.lines.drive("arm", True)
        assert d.phase == "ARMED"
        flight = d.flight
        d.lines.drive("arm", False)  # the key turned off
        wait_for(lambda: d.phase == "SAFE", "the disarm")
        assert _records(d, "disarm") == [("gpio", "ARMED", "transition")]
        tr = d.machine.history[-1]
        assert (tr.phase_from, tr.phase_to, tr.event, tr.source) == ("ARMED", "SAFE", "disarm",
                                                                     "gpio")
        wait_for(lambda: d.serving(), "the disarmed flight finished")
        # on again: a new flight
        d.lines.drive("arm", True)
        assert d.phase == "ARMED" and d.flight not in ("", flight)


def test_the_key_turned_off_in_descent_is_recorded_and_changes_nothing(daemon,
                                                                        tmp_path: Path) -> None:
    d = daemon(make_config(tmp_path, post_touchdown_s=600))
    with main_loop(d):
        d.lines.drive("arm", True)
        d.lines.pulse("release")
        assert d.phase == "DESCENT"
        d.lines.drive("arm", False)
        wait_for(lambda: _records(d, "disarm"), "the key-off's record")
        assert _records(d, "disarm") == [("gpio", "DESCENT", "in_flight")]
        assert d.phase == "DESCENT"
        d.lines.pulse("touchdown")
        assert d.phase == "TOUCHDOWN"
        d.lines.drive("arm", True)
        d.lines.drive("arm", False)  # on and off again: one more refusal, once
        wait_for(lambda: len(_records(d, "disarm")) == 2, "the second key-off's record")
        assert _records(d, "disarm")[1] == ("gpio", "TOUCHDOWN", "in_flight")
        assert d.phase == "TOUCHDOWN"


# --- ArmKey, the main loop's reader, on a fake clock ----------------------------------------------
class Key:
    """A key and a clock the test moves."""

    def __init__(self) -> None:
        self.on: bool | None = False
        self.t = 1_000_000_000

    def advance(self, s: float) -> None:
        self.t += int(s * 1e9)


def armed_key(hold_s: float = 0.1) -> tuple[Key, PhaseMachine, ArmKey]:
    key = Key()
    m = PhaseMachine(PhasesConfig(), clock_ns=lambda: key.t)
    m.handle("arm", source="gpio")
    reader = ArmKey(m, lambda: key.on, hold_s=hold_s, clock_ns=lambda: key.t)
    key.on = True
    reader.start(True)
    return key, m, reader


def test_a_key_off_counts_once_it_has_read_off_for_the_hold() -> None:
    key, m, reader = armed_key()
    assert reader.poll() is None
    key.on = False
    first_off = key.t
    assert reader.poll() is None  # read off: the wait starts
    key.advance(0.099)
    assert reader.poll() is None and m.phase == "ARMED"
    key.advance(0.001)
    tr = reader.poll()
    assert (tr.phase_to, tr.event, tr.source, tr.mono_ns) == ("SAFE", "disarm", "gpio", first_off)
    key.advance(5)
    assert reader.poll() is None and len(m.records) == 2  # once per key-off


def test_chatter_and_an_arm_edge_start_the_wait_again() -> None:
    key, m, reader = armed_key()
    key.on = False
    reader.poll()
    key.advance(0.06)
    key.on = True  # a chatter read on
    reader.poll()
    key.on = False
    key.advance(0.001)
    reader.poll()
    key.advance(0.06)
    reader.key_on()  # an arm edge between two reads
    key.advance(0.001)
    assert reader.poll() is None
    key.advance(0.099)
    assert reader.poll() is None and m.phase == "ARMED"
    key.advance(0.001)
    assert reader.poll().phase_to == "SAFE"


def test_a_key_off_at_start_is_the_restarts_and_no_arm_line_reads_nothing() -> None:
    key, m, reader = armed_key()
    key.on = False
    reader.start(False)  # the restart applied it (or there was nothing to apply)
    key.advance(10)
    assert reader.poll() is None and reader.poll() is None and m.phase == "ARMED"
    reader.key_on()  # turned on, then off: this key-off counts
    reader.poll()
    key.advance(0.1)
    assert reader.poll().phase_to == "SAFE"
    key.on = None
    nothing = ArmKey(m, lambda: None, clock_ns=lambda: key.t)
    nothing.start(None)
    nothing.key_on()
    key.advance(10)
    assert nothing.poll() is None and nothing.poll() is None
