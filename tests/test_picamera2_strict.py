"""The strict picamera2 double and the camera fixes it forces.

a) Each run-time behaviour of tests/fake_picamera2.py pinned to the installed picamera2 source
   (read as text or ast, never imported), so an upgrade that changes one fails here.
b) The double really behaves that way.
c) The fixes, each failing on the code before them: the delivered rate after a still, the rate
   after a release edge at a slow ARMED rate, the still's cost to the video and its reported gap,
   the still encode off the capture thread, ``encoder = "auto"`` and the codec size, and
   ``[cameras.controls]`` applied.
"""

from __future__ import annotations

import ast
import concurrent.futures
import itertools
import json
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from fake_picamera2 import CODEC_MAX, CODEC_MIN, FakeRig
from scripted import Sink as ScriptedSink

from camctl.board.cameras.picamera2 import BUFFER_COUNT, CODEC_SIZE, Picamera2Camera, Thinner
from camctl.board.capture import CameraRunner
from camctl.board.config import CameraConfig, CameraControls
from camctl.board.encode import EncoderPool
from camctl.common.frames import EncodedFrame
from camctl.testing import realstack


# --- a) pins --------------------------------------------------------------------------------------
def _root() -> Path:
    """picamera2's source at the pinned release (fetched once into the cache; read, not run)."""
    return realstack.picamera2_source()


def _methods(path: Path, cls: str) -> dict[str, str]:
    tree = ast.parse(path.read_text())
    node = next(n for n in ast.walk(tree) if isinstance(n, ast.ClassDef) and n.name == cls)
    return {f.name: ast.unparse(f) for f in node.body if isinstance(f, ast.FunctionDef)}


@pytest.fixture(scope="module")
def pc() -> dict[str, str]:
    return _methods(_root() / "picamera2.py", "Picamera2")


def test_pin_controls_ride_on_the_next_recycled_request(pc):
    """Fake: a control set before frame k shows on frame k + buffer_count + sensor_delay_frames."""
    assert ("These will be delivered with the next request that gets submitted."
            in pc["set_controls"])
    assert pc["set_controls"].rstrip().endswith("self.controls.set_controls(controls)")
    release = _methods(_root() / "request.py", "CompletedRequest")["release"]
    assert "self.request.set_control(id, value)" in release
    assert "self.picam2.camera.queue_request(self.request)" in release
    assert "self.picam2.controls = Controls(self.picam2)" in release  # delivered once, then emptied
    # every buffer has a request queued from the start: a recycled one is buffer_count frames away
    assert ("num_requests = min([len(self.allocator.buffers(stream)) "
            "for stream in self.streams])" in pc["_make_requests"])
    assert "for request in self._make_requests():" in pc["start_"]
    # libcamera (not installed here): imx708 vblankDelay = 3
    assert FakeRig().sensor_delay_frames == 3


def test_pin_configure_rebuilds_controls_and_a_still_switches_back(pc):
    assert ("self.controls = Controls(self, controls=self.camera_config['controls'])"
            in pc["configure_"])
    body = pc["switch_mode_"]
    assert (body.index("self.stop_()") < body.index("self.configure_(camera_config)")
            < body.index("self.start_()"))
    still = pc["switch_mode_and_capture_request"]
    assert ("preview_config = self.camera_config" in still
            and "self.switch_mode_(preview_config)" in still)
    start = pc["start_"]
    assert ("controls = self.controls.get_libcamera_controls()" in start
            and "self.camera.start(controls)" in start)
    assert "self.controls = Controls(self)" in start
    # the fake's default
    assert "'FrameDurationLimits': (33333, 33333)" in pc["create_video_configuration"]


def _flat(text: str) -> str:
    return "".join(text.split())


def test_pin_queue_false_waits_for_the_next_frame_and_releases_the_rest(pc):
    assert _flat("if camera_config['queue'] and camera_config['buffer_count'] > 1: "
                 "self._max_queue_len = 1 "
                 "else: self._max_queue_len = 0") in _flat(pc["configure_"])
    assert _flat("while len(self.completed_requests) > self._max_queue_len: "
                 "self.completed_requests.pop(0).release()") in _flat(pc["process_requests"])
    assert (_flat("if not self.completed_requests: return (False, None)")
            in _flat(pc["capture_request_"]))


def test_pin_a_mode_switch_restarts_and_reallocates(pc):
    assert "self.camera.stop()" in pc["stop_"]
    assert "self.allocator.allocate(libcamera_config" in pc["configure_"]


def test_pin_cameras_are_listed_from_the_camera_manager(pc):
    """Fake: a dead CSI camera stays listed (libcamera's CameraManager enumerates them once)."""
    assert "enumerate(Picamera2._cm.cms.cameras)" in pc["global_camera_info"]


@pytest.fixture(scope="module")
def manager() -> dict[str, str]:
    return _methods(_root() / "picamera2.py", "CameraManager")


def test_pin_one_camera_manager_per_process_made_lazily_and_kept(pc, manager):
    """Fake ``CameraManager``: ``Picamera2._cm`` is a class attribute (one per process), ``cms``
    makes libcamera's manager when first read and keeps it, ``reset`` makes a new one at once."""
    tree = ast.parse((_root() / "picamera2.py").read_text())
    cls = next(n for n in ast.walk(tree) if isinstance(n, ast.ClassDef) and n.name == "Picamera2")
    assigned = {ast.unparse(n) for n in cls.body if isinstance(n, ast.Assign)}
    assert "_cm = CameraManager()" in assigned
    assert _flat("if self._cms is None: self._cms = libcamera.CameraManager.singleton() "
                 "return self._cms") in _flat(manager["cms"])
    assert _flat("self._cms = None self._cms = libcamera.CameraManager.singleton()") in \
        _flat(manager["reset"])
    from camctl.testing.picamera2_double import CameraManager as Fake

    assert {"cms", "reset", "add", "cleanup"} <= set(vars(Fake))
    assert "self.cameras = {}" in manager["__init__"]


