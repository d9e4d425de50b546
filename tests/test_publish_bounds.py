"""The publisher's bounds and defaults against real sockets: state-changing COMMANDs on real GPIO
lines need operator keys or an explicit unsafe opt-in, socket options that bound each connection,
the connection cap, the reply memory budget, the memory watchdog, and the boards' flight order."""

from __future__ import annotations

import os
import socket
import threading
import time
from pathlib import Path

import pytest
import zmq
from netfixtures import FakeBoard, dealer, make_store, write_segment
from waiting import wait_for

from camctl.board.config import PublishConfig
from camctl.board.publish import Publisher
from camctl.board.publish.budget import ReplyBudget, tracked
from camctl.board.publish.handlers import THUMBS_PAGE_BYTES
from camctl.board.publish.memory import MemoryWatch, rss_bytes
from camctl.board.publish.sockets import peer_fd
from camctl.common import protocol as p
from camctl.common.keys import create_keys, load_client_curve
from camctl.exc import RemoteError
from camctl.ground import Client, fetch
from camctl.store.config import StoreConfig
from camctl.store.writer import FlightStore, flight_seq, list_flights


def _cfg(keys: Path | None = None, **kw: object) -> PublishConfig:
    return PublishConfig(bind="tcp://127.0.0.1:*", events="tcp://127.0.0.1:*",
                         curve_keys=str(keys) if keys else "", **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize("name,args", [("arm", {}), ("disarm", {}),
                                       ("event", {"name": "release"})])
def test_real_gpio_without_operator_keys_refuses_state_commands(tmp_path: Path, name: str,
                                                                args: dict) -> None:
    board = FakeBoard("rig-r", tmp_path, serving=False)
    board.phase = "SAFE"
    board.gpio_real = True  # type: ignore[attr-defined]
    with Publisher(board, _cfg(remote_events=True)) as pub, \
            Client(pub.router_endpoint, timeout_s=10) as c:
        with pytest.raises(RemoteError) as err:
            c.command(name, **args)
        assert err.value.code == p.E_FORBIDDEN
        assert "unsafe_remote_commands" in str(err.value) and "\n" not in str(err.value)
        assert c.status()["board"] == "rig-r"  # STATUS still works
    assert board.commands == []


def test_unsafe_opt_in_or_mock_lines_take_commands(tmp_path: Path) -> None:
    board = FakeBoard("rig-u", tmp_path, serving=False)
    board.phase = "SAFE"
    board.gpio_real = True  # type: ignore[attr-defined]
    with Publisher(board, _cfg(unsafe_remote_commands=True)) as pub, \
            Client(pub.router_endpoint, timeout_s=10) as c:
        c.command("arm")
        c.command("disarm")
    assert [n for n, _ in board.commands] == ["arm", "disarm"]
    board.gpio_real = False  # type: ignore[attr-defined]  # sim rig, demo, bench
    board.phase = "SAFE"
    with Publisher(board, _cfg()) as pub, Client(pub.router_endpoint, timeout_s=10) as c:
        c.command("arm")
    assert [n for n, _ in board.commands] == ["arm", "disarm", "arm"]


def test_real_gpio_with_operator_key_takes_commands(tmp_path: Path) -> None:
    k = tmp_path / "k"
    create_keys(k, boards=["rig-k"])
    board = FakeBoard("rig-k", tmp_path / "store", serving=False)
    board.phase = "SAFE"
    board.gpio_real = True  # type: ignore[attr-defined]
    curve = load_client_curve(k / "ground", server_key=k / "ground" / "servers" / "rig-k.key")
    with Publisher(board, _cfg(k / "rig-k")) as pub, \
            Client(pub.router_endpoint, timeout_s=10, curve=curve) as c:
        c.command("arm")
    assert [n for n, _ in board.commands] == ["arm"]


def test_flights_listed_in_recording_order_not_by_clock(tmp_path: Path) -> None:
    """A Pi whose clock went back after a power cut gives its next flight a smaller id: WELCOME's
    ``flights`` (and the store's list) still end with the flight recorded last."""
    root = tmp_path / "store"
    make_store(root, flights=("20200101T000000Z",), cameras=("down",), segments=1, frames=2)
    # written before flights had a seq: comes first, whatever its id
    for flight in ("20261201T120000Z", "20250101T000000Z", "20260101T000000Z"):  # clock jumps
        FlightStore(root, "rig-o", flight, StoreConfig(dir=root), cameras=["down"]).close()
    order = ["20200101T000000Z", "20261201T120000Z", "20250101T000000Z", "20260101T000000Z"]
    assert [flight_seq(root / f) for f in order] == [None, 1, 2, 3]
    assert list_flights(root) == order
    with Publisher(FakeBoard("rig-o", root), _cfg()) as pub, \
            Client(pub.router_endpoint, timeout_s=10) as c:
        assert c.hello().flights == order


# --- socket options and the connection cap ------------------------------------------------------
def test_every_board_socket_bounds_its_connections(tmp_path: Path) -> None:
    """Both sockets limit inbound messages (PUB: subscriptions are inbound), drop a connection that
    never completes its handshake within seconds, and find dead peers by TCP keepalive; a raw TCP
    connection that never greets is closed by the board."""
    with Publisher(FakeBoard("rig-s", tmp_path), _cfg()) as pub:
        router, pubsock = pub._router, pub._pub
        assert router is not None and pubsock is not None
        assert router.getsockopt(zmq.MAXMSGSIZE) == p.MAX_MESSAGE
        assert 0 < pubsock.getsockopt(zmq.MAXMSGSIZE) <= 1024
        for sock in (router, pubsock):
            assert 0 < sock.getsockopt(zmq.HANDSHAKE_IVL) <= 10_000
            # no ZMTP PINGs of its own (libzmq 4.3.5 aborts on them: sockets.detect_dead_peers)
            assert sock.getsockopt(zmq.HEARTBEAT_IVL) == 0
            assert sock.getsockopt(zmq.TCP_KEEPALIVE) == 1
        # both raw connections at once: each waits out the same handshake limit
        raws = [socket.create_connection(("127.0.0.1", int(endpoint.rsplit(":", 1)[1])))
                for endpoint in (pub.router_endpoint, pub.pub_endpoint)]
        for raw in raws:
            raw.settimeout(60)  # hang guard only
            while raw.recv(4096):  # the board's greeting, then EOF
                pass
            raw.close()


def _ask(s: zmq.Socket, msg: p.Message) -> p.Message:
    s.send_multipart(msg.encode())
    assert s.poll(30_000), f"no reply to {msg.VERB!r}"
    return p.decode(s.recv_multipart())


def test_connections_over_the_cap_are_refused_with_busy_and_one_log_line(
        tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    # only the cap may close the raw connections below: the handshake limit is set out of reach
    monkeypatch.setattr("camctl.board.publish.sockets.HANDSHAKE_IVL_MS", 600_000)
    cap = 4
    with Publisher(FakeBoard("rig-c", tmp_path), _cfg(max_connections=cap)) as pub:
        served = [dealer(pub.router_endpoint) for _ in range(cap)]
        try:
            for i, s in enumerate(served):
                assert isinstance(_ask(s, p.Ping(id=i)), p.Pong)
            wait_for(lambda: pub.connections.served == cap, "the board to count its clients")
            late = dealer(pub.router_endpoint)
            reply = _ask(late, p.Ping(id=99))
            assert isinstance(reply, p.Error) and reply.code == p.E_BUSY and reply.id == 99
            assert f"connection cap ({cap} connections" in reply.message
            late.close()
            # a flood of raw connections: every one is closed by the board (nothing else closes
            # them: they greet nothing, and the handshake limit is out of reach), none is served
            port = int(pub.router_endpoint.rsplit(":", 1)[1])
            raws = [socket.create_connection(("127.0.0.1", port)) for _ in range(60)]
            for raw in raws:
                raw.settimeout(60)  # hang guard only: a connection the cap missed fails here
                while raw.recv(4096):
                    pass
                raw.close()
            # counted as refused: most of them (the monitor may report a connection's accept and
            # close in one batch, and a reused fd number then hides one: see guard.on_monitor)
            assert pub.connections.refused >= 1 and pub.connections.peak == cap
            refusals = [r for r in caplog.records if "refused" in r.getMessage()
                        and "max_connections" in r.getMessage()]
            assert 1 <= len(refusals) <= 3, [r.getMessage() for r in refusals]
            assert f"cap of {cap}" in refusals[0].getMessage()
            for i, s in enumerate(served):  # those served before are served still
                assert isinstance(_ask(s, p.Ping(id=100 + i)), p.Pong)
        finally:
            for s in served:
                s.close()
        wait_for(lambda: pub.connections.served == 0, "the board to see its clients go")
        with Client(pub.router_endpoint, timeout_s=10) as c:
            assert c.ping() > 0


def test_at_the_cap_an_idle_connection_gives_its_place_to_a_new_one(tmp_path: Path) -> None:
    with Publisher(FakeBoard("rig-i", tmp_path), _cfg(max_connections=2)) as pub:
        quiet = dealer(pub.router_endpoint, RECONNECT_IVL=-1)  # gone once cut
        busy = dealer(pub.router_endpoint)
        try:
            assert isinstance(_ask(quiet, p.Ping(id=1)), p.Pong)
            assert isinstance(_ask(busy, p.Ping(id=2)), p.Pong)
            wait_for(lambda: pub.connections.served == 2, "two clients served")
            pub.connections.idle_s = 0.0  # every connection has been idle long enough (a seam)
            assert isinstance(_ask(busy, p.Ping(id=3)), p.Pong)  # busy is the last to ask
            with Client(pub.router_endpoint, timeout_s=10) as c:
                assert c.ping() > 0  # not refused: the connection idle longest made room
            assert pub.connections.idle_dropped == 1 and pub.connections.refused == 0
            assert isinstance(_ask(busy, p.Ping(id=4)), p.Pong)  # the busy one kept its place
        finally:
            quiet.close()
            busy.close()


def test_srcfd_names_the_connection_a_request_came_over(tmp_path: Path) -> None:
    """ZMQ_SRCFD of a ROUTER's identity frame is the fd of the peer's TCP connection (libzmq 4.3):
    what the cap and the reply budget cut a connection by."""
    ctx = zmq.Context.instance()
    router = ctx.socket(zmq.ROUTER)
    router.setsockopt(zmq.LINGER, 0)
    router.bind("tcp://127.0.0.1:*")
    port = int(router.getsockopt(zmq.LAST_ENDPOINT).decode().rsplit(":", 1)[1])
    dealers = [dealer(f"tcp://127.0.0.1:{port}") for _ in range(2)]
    try:
        fds = set()
        for d in dealers:
            d.send(b"hi")
            assert router.poll(30_000)
            ident = router.recv(copy=False)
            router.recv()
            fd = peer_fd(ident)
            with socket.socket(fileno=os.dup(fd)) as s:
                assert s.getsockname()[1] == port  # a connection accepted by this ROUTER
                assert s.getpeername()[0] == "127.0.0.1"
            fds.add(fd)
        assert len(fds) == 2
    finally:
        for d in dealers:
            d.close()
        router.close()


# --- the reply memory budget ---------------------------------------------------------------------
def test_forty_peers_not_reading_stay_within_the_reply_budget(tmp_path: Path) -> None:
    """40 identities x 64 FETCHes of 256 KiB, never read (640 MB of replies; the board's RSS grew
    +579 MB before): the bytes handed to libzmq stay within the budget, the board's resident size
    with them, and an honest client is served: the peers that stopped reading are cut once it
    waits for the budget."""
    make_store(tmp_path, cameras=("down",), segments=1, frames=4, pad_kb=300)
    seg = "f1/down/000000.mcap"
    cfg = _cfg(memory_mb=64)  # reply budget 16 MiB in all
    # the watchdog never trips here (its RSS source reads 0): this measures the budget alone
    with Publisher(FakeBoard("rig-b", tmp_path), cfg, rss=lambda: 0) as pub:
        pub.stall_s = 1.0
        base = rss_bytes()
        peers = [dealer(pub.router_endpoint, RCVHWM=1, RCVBUF=4096) for _ in range(40)]
        try:
            for s in peers:
                for i in range(64):
                    s.send_multipart(p.Fetch(id=i, path=seg, offset=0, length=262144).encode())
            wait_for(lambda: pub.requests >= 40 * 64, "the board to read every FETCH")
            total = pub.budget.total
            assert total == 16 << 20 and pub.budget.peak <= total
            growth = rss_bytes() - base
            print(f"40x64 FETCH not read: reply bytes peak {pub.budget.peak >> 20} MiB "
                  f"(budget {total >> 20} MiB), RSS growth {growth >> 20} MiB")
            assert growth < total + (48 << 20), growth >> 20
            with Client(pub.router_endpoint, timeout_s=30) as c:
                listed = {x.path: x for x in c.list("f1")}
                assert c.fetch_file(listed[seg], tmp_path / "got.mcap") == "fetched"
            assert (tmp_path / "got.mcap").read_bytes() == (tmp_path / seg).read_bytes()
            assert pub.connections.cut >= 1 and pub.budget.peak <= total
        finally:
            for s in peers:
                s.close()


def test_one_thumbs_page_is_bounded_in_bytes(tmp_path: Path) -> None:
    for n in range(2):  # noisy 640-pixel frames: previews 640 wide of tens of KB each
        write_segment(tmp_path / "f1" / "down" / f"{n:06d}.mcap", "down", frames=30,
                      seq0=30 * n, width=640, seed=n)
    (tmp_path / "f1" / "flight.json").write_text('{"flight": "f1"}')
    with Publisher(FakeBoard("rig-t", tmp_path), _cfg()) as pub, \
            Client(pub.router_endpoint, timeout_s=60) as c:
        every = c.thumbs("f1", camera="down", every=1, width=640)  # all pages
        assert len(every) == 60
        assert sum(len(j) for _, j in every) > 2 * THUMBS_PAGE_BYTES  # several pages' worth
        page = c.request(p.Thumbs(id=c.next_id(), flight="f1", camera="down", every=1,
                                  width=640, limit=256), p.Thumbnails)
        size = sum(len(j) for j in page.jpegs)
        assert page.more and 0 < len(page.thumbs) < 60
        assert size <= THUMBS_PAGE_BYTES + max(len(j) for _, j in every)


def test_reply_budget_counts_until_libzmq_frees_the_frames() -> None:
    """pyzmq's MessageTracker of a zero-copy frame is done only once libzmq frees it; a copied
    frame's tracker is done at once (so the budget sends every payload frame zero-copy)."""
    ctx = zmq.Context.instance()
    a, b = ctx.socket(zmq.PAIR), ctx.socket(zmq.PAIR)
    try:
        a.bind("inproc://budget-track")
        b.connect("inproc://budget-track")
        parts, tracker, size = tracked([b"x" * 100])  # under zmq.COPY_THRESHOLD, still tracked
        budget = ReplyBudget(1000, 600)
        a.send(parts[0], copy=False)
        budget.add(b"peer", tracker, size)
        assert budget.bytes == 100 and not tracker.done
        assert not budget.fits(b"peer", 600) and budget.fits(b"peer", 500)
        assert budget.fits(b"other", 900) and not budget.fits(b"other", 901)
        del parts
        assert b.recv() == b"x" * 100
        wait_for(lambda: tracker.done, "libzmq to free the frame")
        budget.sweep()
        assert budget.bytes == 0 and budget.fits(b"peer", 5000)  # nothing pending: always fits
        copied = a.send(b"y" * 100, copy=False, track=True)
        assert copied.done  # pyzmq copied it: its tracker cannot count it
    finally:
        a.close()
        b.close()


# --- the memory watchdog -------------------------------------------------------------------------
def test_memory_watch_trips_on_growth_over_its_start() -> None:
    now = [0.0]
    rss = [500 << 20]
    w = MemoryWatch(100 << 20, rss=lambda: rss[0], every_s=0.0, settle_s=1.0,
                    clock=lambda: now[0])
    w.start()
    rss[0] += 70 << 20
    assert w.check() is None  # 70 MB of 100: at the mark, not over
    rss[0] += 1 << 20
    assert w.check() == rss[0] and w.trips == 1
    assert w.check() is None  # settling
    now[0] += 1.0
    assert w.check() == rss[0] and w.trips == 2 and w.peak == 71 << 20  # still over: again
    now[0] += 1.0
    rss[0] = 510 << 20
    assert w.check() is None and w.growth() == 10 << 20


# an attacker's pace: 256 KB per pause, at most ~150 MB/s, the growth issue 25 measured (+209 MB
# in 1.4 s); a loopback sender unpaced outruns any watchdog thread that must take the GIL
ATTACK_PAUSE_S = 0.0017


def _zmtp_dealer(port: int) -> socket.socket:
    """A raw ZMTP 3.0 DEALER (NULL mechanism): greeting and READY, nothing buffered here."""
    s = socket.create_connection(("127.0.0.1", port))
    s.settimeout(60)  # hang guard only
    s.sendall(b"\xff" + b"\x00" * 8 + b"\x7f" + b"\x03\x00" + b"NULL".ljust(20, b"\x00")
              + b"\x00" + b"\x00" * 31)
    got = b""
    while len(got) < 64:  # the board's greeting
        more = s.recv(64 - len(got))
        if not more:
            s.close()
            raise ConnectionResetError("the board closed the connection during the greeting")
        got += more
    body = b"\x05READY" + b"\x0bSocket-Type" + (6).to_bytes(4, "big") + b"DEALER"
    s.sendall(bytes([0x04, len(body)]) + body)
    return s


def test_unfinished_multipart_never_takes_the_board_past_its_budget(tmp_path: Path) -> None:
    """A peer sends 16 KB frames with MORE set and never the last one: libzmq holds them all (no
    socket option bounds it). The watchdog re-creates the ROUTER before the growth reaches the
    budget, and an honest client is served afterwards."""
    make_store(tmp_path, cameras=("down",), segments=1, frames=3)
    budget_mb = 128
    with Publisher(FakeBoard("rig-m", tmp_path), _cfg(memory_mb=budget_mb)) as pub:
        port = int(pub.router_endpoint.rsplit(":", 1)[1])
        frame = b"\x03" + (16000).to_bytes(8, "big") + b"\x00" * 16000  # MORE | LONG
        sent = 0
        base, peak, done = rss_bytes(), [0], threading.Event()

        def sample() -> None:  # the resident size as this test sees it, every 2 ms
            while not done.wait(0.002):
                peak[0] = max(peak[0], rss_bytes() - base)

        sampler = threading.Thread(target=sample)
        sampler.start()
        while pub.resets < 2 and sent < 4 * (budget_mb << 20):  # hang guard: 4x the budget
            try:
                s = _zmtp_dealer(port)  # again after each reset, as an attacker would
            except OSError:
                continue  # the board is binding its ROUTER again
            try:
                while sent < 4 * (budget_mb << 20):
                    s.sendall(frame * 16)
                    sent += 16 * len(frame)
                    time.sleep(ATTACK_PAUSE_S)
            except OSError:
                pass  # the board dropped the connection
            finally:
                s.close()
        done.set()
        sampler.join()
        assert pub.resets >= 2, f"sent {sent >> 20} MB, {pub.resets} reset(s)"
        print(f"unfinished multipart: {sent >> 20} MB sent, growth peak {peak[0] >> 20} MB "
              f"(watchdog: {pub.memory.peak >> 20} MB) of a {budget_mb} MB budget, "
              f"{pub.resets} reset(s)")
        assert peak[0] < budget_mb << 20
        report = fetch([pub.router_endpoint], tmp_path / "out", progress=False,
                       give_up_after_s=20)
        assert report.ok, report.summary()
        assert pub.memory.growth() < pub.memory.mark  # the memory went back
