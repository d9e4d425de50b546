"""The wire messages of the camctl retrieval protocol (documented in ``docs/protocol.md``).

This module owns framing and validation only: one typed dataclass per message, each with its paired
``encode()`` (-> list of ZeroMQ frames) and ``decode(frames)`` next to each other, in the style of
python-mcap's records. It never touches a socket or a file. Every frame list looks like::

    [b"CAMCTL", b"\\x01", VERB, header-JSON (utf-8 object), *payload]

The header always carries ``"id"`` (the request id, echoed in the reply). Decoding raises
:class:`~camctl.exc.ProtocolError` whose ``code`` is one of the ``E_*`` codes below, never anything
else.

Example::

    >>> frames = Fetch(id=7, path="f1/down/000000.mcap", offset=0, length=4096).encode()
    >>> decode(frames) == Fetch(id=7, path="f1/down/000000.mcap", offset=0, length=4096)
    True
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar, Self

from camctl.exc import ProtocolError

__all__ = [
    "EVENT_RCVHWM",
    "E_BAD_FIELD",
    "E_BAD_HEADER",
    "E_BAD_MAGIC",
    "E_BAD_PATH",
    "E_BAD_VERSION",
    "E_BUSY",
    "E_FORBIDDEN",
    "E_INTERNAL",
    "E_NOT_FOUND",
    "E_NOT_SERVING",
    "E_OPEN_SEGMENT",
    "E_REFUSED",
    "E_TOO_LARGE",
    "E_UNKNOWN_VERB",
    "HEARTBEAT_IVL_MS",
    "HEARTBEAT_TIMEOUT_MS",
    "HEARTBEAT_TTL_MS",
    "MAGIC",
    "MAX_CHUNK",
    "MAX_EVENT_FRAME",
    "MAX_FILE_SIZE",
    "MAX_FRAMES",
    "MAX_MESSAGE",
    "MAX_PREVIEWS",
    "MAX_PREVIEW_BYTES",
    "MAX_REPLY_FRAME",
    "MAX_REQUEST_ID",
    "MAX_THUMBS_PAGE_BYTES",
    "MAX_THUMB_JOBS",
    "MAX_WINDOW",
    "MAX_WINDOW_BYTES",
    "PROTOCOL_VERSION",
    "REQUESTS",
    "SEGMENT_KINDS",
    "SEGMENT_SAMPLES",
    "TOPICS",
    "Chunk",
    "Command",
    "Done",
    "Error",
    "Fetch",
    "Hello",
    "List",
    "Listing",
    "Message",
    "Ping",
    "Pong",
    "SegmentInfo",
    "State",
    "Status",
    "ThumbInfo",
    "Thumbnails",
    "Thumbs",
    "Welcome",
    "bound_events",
    "check_relpath",
    "decode",
    "is_name",
    "peek_id",
    "printable",
    "set_heartbeats",
]

MAGIC = b"CAMCTL"
PROTOCOL_VERSION = 1
SEGMENT_SAMPLES = "samples"  # a LISTING entry of a sensor's segment (SegmentInfo, List.kinds)
SEGMENT_KINDS = ("segment", "events", "meta", SEGMENT_SAMPLES)
# ZMQ_MAXMSGSIZE on the board's ROUTER: a bigger inbound frame drops the peer. Requests are a few
# KiB at most; libzmq holds a whole multipart message before handing it over, so with MAX_FRAMES
# this bounds what one hostile message costs the board before it is refused (frames x 16 KiB).
MAX_MESSAGE = 16 << 10
MAX_CHUNK = 4 << 20  # the largest FETCH length any board accepts (its own limit is chunk_kb * 1024)
MAX_REQUEST_ID = (1 << 53) - 1  # ids are JSON integers: keep them exact in every JSON library
MAX_PATH = 1024
# frames in one inbound message (requests have 4); more is answered TOO_LARGE, never held
MAX_FRAMES = 8
MAX_WINDOW = 64  # requests one client may have outstanding (WELCOME.window may say fewer)
# FETCH bytes one client may have outstanding: window <= this // chunk_max
MAX_WINDOW_BYTES = 16 << 20
MAX_THUMB_JOBS = 4  # segments one client may have waiting for previews; more is answered BUSY
# What the ground accepts from a board (docs/protocol.md, "Limits of replies"):
# ZMQ_MAXMSGSIZE on the client's DEALER. libzmq checks it per frame, from the frame's length header
# before the frame is allocated, and drops the connection past it (libzmq 4.3 src/v2_decoder.cpp
# size_ready(): EMSGSIZE; zmq_setsockopt(3) ZMQ_MAXMSGSIZE). The largest honest frame is a CHUNK
# payload (MAX_CHUNK); headers (a LISTING of every flight included) get 64 KiB more.
MAX_REPLY_FRAME = MAX_CHUNK + (64 << 10)
# JPEG payload bytes of one THUMBNAILS page: a board ends a page before the preview that would pass
# it (``more`` true); the ground refuses a bigger page. A 640-wide preview is far below it.
MAX_THUMBS_PAGE_BYTES = 4 << 20
# previews (count / JPEG bytes) the ground takes in one THUMBS answer, all pages together; per
# segment the count is also held to the frames its LISTING entry has (one preview per frame at most)
MAX_PREVIEWS = 100_000
MAX_PREVIEW_BYTES = 256 << 20
# the largest file a LISTING may name (1 TiB): a bigger ``size`` is an unsafe entry, skipped
MAX_FILE_SIZE = 1 << 40
# a PUB event frame on a ground SUB (a status of a few KiB is the largest honest one), and the
# events a SUB holds unread: so a board's PUB costs the ground at most about 64 MiB
MAX_EVENT_FRAME = 256 << 10
EVENT_RCVHWM = 256
TOPICS = ("phase", "fault", "status", "disk", "event")
# ZMTP heartbeats on both ends (set_heartbeats): a peer silent for HEARTBEAT_TIMEOUT_MS is dropped
HEARTBEAT_IVL_MS = 1000
HEARTBEAT_TIMEOUT_MS = 5000
HEARTBEAT_TTL_MS = 10000

# Error codes (ERROR.code)
E_BAD_MAGIC = "BAD_MAGIC"
E_BAD_VERSION = "BAD_VERSION"
E_UNKNOWN_VERB = "UNKNOWN_VERB"
E_BAD_HEADER = "BAD_HEADER"
E_BAD_FIELD = "BAD_FIELD"
E_TOO_LARGE = "TOO_LARGE"
E_BAD_PATH = "BAD_PATH"
E_NOT_FOUND = "NOT_FOUND"
E_OPEN_SEGMENT = "OPEN_SEGMENT"
E_NOT_SERVING = "NOT_SERVING"
E_REFUSED = "REFUSED"
E_FORBIDDEN = "FORBIDDEN"
E_BUSY = "BUSY"
E_INTERNAL = "INTERNAL"

_VERSION_FRAME = bytes([PROTOCOL_VERSION])
_MISSING: Any = object()
# always with fullmatch: ``$`` would also match before a final "\\n" (a name "f1\\n" passed)
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")
# a board id (WELCOME ``board_id``): what camctl.board.identity makes, a uuid4 in hex
_BOARD_ID_RE = re.compile(r"[0-9a-f]{8,64}")
# what printable() escapes: C0/C1 controls, DEL, and the format characters (bidi overrides...)
_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f-\x9f\u00ad\u061c\u200b-\u200f\u2028-\u202e"
                          r"\u2060-\u206f\ufeff\ufff9-\ufffb]")


# --- field helpers --------------------------------------------------------------------------------
def _get(h: dict, name: str, kind: type | tuple[type, ...], default: Any = _MISSING, *,
         lo: int | None = None, hi: int | None = None, max_len: int | None = None) -> Any:
    """One validated header field; raise ProtocolError(BAD_FIELD) naming the field and value."""
    if name not in h or h[name] is None:
        if default is _MISSING:
            raise ProtocolError(E_BAD_FIELD, f"missing field {name!r}")
        return default
    value = h[name]
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if isinstance(value, bool) and bool not in kinds:
        raise ProtocolError(E_BAD_FIELD, f"field {name!r} must be {_kname(kinds)}, got {value!r}")
    if not isinstance(value, kinds):
        raise ProtocolError(E_BAD_FIELD,
                            f"field {name!r} must be {_kname(kinds)}, got {_short(value)}")
    if isinstance(value, int) and not isinstance(value, bool):
        if lo is not None and value < lo:
            raise ProtocolError(E_BAD_FIELD, f"field {name!r} must be >= {lo}, got {value}")
        if hi is not None and value > hi:
            raise ProtocolError(E_TOO_LARGE, f"field {name!r} must be <= {hi}, got {value}")
    if max_len is not None and isinstance(value, str | list | dict) and len(value) > max_len:
        raise ProtocolError(E_TOO_LARGE, f"field {name!r} longer than {max_len} ({len(value)})")
    return value


def _kname(kinds: tuple[type, ...]) -> str:
    return " or ".join({int: "an integer", str: "a string", bool: "a boolean", list: "a list",
                        dict: "an object", float: "a number"}.get(k, k.__name__) for k in kinds)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _name_field(h: dict, name: str, default: Any = _MISSING) -> Any:
    value = _get(h, name, str, default, max_len=63)
    if value is not None and value is not default and not _NAME_RE.fullmatch(value):
        raise ProtocolError(E_BAD_FIELD, f"field {name!r} is not a name: {_short(value)}")
    return value


def is_name(value: Any) -> bool:
    """True for a board, flight or camera name, one safe as a folder name.

    The pattern: ``[A-Za-z0-9][A-Za-z0-9_.-]{0,62}``."""
    return isinstance(value, str) and _NAME_RE.fullmatch(value) is not None


def printable(text: Any, limit: int = 400) -> str:
    """Board text made safe for a terminal: control and format characters (escape codes, carriage
    returns, bidi overrides) shown as ``\\xNN`` / ``\\uNNNN``, cut to ``limit`` characters."""
    text = str(text)
    if len(text) > limit:
        text = text[:limit] + "..."
    return _UNPRINTABLE.sub(lambda m: (f"\\x{ord(m[0]):02x}" if ord(m[0]) < 0x100
                                       else f"\\u{ord(m[0]):04x}"), text)


def check_relpath(path: str) -> str:
    """Validate a store-relative path's *form* (the board also resolves it against its store root).

    Rejects empty, absolute, backslash, NUL, ``.``/``..`` components and over-long paths with
    ProtocolError(BAD_PATH). Returns the path unchanged.
    """
    if not isinstance(path, str) or not path:
        raise ProtocolError(E_BAD_PATH, f"path must be a non-empty string, got {_short(path)}")
    if len(path) > MAX_PATH:
        raise ProtocolError(E_BAD_PATH, f"path longer than {MAX_PATH} characters ({len(path)})")
    if "\x00" in path or "\\" in path:
        raise ProtocolError(E_BAD_PATH, f"path has a NUL or backslash: {_short(path)}")
    if _UNPRINTABLE.search(path):
        raise ProtocolError(E_BAD_PATH, f"path has a control character: {_short(path)}")
    if path.startswith("/"):
        raise ProtocolError(E_BAD_PATH, f"path must be relative to the store root: {_short(path)}")
    for part in path.split("/"):
        if part in ("", ".", ".."):
            raise ProtocolError(E_BAD_PATH,
                                f"path has an empty, '.' or '..' component: {_short(path)}")
    return path


def set_heartbeats(sock: Any) -> None:
    """ZMTP heartbeats on a ZeroMQ socket so a dead peer is noticed (both sides of the protocol call
    this; the only socket this module touches, and only its options)."""
    import zmq

    sock.setsockopt(zmq.HEARTBEAT_IVL, HEARTBEAT_IVL_MS)
    sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, HEARTBEAT_TIMEOUT_MS)
    sock.setsockopt(zmq.HEARTBEAT_TTL, HEARTBEAT_TTL_MS)


def bound_events(sock: Any) -> None:
    """A ground SUB's bounds (before it connects): frames over MAX_EVENT_FRAME drop the link
    (ZMQ_MAXMSGSIZE, checked per frame by libzmq), at most EVENT_RCVHWM events held unread (a SUB
    drops further ones: zmq_socket(3), ZMQ_SUB "Action in mute state: Drop")."""
    import zmq

    sock.setsockopt(zmq.MAXMSGSIZE, MAX_EVENT_FRAME)
    sock.setsockopt(zmq.RCVHWM, EVENT_RCVHWM)


def _frames(verb: bytes, header: dict, payload: tuple[bytes, ...] = ()) -> list[bytes]:
    body = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    return [MAGIC, _VERSION_FRAME, verb, body, *payload]


def _split(frames: list[bytes]) -> tuple[bytes, dict, list[bytes]]:
    """Check magic/version, parse the header; return (verb, header, payload)."""
    if len(frames) < 4:
        raise ProtocolError(E_BAD_HEADER, f"a message has at least 4 frames, got {len(frames)}")
    magic, version, verb, raw = (bytes(f) for f in frames[:4])
    if magic != MAGIC:
        raise ProtocolError(E_BAD_MAGIC, f"first frame must be {MAGIC!r}, got {_short(magic)}")
    if version != _VERSION_FRAME:
        raise ProtocolError(E_BAD_VERSION,
                            f"protocol version {version.hex() or 'empty'} is not supported "
                            f"(this side speaks {PROTOCOL_VERSION})")
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ProtocolError(E_BAD_HEADER, f"header is not UTF-8 JSON: {exc}") from None
    if not isinstance(header, dict):
        raise ProtocolError(E_BAD_HEADER, f"header must be a JSON object, got {_short(header)}")
    # payloads as given: each message converts (or keeps) its own
    return verb, header, list(frames[4:])


def _view(frame: Any) -> bytes | memoryview:
    """bytes as they are; anything else with the buffer protocol as a memoryview, no copy."""
    if isinstance(frame, bytes | memoryview):
        return frame
    try:
        return memoryview(frame).cast("B")
    except TypeError:
        return bytes(frame)


def _bytes(payload: list[Any]) -> list[bytes]:
    return [f if isinstance(f, bytes) else bytes(f) for f in payload]


def peek_id(frames: list[bytes]) -> int:
    """Best-effort request id of a (maybe malformed) message, 0 if none; never raises."""
    try:
        header = json.loads(bytes(frames[3]).decode("utf-8"))
        rid = header.get("id") if isinstance(header, dict) else None
        if isinstance(rid, int) and not isinstance(rid, bool) and 0 <= rid <= MAX_REQUEST_ID:
            return rid
    except Exception:
        pass
    return 0


class Message:
    """Base of every wire message: ``VERB`` names it, ``id`` is the request id."""

    VERB: ClassVar[bytes] = b""
    id: int

    def encode(self) -> list[bytes]:  # pragma: no cover - every subclass overrides
        raise NotImplementedError

    @classmethod
    def decode(cls, frames: list[bytes]) -> Message:
        verb, header, payload = _split(frames)
        if verb != cls.VERB:
            raise ProtocolError(E_UNKNOWN_VERB, f"expected {cls.VERB!r}, got {_short(verb)}")
        return cls._from(header, payload)

    @classmethod
    def _from(cls, h: dict, payload: list[bytes]) -> Message:  # pragma: no cover
        raise NotImplementedError

    @staticmethod
    def _id(h: dict) -> int:
        return _get(h, "id", int, lo=0, hi=MAX_REQUEST_ID)

    @staticmethod
    def _no_payload(payload: list[Any], verb: bytes) -> None:
        if payload:
            raise ProtocolError(E_BAD_FIELD,
                                f"{verb.decode()} takes no payload frames, got {len(payload)}")


@dataclass
class _IdOnly(Message):
    """A message that carries nothing but its id (STATUS, PING)."""

    id: int

    def encode(self) -> list[bytes]:
        return _frames(self.VERB, {"id": self.id})

    @classmethod
    def _from(cls, h: dict, payload: list[bytes]) -> Self:
        cls._no_payload(payload, cls.VERB)
        return cls(id=cls._id(h))


# --- requests -------------------------------------------------------------------------------------
@dataclass
class Hello(Message):
    """Client -> board: first message; ``version`` is the client's protocol version."""

    VERB: ClassVar[bytes] = b"HELLO"
    id: int
    version: int = PROTOCOL_VERSION
    client: str = ""

    def encode(self) -> list[bytes]:
        return _frames(self.VERB, {"id": self.id, "version": self.version, "client": self.client})

    @classmethod
    def _from(cls, h: dict, payload: list[bytes]) -> Hello:
        cls._no_payload(payload, cls.VERB)
        return cls(id=cls._id(h), version=_get(h, "version", int, lo=0, hi=255),
                   client=_get(h, "client", str, "", max_len=200))


