"""The loss ledger: unit books, then a runner's accounting of stills, gaps, backoff, pending stills.

Daemon-level books (status, ls, a ground download, under load and faults) are in
test_ledger_flight.py.
"""

from __future__ import annotations

import threading

import pytest
from scripted import ScriptedCamera, Sink, cfg, first_frame_in_descent
from waiting import wait_for

from camctl.board.capture import CameraRunner
from camctl.common.ledger import Ledger, balance, describe, read_ledger, store_reason


def test_intervals_sum_to_totals_and_store_drops_fold_in():
    t = [100]
    led = Ledger(clock_ns=lambda: t[0], wall_ns=lambda: 7)
    led.captured("down", 10)
    led.lost("down", "encoder_behind", 2)
    t[0] = 200
    first = led.flush()
    assert [(r["camera"], r["since_ns"], r["mono_ns"], r["captured"], r["dropped"])
            for r in first] == [("down", 100, 200, 10, {"encoder_behind": 2})]
    assert led.flush() == []  # nothing new: no record (counts per interval, not per tick)
    led.captured("down", 5)
    led.aged_out("down", 3)
    led.still_missed("up")
    second = led.flush()
    assert {r["camera"] for r in second} == {"down", "up"}
    store_drop = {"kind": "drop", "name": "quota", "camera": "down", "count": 4, "total": 4}
    books = read_ledger([*first, *second, store_drop, {"kind": "event", "camera": "down"}])
    assert books["down"] == {"captured": 15, "aged_out": 3, "stills_missed": 0,
                             "dropped": {"encoder_behind": 2, "store_full": 4}}
    assert led.totals()["down"]["captured"] == 15 and books["up"]["stills_missed"] == 1
    b = balance(books["down"], 6)
    assert b["balanced"] is True and "encoder_behind 2" in describe("down", b)
    off = balance(books["down"], 7)
    assert off["balanced"] is False and "NOT BALANCED" in describe("down", off)
    assert balance(None, 3)["balanced"] is None
    assert (store_reason("disk_full"), store_reason("queue_full")) == (
        "store_full", "store_queue_full")


class StillCamera(ScriptedCamera):
    """A still takes the next sensor number, as the sim's does; ``still_pause`` more numbers go by
    unseen while the still is taken (picamera2's mode switch)."""

    def __init__(self, *a, still_pause: int = 0, **kw):
        super().__init__(*a, **kw)
        self.still_pause = still_pause

    def capture_still(self, timeout_s=2.0):
        frame = self.capture(timeout_s)
        self.seq += self.still_pause
        return frame


@pytest.mark.parametrize("pause", [0, 2])
def test_a_still_is_no_sensor_gap_and_a_video_pause_is_a_still_gap(pool, pause):
    cam, sink = StillCamera(still_pause=pause), Sink()
    with first_frame_in_descent(cam, pool, sink) as r:
        r.request_still("release")
        # the still and two video frames (the runner may be waiting in capture already)
        for _ in range(3):
            cam.gate.release()
        sink.wait_for(lambda fs: len(fs) >= 4)
    assert [f.meta["still_size"] for f in sink.frames if f.still] == ["video"]
    assert r.stats.sensor_gaps == 0
    books = r.ledger.totals()["cam"]
    assert books["dropped"] == ({"still_gap": pause} if pause else {})
    assert balance(books, len(sink.frames))["balanced"], books


class FullStillCamera(StillCamera):
    """Stills by a mode switch (``still_size = "full"``): the video pauses for each."""

    @property
    def full_stills(self) -> bool:
        return True

    def capture_still(self, timeout_s=2.0):
        frame = super().capture_still(timeout_s)
        frame.mode_switch = True
        return frame


def test_a_mode_switch_still_books_its_pause_under_its_own_reason(pool):
    """The frames a full-resolution still costs are its chosen price, not a sensor fault nor a
    still that made the capture thread late: ``still_mode_switch``, and the books balance."""
    cam, sink = FullStillCamera(still_pause=5), Sink()
    with first_frame_in_descent(cam, pool, sink) as r:
        r.request_still("touchdown")
        for _ in range(3):
            cam.gate.release()
        sink.wait_for(lambda fs: len(fs) >= 4)
    assert r.stats.sensor_gaps == 0
    books = r.ledger.totals()["cam"]
    assert books["dropped"] == {"still_mode_switch": 5}
    assert books["captured"] == len(sink.frames) + 5
    assert balance(books, len(sink.frames))["balanced"], books
    still = next(f for f in sink.frames if f.still)
    assert still.meta["still_size"] == "full" and still.meta["event"] == "touchdown"


