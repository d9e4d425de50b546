"""The loss ledger: every frame a camera captured is stored, dropped with a reason, or aged out.

It owns a board's per-flight frame accounting and its ``kind == "ledger"`` records in the flight's
event log, so that for every camera, once the flight landed,
``captured = stored + sum(dropped by reason) + aged_out``. Anything may write a loss through
:meth:`Ledger.lost` (thread-safe, O(1), no I/O); :meth:`Ledger.flush` turns what was counted since
the last flush into one record per camera; :func:`read_ledger` sums a flight's records back into
per-camera totals. A sensor (an imu or baro source) keeps the same books under its name in
samples: the store's drops and a recovery loss's ``samples`` are counted in samples too. The
equation, every drop reason (:data:`REASONS`), the record: docs/ledger.md.

Example::

    >>> led = Ledger(clock_ns=lambda: 5, wall_ns=lambda: 7)
    >>> led.captured("down", 3); led.lost("down", "encoder_behind"); led.aged_out("down")
    >>> [r["dropped"] for r in led.flush()], led.flush()
    ([{'encoder_behind': 1}], [])
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable

from camctl.common.records import DropRecord, LedgerRecord, LossRecord, Record, read

__all__ = ["REASONS", "Ledger", "add_books", "balance", "describe", "ledger_marks", "read_ledger",
           "store_reason"]

ENCODER_BEHIND, RING_OVERFLOW, SENSOR_GAP = "encoder_behind", "ring_overflow", "sensor_gap"
STORE_REFUSED, STILL_GAP = "store_refused", "still_gap"
STORE_FULL, ENCODE_ERROR = "store_full", "encode_error"
RECOVERY_CUT = "recovery_cut"
# captured before a daemon restart, neither stored nor dropped: in RAM when it died
RESTART = "restart"
ABANDONED = "abandoned"  # in RAM in a runner the watchdog replaced (its thread stuck in a backend)
# video frames the sensor never exposed while it switched mode for a full-resolution still (the
# cost of still_size = "full", chosen in the config: not a sensor fault)
STILL_MODE_SWITCH = "still_mode_switch"
REASONS = (ENCODER_BEHIND, RING_OVERFLOW, SENSOR_GAP, STORE_REFUSED, STILL_GAP, STORE_FULL,
           ENCODE_ERROR, RECOVERY_CUT, RESTART, ABANDONED, STILL_MODE_SWITCH)
_STORE_FULL = ("quota", "disk_full")  # the store's names for a drop made because space ran out


def store_reason(name: str) -> str:
    """The ledger reason of a drop the store named its own way (``quota`` -> ``store_full``)."""
    if name in _STORE_FULL or name == STORE_FULL:
        return STORE_FULL
    return name if name.startswith("store_") else f"store_{name}"


class _Counts:
    __slots__ = ("aged_out", "captured", "dropped", "stills_missed")

    def __init__(self) -> None:
        self.captured = 0
        self.aged_out = 0
        self.stills_missed = 0
        self.dropped: dict[str, int] = {}

    def empty(self) -> bool:
        return not (self.captured or self.aged_out or self.stills_missed or self.dropped)

    def as_dict(self) -> dict:
        return {"captured": self.captured, "aged_out": self.aged_out, "dropped": dict(self.dropped),
                "stills_missed": self.stills_missed}


class Ledger:
    """Frame accounting of a flight, per camera: totals for ``status``, intervals for the log."""

    def __init__(self, *, clock_ns: Callable[[], int] = time.monotonic_ns,
                 wall_ns: Callable[[], int] = time.time_ns) -> None:
        self._clock_ns = clock_ns
        self._wall_ns = wall_ns
        self._lock = threading.Lock()
        self._total: dict[str, _Counts] = {}
        self._interval: dict[str, _Counts] = {}
        self._since_ns = clock_ns()
        # set by the flight's last flush (flush(close=True)): counts after it are not the flight's
        self.closed = False
        self.late = 0  # counts refused once closed (a stuck thread's frame coming back after)

    def _both(self, camera: str) -> tuple[_Counts, _Counts]:
        total = self._total.get(camera)
        if total is None:
            total = self._total[camera] = _Counts()
        interval = self._interval.get(camera)
        if interval is None:
            interval = self._interval[camera] = _Counts()
        return total, interval

    def captured(self, camera: str, n: int = 1) -> None:
        """``n`` frames entered the pipeline (or were skipped by the sensor: see ``lost``)."""
        self._add(camera, "captured", n)

    def lost(self, camera: str, reason: str, n: int = 1) -> None:
        """``n`` captured frames were dropped for ``reason`` (:data:`REASONS`, or ``store_*``)."""
        if n <= 0:
            return
        with self._lock:
            if self.closed:
                self.late += n
                return
            for c in self._both(camera):
                c.dropped[reason] = c.dropped.get(reason, 0) + n

    def aged_out(self, camera: str, n: int = 1) -> None:
        """``n`` ARMED frames left the ring by age (or at disarm): not a loss, but accounted."""
        self._add(camera, "aged_out", n)

    def still_missed(self, camera: str, n: int = 1) -> None:
        """``n`` still requests were not served before the cameras stopped."""
        self._add(camera, "stills_missed", n)

    def _add(self, camera: str, counter: str, n: int) -> None:
        if n <= 0:
            return
        with self._lock:
            if self.closed:
                self.late += n
                return
            for c in self._both(camera):
                setattr(c, counter, getattr(c, counter) + n)

    def totals(self) -> dict[str, dict]:
        """Per camera, since the start: ``captured``, ``aged_out``, ``dropped`` {reason: n}."""
        with self._lock:
            return {cam: c.as_dict() for cam, c in self._total.items()}

    def flush(self, *, close: bool = False) -> list[dict]:
        """Records of what was counted since the last flush (none for a camera with nothing new).

        ``close``: the flight's last flush (its files close next): from then on nothing counts, so
        the totals ``status`` shows stay the books on flash (a frame a stuck capture thread brings
        back after the landing is no longer the flight's; :attr:`late` counts such)."""
        with self._lock:
            self.closed = self.closed or close
            interval, self._interval = self._interval, {}
            since, now = self._since_ns, self._clock_ns()
            self._since_ns = now
        wall = self._wall_ns()
        return [LedgerRecord(camera=cam, captured=c.captured, aged_out=c.aged_out,
                             dropped=dict(c.dropped), stills_missed=c.stills_missed,
                             since_ns=since, mono_ns=now, wall_ns=wall).encode()
                for cam, c in sorted(interval.items()) if not c.empty()]

    def __repr__(self) -> str:
        return f"<Ledger {len(self._total)} cameras>"


def read_ledger(events: Iterable[dict]) -> dict[str, dict]:
    """Per-camera totals from a flight's event records: ``ledger`` intervals summed, plus the
    store's own ``drop`` records (under :func:`store_reason`). A camera with no ledger record has no
    ``captured`` to compare with: callers say "not accounted" rather than guess."""
    out: dict[str, dict] = {}
    for r in read(events):
        if not isinstance(r, LedgerRecord | DropRecord | LossRecord):
            continue
        c = out.setdefault(r.camera, {"captured": 0, "aged_out": 0, "dropped": {},
                                      "stills_missed": 0})
        if not isinstance(r, LedgerRecord):
            reason, n = _store_loss(r)
            if n:
                c["dropped"][reason] = c["dropped"].get(reason, 0) + n
            continue
        c["captured"] += r.captured
        c["aged_out"] += r.aged_out
        c["stills_missed"] += r.stills_missed
        for reason, n in r.dropped.items():
            if n:
                c["dropped"][reason] = c["dropped"].get(reason, 0) + n
    return out


def add_books(books: dict, more: dict | None) -> dict:
    """One camera's ``books`` with ``more`` added (``captured``, ``aged_out``, ``stills_missed``
    and ``dropped`` by reason, as :func:`read_ledger` and :meth:`Ledger.totals` give them); any
    other key of ``books`` (``stored``) kept as it is."""
    extra = more or {}
    dropped = dict(books.get("dropped", {}))
    for reason, n in extra.get("dropped", {}).items():
        dropped[reason] = dropped.get(reason, 0) + n
    summed = {k: int(books.get(k, 0)) + int(extra.get(k, 0))
              for k in ("captured", "aged_out", "stills_missed")}
    return {**books, **summed, "dropped": dropped}


def ledger_marks(events: Iterable[dict]) -> list[tuple[int, str, str, int]]:
    """Every loss of a flight as ``(mono_ns, camera, reason, count)``, in time order, for a
    timeline: one mark per reason of each ledger interval (at its end) and per store ``drop``
    record. Aged-out frames are not marks (the ring working as meant)."""
    out: list[tuple[int, str, str, int]] = []
    for r in read(events):
        mono = r.mono_ns
        if mono is None:
            continue
        if isinstance(r, DropRecord | LossRecord):
            reason, n = _store_loss(r)
            if n:
                out.append((mono, r.camera, reason, n))
        elif isinstance(r, LedgerRecord):
            out += [(mono, r.camera, reason, n) for reason, n in sorted(r.dropped.items()) if n]
    return sorted(out)


def _store_loss(r: Record) -> tuple[str, int]:
    """A store ``drop`` record (``count`` frames under the store's reason; a sensor's: samples) or
    a recovery ``loss`` record (the ``seqs`` a torn tail cost: frames the store had counted stored,
    gone after a power cut; a sensor's says the ``samples`` those seqs held) as (reason, n)."""
    if isinstance(r, LossRecord):
        samples = r.extra.get("samples")
        if isinstance(samples, int) and not isinstance(samples, bool) and samples >= 0:
            return RECOVERY_CUT, samples
        return RECOVERY_CUT, len(r.seqs or ())
    assert isinstance(r, DropRecord)
    return store_reason(r.name), r.count


def balance(totals: dict | None, stored: int, *, pending: int = 0,
            not_checked: str = "") -> dict:
    """One camera's books: ``captured``, ``stored``, ``dropped`` {reason: n}, ``aged_out``,
    ``pending`` and ``balanced`` (captured == stored + dropped + aged_out + pending); ``captured``
    and ``balanced`` are None when the flight has no ledger records for it (written before the
    ledger existed).

    ``not_checked``: why ``stored`` is not all the camera stored (a download without some of its
    segments: ``previews only``); then ``balanced`` is None (neither balanced nor not) and the
    books carry ``not_checked``."""
    t = totals or {}
    dropped = dict(t.get("dropped", {}))
    aged = int(t.get("aged_out", 0))
    captured = t.get("captured") if totals is not None and "captured" in t else None
    ok = None if captured is None or not_checked else \
        captured == stored + sum(dropped.values()) + aged + pending
    books = {"captured": captured, "stored": stored, "dropped": dropped, "aged_out": aged,
             "pending": pending, "stills_missed": int(t.get("stills_missed", 0)), "balanced": ok}
    if not_checked:
        books["not_checked"] = not_checked
    return books


def describe(name: str, books: dict) -> str:
    """One line for ``ls``: the equation with one camera's numbers.

    ``down: captured 120 = stored 100 + dropped 15 (encoder_behind 10) + aged out 5``; books that
    cannot be checked (:func:`balance`'s ``not_checked``: the segments are not all on the ground)
    say so, never NOT BALANCED: ``down: books not checked: previews only; captured 120``"""
    if books.get("not_checked"):
        said = "" if books["captured"] is None else f"; captured {books['captured']}"
        return f"{name}: books not checked: {books['not_checked']}{said}"
    if books["captured"] is None:
        return f"{name}: no ledger records (losses not accounted)"
    why = ", ".join(f"{r} {n}" for r, n in sorted(books["dropped"].items()) if n)
    because = f" ({why})" if why else ""
    line = (f"{name}: captured {books['captured']} = stored {books['stored']} + dropped "
            f"{sum(books['dropped'].values())}{because} + aged out {books['aged_out']}")
    if books["stills_missed"]:
        line += f"; {books['stills_missed']} stills not taken"
    return line if books["balanced"] else line.replace(" = ", " != ", 1) + "  NOT BALANCED"
