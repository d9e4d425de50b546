"""A simulated ``picamera2`` (a strict double): the subset of picamera2 0.3.x's API that camctl uses, same
names and signatures, and the run-time behaviour of the real stack. Each fact below is pinned to the installed
picamera2 source by tests/test_picamera2_strict.py and tests/test_cameras_picamera2.py, so an upgrade that
changes one fails a test.

It lives in the package, not under tests/, because ``camctl bench`` measures the camera path on it
(``rate_switch_ms``, ``still_video_gap_ms``) and must run from an installed camctl. It is never chosen by a
config: code that wants it passes it in.

Use: ``Picamera2Camera(..., picamera2=rig.module)``. ``rig.module`` is a ``picamera2`` module
object bound to the rig (its ``encoders``, ``encoders.mjpeg_encoder`` and ``outputs`` submodules
are attributes); it is never put in ``sys.modules``. A :class:`FakeRig` is the hardware the test
controls (scene, stalls, libcamera errors, a dead sensor, dropped frames, whether the board has the
V4L2 hardware JPEG encoder, the sensor's limits); its settings are read live.

How the real stack behaves, and so the fake:

- **A sensor runs in real time.** After ``start`` frames complete one frame duration apart on
  ``time.monotonic`` (libcamera's ``SensorTimestamp`` is ``CLOCK_MONOTONIC``). ``capture_request`` waits for a
  frame: with ``queue=False`` (``_max_queue_len = 0``: the event loop releases every completed request no job
  is waiting for) it gets the *next* frame to complete after the call, so it blocks up to a frame period, and
  frames that completed while nobody asked are lost (a sequence gap). With ``queue=True`` the newest completed
  frame not yet handed out is returned at once.
- **Controls arrive late.** ``set_controls`` only updates ``picam2.controls``; they ride on the next request
  that is recycled to libcamera (``CompletedRequest.release``), which the sensor fills ``buffer_count`` frames
  later, and the sensor applies a frame-length change ``sensor_delay_frames`` after that (libcamera's
  ``camera_sensor_properties.cpp``: imx708 ``vblankDelay = 3``). So a control set while frame ``k`` is the
  next to complete first shows on frame ``k + buffer_count + sensor_delay_frames``.
- **configure_ and mode switches rebuild the controls from the config they apply**
  (``self.controls = Controls(self, controls=self.camera_config['controls'])``), and ``start_`` hands those to
  the first frame. ``switch_mode_and_capture_request`` saves ``camera_config`` and switches back to it, so what
  ``set_controls`` set since the video configure is gone after a still: the FrameRate given at configure wins.
- **A mode switch costs time** (``switch_mode_`` = ``stop_`` + ``configure_`` + ``start_``; buffers are
  re-allocated): ``rig.mode_switch_s`` per switch, then a frame period in the new mode.
- **A dead camera times out, it does not vanish.** ``global_camera_info`` lists libcamera's CameraManager
  cameras, enumerated once per process: a CSI sensor whose cable came loose stays listed and its requests just
  never complete (``rig.unplug()``).
- **Control names are checked** as picamera2's ``Controls.__setattr__`` does against ``camera_ctrl_info``
  (``RuntimeError("Control X is not advertised by libcamera")``); the advertised names are the Raspberry Pi
  IPA's (raspberrypi/libcamera ``src/ipa/rpi/common/ipa_base.cpp``: ``ipaControls``, ``ipaColourControls``,
  and ``ipaAfControls`` only when the module has a focus lens). ``FrameRate`` is picamera2's virtual control
  for ``FrameDurationLimits``. Frame durations are clamped to the sensor mode's limits (``rig.max_fps``).
- **The tuning's AGC exposure profile caps exposure and gain.** ``Picamera2(tuning=dict)`` takes a tuning
  (from ``load_tuning_file``); the fake AGC meters ``rig.scene_exposure_us``/``rig.scene_gain`` and clips them
  to the largest ``shutter``/``gain`` of the ``normal`` exposure mode and to the frame duration.
- **Hardware JPEG**: only on a VC4 board (``rig.hardware_jpeg``); the V4L2 encoder node picamera2 opens
  (``/dev/video11``, bcm2835-codec's ENCODE role) takes 32..1920 pixels on each side (raspberrypi/linux
  ``drivers/staging/vc04_services/bcm2835-codec/bcm2835-v4l2-codec.c``: ``MIN_W 32``, ``MAX_W_CODEC 1920``,
  ``MAX_H_CODEC 1920``; ``dev->max_w`` is raised only for the ISP role), so ``start_recording`` fails beyond.
  Recording feeds the encoder every sensor frame (``process_requests`` encodes every request), JPEGs made with
  simplejpeg, timestamps in microseconds relative to the first frame as ``Encoder._timestamp`` gives them.

- **Requests are reference counted** as picamera2's ``CompletedRequest`` (``request.py``): ``acquire`` raises
  ``"CompletedRequest: acquiring lock with ref_count 0"``, ``release`` below zero ``"... negative ref_count"``;
  at 0 the request is recycled to the camera only if it is open, started and not stopped since the request
  completed (``stop_count``), and its config is emptied (``make_array`` then says the stream is not defined).
  ``rig.created``/``rig.released`` count requests made and requests whose count reached 0 (``outstanding``),
  ``rig.recycled`` those queued back. A recycled buffer is overwritten with ``rig.pad_value`` at once (the
  sensor fills it again: on a Pi ``buffer_count`` frames later; the double is stricter), so a frame read
  after its release shows it.
- **MappedArray** (exported by ``picamera2``) is the request's buffer itself, shaped as
  ``Helpers._make_array_shared`` does (``(h, w, 3)`` for ``BGR888``/``RGB888``, ``(h, w, 4)`` for the ``X``
  formats, ``(h * 3 // 2, stride)`` for YUV420), never a copy (``rig.arrays_mapped`` counts them); ``.array``
  is gone after ``__exit__``; ``make_array`` copies through it.
- **Held requests are buffers the sensor cannot fill.** When the app holds every one of ``buffer_count``
  requests, frames that complete meanwhile are lost (a sequence gap, counted in ``rig.starved``) and a capture
  waits until a request comes back, then gets the next frame to complete.
- **close frees the buffers** (picamera2's ``close`` releases the camera and replaces the allocator): a
  ``MappedArray`` entered after it raises ``"failed to find buffer in DmaSync"``, and requests the app still
  holds are counted in ``rig.closed_while_held`` and their buffers overwritten (on a Pi, what is read after the
  free is not the frame any more, or not mapped at all). ``stop`` frees nothing. Until ``close`` the camera
  is acquired: another ``Picamera2`` of the same camera fails to construct (libcamera ``Camera::acquire``).

A ``lores`` stream follows picamera2's rules: YUV420 by default, size rounded down to even, never larger than
main; ``configure`` gives it a ``stride`` (the width rounded up to ``rig.lores_align`` bytes, so there is
padding to crop) and ``make_array("lores")`` returns ``(h * 3 // 2, stride)`` uint8 with the Y, U, V planes
one after another (chroma rows ``stride // 2`` bytes), padding bytes set to ``rig.pad_value``. The planes are
limited-range video YUV of ``rig.colour`` (BT.601), or whatever ``rig.lores_planes(w, h)`` returns.
"""