@pytest.mark.parametrize("end", ["LANDED", "SAFE"])
def test_pending_stills_are_dropped_and_counted_at_the_end(pool, end):
    cam, sink = ScriptedCamera(), Sink()
    r = CameraRunner(cam, cfg(), pool, sink)
    r.start()
    try:
        # a touchdown still asked for while the camera is down must not survive into the next flight
        cam.fail_open = 1000
        r.set_phase("ARMED")
        r.set_phase("TOUCHDOWN")
        r.request_still("touchdown")
        wait_for(lambda: r.stats.faults >= 1, "the open to fail")
        r.set_phase("ARMED" if end == "SAFE" else end)
        if end == "SAFE":
            r.set_phase("SAFE")
        assert r.wait_idle(10)
        wait_for(lambda: r.stats.stills_missed == 1, "the pending still to be counted")
        cam.fail_open = 0
        r.set_ledger(led := Ledger())
        r.set_phase("ARMED")
        wait_for(lambda: r.stats.frames_captured >= 3, "frames of the next flight")
        r.set_phase("SAFE")
        assert r.wait_idle(10)
    finally:
        r.stop()
    assert not any(f.still for f in sink.frames) and r.stats.stills == 0
    assert led.totals()["cam"]["stills_missed"] == 0


def test_a_phase_change_cuts_a_fault_backoff_short(pool):
    cam, sink = ScriptedCamera(paced=True), Sink()
    cam.fail_open = 1
    # a minute: only the edge can end it
    r = CameraRunner(cam, cfg(), pool, sink, backoff_s=(60.0, 60.0))
    r.start()
    try:
        r.set_phase("ARMED")
        wait_for(lambda: r.stats.faults == 1, "the first open to fail")
        r.set_phase("DESCENT")
        sink.wait_for(lambda fs: len(fs) >= 1, timeout=30)
    finally:
        r.stop()
    assert cam.opens == 1 and sink.frames[0].phase == "DESCENT"


def test_phase_state_is_one_tuple_read_whole():
    """``_phase_of`` must read phase, previous phase and edge time from one snapshot: a torn read
    (new phase, old edge time) would file a frame exposed before the edge under the next phase."""
    from camctl.common.frames import Frame

    cam = ScriptedCamera()
    r = CameraRunner(cam, cfg(), pool=None, sink=Sink())  # never started: _phase_of is pure
    r.set_phase("ARMED")
    r.set_phase("DESCENT")
    t_edge = r.phase_changed_ns
    before = Frame("cam", 1, t_edge - 1000)
    assert r._phase_of(before, "DESCENT") == "ARMED"
    assert r._phase_of(Frame("cam", 2, t_edge + 1000), "DESCENT") == "DESCENT"
    stop = threading.Event()

    def flip() -> None:
        while not stop.is_set():
            r.set_phase("SEPARATION")
            r.set_phase("DESCENT")

    t = threading.Thread(target=flip)
    t.start()
    try:
        for _ in range(2000):
            phase, prev, changed, _gen = r._state
            assert (phase, prev) in {("SEPARATION", "DESCENT"), ("DESCENT", "SEPARATION"),
                                     ("DESCENT", "ARMED")}
            assert changed >= t_edge
    finally:
        stop.set()
        t.join()


def test_timeline_marks_name_every_reason():
    from camctl.common.ledger import ledger_marks

    events = [{"kind": "ledger", "camera": "down", "mono_ns": 20, "captured": 9, "aged_out": 4,
               "dropped": {"sensor_gap": 2, "ring_overflow": 1, "still_gap": 0}},
              {"kind": "drop", "name": "disk_full", "camera": "up", "count": 3, "mono_ns": 10},
              {"kind": "fault", "camera": "down", "mono_ns": 15},
              {"kind": "loss", "name": "recovery", "camera": "down", "seqs": [7, 8, 9],
               "mono_ns": 30},
              # no seqs
              {"kind": "loss", "name": "recovery", "camera": "down", "seq_after": 3, "mono_ns": 31}]
    assert ledger_marks(events) == [(10, "up", "store_full", 3), (20, "down", "ring_overflow", 1),
                                    (20, "down", "sensor_gap", 2), (30, "down", "recovery_cut", 3)]
    assert read_ledger(events)["down"]["dropped"] == {"sensor_gap": 2, "ring_overflow": 1,
                                                      "recovery_cut": 3}


def test_the_last_flush_closes_the_books() -> None:
    from camctl.common.ledger import Ledger

    led = Ledger(clock_ns=lambda: 5, wall_ns=lambda: 7)
    led.captured("down", 3)
    assert [r["captured"] for r in led.flush(close=True)] == [3] and led.closed
    led.captured("down")  # a stuck thread's frame coming back after the landing
    led.lost("down", "abandoned")
    assert led.totals()["down"]["captured"] == 3 and led.flush() == [] and led.late == 2
