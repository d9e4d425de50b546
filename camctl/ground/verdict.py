"""The flight verdict: per board, RECORDED / PARTIAL / LOST with its reason, or none yet.

:func:`verdict` is a pure function of what the ground knows of one board's flight
(:class:`BoardFlight`); the mission page, ``camctl ls``, ``camctl export``'s summary and ``camctl
fetch``'s closing line all ask it, so they never disagree. The rules, first match wins:

====  =====================================================  ========  =============================
rule  when                                                   verdict   reason
====  =====================================================  ========  =============================
1     no release (the board never flew)                      LOST      ``no flight``
2     no contact and nothing downloaded                      LOST      ``lost contact in DESCENT at
                                                                       T+4.2 s; nothing downloaded``
3     live, in contact, and not landed / downloading /       (none)    the flight is not done yet
      nothing downloaded yet
4     any of: lost contact, no landing, an unfinished        PARTIAL   each, joined by ``; `` (``3
      download or none at all, frames lost, a camera                   frames lost; camera up
      failed or stored nothing, books not balanced                     failed``)
5     otherwise: landed, every listed segment downloaded,    RECORDED  ``landed, 12 segments,
      no losses, the books balance (or, from a board                   books balanced`` (or
      without ledger records, were not checked)                        ``books not accounted: up``)
====  =====================================================  ========  =============================

``final`` facts (``ls``, ``export``, the end of ``fetch``: nothing more will come) never leave a
board without a verdict: rule 3 is for the live mission page only. A flight is done only when
every board has a verdict (:func:`flight_done`).

The peak g beside the verdict (:func:`peak_g`, :func:`peak_g_line`): the canopy shock, the largest
|a| in [separation, separation + 2 s) or until touchdown, and the impact, the largest in [touchdown
- 0.2 s, touchdown + 1 s); ``no IMU`` for a flight that recorded sensors but no IMU, ``IMU samples
missing around touchdown`` when the samples leave a hole in the window (a lost batch can hide the
spike: no number is better than a wrong one). A flight without sensors has no peak line.

Example::

    >>> verdict(BoardFlight("rig-b", contact=False, lost_at="in DESCENT at T+4.2 s"))
    Verdict(kind='LOST', reason='lost contact in DESCENT at T+4.2 s; nothing downloaded')
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

__all__ = ["LOST", "PARTIAL", "RECORDED", "BoardFlight", "PeakG", "Verdict", "flight_done",
           "from_summary", "landed_line", "peak_g", "peak_g_line", "peak_g_records", "verdict"]

RECORDED, PARTIAL, LOST = "RECORDED", "PARTIAL", "LOST"
# phases a board is in once its flight is over (SAFE: disarmed after landing)
_DOWN = ("LANDED",)


class Verdict(NamedTuple):
    kind: str  # RECORDED | PARTIAL | LOST
    reason: str

    def __str__(self) -> str:
        return f"{self.kind}: {self.reason}"


@dataclass(frozen=True)
class BoardFlight:
    """What the ground knows of one board's flight."""

    board: str
    flew: bool = True  # a release happened (its edge, or the flight has phases past ARMED)
    landed: bool = False  # the board reached LANDED
    phase: str = ""  # its last phase known (for "no landing (last phase DESCENT)")
    contact: bool = True  # it answers (live), or answered to the end (fetch)
    lost_at: str = ""  # where contact was lost: "in DESCENT at T+4.2 s"
    final: bool = False  # nothing more will come: never "no verdict yet"
    downloaded: int = 0  # segments of the flight on the ground
    listed: int | None = None  # segments the board listed (None: not known)
    fetching: bool = False  # a download is running
    download_error: str = ""  # why the last download did not finish
    lost_frames: int = 0  # frames the event log's loss records name
    failed: tuple[str, ...] = ()  # cameras that failed or stored nothing
    unbalanced: tuple[str, ...] = ()  # cameras whose books do not balance
    # cameras whose books were not checked (no ledger records: an older board; previews only)
    unchecked: tuple[str, ...] = ()


