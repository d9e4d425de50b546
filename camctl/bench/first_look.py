"""Bench figure ``first_look_s``: touchdown edge to the first-look sheet of every board's previews
on the ground (the path of ``camctl fetch --first-look``)."""

from __future__ import annotations

import time
from typing import Any

from camctl.bench.boards import command, run_all, start_board
from camctl.bench.harness import Ctx, Figure, Metric


def bench_first_look(ctx: Ctx) -> dict[str, Any]:
    from camctl.ground import Client
    from camctl.ground.firstlook import first_look

    boards = run_all([lambda i=i: start_board(ctx, f"bench-look-{'ab'[i]}", armed=5, fps=15,
                                              seed=10 + 2 * i)
                      for i in range(2)])
    urls = [b.router for b in boards]
    descent = 1.0 if ctx.quick else 3.0
    run_all([lambda u=u: command(u, "arm") for u in urls])
    time.sleep(0.5 if ctx.quick else 2.2)
    run_all([lambda u=u: command(u, "event", name="release") for u in urls])
    time.sleep(descent)
    t0 = time.perf_counter()
    run_all([lambda u=u: command(u, "event", name="touchdown") for u in urls])
    deadline = time.monotonic() + 60
    while True:  # polling a condition (each board LANDED and serving), bounded
        states = []
        for u in urls:
            with Client(u, timeout_s=10) as c:
                states.append(c.status())
        if all(s["phase"] == "LANDED" and s["serving"] for s in states):
            break
        if time.monotonic() > deadline:
            phases = ", ".join(f"{s['board']}={s['phase']}" for s in states)
            raise RuntimeError("boards did not land: " + phases)
        time.sleep(0.02)
    t_landed = time.perf_counter()
    # what `camctl fetch --first-look` does
    look = first_look(urls, ctx.tmp / "first-look", give_up_after_s=30)
    t1 = time.perf_counter()
    if not look.report.ok or look.sheet is None:
        raise RuntimeError(f"first look failed: {look.report.summary()}")
    for b in boards:
        b.stop()
        ctx.boards.remove(b)
    return {"first_look_s": t1 - t0,
            "_note": f"2 boards, 2x1080p at 15 fps, {descent:g} s descent; "
                     f"touchdown->LANDED+serving {t_landed - t0:.2f} s (post_touchdown_s=1), "
                     "then camctl.ground.firstlook.first_look (previews "
                     f"of every board + the event sheet) {t1 - t_landed:.2f} s "
                     f"({sum(b.thumbs for b in look.report.boards)} previews) -> {look.sheet.name}"}


FIGURE = Figure("first_look_s", bench_first_look, (
    Metric("first_look_s", "touchdown edge -> contact sheet of every board on the ground "
           "(2 boards, post_touchdown_s=1; previews dense around every edge, stills)", "<", 3,
           "s"),
))
