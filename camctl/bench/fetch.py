"""Bench figure ``fetch_vs_raw_zmq``: ``camctl fetch`` against the ZeroMQ Guide's bare fileio3
credit loop, in interleaved rounds.

Both sides move the same files of one stored flight over TCP on loopback from a server in a child
process, with the same chunk (256 KiB) and window (8), into the same disk with an fsync per file,
and each is checked (fetch: every listed file fetched, its sha256 matched; raw: every file's size
and sha256 against the flight's). One round is one run of each side, the order alternating (AB, BA,
AB, ...), so a slow spell of a shared machine lands on both sides of a round; the figure is the
median of the per-round ratios, the note gives their spread.
"""

from __future__ import annotations

import os
import shutil
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from camctl.bench.harness import MB, Ctx, Figure, Metric
from camctl.store.reserve import RESERVE_NAME

CHUNK = 256 * 1024  # bytes per request, both sides
WINDOW = 8  # requests in flight, both sides
MB_FULL = 200  # MB a round, each side (about 0.3 s on the bench machine unloaded)
ROUNDS = 10  # at most, each side first in half of them
MIN_ROUNDS = 6
BUDGET_S = 14.0  # for the rounds: past it, no new pair of rounds is started


def _files_of(root: Path) -> list[tuple[str, int]]:
    # the board's own files are not served: daemon.json and the store's full-disk reserve
    return [(p.relative_to(root).as_posix(), p.stat().st_size) for p in sorted(root.rglob("*"))
            if p.is_file() and p.name not in ("daemon.json", RESERVE_NAME)]


def _raw_name(rel: str) -> str:
    return rel.replace("/", "_")


def _raw_fetch(url: str, files: list[tuple[str, int]], out: Path, *, chunk: int,
               window: int) -> int:
    """The ZeroMQ Guide's fileio3 client: credit-based chunks over one DEALER; returns bytes."""
    import zmq

    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(url)
    total = 0
    try:
        out.mkdir(parents=True, exist_ok=True)
        for rel, size in files:
            with (out / _raw_name(rel)).open("wb") as f:
                credit, offset, got = window, 0, 0
                while got < size:
                    while credit and offset < size:
                        n = min(chunk, size - offset)
                        sock.send_multipart([rel.encode(), b"%d" % offset, b"%d" % n])
                        offset += n
                        credit -= 1
                    if not sock.poll(30_000):
                        raise TimeoutError(f"raw server silent for 30 s at {rel}:{got}")
                    data = sock.recv(copy=False)
                    f.write(data.buffer)
                    got += len(data.buffer)
                    credit += 1
                f.flush()
                os.fsync(f.fileno())
            total += got
    finally:
        sock.close(0)
        ctx.term()
    return total


def check_raw(out: Path, files: list[tuple[str, int]], digests: dict[str, str]) -> None:
    """RuntimeError unless ``out`` holds every file of ``files`` with its size and sha256."""
    from camctl.common.fsutil import sha256_file

    for rel, size in files:
        path = out / _raw_name(rel)
        if not path.exists():
            raise RuntimeError(f"raw fetch: {rel} is missing")
        have = path.stat().st_size
        if have != size:
            raise RuntimeError(f"raw fetch: {rel} is {have} bytes, expected {size}")
        if sha256_file(path) != digests[rel]:
            raise RuntimeError(f"raw fetch: {rel}: sha256 differs from the served file")


def timed_fetch(url: str, out: Path, *, window: int | None = None,
                chunk_kb: int | None = None) -> tuple[float, Any]:
    """``camctl fetch`` of the board at ``url`` into ``out`` (no progress bar; fetch's own window
    and chunk unless given): seconds and the report; RuntimeError unless it is ok."""
    from camctl.ground import fetch

    sizes = {k: v for k, v in (("window", window), ("chunk_kb", chunk_kb)) if v is not None}
    t0 = time.perf_counter()
    report = fetch([url], out, give_up_after_s=30, progress=False, **sizes)
    dt = time.perf_counter() - t0
    if not report.ok:
        raise RuntimeError(f"fetch failed: {report.summary()}")
    return dt, report


Side = Callable[[], tuple[float, float]]
Round = tuple[tuple[float, float], tuple[float, float]]


def interleave(first: Side, second: Side, *, rounds: int, min_rounds: int, budget_s: float,
               clock: Callable[[], float] = time.perf_counter) -> list[Round]:
    """Rounds of both sides, ``first`` first in even rounds and ``second`` first in odd ones; each
    side returns (seconds, CPU seconds). Returns ``(first's, second's)`` per round.

    At most ``rounds``; once ``budget_s`` has passed, stops after an even number of rounds (each
    side first equally often), but not before ``min_rounds``."""
    out: list[Round] = []
    t0 = clock()
    for i in range(rounds):
        if i >= min_rounds and i % 2 == 0 and clock() - t0 >= budget_s:
            break
        if i % 2 == 0:
            a = first()
            b = second()
        else:
            b = second()
            a = first()
        out.append((a, b))
    return out


def round_ratios(fetch_s: list[float], raw_s: list[float]) -> list[float]:
    """Per round: raw seconds / fetch seconds (fetch MB/s over raw MB/s of the same bytes)."""
    if not fetch_s or len(fetch_s) != len(raw_s):
        raise ValueError(f"want one raw time per fetch time, got {len(fetch_s)} and {len(raw_s)}")
    return [r / f for f, r in zip(fetch_s, raw_s, strict=True)]


