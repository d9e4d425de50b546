"""What a board offers: the finished files under its store root, with sha256 and frame facts
(LISTING), and the path checks and cached fds FETCH reads through."""

from __future__ import annotations

import contextlib
import json
import os
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from camctl.common import protocol as p
from camctl.common.fsutil import sha256_file
from camctl.exc import ProtocolError
from camctl.store.index import FLIGHT_NAME
from camctl.store.reader import iter_events, iter_frames, iter_samples
from camctl.store.sources import SENSOR_KINDS, source_kinds
from camctl.store.writer import flight_seq, in_recording_order

__all__ = ["Catalog", "file_key", "resolve_path"]

_OPEN_FILES = 16  # file descriptors the server keeps open for FETCH (LRU)

@dataclass(frozen=True)
class _Facts:
    sha256: str
    frames: int
    first_ns: int
    last_ns: int
    value: int
    samples: int = 0


def file_key(path: Path) -> tuple[str, int, int]:
    st = path.stat()
    return (str(path), st.st_size, st.st_mtime_ns)




def _index_records(flight_dir: Path) -> dict[str, dict]:
    """``index.json``'s records by path relative to the flight folder (tolerant of its shape)."""
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
                        rel = (v[len(prefix):] if v.startswith(prefix)
                               else v if "/" in v else f"{cam}/{v}")
                        found[rel] = node
                        break
                else:
                    seq = node.get("seq")
                    if isinstance(seq, int) and cam:
                        found[f"{cam}/{seq:06d}.mcap"] = node
                return
            for k, v in node.items():
                nested = isinstance(v, dict | list) and k not in ("segments", "cameras")
                walk(v, k if nested else camera)
        elif isinstance(node, list):
            for v in node:
                walk(v, camera)

    walk(data, "")
    return found


