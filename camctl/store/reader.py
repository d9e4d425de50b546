"""Reading frames and events back out of segments, torn or not.

Owns :class:`StoredFrame` and the decoding of the records :mod:`camctl.store.writer` writes. Readers here go
through the salvage scanner, so a torn tail or a flipped bit costs only the chunks it hit.

Example::

    >>> for f in iter_frames(Path("flight/down/000001.mcap")):      # doctest: +SKIP
    ...     print(f.seq, f.phase, len(f.jpeg))
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import simplejpeg
from foxglove_schemas_protobuf.CompressedImage_pb2 import CompressedImage
from google.protobuf.message import DecodeError

from camctl.store._records import Layout, camera_layout, events_layout, layout_for_path
from camctl.store._salvage import Scan, scan_segment

__all__ = ["FrameCheck", "StoredFrame", "iter_events", "iter_frames", "jpeg_ok", "layout_of", "scan_events",
           "scan_frame_checks", "scan_frames"]


@dataclass(slots=True)
class StoredFrame:
    """One frame as read back from a segment. ``jpeg_ok`` is False when the JPEG header does not decode.

    ``timestamp_ns`` is the sensor's monotonic time; ``log_ns`` the MCAP log_time (wall-clock ns since the
    epoch, from the board's clock at capture); ``publish_ns`` the MCAP publish_time (the sensor time again)."""

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


def jpeg_ok(data: bytes | memoryview) -> bool:
    """True when ``data`` is a whole JPEG: a header that decodes and an end-of-image marker (a truncated
    frame from a camera or an encoder has none). Trailing zero padding, which some V4L2 encoders add, is
    allowed. A full decode would cost milliseconds per 1080p frame; the chunk CRC covers the bytes between."""
    try:
        simplejpeg.decode_jpeg_header(data)
    except Exception:  # simplejpeg raises ValueError, or others on truncated data
        return False
    tail = bytes(data[-256:]).rstrip(b"\0")
    return tail.endswith(b"\xff\xd9")


def _agree(scan: Scan, layout: Layout) -> bool:
    """Every surviving Channel record is the layout's channel of that id (bit rot in a topic string is not
    covered by any CRC: a record that parses but disagrees is not trusted)."""
    want = {c.id: c.topic for c in layout.channels}
    return all(want.get(c.id) == c.topic for c in scan.channels.values())


def layout_of(scan: Scan) -> Layout:
    """The layout of a scanned segment: from its Channel records if they survived and agree, else its path."""
    for ch in scan.channels.values():
        if ch.topic == "/events":
            found = events_layout()
        elif ch.topic.endswith("/image") and ch.topic.count("/") == 2:
            found = camera_layout(ch.topic.split("/")[1])
        else:
            continue
        if _agree(scan, found):
            return found
        break
    return layout_for_path(scan.path)


def _topics(scan: Scan, layout: Layout) -> dict[int, str]:
    """Channel id -> topic: the layout's (surviving Channel records count only when they agree with it)."""
    return {c.id: c.topic for c in layout.channels}


_META_KEYS = ("seq", "timestamp_ns", "phase", "value", "width", "height", "exposure_us", "analogue_gain",
              "still", "size")


def scan_frames(scan: Scan, *, check_jpeg: bool = True, every: int = 1) -> Iterator[StoredFrame]:
    """Frames of an already scanned segment, in file order. Undecodable image records are skipped.

    ``every`` > 1: of the ``/image`` records only the 0th, ``every``-th, 2*``every``-th... (counted in file
    order before decoding) are decoded and yielded; stills are always yielded.
    """
    layout = layout_of(scan)
    if layout.kind != "camera":
        return
    topics = _topics(scan, layout)
    images = 0
    for chunk in scan.chunks:
        metas: dict[int, dict] = {}
        for msg in chunk.messages:
            if topics.get(msg.channel_id, "").endswith("/meta"):
                try:
                    m = json.loads(bytes(msg.data))
                except ValueError:
                    continue
                if isinstance(m, dict):
                    metas[msg.sequence] = m
        for msg in chunk.messages:
            topic = topics.get(msg.channel_id, "")
            if not (topic.endswith("/image") or topic.endswith("/still")):
                continue
            if every > 1 and topic.endswith("/image"):
                images += 1
                if (images - 1) % every:
                    continue
            try:
                img = CompressedImage.FromString(msg.data)
            except DecodeError:
                continue
            m = metas.get(msg.sequence, {})
            jpeg = bytes(img.data)
            yield StoredFrame(
                camera=img.frame_id or layout.name,
                seq=int(m.get("seq", msg.sequence)),
                # the sensor's monotonic time: CompressedImage.timestamp (MCAP log_time is wall-clock)
                timestamp_ns=img.timestamp.ToNanoseconds() if img.HasField("timestamp") else msg.publish_time,
                publish_ns=msg.publish_time,
                jpeg=jpeg,
                width=int(m.get("width", 0)),
                height=int(m.get("height", 0)),
                phase=str(m.get("phase", "")),
                value=int(m.get("value", 0)),
                still=topic.endswith("/still"),
                exposure_us=int(m.get("exposure_us", 0)),
                analogue_gain=float(m.get("analogue_gain", 1.0)),
                meta={k: v for k, v in m.items() if k not in _META_KEYS},
                segment=scan.path,
                chunk_offset=chunk.start,
                jpeg_ok=jpeg_ok(jpeg) if check_jpeg else True,
                log_ns=msg.log_time,
            )


class FrameCheck(NamedTuple):
    """What :func:`scan_frame_checks` says of one stored frame (no copy of its JPEG, no metadata parse)."""

    seq: int
    still: bool
    jpeg_ok: bool
    chunk_offset: int


def _image_data(data: memoryview) -> memoryview | None:
    """The ``data`` field (2) of a serialized ``foxglove.CompressedImage``, by walking its fields.

    None when the walk meets anything but the plain varint and length-delimited fields our writer emits, or
    a repeated ``data`` field (protobuf's last-one-wins): the caller then parses with protobuf itself.
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
    """The frames of a scanned segment as :class:`FrameCheck`: what ``verify`` needs, at memory speed.

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
    """Read back the frames of one segment (tolerates torn tails and damaged chunks); see :func:`scan_frames`."""
    yield from scan_frames(scan_segment(Path(path)), check_jpeg=check_jpeg, every=every)


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
