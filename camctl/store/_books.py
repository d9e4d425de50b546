"""The running store's books: per source, what was stored, what is durable, what was dropped and
why.

Every method runs with the store's lock held (the caller side reads them in ``stats()``; the writer
thread writes them). Records stored but not yet committed are tracked apart, so a commit makes
exactly those durable and an abandoned segment takes exactly those back.
"""

from __future__ import annotations

from typing import Any

from camctl.store._segment import SegmentWriter
from camctl.store.sources import SourceBooks, SourceKind

__all__ = ["Books"]


class Books:
    """The ledger of every source of one flight (see the module doc: call with the lock held)."""

    def __init__(self, kinds: dict[str, SourceKind]) -> None:
        self.kinds = kinds
        self.books = {name: SourceBooks() for name in kinds}
        self._unreported: dict[tuple[str, str], int] = {}
        self._pending: dict[str, int] = {}  # stored since the last commit of the source's segment
        self._pending_seq: dict[str, int] = {}
        self._pending_extra: dict[str, dict[str, int]] = {}
        self._pending_units: dict[str, int] = {}  # the same in the kind's loss unit (samples)

    def __contains__(self, name: str) -> bool:
        return name in self.books

    def drop(self, name: str, reason: str, n: int = 1) -> None:
        """Count ``n`` units of ``name`` dropped for ``reason`` (reported to the event log later):
        frames or records, a sensor's samples (:meth:`SourceKind.units`)."""
        if n <= 0:
            return
        d = self.books[name].dropped
        d[reason] = d.get(reason, 0) + n
        if (
            reason == "finished"
        ):  # frames arriving after LANDED: counted, not logged into a finished flight
            return
        key = (name, reason)
        self._unreported[key] = self._unreported.get(key, 0) + n

    def queued(self, name: str, n: int) -> None:
        self.books[name].queued += n

    def clear_queued(self) -> None:
        for b in self.books.values():
            b.queued = 0

    def opened(self, name: str) -> None:
        """A new segment of ``name`` was opened."""
        if name in self.books:
            self.books[name].segments += 1

    def stored(self, name: str, record: Any) -> None:
        """A record went into the open chunk of its source's segment (durable at the next
        commit)."""
        kind = self.kinds[name]
        self._pending[name] = self._pending.get(name, 0) + 1
        self._pending_units[name] = self._pending_units.get(name, 0) + kind.units(record)
        self._pending_seq[name] = max(self._pending_seq.get(name, -1), kind.seq(record))
        b = self.books[name]
        b.stored += 1
        for key, n in kind.counts(record).items():
            b.extra[key] = b.extra.get(key, 0) + n
            extra = self._pending_extra.setdefault(name, {})
            extra[key] = extra.get(key, 0) + n

    def synced(self, name: str, seg: SegmentWriter) -> None:
        """The segment of ``name`` was committed: what was stored since the last commit is
        durable."""
        b = self.books[name]
        b.durable += self._pending.pop(name, 0)
        self._pending_units.pop(name, None)
        b.durable_seq = max(b.durable_seq, self._pending_seq.pop(name, -1))
        self._pending_extra.pop(name, None)
        b.bytes += seg.size - seg.accounted
        seg.accounted = seg.size

    def lost(self, name: str, reason: str) -> None:
        """The segment of ``name`` was abandoned: what was stored since its last commit is gone."""
        lost = self._pending.pop(name, 0)
        units = self._pending_units.pop(name, 0)
        self._pending_seq.pop(name, None)
        b = self.books[name]
        for key, n in self._pending_extra.pop(name, {}).items():
            b.extra[key] = b.extra.get(key, 0) - n
        b.stored -= lost
        self.drop(name, reason, units)

    def take_unreported(self) -> tuple[dict[tuple[str, str], int], dict[tuple[str, str], int]]:
        """The drops not yet reported ((source, reason) -> n), and each one's running total."""
        pending, self._unreported = self._unreported, {}
        return pending, {k: self.books[k[0]].dropped.get(k[1], 0) for k in pending}

    def view(self) -> dict[str, dict]:
        """Per source, the stats its kind shows (``FlightStore.stats()``)."""
        return {name: self.kinds[name].stats_view(b) for name, b in self.books.items()}