def test_pin_the_manager_is_dropped_when_the_last_open_camera_closes_not_by_listing(pc, manager):
    cleanup = _flat(manager["cleanup"])
    assert _flat("del self.cameras[index] if self.cameras == {}:") in cleanup
    assert cleanup.endswith(_flat("if flag: self.thread.join() self._cms = None"))
    assert "self._cm.cleanup(self.camera_idx)" in pc["close"]
    # listing reads (so makes) the manager and adds no camera: nothing will ever clean it up
    listing = pc["global_camera_info"]
    assert "Picamera2._cm.cms.cameras" in listing and ".add(" not in listing
    # a camera is added to it only once its __init__ completed
    init = pc["__init__"]
    assert init.index("finally:") < init.index("self._cm.add(camera_num, self)")


def test_pin_picamera2_init_hands_the_tuning_to_libcamera_through_the_environment(pc):
    """Fake ``Picamera2.__init__``: a dict tuning is a temporary file the variable names, deleted at
    the end of ``__init__``; a string is the file name; None removes the variable. All before the
    first ``global_camera_info()`` (which makes the manager if there is none)."""
    from camctl.testing.picamera2_double import TUNING_FILE_ENV

    init = pc["__init__"]
    assert TUNING_FILE_ENV == "LIBCAMERA_RPI_TUNING_FILE"
    assert "os.environ['LIBCAMERA_RPI_TUNING_FILE'] = tuning" in init
    assert "tuning_file = tempfile.NamedTemporaryFile('w')" in init
    assert "os.environ['LIBCAMERA_RPI_TUNING_FILE'] = tuning_file.name" in init
    assert "os.environ.pop('LIBCAMERA_RPI_TUNING_FILE', None)" in init
    assert _flat("finally: if tuning_file is not None: tuning_file.close()") in _flat(init)
    first_listing = init.index("self.global_camera_info()")
    assert init.index("os.environ.pop('LIBCAMERA_RPI_TUNING_FILE', None)") < first_listing
    assert init.index("self._open_camera()") < init.index("tuning_file.close()")
    # load_tuning_file reads picamera2's install directories, never LIBCAMERA_IPA_CONFIG_PATH
    load = _methods(_root() / "picamera2.py", "Picamera2")["load_tuning_file"]
    assert "/usr/share/libcamera/ipa/rpi/" in load and "LIBCAMERA" not in load


def test_pin_control_names_are_checked():
    controls = _methods(_root() / "controls.py", "Controls")["__setattr__"]
    assert "if name not in self._picam2.camera_ctrl_info.keys():" in controls
    assert "raise RuntimeError(f'Control {name} is not advertised by libcamera')" in controls


def test_pin_hardware_encoder_node_and_tuning(pc):
    v4l2 = (_root() / "encoders/v4l2_encoder.py").read_text()
    assert "open('/dev/video11'" in v4l2  # bcm2835-codec's ENCODE role: MAX_W_CODEC/MAX_H_CODEC
    assert (CODEC_MIN, CODEC_MAX) == CODEC_SIZE == (32, 1920)
    assert "json.dump(tuning, tuning_file)" in pc["__init__"]
    assert ("return next((algo for algo in tuning['algorithms'] if name in algo))[name]"
            in pc["find_tuning_algo"])
    assert "camera_config['sensor'].get('output_size')" in pc["_make_libcamera_config"]
    # the mode libcamera chose is written back (the double picks it by picamera2's score_mode)
    update = pc["_update_camera_config"]
    assert "sensor_config['output_size'] = utils.convert_from_libcamera_type(" in update
    assert "camera_config['sensor'] = sensor_config" in update
    assert "score += 1500 * score_format(ar, mode_ar)" in pc["_make_libcamera_config"]


def test_pin_mapped_array_is_the_capture_buffer_itself():
    """Lent: ``MappedArray(request, "main", write=False).array``, the request's buffer, no copy."""
    from camctl.testing.picamera2_double import MappedArray as FakeMappedArray

    init = (_root() / "__init__.py").read_text()
    assert "from .request import CompletedRequest, MappedArray" in init
    mapped = _methods(_root() / "request.py", "MappedArray")
    sig = ast.parse(mapped["__init__"]).body[0].args
    assert [a.arg for a in sig.args] == ["self", "request", "stream", "reshape", "write"]
    assert [ast.unparse(d) for d in sig.defaults] == ["True", "True"]
    fake = FakeMappedArray.__init__.__code__
    assert list(fake.co_varnames[:fake.co_argcount]) == ["self", "request", "stream", "reshape",
                                                         "write"]
    assert FakeMappedArray.__init__.__defaults__ == (True, True)
    enter = mapped["__enter__"]
    assert "array = np.array(b, copy=False, dtype=np.uint8)" in enter  # the mmap itself
    assert "array = self.__request.picam2.helpers._make_array_shared(array, config)" in enter
    assert "del self.__array" in mapped["__exit__"]  # no .array after the block
    shared = _methods(_root() / "request.py", "Helpers")["_make_array_shared"]
    calls = {ast.unparse(c) for c in ast.walk(ast.parse(shared)) if isinstance(c, ast.Call)}
    copying = {c for c in calls
               if c.startswith(("np.", "numpy.")) or ".copy(" in c or "ascontiguous" in c}
    # only MJPEG (decoded): the rest are views
    assert copying == {"np.array(Image.open(io.BytesIO(array)))"}
    # BGR888
    assert "image = array.reshape((h, w, 3))" in shared and "array = array[:, :w * 3]" in shared
    # the lent format: what to_rgb returns as is, unconverted (picamera2_formats' colour order)
    jpeg_encoder = (_root() / "encoders/jpeg_encoder.py").read_text()
    assert "'BGR888': 'RGB'" in ast.unparse(ast.parse(jpeg_encoder))


