"""The ``picamera2`` camera backend: real Raspberry Pi cameras through libcamera's Python binding.

:class:`Picamera2Camera` owns one ``Picamera2`` object: it checks the camera index exists, configures a
video stream at the configured size and rate, pulls completed requests with a bounded wait, copies the
pixels out and always releases the request, and maps every failure to a camctl camera error (timeout,
disconnect, anything else) so the capture thread can close and reopen it.

picamera2 is imported lazily (in :func:`_load_picamera2`), so ``import camctl.cameras.picamera2`` works
where libcamera is absent; opening a camera there raises a :class:`~camctl.exc.CameraError` that says how to
install it.

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
- ``seq`` comes from libcamera's per-buffer ``FrameMetadata.sequence`` (gaps = frames the sensor dropped),
  read through ``CompletedRequest.request.buffers`` as picamera2 itself does; if that is unavailable a
  counter is used. Either way ``seq`` keeps increasing across reopen (offset by the last seq seen).
- ``"FrameRate"`` is a picamera2 virtual control that maps onto libcamera's ``FrameDurationLimits``; it
  can be changed while streaming with ``set_controls`` (no restart).

Encoder: ``encoder = "software"`` and ``"auto"`` return raw RGB arrays (the encoder pool makes JPEGs with
simplejpeg). ``"hardware"`` (picamera2's V4L2 MJPEG encoder on a Pi 4) is not supported yet and raises a
clear CameraError; on a Pi 5, which has no hardware JPEG/video encoder, the error says so.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np

from camctl.cameras.base import Camera
from camctl.exc import CameraDisconnected, CameraError, CameraTimeout
from camctl.frames import Frame

if TYPE_CHECKING:
    from camctl.config import CameraConfig

__all__ = ["CONTROLS_USED", "INSTALL_HINT", "METADATA_USED", "PICAMERA2_API_USED", "Picamera2Camera",
           "pi_model"]

_log = logging.getLogger(__name__)

INSTALL_HINT = ("picamera2 is not installed: on Raspberry Pi OS run 'sudo apt install python3-picamera2' "
                "and create the venv with --system-site-packages")

# Every picamera2 call this module makes: class -> method -> keyword arguments used (``"attr:"`` prefix for
# plain attributes). tests/test_cameras_picamera2.py checks this table against the picamera2 source AND
# checks this module's own source makes no call on a picamera2 object that the table does not list.
PICAMERA2_API_USED: dict[str, dict[str, list[str]]] = {
    "module": {"Picamera2": [], "attr:TimeoutError": [], "attr:CancelledError": []},
    "Picamera2": {
        "global_camera_info": [],
        "__init__": ["camera_num"],
        "create_video_configuration": ["main", "buffer_count", "queue", "controls"],
        "create_still_configuration": ["main", "buffer_count"],
        "configure": [],
        "start": [],
        "stop": [],
        "close": [],
        "set_controls": [],
        "capture_request": ["wait"],
        "switch_mode_and_capture_request": ["wait"],
        "cancel_all_and_flush": [],
    },
    "CompletedRequest": {"make_array": [], "get_metadata": [], "release": [], "attr:request": []},
    "Job": {"get_result": ["timeout"]},
}
CONTROLS_USED = ("FrameRate",)
# Metadata keys read from ``get_metadata()``; all optional (``.get`` with a fallback).
METADATA_USED = ("SensorTimestamp", "ExposureTime", "AnalogueGain", "FrameDuration")

MAIN_FORMAT = "BGR888"  # R, G, B bytes in memory (see the module docstring)
BUFFER_COUNT = 6  # picamera2's video default: enough to ride out a slow consumer for a few frames
_MODEL_PATH = Path("/proc/device-tree/model")


def _load_picamera2(camera: str) -> ModuleType:
    """Import picamera2, or raise CameraError with the install instructions."""
    try:
        import picamera2
    except ImportError as exc:
        raise CameraError(camera, INSTALL_HINT) from exc
    return picamera2


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


class Picamera2Camera(Camera):
    """A Raspberry Pi camera (``index`` as listed by ``rpicam-hello --list-cameras``).

    ``model_path`` is the device-tree model file (tests point it elsewhere).

    Example (on a Pi)::

        with Picamera2Camera("down", index=0, size=(1920, 1080), fps=30) as cam:
            frame = cam.capture(timeout_s=1.0)
    """

    def __init__(self, name: str, *, index: int = 0, size: tuple[int, int] = (1920, 1080),
                 fps: float = 30.0, encoder: str = "auto", model_path: Path = _MODEL_PATH) -> None:
        if fps <= 0:
            raise ValueError(f"fps must be > 0, got {fps}")
        if encoder not in ("auto", "hardware", "software"):
            raise CameraError(name, f"encoder must be 'auto', 'hardware' or 'software', got {encoder!r}")
        super().__init__(name, size=size, fps=fps)
        self.index = int(index)
        self.encoder = encoder
        self._model_path = model_path
        self._mod: ModuleType | None = None
        self._picam2: Any = None
        self._format = MAIN_FORMAT
        self._seq_base = 0  # added to the sensor sequence so seq never goes back across reopen
        self._first_sensor_seq: int | None = None
        self._next_seq = 0
        self.last_still_gap_ms = 0.0  # video interruption caused by the last capture_still()

    @classmethod
    def from_config(cls, cfg: CameraConfig, **kwargs: Any) -> Picamera2Camera:
        """Build (closed) from a camera config, at the ARMED rate."""
        return cls(cfg.name, index=cfg.index, size=cfg.size, fps=cfg.fps_for("ARMED"), encoder=cfg.encoder,
                   **kwargs)

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"open, {self._fps:g} fps, next seq {self._next_seq}"
        return f"<Picamera2Camera {self.name!r} index={self.index} {self.size[0]}x{self.size[1]} {state}>"

    # -- lifecycle -----------------------------------------------------------------------------------
    def _check_encoder(self) -> None:
        if self.encoder != "hardware":
            return  # "auto" resolves to software until the hardware path exists
        model = pi_model(self._model_path)
        if "Raspberry Pi 5" in model:
            raise CameraError(self.name, f"encoder 'hardware' requested but this board ({model}) has no "
                                         "hardware JPEG encoder; use encoder = 'software' or 'auto'")
        raise CameraError(self.name, "encoder 'hardware' (picamera2 MJPEGEncoder) is not supported yet; "
                                     "use encoder = 'software' or 'auto'")

    def _open_backend(self) -> None:
        self._check_encoder()
        mod = _load_picamera2(self.name)
        try:
            cameras = mod.Picamera2.global_camera_info()
        except Exception as exc:
            raise CameraError(self.name, f"cannot list cameras: {exc!r}") from exc
        if self.index >= len(cameras):
            found = ", ".join(f"{i}: {c.get('Model', '?')}" for i, c in enumerate(cameras)) or "none"
            raise CameraDisconnected(self.name, f"no camera at index {self.index} (found {found}); check the "
                                                "ribbon cable and 'rpicam-hello --list-cameras'")
        picam2 = None
        try:
            picam2 = mod.Picamera2(camera_num=self.index)
            config = picam2.create_video_configuration(
                main={"format": MAIN_FORMAT, "size": self.size}, buffer_count=BUFFER_COUNT, queue=False,
                controls={"FrameRate": self._fps})
            picam2.configure(config)
            picam2.start()
        except Exception as exc:
            if picam2 is not None:
                self._close_quietly(picam2)
            raise CameraError(self.name, f"cannot start camera {self.index}: {exc!r}") from exc
        self._mod = mod
        self._picam2 = picam2
        self._seq_base = self._next_seq
        self._first_sensor_seq = None

    @staticmethod
    def _close_quietly(picam2: Any) -> None:
        for step in (picam2.stop, picam2.close):
            try:
                step()
            except Exception as exc:  # closing must always complete
                _log.warning("picamera2 %s failed while closing: %r", step.__name__, exc)

    def _close_backend(self) -> None:
        picam2, self._picam2 = self._picam2, None
        if picam2 is not None:
            self._close_quietly(picam2)

    # -- rate ----------------------------------------------------------------------------------------
    def set_fps(self, fps: float) -> None:
        """Change the frame rate while streaming (``FrameRate`` control, no restart)."""
        super().set_fps(fps)
        if self._picam2 is not None:
            try:
                self._picam2.set_controls({"FrameRate": self._fps})
            except Exception as exc:
                raise CameraError(self.name, f"cannot set FrameRate to {fps:g}: {exc!r}") from exc

    # -- frames --------------------------------------------------------------------------------------
    def _wait(self, job: Any, timeout_s: float, what: str) -> Any:
        """The request a Job produced within ``timeout_s``, or CameraTimeout (leaving nothing queued)."""
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
        raise CameraTimeout(self.name, f"no frame within {timeout_s:g} s ({what}) from camera {self.index}")

    def _failure(self, exc: BaseException, what: str) -> CameraError:
        """Map a libcamera/picamera2 failure: CameraDisconnected if the camera is no longer listed."""
        try:
            listed = self.index < len(self._mod.Picamera2.global_camera_info())  # type: ignore[union-attr]
        except Exception:
            listed = False
        if not listed:
            return CameraDisconnected(self.name, f"camera {self.index} disappeared during {what}: {exc!r}")
        return CameraError(self.name, f"{what} failed: {exc!r}")

    def _sensor_seq(self, request: Any) -> int:
        # libcamera objects below CompletedRequest (not picamera2 API, so not in the table): the libcamera
        # Request's buffers carry FrameMetadata.sequence, as picamera2's process_requests reads .status.
        try:
            lc_request = request.request
            sensor = int(next(iter(lc_request.buffers.values())).metadata.sequence)
        except Exception:
            return self._next_seq
        if self._first_sensor_seq is None:
            self._first_sensor_seq = sensor
        return self._seq_base + max(0, sensor - self._first_sensor_seq)

    def _frame_from(self, request: Any, still: bool) -> Frame:
        image = _to_rgb(request.make_array("main"), self._format)
        meta = request.get_metadata()
        # A mode switch restarts the sensor's numbering: a still takes the next number and video frames
        # after it count from a new base.
        seq = self._next_seq if still else max(self._sensor_seq(request), self._next_seq)
        self._next_seq = seq + 1
        if still:
            self._seq_base, self._first_sensor_seq = self._next_seq, None
        timestamp_ns = int(meta.get("SensorTimestamp") or time.monotonic_ns())
        return Frame(camera=self.name, seq=seq, timestamp_ns=timestamp_ns, image=image,
                     width=int(image.shape[1]), height=int(image.shape[0]),
                     exposure_us=int(meta.get("ExposureTime", 0)),
                     analogue_gain=float(meta.get("AnalogueGain", 1.0)),
                     frame_duration_us=int(meta.get("FrameDuration", round(1e6 / self._fps))), still=still)

    def capture(self, timeout_s: float = 1.0) -> Frame:
        """The next frame from the sensor, RGB; CameraTimeout if none within ``timeout_s``."""
        if self._picam2 is None:
            raise CameraError(self.name, "capture() on a closed camera")
        try:
            job = self._picam2.capture_request(wait=False)
        except Exception as exc:
            raise self._failure(exc, "capture_request") from exc
        request = self._wait(job, timeout_s, "capture_request")
        try:
            return self._frame_from(request, still=False)
        except Exception as exc:
            raise self._failure(exc, "reading the request") from exc
        finally:
            request.release()

    def capture_still(self, timeout_s: float = 2.0) -> Frame:
        """One frame at the sensor's full resolution: switch mode, capture, switch back to video."""
        if self._picam2 is None:
            raise CameraError(self.name, "capture_still() on a closed camera")
        t0 = time.monotonic()
        try:
            # The still configuration's main stream defaults to the sensor's full resolution.
            still_config = self._picam2.create_still_configuration(main={"format": MAIN_FORMAT},
                                                                   buffer_count=1)
            job = self._picam2.switch_mode_and_capture_request(still_config, wait=False)
        except Exception as exc:
            raise self._failure(exc, "switch_mode_and_capture_request") from exc
        request = self._wait(job, timeout_s, "still capture")
        try:
            return self._frame_from(request, still=True)
        except Exception as exc:
            raise self._failure(exc, "reading the still request") from exc
        finally:
            request.release()
            self.last_still_gap_ms = (time.monotonic() - t0) * 1e3
