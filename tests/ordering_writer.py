"""A flight store that reports every claim it makes, and the two ordering mutants (no tests here).

Run as ``python tests/ordering_writer.py ROOT CLAIMS VARIANT``: a :class:`FlightStore` (two
cameras, small segments) on ``ROOT`` (a forgetfs mount) is fed frames at a steady pace, with a
group commit every few frames and a phase event now and then, then closed (index.json). A reporter
thread appends to ``CLAIMS`` (outside the mount) one JSON line ``{"t": time.monotonic(),
"durable_seq": {camera: seq}, "dropped": {camera: n}}`` whenever the store's claim changes, and at
least every 10 ms, its ``stats()`` read just after ``t``: so a line holds every claim the store made
before its ``t`` (claims only grow).

``VARIANT`` is ``correct`` or a mutant (:data:`MUTANTS`) applied to the store's classes in this
process only: ``mutant_a`` marks a segment's records durable before the segment's file fsync,
``mutant_b`` before the first fsync of a new segment's directory. The store's code is not edited
(``tests/test_powercut.py`` applies them with ``monkeypatch.setattr`` through
``CAMCTL_POWERCUT_MUTANT``).

Frame ``seq`` of camera ``cam`` carries :func:`expected_jpeg` ``(cam, seq)``.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from store_helpers import frame, jpeg

from camctl.store import FlightStore
from camctl.store._committer import Committer
from camctl.store._files import SegmentFiles
from camctl.store.config import StoreConfig
from camctl.store.index import fsync_dir

CAMERAS = ("down", "up")
FLIGHT = "F"
FRAMES = 48  # per camera
COMMIT_EVERY = 6  # frames per camera between group commits
PACE_S = 0.004  # between frames
# ~2 KB per frame: a segment rotates every ~10 frames, so each camera has a handful of segments
CONFIG = StoreConfig(segment_mb=0.02, segment_s=3600.0, commit_interval_ms=600_000, reserve_mb=0,
                     queue_frames=100_000)
_JPEGS = [jpeg(i, 32, 24) for i in range(8)]


def expected_jpeg(camera: str, seq: int) -> bytes:
    """The JPEG the writer put as frame ``seq`` of ``camera``."""
    return _JPEGS[(seq + len(camera)) % len(_JPEGS)]


def _segment_name(files: SegmentFiles, seg: object) -> str:
    return next(n for n, s in files.segments.items() if s is seg)


Patch = Callable[[object, str, object], None]  # setattr, or pytest's monkeypatch.setattr


def _tracking_committers(patch: Patch) -> dict[int, Committer]:
    """Committers made from now on, by ``id()`` of their SegmentFiles."""
    made: dict[int, Committer] = {}
    init = Committer.__init__

    def tracked(self: Committer, *args: object, **kw: object) -> None:
        init(self, *args, **kw)  # type: ignore[arg-type]
        made[id(self.files)] = self

    patch(Committer, "__init__", tracked)
    return made


def mutant_a(patch: Patch = setattr) -> None:
    """The books say durable before the segment's file fsync (then the store goes on as usual)."""
    committers = _tracking_committers(patch)
    real_sync, real_synced = SegmentFiles.sync, Committer._synced

    def sync(self: SegmentFiles, seg, *, finish: bool = False) -> None:
        real_synced(committers[id(self)], _segment_name(self, seg), seg)  # the claim first ...
        real_sync(self, seg, finish=finish)  # ... then the file fsync (and the dir's)

    patch(SegmentFiles, "sync", sync)


def mutant_b(patch: Patch = setattr) -> None:
    """The books say durable after the file fsync but before a new segment's directory fsync."""
    committers = _tracking_committers(patch)
    real_sync, real_synced = SegmentFiles.sync, Committer._synced

    def sync(self: SegmentFiles, seg, *, finish: bool = False) -> None:
        new = seg.needs_dir_sync
        seg.needs_dir_sync = False
        real_sync(self, seg, finish=finish)  # the file fsync only
        real_synced(committers[id(self)], _segment_name(self, seg), seg)  # the claim ...
        if new:
            fsync_dir(seg.path.parent)  # ... then the directory fsync

    patch(SegmentFiles, "sync", sync)


MUTANTS: dict[str, Callable[..., None]] = {"mutant_a": mutant_a, "mutant_b": mutant_b}
VARIANTS = ("correct", *MUTANTS)


class Reporter:
    """Appends the store's claims to a file as it makes them (see the module doc)."""

    def __init__(self, path: Path) -> None:
        self.store: FlightStore | None = None
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        last, last_t = None, 0.0
        while not self._stop.is_set():
            t, claim = self.report(last, last_t)
            if claim != last or t - last_t >= 0.01:
                last, last_t = claim, t
            time.sleep(0.001)

    def _claim(self) -> dict:
        if self.store is None:
            return {"durable_seq": {}, "dropped": {}}
        stats = self.store.stats()
        return {"durable_seq": {c: stats[c]["durable_seq"] for c in CAMERAS},
                "dropped": {c: sum(stats[c]["dropped"].values()) for c in CAMERAS}}

    def report(self, last: dict | None = None, last_t: float = -1.0) -> tuple[float, dict]:
        """Write the claim now if it changed or 10 ms went by; ``t`` is taken *before* the claim is
        read, so the line holds every claim the store made before ``t`` (claims only grow)."""
        t = time.monotonic()
        claim = self._claim()
        if claim != last or t - last_t >= 0.01:
            os.write(self._fd, (json.dumps({"t": t, **claim}) + "\n").encode())
        return t, claim

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.report()
        os.close(self._fd)


def main(root: Path, claims: Path, variant: str) -> None:
    if variant != "correct":
        MUTANTS[variant]()
    reporter = Reporter(claims)
    store = FlightStore(root, "ordering", FLIGHT, CONFIG, cameras=CAMERAS)
    reporter.store = store
    try:
        store.log_event({"kind": "phase", "name": "open"})
        for seq in range(FRAMES):
            for cam in CAMERAS:
                assert store.put(frame(cam, seq, data=expected_jpeg(cam, seq)))
            time.sleep(PACE_S)
            if seq % COMMIT_EVERY == COMMIT_EVERY - 1:
                if seq % (3 * COMMIT_EVERY) == COMMIT_EVERY - 1:
                    store.log_event({"kind": "phase", "name": f"p{seq}"})
                store.commit(wait=True)
        store.close()
    finally:
        reporter.close()


if __name__ == "__main__":
    if len(sys.argv) != 4 or sys.argv[3] not in VARIANTS:
        sys.exit(f"usage: ordering_writer.py ROOT CLAIMS {{{'|'.join(VARIANTS)}}}")
    main(Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3])
