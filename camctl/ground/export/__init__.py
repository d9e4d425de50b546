"""Ground-station exports of downloaded flights: MP4 per board/camera, contact sheet, timeline, plain JPEGs.

Owns ``camctl export`` (:func:`export_main`), the library call :func:`export_all` (``camctl demo`` uses it)
and :func:`contact_sheet_from_thumbs` (a first look from the previews, before the full download ends).

Boards are aligned on the shared release edge (see :class:`camctl.ground.views.TimeBase`). Flights of different
boards flown together (release within :data:`SET_WINDOW_S` of each other, one flight per board) form a
*flight set*; each set is written to ``<out>/<set>/``::

    <set>/mp4/<board>_<camera>.mp4       H.264, frames at their real sensor timestamps (VFR), phases as a
                                         mov_text subtitle track (a sidecar .srt if muxing it fails); a
                                         camera whose frame size changes (e.g. 320x180 ARMED, 960x540 in
                                         DESCENT) gets one video at its largest size: smaller frames are
                                         scaled up keeping their aspect (black bars if it differs), never
                                         cropped
    <set>/contact_sheet.png             frames at -1, -0.5, 0, +0.5, +1 s around each event, every camera of
                                         every board, and the stills (export.sheet); from the previews when
                                         no segment was downloaded (a thumbs-only fetch)
    <set>/timeline.png, .svg            frame rate per camera on a common axis from release, phases, faults,
                                         drops by reason, still gaps (camctl.ground.export.timeline, matplotlib)
    <set>/frames/<board>_<camera>_<seq:06d>_<+t.ttt>s.jpg   the stored JPEG bytes
    <set>/foxglove/<set>.mcap, .layout.json   every board in one MCAP with board-prefixed topics, and a
                                         Foxglove layout showing it (export.foxglove; only with --foxglove)

Every camera's segments are read once, in order; each export kind takes what it needs from that pass.

Example::

    >>> res = export_all(Path("drop-3"), Path("drop-3/export"), frames=True)     # doctest: +SKIP
    >>> res.paths()["mp4"]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import simplejpeg

from camctl.common.ledger import ledger_marks
from camctl.exc import ConfigError
from camctl.ground.export.sheet import (
    BG,
    OFFSETS_S,
    Block,
    Pick,
    Picker,
    Tile,
    caption,
    contact_sheet_from_thumbs,
    draw_sheet,
    event_columns,
    event_ns,
    event_title,
    flight_header,
    has_previews,
    sheet_from_previews,
)
from camctl.ground.export.timeline import Lane, draw_timeline
from camctl.ground.flights import FlightRef, TimeBase, find_flights, load_events

__all__ = [
    "BG",
    "MP4_TIME_BASE",
    "SET_WINDOW_S",
    "ExportResult",
    "contact_sheet_from_thumbs",
    "export_all",
    "export_main",
    "frame_file_name",
    "pts_of",
]

MP4_TIME_BASE = Fraction(1, 90000)
SET_WINDOW_S = 300.0
_SKIP_DIRS = {"events", "thumbs", "export"}
_SHEET_TOL_NS = 250_000_000  # a contact-sheet tile takes a frame within 0.25 s of its time (columns are 0.5 s apart)


def pts_of(timestamp_ns: int, first_ns: int) -> int:
    """The MP4 pts (in :data:`MP4_TIME_BASE`) of a frame: its sensor time from the first frame, rounded."""
    return ((timestamp_ns - first_ns) * 9 + 50_000) // 100_000  # ns * 90000 / 1e9


def frame_file_name(board: str, camera: str, seq: int, t_s: float, *, still: bool = False) -> str:
    """``<board>_<camera>_<seq:06d>_<+t.ttt>s.jpg`` (``_still`` before the suffix for stills)."""
    return f"{board}_{camera}_{seq:06d}_{t_s:+.3f}s{'_still' if still else ''}.jpg"


@dataclass
class ExportResult:
    """What :func:`export_all` wrote. ``tiles`` holds, per contact sheet, the boxes (x0, y0, x1, y1) of the
    tiles that got a frame; ``notes`` what a user should know (skipped frames, sidecar subtitles...)."""

    out: Path
    mp4: list[Path] = field(default_factory=list)
    contact_sheets: list[Path] = field(default_factory=list)
    timelines: list[Path] = field(default_factory=list)
    frames: list[Path] = field(default_factory=list)
    subtitles: list[Path] = field(default_factory=list)  # sidecar .srt files (only when muxing failed)
    timeline_svgs: list[Path] = field(default_factory=list)  # the timelines as SVG, beside the PNGs
    foxglove: list[Path] = field(default_factory=list)  # the set's MCAP and its Foxglove layout
    tiles: dict[Path, list[tuple[int, int, int, int]]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def paths(self) -> dict[str, list[Path]]:
        return {"mp4": self.mp4, "contact_sheet": self.contact_sheets, "timeline": self.timelines,
                "frames": self.frames, "srt": self.subtitles, "timeline_svg": self.timeline_svgs,
                "foxglove": self.foxglove}


# --- loading ------------------------------------------------------------------------------------------
@dataclass
class _Flight:
    ref: FlightRef
    events: list[dict]
    tb: TimeBase
    t0_ns: int | None  # release edge, else the first event: the zero of every relative time
    cameras: dict[str, list[Path]]

    @property
    def board(self) -> str:
        return self.ref.board

    def rel(self, mono_ns: int) -> float:
        return (mono_ns - self.t0_ns) / 1e9 if self.t0_ns is not None else 0.0

    def ref_wall_s(self) -> float:
        if self.t0_ns is not None and self.tb.wall_offset_ns is not None:
            return (self.t0_ns + self.tb.wall_offset_ns) / 1e9
        try:
            return json.loads((self.ref.path / "flight.json").read_text("utf-8"))["created_wall_ns"] / 1e9
        except (OSError, ValueError, KeyError, TypeError):
            return 0.0


def _load_flight(ref: FlightRef) -> _Flight:
    events = load_events(ref.path)
    tb = TimeBase.from_events(events)
    t0 = tb.t0_ns
    if t0 is None:
        t0 = next((int(r["mono_ns"]) for r in events if isinstance(r.get("mono_ns"), int)), None)
    cams: dict[str, list[Path]] = {}
    for sub in sorted(p for p in ref.path.iterdir() if p.is_dir() and p.name not in _SKIP_DIRS):
        segs = sorted(sub.glob("*.mcap"))
        if segs:
            cams[sub.name] = segs
    return _Flight(ref=ref, events=events, tb=tb, t0_ns=t0, cameras=cams)


_NOT_EDGES = {"arm", "disarm", "timeout"}  # per-board switches and timers: never a shared trigger edge


def _edges(fl: _Flight) -> dict[str, int]:
    """Event name -> monotonic ns of the first phase change that a GPIO trigger edge caused on this board."""
    out: dict[str, int] = {}
    for r in fl.events:
        ev, mono = r.get("event"), r.get("mono_ns")
        if (r.get("kind") == "phase" and r.get("source") == "gpio" and isinstance(ev, str)
                and ev not in _NOT_EDGES and isinstance(mono, int)):
            out.setdefault(ev, mono)
    return out


def align_set(fset: list[_Flight], *, prefer: str = "release") -> dict[str, dict]:
    """Put the boards of a flight set on one zero: a GPIO trigger edge every board saw (``prefer`` if they all
    saw it, else the earliest such edge on the first board). With no edge common to all, the edge most boards
    saw is the zero of those boards; any board without the chosen edge is marked unaligned, with the reason,
    and keeps its own first event as zero: it is never shifted onto the others silently.

    Sets each flight's ``t0_ns`` and ``tb.aligned``; returns ``{board: {"aligned", "edge", "reason"}}``."""
    edges = [_edges(fl) for fl in fset]
    common = set.intersection(*(set(e) for e in edges)) if edges else set()
    if common:
        edge: str | None = prefer if prefer in common else min(common, key=lambda ev: edges[0][ev])
    else:
        counts: dict[str, int] = {}
        for e in edges:
            for ev in e:
                counts[ev] = counts.get(ev, 0) + 1
        edge = min(counts, key=lambda ev: (-counts[ev], ev != prefer, ev)) if counts else None
    report: dict[str, dict] = {}
    for fl, e in zip(fset, edges, strict=True):
        if edge is not None and edge in e:
            fl.t0_ns = fl.tb.t0_ns = e[edge]
            fl.tb.aligned, reason = True, ""
        else:
            reason = (f"no {edge!r} edge in its event log (its GPIO edges: {', '.join(sorted(e)) or 'none'})"
                      if edge is not None else "no GPIO trigger edge in its event log")
            fl.t0_ns = next((int(r["mono_ns"]) for r in fl.events if isinstance(r.get("mono_ns"), int)), None)
            fl.tb.t0_ns, fl.tb.aligned = fl.t0_ns, False
        fl.tb.unaligned_reason = reason
        report[fl.board] = {"aligned": not reason, "edge": edge if not reason else None, "reason": reason}
    return report


