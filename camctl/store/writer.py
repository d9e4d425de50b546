"""One flight's files on flash, and the single writer thread that owns them.

:class:`FlightStore` lays out ``<root>/<flight>/`` (``flight.json``, one dir per camera, ``events/``,
``index.json`` at the end), takes frames through a bounded, value-aware queue (``put()`` never blocks and
never raises), and group-commits: the writer thread closes the open chunk of every dirty segment, flushes
and ``fsync``s at most every ``commit_interval_ms`` and at once on :meth:`FlightStore.commit`. Only then do
those frames count in ``durable_frames`` -- so a power cut loses only frames after the last reported count.

I/O errors never escape: ``ENOSPC``/``EIO`` abandon the segment (cut back to its last commit), drop and
count the uncommitted frames, and writing resumes in a new segment when space returns.

Example::

    >>> with FlightStore(root, "rig-a", new_flight_id(), StoreConfig(), cameras=["down"]) as st:  # doctest: +SKIP
    ...     st.put(frame); st.commit(wait=True); print(st.stats()["down"]["durable_frames"])
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from foxglove_schemas_protobuf.Log_pb2 import Log

from camctl.common.frames import EncodedFrame
from camctl.exc import StoreError
from camctl.store._records import CH_EVENTS, CH_IMAGE, CH_LOG, CH_META, CH_STILL, camera_layout, events_layout
from camctl.store._segment import SegmentWriter
from camctl.store.config import StoreConfig
from camctl.store.index import FLIGHT_NAME, INDEX_NAME, build_index, fsync_dir, write_json_atomic
from camctl.store.quota import QuotaLevel, QuotaPolicy

__all__ = ["FlightStore", "append_events", "list_flights", "new_flight_id"]

_MB = 1 << 20
EVENTS = "events"
_RESUME_MARGIN = 1 * _MB  # after ENOSPC, resume once this much more space is free than at the failure
_IO_RETRY_S = 1.0
_QUOTA_CHECK_S = 0.1
_DROP_REPORT_S = 1.0
# Room the store keeps for finishing besides the open segments' summaries (computed per segment):
_EVENTS_ROOM = 1 * _MB  # the event log may still grow this much after frames stop (drop reports, landing)
_FILE_SLACK = 8 << 10  # per open file: its last partly used filesystem block, and the chunk's message indexes
_INDEX_PER_SEGMENT = 512  # index.json bytes per segment (path, size, sha256, counts), plus _INDEX_BASE
_INDEX_BASE = 16 << 10


def new_flight_id(now: float | None = None, *, root: Path | None = None) -> str:
    """A UTC flight id like ``20261127T073736Z``; with ``root``, suffixed ``-2``, ``-3``... to be unique."""
    base = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(time.time() if now is None else now))
    if root is None:
        return base
    flight, n = base, 1
    while (Path(root) / flight).exists():
        n += 1
        flight = f"{base}-{n}"
    return flight


def list_flights(root: Path) -> list[str]:
    """Flight ids under ``root`` (dirs holding a ``flight.json``), oldest first."""
    root = Path(root)
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if (p / FLIGHT_NAME).is_file())


def _statvfs_free(path: Path) -> Callable[[], int]:
    def free() -> int:
        st = os.statvfs(path)
        return st.f_bavail * st.f_frsize
    return free


@dataclass
class _CamStats:
    frames_stored: int = 0
    durable_frames: int = 0
    durable_seq: int = -1  # the highest frame seq whose commit has returned (-1: none yet)
    bytes: int = 0
    segments: int = 0
    queued: int = 0
    dropped: dict[str, int] = field(default_factory=dict)


class FlightStore:
    """One flight's files under ``<root>/<flight>/``. Owns a writer thread; ``put()`` never blocks.

    Seams for tests (keyword-only): ``free_bytes()`` replaces ``statvfs``; ``opener(path)`` opens segment
    files (wrap it to inject ``ENOSPC``); ``fsync(fd)`` replaces ``os.fsync`` for segment commits;
    ``clock()`` is the monotonic clock used for commit intervals and segment ages.
    """

    def __init__(self, root: Path, board: str, flight: str, config: StoreConfig, *,
                 cameras: Sequence[str], on_drop: Callable[[dict], None] | None = None,
                 free_bytes: Callable[[], int] | None = None,
                 opener: Callable[[Path], IO[bytes]] | None = None,
                 fsync: Callable[[int], None] | None = None,
                 clock: Callable[[], float] = time.monotonic, resume: bool = False) -> None:
        self.root = Path(root)
        self.resumed = resume  # a restarted daemon records on into this existing flight (new segments)
        self.board = board
        self.flight = flight
        self.config = config
        self.dir = self.root / flight
        self.cameras = tuple(cameras)
        for name in (*self.cameras, flight):
            if not name or "/" in name or name in (".", "..", EVENTS):
                raise StoreError(f"bad camera or flight name {name!r}")
        if len(set(self.cameras)) != len(self.cameras):
            raise StoreError(f"camera names repeat: {list(self.cameras)}")
        self._on_drop = on_drop
        self._free_bytes = free_bytes or _statvfs_free(self.dir)
        self._opener = opener
        self._fsync = fsync
        self._clock = clock
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._queue: deque[EncodedFrame] = deque()
        self._events: deque[dict] = deque()
        self._stats = {c: _CamStats() for c in self.cameras}
        self._quota = QuotaPolicy(config.reserve_mb)
        self._segments: dict[str, SegmentWriter] = {}
        self._seg_seq: dict[str, int] = {}
        self._pending: dict[str, int] = {}
        self._pending_seq: dict[str, int] = {}
        self._pending_events: list[dict] = []
        self._held_events: list[dict] = []
        self._drops_unreported: dict[tuple[str, str], int] = {}
        self._commit_req = 0
        self._commit_done = 0
        self._finish_req = False
        self._stop_req = False
        self._finished = False
        self._closed = False
        self._finished_evt = threading.Event()
        self._full_free: int | None = None
        self._io_retry_at = 0.0
        self._last_commit = clock()
        self._last_quota = float("-inf")
        self._last_drop_report = clock()
        self._written_after_finish = False
        self._abandoned: list[Path] = []  # segments cut back to their last commit, finished at landing
        self._free_at_check: int | None = None  # statvfs at the last quota check ...
        self._written_at_check = 0  # ... and what the store had written by then
        self._done_bytes = 0  # bytes of segments no longer open
        self.commits = 0  # group commits done (each fsyncs every dirty segment)
        # (start, end) on time.monotonic() of recent group commits: closing chunks to the last fsync returning
        self.commit_log: deque[tuple[float, float]] = deque(maxlen=100_000)
        self._create_dirs()
        self._thread = threading.Thread(target=self._run, name=f"store-{flight}", daemon=True)
        self._thread.start()

    def _create_dirs(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        if self.resumed:  # the flight's dirs and flight.json exist; segments get the next free numbers
            if not (self.dir / FLIGHT_NAME).is_file():
                raise StoreError(f"cannot resume flight {self.flight}: no {self.dir / FLIGHT_NAME}")
            try:
                for name in (*self.cameras, EVENTS):
                    (self.dir / name).mkdir(exist_ok=True)
                fsync_dir(self.dir)
            except OSError as exc:
                raise StoreError(f"cannot resume flight dir {self.dir}: {exc}") from exc
            return
        try:
            self.dir.mkdir()
        except FileExistsError:
            raise StoreError(f"flight dir {self.dir} already exists: a flight is never reused") from None
        try:
            for name in (*self.cameras, EVENTS):
                (self.dir / name).mkdir()
            write_json_atomic(self.dir / FLIGHT_NAME, {
                "board": self.board, "flight": self.flight, "created_wall_ns": time.time_ns(),
                "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "cameras": list(self.cameras)})
            fsync_dir(self.dir)
            fsync_dir(self.root)
        except OSError as exc:
            raise StoreError(f"cannot create flight dir {self.dir}: {exc}") from exc

    def __repr__(self) -> str:
        state = "closed" if self._closed else "finished" if self._finished else "open"
        return f"<FlightStore {self.dir} {state} cameras={list(self.cameras)}>"

    def __enter__(self) -> FlightStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- caller side ----------------------------------------------------------------------------------
    def put(self, frame: EncodedFrame) -> bool:
        """Queue a frame for the writer; never blocks, never raises. False when the frame was dropped."""
        try:
            with self._lock:
                cam = frame.camera
                if cam not in self._stats:
                    return False
                if self._finish_req:
                    self._drop(cam, "finished")
                    return False
                if not self._quota.admit(frame):
                    self._drop(cam, "quota")
                    return False
                if len(self._queue) >= self.config.queue_frames:
                    low = min(range(len(self._queue)), key=lambda i: self._queue[i].value)
                    victim = self._queue[low]
                    if victim.value >= frame.value:
                        self._drop(cam, "queue_full")
                        return False
                    del self._queue[low]
                    self._stats[victim.camera].queued -= 1
                    self._drop(victim.camera, "queue_full")
                self._queue.append(frame)
                self._stats[cam].queued += 1
                self._cond.notify()
            return True
        except Exception:  # put() must never take the capture thread down
            return False

    def log_event(self, record: dict) -> None:
        """Append a record to the event log (never dropped; written by the writer thread)."""
        try:
            rec = dict(record)
            rec.setdefault("mono_ns", time.monotonic_ns())
            rec.setdefault("wall_ns", time.time_ns())
            with self._lock:
                if self._stop_req:
                    return
                self._events.append(rec)
                self._cond.notify()
        except Exception:
            pass

    def commit(self, wait: bool = False) -> None:
        """Ask for a group commit now (everything put before this call); with ``wait``, block until done."""
        with self._lock:
            self._commit_req += 1
            target = self._commit_req
            self._cond.notify_all()
            if wait:
                while self._commit_done < target and self._thread.is_alive():
                    self._cond.wait(1.0)

    def finish(self) -> None:
        """Drain the queue, commit, finish every segment and write index.json: the flight is immutable."""
        with self._lock:
            if self._finished:
                return
            self._finish_req = True
            self._cond.notify_all()
        while not self._finished_evt.wait(1.0):
            if not self._thread.is_alive():
                break

    def close(self) -> None:
        """finish() if needed, then stop the writer (finishing any events logged after finish). Safe twice."""
        if self._closed:
            return
        self.finish()
        with self._lock:
            self._stop_req = True
            self._cond.notify_all()
        self._thread.join()
        self._closed = True

    @property
    def finished(self) -> bool:
        return self._finished

    @property
    def closed(self) -> bool:
        return self._closed

    def open_segments(self) -> set[Path]:
        """Segments still being written (not to be served)."""
        with self._lock:
            return {s.path for s in self._segments.values()}

    def disk_free_mb(self) -> float:
        try:
            return self._free_bytes() / _MB
        except OSError:
            return 0.0

    @property
    def quota_level(self) -> QuotaLevel:
        return self._quota.level

    def stats(self) -> dict[str, dict]:
        """Per camera: frames_stored, durable_frames, durable_seq, bytes, segments, dropped {reason: n}, queued.

        ``durable_seq`` is the highest frame seq whose group commit (file and directory fsync) has returned:
        a power cut now keeps every frame of the camera with that seq or lower that was stored.
        """
        with self._lock:
            return {c: {"frames_stored": s.frames_stored, "durable_frames": s.durable_frames,
                        "durable_seq": s.durable_seq,
                        "bytes": s.bytes, "segments": s.segments, "dropped": dict(s.dropped),
                        "queued": s.queued} for c, s in self._stats.items()}

    # --- shared helpers (call with the lock held) -----------------------------------------------------
    def _drop(self, cam: str, reason: str, n: int = 1) -> None:
        if n <= 0:
            return
        d = self._stats[cam].dropped
        d[reason] = d.get(reason, 0) + n
        if reason == "finished":  # frames arriving after LANDED: counted, not logged into a finished flight
            return
        key = (cam, reason)
        self._drops_unreported[key] = self._drops_unreported.get(key, 0) + n

    # --- writer thread --------------------------------------------------------------------------------
    def _run(self) -> None:
        interval = self.config.commit_interval_ms / 1000.0
        while True:
            with self._cond:
                while not (self._queue or self._events or self._commit_req > self._commit_done
                           or (self._finish_req and not self._finished) or self._stop_req):
                    now = self._clock()
                    dirty = any(s.dirty for s in self._segments.values())
                    timeout = max(0.0, self._last_commit + interval - now) if dirty else 0.5
                    if not self._cond.wait(timeout if timeout > 0 else 0.001) and dirty:
                        break
                frames = list(self._queue)
                self._queue.clear()
                for s in self._stats.values():
                    s.queued = 0
                events = list(self._events)
                self._events.clear()
                target = self._commit_req
                finish = self._finish_req and not self._finished
                stop = self._stop_req
            try:
                self._work(frames, events, target, finish, stop, interval)
            except Exception as exc:  # the writer thread must never die
                self._fault("store_writer_error", exc)
            with self._cond:
                if target > self._commit_done:
                    self._commit_done = target
                self._cond.notify_all()
                if stop and not self._queue and not self._events:
                    break
        self._finished_evt.set()

    def _work(self, frames: list[EncodedFrame], events: list[dict], target: int, finish: bool,
              stop: bool, interval: float) -> None:
        self._quota_tick()
        if self._held_events and self._full_free is None and self._clock() >= self._io_retry_at:
            held, self._held_events = self._held_events, []
            events = held + events
        if self._finished and (events or frames):
            self._written_after_finish = True
        for rec in events:
            self._write_event(rec)
        for fr in frames:
            self._write_frame(fr)
            if self._clock() - self._last_commit >= interval:  # a long backlog still commits on time
                self._commit_all()
        now = self._clock()
        if finish or stop or now - self._last_drop_report >= _DROP_REPORT_S:
            self._report_drops()
        dirty = any(s.dirty for s in self._segments.values())
        if dirty and (target > self._commit_done or now - self._last_commit >= interval):
            self._commit_all()
        elif target > self._commit_done:
            self._last_commit = now
        if finish:
            self._finish_all()
            self._write_index()
            with self._lock:
                self._finished = True
            self._finished_evt.set()
        elif stop:
            self._report_drops()
            self._finish_all()
            if self._written_after_finish:
                self._write_index()

    # --- the room finishing needs -------------------------------------------------------------------
    def finish_need(self) -> int:
        """Bytes finishing the flight needs now: every open (and abandoned) segment's summary and footer,
        a block of slack per file, and ``index.json``. Frames stop before free space gets below this plus
        the event log's room; the event log stops (holding records in RAM) only below this."""
        segs = list(self._segments.values())
        n_segments = sum(s.segments for s in self._stats.values()) + self._seg_seq.get(EVENTS, 0)
        return (sum(s.summary_room + _FILE_SLACK for s in segs) + len(self._abandoned) * (64 << 10)
                + _INDEX_BASE + _INDEX_PER_SEGMENT * (n_segments + 1))

    def _written(self) -> int:
        return self._done_bytes + sum(s.size + s.pending_bytes for s in self._segments.values())

    def _free_estimate(self) -> int | None:
        """Free bytes now: the last statvfs reading less what the store wrote since (None: unknown)."""
        if self._free_at_check is None:
            return None
        return self._free_at_check - (self._written() - self._written_at_check)

    def _has_room(self, nbytes: int, *, events: bool = False) -> bool:
        free = self._free_estimate()
        return free is None or free - nbytes >= self.finish_need() + (0 if events else _EVENTS_ROOM)

    def _quota_tick(self) -> None:
        now = self._clock()
        if now - self._last_quota < _QUOTA_CHECK_S:
            return
        self._last_quota = now
        try:
            free = self._free_bytes()
        except OSError as exc:
            self._fault("statvfs_failed", exc)
            return
        self._free_at_check, self._written_at_check = free, self._written()
        need = self.finish_need() + _EVENTS_ROOM
        with self._lock:
            change = self._quota.update(free, now=now, need=need)
        if change:
            self._event({"kind": "quota", "name": change[1].name, "from": change[0].name,
                         "free_mb": round(free / _MB, 1), "finish_need_mb": round(need / _MB, 2),
                         "reserve_mb": self.config.reserve_mb})
        if self._full_free is not None and free >= self._full_free + _RESUME_MARGIN:
            self._full_free = None
            self._event({"kind": "quota", "name": "disk_space_returned", "free_mb": round(free / _MB, 1)})

    def _event(self, rec: dict) -> None:
        rec.setdefault("mono_ns", time.monotonic_ns())
        rec.setdefault("wall_ns", time.time_ns())
        self._write_event(rec)

    def _fault(self, name: str, exc: BaseException, **extra: Any) -> None:
        with contextlib.suppress(Exception):
            self._event({"kind": "fault", "name": name, "error": f"{type(exc).__name__}: {exc}", **extra})

    def _segment(self, name: str) -> SegmentWriter:
        seg = self._segments.get(name)
        now = self._clock()
        if seg is not None and (seg.size + seg.pending_bytes >= self.config.segment_mb * _MB
                                or now - seg.created_mono_ns / 1e9 >= self.config.segment_s):
            self._finish_segment(name)
            seg = None
        if seg is None and (self._full_free is not None or now < self._io_retry_at):
            raise OSError(errno.ENOSPC if self._full_free is not None else errno.EIO,
                          "store is waiting for the disk to recover", str(self.dir / name))
        if seg is None:
            seq = self._seg_seq.get(name, 0) + 1
            path = self.dir / name / f"{seq:06d}.mcap"
            while path.exists():  # never overwrite, e.g. a segment abandoned but not removed
                seq += 1
                path = self.dir / name / f"{seq:06d}.mcap"
            self._seg_seq[name] = seq
            layout = events_layout() if name == EVENTS else camera_layout(name)
            seg = SegmentWriter(path, layout, opener=self._opener, created_mono_ns=int(now * 1e9))
            with self._lock:
                self._segments[name] = seg
                if name in self._stats:
                    self._stats[name].segments += 1
        return seg

    def _write_frame(self, fr: EncodedFrame) -> None:
        cam = fr.camera
        if self._full_free is not None or self._clock() < self._io_retry_at:
            with self._lock:
                self._drop(cam, "disk_full" if self._full_free is not None else "io_error")
            return
        if self._finished:
            with self._lock:
                self._drop(cam, "finished")
            return
        if not self._has_room(len(fr.jpeg) + 1024):  # what finishing needs stays free: no frame takes it
            with self._lock:
                self._drop(cam, "store_full")
            return
        try:
            seg = self._segment(cam)
            # MCAP log_time is the frame's wall-clock capture time (ns since the epoch, Foxglove's convention,
            # so boards line up when opened together); publish_time and CompressedImage.timestamp keep the
            # sensor's monotonic time, which the ground aligns on the shared release edge
            wall = fr.timestamp_ns + time.time_ns() - time.monotonic_ns()
            meta = {"seq": fr.seq, "timestamp_ns": fr.timestamp_ns, "phase": fr.phase, "value": int(fr.value),
                    "width": fr.width, "height": fr.height, "exposure_us": fr.exposure_us,
                    "analogue_gain": fr.analogue_gain, "still": fr.still, "size": fr.size}
            for k, v in fr.meta.items():
                meta.setdefault(k, v)
            seg.add_image(CH_STILL if fr.still else CH_IMAGE, wall, fr.timestamp_ns, fr.seq, fr.jpeg,
                          frame_id=cam, timestamp_ns=fr.timestamp_ns)
            seg.add_message(CH_META, wall, fr.timestamp_ns, fr.seq,
                            json.dumps(meta, default=str, separators=(",", ":")).encode())
            self._pending[cam] = self._pending.get(cam, 0) + 1
            self._pending_seq[cam] = max(self._pending_seq.get(cam, -1), fr.seq)
            with self._lock:
                self._stats[cam].frames_stored += 1
        except OSError as exc:
            with self._lock:
                self._drop(cam, _reason(exc))
            self._io_failure(cam, exc)

    def _write_event(self, rec: dict) -> None:
        if self._full_free is not None or self._clock() < self._io_retry_at or not self._has_room(4096, events=True):
            self._held_events.append(rec)
            return
        if self._finished:  # e.g. a quota change or a drop report while stopping: index.json must follow
            self._written_after_finish = True
        try:
            seg = self._segment(EVENTS)
            _add_event(seg, rec, len(self._pending_events))
            self._pending_events.append(rec)
        except OSError as exc:
            self._held_events.append(rec)
            self._io_failure(EVENTS, exc)

    def _after_sync(self, name: str, seg: SegmentWriter) -> None:
        if seg.needs_dir_sync:
            fsync_dir(seg.path.parent)
            seg.needs_dir_sync = False
        if name == EVENTS:
            self._pending_events = []
            return
        with self._lock:
            st = self._stats[name]
            st.durable_frames += self._pending.pop(name, 0)
            st.durable_seq = max(st.durable_seq, self._pending_seq.pop(name, -1))
            st.bytes += seg.size - seg.accounted
            seg.accounted = seg.size

    def _commit_all(self) -> None:
        t0 = time.monotonic()
        for name, seg in list(self._segments.items()):
            if not seg.dirty:
                continue
            try:
                seg.commit(fsync=self._fsync)
                self._after_sync(name, seg)
            except OSError as exc:
                self._io_failure(name, exc)
        self.commits += 1
        self.commit_log.append((t0, time.monotonic()))
        self._last_commit = self._clock()

    def _finish_segment(self, name: str) -> None:
        seg = self._segments[name]
        try:
            seg.finish(fsync=self._fsync)
            self._after_sync(name, seg)
        except OSError as exc:
            self._io_failure(name, exc)
            return
        with self._lock:
            self._segments.pop(name, None)
        self._done_bytes += seg.size

    def _finish_abandoned(self) -> None:
        """Finish, in place, the segments cut back after an I/O error: every file readable after landing."""
        from camctl.store.verify import repair_segment  # verify imports the reader side only, not this module

        for path in self._abandoned:
            try:
                if path.exists():
                    repair_segment(path)
            except (OSError, ValueError) as exc:
                self._fault("segment_finish_failed", exc, segment=str(path))
        self._abandoned = []

    def _finish_all(self) -> None:
        # events last, so faults found while finishing camera segments are logged in this flight
        self._finish_abandoned()
        for name in sorted(self._segments, key=lambda n: n == EVENTS):
            if name in self._segments:
                self._finish_segment(name)
        if EVENTS in self._segments:  # a fault logged while finishing the events segment itself
            self._finish_segment(EVENTS)
        self._last_commit = self._clock()

    def _io_failure(self, name: str, exc: OSError) -> None:
        with self._lock:
            seg = self._segments.pop(name, None)
        if seg is not None:
            seg.abandon()
            self._done_bytes += seg.committed_size
            if seg.committed_size:
                self._abandoned.append(seg.path)
        reason = _reason(exc)
        if name == EVENTS:
            self._held_events[:0] = self._pending_events  # events are never dropped: retry them later
            self._pending_events = []
        else:
            lost = self._pending.pop(name, 0)
            self._pending_seq.pop(name, None)
            with self._lock:
                self._stats[name].frames_stored -= lost
                self._drop(name, reason, lost)
        if reason == "disk_full":
            if self._full_free is None:
                try:
                    self._full_free = self._free_bytes()
                except OSError:
                    self._full_free = 0
                self._held_events.append({"kind": "fault", "name": "disk_full", "segment": str(seg.path if seg
                                          else name), "error": str(exc), "mono_ns": time.monotonic_ns(),
                                          "wall_ns": time.time_ns()})
        else:
            self._io_retry_at = self._clock() + _IO_RETRY_S
            self._held_events.append({"kind": "fault", "name": "store_io_error", "error": str(exc),
                                      "segment": str(seg.path if seg else name),
                                      "mono_ns": time.monotonic_ns(), "wall_ns": time.time_ns()})

    def _report_drops(self) -> None:
        with self._lock:
            pending, self._drops_unreported = self._drops_unreported, {}
            totals = {k: self._stats[k[0]].dropped.get(k[1], 0) for k in pending}
        self._last_drop_report = self._clock()
        for (cam, reason), n in sorted(pending.items()):
            rec = {"kind": "drop", "name": reason, "camera": cam, "count": n, "total": totals[(cam, reason)],
                   "mono_ns": time.monotonic_ns(), "wall_ns": time.time_ns()}
            if self._on_drop is not None:
                with contextlib.suppress(Exception):
                    self._on_drop(dict(rec))
            self._write_event(rec)

    def _write_index(self) -> None:
        try:
            flight = {"board": self.board, "flight": self.flight, "cameras": list(self.cameras)}
            write_json_atomic(self.dir / INDEX_NAME, build_index(self.dir, flight=flight))
        except OSError as exc:
            self._fault("index_write_failed", exc)


