"""The publisher's sockets: ROUTER and PUB options, CURVE (server keys and the ZAP allow-list),
reading one request frame by frame, and naming a peer for the log."""

from __future__ import annotations

import contextlib
import logging
from typing import Any

import zmq

from camctl.common import protocol as p

__all__ = [
    "HANDSHAKE_IVL_MS", "PUB_HWM", "PUB_MAX_MESSAGE", "configure_pub", "configure_router",
    "curve_server", "peer_fd", "peer_name", "recv_frames", "start_curve", "verb_of",
]

# events queued per slow subscriber before PUB drops them: minutes of the 1 Hz status, and at most
# PUB_HWM * ~2 KB per subscriber (1000 was ~2 MB each, times every connection the cap allows)
PUB_HWM = 256
# a connection that has not finished the ZMTP greeting and handshake (CURVE included) in this time
# is dropped (libzmq's default is 30 s). A handshake is three round trips plus a local ZAP call:
# milliseconds on the field Wi-Fi, 5 s covers the worst link; a connection that only holds a slot
# (and a file descriptor) is gone in seconds. zmq_setsockopt(3), ZMQ_HANDSHAKE_IVL.
HANDSHAKE_IVL_MS = 5000
# inbound message limit of the PUB socket: its only inbound messages are subscriptions (topics of
# a few bytes) and the handshake's, whose largest, CURVE's INITIATE with its metadata, is a few
# hundred bytes. libzmq applies ZMQ_MAXMSGSIZE to every frame it decodes, the handshake's too
# (src/v2_decoder.cpp: a frame over it is an error and the connection is closed).
PUB_MAX_MESSAGE = 1024


def detect_dead_peers(sock: zmq.Socket) -> None:
    """Dead peers found by the kernel's TCP keepalive (~16 s), not by the board's own ZMTP PINGs.

    libzmq 4.3.5's heartbeat timer calls ``out_event()`` on an engine whose input is stopped (its
    peer's queue is at RCVHWM: a flooding peer) after that peer has gone, and its
    ``zmq_assert (!_io_error)`` aborts the process (src/stream_engine_base.cpp, ``timer_event`` ->
    ``out_event``; ``in_event_internal`` sets ``_io_error`` when input is stopped). It aborted the
    publisher twice in three FETCH floods of tests/test_attacks.py. Without the board's PINGs that
    path never runs; a client's PINGs are still answered, and their TTL still drops a client that
    goes silent."""
    sock.setsockopt(zmq.HEARTBEAT_IVL, 0)
    sock.setsockopt(zmq.TCP_KEEPALIVE, 1)
    sock.setsockopt(zmq.TCP_KEEPALIVE_IDLE, 10)
    sock.setsockopt(zmq.TCP_KEEPALIVE_INTVL, 2)
    sock.setsockopt(zmq.TCP_KEEPALIVE_CNT, 3)


def configure_router(sock: zmq.Socket, window: int) -> None:
    """Options of the request socket: size limit, handshake time, dead-peer detection, and
    per-peer queues of ``window``."""
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.MAXMSGSIZE, p.MAX_MESSAGE)
    sock.setsockopt(zmq.HANDSHAKE_IVL, HANDSHAKE_IVL_MS)
    # replies queued per peer: a client within its window never reaches this; a full queue makes
    # send raise (ROUTER_MANDATORY) instead of dropping the reply, and the peer's requests wait
    sock.setsockopt(zmq.SNDHWM, window + 8)
    sock.setsockopt(zmq.RCVHWM, p.MAX_WINDOW)
    sock.setsockopt(zmq.ROUTER_MANDATORY, 1)
    detect_dead_peers(sock)


def configure_pub(sock: zmq.Socket) -> None:
    """Options of the event socket: subscriptions (inbound) are size-limited like requests, the
    handshake time and dead-peer detection are the ROUTER's, a slow subscriber's queue is short."""
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.SNDHWM, PUB_HWM)
    sock.setsockopt(zmq.MAXMSGSIZE, PUB_MAX_MESSAGE)
    sock.setsockopt(zmq.HANDSHAKE_IVL, HANDSHAKE_IVL_MS)
    detect_dead_peers(sock)


def start_curve(ctx: zmq.Context, curve_keys: str,
                socks: tuple[zmq.Socket, ...]) -> tuple[Any, Any]:
    """Turn CURVE on for ``socks`` with the board's keys from ``curve_keys`` (a ``camctl keys``
    folder); start a ZAP authenticator that asks the allow-list.

    Returns (authenticator, allow-list)."""
    from zmq.auth.thread import ThreadAuthenticator

    from camctl.common.keys import AllowList, load_server_curve

    keys = load_server_curve(curve_keys)
    allow = AllowList(keys.readers_dir, keys.operators_dir, own=keys.public)
    auth = ThreadAuthenticator(ctx, log=logging.getLogger("camctl.board.publish.auth"))
    auth.start()
    try:
        # ZAP asks the allow-list on every new connection (it re-reads its folders when they
        # change); the authenticator then sets the message property User-Id to the client's Z85
        # public key
        auth.configure_curve_callback(domain="*", credentials_provider=allow)
        for sock in socks:
            curve_server(sock, curve_keys)
    except BaseException:
        with contextlib.suppress(Exception):
            auth.stop()
        raise
    return auth, allow


def curve_server(sock: zmq.Socket, curve_keys: str) -> None:
    """Make ``sock`` a CURVE server with the board's keys from ``curve_keys`` (before it binds)."""
    from camctl.common.keys import load_server_curve

    keys = load_server_curve(curve_keys)
    sock.curve_secretkey = keys.secret
    sock.curve_publickey = keys.public
    sock.curve_server = True


def recv_frames(sock: zmq.Socket) -> tuple[zmq.Frame, list[bytes], int]:
    """One message as (identity frame, its first ``p.MAX_FRAMES`` frames, how many more came): read
    frame by frame, so the parts beyond the limit are dropped as they arrive, never held.
    Raises zmq.Again when nothing is waiting."""
    ident = sock.recv(zmq.NOBLOCK, copy=False)
    msg: list[bytes] = []
    more = ident.more
    extra = 0
    while more:
        frame = sock.recv(copy=False)
        more = frame.more
        if len(msg) < p.MAX_FRAMES:
            msg.append(frame.bytes)
        else:
            extra += 1
    return ident, msg, extra


def peer_fd(ident: zmq.Frame) -> int:
    """The file descriptor of the TCP connection a message came over (-1 when unknown):
    zmq_msg_get(3) ZMQ_SRCFD, "the file descriptor of the socket the message was read from ...
    might be closed already, reused even. Currently only implemented for TCP sockets"; libzmq 4.3
    sets it on the identity frame a ROUTER makes too (checked in tests/test_publish_bounds.py)."""
    try:
        return int(ident.get(zmq.SRCFD))
    except (zmq.ZMQError, TypeError, ValueError):
        return -1


def peer_name(ident: zmq.Frame) -> str:
    """Who sent a message, for the log: the CURVE key (Z85) when there is one, and the address."""
    def prop(name: str) -> str:
        try:
            return str(ident.get(name) or "")
        except (zmq.ZMQError, UnicodeDecodeError):
            return ""
    key = prop("User-Id")
    addr = prop("Peer-Address") or "?"
    return f"{addr} key={key}" if key and key != "anonymous" else addr


def verb_of(msg: list[bytes]) -> str:
    """The verb frame of a raw message, for the log ("?" when it has none)."""
    return bytes(msg[2][:16]).decode("ascii", "replace") if len(msg) > 2 else "?"
