"""The per-flight index (``index.json``) and the flight description (``flight.json``).

Sections: ``cameras`` (per camera source), ``sources`` (per source of any other kind, with its
``kind``; only in flights that have one), ``events``, ``losses``. Everything in it but its evidence
can be rebuilt from the segments alone, and :func:`load_index` does so when it is missing or stale
(a segment's size or mtime differs, or a segment is missing or new). ``sha256`` per segment is what
``camctl fetch`` checks after a transfer.

The index is also evidence: each finished segment's entry holds ``seq_ranges`` (``[[first, last],
...]``, inclusive), the seqs of the records it held when it was indexed (and, once it is no longer
finished, ``finished_size``: its size when it was). A rebuild never drops
them (it merges the index on disk into the new one), nor a loss in ``losses``, so a segment later
cut short or zeroed is a named loss of durable frames
(:func:`camctl.store._repair.describe_losses`), not a torn tail. An index without ``seq_ranges``
(before they were written) still loads.

Example::

    >>> idx = load_index(Path("/var/lib/camctl/20261127T073736Z"))     # doctest: +SKIP
    >>> idx["cameras"]["down"]["frames"]
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from camctl.common.fsutil import fsync_dir, sha256_file
from camctl.common.losses import ranges_of_seqs
from camctl.common.records import LossRecord, read
from camctl.exc import StoreCorruptError
from camctl.store._repair import segment_seqs, seqs_of_ranges
from camctl.store._salvage import Scan, scan_segment
from camctl.store.reader import layout_of, scan_events
from camctl.store.reserve import Reserve, with_reserve
from camctl.store.sources import CAMERA, KINDS, SourceKind, source_kinds

__all__ = [
    "INDEX_NAME",
    "INDEX_VERSION",
    "build_index",
    "fsync_dir",
    "gone_segment_loss",
    "index_is_stale",
    "load_index",
    "read_flight_json",
    "read_index_json",
    "segment_entries",
    "segment_paths",
    "sha256_file",
    "write_json_atomic",
    "write_json_reserved",
]

INDEX_NAME = "index.json"
FLIGHT_NAME = "flight.json"
INDEX_VERSION = 1


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON beside ``path``, fsync, rename over it, fsync the directory."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=1, sort_keys=True)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


# a JSON file written from the reserve (index.json, flight.json): beyond twice its text (the file
# and its temporary copy), blocks of slack and the directory's entries
_JSON_SLACK = 64 << 10


def write_json_reserved(reserve: Reserve | None, path: Path, data: Any) -> None:
    """:func:`write_json_atomic`, with the room from the store's full-disk ``reserve`` on a full
    disk (an index rebuilt at landing or by verify, which grows once it records losses); without
    a reserve it just writes."""
    need = _JSON_SLACK + 2 * len(json.dumps(data, indent=1))
    with_reserve(reserve, need, lambda: write_json_atomic(path, data))


def read_flight_json(flight_dir: Path) -> dict:
    """The flight description; StoreCorruptError when it is missing or not a JSON object."""
    path = Path(flight_dir) / FLIGHT_NAME
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise StoreCorruptError(str(path), f"cannot read flight description: {exc}") from None
    if not isinstance(data, dict):
        raise StoreCorruptError(str(path),
                                f"flight description is a {type(data).__name__}, not an object")
    return data


def segment_paths(flight_dir: Path) -> dict[str, list[Path]]:
    """Segment files per camera dir (``events`` included), sorted by sequence number."""
    out: dict[str, list[Path]] = {}
    for sub in sorted(p for p in Path(flight_dir).iterdir() if p.is_dir()):
        out[sub.name] = sorted(p for p in sub.glob("*.mcap") if p.is_file())
    return out


def _segment_entry(flight_dir: Path, path: Path) -> tuple[dict, Scan]:
    data = path.read_bytes()
    st = path.stat()
    scan = scan_segment(path, data)
    entry = {
        "path": path.relative_to(flight_dir).as_posix(),
        "size": len(data),
        "mtime_ns": st.st_mtime_ns,
        "sha256": hashlib.sha256(data).hexdigest(),
        "finished": scan.clean,
    }
    return entry, scan


def _events_section(flight_dir: Path, paths: list[Path]) -> tuple[dict, list[dict]]:
    """The index's ``events`` section, and the losses recovery recorded in the event log."""
    events: dict[str, Any] = {"count": 0, "segments": []}
    losses: list[dict] = []
    for path in paths:
        entry, scan = _segment_entry(flight_dir, path)
        records = list(scan_events(scan))
        losses += [{k: v for k, v in r.encode().items() if k not in ("mono_ns", "wall_ns")}
                   for r in read(records) if isinstance(r, LossRecord)]
        n = len(records)
        entry.update({"frames": 0, "first_ns": None, "last_ns": None, "max_value": None,
                      "events": n})
        events["count"] += n
        events["segments"].append(entry)
    return events, losses


