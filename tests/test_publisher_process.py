"""The publisher in its own process (camctl/board/publish/process.py, child.py, link.py): its own
limits, restarted on the same endpoint when it dies while capture goes on, gone with its daemon,
fresh where freshness matters (STATUS after a command, what is being written now)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from boards import main_loop, make_config
from waiting import wait_for

from camctl.board.config import parse_config
from camctl.board.daemon import read_daemon_info
from camctl.exc import ConfigError
from camctl.ground.client import Client
from camctl.ground.fetch import fetch


def _limits(pid: int) -> dict[str, str]:
    out = {}
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines()[1:]:
        name, soft = line[:26].strip(), line[26:47].strip()
        out[name] = soft
    return out


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie of ours counts as gone
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_the_publisher_is_another_process_with_its_own_limits(daemon, tmp_path: Path) -> None:
    d = daemon()
    pid = d.publisher.pid
    assert pid and pid != os.getpid()
    assert read_daemon_info(tmp_path / "store")["publisher_pid"] == pid
    assert d.status()["publisher"]["pid"] == pid
    limits = _limits(pid)
    assert limits["Max open files"] == "1024"
    # its idle size plus the budget: what the network may add (camctl.board.publish.child)
    budget = d.cfg.publish.memory_mb << 20
    assert budget < int(limits["Max data size"]) <= budget + (400 << 20)
    assert os.getpriority(os.PRIO_PROCESS, pid) == os.getpriority(os.PRIO_PROCESS, 0) + 10
    assert Path(f"/proc/{pid}/oom_score_adj").read_text().strip() == "1000"
    # the capture process keeps its own limits: the network cannot spend them
    assert _limits(os.getpid())["Max data size"] == "unlimited"
    with Client(d.publisher.router_endpoint, timeout_s=10) as c:
        assert c.hello().board == "rig-t"
        st = c.status()
    assert st["pid"] == os.getpid() and st["publisher"]["pid"] == pid


def test_status_says_what_a_command_did_at_once(daemon) -> None:
    """The child answers STATUS from the daemon's snapshot: a command's effect is in it before the
    DONE (broken on purpose: without the push after a command, STATUS said SAFE here)."""
    d = daemon()
    with Client(d.publisher.router_endpoint, timeout_s=10) as c:
        for _ in range(3):
            c.command("arm")
            assert c.status()["phase"] == "ARMED"
            c.command("disarm")
            assert c.status()["phase"] == "SAFE"


def test_a_killed_publisher_comes_back_on_its_endpoint_and_the_flight_goes_on(
        daemon, tmp_path: Path) -> None:
    """kill -9 of the publisher in DESCENT: the daemon starts another on the same endpoint, says
    so in daemon.json and STATUS, and the flight's books balance after landing (broken on purpose:
    with the restart removed, the wait for a new pid timed out)."""
    d = daemon()
    router = d.publisher.router_endpoint
    with main_loop(d):
        with Client(router, timeout_s=10) as c:
            c.command("arm")
            c.command("event", name="release")
        first = d.publisher.pid
        captured = d.status()["cameras"]["down"]["frames_captured"]
        os.kill(first, signal.SIGKILL)
        wait_for(lambda: d.publisher.pid not in (None, first) and d.publisher.restarts == 1,
                 "a new publisher process")
        assert read_daemon_info(tmp_path / "store")["publisher_pid"] == d.publisher.pid
        assert d.publisher.router_endpoint == router
        with Client(router, timeout_s=10) as c:
            st = c.status()
            assert st["publisher"]["restarts"] == 1
            assert st["publisher"]["last_exit"] == "signal SIGKILL"
            assert st["phase"] == "DESCENT"
            wait_for(lambda: c.status()["cameras"]["down"]["frames_captured"] > captured + 5,
                     "frames captured after the publisher's restart")
            c.command("event", name="touchdown")
            wait_for(lambda: c.status()["serving"], "serving after touchdown")
    report = fetch([router], tmp_path / "out", progress=False)
    assert report.ok and report.boards[0].fetched > 0, report.summary()
    st = d.status()
    for cam in st["cameras"].values():
        assert not cam.get("dropped"), cam


def test_the_publisher_goes_when_its_daemon_is_killed(tmp_path: Path) -> None:
    """A daemon killed with -9 closes the link: its publisher exits and frees the port for the
    next start (broken on purpose: with the child's EOF handling removed it stayed alive)."""
    cfg = tmp_path / "rig.toml"
    cfg.write_text(f"""
board = "rig-k"
[store]
dir = "{tmp_path / 'store'}"
[gpio]
backend = "mock"
[publish]
bind = "tcp://127.0.0.1:*"
events = "tcp://127.0.0.1:*"
[[cameras]]
name = "down"
backend = "sim"
size = [160, 120]
""")
    proc = subprocess.Popen([sys.executable, "-m", "camctl", "run", "--config", str(cfg)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        def started() -> dict | None:
            try:
                return read_daemon_info(tmp_path / "store")
            except (OSError, ValueError):
                return None
        info = wait_for(started, "daemon.json of the camctl run")
        child = info["publisher_pid"]
        assert child and child != proc.pid and _alive(child)
        proc.kill()
        proc.wait(30)
        wait_for(lambda: not _alive(child), "the orphaned publisher to exit")
    finally:
        proc.kill()
        proc.wait(30)


def test_a_taken_port_is_one_line_naming_it(daemon, tmp_path: Path) -> None:
    first = daemon()
    port = first.publisher.router_endpoint.rsplit(":", 1)[1]
    base = make_config(tmp_path / "two")
    raw = {"board": "rig-2", "store": {"dir": str(tmp_path / "two" / "store")},
           "gpio": {"backend": "mock"},
           "cameras": [{"name": "down", "backend": "sim", "size": [160, 120]}],
           "publish": {"bind": f"tcp://127.0.0.1:{port}", "events": "tcp://127.0.0.1:*"}}
    assert base.board == "rig-t"
    with pytest.raises(ConfigError, match=rf"cannot bind tcp://127.0.0.1:{port} .*another camctl"):
        daemon(parse_config(raw))


def test_events_reach_subscribers_through_the_child(daemon) -> None:
    import json

    import zmq

    d = daemon()
    ctx = zmq.Context.instance()
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.LINGER, 0)
    sub.setsockopt(zmq.SUBSCRIBE, b"phase")
    sub.connect(d.publisher.pub_endpoint)
    try:
        deadline = time.monotonic() + 30  # a hang guard: the slow joiner may miss a few
        got = None
        while got is None and time.monotonic() < deadline:
            d.command("arm", {})
            if sub.poll(500):
                got = json.loads(sub.recv_multipart()[1])
            d.command("disarm", {})
        assert got is not None and got["phase_to"] in ("ARMED", "SAFE")
    finally:
        sub.close()


def test_a_terminated_publisher_exits_and_is_replaced(daemon) -> None:
    """SIGTERM (a kill, systemd's control-group stop) ends the publisher cleanly; the daemon,
    still running, starts another (broken on purpose: with SIGTERM ignored, as it first was, no
    new process came)."""
    d = daemon()
    first = d.publisher.pid
    os.kill(first, signal.SIGTERM)
    wait_for(lambda: d.publisher.pid not in (None, first), "a new publisher process")
    assert d.publisher.info()["last_exit"] == "exit code 0"
    with Client(d.publisher.router_endpoint, timeout_s=10) as c:
        assert c.ping() > 0
