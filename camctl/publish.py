"""Board side of the retrieval protocol: a ZeroMQ ROUTER serving the store and a PUB for live events.

:class:`Publisher` owns both sockets and one server thread. The daemon hands it a :class:`Board` (the
daemon's view: status, whether to serve, which files are still open, operator commands) and calls
:meth:`Publisher.publish` from any thread for PUB topics. Wire messages are in :mod:`camctl.protocol`;
the protocol itself is described in ``docs/protocol.md``.

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
import struct
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import zmq

from camctl import protocol as p
from camctl.config import PublishConfig
from camctl.exc import CamctlError, ProtocolError
from camctl.fsutil import sha256_file

__all__ = ["HEARTBEAT_IVL_MS", "HEARTBEAT_TIMEOUT_MS", "HEARTBEAT_TTL_MS", "Board", "Catalog", "Publisher",
           "set_heartbeats"]

log = logging.getLogger("camctl.publish")

HEARTBEAT_IVL_MS = 1000
HEARTBEAT_TIMEOUT_MS = 5000
HEARTBEAT_TTL_MS = 10000
_QUEUE_MAX = 1024
_THUMB_CACHE_BYTES = 16 << 20  # previews kept in memory (LRU by segment), bytes of JPEG
_THUMB_RETRY_MS = 50  # THUMBNAILS.retry_ms while a segment's previews are still being made
_OPEN_FILES = 16  # file descriptors the server keeps open for FETCH (LRU)
_WARM_CHECK_S = 0.5  # how often the server thread asks the board whether it serves (to start previews)
# MCAP record layouts (little endian) used to seek straight to the messages a preview needs
_CHUNK_FIXED = 1 + 8 + 8 + 8 + 8 + 4 + 4  # opcode, length, start, end, uncompressed size, crc, compression len
_MSG_HEAD = struct.Struct("<BQHIQQ")  # opcode, length, channel id, sequence, log_time, publish_time


class Board(Protocol):
    """The daemon as the publisher sees it."""

    board: str
    store_root: Path

    def status(self) -> dict: ...

    def serving(self) -> bool: ...

    def open_segments(self) -> set[Path]: ...

    def command(self, name: str, args: dict) -> dict: ...


def set_heartbeats(sock: zmq.Socket) -> None:
    """ZMTP heartbeats on ``sock`` so a dead peer is noticed (both sides of the protocol call this)."""
    sock.setsockopt(zmq.HEARTBEAT_IVL, HEARTBEAT_IVL_MS)
    sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, HEARTBEAT_TIMEOUT_MS)
    sock.setsockopt(zmq.HEARTBEAT_TTL, HEARTBEAT_TTL_MS)


# --- the store as served ------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Facts:
    sha256: str
    frames: int
    first_ns: int
    last_ns: int
    value: int


def _file_key(path: Path) -> tuple[str, int, int]:
    st = path.stat()
    return (str(path), st.st_size, st.st_mtime_ns)




def _iter_mcap(path: Path):
    """(topic, log_time, data) of every readable message; a torn tail just ends the iteration."""
    from mcap.reader import make_reader
    from mcap.records import Channel, Message
    from mcap.stream_reader import StreamReader

    with path.open("rb") as f:
        try:
            reader = make_reader(f)
            for _schema, channel, message in reader.iter_messages():
                yield channel.topic, message.log_time, message.data
            return
        except Exception:  # torn or unfinished: fall back to the streaming reader below
            pass
    with path.open("rb") as f:
        channels: dict[int, str] = {}
        try:
            for record in StreamReader(f, skip_magic=False).records:
                if isinstance(record, Channel):
                    channels[record.id] = record.topic
                elif isinstance(record, Message) and record.channel_id in channels:
                    yield channels[record.channel_id], record.log_time, record.data
        except Exception:
            return


def _frame_records(path: Path, camera: str) -> list[tuple[dict, bytes | None, int]]:
    """Per frame of a camera segment: (meta dict, jpeg or None, image timestamp ns), in file order."""

    images: list[tuple[int, bytes]] = []
    metas: list[dict] = []
    for topic, log_time, data in _iter_mcap(path):
        if topic == f"/{camera}/image":
            decoded = _decode_image(data, log_time)
            if decoded is None:
                continue
            images.append(decoded)
        elif topic == f"/{camera}/meta":
            try:
                meta = json.loads(data)
            except ValueError:
                continue
            if isinstance(meta, dict):
                metas.append(meta)
    by_ts = {m.get("timestamp_ns"): m for m in metas if isinstance(m.get("timestamp_ns"), int)}
    out: list[tuple[dict, bytes | None, int]] = []
    for i, (ts, jpeg) in enumerate(images):
        meta = by_ts.get(ts) or (metas[i] if i < len(metas) else {})
        out.append((meta, jpeg, ts))
    if not images:  # meta-only segment: still count frames for the listing
        out = [(m, None, m.get("timestamp_ns", 0) if isinstance(m.get("timestamp_ns"), int) else 0)
               for m in metas]
    return out


def _index_records(flight_dir: Path) -> dict[str, dict]:
    """Records of ``index.json`` by path relative to the flight folder (tolerant of its exact shape)."""
    try:
        data = json.loads((flight_dir / "index.json").read_text("utf-8"))
    except (OSError, ValueError):
        return {}
    found: dict[str, dict] = {}

    def walk(node: Any, camera: str) -> None:
        if isinstance(node, dict):
            if "sha256" in node:
                cam = node.get("camera", camera)
                for key in ("path", "file", "name"):
                    v = node.get(key)
                    if isinstance(v, str):
                        prefix = f"{flight_dir.name}/"
                        rel = v[len(prefix):] if v.startswith(prefix) else v if "/" in v else f"{cam}/{v}"
                        found[rel] = node
                        break
                else:
                    seq = node.get("seq")
                    if isinstance(seq, int) and cam:
                        found[f"{cam}/{seq:06d}.mcap"] = node
                return
            for k, v in node.items():
                walk(v, k if isinstance(v, dict | list) and k not in ("segments", "cameras") else camera)
        elif isinstance(node, list):
            for v in node:
                walk(v, camera)

    walk(data, "")
    return found


class Catalog:
    """What the board can serve: finished files under ``store_root`` with sha256 and frame facts.

    sha256 and facts are cached by (path, size, mtime_ns); index.json values are used when the size they
    record matches the file. FETCH reads through :meth:`open_fd` (fds kept open, ``os.pread``).
    """

    def __init__(self, store_root: Path) -> None:
        self.root = Path(store_root)
        self._facts: dict[tuple[str, int, int], _Facts] = {}
        self._fds: OrderedDict[str, tuple[Path, int, tuple[int, int, int]]] = OrderedDict()

    def flights(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(d.name for d in self.root.iterdir() if d.is_dir() and not d.is_symlink()
                      and p._NAME_RE.match(d.name))

    def listing(self, flight: str | None, open_segments: set[Path]) -> list[p.SegmentInfo]:
        opened = {_resolve(x) for x in open_segments}
        flights = [flight] if flight else self.flights()
        out: list[p.SegmentInfo] = []
        for fl in flights:
            fdir = self.root / fl
            if not fdir.is_dir() or fdir.is_symlink():
                continue
            index = _index_records(fdir)
            for name in ("flight.json", "index.json"):
                f = fdir / name
                if f.is_file() and not f.is_symlink() and _resolve(f) not in opened:
                    key = _file_key(f)
                    facts = self._facts.get(key) or _Facts(sha256_file(f), 0, 0, 0, 0)
                    self._facts[key] = facts
                    out.append(p.SegmentInfo(path=f"{fl}/{name}", size=key[1], sha256=facts.sha256,
                                             flight=fl, camera="", kind="meta"))
            for cdir in sorted(d for d in fdir.iterdir() if d.is_dir() and not d.is_symlink()):
                for seg in sorted(cdir.glob("*.mcap")):
                    if seg.is_symlink() or not seg.is_file() or _resolve(seg) in opened:
                        continue
                    rel = f"{cdir.name}/{seg.name}"
                    facts, size = self._segment_facts(seg, cdir.name, index.get(rel))
                    out.append(p.SegmentInfo(
                        path=f"{fl}/{rel}", size=size, sha256=facts.sha256, flight=fl, camera=cdir.name,
                        kind="events" if cdir.name == "events" else "segment", frames=facts.frames,
                        first_ns=facts.first_ns, last_ns=facts.last_ns, value=facts.value))
        return out

    def _segment_facts(self, seg: Path, camera: str, rec: dict | None) -> tuple[_Facts, int]:
        key = _file_key(seg)
        facts = self._facts.get(key)
        if facts is None:
            if rec and rec.get("size", key[1]) == key[1] and rec.get("mtime_ns", key[2]) == key[2] \
                    and isinstance(rec.get("sha256"), str) and len(rec["sha256"]) == 64:
                def num(*names: str) -> int:
                    for n in names:
                        v = rec.get(n)
                        if isinstance(v, int) and not isinstance(v, bool):
                            return v
                    return 0
                facts = _Facts(rec["sha256"].lower(), num("frames"), num("first_ns"), num("last_ns"),
                               num("max_value", "value"))
            else:
                facts = self._compute(seg, camera)
            self._facts[key] = facts
        return facts, key[1]

    def _compute(self, seg: Path, camera: str) -> _Facts:
        sha = sha256_file(seg)
        if camera == "events":
            n = sum(1 for _ in _iter_mcap(seg))
            return _Facts(sha, n, 0, 0, 0)
        recs = _frame_records(seg, camera)
        times = [ts for _, _, ts in recs]
        values = [m.get("value") for m, _, _ in recs if isinstance(m.get("value"), int)]
        return _Facts(sha, len(recs), min(times, default=0), max(times, default=0), max(values, default=0))

    def resolve(self, rel: str, open_segments: set[Path]) -> Path:
        """The servable file for a store-relative path; ProtocolError BAD_PATH, NOT_FOUND, OPEN_SEGMENT."""
        p.check_relpath(rel)
        parts = rel.split("/")
        shape_ok = (len(parts) == 2 and parts[1] in ("flight.json", "index.json")) or \
                   (len(parts) == 3 and parts[2].endswith(".mcap"))
        if not shape_ok:
            raise ProtocolError(p.E_BAD_PATH, f"not a servable path: {rel!r} (want <flight>/<camera>/"
                                              "<seq>.mcap, <flight>/flight.json or <flight>/index.json)")
        root = _resolve(self.root)
        try:
            target = (self.root / rel).resolve(strict=True)
        except (OSError, RuntimeError):
            raise ProtocolError(p.E_NOT_FOUND, f"no such file: {rel!r}") from None
        if not target.is_relative_to(root) or target != root.joinpath(*parts):
            raise ProtocolError(p.E_BAD_PATH, f"path leaves the store or goes through a link: {rel!r}")
        if not target.is_file():
            raise ProtocolError(p.E_NOT_FOUND, f"not a regular file: {rel!r}")
        if target in {_resolve(x) for x in open_segments}:
            raise ProtocolError(p.E_OPEN_SEGMENT, f"segment is still being written: {rel!r}")
        return target

    def open_fd(self, rel: str, open_segments: set[Path]) -> int:
        """A read-only fd of the servable file ``rel`` (validated as :meth:`resolve`), kept open across requests.

        Cached fds are re-checked with one ``lstat`` (inode, size, mtime) per call; with no open segments the
        path is not re-resolved. Only the server thread calls this.
        """
        hit = self._fds.get(rel)
        if hit is not None:
            target, fd, ident = hit
            try:
                st = os.stat(target, follow_symlinks=False)
                same = (st.st_ino, st.st_size, st.st_mtime_ns) == ident
            except OSError:
                same = False
            if same and (not open_segments or self.resolve(rel, open_segments) == target):
                self._fds.move_to_end(rel)
                return fd
            self._fds.pop(rel)
            os.close(fd)
        target = self.resolve(rel, open_segments)
        fd = os.open(target, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        st = os.fstat(fd)
        self._fds[rel] = (target, fd, (st.st_ino, st.st_size, st.st_mtime_ns))
        while len(self._fds) > _OPEN_FILES:
            _, (_, old, _) = self._fds.popitem(last=False)
            os.close(old)
        return fd

    def close(self) -> None:
        """Close the cached file descriptors. Safe twice."""
        while self._fds:
            _, (_, fd, _) = self._fds.popitem()
            with contextlib.suppress(OSError):
                os.close(fd)


class _Previews:
    """Previews made once per segment on one worker thread, cached in memory (LRU, bounded in JPEG bytes).

    The server thread only asks :meth:`get` (a dict lookup; on a miss the segment is queued, first in line)
    and :meth:`warm` (queue at the back). The worker is started on first use and stopped by :meth:`close`.
    """

    def __init__(self, max_bytes: int = _THUMB_CACHE_BYTES) -> None:
        self.max_bytes = max_bytes
        self._cache: OrderedDict[tuple, tuple[list[tuple[p.ThumbInfo, bytes]], int]] = OrderedDict()
        self._bytes = 0
        self._todo: OrderedDict[tuple, tuple[Path, str, str, int, int]] = OrderedDict()
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._closed = False
        self.made = 0  # segments whose previews the worker made

    def _key(self, seg: Path, every: int, width: int) -> tuple:
        return (*_file_key(seg), every, width)

    def get(self, seg: Path, rel: str, camera: str, every: int,
            width: int) -> list[tuple[p.ThumbInfo, bytes]] | None:
        """The previews of ``seg`` if made, else None (and the segment goes first in the worker's queue)."""
        key = self._key(seg, every, width)
        with self._cond:
            hit = self._cache.get(key)
            if hit is not None:
                self._cache.move_to_end(key)
                return hit[0]
            self._todo[key] = (seg, rel, camera, every, width)
            self._todo.move_to_end(key, last=False)
            self._start()
            self._cond.notify()
        return None

    def warm(self, jobs: list[tuple[Path, str, str, int, int]]) -> None:
        """Queue ``(seg, rel, camera, every, width)`` jobs behind any waiting request."""
        with self._cond:
            for job in jobs:
                with contextlib.suppress(OSError):
                    key = self._key(job[0], job[3], job[4])
                    if key not in self._cache and key not in self._todo:
                        self._todo[key] = job
            if self._todo:
                self._start()
                self._cond.notify()

    def _start(self) -> None:
        if self._thread is None and not self._closed:
            self._thread = threading.Thread(target=self._work, name="camctl-previews", daemon=True)
            self._thread.start()

    def _work(self) -> None:
        import simplejpeg  # noqa: F401  (imports here, not on the first request's clock)
        from foxglove_schemas_protobuf.CompressedImage_pb2 import CompressedImage  # noqa: F401
        from mcap.reader import make_reader  # noqa: F401

        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._todo or self._closed)
                if self._closed:
                    return
                key, job = self._todo.popitem(last=False)
            try:
                thumbs = _make_previews(*job)
            except Exception:  # a broken segment gets no previews, never a dead worker
                log.exception("previews of %s failed", job[1])
                thumbs = []
            size = sum(len(d) for _, d in thumbs) + 256
            with self._cond:
                self._cache[key] = (thumbs, size)
                self._bytes += size
                self.made += 1
                self._cond.notify_all()
                while self._bytes > self.max_bytes and len(self._cache) > 1:
                    _, (_, old) = self._cache.popitem(last=False)
                    self._bytes -= old

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=10)


