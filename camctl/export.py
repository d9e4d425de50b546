"""Ground-station exports of downloaded flights: MP4 per board/camera, contact sheet, timeline, plain JPEGs.

Owns ``camctl export`` (:func:`export_main`), the library call :func:`export_all` (``camctl demo`` uses it)
and :func:`contact_sheet_from_thumbs` (a first look from the previews, before the full download ends).

Boards are aligned on the shared release edge (see :class:`camctl.views.TimeBase`). Flights of different
boards flown together (release within :data:`SET_WINDOW_S` of each other, one flight per board) form a
*flight set*; each set is written to ``<out>/<set>/``::

    <set>/mp4/<board>_<camera>.mp4       H.264, frames at their real sensor timestamps (VFR), phases as a
                                         mov_text subtitle track (a sidecar .srt if muxing it fails); a
                                         camera whose frame size changes (e.g. 320x180 ARMED, 960x540 in
                                         DESCENT) gets one video at its largest size: smaller frames are
                                         scaled up keeping their aspect (black bars if it differs), never
                                         cropped
    <set>/contact_sheet.png             frames around each event, every camera of every board
    <set>/timeline.png                  frame rate per camera on a common axis, phases, faults, drops
    <set>/frames/<board>_<camera>_<seq:06d>_<+t.ttt>s.jpg   the stored JPEG bytes

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
from PIL import Image, ImageDraw, ImageFont

from camctl.exc import ConfigError
from camctl.views import FlightRef, TimeBase, find_flights, load_events

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
BG = (18, 18, 22)  # background of the contact sheet and the timeline
_TILE_W, _TILE_H, _LABEL_H, _PAD, _HEAD_H = 240, 180, 30, 8, 22
_BIN_S = 0.25
_NOT_DESCENT = {"SAFE", "ARMED", "LANDED"}  # phases whose entering events are not contact-sheet moments
_SKIP_DIRS = {"events", "thumbs", "export"}
_PHASE_COLORS = {"SAFE": (60, 60, 60), "ARMED": (70, 70, 120), "DESCENT": (40, 110, 60),
                 "SEPARATION": (130, 110, 30), "TOUCHDOWN": (150, 60, 40), "LANDED": (90, 60, 110)}
_OTHER_COLORS = [(40, 100, 120), (120, 50, 100), (80, 120, 40), (120, 80, 40)]


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
    tiles: dict[Path, list[tuple[int, int, int, int]]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def paths(self) -> dict[str, list[Path]]:
        return {"mp4": self.mp4, "contact_sheet": self.contact_sheets, "timeline": self.timelines,
                "frames": self.frames, "srt": self.subtitles}


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
class _Pick:
    dist: int = 1 << 62
    ts: int = 0
    seq: int = 0
    phase: str = ""
    jpeg: bytes = b""


@dataclass
class _CamData:
    board: str
    camera: str
    fl: _Flight
    times: list[int] = field(default_factory=list)  # sensor ns of every video frame
    picks: list[_Pick] = field(default_factory=list)


def _scan_camera(fl: _Flight, camera: str, *, mp4: Path | None, frames_dir: Path | None, targets: list[int | None],
                 res: ExportResult, advance: Any) -> _CamData:
    from camctl.store import iter_frames

    data = _CamData(fl.board, camera, fl, picks=[_Pick() for _ in targets])
    writer = _Mp4(mp4, fl, camera, _video_size(fl.cameras[camera])) if mp4 is not None else None
    tol = 1_000_000_000  # a contact-sheet cell takes a frame within 1 s of its moment
    try:
        for seg in fl.cameras[camera]:
            for fr in iter_frames(seg):
                if frames_dir is not None:
                    t = fl.rel(fr.timestamp_ns) if fl.t0_ns is not None else 0.0
                    path = frames_dir / frame_file_name(fl.board, camera, fr.seq, t, still=fr.still)
                    path.write_bytes(fr.jpeg)
                    res.frames.append(path)
                if fr.still or not fr.jpeg_ok:
                    continue
                data.times.append(fr.timestamp_ns)
                if writer is not None:
                    writer.add(fr.timestamp_ns, fr.jpeg)
                for target, pick in zip(targets, data.picks, strict=True):
                    if target is None:
                        continue
                    d = abs(fr.timestamp_ns - target)
                    if d < pick.dist and d <= tol:
                        pick.dist, pick.ts, pick.seq, pick.phase, pick.jpeg = (d, fr.timestamp_ns, fr.seq,
                                                                               fr.phase, fr.jpeg)
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
def _moments(fset: list[_Flight]) -> list[tuple[str, str | None, float]]:
    """Columns of the contact sheet: (label, event, offset s), from the set's first board with events."""
    ref = next((f for f in fset if f.tb.aligned), None)
    if ref is None:
        return [(f"{q:.0%} of recording", None, q) for q in (0.0, 0.25, 0.5, 0.75, 1.0)]
    evs = [ev for ev, t in sorted(ref.tb.event_ns.items(), key=lambda kv: kv[1])
           if t >= ref.tb.t0_ns and ref.tb.event_phase.get(ev) not in _NOT_DESCENT]  # type: ignore[operator]
    cols: list[tuple[str, str | None, float]] = [("release -0.5 s", evs[0], -0.5)]
    cols += [(ev, ev, 0.0) for ev in evs]
    cols.append((f"{evs[-1]} +1 s", evs[-1], 1.0))
    return cols


