"""``camctl verify``: integrity check and repair of segments, camera dirs, flights or a whole store.

Every ``.mcap`` is salvage-scanned (:func:`camctl.store._salvage.scan_segment`): chunk CRCs checked,
torn tails and damaged byte ranges reported, every JPEG header decoded. With ``repair=True`` a
segment that is not a clean finished MCAP is repaired in place (:mod:`camctl.store._repair`: damaged
ranges covered by LOST records, torn tail cut, summary and footer appended; kilobytes, atomic
against a power cut) into a finished one that keeps every CRC-valid chunk. Only where damage leaves
no room for in-place records is the file rewritten beside itself and renamed over. Each chunk's
MessageIndex records are checked against the messages the scan parsed (MCAP has no CRC over them);
wrong ones make the segment repairable and repair rebuilds them. Stale or missing ``index.json``
files are rebuilt, keeping what the old one recorded; leftover repair temp files are removed.

A segment the flight's index.json lists as finished held durable frames: whatever it lost since (cut
short, zeroed, damaged) is a loss of durable frames, named by seq and reason, never a torn tail.
Every loss found is a :class:`~camctl.common.records.LossRecord` with its exact ``seqs``
(:func:`camctl.store._repair.describe_losses`); with ``repair=True`` it goes to the flight's event
log before index.json changes. Losses recorded earlier (event log, index, LOST records) are listed
and make the result "losses recorded", never "clean".

A download (:func:`is_download`: a flight ``camctl fetch`` wrote) is not the board's store: a
segment its index.json lists and the folder does not hold was not fetched (the board still has it),
which is no loss. Verify says "incomplete download: N segments not fetched (names)" and never
"clean"; it records no loss for it, and ``repair=True`` leaves index.json as the board wrote it
(rebuilt for another reason, it keeps the board's entries of the segments not fetched). A download
of previews only (``camctl fetch --thumbs-only``: no segment at all) says "previews only".

Results (:attr:`VerifyReport.status`, :data:`RESULTS`), each with its exit code (the printed one
and ``camctl verify``'s): ``clean`` 0; ``losses recorded``, ``damaged`` (bad JPEGs or records),
``repairable``, ``repaired``, ``frames lost, repairable``, ``frames lost, recorded``, ``incomplete
download``, ``previews only`` 1 (a download without every segment cannot be said to hold every
frame intact, which is what 0 says; a script checking a download before the board is wiped must not
pass a previews-only one);
``UNRECOVERABLE`` 2 (a file with nothing to salvage, a failed repair, a flight whose
index/flight.json cannot be rebuilt).

Example::

    >>> report = verify(Path("/var/lib/camctl"), repair=True)        # doctest: +SKIP
    >>> print(render_report(report, plain=True)); raise SystemExit(report.exit_code)
"""

from __future__ import annotations

import contextlib
import io
import json
import mmap
import os
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from camctl.common.losses import describe_loss
from camctl.common.records import LossRecord, read
from camctl.exc import StoreCorruptError
from camctl.store._records import MAGIC
from camctl.store._repair import costs_frames, describe_losses, repair_in_place
from camctl.store._salvage import Scan, scan_segment
from camctl.store._segment import SegmentWriter
from camctl.store.index import (
    FLIGHT_NAME,
    INDEX_NAME,
    build_index,
    fsync_dir,
    gone_segment_loss,
    index_is_stale,
    read_flight_json,
    read_index_json,
    segment_entries,
    write_json_reserved,
)
from camctl.store.reader import layout_of, scan_events
from camctl.store.reserve import find_reserve
from camctl.store.sources import CAMERA, KINDS, SamplesKind, SourceKind

__all__ = ["RESULTS", "CameraReport", "SourceReport", "VerifyReport", "is_download",
           "log_losses", "render_report", "repair_segment", "verify", "verify_segments"]

_TMP_SUFFIX = ".repair.tmp"
# every result verify can say, and its exit code: 0 nothing wrong, 2 a file beyond repair, 1 the
# rest (something repaired, to repair, damaged, or frames lost now or earlier)
RESULTS = {"clean": 0, "losses recorded": 1, "damaged": 1, "repairable": 1, "repaired": 1,
           "frames lost, repairable": 1, "frames lost, recorded": 1, "incomplete download": 1,
           "previews only": 1, "UNRECOVERABLE": 2}
