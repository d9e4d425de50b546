"""Bench figures ``store_commit_p50_x``, ``store_commit_p99_x`` and ``commit_p99_ms``: what a
FlightStore group commit costs against a plain ``write()`` + ``fsync`` of the same bytes at the
same moments (issue 27).

Frames arrive on a schedule, as on a board: two 1080p cameras at 30 fps, each frame written when
it arrives, by both sides. Per commit interval, the store's cost is its group commit
(:attr:`FlightStore.commit_log`: closing the chunks to the last fsync returning); the baseline's is
the ``fsync`` of its one file per camera, each in a dir of its own as the store's segments are
(and, the first time, of those dirs, as any writer that wants a new file durable must), taken at
the very moments the store committed in its run, so each of its fsyncs makes the same frames'
bytes durable as the store's commit did. The figures are the store's p50 and p99 commit time over
the baseline's (lower is better, goal <= 1.2): what the store's machinery (chunk close, message
indexes, header rewrite) adds to the fsyncs that any durable writer pays. ``commit_p99_ms`` is
the store's own p99 commit. With ~55 commits a side, p99 is the slowest commit of each side: one
stall of the disk moves it.

The old figure (``store_vs_fdatasync``, mean arrival-to-durable latency) was mostly the ~100 ms a
frame waits for the next commit, the same on both sides: 20 ms injected into every store fsync
(commit p50 3.6 -> 45 ms) moved it only from 1.07 to 0.67. This one reads 8.8-11x for it.

Interleaved: the run is ``rounds`` short rounds, each a store run (A) then a baseline run (B)
replaying A's commit moments, in this process, one after the other (A/B/A/B...), so a machine
that gets busy or quiet for a while weighs on both sides alike. Each run's files are deleted
before the next starts. Both sides write every frame as it arrives; those writes (the store's on
its writer thread, the baseline's ``write()`` calls) are outside the compared times on both sides
(the note gives the baseline's).
"""

from __future__ import annotations

import os
import shutil
import time
from bisect import bisect_right
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from camctl.bench.harness import MB, Ctx, Figure, Metric

__all__ = ["FIGURE", "CommitCosts", "bench_store", "measure_commits"]

FPS = 30.0
INTERVAL_MS = 200  # the store's default commit_interval_ms; the baseline syncs at its moments
CAMERAS = ("down", "up")


@dataclass(frozen=True)
class CommitCosts:
    """Per commit interval durations (s) of both sides, pooled over the interleaved rounds."""

    store_s: list[float]  # FlightStore group commits: chunk close to the last fsync returning
    plain_s: list[float]  # the baseline's fsync of each camera file (and its dir the first time)
    plain_write_s: list[float]  # the baseline's write() time per interval (informative)
    rounds: int
    seconds: float  # per round and side
    frames: int  # per round and side
    payload: int  # bytes per round and side

    def store_p(self, q: float) -> float:
        return pct(self.store_s, q)

    def plain_p(self, q: float) -> float:
        return pct(self.plain_s, q)

    def ratio(self, q: float) -> float:
        """The store's q-quantile commit time over the baseline's (> 1: the store costs more)."""
        return self.store_p(q) / self.plain_p(q)


def pct(values: Sequence[float], q: float) -> float:
    """The q-quantile of ``values`` (nearest rank from below; 0.99 of 55 values is the largest)."""
    v = sorted(values)
    if not v:
        raise ValueError("no values to take a percentile of")
    return v[min(len(v) - 1, int(q * len(v)))]


def schedule(frames: Sequence[Any]) -> list[tuple[float, Any]]:
    """(arrival offset s, frame) for frames of two cameras at FPS (``up`` half a period after
    ``down``), in arrival order."""
    timed = [(fr.seq / FPS + (0.5 / FPS if fr.camera == "up" else 0.0), fr) for fr in frames]
    return sorted(timed, key=lambda t: t[0])


def _wait_until(t: float) -> None:
    while (dt := t - time.monotonic()) > 0:
        time.sleep(min(dt, 0.01))


def _store_run(root: Path, sched: list[tuple[float, Any]],
               fsync: Callable[[int], None] | None) -> tuple[list[float], list[float]]:
    """Feed a new FlightStore on the schedule; (its commit durations s, their start offsets s from
    the schedule's zero)."""
    from camctl.board.config import StoreConfig
    from camctl.store import FlightStore

    cfg = StoreConfig(commit_interval_ms=INTERVAL_MS, queue_frames=len(sched) + 16, reserve_mb=0)
    st = FlightStore(root, "bench", "flight", cfg, cameras=list(CAMERAS), fsync=fsync)
    try:
        t0 = time.monotonic() + 0.1
        for at, fr in sched:
            _wait_until(t0 + at)
            if not st.put(fr):
                raise RuntimeError(f"FlightStore dropped frame {fr.camera}/{fr.seq}")
        _wait_until(t0 + sched[-1][0] + INTERVAL_MS / 1000)  # the last interval, on its cadence
        st.commit(wait=True)
        log = [(s, e) for s, e in st.commit_log if s >= t0]
        stats = st.stats()
    finally:
        st.close()
    durable = sum(s["durable_frames"] for s in stats.values())
    if durable != len(sched):
        raise RuntimeError(f"the store made {durable} of {len(sched)} frames durable: {stats}")
    return [e - s for s, e in log], [s - t0 for s, _ in log]


