"""The board's flight in the store: open it at ARM, keep its books, finish it, mark its disarm.

:class:`FlightRecorder` owns the open :class:`~camctl.store.FlightStore` (built in one place,
:meth:`FlightRecorder.open_store`), the flight's frame :class:`~camctl.common.ledger.Ledger`, the
event log's hand-over from "no store yet" to the opened store, and the threads that open and finish
a flight (never the GPIO thread: it holds the phase machine's lock). ``disarmed.json`` beside the
store names the landed flight that was then disarmed (its own log is finished: it cannot say so).
"""

from __future__ import annotations

import collections
import contextlib
import json
import logging
import threading
import time
import weakref
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from camctl.board.config import LANDED, SAFE, Config
from camctl.common.frames import EncodedFrame
from camctl.common.ledger import Ledger
from camctl.common.records import FaultRecord, FlightRecord
from camctl.exc import StoreError
from camctl.store.sources import SampleBatch

__all__ = ["DISARMED", "FlightRecorder"]

log = logging.getLogger("camctl.board.daemon")
DISARMED = "disarmed.json"  # the landed flight that was then disarmed


class FlightRecorder:
    """The current flight: its store, its ledger, its event log; opened and finished on threads.

    ``phase`` reads the phase machine; ``publish`` sends to the PUB socket; ``wait_cameras`` waits
    for every camera to hand over its last frame (before the finish); ``on_finished`` runs after
    it (:attr:`finished_store`'s ``unfinished`` says what the finish could not close).
    """

    def __init__(self, cfg: Config, *, boot_id: str, phase: Callable[[], str],
                 publish: Callable[[str, dict], None], wait_cameras: Callable[[], None],
                 on_finished: Callable[[], None]) -> None:
        self.cfg = cfg
        self.board = cfg.board
        self.root = Path(cfg.store.dir)
        self.boot_id = boot_id
        self._phase = phase
        self._publish = publish
        self._wait_cameras = wait_cameras
        self._on_finished = on_finished
        self.cameras = [c.name for c in cfg.cameras]
        self.store: Any = None
        self.flight = ""
        self.done: list[str] = []  # flights finished (or found landed) since start
        self.ledger = Ledger()  # the current flight's frame accounting (a new one at every arm)
        # per camera, the current flight's books before this run of the daemon (a resumed flight:
        # camctl.board.resume.flight_books, set by the resume); STATUS adds this run's to them
        self.before: dict[str, dict] = {}
        self._store_ledger: Ledger | None = None  # the ledger whose records go to self.store's log
        self._lock = threading.RLock()
        # hands the event log over from "no store yet" (_unlogged) to the opened store; never held
        # over I/O
        self._log_lock = threading.Lock()
        self._unlogged: collections.deque[dict] = collections.deque(maxlen=1000)
        self._opening: threading.Thread | None = None
        self._finishing: threading.Thread | None = None
        self._finish_started: Any = None  # the store a finishing thread was started for
        # the stores the finish is done with (the serving gate): a set, as two finishes may end in
        # either order (armed again while the last flight closed)
        self._finished_stores: weakref.WeakSet[Any] = weakref.WeakSet()
        self.finished_store: Any = None  # the store the last finish was for
        # armed: the new flight's files are being opened; its records wait in _unlogged (not in
        # the last flight's log, which may still be closing)
        self._opening_new = False
        self._disarming: threading.Thread | None = None  # writing the disarm marker
        self._disarm_saved = False  # the last disarm marker was written
        # the older flight the check after boot is on and its files (held back): one tuple,
        # replaced whole, read unlocked by the publisher's thread
        self._checking: tuple[str | None, frozenset[Path]] = (None, frozenset())

    # -- the store ------------------------------------------------------------------------------
    def open_store(self, flight: str, *, resume: bool = False, drops: bool = True,
                   run: int = 0, cameras: list[str] | None = None) -> Any:
        """Every FlightStore of this board is built here (a new flight, a resumed one, old books);
        ``run``: this run of the daemon in the flight (0 opens it; k: the k-th resume);
        ``cameras``: the flight's, when they are not only this config's (a resumed flight). The
        config's sensors are sources of the flight beside the cameras (their samples' segments).
        """
        from camctl.store import FlightStore
        from camctl.store.sources import Source

        return FlightStore(self.root, self.board, flight, self.cfg.store,
                           cameras=list(self.cameras if cameras is None else cameras),
                           sources=[Source(s.name, s.kind) for s in self.cfg.sensors],
                           on_drop=self._on_drop if drops else None, resume=resume, run=run)

    def adopt(self, store: Any, flight: str) -> Ledger:
        """Record on into ``store`` (a resumed flight) with fresh books, which it returns."""
        # the books of this run of the flight (frames in flight at a crash are gone)
        self.ledger = Ledger()
        with self._log_lock:
            self.store, self.flight, self._store_ledger = store, flight, self.ledger
        return self.ledger

    def landed(self, flight: str) -> None:
        """A flight found landed at start: it is the current one, served, not recorded into."""
        self.flight = flight
        self.done.append(flight)

    def recording(self) -> bool:
        """A flight's files are open now."""
        store = self.store
        return store is not None and not store.finished

    def settled(self) -> bool:
        """No store, or the finish is done with the current one (the serving gate)."""
        store = self.store
        return store is None or store in self._finished_stores

    def flights(self) -> list[str]:
        """Flights of this run: the finished ones and the one being recorded."""
        return self.done + ([self.flight] if self.flight and self.recording() else [])

    def held_back(self) -> set[Path]:
        """Files not to serve now: the open flight's segments, and the files of the flight the
        background check is on (a repair rewrites them in place: a download then would mix old and
        new bytes)."""
        store, checking = self.store, self._checking[1]
        if store is None or store.finished:
            return set(checking)
        return set(store.open_segments()) | checking

    @property
    def checking(self) -> str | None:
        return self._checking[0]

    def check_started(self, flight: str | None) -> None:
        """The background check starts on ``flight`` (its files held back), or is done (None)."""
        files: frozenset[Path] = frozenset()
        if flight is not None:
            with contextlib.suppress(OSError):
                files = frozenset(f for f in (self.root / flight).rglob("*") if f.is_file())
        self._checking = (flight, files)

    # -- the event log and the books ------------------------------------------------------------
    def log_record(self, rec: dict) -> None:
        with self._log_lock:  # log_event only queues: this lock is never held over I/O
            store = self.store
            if store is not None and not store.finished and not self._opening_new:
                store.log_event(rec)
            else:
                self._unlogged.append(rec)

    def commit(self) -> None:
        store = self.store
        if store is not None and not store.finished:
            store.commit()

    def flush_ledger(self) -> None:
        """Write what the ledger counted since its last flush to the open flight's event log."""
        with self._log_lock:
            store, ledger = self.store, self._store_ledger
            if store is None or ledger is None or store.finished:
                return
            for rec in ledger.flush():
                store.log_event(rec)

    def sink(self, frame: EncodedFrame) -> bool:
        store = self.store
        if store is None or store.finished:
            return False  # the runner counts it: store_refused
        store.put(frame)  # False: the store dropped it and counted it under its own reason
        return True

    def sink_samples(self, batch: SampleBatch) -> bool:
        """A sensor sampler's batch to the open flight; False when no flight is open (the sampler
        books it as refused)."""
        store = self.store
        if store is None or store.finished:
            return False
        store.put(batch)  # False: the store dropped it and counted it under its own reason
        return True

    def _on_drop(self, rec: dict) -> None:
        self._publish("disk", {"board": self.board, **rec})

    # -- open ------------------------------------------------------------------------------------
    def new_ledger(self) -> Ledger:
        """The books of a new flight (at ARM, before the runners count into them)."""
        self.ledger = Ledger()
        self.before = {}
        return self.ledger

    def open_async(self, cameras: Mapping[str, dict]) -> None:
        """Open the flight's files on their own thread, counting into the current ledger (no I/O
        here: this runs under the phase machine's lock; ARMED frames only go to the RAM ring)."""
        t = threading.Thread(target=self._open, args=(self.ledger, dict(cameras)),
                             name="camctl-open-flight", daemon=True)
        with self._log_lock:
            self._opening_new = True
        self._opening = t
        t.start()

    def wait_open(self, timeout: float = 30) -> None:
        opening = self._opening
        if opening is not None:
            opening.join(timeout=timeout)

    def _open(self, ledger: Ledger, cameras: dict[str, dict]) -> None:
        from camctl.store import new_flight_id

        with self._lock:
            flight = new_flight_id(root=self.root)
            try:
                store = self.open_store(flight)
            except (OSError, StoreError) as exc:
                # best effort: the flight goes on (cameras still count), nothing is stored; say it
                # loudly
                # its records stay unlogged (_opening_new stays set): the last flight is not theirs
                log.error("cannot open flight %s in %s: %s", flight, self.root, exc)
                fault = FaultRecord.from_exception(exc, name="store_open_failed",
                                                   mono_ns=time.monotonic_ns(),
                                                   wall_ns=time.time_ns())
                self._publish("fault", {"board": self.board, **fault.encode()})
                return
            with self._log_lock:
                self.store, self.flight, self._store_ledger = store, flight, ledger
                self._opening_new = False
                while self._unlogged:
                    store.log_event(self._unlogged.popleft())
            store.log_event(FlightRecord(board=self.board, flight=flight,
                                         mono_ns=time.monotonic_ns(), wall_ns=time.time_ns(),
                                         boot_id=self.boot_id, cameras=cameras))
            store.commit()
        # disarmed (or landed) while the files were being opened
        if self._phase() in (SAFE, LANDED):
            self.start_finishing(store, ledger)

    # -- finish ----------------------------------------------------------------------------------
    def finish_current(self) -> None:
        """LANDED or SAFE: finish the current flight's files on their own thread (once)."""
        store = self.store
        if store is not None:
            self.start_finishing(store, self._store_ledger)

    def start_finishing(self, store: Any, ledger: Ledger | None) -> None:
        """Finish ``store`` on its own thread, once (the transition and a late open may both ask).
        """
        with self._log_lock:
            if store.finished or store is self._finish_started:
                return
            self._finish_started = store
        t = threading.Thread(target=self._finish, args=(store, ledger), name="camctl-finish",
                             daemon=True)
        self._finishing = t
        t.start()

    def _finish(self, store: Any, ledger: Ledger | None) -> None:
        self._wait_cameras()
        if ledger is not None and not store.finished:  # the last interval, before the files close
            # and the books close with it: what a stuck thread counts later is not on flash
            for rec in ledger.flush(close=True):
                store.log_event(rec)
        try:
            store.finish()
        # never let a finish error kill the daemon; recovery repairs on restart
        except Exception as exc:
            log.error("finishing flight %s failed: %s", store, exc)
        with self._lock:
            # the store's flight: armed again meanwhile, self.flight is the next one already
            flight = getattr(store, "flight", "") or self.flight
            if flight and flight not in self.done:
                self.done.append(flight)
            if self._finishing is threading.current_thread():
                self._finishing = None
            self._finished_stores.add(store)
            self.finished_store = store
        self._on_finished()

    def close(self) -> None:
        """Wait for the open, finish and disarm threads, then finish what is still open."""
        for t, timeout in ((self._opening, 30), (self._finishing, 30), (self._disarming, 10)):
            if t is not None:
                t.join(timeout=timeout)
        if self.store is not None and not self.store.finished:
            self.flush_ledger()
            try:
                self.store.finish()
            except Exception as exc:
                log.error("finishing the store at shutdown: %s", exc)

    # -- the disarm marker -----------------------------------------------------------------------
    def mark_disarmed(self, wall_ns: int) -> None:
        """The landed flight was disarmed: say so beside the store (a small atomic JSON write, on
        its own thread, never under the phase machine's lock)."""
        if not self.flight:
            return
        t = threading.Thread(target=self._save_disarmed, args=(self.flight, wall_ns),
                             name="camctl-disarmed", daemon=True)
        # close() waits for it: a stop right after a disarm must keep the marker
        self._disarming = t
        t.start()

    def _save_disarmed(self, flight: str, wall_ns: int) -> None:
        from camctl.store.index import write_json_atomic

        self._disarm_saved = False
        try:
            write_json_atomic(self.root / DISARMED, {"flight": flight, "wall_ns": wall_ns})
            self._disarm_saved = True
        except OSError as exc:  # a restart would then come up LANDED again: a nuisance, not a loss
            log.warning("cannot record the disarm of flight %s: %s", flight, exc)

    def wait_disarm_saved(self, timeout: float = 10.0) -> bool:
        """Wait until the disarm just made is durable, so that a restart from now on comes up SAFE
        (the operator's reply waits here, off the phase machine's lock): the marker of a landed
        flight disarmed is written (file and directory fsync'd), and the event log of a flight
        disarmed in ARMED has committed its SAFE record. False when either failed or took longer
        than ``timeout`` (the log says which)."""
        deadline = time.monotonic() + timeout
        marking = self._disarming
        if marking is not None:
            marking.join(timeout)
            if marking.is_alive():
                return False
            self._disarming = None  # answered for: a later disarm in ARMED does not ask again
            if not self._disarm_saved:
                return False
        store = self.store
        if store is None or store.closed:
            return True
        # commit(wait=True) blocks as long as the writer does: wait on its own thread, bounded
        t = threading.Thread(target=store.commit, kwargs={"wait": True},
                             name="camctl-disarm-commit", daemon=True)
        t.start()
        t.join(max(0.0, deadline - time.monotonic()))
        if t.is_alive():
            log.warning("the disarm of flight %s is not committed after %g s", self.flight,
                        timeout)
            return False
        return True

    def disarmed_flight(self) -> str:
        try:
            return str(json.loads((self.root / DISARMED).read_text()).get("flight", ""))
        except (OSError, ValueError, AttributeError):
            return ""

    def __repr__(self) -> str:
        return f"<FlightRecorder {self.flight or '-'} {'open' if self.recording() else 'closed'}>"
