"""Bench figure ``store_vs_fdatasync``: FlightStore ingest against plain write()+fsync of the same bytes."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Any

from camctl.bench.harness import MB, Ctx, Figure, Metric


def bench_store(ctx: Ctx) -> dict[str, float]:
    """FlightStore ingest vs plain writes of the same JPEG bytes with the same number of fsyncs (unpaced)."""
    from camctl.config import StoreConfig
    from camctl.store import FlightStore

    n = 150 if ctx.quick else 600
    frames = ctx.frames(n)
    payload = sum(f.size for f in frames)
    fsyncs = [0]

    def counting_fsync(fd: int) -> None:
        fsyncs[0] += 1
        os.fsync(fd)

    cfg = StoreConfig(commit_interval_ms=200, queue_frames=n + 16, reserve_mb=0)
    store_times, base_times = [], []
    for _ in range(1 if ctx.quick else 2):
        fsyncs[0] = 0
        root = ctx.tmp / ctx.name("store-bench")
        st = FlightStore(root, "bench", "flight", cfg, cameras=["down", "up"], fsync=counting_fsync)
        try:
            t0 = time.perf_counter()
            for fr in frames:
                if not st.put(fr):
                    raise RuntimeError(f"FlightStore dropped frame {fr.camera}/{fr.seq} (queue_frames={n + 16})")
            st.commit(wait=True)
            store_times.append(time.perf_counter() - t0)
            n_fsync, commits = fsyncs[0], st.commits
        finally:
            st.close()
        shutil.rmtree(root, ignore_errors=True)
        base_times.append(_plain_writes(ctx.tmp / ctx.name("plain"), frames, n_fsync))
    ctx_note = (f"unpaced: {n} frames ({payload / MB:.0f} MB JPEG) queued at once, timed until commit(wait) "
                f"returned; {commits} group commits, {n_fsync} fsyncs, matched by the baseline; best of "
                f"{len(store_times)}: store {payload / min(store_times) / MB:.0f} MB/s, plain "
                f"{payload / min(base_times) / MB:.0f} MB/s")
    return {"store_vs_fdatasync": min(base_times) / min(store_times), "_note": ctx_note}  # type: ignore[dict-item]


def _plain_writes(d: Path, frames: list[Any], n_fsync: int) -> float:
    """Write each frame's JPEG to its camera's file, fsyncing both files evenly ``n_fsync`` times in total."""
    d.mkdir(parents=True)
    files: dict[str, Any] = {}
    cams = sorted({f.camera for f in frames})
    points = max(1, n_fsync // len(cams))
    every = max(1, len(frames) // points)
    done = 0
    t0 = time.perf_counter()
    for cam in cams:
        files[cam] = (d / f"{cam}.bin").open("wb", buffering=0)
    for i, fr in enumerate(frames, 1):
        files[fr.camera].write(fr.jpeg)
        if i % every == 0 and done + len(cams) <= n_fsync:
            for f in files.values():
                os.fsync(f.fileno())
            done += len(cams)
    while done < n_fsync:
        for f in files.values():
            if done < n_fsync:
                os.fsync(f.fileno())
                done += 1
    dt = time.perf_counter() - t0
    for f in files.values():
        f.close()
    shutil.rmtree(d, ignore_errors=True)
    return dt


FIGURE = Figure("store_vs_fdatasync", bench_store, (
    Metric("store_vs_fdatasync", "FlightStore ingest MB/s / plain write()+fsync of the same JPEG bytes, "
           "same fsync count", ">=", 0.9),
))