@dataclass
class List(Message):
    """Client -> board: list finished segments of one flight, or of all (``flight`` None).

    ``kinds``: the segment kinds beyond the first three (``samples``) the client takes; absent
    from an older client's LIST (and ignored by an older board, which reads only the fields it
    knows), so each side keeps working with the other."""

    VERB: ClassVar[bytes] = b"LIST"
    id: int
    flight: str | None = None
    kinds: tuple[str, ...] = ()

    def encode(self) -> list[bytes]:
        h: dict[str, Any] = {"id": self.id, "flight": self.flight}
        if self.kinds:
            h["kinds"] = list(self.kinds)
        return _frames(self.VERB, h)

    @classmethod
    def _from(cls, h: dict, payload: list[bytes]) -> List:
        cls._no_payload(payload, cls.VERB)
        kinds = _get(h, "kinds", list, [], max_len=16)
        # a kind this side does not know is not asked for: left out, never an error
        return cls(id=cls._id(h), flight=_name_field(h, "flight", None),
                   kinds=tuple(k for k in kinds if isinstance(k, str) and k in SEGMENT_KINDS))


@dataclass
class Fetch(Message):
    """Client -> board: ``length`` bytes of ``path`` from ``offset``; answered by one CHUNK."""

    VERB: ClassVar[bytes] = b"FETCH"
    id: int
    path: str
    offset: int
    length: int

    def encode(self) -> list[bytes]:
        return _frames(self.VERB, {"id": self.id, "path": self.path, "offset": self.offset,
                                   "length": self.length})

    @classmethod
    def _from(cls, h: dict, payload: list[bytes]) -> Fetch:
        cls._no_payload(payload, cls.VERB)
        rid = cls._id(h)
        path = check_relpath(_get(h, "path", str))
        return cls(id=rid, path=path, offset=_get(h, "offset", int, lo=0, hi=(1 << 62)),
                   length=_get(h, "length", int, lo=0, hi=MAX_CHUNK))


