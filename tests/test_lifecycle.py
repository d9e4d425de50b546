"""The shared close-once lifecycle (camctl.common.lifecycle): closed, the context manager, start."""

from __future__ import annotations

import pytest

from camctl.common.lifecycle import Closeable, Startable


class Counted(Startable):
    def __init__(self) -> None:
        self.starts = 0
        self.closes = 0

    def start(self) -> None:
        self.starts += 1

    def close(self) -> None:
        self.closes += 1
        self._closed = True


class Plain(Closeable):
    def close(self) -> None:
        self._closed = True


def test_a_half_built_resource_reads_as_open():
    thing = Plain.__new__(Plain)  # as when __init__ fails before setting anything
    assert thing.closed is False


def test_with_closes_on_the_way_out_and_returns_the_object():
    with Plain() as thing:
        assert isinstance(thing, Plain) and not thing.closed
    assert thing.closed


def test_with_closes_when_the_body_raises_and_lets_the_error_through():
    thing = Counted()
    with pytest.raises(KeyError), thing:
        raise KeyError("boom")
    assert (thing.starts, thing.closes, thing.closed) == (1, 1, True)


def test_startable_starts_on_enter_once():
    with Counted() as thing:
        assert (thing.starts, thing.closes) == (1, 0)
    assert (thing.starts, thing.closes) == (1, 1)


def test_plain_closeable_does_not_start_on_enter():
    assert not hasattr(Plain(), "start")


def test_close_and_start_are_abstract():
    class NoClose(Closeable):
        pass

    class NoStart(Startable):
        def close(self) -> None:
            pass

    for cls in (NoClose, NoStart):
        with pytest.raises(TypeError, match="abstract"):
            cls()
