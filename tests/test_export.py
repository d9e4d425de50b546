"""camctl export: MP4 frames/times/subtitles, sheet tiles, timeline, plain frames, CLI errors."""

from __future__ import annotations

import io
import itertools
import json
import re
import shutil
from pathlib import Path

import av
import numpy as np
import pytest
from flights import BOARDS, FLIGHT, Built
from PIL import Image

from camctl.cli import main
from camctl.common.frames import EncodedFrame
from camctl.common.ledger import store_reason
from camctl.exc import ConfigError
from camctl.ground.export import (
    BG,
    MP4_TIME_BASE,
    contact_sheet_from_thumbs,
    export_all,
    frame_file_name,
    pts_of,
)
from camctl.ground.export.sheet import OFFSETS_S, Picker, flight_header, sheet_from_previews
from camctl.ground.export.timeline import BIN_S, Lane, draw_timeline, rate_bins
from camctl.ground.flights import find_flights

SET = FLIGHT  # a set is named after its earliest flight id


@pytest.fixture(scope="module")
def exported(built: Built):
    return export_all(built.root, built.root / "export", frames=True)


def _video(built: Built, board: str, cam: str) -> list:
    return sorted((f for f in built.frames[(board, cam)] if not f.still),
                  key=lambda f: f.timestamp_ns)


def test_find_flights_in_every_layout(built: Built) -> None:
    both = find_flights(built.root)
    assert [(r.board, r.flight) for r in both] == [(b, FLIGHT) for b in sorted(BOARDS)]
    assert [r.board for r in find_flights(built.root / "rig-b")] == ["rig-b"]  # a board's store
    one = built.root / "rig-a" / FLIGHT
    assert [r.path for r in find_flights(one)] == [one]
    assert find_flights(built.root / "rig-a" / FLIGHT / "down") == []


def test_mp4_frames_at_sensor_timestamps(built: Built, exported) -> None:
    assert sorted(p.name for p in exported.mp4) == sorted(f"{b}_{c}.mp4" for b in BOARDS
                                                          for c in ("down", "up"))
    assert exported.subtitles == []  # muxed, no sidecar
    for board in BOARDS:
        for cam in ("down", "up"):
            frames = _video(built, board, cam)
            with av.open(str(built.root / "export" / SET / "mp4" / f"{board}_{cam}.mp4")) as c:
                vs = c.streams.video[0]
                assert vs.codec_context.name == "h264" and vs.time_base == MP4_TIME_BASE
                assert (vs.width, vs.height) == (320, 240)
                pts = sorted(f.pts for f in c.decode(video=0))
            assert len(pts) == len(frames)
            ts0 = frames[0].timestamp_ns
            assert pts == [pts_of(f.timestamp_ns, ts0) for f in frames]
            # durations are true: the last frame is at its real time from the first (variable rate)
            last_s = (frames[-1].timestamp_ns - ts0) / 1e9
            assert abs(float(pts[-1] * MP4_TIME_BASE) - last_s) < 1e-4
            gaps = {round(float((b - a) * MP4_TIME_BASE), 3) for a, b in itertools.pairwise(pts)}
            # ARMED at 4 fps (2 for "up") and DESCENT faster: not a constant rate
            assert len(gaps) > 1


def test_mp4_carries_phases_as_subtitles(built: Built, exported) -> None:
    with av.open(str(built.root / "export" / SET / "mp4" / "rig-b_down.mp4")) as c:
        assert c.streams.subtitles[0].codec_context.name == "mov_text"
        subs = [(p.pts, bytes(p)[2:].decode()) for p in c.demux(c.streams.subtitles[0])
                if p.size > 2]
    # first frame at -1.0 s (ARMED); release at +1.0 s in the video; separation 20 ms late on rig-b
    assert subs == [(0, "ARMED"), (1000, "DESCENT"), (2020, "SEPARATION"), (3000, "TOUCHDOWN")]


