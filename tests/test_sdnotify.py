"""sd_notify: a real AF_UNIX datagram socket stands in for systemd's notify socket."""

from __future__ import annotations

import os
import socket
import uuid
from pathlib import Path

import pytest

from camctl.board.sdnotify import Notifier


def _recv(sock: socket.socket) -> dict[str, str]:
    sock.settimeout(10)
    data = sock.recv(4096).decode()
    return dict(line.split("=", 1) for line in data.split("\n"))


@pytest.fixture
def path_socket(tmp_path: Path):
    path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    yield str(path), sock
    sock.close()


def test_path_socket_receives_ready_status_watchdog_stopping(path_socket) -> None:
    path, sock = path_socket
    with Notifier(environ={"NOTIFY_SOCKET": path}) as n:
        assert n.enabled
        assert n.ready()
        assert _recv(sock) == {"READY": "1"}
        assert n.status("armed, 2 cameras")
        assert _recv(sock) == {"STATUS": "armed, 2 cameras"}
        assert n.watchdog()
        assert _recv(sock) == {"WATCHDOG": "1"}
        assert n.ready(status="up")
        assert _recv(sock) == {"READY": "1", "STATUS": "up"}
        assert n.stopping()
        assert _recv(sock) == {"STOPPING": "1"}
        assert n.notify(MAINPID=1234, STATUS="two\nlines")
        assert _recv(sock) == {"MAINPID": "1234", "STATUS": "two lines"}


def test_abstract_socket(path_socket) -> None:
    name = f"camctl-test-{uuid.uuid4().hex}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(b"\0" + name.encode())
    try:
        n = Notifier(environ={"NOTIFY_SOCKET": "@" + name})
        assert n.ready()
        assert _recv(sock) == {"READY": "1"}
        n.close()
        n.close()
        assert n.watchdog()  # reopens after close
        assert _recv(sock) == {"WATCHDOG": "1"}
    finally:
        sock.close()


def test_unset_environment_is_a_no_op() -> None:
    n = Notifier(environ={})
    assert not n.enabled
    assert n.watchdog_interval_s is None
    assert n.ready() is False
    assert n.status("x") is False
    assert n.watchdog() is False
    assert n.stopping() is False
    assert "disabled" in repr(n)


def test_relative_path_is_ignored() -> None:
    assert not Notifier(environ={"NOTIFY_SOCKET": "relative/sock"}).enabled


def test_broken_socket_never_raises_and_logs_once(tmp_path: Path,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("DEBUG", logger="camctl.board.sdnotify")
    n = Notifier(environ={"NOTIFY_SOCKET": str(tmp_path / "nobody-listens.sock")})
    assert n.enabled
    assert n.ready() is False
    assert n.watchdog() is False
    assert n.status("still fine") is False
    failures = [r for r in caplog.records if "sd_notify" in r.getMessage()]
    assert len(failures) == 1
    assert "nobody-listens.sock" in failures[0].getMessage()


def test_watchdog_interval_is_half_of_watchdog_usec() -> None:
    assert Notifier(environ={"WATCHDOG_USEC": "10000000"}).watchdog_interval_s == pytest.approx(5.0)
    own = {"WATCHDOG_USEC": "10000000", "WATCHDOG_PID": str(os.getpid())}
    assert Notifier(environ=own).watchdog_interval_s == pytest.approx(5.0)
    other = {"WATCHDOG_USEC": "10000000", "WATCHDOG_PID": str(os.getpid() + 1)}
    assert Notifier(environ=other).watchdog_interval_s is None
    assert Notifier(environ={"WATCHDOG_USEC": "junk"}).watchdog_interval_s is None
    assert Notifier(environ={"WATCHDOG_USEC": "0"}).watchdog_interval_s is None
    env = {"WATCHDOG_USEC": "4000", "WATCHDOG_PID": "7"}
    assert Notifier(environ=env, pid=7).watchdog_interval_s == pytest.approx(0.002)


def test_a_full_notify_queue_drops_messages_instead_of_blocking(path_socket) -> None:
    import threading

    # nobody reads it: the kernel queue fills after max_dgram_qlen datagrams
    path, sock = path_socket
    n = Notifier(environ={"NOTIFY_SOCKET": path})
    results: list[bool] = []
    t = threading.Thread(target=lambda: results.extend(n.watchdog() for _ in range(2000)),
                         daemon=True)
    t.start()
    t.join(60)  # a blocking sendto never returns here; this is a hang check, not a speed limit
    assert not t.is_alive(), "watchdog() blocked on a full notify socket"
    assert results[0] and not all(results)
    assert _recv(sock) == {"WATCHDOG": "1"}  # what was queued is intact
    n.close()
