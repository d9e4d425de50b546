"""Previews of a flight recorded by two runs of the daemon: one file per frame on the ground, each
saying its run (issue 26, defect 6: 8 previews fetched, 4 files on disk)."""

from __future__ import annotations

import json
from pathlib import Path

from netfixtures import FakeBoard
from store_helpers import jpeg

from camctl.board.config import PublishConfig, StoreConfig
from camctl.board.publish import Publisher
from camctl.common.frames import EncodedFrame, FrameValue
from camctl.ground import fetch
from camctl.store import FlightStore

CFG = PublishConfig(bind="tcp://127.0.0.1:*", events="tcp://127.0.0.1:*", chunk_kb=64,
                    thumbs_every=4)
S = 1_000_000_000


def _run(root: Path, run: int, t0_ns: int) -> None:
    """One run's frames, numbered from 0 (as a board before issue 26 numbered each run)."""
    store = FlightStore(root, "rig-a", "f1", StoreConfig(commit_interval_ms=20),
                        cameras=["down"], resume=run > 0, run=run)
    for seq in range(8):
        assert store.put(EncodedFrame("down", seq, t0_ns + seq * S // 10, jpeg(seq + 50 * run),
                                      32, 24, "DESCENT", int(FrameValue.DESCENT)))
    store.finish()
    store.close()


def test_a_later_runs_previews_do_not_overwrite_the_first_runs(tmp_path: Path) -> None:
    root = tmp_path / "store"
    _run(root, 0, 1000 * S)
    _run(root, 1, 3 * S)  # after a reboot: its clock restarted
    pub = Publisher(FakeBoard("rig-a", root), CFG)
    pub.start()
    try:
        report = fetch([pub.router_endpoint], tmp_path / "out", progress=False,
                       give_up_after_s=20, flight="f1")
    finally:
        pub.close()
    assert report.ok, report.summary()
    tdir = tmp_path / "out" / "rig-a" / "f1" / "thumbs"
    names = sorted(f.name for f in (tdir / "down").glob("*.jpg"))
    assert names == ["000000.jpg", "000004.jpg", "r1-000000.jpg", "r1-000004.jpg"]
    infos = json.loads((tdir / "index.json").read_text())
    assert {k: (v["run"], v["seq"]) for k, v in infos.items()} == {
        "down/000000": (0, 0), "down/000004": (0, 4), "down/r1-000000": (1, 0),
        "down/r1-000004": (1, 4)}
    assert (tdir / "down" / "000000.jpg").read_bytes() != (tdir / "down" / "r1-000000.jpg"
                                                            ).read_bytes()
