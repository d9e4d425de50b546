"""Configs for in-process boards: a ``Daemon`` with two sim cameras, mock GPIO lines and loopback
ZMQ, small enough that a flight takes seconds (tests/test_daemon.py, tests/test_resume.py)."""

from __future__ import annotations

import contextlib
import dataclasses
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from camctl.board.config import Config, parse_config
from camctl.board.daemon import Daemon

__all__ = ["CAMERAS", "main_loop", "make_config", "replacements_fail", "replacements_heal"]

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


def replacements_heal(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every camera built from now on (a watchdog's replacement, once the boot check is done) is the
    configured one without its faults: the fresh camera does not hang again."""
    import camctl.board.cameras

    real = camctl.board.cameras.make_camera

    def healthy(cam_cfg: Any, **kw: Any) -> Any:
        return real(dataclasses.replace(cam_cfg, faults=()), **kw)

    monkeypatch.setattr(camctl.board.cameras, "make_camera", healthy)


def replacements_fail(monkeypatch: pytest.MonkeyPatch) -> None:
    """No camera can be built from now on (the backend is gone): a hung camera is isolated."""
    import camctl.board.cameras
    from camctl.exc import CameraError

    def broken(*_a: Any, **_k: Any) -> Any:
        raise CameraError("down", "no camera object (backend gone)")

    monkeypatch.setattr(camctl.board.cameras, "make_camera", broken)


@contextlib.contextmanager
def main_loop(d: Daemon) -> Iterator[threading.Thread]:
    """``d.run_forever`` (timers, the capture watchdog, status) on a thread, as ``camctl run`` has
    it; stopped and joined when the block ends."""
    t = threading.Thread(target=d.run_forever, kwargs={"install_signals": False}, daemon=True)
    t.start()
    try:
        yield t
    finally:
        d.request_stop()
        t.join(30)
