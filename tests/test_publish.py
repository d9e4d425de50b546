"""Publisher lifecycle, threaded PUB events, heartbeats, CURVE accept/reject, open-mode warning."""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path

import pytest
import zmq
from netfixtures import FakeBoard, make_store

from camctl.board.config import PublishConfig
from camctl.board.publish import Publisher
from camctl.board.publish.sockets import PUB_HWM
from camctl.common import protocol as p
from camctl.common.keys import create_keys, load_client_curve
from camctl.common.protocol import HEARTBEAT_IVL_MS, HEARTBEAT_TIMEOUT_MS, set_heartbeats
from camctl.exc import BoardTimeout, ConfigError, KeyRejected
from camctl.ground import Client, fetch

LOOP = PublishConfig(bind="tcp://127.0.0.1:*", events="tcp://127.0.0.1:*")


def test_lifecycle_and_open_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    pub = Publisher(FakeBoard("rig-l", tmp_path), LOOP)
    with caplog.at_level(logging.WARNING, logger="camctl.board.publish"):
        pub.start()
    assert any("CURVE is off" in r.getMessage() for r in caplog.records)
    assert (pub.router_endpoint.startswith("tcp://127.0.0.1:")
            and not pub.router_endpoint.endswith("*"))
    assert "running" in repr(pub)
    with Client(pub.router_endpoint, timeout_s=10) as c:
        assert c.hello().flights == []
    pub.close()
    pub.close()
    assert pub.closed and pub.publish("phase", {}) is False


def test_heartbeats_set() -> None:
    ctx = zmq.Context()
    try:
        s = ctx.socket(zmq.DEALER)
        set_heartbeats(s)
        assert s.getsockopt(zmq.HEARTBEAT_IVL) == HEARTBEAT_IVL_MS
        assert s.getsockopt(zmq.HEARTBEAT_TIMEOUT) == HEARTBEAT_TIMEOUT_MS
        s.close()
    finally:
        ctx.term()
    pub = Publisher(FakeBoard("rig-hb", Path(".")), LOOP)
    pub.start()
    try:
        assert pub._router is not None
        # the board sends no PINGs (libzmq 4.3.5 aborts on them: sockets.detect_dead_peers)
        assert pub._router.getsockopt(zmq.HEARTBEAT_IVL) == 0
        assert pub._router.getsockopt(zmq.TCP_KEEPALIVE) == 1
        assert pub._router.getsockopt(zmq.MAXMSGSIZE) == p.MAX_MESSAGE
        c = Client(pub.router_endpoint, timeout_s=10)
        c.ping()
        assert (c._sock is not None
                and c._sock.getsockopt(zmq.HEARTBEAT_TIMEOUT) == HEARTBEAT_TIMEOUT_MS)
        c.close()
    finally:
        pub.close()


def test_publish_from_many_threads(tmp_path: Path) -> None:
    pub = Publisher(FakeBoard("rig-p", tmp_path), LOOP)
    pub.start()
    ctx = zmq.Context()
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.LINGER, 0)
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    sub.connect(pub.pub_endpoint)
    try:
        # slow joiner: publish probes until the subscription is live
        for _ in range(200):
            pub.publish("status", {"probe": True})
            if sub.poll(100):
                break
        else:
            pytest.fail("subscriber never joined")
        while sub.poll(200):
            sub.recv_multipart()
        n_threads, per = 8, 30  # a burst within the PUB high-water mark (sockets.PUB_HWM)
        assert n_threads * per + 1 <= PUB_HWM
        go = threading.Event()

        def worker(k: int) -> None:
            go.wait(10)
            for i in range(per):
                pub.publish(p.TOPICS[i % len(p.TOPICS)], {"thread": k, "i": i})

        threads = [threading.Thread(target=worker, args=(k,)) for k in range(n_threads)]
        for t in threads:
            t.start()
        go.set()
        for t in threads:
            t.join(30)
        got: dict[int, list[int]] = {k: [] for k in range(n_threads)}
        while len([1 for v in got.values() for _ in v]) + pub.dropped_events < n_threads * per:
            if not sub.poll(10_000):
                break
            topic, body = sub.recv_multipart()
            msg = json.loads(body)
            if "thread" in msg:
                assert topic.decode() == p.TOPICS[msg["i"] % len(p.TOPICS)]
                got[msg["thread"]].append(msg["i"])
        received = sum(len(v) for v in got.values())
        assert received + pub.dropped_events == n_threads * per
        assert received > 0
        for v in got.values():  # per-thread order kept
            assert v == sorted(v)
    finally:
        sub.close()
        ctx.term()
        pub.close()


