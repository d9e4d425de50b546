"""Bench figure ``fetch_vs_imagezmq``: fetch frames/s against imagezmq REQ-REP, through a delaying proxy and not."""

from __future__ import annotations

import os
import time
from typing import Any

from camctl.bench.fetch import timed_fetch
from camctl.bench.harness import Ctx, Figure, Metric


def bench_imagezmq(ctx: Ctx) -> dict[str, Any]:
    """Frames/s: our fetch of a stored flight vs imagezmq REQ/REP send_jpg of the same frames, via proxy and not."""
    try:
        import imagezmq
    except ImportError as exc:
        return {"fetch_vs_imagezmq": None, "fetch_vs_imagezmq_loopback": None,
                "_error": f"imagezmq is not installed ({exc}); pip install 'camctl[dev]'"}
    n = 60 if ctx.quick else 300
    root = ctx.flight(n)
    _, jpegs = ctx.corpus()
    fdir = ctx.tmp / "izmq-frames"
    fdir.mkdir(exist_ok=True)
    for i, j in enumerate(jpegs):
        (fdir / f"{i:03d}.jpg").write_bytes(j)
    pub, info = ctx.spawn("publisher", str(root))
    port = info["url"].rsplit(":", 1)[1]
    out: dict[str, Any] = {}
    notes = []
    for key, delay_ms in (("fetch_vs_imagezmq", 5), ("fetch_vs_imagezmq_loopback", 0)):
        url = info["url"]
        proxy = None
        if delay_ms:
            proxy, pinfo = ctx.spawn(f"127.0.0.1:{port}", str(delay_ms), module="camctl.testing.netproxy")
            url = f"tcp://127.0.0.1:{pinfo['port']}"
        dt, _ = timed_fetch(url, ctx.tmp / ctx.name("ground"))
        ours = n / dt
        hub_port = _free_port()
        hub = imagezmq.ImageHub(open_port=f"tcp://127.0.0.1:{hub_port}")
        try:
            target = hub_port
            hproxy = None
            if delay_ms:
                hproxy, hinfo = ctx.spawn(f"127.0.0.1:{hub_port}", str(delay_ms), module="camctl.testing.netproxy")
                target = hinfo["port"]
            sender, _ = ctx.spawn("imagezmq-sender", f"tcp://127.0.0.1:{target}", str(n), str(fdir))
            sink = (ctx.tmp / ctx.name("izmq.bin")).open("wb")
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
            theirs = (n - 1) / (t_last - t_first)
            ctx.kill(sender)
            if hproxy is not None:
                ctx.kill(hproxy)
        finally:
            hub.close()
        if proxy is not None:
            ctx.kill(proxy)
        out[key] = ours / theirs
        notes.append(f"{'proxy 5 ms/direction' if delay_ms else 'loopback'}: fetch {ours:.0f} frames/s "
                     f"(whole fetch incl. hello/list/previews), imagezmq {theirs:.0f} frames/s "
                     f"(first frame to fsync of the last)")
    ctx.kill(pub)
    out["_note"] = f"{n} frames of 1080p JPEG; " + "; ".join(notes)
    return out


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


FIGURE = Figure("fetch_vs_imagezmq", bench_imagezmq, (
    Metric("fetch_vs_imagezmq", "fetch frames/s / imagezmq send_jpg REQ-REP frames/s, via a 5 ms/direction "
           "proxy", ">=", 3),
    Metric("fetch_vs_imagezmq_loopback", "the same on plain loopback (no proxy)", ">=", 1),
))
