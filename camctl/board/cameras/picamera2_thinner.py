"""Frame thinning for the picamera2 backend: which sensor frames are delivered, and their ``seq``.

- The sensor runs at ``sensor_fps`` (``CameraConfig.sensor_fps``: the flight's highest rate) from
  open to close, set once in the video configuration. ``Picamera2Camera.set_fps`` only changes how
  many of its frames are delivered: ``fps / sensor_fps`` of them; the others are released before
  anything is copied out of them. No rate is ever left behind by a still or a reopen. The cost is
  the sensor, ISP (and on the hardware path the encoder) at the flight rate while ARMED, and the
  exposure bounded by that frame duration (a drop test wants short ones).
- Frames are counted in sensor periods, not clock time: each frame's place is the last one's plus
  its timestamp step in periods of the sensor (the request's ``FrameDuration``; without it, on the
  hardware path, the low quartile of recent steps, divided by the whole number of nominal periods
  it spans). A step of k periods means k - 1 frames the sensor or a late consumer lost. So a
  sensor a little off its nominal rate neither thins nor gaps.
- Every ``sensor_fps / fps``-th place is due (fractional steps, so the average rate is exact); a
  frame is delivered when it reaches its due place within half a period. A rate change makes the
  next frame due at the earlier of the old due place and the last delivered one plus the new step,
  never before the next sensor frame: a faster rate (the release edge) starts with it.
- ``seq`` counts delivered frames plus due places whose frame was lost: only a lost frame leaves a
  gap, never a thinned one, a rate change or a reopen. It keeps increasing across reopen. A
  full-resolution still takes a number of its own (:meth:`Thinner.take`), as the sim's stills do.
- A rate above ``sensor_fps`` (a caller outside the config) raises the sensor rate with
  ``set_controls``, which lands late (see :mod:`~camctl.board.cameras.picamera2_controls`).
"""

from __future__ import annotations

import threading
from collections import deque

__all__ = ["Thinner"]

_STEPS = 32  # timestamp steps the period is measured from when frames carry no FrameDuration


class Thinner:
    """Which sensor frames are delivered at ``fps`` of a ``sensor_fps`` sensor, and their ``seq``
    (see the module docstring). Thread-safe.

    Example (a 30 fps sensor delivering 10 fps)::

        >>> t = Thinner(10.0, 30.0)
        >>> [t.keep(i * 33_333_333) for i in range(4)]
        [0, None, None, 1]
    """

    def __init__(self, fps: float, sensor_fps: float, first_seq: int = 0) -> None:
        self._lock = threading.Lock()
        self.next_seq = first_seq
        self.thinned = 0
        self._steps: deque[int] = deque(maxlen=_STEPS)  # recent timestamp steps (ns)
        # the last frame seen: (place, timestamp ns, its FrameDuration in ns or None)
        self._last: tuple[int, int, int | None] | None = None
        self._kept: int | None = None  # place of the last delivered frame (this stream)
        self._due = 0.0  # the place of the next delivered frame
        # a rate change not yet applied to a frame: (due, step) of the rate before it
        self._switch: tuple[float, float] | None = None
        self._nominal_ns = self._step = 1.0
        self._rates(fps, sensor_fps)

    def _rates(self, fps: float, sensor_fps: float) -> None:
        self._nominal_ns = 1e9 / sensor_fps
        self._step = max(1.0, sensor_fps / fps)

    def set_fps(self, fps: float, sensor_fps: float) -> None:
        """Deliver ``fps`` of a ``sensor_fps`` sensor from the next frame seen on.

        Frames not seen between the change and that frame (the capture thread was not reading:
        picamera2 drops them with ``queue=False``) came under the old rate: they are gaps only
        where the old rate had one due."""
        with self._lock:
            if self._switch is None:
                self._switch = (self._due, self._step)
            self._rates(fps, sensor_fps)

    def take(self) -> int:
        """A number for a frame outside the video (a full-resolution still): the video's next
        frame takes the one after it, so the frames lost meanwhile show as a gap beside it."""
        with self._lock:
            seq = self.next_seq
            self.next_seq = seq + 1
            return seq

    def restart(self) -> None:
        """A new stream (reopen): the next frame is delivered, with no gap counted before it."""
        with self._lock:
            self._last = self._kept = self._switch = None
            self._due = 0.0

    def _period_ns(self, step_ns: int) -> float:
        """The sensor period measured from recent timestamp steps and this one, ``step_ns``."""
        steps = sorted([*self._steps, step_ns] if step_ns > 0 else self._steps)
        if not steps:
            return self._nominal_ns
        low = steps[len(steps) // 4]
        spans = round(low / self._nominal_ns)  # a step over lost frames spans several periods
        if spans >= 1 and abs(low / (spans * self._nominal_ns) - 1) < 0.1:
            return low / spans
        return float(low)  # far from the nominal rate: the sensor's own (a sensor mode's limit)

    def keep(self, timestamp_ns: int, frame_duration_us: float | None = None, *,
             peek: bool = False) -> int | None:
        """The ``seq`` of the frame at sensor time ``timestamp_ns`` if it is delivered, else None
        (thinned). ``frame_duration_us`` is its ``FrameDuration`` metadata where there is one.

        ``peek`` answers without taking the frame."""
        with self._lock:
            due, lost = self._due, 0
            if self._last is None:  # the first frame of a stream is due
                place, due = 0, 0.0
            else:
                last_place, last_ns, duration_ns = self._last
                step_ns = timestamp_ns - last_ns
                period_ns = duration_ns or self._period_ns(step_ns)
                place = last_place + max(1, round(step_ns / period_ns))
                if step_ns > 0 and not peek:
                    self._steps.append(step_ns)
                switch = self._switch
                # frames lost where one was due: a gap each, at the rate they were due under
                due, step = (due, self._step) if switch is None else switch
                if place - 1 >= due - 0.5:
                    lost = int((place - 1 - due + 0.5) // step) + 1
                    due += lost * step
                if switch is not None and self._kept is not None:
                    # the new rate: its first frame is this one at the latest
                    due = max(min(due, self._kept + self._step), float(place))
            delivered = place >= due - 0.5
            if peek:
                return self.next_seq + lost if delivered else None
            duration_ns = None if not frame_duration_us else round(frame_duration_us * 1000)
            self._last = (place, timestamp_ns, duration_ns)
            self._due = due
            self._switch = None
            if not delivered:
                self.thinned += 1
                return None
            seq = self.next_seq + lost
            self.next_seq = seq + 1
            self._kept = place
            self._due = due + self._step
            return seq