@dataclass
class Thumbs(Message):
    """Client -> board: previews of every ``every``-th frame of a flight, camera or segment.

    Paged: at most ``limit`` thumbnails from the ``skip``-th on; the reply says whether ``more``
    follow.
    """

    VERB: ClassVar[bytes] = b"THUMBS"
    id: int
    flight: str
    camera: str | None = None
    segment: str | None = None
    every: int = 0  # 0: the board's default (publish.thumbs_every)
    width: int = 160
    skip: int = 0
    limit: int = 64

    def encode(self) -> list[bytes]:
        return _frames(self.VERB, {"id": self.id, "flight": self.flight, "camera": self.camera,
                                   "segment": self.segment, "every": self.every,
                                   "width": self.width, "skip": self.skip, "limit": self.limit})

    @classmethod
    def _from(cls, h: dict, payload: list[bytes]) -> Thumbs:
        cls._no_payload(payload, cls.VERB)
        rid = cls._id(h)
        seg = _get(h, "segment", str, None)
        return cls(id=rid, flight=_name_field(h, "flight"), camera=_name_field(h, "camera", None),
                   segment=None if seg is None else check_relpath(seg),
                   every=_get(h, "every", int, 0, lo=0, hi=100_000),
                   width=_get(h, "width", int, 160, lo=16, hi=640),
                   skip=_get(h, "skip", int, 0, lo=0, hi=10_000_000),
                   limit=_get(h, "limit", int, 64, lo=1, hi=256))


