"""The sim camera backend: scene determinism and weight, pacing on a fake clock, each fault kind."""

from __future__ import annotations

import numpy as np
import pytest
import simplejpeg

from camctl.board.cameras import make_camera
from camctl.board.cameras.sim import DESCENT_S, SimCamera, render_scene
from camctl.board.config import CameraConfig
from camctl.exc import CameraDisconnected, CameraError, CameraTimeout

NS = 1_000_000_000


class FakeTime:
    """A clock that only moves when slept on (or advanced by the test)."""

    def __init__(self) -> None:
        self.now_ns = 1_000 * NS
        self.slept: list[float] = []

    def clock(self) -> int:
        return self.now_ns

    def sleep(self, seconds: float) -> None:
        assert seconds >= 0
        self.slept.append(seconds)
        self.now_ns += round(seconds * NS)

    def advance(self, seconds: float) -> None:
        self.now_ns += round(seconds * NS)


def sim(t: FakeTime, **kw) -> SimCamera:
    kw.setdefault("size", (160, 120))
    kw.setdefault("fps", 10.0)
    return SimCamera("cam", clock=t.clock, sleep=t.sleep, **kw)


# --- scene ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("role", ["down", "up", "side"])
def test_same_seed_same_seq_same_pixels(role):
    a = SimCamera("a", size=(320, 240), fps=30, role=role, seed=7, paced=False)
    b = SimCamera("b", size=(320, 240), fps=30, role=role, seed=7, paced=False)
    with a, b:
        fa = [a.capture() for _ in range(4)]
        fb = [b.capture() for _ in range(4)]
    for x, y in zip(fa, fb, strict=True):
        assert x.seq == y.seq
        assert np.array_equal(x.image, y.image)
    assert not np.array_equal(fa[0].image, fa[3].image)  # frames change over time


def test_seeds_differ():
    a = render_scene(1, "down", (320, 240), 5, 3.0)
    b = render_scene(2, "down", (320, 240), 5, 3.0)
    assert a.shape == b.shape == (240, 320, 3)
    assert np.mean(a != b) > 0.5


