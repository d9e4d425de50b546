"""Many boards at once: :func:`fetch` pulls every board (a thread each) into ``out/<board>/...``,
previews and event logs first (previews the board is still making come between files), then the
sensors' segments, then the cameras' by value, resuming partial files and checking every sha256
(one file's download is :mod:`camctl.ground.download`, one board's requests
:mod:`camctl.ground.client`).

Example::

    report = fetch(["tcp://rig-a:5555", "tcp://rig-b:5555"], Path("drop-3"), give_up_after_s=30)
    print(report.summary()); raise SystemExit(0 if report.ok else 1)
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import shutil
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from camctl.common import protocol as p
from camctl.common.keys import ClientCurve, url_host
from camctl.common.protocol import is_name
from camctl.exc import (
    BoardTimeout,
    ConfigError,
    FetchError,
    FileConflict,
    KeyRejected,
    RemoteError,
    UnsafeReply,
)
from camctl.ground.client import Client
from camctl.ground.download import lock_folder

__all__ = ["VERDICTS", "BoardReport", "FetchReport", "fetch", "print_report", "record_verdicts"]

VERDICTS = "fetch-verdicts.json"  # in a fetch's out folder: every board's verdict (record_verdicts)

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
    # the fetch could not be done (the CLI's exit 2): the board refused our key, or the ground
    # refused the board (its name taken by another board, a case clash, no room on --out)
    refused: bool = False
    thumbs_only: bool = False
    errors: list[str] = field(default_factory=list)
    flights: list[str] = field(default_factory=list)  # the flights asked of the board

    @property
    def ok(self) -> bool:
        complete = self.thumbs_only or self.fetched + self.skipped == self.segments_total
        return (complete and not self.unreachable and not self.refused and not self.errors
                and self.checksum_ok and bool(self.board))


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
            state = ("UNREACHABLE" if b.unreachable else "REFUSED" if b.refused
                     else "ok" if b.ok else "INCOMPLETE")
            name = b.board or url_host(b.url) or b.url  # a board never reached is named by its host
            lines.append(f"{name} ({b.url}): {state}: {b.fetched} fetched, {b.skipped} skipped of "
                         f"{b.segments_total} files, {b.bytes} bytes, {b.thumbs} previews")
            lines.extend(f"  error: {e}" for e in b.errors)
        # board text (names, ERROR messages) reaches the terminal: no escape codes
        return "\n".join(p.printable(line, 2000) for line in lines)

    def verdicts(self) -> list[str]:
        """One line per board's flight: ``rig-a 20261207T1219Z: RECORDED: landed, ...``, from
        what arrived in ``out`` and how the board's download ended (:mod:`camctl.ground.verdict`).
        A board that gave nothing: ``LOST: no contact; nothing downloaded (why)``."""
        return [p.printable(f"{r['name']}{' ' + r['flight'] if r['flight'] else ''}: "
                            f"{r['kind']}: {r['reason']}"
                            + (f"; {r['peak_g_line']}" if r.get("peak_g_line") else ""), 2000)
                for r in self.verdict_records()]

    def verdict_records(self) -> list[dict[str, Any]]:
        """:meth:`verdicts` as records: ``{name, url, board, flight, kind, reason}`` (``board``
        and ``flight`` empty for a board that gave nothing), and ``peak_g`` (records) and
        ``peak_g_line`` (what the verdict line adds) for a flight that recorded sensors."""
        from camctl.ground.flights import find_flights
        from camctl.ground.verdict import BoardFlight, verdict

        out = []
        for b in self.boards:
            name = b.board or url_host(b.url) or b.url
            contact = not b.unreachable
            why = b.errors[0] if b.errors else ""
            refs = [r for f in b.flights if b.board and (self.out / b.board / f).is_dir()
                    for r in find_flights(self.out / b.board / f)]
            if not refs:  # nothing of a flight on the ground
                flew = bool(b.flights) or not b.board  # a board never reached may have flown
                # it listed files: it served, so it had landed (the error says what went wrong)
                v = verdict(BoardFlight(name, flew=flew, landed=b.segments_total > 0,
                                        contact=contact, final=True, download_error=why))
                found = [("", v)]
            else:
                if b.thumbs_only and not why:
                    why = "previews only, --thumbs-only"
                found = [(r.flight, _flight_verdict(r, contact,
                                                    "" if b.ok and not b.thumbs_only else why))
                         for r in refs]
            out += [{"name": name, "url": b.url, "board": b.board, "flight": f,
                     "kind": v.kind, "reason": v.reason, **_peak_g(refs, f)}
                    for f, v in found if v is not None]
        return out


def _peak_g(refs: list[Any], flight: str) -> dict[str, Any]:
    """``{"peak_g": [...]}`` for a downloaded flight that recorded sensors (issue 29: the verdict
    carries the peak g at separation and touchdown, :func:`camctl.ground.verdict.peak_g_records`);
    ``{}`` otherwise, or when its samples cannot be read."""
    from camctl.ground.samples import flight_peak_g
    from camctl.ground.verdict import peak_g_line, peak_g_records

    ref = next((r for r in refs if r.flight == flight), None)
    try:
        found = flight_peak_g(ref.path) if ref is not None else None
    except Exception:  # a torn download: the verdict says so; no peak is better than a crash
        return {}
    if found is None:
        return {}
    return {"peak_g": peak_g_records(*found), "peak_g_line": peak_g_line(*found)}


def _flight_verdict(ref: Any, contact: bool, why: str) -> Any:
    """The verdict of one downloaded flight folder; one whose files cannot be read is PARTIAL."""
    from camctl.ground.flights import summarize_flight
    from camctl.ground.verdict import PARTIAL, Verdict, from_summary, verdict

    try:
        fl = summarize_flight(ref)
    except Exception as exc:  # a torn event log or index (any reader's error): said, not raised
        return Verdict(PARTIAL, f"its files cannot be read ({type(exc).__name__}: {exc})")
    return verdict(from_summary(fl, contact=contact, download_error=why))


def record_verdicts(report: FetchReport) -> None:
    """Keep every board's verdict of this fetch in ``out/`` :data:`VERDICTS` (a board's entry
    replaces the one of an earlier fetch, by URL): ``camctl export`` names a board that gave
    nothing, which no flight folder shows."""
    path = report.out / VERDICTS
    old = _read_json(path).get("boards", [])
    new = report.verdict_records()
    urls = {r["url"] for r in new}
    keep = [r for r in old if isinstance(r, dict) and r.get("url") not in urls]
    _write_atomic(path, json.dumps({"boards": keep + new}, indent=1).encode())


class _GiveUp(Exception):
    pass


class _Gate:
    """Previews and event logs from every live board come before any board's segments. Only boards
    that answered HELLO serving are waited for, and a board leaves the gate at its first request
    that goes unanswered: a dead, silent or never-serving board never holds the others' files
    back."""

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


class _Refused(FetchError):
    """The ground will not fetch this board (exit 2): the message says why, naming both sides."""


class _Names:
    """Board names claimed in one fetch: a second URL reporting a name already taken, or one that
    differs only in case (one folder on a case-insensitive disk: exFAT, macOS), is refused (both
    would write into one folder)."""

    def __init__(self) -> None:
        self._by_name: dict[str, tuple[str, str, str]] = {}  # casefold -> (name, url, ident)
        self._lock = threading.Lock()

    def claim(self, name: str, url: str, ident: str) -> None:
        with self._lock:
            other, other_url, other_ident = self._by_name.setdefault(name.casefold(),
                                                                     (name, url, ident))
        if other_url != url:
            what = "which" if other == name else f"which differs only in case from {other!r}"
            raise _Refused(f"{url} reports board name {name!r}{ident}, {what} {other_url}"
                           f"{other_ident} reported first: refused (two boards with one name "
                           "would write into one folder; give each board its own name)")


# beside a board's download, <out>/<board>/.board-id: who the files are from (a board name cannot
# start with '.', so this never meets a listed file)
IDENTITY_FILE = ".board-id"


def _identity(client: Client) -> dict:
    """What tells this board from another with the same name: its board id (WELCOME), and the
    server key when CURVE is on."""
    key = client.curve.server_public.decode("ascii", "replace") if client.curve else ""
    return {"board_id": client.board_id, "server_key": key}


def _describe(ident: dict) -> str:
    parts = [f"id {ident['board_id']}" if ident.get("board_id") else "",
             f"server key {ident['server_key']}" if ident.get("server_key") else ""]
    return f" ({', '.join(x for x in parts if x)})" if any(parts) else ""


def _same_board(a: dict, b: dict) -> bool:
    """False when the two identities are known to differ (an id or a server key both have)."""
    return all(not (a.get(k) and b.get(k)) or a.get(k) == b.get(k)
               for k in ("board_id", "server_key"))


def _case_clash(names: list[str]) -> tuple[str, str] | None:
    """Two of ``names`` that differ only in case (one path on a case-insensitive disk)."""
    seen: dict[str, str] = {}
    for n in names:
        other = seen.setdefault(n.casefold(), n)
        if other != n:
            return other, n
    return None


def _free_bytes(path: Path) -> int:
    return shutil.disk_usage(path).free


class _Space:
    """Free space on ``--out`` shared by the boards of one fetch: a board starts downloading only if
    what it still needs fits in what is free less what the other boards still have to write."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self._lock = threading.Lock()
        self._claims: dict[int, Callable[[], int]] = {}  # board -> bytes it still has to write

    def claim(self, key: int, board: str, need: int, left: Callable[[], int]) -> None:
        with self._lock:
            others = sum(max(0, f()) for k, f in self._claims.items() if k != key)
            free = _free_bytes(self.out)
            if need > free - others:
                kept = f", {others} of them still to be written by other boards" if others else ""
                raise _Refused(f"board {board}: needs {need} bytes on {self.out}, {free} bytes "
                               f"free{kept}: nothing fetched (free some space or use another "
                               "--out)")
            self._claims[key] = left

    def release(self, key: int) -> None:
        with self._lock:
            self._claims.pop(key, None)


