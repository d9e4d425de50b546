"""The store's writer thread: it owns the files, writes queued records and events, group-commits.

:class:`Inbox` is what the caller side (:class:`~camctl.store.writer.FlightStore`) hands over under
one lock; :class:`Committer` drains it. It closes the open chunk of every dirty segment, flushes and
fsyncs (file, then directory) at most every ``commit_interval_ms`` and at once on request; only then
do records count as durable. I/O errors never escape: the segment is cut back to its last commit,
its uncommitted records are dropped and counted, events are held in RAM, and writing resumes when
the disk recovers.

A disk filled by another writer (or by the store) does not stop what must reach it: an explicit
commit (a phase record), the landing and the stop write the event records held in RAM and commit
the events segment FIRST, then finish every segment, repair the abandoned ones and write
``index.json``, taking the room each step needs from the store's full-disk reserve
(:mod:`camctl.store.reserve`) when the disk has none. Records (frames) never take from it.
"""

from __future__ import annotations

import contextlib
import errno
import json
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from camctl.common.records import DropRecord, FaultRecord, Record
from camctl.store._books import Books
from camctl.store._eventlog import add_event
from camctl.store._files import SegmentFiles
from camctl.store._segment import SegmentWriter
from camctl.store._space import SpaceBudget
from camctl.store.index import INDEX_NAME, build_index, write_json_reserved
from camctl.store.sources import EVENTS, SourceKind

__all__ = ["Committer", "Inbox", "Queued"]

_DROP_REPORT_S = 1.0
_SEGMENT_ROOM = 16 << 10  # a new events segment's header and a finished one's summary, roughly
_FILE_SLACK = 8 << 10  # a file's last partly used block


class Queued(NamedTuple):
    """A record waiting for the writer: its source, the source's kind, the record, its value."""

    name: str
    kind: SourceKind
    record: Any
    value: int