_MAP_MIN = 1 << 20  # smaller segments are read whole


@dataclass
class CameraReport:
    """Counts for one camera (or ``events``: ``frames`` then counts event records)."""

    frames: int = 0
    stills: int = 0
    bytes: int = 0
    segments: int = 0
    repaired_segments: int = 0
    bad_frames: int = 0
    lost_bytes: int = 0  # bytes found damaged now, plus those an earlier repair recorded as lost


@dataclass
class SourceReport:
    """Counts for one source of a kind other than camera (``records`` in its kind's unit)."""

    kind: str
    records: int = 0
    samples: int = 0  # a samples or sensor source's samples in its whole records
    bytes: int = 0
    segments: int = 0
    repaired_segments: int = 0
    bad_records: int = 0
    lost_bytes: int = 0


@dataclass
class VerifyReport:
    """What :func:`verify` found (and did). ``lost_chunks`` are ``(path, start, end)`` byte
    ranges."""

    path: str
    cameras: dict[str, CameraReport] = field(default_factory=dict)
    sources: dict[str, SourceReport] = field(default_factory=dict)  # non-camera sources
    events: int = 0
    lost_chunks: list[tuple[str, int, int]] = field(default_factory=list)
    # (path, start, end, what the LOST record says) for ranges an earlier repair cut: known, not new
    # damage
    recorded_losses: list[tuple[str, int, int, dict]] = field(default_factory=list)
    # the losses this run found, not recorded before: LossRecord.encode() dicts, as the event log
    # holds them (see camctl.store._repair.describe_losses), each with its exact seqs; with
    # repair=True what the repairs cut or skipped (and any loss of durable frames), also appended
    # to each flight's event log
    losses: list[dict] = field(default_factory=list)
    # losses recorded earlier (the event log, index.json's losses, LOST records in the segments):
    # LossRecord.encode() dicts; one that cost durable frames makes the result "losses recorded"
    losses_recorded: list[dict] = field(default_factory=list)
    repairable: list[str] = field(default_factory=list)
    repaired: list[str] = field(default_factory=list)
    unrecoverable: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    # a download's segments its index lists and the folder does not hold (the board still has
    # them): "down/000002.mcap", behind the board's folder when verify started above it
    not_fetched: list[str] = field(default_factory=list)
    # downloads of previews only (no segment fetched): each flight's path
    previews_only: list[str] = field(default_factory=list)
    # called with each segment's path once it is checked (progress bars); not part of the result
    on_segment: Callable[[Path], None] | None = field(default=None, repr=False, compare=False)

    @property
    def bad_frames(self) -> int:
        return sum(c.bad_frames for c in self.cameras.values())

    @property
    def status(self) -> str:
        """The result in words (a key of :data:`RESULTS`): the one source of both the printed
        result and the exit code."""
        if self.unrecoverable:
            return "UNRECOVERABLE"
        if any(costs_frames(LossRecord.decode(d)) for d in self.losses):
            return "frames lost, recorded" if self.repaired or not self.repairable \
                else "frames lost, repairable"
        if self.repaired:
            return "repaired"
        if self.repairable:
            return "repairable"
        if self.lost_chunks or self.bad_frames or any(s.bad_records for s in self.sources.values()):
            return "damaged"
        if self.not_fetched:
            return "incomplete download"
        if self.previews_only:
            return "previews only"
        if any(costs_frames(LossRecord.decode(d)) for d in self.losses_recorded):
            return "losses recorded"
        return "clean"

    @property
    def exit_code(self) -> int:
        """The exit code of :attr:`status` (``camctl verify`` exits with it)."""
        return RESULTS[self.status]

    def to_dict(self) -> dict:
        d = asdict(self)
        d.pop("on_segment", None)
        d["lost_chunks"] = [list(t) for t in self.lost_chunks]
        d["recorded_losses"] = [list(t) for t in self.recorded_losses]
        d["bad_frames"] = self.bad_frames
        d["status"] = self.status
        d["exit_code"] = self.exit_code
        return d

    def _cam(self, name: str) -> CameraReport:
        return self.cameras.setdefault(name, CameraReport())

    def _source(self, name: str, kind: SourceKind) -> CameraReport | SourceReport:
        if kind is CAMERA:
            return self._cam(name)
        return self.sources.setdefault(name, SourceReport(kind.kind))


