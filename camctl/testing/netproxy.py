"""A small userspace TCP proxy that delays every byte by a fixed time in each direction (for
``camctl bench``).

It models a link with latency but ample bandwidth and buffering: a reader thread per direction takes
bytes as soon as they arrive and stamps them; a writer thread sends each piece once ``delay_s`` has
passed since it was read. So a 5 ms proxy adds 10 ms to every round trip without limiting throughput
the way a small window would.

Example::

    >>> with DelayProxy(("127.0.0.1", 5555), delay_s=0.005) as proxy:   # doctest: +SKIP
    ...     url = f"tcp://127.0.0.1:{proxy.port}"

Run as a process: ``python -m camctl.testing.netproxy HOST:PORT DELAY_MS`` prints ``{"port": N}``
and serves until its stdin closes.
"""

from __future__ import annotations

import contextlib
import json
import queue
import socket
import sys
import threading
import time

from camctl.common.lifecycle import Startable

__all__ = ["DelayProxy", "main"]

_BLOCK = 256 * 1024


class DelayProxy(Startable):
    """Listen on ``listen`` (port 0: any free port) and forward each connection to ``target`` with a
    delay."""

    def __init__(self, target: tuple[str, int], *, delay_s: float,
                 listen: tuple[str, int] = ("127.0.0.1", 0)) -> None:
        if delay_s < 0:
            raise ValueError(f"delay_s must be >= 0, got {delay_s}")
        self.target = target
        self.delay_s = float(delay_s)
        self._server = socket.create_server(listen)
        self.port: int = self._server.getsockname()[1]
        self._socks: list[socket.socket] = []
        self._lock = threading.Lock()
        self._closed = False
        self._thread: threading.Thread | None = None

    def __repr__(self) -> str:
        return (f"<DelayProxy :{self.port} -> {self.target[0]}:{self.target[1]} "
                f"+{self.delay_s * 1000:g} ms>")

    def start(self) -> DelayProxy:
        if self._thread is None:
            self._thread = threading.Thread(target=self._accept, name="netproxy-accept",
                                            daemon=True)
            self._thread.start()
        return self

    def close(self) -> None:
        """Stop accepting and drop every connection. Safe twice."""
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(OSError):
            self._server.close()
        with self._lock:
            socks, self._socks = self._socks, []
        for s in socks:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                s.close()

    def _accept(self) -> None:
        while not self._closed:
            try:
                down, _ = self._server.accept()
            except OSError:
                return
            try:
                up = socket.create_connection(self.target)
            except OSError:
                down.close()
                continue
            for s in (down, up):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                self._socks += [down, up]
            self._pump(down, up)
            self._pump(up, down)

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        q: queue.SimpleQueue[tuple[float, bytes] | None] = queue.SimpleQueue()

        def reader() -> None:
            try:
                while data := src.recv(_BLOCK):
                    q.put((time.monotonic() + self.delay_s, data))
            except OSError:
                pass
            q.put(None)

        def writer() -> None:
            try:
                while (item := q.get()) is not None:
                    due, data = item
                    left = due - time.monotonic()
                    if left > 0:
                        # the link's latency: this piece may not leave before its time
                        time.sleep(left)
                    dst.sendall(data)
                dst.shutdown(socket.SHUT_WR)
            except OSError:
                with contextlib.suppress(OSError):
                    src.shutdown(socket.SHUT_RDWR)

        for fn, name in ((reader, "read"), (writer, "write")):
            threading.Thread(target=fn, name=f"netproxy-{name}", daemon=True).start()


def main(argv: list[str] | None = None) -> int:
    """``python -m camctl.testing.netproxy HOST:PORT DELAY_MS``: print ``{"port": N}``, serve until
    stdin closes."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: python -m camctl.testing.netproxy HOST:PORT DELAY_MS", file=sys.stderr)
        return 2
    host, _, port = args[0].rpartition(":")
    proxy = DelayProxy((host, int(port)), delay_s=float(args[1]) / 1000).start()
    print(json.dumps({"port": proxy.port}), flush=True)
    with contextlib.suppress(Exception):
        sys.stdin.read()
    proxy.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
