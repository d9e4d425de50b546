"""Ground side of the retrieval protocol: a per-board :class:`Client` and the multi-board :func:`fetch`.

The client speaks :mod:`camctl.protocol` over one DEALER per board with per-request timeouts; a timeout
closes and recreates the DEALER (never REQ-style lockstep), so a link that comes back is used again.
:func:`fetch` pulls every board at once (a thread each), previews and event logs first, then segments by
value, resuming partial files (``<file>.part``: its size is the offset) and checking every sha256.

Example::

    report = fetch(["tcp://rig-a:5555", "tcp://rig-b:5555"], Path("drop-3"), give_up_after_s=30)
    print(report.summary()); raise SystemExit(0 if report.ok else 1)
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import os
import queue
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import zmq

from camctl import protocol as p
from camctl.exc import FetchError, ProtocolError, RemoteError
from camctl.fsutil import fsync_dir, sha256_file, start_writeback
from camctl.keys import ClientCurve
from camctl.publish import set_heartbeats

__all__ = ["BoardReport", "BoardTimeout", "Client", "FetchReport", "LinkDropped", "fetch", "ls_local", "ls_remote",
           "print_report", "status_many"]

_FSYNC_EVERY = 4 << 20
_SINK_THREADED = 1 << 20  # bytes still to come from which a download gets its writer and hasher threads
_SINK_QUEUE = 64  # chunks queued for the writer thread (16 MiB at 256 KiB): then the receiver waits
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
T = TypeVar("T")


class BoardTimeout(FetchError, TimeoutError):
    """A board did not answer a request within the client's timeout (the DEALER has been recreated)."""

    def __init__(self, url: str, what: str, timeout_s: float) -> None:
        self.url = url
        self.what = what
        self.timeout_s = timeout_s
        super().__init__(str(self))

    def __str__(self) -> str:
        return f"{self.url}: no answer to {self.what} within {self.timeout_s:g} s"


class LinkDropped(BoardTimeout):
    """The TCP link to a board dropped while a request was in flight (the DEALER has been recreated)."""

    def __str__(self) -> str:
        return f"{self.url}: link dropped while waiting for {self.what}"