@dataclass
class Inbox:
    """What the caller side and the writer thread share, all under ``lock`` (``cond`` wakes
    either)."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    queue: deque[Queued] = field(default_factory=deque)
    events: deque[dict] = field(default_factory=deque)
    commit_req: int = 0
    commit_done: int = 0
    finish_req: bool = False
    stop_req: bool = False
    finished: bool = False
    finished_evt: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self.cond = threading.Condition(self.lock)


class Committer:
    """Drains an :class:`Inbox` into the files of one flight (see the module doc). Run :meth:`run`
    in its own thread; everything else here is that thread's."""

    def __init__(
        self,
        inbox: Inbox,
        books: Books,
        files: SegmentFiles,
        space: SpaceBudget,
        *,
        interval_s: float,
        clock: Callable[[], float],
        flight: dict,
        on_drop: Callable[[dict], None] | None = None,
        run: int = 0,
    ) -> None:
        self.inbox = inbox
        self.flight_run = run  # stamped on every event record written without one (its own too)
        self.books = books
        self.files = files
        self.space = space
        self.interval_s = interval_s
        self._clock = clock
        self._flight = (
            flight  # what index.json says of the flight (board, flight id, cameras, sources)
        )
        self._on_drop = on_drop
        self._pending_events: list[dict] = []  # written since the last commit of the events segment
        self._held_events: list[
            dict
        ] = []  # not written yet (disk full, I/O error): retried, never dropped
        self._written_after_finish = False
        self._force = False  # this round may write event records from the reserve (urgent)
        # after the landing: what could not be finished (FlightStore.unfinished)
        self.unfinished: list[str] = []
        self._repair_failed: list[str] = []
        self._last_commit = clock()
        self._last_drop_report = clock()
        self.commits = 0  # group commits done (each fsyncs every dirty segment)
        # (start, end) on time.monotonic() of recent group commits: closing chunks to the last
        # fsync returning
        self.commit_log: deque[tuple[float, float]] = deque(maxlen=100_000)

    # --- the loop
    # ------------------------------------------------------------------------------------
    def _wanted(self) -> bool:
        ib = self.inbox
        return bool(
            ib.queue
            or ib.events
            or ib.commit_req > ib.commit_done
            or (ib.finish_req and not ib.finished)
            or ib.stop_req
        )

    def run(self) -> None:
        ib = self.inbox
        while True:
            with ib.cond:
                while not self._wanted():
                    dirty = self.files.dirty()
                    timeout = (
                        max(0.0, self._last_commit + self.interval_s - self._clock())
                        if dirty
                        else 0.5
                    )
                    if not ib.cond.wait(timeout if timeout > 0 else 0.001) and dirty:
                        break
                records = list(ib.queue)
                ib.queue.clear()
                self.books.clear_queued()
                events = list(ib.events)
                ib.events.clear()
                target = ib.commit_req
                finish = ib.finish_req and not ib.finished
                stop = ib.stop_req
            try:
                self._work(records, events, target, finish, stop)
            except Exception as exc:  # the writer thread must never die
                self._fault("store_writer_error", exc)
            with ib.cond:
                if target > ib.commit_done:
                    ib.commit_done = target
                ib.cond.notify_all()
                if stop and not ib.queue and not ib.events:
                    break
        ib.finished_evt.set()

    def _work(
        self, records: list[Queued], events: list[dict], target: int, finish: bool, stop: bool
    ) -> None:
        # an explicit commit (a phase record: LANDED), the landing, the stop: event records go to
        # the disk now, from the reserve if need be, and the events segment is committed first
        self._force = urgent = finish or stop or target > self.inbox.commit_done
        self.space.tick(self._event, self._fault)
        if self._held_events and (urgent or not self.space.blocked(self._clock())):
            held, self._held_events = self._held_events, []
            events = held + events
        if self.inbox.finished and (events or records):
            self._written_after_finish = True
        if urgent:
            self._held_events.extend(events)
            self._land_events()
        else:
            for rec in events:
                self._write_event(rec)
        for item in records:
            self._write_record(item)
            if (
                self._clock() - self._last_commit >= self.interval_s
            ):  # a long backlog commits on time
                self._commit_all()
        now = self._clock()
        if finish or stop or now - self._last_drop_report >= _DROP_REPORT_S:
            self._report_drops()
        if self.files.dirty() and (
            target > self.inbox.commit_done or now - self._last_commit >= self.interval_s
        ):
            self._commit_all()
        elif target > self.inbox.commit_done:
            self._last_commit = now
        if finish:
            self._finish_all()
            self._write_index()
            self._take_stock()
            with self.inbox.lock:
                self.inbox.finished = True
            self.inbox.finished_evt.set()
        elif stop:
            self._report_drops()
            self._finish_all()
            if self._written_after_finish:
                self._write_index()
            self._take_stock()
        if finish or stop:
            self.space.grow_reserve()  # given back for the landing: held again when space allows

    # --- writing
    # ---------------------------------------------------------------------------------------
    def _event(self, record: Record) -> None:
        rec = record.encode()
        rec.setdefault("mono_ns", time.monotonic_ns())
        rec.setdefault("wall_ns", time.time_ns())
        self._write_event(rec)

    def _fault(self, name: str, exc: BaseException, **where: Any) -> None:
        """A fault record of ``exc``: ``error`` its type name, ``message`` its text."""
        with contextlib.suppress(Exception):
            self._event(FaultRecord.from_exception(exc, name=name, **where))

    def _segment(self, name: str) -> SegmentWriter:
        """The open segment of ``name``: rotated when due, opened unless the disk is not
        writable (the events segment of an urgent round is opened anyway: the reserve is for it).
        """
        now = self._clock()
        seg = self.files.get(name)
        if seg is not None and self.files.due(seg, now):
            self._finish_segment(name)
            seg = None
        if seg is None:
            blocked = "" if self._force and name == EVENTS else self.space.blocked(now)
            if blocked:
                raise OSError(
                    errno.ENOSPC if blocked == "disk_full" else errno.EIO,
                    "store is waiting for the disk to recover",
                    str(self.files.dir / name),
                )
            seg = self.files.open(name, now)
        return seg

    def _write_record(self, item: Queued) -> None:
        name = item.name
        blocked = self.space.blocked(self._clock())
        if blocked or self.inbox.finished:
            with self.inbox.lock:
                self.books.drop(name, blocked or "finished", item.kind.units(item.record))
            return
        if not self.space.has_room(item.kind.room(item.record)):  # what finishing needs stays free
            with self.inbox.lock:
                self.books.drop(name, "store_full", item.kind.units(item.record))
            return
        try:
            item.kind.write(self._segment(name), name, item.record)
            with self.inbox.lock:
                self.books.stored(name, item.record)
        except OSError as exc:
            with self.inbox.lock:
                self.books.drop(name, _reason(exc), item.kind.units(item.record))
            self._io_failure(name, exc)

    def _write_event(self, rec: dict) -> None:
        rec.setdefault("run", self.flight_run)
        if not self._force and (self.space.blocked(self._clock())
                                or not self.space.has_room(4096, events=True)):
            self._held_events.append(rec)
            return
        if (
            self.inbox.finished
        ):  # e.g. a quota change or a drop report while stopping: index.json follows
            self._written_after_finish = True
        try:
            seg = self._segment(EVENTS)
            add_event(seg, rec, len(self._pending_events))
            self._pending_events.append(rec)
        except OSError as exc:
            self._held_events.append(rec)
            self._io_failure(EVENTS, exc)

    # --- commits and finishing
    # -----------------------------------------------------------------------
    def _synced(self, name: str, seg: SegmentWriter) -> None:
        if name == EVENTS:
            self._pending_events = []
            return
        with self.inbox.lock:
            self.books.synced(name, seg)

    def _commit_all(self) -> None:
        t0 = time.monotonic()
        # the event log first: a phase record must not wait on a camera segment failing for space
        for name, seg in sorted(self.files.segments.items(), key=lambda kv: kv[0] != EVENTS):
            if not seg.dirty:
                continue
            try:
                self.files.sync(seg)
                self._synced(name, seg)
            except OSError as exc:
                self._io_failure(name, exc)
        self.commits += 1
        self.commit_log.append((t0, time.monotonic()))
        self._last_commit = self._clock()

    def _finish_segment(self, name: str) -> None:
        seg = self.files.segments[name]
        try:
            self.files.sync(seg, finish=True)
            self._synced(name, seg)
        except OSError as exc:
            self._io_failure(name, exc)
            return
        self.files.retire(name)

    def _finish_abandoned(self) -> None:
        """Finish, in place, the segments cut back after an I/O error: every file readable after
        landing (repair in place takes the summary's room from the reserve itself)."""
        from camctl.store.verify import repair_segment  # verify imports the reader side only

        for path in self.files.take_abandoned():
            try:
                if path.exists():
                    repair_segment(path)
            except (OSError, ValueError) as exc:
                self._repair_failed.append(str(path))
                self._fault("segment_finish_failed", exc, segment=str(path))

    def _finish_room(self, name: str) -> None:
        """Free room for finishing the open segment of ``name`` (its summary), from the reserve."""
        seg = self.files.get(name)
        if seg is not None:
            self._make_room(seg.summary_room + seg.pending_bytes + _FILE_SLACK)

    def _finish_all(self) -> None:
        # events last, so faults found while finishing source segments are logged in this flight
        for name in [n for n in self.files.segments if n != EVENTS]:
            if name in self.files.segments:
                self._finish_room(name)
                self._finish_segment(name)
        for _ in range(2):  # twice: a fault logged while finishing the events segment itself
            self._finish_abandoned()
            if self._held_events:
                self._land_events()
            if EVENTS in self.files.segments:
                self._finish_room(EVENTS)
                self._finish_segment(EVENTS)
            if not (self._held_events or self.files.abandoned or EVENTS in self.files.segments):
                break
        self._last_commit = self._clock()

    # --- the reserve
    # ----------------------------------------------------------------------------------
    def _make_room(self, need: int) -> None:
        """Free ``need`` bytes for a finishing step when the disk has less: from the reserve."""
        reserve = self.space.reserve
        if reserve is None:
            return
        est = self.space.free_estimate()  # no system call while the disk is known to have room
        if not self.space.blocked(self._clock()) and est is not None and est >= 2 * need:
            return
        self.space.released(reserve.make_room(need, free=self.space.free_bytes))

    def _events_room(self) -> int:
        """Bytes the held and pending event records take in a segment (JSON and its log line), a
        new segment's header and summary."""
        recs = self._held_events + self._pending_events
        return _SEGMENT_ROOM + sum(2 * len(json.dumps(r, default=str)) + 256 for r in recs)

    def _land_events(self) -> bool:
        """Write the held event records and commit the events segment now, taking the room from
        the reserve when the disk has none (a second try releases all it needs); True when every
        record is on the disk. Called for urgent rounds only (a commit asked for, the landing)."""
        reserve = self.space.reserve
        for attempt in (1, 2):
            need = self._events_room()
            if attempt == 1:
                self._make_room(need)
            elif reserve is None or not self._held_events:
                break
            else:
                got = reserve.release(need)
                self.space.released(got)
                if not got:
                    break
            held, self._held_events = self._held_events, []
            for rec in held:
                self._write_event(rec)
            seg = self.files.get(EVENTS)
            if seg is not None and seg.dirty:
                try:
                    self.files.sync(seg)
                    self._synced(EVENTS, seg)
                except OSError as exc:
                    self._io_failure(EVENTS, exc)
            if not self._held_events:
                return True
        return not self._held_events

    def _take_stock(self) -> None:
        """What the landing (or stop) left unfinished: FlightStore.unfinished."""
        out = [f"{p} left unfinished (its repair failed)" for p in self._repair_failed]
        out += [f"{s.path} left open" for s in self.files.segments.values()]
        out += [f"{p} left unfinished" for p in self.files.abandoned]
        if not (self.files.dir / INDEX_NAME).exists():
            out.append(f"{self.files.dir / INDEX_NAME} not written")
        if self._held_events:
            out.append(f"{len(self._held_events)} event records held in RAM, not on the disk")
        self.unfinished = out

    def _io_failure(self, name: str, exc: OSError) -> None:
        seg = self.files.abandon(name)
        reason = _reason(exc)
        if name == EVENTS:
            self._held_events[:0] = (
                self._pending_events
            )  # events are never dropped: retry them later
            self._pending_events = []
        else:
            with self.inbox.lock:
                self.books.lost(name, reason)
        newly_full = self.space.failed(reason)  # a disk already known full is not reported again
        if reason == "disk_full" and not newly_full:
            return
        fault = FaultRecord.from_exception(
            exc, name="disk_full" if newly_full else "store_io_error",
            segment=str(seg.path if seg else name), mono_ns=time.monotonic_ns(),
            wall_ns=time.time_ns())
        self._held_events.append(fault.encode())

    def _report_drops(self) -> None:
        with self.inbox.lock:
            pending, totals = self.books.take_unreported()
        self._last_drop_report = self._clock()
        for (cam, reason), n in sorted(pending.items()):
            rec = DropRecord(name=reason, camera=cam, count=n, total=totals[(cam, reason)],
                             mono_ns=time.monotonic_ns(), wall_ns=time.time_ns()).encode()
            if self._on_drop is not None:
                with contextlib.suppress(Exception):
                    self._on_drop(dict(rec))
            self._write_event(rec)

    def _write_index(self) -> None:
        try:
            write_json_reserved(self.space.reserve, self.files.dir / INDEX_NAME,
                                build_index(self.files.dir, flight=self._flight))
        except OSError as exc:
            self._fault("index_write_failed", exc)


def _reason(exc: OSError) -> str:
    return "disk_full" if exc.errno in (errno.ENOSPC, errno.EDQUOT) else "io_error"
