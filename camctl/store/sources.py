"""Sources: the named streams of typed records a flight holds, and the kinds that know them.

A flight holds sources (a camera; a sensor's batched samples), each in ``<flight>/<source>/`` with
its own segments, books and index entry. A :class:`SourceKind` owns all that differs per kind: its
channel layout, how one record becomes MCAP messages, its value for shedding, its stats keys, its
index entry and what verify checks. A new kind is a new class here (and one line in :data:`KINDS`),
not edits to the writer.

Example::

    >>> SAMPLES.layout("baro").channels[0].topic
    '/baro/samples'
"""

from __future__ import annotations

import json
import math
import time
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, ClassVar, NamedTuple

from mcap.records import Channel

from camctl.common.frames import EncodedFrame, FrameValue
from camctl.store._records import (
    CH_IMAGE,
    CH_META,
    CH_STILL,
    Layout,
    camera_layout,
    events_layout,
    json_schema,
)
from camctl.store._salvage import Scan
from camctl.store._segment import SegmentWriter

__all__ = [
    "BARO",
    "BARO_FIELDS",
    "CAMERA",
    "EVENTS",
    "IMU",
    "IMU_FIELDS",
    "KINDS",
    "SAMPLES",
    "SENSOR_KINDS",
    "CameraKind",
    "RecordCheck",
    "SampleBatch",
    "SamplesKind",
    "SensorKind",
    "Source",
    "SourceBooks",
    "SourceKind",
    "layout_for_path",
    "layout_from_channels",
    "source_kinds",
]

EVENTS = "events"  # the event log's dir: not a source name


class Source(NamedTuple):
    """A source of a flight: its name (the dir and topic prefix) and its kind (a key of
    :data:`KINDS`)."""

    name: str
    kind: str = "camera"


@dataclass
class SourceBooks:
    """The ledger of one source in a running store (read and written under the store's lock)."""

    stored: int = 0
    durable: int = 0
    durable_seq: int = -1  # the highest record seq whose commit has returned (-1: none yet)
    bytes: int = 0
    segments: int = 0
    queued: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    extra: dict[str, int] = field(
        default_factory=dict
    )  # the kind's own counters (SourceKind.counts)


class RecordCheck(NamedTuple):
    """What verify learns of one stored record without keeping it."""

    seq: int
    still: bool
    ok: bool
    chunk_offset: int


class SourceKind(ABC):
    """Everything kind-specific about a source. Stateless: one instance serves every source of its
    kind."""

    kind: ClassVar[str]
    record_type: ClassVar[type]  # what put() takes for a source of this kind
    section: ClassVar[str] = "sources"  # index.json's section for sources of this kind
    noun: ClassVar[str] = "record"  # what verify calls one record
    bad: ClassVar[str] = "does not decode"  # what verify says of a record that fails its check
    main_topic: ClassVar[str]  # the last part of this kind's main channel: /<source>/<main_topic>

    @abstractmethod
    def layout(self, source: str) -> Layout:
        """The fixed schemas and channels of a segment of ``source``."""

    def source_of_topic(self, topic: str) -> str | None:
        """The source a channel topic names, if it is this kind's main topic (layout detection)."""
        if topic.endswith(f"/{self.main_topic}") and topic.count("/") == 2:
            return topic.split("/")[1]
        return None

    def record_channels(self, layout: Layout) -> set[int]:
        """The channels whose messages are the records (their sequence is the record's seq)."""
        return {c.id for c in layout.channels}

    @abstractmethod
    def source_of(self, record: Any) -> str:
        """The name of the source ``record`` belongs to."""

    @abstractmethod
    def seq(self, record: Any) -> int:
        """The record's sequence number (``durable_seq`` follows it)."""

    @abstractmethod
    def value(self, record: Any) -> int:
        """Its worth when space runs out (a :class:`FrameValue`; the least valuable is shed
        first)."""

    @abstractmethod
    def room(self, record: Any) -> int:
        """Bytes writing ``record`` may take (checked against the room finishing needs)."""

    @abstractmethod
    def write(self, seg: SegmentWriter, source: str, record: Any) -> None:
        """Append ``record`` to the open chunk of ``seg`` as MCAP messages."""

    def counts(self, record: Any) -> dict[str, int]:
        """The kind's own counters a stored record adds to its source's books."""
        return {}

    def units(self, record: Any) -> int:
        """What ``record`` counts as in the source's loss books (its drops; the board's ledger
        counts the same unit as ``captured``): one, a frame or a record; a sensor's: its
        samples."""
        return 1

    @abstractmethod
    def stats_view(self, books: SourceBooks) -> dict[str, Any]:
        """The source's ``FlightStore.stats()`` entry (field names are part of the interface)."""

    @abstractmethod
    def index_empty(self) -> dict[str, Any]:
        """The index entry of a source with no segments."""

    @abstractmethod
    def index_segment(self, scan: Scan, entry: dict[str, Any], totals: dict[str, Any]) -> None:
        """Fill one segment's index ``entry`` from its scan and add it to the source's
        ``totals``."""

    @abstractmethod
    def check(self, scan: Scan) -> Iterator[RecordCheck]:
        """Every record of a scanned segment, checked (verify counts and reports them)."""