@dataclass
class _Evidence:
    """What a flight recorded: its index.json's entry per segment (a finished one's
    ``seq_ranges``) and the losses recorded so far (the index's, the event log's, LOST records'),
    so verify tells a loss of durable frames from a torn tail and records no loss twice."""

    flight: Path | None = None
    entries: dict[str, dict] = field(default_factory=dict)
    recorded: dict[tuple, LossRecord] = field(default_factory=dict)

    @classmethod
    def of(cls, flight: Path | None, report: VerifyReport,
           index: dict | None = None) -> _Evidence:
        """The evidence of ``flight`` from its ``index`` (default: its index.json as on disk)."""
        if flight is None:
            return cls()
        if index is None:
            index = read_index_json(flight)
        ev = cls(flight, segment_entries(index))
        losses = index.get("losses")
        for d in losses if isinstance(losses, list) else ():
            if isinstance(d, dict):
                ev.add({**d, "kind": LossRecord.KIND}, report)
        return ev

    def add(self, d: dict, report: VerifyReport) -> None:
        """One loss recorded earlier (a dict as the event log holds it), once."""
        try:
            loss = LossRecord.decode(d)
        except (ValueError, TypeError):
            return
        key = (loss.segment, loss.range, loss.reason, loss.seqs)
        if key not in self.recorded:
            self.recorded[key] = loss
            report.losses_recorded.append(
                {k: v for k, v in loss.encode().items() if k not in ("mono_ns", "wall_ns")})

    def entry(self, path: Path) -> dict | None:
        """The segment's index entry, if the flight's index lists it."""
        if self.flight is None:
            return None
        try:
            return self.entries.get(path.relative_to(self.flight).as_posix())
        except ValueError:
            return None

    def seqs(self, segment: str) -> set[int]:
        """The seqs of ``segment`` (``down/000001.mcap``) a recorded loss already names."""
        return {q for loss in self.recorded.values() if loss.segment == segment
                for q in loss.seqs or ()}


def _enclosing_flight(path: Path) -> Path | None:
    """The flight a segment or a source dir is in (its index holds their evidence), if any."""
    for d in (path.parent, path.parent.parent) if path.is_file() else (path.parent,):
        if (d / INDEX_NAME).is_file():
            return d
    return None


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def repair_segment(path: Path, scan: Scan | None = None, *,
                   before_rename: Callable[[Path], None] | None = None,
                   after_fix: Callable[[], None] | None = None,
                   losses: list[LossRecord] | None = None) -> int:
    """Make ``path`` a finished MCAP keeping every CRC-valid chunk; return the messages kept.

    In place when it can be (see :mod:`camctl.store._repair`; ``after_fix()`` is its test seam).
    Otherwise (an empty file, or damage too small to hold a LOST record) a new file is written
    beside the old one, fsync'd, renamed over it and the directory fsync'd;
    ``before_rename(tmp_path)`` is that path's seam. ``losses`` (from
    :func:`camctl.store._repair.describe_losses`) is written into the LOST records.
    """
    path = Path(path)
    scan = scan or scan_segment(path)
    if not scan.salvageable:
        raise StoreCorruptError(str(path), "not an MCAP file: nothing to salvage", 0)
    layout = layout_of(scan)
    if not scan.never_committed:
        kept = repair_in_place(path, scan, layout, after_fix=after_fix, losses=losses)
        if kept is not None:
            return kept
    by_topic = {c.topic: c.id for c in layout.channels}
    remap = {cid: by_topic.get(c.topic, cid) for cid, c in scan.channels.items()}
    known = {c.id for c in layout.channels}
    tmp = path.with_name(path.name + _TMP_SUFFIX)
    tmp.unlink(missing_ok=True)
    kept = 0
    writer = SegmentWriter(tmp, layout)
    try:
        for chunk in scan.chunks:
            for msg in chunk.messages:
                cid = remap.get(msg.channel_id, msg.channel_id)
                if cid in known:
                    writer.add_message(cid, msg.log_time, msg.publish_time, msg.sequence, msg.data)
                    kept += 1
            writer.close_chunk()  # keep the original chunk grouping
        writer.finish()
    except BaseException:
        writer.close()
        tmp.unlink(missing_ok=True)
        raise
    if before_rename is not None:
        before_rename(tmp)
    os.replace(tmp, path)
    fsync_dir(path.parent)
    return kept