from __future__ import annotations

import bisect
import concurrent.futures
import copy
import enum
import functools
import threading
import time
import types
from collections.abc import Callable
from typing import Any

import numpy as np
import simplejpeg

__all__ = ["CODEC_MAX", "CODEC_MIN", "RPI_IPA_AF_CONTROLS", "RPI_IPA_CONTROLS", "FakePicamera2", "FakeRig",
           "MJPEGEncoder", "Output", "Quality", "fake_modules", "make_fake_picamera2", "video_yuv"]

# Controls the Raspberry Pi IPA advertises (raspberrypi/libcamera src/ipa/rpi/common/ipa_base.cpp), with their
# (min, max, default) where the IPA states them (None where it gives an enum or a mode-dependent range).
RPI_IPA_CONTROLS: dict[str, tuple[Any, Any, Any]] = {
    "AeEnable": (False, True, None), "ExposureTime": (0, 66666, None), "AnalogueGain": (1.0, 16.0, None),
    "AeMeteringMode": (0, 3, 0), "AeConstraintMode": (0, 3, 0), "AeExposureMode": (0, 3, 0),
    "ExposureValue": (-8.0, 8.0, 0.0), "AeFlickerMode": (0, 1, 0), "AeFlickerPeriod": (100, 1000000, None),
    "Brightness": (-1.0, 1.0, 0.0), "Contrast": (0.0, 32.0, 1.0), "Sharpness": (0.0, 16.0, 1.0),
    "ScalerCrop": (None, None, None), "FrameDurationLimits": (33333, 120000, None),
    "NoiseReductionMode": (0, 4, 0), "StatsOutputEnable": (False, True, None),
}
RPI_IPA_COLOUR_CONTROLS = {"AwbEnable": (False, True, None), "AwbMode": (0, 7, 0), "ColourGains": (0.0, 32.0, None),
                           "Saturation": (0.0, 32.0, 1.0)}
RPI_IPA_AF_CONTROLS = {"AfMode": (0, 2, 0), "AfRange": (0, 2, 0), "AfSpeed": (0, 1, 0), "AfMetering": (0, 1, 0),
                       "AfWindows": (None, None, None), "AfTrigger": (0, 1, 0), "AfPause": (0, 2, 0),
                       "LensPosition": (0.0, 32.0, 1.0)}
VIRTUAL_CONTROLS = {"FrameRate": "FrameDurationLimits"}  # picamera2 controls.py _VIRTUAL_FIELDS_MAP_
CODEC_MIN = 32  # bcm2835-v4l2-codec.c MIN_W / MIN_H
CODEC_MAX = 1920  # bcm2835-v4l2-codec.c MAX_W_CODEC / MAX_H_CODEC (the ENCODE role, /dev/video11)
DEFAULT_VIDEO_DURATION_US = 33333  # create_video_configuration's FrameDurationLimits (33333, 33333)


