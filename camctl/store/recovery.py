"""Store recovery at daemon start: seconds before READY, the full check after it.

Only the last flight can hold torn files (a landed flight was finished and indexed, and the daemon
starts a new flight only after start-up), and in it only the segments that were still open: a
finished segment ends in the footer and the MCAP magic. :func:`recover_store` repairs just those (in
place, kilobytes each; what it cuts goes to the flight's event log) -- reading at most the open
segments, never the whole store -- and tells systemd to extend its start timeout
(``EXTEND_TIMEOUT_USEC``) when even that is a lot of bytes. :func:`verify_later` then checks and
repairs every flight that existed at start in a background thread (CRCs, bit rot, stale indexes),
after READY.

Example::

    >>> report = recover_store(root, notify=notifier.notify)    # doctest: +SKIP
    >>> notifier.ready(); verify_later(root, flights)            # doctest: +SKIP
"""

from __future__ import annotations

import logging
import os
import struct
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

from mcap.opcode import Opcode

from camctl.store._records import MAGIC
from camctl.store.index import INDEX_NAME
from camctl.store.verify import VerifyReport, log_losses, verify, verify_segments

__all__ = ["ends_finished", "recover_store", "unfinished_segments", "verify_later"]

log = logging.getLogger(__name__)

# Footer record (opcode, length, 20-byte body) and the closing magic
_FOOTER_TAIL = 1 + 8 + 20 + len(MAGIC)
# what boot repair is assumed to read per second on a slow SD card; above _EXTEND_AFTER_S of it,
# systemd is asked for more time before the scan starts (sd_notify(3): EXTEND_TIMEOUT_USEC)
_SLOW_READ_BPS = 10 << 20
_EXTEND_AFTER_S = 5.0


def ends_finished(path: Path) -> bool:
    """True when the file ends in a Footer record and the MCAP magic (two small reads, no scan)."""
    try:
        with open(path, "rb", buffering=0) as f:
            size = os.fstat(f.fileno()).st_size
            if size < len(MAGIC) + _FOOTER_TAIL:
                return False
            tail = os.pread(f.fileno(), _FOOTER_TAIL, size - _FOOTER_TAIL)
    except OSError:
        return False
    op, length = struct.unpack_from("<BQ", tail)
    return op == Opcode.FOOTER and length == 20 and tail[-len(MAGIC):] == MAGIC


def unfinished_segments(flight_dir: Path) -> list[Path]:
    """The segments of a flight that do not end finished (torn or damaged at the tail), and repair
    leftovers."""
    flight_dir = Path(flight_dir)
    segs = sorted(p for p in flight_dir.glob("*/*.mcap") if p.is_file() and not ends_finished(p))
    return segs + sorted(flight_dir.glob("*/*.repair.tmp"))


def _flights(root: Path) -> list[Path]:
    from camctl.store.writer import list_flights

    return [Path(root) / f for f in list_flights(root)]


def recover_store(root: Path, *, notify: Callable[..., object] | None = None) -> VerifyReport:
    """Before READY: repair the unfinished segments of the last flight if it never landed (no
    index.json).

    ``notify(**fields)`` (an ``sdnotify.Notifier.notify``) gets ``EXTEND_TIMEOUT_USEC`` when the
    segments to repair are large enough that reading them could take more than a few seconds on a
    slow card.
    """
    root = Path(root)
    report = VerifyReport(path=str(root))
    flights = _flights(root)
    if not flights or (flights[-1] / INDEX_NAME).exists():
        return report
    last = flights[-1]
    todo = unfinished_segments(last)
    nbytes = sum(p.stat().st_size for p in todo if p.exists())
    expect_s = nbytes / _SLOW_READ_BPS
    if notify is not None and expect_s > _EXTEND_AFTER_S:
        notify(EXTEND_TIMEOUT_USEC=int((expect_s * 2 + 30) * 1e6),
               STATUS=f"repairing {len(todo)} unfinished segments ({nbytes >> 20} MB) "
                      f"of flight {last.name}")
    verify_segments(report, todo, repair=True)
    log_losses(report, last, report.losses)
    if report.exit_code:
        log.warning("store recovery before READY: flight %s, %d segments repaired, "
                    "%d losses recorded, exit %d",
                    last.name, len(report.repaired), len(report.losses), report.exit_code)
    return report


def verify_later(root: Path, flights: Sequence[str] | None = None, *,
                 on_done: Callable[[VerifyReport], None] | None = None,
                 on_start: Callable[[str], None] | None = None,
                 on_end: Callable[[str], None] | None = None) -> threading.Thread:
    """Start a background thread that verifies (and repairs) ``flights`` (default: every flight now
    in the store) -- flights created later are never touched, so the one being written is safe.

    Each flight is read once; only a flight with something to repair is repaired, bracketed by
    ``on_start(flight)`` / ``on_end(flight)`` (``on_end`` even when the repair failed): a repair
    rewrites files in place, so the board must not serve that flight meanwhile. A sound flight is
    never held back."""
    root = Path(root)
    names = list(flights) if flights is not None else [p.name for p in _flights(root)]

    def run() -> None:
        for name in names:
            try:
                report = verify(root / name, repair=False)
                if report.repairable:
                    if on_start is not None:
                        on_start(name)
                    try:
                        report = verify(root / name, repair=True)
                    finally:
                        if on_end is not None:
                            on_end(name)
            except Exception as exc:  # a background check must never take the daemon down
                log.error("background verify of flight %s failed: %s", name, exc)
                continue
            if report.exit_code:
                log.warning("background verify: flight %s exit %d (%d repaired, %d unrecoverable)",
                            name, report.exit_code, len(report.repaired), len(report.unrecoverable))
            if on_done is not None:
                on_done(report)

    thread = threading.Thread(target=run, name="camctl-verify-later", daemon=True)
    thread.start()
    return thread
