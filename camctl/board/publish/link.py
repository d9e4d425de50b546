"""The wire between a board's daemon and its publisher process: one message a frame, JSON objects,
over a Unix socket pair the daemon makes and the child inherits.

Both ends use :class:`Link`. Frames are bounded (:data:`MAX_LINK_MESSAGE`): a status or a reply
that would not fit is a bug, and a peer that sends one is treated as gone. Framing is
:class:`multiprocessing.connection.Connection`'s (a 4-byte length, then the bytes; CPython's
``Lib/multiprocessing/connection.py``, ``_send_bytes`` / ``_recv_bytes``), whose ``recv_bytes``
refuses a frame longer than ``maxlength`` before reading it.

Messages (``op`` says which):

- daemon -> child: ``init`` (who the board is, the publish config, the endpoints, the limits),
  ``bind`` (serve now: the first status), ``state`` (the status snapshot, whether the board
  serves and the files being written),
  ``event`` (a PUB topic and body), ``reply`` (to a ``call``),
  ``reload_keys``, ``stop``;
- child -> daemon: ``ready`` (bound endpoints, pid) or ``failed`` (why not), ``call``
  (``command``, with an ``rpc`` number), ``stats`` (its RSS and counters).
"""

from __future__ import annotations

import contextlib
import json
import threading
from multiprocessing.connection import Connection, wait
from typing import Any

from camctl.exc import LinkClosed

__all__ = ["MAX_LINK_MESSAGE", "Link", "LinkClosed", "wait"]

# A status snapshot of a board with a dozen cameras is ~10 KB; a LISTING never crosses the link
# (the child reads the store's files itself). 4 MiB leaves room for a board's whole open set.
MAX_LINK_MESSAGE = 4 << 20


class Link:
    """One end of the daemon-publisher wire. ``send`` may be called from any thread; ``recv`` from
    one thread at a time."""

    def __init__(self, fd: int) -> None:
        self.conn = Connection(fd)
        self._send_lock = threading.Lock()

    def fileno(self) -> int:
        return self.conn.fileno()

    def send(self, msg: dict[str, Any]) -> None:
        """Send one message (blocks while the socket buffer is full). LinkClosed when the peer is
        gone."""
        data = json.dumps(msg, separators=(",", ":"), default=str).encode("utf-8")
        if len(data) > MAX_LINK_MESSAGE:
            raise ValueError(f"link message {msg.get('op')!r} of {len(data)} bytes is over "
                             f"{MAX_LINK_MESSAGE}")
        try:
            with self._send_lock:
                self.conn.send_bytes(data)
        except (OSError, ValueError) as exc:
            raise LinkClosed(str(exc)) from None

    def poll(self, timeout: float | None = 0.0) -> bool:
        """True when a message (or EOF) is waiting."""
        try:
            return self.conn.poll(timeout)
        except (OSError, ValueError):
            return True  # closed: the next recv says so

    def recv(self) -> dict[str, Any]:
        """The next message (blocks). LinkClosed on EOF or on a frame that is not one."""
        try:
            data = self.conn.recv_bytes(MAX_LINK_MESSAGE)
            msg = json.loads(data)
        except (EOFError, OSError, ValueError) as exc:
            raise LinkClosed(str(exc) or "EOF") from None
        if not isinstance(msg, dict) or not isinstance(msg.get("op"), str):
            raise LinkClosed("a link frame that is not a message")
        return msg

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.conn.close()
