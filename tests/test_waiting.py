"""The suite's one polling wait returns what the predicate found and names what it waited for."""

from __future__ import annotations

import itertools

import pytest
from waiting import wait_for


def test_wait_for_returns_the_first_truthy_value() -> None:
    answers = iter([None, 0, "", {"phase": "LANDED"}])
    assert wait_for(lambda: next(answers), "a status", interval_s=0) == {"phase": "LANDED"}


def test_wait_for_names_what_it_waited_for_and_asks_once_more_at_the_deadline() -> None:
    calls = itertools.count(1)
    asked: list[int] = []
    with pytest.raises(AssertionError, match="waiting for the board to land"):
        wait_for(lambda: asked.append(next(calls)), "the board to land", timeout_s=0)
    assert asked == [1]
