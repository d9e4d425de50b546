"""A simulated ``picamera2`` (a strict double): the ``Picamera2`` facade and the rig.

The subset of picamera2 0.3.x's API that camctl uses, same names and signatures, and the run-time
behaviour of the real stack, each fact pinned to the installed picamera2 source by
tests/test_picamera2_strict.py and tests/test_cameras_picamera2.py. In the package (not tests/)
because ``camctl bench`` measures the camera path on it; never chosen by a config.

Use: ``Picamera2Camera(..., picamera2=rig.module)``: a :class:`FakeRig` is the hardware the test
controls, ``rig.module`` a ``picamera2`` module bound to it (never put in ``sys.modules``). This
module is the facade (:class:`FakePicamera2`: configurations, start, stop, close, captures,
recording); the libcamera side is :mod:`~camctl.testing.picamera2_libcamera`, the encoders
:mod:`~camctl.testing.picamera2_encoders`. What the double models and which real source pins each
fact: docs/picamera2-double.md.
"""

from __future__ import annotations

import concurrent.futures
import functools
import json
import os
import tempfile
import threading
import time
import types
from collections.abc import Callable
from typing import Any

import numpy as np

from camctl.testing.picamera2_encoders import (
    CODEC_MAX,
    CODEC_MIN,
    Encoder,
    LibavMjpegEncoder,
    MJPEGEncoder,
    Output,
    Quality,
    feed,
)
from camctl.testing.picamera2_libcamera import (
    CONFIG_PATH_ENV,
    DEFAULT_VIDEO_DURATION_US,
    RPI_IPA_AF_CONTROLS,
    RPI_IPA_COLOUR_CONTROLS,
    RPI_IPA_CONTROLS,
    TUNING_FILE_ENV,
    VIRTUAL_CONTROLS,
    CompletedRequest,
    Job,
    LibcameraCamera,
    LibcameraManager,
    MappedArray,
    Sensor,
    best_mode,
    libcamera_controls,
    video_yuv,
)

__all__ = ["CODEC_MAX", "CODEC_MIN", "CONFIG_PATH_ENV", "RPI_IPA_AF_CONTROLS",
           "RPI_IPA_COLOUR_CONTROLS", "RPI_IPA_CONTROLS", "TUNING_FILE_ENV", "CameraManager",
           "CompletedRequest", "FakePicamera2", "FakeRig", "MJPEGEncoder", "MappedArray", "Output",
           "Quality", "video_yuv"]

