"""The ground trusts a board only as far as it must (issue 25, defects 5-8): names matched whole,
one bad LISTING entry skipped and named, board text sanitised, every reply bounded, identity by
board id not name, BUSY waited out, a board that never serves holds nobody back."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from netfixtures import ScriptedRouter

from camctl.board.identity import ID_FILE, board_id
from camctl.common import protocol as p
from camctl.exc import ProtocolError

SHA = "ab" * 32


def _entry(path: str, **kw: object) -> dict:
    d = {"path": path, "size": 10, "sha256": SHA, "flight": path.split("/")[0],
         "camera": path.split("/")[1] if path.count("/") == 2 else "", "kind": "segment"}
    d.update(kw)
    return d


# --- protocol: names, listings, text -----------------------------------------------------------
@pytest.mark.parametrize("bad", ["f1\n", "rig-a\n", "a\r", "\x1b[2J", "a b", "", "-x", "a" * 64])
def test_names_are_matched_whole(bad: str) -> None:
    assert not p.is_name(bad)
    with pytest.raises(ProtocolError) as e:
        p.decode(p.List(id=1, flight=bad).encode())
    assert e.value.code in (p.E_BAD_FIELD, p.E_TOO_LARGE)


def test_path_with_a_newline_is_not_a_path() -> None:
    with pytest.raises(ProtocolError) as e:
        p.check_relpath("f1/down/000000.mcap\n")
    assert e.value.code == p.E_BAD_PATH


def test_one_bad_listing_entry_is_named_and_skipped() -> None:
    frames = p._frames(b"LISTING", {"id": 3, "board": "rig-a", "segments": [
        _entry("f1/down/000000.mcap"),
        _entry("f1\n/down/000001.mcap", flight="f1\n"),
        _entry("f1/down/000002.mcap", size=p.MAX_FILE_SIZE + 1),
        _entry("f1/down/000003.mcap", sha256="nothex"),
        "not an object",
        _entry("f1/up/000004.mcap"),
    ]})
    listing = p.decode(frames)
    assert isinstance(listing, p.Listing)
    assert [s.path for s in listing.segments] == ["f1/down/000000.mcap", "f1/up/000004.mcap"]
    assert len(listing.rejected) == 4
    text = "\n".join(listing.rejected)
    for bad in ("000001.mcap", "000002.mcap", f"<= {p.MAX_FILE_SIZE}", "000003.mcap",
                "not an object"):
        assert bad in text, bad


def test_printable_escapes_control_and_format_characters() -> None:
    assert p.printable("ok \x1b[31mred\x1b[0m\r\n\u202egnp.exe\x07") == \
        "ok \\x1b[31mred\\x1b[0m\\x0d\\x0a\\u202egnp.exe\\x07"
    assert p.printable("x" * 50, limit=10) == "x" * 10 + "..."
    assert p.printable("plain é ü 日本") == "plain é ü 日本"


def test_welcome_board_id_is_optional_and_checked() -> None:
    w = p.Welcome(id=1, version=1, board="rig-a", flights=["f1"], serving=True, mono_ns=1,
                  wall_ns=1, chunk_max=1024, board_id="0123456789abcdef0123456789abcdef")
    assert p.decode(w.encode()) == w
    old = p.Welcome(id=1, version=1, board="rig-a", flights=["f1"], serving=True, mono_ns=1,
                    wall_ns=1, chunk_max=1024)
    assert b"board_id" not in old.encode()[3] and p.decode(old.encode()).board_id == ""
    bad = p._frames(b"WELCOME", {**{k: v for k, v in vars(w).items()}, "board_id": "X\n"})
    with pytest.raises(ProtocolError, match="board_id"):
        p.decode(bad)


def test_error_retry_ms_round_trips() -> None:
    e = p.Error(id=4, code=p.E_BUSY, message="previews", retry_ms=250)
    assert p.decode(e.encode()) == e
    assert p.decode(p.Error(id=4, code=p.E_BUSY, message="x").encode()).retry_ms == 0


# --- board identity ----------------------------------------------------------------------------
def test_board_id_is_made_once_and_kept(tmp_path: Path) -> None:
    first = board_id(tmp_path / "store")
    assert len(first) == 32 and int(first, 16) >= 0
    assert board_id(tmp_path / "store") == first
    assert (tmp_path / "store" / ID_FILE).read_text().strip() == first
    assert [f.name for f in (tmp_path / "store").iterdir()] == [ID_FILE]  # no temporary left


def test_board_id_racing_processes_agree(tmp_path: Path) -> None:
    got: list[str] = []
    start = threading.Barrier(8)

    def one() -> None:
        start.wait()
        got.append(board_id(tmp_path))
    threads = [threading.Thread(target=one) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(got) == 8 and len(set(got)) == 1


def test_board_id_made_by_another_process_between_two_looks_is_kept(tmp_path: Path,
                                                                    monkeypatch) -> None:
    """The race the 8 racing processes hit under load: the id was absent at the read and linked
    by another process before the next look, which then set a whole id aside as 'not an id'."""
    theirs = "ab" * 16
    (tmp_path / ID_FILE).write_text(theirs + "\n")
    real, calls = Path.read_text, []

    def absent_at_first(self: Path, *a, **kw) -> str:
        calls.append(self)
        if len(calls) == 1:
            raise FileNotFoundError(self)  # not there yet when this process looked
        return real(self, *a, **kw)

    monkeypatch.setattr(Path, "read_text", absent_at_first)
    assert board_id(tmp_path) == theirs
    assert not (tmp_path / f"{ID_FILE}.bad").exists()


def test_board_id_not_an_id_is_set_aside(tmp_path: Path) -> None:
    (tmp_path / ID_FILE).write_text("hello\n")
    made = board_id(tmp_path)
    assert len(made) == 32 and (tmp_path / f"{ID_FILE}.bad").read_text() == "hello\n"


# --- a hostile board ---------------------------------------------------------------------------
class Rogue(ScriptedRouter):
    """A board in the test: a ROUTER answering from ``files`` (path -> bytes) honestly, unless a
    hook in ``on`` (verb -> fn(req) -> a Message, a raw frame list, or None for no answer) says
    otherwise. Counts the requests it got per verb."""

    def __init__(self, name: str = "rogue", files: dict[str, bytes] | None = None, *,
                 flights: list[str] | None = None, board_id: str = "", frames: int = 12) -> None:
        super().__init__()
        self.name = name
        self.board_id = board_id
        self.files = files if files is not None else {"f1/down/000000.mcap": b"honest " * 500}
        self.flights = flights or sorted({k.split("/")[0] for k in self.files})
        self.frames = frames
        self.on: dict[bytes, object] = {}
        self.asked: dict[bytes, int] = {}
        self.listed: list[str | None] = []
        self.serve()

    def segments(self) -> list[p.SegmentInfo]:
        import hashlib

        return [p.SegmentInfo(path=k, size=len(v), sha256=hashlib.sha256(v).hexdigest(),
                              flight=k.split("/")[0], camera=k.split("/")[1], frames=self.frames)
                for k, v in sorted(self.files.items())]

    def honest(self, req: p.Message) -> p.Message | None:
        if isinstance(req, p.Hello):
            return p.Welcome(id=req.id, version=1, board=self.name, flights=self.flights,
                             serving=True, mono_ns=1, wall_ns=1, chunk_max=1 << 20,
                             **({"board_id": self.board_id} if self.board_id else {}))
        if isinstance(req, p.List):
            self.listed.append(req.flight)
            return p.Listing(id=req.id, board=self.name, segments=[
                s for s in self.segments() if req.flight in (None, s.flight)])
        if isinstance(req, p.Fetch):
            data = self.files[req.path]
            return p.Chunk(id=req.id, path=req.path, offset=req.offset,
                           data=data[req.offset:req.offset + req.length])
        if isinstance(req, p.Thumbs):
            return p.Thumbnails(id=req.id, flight=req.flight, thumbs=[], jpegs=[])
        if isinstance(req, p.Status):
            return p.State(id=req.id, status={"board": self.name, "phase": "LANDED"})
        return p.Error(id=req.id, code=p.E_REFUSED, message="no")

    def reply(self, req: p.Message) -> object:
        self.asked[req.VERB] = self.asked.get(req.VERB, 0) + 1
        hook = self.on.get(req.VERB)
        return hook(req) if hook is not None else self.honest(req)  # type: ignore[operator]


def _fetch(urls: list[str], out: Path, **kw: object):
    from camctl.ground import fetch

    kw.setdefault("give_up_after_s", 10)
    return fetch(urls, out, progress=False, **kw)  # type: ignore[arg-type]


def _thumbs(req: p.Thumbs, n: int, size: int, *, more: bool) -> p.Thumbnails:
    infos = [p.ThumbInfo(camera="down", segment=req.segment or "", seq=req.skip + i,
                         timestamp_ns=1, phase="", width=16, height=12) for i in range(n)]
    return p.Thumbnails(id=req.id, flight=req.flight, thumbs=infos,
                        jpegs=[b"\xff\xd8" + bytes(size)] * n, more=more)


def test_endless_more_pages_stop_at_the_listed_frames(tmp_path: Path) -> None:
    with Rogue(frames=12) as rogue:
        rogue.on[b"THUMBS"] = lambda req: _thumbs(req, 1, 1000, more=True)  # forever
        done: list = []
        t = threading.Thread(target=lambda: done.append(
            _fetch([rogue.url], tmp_path / "out", thumbs_only=True)), daemon=True)
        t.start()
        t.join(120)  # hang guard only
        asked = rogue.asked.get(b"THUMBS", 0)
    assert done, f"the fetch never ended ({asked} THUMBS pages asked)"
    assert asked == 13  # 12 previews (one per listed frame), then the 13th is refused
    report = done[0]
    assert not report.ok and "go on past 13 previews" in report.summary()


def test_thumbnails_page_over_the_byte_cap_is_refused(tmp_path: Path) -> None:
    per = p.MAX_THUMBS_PAGE_BYTES // 2 + 1  # two previews: one byte over the cap (and each frame
    with Rogue(frames=12) as rogue:         # well under ZMQ_MAXMSGSIZE)
        rogue.on[b"THUMBS"] = lambda req: _thumbs(req, 2, per - 2, more=False)
        report = _fetch([rogue.url], tmp_path / "out", thumbs_only=True)
    assert not report.ok
    assert f"has {2 * per} bytes of previews (limit {p.MAX_THUMBS_PAGE_BYTES})" in report.summary()
    assert not (tmp_path / "out" / "rogue" / "f1" / "thumbs").exists()


_RSS_CLIENT = """
import json, sys
from pathlib import Path
from camctl.ground import fetch
def hwm():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
base = hwm()
rep = fetch([sys.argv[1]], Path(sys.argv[2]), progress=False, give_up_after_s=3, timeout_s=1)
print(json.dumps({"grew": hwm() - base, "ok": rep.ok, "summary": rep.summary()}))
"""


def test_oversize_chunk_drops_the_link_not_the_ground_memory(tmp_path: Path) -> None:
    """A board answering a 4 KiB FETCH with a 64 MiB CHUNK: the client (a subprocess, its peak RSS
    read from /proc) refuses the frame from its length header and never holds it."""
    import json
    import subprocess
    import sys

    huge = bytes(64 << 20)
    sent: list[int] = []

    def chunk(req: p.Fetch) -> list | None:
        if sent:
            return None  # the first FETCH only: later ones are not answered
        sent.append(req.id)
        return p.Chunk(id=req.id, path=req.path, offset=req.offset, data=huge).encode()

    with Rogue(files={"f1/down/000000.mcap": b"x" * 4096}) as rogue:
        rogue.on[b"FETCH"] = chunk
        r = subprocess.run([sys.executable, "-c", _RSS_CLIENT, rogue.url, str(tmp_path / "out")],
                           capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout.strip().splitlines()[-1])
    assert sent and not got["ok"]
    assert got["grew"] < 24 << 20, f"the client's peak RSS grew {got['grew']} bytes"
    assert "link dropped" in got["summary"] and str(p.MAX_REPLY_FRAME) in got["summary"]
    assert not (tmp_path / "out" / "rogue" / "f1" / "down" / "000000.mcap").exists()


# --- names, text, sizes, space -------------------------------------------------------------------
def test_board_text_reaches_the_terminal_escaped(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    from camctl.cli import main

    evil = "\x1b[2J\x1b]0;pwned\x07 gotcha\r"
    with Rogue() as rogue:
        rogue.on[b"LIST"] = lambda req: p.Error(id=req.id, code=p.E_REFUSED, message=evil)
        rogue.on[b"STATUS"] = lambda req: p.State(id=req.id, status={
            "board": "rogue", "phase": "\x1b[31mLANDED[/b]", "flight": "f1", "disk_free_mb": 1,
            "serving": True, "cameras": {"down\x1b[5m": {"state": "\x1b[Hrunning"}}})
        rc = main(["fetch", "--connect", rogue.url, "--out", str(tmp_path / "o"), "--quiet",
                   "--give-up-after", "5"])
        out = capsys.readouterr()
        assert rc == 1 and "\\x1b[2J\\x1b]0;pwned\\x07 gotcha\\x0d" in out.out
        assert main(["status", "--connect", rogue.url, "--timeout", "5"]) == 0
        status = capsys.readouterr()
    for text in (out.out, out.err, status.out):
        assert "\x1b" not in text and "\x07" not in text and "\r" not in text
    assert "\\x1b[31mLANDED[/b]" in status.out and "\\x1b[Hrunning" in status.out


def test_board_name_with_a_newline_makes_no_folder(tmp_path: Path) -> None:
    with Rogue(name="rig-a\n") as rogue:
        report = _fetch([rogue.url], tmp_path / "out")
    # no board folder: only the fetch's lock and its verdicts (the board, refused, is LOST)
    assert sorted(x.name for x in (tmp_path / "out").iterdir()) == [".camctl-fetch.lock",
                                                                     "fetch-verdicts.json"]
    assert not report.ok and "cannot be a folder name" in report.summary()
    assert report.boards[0].refused  # the CLI exits 2


def test_one_unsafe_entry_is_skipped_not_the_board(tmp_path: Path) -> None:
    good = {"f1/down/000000.mcap": b"good " * 100, "f1/up/000001.mcap": b"up " * 100}
    with Rogue(files=good) as rogue:
        def listing(req: p.List) -> list:
            entries = [s.to_json() for s in rogue.segments()]
            entries.insert(1, {**entries[0], "path": "f1/down/000009.mcap",
                               "size": p.MAX_FILE_SIZE * 4})
            entries.insert(1, {**entries[0], "path": "f1\n/down/000008.mcap", "flight": "f1\n"})
            return p._frames(b"LISTING", {"id": req.id, "board": "rogue", "segments": entries})
        rogue.on[b"LIST"] = listing
        report = _fetch([rogue.url], tmp_path / "out")
    b = report.boards[0]
    assert not b.unreachable and b.fetched == 2 and not report.ok
    text = report.summary()
    assert "unsafe entry 'f1/down/000009.mcap'" in text and "000008.mcap" in text
    for path, data in good.items():
        assert (tmp_path / "out" / "rogue" / path).read_bytes() == data


def test_free_space_checked_before_the_download(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    import sys

    from camctl.cli import main

    fetch_mod = sys.modules["camctl.ground.fetch"]  # the package's `fetch` is the function

    files = {"f1/down/000000.mcap": b"a" * 3000, "f1/down/000001.mcap": b"b" * 2000}
    monkeypatch.setattr(fetch_mod, "_free_bytes", lambda path: 4999, raising=False)
    with Rogue(files=files) as rogue:
        rc = main(["fetch", "--connect", rogue.url, "--out", str(tmp_path / "o"), "--quiet",
                   "--give-up-after", "5"])
        out = capsys.readouterr().out
        assert rc == 2 and rogue.asked.get(b"FETCH", 0) == 0
        assert f"board rogue: needs 5000 bytes on {tmp_path / 'o'}, 4999 bytes free" in out
        monkeypatch.setattr(fetch_mod, "_free_bytes", lambda path: 5000)
        assert _fetch([rogue.url], tmp_path / "o").ok


def test_flight_latest_is_the_boards_last_flight(tmp_path: Path) -> None:
    """A Pi whose clock went back after a power cut: its newest flight has the smaller id."""
    files = {"20260501T120000Z/down/000000.mcap": b"old " * 10,
             "19700101T000012Z/down/000000.mcap": b"new " * 10}
    with Rogue(files=files, flights=["20260501T120000Z", "19700101T000012Z"]) as rogue:
        report = _fetch([rogue.url], tmp_path / "out")
        assert rogue.listed == ["19700101T000012Z"]
    assert report.ok and report.boards[0].fetched == 1


# --- BUSY and boards that never serve ----------------------------------------------------------
def test_busy_is_asked_again_not_an_error(tmp_path: Path) -> None:
    with Rogue(frames=3) as rogue:
        busy = {b"THUMBS": 3, b"FETCH": 2}

        def maybe_busy(verb: bytes, then: object):
            def answer(req: p.Message) -> p.Message | None:
                if busy[verb] > 0:
                    busy[verb] -= 1
                    return p.Error(id=req.id, code=p.E_BUSY, message="1 dropped", retry_ms=20)
                return then(req)  # type: ignore[operator]
            return answer
        rogue.on[b"THUMBS"] = maybe_busy(b"THUMBS", lambda req: _thumbs(req, 3, 10, more=False))
        rogue.on[b"FETCH"] = maybe_busy(b"FETCH", rogue.honest)
        report = _fetch([rogue.url], tmp_path / "out")
    assert report.ok, report.summary()
    assert busy == {b"THUMBS": 0, b"FETCH": 0} and report.boards[0].thumbs == 3


def _all_exist(paths: list[Path]) -> bool:
    return all(x.exists() for x in paths)


def test_a_board_that_never_answers_list_holds_nobody_back(tmp_path: Path) -> None:
    """Board B says hello (serving) and then does not answer LIST until A's segments are all on
    disk: A must not wait for B's previews at the gate (it did, for all of --give-up-after, and B
    gave up meanwhile)."""
    out = tmp_path / "out"
    a_files = {f"f1/down/00000{i}.mcap": bytes([i]) * 5000 for i in range(3)}
    a_dest = [out / "rig-a" / k for k in a_files]
    with Rogue("rig-a", a_files) as a, Rogue("rig-b") as b:
        b.on[b"LIST"] = lambda req: b.honest(req) if _all_exist(a_dest) else None
        report = _fetch([a.url, b.url], out, give_up_after_s=20, timeout_s=1)
    assert report.board("rig-a").ok and report.board("rig-b").ok, report.summary()
    assert b.asked[b"LIST"] >= 2  # B's first LIST went unanswered: A came first


def test_a_board_not_serving_holds_nobody_back(tmp_path: Path) -> None:
    """Board B answers HELLO not serving until A's segments are all on disk."""
    out = tmp_path / "out"
    a_files = {f"f1/down/00000{i}.mcap": bytes([i]) * 5000 for i in range(3)}
    a_dest = [out / "rig-a" / k for k in a_files]
    with Rogue("rig-a", a_files) as a, Rogue("rig-b") as b:
        def hello(req: p.Hello) -> p.Message | None:
            w = b.honest(req)
            w.serving = _all_exist(a_dest)  # type: ignore[union-attr]
            return w
        b.on[b"HELLO"] = hello
        report = _fetch([a.url, b.url], out, give_up_after_s=20, timeout_s=1)
    assert report.board("rig-a").ok and report.board("rig-b").ok, report.summary()
    assert b.asked[b"HELLO"] >= 2


