"""The hardware (MJPEG) encoder path of the picamera2 backend, and the choice of encoder.

- ``"software"``: frames come back as RGB arrays and the encoder pool makes the JPEGs (simplejpeg).
- ``"hardware"``: picamera2's V4L2 ``MJPEGEncoder`` (VC4 boards: Pi 4, CM4 and older) encodes the
  main stream while recording; each JPEG reaches ``capture`` through a bounded queue
  (:class:`JpegQueue`) and comes back with ``jpeg`` set and ``image=None``. Without that encoder
  (a Pi 5) opening raises a CameraError.
- ``"auto"``: hardware where ``MJPEGEncoder()`` constructs *and* the size fits the codec, else
  software; the choice is logged once per camera at INFO and holds for the camera's life.

docs/cameras.md, section "picamera2_hardware", has the codec's limits, the timestamps, the quality
buckets and what MJPEG frames carry, with their sources.
"""

from __future__ import annotations

import importlib
import logging
import queue
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import simplejpeg

from camctl.exc import CameraError

__all__ = ["CODEC_SIZE", "HW_FORMAT", "MODEL_PATH", "QUEUE_FRAMES", "HardwareParts", "JpegQueue",
           "Recording", "codec_fits", "jpeg_size", "pi_model", "quality_bucket", "resolve_encoder",
           "submodule"]

_log = logging.getLogger("camctl.board.cameras.picamera2")  # the backend's one logger

HW_FORMAT = "YUV420"  # what the V4L2 encoder reads with the least bandwidth (I420)
QUEUE_FRAMES = 8  # encoded frames waiting for capture(); when full the oldest goes (a seq gap)
MODEL_PATH = Path("/proc/device-tree/model")
CODEC_SIZE = (32, 1920)  # bcm2835-v4l2-codec.c: MIN_W/MIN_H 32, MAX_W_CODEC/MAX_H_CODEC 1920

HardwareParts = tuple[Any, Any, Any]
"""``(encoder, Quality, Output)``: a constructed ``MJPEGEncoder``, the classes it needs."""


def submodule(package: ModuleType, dotted: str) -> ModuleType:
    """``package.<dotted>``: an attribute where the package has it already, else imported (a real
    package binds a submodule to its parent only once something imported it)."""
    for part in dotted.split("."):
        try:
            package = getattr(package, part)
        except AttributeError:
            package = importlib.import_module(f"{package.__name__}.{part}")
    return package


def _load_hardware(mod: ModuleType) -> tuple[Any, Any, Any]:
    """``(MJPEGEncoder, Quality, Output)`` from picamera2 (ImportError where its encoders cannot
    load).

    ``MJPEGEncoder`` comes from its own module: ``picamera2.encoders.MJPEGEncoder`` is the software
    ``LibavMjpegEncoder`` on platforms without the V4L2 codec.
    """
    encoders = submodule(mod, "encoders")
    mjpeg_encoder = submodule(mod, "encoders.mjpeg_encoder")
    outputs = submodule(mod, "outputs")
    return mjpeg_encoder.MJPEGEncoder, encoders.Quality, outputs.Output


def quality_bucket(Quality: Any, jpeg_quality: int) -> Any:
    """The picamera2 ``Quality`` bucket for a JPEG quality 1..100 (docs/cameras.md)."""
    if jpeg_quality <= 40:
        return Quality.VERY_LOW
    if jpeg_quality <= 60:
        return Quality.LOW
    if jpeg_quality <= 80:
        return Quality.MEDIUM
    if jpeg_quality <= 90:
        return Quality.HIGH
    return Quality.VERY_HIGH


def pi_model(path: Path = MODEL_PATH) -> str:
    """The board model string from the device tree (``"Raspberry Pi 5 Model B Rev 1.0"``), or
    ``""``."""
    try:
        return path.read_bytes().rstrip(b"\0\n").decode("ascii", "replace")
    except OSError:
        return ""


def codec_fits(size: tuple[int, int]) -> bool:
    """Whether the bcm2835-codec encoder takes frames of ``size`` (see :data:`CODEC_SIZE`)."""
    lo, hi = CODEC_SIZE
    return all(lo <= v <= hi for v in size)


def _hardware_parts(mod: ModuleType, size: tuple[int, int],
                    model_path: Path) -> HardwareParts | str:
    """``(encoder, Quality, Output)`` for the hardware path, or why it is unavailable."""
    if not codec_fits(size):
        lo, hi = CODEC_SIZE
        return (f"{size[0]}x{size[1]} is outside the bcm2835-codec encoder's {lo}..{hi} pixels "
                "per side")
    try:
        MJPEGEncoder, Quality, Output = _load_hardware(mod)
        return MJPEGEncoder(), Quality, Output
    except Exception as exc:  # RuntimeError off VC4; ImportError where the encoders cannot load
        model = pi_model(model_path)
        if "Raspberry Pi 5" in model:
            return f"this board ({model}) has no hardware JPEG encoder ({exc})"
        return f"picamera2's V4L2 MJPEGEncoder is unavailable: {exc!r}"


