"""Reading frames and events back out of segments, torn or not.

Owns :class:`StoredFrame` and the decoding of the records :mod:`camctl.store.writer` writes. Readers
here go through the salvage scanner, so a torn tail or a flipped bit costs only the chunks it hit.

Example::

    >>> for f in iter_frames(Path("flight/down/000001.mcap")):      # doctest: +SKIP
    ...     print(f.seq, f.phase, len(f.jpeg))
"""

from __future__ import annotations

import io
import json
import mmap
import struct
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, NamedTuple

import simplejpeg
from foxglove_schemas_protobuf.CompressedImage_pb2 import CompressedImage
from google.protobuf.message import DecodeError
from mcap.opcode import Opcode
from mcap.records import Channel, ChunkIndex, Message

from camctl.store._records import (
    CH_IMAGE,
    CH_STILL,
    CHUNK_HEADER_LEN,
    MAGIC,
    MSG_HEAD,
    Layout,
)
from camctl.store._salvage import Scan, _chunk_at, _chunk_messages, _read_record, scan_segment
from camctl.store.sources import (
    KINDS,
    SAMPLES,
    SampleBatch,
    SamplesKind,
    layout_for_path,
    layout_from_channels,
)

__all__ = ["FrameCheck", "StoredFrame", "count_frames", "iter_events", "iter_frames",
           "iter_samples", "jpeg_ok", "layout_of", "pick_frames", "scan_events",
           "scan_frame_checks", "scan_frames"]


@dataclass(slots=True)
class StoredFrame:
    """One frame as read back from a segment. ``jpeg_ok`` is False when the JPEG header does not
    decode.

    ``timestamp_ns`` is the sensor's monotonic time; ``log_ns`` the MCAP log_time (wall-clock ns
    since the epoch, from the board's clock at capture); ``publish_ns`` the MCAP publish_time (the
    sensor time again). ``run`` is the run of the daemon in the flight that captured it (0: the
    run that opened the flight; meta ``run``), whose clock ``timestamp_ns`` is on: the flight's
    resume records map it onto the flight's timeline (:mod:`camctl.common.flightclock`)."""

    camera: str
    seq: int
    timestamp_ns: int
    publish_ns: int
    jpeg: bytes
    width: int
    height: int
    phase: str
    value: int
    still: bool
    exposure_us: int = 0
    analogue_gain: float = 1.0
    meta: dict = field(default_factory=dict)
    segment: Path | None = None
    chunk_offset: int = 0
    jpeg_ok: bool = True
    log_ns: int = 0
    run: int = 0


def jpeg_ok(data: bytes | memoryview) -> bool:
    """True when ``data`` is a whole JPEG: a header that decodes and an end-of-image marker (a
    truncated frame from a camera or an encoder has none). Trailing zero padding, which some V4L2
    encoders add, is allowed. A full decode would cost milliseconds per 1080p frame; the chunk CRC
    covers the bytes between."""
    try:
        simplejpeg.decode_jpeg_header(data)
    except Exception:  # simplejpeg raises ValueError, or others on truncated data
        return False
    tail = bytes(data[-256:]).rstrip(b"\0")
    return tail.endswith(b"\xff\xd9")


def layout_of(scan: Scan) -> Layout:
    """The layout of a scanned segment: from its Channel records if they survived and agree, else
    its path."""
    return layout_from_channels(scan.channels.values()) or layout_for_path(scan.path)


def _topics(scan: Scan, layout: Layout) -> dict[int, str]:
    """Channel id -> topic: the layout's (surviving Channel records count only when they agree with
    it)."""
    return {c.id: c.topic for c in layout.channels}


_META_KEYS = ("seq", "timestamp_ns", "phase", "value", "width", "height", "exposure_us",
              "analogue_gain", "still", "size", "run")


def scan_frames(scan: Scan, *, check_jpeg: bool = True, every: int = 1,
                stills: bool = True) -> Iterator[StoredFrame]:
    """Frames of an already scanned segment, in file order. Undecodable image records are skipped.

    ``every`` > 1: of the ``/image`` records only the 0th, ``every``-th, 2*``every``-th... (counted
    in file order before decoding) are decoded and yielded; stills are always yielded
    (``stills=False``: never).
    """
    layout = layout_of(scan)
    if layout.kind != "camera":
        return
    topics = _topics(scan, layout)
    images = [0]
    for chunk in scan.chunks:
        yield from _chunk_frames(chunk.messages, topics, layout, scan.path, chunk.start, images,
                                 every=every, check_jpeg=check_jpeg, stills=stills)


