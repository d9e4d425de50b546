"""Capture threads: the pre-trigger seam, per-phase rates, stills, accounting, fault isolation."""

from __future__ import annotations

import threading
import time

import pytest
import simplejpeg
from scripted import ScriptedCamera, Sink, cfg, first_frame_in_descent
from waiting import wait_for

from camctl.board.capture import CameraRunner
from camctl.board.config import CameraConfig
from camctl.board.encode import EncoderPool
from camctl.board.ring import PreTriggerRing
from camctl.common.frames import EncodedFrame, Frame, FrameValue
from camctl.exc import CameraError


def test_ring_keeps_seconds_and_bytes():
    ring = PreTriggerRing(1.0, 1000)
    for i in range(30):
        ring.push(EncodedFrame("c", i, i * 100_000_000, b"x" * 10, 1, 1, "ARMED"))
    assert len(ring) == 11 and ring.expired == 19  # 1 s at 10 fps, inclusive of both ends
    ring2 = PreTriggerRing(10.0, 100)
    for i in range(30):
        ring2.push(EncodedFrame("c", i, i, b"x" * 10, 1, 1, "ARMED"))
    assert ring2.bytes <= 100 and ring2.overflow == 20


def test_nothing_recorded_in_safe(pool):
    cam, sink = ScriptedCamera(), Sink()
    r = CameraRunner(cam, cfg(), pool, sink)
    r.start()
    try:
        assert r.wait_idle(5)
        assert cam.opens == 0 and sink.frames == [] and r.stats.frames_captured == 0
    finally:
        r.stop()


def test_pretrigger_seam_has_no_gap_and_no_duplicate(pool):
    cam, sink = ScriptedCamera(fps=50, paced=True), Sink()
    r = CameraRunner(cam, cfg(fps=(("ARMED", 50.0), ("DESCENT", 50.0))), pool, sink)
    r.start()
    try:
        r.set_phase("ARMED")
        wait_for(lambda: r.stats.frames_captured >= 40, "40 frames captured")
        assert sink.frames == []  # ARMED frames stay in RAM
        r.set_phase("DESCENT")
        sink.wait_for(lambda fs: sum(f.phase == "DESCENT" for f in fs) >= 20)
        r.set_phase("LANDED")
        assert r.wait_idle(10)
    finally:
        r.stop()
    seqs = [f.seq for f in sink.frames]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))  # consecutive across the seam
    pre = [f for f in sink.frames if f.phase == "ARMED"]
    assert pre and all(f.value == FrameValue.PRETRIGGER and f.meta.get("pretrigger") for f in pre)
    first_live = next(f for f in sink.frames if f.phase != "ARMED")
    assert first_live.timestamp_ns - pre[0].timestamp_ns <= int(0.5e9) + int(1e9 / 50) * 2
    assert r.stats.dropped == {}
    assert r.stats.pretrigger_flushed == len(pre)
    assert [f.timestamp_ns for f in sink.frames] == sorted(f.timestamp_ns for f in sink.frames)


def test_rate_follows_phase(pool):
    cam, sink = ScriptedCamera(), Sink()
    r = CameraRunner(cam, cfg(), pool, sink)
    r.start()
    try:
        r.set_phase("ARMED")
        r.set_phase("SEPARATION")
        sink.wait_for(lambda fs: sum(f.phase == "SEPARATION" for f in fs) >= 5)
        assert cam.fps == 60.0
        r.set_phase("TOUCHDOWN")
        sink.wait_for(lambda fs: sum(f.phase == "TOUCHDOWN" for f in fs) >= 5)
        assert cam.fps == 30.0
        assert all(f.value == FrameValue.TOUCHDOWN for f in sink.frames if f.phase == "TOUCHDOWN")
    finally:
        r.stop()


def test_disarm_discards_ring_and_closes(pool):
    cam, sink = ScriptedCamera(), Sink()
    r = CameraRunner(cam, cfg(), pool, sink)
    r.start()
    try:
        r.set_phase("ARMED")
        wait_for(lambda: r.stats.frames_captured >= 5, "5 ARMED frames")
        r.set_phase("SAFE")
        assert r.wait_idle(10)
        assert cam.closed and sink.frames == [] and len(r.ring) == 0
    finally:
        r.stop()


def test_landed_before_any_live_frame_still_keeps_the_ring(pool):
    cam, sink = ScriptedCamera(), Sink()
    cam.gated = True
    r = CameraRunner(cam, cfg(), pool, sink)
    r.start()
    try:
        r.set_phase("ARMED")
        for _ in range(5):
            cam.gate.release()
        wait_for(lambda: r.stats.frames_captured >= 5, "5 ARMED frames")
        r.set_phase("LANDED")
        assert r.wait_idle(10)
        assert [f.phase for f in sink.frames] == ["ARMED"] * 5
    finally:
        r.stop()


