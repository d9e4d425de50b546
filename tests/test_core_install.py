"""camctl on a laptop with only the core installed (no ``ground`` extra), through the real CLI.

A ``sitecustomize`` on PYTHONPATH puts a meta-path finder first that makes ``import av``, ``PIL``,
``matplotlib`` and ``aiohttp`` raise ModuleNotFoundError, as on an install without them. A sim
board runs in that environment, flies and lands; then the ground commands that draw (export's
MP4, contact sheet and timeline, ``fetch --first-look``) must say in one line which module is
missing and how to install it (exit 2), before touching any stored data, while the board, its
commands, ``status``, ``fetch``, ``ls``, ``verify`` and export's plain JPEGs still work.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from waiting import wait_for

import camctl
from camctl.demo import start_board, write_board_config
from camctl.ground import Client

BLOCKER = '''\
"""Test double of a core install: the ground extra's modules cannot be imported."""
import sys

_BLOCKED = {"av", "PIL", "matplotlib", "aiohttp"}


class _NoGroundExtra:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in _BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


sys.meta_path.insert(0, _NoGroundExtra())
'''
HINT = "pip install 'camctl[ground]'"


class Core:
    """The core-install environment, its board and the folder a plain ``fetch`` downloaded."""

    def __init__(self, root: Path) -> None:
        self.root = root
        blocker = root / "core-site"
        blocker.mkdir()
        (blocker / "sitecustomize.py").write_text(BLOCKER)
        tree = Path(camctl.__file__).resolve().parents[1]
        self.env = {**os.environ, "PYTHONPATH": f"{blocker}{os.pathsep}{tree}"}
        self.router = ""
        self.download = root / "dl"

    def run(self, *argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "camctl", *argv], env=self.env,
                              capture_output=True, text=True, timeout=120)


def _tree(root: Path) -> dict[str, tuple[int, int]]:
    """Every path under ``root`` with its size and mtime: what "no stored data touched" compares."""
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(root.rglob("*"))}


@pytest.fixture(scope="module")
def core(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Core]:
    env = Core(tmp_path_factory.mktemp("core"))
    for module in ("av", "PIL", "matplotlib", "aiohttp"):  # the double does block them
        r = subprocess.run([sys.executable, "-c", f"import {module}"], env=env.env,
                           capture_output=True, text=True)
        assert r.returncode != 0 and "ModuleNotFoundError" in r.stderr, (module, r.stderr)
    cfg = write_board_config(env.root / "core-a", "core-a", 0, size=(320, 240),
                             post_touchdown_s=0.2, reserve_mb=0)
    # the board daemon itself runs on the core install
    board = start_board(cfg, env.root / "core-a" / "store", "core-a", env=env.env)
    try:
        env.router = board.router
        for argv in (["arm"], ["event", "release"], ["event", "touchdown"]):
            r = env.run(*argv, "--connect", board.router)
            assert r.returncode == 0, r.stderr
        with Client(board.router, timeout_s=10) as c:
            wait_for(lambda: (s := c.status())["phase"] == "LANDED" and s["serving"],
                     "core-a to land")
        r = env.run("fetch", "--connect", board.router, "--out", str(env.download), "--quiet")
        assert r.returncode == 0, r.stdout + r.stderr
        yield env
    finally:
        board.stop()


def test_the_board_and_the_data_commands_work_without_the_ground_extra(core: Core) -> None:
    assert list(core.download.glob("core-a/*/down/*.mcap")), "fetch downloaded no segment"
    for argv in (["config", "check", str(core.root / "core-a" / "rig.toml")],
                 ["status", "--connect", core.router],
                 ["ls", str(core.download)],
                 ["verify", str(core.download), "--quiet"],
                 ["export", str(core.download), "--frames", "--foxglove", "--quiet",
                  "--out", str(core.root / "plain")]):
        r = core.run(*argv)
        assert r.returncode == 0, (argv, r.stdout, r.stderr)
        assert "Traceback" not in r.stderr, (argv, r.stderr)
    assert list((core.root / "plain").rglob("*.jpg")), "export --frames wrote no JPEG"


@pytest.mark.parametrize(("argv", "missing"), [
    (["export", "{dl}"], "av, PIL, matplotlib"),
    (["export", "{dl}", "--mp4"], "av"),
    (["export", "{dl}", "--contact-sheet"], "PIL"),
    (["export", "{dl}", "--timeline"], "matplotlib"),
    (["export", "{dl}", "--timeline", "--out", "{root}/elsewhere"], "matplotlib"),
    (["fetch", "--connect", "{url}", "--out", "{root}/look", "--first-look"], "PIL"),
    (["mission", "--connect", "{url}", "--out", "{root}/mission"], "aiohttp"),
], ids=["export", "mp4", "contact-sheet", "timeline", "timeline-out", "first-look", "mission"])
def test_a_drawing_command_names_the_ground_extra_in_one_line_and_touches_nothing(
        core: Core, argv: list[str], missing: str) -> None:
    argv = [a.format(dl=core.download, root=core.root, url=core.router) for a in argv]
    before = _tree(core.download), sorted(os.listdir(core.root))
    r = core.run(*argv)
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    assert HINT in lines[0] and lines[0].endswith(f"cannot import {missing}"), lines[0]
    assert lines[0].startswith(f"camctl: error: camctl {argv[0]}"), lines[0]
    # nothing written, moved or deleted: the download as it was, no export folder (DIR/export
    # or --out), no first-look folder
    assert (_tree(core.download), sorted(os.listdir(core.root))) == before


def test_a_ground_import_no_command_checked_for_is_still_one_line(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    """The CLI's last guard: a command that imports a ground module late (not checked up front)
    still ends in one line and exit 2; any other ImportError is a bug and keeps its traceback."""
    import camctl.ground.export as export
    from camctl.cli import main

    def late_import(_args: object) -> int:
        raise ModuleNotFoundError("No module named 'matplotlib.pyplot'", name="matplotlib.pyplot")

    monkeypatch.setattr(export, "export_main", late_import)
    assert main(["export", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err == (f"camctl: error: camctl export needs the ground extra ({HINT}): "
                   "cannot import matplotlib\n")

    def bug(_args: object) -> int:
        raise ModuleNotFoundError("No module named 'camctl.nothing'", name="camctl.nothing")

    monkeypatch.setattr(export, "export_main", bug)
    with pytest.raises(ModuleNotFoundError):
        main(["export", str(tmp_path)])
