"""The lores stream end to end: I420 encode, sim and picamera2 lores, the runner."""

from __future__ import annotations

import itertools
import threading

import numpy as np
import pytest
import simplejpeg
from fake_picamera2 import FakeRig, video_yuv
from scripted import Sink

from camctl.board.cameras.picamera2 import LORES_FORMAT, Picamera2Camera, split_i420
from camctl.board.cameras.sim import SimCamera, rgb_to_i420
from camctl.board.capture import CameraRunner
from camctl.board.config import CameraConfig
from camctl.board.encode import EncoderPool, encode_jpeg_yuv420
from camctl.common.frames import EncodedFrame, Frame


def yuv_to_rgb(y: float, u: float, v: float) -> np.ndarray:
    """Full-range BT.601 (JFIF) -> RGB, the inverse a JPEG decoder applies."""
    return np.array([y + 1.402 * (v - 128), y - 0.344136 * (u - 128) - 0.714136 * (v - 128),
                     y + 1.772 * (u - 128)])


class CountingPool(EncoderPool):
    """The real pool, counting which entry point each frame took."""

    def __init__(self) -> None:
        super().__init__(2)
        self.rgb = self.yuv = 0

    def submit(self, image, quality=85, *, colorspace="RGB", **kw):
        self.rgb += 1
        return super().submit(image, quality, colorspace=colorspace, **kw)

    def submit_yuv(self, planes, quality=85, **kw):
        self.yuv += 1
        return super().submit_yuv(planes, quality, **kw)


@pytest.fixture
def pool():
    with CountingPool() as p:
        yield p