def _map_if_finished(path: Path) -> mmap.mmap | None:
    """A read-only map of a finished segment (ends in the MCAP magic), else None (then it is read
    whole).

    A finished segment is immutable, so mapping it is safe (a file truncated under a map would
    fault); the map saves copying the file, and the kernel reads it ahead while its CRCs are
    checked.
    """
    try:
        with open(path, "rb", buffering=0) as f:
            size = os.fstat(f.fileno()).st_size
            if size < _MAP_MIN or os.pread(f.fileno(), len(MAGIC), size - len(MAGIC)) != MAGIC:
                return None
            mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    except (OSError, ValueError):
        return None
    for advice in ("MADV_SEQUENTIAL", "MADV_WILLNEED"):
        if hasattr(mmap, advice):
            with contextlib.suppress(OSError):
                mm.madvise(getattr(mmap, advice))
    return mm


def _verify_segment(report: VerifyReport, path: Path, repair: bool, camera: str | None,
                    evidence: _Evidence | None = None) -> None:
    try:
        _check_segment(report, path, repair, camera, evidence or _Evidence())
    finally:
        if report.on_segment is not None:
            report.on_segment(path)


def _check_segment(report: VerifyReport, path: Path, repair: bool, camera: str | None,
                   evidence: _Evidence) -> None:
    scan = scan_segment(path, _map_if_finished(path))
    entry = evidence.entry(path)
    # a segment the index lists as finished held durable frames: whatever it lost since is a loss
    indexed = bool(entry and (entry.get("finished") or entry.get("seq_ranges")))
    # (overwritten beyond salvage, it still had its path's layout: its loss can be named)
    layout = layout_of(scan) if scan.salvageable or indexed else None
    name = camera or (layout.name if layout else path.parent.name)
    segment = f"{path.parent.name}/{path.name}"
    for s, e, info in scan.marked:  # what an earlier repair wrote where it cut
        evidence.add({"camera": name, "segment": segment, "range": [s, e], **info,
                      "kind": LossRecord.KIND}, report)
    # a torn tail is the uncommitted end of a cut file, not lost data -- unless it is a whole record
    # that fails its check, or the file ends in the magic of a finished segment, or the index
    # recorded the segment finished: then it is damage
    lost = [(s, e) for s, e in scan.lost
            if s != scan.torn_at or scan.tail_magic or scan.tail_damaged or indexed]
    is_events = name == "events" or (layout is not None and layout.kind == "events")
    losses = []
    if layout is not None and (not scan.clean or indexed):
        losses = describe_losses(path, scan, layout, indexed=entry,
                                 recorded=evidence.seqs(segment))
        lost += [loss.range for loss in losses
                 if loss.range is not None and loss.range[0] >= scan.size]
    report.lost_chunks.extend((str(path), s, e) for s, e in lost)
    report.recorded_losses.extend((str(path), s, e, info) for s, e, info in scan.marked)
    report.errors.extend(f"{path}: {e}" for e in scan.errors)
    # No CRC-valid chunk at all: beyond repair unless exactly one whole record fails and the layout
    # is unknown. A single whole record failing its check with nothing committed before it is also
    # what a power cut leaves when a commit's header page reached the disk and some of its data
    # pages did not (torn writeback, tests/test_powercut.py 'pages' mode): repair marks the range as
    # lost and finishes the file.
    # A segment the index recorded finished that lost every chunk is repaired into an empty one
    # whose LOST record, like the event log, names what it held.
    dead = not scan.salvageable or (not scan.chunks and bool(lost) and not scan.never_committed
                                    and not indexed
                                    and (layout is None or scan.tail_records != 1))
    if is_events:
        records = list(scan_events(scan))
        report.events += len(records)
        for rec in read(records):
            if isinstance(rec, LossRecord):
                evidence.add(rec.encode(), report)
    else:
        kind = KINDS.get(layout.kind if layout else "", CAMERA)
        _count_records(report, path, scan, name, kind, lost)
    # a loss of durable frames is recorded even when the file cannot be (or need not be) repaired
    durable = [loss.encode() for loss in losses if costs_frames(loss)]
    if dead:
        report.unrecoverable.append(str(path))
        report.losses.extend(durable)
        if not scan.salvageable:
            report.errors.append(f"{path}: not an MCAP file (bad magic), nothing to salvage")
        return
    if scan.clean:
        if durable:  # finished and readable, but without frames its index recorded
            report.losses.extend(durable)
            if not repair:
                report.repairable.append(str(path))
        return
    if scan.torn_at is not None:
        report.errors.append(f"{path}: torn at byte {scan.torn_at} ({scan.torn_reason}); "
                             f"{scan.size - scan.torn_at} bytes after the last complete record cut")
    if not repair:
        report.losses.extend(loss.encode() for loss in losses)
        report.repairable.append(str(path))
        return
    try:
        repair_segment(path, scan, losses=losses)
    except OSError as exc:
        report.unrecoverable.append(str(path))
        report.losses.extend(durable)
        report.errors.append(f"{path}: repair failed: {exc}")
        return
    report.repaired.append(str(path))
    report.losses.extend(loss.encode() for loss in losses)
    if name != "events":
        kind = KINDS.get(layout.kind if layout else "", CAMERA)
        report._source(name, kind).repaired_segments += 1


