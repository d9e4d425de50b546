"""Per-camera capture threads: the rate schedule by phase, the pre-trigger ring, fault isolation.

One :class:`CameraRunner` per camera. The event path only calls :meth:`CameraRunner.set_phase`; the
runner's thread reads the phase before each frame, so a rate change takes effect on the next one.
In ARMED, encoded frames go to a :class:`PreTriggerRing`; the first frame of a later phase flushes
it to the store ahead of itself, in order, with neither a gap nor a duplicate at the seam. A camera
that throws, stalls or vanishes is closed and reopened with backoff; it never stops another camera.
Lores phases (``lores_phases``): the thread tells the camera whether to give its lores stream.
Collaborators: frames to the store (``pipeline.py``, in encode order: ``pending.py``), stills
(``stills.py``), ring and stats (``ring.py``), the pure schedule rules (``schedule.py``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from camctl.board.cameras.base import Camera
from camctl.board.config import ARMED, LANDED, SAFE, TOUCHDOWN, CameraConfig
from camctl.board.encode import EncoderPool
from camctl.board.pending import give_back
from camctl.board.pipeline import FramePipeline
from camctl.board.ring import PreTriggerRing, RunnerStats
from camctl.board.schedule import frame_phase
from camctl.board.stills import StillBook
from camctl.common.frames import EncodedFrame, Frame
from camctl.common.ledger import ABANDONED, RING_OVERFLOW, SENSOR_GAP, Ledger
from camctl.common.records import FaultRecord
from camctl.exc import CameraError

__all__ = ["CameraRunner"]

log = logging.getLogger("camctl.board.capture")
Sink = Callable[[EncodedFrame], bool]
# A runner thread is overdue (stuck, e.g. in a backend call without a timeout) this long after the
# time the step it is in should have taken: a capture's own timeout (at least three frame
# intervals), an idle wait, a backoff, or an open/close/drain.
PROGRESS_MARGIN_S = 2.0
# open, close, a still (a full-resolution one is two mode switches), the last encoder drain: slow,
# but bounded
SLOW_STEP_S = 10.0
# ARMED frames that may be taken from the main stream for the frame sizes at ARM before giving up
# (a camera that gives no RGB main frame, e.g. the hardware encoder's JPEGs: recorded sizes only)
MEASURE_TRIES = 3


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
        self._on_fault = on_fault
        self._backoff = backoff_s
        self._clock_ns = clock_ns
        self.ledger = ledger if ledger is not None else Ledger()
        self.ring = PreTriggerRing(cfg.pretrigger_s, int(cfg.pretrigger_mb * 1024 * 1024),
                                   on_loss=self._ring_loss)
        self.stats = RunnerStats()
        # (phase, previous phase, changed at ns, generation): one immutable tuple, replaced whole by
        # the event path and read once per frame by this runner's thread, so no reader ever sees
        # half a phase change
        self._state: tuple[str, str, int, int] = (SAFE, SAFE, 0, 0)
        self._retry = threading.Event()  # set on every phase change: cuts a fault backoff short
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._idle = threading.Event()
        self._idle.set()
        self._stills = StillBook()
        # the frames' way to the store: encoder (in capture order), ring, sink
        self._frames = FramePipeline(camera, cfg, pool, sink, ring=self.ring, stats=self.stats,
                                     stills=self._stills, lose=self._lose,
                                     max_inflight=max_inflight)
        self._last_seq: int | None = None  # the last *video* frame's seq (stills have their own)
        # added to every frame's seq (video and stills) before any bookkeeping: a camera object
        # numbers its frames from 0, so a replacement, or a resumed flight, continues after the
        # seqs already taken in the flight (CameraFleet sets it before start)
        self.seq_base = 0
        self.max_seq = -1  # the highest seq (with the base) of any frame this runner took
        self._lores_applied: bool | None = None  # what set_lores was last told (None: unopened)
        self.lores_native = False  # the camera honoured set_lores (else RGB frames are decimated)
        # armed anew (set by the event path, taken by this thread): the frame sizes start again and
        # one ARMED frame is taken from the main stream to measure each flight phase's size
        self._armed_anew = False
        self._measure_tries = 0
        # progress (the watchdog's view): what the thread is doing and by when it should be done
        self.activity = "not started"
        self._due_ns: int | None = None
        self._step_ns = 0  # when the current step began
        self.budget_s = 0.0  # what it should take (the margin not counted)
        self.isolated = False  # given up on (the daemon's decision); not counted by the watchdog
        self._thread = threading.Thread(target=self._run, name=f"camctl-cam-{self.name}",
                                        daemon=True)

    # -- control (event path: never blocks) --------------------------------------------------------
    def start(self) -> None:
        self._thread.start()

    def set_phase(self, phase: str) -> None:
        current, _prev, _t, gen = self._state
        if phase == current:
            return
        self._state = (phase, current, self._clock_ns(), gen + 1)
        if phase == ARMED and current in (SAFE, LANDED):
            self._armed_anew = True
        self._retry.set()
        if phase not in (SAFE, LANDED):
            self._idle.clear()
            fps = self.cfg.fps_for(phase)
            self.stats.target_fps = fps
            if not self.camera.closed:
                try:  # backends make this thread-safe and cut a paced wait short
                    self.camera.set_fps(fps)
                except Exception as exc:  # the runner thread retries on its next frame
                    log.debug("set_fps from the event path failed: %s", exc)
        self._wake.set()

    def request_still(self, event: str) -> None:
        self._stills.request(event)
        self._wake.set()

    def set_ledger(self, ledger: Ledger) -> None:
        """Count into ``ledger`` from now on (the daemon gives each flight its own at ARMED)."""
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
        """Frames captured, not yet handed to the store: waiting for the encoder or in the ring."""
        return len(self._frames)

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

    # -- progress (read by the daemon's watchdog) --------------------------------------------------
    def _expect(self, activity: str, seconds: float) -> None:
        self.activity = activity
        now = self._clock_ns()
        self._step_ns, self.budget_s = now, seconds
        self._due_ns = now + int((seconds + PROGRESS_MARGIN_S) * 1e9)

    def stuck_s(self, now_ns: int | None = None) -> float:
        """Seconds the thread has been in its current step (what a hang message says)."""
        now = self._clock_ns() if now_ns is None else now_ns
        return max(0.0, (now - self._step_ns) / 1e9)

    @property
    def next_seq(self) -> int:
        """The first seq a runner taking over from this one may give (above every seq it took)."""
        return max(self.seq_base, self.max_seq + 1)

    @property
    def alive(self) -> bool:
        """The thread runs (an abandoned one: still stuck in its backend)."""
        return self._thread.is_alive()

    def overdue_s(self, now_ns: int | None = None) -> float:
        """Seconds the thread is past the time its current step should have taken (0.0: making
        progress). A thread that died without being stopped stops making progress: it is overdue."""
        due = self._due_ns
        if due is None or self._stop.is_set():
            return 0.0
        now = self._clock_ns() if now_ns is None else now_ns
        return max(0.0, (now - due) / 1e9)

    def abandon(self, *, keep_ring: bool = False) -> list[EncodedFrame]:
        """Give up on a stuck thread (it cannot be killed): it stops when the backend lets go, and
        whatever it still produces is dropped (``abandoned``), so it never interleaves with its
        replacement.

        Its frames in RAM are dropped in its ledger (the flight they belong to; the replacement
        counts into the same one): the ring now, frames in the encoder as they come out, and a
        frame the stuck call brings back. Never waits (beyond ``RING_HANDOVER_S``): whoever holds
        the drain lock re-checks the kick. ``keep_ring``: the pre-trigger ring is returned instead,
        for the replacement to keep (:meth:`adopt_ring`).

        Its camera is closed, best effort, on a thread of its own (never joined: the close may be
        as stuck as the capture), and again by the thread when the backend lets go: a picamera2
        object keeps its camera acquired until closed, so the replacement's open fails until then
        (picamera2 ``_open_camera`` -> libcamera ``Camera::acquire``, -EBUSY while another holds
        it: libcamera src/libcamera/camera.cpp)."""
        self._stop.set()
        self._wake.set()
        ring = self._frames.abandon(keep_ring=keep_ring)
        threading.Thread(target=self._close_camera, name=f"camctl-close-{self.name}",
                         daemon=True).start()
        return ring

    def adopt_ring(self, frames: list[EncodedFrame]) -> None:
        """Before :meth:`start`: the ring of the runner this one replaces, older than any frame of
        this one's (flushed ahead of them at the release, or aged out, in the same ledger)."""
        for frame in frames:
            self.ring.push(frame)

    def snapshot(self) -> dict:
        return self.stats.snapshot(self.ring)

    # -- the thread --------------------------------------------------------------------------------
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
                self._rest(phase)
                continue
            try:
                frame = self._next_frame(phase)
            except Exception as exc:  # CameraError, or any bug in a backend: isolate this camera
                if self._frames.abandoned:  # the stuck call failed: nothing to restart
                    break
                self._expect("restarting", SLOW_STEP_S)
                self._fault(exc)
                self._expect("backoff", delay)
                retry_now = self._wait_backoff(delay, gen)
                delay = self._backoff[0] if retry_now else min(delay * 2, self._backoff[1])
                continue
            delay = self._backoff[0]
            self._renumber(frame)
            if self._frames.abandoned:  # the stuck call came back after the replacement took over
                self.stats.frames_captured += 1
                self.ledger.captured(self.name)
                self._lose(ABANDONED)
                give_back(frame, self.camera, self.name)
                continue
            self._account(frame)
            if self._measure_tries and phase == ARMED:
                self._measure(frame)
            self._frames.submit(frame, self._phase_of(frame, phase))
            self._frames.drain(block=False)
        self._frames.drain(block=True)
        if self._frames.abandoned:  # the backend let go: free the camera for the replacement
            self._close_camera()
        self.stats.state = "stopped"
        self._idle.set()

    def _rest(self, phase: str) -> None:
        """SAFE or LANDED: every frame handed on, the camera closed, idle until the next change."""
        self._expect("closing", SLOW_STEP_S)
        n = self._stills.drop_requests()  # not served: they must not leak into the next flight
        if n:
            self.stats.stills_missed += n
            self.ledger.still_missed(self.name, n)
        self._frames.drain(block=True)
        self._frames.end_of_flight(phase)
        self._close_camera()
        self.stats.state = "idle"
        self._idle.set()
        self._expect("idle", 0.5)
        self._wake.wait(0.5)
        self._wake.clear()

    def _next_frame(self, phase: str) -> Frame:
        """Open the camera if needed, take an owed still, set rate and lores: the next video frame.
        """
        if self.camera.closed:
            self._expect("opening", SLOW_STEP_S)
            self.stats.state = "starting"
            self._lores_applied = None
            self.camera.open()
            self.camera.set_fps(self.cfg.fps_for(phase))
        self.stats.state = "running"
        if self._armed_anew:
            self._armed_anew = False
            self.stats.new_flight()
            self._measure_tries = MEASURE_TRIES
        if phase != ARMED:  # released before a frame was measured: the flight's are recorded
            self._measure_tries = 0
        event = self._stills.next_request()
        if event is not None:
            self._expect("still", SLOW_STEP_S)
            self._take_still(event, phase)
        fps = self.cfg.fps_for(phase)
        self._expect("capturing", max(1.0, 3.0 / fps))
        if self.camera.fps != fps:
            self.camera.set_fps(fps)
        self.stats.target_fps = fps
        # the frame measured at ARM is a main-stream one: an ARMED frame like any other (the
        # pipeline decimates it to the lores size, as for a camera without a lores stream)
        want_lores = self.cfg.lores_in(phase) and not self._measure_tries
        if want_lores != self._lores_applied:
            self.lores_native = bool(self.camera.set_lores(want_lores))
            self._lores_applied = want_lores
        return self.camera.capture(max(1.0, 3.0 / fps))

    def _wait_backoff(self, delay: float, gen: int) -> bool:
        """Wait out a fault's backoff; True (retry at once, backoff reset) if the phase changed."""
        deadline = time.monotonic() + delay
        while not self._stop.is_set():
            if self._state[3] != gen:
                return True
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self._retry.wait(left)
            self._retry.clear()  # the generation check above catches a change made before it
        return False

    def flight_phases(self) -> list[str]:
        """The phases of a drop this camera records (its schedule's, qualities', lores phases' and
        TOUCHDOWN): the frame sizes measured at ARM."""
        named = {p for p, _ in self.cfg.fps} | {p for p, _ in self.cfg.quality}
        named |= set(self.cfg.lores_phases) | {TOUCHDOWN}
        return sorted(named - {SAFE, ARMED, LANDED})

    def _measure(self, frame: Frame) -> None:
        """The frame sizes at ARM from ``frame`` if it is a main-stream RGB frame (else the next
        ARMED frame is tried, :data:`MEASURE_TRIES` in all); never fails the frame."""
        self._measure_tries -= 1
        if frame.image is None or frame.yuv420 is not None:
            if not self._measure_tries:
                log.info("camera %s: no main-stream frame to measure frame sizes at ARM: the "
                         "flight's are as recorded", self.name)
            return
        self._measure_tries = 0
        try:
            self._frames.measure(frame.image, self.flight_phases())
        except Exception as exc:  # a measurement never costs a frame
            log.warning("camera %s: frame sizes at ARM not measured: %s", self.name, exc)

    # -- the books ---------------------------------------------------------------------------------
    def _renumber(self, frame: Frame) -> None:
        """The frame's seq in the flight: the camera's own plus :attr:`seq_base` (differences, so
        sensor gaps, are unchanged)."""
        frame.seq += self.seq_base
        if frame.seq > self.max_seq:
            self.max_seq = frame.seq

    def _lose(self, reason: str, n: int = 1) -> None:
        self.stats.drop(reason, n)
        self.ledger.lost(self.name, reason, n)

    def _ring_loss(self, why: str, n: int) -> None:
        if why == RING_OVERFLOW:
            self.ledger.lost(self.name, RING_OVERFLOW, n)
        else:
            self.ledger.aged_out(self.name, n)

    def _phase_of(self, frame: Frame, asked_in: str) -> str:
        """The phase of a frame's sensor time (:func:`~camctl.board.schedule.frame_phase`)."""
        return frame_phase(self._state, frame.timestamp_ns, asked_in)

    def _account(self, frame: Frame) -> None:
        """Count a video frame (and the numbers the sensor skipped before it) into the ledger.
        ``stats.frames_captured`` counts as the ledger does (docs/ledger.md: every number the sensor
        gave, skipped ones too, and every still), so status and ``ls`` say the same."""
        self.stats.rate_window.append(frame.timestamp_ns)
        gap, still = self._stills.video_frame(frame.timestamp_ns, self._last_seq, frame.seq)
        self._last_seq = frame.seq
        n = 1 + max(0, gap)  # this frame and the numbers skipped before it
        self.stats.frames_captured += n
        self.ledger.captured(self.name, n)
        if gap <= 0:
            return
        if still is not None:  # still_gap, or still_mode_switch (the cost of a full still)
            self._lose(still, gap)
        else:
            self.stats.sensor_gaps += gap
            self.ledger.lost(self.name, SENSOR_GAP, gap)

    # -- stills ------------------------------------------------------------------------------------
    def _take_still(self, event: str, phase: str) -> None:
        """Capture a still and queue its encode (the thread never waits for it); it is stored once
        its video gap is measured (:class:`~camctl.board.stills.StillBook`)."""
        try:
            frame = self.camera.capture_still()
        except Exception:  # the fault path restarts the camera; the still it owed is counted
            self.stats.stills_missed += 1
            self.ledger.still_missed(self.name, 1)
            raise
        self._renumber(frame)
        self._stills.taken(frame, event, mode_switch=frame.mode_switch)
        self.stats.frames_captured += 1
        self.ledger.captured(self.name)
        self._frames.add_still(frame, phase)

    # -- faults ------------------------------------------------------------------------------------
    def _fault(self, exc: BaseException) -> None:
        self.stats.faults += 1
        self.stats.state = "restarting"
        kind = type(exc).__name__
        self.stats.last_error = str(exc) if isinstance(exc, CameraError) else f"{kind}: {exc}"
        log.warning("camera %s fault (%s): %s; restarting", self.name, kind, exc,
                    extra={"camera": self.name, "fault": kind, "faults": self.stats.faults})
        # encodes may still read lent camera buffers: let them finish before the camera frees them
        self._frames.drain(block=True)
        self._close_camera()
        self.stats.restarts += 1
        if self._on_fault is not None:
            try:
                self._on_fault(FaultRecord(camera=self.name, error=kind,
                                           message=self.stats.last_error, mono_ns=self._clock_ns(),
                                           wall_ns=time.time_ns()).encode())
            except Exception:  # a fault report must never take the camera thread down
                log.exception("fault callback failed")

    def _close_camera(self) -> None:
        try:
            self.camera.close()
        except Exception as exc:
            log.debug("closing camera %s: %s", self.name, exc)

    def __repr__(self) -> str:
        return f"<CameraRunner {self.name!r} {self.phase} {self.stats.state}>"
