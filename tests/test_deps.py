"""The board needs nothing from the ``ground`` extra (PyAV, Pillow, matplotlib): the split holds.

1. Importing every module of the ``camctl run`` path in a fresh interpreter loads none of them.
2. A real ``camctl run`` board flies a flight and serves previews to a ground fetch while an import
   hook in the board process refuses those packages; at exit it reports every attempt and what got
   loaded.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import tomllib
from pathlib import Path

from waiting import wait_for

from camctl.demo import start_board, write_board_config
from camctl.ground import Client, fetch

ROOT = Path(__file__).resolve().parent.parent
# the ground extra's import names (pyproject: av, pillow, matplotlib)
GROUND = ("av", "PIL", "matplotlib")
BOARD_MODULES = (
    "camctl.cli", "camctl.board.daemon", "camctl.board.capture", "camctl.store",
    "camctl.board.publish", "camctl.board.cameras", "camctl.board.cameras.sim", "camctl.board.gpio",
    "camctl.board.config",
    "camctl.board.events", "camctl.board.encode", "camctl.board.sdnotify", "camctl.board.doctor",
)

_HOOK = '''
import atexit, json, os, sys
BLOCKED = set(os.environ["CAMCTL_BLOCKED"].split(","))
attempts = []
class _Refuse:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            attempts.append(name)
            raise ImportError(f"{name} is a ground library: the board must not import it")
        return None
sys.meta_path.insert(0, _Refuse())
def _report():
    loaded = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
    with open(os.environ["CAMCTL_IMPORT_REPORT"], "w") as f:
        json.dump({"attempts": attempts, "loaded": loaded}, f)
atexit.register(_report)
'''


def test_pyproject_puts_ground_libraries_in_the_ground_extra() -> None:
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = {d.split(">")[0].split("=")[0].split("[")[0].strip().lower()
             for d in meta["dependencies"]}
    assert not names & {"av", "pillow", "matplotlib"}, names
    ground = {d.split(">")[0].strip().lower() for d in meta["optional-dependencies"]["ground"]}
    assert {"av", "pillow", "matplotlib"} <= ground
    assert "camctl[ground]" in meta["optional-dependencies"]["dev"]


def test_board_modules_import_no_ground_library() -> None:
    code = (f"import sys\nimport {', '.join(BOARD_MODULES)}\n"
            f"print(sorted(m for m in sys.modules if m.split('.')[0] in {GROUND!r}))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_a_board_flight_with_previews_needs_no_ground_library(tmp_path: Path) -> None:
    hook_dir = tmp_path / "hook"
    hook_dir.mkdir()
    (hook_dir / "sitecustomize.py").write_text(_HOOK)
    report = tmp_path / "imports.json"
    cfg = write_board_config(tmp_path / "board", "deps-board", 0, size=(320, 240),
                             post_touchdown_s=0.2, reserve_mb=0, stills=("touchdown",))
    env = {"PYTHONPATH": os.pathsep.join([str(hook_dir), str(ROOT)]),
           "CAMCTL_BLOCKED": ",".join(GROUND), "CAMCTL_IMPORT_REPORT": str(report)}
    board = start_board(cfg, tmp_path / "board" / "store", "deps-board", env=env)
    try:
        with Client(board.router, timeout_s=10) as c:
            c.command("arm")
            time.sleep(0.5)  # the phases' lengths: frames in each (the scenario, not a wait)
            c.command("event", name="release")
            time.sleep(0.5)
            c.command("event", name="touchdown")
            wait_for(lambda: (s := c.status())["phase"] == "LANDED" and s["serving"],
                     "the board to land")
        res = fetch([board.router], tmp_path / "ground", give_up_after_s=20, thumbs_only=True,
                    progress=False)
        # previews made on the board
        assert res.ok and sum(b.thumbs for b in res.boards) > 0, res.summary()
    finally:
        rc = board.stop()
    assert rc == 0, board.log_path.read_text()[-2000:]
    got = json.loads(report.read_text())
    assert got == {"attempts": [], "loaded": []}, got
