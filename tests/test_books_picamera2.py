"""A capture thread stuck in picamera2 keeps its camera acquired: libcamera's ``Camera::acquire``
refuses a second user (-EBUSY; libcamera 0.7.2 src/libcamera/camera.cpp, reached from picamera2
0.3.38 ``Picamera2._open_camera`` -> ``self.camera.acquire()``, released only by ``close``). The
watchdog's replacement can open the camera once the abandoned runner has closed its object, which
it does without waiting for the stuck call; its frames continue the abandoned runner's seqs."""

from __future__ import annotations

import pytest
from scripted import Sink, cfg
from waiting import wait_for

from camctl.board.cameras.picamera2 import Picamera2Camera
from camctl.board.capture import CameraRunner
from camctl.board.encode import EncoderPool
from camctl.exc import CameraError
from camctl.testing.picamera2_double import FakeRig


def _camera(rig: FakeRig) -> Picamera2Camera:
    return Picamera2Camera("down", index=0, size=(64, 48), fps=30.0, encoder="software",
                           picamera2=rig.module)


def test_the_replacement_opens_once_the_abandoned_object_lets_go_of_the_camera() -> None:
    rig = FakeRig()
    stuck_cam, sink, later = _camera(rig), Sink(), Sink()
    with EncoderPool(1) as pool:
        hung = CameraRunner(stuck_cam, cfg("down"), pool, sink)
        fresh = None
        hung.start()
        try:
            hung.set_phase("ARMED")
            hung.set_phase("DESCENT")
            sink.wait_for(lambda fs: len(fs) >= 3)
            rig.hang_next = True
            wait_for(lambda: rig.stuck == 1, "the capture stuck in the backend")
            other = _camera(rig)
            with pytest.raises(CameraError):  # acquired by the stuck object
                other.open()
            other.close()
            hung.abandon()  # the watchdog's move: never waits for the stuck thread
            wait_for(lambda: stuck_cam.closed, "the abandoned object closed")
            assert hung.alive and rig.stuck == 1  # the call is still stuck, the camera free
            fresh = CameraRunner(_camera(rig), cfg("down"), pool, later)
            fresh.seq_base = hung.next_seq
            fresh.start()
            fresh.set_phase("DESCENT")
            later.wait_for(lambda fs: len(fs) >= 3)
            assert fresh.stats.faults == 0  # it opened at the first try
        finally:
            rig.let_go.set()
            for r in (hung, fresh):
                if r is not None:
                    r.set_phase("LANDED")
                    r.wait_idle(10)
                    r.stop()
    wait_for(lambda: not hung.alive, "the stuck thread gone once the backend let go")
    assert min(f.seq for f in later.frames) > max(f.seq for f in sink.frames)
