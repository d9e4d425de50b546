"""Where the last flight stood when the daemon stopped, read back from its own files at start.

Owns the reading side of a mid-flight restart. :func:`last_flight_state` reads the newest flight's
event log (every segment, torn tails tolerated) and returns the phase its last phase record
entered, when the descent began, and when the board was last heard of. Times are monotonic
(``*_mono_ns``) when the boot id is the same, else wall clock (``*_wall_ns``): see
docs/phases-and-gpio.md, section "Resume clocks". The daemon decides what to do with the state
(:meth:`camctl.board.daemon.Daemon.start`); the phase machine takes it through
:meth:`camctl.board.events.PhaseMachine.resume`.

Example::

    >>> state = last_flight_state(Path("/srv/camctl"))          # doctest: +SKIP
    >>> now = time.time_ns(), time.monotonic_ns()                 # doctest: +SKIP
    >>> state.flight, state.phase, state.gap_s(*now)              # doctest: +SKIP
    ('20261130T012233Z', 'DESCENT', 4.2)
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from camctl.board.config import ARMED, LANDED, SAFE, TOUCHDOWN, PhasesConfig
from camctl.common.records import FlightRecord, LedgerRecord, PhaseRecord, ResumeRecord, read
from camctl.store import iter_events, iter_frames, list_flights
from camctl.store.reader import count_frames

__all__ = ["FlightState", "boot_id", "last_flight_state", "restart_books"]

log = logging.getLogger("camctl.board.resume")


BOOT_ID_PATH = Path("/proc/sys/kernel/random/boot_id")


def boot_id(path: Path = BOOT_ID_PATH) -> str:
    """This boot's id (a UUID the kernel makes once per boot), or "" where there is none."""
    try:
        return path.read_text().strip()
    except OSError:
        return ""


@dataclass(frozen=True)
class FlightState:
    """The persisted state of one flight: wall-clock ns (``time.time_ns``) and, when the records
    were written during this boot, monotonic ns on this boot's clock (None otherwise)."""

    flight: str
    # the phase the last phase record entered (ARMED when only the flight's open record exists)
    phase: str
    entered_wall_ns: int  # when that phase was entered
    # when the first descent phase (or TOUCHDOWN) was entered, if it was
    descent_wall_ns: int | None
    last_seen_wall_ns: int  # the newest durable record of the board in this flight (event or frame)
    resumes: int = 0  # how many times this flight was resumed already
    entered_mono_ns: int | None = None
    descent_mono_ns: int | None = None
    last_seen_mono_ns: int | None = None

    @property
    def recording(self) -> bool:
        """True when the flight was still being recorded (not landed, not disarmed)."""
        return self.phase not in (SAFE, LANDED)

    @property
    def same_boot(self) -> bool:
        """True when the monotonic times are usable: the flight was last written this boot."""
        return self.entered_mono_ns is not None and self.last_seen_mono_ns is not None

    def gap_s(self, now_wall_ns: int, now_mono_ns: int | None = None) -> float:
        """Seconds from the last durable record to now: on the monotonic clock when it is the same
        boot (and ``now_mono_ns`` is given), else on the wall clock; never negative."""
        if now_mono_ns is not None and self.same_boot:
            assert self.last_seen_mono_ns is not None
            return max(0.0, (now_mono_ns - self.last_seen_mono_ns) / 1e9)
        return max(0.0, (now_wall_ns - self.last_seen_wall_ns) / 1e9)


def _segments(directory: Path) -> list[Path]:
    return sorted(directory.glob("*.mcap"))


def _log_records(flight_dir: Path) -> Iterator[dict]:
    """The flight's event records, segment by segment in file order (torn tails tolerated: this runs
    after the store recovery); a segment that cannot be read is skipped with a warning, never a
    failed start-up."""
    for seg in _segments(flight_dir / "events"):
        try:
            records = list(iter_events(seg))
        # the salvage reader should not raise; never let it stop a start-up
        except Exception as exc:
            log.warning("cannot read %s: %s", seg, exc)
            continue
        yield from records


def _last_frame_ns(flight_dir: Path, cameras: list[str]) -> tuple[int, int]:
    """(wall, monotonic) ns of the newest durable frame of any camera (0, 0 without one)."""
    wall = mono = 0
    for cam in cameras:
        segs = _segments(flight_dir / cam)
        for seg in reversed(segs):  # the newest segment with a durable frame
            frames = list(iter_frames(seg))
            # MCAP log_time: the frame's wall-clock time; publish_time: its sensor (monotonic) time
            if frames:
                wall = max(wall, max(f.log_ns for f in frames))
                mono = max(mono, max(f.publish_ns for f in frames))
                break
    return wall, mono


