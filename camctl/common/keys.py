"""CURVE key folders for the retrieval protocol (``camctl keys DIR``) and the board's allow-lists.

:func:`create_keys` makes one folder per machine, so no secret travels to a machine that does not
use it: ``DIR/<board>`` (the board's pair, ``readers/`` and ``operators/`` public keys),
``DIR/ground`` (the operator station's pair and ``servers/<board>.key``) and, with ``clients=N``,
read-only ``DIR/ground-2``... Files are pyzmq certificates. :class:`AllowList` re-reads
``readers/`` and ``operators/`` when a file in them changes or on :meth:`AllowList.reload`
(SIGHUP). The layout file by file, and an example: docs/keys.md.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import zmq
import zmq.auth

from camctl.common.protocol import is_name
from camctl.exc import ConfigError

__all__ = ["AllowList", "ClientCurve", "ServerCurve", "client_curve", "client_curves",
           "create_keys", "curve_for", "ground_folder", "load_client_curve", "load_server_curve",
           "url_host", "use_curve"]

log = logging.getLogger("camctl.common.keys")
GROUND = "ground"


@dataclass(frozen=True)
class ClientCurve:
    """What a ground-side DEALER needs: its own key pair and the board's public key (z85 bytes)."""

    public: bytes
    secret: bytes
    server_public: bytes


def curve_for(curve: ClientCurve | Mapping[str, ClientCurve] | None,
              url: str) -> ClientCurve | None:
    """The keys to reach the board at ``url``: ``curve`` is one set for every board, one per board
    URL (each board has its own server key, see :func:`client_curves`), or None (CURVE off)."""
    return curve.get(url) if isinstance(curve, Mapping) else curve


def use_curve(sock: zmq.Socket, curve: ClientCurve | None) -> None:
    """Give ``sock`` the client keys for its next ``connect``.

    libzmq takes the options in force at each connect, so a socket connecting to several boards
    sets each board's keys before its connect."""
    if curve is not None:
        sock.curve_publickey = curve.public
        sock.curve_secretkey = curve.secret
        sock.curve_serverkey = curve.server_public


@dataclass(frozen=True)
class ServerCurve:
    """What a board needs: its key pair and the folders of allowed readers and operators."""

    public: bytes
    secret: bytes
    readers_dir: Path
    operators_dir: Path


def ground_folder(i: int) -> str:
    """Ground machine ``i``'s key folder: ``ground`` (the operator station), then ``ground-2``..."""
    return GROUND if i == 1 else f"{GROUND}-{i}"


def create_keys(directory: str | Path, *, boards: list[str] | tuple[str, ...] = ("board",),
                clients: int = 1, overwrite: bool = False) -> list[Path]:
    """Make one key folder per board and one per ground machine under ``directory`` (docs/keys.md).

    Ground machine 1 (``ground``) is a reader and an operator of every board; ``clients - 1`` more
    (``ground-2``...) are readers only (a second laptop that may watch and download but not arm).
    Each ground folder holds its own pair as ``client.key``/``client.key_secret`` and every board's
    public key, so it is used as it is (``--curve-keys DIR/ground-2``); the boards know pair ``i``
    as ``client-i.key``. Refuses (ConfigError) to overwrite existing keys unless ``overwrite``.
    Returns the files made.
    """
    if clients < 1:
        raise ConfigError(f"need at least one client key pair, got {clients}")
    names = list(boards)
    grounds = [ground_folder(i) for i in range(1, clients + 1)]
    for name in names:
        if not is_name(name) or re.fullmatch(rf"{GROUND}(-\d+)?", name):
            raise ConfigError(f"board name {name!r} cannot be a key folder name "
                              f"(letters, digits, '_.-'; not {GROUND} or {GROUND}-N)")
    if len(set(names)) != len(names) or not names:
        raise ConfigError(f"board names must be distinct and at least one, got {names}")
    d = Path(directory)
    if not overwrite:
        for sub in [*names, *grounds]:
            if (d / sub).exists():
                raise ConfigError(f"keys already exist in {str(d / sub)!r} "
                                  "(move that folder away first)")
    made: list[Path] = []
    pairs = []  # (name the boards know it by, public key file)
    for i, folder in enumerate(grounds, 1):
        (d / folder / "servers").mkdir(parents=True, exist_ok=True)
        pub, sec = (Path(x) for x in zmq.auth.create_certificates(d / folder, "client"))
        sec.chmod(0o600)
        pairs.append(("client" if i == 1 else f"client-{i}", pub))
        made += [pub, sec]
    for board in names:
        bdir = d / board
        for sub in ("readers", "operators"):
            (bdir / sub).mkdir(parents=True, exist_ok=True)
        pub, sec = (Path(x) for x in zmq.auth.create_certificates(bdir, "server"))
        sec.chmod(0o600)
        made += [pub, sec]
        for folder in grounds:
            known = d / folder / "servers" / f"{board}.key"
            shutil.copyfile(pub, known)
            made.append(known)
        for i, (name, cpub) in enumerate(pairs):
            for sub in ("readers", "operators") if i == 0 else ("readers",):
                allowed = bdir / sub / f"{name}.key"
                shutil.copyfile(cpub, allowed)
                made.append(allowed)
    return made