class FakeRig:
    """What the fake camera hardware does. Counters let tests check that every request is
    released."""

    def __init__(self, cameras: int = 1, hardware_jpeg: bool = False, *, lens: bool = True,
                 model: str = "imx708") -> None:
        self.cameras = [{"Model": model, "Location": 2, "Rotation": 180, "Id": f"/base/cam{i}",
                         "Num": i}
                        for i in range(cameras)]
        self.model = model
        self.colour = (255, 0, 0)  # RGB of the scene
        self.stalled = False  # the sensor delivers nothing (jobs never complete)
        self.fail_with: BaseException | None = None  # raised by the next job
        self.fail_start: BaseException | None = None
        self.complete_late = False  # a stalled job completes right when it is cancelled (the race)
        self.drop_next = 0  # frames the sensor drops before the next one (sequence gap)
        self.created = self.released = 0  # CompletedRequests made / whose ref_count reached 0
        self.recycled = 0  # released requests queued back to the camera (not after a stop or close)
        self.arrays_mapped = 0  # MappedArray reads (views of a capture buffer, no copy)
        # the per-request cost: DMA syncs of request buffers (two per buffer: at completion and
        # at the last release), their bytes, and the CPU time spent completing requests
        self.syncs = self.synced_bytes = self.request_cpu_ns = 0
        # frames lost because no request was queued when the sensor needed one (the app held too
        # many buffers)
        self.starved = 0
        # completion to re-queue of a request not held by the app (ISP, IPA, picamera2's threads);
        # not measured on a Pi. Longer than the vertical blanking, it keeps one more buffer busy.
        self.isp_latency_s = 0.005
        self.closed_while_held = 0  # buffers a close freed while the app still held their request
        # a hang in the backend (a driver stuck in an ioctl): the next capture_request, of whichever
        # object asks first, does not return, whatever its wait, until let_go is set; the object
        # keeps its camera acquired meanwhile, until it is closed (from another thread)
        self.hang_next = False
        self.let_go = threading.Event()
        self.stuck = 0  # capture calls stuck now
        self.controls: list[dict[str, Any]] = []  # every set_controls call
        self.instances: list[FakePicamera2] = []
        # libcamera "adjusts" the main stream to this size
        self.adjust_size: tuple[int, int] | None = None
        self.hardware_jpeg = hardware_jpeg  # a VC4 board (Pi 4): the V4L2 MJPEGEncoder constructs
        self.recordings_started = self.recordings_stopped = 0
        self.recording_quality: Any = None
        self.frames_fed = 0  # JPEGs handed to an encoder output
        self.fed = threading.Condition()  # notified after each fed frame (tests wait on it)
        self.lores_align = 64  # lores stride alignment (bytes), like the Pi 5 ISP
        self.pad_value = 0xEE  # what padding bytes hold (a split that does not crop them shows it)
        self.lores_planes: (Callable[[int, int], tuple[np.ndarray, np.ndarray, np.ndarray]]
                            | None) = None
        self.arrays_made: list[str] = []  # every stream read: make_array(name) or a MappedArray
        # timing (see the module docstring)
        self.sensor_delay_frames = 3  # libcamera camera_sensor_properties.cpp: imx708 vblankDelay
        # stop + configure (buffer allocation) + start, each way; not measured on a Pi. On the real
        # stack here a whole full still (both switches, the still's frame, the copy) pauses a 30 fps
        # video 333-692 ms, median 499 (docs/cameras.md, "Full-resolution stills"); this gives ~420
        self.mode_switch_s = 0.15
        # a rate cap over every mode (None: the modes' own); e.g. a slower sensor
        self.max_fps: float | None = None
        self.mode_switches = 0
        # what the module advertises and what AGC meters
        self.ctrl_info = (dict(RPI_IPA_CONTROLS) | RPI_IPA_COLOUR_CONTROLS
                          | (RPI_IPA_AF_CONTROLS if lens else {}))
        self.scene_exposure_us = 30000  # what AGC would choose uncapped (a dull day)
        self.scene_gain = 6.0
        self.tunings_loaded: list[str] = []  # every load_tuning_file call
        self.managers_created = 0  # libcamera CameraManagers made (each reads the tunings anew)
        self.libcamera_log: list[str] = []  # what libcamera logged: tuning files it failed to open
        # False: load_tuning_file finds no file (a sensor without a Raspberry Pi tuning)
        self.has_tuning = True
        # imx708 modes and their top rates (rpicam-hello --list-cameras): the mode the configuration
        # chooses caps FrameRate/FrameDurationLimits (libcamera clamps to its minimum frame length)
        self.mode_fps: dict[tuple[int, int], float] = {(1536, 864): 120.13, (2304, 1296): 56.03,
                                                       (4608, 2592): 14.35}
        # the raw format of every mode (picamera2's sensor_format: the native mode's), 10-bit packed
        self.sensor_format = "SRGGB10_CSI2P"

    @property
    def sensor_modes(self) -> list[tuple[int, int]]:
        return list(self.mode_fps)

    @property
    def sensor_resolution(self) -> tuple[int, int]:
        """The largest mode: picamera2's native mode (``_select_native_mode``, by area), which
        ``Picamera2.sensor_resolution`` is and ``create_still_configuration`` defaults to."""
        return max(self.mode_fps, key=lambda size: size[0] * size[1])

    def fps_of(self, mode: tuple[int, int]) -> float:
        """The top rate of sensor ``mode`` (and of ``max_fps`` where set)."""
        fps = self.mode_fps[tuple(mode)]  # type: ignore[index]
        return fps if self.max_fps is None else min(fps, self.max_fps)

    def wait_fed(self, count: int, timeout: float = 10.0) -> bool:
        """Wait until at least ``count`` frames have been fed to outputs in total."""
        with self.fed:
            return self.fed.wait_for(lambda: self.frames_fed >= count, timeout)

    def unplug(self) -> None:
        """The sensor dies (a loose ribbon cable): it stays listed, nothing completes any more."""
        self.stalled = True

    @property
    def platform(self) -> str:
        """The Raspberry Pi IPA's platform directory: ``vc4`` (Pi 4, which has the hardware JPEG
        encoder) or ``pisp`` (Pi 5)."""
        return "vc4" if self.hardware_jpeg else "pisp"

    def tuning(self) -> dict[str, Any]:
        """The system tuning (what ``load_tuning_file("<model>.json")`` and libcamera read by
        default): a version-2 tuning like the Pi's imx708.json, AGC with one channel (as libcamera
        0.2+ ships it)."""
        modes = {"normal": {"shutter": [100, 15000, 30000, 60000, 120000],
                            "gain": [1.0, 2.0, 4.0, 6.0, 6.0]},
                 "short": {"shutter": [100, 5000, 10000, 20000, 120000],
                           "gain": [1.0, 2.0, 4.0, 6.0, 6.0]}}
        target = "bcm2835" if self.platform == "vc4" else "pisp"
        return {"version": 2.0, "target": target,
                "algorithms": [{"rpi.black_level": {"black_level": 4096}},
                               {"rpi.agc": {"channels": [{"exposure_modes": modes}]}}]}

    @property
    def outstanding(self) -> int:
        return self.created - self.released

    @functools.cached_property
    def module(self) -> types.ModuleType:
        """The simulated ``picamera2`` module bound to this rig: pass it as ``picamera2=``."""
        return _fake_module(self)