def _plain_run(d: Path, sched: list[tuple[float, Any]],
               moments: list[float]) -> tuple[list[float], list[float]]:
    """The same frames written to one file per camera (each in its own dir) as they arrive, every
    file fsync'd at each of ``moments`` (offsets s; their dirs too at the first); (fsync durations
    s, write() time s per interval)."""
    from camctl.common.fsutil import fsync_dir

    for cam in CAMERAS:  # a dir per camera, as the store lays its segments out
        (d / cam).mkdir(parents=True)
    files = {cam: (d / cam / "frames.bin").open("xb", buffering=0) for cam in CAMERAS}
    syncs: list[float] = []
    writes: list[float] = []
    written = 0.0
    # the frames due before each moment, as in the store's run: a frame that came while a
    # commit was starting went to the next one there too
    arrivals = [at for at, _ in sched]
    cut = [bisect_right(arrivals, m) for m in moments]
    try:
        t0 = time.monotonic() + 0.1
        i = 0
        for k, m in enumerate(moments):
            for at, fr in sched[i:max(i, cut[k])]:
                _wait_until(t0 + at)
                s = time.monotonic()
                files[fr.camera].write(fr.jpeg)
                written += time.monotonic() - s
            i = max(i, cut[k])
            _wait_until(t0 + m)
            s = time.monotonic()
            for f in files.values():
                os.fsync(f.fileno())
            if k == 0:  # the new files' names, as the store's first commit of a segment does
                for cam in CAMERAS:
                    fsync_dir(d / cam)
            syncs.append(time.monotonic() - s)
            writes.append(written)
            written = 0.0
        if i < len(sched):
            raise RuntimeError(f"{len(sched) - i} frames came after the store's last commit")
    finally:
        for f in files.values():
            f.close()
    return syncs, writes


def measure_commits(tmp: Path, frames: Sequence[Any], *, rounds: int,
                    fsync: Callable[[int], None] | None = None) -> CommitCosts:
    """Interleaved rounds of a FlightStore run and a plain write()+fsync run of ``frames`` (two
    cameras' EncodedFrames, seqs from 0) on their 30 fps schedule, under ``tmp``. ``fsync``
    replaces ``os.fsync`` for the store's segment commits (tests slow it down)."""
    sched = schedule(frames)
    store_s: list[float] = []
    plain_s: list[float] = []
    plain_write_s: list[float] = []
    for r in range(rounds):
        root = tmp / f"store-round-{r}"
        durations, moments = _store_run(root, sched, fsync)
        shutil.rmtree(root, ignore_errors=True)
        store_s += durations
        plain = tmp / f"plain-round-{r}"
        try:
            syncs, writes = _plain_run(plain, sched, moments)
        finally:
            shutil.rmtree(plain, ignore_errors=True)
        plain_s += syncs
        plain_write_s += writes
    return CommitCosts(store_s, plain_s, plain_write_s, rounds, sched[-1][0] + 1 / FPS,
                       len(sched), sum(fr.size for fr in frames))


def bench_store(ctx: Ctx) -> dict[str, Any]:
    # >= 50 group commits a side at 200 ms (15 with --quick), in rounds as long as before in all
    rounds, seconds = (2, 1.5) if ctx.quick else (4, 2.75)
    c = measure_commits(ctx.tmp / ctx.name("store-bench"), ctx.frames(int(seconds * FPS) * 2),
                        rounds=rounds)
    ms = 1e3
    return {
        "store_commit_p50_x": c.ratio(0.5),
        "store_commit_p99_x": c.ratio(0.99),
        "commit_p99_ms": c.store_p(0.99) * ms,
        "_note": f"paced: 2 cameras x {FPS:g} fps of 1080p JPEG "
                 f"({c.payload / MB / c.seconds:.1f} MB/s), {c.rounds} interleaved rounds of "
                 f"{c.seconds:.1f} s a side (store, then plain at the store's commit moments); "
                 f"{len(c.store_s)} store group commits p50/p99 "
                 f"{c.store_p(0.5) * ms:.2f}/{c.store_p(0.99) * ms:.2f} ms, "
                 f"plain fsync of the same bytes p50/p99 "
                 f"{c.plain_p(0.5) * ms:.2f}/{c.plain_p(0.99) * ms:.2f} ms "
                 f"(its write() calls per interval p50 {pct(c.plain_write_s, 0.5) * ms:.2f} ms, "
                 f"not counted on either side)",
    }


FIGURE = Figure("store_commit", bench_store, (
    Metric("store_commit_p50_x", "paced 2x1080p@30 fps: median FlightStore group commit / plain "
           "fsync of the same bytes at the same moments (one file per camera), interleaved "
           "rounds; lower is better", "<=", 1.2),
    Metric("store_commit_p99_x", "the same, 99th percentile / 99th percentile", "<=", 1.2),
    Metric("commit_p99_ms", "99th percentile FlightStore group commit, "
           "chunk close to last fsync return, paced 2x1080p@30 fps", "<", 100.0, "ms"),
))