def _load(path: Path, *, secret: bool) -> tuple[bytes, bytes | None]:
    try:
        public, sec = zmq.auth.load_certificate(path)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read CURVE key {str(path)!r}: {exc}") from None
    if secret and not sec:
        raise ConfigError(f"{str(path)!r} holds no secret key")
    return public, sec


def load_server_curve(directory: str | Path) -> ServerCurve:
    """Read a board's key folder (ConfigError naming the file when something is missing).

    A folder from before the readers/operators split (``clients/``) is read as readers with no
    operators.
    """
    d = Path(directory)
    public, secret = _load(d / "server.key_secret", secret=True)
    split = (d / "readers").is_dir() or not (d / "clients").is_dir()
    readers = d / "readers" if split else d / "clients"
    if not readers.is_dir():
        raise ConfigError(f"no allowed reader keys: {str(readers)!r} is not a folder")
    assert secret is not None
    return ServerCurve(public=public, secret=secret, readers_dir=readers,
                       operators_dir=d / "operators")


def load_client_curve(directory: str | Path, *,
                      server_key: str | Path | None = None) -> ClientCurve:
    """Read the ground station's keys (``client.key_secret``) and one board's public key
    (``server_key``, else the only ``servers/*.key``, else ``server.key``)."""
    d = Path(directory)
    public, secret = _load(d / "client.key_secret", secret=True)
    if server_key is None:
        known = sorted((d / "servers").glob("*.key"))
        server_key = known[0] if len(known) == 1 else d / "server.key"
    server_public, _ = _load(Path(server_key), secret=False)
    assert secret is not None
    return ClientCurve(public=public, secret=secret, server_public=server_public)


def client_curve(keys_dir: str | Path | None = None,
                 server_key: str | Path | None = None) -> ClientCurve:
    """The CLI's view: ``--curve-keys DIR`` (client pair, server key), ``--curve-server-key F``."""
    if keys_dir is None:
        if server_key is None:
            raise ConfigError("CURVE needs a key folder (--curve-keys DIR)")
        keys_dir = Path(server_key).parent
    return load_client_curve(keys_dir, server_key=server_key)


def url_host(url: str) -> str:
    """The host of a ``tcp://HOST:PORT`` endpoint (IPv6 without brackets), "" for any other."""
    m = re.match(r"^tcp://\[?([^\]]+?)\]?:\d+$", url)
    return m.group(1) if m else ""


