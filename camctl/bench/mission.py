"""Bench figures of the mission page (``camctl mission``) in the real browser, on loopback.

- ``mission_status_latency_ms``: p99 of a board's PUB ``status`` (stamped with the board's wall
  clock when it made it) to the page's DOM showing it (the page's clock right after the update; one
  machine, one clock).
- ``mission_first_paint_ms``: navigation start to the first board card drawn with live data
  (``performance.mark('camctl-first-board')`` in the page), median of fresh page loads.

Two ``camctl run`` boards with two 640x360 sim cameras each (the demo's), armed (cameras running,
one status broadcast a second each), the mission server in this process, Debian's headless chromium
through Playwright.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import numpy as np

from camctl.bench.boards import command
from camctl.bench.harness import Ctx, Figure, Metric, child_env


def _board(ctx: Ctx, name: str, index: int) -> Any:
    """A ``camctl run`` board as the demo runs it (two 640x360 sim cameras), owned by ctx. Not
    1080p: this figure is the page's path; at 1080p on 2 shared cores the board's own GIL contention
    delays its PUB status by up to ~400 ms before it leaves the board (measured with a bare SUB)."""
    from camctl.demo import start_board, write_board_config

    cfg = write_board_config(ctx.tmp / name, name, index, size=(640, 360), descent_s=90)
    board = start_board(cfg, ctx.tmp / name / "store", name,
                        env={"PYTHONPATH": child_env()["PYTHONPATH"]})
    ctx.boards.append(board)
    return board


def bench_mission(ctx: Ctx) -> dict[str, Any]:
    from camctl.ground.mission import serve
    from camctl.ground.mission.browser import chromium

    boards = [_board(ctx, f"bench-mission-{c}", i) for i, c in enumerate("ab")]
    for b in boards:
        command(b.router, "arm")
    seconds = 4.0 if ctx.quick else 30.0
    loads = 2 if ctx.quick else 7
    server = serve([b.router for b in boards], ctx.tmp / "mission", port=0)
    try:
        paints: list[float] = []
        fcp: list[float] = []
        with chromium(ctx.tmp / "chromium-profile") as browser:
            page = browser.new_page()
            for _ in range(loads):
                page.goto(server.url)
                page.wait_for_function("() => window.camctlReady === true", timeout=15_000)
                paints.append(page.evaluate(
                    "performance.getEntriesByName('camctl-first-board')[0].startTime"))
                fcp.append(page.evaluate(
                    "(performance.getEntriesByName('first-contentful-paint')[0] "
                    "|| {startTime: NaN}).startTime"))
            page.evaluate("window.camctlLatency = []")
            time.sleep(seconds)
            lat = [float(x) for x in page.evaluate("window.camctlLatency")]
    finally:
        server.close()
        for b in boards:
            b.stop()
            ctx.boards.remove(b)
    if len(lat) < 4:
        raise RuntimeError(f"only {len(lat)} PUB statuses reached the page in {seconds:g} s")
    return {"mission_status_latency_ms": float(np.percentile(lat, 99)),
            "mission_first_paint_ms": statistics.median(paints),
            "_note": f"{len(lat)} PUB statuses from 2 armed boards (2x640x360 sim at 4 fps each) "
                     f"in {seconds:g} s: p50 {np.percentile(lat, 50):.1f} ms, "
                     f"max {max(lat):.1f} ms; first paint of {loads} loads "
                     f"{', '.join(f'{p:.0f}' for p in paints)} ms (first contentful paint median "
                     f"{statistics.median(fcp):.0f} ms)"}


FIGURE = Figure("mission", bench_mission, (
    Metric("mission_status_latency_ms", "p99 board PUB status -> mission page DOM, "
           "headless chromium, 2 armed demo boards on loopback", "<", 500, "ms"),
    Metric("mission_first_paint_ms", "navigation start -> first board card with live data, "
           "median of fresh page loads, loopback", unit="ms"),
))