def _chunk_frames(messages: list[Message], topics: dict[int, str], layout: Layout,
                  path: Path | None, chunk_offset: int, images: list[int], *, every: int,
                  check_jpeg: bool, stills: bool = True) -> Iterator[StoredFrame]:
    """The frames of one chunk's messages; ``images[0]`` counts the ``/image`` records seen so
    far."""
    metas: dict[int, dict] = {}
    for msg in messages:
        if topics.get(msg.channel_id, "").endswith("/meta"):
            m = _meta(msg.data)
            if m is not None:
                metas[msg.sequence] = m
    for msg in messages:
        topic = topics.get(msg.channel_id, "")
        if not (topic.endswith("/image") or (stills and topic.endswith("/still"))):
            continue
        if every > 1 and topic.endswith("/image"):
            images[0] += 1
            if (images[0] - 1) % every:
                continue
        fr = _frame(msg, metas.get(msg.sequence, {}), layout, topic.endswith("/still"), path,
                    chunk_offset, check_jpeg)
        if fr is not None:
            yield fr


def _meta(data: bytes | memoryview) -> dict | None:
    try:
        m = json.loads(bytes(data))
    except ValueError:
        return None
    return m if isinstance(m, dict) else None


def _frame(msg: Message, m: dict, layout: Layout, still: bool, path: Path | None, chunk_offset: int,
           check_jpeg: bool) -> StoredFrame | None:
    """A :class:`StoredFrame` of one image or still message and its metadata; None if it does not
    parse."""
    try:
        img = CompressedImage.FromString(msg.data)
    except DecodeError:
        return None
    jpeg = bytes(img.data)
    return StoredFrame(
        camera=img.frame_id or layout.name,
        seq=int(m.get("seq", msg.sequence)),
        # the sensor's monotonic time: CompressedImage.timestamp (MCAP log_time is wall-clock)
        timestamp_ns=(img.timestamp.ToNanoseconds() if img.HasField("timestamp")
                      else msg.publish_time),
        publish_ns=msg.publish_time,
        jpeg=jpeg,
        width=int(m.get("width", 0)),
        height=int(m.get("height", 0)),
        phase=str(m.get("phase", "")),
        value=int(m.get("value", 0)),
        still=still,
        exposure_us=int(m.get("exposure_us", 0)),
        analogue_gain=float(m.get("analogue_gain", 1.0)),
        meta={k: v for k, v in m.items() if k not in _META_KEYS},
        segment=path,
        chunk_offset=chunk_offset,
        jpeg_ok=jpeg_ok(jpeg) if check_jpeg else True,
        log_ns=msg.log_time,
        run=_run(m.get("run")),
    )


