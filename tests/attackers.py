"""Attackers for tests/test_attacks.py, each run as its own process (``python attackers.py KIND
JSON``), and the hostile fake board a real ``camctl fetch`` is pointed at.

A process prints one JSON line when its attack is in place (``{"ready": ...}``), holds it until its
stdin closes, then prints one JSON summary line and exits. Everything here is the network's side of
issue 25: idle TCP connections to the fd limit, one unfinished multipart message, THUMBS and FETCH
floods from 40 identities that never read, requests with hostile names, and a board that answers a
ground with oversize replies.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import resource
import select
import socket
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import zmq

from camctl.common import protocol as p

__all__ = ["ATTACKS", "FAKE_BOARD_MODES", "HOSTILE_NAMES", "hostile_requests"]

FAKE_FLIGHT = "20200101T000000Z"
FAKE_BOARD_MODES = ("huge_chunk", "endless_thumbs", "absurd_size", "escape_text")
# what the hostile board puts in an ERROR's text (escape_text): clear screen, red, bell
ESCAPES = "\x1b[2J\x1b[31mboard says: all files verified\x07"
HUGE_CHUNK = 500 << 20  # the CHUNK the hostile board sends for a 650-byte FETCH (issue 25, 5.)
ABSURD_SIZE = 1 << 50  # a listed size no ground disk has (1 PiB)

# Names a hostile peer puts in requests: a newline-ended name (``$`` matches before a final "\n"),
# path traversal, control characters (escape codes, NUL, DEL), over-long names.
HOSTILE_NAMES = ("{flight}\n", "../{flight}", "{flight}/..", "..", ".", "\x1b[2J\x1b[31mpwned",
                 "{flight}\x00", "{flight}\r", "a" * 300, "{flight}\x7f", " {flight}")
HOSTILE_PATHS = ("../../../../etc/passwd", "/etc/passwd", "{flight}/down/../../../../etc/hostname",
                 "{flight}/../daemon.json", "{flight}/down/{seg}\n", "{flight}\\..\\daemon.json",
                 "{flight}/down/{seg}\x00", "{flight}/./down/{seg}", "{flight}//down/{seg}",
                 "{flight}/down/\x1b[2J", "daemon.json")


def _say(obj: dict) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def _hold() -> None:
    """Until stdin closes (the test ends the attack by closing it)."""
    sys.stdin.buffer.read()


def _hold_while(step: Callable[[], None]) -> None:
    """Call ``step`` (one round of a flood) until stdin closes."""
    while True:
        ready, _, _ = select.select([sys.stdin], [], [], 0)
        if ready and not sys.stdin.buffer.read1(1 << 16):
            return
        step()


def _dealer(ctx: zmq.Context, url: str, identity: bytes | None = None) -> zmq.Socket:
    s = ctx.socket(zmq.DEALER)
    s.setsockopt(zmq.LINGER, 0)
    s.setsockopt(zmq.SNDHWM, 0)  # the attacker never blocks on its own queue
    s.setsockopt(zmq.RCVHWM, 1)  # replies stay in the board's queues and the kernel, not here
    s.setsockopt(zmq.RCVBUF, 4096)
    if identity is not None:
        s.setsockopt(zmq.IDENTITY, identity)
    s.connect(url)
    return s


# --- attacks on a board ---------------------------------------------------------------------------
def connections(url: str, n: int) -> None:
    """``n`` idle TCP connections to the board's ROUTER port: each sends the first byte of a ZMTP
    greeting and nothing more. The byte makes TCP retransmit until the board has accepted the
    connection (a bare connect that meets a full accept queue stays half-open on the board's side
    and never costs it an fd); opened in batches of ``_BATCH``, as a scanner would."""
    host, port = url.removeprefix("tcp://").rsplit(":", 1)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = n + 64
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard) if hard > 0 else want, hard))
    socks: list[socket.socket] = []
    established = 0
    # poll, not select: these fds are past select's FD_SETSIZE (1024)
    for first in range(0, n, _BATCH):
        batch: dict[int, socket.socket] = {}
        poller = select.poll()
        for _ in range(min(_BATCH, n - first)):
            s = socket.socket()
            s.setblocking(False)
            if s.connect_ex((host, int(port))) not in (0, errno.EINPROGRESS):
                s.close()
                continue
            socks.append(s)
            batch[s.fileno()] = s
            poller.register(s.fileno(), select.POLLOUT)
        deadline = time.monotonic() + 20.0  # a hang guard: a connect the board never takes
        while batch and time.monotonic() < deadline:
            for fd, _ in poller.poll(500):
                poller.unregister(fd)
                s = batch.pop(fd)
                if s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0:
                    established += 1
                    with contextlib.suppress(OSError):
                        s.send(b"\xff")
    _say({"ready": True, "opened": len(socks), "established": established})
    _hold()
    closed_by_board = 0
    for s in socks:
        try:
            if s.recv(1 << 16) == b"":
                closed_by_board += 1
        except BlockingIOError:
            pass
        except OSError:
            closed_by_board += 1
        s.close()
    _say({"opened": len(socks), "established": established, "closed_by_board": closed_by_board})


_BATCH = 100


def _zmtp_dealer(url: str) -> socket.socket:
    """A raw TCP socket that has done a ZMTP 3.0 NULL handshake as a DEALER (RFC 23/ZMTP:
    64-byte greeting, then a READY command), so frames can be sent the way libzmq itself never
    sends them: a message whose last frame never comes (libzmq's own sockets publish a message
    to the wire only once it is complete, libzmq src/lb.cpp ``sendpipe``: flush on the last
    frame)."""
    host, port = url.removeprefix("tcp://").rsplit(":", 1)
    s = socket.create_connection((host, int(port)))
    greeting = (b"\xff" + bytes(8) + b"\x7f" + bytes([3, 0]) + b"NULL".ljust(20, b"\x00")
                + b"\x00" + bytes(31))
    s.sendall(greeting)
    body = b"\x05READY" + _zmtp_prop(b"Socket-Type", b"DEALER") + _zmtp_prop(b"Identity", b"")
    s.sendall(bytes([0x04, len(body)]) + body)  # a short command frame
    return s


def _zmtp_prop(name: bytes, value: bytes) -> bytes:
    return bytes([len(name)]) + name + len(value).to_bytes(4, "big") + value


def _zmtp_frame(data: bytes, *, more: bool) -> bytes:
    flags = (0x01 if more else 0) | (0x02 if len(data) > 255 else 0)
    size = len(data).to_bytes(8 if len(data) > 255 else 1, "big")
    return bytes([flags]) + size + data


def multipart(url: str, total_mb: int, frame_kb: int) -> None:
    """One message that never ends: the head of a PING, then ``total_mb`` of ``frame_kb`` frames,
    every one flagged MORE, over a raw ZMTP connection; what the board sends back is read and
    dropped."""
    s = _zmtp_dealer(url)
    got = [0]

    def drain() -> None:  # the board's greeting, READY and heartbeats
        try:
            while chunk := s.recv(1 << 16):
                got[0] += len(chunk)
        except OSError:
            return

    threading.Thread(target=drain, daemon=True).start()
    head = b"".join(_zmtp_frame(f, more=True) for f in p.Ping(id=1).encode()[:3])
    frame = _zmtp_frame(b"\x00" * (frame_kb << 10), more=True)
    block = frame * 256  # one sendall per 256 frames
    n, reset = 0, ""
    try:
        s.sendall(head)
        while n * (frame_kb << 10) < (total_mb << 20):
            s.sendall(block)
            n += 256
    except OSError as exc:  # the board reset the connection: the attack was refused
        reset = f"{type(exc).__name__}: {exc}"
    _say({"ready": True, "frames": n, "bytes": n * (frame_kb << 10), "reset": reset})
    _hold()  # the last frame never comes
    s.close()
    _say({"frames": n, "board_bytes": got[0], "reset": reset})


def flood(url: str, kind: str, identities: int, segments: list[dict]) -> None:
    """``identities`` DEALERs that send THUMBS or FETCH requests in rounds and never read."""
    ctx = zmq.Context()
    socks = [_dealer(ctx, url, b"flood-%d" % i) for i in range(identities)]
    segs = [p.SegmentInfo.from_json(d) for d in segments]
    biggest = max(segs, key=lambda x: x.size)
    sent = [0]

    def fetch_round() -> None:
        for s in socks:
            for _ in range(p.MAX_WINDOW):
                i = sent[0]
                off = (i * 262144) % max(1, biggest.size - 262144)
                s.send_multipart(p.Fetch(id=i, path=biggest.path, offset=off,
                                         length=262144).encode())
                sent[0] += 1
        time.sleep(0.005)

    def thumbs_round() -> None:
        for s in socks:
            for seg in segs:
                i = sent[0]
                s.send_multipart(p.Thumbs(id=i, flight=seg.flight, segment=seg.path,
                                          every=1 + i % 7, width=16 + 8 * (i % 79)).encode())
                sent[0] += 1
        time.sleep(0.005)

    step = fetch_round if kind == "fetch" else thumbs_round
    step()
    _say({"ready": True, "identities": identities, "sent": sent[0]})
    _hold_while(step)
    for s in socks:
        s.close(0)
    ctx.term()
    _say({"sent": sent[0]})


def hostile_requests(flight: str, seg: str) -> list[tuple[str, p.Message]]:
    """Every hostile request the ``names`` attack sends, with a label: names in LIST, THUMBS and
    COMMAND, paths in FETCH and THUMBS."""
    out: list[tuple[str, p.Message]] = []
    for i, tpl in enumerate(HOSTILE_NAMES):
        name = tpl.format(flight=flight)
        out.append((f"LIST flight={name!r}", p.List(id=100 + i, flight=name)))
        out.append((f"THUMBS flight={name!r}", p.Thumbs(id=200 + i, flight=name)))
        out.append((f"THUMBS camera={name!r}", p.Thumbs(id=300 + i, flight=flight, camera=name)))
        out.append((f"COMMAND event name={name!r}",
                    p.Command(id=400 + i, name="event", args={"name": name})))
    out.append(("COMMAND event name='touchdown\\n'",
                p.Command(id=499, name="event", args={"name": "touchdown\n"})))
    for i, tpl in enumerate(HOSTILE_PATHS):
        path = tpl.format(flight=flight, seg=seg)
        out.append((f"FETCH path={path!r}", p.Fetch(id=500 + i, path=path, offset=0,
                                                    length=4096)))
        out.append((f"THUMBS segment={path!r}",
                    p.Thumbs(id=600 + i, flight=flight, segment=path)))
    return out


def names(url: str, flight: str, seg: str) -> None:
    """Send each hostile request and read its reply; say which were answered with what."""
    ctx = zmq.Context()
    s = ctx.socket(zmq.DEALER)
    s.setsockopt(zmq.LINGER, 0)
    s.connect(url)
    answers: list[dict] = []
    for label, msg in hostile_requests(flight, seg):
        s.send_multipart(msg.encode())
        if not s.poll(10_000):
            answers.append({"request": label, "verb": None})
            continue
        frames = s.recv_multipart()
        verb = bytes(frames[2]).decode("ascii", "replace") if len(frames) > 2 else "?"
        reply: dict[str, Any] = {"request": label, "verb": verb}
        try:
            got = p.decode(frames, allowed=p.REPLIES)
            if isinstance(got, p.Error):
                reply["code"] = got.code
            elif isinstance(got, p.Chunk):
                reply["bytes"] = len(got.data)
            elif isinstance(got, p.Listing):
                reply["segments"] = len(got.segments)
            elif isinstance(got, p.Done):
                reply["result"] = got.result
        except Exception as exc:  # a reply the ground cannot decode is recorded as such
            reply["undecodable"] = str(exc)[:200]
        answers.append(reply)
    _say({"ready": True, "answers": answers})
    _hold()
    s.close(0)
    ctx.term()
    _say({"answers": len(answers)})


# --- a hostile board, for a real `camctl fetch` ---------------------------------------------------
def fake_board(mode: str) -> None:
    """A ROUTER that answers like a board and then lies: ``huge_chunk`` (a 500 MiB CHUNK for
    every FETCH), ``endless_thumbs`` (THUMBS pages with ``more`` forever), ``absurd_size`` (a
    1 PiB listed file, served with honest-looking chunks), ``escape_text`` (THUMBS refused with
    terminal escape codes in the ERROR's text; the file served honestly)."""
    ctx = zmq.Context()
    s = ctx.socket(zmq.ROUTER)
    s.setsockopt(zmq.LINGER, 0)
    s.setsockopt(zmq.SNDHWM, 16)
    port = s.bind_to_random_port("tcp://127.0.0.1")
    huge = bytes(HUGE_CHUNK) if mode == "huge_chunk" else b""
    payload = b"\xff\xd8" + bytes(1 << 20)
    size = ABSURD_SIZE if mode == "absurd_size" else len(payload)
    seg = p.SegmentInfo(path=f"{FAKE_FLIGHT}/down/000000.mcap", size=size,
                        sha256=hashlib.sha256(payload).hexdigest(), flight=FAKE_FLIGHT,
                        camera="down", frames=10, value=2)
    counts = {"FETCH": 0, "THUMBS": 0, "sent_bytes": 0}
    _say({"ready": True, "url": f"tcp://127.0.0.1:{port}"})
    poller = zmq.Poller()
    poller.register(s, zmq.POLLIN)
    poller.register(sys.stdin, zmq.POLLIN)
    while True:
        events = dict(poller.poll())
        if (sys.stdin.fileno() in events or sys.stdin in events) \
                and not sys.stdin.buffer.read1(1 << 16):
            break
        if s not in events:
            continue
        ident, *frames = s.recv_multipart()
        try:
            req = p.decode(frames, allowed=p.REQUESTS)
        except Exception:
            continue
        reply: list[Any]
        if isinstance(req, p.Hello):
            reply = p.Welcome(id=req.id, version=p.PROTOCOL_VERSION, board="evil",
                              flights=[FAKE_FLIGHT], serving=True, mono_ns=time.monotonic_ns(),
                              wall_ns=time.time_ns(), chunk_max=256 << 10, window=8).encode()
        elif isinstance(req, p.List):
            reply = p.Listing(id=req.id, board="evil", segments=[seg]).encode()
        elif isinstance(req, p.Status):
            reply = p.State(id=req.id, status={"board": "evil", "phase": "LANDED"}).encode()
        elif isinstance(req, p.Ping):
            reply = p.Pong(id=req.id, mono_ns=time.monotonic_ns()).encode()
        elif isinstance(req, p.Thumbs):
            counts["THUMBS"] += 1
            if mode == "escape_text":
                reply = p.Error(id=req.id, code=p.E_INTERNAL, message=ESCAPES).encode()
            elif mode == "endless_thumbs":
                seq = req.skip
                info = p.ThumbInfo(camera="down", segment=seg.path, seq=seq,
                                   timestamp_ns=seq, phase="DESCENT", width=640, height=360)
                reply = p.Thumbnails(id=req.id, flight=FAKE_FLIGHT, thumbs=[info],
                                     jpegs=[payload], more=True).encode()
            else:
                reply = p.Thumbnails(id=req.id, flight=FAKE_FLIGHT, thumbs=[], jpegs=[]).encode()
        elif isinstance(req, p.Fetch):
            counts["FETCH"] += 1
            if mode == "huge_chunk":
                data: Any = memoryview(huge)
            else:
                # every chunk full: a ground that trusts the listed size writes until its disk is
                # full (absurd_size); otherwise the 1 MiB file's bytes
                start = min(req.offset, len(payload))
                data = (bytes(req.length) if mode == "absurd_size"
                        else payload[start:start + req.length])
            reply = p.Chunk(id=req.id, path=req.path, offset=req.offset, data=data).encode()
        else:
            reply = p.Error(id=req.id, code=p.E_REFUSED, message="no").encode()
        counts["sent_bytes"] += sum(len(f) for f in reply)
        s.send_multipart([ident, *reply], copy=False)
    s.close(0)
    ctx.term()
    _say(counts)


ATTACKS: dict[str, Callable[..., None]] = {
    "connections": connections, "multipart": multipart, "flood": flood, "names": names,
    "fake_board": fake_board}


if __name__ == "__main__":
    ATTACKS[sys.argv[1]](**json.loads(sys.argv[2]))