def _child_cpu(pid: int) -> float:
    """CPU seconds of process ``pid`` so far, every thread (schedstat: ns), or NaN where /proc does
    not say."""
    total = 0
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                total += int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return float("nan")
    return total / 1e9


def _cpu() -> float:
    """CPU seconds of this process (every thread: the ground side; the servers are children)."""
    return time.process_time()


def bench_fetch_raw(ctx: Ctx) -> dict[str, Any]:
    """camctl fetch from a real Publisher (child process) vs a bare fileio3 loop from a bare ROUTER
    child, in interleaved rounds (see the module docstring)."""
    from camctl.common.fsutil import sha256_file
    from camctl.ground.client import Client

    mb, rounds, min_rounds = (40, 2, 2) if ctx.quick else (MB_FULL, ROUNDS, MIN_ROUNDS)
    root = ctx.flight(ctx.frames_for_mb(mb))
    files = _files_of(root)
    nbytes = sum(s for _, s in files)
    digests = {rel: sha256_file(root / rel) for rel, _ in files}
    pub, info = ctx.spawn("publisher", str(root))
    raw, rinfo = ctx.spawn("raw-server", str(root))
    try:
        # the board lets the client have the chunk and window the raw loop uses
        with Client(info["url"], timeout_s=10) as c:
            w = c.hello()
        if w.chunk_max < CHUNK or w.window < WINDOW:
            raise RuntimeError(f"the publisher offers chunk {w.chunk_max} and window {w.window}: "
                               f"fetch would not use {CHUNK} and {WINDOW} like the raw loop")

        def fetch_side() -> tuple[float, float]:
            out = ctx.tmp / ctx.name("ground")
            c0, s0 = _cpu(), _child_cpu(pub.pid)
            dt, report = timed_fetch(info["url"], out, window=WINDOW, chunk_kb=CHUNK // 1024)
            cpu = _cpu() - c0 + _child_cpu(pub.pid) - s0
            b = report.boards[0]
            if b.fetched != len(files) or b.bytes != nbytes:
                raise RuntimeError(f"fetch moved {b.fetched} files, {b.bytes} bytes; expected "
                                   f"{len(files)}, {nbytes}")
            shutil.rmtree(out)
            return dt, cpu

        def raw_side() -> tuple[float, float]:
            out = ctx.tmp / ctx.name("raw")
            c0, s0, t0 = _cpu(), _child_cpu(raw.pid), time.perf_counter()
            got = _raw_fetch(rinfo["url"], files, out, chunk=CHUNK, window=WINDOW)
            dt = time.perf_counter() - t0
            cpu = _cpu() - c0 + _child_cpu(raw.pid) - s0
            if got != nbytes:
                raise RuntimeError(f"raw fetch moved {got} bytes, expected {nbytes}")
            check_raw(out, files, digests)
            shutil.rmtree(out)
            return dt, cpu

        # warm-up, not counted: the board makes its previews, both servers have the files cached
        fetch_side()
        raw_side()
        load0 = os.getloadavg()[0]
        t0 = time.perf_counter()
        done = interleave(fetch_side, raw_side, rounds=rounds, min_rounds=min_rounds,
                          budget_s=BUDGET_S)
        took = time.perf_counter() - t0
        load1 = os.getloadavg()[0]
    finally:
        ctx.kill(pub)
        ctx.kill(raw)
    fetch_s = [f[0] for f, _ in done]
    raw_s = [r[0] for _, r in done]
    ratios = round_ratios(fetch_s, raw_s)
    med_f, med_r = statistics.median(fetch_s), statistics.median(raw_s)
    cpu_f = statistics.median(f[1] for f, _ in done)
    cpu_r = statistics.median(r[1] for _, r in done)
    cores = os.cpu_count() or 1
    # fetch is bound by CPU, the raw loop by the disk: a busy machine slows fetch alone
    busy = (f"machine busy (load average above its {cores} cores: the ratio runs low and "
            "unsteady, the CPU seconds at the end still compare); "
            if max(load0, load1) > cores else "")
    return {"fetch_vs_raw_zmq": statistics.median(ratios),
            "_note": f"{busy}median of {len(done)} interleaved rounds (AB, BA, ...), round ratios "
                     f"{min(ratios):.2f}-{max(ratios):.2f}, {took:.0f} s, load average "
                     f"{load0:.1f}->{load1:.1f}; {nbytes / MB:.0f} MB in {len(files)} files a "
                     f"round, servers in child processes, chunk {CHUNK // 1024} KiB, window "
                     f"{WINDOW}, fsync per file, both sides checked (raw: sha256 after the clock); "
                     f"median fetch {nbytes / med_f / MB:.0f} MB/s (with previews, sha256, "
                     f"writeback started every 4 MB), raw {nbytes / med_r / MB:.0f} MB/s; CPU a "
                     f"round, ground + server: fetch {cpu_f:.2f} s, raw {cpu_r:.2f} s"}


FIGURE = Figure("fetch_vs_raw_zmq", bench_fetch_raw, (
    Metric("fetch_vs_raw_zmq", "camctl fetch MB/s / bare DEALER-ROUTER credit loop (fileio3), "
           "same files, chunk and window; median of interleaved rounds", ">=", 0.9),
))
