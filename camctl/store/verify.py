"""``camctl verify``: integrity check and repair of segments, camera dirs, flights or a whole store.

Every ``.mcap`` is salvage-scanned (:func:`camctl.store._salvage.scan_segment`): chunk CRCs checked,
torn tails and damaged byte ranges reported, every JPEG header decoded. With ``repair=True`` a
segment that is not a clean finished MCAP is repaired in place (:mod:`camctl.store._repair`: damaged
ranges covered by LOST records, torn tail cut, summary and footer appended; kilobytes, atomic
against a power cut) into a finished one that keeps every CRC-valid chunk. Only where damage leaves
no room for in-place records is the file rewritten beside itself and renamed over. Ranges an earlier
repair marked lost are reported as ``recorded_losses`` (they do not make a file unclean). Stale or
missing ``index.json`` files are rebuilt; leftover repair temp files are removed.

Exit codes (:attr:`VerifyReport.exit_code`): 0 clean, 1 repaired or repairable (or data was lost or
bad JPEGs were found), 2 unrecoverable (a file with bad magic, a file whose every chunk is damaged,
or a flight whose index/flight.json cannot be rebuilt).

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

from camctl.common.records import LossRecord
from camctl.exc import StoreCorruptError
from camctl.store._records import MAGIC
from camctl.store._repair import describe_losses, repair_in_place
from camctl.store._salvage import Scan, scan_segment
from camctl.store._segment import SegmentWriter
from camctl.store.index import (
    FLIGHT_NAME,
    INDEX_NAME,
    build_index,
    fsync_dir,
    index_is_stale,
    read_flight_json,
    write_json_atomic,
)
from camctl.store.reader import layout_of, scan_events
from camctl.store.sources import CAMERA, KINDS, SourceKind

__all__ = ["CameraReport", "SourceReport", "VerifyReport", "log_losses", "render_report",
           "repair_segment", "verify", "verify_segments"]

_TMP_SUFFIX = ".repair.tmp"
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
    # what this run's repairs cut or skipped: LossRecord.encode() dicts, as the event log holds them
    # (see camctl.store._repair.describe_losses);
    # with repair=True they are also appended to each flight's event log
    losses: list[dict] = field(default_factory=list)
    repairable: list[str] = field(default_factory=list)
    repaired: list[str] = field(default_factory=list)
    unrecoverable: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    # called with each segment's path once it is checked (progress bars); not part of the result
    on_segment: Callable[[Path], None] | None = field(default=None, repr=False, compare=False)

    @property
    def bad_frames(self) -> int:
        return sum(c.bad_frames for c in self.cameras.values())

    @property
    def exit_code(self) -> int:
        if self.unrecoverable:
            return 2
        bad_records = any(s.bad_records for s in self.sources.values())
        if self.repairable or self.repaired or self.lost_chunks or self.bad_frames or bad_records:
            return 1
        return 0

    def to_dict(self) -> dict:
        d = asdict(self)
        d.pop("on_segment", None)
        d["lost_chunks"] = [list(t) for t in self.lost_chunks]
        d["recorded_losses"] = [list(t) for t in self.recorded_losses]
        d["bad_frames"] = self.bad_frames
        d["exit_code"] = self.exit_code
        return d

    def _cam(self, name: str) -> CameraReport:
        return self.cameras.setdefault(name, CameraReport())

    def _source(self, name: str, kind: SourceKind) -> CameraReport | SourceReport:
        if kind is CAMERA:
            return self._cam(name)
        return self.sources.setdefault(name, SourceReport(kind.kind))


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


def _verify_segment(report: VerifyReport, path: Path, repair: bool, camera: str | None) -> None:
    try:
        _check_segment(report, path, repair, camera)
    finally:
        if report.on_segment is not None:
            report.on_segment(path)


def _check_segment(report: VerifyReport, path: Path, repair: bool, camera: str | None) -> None:
    scan = scan_segment(path, _map_if_finished(path))
    layout = layout_of(scan) if scan.salvageable else None
    name = camera or (layout.name if layout else path.parent.name)
    # a torn tail is the uncommitted end of a cut file, not lost data -- unless it is a whole record
    # that fails its check, or the file ends in the magic of a finished segment: then it is damage
    lost = [(s, e) for s, e in scan.lost
            if s != scan.torn_at or scan.tail_magic or scan.tail_damaged]
    report.lost_chunks.extend((str(path), s, e) for s, e in lost)
    report.recorded_losses.extend((str(path), s, e, info) for s, e, info in scan.marked)
    report.errors.extend(f"{path}: {e}" for e in scan.errors)
    # No CRC-valid chunk at all: beyond repair unless exactly one whole record fails and the layout
    # is unknown. A single whole record failing its check with nothing committed before it is also
    # what a power cut leaves when a commit's header page reached the disk and some of its data
    # pages did not (torn writeback, tests/test_powercut.py 'pages' mode): repair marks the range as
    # lost and finishes the file.
    dead = not scan.salvageable or (not scan.chunks and bool(lost) and not scan.never_committed
                                    and (layout is None or scan.tail_records != 1))
    if name == "events" or (layout is not None and layout.kind == "events"):
        report.events += sum(1 for _ in scan_events(scan))
    else:
        kind = KINDS.get(layout.kind if layout else "", CAMERA)
        _count_records(report, path, scan, name, kind, lost)
    if dead:
        report.unrecoverable.append(str(path))
        if not scan.salvageable:
            report.errors.append(f"{path}: not an MCAP file (bad magic), nothing to salvage")
        return
    if scan.clean:
        return
    if scan.torn_at is not None:
        report.errors.append(f"{path}: torn at byte {scan.torn_at} ({scan.torn_reason}); "
                             f"{scan.size - scan.torn_at} bytes after the last complete record cut")
    if not repair:
        report.repairable.append(str(path))
        return
    losses = describe_losses(path, scan, layout) if layout is not None else []
    try:
        repair_segment(path, scan, losses=losses)
    except OSError as exc:
        report.unrecoverable.append(str(path))
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
                ahead: _ReadAhead | None = None) -> None:
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
            _verify_segment(report, seg, repair, camera)
    finally:
        if own:
            ahead.close()


def _verify_flight(report: VerifyReport, flight: Path, repair: bool, prefix: str = "") -> None:
    flight_ok = True
    try:
        info = read_flight_json(flight)
    except StoreCorruptError as exc:
        flight_ok = False
        info = {"flight": flight.name, "board": "", "rebuilt": True}
        report.errors.append(str(exc))
    subs = sorted(p for p in flight.iterdir() if p.is_dir())
    ahead = _ReadAhead([seg for sub in subs for seg in _segments(sub)])
    losses_before = len(report.losses)
    try:
        for sub in subs:
            _verify_dir(report, sub, repair, prefix + sub.name, ahead=ahead)
    finally:
        ahead.close()
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
                write_json_atomic(flight / FLIGHT_NAME, info)
                report.repaired.append(str(flight / FLIGHT_NAME))
            except OSError as exc:
                report.unrecoverable.append(str(flight / FLIGHT_NAME))
                report.errors.append(f"{flight / FLIGHT_NAME}: cannot rebuild: {exc}")
        else:
            report.repairable.append(str(flight / FLIGHT_NAME))
    index_path = flight / INDEX_NAME
    try:
        index = json.loads(index_path.read_text(encoding="utf-8"))
        stale = not isinstance(index, dict) or index_is_stale(flight, index, checksums=True)
    except (OSError, ValueError):
        stale = True
    if stale:
        if repair:
            try:
                write_json_atomic(index_path, build_index(flight))
                report.repaired.append(str(index_path))
            except OSError as exc:
                report.unrecoverable.append(str(index_path))
                report.errors.append(f"{index_path}: cannot rebuild: {exc}")
        else:
            report.repairable.append(str(index_path))


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
        _verify_segment(report, path, repair, None)
    elif not path.is_dir():
        report.unrecoverable.append(str(path))
        report.errors.append(f"{path}: no such file or directory")
    elif _is_flight(path):
        _verify_flight(report, path, repair)
    elif any(path.glob("*.mcap")) or any(path.glob("*" + _TMP_SUFFIX)):
        _verify_dir(report, path, repair, path.name)
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
    status = {0: "clean", 1: "repaired" if report.repaired else "repairable", 2: "UNRECOVERABLE"}
    console.print(f"events: {report.events}   lost ranges: {len(report.lost_chunks)}   "
                  f"result: {status[report.exit_code]} (exit {report.exit_code})")
    for p, start, end in report.lost_chunks:
        console.print(f"  lost {p} bytes {start}..{end}")
    for loss in (LossRecord.decode(rec) for rec in report.losses):
        start, end = loss.range or ("?", "?")
        console.print(f"  cut by this repair: {loss.segment} bytes {start}..{end} "
                      f"({loss.reason}; frames after seq {loss.seq_after}"
                      + (f", seqs {list(loss.seqs[:10])}" if loss.seqs else "") + ")",
                      markup=False)
    for p, start, end, info in report.recorded_losses:
        console.print(f"  lost earlier (recorded by repair) {p} bytes {start}..{end} "
                      f"{info.get('reason', '')}", markup=False)
    for e in report.errors[:50]:
        console.print(f"  {e}", markup=False)
    return buf.getvalue()
