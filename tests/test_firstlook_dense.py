"""Issue 28 item 4: the first look can show the release. Previews are dense around every phase edge
(every frame within ``publish.thumbs_dense_s`` of it, sparse elsewhere) and include the stills, so
the -1 s .. +1 s columns of each event are filled; an unreachable board is said to be unreachable,
not to have logged no touchdown."""

from __future__ import annotations

import json
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import simplejpeg
from waiting import wait_for

from camctl.board.config import StoreConfig
from camctl.board.publish import previews
from camctl.cli import main
from camctl.common.frames import EncodedFrame, FrameValue
from camctl.common.records import PhaseRecord, read
from camctl.demo import start_board, write_board_config
from camctl.ground import Client
from camctl.store import FlightStore
from camctl.store.reader import iter_events, iter_frames

NS = 1_000_000_000


def _store(root: Path) -> tuple[list[Path], int]:
    """40 frames at 10 fps through the real FlightStore, a phase edge at frame 20 and a still
    after it; the segments and the edge's mono ns."""
    jpeg = simplejpeg.encode_jpeg(np.full((48, 64, 3), 90, np.uint8), quality=80)
    edge = NS + 20 * 100_000_000 - 30_000_000  # 30 ms before frame 20
    with FlightStore(root, "rig", "F1", StoreConfig(reserve_mb=0),
                     cameras=["down"], fsync=lambda fd: None) as st:
        st.log_event({"kind": "phase", "name": "DESCENT", "phase_from": "ARMED",
                      "phase_to": "DESCENT", "event": "release", "source": "gpio",
                      "mono_ns": edge, "wall_ns": 1_767_225_600 * NS, "skipped": []})
        for i in range(40):
            ts = NS + i * 100_000_000
            assert st.put(EncodedFrame("down", i, ts, jpeg, 64, 48,
                                       "ARMED" if ts < edge else "DESCENT"))
        assert st.put(EncodedFrame("down", 100, edge + 5_000_000, jpeg, 64, 48, "DESCENT",
                                   int(FrameValue.STILL), still=True, meta={"event": "release"}))
    return sorted((root / "F1" / "down").glob("*.mcap")), edge


def test_previews_every_frame_near_an_edge_sparse_elsewhere_and_the_stills(tmp_path: Path) -> None:
    segs, edge = _store(tmp_path)
    edges = previews.flight_edges(sorted((tmp_path / "F1" / "events").glob("*.mcap")))
    assert edges == [(0, edge)]
    got = [t for seg in segs for t, _ in previews.make_previews(
        seg, f"F1/down/{seg.name}", "down", 10, 32, edges=edges, dense_s=1.0)]
    video = [t for t in got if not t.still]
    frames = [fr for seg in segs for fr in iter_frames(seg) if not fr.still]
    near = {fr.seq for fr in frames if abs(fr.timestamp_ns - edge) <= NS}
    # per segment, every 10th image as before (the first of each segment)
    sparse = {fr.seq for seg in segs
              for i, fr in enumerate(x for x in iter_frames(seg) if not x.still) if i % 10 == 0}
    assert {t.seq for t in video} == near | sparse
    assert len(near) == 20 and len(video) < len(frames)
    (still,) = [t for t in got if t.still]
    assert (still.seq, still.event) == (100, "release")
    # dense_s 0: the sparse previews alone (and the still)
    off = [t for seg in segs for t, _ in previews.make_previews(
        seg, f"F1/down/{seg.name}", "down", 10, 32, edges=edges, dense_s=0.0)]
    assert {t.seq for t in off if not t.still} == sparse


