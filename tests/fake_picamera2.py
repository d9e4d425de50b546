"""A fake ``picamera2`` module for tests: the subset of picamera2 0.3.x's API that camctl uses, same names
and signatures (tests/test_cameras_picamera2.py checks them against the real source), driven by a
:class:`FakeRig` that the test controls (scene, stalls, libcamera errors, unplugging, dropped frames).

Use: ``monkeypatch.setitem(sys.modules, "picamera2", make_fake_picamera2(rig))``.
"""

from __future__ import annotations

import concurrent.futures
import time
import types
from collections.abc import Callable
from typing import Any

import numpy as np

__all__ = ["FakeRig", "make_fake_picamera2"]


class FakeRig:
    """What the fake camera hardware does. Counters let tests check that every request is released."""

    def __init__(self, cameras: int = 1, sensor_resolution: tuple[int, int] = (640, 480)) -> None:
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
        stream = self.config[name]
        w, h = stream["size"]
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
        self.rig.instances.append(self)

    def create_video_configuration(self, main=None, lores=None, raw=None, transform=None, colour_space=None,
                                   buffer_count=6, controls=None, display="main", encode="main", queue=True,
                                   sensor=None, use_case="video") -> dict[str, Any]:
        main = {"format": "XBGR8888", "size": (1280, 720)} | dict(main or {})
        return {"use_case": use_case, "main": main, "buffer_count": buffer_count, "queue": queue,
                "controls": dict(controls or {})}

    def create_still_configuration(self, main=None, lores=None, raw=None, transform=None, colour_space=None,
                                   buffer_count=1, controls=None, display=None, encode=None, queue=True,
                                   sensor=None, use_case="still") -> dict[str, Any]:
        main = {"format": "BGR888", "size": self.rig.sensor_resolution} | dict(main or {})
        return {"use_case": use_case, "main": main, "buffer_count": buffer_count, "queue": queue,
                "controls": dict(controls or {})}

    def configure(self, camera_config=None) -> None:
        self.camera_config = camera_config
        if "FrameRate" in camera_config.get("controls", {}):
            self.frame_rate = camera_config["controls"]["FrameRate"]

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
        video = self.camera_config

        def still() -> CompletedRequest:
            request = CompletedRequest(self, camera_config)
            self.camera_config = video
            return request

        return self._submit(still, wait)

    def cancel_all_and_flush(self) -> None:
        jobs, self._jobs = self._jobs, []
        for job in jobs:
            if self.rig.complete_late:
                job.run()  # it finished just before the cancel arrived
            else:
                job.cancel()


def make_fake_picamera2(rig: FakeRig) -> types.ModuleType:
    """A module object standing in for ``picamera2``, bound to ``rig``."""
    mod = types.ModuleType("picamera2")
    cls = type("Picamera2", (FakePicamera2,), {"rig": rig})
    mod.Picamera2 = cls  # type: ignore[attr-defined]
    mod.CompletedRequest = CompletedRequest  # type: ignore[attr-defined]
    mod.TimeoutError = concurrent.futures.TimeoutError  # type: ignore[attr-defined]
    mod.CancelledError = concurrent.futures.CancelledError  # type: ignore[attr-defined]
    return mod
