"""Repair in place: a torn or damaged segment becomes a finished MCAP without copying it.

Every CRC-valid chunk stays where it is. Damaged bytes in the data section are covered, in place, by a LOST
record (:data:`camctl.store._records.LOST_OPCODE`, skipped by every MCAP reader) that says what was lost; a
damaged magic or header is rewritten; a chunk whose opcode byte was hit gets it back; the file is cut at the
end of its data section and the summary and footer are appended. That needs the summary's few kilobytes,
not a free segment, so it works on a full card (the cut tail usually frees more than the summary takes).

Atomic against a power cut without a second file: each step writes only bytes that the salvage scanner
already ignores (damage, a torn tail) or that it reads as the same chunks (the magic, a chunk's opcode), so
a file cut at any point of the repair -- in any order of its pages -- scans to the same chunks as before,
and the next repair finishes the job.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from mcap.data_stream import RecordBuilder
from mcap.opcode import Opcode
from mcap.records import ChunkIndex, Header

from camctl.store._records import LIBRARY, LOST_MARKER_MIN, MAGIC, PROFILE, Layout, lost_marker
from camctl.store._salvage import Scan
from camctl.store._segment import finish_tail

__all__ = ["plan_in_place", "repair_in_place"]


def _header(length: int) -> bytes | None:
    """A Header record of exactly ``length`` bytes (the library name padded), or None if it cannot fit."""
    base = len(_header_bytes(LIBRARY))
    if length < base:
        return None
    return _header_bytes(LIBRARY + " " * (length - base))


def _header_bytes(library: str) -> bytes:
    rec = RecordBuilder()
    Header(PROFILE, library).write(rec)
    return rec.end()


def _cut_at(scan: Scan) -> int:
    if scan.data_end_at is not None:
        return scan.data_end_at
    return scan.torn_at if scan.torn_at is not None else scan.size


def plan_in_place(scan: Scan, reason: str = "damaged") -> list[tuple[int, bytes]] | None:
    """The in-place writes (offset, bytes) that make the data section readable, or None when impossible
    (a damaged range too short to hold a LOST record, or a damaged header with no room for a new one)."""
    plan: list[tuple[int, bytes]] = []
    if not scan.magic_ok:
        plan.append((0, MAGIC))
    cut = _cut_at(scan)
    need_header = scan.header is None
    for s, e in sorted((s, e) for s, e in scan.lost if s >= len(MAGIC) and e <= cut):
        info = {"lost": [s, e], "reason": reason}
        if need_header and s == len(MAGIC):
            need_header = False
            base = len(_header_bytes(LIBRARY))
            rest = e - s - base
            if rest < LOST_MARKER_MIN:
                head = _header(e - s)
                if head is None:
                    return None
                plan.append((s, head))
                continue
            plan.append((s, _header_bytes(LIBRARY)))
            s += base
        if e - s < LOST_MARKER_MIN:
            return None
        plan.append((s, lost_marker(e - s, info)))
    if need_header:
        return None
    plan.extend((c.start, bytes([Opcode.CHUNK])) for c in scan.chunks if not c.opcode_ok)
    return plan


def _chunk_indexes(scan: Scan) -> list[ChunkIndex]:
    out = []
    for c in scan.chunks:
        channels = {m.channel_id for m in c.messages}
        whole = set(c.index_offsets) == channels  # a partly damaged message index is left out, not trusted
        out.append(ChunkIndex(
            message_start_time=c.start_ns, message_end_time=c.end_ns, chunk_start_offset=c.start,
            chunk_length=c.end - c.start, message_index_offsets=dict(c.index_offsets) if whole else {},
            message_index_length=c.index_len if whole else 0, compression="", compressed_size=c.data_len,
            uncompressed_size=c.data_len))
    return out


def repair_in_place(path: Path, scan: Scan, layout: Layout, *, reason: str = "damaged",
                    after_fix: Callable[[], None] | None = None) -> int | None:
    """Repair ``path`` in place (see the module doc); return the messages kept, or None when the damage
    does not allow it (then nothing was written). ``after_fix()`` is a test seam called after the in-place
    fixes and the cut, before the summary is appended.
    """
    plan = plan_in_place(scan, reason)
    if plan is None:
        return None
    known = {c.id for c in layout.channels}
    counts: dict[int, int] = {}
    start_ns = end_ns = 0
    n = 0
    for c in scan.chunks:
        for m in c.messages:
            counts[m.channel_id] = counts.get(m.channel_id, 0) + 1
            start_ns = m.log_time if n == 0 else min(start_ns, m.log_time)
            end_ns = m.log_time if n == 0 else max(end_ns, m.log_time)
            n += 1
    kept = sum(v for k, v in counts.items() if k in known)
    cut = _cut_at(scan)
    tail = finish_tail(layout, cut, _chunk_indexes(scan), counts, n, start_ns, end_ns)
    fd = os.open(path, os.O_RDWR)
    try:
        for off, data in plan:
            _pwrite_all(fd, data, off)
        os.ftruncate(fd, cut)  # frees the torn tail first: the summary may need its room on a full disk
        if after_fix is not None:
            after_fix()
        _pwrite_all(fd, tail, cut)
        os.fsync(fd)
    finally:
        os.close(fd)
    return kept


def _pwrite_all(fd: int, data: bytes, offset: int) -> None:
    view = memoryview(data)
    while view:
        w = os.pwrite(fd, view, offset)
        view, offset = view[w:], offset + w