def _source_section(flight_dir: Path, name: str, paths: list[Path],
                    kinds: dict[str, str]) -> tuple[SourceKind, dict]:
    """One source's kind and index entry (the kind flight.json gives, else its segments' layout)."""
    kind = KINDS[kinds[name]] if name in kinds else None
    totals: dict = {}
    for path in paths:
        entry, scan = _segment_entry(flight_dir, path)
        layout = layout_of(scan)
        if kind is None:
            kind = KINDS.get(layout.kind, CAMERA)
        totals = totals or kind.index_empty()
        if scan.clean:  # the evidence: what a finished segment holds
            entry["seq_ranges"] = ranges_of_seqs(segment_seqs(scan, layout))
        kind.index_segment(scan, entry, totals)
    kind = kind or CAMERA
    return kind, totals or kind.index_empty()


def read_index_json(flight_dir: Path) -> dict:
    """The flight's index.json as it is on disk (``{}`` when missing or unreadable), not
    rebuilt."""
    try:
        index = json.loads((flight_dir / INDEX_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return index if isinstance(index, dict) else {}


def segment_entries(index: dict) -> dict[str, dict]:
    """Path (``down/000001.mcap``) -> entry of every source segment an index lists (events
    excluded)."""
    out = {}
    for section in ("cameras", "sources"):
        sources = index.get(section)
        for src in sources.values() if isinstance(sources, dict) else ():
            for e in src.get("segments", []) if isinstance(src, dict) else ():
                if isinstance(e, dict) and isinstance(e.get("path"), str):
                    out[e["path"]] = e
    return out


def _keep_evidence(index: dict, previous: dict) -> None:
    """What ``previous`` recorded goes on in ``index``: each segment's ``seq_ranges`` (merged with
    what the segment holds now) and every loss."""
    before = segment_entries(previous)
    for path, entry in segment_entries(index).items():
        prev = before.get(path, {})
        old = prev.get("seq_ranges")
        if old:
            entry["seq_ranges"] = ranges_of_seqs(seqs_of_ranges(old)
                                                 | seqs_of_ranges(entry.get("seq_ranges")))
        if not entry.get("finished") and (prev.get("finished") or "finished_size" in prev):
            # no longer finished: the size it had when it was stays on record
            entry["finished_size"] = prev.get("finished_size", prev.get("size"))
    seen = {json.dumps(loss, sort_keys=True) for loss in index["losses"]}
    old_losses = previous.get("losses")
    for loss in old_losses if isinstance(old_losses, list) else ():
        key = json.dumps(loss, sort_keys=True)
        if isinstance(loss, dict) and key not in seen:
            seen.add(key)
            index["losses"].append(loss)
    now = segment_entries(index)
    for path, prev in before.items():
        if path not in now and prev.get("seq_ranges"):  # a finished segment gone from the disk
            named = {q for loss in index["losses"] if isinstance(loss, dict)
                     and loss.get("segment") == path for q in loss.get("seqs") or ()}
            loss = gone_segment_loss(path, prev, named)
            if loss is not None:
                index["losses"].append({k: v for k, v in loss.encode().items()
                                        if k not in ("mono_ns", "wall_ns")})


def gone_segment_loss(path: str, entry: dict, named: set[int]) -> LossRecord | None:
    """The loss of a finished segment the index lists (``path``: ``down/000001.mcap``, ``entry``:
    its index entry) and the disk no longer holds: the seqs it held less ``named`` (already on
    record); None when none is left."""
    seqs = seqs_of_ranges(entry.get("seq_ranges")) - named
    if not seqs:
        return None
    return LossRecord(camera=path.split("/")[0], segment=path, reason="finished segment missing",
                      seqs=tuple(sorted(seqs)))


def build_index(flight_dir: Path, *, flight: dict | None = None,
                previous: dict | None = None) -> dict:
    """Build the index of a flight from its segments (reads every segment once), keeping the
    evidence of ``previous`` (default: the index.json on disk, if any): see the module doc."""
    flight_dir = Path(flight_dir)
    if flight is None:
        try:
            flight = read_flight_json(flight_dir)
        except StoreCorruptError:
            flight = {}
    declared = flight.get("sources")
    kinds = {**source_kinds(flight_dir), **(declared if isinstance(declared, dict) else {})}
    kinds = {k: v for k, v in kinds.items() if v in KINDS}
    sections: dict[str, dict[str, dict]] = {"cameras": {}, "sources": {}}
    events: dict[str, Any] = {"count": 0, "segments": []}
    losses: list[dict] = []
    for name, paths in segment_paths(flight_dir).items():
        if name == "events":
            events, losses = _events_section(flight_dir, paths)
            continue
        kind, totals = _source_section(flight_dir, name, paths, kinds)
        sections[kind.section][name] = totals
    for name in flight.get("cameras", []):
        sections["cameras"].setdefault(name, CAMERA.index_empty())
    for name, kind_name in kinds.items():
        sections[KINDS[kind_name].section].setdefault(name, KINDS[kind_name].index_empty())
    index = {
        "version": INDEX_VERSION,
        "board": flight.get("board", ""),
        "flight": flight.get("flight", flight_dir.name),
        "cameras": sections["cameras"],
        "events": events,
        # what recovery cut or skipped, from the event log (byte ranges, seqs, camera)
        "losses": losses,
    }
    if sections["sources"]:  # only flights with non-camera sources have the section
        index["sources"] = sections["sources"]
    _keep_evidence(index, read_index_json(flight_dir) if previous is None else previous)
    return index


def _all_entries(index: dict) -> list[dict]:
    out = [s for section in ("cameras", "sources") for src in index.get(section, {}).values()
           for s in src.get("segments", [])]
    return out + list(index.get("events", {}).get("segments", []))


def index_is_stale(flight_dir: Path, index: dict, *, checksums: bool = False) -> bool:
    """True when the segments on disk differ from those the index describes (set, size or mtime).

    With ``checksums``, a segment whose mtime alone differs (a copy or a download: same bytes, new
    file) is checked against the index's sha256 instead, so a fetched flight's index counts as
    current when, and only when, every byte is what the board indexed."""
    flight_dir = Path(flight_dir)
    try:
        entries = {e["path"]: e for e in _all_entries(index)}
        on_disk = {p.relative_to(flight_dir).as_posix(): p
                   for paths in segment_paths(flight_dir).values() for p in paths}
        if set(entries) != set(on_disk) or index.get("version") != INDEX_VERSION:
            return True
        for rel, path in on_disk.items():
            st = path.stat()
            if st.st_size != entries[rel]["size"]:
                return True
            if st.st_mtime_ns != entries[rel]["mtime_ns"] and (
                    not checksums or sha256_file(path) != entries[rel]["sha256"]):
                return True
    except (KeyError, TypeError, AttributeError, OSError):
        return True
    return False




def load_index(flight_dir: Path, *, write: bool = True) -> dict:
    """The flight's index; rebuilt from the segments (and rewritten if ``write``) when missing or
    stale."""
    flight_dir = Path(flight_dir)
    path = flight_dir / INDEX_NAME
    on_disk = read_index_json(flight_dir)
    if on_disk and not index_is_stale(flight_dir, on_disk):
        return on_disk
    index = build_index(flight_dir, previous=on_disk)
    if write:
        write_json_atomic(path, index)
    return index