@dataclass
class Status(_IdOnly):
    """Client -> board: the board's status JSON."""

    VERB: ClassVar[bytes] = b"STATUS"


@dataclass
class Command(Message):
    """Client -> board: an operator command (``arm``, ``disarm``, ``event``; ``scene`` on a sim
    board) with its arguments."""

    VERB: ClassVar[bytes] = b"COMMAND"
    NAMES: ClassVar[tuple[str, ...]] = ("arm", "disarm", "event", "scene")
    id: int
    name: str
    args: dict = field(default_factory=dict)

    def encode(self) -> list[bytes]:
        return _frames(self.VERB, {"id": self.id, "name": self.name, "args": self.args})

    @classmethod
    def _from(cls, h: dict, payload: list[bytes]) -> Command:
        cls._no_payload(payload, cls.VERB)
        rid = cls._id(h)
        name = _get(h, "name", str, max_len=32)
        if name not in cls.NAMES:
            known = ", ".join(cls.NAMES)
            raise ProtocolError(E_BAD_FIELD, f"unknown command {_short(name)} (known: {known})")
        args = _get(h, "args", dict, {}, max_len=16)
        for key, value in args.items():
            if len(key) > 64:
                raise ProtocolError(E_BAD_FIELD,
                                    f"command argument name longer than 64: {_short(key)}")
            if not isinstance(value, str | int | float | bool) or (
                    isinstance(value, str) and len(value) > 200):
                raise ProtocolError(E_BAD_FIELD, f"command argument {_short(key)} has a bad value "
                                                 f"{_short(value)}")
        return cls(id=rid, name=name, args=args)


