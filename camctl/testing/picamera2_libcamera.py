"""The libcamera side of the picamera2 double: sensor timing, requests, buffers, request queue.

:class:`LibcameraCamera` is the base of the ``Picamera2`` facade in
:mod:`~camctl.testing.picamera2_double`: a sensor that runs in real time, controls that arrive
``buffer_count + sensor_delay_frames`` frames late, the Raspberry Pi IPA's control names,
reference-counted requests whose buffers are overwritten once recycled and whose completion costs
DMA syncs and a thread hop, frames lost whenever no request is queued for them, ``MappedArray``
views and YUV420 layouts; and :class:`LibcameraManager`, libcamera's camera manager, which reads
each camera's tuning once, when it is made. Each fact is pinned to the installed picamera2 source
by tests/test_picamera2_strict.py; the facts one by one: docs/picamera2-double.md.
"""

from __future__ import annotations

import bisect
import concurrent.futures
import json
import os
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from camctl.testing.picamera2_double import FakePicamera2, FakeRig

__all__ = ["CONFIG_PATH_ENV", "DEFAULT_VIDEO_DURATION_US", "RPI_IPA_AF_CONTROLS",
           "RPI_IPA_COLOUR_CONTROLS", "RPI_IPA_CONTROLS", "TUNING_FILE_ENV", "VIRTUAL_CONTROLS",
           "CompletedRequest", "Job", "LibcameraCamera", "LibcameraManager", "MappedArray",
           "Sensor", "best_mode", "libcamera_controls", "video_yuv"]

# Controls the Raspberry Pi IPA advertises (raspberrypi/libcamera src/ipa/rpi/common/ipa_base.cpp),
# with their (min, max, default) where the IPA states them (None where it gives an enum or a
# mode-dependent range).
RPI_IPA_CONTROLS: dict[str, tuple[Any, Any, Any]] = {
    "AeEnable": (False, True, None), "ExposureTime": (0, 66666, None),
    "AnalogueGain": (1.0, 16.0, None),
    "AeMeteringMode": (0, 3, 0), "AeConstraintMode": (0, 3, 0), "AeExposureMode": (0, 3, 0),
    "ExposureValue": (-8.0, 8.0, 0.0), "AeFlickerMode": (0, 1, 0),
    "AeFlickerPeriod": (100, 1000000, None),
    "Brightness": (-1.0, 1.0, 0.0), "Contrast": (0.0, 32.0, 1.0), "Sharpness": (0.0, 16.0, 1.0),
    "ScalerCrop": (None, None, None), "FrameDurationLimits": (33333, 120000, None),
    "NoiseReductionMode": (0, 4, 0), "StatsOutputEnable": (False, True, None),
}
RPI_IPA_COLOUR_CONTROLS = {"AwbEnable": (False, True, None), "AwbMode": (0, 7, 0),
                           "ColourGains": (0.0, 32.0, None),
                           "Saturation": (0.0, 32.0, 1.0)}
RPI_IPA_AF_CONTROLS = {"AfMode": (0, 2, 0), "AfRange": (0, 2, 0), "AfSpeed": (0, 1, 0),
                       "AfMetering": (0, 1, 0), "AfWindows": (None, None, None),
                       "AfTrigger": (0, 1, 0), "AfPause": (0, 2, 0),
                       "LensPosition": (0.0, 32.0, 1.0)}
VIRTUAL_CONTROLS = {"FrameRate": "FrameDurationLimits"}  # controls.py _VIRTUAL_FIELDS_MAP_
DEFAULT_VIDEO_DURATION_US = 33333  # create_video_configuration's FrameDurationLimits (33333, 33333)
# libcamera ipa_proxy.cpp ipaConfigurationFile: "LIBCAMERA_" + the IPA name up to its first '/'
# ("rpi/vc4", "rpi/pisp") + "_TUNING_FILE"; global_configuration.cpp: the IPA config path variable
TUNING_FILE_ENV = "LIBCAMERA_RPI_TUNING_FILE"
CONFIG_PATH_ENV = "LIBCAMERA_IPA_CONFIG_PATH"