def _make_previews(seg: Path, rel: str, camera: str, every: int, width: int) -> list[tuple[p.ThumbInfo, bytes]]:
    """Previews of every ``every``-th image of one camera segment, in file order (runs on the worker)."""
    picks = _indexed_picks(seg, camera, every)
    if picks is None:  # unfinished, compressed or odd file: parse every message
        picks = [(i, meta, jpeg, ts) for i, (meta, jpeg, ts) in enumerate(_frame_records(seg, camera))
                 if i % every == 0 and jpeg]
    out: list[tuple[p.ThumbInfo, bytes]] = []
    for i, meta, jpeg, ts in picks:
        small = _shrink(jpeg, width)
        if small is None:
            continue
        data, w, h = small
        seq = meta.get("seq") if isinstance(meta.get("seq"), int) else i
        phase = meta.get("phase") if isinstance(meta.get("phase"), str) else ""
        out.append((p.ThumbInfo(camera=camera, segment=rel, seq=seq, timestamp_ns=ts, phase=phase,
                                width=w, height=h), data))
    return out


def _indexed_picks(seg: Path, camera: str, every: int) -> list[tuple[int, dict, bytes, int]] | None:
    """(index, meta, jpeg, timestamp_ns) of every ``every``-th image, read through a finished segment's
    summary and message indexes (only those messages are read); None when the file has no usable index."""
    from mcap.reader import make_reader

    with seg.open("rb") as f:
        try:
            summary = make_reader(f).get_summary()
        except Exception:
            return None
        if summary is None or not summary.chunk_indexes:
            return None
        ids = {ch.topic: cid for cid, ch in summary.channels.items()}
        img_id, meta_id = ids.get(f"/{camera}/image"), ids.get(f"/{camera}/meta")
        if img_id is None:
            return None
        fd = f.fileno()
        images: list[tuple[int, int]] = []  # absolute file offsets of message records, and log times
        metas: dict[int, int] = {}
        for ci in sorted(summary.chunk_indexes, key=lambda c: c.chunk_start_offset):
            if ci.compression or img_id not in ci.message_index_offsets:
                if ci.compression:
                    return None
                continue
            base = ci.chunk_start_offset + _CHUNK_FIXED + 8
            lo = min(ci.message_index_offsets.values())
            block = os.pread(fd, ci.message_index_length, lo)
            for cid, off in ci.message_index_offsets.items():
                if cid not in (img_id, meta_id):
                    continue
                at = off - lo
                if block[at:at + 1] != b"\x07":
                    return None
                (n,) = struct.unpack_from("<I", block, at + 11)
                pairs = sorted((o, t) for t, o in struct.iter_unpack("<QQ", block[at + 15:at + 15 + n]))
                if cid == img_id:
                    images.extend((base + o, t) for o, t in pairs)
                else:
                    metas.update((t, base + o) for o, t in pairs)
        out: list[tuple[int, dict, bytes, int]] = []
        for i in range(0, len(images), every):
            pos, log_time = images[i]
            data = _read_message(fd, pos)
            if data is None:
                return None
            decoded = _decode_image(data, log_time)
            if decoded is None:
                continue
            ts, jpeg = decoded
            meta: Any = {}
            if log_time in metas:
                raw = _read_message(fd, metas[log_time])
                with contextlib.suppress(ValueError, TypeError):
                    meta = json.loads(raw) if raw is not None else {}
            out.append((i, meta if isinstance(meta, dict) else {}, jpeg, ts))
        return out


