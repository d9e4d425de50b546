"""The on-flash segment format: one MCAP file, written and salvaged record by record.

This module owns the bytes of a segment. :class:`SegmentWriter` writes a standard, Foxglove-readable MCAP
file with one difference from ``mcap.writer.Writer``: the Schema and Channel records go into the data
section *before* the first chunk (the MCAP spec allows both places) instead of inside the first chunk, so a
lost first chunk never orphans the messages of the chunks after it. Chunks are closed only at a commit or at
rotation (``max_chunk_bytes`` is a safety cap), so every fsync'd commit ends on a chunk boundary.

:func:`scan_segment` is the salvage reader: it walks the record framing (opcode u8 + length u64 LE) of a
possibly torn or bit-flipped file, keeps every chunk whose CRC32 checks, reports the byte ranges it could
not use, and resynchronises on the next CRC-valid chunk after garbage.

Example::

    >>> w = SegmentWriter(Path("000001.mcap"), camera_layout("down"))      # doctest: +SKIP
    >>> w.add_message(CH_IMAGE, log_ns, pub_ns, seq, data); w.commit(); w.finish()  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import json
import mmap
import os
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import IO, Any

from foxglove_schemas_protobuf.CompressedImage_pb2 import CompressedImage
from foxglove_schemas_protobuf.Log_pb2 import Log
from mcap.data_stream import ReadDataStream, RecordBuilder
from mcap.opcode import Opcode
from mcap.records import (
    Channel,
    Chunk,
    ChunkIndex,
    DataEnd,
    Footer,
    Header,
    Message,
    Schema,
    Statistics,
    SummaryOffset,
)
from mcap_protobuf.schema import build_file_descriptor_set

from camctl import __version__
from camctl.fsutil import start_writeback

__all__ = [
    "CHUNK_HEADER_LEN",
    "CH_EVENTS",
    "CH_IMAGE",
    "CH_LOG",
    "CH_META",
    "CH_STILL",
    "MAGIC",
    "Layout",
    "Scan",
    "ScannedChunk",
    "SegmentWriter",
    "camera_layout",
    "compressed_image_parts",
    "events_layout",
    "layout_for_path",
    "scan_segment",
]

MAGIC = b"\x89MCAP0\r\n"
LIBRARY = f"camctl/{__version__}"
PROFILE = ""
_FOOTER_LEN = 1 + 8 + 20
# channel ids, fixed per segment kind so a segment whose Channel records are damaged can still be read
CH_IMAGE, CH_META, CH_STILL = 1, 2, 3
CH_EVENTS, CH_LOG = 1, 2

_META_SCHEMA = {
    "title": "camctl.FrameMeta",
    "type": "object",
    "properties": {
        "seq": {"type": "integer"}, "timestamp_ns": {"type": "integer"}, "phase": {"type": "string"},
        "value": {"type": "integer"}, "width": {"type": "integer"}, "height": {"type": "integer"},
        "exposure_us": {"type": "integer"}, "analogue_gain": {"type": "number"},
        "still": {"type": "boolean"}, "size": {"type": "integer"},
    },
    "required": ["seq", "timestamp_ns", "phase", "value"],
}
_EVENT_SCHEMA = {
    "title": "camctl.Event",
    "type": "object",
    "properties": {"kind": {"type": "string"}, "name": {"type": "string"},
                   "mono_ns": {"type": "integer"}, "wall_ns": {"type": "integer"}},
}


@dataclass(frozen=True)
class Layout:
    """The fixed schemas and channels of one kind of segment (``camera`` or ``events``)."""

    kind: str
    name: str
    schemas: tuple[Schema, ...]
    channels: tuple[Channel, ...]


def _proto_schema(schema_id: int, cls: Any) -> Schema:
    fds = build_file_descriptor_set(cls)
    return Schema(id=schema_id, name=cls.DESCRIPTOR.full_name, encoding="protobuf",
                  data=fds.SerializeToString())


def _json_schema(schema_id: int, body: dict) -> Schema:
    return Schema(id=schema_id, name=body["title"], encoding="jsonschema",
                  data=json.dumps(body, sort_keys=True).encode())


@lru_cache(maxsize=64)
def camera_layout(camera: str) -> Layout:
    """Schemas and channels of a camera segment: ``/<camera>/image``, ``/<camera>/meta``, ``/<camera>/still``."""
    image = _proto_schema(1, CompressedImage)
    meta = _json_schema(2, _META_SCHEMA)
    return Layout("camera", camera, (image, meta), (
        Channel(id=CH_IMAGE, topic=f"/{camera}/image", message_encoding="protobuf", metadata={}, schema_id=1),
        Channel(id=CH_META, topic=f"/{camera}/meta", message_encoding="json", metadata={}, schema_id=2),
        Channel(id=CH_STILL, topic=f"/{camera}/still", message_encoding="protobuf", metadata={}, schema_id=1),
    ))


@lru_cache(maxsize=1)
def events_layout() -> Layout:
    """Schemas and channels of an event-log segment: ``/events`` (JSON) and ``/log`` (``foxglove.Log``)."""
    return Layout("events", "events", (_json_schema(1, _EVENT_SCHEMA), _proto_schema(2, Log)), (
        Channel(id=CH_EVENTS, topic="/events", message_encoding="json", metadata={}, schema_id=1),
        Channel(id=CH_LOG, topic="/log", message_encoding="protobuf", metadata={}, schema_id=2),
    ))


def layout_for_path(path: Path) -> Layout:
    """The layout a segment at ``<flight>/<camera-or-events>/<seq>.mcap`` was written with."""
    parent = path.parent.name
    return events_layout() if parent == "events" else camera_layout(parent)


def _open_exclusive(path: Path) -> IO[bytes]:
    return open(path, "xb", buffering=0)



# --- hand-built records for the hot path ------------------------------------------------------------------
_U64 = (1 << 64) - 1
_MSG_HEAD = struct.Struct("<BQHIQQ")  # opcode, record length, channel, sequence, log_time, publish_time
_CHUNK_HEAD = struct.Struct("<BQQQQIIQ")  # opcode, length, start, end, usize, crc, compression len (0), data len
CHUNK_HEADER_LEN = _CHUNK_HEAD.size
# an open chunk's header as written before its records: a record length of 0 (a real chunk is >= 40) marks
# records that were never committed; the real header is written over it when the chunk closes
_OPEN_CHUNK = _CHUNK_HEAD.pack(Opcode.CHUNK, 0, 0, 0, 0, 0, 0, 0)
_SMALL = 16 << 10  # pieces below this are gathered in a buffer, larger ones (JPEGs) go to the file as they are


def _varint(v: int) -> bytes:
    v &= _U64
    out = bytearray()
    while v > 0x7F:
        out.append((v & 0x7F) | 0x80)
        v >>= 7
    out.append(v)
    return bytes(out)


def compressed_image_parts(timestamp_ns: int, frame_id: str, data_len: int,
                           fmt: str = "jpeg") -> tuple[bytes, bytes]:
    """``(prefix, suffix)`` such that ``prefix + data + suffix`` is ``foxglove.CompressedImage`` protobuf.

    The bytes are what ``CompressedImage(timestamp=..., frame_id=..., data=data, format=fmt)
    .SerializeToString()`` gives (fields in number order: timestamp 1, data 2, format 3, frame_id 4; proto3
    leaves out empty strings and zero numbers; the timestamp is always present, as
    ``timestamp.FromNanoseconds`` marks it set). Building it by hand saves copying the JPEG twice.
    """
    seconds, nanos = divmod(int(timestamp_ns), 1_000_000_000)
    ts = (b"\x08" + _varint(seconds) if seconds else b"") + (b"\x10" + _varint(nanos) if nanos else b"")
    prefix = b"\x0a" + _varint(len(ts)) + ts + (b"\x12" + _varint(data_len) if data_len else b"")
    f = fmt.encode()
    fid = frame_id.encode()
    suffix = (b"\x1a" + _varint(len(f)) + f if f else b"") + (b"\x22" + _varint(len(fid)) + fid if fid else b"")
    return prefix, suffix


class SegmentWriter:
    """Writes one MCAP segment; the caller decides when to :meth:`commit` (flush + fsync) and :meth:`finish`.

    ``opener(path)`` returns a binary file (``open(path, 'xb', buffering=0)`` by default); tests wrap it
    to inject ``ENOSPC``/``EIO``. ``size`` counts bytes handed to the file, ``committed_size`` the bytes known
    to be on stable storage.

    Records stream to the file as they come (small ones gathered, a JPEG written straight from its buffer,
    never copied), behind a placeholder chunk header; the chunk CRC runs over the records as they pass. A
    commit writes the message indexes, puts the real chunk header over the placeholder (``os.pwrite``) and
    fsyncs. Every ``writeback_bytes`` the kernel is asked to start writing back (``sync_file_range``), so the
    commit's fsync finds little left to do. A cut file ends in a placeholder-headed chunk, which the
    salvage scanner treats as a torn tail.
    """

    def __init__(self, path: Path, layout: Layout, *,
                 opener: Callable[[Path], IO[bytes]] | None = None, max_chunk_bytes: int = 32 << 20,
                 created_mono_ns: int = 0, writeback_bytes: int = 4 << 20) -> None:
        self.path = Path(path)
        self.layout = layout
        self.max_chunk_bytes = max_chunk_bytes
        self.writeback_bytes = writeback_bytes
        self.created_mono_ns = created_mono_ns
        self.size = 0
        self.committed_size = 0
        self.commits = 0
        self.closed = False
        self.finished = False
        self.needs_dir_sync = True
        self.accounted = 0  # bytes the owner has already counted in its statistics
        self._buf = bytearray()  # small pieces not yet handed to the file
        self._chunk_start = -1  # file offset of the open chunk's record, -1 when none is open
        self._chunk_len = 0  # bytes of records in the open chunk
        self._chunk_crc = 0
        self._chunk_msgs = 0
        self._chunk_start_ns = 0
        self._chunk_end_ns = 0
        self._kicked = 0  # file offset up to which writeback was started
        self._msg_index: dict[int, list[int]] = {}  # channel -> [log_time, offset, log_time, offset, ...]
        self._chunk_indexes: list[ChunkIndex] = []
        self._counts: dict[int, int] = {}
        self._message_count = 0
        self._start_ns = 0
        self._end_ns = 0
        self._file = (opener or _open_exclusive)(self.path)
        try:
            self._fd = self._file.fileno()
            head = RecordBuilder()
            head.write(MAGIC)
            Header(PROFILE, LIBRARY).write(head)
            for schema in layout.schemas:
                schema.write(head)
            for channel in layout.channels:
                channel.write(head)
            self._write(head.end())
        except BaseException:
            self._file.close()
            raise

    def __repr__(self) -> str:
        state = "finished" if self.finished else "closed" if self.closed else "open"
        return f"<SegmentWriter {self.path} {state} size={self.size} committed={self.committed_size}>"

    @property
    def dirty(self) -> bool:
        """True when bytes or buffered messages are not yet fsync'd."""
        return self._chunk_msgs > 0 or self.size != self.committed_size

    @property
    def pending_bytes(self) -> int:
        """Bytes gathered for the file but not yet handed to it."""
        return len(self._buf)

    def _write(self, data: bytes | bytearray | memoryview) -> None:
        with memoryview(data) as view:
            while view:
                n = self._file.write(view)
                n = len(view) if n is None else n
                self.size += n
                view = view[n:]
        if self.writeback_bytes and self.size - self._kicked >= self.writeback_bytes and start_writeback:
            start_writeback(self._fd, self._kicked, self.size - self._kicked)
            self._kicked = self.size

    def _flush_buf(self) -> None:
        if self._buf:
            buf, self._buf = self._buf, bytearray()
            self._write(buf)

    def _piece(self, data: bytes | bytearray | memoryview) -> None:
        """One piece of the open chunk's records: CRC'd, then gathered (small) or written as is (large)."""
        self._chunk_crc = zlib.crc32(data, self._chunk_crc)
        self._chunk_len += len(data)
        if len(data) < _SMALL:
            self._buf += data
        else:
            self._flush_buf()
            self._write(data)

    def _begin(self, channel_id: int, log_time: int) -> None:
        if self._chunk_msgs == 0:
            if self._chunk_start < 0:
                self._chunk_start = self.size + len(self._buf)
                self._buf += _OPEN_CHUNK
            self._chunk_start_ns = self._chunk_end_ns = log_time
        else:
            if log_time < self._chunk_start_ns:
                self._chunk_start_ns = log_time
            if log_time > self._chunk_end_ns:
                self._chunk_end_ns = log_time
        if self._message_count == 0:
            self._start_ns = self._end_ns = log_time
        else:
            if log_time < self._start_ns:
                self._start_ns = log_time
            if log_time > self._end_ns:
                self._end_ns = log_time
        entries = self._msg_index.get(channel_id)
        if entries is None:
            entries = self._msg_index[channel_id] = []
        entries += (log_time, self._chunk_len)
        self._chunk_msgs += 1
        self._message_count += 1
        self._counts[channel_id] = self._counts.get(channel_id, 0) + 1

    def add_message(self, channel_id: int, log_time: int, publish_time: int, sequence: int,
                    data: bytes | bytearray | memoryview) -> None:
        """Append a message to the open chunk (durable at the next commit)."""
        self._begin(channel_id, log_time)
        n = len(data)
        self._piece(_MSG_HEAD.pack(Opcode.MESSAGE, 22 + n, channel_id, sequence & 0xFFFFFFFF, log_time,
                                   publish_time))
        self._piece(data)
        if self._chunk_len > self.max_chunk_bytes:
            self.close_chunk()

    def add_image(self, channel_id: int, log_time: int, publish_time: int, sequence: int, data: bytes, *,
                  frame_id: str, timestamp_ns: int, fmt: str = "jpeg") -> None:
        """Append a ``foxglove.CompressedImage`` message built around ``data`` without copying it."""
        prefix, suffix = compressed_image_parts(timestamp_ns, frame_id, len(data), fmt)
        self._begin(channel_id, log_time)
        n = len(prefix) + len(data) + len(suffix)
        self._piece(_MSG_HEAD.pack(Opcode.MESSAGE, 22 + n, channel_id, sequence & 0xFFFFFFFF, log_time,
                                   publish_time) + prefix)
        if data:
            self._piece(data)
        if suffix:
            self._piece(suffix)
        if self._chunk_len > self.max_chunk_bytes:
            self.close_chunk()

    def close_chunk(self) -> None:
        """Finish the open chunk in the file: message indexes, then its real header (no flush, no fsync)."""
        if self._chunk_msgs == 0:
            return
        start, n, crc = self._chunk_start, self._chunk_len, self._chunk_crc
        chunk_len = CHUNK_HEADER_LEN + n
        index = bytearray()
        offsets: dict[int, int] = {}
        base = start + chunk_len
        for channel_id, entries in sorted(self._msg_index.items()):
            offsets[channel_id] = base + len(index)
            index += struct.pack(f"<BQHI{len(entries)}Q", Opcode.MESSAGE_INDEX, 6 + 8 * len(entries),
                                 channel_id, 8 * len(entries), *entries)
        self._buf += index
        self._flush_buf()
        header = _CHUNK_HEAD.pack(Opcode.CHUNK, chunk_len - 9, self._chunk_start_ns, self._chunk_end_ns, n,
                                  crc, 0, n)
        view = memoryview(header)
        at = start
        while view:
            w = os.pwrite(self._fd, view, at)
            view, at = view[w:], at + w
        self._chunk_indexes.append(ChunkIndex(
            message_start_time=self._chunk_start_ns, message_end_time=self._chunk_end_ns,
            chunk_start_offset=start, chunk_length=chunk_len, message_index_offsets=offsets,
            message_index_length=len(index), compression="", compressed_size=n, uncompressed_size=n))
        self._chunk_start = -1
        self._chunk_len = 0
        self._chunk_crc = 0
        self._chunk_msgs = 0
        self._msg_index = {}

    def commit(self, *, fsync: Callable[[int], None] | None = None) -> None:
        """Close the open chunk, flush and fsync: after this returns, every message so far is durable."""
        self.close_chunk()
        self._flush_buf()
        flush = getattr(self._file, "flush", None)
        if flush is not None:
            flush()
        (fsync or os.fsync)(self._fd)
        self.committed_size = self.size
        self._kicked = self.size
        self.commits += 1

    def finish(self, *, fsync: Callable[[int], None] | None = None) -> None:
        """Write DataEnd, the summary and the footer, fsync and close: the segment is a finished MCAP."""
        self.close_chunk()
        self._flush_buf()
        rec = RecordBuilder()
        DataEnd(0).write(rec)
        summary_start = self.size + rec.count
        summary = RecordBuilder()
        offsets: list[SummaryOffset] = []

        def group(opcode: Opcode, records: list[Any]) -> None:
            start = summary.count
            for r in records:
                r.write(summary)
            offsets.append(SummaryOffset(group_opcode=opcode, group_start=summary_start + start,
                                         group_length=summary.count - start))

        group(Opcode.SCHEMA, list(self.layout.schemas))
        group(Opcode.CHANNEL, list(self.layout.channels))
        group(Opcode.STATISTICS, [Statistics(
            attachment_count=0, channel_count=len(self.layout.channels),
            channel_message_counts=dict(self._counts), chunk_count=len(self._chunk_indexes),
            message_count=self._message_count, metadata_count=0, schema_count=len(self.layout.schemas),
            message_start_time=self._start_ns, message_end_time=self._end_ns)])
        if self._chunk_indexes:
            group(Opcode.CHUNK_INDEX, self._chunk_indexes)
        summary_offset_start = summary_start + summary.count
        for off in offsets:
            off.write(summary)
        summary_data = summary.end()
        crc = zlib.crc32(summary_data)
        crc = zlib.crc32(struct.pack("<BQQQ", Opcode.FOOTER, 20, summary_start, summary_offset_start), crc)
        tail = RecordBuilder()
        Footer(summary_start=summary_start, summary_offset_start=summary_offset_start,
               summary_crc=crc).write(tail)
        self._write(rec.end() + summary_data + tail.end() + MAGIC)
        self.commit(fsync=fsync)
        self.finished = True
        self.close()

    def close(self) -> None:
        """Close the file without finishing it (safe twice; ignores errors: used when abandoning)."""
        if self.closed:
            return
        self.closed = True
        self._buf = bytearray()
        with contextlib.suppress(OSError):
            self._file.close()

    def abandon(self) -> None:
        """Give up on this segment after an I/O error: cut it back to its last commit and close it.

        A segment with no commit is removed. Errors are swallowed: recovery cuts whatever tail remains.
        """
        try:
            if self.committed_size == 0:
                self.close()
                self.path.unlink(missing_ok=True)
                return
            os.ftruncate(self._fd, self.committed_size)
        except (OSError, ValueError):
            pass
        self.close()