def _expected_tiles(built: Built) -> list[tuple[str, str, EncodedFrame | None]]:
    """Per event block, camera row and offset column, the frame the sheet must show: within 0.25 s
    of the target on the board's own event time; at the edge (offset 0) the first not before it."""
    out = []
    for ev, after_s in (("release", 0.0), ("separation", 1.0), ("touchdown", 2.0)):
        for board, cam in [(b, c) for b in sorted(BOARDS) for c in ("down", "up")]:
            skew = 20_000_000 if board == "rig-b" and ev == "separation" else 0
            t_ev = BOARDS[board] + int(after_s * 1e9) + skew
            frames = _video(built, board, cam)
            for off in OFFSETS_S:
                target = t_ev + int(off * 1e9)
                near = [f for f in frames if abs(f.timestamp_ns - target) <= 250_000_000]
                later = [f for f in near if f.timestamp_ns >= target]
                pick = (min(later, key=lambda f: f.timestamp_ns) if off == 0 and later else
                        min(near, key=lambda f: abs(f.timestamp_ns - target)) if near else None)
                out.append((board, cam, pick))
    return out


def test_contact_sheet_frames_around_every_event_and_the_stills(built: Built, exported) -> None:
    png = built.root / "export" / SET / "contact_sheet.png"
    assert exported.contact_sheets == [png]
    boxes = exported.tiles[png]
    want = [(b, c, f) for b, c, f in _expected_tiles(built) if f is not None]
    stills = [f for f in built.frames[("rig-a", "down")] if f.still]
    # 3 events x 5 offsets x 4 cameras, less the empty cells
    assert len(boxes) == len(want) + len(stills)
    # touchdown +1 s has no frame; "up" (2 fps) none at +0.5 s either
    assert len(want) == 3 * 5 * 4 - 6
    img = Image.open(png).convert("RGB")
    thumbs: dict[tuple[str, str], list[tuple[EncodedFrame, np.ndarray]]] = {}
    for (board, cam), frames in built.frames.items():
        for f in frames:
            im = Image.open(io.BytesIO(f.jpeg)).convert("RGB")
            im.thumbnail((240, 180))
            thumbs.setdefault((board, cam), []).append((f, np.asarray(im).astype(int)))
    tiles = [*want, *(("rig-a", "down", s) for s in stills)]
    for (board, cam, frame), box in zip(tiles, boxes, strict=True):
        tile = np.asarray(img.crop(box)).astype(int)
        assert tile.std() > 10 and np.abs(tile.mean(axis=(0, 1)) - BG).max() > 20, box
        # the tile is the expected frame: closer to it than to any other frame of that camera
        diffs = [(np.abs(a - tile).mean() if a.shape == tile.shape else 1e9, f)
                 for f, a in thumbs[(board, cam)]]
        assert min(diffs, key=lambda d: d[0])[1].jpeg == frame.jpeg, (board, cam, frame.seq, box)


def test_contact_sheet_picks_the_first_frame_of_the_new_phase_at_an_edge() -> None:
    picker = Picker([(1_000, True), (1_000, False)], tol_ns=100)
    # 10 ns before the edge: nearest, but of the old phase
    picker.offer(990, "SEPARATION", 1, b"before")
    picker.offer(1_040, "TOUCHDOWN", 2, b"after")
    picker.offer(1_020, "TOUCHDOWN", 3, b"first-after")
    at_edge, near = picker.picks()
    assert at_edge is not None and (at_edge.seq, at_edge.phase) == (3, "TOUCHDOWN")
    assert near is not None and near.seq == 1  # elsewhere the nearest frame wins
    assert Picker([(1_000, True)], tol_ns=10).picks() == [None]
    sparse = Picker([(0, False), (500, False), (1_000, False), (0, False)], tol_ns=1_000)
    sparse.offer(600, "DESCENT", 7, b"only")
    # once per row, at the nearest
    assert [p and p.seq for p in sparse.picks(group=3)] == [None, 7, None, 7]


def test_sheet_header_names_the_flight_once() -> None:
    assert flight_header([("rig-a", "F1"), ("rig-b", "F1")], "x") == (
        "flight F1 · boards rig-a, rig-b · x")
    assert flight_header([("rig-a", "F1"), ("rig-b", "F2")], "x") == (
        "flights rig-a F1, rig-b F2 · x")