# --- identity, verified files, case ------------------------------------------------------------
ID_A, ID_B = "a" * 32, "b" * 32
TWIN_A = {"f1/down/000000.mcap": b"board A's frames " * 300}
TWIN_B = {"f1/down/000000.mcap": b"board B's other frames " * 200}


def _bytes_under(root: Path) -> dict[str, bytes]:
    return {x.relative_to(root).as_posix(): x.read_bytes() for x in root.rglob("*.mcap")}


def test_two_boards_one_name_across_runs_are_refused_naming_both(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from camctl.cli import main

    out = tmp_path / "out"
    with Rogue("twin", TWIN_A, board_id=ID_A) as a:
        assert _fetch([a.url], out).ok
    kept = _bytes_under(out / "twin")
    with Rogue("twin", TWIN_B, board_id=ID_B) as b:
        rc = main(["fetch", "--connect", b.url, "--out", str(out), "--quiet"])
        text = capsys.readouterr().out
        assert rc == 2 and b.asked.get(b"FETCH", 0) == 0
    assert f"is board 'twin' (id {ID_B})" in text and f"board 'twin' (id {ID_A})" in text
    assert _bytes_under(out / "twin") == kept  # A's verified files untouched
    with Rogue("twin", TWIN_A, board_id=ID_A) as a:  # the same board again: all skipped
        report = _fetch([a.url], out)
    assert report.ok and report.boards[0].skipped == 1


def test_a_verified_file_is_never_replaced_by_other_bytes(tmp_path: Path) -> None:
    """Two older boards (no board id) with one name: the second's file of the same path is
    refused, the first's kept."""
    out = tmp_path / "out"
    with Rogue("twin", TWIN_A) as a:
        assert _fetch([a.url], out).ok
    kept = _bytes_under(out / "twin")
    with Rogue("twin", TWIN_B) as b:
        report = _fetch([b.url], out)
    assert not report.ok and "is already there with other bytes" in report.summary()
    assert "kept, not replaced" in report.summary()
    assert _bytes_under(out / "twin") == kept


def test_names_differing_only_in_case_are_refused(tmp_path: Path) -> None:
    out = tmp_path / "out"
    with Rogue("Rig-A") as upper, Rogue("rig-a") as lower:  # in one run
        report = _fetch([upper.url, lower.url], out)
    assert len([d for d in out.iterdir() if d.is_dir()]) == 1
    refused = [b for b in report.boards if b.refused]
    assert len(refused) == 1 and "differs only in case from" in refused[0].errors[0]
    winner = next(b.board for b in report.boards if b.ok)
    other = "rig-a" if winner == "Rig-A" else "Rig-A"
    with Rogue(other) as late:  # in a later run, against the folder on disk
        report = _fetch([late.url], out)
    assert report.boards[0].refused and f"has a folder {winner!r}" in report.summary()
    # in one listing (first seen, in path order, wins): cameras, then flights
    cams = {"f1/down/000000.mcap": b"d" * 100, "f1/Down/000001.mcap": b"D" * 100}
    with Rogue("rig-c", cams) as board:
        report = _fetch([board.url], out)
    assert "'f1/down' differs only in case from 'f1/Down'" in report.summary()
    assert _bytes_under(out / "rig-c") == {"f1/Down/000001.mcap": b"D" * 100}
    flights = {"f1/down/000000.mcap": b"d" * 100, "F1/up/000000.mcap": b"u" * 100}
    with Rogue("rig-d", flights, flights=["F1", "f1"]) as board:
        report = _fetch([board.url], out, flight="all")
    assert "'f1' differs only in case from 'F1'" in report.summary()
    assert _bytes_under(out / "rig-d") == {"F1/up/000000.mcap": b"u" * 100}
    with Rogue("rig-c", {"F1/down/000002.mcap": b"x" * 100}) as board:  # against the disk
        report = _fetch([board.url], out)
    assert "'F1' differs only in case from 'f1' (on disk)" in report.summary()
    assert _bytes_under(out / "rig-c") == {"f1/Down/000001.mcap": b"D" * 100}


def test_a_refused_key_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The CLI's rule (camctl/cli.py docstring): a board that refuses is exit 2, not 1 (data)."""
    from netfixtures import FakeBoard

    from camctl.board.config import PublishConfig
    from camctl.board.publish import Publisher
    from camctl.cli import main
    from camctl.common.keys import create_keys

    create_keys(tmp_path / "k")
    create_keys(tmp_path / "w")  # a stranger's ground keys
    cfg = PublishConfig(bind="tcp://127.0.0.1:*", events="tcp://127.0.0.1:*",
                        curve_keys=str(tmp_path / "k" / "board"))
    with Publisher(FakeBoard("rig-k", tmp_path), cfg) as pub:
        rc = main(["fetch", "--connect", pub.router_endpoint, "--out", str(tmp_path / "o"),
                   "--quiet", "--give-up-after", "4", "--timeout", "2",
                   "--curve-keys", str(tmp_path / "w" / "ground"),
                   "--curve-server-key", str(tmp_path / "k" / "board" / "server.key")])
    out = capsys.readouterr().out
    assert rc == 2
    assert "refused this ground station's CURVE key" in out and "REFUSED" in out


def test_the_docs_state_the_client_limits_as_coded() -> None:
    """docs/protocol.md's 'Limits of replies' says what protocol.py does."""
    doc = (Path(__file__).parent.parent / "docs" / "protocol.md").read_text()
    section = doc.split("## Limits of replies")[1].split("\n## ")[0]
    assert p.MAX_REPLY_FRAME == p.MAX_CHUNK + 65536
    for text in (f"`MAX_REPLY_FRAME` = {p.MAX_CHUNK} + 65536",
                 f"`MAX_THUMBS_PAGE_BYTES` = {p.MAX_THUMBS_PAGE_BYTES}",
                 f"`MAX_PREVIEWS` = {p.MAX_PREVIEWS}",
                 f"`MAX_PREVIEW_BYTES` = {p.MAX_PREVIEW_BYTES}",
                 f"`MAX_FILE_SIZE` = 2^{p.MAX_FILE_SIZE.bit_length() - 1}",
                 f"`MAX_EVENT_FRAME` = {p.MAX_EVENT_FRAME} bytes",
                 f"`EVENT_RCVHWM` = {p.EVENT_RCVHWM} events"):
        assert text in section, text
    assert 1 << (p.MAX_FILE_SIZE.bit_length() - 1) == p.MAX_FILE_SIZE


def test_an_oversize_pub_event_never_reaches_the_ground() -> None:
    """A board's PUB sending a 1 MiB status: the ground's SUB drops that link (ZMQ_MAXMSGSIZE);
    a sane status over another PUB still arrives."""
    import json

    import zmq

    from camctl.ground.status import StatusSubscriber

    ctx = zmq.Context.instance()
    pubs = []
    for _ in range(2):
        pub = ctx.socket(zmq.PUB)
        pub.setsockopt(zmq.LINGER, 0)
        pub.bind("tcp://127.0.0.1:*")
        pubs.append(pub)
    big, small = pubs
    sub = StatusSubscriber([(s.getsockopt(zmq.LAST_ENDPOINT).decode(), None) for s in pubs])
    try:
        huge = json.dumps({"board": "big", "pad": "x" * (1 << 20)}).encode()
        got: dict = {}
        for _ in range(400):  # slow joiners: publish until the small one is seen (hang guard)
            big.send_multipart([b"status", huge])
            small.send_multipart([b"status", json.dumps({"board": "small"}).encode()])
            for _ in range(3):
                got.update(sub.drain(0.05)[0])
            if "small" in got:
                break
        assert "small" in got and "big" not in got
    finally:
        sub.close()
        for s in pubs:
            s.close(linger=0)


def test_two_boards_one_name_in_one_run_are_named_with_their_ids(tmp_path: Path) -> None:
    with Rogue("twin", TWIN_A, board_id=ID_A) as a, Rogue("twin", TWIN_B, board_id=ID_B) as b:
        report = _fetch([a.url, b.url], tmp_path / "out")
    refused = [x for x in report.boards if x.refused]
    assert len(refused) == 1 and not report.ok
    text = refused[0].errors[0]
    assert f"(id {ID_A})" in text and f"(id {ID_B})" in text and a.url in text and b.url in text
    kept = next(x for x in report.boards if x.ok)
    want = TWIN_A if kept.url == a.url else TWIN_B
    assert _bytes_under(tmp_path / "out" / "twin") == want