def _wall_of(mono_ns: int) -> int:
    """Wall-clock ns for a monotonic time now (MCAP log_time: Foxglove's convention, boards line
    up)."""
    return mono_ns + time.time_ns() - time.monotonic_ns()


def _span(entry: dict[str, Any], first: int, last: int) -> None:
    entry["first_ns"] = first if entry["first_ns"] is None else min(entry["first_ns"], first)
    entry["last_ns"] = last if entry["last_ns"] is None else max(entry["last_ns"], last)


class CameraKind(SourceKind):
    """JPEG frames (:class:`EncodedFrame`): ``/<camera>/image|still`` (``foxglove.CompressedImage``)
    and ``/<camera>/meta`` (JSON); indexed under ``cameras``."""

    kind = "camera"
    record_type = EncodedFrame
    main_topic = "image"
    section = "cameras"
    noun = "frame"
    bad = "is not a decodable JPEG"

    def layout(self, source: str) -> Layout:
        return camera_layout(source)

    def record_channels(self, layout: Layout) -> set[int]:
        return {c.id for c in layout.channels if c.topic.endswith(("/image", "/still"))}

    def source_of(self, record: EncodedFrame) -> str:
        return record.camera

    def seq(self, record: EncodedFrame) -> int:
        return record.seq

    def value(self, record: EncodedFrame) -> int:
        return record.value

    def room(self, record: EncodedFrame) -> int:
        return len(record.jpeg) + 1024

    def write(self, seg: SegmentWriter, source: str, record: EncodedFrame) -> None:
        fr = record
        # MCAP log_time is the frame's wall-clock capture time (ns since the epoch, Foxglove's
        # convention, so boards line up when opened together); publish_time and
        # CompressedImage.timestamp keep the sensor's monotonic time, which the ground aligns on the
        # shared release edge
        wall = _wall_of(fr.timestamp_ns)
        meta = {
            "seq": fr.seq,
            "timestamp_ns": fr.timestamp_ns,
            "phase": fr.phase,
            "value": int(fr.value),
            "width": fr.width,
            "height": fr.height,
            "exposure_us": fr.exposure_us,
            "analogue_gain": fr.analogue_gain,
            "still": fr.still,
            "size": fr.size,
        }
        for k, v in fr.meta.items():
            meta.setdefault(k, v)
        seg.add_image(
            CH_STILL if fr.still else CH_IMAGE,
            wall,
            fr.timestamp_ns,
            fr.seq,
            fr.jpeg,
            frame_id=source,
            timestamp_ns=fr.timestamp_ns,
        )
        seg.add_message(
            CH_META,
            wall,
            fr.timestamp_ns,
            fr.seq,
            json.dumps(meta, default=str, separators=(",", ":")).encode(),
        )

    def stats_view(self, books: SourceBooks) -> dict[str, Any]:
        return {
            "frames_stored": books.stored,
            "durable_frames": books.durable,
            "durable_seq": books.durable_seq,
            "bytes": books.bytes,
            "segments": books.segments,
            "dropped": dict(books.dropped),
            "queued": books.queued,
        }

    def index_empty(self) -> dict[str, Any]:
        return {
            "frames": 0,
            "stills": 0,
            "first_ns": None,
            "last_ns": None,
            "phases": {},
            "segments": [],
        }

    def index_segment(self, scan: Scan, entry: dict[str, Any], totals: dict[str, Any]) -> None:
        from camctl.store.reader import scan_frames  # the reader imports this module for layouts

        entry.update({"frames": 0, "first_ns": None, "last_ns": None, "max_value": None})
        for fr in scan_frames(scan, check_jpeg=False):
            entry["frames"] += 1
            # the run whose clock first_ns/last_ns are on (one run writes a segment: a resumed
            # run opens new ones); 0 for frames without a run (flights before runs)
            entry["run"] = max(entry.get("run", 0), fr.run)
            _span(entry, fr.timestamp_ns, fr.timestamp_ns)
            entry["max_value"] = (
                fr.value if entry["max_value"] is None else max(entry["max_value"], fr.value)
            )
            totals["phases"][fr.phase] = totals["phases"].get(fr.phase, 0) + 1
            totals["stills"] += fr.still
        totals["frames"] += entry["frames"]
        if entry["first_ns"] is not None:
            _span(totals, entry["first_ns"], entry["last_ns"])
        totals["segments"].append(entry)

    def check(self, scan: Scan) -> Iterator[RecordCheck]:
        from camctl.store.reader import scan_frame_checks

        for fr in scan_frame_checks(scan):
            yield RecordCheck(fr.seq, fr.still, fr.jpeg_ok, fr.chunk_offset)


