"""A whole flight from line edges on a real kernel's GPIO: a real ``camctl run`` (sim cameras,
``[gpio] backend = "lgpio"``) claims the gpio-sim chip through lgpio and gpiozero's LGPIOFactory
(``CAMCTL_PIN_FACTORY=camctl.testing.kernel_gpio:sim_factory``: camctl.board.pin_env), and this
test moves the lines as wiring would (gpio-sim's sysfs ``pull``). Then ``camctl doctor`` reads the
line levels from the running daemon's STATUS, and ``camctl gpio watch`` prints edges from the chip.

Runs only inside the kernel tier's VM (``python -m camctl.testing.kernelvm
tests/kernelvm/test_in_vm_flight.py``; tests/test_kernel_gpio.py runs every module here). Times are
compared with the VM's monotonic clock read around them, never with how long something took; the
timeouts are liveness bounds for a VM under software emulation.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from waiting import wait_for

from camctl.board.pin_env import PIN_FACTORY_ENV
from camctl.testing import kernelvm

pytestmark = [
    pytest.mark.skipif(not kernelvm.in_vm(), reason="runs in the kernel tier's VM only "
                       "(python -m camctl.testing.kernelvm)"),
    # a liveness bound: several camctl processes start under software emulation
    pytest.mark.timeout(1200),
]

ENV = {PIN_FACTORY_ENV: "camctl.testing.kernel_gpio:sim_factory"}
# BCM numbers = the sim chip's lines; every line active low with the Pi's pull-up (at rest: high)
PINS = {"arm": 17, "release": 27, "separation": 22, "touchdown": 23}
RATES = {"ARMED": 2, "DESCENT": 4, "SEPARATION": 4, "TOUCHDOWN": 4}
SLOW = 120.0  # seconds: a liveness bound for one step of a process under emulation
# how often a wait asks the board's STATUS: each ask is a round trip through two Python processes
# on the VM's one emulated CPU, which the daemon needs for the very change waited for
POLL_S = 0.1


@pytest.fixture(scope="module")
def sim():
    from camctl.testing.kernel_gpio import GpioSim

    return GpioSim.from_env()


def _config(directory: Path) -> Path:
    from camctl.demo import write_board_config

    # real lines and CURVE off: the test's network arm needs the explicit (unsafe) opt-in
    path = write_board_config(directory, "vm-a", 0, size=(160, 120), post_touchdown_s=1.0,
                              stills=(), fps={"down": RATES, "up": RATES},
                              extra="unsafe_remote_commands = true\n")
    text = path.read_text()
    assert 'backend = "mock"' in text and text.count("seed = 101") == 1
    # both cameras on one sim scene seed: the daemon builds one 2048x2048 ground texture at start,
    # not two (numpy under software emulation: most of the board's start); the lines are the test
    path.write_text(text.replace('backend = "mock"', 'backend = "lgpio"')
                    .replace("seed = 101", "seed = 100"))
    return path


def _events(flight_dir: Path) -> list[dict]:
    from camctl.store import iter_events

    return [e for seg in sorted((flight_dir / "events").glob("*.mcap")) for e in iter_events(seg)]


def test_a_flight_from_line_edges_then_doctor_and_gpio_watch_on_the_chip(sim, tmp_path: Path,
                                                                       camctl_cli):
    import zmq

    from camctl.demo import start_board
    from camctl.ground import Client
    from camctl.store import list_flights

    for pin in PINS.values():
        sim.pull(pin, high=True)  # every line at rest
    cfg = _config(tmp_path / "b")
    store = tmp_path / "b" / "store"
    board = start_board(cfg, store, "vm-a", timeout_s=600, env=ENV)
    sub = zmq.Context.instance().socket(zmq.SUB)
    sub.setsockopt(zmq.LINGER, 0)
    sub.setsockopt(zmq.SUBSCRIBE, b"event")
    sub.connect(board.pub)
    heard: list[dict] = []

    def heard_event(**want: str) -> bool:
        while sub.poll(0):
            heard.append(json.loads(sub.recv_multipart()[1]))
        return any(all(e.get(k) == v for k, v in want.items()) for e in heard)

    moved: dict[str, tuple[int, int]] = {}  # step -> (before the pull, when the status showed it)
    try:
        with Client(board.router, timeout_s=SLOW) as c:
            st = c.status()
            assert st["phase"] == "SAFE" and st["lines"] == dict.fromkeys(PINS, 0), st

            def move(step: str, event: str, active: bool, *phases: str) -> None:
                before = time.monotonic_ns()
                sim.pull(PINS[event], high=not active)
                wait_for(lambda: c.status()["phase"] in phases, f"{step}: {phases}",
                         timeout_s=SLOW, interval_s=POLL_S)
                moved[step] = (before, time.monotonic_ns())

            # flight 1: the key on arms, the key off disarms (docs/phases-and-gpio.md, "The arm
            # key")
            move("key on", "arm", True, "ARMED")
            move("key off", "arm", False, "SAFE")
            # flight 1 closed before anything else (the board serves once its files are): the
            # next arm is flight 2's, not one racing flight 1's close (no test here for that)
            wait_for(lambda: c.status()["serving"], "flight 1 closed", timeout_s=SLOW,
                     interval_s=POLL_S)
            # with the real key off, a network arm is refused
            refused = camctl_cli("arm", "--connect", board.router, env=ENV)
            assert refused.returncode == 2 and "the arm key is off" in refused.stderr, refused
            # flight 2: the whole descent from edges; the key turned off in it changes nothing
            move("arm", "arm", True, "ARMED")
            move("release", "release", True, "DESCENT")
            sim.pull(PINS["arm"], high=True)
            wait_for(lambda: heard_event(name="disarm", source="gpio", outcome="in_flight"),
                     "the key-off in DESCENT, refused", timeout_s=SLOW, interval_s=POLL_S)
            assert c.status()["phase"] == "DESCENT"
            move("separation", "separation", True, "SEPARATION")
            move("touchdown", "touchdown", True, "TOUCHDOWN", "LANDED")  # LANDED 1 s later
            wait_for(lambda: (s := c.status())["phase"] == "LANDED" and s["serving"],
                     "LANDED and served", timeout_s=SLOW, interval_s=POLL_S)
            for event in ("release", "separation", "touchdown"):
                sim.pull(PINS[event], high=True)
            # the key on after landing arms nothing; a disarm then leaves SAFE with the key on
            sim.pull(PINS["arm"], high=False)
            wait_for(lambda: c.status()["lines"]["arm"] == 1, "the key read on", timeout_s=SLOW,
                     interval_s=POLL_S)
            assert c.command("disarm")["phase"] == "SAFE"
            st = c.status()
            assert st["lines"] == {"arm": 1, "release": 0, "separation": 0, "touchdown": 0}, st
        # doctor beside the running daemon: the levels from its STATUS, the key on in SAFE warned
        doctor = camctl_cli("doctor", "--config", str(cfg), env=ENV)
        lines = [row for row in doctor.stdout.splitlines() if row[6:].startswith("lines:")]
        assert len(lines) == 2, doctor.stdout + doctor.stderr
        assert lines[0].startswith("OK") and (
            f"from the running camctl (pid {board.proc.pid}, phase SAFE)" in lines[0]), lines
        assert ("arm=BCM17 on release=BCM27 at rest separation=BCM22 at rest "
                "touchdown=BCM23 at rest") in lines[0], lines
        assert lines[1].startswith("WARN") and "arm key is ON" in lines[1], lines
        assert board.stop(timeout=SLOW) == 0
    finally:
        sub.close()
        board.kill9()
        for pin in PINS.values():
            sim.pull(pin, high=True)

    # the flights' event logs: every phase from a line edge, stamped by the kernel between the pull
    # and the status that showed it
    first, second = (store / f for f in list_flights(store))
    phases = [(e["phase_to"], e["event"], e["source"], e["mono_ns"]) for e in _events(first)
              if e.get("kind") == "phase"]
    assert [p[:3] for p in phases] == [("ARMED", "arm", "gpio"), ("SAFE", "disarm", "gpio")]
    for (_, _, _, t), step in zip(phases, ("key on", "key off"), strict=True):
        assert moved[step][0] <= t <= moved[step][1], (step, t, moved[step])
    events = _events(second)
    phases = [(e["phase_to"], e["event"], e["source"], e["mono_ns"]) for e in events
              if e.get("kind") == "phase"]
    assert [p[:3] for p in phases] == [
        ("ARMED", "arm", "gpio"), ("DESCENT", "release", "gpio"),
        ("SEPARATION", "separation", "gpio"), ("TOUCHDOWN", "touchdown", "gpio"),
        ("LANDED", "timeout", "timer")], phases
    for (_, _, _, t), step in zip(phases, ("arm", "release", "separation", "touchdown"),
                                  strict=False):
        assert moved[step][0] <= t <= moved[step][1], (step, t, moved[step])
    refused = [(e["phase"], e["source"]) for e in events
               if e.get("kind") == "event" and e["name"] == "disarm"]
    assert refused == [("DESCENT", "gpio")], refused

    # gpio watch on the chip, now that no daemon holds it: the levels at start, then each edge
    watch = subprocess.Popen([sys.executable, "-m", "camctl", "gpio", "watch", "--config",
                              str(cfg)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, env={**os.environ, **ENV})
    try:
        head = [watch.stdout.readline() for _ in range(1 + len(PINS))]
        assert head[0].startswith("watching 4 lines on lgpio"), head
        assert all("(at start)" in row and "inactive" in row for row in head[1:]), head
        sim.pull(PINS["release"], high=False)
        pulled = watch.stdout.readline()
        sim.pull(PINS["release"], high=True)
        back = watch.stdout.readline()
    finally:
        watch.send_signal(signal.SIGINT)
        _, err = watch.communicate(timeout=SLOW)
        sim.pull(PINS["release"], high=True)
    assert "gpio27" in pulled and "low" in pulled and "ACTIVE" in pulled, pulled
    assert "gpio27" in back and "high" in back and "inactive" in back and " ms" in back, back
    assert watch.returncode == 0, err
