"""The salvage scanner: reads a possibly torn or bit-flipped segment record by record.

:func:`scan_segment` walks the record framing (opcode u8 + length u64 LE), keeps every chunk whose
CRC32 checks, reports the byte ranges it could not use, and resynchronises on the next CRC-valid
chunk after garbage. Damage anywhere -- the magic and the header included -- costs only the bytes it
hits: a file whose magic is flipped is still scanned from byte 8. A range an earlier repair marked
as lost (a ``LOST_OPCODE`` record, see :mod:`camctl.store._repair`) is reported in
:attr:`Scan.marked`, not as new damage.
"""

from __future__ import annotations

import mmap
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mcap.data_stream import ReadDataStream
from mcap.opcode import Opcode
from mcap.records import Channel, Chunk, Footer, Header, Message, Schema

from camctl.store._records import (
    CHUNK_HEADER_LEN,
    LOST_OPCODE,
    MAGIC,
    MSG_HEAD,
    OPEN_CHUNK,
    parse_lost_marker,
)

__all__ = ["Scan", "ScannedChunk", "scan_segment"]


@dataclass
class ScannedChunk:
    """A CRC-valid chunk: its byte range in the file and its messages."""

    start: int
    end: int
    messages: list[Message]
    start_ns: int = 0
    end_ns: int = 0
    data_len: int = 0
    # False: a CRC-valid chunk whose opcode byte was hit (repair rewrites it)
    opcode_ok: bool = True
    # channel -> its MessageIndex record offset
    index_offsets: dict[int, int] = field(default_factory=dict)
    index_len: int = 0  # bytes of the MessageIndex records right after the chunk
    offsets: list[int] = field(default_factory=list)  # each message's offset in the chunk's records
    # a MessageIndex record after it does not match its messages (MCAP has no CRC over message
    # indexes: a bit flip there misleads index-following readers such as Foxglove's)
    index_bad: bool = False


