"""The open segment files of one flight: one per source (and the event log), numbered, rotated,
synced.

:class:`SegmentFiles` opens ``<flight>/<source>/<seq:06d>.mcap`` (never over an existing file), says
when one is due for rotation (``segment_mb``/``segment_s``), commits a segment (file fsync, then the
directory the first time) and keeps the byte counts the full-disk reserve is computed from. Errors
are the caller's to handle: nothing here catches an ``OSError``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import IO

from camctl.store._records import Layout
from camctl.store._segment import SegmentWriter
from camctl.store.config import StoreConfig
from camctl.store.index import fsync_dir
from camctl.store.sources import EVENTS

__all__ = ["SegmentFiles", "finish_room"]

_MB = 1 << 20
_FILE_SLACK = (
    8 << 10
)  # per open file: its last partly used filesystem block, and the chunk's message indexes
_ABANDONED_ROOM = 64 << 10  # per abandoned segment: the summary its in-place repair appends
_INDEX_PER_SEGMENT = (
    512  # index.json bytes per segment (path, size, sha256, counts), plus _INDEX_BASE
)
_INDEX_BASE = 16 << 10


def finish_room(open_segments: list[SegmentWriter], abandoned: int, segments: int) -> int:
    """Bytes finishing needs: each open segment's summary and footer and a block of slack, the
    repair of each abandoned one, and ``index.json`` for ``segments`` segments (and one more)."""
    return (
        sum(s.summary_room + _FILE_SLACK for s in open_segments)
        + abandoned * _ABANDONED_ROOM
        + _INDEX_BASE
        + _INDEX_PER_SEGMENT * (segments + 1)
    )


class SegmentFiles:
    """The open segments of a flight, by stream name (a source, or ``events``). Writer thread only,
    except :meth:`paths` (under ``lock``, which also guards the dict the writer changes)."""

    def __init__(
        self,
        flight_dir: Path,
        config: StoreConfig,
        layout: Callable[[str], Layout],
        *,
        lock: threading.Lock,
        opener: Callable[[Path], IO[bytes]] | None = None,
        fsync: Callable[[int], None] | None = None,
        on_opened: Callable[[str], None] | None = None,
    ) -> None:
        self.dir = flight_dir
        self.config = config
        self._layout = layout
        self._lock = lock
        self._opener = opener
        self._fsync = fsync
        self._on_opened = on_opened
        self.segments: dict[str, SegmentWriter] = {}
        self._seq: dict[str, int] = {}  # the last segment number used, per stream
        self._opened: dict[str, int] = {}  # segments opened by this store, per stream
        self.abandoned: list[
            Path
        ] = []  # segments cut back to their last commit, finished at landing
        self.done_bytes = 0  # bytes of segments no longer open

    def get(self, name: str) -> SegmentWriter | None:
        return self.segments.get(name)

    def due(self, seg: SegmentWriter, now: float) -> bool:
        """True when ``seg`` is full or old enough to be finished and replaced."""
        return (
            seg.size + seg.pending_bytes >= self.config.segment_mb * _MB
            or now - seg.created_mono_ns / 1e9 >= self.config.segment_s
        )

    def open(self, name: str, now: float) -> SegmentWriter:
        """A new segment for ``name``, numbered after the last one (never over an existing file)."""
        seq = self._seq.get(name, 0) + 1
        path = self.dir / name / f"{seq:06d}.mcap"
        while path.exists():  # never overwrite, e.g. a segment abandoned but not removed
            seq += 1
            path = self.dir / name / f"{seq:06d}.mcap"
        self._seq[name] = seq
        seg = SegmentWriter(
            path, self._layout(name), opener=self._opener, created_mono_ns=int(now * 1e9)
        )
        with self._lock:
            self.segments[name] = seg
            self._opened[name] = self._opened.get(name, 0) + 1
            if self._on_opened is not None:
                self._on_opened(name)
        return seg

    def sync(self, seg: SegmentWriter, *, finish: bool = False) -> None:
        """Commit (or finish) ``seg``: file fsync, then its directory's the first time. Raises
        OSError."""
        if finish:
            seg.finish(fsync=self._fsync)
        else:
            seg.commit(fsync=self._fsync)
        if seg.needs_dir_sync:
            fsync_dir(seg.path.parent)
            seg.needs_dir_sync = False

    def retire(self, name: str) -> None:
        """Forget the finished segment of ``name``."""
        with self._lock:
            seg = self.segments.pop(name, None)
        if seg is not None:
            self.done_bytes += seg.size

    def abandon(self, name: str) -> SegmentWriter | None:
        """Give up the open segment of ``name`` (cut back to its last commit); it is repaired at
        landing."""
        with self._lock:
            seg = self.segments.pop(name, None)
        if seg is not None:
            seg.abandon()
            self.done_bytes += seg.committed_size
            if seg.committed_size:
                self.abandoned.append(seg.path)
        return seg

    def take_abandoned(self) -> list[Path]:
        out, self.abandoned = self.abandoned, []
        return out

    def dirty(self) -> bool:
        return any(s.dirty for s in self.segments.values())

    def paths(self) -> set[Path]:
        with self._lock:
            return {s.path for s in self.segments.values()}

    def written(self) -> int:
        """Bytes this store has handed to files (open and done)."""
        return self.done_bytes + sum(s.size + s.pending_bytes for s in self.segments.values())

    def finish_need(self) -> int:
        """Bytes finishing the flight needs now (see :func:`finish_room`)."""
        n = sum(v for k, v in self._opened.items() if k != EVENTS) + self._seq.get(EVENTS, 0)
        return finish_room(list(self.segments.values()), len(self.abandoned), n)