class FakeRig:
    """What the fake camera hardware does. Counters let tests check that every request is released."""

    def __init__(self, cameras: int = 1, sensor_resolution: tuple[int, int] = (640, 480),
                 hardware_jpeg: bool = False, *, lens: bool = True, model: str = "imx708") -> None:
        self.cameras = [{"Model": model, "Location": 2, "Rotation": 180, "Id": f"/base/cam{i}", "Num": i}
                        for i in range(cameras)]
        self.model = model
        self.sensor_resolution = sensor_resolution
        self.colour = (255, 0, 0)  # RGB of the scene
        self.stalled = False  # the sensor delivers nothing (jobs never complete)
        self.fail_with: BaseException | None = None  # raised by the next job
        self.fail_start: BaseException | None = None
        self.complete_late = False  # a stalled job completes right when it is cancelled (the race)
        self.drop_next = 0  # frames the sensor drops before the next one (sequence gap)
        self.created = self.released = 0  # CompletedRequests made / whose ref_count reached 0
        self.recycled = 0  # released requests queued back to the camera (not after a stop or close)
        self.arrays_mapped = 0  # MappedArray reads (views of a capture buffer, no copy)
        self.starved = 0  # frames lost because the app held every buffer (the sensor had none to fill)
        self.closed_while_held = 0  # buffers a close freed while the app still held their request
        self.controls: list[dict[str, Any]] = []  # every set_controls call
        self.instances: list[FakePicamera2] = []
        self.adjust_size: tuple[int, int] | None = None  # libcamera "adjusts" the main stream to this size
        self.hardware_jpeg = hardware_jpeg  # a VC4 board (Pi 4): the V4L2 MJPEGEncoder constructs
        self.recordings_started = self.recordings_stopped = 0
        self.recording_quality: Any = None
        self.frames_fed = 0  # JPEGs handed to an encoder output
        self.fed = threading.Condition()  # notified after each fed frame (tests wait on it)
        self.lores_align = 64  # lores stride alignment (bytes), like the Pi 5 ISP
        self.pad_value = 0xEE  # what padding bytes hold (a split that does not crop them shows it)
        self.lores_planes: Callable[[int, int], tuple[np.ndarray, np.ndarray, np.ndarray]] | None = None
        self.arrays_made: list[str] = []  # every stream read: make_array(name) or a MappedArray
        # timing (see the module docstring)
        self.sensor_delay_frames = 3  # libcamera camera_sensor_properties.cpp: imx708 vblankDelay
        self.mode_switch_s = 0.15  # stop + configure (buffer allocation) + start; not measured on a Pi
        self.max_fps = 120.0  # the sensor mode's shortest frame duration (imx708 1536x864 mode: 120 fps)
        self.still_fps = 14.0  # full-resolution still mode rate (imx708 4608x2592: 14 fps)
        self.mode_switches = 0
        # what the module advertises and what AGC meters
        self.ctrl_info = dict(RPI_IPA_CONTROLS) | RPI_IPA_COLOUR_CONTROLS | (RPI_IPA_AF_CONTROLS if lens else {})
        self.scene_exposure_us = 30000  # what AGC would choose uncapped (a dull day)
        self.scene_gain = 6.0
        self.tunings_loaded: list[str] = []
        self.has_tuning = True  # False: load_tuning_file finds no file (a sensor without a Raspberry Pi tuning)
        self.sensor_modes = [(1536, 864), (2304, 1296), (4608, 2592)]  # imx708 modes (rpicam-hello --list-cameras)

    def wait_fed(self, count: int, timeout: float = 10.0) -> bool:
        """Wait until at least ``count`` frames have been fed to outputs in total."""
        with self.fed:
            return self.fed.wait_for(lambda: self.frames_fed >= count, timeout)

    def unplug(self) -> None:
        """The sensor dies (a loose ribbon cable): it stays listed, nothing completes any more."""
        self.stalled = True

    def tuning(self) -> dict[str, Any]:
        """A version-2 tuning like the Pi's imx708.json, AGC with one channel (as libcamera 0.2+ ships it)."""
        modes = {"normal": {"shutter": [100, 15000, 30000, 60000, 120000], "gain": [1.0, 2.0, 4.0, 6.0, 6.0]},
                 "short": {"shutter": [100, 5000, 10000, 20000, 120000], "gain": [1.0, 2.0, 4.0, 6.0, 6.0]}}
        return {"version": 2.0, "target": "bcm2835",
                "algorithms": [{"rpi.black_level": {"black_level": 4096}},
                               {"rpi.agc": {"channels": [{"exposure_modes": modes}]}}]}

    @property
    def outstanding(self) -> int:
        return self.created - self.released

    @functools.cached_property
    def module(self) -> types.ModuleType:
        """The simulated ``picamera2`` module bound to this rig: pass it as ``picamera2=``."""
        return fake_modules(self)["picamera2"]


