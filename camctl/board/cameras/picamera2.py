"""The ``picamera2`` camera backend: real Raspberry Pi cameras through libcamera's Python binding.

:class:`Picamera2Camera` owns one ``Picamera2`` object: it checks the camera index exists, configures a
video stream at the configured size and rate, pulls completed requests with a bounded wait, lends the main
stream's buffer as the frame (or copies the pixels out when no buffer is to spare) and always gives the
request back, and maps every failure to a camctl camera error (timeout, disconnect, anything else) so the
capture thread can close and reopen it.

The picamera2 module is passed in (``picamera2=``: the module, or a function returning it), as
gpiozero devices take ``pin_factory=``; by default it is imported at open
(:func:`import_picamera2`), so ``import camctl.board.cameras.picamera2`` works where libcamera is
absent, and opening a camera there raises a :class:`~camctl.exc.CameraError` saying how to install
it.

Facts this module relies on (checked against picamera2 0.3.x sources by tests/test_cameras_picamera2.py):

- Colour order: libcamera names formats by their 32-bit word order, so picamera2's ``"BGR888"`` arrives
  in memory as R, G, B (and ``"RGB888"`` as B, G, R). We ask for ``"BGR888"`` and get RGB with no copy;
  :func:`_to_rgb` still handles ``RGB888``/``XBGR8888``/``XRGB8888`` should a stream come back in one.
- ``capture_request(wait=False)`` returns a ``Job``; ``job.get_result(timeout=...)`` bounds the wait. On a
  timeout the job stays queued inside picamera2 and would later swallow (leak) a request, so we call
  ``cancel_all_and_flush()`` and release any request the job still produced.
- ``SensorTimestamp`` (ns) is the V4L2 buffer timestamp, on ``CLOCK_MONOTONIC`` (picamera2's own
  ``capture_request(flush=True)`` compares it with ``time.monotonic_ns()``), so it lines up with camctl's
  monotonic clock on the same board.
- ``capture_request`` on a ``queue=False`` configuration waits for the *next* frame to complete (picamera2
  keeps no completed request: ``_max_queue_len = 0``), so a consumer that comes back late has lost the
  frames in between; the buffers do not ride it out.
- ``seq`` counts delivered frames plus the frame slots (at the current rate) that had no frame: a frame the
  sensor or a late consumer lost leaves a gap, a frame thinned on purpose does not. It keeps increasing
  across reopen.
- ``"FrameRate"`` is a picamera2 virtual control that maps onto libcamera's ``FrameDurationLimits``. A
  ``set_controls`` while streaming rides on the next request recycled to libcamera, which the sensor fills
  ``buffer_count`` frames later, plus the sensor's own delay (3 frames for a frame-length change on an
  IMX708): at 1-2 fps that is seconds. And ``configure_`` (so every mode switch, so every
  ``switch_mode_and_capture_request``) rebuilds the controls from the configuration it applies, dropping
  what ``set_controls`` set since.

Lent frames (software path, main stream; :attr:`~camctl.common.frames.Frame.release`; the picamera2 facts below are
pinned to its source by tests/test_picamera2_strict.py, the behaviour tested in tests/test_cameras_picamera2.py):

- A frame's ``image`` is the request's own buffer, not a 6 MB copy per 1080p frame: picamera2's
  ``MappedArray(request, "main", write=False)`` (exported by ``picamera2/__init__.py``; ``request.py``:
  ``__enter__`` wraps the mmap with ``np.array(b, copy=False)`` and ``Helpers._make_array_shared``, which "never
  makes a copy": for ``BGR888`` a reshape of the buffer), held with ``request.acquire()``. That is how
  picamera2's own software JPEG encoder works (``encoders/multi_encoder.py``: ``_encode`` acquires,
  ``do_encode`` releases after ``encode_func``; ``encoders/jpeg_encoder.py``: ``encode_func`` reads
  ``with MappedArray(request, name)``). The view is read-only; ``Frame.release`` (one-shot, thread-safe: a
  second call does nothing) exits the mapping and releases the request, which goes back to libcamera.
- ``CompletedRequest`` counts references (``request.py``: ``acquire`` raises at ``ref_count`` 0, ``release``
  below 0) and recycles the request at 0 only if ``self.stop_count == self.picam2.stop_count`` and the camera
  is started: a frame given back after a stop or close is not queued to a stopped camera.
- A held request is a buffer the sensor cannot fill: with all ``buffer_count`` held the sensor drops frames.
  So at most :data:`LEND_LIMIT` (``BUFFER_COUNT - 2``) requests are lent at once; beyond that the frame is a
  copy (``make_array``) and the request goes back at once. A slow encoder costs copies, never sensor frames.
- A still and its video twin are two frames of one request: each holds its own reference and its own
  ``release`` (one loan: one buffer). A twin nobody took is given back by close.
- A format ``_to_rgb`` must convert (anything but ``BGR888``) is copied by the conversion: the request goes
  back at once and the frame is not lent.
- ``close`` frees what lent frames read: ``picamera2.py`` ``close`` calls ``self.camera.release()`` and
  replaces the allocator (``del self.allocator``; ``self.allocator = DmaAllocator()``), so a mapping made
  after it fails (``DmaSync``: "failed to find buffer"), a reconfigure's ``DmaAllocator.cleanup`` unmaps
  every buffer not marked in use, and ``release`` then runs against the new allocator and a released camera's
  libcamera objects. (In 0.3.38 the old allocator stays alive through the requests' ``DmaSync`` objects and
  keeps in-use buffers mapped, but nothing in picamera2 promises that.) ``stop_`` leaves the allocator alone.
  So close stops the camera, waits up to :data:`LOAN_WAIT_S` for every loan, and if some are still out it
  logs a warning and leaves ``Picamera2.close`` to the last loan's return (``deferred_closes``): a leak, not a
  read of freed memory; a reopen meanwhile fails and the runner retries it.

Rates (why the sensor never changes rate in flight):

- The sensor runs at ``sensor_fps``, the highest rate the flight needs (``CameraConfig.sensor_fps``), from
  open to close, set once in the video configuration's ``controls``. :meth:`Picamera2Camera.set_fps` only
  changes how frames are *thinned*: a frame is delivered when its sensor time reaches the next due time
  (within half a sensor period); the others are released before anything is copied out of them. A rate
  change (the release edge) moves the due time to ``last delivered + new interval``, so the next sensor
  frame after the edge is delivered: the new rate holds from the first frame, at most one sensor period
  after the edge, whatever the ARMED rate. A still or a reopen cannot leave a wrong rate behind: there is
  none to restore.
- The cost is the sensor and ISP running at the flight rate while ARMED (the request round trip for every
  sensor frame, no copy of thinned frames; on the hardware path the V4L2 encoder encodes every frame). The
  exposure is bounded by the sensor frame duration, which suits a drop test (short exposures).
- A rate above ``sensor_fps`` (a caller outside the config) raises the sensor rate with ``set_controls``,
  which lands late, as above.

Stills come from the running video stream: the next sensor frame's main stream at the configured size (the
sensor mode in ``[cameras.controls]`` keeps the full field of view), marked ``still``. No mode switch, so the
video is never stopped: a mode switch would cost two reconfigurations (hundreds of milliseconds and, on a
Pi 4, an encoder restart) at the moment the drop test exists for. If that frame is also due for the video, the
next :meth:`capture` returns it again as a video frame (same pixels), so the video loses nothing. On the
hardware path the encoder sees every request anyway; the still is read from the YUV420 main stream of a
``capture_request`` made while recording.

Controls (``[cameras.controls]``, :class:`~camctl.board.config.CameraControls`), applied at every open:

- ``AfMode``/``LensPosition`` go into the video configuration's ``controls`` as ``AfMode`` (libcamera
  enum: manual 0, auto 1, continuous 2) and ``LensPosition`` (dioptres), so ``start_`` sends them with the
  first frame. The Raspberry Pi IPA advertises them only for a module with a focus lens (Camera Module 3); on
  another module they are skipped and named in ``unset_controls`` (``camctl doctor`` reports them).
- ``exposure_max_us``/``analogue_gain_max`` cap the AGC's exposure profile: libcamera has no "maximum
  exposure" control, so the sensor's tuning file (``load_tuning_file("<model>.json")``) is loaded and the
  ``shutter``/``gain`` lists of every ``rpi.agc`` exposure mode are clipped, then passed as
  ``Picamera2(tuning=...)`` (picamera2's own documented way to change the exposure profile).
- ``sensor_mode`` is passed as ``sensor={"output_size": ...}``: picamera2 scores the sensor's modes against
  it (``_make_libcamera_config``), so a full-field binned mode is chosen instead of a crop at video sizes.
  ``configure`` writes the mode chosen back into ``camera_configuration()["sensor"]``; it is
  ``sensor_mode_in_use``, and a mode other than the one asked for is named in ``unset_controls``.

Lores stream (``lores_size`` in the camera config; software path only):

- At open, the video configuration gets a second ISP output, ``lores={"format": "YUV420", "size": ...}``
  (on a Pi 4 the lores stream must be YUV; picamera2 rounds its size to even). After ``configure`` the real
  size and ``stride`` come from ``stream_configuration("lores")`` (libcamera may adjust both).
- With :meth:`Picamera2Camera.set_lores` on, capture reads ``make_array("lores")`` instead of ``"main"``:
  a copy, shaped ``(h * 3 // 2, stride)``, holding I420 planes one after the other: ``h`` rows of Y at
  ``stride`` bytes, then ``h/2`` rows of U and ``h/2`` of V at ``stride/2`` bytes (picamera2's own JPEG path
  for YUV420 splits it the same way), so the planes are views cropped to the size (:func:`split_i420`).
- The video colour space picamera2 picks (``Smpte170m`` below 1280x720, ``Rec709`` above) is limited range,
  while JPEG (JFIF) means full range: the planes are expanded with a 256-entry table on the way out (a
  fraction of a millisecond at lores sizes). The Rec709 matrix is not converted to BT.601: at 720p and up a
  lores frame's hues are off by a few percent.
- The main stream is still produced by the ISP (it cannot be switched off without a reconfigure); the
  saving is the copy out (``make_array``), the RGB->YUV conversion and the subsampling in the encoder.
- Stills are always from the main stream (at the configured size), never the lores one.
- The hardware (MJPEG) path configures no lores stream and ignores ``set_lores`` (returns False): the V4L2
  encoder encodes the main stream only, and its frames are JPEGs the runner cannot decimate.

Encoder (``encoder`` in the camera config):

- ``"software"``: frames come back as RGB arrays and the encoder pool makes the JPEGs (simplejpeg).
- ``"hardware"``: picamera2's V4L2 ``MJPEGEncoder`` (the ``bcm2835-codec`` on VC4 boards: Pi 4, CM4 and
  older) encodes a ``YUV420`` main stream while ``start_recording`` runs; each encoded frame is one
  complete JPEG and arrives through an ``Output`` subclass on picamera2's encoder thread, which puts
  ``(jpeg, timestamp_ns)`` on a bounded queue that :meth:`Picamera2Camera.capture` reads. Frames come back
  with ``jpeg`` set and ``image=None`` (the capture runner skips the encoder pool). If the encoder cannot be
  built (a Pi 5 has no hardware JPEG encoder) opening raises a CameraError.
- ``"auto"``: hardware where ``MJPEGEncoder()`` constructs *and* the size fits the codec (32 to 1920 pixels
  on each side: raspberrypi/linux ``drivers/staging/vc04_services/bcm2835-codec/bcm2835-v4l2-codec.c``,
  ``MAX_W_CODEC``/``MAX_H_CODEC`` for the encode node ``/dev/video11`` that picamera2 opens), else
  software; the choice and its reason are logged once per camera at INFO (a documented choice, not a silent
  fallback). The choice holds for the camera's life: if the hardware encoder later fails to construct, open
  raises instead of switching.

Hardware-path facts (picamera2 0.3.x, checked by the tests):

- The class is imported from ``picamera2.encoders.mjpeg_encoder`` explicitly: on non-VC4 platforms
  ``picamera2.encoders.MJPEGEncoder`` is an alias of the *software* ``LibavMjpegEncoder``, while the V4L2
  class's ``__init__`` raises ``RuntimeError("Hardware MJPEG not available on this platform")``.
- The ``timestamp`` an Output receives is in microseconds *relative* to the encoder's first frame
  (``Encoder._timestamp``: ``SensorTimestamp / 1000 - firsttimestamp``), so the absolute sensor time is
  ``(encoder.firsttimestamp + timestamp) * 1000`` ns, on ``CLOCK_MONOTONIC`` like the request path (with
  microsecond resolution).
- There is no JPEG quality setting: ``jpeg_quality`` maps onto a ``Quality`` bucket that picamera2 turns
  into a bitrate (``<= 40`` VERY_LOW, ``<= 60`` LOW, ``<= 80`` MEDIUM, ``<= 90`` HIGH, else VERY_HIGH;
  the default 85 is HIGH). It is fixed while recording, so per-phase ``quality`` settings do not apply.
- Encoded frames are thinned like requests (by their sensor time); ``seq`` keeps increasing across reopen. A
  frame the queue had to drop (the consumer fell ``QUEUE_FRAMES`` behind) or the sensor dropped leaves its
  slot empty, so a gap when it was due. ``hw_dropped`` counts queue drops over all opens.
- A frame's width and height come from its JPEG header (libcamera may adjust the requested size).
- Exposure, gain and frame duration are not available per MJPEG frame through an Output: frames carry
  the defaults (``exposure_us=0``, ``analogue_gain=1.0``) and the nominal frame duration.
- A mode switch while the encoder records would feed full-resolution still buffers to an encoder set up
  for the video size (``process_requests`` encodes every request whose stream it names): one more reason
  stills never switch mode.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np
import simplejpeg

from camctl.board.cameras.base import Camera
from camctl.common.frames import Frame
from camctl.exc import CameraDisconnected, CameraError, CameraTimeout

if TYPE_CHECKING:
    from camctl.board.config import CameraConfig, CameraControls

__all__ = ["AF_MODE_VALUES", "CODEC_SIZE", "CONTROLS_USED", "HW_FORMAT", "INSTALL_HINT", "LORES_FORMAT",
           "METADATA_USED", "PICAMERA2_API_USED", "QUEUE_FRAMES", "Picamera2Camera", "Thinner", "clip_tuning",
           "codec_fits", "pi_model", "split_i420"]

_log = logging.getLogger(__name__)

INSTALL_HINT = ("picamera2 is not installed: on Raspberry Pi OS run 'sudo apt install python3-picamera2' "
                "and create the venv with --system-site-packages")

# Every picamera2 name this module uses: class -> method -> keyword arguments used (``"attr:"`` prefix for
# plain attributes; ``"module:<sub>"`` keys list the names imported from ``picamera2.<sub>``).
# tests/test_cameras_picamera2.py checks this table against the picamera2 source AND checks this module's
# own source makes no call on a picamera2 object (and imports no picamera2 name) that the table omits.
PICAMERA2_API_USED: dict[str, dict[str, list[str]]] = {
    "module": {"Picamera2": [], "MappedArray": ["write"], "attr:TimeoutError": [], "attr:CancelledError": []},
    "module:encoders": {"Quality": []},
    "module:encoders.mjpeg_encoder": {"MJPEGEncoder": []},
    "module:outputs": {"Output": []},
    "Picamera2": {
        "global_camera_info": [],
        "load_tuning_file": [],
        "find_tuning_algo": [],
        "__init__": ["camera_num", "tuning"],
        "create_video_configuration": ["main", "lores", "buffer_count", "queue", "controls", "sensor"],
        "camera_controls": [],
        "configure": [],
        "camera_configuration": [],
        "stream_configuration": [],
        "start": [],
        "stop": [],
        "close": [],
        "set_controls": [],
        "capture_request": ["wait"],
        "cancel_all_and_flush": [],
        "start_recording": ["quality"],
        "stop_recording": [],
    },
    "CompletedRequest": {"make_array": [], "get_metadata": [], "acquire": [], "release": []},
    "MappedArray": {"__init__": ["write"], "__enter__": [], "__exit__": [], "array": []},
    "Job": {"get_result": ["timeout"]},
    "MJPEGEncoder": {"__init__": []},
    "Encoder": {"attr:firsttimestamp": []},
    "Quality": {"attr:VERY_LOW": [], "attr:LOW": [], "attr:MEDIUM": [], "attr:HIGH": [], "attr:VERY_HIGH": []},
    "Output": {"__init__": ["pts"], "outputframe": []},
}
CONTROLS_USED = ("FrameRate", "AfMode", "LensPosition")
AF_MODE_VALUES = {"manual": 0, "auto": 1, "continuous": 2}  # libcamera controls::AfModeEnum
# Metadata keys read from ``get_metadata()``; all optional (``.get`` with a fallback).
METADATA_USED = ("SensorTimestamp", "ExposureTime", "AnalogueGain", "FrameDuration")

MAIN_FORMAT = "BGR888"  # R, G, B bytes in memory (see the module docstring)
HW_FORMAT = "YUV420"  # what the V4L2 encoder reads with the least bandwidth (I420)
LORES_FORMAT = "YUV420"  # the only lores format a Pi 4 ISP gives; JPEG encodes it with no conversion
BUFFER_COUNT = 6  # picamera2's video default. They keep the ISP fed; with queue=False they hold nothing for a late
# consumer (it loses the frames completed meanwhile), and each is a frame of set_controls latency.
LEND_LIMIT = BUFFER_COUNT - 2  # requests lent out as frames at once: libcamera keeps >= 2 queued, so the sensor
# always has a buffer to fill and the ISP one to write while the app reads (beyond: a copy, as before)
LOAN_WAIT_S = 3.0  # how long close() waits for lent frames to come back before it leaves the camera open
QUEUE_FRAMES = 8  # encoded frames waiting for capture(); the oldest is dropped (a seq gap) when full
_MODEL_PATH = Path("/proc/device-tree/model")
CODEC_SIZE = (32, 1920)  # bcm2835-v4l2-codec.c: MIN_W/MIN_H 32, MAX_W_CODEC/MAX_H_CODEC 1920 (encode role)


Picamera2Source = ModuleType | Callable[[], ModuleType]
"""What ``picamera2=`` takes: the picamera2 module, or a function returning it (called at open)."""


def import_picamera2() -> ModuleType:
    """The installed picamera2 (the default ``picamera2=``); ImportError without it or libcamera."""
    import picamera2

    return picamera2


def _load_picamera2(camera: str, source: Picamera2Source) -> ModuleType:
    """The picamera2 module ``source`` gives, or CameraError with the install instructions."""
    if isinstance(source, ModuleType):
        return source
    try:
        return source()
    except ImportError as exc:
        raise CameraError(camera, INSTALL_HINT) from exc


def _submodule(package: ModuleType, dotted: str) -> ModuleType:
    """``package.<dotted>``: an attribute where the package has it already, else imported (a real
    package binds a submodule to its parent only once something imported it)."""
    for part in dotted.split("."):
        try:
            package = getattr(package, part)
        except AttributeError:
            package = importlib.import_module(f"{package.__name__}.{part}")
    return package


def _load_hardware(mod: ModuleType) -> tuple[Any, Any, Any]:
    """``(MJPEGEncoder, Quality, Output)`` from picamera2 (ImportError where its encoders cannot load).

    ``MJPEGEncoder`` comes from its own module: ``picamera2.encoders.MJPEGEncoder`` is the software
    ``LibavMjpegEncoder`` on platforms without the V4L2 codec.
    """
    encoders = _submodule(mod, "encoders")
    mjpeg_encoder = _submodule(mod, "encoders.mjpeg_encoder")
    outputs = _submodule(mod, "outputs")
    return mjpeg_encoder.MJPEGEncoder, encoders.Quality, outputs.Output


def _quality(Quality: Any, jpeg_quality: int) -> Any:
    """The picamera2 ``Quality`` bucket for a JPEG quality 1..100 (see the module docstring)."""
    if jpeg_quality <= 40:
        return Quality.VERY_LOW
    if jpeg_quality <= 60:
        return Quality.LOW
    if jpeg_quality <= 80:
        return Quality.MEDIUM
    if jpeg_quality <= 90:
        return Quality.HIGH
    return Quality.VERY_HIGH


def pi_model(path: Path = _MODEL_PATH) -> str:
    """The board model string from the device tree (``"Raspberry Pi 5 Model B Rev 1.0"``), or ``""``."""
    try:
        return path.read_bytes().rstrip(b"\0\n").decode("ascii", "replace")
    except OSError:
        return ""


def _to_rgb(array: np.ndarray, fmt: str) -> np.ndarray:
    """Pixels of a picamera2 ``make_array`` in format ``fmt`` as ``HxWx3`` RGB (a view when possible)."""
    if fmt == "BGR888":  # memory order R, G, B
        return array
    if fmt == "RGB888":  # memory order B, G, R
        return np.ascontiguousarray(array[..., ::-1])
    if fmt == "XBGR8888":  # R, G, B, 255
        return np.ascontiguousarray(array[..., :3])
    if fmt == "XRGB8888":  # B, G, R, 255
        return np.ascontiguousarray(array[..., 2::-1])
    raise ValueError(f"unsupported stream format {fmt!r}")


def split_i420(array: np.ndarray, size: tuple[int, int], stride: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The ``(Y, U, V)`` planes (views, padding cropped) of a picamera2 YUV420 ``make_array`` result.

    ``array`` is ``(h * 3 // 2, stride)`` uint8: Y is ``h`` rows of ``stride`` bytes, then U and V are ``h/2``
    rows of ``stride/2`` bytes each. ``size`` is ``(w, h)``, both even.
    """
    w, h = size
    if w % 2 or h % 2 or stride < w or stride % 2:
        raise ValueError(f"not an I420 layout: size {w}x{h}, stride {stride}")
    if array.dtype != np.uint8 or array.size < h * stride * 3 // 2:
        raise ValueError(f"I420 {w}x{h} stride {stride} needs {h * stride * 3 // 2} bytes, got array "
                         f"{array.shape} {array.dtype}")
    flat = array.reshape(-1)
    cs, ch = stride // 2, h // 2
    y = flat[: h * stride].reshape(h, stride)[:, :w]
    u = flat[h * stride: h * stride + ch * cs].reshape(ch, cs)[:, : w // 2]
    v = flat[h * stride + ch * cs: h * stride + 2 * ch * cs].reshape(ch, cs)[:, : w // 2]
    return y, u, v


def _range_lut(lo: int, hi: int, mid: int | None) -> np.ndarray:
    x = np.arange(256, dtype=np.float64)
    out = (x - lo) * 255.0 / (hi - lo) if mid is None else (x - mid) * 255.0 / (hi - lo) + 128.0
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


_LUMA_FULL = _range_lut(16, 235, None)  # limited (video) range -> full (JFIF) range
_CHROMA_FULL = _range_lut(16, 240, 128)


def _full_range(planes: tuple[np.ndarray, np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Limited-range I420 planes -> new contiguous full-range planes (what JPEG decoders assume)."""
    y, u, v = planes
    return np.take(_LUMA_FULL, y), np.take(_CHROMA_FULL, u), np.take(_CHROMA_FULL, v)


class _JpegQueue:
    """Encoded frames from picamera2's encoder thread to :meth:`Picamera2Camera.capture`.

    Bounded; when full the oldest frame is dropped (``dropped``), and since ``seq`` is given on arrival
    the dropped frame leaves a gap in the numbers the consumer sees.
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
    """A picamera2 ``Output`` that hands each encoded frame, with its absolute time, to ``hand_off``."""

    class _JpegHandOff(Output):  # type: ignore[misc,valid-type]
        def outputframe(self, frame, keyframe=True, timestamp=None, packet=None, audio=False):
            # Runs on picamera2's encoder thread: it must never raise (that would end the encoder thread).
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


def codec_fits(size: tuple[int, int]) -> bool:
    """Whether the bcm2835-codec encoder takes frames of ``size`` (see :data:`CODEC_SIZE`)."""
    lo, hi = CODEC_SIZE
    return all(lo <= v <= hi for v in size)


def clip_tuning(tuning: dict[str, Any], algo: dict[str, Any], exposure_max_us: int | None,
                gain_max: float | None) -> dict[str, Any]:
    """Clip every exposure mode of the ``rpi.agc`` parameters ``algo`` (found in ``tuning``) in place.

    The AGC walks the ``shutter``/``gain`` lists of its exposure mode; clipped lists stay non-decreasing, so it
    never chooses more than the caps. Tunings from libcamera 0.2 on keep the modes under ``channels``.
    """
    for channel in algo.get("channels") or [algo]:
        for mode in channel.get("exposure_modes", {}).values():
            if exposure_max_us is not None:
                mode["shutter"] = [min(int(v), exposure_max_us) for v in mode["shutter"]]
            if gain_max is not None:
                mode["gain"] = [min(float(v), gain_max) for v in mode["gain"]]
    return tuning


class _Loans:
    """The requests of one ``Picamera2`` object lent out as frames (``Frame.release``), and its close.

    At most ``limit`` requests are lent at once; a request already lent lends again without counting (a still
    and its video twin share one buffer). :meth:`wait` blocks until every loan is back; a close that cannot
    wait any longer is :meth:`defer`-red to the last loan's return. Thread-safe: loans come back on encoder
    threads.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._cond = threading.Condition()
        self._held: dict[int, int] = {}  # id(request) -> frames lent from it
        self._deferred: Callable[[], None] | None = None

    @property
    def requests(self) -> int:
        """Requests (buffers) lent out now."""
        with self._cond:
            return len(self._held)

    def take(self, key: int) -> bool:
        with self._cond:
            if key in self._held:
                self._held[key] += 1
                return True
            if len(self._held) >= self.limit or self._deferred is not None:
                return False
            self._held[key] = 1
            return True

    def give(self, key: int) -> None:
        with self._cond:
            self._held[key] -= 1
            if self._held[key]:
                return
            del self._held[key]
            self._cond.notify_all()
            run = None
            if not self._held:
                run, self._deferred = self._deferred, None
        if run is not None:
            run()

    def wait(self, timeout_s: float) -> bool:
        """Wait until no request is lent; False if some still are after ``timeout_s``."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._held, timeout_s)

    def defer(self, close: Callable[[], None]) -> bool:
        """Run ``close`` when the last loan comes back (now if none is out); True if it was deferred."""
        with self._cond:
            if self._held:
                self._deferred = close
                return True
        close()
        return False


class Thinner:
    """Which sensor frames are delivered at a rate below the sensor's, and their ``seq``.

    A frame is kept when its sensor time reaches the due time (within half a sensor period); the due time
    then moves on by whole intervals, and every whole interval it skipped (no frame came for that slot: the
    sensor or a late consumer lost it) is a gap in ``seq``. :meth:`set_fps` pulls the due time in to
    ``last kept + new interval``, so a faster rate starts at the next sensor frame. Thread-safe.

    Example (a 30 fps sensor delivering 10 fps)::

        >>> t = Thinner(10.0, 30.0)
        >>> [t.keep(i * 33_333_333) for i in range(4)]
        [0, None, None, 1]
    """

    def __init__(self, fps: float, sensor_fps: float, first_seq: int = 0) -> None:
        self._lock = threading.Lock()
        self.next_seq = first_seq
        self._slack_ns = int(0.5e9 / sensor_fps)
        self._interval_ns = int(1e9 / fps)
        self._due_ns: int | None = None
        self._last_ns: int | None = None
        self.thinned = 0

    def set_fps(self, fps: float, sensor_fps: float) -> None:
        with self._lock:
            self._interval_ns = int(1e9 / fps)
            self._slack_ns = int(0.5e9 / sensor_fps)
            if self._last_ns is not None and self._due_ns is not None:
                self._due_ns = min(self._due_ns, self._last_ns + self._interval_ns)

    def restart(self) -> None:
        """A new stream (reopen): the next frame is delivered, with no gap counted before it."""
        with self._lock:
            self._due_ns = self._last_ns = None

    def keep(self, timestamp_ns: int, *, peek: bool = False) -> int | None:
        """The ``seq`` for a frame at ``timestamp_ns`` if it is delivered, else None (thinned).

        ``peek`` answers without taking the slot."""
        with self._lock:
            due, interval = self._due_ns, self._interval_ns
            if due is None:
                missed, due = 0, timestamp_ns
            elif timestamp_ns < due - self._slack_ns:
                if not peek:
                    self.thinned += 1
                return None
            else:
                missed = max(0, (timestamp_ns - due + self._slack_ns) // interval)
            seq = self.next_seq + missed
            if not peek:
                self.next_seq = seq + 1
                self._due_ns = due + (missed + 1) * interval
                self._last_ns = timestamp_ns
            return seq


class Picamera2Camera(Camera):
    """A Raspberry Pi camera (``index`` as listed by ``rpicam-hello --list-cameras``).

    ``encoder`` is ``"software"``, ``"hardware"`` or ``"auto"`` (see the module docstring);
    ``jpeg_quality`` only matters for the hardware encoder. ``sensor_fps`` is the rate the sensor runs at
    (default ``fps``; frames are thinned to :attr:`fps`). ``controls`` are the ``[cameras.controls]``.
    ``model_path`` is the device-tree model file (tests point it elsewhere). ``picamera2`` is the
    module to drive, or a function returning it (default: :func:`import_picamera2`, at open).
    After :meth:`open`,
    ``encoder_in_use`` says which path runs and ``unset_controls`` lists what could not be set.

    Example (on a Pi)::

        with Picamera2Camera("down", index=0, size=(1920, 1080), fps=2, sensor_fps=30) as cam:
            frame = cam.capture(timeout_s=1.0)
            cam.set_fps(30)  # the next sensor frame is delivered
    """

    def __init__(self, name: str, *, index: int = 0, size: tuple[int, int] = (1920, 1080),
                 fps: float = 30.0, encoder: str = "auto", jpeg_quality: int = 85,
                 model_path: Path = _MODEL_PATH, lores_size: tuple[int, int] | None = None,
                 sensor_fps: float | None = None, controls: CameraControls | None = None,
                 picamera2: Picamera2Source = import_picamera2) -> None:
        if fps <= 0:
            raise ValueError(f"fps must be > 0, got {fps}")
        if encoder not in ("auto", "hardware", "software"):
            raise CameraError(name, f"encoder must be 'auto', 'hardware' or 'software', got {encoder!r}")
        if not 1 <= int(jpeg_quality) <= 100:
            raise CameraError(name, f"jpeg_quality must be 1..100, got {jpeg_quality!r}")
        super().__init__(name, size=size, fps=fps)
        self.index = int(index)
        self.encoder = encoder
        self.jpeg_quality = int(jpeg_quality)
        self.encoder_in_use = ""  # "hardware" or "software" once resolved ("auto" resolves at first open)
        self.sensor_fps = max(float(sensor_fps or fps), float(fps))
        self.controls = controls
        self.unset_controls: list[str] = []  # what the last open could not set, one line each
        self.sensor_mode_in_use: tuple[int, int] | None = None  # the sensor output size the last open got
        self._model_path = model_path
        self.lores_size = None if lores_size is None else (int(lores_size[0]), int(lores_size[1]))
        self._lores = False  # deliver the lores stream (set by set_lores; a bool write is thread-safe)
        self._lores_stream: tuple[tuple[int, int], int] | None = None  # ((w, h), stride) once configured
        self._source = picamera2
        self._mod: ModuleType | None = None
        self._picam2: Any = None
        self._format = MAIN_FORMAT
        self._thin = Thinner(self._fps, self.sensor_fps)
        self._twin: Frame | None = None  # a still's frame, due for the video too: the next capture() returns it
        # hardware path
        self._hw_encoder: Any = None
        self._hw_output: Any = None
        self._hw_quality: Any = None
        self._jpegs: _JpegQueue | None = None
        self._recording = False
        self.hw_dropped = 0  # encoded frames dropped because capture() fell behind (all opens)
        # lent frames (software path, main stream): see "Lent frames" in the module docstring
        self.lend_limit = LEND_LIMIT
        self.loan_wait_s = LOAN_WAIT_S
        self._loans = _Loans(self.lend_limit)
        self.frames_lent = self.frames_copied = 0  # main-stream frames handed out as views / as copies (all opens)
        self.deferred_closes = 0  # closes left to the last lent frame's return (it did not come back in time)

    @classmethod
    def from_config(cls, cfg: CameraConfig, **kwargs: Any) -> Picamera2Camera:
        """Build (closed) from a camera config: delivering the ARMED rate, the sensor at the flight's highest."""
        kwargs.setdefault("lores_size", cfg.lores_size)
        kwargs.setdefault("sensor_fps", cfg.sensor_fps())
        kwargs.setdefault("controls", cfg.controls)
        return cls(cfg.name, index=cfg.index, size=cfg.size, fps=cfg.fps_for("ARMED"), encoder=cfg.encoder,
                   jpeg_quality=cfg.jpeg_quality, **kwargs)

    def __repr__(self) -> str:
        state = "closed" if self.closed else \
            f"open, {self._fps:g} of {self.sensor_fps:g} fps, next seq {self._thin.next_seq}"
        enc = self.encoder_in_use or self.encoder
        return (f"<Picamera2Camera {self.name!r} index={self.index} {self.size[0]}x{self.size[1]} "
                f"encoder={enc} {state}>")

    # -- lifecycle -----------------------------------------------------------------------------------
    def _hardware_encoder(self, mod: ModuleType) -> tuple[Any, Any, Any] | str:
        """``(encoder, Quality, Output)`` for the hardware path, or why it is unavailable."""
        if not codec_fits(self.size):
            lo, hi = CODEC_SIZE
            return (f"{self.size[0]}x{self.size[1]} is outside the bcm2835-codec encoder's {lo}..{hi} pixels "
                    "per side")
        try:
            MJPEGEncoder, Quality, Output = _load_hardware(mod)
            return MJPEGEncoder(), Quality, Output
        except Exception as exc:  # RuntimeError off VC4; ImportError where picamera2's encoders cannot load
            model = pi_model(self._model_path)
            if "Raspberry Pi 5" in model:
                return f"this board ({model}) has no hardware JPEG encoder ({exc})"
            return f"picamera2's V4L2 MJPEGEncoder is unavailable: {exc!r}"

    def _resolve_encoder(self, mod: ModuleType) -> tuple[Any, Any, Any] | None:
        """The hardware encoder parts if this open uses the hardware path, else None (software)."""
        if self.encoder == "software" or self.encoder_in_use == "software":
            self.encoder_in_use = "software"
            return None
        hw = self._hardware_encoder(mod)
        if isinstance(hw, str):
            if self.encoder == "hardware":
                raise CameraError(self.name, f"encoder 'hardware' requested but {hw}; "
                                             "use encoder = 'software' or 'auto'")
            if self.encoder_in_use == "hardware":  # no switch of encoder in the middle of a flight
                raise CameraError(self.name, f"encoder 'auto' chose hardware at the first open but now {hw}")
            _log.info("camera %r: encoder 'auto' uses software JPEG (simplejpeg): %s", self.name, hw)
            self.encoder_in_use = "software"
            return None
        if self.encoder == "auto" and not self.encoder_in_use:
            _log.info("camera %r: encoder 'auto' uses the hardware JPEG encoder (picamera2 V4L2 MJPEGEncoder)",
                      self.name)
        self.encoder_in_use = "hardware"
        return hw

    def _tuning(self, mod: ModuleType, cameras: list[dict[str, Any]]) -> dict[str, Any] | None:
        """The sensor's tuning with the AGC capped, or None (no cap asked, or it cannot be loaded: noted)."""
        c = self.controls
        if c is None or (c.exposure_max_us is None and c.analogue_gain_max is None):
            return None
        model = str(cameras[self.index].get("Model", ""))
        try:
            tuning = mod.Picamera2.load_tuning_file(f"{model}.json")
            algo = mod.Picamera2.find_tuning_algo(tuning, "rpi.agc")
            return clip_tuning(tuning, algo, c.exposure_max_us, c.analogue_gain_max)
        except Exception as exc:
            self.unset_controls.append(f"exposure_max_us/analogue_gain_max: no tuning for {model!r} ({exc})")
            return None

    def _video_controls(self, picam2: Any) -> dict[str, Any]:
        """The configuration's controls: the sensor rate, and the lens where the camera has one."""
        controls: dict[str, Any] = {"FrameRate": self.sensor_fps}
        c = self.controls
        if c is None:
            return controls
        wanted: dict[str, Any] = {}
        if c.af_mode is not None:
            wanted["AfMode"] = AF_MODE_VALUES[c.af_mode]
        if c.lens_position is not None:
            wanted.setdefault("AfMode", AF_MODE_VALUES["manual"])
            wanted["LensPosition"] = float(c.lens_position)
        advertised = picam2.camera_controls
        for name, value in wanted.items():
            if name in advertised:
                controls[name] = value
            else:
                self.unset_controls.append(f"{name}: not advertised by camera {self.index} (no focus lens)")
        return controls

    def _open_backend(self) -> None:
        mod = _load_picamera2(self.name, self._source)
        try:
            cameras = mod.Picamera2.global_camera_info()
        except Exception as exc:
            raise CameraError(self.name, f"cannot list cameras: {exc!r}") from exc
        if self.index >= len(cameras):
            found = ", ".join(f"{i}: {c.get('Model', '?')}" for i, c in enumerate(cameras)) or "none"
            raise CameraDisconnected(self.name, f"no camera at index {self.index} (found {found}); check the "
                                                "ribbon cable and 'rpicam-hello --list-cameras'")
        hw = self._resolve_encoder(mod)
        self.unset_controls = []
        picam2 = None
        try:
            tuning = self._tuning(mod, cameras)
            picam2 = mod.Picamera2(camera_num=self.index, tuning=tuning)
            fmt = MAIN_FORMAT if hw is None else HW_FORMAT
            lores = None if hw is not None or self.lores_size is None else \
                {"format": LORES_FORMAT, "size": self.lores_size}
            mode = None if self.controls is None else self.controls.sensor_mode
            config = picam2.create_video_configuration(
                main={"format": fmt, "size": self.size}, lores=lores, buffer_count=BUFFER_COUNT, queue=False,
                controls=self._video_controls(picam2), sensor=None if mode is None else {"output_size": mode})
            picam2.configure(config)
            self._note_sensor_mode(picam2, mode)
            if lores is not None:
                stream = picam2.stream_configuration("lores")
                w, h = stream["size"]
                self._lores_stream = ((int(w), int(h)), int(stream["stride"]))
            if hw is None:
                picam2.start()
            else:
                self._start_hardware(picam2, hw)
        except Exception as exc:
            if picam2 is not None:
                self._close_quietly(picam2)
            self._recording = False
            self._jpegs = self._hw_encoder = self._hw_output = None
            self._lores_stream = None
            raise CameraError(self.name, f"cannot start camera {self.index}: {exc!r}") from exc
        for line in self.unset_controls:
            _log.warning("camera %r: %s", self.name, line)
        self._mod = mod
        self._picam2 = picam2
        self._loans = _Loans(self.lend_limit)
        self._twin = None
        self._thin.restart()

    def _note_sensor_mode(self, picam2: Any, asked: tuple[int, int] | None) -> None:
        """The sensor mode ``configure`` chose (picamera2 writes libcamera's choice back)."""
        try:
            w, h = picam2.camera_configuration()["sensor"]["output_size"]
            self.sensor_mode_in_use = (int(w), int(h))
        except Exception:  # not a Raspberry Pi camera (no sensor configuration): nothing to report
            self.sensor_mode_in_use = None
            return
        if asked is not None and self.sensor_mode_in_use != tuple(asked):
            self.unset_controls.append(f"sensor_mode: {asked[0]}x{asked[1]} asked, the sensor has no such mode and "
                                       f"runs {w}x{h}")

    def _start_hardware(self, picam2: Any, hw: tuple[Any, Any, Any]) -> None:
        encoder, Quality, Output = hw
        jpegs = _JpegQueue(QUEUE_FRAMES, 0)
        self._hw_encoder, self._jpegs = encoder, jpegs
        self._hw_output = _queue_output(Output, encoder, jpegs.put)
        self._hw_quality = _quality(Quality, self.jpeg_quality)
        self._recording = True  # set first: a failed start must still be stopped on close
        picam2.start_recording(encoder, self._hw_output, quality=self._hw_quality)

    def _close_after_loans(self, picam2: Any, loans: _Loans) -> None:
        """Close ``picam2`` once no lent frame reads its buffers any more.

        ``Picamera2.close`` releases the libcamera camera and drops the allocator that holds the buffers
        (``picamera2.py`` ``close``: ``self.camera.release()``, ``del self.allocator``), which an encoder
        thread may still be reading through a lent frame. ``stop`` first is safe (``stop_`` stops libcamera and
        releases only requests picamera2 itself holds; the allocator keeps every buffer mapped), then wait up
        to ``loan_wait_s``; if frames are still out, leave the camera open (a leak, not a crash) and close it
        when the last one comes back (a reopen meanwhile fails and is retried).
        """
        if loans.requests:
            if not self._recording:
                self._quietly(picam2.stop)
            if not loans.wait(self.loan_wait_s):
                recording = self._recording
                if loans.defer(lambda: self._close_quietly(picam2, recording)):
                    self.deferred_closes += 1
                    _log.warning("camera %r: %d lent frame(s) not given back within %g s; camera %d stays open "
                                 "until they are", self.name, loans.requests, self.loan_wait_s, self.index)
                return
        self._close_quietly(picam2)

    def _close_quietly(self, picam2: Any, recording: bool | None = None) -> None:
        recording = self._recording if recording is None else recording
        steps = (picam2.stop_recording, picam2.close) if recording else (picam2.stop, picam2.close)
        for step in steps:
            self._quietly(step)

    @staticmethod
    def _quietly(step: Callable[[], Any]) -> None:
        try:
            step()
        except Exception as exc:  # closing must always complete
            _log.warning("picamera2 %s failed while closing: %r", step.__name__, exc)

    def _close_backend(self) -> None:
        picam2, self._picam2 = self._picam2, None
        twin, self._twin = self._twin, None
        if twin is not None and twin.release is not None:  # a lent frame nobody will take now
            twin.release()
        if picam2 is not None:
            self._close_after_loans(picam2, self._loans)
        self._recording = False
        jpegs, self._jpegs = self._jpegs, None
        if jpegs is not None:
            self.hw_dropped += jpegs.dropped
        self._hw_encoder = self._hw_output = None
        self._lores_stream = None
        self._twin = None

    # -- lores stream --------------------------------------------------------------------------------
    @property
    def supports_lores(self) -> bool:
        """A lores size is configured and the software path runs (or may run: before an 'auto' open)."""
        return self.lores_size is not None and self.encoder_in_use != "hardware" and self.encoder != "hardware"

    def set_lores(self, enabled: bool) -> bool:
        """Read the lores stream (``enabled``) or the main one from the next frame on; False where there is no
        lores stream (none configured, or the hardware path)."""
        self._lores = bool(enabled)
        return self.supports_lores

    # -- rate ----------------------------------------------------------------------------------------
    @property
    def thinned(self) -> int:
        """Sensor frames not delivered because the rate asked for is below the sensor's (all opens)."""
        return self._thin.thinned

    def set_fps(self, fps: float) -> None:
        """Deliver ``fps`` from the next due frame (thread-safe; the sensor keeps its rate, see the module
        docstring). Above ``sensor_fps`` the sensor itself is sped up with ``set_controls``, which lands late."""
        super().set_fps(fps)
        if self._fps > self.sensor_fps:
            self.sensor_fps = self._fps
            if self._picam2 is not None:
                try:
                    self._picam2.set_controls({"FrameRate": self.sensor_fps})
                except Exception as exc:
                    raise CameraError(self.name, f"cannot set FrameRate to {fps:g}: {exc!r}") from exc
        self._thin.set_fps(self._fps, self.sensor_fps)

    # -- frames --------------------------------------------------------------------------------------
    def _wait(self, job: Any, timeout_s: float, what: str, asked_s: float) -> Any:
        """The request a Job produced within ``timeout_s``, or CameraTimeout (leaving nothing queued); the
        message names ``asked_s``, the caller's whole timeout."""
        mod = self._mod
        assert mod is not None
        try:
            return job.get_result(timeout=timeout_s)
        except mod.TimeoutError:
            pass
        except mod.CancelledError as exc:
            raise CameraError(self.name, f"{what} was cancelled") from exc
        except Exception as exc:
            raise self._failure(exc, what) from exc
        # Timed out: the job is still queued and would take (and leak) the next request. Cancel it; if it
        # completed in the meantime, give its request back.
        try:
            self._picam2.cancel_all_and_flush()
            late = job.get_result(timeout=1.0)
        except Exception:  # cancelled (the usual case), or never finished
            late = None
        if late is not None:
            late.release()
        raise CameraTimeout(self.name, f"no frame within {asked_s:g} s ({what}) from camera {self.index}; "
                                       "a CSI camera that stops delivering stays listed: check its cable")

    def _listed(self) -> bool:
        try:
            return self.index < len(self._mod.Picamera2.global_camera_info())  # type: ignore[union-attr]
        except Exception:
            return False

    def _failure(self, exc: BaseException, what: str) -> CameraError:
        """Map a libcamera/picamera2 failure: CameraDisconnected if the camera is no longer listed (a USB
        camera can leave the CameraManager's list; a CSI one never does)."""
        if not self._listed():
            return CameraDisconnected(self.name, f"camera {self.index} disappeared during {what}: {exc!r}")
        return CameraError(self.name, f"{what} failed: {exc!r}")

    def _frame_from(self, request: Any, seq: int, meta: dict[str, Any], still: bool) -> Frame:
        lores = self._lores_stream if self._lores and not still else None
        release = None  # lores planes and the hardware path's stills are small copies (make_array)
        if lores is not None:
            (width, height), stride = lores
            image = None
            planes = _full_range(split_i420(request.make_array("lores"), (width, height), stride))
        elif self._jpegs is not None:  # hardware path: the main stream is YUV420 (a still read while recording)
            stream = self._picam2.stream_configuration("main")
            (width, height), stride = stream["size"], int(stream.get("stride") or stream["size"][0])
            image = None
            planes = _full_range(split_i420(request.make_array("main"), (int(width), int(height)), stride))
        else:
            image, release = self._main_image(request)
            planes = None
            height, width = int(image.shape[0]), int(image.shape[1])
        return Frame(camera=self.name, seq=seq, timestamp_ns=self._timestamp(meta), image=image, yuv420=planes,
                     width=int(width), height=int(height),
                     exposure_us=int(meta.get("ExposureTime", 0)),
                     analogue_gain=float(meta.get("AnalogueGain", 1.0)),
                     frame_duration_us=int(meta.get("FrameDuration", round(1e6 / self.sensor_fps))), still=still,
                     release=release)

    def _main_image(self, request: Any) -> tuple[np.ndarray, Callable[[], None] | None]:
        """The main stream as RGB: lent (a view of the request's buffer and its one-shot ``release``) while
        fewer than ``lend_limit`` requests are lent, else a copy (``make_array``) and ``None``."""
        lent = self._lend(request)
        if lent is not None:
            return lent
        self.frames_copied += 1
        return _to_rgb(request.make_array("main"), self._format), None

    def _lend(self, request: Any) -> tuple[np.ndarray, Callable[[], None] | None] | None:
        """Map the request's main buffer as picamera2's own JpegEncoder does (``encoders/jpeg_encoder.py``
        ``encode_func``: ``with MappedArray(request, name)``, the request held with ``request.acquire()`` in
        ``encoders/multi_encoder.py`` ``_encode`` and released after the encode in ``do_encode``).
        ``MappedArray.array`` is the buffer itself (``request.py``: ``_make_array_shared`` "never makes a
        copy"). None when no loan is to spare; a format ``_to_rgb`` must convert comes back as a copy with
        the request given back at once (``release`` None)."""
        loans, key = self._loans, id(request)
        if not loans.take(key):
            return None
        mapped = None
        try:
            request.acquire()  # this frame's own reference: the capture path releases its one as always
            try:
                mapped = self._mod.MappedArray(request, "main", write=False)  # type: ignore[union-attr]
                mapped.__enter__()
            except BaseException:
                request.release()
                raise
            try:
                view = mapped.array
                image = _to_rgb(view, self._format)
            except BaseException:
                mapped.__exit__(None, None, None)
                request.release()
                raise
        except BaseException:
            loans.give(key)
            raise
        given = threading.Lock()

        def release() -> None:
            if not given.acquire(blocking=False):
                return  # given back already: never a second request.release()
            try:
                mapped.__exit__(None, None, None)
            finally:
                try:
                    request.release()
                finally:
                    loans.give(key)

        if not np.may_share_memory(image, view):  # converted: a copy already, nothing to lend
            del view
            release()
            self.frames_copied += 1
            return image, None
        del view
        image = image.view()
        image.flags.writeable = False  # the camera's buffer: read it, never write it
        self.frames_lent += 1
        return image, release

    @property
    def lent(self) -> int:
        """Requests (capture buffers) lent out as frames now."""
        return self._loans.requests

    @staticmethod
    def _timestamp(meta: dict[str, Any]) -> int:
        return int(meta.get("SensorTimestamp") or time.monotonic_ns())

    def _request(self, deadline: float, timeout_s: float, what: str) -> Any:
        """The next completed request (the next frame to complete: ``queue=False``), before ``deadline``."""
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise CameraTimeout(self.name, f"no frame due within {timeout_s:g} s ({what}) from camera "
                                           f"{self.index}")
        try:
            job = self._picam2.capture_request(wait=False)
        except Exception as exc:
            raise self._failure(exc, "capture_request") from exc
        return self._wait(job, remaining, what, timeout_s)

    def capture(self, timeout_s: float = 1.0) -> Frame:
        """The next frame due at the current rate: RGB or lores I420 (software path) or a JPEG (hardware path);
        CameraTimeout if none in time."""
        if self._picam2 is None:
            raise CameraError(self.name, "capture() on a closed camera")
        twin, self._twin = self._twin, None
        if twin is not None:
            return twin
        deadline = time.monotonic() + timeout_s
        if self._jpegs is not None:
            return self._capture_jpeg(self._jpegs, deadline, timeout_s)
        while True:
            request = self._request(deadline, timeout_s, "capture_request")
            with self._reading(request, "capture_request"):
                meta = request.get_metadata()
                seq = self._thin.keep(self._timestamp(meta))
                if seq is not None:
                    return self._frame_from(request, seq, meta, still=False)

    @contextlib.contextmanager
    def _reading(self, request: Any, what: str) -> Iterator[None]:
        """Read a completed request inside the block: failures mapped to camera errors, the request always
        given back."""
        try:
            yield
        except CameraError:
            raise
        except Exception as exc:
            raise self._failure(exc, f"reading the {what} request") from exc
        finally:
            request.release()

    def _capture_jpeg(self, jpegs: _JpegQueue, deadline: float, timeout_s: float) -> Frame:
        while True:
            try:
                _, timestamp_ns, jpeg = jpegs.get(max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                if not self._recording:
                    raise CameraError(self.name, "not recording (a start after a failure is due)") from None
                if not self._listed():
                    raise CameraDisconnected(self.name, f"camera {self.index} disappeared (no MJPEG frame "
                                                        f"within {timeout_s:g} s)") from None
                raise CameraTimeout(self.name, f"no MJPEG frame within {timeout_s:g} s from camera "
                                               f"{self.index}") from None
            seq = self._thin.keep(timestamp_ns)
            if seq is not None:
                break
        try:  # the size the codec really encoded (libcamera may align the stream); a header parse only
            height, width = simplejpeg.decode_jpeg_header(jpeg)[:2]
        except Exception:
            width, height = self.size
        return Frame(camera=self.name, seq=seq, timestamp_ns=timestamp_ns, jpeg=jpeg, width=int(width),
                     height=int(height), frame_duration_us=round(1e6 / self.sensor_fps))

    def capture_still(self, timeout_s: float = 2.0) -> Frame:
        """The next sensor frame's main stream, marked ``still``, from the running video (no mode switch).

        If that frame is due for the video too, the next :meth:`capture` returns it as a video frame (software
        path; the hardware encoder has it anyway). The still comes back as RGB (software path) or full-range
        I420 planes (hardware path) for the encoder pool.
        """
        if self._picam2 is None:
            raise CameraError(self.name, "capture_still() on a closed camera")
        request = self._request(time.monotonic() + timeout_s, timeout_s, "still capture")
        with self._reading(request, "still capture"):
            meta = request.get_metadata()
            hardware = self._jpegs is not None
            video_seq = None if hardware else self._thin.keep(self._timestamp(meta))
            lores, self._lores = self._lores, False
            try:
                still = self._frame_from(request, self._thin.next_seq if video_seq is None else video_seq, meta,
                                         still=True)
            finally:
                self._lores = lores
            if video_seq is not None:  # the video's frame of this slot: the same pixels (or its lores stream)
                # lent, the twin takes its own reference and its own release (one buffer: no second loan)
                if (lores and self._lores_stream is not None) or still.release is not None:
                    try:
                        self._twin = self._frame_from(request, video_seq, meta, still=False)
                    except BaseException:
                        if still.release is not None:  # nobody will get the still: give its loan back
                            still.release()
                        raise
                else:
                    self._twin = dataclasses.replace(still, still=False)
        return still
