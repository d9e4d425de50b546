"""The arm key: one rule while the daemon runs and at a restart (docs/phases-and-gpio.md, "The arm
key"), on in-process boards (sim cameras, gpiozero's MockFactory lines). The restart half is in
tests/test_resume.py, the rule table in tests/test_events.py.

A board with ``[gpio] backend = "lgpio"`` here gets a MockFactory injected: its lines are "real"
to the daemon (commands cannot move them) while the test moves them as wiring would.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest
from boards import make_config
from gpiozero.pins.mock import MockFactory

from camctl.board.config import Config
from camctl.board.daemon import Daemon
from camctl.board.sdnotify import Notifier
from camctl.exc import CommandRefused


def real_lines(cfg: Config) -> Config:
    return dataclasses.replace(cfg, gpio=dataclasses.replace(cfg.gpio, backend="lgpio"))


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator:
    made: list[Daemon] = []

    def start(cfg: Config | None = None, **kw) -> Daemon:
        d = Daemon(cfg or make_config(tmp_path), notifier=Notifier(environ={}), **kw)
        made.append(d)
        d.start()
        return d

    yield start
    for d in made:
        d.close()


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
