"""Bench figure ``boot_ready_s``: seconds from starting ``camctl run`` to its ``READY=1``, with a
store of finished flights (2 GB; 256 MB with --quick), beside the same for an empty store (in the
note).

READY is read where systemd reads it: the board gets ``NOTIFY_SOCKET`` pointing at a datagram socket
of ours. The flights are hard links of one finished 1080p flight under new flight ids, so making 2
GB costs one flight's writing; what boot would read of them is the same bytes either way.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from camctl.bench.harness import MB, Ctx, Figure, Metric, child_env
from camctl.testing.procs import stop_process

_FLIGHT_MB = 64


def _store_of_finished_flights(ctx: Ctx, root: Path, total_mb: float) -> int:
    """Fill ``root`` with finished flights (hard links of one) until ``total_mb``; return the
    bytes."""
    src_root = ctx.flight(ctx.frames_for_mb(_FLIGHT_MB))
    (src,) = [p for p in src_root.iterdir() if p.is_dir()]
    size = sum(p.stat().st_size for p in src.rglob("*") if p.is_file())
    n = max(1, round(total_mb * MB / size))
    for k in range(n):
        dst = root / f"20260101T{k // 3600:02d}{k // 60 % 60:02d}{k % 60:02d}Z"
        for p in src.rglob("*"):
            q = dst / p.relative_to(src)
            if p.is_dir():
                q.mkdir(parents=True, exist_ok=True)
            else:
                q.parent.mkdir(parents=True, exist_ok=True)
                os.link(p, q)
    return n * size


def _time_to_ready(ctx: Ctx, store: Path, name: str) -> float:
    """Start a board on ``store``; seconds until it sends READY=1 on NOTIFY_SOCKET. The board is
    stopped."""
    from camctl.demo import write_board_config

    d = ctx.tmp / ctx.name(name)
    cfg = write_board_config(d, name, 1, size=(640, 360), reserve_mb=0, stills=())
    text = cfg.read_text().replace((d / "store").as_posix(), store.as_posix())
    cfg.write_text(text)
    sock_path = d / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(sock_path))
        sock.settimeout(120)
        env = {**child_env(), "NOTIFY_SOCKET": str(sock_path)}
        t0 = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-m", "camctl", "run", "--config", str(cfg)],
                                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                stdin=subprocess.DEVNULL)
        ctx.children.append(proc)
        try:
            while True:
                msg = sock.recv(65536).decode(errors="replace")
                if "READY=1" in msg.splitlines():
                    return time.perf_counter() - t0
        finally:
            stop_process(proc, grace_s=30, kill_wait_s=10)


def bench_boot(ctx: Ctx) -> dict[str, Any]:
    total_mb = 256 if ctx.quick else 2048
    full = ctx.tmp / ctx.name("boot-full")
    full.mkdir()
    nbytes = _store_of_finished_flights(ctx, full, total_mb)
    empty = ctx.tmp / ctx.name("boot-empty")
    empty.mkdir()
    runs = 2 if ctx.quick else 3
    times: dict[str, list[float]] = {"full": [], "empty": []}
    for _ in range(runs):  # interleaved, so a warm-up (imports, page cache) favours neither
        times["empty"].append(_time_to_ready(ctx, empty, "boot-empty"))
        times["full"].append(_time_to_ready(ctx, full, "boot-full"))
    with_flights, without = min(times["full"]), min(times["empty"])
    flights = sum(1 for p in full.iterdir() if p.is_dir())
    shutil.rmtree(full, ignore_errors=True)
    return {"boot_ready_s": with_flights,
            "_note": f"`camctl run` start to READY=1 (NOTIFY_SOCKET), best of {runs}: "
                     f"{with_flights:.2f} s with {flights} finished flights "
                     f"({nbytes / MB:.0f} MB, hard links of one 1080p flight), "
                     f"{without:.2f} s with an empty store; before READY only the last flight's "
                     "unfinished segments are read, the rest is verified after READY"}


FIGURE = Figure("boot_ready_s", bench_boot, (
    Metric("boot_ready_s", "`camctl run` start to READY=1 with 2 GB of finished flights "
           "(empty store in the note)", "<", 10.0, "s"),
))
