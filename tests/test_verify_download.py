"""`camctl verify` on what the ground holds: a multi-board download, copied files, and nothing at
all."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from flights import FLIGHT, build_download

from camctl.store import verify


def _as_downloaded(src: Path, dst: Path) -> Path:
    """Copy a board's store like a fetch does: same bytes, new files (new mtimes)."""
    shutil.copytree(src, dst, copy_function=shutil.copyfile)
    for p in dst.rglob("*"):
        if p.is_file():
            os.utime(p, ns=(p.stat().st_atime_ns, p.stat().st_mtime_ns + 1_000_000_000))
    return dst


def test_a_download_of_two_boards_verifies_per_board_and_camera(tmp_path):
    built = build_download(tmp_path / "boards")
    ground = tmp_path / "ground"
    for board in ("rig-a", "rig-b"):
        _as_downloaded(built.root / board, ground / board)
    report = verify(ground)
    assert report.exit_code == 0, report.to_dict()
    assert sorted(report.cameras) == ["rig-a/down", "rig-a/up", "rig-b/down", "rig-b/up"]
    for (board, cam), frames in built.frames.items():
        assert report.cameras[f"{board}/{cam}"].frames == len(frames)
    assert report.events > 0


def test_a_copied_flight_with_changed_bytes_is_not_clean(tmp_path):
    built = build_download(tmp_path / "boards")
    ground = _as_downloaded(built.root / "rig-a", tmp_path / "ground" / "rig-a")
    index_path = ground / FLIGHT / "index.json"
    index = json.loads(index_path.read_text())
    assert verify(ground.parent).exit_code == 0  # same bytes, new mtimes: the sha256 says current
    entry = next(iter(index["cameras"].values()))["segments"][0]
    entry["sha256"] = "0" * 64  # what the board indexed is not what we hold
    index_path.write_text(json.dumps(index))
    report = verify(ground.parent)
    assert report.exit_code == 1 and str(index_path) in report.repairable


def test_cli_verify_of_a_folder_without_flights_is_a_one_line_error(tmp_path, camctl_cli):
    r = camctl_cli("verify", str(tmp_path))  # main() in this process: no Python start
    assert r.returncode == 2 and "no flight found" in r.stderr and "Traceback" not in r.stderr
    assert r.stderr.strip().count("\n") == 0
