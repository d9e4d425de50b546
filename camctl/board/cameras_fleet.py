"""The board's cameras: one factory for every capture runner, the boot check, the capture watchdog.

:class:`CameraFleet` builds each :class:`~camctl.board.capture.CameraRunner` in one place
(:meth:`CameraFleet.runner`): the first ones and every replacement count into the flight's ledger
and share the same in-flight limit. Every camera is opened and checked (one frame) before READY=1;
one that cannot open is reported from boot on and retried at ARM. A capture thread stuck in its
backend is abandoned and its camera restarted on a fresh object, at most ``MAX_REPLACEMENTS``
times, then isolated; an isolated camera whose stuck thread came back is restarted (the label
clears). A replacement numbers its frames after its predecessor's, a resumed flight after what it
stored (:meth:`CameraFleet.continue_seqs`, :func:`stored_next_seqs`): a frame's seq is unique in a
flight. Landing waits for the cameras' last frames, never for an abandoned thread, and not beyond
``IDLE_WAIT_S``.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from camctl.board.capture import CameraRunner
from camctl.board.config import LANDED, SAFE, CameraConfig, Config
from camctl.board.encode import EncoderPool
from camctl.common.frames import EncodedFrame
from camctl.common.ledger import Ledger
from camctl.common.records import FaultRecord

__all__ = ["CHECK_TIMEOUT_S", "ENCODER_NICE", "IDLE_WAIT_S", "MAX_REPLACEMENTS", "CameraFleet",
           "stored_next_seqs"]

log = logging.getLogger("camctl.board.daemon")
CHECK_TIMEOUT_S = 15.0  # the boot check of every camera (in parallel): open, one frame, close
MAX_REPLACEMENTS = 3  # a camera whose capture thread hangs is restarted this often, then isolated
IDLE_WAIT_S = 30.0  # the longest landing waits for the cameras' last frames
# The encoder threads' nice value above the daemon's (camctl.board.encode): the edge's callback
# thread then waited for a core 1.8 ms at p99 instead of 4.2 ms (trigger bench, separation edges, 2
# cores), capture unchanged.
ENCODER_NICE = 10


class CameraFleet:
    """Every camera runner of the board, by camera name, and the encoder pool they share.

    ``sink`` takes each encoded frame (the flight's store); ``ledger`` returns the flight's books
    now; ``on_fault`` gets fault records; ``cameras`` are injected camera objects (no twin is built
    for them: the boot check uses them, and a hung one is isolated, not replaced).
    """

    def __init__(self, cfg: Config, *, sink: Callable[[EncodedFrame], bool],
                 ledger: Callable[[], Ledger], on_fault: Callable[[dict], None],
                 cameras: dict[str, Any] | None = None) -> None:
        self.cfg = cfg
        self._sink = sink
        self._ledger = ledger
        self._on_fault = on_fault
        self._injected = dict(cameras or {})
        self._seeds = {c.name: c.seed or i for i, c in enumerate(cfg.cameras)}
        self._replacements: dict[str, int] = {}
        # camera -> why its boot check failed (until it captures)
        self.unavailable: dict[str, str] = {}
        # one budget of waiting frames for the whole board, value-ordered across cameras (see
        # encode.py); a camera's own limit (waiting + encoding) bounds its RAM, and at it the
        # camera pushes out a cheaper waiting frame before it refuses one (pipeline.py), so a
        # TOUCHDOWN frame is never lost while an ARMED one waits, one camera or many
        capacity = cfg.encode.max_inflight * max(1, len(cfg.cameras))
        self.pool = EncoderPool(cfg.encode.threads, capacity=capacity, nice=ENCODER_NICE)
        self.max_inflight = capacity + cfg.encode.threads  # per camera
        self.runners: dict[str, CameraRunner] = {}
        try:
            for cam_cfg in cfg.cameras:
                camera = self._injected[cam_cfg.name] if cam_cfg.name in self._injected \
                    else self.new_camera(cam_cfg)
                self.runners[cam_cfg.name] = self.runner(camera, cam_cfg)
        except BaseException:
            self.pool.close()
            raise

    # -- the one factory ------------------------------------------------------------------------
    def new_camera(self, cam_cfg: CameraConfig) -> Any:
        """A fresh, closed camera object for ``cam_cfg`` (the backend's, built as at start)."""
        from camctl.board import cameras  # looked up at each call: tests replace make_camera

        return cameras.make_camera(cam_cfg, seed=self._seeds[cam_cfg.name])

    def runner(self, camera: Any, cam_cfg: CameraConfig, *, seq_base: int = 0) -> CameraRunner:
        """Every runner, the first and each replacement: the flight's ledger, one in-flight limit,
        its seqs from ``seq_base`` on."""
        r = CameraRunner(camera, cam_cfg, self.pool, self._sink, on_fault=self._on_fault,
                         max_inflight=self.max_inflight, ledger=self._ledger())
        r.seq_base = seq_base
        return r

    def continue_seqs(self, next_seqs: dict[str, int]) -> None:
        """A resumed flight: each camera numbers its frames from ``next_seqs[camera]`` on (above
        every seq the flight already has for it), before the runners start."""
        for name, n in next_seqs.items():
            runner = self.runners.get(name)
            if runner is not None:
                runner.seq_base = max(runner.seq_base, int(n))

    # -- all of them ----------------------------------------------------------------------------
    def set_ledger(self, ledger: Ledger) -> None:
        for runner in self.runners.values():
            runner.set_ledger(ledger)

    def set_phase(self, phase: str, event: str = "") -> None:
        """The event path: a few attribute writes per runner, never blocks; stills asked by
        ``event``."""
        for runner in self.runners.values():
            runner.set_phase(phase)
            if event and event in runner.cfg.stills:
                runner.request_still(event)

    def describe(self) -> dict[str, dict]:
        """Each camera's role, size and rate by phase (the flight's open record)."""
        return {n: {"role": r.cfg.role, "size": list(r.cfg.size), "fps": dict(r.cfg.fps)}
                for n, r in self.runners.items()}

    def prepare(self) -> None:
        """Every camera's one-time set-up, in parallel (before READY)."""
        threads = [threading.Thread(target=r.prepare, name=f"camctl-prepare-{r.name}")
                   for r in self.runners.values()]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    def start(self) -> None:
        for runner in self.runners.values():
            runner.start()

    def wait_idle(self, timeout_s: float | None = None, *,
                  until: Callable[[], bool] | None = None) -> None:
        """Wait for every camera to hand over its last frame (after LANDED/SAFE), ``timeout_s`` at
        most in all. A thread stuck in its backend is not waited for: the watchdog abandons it
        (its frames are booked ``abandoned``) and its replacement is idle at once. ``until``: stop
        waiting once it is true (armed again: the cameras run for the next flight now)."""
        deadline = time.monotonic() + (IDLE_WAIT_S if timeout_s is None else timeout_s)
        for name in list(self.runners):
            while True:
                if until is not None and until():
                    return
                runner = self.runners[name]  # the watchdog may replace it meanwhile
                if runner.isolated or runner.overdue_s():  # its last frames are not coming
                    break
                if runner.wait_idle(timeout=min(0.05, max(0.0, deadline - time.monotonic()))):
                    break
                if time.monotonic() >= deadline:
                    log.warning("camera %s did not stop in time; finishing the flight without its "
                                "last frames", name)
                    break

    def stop(self) -> None:
        for runner in self.runners.values():
            # stuck in its backend: joining or closing it could hang the shutdown
            if runner.isolated:
                runner.abandon()
            else:
                runner.stop()

    def close(self) -> None:
        self.pool.close()

    # -- the boot check -------------------------------------------------------------------------
    def check(self, log_record: Callable[[dict], None]) -> None:
        """Open every camera, take one frame, close it; all at once, bounded. A camera that fails is
        reported (status, STATUS line, ``log_record``) and retried when the board arms; the others
        come up regardless."""
        results: dict[str, str] = {}

        def check(name: str, runner: CameraRunner) -> None:
            # a fresh object for the check (the runner's own is opened at ARM), except an injected
            # one
            cam = runner.camera if name in self._injected else self.new_camera(runner.cfg)
            try:
                cam.open()
                frame = cam.capture(max(1.0, 3.0 / max(cam.fps, 0.1)))
                results[name] = "" if frame is not None else "no frame"
                if frame is not None and frame.release is not None:  # lent pixels: give the buffer
                    frame.release()  # back, or close waits for it and leaves the camera acquired
            except Exception as exc:  # any backend error: this camera is unavailable, not the board
                results[name] = f"{type(exc).__name__}: {exc}"
            finally:
                with contextlib.suppress(Exception):
                    cam.close()

        threads = {name: threading.Thread(target=check, args=(name, r), name=f"camctl-check-{name}",
                                          daemon=True) for name, r in self.runners.items()}
        for t in threads.values():
            t.start()
        deadline = time.monotonic() + CHECK_TIMEOUT_S
        for name, t in threads.items():
            t.join(max(0.0, deadline - time.monotonic()))
            why = results.get(name, f"no answer within {CHECK_TIMEOUT_S:g} s")
            if why:
                self.unavailable[name] = why
                log.error("camera %s unavailable at boot: %s (retried at ARM)", name, why)
                record = FaultRecord(camera=name, error="CameraCheck", message=why,
                                     mono_ns=time.monotonic_ns(), wall_ns=time.time_ns())
                log_record(record.encode())

    def wait_first_frames(self) -> None:
        """Resumed mid-flight: the runners' own first frames are the check."""
        deadline = time.monotonic() + CHECK_TIMEOUT_S
        waiting = dict(self.runners)
        while waiting and time.monotonic() < deadline:
            for name, r in list(waiting.items()):
                if r.phase in (SAFE, LANDED) and not r.stats.frames_captured:
                    del waiting[name]  # landed meanwhile (its timer ran out): no frame is due
                elif r.stats.frames_captured or r.stats.faults:
                    if not r.stats.frames_captured:
                        self.unavailable[name] = r.stats.last_error or "fault at resume"
                    del waiting[name]
            time.sleep(0.01)
        for name in waiting:
            self.unavailable[name] = f"no frame within {CHECK_TIMEOUT_S:g} s of the resume"

    # -- the capture watchdog -------------------------------------------------------------------
    def capture_ok(self, now_ns: int | None = None) -> bool:
        """True when every capture thread is making progress or is isolated (the watchdog's
        condition)."""
        now = time.monotonic_ns() if now_ns is None else now_ns
        return all(r.isolated or r.overdue_s(now) == 0.0 for r in self.runners.values())

    def watch(self, phase: str) -> list[str]:
        """Restart (on a fresh camera object, into ``phase``) or isolate every camera whose thread
        is stuck; never waits for the stuck thread. Returns the names handled."""
        handled = []
        for name, runner in list(self.runners.items()):
            if runner.isolated:
                if not runner.alive:  # the stuck call came back: the camera may be used again
                    self._recover(name, runner, phase)
                continue
            if runner.overdue_s():
                handled.append(name)
                self._replace(name, runner, phase)
        return handled

    def _recover(self, name: str, runner: CameraRunner, phase: str) -> None:
        """An isolated camera whose thread let go: a fresh runner (on the injected object itself,
        which its thread closed), the label cleared."""
        try:
            camera = self._injected.get(name) or self.new_camera(runner.cfg)
        except Exception as exc:  # still no camera object: it stays isolated
            log.debug("camera %s: still cannot build a camera object: %s", name, exc)
            return
        log.warning("camera %s: its stuck capture thread came back; camera restarted", name)
        self._start_fresh(name, runner, camera, phase, "recovered after isolation")

    def _start_fresh(self, name: str, runner: CameraRunner, camera: Any, phase: str,
                     why: str, ring: list[EncodedFrame] | None = None) -> None:
        fresh = self.runner(camera, runner.cfg, seq_base=runner.next_seq)
        fresh.adopt_ring(ring or [])
        fresh.stats.faults = runner.stats.faults + 1
        fresh.stats.restarts = runner.stats.restarts + 1
        fresh.stats.last_error = why
        fresh.set_phase(phase)
        self.runners[name] = fresh
        fresh.start()

    def _replace(self, name: str, runner: CameraRunner, phase: str) -> None:
        n = self._replacements.get(name, 0)
        camera = None
        if n < MAX_REPLACEMENTS and name not in self._injected:  # an injected camera has no twin
            try:
                camera = self.new_camera(runner.cfg)
            except Exception as exc:  # the backend cannot even build a camera object: isolate it
                log.error("camera %s: cannot build a fresh camera object: %s", name, exc)
        action = "isolated" if camera is None else "restarted"
        msg = (f"capture thread stuck in {runner.activity!r} for {runner.stuck_s():.1f} s (its "
               f"budget {runner.budget_s:.1f} s); camera {action}")
        log.error("camera %s: %s", name, msg)
        self._on_fault(FaultRecord(camera=name, error="CaptureHung", message=msg,
                                   activity=runner.activity, mono_ns=time.monotonic_ns(),
                                   wall_ns=time.time_ns()).encode())
        # its RAM frames go to the flight's books as dropped; its pre-trigger ring to the
        # replacement, if there is one
        ring = runner.abandon(keep_ring=camera is not None)
        if camera is None:
            runner.isolated = True
            runner.stats.last_error = msg
            return
        self._replacements[name] = n + 1
        self._start_fresh(name, runner, camera, phase, msg, ring)

    def __repr__(self) -> str:
        return f"<CameraFleet {', '.join(self.runners) or 'no cameras'}>"


def stored_next_seqs(flight_dir: Path, cameras: list[str]) -> dict[str, int]:
    """Per camera, the first seq above every one a flight already has: its newest segment that
    holds frames (seqs only grow in a flight), and the ``seqs`` its recovery ``loss`` records name.
    A resumed flight's runners number from there (:meth:`CameraFleet.continue_seqs`)."""
    from camctl.common.records import LossRecord, read
    from camctl.store import iter_events, iter_frames

    out = dict.fromkeys(cameras, 0)
    for cam in cameras:
        for seg in sorted((flight_dir / cam).glob("*.mcap"), reverse=True):
            try:
                top = max((f.seq for f in iter_frames(seg, check_jpeg=False)), default=None)
            except Exception as exc:  # never let a damaged segment stop a resume
                log.warning("reading seqs of %s: %s", seg, exc)
                continue
            if top is not None:
                out[cam] = top + 1
                break
    for seg in sorted((flight_dir / "events").glob("*.mcap")):
        try:
            records = list(read(iter_events(seg)))
        except Exception as exc:
            log.warning("reading loss records of %s: %s", seg, exc)
            continue
        for r in records:
            if isinstance(r, LossRecord) and r.camera in out and r.seqs:
                out[r.camera] = max(out[r.camera], max(r.seqs) + 1)
    return out
