"""Lost frames are shown with their exact seqs wherever a loss is shown: ``camctl ls DIR`` (text
and JSON), ``camctl ls --connect`` (from the board's event logs), the mission page (the download
message it reads, and the board's card in chromium) and the export's notes and contact sheet.

The flight is a real store flight: a power cut leaves its camera segment with a torn tail holding
frames 12-14 and :func:`camctl.store.recover_store` cuts it (its loss record names the seqs); a
damaged range (seqs 3-5) and a record from before seqs were exact (``seqs`` None) are appended
through the store's event log API, as verify logs them.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from netfixtures import FakeBoard
from store_helpers import frame
from waiting import wait_for

from camctl.board.config import PublishConfig, StoreConfig
from camctl.board.publish import Publisher
from camctl.cli import main
from camctl.common.records import LossRecord
from camctl.ground.mission.browser import find_chromium
from camctl.store import FlightStore, recover_store
from camctl.store._salvage import scan_segment
from camctl.store.writer import append_events

LOOP = PublishConfig(bind="tcp://127.0.0.1:*", events="tcp://127.0.0.1:*")
BOARD, FLIGHT = "rig-l", "F1"
DAMAGED = "damaged: fails its check"


class _Board(FakeBoard):
    """The daemon as the publisher sees it, landed after the flight (its STATUS names it)."""

    def status(self) -> dict:
        return {**super().status(), "flight": FLIGHT}


@pytest.fixture(scope="module")
def lossy(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A board's store with one flight that lost frames: ``{"root", "lines", "seqs"}``, ``lines``
    the three loss lines ``ls`` must print (the recovery's own range and reason)."""
    base = tmp_path_factory.mktemp("lossy")
    root = base / "store"
    cfg = StoreConfig(reserve_mb=0, commit_interval_ms=60_000)
    st = FlightStore(root, BOARD, FLIGHT, cfg, cameras=["down"])
    for k in range(4):  # frames 0-11 in four commits: four chunks
        for j in range(3):
            assert st.put(frame("down", k * 3 + j))
        st.commit(wait=True)
    fdir = root / FLIGHT
    cut = {p: p.read_bytes() for p in fdir.glob("*/*.mcap")}  # committed, never finished
    st.close()
    # frames 12-14 committed by another store: the head of their chunk is the torn tail here
    st2 = FlightStore(base / "more", BOARD, "G", cfg, cameras=["down"])
    for s in (12, 13, 14):
        assert st2.put(frame("down", s))
    st2.commit(wait=True)
    extra = (base / "more" / "G" / "down" / "000001.mcap").read_bytes()
    st2.close()
    chunk = scan_segment(Path("down/x.mcap"), extra).chunks[0]
    for p in fdir.glob("*/*.mcap"):  # the power cut: the files as they were, no index
        if p not in cut:
            p.unlink()
    seg = fdir / "down" / "000001.mcap"
    for p, data in cut.items():
        p.write_bytes(data + extra[chunk.start:chunk.end - 40] if p == seg else data)
    (fdir / "index.json").unlink()
    report = recover_store(root)
    torn, = report.losses
    assert torn["seqs"] == [12, 13, 14], torn  # the store's part: exact seqs of a torn tail
    second = scan_segment(seg, seg.read_bytes()).chunks[1]  # frames 3-5
    damaged = LossRecord(camera="down", segment="down/000001.mcap",
                         range=(second.start, second.end), reason=DAMAGED, seq_after=2,
                         seq_before=6, seqs=(5, 3, 4))
    old = LossRecord(camera="down", segment="down/000001.mcap", reason=DAMAGED, seq_after=8)
    append_events(fdir, [damaged.encode(), old.encode()])
    lo, hi = torn["range"]
    lines = [f"down: 3 frames lost (seqs 12-14) in down/000001.mcap bytes {lo}..{hi}: "
             f"{torn['reason']}",
             f"down: 3 frames lost (seqs 3-5) in down/000001.mcap bytes {second.start}.."
             f"{second.end}: {DAMAGED}",
             f"down: frames lost between seq 8 and end (seqs not recorded) in down/000001.mcap: "
             f"{DAMAGED}"]
    return {"root": root, "lines": lines, "seqs": [[12, 13, 14], [3, 4, 5], None]}


COUNT = "losses 3 (6+ frames lost; 1 without seqs)"


def _seqs(losses: list[dict]) -> list[list[int] | None]:
    """Each JSON loss record's seqs, sorted (None: the record does not name them)."""
    return [None if x.get("seqs") is None else sorted(x["seqs"]) for x in losses]


def test_ls_dir_prints_each_loss_with_its_exact_seqs_and_counts_lost_frames(
        lossy: dict, capsys: pytest.CaptureFixture) -> None:
    assert main(["ls", str(lossy["root"])]) == 0
    out = capsys.readouterr().out
    assert COUNT in out, out
    for line in lossy["lines"]:
        assert f"  {line}\n" in out, (line, out)
    assert "None" not in out
    assert main(["ls", str(lossy["root"]), "--json"]) == 0
    fl, = json.loads(capsys.readouterr().out)["flights"]
    assert _seqs(fl["losses"]) == lossy["seqs"]
    assert (fl["lost_frames"], fl["losses_without_seqs"]) == (6, 1)


