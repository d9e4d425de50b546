"""Bench figure ``first_look_s``: touchdown edge to a contact sheet of every board's previews on the ground."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from camctl.bench.boards import command, run_all, start_board
from camctl.bench.harness import Ctx, Figure, Metric


def bench_first_look(ctx: Ctx) -> dict[str, Any]:
    from camctl.ground import Client, fetch

    boards = run_all([lambda i=i: start_board(ctx, f"bench-look-{'ab'[i]}", armed=5, fps=15, seed=10 + 2 * i)
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
            raise RuntimeError("boards did not land: " + ", ".join(f"{s['board']}={s['phase']}" for s in states))
        time.sleep(0.02)
    t_landed = time.perf_counter()
    ground = ctx.tmp / "first-look"
    report = fetch(urls, ground, give_up_after_s=30, thumbs_only=True, progress=False)
    if not report.ok:
        raise RuntimeError(f"thumbnail fetch failed: {report.summary()}")
    t_thumbs = time.perf_counter()
    sheet, how = _contact_sheet(ground)
    t1 = time.perf_counter()
    for b in boards:
        b.stop()
        ctx.boards.remove(b)
    return {"first_look_s": t1 - t0,
            "_note": f"2 boards, 2x1080p at 15 fps, {descent:g} s descent; touchdown->LANDED+serving "
                     f"{t_landed - t0:.2f} s (post_touchdown_s=1), previews {t_thumbs - t_landed:.2f} s "
                     f"({sum(b.thumbs for b in report.boards)} thumbs), contact sheet ({how}) {t1 - t_thumbs:.2f} s "
                     f"-> {sheet.name}"}


def _contact_sheet(ground: Path) -> tuple[Path, str]:
    """A contact sheet of every preview under ``ground``: camctl.export's when it exists, else Pillow here."""
    import importlib.util

    if importlib.util.find_spec("camctl.export") is not None:
        from camctl import export

        fn = getattr(export, "contact_sheet_from_thumbs", None)
        if callable(fn):
            return Path(fn(ground, ground / "contact-sheet.png")), "camctl.export.contact_sheet_from_thumbs"
    from PIL import Image

    thumbs = sorted(ground.rglob("thumbs/*/*.jpg"))
    if not thumbs:
        raise RuntimeError(f"no previews under {ground}")
    first = Image.open(thumbs[0])
    tw, th = first.size
    cols = min(8, len(thumbs))
    rows = -(-len(thumbs) // cols)
    sheet = Image.new("RGB", (cols * tw, rows * th))
    for i, t in enumerate(thumbs):
        with Image.open(t) as im:
            sheet.paste(im.convert("RGB").resize((tw, th)), ((i % cols) * tw, (i // cols) * th))
    out = ground / "contact-sheet.jpg"
    sheet.save(out, quality=85)
    return out, f"Pillow in bench, {len(thumbs)} thumbs"


FIGURE = Figure("first_look_s", bench_first_look, (
    Metric("first_look_s", "touchdown edge -> contact sheet of every board on the ground (2 boards, "
           "post_touchdown_s=1)", "<", 5, "s"),
))
