"""The event log's records in MCAP: one JSON record on ``/events``, mirrored as a ``foxglove.Log``.

:func:`add_event` writes one record into an open events segment (the writer thread's path);
:func:`append_events` logs records into a finished flight as a new, finished segment (recovery's
path).
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path

from foxglove_schemas_protobuf.Log_pb2 import Log

from camctl.common.records import DropRecord, FaultRecord, LossRecord, QuotaRecord
from camctl.store._records import CH_EVENTS, CH_LOG, events_layout
from camctl.store._segment import SegmentWriter
from camctl.store.index import fsync_dir
from camctl.store.reserve import find_reserve, with_reserve
from camctl.store.sources import EVENTS

__all__ = ["add_event", "append_events"]

_SEGMENT_ROOM = 16 << 10  # a segment's header, summary and footer, roughly

# the foxglove.Log level of a record by its kind (a record of any other kind is INFO)
_LEVELS = {FaultRecord.KIND: Log.ERROR, DropRecord.KIND: Log.WARNING,
           QuotaRecord.KIND: Log.WARNING, LossRecord.KIND: Log.WARNING}


def add_event(seg: SegmentWriter, rec: dict, n: int) -> None:
    """One event record: JSON on ``/events``, mirrored as a ``foxglove.Log`` on ``/log``."""
    mono = int(rec.get("mono_ns") or time.monotonic_ns())
    wall = int(rec.get("wall_ns") or time.time_ns())
    # log_time wall clock (Foxglove's convention), publish_time the monotonic time, as for frames
    seg.add_message(CH_EVENTS, wall, mono, n, json.dumps(rec, default=str).encode())
    level = _LEVELS.get(str(rec.get("kind")), Log.INFO)
    text = " ".join(f"{k}={v}" for k, v in rec.items() if k not in ("mono_ns", "wall_ns"))
    log = Log(level=level, message=text, name="camctl")
    log.timestamp.FromNanoseconds(wall)
    seg.add_message(CH_LOG, wall, mono, n, log.SerializeToString())


def append_events(flight_dir: Path, records: Sequence[dict]) -> Path:
    """Log ``records`` into a finished flight: a new, finished segment in its ``events/`` dir (a
    finished flight's files are immutable, so what is logged later goes to a new file). Used by
    recovery to put what it cut into the flight's own event log; kilobytes, fsync'd with its
    directory; on a full disk the room comes from the store's full-disk reserve."""
    d = Path(flight_dir) / EVENTS
    d.mkdir(exist_ok=True)
    stamped = []
    for rec in records:
        rec = dict(rec)
        rec.setdefault("mono_ns", time.monotonic_ns())
        rec.setdefault("wall_ns", time.time_ns())
        stamped.append(rec)

    def write() -> Path:  # retryable: a failed try leaves no file
        seq = max((int(p.stem) for p in d.glob("*.mcap") if p.stem.isdigit()), default=0) + 1
        path = d / f"{seq:06d}.mcap"
        try:
            seg = SegmentWriter(path, events_layout())
        except FileExistsError:
            raise
        except BaseException:  # created, but its header did not fit: no empty file left behind
            path.unlink(missing_ok=True)
            raise
        try:
            for n, rec in enumerate(stamped):
                add_event(seg, rec, n)
            seg.finish()
        except BaseException:
            seg.close()
            seg.path.unlink(missing_ok=True)
            raise
        return seg.path

    # on a full disk (a boot repair's loss records) the room comes from the store's reserve
    need = _SEGMENT_ROOM + sum(2 * len(json.dumps(r, default=str)) + 256 for r in stamped)
    path = with_reserve(find_reserve(d), need, write)
    fsync_dir(d)
    return path
