"""Bench figures of the mission page, in the real browser (Debian's chromium through Playwright), on loopback.

- ``mission_status_latency_ms``: p99 of a board's PUB ``status`` (the board's wall clock when it made it)
  to the page's DOM showing it (the page's clock right after the update; same machine, same clock).
- ``mission_first_paint_ms``: navigation start to the first board card drawn with live data
  (``performance.mark('camctl-first-board')``), median of fresh page loads.

Two ``camctl run`` sim boards, armed (cameras running, 1 status broadcast a second each). :func:`measure`
returns the figures and a note; it is the whole benchmark, so a harness only has to register it::

    "mission": (lambda ctx: measure(ctx.tmp / "mission", quick=ctx.quick),
                ("mission_status_latency_ms", "mission_first_paint_ms")),
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["METRICS", "measure"]

# (key, what it compares, op, threshold, unit), in the harness's Metric field order
METRICS = (
    ("mission_status_latency_ms", "p99 board PUB status -> mission page DOM, headless chromium, 2 boards on "
     "loopback", "<", 500.0, "ms"),
    ("mission_first_paint_ms", "navigation start -> first board card with live data, median of fresh loads",
     "", 0.0, "ms"),
)


def measure(tmp: Path, *, quick: bool = False) -> dict[str, Any]:
    """Run the benchmark (boards, mission server and browser all started and stopped here)."""
    from camctl.demo import _command, start_board, write_board_config
    from camctl.mission import serve
    from camctl.mission.browser import chromium

    tmp = Path(tmp)
    boards, server = [], None
    seconds = 8.0 if quick else 30.0
    loads = 3 if quick else 7
    try:
        for i, name in enumerate(("bench-ma", "bench-mb")):
            cfg = write_board_config(tmp / name, name, i, size=(640, 360), descent_s=60)
            boards.append(start_board(cfg, tmp / name / "store", name))
        for b in boards:
            _command(b, "arm")
        server = serve([b.router for b in boards], tmp / "mission", port=0)
        paints: list[float] = []
        fcp: list[float] = []
        with chromium(tmp / "chromium-profile") as ctx:
            page = ctx.new_page()
            for _ in range(loads):
                page.goto(server.url)
                page.wait_for_function("() => window.camctlReady === true", timeout=15_000)
                paints.append(page.evaluate("performance.getEntriesByName('camctl-first-board')[0].startTime"))
                fcp.append(page.evaluate(
                    "(performance.getEntriesByName('first-contentful-paint')[0] || {startTime: NaN}).startTime"))
            page.evaluate("window.camctlLatency = []")
            time.sleep(seconds)
            lat = [float(x) for x in page.evaluate("window.camctlLatency")]
        if len(lat) < 4:
            raise RuntimeError(f"only {len(lat)} PUB statuses reached the page in {seconds:g} s")
        p99 = float(np.percentile(lat, 99))
        return {"mission_status_latency_ms": p99, "mission_first_paint_ms": statistics.median(paints),
                "_note": f"{len(lat)} PUB statuses from 2 armed boards in {seconds:g} s: p50 "
                         f"{np.percentile(lat, 50):.1f} ms, max {max(lat):.1f} ms; first paint of {loads} loads "
                         f"{', '.join(f'{p:.0f}' for p in paints)} ms (first contentful paint median "
                         f"{statistics.median(fcp):.0f} ms)"}
    finally:
        if server is not None:
            server.close()
        for b in boards:
            b.stop()
