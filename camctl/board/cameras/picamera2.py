"""The ``picamera2`` camera backend: real Raspberry Pi cameras through libcamera's Python binding.

:class:`Picamera2Camera` owns one ``Picamera2`` object: it checks the camera index exists,
configures a video stream at the configured size and rate, pulls completed requests with a bounded
wait, lends the main stream's buffer as the frame (or copies the pixels out when no buffer is to
spare) and always gives the request back, and maps every failure to a camctl camera error
(timeout, disconnect, anything else) so the capture thread can close and reopen it. The picamera2
module is passed in (``picamera2=``) or imported at open (:func:`import_picamera2`), so this module
imports where libcamera is absent. Its parts are the ``picamera2_*`` modules beside it.

docs/cameras.md, section "picamera2", has the facts it relies on (sensor timestamps, stills from
the running video stream or by a mode switch, the lores stream) and what each part owns.
"""

from __future__ import annotations

import dataclasses
import logging
import queue
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np

from camctl.board.cameras.base import Camera
from camctl.board.cameras.picamera2_controls import (
    AF_MODE_VALUES,
    CONTROLS_USED,
    METADATA_USED,
    TUNINGS,
    clip_tuning,
    sensor_mode,
    video_controls,
)
from camctl.board.cameras.picamera2_formats import (
    LORES_FORMAT,
    MAIN_FORMAT,
    full_range,
    split_i420,
    to_rgb,
)
from camctl.board.cameras.picamera2_hardware import (
    CODEC_SIZE,
    HW_FORMAT,
    MODEL_PATH,
    QUEUE_FRAMES,
    HardwareParts,
    Recording,
    codec_fits,
    jpeg_size,
    pi_model,
    resolve_encoder,
)
from camctl.board.cameras.picamera2_requests import (
    BUFFER_COUNT,
    LEND_LIMIT,
    LOAN_WAIT_S,
    QUEUE,
    Loans,
    Requests,
    close_after_loans,
    close_quietly,
    lend,
)
from camctl.board.cameras.picamera2_thinner import Thinner
from camctl.common.frames import Frame
from camctl.exc import CameraDisconnected, CameraError, CameraTimeout

if TYPE_CHECKING:
    from camctl.board.config import CameraConfig, CameraControls

__all__ = ["AF_MODE_VALUES", "BUFFER_COUNT", "CODEC_SIZE", "CONTROLS_USED", "HW_FORMAT",
           "INSTALL_HINT", "LEND_LIMIT", "LOAN_WAIT_S", "LORES_FORMAT", "MAIN_FORMAT",
           "METADATA_USED", "PICAMERA2_API_USED", "QUEUE_FRAMES", "Picamera2Camera",
           "Picamera2Source", "Thinner", "clip_tuning", "codec_fits", "import_picamera2",
           "pi_model", "split_i420"]

_log = logging.getLogger(__name__)

INSTALL_HINT = ("picamera2 is not installed: on Raspberry Pi OS run "
                "'sudo apt install python3-picamera2' and create the venv with "
                "--system-site-packages")