def test_publish_never_blocks_when_full(tmp_path: Path) -> None:
    pub = Publisher(FakeBoard("rig-f", tmp_path), LOOP)  # not started: nobody drains the queue
    try:
        results = [pub.publish("disk", {"i": i}) for i in range(3000)]
        assert results.count(False) == pub.dropped_events > 0
    finally:
        pub.close()


def test_curve_accepts_known_client_rejects_unknown(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    create_keys(keys)
    with pytest.raises(ConfigError):
        create_keys(keys)
    stranger = tmp_path / "stranger"
    create_keys(stranger)
    root = tmp_path / "store"
    make_store(root, segments=1, frames=4)
    cfg = PublishConfig(bind="tcp://127.0.0.1:*", events="tcp://127.0.0.1:*",
                        curve_keys=str(keys / "board"))
    pub = Publisher(FakeBoard("rig-s", root), cfg)
    pub.start()
    try:
        good = load_client_curve(keys / "ground")
        with Client(pub.router_endpoint, timeout_s=10, curve=good) as c:
            assert c.hello().board == "rig-s"
        report = fetch([pub.router_endpoint], tmp_path / "out", progress=False, curve=good,
                       give_up_after_s=20)
        assert report.ok, report.summary()
        served = pub.requests
        # an unknown client key (with the right server key) gets nothing at all: the handshake fails
        bad = load_client_curve(stranger / "ground", server_key=keys / "board" / "server.key")
        with Client(pub.router_endpoint, timeout_s=1.5, curve=bad) as c, pytest.raises(KeyRejected):
            c.hello()
        # a plain-text client gets nothing either
        with Client(pub.router_endpoint, timeout_s=1.5) as c, pytest.raises(BoardTimeout):
            c.hello()
        assert pub.requests == served  # no request of theirs ever reached the server
    finally:
        pub.close()


def test_index_json_values_used_when_current(tmp_path: Path) -> None:
    from camctl.board.publish import Catalog

    make_store(tmp_path, cameras=("down",), segments=2, frames=3)
    segs = sorted((tmp_path / "f1" / "down").glob("*.mcap"))
    st = [x.stat() for x in segs]
    index = {"version": 1, "cameras": {"down": {"segments": [
        {"path": "down/000000.mcap", "size": st[0].st_size, "mtime_ns": st[0].st_mtime_ns,
         "sha256": "a" * 64, "frames": 3, "first_ns": 5, "last_ns": 6, "max_value": 4},
        {"path": "down/000001.mcap", "size": st[1].st_size + 1, "mtime_ns": st[1].st_mtime_ns,
         "sha256": "b" * 64, "frames": 9, "first_ns": None, "last_ns": None, "max_value": None}]}}}
    (tmp_path / "f1" / "index.json").write_text(json.dumps(index))
    listed = {s.path: s for s in Catalog(tmp_path).listing("f1", set())}
    first, second = listed["f1/down/000000.mcap"], listed["f1/down/000001.mcap"]
    assert (first.sha256, first.value, first.first_ns) == ("a" * 64, 4, 5)  # current record: used
    import hashlib
    # stale record: computed
    assert second.sha256 == hashlib.sha256(segs[1].read_bytes()).hexdigest()
    assert second.frames == 3
    assert "f1/index.json" in listed
