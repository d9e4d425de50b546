"""Plain JPEG export: every stored frame's bytes, as they came off the board, one file per frame.

Owns the file name (:func:`frame_file_name`: board, camera, sequence number and the time from the
set's zero) and the write (:func:`write_frame`).

Example::

    >>> frame_file_name("rig-a", "down", 42, 0.5)
    'rig-a_down_000042_+0.500s.jpg'
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from camctl.ground.export.flightset import Flight

__all__ = ["frame_file_name", "write_frame"]


def frame_file_name(board: str, camera: str, seq: int, t_s: float, *, still: bool = False) -> str:
    """``<board>_<camera>_<seq:06d>_<+t.ttt>s.jpg`` (``_still`` before the suffix for stills)."""
    return f"{board}_{camera}_{seq:06d}_{t_s:+.3f}s{'_still' if still else ''}.jpg"


def write_frame(frames_dir: Path, fl: Flight, camera: str, fr: Any) -> Path:
    """Write one frame (a :func:`camctl.store.iter_frames` frame) of ``camera`` into ``frames_dir``,
    named after its time from the flight's zero on the flight's timeline (0 when the flight has
    none); returns its path."""
    t = fl.rel(fr.timestamp_ns, fr.run) if fl.t0_ns is not None else 0.0
    path = frames_dir / frame_file_name(fl.board, camera, fr.seq, t, still=fr.still)
    path.write_bytes(fr.jpeg)
    return path
