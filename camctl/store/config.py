"""The store's settings (``[store]`` in a board's config), owned by the store that obeys them.

The board's config parser (:mod:`camctl.board.config`) validates the TOML table into this dataclass;
the store, its benchmarks and its tests build one directly.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = ["StoreConfig"]


@dataclass(frozen=True)
class StoreConfig:
    dir: Path = Path("/var/lib/camctl")
    segment_mb: float = 64.0
    segment_s: float = 60.0
    commit_interval_ms: int = 200
    # free space, above what finishing the flight needs (computed by the store: every open segment's
    # summary and footer, the event log's room, index.json), below which frames are shed by value
    # (store/quota.py)
    reserve_mb: float = 512.0
    queue_frames: int = 512
    # the mount point store.dir must be on (e.g. the SSD's); `camctl doctor` checks
    mount: Path | None = None