def _count_records(report: VerifyReport, path: Path, scan: Scan, name: str, kind: SourceKind,
                   lost: list[tuple[int, int]]) -> None:
    """A source segment's counts: its records, checked by its kind (a camera's: JPEG headers)."""
    counts = report._source(name, kind)
    counts.segments += 1
    counts.bytes += scan.size
    counts.lost_bytes += sum(e - s for s, e in lost) + sum(e - s for s, e, _ in scan.marked)
    for rec in kind.check(scan):
        if isinstance(counts, CameraReport):
            counts.frames += 1
            counts.stills += rec.still
        else:
            counts.records += 1
        if not rec.ok:
            if isinstance(counts, CameraReport):
                counts.bad_frames += 1
            else:
                counts.bad_records += 1
            report.errors.append(f"{path}: {kind.noun} seq {rec.seq} "
                                 f"(chunk at byte {rec.chunk_offset}) {kind.bad}")
    if isinstance(counts, SourceReport) and isinstance(kind, SamplesKind):
        counts.samples += sum(len(b.rows) for b in kind.read(scan))


class _ReadAhead:
    """A thread that reads segments through the page cache just ahead of the checker, so the disk
    and the CRC/JPEG checks overlap (as a plain sequential ``read()`` would stream). It stays at
    most one segment ahead of :meth:`reached`, so the page cache it fills is bounded by two
    segments.
    """

    def __init__(self, paths: list[Path]) -> None:
        self._paths = paths
        self._at = 0
        self._stop = False
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._run, name="verify-readahead", daemon=True)
        if len(paths) > 0:
            self._thread.start()

    def _run(self) -> None:
        buf = bytearray(1 << 20)
        for i, path in enumerate(self._paths):
            with self._cond:
                while not self._stop and i > self._at + 1:
                    self._cond.wait()
                if self._stop:
                    return
            try:
                with open(path, "rb", buffering=0) as f:
                    while not self._stop and f.readinto(buf):
                        pass
            except OSError:
                continue

    def reached(self, path: Path) -> None:
        with self._cond:
            with contextlib.suppress(ValueError):
                self._at = self._paths.index(path)
            self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        if self._thread.is_alive():
            self._thread.join()


def _segments(d: Path) -> list[Path]:
    return sorted(d.glob("*.mcap"))


def _verify_dir(report: VerifyReport, d: Path, repair: bool, camera: str | None, *,
                ahead: _ReadAhead | None = None, evidence: _Evidence | None = None) -> None:
    # a repair killed before its rename: old file is intact
    for tmp in sorted(d.glob("*" + _TMP_SUFFIX)):
        if repair:
            tmp.unlink(missing_ok=True)
            report.repaired.append(str(tmp))
        else:
            report.repairable.append(str(tmp))
    segs = _segments(d)
    own = ahead is None
    if own:
        ahead = _ReadAhead(segs)
    try:
        for seg in segs:
            ahead.reached(seg)
            _verify_segment(report, seg, repair, camera, evidence)
    finally:
        if own:
            ahead.close()