def _fly(tmp: Path) -> list:
    def start(i: int, name: str):
        cfg = write_board_config(tmp / name, name, i, size=(320, 240), post_touchdown_s=0.2,
                                 reserve_mb=0)
        return start_board(cfg, tmp / name / "store", name)

    with ThreadPoolExecutor(2) as ex:
        boards = list(ex.map(start, (0, 1), ("dense-a", "dense-b")))
    for verb, args, pause in (("arm", {}, 1.6), ("event", {"name": "release"}, 1.5),
                              ("event", {"name": "touchdown"}, 0.0)):
        for b in boards:
            with Client(b.router, timeout_s=10) as c:
                c.command(verb, **args)
        time.sleep(pause)  # the phase's length (the scenario, not a wait)
    for b in boards:
        with Client(b.router, timeout_s=10) as c:
            wait_for(lambda c=c: (s := c.status())["phase"] == "LANDED" and s["serving"],
                     f"{b.name} to land")
    return boards


def test_first_look_of_a_real_flight_has_every_frame_around_each_edge_and_the_stills(
        tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    boards = _fly(tmp_path)
    try:
        argv = ["fetch", "--out", str(tmp_path / "ground"), "--first-look", "--quiet"]
        for b in boards:
            argv += ["--connect", b.router]
        rc = main(argv)
    finally:
        for b in boards:
            b.stop()
    out = capsys.readouterr().out
    assert rc == 0, out
    for name in ("dense-a", "dense-b"):
        (fdir,) = [d for d in (tmp_path / name / "store").iterdir()
                   if d.is_dir() and (d / "events").is_dir()]
        edges = [r.mono_ns for f in sorted((fdir / "events").glob("*.mcap"))
                 for r in read(iter_events(f)) if isinstance(r, PhaseRecord)]
        assert len(edges) >= 3  # arm, release, touchdown (and landed)
        index = json.loads((tmp_path / "ground" / name / fdir.name / "thumbs" / "index.json")
                           .read_text())
        for cam in ("down", "up"):
            stored = [fr for seg in sorted((fdir / cam).glob("*.mcap"))
                      for fr in iter_frames(seg, check_jpeg=False)]
            want = {fr.seq for fr in stored if not fr.still
                    and any(abs(fr.timestamp_ns - e) <= NS for e in edges)}
            have = {v["seq"] for k, v in index.items() if k.startswith(f"{cam}/")
                    and not v.get("still")}
            assert want and want <= have, (name, cam, sorted(want - have))
            stills = {fr.seq for fr in stored if fr.still}
            assert stills == {v["seq"] for k, v in index.items()
                              if k.startswith(f"{cam}/") and v.get("still")}
        assert any(v.get("still") and v.get("event") == "touchdown" for v in index.values())
    # the sheet's release block (its first 4 rows: 2 boards x 2 cameras) has a frame in every
    # column, -1 s and -0.5 s included
    from camctl.ground.export.sheet import OFFSETS_S, sheet_from_previews
    from camctl.ground.flights import find_flights

    boxes = sheet_from_previews(find_flights(tmp_path / "ground"), tmp_path / "again.png")
    rows = sorted({b[1] for b in boxes})[:4]
    assert [sum(b[1] == y for b in boxes) for y in rows] == [len(OFFSETS_S)] * 4, boxes


def test_first_look_names_an_unreachable_board(tmp_path: Path,
                                               capsys: pytest.CaptureFixture) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        url = f"tcp://127.0.0.1:{s.getsockname()[1]}"
    assert main(["fetch", "--connect", url, "--out", str(tmp_path), "--first-look", "--quiet",
                 "--give-up-after", "0.5", "--timeout", "0.3"]) == 2
    first = capsys.readouterr().out.splitlines()[0]
    assert "unreachable" in first and "no touchdown logged" not in first, first


def test_first_look_sheet_has_a_stills_block_from_the_previews(tmp_path: Path) -> None:
    """Previews around the release and one still preview: the sheet shows the still too, and the
    still is not taken for a frame of the release's columns."""
    from camctl.ground.export.sheet import OFFSETS_S, sheet_from_previews
    from camctl.ground.flights import find_flights

    edge = 5 * NS
    with FlightStore(tmp_path / "rig-a", "rig-a", "F1", StoreConfig(reserve_mb=0),
                     cameras=["down"], fsync=lambda fd: None) as st:
        st.log_event({"kind": "phase", "name": "DESCENT", "phase_from": "ARMED",
                      "phase_to": "DESCENT", "event": "release", "source": "gpio",
                      "mono_ns": edge, "wall_ns": 1_767_225_600 * NS, "skipped": []})
    tdir = tmp_path / "rig-a" / "F1" / "thumbs"
    (tdir / "down").mkdir(parents=True)
    jpeg = simplejpeg.encode_jpeg(np.full((48, 64, 3), 120, np.uint8), quality=80)
    index = {}
    for seq, dt in enumerate(OFFSETS_S):
        (tdir / "down" / f"{seq:06d}.jpg").write_bytes(jpeg)
        index[f"down/{seq:06d}"] = {"seq": seq, "timestamp_ns": edge + int(dt * NS) + 10,
                                    "phase": "DESCENT", "segment": "F1/down/x.mcap", "run": 0}
    # a still 40 ms before the edge: nearer the 0 s column than any frame, yet not in it
    (tdir / "down" / "000099.jpg").write_bytes(jpeg)
    index["down/000099"] = {"seq": 99, "timestamp_ns": edge - 40_000_000, "phase": "ARMED",
                            "segment": "F1/down/x.mcap", "run": 0, "still": True,
                            "event": "release"}
    (tdir / "index.json").write_text(json.dumps(index))
    boxes = sheet_from_previews(find_flights(tmp_path), tmp_path / "look.png")
    # the release block's five columns and the stills block's one tile
    assert len(boxes) == len(OFFSETS_S) + 1
    ys = sorted({b[1] for b in boxes})
    assert len(ys) == 2  # two rows of tiles: the release block's and the stills'


def test_thumbs_dense_s_is_checked(tmp_path: Path) -> None:
    from camctl.board.config import parse_config
    from camctl.exc import ConfigError

    cfg = parse_config({"board": "rig-a", "publish": {"thumbs_dense_s": 0.5}})
    assert cfg.publish.thumbs_dense_s == 0.5
    for bad, why in ((-1, "must be >= 0, got -1"), ("1s", "must be a number, got a string")):
        with pytest.raises(ConfigError) as e:
            parse_config({"board": "rig-a", "publish": {"thumbs_dense_s": bad}}, source="c.toml")
        assert str(e.value) == f"c.toml: publish.thumbs_dense_s: {why}"


def test_previews_made_before_a_later_edge_are_made_again(tmp_path: Path) -> None:
    """A board serving during its flight made a segment's previews before the next edge was logged:
    once the worker sees the new edge, that flight's previews are made again when asked for."""
    from camctl.store._eventlog import append_events

    segs, _edge = _store(tmp_path)
    seg, rel = segs[0], f"F1/down/{segs[0].name}"
    pv = previews.Previews(dense_s=0.5)
    try:
        wait_for(lambda: pv.get(seg, rel, "down", 10, 32) is not None, "previews")
        first = {t.seq for t, _ in pv.get(seg, rel, "down", 10, 32)}
        assert 5 not in first  # far from the release edge (frame 20), not a 10th frame
        # separation at frame 5's time, logged afterwards
        append_events(tmp_path / "F1", [{
            "kind": "phase", "name": "SEPARATION", "phase_from": "DESCENT",
            "phase_to": "SEPARATION", "event": "separation", "source": "gpio",
            "mono_ns": NS + 5 * 100_000_000, "wall_ns": 1_767_225_600 * NS}])
        # another job of the flight (another width) lets the worker see the new edge
        wait_for(lambda: pv.get(seg, rel, "down", 10, 48) is not None, "previews at 48 px")
        # (the worker dropped the 32 px previews before making the 48 px ones): made again
        wait_for(lambda: pv.get(seg, rel, "down", 10, 32) is not None, "previews made again")
        again = {t.seq for t, _ in pv.get(seg, rel, "down", 10, 32)}
        assert {1, 5, 9} <= again and first <= again, sorted(again)
    finally:
        pv.close()
