"""Watches the boards for the mission page: a STATUS poll per board, one SUB to every board's PUB.

Each board gets a poll thread (STATUS every ``poll_s`` over
:class:`~camctl.ground.mission.ground_link.StatusLink`; the round trip also measures the board's
clock offset against the ground). One SUB thread receives the boards' PUB topics (``status``,
``phase``, ``fault``; docs/protocol.md "PUB events") the moment they are sent, so a phase change
reaches the page without waiting for a poll. With CURVE (``curve``: one
:class:`~camctl.common.keys.ClientCurve`, or one per board URL) the SUB is a CURVE client of each
board's PUB with that board's server key: libzmq copies a socket's options at each ``connect``, so
one SUB serves boards with different keys (zmq_setsockopt(3): "security options take effect for
subsequent bind/connect calls, and can be changed at any time to affect subsequent binds and/or
connects", https://zeromq.github.io/libzmq/zmq_setsockopt.html). A failed poll marks the board
unreachable at once (a killed board drops its TCP link: the DEALER notices at the next request).
Every change is handed to ``on_change(view)`` as a JSON-ready copy, from the watcher's threads.

Times of a board that rebooted mid-flight: each run of its daemon stamps its own monotonic clock
(``run`` on a record, ``run`` and ``clock_offset_ns`` in STATUS and in the resume record it
publishes; absent on older boards: run 0, offset 0). A view keeps each run's offset and places
every phase time on the flight's timeline (run 0's clock, docs/phases-and-gpio.md "Resume clocks")
before taking it from the release edge; a time of a run whose offset is not known yet waits
(``t_rel_s`` None) until STATUS or the resume record says it. A release applied at the resume from
the line level (``source`` ``resume``: its edge came while the board was down) is a phase change,
never the release edge. The reboot is a phase entry of its own ("reboot (down 8.1 s)").

Example::

    w = Watcher(["tcp://127.0.0.1:5555"], on_change=print)
    w.start(); ...; w.close()
"""

from __future__ import annotations

import copy
import json
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import zmq

from camctl.common.keys import curve_for, use_curve
from camctl.common.lifecycle import Startable
from camctl.common.protocol import bound_events
from camctl.common.records import FaultRecord, read
from camctl.ground.mission.ground_link import LINK_ERRORS, StatusLink, events_endpoint, sensors_of

__all__ = ["BoardView", "Watcher"]

_MAX_FAULTS = 20
_IN_FLIGHT = ("DESCENT", "SEPARATION", "TOUCHDOWN")  # a board silent in these lost contact
_REBASE = {"ARMED": "arming", "SAFE": "disarm"}  # entering these takes the sensors' base again


@dataclass
class BoardView:
    """What the page knows of one board."""

    url: str
    name: str = ""
    reachable: bool = False
    error: str = "not polled yet"
    status: dict = field(default_factory=dict)
    # board wall clock minus ground wall clock, at the poll's midpoint
    offset_ms: float | None = None
    rtt_ms: float | None = None
    flight: str = ""
    # {phase, event, source, by, mono_ns, run, t_rel_s}: source how it came (poll | pub), by what
    # caused it on the board (gpio | operator | timer | resume), mono_ns on its run's clock
    phases: list[dict] = field(default_factory=list)
    # the release edge on the flight's timeline (run 0's monotonic clock)
    release_mono_ns: int | None = None
    # the release edge on the ground's wall clock (ms since epoch)
    release_ground_ms: float | None = None
    faults: list[dict] = field(default_factory=list)
    via: str = ""  # what brought the last change: "poll", "pub:<topic>" or "" (nothing yet)
    pub_wall_ns: int = 0  # the board's wall clock when it made the status that came over PUB last
    events: str = ""  # the PUB endpoint the SUB connected to
    run: int = 0  # the run of the board's daemon in this flight (STATUS ``run``; 0 when absent)
    # run (as a string: JSON keys) -> its clock's offset onto the flight's timeline
    offsets: dict[str, int] = field(default_factory=lambda: {"0": 0})
    reboots: list[dict] = field(default_factory=list)  # {run, gap_s, t_rel_s}
    last_seen_ms: float | None = None  # the ground's wall clock when the board last answered
    # a board that stopped answering in flight: {phase, t_rel_s (its last answer from release)};
    # None while it answers, or when it went silent outside a flight phase
    lost_contact: dict | None = None
    # sensor -> {read_errors, altitude_m, at, phase}: its read errors and altitude when the board
    # was armed ("arming"), disarmed ("disarm"), first seen ("first seen") or restarted its count
    # ("restart"), in ``phase``. The go/no-go counts read errors from it, the page the altitude
    # change since arming
    sensor_base: dict[str, dict] = field(default_factory=dict)

    def to_json(self) -> dict:
        return copy.deepcopy(asdict(self))


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _flight_ns(v: BoardView, mono: Any, run: Any) -> int | None:
    """``mono`` of run ``run``'s clock on the flight's timeline; None when not known (yet)."""
    mono, run = _int(mono), _int(run)
    offset = v.offsets.get(str(run if run is not None else 0))
    return mono + offset if mono is not None and offset is not None else None