class LibcameraManager:
    """libcamera's CameraManager (what ``libcamera.CameraManager.singleton()`` gives picamera2).

    Its cameras are registered when it is created (pipeline_base.cpp ``registerCamera`` ->
    ``CameraData::loadIPA``), and that is when each camera's tuning file is resolved, as
    ipa_proxy.cpp ``ipaConfigurationFile`` does: ``LIBCAMERA_RPI_TUNING_FILE`` if set and not empty
    (a file that cannot be read then makes the camera fail to register: "Failed to register camera
    <model>: -22", and it is not listed); else the first ``<dir>/rpi/<vc4|pisp>/<model>.json`` of
    the ``LIBCAMERA_IPA_CONFIG_PATH`` dirs (read at creation, global_configuration.cpp); else the
    system tuning (``rig.tuning()``). The tunings then hold for the manager's life, whatever the
    environment does after. A camera that appears later (hotplug) registers when first seen.
    """

    def __init__(self, rig: FakeRig) -> None:
        self.rig = rig
        rig.managers_created += 1
        self._tunings: dict[str, dict[str, Any] | None] = {}
        for camera in rig.cameras:
            self._register(camera)

    def _register(self, camera: dict[str, Any]) -> None:
        model = camera["Model"]
        path = os.environ.get(TUNING_FILE_ENV) or None
        if path is None:
            for d in os.environ.get(CONFIG_PATH_ENV, "").split(":"):
                candidate = os.path.join(d, "rpi", self.rig.platform, f"{model}.json")
                if d and os.path.isfile(candidate):
                    path = candidate
                    break
        tuning: dict[str, Any] | None
        if path is None:
            tuning = self.rig.tuning()
        else:
            try:
                with open(path) as f:
                    tuning = json.load(f)
            except (OSError, ValueError):
                self.rig.libcamera_log.append(f"Failed to open tuning file {path}")
                self.rig.libcamera_log.append(f"Failed to register camera {model}: -22")
                tuning = None
        self._tunings[camera["Id"]] = tuning

    @property
    def cameras(self) -> list[dict[str, Any]]:
        """The registered cameras, live (a USB camera that leaves ``rig.cameras`` leaves this)."""
        out = []
        for camera in self.rig.cameras:
            if camera["Id"] not in self._tunings:
                self._register(camera)
            if self._tunings[camera["Id"]] is not None:
                out.append(camera)
        return out

    def tuning_of(self, camera_id: str) -> dict[str, Any]:
        """The tuning the camera's IPA loaded at registration."""
        tuning = self._tunings[camera_id]
        assert tuning is not None
        return tuning


class Sensor:
    """Frame completion times of one started sensor: segments ``(first_index, its time,
    controls)``."""

    def __init__(self, t0: float, controls: dict[str, Any], max_fps: float) -> None:
        self.max_fps = max_fps
        first = (0, t0 + self._duration(controls), controls)
        self.segs: list[tuple[int, float, dict[str, Any]]] = [first]

    def _duration(self, controls: dict[str, Any]) -> float:
        default = (DEFAULT_VIDEO_DURATION_US, DEFAULT_VIDEO_DURATION_US)
        lo, _hi = controls.get("FrameDurationLimits", default)
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


def best_mode(modes: list[tuple[int, int]], wanted: tuple[int, int]) -> tuple[int, int]:
    """The sensor mode picamera2's ``_make_libcamera_config`` scores best for ``wanted`` (one bit
    depth here)."""
    def score_format(desired: float, actual: float) -> float:
        score = desired - actual
        return -score / 4 if score < 0 else score * 2

    def score(mode: tuple[int, int]) -> float:
        ar, mode_ar = wanted[0] / wanted[1], mode[0] / mode[1]
        return (score_format(wanted[0], mode[0]) + score_format(wanted[1], mode[1])
                + 1500 * score_format(ar, mode_ar))

    return min(modes, key=score)


