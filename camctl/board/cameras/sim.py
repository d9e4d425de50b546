"""The ``sim`` camera backend: a synthetic, deterministic EDL descent scene with fault injection.

:class:`SimCamera` stands beside the picamera2 backend on the same
:class:`~camctl.board.cameras.base.Camera` base and is chosen by the config (``backend = "sim"``),
never as a silent fallback. It owns the scene (:mod:`camctl.board.cameras.sim_scene`), pacing on
an absolute schedule, a lores stream of I420 planes, and the faults ``stall``, ``exception``,
``disconnect`` and ``hang``: docs/cameras.md, section "sim", says how each behaves.

Example::

    >>> cam = SimCamera("down", size=(320, 240), fps=30, seed=1, paced=False)
    >>> with cam:
    ...     frame = cam.capture()
    >>> frame.image.shape, frame.seq
    ((240, 320, 3), 0)
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

import numpy as np

from camctl.board.cameras.base import Camera
from camctl.board.cameras.sensor_modes import SENSORS
from camctl.board.cameras.sim_scene import (
    DESCENT_S,
    ground_texture,
    prepare_scene,
    render_scene,
    rgb_to_i420,
)
from camctl.common.frames import Frame
from camctl.exc import CameraDisconnected, CameraError, CameraTimeout

if TYPE_CHECKING:
    from camctl.board.config import CameraConfig

__all__ = ["DESCENT_S", "FAULT_KINDS", "SimCamera", "render_scene", "rgb_to_i420"]

FAULT_KINDS = ("stall", "exception", "disconnect", "hang")
_NS = 1_000_000_000
# A full-resolution still (still_size = "full") is the Camera Module 3's: its largest mode
# (4608x2592, 14.35 fps at most), after a mode switch and before one back, each MODE_SWITCH_S, what
# the picamera2 double assumes too (its rig.mode_switch_s; docs/cameras.md has the real stack's)
FULL_MODE = SENSORS["imx708"].modes[-1]
MODE_SWITCH_S = 0.15
# the longest a full still may take, at least (the runner's still timeout is for a frame)
FULL_STILL_TIMEOUT_S = 5.0
# --- the backend ----------------------------------------------------------------------------------
class SimCamera(Camera):
    """A simulated camera on the real :class:`Camera` base.

    ``paced=False`` returns frames as fast as asked (benchmarks), with timestamps still advancing by
    one period per frame. ``clock`` (ns) and ``sleep`` (s) are injectable so tests run on a fake
    time line. ``faults`` is a list of ``(kind, at_s, duration_s)`` measured from the first
    :meth:`open`. ``seq`` counts frames for the life of the object (it does not restart when the
    camera is reopened). ``lores_size`` (width, height; rounded down to even, as picamera2 aligns a
    YUV420 stream) enables the lores stream; :meth:`set_lores` switches to it from the next frame.
    ``still_size`` is ``"video"`` (a still is the next frame, at ``size``) or ``"full"`` (the
    sensor's :data:`FULL_MODE` by a mode switch and back, ``mode_switch_s`` each: the video pauses,
    as on the picamera2 backend).
    """

    def __init__(self, name: str, *, size: tuple[int, int] = (1920, 1080), fps: float = 30.0,
                 role: str = "down", seed: int = 0, faults: Iterable[tuple[str, float, float]] = (),
                 paced: bool = True, clock: Callable[[], int] = time.monotonic_ns,
                 sleep: Callable[[float], None] = time.sleep, prerender: int = 0, buffers: int = 6,
                 lores_size: tuple[int, int] | None = None, descent_s: float = DESCENT_S,
                 still_size: str = "video", mode_switch_s: float = MODE_SWITCH_S) -> None:
        if fps <= 0:
            raise ValueError(f"fps must be > 0, got {fps}")
        if still_size not in ("video", "full"):
            raise CameraError(name, f"still_size must be 'video' or 'full', got {still_size!r}")
        self.still_size = still_size
        self.mode_switch_s = float(mode_switch_s)
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
                raise CameraError(name, f"unknown fault kind {kind!r} "
                                        f"(expected one of {', '.join(FAULT_KINDS)})")
            self._faults.append((kind, float(at_s), float(duration_s)))
        # (kind, at_ns, duration_s), set at first open
        self._scheduled: list[tuple[str, int, float]] = []
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
        # prerender > 0: render that many frames once and replay them, so a frame costs the CPU what
        # a real camera's does, not a scene render: the replayed frames stand for the ISP's output
        # buffers (filled off-CPU), lent to the caller (Frame.release) while buffers are to spare
        # and copied out otherwise, as the picamera2 backend does with its requests. For benchmarks.
        self.prerender = int(prerender)
        # Like a libcamera stream with ``buffers`` buffers (picamera2's video default is 6): a
        # consumer that is late gets the queued frames, in order, with their exposure times; the
        # sensor drops frames only when every buffer is full (late by ``buffers`` periods or more).
        # A lent buffer is not free: with ``k`` lent, the sensor drops frames once the consumer is
        # ``buffers - k`` periods late.
        self.buffers = max(1, int(buffers))
        self.lend_limit = max(0, self.buffers - 2)  # two buffers always stay with the sensor
        self._replay: list[np.ndarray] = []
        self._free: list[np.ndarray] = []  # recycled frame buffers (prerender mode)
        self._loan_lock = threading.Lock()
        self._loans = 0  # lent buffers not given back yet
        # prerender frames handed out as views / as copies
        self.frames_lent = self.frames_copied = 0
        # closes with buffers still lent (a real camera would free them under a reader)
        self.closed_while_lent = 0
        self.lores_size = (None if lores_size is None
                           else (int(lores_size[0]) & ~1, int(lores_size[1]) & ~1))
        if self.lores_size is not None and min(self.lores_size) < 2:
            raise CameraError(name, f"lores_size must be at least 2x2, got {lores_size!r}")
        self._lores = False  # deliver the lores stream (a bool write: thread-safe)

    @classmethod
    def from_config(cls, cfg: CameraConfig, *, seed: int = 0, **kwargs: object) -> SimCamera:
        """Build (closed) from ``cfg`` at the ARMED rate, mixing ``seed`` with ``cfg.seed``."""
        mixed = int(np.random.SeedSequence([int(cfg.seed), int(seed)]).generate_state(1)[0])
        kwargs.setdefault("lores_size", cfg.lores_size)
        kwargs.setdefault("descent_s", cfg.sim_descent_s)
        kwargs.setdefault("prerender", cfg.sim_prerender)
        kwargs.setdefault("still_size", cfg.still_size)
        return cls(cfg.name, size=cfg.size, fps=cfg.fps_for("ARMED"), role=cfg.role, seed=mixed,
                   faults=cfg.faults, **kwargs)  # type: ignore[arg-type]

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"open, {self._fps:g} fps, next seq {self._seq}"
        return (f"<SimCamera {self.name!r} {self.role} seed={self.seed} "
                f"{self.size[0]}x{self.size[1]} {state}>")

    def set_fps(self, fps: float) -> None:
        """Change the rate (thread-safe), waking a capture that waits at the old rate."""
        super().set_fps(fps)
        self._rate_changed.set()

    # -- lores stream ------------------------------------------------------------------------------
    @property
    def supports_lores(self) -> bool:
        return self.lores_size is not None

    def set_lores(self, enabled: bool) -> bool:
        """Render the next frames as I420 at ``lores_size`` (``enabled``) or as RGB at main size."""
        if self.lores_size is None:
            return False
        self._lores = bool(enabled)
        return True

    # -- faults ------------------------------------------------------------------------------------
    def inject_stall(self, duration_s: float) -> None:
        """Make the sensor stall for ``duration_s`` from the next capture on."""
        self._pending_stall_s = float(duration_s)

    def inject_exception(self) -> None:
        """Make the next capture raise :class:`CameraError`."""
        self._pending_exception = True

    def inject_disconnect(self, duration_s: float) -> None:
        """Unplug at the next capture: it raises, and ``open()`` fails for ``duration_s``."""
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
                self._disconnected_until_ns = max(self._disconnected_until_ns,
                                                  at_ns + int(duration_s * _NS))

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
                raise CameraTimeout(self.name,
                                    f"no frame within {timeout_s:g} s (sim: stalled sensor)")
            self._sleep(left_s)  # the stall ends inside the timeout: the frame comes late

    # -- lifecycle ---------------------------------------------------------------------------------
    def _open_backend(self) -> None:
        now = self._clock()
        if self._first_open_ns is None:
            self._first_open_ns = now
            self._scheduled = [(kind, now + int(at_s * _NS), d) for kind, at_s, d in self._faults]
        self._fire_due_faults(now)
        if now < self._disconnected_until_ns:
            left = (self._disconnected_until_ns - now) / _NS
            raise CameraDisconnected(self.name, "sim: camera not found "
                                                f"(disconnected for {left:.3g} s more)")
        self._prev_ns = None  # a reopened sensor starts a new schedule
        ground_texture(self.seed)  # build the scene before the first frame, not during it

    def recycle(self, image: object) -> None:
        """Reuse an encoded frame's buffer for a later replayed frame (prerender mode)."""
        if (self.prerender and isinstance(image, np.ndarray) and image.base is None
                and len(self._free) < 8 and image.shape == (self.size[1], self.size[0], 3)):
            self._free.append(image)

    def prepare(self) -> None:
        """Build the scene's textures now (about a second), so arming does not wait for them; one
        camera at a time, so two cameras preparing together do not double the memory peak."""
        prepare_scene(self.seed, self.role, self.size)
        if self.still_size == "full":
            prepare_scene(self.seed, self.role, FULL_MODE.size)
        if self.prerender and not self._replay:
            step = self.descent_s / self.prerender
            self._replay = [render_scene(self.seed, self.role, self.size, i, i * step,
                                         self.descent_s)
                            for i in range(self.prerender)]

    def _close_backend(self) -> None:
        # the replayed buffers outlive this, but a real camera's would be freed here
        if self._loans:
            self.closed_while_lent += 1

    # -- frames ------------------------------------------------------------------------------------
    def capture(self, timeout_s: float = 1.0) -> Frame:
        """The next frame at the current rate, or CameraTimeout/CameraError/CameraDisconnected."""
        return self._capture(timeout_s, lores=self._lores)

    @property
    def full_stills(self) -> bool:
        return self.still_size == "full"

    def capture_still(self, timeout_s: float = 2.0) -> Frame:
        """A still: the next frame at the main size (even with the lores stream on), or with
        ``still_size = "full"`` the whole sensor after a mode switch (:meth:`_full_still`)."""
        if self.still_size == "full":
            return self._full_still(max(timeout_s, FULL_STILL_TIMEOUT_S))
        frame = self._capture(timeout_s, lores=False)
        frame.still = True
        return frame

    def _full_still(self, timeout_s: float) -> Frame:
        """The sensor stops now (the next slot, unpaced), switches to :data:`FULL_MODE`
        (``mode_switch_s``), exposes one frame of it (the still), switches back (``mode_switch_s``)
        and starts the video again: its next frame comes a period after that. The still takes a
        number; the video's slots the sensor never exposed are a gap in ``seq`` after it."""
        if self.closed:
            raise CameraError(self.name, "capture_still() on a closed camera")
        self._check_faults(timeout_s)
        period_ns = round(_NS / self._fps)
        switch_ns = round(self.mode_switch_s * _NS)
        full_ns = round(_NS / FULL_MODE.fps)
        prev = self._prev_ns
        start = self._clock() if self.paced or prev is None else prev + period_ns
        still_ns = start + switch_ns + full_ns
        resume_ns = still_ns + switch_ns
        if self.paced:
            wait_s = (still_ns - self._clock()) / _NS
            if wait_s > timeout_s:
                self._sleep(timeout_s)
                raise CameraTimeout(self.name, f"no still within {timeout_s:g} s (sim: mode "
                                               "switch)")
            self._sleep(max(0.0, wait_s))
        seq = self._seq
        # scene time of a sensor time: the next video slot's, moved on by the time since it
        base_ns = start if prev is None else prev + period_ns
        image = render_scene(self.seed, self.role, FULL_MODE.size, seq,
                             self._scene_s + (still_ns - base_ns) / _NS, self.descent_s)
        lost = 0 if prev is None else round((resume_ns + period_ns - prev) / period_ns) - 1
        self._seq = seq + 1 + lost
        self._scene_s += (resume_ns + period_ns - base_ns) / _NS
        self._prev_ns = resume_ns  # the video's next frame: a period after the switch back
        width, height = FULL_MODE.size
        return Frame(camera=self.name, seq=seq, timestamp_ns=still_ns, image=image, width=width,
                     height=height, exposure_us=min(full_ns // 1000, 8000), analogue_gain=1.0,
                     frame_duration_us=full_ns // 1000, still=True, mode_switch=True)

    def _capture(self, timeout_s: float, *, lores: bool) -> Frame:
        if self.closed:
            raise CameraError(self.name, "capture() on a closed camera")
        self._check_faults(timeout_s)
        target, period_ns = self._next_slot(timeout_s)
        seq = self._seq
        period_us = period_ns // 1000
        if lores and self.lores_size is not None:
            planes = rgb_to_i420(render_scene(self.seed, self.role, self.lores_size, seq,
                                              self._scene_s, self.descent_s))
            image, release, (width, height) = None, None, self.lores_size
        else:
            planes, (width, height) = None, self.size
            image, release = self._image(seq)
        self._seq += 1
        self._scene_s += period_ns / _NS
        self._prev_ns = target
        return Frame(camera=self.name, seq=seq, timestamp_ns=target, image=image, yuv420=planes,
                     width=width, height=height, exposure_us=min(period_us, 8000),
                     analogue_gain=1.0, frame_duration_us=period_us, release=release)

    def _next_slot(self, timeout_s: float) -> tuple[int, int]:
        """``(sensor time, period)`` of the next frame, in ns, waiting for it when paced; a consumer
        late by every free buffer skips the slots the sensor dropped (a ``seq`` gap)."""
        self._rate_changed.clear()
        period_ns = round(_NS / self._fps)
        now = self._clock()
        if self._prev_ns is None:
            return now, period_ns
        target = self._prev_ns + period_ns
        # A rate change from another thread (the event path) cuts a long idle-rate wait short, so
        # the first frame of a faster phase comes one new period after the last frame, not one old
        # period.
        while self.paced and target > now and self._sleep is time.sleep:
            if not self._rate_changed.wait(min((target - now) / _NS, timeout_s)):
                break
            self._rate_changed.clear()
            period_ns = round(_NS / self._fps)
            now = self._clock()
            target = max(self._prev_ns + period_ns, now)
        if self.paced:
            free = max(1, self.buffers - self._loans)
            if now >= target + period_ns * free:  # every free buffer full: the sensor dropped some
                missed = (now - target) // period_ns - (free - 1)
                target += missed * period_ns
                self._seq += missed
                self._scene_s += missed * period_ns / _NS
            elif target > now:
                wait_s = (target - now) / _NS
                if wait_s > timeout_s:
                    self._sleep(timeout_s)
                    raise CameraTimeout(self.name, f"no frame within {timeout_s:g} s at "
                                                   f"{self._fps:g} fps")
                self._sleep(wait_s)
        return target, period_ns

    def _image(self, seq: int) -> tuple[np.ndarray, Callable[[], None] | None]:
        """Frame ``seq``'s main image: lent (read-only, with its ``release``) while buffers are
        free, else a copy."""
        if self.prerender:
            if not self._replay:
                self.prepare()
            src = self._replay[seq % len(self._replay)]
            release = self._lend()
            if release is not None:
                image = src.view()
                image.flags.writeable = False  # the sensor's buffer: read it, never write it
                return image, release
            try:
                image = self._free.pop()
            except IndexError:
                image = np.empty_like(src)
            np.copyto(image, src)
            self.frames_copied += 1
            return image, None
        # rendered into a fresh array standing for the ISP's buffer: lent the same way, so every
        # user of the sim (the daemon, the demo, the tests) holds to the contract the picamera2
        # backend needs
        image = render_scene(self.seed, self.role, self.size, seq, self._scene_s, self.descent_s)
        release = self._lend()
        if release is not None:
            image.flags.writeable = False
        else:
            self.frames_copied += 1
        return image, release

    @property
    def replayed(self) -> list[np.ndarray]:
        """The pre-rendered frames a ``prerender`` camera replays (rendered now if not yet),
        read-only views: what a benchmark encodes alone to compare with the whole capture path."""
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
        """Take a buffer for a lent frame: its one-shot ``release``, or None if none is spare."""
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
