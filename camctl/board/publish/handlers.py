"""The publisher's answers: one method per request verb (HELLO, PING, STATUS, COMMAND, LIST, FETCH,
THUMBS), who may send a COMMAND, and the limits a board announces (chunk size, window)."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import zmq

from camctl.board.config import PublishConfig
from camctl.board.publish.catalog import Catalog
from camctl.board.publish.previews import _THUMB_RETRY_MS, Previews
from camctl.common import protocol as p
from camctl.exc import ProtocolError

if TYPE_CHECKING:
    from camctl.board.publish.server import Board

__all__ = ["STATE_COMMANDS", "THUMBS_PAGE_BYTES", "Handlers", "decode_request"]

# JPEG bytes in one THUMBNAILS page: the page stops there (``more``: true). A page of 256 previews
# 640 pixels wide was ~15 MB, queued per peer up to its window (issue 25: +244 MB for one peer).
THUMBS_PAGE_BYTES = 1 << 20

# COMMANDs that change a flight's state (scene: a sim world's moment the IMU fires on): refused on
# real GPIO lines unless someone is trusted
STATE_COMMANDS = frozenset({"arm", "disarm", "event", "scene"})

_Segs = list[tuple[str, Path]]  # (path in the store, resolved path) of the segments a THUMBS covers


def decode_request(msg: list[bytes]) -> p.Message:
    """The request in ``msg``, or the ERROR reply that says why it is not one."""
    try:
        return p.decode(msg, allowed=p.REQUESTS)
    except ProtocolError as exc:
        return p.Error(id=p.peek_id(msg), code=exc.code, message=exc.message)


class Handlers:
    """The answer to each request of one board; raise ProtocolError for the ERROR reply.

    ``allow`` is the CURVE allow-list (:class:`camctl.common.keys.AllowList`) once CURVE is on.
    """

    def __init__(self, board: Board, config: PublishConfig, catalog: Catalog,
                 previews: Previews) -> None:
        self.board = board
        self.config = config
        self.catalog = catalog
        self.previews = previews
        self.allow: Any = None

    @property
    def chunk_max(self) -> int:
        """The longest FETCH this board answers, bytes."""
        return min(self.config.chunk_kb * 1024, p.MAX_CHUNK)

    @property
    def window(self) -> int:
        """Requests a client may have outstanding: ``p.MAX_WINDOW``, fewer when chunks are big."""
        return max(4, min(p.MAX_WINDOW, p.MAX_WINDOW_BYTES // self.chunk_max))

    def handle(self, req: p.Message, ident: zmq.Frame) -> p.Message:
        """The reply to ``req`` from the peer ``ident``; LIST, FETCH and THUMBS only while
        serving."""
        if isinstance(req, p.Hello):
            return self.hello(req)
        if isinstance(req, p.Ping):
            return p.Pong(id=req.id, mono_ns=time.monotonic_ns())
        if isinstance(req, p.Status):
            return p.State(id=req.id, status=self.board.status())
        if isinstance(req, p.Command):
            return self.command(req, ident)
        self._check_serving()
        if isinstance(req, p.List):
            return self.listing(req)
        if isinstance(req, p.Fetch):
            return self.fetch(req)
        if isinstance(req, p.Thumbs):
            return self.thumbs(req, ident.bytes)
        raise ProtocolError(p.E_UNKNOWN_VERB,  # pragma: no cover
                            f"verb {req.VERB!r} is not a request")

    def hello(self, req: p.Hello) -> p.Welcome:
        if req.version != p.PROTOCOL_VERSION:
            raise ProtocolError(p.E_BAD_VERSION, f"client speaks version {req.version}, board "
                                                 f"speaks {p.PROTOCOL_VERSION}")
        return p.Welcome(id=req.id, version=p.PROTOCOL_VERSION, board=self.board.board,
                         flights=self.catalog.flights(), serving=bool(self.board.serving()),
                         mono_ns=time.monotonic_ns(), wall_ns=time.time_ns(),
                         chunk_max=self.chunk_max, window=self.window,
                         board_id=getattr(self.board, "board_id", ""))

    def command(self, req: p.Command, ident: zmq.Frame) -> p.Done:
        self.authorise(req, ident)
        result = self.board.command(req.name, dict(req.args))
        return p.Done(id=req.id, result=result if isinstance(result, dict) else {"result": result})

    def authorise(self, req: p.Command, ident: zmq.Frame) -> None:
        """Who may COMMAND: with CURVE on, operator keys only. With CURVE off, a board on real GPIO
        lines takes no ``arm``/``disarm``/``event`` unless ``publish.unsafe_remote_commands``
        (mock-line boards, whose commands are their wiring, take them). A remote ``event`` on real
        GPIO lines also needs ``publish.remote_events``. ProtocolError FORBIDDEN otherwise."""
        gpio_real = bool(getattr(self.board, "gpio_real", False))
        if self.allow is not None:
            try:
                key = str(ident.get("User-Id") or "").encode()
            except zmq.ZMQError:
                key = b""
            if not self.allow.is_operator(key):
                raise ProtocolError(p.E_FORBIDDEN, f"COMMAND {req.name} needs an operator key "
                                                   f"(this key is not in "
                                                   f"{self.allow.operators_dir})")
        elif gpio_real and req.name in STATE_COMMANDS and not self.config.unsafe_remote_commands:
            raise ProtocolError(p.E_FORBIDDEN, f"COMMAND {req.name} is off on a board with real "
                                               "GPIO lines and no operator keys (set "
                                               "publish.curve_keys with a key in operators/, or "
                                               "publish.unsafe_remote_commands = true)")
        if req.name == "event" and gpio_real and not self.config.remote_events:
            raise ProtocolError(p.E_FORBIDDEN, "remote events are off on a board with real GPIO "
                                               "lines (set publish.remote_events = true to allow "
                                               "them)")

    def _check_serving(self) -> None:
        board = self.board
        if not board.serving():
            phase = board.status().get("phase", "?")
            raise ProtocolError(p.E_NOT_SERVING, f"board {board.board} is not serving now (phase "
                                                 f"{phase}); fetch after landing")

    def listing(self, req: p.List) -> p.Listing:
        if req.flight and req.flight not in self.catalog.flights():
            raise ProtocolError(p.E_NOT_FOUND, f"no flight {req.flight!r}")
        return p.Listing(id=req.id, board=self.board.board,
                         segments=self.catalog.listing(req.flight, self.board.open_segments(),
                                                       req.kinds))

    def fetch(self, req: p.Fetch) -> p.Chunk:
        if req.length > self.chunk_max:
            raise ProtocolError(p.E_TOO_LARGE, f"length {req.length} is over this board's chunk "
                                               f"limit {self.chunk_max}")
        fd = self.catalog.open_fd(req.path, self.board.open_segments())
        data = os.pread(fd, req.length, req.offset) if req.length else b""
        return p.Chunk(id=req.id, path=req.path, offset=req.offset, data=data)

    def thumbs(self, req: p.Thumbs, owner: bytes) -> p.Thumbnails:
        """The previews of a flight (or one camera, or one segment) from ``req.skip`` on, at most
        ``req.limit`` and about :data:`THUMBS_PAGE_BYTES` of JPEG; ``more`` (and ``retry_ms``
        while the worker is still making them) when there are more."""
        every = req.every or self.config.thumbs_every
        segs = self._thumb_segments(req)
        infos: list[p.ThumbInfo] = []
        jpegs: list[bytes] = []
        index = 0
        size = 0  # JPEG bytes in the page
        more = False
        retry_ms = 0
        for n, (rel, path) in enumerate(segs):
            camera = rel.split("/")[1]
            if camera == "events" or not rel.endswith(".mcap"):
                continue
            thumbs = self.previews.get(path, rel, camera, every, req.width, owner)
            if thumbs is None:  # being made on the worker: answer with what is ready, come back
                self.previews.warm([(pth, r, r.split("/")[1], every, req.width)
                                    for r, pth in segs[n + 1:]
                                    if r.split("/")[1] != "events" and r.endswith(".mcap")])
                more, retry_ms = True, _THUMB_RETRY_MS
                break
            for info, data in thumbs:
                if index >= req.skip:
                    if len(infos) >= req.limit or size >= THUMBS_PAGE_BYTES:
                        more = True
                        break
                    infos.append(info)
                    jpegs.append(data)
                    size += len(data)
                index += 1
            if more:
                break
        return p.Thumbnails(id=req.id, flight=req.flight, thumbs=infos, jpegs=jpegs, more=more,
                            retry_ms=retry_ms)

    def _thumb_segments(self, req: p.Thumbs) -> _Segs:
        """The segments a THUMBS asks about, checked: one named segment, or a flight's (or its
        camera's)."""
        opened = self.board.open_segments()
        if req.segment is not None:
            if not req.segment.startswith(f"{req.flight}/"):
                raise ProtocolError(p.E_BAD_FIELD, f"segment {req.segment!r} is not in flight "
                                                   f"{req.flight!r}")
            return [(req.segment, self.catalog.resolve(req.segment, opened))]
        if req.flight not in self.catalog.flights():
            raise ProtocolError(p.E_NOT_FOUND, f"no flight {req.flight!r}")
        if req.camera is not None and not (self.catalog.root / req.flight / req.camera).is_dir():
            raise ProtocolError(p.E_NOT_FOUND, f"flight {req.flight!r} has no camera "
                                               f"{req.camera!r}")
        return [(s.path, self.catalog.resolve(s.path, opened))
                for s in self.catalog.listing(req.flight, opened, (p.SEGMENT_SAMPLES,))
                if s.kind == "segment" and (req.camera is None or s.camera == req.camera)]
