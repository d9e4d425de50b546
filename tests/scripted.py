"""A scripted camera backend and a frame sink for capture-thread tests (test_capture, test_ledger,
test_encode_overload): frames as fast as asked, faults and stalls on demand."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from camctl.board.cameras.base import Camera
from camctl.board.capture import CameraRunner
from camctl.board.config import CameraConfig
from camctl.common.frames import EncodedFrame, Frame
from camctl.exc import CameraError, CameraTimeout

__all__ = ["ScriptedCamera", "Sink", "cfg", "first_frame_in_descent"]


class ScriptedCamera(Camera):
    """A test backend: frames as fast as asked (timestamps advance by 1/fps), faults on demand."""

    def __init__(self, name: str = "cam", fps: float = 30.0, size: tuple[int, int] = (64, 48),
                 paced: bool = False) -> None:
        super().__init__(name, size=size, fps=fps)
        self.paced = paced
        self.seq = 0
        self.t = 0
        self.fail_next = 0
        self.fail_open = 0
        self.opens = 0
        self.gate = threading.Semaphore(0)  # each capture waits for a permit when gated
        self.gated = False
        self.skip_next = 0

    def _open_backend(self) -> None:
        if self.fail_open:
            self.fail_open -= 1
            raise CameraError(self.name, "open failed")
        self.opens += 1

    def _close_backend(self) -> None:
        pass

    def capture(self, timeout_s: float = 1.0) -> Frame:
        if self.gated and not self.gate.acquire(timeout=timeout_s):
            raise CameraTimeout(self.name, f"no frame in {timeout_s} s")
        if self.fail_next:
            self.fail_next -= 1
            raise CameraError(self.name, "sensor exploded")
        if self.paced:
            time.sleep(1 / self.fps)  # the sensor's frame period (the scenario, not a wait)
        self.seq += 1 + self.skip_next
        self.skip_next = 0
        self.t += int(1e9 / self.fps)
        img = np.full((self.size[1], self.size[0], 3), self.seq % 256, np.uint8)
        return Frame(self.name, self.seq, self.t, image=img)


class Sink:
    """The runner's sink: keeps every frame; ``wait_for`` blocks on a condition until ``pred``
    holds for the frames so far (woken by each frame, no polling)."""

    def __init__(self) -> None:
        self.frames: list[EncodedFrame] = []
        self.lock = threading.Lock()
        self.cond = threading.Condition(self.lock)

    def __call__(self, f: EncodedFrame) -> bool:
        with self.cond:
            self.frames.append(f)
            self.cond.notify_all()
        return True

    def wait_for(self, pred: Callable[[list[EncodedFrame]], bool], timeout: float = 20.0) -> None:
        with self.cond:
            assert self.cond.wait_for(lambda: pred(self.frames), timeout), \
                f"timed out; have {len(self.frames)}"


def cfg(name: str = "cam", **kw: Any) -> CameraConfig:
    """A camera config at 10/30/60/30 fps by phase, 0.5 s pre-trigger, 64x48."""
    base = {"fps": (("ARMED", 10.0), ("DESCENT", 30.0), ("SEPARATION", 60.0), ("TOUCHDOWN", 30.0)),
            "pretrigger_s": 0.5, "backend": "sim", "size": (64, 48)}
    base.update(kw)
    return CameraConfig(name=name, **base)


@contextlib.contextmanager
def first_frame_in_descent(cam: ScriptedCamera, pool: Any, sink: Sink) -> Iterator[CameraRunner]:
    """A runner on ``cam`` (gated: one frame per ``cam.gate.release()``), started, in DESCENT, its
    first frame in ``sink``; on exit the gate opens and the runner lands, goes idle and stops."""
    r = CameraRunner(cam, cfg(), pool, sink)
    cam.gated = True
    r.start()
    try:
        r.set_phase("ARMED")
        r.set_phase("DESCENT")
        cam.gate.release()
        sink.wait_for(lambda fs: len(fs) >= 1)
        yield r
    finally:
        cam.gated = False
        r.set_phase("LANDED")
        r.wait_idle(10)
        r.stop()