def test_seq_number_drawn():
    a = render_scene(1, "down", (320, 240), 11, 1.0)
    b = render_scene(1, "down", (320, 240), 18, 1.0)
    box = (slice(0, 240 // 9 + 8), slice(0, 60))
    assert not np.array_equal(a[box], b[box])  # '1' vs '8' in the corner
    assert (a[box] == 250).any()


@pytest.mark.parametrize("role", ["down", "up", "side"])
def test_1080p_jpeg_weighs_like_a_real_scene(role):
    for seed in (0, 3):
        for t in (0.0, DESCENT_S / 2, DESCENT_S + 5):
            img = render_scene(seed, role, (1920, 1080), 1234, t)
            assert img.shape == (1080, 1920, 3) and img.dtype == np.uint8 and img.flags.c_contiguous
            size = len(simplejpeg.encode_jpeg(img, quality=85, colorspace="RGB"))
            assert 150_000 <= size <= 400_000, (role, seed, t, size)


def test_smaller_frames_weigh_less():
    big = len(simplejpeg.encode_jpeg(render_scene(0, "down", (1920, 1080), 1, 1.0), quality=85))
    small = len(simplejpeg.encode_jpeg(render_scene(0, "down", (640, 360), 1, 1.0), quality=85))
    assert small < big / 3


# --- pacing ---------------------------------------------------------------------------------------
def test_paced_absolute_schedule_and_seq_gaps_when_late():
    t = FakeTime()
    cam = sim(t, fps=10.0, buffers=1)
    cam.open()
    f0 = cam.capture()
    f1 = cam.capture()
    assert (f0.seq, f1.seq) == (0, 1)
    assert f1.timestamp_ns - f0.timestamp_ns == NS // 10
    assert t.slept[-1] == pytest.approx(0.1)
    t.advance(0.15)  # late, but by less than a period: no skip, no sleep
    n_sleeps = len(t.slept)
    f2 = cam.capture()
    assert f2.seq == 2 and f2.timestamp_ns == f1.timestamp_ns + NS // 10
    assert len(t.slept) == n_sleeps
    t.advance(0.35)  # late by more than a period: the sensor kept running
    f3 = cam.capture()
    assert f3.seq > 3  # a gap the capture thread can see
    assert f3.timestamp_ns == f0.timestamp_ns + f3.seq * (NS // 10)
    assert f3.timestamp_ns <= t.now_ns
    f4 = cam.capture()
    assert f4.seq == f3.seq + 1
    cam.close()


def test_set_fps_takes_effect_next_frame():
    t = FakeTime()
    cam = sim(t, fps=10.0)
    with cam:
        a = cam.capture()
        cam.set_fps(50.0)
        b = cam.capture()
        assert b.timestamp_ns - a.timestamp_ns == NS // 50
        assert b.frame_duration_us == 20_000
    with pytest.raises(ValueError, match="-1"):
        cam.set_fps(-1)


def test_unpaced_timestamps_still_advance_by_period():
    t = FakeTime()
    cam = sim(t, fps=25.0, paced=False)
    with cam:
        frames = [cam.capture() for _ in range(5)]
    assert t.slept == []
    assert [f.seq for f in frames] == [0, 1, 2, 3, 4]
    assert np.diff([f.timestamp_ns for f in frames]).tolist() == [NS // 25] * 4


def test_timeout_below_the_period_is_honoured():
    t = FakeTime()
    cam = sim(t, fps=1.0)
    with cam:
        cam.capture()
        with pytest.raises(CameraTimeout):
            cam.capture(timeout_s=0.25)
    assert t.slept[-1] == pytest.approx(0.25)


# --- faults ---------------------------------------------------------------------------------------
def test_stall_raises_timeout_after_timeout_s_then_recovers():
    t = FakeTime()
    cam = sim(t, fps=10.0)
    with cam:
        cam.capture()
        cam.inject_stall(1.0)
        start = t.now_ns
        with pytest.raises(CameraTimeout) as err:
            cam.capture(timeout_s=0.3)
        # blocked exactly the timeout, not the stall
        assert (t.now_ns - start) / NS == pytest.approx(0.3)
        assert "cam" in str(err.value)
        with pytest.raises(CameraTimeout):
            cam.capture(timeout_s=0.3)
        f = cam.capture(timeout_s=1.0)  # 0.4 s of stall left: the frame comes late, after a gap
        assert f.seq > 1
        assert (t.now_ns - start) / NS >= 1.0


def test_scheduled_faults_from_first_open():
    t = FakeTime()
    cam = sim(t, faults=[("exception", 0.5, 0.0), ("stall", 1.0, 0.5), ("disconnect", 2.0, 1.0)])
    cam.open()
    cam.capture()
    t.advance(0.6)
    with pytest.raises(CameraError) as err:
        cam.capture()
    assert type(err.value) is CameraError
    cam.capture()  # an exception fires once
    t.now_ns = cam._first_open_ns + int(1.1 * NS)
    with pytest.raises(CameraTimeout):
        cam.capture(timeout_s=0.1)
    t.now_ns = cam._first_open_ns + int(2.0 * NS)
    with pytest.raises(CameraDisconnected):
        cam.capture()
    cam.close()
    cam.close()
    with pytest.raises(CameraDisconnected, match="disconnected"):
        cam.open()
    assert cam.closed
    t.advance(0.5)
    with pytest.raises(CameraDisconnected):
        cam.open()
    t.advance(0.6)
    cam.open()  # back after duration_s
    assert cam.capture().image.shape == (120, 160, 3)
    cam.close()


def test_injected_disconnect_refuses_open_for_its_duration():
    t = FakeTime()
    cam = sim(t)
    cam.open()
    cam.inject_disconnect(2.0)
    with pytest.raises(CameraDisconnected):
        cam.capture()
    cam.close()
    attempts = 0
    backoff = 0.25
    while True:  # what the capture thread's restart loop does
        try:
            cam.open()
            break
        except CameraDisconnected:
            attempts += 1
            t.sleep(backoff)
            backoff *= 2
    assert attempts >= 3
    assert [cam.capture().seq for _ in range(2)] == [0, 1]  # nothing was delivered while unplugged
    cam.close()


def test_injected_exception_and_unknown_fault_kind():
    t = FakeTime()
    cam = sim(t)
    with cam:
        cam.inject_exception()
        with pytest.raises(CameraError, match="injected"):
            cam.capture()
        cam.capture()
    with pytest.raises(CameraError, match="'melt'"):
        sim(t, faults=[("melt", 1.0, 1.0)])


def test_faults_do_not_leak_between_instances():
    t = FakeTime()
    a, b = sim(t, seed=1), sim(t, seed=1)
    with a, b:
        a.inject_disconnect(5.0)
        a.inject_stall(5.0)
        with pytest.raises(CameraDisconnected):
            a.capture()
        b.capture()
        b.capture()
    b.open()
    b.close()


def test_capture_on_closed_camera_close_twice_and_repr():
    t = FakeTime()
    cam = sim(t, role="up", seed=9)
    assert "closed" in repr(cam) and "'cam'" in repr(cam) and "160x120" in repr(cam)
    with pytest.raises(CameraError, match="closed"):
        cam.capture()
    cam.open()
    assert "open" in repr(cam) and "10 fps" in repr(cam)
    still = cam.capture_still()
    assert still.still and still.image.shape == (120, 160, 3)
    cam.close()
    cam.close()
    assert cam.closed


def test_from_config_and_make_camera():
    cfg = CameraConfig(name="up1", role="up", backend="sim", size=(64, 48), fps=(("ARMED", 4.0),
                       ("DESCENT", 30.0)), seed=3, faults=(("stall", 1.0, 2.0),))
    cam = make_camera(cfg, seed=1)
    assert isinstance(cam, SimCamera)
    assert cam.fps == 4.0 and cam.size == (64, 48) and cam.role == "up"
    other = make_camera(cfg, seed=2)
    assert cam.seed != other.seed  # boards differ
    assert make_camera(cfg, seed=1).seed == cam.seed


def test_prerender_lends_its_buffers_while_two_stay_with_the_sensor_and_copies_beyond():
    cam = SimCamera("bench", size=(64, 48), prerender=3, paced=False, buffers=4)
    cam.prepare()
    with cam:
        frames = [cam.capture() for _ in range(7)]
        assert [f.seq for f in frames] == list(range(7))
        assert np.array_equal(frames[0].image, frames[3].image)
        assert not np.array_equal(frames[0].image, frames[1].image)
        # two lent (views of the replayed buffers, read-only), the rest copied out like make_array
        assert [f.release is not None for f in frames] == [True, True] + [False] * 5
        assert cam.lent == 2 and cam.frames_lent == 2 and cam.frames_copied == 5
        with pytest.raises(ValueError):
            frames[0].image[:] = 0  # the sensor's buffer: never written by a reader
        frames[3].image[:] = 0  # a copy: the replayed frame is untouched
        assert frames[6].image.any()
        frames[0].release()
        assert cam.lent == 1
        with pytest.raises(RuntimeError, match="released twice"):
            frames[0].release()
        assert cam.lent == 1
        again = cam.capture()  # a buffer came back: the next frame is lent again
        assert again.release is not None and cam.lent == 2
        frames[1].release()
        again.release()
    assert cam.lent == 0 and cam.closed_while_lent == 0


def test_lent_buffers_leave_fewer_for_a_late_consumer():
    t = FakeTime()
    cam = sim(t, size=(64, 48), fps=10.0, prerender=2, buffers=4)
    cam.prepare()
    cam.open()
    # both lendable buffers kept (an encoder still reading them)
    held = [cam.capture() for _ in range(2)]
    assert all(f.release is not None for f in held)
    # 2.5 periods late: with 2 of 4 buffers lent the 2 free ones overflowed, a frame is lost
    t.advance(0.35)
    late = cam.capture()
    assert late.seq == 3 and late.release is None  # nothing to spare: copied
    for h in held:
        h.release()
    t.advance(0.25)  # 3 periods late with every buffer back: all queued, nothing lost
    got = [cam.capture() for _ in range(3)]
    assert [f.seq for f in got] == [4, 5, 6]
    for f in got:
        if f.release is not None:
            f.release()
    cam.close()
    assert cam.lent == 0 and cam.closed_while_lent == 0


def test_buffered_sensor_delivers_late_frames_in_order_until_its_buffers_overflow():
    t = FakeTime()
    cam = sim(t, fps=10.0, buffers=4)
    cam.open()
    f0 = cam.capture()
    t.advance(0.35)  # 3.5 periods late: three frames wait in buffers, none lost
    got = [cam.capture() for _ in range(4)]
    assert [f.seq for f in got] == [1, 2, 3, 4]
    assert [f.timestamp_ns - f0.timestamp_ns for f in got] == [k * (NS // 10) for k in (1, 2, 3, 4)]
    t.advance(1.0)  # 10 periods late: the queue overflowed, the oldest frames are gone
    f = cam.capture()
    assert f.seq > 5
    assert f.timestamp_ns <= t.now_ns


def test_descent_s_sets_how_fast_the_ground_comes_up():
    from camctl.board.cameras.sim_scene import _altitude

    assert _altitude(5.0, 10.0) < _altitude(5.0, 90.0) < 1.0
    assert _altitude(10.0, 10.0) == _altitude(60.0, 10.0) == 0.25  # on the ground, the view holds
    fast = render_scene(1, "down", (160, 120), 3, 5.0, 10.0)
    assert not np.array_equal(fast, render_scene(1, "down", (160, 120), 3, 5.0))
    # still deterministic
    assert np.array_equal(fast, render_scene(1, "down", (160, 120), 3, 5.0, 10.0))
    from camctl.board.config import parse_config

    cfg = parse_config({"board": "b",
                        "cameras": [{"name": "d", "backend": "sim", "sim_descent_s": 8}]})
    assert SimCamera.from_config(cfg.cameras[0]).descent_s == 8.0


def test_sim_prerender_comes_from_the_config_and_is_checked():
    from camctl.board.config import parse_config
    from camctl.exc import ConfigError

    cfg = parse_config({"board": "b",
                        "cameras": [{"name": "d", "backend": "sim", "sim_prerender": 4}]})
    assert SimCamera.from_config(cfg.cameras[0]).prerender == 4
    default = parse_config({"board": "b", "cameras": [{"name": "d"}]}).cameras[0]
    assert SimCamera.from_config(default).prerender == 0
    with pytest.raises(ConfigError, match="sim_prerender"):
        parse_config({"board": "b",
                      "cameras": [{"name": "d", "backend": "sim", "sim_prerender": -1}]})


# --- stills ---------------------------------------------------------------------------------------
def test_a_video_still_is_the_next_frame_at_the_video_size():
    t = FakeTime()
    cam = sim(t, fps=10.0)
    with cam:
        f0 = cam.capture()
        still = cam.capture_still()
        f1 = cam.capture()
    assert not cam.full_stills and not still.mode_switch
    assert (still.width, still.height) == (160, 120) and still.seq == f0.seq + 1
    assert f1.seq == still.seq + 1 and f1.timestamp_ns - f0.timestamp_ns == 2 * NS // 10


@pytest.mark.parametrize("paced", [True, False])
def test_a_full_still_is_the_whole_sensor_after_a_mode_switch_and_the_video_loses_the_pause(paced):
    """still_size 'full', like the picamera2 backend on an IMX708: a switch to the 4608x2592 mode,
    its first frame, a switch back; the video comes back one period after that, the frames it
    never exposed meanwhile a gap in seq beside the still's own number."""
    t = FakeTime()
    cam = sim(t, fps=10.0, still_size="full", paced=paced)
    switch_ns, full_ns = round(0.15 * NS), round(NS / 14.35)
    with cam:
        f0 = cam.capture()
        asked_ns = t.now_ns
        still = cam.capture_still()
        f1 = cam.capture()
        f2 = cam.capture()
    assert cam.full_stills and still.still and still.mode_switch
    assert (still.width, still.height) == (4608, 2592) and still.image.shape == (2592, 4608, 3)
    start_ns = asked_ns if paced else f0.timestamp_ns + NS // 10
    assert still.timestamp_ns == start_ns + switch_ns + full_ns
    assert f1.timestamp_ns == still.timestamp_ns + switch_ns + NS // 10
    lost = round((f1.timestamp_ns - f0.timestamp_ns) / (NS // 10)) - 1
    assert lost >= 3
    assert still.seq == f0.seq + 1 and f1.seq == still.seq + 1 + lost and f2.seq == f1.seq + 1
    assert (f1.width, f1.height) == (160, 120) and f2.timestamp_ns - f1.timestamp_ns == NS // 10
    if paced:
        assert t.now_ns >= f1.timestamp_ns  # the video frames came in sensor time


def test_still_size_comes_from_the_config_and_is_checked():
    cfg = CameraConfig(name="down", backend="sim", size=(64, 48), still_size="full")
    assert make_camera(cfg).full_stills
    with pytest.raises(CameraError, match="still_size must be 'video' or 'full', got 'max'"):
        SimCamera("cam", still_size="max")
