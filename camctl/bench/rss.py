"""Bench figure ``rss_mb``: peak resident memory of a real ``camctl run`` board."""

from __future__ import annotations

import time
from typing import Any

from camctl.bench.boards import command, start_board, vm_mb
from camctl.bench.harness import Ctx, Figure, Metric


def bench_rss(ctx: Ctx) -> dict[str, Any]:
    board = start_board(ctx, "bench-rss", armed=30, fps=30, seed=1)
    descent = 1.5 if ctx.quick else 4.0
    command(board.router, "arm")
    time.sleep(2.3)  # the pre-trigger ring fills (2 s)
    command(board.router, "event", name="release")
    time.sleep(descent)
    hwm, rss = vm_mb(board.proc.pid), vm_mb(board.proc.pid, "VmRSS")
    command(board.router, "event", name="touchdown")
    board.stop()
    ctx.boards.remove(board)
    return {"rss_mb": hwm,
            "_note": f"armed 2.3 s then {descent:g} s of DESCENT at 30 fps on 2 cameras; "
                     "VmHWM of the `camctl run` process (MB = 10^6 bytes); VmRSS at that moment "
                     f"{rss:.0f} MB (the peak is the sim's ground-texture build at start)"}


FIGURE = Figure("rss_mb", bench_rss, (
    Metric("rss_mb", "VmHWM of a `camctl run` board, 2x1080p sim @30 fps, 2 s pre-trigger, "
           "armed+descent", "<", 200, "MB"),
))