def test_pin_request_reference_counting_and_no_recycling_after_stop(pc):
    """A lent frame acquires a reference; the last release recycles only a running camera's."""
    cr = _methods(_root() / "request.py", "CompletedRequest")
    assert ("self.ref_count: int = 1" in cr["__init__"]
            and "self.stop_count: int = picam2.stop_count" in cr["__init__"])
    assert ("raise RuntimeError('CompletedRequest: acquiring lock with ref_count 0')"
            in cr["acquire"])
    release = cr["release"]
    assert "raise RuntimeError('CompletedRequest: lock now has negative ref_count')" in release
    assert ("if self.picam2.camera and self.stop_count == self.picam2.stop_count "
            "and self.picam2.started:" in release)
    assert "self.picam2.allocator.release(self.request.buffers)" in release
    assert "self.config = {}" in release and "self.request = None" in release
    assert "self.stop_count += 1" in pc["stop_"]
    # make_array: a copy through the same mapping (what the backend does beyond the lend limit)
    assert ("with MappedArray(self, name) as m:" in cr["make_array"]
            and "np.copy(m.array)" in cr["make_array"])


def test_pin_picamera2s_own_encoder_lends_requests_the_same_way():
    multi = _methods(_root() / "encoders/multi_encoder.py", "MultiEncoder")
    assert _flat("if self._running: request.acquire()") in _flat(multi["_encode"])
    enc = multi["do_encode"]
    assert enc.index("buffer = self.encode_func(request, stream)") < enc.index("request.release()")
    assert "with MappedArray(request, name) as m:" in _methods(_root() / "encoders/jpeg_encoder.py",
                                                               "JpegEncoder")["encode_func"]


def test_pin_close_frees_the_buffers_stop_does_not(pc):
    """Why close() waits for lent frames and stop() need not (close_after_loans in
    camctl/board/cameras/picamera2_requests.py)."""
    close = pc["close"]
    assert (close.index("self.stop()") < close.index("self.camera.release()")
            < close.index("del self.allocator"))
    # a new allocator: the old one's buffers are unknown to it
    assert "self.allocator = DmaAllocator()" in close
    assert "allocator" not in pc["stop_"]  # stop leaves every buffer mapped
    dma = _methods(_root() / "allocators/dmaallocator.py", "DmaAllocator")
    assert _flat("if not self.mapped_buffers_used[fd] and fd not in self.libcamera_fds: "
                 "v.close()") in \
        _flat(dma["cleanup"])  # unmapped once not in use and not libcamera's any more
    assert (_flat("self.libcamera_fds = [] self.cleanup() for fd in self.open_fds: os.close(fd)")
            in _flat(dma["close"]))
    # until close the camera stays acquired (the double refuses a second Picamera2 of it)
    assert "self.camera.acquire()" in pc["_open_camera"] and "self.camera.release()" in close
    sync = _methods(_root() / "allocators/dmaallocator.py", "DmaSync")
    # mapping after close
    assert "raise RuntimeError('failed to find buffer in DmaSync')" in sync["__enter__"]


# --- b) the double --------------------------------------------------------------------------------

def _picam2(rig: FakeRig, fps: float, **kw):
    p = rig.module.Picamera2(0)
    kw.setdefault("queue", False)
    p.configure(p.create_video_configuration(main={"format": "BGR888", "size": (64, 48)},
                                             buffer_count=4,
                                             controls={"FrameRate": fps}, **kw))
    p.start()
    return p


def _cam(rig: FakeRig, **kw) -> Picamera2Camera:
    """A camera named "pi" of ``rig``'s simulated picamera2."""
    return Picamera2Camera("pi", picamera2=rig.module, **kw)


def _frame(c: Picamera2Camera, **kw):
    """The camera's next frame, given back at once (as the runner does once it is encoded)."""
    frame = c.capture(**kw)
    if frame.release is not None:
        frame.release()
    return frame


def _take(p):
    r = p.capture_request()
    meta, seq = r.get_metadata(), r.request.buffers["main-stream"].metadata.sequence
    r.release()
    return seq, meta


def test_double_controls_land_buffer_count_plus_delay_frames_late(rig):
    p = _picam2(rig, 50.0)
    _take(p)
    p.set_controls({"FrameRate": 25.0})
    first, meta = _take(p)
    assert meta["FrameDuration"] == 20000
    seq = first
    while meta["FrameDuration"] == 20000:
        seq, meta = _take(p)
    assert seq - first == 4 + rig.sensor_delay_frames and meta["FrameDuration"] == 40000
    p.close()


@pytest.mark.parametrize(("mode", "duration_us"),
                         [((1536, 864), 8324), ((2304, 1296), 17847), ((4608, 2592), 69686)])
def test_double_the_sensor_mode_caps_the_frame_rate(rig, mode, duration_us):
    """IMX708: 120.13, 56.03 and 14.35 fps at most (rpicam-hello --list-cameras); a faster
    FrameRate gets the mode's shortest frame."""
    p = _picam2(rig, 200.0, sensor={"output_size": mode})
    assert p.camera_configuration()["sensor"]["output_size"] == mode
    _, meta = _take(p)
    assert meta["FrameDuration"] == duration_us
    assert duration_us == int(1e6 / rig.mode_fps[mode])
    p.close()


def test_pin_create_video_configuration_adds_a_raw_stream(pc):
    video = pc["create_video_configuration"]
    assert "raw={}" in video.split(")", 1)[0]  # the default: a raw stream unless raw=None
    assert ("raw = self._make_initial_stream_config({'format': self.sensor_format, 'size': "
            "main['size']}, raw, self._raw_stream_ignore_list)" in video)
    assert "self.sensor_format = self._native_mode['format']" in pc["_initialize_camera"]
    assert "self._update_stream_config(camera_config['raw'], libcamera_config.at(self.raw_index))" \
        in pc["_update_camera_config"]
    assert "elif camera_config.get('raw') is not None and 'size' in camera_config['raw']:" in \
        pc["_make_libcamera_config"]


