"""The export run: flights found, grouped into sets and aligned, each camera's segments read once.

Owns ``camctl export`` (:func:`export_main`), the library call :func:`export_all` and what it
reports (:class:`ExportResult`), and the single read pass over a camera's segments
(:func:`scan_camera`) that feeds every kind of export: :mod:`.mp4`, :mod:`.frames`, :mod:`.sheet`,
:mod:`.timeline`; :mod:`.foxglove` copies the set's segments (sensors' too) as they are; a
flight's sensor samples are read once (:meth:`Flight.samples`) for the timeline's tracks, the
sheet's and the verdict's peak g and :mod:`.csv` (``--csv``).

Example::

    >>> res = export_all(Path("drop-3"), Path("drop-3/export"), frames=True)     # doctest: +SKIP
    >>> res.paths()["mp4"]
"""

from __future__ import annotations

import argparse
import contextlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from camctl.common.protocol import printable
from camctl.exc import ConfigError
from camctl.ground.export.flightset import (
    CamData,
    Flight,
    align_set,
    flight_sets,
    load_flight,
    loss_notes,
    peak_line,
    reboot_notes,
)
from camctl.ground.export.frames import write_frame
from camctl.ground.export.mp4 import Mp4Writer, video_size
from camctl.ground.export.sheet import (
    SHEET_TOL_NS,
    Pick,
    Picker,
    flight_header,
    has_previews,
    set_events,
    set_sheet,
    set_targets,
    sheet_from_previews,
)
from camctl.ground.export.timeline import draw_timeline, lane_of, sensor_tracks
from camctl.ground.extra import require_ground
from camctl.ground.flights import FlightRef, find_flights, summarize_flight
from camctl.ground.verdict import from_summary, verdict

__all__ = ["DEFAULT_KINDS", "KIND_NEEDS", "ExportResult", "export_all", "export_main",
           "scan_camera"]

# ``camctl export DIR`` without a kind flag: the videos, the contact sheet and the timeline (the
# README's "export writes per flight"); not every frame as a JPEG (--frames: hundreds of files
# per flight) nor the Foxglove copy (--foxglove: a copy of the data)
DEFAULT_KINDS = ("mp4", "contact_sheet", "timeline")
# the ground extra's library each kind draws with (frames and the Foxglove copy need none)
KIND_NEEDS = {"mp4": "av", "contact_sheet": "PIL", "timeline": "matplotlib"}