def _add_event(seg: SegmentWriter, rec: dict, n: int) -> None:
    """One event record: JSON on ``/events``, mirrored as a ``foxglove.Log`` on ``/log``."""
    mono = int(rec.get("mono_ns") or time.monotonic_ns())
    wall = int(rec.get("wall_ns") or time.time_ns())
    # log_time wall clock (Foxglove's convention), publish_time the monotonic time, as for frames
    seg.add_message(CH_EVENTS, wall, mono, n, json.dumps(rec, default=str).encode())
    kind = str(rec.get("kind", "event"))
    level = {"fault": Log.ERROR, "drop": Log.WARNING, "quota": Log.WARNING, "loss": Log.WARNING}.get(kind, Log.INFO)
    text = " ".join(f"{k}={v}" for k, v in rec.items() if k not in ("mono_ns", "wall_ns"))
    log = Log(level=level, message=text, name="camctl")
    log.timestamp.FromNanoseconds(wall)
    seg.add_message(CH_LOG, wall, mono, n, log.SerializeToString())


def append_events(flight_dir: Path, records: Sequence[dict]) -> Path:
    """Log ``records`` into a finished flight: a new, finished segment in its ``events/`` dir (a finished
    flight's files are immutable, so what is logged later goes to a new file). Used by recovery to put what
    it cut into the flight's own event log; kilobytes, fsync'd with its directory."""
    d = Path(flight_dir) / EVENTS
    d.mkdir(exist_ok=True)
    seq = max((int(p.stem) for p in d.glob("*.mcap") if p.stem.isdigit()), default=0) + 1
    seg = SegmentWriter(d / f"{seq:06d}.mcap", events_layout())
    try:
        for n, rec in enumerate(records):
            rec = dict(rec)
            rec.setdefault("mono_ns", time.monotonic_ns())
            rec.setdefault("wall_ns", time.time_ns())
            _add_event(seg, rec, n)
        seg.finish()
    except BaseException:
        seg.close()
        seg.path.unlink(missing_ok=True)
        raise
    fsync_dir(d)
    return seg.path


def _reason(exc: OSError) -> str:
    return "disk_full" if exc.errno in (errno.ENOSPC, errno.EDQUOT) else "io_error"
