"""Wire messages: round trips, validation errors, and a hostile-input fuzz of a live board."""

from __future__ import annotations

import json
import os
import random
from collections import Counter
from pathlib import Path

import pytest
import zmq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from netfixtures import FakeBoard, make_store

from camctl.board.config import PublishConfig
from camctl.board.publish import Publisher
from camctl.common import protocol as p
from camctl.exc import ProtocolError
from camctl.ground import Client, fetch

SEG = p.SegmentInfo(path="f1/down/000001.mcap", size=123, sha256="ab" * 32, flight="f1",
                    camera="down", frames=3, first_ns=5, last_ns=9, value=4)
MESSAGES = [
    p.Hello(id=1, version=1, client="g"),
    p.List(id=2), p.List(id=3, flight="f1"),
    p.Fetch(id=4, path="f1/down/000000.mcap", offset=10, length=4096),
    p.Thumbs(id=5, flight="f1", camera="down", segment="f1/down/000000.mcap", every=3, width=80,
             skip=2, limit=10),
    p.Status(id=6), p.Command(id=7, name="event", args={"name": "release"}), p.Ping(id=8),
    p.Welcome(id=9, version=1, board="rig-a", flights=["f1", "f2"], serving=True, mono_ns=1,
              wall_ns=2, chunk_max=262144),
    p.Listing(id=10, board="rig-a", segments=[SEG, p.SegmentInfo(path="f1/flight.json", size=1,
                                                                 sha256="0" * 64, flight="f1",
                                                                 camera="", kind="meta")]),
    p.Chunk(id=11, path="f1/down/000000.mcap", offset=0, data=bytes(range(256)) * 3),
    p.Chunk(id=12, path="f1/down/000000.mcap", offset=99, data=b""),
    p.Thumbnails(id=13, flight="f1",
                 thumbs=[p.ThumbInfo("down", "f1/down/000000.mcap", 3, 7, "DESCENT", 160, 120)],
                 jpegs=[b"\xff\xd8jpeg"], more=True),
    p.State(id=14, status={"board": "rig-a", "phase": "LANDED"}),
    p.Done(id=15, result={"phase": "ARMED"}),
    p.Pong(id=16, mono_ns=77), p.Error(id=17, code=p.E_NOT_SERVING, message="not now"),
    p.Thumbnails(id=18, flight="f1", thumbs=[], jpegs=[], more=True, retry_ms=50),
]


@pytest.mark.parametrize("msg", MESSAGES, ids=lambda m: type(m).__name__)
def test_round_trip(msg: p.Message) -> None:
    frames = msg.encode()
    assert (frames[0] == p.MAGIC and frames[1] == bytes([p.PROTOCOL_VERSION])
            and frames[2] == msg.VERB)
    assert type(msg).decode(frames) == msg
    assert p.decode(frames) == msg


