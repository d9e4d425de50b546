"""Shared helpers for the store tests (no tests here)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import simplejpeg

from camctl.common.frames import EncodedFrame, FrameValue


def jpeg(seed: int, w: int = 32, h: int = 24) -> bytes:
    rng = np.random.default_rng(seed)
    return simplejpeg.encode_jpeg(rng.integers(0, 255, (h, w, 3), dtype=np.uint8), quality=80)


def frame(camera: str, seq: int, *, value: int = FrameValue.DESCENT, phase: str = "DESCENT",
          still: bool = False, data: bytes | None = None) -> EncodedFrame:
    return EncodedFrame(camera=camera, seq=seq, timestamp_ns=1_000_000 * (seq + 1),
                        jpeg=data if data is not None else jpeg(seq * 7 + len(camera)),
                        width=32, height=24, phase=phase, value=int(value), still=still,
                        meta={"note": f"n{seq}"})


@contextlib.contextmanager
def tmpfs(mnt: Path, size: str) -> Iterator[Path]:
    """A small real tmpfs at ``mnt`` (created) for full-disk tests; skips where mounting is not
    allowed (it needs root: CI runs as root). Unmounted on exit."""
    mnt.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        pytest.skip("needs root to mount a tmpfs")
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mnt)],
                          capture_output=True, text=True)
    if proc.returncode:
        pytest.skip(f"mount -t tmpfs not permitted: {proc.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], check=False)


_JS = Path(__file__).parent / "js"


def js_reader_missing() -> str:
    """Why @mcap/core cannot run here ("" when it can)."""
    if shutil.which("node") is None or not (_JS / "node_modules" / "@mcap" / "core").is_dir():
        return "needs node and `npm ci --prefix tests/js` (.ci/run installs both)"
    return ""


def indexed_read(paths: list[Path]) -> dict[str, dict]:
    """Each file read by @mcap/core's McapIndexedReader (Foxglove's reader, through node): path ->
    {topic: [sequence, ...]} or {"error": text}. Needs node and ``npm ci --prefix tests/js``
    (.ci/run does both)."""
    why = js_reader_missing()
    if why:
        pytest.skip(why)
    cmd = [shutil.which("node") or "node", str(_JS / "mcap_indexed_read.mjs"), *map(str, paths)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=True)
    out = {}
    for line in proc.stdout.splitlines():
        rec = json.loads(line)
        out[rec["path"]] = {"error": rec["error"]} if "error" in rec else rec["topics"]
    return out


def read_with_mcap_core(script: Path, files: list[Path]) -> dict[str, dict]:
    """Run a node ``script`` (the ``mcap_core`` fixture's) over ``files``: its JSON output."""
    proc = subprocess.run(["node", str(script), *map(str, files)], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def printed_summary(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
                    name: str) -> Iterator[list[str]]:
    """A module fixture's body: the lines the tests append, written to ``<basetemp>/<name>`` and
    printed past pytest's capture at the end (the power-cut and ordering suites' figures)."""
    lines: list[str] = []
    yield lines
    path = tmp_path_factory.getbasetemp() / name
    path.write_text("\n".join(lines) + "\n")
    capman = request.config.pluginmanager.getplugin("capturemanager")
    with capman.global_and_fixture_disabled():
        for line in lines:
            print("\n" + line, end="")
        print(f"\n({name.removesuffix('.txt').replace('-', ' ')} in {path})")