def verdict(f: BoardFlight) -> Verdict | None:
    """The board's verdict by the rules of the module docstring; None: not done yet (rule 3)."""
    if not f.flew:
        return Verdict(LOST, "no flight")
    lost = f"lost contact {f.lost_at}".rstrip() if f.lost_at else "no contact"
    why = f" ({f.download_error})" if f.download_error else ""
    if f.downloaded == 0 and not f.contact:
        return Verdict(LOST, f"{lost}; nothing downloaded{why}")
    if not f.final and f.contact and (not f.landed or f.fetching or f.downloaded == 0):
        return None
    problems = []
    if not f.contact:
        problems.append(lost)
    if not f.landed:
        problems.append(f"no landing (last phase {f.phase})" if f.phase else "no landing")
    complete = f.downloaded > 0 and (f.listed is None or f.downloaded >= f.listed)
    if not complete:
        problems.append(f"download unfinished: {f.downloaded} of {f.listed} segments{why}"
                        if f.listed is not None else f"nothing downloaded{why}")
    if f.lost_frames:
        problems.append(f"{f.lost_frames} frame{'s' if f.lost_frames != 1 else ''} lost")
    problems += [f"camera {c} failed" for c in f.failed]
    if f.unbalanced and complete:  # an unfinished download cannot balance: said above
        problems.append(f"books not balanced: {', '.join(f.unbalanced)}")
    if problems:
        return Verdict(PARTIAL, "; ".join(problems))
    books = (f"books not accounted: {', '.join(f.unchecked)}" if f.unchecked
             else "books balanced")
    return Verdict(RECORDED, f"landed, {f.downloaded} segment{'s' if f.downloaded != 1 else ''}"
                             f", {books}")


def flight_done(verdicts: Iterable[Verdict | None]) -> bool:
    """Done only when every board has a verdict (and there is a board)."""
    vs = list(verdicts)
    return bool(vs) and all(v is not None for v in vs)


def landed_line(names: list[str], landed: list[str], lost: dict[str, str]) -> str:
    """``2 of 3 boards landed; rig-b: lost contact in DESCENT at T+4.2 s``: ``lost`` maps each
    board that did not land to why."""
    head = f"{len(landed)} of {len(names)} boards landed"
    return "; ".join([head, *(f"{b}: {why}" for b, why in lost.items())])


def from_summary(fl: dict[str, Any], *, contact: bool = True, lost_at: str = "",
                 listed: int | None = None, download_error: str = "") -> BoardFlight:
    """Final facts from an ``ls`` record (:func:`camctl.ground.flights.summarize_flight`): what is
    on the ground. ``listed`` overrides the record's count of listed segments."""
    cams = {n: c for n, c in (fl.get("cameras") or {}).items() if n not in ("thumbs", "export")}
    phases = [p.get("phase") for p in fl.get("phases") or []]
    # as the index counts them (camctl.ground.flights.read_index): every folder's segments
    downloaded = sum(int(c.get("segments", 0)) for c in (fl.get("cameras") or {}).values())
    if listed is None:
        listed = fl.get("segments_listed")  # camera segments the board's index lists
    recorded = any(c.get("frames") or c.get("stills") for c in cams.values())
    # a sensor's books (in samples) count as a camera's: RECORDED needs both to balance
    booked = {**cams, **{n: c for n, c in (fl.get("sensors") or {}).items() if n not in cams}}
    unbalanced = tuple(n for n, c in booked.items()
                       if (c.get("ledger") or {}).get("balanced") is False)
    unchecked = tuple(n for n, c in booked.items()
                      if not isinstance(c.get("ledger"), dict)
                      or c["ledger"].get("balanced") is None
                      or c["ledger"].get("captured", 0) is None)
    return BoardFlight(
        board=str(fl.get("board", "")),
        flew=bool(fl.get("release_source")) or any(p not in ("SAFE", "ARMED") for p in phases),
        landed=any(p in _DOWN for p in phases), phase=str(phases[-1]) if phases else "",
        contact=contact, lost_at=lost_at, final=True, downloaded=downloaded, listed=listed,
        download_error=download_error, lost_frames=int(fl.get("lost_frames") or 0),
        failed=tuple(n for n, c in cams.items()
                     if recorded and not (c.get("frames") or c.get("stills"))),
        unbalanced=unbalanced, unchecked=unchecked)


# --- the peak g at separation and touchdown -------------------------------------------------------
NS = 1_000_000_000
SEPARATION_WINDOW_NS = 2 * NS  # the canopy shock: [separation, +2 s), or until touchdown
TOUCHDOWN_WINDOW_NS = (200_000_000, NS)  # the impact: [touchdown - 0.2 s, touchdown + 1 s)
# what the samples must cover without a hole: from the window's start to this after the edge (the
# moment itself; later samples count when there are any, the recording may stop at LANDED)
_MUST_COVER_NS = 200_000_000
_HOLE_MIN_NS = 20_000_000  # a hole: longer than this and 4 sample intervals (a lost batch is one)


