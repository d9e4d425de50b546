"""Board side of the retrieval protocol: :class:`Publisher`, a ZeroMQ ROUTER serving the store and
a PUB for live events, on one server thread.

The daemon hands it a :class:`Board` and calls :meth:`Publisher.publish` from any thread for PUB
topics. The answers are in :mod:`~camctl.board.publish.handlers`, the per-peer backlog in
:mod:`~camctl.board.publish.backlog`, socket options and CURVE in
:mod:`~camctl.board.publish.sockets`; wire messages in :mod:`camctl.common.protocol`, the
protocol in ``docs/protocol.md``.

Example::

    pub = Publisher(board, PublishConfig(bind="tcp://127.0.0.1:*", events="tcp://127.0.0.1:*"))
    pub.start()
    pub.publish("phase", {"phase": "LANDED"})
    ...
    pub.close()
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import zmq

from camctl.board.config import PublishConfig
from camctl.board.publish.backlog import Backlogs
from camctl.board.publish.budget import ReplyBudget, tracked
from camctl.board.publish.catalog import Catalog
from camctl.board.publish.guard import Connections
from camctl.board.publish.handlers import THUMBS_PAGE_BYTES, Handlers, decode_request
from camctl.board.publish.memory import MemoryWatch, malloc_trim, rss_bytes
from camctl.board.publish.previews import Previews
from camctl.board.publish.sockets import (
    configure_pub,
    configure_router,
    curve_server,
    peer_fd,
    peer_name,
    recv_frames,
    start_curve,
    verb_of,
)
from camctl.common import protocol as p
from camctl.common.lifecycle import Startable
from camctl.exc import CamctlError, ProtocolError

__all__ = ["Board", "Publisher"]

log = logging.getLogger("camctl.board.publish")

_QUEUE_MAX = 1024
_WARM_CHECK_S = 0.5  # how often the server thread asks whether the board serves (to start previews)
_BACKLOG_POLL_MS = 5  # how often replies owed to a peer with a full queue are retried
_POLL_MS = 100  # the longest wait on the sockets: refused connections are cut as often
_WATCH_S = 0.02  # how often the memory watchdog reads the resident size (a few µs each)
_STALL_S = 10.0  # a peer whose replies stopped leaving this long is cut when others need the budget
_PEER_FDS = 1024  # peers (identities) whose connection fd is remembered, most recent
_REBIND_S = 5.0  # how long a re-created ROUTER tries to bind its endpoint again
_RESET_LOG_S = 10.0  # at most one warning about watchdog resets this often


class Board(Protocol):
    """The daemon as the publisher sees it."""

    board: str
    store_root: Path

    def status(self) -> dict: ...

    def serving(self) -> bool: ...

    def open_segments(self) -> set[Path]: ...

    def command(self, name: str, args: dict) -> dict: ...


class Publisher(Startable):
    """ROUTER request server + PUB event socket for one board, on its own thread.

    Every client is bounded: a window of outstanding requests (replies that do not fit its queue
    or the reply memory budget wait in a per-peer backlog, never dropped unsaid), at most
    ``p.MAX_FRAMES`` frames per request, a few preview jobs; at most ``publish.max_connections``
    connections are served, and a watchdog re-creates the ROUTER when the publisher grows past
    its share of ``publish.memory_mb`` (docs/protocol.md, Limits). With CURVE on, COMMAND needs
    an operator key; on a board with real GPIO lines and CURVE off, ``arm``/``disarm``/``event``
    need ``publish.unsafe_remote_commands``, and a remote ``event`` ``publish.remote_events``.

    ``rss`` (keyword-only) replaces the watchdog's reading of this process's resident size.
    """

    def __init__(self, board: Board, config: PublishConfig, *,
                 context: zmq.Context | None = None,
                 rss: Callable[[], int] | None = None) -> None:
        self.board = board
        self.config = config
        self._own_ctx = context is None
        self._ctx = context if context is not None else zmq.Context()
        self._queue: queue.Queue[tuple[str, bytes]] = queue.Queue(maxsize=_QUEUE_MAX)
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._auth: Any = None
        self._router: zmq.Socket | None = None
        self._pub: zmq.Socket | None = None
        self._closed = False
        self.catalog = Catalog(board.store_root)
        self.previews = Previews(dense_s=config.thumbs_dense_s)
        self._handlers = Handlers(board, config, self.catalog, self.previews)
        # reply bytes handed to libzmq and not yet released: a quarter of the memory budget in all,
        # per peer what its window of chunks takes (at most an eighth of that)
        total = config.memory_mb << 18
        chunks = self.window * self._handlers.chunk_max
        self.budget = ReplyBudget(total, max(self._handlers.chunk_max, min(chunks, total // 8)))
        # peers whose reply queue is full, or whose next reply is over budget -> their requests
        self._backlogs = Backlogs(board.board, self.window, self._answer, self._send, peer_name,
                                  self._fits)
        # TCP connections of both sockets, at most publish.max_connections served
        self.connections = Connections(board.board, config.max_connections)
        self._monitors: dict[zmq.Socket, zmq.Socket] = {}  # monitor -> the socket it watches
        self._peer_fds: OrderedDict[bytes, int] = OrderedDict()  # identity -> its connection fd
        # resident size growth over the start, at most publish.memory_mb (``rss``: a test seam)
        self.memory = MemoryWatch(config.memory_mb << 20, rss=rss or rss_bytes)
        self.resets = 0  # times the watchdog re-created the ROUTER
        self._reset_logged_at = -_RESET_LOG_S
        self._tripped: int | None = None  # set by the watchdog thread: the RSS that tripped it
        self._watchdog: threading.Thread | None = None
        self.stall_s = _STALL_S
        self._poller = zmq.Poller()
        self._warm_at = 0.0  # monotonic, the next serving() check (previews start on landing)
        self._warmed = False
        self.router_endpoint = ""
        self.pub_endpoint = ""
        self.dropped_events = 0
        self.requests = 0
        self.errors = 0

    def __repr__(self) -> str:
        state = "closed" if self._closed else ("running" if self._thread else "new")
        return f"<Publisher board={self.board.board!r} {state} router={self.router_endpoint!r}>"

    @property
    def allow(self) -> Any:
        """The CURVE allow-list (:class:`camctl.common.keys.AllowList`) when CURVE is on, else
        None."""
        return self._handlers.allow

    @property
    def window(self) -> int:
        """Requests a client may have outstanding: ``p.MAX_WINDOW``, fewer when chunks are big."""
        return self._handlers.window

    def start(self) -> None:
        """Bind both sockets and start the server thread (CURVE when ``config.curve_keys`` is
        set)."""
        if self._thread is not None or self._closed:
            raise CamctlError(f"publisher for {self.board.board!r} already started or closed")
        try:
            self._open_sockets()
        except Exception:
            self.close()
            raise
        self._thread = threading.Thread(target=self._run, name=f"camctl-publish-{self.board.board}",
                                        daemon=True)
        self._thread.start()
        self._watchdog = threading.Thread(target=self._watch_memory, daemon=True,
                                          name=f"camctl-publish-memory-{self.board.board}")
        self._watchdog.start()
        log.info("board %s serving on %s, events on %s", self.board.board, self.router_endpoint,
                 self.pub_endpoint)

    def _open_sockets(self) -> None:
        self.memory.start()
        self._router = self._ctx.socket(zmq.ROUTER)
        self._pub = self._ctx.socket(zmq.PUB)
        configure_router(self._router, self.window)
        configure_pub(self._pub)
        if self.config.curve_keys:
            self._auth, self._handlers.allow = start_curve(self._ctx, self.config.curve_keys,
                                                           (self._router, self._pub))
        else:
            log.warning("board %s: CURVE is off, the fetch port %s and event port %s are open to "
                        "anyone who can reach them (set publish.curve_keys)", self.board.board,
                        self.config.bind, self.config.events)
        self._watch(self._router, "router")
        self._watch(self._pub, "pub")
        self._router.bind(self.config.bind)
        self._pub.bind(self.config.events)
        self.router_endpoint = self._router.getsockopt(zmq.LAST_ENDPOINT).decode()
        self.pub_endpoint = self._pub.getsockopt(zmq.LAST_ENDPOINT).decode()
        self._poller.register(self._router, zmq.POLLIN)
        self._poller.register(self._wake_r, zmq.POLLIN)

    def _watch(self, sock: zmq.Socket, kind: str) -> None:
        mon = self.connections.watch(sock, kind)
        self._monitors[mon] = sock
        self._poller.register(mon, zmq.POLLIN)

    def _unwatch(self, sock: zmq.Socket) -> None:
        for mon, watched in list(self._monitors.items()):
            if watched is sock:
                self._poller.unregister(mon)
                del self._monitors[mon]
                self.connections.unwatch(mon)

    def _reset_router(self, rss: int) -> None:
        """The memory watchdog tripped: close the ROUTER (every connection and what libzmq held
        for it, an unfinished multipart message included) and bind it again on its endpoint.
        Honest clients time out, reconnect and resume (camctl.ground.client)."""
        assert self._router is not None
        now = time.monotonic()
        if now - self._reset_logged_at >= _RESET_LOG_S:  # one line, however often it trips
            log.warning("board %s: the publisher's resident size grew %d MB to %d MB, over %d%% "
                        "of its budget of %d MB (publish.memory_mb): every fetch connection is "
                        "dropped (clients reconnect); %d reset(s) so far", self.board.board,
                        (rss - self.memory.baseline) >> 20, rss >> 20,
                        round(100 * self.memory.mark / self.memory.budget),
                        self.memory.budget >> 20, self.resets + 1)
            self._reset_logged_at = now
        self._poller.unregister(self._router)
        self._unwatch(self._router)
        self._router.close(linger=0)
        self._router = None
        self._backlogs.clear()
        self._peer_fds.clear()
        router = self._ctx.socket(zmq.ROUTER)
        configure_router(router, self.window)
        if self.config.curve_keys:
            curve_server(router, self.config.curve_keys)
        self._watch(router, "router")
        deadline = time.monotonic() + _REBIND_S
        while True:  # the old listener is closed by libzmq's I/O thread, shortly after close()
            try:
                router.bind(self.router_endpoint)
                break
            except zmq.ZMQError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.01)
        self._router = router
        self._poller.register(router, zmq.POLLIN)
        malloc_trim()  # libzmq frees the old connections' messages on its I/O thread, about now
        self.resets += 1

    def publish(self, topic: str, body: dict) -> bool:
        """Queue ``[topic, json(body)]`` for the PUB socket; never blocks. False when dropped (queue
        full)."""
        if self._closed:
            return False
        try:
            data = json.dumps(body, separators=(",", ":"), default=str).encode("utf-8")
            self._queue.put_nowait((topic, data))
        except queue.Full:
            self.dropped_events += 1
            return False
        with contextlib.suppress(BlockingIOError, OSError):
            os.write(self._wake_w, b"\x01")
        return True

    def reload_keys(self) -> None:
        """Re-read the CURVE allow-lists now (the daemon calls this on SIGHUP)."""
        if self.allow is not None:
            self.allow.reload()

    def close(self) -> None:
        """Stop the thread and close the sockets (linger 0). Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"\x01")
        for thread in (self._thread, self._watchdog):
            if thread is not None:
                thread.join(timeout=30)
        self.previews.close()
        self.catalog.close()
        self.connections.close()
        for sock in (self._router, self._pub):
            if sock is not None:
                sock.close(linger=0)
        if self._auth is not None:
            self._auth.stop()
        for fd in (self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):
                os.close(fd)
        if self._own_ctx:
            self._ctx.term()

    # -- server thread -------------------------------------------------------------------------
    def _watch_memory(self) -> None:
        """The watchdog's thread: reads the resident size every few ms and wakes the server
        thread, which re-creates the ROUTER (only the server thread touches the sockets)."""
        while not self._stop.wait(_WATCH_S):
            rss = self.memory.check()
            if rss is not None:
                self._tripped = rss
                with contextlib.suppress(BlockingIOError, OSError):
                    os.write(self._wake_w, b"\x01")

    def _run(self) -> None:
        assert self._router is not None and self._pub is not None
        while not self._stop.is_set():
            try:
                events = dict(self._poller.poll(_BACKLOG_POLL_MS if self._backlogs else _POLL_MS))
            except zmq.ZMQError:
                break
            rss, self._tripped = self._tripped, None
            if rss is not None:
                self._reset_router(rss)
                continue
            for mon in list(self._monitors):
                if mon in events:
                    self.connections.on_monitor(mon)
            self.connections.tick()
            if self._backlogs:
                self._backlogs.flush()
            if self._wake_r in events:
                with contextlib.suppress(BlockingIOError, OSError):
                    os.read(self._wake_r, 4096)
            self._drain_events()
            self._maybe_warm()
            if self._router in events:
                self._serve_burst()

    def _serve_burst(self) -> None:
        """Serve the requests waiting, at most a bounded burst, then look at events again."""
        for _ in range(64):
            try:
                ident, item = self._recv()
            except zmq.ZMQError:  # zmq.Again included: nothing more waiting
                break
            self._serve(ident, item)

    def _maybe_warm(self) -> None:
        """Once the board serves, queue previews of every finished segment (made off this
        thread)."""
        now = time.monotonic()
        if now < self._warm_at:
            return
        self._warm_at = now + _WARM_CHECK_S
        try:
            serving = bool(self.board.serving())
        except Exception:
            return
        self.previews.hold(not serving)  # no preview work while a flight is being recorded
        if not serving:
            self._warmed = False  # a new flight: warm again after its landing
            return
        if self._warmed:
            return
        self._warmed = True
        every, root = self.config.thumbs_every, self.catalog.root
        self.previews.warm([(root / s.path, s.path, s.camera, every, 160)
                            for s in self.catalog.listing(None, set(), (p.SEGMENT_SAMPLES,))
                            if s.kind == "segment"])  # cameras only: a sensor has no previews

    # -- the PUB side ------------------------------------------------------------------------
    def _drain_events(self) -> None:
        assert self._pub is not None
        while True:
            try:
                topic, data = self._queue.get_nowait()
            except queue.Empty:
                return
            try:
                self._pub.send_multipart([topic.encode("utf-8", "replace"), data], zmq.NOBLOCK)
            except zmq.ZMQError:
                self.dropped_events += 1

    # -- the ROUTER side -----------------------------------------------------------------------
    def _recv(self) -> tuple[zmq.Frame, p.Message]:
        """One request as (identity frame, decoded request or the ERROR that answers it): the parts
        of a message beyond ``p.MAX_FRAMES`` are dropped as they arrive (never held) and the request
        answered TOO_LARGE (logged with the peer)."""
        assert self._router is not None
        ident, msg, extra = recv_frames(self._router)
        fd = peer_fd(ident)
        if fd >= 0:
            self._peer_fds[ident.bytes] = fd
            self._peer_fds.move_to_end(ident.bytes)
            if len(self._peer_fds) > _PEER_FDS:
                self._peer_fds.popitem(last=False)
        if self.connections.request(fd):  # over the connection cap: told so, then cut
            return ident, p.Error(id=p.peek_id(msg), code=p.E_BUSY,
                                  message=self.connections.busy_message)
        if extra:
            text = f"a message has at most {p.MAX_FRAMES} frames, got {len(msg) + extra}"
            log.warning("board %s: refused %s from %s: %s %s", self.board.board, verb_of(msg),
                        peer_name(ident), p.E_TOO_LARGE, text)
            return ident, p.Error(id=p.peek_id(msg), code=p.E_TOO_LARGE, message=text)
        return ident, decode_request(msg)

    def _send(self, ident: zmq.Frame, reply: p.Message) -> bool:
        """Send ``reply``; False when the peer's queue is full (it has more than its window
        unread). Payload frames go zero-copy and tracked: the reply budget counts them until
        libzmq frees them."""
        assert self._router is not None
        frames = reply.encode()
        head, payload = frames[:4], frames[4:]
        try:
            if not payload:
                self._router.send_multipart([ident, *head], zmq.NOBLOCK)
            else:
                parts, tracker, size = tracked(payload)
                self._router.send_multipart([ident, *head, *parts], zmq.NOBLOCK, copy=False)
                self.budget.add(ident.bytes, tracker, size)
        except zmq.Again:
            return False
        except zmq.ZMQError:
            pass  # EHOSTUNREACH: the peer is gone, nobody to answer
        if isinstance(reply, p.Error):
            self.errors += 1
        return True

    def _fits(self, ident: zmq.Frame, item: p.Message) -> bool:
        """Whether the reply to ``item`` fits the reply budget now (small replies always do)."""
        size = (item.length if isinstance(item, p.Fetch)
                else THUMBS_PAGE_BYTES if isinstance(item, p.Thumbs) else 0)
        if size == 0 or self.budget.fits(ident.bytes, size):
            return True
        if self.budget.over_total(size):
            self._cut_stalled(ident.bytes)
        return False

    def _cut_stalled(self, waiting: bytes) -> None:
        """Others wait for the reply budget: cut the connections of peers whose replies have not
        moved for ``stall_s`` (they stopped reading); libzmq then frees what they were owed."""
        for peer in self.budget.stalled(self.stall_s):
            fd = self._peer_fds.get(peer, -1)
            if peer == waiting or fd < 0 or not self.connections.drop(fd):
                continue
            log.warning("board %s: dropped the connection of a client that has read nothing "
                        "for %.0f s while %d MB of replies wait for it (others wait for the "
                        "reply budget of %d MB)", self.board.board, self.stall_s,
                        self.budget.pending(peer) >> 20, self.budget.total >> 20)
            del self._peer_fds[peer]

    def _serve(self, ident: zmq.Frame, item: p.Message) -> None:
        """Answer one request (``item``, or the ERROR for a message that was not one) unless the
        peer's queue is full: then it waits in the peer's backlog, in order."""
        self.requests += 1
        self._backlogs.serve(ident, item)

    def _answer(self, req: p.Message, ident: zmq.Frame) -> p.Message:
        """The reply to ``req``: what its handler returns, or the ERROR that says why not."""
        if isinstance(req, p.Error):
            return req
        try:
            reply = self._handle(req, ident)
        except ProtocolError as exc:
            reply = p.Error(id=req.id, code=exc.code, message=exc.message)
        except CamctlError as exc:
            reply = p.Error(id=req.id, code=p.E_REFUSED, message=str(exc))
        except Exception as exc:  # the server never dies on input
            log.exception("board %s: request failed", self.board.board)
            reply = p.Error(id=req.id, code=p.E_INTERNAL, message=f"{type(exc).__name__}: {exc}")
        if isinstance(reply, p.Error) and reply.code in (p.E_FORBIDDEN, p.E_REFUSED):
            log.warning("board %s: refused %s from %s: %s %s", self.board.board, req.VERB.decode(),
                        peer_name(ident), reply.code, reply.message)
        return reply

    def _handle(self, req: p.Message, ident: zmq.Frame) -> p.Message:
        return self._handlers.handle(req, ident)
