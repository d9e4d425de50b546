"""The flash store: MCAP segments per camera, an event log, group commits, recovery, index, quota.

Layout of one flight::

    <root>/<flight>/flight.json          board, flight id, created wall time, camera names
    <root>/<flight>/<camera>/000001.mcap frames: /<camera>/image|still (foxglove.CompressedImage), /<camera>/meta
    <root>/<flight>/events/000001.mcap   /events (JSON) mirrored as /log (foxglove.Log)
    <root>/<flight>/index.json           per-camera counts and per-segment size/sha256 (written by finish()),
                                         and the losses recovery recorded in the event log

Modules: ``_records`` (record layouts), ``_segment`` (streaming segment writer), ``_salvage`` (scanner),
``_repair`` (in-place repair), ``writer`` (FlightStore), ``reader`` (``pick_frames`` seeks chosen frames
through a finished segment's index), ``verify``, ``recovery`` (boot),
``index``, ``quota``.

Example::

    >>> store = FlightStore(root, "rig-a", new_flight_id(root=root), StoreConfig(), cameras=["down"])  # doctest: +SKIP
    >>> store.put(frame); store.commit(wait=True); store.close()                                   # doctest: +SKIP
    >>> verify(root / store.flight).exit_code                                                       # doctest: +SKIP
    0
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
