"""MCAP times as Foxglove reads them: log_time is wall-clock ns since the epoch, publish_time the
sensor's monotonic time, so flights of boards with different monotonic clocks line up when opened
together.

Read with Foxglove's own reader, @mcap/core (tests/js, installed by .ci/run or on first use here
with npm), and checked against camctl's reader, which must keep giving the sensor time to export and
alignment.
"""

from __future__ import annotations

import dataclasses
import time
import types
from pathlib import Path

import pytest
from store_helpers import frame, read_with_mcap_core

import camctl.store.sources as store_sources  # where a record's wall offset is taken
from camctl.board.config import StoreConfig
from camctl.ground.flights import TimeBase, load_events
from camctl.store import FlightStore, iter_events, iter_frames

YEAR_2020_NS = 1_577_836_800 * 10**9
BOOT_SKEW_NS = 1_000 * 10**9  # board b's monotonic clock started 1000 s before board a's


def _skewed_time(skew_ns: int) -> types.SimpleNamespace:
    """The ``time`` module as a board booted ``skew_ns`` earlier sees it (monotonic clocks differ,
    wall agrees)."""
    names = {n: getattr(time, n) for n in dir(time) if not n.startswith("_")}
    return types.SimpleNamespace(**{**names, "monotonic_ns": lambda: time.monotonic_ns() + skew_ns})


def _fly(tmp: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    """Two boards record the same 20 moments: board b's sensor clock is ahead by BOOT_SKEW_NS."""
    stores = {}
    skews = {"a": 0, "b": BOOT_SKEW_NS}
    cfg = StoreConfig(reserve_mb=0, commit_interval_ms=50)
    for b in skews:
        stores[b] = FlightStore(tmp / b, f"board-{b}", f"F{b}", cfg, cameras=["down"])
    try:
        for i in range(20):
            now = time.monotonic_ns()
            for b, st in stores.items():
                monkeypatch.setattr(store_sources, "time", _skewed_time(skews[b]))
                if i == 5:
                    st.log_event({"kind": "phase", "event": "release", "phase_from": "ARMED",
                                  "phase_to": "DESCENT", "mono_ns": now + skews[b],
                                  "wall_ns": time.time_ns()})
                st.put(dataclasses.replace(frame("down", i), timestamp_ns=now + skews[b]))
                # written at once: the wall offset is taken at the frame's own time
                st.commit(wait=True)
            time.sleep(0.005)  # the moments are 5 ms apart (the scenario, not a wait)
        for st in stores.values():
            st.finish()
    finally:
        for st in stores.values():
            st.close()
        monkeypatch.undo()
    return {b: tmp / b / f"F{b}" for b in skews}


def test_foxglove_reads_wall_clock_log_time_and_sensor_publish_time(
        tmp_path: Path, mcap_core: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    t_before = time.time_ns()
    flights = _fly(tmp_path, monkeypatch)
    t_after = time.time_ns()
    segs = {b: sorted((f / "down").glob("*.mcap")) + sorted((f / "events").glob("*.mcap"))
            for b, f in flights.items()}
    seen = read_with_mcap_core(mcap_core, [p for ps in segs.values() for p in ps])
    images: dict[str, list[tuple[int, int]]] = {}
    for b, paths in segs.items():
        for p in paths:
            rec = seen[str(p)]
            # the file's time range: wall
            assert t_before <= int(rec["start"]) <= int(rec["end"]) <= t_after
            for topic, log_time, publish_time, _seq in rec["messages"]:
                # ns since the epoch, not since boot
                assert t_before <= int(log_time) <= t_after, (b, topic)
                assert int(log_time) > YEAR_2020_NS
                if topic == "/down/image":
                    images.setdefault(b, []).append((int(log_time), int(publish_time)))
    assert len(images["a"]) == len(images["b"]) == 20
    for (log_a, pub_a), (log_b, pub_b) in zip(images["a"], images["b"], strict=True):
        assert pub_b - pub_a == BOOT_SKEW_NS  # publish_time: each board's own sensor clock
        assert abs(log_b - log_a) < 50_000_000  # log_time: the same moment lines up across boards


def test_camctl_reader_keeps_sensor_time_and_release_alignment(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    flights = _fly(tmp_path, monkeypatch)
    rel = {}
    for b, f in flights.items():
        frames = [fr for seg in sorted((f / "down").glob("*.mcap")) for fr in iter_frames(seg)]
        assert [fr.seq for fr in frames] == list(range(20))
        assert all(fr.publish_ns == fr.timestamp_ns and fr.log_ns > YEAR_2020_NS for fr in frames)
        tb = TimeBase.from_events(load_events(f))
        assert tb.aligned
        rel[b] = [round(tb.rel_s(fr.timestamp_ns), 6) for fr in frames]
        events = [e for seg in sorted((f / "events").glob("*.mcap")) for e in iter_events(seg)]
        assert [e.get("event") for e in events if e.get("kind") == "phase"] == ["release"]
    # export's time base: the shared release edge
    assert rel["a"] == rel["b"] and rel["a"][5] == 0.0
