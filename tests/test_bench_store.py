"""The store figure sees the store's commit cost (issue 27, defect 8): a store whose every fsync
takes 20 ms longer moves ``store_commit_p50_x`` far past its goal of 1.2, measured against the
baseline of the same run; with the real fsync the figure is a finite positive ratio.

Small scale (1.2 s of two cameras' frames a side, two interleaved rounds), real files with real
fsync under pytest's tmp dir. No wall-clock limit: only the effect of the injected delay against
the baseline measured beside it.
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path

from camctl.bench.store import FPS, CommitCosts, measure_commits
from camctl.common.frames import EncodedFrame

DELAY_S = 0.020
SECONDS = 1.2


def _frames() -> list[EncodedFrame]:
    """Two cameras at 30 fps for SECONDS, each frame the size of a 1080p JPEG (~250 KB)."""
    jpeg = os.urandom(250_000)
    n = int(SECONDS * FPS)
    return [EncodedFrame(camera=cam, seq=seq, timestamp_ns=10**9 + seq * 33_333_333, jpeg=jpeg,
                         width=1920, height=1080, phase="DESCENT")
            for seq in range(n) for cam in ("down", "up")]


def _slow_fsync(fd: int) -> None:
    time.sleep(DELAY_S)
    os.fsync(fd)


def _paired(c: CommitCosts) -> None:
    # every store commit has its baseline fsync at the same moment, over the same frames
    assert len(c.store_s) == len(c.plain_s) >= 2 * c.rounds, (c.store_s, c.plain_s)
    assert c.frames == 2 * int(SECONDS * FPS)


def test_a_store_slowed_by_20_ms_per_fsync_reads_far_past_the_goal(tmp_path: Path) -> None:
    c = measure_commits(tmp_path, _frames(), rounds=2, fsync=_slow_fsync)
    _paired(c)
    # each commit fsyncs both cameras' segments: >= 40 ms more than the same run's plain fsyncs
    # of the same bytes, which take a few ms on a disk; the old mean-latency figure read ~0.65
    # (1.5x in this direction) for the same store
    # (not p99: of ~12 commits a side it is the slowest, and one stall of the shared disk on the
    # baseline's side, 0.6 s seen here, turns it either way)
    assert c.ratio(0.5) > 2.0, (c.store_p(0.5), c.plain_p(0.5))


def test_the_real_store_reads_a_finite_positive_ratio(tmp_path: Path) -> None:
    c = measure_commits(tmp_path, _frames(), rounds=2)
    _paired(c)
    for q in (0.5, 0.99):
        assert math.isfinite(c.ratio(q)) and c.ratio(q) > 0, (q, c.store_s, c.plain_s)
    assert all(s > 0 for s in c.store_s + c.plain_s)