# Every picamera2 name the backend (this module and its picamera2_*.py parts) uses: class -> method
# -> keyword arguments used (``"attr:"`` prefix for plain attributes; ``"module:<sub>"`` keys list
# the names read from ``picamera2.<sub>``). tests/test_cameras_picamera2.py checks this table
# against the picamera2 source AND checks the backend's source makes no call on a picamera2 object
# (and imports no picamera2 name) that the table omits.
PICAMERA2_API_USED: dict[str, dict[str, list[str]]] = {
    "module": {"Picamera2": [], "MappedArray": ["write"], "attr:TimeoutError": [],
               "attr:CancelledError": []},
    "module:encoders": {"Quality": []},
    "module:encoders.mjpeg_encoder": {"MJPEGEncoder": []},
    "module:outputs": {"Output": []},
    "Picamera2": {
        "attr:_cm": [],
        "global_camera_info": [],
        "load_tuning_file": [],
        "find_tuning_algo": [],
        "__init__": ["camera_num", "tuning"],
        "attr:sensor_resolution": [],
        "create_video_configuration": ["main", "lores", "raw", "buffer_count", "queue",
                                       "controls", "sensor"],
        "create_still_configuration": ["main", "raw", "buffer_count", "controls"],
        "switch_mode_and_capture_request": ["wait"],
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
    "CameraManager": {"attr:cameras": [], "reset": []},
    "CompletedRequest": {"make_array": [], "get_metadata": [], "acquire": [], "release": []},
    "MappedArray": {"__init__": ["write"], "__enter__": [], "__exit__": [], "array": []},
    "Job": {"get_result": ["timeout"]},
    "MJPEGEncoder": {"__init__": []},
    "Encoder": {"attr:firsttimestamp": []},
    "Quality": {"attr:VERY_LOW": [], "attr:LOW": [], "attr:MEDIUM": [], "attr:HIGH": [],
                "attr:VERY_HIGH": []},
    "Output": {"__init__": ["pts"], "outputframe": []},
}

# How long a full-resolution still may take, at least (two mode switches, buffers of the full
# size allocated, a frame of the full mode): the runner's capture_still timeout is for a frame
FULL_STILL_TIMEOUT_S = 5.0
STILL_SIZES = ("video", "full")


class _EncoderDidNotStart(Exception):
    """Only the hardware encoder's start failed (its cause is the error); the camera is closed."""


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



def _cameras(camera: str, index: int, mod: ModuleType) -> list[dict[str, Any]]:
    """The cameras libcamera lists; CameraDisconnected if ``index`` is not among them."""
    try:
        cameras = mod.Picamera2.global_camera_info()
    except Exception as exc:
        raise CameraError(camera, f"cannot list cameras: {exc!r}") from exc
    if index >= len(cameras):
        found = ", ".join(f"{i}: {c.get('Model', '?')}" for i, c in enumerate(cameras)) or "none"
        raise CameraDisconnected(camera, f"no camera at index {index} (found {found}); check the "
                                         "ribbon cable and 'rpicam-hello --list-cameras'")
    return cameras


class Picamera2Camera(Camera):
    """A Raspberry Pi camera (``index`` as listed by ``rpicam-hello --list-cameras``).

    ``encoder`` is ``"software"``, ``"hardware"`` or ``"auto"`` (see ``picamera2_hardware``);
    ``jpeg_quality`` only matters for the hardware encoder. ``sensor_fps`` is the rate the sensor
    runs at (default ``fps``; frames are thinned to :attr:`fps`). ``controls`` are the
    ``[cameras.controls]``. ``model_path`` is the device-tree model file (tests point it elsewhere).
    ``picamera2`` is the module to drive, or a function returning it (default:
    :func:`import_picamera2`, at open). ``still_size`` is ``"video"`` (a still is the next frame of
    the running stream) or ``"full"`` (the whole sensor by a mode switch and back: the software path
    only; ``"auto"`` resolved to the hardware encoder takes video-size stills and says so once).
    After :meth:`open`, ``encoder_in_use`` says which path runs and ``unset_controls`` lists what
    could not be set.

    Example (on a Pi)::

        with Picamera2Camera("down", index=0, size=(1920, 1080), fps=2, sensor_fps=30) as cam:
            frame = cam.capture(timeout_s=1.0)
            cam.set_fps(30)  # the next sensor frame is delivered
    """

    def __init__(self, name: str, *, index: int = 0, size: tuple[int, int] = (1920, 1080),
                 fps: float = 30.0, encoder: str = "auto", jpeg_quality: int = 85,
                 model_path: Path = MODEL_PATH, lores_size: tuple[int, int] | None = None,
                 sensor_fps: float | None = None, controls: CameraControls | None = None,
                 still_size: str = "video",
                 picamera2: Picamera2Source = import_picamera2) -> None:
        if fps <= 0:
            raise ValueError(f"fps must be > 0, got {fps}")
        if encoder not in ("auto", "hardware", "software"):
            raise CameraError(name, "encoder must be 'auto', 'hardware' or 'software', "
                                    f"got {encoder!r}")
        if still_size not in STILL_SIZES:
            raise CameraError(name, f"still_size must be 'video' or 'full', got {still_size!r}")
        if still_size == "full" and encoder == "hardware":
            raise CameraError(name, "still_size 'full' needs a mode switch, which the hardware "
                                    "encoder's recording cannot take")
        if not 1 <= int(jpeg_quality) <= 100:
            raise CameraError(name, f"jpeg_quality must be 1..100, got {jpeg_quality!r}")
        super().__init__(name, size=size, fps=fps)
        self.index = int(index)
        self.encoder = encoder
        self.jpeg_quality = int(jpeg_quality)
        self.encoder_in_use = ""  # "hardware" or "software" once resolved ("auto": at first open)
        self.sensor_fps = max(float(sensor_fps or fps), float(fps))
        self._configured_fps = self.sensor_fps  # the FrameRate in the video configuration
        self.still_size = still_size
        self.controls = controls
        self.unset_controls: list[str] = []  # what the last open could not set, one line each
        self.sensor_mode_in_use: tuple[int, int] | None = None  # sensor output size, last open
        self._model_path = model_path
        self.lores_size = None if lores_size is None else (int(lores_size[0]), int(lores_size[1]))
        self._lores = False  # deliver the lores stream (set_lores; a bool write is thread-safe)
        self._lores_stream: tuple[tuple[int, int], int] | None = None  # ((w, h), stride) when open
        self._source = picamera2
        self._mod: ModuleType | None = None
        self._picam2: Any = None
        self._requests: Requests | None = None  # the open camera's requests
        self._format = MAIN_FORMAT
        self._thin = Thinner(self._fps, self.sensor_fps)
        self._twin: Frame | None = None  # a still's frame due for the video: the next capture()
        self._hw: Recording | None = None  # the hardware path of this open
        self._recording = False
        self.hw_dropped = 0  # encoded frames dropped because capture() fell behind (all opens)
        # lent frames (software path, main stream): see "Lent frames" in picamera2_requests
        self.lend_limit = LEND_LIMIT
        self.queue = QUEUE  # picamera2 keeps the newest completed request for a late capture
        self.loan_wait_s = LOAN_WAIT_S
        self._loans = Loans(self.lend_limit)
        self.frames_lent = self.frames_copied = 0  # main-stream frames lent / copied (all opens)
        self.deferred_closes = 0  # closes left to the last lent frame's return (it came back late)
        TUNINGS.register(self)  # its caps are in the process's tuning files from the next open on

    @classmethod
    def from_config(cls, cfg: CameraConfig, **kwargs: Any) -> Picamera2Camera:
        """Build (closed) from a camera config: delivering the ARMED rate, the sensor at the
        flight's highest."""
        kwargs.setdefault("lores_size", cfg.lores_size)
        kwargs.setdefault("sensor_fps", cfg.sensor_fps())
        kwargs.setdefault("controls", cfg.controls)
        kwargs.setdefault("still_size", cfg.still_size)
        return cls(cfg.name, index=cfg.index, size=cfg.size, fps=cfg.fps_for("ARMED"),
                   encoder=cfg.encoder, jpeg_quality=cfg.jpeg_quality, **kwargs)

    def __repr__(self) -> str:
        state = "closed" if self.closed else \
            f"open, {self._fps:g} of {self.sensor_fps:g} fps, next seq {self._thin.next_seq}"
        enc = self.encoder_in_use or self.encoder
        return (f"<Picamera2Camera {self.name!r} index={self.index} {self.size[0]}x{self.size[1]} "
                f"encoder={enc} {state}>")

    # -- lifecycle -----------------------------------------------------------------------------
    def _open_backend(self) -> None:
        mod = _load_picamera2(self.name, self._source)
        cameras = _cameras(self.name, self.index, mod)
        first_auto = self.encoder == "auto" and not self.encoder_in_use
        self.encoder_in_use, hw = resolve_encoder(self.name, self.encoder, self.encoder_in_use, mod,
                                                  self.size, self._model_path)

        try:
            picam2 = self._start(mod, cameras, hw)
        except _EncoderDidNotStart as exc:
            if not first_auto:
                raise CameraError(self.name, f"cannot start camera {self.index}: "
                                             f"{exc.__cause__!r}") from exc.__cause__
            # picamera2 takes any board it cannot identify for a VC4 (a Pi 4) and constructs the
            # V4L2 encoder, whose start then opens a codec node that is not there
            # (picamera2/platform.py, encoders/v4l2_encoder.py): seen with real picamera2 here
            _log.warning("camera %r: encoder 'auto': the hardware JPEG encoder did not start "
                         "(%r); software JPEG for this camera's life", self.name, exc.__cause__)
            self.encoder_in_use, hw = "software", None
            picam2 = self._start(mod, cameras, None)
        if first_auto and self.encoder_in_use == "hardware" and self.still_size == "full":
            _log.warning("camera %r: encoder 'auto' chose the hardware encoder, which cannot take "
                         "a mode switch while it records: stills are video-size (%dx%d), not "
                         "still_size 'full'", self.name, *self.size)
        for line in self.unset_controls:
            _log.warning("camera %r: %s", self.name, line)
        self._requests = Requests(self.name, self.index, mod, picam2)
        self._mod = mod
        self._picam2 = picam2
        self._loans = Loans(self.lend_limit)
        self._twin = None
        self._thin.restart()

    def _start(self, mod: ModuleType, cameras: list[dict[str, Any]],
               hw: HardwareParts | None) -> Any:
        """A started ``Picamera2`` on the software path (``hw`` None) or recording to the hardware
        encoder; CameraError, or _EncoderDidNotStart when only the encoder's start failed."""
        self.unset_controls = []
        picam2 = None
        encoder_stage = False
        try:
            with TUNINGS.lock:  # the caps as files libcamera reads, then the manager made anew
                self.unset_controls += TUNINGS.prepare(self, mod, cameras)
                picam2 = mod.Picamera2(camera_num=self.index, tuning=None)
            self._configure(picam2, hardware=hw is not None)
            if hw is None:
                picam2.start()
            else:
                self._hw = Recording(hw, self.jpeg_quality)
                self._recording = True  # set first: a failed start must still be stopped on close
                encoder_stage = True
                self._hw.start(picam2)
        except Exception as exc:
            if picam2 is not None:
                close_quietly(picam2, self._recording)
            self._recording = False
            self._hw = None
            self._lores_stream = None
            if encoder_stage:
                raise _EncoderDidNotStart() from exc
            raise CameraError(self.name, f"cannot start camera {self.index}: {exc!r}") from exc
        return picam2

    def _configure(self, picam2: Any, *, hardware: bool) -> None:
        """The video configuration: the main stream (YUV420 for the hardware encoder), the lores
        one (software path), the controls and the sensor mode."""
        fmt = HW_FORMAT if hardware else MAIN_FORMAT
        lores = None if hardware or self.lores_size is None else \
            {"format": LORES_FORMAT, "size": self.lores_size}
        mode = None if self.controls is None else self.controls.sensor_mode
        controls = video_controls(picam2, self.sensor_fps, self.controls, self.index,
                                  self.unset_controls)
        self._configured_fps = self.sensor_fps
        # raw=None: picamera2 picks the sensor mode from ``sensor`` or the main size either way
        # (Picamera2._make_libcamera_config "always going to set up the sensor config fully"),
        # and no raw buffers are allocated: 6 x 3.7 MB per camera at 2304x1296, never read
        config = picam2.create_video_configuration(
            main={"format": fmt, "size": self.size}, lores=lores, raw=None,
            buffer_count=BUFFER_COUNT, queue=self.queue, controls=controls,
            sensor=None if mode is None else {"output_size": mode})
        picam2.configure(config)
        self.sensor_mode_in_use = sensor_mode(picam2, mode, self.unset_controls)
        if lores is not None:
            stream = picam2.stream_configuration("lores")
            w, h = stream["size"]
            self._lores_stream = ((int(w), int(h)), int(stream["stride"]))

    def _close_backend(self) -> None:
        picam2, self._picam2 = self._picam2, None
        self._requests = None
        twin, self._twin = self._twin, None
        if twin is not None and twin.release is not None:  # a lent frame nobody will take now
            twin.release()
        loans = self._loans
        wait_s = self.loan_wait_s
        if picam2 is not None and close_after_loans(picam2, loans, wait_s, self._recording):
            self.deferred_closes += 1
            _log.warning("camera %r: %d lent frame(s) not given back within %g s; camera %d stays "
                         "open until they are", self.name, loans.requests, wait_s, self.index)
        self._recording = False
        hw, self._hw = self._hw, None
        if hw is not None:
            self.hw_dropped += hw.jpegs.dropped
        self._lores_stream = None

    # -- lores stream --------------------------------------------------------------------------
    @property
    def supports_lores(self) -> bool:
        """A lores size is configured and the software path runs (or may run: before an 'auto'
        open)."""
        return self.lores_size is not None and "hardware" not in (self.encoder_in_use, self.encoder)

    def set_lores(self, enabled: bool) -> bool:
        """Read the lores stream (``enabled``) or the main one from the next frame on; False where
        there is no lores stream (none configured, or the hardware path)."""
        self._lores = bool(enabled)
        return self.supports_lores

    # -- rate ----------------------------------------------------------------------------------
    @property
    def thinned(self) -> int:
        """Sensor frames not delivered because the rate asked for is below the sensor's (all
        opens)."""
        return self._thin.thinned

    def set_fps(self, fps: float) -> None:
        """Deliver ``fps`` from the next due frame (thread-safe; the sensor keeps its rate, see
        ``picamera2_thinner``). Above ``sensor_fps`` the sensor itself is sped up with
        ``set_controls``, which lands late."""
        super().set_fps(fps)
        if self._fps > self.sensor_fps:
            self.sensor_fps = self._fps
            if self._picam2 is not None:
                try:
                    self._picam2.set_controls({"FrameRate": self.sensor_fps})
                except Exception as exc:
                    raise CameraError(self.name, f"cannot set FrameRate to {fps:g}: "
                                                 f"{exc!r}") from exc
        self._thin.set_fps(self._fps, self.sensor_fps)

    # -- frames --------------------------------------------------------------------------------
    def _frame_from(self, request: Any, seq: int, meta: dict[str, Any], still: bool) -> Frame:
        lores = self._lores_stream if self._lores and not still else None
        image = planes = release = None  # lores planes, hardware stills: small copies (make_array)
        if lores is not None:
            (width, height), stride = lores
            planes = full_range(split_i420(request.make_array("lores"), (width, height), stride))
        elif self._hw is not None:  # the main stream is YUV420 (a still read while recording)
            stream = self._picam2.stream_configuration("main")
            (width, height), stride = stream["size"], int(stream.get("stride") or stream["size"][0])
            size = (int(width), int(height))
            planes = full_range(split_i420(request.make_array("main"), size, stride))
        else:
            image, release = self._main_image(request)
            height, width = int(image.shape[0]), int(image.shape[1])
        return Frame(camera=self.name, seq=seq, timestamp_ns=self._timestamp(meta), image=image,
                     yuv420=planes, width=int(width), height=int(height),
                     exposure_us=int(meta.get("ExposureTime", 0)),
                     analogue_gain=float(meta.get("AnalogueGain", 1.0)),
                     frame_duration_us=int(meta.get("FrameDuration", round(1e6 / self.sensor_fps))),
                     still=still, release=release)

    def _main_image(self, request: Any) -> tuple[np.ndarray, Callable[[], None] | None]:
        """The main stream as RGB: lent (a view of the request's buffer and its one-shot
        ``release``) while fewer than ``lend_limit`` requests are lent, else a copy and ``None``."""
        lent = lend(self._mod, request, self._format, self._loans)  # type: ignore[arg-type]
        if lent is None:
            self.frames_copied += 1
            return to_rgb(request.make_array("main"), self._format), None
        if lent[1] is None:  # converted: a copy, the request given back already
            self.frames_copied += 1
        else:
            self.frames_lent += 1
        return lent

    @property
    def lent(self) -> int:
        """Requests (capture buffers) lent out as frames now."""
        return self._loans.requests

    @staticmethod
    def _timestamp(meta: dict[str, Any]) -> int:
        return int(meta.get("SensorTimestamp") or time.monotonic_ns())

    def capture(self, timeout_s: float = 1.0) -> Frame:
        """The next frame due at the current rate: RGB or lores I420 (software path) or a JPEG
        (hardware path); CameraTimeout if none in time."""
        requests = self._requests
        if requests is None:
            raise CameraError(self.name, "capture() on a closed camera")
        twin, self._twin = self._twin, None
        if twin is not None:
            return twin
        deadline = time.monotonic() + timeout_s
        if self._hw is not None:
            return self._capture_jpeg(self._hw, requests, deadline, timeout_s)
        while True:
            request = requests.next(deadline, timeout_s, "capture_request")
            with requests.reading(request, "capture_request"):
                meta = request.get_metadata()
                seq = self._thin.keep(self._timestamp(meta), meta.get("FrameDuration"))
                if seq is not None:
                    return self._frame_from(request, seq, meta, still=False)

    def _capture_jpeg(self, hw: Recording, requests: Requests, deadline: float,
                      timeout_s: float) -> Frame:
        while True:
            try:
                _, timestamp_ns, jpeg = hw.jpegs.get(max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                if not self._recording:
                    raise CameraError(self.name, "not recording (a start after a failure is due)") \
                        from None
                if not requests.listed():
                    raise CameraDisconnected(self.name, f"camera {self.index} disappeared (no "
                                                        f"MJPEG frame within {timeout_s:g} s)") \
                        from None
                raise CameraTimeout(self.name, f"no MJPEG frame within {timeout_s:g} s from camera "
                                               f"{self.index}") from None
            seq = self._thin.keep(timestamp_ns)
            if seq is not None:
                break
        width, height = jpeg_size(jpeg, self.size)
        return Frame(camera=self.name, seq=seq, timestamp_ns=timestamp_ns, jpeg=jpeg, width=width,
                     height=height, frame_duration_us=round(1e6 / self.sensor_fps))

    @property
    def full_stills(self) -> bool:
        """``still_size`` is ``"full"`` and the software path runs (or may run: before an 'auto'
        open): stills switch mode."""
        return self.still_size == "full" and self.encoder_in_use != "hardware"

    def capture_still(self, timeout_s: float = 2.0) -> Frame:
        """One still, marked ``still``: with :attr:`full_stills` the whole sensor by a mode switch
        (:meth:`_full_still`), else the next sensor frame's main stream from the running video (no
        mode switch).

        A video-size still's frame, if due for the video too, comes back from the next
        :meth:`capture` as a video frame (software path; the hardware encoder has it anyway). The
        still comes back as RGB (software path) or full-range I420 planes (hardware path) for the
        encoder pool.
        """
        requests = self._requests
        if requests is None:
            raise CameraError(self.name, "capture_still() on a closed camera")
        if self.full_stills:
            if self._loans.wait_views(self.loan_wait_s):
                return self._full_still(requests, max(timeout_s, FULL_STILL_TIMEOUT_S))
            _log.warning("camera %r: lent frames still read after %g s: this still is from the "
                         "running stream (%dx%d), not a mode switch", self.name, self.loan_wait_s,
                         *self.size)
        request = requests.next(time.monotonic() + timeout_s, timeout_s, "still capture")
        with requests.reading(request, "still capture"):
            meta = request.get_metadata()
            video_seq = None if self._hw is not None else \
                self._thin.keep(self._timestamp(meta), meta.get("FrameDuration"))
            lores, self._lores = self._lores, False
            try:
                seq = self._thin.next_seq if video_seq is None else video_seq
                still = self._frame_from(request, seq, meta, still=True)
            finally:
                self._lores = lores
            if video_seq is not None:
                self._twin = self._video_twin(request, video_seq, meta, still, lores)
        return still

    def _full_still(self, requests: Requests, timeout_s: float) -> Frame:
        """The whole sensor (``sensor_resolution``: the largest mode) by picamera2's
        ``switch_mode_and_capture_request``: stop, configure the still, start, the first frame,
        stop, configure the video again, start (docs/cameras.md, "Full-resolution stills").

        The video pauses meanwhile: its next frame after the switch shows the frames lost as a gap
        in ``seq`` (the still takes a number of its own, :meth:`Thinner.take`). The still is a copy
        (its buffer belongs to the still configuration), RGB, with ``mode_switch`` set. It is
        taken once every lent frame is back and no array views their buffers any more
        (:meth:`Loans.wait_views`: the reconfigure unmaps them)."""
        picam2 = self._picam2
        what = "full-resolution still"
        try:
            size = tuple(int(v) for v in picam2.sensor_resolution)
            # the video's rate and lens: the still mode clamps the rate to its own top, so the
            # frame (and the exposure) is the shortest it allows, and the lens does not move
            controls = video_controls(picam2, self.sensor_fps, self.controls, self.index, [])
            config = picam2.create_still_configuration(
                main={"format": MAIN_FORMAT, "size": size}, raw=None, buffer_count=1,
                controls=controls)
            job = picam2.switch_mode_and_capture_request(config, wait=False)
        except Exception as exc:
            raise requests.failure(exc, "switch_mode_and_capture_request") from exc
        request = requests.wait(job, timeout_s, what)
        with requests.reading(request, what):
            meta = request.get_metadata()
            image = to_rgb(request.make_array("main"), MAIN_FORMAT)
        if self.sensor_fps != self._configured_fps:  # set_controls since configure: gone now
            try:
                picam2.set_controls({"FrameRate": self.sensor_fps})
            except Exception as exc:
                raise CameraError(self.name, f"cannot set FrameRate to {self.sensor_fps:g} after "
                                             f"a still: {exc!r}") from exc
        return Frame(camera=self.name, seq=self._thin.take(), timestamp_ns=self._timestamp(meta),
                     image=image, exposure_us=int(meta.get("ExposureTime", 0)),
                     analogue_gain=float(meta.get("AnalogueGain", 1.0)),
                     frame_duration_us=int(meta.get("FrameDuration", 0)), still=True,
                     mode_switch=True)

    def _video_twin(self, request: Any, seq: int, meta: dict[str, Any], still: Frame,
                    lores: bool) -> Frame:
        """The video's frame of a still's slot: the same pixels (or its lores stream). Lent, the
        twin takes its own reference and its own release (one buffer: no second loan)."""
        if not ((lores and self._lores_stream is not None) or still.release is not None):
            return dataclasses.replace(still, still=False)
        try:
            return self._frame_from(request, seq, meta, still=False)
        except BaseException:
            if still.release is not None:  # nobody will get the still: give its loan back
                still.release()
            raise