def test_faulty_camera_restarts_and_others_are_unaffected(pool):
    good, bad = ScriptedCamera("good", paced=True), ScriptedCamera("bad", paced=True)
    bad.fail_next, bad.fail_open = 3, 2
    faults = []
    sg, sb = Sink(), Sink()
    rg = CameraRunner(good, cfg("good"), pool, sg)
    rb = CameraRunner(bad, cfg("bad"), pool, sb, on_fault=faults.append, backoff_s=(0.001, 0.01))
    rg.start()
    rb.start()
    try:
        for r in (rg, rb):
            r.set_phase("ARMED")
            r.set_phase("DESCENT")
        sb.wait_for(lambda fs: len(fs) >= 10)
        sg.wait_for(lambda fs: len(fs) >= 10)
    finally:
        rg.stop()
        rb.stop()
    assert rb.stats.faults == 5 and len(faults) == 5 and faults[0]["camera"] == "bad"
    assert rg.stats.faults == 0 and rg.stats.dropped == {}
    assert "bad" in rb.snapshot()["last_error"]


def test_stall_times_out_and_recovers(pool):
    cam, sink = ScriptedCamera(), Sink()
    cam.gated = True
    r = CameraRunner(cam, cfg(fps=(("ARMED", 30.0), ("DESCENT", 30.0))), pool, sink,
                     backoff_s=(0.001, 0.01))
    r.start()
    try:
        r.set_phase("ARMED")
        r.set_phase("DESCENT")
        wait_for(lambda: r.stats.faults, "a fault")
        assert r.stats.faults >= 1  # CameraTimeout after capture's own timeout
        cam.gated = False
        sink.wait_for(lambda fs: len(fs) >= 3)
    finally:
        r.stop()


def test_sensor_gaps_are_counted(pool):
    cam, sink = ScriptedCamera(), Sink()
    with first_frame_in_descent(cam, pool, sink) as r:
        cam.skip_next = 3
        cam.gate.release()
        sink.wait_for(lambda fs: len(fs) >= 2)
        assert r.stats.sensor_gaps == 3


def test_encoder_behind_drops_instead_of_blocking():
    class SlowPool:
        def __init__(self):
            self.release = threading.Event()
            self.inner = EncoderPool(1)

        def submit(self, image, quality=85, **_kw):
            def job():
                self.release.wait(10)
                return b"\xff\xd8fake"

            return self.inner._pool.submit(job)

        def make_room(self, value):  # an unbounded pool: nothing waiting is pushed out
            return False

    pool = SlowPool()
    cam, sink = ScriptedCamera(), Sink()
    r = CameraRunner(cam, cfg(), pool, sink, max_inflight=4)
    r.start()
    try:
        r.set_phase("ARMED")
        r.set_phase("DESCENT")
        wait_for(lambda: r.stats.dropped.get("encoder_behind", 0) >= 10,
                 "10 frames dropped behind the encoder")
        assert r.stats.dropped["encoder_behind"] >= 10
    finally:
        pool.release.set()
        r.stop()
        pool.inner.close()


def test_still_on_event(pool):
    cam, sink = ScriptedCamera(), Sink()
    r = CameraRunner(cam, cfg(), pool, sink)
    r.start()
    try:
        r.set_phase("ARMED")
        r.set_phase("TOUCHDOWN")
        r.request_still("touchdown")
        sink.wait_for(lambda fs: any(f.still for f in fs))
    finally:
        r.stop()
    still = next(f for f in sink.frames if f.still)
    assert (still.value == FrameValue.STILL and still.meta["event"] == "touchdown"
            and "video_gap_ms" in still.meta)


def test_quality_and_lores_follow_the_phase(pool):
    import simplejpeg

    cam, sink = ScriptedCamera(size=(320, 240), paced=True, fps=50), Sink()
    c = cfg(size=(320, 240), fps=(("ARMED", 50.0), ("DESCENT", 50.0)), quality=(("ARMED", 40),),
            lores_size=(160, 120), lores_phases=("ARMED",))
    r = CameraRunner(cam, c, pool, sink)
    r.start()
    try:
        r.set_phase("ARMED")
        wait_for(lambda: r.stats.frames_captured >= 5, "5 ARMED frames")
        r.set_phase("DESCENT")
        sink.wait_for(lambda fs: sum(f.phase == "DESCENT" for f in fs) >= 3)
    finally:
        r.stop()
    armed = [f for f in sink.frames if f.phase == "ARMED"]
    live = [f for f in sink.frames if f.phase == "DESCENT"]
    assert armed and live
    for f in armed:
        assert (f.width, f.height) == (160, 120)
        assert simplejpeg.decode_jpeg_header(f.jpeg)[:2] == (120, 160)
    for f in live:
        assert (f.width, f.height) == (320, 240)
        assert simplejpeg.decode_jpeg_header(f.jpeg)[:2] == (240, 320)


