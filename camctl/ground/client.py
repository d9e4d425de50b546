"""One board over one DEALER: :class:`Client` sends requests of :mod:`camctl.common.protocol` with
per-request timeouts. A timeout closes and recreates the DEALER (never REQ-style lockstep), so a
link that comes back is used again. Downloading a file is :mod:`camctl.ground.download`.

Example::

    with Client("tcp://rig-a:5555", timeout_s=5) as c:
        print(c.hello().board, len(c.list()))
"""

from __future__ import annotations

import contextlib
import itertools
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import zmq
from zmq.utils.monitor import recv_monitor_message

from camctl.common import protocol as p
from camctl.common.keys import ClientCurve, curve_for, use_curve
from camctl.common.lifecycle import Closeable
from camctl.exc import (
    BoardTimeout,
    FetchError,
    KeyRejected,
    LinkDropped,
    ProtocolError,
    RemoteError,
    UnsafeReply,
)
from camctl.ground import download

__all__ = ["Client", "UnsafeReply"]

T = TypeVar("T")
_MONITOR_EVENTS = (zmq.EVENT_DISCONNECTED | zmq.EVENT_HANDSHAKE_FAILED_AUTH
                   | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL)
_MON_IDS = itertools.count()


class Client(Closeable):
    """One board, one DEALER; methods raise RemoteError (ERROR reply) or BoardTimeout (no reply)."""

    def __init__(self, url: str, *, timeout_s: float = 5.0,
                 curve: ClientCurve | Mapping[str, ClientCurve] | None = None,
                 context: zmq.Context | None = None) -> None:
        self.url = url
        self.timeout_s = float(timeout_s)
        self.curve = curve_for(curve, url)  # one server key per board
        self._ctx = context if context is not None else zmq.Context.instance()
        self._sock: zmq.Socket | None = None
        self._monitor: zmq.Socket | None = None
        self._ids = itertools.count(1)
        self.board = url  # replaced by the board's name after hello()
        self.chunk_max = p.MAX_CHUNK
        self.window = p.MAX_WINDOW  # requests the board lets us have outstanding (WELCOME.window)
        self.board_id = ""  # WELCOME.board_id ("" from older boards)
        self.drops = 0  # links dropped under a request (a frame over MAX_REPLY_FRAME is one cause)
        self.bytes_received = 0  # CHUNK payload bytes, for resume accounting
        self.reconnects = 0
        self.last_failure = ""  # why the last link failed, when the board said nothing
        self._closed = False

    def __repr__(self) -> str:
        return f"<Client {self.url!r} board={self.board!r}{' closed' if self._closed else ''}>"

    def close(self) -> None:
        """Close the socket (linger 0). Safe twice."""
        self._closed = True
        self.reset()

    def reset(self) -> None:
        """Drop the DEALER; the next request connects a fresh one (stale replies die with it)."""
        if self._sock is not None:
            with contextlib.suppress(zmq.ZMQError):
                self._sock.disable_monitor()
            self._sock.close(linger=0)
            self._sock = None
        if self._monitor is not None:
            self._monitor.close(linger=0)
            self._monitor = None

    def _socket(self) -> zmq.Socket:
        if self._closed:
            raise FetchError(f"{self.url}: client is closed")
        if self._sock is None:
            sock = self._ctx.socket(zmq.DEALER)
            sock.setsockopt(zmq.LINGER, 0)
            sock.setsockopt(zmq.RECONNECT_IVL, 100)
            sock.setsockopt(zmq.RECONNECT_IVL_MAX, 1000)
            p.set_heartbeats(sock)
            # no reply frame bigger than the protocol allows: libzmq checks each frame's length
            # header before allocating it and drops the link past it (protocol.MAX_REPLY_FRAME)
            sock.setsockopt(zmq.MAXMSGSIZE, p.MAX_REPLY_FRAME)
            use_curve(sock, self.curve)
            # a dropped TCP link loses whatever was in flight: notice it at once instead of waiting
            # out the request timeout (the caller then resumes over a fresh DEALER); a failed CURVE
            # handshake says why. The monitor endpoint is named here: pyzmq's default names it after
            # the socket's fd, which the next DEALER may reuse while the old monitor is still being
            # torn down.
            monitor_addr = f"inproc://camctl-mon-{next(_MON_IDS)}"
            self._monitor = sock.get_monitor_socket(_MONITOR_EVENTS, addr=monitor_addr)
            sock.connect(self.url)
            self.reconnects += 1  # sockets made, the first included
            self._sock = sock
        return self._sock

    def send(self, msg: p.Message) -> None:
        """Queue ``msg``, blocking at most the timeout (BoardTimeout: the DEALER cannot take it)."""
        sock = self._socket()
        try:
            sock.send_multipart(msg.encode(), zmq.NOBLOCK)
            return
        except zmq.Again:
            pass
        if not sock.poll(int(self.timeout_s * 1000) + 1, zmq.POLLOUT):
            self.reset()
            raise BoardTimeout(self.url, f"sending {msg.VERB.decode()}", self.timeout_s)
        sock.send_multipart(msg.encode(), zmq.NOBLOCK)

    def next_id(self) -> int:
        return next(self._ids)

    def recv(self, ids: set[int] | dict, what: str, timeout_s: float | None = None) -> p.Message:
        """The next reply with an id in ``ids`` (others are stale); BoardTimeout on silence."""
        timeout = self.timeout_s if timeout_s is None else timeout_s
        sock = self._socket()
        # replies already queued (a FETCH window in flight): no poller to build per chunk
        while True:
            try:
                frames = sock.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                break
            reply = _reply(frames)
            if reply is not None and reply.id in ids:
                return reply
        poller = zmq.Poller()
        poller.register(sock, zmq.POLLIN)
        if self._monitor is not None:
            poller.register(self._monitor, zmq.POLLIN)
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            ready = dict(poller.poll(int(left * 1000) + 1)) if left > 0 else {}
            if self._monitor is not None and self._monitor in ready:
                event = recv_monitor_message(self._monitor)["event"]
                self.reset()
                if event == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
                    raise KeyRejected(f"{self.url}: the board refused this ground station's CURVE "
                                      "key (add its public key to the board's readers/ folder)")
                if event != zmq.EVENT_DISCONNECTED:
                    self.last_failure = ("the CURVE handshake failed: check the board's server key"
                                         if self.curve is not None
                                         else "the handshake failed (is CURVE on?)")
                else:
                    self.drops += 1
                    self.last_failure = (f"the link dropped {self.drops}x (a reply frame over "
                                         f"{p.MAX_REPLY_FRAME} bytes is refused that way)")
                raise LinkDropped(self.url, what, timeout)
            if sock not in ready:
                if time.monotonic() >= deadline:
                    self.reset()
                    raise BoardTimeout(self.url, what, timeout)
                continue
            reply = _reply(sock.recv_multipart(copy=False))
            if reply is not None and reply.id in ids:
                return reply

    def request(self, msg: p.Message, expect: type[T], timeout_s: float | None = None) -> T:
        self.send(msg)
        reply = self.recv({msg.id}, msg.VERB.decode(), timeout_s)
        if isinstance(reply, p.Error):
            raise remote_error(self.board, reply)
        if not isinstance(reply, expect):
            raise RemoteError(self.board, "BAD_REPLY",
                              f"expected {expect.__name__}, got {type(reply).__name__}")
        return reply

    # -- requests ----------------------------------------------------------------------------------
    def hello(self) -> p.Welcome:
        w = self.request(p.Hello(id=self.next_id(), client="camctl-ground"), p.Welcome)
        self.board = w.board
        self.chunk_max = w.chunk_max
        self.window = w.window
        self.board_id = w.board_id
        return w

    def status(self) -> dict:
        return self.request(p.Status(id=self.next_id()), p.State).status

    def command(self, name: str, /, **args: Any) -> dict:
        return self.request(p.Command(id=self.next_id(), name=name, args=args), p.Done).result

    def ping(self) -> int:
        return self.request(p.Ping(id=self.next_id()), p.Pong).mono_ns

    def list(self, flight: str | None = None) -> list[p.SegmentInfo]:
        """The valid entries of the board's LISTING (see :meth:`listing` for those left out)."""
        return self.listing(flight).segments

    def listing(self, flight: str | None = None) -> p.Listing:
        """The LISTING: ``segments`` valid, ``rejected`` the entries left out (one line each)."""
        # this ground takes a sensor's segments as their own kind (an older board ignores kinds)
        return self.request(p.List(id=self.next_id(), flight=flight,
                                   kinds=(p.SEGMENT_SAMPLES,)), p.Listing)

    def thumbs(self, flight: str, *, camera: str | None = None, segment: str | None = None,
               every: int = 0, width: int = 160, wait: bool = True,
               max_previews: int = p.MAX_PREVIEWS) -> list[tuple[p.ThumbInfo, bytes]] | None:
        """Every preview the board makes for this flight / camera / segment (all pages).

        ``wait=False``: None when the board answers that it is still making them (it goes on making
        them; ask again later) instead of waiting here. More than ``max_previews`` previews (e.g.
        a segment's listed frames; never above ``p.MAX_PREVIEWS``), more than
        ``p.MAX_PREVIEW_BYTES`` of JPEG, or a page over ``p.MAX_THUMBS_PAGE_BYTES``: UnsafeReply,
        naming the board (a board saying ``more`` forever is stopped there)."""
        out: list[tuple[p.ThumbInfo, bytes]] = []
        cap = max(0, min(max_previews, p.MAX_PREVIEWS))
        got_bytes = 0
        waited = 0.0
        what = segment or flight
        while True:
            page = self.request(p.Thumbs(id=self.next_id(), flight=flight, camera=camera,
                                         segment=segment, every=every, width=width, skip=len(out)),
                                p.Thumbnails)
            page_bytes = sum(len(j) for j in page.jpegs)
            got_bytes += page_bytes
            if page_bytes > p.MAX_THUMBS_PAGE_BYTES:
                raise UnsafeReply(f"board {p.printable(self.board)}: a THUMBNAILS page of "
                                  f"{what} has {page_bytes} bytes of previews (limit "
                                  f"{p.MAX_THUMBS_PAGE_BYTES}): refused")
            if len(out) + len(page.thumbs) > cap or got_bytes > p.MAX_PREVIEW_BYTES:
                raise UnsafeReply(f"board {p.printable(self.board)}: previews of {what} go on "
                                  f"past {len(out) + len(page.thumbs)} previews / {got_bytes} "
                                  f"bytes (limit {cap} previews, {p.MAX_PREVIEW_BYTES} bytes): "
                                  "the rest refused")
            out.extend(zip(page.thumbs, page.jpegs, strict=True))
            if page.thumbs:
                waited = 0.0
            if not page.more:
                return out
            if not page.thumbs:
                if not page.retry_ms:
                    # an empty page that is not "still making them": nothing more to get
                    return out
                if not wait and not out:
                    return None
                if waited >= self.timeout_s:
                    raise BoardTimeout(self.url,
                                       f"THUMBS of {segment or flight} (previews not ready)",
                                       self.timeout_s)
                waited += page.retry_ms / 1000
                # the board asked to come back: its worker is on it
                time.sleep(page.retry_ms / 1000)

    def fetch_file(self, seg: p.SegmentInfo, dest: Path, *, window: int = 8, chunk_kb: int = 256,
                   on_bytes: Callable[[int], None] | None = None, attempts: int = 2) -> str:
        """Download ``seg`` to ``dest``: see :func:`camctl.ground.download.fetch_file`."""
        return download.fetch_file(self, seg, dest, window=window, chunk_kb=chunk_kb,
                                   on_bytes=on_bytes, attempts=attempts)

    def start_file(self, seg: p.SegmentInfo, dest: Path, *, window: int = 8, chunk_kb: int = 256,
                   on_bytes: Callable[[int], None] | None = None) -> Callable[[], bool] | None:
        """Receive ``seg`` into ``dest.part``: see :func:`camctl.ground.download.start_file`."""
        return download.start_file(self, seg, dest, window=window, chunk_kb=chunk_kb,
                                   on_bytes=on_bytes)


def remote_error(board: str, reply: p.Error) -> RemoteError:
    """The RemoteError of an ERROR reply, its board text made printable (no escape codes)."""
    err = RemoteError(p.printable(board, 80), p.printable(reply.code, 40),
                      p.printable(reply.message))
    err.retry_ms = reply.retry_ms  # type: ignore[attr-defined]  # BUSY: when to ask again
    return err


def _reply(frames: list[zmq.Frame]) -> p.Message | None:
    """A reply decoded (CHUNK payloads stay zero-copy, see protocol.Chunk); None for garbage from a
    confused board (ignored: the real reply is waited for)."""
    try:
        return p.decode(frames, allowed=p.REPLIES)
    except ProtocolError:
        return None
