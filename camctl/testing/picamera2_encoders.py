"""The encoder side of the picamera2 double: ``Quality``, ``Output``, the encoders, and the thread
that feeds a recording encoder every sensor frame.

**Hardware JPEG**: only on a VC4 board (``rig.hardware_jpeg``); the V4L2 encoder node picamera2
opens (``/dev/video11``, bcm2835-codec's ENCODE role) takes 32..1920 pixels on each side
(raspberrypi/linux ``drivers/staging/vc04_services/bcm2835-codec/bcm2835-v4l2-codec.c``:
``MIN_W 32``, ``MAX_W_CODEC 1920``, ``MAX_H_CODEC 1920``; ``dev->max_w`` is raised only for the ISP
role), so ``start_recording`` fails beyond. Recording feeds the encoder every sensor frame
(``process_requests`` encodes every request), JPEGs made with simplejpeg, timestamps in
microseconds relative to the first frame as ``Encoder._timestamp`` gives them.
"""

from __future__ import annotations

import enum
import threading
import time
from typing import TYPE_CHECKING, Any

import numpy as np
import simplejpeg

if TYPE_CHECKING:
    from camctl.testing.picamera2_double import FakePicamera2, FakeRig

__all__ = ["CODEC_MAX", "CODEC_MIN", "Encoder", "LibavMjpegEncoder", "MJPEGEncoder", "Output",
           "Quality", "feed"]

CODEC_MIN = 32  # bcm2835-v4l2-codec.c MIN_W / MIN_H
CODEC_MAX = 1920  # bcm2835-v4l2-codec.c MAX_W_CODEC / MAX_H_CODEC (the ENCODE role, /dev/video11)


class Quality(enum.Enum):
    VERY_LOW = 0
    LOW = 1
    MEDIUM = 2
    HIGH = 3
    VERY_HIGH = 4


class Output:
    """picamera2.outputs.Output: the base an encoder hands frames to."""

    def __init__(self, pts=None) -> None:
        self.recording = False
        self.ptsoutput = pts

    def start(self) -> None:
        self.recording = True

    def stop(self) -> None:
        self.recording = False

    def outputframe(self, frame, keyframe=True, timestamp=None, packet=None, audio=False) -> None:
        pass


class Encoder:
    """picamera2.encoders.Encoder: output list, start/stop, first-timestamp bookkeeping."""

    # V4L2Encoder._v4l2_format
    FORMATS = ("RGB888", "BGR888", "XBGR8888", "XRGB8888", "YUV420", "NV12")

    def __init__(self) -> None:
        self._output: list[Output] = []
        self._running = False
        self.firsttimestamp: int | None = None
        self.width = self.height = 0
        self.quality: Any = None

    @property
    def running(self) -> bool:
        return self._running

    @property
    def output(self) -> Any:
        return self._output[0] if len(self._output) == 1 else self._output

    @output.setter
    def output(self, value: Any) -> None:
        value = value if isinstance(value, list) else [value]
        if not all(isinstance(out, Output) for out in value):
            raise RuntimeError("Must pass Output")
        self._output = value

    def start(self, quality=None) -> None:
        if self._running:
            raise RuntimeError("Encoder already running")
        self.quality = quality
        self._running = True
        self.firsttimestamp = None
        for out in self._output:
            out.start()

    def stop(self) -> None:
        if not self._running:
            raise RuntimeError("Encoder already stopped")
        self._running = False
        for out in self._output:
            out.stop()

    def outputframe(self, frame, keyframe=True, timestamp=None, packet=None, audio=False) -> None:
        for out in self._output:
            out.outputframe(frame, keyframe, timestamp, packet, audio)

    def _timestamp(self, sensor_timestamp_ns: int) -> int:
        """As picamera2's: microseconds since this encoder's first frame (``firsttimestamp`` in
        µs)."""
        ts = int(sensor_timestamp_ns / 1000)
        if self.firsttimestamp is None:
            self.firsttimestamp = ts
            return 0
        return ts - self.firsttimestamp


class MJPEGEncoder(Encoder):
    """picamera2.encoders.mjpeg_encoder.MJPEGEncoder: the V4L2 one, only on a VC4 board."""

    rig: FakeRig  # set per fake module

    def __init__(self, bitrate=None) -> None:
        if not self.rig.hardware_jpeg:
            raise RuntimeError("Hardware MJPEG not available on this platform")
        super().__init__()
        self.bitrate = bitrate


class LibavMjpegEncoder(Encoder):
    """Software MJPEG (what ``picamera2.encoders.MJPEGEncoder`` names off VC4)."""

    def __init__(self, bitrate=None) -> None:
        super().__init__()
        self.bitrate = bitrate


def feed(picam2: FakePicamera2, encoder: Encoder, stop: threading.Event) -> None:
    """The camera + V4L2 encoder threads of ``picam2``: every sensor frame is encoded, at the time
    it completes."""
    rig = picam2.rig
    sensor, index = None, 0
    while not stop.is_set():
        with picam2._lock:
            if picam2._sensor is not sensor:
                sensor = picam2._sensor
                index = 0 if sensor is None else sensor.next_after(time.monotonic())
            due = None if sensor is None else sensor.time_of(index)
        if due is None:
            stop.wait(0.01)
            continue
        if stop.wait(max(0.0, due - time.monotonic())):
            return
        index += 1 + rig.drop_next
        rig.drop_next = 0
        if not picam2.started or rig.stalled or not encoder.running:
            continue
        timestamp_us = encoder._timestamp(int(due * 1e9))
        rgb = np.empty((encoder.height, encoder.width, 3), dtype=np.uint8)
        rgb[...] = rig.colour
        jpeg = simplejpeg.encode_jpeg(rgb, quality=85, colorspace="RGB")
        encoder.outputframe(jpeg, True, timestamp_us)
        with rig.fed:
            rig.frames_fed += 1
            rig.fed.notify_all()
