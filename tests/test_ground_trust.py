"""The ground trusts a board only as far as it must (issue 25, defects 5-8): names matched whole,
one bad LISTING entry skipped and named, board text sanitised, every reply bounded, identity by
board id not name, BUSY waited out, a board that never serves holds nobody back."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

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


def test_board_id_not_an_id_is_set_aside(tmp_path: Path) -> None:
    (tmp_path / ID_FILE).write_text("hello\n")
    made = board_id(tmp_path)
    assert len(made) == 32 and (tmp_path / f"{ID_FILE}.bad").read_text() == "hello\n"