# --- salvage ------------------------------------------------------------------------------------------
@dataclass
class ScannedChunk:
    """A CRC-valid chunk: its byte range in the file and its messages."""

    start: int
    end: int
    messages: list[Message]


@dataclass
class Scan:
    """What :func:`scan_segment` found in one file."""

    path: Path
    size: int
    magic_ok: bool = False
    empty: bool = False  # 0 bytes or a prefix of the magic: a segment torn before its first commit
    header: Header | None = None
    schemas: dict[int, Schema] = field(default_factory=dict)
    channels: dict[int, Channel] = field(default_factory=dict)
    chunks: list[ScannedChunk] = field(default_factory=list)
    lost: list[tuple[int, int]] = field(default_factory=list)
    torn_at: int | None = None
    torn_reason: str = ""
    tail_damaged: bool = False  # the tail holds a complete but invalid record (e.g. a chunk CRC mismatch)
    tail_magic: bool = False  # the file ends with the MCAP magic: a "torn" tail is damage, not a cut
    data_end: bool = False
    finished: bool = False
    errors: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        """A finished file with nothing lost: ordinary MCAP readers open it as is."""
        return self.finished and not self.lost and self.torn_at is None and not self.errors

    @property
    def salvageable(self) -> bool:
        return self.magic_ok or self.empty


