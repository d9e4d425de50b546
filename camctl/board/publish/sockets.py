"""The publisher's sockets: ROUTER and PUB options, CURVE (server keys and the ZAP allow-list),
reading one request frame by frame, and naming a peer for the log."""

from __future__ import annotations

import contextlib
import logging
from typing import Any

import zmq

from camctl.common import protocol as p

__all__ = [
    "configure_pub", "configure_router", "peer_name", "recv_frames", "start_curve", "verb_of",
]

_PUB_HWM = 1000  # events queued for slow subscribers before PUB drops them


def configure_router(sock: zmq.Socket, window: int) -> None:
    """Options of the request socket: size limit, heartbeats, and per-peer queues of ``window``."""
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.MAXMSGSIZE, p.MAX_MESSAGE)
    # replies queued per peer: a client within its window never reaches this; a full queue makes
    # send raise (ROUTER_MANDATORY) instead of dropping the reply, and the peer's requests wait
    sock.setsockopt(zmq.SNDHWM, window + 8)
    sock.setsockopt(zmq.RCVHWM, p.MAX_WINDOW)
    sock.setsockopt(zmq.ROUTER_MANDATORY, 1)
    p.set_heartbeats(sock)


def configure_pub(sock: zmq.Socket) -> None:
    """Options of the event socket."""
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.SNDHWM, _PUB_HWM)


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
            sock.curve_secretkey = keys.secret
            sock.curve_publickey = keys.public
            sock.curve_server = True
    except BaseException:
        with contextlib.suppress(Exception):
            auth.stop()
        raise
    return auth, allow


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
