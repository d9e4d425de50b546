"""Configs for in-process boards: a ``Daemon`` with two sim cameras, mock GPIO lines and loopback
ZMQ, small enough that a flight takes seconds (tests/test_daemon.py, tests/test_resume.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from camctl.board.config import Config, parse_config

__all__ = ["CAMERAS", "make_config"]

CAMERAS = ("down", "up")


def make_config(tmp: Path, *, faults: list[dict] | None = None, descent_timeout_s: float = 60.0,
                post_touchdown_s: float = 0.2) -> Config:
    """Board ``rig-t`` storing under ``tmp/store``; ``faults`` are injected into camera ``down``."""
    cams = []
    for i, name in enumerate(CAMERAS):
        cam: dict[str, Any] = {"name": name, "role": name, "backend": "sim", "size": [160, 120],
                               "seed": 7 + i, "pretrigger_s": 2.0,
                               "fps": {"ARMED": 10, "DESCENT": 20, "SEPARATION": 20,
                                       "TOUCHDOWN": 10}}
        if faults and name == "down":
            cam["faults"] = faults
        cams.append(cam)
    return parse_config({
        "board": "rig-t",
        "store": {"dir": str(tmp / "store"), "segment_mb": 4, "reserve_mb": 1},
        "gpio": {"backend": "mock", "bounce_ms": 5,
                 "events": {"arm": 17, "release": 27, "separation": 22, "touchdown": 23}},
        "phases": {"post_touchdown_s": post_touchdown_s, "descent_timeout_s": descent_timeout_s},
        "encode": {"threads": 1},
        "cameras": cams,
        "publish": {"bind": "tcp://127.0.0.1:*", "events": "tcp://127.0.0.1:*"},
    })