def test_timeline_png_and_svg(built: Built, exported) -> None:
    png = built.root / "export" / SET / "timeline.png"
    assert exported.timelines == [png] and exported.timeline_svgs == [png.with_suffix(".svg")]
    assert Image.open(png).size[0] >= 1200
    svg = png.with_suffix(".svg").read_text()
    dropped = f"dropped: {store_reason('queue_full')}"  # the ledger's name for the store's reason
    for text in ("seconds from release", "frames/s", "rig-a", "rig-b", dropped, "fault",
                 "still (gap in video)", "DESCENT", "SEPARATION", "TOUCHDOWN", "CameraTimeout"):
        assert text in svg, text


def test_timeline_legend_names_only_what_is_drawn(tmp_path: Path) -> None:
    lane = Lane("rig", "down", np.arange(-1.0, 2.0, 0.1),
                phases=[(-1.0, "ARMED"), (0.0, "DESCENT")])
    png, svg = draw_timeline("t", [lane], tmp_path / "t.png")
    text = svg.read_text()
    assert png.exists() and "DESCENT" in text and "frames/s" in text
    assert "fault" not in text and "dropped" not in text and "still (gap" not in text


def test_timeline_rate_bins_start_at_release() -> None:
    # 4 fps before release, 10 fps from it: the step is exactly at t = 0, not a bin early
    frames = np.concatenate([np.arange(-1.0, 0.0, 0.25), np.arange(0.0, 1.05, 0.1)])
    edges, rate = rate_bins(frames, -1.13, 0.97)
    assert np.allclose(edges / BIN_S, np.round(edges / BIN_S)) and 0.0 in edges
    k = int(np.flatnonzero(np.isclose(edges, 0.0))[0])
    assert np.allclose(rate[1:k], 4) and rate[0] == 0  # before the first frame: no rate
    assert np.allclose(rate[k:], 10)  # a steady 10 fps reads 10 in every bin, not 8 and 12
    _, slow = rate_bins(np.arange(0.0, 3.0, 0.5), 0.0, 2.5)
    # 2 fps in 0.25 s bins: bins without a frame of their own still read 2
    assert np.allclose(slow, 2)


def test_frames_named_and_byte_identical(built: Built, exported) -> None:
    frames_dir = built.root / "export" / SET / "frames"
    files = sorted(frames_dir.iterdir())
    assert len(files) == sum(len(v) for v in built.frames.values())
    pat = re.compile(r"^(rig-[ab])_(down|up)_(\d{6})_([+-]\d+\.\d{3})s(_still)?\.jpg$")
    assert all(pat.match(f.name) for f in files)
    for (board, cam), frames in built.frames.items():
        for f in frames:
            t = (f.timestamp_ns - BOARDS[board]) / 1e9
            path = frames_dir / frame_file_name(board, cam, f.seq, t, still=f.still)
            assert path.read_bytes() == f.jpeg, path.name
    # the release frame: t=0 on every board
    assert (frames_dir / "rig-a_down_000004_+0.000s.jpg").exists()
    assert (frames_dir / "rig-b_down_000004_+0.000s.jpg").exists()


def test_cli_export_one_flight_folder(built: Built, tmp_path: Path,
                                      capsys: pytest.CaptureFixture) -> None:
    flight = tmp_path / FLIGHT
    shutil.copytree(built.root / "rig-a" / FLIGHT, flight)
    assert main(["export", str(flight), "--frames", "--quiet", "--out", str(tmp_path / "x")]) == 0
    out = list((tmp_path / "x" / SET / "frames").iterdir())
    assert len(out) == len(built.frames[("rig-a", "down")]) + len(built.frames[("rig-a", "up")])
    assert not (tmp_path / "x" / SET / "mp4").exists()  # only the kind asked for