# --- encoding -------------------------------------------------------------------------------------
def test_encode_jpeg_yuv420_round_trip_keeps_each_plane():
    h, w = 48, 64
    y = np.tile(np.linspace(40, 220, w).astype(np.uint8), (h, 1))  # a horizontal gradient
    u = np.full((h // 2, w // 2), 90, np.uint8)
    v = np.full((h // 2, w // 2), 170, np.uint8)
    jpeg = encode_jpeg_yuv420(y, u, v, 92)
    assert simplejpeg.decode_jpeg_header(jpeg) == (h, w, "YCbCr", "420")
    rgb = simplejpeg.decode_jpeg(jpeg).astype(np.float64)
    for col in (4, w // 2, w - 5):  # the gradient survives, column by column
        want = yuv_to_rgb(float(y[0, col]), 90, 170)
        got = rgb[8:40, col].mean(axis=0)
        assert np.abs(got - np.clip(want, 0, 255)).max() < 8, (col, got, want)
    with pytest.raises(ValueError, match=r"Y \(48, 64\), U \(24, 31\)"):
        encode_jpeg_yuv420(y, u[:, :31], v, 85)


def test_rgb_to_i420_matches_jfif():
    rgb = np.empty((4, 6, 3), np.uint8)
    rgb[...] = (200, 40, 90)
    y, u, v = rgb_to_i420(rgb)
    assert y.shape == (4, 6) and u.shape == v.shape == (2, 3)
    rgb00 = yuv_to_rgb(float(y[0, 0]), float(u[0, 0]), float(v[0, 0]))
    assert np.abs(rgb00 - (200, 40, 90)).max() < 2
    with pytest.raises(ValueError, match="5x4"):
        rgb_to_i420(rgb[:, :5])


def test_split_i420_crops_the_stride_padding():
    w, h, stride = 6, 4, 16
    flat = np.full(h * stride * 3 // 2, 0xEE, np.uint8)
    flat[: h * stride].reshape(h, stride)[:, :w] = np.arange(w * h).reshape(h, w)
    chroma = flat[h * stride:].reshape(2, h // 2, stride // 2)
    chroma[0, :, :3] = 100
    chroma[1, :, :3] = 200
    y, u, v = split_i420(flat.reshape(h * 3 // 2, stride), (w, h), stride)
    assert y.tolist() == np.arange(w * h).reshape(h, w).tolist()
    assert (u == 100).all() and (v == 200).all() and u.shape == v.shape == (2, 3)
    with pytest.raises(ValueError, match="stride 4"):
        split_i420(flat.reshape(h * 3 // 2, stride), (w, h), 4)


# --- the sim --------------------------------------------------------------------------------------
def test_sim_lores_frames_are_i420_at_the_lores_size_and_stills_stay_main():
    cam = SimCamera("s", size=(128, 96), fps=30, seed=3, paced=False, lores_size=(65, 49))
    # rounded down to even, as picamera2 does
    assert cam.supports_lores and cam.lores_size == (64, 48)
    assert not SimCamera("t", size=(64, 48), paced=False).set_lores(True)
    with cam:
        main = cam.capture()
        assert cam.set_lores(True)
        small = cam.capture()
        still = cam.capture_still()
        assert cam.set_lores(False)
        back = cam.capture()
    assert main.image.shape == (96, 128, 3) and main.yuv420 is None
    assert small.image is None and (small.width, small.height) == (64, 48)
    assert [p.shape for p in small.yuv420] == [(48, 64), (24, 32), (24, 32)]
    assert still.still and still.image.shape == (96, 128, 3)
    assert back.image.shape == (96, 128, 3)
    assert [f.seq for f in (main, small, still, back)] == [0, 1, 2, 3]
    # The lores frame shows the same scene: its mean colour is close to the main frame's.
    lo = simplejpeg.decode_jpeg(encode_jpeg_yuv420(*small.yuv420, 90)).reshape(-1, 3).mean(axis=0)
    hi = main.image.reshape(-1, 3).mean(axis=0)
    assert np.abs(lo - hi).max() < 12, (lo, hi)


def run_flight(camera, c: CameraConfig, pool, *, armed: int,
               descent: int) -> tuple[list[EncodedFrame], int]:
    """ARMED until ``armed`` frames are encoded, then DESCENT until ``descent`` are stored: (frames
    stored, frames the runner or the sensor accounted as lost)."""
    sink = Sink()
    r = CameraRunner(camera, c, pool, sink)
    r.start()
    try:
        r.set_phase("ARMED")
        # ARMED frames go to the ring, not the sink: poll the runner's count
        ready = threading.Event()
        while not ready.wait(0.01):
            if r.stats.encoded >= armed:
                ready.set()
        r.set_phase("DESCENT")
        sink.wait_for(lambda fs: sum(f.phase == "DESCENT" for f in fs) >= descent)
    finally:
        r.stop()
    return sink.frames, r.stats.sensor_gaps + sum(r.stats.dropped.values())


def assert_clean_seam(frames: list[EncodedFrame], lost: int) -> None:
    seqs = [f.seq for f in frames]
    assert seqs == sorted(set(seqs))  # in order, no duplicate
    gaps = sum(b - a - 1 for a, b in itertools.pairwise(seqs))
    # a gap only where the sensor (or the encoder queue) is known to have lost frames
    assert gaps <= lost
    last_armed = max(i for i, f in enumerate(frames) if f.phase == "ARMED")
    assert frames[last_armed + 1].phase == "DESCENT"
    if not lost:
        assert frames[last_armed + 1].seq == frames[last_armed].seq + 1


def test_runner_sim_armed_lores_then_descent_main_with_a_clean_seam(pool):
    c = CameraConfig(name="down", backend="sim", size=(128, 96),
                     fps=(("ARMED", 50.0), ("DESCENT", 50.0)),
                     pretrigger_s=5.0, lores_size=(64, 48), lores_phases=("ARMED",))
    frames, lost = run_flight(SimCamera.from_config(c), c, pool, armed=6, descent=5)
    armed = [f for f in frames if f.phase == "ARMED"]
    live = [f for f in frames if f.phase == "DESCENT"]
    assert len(armed) >= 6 and len(live) >= 5
    for f in armed:
        assert (f.width, f.height) == (64, 48) and f.meta.get("pretrigger")
        assert simplejpeg.decode_jpeg_header(f.jpeg)[:2] == (48, 64)
    # The frame being captured when the edge came may still be lores; every later one is main size.
    for f in live[1:]:
        assert (f.width, f.height) == (128, 96)
        assert simplejpeg.decode_jpeg_header(f.jpeg)[:2] == (96, 128)
    h, w = simplejpeg.decode_jpeg_header(live[0].jpeg)[:2]
    assert (live[0].width, live[0].height) == (w, h) in ((64, 48), (128, 96))
    assert_clean_seam(frames, lost)
    assert pool.yuv >= len(armed) and pool.rgb >= len(live) - 1


# --- picamera2 (fake) -----------------------------------------------------------------------------

def _cam(rig: FakeRig, **kw) -> Picamera2Camera:
    """A camera named "pi" of ``rig``'s simulated picamera2."""
    return Picamera2Camera("pi", picamera2=rig.module, **kw)


def test_picamera2_configures_lores_and_reads_it_only_when_asked(rig):
    c = _cam(rig, size=(128, 96), fps=10.0, encoder="software", lores_size=(41, 31))
    assert c.supports_lores
    with c:
        lores = rig.instances[0].camera_config["lores"]
        # even, as picamera2
        assert lores["format"] == LORES_FORMAT == "YUV420" and lores["size"] == (40, 30)
        assert lores["stride"] == 64  # padded: the split must crop
        main = c.capture()
        assert c.set_lores(True)
        small = c.capture()
        still = c.capture_still()
        after = c.capture()
        c.set_lores(False)
        back = c.capture()
        assert [f.release is not None for f in (main, small, still, after, back)] == [
            True, False, True, False, True]
        # lent: a view of the request's main buffer, given back by the runner
        for f in (main, still, back):
            f.release()
    assert rig.arrays_made == ["main", "lores", "main", "lores", "main"]
    assert (main.image.shape == (96, 128, 3) and back.image.shape == (96, 128, 3)
            and main.yuv420 is None)
    assert small.image is None and (small.width, small.height) == (40, 30)
    assert [p.shape for p in small.yuv420] == [(30, 40), (15, 20), (15, 20)]
    assert all(p.max() != rig.pad_value for p in small.yuv420)  # no padding bytes leaked in
    # the still is the running stream's main image; its frame comes again as the video's lores one
    assert still.still and still.image.shape == (96, 128, 3) and after.yuv420 is not None
    assert after.seq == still.seq and after.timestamp_ns == still.timestamp_ns and not after.still
    assert small.exposure_us == 30000 and small.seq == main.seq + 1
    assert rig.outstanding == 0


def test_picamera2_lores_pattern_survives_split_encode_decode(rig):
    w, h = 48, 32
    ramp = np.linspace(60, 200, w)

    def planes(pw, ph):  # limited-range video YUV: Y a horizontal gradient, U and V constant
        y = np.tile(np.rint(16 + (ramp - 0) * 219 / 255), (ph, 1)).astype(np.uint8)
        return (y, np.full((ph // 2, pw // 2), 100, np.uint8),
                np.full((ph // 2, pw // 2), 150, np.uint8))

    rig.lores_planes = planes
    with _cam(rig, size=(96, 64), fps=10.0, encoder="software", lores_size=(w, h)) as c:
        c.set_lores(True)
        frame = c.capture()
    rgb = simplejpeg.decode_jpeg(encode_jpeg_yuv420(*frame.yuv420, 95)).astype(np.float64)
    # Full range after the backend's expansion: Y back to the ramp, chroma (c-128)*255/224+128.
    u_full, v_full = (100 - 128) * 255 / 224 + 128, (150 - 128) * 255 / 224 + 128
    for col in (3, w // 2, w - 4):
        want = np.clip(yuv_to_rgb(ramp[col], u_full, v_full), 0, 255)
        got = rgb[4:28, col].mean(axis=0)
        assert np.abs(got - want).max() < 10, (col, got, want)


def test_picamera2_lores_colour_is_the_scene_colour(rig):
    rig.colour = (200, 60, 30)
    assert video_yuv((0, 0, 0)) == (16, 128, 128)
    with _cam(rig, size=(64, 48), fps=10.0, encoder="software", lores_size=(32, 24)) as c:
        c.set_lores(True)
        frame = c.capture()
    rgb = simplejpeg.decode_jpeg(encode_jpeg_yuv420(*frame.yuv420, 95)).reshape(-1, 3).mean(axis=0)
    assert np.abs(rgb - (200, 60, 30)).max() < 8, rgb


def test_picamera2_hardware_path_ignores_lores(hw_rig):
    c = _cam(hw_rig, size=(64, 48), fps=100.0, encoder="hardware", lores_size=(32, 24))
    assert not c.supports_lores
    with c:
        assert hw_rig.instances[0].camera_config["lores"] is None
        assert not c.set_lores(True)
        frame = c.capture(timeout_s=5.0)
    assert (frame.jpeg is not None and frame.yuv420 is None
            and (frame.width, frame.height) == (64, 48))
    assert "lores" not in hw_rig.arrays_made


def test_picamera2_without_lores_size_configures_none(rig):
    c = _cam(rig, size=(64, 48), fps=10.0, encoder="software")
    with c:
        assert rig.instances[0].camera_config["lores"] is None
        assert not c.set_lores(True)
        frame = c.capture()
        assert frame.image is not None
        frame.release()
    assert rig.arrays_made == ["main"]


def test_runner_picamera2_lores_phase_uses_the_lores_stream(rig, pool):
    c = CameraConfig(name="pi", backend="picamera2", size=(96, 64), encoder="software",
                     fps=(("ARMED", 200.0), ("DESCENT", 200.0)), pretrigger_s=5.0,
                     lores_size=(48, 32), lores_phases=("ARMED",))
    camera = Picamera2Camera.from_config(c, picamera2=rig.module)
    frames, lost = run_flight(camera, c, pool, armed=4, descent=4)
    armed = [f for f in frames if f.phase == "ARMED"]
    live = [f for f in frames if f.phase == "DESCENT"]
    assert all((f.width, f.height) == (48, 32) for f in armed) and len(armed) >= 4
    assert all((f.width, f.height) == (96, 64) for f in live[1:])
    # the first ARMED frame is read from the main stream: the frame sizes measured at ARM
    # (docs/protocol.md, frame_bytes_source), decimated to the lores size like the rest
    assert rig.arrays_made[: len(armed)] == ["main"] + ["lores"] * (len(armed) - 1)
    assert_clean_seam(frames, lost)
    assert rig.outstanding == 0


def test_runner_still_in_a_lores_phase_is_full_size(pool):
    cam = SimCamera("s", size=(128, 96), fps=50, seed=1, paced=False, lores_size=(64, 48))
    c = CameraConfig(name="s", backend="sim", size=(128, 96),
                     fps=(("ARMED", 50.0), ("DESCENT", 50.0)),
                     pretrigger_s=0.0, lores_size=(64, 48), lores_phases=("ARMED", "DESCENT"))
    sink = Sink()
    r = CameraRunner(cam, c, pool, sink)
    r.start()
    try:
        r.set_phase("DESCENT")
        sink.wait_for(lambda fs: len(fs) >= 2)
        r.request_still("release")
        sink.wait_for(lambda fs: any(f.still for f in fs))
    finally:
        r.stop()
    still = next(f for f in sink.frames if f.still)
    assert (still.width, still.height) == (128, 96)
    assert all((f.width, f.height) == (64, 48) for f in sink.frames if not f.still)
    assert r.lores_native


def test_frame_size_from_yuv_planes():
    y = np.zeros((24, 32), np.uint8)
    uv = np.zeros((12, 16), np.uint8)
    f = Frame(camera="c", seq=0, timestamp_ns=0, yuv420=(y, uv, uv))
    assert (f.width, f.height) == (32, 24) and f.image is None
