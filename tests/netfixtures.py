"""Test helpers for the network layer: a fake Board over a real store folder of real MCAP segments,
a cutting TCP proxy, free ports, and a ``status --watch`` of a board that keeps broadcasting.
Imported by tests/test_protocol*, test_publish*, test_fetch*, test_*views."""

from __future__ import annotations

import contextlib
import json
import random
import socket
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import simplejpeg
import zmq
from waiting import wait_for

from camctl.exc import CamctlError
from camctl.ground.views import status_many

__all__ = ["CutProxy", "FakeBoard", "ScriptedRouter", "dealer", "free_port", "make_store",
           "watch_while_publishing", "write_segment"]


def _jpeg(rng: np.random.Generator, w: int = 64, h: int = 48) -> bytes:
    base = np.linspace(0, 255, w, dtype=np.float32)[None, :, None]
    img = (base + rng.integers(0, 60, size=(h, w, 3))).clip(0, 255).astype(np.uint8)
    return simplejpeg.encode_jpeg(np.ascontiguousarray(img), quality=80)


def _writer(path: Path, layout, chunk_bytes: int):
    from camctl.store._segment import SegmentWriter

    path.parent.mkdir(parents=True, exist_ok=True)
    return SegmentWriter(path, layout, opener=lambda p: open(p, "wb", buffering=0),
                         max_chunk_bytes=chunk_bytes)


def write_segment(path: Path, camera: str, *, frames: int, seq0: int = 0, t0_ns: int = 10**9,
                  phase: str = "DESCENT", value: int = 2, seed: int = 0, width: int = 64,
                  torn: bool = False, pad_kb: int = 0) -> None:
    """A camera segment written by the store's own segment writer: /<camera>/image (CompressedImage)
    and /<camera>/meta (JSON). ``torn``: committed chunks but no summary or footer (a segment cut
    mid-flight)."""
    from camctl.store._records import CH_IMAGE, CH_META, camera_layout

    rng = np.random.default_rng(seed)
    w = _writer(path, camera_layout(camera), 64 * 1024)
    for i in range(frames):
        ts = t0_ns + i * 33_000_000
        jpeg = _jpeg(rng, width, width * 3 // 4)
        if pad_kb:  # make segments big enough to span many chunks
            jpeg += bytes(rng.integers(0, 256, size=pad_kb * 1024, dtype=np.uint8))
        w.add_image(CH_IMAGE, ts, ts, seq0 + i, jpeg, frame_id=camera, timestamp_ns=ts)
        meta = {"seq": seq0 + i, "timestamp_ns": ts, "phase": phase, "value": value}
        w.add_message(CH_META, ts, ts, seq0 + i, json.dumps(meta).encode())
    if torn:
        w.commit(fsync=lambda fd: None)
        w.close()
    else:
        w.finish(fsync=lambda fd: None)


def write_events(path: Path, names: list[str]) -> None:
    from camctl.store._records import CH_EVENTS, events_layout

    w = _writer(path, events_layout(), 1 << 20)
    for i, name in enumerate(names):
        w.add_message(CH_EVENTS, i, i, i, json.dumps({"name": name, "mono_ns": i}).encode())
    w.finish(fsync=lambda fd: None)


def make_store(root: Path, *, flights: tuple[str, ...] = ("f1",),
               cameras: tuple[str, ...] = ("down", "up"), segments: int = 2, frames: int = 12,
               seed: int = 0, pad_kb: int = 0) -> list[Path]:
    """Fill ``root`` with flights of camera segments, an event log, flight.json; return all
    files."""
    files: list[Path] = []
    for fi, fl in enumerate(flights):
        for ci, cam in enumerate(cameras):
            for s in range(segments):
                path = root / fl / cam / f"{s:06d}.mcap"
                value = [0, 2, 3, 4][(s + ci) % 4]
                write_segment(path, cam, frames=frames, seq0=s * frames, t0_ns=10**9 + s * 10**9,
                              value=value, seed=seed * 1000 + fi * 100 + ci * 10 + s, pad_kb=pad_kb)
                files.append(path)
        ev = root / fl / "events" / "000000.mcap"
        write_events(ev, ["arm", "release", "touchdown"])
        files.append(ev)
        (root / fl / "flight.json").write_text(json.dumps({"flight": fl, "board": "x"}))
        files.append(root / fl / "flight.json")
    return files


class FakeBoard:
    """The daemon as Publisher sees it (camctl.publish.Board), over a real store folder."""

    def __init__(self, name: str, root: Path, *, serving: bool = True) -> None:
        self.board = name
        self.store_root = root
        self.is_serving = serving
        self.open: set[Path] = set()
        self.commands: list[tuple[str, dict]] = []
        self.phase = "LANDED" if serving else "ARMED"

    def status(self) -> dict:
        return {"board": self.board, "phase": self.phase, "flight": "f1", "disk_free_mb": 1000,
                "serving": self.is_serving, "cameras": {}}

    def serving(self) -> bool:
        return self.is_serving

    def open_segments(self) -> set[Path]:
        return set(self.open)

    def command(self, name: str, args: dict) -> dict:
        if name == "arm" and self.phase != "SAFE":
            raise CamctlError(f"cannot arm in phase {self.phase}")
        self.commands.append((name, args))
        before = self.phase
        if name == "arm":
            self.phase = "ARMED"
        # the real board's reply (camctl.board.commands): a command that moved nothing says so
        return {"phase": self.phase, "event": args.get("name", name),
                "changed": self.phase != before, "outcome": ""}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class CutProxy:
    """A userspace TCP proxy on loopback that drops each connection after a seeded random number of
    server->client bytes (``cuts`` times), then forwards normally. ``hold`` instead stalls the
    downstream forever after ``hold_after`` bytes until :meth:`release` (for kill tests)."""

    def __init__(self, target_port: int, *, cuts: int = 0, seed: int = 0, lo: int = 100_000,
                 hi: int = 600_000, hold_after: int | None = None) -> None:
        self.target = target_port
        self.rng = random.Random(seed)
        self.cuts_left = cuts
        self.cuts_done = 0
        self.lo, self.hi = lo, hi
        self.hold_after = hold_after
        self.released = threading.Event()
        self.downstream_bytes = 0
        self._lock = threading.Lock()
        self._listener = socket.socket()
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(16)
        self.port = self._listener.getsockname()[1]
        self._closed = threading.Event()
        self._socks: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"tcp://127.0.0.1:{self.port}"

    def release(self) -> None:
        self.released.set()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target))
            except OSError:
                client.close()
                continue
            with self._lock:
                budget = None
                if self.cuts_left > 0:
                    self.cuts_left -= 1
                    budget = self.rng.randint(self.lo, self.hi)
                self._socks += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream, None), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, budget),
                             daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, budget: int | None) -> None:
        down = budget is not None or src.getpeername()[1] == self.target
        sent = 0
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                held = (self.hold_after is not None
                        and self.downstream_bytes + len(data) > self.hold_after)
                if down and held:
                    self.released.wait(60)
                if budget is not None and sent + len(data) > budget:
                    dst.sendall(data[: budget - sent])
                    with self._lock:
                        self.cuts_done += 1
                    break
                dst.sendall(data)
                sent += len(data)
                if down:
                    with self._lock:
                        self.downstream_bytes += len(data)
        except OSError:
            pass
        for s in (src, dst):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()

    def close(self) -> None:
        self._closed.set()
        self._listener.close()
        with self._lock:
            socks = list(self._socks)
        for s in socks:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()


