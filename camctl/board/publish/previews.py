"""Previews (THUMBS): small JPEGs of every n-th frame of a segment, of every frame within
``publish.thumbs_dense_s`` of each phase edge of the flight (release, separation, touchdown...: the
first look's -1 s .. +1 s columns) and of every still, made once on a worker thread and kept in a
bounded in-memory cache, so the server thread never decodes an image."""

from __future__ import annotations

import contextlib
import logging
import threading
from collections import Counter, OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from camctl.board.publish.catalog import file_key
from camctl.common import protocol as p
from camctl.common.records import PhaseRecord, read
from camctl.exc import ProtocolError
from camctl.store.reader import iter_events, pick_frames

__all__ = ["DENSE_S", "Previews", "flight_edges", "make_previews"]

log = logging.getLogger("camctl.board.publish")

_THUMB_CACHE_BYTES = 16 << 20  # previews kept in memory (LRU by segment), bytes of JPEG
_MAX_TODO = 1024  # preview jobs waiting in all (requested ones are also capped per peer)
_THUMB_RETRY_MS = 50  # THUMBNAILS.retry_ms while a segment's previews are still being made
DENSE_S = 1.0  # every frame within this of a phase edge gets a preview (publish.thumbs_dense_s)
_EDGES_CACHED = 8  # flights whose phase edges the worker keeps