@dataclass
class Scan:
    """What :func:`scan_segment` found in one file."""

    path: Path
    size: int
    magic_ok: bool = False
    # the magic's page never reached the disk (zeros): a cut before the first commit
    zero_magic: bool = False
    empty: bool = False  # 0 bytes or a prefix of the magic: a segment torn before its first commit
    header: Header | None = None
    schemas: dict[int, Schema] = field(default_factory=dict)
    channels: dict[int, Channel] = field(default_factory=dict)
    chunks: list[ScannedChunk] = field(default_factory=list)
    lost: list[tuple[int, int]] = field(default_factory=list)
    torn_at: int | None = None
    torn_reason: str = ""
    # the tail holds a complete but invalid record (e.g. a chunk CRC mismatch)
    tail_damaged: bool = False
    # whole (complete-length) records from the torn point on, none of them valid
    tail_records: int = 0
    # the file ends with the MCAP magic: a "torn" tail is damage, not a cut
    tail_magic: bool = False
    data_end: bool = False
    data_end_at: int | None = None  # offset of the DataEnd record: where the summary starts
    finished: bool = False
    # ranges an earlier repair marked lost
    marked: list[tuple[int, int, dict]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        """A finished file with nothing lost: ordinary MCAP readers open it as is."""
        return self.finished and not self.lost and self.torn_at is None and not self.errors

    @property
    def salvageable(self) -> bool:
        """Something to keep: the magic checks, or the file is empty, or a CRC-valid chunk was
        found."""
        return self.magic_ok or self.empty or self.zero_magic or bool(self.chunks)

    @property
    def never_committed(self) -> bool:
        """No chunk, and the file is empty or starts with zeros: cut before its first commit, not
        destroyed."""
        return not self.chunks and (self.empty or self.zero_magic)




def _whole_records(buf: bytes | memoryview, pos: int, n: int) -> int:
    """How many records of complete length follow one another from ``pos`` (an open chunk's
    placeholder and zeros end the walk), a chunk and the message indexes after it counting as one (a
    commit writes them together): one is what a cut mid-commit with torn writeback can leave, more
    is damage."""
    count = 0
    prev = 0
    while pos + CHUNK_HEADER_LEN <= n and buf[pos:pos + CHUNK_HEADER_LEN] != OPEN_CHUNK:
        op, length = struct.unpack_from("<BQ", buf, pos)
        if op == 0 or length == 0 or pos + 9 + length > n:
            break
        if not (op == Opcode.MESSAGE_INDEX and prev in (Opcode.CHUNK, Opcode.MESSAGE_INDEX)):
            count += 1
        prev = op
        pos += 9 + length
    return count


def _chunk_at(buf: bytes | memoryview, pos: int, n: int) -> tuple[Chunk, int] | str:
    """Parse a Chunk record at ``pos`` (opcode already checked); return (chunk, end) or an error
    text."""
    if pos + 9 > n:
        return "truncated record header"
    (length,) = struct.unpack_from("<Q", buf, pos + 1)
    end = pos + 9 + length
    if length < 40 or end > n:
        return f"chunk length {length} runs past the end of the file"
    p = pos + 9
    start_ns, end_ns, usize, crc, clen = struct.unpack_from("<QQQII", buf, p)
    p += 32
    if clen > 16 or p + clen + 8 > end:
        return f"bad compression field length {clen}"
    compression = bytes(buf[p:p + clen]).decode("utf-8", "replace")
    p += clen
    (dlen,) = struct.unpack_from("<Q", buf, p)
    p += 8
    if p + dlen != end:
        return f"chunk data length {dlen} does not match record length {length}"
    if compression != "":
        return f"unsupported chunk compression {compression!r}"
    data = memoryview(buf)[p:end]  # no copy: messages are views into the file's bytes
    if usize != dlen:
        return f"uncompressed size {usize} != data length {dlen}"
    if crc != 0 and zlib.crc32(data) != crc:
        return f"chunk CRC mismatch (stored {crc:#010x})"
    return Chunk(compression="", data=data, message_start_time=start_ns, message_end_time=end_ns,
                 uncompressed_crc=crc, uncompressed_size=usize), end


def _chunk_messages(chunk: Chunk, offsets: list[int]) -> list[Message] | str:
    """The messages of a chunk (their offsets in its records appended to ``offsets``); their
    ``data`` are memoryviews into the chunk (``bytes()`` them to keep)."""
    data, n, p = chunk.data, len(chunk.data), 0
    out: list[Message] = []
    head = MSG_HEAD.unpack_from
    while p < n:
        if p + 9 > n:
            return "chunk ends inside a record header"
        op = data[p]
        if op == Opcode.MESSAGE and p + 31 <= n:
            _, length, channel_id, sequence, log_time, publish_time = head(data, p)
            if length < 22:
                return f"message record too short ({length})"
            end = p + 9 + length
            if end > n:
                return "chunk record runs past the chunk"
            out.append(Message(channel_id=channel_id, sequence=sequence, log_time=log_time,
                               publish_time=publish_time, data=data[p + 31:end]))
            offsets.append(p)
            p = end
            continue
        (length,) = struct.unpack_from("<Q", data, p + 1)
        if p + 9 + length > n:
            return "chunk record runs past the chunk"
        if op == Opcode.MESSAGE:
            return f"message record too short ({length})"
        p += 9 + length
    return out


def _resync(buf: bytes | memoryview | mmap.mmap, start: int,
            n: int) -> tuple[int, Chunk, int] | None:
    """The next CRC-valid chunk record at or after ``start``: (offset, chunk, end), or None."""
    p = start
    op = bytes([Opcode.CHUNK])
    raw = buf if isinstance(buf, bytes) else bytes(buf)
    while True:
        p = raw.find(op, p)
        if p < 0:
            return None
        got = _chunk_at(raw, p, n)
        if not isinstance(got, str):
            return p, got[0], got[1]
        p += 1


def _read_record(cls: Any, body: bytes) -> Any:
    stream = _Bytes(body)
    record = cls.read(ReadDataStream(stream))
    if stream.pos != len(body):
        raise ValueError(f"{len(body) - stream.pos} bytes left over in a {cls.__name__} record")
    return record


class _Bytes:
    """The minimal stream ReadDataStream needs, raising on short reads instead of returning short
    data."""

    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def read(self, n: int) -> bytes:
        if n and self.pos + n > len(self.data):
            raise ValueError(f"record field of {n} bytes runs past the record")
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out


_SUMMARY_OPS = {Opcode.SCHEMA, Opcode.CHANNEL, Opcode.STATISTICS, Opcode.CHUNK_INDEX,
                Opcode.SUMMARY_OFFSET, Opcode.ATTACHMENT_INDEX, Opcode.METADATA_INDEX}


def _other_record(scan: Scan, op: int, pos: int, body: bytes) -> str:
    """Check (and take in) a non-chunk record; return why it is garbage, or "" when it is fine.

    Only what our writer puts in each section is accepted, with its length checked, so a flipped
    opcode or length can never make the scanner silently step over a chunk.
    """
    try:
        if scan.data_end:
            if op in _SUMMARY_OPS:
                return ""
            return f"unexpected record opcode {op:#04x} in the summary"
        if op == Opcode.HEADER and pos == 8:
            scan.header = _read_record(Header, body)
        elif op == Opcode.SCHEMA:
            s = _read_record(Schema, body)
            scan.schemas.setdefault(s.id, s)
        elif op == Opcode.CHANNEL:
            c = _read_record(Channel, body)
            scan.channels.setdefault(c.id, c)
        elif op == Opcode.MESSAGE_INDEX:
            if (len(body) < 6 or struct.unpack_from("<I", body, 2)[0] != len(body) - 6
                    or (len(body) - 6) % 16):
                return "bad message index record"
            last = scan.chunks[-1] if scan.chunks else None
            channel = struct.unpack_from("<H", body)[0]
            # the index of the chunk just before (one record per channel: a second record for a
            # channel starts another chunk's, as a repair appends them after the last chunk's)
            if (last is not None and pos == last.end + last.index_len
                    and channel not in last.index_offsets):
                last.index_offsets[channel] = pos
                last.index_len += 9 + len(body)
                if not last.index_bad and not _index_matches(last, channel, body):
                    last.index_bad = True
                    scan.errors.append(f"chunk at byte {last.start}: message index of channel "
                                       f"{channel} at byte {pos} does not match the chunk")
        elif op == Opcode.DATA_END:
            if len(body) != 4:
                return f"bad data end record (length {len(body)})"
            scan.data_end = True
            scan.data_end_at = pos
        elif op == LOST_OPCODE:
            scan.marked.append((pos, pos + 9 + len(body), parse_lost_marker(body)))
        else:
            return f"unexpected record opcode {op:#04x} in the data section"
    except (ValueError, UnicodeDecodeError, struct.error) as exc:
        return f"bad {Opcode(op).name} record: {exc}"
    return ""


def _index_matches(chunk: ScannedChunk, channel: int, body: bytes) -> bool:
    """True when a MessageIndex record's entries (``body``: channel u16, entries length u32, then
    (log_time u64, offset u64) pairs) point at exactly the chunk's messages of ``channel``: each
    offset a Message record start inside the chunk's records with that channel and log time
    (the MCAP spec: an entry's offset is "the message record's offset in the decompressed chunk
    data"). Uses the messages the scan already parsed: nothing is read again."""
    entries = struct.unpack_from(f"<{(len(body) - 6) // 8}Q", body, 6)
    want = {off: m.log_time for m, off in zip(chunk.messages, chunk.offsets, strict=True)
            if m.channel_id == channel}
    got = dict(zip(entries[1::2], entries[0::2], strict=True))
    return len(got) == len(entries) // 2 == len(want) and got == want


def _take_chunk(scan: Scan, pos: int, op: int, chunk: Chunk, end: int) -> None:
    """Keep a CRC-valid chunk found at ``pos`` (its opcode byte ``op`` may have been hit)."""
    offsets: list[int] = []
    msgs = _chunk_messages(chunk, offsets)
    if isinstance(msgs, str):  # CRC-valid but malformed inside: not ours to trust
        scan.lost.append((pos, end))
        scan.errors.append(f"chunk at byte {pos}: {msgs}")
        return
    scan.chunks.append(ScannedChunk(pos, end, msgs, chunk.message_start_time,
                                    chunk.message_end_time, len(chunk.data), op == Opcode.CHUNK,
                                    offsets=offsets))
    if op != Opcode.CHUNK:
        scan.errors.append(f"chunk at byte {pos} has a damaged opcode {op:#04x}; data kept")


def _open_chunk(scan: Scan, buf: bytes | mmap.mmap, pos: int, n: int) -> int | None:
    """A chunk still open at the cut (never committed): where scanning goes on, or None (torn
    tail)."""
    found = _resync(buf, pos + 1, n)
    if found is None:
        scan.torn_at, scan.torn_reason = pos, "chunk still open at the cut (never committed)"
        return None
    scan.lost.append((pos, found[0]))
    scan.errors.append(f"byte {pos}: uncommitted chunk before a committed one; "
                       f"resynchronised at byte {found[0]}")
    return found[0]


def _footer(scan: Scan, buf: bytes | mmap.mmap, pos: int, end: int, n: int) -> bool:
    """Check a Footer record at ``pos``: True when it ends the file (the scan is done)."""
    if end + 8 != n or buf[end:] != MAGIC:
        return False
    footer = _read_record(Footer, buf[pos + 9:end])
    if footer.summary_crc:  # the CRC covers the summary and the footer's two offsets
        start, offsets = footer.summary_start, footer.summary_offset_start
        # a flipped offset can point anywhere: outside the file, a reader seeks there and fails
        if not (0 < start <= offsets <= pos):
            scan.errors.append(f"footer damaged: summary at {start}, its offsets at {offsets}, "
                               f"the footer at {pos}")
        else:
            crc = zlib.crc32(buf[start:pos])
            crc = zlib.crc32(struct.pack("<BQQQ", Opcode.FOOTER, 20, start, offsets), crc)
            if crc != footer.summary_crc:
                scan.errors.append("summary CRC mismatch")
    scan.finished = scan.data_end
    return True


def _garbage(scan: Scan, buf: bytes | mmap.mmap, pos: int, end: int, n: int,
             reason: str) -> int | None:
    """Garbage at ``pos``: skip to the next CRC-valid chunk (its offset), or call the rest a torn
    tail (None)."""
    found = _resync(buf, pos + 1, n)
    if found is None:
        scan.torn_at = pos
        scan.torn_reason = reason
        scan.tail_damaged = end <= n  # a whole record that does not check: damage, not a cut
        scan.tail_records = _whole_records(buf, pos, n)
        return None
    scan.lost.append((pos, found[0]))
    scan.errors.append(f"byte {pos}: {reason}; resynchronised at byte {found[0]}")
    return found[0]


def _start(scan: Scan, buf: bytes | mmap.mmap, n: int) -> bool:
    """Check the magic; False when the file is too short to hold one (the scan is done)."""
    if n < len(MAGIC):
        scan.empty = MAGIC.startswith(buf)
        if not scan.empty:
            scan.errors.append("not an MCAP file (bad magic)")
        return False
    scan.magic_ok = buf[:8] == MAGIC
    scan.zero_magic = buf[:8] == bytes(8)
    if not scan.magic_ok:  # bit rot in the magic: scan on, the chunks after it may all be intact
        scan.errors.append(f"bad magic {bytes(buf[:8])!r}")
        scan.lost.append((0, 8))
    scan.tail_magic = n >= 16 and buf[-8:] == MAGIC
    return True


def scan_segment(path: Path, data: bytes | mmap.mmap | None = None) -> Scan:
    """Salvage-read one segment file (or ``data``, its bytes or a map of it). Never raises on bad
    content. Messages in the result are views into ``data``: a map stays open as long as they are
    referenced.
    """
    path = Path(path)
    buf = path.read_bytes() if data is None else data
    n = len(buf)
    scan = Scan(path=path, size=n)
    pos: int | None = 8 if _start(scan, buf, n) else None
    while pos is not None and pos < n:
        if pos + 9 > n:
            scan.torn_at, scan.torn_reason = pos, "file ends inside a record header"
            break
        op, length = struct.unpack_from("<BQ", buf, pos)
        end = pos + 9 + length
        # tried at any opcode: a CRC-valid chunk whose opcode byte was hit is still a chunk
        got = _chunk_at(buf, pos, n)
        if not isinstance(got, str):
            _take_chunk(scan, pos, op, *got)
            pos = got[1]
            continue
        if op == Opcode.CHUNK and length == 0 and pos + CHUNK_HEADER_LEN <= n \
                and buf[pos:pos + CHUNK_HEADER_LEN] == OPEN_CHUNK:
            pos = _open_chunk(scan, buf, pos, n)
            continue
        if op == Opcode.CHUNK:
            reason = got
        elif end > n:
            reason = f"record length {length} runs past the end of the file"
        elif op == Opcode.FOOTER:
            if length == 20 and _footer(scan, buf, pos, end, n):
                return scan
            reason = "footer not at the end of the file"
        else:
            reason = _other_record(scan, op, pos, buf[pos + 9:end])
        pos = end if not reason else _garbage(scan, buf, pos, end, n, reason)
    if scan.torn_at is not None and scan.torn_at < n:
        scan.lost.append((scan.torn_at, n))
    return scan
