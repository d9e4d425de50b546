"""A fake ``picamera2`` module for tests: the subset of picamera2 0.3.x's API that camctl uses, same names
and signatures (tests/test_cameras_picamera2.py checks them against the real source), driven by a
:class:`FakeRig` that the test controls (scene, stalls, libcamera errors, unplugging, dropped frames, whether
the board has the V4L2 hardware JPEG encoder).

Use: ``for name, mod in fake_modules(rig).items(): monkeypatch.setitem(sys.modules, name, mod)`` (registers
``picamera2``, ``picamera2.encoders``, ``picamera2.encoders.mjpeg_encoder`` and ``picamera2.outputs``).

Recording (``start_recording``) runs a thread that, paced by the frame rate, feeds the encoder's output real
JPEGs (simplejpeg) of the rig's scene with timestamps in microseconds relative to the first frame, as
picamera2's ``Encoder._timestamp`` does; the sensor time is ``time.monotonic_ns()``, as libcamera's is.

A ``lores`` stream follows picamera2's rules: YUV420 by default, size rounded down to even, never larger than
main; ``configure`` gives it a ``stride`` (the width rounded up to ``rig.lores_align`` bytes, so there is
padding to crop) and ``make_array("lores")`` returns ``(h * 3 // 2, stride)`` uint8 with the Y, U, V planes
one after another (chroma rows ``stride // 2`` bytes), padding bytes set to ``rig.pad_value``. The planes are
limited-range video YUV of ``rig.colour`` (BT.601), or whatever ``rig.lores_planes(w, h)`` returns.
"""

from __future__ import annotations

import concurrent.futures
import enum
import threading
import time
import types
from collections.abc import Callable
from typing import Any

import numpy as np
import simplejpeg

__all__ = ["FakeRig", "fake_modules", "make_fake_picamera2"]


class FakeRig:
    """What the fake camera hardware does. Counters let tests check that every request is released."""

    def __init__(self, cameras: int = 1, sensor_resolution: tuple[int, int] = (640, 480),
                 hardware_jpeg: bool = False) -> None:
        self.cameras = [{"Model": "imx708", "Location": 2, "Rotation": 180, "Id": f"/base/cam{i}", "Num": i}
                        for i in range(cameras)]
        self.sensor_resolution = sensor_resolution
        self.colour = (255, 0, 0)  # RGB of the scene
        self.stalled = False  # jobs never complete
        self.fail_with: BaseException | None = None  # raised by the next job
        self.fail_start: BaseException | None = None
        self.complete_late = False  # a stalled job completes right when it is cancelled (the race)
        self.sequence = 0
        self.drop_next = 0  # frames the sensor drops before the next one (sequence gap)
        self.created = self.released = 0
        self.controls: list[dict[str, Any]] = []
        self.instances: list[FakePicamera2] = []
        self.t0_ns = time.monotonic_ns()
        self.adjust_size: tuple[int, int] | None = None  # libcamera "adjusts" the main stream to this size
        self.hardware_jpeg = hardware_jpeg  # a VC4 board (Pi 4): the V4L2 MJPEGEncoder constructs
        self.recordings_started = self.recordings_stopped = 0
        self.recording_quality: Any = None
        self.frames_fed = 0  # JPEGs handed to an encoder output
        self.fed = threading.Condition()  # notified after each fed frame (tests wait on it)
        self.lores_align = 64  # lores stride alignment (bytes), like the Pi 5 ISP
        self.pad_value = 0xEE  # what padding bytes hold (a split that does not crop them shows it)
        self.lores_planes: Callable[[int, int], tuple[np.ndarray, np.ndarray, np.ndarray]] | None = None
        self.arrays_made: list[str] = []  # every make_array(name)

    def wait_fed(self, count: int, timeout: float = 10.0) -> bool:
        """Wait until at least ``count`` frames have been fed to outputs in total."""
        with self.fed:
            return self.fed.wait_for(lambda: self.frames_fed >= count, timeout)

    def unplug(self) -> None:
        self.cameras = []

    @property
    def outstanding(self) -> int:
        return self.created - self.released


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
    def __init__(self, picam2: FakePicamera2, config: dict[str, Any]) -> None:
        rig = picam2.rig
        rig.sequence += 1 + rig.drop_next
        rig.drop_next = 0
        self.rig = rig
        self.request = _LibcameraRequest(rig.sequence)
        self.config = config
        fps = float(picam2.frame_rate)
        self._metadata = {"SensorTimestamp": rig.t0_ns + int(rig.sequence * 1e9 / fps), "ExposureTime": 9000,
                          "AnalogueGain": 2.0, "FrameDuration": int(1e6 / fps)}
        self._released = False
        rig.created += 1

    def make_array(self, name: str) -> np.ndarray:
        if self.request is None:
            raise RuntimeError("request used after release")
        stream = self.config.get(name)
        if stream is None:
            raise RuntimeError(f"Stream {name!r} is not defined")
        self.rig.arrays_made.append(name)
        w, h = stream["size"]
        if stream["format"] == "YUV420":
            return _i420_buffer(self.rig, w, h, stream["stride"])
        rgb = np.empty((h, w, 3), dtype=np.uint8)
        rgb[...] = self.rig.colour
        fmt = stream["format"]
        if fmt == "BGR888":
            return rgb
        if fmt == "RGB888":
            return np.ascontiguousarray(rgb[..., ::-1])
        if fmt == "XBGR8888":
            return np.concatenate([rgb, np.full((h, w, 1), 255, np.uint8)], axis=2)
        raise RuntimeError(f"Format {fmt} not supported")

    def get_metadata(self) -> dict[str, Any]:
        return dict(self._metadata)

    def release(self) -> None:
        if self._released:
            raise RuntimeError("CompletedRequest: lock now has negative ref_count")
        self._released = True
        self.request = None
        self.rig.released += 1


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
    def __init__(self, make: Callable[[], Any]) -> None:
        self._make = make
        self._future: concurrent.futures.Future = concurrent.futures.Future()
        self._future.set_running_or_notify_cancel()

    def run(self) -> None:
        try:
            self._future.set_result(self._make())
        except BaseException as exc:
            self._future.set_exception(exc)

    def get_result(self, timeout: float | None = None) -> Any:
        return self._future.result(timeout=timeout)

    def cancel(self) -> None:
        self._future.set_exception(concurrent.futures.CancelledError())


