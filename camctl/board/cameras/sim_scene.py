"""The sim camera's scene: a synthetic, deterministic EDL descent, rendered with numpy.

Owns the pixels :class:`~camctl.board.cameras.sim.SimCamera` delivers: a procedural ground texture
(fields, crop rows, roads, craters), built once per seed and cached, that approaches as the vehicle
descends; a sky and horizon for roles ``up``/``side``, a parachute canopy for ``up``; the frame
number as 7-segment digits; per-frame sensor noise. Pixels depend only on (seed, role, size, seq,
scene time).
"""

from __future__ import annotations

import functools
import math
import threading

import numpy as np

__all__ = ["DESCENT_S", "ground_texture", "prepare_scene", "render_scene", "rgb_to_i420"]

DESCENT_S = 90.0  # scene seconds from the top of the descent to the ground (then the view holds)
_TEX = 2048  # ground texture side, pixels (wraps around)
_SENSOR_NOISE = 7  # per-frame sensor noise, uint8 levels 0..N-1 added to every pixel
_NOISE_ROWS = 97  # extra noise rows: each frame starts its noise at a different row
_GRAIN = 0.015  # per-pixel texture noise (relative): sets the JPEG weight of the ground


def _smooth_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """Value noise in [0, 1): a ``cells`` x ``cells`` random grid bilinearly upsampled to ``size``,
    wrapping."""
    grid = rng.random((cells, cells), dtype=np.float32)
    pos = np.arange(size, dtype=np.float32) * (cells / size)
    i0 = pos.astype(np.intp)
    f = pos - i0
    # separable bilinear interpolation as a matrix
    weights = np.zeros((size, cells), dtype=np.float32)
    weights[np.arange(size), i0] = 1 - f
    weights[np.arange(size), (i0 + 1) % cells] += f
    return weights @ grid @ weights.T


# one texture build at a time: two cameras preparing at once would double the memory peak
_TEXTURE_LOCK = threading.Lock()


def ground_texture(seed: int) -> np.ndarray:
    """The ground seen from above, ``(_TEX, _TEX*3)`` uint8 RGB rows, read-only, tiling."""
    with _TEXTURE_LOCK:
        return _build_ground_texture(seed)


def prepare_scene(seed: int, role: str, size: tuple[int, int]) -> None:
    """Build (and cache) the textures a camera's frames need, one camera at a time (memory)."""
    with _TEXTURE_LOCK:
        _build_ground_texture(seed)
        if role != "down":
            _sky(seed, *size)
        _sensor_noise(*size)


@functools.lru_cache(maxsize=8)
def _build_ground_texture(seed: int) -> np.ndarray:
    rng = np.random.default_rng([0x5EED, seed])  # every draw below, in this order, is the scene
    n = _TEX
    label = _field_labels(rng, n)
    looks = _field_looks(rng, _FIELD_GRID ** 2)
    noise = _smooth_noise(rng, n, 64)
    noise -= 0.5
    noise *= 0.35
    fine = _smooth_noise(rng, n, 16)
    fine -= 0.5
    fine *= 0.3
    noise += fine
    del fine
    roads = [(rng.uniform(0, math.pi), rng.uniform(0, n)) for _ in range(5)]
    out = _shade_fields(rng, label, looks, noise, roads)
    del noise
    _dig_craters(rng, out)
    out = out.reshape(n, n * 3)
    out.flags.writeable = False
    return out


_FIELD_GRID = 12  # fields: a jittered grid of 12 x 12 Voronoi cells over the (wrapping) texture


def _field_labels(rng: np.random.Generator, n: int) -> np.ndarray:
    """Which field each pixel is in, ``(n, n)`` int16: a jittered-grid Voronoi partition at 1/4
    resolution (each pixel looks at the 3x3 grid cells around it)."""
    lo, grid = n // 4, _FIELD_GRID
    cs = lo / grid
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
    return np.repeat(np.repeat(label_lo.astype(np.int16), 4, axis=0), 4, axis=1)