def test_a_frame_exposed_before_the_edge_keeps_the_phase_before(pool):
    """A sensor buffer delivered just after the edge was exposed before it: a pre-edge frame."""

    class LaggingCamera(ScriptedCamera):
        lag_ns = 0

        def capture(self, timeout_s=1.0):
            frame = super().capture(timeout_s)
            frame.timestamp_ns = time.monotonic_ns() - self.lag_ns  # sensor time on CLOCK_MONOTONIC
            return frame

    cam, sink = LaggingCamera(paced=True, fps=50), Sink()
    cam.gated = True
    r = CameraRunner(cam, cfg(fps=(("ARMED", 50.0), ("DESCENT", 50.0))), pool, sink)
    r.start()
    try:
        r.set_phase("ARMED")
        for _ in range(3):
            cam.gate.release()
        wait_for(lambda: r.stats.frames_captured >= 3, "3 ARMED frames")
        r.set_phase("DESCENT")
        cam.lag_ns = 200_000_000  # exposed 200 ms before it arrives: before the edge
        cam.gate.release()
        wait_for(lambda: r.stats.frames_captured >= 4, "the lagging frame")
        cam.lag_ns = 0
        cam.gated = False
        sink.wait_for(lambda fs: sum(f.phase == "DESCENT" for f in fs) >= 2)
    finally:
        r.stop()
    phases = [f.phase for f in sink.frames]
    assert phases[:4] == ["ARMED"] * 4 and phases[4] == "DESCENT"
    assert sink.frames[3].value == FrameValue.PRETRIGGER


# --- progress, as the daemon's watchdog sees it ---------------------------------------------------
# the thread killed on purpose
@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_runner_is_overdue_when_stuck_in_capture_and_when_its_thread_died(pool) -> None:
    from camctl.board.capture import PROGRESS_MARGIN_S

    cam = ScriptedCamera("stuck")

    # waits for a permit with no timeout, like picamera2's stop()
    def hang(timeout_s: float = 1.0) -> Frame:
        cam.gate.acquire()
        return ScriptedCamera.capture(cam, timeout_s)

    cam.capture = hang
    r = CameraRunner(cam, CameraConfig(name="stuck", backend="sim", fps=(("DESCENT", 10.0),)),
                     pool, Sink())
    r.start()
    r.set_phase("DESCENT")
    wait_for(lambda: r.activity == "capturing", "the runner to capture")
    now = time.monotonic_ns()
    # within its budget: a capture may take its timeout plus the margin
    assert r.overdue_s(now) == 0.0
    later = now + int((1.0 + PROGRESS_MARGIN_S + 1.0) * 1e9)
    assert r.overdue_s(later) >= 0.9 and r.activity == "capturing"
    cam.gate.release()
    r.stop(timeout=5)
    assert r.overdue_s(later) == 0.0  # stopped on purpose: not a fault

    dying = CameraRunner(ScriptedCamera("dies"), CameraConfig(name="dies", backend="sim"),
                         pool, Sink())
    dying._close_camera = lambda: 1 / 0  # a bug that kills the thread in its SAFE loop
    dying.start()
    dying._thread.join(10)
    assert not dying._thread.is_alive()
    assert dying.overdue_s(time.monotonic_ns() + int(60e9)) > 0  # dead without a stop: no progress


def test_an_abandoned_runner_drops_its_ring_and_a_late_frame_into_its_ledger(pool) -> None:
    """The watchdog gave up on a thread stuck in ARMED: its ring is dropped (``abandoned``) at once,
    and the frame the stuck call brings back is counted captured and dropped (no sensor gap)."""
    cam, sink = ScriptedCamera("stuck"), Sink()

    def hang(timeout_s: float = 1.0) -> Frame:  # no timeout: stuck until a permit comes
        cam.gate.acquire()
        return ScriptedCamera.capture(cam, timeout_s)

    cam.capture = hang
    r = CameraRunner(cam, CameraConfig(name="stuck", backend="sim", fps=(("ARMED", 10.0),)), pool,
                     sink)
    r.start()
    r.set_phase("ARMED")
    cam.gate.release(5)
    deadline = time.monotonic() + 20
    while len(r.ring) < 5 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(r.ring) == 5 and r.activity == "capturing"  # the sixth capture is stuck
    r.abandon()
    assert len(r.ring) == 0
    assert r.ledger.totals()["stuck"]["dropped"] == {"abandoned": 5}
    cam.skip_next = 3  # the sensor ran on meanwhile: not this runner's frames to count
    cam.gate.release()
    while r.stats.state != "stopped" and time.monotonic() < deadline:
        time.sleep(0.01)
    books = r.ledger.totals()["stuck"]
    assert (books["captured"], books["dropped"], books["aged_out"]) == (6, {"abandoned": 6}, 0)
    assert sink.frames == [] and r.in_pipeline == 0