@pytest.mark.parametrize(("frames", "code"), [
    ([b"NOPE", b"\x01", b"PING", b'{"id":1}'], p.E_BAD_MAGIC),
    ([p.MAGIC, b"\x02", b"PING", b'{"id":1}'], p.E_BAD_VERSION),
    ([p.MAGIC, b"\x01", b"DANCE", b'{"id":1}'], p.E_UNKNOWN_VERB),
    ([p.MAGIC, b"\x01", b"PING", b"{not json"], p.E_BAD_HEADER),
    ([p.MAGIC, b"\x01", b"PING", b"[1]"], p.E_BAD_HEADER),
    ([p.MAGIC, b"\x01", b"PING"], p.E_BAD_HEADER),
    ([p.MAGIC, b"\x01", b"PING", b"{}"], p.E_BAD_FIELD),
    ([p.MAGIC, b"\x01", b"PING", b'{"id":-1}'], p.E_BAD_FIELD),
    ([p.MAGIC, b"\x01", b"PING", b'{"id":true}'], p.E_BAD_FIELD),
    ([p.MAGIC, b"\x01", b"PING", b'{"id":1}', b"extra"], p.E_BAD_FIELD),
    ([p.MAGIC, b"\x01", b"FETCH", b'{"id":1,"path":"a/b/c.mcap","offset":0,"length":99999999}'],
     p.E_TOO_LARGE),
    ([p.MAGIC, b"\x01", b"FETCH", b'{"id":1,"path":"a/../c.mcap","offset":0,"length":1}'],
     p.E_BAD_PATH),
    ([p.MAGIC, b"\x01", b"FETCH", b'{"id":1,"path":"/etc/passwd","offset":0,"length":1}'],
     p.E_BAD_PATH),
    ([p.MAGIC, b"\x01", b"FETCH", b'{"id":1,"path":"a/b\\u0000/c","offset":0,"length":1}'],
     p.E_BAD_PATH),
    ([p.MAGIC, b"\x01", b"FETCH", b'{"id":1,"path":"a/b/c","offset":"0","length":1}'],
     p.E_BAD_FIELD),
    ([p.MAGIC, b"\x01", b"COMMAND", b'{"id":1,"name":"self-destruct"}'], p.E_BAD_FIELD),
    ([p.MAGIC, b"\x01", b"THUMBS", b'{"id":1,"flight":"../x"}'], p.E_BAD_FIELD),
    ([p.MAGIC, b"\x01", b"LIST", b'{"id":1,"flight":"' + b"[" * 5000 + b'"}'], p.E_TOO_LARGE),
    ([p.MAGIC, b"\x01", b"PING", b"[" * 100_000], p.E_BAD_HEADER),
])
def test_decode_rejects(frames: list[bytes], code: str) -> None:
    with pytest.raises(ProtocolError) as info:
        p.decode(frames, allowed=p.REQUESTS)
    assert info.value.code == code


def test_peek_id_never_raises() -> None:
    assert p.peek_id([b"x"]) == 0
    assert p.peek_id([p.MAGIC, b"\x01", b"PING", b'{"id": 42}']) == 42
    assert p.peek_id([p.MAGIC, b"\x01", b"PING", b"\xff\xfe"]) == 0


