"""Value-ordered overload on the shipped sizings: with the encoder slowed to a stop, a camera at its
own in-flight limit makes room by pushing out a cheaper waiting frame, so no DESCENT or TOUCHDOWN
frame is lost while an ARMED one is kept (one camera as with many)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from scripted import ScriptedCamera, Sink
from waiting import wait_for

import camctl.board.encode
from camctl.board.cameras_fleet import CameraFleet
from camctl.board.config import load_config
from camctl.common.frames import Frame
from camctl.common.ledger import Ledger, balance

RIGS = Path(__file__).resolve().parent.parent / "hardware" / "rigs"


class AskingCamera(ScriptedCamera):
    """Gated: one frame per permit; ``asks`` counts the captures begun (the runner is back for the
    next frame once it grows, so the last one was filed)."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.gated = True
        self.asks = 0

    def capture(self, timeout_s: float = 1.0) -> Frame:
        self.asks += 1
        return super().capture(3600.0)  # a test's permit, not a sensor's timeout


def _frames(cam: AskingCamera, n: int) -> None:
    """Let ``n`` frames through, each filed before the next is asked."""
    for _ in range(n):
        before = cam.asks
        cam.gate.release()
        wait_for(lambda b=before: cam.asks > b, f"{cam.name} filed its frame")


@pytest.mark.parametrize("rig", ["pi5-dropbox.toml", "cm4-parachute-2cam.toml"])
def test_no_descent_or_touchdown_frame_is_lost_while_an_armed_one_waits(rig: str,
                                                                        monkeypatch) -> None:
    cfg = load_config(RIGS / rig)
    gate = threading.Event()  # the encoder, slowed to a stop until the flight's frames are in
    real = camctl.board.encode.encode_jpeg
    monkeypatch.setattr(camctl.board.encode, "encode_jpeg",
                        lambda *a, **k: (gate.wait(), real(*a, **k))[1])
    cams = {c.name: AskingCamera(c.name) for c in cfg.cameras}
    sink, ledger = Sink(), Ledger()
    fleet = CameraFleet(cfg, sink=sink, ledger=lambda: ledger, on_fault=lambda _r: None,
                        cameras=cams)
    first = cfg.cameras[0].name
    try:
        fleet.set_phase("ARMED")
        fleet.start()
        wait_for(lambda: all(c.asks == 1 for c in cams.values()), "every camera asking")
        # one camera fills the encoder: its threads busy, the pool's every waiting place taken,
        # then two more that nothing waiting is cheaper than (refused: equal value)
        armed = fleet.pool.capacity + cfg.encode.threads + 2
        _frames(cams[first], armed)
        assert fleet.pool.waiting == fleet.pool.capacity
        fleet.set_phase("DESCENT")
        for cam in cams.values():
            _frames(cam, 3)
        fleet.set_phase("TOUCHDOWN")
        for cam in cams.values():
            _frames(cam, 3)
        refused, evicted = ledger.totals()[first]["dropped"], fleet.pool.evicted
    finally:
        gate.set()
        for cam in cams.values():  # the capture waiting for a permit returns, ungated
            cam.gated = False
            cam.gate.release()
        fleet.set_phase("LANDED")
        fleet.wait_idle()
        fleet.stop()
        fleet.close()
    totals = ledger.totals()
    for name in cams:
        stored = [f for f in sink.frames if f.camera == name]
        kept = [f.seq for f in stored if f.phase in ("DESCENT", "TOUCHDOWN")]
        base = armed if name == first else 0
        assert kept[:6] == list(range(base + 1, base + 7)), (name, kept, totals[name])
        assert balance(totals[name], len(stored))["balanced"], totals[name]
    # the room was made from the ARMED frames: one waiting pushed out for each later frame, the
    # two ARMED ones nothing waiting was cheaper than refused at the camera
    assert refused == {"encoder_behind": 2} and evicted == 6 * len(cams)
    assert any(f.phase == "ARMED" for f in sink.frames)  # the ones already encoding were kept
