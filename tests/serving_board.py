"""A real ``camctl run`` board that serves during flight, with a big earlier flight in its store,
and its capture rate over a window (tests/test_serving_load.py, tests/test_flood.py)."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import simplejpeg

from camctl.board.config import StoreConfig
from camctl.common.frames import EncodedFrame
from camctl.demo import write_board_config
from camctl.ground import Client
from camctl.store import FlightStore, verify

__all__ = ["board_config", "rates", "write_old_flight"]


def write_old_flight(root: Path, board: str, *, frames: int = 40) -> str:
    """A finished flight of ``frames`` noisy 640x360 JPEGs per camera (about 8 MB in all)."""
    rng = np.random.default_rng(5)
    jpegs = [simplejpeg.encode_jpeg(rng.integers(0, 256, (360, 640, 3), dtype=np.uint8), quality=85)
             for _ in range(8)]
    flight = "20200101T000000Z"
    store = FlightStore(root, board, flight, StoreConfig(dir=root, segment_mb=2),
                        cameras=["down", "up"])
    for i in range(frames):
        for cam in ("down", "up"):
            assert store.put(EncodedFrame(camera=cam, seq=i,
                                          timestamp_ns=1_000_000_000 + i * 66_666_667,
                                          jpeg=jpegs[i % len(jpegs)], width=640, height=360,
                                          phase="DESCENT"))
    store.close()
    assert verify(root / flight).exit_code == 0
    return flight


def board_config(directory: Path) -> Path:
    """Board ``load-a``: two sim cameras, 640x360 at 15 fps in every phase, serving in flight."""
    rates = dict.fromkeys(("ARMED", "DESCENT", "SEPARATION", "TOUCHDOWN"), 15)
    return write_board_config(directory, "load-a", 0, size=(640, 360),
                              extra="serve_during_flight = true\n",
                              fps={"down": rates, "up": rates}, threads=2)


def rates(client: Client, window_s: float) -> tuple[dict[str, float], dict]:
    """Captured frames per second per camera over ``window_s``, on the board's own clock."""
    a = client.status()
    time.sleep(window_s)  # the measuring window itself: a ratio of two windows is asserted
    b = client.status()
    # when the counters were read (the publisher answers from a snapshot; docs/protocol.md STATE)
    t = "status_mono_ns" if "status_mono_ns" in a else "mono_ns"
    dt = (b[t] - a[t]) / 1e9
    return {c: (b["cameras"][c]["frames_captured"] - a["cameras"][c]["frames_captured"]) / dt
            for c in a["cameras"]}, b