def _run(value: object) -> int:
    """A frame's ``run`` from its metadata: 0 when absent (written before runs) or malformed."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


class FrameCheck(NamedTuple):
    """What :func:`scan_frame_checks` says of one stored frame (no copy of its JPEG, no metadata
    parse)."""

    seq: int
    still: bool
    jpeg_ok: bool
    chunk_offset: int


def _image_data(data: memoryview) -> memoryview | None:
    """The ``data`` field (2) of a serialized ``foxglove.CompressedImage``, by walking its fields.

    None when the walk meets anything but the plain varint and length-delimited fields our writer
    emits, or a repeated ``data`` field (protobuf's last-one-wins): the caller then parses with
    protobuf itself.
    """
    n, p = len(data), 0
    found = None
    while p < n:
        tag = data[p]
        p += 1
        if tag & 0x80:
            return None
        wire = tag & 7
        v = shift = 0
        while True:  # a varint: the field's value (wire 0) or its length (wire 2)
            if p >= n or shift > 63:
                return None
            b = data[p]
            p += 1
            v |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                break
        if wire == 2:
            if p + v > n:
                return None
            if tag >> 3 == 2:
                if found is not None:
                    return None
                found = data[p:p + v]
            p += v
        elif wire != 0:
            return None
    return found if found is not None else data[0:0]


def scan_frame_checks(scan: Scan) -> Iterator[FrameCheck]:
    """The frames of a scanned segment as :class:`FrameCheck`: what ``verify`` needs, at memory
    speed.

    Counts exactly the frames :func:`scan_frames` yields (image and still records that parse as
    ``CompressedImage``); the JPEG header is decoded in place from the file's bytes.
    """
    layout = layout_of(scan)
    if layout.kind != "camera":
        return
    kinds = {cid: topic.endswith("/still") for cid, topic in _topics(scan, layout).items()
             if topic.endswith("/image") or topic.endswith("/still")}
    for chunk in scan.chunks:
        for msg in chunk.messages:
            still = kinds.get(msg.channel_id)
            if still is None:
                continue
            jpeg = _image_data(msg.data)
            if jpeg is None:
                try:
                    jpeg = memoryview(CompressedImage.FromString(bytes(msg.data)).data)
                except DecodeError:
                    continue
            yield FrameCheck(msg.sequence, still, jpeg_ok(jpeg), chunk.start)


def iter_frames(path: Path, *, check_jpeg: bool = True, every: int = 1) -> Iterator[StoredFrame]:
    """Read back the frames of one segment (tolerates torn tails and damaged chunks); see
    :func:`scan_frames`."""
    yield from scan_frames(scan_segment(Path(path)), check_jpeg=check_jpeg, every=every)


def pick_frames(path: Path, *, every: int = 1, stills: bool = True, check_jpeg: bool = True,
                opener: Callable[[Path], BinaryIO] | None = None) -> Iterator[StoredFrame]:
    """The frames :func:`iter_frames` yields (``stills=False``: without the stills), reading only
    their records.

    A finished segment is read through its summary: the footer, the chunk indexes, each chunk's
    message indexes, then a seek to each chosen image and its metadata record; nothing else of the
    file is read, and at most one chunk's message index and chosen records are held at a time (a
    chunk is capped by the writer's ``max_chunk_bytes``). A chunk whose indexed records do not check
    (bit rot the chunk CRC would catch) is read whole and CRC-checked, and dropped if it fails. An
    unfinished segment, or one whose footer or summary does not check, is salvage-scanned from a
    memory map (bounded by the page cache, not the heap). ``opener(path)`` returns the binary file
    to read (tests count its bytes); ``open(path, "rb", buffering=0)`` by default.

    Records are found as the MCAP spec lays them out (https://mcap.dev/spec: Footer, Summary Offset,
    Chunk Index and Message Index records); ``mcap.records.ChunkIndex.read`` parses the chunk
    indexes.
    """
    path = Path(path)
    every = max(1, every)
    f = (opener or _open_plain)(path)
    with f:
        try:
            layout, indexes = _summary(f, path)
        except _Unindexed:
            indexes = None
        if indexes is None:
            yield from _scan_picked(f, path, every=every, stills=stills, check_jpeg=check_jpeg)
            return
        if layout.kind != "camera":
            return
        topics = {c.id: c.topic for c in layout.channels}
        images = [0]
        for ci in indexes:
            try:
                yield from _indexed_chunk(f, ci, layout, topics, path, images, every=every,
                                          stills=stills, check_jpeg=check_jpeg)
            except _Unindexed:
                # the index and the records disagree: read the chunk whole, CRC-checked
                yield from _whole_chunk(f, ci, layout, topics, path, images, every=every,
                                        stills=stills, check_jpeg=check_jpeg)


class _Unindexed(Exception):
    """The summary or a chunk's message index cannot be trusted."""


# opcode, length (20), summary start, summary offset start, summary CRC
_FOOTER = struct.Struct("<BQQQI")
_MSG_INDEX_HEAD = struct.Struct("<BQHI")  # opcode, length, channel, entries' byte length


def _open_plain(path: Path) -> BinaryIO:
    return open(path, "rb", buffering=0)


def _read_at(f: BinaryIO, at: int, n: int) -> bytes:
    f.seek(at)
    out = bytearray()
    while len(out) < n:
        got = f.read(n - len(out))
        if not got:
            raise _Unindexed(f"short read at byte {at}")
        out += got
    return bytes(out)


def _summary(f: BinaryIO, path: Path) -> tuple[Layout, list[ChunkIndex]]:
    """The layout and the chunk indexes (in file order) of a finished segment, from its footer and
    summary."""
    size = f.seek(0, 2)
    tail_len = _FOOTER.size + len(MAGIC)
    if size < len(MAGIC) + tail_len:
        raise _Unindexed("too short to be finished")
    tail = _read_at(f, size - tail_len, tail_len)
    op, length, start, _, crc = _FOOTER.unpack_from(tail)
    footer_at = size - tail_len
    if (tail[-8:] != MAGIC or op != Opcode.FOOTER or length != 20
            or not len(MAGIC) < start <= footer_at):
        raise _Unindexed("no footer")
    body = _read_at(f, start, footer_at - start)
    if crc and zlib.crc32(tail[:-8 - 4], zlib.crc32(body)) != crc:
        raise _Unindexed("summary CRC mismatch")
    channels: dict[int, Channel] = {}
    indexes: list[ChunkIndex] = []
    pos = 0
    try:
        while pos < len(body):
            op, length = struct.unpack_from("<BQ", body, pos)
            rec = body[pos + 9:pos + 9 + length]
            if op == Opcode.CHANNEL:
                ch = _read_record(Channel, rec)
                channels[ch.id] = ch
            elif op == Opcode.CHUNK_INDEX:
                indexes.append(_read_record(ChunkIndex, rec))
            pos += 9 + length
    except (ValueError, UnicodeDecodeError, struct.error) as exc:
        raise _Unindexed(f"bad summary: {exc}") from exc
    if pos != len(body):
        raise _Unindexed("summary records overrun the footer")
    layout = layout_of(Scan(path=path, size=size, channels=channels))
    return layout, sorted(indexes, key=lambda ci: ci.chunk_start_offset)


def _message_index(f: BinaryIO, ci: ChunkIndex) -> dict[int, list[tuple[int, int]]]:
    """Channel -> [(log_time, offset in the chunk's records)] from the MessageIndex records after a
    chunk."""
    if ci.compression != "" or ci.message_index_length > ci.chunk_length:
        raise _Unindexed("not an index this reader can use")
    raw = _read_at(f, ci.chunk_start_offset + ci.chunk_length, ci.message_index_length)
    out: dict[int, list[tuple[int, int]]] = {}
    pos = 0
    while pos < len(raw):
        if pos + _MSG_INDEX_HEAD.size > len(raw):
            raise _Unindexed("message index runs past its length")
        op, length, channel, n = _MSG_INDEX_HEAD.unpack_from(raw, pos)
        if op != Opcode.MESSAGE_INDEX or n % 16 or length != 6 + n or pos + 9 + length > len(raw):
            raise _Unindexed("bad message index record")
        vals = struct.unpack_from(f"<{n // 8}Q", raw, pos + _MSG_INDEX_HEAD.size)
        out[channel] = list(zip(vals[::2], vals[1::2], strict=True))
        pos += 9 + length
    return out


def _record(f: BinaryIO, base: int, off: int, end: int, channel: int) -> Message:
    """The Message record at ``off`` (up to ``end``) of a chunk whose records start at ``base``."""
    if not 0 <= off < end or end - off < MSG_HEAD.size:
        raise _Unindexed("message index offset out of the chunk")
    raw = _read_at(f, base + off, end - off)
    op, length, cid, seq, log_time, pub = MSG_HEAD.unpack_from(raw)
    if op != Opcode.MESSAGE or cid != channel or length < 22 or 9 + length > len(raw):
        raise _Unindexed("indexed record is not the message it should be")
    return Message(channel_id=cid, sequence=seq, log_time=log_time, publish_time=pub,
                   data=memoryview(raw)[MSG_HEAD.size:9 + length])


def _indexed_chunk(f: BinaryIO, ci: ChunkIndex, layout: Layout, topics: dict[int, str], path: Path,
                   images: list[int], *, every: int, stills: bool,
                   check_jpeg: bool) -> Iterator[StoredFrame]:
    """The chosen frames of one chunk, each read by itself where the message index puts it."""
    index = _message_index(f, ci)
    base = ci.chunk_start_offset + CHUNK_HEADER_LEN
    bounds = sorted({off for entries in index.values() for _, off in entries})
    ends = dict(zip(bounds, [*bounds[1:], ci.uncompressed_size], strict=True))
    kind = {cid: t.rsplit("/", 1)[1] for cid, t in topics.items()}
    meta_id = next((c for c, k in kind.items() if k == "meta"), -1)
    metas: dict[int, list[int]] = {}
    chosen: list[tuple[int, int, bool]] = []  # (offset, channel, still)
    count = images[0]
    for cid, entries in index.items():
        k = kind.get(cid)
        if k == "meta":
            for t, off in entries:
                metas.setdefault(t, []).append(off)
        elif k == "still" and stills:
            chosen += [(off, cid, True) for _, off in entries]
    for cid, entries in index.items():
        if kind.get(cid) == "image":
            for _, off in sorted(entries, key=lambda e: e[1]):
                count += 1
                if every == 1 or not (count - 1) % every:
                    chosen.append((off, cid, False))
    picked: list[tuple[Message, dict, bool]] = []
    # all read before any is yielded: a bad record reads the chunk
    for off, cid, still in sorted(chosen):
        msg = _record(f, base, off, ends.get(off, -1), cid)
        m: dict = {}
        # the writer gives a frame's meta its image's log time
        for moff in metas.get(msg.log_time, []):
            meta = _record(f, base, moff, ends.get(moff, -1), meta_id)
            got = _meta(meta.data) if meta.sequence == msg.sequence else None
            if got is not None:
                m = got
        picked.append((msg, m, still))
    images[0] = count
    for msg, m, still in picked:
        fr = _frame(msg, m, layout, still, path, ci.chunk_start_offset, check_jpeg)
        if fr is not None:
            yield fr


def _whole_chunk(f: BinaryIO, ci: ChunkIndex, layout: Layout, topics: dict[int, str], path: Path,
                 images: list[int], *, every: int, stills: bool,
                 check_jpeg: bool) -> Iterator[StoredFrame]:
    """The chosen frames of one chunk, read whole and CRC-checked (none if it fails, as a scan)."""
    try:
        raw = _read_at(f, ci.chunk_start_offset, ci.chunk_length)
    except _Unindexed:
        return
    got = _chunk_at(raw, 0, len(raw))
    if isinstance(got, str):
        return
    msgs = _chunk_messages(got[0], [])
    if isinstance(msgs, str):
        return
    yield from _chunk_frames(msgs, topics, layout, path, ci.chunk_start_offset, images, every=every,
                             check_jpeg=check_jpeg, stills=stills)


def _scan_picked(f: BinaryIO, path: Path, *, every: int, stills: bool,
                 check_jpeg: bool) -> Iterator[StoredFrame]:
    """The salvage scan of an unfinished or damaged segment, from a read-only memory map of it."""
    try:
        data: bytes | mmap.mmap = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    except (OSError, ValueError, AttributeError, io.UnsupportedOperation):
        # empty, or not a real file
        data = _read_at(f, 0, f.seek(0, 2)) if f.seek(0, 2) else b""
    yield from scan_frames(scan_segment(path, data), every=every, check_jpeg=check_jpeg,
                           stills=stills)


def scan_events(scan: Scan) -> Iterator[dict]:
    """Event records (the dicts given to ``log_event``) of an already scanned events segment."""
    layout = layout_of(scan)
    if layout.kind != "events":
        return
    topics = _topics(scan, layout)
    for chunk in scan.chunks:
        for msg in chunk.messages:
            if topics.get(msg.channel_id) == "/events":
                try:
                    rec = json.loads(bytes(msg.data))
                except ValueError:
                    continue
                if isinstance(rec, dict):
                    yield rec


def iter_events(path: Path) -> Iterator[dict]:
    """Read back the event records of one events segment."""
    yield from scan_events(scan_segment(Path(path)))


def iter_samples(path: Path) -> Iterator[SampleBatch]:
    """Read back the sample batches of one segment of a ``samples``, ``imu`` or ``baro`` source
    (torn or not; a batch that does not decode whole is skipped)."""
    scan = scan_segment(Path(path))
    layout = layout_from_channels(scan.channels.values()) or layout_for_path(scan.path)
    kind = KINDS.get(layout.kind)
    yield from (kind if isinstance(kind, SamplesKind) else SAMPLES).read(scan)


def count_frames(path: Path) -> int:
    """Frames (video and stills) in one segment: from its MCAP statistics when it has a summary (a
    finished or repaired segment), else by reading its frames through the salvage scanner."""
    from mcap.reader import make_reader

    try:
        with open(path, "rb") as f:
            summary = make_reader(f).get_summary()
        counts = summary.statistics.channel_message_counts  # type: ignore[union-attr]
        return counts.get(CH_IMAGE, 0) + counts.get(CH_STILL, 0)
    except Exception:  # no summary (or a damaged one): count what the salvage reader finds
        return sum(1 for _ in iter_frames(path, check_jpeg=False))