def _decode_image(data: bytes, log_time: int) -> tuple[int, bytes] | None:
    """(sensor timestamp ns, JPEG) of a foxglove.CompressedImage message, or None if it does not parse."""
    from foxglove_schemas_protobuf.CompressedImage_pb2 import CompressedImage

    img = CompressedImage()
    try:
        img.ParseFromString(data)
    except Exception:
        return None
    ts = img.timestamp.seconds * 1_000_000_000 + img.timestamp.nanos if img.HasField("timestamp") else log_time
    return ts, img.data


def _read_message(fd: int, pos: int) -> bytes | None:
    head = os.pread(fd, _MSG_HEAD.size, pos)
    if len(head) != _MSG_HEAD.size:
        return None
    opcode, length, *_ = _MSG_HEAD.unpack(head)
    body = length - (_MSG_HEAD.size - 9)
    if opcode != 0x05 or body < 0:
        return None
    data = os.pread(fd, body, pos + _MSG_HEAD.size)
    return data if len(data) == body else None


def _shrink(jpeg: bytes, width: int) -> tuple[bytes, int, int] | None:
    """A ``width``-pixel-wide q70 JPEG of ``jpeg`` (DCT-scaled decode, then a box-filter resize in numpy: the
    board needs no imaging library); None if broken."""
    import simplejpeg

    try:
        img = simplejpeg.decode_jpeg(jpeg, min_width=width, strict=False)
        h, w = img.shape[:2]
        if w > width:
            img = _box_resize(img, width, max(1, round(h * width / w)))
        return simplejpeg.encode_jpeg(img, quality=70), int(img.shape[1]), int(img.shape[0])
    except Exception:
        return None