class PeakG(NamedTuple):
    """The largest |a| around one event: ``g`` at ``t_ns`` (flight timeline ns), the event's edge
    at ``edge_ns``; ``g`` None and ``why`` when it cannot be known."""

    event: str  # separation | touchdown
    g: float | None
    t_ns: int | None = None
    edge_ns: int | None = None
    why: str = ""


def _hole(t: np.ndarray, lo: int, hi: int) -> bool:
    """True when the sorted sample times ``t`` leave a hole in [lo, hi]."""
    inside = t[(t >= lo) & (t <= hi)]
    if not inside.size:
        return True
    step = float(np.median(np.diff(t))) if t.size > 1 else 0.0
    limit = max(_HOLE_MIN_NS, 4 * step)
    pts = np.concatenate(([lo], inside, [hi]))
    return bool(np.diff(pts).max() > limit)


def _peak(t: np.ndarray, g: np.ndarray, event: str, edge: int, lo: int, hi: int) -> PeakG:
    if _hole(t, lo, min(hi, edge + _MUST_COVER_NS)):
        return PeakG(event, None, None, edge, f"IMU samples missing around {event}")
    a, b = int(np.searchsorted(t, lo, "left")), int(np.searchsorted(t, hi, "left"))
    i = a + int(np.argmax(g[a:b]))
    return PeakG(event, float(g[i]), int(t[i]), edge)


def peak_g(t_ns: np.ndarray | None, accel_g: np.ndarray | None,
           event_ns: Mapping[str, int]) -> list[PeakG]:
    """The peak |a| (g) at separation and at touchdown (the module docstring's windows) from an
    IMU's sample times (sorted, on the events' timeline) and |a|; ``t_ns`` None: the flight has no
    IMU."""
    sep, td = event_ns.get("separation"), event_ns.get("touchdown")
    out = []
    for event, edge in (("separation", sep), ("touchdown", td)):
        if t_ns is None or accel_g is None:
            out.append(PeakG(event, None, None, edge, "no IMU"))
        elif edge is None:
            out.append(PeakG(event, None, None, None, f"no {event} logged"))
        elif event == "separation":
            end = edge + SEPARATION_WINDOW_NS
            if td is not None and edge < td < end:
                end = td
            out.append(_peak(t_ns, accel_g, event, edge, edge, end))
        else:
            before, after = TOUCHDOWN_WINDOW_NS
            out.append(_peak(t_ns, accel_g, event, edge, edge - before, edge + after))
    return out


def peak_g_line(peaks: list[PeakG], zero_ns: int | None, zero: str = "release") -> str:
    """``peak g: separation 7.9 g at T+1.050 s (+0.050 s after its edge); touchdown: IMU samples
    missing around touchdown``; ``peak g: no IMU``. Times from ``zero_ns`` (the release edge)."""
    if peaks and all(p.why == "no IMU" for p in peaks):
        return "peak g: no IMU"
    parts = []
    for p in peaks:
        if p.g is None or p.t_ns is None:
            parts.append(f"{p.event}: {p.why}")
            continue
        at = f" at T{(p.t_ns - zero_ns) / NS:+.3f} s from {zero}" if zero_ns is not None else ""
        after = (f" ({(p.t_ns - p.edge_ns) / NS:+.3f} s from its edge)"
                 if p.edge_ns is not None else "")
        parts.append(f"{p.event} {p.g:.1f} g{at}{after}")
    return "peak g: " + "; ".join(parts)


def peak_g_records(peaks: list[PeakG], zero_ns: int | None) -> list[dict[str, Any]]:
    """The peaks as JSON records (``fetch-verdicts.json``): ``{event, g, t_ns, t_s, edge_ns,
    why}``, ``t_s`` from ``zero_ns`` (the release edge; None without one)."""
    return [{"event": p.event, "g": p.g, "t_ns": p.t_ns,
             "t_s": (p.t_ns - zero_ns) / NS if p.t_ns is not None and zero_ns is not None
             else None, "edge_ns": p.edge_ns, "why": p.why} for p in peaks]
