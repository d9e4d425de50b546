"""MP4 export: one H.264 video per board and camera, frames at their real sensor times (VFR).

Owns the MP4 time base and pts rule (:func:`pts_of`), the video size of a camera whose frame size
changes (:func:`video_size`: the largest; smaller frames are scaled up keeping their aspect, never
cropped) and the phases as a mov_text subtitle track, or a sidecar ``.srt`` if muxing it fails
(:class:`Mp4Writer`).

Example::

    >>> w = Mp4Writer(Path("rig-a_down.mp4"), fl, "down", video_size(segs))  # doctest: +SKIP
    >>> w.add(timestamp_ns, jpeg); w.close()
"""

from __future__ import annotations

import struct
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import simplejpeg

from camctl.ground.export.flightset import reboot_notes

if TYPE_CHECKING:
    from camctl.ground.export.flightset import Flight

__all__ = ["MP4_TIME_BASE", "Mp4Writer", "pts_of", "srt_text", "video_size"]

MP4_TIME_BASE = Fraction(1, 90000)


def pts_of(timestamp_ns: int, first_ns: int) -> int:
    """The MP4 pts (in :data:`MP4_TIME_BASE`) of a frame: its sensor time from the first frame,
    rounded."""
    return ((timestamp_ns - first_ns) * 9 + 50_000) // 100_000  # ns * 90000 / 1e9


def video_size(segments: list[Path]) -> tuple[int, int]:
    """The size of a camera's video: the largest width and height of its video frames (stills
    excluded)."""
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


class Mp4Writer:
    """One camera's H.264 MP4 at ``size`` (even-rounded), opened at its first frame; a frame of
    another size is scaled to fit keeping its aspect and centred on black, never cropped; phases
    muxed as mov_text (or .srt). ``add`` takes times on the flight's timeline
    (:meth:`Flight.frame_ns`), so a flight recorded across a reboot is one monotonic video whose
    pts keep the time the board was down."""

    def __init__(self, path: Path, fl: Flight, camera: str,
                 size: tuple[int, int] | None = None) -> None:
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
        frame = av.VideoFrame.from_ndarray(self._fit(rgb), format="rgb24")
        frame = frame.reformat(format="yuv420p")
        frame.pts = pts
        frame.time_base = MP4_TIME_BASE
        self.container.mux(self.stream.encode(frame))
        self.frames += 1
        self.last_ns, self.last_pts = ts, pts
        self._emit_subs(ts - self.first_ns)

    def _fit(self, rgb: np.ndarray) -> np.ndarray:
        """``rgb`` at the video's size: scaled by one factor (aspect kept), centred on black."""
        import av

        h, w = rgb.shape[:2]
        if (w, h) == (self.width, self.height):
            return rgb
        if w - w % 2 == self.width and h - h % 2 == self.height:
            # the odd last row/column only
            return np.ascontiguousarray(rgb[:self.height, :self.width])
        self.scaled += 1
        k = min(self.width / w, self.height / h)
        sw = max(1, min(self.width, round(w * k)))
        sh = max(1, min(self.height, round(h * k)))
        small = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
        scaled = small.reformat(width=sw, height=sh, format="rgb24",
                                interpolation="BICUBIC").to_ndarray()
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
        zero = "release" if fl.tb.aligned else "the first event"
        comment = f"first frame at {fl.rel(ts):+.3f} s from {zero}"
        # frames of every run are on the flight's timeline: a reboot is a gap in the video's time
        self.container.metadata["comment"] = "; ".join([comment, *reboot_notes(fl)])
        self.stream = self.container.add_stream("libx264", rate=30,
                                                options={"preset": "veryfast", "crf": "20"})
        self.stream.width, self.stream.height = self.width, self.height
        self.stream.pix_fmt = "yuv420p"
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
            has_next = self.next_range + 1 < len(self.ranges)
            end = self.ranges[self.next_range + 1][0] if has_next else None
            if final:  # the video ends at rel_ns: clip the last range, drop ranges after it
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
            self.srt.write_text(srt_text(self.ranges, self.last_ns - self.first_ns),
                                encoding="utf-8")


def srt_text(ranges: list[tuple[int, str]], end_ns: int) -> str:
    """The phases as SubRip text: ``ranges`` are (start ns from the first frame, phase); the last
    one ends 1 ms after ``end_ns``."""
    def ts(ns: int) -> str:
        ms = ns // 1_000_000
        hms = f"{ms // 3_600_000:02d}:{ms // 60_000 % 60:02d}:{ms // 1000 % 60:02d}"
        return f"{hms},{ms % 1000:03d}"

    lines = []
    for i, (start, phase) in enumerate(ranges):
        end = ranges[i + 1][0] if i + 1 < len(ranges) else end_ns + 1_000_000
        lines.append(f"{i + 1}\n{ts(start)} --> {ts(end)}\n{phase}\n")
    return "\n".join(lines)
