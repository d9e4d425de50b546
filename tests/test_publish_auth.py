"""Operator commands are authorised: with CURVE on only operator keys may COMMAND, a remote
``event`` on a board with real GPIO needs ``publish.remote_events``, every refusal is answered with
its code and logged with the peer, allow-lists reload on change; one key folder per machine and one
server key per board."""

from __future__ import annotations

import logging
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import zmq
import zmq.auth
from netfixtures import FakeBoard, make_store
from waiting import wait_for

from camctl.board.config import PublishConfig
from camctl.board.publish import Publisher, previews
from camctl.common import protocol as p
from camctl.common.keys import ClientCurve, client_curves, create_keys, load_client_curve
from camctl.exc import ConfigError, RemoteError
from camctl.ground import Client, fetch


def _cfg(keys: Path | None = None, **kw: object) -> PublishConfig:
    return PublishConfig(bind="tcp://127.0.0.1:*", events="tcp://127.0.0.1:*",
                         curve_keys=str(keys) if keys else "", **kw)  # type: ignore[arg-type]


def test_keys_folders_keep_secrets_apart(tmp_path: Path) -> None:
    create_keys(tmp_path / "k", boards=["rig-a", "rig-b"], clients=2)
    k = tmp_path / "k"
    def files(folder: str) -> set[str]:
        return {f.relative_to(k / folder).as_posix() for f in (k / folder).rglob("*")
                if f.is_file()}

    assert files("rig-a") == {"server.key", "server.key_secret", "readers/client.key",
                              "readers/client-2.key", "operators/client.key"}
    # one folder per ground machine, each used as it is: its own pair as client.*, every board's key
    laptop = {"client.key", "client.key_secret", "servers/rig-a.key", "servers/rig-b.key"}
    assert files("ground") == laptop and files("ground-2") == laptop
    assert ((k / "ground-2" / "client.key").read_bytes()
            == (k / "rig-a" / "readers" / "client-2.key").read_bytes())
    assert ((k / "ground" / "client.key").read_bytes()
            == (k / "rig-b" / "operators" / "client.key").read_bytes())
    assert ((k / "ground-2" / "client.key_secret").stat().st_mode & 0o777) == 0o600
    assert (k / "rig-a" / "server.key").read_text() != (k / "rig-b" / "server.key").read_text()
    assert ((k / "ground" / "servers" / "rig-b.key").read_bytes()
            == (k / "rig-b" / "server.key").read_bytes())
    assert ((k / "rig-a" / "server.key_secret").stat().st_mode & 0o777) == 0o600
    # one server key per board: by host name, by first label, or given per URL
    curves = client_curves(k / "ground", ["tcp://rig-a:5555", "tcp://rig-b.local:5555"])
    assert (curves["tcp://rig-a:5555"].server_public
            != curves["tcp://rig-b.local:5555"].server_public)
    with pytest.raises(ConfigError, match="no CURVE server key for tcp://rig-c:5555"):
        client_curves(k / "ground", ["tcp://rig-c:5555"])
    with pytest.raises(ConfigError, match="once per --connect"):
        client_curves(k / "ground", ["tcp://a:1", "tcp://b:1", "tcp://c:1"], ["x.key", "y.key"])
    with pytest.raises(ConfigError, match="rig-a"):
        create_keys(tmp_path / "k", boards=["rig-a"])


def test_multi_board_fetch_one_server_key_per_board(tmp_path: Path) -> None:
    k = tmp_path / "k"
    create_keys(k, boards=["rig-a", "rig-b"])
    pubs = []
    try:
        for name in ("rig-a", "rig-b"):
            make_store(tmp_path / name, cameras=("down",), segments=1, frames=3)
            pub = Publisher(FakeBoard(name, tmp_path / name), _cfg(k / name))
            pub.start()
            pubs.append(pub)
        urls = [x.router_endpoint for x in pubs]
        curves = client_curves(k / "ground", urls, [str(k / "ground" / "servers" / "rig-a.key"),
                                                    str(k / "ground" / "servers" / "rig-b.key")])
        report = fetch(urls, tmp_path / "out", progress=False, curve=curves, give_up_after_s=20)
        assert report.ok, report.summary()
        assert {b.board for b in report.boards} == {"rig-a", "rig-b"}
    finally:
        for x in pubs:
            x.close()


