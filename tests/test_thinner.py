"""The picamera2 backend's Thinner on synthetic sensor timestamps (no camera, no sleeping): which
frames are delivered and their ``seq``, so that only frames the sensor (or a late consumer) really
lost leave a gap, never a rate change nor a sensor a little off its nominal rate."""

from __future__ import annotations

import inspect

import pytest

from camctl.board.cameras.picamera2_thinner import Thinner

NOMINAL_NS = 1e9 / 30  # a 30 fps sensor


def _feed(t: Thinner, stamps, duration_us: int | None = None) -> list[int | None]:
    if duration_us is None:
        return [t.keep(int(s)) for s in stamps]
    return [t.keep(int(s), frame_duration_us=duration_us) for s in stamps]


def test_a_release_from_1_fps_books_no_gap_and_delivers_the_next_sensor_frame():
    t = Thinner(1.0, 30.0)  # ARMED 1 fps on a 30 fps sensor
    armed = _feed(t, [i * NOMINAL_NS for i in range(19)])
    assert armed[0] == 0 and armed[1:] == [None] * 18
    t.set_fps(30.0, 30.0)  # the release, 18 sensor frames after the last delivered one
    # the next sensor frame, numbered right after the last delivered one: no "lost" frames
    assert _feed(t, [i * NOMINAL_NS for i in range(19, 22)]) == [1, 2, 3]
    assert t.thinned == 18


@pytest.mark.parametrize("duration_us", [None, 33333])
def test_rate_changes_never_leave_a_gap(duration_us):
    t = Thinner(2.0, 60.0)
    period = 1e9 / 60
    seqs: list[int] = []
    frame = 0
    for fps, frames in ((2.0, 100), (60.0, 37), (30.0, 41), (7.0, 93), (60.0, 5), (1.0, 200)):
        t.set_fps(fps, 60.0)
        kept = [s for s in _feed(t, [(frame + i) * period for i in range(frames)],
                                 None if duration_us is None else round(1e6 / 60))
                if s is not None]
        frame += frames
        assert len(kept) == pytest.approx(frames * fps / 60, abs=1.01), fps
        seqs += kept
    assert seqs == list(range(len(seqs)))  # consecutive across every change
    assert t.next_seq == len(seqs) and t.thinned == frame - len(seqs)


@pytest.mark.parametrize("off_ns", [10_000, -10_000])  # 10 µs slow, 10 µs fast
@pytest.mark.parametrize("with_duration", [False, True])
def test_a_sensor_off_its_nominal_period_delivers_every_frame_at_the_sensor_rate(off_ns,
                                                                                 with_duration):
    period = NOMINAL_NS + off_ns
    t = Thinner(30.0, 30.0)
    n = 10 * 60 * 30  # ten minutes
    stamps = [5_000_000_000 + i * period for i in range(n)]
    seqs = _feed(t, stamps, round(period / 1000) if with_duration else None)
    assert seqs == list(range(n))  # every frame, no gap, nothing thinned
    assert t.thinned == 0


@pytest.mark.parametrize("off_ns", [10_000, -10_000])
def test_a_sensor_off_its_nominal_period_is_thinned_by_a_fixed_fraction(off_ns):
    period = NOMINAL_NS + off_ns
    t = Thinner(12.0, 30.0)  # two of every five sensor frames
    n = 10 * 60 * 30
    seqs = _feed(t, [i * period for i in range(n)])
    kept = [s for s in seqs if s is not None]
    assert kept == list(range(len(kept))) and len(kept) == n * 2 // 5
    assert [s is not None for s in seqs[:10]] == [True, False, True, False, False] * 2


@pytest.mark.parametrize("with_duration", [False, True])
def test_frames_a_late_consumer_lost_leave_a_gap_for_the_slots_they_would_have_filled(
        with_duration):
    duration = round(NOMINAL_NS / 1000) if with_duration else None
    t = Thinner(30.0, 30.0)
    # frames 3 and 4 never arrived: two delivered slots empty
    assert _feed(t, [i * NOMINAL_NS for i in (0, 1, 2, 5, 6)], duration) == [0, 1, 2, 5, 6]
    t = Thinner(10.0, 30.0)  # every third frame is due: 0, 3, 6, 9 ...
    # 3..8 lost: the slots of 3 and 6
    assert _feed(t, [i * NOMINAL_NS for i in (0, 1, 2, 9, 10, 11, 12)], duration) == \
        [0, None, None, 3, None, None, 4]
    # 13 lost, but it was not due (12 was delivered): no gap
    assert _feed(t, [i * NOMINAL_NS for i in (14, 15)], duration) == [None, 5]


def test_lost_frames_are_counted_in_the_real_sensor_period():
    """A sensor slower than asked (the sensor mode's limit: 20 fps for a nominal 30) at the phase
    rate: every frame is delivered and none is booked lost; a real loss still is."""
    real = 1e9 / 20
    t = Thinner(30.0, 30.0)
    stamps = [i * real for i in range(40)] + [i * real for i in range(41, 60)]
    assert _feed(t, stamps, 50_000) == list(range(40)) + list(range(41, 60))
    # measured from the timestamps alone (no FrameDuration: the hardware path)
    t = Thinner(30.0, 30.0)
    seqs = _feed(t, stamps)
    assert seqs[-19:] == list(range(41, 60)) and t.next_seq == 60


def test_a_reopen_starts_a_new_stream_without_a_gap():
    t = Thinner(30.0, 30.0)
    assert _feed(t, [0, NOMINAL_NS]) == [0, 1]
    t.restart()
    assert _feed(t, [60e9, 60e9 + NOMINAL_NS]) == [2, 3]  # a minute later: no gap


def test_peek_takes_nothing():
    t = Thinner(30.0, 30.0)
    assert t.keep(0, peek=True) == 0 and t.keep(0) == 0
    assert t.keep(int(3 * NOMINAL_NS), peek=True) == 3 and t.next_seq == 1
    assert t.keep(int(NOMINAL_NS)) == 1


def test_keep_takes_the_frame_duration_as_an_optional_argument():
    params = inspect.signature(Thinner.keep).parameters
    assert list(params)[1] == "timestamp_ns" and params["frame_duration_us"].default is None
    assert params["peek"].kind is inspect.Parameter.KEYWORD_ONLY
