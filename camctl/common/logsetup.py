"""How camctl logs, on the board and on the ground: one line per record, ``key=value`` text or JSON
lines (``--log-json``, for journald and log shippers). The daemon's publisher process sets up its
logging with the same call, so its lines look like the daemon's."""

from __future__ import annotations

import json
import logging
import re
import sys
from typing import Any

__all__ = ["JsonFormatter", "KeyValueFormatter", "setup_logging"]


class KeyValueFormatter(logging.Formatter):
    """``<time> level=<level> logger=<name> msg=<json string>``: for a terminal."""

    def format(self, record: logging.LogRecord) -> str:
        msg = record.getMessage()
        return f"{self.formatTime(record, '%Y-%m-%dT%H:%M:%S')} level={record.levelname.lower()} " \
               f"logger={record.name} msg={json.dumps(msg)}"


_RECORD_ATTRS = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}
_KV = re.compile(r"\b([a-z_]+)=([^\s,;()]+)")


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, msg, and the facts as fields of their own:
    whatever the call passed in ``extra=`` (event, phase, camera, flight, counts...) and every
    ``key=value`` in the text."""

    def format(self, record: logging.LogRecord) -> str:
        msg = record.getMessage()
        out: dict[str, Any] = {"ts": record.created, "level": record.levelname.lower(),
                               "logger": record.name}
        for key, value in _KV.findall(msg):
            out.setdefault(key, int(value) if value.isdigit() else value)
        for key, value in vars(record).items():
            if key not in _RECORD_ATTRS and not key.startswith("_"):
                plain = isinstance(value, str | int | float | bool | None)
                out[key] = value if plain else str(value)
        out["msg"] = msg
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out)


def setup_logging(level: str = "info", *, json_lines: bool = False, quiet: bool = False) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if json_lines else KeyValueFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING if quiet else getattr(logging, level.upper(), logging.INFO))
