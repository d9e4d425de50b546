"""Issue 28, item 10: several boards in Foxglove (per-board topics, a column per board, stills
panels; the README says what is true of the stored segments), ``export``'s default kinds and
``--quiet`` count, and the demo's ``captured`` read as ``camctl ls`` reads it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from flights import BOARDS, FLIGHT, Built
from mcap.reader import make_reader

from camctl.cli import main

README = Path(__file__).resolve().parent.parent / "README.md"


def _leaves(tree: object) -> list[str]:
    return (_leaves(tree["first"]) + _leaves(tree["second"])  # type: ignore[index]
            if isinstance(tree, dict) else [tree])


def _subtrees(tree: object) -> list[object]:
    if not isinstance(tree, dict):
        return [tree]
    return [tree, *_subtrees(tree["first"]), *_subtrees(tree["second"])]


def _channels(path: Path) -> set[str]:
    with path.open("rb") as f:
        summary = make_reader(f).get_summary()
    assert summary is not None
    return {c.topic for c in summary.channels.values()}


def test_foxglove_layout_a_column_per_board_with_its_stills(built: Built, tmp_path: Path) -> None:
    assert main(["export", str(built.root), "--foxglove", "--out", str(tmp_path), "--quiet"]) == 0
    fdir = tmp_path / FLIGHT / "foxglove"
    topics = _channels(fdir / f"{FLIGHT}.mcap")
    layout = json.loads((fdir / f"{FLIGHT}.layout.json").read_text())
    panels = layout["configById"]
    image_topics = {c["imageMode"]["imageTopic"] for k, c in panels.items()
                    if k.startswith("Image!")}
    with_stills = {key for key, frames in built.frames.items() if any(f.still for f in frames)}
    assert with_stills, "the built download has a still"
    for board, cam in built.frames:
        still = f"/{board}/{cam}/still"
        # a still panel exactly where the MCAP holds stills, on the board's own topic
        assert (still in image_topics) == ((board, cam) in with_stills) == (still in topics)
    top = layout["layout"]["first"]
    for board in BOARDS:
        mine = {k for k, c in panels.items() if c["foxglovePanelTitle"].startswith(f"{board} ")}
        assert {panels[k].get("topicToRender") for k in mine} >= {f"/{board}/log"}
        assert {panels[k]["imageMode"]["imageTopic"] for k in mine if k.startswith("Image!")} == {
            f"/{board}/{c}/{kind}" for b, c in built.frames for kind in ("image", "still")
            if b == board and (kind == "image" or (b, c) in with_stills)}
        # one column of the top row holds exactly this board's panels
        assert any(set(_leaves(t)) == mine for t in _subtrees(top)), board
    assert set(_leaves(layout["layout"])) == set(panels)


def test_readme_does_not_promise_stored_segments_of_boards_line_up(built: Built) -> None:
    # what is true: every board stores the same topics, so opened together they collide
    seg_a = sorted((built.root / "rig-a" / FLIGHT / "down").glob("*.mcap"))[0]
    seg_b = sorted((built.root / "rig-b" / FLIGHT / "down").glob("*.mcap"))[0]
    assert "/down/image" in _channels(seg_a) & _channels(seg_b)
    text = " ".join(README.read_text().split())
    assert "so boards line up" not in text
    assert "segments of several boards opened together collide" in text
    assert "use `camctl export --foxglove` to see several boards together" in text


def test_export_without_a_kind_writes_videos_sheet_timeline_not_frames(
        built: Built, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["export", str(built.root), "--out", str(tmp_path), "--quiet"]) == 0
    out = capsys.readouterr().out
    set_dir = tmp_path / FLIGHT
    assert not (set_dir / "frames").exists() and "frames:" not in out
    assert len(list((set_dir / "mp4").glob("*.mp4"))) == len(built.frames)
    assert (set_dir / "contact_sheet.png").stat().st_size and (set_dir / "timeline.png").exists()
    assert not (set_dir / "foxglove").exists()


def test_quiet_export_of_frames_still_prints_their_count(
        built: Built, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["export", str(built.root), "--frames", "--out", str(tmp_path), "--quiet"]) == 0
    lines = capsys.readouterr().out.splitlines()
    n = sum(len(v) for v in built.frames.values())
    assert f"frames: {n} files in {tmp_path / FLIGHT / 'frames'}" in lines, lines


def test_demo_captured_is_what_ls_says(tmp_path: Path) -> None:
    """The real demo flight (one board): the table's ``captured`` equals ``camctl ls``'s for
    every camera; and it is read from the download's books, not from the board's count at LANDED
    (a count one short, as the issue saw, shows as a problem and never in the table)."""
    from camctl.demo import summarize

    out = tmp_path / "demo"
    proc = subprocess.run([sys.executable, "-m", "camctl", "demo", "--boards", "1",
                           "--seconds", "1.5", "--out", str(out), "--quiet"],
                          capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = json.loads((out / "report.json").read_text())["rows"]
    ls = subprocess.run([sys.executable, "-m", "camctl", "ls", "--json", str(out / "ground")],
                        capture_output=True, text=True, timeout=60)
    assert ls.returncode == 0, ls.stderr
    (flight,) = json.loads(ls.stdout)["flights"]
    books = {cam: c["ledger"]["captured"] for cam, c in flight["cameras"].items()}
    assert {r["camera"]: r["captured"] for r in rows} == books
    # the same rows from a status read one frame short of the books
    states = [{"board": flight["board"], "flight": flight["flight"],
               "cameras": {r["camera"]: {"frames_captured": r["captured"] - 1,
                                         "frames_stored": r["stored"],
                                         "durable_frames": r["durable"],
                                         "dropped": r["dropped"], "faults": r["faults"]}
                           for r in rows}}]

    def no_board(name: str) -> None:
        raise KeyError(name)

    again, problems = summarize(out / "ground", states, SimpleNamespace(board=no_board))
    assert {r["camera"]: r["captured"] for r in again} == books
    assert sum("at LANDED, its flight's books say" in p for p in problems) == len(books), problems
