"""Contact sheets: each camera of each board around every event of a flight set, plus the stills.

One layout for both sources: the full frames (``camctl export``) and the previews a ``camctl fetch``
writes first (``thumbs/``: the first look, and export of a thumbs-only download). A block per event
(release, separation, touchdown...), columns at :data:`OFFSETS_S` from the event's edge *on each
board's own clock*, a row per board and camera; a last block holds the stills. Each tile is labelled
with the true time of the frame shown relative to the event (not the column's target) and the phase
the frame was filed under, so a frame from just before the edge says so. A still is labelled with
its exposure time from the edge of the event it is filed against (:func:`still_event` documents the
rules: the event it was taken for, else the nearest edge), ``BEFORE EDGE`` in red when exposed
before it. The flight id is in the header, once, and under it each board's peak g at separation
and touchdown when it recorded sensors (:func:`camctl.ground.export.flightset.peak_line`).

:class:`Picker` chooses the frames while a camera is read once (only the chosen JPEGs are kept);
:func:`draw_sheet` draws the blocks with Pillow.

Example::

    >>> png = contact_sheet_from_thumbs(Path("first-look"),
    ...                                 Path("first-look/first-look.png"))  # doctest: +SKIP
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from camctl.common.flightclock import frame_run
from camctl.exc import ConfigError
from camctl.ground.export.flightset import load_flight, loss_notes, peak_line, reboot_notes
from camctl.ground.flights import FlightRef, TimeBase, find_flights

if TYPE_CHECKING:
    from camctl.ground.export.flightset import CamData, Flight

__all__ = ["BG", "OFFSETS_S", "SHEET_TOL_NS", "STILLS_TITLE", "Block", "Pick", "Picker", "Tile",
           "caption", "contact_sheet_from_thumbs", "draw_sheet", "event_columns", "event_ns",
           "event_title", "flight_header", "has_previews", "set_events", "set_sheet", "set_targets",
           "sheet_from_previews", "still_event", "still_tile", "stills_block"]

BG = (18, 18, 22)  # background of the sheet
OFFSETS_S = (-1.0, -0.5, 0.0, 0.5, 1.0)  # columns around each event, seconds from its edge
TILE_W, TILE_H = 240, 180
_LABEL_H, _PAD, _HEAD_H, _ROW_LABEL_W = 32, 8, 24, 120
# phases whose entering events are not contact-sheet moments
_NOT_DESCENT = {"SAFE", "ARMED", "LANDED"}
SHEET_TOL_NS = 250_000_000  # a tile takes a frame within 0.25 s of its time (columns: 0.5 s apart)


# --- choosing frames ------------------------------------------------------------------------------
@dataclass
class Pick:
    """The frame chosen for one tile: its sensor time, phase, sequence number and image (JPEG bytes
    or a file)."""

    ts: int
    phase: str
    seq: int
    image: bytes | Path
    size: tuple[int, int] | None = None  # (width, height) as recorded, where the caption says it
    event: str = ""  # a still's: the event it was taken for (its meta), "" when it does not say


class Picker:
    """Chooses, from frames offered one by one in any order, the frame for each target time.

    A target at an event's edge (offset 0) takes the first frame at or after the edge (the first of
    the new phase) when there is one within ``tol_ns``; every other target takes the nearest frame
    within ``tol_ns``.
    """

    def __init__(self, targets: list[tuple[int, bool]], tol_ns: int) -> None:
        self.targets = targets  # (target ns, prefer the first frame at or after it)
        self.tol_ns = tol_ns
        self._after: list[Pick | None] = [None] * len(targets)
        self._near: list[tuple[int, Pick] | None] = [None] * len(targets)

    def offer(self, ts: int, phase: str, seq: int, image: bytes | Path) -> None:
        for i, (target, after) in enumerate(self.targets):
            d = ts - target
            if abs(d) > self.tol_ns:
                continue
            first = self._after[i]
            if after and d >= 0 and (first is None or ts < first.ts):
                self._after[i] = Pick(ts, phase, seq, image)
            near = self._near[i]
            if near is None or abs(d) < near[0]:
                self._near[i] = (abs(d), Pick(ts, phase, seq, image))

    def picks(self, group: int = 0) -> list[Pick | None]:
        """The frame of each target. Within each run of ``group`` targets (a row of the sheet; all
        targets when 0), a frame chosen for several targets (sparse previews) is kept only at the
        one nearest to it, so no frame is shown twice in a row."""
        out = [self._after[i] or (n[1] if (n := self._near[i]) else None)
               for i in range(len(self.targets))]
        size = group or len(out) or 1
        for start in range(0, len(out), size):
            row = range(start, min(start + size, len(out)))
            for key in {(p.ts, p.seq) for j in row if (p := out[j]) is not None}:
                same = [j for j in row if (p := out[j]) is not None and (p.ts, p.seq) == key]
                keep = min(same, key=lambda j, t=key[0]: abs(t - self.targets[j][0]))
                for j in same:
                    if j != keep:
                        out[j] = None
        return out


def event_columns(tb: TimeBase) -> list[str]:
    """The events of a board's flight that get a block, in flight order (release and every later
    descent event; SAFE/ARMED/LANDED entries are not moments)."""
    if not tb.aligned:
        return []
    return [ev for ev, t in sorted(tb.event_ns.items(), key=lambda kv: kv[1])
            if t >= tb.t0_ns  # type: ignore[operator]
            and tb.event_phase.get(ev) not in _NOT_DESCENT]


def flight_header(flights: Iterable[tuple[str, str]], what: str) -> str:
    """``flight F1 · boards rig-a, rig-b · what`` (each board's flight id when they differ)."""
    flights = list(flights)
    ids = {f for _b, f in flights}
    if len(ids) == 1:
        return f"flight {ids.pop()} · boards {', '.join(b for b, _f in flights)} · {what}"
    return f"flights {', '.join(f'{b} {f}' for b, f in flights)} · {what}"


# --- stills ---------------------------------------------------------------------------------------
STILLS_TITLE = ("stills (size as recorded): time from the edge of the event each is filed "
                "against; BEFORE EDGE = exposed before it")


def still_event(ts: int, event: str, tb: TimeBase) -> tuple[str, int] | None:
    """The event a still exposed at ``ts`` (flight ns) is filed against, and that event's edge.

    The rules, in order: (1) the event the still was taken for (``event``, from its metadata) when
    this board logged that event's edge; (2) else the logged event whose edge is nearest the
    exposure (a tie goes to the later edge: the still is after it); (3) None when the board logged
    no event edge (the still is then timed from the flight's zero). A still is never filed by the
    phase it was stored under: a still exposed 125 ms before the touchdown edge is stored in
    TOUCHDOWN yet belongs 0.125 s before that edge."""
    if event and event in tb.event_ns:
        return event, tb.event_ns[event]
    if not tb.event_ns:
        return None
    ev, t = min(tb.event_ns.items(), key=lambda kv: (abs(ts - kv[1]), -kv[1]))
    return ev, t


def still_tile(pick: Pick, tb: TimeBase, zero_ns: int | None) -> Tile:
    """A still's tile: ``touchdown -0.125 s BEFORE EDGE`` over ``TOUCHDOWN #412 320x240`` (red
    when exposed before its event's edge); timed from the flight's zero (``zero_ns``) when no
    event is logged."""
    size = f" {pick.size[0]}x{pick.size[1]}" if pick.size else ""
    filed = still_event(pick.ts, pick.event, tb)
    if filed is None:
        dt = (pick.ts - zero_ns) / 1e9 if zero_ns is not None else 0.0
        return Tile(pick.image, f"{dt:+.3f} s from zero\n{pick.phase or '?'} #{pick.seq}{size}")
    ev, t_ev = filed
    dt = (pick.ts - t_ev) / 1e9
    before = pick.ts < t_ev
    return Tile(pick.image, f"{ev} {dt:+.3f} s{' BEFORE EDGE' if before else ''}\n"
                            f"{pick.phase or '?'} #{pick.seq}{size}", warn=before)


def stills_block(rows: list[tuple[str, list[Tile]]]) -> Block | None:
    """The stills block: a row per camera with stills (None when no camera has one)."""
    width = max([len(tiles) for _label, tiles in rows] + [0])
    if not width:
        return None
    block = Block(STILLS_TITLE, [f"still {i + 1}" for i in range(width)])
    for label, tiles in rows:
        if tiles:
            block.rows.append((label, [*tiles, *([None] * (width - len(tiles)))]))
    return block


# --- drawing --------------------------------------------------------------------------------------
@dataclass
class Tile:
    """A tile's image and its caption (time from the event, phase, frame number)."""

    image: bytes | Path
    caption: str
    warn: bool = False  # the caption is drawn in red (a still exposed before its event's edge)


@dataclass
class Block:
    """One event (or the stills): title, column labels, rows (row label, tiles; None = no frame)."""

    title: str
    columns: list[str]
    rows: list[tuple[str, list[Tile | None]]] = field(default_factory=list)


def _font(size: int = 12) -> Any:
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow without FreeType
        return ImageFont.load_default()


def _image(src: bytes | Path) -> Any:
    """A tile image fitted into TILE_W x TILE_H: JPEG bytes decoded at the smallest DCT scale
    covering the tile, or a preview file."""
    import simplejpeg
    from PIL import Image

    if isinstance(src, Path):
        with Image.open(src) as im0:
            im = im0.convert("RGB")
    else:
        try:
            im = Image.fromarray(simplejpeg.decode_jpeg(src, colorspace="RGB", min_width=TILE_W,
                                                        min_height=TILE_H))
        except ValueError:
            im = Image.open(io.BytesIO(src)).convert("RGB")
    im.thumbnail((TILE_W, TILE_H))
    return im


def draw_sheet(header: str, blocks: list[Block], out_png: Path) -> list[tuple[int, int, int, int]]:
    """Draw ``blocks`` under ``header`` into ``out_png``; the tiles' boxes (x0, y0, x1, y1)."""
    from PIL import Image, ImageDraw

    cell_w, cell_h = TILE_W + _PAD, TILE_H + _LABEL_H + _PAD
    ncols = max([len(b.columns) for b in blocks] + [1])
    width = _PAD + _ROW_LABEL_W + cell_w * ncols
    head_h = _HEAD_H * (1 + header.count("\n"))  # a line more per reboot note
    height = head_h + _PAD + sum(_HEAD_H * 2 + cell_h * max(1, len(b.rows)) for b in blocks)
    sheet = Image.new("RGB", (width, height), BG)
    draw = ImageDraw.Draw(sheet)
    font, big = _font(12), _font(15)
    draw.text((_PAD, 4), header, fill=(235, 235, 235), font=big)
    boxes: list[tuple[int, int, int, int]] = []
    y = head_h + _PAD
    for block in blocks:
        draw.text((_PAD, y + 4), block.title, fill=(255, 210, 120), font=big)
        for c, label in enumerate(block.columns):
            draw.text((_PAD + _ROW_LABEL_W + c * cell_w, y + _HEAD_H + 4), label,
                      fill=(200, 200, 120), font=font)
        y += _HEAD_H * 2
        for label, tiles in block.rows:
            draw.text((_PAD, y + TILE_H // 2 - 7), label, fill=(230, 230, 230), font=font)
            for c, tile in enumerate(tiles):
                x = _PAD + _ROW_LABEL_W + c * cell_w
                draw.rectangle((x, y, x + TILE_W - 1, y + TILE_H - 1), outline=(60, 60, 66))
                if tile is None:
                    draw.text((x + 8, y + TILE_H // 2 - 6), "no frame", fill=(120, 120, 120),
                              font=font)
                    continue
                try:
                    im = _image(tile.image)
                except (OSError, ValueError):
                    draw.text((x + 8, y + TILE_H // 2 - 6), "undecodable", fill=(200, 80, 80),
                              font=font)
                else:
                    ox, oy = x + (TILE_W - im.width) // 2, y + (TILE_H - im.height) // 2
                    sheet.paste(im, (ox, oy))
                    boxes.append((ox, oy, ox + im.width, oy + im.height))
                draw.text((x, y + TILE_H + 3), tile.caption,
                          fill=(255, 110, 90) if tile.warn else (190, 190, 190), font=font)
            y += cell_h
        if not block.rows:
            y += cell_h
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out_png)
    return boxes


def caption(dt_s: float, phase: str, seq: int, *, since: str = "") -> str:
    """``+0.032 s TOUCHDOWN #412`` (``since`` names what the time is from, for stills)."""
    return f"{dt_s:+.3f} s{' ' + since if since else ''} {phase or '?'} #{seq}"


# --- from previews --------------------------------------------------------------------------------
def _previews(tdir: Path, tb: TimeBase | None, fl: Flight | None = None,
              stills: dict[str, list[Pick]] | None = None
              ) -> dict[str, list[tuple[int, str, int, Path]]]:
    """Per camera, (sensor ns, phase, seq, file) of every video-frame preview thumbs/index.json
    describes; the time on the flight's timeline (``fl``: a preview's ``run``, 0 when not given,
    maps it). The previews of stills (``"still": true``) go to ``stills`` instead, per camera."""
    try:
        infos = json.loads((tdir / "index.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        infos = {}
    out: dict[str, list[tuple[int, str, int, Path]]] = {}
    for cam_dir in sorted(p for p in tdir.iterdir() if p.is_dir()) if tdir.is_dir() else []:
        for f in sorted(cam_dir.glob("*.jpg")):
            info = infos.get(f"{cam_dir.name}/{f.stem}") if isinstance(infos, dict) else None
            if isinstance(info, dict) and isinstance(info.get("timestamp_ns"), int):
                ts = info["timestamp_ns"]
                if fl is not None:
                    ts = fl.frame_ns(ts, frame_run(info))
                phase = str(info.get("phase") or (tb.phase_at(ts) if tb else ""))
                seq = int(info.get("seq", f.stem if f.stem.isdigit() else 0))
                if info.get("still") is True:
                    if stills is not None:
                        stills.setdefault(cam_dir.name, []).append(
                            Pick(ts, phase, seq, f, event=str(info.get("event") or "")))
                    out.setdefault(cam_dir.name, [])
                    continue
                out.setdefault(cam_dir.name, []).append((ts, phase, seq, f))
            else:
                out.setdefault(cam_dir.name, [])
    return out


def contact_sheet_from_thumbs(root: Path, out_png: Path, *, tol_s: float = 1.0) -> Path:
    """The contact sheet of every flight under ``root`` made from its previews alone (``camctl
    fetch`` writes ``thumbs/`` and the event log before any segment). ConfigError when there are
    none."""
    root = Path(root)
    refs = [r for r in find_flights(root) if has_previews(r.path)]
    if not refs:
        raise ConfigError(f"no previews under {root} "
                          "(expected <board>/<flight>/thumbs/<camera>/*.jpg)")
    sheet_from_previews(refs, out_png, tol_s=tol_s)
    return Path(out_png)


def has_previews(flight_dir: Path) -> bool:
    """True when a flight folder holds at least one preview (``thumbs/<camera>/*.jpg``)."""
    return next(Path(flight_dir).glob("thumbs/*/*.jpg"), None) is not None


def sheet_from_previews(refs: list[FlightRef], out_png: Path, *,
                        tol_s: float = 1.0) -> list[tuple[int, int, int, int]]:
    """The contact sheet of ``refs`` from their previews: the same event blocks as the full-frame
    sheet, each tile the preview nearest its time within ``tol_s`` (previews are sparse). Without an
    event log or preview times, one row per camera of previews spread over the flight. Returns the
    tiles' boxes."""
    refs = [r for r in refs if has_previews(r.path)]
    per: list[tuple[str, str, TimeBase, dict[str, list[tuple[int, str, int, Path]]]]] = []
    notes: list[str] = []
    still_rows: list[tuple[str, list[Tile]]] = []
    for ref in refs:
        try:
            fl: Flight | None = load_flight(ref)  # its events on the flight's one timeline
        except (OSError, ValueError):
            fl = None
        tb = fl.tb if fl is not None else TimeBase.from_events([])
        notes += [*reboot_notes(fl), *loss_notes(fl)] if fl is not None else []
        stills: dict[str, list[Pick]] = {}
        per.append((ref.board, ref.flight, tb, _previews(ref.path / "thumbs", tb, fl, stills)))
        still_rows += [(f"{ref.board}\n{cam}", [still_tile(x, tb, tb.t0_ns)
                                                for x in sorted(picks, key=lambda x: x.ts)])
                       for cam, picks in sorted(stills.items())]
    ref_tb = next((tb for _b, _f, tb, _p in per if tb.aligned), None)
    timed = any(previews for _b, _f, _t, cams in per for previews in cams.values())
    events = event_columns(ref_tb) if ref_tb is not None and timed else []
    blocks: list[Block] = []
    tol = int(tol_s * 1e9)
    for ev in events:
        columns = [f"{o:+g} s" for o in OFFSETS_S]
        block = Block(event_title(ev, ref_tb), columns)  # type: ignore[arg-type]
        for board, _flight, tb, cams in per:
            t_ev = event_ns(ev, tb, ref_tb)  # type: ignore[arg-type]
            for cam, previews in cams.items():
                if t_ev is None:
                    block.rows.append((f"{board}\n{cam}", [None] * len(OFFSETS_S)))
                    continue
                picker = Picker([(t_ev + int(o * 1e9), o == 0) for o in OFFSETS_S], tol)
                for ts, phase, seq, f in previews:
                    picker.offer(ts, phase, seq, f)
                block.rows.append((f"{board}\n{cam}", [
                    None if p is None
                    else Tile(p.image, caption((p.ts - t_ev) / 1e9, p.phase, p.seq))
                    for p in picker.picks()]))
        blocks.append(block)
    # no event log yet: previews spread over the flight, labelled as well as they can be
    if not blocks:
        n = 8
        why = "no release logged" if ref_tb is None else "no preview times (thumbs/index.json)"
        block = Block(f"previews spread over the flight ({why})", [f"{i + 1}" for i in range(n)])
        for ref in refs:
            for cam_dir in sorted(p for p in (ref.path / "thumbs").iterdir() if p.is_dir()):
                files = sorted(cam_dir.glob("*.jpg"))
                if not files:
                    continue
                k = min(n, len(files))
                pick = [files[round(i * (len(files) - 1) / max(1, k - 1))] for i in range(k)]
                tiles = [Tile(f, f"#{f.stem}") for f in pick]
                block.rows.append((f"{ref.board}\n{cam_dir.name}", tiles + [None] * (n - k)))
        blocks.append(block)
    still_block = stills_block(still_rows)
    if still_block is not None:
        blocks.append(still_block)
    header = flight_header(((b, f) for b, f, _t, _p in per), "previews around each event")
    return draw_sheet(_with_reboots(header, notes), blocks, out_png)


def event_title(ev: str, ref_tb: TimeBase) -> str:
    """A block title: the event, when it came after release, what the columns show."""
    t = ref_tb.event_ns.get(ev)
    at = f" at {ref_tb.rel_s(t):+.3f} s from release" if t is not None and ev != "release" else ""
    return f"{ev}{at}: frames from -1 s to +1 s around each board's own {ev} edge"


def event_ns(ev: str, tb: TimeBase, ref_tb: TimeBase | None) -> int | None:
    """The event's edge on this board's clock: its own record, else the reference board's offset
    from its release applied to this board's release."""
    t = tb.event_ns.get(ev)
    # only a board on the shared zero may borrow another board's offsets
    if (t is None and ref_tb is not None and tb.aligned and tb.t0_ns is not None
            and ref_tb.t0_ns is not None and ev in ref_tb.event_ns):
        t = tb.t0_ns + ref_tb.event_ns[ev] - ref_tb.t0_ns
    return t


# --- from a flight set's frames (camctl export) -------------------------------------------------
def set_events(fset: list[Flight]) -> tuple[Flight | None, list[str]]:
    """The set's reference flight (the first with a release edge) and the events that get a
    block."""
    ref = next((f for f in fset if f.tb.aligned), None)
    return ref, (event_columns(ref.tb) if ref is not None else [])


def set_targets(fl: Flight, ref: Flight | None, events: list[str]) -> list[tuple[int, bool]]:
    """(target ns, offset is 0) for every event x offset; an event this board did not log is never
    met."""
    out = []
    for ev in events:
        t = event_ns(ev, fl.tb, ref.tb) if ref is not None else None
        out += [((t + int(o * 1e9)) if t is not None else -(1 << 62), o == 0) for o in OFFSETS_S]
    return out


def set_sheet(fset: list[Flight], cams: list[CamData],
              out_png: Path) -> list[tuple[int, int, int, int]]:
    """The contact sheet of a flight set from what its read pass picked (:class:`CamData`): a block
    per event, a spread of each recording when no release was logged, and the stills. Returns the
    boxes of the tiles that got a frame."""
    ref, events = set_events(fset)
    blocks: list[Block] = []
    for e, ev in enumerate(events):
        ref_tb: TimeBase = ref.tb  # type: ignore[union-attr]  # events come from ref
        block = Block(event_title(ev, ref_tb), [f"{o:+g} s" for o in OFFSETS_S])
        for cam in cams:
            t_ev = event_ns(ev, cam.fl.tb, ref_tb)
            n = len(OFFSETS_S)
            picks = cam.picker.picks(group=n)[e * n:(e + 1) * n] if cam.picker else []
            block.rows.append((f"{cam.board}\n{cam.camera}", [
                None if p is None or t_ev is None
                else Tile(p.image, caption((p.ts - t_ev) / 1e9, p.phase, p.seq))
                for p in picks] or [None] * len(OFFSETS_S)))
        blocks.append(block)
    if not events:  # no release logged: columns spread over each camera's recording
        quantiles = (0.0, 0.25, 0.5, 0.75, 1.0)
        block = Block("no release logged: frames spread over each camera's recording",
                      [f"{q:.0%} of recording" for q in quantiles])
        for cam in cams:
            block.rows.append((f"{cam.board}\n{cam.camera}", _spread_tiles(cam, quantiles)))
        blocks.append(block)
    stills = stills_block([(f"{cam.board}\n{cam.camera}",
                            [still_tile(p, cam.fl.tb, cam.fl.t0_ns) for p in cam.stills])
                           for cam in cams])
    if stills is not None:
        blocks.append(stills)
    offsets = ", ".join(f"{o:+g}" for o in OFFSETS_S)
    header = flight_header(((f.board, f.ref.flight) for f in fset),
                           f"frames at {offsets} s around each event")
    notes = [n for f in fset for n in [*reboot_notes(f), *loss_notes(f)]]
    notes += [f"{f.board}: {line}" for f in fset if (line := peak_line(f))]
    return draw_sheet(_with_reboots(header, notes), blocks, out_png)


def _with_reboots(header: str, notes: list[str]) -> str:
    """The header, then a line per reboot of a board of the sheet and per loss of frames its event
    log records, exact seqs, and per board that recorded an IMU its peak g at separation and
    touchdown (none: the header alone)."""
    return "\n".join([header, *notes])


def _spread_tiles(cam: CamData, quantiles: tuple[float, ...]) -> list[Tile | None]:
    """Frames at fractions of a camera's recording (a second read of its segments: only without
    events)."""
    from camctl.store import iter_frames

    if not cam.times:
        return [None] * len(quantiles)
    want = [cam.times[min(len(cam.times) - 1, int(q * (len(cam.times) - 1)))] for q in quantiles]
    picker = Picker([(t, False) for t in want], 0)
    for seg in cam.fl.cameras[cam.camera]:
        for fr in iter_frames(seg):
            if not fr.still and fr.jpeg_ok:
                picker.offer(cam.fl.frame_ns(fr.timestamp_ns, fr.run), fr.phase, fr.seq, fr.jpeg)
    t0 = cam.times[0]
    return [None if p is None
            else Tile(p.image, caption((p.ts - t0) / 1e9, p.phase, p.seq, since="from first"))
            for p in picker.picks()]
