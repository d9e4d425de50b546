"""Armed again while the last flight's files are still closing: the new flight's records go to the
new flight (the VM tier found the arm written into the old flight's log)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from boards import main_loop, make_config
from waiting import wait_for

from camctl.board.daemon import Daemon
from camctl.board.sdnotify import Notifier
from camctl.store import iter_events

pytestmark = pytest.mark.slow


def _phases(flight_dir: Path) -> list[str]:
    return [e["phase_to"] for seg in sorted((flight_dir / "events").glob("*.mcap"))
            for e in iter_events(seg) if e.get("kind") == "phase"]


def test_an_arm_while_the_last_flight_closes_is_the_new_flights(tmp_path: Path) -> None:
    d = Daemon(make_config(tmp_path, post_touchdown_s=0.1), notifier=Notifier(environ={}))
    closing = threading.Event()
    wait_cameras = d.recorder._wait_cameras

    def slow_finish() -> None:  # the landing's last frames take a while to come
        closing.set()
        wait_cameras()
        threading.Event().wait(1.5)

    d.recorder._wait_cameras = slow_finish
    try:
        d.start()
        with main_loop(d):
            d.command("arm", {})
            d.command("event", {"name": "release"})
            wait_for(lambda: d.status()["cameras"]["down"]["frames_stored"] >= 3, "frames")
            d.command("event", {"name": "touchdown"})
            wait_for(closing.is_set, "the landed flight closing")
            first = d.flight
            d.command("disarm", {})
            d.command("arm", {})  # the first flight's files are not closed yet
            wait_for(lambda: d.flight != first and d.recorder.recording(), "the new flight open")
            second = d.flight
            # the first flight's finish does not wait for the cameras of the second (they run)
            wait_for(lambda: first in d.recorder.done, "the first flight closed while the second "
                     "records", timeout_s=20)
            assert d.phase == "ARMED"
            d.command("disarm", {})
            wait_for(lambda: d.serving(), "both flights closed", timeout_s=20)
    finally:
        d.close()
    store = tmp_path / "store"
    assert _phases(store / first)[:4] == ["ARMED", "DESCENT", "TOUCHDOWN", "LANDED"]
    assert "ARMED" not in _phases(store / first)[4:], _phases(store / first)
    assert _phases(store / second)[0] == "ARMED", _phases(store / second)
