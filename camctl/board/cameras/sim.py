"""The ``sim`` camera backend: a synthetic, deterministic EDL descent scene with fault injection.

:class:`SimCamera` stands beside the picamera2 backend on the same :class:`~camctl.board.cameras.base.Camera`
base and is chosen by the config (``backend = "sim"``), never as a silent fallback. It owns:

- the scene: a procedural ground texture (fields, crop rows, roads, craters), built once per seed and
  cached, that approaches as the vehicle descends (the view footprint shrinks with altitude); a sky and
  horizon for roles ``up``/``side``, a parachute canopy for ``up``; the frame sequence number drawn as large
  7-segment digits. Pixels depend only on (seed, role, size, seq, scene time), so runs are reproducible;
- pacing: frames come on an absolute schedule at the current rate; a caller late by more than one period
  gets the newest slot and a sequence gap, as from a real sensor that kept running;
- a lores stream (``lores_size``): with :meth:`SimCamera.set_lores` on, frames are rendered at the lores size
  and come back as I420 planes (``Frame.yuv420``, converted with numpy, :func:`rgb_to_i420`), so the
  capture runner takes the same path as with picamera2's lores stream; stills stay at the main size;
- faults: ``stall`` (capture times out), ``exception`` (CameraError), ``disconnect``
  (CameraDisconnected on capture, and ``open()`` refused for the duration) and ``hang`` (capture blocks for
  the duration whatever its timeout, as picamera2's ``stop()``/``close()`` wait on the event loop without
  one), from the config's schedule or injected by hand. Faults are per instance.

Example::

    >>> cam = SimCamera("down", size=(320, 240), fps=30, seed=1, paced=False)
    >>> with cam:
    ...     frame = cam.capture()
    >>> frame.image.shape, frame.seq
    ((240, 320, 3), 0)
"""

from __future__ import annotations

import functools
import math
import threading
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

import numpy as np

from camctl.board.cameras.base import Camera
from camctl.common.frames import Frame
from camctl.exc import CameraDisconnected, CameraError, CameraTimeout

if TYPE_CHECKING:
    from camctl.board.config import CameraConfig

__all__ = ["DESCENT_S", "FAULT_KINDS", "SimCamera", "render_scene", "rgb_to_i420"]

FAULT_KINDS = ("stall", "exception", "disconnect", "hang")
DESCENT_S = 90.0  # scene seconds from the top of the descent to the ground (then the view holds)
_TEX = 2048  # ground texture side, pixels (wraps around)
_NS = 1_000_000_000
_SENSOR_NOISE = 7  # per-frame sensor noise, uint8 levels 0..N-1 added to every pixel
_NOISE_ROWS = 97  # extra noise rows: each frame starts its noise at a different row
_GRAIN = 0.015  # per-pixel texture noise (relative): sets the JPEG weight of the ground


# --- scene --------------------------------------------------------------------------------------------
def _smooth_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """Value noise in [0, 1): a ``cells`` x ``cells`` random grid bilinearly upsampled to ``size``, wrapping."""
    grid = rng.random((cells, cells), dtype=np.float32)
    pos = np.arange(size, dtype=np.float32) * (cells / size)
    i0 = pos.astype(np.intp)
    f = pos - i0
    weights = np.zeros((size, cells), dtype=np.float32)  # separable bilinear interpolation as a matrix
    weights[np.arange(size), i0] = 1 - f
    weights[np.arange(size), (i0 + 1) % cells] += f
    return weights @ grid @ weights.T


_TEXTURE_LOCK = threading.Lock()  # one texture build at a time: two cameras preparing at once double the peak


def _ground_texture(seed: int) -> np.ndarray:
    """The ground seen from above, ``(_TEX, _TEX*3)`` uint8 RGB rows, read-only, tiling seamlessly."""
    with _TEXTURE_LOCK:
        return _build_ground_texture(seed)