_KNOWN = {int(o) for o in Opcode}


def _chunk_at(buf: bytes | memoryview, pos: int, n: int) -> tuple[Chunk, int] | str:
    """Parse a Chunk record at ``pos`` (opcode already checked); return (chunk, end) or an error text."""
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


def _chunk_messages(chunk: Chunk) -> list[Message] | str:
    """The messages of a chunk; their ``data`` are memoryviews into the chunk (``bytes()`` them to keep)."""
    data, n, p = chunk.data, len(chunk.data), 0
    out: list[Message] = []
    head = _MSG_HEAD.unpack_from
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
            p = end
            continue
        (length,) = struct.unpack_from("<Q", data, p + 1)
        if p + 9 + length > n:
            return "chunk record runs past the chunk"
        if op == Opcode.MESSAGE:
            return f"message record too short ({length})"
        p += 9 + length
    return out


def _resync(buf: bytes | memoryview | mmap.mmap, start: int, n: int) -> tuple[int, Chunk, int] | None:
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
    """The minimal stream ReadDataStream needs, raising on short reads instead of returning short data."""

    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def read(self, n: int) -> bytes:
        if n and self.pos + n > len(self.data):
            raise ValueError(f"record field of {n} bytes runs past the record")
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out


_SUMMARY_OPS = {Opcode.SCHEMA, Opcode.CHANNEL, Opcode.STATISTICS, Opcode.CHUNK_INDEX, Opcode.SUMMARY_OFFSET,
                Opcode.ATTACHMENT_INDEX, Opcode.METADATA_INDEX}


