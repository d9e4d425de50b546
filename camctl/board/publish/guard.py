"""The publisher's connection guard: counts the TCP connections of its ROUTER and PUB from socket
monitors, refuses those over ``publish.max_connections`` (a warning, rate-limited; an ERROR BUSY to
a refused peer that sends a request before it is closed), drops a connection idle for long when
the cap keeps others out, and cuts a given connection (a peer that stopped reading).

A connection is cut with ``shutdown(SHUT_RDWR)`` on a duplicate of its fd: libzmq's engine then
reads EOF, reports DISCONNECTED and frees the connection itself (its fd is never closed under it).
The fd comes from the monitor's ACCEPTED event, or from a message's ZMQ_SRCFD; zmq_msg_get(3) warns
that such an fd "might be closed already, reused even", so a cut is only made on fds the monitor
reports open, and the guard drains every monitor event before acting.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass

import zmq
from zmq.utils.monitor import parse_monitor_message

__all__ = ["Connections", "shutdown_fd"]

log = logging.getLogger("camctl.board.publish")

_EVENTS = zmq.EVENT_ACCEPTED | zmq.EVENT_DISCONNECTED | zmq.EVENT_CLOSED
_REFUSE_GRACE_S = 2.0  # a refused connection lives this long for its first request's ERROR BUSY
_REFUSE_HOLD = 8  # refused connections held for that at once; more are cut at once
_BUSY_GRACE_S = 0.2  # after its ERROR BUSY, time for the reply to leave before the cut
_LOG_EVERY_S = 10.0  # one warning per this long about refusals, however many
IDLE_S = 30.0  # a ROUTER connection without a request this long may go when the cap is reached


def shutdown_fd(fd: int) -> bool:
    """``shutdown(SHUT_RDWR)`` the TCP connection ``fd`` (a duplicate is used and closed; the fd
    itself stays libzmq's). False when it is not a connected socket (any more)."""
    try:
        dup = os.dup(fd)
    except OSError:
        return False
    try:
        with socket.socket(fileno=dup) as s:
            s.shutdown(socket.SHUT_RDWR)
        return True
    except OSError:
        return False


def _peer_address(fd: int) -> str:
    try:
        with socket.socket(fileno=os.dup(fd)) as s:
            host, port = s.getpeername()[:2]
            return f"{host}:{port}"
    except (OSError, ValueError):
        return "?"


@dataclass
class _Conn:
    kind: str  # "router" or "pub"
    accepted_at: float
    last_request: float
    refuse_at: float | None = None  # refused: cut at this time


class Connections:
    """TCP connections of the publisher's sockets, at most ``cap`` served at once.

    :meth:`watch` a socket (before it binds) and poll the monitor it returns; call
    :meth:`on_monitor` when it is readable, :meth:`request` for every request (its fd from
    ZMQ_SRCFD: True when that connection is refused and the request is to be answered BUSY), and
    :meth:`tick` often.
    """

    def __init__(self, board: str, cap: int, *, idle_s: float = IDLE_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.board = board
        self.cap = int(cap)
        self.idle_s = idle_s
        self._clock = clock
        self._open: dict[int, _Conn] = {}
        self._monitors: dict[zmq.Socket, tuple[zmq.Socket, str]] = {}
        self.refused = 0  # connections refused, ever
        self.idle_dropped = 0
        self.cut = 0  # connections cut for other reasons (a peer that stopped reading)
        self.peak = 0  # the most served at once
        self._refused_since_log = 0
        self._logged_at = -_LOG_EVERY_S
        self._last_refused = ""

    @property
    def served(self) -> int:
        """Connections served now (refused ones not counted)."""
        return sum(1 for c in self._open.values() if c.refuse_at is None)

    def watch(self, sock: zmq.Socket, kind: str) -> zmq.Socket:
        """Monitor ``sock``'s connections; returns the monitor socket to poll."""
        mon = sock.get_monitor_socket(_EVENTS)
        self._monitors[mon] = (sock, kind)
        return mon

    def unwatch(self, mon: zmq.Socket) -> None:
        """Stop monitoring (the socket is about to close): its connections are forgotten."""
        sock, kind = self._monitors.pop(mon)
        with contextlib.suppress(zmq.ZMQError):
            sock.disable_monitor()
        mon.close(linger=0)
        for fd in [fd for fd, c in self._open.items() if c.kind == kind]:
            del self._open[fd]

    def close(self) -> None:
        for mon in list(self._monitors):
            self.unwatch(mon)

    def on_monitor(self, mon: zmq.Socket) -> None:
        """Read every event waiting on ``mon``; refuse accepted connections over the cap."""
        kind = self._monitors[mon][1]
        accepted: list[int] = []
        while True:
            try:
                msg = mon.recv_multipart(zmq.NOBLOCK)
            except zmq.ZMQError:
                break
            ev = parse_monitor_message(msg)
            fd = int(ev["value"])
            if ev["event"] == zmq.EVENT_ACCEPTED:
                now = self._clock()
                self._open[fd] = _Conn(kind, now, now)
                accepted.append(fd)
            else:  # DISCONNECTED / CLOSED: libzmq is done with it
                self._open.pop(fd, None)
                with contextlib.suppress(ValueError):
                    accepted.remove(fd)
        for fd in accepted:
            self._admit(fd)

    def _admit(self, fd: int) -> None:
        conn = self._open.get(fd)
        if conn is None:
            return
        if self.served <= self.cap:
            self.peak = max(self.peak, self.served)
            return
        if self._drop_idle(fd):
            return
        now = self._clock()
        self.refused += 1
        self._refused_since_log += 1
        self._last_refused = _peer_address(fd)
        held = sum(1 for c in self._open.values() if c.refuse_at is not None)
        if held <= _REFUSE_HOLD:  # room to answer its first request BUSY before the cut
            conn.refuse_at = now + _REFUSE_GRACE_S
        else:
            conn.refuse_at = now
            self._cut(fd)
        self._log(now)

    def _drop_idle(self, new_fd: int) -> bool:
        """Cut the ROUTER connection idle longest, if idle ``idle_s``: the new one takes its
        place."""
        now = self._clock()
        idle = [(c.last_request, fd) for fd, c in self._open.items()
                if fd != new_fd and c.kind == "router" and c.refuse_at is None
                and now - c.last_request >= self.idle_s]
        if not idle:
            return False
        _, fd = min(idle)
        log.warning("board %s: at its connection cap (%d, publish.max_connections): dropped %s, "
                    "idle %.0f s, for a new connection", self.board, self.cap, _peer_address(fd),
                    now - self._open[fd].last_request)
        self._cut(fd)
        self._open.pop(fd, None)
        self.idle_dropped += 1
        return True

    def _log(self, now: float) -> None:
        if now - self._logged_at < _LOG_EVERY_S:
            return
        log.warning("board %s: refused %d connection(s) at its cap of %d "
                    "(publish.max_connections), the latest from %s", self.board,
                    self._refused_since_log, self.cap, self._last_refused)
        self._logged_at = now
        self._refused_since_log = 0

    def request(self, fd: int) -> bool:
        """A request came over connection ``fd``: True when that connection is refused (answer
        ERROR BUSY; it is cut shortly after)."""
        conn = self._open.get(fd)
        if conn is None and fd >= 0:
            # its ACCEPTED event may still be on the way: the monitor is another pipe than the
            # ROUTER's, and the server thread may see the request first
            for mon in list(self._monitors):
                self.on_monitor(mon)
            conn = self._open.get(fd)
        if conn is None:
            return False
        now = self._clock()
        conn.last_request = now
        if conn.refuse_at is None:
            return False
        conn.refuse_at = min(conn.refuse_at, now + _BUSY_GRACE_S)
        return True

    def tick(self) -> None:
        """Cut refused connections whose grace ran out; log refusals not logged yet."""
        now = self._clock()
        for fd, conn in list(self._open.items()):
            if conn.refuse_at is not None and now >= conn.refuse_at:
                conn.refuse_at = now + 3600  # cut once; its DISCONNECTED removes it
                self._cut(fd)
        if self._refused_since_log:
            self._log(now)

    def drop(self, fd: int) -> bool:
        """Cut connection ``fd`` if the monitor reports it open (a peer that stopped reading)."""
        if fd not in self._open:
            return False
        self.cut += 1
        return self._cut(fd)

    def _cut(self, fd: int) -> bool:
        return shutdown_fd(fd)

    @property
    def busy_message(self) -> str:
        return (f"board {self.board} is at its connection cap ({self.cap} connections, "
                "publish.max_connections): this connection is closed, try again later")