def test_ls_connect_shows_the_boards_losses_from_its_event_logs(
        lossy: dict, capsys: pytest.CaptureFixture) -> None:
    pub = Publisher(_Board(BOARD, lossy["root"]), LOOP)
    pub.start()
    try:
        assert main(["ls", "--connect", pub.router_endpoint, "--json"]) == 0
        ls = json.loads(capsys.readouterr().out)
        assert sorted(ls["flights"][FLIGHT]) == ["down"]  # a loss is no camera
        assert _seqs(ls["losses"][FLIGHT]) == lossy["seqs"]
        assert main(["ls", "--connect", pub.router_endpoint]) == 0
        out = capsys.readouterr().out
    finally:
        pub.close()
    assert f"{FLIGHT}: {COUNT}\n" in out, out
    for line in lossy["lines"]:
        assert f"  {line}\n" in out, (line, out)
    assert "None" not in out


def test_the_mission_download_message_carries_the_boards_losses(lossy: dict,
                                                                 tmp_path: Path) -> None:
    from camctl.ground.mission.recovery import Recovery

    pub = Publisher(_Board(BOARD, lossy["root"]), LOOP)
    pub.start()
    got: list[dict] = []
    rec = Recovery(tmp_path / "mission", emit=got.append, settle_s=0)
    try:
        view = {"name": BOARD, "url": pub.router_endpoint, "reachable": True,
                "status": {"phase": "LANDED", "serving": True, "flight": FLIGHT}}
        rec.update([view])
        done = wait_for(lambda: next((m for m in got if m["type"] == "download"
                                      and m["state"] != "fetching"), None),
                        "the download to end", timeout_s=120)
        snapshot = [m for m in rec.messages() if m["type"] == "download"]
    finally:
        rec.close()
        pub.close()
    assert done["state"] == "ok", done
    assert done["losses"] == lossy["lines"]
    assert (done["lost_frames"], done["losses_without_seqs"]) == (6, 1)
    assert done["losses_total"] == COUNT
    # a page that connects later reads the same (as JSON: the page's)
    keys = ("losses", "lost_frames", "losses_without_seqs", "losses_total")
    assert [{k: m[k] for k in keys} for m in json.loads(json.dumps(snapshot))] == [
        {k: done[k] for k in keys}]


def test_export_notes_and_contact_sheet_header_name_the_lost_seqs(
        lossy: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from camctl.ground.export import export_all
    from camctl.ground.export import sheet as sheet_mod

    headers: list[str] = []
    real = sheet_mod.draw_sheet

    def spy(header: str, *args: object, **kw: object) -> object:
        headers.append(header)
        return real(header, *args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(sheet_mod, "draw_sheet", spy)
    flights = tmp_path / "in"
    shutil.copytree(lossy["root"], flights)
    res = export_all(flights, tmp_path / "out", mp4=False, contact_sheet=True, timeline=False)
    assert res.contact_sheets
    for line in lossy["lines"]:
        assert f"{FLIGHT}: {BOARD}: {line}" in res.notes, res.notes
    header, = headers
    assert header.splitlines()[1:] == [f"{BOARD}: {line}" for line in lossy["lines"]]
    # a download of previews and event log only (camctl fetch brings them first): the sheet from
    # the previews says the same
    early = tmp_path / "early" / BOARD / FLIGHT
    shutil.copytree(lossy["root"] / FLIGHT, early, ignore=shutil.ignore_patterns("down"))
    (early / "thumbs" / "down").mkdir(parents=True)
    (early / "thumbs" / "down" / "000012.jpg").write_bytes(frame("down", 12).jpeg)
    headers.clear()
    res = export_all(early.parent.parent, tmp_path / "out2", mp4=False, contact_sheet=True,
                     timeline=False)
    assert res.contact_sheets and any("made from the previews" in n for n in res.notes), res.notes
    header, = headers
    assert header.splitlines()[1:] == [f"{BOARD}: {line}" for line in lossy["lines"]]


@pytest.mark.skipif(find_chromium() is None,
                    reason="needs Debian's chromium (.ci/run installs it: apt-get install "
                           "chromium)")
def test_the_mission_page_shows_the_lost_seqs_on_the_boards_card(lossy: dict,
                                                                  tmp_path: Path) -> None:
    from camctl.ground.mission.browser import chromium
    from camctl.ground.mission.server import MissionServer
    from camctl.ground.mission.session import Mission

    pub = Publisher(_Board(BOARD, lossy["root"]), LOOP)
    pub.start()
    server = MissionServer(Mission([pub.router_endpoint], tmp_path / "mission"), port=0)
    try:
        server.start()
        with chromium(tmp_path / "profile") as ctx:
            page = ctx.new_page()
            page.goto(server.url)
            card = f'section.card[data-board="{BOARD}"]'
            page.wait_for_selector(f"{card} .download[data-state=ok]", timeout=60_000)
            items = page.locator(f"{card} ul.losses li").all_inner_texts()
            lost = page.get_attribute(f"{card} ul.losses", "data-lost-frames")
    finally:
        server.close()
        pub.close()
    assert items == [COUNT, *lossy["lines"]]
    assert lost == "6"


def test_board_text_in_a_loss_reaches_no_terminal_as_escape_codes(
        lossy: dict, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    root = tmp_path / "store"
    shutil.copytree(lossy["root"], root)
    evil = LossRecord(camera="down", segment="down/000001.mcap", seqs=(20,),
                      reason="\x1b[2J\x1b]0;pwned\x07 wiped")
    append_events(root / FLIGHT, [evil.encode()])
    assert main(["ls", str(root)]) == 0
    assert main(["export", str(root), "--contact-sheet", "--out", str(tmp_path / "x"),
                 "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\x07" not in out
    shown = "down: 1 frame lost (seqs 20) in down/000001.mcap: \\x1b[2J\\x1b]0;pwned\\x07 wiped"
    assert f"  {shown}\n" in out and f"note: {FLIGHT}: {BOARD}: {shown}\n" in out, out