_PLAIN = frozenset((float, int))  # not bool, not a subclass: those take the slow check


@dataclass(frozen=True, slots=True)
class SampleBatch:
    """A batch of typed numeric samples of one sensor source (an IMU, a barometer): one MCAP
    message.

    ``t_ns`` is each sample's time on ``CLOCK_MONOTONIC``; ``rows[i]`` holds sample ``i``'s numbers
    in the order of ``fields`` (units in the field names, e.g. ``accel_x_mps2``).
    """

    source: str
    seq: int
    fields: tuple[str, ...]
    t_ns: tuple[int, ...]
    rows: tuple[tuple[float, ...], ...]
    phase: str = ""
    value: int = int(FrameValue.DESCENT)

    def __post_init__(self) -> None:
        if not self.t_ns or len(self.rows) != len(self.t_ns):
            raise ValueError(
                f"a batch needs one row per time: {len(self.rows)} rows, {len(self.t_ns)} times"
            )
        width = len(self.fields)
        for row in self.rows:
            if len(row) != width:
                raise ValueError(f"row {row!r} does not match fields {self.fields!r}")
        # the fast check (a 1 kHz IMU makes 20 batches a second): every value a plain float or
        # int, and a finite sum (an inf or a nan anywhere makes the sum so); the slow one names
        # the culprit, and lets through what only overflowed the sum
        values = [v for row in self.rows for v in row]
        if not (all(type(v) in _PLAIN for v in values) and math.isfinite(sum(values))):
            for v in values:
                if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
                    raise ValueError(f"sample value {v!r} is not a finite number")

    def to_json(self) -> bytes:
        return json.dumps(
            {
                "seq": self.seq,
                "phase": self.phase,
                "value": int(self.value),
                "fields": list(self.fields),
                "t_ns": list(self.t_ns),
                "rows": [list(r) for r in self.rows],
            },
            separators=(",", ":"),
        ).encode()

    @classmethod
    def from_json(cls, source: str, data: bytes | memoryview) -> SampleBatch:
        """The batch a ``/<source>/samples`` message holds; ValueError when it does not decode."""
        try:
            d = json.loads(bytes(data))
            return cls(
                source=source,
                seq=int(d["seq"]),
                fields=tuple(str(f) for f in d["fields"]),
                t_ns=tuple(int(t) for t in d["t_ns"]),
                rows=tuple(tuple(r) for r in d["rows"]),
                phase=str(d.get("phase", "")),
                value=int(d.get("value", 0)),
            )
        except (KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"not a sample batch: {exc}") from None


CH_SAMPLES = 1
_SAMPLES_SCHEMA = {
    "title": "camctl.SampleBatch",
    "type": "object",
    "properties": {
        "seq": {"type": "integer"},
        "phase": {"type": "string"},
        "value": {"type": "integer"},
        "fields": {"type": "array", "items": {"type": "string"}},
        "t_ns": {"type": "array", "items": {"type": "integer"}},
        "rows": {"type": "array", "items": {"type": "array", "items": {"type": "number"}}},
    },
    "required": ["seq", "fields", "t_ns", "rows"],
}