@dataclass
class Ping(_IdOnly):
    """Client -> board: liveness check."""

    VERB: ClassVar[bytes] = b"PING"


# --- replies --------------------------------------------------------------------------------------
@dataclass
class Welcome(Message):
    """Board -> client: HELLO reply."""

    VERB: ClassVar[bytes] = b"WELCOME"
    id: int
    version: int
    board: str
    flights: list[str]
    serving: bool
    mono_ns: int
    wall_ns: int
    chunk_max: int
    # requests this client may have outstanding (absent in old boards: MAX_WINDOW)
    window: int = MAX_WINDOW
    # made once at the board's first boot (camctl.board.identity); "" from older boards
    board_id: str = ""

    def encode(self) -> list[bytes]:
        h = {"id": self.id, "version": self.version, "board": self.board,
             "flights": self.flights, "serving": self.serving, "mono_ns": self.mono_ns,
             "wall_ns": self.wall_ns, "chunk_max": self.chunk_max, "window": self.window}
        if self.board_id:
            h["board_id"] = self.board_id
        return _frames(self.VERB, h)

    @classmethod
    def _from(cls, h: dict, payload: list[bytes]) -> Welcome:
        cls._no_payload(payload, cls.VERB)
        flights = _get(h, "flights", list)
        if not all(isinstance(f, str) for f in flights):
            raise ProtocolError(E_BAD_FIELD, "field 'flights' must be a list of strings")
        return cls(id=cls._id(h), version=_get(h, "version", int), board=_get(h, "board", str),
                   flights=flights, serving=_get(h, "serving", bool),
                   mono_ns=_get(h, "mono_ns", int),
                   wall_ns=_get(h, "wall_ns", int), chunk_max=_get(h, "chunk_max", int, lo=1),
                   window=_get(h, "window", int, MAX_WINDOW, lo=1, hi=MAX_WINDOW),
                   board_id=_board_id(h))


