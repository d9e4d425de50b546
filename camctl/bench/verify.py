"""Bench figure ``verify``: ``camctl verify`` scan rate against a plain read() of the same files,
cold and warm."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from camctl.bench.harness import MB, Ctx, Figure, Metric


def _plain_read(files: list[Path]) -> int:
    n = 0
    for p in files:
        with p.open("rb", buffering=0) as f:
            while block := f.read(1 << 20):
                n += len(block)
    return n


def _evict(files: list[Path]) -> None:
    """Drop the files from the page cache (fsync first: only clean pages go), so the next read is
    cold."""
    for p in files:
        fd = os.open(p, os.O_RDONLY)
        try:
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def bench_verify(ctx: Ctx) -> dict[str, Any]:
    """verify vs plain read() of the same flight, both cold (evicted before each run) and both
    warm."""
    from camctl.store import verify

    mb = 40 if ctx.quick else 200
    root = ctx.flight(ctx.frames_for_mb(mb))
    flight = root / f"F{ctx.frames_for_mb(mb)}"
    files = [p for p in sorted(flight.rglob("*")) if p.is_file()]
    nbytes = sum(p.stat().st_size for p in files)

    def timed_verify() -> float:
        t0 = time.perf_counter()
        report = verify(flight)
        dt = time.perf_counter() - t0
        if report.exit_code != 0:
            raise RuntimeError(f"verify of the bench flight exited {report.exit_code}")
        return dt

    def timed_read() -> float:
        t0 = time.perf_counter()
        if _plain_read(files) != nbytes:
            raise RuntimeError("plain read of the bench flight came up short")
        return time.perf_counter() - t0

    cold_v, cold_r, warm_v, warm_r = [], [], [], []
    for _ in range(1 if ctx.quick else 2):
        _evict(files)
        cold_v.append(timed_verify())
        warm_v.append(timed_verify())
        _evict(files)
        cold_r.append(timed_read())
        warm_r.append(timed_read())
    v, r = nbytes / min(cold_v) / MB, nbytes / min(cold_r) / MB
    vw, rw = nbytes / min(warm_v) / MB, nbytes / min(warm_r) / MB
    return {"verify_mb_s": v, "verify_vs_read": v / r, "verify_mb_s_warm": vw, "read_mb_s_warm": rw,
            "_note": f"{nbytes / MB:.0f} MB in {len(files)} files, best of {len(cold_v)}; "
                     "cold (fsync + posix_fadvise DONTNEED before each run): "
                     f"verify {v:.0f} MB/s, plain read {r:.0f} MB/s; "
                     f"warm (page cache): verify {vw:.0f} MB/s, plain read {rw:.0f} MB/s"}


FIGURE = Figure("verify", bench_verify, (
    Metric("verify_mb_s", "camctl.store.verify scan rate of a stored flight, "
           "cold (evicted from the page cache)", unit="MB/s"),
    Metric("verify_vs_read", "verify MB/s / plain read() MB/s of the same files, both cold",
           ">=", 0.5),
    Metric("verify_mb_s_warm", "verify scan rate with the files in the page cache", unit="MB/s"),
    Metric("read_mb_s_warm", "plain read() of the same files from the page cache (memory speed)",
           unit="MB/s"),
))
