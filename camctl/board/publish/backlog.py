"""Per-peer credit accounting of the publisher: a peer whose reply queue is full, or whose next
reply does not fit the reply memory budget, has its requests wait here, in order, at most a window
of them; more are dropped, counted and reported to the peer once its queue drains (never dropped
unsaid)."""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import zmq

from camctl.common import protocol as p

__all__ = ["Backlogs"]

log = logging.getLogger("camctl.board.publish")

Answer = Callable[[p.Message, zmq.Frame], p.Message]
Send = Callable[[zmq.Frame, p.Message], bool]
Fits = Callable[[zmq.Frame, p.Message], bool]


@dataclass
class _Backlog:
    """Requests of one peer whose reply queue is full, answered in order as it reads (at most a
    window)."""

    ident: zmq.Frame
    items: deque  # decoded requests, or ERROR replies for messages that were not requests
    head: p.Message | None = None  # the reply to items[0], made once
    dropped: int = 0
    first_dropped: int = 0
    logged_at: float = 0.0


class Backlogs:
    """The peers whose reply queue is full, and what each is owed.

    ``answer(request, ident)`` makes a reply; ``send(ident, reply)`` is False when the peer's queue
    is full; ``fits(ident, request)`` is False when the reply would go over the memory budget now
    (then the reply is not even made yet). True (as a bool) while any peer waits: the server then
    polls often to :meth:`flush`.
    """

    def __init__(self, board: str, window: int, answer: Answer, send: Send,
                 peer: Callable[[zmq.Frame], str], fits: Fits | None = None) -> None:
        self.board = board
        self.window = window
        self._answer = answer
        self._send = send
        self._peer = peer
        self._fits: Fits = fits or (lambda ident, item: True)
        self._peers: dict[bytes, _Backlog] = {}

    def __bool__(self) -> bool:
        return bool(self._peers)

    def clear(self) -> None:
        """Forget every peer (their connections were all closed)."""
        self._peers.clear()

    @property
    def waiting(self) -> int:
        """Requests waiting in all backlogs."""
        return sum(len(b.items) for b in self._peers.values())

    def serve(self, ident: zmq.Frame, item: p.Message) -> None:
        """Answer ``item`` (a request, or the ERROR for a message that was not one) unless the
        peer's queue is full: then it waits in the peer's backlog, in order."""
        backlog = self._peers.get(ident.bytes)
        if backlog is None:
            if not self._fits(ident, item):  # over the memory budget: wait, reply not made yet
                self._peers[ident.bytes] = _Backlog(ident, deque([item]))
                return
            reply = self._answer(item, ident)
            if self._send(ident, reply):
                return
            # the peer's reply queue is full: its requests wait here, in order, until it reads
            backlog = self._peers[ident.bytes] = _Backlog(ident, deque([item]))
            backlog.head = reply
            return
        if len(backlog.items) < self.window:
            backlog.items.append(item)
            return
        self._drop(backlog, ident, item)

    def _drop(self, backlog: _Backlog, ident: zmq.Frame, item: p.Message) -> None:
        """More than a window outstanding and not reading: dropped, counted, told once the queue
        drains."""
        backlog.dropped += 1
        if backlog.dropped == 1:
            backlog.first_dropped = item.id
        now = time.monotonic()
        if now - backlog.logged_at >= 1.0:
            backlog.logged_at = now
            log.warning("board %s: %s has more than %d requests outstanding and is not reading "
                        "replies: %d dropped so far", self.board, self._peer(ident),
                        self.window, backlog.dropped)

    def flush(self) -> None:
        """Send what peers with a full queue are owed, as far as their queues take it."""
        for key, b in list(self._peers.items()):
            while b.items:
                if b.head is None:
                    if not self._fits(b.ident, b.items[0]):
                        break
                    b.head = self._answer(b.items[0], b.ident)
                if not self._send(b.ident, b.head):
                    break
                b.items.popleft()
                b.head = None
            if b.items:
                continue
            if b.dropped and not self._send(b.ident, self._dropped_note(b)):
                continue
            del self._peers[key]

    def _dropped_note(self, b: _Backlog) -> p.Error:
        return p.Error(id=b.first_dropped, code=p.E_BUSY, message=(
            f"{b.dropped} requests (the first id {b.first_dropped}) came while more than "
            f"{self.window} were outstanding and were dropped: keep at most {self.window} requests "
            f"outstanding"))
