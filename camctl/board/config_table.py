"""Reading one TOML table for the board config: key paths in every error, unknown keys refused.

:class:`Table` wraps a table, remembers its key path and the keys read (:meth:`Table.done`
refuses the rest); the checks raise :class:`~camctl.exc.ConfigError` naming the key.
"""

from __future__ import annotations

import re
from typing import Any

from camctl.exc import ConfigError

__all__ = ["Table", "check_name", "check_number", "kind", "missing"]

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")


class Table:
    """A view on one TOML table that remembers its key path and which keys were used."""

    def __init__(self, data: Any, key: str) -> None:
        if not isinstance(data, dict):
            raise ConfigError(f"must be a table, got {kind(data)}", key=key)
        self.data = data
        self.key = key
        self.used: set[str] = set()

    def path(self, name: str) -> str:
        return f"{self.key}.{name}" if self.key else name

    def get(self, name: str, default: Any = None) -> Any:
        self.used.add(name)
        return self.data.get(name, default)

    def has(self, name: str) -> bool:
        return name in self.data

    def str(self, name: str, default: str | None = None, *, choices: tuple[str, ...] = ()) -> str:
        value = self.get(name, default)
        if value is None:
            raise ConfigError("is required", key=self.path(name))
        if not isinstance(value, str):
            raise ConfigError(f"must be a string, got {kind(value)}", key=self.path(name))
        if choices and value not in choices:
            raise ConfigError(f"must be one of {', '.join(map(repr, choices))}, got {value!r}",
                              key=self.path(name))
        return value

    def num(self, name: str, default: float, *, lo: float | None = None, lo_open: bool = False,
            hi: float | None = None, integer: bool = False) -> Any:
        value = self.get(name, default)
        return check_number(value, self.path(name), lo=lo, lo_open=lo_open, hi=hi, integer=integer)

    def bool(self, name: str, default: bool) -> bool:
        value = self.get(name, default)
        if not isinstance(value, bool):
            raise ConfigError(f"must be true or false, got {kind(value)}", key=self.path(name))
        return value

    def table(self, name: str) -> Table:
        return Table(self.get(name, {}), self.path(name))

    def done(self) -> None:
        extra = sorted(set(self.data) - self.used)
        if extra:
            raise ConfigError("unknown key", key=self.path(extra[0]))


def kind(value: Any) -> str:
    """What a TOML value is, for messages (``an integer``, ``a table``)."""
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string",
            list: "an array", dict: "a table"}.get(type(value), type(value).__name__)


def check_number(value: Any, key: str, *, lo: float | None = None, lo_open: bool = False,
                 hi: float | None = None, integer: bool = False) -> Any:
    """``value`` as a float (an int if ``integer``), within ``lo``..``hi``."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"must be a number, got {kind(value)}", key=key)
    if integer and not (isinstance(value, int) or float(value).is_integer()):
        raise ConfigError(f"must be a whole number, got {value}", key=key)
    if lo is not None and (value <= lo if lo_open else value < lo):
        raise ConfigError(f"must be {'>' if lo_open else '>='} {lo:g}, got {value}", key=key)
    if hi is not None and value > hi:
        raise ConfigError(f"must be <= {hi:g}, got {value}", key=key)
    return int(value) if integer else float(value)


def check_name(value: Any, key: str) -> str:
    """``value`` if it is a name of letters, digits, ``_``, ``.``, ``-`` (at most 63)."""
    if not isinstance(value, str) or not _NAME_RE.match(value):
        raise ConfigError(f"must be a name of letters, digits, '_', '.', '-' (got {value!r})",
                          key=key)
    return value


def missing(key: str) -> Any:
    """Raise: ``key`` is required."""
    raise ConfigError("is required", key=key)