def libcamera_controls(controls: dict[str, Any]) -> dict[str, Any]:
    """Virtual controls mapped as picamera2's Controls does (FrameRate -> FrameDurationLimits in
    µs)."""
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
    """picamera2's CompletedRequest (``request.py``): one buffer per stream, a reference count,
    recycled to the camera when the count reaches 0 unless the camera stopped since
    (``stop_count``)."""

    def __init__(self, picam2: FakePicamera2, config: dict[str, Any], sensor: Sensor,
                 index: int) -> None:
        rig = picam2.rig
        self.rig = rig
        self.request: _LibcameraRequest | None = _LibcameraRequest(index)
        self.ref_count = 1
        self.lock = picam2.request_lock
        self.picam2 = picam2
        self.stop_count = picam2.stop_count
        self.config = config
        self.stream_map = {name: name for name in ("main", "lores", "raw")
                           if config.get(name) is not None}
        self._slot = index % config["buffer_count"]  # the allocated buffers this request carries
        self._time = sensor.time_of(index)  # when it completed: the app holds it from then
        self._allocation = picam2._allocation  # the allocator whose buffers this request holds
        self._buffers: dict[str, np.ndarray] = {}
        # picamera2 CompletedRequest.__init__: a DmaSync entered for every buffer of the request
        # (DMA_BUF_IOCTL_SYNC: the CPU's cache made coherent over the whole buffer); exited at the
        # last release. Here: a read of every cache line of the allocated buffer.
        with self.lock:
            self._syncs = [picam2._dma[name][self._slot] for name in self.stream_map
                           if name in picam2._dma]
            for buf in self._syncs:
                _sync(rig, buf)
        self.completed_on = threading.current_thread().name  # picamera2's camera-manager thread
        applied = sensor.controls_of(index)
        duration_us = int(sensor.duration_of(index) * 1e6)
        exposure = min(rig.scene_exposure_us, picam2.agc_limits[0], duration_us)
        gain = min(rig.scene_gain, picam2.agc_limits[1])
        if applied.get("ExposureTime"):
            exposure = min(int(applied["ExposureTime"]), duration_us)
        if applied.get("AnalogueGain"):
            gain = float(applied["AnalogueGain"])
        # libcamera's metadata of a Raspberry Pi camera: ~20 controls, converted by get_metadata
        self._metadata = {"SensorTimestamp": int(sensor.time_of(index) * 1e9),
                          "ExposureTime": int(exposure),
                          "AnalogueGain": float(gain), "FrameDuration": duration_us,
                          "DigitalGain": 1.0, "ColourGains": (1.9, 1.6), "ColourTemperature": 4800,
                          "ColourCorrectionMatrix": (1.7, -0.5, -0.2, -0.3, 1.6, -0.3, -0.1, -0.6,
                                                     1.7),
                          "SensorBlackLevels": (4096, 4096, 4096, 4096), "Lux": 400.0,
                          "AeLocked": False, "FocusFoM": 1000,
                          "ScalerCrop": _Rect(0, 0, 4608, 2592),
                          "ScalerCrops": [_Rect(0, 0, 4608, 2592)],
                          "FrameWallClock": time.time_ns() // 1000,
                          "SensorTemperature": 40.0}
        if "LensPosition" in rig.ctrl_info:
            # the tuning's default: 1 dioptre
            self._metadata["LensPosition"] = float(applied.get("LensPosition", 1.0))
            self._metadata["AfState"] = 0
        rig.created += 1
        picam2._hold(self)

    def _buffer(self, name: str) -> np.ndarray:
        """The stream's capture buffer (1-D, ``stride`` bytes a row), filled with the scene on first
        use."""
        buf = self._buffers.get(name)
        if buf is None and name == "raw":  # the sensor's bytes, as allocated (never checked)
            buf = self._buffers[name] = self.picam2._dma[name][self._slot]
        if buf is None:
            stream = self.config[name]
            w, h = stream["size"]
            fmt = stream["format"]
            if fmt in ("YUV420", "YVU420"):
                buf = _i420_buffer(self.rig, w, h, stream.get("stride", w)).reshape(-1)
            else:
                order = {"BGR888": (0, 1, 2), "RGB888": (2, 1, 0), "XBGR8888": (0, 1, 2),
                         "XRGB8888": (2, 1, 0)}
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
            for buf in self._syncs:  # [sync.__exit__() for sync in self.syncs]
                _sync(self.rig, buf)
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
        # a copy, so safe after the request goes back
        with MappedArray(self, name, _count=False) as m:
            array = m.array
            return np.copy(array) if array.data.c_contiguous else np.ascontiguousarray(array)

    def get_metadata(self) -> dict[str, Any]:
        if self.request is None:
            # real: assert self.request is not None
            raise AssertionError("get_metadata on a released request")
        # picamera2: each libcamera control converted (convert_from_libcamera_type), every call
        return {name: _convert(value) for name, value in self._metadata.items()}


