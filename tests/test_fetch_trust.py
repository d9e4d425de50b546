"""The ground trusts no name and shares no file: a hostile board cannot write outside --out, one
fetch per folder, one writer per .part, two boards with one name refused, fetch waits for serving, a
dead board holds nobody back."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import zmq
from netfixtures import FakeBoard, ScriptedRouter, free_port, make_store
from waiting import wait_for

from camctl.board.config import PublishConfig
from camctl.board.publish import Publisher
from camctl.common import protocol as p
from camctl.exc import ConfigError, FetchError
from camctl.ground import Client, fetch
from camctl.ground.download import _lock_part, lock_folder

CFG = PublishConfig(bind="tcp://127.0.0.1:*", events="tcp://127.0.0.1:*")


class HostileBoard(ScriptedRouter):
    """A board that attacks the ground: valid framing, hostile names in LISTING and THUMBNAILS."""

    def __init__(self, name: str = "evil") -> None:
        super().__init__()
        self.name = name
        self.data = b"MCAP-ish bytes " * 100
        sha = hashlib.sha256(self.data).hexdigest()
        seg = dict(size=len(self.data), sha256=sha, frames=4)
        self.segments = [
            # the honest one
            p.SegmentInfo(path="f1/down/000000.mcap", flight="f1", camera="down", **seg),
            p.SegmentInfo(path="f1/x/y/z/deep.mcap", flight="f1", camera="x", **seg),
            p.SegmentInfo(path="f1/up/000001.mcap", flight="f1", camera="../../../../up", **seg),
            p.SegmentInfo(path="f2/down/000002.mcap", flight="f1", camera="down", **seg),
            p.SegmentInfo(path="f1/thumbs/000003.mcap", flight="f1", camera="thumbs", **seg),
            p.SegmentInfo(path="f1/escape.json", flight="f1", camera="", kind="meta", **seg),
        ]
        self.serve()

    def reply(self, req: p.Message) -> p.Message:
        if isinstance(req, p.Hello):
            return p.Welcome(id=req.id, version=1, board=self.name, flights=["f1", "../..", "f0"],
                             serving=True, mono_ns=1, wall_ns=1, chunk_max=1 << 20)
        if isinstance(req, p.List):
            return p.Listing(id=req.id, board=self.name, segments=self.segments)
        if isinstance(req, p.Fetch):
            return p.Chunk(id=req.id, path=req.path, offset=req.offset,
                           data=self.data[req.offset:req.offset + req.length])
        if isinstance(req, p.Thumbs):
            jpeg = b"\xff\xd8evil\xff\xd9"
            infos = [p.ThumbInfo(camera="../../../../../escaped", segment=req.segment or "", seq=1,
                                 timestamp_ns=1, phase="", width=1, height=1),
                     p.ThumbInfo(camera="down", segment=req.segment or "", seq=-5, timestamp_ns=1,
                                 phase="", width=1, height=1),
                     p.ThumbInfo(camera="down", segment="f1/up/000001.mcap", seq=7, timestamp_ns=1,
                                 phase="", width=1, height=1),
                     p.ThumbInfo(camera="down", segment=req.segment or "", seq=2, timestamp_ns=1,
                                 phase="", width=1, height=1)]
            return p.Thumbnails(id=req.id, flight=req.flight, thumbs=infos,
                                jpegs=[jpeg] * len(infos))
        return p.Error(id=req.id, code=p.E_REFUSED, message="no")


class HelloCounting(Publisher):
    """A Publisher that counts the HELLOs it answers (a waiting fetch asks again and again)."""

    def __init__(self, *args: object, **kw: object) -> None:
        super().__init__(*args, **kw)  # type: ignore[arg-type]
        self.hellos = 0

    def _handle(self, req: p.Message, ident: zmq.Frame) -> p.Message:
        if isinstance(req, p.Hello):
            self.hellos += 1
        return super()._handle(req, ident)


def _files(root: Path) -> set[Path]:
    return {f for f in root.rglob("*") if f.is_file()}


def test_hostile_board_writes_nothing_outside_out(tmp_path: Path) -> None:
    out = tmp_path / "a" / "b" / "c" / "d" / "out"
    out.mkdir(parents=True)
    before = _files(tmp_path)
    board = HostileBoard()
    try:
        report = fetch([board.url], out, progress=False, give_up_after_s=10, flight="all")
    finally:
        board.close()
    outside = {f for f in _files(tmp_path) - before if not f.is_relative_to(out)}
    assert not outside, f"written outside --out: {outside}"
    b = report.board("evil")
    assert not report.ok and b.fetched == 1  # only the honest segment
    assert (out / "evil" / "f1" / "down" / "000000.mcap").read_bytes() == board.data
    text = "\n".join(b.errors)
    for bad in ("f1/x/y/z/deep.mcap", "f1/up/000001.mcap", "f2/down/000002.mcap",
                "f1/thumbs/000003.mcap", "f1/escape.json", "../../../../../escaped", "seq -5",
                "segment 'f1/up/000001.mcap'"):
        assert bad in text, bad
    thumbs = out / "evil" / "f1" / "thumbs" / "down"
    assert sorted(f.name for f in thumbs.iterdir()) == ["000002.jpg"]


def test_one_fetch_per_folder(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    make_store(tmp_path / "s", cameras=("down",), segments=1, frames=2)
    with Publisher(FakeBoard("rig-a", tmp_path / "s"), CFG) as pub:
        with lock_folder(out):  # a first fetch, stalled
            with pytest.raises(ConfigError, match=r"another camctl fetch \(pid \d+\) is writing "
                                                  r"into this folder"):
                fetch([pub.router_endpoint], out, progress=False, give_up_after_s=5)
            r = subprocess.run([sys.executable, "-m", "camctl", "fetch",
                                "--connect", pub.router_endpoint, "--out", str(out), "--quiet"],
                               capture_output=True, text=True, timeout=60)
            assert r.returncode == 2 and r.stdout == ""
            assert len(r.stderr.strip().splitlines()) == 1 and "another camctl fetch" in r.stderr
            assert not (out / "rig-a").exists()
        assert fetch([pub.router_endpoint], out, progress=False, give_up_after_s=10).ok  # released


def test_part_has_one_writer(tmp_path: Path) -> None:
    make_store(tmp_path / "s", cameras=("down",), segments=1, frames=2)
    with Publisher(FakeBoard("rig-a", tmp_path / "s"), CFG) as pub, \
            Client(pub.router_endpoint, timeout_s=10) as c:
        c.hello()
        seg = next(s for s in c.list() if s.kind == "segment")
        dest = tmp_path / "g" / "seg.mcap"
        dest.parent.mkdir()
        held = _lock_part(dest.with_name("seg.mcap.part"))  # another process's download in progress
        try:
            with pytest.raises(FetchError, match="another process is writing"):
                c.fetch_file(seg, dest)
            assert not dest.exists()
        finally:
            import os
            os.close(held)
        assert c.fetch_file(seg, dest) == "fetched"
        assert dest.read_bytes() == (tmp_path / "s" / seg.path).read_bytes()


def test_two_boards_one_name_refused(tmp_path: Path) -> None:
    make_store(tmp_path / "a", cameras=("down",), segments=1, frames=3, seed=1)
    make_store(tmp_path / "b", cameras=("down",), segments=1, frames=3, seed=2)
    with Publisher(FakeBoard("twin", tmp_path / "a"), CFG) as pa, \
            Publisher(FakeBoard("twin", tmp_path / "b"), CFG) as pb:
        report = fetch([pa.router_endpoint, pb.router_endpoint], tmp_path / "out", progress=False,
                       give_up_after_s=10)
    assert not report.ok
    errors = [e for b in report.boards for e in b.errors]
    assert (len(errors) == 1 and "reports board name 'twin', which" in errors[0]
            and "refused" in errors[0])
    winner = tmp_path / ("a" if report.boards[0].ok else "b")
    got = tmp_path / "out" / "twin"
    for f in winner.rglob("*.mcap"):  # one board's files, each whole: nothing joined
        assert (got / f.relative_to(winner)).read_bytes() == f.read_bytes()


def test_fetch_waits_for_serving_and_names_the_phase(tmp_path: Path) -> None:
    make_store(tmp_path / "s", cameras=("down",), segments=1, frames=2)
    board = FakeBoard("rig-t", tmp_path / "s", serving=False)
    board.phase = "TOUCHDOWN"
    with HelloCounting(board, CFG) as pub:
        never = fetch([pub.router_endpoint], tmp_path / "o1", progress=False, give_up_after_s=1)
        assert (not never.ok and "NOT_SERVING" in never.summary()
                and "phase TOUCHDOWN" in never.summary())
        result: list = []
        asked = pub.hellos
        t = threading.Thread(target=lambda: result.append(
            fetch([pub.router_endpoint], tmp_path / "o2", progress=False, give_up_after_s=30)))
        t.start()
        wait_for(lambda: pub.hellos > asked, "the fetch to be told the board is not serving")
        board.phase, board.is_serving = "LANDED", True  # the store finished: the board serves
        t.join(60)
    assert result and result[0].ok, result[0].summary()


def test_dead_board_holds_no_live_board_back(tmp_path: Path) -> None:
    make_store(tmp_path / "s", cameras=("down",), segments=2, frames=2)
    dead = f"tcp://127.0.0.1:{free_port()}"
    done = threading.Event()
    result: list = []
    with Publisher(FakeBoard("rig-live", tmp_path / "s"), CFG) as pub:
        def run() -> None:
            result.append(fetch([dead, pub.router_endpoint], tmp_path / "out", progress=False,
                                give_up_after_s=3))
            done.set()
        threading.Thread(target=run, daemon=True).start()
        segs = [tmp_path / "out" / "rig-live" / "f1" / "down" / f"00000{i}.mcap" for i in range(2)]
        wait_for(lambda: done.is_set() or all(s.exists() for s in segs),
                 "the live board's segments (or the fetch's end)")
        assert not done.is_set(), "the live board's segments came only when the dead board gave up"
        assert done.wait(60)
    report = result[0]
    assert report.board("rig-live").ok and report.board(dead).unreachable
    assert f"127.0.0.1 ({dead}): UNREACHABLE" in report.summary()
