"""Repair in place: a torn or damaged segment becomes a finished MCAP without copying it.

Every CRC-valid chunk stays where it is. Damaged bytes in the data section are covered, in place, by
a LOST record (:data:`camctl.store._records.LOST_OPCODE`, skipped by every MCAP reader) that says
what was lost; a damaged magic or header is rewritten; a chunk whose opcode byte was hit gets it
back; the file is cut at the end of its data section and the summary and footer are appended. That
needs the summary's few kilobytes, not a free segment, so it works on a full card (the cut tail
usually frees more than the summary takes).

MessageIndex records that do not match their chunk (:attr:`ScannedChunk.index_bad`) are rewritten
in place when the rebuilt ones have the same length (a flipped entry), else covered by a LOST record
and rebuilt after the data; the summary's chunk indexes point at the rebuilt ones.
:func:`describe_losses` says what each lost range cost, by exact seq (from the index's evidence and
the record headers that still parse), and why.

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
from collections.abc import Callable, Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any

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
from camctl.store.sources import KINDS, SensorKind

__all__ = ["NEVER_DURABLE", "TORN_COMMIT", "costs_frames", "describe_losses", "plan_in_place",
           "repair_in_place", "segment_seqs", "seqs_of_ranges"]

_TAIL_READ_MAX = 64 << 20
# taken from the reserve with a repair's tail: the index.json and event-log segment that follow it
_BOOKKEEPING = 64 << 10
# posix_fallocate(3): EINVAL "the underlying filesystem does not support the operation" (glibc
# emulates it where fallocate(2) says EOPNOTSUPP; a FUSE filesystem may answer ENOSYS)
_CANNOT_PREALLOCATE = (errno.EINVAL, errno.EOPNOTSUPP, errno.ENOSYS)
# the reasons of the losses that cost no durable frame, in a segment still open at a cut (no index
# lists it): its torn tail, and its last commit when that is one whole chunk failing its check (a
# cut during that commit's writeback, before its fsync returned: tests/test_powercut.py 'pages')
NEVER_DURABLE = "torn tail: written after the last commit, never durable"
TORN_COMMIT = "torn commit: cut before its fsync returned, never durable"


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


def _range_seqs(path: Path, start: int, end: int, channels: set[int],
                known: set[int], meta: set[int] | None = None,
                samples: dict[int, tuple[int, bool]] | None = None) -> set[int]:
    """Seqs (on ``channels``) of the frames whose Message records begin in ``start..end`` and
    whose headers still parse: a torn tail's uncommitted chunk, a chunk whose CRC or length fails.
    Record after record from the chunk's first; where the walk breaks (the damage), on at the next
    header that parses (a ``known`` channel, a length that lands on another record or the range's
    end). Every frame has two messages (image and meta) with its seq, so one flipped header hides
    none. Best effort; the index's evidence adds what it cannot see.

    The two records of a frame vote: a ``meta`` channel's record says its seq twice (its header and
    its JSON body); where the two differ (a flipped bit in one), the one the frame's image record
    also names wins; and a seq only one image header names is dropped when it is one bit away from
    a seq a meta record confirms without its image (that image header was hit: 16 read as 18).

    ``samples`` (a sensor's segment, no meta channel) is filled with each seq's sample count and
    whether it is exact: the ``batch.n`` its first sample's JSON says, else (that sample's body cut
    or hit) the records that name it, at least that many."""
    try:
        with open(path, "rb") as f:
            f.seek(start)
            buf = f.read(min(max(end - start, 0), _TAIL_READ_MAX))
    except OSError:
        return set()
    n = len(buf)
    votes: dict[int, int] = {}  # seq -> records that name it (a frame's image and meta: 2)
    confirmed: set[int] = set()  # seqs a meta record's header and JSON body agree on
    disputed: list[tuple[int, int]] = []  # a meta record's (header seq, body seq) that differ
    heads = (Opcode.MESSAGE, Opcode.MESSAGE_INDEX, Opcode.CHUNK)
    at: dict[int, int] = {}  # record offset -> the seq its header says (file order)
    heads_n: dict[int, int] = {}  # seq -> the batch.n its first sample says (sensors)

    def vote(q: int, channel: int, seq: int, nxt: int) -> None:
        at[q] = seq
        if samples is not None:
            said_n = _json_batch_n(buf[q + MSG_HEAD.size:min(nxt, n)])
            if said_n is not None:
                heads_n[seq] = said_n
        if meta and channel in meta:
            said = _json_seq(buf[q + MSG_HEAD.size:min(nxt, n)])
            if said is not None and said != seq:
                disputed.append((seq, said))  # one of the two was hit: the image decides
                return
            if said is not None:
                confirmed.add(seq)
        votes[seq] = votes.get(seq, 0) + 1

    def header(q: int, *, strict: bool) -> int | None:
        """The end of a plausible Message record at ``q`` (None: not one)."""
        if q + MSG_HEAD.size > n:
            return None
        op, length, channel, seq, _, _ = MSG_HEAD.unpack_from(buf, q)
        if op != Opcode.MESSAGE or length < 22 or channel not in known:
            return None
        nxt = q + 9 + length
        if strict and (nxt > n or (nxt < n and buf[nxt] not in heads)):
            return None
        if channel in channels:
            vote(q, channel, seq, nxt)
        return nxt

    q = CHUNK_HEADER_LEN if buf[:1] == bytes([Opcode.CHUNK]) else 0
    while q < n:
        last = q  # the start of the last record that parsed
        nxt = header(q, strict=False)
        while nxt is not None and nxt < n:  # the walk: record after record
            last, q = q, nxt
            nxt = header(q, strict=False)
        if nxt == n:
            break
        # a record that does not parse, or one whose length runs past the range (cut there, or
        # its length field hit): on at the next header that parses after the last record that
        # did -- a hit length sends the walk into the middle of later records, past frames whose
        # headers are whole
        q = buf.find(bytes([Opcode.MESSAGE]), (last if nxt is None else q) + 1)
        while q >= 0 and header(q, strict=True) is None:
            q = buf.find(bytes([Opcode.MESSAGE]), q + 1)
        if q < 0:
            break
        q = header(q, strict=True) or n
    for head, said in disputed:  # the one of the two an image record names, else the header
        seq = said if said in votes and head not in votes else head
        votes[seq] = votes.get(seq, 0) + 1
    lone = {q for q, k in votes.items() if k == 1 and q not in confirmed}
    alone = {q for q, k in votes.items() if k == 1 and q in confirmed}  # a meta without its image
    flipped = {q for q in lone if any(bin(q ^ c).count("1") == 1 for c in alone)}
    if not meta:
        flipped |= _out_of_order([at[q] for q in sorted(at)])
    if samples is not None:
        named = [at[q] for q in sorted(at)]
        for q in set(votes) - flipped:
            samples[q] = (heads_n[q], True) if q in heads_n else (named.count(q), False)
    return set(votes) - flipped


def _out_of_order(seqs: list[int]) -> set[int]:
    """Seqs a flipped header made up, in a source whose records carry their seq in headers only
    (a sensor's samples: a batch is N messages sharing one seq, written in seq order): a seq every
    record of which is out of order -- outside its two neighbours' seqs when those agree on the
    order, the first above the second, the last below the one before it, or the last one bit above
    the seq before it and not the next one (a batch's sample hit; a new batch is one more)."""
    n = len(seqs)
    flagged: dict[int, int] = {}
    for i, s in enumerate(seqs):
        prev = seqs[i - 1] if i > 0 else None
        nxt = seqs[i + 1] if i + 1 < n else None
        if prev is not None and nxt is not None:
            bad = prev <= nxt and not prev <= s <= nxt
        elif nxt is not None:
            bad = s > nxt
        elif prev is not None:
            bad = s < prev or (s > prev + 1 and bin(s ^ prev).count("1") == 1)
        else:
            bad = False
        if bad:
            flagged[s] = flagged.get(s, 0) + 1
    return {s for s, k in flagged.items() if k == seqs.count(s)}


def _json_batch_n(body: bytes) -> int | None:
    """The ``batch.n`` a sensor batch's first sample says (None: not a first sample, or damaged):
    camctl.store.sources.SensorKind.write."""
    if b'"batch"' not in body:
        return None
    try:
        n = json.loads(body)["batch"]["n"]
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        return None
    return n if isinstance(n, int) and not isinstance(n, bool) and 0 < n < 1 << 24 else None


def _json_seq(body: bytes) -> int | None:
    """The ``seq`` a meta record's JSON body says (None: the body does not parse or say one)."""
    try:
        seq = json.loads(body).get("seq")
    except (ValueError, AttributeError, UnicodeDecodeError):
        return None
    return seq if isinstance(seq, int) and not isinstance(seq, bool) else None


def segment_seqs(scan: Scan, layout: Layout) -> set[int]:
    """The seqs of the frames (records) ``scan`` can read: what the segment holds now."""
    chans = _frame_channels(layout)
    return {m.sequence for c in scan.chunks for m in c.messages if m.channel_id in chans}


def seqs_of_ranges(ranges: object) -> set[int]:
    """``[[a, b], ...]`` (an index entry's ``seq_ranges``, inclusive) -> the seqs; bad input ->
    none."""
    out: set[int] = set()
    if isinstance(ranges, list):
        for r in ranges:
            if isinstance(r, list) and len(r) == 2 and all(isinstance(x, int) for x in r):
                out.update(range(r[0], r[1] + 1))
    return out


def costs_frames(loss: LossRecord) -> bool:
    """True for a loss of durable records: not a torn tail that was never durable, and it cost
    frames (or it is an old record that does not say which)."""
    return loss.reason not in (NEVER_DURABLE, TORN_COMMIT) and (loss.seqs is None
                                                                 or bool(loss.seqs))


def _size(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 100_000 else f"{n} bytes"


def describe_losses(path: Path, scan: Scan, layout: Layout, *, indexed: dict | None = None,
                    recorded: Iterable[int] = ()) -> list[LossRecord]:
    """What repairing ``scan`` cuts or skips, one event-log record per byte range: the segment
    (``camera/ 000001.mcap``), the range, why, and the exact seqs of the frames it cost (``seqs``;
    ``seq_after`` / ``seq_before``: the last seq kept before the range and the first after it).

    ``indexed`` is the segment's entry in the flight's index.json, if it has one: a segment the
    index lists as finished held durable frames (its ``seq_ranges``), so a cut there is a loss of
    durable frames ("finished segment cut short", "finished segment zeroed"), never a torn tail,
    and the seqs the index recorded that the scan no longer finds (less ``recorded``: those an
    earlier loss record already names) are the range's. Without an index the seqs are those whose
    record headers still parse in the range; a torn tail of a segment still open at the cut was
    never durable."""
    path = Path(path)
    chans = _frame_channels(layout)
    # a sensor's loss also says the samples its seqs held (the ledger's unit): extra["samples"]
    sensor = isinstance(KINDS.get(layout.kind), SensorKind)
    counts: dict[int, tuple[int, bool]] = {}
    kept = [(c.start, c.end, [m.sequence for m in c.messages if m.channel_id in chans])
            for c in scan.chunks]
    finished = bool(indexed and (indexed.get("finished") or indexed.get("seq_ranges")))
    isize = indexed.get("finished_size", indexed.get("size")) if finished and indexed else None
    isize = isize if isinstance(isize, int) else None
    missing = (seqs_of_ranges(indexed.get("seq_ranges")) if finished and indexed else set())
    missing -= {q for _, _, seqs in kept for q in seqs} | set(recorded)
    zeroed = finished and scan.zero_magic and not scan.chunks
    ranges = sorted(scan.lost)
    if zeroed:
        ranges = [(0, max(scan.size, isize or 0))]
    elif finished and isize is not None and isize > scan.size and scan.torn_at is None:
        ranges.append((scan.size, isize))  # cut on a record boundary: the bytes past the end
    out = []
    for s, e in ranges:
        before = [q for _, ce, seqs in kept if ce <= s for q in seqs]
        after = [q for cs, _, seqs in kept if cs >= e for q in seqs]
        tail = s == scan.torn_at or s >= scan.size
        if e <= len(MAGIC):
            seqs: set[int] = set()
        else:
            lo = max(before) if before else -1
            hi = min(after) if after else None
            # every channel of a source carries its record's seq (a camera's meta: its frame's),
            # so a flipped seq in one header is outvoted by the bounds the kept chunks give
            known = {c.id for c in layout.channels}
            metas = {c.id for c in layout.channels if c.topic.endswith("/meta")}
            seqs = {q for q in _range_seqs(path, s, min(e, scan.size), known, known, metas,
                                           counts if sensor else None)
                    if q > lo and (hi is None or q < hi)} - set(recorded) if chans else set()
            seqs |= {q for q in missing if q > lo and (hi is None or q < hi)}
        missing -= seqs
        if e <= len(MAGIC):
            reason = "bad magic, rewritten"
        elif scan.data_end_at is not None and s >= scan.data_end_at:
            reason = "summary damaged, rewritten (no frame in it)"
        elif zeroed:
            reason = "finished segment zeroed"
        elif finished and tail and isize is not None and scan.size < isize:
            reason = f"finished segment cut short (indexed {_size(isize)}, now {_size(scan.size)})"
        elif finished and tail:
            reason = "finished segment damaged at its end"
        elif tail and not scan.tail_damaged and not scan.tail_magic:
            # (a file ending in the MCAP magic was finished: nothing in it is a cut's tail)
            reason = NEVER_DURABLE
        elif tail and scan.tail_records == 1 and not scan.tail_magic:
            reason = TORN_COMMIT
        else:
            reason = "damaged: fails its check"
        out.append(LossRecord(
            camera=layout.name, segment=f"{path.parent.name}/{path.name}", range=(s, e),
            reason=reason, seq_after=max(before) if before else None,
            seq_before=min(after) if after else None, seqs=tuple(sorted(seqs)),
            extra=_samples_of(seqs, counts) if sensor else {}))
    if missing:  # recorded as finished, gone, and no damaged range to blame: the file was replaced
        out.append(LossRecord(
            camera=layout.name, segment=f"{path.parent.name}/{path.name}",
            reason="frames the index recorded are not in the finished segment",
            seqs=tuple(sorted(missing))))
    if sensor and finished and indexed and not recorded:
        kept_samples = sum(len(seqs) for _, _, seqs in kept)  # a sensor's message is a sample
        _index_samples(out, counts, indexed.get("samples"), kept_samples)
    return out


def _index_samples(out: list[LossRecord], counts: dict[int, tuple[int, bool]],
                   indexed: object, kept: int) -> None:
    """A finished sensor segment's losses cost exactly the samples its index entry counted less
    those the file still holds: the one loss record whose count the headers cannot say (a seq
    only the index names, a first sample cut) gets the rest, so the ledger's books stay exact."""
    if not isinstance(indexed, int) or isinstance(indexed, bool) or indexed < kept:
        return

    def exact(r: LossRecord) -> bool:
        return all(q in counts and counts[q][1] for q in r.seqs or ())

    unsure = [i for i, r in enumerate(out) if not exact(r)]
    if len(unsure) != 1:
        return
    others = sum(int(r.extra.get("samples", 0)) for i, r in enumerate(out) if i != unsure[0])
    r = out[unsure[0]]
    left = indexed - kept - others
    if left >= len(r.seqs or ()):
        extra = {k: v for k, v in r.extra.items() if k != "samples_at_least"}
        out[unsure[0]] = replace(r, extra={**extra, "samples": left})


def _samples_of(seqs: set[int], counts: dict[int, tuple[int, bool]]) -> dict[str, Any]:
    """``{"samples": n}``: the samples a sensor loss's seqs held (the ledger's unit), with
    ``"samples_at_least": true`` when a batch's first sample was cut before its ``batch.n`` (then
    n counts the samples whose records are there); ``{}`` when a seq only the index names has no
    count (the ledger then counts seqs)."""
    if not all(q in counts for q in seqs):
        return {}
    out: dict[str, Any] = {"samples": sum(counts[q][0] for q in seqs)}
    if not all(counts[q][1] for q in seqs):
        out["samples_at_least"] = True
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


def _fitting(info: dict, length: int) -> dict:
    """The most of ``info`` a LOST record of ``length`` bytes holds: all of it, else its reason
    and seqs, else its seqs (a small damaged range still says which frames it cost, or none)."""
    room = length - LOST_MARKER_MIN - 4
    for keep in (None, ("reason", "seqs", "camera", "segment"), ("reason", "seqs"), ("seqs",)):
        got = info if keep is None else {k: info[k] for k in keep if k in info}
        if len(json.dumps(got, sort_keys=True, separators=(",", ":"))) <= room:
            return got
    return info


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
        plan.append((s, lost_marker(e - s, _fitting(info, e - s))))
    if need_header:
        return None
    plan.extend((c.start, bytes([Opcode.CHUNK])) for c in scan.chunks if not c.opcode_ok)
    for c in scan.chunks:
        if c.index_bad:  # rewritten where it is, or covered and rebuilt after the data
            fixed = _index_in_place(c)
            plan.append((c.end, fixed[1]) if fixed is not None else (c.end, lost_marker(
                c.index_len, {"range": [c.end, c.end + c.index_len], "seqs": [],
                              "reason": "message index does not match its chunk, rebuilt"})))
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


def _index_in_place(chunk: ScannedChunk) -> tuple[dict[int, int], bytes] | None:
    """A chunk's MessageIndex records that do not match it (:attr:`ScannedChunk.index_bad`),
    rebuilt to go where they are (same length: a flipped entry), or None when they must go after
    the data instead."""
    if not chunk.index_bad:
        return None
    where, records = _message_indexes(chunk, chunk.end)
    return (where, records) if len(records) == chunk.index_len else None


def _chunk_indexes(scan: Scan, at: int) -> tuple[list[ChunkIndex], bytes]:
    """Chunk indexes for the summary, and the MessageIndex records rebuilt (to be written at ``at``)
    for the chunks whose own are damaged, wrong or missing (wrong ones of the same length are
    rewritten in place by :func:`plan_in_place`)."""
    out, rebuilt = [], bytearray()
    for c in scan.chunks:
        channels = {m.channel_id for m in c.messages}
        offsets, length = dict(c.index_offsets), c.index_len
        fixed = _index_in_place(c)
        if fixed is not None:
            offsets, length = fixed[0], len(fixed[1])
        elif c.index_bad or set(offsets) != channels:
            # a partly damaged or wrong message index is not trusted: rebuilt
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
    else:  # a finished segment cut on a record boundary: the file says what its index recorded
        past = [r for r in losses or [] if r.range is not None and r.range[0] >= scan.size]
        if past:
            marker = _lost_record(_lost_info(past[0], *past[0].range))
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