class CameraManager:
    """picamera2's ``CameraManager`` (``picamera2.py``): ``Picamera2._cm``, one per process (here:
    per rig, the rig being the process's hardware).

    ``cms`` makes libcamera's manager when first needed (``global_camera_info`` or a
    ``Picamera2()``) and keeps it; ``cleanup`` drops it when the last open camera closes;
    ``global_camera_info`` alone never drops it (no camera was added). ``reset`` drops it and makes
    a new one at once. libcamera's ``CameraManager.singleton()`` hands back the manager still alive
    if anything holds it (an open camera does): only when none is open does a new one come, and
    only a new one reads the tuning environment again.
    """

    def __init__(self, rig: FakeRig) -> None:
        self.rig = rig
        self.cameras: dict[int, FakePicamera2] = {}  # camera_idx -> the open Picamera2
        self._lock = threading.Lock()
        self._cms: LibcameraManager | None = None

    def _singleton(self) -> LibcameraManager:
        alive = [p._manager for p in self.rig.instances if p.is_open]
        return alive[0] if alive else LibcameraManager(self.rig)

    @property
    def cms(self) -> LibcameraManager:
        if self._cms is None:
            self._cms = self._singleton()
        return self._cms

    def reset(self) -> None:
        with self._lock:
            self._cms = None
            self._cms = self._singleton()

    def add(self, index: int, camera: FakePicamera2) -> None:
        with self._lock:
            self.cameras[index] = camera

    def cleanup(self, index: int) -> None:
        with self._lock:
            del self.cameras[index]
            last = not self.cameras
        if last:
            self._cms = None


