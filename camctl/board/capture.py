"""Per-camera capture threads: rate schedule by phase, pre-trigger RAM ring, encoding, fault isolation.

One :class:`CameraRunner` per camera. The event path only calls :meth:`CameraRunner.set_phase` (a few
attribute writes, never blocks); the runner's own thread reads the phase before each frame, so a rate
change takes effect on the next frame. In ARMED, encoded frames go to a :class:`PreTriggerRing` (seconds
and bytes capped); the first frame of a later phase flushes the ring to the store ahead of itself, in
sequence order, so the seam has neither a gap nor a duplicate. A camera that throws, stalls or vanishes
is closed and reopened with exponential backoff; it never stops another camera.

Lores phases (``lores_phases`` in the camera config): before each frame the runner thread (never the event
path) tells the camera whether the phase wants its lores stream (:meth:`Camera.set_lores`, only when that
changes or after a reopen). A camera with a lores stream then returns I420 frames (``Frame.yuv420``) that go
to :meth:`EncoderPool.submit_yuv` with no colour conversion; any RGB frame in a lores phase is decimated
(:func:`lores`), which is the whole lores path for a camera without the stream. A frame keeps the size it was
captured at: the first frame after an edge out of a lores phase may still be a lores one (it was being
captured when the edge came), and the store records its real size.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future

import numpy as np

from camctl.board.cameras.base import Camera
from camctl.board.config import ARMED, LANDED, SAFE, CameraConfig
from camctl.board.encode import EncoderPool
from camctl.board.ring import PreTriggerRing, RunnerStats
from camctl.board.schedule import frame_phase, value_of
from camctl.common.frames import EncodedFrame, Frame, FrameValue
from camctl.common.ledger import (
    ABANDONED,
    ENCODE_ERROR,
    ENCODER_BEHIND,
    RING_OVERFLOW,
    SENSOR_GAP,
    STILL_GAP,
    STORE_REFUSED,
    Ledger,
)
from camctl.exc import CameraError

__all__ = ["CameraRunner", "PreTriggerRing", "RunnerStats"]

log = logging.getLogger("camctl.board.capture")
Sink = Callable[[EncodedFrame], bool]
# A runner thread is overdue (stuck, e.g. in a backend call without a timeout) this long after the time the
# step it is in should have taken: a capture's own timeout (at least three frame intervals), an idle wait,
# a backoff, or an open/close/drain.
PROGRESS_MARGIN_S = 2.0
SLOW_STEP_S = 10.0  # open, close, a full-resolution still, the last encoder drain: slow, but bounded


def lores(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """The lores stream of a backend without one: an integer-step decimation (a view; no filtering, as
    a sensor's binned mode would give), so the width is the largest even <= the main width / step."""
    h, w = image.shape[:2]
    step = max(1, min(w // size[0], h // size[1]))
    if step == 1:
        return image
    out = image[::step, ::step]
    return out[: out.shape[0] & ~1, : out.shape[1] & ~1]


class CameraRunner:
    """Runs one camera on its own thread for the whole life of the daemon."""

    def __init__(
        self,
        camera: Camera,
        cfg: CameraConfig,
        pool: EncoderPool,
        sink: Sink,
        *,
        on_fault: Callable[[dict], None] | None = None,
        max_inflight: int = 8,
        backoff_s: tuple[float, float] = (0.1, 5.0),
        clock_ns: Callable[[], int] = time.monotonic_ns,
        ledger: Ledger | None = None,
    ) -> None:
        self.camera = camera
        self.cfg = cfg
        self.name = cfg.name
        self._pool = pool
        self._sink = sink
        self._on_fault = on_fault
        self._max_inflight = max_inflight
        self._backoff = backoff_s
        self._clock_ns = clock_ns
        self.ledger = ledger if ledger is not None else Ledger()
        self.ring = PreTriggerRing(cfg.pretrigger_s, int(cfg.pretrigger_mb * 1024 * 1024), on_loss=self._ring_loss)
        self.stats = RunnerStats()
        # (phase, previous phase, changed at ns, generation): one immutable tuple, replaced whole by the event
        # path and read once per frame by this runner's thread, so no reader ever sees half a phase change
        self._state: tuple[str, str, int, int] = (SAFE, SAFE, 0, 0)
        self._retry = threading.Event()  # set on every phase change: cuts a fault backoff short
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._idle = threading.Event()
        self._idle.set()
        self._stills: collections.deque[str] = collections.deque(maxlen=4)
        self._pending: collections.deque[tuple[Frame, str, Future[bytes] | None]] = collections.deque()
        self._drain_lock = threading.Lock()
        self._kick = False
        self._last_seq: int | None = None  # the last *video* frame's seq (stills have their own mark)
        self._still_seqs: list[int] = []  # seqs of stills taken since that video frame
        self._still_since = False  # a still interrupted the video since that frame
        self._lores_applied: bool | None = None  # what set_lores was last told (None: not since the open)
        self.lores_native = False  # the camera honoured set_lores (else RGB frames are decimated)
        self._rate_window: collections.deque[int] = collections.deque(maxlen=64)
        # progress (the watchdog's view): what the thread is doing and by when it should be done with it
        self.activity = "not started"
        self._due_ns: int | None = None
        self.isolated = False  # given up on (the daemon's decision); not counted by the watchdog
        self._abandoned = False  # replaced by a new runner: frames still coming out of this one are dropped
        # stills: meta of each still waiting in _pending (by frame id), and the video-gap watch of each
        self._still_meta: dict[int, dict] = {}
        self._gap_watches: list[dict] = []
        self._last_video_ns: int | None = None
        self._thread = threading.Thread(target=self._run, name=f"camctl-cam-{self.name}", daemon=True)

    # -- control (event path: never blocks) -------------------------------------------------------------
    def start(self) -> None:
        self._thread.start()

    def set_phase(self, phase: str) -> None:
        current, _prev, _t, gen = self._state
        if phase == current:
            return
        self._state = (phase, current, self._clock_ns(), gen + 1)
        self._retry.set()
        if phase not in (SAFE, LANDED):
            self._idle.clear()
            fps = self.cfg.fps_for(phase)
            self.stats.target_fps = fps
            if not self.camera.closed:
                try:
                    self.camera.set_fps(fps)  # backends make this thread-safe and cut a paced wait short
                except Exception as exc:  # the runner thread retries on its next frame
                    log.debug("set_fps from the event path failed: %s", exc)
        self._wake.set()

    def request_still(self, event: str) -> None:
        self._stills.append(event)
        self._wake.set()

    def set_ledger(self, ledger: Ledger) -> None:
        """Count into ``ledger`` from now on (the daemon gives each flight its own, before it arms)."""
        self.ledger = ledger

    @property
    def phase(self) -> str:
        return self._state[0]

    @property
    def phase_changed_ns(self) -> int:
        """Monotonic ns of the last phase change (0 before the first)."""
        return self._state[2]

    @property
    def in_pipeline(self) -> int:
        """Frames captured and not yet handed to the store: waiting for the encoder or in the ring."""
        return len(self._pending) + len(self.ring)

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Wait until the camera is closed and every frame went to the store (after SAFE/LANDED)."""
        return self._idle.wait(timeout)

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._wake.set()
        self._retry.set()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout)
        self._close_camera()

    # -- progress (read by the daemon's watchdog) --------------------------------------------------------
    def _expect(self, activity: str, seconds: float) -> None:
        self.activity = activity
        self._due_ns = self._clock_ns() + int((seconds + PROGRESS_MARGIN_S) * 1e9)

    def overdue_s(self, now_ns: int | None = None) -> float:
        """Seconds the thread is past the time its current step should have taken (0.0: making progress).
        A thread that died without being stopped stops making progress too: it becomes overdue."""
        due = self._due_ns
        if due is None or self._stop.is_set():
            return 0.0
        now = self._clock_ns() if now_ns is None else now_ns
        return max(0.0, (now - due) / 1e9)

    def abandon(self) -> None:
        """Give up on a stuck thread (it cannot be killed): it stops when the backend lets go, and whatever
        it still produces is dropped (``abandoned``), so it never interleaves with its replacement.

        Its frames in RAM are dropped in its ledger (the flight they belong to; the replacement
        counts into the same one): the ring now, frames in the encoder as they come out, and a
        frame the stuck call brings back. Never waits: whoever holds the drain lock re-checks the
        kick."""
        self._abandoned = True
        self._stop.set()
        self._wake.set()
        self._drain(block=False)

    def snapshot(self) -> dict:
        s = self.stats
        s.ring_frames, s.ring_bytes, s.ring_expired = len(self.ring), self.ring.bytes, self.ring.expired
        if self.ring.overflow:
            s.dropped["ring_overflow"] = self.ring.overflow
        return {
            "state": s.state,
            "fps": round(self._measured_fps(), 2),
            "target_fps": s.target_fps,
            "frames_captured": s.frames_captured,
            "frames_encoded": s.encoded,
            "sensor_gaps": s.sensor_gaps,
            "pretrigger_flushed": s.pretrigger_flushed,
            "stills": s.stills,
            "stills_missed": s.stills_missed,
            "ring_frames": s.ring_frames,
            "ring_bytes": s.ring_bytes,
            "faults": s.faults,
            "restarts": s.restarts,
            "dropped_by_reason": dict(s.dropped),
            "last_error": s.last_error,
        }

    def _measured_fps(self) -> float:
        w = list(self._rate_window)
        if len(w) < 2 or self.stats.state != "running":
            return 0.0
        span = w[-1] - w[0]
        return (len(w) - 1) / (span / 1e9) if span > 0 else 0.0

    # -- the thread -------------------------------------------------------------------------------------
    def prepare(self) -> None:
        """The camera's one-time set-up, before READY (so arming never waits for it)."""
        try:
            self.camera.prepare()
        except Exception as exc:  # a backend that cannot prepare will fail (and be retried) at open
            log.warning("camera %s: prepare failed: %s", self.name, exc)

    def _run(self) -> None:
        delay = self._backoff[0]
        while not self._stop.is_set():
            phase, _prev, _t, gen = self._state
            if phase in (SAFE, LANDED):
                self._expect("closing", SLOW_STEP_S)
                self._drop_pending_stills()
                self._finish_pending()
                with self._drain_lock:  # abandon() may drop the ring from the watchdog's thread
                    if phase == SAFE and len(self.ring):
                        self.ring.clear()  # disarmed: ARMED frames were never part of a flight
                    elif phase == LANDED and len(self.ring):
                        self._flush_ring()  # landed before any later frame: keep the pre-trigger
                self._close_camera()
                self.stats.state = "idle"
                self._idle.set()
                self._expect("idle", 0.5)
                self._wake.wait(0.5)
                self._wake.clear()
                continue
            try:
                if self.camera.closed:
                    self._expect("opening", SLOW_STEP_S)
                    self.stats.state = "starting"
                    self._lores_applied = None
                    self.camera.open()
                    self.camera.set_fps(self.cfg.fps_for(phase))
                self.stats.state = "running"
                if self._stills:
                    self._expect("still", SLOW_STEP_S)
                    self._take_still(self._stills.popleft(), phase)
                fps = self.cfg.fps_for(phase)
                self._expect("capturing", max(1.0, 3.0 / fps))
                if self.camera.fps != fps:
                    self.camera.set_fps(fps)
                self.stats.target_fps = fps
                want_lores = self.cfg.lores_in(phase)
                if want_lores != self._lores_applied:
                    self.lores_native = bool(self.camera.set_lores(want_lores))
                    self._lores_applied = want_lores
                frame = self.camera.capture(max(1.0, 3.0 / fps))
            except Exception as exc:  # CameraError, or any bug in a backend: isolate this camera
                self._expect("restarting", SLOW_STEP_S)
                self._fault(exc)
                self._expect("backoff", delay)
                delay = self._backoff[0] if self._wait_backoff(delay, gen) else min(delay * 2, self._backoff[1])
                continue
            delay = self._backoff[0]
            if self._abandoned:  # the stuck call came back after the replacement took over
                self.stats.frames_captured += 1
                self.ledger.captured(self.name)
                self._lose(ABANDONED)
                self._recycle(frame)
                continue
            self._account(frame)
            self._submit(frame, self._phase_of(frame, phase))
            self._drain(block=False)
        self._finish_pending()
        self.stats.state = "stopped"
        self._idle.set()

    def _wait_backoff(self, delay: float, gen: int) -> bool:
        """Wait out a fault's backoff; True (retry at once, backoff reset) when the phase changed meanwhile."""
        deadline = time.monotonic() + delay
        while not self._stop.is_set():
            if self._state[3] != gen:
                return True
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self._retry.wait(left)
            self._retry.clear()  # the generation check above catches a change made before this clear
        return False

    def _drop_pending_stills(self) -> None:
        """Still requests not served before LANDED/SAFE must not leak into the next flight: count them."""
        n = 0
        while self._stills:
            self._stills.popleft()
            n += 1
        if n:
            self.stats.stills_missed += n
            self.ledger.still_missed(self.name, n)

    def _lose(self, reason: str, n: int = 1) -> None:
        self.stats.drop(reason, n)
        self.ledger.lost(self.name, reason, n)

    def _ring_loss(self, why: str, n: int) -> None:
        if why == RING_OVERFLOW:
            self.ledger.lost(self.name, RING_OVERFLOW, n)
        else:
            self.ledger.aged_out(self.name, n)

    def _phase_of(self, frame: Frame, asked_in: str) -> str:
        """The phase a frame belongs to (see :func:`camctl.board.schedule.frame_phase`), from one state snapshot."""
        return frame_phase(self._state, frame.timestamp_ns, asked_in)

    def _account(self, frame: Frame) -> None:
        """Count a video frame (and the sequence numbers the sensor skipped before it) into the ledger."""
        self.stats.frames_captured += 1
        self._rate_window.append(frame.timestamp_ns)
        self._watch_gap(frame.timestamp_ns)
        last, seq, gap = self._last_seq, frame.seq, 0
        if last is not None and seq > last + 1:
            gap = seq - last - 1
            if self._still_since:  # a still took a number (sim) or paused the video (picamera2 mode switch)
                gap -= sum(1 for s in self._still_seqs if last < s < seq)
        self._last_seq = seq
        if gap > 0:
            self.ledger.captured(self.name, 1 + gap)
            if self._still_since:
                self._lose(STILL_GAP, gap)
            else:
                self.stats.sensor_gaps += gap
                self.ledger.lost(self.name, SENSOR_GAP, gap)
        else:
            self.ledger.captured(self.name)
        if self._still_since:
            self._still_since = False
            self._still_seqs.clear()

    def _submit(self, frame: Frame, phase: str) -> None:
        if frame.jpeg is not None:
            with self._drain_lock:
                self._pending.append((frame, phase, None))
            return
        if len(self._pending) >= self._max_inflight:
            self._drain(block=False)
            if len(self._pending) >= self._max_inflight:
                self._lose(ENCODER_BEHIND)
                self._recycle(frame)
                return
        value = value_of(phase)
        if frame.yuv420 is not None:  # the camera's own lores stream: encoded as it is
            fut = self._pool.submit_yuv(frame.yuv420, self.cfg.quality_for(phase), value=value)
        else:
            image = frame.image
            if self.cfg.lores_in(phase) and self.cfg.lores_size is not None:
                image = lores(image, self.cfg.lores_size)
                frame.height, frame.width = int(image.shape[0]), int(image.shape[1])
            fut = self._pool.submit(image, self.cfg.quality_for(phase), value=value)
        if fut.cancelled():  # the pool was full of frames worth as much or more (see encode.py)
            self._lose(ENCODER_BEHIND)
            self._recycle(frame)
            return
        with self._drain_lock:
            self._pending.append((frame, phase, fut))
        # route as soon as it is encoded (in order), not when the next frame comes: at 2 fps that is 0.5 s
        fut.add_done_callback(self._on_encoded)

    def _on_encoded(self, _fut: Future[bytes]) -> None:
        self._drain(block=False)

    def _drain(self, *, block: bool) -> None:
        if block:  # only the runner thread blocks, and only it adds frames: this empties the queue
            with self._drain_lock:
                self._drain_locked(True)
            if not self._kick:
                return
        # Encoder threads call this from done-callbacks: they must never wait for the lock (the runner may
        # hold it while it waits for a frame queued behind them). Whoever holds the lock re-checks the kick.
        self._kick = True
        while self._kick and self._drain_lock.acquire(blocking=False):
            try:
                self._kick = False
                self._drain_locked(False)
            finally:
                self._drain_lock.release()

    def _drain_locked(self, block: bool) -> None:
        if self._abandoned and len(self.ring):
            self._lose(ABANDONED, len(self.ring.drain()))
        while self._pending:
            frame, phase, fut = self._pending[0]
            if fut is not None and not fut.done() and not block:
                return
            if frame.still and not block and not self._abandoned \
                    and "video_gap_ms" not in self._still_meta.get(id(frame), {}):
                return  # its video gap is known once the first video frame after it is captured
            self._pending.popleft()
            if fut is not None and fut.cancelled():  # pushed out of the pool by a frame of higher value
                if frame.still:
                    self._still_meta.pop(id(frame), None)
                self._recycle(frame)
                self._lose(ENCODER_BEHIND)
                continue
            if fut is not None:
                try:
                    jpeg = fut.result()
                except Exception as exc:
                    self._lose(ENCODE_ERROR)
                    self.stats.last_error = f"encode: {exc}"
                    continue
                finally:
                    self._recycle(frame)
            else:
                jpeg = frame.jpeg or b""
            if frame.still:
                self._send_still(frame, jpeg, phase)
                continue
            self.stats.encoded += 1
            self._route(self._encoded(frame, jpeg, phase))

    def _recycle(self, frame: Frame) -> None:
        """Done with a frame's pixels (encoded, dropped or cancelled): every frame comes here exactly once.

        Lent pixels (``frame.release``, see :class:`~camctl.common.frames.Frame`) go back to the camera's buffers;
        owned ones to its pool, except a still's: it may share its pixels with its video twin, which returns
        them."""
        frame.yuv420 = None  # lores planes are small copies out of the camera's buffer: just let them go
        image, frame.image = frame.image, None
        release, frame.release = frame.release, None
        if release is not None:
            try:
                release()
            except Exception as exc:  # a backend bug must not cost the frames behind this one
                log.warning("camera %s: giving back a lent frame failed: %s", self.name, exc)
        elif image is not None and not frame.still:
            with contextlib.suppress(Exception):  # a pool is an optimisation; never let it cost a frame
                self.camera.recycle(image)

    def _finish_pending(self) -> None:
        self._drain(block=True)

    def _encoded(self, frame: Frame, jpeg: bytes, phase: str, value: int | None = None) -> EncodedFrame:
        return EncodedFrame(
            camera=self.name, seq=frame.seq, timestamp_ns=frame.timestamp_ns, jpeg=jpeg,
            width=frame.width, height=frame.height, phase=phase,
            value=value_of(phase) if value is None else value,
            exposure_us=frame.exposure_us, analogue_gain=frame.analogue_gain, still=frame.still,
        )

    def _route(self, ef: EncodedFrame) -> None:
        if ef.phase == ARMED and not self._abandoned:
            self.ring.push(ef)
            return
        if len(self.ring):
            self._flush_ring()
        self._send(ef)

    def _flush_ring(self) -> None:
        ring = self.ring.drain()
        for old in ring:
            old.value = int(FrameValue.PRETRIGGER)
            old.meta["pretrigger"] = True
            self._send(old)
        self.stats.pretrigger_flushed += len(ring)

    def _send(self, ef: EncodedFrame) -> None:
        if self._abandoned:
            self._lose(ABANDONED)
            return
        try:
            ok = self._sink(ef)
        except Exception as exc:  # the store must not raise, but never let it kill a camera
            ok = False
            self.stats.last_error = f"store: {exc}"
        if ok:
            self.stats.sent_to_store += 1
        else:
            self._lose(STORE_REFUSED)

    def _take_still(self, event: str, phase: str) -> None:
        """Capture a still and queue its quality-95 encode; the capture thread never waits for it.

        The still's ``video_gap_ms`` is measured, not assumed: the longest interval (sensor time) between
        consecutive video frames from the last one before the still to the first one after it. The still is
        held in the pending queue until that frame is captured (or the camera stops)."""
        try:
            frame = self.camera.capture_still()
        except Exception:  # the fault path restarts the camera; the still it owed is counted, not lost
            self.stats.stills_missed += 1
            self.ledger.still_missed(self.name, 1)
            raise
        frame.still = True  # stills live outside the video sequence: they make no sensor gap
        self._still_seqs.append(frame.seq)
        self._still_since = True
        self.ledger.captured(self.name)
        meta: dict = {"event": event}
        self._still_meta[id(frame)] = meta
        self._gap_watches.append({"meta": meta, "still_ns": frame.timestamp_ns, "prev_ns": self._last_video_ns,
                                  "worst_ns": 0})
        fut: Future[bytes] | None = None
        if frame.jpeg is None:
            still = int(FrameValue.STILL)
            fut = self._pool.submit_yuv(frame.yuv420, 95, value=still) if frame.yuv420 is not None else \
                self._pool.submit(frame.image, 95, value=still)
        with self._drain_lock:
            self._pending.append((frame, phase, fut))
        if fut is not None:
            fut.add_done_callback(self._on_encoded)

    def _watch_gap(self, timestamp_ns: int) -> None:
        """Called for every video frame: close the still's video-gap measurement at the first frame after it."""
        self._last_video_ns = timestamp_ns
        for watch in list(self._gap_watches):
            if watch["prev_ns"] is not None:
                watch["worst_ns"] = max(watch["worst_ns"], timestamp_ns - watch["prev_ns"])
            watch["prev_ns"] = timestamp_ns
            if timestamp_ns > watch["still_ns"]:
                watch["meta"]["video_gap_ms"] = round(watch["worst_ns"] / 1e6, 3)
                self._gap_watches.remove(watch)

    def _send_still(self, frame: Frame, jpeg: bytes, phase: str) -> None:
        meta = self._still_meta.pop(id(frame), {})
        if "video_gap_ms" not in meta:  # the camera stopped before a video frame followed: what was seen
            watch = next((w for w in self._gap_watches if w["meta"] is meta), None)
            if watch is not None:
                self._gap_watches.remove(watch)
            meta["video_gap_ms"] = round(watch["worst_ns"] / 1e6, 3) if watch and watch["worst_ns"] else None
        ef = self._encoded(frame, jpeg, phase, int(FrameValue.STILL))
        ef.still = True
        ef.meta.update(meta)
        self.stats.stills += 1
        self._send(ef)

    def _fault(self, exc: BaseException) -> None:
        self.stats.faults += 1
        self.stats.state = "restarting"
        kind = type(exc).__name__
        self.stats.last_error = str(exc) if isinstance(exc, CameraError) else f"{kind}: {exc}"
        log.warning("camera %s fault (%s): %s; restarting", self.name, kind, exc,
                    extra={"camera": self.name, "fault": kind, "faults": self.stats.faults})
        # frames still encoding may read lent camera buffers: let them finish before the camera frees them
        self._finish_pending()
        self._close_camera()
        self.stats.restarts += 1
        if self._on_fault is not None:
            try:
                self._on_fault({"kind": "fault", "camera": self.name, "error": kind,
                                "message": self.stats.last_error, "mono_ns": self._clock_ns(),
                                "wall_ns": time.time_ns()})
            except Exception:  # a fault report must never take the camera thread down
                log.exception("fault callback failed")

    def _close_camera(self) -> None:
        try:
            self.camera.close()
        except Exception as exc:
            log.debug("closing camera %s: %s", self.name, exc)

    def __repr__(self) -> str:
        return f"<CameraRunner {self.name!r} {self.phase} {self.stats.state}>"
