"""Bounded per peer: one client flooding a real ``camctl run`` board (capturing, serving during
flight) with FETCHes it never reads, messages of 400 frames of 1 MiB, or THUMBS jobs of every size,
keeps the board's RSS within +50 MB and its capture rate (board clock, same run) at >= 0.8 of the
quiet rate.

The board is the one of ``test_serving_load`` (tests/serving_board.py: 2 sim cameras, 15 fps in
every phase, an earlier flight of big JPEGs in its store). RSS is the board process's VmRSS,
sampled while each flood runs.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import zmq
from serving_board import board_config, rates, write_old_flight

from camctl.common import protocol as p
from camctl.demo import start_board
from camctl.ground import Client

FLOOD_S = 1.5
RSS_BUDGET = 50 << 20


def _rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def _dealer(url: str) -> zmq.Socket:
    s = zmq.Context.instance().socket(zmq.DEALER)
    s.setsockopt(zmq.LINGER, 0)
    s.setsockopt(zmq.SNDHWM, 0)
    # replies stay in the board's queue and the kernel, not in this process
    s.setsockopt(zmq.RCVHWM, 1)
    s.connect(url)
    return s


def _flood_fetch(url: str, seg: p.SegmentInfo, stop: threading.Event) -> None:
    s = _dealer(url)  # sends and never reads
    i = 0
    while not stop.is_set():
        for _ in range(200):
            off = (i * 262144) % max(1, seg.size - 262144)
            s.send_multipart(p.Fetch(id=i, path=seg.path, offset=off, length=262144).encode())
            i += 1
        time.sleep(0.001)
    s.close()


def _flood_frames(url: str, stop: threading.Event) -> None:
    """Messages of 400 frames of the largest size a board takes, and of 1 MiB (peer dropped)."""
    big = b"\x00" * p.MAX_MESSAGE  # one buffer, sent 396 times per message (zero-copy on this side)
    huge = b"\x00" * (1 << 20)
    s = _dealer(url)
    while not stop.is_set():
        s.send_multipart([*p.Ping(id=1).encode(), *([big] * 396)], copy=False)
        time.sleep(0.002)
    s.send_multipart([*p.Ping(id=2).encode(), *([huge] * 396)], copy=False)
    s.close()


def _flood_thumbs(url: str, segs: list[p.SegmentInfo], stop: threading.Event) -> None:
    s = _dealer(url)
    i = 0
    while not stop.is_set():
        for seg in segs:
            for width in range(16, 641, 8):  # every size a new preview job
                s.send_multipart(p.Thumbs(id=i, flight=seg.flight, segment=seg.path,
                                          every=1 + i % 7, width=width).encode())
                i += 1
        time.sleep(0.01)
    s.close()


def test_one_client_flood_bounded(tmp_path: Path) -> None:
    cfg = board_config(tmp_path / "board")
    store = tmp_path / "board" / "store"
    old = write_old_flight(store, "load-a")
    board = start_board(cfg, store, "load-a")
    pid = board.proc.pid
    results: dict[str, tuple[int, float]] = {}
    try:
        with Client(board.router, timeout_s=30.0) as client:
            client.hello()
            segs = [s for s in client.list(old) if s.kind == "segment"]
            assert segs
            client.command("arm")
            client.command("event", name="release")
            time.sleep(0.5)  # past the pre-trigger flush and the rate change (no check)
            quiet, _ = rates(client, FLOOD_S)
            base = _rss(pid)
            biggest = max(segs, key=lambda x: x.size)
            floods = {"fetch": lambda st: _flood_fetch(board.router, biggest, st),
                      "frames": lambda st: _flood_frames(board.router, st),
                      "thumbs": lambda st: _flood_thumbs(board.router, segs, st)}
            for kind, run in floods.items():
                stop = threading.Event()
                peak = [0]

                def sample(stop: threading.Event = stop, peak: list[int] = peak) -> None:
                    peak[0] = _rss(pid)
                    while not stop.wait(0.02):  # the sampling period, until the flood stops
                        peak[0] = max(peak[0], _rss(pid))

                threads = [threading.Thread(target=run, args=(stop,), daemon=True),
                           threading.Thread(target=sample, daemon=True)]
                for t in threads:
                    t.start()
                try:
                    loaded, st = rates(client, FLOOD_S)
                finally:
                    stop.set()
                    for t in threads:
                        t.join(30)
                assert client.ping() > 0  # the server still answers others
                results[kind] = (peak[0] - base, min(loaded[c] / quiet[c] for c in quiet))
                assert st["phase"] == "DESCENT"
            client.command("event", name="touchdown")
    finally:
        board.stop()
    print("\nflood (RSS over base MB, capture ratio): " + ", ".join(
        f"{k} +{v[0] / 1e6:.1f} MB x{v[1]:.2f}" for k, v in results.items()) + f"; quiet {quiet}")
    for kind, (grew, ratio) in results.items():
        assert grew <= RSS_BUDGET, (kind, grew)
        assert ratio >= 0.8, (kind, ratio, quiet)
