"""Issue 28 item 6: a still is labelled with its exposure time from the edge of the event it is
filed against (the event it was taken for, else the nearest edge) and flagged when exposed before
that edge, not filed by the phase it was stored under nor timed from release."""

from __future__ import annotations

from pathlib import Path

from camctl.board.config import StoreConfig
from camctl.board.encode import encode_jpeg
from camctl.common.frames import EncodedFrame, FrameValue
from camctl.ground.export.flightset import load_flight
from camctl.ground.export.pipeline import ExportResult, scan_camera
from camctl.ground.export.sheet import Pick, still_event, still_tile
from camctl.ground.flights import TimeBase, find_flights
from camctl.store import FlightStore

NS = 1_000_000_000
REL = 1_000 * NS  # release edge, board mono ns
TD = REL + 3 * NS  # touchdown edge


def _phase(prev: str, phase: str, event: str, mono: int) -> dict:
    return {"kind": "phase", "name": phase, "phase_from": prev, "phase_to": phase, "event": event,
            "source": "gpio", "mono_ns": mono, "wall_ns": 1_767_225_600 * NS + mono,
            "skipped": []}


EVENTS = [_phase("SAFE", "ARMED", "arm", REL - 2 * NS), _phase("ARMED", "DESCENT", "release", REL),
          _phase("DESCENT", "TOUCHDOWN", "touchdown", TD),
          _phase("TOUCHDOWN", "LANDED", "post_touchdown", TD + NS)]


def test_still_before_its_edge_is_filed_against_it_and_flagged() -> None:
    tb = TimeBase.from_events(EVENTS)
    early = Pick(TD - 125_000_000, "TOUCHDOWN", 412, b"", (320, 240), event="touchdown")
    tile = still_tile(early, tb, tb.t0_ns)
    assert tile.caption.splitlines()[0] == "touchdown -0.125 s BEFORE EDGE"
    assert tile.caption.splitlines()[1] == "TOUCHDOWN #412 320x240" and tile.warn
    # no event in its metadata: the nearest edge (touchdown, not the release 2.875 s before)
    assert still_event(early.ts, "", tb) == ("touchdown", TD)
    late = Pick(REL + 40_000_000, "DESCENT", 20, b"", None, event="release")
    tile = still_tile(late, tb, tb.t0_ns)
    assert tile.caption.splitlines()[0] == "release +0.040 s" and not tile.warn
    # taken for the release, though nearer the touchdown edge: filed against the release
    assert still_event(TD - NS, "release", tb) == ("release", REL)
    # taken for an event this board never logged: the nearest edge it did log
    assert still_event(TD + 10, "separation", tb) == ("touchdown", TD)
    # an equal distance to two edges: the later (the still is after it)
    assert still_event((REL + TD) // 2, "", tb) == ("touchdown", TD)


def test_stored_still_keeps_the_event_it_was_taken_for(tmp_path: Path) -> None:
    """A still through a real FlightStore and the export's read pass: its metadata's event reaches
    the label."""
    store = FlightStore(tmp_path / "rig-a", "rig-a", "20260101T000000Z",
                        StoreConfig(commit_interval_ms=50), cameras=["down"])
    for rec in EVENTS:
        store.log_event(rec)
    import numpy as np

    jpeg = encode_jpeg(np.zeros((240, 320, 3), np.uint8), 80)
    for i in range(40):  # 10 fps from release - 1 s
        ts = REL - NS + i * 100_000_000
        phase = "ARMED" if ts < REL else "DESCENT" if ts < TD else "TOUCHDOWN"
        assert store.put(EncodedFrame("down", i, ts, jpeg, 320, 240, phase,
                                      int(FrameValue.DESCENT)))
    # a still for touchdown exposed 125 ms before its edge, stored under TOUCHDOWN
    assert store.put(EncodedFrame("down", 1000, TD - 125_000_000, jpeg, 320, 240, "TOUCHDOWN",
                                  int(FrameValue.STILL), still=True,
                                  meta={"event": "touchdown", "still_size": "video"}))
    store.close()
    (ref,) = find_flights(tmp_path)
    fl = load_flight(ref)
    cam = scan_camera(fl, "down", mp4=None, frames_dir=None, targets=[],
                      res=ExportResult(tmp_path / "out"), advance=lambda: None)
    (still,) = cam.stills
    assert still.event == "touchdown"
    tile = still_tile(still, fl.tb, fl.t0_ns)
    assert tile.caption.startswith("touchdown -0.125 s BEFORE EDGE\nTOUCHDOWN #1000")
    assert tile.warn