def resolve_encoder(camera: str, encoder: str, in_use: str, mod: ModuleType, size: tuple[int, int],
                    model_path: Path) -> tuple[str, HardwareParts | None]:
    """The encoder this open of ``camera`` uses: ``("hardware", parts)`` or ``("software", None)``.

    ``encoder`` is the configured one, ``in_use`` what an earlier open chose (``""`` before the
    first): the choice of ``"auto"`` holds for the camera's life.
    """
    if encoder == "software" or in_use == "software":
        return "software", None
    hw = _hardware_parts(mod, size, model_path)
    if isinstance(hw, str):
        if encoder == "hardware":
            raise CameraError(camera, f"encoder 'hardware' requested but {hw}; "
                                      "use encoder = 'software' or 'auto'")
        if in_use == "hardware":  # no switch of encoder in the middle of a flight
            raise CameraError(camera, "encoder 'auto' chose hardware at the first open but now "
                                      f"{hw}")
        _log.info("camera %r: encoder 'auto' uses software JPEG (simplejpeg): %s", camera, hw)
        return "software", None
    if encoder == "auto" and not in_use:
        _log.info("camera %r: encoder 'auto' uses the hardware JPEG encoder (picamera2 V4L2 "
                  "MJPEGEncoder)", camera)
    return "hardware", hw


class JpegQueue:
    """Encoded frames from picamera2's encoder thread to ``Picamera2Camera.capture``.

    Bounded; when full the oldest frame is dropped (``dropped``), and since ``seq`` is given on
    arrival the dropped frame leaves a gap in the numbers the consumer sees.
    """

    def __init__(self, maxsize: int, first_seq: int) -> None:
        self._q: queue.Queue[tuple[int, int, bytes]] = queue.Queue(maxsize)
        self._lock = threading.Lock()
        self.next_seq = first_seq
        self.dropped = 0

    def put(self, jpeg: bytes, timestamp_ns: int) -> None:
        with self._lock:  # one producer, but keep seq order == queue order even so
            seq, self.next_seq = self.next_seq, self.next_seq + 1
            while True:
                try:
                    self._q.put_nowait((seq, timestamp_ns, jpeg))
                    return
                except queue.Full:
                    try:
                        self._q.get_nowait()
                        self.dropped += 1
                    except queue.Empty:
                        pass

    def get(self, timeout_s: float) -> tuple[int, int, bytes]:
        """``(seq, timestamp_ns, jpeg)``; ``queue.Empty`` after ``timeout_s``."""
        return self._q.get(timeout=timeout_s)


def _queue_output(Output: type, encoder: Any, hand_off: Callable[[bytes, int], None]) -> Any:
    """A picamera2 ``Output`` that hands each encoded frame, with its absolute time, to
    ``hand_off``."""

    class _JpegHandOff(Output):  # type: ignore[misc,valid-type]
        def outputframe(self, frame, keyframe=True, timestamp=None, packet=None, audio=False):
            # Runs on picamera2's encoder thread: it must never raise (that would end the thread).
            try:
                if audio:
                    return
                first_us = encoder.firsttimestamp
                if first_us is None or timestamp is None:
                    timestamp_ns = time.monotonic_ns()
                else:
                    timestamp_ns = (int(first_us) + int(timestamp)) * 1000
                hand_off(frame if isinstance(frame, bytes) else bytes(frame), timestamp_ns)
            except Exception:
                _log.exception("dropping an encoded frame")

    return _JpegHandOff(pts=None)


class Recording:
    """One open's hardware path: ``parts``' encoder recording the main stream into :attr:`jpegs`."""

    def __init__(self, parts: HardwareParts, jpeg_quality: int) -> None:
        encoder, Quality, Output = parts
        self.jpegs = JpegQueue(QUEUE_FRAMES, 0)
        self.encoder = encoder
        self.output = _queue_output(Output, encoder, self.jpegs.put)
        self.quality = quality_bucket(Quality, jpeg_quality)

    def start(self, picam2: Any) -> None:
        """Start recording on ``picam2`` (configured with a :data:`HW_FORMAT` main stream)."""
        picam2.start_recording(self.encoder, self.output, quality=self.quality)


def jpeg_size(jpeg: bytes, default: tuple[int, int]) -> tuple[int, int]:
    """``(width, height)`` the codec really encoded (libcamera may align the stream), read from the
    JPEG header only; ``default`` where the header cannot be read."""
    try:
        height, width = simplejpeg.decode_jpeg_header(jpeg)[:2]
    except Exception:
        return default
    return int(width), int(height)