def test_cli_export_no_flight_is_one_line_exit_2(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "empty" / "junk").mkdir(parents=True)
    assert main(["export", str(tmp_path / "empty")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no flights under" in err and str(tmp_path / "empty") in err
    assert main(["export", str(tmp_path / "missing")]) == 2


def _download_of_previews(built: Built, root: Path, *,
                          index: bool) -> dict[tuple[str, str], list[EncodedFrame]]:
    """What a thumbs-only fetch leaves: flight.json, the event log, every 3rd frame as a 160x120
    preview and, with ``index``, thumbs/index.json with each preview's sensor time and phase."""
    shown = {}
    for board in BOARDS:
        src, dst = built.root / board / FLIGHT, root / board / FLIGHT
        shutil.copytree(src / "events", dst / "events")
        shutil.copy(src / "flight.json", dst / "flight.json")
        infos = {}
        for cam in ("down", "up"):
            (dst / "thumbs" / cam).mkdir(parents=True)
            shown[(board, cam)] = _video(built, board, cam)[::3]
            for f in shown[(board, cam)]:
                im = Image.open(io.BytesIO(f.jpeg))
                im.thumbnail((160, 120))
                im.save(dst / "thumbs" / cam / f"{f.seq:06d}.jpg")
                infos[f"{cam}/{f.seq:06d}"] = {"seq": f.seq, "timestamp_ns": f.timestamp_ns,
                                               "phase": f.phase}
        if index:
            (dst / "thumbs" / "index.json").write_text(json.dumps(infos))
    return shown


def test_contact_sheet_from_previews_around_every_event(built: Built, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no previews"):
        contact_sheet_from_thumbs(built.root, tmp_path / "none.png")
    shown = _download_of_previews(built, tmp_path / "dl", index=True)
    boxes = sheet_from_previews(find_flights(tmp_path / "dl"), tmp_path / "first_look.png")
    want: list[EncodedFrame] = []
    row: list[tuple[int, EncodedFrame | None]] = []
    for ev, after_s in (("release", 0.0), ("separation", 1.0), ("touchdown", 2.0)):
        for board, cam in [(b, c) for b in sorted(BOARDS) for c in ("down", "up")]:
            skew = 20_000_000 if board == "rig-b" and ev == "separation" else 0
            t_ev = BOARDS[board] + int(after_s * 1e9) + skew
            for off in OFFSETS_S:
                target = t_ev + int(off * 1e9)
                near = [f for f in shown[(board, cam)]
                        if abs(f.timestamp_ns - target) <= 1_000_000_000]
                later = [f for f in near if f.timestamp_ns >= target]
                pick = (min(later, key=lambda f: f.timestamp_ns) if off == 0 and later else
                        min(near, key=lambda f: abs(f.timestamp_ns - target)) if near else None)
                row.append((target, pick))
            # a preview chosen for several columns of a row stays only in the nearest one
            for t, f in row:
                if f is not None and t == min((u for u, g in row if g is f),
                                              key=lambda u: abs(f.timestamp_ns - u)):
                    want.append(f)
            row.clear()
    assert len(boxes) == len(want) > 30
    img = Image.open(tmp_path / "first_look.png").convert("RGB")
    cands = []
    for fs in shown.values():
        for g in fs:
            im = Image.open(io.BytesIO(g.jpeg)).convert("RGB")
            im.thumbnail((160, 120))
            cands.append((g, np.asarray(im).astype(int)))
    for f, box in zip(want, boxes, strict=True):
        tile = np.asarray(img.crop(box)).astype(int)
        best = min(cands, key=lambda c: (np.abs(c[1] - tile).mean() if c[1].shape == tile.shape
                                         else 1e9))
        assert best[0].jpeg == f.jpeg, (f.camera, f.seq, box)


def test_contact_sheet_from_previews_without_times_spreads_them(built: Built,
                                                                tmp_path: Path) -> None:
    shown = _download_of_previews(built, tmp_path / "dl", index=False)
    boxes = sheet_from_previews(find_flights(tmp_path / "dl"), tmp_path / "sheet.png")
    assert len(boxes) == sum(min(8, len(v)) for v in shown.values())  # up to 8 per camera, spread


def test_export_of_a_thumbs_only_download(built: Built, tmp_path: Path,
                                          capsys: pytest.CaptureFixture) -> None:
    _download_of_previews(built, tmp_path / "dl", index=True)
    assert main(["export", str(tmp_path / "dl"), "--quiet"]) == 0
    out = capsys.readouterr().out
    sheet = tmp_path / "dl" / "export" / SET / "contact_sheet.png"
    assert f"contact_sheet: {sheet}" in out and sheet.stat().st_size > 10_000
    assert "contact sheet made from the previews" in out
    assert "no release event logged" not in out  # the events were downloaded: no false note