def _board_id(h: dict) -> str:
    value = _get(h, "board_id", str, "", max_len=64)
    if value and not _BOARD_ID_RE.fullmatch(value):
        raise ProtocolError(E_BAD_FIELD, f"field 'board_id' is not 8..64 lowercase hex digits: "
                                         f"{_short(value)}")
    return value


@dataclass
class SegmentInfo:
    """One servable file in a LISTING. ``kind``: ``segment`` (camera), ``events`` (event log),
    ``meta`` (flight.json / index.json) or ``samples`` (a sensor's segment: ``camera`` names the
    sensor, ``samples`` counts its samples, times are theirs). Times are the frames' monotonic ns;
    ``value`` the highest FrameValue.

    ``samples`` is listed only to a client whose LIST says it takes that kind (:class:`List`'s
    ``kinds``): a ground from before it rejects an unknown kind, so to such a client a board lists
    a sensor's segment as a ``segment`` with no frames, as boards did before the kind existed."""

    path: str
    size: int
    sha256: str
    flight: str
    camera: str
    kind: str = "segment"
    frames: int = 0
    first_ns: int = 0
    last_ns: int = 0
    value: int = 0
    samples: int = 0

    def to_json(self) -> dict:
        d = asdict(self)
        if not self.samples and self.kind != SEGMENT_SAMPLES:
            del d["samples"]  # a camera's, the event log's, a meta file's entry: as before
        return d

    @classmethod
    def from_json(cls, d: Any) -> SegmentInfo:
        if not isinstance(d, dict):
            raise ProtocolError(E_BAD_FIELD, f"segment entry must be an object, got {_short(d)}")
        sha = _get(d, "sha256", str)
        if not re.fullmatch(r"[0-9a-f]{64}", sha):
            raise ProtocolError(E_BAD_FIELD,
                                f"sha256 must be 64 lowercase hex digits, got {_short(sha)}")
        kind = _get(d, "kind", str, "segment")
        if kind not in SEGMENT_KINDS:
            raise ProtocolError(E_BAD_FIELD, f"unknown segment kind {_short(kind)}")
        return cls(path=check_relpath(_get(d, "path", str)),
                   size=_get(d, "size", int, lo=0, hi=MAX_FILE_SIZE),
                   sha256=sha,
                   flight=_name_field(d, "flight"), camera=_get(d, "camera", str, ""), kind=kind,
                   frames=_get(d, "frames", int, 0, lo=0), first_ns=_get(d, "first_ns", int, 0),
                   last_ns=_get(d, "last_ns", int, 0), value=_get(d, "value", int, 0),
                   samples=_get(d, "samples", int, 0, lo=0))