# --- a live board under hostile input -------------------------------------------------------------
@pytest.fixture(scope="module")
def board(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("store")
    make_store(root, segments=1, frames=6)
    outside = tmp_path_factory.mktemp("outside")
    (outside / "secret.mcap").write_bytes(b"secret")
    (root / "f1" / "down" / "link.mcap").symlink_to(outside / "secret.mcap")
    (root / "f1" / "escape").symlink_to(outside)
    pub = Publisher(FakeBoard("rig-h", root), PublishConfig(bind="tcp://127.0.0.1:*",
                                                            events="tcp://127.0.0.1:*"))
    pub.start()
    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(pub.router_endpoint)
    yield pub, sock, root
    sock.close()
    ctx.term()
    pub.close()


def _ask(sock: zmq.Socket, frames: list[bytes]) -> p.Message | None:
    sock.send_multipart(frames)
    if not sock.poll(10_000):
        return None
    return p.decode(sock.recv_multipart())


_VERBS = [*p.REQUESTS, *p.REPLIES, b"", b"\x00"]
_fields = st.sampled_from(["id", "path", "offset", "length", "flight", "segment", "every", "width",
                           "limit", "skip", "name", "args", "version", "camera"])
_values = st.one_of(st.integers(-2**70, 2**70), st.text(max_size=20), st.none(), st.booleans(),
                    st.lists(st.integers(), max_size=3),
                    st.sampled_from(["../../etc/passwd", "/etc/passwd", "f1", "f1/down/000000.mcap",
                                     "f1/escape/secret.mcap", "f1/down/link.mcap"]))
_headers = st.dictionaries(_fields, _values, max_size=6).map(lambda d: json.dumps(d).encode())
_frame = st.one_of(st.binary(max_size=64), st.sampled_from([p.MAGIC, b"\x01", b"\x02", *_VERBS]),
                   _headers)


@settings(max_examples=1500, deadline=None, suppress_health_check=list(HealthCheck),
          derandomize=True)
@given(st.lists(_frame, min_size=1, max_size=7))
def test_fuzz_random_multipart(board, frames: list[bytes]) -> None:
    sock = board[1]
    reply = _ask(sock, frames)
    assert isinstance(reply, p.Error | p.Welcome | p.Listing | p.Chunk | p.Thumbnails | p.State
                      | p.Done | p.Pong), frames


# --- structure-aware fuzz: valid framing, mutated verbs, fields and JSON bodies -------------------
_PATHS = ["f1/down/000000.mcap", "f1/up/000000.mcap", "f1/events/000000.mcap", "f1/flight.json",
          "f1/index.json", "f1/down/999999.mcap", "f1/escape/secret.mcap", "f1/down/link.mcap",
          "../../etc/passwd", "/etc/passwd",
          "f1//down", "f1/./x", "f1", "a" * 1100, "f1/down/000000.mcap\x00", "f1\\down"]
_ints = st.one_of(st.integers(-3, 300), st.sampled_from([0, 1, 16, 64, 160, 256, 640, 4096, 65536,
                                                         2**22, 2**31, 2**53, 2**62, 2**63, -1]),
                  st.integers(-2**70, 2**70))
_junk = st.one_of(_ints, st.text(max_size=24), st.none(), st.booleans(), st.floats(),
                  st.lists(st.integers(), max_size=3),
                  st.dictionaries(st.text(max_size=4), st.integers(), max_size=2),
                  st.sampled_from(_PATHS))
_GOOD: dict[bytes, dict[str, st.SearchStrategy]] = {
    b"HELLO": {"version": st.just(1), "client": st.text(max_size=20)},
    b"LIST": {"flight": st.sampled_from(["f1", None, "f9"])},
    b"FETCH": {"path": st.sampled_from(_PATHS[:5]), "offset": st.integers(0, 5000),
               "length": st.integers(0, 65536)},
    b"THUMBS": {"flight": st.just("f1"), "camera": st.sampled_from(["down", "up", None, "nope"]),
                "segment": st.sampled_from([None, "f1/down/000000.mcap", "f1/up/000000.mcap"]),
                "every": st.integers(0, 5), "width": st.sampled_from([16, 80, 160]),
                "skip": st.integers(0, 5), "limit": st.integers(1, 256)},
    b"STATUS": {},
    b"COMMAND": {"name": st.sampled_from(["arm", "disarm", "event"]),
                 "args": st.sampled_from([{}, {"name": "release"}, {"name": "touchdown"}])},
    b"PING": {},
}


@st.composite
def _structured(draw: st.DrawFn) -> list[bytes]:
    """One message with valid framing (a few percent of broken magic, version or JSON), a request
    verb (mostly) and a header of that verb's fields, each kept, mutated to hostile values, or left
    out."""
    roll = draw(st.integers(0, 99))
    # the rare cases sit mid-range: hypothesis draws the ends of an integer range more often than
    # the rest
    verb = draw(st.sampled_from(list(_GOOD))) if not 40 <= roll < 46 else draw(st.sampled_from(
        [*p.REPLIES, b"FETCH ", b"fetch", b"", b"\xff", b"THUMB"]))
    header: dict = {"id": draw(st.integers(0, p.MAX_REQUEST_ID)) if draw(st.integers(0, 9))
                    else draw(_junk)}
    for name, good in _GOOD.get(verb, _GOOD[b"FETCH"]).items():
        how = draw(st.integers(0, 9))
        if how < 6:
            header[name] = draw(good)
        elif how < 9:
            header[name] = draw(_junk)
    if draw(st.integers(0, 9)) == 0:
        header[draw(st.text(max_size=8))] = draw(_junk)
    body = json.dumps(header).encode()
    frames = [p.MAGIC, b"\x01", verb, body]
    broken = draw(st.integers(0, 99))
    if broken in (40, 41):
        frames[0] = draw(st.sampled_from([b"CAMCTX", b"", b"camctl"]))
    elif broken in (42, 43):
        frames[1] = draw(st.sampled_from([b"\x02", b"", b"\x01\x01"]))
    elif broken in (44, 45):
        frames[3] = draw(st.sampled_from([b"[]", b"{", body[:-1], b"\xff\xfe", b"null", b'"x"']))
    if draw(st.integers(0, 19)) == 0:
        frames.append(draw(st.binary(max_size=16)))
    return frames


_FRAMING = (p.E_BAD_MAGIC, p.E_BAD_VERSION, p.E_BAD_HEADER)
_FUZZ: dict[str, Counter] = {"sent": Counter(), "framed": Counter(), "handler": Counter(),
                             "answered": Counter()}


@settings(max_examples=1200, deadline=None, suppress_health_check=list(HealthCheck),
          derandomize=True)
@given(_structured())
def test_fuzz_structured_reaches_handlers(board, frames: list[bytes]) -> None:
    pub, sock, _ = board
    if not hasattr(pub, "_fuzz_wrapped"):  # count what gets past decoding into the request handlers
        real = pub._handle

        def counting(req: p.Message, ident: zmq.Frame) -> p.Message:
            _FUZZ["handler"][req.VERB.decode()] += 1
            return real(req, ident)
        pub._handle = counting
        pub._fuzz_wrapped = True
    verb = frames[2].decode("ascii", "replace")
    before = sum(_FUZZ["handler"].values())
    reply = _ask(sock, frames)
    assert reply is not None, frames
    _FUZZ["sent"][verb] += 1
    if not (isinstance(reply, p.Error) and reply.code in _FRAMING):
        _FUZZ["framed"][verb] += 1
    if sum(_FUZZ["handler"].values()) > before and not isinstance(reply, p.Error):
        _FUZZ["answered"][verb] += 1


def test_fuzz_structured_report(board) -> None:
    """After the fuzz above (file order): prints the share reaching each handler, checks the aim."""
    sent, framed, handler, answered = (_FUZZ[k] for k in ("sent", "framed", "handler", "answered"))
    total = sum(sent.values())
    if not total:
        pytest.skip("run with test_fuzz_structured_reaches_handlers "
                    "(selected alone, it has nothing to report)")
    lines = [f"structured fuzz: {total} messages, "
             f"{sum(framed.values()) / total:.0%} passed framing, "
             f"{sum(handler.values()) / total:.0%} reached a handler"]
    for verb in _GOOD:
        v = verb.decode()
        lines.append(f"  {v:8s} sent {sent[v]:4d}  framed {framed[v]:4d}  "
                     f"reached handler {handler[v]:4d} "
                     f"({handler[v] / max(1, sent[v]):.0%})  answered {answered[v]:4d}")
    print("\n" + "\n".join(lines))
    assert sum(framed.values()) >= 0.9 * total
    assert all(handler[v.decode()] > 0 and answered[v.decode()] > 0 for v in _GOOD), handler
    assert pub_alive(board)


def pub_alive(board) -> bool:
    return board[0]._thread is not None and board[0]._thread.is_alive()


def test_mutated_valid_messages_then_fetch_works(board, tmp_path: Path) -> None:
    pub, sock, root = board
    rng = random.Random(5)
    good = [m.encode() for m in MESSAGES[:8]]
    for _ in range(1500):
        frames = [bytearray(f) for f in rng.choice(good)]
        for _ in range(rng.randint(1, 4)):
            op = rng.random()
            i = rng.randrange(len(frames))
            if op < 0.5 and frames[i]:
                frames[i][rng.randrange(len(frames[i]))] = rng.randrange(256)
            elif op < 0.7:
                del frames[i][rng.randrange(len(frames[i]) + 1):]
            elif op < 0.85:
                frames.insert(i, bytearray(os.urandom(rng.randint(0, 20))))
            elif len(frames) > 1:
                del frames[i]
        reply = _ask(sock, [bytes(f) for f in frames])
        assert reply is not None
    assert pub._thread is not None and pub._thread.is_alive()
    report = fetch([pub.router_endpoint], tmp_path, progress=False, give_up_after_s=20)
    assert report.ok, report.summary()
    assert (tmp_path / "rig-h" / "f1" / "down" / "000000.mcap").read_bytes() == \
        (root / "f1" / "down" / "000000.mcap").read_bytes()


@pytest.mark.parametrize(("path", "code"), [
    ("../store/f1/flight.json", p.E_BAD_PATH), ("/etc/passwd", p.E_BAD_PATH),
    ("f1/down/link.mcap", p.E_BAD_PATH), ("f1/escape/secret.mcap", p.E_BAD_PATH),
    ("f1/down/999999.mcap", p.E_NOT_FOUND), ("f1/../f1/flight.json", p.E_BAD_PATH),
    ("f1", p.E_BAD_PATH), ("f1/down", p.E_BAD_PATH), ("f1/down/000000.mcap\x00", p.E_BAD_PATH),
])
def test_path_traversal_rejected(board, path: str, code: str) -> None:
    sock = board[1]
    reply = _ask(sock, p.Fetch(id=3, path=path, offset=0, length=10).encode())
    assert isinstance(reply, p.Error) and reply.code == code and reply.id == 3, reply


def test_oversized_message_dropped_then_server_still_answers(board) -> None:
    pub, sock, _ = board
    ctx = zmq.Context()
    try:
        big = ctx.socket(zmq.DEALER)
        big.setsockopt(zmq.LINGER, 0)
        big.connect(pub.router_endpoint)
        big.send_multipart([p.MAGIC, b"\x01", b"PING", b'{"id":1}', b"x" * (p.MAX_MESSAGE + 1)])
        assert not big.poll(1500)  # the board dropped the peer: no reply (ZMQ_MAXMSGSIZE)
        big.close()
    finally:
        ctx.term()
    reply = _ask(sock, p.Ping(id=99).encode())
    assert isinstance(reply, p.Pong) and reply.id == 99


def test_open_segment_not_listed_nor_served(board) -> None:
    pub, sock, root = board
    seg = root / "f1" / "up" / "000000.mcap"
    pub.board.open.add(seg)
    try:
        reply = _ask(sock, p.Fetch(id=4, path="f1/up/000000.mcap", offset=0, length=10).encode())
        assert isinstance(reply, p.Error) and reply.code == p.E_OPEN_SEGMENT
        listing = _ask(sock, p.List(id=5).encode())
        assert isinstance(listing, p.Listing)
        assert "f1/up/000000.mcap" not in {s.path for s in listing.segments}
    finally:
        pub.board.open.clear()


def test_chunk_over_board_limit_rejected(board) -> None:
    _, sock, _ = board
    too_long = p.Fetch(id=6, path="f1/down/000000.mcap", offset=0, length=256 * 1024 + 1)
    reply = _ask(sock, too_long.encode())
    assert isinstance(reply, p.Error) and reply.code == p.E_TOO_LARGE


def test_client_requests(board) -> None:
    pub, _, _ = board
    with Client(pub.router_endpoint, timeout_s=10) as c:
        w = c.hello()
        assert (w.board == "rig-h" and w.flights == ["f1"] and w.serving
                and w.version == p.PROTOCOL_VERSION)
        assert c.status()["phase"] == "LANDED"
        assert c.command("event", name="release") == {"phase": "LANDED", "event": "release",
                                                      "changed": False, "outcome": ""}
        assert pub.board.commands[-1] == ("event", {"name": "release"})
        assert c.ping() > 0
        thumbs = c.thumbs("f1", camera="down", every=2)
        assert [t.seq for t, _ in thumbs] == [0, 2, 4]
        assert all(j[:2] == b"\xff\xd8" for _, j in thumbs)


def test_thumbs_unknown_camera_not_found(board) -> None:
    reply = _ask(board[1], p.Thumbs(id=77, flight="f1", camera="nope").encode())
    assert isinstance(reply, p.Error) and reply.code == p.E_NOT_FOUND and "nope" in reply.message