# what marks a download, <out>/<board>/<flight> (the store cannot import the ground's modules):
# the flight's previews folder (camctl/ground/fetch.py _previews: <flight>/thumbs/), the board's
# identity file beside its flights (camctl/ground/fetch.py IDENTITY_FILE) and the fetch's own
# files in <out> (camctl/ground/fetch.py VERDICTS, camctl/ground/download.py LOCK_NAME); a board's
# store has none
_DOWNLOAD_FLIGHT = ("thumbs",)
_DOWNLOAD_BOARD = (".board-id",)
_DOWNLOAD_OUT = ("fetch-verdicts.json", ".camctl-fetch.lock")


def is_download(flight: Path) -> bool:
    """True when ``flight`` is a flight folder ``camctl fetch`` wrote (not a board's store): a
    segment its index lists and the folder does not hold was then simply not fetched."""
    flight = Path(flight)
    return (any((flight / n).is_dir() for n in _DOWNLOAD_FLIGHT)
            or any((flight.parent / n).is_file() for n in _DOWNLOAD_BOARD)
            or any((flight.parent.parent / n).exists() for n in _DOWNLOAD_OUT))


def _without(index: dict, paths: set[str]) -> dict:
    """``index`` less the segment entries of ``paths`` (a download's segments not fetched)."""
    out = dict(index)
    for section in ("cameras", "sources"):
        sources = index.get(section)
        if not isinstance(sources, dict):
            continue
        out[section] = {name: {**src, "segments": [e for e in src.get("segments", [])
                                                   if not (isinstance(e, dict)
                                                           and e.get("path") in paths)]}
                        if isinstance(src, dict) and isinstance(src.get("segments"), list)
                        else src
                        for name, src in sources.items()}
    return out


def _keep_listed(index: dict, board_index: dict, paths: set[str]) -> None:
    """A download's index rebuilt from what it holds keeps the board's entries of the segments not
    fetched (``paths``): index.json goes on saying what the board recorded."""
    entries = segment_entries(board_index)
    for section in ("cameras", "sources"):
        sources = board_index.get(section)
        for name, src in sources.items() if isinstance(sources, dict) else ():
            missing = [entries[e["path"]] for e in src.get("segments", []) if isinstance(e, dict)
                       and e.get("path") in paths] if isinstance(src, dict) else []
            if missing:
                into = index.setdefault(section, {}).setdefault(name, {"segments": []})
                into["segments"] = sorted(into.get("segments", []) + missing,
                                          key=lambda e: str(e.get("path")))