class Previews:
    """Previews made once per segment by one worker thread, kept in an LRU bounded in JPEG bytes.

    The server thread only asks :meth:`get` (a dict lookup; on a miss the segment is queued, first
    in line) and :meth:`warm` (queue at the back). The worker is started on first use and stopped by
    :meth:`close`. :meth:`hold` stops it between jobs while the board records a flight: decoding and
    re-encoding previews is CPU the cameras, their encoders and the GPIO callbacks need then (a held
    worker is what a previous landing's previews met when the next flight armed on the same boot).
    """

    def __init__(self, max_bytes: int = _THUMB_CACHE_BYTES, dense_s: float = DENSE_S) -> None:
        self.max_bytes = max_bytes
        self.dense_s = dense_s  # every frame this near a phase edge gets a preview (0: none)
        self._edges: OrderedDict[tuple, list[tuple[int, int]]] = OrderedDict()  # worker only
        self._flight_seen: dict[str, list[tuple[int, int]]] = {}  # flight dir -> edges last used
        self._cache: OrderedDict[tuple, tuple[list[tuple[p.ThumbInfo, bytes]], int]] = OrderedDict()
        self._bytes = 0
        self._todo: OrderedDict[tuple, tuple[Path, str, str, int, int]] = OrderedDict()
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._closed = False
        self._held = False
        self.made = 0  # segments whose previews the worker made
        self._owner: dict[tuple, bytes] = {}  # requested (not warmed) jobs -> the peer that asked
        self._queued: Counter[bytes] = Counter()  # jobs waiting per peer

    def _key(self, seg: Path, every: int, width: int) -> tuple:
        return (*file_key(seg), every, width)

    def get(self, seg: Path, rel: str, camera: str, every: int, width: int,
            owner: bytes = b"") -> list[tuple[p.ThumbInfo, bytes]] | None:
        """``seg``'s previews if made, else None (and ``seg`` goes first in the worker's queue).

        A requester (``owner``, the peer) has at most ``p.MAX_THUMB_JOBS`` segments waiting in the
        queue; one more raises ProtocolError BUSY.
        """
        key = self._key(seg, every, width)
        with self._cond:
            hit = self._cache.get(key)
            if hit is not None:
                self._cache.move_to_end(key)
                return hit[0]
            if key not in self._todo:
                if self._queued[owner] >= p.MAX_THUMB_JOBS:
                    raise ProtocolError(p.E_BUSY, f"{p.MAX_THUMB_JOBS} of your previews are "
                                                  "being made; ask again when they are ready "
                                                  "(THUMBNAILS.retry_ms)")
                self._queued[owner] += 1
                self._owner[key] = owner
            self._todo[key] = (seg, rel, camera, every, width)
            self._todo.move_to_end(key, last=False)
            self._start()
            self._cond.notify()
        return None

    def warm(self, jobs: list[tuple[Path, str, str, int, int]]) -> None:
        """Queue ``(seg, rel, camera, every, width)`` jobs behind any waiting request (at most
        ``_MAX_TODO`` jobs wait in all: warming is a hint)."""
        with self._cond:
            for job in jobs:
                if len(self._todo) >= _MAX_TODO:
                    break
                with contextlib.suppress(OSError):
                    key = self._key(job[0], job[3], job[4])
                    if key not in self._cache and key not in self._todo:
                        self._todo[key] = job
            if self._todo:
                self._start()
                self._cond.notify()

    def hold(self, held: bool) -> None:
        """Hold the worker after its current job (``True``) or let it go on (``False``)."""
        with self._cond:
            self._held = held
            self._cond.notify_all()

    @property
    def held(self) -> bool:
        return self._held

    def _start(self) -> None:
        if self._thread is None and not self._closed:
            self._thread = threading.Thread(target=self._work, name="camctl-previews", daemon=True)
            self._thread.start()

    def _work(self) -> None:
        import simplejpeg  # noqa: F401  (imports here, not on the first request's clock)
        from foxglove_schemas_protobuf.CompressedImage_pb2 import CompressedImage  # noqa: F401

        while True:
            with self._cond:
                self._cond.wait_for(lambda: (self._todo and not self._held) or self._closed)
                if self._closed:
                    return
                key, job = self._todo.popitem(last=False)
                owner = self._owner.pop(key, None)
                if owner is not None:
                    self._queued[owner] -= 1
                    if not self._queued[owner]:
                        del self._queued[owner]
            try:
                edges = self._flight_edges(job[0]) if self.dense_s > 0 else []
                # no edges: the plain call (what a flight without an event log always made)
                thumbs = (make_previews(*job, edges=edges, dense_s=self.dense_s) if edges
                          else make_previews(*job))
            except Exception:  # a broken segment gets no previews, never a dead worker
                log.exception("previews of %s failed", job[1])
                thumbs = []
            size = sum(len(d) for _, d in thumbs) + 256
            with self._cond:
                self._cache[key] = (thumbs, size)
                self._bytes += size
                self.made += 1
                self._cond.notify_all()
                while self._bytes > self.max_bytes and len(self._cache) > 1:
                    _, (_, old) = self._cache.popitem(last=False)
                    self._bytes -= old

    def _flight_edges(self, seg: Path) -> list[tuple[int, int]]:
        """:func:`flight_edges` of ``seg``'s flight, cached by its event log files (size, mtime):
        a flight's segments are made one after the other."""
        flight = seg.parent.parent
        logs = sorted((flight / "events").glob("*.mcap"))
        key = tuple(file_key(f) for f in logs)
        hit = self._edges.get(key)
        if hit is None:
            hit = self._edges[key] = flight_edges(logs)
            while len(self._edges) > _EDGES_CACHED:
                self._edges.popitem(last=False)
        seen = self._flight_seen.get(str(flight))
        if seen is not None and seen != hit:
            # an edge logged since (a board serving during its flight): the flight's previews made
            # before it may lack the frames around it; they are made again when next asked for
            prefix = f"{flight}/"
            with self._cond:
                for k in [k for k in self._cache if str(k[0]).startswith(prefix)]:
                    self._bytes -= self._cache.pop(k)[1]
        self._flight_seen[str(flight)] = hit
        return hit

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=10)


def flight_edges(logs: list[Path]) -> list[tuple[int, int]]:
    """Every phase edge of a flight's event log segments ``logs`` as (run, mono ns on that run's
    clock), in log order: the moments the first look shows from -1 s to +1 s. An unreadable log
    gives none (sparse previews, as before)."""
    edges: list[tuple[int, int]] = []
    for log_file in logs:
        try:
            recs = list(read(iter_events(log_file)))
        except Exception:  # a torn or foreign log: no edges from it
            log.warning("previews: cannot read the event log %s", log_file)
            continue
        edges += [(r.run or 0, r.mono_ns) for r in recs
                  if isinstance(r, PhaseRecord) and r.mono_ns is not None]
    return edges


