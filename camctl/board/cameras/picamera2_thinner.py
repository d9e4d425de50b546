"""Frame thinning for the picamera2 backend: which sensor frames are delivered, and their ``seq``.

Why the sensor never changes rate in flight:

- The sensor runs at ``sensor_fps``, the highest rate the flight needs
  (``CameraConfig.sensor_fps``), from open to close, set once in the video configuration's
  ``controls``. ``Picamera2Camera.set_fps`` only changes how frames are *thinned*: a frame is
  delivered when its sensor time reaches the next due time (within half a sensor period); the others
  are released before anything is copied out of them. A rate change (the release edge) moves the due
  time to ``last delivered + new interval``, so the next sensor frame after the edge is delivered:
  the new rate holds from the first frame, at most one sensor period after the edge, whatever the
  ARMED rate. A still or a reopen cannot leave a wrong rate behind: there is none to restore.
- The cost is the sensor and ISP running at the flight rate while ARMED (the request round trip for
  every sensor frame, no copy of thinned frames; on the hardware path the V4L2 encoder encodes every
  frame). The exposure is bounded by the sensor frame duration, which suits a drop test (short
  exposures).
- A rate above ``sensor_fps`` (a caller outside the config) raises the sensor rate with
  ``set_controls``, which lands late (see :mod:`~camctl.board.cameras.picamera2_controls`).
- ``seq`` counts delivered frames plus the frame slots (at the current rate) that had no frame: a
  frame the sensor or a late consumer lost leaves a gap, a frame thinned on purpose does not. It
  keeps increasing across reopen.
"""

from __future__ import annotations

import threading

__all__ = ["Thinner"]


class Thinner:
    """Which sensor frames are delivered at a rate below the sensor's, and their ``seq``.

    A frame is kept when its sensor time reaches the due time (within half a sensor period); the
    due time then moves on by whole intervals, and every whole interval it skipped (no frame came
    for that slot: the sensor or a late consumer lost it) is a gap in ``seq``. :meth:`set_fps`
    pulls the due time in to ``last kept + new interval``, so a faster rate starts at the next
    sensor frame. Thread-safe.

    Example (a 30 fps sensor delivering 10 fps)::

        >>> t = Thinner(10.0, 30.0)
        >>> [t.keep(i * 33_333_333) for i in range(4)]
        [0, None, None, 1]
    """

    def __init__(self, fps: float, sensor_fps: float, first_seq: int = 0) -> None:
        self._lock = threading.Lock()
        self.next_seq = first_seq
        self._slack_ns = int(0.5e9 / sensor_fps)
        self._interval_ns = int(1e9 / fps)
        self._due_ns: int | None = None
        self._last_ns: int | None = None
        self.thinned = 0

    def set_fps(self, fps: float, sensor_fps: float) -> None:
        with self._lock:
            self._interval_ns = int(1e9 / fps)
            self._slack_ns = int(0.5e9 / sensor_fps)
            if self._last_ns is not None and self._due_ns is not None:
                self._due_ns = min(self._due_ns, self._last_ns + self._interval_ns)

    def restart(self) -> None:
        """A new stream (reopen): the next frame is delivered, with no gap counted before it."""
        with self._lock:
            self._due_ns = self._last_ns = None

    def keep(self, timestamp_ns: int, *, peek: bool = False) -> int | None:
        """The ``seq`` for a frame at ``timestamp_ns`` if it is delivered, else None (thinned).

        ``peek`` answers without taking the slot."""
        with self._lock:
            due, interval = self._due_ns, self._interval_ns
            if due is None:
                missed, due = 0, timestamp_ns
            elif timestamp_ns < due - self._slack_ns:
                if not peek:
                    self.thinned += 1
                return None
            else:
                missed = max(0, (timestamp_ns - due + self._slack_ns) // interval)
            seq = self.next_seq + missed
            if not peek:
                self.next_seq = seq + 1
                self._due_ns = due + (missed + 1) * interval
                self._last_ns = timestamp_ns
            return seq
