"""The flight timeline: frame rate per board and camera on one time axis (seconds from release),
drawn by matplotlib, written as PNG and SVG.

One panel per camera, sharing the x axis. Frame rates are averaged over bins of :data:`BIN_S` whose
edges fall on the release edge (t = 0), so a rate change at the release shows exactly there, never a
bin early, and the interval spanning a phase edge is split at it, never a speed-up before it
(:func:`rate_bins`). Phases are shaded; faults are red lines; every drop record of the flight's
event log is a marker at the gap its frames left (:func:`drop_time`), one shape and colour per drop
reason, with its count; every still is
a span over the gap it left in the video stream; a dashed line marks where the board came back from
a reboot ("reboot: down 8.1 s"), its frames placed on the flight's timeline like the others. Each
board's first panel names its phase edges with their source (``release · imu``: the board's IMU
saw it; ``gpio``: a trigger line).

Under the frame rates, a board that recorded sensors gets a track per sensor on the same axis
(:class:`Track`, :func:`sensor_tracks`): the IMU's |a| in g and the barometer's altitude in metres
above the landing point (:func:`camctl.ground.samples.altitude_above_landing`), phases shaded,
edges named with their source. A 1 kHz IMU has more samples than the figure has pixels: each track
is drawn from its min and max per pixel column (:func:`envelope`), so a 5 ms impact spike is never
lost to the drawing; a hole in the samples (a lost batch) is a gap in the line.

Example::

    >>> draw_timeline("flight F1", lanes, Path("timeline.png"))      # doctest: +SKIP
    [PosixPath('timeline.png'), PosixPath('timeline.svg')]
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from camctl.common.ledger import ledger_marks
from camctl.common.records import FaultRecord, LedgerRecord, PhaseRecord, read

if TYPE_CHECKING:
    from camctl.ground.export.flightset import CamData, Flight

__all__ = ["BIN_S", "PHASE_COLORS", "Lane", "Track", "draw_timeline", "drop_time", "envelope",
           "lane_of", "lane_rates", "rate_bins", "sensor_tracks"]

BIN_S = 0.25
PHASE_COLORS = {"SAFE": "#9e9e9e", "ARMED": "#7986cb", "DESCENT": "#81c784",
                "SEPARATION": "#ffd54f", "TOUCHDOWN": "#ff8a65", "LANDED": "#ba68c8"}
_OTHER_COLORS = ["#4dd0e1", "#f06292", "#aed581", "#ffb74d"]
_DROP_STYLES = ["v", "s", "D", "^", "P", "X", "o", "*"]
_LABEL_CHARS = 48  # a fault's mark on the plot: longer messages are cut
_FIG_W_IN, _DPI = 14, 100  # the figure: 1400 px wide, so no more pixel columns than that


@dataclass
class Lane:
    """One camera of one board, every time in seconds from the flight's zero (the release edge)."""

    board: str
    camera: str
    frames_s: np.ndarray  # sensor time of every video frame
    # (start, phase entered), in order
    phases: list[tuple[float, str]] = field(default_factory=list)
    faults: list[tuple[float, str]] = field(default_factory=list)  # (time, what)
    drops: list[tuple[float, str, int]] = field(default_factory=list)  # (time, reason, count)
    # (still, gap start, gap end)
    stills: list[tuple[float, float, float]] = field(default_factory=list)
    # (where the board came back, what: "reboot: down 8.1 s"): every frame is on one timeline
    reboots: list[tuple[float, str]] = field(default_factory=list)
    # (edge, event, source: gpio | imu | operator...): named on the board's first panel
    edges: list[tuple[float, str, str]] = field(default_factory=list)


