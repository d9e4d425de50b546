"""A camera runner's frames from capture to the store: the encoder, in capture order, the
pre-trigger ring, the sink, and every loss on the way counted.

:class:`FramePipeline` is fed by the runner's thread (:meth:`FramePipeline.submit`,
:meth:`FramePipeline.add_still`) and drained by it and by encoder done-callbacks
(:class:`~camctl.board.pending.PendingFrames`); a done-callback never blocks. Once abandoned, every
frame still in it is dropped (``abandoned``), the ring at once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from concurrent.futures import Future

import numpy as np

from camctl.board.cameras.base import Camera
from camctl.board.config import ARMED, LANDED, SAFE, CameraConfig
from camctl.board.encode import EncoderPool, encode_jpeg
from camctl.board.pending import PendingFrames, give_back
from camctl.board.ring import PreTriggerRing, RunnerStats
from camctl.board.schedule import value_of
from camctl.board.stills import StillBook
from camctl.common.frames import EncodedFrame, Frame, FrameValue
from camctl.common.ledger import ABANDONED, ENCODE_ERROR, ENCODER_BEHIND, STORE_REFUSED

__all__ = ["FramePipeline", "lores"]

log = logging.getLogger("camctl.board.pipeline")
Sink = Callable[[EncodedFrame], bool]
# the encoder value of a frame size measured at ARM: below every frame's (FrameValue.IDLE = 0), so
# on a full pool any frame pushes it out and it never pushes out one (encode.py, _evict_below)
MEASURE_VALUE = -1
RING_HANDOVER_S = 0.05  # the longest the watchdog waits to hand an abandoned ring over


def lores(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """The lores stream of a backend without one: an integer-step decimation (a view; no filtering,
    as a sensor's binned mode would give), so the width is the largest even <= main width / step."""
    h, w = image.shape[:2]
    step = max(1, min(w // size[0], h // size[1]))
    if step == 1:
        return image
    out = image[::step, ::step]
    return out[: out.shape[0] & ~1, : out.shape[1] & ~1]


class FramePipeline:
    """One camera's frames on their way to ``sink``; losses go to ``lose(reason, n)``."""

    def __init__(self, camera: Camera, cfg: CameraConfig, pool: EncoderPool, sink: Sink, *,
                 ring: PreTriggerRing, stats: RunnerStats, stills: StillBook,
                 lose: Callable[[str, int], None], max_inflight: int) -> None:
        self.camera = camera
        self.cfg = cfg
        self.name = cfg.name
        self._pool = pool
        self._sink = sink
        self.ring = ring
        self.stats = stats
        self._stills = stills
        self._lose = lose
        self._max_inflight = max_inflight
        self.abandoned = False
        self.pending = PendingFrames(self._hand_on, hold=self._hold, on_drain=self._on_drain)

    def __len__(self) -> int:
        """Frames captured, not yet handed to the store: waiting for the encoder or in the ring."""
        return len(self.pending) + len(self.ring)

    def drain(self, *, block: bool) -> None:
        self.pending.drain(block=block)

    def abandon(self, *, keep_ring: bool = False) -> list[EncodedFrame]:
        """Drop every frame still coming, and the ring now; ``keep_ring``: the ring's frames are
        returned instead, for the replacement (when the drain lock is free within
        ``RING_HANDOVER_S``: an encoder callback holds it for a frame at most, else they are
        dropped too)."""
        kept: list[EncodedFrame] = []
        if keep_ring and self.pending.lock.acquire(timeout=RING_HANDOVER_S):
            try:
                self.abandoned = True
                kept = self.ring.drain()
            finally:
                self.pending.lock.release()
        self.abandoned = True
        self.pending.drain(block=False)
        return kept

    def end_of_flight(self, phase: str) -> None:
        """SAFE or LANDED, every encode handed on: disarmed, the ring's frames were never part of a
        flight (aged out); landed before any later frame, the pre-trigger is kept anyway."""
        with self.pending.lock:  # abandon() may drop the ring from the watchdog's thread
            if phase == SAFE and len(self.ring):
                self.ring.clear()
            elif phase == LANDED and len(self.ring):
                self._flush_ring()

    def submit(self, frame: Frame, phase: str) -> None:
        """A video frame filed under ``phase``: queued for its encode, or dropped if the encoder is
        behind (its pixels given back at once). A frame keeps the size it was captured at: the
        first one after an edge out of a lores phase may still be lores (the store records it)."""
        if frame.jpeg is not None:
            self.pending.add(frame, phase, None)
            return
        value = value_of(phase)
        if self.pending.live() >= self._max_inflight:
            self.pending.drain(block=False)
            # at its own limit a camera refuses a frame only when it is worth no more than
            # everything waiting: else a cheaper waiting frame (its own or another camera's) goes
            if self.pending.live() >= self._max_inflight and not self._pool.make_room(value):
                self._lose(ENCODER_BEHIND, 1)
                give_back(frame, self.camera, self.name)
                return
        if frame.yuv420 is not None:  # the camera's own lores stream: encoded as it is
            fut = self._pool.submit_yuv(frame.yuv420, self.cfg.quality_for(phase), value=value)
        else:
            image = frame.image
            if self.cfg.lores_in(phase) and self.cfg.lores_size is not None:
                image = lores(image, self.cfg.lores_size)
                frame.height, frame.width = int(image.shape[0]), int(image.shape[1])
            fut = self._pool.submit(image, self.cfg.quality_for(phase), value=value)
        if fut.cancelled():  # the pool was full of frames worth as much or more (see encode.py)
            self._lose(ENCODER_BEHIND, 1)
            give_back(frame, self.camera, self.name)
            return
        self.pending.add(frame, phase, fut)

    def add_still(self, frame: Frame, phase: str) -> None:
        """Queue a still's quality-95 encode; it waits in order for its video gap."""
        fut: Future[bytes] | None = None
        if frame.jpeg is None:
            still = int(FrameValue.STILL)
            fut = self._pool.submit_yuv(frame.yuv420, 95, value=still) if frame.yuv420 is not None \
                else self._pool.submit(frame.image, 95, value=still)
        self.pending.add(frame, phase, fut)

    def measure(self, image: np.ndarray, phases: Iterable[str]) -> int:
        """Measure the JPEG size of a frame at each of ``phases``' settings (its stream, main or
        lores, and quality) from ``image``, a main-stream RGB frame: one encode per distinct
        setting, on the pool below every frame's value, into ``stats.measured_bytes`` when done. The
        pixels are copied first (the frame's buffer goes back to the camera after its own encode).
        A measurement that fails or is pushed out only logs. Returns the encodes queued."""
        jobs: dict[tuple[bool, int], list[str]] = {}
        for phase in phases:
            key = (self.cfg.lores_in(phase), self.cfg.quality_for(phase))
            jobs.setdefault(key, []).append(phase)
        measured = self.stats.measured_bytes  # this flight's (new_flight replaces it whole)
        for (use_lores, quality), named in jobs.items():
            pixels = lores(image, self.cfg.lores_size) \
                if use_lores and self.cfg.lores_size is not None else image
            fut = self._pool.run(encode_jpeg, pixels.copy(), quality, value=MEASURE_VALUE)
            fut.add_done_callback(lambda f, named=named: self._measured(f, named, measured))
        return len(jobs)

    def _measured(self, fut: Future[bytes], phases: list[str], into: dict[str, int]) -> None:
        """An encode of :meth:`measure` done (on an encoder thread, or the cancelling one)."""
        if fut.cancelled():
            log.info("camera %s: frame size at ARM not measured for %s: the encoder was busy",
                     self.name, ", ".join(phases))
            return
        exc = fut.exception()
        if exc is not None:
            log.warning("camera %s: frame size at ARM not measured for %s: %s", self.name,
                        ", ".join(phases), exc)
            return
        size = len(fut.result())
        for phase in phases:
            into[phase] = size

    # -- the drain (under the pending frames' lock) ------------------------------------------------
    def _on_drain(self) -> None:
        if self.abandoned and len(self.ring):
            self._lose(ABANDONED, len(self.ring.drain()))

    def _hold(self, frame: Frame) -> bool:
        """A still waits in order for its video gap (not once abandoned: no video follows)."""
        return frame.still and not self.abandoned and self._stills.gap_unknown(frame)

    def _hand_on(self, frame: Frame, phase: str, fut: Future[bytes] | None) -> None:
        """The head of the pending frames, its encode done: to the ring or the store, or dropped."""
        if fut is not None and fut.cancelled():  # pushed out of the pool by a frame of higher value
            if frame.still:
                self._stills.forget(frame)
            give_back(frame, self.camera, self.name)
            self._lose(ENCODER_BEHIND, 1)
            return
        if fut is not None:
            try:
                jpeg = fut.result()
            except Exception as exc:
                self._lose(ENCODE_ERROR, 1)
                self.stats.last_error = f"encode: {exc}"
                return
            finally:
                give_back(frame, self.camera, self.name)
        else:
            jpeg = frame.jpeg or b""
        if frame.still:
            ef = self._encoded(frame, jpeg, phase, int(FrameValue.STILL))
            ef.still = True
            ef.meta.update(self._stills.meta_to_send(frame))
            self.stats.stills += 1
            self._send(ef)
            return
        self.stats.encoded += 1
        self.stats.record_frame(phase, len(jpeg))
        self._route(self._encoded(frame, jpeg, phase, value_of(phase)))

    def _encoded(self, frame: Frame, jpeg: bytes, phase: str, value: int) -> EncodedFrame:
        return EncodedFrame(
            camera=self.name, seq=frame.seq, timestamp_ns=frame.timestamp_ns, jpeg=jpeg,
            width=frame.width, height=frame.height, phase=phase, value=value,
            exposure_us=frame.exposure_us, analogue_gain=frame.analogue_gain, still=frame.still,
        )

    def _route(self, ef: EncodedFrame) -> None:
        if ef.phase == ARMED and not self.abandoned:
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
        if self.abandoned:
            self._lose(ABANDONED, 1)
            return
        try:
            ok = self._sink(ef)
        except Exception as exc:  # the store must not raise, but never let it kill a camera
            ok = False
            self.stats.last_error = f"store: {exc}"
        if ok:
            self.stats.sent_to_store += 1
        else:
            self._lose(STORE_REFUSED, 1)
