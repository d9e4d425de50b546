"""A camera runner's state outside its thread's control flow: the pre-trigger ring of encoded frames
(seconds and bytes capped, every loss reported to the ledger's hook) and the runner's stats, with
the snapshot ``status`` shows of them.
"""

from __future__ import annotations

import collections
from collections.abc import Callable
from dataclasses import dataclass, field

from camctl.common.frames import EncodedFrame
from camctl.common.ledger import RING_OVERFLOW

__all__ = ["PreTriggerRing", "RunnerStats"]


class PreTriggerRing:
    """The last ``seconds`` of encoded frames (by sensor time), at most ``max_bytes`` of JPEG."""

    def __init__(self, seconds: float, max_bytes: int,
                 on_loss: Callable[[str, int], None] | None = None) -> None:
        self.seconds = seconds
        self.max_bytes = max_bytes
        self._on_loss = on_loss  # ("aged_out" | "ring_overflow", n): the ledger's hook
        self._frames: collections.deque[EncodedFrame] = collections.deque()
        self.bytes = 0
        self.expired = 0  # aged out (normal while waiting armed)
        self.overflow = 0  # pushed out by the byte cap before their time (a drop)

    def push(self, frame: EncodedFrame) -> None:
        if self.seconds <= 0 or self.max_bytes <= 0:
            self._lose("aged_out", 1)
            return
        frames = self._frames
        frames.append(frame)
        self.bytes += frame.size
        horizon = frame.timestamp_ns - int(self.seconds * 1e9)
        aged = over = 0
        while frames and frames[0].timestamp_ns < horizon:
            self.bytes -= frames.popleft().size
            aged += 1
        while self.bytes > self.max_bytes and len(frames) > 1:
            self.bytes -= frames.popleft().size
            over += 1
        if aged:
            self._lose("aged_out", aged)
        if over:
            self._lose(RING_OVERFLOW, over)

    def _lose(self, why: str, n: int) -> None:
        if why == RING_OVERFLOW:
            self.overflow += n
        else:
            self.expired += n
        if self._on_loss is not None:
            self._on_loss(why, n)

    def drain(self) -> list[EncodedFrame]:
        out = list(self._frames)
        self._frames.clear()
        self.bytes = 0
        return out

    def clear(self) -> int:
        n = len(self._frames)
        self.drain()
        if n:
            self._lose("aged_out", n)
        return n

    def __len__(self) -> int:
        return len(self._frames)


@dataclass
class RunnerStats:
    """Frame accounting of one camera. ``dropped`` maps reason -> count."""

    state: str = "idle"
    frames_captured: int = 0  # sensor frames delivered to us
    sensor_gaps: int = 0  # frames the sensor skipped (sequence gaps)
    encoded: int = 0
    sent_to_store: int = 0
    pretrigger_flushed: int = 0
    stills: int = 0
    stills_missed: int = 0  # still requests not served before LANDED/SAFE
    faults: int = 0
    restarts: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    last_error: str = ""
    fps: float = 0.0
    target_fps: float = 0.0
    ring_frames: int = 0
    ring_bytes: int = 0
    ring_expired: int = 0
    # sensor times of the last video frames: the measured rate
    rate_window: collections.deque[int] = field(
        default_factory=lambda: collections.deque(maxlen=64))
    # this flight's video frames by phase, as encoded (an encoder callback adds each one; a dict
    # update, no lock): JPEG bytes and frames, so the mean size a frame of each phase is recorded at
    phase_bytes: dict[str, int] = field(default_factory=dict)
    phase_frames: dict[str, int] = field(default_factory=dict)
    # one frame's JPEG bytes at each flight phase's settings, measured when the board armed
    # (CameraRunner: a main-stream frame encoded at each phase's stream and quality)
    measured_bytes: dict[str, int] = field(default_factory=dict)

    def drop(self, reason: str, n: int = 1) -> None:
        self.dropped[reason] = self.dropped.get(reason, 0) + n

    def record_frame(self, phase: str, size: int) -> None:
        """A video frame of ``phase`` encoded to ``size`` bytes (the pipeline's drain)."""
        self.phase_bytes[phase] = self.phase_bytes.get(phase, 0) + size
        self.phase_frames[phase] = self.phase_frames.get(phase, 0) + 1

    def new_flight(self) -> None:
        """Armed anew: the sizes recorded and measured are of the flight before (replaced whole,
        so a reader copying the old dicts never sees them change size)."""
        self.phase_bytes, self.phase_frames, self.measured_bytes = {}, {}, {}

    def frame_sizes(self) -> tuple[dict[str, int], dict[str, str]]:
        """Mean JPEG bytes of a video frame by phase and where each number comes from:
        ``"recorded"`` (this flight's frames of the phase, as encoded) or ``"measured_at_arm"`` (a
        flight phase not recorded yet: one frame encoded at its settings when the board armed)."""
        # dict(d) copies in one C call under the GIL: no encoder callback changes it mid-read
        total, frames, measured = dict(self.phase_bytes), dict(self.phase_frames), \
            dict(self.measured_bytes)
        sizes = {p: round(total.get(p, 0) / n) for p, n in frames.items() if n > 0}
        source = dict.fromkeys(sizes, "recorded")
        for phase, size in measured.items():
            if phase not in sizes and size > 0:
                sizes[phase], source[phase] = size, "measured_at_arm"
        return sizes, source

    def measured_fps(self) -> float:
        w = list(self.rate_window)
        if len(w) < 2 or self.state != "running":
            return 0.0
        span = w[-1] - w[0]
        return (len(w) - 1) / (span / 1e9) if span > 0 else 0.0

    def snapshot(self, ring: PreTriggerRing) -> dict:
        """The runner's part of a camera's ``status`` (with ``ring``, the runner's pre-trigger)."""
        self.ring_frames, self.ring_bytes, self.ring_expired = len(ring), ring.bytes, ring.expired
        if ring.overflow:
            self.dropped["ring_overflow"] = ring.overflow
        sizes, source = self.frame_sizes()
        return {
            "frame_bytes_by_phase": sizes,
            "frame_bytes_source": source,
            "state": self.state,
            "fps": round(self.measured_fps(), 2),
            "target_fps": self.target_fps,
            "frames_captured": self.frames_captured,
            "frames_encoded": self.encoded,
            "sensor_gaps": self.sensor_gaps,
            "pretrigger_flushed": self.pretrigger_flushed,
            "stills": self.stills,
            "stills_missed": self.stills_missed,
            "ring_frames": self.ring_frames,
            "ring_bytes": self.ring_bytes,
            "faults": self.faults,
            "restarts": self.restarts,
            "dropped_by_reason": dict(self.dropped),
            "last_error": self.last_error,
        }