def test_command_needs_an_operator_key_and_allow_list_reloads(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    k = tmp_path / "k"
    create_keys(k, clients=2)
    make_store(tmp_path / "s", segments=1, frames=2)
    board = FakeBoard("rig-s", tmp_path / "s")
    board.phase = "SAFE"
    pub = Publisher(board, _cfg(k / "board"))
    pub.start()
    operator = load_client_curve(k / "ground")
    reader = load_client_curve(k / "ground-2")  # the second laptop's folder, as it is
    try:
        with Client(pub.router_endpoint, timeout_s=10, curve=reader) as c, \
                caplog.at_level(logging.WARNING, logger="camctl.board.publish"):
            assert c.hello().board == "rig-s"  # a reader reads
            assert c.list()
            with pytest.raises(RemoteError) as err:
                c.command("arm")
            assert err.value.code == p.E_FORBIDDEN and "operator" in str(err.value)
            assert board.commands == []
            assert any("refused COMMAND" in r.getMessage() and "key=" in r.getMessage()
                       and "127.0.0.1" in r.getMessage() for r in caplog.records)
            # made an operator on the board: the next COMMAND works, no restart, same connection
            loads = pub.allow.loads
            shutil.copyfile(k / "ground-2" / "client.key",
                            k / "board" / "operators" / "client-2.key")
            assert c.command("arm")["phase"] == "ARMED"
            assert pub.allow.loads == loads + 1
            # and taken away again
            (k / "board" / "operators" / "client-2.key").unlink()
            with pytest.raises(RemoteError, match="operator"):
                c.command("disarm")
        with Client(pub.router_endpoint, timeout_s=10, curve=operator) as c:
            assert c.command("disarm")["phase"] == "ARMED"
        pub.reload_keys()  # what SIGHUP does
        assert pub.allow.loads == loads + 3
    finally:
        pub.close()


def test_the_boards_own_key_reads_its_status_for_doctor_and_may_not_command(
        tmp_path: Path) -> None:
    from camctl.board.config import Config
    from camctl.board.doctor import _daemon_status
    from camctl.common.keys import load_server_curve

    k = tmp_path / "k"
    create_keys(k)
    make_store(tmp_path / "s", segments=1, frames=2)
    board = FakeBoard("rig-o", tmp_path / "s")
    board.phase = "SAFE"
    cfg = Config(board="rig-o", publish=_cfg(k / "board"))
    pub = Publisher(board, cfg.publish)
    pub.start()
    try:
        # camctl doctor on the board, with the board's key folder its config names
        st = _daemon_status({"router": pub.router_endpoint}, cfg)
        assert (st["board"], st["phase"]) == ("rig-o", "SAFE")
        own = load_server_curve(k / "board")
        as_board = ClientCurve(public=own.public, secret=own.secret, server_public=own.public)
        with (Client(pub.router_endpoint, timeout_s=10, curve=as_board) as c,
              pytest.raises(RemoteError, match="operator")):
            c.command("arm")
        assert board.commands == []
    finally:
        pub.close()


def test_remote_event_refused_on_real_gpio_unless_allowed(tmp_path: Path) -> None:
    board = FakeBoard("rig-g", tmp_path)
    board.gpio_real = True  # type: ignore[attr-defined]
    with Publisher(board, _cfg(unsafe_remote_commands=True)) as pub, \
            Client(pub.router_endpoint, timeout_s=10) as c:
        with pytest.raises(RemoteError) as err:
            c.command("event", name="touchdown")
        assert err.value.code == p.E_FORBIDDEN and "remote_events" in str(err.value)
        assert board.commands == []
    with Publisher(board, _cfg(remote_events=True, unsafe_remote_commands=True)) as pub, \
            Client(pub.router_endpoint, timeout_s=10) as c:
        c.command("event", name="touchdown")
        assert board.commands == [("event", {"name": "touchdown"})]
    board.gpio_real = False  # type: ignore[attr-defined]
    with Publisher(board, _cfg()) as pub, Client(pub.router_endpoint, timeout_s=10) as c:
        c.command("event", name="release")  # sim/mock lines: the operator is the GPIO
        assert board.commands[-1] == ("event", {"name": "release"})


def test_message_with_too_many_frames_is_refused_not_held(tmp_path: Path) -> None:
    with Publisher(FakeBoard("rig-f", tmp_path), _cfg()) as pub:
        ctx = zmq.Context.instance()
        s = ctx.socket(zmq.DEALER)
        s.setsockopt(zmq.LINGER, 0)
        s.connect(pub.router_endpoint)
        try:
            s.send_multipart([*p.Ping(id=5).encode(), *([b"x" * 100] * 400)])
            assert s.poll(10_000)
            reply = p.decode(s.recv_multipart())
            assert isinstance(reply, p.Error) and reply.code == p.E_TOO_LARGE and reply.id == 5
            assert "404" in reply.message
            s.send_multipart(p.Ping(id=6).encode())
            assert s.poll(10_000) and isinstance(p.decode(s.recv_multipart()), p.Pong)
        finally:
            s.close()


def test_fetch_flood_every_request_answered_or_counted(tmp_path: Path) -> None:
    """4000 FETCHes from one client that reads nothing until it has sent them all: the replies that
    fit its window come back, the rest are counted in one BUSY error, none vanish (the ROUTER
    dropped 3000 before)."""
    make_store(tmp_path, cameras=("down",), segments=1, frames=4, pad_kb=64)
    seg = "f1/down/000000.mcap"
    n = 4000
    with Publisher(FakeBoard("rig-w", tmp_path), _cfg()) as pub:
        s = zmq.Context.instance().socket(zmq.DEALER)
        s.setsockopt(zmq.LINGER, 0)
        s.setsockopt(zmq.RCVHWM, 1)  # while it sends, replies back up into the board's queue
        s.connect(pub.router_endpoint)
        try:
            s.send_multipart(p.Hello(id=1).encode())
            assert s.poll(10_000)
            hello = p.decode(s.recv_multipart())
            assert isinstance(hello, p.Welcome) and hello.window == p.MAX_WINDOW
            for i in range(n):
                s.send_multipart(p.Fetch(id=10 + i, path=seg, offset=i, length=64 << 10).encode())
            chunks: set[int] = set()
            busy: list[p.Error] = []
            while s.poll(1500):
                reply = p.decode(s.recv_multipart())
                if isinstance(reply, p.Chunk):
                    assert reply.id not in chunks
                    chunks.add(reply.id)
                else:
                    assert isinstance(reply, p.Error) and reply.code == p.E_BUSY, reply
                    busy.append(reply)
        finally:
            s.close()
    assert busy, "more than a window outstanding and nothing dropped: the test did not flood"
    dropped = sum(int(b.message.split()[0]) for b in busy)
    print(f"\nflood: {n} FETCH, {len(chunks)} CHUNK, {dropped} counted in {len(busy)} BUSY")
    # every request: a reply or counted
    assert len(chunks) + dropped == n and len(chunks) >= p.MAX_WINDOW
    assert min(b.id for b in busy) not in chunks


def test_thumbs_jobs_bounded_per_peer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_store(tmp_path, cameras=("down",), segments=2, frames=3)
    gate, started = threading.Event(), threading.Event()
    real = previews.make_previews

    def busy(*a):  # a worker busy on the first job until the gate opens
        started.set()
        assert gate.wait(30)
        return real(*a)

    monkeypatch.setattr(previews, "make_previews", busy)
    monkeypatch.setattr(Publisher, "_maybe_warm", lambda self: None)
    with Publisher(FakeBoard("rig-t", tmp_path), _cfg()) as pub, \
            Client(pub.router_endpoint, timeout_s=10) as c:
        c.request(p.Thumbs(id=c.next_id(), flight="f1", segment="f1/down/000001.mcap"),
                  p.Thumbnails)
        assert started.wait(30)  # the worker has that one: it is no longer waiting
        codes = []
        for width in range(16, 400, 4):  # 96 different preview jobs from one client
            req = p.Thumbs(id=c.next_id(), flight="f1", segment="f1/down/000000.mcap", width=width)
            c.send(req)
            reply = c.recv({req.id}, "THUMBS")
            codes.append(reply.code if isinstance(reply, p.Error) else "ok")
        with pub.previews._cond:
            mine = sum(1 for k in pub.previews._owner)
        assert (codes.count("ok") == p.MAX_THUMB_JOBS
                and codes.count(p.E_BUSY) == 96 - p.MAX_THUMB_JOBS)
        assert mine == p.MAX_THUMB_JOBS
        gate.set()
        assert c.thumbs("f1", segment="f1/down/000000.mcap", width=16)  # once made, served as ever


def test_wrong_curve_keys_never_hang(tmp_path: Path) -> None:
    """The hang seen in 2 of ~70 'camctl fetch --give-up-after 4 --timeout 2' runs with wrong CURVE
    keys: repeated 50 times per kind of wrong key (scaled-down timings), each fetch must come back
    and say why."""
    k, w = tmp_path / "k", tmp_path / "w"
    create_keys(k)
    create_keys(w)
    ours = load_client_curve(k / "ground")
    # key not allowed
    stranger = load_client_curve(w / "ground", server_key=k / "board" / "server.key")
    wrong_server = ClientCurve(public=ours.public, secret=ours.secret,
                               server_public=load_client_curve(w / "ground").server_public)
    with Publisher(FakeBoard("rig-k", tmp_path), _cfg(k / "board")) as pub:
        url = pub.router_endpoint
        done: list[str] = []

        def runs() -> None:
            for i in range(50):
                rep = fetch([url], tmp_path / "o" / f"a{i}", progress=False, curve=stranger,
                            give_up_after_s=4, timeout_s=2)
                done.append(rep.summary())
                rep = fetch([url], tmp_path / "o" / f"b{i}", progress=False, curve=wrong_server,
                            give_up_after_s=0.1, timeout_s=0.05)
                done.append(rep.summary())

        t = threading.Thread(target=runs, daemon=True)
        t.start()
        t.join(300)  # liveness only: a hang leaves the thread alive
        assert not t.is_alive(), f"a fetch with wrong keys hung after {len(done)} runs"
        assert len(done) == 100
        assert all("refused this ground station's CURVE key" in d for d in done[0::2])
        assert all("UNREACHABLE" in d and "check the board's server key" in d for d in done[1::2])
        r = subprocess.run([sys.executable, "-m", "camctl", "fetch", "--connect", url,
                            "--out", str(tmp_path / "c"),
                            "--give-up-after", "4", "--timeout", "2", "--quiet",
                            "--curve-keys", str(w / "ground"),
                            "--curve-server-key", str(k / "board" / "server.key")],
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 2 and "refused this ground station's CURVE key" in r.stdout, r


def test_sighup_reloads_allow_lists_of_a_running_board(tmp_path: Path) -> None:
    """A real ``camctl run``, CURVE on: SIGHUP reloads readers/, operators/ (logged), serves on."""
    import os
    import signal

    from camctl.demo import start_board, write_board_config

    k = tmp_path / "k"
    create_keys(k)
    cfg = write_board_config(tmp_path / "board", "rig-h", 0, size=(160, 90),
                             extra=f'curve_keys = "{k / "board"}"\n')
    board = start_board(cfg, tmp_path / "board" / "store", "rig-h")
    try:
        def loads() -> int:
            return board.log_path.read_text(errors="replace").count("CURVE allow-lists loaded")

        assert loads() == 1
        os.kill(board.proc.pid, signal.SIGHUP)
        # the handler runs between two ticks of the daemon's main loop
        wait_for(lambda: loads() == 2, "the SIGHUP reload in the board's log")
        with Client(board.router, timeout_s=10, curve=load_client_curve(k / "ground")) as c:
            assert c.hello().board == "rig-h"
            assert c.command("arm")["phase"] == "ARMED"  # the ground key is an operator
    finally:
        board.kill9()