@lru_cache(maxsize=64)
def _samples_layout(source: str) -> Layout:
    return Layout(
        "samples",
        source,
        (json_schema(1, _SAMPLES_SCHEMA),),
        (
            Channel(
                id=CH_SAMPLES,
                topic=f"/{source}/samples",
                message_encoding="json",
                metadata={},
                schema_id=1,
            ),
        ),
    )


class SamplesKind(SourceKind):
    """Batched numeric samples (:class:`SampleBatch`): ``/<source>/samples`` (JSON); indexed under
    ``sources``."""

    kind = "samples"
    record_type = SampleBatch
    main_topic = "samples"
    noun = "sample batch"
    bad = "does not decode as a sample batch"

    def layout(self, source: str) -> Layout:
        return _samples_layout(source)

    def source_of(self, record: SampleBatch) -> str:
        return record.source

    def seq(self, record: SampleBatch) -> int:
        return record.seq

    def value(self, record: SampleBatch) -> int:
        return record.value

    def room(self, record: SampleBatch) -> int:
        return 64 + 32 * len(record.rows) * (1 + len(record.fields))

    def write(self, seg: SegmentWriter, source: str, record: SampleBatch) -> None:
        t0 = record.t_ns[0]
        seg.add_message(CH_SAMPLES, _wall_of(t0), t0, record.seq, record.to_json())

    def counts(self, record: SampleBatch) -> dict[str, int]:
        return {"samples": len(record.rows)}

    def stats_view(self, books: SourceBooks) -> dict[str, Any]:
        return {
            "records_stored": books.stored,
            "durable_records": books.durable,
            "durable_seq": books.durable_seq,
            "samples_stored": books.extra.get("samples", 0),
            "bytes": books.bytes,
            "segments": books.segments,
            "dropped": dict(books.dropped),
            "queued": books.queued,
        }

    def read(self, scan: Scan) -> Iterator[SampleBatch]:
        """The batches of a scanned segment of this kind (undecodable ones skipped)."""
        for batch, _offset in self._batches(scan):
            if batch is not None:
                yield batch

    def _batches(self, scan: Scan) -> Iterator[tuple[SampleBatch | None, int]]:
        layout = layout_from_channels(scan.channels.values()) or layout_for_path(scan.path)
        if layout.kind != self.kind:
            return
        for chunk in scan.chunks:
            for msg in chunk.messages:
                if msg.channel_id != CH_SAMPLES:
                    continue
                try:
                    yield SampleBatch.from_json(layout.name, msg.data), chunk.start
                except ValueError:
                    yield None, chunk.start

    def index_empty(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "records": 0,
            "samples": 0,
            "first_ns": None,
            "last_ns": None,
            "fields": [],
            "segments": [],
        }

    def index_segment(self, scan: Scan, entry: dict[str, Any], totals: dict[str, Any]) -> None:
        entry.update({"records": 0, "samples": 0, "first_ns": None, "last_ns": None})
        for b in self.read(scan):
            entry["records"] += 1
            entry["samples"] += len(b.rows)
            _span(entry, min(b.t_ns), max(b.t_ns))
            totals["fields"] = totals["fields"] or list(b.fields)
        totals["records"] += entry["records"]
        totals["samples"] += entry["samples"]
        if entry["first_ns"] is not None:
            _span(totals, entry["first_ns"], entry["last_ns"])
        totals["segments"].append(entry)

    def check(self, scan: Scan) -> Iterator[RecordCheck]:
        for batch, chunk_offset in self._batches(scan):
            yield RecordCheck(
                -1 if batch is None else batch.seq, False, batch is not None, chunk_offset
            )


# --- sensors: one MCAP message per sample, one schema per sensor kind ---------------------------
# The fields of each sensor kind, in a SampleBatch's row order (units in the names). accel_g is
# |a| in standard gravities (9.80665 m/s^2), kept beside the axes so a plot of the one number that
# tells rest (1), free fall (0), a canopy shock and an impact needs no maths in the viewer.
G = 9.80665
IMU_FIELDS: tuple[str, ...] = (
    "accel_x_mps2", "accel_y_mps2", "accel_z_mps2", "gyro_x_dps", "gyro_y_dps", "gyro_z_dps",
    "accel_g",
)
BARO_FIELDS: tuple[str, ...] = ("pressure_pa", "temperature_c", "altitude_m")
# decimals kept per field on flash: below each part's resolution (LSM6DSOX +-16 g: 0.488 mg/LSB =
# 0.0048 m/s^2; gyro 2000 dps: 70 mdps/LSB; BMP390: 0.016 Pa, 0.005 C), so rounding loses nothing
# the part measured and a sample is ~60 % of its full-repr size
_DECIMALS = {"accel_x_mps2": 4, "accel_y_mps2": 4, "accel_z_mps2": 4, "gyro_x_dps": 3,
             "gyro_y_dps": 3, "gyro_z_dps": 3, "accel_g": 4, "pressure_pa": 2,
             "temperature_c": 3, "altitude_m": 3}