def _targets(fl: _Flight, fset: list[_Flight], cols: list[tuple[str, str | None, float]]) -> list[int | None]:
    ref = next((f for f in fset if f.tb.aligned), None)
    out: list[int | None] = []
    for _label, ev, off in cols:
        if ev is None:
            out.append(None)
            continue
        t = fl.tb.event_ns.get(ev)
        if t is None and ref is not None and fl.t0_ns is not None and ev in ref.tb.event_ns:
            t = fl.t0_ns + ref.tb.event_ns[ev] - ref.tb.t0_ns  # type: ignore[operator]
        out.append(None if t is None else t + int(off * 1e9))
    return out


def _font(size: int = 12) -> Any:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow without FreeType
        return ImageFont.load_default()


def _tile(jpeg: bytes) -> Image.Image:
    """A frame decoded at the smallest JPEG scale that still covers a tile, fitted into the tile."""
    arr = simplejpeg.decode_jpeg(jpeg, colorspace="RGB", min_width=_TILE_W, min_height=_TILE_H)
    im = Image.fromarray(arr)
    im.thumbnail((_TILE_W, _TILE_H))
    return im


def _fill_unaligned(cam: _CamData, quantiles: list[float]) -> None:
    """Columns given as fractions of the recording (no events): take frames from the camera's second read."""
    from camctl.store import iter_frames

    if not cam.times:
        return
    want = [cam.times[min(len(cam.times) - 1, int(q * (len(cam.times) - 1)))] for q in quantiles]
    for seg in cam.fl.cameras[cam.camera]:
        for fr in iter_frames(seg):
            for i, t in enumerate(want):
                if fr.timestamp_ns == t and not fr.still and not cam.picks[i].jpeg:
                    cam.picks[i] = _Pick(0, fr.timestamp_ns, fr.seq, fr.phase, fr.jpeg)
        if all(p.jpeg for p in cam.picks):
            return