@dataclass
class Listing(Message):
    """Board -> client: LIST reply. Decoding keeps every valid entry: one that is not (a bad name,
    path, checksum or size) is left out and described in ``rejected``, never the whole listing."""

    VERB: ClassVar[bytes] = b"LISTING"
    id: int
    board: str
    segments: list[SegmentInfo]
    rejected: list[str] = field(default_factory=list, compare=False)

    def encode(self) -> list[bytes]:
        return _frames(self.VERB, {"id": self.id, "board": self.board,
                                   "segments": [s.to_json() for s in self.segments]})

    @classmethod
    def _from(cls, h: dict, payload: list[bytes]) -> Listing:
        cls._no_payload(payload, cls.VERB)
        segments: list[SegmentInfo] = []
        rejected: list[str] = []
        for d in _get(h, "segments", list):
            try:
                segments.append(SegmentInfo.from_json(d))
            except ProtocolError as exc:
                path = d.get("path") if isinstance(d, dict) else None
                rejected.append(f"{_short(path) if path is not None else _short(d)}: {exc}")
        return cls(id=cls._id(h), board=_get(h, "board", str), segments=segments,
                   rejected=rejected)


@dataclass
class Chunk(Message):
    """Board -> client: FETCH reply, ``data`` the payload; shorter than asked is end of file.

    Decoded ``data`` is bytes, or a memoryview when the frames were received with ``copy=False``
    (zero-copy: CHUNK payloads are the bulk of the traffic and are only written and hashed).
    """

    VERB: ClassVar[bytes] = b"CHUNK"
    id: int
    path: str
    offset: int
    data: bytes | memoryview

    def encode(self) -> list[bytes]:
        return _frames(self.VERB, {"id": self.id, "path": self.path, "offset": self.offset,
                                   "size": len(self.data)}, (self.data,))

    @classmethod
    def _from(cls, h: dict, payload: list[bytes]) -> Chunk:
        if len(payload) != 1:
            raise ProtocolError(E_BAD_FIELD, f"CHUNK has one payload frame, got {len(payload)}")
        size = _get(h, "size", int, lo=0)
        payload = [_view(payload[0])]
        if size != len(payload[0]):
            raise ProtocolError(E_BAD_FIELD,
                                f"CHUNK size {size} but payload has {len(payload[0])} bytes")
        return cls(id=cls._id(h), path=_get(h, "path", str), offset=_get(h, "offset", int, lo=0),
                   data=payload[0])


@dataclass
class ThumbInfo:
    """One preview in THUMBNAILS: its frame (camera, segment, seq, timestamp_ns, phase), size, and
    the run of the daemon in the flight that captured it (``timestamp_ns`` is on that run's clock;
    0, or absent from an older board: the run that opened the flight); ``still`` for a still and
    ``event``, the event it was taken for (both absent from an older board)."""

    camera: str
    segment: str
    seq: int
    timestamp_ns: int
    phase: str
    width: int
    height: int
    run: int = 0
    still: bool = False
    event: str = ""

    @classmethod
    def from_json(cls, d: Any) -> ThumbInfo:
        if not isinstance(d, dict):
            raise ProtocolError(E_BAD_FIELD, f"thumb entry must be an object, got {_short(d)}")
        return cls(camera=_get(d, "camera", str), segment=check_relpath(_get(d, "segment", str)),
                   seq=_get(d, "seq", int), timestamp_ns=_get(d, "timestamp_ns", int),
                   phase=_get(d, "phase", str, ""), width=_get(d, "width", int, lo=0),
                   height=_get(d, "height", int, lo=0), run=_get(d, "run", int, 0, lo=0),
                   still=_get(d, "still", bool, False),
                   event=_get(d, "event", str, "", max_len=64))