@functools.lru_cache(maxsize=8)
def _build_ground_texture(seed: int) -> np.ndarray:
    rng = np.random.default_rng([0x5EED, seed])
    n = _TEX
    # Fields: a jittered-grid Voronoi partition at 1/4 resolution (each pixel looks at the 3x3 grid cells
    # around it), each cell one field with its own crop colour and row direction.
    lo, grid = n // 4, 12
    cs = lo / grid
    cells = grid * grid
    jitter = rng.random((grid, grid, 2), dtype=np.float32) * 0.8 + 0.1
    coord = np.arange(lo, dtype=np.float32)
    gi = (coord // cs).astype(np.intp)
    best = np.full((lo, lo), np.inf, dtype=np.float32)
    label_lo = np.zeros((lo, lo), dtype=np.intp)
    for di in (-1, 0, 1):
        ci = gi + di
        for dj in (-1, 0, 1):
            cj = gi + dj
            cell_y, cell_x = ci % grid, cj % grid
            jy = jitter[cell_y[:, None], cell_x[None, :], 0]
            jx = jitter[cell_y[:, None], cell_x[None, :], 1]
            dy = (ci[:, None] + jy) * cs - coord[:, None]
            dx = (cj[None, :] + jx) * cs - coord[None, :]
            d = dy * dy + dx * dx
            closer = d < best
            best = np.where(closer, d, best)
            label_lo = np.where(closer, cell_y[:, None] * grid + cell_x[None, :], label_lo)
    label = np.repeat(np.repeat(label_lo.astype(np.int16), 4, axis=0), 4, axis=1)
    palette = np.array([[78, 110, 52], [104, 132, 60], [150, 140, 84], [122, 96, 66], [176, 160, 102],
                        [90, 100, 70], [140, 120, 80], [60, 90, 50]], dtype=np.float32)
    colour = palette[rng.integers(0, len(palette), cells)] * rng.uniform(0.85, 1.15, (cells, 1))
    angle = rng.uniform(0, math.pi, cells).astype(np.float32)
    freq = rng.uniform(0.25, 0.9, cells).astype(np.float32) * rng.integers(0, 2, cells)  # half are meadows
    axis = np.arange(n, dtype=np.float32)
    cos_c, sin_c = np.cos(angle), np.sin(angle)
    noise = _smooth_noise(rng, n, 64)
    noise -= 0.5
    noise *= 0.35
    fine = _smooth_noise(rng, n, 16)
    fine -= 0.5
    fine *= 0.3
    noise += fine
    del fine
    roads = [(rng.uniform(0, math.pi), rng.uniform(0, n)) for _ in range(5)]
    colour32 = colour.astype(np.float32)
    # Shading, hedges and roads in bands of rows, straight into uint8: the float working set stays a few
    # MB instead of several full-size float32 images (peak memory of a board daemon is a benchmark).
    out = np.empty((n, n, 3), dtype=np.uint8)
    band = 256
    for y0 in range(0, n, band):
        rows = slice(y0, y0 + band)
        ys = axis[rows, None]
        lab = label[rows]
        shade = np.sin((axis[None, :] * cos_c[lab] + ys * sin_c[lab]) * freq[lab])
        shade *= 0.12
        shade += 1.0
        shade += noise[rows]
        shade += rng.standard_normal(shade.shape, dtype=np.float32) * _GRAIN  # grass, soil clods
        img = colour32[lab]
        img *= shade[..., None]
        # Field boundaries (hedges): darken where the label changes.
        above = label[(np.arange(y0, y0 + lab.shape[0]) - 1) % n]
        edge = (lab != above) | (lab != np.roll(lab, 1, axis=1))
        img[edge] *= 0.55
        # Roads: straight, wrapping, grey with a lighter centre line.
        for a, c in roads:
            dist = (axis[None, :] * math.cos(a) + (ys * math.sin(a) - c)) % n
            dist = np.minimum(dist, n - dist)
            img[dist < 5] = (112, 110, 106)
            img[dist < 0.7] = (190, 188, 180)
        np.clip(img, 6, 235, out=img)
        out[rows] = img
    del noise
    # Craters: dark rim lit from one side, a shadowed bowl.
    for _ in range(40):
        r = rng.uniform(6, 60)
        cy, cx = rng.uniform(0, n, 2)
        y0, x0 = int(cy - 1.4 * r), int(cx - 1.4 * r)
        span = int(2.8 * r) + 1
        ys_i = (np.arange(y0, y0 + span)) % n
        xs_i = (np.arange(x0, x0 + span)) % n
        dy = (np.arange(y0, y0 + span) - cy)[:, None]
        dx = (np.arange(x0, x0 + span) - cx)[None, :]
        rr = np.sqrt(dx * dx + dy * dy) / r
        light = (dx - dy) / (r * 1.4)
        f = np.ones_like(rr)
        bowl = rr < 1
        f[bowl] = 0.55 - 0.35 * light[bowl]
        rim = (rr >= 1) & (rr < 1.3)
        f[rim] = 1.0 + 0.45 * light[rim]
        patch = out[np.ix_(ys_i, xs_i)].astype(np.float32)
        patch *= f[..., None].astype(np.float32)
        out[np.ix_(ys_i, xs_i)] = np.clip(patch, 6, 235).astype(np.uint8)
    out = out.reshape(n, n * 3)
    out.flags.writeable = False
    return out


@functools.lru_cache(maxsize=16)
def _sky(seed: int, width: int, height: int) -> np.ndarray:
    """A sky gradient with soft clouds, ``(height, width*3)`` uint8 rows, read-only."""
    rng = np.random.default_rng([0x5C1, seed])
    t = np.linspace(0, 1, height, dtype=np.float32)[:, None, None]
    top = np.array([40, 80, 170], dtype=np.float32)
    bottom = np.array([170, 200, 235], dtype=np.float32)
    side = max(width, height)
    cloud = _smooth_noise(rng, side, 12)
    cloud *= 0.6
    cloud += _smooth_noise(rng, side, 48) * 0.3
    cloud += _smooth_noise(rng, side, 192) * 0.1
    cloud = np.clip((cloud[:height, :width] - 0.45) * 3, 0, 1)
    out = np.empty((height, width, 3), dtype=np.uint8)
    for y0 in range(0, height, 128):  # in bands: a few MB of floats, not a 1080p float64 image
        rows = slice(y0, y0 + 128)
        c = cloud[rows][..., None]
        img = top * (1 - t[rows]) + bottom * t[rows]
        img = img * (1 - c) + 240 * c
        img += rng.standard_normal(img.shape, dtype=np.float32) * 2.5
        np.clip(img, 0, 250, out=img)
        out[rows] = img
    out = out.reshape(height, width * 3)
    out.flags.writeable = False
    return out


@functools.lru_cache(maxsize=16)
def _sensor_noise(width: int, height: int) -> np.ndarray:
    """Sensor noise to add to a frame, ``(height + _NOISE_ROWS, width*3)`` uint8, read-only."""
    rng = np.random.default_rng([0x401, width, height])
    out = rng.integers(0, _SENSOR_NOISE, (height + _NOISE_ROWS, width * 3), dtype=np.uint8)
    out.flags.writeable = False
    return out


@functools.lru_cache(maxsize=16)
def _canopy(width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """A parachute seen from below: (mask ``(h, w)`` bool, colours ``(h, w, 3)`` uint8), gores in two colours."""
    r = max(8, int(min(width, height) * 0.28))
    yy, xx = np.mgrid[-r:r + 1, -r:r + 1].astype(np.float32)
    rr = np.sqrt(xx * xx + yy * yy) / r
    mask = (rr <= 1.0) & (rr >= 0.08)  # vent hole in the middle
    gore = ((np.arctan2(yy, xx) + math.pi) / (2 * math.pi) * 16).astype(np.intp) % 2
    colours = np.where(gore[..., None] == 0, np.array([230, 90, 30]), np.array([245, 245, 240]))
    colours = colours * (1.0 - 0.35 * rr[..., None] ** 2)  # shading towards the skirt
    lines = (np.abs(((np.arctan2(yy, xx) + math.pi) / (2 * math.pi) * 16) % 1 - 0.5) > 0.47) & mask
    colours[lines] = (60, 60, 60)
    return mask, np.clip(colours, 0, 255).astype(np.uint8)


# 7-segment digits: segments a, b, c, d, e, f, g.
_SEGMENTS = {"0": "abcdef", "1": "bc", "2": "abged", "3": "abgcd", "4": "fgbc", "5": "afgcd", "6": "afgedc",
             "7": "abc", "8": "abcdefg", "9": "abcdfg"}


def _draw_number(img: np.ndarray, number: int, height: int) -> None:
    """Draw ``number`` in large 7-segment digits, white on a dark box, at the top-left of ``img`` (in place)."""
    text = str(number)
    h = max(7, height)
    w = h // 2
    t = max(1, h // 9)
    gap = t * 2
    pad = t * 2
    box_w = min(img.shape[1], pad * 2 + len(text) * (w + gap))
    box_h = min(img.shape[0], pad * 2 + h)
    img[:box_h, :box_w] = 16
    half = h // 2
    rects = {"a": (0, 0, t, w), "b": (0, w - t, half, t), "c": (half, w - t, h - half, t),
             "d": (h - t, 0, t, w), "e": (half, 0, h - half, t), "f": (0, 0, half, t),
             "g": (half - t // 2, 0, t, w)}
    for i, ch in enumerate(text):
        ox = pad + i * (w + gap)
        for seg in _SEGMENTS[ch]:
            y, x, sh, sw = rects[seg]
            img[pad + y:pad + y + sh, ox + x:ox + x + sw] = 250


def _altitude(scene_s: float, descent_s: float = DESCENT_S) -> float:
    """Fraction of the starting altitude left after ``scene_s`` seconds of descent (1 -> 0.25, then holds)."""
    p = min(max(scene_s / descent_s, 0.0), 1.0)
    return 1.0 - 0.75 * (1 - (1 - p) ** 2)  # slows down near the ground, like a canopy flare


def _ground(seed: int, width: int, height: int, scene_s: float, rows_of: np.ndarray | None = None,
            descent_s: float = DESCENT_S) -> np.ndarray:
    """The ground under the camera at ``scene_s``: ``(len(rows), width*3)`` uint8, nearest-neighbour sampled."""
    tex = _ground_texture(seed)
    alt = _altitude(scene_s, descent_s)
    footprint = _TEX * 0.6 * alt  # texture pixels across the frame width
    drift_x = 300.0 * math.sin(scene_s * 0.05 + seed) + 40.0 * scene_s  # wind drift
    drift_y = 200.0 * math.cos(scene_s * 0.04 + seed * 0.7) + 25.0 * scene_s
    step = footprint / width
    if rows_of is None:
        rows_of = np.arange(height, dtype=np.float64) - height / 2
    ys = (np.floor(drift_y + rows_of * step).astype(np.intp)) % _TEX
    xs = (np.floor(drift_x + (np.arange(width) - width / 2) * step).astype(np.intp)) % _TEX
    xb = (xs[:, None] * 3 + np.arange(3)).ravel()
    # Rows repeat when zoomed in: gather the columns of each distinct source row once.
    change = np.empty(len(ys), dtype=bool)
    change[0] = True
    np.not_equal(ys[1:], ys[:-1], out=change[1:])
    starts = np.flatnonzero(change)
    uniq = np.take(np.take(tex, ys[starts], axis=0), xb, axis=1)
    if len(starts) == len(ys):
        return uniq
    return np.take(uniq, np.cumsum(change) - 1, axis=0)


def render_scene(seed: int, role: str, size: tuple[int, int], seq: int, scene_s: float,
                 descent_s: float = DESCENT_S) -> np.ndarray:
    """Render one frame: ``(height, width, 3)`` uint8 RGB. Pure: the same arguments give the same pixels.

    ``role`` ``down`` looks at the ground, ``up`` at the sky and the canopy, ``side`` at the horizon; the ground
    comes closer over ``descent_s`` scene seconds (a short demo flight sets it short so the approach shows).
    """
    width, height = size
    if role == "up":
        img = _sky(seed, width, height).copy()
        mask, colours = _canopy(width, height)
        mh, mw = mask.shape
        sway = math.sin(scene_s * 1.3 + seed) * 0.12
        cy = int(height * (0.45 + 0.05 * math.cos(scene_s * 0.9)) - mh / 2)
        cx = int(width * (0.5 + sway) - mw / 2)
        y0, x0 = max(cy, 0), max(cx, 0)
        y1, x1 = min(cy + mh, height), min(cx + mw, width)
        if y1 > y0 and x1 > x0:
            view = img.reshape(height, width, 3)[y0:y1, x0:x1]
            m = mask[y0 - cy:y1 - cy, x0 - cx:x1 - cx]
            np.copyto(view, colours[y0 - cy:y1 - cy, x0 - cx:x1 - cx], where=m[..., None])
    elif role == "side":
        horizon = int(height * (0.42 + 0.06 * math.sin(scene_s * 1.1 + seed)))
        horizon = min(max(horizon, 1), height - 1)
        img = np.empty((height, width * 3), dtype=np.uint8)
        img[:horizon] = _sky(seed, width, height)[height - horizon:]
        # Ground plane in perspective: rows further below the horizon are nearer (distance ~ 1/angle).
        below = np.arange(1, height - horizon + 1, dtype=np.float64)
        rows_of = np.minimum((height * 0.5) * (height * 0.5) / below * 0.6, height * 1.5)  # far haze
        img[horizon:] = _ground(seed, width, height, scene_s, rows_of=-rows_of, descent_s=descent_s)
    else:
        img = _ground(seed, width, height, scene_s, descent_s=descent_s)
    img = img.reshape(height, width, 3)
    if not img.flags.writeable or not img.flags.c_contiguous:
        img = np.ascontiguousarray(img).copy()
    shift = (seq * 37) % _NOISE_ROWS  # a cheap, per-frame change of the noise pattern
    flat = img.reshape(height, width * 3)
    np.add(flat, _sensor_noise(width, height)[shift:shift + height], out=flat)
    _draw_number(img, seq, max(12, height // 9))
    return img


def rgb_to_i420(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``HxWx3`` uint8 RGB (even ``H``, ``W``) -> full-range BT.601 (JFIF) I420 planes ``(Y, U, V)``, with
    chroma averaged over 2x2 blocks. Float32 numpy: fine at lores sizes (measured ~3 ms at 320x240)."""
    h, w = rgb.shape[:2]
    if h % 2 or w % 2:
        raise ValueError(f"I420 needs an even size, got {w}x{h}")
    f = rgb.astype(np.float32)
    r, g, b = f[..., 0], f[..., 1], f[..., 2]
    y = 0.299 * r + 0.587 * g + 0.114 * b
    # 2x2 means of R, G, B first: chroma is linear, so this equals subsampling full-resolution chroma.
    q = f.reshape(h // 2, 2, w // 2, 2, 3).mean(axis=(1, 3))
    qr, qg, qb = q[..., 0], q[..., 1], q[..., 2]
    u = 128.0 - 0.168736 * qr - 0.331264 * qg + 0.5 * qb
    v = 128.0 + 0.5 * qr - 0.418688 * qg - 0.081312 * qb
    return tuple(np.clip(np.rint(p), 0, 255).astype(np.uint8) for p in (y, u, v))  # type: ignore[return-value]


# --- the backend --------------------------------------------------------------------------------------
class SimCamera(Camera):
    """A simulated camera on the real :class:`Camera` base.

    ``paced=False`` returns frames as fast as asked (benchmarks), with timestamps still advancing by one
    period per frame. ``clock`` (ns) and ``sleep`` (s) are injectable so tests run on a fake time line.
    ``faults`` is a list of ``(kind, at_s, duration_s)`` measured from the first :meth:`open`.
    ``seq`` counts frames for the life of the object (it does not restart when the camera is reopened).
    ``lores_size`` (width, height; rounded down to even, as picamera2 aligns a YUV420 stream) enables the
    lores stream; :meth:`set_lores` switches to it from the next frame.
    """

    def __init__(self, name: str, *, size: tuple[int, int] = (1920, 1080), fps: float = 30.0,
                 role: str = "down", seed: int = 0, faults: Iterable[tuple[str, float, float]] = (),
                 paced: bool = True, clock: Callable[[], int] = time.monotonic_ns,
                 sleep: Callable[[float], None] = time.sleep, prerender: int = 0, buffers: int = 6,
                 lores_size: tuple[int, int] | None = None, descent_s: float = DESCENT_S) -> None:
        if fps <= 0:
            raise ValueError(f"fps must be > 0, got {fps}")
        if descent_s <= 0:
            raise ValueError(f"descent_s must be > 0, got {descent_s}")
        self.descent_s = float(descent_s)
        super().__init__(name, size=size, fps=fps)
        self.role = role
        self.seed = int(seed)
        self.paced = paced
        self._clock = clock
        self._sleep = sleep
        self._faults: list[tuple[str, float, float]] = []
        for kind, at_s, duration_s in faults:
            if kind not in FAULT_KINDS:
                raise CameraError(name, f"unknown fault kind {kind!r} (expected one of {', '.join(FAULT_KINDS)})")
            self._faults.append((kind, float(at_s), float(duration_s)))
        self._scheduled: list[tuple[str, int, float]] = []  # (kind, at_ns, duration_s), set at first open
        self._first_open_ns: int | None = None
        self._seq = 0  # seq of the next frame
        self._scene_s = 0.0  # scene time of the next frame
        self._prev_ns: int | None = None  # timestamp of the last frame delivered
        self._pending_stall_s: float | None = None
        self._pending_exception = False
        self._pending_disconnect_s: float | None = None
        self._stall_until_ns = 0
        self._disconnected_until_ns = 0
        self._hang_until_ns = 0
        self._rate_changed = threading.Event()
        # prerender > 0: render that many frames once and replay them, so a frame costs the CPU what a real
        # camera's does, not a scene render: the replayed frames stand for the ISP's output buffers (filled
        # off-CPU), lent to the caller (Frame.release) while buffers are to spare and copied out otherwise,
        # as the picamera2 backend does with its requests. For benchmarks.
        self.prerender = int(prerender)
        # Like a libcamera stream with ``buffers`` buffers (picamera2's video default is 6): a consumer that
        # is late gets the queued frames, in order, with their exposure times; the sensor drops frames only
        # when every buffer is full (late by ``buffers`` periods or more). A lent buffer is not free: with
        # ``k`` lent, the sensor drops frames once the consumer is ``buffers - k`` periods late.
        self.buffers = max(1, int(buffers))
        self.lend_limit = max(0, self.buffers - 2)  # two buffers always stay with the sensor
        self._replay: list[np.ndarray] = []
        self._free: list[np.ndarray] = []  # recycled frame buffers (prerender mode)
        self._loan_lock = threading.Lock()
        self._loans = 0  # lent buffers not given back yet
        self.frames_lent = self.frames_copied = 0  # prerender frames handed out as views / as copies
        self.closed_while_lent = 0  # closes with buffers still lent (a real camera would free them under a reader)
        self.lores_size = None if lores_size is None else (int(lores_size[0]) & ~1, int(lores_size[1]) & ~1)
        if self.lores_size is not None and min(self.lores_size) < 2:
            raise CameraError(name, f"lores_size must be at least 2x2, got {lores_size!r}")
        self._lores = False  # deliver the lores stream (a bool write: thread-safe)

    @classmethod
    def from_config(cls, cfg: CameraConfig, *, seed: int = 0, **kwargs: object) -> SimCamera:
        """Build (closed) from a camera config, at the ARMED rate; ``seed`` is mixed with ``cfg.seed``."""
        mixed = int(np.random.SeedSequence([int(cfg.seed), int(seed)]).generate_state(1)[0])
        kwargs.setdefault("lores_size", cfg.lores_size)
        kwargs.setdefault("descent_s", cfg.sim_descent_s)
        kwargs.setdefault("prerender", cfg.sim_prerender)
        return cls(cfg.name, size=cfg.size, fps=cfg.fps_for("ARMED"), role=cfg.role, seed=mixed,
                   faults=cfg.faults, **kwargs)  # type: ignore[arg-type]

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"open, {self._fps:g} fps, next seq {self._seq}"
        return (f"<SimCamera {self.name!r} {self.role} seed={self.seed} {self.size[0]}x{self.size[1]} "
                f"{state}>")

    def set_fps(self, fps: float) -> None:
        """Change the rate; thread-safe, and a capture waiting at the old rate wakes up for the new one."""
        super().set_fps(fps)
        self._rate_changed.set()

    # -- lores stream --------------------------------------------------------------------------------
    @property
    def supports_lores(self) -> bool:
        return self.lores_size is not None

    def set_lores(self, enabled: bool) -> bool:
        """Render the next frames at ``lores_size`` as I420 (``enabled``) or at the main size as RGB."""
        if self.lores_size is None:
            return False
        self._lores = bool(enabled)
        return True

    # -- faults --------------------------------------------------------------------------------------
    def inject_stall(self, duration_s: float) -> None:
        """Make the sensor stall for ``duration_s`` from the next capture on."""
        self._pending_stall_s = float(duration_s)

    def inject_exception(self) -> None:
        """Make the next capture raise :class:`CameraError`."""
        self._pending_exception = True

    def inject_disconnect(self, duration_s: float) -> None:
        """Unplug the camera at the next capture: it raises, and ``open()`` fails for ``duration_s``."""
        self._pending_disconnect_s = float(duration_s)

    def _fire_due_faults(self, now: int) -> None:
        due = [f for f in self._scheduled if f[1] <= now]
        if not due:
            return
        self._scheduled = [f for f in self._scheduled if f[1] > now]
        for kind, at_ns, duration_s in due:
            if kind == "stall":
                self._stall_until_ns = max(self._stall_until_ns, at_ns + int(duration_s * _NS))
            elif kind == "exception":
                self._pending_exception = True
            elif kind == "hang":
                self._hang_until_ns = max(self._hang_until_ns, at_ns + int(duration_s * _NS))
            else:
                self._disconnected_until_ns = max(self._disconnected_until_ns, at_ns + int(duration_s * _NS))

    def _check_faults(self, timeout_s: float) -> None:
        """Raise or block as the active faults demand; return when a frame may be taken."""
        now = self._clock()
        if self._pending_stall_s is not None:
            self._stall_until_ns = max(self._stall_until_ns, now + int(self._pending_stall_s * _NS))
            self._pending_stall_s = None
        if self._pending_disconnect_s is not None:
            self._disconnected_until_ns = max(self._disconnected_until_ns,
                                              now + int(self._pending_disconnect_s * _NS))
            self._pending_disconnect_s = None
        self._fire_due_faults(now)
        if now < self._hang_until_ns:  # stuck in the backend: no timeout applies
            self._sleep((self._hang_until_ns - now) / _NS)
        if now < self._disconnected_until_ns:
            raise CameraDisconnected(self.name, "sim: camera disconnected (injected fault)")
        if self._pending_exception:
            self._pending_exception = False
            raise CameraError(self.name, "sim: backend error (injected fault)")
        if now < self._stall_until_ns:
            left_s = (self._stall_until_ns - now) / _NS
            if left_s >= timeout_s:
                self._sleep(timeout_s)
                raise CameraTimeout(self.name, f"no frame within {timeout_s:g} s (sim: stalled sensor)")
            self._sleep(left_s)  # the stall ends inside the timeout: the frame comes late

    # -- lifecycle -----------------------------------------------------------------------------------
    def _open_backend(self) -> None:
        now = self._clock()
        if self._first_open_ns is None:
            self._first_open_ns = now
            self._scheduled = [(kind, now + int(at_s * _NS), d) for kind, at_s, d in self._faults]
        self._fire_due_faults(now)
        if now < self._disconnected_until_ns:
            left = (self._disconnected_until_ns - now) / _NS
            raise CameraDisconnected(self.name, f"sim: camera not found (disconnected for {left:.3g} s more)")
        self._prev_ns = None  # a reopened sensor starts a new schedule
        _ground_texture(self.seed)  # build the scene before the first frame, not during it

    def recycle(self, image: object) -> None:
        """Reuse an encoded frame's buffer for a later replayed frame (prerender mode)."""
        if (self.prerender and isinstance(image, np.ndarray) and image.base is None and len(self._free) < 8
                and image.shape == (self.size[1], self.size[0], 3)):
            self._free.append(image)

    def prepare(self) -> None:
        """Build the scene's textures now (about a second), so arming does not wait for them; one camera at
        a time, so two cameras preparing together do not double the memory peak."""
        with _TEXTURE_LOCK:
            _build_ground_texture(self.seed)
            if self.role != "down":
                _sky(self.seed, *self.size)
            _sensor_noise(*self.size)
        if self.prerender and not self._replay:
            step = self.descent_s / self.prerender
            self._replay = [render_scene(self.seed, self.role, self.size, i, i * step, self.descent_s)
                            for i in range(self.prerender)]

    def _close_backend(self) -> None:
        if self._loans:  # the replayed buffers outlive this, but a real camera's would be freed here
            self.closed_while_lent += 1

    # -- frames --------------------------------------------------------------------------------------
    def capture(self, timeout_s: float = 1.0) -> Frame:
        """The next frame at the current rate; raises CameraTimeout/CameraError/CameraDisconnected on faults."""
        return self._capture(timeout_s, lores=self._lores)

    def capture_still(self, timeout_s: float = 2.0) -> Frame:
        """The next frame at the main size (also while the lores stream is on), marked as a still."""
        frame = self._capture(timeout_s, lores=False)
        frame.still = True
        return frame

    def _capture(self, timeout_s: float, *, lores: bool) -> Frame:
        if self.closed:
            raise CameraError(self.name, "capture() on a closed camera")
        self._check_faults(timeout_s)
        self._rate_changed.clear()
        period_ns = round(_NS / self._fps)
        now = self._clock()
        if self._prev_ns is None:
            target = now
        else:
            target = self._prev_ns + period_ns
            # A rate change from another thread (the event path) cuts a long idle-rate wait short, so the
            # first frame of a faster phase comes one new period after the last frame, not one old period.
            while self.paced and target > now and self._sleep is time.sleep:
                if not self._rate_changed.wait(min((target - now) / _NS, timeout_s)):
                    break
                self._rate_changed.clear()
                period_ns = round(_NS / self._fps)
                now = self._clock()
                target = max(self._prev_ns + period_ns, now)
            if self.paced:
                free = max(1, self.buffers - self._loans)
                if now >= target + period_ns * free:  # every free buffer full: the sensor dropped frames
                    missed = (now - target) // period_ns - (free - 1)
                    target += missed * period_ns
                    self._seq += missed
                    self._scene_s += missed * period_ns / _NS
                elif target > now:
                    wait_s = (target - now) / _NS
                    if wait_s > timeout_s:
                        self._sleep(timeout_s)
                        raise CameraTimeout(self.name, f"no frame within {timeout_s:g} s at {self._fps:g} fps")
                    self._sleep(wait_s)
        seq = self._seq
        period_us = period_ns // 1000
        if lores and self.lores_size is not None:
            planes = rgb_to_i420(render_scene(self.seed, self.role, self.lores_size, seq, self._scene_s,
                                              self.descent_s))
            self._seq += 1
            self._scene_s += period_ns / _NS
            self._prev_ns = target
            return Frame(camera=self.name, seq=seq, timestamp_ns=target, yuv420=planes, width=self.lores_size[0],
                         height=self.lores_size[1], exposure_us=min(period_us, 8000), analogue_gain=1.0,
                         frame_duration_us=period_us)
        if self.prerender:
            if not self._replay:
                self.prepare()
            src = self._replay[seq % len(self._replay)]
            release = self._lend()
            if release is not None:
                image = src.view()
                image.flags.writeable = False  # the sensor's buffer: read it, never write it
            else:
                try:
                    image = self._free.pop()
                except IndexError:
                    image = np.empty_like(src)
                np.copyto(image, src)
                self.frames_copied += 1
        else:  # rendered into a fresh array standing for the ISP's buffer: lent the same way, so every user of
            # the sim (the daemon, the demo, the tests) holds to the contract the picamera2 backend needs
            image = render_scene(self.seed, self.role, self.size, seq, self._scene_s, self.descent_s)
            release = self._lend()
            if release is not None:
                image.flags.writeable = False
            else:
                self.frames_copied += 1
        self._seq += 1
        self._scene_s += period_ns / _NS
        self._prev_ns = target
        return Frame(camera=self.name, seq=seq, timestamp_ns=target, image=image, width=self.size[0],
                     height=self.size[1], exposure_us=min(period_us, 8000), analogue_gain=1.0,
                     frame_duration_us=period_us, release=release)

    @property
    def replayed(self) -> list[np.ndarray]:
        """The pre-rendered frames a ``prerender`` camera replays (rendered now if not yet), read-only views:
        what a benchmark encodes alone to compare with the whole capture path."""
        if self.prerender and not self._replay:
            self.prepare()
        out = []
        for img in self._replay:
            view = img.view()
            view.flags.writeable = False
            out.append(view)
        return out

    @property
    def lent(self) -> int:
        """Buffers lent out (``Frame.release`` not called yet)."""
        return self._loans

    def _lend(self) -> Callable[[], None] | None:
        """Take a buffer for a lent frame: its one-shot ``release``, or None when none is to spare."""
        with self._loan_lock:
            if self._loans >= self.lend_limit:
                return None
            self._loans += 1
            self.frames_lent += 1
        given = threading.Lock()

        def release() -> None:
            if not given.acquire(blocking=False):
                raise RuntimeError(f"sim camera {self.name}: a lent frame was released twice")
            with self._loan_lock:
                self._loans -= 1

        return release