class _Rect:
    """libcamera's Rectangle (picamera2 converts it with ``to_tuple``)."""

    def __init__(self, x: int, y: int, w: int, h: int) -> None:
        self.x, self.y, self.width, self.height = x, y, w, h

    def to_tuple(self) -> tuple[int, int, int, int]:
        return self.x, self.y, self.width, self.height


def _convert(value: Any) -> Any:
    """picamera2's ``utils.convert_from_libcamera_type``."""
    if isinstance(value, _Rect):
        return value.to_tuple()
    if isinstance(value, list | tuple) and value and all(isinstance(v, _Rect) for v in value):
        return [v.to_tuple() for v in value]
    return value


CACHE_LINE = 64


def _sync(rig: FakeRig, buf: np.ndarray) -> None:
    """One DMA_BUF sync of ``buf``: every cache line of it read (its cost grows with its size)."""
    int(buf[::CACHE_LINE].max())
    rig.syncs += 1
    rig.synced_bytes += buf.nbytes


def _make_array_shared(buffer: np.ndarray, config: dict[str, Any]) -> np.ndarray:
    """picamera2 ``Helpers._make_array_shared`` for the formats the double supports: never a
    copy."""
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
    if fmt.startswith(("SRGGB", "SGRBG", "SBGGR", "SGBRG")):  # formats.is_raw
        return buffer.reshape((h, stride))
    raise RuntimeError("Format " + fmt + " not supported")


class MappedArray:
    """picamera2's MappedArray (``request.py``): ``.array`` is the request's buffer itself, shaped,
    no copy.

    Entering it after the camera was closed fails as the real one does (``close`` gives the
    Picamera2 a new ``DmaAllocator`` whose ``mapped_buffers`` do not have the buffer); after
    ``__exit__`` there is no ``array``
    any more (``del self.__array``)."""

    def __init__(self, request: CompletedRequest, stream: str, reshape: bool = True,
                 write: bool = True,
                 *, _count: bool = True) -> None:
        if isinstance(stream, str):
            request.stream_map[stream]  # KeyError: a stream not configured (or a released request)
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


# picamera2's CameraManager.listen thread, one per process: it makes every CompletedRequest
# (handle_request) and wakes the camera's event loop, which completes the job the app waits on
_EVENTS = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="picamera2-double-events")


