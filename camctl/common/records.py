"""The records of a flight's event log (JSON in ``events/*.mcap``), one typed class per kind.

Each class pairs ``encode()`` (-> the JSON dict written to flash) with ``decode(dict)`` beside
it, as :mod:`camctl.common.protocol` does for wire messages; :func:`decode` dispatches on
``"kind"``. A bad field raises :class:`~camctl.exc.RecordError` naming it (a bool is never an
int). Forward compatible: an unknown kind decodes as an :class:`OpaqueRecord`, fields a class
does not know are kept in ``extra`` and written back. ``mono_ns``/``wall_ns`` of None are left
out (the store stamps them when it logs the record). :func:`read` is the lenient reader: a
malformed record becomes an ``OpaqueRecord`` saying why.

Every record may carry ``run``: which run of the daemon in the flight wrote it (0: the run that
opened the flight; k: the k-th resume, whose :class:`ResumeRecord` maps its monotonic clock onto
the flight's timeline). None on records written before runs existed (read as run 0).

One meaning per field: an old form a writer used before that rule is read, never written
(:class:`FaultRecord` says how).

Example::

    >>> rec = DropRecord(name="quota", camera="down", count=2, total=5, mono_ns=1, wall_ns=2)
    >>> decode(rec.encode()) == rec, rec.encode()["kind"]
    (True, 'drop')
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from camctl.exc import RecordError

__all__ = [
    "KINDS",
    "CamerasRecord",
    "CheckRecord",
    "ConfirmRecord",
    "DropRecord",
    "EventRecord",
    "FaultRecord",
    "FlightRecord",
    "LedgerRecord",
    "LossRecord",
    "OpaqueRecord",
    "PhaseRecord",
    "QuotaRecord",
    "Record",
    "ResumeRecord",
    "SceneRecord",
    "decode",
    "read",
]

_MISSING: Any = object()
# the store's old fault text: f"{type(exc).__name__}: {exc}"
_LEGACY_ERROR = re.compile(r"([A-Z][A-Za-z0-9_]*): (.*)", re.DOTALL)


# --- field helpers --------------------------------------------------------------------------------
def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _get(d: Mapping[str, Any], kind: str, name: str, types: tuple[type, ...], what: str,
         default: Any = _MISSING, *, null: bool = False) -> Any:
    """One field of a ``kind`` record; RecordError naming it when missing or of the wrong type."""
    if name not in d:
        if default is _MISSING:
            raise RecordError(kind, name, "is missing")
        return default
    value = d[name]
    if value is None and null:
        return None
    if (isinstance(value, bool) and bool not in types) or not isinstance(value, types):
        raise RecordError(kind, name, f"must be {what}, got {_short(value)}")
    return value


def _int(d: Mapping[str, Any], kind: str, name: str, default: Any = _MISSING, *,
         null: bool = False) -> Any:
    what = "an integer" + (" or null" if null else "")
    return _get(d, kind, name, (int,), what, default, null=null)


def _num(d: Mapping[str, Any], kind: str, name: str, default: Any = _MISSING) -> Any:
    return _get(d, kind, name, (int, float), "a number", default)


def _str(d: Mapping[str, Any], kind: str, name: str, default: Any = _MISSING) -> Any:
    return _get(d, kind, name, (str,), "a string", default)


def _obj(d: Mapping[str, Any], kind: str, name: str, default: Any = _MISSING) -> Any:
    value = _get(d, kind, name, (dict,), "an object", default)
    return dict(value) if isinstance(value, dict) else value


def _time(d: Mapping[str, Any], kind: str, name: str) -> int | None:
    return _int(d, kind, name, None, null=True)


def _list_of(d: Mapping[str, Any], kind: str, name: str, item: type, what: str,
             default: Any = _MISSING, *, null: bool = False) -> Any:
    value = _get(d, kind, name, (list, tuple), f"a list of {what}", default, null=null)
    if not isinstance(value, list | tuple):
        return value
    for x in value:
        if isinstance(x, bool) or not isinstance(x, item):
            raise RecordError(kind, name, f"must be a list of {what}, has {_short(x)}")
    return tuple(value)


def _counts(d: Mapping[str, Any], kind: str, name: str) -> dict[str, int]:
    value = _obj(d, kind, name, {})
    for k, n in value.items():
        if isinstance(n, bool) or not isinstance(n, int):
            raise RecordError(kind, name, f"must map names to integers, has {k!r}: {_short(n)}")
    return value


def _same(d: Mapping[str, Any], kind: str, name: str, value: str) -> None:
    """``name`` is derived from another field (a phase record's ``name`` is its ``phase_to``)."""
    if name in d and d[name] != value:
        raise RecordError(kind, name, f"must equal {value!r}, got {_short(d[name])}")


def _kind_of(d: Any, kind: str = "") -> Any:
    """The ``"kind"`` of ``d`` (None: it has none); RecordError when ``d`` is no object."""
    if not isinstance(d, Mapping):
        raise RecordError(kind, "kind", f"a record must be an object, got {_short(d)}")
    return d.get("kind")


def _known(*names: str) -> frozenset[str]:
    """A kind's fields on flash: its own and the five every record has."""
    return frozenset(("kind", "name", "mono_ns", "wall_ns", "run", *names))


def _rest(d: Mapping[str, Any], cls: type[Record]) -> dict[str, Any]:
    """What every kind decodes alike: its times, and the fields it does not know (``extra``)."""
    run = _int(d, cls.KIND, "run", None, null=True)
    if run is not None and run < 0:
        raise RecordError(cls.KIND, "run", f"must be 0 or more, got {run}")
    return {"mono_ns": _time(d, cls.KIND, "mono_ns"), "wall_ns": _time(d, cls.KIND, "wall_ns"),
            "run": run, "extra": {k: v for k, v in d.items() if k not in cls.FIELDS}}


def _put(out: dict[str, Any], name: str, value: Any) -> None:
    if value is not None:
        out[name] = value


def _stamp(out: dict[str, Any], rec: Record) -> None:
    _put(out, "mono_ns", rec.mono_ns)
    _put(out, "wall_ns", rec.wall_ns)
    _put(out, "run", rec.run)


def _done(out: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    for k, v in extra.items():  # a newer writer's fields go back as they came, never over ours
        out.setdefault(k, v)
    return out


class Record:
    """Base of every event-log record: ``KIND`` is its ``"kind"``; ``extra`` holds the fields it
    does not know."""

    __slots__ = ()
    KIND: ClassVar[str] = ""
    FIELDS: ClassVar[frozenset[str]] = frozenset()
    mono_ns: int | None
    wall_ns: int | None
    run: int | None

    def encode(self) -> dict[str, Any]:  # pragma: no cover - every subclass overrides
        raise NotImplementedError

    @classmethod
    def decode(cls, d: Mapping[str, Any]) -> Record:
        """A record of this kind from its JSON dict; RecordError naming a malformed field."""
        if (got := _kind_of(d, cls.KIND)) != cls.KIND:
            raise RecordError(cls.KIND, "kind", f"must be {cls.KIND!r}, got {_short(got)}")
        return cls._from(d)

    @classmethod
    def _from(cls, d: Mapping[str, Any]) -> Record:  # pragma: no cover
        raise NotImplementedError


# --- the board's records: phases, events, flights, resumes, faults, frame books -------------------
@dataclass(frozen=True, slots=True)
class PhaseRecord(Record):
    """The phase machine entered ``phase_to`` (``name`` on flash, the same: a record with only one
    of the two decodes with both) on ``event`` from ``source`` (gpio | operator | timer);
    ``skipped`` phases were passed over; ``boot_id`` dates ``mono_ns``."""

    KIND = "phase"
    FIELDS = _known("phase_from", "phase_to", "event", "source", "skipped", "boot_id")
    phase_from: str
    phase_to: str
    event: str = ""
    source: str = ""
    mono_ns: int | None = None
    wall_ns: int | None = None
    skipped: tuple[str, ...] = ()
    boot_id: str | None = None
    run: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def encode(self) -> dict[str, Any]:
        out = {"kind": self.KIND, "name": self.phase_to, "phase_from": self.phase_from,
               "phase_to": self.phase_to, "event": self.event, "source": self.source}
        _stamp(out, self)
        out["skipped"] = list(self.skipped)
        _put(out, "boot_id", self.boot_id)
        return _done(out, self.extra)

    @classmethod
    def _from(cls, d: Mapping[str, Any]) -> PhaseRecord:
        k = cls.KIND
        to = _str(d, k, "phase_to", None)
        if to is None:
            to = _str(d, k, "name", None)
        if to is None:
            raise RecordError(k, "phase_to", "is missing (and so is 'name')")
        _same(d, k, "name", to)
        return cls(phase_from=_str(d, k, "phase_from", ""), phase_to=to,
                   event=_str(d, k, "event", ""), source=_str(d, k, "source", ""),
                   skipped=_list_of(d, k, "skipped", str, "strings", ()),
                   boot_id=_str(d, k, "boot_id", None), **_rest(d, cls))


@dataclass(frozen=True, slots=True)
class EventRecord(Record):
    """Everything the phase machine saw: an accepted event (``outcome="transition"``, to
    ``phase_to``) or an ignored one and why (duplicate | out_of_order | not_armed | in_flight |
    unknown_event | bounce); ``phase`` is the phase when it arrived."""

    KIND = "event"
    FIELDS = _known("source", "phase", "outcome", "phase_to")
    name: str
    source: str
    phase: str
    outcome: str
    mono_ns: int | None
    wall_ns: int | None
    phase_to: str = ""
    run: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def encode(self) -> dict[str, Any]:
        out = {"kind": self.KIND, "name": self.name, "source": self.source, "phase": self.phase,
               "outcome": self.outcome}
        _stamp(out, self)
        out["phase_to"] = self.phase_to
        return _done(out, self.extra)

    @classmethod
    def _from(cls, d: Mapping[str, Any]) -> EventRecord:
        k = cls.KIND
        return cls(name=_str(d, k, "name"), source=_str(d, k, "source"), phase=_str(d, k, "phase"),
                   outcome=_str(d, k, "outcome"), phase_to=_str(d, k, "phase_to", ""),
                   **_rest(d, cls))


@dataclass(frozen=True, slots=True)
class FlightRecord(Record):
    """A flight opened (``name`` ``open``) on ``board``; ``cameras`` maps each camera to its
    ``role``, ``size`` and ``fps`` by phase, as configured."""

    KIND = "flight"
    FIELDS = _known("board", "flight", "boot_id", "cameras")
    board: str = ""
    flight: str = ""
    mono_ns: int | None = None
    wall_ns: int | None = None
    boot_id: str | None = None
    cameras: dict[str, Any] = field(default_factory=dict)
    name: str = "open"
    run: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def encode(self) -> dict[str, Any]:
        out = {"kind": self.KIND, "name": self.name, "board": self.board, "flight": self.flight}
        _stamp(out, self)
        _put(out, "boot_id", self.boot_id)
        out["cameras"] = self.cameras
        return _done(out, self.extra)

    @classmethod
    def _from(cls, d: Mapping[str, Any]) -> FlightRecord:
        k = cls.KIND
        return cls(board=_str(d, k, "board", ""), flight=_str(d, k, "flight", ""),
                   boot_id=_str(d, k, "boot_id", None), cameras=_obj(d, k, "cameras", {}),
                   name=_str(d, k, "name", "open"), **_rest(d, cls))


@dataclass(frozen=True, slots=True)
class ResumeRecord(Record):
    """A restarted daemon re-entered ``phase`` of ``flight`` after ``gap_s`` (``name`` on flash:
    the phase). ``clock`` says which clock related the boots; ``entered_mono_ns`` and
    ``descent_mono_ns`` are the phase's and the descent's start on this boot's monotonic clock;
    ``levels`` the lines read at start. ``run`` is this run of the daemon in the flight (the
    ``resumes``-th; the run that opened the flight is 0) and ``clock_offset_ns`` maps its
    monotonic clock onto the flight's timeline: ``flight_ns = mono_ns + clock_offset_ns``, where
    the timeline is run 0's monotonic clock (docs/phases-and-gpio.md, "Resume clocks")."""

    KIND = "resume"
    FIELDS = _known("flight", "phase", "gap_s", "clock", "last_seen_wall_ns", "entered_wall_ns",
                    "entered_mono_ns", "descent_mono_ns", "resumes", "pid", "levels", "boot_id",
                    "clock_offset_ns")
    flight: str
    phase: str
    gap_s: float
    clock: str
    last_seen_wall_ns: int
    entered_wall_ns: int
    entered_mono_ns: int
    descent_mono_ns: int | None
    resumes: int
    pid: int
    levels: dict[str, Any]
    mono_ns: int | None
    wall_ns: int | None
    boot_id: str | None = None
    run: int | None = None
    # add to this run's monotonic ns to place them on the flight's timeline (run 0's clock)
    clock_offset_ns: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def encode(self) -> dict[str, Any]:
        out = {"kind": self.KIND, "name": self.phase, "flight": self.flight, "phase": self.phase,
               "gap_s": self.gap_s, "clock": self.clock,
               "last_seen_wall_ns": self.last_seen_wall_ns,
               "entered_wall_ns": self.entered_wall_ns, "entered_mono_ns": self.entered_mono_ns,
               "descent_mono_ns": self.descent_mono_ns, "resumes": self.resumes, "pid": self.pid,
               "levels": self.levels}
        _stamp(out, self)
        _put(out, "boot_id", self.boot_id)
        _put(out, "clock_offset_ns", self.clock_offset_ns)
        return _done(out, self.extra)

    @classmethod
    def _from(cls, d: Mapping[str, Any]) -> ResumeRecord:
        k = cls.KIND
        phase = _str(d, k, "phase")
        _same(d, k, "name", phase)
        return cls(flight=_str(d, k, "flight"), phase=phase, gap_s=_num(d, k, "gap_s"),
                   clock=_str(d, k, "clock"), last_seen_wall_ns=_int(d, k, "last_seen_wall_ns"),
                   entered_wall_ns=_int(d, k, "entered_wall_ns"),
                   entered_mono_ns=_int(d, k, "entered_mono_ns"),
                   descent_mono_ns=_int(d, k, "descent_mono_ns", None, null=True),
                   resumes=_int(d, k, "resumes"), pid=_int(d, k, "pid"),
                   levels=_obj(d, k, "levels", {}), boot_id=_str(d, k, "boot_id", None),
                   clock_offset_ns=_int(d, k, "clock_offset_ns", None, null=True),
                   **_rest(d, cls))


@dataclass(frozen=True, slots=True)
class CamerasRecord(Record):
    """A resumed flight's cameras changed (the config did, between runs; ``name`` ``changed``):
    ``added`` cameras record from this run on, their books starting here; ``removed`` ones record
    no more, their books closed as they stood. ``cameras`` describes every camera of this run, as
    the flight's open record does (role, size, fps by phase)."""

    KIND = "cameras"
    FIELDS = _known("flight", "added", "removed", "cameras", "boot_id")
    flight: str = ""
    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    cameras: dict[str, Any] = field(default_factory=dict)
    mono_ns: int | None = None
    wall_ns: int | None = None
    boot_id: str | None = None
    name: str = "changed"
    run: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def encode(self) -> dict[str, Any]:
        out = {"kind": self.KIND, "name": self.name, "flight": self.flight,
               "added": list(self.added), "removed": list(self.removed)}
        _stamp(out, self)
        _put(out, "boot_id", self.boot_id)
        out["cameras"] = self.cameras
        return _done(out, self.extra)

    @classmethod
    def _from(cls, d: Mapping[str, Any]) -> CamerasRecord:
        k = cls.KIND
        return cls(flight=_str(d, k, "flight", ""),
                   added=_list_of(d, k, "added", str, "camera names", ()),
                   removed=_list_of(d, k, "removed", str, "camera names", ()),
                   cameras=_obj(d, k, "cameras", {}), boot_id=_str(d, k, "boot_id", None),
                   name=_str(d, k, "name", "changed"), **_rest(d, cls))


@dataclass(frozen=True, slots=True)
class FaultRecord(Record):
    """Something failed. ``error`` is the error's kind (its type name: ``CameraCheck``,
    ``OSError``), ``message`` the human text; ``camera`` names a camera's fault, ``name`` what the
    store was doing (``disk_full``, ``index_write_failed``); ``activity`` and ``segment`` where
    known. The store's old form had the text in ``error`` and no ``message`` (``"OSError: [Errno
    28] ..."`` or just ``"[Errno 28] ..."``): it decodes with ``message`` the text after ``Type: ``
    (all of it without that prefix) and ``error`` the ``Type`` (or "")."""

    KIND = "fault"
    FIELDS = _known("camera", "error", "message", "activity", "segment")
    error: str = ""
    message: str = ""
    camera: str = ""
    name: str = ""
    activity: str | None = None
    segment: str | None = None
    mono_ns: int | None = None
    wall_ns: int | None = None
    run: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_exception(cls, exc: BaseException, **fields: Any) -> FaultRecord:
        """The fault ``exc`` is: ``error`` its type name, ``message`` its text."""
        return cls(error=type(exc).__name__, message=str(exc), **fields)

    def encode(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.KIND}
        _put(out, "name", self.name or None)
        _put(out, "camera", self.camera or None)
        out["error"], out["message"] = self.error, self.message
        _put(out, "activity", self.activity)
        _put(out, "segment", self.segment)
        _stamp(out, self)
        return _done(out, self.extra)

    @classmethod
    def _from(cls, d: Mapping[str, Any]) -> FaultRecord:
        k = cls.KIND
        error = _str(d, k, "error", "")
        if "message" in d:
            message = _str(d, k, "message")
        else:  # the store's old form: the text in ``error``, maybe behind its type name
            m = _LEGACY_ERROR.fullmatch(error)
            error, message = (m.group(1), m.group(2)) if m else ("", error)
        return cls(error=error, message=message, camera=_str(d, k, "camera", ""),
                   name=_str(d, k, "name", ""), activity=_str(d, k, "activity", None),
                   segment=_str(d, k, "segment", None), **_rest(d, cls))


@dataclass(frozen=True, slots=True)
class LedgerRecord(Record):
    """A camera's frame books for ``since_ns`` .. ``mono_ns`` (see :mod:`camctl.common.ledger`):
    ``name`` ``interval`` (a flush) or ``restart`` (the books a restart closed); ``dropped`` is
    {reason: n}."""

    KIND = "ledger"
    FIELDS = _known("camera", "since_ns", "captured", "aged_out", "dropped", "stills_missed")
    camera: str
    captured: int = 0
    aged_out: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    stills_missed: int = 0
    name: str = "interval"
    since_ns: int | None = None
    mono_ns: int | None = None
    wall_ns: int | None = None
    run: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def encode(self) -> dict[str, Any]:
        out = {"kind": self.KIND, "name": self.name, "camera": self.camera}
        _put(out, "since_ns", self.since_ns)
        _stamp(out, self)
        out.update(captured=self.captured, aged_out=self.aged_out, dropped=dict(self.dropped),
                   stills_missed=self.stills_missed)
        return _done(out, self.extra)

    @classmethod
    def _from(cls, d: Mapping[str, Any]) -> LedgerRecord:
        k = cls.KIND
        return cls(camera=_str(d, k, "camera"), captured=_int(d, k, "captured", 0),
                   aged_out=_int(d, k, "aged_out", 0), dropped=_counts(d, k, "dropped"),
                   stills_missed=_int(d, k, "stills_missed", 0),
                   name=_str(d, k, "name", "interval"), since_ns=_time(d, k, "since_ns"),
                   **_rest(d, cls))


# --- the store's records: drops, space, what recovery cut -----------------------------------------
@dataclass(frozen=True, slots=True)
class DropRecord(Record):
    """The store dropped ``count`` frames of ``camera`` for reason ``name`` (``total`` so far)."""

    KIND = "drop"
    FIELDS = _known("camera", "count", "total")
    name: str
    camera: str
    count: int = 1
    total: int | None = None
    mono_ns: int | None = None
    wall_ns: int | None = None
    run: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def encode(self) -> dict[str, Any]:
        out = {"kind": self.KIND, "name": self.name, "camera": self.camera, "count": self.count}
        _put(out, "total", self.total)
        _stamp(out, self)
        return _done(out, self.extra)

    @classmethod
    def _from(cls, d: Mapping[str, Any]) -> DropRecord:
        k = cls.KIND
        return cls(name=_str(d, k, "name"), camera=_str(d, k, "camera"),
                   count=_int(d, k, "count", 1), total=_int(d, k, "total", None),
                   **_rest(d, cls))


@dataclass(frozen=True, slots=True)
class QuotaRecord(Record):
    """The store's space level changed to ``name`` (a ``QuotaLevel`` name) from ``from_level``
    (``from`` on flash), or ``name`` ``disk_space_returned``; sizes in MB."""

    KIND = "quota"
    FIELDS = _known("from", "free_mb", "finish_need_mb", "reserve_mb")
    name: str
    free_mb: float
    from_level: str | None = None
    finish_need_mb: float | None = None
    reserve_mb: float | None = None
    mono_ns: int | None = None
    wall_ns: int | None = None
    run: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def encode(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.KIND, "name": self.name}
        _put(out, "from", self.from_level)
        out["free_mb"] = self.free_mb
        _put(out, "finish_need_mb", self.finish_need_mb)
        _put(out, "reserve_mb", self.reserve_mb)
        _stamp(out, self)
        return _done(out, self.extra)

    @classmethod
    def _from(cls, d: Mapping[str, Any]) -> QuotaRecord:
        k = cls.KIND
        return cls(name=_str(d, k, "name"), free_mb=_num(d, k, "free_mb"),
                   from_level=_str(d, k, "from", None),
                   finish_need_mb=_num(d, k, "finish_need_mb", None),
                   reserve_mb=_num(d, k, "reserve_mb", None), **_rest(d, cls))


@dataclass(frozen=True, slots=True)
class LossRecord(Record):
    """What a repair cut or skipped (``name`` ``recovery``): bytes ``range`` of ``segment``
    (``camera/000001.mcap``) and why; the last frame seq kept before it and the first after it
    (None: none), and ``seqs``: the exact seqs of the frames the range cost, for every kind of
    loss (``()``: none; None: a record from before seqs were exact). Only ``camera`` is required:
    readers count the ``seqs`` of any loss record; :mod:`camctl.common.losses` says it in words."""

    KIND = "loss"
    FIELDS = _known("camera", "segment", "range", "bytes", "reason", "seq_after", "seq_before",
                    "seqs")
    camera: str
    segment: str | None = None
    range: tuple[int, int] | None = None
    reason: str | None = None
    seq_after: int | None = None
    seq_before: int | None = None
    seqs: tuple[int, ...] | None = None
    name: str = "recovery"
    mono_ns: int | None = None
    wall_ns: int | None = None
    run: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def bytes(self) -> int | None:
        return None if self.range is None else self.range[1] - self.range[0]

    def encode(self) -> dict[str, Any]:
        out = {"kind": self.KIND, "name": self.name, "camera": self.camera}
        _put(out, "segment", self.segment)
        if self.range is not None:
            out["range"], out["bytes"] = list(self.range), self.bytes
        _put(out, "reason", self.reason)
        out["seq_after"], out["seq_before"] = self.seq_after, self.seq_before
        _put(out, "seqs", None if self.seqs is None else list(self.seqs))
        _stamp(out, self)
        return _done(out, self.extra)

    @classmethod
    def _from(cls, d: Mapping[str, Any]) -> LossRecord:
        k = cls.KIND
        span = _list_of(d, k, "range", int, "integers", None)
        if span is not None and (len(span) != 2 or span[1] < span[0]):
            raise RecordError(k, "range", f"must be [start, end], start <= end, got {list(span)}")
        if "bytes" in d and (span is None or _int(d, k, "bytes") != span[1] - span[0]):
            raise RecordError(k, "bytes", f"must be the range's length, got {_short(d['bytes'])}")
        return cls(camera=_str(d, k, "camera"), segment=_str(d, k, "segment", None),
                   range=None if span is None else (span[0], span[1]),
                   reason=_str(d, k, "reason", None),
                   seq_after=_int(d, k, "seq_after", None, null=True),
                   seq_before=_int(d, k, "seq_before", None, null=True),
                   seqs=_list_of(d, k, "seqs", int, "integers", None, null=True),
                   name=_str(d, k, "name", "recovery"), **_rest(d, cls))


# --- descent events from more than one source (camctl.board.triggers) -----------------------------
@dataclass(frozen=True, slots=True)
class ConfirmRecord(Record):
    """A descent event fired from ``first_source`` (gpio | imu); ``source``, another of its
    sources, then reported it too. ``name``: ``confirmed`` (within ``[motion] confirm_s``;
    ``offset_ms`` from the first report, negative when its moment was earlier, as a free fall
    backdated to its start can be), ``late`` (after it) or ``unconfirmed`` (``source`` said
    nothing within it; ``offset_ms`` None, ``mono_ns`` the deadline)."""

    KIND = "confirm"
    FIELDS = _known("event", "source", "first_source", "offset_ms")
    event: str
    source: str
    first_source: str
    offset_ms: float | None = None
    name: str = "confirmed"
    mono_ns: int | None = None
    wall_ns: int | None = None
    run: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def encode(self) -> dict[str, Any]:
        out = {"kind": self.KIND, "name": self.name, "event": self.event, "source": self.source,
               "first_source": self.first_source, "offset_ms": self.offset_ms}
        _stamp(out, self)
        return _done(out, self.extra)

    @classmethod
    def _from(cls, d: Mapping[str, Any]) -> ConfirmRecord:
        k = cls.KIND
        offset = _get(d, k, "offset_ms", (int, float), "a number", None, null=True)
        return cls(event=_str(d, k, "event"), source=_str(d, k, "source"),
                   first_source=_str(d, k, "first_source"), offset_ms=offset,
                   name=_str(d, k, "name", "confirmed"), **_rest(d, cls))


@dataclass(frozen=True, slots=True)
class SceneRecord(Record):
    """The simulated world's true moment of ``name`` (release | separation | touchdown), marked by
    the operator's ``scene`` command (:class:`camctl.board.sensors.scene.DropScene`): what a sim
    board's sensor-fired events are scored against. ``mono_ns`` is the mark."""

    KIND = "scene"
    FIELDS = _known()
    name: str
    mono_ns: int | None = None
    wall_ns: int | None = None
    run: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def encode(self) -> dict[str, Any]:
        out = {"kind": self.KIND, "name": self.name}
        _stamp(out, self)
        return _done(out, self.extra)

    @classmethod
    def _from(cls, d: Mapping[str, Any]) -> SceneRecord:
        return cls(name=_str(d, cls.KIND, "name"), **_rest(d, cls))


@dataclass(frozen=True, slots=True)
class CheckRecord(Record):
    """A barometric check of the descent from sensor ``source``: ``name`` ``descending`` (falling
    faster than ``[motion] baro_descent_mps``) or ``stopped``, at ``rate_mps`` (m/s, positive up:
    a descent is negative, as :class:`camctl.board.sensors.motion.BaroEvent` has it).
    A check, never a trigger: it moves no phase."""

    KIND = "check"
    FIELDS = _known("source", "rate_mps")
    name: str
    source: str = ""
    rate_mps: float | None = None
    mono_ns: int | None = None
    wall_ns: int | None = None
    run: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def encode(self) -> dict[str, Any]:
        out = {"kind": self.KIND, "name": self.name, "source": self.source,
               "rate_mps": self.rate_mps}
        _stamp(out, self)
        return _done(out, self.extra)

    @classmethod
    def _from(cls, d: Mapping[str, Any]) -> CheckRecord:
        k = cls.KIND
        return cls(name=_str(d, k, "name"), source=_str(d, k, "source", ""),
                   rate_mps=_get(d, k, "rate_mps", (int, float), "a number", None, null=True),
                   **_rest(d, cls))


# --- anything else --------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class OpaqueRecord(Record):
    """A record of a kind this code does not know (a newer board's), or, from :func:`read`, one
    that did not decode (``problem`` says why): kept as it came, written back unchanged."""

    kind: str
    fields: dict[str, Any] = field(default_factory=dict)
    problem: str = field(default="", compare=False)

    @property
    def mono_ns(self) -> int | None:  # type: ignore[override]
        return _plain_int(self.fields.get("mono_ns"))

    @property
    def wall_ns(self) -> int | None:  # type: ignore[override]
        return _plain_int(self.fields.get("wall_ns"))

    @property
    def run(self) -> int | None:  # type: ignore[override]
        return _plain_int(self.fields.get("run"))

    def encode(self) -> dict[str, Any]:
        return {"kind": self.kind, **{k: v for k, v in self.fields.items() if k != "kind"}}

    @classmethod
    def decode(cls, d: Mapping[str, Any]) -> OpaqueRecord:
        """Any record, kept as it is (no field is checked but ``kind``)."""
        kind = _kind_of(d)
        if not isinstance(kind, str):
            raise RecordError("", "kind", "is missing" if kind is None else f"must be a string, "
                                                                           f"got {_short(kind)}")
        return cls(kind, {k: v for k, v in d.items() if k != "kind"})


def _plain_int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


KINDS: dict[str, type[Record]] = {c.KIND: c for c in (
    PhaseRecord, EventRecord, FlightRecord, ResumeRecord, CamerasRecord, FaultRecord, LedgerRecord,
    DropRecord, QuotaRecord, LossRecord, ConfirmRecord, SceneRecord, CheckRecord)}


def decode(d: Mapping[str, Any]) -> Record:
    """The typed record of an event-log dict (an :class:`OpaqueRecord` for an unknown kind); raises
    RecordError naming the bad field of a known kind, or ``kind`` when there is none."""
    kind = _kind_of(d)
    cls = KINDS.get(kind) if isinstance(kind, str) else None
    return OpaqueRecord.decode(d) if cls is None else cls._from(d)


def read(records: Iterable[Any]) -> Iterator[Record]:
    """Every record of an event log, typed; never raises: one that does not decode is yielded as
    an :class:`OpaqueRecord` whose ``problem`` says why (readers skip it, as unknown kinds)."""
    for d in records:
        try:
            yield decode(d)
        except RecordError as exc:
            fields = dict(d) if isinstance(d, Mapping) else {"value": d}
            kind = fields.pop("kind", "")
            yield OpaqueRecord(kind if isinstance(kind, str) else "", fields, problem=str(exc))
