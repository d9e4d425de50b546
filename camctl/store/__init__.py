"""The flash store: MCAP segments per source, an event log, group commits, recovery, index, quota.

A flight holds named sources (:mod:`camctl.store.sources`: cameras, and sensors' batched samples).
Layout of one flight::

    <flight>/flight.json          board, flight id, created wall time, camera names, and
                                  ``sources`` {name: kind} when there are sources of other kinds
    <flight>/<camera>/000001.mcap /<camera>/image|still (foxglove.CompressedImage), /<camera>/meta
    <flight>/<source>/000001.mcap a samples source: /<source>/samples (JSON sample batches)
    <flight>/events/000001.mcap   /events (JSON) mirrored as /log (foxglove.Log)
    <flight>/index.json           ``cameras`` per camera, ``sources`` per source of another kind
                                  (only when the flight has one), ``events``, per-segment size and
                                  sha256 (written by finish()), and the losses recovery recorded

Modules: ``sources`` (source kinds), ``_records`` (record layouts), ``_segment`` (streaming segment
writer), ``_salvage`` (scanner), ``_repair`` (in-place repair), ``writer`` (FlightStore, the caller
side), ``_committer`` (its writer thread), ``_files`` (open segments), ``_space`` (free space and
quota), ``_books`` (per-source ledger), ``_eventlog``, ``reader`` (``pick_frames`` seeks chosen
frames through a finished segment's index), ``verify``, ``recovery`` (boot), ``index``, ``quota``.

Example::

    >>> store = FlightStore(root, "rig-a", "F1", StoreConfig(), cameras=["down"],  # doctest: +SKIP
    ...                     sources=[Source("baro", "samples")])
    >>> store.put(frame); store.commit(wait=True); store.close()                   # doctest: +SKIP
    >>> verify(root / store.flight).exit_code                                      # doctest: +SKIP
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