def _other_record(scan: Scan, op: int, pos: int, body: bytes) -> str:
    """Check (and take in) a non-chunk record; return why it is garbage, or "" when it is fine.

    Only what our writer puts in each section is accepted, with its length checked, so a flipped opcode or
    length can never make the scanner silently step over a chunk.
    """
    try:
        if scan.data_end:
            return "" if op in _SUMMARY_OPS else f"unexpected record opcode {op:#04x} in the summary"
        if op == Opcode.HEADER and pos == 8:
            scan.header = _read_record(Header, body)
        elif op == Opcode.SCHEMA:
            s = _read_record(Schema, body)
            scan.schemas.setdefault(s.id, s)
        elif op == Opcode.CHANNEL:
            c = _read_record(Channel, body)
            scan.channels.setdefault(c.id, c)
        elif op == Opcode.MESSAGE_INDEX:
            if len(body) < 6 or struct.unpack_from("<I", body, 2)[0] != len(body) - 6 or (len(body) - 6) % 16:
                return "bad message index record"
        elif op == Opcode.DATA_END:
            if len(body) != 4:
                return f"bad data end record (length {len(body)})"
            scan.data_end = True
        else:
            return f"unexpected record opcode {op:#04x} in the data section"
    except (ValueError, UnicodeDecodeError, struct.error) as exc:
        return f"bad {Opcode(op).name} record: {exc}"
    return ""


