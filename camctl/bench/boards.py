"""Real ``camctl run`` boards for the bench figures that need them (rss, first_look), and their
helpers."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from camctl.bench.harness import MB, Ctx, child_env


def start_board(ctx: Ctx, name: str, *, armed: float, fps: float, seed: int) -> Any:
    """A ``camctl run`` board with two 1080p sim cameras (``armed`` fps in ARMED, ``fps`` after),
    owned by ctx."""
    from camctl.demo import start_board as start_demo_board
    from camctl.demo import write_board_config

    d = ctx.tmp / name
    rates = {"ARMED": armed, "DESCENT": fps, "SEPARATION": fps, "TOUCHDOWN": fps}
    cfg = write_board_config(d, name, seed, size=(1920, 1080), post_touchdown_s=1.0, reserve_mb=0,
                             threads=2, fps={"down": rates, "up": rates}, stills=(), segment_mb=64,
                             descent_s=90)
    board = start_demo_board(cfg, d / "store", name, env={"PYTHONPATH": child_env()["PYTHONPATH"]})
    ctx.boards.append(board)
    return board


def command(url: str, verb: str, /, **args: Any) -> dict:
    """Send one operator command to a board and return its reply."""
    from camctl.ground import Client

    with Client(url, timeout_s=10) as c:
        return c.command(verb, **args)


def vm_mb(pid: int, field: str = "VmHWM") -> float:
    """A ``/proc/PID/status`` memory field in MB (10^6 bytes)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) * 1024 / MB
    raise RuntimeError(f"no {field} in /proc/{pid}/status")


def run_all(fns: list[Callable[[], Any]]) -> list[Any]:
    """Call every function on its own thread; their results in order (the first exception
    propagates)."""
    with ThreadPoolExecutor(len(fns)) as ex:
        return [f.result() for f in [ex.submit(fn) for fn in fns]]
