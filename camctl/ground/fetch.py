"""Many boards at once: :func:`fetch` pulls every board (a thread each) into ``out/<board>/...``,
previews and event logs first (previews the board is still making come between files), then segments
by value, resuming partial files and checking every sha256 (one file's download is
:mod:`camctl.ground.download`, one board's requests :mod:`camctl.ground.client`).

Example::

    report = fetch(["tcp://rig-a:5555", "tcp://rig-b:5555"], Path("drop-3"), give_up_after_s=30)
    print(report.summary()); raise SystemExit(0 if report.ok else 1)
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from camctl.common import protocol as p
from camctl.common.keys import ClientCurve, url_host
from camctl.common.protocol import is_name
from camctl.exc import BoardTimeout, ConfigError, FetchError, RemoteError
from camctl.ground.client import Client
from camctl.ground.download import lock_folder

__all__ = ["BoardReport", "FetchReport", "fetch", "print_report"]

T = TypeVar("T")


# --- multi-board fetch ----------------------------------------------------------------------------
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
        return (complete and not self.unreachable and not self.errors and self.checksum_ok
                and bool(self.board))


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
            name = b.board or url_host(b.url) or b.url  # a board never reached is named by its host
            lines.append(f"{name} ({b.url}): {state}: {b.fetched} fetched, {b.skipped} skipped of "
                         f"{b.segments_total} files, {b.bytes} bytes, {b.thumbs} previews")
            lines.extend(f"  error: {e}" for e in b.errors)
        return "\n".join(lines)


class _GiveUp(Exception):
    pass


class _Gate:
    """Previews and event logs from every live board come before any board's segments. Only boards
    that answered HELLO are waited for, so a dead board never holds the others' files back."""

    def __init__(self) -> None:
        self._waiting: set[int] = set()
        self._cond = threading.Condition()

    def join(self, key: int) -> None:
        with self._cond:
            self._waiting.add(key)

    def arrive(self, key: int) -> None:
        with self._cond:
            self._waiting.discard(key)
            self._cond.notify_all()

    def wait(self, timeout_s: float) -> None:
        with self._cond:
            self._cond.wait_for(lambda: not self._waiting, timeout=timeout_s)


class _Names:
    """Board names claimed in one fetch: a second URL reporting a name already taken is refused
    (both would write into one folder)."""

    def __init__(self) -> None:
        self._by_name: dict[str, str] = {}
        self._lock = threading.Lock()

    def claim(self, name: str, url: str) -> None:
        with self._lock:
            other = self._by_name.setdefault(name, url)
        if other != url:
            raise FetchError(f"{url} reports board name {name!r}, which {other} reported first: "
                             "refused (two boards with one name would write into one folder; give "
                             "each board its own name)")


