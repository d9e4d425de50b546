"""A board's frame sizes by phase (issue 28, item 3): ``frame_bytes_by_phase`` in STATUS, each
phase's mean JPEG size as this flight recorded it, or for a flight phase not recorded yet one
frame measured at its settings when the board armed (``frame_bytes_source`` says which).

Pure tests of the accounting (:class:`~camctl.board.ring.RunnerStats`), the measurement's encodes
(:meth:`~camctl.board.pipeline.FramePipeline.measure`, on a real encoder pool: its sizes, and a
full pool where it gives way to every frame), and a runner on the sim camera with a lores ARMED
stream: measured at ARM, every ARMED frame still booked, and again at the next arm.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest
from scripted import Sink, cfg
from waiting import wait_for

from camctl.board.cameras.sim import SimCamera
from camctl.board.capture import CameraRunner
from camctl.board.encode import EncoderPool, encode_jpeg
from camctl.board.pipeline import FramePipeline, lores
from camctl.board.ring import PreTriggerRing, RunnerStats
from camctl.board.stills import StillBook
from camctl.common.frames import Frame, FrameValue


def test_recorded_sizes_are_this_flights_means_and_measured_ones_fill_the_rest() -> None:
    stats = RunnerStats()
    stats.measured_bytes.update({"DESCENT": 50_000, "TOUCHDOWN": 60_000})
    for size in (1_000, 3_000):
        stats.record_frame("ARMED", size)
    assert stats.frame_sizes() == (
        {"ARMED": 2_000, "DESCENT": 50_000, "TOUCHDOWN": 60_000},
        {"ARMED": "recorded", "DESCENT": "measured_at_arm", "TOUCHDOWN": "measured_at_arm"})
    for size in (40_000, 41_000, 45_000):  # the descent as recorded wins over the measurement
        stats.record_frame("DESCENT", size)
    snap = stats.snapshot(PreTriggerRing(1.0, 1000))
    assert snap["frame_bytes_by_phase"] == {"ARMED": 2_000, "DESCENT": 42_000,
                                            "TOUCHDOWN": 60_000}
    assert snap["frame_bytes_source"]["DESCENT"] == "recorded"
    # armed anew: the flight before's sizes are gone
    stats.new_flight()
    assert stats.frame_sizes() == ({}, {})


def _pipeline(pool: EncoderPool, **kw: object) -> tuple[FramePipeline, RunnerStats, list]:
    c = cfg(**kw)
    stats, lost = RunnerStats(), []
    pipe = FramePipeline(SimCamera("cam", size=c.size, paced=False), c, pool, Sink(),
                         ring=PreTriggerRing(c.pretrigger_s, 1 << 20), stats=stats,
                         stills=StillBook(), lose=lambda why, n: lost.append((why, n)),
                         max_inflight=8)
    return pipe, stats, lost


def test_measure_encodes_each_phases_stream_and_quality_once(pool: EncoderPool) -> None:
    pipe, stats, _ = _pipeline(pool, size=(320, 240), lores_size=(160, 120),
                               lores_phases=("ARMED", "TOUCHDOWN"),
                               quality=(("SEPARATION", 30), ("TOUCHDOWN", 95)))
    image = np.random.default_rng(1).integers(0, 256, (240, 320, 3), np.uint8)
    # DESCENT (main, jpeg_quality 85), SEPARATION (main, 30), TOUCHDOWN (lores, 95)
    assert pipe.measure(image, ["DESCENT", "SEPARATION", "TOUCHDOWN"]) == 3
    wait_for(lambda: len(stats.measured_bytes) == 3, "three phases measured")
    assert stats.measured_bytes == {"DESCENT": len(encode_jpeg(image, 85)),
                                    "SEPARATION": len(encode_jpeg(image, 30)),
                                    "TOUCHDOWN": len(encode_jpeg(lores(image, (160, 120)), 95))}
    # the same setting twice (X: no quality of its own, the main stream): one encode, both phases
    sizes = dict(stats.measured_bytes)
    assert pipe.measure(image, ["DESCENT", "X"]) == 1
    wait_for(lambda: "X" in stats.measured_bytes, "X measured")
    assert stats.measured_bytes["X"] == sizes["DESCENT"]


def test_a_measurement_gives_way_to_every_frame_on_a_full_pool() -> None:
    gate = threading.Event()
    with EncoderPool(1, capacity=1) as pool:
        busy = pool.run(gate.wait, 30, value=int(FrameValue.STILL))  # the one thread, busy
        pipe, stats, lost = _pipeline(pool)
        wait_for(lambda: busy.running() and pool.waiting == 0, "the encoder busy")
        image = np.zeros((48, 64, 3), np.uint8)
        assert pipe.measure(image, ["DESCENT"]) == 1  # waiting: the pool is full
        # an idle ARMED frame (the lowest value a frame has) still gets in: it pushes out the
        # measurement, never the other way round
        pipe.submit(Frame("cam", 0, 1, image=image.copy(), width=64, height=48), "ARMED")
        gate.set()
        pipe.drain(block=True)
    assert lost == [] and stats.encoded == 1 and len(pipe.ring) == 1
    assert stats.measured_bytes == {} and pool.evicted == 1


def _lores_runner(pool: EncoderPool, sink: Sink) -> CameraRunner:
    c = cfg(size=(320, 240), lores_size=(32, 24), lores_phases=("ARMED",), pretrigger_s=10.0,
            fps=(("ARMED", 50.0), ("DESCENT", 50.0), ("TOUCHDOWN", 50.0)))
    cam = SimCamera("cam", size=c.size, fps=50.0, paced=True, lores_size=c.lores_size)
    return CameraRunner(cam, c, pool, sink)


def test_a_runner_armed_at_lores_measures_its_flight_frames_and_books_every_frame(
        pool: EncoderPool) -> None:
    sink = Sink()
    r = _lores_runner(pool, sink)
    r.start()
    try:
        r.set_phase("ARMED")
        wait_for(lambda: r.stats.encoded >= 20 and len(r.stats.measured_bytes) == 2,
                 "20 ARMED frames and the flight phases measured")
        sizes, source = r.stats.frame_sizes()
        assert source == {"ARMED": "recorded", "DESCENT": "measured_at_arm",
                          "TOUCHDOWN": "measured_at_arm"}
        # a 320x240 flight frame measured, against 32x24 armed ones
        assert sizes["DESCENT"] > 4 * sizes["ARMED"], sizes
        first = r.stats.measured_bytes["DESCENT"]
        r.set_phase("DESCENT")
        sink.wait_for(lambda fs: sum(f.phase == "DESCENT" for f in fs) >= 10)
        r.set_phase("LANDED")
        assert r.wait_idle(20)
        books = r.ledger.totals()["cam"]
        sizes, source = r.stats.frame_sizes()
        assert source["DESCENT"] == "recorded" and source["TOUCHDOWN"] == "measured_at_arm"
        recorded = [f.size for f in sink.frames if f.phase == "DESCENT"]
        assert sizes["DESCENT"] == round(sum(recorded) / len(recorded))
        assert abs(first / sizes["DESCENT"] - 1) < 0.25, (first, sizes["DESCENT"])
        # the frame measured is an ARMED frame like the others: lores-sized, stored or aged out
        armed = [f for f in sink.frames if f.phase == "ARMED"]
        assert armed and {(f.width, f.height) for f in armed} == {(32, 24)}
        assert books["captured"] == (len(sink.frames) + books["aged_out"]
                                     + sum(books["dropped"].values()))
        # armed anew: the sizes start again, measured again
        r.set_phase("SAFE")
        assert r.wait_idle(20)
        r.set_phase("ARMED")
        wait_for(lambda: r.stats.encoded >= 40 and len(r.stats.measured_bytes) == 2,
                 "measured at the second arm")
        assert r.stats.frame_sizes()[1]["DESCENT"] == "measured_at_arm"
    finally:
        r.stop()
    assert r.stats.measured_bytes["DESCENT"] == pytest.approx(first, rel=0.25)