def last_flight_state(root: Path, phases: PhasesConfig | None = None) -> FlightState | None:
    """The newest flight's state under ``root``; None if there is none or its log says nothing."""
    flights = list_flights(Path(root))
    if not flights:
        return None
    flight = flights[-1]
    flight_dir = Path(root) / flight
    order = (phases or PhasesConfig()).order
    descent = set(order[order.index(ARMED) + 1:order.index(LANDED)])  # descent phases and TOUCHDOWN
    phase, entered, descent_at, last_seen, resumes = "", 0, None, 0, 0
    this_boot = boot_id()
    entered_mono: int | None = None
    descent_mono: int | None = None
    # None until a record of this boot; None again after one of another boot
    seen_mono: int | None = None
    for rec in read(_log_records(flight_dir)):
        wall = rec.wall_ns or 0
        last_seen = max(last_seen, wall)
        if not isinstance(rec, FlightRecord | PhaseRecord | ResumeRecord):
            # drops, ledger, losses: written by the store's own thread, not stamped with a boot
            continue
        mono = _int(rec.mono_ns) if this_boot and rec.boot_id == this_boot else None
        seen_mono = mono if mono is None else max(mono, seen_mono or 0)
        if isinstance(rec, FlightRecord) and rec.name == "open" and not phase:
            phase, entered, entered_mono = ARMED, wall, mono
        elif isinstance(rec, PhaseRecord):
            phase, entered, entered_mono = rec.phase_to, wall, mono
            if phase in descent and descent_at is None:
                descent_at, descent_mono = wall, mono
            if phase in (SAFE, ARMED):
                descent_at = descent_mono = None
        elif isinstance(rec, ResumeRecord):
            resumes += 1
            # the phase goes on from the times the resume used, on its boot's clock when it is this
            # one
            entered_mono = _int(rec.entered_mono_ns) if mono is not None else None
            descent_mono = _int(rec.descent_mono_ns) if mono is not None else None
    if not phase:
        return None
    if phase not in order:
        log.warning("flight %s: last phase %r is not in this config's phases; treating it as %s",
                    flight, phase, TOUCHDOWN)
        phase = TOUCHDOWN
    cameras = sorted(p.name for p in flight_dir.iterdir() if p.is_dir() and p.name != "events")
    frame_wall, frame_mono = _last_frame_ns(flight_dir, cameras)
    last_seen = max(last_seen, frame_wall) or time.time_ns()
    # the log ends in this boot: frames after its last record are of this boot too
    if seen_mono is not None:
        seen_mono = max(seen_mono, frame_mono)
    if descent_at is not None and descent_mono is None:
        # half a picture on the monotonic clock is worse than a whole one on the wall clock
        entered_mono = None
    return FlightState(flight, phase, entered, descent_at, last_seen, resumes, entered_mono,
                       descent_mono, seen_mono if entered_mono is not None else None)


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def _stored_frames(flight_dir: Path, camera: str) -> int:
    """Frames (video and stills) in a camera's segments (every segment is finished or repaired by
    the time a resume runs, so their statistics say it)."""
    return sum(count_frames(seg) for seg in _segments(flight_dir / camera))


def restart_books(flight_dir: Path, cameras: list[str], *, mono_ns: int,
                  wall_ns: int) -> list[dict]:
    """Ledger records that close each camera's books of the part of the flight before a restart.

    The ledger is flushed once a second and frames are written as they come, so what a dead process
    left never adds up: frames captured and counted but still in RAM (the ring, the encoder, the
    store's queue) are gone, and frames stored in the last interval were never counted as captured
    (``ls`` said NOT BALANCED after every kill -9). From what is on disk: ``captured - (stored +
    dropped + aged_out)`` frames were lost in the restart (``dropped`` reason ``restart``) when it
    is positive, and when it is negative that many stored frames are counted as ``captured`` (their
    count died with the process). One record per camera that needs it (``name`` ``restart``), in the
    ledger's own format."""
    from camctl.common.ledger import RESTART, read_ledger

    books = read_ledger(_log_records(flight_dir))
    out = []
    for cam in cameras:
        b = books.get(cam, {"captured": 0, "aged_out": 0, "dropped": {}})
        accounted = _stored_frames(flight_dir, cam) + sum(b["dropped"].values()) + b["aged_out"]
        diff = b["captured"] - accounted
        if diff:
            out.append(LedgerRecord(camera=cam, captured=max(0, -diff),
                                    dropped={RESTART: diff} if diff > 0 else {}, name="restart",
                                    since_ns=mono_ns, mono_ns=mono_ns, wall_ns=wall_ns).encode())
    return out
