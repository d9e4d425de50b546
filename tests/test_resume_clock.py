"""One clock for a flight across restarts and reboots (issue 26, defect 4).

The store stamps its run on every record and frame; the resume maps a rebooted board's monotonic
clock onto the flight's timeline (wall-clock gap checked against the uptime); ``ls`` places every
record and frame on that timeline and says where a reboot was. In-process, except one real board
killed -9 in DESCENT and restarted as after a reboot (a time namespace and a new boot id).
"""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
from store_helpers import frame

from camctl.board.config import StoreConfig
from camctl.exc import StoreError
from camctl.store import FlightStore, iter_events, iter_frames, load_index

S = 1_000_000_000


def _events(flight_dir: Path) -> list[dict]:
    return [e for seg in sorted((flight_dir / "events").glob("*.mcap")) for e in iter_events(seg)]


def _frames(flight_dir: Path, cam: str) -> list:
    return [f for seg in sorted((flight_dir / cam).glob("*.mcap")) for f in iter_frames(seg)]


# --- the store stamps its run ---------------------------------------------------------------------
def test_the_store_stamps_its_run_on_records_frames_stills_and_its_own_records(
        tmp_path: Path) -> None:
    cfg = StoreConfig()
    with FlightStore(tmp_path, "b", "F", cfg, cameras=["down"]) as st:  # a new flight: run 0
        st.log_event({"kind": "flight", "name": "open"})
        st.put(frame("down", 0))
    with FlightStore(tmp_path, "b", "F", cfg, cameras=["down"], resume=True, run=2) as st:
        st.log_event({"kind": "phase", "name": "DESCENT", "phase_to": "DESCENT"})
        st.log_event({"kind": "resume", "name": "x", "run": 5})  # a record's own run is kept
        for seq in range(1, 4):
            st.put(frame("down", seq, still=seq == 3))
    failing = {"n": 0}

    def opener(path: Path):  # the camera's first segment cannot be opened: the store's own records
        if path.parent.name == "down" and not failing["n"]:
            failing["n"] += 1
            raise OSError(5, "injected", str(path))
        return open(path, "xb", buffering=0)

    ticks = itertools.count(0.0, 5.0)  # a clock past the store's retry after each I/O error
    with FlightStore(tmp_path, "b", "F", cfg, cameras=["down"], resume=True, run=3,
                     opener=opener, clock=lambda: next(ticks)) as st:
        st.put(frame("down", 9))
    runs = [(e["kind"], e.get("run")) for e in _events(tmp_path / "F")]
    assert runs[:3] == [("flight", 0), ("phase", 2), ("resume", 5)], runs
    own = runs[3:]  # the store's own fault and drop records of the I/O error, of run 3
    assert {k for k, _ in own} == {"fault", "drop"} and {r for _, r in own} == {3}, own
    frames = _frames(tmp_path / "F", "down")
    assert [(f.seq, f.run, f.still) for f in frames] == [
        (0, 0, False), (1, 2, False), (2, 2, False), (3, 2, True)]
    segs = load_index(tmp_path / "F")["cameras"]["down"]["segments"]
    assert [s["run"] for s in segs if s["frames"]] == [0, 2]


def test_a_store_refuses_a_run_that_is_no_count(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="run must be an integer 0 or more, got -1"):
        FlightStore(tmp_path, "b", "F", StoreConfig(), run=-1)
