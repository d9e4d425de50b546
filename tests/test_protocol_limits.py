"""Each row of docs/protocol.md's Limits table, checked against a real Publisher over real TCP: at
the limit the board answers, one past it the board does what the table says. A row without a check
here fails the test, so the table says only what is checked."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import zmq
from netfixtures import FakeBoard, dealer, make_store, write_segment
from test_publish_bounds import ATTACK_PAUSE_S, _zmtp_dealer
from waiting import wait_for

from camctl.board.config import PublishConfig
from camctl.board.publish import Publisher, previews
from camctl.board.publish.handlers import THUMBS_PAGE_BYTES
from camctl.board.publish.sockets import HANDSHAKE_IVL_MS, PUB_MAX_MESSAGE
from camctl.common import protocol as p
from camctl.ground import Client

DOC = Path(__file__).resolve().parent.parent / "docs" / "protocol.md"


def _rows() -> list[tuple[str, str, str]]:
    text = DOC.read_text(encoding="utf-8")
    table = text[text.index("## Limits"):text.index("**The maximum window.**")]
    rows = [[c.strip() for c in line.strip().strip("|").split("|")]
            for line in table.splitlines() if line.startswith("| ") and "---" not in line]
    assert rows[0] == ["What", "Limit", "Past it"], rows[0]
    return [(r[0], r[1], r[2]) for r in rows[1:]]


def _cfg(**kw: object) -> PublishConfig:
    return PublishConfig(bind="tcp://127.0.0.1:*", events="tcp://127.0.0.1:*",
                         **kw)  # type: ignore[arg-type]


def _raw(verb: str, header: dict, *payload: bytes) -> list[bytes]:
    return [p.MAGIC, bytes([p.PROTOCOL_VERSION]), verb.encode(),
            json.dumps(header).encode(), *payload]


def _ask(s: zmq.Socket, frames: list[bytes]) -> p.Message:
    s.send_multipart(frames)
    assert s.poll(30_000), "no reply"  # hang guard only
    return p.decode(s.recv_multipart())


def _code(reply: p.Message) -> str:
    return reply.code if isinstance(reply, p.Error) else type(reply).__name__.upper()


def _disconnects(s: zmq.Socket, send: Callable[[], None]) -> None:
    """``send`` makes the board drop ``s``'s connection (its monitor sees DISCONNECTED)."""
    mon = s.get_monitor_socket(zmq.EVENT_DISCONNECTED)
    try:
        send()
        assert mon.poll(30_000), "the board kept the connection"  # hang guard only
        event = zmq.utils.monitor.parse_monitor_message(mon.recv_multipart())["event"]
        assert event == zmq.EVENT_DISCONNECTED
    finally:
        s.disable_monitor()
        mon.close()


