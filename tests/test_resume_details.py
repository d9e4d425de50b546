"""What a restart must find: a disarm saved before its reply, TOUCHDOWN's timer run from the
resume, a camera list changed between runs recorded and accounted.

In-process :class:`Daemon` boards on a flight written with the real :class:`FlightStore` (the
persisted state is just files); the disarm tests put the store on forgetfs (tests/forgetfs.py),
so "durable" means fsync'd, file and directory, and a power cut right after the reply is the
state a restarted board finds.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from boards import make_config
from forgetfs import Mounted, fuse_unavailable, mounted

from camctl.board.config import Config
from camctl.board.daemon import Daemon
from camctl.board.sdnotify import Notifier
from camctl.store import FlightStore, iter_events, list_flights

SLOW_S = 0.3  # a slow SD card: long enough that a reply not waiting for the write beats it


def persist_flight(cfg: Config, phases: list[tuple[str, float]], *, boot: str = "",
                   flight: str = "20261130T010000Z") -> str:
    """A flight whose log entered ``phases`` (phase, seconds ago), as a killed daemon left it;
    ``boot``: the boot id its records carry (monotonic times then mean this boot's clock)."""
    root = Path(cfg.store.dir)
    now_wall, now_mono = time.time_ns(), time.monotonic_ns()
    with FlightStore(root, cfg.board, flight, cfg.store,
                     cameras=[c.name for c in cfg.cameras]) as st:
        ago = int(phases[0][1] * 1e9)
        st.log_event({"kind": "flight", "name": "open", "flight": flight, "boot_id": boot,
                      "wall_ns": now_wall - ago, "mono_ns": now_mono - ago})
        prev = "SAFE"
        for phase, ago_s in phases:
            ago = int(ago_s * 1e9)
            st.log_event({"kind": "phase", "name": phase, "phase_from": prev, "phase_to": phase,
                          "boot_id": boot, "wall_ns": now_wall - ago, "mono_ns": now_mono - ago})
            prev = phase
        st.commit(wait=True)
    return flight


def events(flight_dir: Path) -> list[dict]:
    return [e for seg in sorted((flight_dir / "events").glob("*.mcap")) for e in iter_events(seg)]


def on_store(cfg: Config, root: Path) -> Config:
    return dataclasses.replace(cfg, store=dataclasses.replace(cfg.store, dir=str(root)))


def durable_dirs(fs: Mounted, path: Path) -> Path:
    """``path`` made on forgetfs with every directory entry down to it fsync'd."""
    path.mkdir(parents=True, exist_ok=True)
    for d in [path, *path.parents]:
        fd = os.open(d, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        if d == fs.mnt:
            break
    return path


@pytest.fixture
def boards() -> Iterator[Any]:
    """Start in-process boards (closed after the test, in reverse)."""
    made: list[Daemon] = []

    def start(cfg: Config) -> Daemon:
        d = Daemon(cfg, notifier=Notifier(environ={}))
        made.append(d)
        d.start()
        return d

    yield start
    for d in reversed(made):
        d.close()


@pytest.fixture(scope="module")
def fs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mounted]:
    if fuse_unavailable():
        pytest.skip(fuse_unavailable())
    with mounted(tmp_path_factory.mktemp("forgetfs") / "mnt") as m:
        yield m


# --- a disarm is saved before its reply -----------------------------------------------------------
def test_a_disarm_after_landing_is_durable_before_its_reply(fs: Mounted, tmp_path: Path,
                                                            boards, monkeypatch) -> None:
    """The marker that says "landed, then disarmed" is fsync'd (file and directory) before the
    operator hears SAFE: a power cut right after the reply comes up SAFE, not LANDED."""
    import camctl.store.index

    cfg = on_store(make_config(tmp_path), durable_dirs(fs, fs.mnt / tmp_path.name / "store"))
    flight = persist_flight(cfg, [("ARMED", 30), ("DESCENT", 20), ("TOUCHDOWN", 10),
                                  ("LANDED", 9)])
    write = camctl.store.index.write_json_atomic

    def slow_write(path: Path, data: Any) -> None:
        time.sleep(SLOW_S)
        write(path, data)

    monkeypatch.setattr(camctl.store.index, "write_json_atomic", slow_write)
    d = boards(cfg)
    assert d.phase == "LANDED"
    reply = d.command("disarm", {})
    assert reply["phase"] == "SAFE" and reply["saved"] is True, reply
    cut = fs.cut(tmp_path / "cut")  # the power cut, right after the reply
    monkeypatch.setattr(camctl.store.index, "write_json_atomic", write)
    store = cut / tmp_path.name / "store"
    assert list_flights(store) == [flight]
    again = boards(on_store(cfg, store))
    assert (again.phase, again.resumed) == ("SAFE", None)


def test_a_disarm_in_armed_is_durable_before_its_reply(fs: Mounted, tmp_path: Path, boards,
                                                       monkeypatch) -> None:
    """ARMED, then disarmed with the arm key left on: the SAFE record is committed before the
    reply, so a power cut right after it does not come back ARMED."""
    import camctl.store

    class SlowStore(FlightStore):  # every segment commit of the board's flight takes a while
        def __init__(self, *args: Any, **kw: Any) -> None:
            super().__init__(*args, fsync=lambda fd: (time.sleep(SLOW_S), os.fsync(fd)), **kw)

    monkeypatch.setattr(camctl.store, "FlightStore", SlowStore)
    cfg = on_store(make_config(tmp_path), durable_dirs(fs, fs.mnt / tmp_path.name / "store"))
    d = boards(cfg)
    assert d.command("arm", {"line": "hold"})["phase"] == "ARMED"  # the key on, and left on
    d.recorder.wait_open()
    d.store.commit(wait=True)  # the flight is open and ARMED, durably
    reply = d.command("disarm", {})
    assert reply["phase"] == "SAFE" and reply["saved"] is True, reply
    cut = fs.cut(tmp_path / "cut")
    store = cut / tmp_path.name / "store"
    assert list_flights(store) == [d.flight]
    again = boards(on_store(cfg, store))
    assert again.phase == "SAFE" and again.resumed is None