class LendingCamera(ScriptedCamera):
    """Lends every frame (``Frame.release``) and checks the runner's side of the contract: each
    frame given back exactly once, never closed with a frame out (a real camera frees its buffers at
    close), and pixels scribbled over once given back (an encode still reading them would make a
    wrong JPEG)."""

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.lock = threading.Lock()
        self.out: dict[int, int] = {}  # seq -> times given back
        self.lent = 0
        self.double = 0
        self.closed_while_lent = 0

    def capture(self, timeout_s=1.0):
        frame = super().capture(timeout_s)
        return self._lend(frame)

    def capture_still(self, timeout_s=2.0):
        frame = super().capture(timeout_s)
        frame.still = True
        return self._lend(frame)

    def _lend(self, frame):
        image, seq = frame.image, frame.seq
        with self.lock:
            self.out[seq] = 0
            self.lent += 1

        def release():
            with self.lock:
                self.out[seq] += 1
                if self.out[seq] > 1:
                    self.double += 1
                    return
                self.lent -= 1
            image[:] = 255 - image  # the buffer is the camera's again: the next frame overwrites it

        frame.release = release
        return frame

    def _close_backend(self):
        if self.lent:
            self.closed_while_lent += 1


def test_every_lent_frame_is_given_back_once_after_its_encode_through_drops_stills_and_faults():
    cam, sink = LendingCamera(fps=60.0), Sink()
    # one encoder for a camera running flat out: the runner drops frames
    with EncoderPool(1) as pool:
        r = CameraRunner(cam, cfg(), pool, sink, max_inflight=2, backoff_s=(0.001, 0.01))
        r.start()
        try:
            r.set_phase("ARMED")
            r.set_phase("DESCENT")
            sink.wait_for(lambda fs: len(fs) >= 20)
            r.request_still("release")
            sink.wait_for(lambda fs: any(f.still for f in fs))
            n = len(sink.frames)
            gate = threading.Event()
            # the encoder is busy: the next frames wait, lent, in the pipeline
            pool.run(gate.wait, 10)
            deadline = time.monotonic() + 20
            while r.in_pipeline < 2 and time.monotonic() < deadline:
                time.sleep(0.001)
            cam.fail_next = 1  # a fault while lent frames wait for the encoder
            while r.stats.faults < 1 and time.monotonic() < deadline:
                time.sleep(0.001)
            # time for a wrong runner to close the camera and back off
            settle = time.monotonic() + 0.5
            while r.activity != "backoff" and time.monotonic() < settle:
                time.sleep(0.001)
            gate.set()
            sink.wait_for(lambda fs: len(fs) >= n + 20)
            r.set_phase("LANDED")
            assert r.wait_idle(20)
        finally:
            r.stop()
    assert r.stats.faults == 1 and r.stats.dropped.get("encoder_behind", 0) > 0
    assert cam.double == 0 and cam.lent == 0 and set(cam.out.values()) == {1}
    assert cam.closed_while_lent == 0
    # every stored JPEG shows the pixels its frame was captured with (none read once given back)
    for f in sink.frames:
        level = float(simplejpeg.decode_jpeg(f.jpeg, colorspace="GRAY").mean())
        assert abs(level - f.seq % 256) < 3, (f.seq, level)


def test_a_still_lost_to_a_camera_fault_is_counted(pool):
    class StillFails(ScriptedCamera):
        def capture_still(self, timeout_s=2.0):
            raise CameraError(self.name, "still mode failed")

    cam, sink = StillFails(paced=True), Sink()
    r = CameraRunner(cam, cfg(), pool, sink, backoff_s=(0.001, 0.01))
    r.start()
    try:
        r.set_phase("ARMED")
        r.set_phase("TOUCHDOWN")
        sink.wait_for(lambda fs: len(fs) >= 1)
        r.request_still("touchdown")
        wait_for(lambda: r.stats.faults >= 1, "a fault")
        n = len(sink.frames)
        sink.wait_for(lambda fs: len(fs) >= n + 3)  # restarted and recording
    finally:
        r.stop()
    assert r.stats.faults == 1 and r.stats.stills_missed == 1 and r.stats.stills == 0
    assert r.ledger.totals()["cam"]["stills_missed"] == 1
