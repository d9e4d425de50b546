"""The bench's helper child processes, run as ``python -m camctl.bench KIND ARGS`` (private).

``publisher ROOT`` (a real Publisher over a store folder), ``raw-server ROOT`` (the ZeroMQ Guide's
fileio3 ROUTER), ``imagezmq-sender URL N DIR``. Each prints one JSON line when ready and exits when
its stdin closes.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import threading
from pathlib import Path
from typing import Any


class _ServedBoard:
    """A landed board over a store folder, as the Publisher sees it."""

    def __init__(self, root: Path) -> None:
        self.board = "bench"
        self.store_root = root

    def status(self) -> dict:
        return {"board": self.board, "phase": "LANDED", "flight": "", "serving": True,
                "cameras": {}}

    def serving(self) -> bool:
        return True

    def open_segments(self) -> set[Path]:
        return set()

    def command(self, name: str, args: dict) -> dict:
        from camctl.exc import CommandRefused

        raise CommandRefused(f"the bench board takes no commands (got {name!r})")


def _exit_on_stdin_eof() -> None:
    def watch() -> None:
        with contextlib.suppress(Exception):
            sys.stdin.buffer.read()
        os._exit(0)

    threading.Thread(target=watch, daemon=True).start()


def child_main(argv: list[str]) -> int:
    """Run the child ``argv[0]`` with its arguments; 2 for an unknown kind."""
    kind, *rest = argv
    if kind == "publisher":
        from camctl.board.config import PublishConfig
        from camctl.board.publish import Publisher

        pub = Publisher(_ServedBoard(Path(rest[0])), PublishConfig(bind="tcp://127.0.0.1:*",
                                                                   events="tcp://127.0.0.1:*"))
        pub.start()
        print(json.dumps({"url": pub.router_endpoint}), flush=True)
        _exit_on_stdin_eof()
        threading.Event().wait()
    # the ZeroMQ Guide's fileio3 server: ROUTER, [path, offset, size] -> chunk
    if kind == "raw-server":
        import zmq

        root = Path(rest[0])
        sock = zmq.Context().socket(zmq.ROUTER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.bind("tcp://127.0.0.1:*")
        print(json.dumps({"url": sock.getsockopt(zmq.LAST_ENDPOINT).decode()}), flush=True)
        _exit_on_stdin_eof()
        files: dict[bytes, Any] = {}
        while True:
            ident, path, offset, size = sock.recv_multipart()
            f = files.get(path)
            if f is None:
                f = files[path] = (root / path.decode()).open("rb")
            f.seek(int(offset))
            sock.send_multipart([ident, f.read(int(size))], copy=False)
    if kind == "imagezmq-sender":  # the board side of imagezmq: ImageSender connects to the hub
        import imagezmq

        url, n, fdir = rest[0], int(rest[1]), Path(rest[2])
        jpegs = [p.read_bytes() for p in sorted(fdir.glob("*.jpg"))]
        sender = imagezmq.ImageSender(connect_to=url)
        print(json.dumps({"frames": len(jpegs)}), flush=True)
        _exit_on_stdin_eof()
        for i in range(n):
            sender.send_jpg(f"frame {i}", jpegs[i % len(jpegs)])
        threading.Event().wait()
    print(f"unknown child kind {kind!r}", file=sys.stderr)
    return 2