class _BoardFetch:
    def __init__(self, idx: int, url: str, out: Path, *, give_up_after_s: float, thumbs_only: bool,
                 window: int, chunk_kb: int, curve: ClientCurve | Mapping[str, ClientCurve] | None,
                 gate: _Gate, names: _Names, flight: str, progress: Any,
                 timeout_s: float | None = None, space: _Space | None = None) -> None:
        self.idx = idx
        self.names = names
        self.space = space if space is not None else _Space(out)
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

    def call(self, fn: Callable[[], T], *, busy_wait: bool = True) -> T:
        """Run ``fn``, retrying timeouts (each on a new DEALER) until give_up_after_s of silence.

        A timeout also lets the other boards past the gate: this one no longer holds them back.
        ERROR BUSY (``busy_wait``) is asked again after the board's ``retry_ms`` (else a backoff
        from 50 ms to 1 s), for at most give_up_after_s: it is an answer, never an error by
        itself."""
        busy_since: float | None = None
        backoff = 0.05
        while True:
            try:
                result = fn()
            except BoardTimeout:
                self.gate.arrive(self.idx)
                if time.monotonic() - self.last_ok >= self.give_up:
                    raise _GiveUp() from None
                continue
            except RemoteError as exc:
                if exc.code != p.E_BUSY or not busy_wait:
                    raise
                now = time.monotonic()
                busy_since = now if busy_since is None else busy_since
                if now - busy_since >= self.give_up:
                    raise
                retry_ms = getattr(exc, "retry_ms", 0)
                time.sleep(retry_ms / 1000 if retry_ms else backoff)
                backoff = min(1.0, backoff * 2)
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
        except (KeyRejected, _Refused) as exc:  # the fetch cannot be done: exit 2
            r.refused = True
            r.errors.append(str(exc))
        except Exception as exc:  # one board's failure never stops the others
            r.errors.append(f"{type(exc).__name__}: {exc}")
        finally:
            r.bytes = self.client.bytes_received
            self.gate.arrive(self.idx)
            self.space.release(self.idx)
            self.client.close()

    def _run(self) -> None:
        r, c = self.report, self.client
        hello = self.call(c.hello)
        if not is_name(hello.board):
            raise _Refused(f"{r.url}: board name {hello.board!r} "
                           "cannot be a folder name: refused")
        ident = _identity(c)
        self.names.claim(hello.board, r.url, _describe(ident))
        r.board = hello.board
        self._check_identity(hello.board, ident)
        if hello.serving:  # one that is not yet serving holds nobody back
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
        r.flights = [f for f in hello.flights if is_name(f)] if flight is None else \
            [flight] if flight else []
        listing = self.call(lambda: c.listing(flight)) if flight != "" else None
        listed = listing.segments if listing is not None else []
        for why in listing.rejected if listing is not None else []:
            r.errors.append(f"board {hello.board} listed an unsafe entry {why}: skipped")
        root = self.out / hello.board
        segs: list[tuple[p.SegmentInfo, Path]] = []
        for seg in listed:
            dest = self._dest(seg, flight, root)
            if dest is not None:
                segs.append((seg, dest))
        segs = self._case_checked(segs, root)
        r.segments_total = len(listed)
        if not self.thumbs_only:
            need = sum(_still_to_write(seg, dest) for seg, dest in segs)
            self.space.claim(self.idx, hello.board, need,
                             lambda: need - self.client.bytes_received)
        if self.progress is not None:
            self.task = self.progress.add_task(hello.board, total=sum(s.size for s, _ in segs))
        first = [x for x in segs if x[0].kind in ("meta", "events")]
        # a sensor's segments first among segments: small, and the flight's forces; then the
        # cameras' by value
        sensors = sorted((x for x in segs if x[0].kind == p.SEGMENT_SAMPLES),
                         key=lambda x: (x[0].first_ns, x[0].path))
        rest = sensors + sorted((x for x in segs if x[0].kind == "segment"),
                                key=lambda x: (-x[0].value, x[0].first_ns, x[0].path))
        writer = _PreviewWriter(r)
        try:
            for seg, dest in first:  # tiny: done and renamed one by one, before any preview
                self._file(seg, dest)
            # previews the board has made come first; a segment whose previews it is still making (a
            # fetch started right after landing) does not hold the download back: they are asked
            # again between files. A segment downloaded already is left out: its previews were
            # written then.
            pending = [x for x in rest if not x[1].exists() and x[0].kind == "segment"]
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
            cap = seg.frames if seg.frames > 0 else p.MAX_PREVIEWS  # a preview per frame at most
            try:
                thumbs = self.call(
                    lambda s=seg, n=cap: self.client.thumbs(s.flight, segment=s.path, wait=wait,
                                                            max_previews=n),
                    busy_wait=wait)
            except RemoteError as exc:
                if exc.code == p.E_BUSY and not wait:  # its preview jobs are full: ask later
                    still.append((seg, dest))
                    continue
                self.report.errors.append(f"previews of {seg.path}: {exc}")
                continue
            except UnsafeReply as exc:
                self.report.errors.append(str(exc))
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
            # the board lists its flights in recording order: the last is the newest (not the
            # largest id: a Pi whose clock went back after a power cut makes a smaller one)
            return flights[-1] if flights else ""
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
                    and seg.kind in ("segment", "events", p.SEGMENT_SAMPLES)
                    and (seg.kind == "events" or parts[1] == seg.camera)))
        dest = root.joinpath(*parts)
        if ok and dest.resolve().is_relative_to(self.out.resolve()):
            return dest
        self.report.errors.append(f"board {self.report.board} listed an unsafe file {seg.path!r} "
                                  f"(flight {seg.flight!r}, camera {seg.camera!r}): not written")
        return None

    def _check_identity(self, board: str, ident: dict) -> None:
        """The files in ``<out>/<board>`` are from this board, not another with its name: its
        identity is remembered there (:data:`IDENTITY_FILE`) and must not differ; a folder whose
        name differs only in case (one folder on a case-insensitive disk) is refused."""
        with contextlib.suppress(OSError):
            clash = next((d.name for d in self.out.iterdir()
                          if d.name != board and d.name.casefold() == board.casefold()), None)
            if clash is not None:
                raise _Refused(f"{self.report.url} reports board name {board!r}, but {self.out} "
                               f"has a folder {clash!r} (the same folder on a case-insensitive "
                               "disk): refused (give each board its own name)")
        path = self.out / board / IDENTITY_FILE
        before = _read_json(path)
        if before and not _same_board(before, ident):
            raise _Refused(f"{self.report.url} is board {board!r}{_describe(ident)}, but "
                           f"{self.out / board} holds the files of board {board!r}"
                           f"{_describe(before)} (from {before.get('url', '?')}): refused (two "
                           "boards with one name; give each its own name or use another --out)")
        merged = {"board": board, "url": self.report.url,
                  "board_id": ident["board_id"] or before.get("board_id", ""),
                  "server_key": ident["server_key"] or before.get("server_key", "")}
        if merged != before:
            _write_atomic(path, json.dumps(merged, indent=1).encode())

    def _case_checked(self, segs: list[tuple[p.SegmentInfo, Path]],
                      root: Path) -> list[tuple[p.SegmentInfo, Path]]:
        """``segs`` less those whose flight, camera or file name differs only in case from another
        in the listing or from what is already on disk (one path on a case-insensitive disk: one
        would replace the other's files); each left out is recorded naming both."""
        seen: dict[str, str] = {}  # casefold of a path under root -> that path as first seen
        ondisk: dict[Path, dict[str, str]] = {}  # folder -> casefold -> name, as listed
        kept = []
        for seg, dest in segs:
            parts = dest.relative_to(root).parts
            flight_parts = [(parts[0], "thumbs")] if len(parts) > 1 else []
            clash = None
            for n in range(1, len(parts) + 1):
                rel = "/".join(parts[:n])
                for extra in flight_parts if n == 2 else []:  # <flight>/thumbs is the ground's
                    seen.setdefault("/".join(extra).casefold(), "/".join(extra))
                first = seen.setdefault(rel.casefold(), rel)
                if first != rel:
                    clash = (first, rel)
                    break
                folder = root.joinpath(*parts[:n - 1])
                if folder not in ondisk:
                    try:
                        ondisk[folder] = {x.casefold(): x for x in os.listdir(folder)}
                    except OSError:
                        ondisk[folder] = {}
                there = ondisk[folder].get(parts[n - 1].casefold())
                if there is not None and there != parts[n - 1]:
                    clash = (f"{'/'.join((*parts[:n - 1], there))!r} (on disk)", rel)
                    break
            if clash is None:
                kept.append((seg, dest))
            else:
                first = clash[0] if clash[0].endswith("(on disk)") else repr(clash[0])
                self.report.errors.append(
                    f"board {self.report.board}: {clash[1]!r} differs only in case from {first} "
                    f"(one path on a case-insensitive disk): {seg.path!r} not written")
        return kept

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
            files.append((root / seg.flight / "thumbs" / info.camera / f"{preview_stem(info)}.jpg",
                          data, {"seq": info.seq, "timestamp_ns": info.timestamp_ns,
                                 "phase": info.phase, "segment": info.segment, "run": info.run,
                                 "still": info.still, "event": info.event}))
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
            if isinstance(exc, KeyRejected):
                raise
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
        except FileConflict as exc:  # a verified file is kept, never replaced by other bytes
            r.errors.append(str(exc))
            return
        except FetchError as exc:
            if isinstance(exc, KeyRejected):
                raise
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