class Catalog:
    """What the board can serve: finished files under ``store_root`` with sha256 and frame facts.

    sha256 and facts are cached by (path, size, mtime_ns); index.json values are used when the size
    they record matches the file. FETCH reads through :meth:`open_fd` (fds kept open, ``os.pread``).
    """

    def __init__(self, store_root: Path) -> None:
        self.root = Path(store_root)
        self._facts: dict[tuple[str, int, int], _Facts] = {}
        self._seqs: dict[str, tuple[tuple[int, int] | None, int | None]] = {}
        self._fds: OrderedDict[str, tuple[Path, int, tuple[int, int, int]]] = OrderedDict()

    def flights(self) -> list[str]:
        """The flights on the store in the board's recording order (last = newest): by ``seq`` in
        flight.json, flights without one first, by id
        (:func:`camctl.store.writer.in_recording_order`)."""
        if not self.root.is_dir():
            return []
        names = [d.name for d in self.root.iterdir() if d.is_dir() and not d.is_symlink()
                 and p._NAME_RE.match(d.name)]
        return in_recording_order(self.root, names, seq=self._seq)

    def _seq(self, flight_dir: Path) -> int | None:
        """flight_seq, cached by flight.json's (size, mtime_ns): HELLO asks for every flight."""
        try:
            st = (flight_dir / FLIGHT_NAME).stat()
            stamp = (st.st_size, st.st_mtime_ns)
        except OSError:
            stamp = None
        hit = self._seqs.get(flight_dir.name)
        if hit is not None and hit[0] == stamp:
            return hit[1]
        seq = flight_seq(flight_dir) if stamp is not None else None
        self._seqs[flight_dir.name] = (stamp, seq)
        return seq

    def listing(self, flight: str | None, open_segments: set[Path],
                kinds: tuple[str, ...] = ()) -> list[p.SegmentInfo]:
        """The finished files of ``flight`` (None: every flight). A sensor's segment is listed as
        ``samples`` (its sample count and times) when ``kinds`` (the client's LIST) takes that
        kind, else as a ``segment`` with no frames: what a ground from before the kind knows."""
        opened = {resolve_path(x) for x in open_segments}
        samples_ok = p.SEGMENT_SAMPLES in kinds
        flights = [flight] if flight else self.flights()
        out: list[p.SegmentInfo] = []
        for fl in flights:
            fdir = self.root / fl
            if not fdir.is_dir() or fdir.is_symlink():
                continue
            index = _index_records(fdir)
            sensors = {n for n, k in source_kinds(fdir).items() if k in SENSOR_KINDS}
            for name in ("flight.json", "index.json"):
                f = fdir / name
                if f.is_file() and not f.is_symlink() and resolve_path(f) not in opened:
                    key = file_key(f)
                    facts = self._facts.get(key) or _Facts(sha256_file(f), 0, 0, 0, 0)
                    self._facts[key] = facts
                    out.append(p.SegmentInfo(path=f"{fl}/{name}", size=key[1], sha256=facts.sha256,
                                             flight=fl, camera="", kind="meta"))
            for cdir in sorted(d for d in fdir.iterdir() if d.is_dir() and not d.is_symlink()):
                for seg in sorted(cdir.glob("*.mcap")):
                    if seg.is_symlink() or not seg.is_file() or resolve_path(seg) in opened:
                        continue
                    rel = f"{cdir.name}/{seg.name}"
                    sensor = cdir.name in sensors
                    facts, size = self._segment_facts(seg, cdir.name, index.get(rel), sensor)
                    kind = "events" if cdir.name == "events" else "segment"
                    if sensor and samples_ok:
                        out.append(p.SegmentInfo(
                            path=f"{fl}/{rel}", size=size, sha256=facts.sha256, flight=fl,
                            camera=cdir.name, kind=p.SEGMENT_SAMPLES, samples=facts.samples,
                            first_ns=facts.first_ns, last_ns=facts.last_ns, value=facts.value))
                        continue
                    out.append(p.SegmentInfo(
                        path=f"{fl}/{rel}", size=size, sha256=facts.sha256, flight=fl,
                        camera=cdir.name, kind=kind, frames=facts.frames,
                        first_ns=0 if sensor else facts.first_ns,
                        last_ns=0 if sensor else facts.last_ns, value=facts.value))
        return out

    def _segment_facts(self, seg: Path, camera: str, rec: dict | None,
                       sensor: bool = False) -> tuple[_Facts, int]:
        key = file_key(seg)
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
                facts = _Facts(rec["sha256"].lower(), 0 if sensor else num("frames"),
                               num("first_ns"), num("last_ns"), num("max_value", "value"),
                               num("samples") if sensor else 0)
            else:
                facts = self._compute(seg, camera, sensor)
            self._facts[key] = facts
        return facts, key[1]

    def _compute(self, seg: Path, camera: str, sensor: bool = False) -> _Facts:
        """A segment's facts, read by the store's salvage reader (the project's one MCAP reader)."""
        sha = sha256_file(seg)
        if camera == "events":
            return _Facts(sha, sum(1 for _ in iter_events(seg)), 0, 0, 0)
        if sensor:  # its samples, their times and the highest batch value
            n, first, last, value = 0, None, None, 0
            for b in iter_samples(seg):
                n += len(b.rows)
                first = min(b.t_ns) if first is None else min(first, *b.t_ns)
                last = max(b.t_ns) if last is None else max(last, *b.t_ns)
                value = max(value, b.value)
            return _Facts(sha, 0, first or 0, last or 0, value, n)
        times: list[int] = []
        value = 0
        for fr in iter_frames(seg, check_jpeg=False):
            if not fr.still:
                times.append(fr.timestamp_ns)
                value = max(value, fr.value)
        return _Facts(sha, len(times), min(times, default=0), max(times, default=0), value)

    def resolve(self, rel: str, open_segments: set[Path]) -> Path:
        """The servable file for a store-relative path.

        Raises ProtocolError BAD_PATH, NOT_FOUND or OPEN_SEGMENT."""
        p.check_relpath(rel)
        parts = rel.split("/")
        shape_ok = (len(parts) == 2 and parts[1] in ("flight.json", "index.json")) or \
                   (len(parts) == 3 and parts[2].endswith(".mcap"))
        if not shape_ok:
            raise ProtocolError(p.E_BAD_PATH, f"not a servable path: {rel!r} "
                                              "(want <flight>/<camera>/<seq>.mcap, "
                                              "<flight>/flight.json or <flight>/index.json)")
        root = resolve_path(self.root)
        try:
            target = (self.root / rel).resolve(strict=True)
        except (OSError, RuntimeError):
            raise ProtocolError(p.E_NOT_FOUND, f"no such file: {rel!r}") from None
        if not target.is_relative_to(root) or target != root.joinpath(*parts):
            raise ProtocolError(p.E_BAD_PATH,
                                f"path leaves the store or goes through a link: {rel!r}")
        if not target.is_file():
            raise ProtocolError(p.E_NOT_FOUND, f"not a regular file: {rel!r}")
        if target in {resolve_path(x) for x in open_segments}:
            raise ProtocolError(p.E_OPEN_SEGMENT,
                                f"file is still being written or checked: {rel!r}")
        return target

    def open_fd(self, rel: str, open_segments: set[Path]) -> int:
        """A read-only fd of the servable file ``rel``, kept open across requests.

        ``rel`` is validated as by :meth:`resolve`.

        Cached fds are re-checked with one ``lstat`` (inode, size, mtime) per call; with no open
        segments the path is not re-resolved. Only the server thread calls this.
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


def resolve_path(path: Path) -> Path:
    try:
        return Path(path).resolve()
    except (OSError, RuntimeError):
        return Path(path)

