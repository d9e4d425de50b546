"""A small two-board download built without network (the `built` fixture of conftest.py).

Each board flies through a real FlightStore with SimCamera(paced=False) frames (320x240) on a fake
monotonic clock, logs phase records like the daemon does, and lands under
``<out>/<board>/<flight>/`` (fetch layout). Board clocks differ (their monotonic zero is unrelated);
only the release edge is shared.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from pathlib import Path

from camctl.board.cameras.sim import SimCamera
from camctl.board.config import StoreConfig
from camctl.board.encode import encode_jpeg
from camctl.common.frames import EncodedFrame, FrameValue
from camctl.store import FlightStore

__all__ = ["BOARDS", "FLIGHT", "PLAN", "Built", "build_download"]

NS = 1_000_000_000
FLIGHT = "20260101T000000Z"
# (phase, event that enters it, start s from release, fps of "down"); "up" runs at half of it
PLAN = [("ARMED", "arm", -1.0, 4), ("DESCENT", "release", 0.0, 10),
        ("SEPARATION", "separation", 1.0, 10), ("TOUCHDOWN", "touchdown", 2.0, 5),
        ("LANDED", "", 2.6, 0)]
# monotonic ns of each board's release edge
BOARDS = {"rig-a": 1_000 * NS, "rig-b": 7_777 * NS + 123_456}
WALL0 = 1_767_225_600 * NS  # 2026-01-01T00:00:00Z, wall time of the release


@dataclass
class Built:
    root: Path
    # (board, camera)
    frames: dict[tuple[str, str], list[EncodedFrame]] = field(default_factory=dict)
    release_ns: dict[str, int] = field(default_factory=dict)


def _phase_rec(prev: str, phase: str, event: str, mono: int, release: int) -> dict:
    return {"kind": "phase", "name": phase, "phase_from": prev, "phase_to": phase, "event": event,
            "source": "gpio", "mono_ns": mono, "wall_ns": WALL0 + mono - release, "skipped": []}


def build_download(root: Path) -> Built:
    built = Built(root=root)
    for board, release in BOARDS.items():
        built.release_ns[board] = release
        store = FlightStore(root / board, board, FLIGHT, StoreConfig(commit_interval_ms=50),
                            cameras=["down", "up"])
        store.log_event({"kind": "flight", "name": "open", "board": board, "flight": FLIGHT,
                         "mono_ns": release - 2 * NS, "wall_ns": WALL0 - 2 * NS,
                         "cameras": {"down": {"role": "down", "size": [320, 240], "fps": {}},
                                     "up": {"role": "up", "size": [320, 240], "fps": {}}}})
        prev = "SAFE"
        for phase, event, start_s, _fps in PLAN:
            # board b sees separation 20 ms later than board a: its own event times must be used
            skew = 20_000_000 if board == "rig-b" and event == "separation" else 0
            at_ns = release + int(start_s * NS) + skew
            store.log_event(_phase_rec(prev, phase, event or "post_touchdown", at_ns, release))
            prev = phase
        for cam_name, div in (("down", 1), ("up", 2)):
            clock = [0]
            cam = SimCamera(cam_name, size=(320, 240), fps=4, role=cam_name, seed=7, paced=False,
                            clock=lambda c=clock: c[0])
            frames: list[EncodedFrame] = []
            for (phase, _ev, start_s, fps), nxt in itertools.pairwise(PLAN):
                rate = max(1, fps // div)
                clock[0] = release + int(start_s * NS)  # a reopened sensor starts its schedule now
                cam.set_fps(rate)
                with cam:
                    for _ in range(round((nxt[2] - start_s) * rate)):
                        fr = cam.capture()
                        value = FrameValue.PRETRIGGER if phase == "ARMED" else FrameValue.DESCENT
                        frames.append(EncodedFrame(cam_name, fr.seq, fr.timestamp_ns,
                                                   encode_jpeg(fr.image, 80), 320, 240, phase,
                                                   int(value)))
            if board == "rig-a" and cam_name == "down":  # a still at release (video-size)
                frames.append(EncodedFrame("down", 9_999, release + 1_000, frames[5].jpeg, 320, 240,
                                           "DESCENT", int(FrameValue.STILL), still=True))
            for f in frames:
                assert store.put(f)
            built.frames[(board, cam_name)] = frames
        if board == "rig-b":
            store.log_event({"kind": "fault", "camera": "up", "error": "CameraTimeout",
                             "message": "stall", "mono_ns": release + int(1.5 * NS),
                             "wall_ns": WALL0 + int(1.5 * NS)})
            store.log_event({"kind": "drop", "name": "queue_full", "camera": "down", "count": 3,
                             "total": 3, "mono_ns": release + int(0.5 * NS),
                             "wall_ns": WALL0 + int(0.5 * NS)})
        store.close()
    return built
