"""One flight's files on flash: the caller side of the store (the writer thread is ``_committer``).

:class:`FlightStore` lays out ``<root>/<flight>/`` (``flight.json``, one dir per source,
``events/``, ``index.json`` at the end), takes records through a bounded, value-aware queue
(``put()`` never blocks and never raises) and hands them to its writer thread, which group-commits:
it closes the open chunk of every dirty segment, flushes and ``fsync``s at most every
``commit_interval_ms`` and at once on :meth:`FlightStore.commit`. Only then do those records count
as durable -- so a power cut loses only records after the last reported count. Sources are cameras
(``cameras=``) or any kind of :mod:`camctl.store.sources` (``sources=``).

Example::

    >>> cfg = StoreConfig()                                            # doctest: +SKIP
    >>> with FlightStore(root, "rig-a", "F1", cfg, cameras=["down"]) as st:  # doctest: +SKIP
    ...     st.put(frame); st.commit(wait=True); print(st.stats()["down"]["durable_frames"])
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

from camctl.common.frames import EncodedFrame
from camctl.common.records import Record
from camctl.exc import StoreError
from camctl.store._books import Books
from camctl.store._committer import Committer, Inbox, Queued
from camctl.store._eventlog import append_events
from camctl.store._files import SegmentFiles
from camctl.store._records import Layout, events_layout
from camctl.store._space import SpaceBudget, statvfs_free
from camctl.store.config import StoreConfig
from camctl.store.index import FLIGHT_NAME, fsync_dir, write_json_atomic
from camctl.store.quota import QuotaLevel
from camctl.store.reserve import Reserve
from camctl.store.sources import CAMERA, EVENTS, KINDS, Source, SourceKind

__all__ = ["FlightStore", "append_events", "flight_seq", "in_recording_order", "list_flights",
           "new_flight_id", "next_flight_seq"]

_MB = 1 << 20


def new_flight_id(now: float | None = None, *, root: Path | None = None) -> str:
    """A UTC flight id like ``20261127T073736Z``; with ``root``, suffixed ``-2``, ``-3``... to be
    unique."""
    base = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(time.time() if now is None else now))
    if root is None:
        return base
    flight, n = base, 1
    while (Path(root) / flight).exists():
        n += 1
        flight = f"{base}-{n}"
    return flight


def list_flights(root: Path) -> list[str]:
    """Flight ids under ``root`` (dirs holding a ``flight.json``), oldest first: in the board's
    recording order (:func:`in_recording_order`), not by id, which a clock set back reorders."""
    root = Path(root)
    if not root.is_dir():
        return []
    return in_recording_order(root, [p.name for p in root.iterdir()
                                     if (p / FLIGHT_NAME).is_file()])


def flight_seq(flight_dir: Path) -> int | None:
    """The flight's place in its board's recording order: ``seq`` in its flight.json (1, 2, ...);
    None for a flight written before there was one, or whose flight.json cannot be read."""
    try:
        data = json.loads((Path(flight_dir) / FLIGHT_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    seq = data.get("seq") if isinstance(data, dict) else None
    return seq if isinstance(seq, int) and not isinstance(seq, bool) and seq >= 0 else None


def in_recording_order(root: Path, names: Sequence[str], *,
                       seq: Callable[[Path], int | None] = flight_seq) -> list[str]:
    """``names`` (flights under ``root``) oldest first: flights without a ``seq`` by id, then every
    flight with one by ``seq`` (the id breaks ties), so the last is the flight recorded last even
    when the clock went back between two flights (a Pi has no battery-backed clock)."""
    def key(name: str) -> tuple[int, int, str]:
        n = seq(Path(root) / name)
        return (0, 0, name) if n is None else (1, n, name)

    return sorted(names, key=key)


def next_flight_seq(root: Path) -> int:
    """One more than the highest ``seq`` of the flights under ``root`` (1 on an empty store)."""
    root = Path(root)
    if not root.is_dir():
        return 1
    seqs = [flight_seq(d) for d in root.iterdir() if d.is_dir() and not d.is_symlink()]
    return 1 + max((n for n in seqs if n is not None), default=0)


def _source_kinds(flight: str, cameras: Sequence[str],
                  sources: Sequence[Source | tuple[str, str]]) -> dict[str, SourceKind]:
    """Source name -> kind, cameras first; StoreError on a bad or repeated name or an unknown
    kind."""
    named = [Source(c, "camera") for c in cameras] + [Source(*s) for s in sources]
    for name in (*(s.name for s in named), flight):
        if not name or "/" in name or name in (".", "..", EVENTS):
            raise StoreError(f"bad camera or flight name {name!r}")
    names = [s.name for s in named]
    if len(set(names)) != len(names):
        raise StoreError(f"camera names repeat: {names}")
    for s in named:
        if s.kind not in KINDS:
            raise StoreError(f"source {s.name!r}: unknown kind {s.kind!r} (known: {sorted(KINDS)})")
    return {s.name: KINDS[s.kind] for s in named}


class FlightStore:
    """One flight's files under ``<root>/<flight>/``. Owns a writer thread; ``put()`` never blocks.

    Sources: ``cameras`` (names) and ``sources`` (:class:`~camctl.store.sources.Source` name and
    kind). Seams for tests (keyword-only): ``free_bytes()`` replaces ``statvfs``; ``opener(path)``
    opens segment files (wrap it to inject ``ENOSPC``); ``fsync(fd)`` replaces ``os.fsync`` for
    segment commits; ``clock()`` is the monotonic clock used for commit intervals and segment ages.

    ``reserve`` (default on): keep the store's full-disk reserve (:mod:`camctl.store.reserve`)
    beside the flights, grown as segments open, taken from by the landing on a full disk.

    ``run`` is the run of the daemon in the flight that records into this store (0: the run that
    opened it; k: the k-th resume, :class:`~camctl.common.records.ResumeRecord`): every event record
    logged without a ``run`` gets it, and so does every frame's metadata (``/meta`` ``run``), so the
    ground can place both on the flight's timeline (:mod:`camctl.common.flightclock`).
    """

    def __init__(self, root: Path, board: str, flight: str, config: StoreConfig, *,
                 cameras: Sequence[str] = (), sources: Sequence[Source | tuple[str, str]] = (),
                 on_drop: Callable[[dict], None] | None = None,
                 free_bytes: Callable[[], int] | None = None,
                 opener: Callable[[Path], IO[bytes]] | None = None,
                 fsync: Callable[[int], None] | None = None,
                 clock: Callable[[], float] = time.monotonic, resume: bool = False,
                 run: int = 0, reserve: bool = True) -> None:
        if isinstance(run, bool) or not isinstance(run, int) or run < 0:
            raise StoreError(f"flight {flight}: run must be an integer 0 or more, got {run!r}")
        self.root = Path(root)
        self.run = run  # this run of the daemon in the flight: stamped on its records and frames
        self.resumed = resume  # a restarted daemon records on into this flight (in new segments)
        self.board = board
        self.flight = flight
        self.config = config
        self.dir = self.root / flight
        self._kinds = _source_kinds(flight, cameras, sources)
        self.cameras = tuple(n for n, k in self._kinds.items() if k is CAMERA)
        self.sources = tuple(Source(n, k.kind) for n, k in self._kinds.items())
        self._free_bytes = free_bytes or statvfs_free(self.dir)
        self._closed = False
        self._inbox = Inbox()
        self._lock = self._inbox.lock
        self._books = Books(self._kinds)
        self._files = SegmentFiles(self.dir, config, self._layout, lock=self._lock, opener=opener,
                                   fsync=fsync, on_opened=self._books.opened)
        # the store's full-disk reserve (camctl.store.reserve): finishing and landing take from it
        # when the disk is full, whoever filled it
        self.reserve = Reserve(self.root) if reserve else None
        self._space = SpaceBudget(config, self._free_bytes, lock=self._lock, clock=clock,
                                  written=self._files.written, finish_need=self._files.finish_need,
                                  reserve=self.reserve)
        self._committer = Committer(self._inbox, self._books, self._files, self._space,
                                    interval_s=config.commit_interval_ms / 1000.0, clock=clock,
                                    flight=self._flight_info(), on_drop=on_drop, run=run)
        self._create_dirs()
        if self.reserve is not None:  # before any frame; on a full disk it keeps what it has
            self.reserve.grow(self._space.reserve_target())
            self._space.reserve_size = self.reserve.size()
        self._thread = threading.Thread(target=self._committer.run, name=f"store-{flight}",
                                        daemon=True)
        self._thread.start()

    def _layout(self, name: str) -> Layout:
        return events_layout() if name == EVENTS else self._kinds[name].layout(name)

    def _flight_info(self) -> dict[str, Any]:
        """What flight.json and index.json say of the flight; ``sources`` only when there are others
        than cameras (a camera-only flight's files are as they always were)."""
        info: dict[str, Any] = {"board": self.board, "flight": self.flight,
                                "cameras": list(self.cameras)}
        others = {s.name: s.kind for s in self.sources if s.kind != CAMERA.kind}
        if others:
            info["sources"] = others
        return info

    def _create_dirs(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        if self.resumed:  # the flight's dirs and flight.json exist; segments get the next numbers
            if not (self.dir / FLIGHT_NAME).is_file():
                raise StoreError(f"cannot resume flight {self.flight}: no {self.dir / FLIGHT_NAME}")
            try:
                for name in (*self._kinds, EVENTS):
                    (self.dir / name).mkdir(exist_ok=True)
                fsync_dir(self.dir)
            except OSError as exc:
                raise StoreError(f"cannot resume flight dir {self.dir}: {exc}") from exc
            return
        try:
            self.dir.mkdir()
        except FileExistsError:
            raise StoreError(f"flight dir {self.dir} already exists: a flight is never reused") \
                from None
        try:
            for name in (*self._kinds, EVENTS):
                (self.dir / name).mkdir()
            info = self._flight_info()
            del info["flight"], info["board"]
            write_json_atomic(self.dir / FLIGHT_NAME, {
                "board": self.board, "flight": self.flight, "seq": next_flight_seq(self.root),
                "created_wall_ns": time.time_ns(),
                "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **info})
            fsync_dir(self.dir)
            fsync_dir(self.root)
        except OSError as exc:
            raise StoreError(f"cannot create flight dir {self.dir}: {exc}") from exc

    def __repr__(self) -> str:
        state = "closed" if self._closed else "finished" if self.finished else "open"
        return f"<FlightStore {self.dir} {state} sources={[s.name for s in self.sources]}>"

    def __enter__(self) -> FlightStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- caller side
    # ----------------------------------------------------------------------------------
    def put(self, record: Any) -> bool:
        """Queue a record (an :class:`EncodedFrame`, or a record of a source's kind) for the writer;
        never blocks, never raises. False when the record was dropped."""
        try:
            name, kind = self._route(record)
            if kind is None:
                return False
            value = kind.value(record)
            units = kind.units(record)  # a drop's count: a frame, a sensor batch's samples
            if isinstance(record, EncodedFrame):  # the clock its timestamp is on (stills too)
                record.meta.setdefault("run", self.run)
            ib = self._inbox
            with self._lock:
                if ib.finish_req:
                    self._books.drop(name, "finished", units)
                    return False
                if not self._space.quota.admit_value(name, value):
                    self._books.drop(name, "quota", units)
                    return False
                if len(ib.queue) >= self.config.queue_frames:
                    low = min(range(len(ib.queue)), key=lambda i: ib.queue[i].value)
                    victim = ib.queue[low]
                    if victim.value >= value:
                        self._books.drop(name, "queue_full", units)
                        return False
                    del ib.queue[low]
                    self._books.queued(victim.name, -1)
                    self._books.drop(victim.name, "queue_full", victim.kind.units(victim.record))
                ib.queue.append(Queued(name, kind, record, value))
                self._books.queued(name, 1)
                ib.cond.notify()
            return True
        except Exception:  # put() must never take the capture thread down
            return False

    def _route(self, record: Any) -> tuple[str, SourceKind | None]:
        """The source a record goes to and its kind (None: not a source of this store, or not its
        kind)."""
        for name, kind in self._kinds.items():
            if isinstance(record, kind.record_type) and kind.source_of(record) == name:
                return name, kind
        return "", None

    def log_event(self, record: Record | Mapping[str, Any]) -> None:
        """Append a record to the event log (never dropped; written by the writer thread): a
        :class:`~camctl.common.records.Record` (encoded here) or its JSON dict as it is."""
        try:
            rec = record.encode() if isinstance(record, Record) else dict(record)
            rec.setdefault("mono_ns", time.monotonic_ns())
            rec.setdefault("wall_ns", time.time_ns())
            with self._lock:
                if self._inbox.stop_req:
                    return
                self._inbox.events.append(rec)
                self._inbox.cond.notify()
        except Exception:
            pass

    def commit(self, wait: bool = False) -> None:
        """Ask for a group commit now (everything put before this call); with ``wait``, block until
        done."""
        ib = self._inbox
        with self._lock:
            ib.commit_req += 1
            target = ib.commit_req
            ib.cond.notify_all()
            if wait:
                while ib.commit_done < target and self._thread.is_alive():
                    ib.cond.wait(1.0)

    def finish(self) -> None:
        """Drain the queue, commit, finish every segment and write index.json: the flight is
        immutable."""
        with self._lock:
            if self._inbox.finished:
                return
            self._inbox.finish_req = True
            self._inbox.cond.notify_all()
        while not self._inbox.finished_evt.wait(1.0):
            if not self._thread.is_alive():
                break

    def close(self) -> None:
        """finish() if needed, then stop the writer (finishing any events logged after finish).
        Safe twice."""
        if self._closed:
            return
        self.finish()
        with self._lock:
            self._inbox.stop_req = True
            self._inbox.cond.notify_all()
        self._thread.join()
        self._closed = True

    @property
    def finished(self) -> bool:
        return self._inbox.finished

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def unfinished(self) -> list[str]:
        """After :meth:`finish`: what the landing could not finish (a segment left unreadable,
        index.json not written, event records still held in RAM), one short phrase each; empty
        when every file was closed."""
        return list(self._committer.unfinished)

    def open_segments(self) -> set[Path]:
        """Segments still being written (not to be served)."""
        return self._files.paths()

    def disk_free_mb(self) -> float:
        try:
            return self._free_bytes() / _MB
        except OSError:
            return 0.0

    @property
    def quota_level(self) -> QuotaLevel:
        return self._space.quota.level

    @property
    def commits(self) -> int:
        """Group commits done (each fsyncs every dirty segment)."""
        return self._committer.commits

    @property
    def commit_log(self) -> deque[tuple[float, float]]:
        """(start, end) on ``time.monotonic()`` of recent group commits: closing chunks to the last
        fsync."""
        return self._committer.commit_log

    def finish_need(self) -> int:
        """Bytes finishing the flight needs now: every open (and abandoned) segment's summary and
        footer, a block of slack per file, and ``index.json``. Records stop before free space gets
        below this plus the event log's room; the event log stops (holding records in RAM) only
        below this."""
        return self._files.finish_need()

    def stats(self) -> dict[str, dict]:
        """Per source, its kind's counts. A camera: frames_stored, durable_frames, durable_seq,
        bytes, segments, dropped {reason: n}, queued (see :mod:`camctl.store.sources` for other
        kinds).

        ``durable_seq`` is the highest seq whose group commit (file and directory fsync) has
        returned:
        a power cut now keeps every record of the source with that seq or lower that was stored.
        """
        with self._lock:
            return self._books.view()