@dataclass
class ExportResult:
    """What :func:`export_all` wrote. ``tiles`` holds, per contact sheet, the boxes (x0, y0, x1, y1)
    of the tiles that got a frame; ``notes`` what a user should know (skipped frames, sidecar
    subtitles...)."""

    out: Path
    mp4: list[Path] = field(default_factory=list)
    contact_sheets: list[Path] = field(default_factory=list)
    timelines: list[Path] = field(default_factory=list)
    frames: list[Path] = field(default_factory=list)
    subtitles: list[Path] = field(default_factory=list)  # sidecar .srt files (muxing failed)
    timeline_svgs: list[Path] = field(default_factory=list)  # the timelines as SVG, beside the PNGs
    foxglove: list[Path] = field(default_factory=list)  # the set's MCAP and its Foxglove layout
    csv: list[Path] = field(default_factory=list)  # a CSV per sensor of each board (--csv)
    tiles: dict[Path, list[tuple[int, int, int, int]]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    # one line per board's flight: "rig-a 20261207T1219Z: RECORDED: landed, 2 segments, ..."
    verdicts: list[str] = field(default_factory=list)

    def paths(self) -> dict[str, list[Path]]:
        return {"mp4": self.mp4, "contact_sheet": self.contact_sheets, "timeline": self.timelines,
                "frames": self.frames, "srt": self.subtitles, "timeline_svg": self.timeline_svgs,
                "foxglove": self.foxglove, "csv": self.csv}


# --- the pass over one camera -------------------------------------------------------------------
def scan_camera(fl: Flight, camera: str, *, mp4: Path | None, frames_dir: Path | None,
                targets: list[tuple[int, bool]], res: ExportResult,
                advance: Callable[[], Any]) -> CamData:
    """Read ``camera``'s segments once: write its MP4 (``mp4``) and plain JPEGs (``frames_dir``) as
    it goes and keep what the contact sheet (frames near ``targets``) and the timeline need. Every
    time kept or written is on the flight's timeline (a frame's sensor time mapped by its run)."""
    from camctl.store import iter_frames

    data = CamData(fl.board, camera, fl,
                   picker=Picker(targets, SHEET_TOL_NS) if targets else None)
    writer = Mp4Writer(mp4, fl, camera, video_size(fl.cameras[camera])) if mp4 is not None else None
    try:
        for seg in fl.cameras[camera]:
            for fr in iter_frames(seg):
                if frames_dir is not None:
                    res.frames.append(write_frame(frames_dir, fl, camera, fr))
                if not fr.jpeg_ok:
                    continue
                ts = fl.frame_ns(fr.timestamp_ns, fr.run)  # on the flight's timeline
                if fr.still:
                    data.stills.append(Pick(ts, fr.phase, fr.seq, fr.jpeg,
                                            (fr.width, fr.height) if fr.width else None,
                                            event=str(fr.meta.get("event") or "")))
                    continue
                data.times.append(ts)
                if writer is not None:
                    writer.add(ts, fr.jpeg)
                if data.picker is not None:
                    data.picker.offer(ts, fr.phase, fr.seq, fr.jpeg)
            advance()
    finally:
        if writer is not None:
            writer.close()
    if writer is not None and writer.frames:
        _mp4_written(writer, res)
    data.times.sort()
    return data


def _mp4_written(writer: Mp4Writer, res: ExportResult) -> None:
    mp4 = writer.path
    res.mp4.append(mp4)
    if writer.srt is not None:
        res.subtitles.append(writer.srt)
        res.notes.append(f"{mp4}: phases written to {writer.srt.name} (subtitle muxing failed)")
    if writer.skipped:
        res.notes.append(f"{mp4}: {writer.skipped} frames skipped (out of order or undecodable)")
    if writer.scaled:
        res.notes.append(f"{mp4}: {writer.scaled} smaller frames scaled up to "
                         f"{writer.width}x{writer.height} "
                         f"(the camera changed size during the flight)")


# --- driver -------------------------------------------------------------------------------------
@contextlib.contextmanager
def _progress(enabled: bool, total: int) -> Iterator[Any]:
    if not enabled:
        yield lambda: None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn("export"), BarColumn(), MofNCompleteColumn(), TextColumn("segments"),
                  TimeElapsedColumn(), transient=True) as prog:
        task = prog.add_task("export", total=total)
        yield lambda: prog.update(task, advance=1)


@dataclass(frozen=True)
class _Kinds:
    """Which exports :func:`export_all` writes."""

    mp4: bool
    contact_sheet: bool
    timeline: bool
    frames: bool
    foxglove: bool
    csv: bool = False


def _unique(refs: list[FlightRef], res: ExportResult) -> list[FlightRef]:
    """One ref per (board, flight): the demo's output holds each flight twice (its download and the
    board's store); the first is exported, the others named in a note."""
    seen: dict[tuple[str, str], FlightRef] = {}
    for r in refs:
        if (r.board, r.flight) in seen:
            res.notes.append(f"{r.board} {r.flight}: exported from "
                             f"{seen[(r.board, r.flight)].path}, also at {r.path}")
        else:
            seen[(r.board, r.flight)] = r
    return list(seen.values())