def _fault_entry(body: dict) -> dict:
    """What a view keeps of a published fault: its ``camera`` or ``name``, ``error`` (the type) and
    ``message``, those that are set. An older board sent ``kind`` = ``store`` for a flight it
    could not open: kept as a fault named ``store``."""
    (rec,) = read([body])
    if not isinstance(rec, FaultRecord):
        rec = FaultRecord(name=str(body.get("kind", "")), message=str(body.get("message", "")))
    return {k: v for k, v in (("camera", rec.camera), ("name", rec.name), ("error", rec.error),
                              ("message", rec.message)) if v}


class Watcher(Startable):
    """Keeps a :class:`BoardView` per board URL up to date; see the module docstring.

    ``close()`` is safe twice."""

    def __init__(self, urls: list[str], *, on_change: Callable[[dict], None], poll_s: float = 0.5,
                 timeout_s: float = 1.0, curve: Any = None,
                 context: zmq.Context | None = None) -> None:
        self.urls = list(urls)
        self.poll_s = poll_s
        self.timeout_s = timeout_s
        self.curve = curve
        self._on_change = on_change
        self._ctx = context or zmq.Context.instance()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._connect_q: queue.Queue[tuple[str, str]] = queue.Queue()  # (board url, PUB endpoint)
        self.views = {u: BoardView(url=u) for u in self.urls}
        self._threads: list[threading.Thread] = []
        self._closed = False

    def __repr__(self) -> str:
        return f"<Watcher {len(self.urls)} boards{' closed' if self._closed else ''}>"

    def start(self) -> None:
        self._threads = [threading.Thread(target=self._poll_loop, args=(u,),
                                          name=f"camctl-mission-poll-{i}", daemon=True)
                         for i, u in enumerate(self.urls)]
        self._threads.append(threading.Thread(target=self._sub_loop, name="camctl-mission-sub",
                                              daemon=True))
        for t in self._threads:
            t.start()

    def close(self) -> None:
        self._closed = True
        self._stop.set()
        for t in self._threads:
            t.join(timeout=5)
        self._threads = []

    def snapshot(self) -> list[dict]:
        with self._lock:
            return [self.views[u].to_json() for u in self.urls]

    # -- polling -----------------------------------------------------------------------------------
    def _poll_loop(self, url: str) -> None:
        link = StatusLink(url, timeout_s=self.timeout_s, curve=self.curve)
        try:
            while not self._stop.is_set():
                t0 = time.time_ns()
                try:
                    st = link.status()
                except LINK_ERRORS as exc:
                    self._unreachable(url, str(exc))
                else:
                    t1 = time.time_ns()
                    self._polled(url, st, t0, t1)
                self._stop.wait(self.poll_s)
        finally:
            link.close()

    def _unreachable(self, url: str, error: str) -> None:
        with self._lock:
            v = self.views[url]
            changed = v.reachable or v.error != error
            v.reachable, v.error, v.via = False, error, "poll"
            phase = v.status.get("phase")
            if v.lost_contact is None and phase in _IN_FLIGHT:
                seen, rel = v.last_seen_ms, v.release_ground_ms
                v.lost_contact = {"phase": phase, "t_rel_s": round((seen - rel) / 1e3, 1)
                                  if seen is not None and rel is not None else None}
            out = v.to_json()
        if changed:
            self._on_change(out)

    def _polled(self, url: str, st: dict, t0: int, t1: int) -> None:
        with self._lock:
            v = self.views[url]
            v.name = str(st.get("board") or v.name or url)
            v.reachable, v.error, v.via = True, "", "poll"
            v.last_seen_ms, v.lost_contact = time.time_ns() / 1e6, None
            wall = st.get("wall_ns")
            if isinstance(wall, int):
                v.offset_ms = round((wall - (t0 + t1) / 2) / 1e6, 3)
            v.rtt_ms = round((t1 - t0) / 1e6, 3)
            self._set_status(v, st)
            phase = st.get("phase")
            if isinstance(phase, str) and (not v.phases or v.phases[-1]["phase"] != phase):
                mono = st.get("mono_ns") if isinstance(st.get("mono_ns"), int) else None
                self._add_phase(v, {"phase": phase, "event": "", "source": "poll", "mono_ns": mono,
                                    "run": v.run})
            events = events_endpoint(url, st)
            if events and events != v.events:
                v.events = events
                self._connect_q.put((url, events))
            out = v.to_json()
        self._on_change(out)

    @classmethod
    def _set_status(cls, v: BoardView, st: dict) -> None:
        flight = st.get("flight")
        if isinstance(flight, str) and flight and flight != v.flight:
            if v.flight:  # a new flight: its phases, runs and reboots start over
                v.phases, v.release_mono_ns, v.release_ground_ms = [], None, None
                v.offsets, v.reboots = {"0": 0}, []
            v.flight = flight
        v.status = st
        cls._sensor_base(v, st)
        run = _int(st.get("run"))
        if run is not None and run >= 0:
            v.run = run
            cls._learn(v, run, _int(st.get("clock_offset_ns")) or 0)
        elif "run" not in st:  # an older board: one run
            v.run = 0

    @staticmethod
    def _sensor_base(v: BoardView, st: dict) -> None:
        """Take each sensor's base at first sight, on entering ARMED or SAFE and when its read
        errors count went down (a restarted daemon); fill its altitude once it has one."""
        phase = st.get("phase")
        base = dict(v.sensor_base)
        for name, s in sensors_of(st).items():
            errors = s["read_errors"] if isinstance(s["read_errors"], int) else 0
            alt = s["last"].get("altitude_m")
            b = base.get(name)
            if b is None:
                at: str | None = "first seen"
            elif phase in _REBASE and phase != b["phase"]:
                at = _REBASE[str(phase)]
            elif errors < b["read_errors"]:
                at = "restart"
            else:
                at = None
            if at is not None:
                base[name] = {"read_errors": errors, "altitude_m": alt, "at": at, "phase": phase}
            elif b is not None and b["altitude_m"] is None and phase in _REBASE:
                base[name] = {**b, "altitude_m": alt}  # its first sample came after the base
        v.sensor_base = base

    @classmethod
    def _learn(cls, v: BoardView, run: int, offset: int) -> None:
        """Run ``run``'s clock offset is known: times that waited for it are placed now."""
        if v.offsets.get(str(run)) == offset:
            return
        v.offsets = {**v.offsets, str(run): offset}
        cls._retime(v)

    @staticmethod
    def _retime(v: BoardView) -> None:
        """Every PUB phase time (and reboot) from the release edge, on the flight's timeline."""
        for e in [*v.phases, *v.reboots]:
            t = _flight_ns(v, e.get("mono_ns"), e.get("run"))
            timed = t is not None and v.release_mono_ns is not None and e.get("source") == "pub"
            e["t_rel_s"] = round((t - v.release_mono_ns) / 1e9, 3) if timed else None

    def _add_phase(self, v: BoardView, entry: dict) -> None:
        edge = entry.get("by") != "resume"  # a release read from the line level at resume: none
        release = _flight_ns(v, entry.get("mono_ns"), entry.get("run"))
        if entry.get("event") == "release" and edge and release is not None:
            v.release_mono_ns = release
            wall = entry.get("wall_ns")
            if isinstance(wall, int):
                v.release_ground_ms = wall / 1e6 - (v.offset_ms or 0.0)
        if (v.phases and v.phases[-1]["phase"] == entry["phase"]
                and v.phases[-1]["source"] == "poll" and entry["source"] == "pub"):
            v.phases.pop()  # the poll saw it first; the PUB record has the edge's own time
        entry.pop("wall_ns", None)
        v.phases.append(entry)
        self._retime(v)

    def _resumed(self, v: BoardView, body: dict) -> None:
        """The resume record a board publishes when it records on after a restart: its run's clock
        offset, and after a reboot an entry that says so."""
        run = _int(body.get("run"))
        run = run if run is not None else _int(body.get("resumes"))
        if run is None or run < 0:
            return
        self._learn(v, run, _int(body.get("clock_offset_ns")) or 0)
        clock = body.get("clock")
        if not (isinstance(clock, str) and "reboot" in clock):
            return
        gap = body.get("gap_s")
        down = f" (down {gap:.1f} s)" if isinstance(gap, int | float) else ""
        v.reboots = [*v.reboots, {"run": run, "gap_s": gap, "mono_ns": body.get("mono_ns"),
                                  "source": "pub", "t_rel_s": None}]
        phase = body.get("phase") if isinstance(body.get("phase"), str) else v.status.get("phase")
        self._add_phase(v, {"phase": str(phase or "?"), "event": f"reboot{down}", "source": "pub",
                            "by": "resume", "mono_ns": body.get("mono_ns"), "run": run})

    # -- PUB ---------------------------------------------------------------------------------------
    def _sub_loop(self) -> None:
        sock = self._ctx.socket(zmq.SUB)
        sock.setsockopt(zmq.LINGER, 0)
        bound_events(sock)  # a board's PUB cannot grow the ground
        for topic in (b"status", b"phase", b"fault"):
            sock.setsockopt(zmq.SUBSCRIBE, topic)
        try:
            while not self._stop.is_set():
                while True:
                    try:
                        url, endpoint = self._connect_q.get_nowait()
                    except queue.Empty:
                        break
                    self._connect(sock, url, endpoint)
                if not sock.poll(100):
                    continue
                try:
                    frames = sock.recv_multipart(zmq.NOBLOCK)
                    body = json.loads(frames[1])
                except (IndexError, ValueError, zmq.ZMQError):
                    continue
                if isinstance(body, dict):
                    self._pub(frames[0], body)
        finally:
            sock.close(linger=0)

    def _connect(self, sock: zmq.Socket, url: str, endpoint: str) -> None:
        use_curve(sock, curve_for(self.curve, url))  # taken by this connect only
        sock.connect(endpoint)

    def _pub(self, topic: bytes, body: dict) -> None:
        name = body.get("board")
        with self._lock:
            v = next((x for x in self.views.values() if x.name == name), None)
            if v is None:
                return
            v.via = "pub:" + topic.decode("ascii", "replace")
            if v.reachable:  # a PUB queued before a kill must not bring a silent board back
                v.last_seen_ms = time.time_ns() / 1e6
            if topic == b"status":
                self._set_status(v, body)
                wall = body.get("wall_ns")
                v.pub_wall_ns = wall if isinstance(wall, int) else 0
            elif topic == b"phase" and body.get("kind") == "resume":
                self._resumed(v, body)
            elif topic == b"phase":
                phase = body.get("phase_to")
                if not isinstance(phase, str):
                    return
                flight = body.get("flight")
                if isinstance(flight, str) and flight:
                    self._set_status(v, {**v.status, "flight": flight})
                v.status = {**v.status, "phase": phase}
                run = _int(body.get("run"))
                self._add_phase(v, {"phase": phase, "event": str(body.get("event", "")),
                                    "source": "pub", "by": str(body.get("source", "")),
                                    "mono_ns": body.get("mono_ns"),
                                    "run": run if run is not None and run >= 0 else v.run,
                                    "wall_ns": body.get("wall_ns")})
            elif topic == b"fault":
                v.faults = [*v.faults, _fault_entry(body)][-_MAX_FAULTS:]
            else:
                return
            out = v.to_json()
        self._on_change(out)