def _flight_sets(flights: list[_Flight]) -> list[list[_Flight]]:
    """Group flights of different boards flown together (one per board, reference times close)."""
    sets: list[list[_Flight]] = []
    for fl in sorted(flights, key=lambda f: (f.ref_wall_s(), f.board)):
        for s in sets:
            if fl.board not in {f.board for f in s} and abs(fl.ref_wall_s() - s[0].ref_wall_s()) <= SET_WINDOW_S:
                s.append(fl)
                break
        else:
            sets.append([fl])
    return [sorted(s, key=lambda f: f.board) for s in sets]


# --- MP4 ----------------------------------------------------------------------------------------------
def _video_size(segments: list[Path]) -> tuple[int, int]:
    """The size of a camera's video: the largest width and height of its video frames (stills excluded)."""
    from camctl.store.reader import scan_frames, scan_segment

    w = h = 0
    for seg in segments:
        for fr in scan_frames(scan_segment(seg), check_jpeg=False):
            if fr.still:
                continue
            fw, fh = fr.width, fr.height
            if not (fw and fh):
                try:
                    fh, fw, _, _ = simplejpeg.decode_jpeg_header(fr.jpeg)
                except ValueError:
                    continue
            w, h = max(w, fw), max(h, fh)
    return w, h


class _Mp4:
    """One camera's H.264 MP4 at ``size`` (even-rounded), opened at its first frame; a frame of another size is
    scaled to fit keeping its aspect and centred on black, never cropped; phases muxed as mov_text (or .srt)."""

    def __init__(self, path: Path, fl: _Flight, camera: str, size: tuple[int, int] | None = None) -> None:
        self.path, self.fl, self.camera = path, fl, camera
        self.size = size
        self.scaled = 0
        self.container: Any = None
        self.stream: Any = None
        self.subs: Any = None
        self.first_ns = self.last_ns = self.last_pts = 0
        self.width = self.height = 0
        self.frames = 0
        self.skipped = 0
        self.ranges: list[tuple[int, str]] = []  # (start ns relative to first, phase)
        self.next_range = 0
        self.srt: Path | None = None

    def add(self, ts: int, jpeg: bytes) -> None:
        import av

        if self.container is None:
            self._open(ts, jpeg)
        pts = pts_of(ts, self.first_ns)
        if self.frames and (ts <= self.last_ns or pts <= self.last_pts):
            self.skipped += 1  # out of order, or closer than one tick to the last frame
            return
        try:
            rgb = simplejpeg.decode_jpeg(jpeg, colorspace="RGB")
        except ValueError:
            self.skipped += 1
            return
        frame = av.VideoFrame.from_ndarray(self._fit(rgb), format="rgb24").reformat(format="yuv420p")
        frame.pts = pts
        frame.time_base = MP4_TIME_BASE
        self.container.mux(self.stream.encode(frame))
        self.frames += 1
        self.last_ns, self.last_pts = ts, pts
        self._emit_subs(ts - self.first_ns)

    def _fit(self, rgb: np.ndarray) -> np.ndarray:
        """``rgb`` at the video's size: scaled by one factor (the aspect kept) and centred on black."""
        import av

        h, w = rgb.shape[:2]
        if (w, h) == (self.width, self.height):
            return rgb
        if w - w % 2 == self.width and h - h % 2 == self.height:
            return np.ascontiguousarray(rgb[:self.height, :self.width])  # the odd last row/column only
        self.scaled += 1
        k = min(self.width / w, self.height / h)
        sw, sh = max(1, min(self.width, round(w * k))), max(1, min(self.height, round(h * k)))
        small = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
        scaled = small.reformat(width=sw, height=sh, format="rgb24", interpolation="BICUBIC").to_ndarray()
        out = np.zeros((self.height, self.width, 3), np.uint8)
        y, x = (self.height - sh) // 2, (self.width - sw) // 2
        out[y:y + sh, x:x + sw] = scaled
        return out

    def _open(self, ts: int, jpeg: bytes) -> None:
        import av

        if self.size and all(self.size):
            w, h = self.size
        else:
            h, w, _, _ = simplejpeg.decode_jpeg_header(jpeg)
        self.width, self.height = max(2, w - w % 2), max(2, h - h % 2)
        self.first_ns = ts
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.container = av.open(str(self.path), "w", format="mp4")
        fl = self.fl
        self.container.metadata["title"] = f"{fl.board} {self.camera} flight {fl.ref.flight}"
        self.container.metadata["comment"] = (f"first frame at {fl.rel(ts):+.3f} s from "
                                              f"{'release' if fl.tb.aligned else 'the first event'}")
        self.stream = self.container.add_stream("libx264", rate=30, options={"preset": "veryfast", "crf": "20"})
        self.stream.width, self.stream.height, self.stream.pix_fmt = self.width, self.height, "yuv420p"
        self.stream.thread_type = "AUTO"  # frame threads: ~15 % faster than the default here
        self.stream.time_base = MP4_TIME_BASE
        self.stream.codec_context.time_base = MP4_TIME_BASE
        ranges = [(max(0, t - ts), ph) for t, ph in fl.tb.phases]
        start_phase = fl.tb.phase_at(ts)
        self.ranges = [(0, start_phase)] if start_phase else []
        self.ranges += [(r, ph) for r, ph in ranges if r > 0]
        try:
            self.subs = self.container.add_mux_stream("mov_text", time_base=Fraction(1, 1000))
        except Exception:  # any failure here means: fall back to a sidecar .srt
            self.subs = None

    def _emit_subs(self, rel_ns: int, final: bool = False) -> None:
        import av

        while self.subs is not None and self.next_range < len(self.ranges):
            start, phase = self.ranges[self.next_range]
            end = self.ranges[self.next_range + 1][0] if self.next_range + 1 < len(self.ranges) else None
            if final:  # the video ends at rel_ns: clip the last range, drop ranges that start after it
                if start > rel_ns:
                    return
                end_ns = min(end, rel_ns + 1_000_000) if end is not None else rel_ns + 1_000_000
            elif end is None or rel_ns < end:
                return
            else:
                end_ns = end
            if end_ns > start:
                text = phase.encode()
                pkt = av.Packet(struct.pack(">H", len(text)) + text)
                pkt.stream = self.subs
                pkt.time_base = Fraction(1, 1000)
                pkt.pts = pkt.dts = start // 1_000_000
                pkt.duration = max(1, (end_ns - start) // 1_000_000)
                self.container.mux(pkt)
            self.next_range += 1

    def close(self) -> None:
        if self.container is None:
            return
        self.container.mux(self.stream.encode())
        self._emit_subs(self.last_ns - self.first_ns, final=True)
        self.container.close()
        if self.subs is None and self.ranges:
            self.srt = self.path.with_suffix(".srt")
            self.srt.write_text(_srt(self.ranges, self.last_ns - self.first_ns), encoding="utf-8")


def _srt(ranges: list[tuple[int, str]], end_ns: int) -> str:
    def ts(ns: int) -> str:
        ms = ns // 1_000_000
        return f"{ms // 3_600_000:02d}:{ms // 60_000 % 60:02d}:{ms // 1000 % 60:02d},{ms % 1000:03d}"

    lines = []
    for i, (start, phase) in enumerate(ranges):
        end = ranges[i + 1][0] if i + 1 < len(ranges) else end_ns + 1_000_000
        lines.append(f"{i + 1}\n{ts(start)} --> {ts(end)}\n{phase}\n")
    return "\n".join(lines)


# --- the pass over one camera -------------------------------------------------------------------------
@dataclass
class _CamData:
    board: str
    camera: str
    fl: _Flight
    times: list[int] = field(default_factory=list)  # sensor ns of every video frame
    picker: Picker | None = None  # the contact sheet's frames around the events
    stills: list[Pick] = field(default_factory=list)


def _scan_camera(fl: _Flight, camera: str, *, mp4: Path | None, frames_dir: Path | None,
                 targets: list[tuple[int, bool]], res: ExportResult, advance: Any) -> _CamData:
    from camctl.store import iter_frames

    data = _CamData(fl.board, camera, fl, picker=Picker(targets, _SHEET_TOL_NS) if targets else None)
    writer = _Mp4(mp4, fl, camera, _video_size(fl.cameras[camera])) if mp4 is not None else None
    try:
        for seg in fl.cameras[camera]:
            for fr in iter_frames(seg):
                if frames_dir is not None:
                    t = fl.rel(fr.timestamp_ns) if fl.t0_ns is not None else 0.0
                    path = frames_dir / frame_file_name(fl.board, camera, fr.seq, t, still=fr.still)
                    path.write_bytes(fr.jpeg)
                    res.frames.append(path)
                if not fr.jpeg_ok:
                    continue
                if fr.still:
                    data.stills.append(Pick(fr.timestamp_ns, fr.phase, fr.seq, fr.jpeg))
                    continue
                data.times.append(fr.timestamp_ns)
                if writer is not None:
                    writer.add(fr.timestamp_ns, fr.jpeg)
                if data.picker is not None:
                    data.picker.offer(fr.timestamp_ns, fr.phase, fr.seq, fr.jpeg)
            advance()
    finally:
        if writer is not None:
            writer.close()
    if writer is not None and writer.frames:
        res.mp4.append(mp4)  # type: ignore[arg-type]
        if writer.srt is not None:
            res.subtitles.append(writer.srt)
            res.notes.append(f"{mp4}: phases written to {writer.srt.name} (subtitle muxing failed)")
        if writer.skipped:
            res.notes.append(f"{mp4}: {writer.skipped} frames skipped (out of order or undecodable)")
        if writer.scaled:
            res.notes.append(f"{mp4}: {writer.scaled} smaller frames scaled up to {writer.width}x{writer.height} "
                             f"(the camera changed size during the flight)")
    data.times.sort()
    return data


# --- contact sheet ------------------------------------------------------------------------------------
def _sheet_events(fset: list[_Flight]) -> tuple[_Flight | None, list[str]]:
    """The set's reference flight (the first with a release edge) and the events that get a block."""
    ref = next((f for f in fset if f.tb.aligned), None)
    return ref, (event_columns(ref.tb) if ref is not None else [])


def _sheet_targets(fl: _Flight, ref: _Flight | None, events: list[str]) -> list[tuple[int, bool]]:
    """(target ns, offset is 0) for every event x offset; an event this board did not log is never met."""
    out = []
    for ev in events:
        t = event_ns(ev, fl.tb, ref.tb) if ref is not None else None
        out += [((t + int(o * 1e9)) if t is not None else -(1 << 62), o == 0) for o in OFFSETS_S]
    return out


def _contact_sheet(fset: list[_Flight], cams: list[_CamData], out_png: Path) -> list[tuple[int, int, int, int]]:
    ref, events = _sheet_events(fset)
    blocks: list[Block] = []
    for e, ev in enumerate(events):
        block = Block(event_title(ev, ref.tb), [f"{o:+g} s" for o in OFFSETS_S])  # type: ignore[union-attr]
        for cam in cams:
            t_ev = event_ns(ev, cam.fl.tb, ref.tb)  # type: ignore[union-attr]
            n = len(OFFSETS_S)
            picks = cam.picker.picks(group=n)[e * n:(e + 1) * n] if cam.picker else []
            block.rows.append((f"{cam.board}\n{cam.camera}", [
                None if p is None or t_ev is None else Tile(p.image, caption((p.ts - t_ev) / 1e9, p.phase, p.seq))
                for p in picks] or [None] * len(OFFSETS_S)))
        blocks.append(block)
    if not events:  # no release logged: columns spread over each camera's recording
        quantiles = (0.0, 0.25, 0.5, 0.75, 1.0)
        block = Block("no release logged: frames spread over each camera's recording",
                      [f"{q:.0%} of recording" for q in quantiles])
        for cam in cams:
            block.rows.append((f"{cam.board}\n{cam.camera}", _spread_tiles(cam, quantiles)))
        blocks.append(block)
    width = max([len(c.stills) for c in cams] + [0])
    if width:
        block = Block("stills (full resolution), time from release", [f"still {i + 1}" for i in range(width)])
        for cam in cams:
            if cam.stills:
                block.rows.append((f"{cam.board}\n{cam.camera}", [
                    Tile(p.image, caption(cam.fl.rel(p.ts), p.phase, p.seq)) for p in cam.stills]
                    + [None] * (width - len(cam.stills))))
        blocks.append(block)
    header = flight_header(((f.board, f.ref.flight) for f in fset),
                           f"frames at {', '.join(f'{o:+g}' for o in OFFSETS_S)} s around each event")
    return draw_sheet(header, blocks, out_png)


def _spread_tiles(cam: _CamData, quantiles: tuple[float, ...]) -> list[Tile | None]:
    """Frames at fractions of a camera's recording (a second read of its segments: only without events)."""
    from camctl.store import iter_frames

    if not cam.times:
        return [None] * len(quantiles)
    want = [cam.times[min(len(cam.times) - 1, int(q * (len(cam.times) - 1)))] for q in quantiles]
    picker = Picker([(t, False) for t in want], 0)
    for seg in cam.fl.cameras[cam.camera]:
        for fr in iter_frames(seg):
            if not fr.still and fr.jpeg_ok:
                picker.offer(fr.timestamp_ns, fr.phase, fr.seq, fr.jpeg)
    t0 = cam.times[0]
    return [None if p is None else Tile(p.image, caption((p.ts - t0) / 1e9, p.phase, p.seq, since="from first"))
            for p in picker.picks()]


# --- timeline -----------------------------------------------------------------------------------------
def _lane(cam: _CamData) -> Lane:
    fl = cam.fl
    times = np.array(cam.times, dtype=np.int64)
    lane = Lane(cam.board, cam.camera, (times - (fl.t0_ns or 0)) / 1e9 if fl.t0_ns is not None else
                np.zeros(len(times)), phases=[(fl.rel(t), ph) for t, ph in fl.tb.phases])
    for rec in fl.events:  # faults of this camera, or of the board when the record names no camera
        if rec.get("kind") != "fault" or not isinstance(rec.get("mono_ns"), int):
            continue
        if rec.get("camera") in (None, cam.camera):
            lane.faults.append((fl.rel(rec["mono_ns"]), str(rec.get("error") or rec.get("name") or "fault")))
    # every loss of this camera, by reason (the ledger's intervals and the store's drops: camctl.common.ledger)
    lane.drops += [(fl.rel(mono), reason, n) for mono, c, reason, n in ledger_marks(fl.events) if c == cam.camera]
    for p in cam.stills:
        i = int(np.searchsorted(times, p.ts))
        g0 = times[i - 1] if i > 0 else p.ts
        g1 = times[i] if i < len(times) else p.ts
        lane.stills.append((fl.rel(p.ts), fl.rel(int(g0)), fl.rel(int(g1))))
    return lane


# --- driver -------------------------------------------------------------------------------------------
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


def export_all(root: Path, out: Path, *, mp4: bool = True, contact_sheet: bool = True, timeline: bool = True,
               frames: bool = False, foxglove: bool = False, progress: bool = False) -> ExportResult:
    """Export every flight under ``root`` (fetch output, board store or one flight folder) into ``out``.

    Raises ConfigError when ``root`` holds no flight."""
    root, out = Path(root), Path(out)
    refs = find_flights(root)
    if not refs:
        raise ConfigError(f"no flights under {root} (expected <board>/<flight>/flight.json, "
                          f"<flight>/flight.json or a flight folder)")
    res = ExportResult(out=out)
    seen: dict[tuple[str, str], FlightRef] = {}
    for r in refs:  # the demo's output holds each flight twice (its download and the board's store): once
        if (r.board, r.flight) in seen:
            res.notes.append(f"{r.board} {r.flight}: exported from {seen[(r.board, r.flight)].path}, also at {r.path}")
        else:
            seen[(r.board, r.flight)] = r
    flights = [_load_flight(r) for r in seen.values()]
    sets = _flight_sets(flights)
    total = sum(len(segs) for fl in flights for segs in fl.cameras.values())
    used_names: set[str] = set()
    with _progress(progress, total) as advance:
        for fset in sets:
            name = min(f.ref.flight for f in fset)
            while name in used_names:
                name += "_"
            used_names.add(name)
            set_dir = out / name
            alignment = align_set(fset)
            for board, a in alignment.items():
                if not a["aligned"]:
                    res.notes.append(f"{name}: {board} is UNALIGNED: {a['reason']}; its times are its own")
            set_dir.mkdir(parents=True, exist_ok=True)
            (set_dir / "alignment.json").write_text(json.dumps(alignment, indent=1, sort_keys=True))
            ref, events = _sheet_events(fset) if contact_sheet else (None, [])
            cams: list[_CamData] = []
            frames_dir = set_dir / "frames" if frames else None
            if frames_dir is not None:
                frames_dir.mkdir(parents=True, exist_ok=True)
            for fl in fset:
                targets = _sheet_targets(fl, ref, events)
                for camera in fl.cameras:
                    mp4_path = set_dir / "mp4" / f"{fl.board}_{camera}.mp4" if mp4 else None
                    cams.append(_scan_camera(fl, camera, mp4=mp4_path, frames_dir=frames_dir, targets=targets,
                                             res=res, advance=advance))
            aligned = any(f.tb.aligned for f in fset)
            if contact_sheet and any(c.times or c.stills for c in cams):
                png = set_dir / "contact_sheet.png"
                res.tiles[png] = _contact_sheet(fset, cams, png)
                res.contact_sheets.append(png)
            elif contact_sheet and any(has_previews(f.ref.path) for f in fset):
                png = set_dir / "contact_sheet.png"  # a thumbs-only download: the sheet from its previews
                res.tiles[png] = sheet_from_previews([f.ref for f in fset], png)
                res.contact_sheets.append(png)
                res.notes.append(f"{name}: contact sheet made from the previews (no segment downloaded yet)")
            if timeline and any(c.times for c in cams):
                title = flight_header(((f.board, f.ref.flight) for f in fset), "frame rate per camera")
                zero = "release" if aligned else "first event"
                png, svg = draw_timeline(title, [_lane(c) for c in cams], set_dir / "timeline.png", zero=zero)
                res.timelines.append(png)
                res.timeline_svgs.append(svg)
            if foxglove:
                from camctl.ground.export.foxglove import write_foxglove

                fx = write_foxglove([(f.board, f.ref.flight, f.cameras, sorted((f.ref.path / "events").glob("*.mcap")))
                                     for f in fset], set_dir / "foxglove", name)
                res.foxglove += [fx.mcap, fx.layout]
                res.notes += [f"{fx.mcap}: left out {u}" for u in fx.unreadable]
            if not aligned and (cams or contact_sheet):
                res.notes.append(f"{name}: no release event logged; times are from the first event")
    return res


def export_main(args: argparse.Namespace) -> int:
    """``camctl export DIR [--mp4] [--contact-sheet] [--timeline] [--frames] [--out OUTDIR] [--quiet]``.

    0 when something was written, 1 when the flights hold nothing to export, 2 (ConfigError) for no flight."""
    root = Path(args.dir)
    if not root.is_dir():
        raise ConfigError(f"no such folder: {root}")
    kinds = {k: bool(getattr(args, k, False)) for k in ("mp4", "contact_sheet", "timeline", "frames", "foxglove")}
    if not any(kinds.values()):  # nothing asked: everything but the Foxglove copy (it duplicates the data)
        kinds = {k: k != "foxglove" for k in kinds}
    out = Path(args.out) if getattr(args, "out", None) else root / "export"
    quiet = bool(getattr(args, "quiet", False))
    res = export_all(root, out, progress=not quiet, **kinds)
    for kind, paths in res.paths().items():
        if paths and (kind != "frames" or not quiet):
            shown = f"{len(paths)} files in {paths[0].parent}" if kind == "frames" else \
                ", ".join(str(p) for p in paths)
            print(f"{kind}: {shown}")
    for note in res.notes:
        print(f"note: {note}")
    if not any(res.paths().values()):
        print(f"export: nothing written (no frames under {root})")
        return 1  # flights without a frame: a problem in the data (camctl.cli's exit-code rule)
    return 0
