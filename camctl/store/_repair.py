"""Repair in place: a torn or damaged segment becomes a finished MCAP without copying it.

Every CRC-valid chunk stays where it is. Damaged bytes in the data section are covered, in place, by
a LOST record (:data:`camctl.store._records.LOST_OPCODE`, skipped by every MCAP reader) that says
what was lost; a damaged magic or header is rewritten; a chunk whose opcode byte was hit gets it
back; the file is cut at the end of its data section and the summary and footer are appended. That
needs the summary's few kilobytes, not a free segment, so it works on a full card (the cut tail
usually frees more than the summary takes).

Atomic against a power cut without a second file: each step writes only bytes that the salvage
scanner already ignores (damage, a torn tail) or that it reads as the same chunks (the magic, a
chunk's opcode), so a file cut at any point of the repair -- in any order of its pages -- scans to
the same chunks as before, and the next repair finishes the job.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import struct
from collections.abc import Callable
from pathlib import Path

from mcap.data_stream import RecordBuilder
from mcap.opcode import Opcode
from mcap.records import ChunkIndex, Header

from camctl.common.records import LossRecord
from camctl.store._records import (
    CHUNK_HEADER_LEN,
    LIBRARY,
    LOST_MARKER_MIN,
    MAGIC,
    MSG_HEAD,
    PROFILE,
    Layout,
    lost_marker,
)
from camctl.store._salvage import Scan, ScannedChunk
from camctl.store._segment import finish_tail
from camctl.store.reserve import find_reserve, is_full
from camctl.store.sources import KINDS

__all__ = ["describe_losses", "plan_in_place", "repair_in_place"]

_TAIL_READ_MAX = 64 << 20
# taken from the reserve with a repair's tail: the index.json and event-log segment that follow it
_BOOKKEEPING = 64 << 10
# posix_fallocate(3): EINVAL "the underlying filesystem does not support the operation" (glibc
# emulates it where fallocate(2) says EOPNOTSUPP; a FUSE filesystem may answer ENOSYS)
_CANNOT_PREALLOCATE = (errno.EINVAL, errno.EOPNOTSUPP, errno.ENOSYS)


def _header(length: int) -> bytes | None:
    """A Header record of exactly ``length`` bytes (the library name padded), or None if it cannot
    fit."""
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


def _frame_channels(layout: Layout) -> set[int]:
    """The channels of a source's records (a camera's: image and still); none for the events."""
    kind = KINDS.get(layout.kind)
    return kind.record_channels(layout) if kind is not None else set()


def _tail_seqs(path: Path, start: int, end: int, channels: set[int]) -> list[int]:
    """Seqs of the frames whose records begin in a torn tail (an uncommitted chunk): best effort."""
    try:
        with open(path, "rb") as f:
            f.seek(start)
            buf = f.read(min(end - start, _TAIL_READ_MAX))
    except OSError:
        return []
    if len(buf) < CHUNK_HEADER_LEN or buf[0] != Opcode.CHUNK:
        return []
    # records start after the chunk header (empty compression field)
    p, seqs = CHUNK_HEADER_LEN, set()
    while p + MSG_HEAD.size <= len(buf):
        op, length, channel, seq, _, _ = MSG_HEAD.unpack_from(buf, p)
        if op != Opcode.MESSAGE or length < 22:
            break
        if channel in channels:
            seqs.add(seq)
        p += 9 + length
    return sorted(seqs)


def describe_losses(path: Path, scan: Scan, layout: Layout) -> list[LossRecord]:
    """What repairing ``scan`` cuts or skips, one event-log record per byte range: the segment
    (``camera/ 000001.mcap``), the range, why, and the frames it cost -- the seqs whose records
    begin in a torn tail, and for any range the last seq kept before it and the first after it (the
    frames between are gone)."""
    path = Path(path)
    chans = _frame_channels(layout)
    kept = [(c.start, c.end, [m.sequence for m in c.messages if m.channel_id in chans])
            for c in scan.chunks]
    out = []
    for s, e in scan.lost:
        before = [q for _, ce, seqs in kept if ce <= s for q in seqs]
        after = [q for cs, _, seqs in kept if cs >= e for q in seqs]
        tail = s == scan.torn_at
        torn = tail and not scan.tail_damaged
        reason = ("bad magic, rewritten" if e <= len(MAGIC) else
                  "summary damaged, rewritten (no frame in it)" if scan.data_end_at is not None
                  and s >= scan.data_end_at else
                  "torn tail: written after the last commit, never durable" if torn
                  else "damaged: fails its check")
        out.append(LossRecord(
            camera=layout.name, segment=f"{path.parent.name}/{path.name}", range=(s, e),
            reason=reason, seq_after=max(before) if before else None,
            seq_before=min(after) if after else None,
            seqs=tuple(_tail_seqs(path, s, e, chans)) if tail else None))
    return out


def _lost_info(loss: LossRecord | None, start: int, end: int) -> dict:
    """What a LOST record says about its range: the loss record without its kind and name."""
    if loss is None:
        return {"range": [start, end]}
    return {k: v for k, v in loss.encode().items() if k not in ("kind", "name")}


def _lost_record(info: dict) -> bytes:
    """A whole LOST record holding ``info`` (for a cut tail: the record is all that is left of
    it)."""
    body = json.dumps(info, sort_keys=True, separators=(",", ":"))
    return lost_marker(LOST_MARKER_MIN + 4 + len(body), info)


def plan_in_place(scan: Scan, losses: list[LossRecord] | None = None
                  ) -> list[tuple[int, bytes]] | None:
    """The in-place writes (offset, bytes) that make the data section readable, or None when
    impossible (a damaged range too short to hold a LOST record, or a damaged header with no room
    for a new one). ``losses`` (from :func:`describe_losses`) is what each LOST record says about
    its range."""
    plan: list[tuple[int, bytes]] = []
    if not scan.magic_ok:
        plan.append((0, MAGIC))
    cut = _cut_at(scan)
    need_header = scan.header is None
    said = {loss.range: loss for loss in losses or []}
    for s, e in sorted((s, e) for s, e in scan.lost if s >= len(MAGIC) and e <= cut):
        info = _lost_info(said.get((s, e)), s, e)
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


def _message_indexes(chunk: ScannedChunk, at: int) -> tuple[dict[int, int], bytes]:
    """MessageIndex records for ``chunk`` rebuilt from its messages, to be written at offset ``at``:
    (channel -> record offset, the records). Foxglove's indexed reader reads no message of a chunk
    whose index lists no MessageIndex records (seen with @mcap/core 2.2.2), so a damaged index is
    rebuilt."""
    entries: dict[int, list[int]] = {}
    for msg, off in zip(chunk.messages, chunk.offsets, strict=True):
        entries.setdefault(msg.channel_id, []).extend((msg.log_time, off))
    out, where = bytearray(), {}
    for channel_id, flat in sorted(entries.items()):
        where[channel_id] = at + len(out)
        out += struct.pack(f"<BQHI{len(flat)}Q", Opcode.MESSAGE_INDEX, 6 + 8 * len(flat),
                           channel_id, 8 * len(flat), *flat)
    return where, bytes(out)


def _chunk_indexes(scan: Scan, at: int) -> tuple[list[ChunkIndex], bytes]:
    """Chunk indexes for the summary, and the MessageIndex records rebuilt (to be written at ``at``)
    for the chunks whose own are damaged or missing."""
    out, rebuilt = [], bytearray()
    for c in scan.chunks:
        channels = {m.channel_id for m in c.messages}
        offsets, length = dict(c.index_offsets), c.index_len
        if set(offsets) != channels:  # a partly damaged message index is not trusted: rebuilt
            offsets, records = _message_indexes(c, at + len(rebuilt))
            rebuilt += records
            length = len(records)
        out.append(ChunkIndex(
            message_start_time=c.start_ns, message_end_time=c.end_ns, chunk_start_offset=c.start,
            chunk_length=c.end - c.start, message_index_offsets=offsets,
            message_index_length=length,
            compression="", compressed_size=c.data_len, uncompressed_size=c.data_len))
    return out, bytes(rebuilt)


def repair_in_place(path: Path, scan: Scan, layout: Layout, *,
                    losses: list[LossRecord] | None = None,
                    after_fix: Callable[[], None] | None = None) -> int | None:
    """Repair ``path`` in place (see the module doc); return the messages kept, or None when the
    damage does not allow it (then nothing was written). A torn tail cut off is described by a LOST
    record where it was, so the finished file itself says what it lost. ``after_fix()`` is a test
    seam called after the in-place fixes and the cut, before the summary is appended.
    """
    plan = plan_in_place(scan, losses)
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
    marker = b""
    if scan.torn_at is not None and scan.torn_at == cut and cut < scan.size:
        said = [r for r in losses or [] if r.range is not None and r.range[0] == cut]
        marker = _lost_record(_lost_info(said[0] if said else None, cut, scan.size))
    indexes, rebuilt = _chunk_indexes(scan, cut + len(marker))
    at = cut + len(marker) + len(rebuilt)
    tail = marker + rebuilt + finish_tail(layout, at, indexes, counts, n, start_ns, end_ns)
    fd = os.open(path, os.O_RDWR)
    try:
        for off, data in plan:
            _pwrite_all(fd, data, off)
        # frees the torn tail first: the summary may need its room on a full disk
        os.ftruncate(fd, cut)
        if after_fix is not None:
            after_fix()
        _allocate_tail(fd, path, cut, len(tail))
        _pwrite_all(fd, tail, cut)
        os.fsync(fd)
    finally:
        os.close(fd)
    return kept


def _allocate_tail(fd: int, path: Path, cut: int, n: int) -> None:
    """Make sure the ``n`` bytes after ``cut`` can be written before writing any of them: the cut
    tail often frees less than a long segment's summary needs (60 chunks: ~6 kB), and a disk filled
    by anyone has no byte to spare. ``posix_fallocate`` the range (see :mod:`camctl.store.reserve`
    for why that guarantees the writes), taking the room from the store's reserve when the disk
    has none; on failure the file is cut back to ``cut`` -- it scans as before (no half-written
    summary the plain reader cannot open) -- and OSError(ENOSPC) says how much was missing.

    The reserve gives a little more than the tail (:data:`_BOOKKEEPING`): the repair is followed by
    the flight's ``index.json`` and the event-log segment that records what was cut."""
    reserve = find_reserve(path)
    if reserve is not None:
        reserve.make_room(n + _BOOKKEEPING)
    for attempt in (1, 2):
        try:
            os.posix_fallocate(fd, cut, n)
            return
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, cut)  # ext4 keeps a partial allocation, and the larger size
            if exc.errno in _CANNOT_PREALLOCATE:
                return  # a filesystem that cannot preallocate: written as before, unguarded
            if not is_full(exc):
                raise
            if attempt == 2 or reserve is None or not reserve.release(n + _BOOKKEEPING):
                where = "its store's reserve is used up" if reserve is not None else \
                    "the store has no reserve"
                raise OSError(exc.errno, f"no room for the summary ({n} bytes) on a full disk: "
                              f"{where}; free some space and repair again", str(path)) from None


def _pwrite_all(fd: int, data: bytes, offset: int) -> None:
    view = memoryview(data)
    while view:
        w = os.pwrite(fd, view, offset)
        view, offset = view[w:], offset + w