@dataclass
class Track:
    """One sensor track of one board under the frame rates: ``values`` at ``t_s`` (seconds from
    the flight's zero), what they are (``accel_g``: |a| in g; ``altitude``: m above the landing
    point), with the board's phases and edges."""

    board: str
    sensor: str
    what: str  # accel_g | altitude
    t_s: np.ndarray
    values: np.ndarray
    phases: list[tuple[float, str]] = field(default_factory=list)
    edges: list[tuple[float, str, str]] = field(default_factory=list)

    @property
    def label(self) -> str:
        unit = "|a| g" if self.what == "accel_g" else "altitude m\nabove landing"
        return f"{self.board}\n{self.sensor}\n{unit}"


def rate_bins(frames_s: np.ndarray, lo: float, hi: float, bin_s: float = BIN_S,
              edges_s: Sequence[float] = ()) -> tuple[np.ndarray, np.ndarray]:
    """(bin edges, frames/s per bin) over [lo, hi]; edges: whole multiples of ``bin_s`` from t = 0.

    A bin's rate is the frame rate averaged over the part of it that lies between two frames: each
    interval between consecutive frames runs at 1/its length, so a steady 10 fps reads 10 in every
    bin (counting frames per bin would alias to 8 and 12) and a rate change at an event starts
    exactly at its bin edge. An interval that spans an event edge (``edges_s``: the phase changes)
    is split at it: the part before the edge runs at the rate of the interval before it, the part
    after at the rate of the interval after it. The camera's schedule changes at the edge, so that
    interval (the last frame of the old rate to the first of the new) measures neither rate, and
    spread back over the bin before the edge it read as a speed-up there (issue 28 item 5)."""
    start = np.floor(lo / bin_s) * bin_s
    n = max(1, int(np.ceil((hi - start) / bin_s - 1e-9)))
    edges = start + np.arange(n + 1) * bin_s
    t = np.sort(np.asarray(frames_s, dtype=float))
    if t.size < 2:
        return edges, np.zeros(n)
    # per-interval rates, then the intervals that hold an event edge split at it
    lefts, rights = t[:-1], t[1:]
    dt = rights - lefts
    rates = np.where(dt > 0, 1.0 / np.where(dt > 0, dt, 1.0), 0.0)
    seg_lo, seg_hi, seg_rate = lefts.tolist(), rights.tolist(), rates.tolist()
    for e in sorted(set(float(x) for x in edges_s)):
        i = int(np.searchsorted(t, e, side="right")) - 1  # the interval [t[i], t[i+1]) holds e
        if i < 0 or i + 1 >= t.size or not t[i] < e < t[i + 1]:
            continue
        before = rates[i - 1] if i > 0 else rates[i + 1] if i + 1 < rates.size else rates[i]
        after = rates[i + 1] if i + 1 < rates.size else before
        j = bisect.bisect_right(seg_lo, e) - 1  # the piece holding e (a second edge: its tail)
        if i > 0 and seg_rate[j] != rates[i]:
            before = seg_rate[j]  # two edges in one interval: the rate stays as split
        end = seg_hi[j]
        seg_hi[j], seg_rate[j] = e, float(before)
        seg_lo.insert(j + 1, e)
        seg_hi.insert(j + 1, end)
        seg_rate.insert(j + 1, float(after))
    # the integral of the rate (a frame counter) at every piece's end: piecewise linear
    knots = np.array([seg_lo[0], *seg_hi])
    counter = np.concatenate([[0.0], np.cumsum(np.array(seg_rate) * np.diff(knots))])
    a, b = np.maximum(edges[:-1], t[0]), np.minimum(edges[1:], t[-1])
    covered = b - a
    frames = np.interp(b, knots, counter) - np.interp(a, knots, counter)
    rate = np.where(covered > 0, frames / np.where(covered > 0, covered, 1.0), 0.0)
    return edges, rate


def drop_time(frames_s: np.ndarray, since_s: float, until_s: float) -> float:
    """Where the drops a ledger interval (``since_s`` .. ``until_s``) counted happened: the middle
    of the widest gap between stored frames that overlaps the interval (the dropped frames' own
    times lie in it); ``until_s`` (the record's time) when no stored frame is near it."""
    t = np.sort(np.asarray(frames_s, dtype=float))
    if t.size < 2:
        return until_s
    lo, hi = t[:-1], t[1:]
    inside = (hi > since_s) & (lo < until_s)
    if not inside.any():
        return until_s
    k = int(np.flatnonzero(inside)[np.argmax((hi - lo)[inside])])
    return float((lo[k] + hi[k]) / 2)


