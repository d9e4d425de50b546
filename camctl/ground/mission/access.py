"""Who the mission page is to the boards: its reading key and, for arm/disarm, the operator's key.

Two ways to turn operator actions on, one per kind of board:

* **CURVE on** (``--curve-keys DIR`` and/or ``--curve-server-key``): the page reads (STATUS, the PUB
  feed, the fetch) with the ground key ``DIR/client.key_secret``; arm/disarm appear only with
  ``--operator-key FILE``, the operator's secret key (``camctl keys`` makes
  ``ground/client.key_secret``, which every board lists in ``operators/``). COMMANDs are sent with
  that key, so the board decides: a key that is not in its ``operators/`` gets ``ERROR FORBIDDEN``,
  shown on the page. A bare ``--operator`` is refused here: with CURVE there is always a key to
  name.
* **CURVE off** (sim and bench boards, ``camctl demo``): there is no key; the board takes COMMAND
  from anyone who reaches it. ``--operator`` (an explicit switch) shows the buttons;
  ``--operator-key`` is refused here, since a key the board cannot check would only look like
  protection.

Example::

    curves = client_curves(Path("keys/ground"), urls)
    ops = operator_curves(Path("keys/ground/client.key_secret"), curves, urls)
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import zmq.auth

from camctl.common.keys import ClientCurve, curve_for
from camctl.exc import ConfigError

__all__ = ["operator_curves", "operator_mode"]


def operator_mode(*, operator: bool, operator_key: str | Path | None, curve: Any) -> bool:
    """Check the operator options against CURVE (module docstring); True when arm/disarm are on."""
    if operator and operator_key is not None:
        raise ConfigError("give --operator-key FILE (boards with CURVE) or --operator (boards "
                          "without), not both")
    if operator_key is not None and curve is None:
        raise ConfigError(f"--operator-key {str(operator_key)!r} is a CURVE key, but CURVE is off: "
                          "give the ground key folder too (--curve-keys DIR); for boards without "
                          "CURVE use --operator")
    if operator and curve is not None:
        raise ConfigError("with CURVE on, operator actions need the operator's secret key: "
                          "--operator-key FILE (e.g. the ground folder's client.key_secret); "
                          "--operator is for boards without CURVE")
    return operator or operator_key is not None


def _load_secret(path: Path) -> tuple[bytes, bytes]:
    try:
        public, secret = zmq.auth.load_certificate(path)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"--operator-key {str(path)!r}: cannot read it as a CURVE key: "
                          f"{exc}") from None
    if not secret:
        raise ConfigError(f"--operator-key {str(path)!r} holds no secret key (give the .key_secret "
                          "file, not the public .key)")
    return public, secret


def operator_curves(key_file: str | Path, curve: ClientCurve | Mapping[str, ClientCurve],
                    urls: list[str]) -> dict[str, ClientCurve]:
    """One :class:`ClientCurve` per board URL for COMMAND: the operator's key pair from
    ``key_file``, each board's server key from ``curve`` (the reading keys)."""
    public, secret = _load_secret(Path(key_file))
    out = {}
    for url in urls:
        c = curve_for(curve, url)
        if c is None:
            raise ConfigError(f"no CURVE server key for {url}")
        out[url] = ClientCurve(public=public, secret=secret, server_public=c.server_public)
    return out