class FakePicamera2(LibcameraCamera):
    """picamera2's ``Picamera2`` (``picamera2.py``), on the libcamera side of the double."""

    rig: FakeRig  # set per fake module
    _cm: CameraManager  # set per fake module (picamera2: a class attribute, one per process)

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
        """The cameras of picamera2's manager (``Picamera2._cm.cms``: made if there is none, and
        kept), ``Num`` their place in its list."""
        return [dict(c, Num=i) for i, c in enumerate(cls._cm.cms.cameras)]

    def __init__(self, camera_num=0, verbose_console=None, tuning=None, allocator=None) -> None:
        # as picamera2's: a dict goes to a temporary file named by the variable, deleted at the end
        # of __init__; a string is the file name; None removes the variable (the default tuning)
        tuning_file = None
        if tuning is not None:
            if isinstance(tuning, str):
                os.environ[TUNING_FILE_ENV] = tuning
            else:
                tuning_file = tempfile.NamedTemporaryFile("w")  # noqa: SIM115 (closed below)
                json.dump(tuning, tuning_file)
                tuning_file.flush()
                os.environ[TUNING_FILE_ENV] = tuning_file.name
        else:
            os.environ.pop(TUNING_FILE_ENV, None)
        self.is_open = False
        if camera_num >= len(self.global_camera_info()):
            raise RuntimeError(f'No camera number {camera_num} found - use "rpicam-hello '
                               '--list-cameras" to check connected cameras')
        info = self.global_camera_info()[camera_num]
        try:
            if any(other.is_open and other.camera_id == info["Id"]
                   for other in self.rig.instances):
                # picamera2 _open_camera: self.camera.acquire() "throws an error if it can't open
                # the camera" (libcamera's Camera::acquire: -EBUSY while another Picamera2 has it;
                # message not pinned)
                raise RuntimeError(f"Failed to acquire camera {camera_num}: in use")
            self._manager = self._cm.cms  # the camera object keeps its manager alive
            # the limits the camera's IPA loaded when the manager registered it
            self.agc_limits = self._agc_limits(self._manager.tuning_of(info["Id"]))
        finally:
            if tuning_file is not None:
                tuning_file.close()  # delete the temporary file
        super().__init__()
        self.camera_num = self.camera_idx = info["Num"]
        self.camera_id = info["Id"]
        self.sensor_resolution = self.rig.sensor_resolution  # _initialize_camera: the native mode
        self.camera_config: dict[str, Any] | None = None
        self._dma: dict[str, list[np.ndarray]] = {}  # stream -> its buffer_count buffers
        self.allocated_bytes = 0  # what the allocator holds for this camera now
        self.started = False
        self.is_open = True
        # picamera2's Controls: what the next recycled request carries
        self.controls: dict[str, Any] = {}
        self.camera_ctrl_info = dict(self.rig.ctrl_info)
        self._jobs: list[Job] = []
        self._encoders: set[Encoder] = set()
        self._feeder: tuple[threading.Thread, threading.Event] | None = None
        self.rig.instances.append(self)
        self._cm.add(self.camera_idx, self)

    def _agc_limits(self, tuning: dict[str, Any]) -> tuple[float, float]:
        agc = self.find_tuning_algo(tuning, "rpi.agc")
        normal = (agc.get("channels") or [agc])[0]["exposure_modes"]["normal"]
        return max(normal["shutter"]), max(normal["gain"])

    @property
    def camera_controls(self) -> dict[str, tuple[Any, Any, Any]]:
        return dict(self.camera_ctrl_info)

    def _check_controls(self, controls: dict[str, Any]) -> dict[str, Any]:
        for name in controls:  # Controls.__setattr__
            real = VIRTUAL_CONTROLS.get(name, name)
            if real not in self.camera_ctrl_info:
                raise RuntimeError(f"Control {real} is not advertised by libcamera")
        return libcamera_controls(controls)

    def create_video_configuration(self, main=None, lores=None, raw={},  # noqa: B006 (picamera2's)
                                   transform=None, colour_space=None, buffer_count=6, controls=None,
                                   display="main", encode="main", queue=True, sensor=None,
                                   use_case="video") -> dict[str, Any]:
        main = {"format": "XBGR8888", "size": (1280, 720)} | dict(main or {})
        # picamera2: a raw stream unless raw=None, the sensor's format at the main size (configure
        # gives it the sensor mode's size)
        raw = None if raw is None else {"format": self.rig.sensor_format,
                                        "size": main["size"]} | dict(raw)
        # picamera2: YUV420 at the main size unless given, aligned to even (optimal=False)
        if lores is not None:
            lores = {"format": "YUV420", "size": main["size"], "preserve_ar": False} | dict(lores)
            lw, lh = lores["size"]
            lores["size"] = (lw - lw % 2, lh - lh % 2)
        default = DEFAULT_VIDEO_DURATION_US
        controls = {"FrameDurationLimits": (default, default)} | dict(controls or {})
        return {"use_case": use_case, "main": main, "lores": lores, "raw": raw,
                "buffer_count": buffer_count, "queue": queue, "controls": controls,
                "sensor": dict(sensor or {})}

    def create_still_configuration(self, main=None, lores=None, raw={},  # noqa: B006 (picamera2's)
                                   transform=None, colour_space=None, buffer_count=1, controls=None,
                                   display=None, encode=None, queue=True, sensor=None,
                                   use_case="still") -> dict[str, Any]:
        main = {"format": "BGR888", "size": self.sensor_resolution} | dict(main or {})
        raw = None if raw is None else {"format": self.rig.sensor_format,
                                        "size": main["size"]} | dict(raw)
        controls = {"FrameDurationLimits": (100, 1000000 * 1000)} | dict(controls or {})
        return {"use_case": use_case, "main": main, "raw": raw, "buffer_count": buffer_count,
                "queue": queue, "controls": controls, "sensor": dict(sensor or {})}

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
        # libcamera's stride comes back into the stream config (_update_stream_config)
        mw = main["size"][0]
        main["stride"] = (-(-mw // self.rig.lores_align) * self.rig.lores_align
                          if main["format"] == "YUV420"
                          else mw * (4 if main["format"].startswith("X") else 3))
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
        raw = camera_config.get("raw")
        # picamera2 _make_libcamera_config: the sensor's output_size, else raw's size, else main's
        wanted = ((camera_config.get("sensor") or {}).get("output_size")
                  or (raw or {}).get("size") or camera_config["main"]["size"])
        mode = best_mode(self.rig.sensor_modes, wanted)
        camera_config["sensor"] = {"bit_depth": 10, "output_size": mode}
        if raw is not None:  # the mode's size (libcamera's choice, written back by picamera2)
            w = mode[0]
            # CSI-2 packed 10-bit: 5 bytes per 4 pixels, lines aligned to 32 bytes
            raw = camera_config["raw"] = dict(raw, size=mode, stride=-(-(w * 5 // 4) // 32) * 32)
        self.camera_config = camera_config
        self._allocate(camera_config)

    def _allocate(self, config: dict[str, Any]) -> None:
        """picamera2's configure_: ``allocator.allocate`` gives every stream ``buffer_count``
        buffers (dmabufs, mapped; here zeroed memory, paged in once touched)."""
        self._dma = {}
        for name in ("main", "lores", "raw"):
            stream = config.get(name)
            if stream is None:
                continue
            h = stream["size"][1]
            rows = h * 3 // 2 if stream["format"] in ("YUV420", "YVU420", "NV12", "NV21") else h
            self._dma[name] = [np.zeros(int(stream["stride"]) * rows, np.uint8)
                               for _ in range(config["buffer_count"])]
        self.allocated_bytes = sum(b.nbytes for bufs in self._dma.values() for b in bufs)

    def camera_configuration(self) -> dict[str, Any]:
        return self.camera_config

    def stream_configuration(self, name="main") -> dict[str, Any]:
        return self.camera_config[name]

    def _start(self, at: float | None = None) -> None:
        """picamera2's start_: the pending controls go with camera.start, then Controls are
        emptied."""
        with self._lock:
            if self.started:
                return
            t0 = time.monotonic() if at is None else at
            mode = self.camera_config["sensor"]["output_size"]
            self._sensor = Sensor(t0, dict(self.controls), self.rig.fps_of(mode))
            self.controls = {}
            self._next_frame = 0
            self._reset_queue()
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
                self._finalize(time.monotonic())  # the frames lost so far count
            self.started = False
            self._sensor = None
            jobs, self._starved_jobs = self._starved_jobs, []
        for job in jobs:
            job.cancel()

    def close(self) -> None:
        if not self.is_open:
            return
        self.stop()
        # real picamera2 leaves encoders registered; the fake just ends its thread
        self._stop_feeder()
        self._cm.cleanup(self.camera_idx)
        self.is_open = False
        with self._lock:
            held, self._held = self._held, set()
            # picamera2's close: del self.allocator; self.allocator = DmaAllocator()
            self._allocation += 1
            self._dma, self.allocated_bytes = {}, 0
        # freed under the app: what it reads now is not its frame any more (see the module
        # docstring)
        if held:
            self.rig.closed_while_held += len(held)
            for request in held:
                for buf in request._buffers.values():
                    buf[...] = self.rig.pad_value

    def set_controls(self, controls) -> None:
        """Delivered with the next request recycled: on frame next + buffer_count + the sensor's
        delay."""
        self.rig.controls.append(dict(controls))
        mapped = self._check_controls(controls)
        with self._lock:
            s = self._sensor
            if s is None or not self.started:
                self.controls |= mapped
                return
            first = (s.next_after(time.monotonic()) + self.camera_config["buffer_count"]
                     + self.rig.sensor_delay_frames)
            s.change(first, mapped)

    def _submit(self, make: Callable[[], Any], due: float | None, wait: Any) -> Any:
        job = Job(make, due, self.rig)
        if self.rig.fail_with is not None:
            exc, self.rig.fail_with = self.rig.fail_with, None

            def boom() -> Any:
                raise exc

            job = Job(boom, time.monotonic(), self.rig)
        # picamera2's _job_list
        self._jobs = [j for j in self._jobs if not j._future.done()] + [job]
        timeout = None if wait in (None, True) else wait
        return job if wait is False else job.get_result(timeout=timeout)

    def capture_request(self, wait=None, signal_function=None, flush=None) -> Any:
        if self.rig.hang_next:  # stuck in the backend (see FakeRig.hang_next)
            self.rig.hang_next = False
            self.rig.stuck += 1
            self.rig.let_go.wait()
            self.rig.stuck -= 1
        with self._lock:
            if not self.started:
                raise RuntimeError("camera not started")
            config = self.camera_config
            claim = self._claim()
            starved = claim is None
            if starved:  # every buffer is with the app: nothing completes until one comes back
                job = self._submit(lambda: None, None, False)
                self._starved_jobs.append(job)
            else:
                sensor, index = claim
        if starved:
            timeout = None if wait in (None, True) else wait
            return job if wait is False else job.get_result(timeout=timeout)
        return self._submit(lambda: CompletedRequest(self, config, sensor, index),
                            sensor.time_of(index), wait)

    def switch_mode_and_capture_request(self, camera_config, wait=None, signal_function=None,
                                        delay=0) -> Any:
        """Switch to ``camera_config``, capture a request, switch back to the saved
        ``camera_config``: two mode switches, the first frame of the still mode, and the video
        controls rebuilt from its config."""
        if self._encoders:
            # Real picamera2 would go on encoding every request, still-sized ones too, with an
            # encoder set up for the video size: the backend must stop recording first.
            raise RuntimeError("fake picamera2: mode switch while an encoder records")
        with self._lock:
            video = self.camera_config
            now = time.monotonic()
            self.stop()
            self._configure(camera_config)
            self._start(at=now + self.rig.mode_switch_s)
            claim = self._claim()
            assert claim is not None  # a new stream: every buffer queued
            sensor, index = claim
            index += delay
            due = sensor.time_of(index)
            still_config = self.camera_config
            self.stop()
            self._configure(video)
            self._start(at=due + self.rig.mode_switch_s)
            self.rig.mode_switches += 2
        return self._submit(lambda: CompletedRequest(self, still_config, sensor, index), due, wait)

    # -- recording (picamera2.start_recording / stop_recording) ------------------------------------
    def start_recording(self, encoder, output, pts=None, config=None, quality=None,
                        name=None) -> None:
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
        in_range = CODEC_MIN <= w <= CODEC_MAX and CODEC_MIN <= h <= CODEC_MAX
        if isinstance(encoder, MJPEGEncoder) and not in_range:
            raise OSError(22, "Invalid argument: bcm2835-codec encode takes "
                              f"{CODEC_MIN}..{CODEC_MAX} per side, not {w}x{h}")
        encoder.output = output
        encoder.width, encoder.height = w, h
        encoder.start(quality=quality)
        self._encoders.add(encoder)
        self.rig.recordings_started += 1
        self.rig.recording_quality = quality
        self.start()
        self._stop_feeder()
        stop = threading.Event()
        thread = threading.Thread(target=feed, args=(self, encoder, stop), daemon=True,
                                  name="fake-encoder")
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

    def cancel_all_and_flush(self) -> None:
        jobs, self._jobs = self._jobs, []
        for job in jobs:
            if self.rig.complete_late:
                job._run()  # it finished just before the cancel arrived
            else:
                job.cancel()


def _fake_module(rig: FakeRig) -> types.ModuleType:
    """A module object standing in for ``picamera2``, bound to ``rig``, with the submodules camctl
    reads (``encoders``, ``encoders.mjpeg_encoder``, ``outputs``) as its attributes."""
    mod = types.ModuleType("picamera2")

    def load_tuning_file(tuning_file, dir=None) -> dict[str, Any]:
        # the system files only: picamera2 searches its install directories, not libcamera's
        # LIBCAMERA_IPA_CONFIG_PATH
        rig.tunings_loaded.append(tuning_file)
        models = {c["Model"] for c in rig.cameras} | {rig.model}
        if tuning_file.removesuffix(".json") not in models or not rig.has_tuning:
            raise RuntimeError("Tuning file not found")
        return rig.tuning()

    cls = type("Picamera2", (FakePicamera2,),
               {"rig": rig, "load_tuning_file": staticmethod(load_tuning_file),
                "_cm": CameraManager(rig)})
    mod.Picamera2 = cls  # type: ignore[attr-defined]
    mod.CompletedRequest = CompletedRequest  # type: ignore[attr-defined]
    mod.MappedArray = MappedArray  # type: ignore[attr-defined]
    mod.TimeoutError = concurrent.futures.TimeoutError  # type: ignore[attr-defined]
    mod.CancelledError = concurrent.futures.CancelledError  # type: ignore[attr-defined]
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
    return mod