def preview_stem(info: p.ThumbInfo) -> str:
    """A preview's file name without ``.jpg``: ``<seq:06d>``, or ``r<run>-<seq:06d>`` for a frame
    of a later run of the daemon in the flight (an older board numbered each run's frames from 0
    again: one name per frame either way)."""
    return f"{info.seq:06d}" if not info.run else f"r{info.run}-{info.seq:06d}"


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _still_to_write(seg: p.SegmentInfo, dest: Path) -> int:
    """Bytes ``seg`` still needs on disk: 0 when ``dest`` is there, less a ``.part``'s size."""
    if dest.exists():
        return 0
    try:
        return max(0, seg.size - dest.with_name(dest.name + ".part").stat().st_size)
    except OSError:
        return seg.size


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
        report = _fetch(urls, out, give_up_after_s=give_up_after_s, thumbs_only=thumbs_only,
                        window=window, chunk_kb=chunk_kb, progress=progress, curve=curve,
                        flight=flight, timeout_s=timeout_s)
        with contextlib.suppress(OSError):  # the download stands without its verdicts' file
            record_verdicts(report)
        return report


def _fetch(urls: list[str], out: Path, *, give_up_after_s: float, thumbs_only: bool, window: int,
           chunk_kb: int, progress: bool, curve: ClientCurve | Mapping[str, ClientCurve] | None,
           flight: str, timeout_s: float | None) -> FetchReport:
    gate = _Gate()
    names = _Names()
    space = _Space(out)
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
                        flight=flight, progress=prog, timeout_s=timeout_s, space=space)
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
    for line in report.verdicts():
        print(f"verdict: {line}")
    print("fetch: OK" if report.ok else "fetch: INCOMPLETE (run the same command again to resume)")