def test_double_video_configuration_allocates_a_raw_stream_at_the_mode_size(rig):
    """camctl's video configuration (raw not given) on an IMX708: 2304x1296 CSI-2 packed 10-bit
    buffers, 2880 bytes a line, ~3.7 MB each, buffer_count of them."""
    p = _picam2(rig, 30.0, sensor={"output_size": (2304, 1296)})
    raw = p.stream_configuration("raw")
    assert (raw["format"], raw["size"], raw["stride"]) == ("SRGGB10_CSI2P", (2304, 1296), 2880)
    r = p.capture_request()
    with rig.module.MappedArray(r, "raw") as m:
        assert m.array.shape == (1296, 2880) and m.array.nbytes == 2304 * 5 // 4 * 1296
    r.release()
    main = 64 * 3 * 48
    assert p.allocated_bytes == 4 * (main + 2304 * 5 // 4 * 1296)  # buffer_count=4
    p.close()
    assert p.allocated_bytes == 0
    q = _picam2(rig, 30.0, raw=None)
    assert q.camera_configuration()["raw"] is None and q.allocated_bytes == 4 * main
    q.close()


def test_pin_every_completed_request_costs_syncs_metadata_and_a_thread_hop(manager):
    cr = _methods(_root() / "request.py", "CompletedRequest")
    init = cr["__init__"]
    assert ("picam2.allocator.sync(self.picam2.allocator, buffer, False) for buffer in "
            "self.request.buffers.values()" in init)
    assert "[sync.__enter__() for sync in self.syncs]" in init
    assert "[sync.__exit__() for sync in self.syncs]" in cr["release"]
    sync = _methods(_root() / "allocators/dmaallocator.py", "DmaSync")
    assert "fcntl.ioctl(self.__fb.planes[0].fd, DMA_BUF_IOCTL_SYNC, dma_sync)" in sync["__enter__"]
    assert "fcntl.ioctl(self.__fb.planes[0].fd, DMA_BUF_IOCTL_SYNC, dma_sync)" in sync["__exit__"]
    # made on the camera manager's thread, which wakes the camera's event loop through a pipe
    handle = manager["handle_request"]
    assert "._requests += [CompletedRequest(req, self.cameras[req.cookie])]" in handle
    assert "os.write(self.cameras[c].notifyme_w, b'\\x00')" in handle
    assert "metadata[k.name] = convert_from_libcamera_type(v)" in cr["get_metadata"]


def test_double_every_request_costs_a_sync_per_buffer_and_a_thread_hop(rig):
    p = _picam2(rig, 100.0)  # main 64x48 BGR888 and the raw stream at 1536x864
    for _ in range(5):
        r = p.capture_request()
        assert r.completed_on != threading.current_thread().name  # another thread made it
        assert r.get_metadata()["ScalerCrop"] == (0, 0, 4608, 2592)  # converted, as picamera2's
        r.release()
    per_request = 64 * 3 * 48 + 1536 * 5 // 4 * 864
    assert rig.syncs == 5 * 2 * 2  # two buffers, each synced at completion and at release
    assert rig.synced_bytes == 5 * 2 * per_request
    assert rig.request_cpu_ns > 0  # real work, on the thread that completes requests
    p.close()


def test_double_mode_switch_costs_time_and_restores_the_configured_rate(rig):
    p = _picam2(rig, 10.0)
    p.set_controls({"FrameRate": 50.0})
    while _take(p)[1]["FrameDuration"] != 20000:
        pass
    t0 = time.monotonic()
    still = p.switch_mode_and_capture_request(p.create_still_configuration())
    assert still.make_array("main").shape == (2592, 4608, 3)  # the full sensor: the largest mode
    still.release()
    _, meta = _take(p)
    assert time.monotonic() - t0 >= 2 * rig.mode_switch_s
    # the FrameRate of the configuration, not the one set since
    assert meta["FrameDuration"] == 100000
    p.close()


def test_double_capture_blocks_a_frame_and_a_late_consumer_loses_frames(rig):
    p = _picam2(rig, 20.0)
    a, ma = _take(p)
    b, mb = _take(p)
    assert (b == a + 1
            and mb["SensorTimestamp"] - ma["SensorTimestamp"] == pytest.approx(50e6, abs=1e3))
    time.sleep(0.2)  # a consumer busy for four frame periods
    called_ns = time.monotonic_ns()
    c, mc = _take(p)
    # the next frame to complete, not one kept from before the call
    assert mc["SensorTimestamp"] > called_ns
    assert c >= b + 5  # the four that completed meanwhile are lost
    p.close()
    # queue=True: the newest completed frame is handed over at once
    q = _picam2(rig, 20.0, queue=True)
    _take(q)
    time.sleep(0.12)
    t0 = time.monotonic()
    _take(q)
    assert time.monotonic() - t0 < 0.04
    q.close()
    assert rig.outstanding == 0


def test_double_dead_camera_stays_listed_and_times_out(rig):
    p = _picam2(rig, 50.0)
    rig.unplug()
    assert len(rig.module.Picamera2.global_camera_info()) == 1
    with pytest.raises(concurrent.futures.TimeoutError):
        p.capture_request(wait=0.1)
    p.close()


def _capped(rig: FakeRig, shutter_max: int) -> dict:
    tuning = rig.tuning()
    for mode in tuning["algorithms"][1]["rpi.agc"]["channels"][0]["exposure_modes"].values():
        mode["shutter"] = [min(v, shutter_max) for v in mode["shutter"]]
    return tuning


def test_double_one_manager_made_when_first_needed_and_dropped_with_the_last_camera(rig):
    Picamera2 = rig.module.Picamera2
    assert rig.managers_created == 0
    Picamera2.global_camera_info()
    Picamera2.global_camera_info()
    assert rig.managers_created == 1  # listing makes it once and keeps it (no camera to clean up)
    p = Picamera2(0)
    assert rig.managers_created == 1  # the camera opens on the manager the listing made
    p.close()
    assert Picamera2._cm._cms is None  # the last camera closed: picamera2's cleanup dropped it
    Picamera2(0).close()
    assert rig.managers_created == 2


def test_double_tuning_is_read_once_when_the_manager_is_made(rig, monkeypatch):
    """Issue 23: a tuning given after the manager exists is ignored; the variable then names a
    deleted file, and the next manager fails to register the camera."""
    Picamera2 = rig.module.Picamera2
    p = Picamera2(0, tuning=_capped(rig, 4000))  # no manager yet: this one reads the tuning
    assert p.agc_limits == (4000, 6.0)
    p.close()
    Picamera2.global_camera_info()  # a new manager, the variable naming the deleted temporary file
    assert Picamera2.global_camera_info() == []
    assert rig.libcamera_log[0].startswith("Failed to open tuning file /")
    assert rig.libcamera_log[1] == "Failed to register camera imx708: -22"
    with pytest.raises(RuntimeError, match="No camera number 0 found"):
        Picamera2(0, tuning=_capped(rig, 4000))  # too late: the manager exists
    monkeypatch.delenv("LIBCAMERA_RPI_TUNING_FILE")
    rig2 = FakeRig()  # a fresh process
    rig2.module.Picamera2.global_camera_info()  # listed first, as camctl's open did
    q = rig2.module.Picamera2(0, tuning=_capped(rig2, 4000))
    assert q.agc_limits == (120000, 6.0)  # the caps never reached libcamera
    q.close()


def test_double_resolves_tunings_as_libcamera_does(rig, tmp_path, monkeypatch):
    from camctl.testing.picamera2_double import CONFIG_PATH_ENV, TUNING_FILE_ENV

    for platform, cap in (("pisp", 5000), ("vc4", 7000)):
        path = tmp_path / "rpi" / platform / "imx708.json"
        path.parent.mkdir(parents=True)
        path.write_text(json.dumps(_capped(rig, cap)))
    monkeypatch.setenv(CONFIG_PATH_ENV, f"{tmp_path / 'none'}:{tmp_path}")
    monkeypatch.setenv(TUNING_FILE_ENV, "")  # empty: as unset
    Picamera2 = rig.module.Picamera2
    p = Picamera2(0, tuning=None)
    assert p.agc_limits == (5000, 6.0)  # the Pi 5's directory of the config path
    other = tmp_path / "other.json"
    other.write_text(json.dumps(_capped(rig, 3000)))
    p.close()
    p = Picamera2(0, tuning=str(other))  # the variable wins over the config path
    assert p.agc_limits == (3000, 6.0)
    Picamera2._cm.reset()  # a camera is open: libcamera's singleton is still alive
    assert rig.managers_created == 2
    p.close()
    monkeypatch.delenv(TUNING_FILE_ENV)
    Picamera2._cm.reset()  # none open: a new manager, reading the environment now
    assert rig.managers_created == 3
    p = Picamera2(0)
    assert p.agc_limits == (5000, 6.0)
    p.close()


@pytest.mark.parametrize("picamera2_rig", [{"lens": False}], indirect=True)  # e.g. an HQ camera
def test_double_refuses_controls_the_camera_does_not_advertise(picamera2_rig):
    rig = picamera2_rig  # no focus lens, no AF controls
    p = _picam2(rig, 30.0)
    with pytest.raises(RuntimeError, match="Control AfMode is not advertised by libcamera"):
        p.set_controls({"AfMode": 0})
    with pytest.raises(RuntimeError, match="Control LensPositon is not advertised"):
        p.set_controls({"LensPositon": 0.0})
    p.close()


@pytest.fixture(scope="module")
def raised() -> dict[str, list[str]]:
    """The messages of the errors CompletedRequest's methods raise in picamera2's request.py (module
    scope: read once)."""
    return {name: [n.exc.args[0].value for n in ast.walk(ast.parse(src)) if isinstance(n, ast.Raise)
                   and isinstance(n.exc.args[0], ast.Constant)]
            for name, src in _methods(_root() / "request.py", "CompletedRequest").items()}


def test_double_counts_references_with_the_real_errors(raised, rig):
    p = _picam2(rig, 100.0)
    r = p.capture_request()
    r.acquire()
    r.release()
    assert rig.outstanding == 1 and r.make_array("main").shape == (48, 64, 3)  # one reference left
    r.release()
    assert rig.outstanding == 0 and rig.recycled == 1
    [negative] = raised["release"]
    with pytest.raises(RuntimeError, match=negative):
        r.release()
    r = p.capture_request()
    r.release()
    [zero] = raised["acquire"]
    with pytest.raises(RuntimeError, match=zero):
        r.acquire()
    # config emptied at release
    with pytest.raises(RuntimeError, match="Stream 'main' is not defined"):
        r.make_array("main")
    held = p.capture_request()
    p.stop()
    held.release()  # after a stop: given back, not recycled to the camera (stop_count)
    assert rig.recycled == 2 and rig.outstanding == 0
    p.close()


def test_double_mapped_array_is_a_view_with_picamera2s_shapes(rig):
    MappedArray = rig.module.MappedArray  # exported by the module, as picamera2 does
    rig.colour = (1, 2, 3)
    p = _picam2(rig, 100.0, lores={"size": (40, 30)}, raw=None)
    r = p.capture_request()
    with MappedArray(r, "main", write=False) as m:
        view = m.array
        assert (view.shape == (48, 64, 3) and view[0, 0].tolist() == [1, 2, 3]
                and not view.flags.owndata)
        with MappedArray(r, "main") as again:  # the same buffer, mapped twice
            assert np.shares_memory(view, again.array)
        copy = r.make_array("main")
        assert not np.shares_memory(copy, view)
    with pytest.raises(AttributeError):
        m.array  # noqa: B018  (picamera2: del self.__array)
    with MappedArray(r, "lores") as m:
        stride = p.stream_configuration("lores")["stride"]
        # _make_array_shared: YUV420 keeps its padding
        assert m.array.shape == (30 * 3 // 2, stride)
    with pytest.raises(KeyError):
        MappedArray(r, "raw")
    r.release()
    # recycled: the sensor writes the buffer again
    assert view[0, 0].tolist() == [rig.pad_value] * 3
    held = p.capture_request()
    p.close()
    assert rig.closed_while_held == 1  # freed under the app
    with pytest.raises(RuntimeError, match="failed to find buffer in DmaSync"):
        MappedArray(held, "main").__enter__()
    held.release()
    assert rig.outstanding == 0


def _video(rig: FakeRig, fps: float, **kw):
    """picamera2's video configuration as camctl makes it (buffer_count 6, queue=False)."""
    p = rig.module.Picamera2(0)
    p.configure(p.create_video_configuration(main={"format": "BGR888", "size": (64, 48)},
                                             queue=False, controls={"FrameRate": fps}, **kw))
    p.start()
    return p


@pytest.mark.parametrize(("fps", "can_hold"), [(30.0, 4), (200.0, 3)])
def test_double_a_frame_is_lost_whenever_no_request_is_queued_for_it(rig, fps, can_hold):
    """buffer_count=6, queue=False (picamera2 re-queues a request at its last release): at each
    frame start the sensor needs a request queued for the next frame, while it writes the current
    one and the one before is in the ISP unless the vertical blanking outlasted that. So in the
    1536x864 mode (120.13 fps) the app can hold 4 at 30 fps, 3 at the mode's top rate; one more and
    frames are lost, though captures go on."""
    p = _video(rig, fps)
    held = [p.capture_request() for _ in range(can_hold)]
    time.sleep(0.2)
    assert rig.starved == 0
    held.append(p.capture_request())  # one more
    time.sleep(0.2)
    r = p.capture_request()  # not every buffer is held: frames still come
    r.release()
    p.stop()
    assert rig.starved >= 2
    for h in held:
        h.release()
    p.close()
    assert rig.outstanding == 0


def test_double_app_holding_every_buffer_starves_the_sensor(rig):
    p = _video(rig, 30.0, buffer_count=4)
    held = [p.capture_request() for _ in range(4)]  # the app has every buffer
    last = held[-1].request.buffers["main-stream"].metadata.sequence
    job = p.capture_request(wait=False)
    time.sleep(0.2)  # six frame periods with nowhere to write them
    assert not job._future.done()
    held.pop(0).release()  # one buffer back
    r = job.get_result(timeout=1.0)
    seq = r.request.buffers["main-stream"].metadata.sequence
    r.release()
    assert rig.starved >= 5 and seq >= last + 1 + rig.starved  # the lost frames are a sequence gap
    for h in held:
        h.release()
    assert rig.outstanding == 0
    p.close()


# --- c) the fixes ---------------------------------------------------------------------------------
class Sink(ScriptedSink):
    """The shared sink (tests/scripted.py), and the video frames of a phase."""

    def video(self, phase: str | None = None) -> list[EncodedFrame]:
        with self.cond:
            return [f for f in self.frames if not f.still and (phase is None or f.phase == phase)]


def _cfg(armed: float, descent: float, **kw) -> CameraConfig:
    return CameraConfig(name="pi", size=(64, 48), encoder="software", pretrigger_s=0.0,
                        fps=(("ARMED", armed), ("DESCENT", descent), ("TOUCHDOWN", descent)), **kw)


def _fly(rig: FakeRig, cfg: CameraConfig, pool=None) -> tuple[CameraRunner, Sink, EncoderPool]:
    pool = pool or EncoderPool(1)
    sink = Sink()
    runner = CameraRunner(Picamera2Camera.from_config(cfg, picamera2=rig.module), cfg, pool, sink)
    runner.start()
    return runner, sink, pool


def _intervals(frames: list[EncodedFrame]) -> list[float]:
    return [(b.timestamp_ns - a.timestamp_ns) / 1e6 for a, b in itertools.pairwise(frames)]


def _assert_at_rate(frames: list[EncodedFrame], period_ms: float) -> None:
    """Consecutive frames are one period apart; a frame a busy test machine lost (queue=False: a
    late consumer loses frames, as on a Pi) leaves a whole number of periods and exactly that gap in
    ``seq``."""
    assert len(frames) >= 3
    for a, b in itertools.pairwise(frames):
        gap_ms, slots = (b.timestamp_ns - a.timestamp_ns) / 1e6, b.seq - a.seq
        assert slots >= 1 and gap_ms == pytest.approx(slots * period_ms, abs=2), \
            (a.seq, b.seq, gap_ms, period_ms)


def test_release_edge_reaches_the_descent_interval_within_100_ms_at_half_an_fps_armed(rig):
    runner, sink, pool = _fly(rig, _cfg(0.5, 30.0))
    try:
        runner.set_phase("ARMED")
        deadline = time.monotonic() + 20
        # ARMED frames: counted, not kept
        while runner.stats.frames_captured < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert runner.stats.frames_captured >= 2
        edge_ns = time.monotonic_ns()
        runner.set_phase("DESCENT")
        sink.wait_for(lambda fs: len([f for f in fs if f.timestamp_ns > edge_ns]) >= 4, timeout=5.0)
    finally:
        runner.stop()
        pool.close()
    after = [f for f in sink.video() if f.timestamp_ns > edge_ns]
    # the first frame after the edge is at most a sensor period (33 ms) late, and the rate holds
    # from it
    assert (after[0].timestamp_ns - edge_ns) / 1e6 < 100
    _assert_at_rate(after[:4], 1000 / 30)


def test_rate_after_a_still_is_the_phase_rate_and_the_still_costs_no_video(rig):
    cfg = _cfg(2.0, 25.0, stills=("separation",))
    runner, sink, pool = _fly(rig, cfg)
    try:
        runner.set_phase("DESCENT")
        sink.wait_for(lambda fs: len(fs) >= 3)
        runner.request_still("separation")
        sink.wait_for(lambda fs: any(f.still for f in fs))
        still = next(f for f in sink.frames if f.still)
        sink.wait_for(lambda fs: len([f for f in fs
                                      if not f.still and f.timestamp_ns > still.timestamp_ns]) >= 3)
    finally:
        runner.stop()
        pool.close()
    video = sink.video("DESCENT")
    after = [f for f in video if f.timestamp_ns > still.timestamp_ns]
    _assert_at_rate(after[:3], 40)  # 25 fps from the first frame
    assert rig.mode_switches == 0
    # the reported gap is the real one: the longest interval of the stored video across the still
    around = [f for f in video if f.timestamp_ns < still.timestamp_ns][-1:] + \
        [f for f in video if f.timestamp_ns >= still.timestamp_ns][:2]
    real = max(_intervals(around))
    assert still.meta["video_gap_ms"] == pytest.approx(real, abs=0.01)
    assert still.meta["video_gap_ms"] <= 2 * 40 + 1


class GatedPool(EncoderPool):
    """The real pool, but a quality-95 (still) encode waits for ``gate``."""

    def __init__(self) -> None:
        super().__init__(2)
        self.gate = threading.Event()
        self.still_started = threading.Event()

    # kw: value (the encoder pool's value order)
    def submit(self, image, quality=85, *, colorspace="RGB", **kw):
        if quality != 95:
            return super().submit(image, quality, colorspace=colorspace, **kw)

        def slow():
            self.still_started.set()
            self.gate.wait(20)
            future = super(GatedPool, self).submit(image, quality, colorspace=colorspace, **kw)
            return future.result()

        return self._pool.submit(slow)


def test_the_still_encode_never_blocks_the_capture_thread(rig):
    pool = GatedPool()
    runner, sink, _ = _fly(rig, _cfg(50.0, 50.0, stills=("separation",)), pool)
    try:
        runner.set_phase("DESCENT")
        sink.wait_for(lambda fs: len(fs) >= 2)
        runner.request_still("separation")
        assert pool.still_started.wait(10)
        captured = runner.stats.frames_captured
        deadline = time.monotonic() + 20
        while runner.stats.frames_captured < captured + 5 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert runner.stats.frames_captured >= captured + 5  # video goes on while the still encodes
        assert not any(f.still for f in sink.frames)
        pool.gate.set()
        sink.wait_for(lambda fs: any(f.still for f in fs))
    finally:
        pool.gate.set()
        runner.stop()
        pool.close()
    seqs = [f.seq for f in sink.video("DESCENT")]
    assert seqs == sorted(seqs)


def test_auto_encoder_uses_hardware_only_where_the_size_fits_the_codec(hw_rig):
    big = _cam(hw_rig, size=(2304, 1296), fps=10.0, encoder="auto")
    with big:
        assert big.encoder_in_use == "software"
    with pytest.raises(Exception,
                       match=r"2304x1296 is outside the bcm2835-codec encoder's 32\.\.1920"):
        _cam(hw_rig, size=(2304, 1296), fps=10.0, encoder="hardware").open()
    small = _cam(hw_rig, size=(1920, 1080), fps=10.0, encoder="auto")
    with small:
        assert small.encoder_in_use == "hardware"


def test_controls_are_applied_at_open(rig):
    controls = CameraControls(af_mode="manual", lens_position=0.0, exposure_max_us=4000,
                              analogue_gain_max=2.0, sensor_mode=(2304, 1296))
    with _cam(rig, size=(64, 48), fps=30.0, encoder="software", controls=controls) as c:
        picam2 = rig.instances[0]
        applied = picam2.camera_config["controls"]
        assert applied["AfMode"] == 0 and applied["LensPosition"] == 0
        assert picam2.camera_config["sensor"]["output_size"] == (2304, 1296)
        assert rig.tunings_loaded == ["imx708.json"]
        frame = _frame(c)
        assert frame.exposure_us <= 4000 and frame.analogue_gain <= 2.0
        assert c.unset_controls == [] and c.sensor_mode_in_use == (2304, 1296)
    with _cam(rig, size=(64, 48), fps=30.0, encoder="software",
                         # an HQ camera's mode
                         controls=CameraControls(sensor_mode=(2028, 1520))) as c:
        assert c.sensor_mode_in_use == (2304, 1296)
        assert c.unset_controls == ["sensor_mode: 2028x1520 asked, the sensor has no such mode "
                                    "and runs 2304x1296"]
    with _cam(rig, size=(1280, 720), fps=30.0, encoder="software") as c:
        # what a 720p request alone gets on an IMX708: the crop
        assert c.sensor_mode_in_use == (1536, 864)
    with _cam(rig, size=(64, 48), fps=30.0, encoder="software") as c:
        assert _frame(c).exposure_us == rig.scene_exposure_us  # uncapped: what the AGC chose


@pytest.mark.parametrize("picamera2_rig", [{"lens": False, "model": "imx477"}], indirect=True)
def test_focus_controls_on_a_camera_without_a_lens_are_reported_not_fatal(picamera2_rig):
    rig = picamera2_rig
    with _cam(rig, size=(64, 48), fps=30.0, encoder="software",
                         controls=CameraControls(af_mode="manual", lens_position=0.0)) as c:
        _frame(c)
        assert "AfMode" not in rig.instances[0].camera_config["controls"]
    assert c.unset_controls == ["AfMode: not advertised by camera 0 (no focus lens)",
                                "LensPosition: not advertised by camera 0 (no focus lens)"]


def test_thinner_keeps_the_rate_without_drift_and_counts_only_missed_slots():
    t = Thinner(12.0, 30.0)
    period = int(1e9 / 30)
    kept = [i for i in range(300) if t.keep(i * period) is not None]
    assert len(kept) == pytest.approx(120, abs=1)  # 12 of 30 fps, no drift over 10 s
    assert t.next_seq == len(kept)
    t = Thinner(30.0, 30.0)
    # two lost frames: a gap of 2
    assert [t.keep(i * period) for i in (0, 1, 2, 5, 6)] == [0, 1, 2, 5, 6]
    t.set_fps(2.0, 30.0)  # slower: the frame already due is kept, then every 15th
    assert t.keep(7 * period) == 7 and t.keep(21 * period) is None and t.keep(22 * period) == 8
    t.set_fps(30.0, 30.0)
    assert t.keep(23 * period) == 9  # faster: the very next sensor frame


def test_from_config_runs_the_sensor_at_the_flight_maximum(rig):
    cfg = _cfg(1.0, 30.0)
    c = Picamera2Camera.from_config(cfg, picamera2=rig.module)
    assert c.fps == 1.0 and c.sensor_fps == 30.0 == cfg.sensor_fps()
    with c:
        assert rig.instances[0].camera_config["controls"]["FrameRate"] == 30.0
        assert rig.instances[0].camera_config["buffer_count"] == BUFFER_COUNT


def test_a_usb_camera_leaving_the_list_is_a_disconnect(rig):
    from camctl.exc import CameraDisconnected

    c = _cam(rig, size=(64, 48), fps=30.0, encoder="software")
    with c:
        _frame(c)
        rig.cameras = []  # a USB camera does leave libcamera's list (a CSI one never does)
        rig.fail_with = RuntimeError("device lost")
        with pytest.raises(CameraDisconnected, match="camera 0 disappeared during capture_request"):
            _frame(c)
    assert rig.outstanding == 0


def test_a_rate_above_the_sensor_rate_speeds_the_sensor_up_late(rig):
    with _cam(rig, size=(64, 48), fps=20.0, encoder="software") as c:
        _frame(c)
        c.set_fps(40.0)  # beyond the 20 fps the sensor was opened at: set_controls, N frames late
        assert rig.controls == [{"FrameRate": 40.0}] and c.sensor_fps == 40.0
        durations = [_frame(c).frame_duration_us
                     for _ in range(BUFFER_COUNT + rig.sensor_delay_frames + 2)]
    assert durations[0] == 50000 and durations[-1] == 25000


def test_hardware_frames_are_thinned_too(hw_rig):
    with _cam(hw_rig, size=(64, 48), fps=25.0, sensor_fps=100.0, encoder="hardware") as c:
        frames = [c.capture(timeout_s=5.0) for _ in range(5)]
    intervals = _intervals(frames)  # type: ignore[arg-type]
    assert all(i == pytest.approx(40, abs=1) for i in intervals), intervals
    assert ([f.seq for f in frames] == list(range(frames[0].seq, frames[0].seq + 5))
            and c.thinned >= 12)


def test_rate_after_a_reopen_is_the_phase_rate(rig):
    """A fault closes and reopens the camera (a mode switch in all but name): the phase rate holds
    from the first frame after it. (Guard: this one passed on the code before the fixes too.)"""
    runner, sink, pool = _fly(rig, _cfg(2.0, 25.0))
    try:
        runner.set_phase("DESCENT")
        sink.wait_for(lambda fs: len(fs) >= 3)
        rig.fail_with = RuntimeError("libcamera: dequeue failed")
        deadline = time.monotonic() + 10
        while runner.stats.restarts < 1 and time.monotonic() < deadline:
            time.sleep(0.005)
        # every frame of the old camera is older; the reopen comes after backoff
        faulted_ns = time.monotonic_ns()
        sink.wait_for(lambda fs: len([f for f in fs if f.timestamp_ns > faulted_ns]) >= 4)
    finally:
        runner.stop()
        pool.close()
    assert runner.stats.restarts == 1
    after = [f for f in sink.video() if f.timestamp_ns > faulted_ns]  # all from the reopened camera
    _assert_at_rate(after, 40)
    assert len(rig.instances) == 2


def test_every_control_name_the_backend_writes_is_declared_and_advertised():
    """CONTROLS_USED is what the backend sets, and each is one the Raspberry Pi IPA advertises (or
    picamera2's virtual FrameRate): a misspelt name in the table would be refused on the Pi, so it
    fails here."""
    import camctl.board.cameras.picamera2 as backend
    from camctl.testing.picamera2_double import (
        RPI_IPA_AF_CONTROLS,
        RPI_IPA_COLOUR_CONTROLS,
        RPI_IPA_CONTROLS,
    )

    advertised = ({"FrameRate"} | set(RPI_IPA_CONTROLS) | set(RPI_IPA_AF_CONTROLS)
                  | set(RPI_IPA_COLOUR_CONTROLS))
    files = sorted(Path(backend.__file__).parent.glob("picamera2*.py"))  # the backend and its parts
    assert len(files) > 1
    strings = {n.value for f in files for n in ast.walk(ast.parse(f.read_text()))
               if isinstance(n, ast.Constant) and isinstance(n.value, str)}
    written = (strings & advertised) - set(backend.METADATA_USED)  # metadata keys are read, not set
    assert written == set(backend.CONTROLS_USED) == {"FrameRate", "AfMode", "LensPosition"}
    assert set(backend.CONTROLS_USED) <= advertised


def test_two_stills_in_a_row_both_report_their_gap_and_hold_nothing_up(rig):
    runner, sink, pool = _fly(rig, _cfg(2.0, 25.0, stills=("separation", "touchdown")))
    try:
        runner.set_phase("DESCENT")
        sink.wait_for(lambda fs: len(fs) >= 2)
        runner.request_still("separation")
        # taken on the next loop: before a video frame followed the first
        runner.request_still("touchdown")
        sink.wait_for(lambda fs: len([f for f in fs if f.still]) == 2)
        n = len(sink.video())
        sink.wait_for(lambda fs: len([f for f in fs if not f.still]) >= n + 3)
    finally:
        runner.stop()
        pool.close()
    stills = [f for f in sink.frames if f.still]
    assert [s.meta["event"] for s in stills] == ["separation", "touchdown"]
    assert all(s.meta["video_gap_ms"] is not None and s.meta["video_gap_ms"] <= 2 * 40 + 1
               for s in stills)
    assert runner.stats.dropped == {}


def test_every_public_method_of_the_double_has_the_real_parameters():
    """Not only what the backend uses (tests/test_cameras_picamera2.py checks those): the double's
    tests use create_still_configuration and switch_mode_and_capture_request too."""
    from camctl.testing.picamera2_double import FakePicamera2

    tree = ast.parse((_root() / "picamera2.py").read_text())
    cls = next(n for n in ast.walk(tree) if isinstance(n, ast.ClassDef) and n.name == "Picamera2")
    real = {f.name: [a.arg for a in (*f.args.posonlyargs, *f.args.args, *f.args.kwonlyargs)]
            for f in cls.body if isinstance(f, ast.FunctionDef)}
    checked = 0
    for name, member in vars(FakePicamera2).items():
        fn = member.__func__ if isinstance(member, staticmethod | classmethod) else member
        if (name.startswith("_") and name != "__init__") or not callable(fn) or name not in real:
            continue
        code = fn.__code__
        params = list(code.co_varnames[:code.co_argcount + code.co_kwonlyargcount])
        if isinstance(member, classmethod):
            # global_camera_info: a staticmethod in picamera2, a classmethod here (it needs the rig)
            continue
        assert params == real[name], (name, params, real[name])
        checked += 1
    assert checked >= 15
