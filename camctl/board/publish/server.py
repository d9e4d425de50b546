"""Board side of the retrieval protocol: a ZeroMQ ROUTER serving the store and a PUB for live events.

:class:`Publisher` owns both sockets and one server thread. The daemon hands it a :class:`Board` (the
daemon's view: status, whether to serve, which files are still open, operator commands) and calls
:meth:`Publisher.publish` from any thread for PUB topics. Wire messages are in :mod:`camctl.common.protocol`;
the protocol itself is described in ``docs/protocol.md``.

Every client is bounded: a window of outstanding requests (replies that do not fit its queue wait in a
per-peer backlog, never dropped unsaid), at most ``p.MAX_FRAMES`` frames per request, a few preview jobs.
With CURVE on, COMMAND needs an operator key (:class:`camctl.common.keys.AllowList`); on a board with real GPIO
lines a remote ``event`` needs ``publish.remote_events``.

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
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import zmq

from camctl.board.config import PublishConfig
from camctl.board.publish.catalog import Catalog
from camctl.board.publish.previews import _THUMB_RETRY_MS, Previews
from camctl.common import protocol as p
from camctl.exc import CamctlError, ProtocolError

__all__ = ["Board", "Publisher"]

log = logging.getLogger("camctl.board.publish")

_QUEUE_MAX = 1024
_WARM_CHECK_S = 0.5  # how often the server thread asks the board whether it serves (to start previews)
_BACKLOG_POLL_MS = 5  # how often replies owed to a peer with a full queue are retried


@dataclass
class _Backlog:
    """Requests of one peer whose reply queue is full, answered in order as it reads (at most a window)."""

    ident: zmq.Frame
    items: deque  # decoded requests, or ERROR replies for messages that were not requests
    head: p.Message | None = None  # the reply to items[0], made once
    dropped: int = 0
    first_dropped: int = 0
    logged_at: float = 0.0


class Board(Protocol):
    """The daemon as the publisher sees it."""

    board: str
    store_root: Path

    def status(self) -> dict: ...

    def serving(self) -> bool: ...

    def open_segments(self) -> set[Path]: ...

    def command(self, name: str, args: dict) -> dict: ...


# --- the server ---------------------------------------------------------------------------------------
class Publisher:
    """ROUTER request server + PUB event socket for one board, on its own thread."""

    def __init__(self, board: Board, config: PublishConfig, *, context: zmq.Context | None = None) -> None:
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
        self.allow: Any = None  # camctl.common.keys.AllowList when CURVE is on
        self._backlogs: dict[bytes, _Backlog] = {}  # peers whose reply queue is full -> their waiting requests
        self._router: zmq.Socket | None = None
        self._pub: zmq.Socket | None = None
        self._closed = False
        self.catalog = Catalog(board.store_root)
        self.previews = Previews()
        self._warm_at = 0.0  # monotonic time of the next serving() check (previews start on landing)
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
    def closed(self) -> bool:
        return self._closed

    def __enter__(self) -> Publisher:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> None:
        """Bind both sockets and start the server thread (CURVE when ``config.curve_keys`` is set)."""
        if self._thread is not None or self._closed:
            raise CamctlError(f"publisher for {self.board.board!r} already started or closed")
        try:
            self._router = self._ctx.socket(zmq.ROUTER)
            self._pub = self._ctx.socket(zmq.PUB)
            for sock in (self._router, self._pub):
                sock.setsockopt(zmq.LINGER, 0)
            self._router.setsockopt(zmq.MAXMSGSIZE, p.MAX_MESSAGE)
            # replies queued per peer: a client within its window never reaches this; a full queue makes
            # send raise (ROUTER_MANDATORY) instead of dropping the reply, and the peer's requests wait
            self._router.setsockopt(zmq.SNDHWM, self.window + 8)
            self._router.setsockopt(zmq.RCVHWM, p.MAX_WINDOW)
            self._router.setsockopt(zmq.ROUTER_MANDATORY, 1)
            p.set_heartbeats(self._router)
            self._pub.setsockopt(zmq.SNDHWM, 1000)
            if self.config.curve_keys:
                self._setup_curve()
            else:
                log.warning("board %s: CURVE is off, the fetch port %s and event port %s are open to anyone "
                            "who can reach them (set publish.curve_keys)", self.board.board,
                            self.config.bind, self.config.events)
            self._router.bind(self.config.bind)
            self._pub.bind(self.config.events)
            self.router_endpoint = self._router.getsockopt(zmq.LAST_ENDPOINT).decode()
            self.pub_endpoint = self._pub.getsockopt(zmq.LAST_ENDPOINT).decode()
        except Exception:
            self.close()
            raise
        self._thread = threading.Thread(target=self._run, name=f"camctl-publish-{self.board.board}",
                                        daemon=True)
        self._thread.start()
        log.info("board %s serving on %s, events on %s", self.board.board, self.router_endpoint,
                 self.pub_endpoint)

    def _setup_curve(self) -> None:
        from zmq.auth.thread import ThreadAuthenticator

        from camctl.common.keys import AllowList, load_server_curve

        keys = load_server_curve(self.config.curve_keys)
        self.allow = AllowList(keys.readers_dir, keys.operators_dir)
        self._auth = ThreadAuthenticator(self._ctx, log=logging.getLogger("camctl.board.publish.auth"))
        self._auth.start()
        # ZAP asks the allow-list on every new connection (it re-reads its folders when they change);
        # the authenticator then sets the message property User-Id to the client's Z85 public key
        self._auth.configure_curve_callback(domain="*", credentials_provider=self.allow)
        for sock in (self._router, self._pub):
            assert sock is not None
            sock.curve_secretkey = keys.secret
            sock.curve_publickey = keys.public
            sock.curve_server = True

    def publish(self, topic: str, body: dict) -> bool:
        """Queue ``[topic, json(body)]`` for the PUB socket; never blocks. False when dropped (queue full)."""
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

    def close(self) -> None:
        """Stop the thread and close the sockets (linger 0). Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"\x01")
        if self._thread is not None:
            self._thread.join(timeout=30)
        self.previews.close()
        self.catalog.close()
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

    # -- server thread ----------------------------------------------------------------------------------
    def _run(self) -> None:
        assert self._router is not None and self._pub is not None
        poller = zmq.Poller()
        poller.register(self._router, zmq.POLLIN)
        poller.register(self._wake_r, zmq.POLLIN)
        while not self._stop.is_set():
            try:
                events = dict(poller.poll(_BACKLOG_POLL_MS if self._backlogs else 500))
            except zmq.ZMQError:
                break
            if self._backlogs:
                self._flush_backlogs()
            if self._wake_r in events:
                with contextlib.suppress(BlockingIOError, OSError):
                    os.read(self._wake_r, 4096)
            self._drain_events()
            self._maybe_warm()
            if self._router in events:
                for _ in range(64):  # bounded burst, then look at events again
                    try:
                        ident, item = self._recv()
                    except zmq.Again:
                        break
                    except zmq.ZMQError:
                        break
                    self._serve(ident, item)

    def _maybe_warm(self) -> None:
        """Once the board serves, queue previews of every finished segment (made off this thread)."""
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
        self.previews.warm(self._preview_jobs(None, None, self.config.thumbs_every, 160, set()))

    def _preview_jobs(self, flight: str | None, camera: str | None, every: int, width: int,
                      opened: set[Path]) -> list[tuple[Path, str, str, int, int]]:
        """Listed camera segments (quick when index.json is current) as preview jobs, in path order."""
        root = self.catalog.root
        return [(root / s.path, s.path, s.camera, every, width) for s in self.catalog.listing(flight, opened)
                if s.kind == "segment" and (camera is None or s.camera == camera)]

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

    def _recv(self) -> tuple[zmq.Frame, p.Message]:
        """One request as (identity frame, decoded request or the ERROR that answers it), read frame by
        frame: the parts of a message beyond ``p.MAX_FRAMES`` are dropped as they arrive (never held) and the
        request answered TOO_LARGE (logged with the peer)."""
        assert self._router is not None
        sock = self._router
        ident = sock.recv(zmq.NOBLOCK, copy=False)
        msg: list[bytes] = []
        more = ident.more
        extra = 0
        while more:
            frame = sock.recv(copy=False)
            more = frame.more
            if len(msg) < p.MAX_FRAMES:
                msg.append(frame.bytes)
            else:
                extra += 1
        if extra:
            text = f"a message has at most {p.MAX_FRAMES} frames, got {len(msg) + extra}"
            log.warning("board %s: refused %s from %s: %s %s", self.board.board, _verb(msg), self._peer(ident),
                        p.E_TOO_LARGE, text)
            return ident, p.Error(id=p.peek_id(msg), code=p.E_TOO_LARGE, message=text)
        return ident, self._decode(msg)

    def _peer(self, ident: zmq.Frame) -> str:
        """Who sent a message, for the log: the CURVE key (Z85) when there is one, and the address."""
        def prop(name: str) -> str:
            try:
                return str(ident.get(name) or "")
            except (zmq.ZMQError, UnicodeDecodeError):
                return ""
        key = prop("User-Id")
        addr = prop("Peer-Address") or "?"
        return f"{addr} key={key}" if key and key != "anonymous" else addr

    def _send(self, ident: zmq.Frame, reply: p.Message) -> bool:
        """Send ``reply``; False when the peer's queue is full (it has more than its window unread)."""
        if isinstance(reply, p.Error):
            self.errors += 1
        try:
            assert self._router is not None
            self._router.send_multipart([ident, *reply.encode()], zmq.NOBLOCK, copy=False)
        except zmq.Again:
            return False
        except zmq.ZMQError:
            pass  # EHOSTUNREACH: the peer is gone, nobody to answer
        return True

    def _serve(self, ident: zmq.Frame, item: p.Message) -> None:
        """Answer one request (``item``, or the ERROR for a message that was not one) unless the peer's
        queue is full: then it waits in the peer's backlog, in order."""
        self.requests += 1
        backlog = self._backlogs.get(ident.bytes)
        if backlog is None:
            reply = self._answer(item, ident)
            if self._send(ident, reply):
                return
            # the peer's reply queue is full: its requests wait here, in order, until it reads
            backlog = self._backlogs[ident.bytes] = _Backlog(ident, deque([item]))
            backlog.head = reply
            return
        if len(backlog.items) < self.window:
            backlog.items.append(item)
            return
        # more than a window outstanding and not reading: dropped, counted, told once the queue drains
        backlog.dropped += 1
        if backlog.dropped == 1:
            backlog.first_dropped = item.id
        now = time.monotonic()
        if now - backlog.logged_at >= 1.0:
            backlog.logged_at = now
            log.warning("board %s: %s has more than %d requests outstanding and is not reading replies: "
                        "%d dropped so far", self.board.board, self._peer(ident), self.window, backlog.dropped)

    def _flush_backlogs(self) -> None:
        """Send what peers with a full queue are owed, as far as their queues take it."""
        for key, b in list(self._backlogs.items()):
            while b.items:
                if b.head is None:
                    b.head = self._answer(b.items[0], b.ident)
                if not self._send(b.ident, b.head):
                    break
                b.items.popleft()
                b.head = None
            if b.items:
                continue
            if b.dropped:
                note = p.Error(id=b.first_dropped, code=p.E_BUSY, message=(
                    f"{b.dropped} requests (the first id {b.first_dropped}) came while more than {self.window} "
                    f"were outstanding and were dropped: keep at most {self.window} requests outstanding"))
                if not self._send(b.ident, note):
                    continue
            del self._backlogs[key]

    def _decode(self, msg: list[bytes]) -> p.Message:
        """The request in ``msg``, or the ERROR reply that says why it is not one."""
        try:
            return p.decode(msg, allowed=p.REQUESTS)
        except ProtocolError as exc:
            return p.Error(id=p.peek_id(msg), code=exc.code, message=exc.message)

    def _answer(self, req: p.Message, ident: zmq.Frame) -> p.Message:
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
                        self._peer(ident), reply.code, reply.message)
        return reply

    def _authorise(self, req: p.Command, ident: zmq.Frame) -> None:
        """COMMAND needs an operator key when CURVE is on; a remote ``event`` on real GPIO needs
        ``publish.remote_events``. ProtocolError FORBIDDEN otherwise."""
        if self.allow is not None:
            try:
                key = str(ident.get("User-Id") or "").encode()
            except zmq.ZMQError:
                key = b""
            if not self.allow.is_operator(key):
                raise ProtocolError(p.E_FORBIDDEN, f"COMMAND {req.name} needs an operator key (this key is not in "
                                                   f"{self.allow.operators_dir})")
        if req.name == "event" and getattr(self.board, "gpio_real", False) and not self.config.remote_events:
            raise ProtocolError(p.E_FORBIDDEN, "remote events are off on a board with real GPIO lines (set "
                                               "publish.remote_events = true to allow them)")

    def reload_keys(self) -> None:
        """Re-read the CURVE allow-lists now (the daemon calls this on SIGHUP)."""
        if self.allow is not None:
            self.allow.reload()

    def _handle(self, req: p.Message, ident: zmq.Frame) -> p.Message:
        board = self.board
        if isinstance(req, p.Hello):
            if req.version != p.PROTOCOL_VERSION:
                raise ProtocolError(p.E_BAD_VERSION, f"client speaks version {req.version}, board speaks "
                                                     f"{p.PROTOCOL_VERSION}")
            return p.Welcome(id=req.id, version=p.PROTOCOL_VERSION, board=board.board,
                             flights=self.catalog.flights(), serving=bool(board.serving()),
                             mono_ns=time.monotonic_ns(), wall_ns=time.time_ns(), chunk_max=self._chunk_max,
                             window=self.window)
        if isinstance(req, p.Ping):
            return p.Pong(id=req.id, mono_ns=time.monotonic_ns())
        if isinstance(req, p.Status):
            return p.State(id=req.id, status=board.status())
        if isinstance(req, p.Command):
            self._authorise(req, ident)
            result = board.command(req.name, dict(req.args))
            return p.Done(id=req.id, result=result if isinstance(result, dict) else {"result": result})
        if not board.serving():
            raise ProtocolError(p.E_NOT_SERVING, f"board {board.board} is not serving now (phase "
                                                 f"{board.status().get('phase', '?')}); fetch after landing")
        if isinstance(req, p.List):
            if req.flight and req.flight not in self.catalog.flights():
                raise ProtocolError(p.E_NOT_FOUND, f"no flight {req.flight!r}")
            return p.Listing(id=req.id, board=board.board,
                             segments=self.catalog.listing(req.flight, board.open_segments()))
        if isinstance(req, p.Fetch):
            if req.length > self._chunk_max:
                raise ProtocolError(p.E_TOO_LARGE, f"length {req.length} is over this board's chunk limit "
                                                   f"{self._chunk_max}")
            fd = self.catalog.open_fd(req.path, board.open_segments())
            data = os.pread(fd, req.length, req.offset) if req.length else b""
            return p.Chunk(id=req.id, path=req.path, offset=req.offset, data=data)
        if isinstance(req, p.Thumbs):
            return self._thumbs(req, ident.bytes)
        raise ProtocolError(p.E_UNKNOWN_VERB, f"verb {req.VERB!r} is not a request")  # pragma: no cover

    @property
    def _chunk_max(self) -> int:
        return min(self.config.chunk_kb * 1024, p.MAX_CHUNK)

    @property
    def window(self) -> int:
        """Requests a client may have outstanding: ``p.MAX_WINDOW``, fewer when chunks are big."""
        return max(4, min(p.MAX_WINDOW, p.MAX_WINDOW_BYTES // self._chunk_max))

    def _thumbs(self, req: p.Thumbs, owner: bytes) -> p.Thumbnails:
        every = req.every or self.config.thumbs_every
        opened = self.board.open_segments()
        if req.segment is not None:
            if not req.segment.startswith(f"{req.flight}/"):
                raise ProtocolError(p.E_BAD_FIELD, f"segment {req.segment!r} is not in flight {req.flight!r}")
            segs = [(req.segment, self.catalog.resolve(req.segment, opened))]
        else:
            if req.flight not in self.catalog.flights():
                raise ProtocolError(p.E_NOT_FOUND, f"no flight {req.flight!r}")
            if req.camera is not None and not (self.catalog.root / req.flight / req.camera).is_dir():
                raise ProtocolError(p.E_NOT_FOUND, f"flight {req.flight!r} has no camera {req.camera!r}")
            segs = [(s.path, self.catalog.resolve(s.path, opened))
                    for s in self.catalog.listing(req.flight, opened)
                    if s.kind == "segment" and (req.camera is None or s.camera == req.camera)]
        infos: list[p.ThumbInfo] = []
        jpegs: list[bytes] = []
        index = 0
        more = False
        retry_ms = 0
        for n, (rel, path) in enumerate(segs):
            camera = rel.split("/")[1]
            if camera == "events" or not rel.endswith(".mcap"):
                continue
            thumbs = self.previews.get(path, rel, camera, every, req.width, owner)
            if thumbs is None:  # being made on the worker: answer with what is ready, ask to come back
                self.previews.warm([(pth, r, r.split("/")[1], every, req.width) for r, pth in segs[n + 1:]
                                    if r.split("/")[1] != "events" and r.endswith(".mcap")])
                more, retry_ms = True, _THUMB_RETRY_MS
                break
            for info, data in thumbs:
                if index >= req.skip:
                    if len(infos) >= req.limit:
                        more = True
                        break
                    infos.append(info)
                    jpegs.append(data)
                index += 1
            if more:
                break
        return p.Thumbnails(id=req.id, flight=req.flight, thumbs=infos, jpegs=jpegs, more=more, retry_ms=retry_ms)


def _verb(msg: list[bytes]) -> str:
    return bytes(msg[2][:16]).decode("ascii", "replace") if len(msg) > 2 else "?"
