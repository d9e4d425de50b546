"""The package's three zones, read from every module's imports (module level and inside functions).

The board (``camctl.board``) never imports the ground (``camctl.ground``) and the ground never
imports the board; what both speak (``camctl.common``) imports neither, nor the store; the store
imports neither zone; only ``camctl.store`` imports ``mcap``, and nothing outside it reaches into
its private modules; the doubles in ``camctl.testing`` are for the benchmarks and the tests, never
for a zone. ``cli``, ``demo`` and ``bench`` sit on top and may use everything. docs/architecture.md
says why.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import camctl

PKG = Path(camctl.__file__).parent
ZONES = ("board", "ground", "common", "store", "testing")
# zone -> the zones it must not import (the top of the package is no zone: it may import anything)
FORBIDDEN = {
    "board": {"ground", "testing"},
    "ground": {"board", "testing"},
    "common": {"board", "ground", "store", "testing"},
    "store": {"board", "ground", "testing"},
    "testing": {"ground"},
}
MCAP_NAMES = ("mcap", "mcap_protobuf")


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def zone_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "camctl" and parts[1] in ZONES else None


def imports_of(source: str, module: str, *, is_package: bool = False) -> list[tuple[int, str]]:
    """Every module ``source`` imports, anywhere (functions too), relative imports resolved."""
    out: list[tuple[int, str]] = []
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            out.extend((node.lineno, a.name) for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            out.append((node.lineno, base))
            # ``from camctl import board`` imports a zone as a name
            out.extend((node.lineno, f"{base}.{a.name}") for a in node.names if base == "camctl")
    return out


def violations(source: str, module: str, *, is_package: bool = False) -> list[str]:
    """What breaks the zone rules in one module's source (empty when it keeps them)."""
    zone = zone_of(module)
    bad = []
    for line, name in imports_of(source, module, is_package=is_package):
        target = zone_of(name)
        if zone is not None and target in FORBIDDEN[zone]:
            bad.append(f"{module}:{line}: the {zone} imports the {target} ({name})")
        if name.split(".")[0] in MCAP_NAMES and zone != "store":
            bad.append(f"{module}:{line}: only camctl.store reads or writes MCAP ({name})")
        if name.startswith("camctl.store._") and zone != "store":
            bad.append(f"{module}:{line}: {name} is the store's own; use its public modules")
    return bad


def package_modules() -> list[tuple[Path, str]]:
    return [(p, module_name(p, PKG)) for p in sorted(PKG.rglob("*.py"))]


def test_every_zone_exists_and_holds_modules() -> None:
    zones = {zone_of(m) for _, m in package_modules()}
    assert zones >= set(ZONES)


def test_no_module_crosses_a_zone_boundary() -> None:
    bad = []
    for path, module in package_modules():
        bad += violations(path.read_text("utf-8"), module, is_package=path.name == "__init__.py")
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize(("module", "source", "why"), [
    ("camctl.ground.views", "def f():\n    from camctl.board.daemon import Daemon\n",
     "the ground imports"),
    ("camctl.board.capture", "import camctl.ground.fetch\n", "the board imports the ground"),
    ("camctl.board.publish.server", "from ...ground import fetch\n",
     "the board imports the ground"),
    ("camctl.common.keys", "from camctl.store import verify\n", "the common imports the store"),
    ("camctl.common.frames", "from camctl import board\n", "the common imports the board"),
    ("camctl.store.writer", "from camctl.board.config import StoreConfig\n", "the store imports"),
    ("camctl.board.resume", "from mcap.reader import make_reader\n", "only camctl.store"),
    ("camctl.ground.export.foxglove", "import mcap.writer\n", "only camctl.store"),
    ("camctl.board.resume", "from camctl.store._records import X\n", "the store's own"),
    ("camctl.board.cameras.picamera2", "from camctl.testing import picamera2_double\n",
     "imports the testing"),
])
def test_the_rules_catch_a_crossing(module: str, source: str, why: str) -> None:
    assert any(why in v for v in violations(source, module)), violations(source, module)


def test_the_rules_allow_what_each_zone_may_use() -> None:
    assert violations("from camctl.common import protocol\nfrom camctl.exc import StoreError\n",
                      "camctl.store.writer") == []
    assert violations("from camctl.store import iter_frames\n", "camctl.ground.export.mp4") == []
    assert violations("from camctl.board.daemon import Daemon\nfrom camctl.ground import fetch\n",
                      "camctl.bench.trigger") == []
    assert violations("from . import sim\n", "camctl.board.cameras", is_package=True) == []


def test_loading_the_ground_loads_no_board_module() -> None:
    """The rule at run time: what ``camctl fetch`` imports on a laptop never pulls the board in."""
    code = ("import sys, camctl.ground, camctl.ground.views, camctl.ground.export, "
            "camctl.ground.firstlook; "
            "print('\\n'.join(sorted(m for m in sys.modules if m.startswith('camctl'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    loaded = out.split()
    assert "camctl.ground.download" in loaded
    assert not [m for m in loaded if m.startswith("camctl.board")]