CH_SENSOR = 1


def _sensor_schema(title: str, fields: tuple[str, ...]) -> dict[str, Any]:
    props: dict[str, Any] = {"t_ns": {"type": "integer",
                                      "description": "sample time, CLOCK_MONOTONIC ns"}}
    props.update({f: {"type": "number"} for f in fields})
    props["batch"] = {
        "type": "object",
        "description": "on a batch's first sample only: its sample count, phase and value",
        "properties": {"n": {"type": "integer"}, "phase": {"type": "string"},
                       "value": {"type": "integer"}},
    }
    return {"title": title, "type": "object", "properties": props,
            "required": ["t_ns", *fields]}


class SensorKind(SamplesKind):
    """A sensor's samples (:class:`SampleBatch` with this kind's :attr:`fields`), written as one
    JSON message per sample on ``/<source>/<kind>`` with a typed JSON schema per kind.

    Why one message per sample and JSON: Foxglove's Plot panel plots a numeric field of a message
    over its log time (``/imu/imu.accel_g``) with no user script, which a batch (arrays in one
    message) would not give; Foxglove's own schemas have no IMU or pressure type, and a ROS
    ``sensor_msgs/Imu`` would need CDR encoding and a covariance we do not have. A batch is still
    the unit of durability, seq, value and shedding: its samples share the MCAP sequence (the
    batch's seq), sit in one chunk, and the first carries ``batch.n`` so a reader knows the batch is
    whole.
    """

    fields: ClassVar[tuple[str, ...]]
    title: ClassVar[str]

    def layout(self, source: str) -> Layout:
        return _sensor_layout(source, self.kind)

    def schema(self) -> dict[str, Any]:
        return _sensor_schema(self.title, self.fields)

    def room(self, record: SampleBatch) -> int:
        return 64 + len(record.rows) * (48 + 24 * len(self.fields))

    def units(self, record: SampleBatch) -> int:
        # the sampler's ledger counts samples (captured, store_refused): the store's drops of a
        # sensor count them too, so captured = stored + dropped balances in one unit
        return len(record.rows)

    def stats_view(self, books: SourceBooks) -> dict[str, Any]:
        """As :class:`SamplesKind`'s, with ``dropped`` {reason: samples} (a batch dropped counts
        its samples, the ledger's unit)."""
        return super().stats_view(books)

    def write(self, seg: SegmentWriter, source: str, record: SampleBatch) -> None:
        if record.fields != self.fields:
            raise ValueError(f"{self.kind} source {source!r} takes fields {self.fields!r}, "
                             f"got {record.fields!r}")
        nd = [_DECIMALS.get(f, 6) for f in self.fields]
        head = {"n": len(record.rows), "phase": record.phase, "value": int(record.value)}
        offset = time.time_ns() - time.monotonic_ns()
        for i, (t, row) in enumerate(zip(record.t_ns, record.rows, strict=True)):
            msg: dict[str, Any] = {"t_ns": t}
            for f, d, v in zip(self.fields, nd, row, strict=True):
                msg[f] = round(float(v), d)
            if i == 0:
                msg["batch"] = head
            seg.add_message(CH_SENSOR, t + offset, t, record.seq,
                            json.dumps(msg, separators=(",", ":")).encode())

    def _batches(self, scan: Scan) -> Iterator[tuple[SampleBatch | None, int]]:
        layout = layout_from_channels(scan.channels.values()) or layout_for_path(scan.path)
        if layout.kind != self.kind:
            return
        for chunk in scan.chunks:
            group: list[tuple[int, bytes | memoryview]] = []
            for msg in chunk.messages:
                if msg.channel_id != CH_SENSOR:
                    continue
                if group and msg.sequence != group[0][0]:
                    yield self._batch(layout.name, group), chunk.start
                    group = []
                group.append((msg.sequence, msg.data))
            if group:
                yield self._batch(layout.name, group), chunk.start

    def _batch(self, source: str, group: list[tuple[int, bytes | memoryview]]) -> (
            SampleBatch | None):
        """The batch one run of same-sequence messages holds; None when any sample does not
        decode or the run is not the whole batch its first sample announced."""
        try:
            msgs = [json.loads(bytes(data)) for _, data in group]
            head = msgs[0]["batch"]
            if int(head["n"]) != len(msgs):
                return None
            return SampleBatch(
                source=source, seq=group[0][0], fields=self.fields,
                t_ns=tuple(int(m["t_ns"]) for m in msgs),
                rows=tuple(tuple(float(m[f]) for f in self.fields) for m in msgs),
                phase=str(head.get("phase", "")), value=int(head.get("value", 0)))
        except (KeyError, TypeError, ValueError, AttributeError):
            return None

    def index_empty(self) -> dict[str, Any]:
        return {**super().index_empty(), "fields": list(self.fields)}