def scan_segment(path: Path, data: bytes | mmap.mmap | None = None) -> Scan:
    """Salvage-read one segment file (or ``data``, its bytes or a map of it). Never raises on bad content.

    Messages in the result are views into ``data``: a map stays open as long as they are referenced.
    """
    path = Path(path)
    buf = path.read_bytes() if data is None else data
    n = len(buf)
    scan = Scan(path=path, size=n)
    if n < len(MAGIC):
        scan.empty = MAGIC.startswith(buf)
        if not scan.empty:
            scan.errors.append("not an MCAP file (bad magic)")
        return scan
    if buf[:8] != MAGIC:
        scan.errors.append("not an MCAP file (bad magic)")
        return scan
    scan.magic_ok = True
    scan.tail_magic = n >= 16 and buf[-8:] == MAGIC
    pos = 8
    while pos < n:
        if pos + 9 > n:
            scan.torn_at, scan.torn_reason = pos, "file ends inside a record header"
            break
        op, length = struct.unpack_from("<BQ", buf, pos)
        end = pos + 9 + length
        got = _chunk_at(buf, pos, n)  # tried at any opcode: a CRC-valid chunk whose opcode byte was hit
        if not isinstance(got, str):
            chunk, end = got
            msgs = _chunk_messages(chunk)
            if isinstance(msgs, str):  # CRC-valid but malformed inside: not ours to trust
                scan.lost.append((pos, end))
                scan.errors.append(f"chunk at byte {pos}: {msgs}")
            else:
                scan.chunks.append(ScannedChunk(pos, end, msgs))
                if op != Opcode.CHUNK:
                    scan.errors.append(f"chunk at byte {pos} has a damaged opcode {op:#04x}; data kept")
            pos = end
            continue
        if op == Opcode.CHUNK and length == 0 and pos + CHUNK_HEADER_LEN <= n \
                and buf[pos:pos + CHUNK_HEADER_LEN] == _OPEN_CHUNK:
            # a chunk that was still open at the cut: its records never committed (a torn tail, not damage)
            found = _resync(buf, pos + 1, n)
            if found is None:
                scan.torn_at, scan.torn_reason = pos, "chunk still open at the cut (never committed)"
                break
            scan.lost.append((pos, found[0]))
            scan.errors.append(f"byte {pos}: uncommitted chunk before a committed one; "
                               f"resynchronised at byte {found[0]}")
            pos = found[0]
            continue
        if op == Opcode.CHUNK:
            reason = got
        elif end > n:
            reason = f"record length {length} runs past the end of the file"
        elif op == Opcode.FOOTER:
            if length == 20 and end + 8 == n and buf[end:] == MAGIC:
                footer = _read_record(Footer, buf[pos + 9:end])
                if footer.summary_crc and footer.summary_start and footer.summary_start < pos:
                    crc = zlib.crc32(buf[footer.summary_start:pos])
                    crc = zlib.crc32(struct.pack("<BQQQ", Opcode.FOOTER, 20, footer.summary_start,
                                                 footer.summary_offset_start), crc)
                    if crc != footer.summary_crc:
                        scan.errors.append("summary CRC mismatch")
                scan.finished = scan.data_end
                return scan
            reason = "footer not at the end of the file"
        else:
            reason = _other_record(scan, op, pos, buf[pos + 9:end])
        if not reason:
            pos = end
            continue
        # garbage at pos: skip to the next CRC-valid chunk, or call the rest a torn tail
        found = _resync(buf, pos + 1, n)
        if found is None:
            scan.torn_at = pos
            scan.torn_reason = reason
            scan.tail_damaged = end <= n  # a whole record that does not check: damage, not a cut
            break
        scan.lost.append((pos, found[0]))
        scan.errors.append(f"byte {pos}: {reason}; resynchronised at byte {found[0]}")
        pos = found[0]
    if scan.torn_at is not None and scan.torn_at < n:
        scan.lost.append((scan.torn_at, n))
    return scan
