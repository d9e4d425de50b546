"""CURVE key folders for the retrieval protocol (``camctl keys DIR``).

Layout of a key folder (made by :func:`create_keys`, read by the board and by the ground station)::

    DIR/server.key          board public key   (give it to the ground station)
    DIR/server.key_secret   board key pair     (stays on the boards)
    DIR/client.key_secret   ground key pair    (stays on the ground station)
    DIR/client.key          ground public key
    DIR/clients/*.key       public keys of the ground stations a board accepts

Example::

    >>> paths = create_keys(tmp_dir)                         # doctest: +SKIP
    >>> curve = load_client_curve(tmp_dir)                   # for ground.Client(curve=...)
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import zmq.auth

from camctl.exc import ConfigError

__all__ = ["ClientCurve", "ServerCurve", "client_curve", "create_keys", "load_client_curve", "load_server_curve"]


@dataclass(frozen=True)
class ClientCurve:
    """What a ground-side DEALER needs: its own key pair and the board's public key (z85 bytes)."""

    public: bytes
    secret: bytes
    server_public: bytes


@dataclass(frozen=True)
class ServerCurve:
    """What a board needs: its key pair and the folder of allowed client public keys."""

    public: bytes
    secret: bytes
    clients_dir: Path


def create_keys(directory: str | Path, *, clients: int = 1, overwrite: bool = False) -> list[Path]:
    """Create a server and ``clients`` client key pairs in ``directory``, all allowed in ``clients/``.

    The first client pair is ``client.key(_secret)``, further ones ``client-2.key(_secret)``... Refuses
    (ConfigError) to overwrite existing keys unless ``overwrite``. Returns the files made.
    """
    if clients < 1:
        raise ConfigError(f"need at least one client key pair, got {clients}")
    d = Path(directory)
    if not overwrite and (d / "server.key_secret").exists():
        raise ConfigError(f"keys already exist in {str(d)!r} (pass overwrite to replace them)")
    (d / "clients").mkdir(parents=True, exist_ok=True)
    server_pub, server_sec = zmq.auth.create_certificates(d, "server")
    Path(server_sec).chmod(0o600)
    made = [Path(server_pub), Path(server_sec)]
    for i in range(1, clients + 1):
        name = "client" if i == 1 else f"client-{i}"
        client_pub, client_sec = zmq.auth.create_certificates(d, name)
        Path(client_sec).chmod(0o600)
        allowed = d / "clients" / f"{name}.key"
        shutil.copyfile(client_pub, allowed)
        made += [Path(client_pub), Path(client_sec), allowed]
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
    """Read a board's keys from a key folder (ConfigError naming the file when something is missing)."""
    d = Path(directory)
    public, secret = _load(d / "server.key_secret", secret=True)
    if not (d / "clients").is_dir():
        raise ConfigError(f"no allowed client keys: {str(d / 'clients')!r} is not a folder")
    assert secret is not None
    return ServerCurve(public=public, secret=secret, clients_dir=d / "clients")


def load_client_curve(directory: str | Path, *, server_key: str | Path | None = None) -> ClientCurve:
    """Read the ground station's keys (``client.key_secret``) and the board's public key."""
    d = Path(directory)
    public, secret = _load(d / "client.key_secret", secret=True)
    server_public, _ = _load(Path(server_key) if server_key else d / "server.key", secret=False)
    assert secret is not None
    return ClientCurve(public=public, secret=secret, server_public=server_public)


def client_curve(keys_dir: str | Path | None = None, server_key: str | Path | None = None) -> ClientCurve:
    """The CLI's view: ``--curve-keys DIR`` (client.key_secret, server.key) and/or ``--curve-server-key F``."""
    if keys_dir is None:
        if server_key is None:
            raise ConfigError("CURVE needs a key folder (--curve-keys DIR)")
        keys_dir = Path(server_key).parent
    return load_client_curve(keys_dir, server_key=server_key)