def export_all(root: Path, out: Path, *, mp4: bool = True, contact_sheet: bool = True,
               timeline: bool = True, frames: bool = False, foxglove: bool = False,
               csv: bool = False, progress: bool = False) -> ExportResult:
    """Export every flight under ``root`` (fetch output, board store or one flight folder) into
    ``out``.

    Raises ConfigError when ``root`` holds no flight, or when a kind asked for needs a library of
    the ``ground`` extra that cannot be imported (before anything is written)."""
    asked = {"mp4": mp4, "contact_sheet": contact_sheet, "timeline": timeline}
    require_ground("camctl export", [m for kind, m in KIND_NEEDS.items() if asked[kind]])
    root, out = Path(root), Path(out)
    refs = find_flights(root)
    if not refs:
        raise ConfigError(f"no flights under {root} (expected <board>/<flight>/flight.json, "
                          f"<flight>/flight.json or a flight folder)")
    res = ExportResult(out=out)
    unique = _unique(refs, res)
    verdicts = [_verdict_line(r) for r in unique]
    flights = [load_flight(r) for r in unique]
    # the verdict line goes on with the peak g of a flight that recorded sensors
    res.verdicts = [f"{v}; {p}" if (p := peak_line(fl)) else v
                    for v, fl in zip(verdicts, flights, strict=True)] + _unseen(root, unique)
    kinds = _Kinds(mp4, contact_sheet, timeline, frames, foxglove, csv)
    total = sum(len(segs) for fl in flights for segs in fl.cameras.values())
    used_names: set[str] = set()
    with _progress(progress, total) as advance:
        for fset in flight_sets(flights):
            name = min(f.ref.flight for f in fset)
            while name in used_names:
                name += "_"
            used_names.add(name)
            _export_set(fset, name, out / name, kinds, res, advance)
    return res


def _verdict_line(ref: FlightRef) -> str:
    """The flight's verdict from what is on disk (:mod:`camctl.ground.verdict`)."""
    v = verdict(from_summary(summarize_flight(ref)))
    return f"{ref.board} {ref.flight}: {v}"


def _unseen(root: Path, refs: list[FlightRef]) -> list[str]:
    """The boards a fetch into ``root`` got no flight of (its ``fetch-verdicts.json``,
    :func:`camctl.ground.fetch.record_verdicts`): a board killed in flight has no folder to show."""
    from camctl.ground.fetch import VERDICTS

    try:
        recs = json.loads((root / VERDICTS).read_text("utf-8")).get("boards", [])
    except (OSError, ValueError, AttributeError):
        return []
    boards = {r.board for r in refs}
    out = []
    for r in recs if isinstance(recs, list) else []:
        if isinstance(r, dict) and not r.get("flight") and r.get("board") not in boards:
            out.append(printable(f"{r.get('name', '?')}: {r.get('kind', '?')}: "
                                 f"{r.get('reason', '')}", 2000))
    return out


def _export_set(fset: list[Flight], name: str, set_dir: Path, kinds: _Kinds, res: ExportResult,
                advance: Callable[[], Any]) -> None:
    """One flight set into ``set_dir``: aligned, every camera read once, then sheet, timeline and
    the Foxglove copy."""
    alignment = align_set(fset)
    for board, a in alignment.items():
        if not a["aligned"]:
            res.notes.append(f"{name}: {board} is UNALIGNED: {a['reason']}; its times are its own")
    res.notes += [f"{name}: {note}" for fl in fset for note in reboot_notes(fl)]
    res.notes += [f"{name}: {note}" for fl in fset for note in loss_notes(fl)]
    set_dir.mkdir(parents=True, exist_ok=True)
    (set_dir / "alignment.json").write_text(json.dumps(alignment, indent=1, sort_keys=True))
    ref, events = set_events(fset) if kinds.contact_sheet else (None, [])
    cams: list[CamData] = []
    frames_dir = set_dir / "frames" if kinds.frames else None
    if frames_dir is not None:
        frames_dir.mkdir(parents=True, exist_ok=True)
    for fl in fset:
        targets = set_targets(fl, ref, events)
        for camera in fl.cameras:
            mp4_path = set_dir / "mp4" / f"{fl.board}_{camera}.mp4" if kinds.mp4 else None
            cams.append(scan_camera(fl, camera, mp4=mp4_path, frames_dir=frames_dir,
                                    targets=targets, res=res, advance=advance))
    aligned = any(f.tb.aligned for f in fset)
    if kinds.contact_sheet:
        _sheet(fset, name, cams, set_dir / "contact_sheet.png", res)
    if kinds.timeline and any(c.times for c in cams):
        title = flight_header(((f.board, f.ref.flight) for f in fset), "frame rate per camera")
        zero = "release" if aligned else "first event"
        png, svg = draw_timeline(title, [lane_of(c) for c in cams], set_dir / "timeline.png",
                                 zero=zero, tracks=[t for fl in fset for t in sensor_tracks(fl)])
        res.timelines.append(png)
        res.timeline_svgs.append(svg)
    if kinds.foxglove:
        _foxglove(fset, name, set_dir / "foxglove", res)
    if kinds.csv:
        _csv(fset, set_dir.parent, res)
    if not aligned and (cams or kinds.contact_sheet):
        res.notes.append(f"{name}: no release event logged; times are from the first event")


