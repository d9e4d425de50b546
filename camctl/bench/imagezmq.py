"""Bench figure ``fetch_vs_imagezmq``: fetch frames/s against imagezmq REQ-REP, through a delaying
proxy and not."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from camctl.bench.fetch import timed_fetch
from camctl.bench.harness import Ctx, Figure, Metric


def bench_imagezmq(ctx: Ctx) -> dict[str, Any]:
    """Frames/s: our fetch of a stored flight vs imagezmq REQ/REP send_jpg of the same frames, via
    proxy and not."""
    try:
        import imagezmq
    except ImportError as exc:
        return {"fetch_vs_imagezmq": None, "fetch_vs_imagezmq_loopback": None,
                "_error": f"imagezmq is not installed ({exc}); pip install 'camctl[dev]'"}
    n = 60 if ctx.quick else 300
    root = ctx.flight(n)
    fdir = _frames_folder(ctx)
    pub, info = ctx.spawn("publisher", str(root))
    port = info["url"].rsplit(":", 1)[1]
    out: dict[str, Any] = {}
    notes = []
    for key, delay_ms in (("fetch_vs_imagezmq", 5), ("fetch_vs_imagezmq_loopback", 0)):
        proxy, proxy_port = _delayed(ctx, port, delay_ms)
        url = f"tcp://127.0.0.1:{proxy_port}" if proxy is not None else info["url"]
        dt, _ = timed_fetch(url, ctx.tmp / ctx.name("ground"))
        ours = n / dt
        theirs = _imagezmq_fps(ctx, imagezmq, fdir, n, delay_ms)
        if proxy is not None:
            ctx.kill(proxy)
        out[key] = ours / theirs
        notes.append(f"{'proxy 5 ms/direction' if delay_ms else 'loopback'}: fetch {ours:.0f} "
                     f"frames/s (whole fetch incl. hello/list/previews), imagezmq {theirs:.0f} "
                     f"frames/s (first frame to fsync of the last)")
    ctx.kill(pub)
    out["_note"] = f"{n} frames of 1080p JPEG; " + "; ".join(notes)
    return out


def _frames_folder(ctx: Ctx) -> Path:
    """The corpus's JPEGs as files, for the imagezmq sender to read."""
    _, jpegs = ctx.corpus()
    fdir = ctx.tmp / "izmq-frames"
    fdir.mkdir(exist_ok=True)
    for i, j in enumerate(jpegs):
        (fdir / f"{i:03d}.jpg").write_bytes(j)
    return fdir


def _delayed(ctx: Ctx, port: int | str, delay_ms: int) -> tuple[Any, int | str]:
    """A netproxy child delaying each direction by ``delay_ms`` in front of 127.0.0.1:``port``,
    and the port to use; (None, ``port``) when there is no delay."""
    if not delay_ms:
        return None, port
    proxy, pinfo = ctx.spawn(f"127.0.0.1:{port}", str(delay_ms), module="camctl.testing.netproxy")
    return proxy, pinfo["port"]


def _imagezmq_fps(ctx: Ctx, imagezmq: Any, fdir: Path, n: int, delay_ms: int) -> float:
    """Frames/s of an imagezmq sender child sending ``fdir``'s JPEGs to a hub here (REQ/REP)."""
    hub_port = _free_port()
    hub = imagezmq.ImageHub(open_port=f"tcp://127.0.0.1:{hub_port}")
    try:
        hproxy, target = _delayed(ctx, hub_port, delay_ms)
        sender, _ = ctx.spawn("imagezmq-sender", f"tcp://127.0.0.1:{target}", str(n), str(fdir))
        theirs = _receive_jpgs(hub, n, ctx.tmp / ctx.name("izmq.bin"))
        ctx.kill(sender)
        if hproxy is not None:
            ctx.kill(hproxy)
    finally:
        hub.close()
    return theirs


def _receive_jpgs(hub: Any, n: int, path: Path) -> float:
    """Receive ``n`` JPEGs on ``hub`` into ``path`` (fsync'd): frames/s from the first frame to the
    fsync."""
    sink = path.open("wb")
    t_first = t_last = 0.0
    for i in range(n):
        if not hub.zmq_socket.poll(30_000):
            raise RuntimeError(f"imagezmq sender silent for 30 s after {i} frames")
        _msg, jpg = hub.recv_jpg()
        t_last = time.perf_counter()
        t_first = t_first or t_last
        sink.write(jpg)
        hub.send_reply(b"OK")
    sink.flush()
    os.fsync(sink.fileno())  # our fetch's files are durable when it returns: the baseline's too
    t_last = time.perf_counter()
    sink.close()
    return (n - 1) / (t_last - t_first)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


FIGURE = Figure("fetch_vs_imagezmq", bench_imagezmq, (
    Metric("fetch_vs_imagezmq", "fetch frames/s / imagezmq send_jpg REQ-REP frames/s, "
           "via a 5 ms/direction proxy", ">=", 3),
    Metric("fetch_vs_imagezmq_loopback", "the same on plain loopback (no proxy)", ">=", 1),
))
