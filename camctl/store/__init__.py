"""The flash store: MCAP segments per source, an event log, group commits, recovery, index, quota.

A flight is a folder of named sources (:mod:`camctl.store.sources`: cameras, and sensors' batched
samples), each with its own MCAP segments, plus ``events/`` (the event log), ``flight.json`` and,
once finished, ``index.json``. :class:`FlightStore` (``writer``) is the caller side; ``reader``,
``verify``, ``recovery`` (boot), ``index`` and ``quota`` (the full-disk policy) are the rest of the
public API. The layout of a flight, the modules one by one and an example: docs/store.md.
"""

from camctl.store.index import build_index, load_index
from camctl.store.quota import QuotaLevel, QuotaPolicy
from camctl.store.reader import StoredFrame, iter_events, iter_frames, iter_samples, pick_frames
from camctl.store.recovery import recover_store, verify_later
from camctl.store.sources import KINDS, SampleBatch, Source, SourceKind
from camctl.store.verify import (
    CameraReport,
    SourceReport,
    VerifyReport,
    render_report,
    repair_segment,
    verify,
)
from camctl.store.writer import FlightStore, list_flights, new_flight_id

__all__ = [
    "KINDS",
    "CameraReport",
    "FlightStore",
    "QuotaLevel",
    "QuotaPolicy",
    "SampleBatch",
    "Source",
    "SourceKind",
    "SourceReport",
    "StoredFrame",
    "VerifyReport",
    "build_index",
    "iter_events",
    "iter_frames",
    "iter_samples",
    "list_flights",
    "load_index",
    "new_flight_id",
    "pick_frames",
    "recover_store",
    "render_report",
    "repair_segment",
    "verify",
    "verify_later",
]