@pytest.fixture(scope="module")
def board(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("limits")
    make_store(root, cameras=("down",), segments=1, frames=3, pad_kb=64)
    with Publisher(FakeBoard("rig-l", root), _cfg()) as pub:
        yield pub


@pytest.fixture
def s(board: Publisher):
    sock = dealer(board.router_endpoint)
    yield sock
    sock.close()


SEG = "f1/down/000000.mcap"


# --- one check per row ---------------------------------------------------------------------------
def inbound_frame(board: Publisher, s: zmq.Socket, tmp: Path) -> None:
    at = _ask(s, [*_raw("PING", {"id": 1}), b"x" * p.MAX_MESSAGE])
    assert _code(at) == p.E_BAD_FIELD  # read and answered: a payload where none belongs
    _disconnects(s, lambda: s.send_multipart([*_raw("PING", {"id": 2}),
                                              b"x" * (p.MAX_MESSAGE + 1)]))


def pub_frame(board: Publisher, s: zmq.Socket, tmp: Path) -> None:
    assert PUB_MAX_MESSAGE == 1024
    sub = zmq.Context.instance().socket(zmq.SUB)
    sub.setsockopt(zmq.LINGER, 0)
    sub.connect(board.pub_endpoint)
    try:
        _disconnects(sub, lambda: sub.setsockopt(zmq.SUBSCRIBE, b"x" * 1100))
    finally:
        sub.close()


def handshake(board: Publisher, s: zmq.Socket, tmp: Path) -> None:
    assert HANDSHAKE_IVL_MS == 5000
    raw = socket.create_connection(("127.0.0.1", int(board.router_endpoint.rsplit(":", 1)[1])))
    raw.settimeout(60)  # hang guard only
    while raw.recv(4096):  # the board's greeting, then EOF: it closed the connection
        pass
    raw.close()


def frames(board: Publisher, s: zmq.Socket, tmp: Path) -> None:
    assert _code(_ask(s, [*_raw("PING", {"id": 1}), *[b"x"] * 4])) == p.E_BAD_FIELD
    reply = _ask(s, [*_raw("PING", {"id": 2}), *[b"x"] * 5])
    assert _code(reply) == p.E_TOO_LARGE and reply.id == 2


def request_id(board: Publisher, s: zmq.Socket, tmp: Path) -> None:
    assert _code(_ask(s, _raw("PING", {"id": 2**53 - 1}))) == "PONG"
    assert _code(_ask(s, _raw("PING", {"id": 2**53}))) == p.E_TOO_LARGE
    assert _code(_ask(s, _raw("PING", {"id": -1}))) == p.E_BAD_FIELD


def path(board: Publisher, s: zmq.Socket, tmp: Path) -> None:
    fetch = {"id": 1, "offset": 0, "length": 1}
    at = "f1/down/" + "b" * (1024 - 8 - 5) + ".mcap"
    assert len(at) == 1024 and _code(_ask(s, _raw("FETCH", {**fetch, "path": at}))) \
        == p.E_NOT_FOUND
    assert _code(_ask(s, _raw("FETCH", {**fetch, "path": "f1/down/" + "b" * 1012 + ".mcap"}))) \
        == p.E_BAD_PATH
    assert _code(_ask(s, _raw("FETCH", {**fetch, "path": ""}))) in (p.E_BAD_PATH, p.E_BAD_FIELD)
    assert _code(_ask(s, _raw("FETCH", {**fetch, "path": SEG}))) == "CHUNK"


def hello_client(board: Publisher, s: zmq.Socket, tmp: Path) -> None:
    assert _code(_ask(s, _raw("HELLO", {"id": 1, "version": 1, "client": "c" * 200}))) == "WELCOME"
    assert _code(_ask(s, _raw("HELLO", {"id": 1, "version": 1, "client": "c" * 201}))) \
        == p.E_TOO_LARGE


def hello_version(board: Publisher, s: zmq.Socket, tmp: Path) -> None:
    assert _code(_ask(s, _raw("HELLO", {"id": 1, "version": 255}))) == p.E_BAD_VERSION
    assert _code(_ask(s, _raw("HELLO", {"id": 1, "version": 256}))) == p.E_TOO_LARGE
    assert _code(_ask(s, _raw("HELLO", {"id": 1, "version": -1}))) == p.E_BAD_FIELD


def names(board: Publisher, s: zmq.Socket, tmp: Path) -> None:
    assert _code(_ask(s, _raw("LIST", {"id": 1, "flight": "a" * 63}))) == p.E_NOT_FOUND
    assert _code(_ask(s, _raw("LIST", {"id": 1, "flight": "a" * 64}))) == p.E_TOO_LARGE
    assert _code(_ask(s, _raw("LIST", {"id": 1, "flight": "-a"}))) == p.E_BAD_FIELD


def fetch_offset(board: Publisher, s: zmq.Socket, tmp: Path) -> None:
    f = {"id": 1, "path": SEG, "length": 10}
    end = _ask(s, _raw("FETCH", {**f, "offset": 2**62}))
    assert isinstance(end, p.Chunk) and end.data == b""  # past the end: an empty CHUNK
    assert _code(_ask(s, _raw("FETCH", {**f, "offset": 2**62 + 1}))) == p.E_TOO_LARGE
    assert _code(_ask(s, _raw("FETCH", {**f, "offset": -1}))) == p.E_BAD_FIELD


def fetch_length(board: Publisher, s: zmq.Socket, tmp: Path) -> None:
    chunk_max = board._handlers.chunk_max
    f = {"id": 1, "path": SEG, "offset": 0}
    assert _code(_ask(s, _raw("FETCH", {**f, "length": chunk_max}))) == "CHUNK"
    assert _code(_ask(s, _raw("FETCH", {**f, "length": chunk_max + 1}))) == p.E_TOO_LARGE
    assert p.MAX_CHUNK == 4194304


def _thumbs_field(s: zmq.Socket, name: str, ok: int, over: int, under: int | None) -> None:
    t = {"id": 1, "flight": "f1", "segment": SEG}
    assert _code(_ask(s, _raw("THUMBS", {**t, name: ok}))) == "THUMBNAILS"
    assert _code(_ask(s, _raw("THUMBS", {**t, name: over}))) == p.E_TOO_LARGE
    if under is not None:
        assert _code(_ask(s, _raw("THUMBS", {**t, name: under}))) == p.E_BAD_FIELD


def _thumbs_ready(s: zmq.Socket) -> None:
    """Ask until the segment's default previews are made (the worker makes them once)."""
    def ready() -> bool:
        reply = _ask(s, _raw("THUMBS", {"id": 1, "flight": "f1", "segment": SEG}))
        return isinstance(reply, p.Thumbnails) and not reply.retry_ms
    wait_for(ready, "the default previews")


def thumbs_every(board: Publisher, s: zmq.Socket, tmp: Path) -> None:
    _thumbs_field(s, "every", 100_000, 100_001, -1)


def thumbs_width(board: Publisher, s: zmq.Socket, tmp: Path) -> None:
    _thumbs_field(s, "width", 640, 641, 15)


def thumbs_skip(board: Publisher, s: zmq.Socket, tmp: Path) -> None:
    _thumbs_field(s, "skip", 10_000_000, 10_000_001, -1)


def thumbs_limit(board: Publisher, s: zmq.Socket, tmp: Path) -> None:
    _thumbs_field(s, "limit", 256, 257, 0)


def thumbs_page_bytes(board: Publisher, s: zmq.Socket, tmp: Path) -> None:
    root = tmp / "big"
    for n in range(2):  # noisy 640-pixel frames: previews 640 wide of tens of KB each
        write_segment(root / "f1" / "down" / f"{n:06d}.mcap", "down", frames=30, seq0=30 * n,
                      width=640, seed=n)
    with Publisher(FakeBoard("rig-pg", root), _cfg()) as pub, \
            Client(pub.router_endpoint, timeout_s=60) as c:
        every = c.thumbs("f1", camera="down", every=1, width=640)
        biggest = max(len(j) for _, j in every)
        assert sum(len(j) for _, j in every) > 2 * THUMBS_PAGE_BYTES == 2 * 1048576
        page = c.request(p.Thumbs(id=c.next_id(), flight="f1", camera="down", every=1,
                                  width=640, limit=256), p.Thumbnails)
        size = sum(len(j) for j in page.jpegs)
        assert page.more and THUMBS_PAGE_BYTES <= size <= THUMBS_PAGE_BYTES + biggest


def thumbs_jobs(board: Publisher, s: zmq.Socket, tmp: Path) -> None:
    root = tmp / "jobs"
    make_store(root, cameras=("down",), segments=1, frames=3)
    gate = threading.Event()
    real = previews.make_previews

    def held(*a):  # the worker waits: every job asked for stays waiting
        assert gate.wait(60)
        return real(*a)

    mp = pytest.MonkeyPatch()
    mp.setattr(previews, "make_previews", held)
    mp.setattr(Publisher, "_maybe_warm", lambda self: None)
    try:
        with Publisher(FakeBoard("rig-j", root), _cfg()) as pub:
            d = dealer(pub.router_endpoint)
            codes = [_code(_ask(d, _raw("THUMBS", {"id": i, "flight": "f1", "segment": SEG,
                                                   "width": 16 + i})))
                     for i in range(p.MAX_THUMB_JOBS + 2)]
            gate.set()
            d.close()
    finally:
        mp.undo()
        gate.set()
    # the first job is the worker's at once or waits; either way 4 wait at most
    assert p.MAX_THUMB_JOBS == 4 and codes[-1] == p.E_BUSY
    assert codes.count(p.E_BUSY) in (1, 2), codes


def command_name(board: Publisher, s: zmq.Socket, tmp: Path) -> None:
    assert _code(_ask(s, _raw("COMMAND", {"id": 1, "name": "x" * 32}))) == p.E_BAD_FIELD
    assert _code(_ask(s, _raw("COMMAND", {"id": 1, "name": "x" * 33}))) == p.E_TOO_LARGE


def command_args(board: Publisher, s: zmq.Socket, tmp: Path) -> None:
    def code(args: dict) -> str:
        return _code(_ask(s, _raw("COMMAND", {"id": 1, "name": "arm", "args": args})))
    # within every limit: the board itself refuses (it cannot arm once landed)
    assert code({f"k{i}": i for i in range(16)}) == p.E_REFUSED
    assert code({f"k{i}": i for i in range(17)}) == p.E_TOO_LARGE
    assert code({"k" * 64: True}) == p.E_REFUSED
    assert code({"k" * 65: 1}) == p.E_BAD_FIELD
    assert code({"k": "v" * 200, "x": 1.5}) == p.E_REFUSED
    assert code({"k": "v" * 201}) == p.E_BAD_FIELD
    assert code({"k": [1]}) == p.E_BAD_FIELD


def window(board: Publisher, s: zmq.Socket, tmp: Path) -> None:
    """Requests beyond the window while not reading: held up to a window, the rest dropped and
    counted in one BUSY; none vanish."""
    root = tmp / "window"
    write_segment(root / "f1" / "down" / "000000.mcap", "down", frames=4, pad_kb=5000)
    with Publisher(FakeBoard("rig-w", root), _cfg(chunk_kb=4096)) as pub:
        win = pub.window
        assert win == 4  # 16 MiB / 4 MiB chunks
        d = dealer(pub.router_endpoint, RCVHWM=1, RCVBUF=4096)
        n = 60
        try:
            for i in range(n):
                d.send_multipart(_raw("FETCH", {"id": i, "path": SEG, "offset": 0,
                                                "length": 4 << 20}))
            wait_for(lambda: pub.requests >= n, "the board to read every FETCH")
            got: list[p.Message] = []
            dropped = 0
            while len(got) + dropped < n:
                assert d.poll(60_000), f"{len(got)} replies, {dropped} dropped of {n}"
                reply = p.decode(d.recv_multipart())
                got.append(reply)
                if isinstance(reply, p.Error):
                    assert reply.code == p.E_BUSY and dropped == 0  # one BUSY
                    dropped = int(reply.message.split()[0])
            chunks = [r for r in got if isinstance(r, p.Chunk)]
            assert dropped > 0 and len(chunks) + dropped == n
            assert len(chunks) >= win and [c.id for c in chunks] == sorted(c.id for c in chunks)
        finally:
            d.close()


def reply_bytes(board: Publisher, s: zmq.Socket, tmp: Path) -> None:
    root = tmp / "budget"
    make_store(root, cameras=("down",), segments=1, frames=4, pad_kb=300)
    with Publisher(FakeBoard("rig-rb", root), _cfg(memory_mb=64), rss=lambda: 0) as pub:
        assert (pub.budget.total, pub.budget.per_peer) == (16 << 20, 2 << 20)
        d = dealer(pub.router_endpoint, RCVHWM=1, RCVBUF=4096)
        try:
            for i in range(64):
                d.send_multipart(_raw("FETCH", {"id": i, "path": SEG, "offset": 0,
                                                "length": 262144}))
            wait_for(lambda: pub.requests >= 64, "the board to read every FETCH")
            wait_for(lambda: pub.budget.waits > 0, "a reply to wait for the budget")
            assert pub.budget.peak <= 2 << 20  # one client: its own budget
            ids = []
            while len(ids) < 64:  # read: every request answered, in order
                assert d.poll(60_000)
                ids.append(p.decode(d.recv_multipart()).id)
            assert ids == list(range(64))
        finally:
            d.close()
    assert PublishConfig().memory_mb == 256 and PublishConfig().memory_mb // 4 == 64


def connections(board: Publisher, s: zmq.Socket, tmp: Path) -> None:
    assert PublishConfig().max_connections == 64
    with Publisher(FakeBoard("rig-cc", tmp), _cfg(max_connections=2)) as pub:
        first = [dealer(pub.router_endpoint) for _ in range(2)]
        try:
            for d in first:
                assert _code(_ask(d, _raw("PING", {"id": 1}))) == "PONG"
            wait_for(lambda: pub.connections.served == 2, "two clients served")
            late = dealer(pub.router_endpoint)
            reply = _ask(late, _raw("PING", {"id": 7}))
            assert _code(reply) == p.E_BUSY and "connection cap" in reply.message
            late.close()
        finally:
            for d in first:
                d.close()


def memory(board: Publisher, s: zmq.Socket, tmp: Path) -> None:
    """A message that never ends: the ROUTER is re-created before the budget, clients return."""
    assert PublishConfig().memory_mb == 256
    with Publisher(FakeBoard("rig-mm", tmp), _cfg(memory_mb=128)) as pub:
        port = int(pub.router_endpoint.rsplit(":", 1)[1])
        frame = b"\x03" + (16000).to_bytes(8, "big") + b"\x00" * 16000  # MORE | LONG
        attacker = _zmtp_dealer(port)
        sent = 0
        try:
            while pub.resets == 0 and sent < 512 << 20:  # hang guard: 4x the budget
                attacker.sendall(frame * 16)
                sent += 16 * len(frame)
                time.sleep(ATTACK_PAUSE_S)
        except OSError:
            pass  # the board closed it
        finally:
            attacker.close()
        wait_for(lambda: pub.resets >= 1, "the ROUTER to be bound again")
        assert pub.memory.peak < 128 << 20
        with Client(pub.router_endpoint, timeout_s=10) as c:
            assert c.ping() > 0


CHECKS: dict[str, Callable[[Publisher, zmq.Socket, Path], None]] = {
    "inbound frame (any request part)": inbound_frame,
    "inbound frame on the PUB socket (a subscription)": pub_frame,
    "handshake (ZMTP greeting, CURVE)": handshake,
    "frames in one request": frames,
    "request `id`": request_id,
    "`path` / `segment`": path,
    "HELLO `client`": hello_client,
    "HELLO `version`": hello_version,
    "names (`flight`, `camera`)": names,
    "FETCH `offset`": fetch_offset,
    "FETCH `length`": fetch_length,
    "THUMBS `every`": thumbs_every,
    "THUMBS `width`": thumbs_width,
    "THUMBS `skip`": thumbs_skip,
    "THUMBS `limit`": thumbs_limit,
    "JPEG bytes in one THUMBNAILS page": thumbs_page_bytes,
    "THUMBS jobs waiting per client": thumbs_jobs,
    "COMMAND `name`": command_name,
    "COMMAND `args`": command_args,
    "requests outstanding per client": window,
    "reply bytes queued on the board": reply_bytes,
    "TCP connections served at once (ROUTER and PUB together)": connections,
    "board memory (the publisher's resident size, growth since it started)": memory,
}


def test_every_limit_in_the_table_has_a_check() -> None:
    stated = [what for what, _, _ in _rows()]
    missing = [w for w in stated if w not in CHECKS]
    assert not missing, f"rows of docs/protocol.md's Limits table without a check here: {missing}"
    assert not [w for w in CHECKS if w not in stated], "checks of rows no longer in the table"


@pytest.mark.parametrize("what", list(CHECKS))
def test_limit(what: str, board: Publisher, s: zmq.Socket, tmp_path: Path) -> None:
    CHECKS[what](board, s, tmp_path)