def _verify_flight(report: VerifyReport, flight: Path, repair: bool, prefix: str = "") -> None:
    download = is_download(flight)
    flight_ok = True
    try:
        info = read_flight_json(flight)
    except StoreCorruptError as exc:
        flight_ok = False
        info = {"flight": flight.name, "board": "", "rebuilt": True}
        report.errors.append(str(exc))
    # the event log first: the losses it recorded are known before the segments they name
    subs = sorted((p for p in flight.iterdir() if p.is_dir()), key=lambda p: (p.name != "events",
                                                                               p.name))
    # index.json as the flight's last writer left it: read once, before anything is repaired
    board_index = read_index_json(flight)
    evidence = _Evidence.of(flight, report, board_index)
    ahead = _ReadAhead([seg for sub in subs for seg in _segments(sub)])
    losses_before = len(report.losses)
    try:
        for sub in subs:
            _verify_dir(report, sub, repair, prefix + sub.name, ahead=ahead, evidence=evidence)
    finally:
        ahead.close()
    # a download's segments the board listed and the fetch did not bring: no loss (the board has
    # them)
    unfetched = {rel for rel in evidence.entries if download and not (flight / rel).exists()}
    if unfetched and len(unfetched) == len(evidence.entries):
        report.previews_only.append(str(flight))
    else:
        report.not_fetched += [prefix + rel for rel in sorted(unfetched)]
    for rel, entry in evidence.entries.items():  # finished segments the index lists, now gone
        gone = flight / rel
        loss = None if gone.exists() or rel in unfetched else \
            gone_segment_loss(rel, entry, evidence.seqs(rel))
        if loss is not None:
            report.losses.append(loss.encode())
            if not repair:
                report.repairable.append(str(gone))
    found = [{k: v for k, v in d.items() if k not in ("mono_ns", "wall_ns")}
             for d in report.losses[losses_before:]]
    if repair:
        log_losses(report, flight, report.losses[losses_before:])
    if not flight_ok:
        others = {n[len(prefix):]: r.kind for n, r in report.sources.items()
                  if n.startswith(prefix)}
        info["cameras"] = sorted(p.name for p in flight.iterdir()
                                 if p.is_dir() and p.name != "events" and p.name not in others)
        if others:
            info["sources"] = others
        if repair:
            try:
                _write_json(flight / FLIGHT_NAME, info)
                report.repaired.append(str(flight / FLIGHT_NAME))
            except OSError as exc:
                report.unrecoverable.append(str(flight / FLIGHT_NAME))
                report.errors.append(f"{flight / FLIGHT_NAME}: cannot rebuild: {exc}")
        else:
            report.repairable.append(str(flight / FLIGHT_NAME))
    index_path = flight / INDEX_NAME
    # a download's index is current when it describes what was fetched; a missing or unreadable
    # one is stale
    stale = not board_index or index_is_stale(flight, _without(board_index, unfetched),
                                              checksums=True)
    if stale:
        if repair:
            try:
                index = build_index(flight, previous=board_index)
                _keep_listed(index, board_index, unfetched)
                # this run's losses, even if the event log could not take them (a full disk)
                have = {json.dumps(x, sort_keys=True) for x in index["losses"]}
                index["losses"] += [x for x in found if json.dumps(x, sort_keys=True) not in have]
                _write_json(index_path, index)
                report.repaired.append(str(index_path))
            except OSError as exc:
                report.unrecoverable.append(str(index_path))
                report.errors.append(f"{index_path}: cannot rebuild: {exc}")
        else:
            report.repairable.append(str(index_path))


def _write_json(path: Path, data: dict) -> None:
    """A flight's JSON rewritten with room from its store's reserve on a full disk (a flight
    repaired on the board; a download on a laptop has no reserve and writes as before)."""
    write_json_reserved(find_reserve(path), path, data)


def log_losses(report: VerifyReport, flight: Path, losses: list[dict]) -> None:
    """A loss is never silent: what repair cut goes into the flight's own event log (and so its
    index)."""
    if not losses:
        return
    # the writer side, imported only when there is a loss
    from camctl.store.writer import append_events

    try:
        append_events(flight, losses)
    except OSError as exc:
        report.errors.append(f"{flight}: cannot log what repair cut to the event log: {exc}")


def verify_segments(report: VerifyReport, paths: list[Path], *, repair: bool) -> None:
    """Check (and repair) just these segment files (and remove ``.repair.tmp`` leftovers among
    them)."""
    for path in paths:
        if path.name.endswith(_TMP_SUFFIX):
            if repair:
                path.unlink(missing_ok=True)
                report.repaired.append(str(path))
            else:
                report.repairable.append(str(path))
            continue
        _verify_segment(report, path, repair, None)


def _is_flight(d: Path) -> bool:
    return (d / FLIGHT_NAME).exists() or (d / "events").is_dir() or (d / INDEX_NAME).exists()


