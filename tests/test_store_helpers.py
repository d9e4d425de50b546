"""Shared helpers for the store tests (no tests here)."""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import simplejpeg

from camctl.frames import EncodedFrame, FrameValue


def jpeg(seed: int, w: int = 32, h: int = 24) -> bytes:
    rng = np.random.default_rng(seed)
    return simplejpeg.encode_jpeg(rng.integers(0, 255, (h, w, 3), dtype=np.uint8), quality=80)


def frame(camera: str, seq: int, *, value: int = FrameValue.DESCENT, phase: str = "DESCENT",
          still: bool = False, data: bytes | None = None) -> EncodedFrame:
    return EncodedFrame(camera=camera, seq=seq, timestamp_ns=1_000_000 * (seq + 1),
                        jpeg=data if data is not None else jpeg(seq * 7 + len(camera)), width=32, height=24,
                        phase=phase, value=int(value), still=still, meta={"note": f"n{seq}"})


@contextlib.contextmanager
def tmpfs(mnt: Path, size: str) -> Iterator[Path]:
    """A small real tmpfs at ``mnt`` (created) for full-disk tests; skips where mounting is not allowed
    (it needs root: CI runs as root). Unmounted on exit."""
    mnt.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        pytest.skip("needs root to mount a tmpfs")
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mnt)], capture_output=True,
                          text=True)
    if proc.returncode:
        pytest.skip(f"mount -t tmpfs not permitted: {proc.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], check=False)