class ImuKind(SensorKind):
    """An IMU's samples: ``/<source>/imu`` (``camctl.Imu``: accelerometer m/s^2, gyroscope deg/s,
    |a| in g)."""

    kind = "imu"
    main_topic = "imu"
    fields = IMU_FIELDS
    title = "camctl.Imu"
    noun = "IMU sample batch"
    bad = "does not decode as a whole IMU sample batch"


class BaroKind(SensorKind):
    """A barometer's samples: ``/<source>/baro`` (``camctl.Barometer``: Pa, deg C, m)."""

    kind = "baro"
    main_topic = "baro"
    fields = BARO_FIELDS
    title = "camctl.Barometer"
    noun = "barometer sample batch"
    bad = "does not decode as a whole barometer sample batch"


@lru_cache(maxsize=64)
def _sensor_layout(source: str, kind: str) -> Layout:
    k = KINDS[kind]
    assert isinstance(k, SensorKind)
    return Layout(
        kind,
        source,
        (json_schema(1, k.schema()),),
        (Channel(id=CH_SENSOR, topic=f"/{source}/{k.main_topic}", message_encoding="json",
                 metadata={}, schema_id=1),),
    )


CAMERA = CameraKind()
SAMPLES = SamplesKind()
IMU = ImuKind()
BARO = BaroKind()
KINDS: Mapping[str, SourceKind] = {k.kind: k for k in (CAMERA, SAMPLES, IMU, BARO)}
SENSOR_KINDS: Mapping[str, SensorKind] = {IMU.kind: IMU, BARO.kind: BARO}


def _agree(channels: list[Channel], layout: Layout) -> bool:
    """Every surviving Channel record is the layout's channel of that id (bit rot in a topic string
    is not covered by any CRC: a record that parses but disagrees is not trusted)."""
    want = {c.id: c.topic for c in layout.channels}
    return all(want.get(c.id) == c.topic for c in channels)


def layout_from_channels(channels: Iterable[Channel]) -> Layout | None:
    """The layout the first recognised Channel record names, if every surviving one agrees; else
    None."""
    channels = list(channels)
    for ch in channels:
        found = events_layout() if ch.topic == "/events" else None
        for k in KINDS.values():
            name = k.source_of_topic(ch.topic) if found is None else None
            if name:
                found = k.layout(name)
        if found is not None:
            return found if _agree(channels, found) else None
    return None


def source_kinds(flight_dir: Path) -> dict[str, str]:
    """Source name -> kind for the non-camera sources ``flight.json`` lists (``{}`` when it lists
    none)."""
    try:
        data = json.loads((Path(flight_dir) / "flight.json").read_text(encoding="utf-8"))
        kinds = data.get("sources", {}) if isinstance(data, dict) else {}
        return (
            {str(k): str(v) for k, v in kinds.items() if v in KINDS}
            if isinstance(kinds, dict)
            else {}
        )
    except (OSError, ValueError):
        return {}


def layout_for_path(path: Path) -> Layout:
    """The layout a segment at ``<flight>/<source-or-events>/<seq>.mcap`` was written with (by its
    dir, and the kind ``flight.json`` gives that source; a camera when it gives none)."""
    parent = Path(path).parent
    if parent.name == EVENTS:
        return events_layout()
    kind = source_kinds(parent.parent).get(parent.name, "camera")
    return KINDS[kind].layout(parent.name)