@dataclass
class Thumbnails(Message):
    """Board -> client: THUMBS reply; one JPEG payload frame per entry of ``thumbs``, in order."""

    VERB: ClassVar[bytes] = b"THUMBNAILS"
    id: int
    flight: str
    thumbs: list[ThumbInfo]
    jpegs: list[bytes]
    more: bool = False
    # > 0: previews further on are still being made; ask again (skip += got) after this
    retry_ms: int = 0

    def encode(self) -> list[bytes]:
        return _frames(self.VERB, {"id": self.id, "flight": self.flight, "more": self.more,
                                   "retry_ms": self.retry_ms,
                                   "thumbs": [asdict(t) for t in self.thumbs]},
                       tuple(self.jpegs))

    @classmethod
    def _from(cls, h: dict, payload: list[bytes]) -> Thumbnails:
        thumbs = [ThumbInfo.from_json(d) for d in _get(h, "thumbs", list)]
        if len(thumbs) != len(payload):
            raise ProtocolError(E_BAD_FIELD,
                                f"THUMBNAILS lists {len(thumbs)} thumbs but has {len(payload)} "
                                "payload frames")
        return cls(id=cls._id(h), flight=_get(h, "flight", str), thumbs=thumbs,
                   jpegs=_bytes(payload), more=_get(h, "more", bool, False),
                   retry_ms=_get(h, "retry_ms", int, 0, lo=0, hi=60_000))


@dataclass
class State(Message):
    """Board -> client: STATUS reply, the status JSON object of DESIGN.md."""

    VERB: ClassVar[bytes] = b"STATE"
    id: int
    status: dict

    def encode(self) -> list[bytes]:
        return _frames(self.VERB, {"id": self.id, "status": self.status})

    @classmethod
    def _from(cls, h: dict, payload: list[bytes]) -> State:
        cls._no_payload(payload, cls.VERB)
        return cls(id=cls._id(h), status=_get(h, "status", dict))


@dataclass
class Done(Message):
    """Board -> client: COMMAND reply with the command's result object."""

    VERB: ClassVar[bytes] = b"DONE"
    id: int
    result: dict = field(default_factory=dict)

    def encode(self) -> list[bytes]:
        return _frames(self.VERB, {"id": self.id, "result": self.result})

    @classmethod
    def _from(cls, h: dict, payload: list[bytes]) -> Done:
        cls._no_payload(payload, cls.VERB)
        return cls(id=cls._id(h), result=_get(h, "result", dict, {}))


@dataclass
class Pong(Message):
    """Board -> client: PING reply with the board's monotonic clock."""

    VERB: ClassVar[bytes] = b"PONG"
    id: int
    mono_ns: int = 0

    def encode(self) -> list[bytes]:
        return _frames(self.VERB, {"id": self.id, "mono_ns": self.mono_ns})

    @classmethod
    def _from(cls, h: dict, payload: list[bytes]) -> Pong:
        cls._no_payload(payload, cls.VERB)
        return cls(id=cls._id(h), mono_ns=_get(h, "mono_ns", int, 0))


@dataclass
class Error(Message):
    """Board -> client: request ``id`` failed with ``code`` (an ``E_*`` constant), a message."""

    VERB: ClassVar[bytes] = b"ERROR"
    id: int
    code: str
    message: str
    # BUSY: ask again after about this many ms (0 or absent: the client backs off on its own)
    retry_ms: int = 0

    def encode(self) -> list[bytes]:
        h = {"id": self.id, "code": self.code, "message": self.message}
        if self.retry_ms:
            h["retry_ms"] = self.retry_ms
        return _frames(self.VERB, h)

    @classmethod
    def _from(cls, h: dict, payload: list[bytes]) -> Error:
        cls._no_payload(payload, cls.VERB)
        return cls(id=cls._id(h), code=_get(h, "code", str), message=_get(h, "message", str, ""),
                   retry_ms=_get(h, "retry_ms", int, 0, lo=0, hi=60_000))


REQUESTS: dict[bytes, type[Message]] = {
    c.VERB: c for c in (Hello, List, Fetch, Thumbs, Status, Command, Ping)}
REPLIES: dict[bytes, type[Message]] = {
    c.VERB: c for c in (Welcome, Listing, Chunk, Thumbnails, State, Done, Pong, Error)}
_ALL = {**REQUESTS, **REPLIES}


def decode(frames: list[bytes], *, allowed: dict[bytes, type[Message]] | None = None) -> Message:
    """Decode any message (or only the verbs in ``allowed``); ProtocolError on anything wrong."""
    verb, header, payload = _split(frames)
    cls = (allowed if allowed is not None else _ALL).get(verb)
    if cls is None:
        raise ProtocolError(E_UNKNOWN_VERB, f"unknown verb {_short(verb)}")
    return cls._from(header, payload)