def client_curves(keys_dir: str | Path | None, urls: list[str],
                  server_keys: list[str] | None = None) -> dict[str, ClientCurve]:
    """One :class:`ClientCurve` per board URL: each board has its own server key.

    ``server_keys`` (``--curve-server-key``, repeatable): one for all URLs, or one per URL in order.
    Without them the key of ``tcp://HOST:PORT`` is ``servers/HOST.key``, else ``servers/<first label
    of HOST>.key`` (``rig-a.local`` -> ``rig-a``), else the folder's only server key. ConfigError
    names the URL and the files looked for.
    """
    keys = list(server_keys or [])
    if keys and len(keys) not in (1, len(urls)):
        raise ConfigError(f"--curve-server-key given {len(keys)} times for {len(urls)} boards: "
                          "give it once, or once per --connect in the same order")
    if keys:
        return {url: client_curve(keys_dir, keys[0] if len(keys) == 1 else keys[i])
                for i, url in enumerate(urls)}
    if keys_dir is None:
        raise ConfigError("CURVE needs a key folder (--curve-keys DIR)")
    d = Path(keys_dir)
    known = sorted((d / "servers").glob("*.key"))
    out: dict[str, ClientCurve] = {}
    for url in urls:
        host = url_host(url)
        tried = [d / "servers" / f"{h}.key" for h in dict.fromkeys([host, host.split(".")[0]]) if h]
        found = next((f for f in tried if f.is_file()), None)
        if found is None and len(known) == 1:
            found = known[0]
        if found is None and not known and (d / "server.key").is_file():
            found = d / "server.key"
        if found is None:
            looked = ", ".join(repr(str(f)) for f in tried) or repr(str(d / "servers"))
            raise ConfigError(f"no CURVE server key for {url}: looked for {looked} (or pass "
                              f"--curve-server-key once per --connect)")
        out[url] = load_client_curve(d, server_key=found)
    return out


class AllowList:
    """The public keys a board accepts (readers and operators), re-read when their folders change.

    ``allowed(z85)`` is the ZAP credentials callback (pyzmq ``configure_curve_callback``);
    ``is_operator`` gates COMMAND. Both first call :meth:`refresh`, which re-reads the folders when
    a file in them was added, removed or modified. Thread-safe.

    ``own``: the board's own public key, a reader (never an operator): whoever holds the board's
    secret key is the board already, and ``camctl doctor`` on the board reads the running daemon's
    STATUS with it.
    """

    def __init__(self, readers_dir: Path, operators_dir: Path, *, own: bytes | None = None) -> None:
        self.readers_dir = Path(readers_dir)
        self.operators_dir = Path(operators_dir)
        self.own = bytes(own) if own else None
        self._lock = threading.Lock()
        self._sig: tuple = ()
        self.readers: frozenset[bytes] = frozenset()
        self.operators: frozenset[bytes] = frozenset()
        self.loads = 0
        self.reload()

    def _signature(self) -> tuple:
        sig = []
        for d in (self.readers_dir, self.operators_dir):
            try:
                with os.scandir(d) as it:
                    for e in it:
                        if e.name.endswith(".key"):
                            st = e.stat()
                            sig.append((str(d), e.name, st.st_mtime_ns, st.st_size, st.st_ino))
            except OSError:
                sig.append((str(d), None))
        return tuple(sorted(sig, key=repr))

    @staticmethod
    def _read(d: Path) -> frozenset[bytes]:
        keys = set()
        for f in sorted(d.glob("*.key")) if d.is_dir() else []:
            try:
                public, _ = zmq.auth.load_certificate(f)
            except (OSError, ValueError) as exc:
                log.warning("ignoring unreadable CURVE key %s: %s", f, exc)
                continue
            if public:
                keys.add(bytes(public))
        return frozenset(keys)

    def reload(self) -> None:
        """Re-read both folders now (SIGHUP)."""
        with self._lock:
            sig = self._signature()
            self.readers = self._read(self.readers_dir)
            self.operators = self._read(self.operators_dir)
            self._sig = sig
            self.loads += 1
        log.info("CURVE allow-lists loaded: %d readers, %d operators (%s, %s)", len(self.readers),
                 len(self.operators), self.readers_dir, self.operators_dir)

    def refresh(self) -> None:
        """Reload when a key file was added, removed or changed since the last load."""
        if self._signature() != self._sig:
            self.reload()

    def allowed(self, z85_key: bytes) -> bool:
        self.refresh()
        key = bytes(z85_key)
        return key in self.readers or key in self.operators or key == self.own

    def is_operator(self, z85_key: bytes) -> bool:
        self.refresh()
        return bytes(z85_key) in self.operators

    def callback(self, domain: str, key: bytes) -> bool:
        """The ``configure_curve_callback`` credentials provider: called with the z85 client key."""
        return self.allowed(key)
