"""Issue 28 item 5: the timeline's rate plot shows no speed-up before an edge, and a drop marker
sits at the gap its frames left, not at its ledger record (written up to a second later)."""

from __future__ import annotations

import numpy as np

from camctl.ground.export.timeline import BIN_S, drop_time, rate_bins


def _armed_then_descent(last_armed: float, first_descent: float) -> np.ndarray:
    """4 fps armed up to ``last_armed``, 15 fps from ``first_descent`` (the release edge is 0)."""
    armed = last_armed - 0.25 * np.arange(12)[::-1]
    return np.concatenate([armed, first_descent + np.arange(30) / 15])


def test_no_speed_up_in_the_bin_before_the_release() -> None:
    # the camera restarts at the edge: its last armed frame 50 ms before, the first descent frame
    # 20 ms after; the 70 ms between them is neither rate
    frames = _armed_then_descent(-0.05, 0.02)
    edges, rate = rate_bins(frames, -2.0, 1.5, edges_s=[0.0])
    before = rate[(edges[1:] <= 0.0) & (edges[:-1] >= -2.0 + BIN_S)]
    after = rate[(edges[:-1] >= 0.0) & (edges[1:] <= 1.5)]
    assert before.size and np.allclose(before, 4.0), before
    assert after.size and np.allclose(after, 15.0), after


def test_edge_late_in_the_interval_keeps_the_old_rate_up_to_it() -> None:
    # the last armed frame long before the edge (a slow start after it): still 4, then 15
    frames = _armed_then_descent(-0.2, 0.2)
    edges, rate = rate_bins(frames, -2.0, 1.5, edges_s=[0.0])
    i = int(np.flatnonzero(np.isclose(edges, 0.0))[0])
    assert np.isclose(rate[i - 1], 4.0) and np.isclose(rate[i], 15.0), rate[i - 2:i + 2]


def test_steady_rate_unchanged_by_an_edge_between_frames() -> None:
    frames = np.arange(-2.0, 2.0, 0.1) + 0.03
    _, rate = rate_bins(frames, -1.5, 1.5, edges_s=[0.0, 0.51])
    assert np.allclose(rate, 10.0), rate


def test_drop_marker_at_the_gap_not_at_the_record() -> None:
    frames = np.concatenate([np.arange(0.0, 2.0, 0.1), np.arange(2.5, 4.0, 0.1)])  # gap 1.9..2.5
    # the ledger interval 1.5 .. 2.9 s, its record written at 2.9 s
    assert abs(drop_time(frames, 1.5, 2.9) - 2.2) < 1e-9
    # no frame near it: the record's own time
    assert drop_time(frames, 10.0, 11.0) == 11.0


def test_lane_of_a_stored_flight_no_speed_up_and_drop_at_its_gap(tmp_path) -> None:
    """Through a real FlightStore and the export's read pass: the plotted rate is 4 up to the
    release and 15 after it, and the ledger's drop mark sits in the gap, not at its record."""
    from camctl.board.config import StoreConfig
    from camctl.board.encode import encode_jpeg
    from camctl.common.frames import EncodedFrame
    from camctl.ground.export.flightset import load_flight
    from camctl.ground.export.pipeline import ExportResult, scan_camera
    from camctl.ground.export.timeline import lane_of, lane_rates
    from camctl.ground.flights import find_flights
    from camctl.store import FlightStore

    ns, rel = 1_000_000_000, 1_000 * 1_000_000_000
    store = FlightStore(tmp_path / "rig-a", "rig-a", "20260101T000000Z",
                        StoreConfig(commit_interval_ms=50), cameras=["down"])
    for prev, phase, event, t in (("SAFE", "ARMED", "arm", rel - 3 * ns),
                                  ("ARMED", "DESCENT", "release", rel)):
        store.log_event({"kind": "phase", "name": phase, "phase_from": prev, "phase_to": phase,
                         "event": event, "source": "gpio", "mono_ns": t,
                         "wall_ns": 1_767_225_600 * ns + t, "skipped": []})
    jpeg = encode_jpeg(np.zeros((48, 64, 3), np.uint8), 80)
    times = [rel - 50_000_000 - 250_000_000 * k for k in range(11, -1, -1)]
    times += [rel + 20_000_000 + round(k * ns / 15) for k in range(45)
              if not 1.0 < k / 15 < 1.5]  # 7 frames missing from 1.0 to 1.5 s
    for seq, ts in enumerate(times):
        assert store.put(EncodedFrame("down", seq, ts, jpeg, 64, 48,
                                      "ARMED" if ts < rel else "DESCENT"))
    store.log_event({"kind": "ledger", "name": "interval", "camera": "down",
                     "since_ns": rel + int(0.8 * ns), "mono_ns": rel + int(1.9 * ns),
                     "wall_ns": 1_767_225_600 * ns + rel + int(1.9 * ns),
                     "captured": 20, "aged_out": 0, "dropped": {"encoder_behind": 7},
                     "stills_missed": 0})
    store.close()
    (ref,) = find_flights(tmp_path)
    cam = scan_camera(load_flight(ref), "down", mp4=None, frames_dir=None, targets=[],
                      res=ExportResult(tmp_path / "out"), advance=lambda: None)
    lane = lane_of(cam)
    edges, rate = lane_rates(lane, -2.5, 0.9)
    before = rate[(edges[1:] <= 0.0) & (edges[:-1] >= -2.5)]
    assert np.allclose(before, 4.0, atol=1e-6), before
    assert np.allclose(rate[(edges[:-1] >= 0.0) & (edges[1:] <= 0.9)], 15.0, atol=0.01)
    ((at, reason, n),) = lane.drops
    assert (reason, n) == ("encoder_behind", 7) and 1.0 < at < 1.55, at
