"""Live board status for the ground: STATUS polls, the boards' PUB broadcasts, one record shape.

Owns the STATUS record's fields (:data:`STATUS_FIELDS`, DESIGN.md's ``camctl status --json``) and
their defaults, the poll of many boards, the subscriber to their ``status``/``phase``/``fault``
broadcasts and the rule that finds a board's PUB endpoint (:func:`events_endpoint`).
:mod:`camctl.ground.views` prints these; :mod:`camctl.ground.mission` shows them on its page.

Example::

    >>> poll_status(["tcp://rig-a.local:5555"], timeout_s=2.0, curve=None)    # doctest: +SKIP
"""

from __future__ import annotations

import json
import math
import time
from typing import Any

__all__ = [
    "STATUS_CAMERA_FIELDS",
    "STATUS_FIELDS",
    "STATUS_SENSOR_FIELDS",
    "StatusSubscriber",
    "events_endpoint",
    "normalize_status",
    "poll_status",
    "sensors_of",
]

STATUS_FIELDS = ("board", "phase", "flight", "disk_free_mb", "serving", "cameras")
STATUS_CAMERA_FIELDS = ("state", "fps", "frames_captured", "frames_stored", "durable_frames",
                        "dropped", "faults")
_CAM_DEFAULTS: dict[str, Any] = {"state": "?", "fps": 0.0, "frames_captured": 0, "frames_stored": 0,
                                 "durable_frames": 0, "dropped": 0, "faults": 0}
# a board's ``sensors[<name>]`` (camctl/board/sensors/sampler.py ``SensorSampler.status``); a board
# without sensors sends no ``sensors`` (older daemons) or an empty one
STATUS_SENSOR_FIELDS = ("kind", "backend", "ok", "error", "samples", "read_errors", "last", "age_s",
                        "up_axis", "rate_hz")
_SENSOR_DEFAULTS: dict[str, Any] = {"kind": "?", "backend": "?", "ok": False, "error": None,
                                    "samples": 0, "read_errors": 0, "last": {}, "age_s": None,
                                    "up_axis": "+z", "rate_hz": 0.0}


def sensors_of(st: dict) -> dict[str, dict]:
    """The STATUS's sensors by name, each with every :data:`STATUS_SENSOR_FIELDS` present; ``{}``
    for a board without sensors. An entry that is not an object is dropped, ``last`` keeps only
    its finite numbers (a board's STATUS is not trusted to be well formed)."""
    raw = st.get("sensors")
    if not isinstance(raw, dict):
        return {}
    out: dict[str, dict] = {}
    for name, s in raw.items():
        if not isinstance(s, dict):
            continue
        sensor = {**_SENSOR_DEFAULTS, **s}
        last = s.get("last") if isinstance(s.get("last"), dict) else {}
        sensor["last"] = {str(k): float(v) for k, v in last.items()
                          if isinstance(v, int | float) and not isinstance(v, bool)
                          and math.isfinite(v)}
        out[str(name)] = sensor
    return out


def normalize_status(st: dict) -> dict:
    """A board's STATUS with every DESIGN.md field present (defaults filled in), extra fields kept.

    An unreachable board is ``{"url": ..., "error": ...}`` and is returned as it is."""
    if "error" in st:
        return dict(st)
    out = dict(st)
    out.setdefault("board", "?")
    out.setdefault("phase", "?")
    out.setdefault("flight", "")
    out.setdefault("disk_free_mb", 0)
    out.setdefault("serving", False)
    cams = out.get("cameras")
    out["cameras"] = {name: {**_CAM_DEFAULTS, **(c if isinstance(c, dict) else {})}
                      for name, c in (cams.items() if isinstance(cams, dict) else [])}
    if "sensors" in out:  # an older board has none: the key stays absent
        out["sensors"] = sensors_of(out)
    return out


def poll_status(urls: list[str], timeout_s: float, curve: Any) -> list[dict]:
    """One STATUS request to each board, in order: its normalized status or ``{"url", "error"}``."""
    from camctl.exc import FetchError, RemoteError
    from camctl.ground import Client

    results: list[dict] = []
    for url in urls:
        with Client(url, timeout_s=timeout_s, curve=curve) as c:
            try:
                results.append(normalize_status(c.status()))
            except (FetchError, RemoteError) as exc:
                results.append({"url": url, "error": str(exc)})
    return results


def events_endpoint(url: str, status: dict) -> str | None:
    """The board's PUB endpoint: its ``events_port`` (from STATUS) on the host of the ROUTER URL;
    None when the status names no port or the URL is not ``tcp://host:port``."""
    port = status.get("events_port")
    if not isinstance(port, int) or not url.startswith("tcp://") or ":" not in url[6:]:
        return None
    host = url[6:].rsplit(":", 1)[0]
    return f"tcp://{host}:{port}"


class StatusSubscriber:
    """SUB to boards' PUB endpoints; keeps the latest ``status`` body per board name.

    ``endpoints`` are ``(endpoint, curve)``: a board with CURVE on serves its PUB socket with the
    same keys as its ROUTER, so each connect carries that board's client keys (None: plain)."""

    def __init__(self, endpoints: list[tuple[str, Any]]) -> None:
        import zmq

        self._zmq = zmq
        self._ctx = zmq.Context.instance()
        self.sock = self._ctx.socket(zmq.SUB)
        self.sock.setsockopt(zmq.LINGER, 0)
        from camctl.common.protocol import bound_events

        bound_events(self.sock)  # a board's PUB cannot grow the ground
        for topic in (b"status", b"phase", b"fault"):
            self.sock.setsockopt(zmq.SUBSCRIBE, topic)
        from camctl.common.keys import use_curve

        for ep, curve in endpoints:
            use_curve(self.sock, curve)  # taken by this connect only
            self.sock.connect(ep)

    def drain(self, wait_s: float) -> tuple[dict[str, dict], bool]:
        """(latest status per board, whether a phase/fault came) within ``wait_s``."""
        latest: dict[str, dict] = {}
        poke = False
        deadline = time.monotonic() + wait_s
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not self.sock.poll(max(1, int(left * 1000))):
                break
            try:
                topic, data = self.sock.recv_multipart(self._zmq.NOBLOCK)[:2]
                body = json.loads(data)
            except (ValueError, self._zmq.ZMQError):
                continue
            if topic == b"status" and isinstance(body, dict) and "board" in body:
                latest[str(body["board"])] = normalize_status(body)
                if not poke:
                    break  # show a fresh status at once
            elif topic != b"status":
                poke = True
        return latest, poke

    def close(self) -> None:
        self.sock.close(linger=0)