def lane_rates(ln: Lane, lo: float, hi: float) -> tuple[np.ndarray, np.ndarray]:
    """A lane's plotted frame rate (:func:`rate_bins`), split at each of its phase edges."""
    return rate_bins(ln.frames_s, lo, hi, edges_s=[t for t, _ in ln.phases])


def _phase_color(name: str) -> str:
    return PHASE_COLORS.get(name, _OTHER_COLORS[sum(name.encode()) % len(_OTHER_COLORS)])


def envelope(t_s: np.ndarray, values: np.ndarray, lo: float, hi: float,
             columns: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(x, min, max) of ``values`` per column of ``columns`` equal columns over [lo, hi): what a
    track draws instead of every sample, so the extremes of every column, a one-sample spike too,
    are kept. Only columns holding a sample are given (x: the column's centre); a sparse sensor's
    empty columns between samples are bridged, but a hole in the samples (longer than 20 ms and
    4 sample intervals: a lost batch) is a row of NaN, a gap in the line, never a made-up
    value."""
    t = np.asarray(t_s, dtype=float)
    v = np.asarray(values, dtype=float)
    keep = (t >= lo) & (t < hi)
    t, v = t[keep], v[keep]
    if not t.size:
        return np.empty(0), np.empty(0), np.empty(0)
    order = np.argsort(t, kind="stable")
    t, v = t[order], v[order]
    width = (hi - lo) / columns
    col = np.minimum(((t - lo) / width).astype(np.int64), columns - 1)
    starts = np.flatnonzero(np.concatenate(([True], np.diff(col) > 0)))
    x = lo + (col[starts] + 0.5) * width
    vmin, vmax = np.minimum.reduceat(v, starts), np.maximum.reduceat(v, starts)
    # a hole: from a column's last sample to the next column's first
    hole = max(0.02, 4 * float(np.median(np.diff(t)))) if t.size > 1 else np.inf
    last = np.concatenate((starts[1:], [t.size])) - 1
    gaps = np.flatnonzero(t[starts[1:]] - t[last[:-1]] > hole) + 1
    nan = np.full(gaps.size, np.nan)
    return (np.insert(x, gaps, nan), np.insert(vmin, gaps, nan), np.insert(vmax, gaps, nan))


def draw_timeline(title: str, lanes: list[Lane], out_png: Path, *,
                  zero: str = "release", tracks: Sequence[Track] = ()) -> list[Path]:
    """Draw the lanes, then the sensor ``tracks`` under them on the same axis; write ``out_png``
    and the same figure as SVG beside it; returns both."""
    import matplotlib

    # files only, no display (https://matplotlib.org/stable/users/explain/figure/backends.html)
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lo, hi = _x_range(lanes, tracks)
    reasons = sorted({r for ln in lanes for _t, r, _n in ln.drops})
    marker = {r: _DROP_STYLES[i % len(_DROP_STYLES)] for i, r in enumerate(reasons)}
    panels = max(1, len(lanes) + len(tracks))
    fig, axes = plt.subplots(panels, 1, sharex=True, squeeze=False,
                             figsize=(_FIG_W_IN, 1.0 + 1.7 * panels), layout="constrained")
    fig.suptitle(title, fontsize=12)
    phases_seen: list[str] = []
    labelled: set[str] = set()  # boards whose edges are named (on their first panel)
    for ax, ln in zip(axes[:, 0], lanes, strict=False):
        _draw_lane(ax, ln, lo, hi, marker, zero, phases_seen)
        if ln.board not in labelled:
            labelled.add(ln.board)
            _name_edges(ax, ln.edges, lo, hi)
    for ax, tr in zip(axes[len(lanes):, 0], tracks, strict=False):
        _draw_track(ax, tr, lo, hi, _FIG_W_IN * _DPI, phases_seen)
        if tr.board not in labelled:
            labelled.add(tr.board)
            _name_edges(ax, tr.edges, lo, hi)
    axes[-1, 0].set_xlim(lo, hi)
    axes[-1, 0].set_xlabel(f"seconds from {zero} (frame rate averaged over {BIN_S:g} s bins from "
                           f"the {zero} edge)")
    handles = _legend(lanes, phases_seen, marker, reasons, tracks)
    fig.legend(handles=handles, loc="outside lower center", ncols=min(len(handles), 8), fontsize=8,
               frameon=False)
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    out_svg = out_png.with_suffix(".svg")
    fig.savefig(out_png, dpi=_DPI)
    fig.savefig(out_svg)
    plt.close(fig)
    return [out_png, out_svg]


def _x_range(lanes: list[Lane], tracks: Sequence[Track] = ()) -> tuple[float, float]:
    """The axis: every lane's frames and the phase changes among them, with a margin; the sensor
    tracks' samples when no lane has a frame."""
    spans = [x for ln in lanes for x in (ln.frames_s[:1].tolist() + ln.frames_s[-1:].tolist())]
    spans += [t for ln in lanes for t, _ in ln.phases if ln.frames_s.size and
              ln.frames_s[0] <= t <= ln.frames_s[-1]]
    if not spans:
        spans = [x for tr in tracks for x in (tr.t_s[:1].tolist() + tr.t_s[-1:].tolist())]
    lo, hi = (min(spans), max(spans)) if spans else (-1.0, 1.0)
    return lo - 0.3, max(hi, lo + 1.0) + 0.3


def _shade(ax: Any, phases: list[tuple[float, str]], lo: float, hi: float,
           phases_seen: list[str]) -> None:
    for i, (t, name) in enumerate(phases):
        end = phases[i + 1][0] if i + 1 < len(phases) else hi
        ax.axvspan(max(t, lo), min(end, hi), color=_phase_color(name), alpha=0.25, lw=0)
        if name not in phases_seen:
            phases_seen.append(name)


def _name_edges(ax: Any, edges: list[tuple[float, str, str]], lo: float, hi: float) -> None:
    """Each phase edge's event and source (``release · imu``) along the top of a panel."""
    for t, event, source in edges:
        if lo <= t <= hi:
            ax.annotate(f"{event} · {source}" if source else event, (t, 1.0),
                        xycoords=("data", "axes fraction"), xytext=(2, -2),
                        textcoords="offset points", fontsize=7, color="#37474f", va="top",
                        gid=f"edge:{event}:{source}")


def _draw_track(ax: Any, tr: Track, lo: float, hi: float, columns: int,
                phases_seen: list[str]) -> None:
    """A sensor track: phases shaded, the min/max envelope per pixel column (:func:`envelope`)."""
    _shade(ax, tr.phases, lo, hi, phases_seen)
    x, vmin, vmax = envelope(tr.t_s, tr.values, lo, hi, columns)
    # each column drawn from its min to its max, in turn: one line that keeps every extreme
    ax.plot(np.repeat(x, 2), np.column_stack([vmin, vmax]).ravel(),
            color="#2e7d32" if tr.what == "accel_g" else "#6d4c41", lw=0.9,
            gid=f"track:{tr.board}:{tr.sensor}:{tr.what}")
    if tr.what == "accel_g":
        ax.axhline(1.0, color="#9e9e9e", lw=0.6, ls=":")  # rest
        top = float(np.nanmax(vmax)) if np.isfinite(vmax).any() else 1.0
        ax.set_ylim(0, max(2.0, top * 1.15))
    else:
        ax.axhline(0.0, color="#9e9e9e", lw=0.6, ls=":")  # the landing point
    ax.axvline(0.0, color="black", lw=0.8)
    ax.set_ylabel(tr.label, fontsize=9)
    ax.grid(axis="x", color="#dddddd", lw=0.6)
    ax.text(0.995, 0.95, f"{tr.t_s.size} samples", transform=ax.transAxes, ha="right",
            va="top", fontsize=8, color="#555555")


def _draw_lane(ax: Any, ln: Lane, lo: float, hi: float, marker: dict[str, str], zero: str,
               phases_seen: list[str]) -> None:
    """One panel: phases shaded, the frame rate, faults, drops, stills; adds to ``phases_seen``."""
    edges, rate = lane_rates(ln, lo, hi)
    _shade(ax, ln.phases, lo, hi, phases_seen)
    ax.stairs(rate, edges, color="#1565c0", lw=1.6)
    top = max(1.0, float(rate.max()) if rate.size else 1.0) * 1.25
    ax.set_ylim(0, top)
    for t, what in ln.faults:
        ax.axvline(t, color="#d32f2f", lw=1.5)
        ax.annotate(what, (t, top * 0.92), xytext=(3, 0), textcoords="offset points", fontsize=7,
                    color="#d32f2f", va="top")
    for t, reason, count in ln.drops:
        ax.plot([t], [top * 0.06], marker=marker[reason], color="#ef6c00", ms=7, ls="none")
        ax.annotate(str(count), (t, top * 0.06), xytext=(5, 2), textcoords="offset points",
                    fontsize=7, color="#ef6c00")
    for t, what in ln.reboots:
        ax.axvline(t, color="#6a1b9a", lw=1.5, ls="--")
        ax.annotate(what, (t, top * 0.75), xytext=(3, 0), textcoords="offset points", fontsize=7,
                    color="#6a1b9a", va="top")
    for t, g0, g1 in ln.stills:
        ax.axvspan(g0, g1, color="#424242", alpha=0.35, lw=0)
        ax.axvline(t, color="#424242", lw=0.8, ls=":")
    if any(t == 0.0 for t, _ in ln.phases) or zero == "release":
        ax.axvline(0.0, color="black", lw=0.8)
    ax.set_ylabel(f"{ln.board}\n{ln.camera}\nframes/s", fontsize=9)
    ax.grid(axis="x", color="#dddddd", lw=0.6)
    ax.text(0.995, 0.95, f"{ln.frames_s.size} frames", transform=ax.transAxes, ha="right",
            va="top", fontsize=8, color="#555555")


def _legend(lanes: list[Lane], phases_seen: list[str], marker: dict[str, str],
            reasons: list[str], tracks: Sequence[Track] = ()) -> list[Any]:
    """The legend's handles: it names only what the figure shows."""
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    handles: list[Any] = [Patch(color=_phase_color(p), alpha=0.4, label=p) for p in phases_seen]
    handles.append(Line2D([], [], color="#1565c0", lw=1.6, label="frames/s"))
    if any(tr.what == "accel_g" for tr in tracks):
        handles.append(Line2D([], [], color="#2e7d32", lw=1.2, label="|a| g (min-max per pixel)"))
    if any(tr.what == "altitude" for tr in tracks):
        handles.append(Line2D([], [], color="#6d4c41", lw=1.2, label="altitude above landing"))
    if any(ln.faults for ln in lanes):
        handles.append(Line2D([], [], color="#d32f2f", lw=1.5, label="fault"))
    handles += [Line2D([], [], marker=marker[r], color="#ef6c00", ls="none", label=f"dropped: {r}")
                for r in reasons]
    if any(ln.reboots for ln in lanes):
        handles.append(Line2D([], [], color="#6a1b9a", lw=1.5, ls="--", label="reboot (resumed)"))
    if any(ln.stills for ln in lanes):
        handles.append(Patch(color="#424242", alpha=0.35, label="still (gap in video)"))
    return handles


def _fault_label(rec: FaultRecord) -> str:
    """A fault's mark: what the store was doing, the error's type and its message (cut short)."""
    what = " ".join(x for x in (rec.name, rec.error) if x) or "fault"
    text = f"{what}: {rec.message}" if rec.message else what
    return text if len(text) <= _LABEL_CHARS else text[:_LABEL_CHARS - 3] + "..."


def lane_of(cam: CamData) -> Lane:
    """A camera's lane from its read pass: frame times, phases, its faults (and the board's that
    name no camera), its drops by reason (camctl.common.ledger), the gaps its stills left and
    where the board rebooted. Every time is on the flight's timeline (the read pass mapped the
    frames, :func:`camctl.ground.export.flightset.load_flight` the event records)."""
    fl = cam.fl
    times = np.array(cam.times, dtype=np.int64)
    frames_s = ((times - (fl.t0_ns or 0)) / 1e9 if fl.t0_ns is not None
                else np.zeros(len(times)))
    lane = Lane(cam.board, cam.camera, frames_s, phases=[(fl.rel(t), ph) for t, ph in fl.tb.phases],
                edges=_edges_of(fl))
    for rec in read(fl.events):
        # a camera's own faults, and the board's that name no camera
        if (isinstance(rec, FaultRecord) and rec.mono_ns is not None
                and rec.camera in ("", cam.camera)):
            lane.faults.append((fl.rel(rec.mono_ns), _fault_label(rec)))
    # a ledger record counts the drops of its interval (since_ns .. its own time, written up to a
    # second later): its marks go where the frames are missing, not at the record
    since = {r.mono_ns: r.since_ns for r in read(fl.events) if isinstance(r, LedgerRecord)
             and r.camera == cam.camera and r.mono_ns is not None and r.since_ns is not None}
    for mono, c, reason, n in ledger_marks(fl.events):
        if c != cam.camera:
            continue
        at = fl.rel(mono)
        if mono in since:
            at = drop_time(frames_s, at - (mono - since[mono]) / 1e9, at)
        lane.drops.append((at, reason, n))
    for p in cam.stills:
        i = int(np.searchsorted(times, p.ts))
        g0 = times[i - 1] if i > 0 else p.ts
        g1 = times[i] if i < len(times) else p.ts
        lane.stills.append((fl.rel(p.ts), fl.rel(int(g0)), fl.rel(int(g1))))
    for r in fl.clock.reboots:
        if r.start_ns is not None and fl.t0_ns is not None:
            down = f": down {r.gap_s:.1f} s" if r.gap_s is not None else ""
            lane.reboots.append((fl.rel(r.start_ns), f"reboot{down}"))
    return lane


def _edges_of(fl: Flight) -> list[tuple[float, str, str]]:
    """Every phase change of the flight with its event and source, seconds from its zero."""
    return [(fl.rel(r.mono_ns), r.event or r.phase_to, r.source) for r in read(fl.events)
            if isinstance(r, PhaseRecord) and r.mono_ns is not None]


def sensor_tracks(fl: Flight) -> list[Track]:
    """A flight's sensor tracks (:class:`Track`): |a| per IMU, altitude above the landing point
    per barometer, IMUs first. Sample times are taken on run 0's clock (a sample batch does
    not say its run)."""
    from camctl.ground.samples import altitude_above_landing

    landed = next((t for t, ph in fl.tb.phases if ph == "LANDED"), None)
    phases = [(fl.rel(t), ph) for t, ph in fl.tb.phases]
    edges = _edges_of(fl)
    zero = fl.t0_ns if fl.t0_ns is not None else 0
    out = []
    # the IMUs' |a| first, then the barometers' altitude
    for name, series in sorted(fl.samples().items(), key=lambda kv: (kv[1].kind != "imu", kv[0])):
        if not len(series):
            continue
        t_s = (series.t_ns - zero) / 1e9 if fl.t0_ns is not None else np.zeros(len(series))
        if series.kind == "imu":
            vals, what = series.column("accel_g"), "accel_g"
        else:
            vals, what = altitude_above_landing(series, landed), "altitude"
        out.append(Track(fl.board, name, what, t_s, vals, phases, edges))
    return out