def _field_looks(rng: np.random.Generator, cells: int) -> tuple[np.ndarray, ...]:
    """Per field: ``(colour, cos, sin, freq)`` of its crop and rows (half are meadows)."""
    palette = np.array([[78, 110, 52], [104, 132, 60], [150, 140, 84], [122, 96, 66],
                        [176, 160, 102], [90, 100, 70], [140, 120, 80], [60, 90, 50]],
                       dtype=np.float32)
    colour = palette[rng.integers(0, len(palette), cells)] * rng.uniform(0.85, 1.15, (cells, 1))
    angle = rng.uniform(0, math.pi, cells).astype(np.float32)
    freq = rng.uniform(0.25, 0.9, cells).astype(np.float32) * rng.integers(0, 2, cells)
    return colour.astype(np.float32), np.cos(angle), np.sin(angle), freq


def _shade_fields(rng: np.random.Generator, label: np.ndarray, looks: tuple[np.ndarray, ...],
                  noise: np.ndarray, roads: list[tuple[float, float]]) -> np.ndarray:
    """The fields' shading, hedges and roads, ``(n, n, 3)`` uint8, in bands of rows straight into
    uint8: the float working set stays a few MB instead of several full-size float32 images (peak
    memory of a board daemon is a benchmark)."""
    colour32, cos_c, sin_c, freq = looks
    n = label.shape[0]
    axis = np.arange(n, dtype=np.float32)
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
    return out


def _dig_craters(rng: np.random.Generator, out: np.ndarray) -> None:
    """Forty craters into ``out`` (in place): a dark rim lit from one side, a shadowed bowl."""
    n = out.shape[0]
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
    """A parachute seen from below, its gores in two colours.

    Returns (mask ``(h, w)`` bool, colours ``(h, w, 3)`` uint8)."""
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
_SEGMENTS = {"0": "abcdef", "1": "bc", "2": "abged", "3": "abgcd", "4": "fgbc", "5": "afgcd",
             "6": "afgedc", "7": "abc", "8": "abcdefg", "9": "abcdfg"}


def _draw_number(img: np.ndarray, number: int, height: int) -> None:
    """Draw ``number`` in large white 7-segment digits on a dark box, top-left of ``img``."""
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
    """Fraction of the start altitude left after ``scene_s`` s of descent: 1 -> 0.25, then holds."""
    p = min(max(scene_s / descent_s, 0.0), 1.0)
    return 1.0 - 0.75 * (1 - (1 - p) ** 2)  # slows down near the ground, like a canopy flare


def _ground(seed: int, width: int, height: int, scene_s: float, rows_of: np.ndarray | None = None,
            descent_s: float = DESCENT_S) -> np.ndarray:
    """The ground under the camera at ``scene_s``, nearest-neighbour sampled.

    Returns ``(len(rows), width*3)`` uint8."""
    tex = ground_texture(seed)
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
    """Render one frame, ``(height, width, 3)`` uint8 RGB; pure: same arguments, same pixels.

    ``role`` ``down`` looks at the ground, ``up`` at the sky and the canopy, ``side`` at the
    horizon; the ground comes closer over ``descent_s`` scene seconds (a short demo flight sets it
    short so the approach shows).
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
        # Ground plane in perspective: rows further below the horizon are nearer (distance ~
        # 1/angle).
        below = np.arange(1, height - horizon + 1, dtype=np.float64)
        # far haze
        rows_of = np.minimum((height * 0.5) * (height * 0.5) / below * 0.6, height * 1.5)
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
    """``HxWx3`` uint8 RGB (even ``H``, ``W``) -> full-range BT.601 (JFIF) I420 planes ``(Y, U,
    V)``, with chroma averaged over 2x2 blocks. Float32 numpy: fine at lores sizes (measured ~3 ms
    at 320x240)."""
    h, w = rgb.shape[:2]
    if h % 2 or w % 2:
        raise ValueError(f"I420 needs an even size, got {w}x{h}")
    f = rgb.astype(np.float32)
    r, g, b = f[..., 0], f[..., 1], f[..., 2]
    y = 0.299 * r + 0.587 * g + 0.114 * b
    # 2x2 means of R, G, B first: chroma is linear, so this equals subsampling full-resolution
    # chroma.
    q = f.reshape(h // 2, 2, w // 2, 2, 3).mean(axis=(1, 3))
    qr, qg, qb = q[..., 0], q[..., 1], q[..., 2]
    u = 128.0 - 0.168736 * qr - 0.331264 * qg + 0.5 * qb
    v = 128.0 + 0.5 * qr - 0.418688 * qg - 0.081312 * qb
    planes = tuple(np.clip(np.rint(p), 0, 255).astype(np.uint8) for p in (y, u, v))
    return planes  # type: ignore[return-value]
