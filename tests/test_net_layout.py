"""Module boundaries of the network layer: the ground side loads no board module, and the board side reads
MCAP only through camctl.store's reader (one MCAP reader in the project)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import camctl

PKG = Path(camctl.__file__).parent
BOARD_MODULES = ("camctl.publish", "camctl.daemon", "camctl.capture", "camctl.gpio", "camctl.events",
                 "camctl.encode", "camctl.cameras", "camctl.store.writer")


def test_ground_imports_no_board_module() -> None:
    code = ("import sys, camctl.ground, camctl.ground.client, camctl.ground.download, camctl.ground.fetch; "
            "print('\\n'.join(sorted(m for m in sys.modules if m.startswith('camctl'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    loaded = out.split()
    assert "camctl.ground.download" in loaded
    bad = [m for m in loaded if m.startswith(BOARD_MODULES)]
    assert not bad, f"the ground side pulled in board modules: {bad}"


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text("utf-8"))):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_publish_reads_mcap_only_through_the_store_reader() -> None:
    files = sorted((PKG / "publish").glob("*.py"))
    assert {f.name for f in files} >= {"catalog.py", "previews.py", "server.py"}
    for f in files:
        mcap = {m for m in _imports(f) if m == "mcap" or m.startswith(("mcap.", "mcap_protobuf"))}
        assert not mcap, f"{f.name} reads MCAP itself ({mcap}); use camctl.store.reader"
        assert not {m for m in _imports(f) if m.startswith("camctl.store._")}, f"{f.name} uses store internals"
    assert "camctl.store.reader" in _imports(PKG / "publish" / "catalog.py")
    assert "camctl.store.reader" in _imports(PKG / "publish" / "previews.py")