class Client:
    """One board, one DEALER. Methods raise RemoteError (ERROR reply) or BoardTimeout (no reply in time)."""

    def __init__(self, url: str, *, timeout_s: float = 5.0, curve: ClientCurve | None = None,
                 context: zmq.Context | None = None) -> None:
        self.url = url
        self.timeout_s = float(timeout_s)
        self.curve = curve
        self._ctx = context if context is not None else zmq.Context.instance()
        self._sock: zmq.Socket | None = None
        self._monitor: zmq.Socket | None = None
        self._ids = itertools.count(1)
        self.board = url  # replaced by the board's name after hello()
        self.chunk_max = p.MAX_CHUNK
        self.bytes_received = 0  # CHUNK payload bytes, for resume accounting
        self.reconnects = 0
        self._closed = False

    def __repr__(self) -> str:
        return f"<Client {self.url!r} board={self.board!r}{' closed' if self._closed else ''}>"

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Close the socket (linger 0). Safe twice."""
        self._closed = True
        self.reset()

    def reset(self) -> None:
        """Drop the DEALER; the next request connects a fresh one (stale replies die with the old one)."""
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
            set_heartbeats(sock)
            if self.curve is not None:
                sock.curve_publickey = self.curve.public
                sock.curve_secretkey = self.curve.secret
                sock.curve_serverkey = self.curve.server_public
            # a dropped TCP link loses whatever was in flight: notice it at once instead of waiting out
            # the request timeout (the caller then resumes over a fresh DEALER)
            self._monitor = sock.get_monitor_socket(zmq.EVENT_DISCONNECTED)
            sock.connect(self.url)
            self.reconnects += 1  # sockets made, the first included
            self._sock = sock
        return self._sock

    def send(self, msg: p.Message) -> None:
        self._socket().send_multipart(msg.encode())

    def next_id(self) -> int:
        return next(self._ids)

    def recv(self, ids: set[int] | dict, what: str, timeout_s: float | None = None) -> p.Message:
        """The next reply whose id is in ``ids`` (others are stale and dropped); BoardTimeout on silence."""
        timeout = self.timeout_s if timeout_s is None else timeout_s
        sock = self._socket()
        poller = zmq.Poller()
        poller.register(sock, zmq.POLLIN)
        if self._monitor is not None:
            poller.register(self._monitor, zmq.POLLIN)
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            ready = dict(poller.poll(int(left * 1000) + 1)) if left > 0 else {}
            if self._monitor is not None and self._monitor in ready:
                self.reset()
                raise LinkDropped(self.url, what, timeout)
            if sock not in ready:
                if time.monotonic() >= deadline:
                    self.reset()
                    raise BoardTimeout(self.url, what, timeout)
                continue
            frames = sock.recv_multipart(copy=False)  # CHUNK payloads stay zero-copy (see protocol.Chunk)
            try:
                reply = p.decode(frames, allowed=p.REPLIES)
            except ProtocolError:
                continue  # garbage from a confused board: ignore, wait for the real reply
            if reply.id in ids:
                return reply

    def request(self, msg: p.Message, expect: type[T], timeout_s: float | None = None) -> T:
        self.send(msg)
        reply = self.recv({msg.id}, msg.VERB.decode(), timeout_s)
        if isinstance(reply, p.Error):
            raise RemoteError(self.board, reply.code, reply.message)
        if not isinstance(reply, expect):
            raise RemoteError(self.board, "BAD_REPLY",
                              f"expected {expect.__name__}, got {type(reply).__name__}")
        return reply

    # -- requests ---------------------------------------------------------------------------------------
    def hello(self) -> p.Welcome:
        w = self.request(p.Hello(id=self.next_id(), client="camctl-ground"), p.Welcome)
        self.board = w.board
        self.chunk_max = w.chunk_max
        return w

    def status(self) -> dict:
        return self.request(p.Status(id=self.next_id()), p.State).status

    def command(self, name: str, /, **args: Any) -> dict:
        return self.request(p.Command(id=self.next_id(), name=name, args=args), p.Done).result

    def ping(self) -> int:
        return self.request(p.Ping(id=self.next_id()), p.Pong).mono_ns

    def list(self, flight: str | None = None) -> list[p.SegmentInfo]:
        return self.request(p.List(id=self.next_id(), flight=flight), p.Listing).segments

    def thumbs(self, flight: str, *, camera: str | None = None, segment: str | None = None, every: int = 0,
               width: int = 160) -> list[tuple[p.ThumbInfo, bytes]]:
        """Every preview the board makes for this flight / camera / segment (all pages)."""
        out: list[tuple[p.ThumbInfo, bytes]] = []
        waited = 0.0
        while True:
            page = self.request(p.Thumbs(id=self.next_id(), flight=flight, camera=camera, segment=segment,
                                         every=every, width=width, skip=len(out)), p.Thumbnails)
            out.extend(zip(page.thumbs, page.jpegs, strict=True))
            if page.thumbs:
                waited = 0.0
            if not page.more:
                return out
            if not page.thumbs:
                if not page.retry_ms:
                    return out  # an empty page that is not "still making them": nothing more to get
                if waited >= self.timeout_s:
                    raise BoardTimeout(self.url, f"THUMBS of {segment or flight} (previews not ready)",
                                       self.timeout_s)
                waited += page.retry_ms / 1000
                time.sleep(page.retry_ms / 1000)  # the board asked to come back: its worker is on it

    def fetch_file(self, seg: p.SegmentInfo, dest: Path, *, window: int = 8, chunk_kb: int = 256,
                   on_bytes: Callable[[int], None] | None = None, attempts: int = 2) -> str:
        """Download ``seg`` to ``dest`` resuming ``dest.part``; returns ``"fetched"`` or ``"skipped"``.

        A complete ``dest`` with the listed sha256 is skipped. A mismatch deletes the part and fetches once
        more (``attempts`` in all), then raises FetchError. BoardTimeout leaves the part (fsync'd) for the
        next call to resume.
        """
        for attempt in range(1, max(1, attempts) + 1):
            finish = self.start_file(seg, dest, window=window, chunk_kb=chunk_kb, on_bytes=on_bytes)
            if finish is None:
                return "skipped"
            if finish():
                return "fetched"
            if attempt >= attempts:
                break
        raise FetchError(f"{self.board}: {seg.path}: sha256 does not match the listed {seg.sha256} after "
                         f"{max(1, attempts)} fetches")

    def start_file(self, seg: p.SegmentInfo, dest: Path, *, window: int = 8, chunk_kb: int = 256,
                   on_bytes: Callable[[int], None] | None = None) -> Callable[[], bool] | None:
        """Receive the rest of ``seg`` into ``dest.part``; None when a complete ``dest`` is there already.

        Returns ``finish()``, to call on any thread: it waits for the writes and the hash, then either
        fsyncs and renames the part to ``dest`` (True) or deletes it on a sha256 mismatch (False). So
        the next file can be on the wire while this one's tail is written, hashed and renamed.
        """
        dest = Path(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        if dest.exists():
            if dest.stat().st_size == seg.size and sha256_file(dest) == seg.sha256:
                if on_bytes:
                    on_bytes(seg.size)
                return None
            dest.unlink()
        part = dest.with_name(dest.name + ".part")
        if part.exists() and part.stat().st_size > seg.size:
            part.unlink()
        digest = self._download(seg, part, window=window, chunk_kb=chunk_kb, on_bytes=on_bytes)

        def finish() -> bool:
            if digest() == seg.sha256:
                os.replace(part, dest)
                with contextlib.suppress(OSError):
                    fsync_dir(dest.parent)
                return True
            part.unlink()
            return False
        return finish

    def _download(self, seg: p.SegmentInfo, part: Path, *, window: int, chunk_kb: int,
                  on_bytes: Callable[[int], None] | None) -> Callable[[], str]:
        """Append the rest of ``seg`` to ``part`` (window of FETCHes in flight); return ``digest()``, which
        waits for the writes (fsync'd) and returns the sha256 of the whole part.

        Chunks go in offset order to :class:`_Sink` (a writer and a hasher thread), so this thread only keeps
        the window full. An existing prefix is hashed first (read once). On an error the sink is closed (the
        part fsync'd) before the error propagates.
        """
        chunk = max(1, min(chunk_kb * 1024, self.chunk_max))
        window = max(1, window)
        h = hashlib.sha256()
        f = part.open("ab", buffering=0)
        try:
            offset = f.tell()
            if offset:
                with part.open("rb") as old:
                    while block := old.read(1 << 20):
                        h.update(block)
            sink = _Sink(f, h, threads=seg.size - offset >= _SINK_THREADED)
        except BaseException:
            f.close()
            raise
        next_req = offset
        inflight: dict[int, tuple[int, int]] = {}
        pending: dict[int, Any] = {}
        try:
            while offset < seg.size:
                while len(inflight) < window and next_req < seg.size:
                    length = min(chunk, seg.size - next_req)
                    rid = self.next_id()
                    self.send(p.Fetch(id=rid, path=seg.path, offset=next_req, length=length))
                    inflight[rid] = (next_req, length)
                    next_req += length
                reply = self.recv(inflight, f"FETCH {seg.path}")
                if isinstance(reply, p.Error):
                    raise RemoteError(self.board, reply.code, f"{seg.path}: {reply.message}")
                at, length = inflight.pop(reply.id)
                if not isinstance(reply, p.Chunk) or reply.offset != at or reply.path != seg.path:
                    raise RemoteError(self.board, "BAD_REPLY",
                                      f"{seg.path}: unexpected reply to FETCH at {at}")
                self.bytes_received += len(reply.data)
                if len(reply.data) != length:
                    raise FetchError(f"{self.board}: {seg.path}: {len(reply.data)} bytes at offset {at}, "
                                     f"asked {length}: the file is shorter than listed ({seg.size})")
                pending[at] = reply.data
                while offset in pending:
                    data = pending.pop(offset)
                    sink.put(data)
                    offset += len(data)
                    if on_bytes:
                        on_bytes(len(data))
        except BaseException:
            with contextlib.suppress(FetchError):  # the error in flight says more
                sink.close()
            raise

        def digest() -> str:
            sink.close()
            return h.hexdigest()
        return digest




class _Sink:
    """Writer of one download: chunks in the order given are written by one thread and hashed by another
    (both release the GIL, so on two cores they overlap instead of adding up). Every ``_FSYNC_EVERY``
    bytes the kernel is asked to start writing back (``sync_file_range``; fsync where that is missing),
    so the fsync at :meth:`close` has little left to do. :meth:`close` re-raises a write error. The
    queues are bounded."""

    def __init__(self, f: Any, h: Any, *, threads: bool = True) -> None:
        self._f = f
        self._h = h
        self._wq: queue.Queue[Any] = queue.Queue(maxsize=_SINK_QUEUE)
        self._hq: queue.Queue[Any] = queue.Queue(maxsize=_SINK_QUEUE)
        self._error: BaseException | None = None
        self._closed = False
        self._threads: list[threading.Thread] = []
        if threads:  # a small file is written and hashed on the caller's thread (no thread start per file)
            self._threads = [threading.Thread(target=self._write, name="camctl-fetch-sink", daemon=True),
                             threading.Thread(target=self._hash, name="camctl-fetch-hash", daemon=True)]
            for t in self._threads:
                t.start()

    def put(self, data: Any) -> None:
        if self._error is not None:
            raise FetchError(f"writing {self._f.name}: {self._error}") from self._error
        if not self._threads:
            try:
                view = memoryview(data)
                while view:
                    view = view[self._f.write(view):]
            except OSError as exc:
                self._error = exc
                raise FetchError(f"writing {self._f.name}: {exc}") from exc
            self._h.update(data)
            return
        self._wq.put(data)
        self._hq.put(data)

    def _hash(self) -> None:
        update = self._h.update
        while (data := self._hq.get()) is not None:
            update(data)

    def _write(self) -> None:
        f = self._f
        fd = f.fileno()
        start = f.tell()
        pos = start
        try:
            while (data := self._wq.get()) is not None:
                view = memoryview(data)
                while view:  # raw file: a write may be short
                    n = f.write(view)
                    view = view[n:]
                pos += len(data)
                if pos - start >= _FSYNC_EVERY:
                    if start_writeback is not None:
                        start_writeback(fd, start, pos - start)
                    else:
                        os.fsync(fd)
                    start = pos
        except BaseException as exc:  # reported by put()/close() on the receiving thread
            self._error = exc
            while self._wq.get() is not None:  # keep the receiver from blocking on a full queue
                pass

    def close(self) -> None:
        """Finish the queued writes and hashing, fsync and close the file, stop the threads; raise FetchError
        if a write failed. Safe twice."""
        if not self._closed:
            self._closed = True
            if self._threads:
                self._wq.put(None)
                self._hq.put(None)
                for t in self._threads:
                    t.join()
            try:
                os.fsync(self._f.fileno())
            except OSError as exc:
                self._error = self._error or exc
            finally:
                self._f.close()
        if self._error is not None:
            raise FetchError(f"writing {self._f.name}: {self._error}") from self._error


# --- multi-board fetch --------------------------------------------------------------------------------
@dataclass
class BoardReport:
    """What happened with one board during :func:`fetch`."""

    url: str
    board: str = ""
    segments_total: int = 0
    fetched: int = 0
    skipped: int = 0
    bytes: int = 0
    thumbs: int = 0
    checksum_ok: bool = True
    unreachable: bool = False
    thumbs_only: bool = False
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        complete = self.thumbs_only or self.fetched + self.skipped == self.segments_total
        return complete and not self.unreachable and not self.errors and self.checksum_ok and bool(self.board)


@dataclass
class FetchReport:
    """Per-board results; ``ok`` only when every board's every file arrived and checked out."""

    boards: list[BoardReport]
    out: Path

    @property
    def ok(self) -> bool:
        return bool(self.boards) and all(b.ok for b in self.boards)

    def board(self, key: str) -> BoardReport:
        for b in self.boards:
            if key in (b.board, b.url):
                return b
        raise KeyError(key)

    def summary(self) -> str:
        lines = []
        for b in self.boards:
            state = "UNREACHABLE" if b.unreachable else ("ok" if b.ok else "INCOMPLETE")
            lines.append(f"{b.board or '?'} ({b.url}): {state}: {b.fetched} fetched, {b.skipped} skipped of "
                         f"{b.segments_total} files, {b.bytes} bytes, {b.thumbs} previews")
            lines.extend(f"  error: {e}" for e in b.errors)
        return "\n".join(lines)


class _GiveUp(Exception):
    pass


class _Gate:
    """Previews and event logs from every board come before any board's segments."""

    def __init__(self, n: int) -> None:
        self._n = n
        self._arrived: set[int] = set()
        self._cond = threading.Condition()

    def arrive(self, key: int) -> None:
        with self._cond:
            self._arrived.add(key)
            self._cond.notify_all()

    def wait(self, timeout_s: float) -> None:
        with self._cond:
            self._cond.wait_for(lambda: len(self._arrived) >= self._n, timeout=timeout_s)


class _BoardFetch:
    def __init__(self, idx: int, url: str, out: Path, *, give_up_after_s: float, thumbs_only: bool,
                 window: int, chunk_kb: int, curve: ClientCurve | None, gate: _Gate, progress: Any) -> None:
        self.idx = idx
        self.out = out
        self.give_up = give_up_after_s
        self.thumbs_only = thumbs_only
        self.window = window
        self.chunk_kb = chunk_kb
        self.gate = gate
        self.progress = progress
        self.task: Any = None
        self.report = BoardReport(url=url, thumbs_only=thumbs_only)
        self.client = Client(url, timeout_s=min(5.0, max(0.5, give_up_after_s / 4)), curve=curve)
        self.last_ok = time.monotonic()

    def call(self, fn: Callable[[], T]) -> T:
        """Run ``fn``, retrying over timeouts (each recreated the DEALER) until give_up_after_s of silence."""
        while True:
            try:
                result = fn()
            except BoardTimeout:
                if time.monotonic() - self.last_ok >= self.give_up:
                    raise _GiveUp() from None
                continue
            self.last_ok = time.monotonic()
            return result

    def _advance(self, n: int) -> None:
        self.last_ok = time.monotonic()  # data is flowing: the board is alive
        if self.progress is not None and self.task is not None:
            self.progress.update(self.task, advance=n)

    def run(self) -> None:
        r = self.report
        try:
            self._run()
        except _GiveUp:
            r.unreachable = True
            r.errors.append(f"no answer for {self.give_up:g} s: gave up")
        except Exception as exc:  # one board's failure never stops the others
            r.errors.append(f"{type(exc).__name__}: {exc}")
        finally:
            r.bytes = self.client.bytes_received
            self.gate.arrive(self.idx)
            self.client.close()

    def _run(self) -> None:
        r, c = self.report, self.client
        hello = self.call(c.hello)
        if not _NAME_RE.match(hello.board):
            raise FetchError(f"{r.url}: board name {hello.board!r} cannot be a folder name")
        r.board = hello.board
        if not hello.serving:
            raise RemoteError(hello.board, p.E_NOT_SERVING, "board is not serving (not landed yet?)")
        segs = self.call(c.list)
        r.segments_total = len(segs)
        root = self.out / hello.board
        if self.progress is not None:
            self.task = self.progress.add_task(hello.board, total=sum(s.size for s in segs))
        first = [s for s in segs if s.kind in ("meta", "events")]
        rest = sorted((s for s in segs if s.kind == "segment"), key=lambda s: (-s.value, s.first_ns, s.path))
        writer = _PreviewWriter(r)
        try:
            for seg in first:  # tiny: done and renamed one by one, before any preview
                self._file(seg, root)
            for seg in rest:
                if (root / seg.path).exists():
                    continue  # downloaded already: its previews were written then
                try:
                    thumbs = self.call(lambda s=seg: c.thumbs(s.flight, segment=s.path))
                except RemoteError as exc:
                    r.errors.append(f"previews of {seg.path}: {exc}")
                    continue
                writer.put([(root / seg.flight / "thumbs" / info.camera / f"{info.seq:06d}.jpg", data,
                             {"seq": info.seq, "timestamp_ns": info.timestamp_ns, "phase": info.phase,
                              "segment": info.segment}) for info, data in thumbs])
            if self.thumbs_only:
                writer.close()  # every preview is on disk before a thumbs-only fetch reports
            self.gate.arrive(self.idx)
            self.gate.wait(self.give_up)
            if not self.thumbs_only:
                self._files(rest, root)
        finally:
            writer.close()

    def _files(self, segs: list[p.SegmentInfo], root: Path) -> None:
        """Fetch ``segs`` in order; each file's tail is written, hashed and renamed on a finisher thread
        while the next file is already on the wire. A checksum mismatch is fetched once more in line."""
        finishing: queue.Queue[Any] = queue.Queue()
        done: list[tuple[p.SegmentInfo, Any]] = []

        def finisher() -> None:
            while (job := finishing.get()) is not None:
                seg, finish = job
                try:
                    done.append((seg, finish()))
                except Exception as exc:
                    done.append((seg, exc))

        worker = threading.Thread(target=finisher, name="camctl-fetch-finish", daemon=True)
        worker.start()
        try:
            for seg in segs:
                finish = self._start(seg, root)
                if finish is not None:
                    finishing.put((seg, finish))
        finally:
            finishing.put(None)
            worker.join()
        for seg, outcome in done:
            if outcome is True:
                self.report.fetched += 1
            elif outcome is False:  # checksum mismatch: the part is gone; one more full fetch
                self._file(seg, root, attempts=1)
            else:
                self.report.errors.append(str(outcome))

    def _start(self, seg: p.SegmentInfo, root: Path) -> Callable[[], bool] | None:
        """Receive ``seg`` (resuming); its ``finish``, or None when skipped or failed (both recorded)."""
        r = self.report
        part = (root / seg.path).with_name(Path(seg.path).name + ".part")
        if part.exists() and self.progress is not None and self.task is not None:
            self.progress.update(self.task, advance=part.stat().st_size)  # resumed from an earlier run
        try:
            finish = self.call(lambda: self.client.start_file(seg, root / seg.path, window=self.window,
                                                              chunk_kb=self.chunk_kb, on_bytes=self._advance))
        except (RemoteError, FetchError) as exc:
            r.errors.append(str(exc))
            return None
        if finish is None:
            r.skipped += 1
        return finish

    def _file(self, seg: p.SegmentInfo, root: Path, *, attempts: int = 2) -> None:
        r = self.report
        part = (root / seg.path).with_name(Path(seg.path).name + ".part")
        if part.exists() and self.progress is not None and self.task is not None:
            self.progress.update(self.task, advance=part.stat().st_size)  # resumed from an earlier run
        try:
            how = self.call(lambda: self.client.fetch_file(seg, root / seg.path, window=self.window,
                                                           chunk_kb=self.chunk_kb, on_bytes=self._advance,
                                                           attempts=attempts))
        except RemoteError as exc:
            r.errors.append(str(exc))
            return
        except FetchError as exc:
            r.errors.append(str(exc))
            if "sha256" in str(exc):
                r.checksum_ok = False
            return
        if how == "skipped":
            r.skipped += 1
        else:
            r.fetched += 1


class _PreviewWriter:
    """Writes previews (atomically) on its own thread, so the fetch goes on meanwhile; counts them in the
    report. :meth:`close` waits for every queued write. Safe twice."""

    def __init__(self, report: BoardReport) -> None:
        self._report = report
        self._q: queue.Queue[Any] = queue.Queue()
        self._thread: threading.Thread | None = None

    def put(self, files: list[tuple[Path, bytes, dict]]) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="camctl-fetch-previews", daemon=True)
            self._thread.start()
        self._q.put(files)

    def _run(self) -> None:
        index: dict[Path, dict[str, dict]] = {}  # thumbs dir -> "camera/seq" -> what the frame was
        while (files := self._q.get()) is not None:
            touched = set()
            for path, data, info in files:
                try:
                    _write_atomic(path, data)
                except OSError as exc:
                    self._report.errors.append(f"writing preview {path}: {exc}")
                    continue
                self._report.thumbs += 1
                tdir = path.parent.parent
                if tdir not in index:
                    index[tdir] = _read_json(tdir / THUMBS_INDEX)
                index[tdir][f"{path.parent.name}/{path.stem}"] = info
                touched.add(tdir)
            for tdir in touched:  # the sensor time and phase of each preview, for labels before the download
                try:
                    _write_atomic(tdir / THUMBS_INDEX, json.dumps(index[tdir], sort_keys=True).encode())
                except OSError as exc:
                    self._report.errors.append(f"writing {tdir / THUMBS_INDEX}: {exc}")

    def close(self) -> None:
        if self._thread is not None:
            self._q.put(None)
            self._thread.join()
            self._thread = None


THUMBS_INDEX = "index.json"  # in <flight>/thumbs/: "camera/seq" -> {seq, timestamp_ns, phase, segment}


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def fetch(urls: list[str], out: Path, *, give_up_after_s: float = 30.0, thumbs_only: bool = False,
          window: int = 8, chunk_kb: int = 256, progress: bool = True,
          curve: ClientCurve | None = None) -> FetchReport:
    """Pull every board at once into ``out/<board>/...``; resumable; see the module docstring."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    gate = _Gate(len(urls))
    prog: Any = None
    if progress:
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )
        prog = Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                        TransferSpeedColumn(), TimeRemainingColumn())
    jobs = [_BoardFetch(i, url, out, give_up_after_s=give_up_after_s, thumbs_only=thumbs_only,
                        window=window, chunk_kb=chunk_kb, curve=curve, gate=gate, progress=prog)
            for i, url in enumerate(urls)]
    threads = [threading.Thread(target=j.run, name=f"camctl-fetch-{j.report.url}", daemon=True) for j in jobs]
    with prog if prog is not None else contextlib.nullcontext():
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    return FetchReport(boards=[j.report for j in jobs], out=out)


# --- CLI helpers --------------------------------------------------------------------------------------
def print_report(report: FetchReport) -> None:
    """The fetch report as plain lines on stdout."""
    print(report.summary())
    print("fetch: OK" if report.ok else "fetch: INCOMPLETE (run the same command again to resume)")


def status_many(urls: list[str], *, json_out: bool = False, watch: bool = False, timeout_s: float = 5.0,
                curve: ClientCurve | None = None) -> int:
    """``camctl status``: one status object per board (a list for several); exit 1 if a board is silent."""
    while True:
        results: list[dict] = []
        rc = 0
        for url in urls:
            with Client(url, timeout_s=timeout_s, curve=curve) as c:
                try:
                    results.append(c.status())
                except (BoardTimeout, RemoteError) as exc:
                    results.append({"url": url, "error": str(exc)})
                    rc = 1
        if json_out:
            print(json.dumps(results[0] if len(results) == 1 else results))
        else:
            for st in results:
                if "error" in st:
                    print(f"{st['url']}: {st['error']}")
                    continue
                cams = ", ".join(f"{n}: {c.get('state', '?')} {c.get('durable_frames', 0)} durable"
                                 for n, c in st.get("cameras", {}).items())
                print(f"{st.get('board')}: {st.get('phase')} flight={st.get('flight')} "
                      f"disk_free_mb={st.get('disk_free_mb')} serving={st.get('serving')} [{cams}]")
        if not watch:
            return rc
        time.sleep(1.0)


def ls_remote(urls: list[str], *, json_out: bool = False, timeout_s: float = 5.0,
              curve: ClientCurve | None = None) -> int:
    """``camctl ls --connect``: what each board would serve."""
    rc = 0
    out: dict[str, Any] = {}
    for url in urls:
        with Client(url, timeout_s=timeout_s, curve=curve) as c:
            try:
                c.hello()
                out[c.board] = [s.to_json() for s in c.list()]
            except (BoardTimeout, RemoteError) as exc:
                out[url] = {"error": str(exc)}
                rc = 1
    if json_out:
        print(json.dumps(out))
    else:
        for board, segs in out.items():
            if isinstance(segs, dict):
                print(f"{board}: {segs['error']}")
                continue
            for s in segs:
                print(f"{board}\t{s['path']}\t{s['size']}\t{s['frames']} frames\tvalue {s['value']}")
    return rc


def ls_local(directory: Path, *, json_out: bool = False) -> int:
    """``camctl ls DIR``: downloaded files (and leftover .part files) under a fetch folder."""
    rows = [{"path": str(f.relative_to(directory)), "size": f.stat().st_size, "partial": f.suffix == ".part"}
            for f in sorted(Path(directory).rglob("*")) if f.is_file()]
    if json_out:
        print(json.dumps(rows))
    else:
        for r in rows:
            print(f"{r['path']}\t{r['size']}{'  (partial)' if r['partial'] else ''}")
    return 0
