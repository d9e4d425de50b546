"""The record layouts of a segment: magic, fixed schemas and channels per segment kind, and the
hand-built record heads (Message, Chunk) the writer streams and the salvager parses.

A segment is a standard, Foxglove-readable MCAP file; its Schema and Channel records go into the
data section before the first chunk (the MCAP spec allows both places), and channel ids are fixed
per segment kind so a segment whose Channel records are damaged can still be read.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from foxglove_schemas_protobuf.CompressedImage_pb2 import CompressedImage
from foxglove_schemas_protobuf.Log_pb2 import Log
from mcap.opcode import Opcode
from mcap.records import Channel, Schema
from mcap_protobuf.schema import build_file_descriptor_set

from camctl import __version__

__all__ = [
    "CHUNK_HEAD",
    "CHUNK_HEADER_LEN",
    "CH_EVENTS",
    "CH_IMAGE",
    "CH_LOG",
    "CH_META",
    "CH_STILL",
    "LIBRARY",
    "LOST_OPCODE",
    "MAGIC",
    "MSG_HEAD",
    "OPEN_CHUNK",
    "PROFILE",
    "Layout",
    "camera_layout",
    "compressed_image_parts",
    "events_layout",
    "json_schema",
    "lost_marker",
    "parse_lost_marker",
    "proto_schema",
]

MAGIC = b"\x89MCAP0\r\n"
LIBRARY = f"camctl/{__version__}"
PROFILE = ""
# channel ids, fixed per segment kind so a segment whose Channel records are damaged can still be
# read
CH_IMAGE, CH_META, CH_STILL = 1, 2, 3
CH_EVENTS, CH_LOG = 1, 2

_META_SCHEMA = {
    "title": "camctl.FrameMeta",
    "type": "object",
    "properties": {
        "seq": {"type": "integer"}, "timestamp_ns": {"type": "integer"},
        "phase": {"type": "string"},
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
    """The fixed schemas and channels of one kind of segment (``camera``, ``events``, ...)."""

    kind: str
    name: str
    schemas: tuple[Schema, ...]
    channels: tuple[Channel, ...]


def proto_schema(schema_id: int, cls: Any) -> Schema:
    fds = build_file_descriptor_set(cls)
    return Schema(id=schema_id, name=cls.DESCRIPTOR.full_name, encoding="protobuf",
                  data=fds.SerializeToString())


def json_schema(schema_id: int, body: dict) -> Schema:
    return Schema(id=schema_id, name=body["title"], encoding="jsonschema",
                  data=json.dumps(body, sort_keys=True).encode())


@lru_cache(maxsize=64)
def camera_layout(camera: str) -> Layout:
    """Schemas and channels of a camera segment: ``/<camera>/image``, ``/<camera>/meta``,
    ``/<camera>/still``."""
    image = proto_schema(1, CompressedImage)
    meta = json_schema(2, _META_SCHEMA)
    return Layout("camera", camera, (image, meta), (
        Channel(id=CH_IMAGE, topic=f"/{camera}/image", message_encoding="protobuf", metadata={},
                schema_id=1),
        Channel(id=CH_META, topic=f"/{camera}/meta", message_encoding="json", metadata={},
                schema_id=2),
        Channel(id=CH_STILL, topic=f"/{camera}/still", message_encoding="protobuf", metadata={},
                schema_id=1),
    ))


@lru_cache(maxsize=1)
def events_layout() -> Layout:
    """Schemas and channels of an event-log segment: ``/events`` (JSON) and ``/log``
    (``foxglove.Log``)."""
    return Layout("events", "events", (json_schema(1, _EVENT_SCHEMA), proto_schema(2, Log)), (
        Channel(id=CH_EVENTS, topic="/events", message_encoding="json", metadata={}, schema_id=1),
        Channel(id=CH_LOG, topic="/log", message_encoding="protobuf", metadata={}, schema_id=2),
    ))


# --- hand-built records for the hot path ----------------------------------------------------------
_U64 = (1 << 64) - 1
# opcode, record length, channel, sequence, log_time, publish_time
MSG_HEAD = struct.Struct("<BQHIQQ")
# opcode, length, start, end, usize, crc, compression len (0), data len
CHUNK_HEAD = struct.Struct("<BQQQQIIQ")
CHUNK_HEADER_LEN = CHUNK_HEAD.size
# an open chunk's header as written before its records: a record length of 0 (a real chunk is >= 40)
# marks records that were never committed; the real header is written over it when the chunk closes
OPEN_CHUNK = CHUNK_HEAD.pack(Opcode.CHUNK, 0, 0, 0, 0, 0, 0, 0)


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
    """``(prefix, suffix)`` such that ``prefix + data + suffix`` is ``foxglove.CompressedImage``
    protobuf.

    The bytes are what ``CompressedImage(timestamp=..., frame_id=..., data=data, format=fmt)
    .SerializeToString()`` gives (fields in number order: timestamp 1, data 2, format 3, frame_id 4;
    proto3 leaves out empty strings and zero numbers; the timestamp is always present, as
    ``timestamp.FromNanoseconds`` marks it set). Building it by hand saves copying the JPEG twice.
    """
    seconds, nanos = divmod(int(timestamp_ns), 1_000_000_000)
    ts = ((b"\x08" + _varint(seconds) if seconds else b"")
          + (b"\x10" + _varint(nanos) if nanos else b""))
    prefix = b"\x0a" + _varint(len(ts)) + ts + (b"\x12" + _varint(data_len) if data_len else b"")
    f = fmt.encode()
    fid = frame_id.encode()
    suffix = ((b"\x1a" + _varint(len(f)) + f if f else b"")
              + (b"\x22" + _varint(len(fid)) + fid if fid else b""))
    return prefix, suffix



# A private record (MCAP reserves opcodes 0x80-0xFF for applications; readers skip records they do
# not know, see mcap/stream_reader.py ``_read_record``: "Skip unknown record types") that repair
# writes over a damaged byte range in place: ``opcode, length`` covering the range, then ``u32 n``
# and ``n`` bytes of JSON saying what was lost. Only the head is written; the rest of the range
# keeps its damaged bytes, skipped by length.
LOST_OPCODE = 0x8C
LOST_MARKER_MIN = 9


def lost_marker(length: int, info: dict) -> bytes:
    """The head of a LOST record covering ``length`` bytes (>= 9): record header plus what fits of
    ``info``."""
    if length < LOST_MARKER_MIN:
        raise ValueError(f"a lost-range record needs {LOST_MARKER_MIN} bytes, "
                         f"the range has {length}")
    body = json.dumps(info, sort_keys=True, separators=(",", ":")).encode()
    head = struct.pack("<BQ", LOST_OPCODE, length - 9)
    return head + (struct.pack("<I", len(body)) + body if 4 + len(body) <= length - 9 else b"")


def parse_lost_marker(body: bytes | memoryview) -> dict:
    """What a LOST record's body says (``{}`` when too short to hold it or unreadable)."""
    if len(body) < 4:
        return {}
    (n,) = struct.unpack_from("<I", body)
    if 4 + n > len(body):
        return {}
    try:
        info = json.loads(bytes(body[4:4 + n]))
    except ValueError:
        return {}
    return info if isinstance(info, dict) else {}
