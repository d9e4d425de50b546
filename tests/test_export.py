"""camctl export: MP4 frame count/timestamps/subtitles, contact sheet tiles, timeline, plain frames, CLI errors."""

from __future__ import annotations

import itertools
import re
import shutil
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image
from test_export_data import BOARDS, FLIGHT, Built, build_download

from camctl.cli import main
from camctl.exc import ConfigError
from camctl.export import BG, MP4_TIME_BASE, contact_sheet_from_thumbs, export_all, frame_file_name, pts_of
from camctl.views import find_flights

SET = FLIGHT  # a set is named after its earliest flight id


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    return build_download(tmp_path_factory.mktemp("dl"))


@pytest.fixture(scope="module")
def exported(built: Built):
    return export_all(built.root, built.root / "export", frames=True)


def _video(built: Built, board: str, cam: str) -> list:
    return sorted((f for f in built.frames[(board, cam)] if not f.still), key=lambda f: f.timestamp_ns)


def test_find_flights_in_every_layout(built: Built) -> None:
    both = find_flights(built.root)
    assert [(r.board, r.flight) for r in both] == [(b, FLIGHT) for b in sorted(BOARDS)]
    assert [r.board for r in find_flights(built.root / "rig-b")] == ["rig-b"]  # a board's store
    assert [r.path for r in find_flights(built.root / "rig-a" / FLIGHT)] == [built.root / "rig-a" / FLIGHT]
    assert find_flights(built.root / "rig-a" / FLIGHT / "down") == []


def test_mp4_frames_at_sensor_timestamps(built: Built, exported) -> None:
    assert sorted(p.name for p in exported.mp4) == sorted(f"{b}_{c}.mp4" for b in BOARDS for c in ("down", "up"))
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
            # durations are true: the last frame sits at its real time from the first (variable rate kept)
            assert abs(float(pts[-1] * MP4_TIME_BASE) - (frames[-1].timestamp_ns - ts0) / 1e9) < 1e-4
            gaps = {round(float((b - a) * MP4_TIME_BASE), 3) for a, b in itertools.pairwise(pts)}
            assert len(gaps) > 1  # ARMED at 4 fps (2 for "up") and DESCENT faster: not a constant rate


def test_mp4_carries_phases_as_subtitles(built: Built, exported) -> None:
    with av.open(str(built.root / "export" / SET / "mp4" / "rig-b_down.mp4")) as c:
        assert c.streams.subtitles[0].codec_context.name == "mov_text"
        subs = [(p.pts, bytes(p)[2:].decode()) for p in c.demux(c.streams.subtitles[0]) if p.size > 2]
    # first frame at -1.0 s (ARMED); release at +1.0 s into the video; separation 20 ms late on rig-b
    assert subs == [(0, "ARMED"), (1000, "DESCENT"), (2020, "SEPARATION"), (3000, "TOUCHDOWN")]


def test_contact_sheet_tiles(built: Built, exported) -> None:
    png = built.root / "export" / SET / "contact_sheet.png"
    assert exported.contact_sheets == [png]
    boxes = exported.tiles[png]
    # columns: release -0.5 s, release, separation, touchdown, touchdown +1 s; rows: 2 boards x 2 cameras
    assert len(boxes) == 5 * 4
    img = np.asarray(Image.open(png).convert("RGB")).astype(int)
    assert img.shape[1] == 8 + 5 * (240 + 8)
    for x0, y0, x1, y1 in boxes:
        tile = img[y0:y1, x0:x1]
        assert tile.std() > 10 and np.abs(tile.mean(axis=(0, 1)) - BG).max() > 20, (x0, y0)
    x0, y0, _, _ = boxes[0]
    assert (img[y0 + 50, x0 - 4] == BG).all()  # the gutter left of the first tile is background


def test_timeline_png(built: Built, exported) -> None:
    png = built.root / "export" / SET / "timeline.png"
    assert exported.timelines == [png]
    img = np.asarray(Image.open(png).convert("RGB")).astype(int)
    assert img.shape[1] == 1400 and img.shape[0] > 4 * 80
    red = (img[:, :, 0] > 230) & (img[:, :, 1] < 80) & (img[:, :, 2] < 80)
    ys = np.nonzero(red[60:, 300:])[0] + 60  # below the legend
    assert ys.size and ys.min() >= 62 + 3 * 84  # the fault is in the last lane (rig-b/up) only


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
    assert (frames_dir / "rig-a_down_000004_+0.000s.jpg").exists()  # the release frame: t=0 on every board
    assert (frames_dir / "rig-b_down_000004_+0.000s.jpg").exists()


def test_cli_export_one_flight_folder(built: Built, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    flight = tmp_path / FLIGHT
    shutil.copytree(built.root / "rig-a" / FLIGHT, flight)
    assert main(["export", str(flight), "--frames", "--quiet", "--out", str(tmp_path / "x")]) == 0
    out = list((tmp_path / "x" / SET / "frames").iterdir())
    assert len(out) == len(built.frames[("rig-a", "down")]) + len(built.frames[("rig-a", "up")])
    assert not (tmp_path / "x" / SET / "mp4").exists()  # only the kind asked for


def test_cli_export_no_flight_is_one_line_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "empty" / "junk").mkdir(parents=True)
    assert main(["export", str(tmp_path / "empty")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no flights under" in err and str(tmp_path / "empty") in err
    assert main(["export", str(tmp_path / "missing")]) == 2


def test_contact_sheet_from_thumbs(built: Built, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no previews"):
        contact_sheet_from_thumbs(built.root, tmp_path / "none.png")
    root = tmp_path / "dl"
    for board in BOARDS:  # a download in progress: flight.json, events and previews only
        src = built.root / board / FLIGHT
        dst = root / board / FLIGHT
        shutil.copytree(src / "events", dst / "events")
        shutil.copy(src / "flight.json", dst / "flight.json")
        for cam in ("down", "up"):
            (dst / "thumbs" / cam).mkdir(parents=True)
            for f in built.frames[(board, cam)][:10]:
                im = Image.open(__import__("io").BytesIO(f.jpeg))
                im.thumbnail((160, 120))
                im.save(dst / "thumbs" / cam / f"{f.seq:06d}.jpg")
    png = contact_sheet_from_thumbs(root, tmp_path / "first_look.png")
    img = np.asarray(Image.open(png).convert("RGB")).astype(int)
    assert img.shape[0] > 4 * 120 and img.shape[1] > 8 * 160
    assert img.std() > 20
