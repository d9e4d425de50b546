"""The release edge on the picamera2 backend, driven by the strict double: going from the ARMED rate
to the DESCENT rate leaves no gap in ``seq``, so the ledger books no ``sensor_gap`` for it (the
Thinner on its own: tests/test_thinner.py)."""

from __future__ import annotations

import pytest
from scripted import Sink
from waiting import wait_for

from camctl.board.cameras.picamera2 import Picamera2Camera
from camctl.board.capture import CameraRunner
from camctl.board.config import CameraConfig
from camctl.board.encode import EncoderPool
from camctl.common.ledger import Ledger, balance

SENSOR_FPS = 10.0  # long sensor periods: a busy test machine does not lose frames


def _take(c: Picamera2Camera):
    frame = c.capture(timeout_s=5.0)
    if frame.release is not None:
        frame.release()
    return frame


@pytest.mark.parametrize("encoder", ["software", "hardware"])
def test_set_fps_from_the_armed_rate_delivers_the_next_frame_with_the_next_seq(picamera2_rig,
                                                                              encoder):
    rig = picamera2_rig
    rig.hardware_jpeg = encoder == "hardware"
    c = Picamera2Camera("pi", size=(64, 48), fps=1.0, sensor_fps=SENSOR_FPS, encoder=encoder,
                        picamera2=rig.module)
    keep = c._thin.keep

    def keep_then_release(*args, **kw):
        # the release edge arrives (set_fps from the event path) while capture() is thinning,
        # four sensor frames after the last ARMED frame
        seq = keep(*args, **kw)
        if seq is None and c.thinned == 4:
            c.set_fps(SENSOR_FPS)
        return seq

    c._thin.keep = keep_then_release  # type: ignore[method-assign]
    with c:
        assert c.encoder_in_use == encoder
        armed = _take(c)
        descent = [_take(c) for _ in range(3)]
    assert c.thinned == 4
    assert [f.seq for f in descent] == [armed.seq + 1, armed.seq + 2, armed.seq + 3]
    # the first DESCENT frame is the sensor frame right after the edge: five periods after ARMED's
    assert (descent[0].timestamp_ns - armed.timestamp_ns) / 1e9 == pytest.approx(5 / SENSOR_FPS,
                                                                                 abs=0.005)
    assert rig.outstanding == 0


def test_the_ledger_books_no_sensor_gap_at_a_release(picamera2_rig):
    rig = picamera2_rig
    cfg = CameraConfig(name="pi", size=(64, 48), encoder="software", pretrigger_s=2.0,
                       fps=(("ARMED", 1.0), ("DESCENT", SENSOR_FPS), ("TOUCHDOWN", SENSOR_FPS)))
    camera = Picamera2Camera.from_config(cfg, picamera2=rig.module)
    assert camera.sensor_fps == SENSOR_FPS
    sink, ledger = Sink(), Ledger()
    with EncoderPool(1) as pool:
        runner = CameraRunner(camera, cfg, pool, sink, ledger=ledger)
        runner.start()
        try:
            runner.set_phase("ARMED")
            # mid-way between two ARMED frames (1 s apart)
            wait_for(lambda: runner.stats.frames_captured >= 1 and camera.thinned >= 4,
                     "an ARMED frame and four thinned sensor frames after it")
            runner.set_phase("DESCENT")
            wait_for(lambda: runner.stats.frames_captured >= 8, "DESCENT frames")
            runner.set_phase("LANDED")
            assert runner.wait_idle(30)
        finally:
            runner.stop()
    video = [f for f in sink.frames if not f.still]
    assert [f.seq for f in video] == list(range(video[0].seq, video[0].seq + len(video)))
    assert runner.stats.sensor_gaps == 0
    books = ledger.totals()["pi"]
    assert books["dropped"].get("sensor_gap", 0) == 0, books
    assert books["captured"] == runner.stats.frames_captured
    assert balance(books, len(sink.frames))["balanced"], books