class FakePicamera2:
    rig: FakeRig  # set per fake module

    @classmethod
    def global_camera_info(cls) -> list[dict[str, Any]]:
        return [dict(c) for c in cls.rig.cameras]

    def __init__(self, camera_num=0, verbose_console=None, tuning=None, allocator=None) -> None:
        if camera_num >= len(self.rig.cameras):
            raise RuntimeError(f"No camera number {camera_num} found")
        self.camera_num = camera_num
        self.camera_config: dict[str, Any] | None = None
        self.started = False
        self.is_open = True
        self.frame_rate = 30.0
        self._jobs: list[Job] = []
        self._encoders: set[Encoder] = set()
        self._feeder: tuple[threading.Thread, threading.Event] | None = None
        self.rig.instances.append(self)

    def create_video_configuration(self, main=None, lores=None, raw=None, transform=None, colour_space=None,
                                   buffer_count=6, controls=None, display="main", encode="main", queue=True,
                                   sensor=None, use_case="video") -> dict[str, Any]:
        main = {"format": "XBGR8888", "size": (1280, 720)} | dict(main or {})
        if lores is not None:  # picamera2: YUV420 at the main size unless given, aligned to even (optimal=False)
            lores = {"format": "YUV420", "size": main["size"], "preserve_ar": False} | dict(lores)
            lw, lh = lores["size"]
            lores["size"] = (lw - lw % 2, lh - lh % 2)
        return {"use_case": use_case, "main": main, "lores": lores, "buffer_count": buffer_count, "queue": queue,
                "controls": dict(controls or {})}

    def create_still_configuration(self, main=None, lores=None, raw=None, transform=None, colour_space=None,
                                   buffer_count=1, controls=None, display=None, encode=None, queue=True,
                                   sensor=None, use_case="still") -> dict[str, Any]:
        main = {"format": "BGR888", "size": self.rig.sensor_resolution} | dict(main or {})
        return {"use_case": use_case, "main": main, "buffer_count": buffer_count, "queue": queue,
                "controls": dict(controls or {})}

    def configure(self, camera_config=None) -> None:
        if self.rig.adjust_size is not None:  # picamera2 copies libcamera's validated size back
            camera_config["main"]["size"] = self.rig.adjust_size
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
        self.camera_config = camera_config
        if "FrameRate" in camera_config.get("controls", {}):
            self.frame_rate = camera_config["controls"]["FrameRate"]

    def stream_configuration(self, name="main") -> dict[str, Any]:
        return self.camera_config[name]

    def start(self, config=None, show_preview=False) -> None:
        if self.rig.fail_start is not None:
            raise self.rig.fail_start
        if not self.camera_config:
            raise RuntimeError("Camera has not been configured")
        self.started = True

    def stop(self) -> None:
        self.started = False

    def close(self) -> None:
        self.stop()
        self._stop_feeder()  # real picamera2 leaves encoders registered; the fake just ends its thread
        self.is_open = False

    def set_controls(self, controls) -> None:
        self.rig.controls.append(dict(controls))
        if "FrameRate" in controls:
            self.frame_rate = controls["FrameRate"]

    def _submit(self, make: Callable[[], Any], wait: Any) -> Any:
        if not self.started:
            raise RuntimeError("camera not started")
        job = Job(make)
        if self.rig.fail_with is not None:
            exc, self.rig.fail_with = self.rig.fail_with, None

            def boom() -> Any:
                raise exc

            job = Job(boom)
            job.run()
        elif self.rig.stalled:
            self._jobs.append(job)
        else:
            job.run()
        return job if wait is False else job.get_result(timeout=None if wait in (None, True) else wait)

    def capture_request(self, wait=None, signal_function=None, flush=None) -> Any:
        return self._submit(lambda: CompletedRequest(self, self.camera_config), wait)

    def switch_mode_and_capture_request(self, camera_config, wait=None, signal_function=None, delay=0) -> Any:
        if self._encoders:
            # Real picamera2 would go on encoding every request, still-sized ones too, with an encoder set up
            # for the video size: the backend must stop recording first.
            raise RuntimeError("fake picamera2: mode switch while an encoder records")
        if self.camera_config and self.rig.cameras:
            self.started = True  # switch_mode_ (re)starts the camera, also a stopped one
        video = self.camera_config

        def still() -> CompletedRequest:
            request = CompletedRequest(self, camera_config)
            self.camera_config = video
            return request

        return self._submit(still, wait)

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
        encoder.output = output
        encoder.width, encoder.height = main["size"]
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
        """The camera + V4L2 encoder threads: a JPEG of the scene per frame interval, while streaming."""
        rig = self.rig
        while not stop.wait(1.0 / float(self.frame_rate)):
            if not self.started or rig.stalled or not rig.cameras or not encoder.running:
                continue
            rig.sequence += 1 + rig.drop_next
            rig.drop_next = 0
            timestamp_us = encoder._timestamp(time.monotonic_ns())
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
                job.run()  # it finished just before the cancel arrived
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
    """``sys.modules`` entries for picamera2 and the submodules camctl imports, bound to ``rig``."""
    mod = make_fake_picamera2(rig)
    mjpeg_cls = type("MJPEGEncoder", (MJPEGEncoder,), {"rig": rig})
    mjpeg = types.ModuleType("picamera2.encoders.mjpeg_encoder")
    mjpeg.MJPEGEncoder = mjpeg_cls  # type: ignore[attr-defined]
    encoders = types.ModuleType("picamera2.encoders")
    encoders.Quality = Quality  # type: ignore[attr-defined]
    encoders.Encoder = Encoder  # type: ignore[attr-defined]
    encoders.LibavMjpegEncoder = LibavMjpegEncoder  # type: ignore[attr-defined]
    # As in picamera2: the bare name is the hardware class only on VC4, else the software one.
    encoders.MJPEGEncoder = mjpeg_cls if rig.hardware_jpeg else LibavMjpegEncoder  # type: ignore[attr-defined]
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
    cls = type("Picamera2", (FakePicamera2,), {"rig": rig})
    mod.Picamera2 = cls  # type: ignore[attr-defined]
    mod.CompletedRequest = CompletedRequest  # type: ignore[attr-defined]
    mod.TimeoutError = concurrent.futures.TimeoutError  # type: ignore[attr-defined]
    mod.CancelledError = concurrent.futures.CancelledError  # type: ignore[attr-defined]
    return mod