def _sheet(fset: list[Flight], name: str, cams: list[CamData], png: Path,
           res: ExportResult) -> None:
    """The set's contact sheet from its frames, else from its previews (a thumbs-only download)."""
    if any(c.times or c.stills for c in cams):
        res.tiles[png] = set_sheet(fset, cams, png)
        res.contact_sheets.append(png)
    elif any(has_previews(f.ref.path) for f in fset):
        res.tiles[png] = sheet_from_previews([f.ref for f in fset], png)
        res.contact_sheets.append(png)
        res.notes.append(f"{name}: contact sheet made from the previews "
                         f"(no segment downloaded yet)")


def _csv(fset: list[Flight], out: Path, res: ExportResult) -> None:
    """Each board's sensors as CSV files in the export's folder; a line for a board without."""
    from camctl.ground.export.csv import write_csv

    for fl in fset:
        written = write_csv(fl, out)
        res.csv += written
        if not written:
            res.notes.append(f"{fl.board} {fl.ref.flight}: no sensor samples: no CSV written")


def _foxglove(fset: list[Flight], name: str, out_dir: Path, res: ExportResult) -> None:
    from camctl.ground.export.foxglove import write_foxglove

    fx = write_foxglove([(f.board, f.ref.flight, f.cameras,
                          sorted((f.ref.path / "events").glob("*.mcap"))) for f in fset],
                        out_dir, name,
                        clocks={f.board: (f.clock, f.tb.wall_offset_ns) for f in fset},
                        sensors={f.board: f.sensor_segs for f in fset})
    res.foxglove += [fx.mcap, fx.layout]
    res.notes += [f"{fx.mcap}: left out {u}" for u in fx.unreadable]


def export_main(args: argparse.Namespace) -> int:
    """``camctl export DIR [--mp4] [--contact-sheet] [--timeline] [--frames] [--foxglove] [--csv]
    [--out OUTDIR] [--quiet]``.

    0 when something was written, 1 when the flights hold nothing to export (``--csv`` alone and
    no sensor samples too), 2 (ConfigError) for no flight."""
    root = Path(args.dir)
    if not root.is_dir():
        raise ConfigError(f"no such folder: {root}")
    kinds = {k: bool(getattr(args, k, False))
             for k in ("mp4", "contact_sheet", "timeline", "frames", "foxglove", "csv")}
    if not any(kinds.values()):  # nothing asked: DEFAULT_KINDS (what the README promises)
        kinds = {k: k in DEFAULT_KINDS for k in kinds}
    out = Path(args.out) if getattr(args, "out", None) else root / "export"
    quiet = bool(getattr(args, "quiet", False))
    res = export_all(root, out, progress=not quiet, **kinds)
    for kind, paths in res.paths().items():
        if paths:  # --quiet too: the frames are one line with their count, never a list
            shown = (f"{len(paths)} files in {paths[0].parent}" if kind == "frames"
                     else ", ".join(str(p) for p in paths))
            print(f"{kind}: {shown}")
    for note in res.notes:
        print(f"note: {note}")
    recorded = sum(": RECORDED: " in line for line in res.verdicts)
    if res.verdicts:  # every board's flight: RECORDED / PARTIAL / LOST and why
        print(f"verdict: {recorded} of {len(res.verdicts)} boards' flights RECORDED")
    for line in res.verdicts:
        print(f"verdict: {line}")
    if not any(res.paths().values()):
        what = "frames" if not kinds["csv"] else "frames or sensor samples"
        print(f"export: nothing written (no {what} under {root})")
        return 1  # flights without a frame: a problem in the data (camctl.cli's exit-code rule)
    return 0
