"""``camctl fetch --first-look``: two real boards land; one command fetches their previews, draws
the sheet from them and says how long after touchdown it is ready; an unreachable board is exit
2."""

from __future__ import annotations

import re
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from waiting import wait_for

from camctl.cli import main
from camctl.demo import start_board, write_board_config
from camctl.ground import Client


def _fly(tmp: Path) -> tuple[list, float]:
    def start(i: int, name: str):
        cfg = write_board_config(tmp / name, name, i, size=(320, 240), post_touchdown_s=0.2,
                                 reserve_mb=0)
        return start_board(cfg, tmp / name / "store", name)

    with ThreadPoolExecutor(2) as ex:
        boards = list(ex.map(start, (0, 1), ("look-a", "look-b")))
    touchdown = 0.0
    for verb, args, pause in (("arm", {}, 0.6), ("event", {"name": "release"}, 1.2),
                              ("event", {"name": "touchdown"}, 0.0)):
        touchdown = time.time()  # before the touchdown edges: the boards' touchdown comes after it
        for b in boards:
            with Client(b.router, timeout_s=10) as c:
                c.command(verb, **args)
        time.sleep(pause)  # the phase's length (the scenario, not a wait)
    for b in boards:
        with Client(b.router, timeout_s=10) as c:
            wait_for(lambda c=c: (s := c.status())["phase"] == "LANDED" and s["serving"],
                     f"{b.name} to land")
    return boards, touchdown


def test_first_look_command(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    boards, touchdown = _fly(tmp_path)
    try:
        argv = ["fetch", "--out", str(tmp_path / "ground"), "--first-look", "--quiet"]
        for b in boards:
            argv += ["--connect", b.router]
        rc = main(argv)
        elapsed = time.time() - touchdown
    finally:
        for b in boards:
            b.stop()
    out = capsys.readouterr().out
    assert rc == 0, out
    m = re.search(r"first look: (\S+) \((\d+) previews from 2/2 boards\), ([\d.]+) s "
                  r"after touchdown", out)
    assert m, out
    sheet = Path(m.group(1))
    assert sheet == tmp_path / "ground" / "first-look.png"
    # from the boards' own touchdown edge (printed to 0.01 s)
    assert 0 < float(m.group(3)) <= elapsed + 0.005
    assert int(m.group(2)) > 4
    img = np.asarray(Image.open(sheet).convert("RGB")).astype(int)
    # release and touchdown blocks, 2 boards x 2 cameras
    assert img.shape[0] > 4 * 180 and img.std() > 20
    # previews only: no segment fetched yet
    assert not list((tmp_path / "ground").glob("*/*/down/*.mcap"))


def test_first_look_of_an_unreachable_board_exits_2(tmp_path: Path,
                                                    capsys: pytest.CaptureFixture) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        url = f"tcp://127.0.0.1:{s.getsockname()[1]}"
    assert main(["fetch", "--connect", url, "--out", str(tmp_path), "--first-look", "--quiet",
                 "--give-up-after", "0.5", "--timeout", "0.3"]) == 2
    assert "no previews" in capsys.readouterr().out