def make_previews(seg: Path, rel: str, camera: str, every: int, width: int, *,
                  edges: Sequence[tuple[int, int]] = (),
                  dense_s: float = 0.0) -> list[tuple[p.ThumbInfo, bytes]]:
    """Previews of one camera segment, in file order (runs on the worker): every ``every``-th
    image (stills not counted), every image within ``dense_s`` of an edge of ``edges`` ((run, mono
    ns): a frame is near an edge of its own run's clock) and every still. A finished segment is read
    through its index: only the chosen images and their metadata when there are no edges, every
    image's record otherwise (decoded and shrunk: only the chosen)."""
    out: list[tuple[p.ThumbInfo, bytes]] = []
    dense = int(dense_s * 1e9)
    near: dict[int, list[int]] = {}
    for run, t in edges if dense > 0 else ():
        near.setdefault(run, []).append(t)
    every = max(1, every)
    n = 0  # images (not stills) of the segment so far
    for fr in pick_frames(seg, every=1 if near else every, stills=True, check_jpeg=False):
        if not fr.still:
            n += 1
            sparse = not near or (n - 1) % every == 0
            if not sparse and not any(abs(fr.timestamp_ns - t) <= dense
                                      for t in near.get(fr.run, ())):
                continue
        small = _shrink(fr.jpeg, width)
        if small is None:
            continue
        data, w, h = small
        info = p.ThumbInfo(camera=camera, segment=rel, seq=fr.seq, timestamp_ns=fr.timestamp_ns,
                           phase=fr.phase, width=w, height=h, run=fr.run, still=fr.still,
                           # THUMBNAILS takes at most 64 characters of it (ThumbInfo.from_json)
                           event=str(fr.meta.get("event") or "")[:64] if fr.still else "")
        out.append((info, data))
    return out


def _shrink(jpeg: bytes, width: int) -> tuple[bytes, int, int] | None:
    """A ``width``-pixel-wide q70 JPEG of ``jpeg`` (DCT-scaled decode, then a box-filter resize in
    numpy: the board needs no imaging library); None if broken."""
    import simplejpeg

    try:
        img = simplejpeg.decode_jpeg(jpeg, min_width=width, strict=False)
        h, w = img.shape[:2]
        if w > width:
            img = _box_resize(img, width, max(1, round(h * width / w)))
        return simplejpeg.encode_jpeg(img, quality=70), int(img.shape[1]), int(img.shape[0])
    except Exception:
        return None


def _box_resize(img: Any, width: int, height: int) -> Any:
    """``img`` (H x W x C uint8) resized down to ``width`` x ``height``: each output pixel is the
    mean of the source pixels it covers (an area filter, like Pillow's BOX; the DCT-scaled decode
    left at most 2x). Sums come from running sums (``np.cumsum``) differenced at the cell edges:
    several times faster than ``np.add.reduceat`` groups (dense previews around every edge make
    many more of them) and no BLAS, whose worker threads spin on a loaded board."""
    import numpy as np

    h, w = img.shape[:2]
    ys = np.linspace(0, h, height + 1).astype(int)
    xs = np.linspace(0, w, width + 1).astype(int)
    run = np.zeros((h + 1, *img.shape[1:]), np.uint32)
    np.cumsum(img, axis=0, dtype=np.uint32, out=run[1:])
    rows = run[ys[1:]] - run[ys[:-1]]  # (height, W, C): each cell row's column sums
    run = np.zeros((height, w + 1, *img.shape[2:]), np.uint32)
    np.cumsum(rows, axis=1, dtype=np.uint32, out=run[:, 1:])
    sums = run[:, xs[1:]] - run[:, xs[:-1]]  # (height, width, C)
    area = np.maximum(1, np.diff(ys))[:, None, None] * np.maximum(1, np.diff(xs))[None, :, None]
    return np.ascontiguousarray(((sums + area // 2) // area).astype(np.uint8))