def _contact_sheet(title: str, cols: list[tuple[str, str | None, float]], cams: list[_CamData],
                   out_png: Path) -> list[tuple[int, int, int, int]]:
    cell_w, cell_h = _TILE_W + _PAD, _TILE_H + _LABEL_H + _PAD
    width = _PAD + cell_w * len(cols)
    height = _HEAD_H * 2 + _PAD + cell_h * max(1, len(cams))
    sheet = Image.new("RGB", (width, height), BG)
    draw = ImageDraw.Draw(sheet)
    font = _font(12)
    draw.text((_PAD, 4), title, fill=(230, 230, 230), font=_font(14))
    for c, (label, _ev, _off) in enumerate(cols):
        draw.text((_PAD + c * cell_w, _HEAD_H + 2), label, fill=(200, 200, 120), font=font)
    boxes: list[tuple[int, int, int, int]] = []
    for r, cam in enumerate(cams):
        y = _HEAD_H * 2 + _PAD + r * cell_h
        for c, pick in enumerate(cam.picks):
            x = _PAD + c * cell_w
            draw.rectangle((x, y, x + _TILE_W - 1, y + _TILE_H - 1), outline=(60, 60, 66))
            if pick.jpeg:
                try:
                    im = _tile(pick.jpeg)
                except ValueError:
                    im = None
                if im is not None:
                    ox, oy = x + (_TILE_W - im.width) // 2, y + (_TILE_H - im.height) // 2
                    sheet.paste(im, (ox, oy))
                    boxes.append((ox, oy, ox + im.width, oy + im.height))
                t = f"{cam.fl.rel(pick.ts):+.3f}s" if cam.fl.t0_ns is not None else f"seq {pick.seq}"
                line2 = f"{pick.phase or '?'}  {t}  #{pick.seq}"
            else:
                draw.text((x + 8, y + _TILE_H // 2 - 6), "no frame", fill=(120, 120, 120), font=font)
                line2 = ""
            draw.text((x, y + _TILE_H + 2), f"{cam.board}/{cam.camera}", fill=(230, 230, 230), font=font)
            draw.text((x, y + _TILE_H + 15), line2, fill=(170, 170, 170), font=font)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out_png)
    return boxes


def contact_sheet_from_thumbs(root: Path, out_png: Path, *, per_camera: int = 8) -> Path:
    """A contact sheet from the ``thumbs/`` previews alone (``camctl fetch`` writes them first): per
    board/camera row, ``per_camera`` previews evenly spread over the flight. ConfigError when there are none."""
    rows: list[tuple[str, str, list[Path]]] = []
    labels: dict[Path, str] = {}
    for ref in find_flights(Path(root)):
        tdir = ref.path / "thumbs"
        # fetch writes thumbs/index.json (sensor time and phase per preview) and the event log before any
        # preview, so even the first look is labelled with time from release
        try:
            infos = json.loads((tdir / "index.json").read_text(encoding="utf-8"))
            tb: TimeBase | None = TimeBase.from_events(load_events(ref.path))
        except (OSError, ValueError):
            infos, tb = {}, None
        for cam_dir in sorted(p for p in tdir.iterdir() if p.is_dir()) if tdir.is_dir() else []:
            files = sorted(cam_dir.glob("*.jpg"))
            if not files:
                continue
            n = min(per_camera, len(files))
            pick = [files[round(i * (len(files) - 1) / max(1, n - 1))] for i in range(n)]
            rows.append((f"{ref.board}/{ref.flight}", cam_dir.name, pick))
            for f in pick:
                info = infos.get(f"{cam_dir.name}/{f.stem}") if isinstance(infos, dict) else None
                if isinstance(info, dict) and isinstance(info.get("timestamp_ns"), int) and tb is not None \
                        and tb.aligned:
                    labels[f] = f"{info.get('phase', '')} {tb.rel_s(info['timestamp_ns']):+.2f}s #{int(f.stem)}"
    if not rows:
        raise ConfigError(f"no previews under {root} (expected <board>/<flight>/thumbs/<camera>/*.jpg)")
    tw, th = 160, 120
    cols = max(len(r[2]) for r in rows)
    cell_w, cell_h = tw + _PAD, th + 16 + _PAD
    sheet = Image.new("RGB", (_PAD + 150 + cols * cell_w, _HEAD_H + _PAD + len(rows) * cell_h), BG)
    draw = ImageDraw.Draw(sheet)
    font = _font(11)
    draw.text((_PAD, 4), f"previews: {root}", fill=(230, 230, 230), font=_font(13))
    for r, (board, cam, files) in enumerate(rows):
        y = _HEAD_H + _PAD + r * cell_h
        draw.text((_PAD, y + 4), board, fill=(230, 230, 230), font=font)
        draw.text((_PAD, y + 18), cam, fill=(200, 200, 120), font=font)
        for c, f in enumerate(files):
            x = _PAD + 150 + c * cell_w
            try:
                with Image.open(f) as im0:
                    im = im0.convert("RGB")
                im.thumbnail((tw, th))
                sheet.paste(im, (x + (tw - im.width) // 2, y + (th - im.height) // 2))
            except OSError:
                draw.text((x + 4, y + th // 2), "bad preview", fill=(200, 80, 80), font=font)
            label = labels.get(f) or f"#{int(f.stem) if f.stem.isdigit() else f.stem}"
            draw.text((x, y + th + 2), label, fill=(170, 170, 170), font=font)
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out_png)
    return out_png


# --- timeline -----------------------------------------------------------------------------------------
def _phase_color(name: str) -> tuple[int, int, int]:
    return _PHASE_COLORS.get(name, _OTHER_COLORS[sum(name.encode()) % len(_OTHER_COLORS)])


def _nice_step(span: float, n: int = 10) -> float:
    raw = span / max(1, n)
    for m in (0.1, 0.2, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600):
        if m >= raw:
            return m
    return 1200.0


def _timeline(title: str, cams: list[_CamData], out_png: Path) -> None:
    left, right, top, lane_h, bottom = 190, 30, 62, 84, 46
    width = 1400
    rels = [c.fl.rel(t) for c in cams for t in (c.times[:1] + c.times[-1:])]
    for c in cams:
        rels += [c.fl.rel(t) for t, _ in c.fl.tb.phases if c.times and c.times[0] <= t <= c.times[-1]]
    lo, hi = (min(rels), max(rels)) if rels else (-1.0, 1.0)
    if hi - lo < 1.0:
        hi = lo + 1.0
    span = hi - lo
    lo, hi = lo - span * 0.02, hi + span * 0.02
    height = top + lane_h * max(1, len(cams)) + bottom
    img = Image.new("RGB", (width, height), BG)
    d = ImageDraw.Draw(img)
    font, small = _font(12), _font(10)
    plot_w = width - left - right

    def x_of(t: float) -> int:
        return left + int((t - lo) / (hi - lo) * plot_w)

    # frame rate per lane, sampled every 0.25 s: 1 / the frame interval covering the sample time
    series: list[tuple[np.ndarray, np.ndarray]] = []
    edges = np.arange(lo, hi + _BIN_S, _BIN_S)
    for c in cams:
        rel = np.array([c.fl.rel(t) for t in c.times])
        fps = np.zeros(len(edges) - 1)
        if rel.size >= 2:
            mid = (edges[:-1] + edges[1:]) / 2
            i = np.searchsorted(rel, mid, side="right")  # interval [rel[i-1], rel[i]] covers mid
            inside = (i > 0) & (i < rel.size)
            dt = rel[np.clip(i, 1, rel.size - 1)] - rel[np.clip(i - 1, 0, rel.size - 2)]
            fps = np.where(inside & (dt > 0), 1.0 / np.where(dt > 0, dt, 1.0), 0.0)
        series.append((edges, fps))
    ymax = max([float(s[1].max()) for s in series if s[1].size] + [1.0])
    ymax = float(np.ceil(ymax / 10 - 1e-3) * 10) if ymax > 10 else float(np.ceil(ymax - 1e-3))
    d.text((8, 6), title, fill=(230, 230, 230), font=_font(14))
    # legend
    x = left
    phases_seen: list[str] = []
    for c in cams:
        for _, ph in c.fl.tb.phases:
            if ph not in phases_seen:
                phases_seen.append(ph)
    for ph in phases_seen:
        d.rectangle((x, 30, x + 12, 42), fill=_phase_color(ph))
        d.text((x + 16, 30), ph, fill=(220, 220, 220), font=small)
        x += 24 + int(d.textlength(ph, font=small))
    d.line((x, 36, x + 14, 36), fill=(120, 200, 255), width=2)
    d.text((x + 18, 30), "frames/s (sampled every 0.25 s)", fill=(220, 220, 220), font=small)
    x += 30 + int(d.textlength("frames/s (sampled every 0.25 s)", font=small))
    d.line((x + 6, 30, x + 6, 42), fill=(255, 60, 60), width=2)
    d.text((x + 12, 30), "fault", fill=(220, 220, 220), font=small)
    x += 50
    d.polygon([(x, 42), (x + 12, 42), (x + 6, 30)], fill=(255, 160, 40))
    d.text((x + 16, 30), "dropped frames", fill=(220, 220, 220), font=small)
    step = _nice_step(hi - lo)
    ticks = np.arange(np.ceil(lo / step) * step, hi, step)
    for r, (c, (edges, fps)) in enumerate(zip(cams, series, strict=True)):
        y0, y1 = top + r * lane_h, top + (r + 1) * lane_h - 8
        # phases shaded
        ph = c.fl.tb.phases
        for i, (t, name) in enumerate(ph):
            t_end = ph[i + 1][0] if i + 1 < len(ph) else None
            xa = max(left, x_of(c.fl.rel(t)))
            xb = min(left + plot_w, x_of(c.fl.rel(t_end)) if t_end is not None else left + plot_w)
            if xb > xa:
                d.rectangle((xa, y0, xb, y1), fill=tuple(v // 2 for v in _phase_color(name)))
        d.rectangle((left, y0, left + plot_w, y1), outline=(90, 90, 96))
        for tk in ticks:
            d.line((x_of(float(tk)), y0, x_of(float(tk)), y1), fill=(55, 55, 62))
        # fps curve
        pts = []
        for i, v in enumerate(fps):
            xa, xb = x_of(float(edges[i])), min(left + plot_w, x_of(float(edges[i + 1])))
            yv = y1 - int(float(v) / ymax * (y1 - y0 - 4))
            pts += [(xa, yv), (xb, yv)]
        if pts:
            d.line(pts, fill=(120, 200, 255), width=2)
        # faults and drops of this camera (or of the board when the record names no camera)
        for rec in c.fl.events:
            if rec.get("kind") not in ("fault", "drop") or not isinstance(rec.get("mono_ns"), int):
                continue
            if rec.get("camera") not in (None, c.camera):
                continue
            xe = x_of(c.fl.rel(rec["mono_ns"]))
            if not left <= xe <= left + plot_w:
                continue
            if rec["kind"] == "fault":
                d.line((xe, y0, xe, y1), fill=(255, 60, 60), width=2)
            else:
                d.polygon([(xe - 6, y1), (xe + 6, y1), (xe, y1 - 12)], fill=(255, 160, 40))
                d.text((xe + 7, y1 - 12), str(rec.get("count", "")), fill=(255, 160, 40), font=small)
        if c.fl.tb.aligned:
            d.line((x_of(0.0), y0, x_of(0.0), y1), fill=(240, 240, 240), width=1)
        d.text((8, y0 + 4), c.board, fill=(230, 230, 230), font=font)
        d.text((8, y0 + 20), c.camera, fill=(200, 200, 120), font=font)
        d.text((8, y0 + 36), f"{len(c.times)} frames", fill=(170, 170, 170), font=small)
        d.text((left - 34, y0), f"{ymax:g}", fill=(170, 170, 170), font=small)
        d.text((left - 14, y1 - 12), "0", fill=(170, 170, 170), font=small)
    ya = top + lane_h * max(1, len(cams)) - 4
    d.line((left, ya, left + plot_w, ya), fill=(200, 200, 200))
    for tk in ticks:
        xt = x_of(float(tk))
        d.line((xt, ya, xt, ya + 5), fill=(200, 200, 200))
        label = f"{float(tk):+g}"
        d.text((xt - d.textlength(label, font=small) / 2, ya + 8), label, fill=(200, 200, 200), font=small)
    zero = "release" if any(c.fl.tb.aligned for c in cams) else "first event"
    d.text((left + plot_w // 2 - 60, ya + 24), f"seconds from {zero}", fill=(220, 220, 220), font=font)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    img.save(out_png)


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
               frames: bool = False, progress: bool = False) -> ExportResult:
    """Export every flight under ``root`` (fetch output, board store or one flight folder) into ``out``.

    Raises ConfigError when ``root`` holds no flight."""
    root, out = Path(root), Path(out)
    refs = find_flights(root)
    if not refs:
        raise ConfigError(f"no flights under {root} (expected <board>/<flight>/flight.json, "
                          f"<flight>/flight.json or a flight folder)")
    res = ExportResult(out=out)
    flights = [_load_flight(r) for r in refs]
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
            cols = _moments(fset) if contact_sheet else []
            cams: list[_CamData] = []
            frames_dir = set_dir / "frames" if frames else None
            if frames_dir is not None:
                frames_dir.mkdir(parents=True, exist_ok=True)
            for fl in fset:
                targets = _targets(fl, fset, cols)
                for camera in fl.cameras:
                    mp4_path = set_dir / "mp4" / f"{fl.board}_{camera}.mp4" if mp4 else None
                    cams.append(_scan_camera(fl, camera, mp4=mp4_path, frames_dir=frames_dir, targets=targets,
                                             res=res, advance=advance))
            title = f"{name}: " + ", ".join(f"{f.board} ({f.ref.flight})" for f in fset)
            if contact_sheet and cams:
                if cols and cols[0][1] is None:
                    for cam in cams:
                        _fill_unaligned(cam, [off for _l, _e, off in cols])
                png = set_dir / "contact_sheet.png"
                res.tiles[png] = _contact_sheet(title, cols, cams, png)
                res.contact_sheets.append(png)
            if timeline and cams:
                png = set_dir / "timeline.png"
                _timeline(title, cams, png)
                res.timelines.append(png)
            if not any(c.fl.tb.aligned for c in cams):
                res.notes.append(f"{name}: no release event logged; times are from the first event")
    return res


def export_main(args: argparse.Namespace) -> int:
    """``camctl export DIR [--mp4] [--contact-sheet] [--timeline] [--frames] [--out OUTDIR] [--quiet]``.

    0 when something was written, 1 when the flights hold nothing to export, 2 (ConfigError) for no flight."""
    root = Path(args.dir)
    if not root.is_dir():
        raise ConfigError(f"no such folder: {root}")
    kinds = {k: bool(getattr(args, k, False)) for k in ("mp4", "contact_sheet", "timeline", "frames")}
    if not any(kinds.values()):
        kinds = dict.fromkeys(kinds, True)
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