def watch_while_publishing(pub: Any, status: dict, enough: Callable[[list[str]], bool],
                           **status_kw: Any) -> list[str]:
    """``status --watch --json`` of ``pub``'s board on a thread while ``pub`` broadcasts ``status``
    again and again (a slow joiner misses the first), until ``enough(phases the watch showed)``.
    Then the watch must stop cleanly; ``pub`` is closed. Returns the phases, one per update."""
    stop = threading.Event()
    seen: list[str] = []
    rc: list[int] = []

    def on_update(res: list[dict]) -> None:
        seen.append(res[0].get("phase", "?"))
        if enough(seen):
            stop.set()

    t = threading.Thread(target=lambda: rc.append(status_many(
        [pub.router_endpoint], json_out=True, watch=True, timeout_s=10, events=[pub.pub_endpoint],
        interval_s=60.0, stop=stop, on_update=on_update, **status_kw)))
    t.start()
    try:
        def shown() -> bool:
            pub.publish("status", status)
            return stop.wait(0.02) or not t.is_alive()

        wait_for(shown, "the watch to show enough PUB statuses")
        assert stop.is_set(), f"the watch ended first (seen {seen[-3:]})"
        t.join(30)
    finally:
        stop.set()
        pub.close()
    assert not t.is_alive() and rc == [0], rc
    return seen


def dealer(url: str, **opts: int) -> zmq.Socket:
    """A raw DEALER on the shared context connected to ``url``, LINGER 0, with ``opts`` as socket
    options by name (``RECONNECT_IVL=-1``): a peer that does only what a test tells it."""
    s = zmq.Context.instance().socket(zmq.DEALER)
    s.setsockopt(zmq.LINGER, 0)
    for k, v in opts.items():
        s.setsockopt(getattr(zmq, k), v)
    s.connect(url)
    return s


class ScriptedRouter:
    """A board in a test that says what the test wants: a ROUTER on loopback whose thread decodes
    each request and sends what :meth:`reply` returns (a Message, a raw frame list, or None for no
    answer). A subclass sets its state, then calls :meth:`serve`."""

    def __init__(self) -> None:
        from camctl.common import protocol as p

        self._p = p
        self.sock = zmq.Context.instance().socket(zmq.ROUTER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.bind("tcp://127.0.0.1:*")
        self.url = self.sock.getsockopt(zmq.LAST_ENDPOINT).decode()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def serve(self) -> None:
        self._thread.start()

    def reply(self, req: Any) -> Any:
        raise NotImplementedError

    def _run(self) -> None:
        p = self._p
        while not self._stop.is_set():
            if not self.sock.poll(20):
                continue
            ident, *msg = self.sock.recv_multipart()
            reply = self.reply(p.decode(msg, allowed=p.REQUESTS))
            if reply is None:
                continue
            frames = reply.encode() if isinstance(reply, p.Message) else reply
            self.sock.send_multipart([ident, *frames], copy=False)

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        self.sock.close()

    def __enter__(self) -> ScriptedRouter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