class _BoardFetch:
    def __init__(self, idx: int, url: str, out: Path, *, give_up_after_s: float, thumbs_only: bool,
                 window: int, chunk_kb: int, curve: ClientCurve | Mapping[str, ClientCurve] | None,
                 gate: _Gate, names: _Names, flight: str, progress: Any,
                 timeout_s: float | None = None) -> None:
        self.idx = idx
        self.names = names
        self.flight = flight
        self.out = out
        self.give_up = give_up_after_s
        self.thumbs_only = thumbs_only
        self.window = window
        self.chunk_kb = chunk_kb
        self.gate = gate
        self.progress = progress
        self.task: Any = None
        self.report = BoardReport(url=url, thumbs_only=thumbs_only)
        timeout = timeout_s if timeout_s is not None else min(5.0, max(0.5, give_up_after_s / 4))
        self.client = Client(url, timeout_s=timeout, curve=curve)
        self.started = time.monotonic()
        self.last_ok = time.monotonic()

    def call(self, fn: Callable[[], T]) -> T:
        """Run ``fn``, retrying timeouts (each on a new DEALER) until give_up_after_s of silence."""
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
            why = f" ({self.client.last_failure})" if self.client.last_failure else ""
            r.errors.append(f"no answer for {self.give_up:g} s: gave up{why}")
        except Exception as exc:  # one board's failure never stops the others
            r.errors.append(f"{type(exc).__name__}: {exc}")
        finally:
            r.bytes = self.client.bytes_received
            self.gate.arrive(self.idx)
            self.client.close()

    def _run(self) -> None:
        r, c = self.report, self.client
        hello = self.call(c.hello)
        if not is_name(hello.board):
            raise FetchError(f"{r.url}: board name {hello.board!r} "
                             "cannot be a folder name: refused")
        self.names.claim(hello.board, r.url)
        r.board = hello.board
        self.gate.join(self.idx)
        # e.g. started during TOUCHDOWN: the board serves once its store is done
        while not hello.serving:
            if time.monotonic() - self.started >= self.give_up:
                phase = self.call(c.status).get("phase", "?")
                raise RemoteError(hello.board, p.E_NOT_SERVING,
                                  f"not serving after {self.give_up:g} s (phase {phase}): "
                                  "fetch after landing")
            time.sleep(min(0.25, self.give_up / 8))
            hello = self.call(c.hello)
        flight = self._pick_flight(hello)
        listed = self.call(lambda: c.list(flight)) if flight != "" else []
        root = self.out / hello.board
        segs: list[tuple[p.SegmentInfo, Path]] = []
        for seg in listed:
            dest = self._dest(seg, flight, root)
            if dest is not None:
                segs.append((seg, dest))
        r.segments_total = len(listed)
        if self.progress is not None:
            self.task = self.progress.add_task(hello.board, total=sum(s.size for s, _ in segs))
        first = [x for x in segs if x[0].kind in ("meta", "events")]
        rest = sorted((x for x in segs if x[0].kind == "segment"),
                      key=lambda x: (-x[0].value, x[0].first_ns, x[0].path))
        writer = _PreviewWriter(r)
        try:
            for seg, dest in first:  # tiny: done and renamed one by one, before any preview
                self._file(seg, dest)
            # previews the board has made come first; a segment whose previews it is still making (a
            # fetch started right after landing) does not hold the download back: they are asked
            # again between files. A segment downloaded already is left out: its previews were
            # written then.
            pending = [x for x in rest if not x[1].exists()]
            self._previews_pass(pending, root, writer, wait=self.thumbs_only)
            if self.thumbs_only:
                writer.close()  # every preview is on disk before a thumbs-only fetch reports
            self.gate.arrive(self.idx)
            self.gate.wait(self.give_up)
            if not self.thumbs_only:
                self._files(rest,
                            between=lambda: self._previews_pass(pending, root, writer, wait=False))
                while pending:
                    self._previews_pass(pending, root, writer, wait=True)
        finally:
            writer.close()

    def _previews_pass(self, pending: list[tuple[p.SegmentInfo, Path]], root: Path,
                       writer: _PreviewWriter, *, wait: bool) -> None:
        """Ask for the previews of the ``pending`` segments in order and queue them for writing;
        keep in ``pending`` those the board is still making (``wait=False``). At most
        ``p.MAX_THUMB_JOBS`` are asked and not ready at a time: the board answers BUSY beyond
        that."""
        still: list[tuple[p.SegmentInfo, Path]] = []
        for seg, dest in pending:
            if len(still) >= p.MAX_THUMB_JOBS:
                still.append((seg, dest))  # not asked this time
                continue
            try:
                thumbs = self.call(
                    lambda s=seg: self.client.thumbs(s.flight, segment=s.path, wait=wait))
            except RemoteError as exc:
                self.report.errors.append(f"previews of {seg.path}: {exc}")
                continue
            if thumbs is None:
                still.append((seg, dest))
            else:
                writer.put(self._previews(seg, root, thumbs))
        pending[:] = still

    def _pick_flight(self, hello: p.Welcome) -> str | None:
        """The LIST argument for ``--flight``: None for all, "" when the board has no flight."""
        flights = [f for f in hello.flights if is_name(f)]
        if self.flight == "all":
            return None
        if self.flight == "latest":
            # flight ids are UTC timestamps: the largest is the newest
            return max(flights) if flights else ""
        if self.flight not in flights:
            raise FetchError(f"board {hello.board} has no flight {self.flight!r} (it has: "
                             f"{', '.join(flights) or 'none'})")
        return self.flight

    def _dest(self, seg: p.SegmentInfo, flight: str | None, root: Path) -> Path | None:
        """Where a listed file goes under ``root``, or None (recorded as an error) when its names
        are not safe: every component a plain name, ``<flight>/flight.json|index.json`` or
        ``<flight>/<camera>/<name>.mcap`` of the flight asked for, and the result inside
        ``--out``."""
        parts = seg.path.split("/")
        ok = all(is_name(x) for x in parts) and parts[0] == seg.flight \
            and (flight is None or seg.flight == flight) and (
                (len(parts) == 2 and parts[1] in ("flight.json", "index.json")
                 and seg.kind == "meta")
                or (len(parts) == 3 and parts[2].endswith(".mcap") and parts[1] != "thumbs"
                    and seg.kind in ("segment", "events")
                    and (seg.kind == "events" or parts[1] == seg.camera)))
        dest = root.joinpath(*parts)
        if ok and dest.resolve().is_relative_to(self.out.resolve()):
            return dest
        self.report.errors.append(f"board {self.report.board} listed an unsafe file {seg.path!r} "
                                  f"(flight {seg.flight!r}, camera {seg.camera!r}): not written")
        return None

    def _previews(self, seg: p.SegmentInfo, root: Path,
                  thumbs: list[tuple[p.ThumbInfo, bytes]]) -> list[tuple[Path, bytes, dict]]:
        """Preview files to write for ``seg``; a preview naming another segment, a camera that is
        not a plain name or a negative seq is dropped (recorded as an error)."""
        files = []
        for info, data in thumbs:
            if not is_name(info.camera) or info.camera != seg.camera or info.segment != seg.path \
                    or info.seq < 0:
                self.report.errors.append(f"board {self.report.board} sent an unsafe preview "
                                          f"(camera {info.camera!r}, segment {info.segment!r}, "
                                          f"seq {info.seq}): not written")
                continue
            files.append((root / seg.flight / "thumbs" / info.camera / f"{info.seq:06d}.jpg", data,
                          {"seq": info.seq, "timestamp_ns": info.timestamp_ns, "phase": info.phase,
                           "segment": info.segment}))
        return files

    def _files(self, segs: list[tuple[p.SegmentInfo, Path]], *,
               between: Callable[[], None] = lambda: None) -> None:
        """Fetch ``segs`` in order; each file's tail is written, hashed and renamed on a finisher
        thread while the next file is already on the wire (``between()`` is called after each file
        is received). A checksum mismatch is fetched once more in line."""
        finishing: queue.Queue[Any] = queue.Queue()
        done: list[tuple[tuple[p.SegmentInfo, Path], Any]] = []

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
            for seg, dest in segs:
                finish = self._start(seg, dest)
                if finish is not None:
                    finishing.put(((seg, dest), finish))
                between()
        finally:
            finishing.put(None)
            worker.join()
        for seg, outcome in done:
            if outcome is True:
                self.report.fetched += 1
            elif outcome is False:  # checksum mismatch: the part is gone; one more full fetch
                self._file(*seg, attempts=1)
            else:
                self.report.errors.append(str(outcome))

    def _resumed(self, dest: Path) -> None:
        """Count a ``.part`` left by an earlier run as done on the progress bar."""
        part = dest.with_name(dest.name + ".part")
        if part.exists() and self.progress is not None and self.task is not None:
            self.progress.update(self.task, advance=part.stat().st_size)

    def _start(self, seg: p.SegmentInfo, dest: Path) -> Callable[[], bool] | None:
        """Receive ``seg`` (resuming); its ``finish``, or None if skipped or failed (recorded)."""
        r = self.report
        self._resumed(dest)
        try:
            finish = self.call(lambda: self.client.start_file(seg, dest, window=self.window,
                                                              chunk_kb=self.chunk_kb,
                                                              on_bytes=self._advance))
        except (RemoteError, FetchError) as exc:
            r.errors.append(str(exc))
            return None
        if finish is None:
            r.skipped += 1
        return finish

    def _file(self, seg: p.SegmentInfo, dest: Path, *, attempts: int = 2) -> None:
        r = self.report
        self._resumed(dest)
        try:
            how = self.call(lambda: self.client.fetch_file(seg, dest, window=self.window,
                                                           chunk_kb=self.chunk_kb,
                                                           on_bytes=self._advance,
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
    """Writes previews (atomically) on its own thread, so the fetch goes on meanwhile; counts them
    in the report. :meth:`close` waits for every queued write. Safe twice."""

    def __init__(self, report: BoardReport) -> None:
        self._report = report
        self._q: queue.Queue[Any] = queue.Queue()
        self._thread: threading.Thread | None = None

    def put(self, files: list[tuple[Path, bytes, dict]]) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="camctl-fetch-previews",
                                            daemon=True)
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
            # the sensor time and phase of each preview, for labels before the download
            for tdir in touched:
                try:
                    index_json = json.dumps(index[tdir], sort_keys=True).encode()
                    _write_atomic(tdir / THUMBS_INDEX, index_json)
                except OSError as exc:
                    self._report.errors.append(f"writing {tdir / THUMBS_INDEX}: {exc}")

    def close(self) -> None:
        if self._thread is not None:
            self._q.put(None)
            self._thread.join()
            self._thread = None


# in <flight>/thumbs/: "camera/seq" -> {seq, timestamp_ns, phase, segment}
THUMBS_INDEX = "index.json"


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
          curve: ClientCurve | Mapping[str, ClientCurve] | None = None, flight: str = "latest",
          timeout_s: float | None = None) -> FetchReport:
    """Pull every board at once into ``out/<board>/...``; resumable; see the module docstring.

    ``flight``: ``latest`` (each board's newest flight), ``all``, or a flight id. ``out`` is locked
    for the whole fetch: a second fetch into it raises ConfigError at once (one line, naming the
    holder).
    """
    if flight not in ("latest", "all") and not is_name(flight):
        raise ConfigError(f"--flight {flight!r}: want latest, all or a flight id "
                          "(letters, digits, '_.-')")
    dupes = sorted({u for u in urls if urls.count(u) > 1})
    if dupes:
        raise ConfigError(f"--connect {dupes[0]} given twice")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    with lock_folder(out):
        return _fetch(urls, out, give_up_after_s=give_up_after_s, thumbs_only=thumbs_only,
                      window=window, chunk_kb=chunk_kb, progress=progress, curve=curve,
                      flight=flight, timeout_s=timeout_s)


def _fetch(urls: list[str], out: Path, *, give_up_after_s: float, thumbs_only: bool, window: int,
           chunk_kb: int, progress: bool, curve: ClientCurve | Mapping[str, ClientCurve] | None,
           flight: str, timeout_s: float | None) -> FetchReport:
    gate = _Gate()
    names = _Names()
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
                        window=window, chunk_kb=chunk_kb, curve=curve, gate=gate, names=names,
                        flight=flight, progress=prog, timeout_s=timeout_s)
            for i, url in enumerate(urls)]
    threads = [threading.Thread(target=j.run, name=f"camctl-fetch-{j.report.url}", daemon=True)
               for j in jobs]
    with prog if prog is not None else contextlib.nullcontext():
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    return FetchReport(boards=[j.report for j in jobs], out=out)


# --- CLI helpers ----------------------------------------------------------------------------------
def print_report(report: FetchReport) -> None:
    """The fetch report as plain lines on stdout."""
    print(report.summary())
    print("fetch: OK" if report.ok else "fetch: INCOMPLETE (run the same command again to resume)")
