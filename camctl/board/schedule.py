"""The capture schedule's pure rules: which phase a frame belongs to and what it is worth.

Kept apart from the capture threads (``capture.py``) so the rules are tested, and mutation-tested,
without threads or cameras. Rates by phase are :meth:`camctl.board.config.CameraConfig.fps_for`.

Example::

    >>> edge = ("DESCENT", "ARMED", 1_000)  # (phase now, phase before, edge ns)
    >>> frame_phase(edge, 999, "DESCENT"), frame_phase(edge, 1_000, "DESCENT")
    ('ARMED', 'DESCENT')
    >>> value_of("ARMED") < value_of("DESCENT") < value_of("TOUCHDOWN")
    True
"""

from __future__ import annotations

from camctl.board.config import ARMED, LANDED, SAFE, TOUCHDOWN
from camctl.common.frames import FrameValue

__all__ = ["RECLASSIFY_NS", "frame_phase", "value_of"]

# only this close to an edge is a frame filed under the phase before it
RECLASSIFY_NS = 1_000_000_000


def frame_phase(state: tuple, timestamp_ns: int, asked_in: str) -> str:
    """The phase a frame belongs to, by its sensor time (monotonic, like the edge's).

    ``state`` starts ``(phase now, phase before, edge ns)``. A frame exposed before the edge but
    delivered after it (a queued sensor buffer) belongs to the phase before; in SAFE/LANDED, to the
    phase it was asked in. Only within :data:`RECLASSIFY_NS` of the edge: a backend on another clock
    is not reclassified wholesale.
    """
    current, previous, changed_ns = state[0], state[1], state[2]
    if current in (SAFE, LANDED):
        return asked_in
    early = changed_ns - timestamp_ns
    if 0 < early < RECLASSIFY_NS and previous not in (SAFE, LANDED):
        return previous
    return current


def value_of(phase: str) -> int:
    """A live frame's :class:`~camctl.common.frames.FrameValue` by the phase it belongs to."""
    if phase == ARMED:
        return int(FrameValue.IDLE)
    if phase == TOUCHDOWN:
        return int(FrameValue.TOUCHDOWN)
    return int(FrameValue.DESCENT)