class Job:
    """picamera2's Job: a future the event loop completes when its frame arrives (here: at
    ``due``)."""

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
            cpu = time.thread_time_ns()
            try:
                self._future.set_result(self._make())
            except BaseException as exc:
                self._future.set_exception(exc)
            self._rig.request_cpu_ns += time.thread_time_ns() - cpu

    def get_result(self, timeout: float | None = None) -> Any:
        if not self._future.done():
            due = self._due
            if due is None or self._rig.stalled:
                # only a cancel (or the late race) ends it
                return self._future.result(timeout=timeout)
            wait = due - time.monotonic()
            if timeout is not None and wait > timeout:
                time.sleep(max(0.0, timeout))
                raise concurrent.futures.TimeoutError()
            if wait > 0:
                time.sleep(wait)
            # completed on picamera2's camera-manager thread, handed to the app's: a thread hop
            _EVENTS.submit(self._run).result()
        return self._future.result(timeout=0)

    def cancel(self) -> None:
        with self._lock:
            if not self._future.done():
                self._future.set_exception(concurrent.futures.CancelledError())


class LibcameraCamera:
    """libcamera's side of one ``Picamera2``: the running sensor, the frame each capture job gets,
    and the buffers the app holds (``CompletedRequest`` reference counts). The facade sets
    ``rig``, ``camera_config`` and ``started``."""

    rig: FakeRig
    camera_config: dict[str, Any] | None
    started: bool

    def __init__(self) -> None:
        self._sensor: Sensor | None = None
        self._next_frame = 0  # frames before this were handed out or lost
        self._lock = threading.RLock()
        self.request_lock = threading.Lock()  # picamera2: guards every CompletedRequest's ref_count
        self.stop_count = 0  # picamera2: +1 per stop_ of a started camera (older requests stay out)
        self._allocation = 0  # +1 when close() replaces the allocator (its buffers are freed)
        self._held: set[CompletedRequest] = set()  # with the app, ref_count > 0, this allocation
        self._starved_jobs: list[Job] = []  # capture jobs waiting for a buffer to come back
        self._reset_queue()

    def _reset_queue(self) -> None:
        """A new stream (start): every request queued to libcamera, no history."""
        self._log: list[tuple[float, int]] = []  # (time, +1 held by the app / -1 queued back)
        self._base = 0  # the held count of the entries folded out of the log
        self._fates: dict[int, bool] = {}  # frame -> captured (False: lost, no buffer queued)
        self._decided = 0  # frames before this have their fate
        self._claimed: set[int] = set()  # frames a capture job was given

    @property
    def frame_rate(self) -> float:
        """The rate of the frame that completes next (tests read it)."""
        with self._lock:
            s = self._sensor
            if s is None:
                return 0.0
            return 1.0 / s.duration_of(s.next_after(time.monotonic()))

    # -- the buffers the app holds, and the frames the sensor loses for want of one ---------------
    def _hold(self, request: CompletedRequest) -> None:
        """A completed request handed to the app: its buffer is not queued back."""
        with self._lock:
            if request._allocation != self._allocation or request.stop_count != self.stop_count:
                return
            self._held.add(request)
            bisect.insort(self._log, (request._time, 1))

    def _unhold(self, request: CompletedRequest, recycled: bool) -> None:
        """The app gave a request back; recycled, its buffer is queued again, and a capture waiting
        for one gets the next frame captured."""
        with self._lock:
            counted = request in self._held
            self._held.discard(request)
            s = self._sensor
            if not (counted and recycled and s is not None):
                return
            now = time.monotonic()
            bisect.insort(self._log, (now, -1))
            jobs, self._starved_jobs = self._starved_jobs, []
            config = self.camera_config
            for job in (j for j in jobs if not j._future.done()):
                claim = self._claim()
                if claim is None:
                    self._starved_jobs.append(job)
                    continue
                sensor, index = claim
                job._make = (lambda sensor=sensor, index=index:
                             CompletedRequest(self, config, sensor, index))
                job._due = due = sensor.time_of(index)
                timer = threading.Timer(max(0.0, due - now), job._run)
                timer.daemon = True
                timer.start()

    def _held_at(self, t: float) -> int:
        return self._base + sum(d for when, d in self._log if when <= t)

    def _latch(self, s: Sensor, k: int) -> float:
        """When frame ``k`` needs a queued request: at the start of frame ``k - 1`` (the CSI-2
        receiver takes the buffer for the next frame at each frame start; with none queued that
        frame goes to a dummy buffer). A request completes ``rig.isp_latency_s`` after its frame
        was read out, which takes the mode's shortest frame duration."""
        return s.time_of(k) - s.duration_of(k) - 1.0 / s.max_fps - self.rig.isp_latency_s

    def _fate_of(self, k: int, ahead: dict[int, bool]) -> bool:
        return k >= 0 and (self._fates[k] if k < self._decided else ahead[k])

    def _captured(self, s: Sensor, k: int, held: int, ahead: dict[int, bool], *,
                  claimed: bool = False) -> bool:
        """Whether a request is queued for frame ``k`` with the app holding ``held`` (each from its
        completion): of the ``buffer_count``, the sensor is writing frame ``k - 1``'s, frame
        ``k - 2``'s is still in the ISP unless it completed within the vertical blanking (shorter
        than ``rig.isp_latency_s``: it is not), and with ``queue=True`` picamera2 keeps the newest
        completed one (not when a capture is waiting for frame ``k``, ``claimed``: picamera2
        hands that request over instead of keeping it)."""
        cfg = self.camera_config or {}
        count = cfg.get("buffer_count", 1)
        keep = 1 if cfg.get("queue") and count > 1 and not claimed else 0
        latch = self._latch(s, k)
        busy = int(self._fate_of(k - 1, ahead))
        if self._fate_of(k - 2, ahead) and s.time_of(k - 2) > latch:
            busy += 1
        return k in self._claimed or held + busy + keep < count

    def _finalize(self, now: float) -> None:
        """Fix the fate of every frame whose request was due by ``now``; the lost ones count in
        ``rig.starved``."""
        s = self._sensor
        if s is None:
            return
        while self._latch(s, self._decided) <= now:
            k = self._decided
            captured = self._captured(s, k, self._held_at(self._latch(s, k)), {})
            self._fates[k] = captured
            self.rig.starved += not captured
            self._decided += 1
        horizon = self._latch(s, self._decided)
        old = [e for e in self._log if e[0] <= horizon - 1.0]
        if old:
            self._base += sum(d for _, d in old)
            self._log = self._log[len(old):]
        for k in [k for k in self._fates if k < self._decided - 2]:
            del self._fates[k]
        self._claimed = {k for k in self._claimed if k >= self._decided - 2}

    def _claim(self) -> tuple[Sensor, int] | None:
        """The frame a capture job submitted now gets (see the module docstring: queue
        semantics), or None while the app holds every buffer (nothing is captured until one comes
        back)."""
        s = self._sensor
        assert s is not None
        now = time.monotonic()
        self._finalize(now)
        nxt = s.next_after(now)
        cfg = self.camera_config
        if cfg.get("queue") and cfg.get("buffer_count", 1) > 1 and nxt - 1 >= self._next_frame:
            nxt -= 1  # the newest completed request is kept (_max_queue_len = 1)
        first = max(nxt, self._next_frame)
        k = first
        while k < self._decided and not self._fates.get(k, False):
            k += 1
        if k >= self._decided:  # not due yet: as the app holds now, unless it gives one back
            held = self._held_at(now)
            if held >= cfg.get("buffer_count", 1):
                return None
            ahead: dict[int, bool] = {}
            for j in range(self._decided, k):
                ahead[j] = self._captured(s, j, held, ahead)
            while not self._captured(s, k, held, ahead, claimed=True):
                ahead[k] = False
                k += 1
        index = k + self.rig.drop_next
        self.rig.drop_next = 0
        self._claimed.add(index)
        self._next_frame = index + 1
        return s, index
