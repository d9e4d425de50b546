"""Bench figures ``store_vs_fdatasync`` and ``commit_p99_ms``: FlightStore ingest at the real pace
of two 1080p cameras at 30 fps, against plain ``write()`` of the same bytes with ``fsync`` at the
same cadence.

Frames arrive on a schedule (each camera every 1/30 s, 11 s, 3 s with --quick), not all at once:
that is what a board sees, and it is where a group commit either keeps frame latency low or does
not. Both sides get the same frames at the same moments. For each frame the time from its arrival to
the return of the fsync that made it durable is taken; the figure is the baseline's mean latency
over the store's (>= 0.9: the store's machinery costs at most ~10% more time-to-durable than bare
writes). ``commit_p99_ms`` is the 99th percentile of the store's group commits, from closing the
chunks to the last fsync returning (:attr:`FlightStore.commit_log`).
"""

from __future__ import annotations

import os
import shutil
import time
from bisect import bisect_left
from pathlib import Path
from typing import Any

from camctl.bench.harness import MB, Ctx, Figure, Metric

FPS = 30.0
INTERVAL_MS = 200  # the store's default commit_interval_ms; the baseline fsyncs at the same cadence


def _schedule(ctx: Ctx, seconds: float) -> list[tuple[float, Any]]:
    """(arrival offset s, frame) for two cameras at FPS, in arrival order."""
    n = int(seconds * FPS) * 2
    return [(fr.seq / FPS + (0.5 / FPS if fr.camera == "up" else 0.0), fr) for fr in ctx.frames(n)]


def _wait_until(t: float) -> None:
    while (dt := t - time.monotonic()) > 0:
        time.sleep(min(dt, 0.01))


def _paced_store(root: Path,
                 schedule: list[tuple[float, Any]]) -> tuple[list[float], list[float], int]:
    """Feed a FlightStore on the schedule; (frame latencies s, commit durations s, commits)."""
    from camctl.board.config import StoreConfig
    from camctl.store import FlightStore

    cfg = StoreConfig(commit_interval_ms=INTERVAL_MS, queue_frames=len(schedule) + 16, reserve_mb=0)
    st = FlightStore(root, "bench", "flight", cfg, cameras=["down", "up"])
    arrivals = []
    try:
        t0 = time.monotonic() + 0.1
        for at, fr in schedule:
            _wait_until(t0 + at)
            arrivals.append(time.monotonic())
            if not st.put(fr):
                raise RuntimeError(f"FlightStore dropped frame {fr.camera}/{fr.seq}")
        st.commit(wait=True)
        log = list(st.commit_log)
        commits = st.commits
        stats = st.stats()
    finally:
        st.close()
    if sum(s["durable_frames"] for s in stats.values()) != len(schedule):
        raise RuntimeError(f"the store made {stats} durable of {len(schedule)} frames")
    starts = [s for s, _ in log]
    # a frame is durable at the end of the first commit that started after it arrived
    lat = [log[i][1] - a for a in arrivals if (i := bisect_left(starts, a)) < len(log)]
    if len(lat) != len(arrivals):
        raise RuntimeError("a frame arrived after the last commit started")
    return lat, [e - s for s, e in log], commits


def _paced_plain(d: Path, schedule: list[tuple[float, Any]]) -> tuple[list[float], list[float]]:
    """The same frames written to one file per camera as they arrive, both fsync'd every
    INTERVAL_MS."""
    d.mkdir(parents=True)
    files = {cam: (d / f"{cam}.bin").open("wb", buffering=0) for cam in ("down", "up")}
    lat, fsyncs, pending = [], [], []
    try:
        t0 = time.monotonic() + 0.1
        next_sync = t0 + INTERVAL_MS / 1000
        for at, fr in [*schedule, (None, None)]:
            due = None if at is None else t0 + at
            # commits due before the next frame (and a last one)
            while due is None or next_sync <= due:
                _wait_until(next_sync) if due is not None else None
                s = time.monotonic()
                for f in files.values():
                    os.fsync(f.fileno())
                e = time.monotonic()
                fsyncs.append(e - s)
                lat += [e - a for a in pending]
                pending = []
                next_sync += INTERVAL_MS / 1000
                if due is None:
                    break
            if due is None:
                break
            _wait_until(due)
            pending.append(time.monotonic())
            files[fr.camera].write(fr.jpeg)
    finally:
        for f in files.values():
            f.close()
        shutil.rmtree(d, ignore_errors=True)
    return lat, fsyncs


def _pct(values: list[float], q: float) -> float:
    v = sorted(values)
    return v[min(len(v) - 1, int(q * len(v)))]


def bench_store(ctx: Ctx) -> dict[str, Any]:
    seconds = 3.0 if ctx.quick else 11.0  # >= 50 group commits at 200 ms
    schedule = _schedule(ctx, seconds)
    payload = sum(fr.size for _, fr in schedule)
    root = ctx.tmp / ctx.name("store-bench")
    store_lat, commits_s, commits = _paced_store(root, schedule)
    shutil.rmtree(root, ignore_errors=True)
    plain_lat, fsyncs_s = _paced_plain(ctx.tmp / ctx.name("plain"), schedule)
    mean_store, mean_plain = sum(store_lat) / len(store_lat), sum(plain_lat) / len(plain_lat)
    return {
        "store_vs_fdatasync": mean_plain / mean_store,
        "commit_p99_ms": _pct(commits_s, 0.99) * 1e3,
        "_note": f"paced: 2 cameras x {FPS:g} fps of 1080p JPEG for {seconds:g} s "
                 f"({len(schedule)} frames, {payload / MB / seconds:.1f} MB/s); "
                 f"arrival to durable, mean: store {mean_store * 1e3:.0f} ms, "
                 f"plain write()+fsync every {INTERVAL_MS} ms {mean_plain * 1e3:.0f} ms; p99 store "
                 f"{_pct(store_lat, 0.99) * 1e3:.0f} ms, "
                 f"plain {_pct(plain_lat, 0.99) * 1e3:.0f} ms; {commits} group commits, "
                 f"p50/p99 {_pct(commits_s, 0.5) * 1e3:.1f}/{_pct(commits_s, 0.99) * 1e3:.1f} ms "
                 f"(plain fsync pair p99 {_pct(fsyncs_s, 0.99) * 1e3:.1f} ms)",
    }


FIGURE = Figure("store_vs_fdatasync", bench_store, (
    Metric("store_vs_fdatasync", "paced 2x1080p@30 fps: plain write()+fsync mean "
           "arrival-to-durable / FlightStore's, same bytes, same 200 ms cadence", ">=", 0.9),
    Metric("commit_p99_ms", "99th percentile FlightStore group commit, "
           "chunk close to last fsync return, paced 2x1080p@30 fps", "<", 100.0, "ms"),
))