class _Sensor:
    """Frame completion times of one started sensor: segments ``(first_index, its time, controls)``."""

    def __init__(self, t0: float, controls: dict[str, Any], max_fps: float) -> None:
        self.max_fps = max_fps
        self.segs: list[tuple[int, float, dict[str, Any]]] = [(0, t0 + self._duration(controls), controls)]

    def _duration(self, controls: dict[str, Any]) -> float:
        lo, _hi = controls.get("FrameDurationLimits", (DEFAULT_VIDEO_DURATION_US, DEFAULT_VIDEO_DURATION_US))
        return max(lo / 1e6, 1.0 / self.max_fps)

    def _seg(self, i: int) -> tuple[int, float, dict[str, Any]]:
        return self.segs[bisect.bisect_right([s[0] for s in self.segs], i) - 1]

    def time_of(self, i: int) -> float:
        first, t, controls = self._seg(i)
        return t + (i - first) * self._duration(controls)

    def controls_of(self, i: int) -> dict[str, Any]:
        return self._seg(i)[2]

    def duration_of(self, i: int) -> float:
        return self._duration(self.controls_of(i))

    def next_after(self, t: float) -> int:
        """The first frame completing after ``t``."""
        for first, t0, controls in reversed(self.segs):
            if t0 <= t or first == 0:
                return first if t0 > t else first + int((t - t0) // self._duration(controls)) + 1
        raise AssertionError("unreachable")

    def change(self, first: int, controls: dict[str, Any]) -> None:
        """From frame ``first`` on, ``controls`` (merged over what is in effect) apply."""
        merged = self.controls_of(first) | controls
        t = self.time_of(first)
        self.segs = [s for s in self.segs if s[0] < first] + [(first, t, merged)]


def _best_mode(modes: list[tuple[int, int]], wanted: tuple[int, int]) -> tuple[int, int]:
    """The sensor mode picamera2's ``_make_libcamera_config`` scores best for ``wanted`` (one bit depth here)."""
    def score_format(desired: float, actual: float) -> float:
        score = desired - actual
        return -score / 4 if score < 0 else score * 2

    def score(mode: tuple[int, int]) -> float:
        ar, mode_ar = wanted[0] / wanted[1], mode[0] / mode[1]
        return score_format(wanted[0], mode[0]) + score_format(wanted[1], mode[1]) + 1500 * score_format(ar, mode_ar)

    return min(modes, key=score)


def _libcamera_controls(controls: dict[str, Any]) -> dict[str, Any]:
    """Virtual controls mapped as picamera2's Controls does (FrameRate -> FrameDurationLimits in µs)."""
    out = {}
    for name, value in controls.items():
        if name == "FrameRate":
            rates = value if isinstance(value, tuple | list) else (value, value)
            out["FrameDurationLimits"] = (int(1000000 / rates[1]), int(1000000 / rates[0]))
        else:
            out[name] = value
    return out


class _Meta:
    def __init__(self, sequence: int) -> None:
        self.sequence = sequence


class _Buffer:
    def __init__(self, sequence: int) -> None:
        self.metadata = _Meta(sequence)


class _LibcameraRequest:
    def __init__(self, sequence: int) -> None:
        self.buffers = {"main-stream": _Buffer(sequence)}


class CompletedRequest:
    """picamera2's CompletedRequest (``request.py``): one buffer per stream, a reference count, recycled to the
    camera when the count reaches 0 unless the camera stopped since (``stop_count``)."""

    def __init__(self, picam2: FakePicamera2, config: dict[str, Any], sensor: _Sensor, index: int) -> None:
        rig = picam2.rig
        self.rig = rig
        self.request: _LibcameraRequest | None = _LibcameraRequest(index)
        self.ref_count = 1
        self.lock = picam2.request_lock
        self.picam2 = picam2
        self.stop_count = picam2.stop_count
        self.config = config
        self.stream_map = {name: name for name in ("main", "lores") if config.get(name) is not None}
        self._allocation = picam2._allocation  # the allocator whose buffers this request holds
        self._buffers: dict[str, np.ndarray] = {}
        applied = sensor.controls_of(index)
        duration_us = int(sensor.duration_of(index) * 1e6)
        exposure = min(rig.scene_exposure_us, picam2.agc_limits[0], duration_us)
        gain = min(rig.scene_gain, picam2.agc_limits[1])
        if applied.get("ExposureTime"):
            exposure = min(int(applied["ExposureTime"]), duration_us)
        if applied.get("AnalogueGain"):
            gain = float(applied["AnalogueGain"])
        self._metadata = {"SensorTimestamp": int(sensor.time_of(index) * 1e9), "ExposureTime": int(exposure),
                          "AnalogueGain": float(gain), "FrameDuration": duration_us}
        if "LensPosition" in rig.ctrl_info:
            self._metadata["LensPosition"] = float(applied.get("LensPosition", 1.0))  # tuning default 1 dioptre
            self._metadata["AfState"] = 0
        rig.created += 1
        picam2._hold(self)

    def _buffer(self, name: str) -> np.ndarray:
        """The stream's capture buffer (1-D, ``stride`` bytes a row), filled with the scene on first use."""
        buf = self._buffers.get(name)
        if buf is None:
            stream = self.config[name]
            w, h = stream["size"]
            fmt = stream["format"]
            if fmt in ("YUV420", "YVU420"):
                buf = _i420_buffer(self.rig, w, h, stream.get("stride", w)).reshape(-1)
            else:
                order = {"BGR888": (0, 1, 2), "RGB888": (2, 1, 0), "XBGR8888": (0, 1, 2), "XRGB8888": (2, 1, 0)}
                if fmt not in order:
                    raise RuntimeError(f"Format {fmt} not supported")
                bpp = 4 if fmt.startswith("X") else 3
                stride = int(stream.get("stride") or w * bpp)
                rows = np.full((h, stride), self.rig.pad_value, np.uint8)
                pixels = rows[:, : w * bpp].reshape(h, w, bpp)
                pixels[..., :3] = [self.rig.colour[i] for i in order[fmt]]
                if bpp == 4:
                    pixels[..., 3] = 255
                buf = rows.reshape(-1)
            self._buffers[name] = buf
        return buf

    def acquire(self) -> None:
        with self.lock:
            if self.ref_count == 0:
                raise RuntimeError("CompletedRequest: acquiring lock with ref_count 0")
            self.ref_count += 1

    def release(self) -> None:
        with self.lock:
            self.ref_count -= 1
            if self.ref_count < 0:
                raise RuntimeError("CompletedRequest: lock now has negative ref_count")
            if self.ref_count > 0:
                return
            picam2 = self.picam2
            recycled = picam2.is_open and self.stop_count == picam2.stop_count and picam2.started
            self.request = None
            self.config = {}
            self.stream_map = {}
            self.rig.released += 1
        picam2._unhold(self, recycled)
        if recycled:  # back in libcamera's queue: the sensor writes the next frames into it
            self.rig.recycled += 1
            for buf in self._buffers.values():
                buf[...] = self.rig.pad_value

    def make_array(self, name: str) -> np.ndarray:
        if self.config.get(name) is None:  # (also after release: the config is emptied)
            raise RuntimeError(f"Stream {name!r} is not defined")
        self.rig.arrays_made.append(name)
        with MappedArray(self, name, _count=False) as m:  # a copy, so safe after the request goes back
            array = m.array
            return np.copy(array) if array.data.c_contiguous else np.ascontiguousarray(array)

    def get_metadata(self) -> dict[str, Any]:
        if self.request is None:
            raise AssertionError("get_metadata on a released request")  # real: assert self.request is not None
        return dict(self._metadata)


def _make_array_shared(buffer: np.ndarray, config: dict[str, Any]) -> np.ndarray:
    """picamera2 ``Helpers._make_array_shared`` for the formats the double supports: never a copy."""
    fmt = config["format"]
    w, h = config["size"]
    stride = config["stride"]
    if fmt in ("BGR888", "RGB888", "XBGR8888", "XRGB8888"):
        bpp = 4 if fmt.startswith("X") else 3
        array = buffer
        if stride != w * bpp:
            array = array.reshape((h, stride))[:, : w * bpp]
        return array.reshape((h, w, bpp))
    if fmt in ("YUV420", "YVU420"):
        return buffer.reshape((h * 3 // 2, stride))
    raise RuntimeError("Format " + fmt + " not supported")


class MappedArray:
    """picamera2's MappedArray (``request.py``): ``.array`` is the request's buffer itself, shaped, no copy.

    Entering it after the camera was closed fails as the real one does (``close`` gives the Picamera2 a new
    ``DmaAllocator`` whose ``mapped_buffers`` do not have the buffer); after ``__exit__`` there is no ``array``
    any more (``del self.__array``)."""

    def __init__(self, request: CompletedRequest, stream: str, reshape: bool = True, write: bool = True,
                 *, _count: bool = True) -> None:
        if isinstance(stream, str):
            request.stream_map[stream]  # KeyError for a stream not configured (or a released request)
        assert request.request is not None
        self.__request = request
        self.__stream = stream
        self.__reshape = reshape
        self.__array: np.ndarray | None = None
        self.__count = _count

    def __enter__(self) -> MappedArray:
        request = self.__request
        if request._allocation != request.picam2._allocation:
            raise RuntimeError("failed to find buffer in DmaSync")
        if self.__count:
            request.rig.arrays_made.append(self.__stream)
            request.rig.arrays_mapped += 1
        array = request._buffer(self.__stream)
        if self.__reshape:
            array = _make_array_shared(array, request.config[self.__stream])
        self.__array = array
        return self

    def __exit__(self, exc_type: Any, exc_value: Any, exc_traceback: Any) -> None:
        if self.__array is not None:
            del self.__array

    @property
    def array(self) -> np.ndarray | None:
        return self.__array


def video_yuv(rgb: tuple[int, int, int]) -> tuple[int, int, int]:
    """Limited-range BT.601 (what the ISP gives in the video colour spaces) of an RGB colour."""
    r, g, b = rgb
    y = 16 + (65.481 * r + 128.553 * g + 24.966 * b) / 255
    u = 128 + (-37.797 * r - 74.203 * g + 112.0 * b) / 255
    v = 128 + (112.0 * r - 93.786 * g - 18.214 * b) / 255
    return round(y), round(u), round(v)


def _i420_buffer(rig: FakeRig, w: int, h: int, stride: int) -> np.ndarray:
    if rig.lores_planes is not None:
        y, u, v = rig.lores_planes(w, h)
    else:
        yv, uv, vv = video_yuv(rig.colour)
        y = np.full((h, w), yv, np.uint8)
        u, v = np.full((h // 2, w // 2), uv, np.uint8), np.full((h // 2, w // 2), vv, np.uint8)
    flat = np.full(h * stride * 3 // 2, rig.pad_value, np.uint8)
    cs = stride // 2
    flat[: h * stride].reshape(h, stride)[:, :w] = y
    chroma = flat[h * stride:].reshape(2, h // 2, cs)
    chroma[0, :, : w // 2] = u
    chroma[1, :, : w // 2] = v
    return flat.reshape(h * 3 // 2, stride)


class Job:
    """picamera2's Job: a future the event loop completes when its frame arrives (here: at ``due``)."""

    def __init__(self, make: Callable[[], Any], due: float | None, rig: FakeRig) -> None:
        self._make = make
        self._due = due  # monotonic time the frame completes; None: never (a stalled sensor)
        self._rig = rig
        self._future: concurrent.futures.Future = concurrent.futures.Future()
        self._future.set_running_or_notify_cancel()
        self._lock = threading.Lock()

    def _run(self) -> None:
        with self._lock:
            if self._future.done():
                return
            try:
                self._future.set_result(self._make())
            except BaseException as exc:
                self._future.set_exception(exc)

    def get_result(self, timeout: float | None = None) -> Any:
        if not self._future.done():
            due = self._due
            if due is None or self._rig.stalled:
                return self._future.result(timeout=timeout)  # only a cancel (or the late race) ends it
            wait = due - time.monotonic()
            if timeout is not None and wait > timeout:
                time.sleep(max(0.0, timeout))
                raise concurrent.futures.TimeoutError()
            if wait > 0:
                time.sleep(wait)
            self._run()
        return self._future.result(timeout=0)

    def cancel(self) -> None:
        with self._lock:
            if not self._future.done():
                self._future.set_exception(concurrent.futures.CancelledError())


class FakePicamera2:
    rig: FakeRig  # set per fake module

    @staticmethod
    def load_tuning_file(tuning_file, dir=None) -> dict[str, Any]:
        raise NotImplementedError  # replaced per module (needs the rig)

    @staticmethod
    def find_tuning_algo(tuning, name) -> dict[str, dict]:
        version = tuning.get("version", 1)  # as picamera2's
        if version == 1:
            return tuning[name]
        return next(algo for algo in tuning["algorithms"] if name in algo)[name]

    @classmethod
    def global_camera_info(cls) -> list[dict[str, Any]]:
        return [dict(c) for c in cls.rig.cameras]

    def __init__(self, camera_num=0, verbose_console=None, tuning=None, allocator=None) -> None:
        if camera_num >= len(self.rig.cameras):
            raise RuntimeError(f"No camera number {camera_num} found")
        if any(other.is_open and other.camera_num == camera_num for other in self.rig.instances):
            # picamera2 _open_camera: self.camera.acquire() "throws an error if it can't open the camera"
            # (libcamera's Camera::acquire: -EBUSY while another Picamera2 has it; message not pinned)
            raise RuntimeError(f"Failed to acquire camera {camera_num}: in use")
        self.camera_num = camera_num
        self.camera_config: dict[str, Any] | None = None
        self.started = False
        self.is_open = True
        self.tuning = copy.deepcopy(tuning)
        self.agc_limits = self._agc_limits(tuning)
        self.controls: dict[str, Any] = {}  # picamera2's Controls: what the next recycled request carries
        self.camera_ctrl_info = dict(self.rig.ctrl_info)
        self._sensor: _Sensor | None = None
        self._next_frame = 0  # frames before this were handed out or lost
        self._lock = threading.RLock()
        self._jobs: list[Job] = []
        self._encoders: set[Encoder] = set()
        self._feeder: tuple[threading.Thread, threading.Event] | None = None
        self.request_lock = threading.Lock()  # picamera2: guards every CompletedRequest's ref_count
        self.stop_count = 0  # picamera2: +1 per stop_ of a started camera (a request from before is not recycled)
        self._allocation = 0  # +1 when close() replaces the allocator (its buffers are freed)
        self._held: set[CompletedRequest] = set()  # handed to the app, ref_count > 0, this allocation
        self._starved_since: float | None = None  # when the app came to hold every buffer
        self._starved_jobs: list[Job] = []  # capture jobs waiting for a buffer to come back
        self.rig.instances.append(self)

    def _agc_limits(self, tuning: Any) -> tuple[float, float]:
        if tuning is None:
            tuning = self.rig.tuning()
        agc = self.find_tuning_algo(tuning, "rpi.agc")
        normal = (agc.get("channels") or [agc])[0]["exposure_modes"]["normal"]
        return max(normal["shutter"]), max(normal["gain"])

    @property
    def camera_controls(self) -> dict[str, tuple[Any, Any, Any]]:
        return dict(self.camera_ctrl_info)

    @property
    def frame_rate(self) -> float:
        """The rate of the frame that completes next (tests read it)."""
        with self._lock:
            s = self._sensor
            if s is None:
                return 0.0
            return 1.0 / s.duration_of(s.next_after(time.monotonic()))

    def _check_controls(self, controls: dict[str, Any]) -> dict[str, Any]:
        for name in controls:  # Controls.__setattr__
            real = VIRTUAL_CONTROLS.get(name, name)
            if real not in self.camera_ctrl_info:
                raise RuntimeError(f"Control {real} is not advertised by libcamera")
        return _libcamera_controls(controls)

    def create_video_configuration(self, main=None, lores=None, raw=None, transform=None, colour_space=None,
                                   buffer_count=6, controls=None, display="main", encode="main", queue=True,
                                   sensor=None, use_case="video") -> dict[str, Any]:
        main = {"format": "XBGR8888", "size": (1280, 720)} | dict(main or {})
        if lores is not None:  # picamera2: YUV420 at the main size unless given, aligned to even (optimal=False)
            lores = {"format": "YUV420", "size": main["size"], "preserve_ar": False} | dict(lores)
            lw, lh = lores["size"]
            lores["size"] = (lw - lw % 2, lh - lh % 2)
        default = DEFAULT_VIDEO_DURATION_US
        controls = {"FrameDurationLimits": (default, default)} | dict(controls or {})
        return {"use_case": use_case, "main": main, "lores": lores, "buffer_count": buffer_count, "queue": queue,
                "controls": controls, "sensor": dict(sensor or {})}

    def create_still_configuration(self, main=None, lores=None, raw=None, transform=None, colour_space=None,
                                   buffer_count=1, controls=None, display=None, encode=None, queue=True,
                                   sensor=None, use_case="still") -> dict[str, Any]:
        main = {"format": "BGR888", "size": self.rig.sensor_resolution} | dict(main or {})
        controls = {"FrameDurationLimits": (100, 1000000 * 1000)} | dict(controls or {})
        return {"use_case": use_case, "main": main, "buffer_count": buffer_count, "queue": queue,
                "controls": controls, "sensor": dict(sensor or {})}

    def configure(self, camera_config=None) -> None:
        self._configure(camera_config)

    def _configure(self, camera_config: dict[str, Any]) -> None:
        """picamera2's configure_: the controls are rebuilt from the config applied."""
        if self.started:
            raise RuntimeError("Camera must be stopped before configuring")
        camera_config = dict(camera_config)
        if self.rig.adjust_size is not None and camera_config.get("use_case") == "video":
            camera_config["main"] = dict(camera_config["main"], size=self.rig.adjust_size)
        main = camera_config["main"] = dict(camera_config["main"])
        mw = main["size"][0]  # libcamera's stride comes back into the stream config (_update_stream_config)
        main["stride"] = -(-mw // self.rig.lores_align) * self.rig.lores_align if main["format"] == "YUV420" \
            else mw * (4 if main["format"].startswith("X") else 3)
        lores = camera_config.get("lores")
        if lores is not None:  # picamera2's check_stream_config / VC4 rule, then libcamera's stride
            lw, lh = lores["size"]
            mw, mh = camera_config["main"]["size"]
            if lw > mw or lh > mh:
                raise RuntimeError("lores stream dimensions may not exceed main stream")
            if lores["format"] not in ("YUV420", "YVU420", "NV12", "NV21"):
                raise RuntimeError("lores stream must be YUV")
            align = self.rig.lores_align
            lores["stride"] = -(-lw // align) * align
        self.controls = self._check_controls(camera_config.get("controls", {}))
        wanted = (camera_config.get("sensor") or {}).get("output_size") or camera_config["main"]["size"]
        camera_config["sensor"] = {"bit_depth": 10, "output_size": _best_mode(self.rig.sensor_modes, wanted)}
        self.camera_config = camera_config

    def camera_configuration(self) -> dict[str, Any]:
        return self.camera_config

    def stream_configuration(self, name="main") -> dict[str, Any]:
        return self.camera_config[name]

    def _start(self, at: float | None = None) -> None:
        """picamera2's start_: the pending controls go with camera.start, then Controls are emptied."""
        with self._lock:
            if self.started:
                return
            t0 = time.monotonic() if at is None else at
            self._sensor = _Sensor(t0, dict(self.controls), self.rig.max_fps)
            self.controls = {}
            self._next_frame = 0
            self.started = True

    def start(self, config=None, show_preview=False) -> None:
        if self.rig.fail_start is not None:
            raise self.rig.fail_start
        if config is not None:
            self.configure(config)
        if not self.camera_config:
            raise RuntimeError("Camera has not been configured")
        self._start()

    def stop(self) -> None:
        with self._lock:
            if self.started:
                self.stop_count += 1
            self.started = False
            self._sensor = None
            self._starved_since = None
            jobs, self._starved_jobs = self._starved_jobs, []
        for job in jobs:
            job.cancel()

    def close(self) -> None:
        self.stop()
        self._stop_feeder()  # real picamera2 leaves encoders registered; the fake just ends its thread
        self.is_open = False
        with self._lock:
            held, self._held = self._held, set()
            self._allocation += 1  # picamera2's close: del self.allocator; self.allocator = DmaAllocator()
        if held:  # freed under the app: what it reads now is not its frame any more (see the module docstring)
            self.rig.closed_while_held += len(held)
            for request in held:
                for buf in request._buffers.values():
                    buf[...] = self.rig.pad_value

    # -- the buffers the app holds (CompletedRequest reference counts) ----------------------------------
    def _hold(self, request: CompletedRequest) -> None:
        """A completed request handed to the app: one buffer less for the sensor."""
        with self._lock:
            if request._allocation != self._allocation or request.stop_count != self.stop_count:
                return
            self._held.add(request)
            cfg = self.camera_config or {}
            if self.started and len(self._held) >= cfg.get("buffer_count", 1) and self._starved_since is None:
                self._starved_since = time.monotonic()

    def _unhold(self, request: CompletedRequest, recycled: bool) -> None:
        """The app gave a request back. Recycled, its buffer is queued again: frames that completed while the
        app held every buffer were lost (``rig.starved``), and a capture waiting for a buffer gets the next."""
        with self._lock:
            self._held.discard(request)
            since, s = self._starved_since, self._sensor
            if since is None or not recycled or s is None:
                return
            self._starved_since = None
            now = time.monotonic()
            first = s.next_after(now)
            lost = max(0, first - max(s.next_after(since), self._next_frame))
            self.rig.starved += lost
            self._next_frame = max(self._next_frame, first)
            jobs, self._starved_jobs = self._starved_jobs, []
            config = self.camera_config
            for job in (j for j in jobs if not j._future.done()):
                sensor, index = self._claim()
                job._make = (lambda sensor=sensor, index=index:
                             CompletedRequest(self, config, sensor, index))
                job._due = due = sensor.time_of(index)
                timer = threading.Timer(max(0.0, due - now), job._run)
                timer.daemon = True
                timer.start()

    def _starved(self) -> bool:
        return self._starved_since is not None

    def set_controls(self, controls) -> None:
        """Delivered with the next request recycled: on frame next + buffer_count + the sensor's delay."""
        self.rig.controls.append(dict(controls))
        mapped = self._check_controls(controls)
        with self._lock:
            s = self._sensor
            if s is None or not self.started:
                self.controls |= mapped
                return
            first = s.next_after(time.monotonic()) + self.camera_config["buffer_count"] + self.rig.sensor_delay_frames
            s.change(first, mapped)

    def _claim(self) -> tuple[_Sensor, int]:
        """The frame a capture job submitted now gets (see the module docstring: queue semantics)."""
        s = self._sensor
        assert s is not None
        nxt = s.next_after(time.monotonic())
        cfg = self.camera_config
        if cfg.get("queue") and cfg.get("buffer_count", 1) > 1 and nxt - 1 >= self._next_frame:
            nxt -= 1  # the newest completed request is kept (_max_queue_len = 1)
        index = max(nxt, self._next_frame) + self.rig.drop_next
        self.rig.drop_next = 0
        self._next_frame = index + 1
        return s, index

    def _submit(self, make: Callable[[], Any], due: float | None, wait: Any) -> Any:
        job = Job(make, due, self.rig)
        if self.rig.fail_with is not None:
            exc, self.rig.fail_with = self.rig.fail_with, None

            def boom() -> Any:
                raise exc

            job = Job(boom, time.monotonic(), self.rig)
        self._jobs = [j for j in self._jobs if not j._future.done()] + [job]  # picamera2's _job_list
        return job if wait is False else job.get_result(timeout=None if wait in (None, True) else wait)

    def capture_request(self, wait=None, signal_function=None, flush=None) -> Any:
        with self._lock:
            if not self.started:
                raise RuntimeError("camera not started")
            config = self.camera_config
            starved = self._starved()
            if starved:  # every buffer is with the app: nothing completes until one comes back
                job = self._submit(lambda: None, None, False)
                self._starved_jobs.append(job)
            else:
                sensor, index = self._claim()
        if starved:
            return job if wait is False else job.get_result(timeout=None if wait in (None, True) else wait)
        return self._submit(lambda: CompletedRequest(self, config, sensor, index), sensor.time_of(index), wait)

    def switch_mode_and_capture_request(self, camera_config, wait=None, signal_function=None, delay=0) -> Any:
        """Switch to ``camera_config``, capture a request, switch back to the saved ``camera_config``: two
        mode switches, the first frame of the still mode, and the video controls rebuilt from its config."""
        if self._encoders:
            # Real picamera2 would go on encoding every request, still-sized ones too, with an encoder set up
            # for the video size: the backend must stop recording first.
            raise RuntimeError("fake picamera2: mode switch while an encoder records")
        with self._lock:
            video = self.camera_config
            now = time.monotonic()
            self.stop()
            self._configure(camera_config)
            self._start(at=now + self.rig.mode_switch_s)
            sensor, index = self._claim()
            index += delay
            due = sensor.time_of(index)
            still_config = self.camera_config
            self.stop()
            self._configure(video)
            self._start(at=due + self.rig.mode_switch_s)
            self.rig.mode_switches += 2
        return self._submit(lambda: CompletedRequest(self, still_config, sensor, index), due, wait)

    # -- recording (picamera2.start_recording / stop_recording) ------------------------------------------
    def start_recording(self, encoder, output, pts=None, config=None, quality=None, name=None) -> None:
        if config is not None:
            self.configure(config)
        if not isinstance(encoder, Encoder):
            raise RuntimeError(f"not an encoder: {encoder!r}")
        if not self.camera_config:
            raise RuntimeError("Camera has not been configured")
        main = self.camera_config["main"]
        if main["format"] not in encoder.FORMATS:  # V4L2Encoder._v4l2_format
            raise RuntimeError("Unrecognised format", main["format"], "for V4L2")
        w, h = main["size"]
        if isinstance(encoder, MJPEGEncoder) and not (CODEC_MIN <= w <= CODEC_MAX and CODEC_MIN <= h <= CODEC_MAX):
            raise OSError(22, f"Invalid argument: bcm2835-codec encode takes {CODEC_MIN}..{CODEC_MAX} per side, "
                              f"not {w}x{h}")
        encoder.output = output
        encoder.width, encoder.height = w, h
        encoder.start(quality=quality)
        self._encoders.add(encoder)
        self.rig.recordings_started += 1
        self.rig.recording_quality = quality
        self.start()
        self._stop_feeder()
        stop = threading.Event()
        thread = threading.Thread(target=self._feed, args=(encoder, stop), daemon=True, name="fake-encoder")
        self._feeder = (thread, stop)
        thread.start()

    def stop_recording(self) -> None:
        self.stop()
        self._stop_feeder()
        encoders, self._encoders = self._encoders, set()
        for encoder in encoders:
            encoder.stop()
        if encoders:
            self.rig.recordings_stopped += 1

    def _stop_feeder(self) -> None:
        feeder, self._feeder = self._feeder, None
        if feeder is not None:
            feeder[1].set()
            if feeder[0] is not threading.current_thread():
                feeder[0].join(10.0)

    def _feed(self, encoder: Encoder, stop: threading.Event) -> None:
        """The camera + V4L2 encoder threads: every sensor frame is encoded, at the time it completes."""
        rig = self.rig
        sensor, index = None, 0
        while not stop.is_set():
            with self._lock:
                if self._sensor is not sensor:
                    sensor = self._sensor
                    index = 0 if sensor is None else sensor.next_after(time.monotonic())
                due = None if sensor is None else sensor.time_of(index)
            if due is None:
                stop.wait(0.01)
                continue
            if stop.wait(max(0.0, due - time.monotonic())):
                return
            index += 1 + rig.drop_next
            rig.drop_next = 0
            if not self.started or rig.stalled or not encoder.running:
                continue
            timestamp_us = encoder._timestamp(int(due * 1e9))
            rgb = np.empty((encoder.height, encoder.width, 3), dtype=np.uint8)
            rgb[...] = rig.colour
            encoder.outputframe(simplejpeg.encode_jpeg(rgb, quality=85, colorspace="RGB"), True, timestamp_us)
            with rig.fed:
                rig.frames_fed += 1
                rig.fed.notify_all()

    def cancel_all_and_flush(self) -> None:
        jobs, self._jobs = self._jobs, []
        for job in jobs:
            if self.rig.complete_late:
                job._run()  # it finished just before the cancel arrived
            else:
                job.cancel()


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

    FORMATS = ("RGB888", "BGR888", "XBGR8888", "XRGB8888", "YUV420", "NV12")  # V4L2Encoder._v4l2_format

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
        """As picamera2's: microseconds since this encoder's first frame (``firsttimestamp`` in µs)."""
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


def fake_modules(rig: FakeRig) -> dict[str, types.ModuleType]:
    """picamera2 and the submodules camctl reads, bound to ``rig``, by module name
    (``rig.module`` is the first; the others are its attributes)."""
    mod = make_fake_picamera2(rig)
    mjpeg_cls = type("MJPEGEncoder", (MJPEGEncoder,), {"rig": rig})
    mjpeg = types.ModuleType("picamera2.encoders.mjpeg_encoder")
    mjpeg.MJPEGEncoder = mjpeg_cls  # type: ignore[attr-defined]
    encoders = types.ModuleType("picamera2.encoders")
    encoders.Quality = Quality  # type: ignore[attr-defined]
    encoders.Encoder = Encoder  # type: ignore[attr-defined]
    encoders.LibavMjpegEncoder = LibavMjpegEncoder  # type: ignore[attr-defined]

    def bare_name(name: str) -> Any:
        # As in picamera2: the bare name is the hardware class only on VC4, else the software one.
        if name == "MJPEGEncoder":
            return mjpeg_cls if rig.hardware_jpeg else LibavMjpegEncoder
        raise AttributeError(f"module 'picamera2.encoders' has no attribute {name!r}")

    encoders.__getattr__ = bare_name  # type: ignore[attr-defined]  # live, as every rig setting
    encoders.mjpeg_encoder = mjpeg  # type: ignore[attr-defined]
    outputs = types.ModuleType("picamera2.outputs")
    outputs.Output = Output  # type: ignore[attr-defined]
    mod.encoders = encoders  # type: ignore[attr-defined]
    mod.outputs = outputs  # type: ignore[attr-defined]
    return {"picamera2": mod, "picamera2.encoders": encoders, "picamera2.encoders.mjpeg_encoder": mjpeg,
            "picamera2.outputs": outputs}


def make_fake_picamera2(rig: FakeRig) -> types.ModuleType:
    """A module object standing in for ``picamera2``, bound to ``rig``."""
    mod = types.ModuleType("picamera2")

    def load_tuning_file(tuning_file, dir=None) -> dict[str, Any]:
        rig.tunings_loaded.append(tuning_file)
        if tuning_file != f"{rig.model}.json" or not rig.has_tuning:
            raise RuntimeError("Tuning file not found")
        return rig.tuning()

    cls = type("Picamera2", (FakePicamera2,), {"rig": rig, "load_tuning_file": staticmethod(load_tuning_file)})
    mod.Picamera2 = cls  # type: ignore[attr-defined]
    mod.CompletedRequest = CompletedRequest  # type: ignore[attr-defined]
    mod.MappedArray = MappedArray  # type: ignore[attr-defined]
    mod.TimeoutError = concurrent.futures.TimeoutError  # type: ignore[attr-defined]
    mod.CancelledError = concurrent.futures.CancelledError  # type: ignore[attr-defined]
    return mod