def verify(path: Path, *, repair: bool = False,
           on_segment: Callable[[Path], None] | None = None) -> VerifyReport:
    """Check (and with ``repair`` fix) a segment, a camera dir, a flight dir or a store root.

    ``on_segment(path)`` is called after each segment (for a progress bar)."""
    path = Path(path)
    report = VerifyReport(path=str(path), on_segment=on_segment)
    if path.is_file():
        _verify_segment(report, path, repair, None,
                        _Evidence.of(_enclosing_flight(path), report))
    elif not path.is_dir():
        report.unrecoverable.append(str(path))
        report.errors.append(f"{path}: no such file or directory")
    elif _is_flight(path):
        _verify_flight(report, path, repair)
    elif any(path.glob("*.mcap")) or any(path.glob("*" + _TMP_SUFFIX)):
        _verify_dir(report, path, repair, path.name,
                    evidence=_Evidence.of(_enclosing_flight(path), report))
    else:
        flights = sorted(p for p in path.iterdir() if p.is_dir() and _is_flight(p))
        for flight in flights:
            _verify_flight(report, flight, repair)
        # a download (<root>/<board>/<flight>), the demo's output folder, any folder above:
        if not flights:
            # every flight beneath, its cameras reported as <path to its parent>/camera
            # (board/camera)
            for here, dirs, _files in os.walk(path):
                for name in sorted(dirs):
                    if _is_flight(Path(here) / name):
                        rel = Path(here).relative_to(path).as_posix()
                        _verify_flight(report, Path(here) / name, repair, prefix=f"{rel}/")
                dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d != "export"
                                 and not _is_flight(Path(here) / d))
    return report


def render_report(report: VerifyReport, *, plain: bool = False, width: int = 100) -> str:
    """The report as a table: rich (with colour codes) or plain text when ``plain``."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"verify {report.path}")
    for col in ("camera", "frames", "stills", "segments", "repaired", "lost bytes", "bad JPEG",
                "MB"):
        table.add_column(col, justify="left" if col == "camera" else "right")
    for name, c in sorted(report.cameras.items()):
        table.add_row(name, str(c.frames), str(c.stills), str(c.segments), str(c.repaired_segments),
                      str(c.lost_bytes), str(c.bad_frames), f"{c.bytes / 1e6:.1f}")
    for name, r in sorted(report.sources.items()):
        table.add_row(f"{name} ({r.kind})", str(r.records), "-", str(r.segments),
                      str(r.repaired_segments), str(r.lost_bytes), str(r.bad_records),
                      f"{r.bytes / 1e6:.1f}")
    buf = io.StringIO()
    console = Console(file=buf, width=width, no_color=plain, force_terminal=not plain,
                      highlight=False)
    console.print(table)
    for name, r in sorted(report.sources.items()):  # a sensor's books are in samples
        noun = getattr(KINDS.get(r.kind), "noun", "record")
        if r.records != 1:
            noun += "es" if noun.endswith("batch") else "s"
        said = f", {r.samples:,} samples" if isinstance(KINDS.get(r.kind), SamplesKind) else ""
        console.print(f"  {name}: {r.records:,} {noun}{said}", markup=False)
    console.print(f"events: {report.events}   lost ranges: {len(report.lost_chunks)}   "
                  f"result: {report.status} (exit {report.exit_code})")
    if report.not_fetched:  # a download's, not a loss: the board still has them
        n = len(report.not_fetched)
        console.print(f"  incomplete download: {n} segment{'s' if n != 1 else ''} not fetched "
                      f"({', '.join(report.not_fetched)}); the board still has "
                      f"{'them' if n != 1 else 'it'}: camctl fetch again", markup=False,
                      soft_wrap=True)
    for flight in report.previews_only:
        console.print(f"  previews only, no segments: {flight} (camctl fetch --thumbs-only): its "
                      "event log checked, no frame to check", markup=False,
                      soft_wrap=True)
    found = [LossRecord.decode(rec) for rec in report.losses]
    said = {(Path(p).parent.name + "/" + Path(p).name, (s, e)) for p, s, e in report.lost_chunks}
    said -= {(loss.segment, loss.range) for loss in found}
    for p, start, end in report.lost_chunks:
        if (Path(p).parent.name + "/" + Path(p).name, (start, end)) in said:
            console.print(f"  lost {p} bytes {start}..{end}", markup=False)
    for loss in found:
        what = "LOST" if costs_frames(loss) else "cut" if report.repaired else "to cut"
        console.print(f"  {what}: {describe_loss(loss)}", markup=False)
    for loss in (LossRecord.decode(rec) for rec in report.losses_recorded):
        console.print(f"  recorded earlier: {describe_loss(loss)}", markup=False)
    for e in report.errors[:50]:
        console.print(f"  {e}", markup=False)
    return buf.getvalue()
