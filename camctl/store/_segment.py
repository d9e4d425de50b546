"""The streaming segment writer: frames go to the file as they come, commits end on chunk
boundaries.

:class:`SegmentWriter` writes a standard MCAP file with one difference from ``mcap.writer.Writer``:
the Schema and Channel records go into the data section *before* the first chunk instead of inside
the first chunk, so a lost first chunk never orphans the messages of the chunks after it. Chunks are
closed only at a commit or at rotation (``max_chunk_bytes`` is a safety cap), so every fsync'd
commit ends on a chunk boundary.

Example::

    >>> w = SegmentWriter(Path("000001.mcap"), camera_layout("down"))      # doctest: +SKIP
    >>> w.add_message(CH_IMAGE, log_ns, pub_ns, seq, data); w.commit(); w.finish()  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import os
import struct
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from mcap.data_stream import RecordBuilder
from mcap.opcode import Opcode
from mcap.records import ChunkIndex, DataEnd, Footer, Header, Statistics, SummaryOffset

from camctl.common.fsutil import start_writeback
from camctl.store._records import (
    CHUNK_HEAD,
    CHUNK_HEADER_LEN,
    LIBRARY,
    MAGIC,
    MSG_HEAD,
    OPEN_CHUNK,
    PROFILE,
    Layout,
    compressed_image_parts,
)

__all__ = ["SegmentWriter", "finish_tail", "summary_room"]

# pieces below this are gathered in a buffer, larger ones (JPEGs) go to the file as they are
_SMALL = 16 << 10


def finish_tail(layout: Layout, at: int, chunk_indexes: list[ChunkIndex], counts: dict[int, int],
                message_count: int, start_ns: int, end_ns: int) -> bytes:
    """DataEnd, summary (schemas, channels, statistics, chunk indexes, offsets), footer and magic,
    to be written at offset ``at``: what turns a data section into a finished MCAP (the writer and
    repair share it).
    """
    rec = RecordBuilder()
    DataEnd(0).write(rec)
    summary_start = at + rec.count
    summary = RecordBuilder()
    offsets: list[SummaryOffset] = []

    def group(opcode: Opcode, records: list[Any]) -> None:
        start = summary.count
        for r in records:
            r.write(summary)
        offsets.append(SummaryOffset(group_opcode=opcode, group_start=summary_start + start,
                                     group_length=summary.count - start))

    group(Opcode.SCHEMA, list(layout.schemas))
    group(Opcode.CHANNEL, list(layout.channels))
    group(Opcode.STATISTICS, [Statistics(
        attachment_count=0, channel_count=len(layout.channels), channel_message_counts=dict(counts),
        chunk_count=len(chunk_indexes), message_count=message_count, metadata_count=0,
        schema_count=len(layout.schemas), message_start_time=start_ns, message_end_time=end_ns)])
    if chunk_indexes:
        group(Opcode.CHUNK_INDEX, chunk_indexes)
    summary_offset_start = summary_start + summary.count
    for off in offsets:
        off.write(summary)
    summary_data = summary.end()
    crc = zlib.crc32(summary_data)
    crc = zlib.crc32(struct.pack("<BQQQ", Opcode.FOOTER, 20, summary_start, summary_offset_start),
                     crc)
    tail = RecordBuilder()
    Footer(summary_start=summary_start, summary_offset_start=summary_offset_start,
           summary_crc=crc).write(tail)
    return rec.end() + summary_data + tail.end() + MAGIC


# Bytes a chunk index takes in the summary: 9 (record head) + 8*4 (times, offset, length) + 4 (map
# length)
# + 8 (index length) + 4 ("" compression) + 16 (sizes) = 73, plus 10 per channel in its message
#   index map.
CHUNK_INDEX_BYTES = 73


def summary_room(layout: Layout, chunks: int) -> int:
    """An upper bound of :func:`finish_tail`'s size for a segment of ``chunks`` chunks (the
    full-disk reserve)."""
    no_indexes = dict.fromkeys((c.id for c in layout.channels), 0)
    fixed = len(finish_tail(layout, 0, [], no_indexes, 0, 0, 0))
    # 26: the chunk-index offset
    return fixed + 26 + chunks * (CHUNK_INDEX_BYTES + 10 * len(layout.channels))


def _widen(first: bool, start_ns: int, end_ns: int, t_ns: int) -> tuple[int, int]:
    """The range ``start_ns..end_ns`` grown to hold ``t_ns``; only ``t_ns`` for a first message."""
    if first:
        return t_ns, t_ns
    return min(start_ns, t_ns), max(end_ns, t_ns)


def _open_exclusive(path: Path) -> IO[bytes]:
    return open(path, "xb", buffering=0)


class SegmentWriter:
    """Writes one MCAP segment; the caller decides when to :meth:`commit` (flush + fsync) and
    :meth:`finish`.

    ``opener(path)`` returns a binary file (``open(path, 'xb', buffering=0)`` by default); tests
    wrap it to inject ``ENOSPC``/``EIO``. ``size`` counts bytes handed to the file,
    ``committed_size`` the bytes known to be on stable storage.

    Records stream to the file as they come (small ones gathered, a JPEG written straight from its
    buffer, never copied), behind a placeholder chunk header; the chunk CRC runs over the records as
    they pass. A commit writes the message indexes, puts the real chunk header over the placeholder
    (``os.pwrite``) and fsyncs. Every ``writeback_bytes`` the kernel is asked to start writing back
    (``sync_file_range``), so the commit's fsync finds little left to do. A cut file ends in a
    placeholder-headed chunk, which the salvage scanner treats as a torn tail.
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
        # channel -> [log_time, offset, log_time, offset, ...]
        self._msg_index: dict[int, list[int]] = {}
        self._chunk_indexes: list[ChunkIndex] = []
        self._counts: dict[int, int] = {}
        self._message_count = 0
        self._start_ns = 0
        self._end_ns = 0
        self._summary_fixed = summary_room(layout, 0)
        self._per_chunk = CHUNK_INDEX_BYTES + 10 * len(layout.channels)
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
        return (f"<SegmentWriter {self.path} {state} size={self.size} "
                f"committed={self.committed_size}>")

    @property
    def summary_room(self) -> int:
        """Bytes :meth:`finish` will append if one more chunk is closed first (an upper bound)."""
        return self._summary_fixed + (len(self._chunk_indexes) + 1) * self._per_chunk

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
        if (self.writeback_bytes and self.size - self._kicked >= self.writeback_bytes
                and start_writeback):
            start_writeback(self._fd, self._kicked, self.size - self._kicked)
            self._kicked = self.size

    def _flush_buf(self) -> None:
        if self._buf:
            buf, self._buf = self._buf, bytearray()
            self._write(buf)

    def _piece(self, data: bytes | bytearray | memoryview) -> None:
        """One piece of the open chunk's records: CRC'd, then gathered (small) or written as is
        (large)."""
        self._chunk_crc = zlib.crc32(data, self._chunk_crc)
        self._chunk_len += len(data)
        if len(data) < _SMALL:
            self._buf += data
        else:
            self._flush_buf()
            self._write(data)

    def _begin(self, channel_id: int, log_time: int) -> None:
        if self._chunk_msgs == 0 and self._chunk_start < 0:
            self._chunk_start = self.size + len(self._buf)
            self._buf += OPEN_CHUNK
        self._chunk_start_ns, self._chunk_end_ns = _widen(
            self._chunk_msgs == 0, self._chunk_start_ns, self._chunk_end_ns, log_time)
        self._start_ns, self._end_ns = _widen(
            self._message_count == 0, self._start_ns, self._end_ns, log_time)
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
        self._piece(MSG_HEAD.pack(Opcode.MESSAGE, 22 + n, channel_id, sequence & 0xFFFFFFFF,
                                  log_time, publish_time))
        self._piece(data)
        if self._chunk_len > self.max_chunk_bytes:
            self.close_chunk()

    def add_image(self, channel_id: int, log_time: int, publish_time: int, sequence: int,
                  data: bytes, *, frame_id: str, timestamp_ns: int, fmt: str = "jpeg") -> None:
        """Append a ``foxglove.CompressedImage`` message built around ``data``, not copying it."""
        prefix, suffix = compressed_image_parts(timestamp_ns, frame_id, len(data), fmt)
        self._begin(channel_id, log_time)
        n = len(prefix) + len(data) + len(suffix)
        self._piece(MSG_HEAD.pack(Opcode.MESSAGE, 22 + n, channel_id, sequence & 0xFFFFFFFF,
                                  log_time, publish_time) + prefix)
        if data:
            self._piece(data)
        if suffix:
            self._piece(suffix)
        if self._chunk_len > self.max_chunk_bytes:
            self.close_chunk()

    def close_chunk(self) -> None:
        """Finish the open chunk in the file: message indexes, then its real header (no flush, no
        fsync)."""
        if self._chunk_msgs == 0:
            return
        start, n, crc = self._chunk_start, self._chunk_len, self._chunk_crc
        chunk_len = CHUNK_HEADER_LEN + n
        index = bytearray()
        offsets: dict[int, int] = {}
        base = start + chunk_len
        for channel_id, entries in sorted(self._msg_index.items()):
            offsets[channel_id] = base + len(index)
            index += struct.pack(f"<BQHI{len(entries)}Q", Opcode.MESSAGE_INDEX,
                                 6 + 8 * len(entries), channel_id, 8 * len(entries), *entries)
        self._buf += index
        self._flush_buf()
        header = CHUNK_HEAD.pack(Opcode.CHUNK, chunk_len - 9, self._chunk_start_ns,
                                 self._chunk_end_ns, n, crc, 0, n)
        view = memoryview(header)
        at = start
        while view:
            w = os.pwrite(self._fd, view, at)
            view, at = view[w:], at + w
        self._chunk_indexes.append(ChunkIndex(
            message_start_time=self._chunk_start_ns, message_end_time=self._chunk_end_ns,
            chunk_start_offset=start, chunk_length=chunk_len, message_index_offsets=offsets,
            message_index_length=len(index), compression="", compressed_size=n,
            uncompressed_size=n))
        self._chunk_start = -1
        self._chunk_len = 0
        self._chunk_crc = 0
        self._chunk_msgs = 0
        self._msg_index = {}

    def commit(self, *, fsync: Callable[[int], None] | None = None) -> None:
        """Close the open chunk, flush and fsync: after this returns, every message so far is
        durable."""
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
        """Write DataEnd, the summary and the footer, fsync and close: the segment is a finished
        MCAP."""
        self.close_chunk()
        self._flush_buf()
        self._write(finish_tail(self.layout, self.size, self._chunk_indexes, self._counts,
                                self._message_count, self._start_ns, self._end_ns))
        self.commit(fsync=fsync)
        self.finished = True
        self.close()

    def close(self) -> None:
        """Close the file without finishing it (safe twice; ignores errors: used when
        abandoning)."""
        if self.closed:
            return
        self.closed = True
        self._buf = bytearray()
        with contextlib.suppress(OSError):
            self._file.close()

    def abandon(self) -> None:
        """Give up on this segment after an I/O error: cut it back to its last commit and close it.

        A segment with no commit is removed. Errors are swallowed: recovery cuts whatever tail
        remains.
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