def _box_resize(img: Any, width: int, height: int) -> Any:
    """``img`` (H x W x C uint8) resized down to ``width`` x ``height``: each output pixel is the mean of the
    source pixels it covers (an area filter, like Pillow's BOX; the DCT-scaled decode left at most 2x)."""
    import numpy as np

    h, w = img.shape[:2]
    ys = np.linspace(0, h, height + 1).astype(int)
    xs = np.linspace(0, w, width + 1).astype(int)
    rows = np.add.reduceat(img.astype(np.uint32), ys[:-1], axis=0) // np.diff(ys)[:, None, None]
    out = np.add.reduceat(rows, xs[:-1], axis=1) // np.diff(xs)[None, :, None]
    return np.ascontiguousarray(out.astype(np.uint8))


def _resolve(path: Path) -> Path:
    try:
        return Path(path).resolve()
    except (OSError, RuntimeError):
        return Path(path)


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
        self._router: zmq.Socket | None = None
        self._pub: zmq.Socket | None = None
        self._closed = False
        self.catalog = Catalog(board.store_root)
        self.previews = _Previews()
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
            set_heartbeats(self._router)
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

        from camctl.keys import load_server_curve

        keys = load_server_curve(self.config.curve_keys)
        self._auth = ThreadAuthenticator(self._ctx, log=logging.getLogger("camctl.publish.auth"))
        self._auth.start()
        self._auth.configure_curve(domain="*", location=str(keys.clients_dir))
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
                events = dict(poller.poll(500))
            except zmq.ZMQError:
                break
            if self._wake_r in events:
                with contextlib.suppress(BlockingIOError, OSError):
                    os.read(self._wake_r, 4096)
            self._drain_events()
            self._maybe_warm()
            if self._router in events:
                for _ in range(64):  # bounded burst, then look at events again
                    try:
                        frames = self._router.recv_multipart(zmq.NOBLOCK, copy=True)
                    except zmq.Again:
                        break
                    except zmq.ZMQError:
                        break
                    self._serve(frames)

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

    def _serve(self, frames: list[bytes]) -> None:
        if len(frames) < 2:
            return
        ident, msg = frames[0], frames[1:]
        self.requests += 1
        try:
            reply = self._handle(msg)
        except ProtocolError as exc:
            reply = p.Error(id=p.peek_id(msg), code=exc.code, message=exc.message)
        except CamctlError as exc:
            reply = p.Error(id=p.peek_id(msg), code=p.E_REFUSED, message=str(exc))
        except Exception as exc:  # the server never dies on input
            log.exception("board %s: request failed", self.board.board)
            reply = p.Error(id=p.peek_id(msg), code=p.E_INTERNAL, message=f"{type(exc).__name__}: {exc}")
        if isinstance(reply, p.Error):
            self.errors += 1
        try:
            assert self._router is not None
            self._router.send_multipart([ident, *reply.encode()], zmq.NOBLOCK, copy=False)
        except zmq.ZMQError:
            pass  # peer gone or its queue full: it will time out and ask again

    def _handle(self, msg: list[bytes]) -> p.Message:
        req = p.decode(msg, allowed=p.REQUESTS)
        board = self.board
        if isinstance(req, p.Hello):
            if req.version != p.PROTOCOL_VERSION:
                raise ProtocolError(p.E_BAD_VERSION, f"client speaks version {req.version}, board speaks "
                                                     f"{p.PROTOCOL_VERSION}")
            return p.Welcome(id=req.id, version=p.PROTOCOL_VERSION, board=board.board,
                             flights=self.catalog.flights(), serving=bool(board.serving()),
                             mono_ns=time.monotonic_ns(), wall_ns=time.time_ns(), chunk_max=self._chunk_max)
        if isinstance(req, p.Ping):
            return p.Pong(id=req.id, mono_ns=time.monotonic_ns())
        if isinstance(req, p.Status):
            return p.State(id=req.id, status=board.status())
        if isinstance(req, p.Command):
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
            return self._thumbs(req)
        raise ProtocolError(p.E_UNKNOWN_VERB, f"verb {req.VERB!r} is not a request")  # pragma: no cover

    @property
    def _chunk_max(self) -> int:
        return min(self.config.chunk_kb * 1024, p.MAX_CHUNK)

    def _thumbs(self, req: p.Thumbs) -> p.Thumbnails:
        every = req.every or self.config.thumbs_every
        opened = self.board.open_segments()
        if req.segment is not None:
            if not req.segment.startswith(f"{req.flight}/"):
                raise ProtocolError(p.E_BAD_FIELD, f"segment {req.segment!r} is not in flight {req.flight!r}")
            segs = [(req.segment, self.catalog.resolve(req.segment, opened))]
        else:
            if req.flight not in self.catalog.flights():
                raise ProtocolError(p.E_NOT_FOUND, f"no flight {req.flight!r}")
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
            thumbs = self.previews.get(path, rel, camera, every, req.width)
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
