"""Where the last flight stood when the daemon stopped, read back from its own files at start.

Owns the reading side of a mid-flight restart. :func:`last_flight_state` reads the newest flight's
event log (every segment, torn tails tolerated) and returns the phase its last phase record
entered, when the descent began, and when the board was last heard of: on the wall clock
(``*_wall_ns``), on the flight's timeline (``*_flight_ns``: run 0's monotonic clock, each later
run's mapped by its resume record, :mod:`camctl.common.flightclock`) and, when the flight was last
written this boot, on this boot's monotonic clock (``*_mono_ns``). It also says which run of the
daemon wrote last, on which boot, and that run's clock offset, from which
:func:`clock_offset` maps the next run's clock (see docs/phases-and-gpio.md, "Resume clocks").
The daemon decides what to do with the state (:func:`camctl.board.rejoin.resume_last_flight`);
the phase machine takes it through :meth:`camctl.board.events.PhaseMachine.resume`.

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
from camctl.common.flightclock import FlightClock
from camctl.common.records import FlightRecord, LedgerRecord, PhaseRecord, ResumeRecord, read
from camctl.store import iter_events, iter_frames, list_flights
from camctl.store.reader import count_frames

__all__ = ["FlightState", "ResumeClock", "boot_id", "clock_offset", "flight_books",
           "last_flight_state", "restart_books", "with_records"]

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
    # the run of the daemon that wrote last (0: the one that opened the flight), its boot ("":
    # unknown, no record of it says) and its clock's offset onto the flight's timeline
    run: int = 0
    boot_id: str = ""
    clock_offset_ns: int = 0
    # on the flight's timeline (None: not known there, e.g. records without a boot id)
    entered_flight_ns: int | None = None
    descent_flight_ns: int | None = None
    last_seen_flight_ns: int | None = None

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


@dataclass(frozen=True)
class ResumeClock:
    """How a resuming run's monotonic clock maps onto the flight's timeline."""

    offset_ns: int | None  # flight_ns = mono_ns + offset_ns (None: not known; see clock_offset)
    gap_ns: int  # how long the board was down (the gap used)
    how: str  # the resume record's ``clock``: monotonic | wall (rebooted) | uptime (...)


def clock_offset(state: FlightState, *, now_wall_ns: int, now_mono_ns: int,
                 boot: str) -> ResumeClock:
    """The clock of the run that resumes ``state`` now, on boot ``boot``.

    The same boot as the run that wrote last: the monotonic clock went on, so the offset is that
    run's and the gap is on the monotonic clock. A new boot (a reboot restarted the monotonic clock
    near 0): the new run's ``now`` on the flight's timeline is the last run's last-seen time plus
    the gap, so ``offset = last_seen_flight + gap - now_mono``. The gap is the wall clock's
    (``now_wall - last_seen_wall``) checked against the uptime (``now_mono``: time since this boot
    began; the old run ended before it, so the real gap is at least that): a Pi without an RTC
    boots with its clock behind (until NTP sets it), and then the uptime is used and the record
    says so. When the last run's times are not known on the flight's timeline (records without a
    boot id), the offset is None (readers fall back to the wall clock: FlightClock)."""
    same = bool(boot) and state.boot_id == boot and state.last_seen_flight_ns is not None
    if same:
        assert state.last_seen_flight_ns is not None
        gap = max(0, now_mono_ns + state.clock_offset_ns - state.last_seen_flight_ns)
        return ResumeClock(state.clock_offset_ns, gap, "monotonic")
    wall_gap = now_wall_ns - state.last_seen_wall_ns
    if not (boot and state.boot_id):
        # no record says which boot wrote last (an older writer's records): the wall clock alone
        gap, how = max(0, wall_gap), "wall (boot unknown)"
    elif wall_gap >= now_mono_ns:
        gap, how = wall_gap, "wall (rebooted)"
    else:
        gap = now_mono_ns
        how = f"uptime (wall clock behind by {(now_mono_ns - wall_gap) / 1e9:.1f} s)"
    if state.last_seen_flight_ns is None:
        return ResumeClock(None, gap, how)
    return ResumeClock(state.last_seen_flight_ns + gap - now_mono_ns, gap, how)


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


def _last_frame_ns(flight_dir: Path, cameras: list[str]) -> dict[int, tuple[int, int]]:
    """Per run, (wall, monotonic) ns of the newest durable frame of any camera, from each camera's
    newest segment with a durable frame (the last run that wrote to it: runs write new segments)."""
    out: dict[int, tuple[int, int]] = {}
    for cam in cameras:
        segs = _segments(flight_dir / cam)
        for seg in reversed(segs):  # the newest segment with a durable frame
            frames = list(iter_frames(seg))
            # MCAP log_time: the frame's wall-clock time; publish_time: its sensor (monotonic) time
            for f in frames:
                wall, mono = out.get(f.run, (0, 0))
                out[f.run] = (max(wall, f.log_ns), max(mono, f.publish_ns))
            if frames:
                break
    return out


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
    records = list(read(_log_records(flight_dir)))
    clock = FlightClock.from_events(records)
    # the flight's timeline: a record's time there when its boot is known (its run's clock mapped)
    entered_t: int | None = None
    descent_t: int | None = None
    boots: dict[int, str] = {}  # run -> its boot (the newest boot-stamped record of it says)
    last_mono: dict[int, int] = {}  # run -> its newest monotonic time (records, then frames)
    for rec in records:
        wall = rec.wall_ns or 0
        last_seen = max(last_seen, wall)
        run = rec.run or 0
        if not isinstance(rec, FlightRecord | PhaseRecord | ResumeRecord):
            # drops, ledger, losses: written by the store's thread; their run says their clock
            # (records written before runs have none and may be of any boot: left out)
            if rec.run is not None and _int(rec.mono_ns):
                last_mono[run] = max(last_mono.get(run, 0), rec.mono_ns or 0)
            continue
        if rec.boot_id:
            if boots.get(run, rec.boot_id) != rec.boot_id:
                last_mono.pop(run, None)  # an older flight's run 0 on two boots: the newer counts
            boots[run] = rec.boot_id
            if _int(rec.mono_ns):
                last_mono[run] = max(last_mono.get(run, 0), rec.mono_ns or 0)
        t = clock.place(rec) if rec.boot_id and _int(rec.mono_ns) else None
        if isinstance(rec, FlightRecord) and rec.name == "open" and not phase:
            phase, entered, entered_t = ARMED, wall, t
        elif isinstance(rec, PhaseRecord):
            phase, entered, entered_t = rec.phase_to, wall, t
            if phase in descent and descent_at is None:
                descent_at, descent_t = wall, t
            if phase in (SAFE, ARMED):
                descent_at = descent_t = None
        elif isinstance(rec, ResumeRecord):
            resumes += 1
            # the phase goes on from the times the resume used, on its run's clock (mapped as
            # the record itself is: an older record without run is its resumes-th run's)
            off = None if t is None else t - (rec.mono_ns or 0)
            entered_t = (rec.entered_mono_ns + off
                         if off is not None and _time(rec.entered_mono_ns) else None)
            descent_t = (rec.descent_mono_ns + off
                         if off is not None and _time(rec.descent_mono_ns) else None)
    if not phase:
        return None
    if phase not in order:
        log.warning("flight %s: last phase %r is not in this config's phases; treating it as %s",
                    flight, phase, TOUCHDOWN)
        phase = TOUCHDOWN
    cameras = sorted(p.name for p in flight_dir.iterdir() if p.is_dir() and p.name != "events")
    frames = _last_frame_ns(flight_dir, cameras)
    last_seen = max([last_seen, *(w for w, _ in frames.values())]) or time.time_ns()
    run = max([0, *boots, *last_mono, *frames])  # the run that wrote last
    if run in frames:
        last_mono[run] = max(last_mono.get(run, 0), frames[run][1])
    offset = clock.offset_ns(run)
    boot = boots.get(run, "")
    seen_t = last_mono[run] + offset if boot and run in last_mono else None
    if descent_at is not None and descent_t is None:
        # half a picture on the monotonic clock is worse than a whole one on the wall clock
        entered_t = None
    if entered_t is None:
        descent_t = None
    this_boot = boot_id()
    # on this boot's monotonic clock: when the run that wrote last was of this boot
    mono = (lambda t: None if t is None else t - offset) if this_boot and boot == this_boot \
        else (lambda t: None)
    return FlightState(flight, phase, entered, descent_at, last_seen, resumes, mono(entered_t),
                       mono(descent_t), mono(seen_t), run=run, boot_id=boot,
                       clock_offset_ns=offset, entered_flight_ns=entered_t,
                       descent_flight_ns=descent_t, last_seen_flight_ns=seen_t)


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def _time(value: object) -> bool:
    """A persisted monotonic time (any integer: a time before this boot began is negative)."""
    return isinstance(value, int) and not isinstance(value, bool)


def _stored_frames(flight_dir: Path, camera: str) -> int:
    """Frames (video and stills) in a camera's segments (every segment is finished or repaired by
    the time a resume runs, so their statistics say it)."""
    return sum(count_frames(seg) for seg in _segments(flight_dir / camera))


def restart_books(flight_dir: Path, cameras: list[str], *, mono_ns: int, wall_ns: int,
                  books: dict[str, dict] | None = None) -> list[dict]:
    """Ledger records that close each camera's books of the part of the flight before a restart.

    The ledger is flushed once a second and frames are written as they come, so what a dead process
    left never adds up: frames captured and counted but still in RAM (the ring, the encoder, the
    store's queue) are gone, and frames stored in the last interval were never counted as captured
    (``ls`` said NOT BALANCED after every kill -9). From what is on disk: ``captured - (stored +
    dropped + aged_out)`` frames were lost in the restart (``dropped`` reason ``restart``) when it
    is positive, and when it is negative that many stored frames are counted as ``captured`` (their
    count died with the process). One record per camera that needs it (``name`` ``restart``), in the
    ledger's own format. ``books``: the flight's :func:`flight_books`, when already read."""
    from camctl.common.ledger import RESTART

    books = flight_books(flight_dir, cameras) if books is None else books
    out = []
    for cam in cameras:
        b = books.get(cam) or _no_books()
        diff = b["captured"] - (b["stored"] + sum(b["dropped"].values()) + b["aged_out"])
        if diff:
            out.append(LedgerRecord(camera=cam, captured=max(0, -diff),
                                    dropped={RESTART: diff} if diff > 0 else {}, name="restart",
                                    since_ns=mono_ns, mono_ns=mono_ns, wall_ns=wall_ns).encode())
    return out


def _no_books() -> dict:
    return {"captured": 0, "aged_out": 0, "dropped": {}, "stills_missed": 0, "stored": 0}


def flight_books(flight_dir: Path, cameras: list[str]) -> dict[str, dict]:
    """Each camera's books of the flight as its files hold them: the ledger's ``captured``,
    ``aged_out``, ``dropped`` {reason: n} (the store's drop and loss records included) and
    ``stills_missed``, with ``stored`` frames. A resumed board starts its STATUS from these (with
    its restart books: :func:`with_records`), so STATUS, the store and ``ls`` give one set of
    books for the whole flight (issue 26, defect 10), not the run's since the restart."""
    from camctl.common.ledger import read_ledger

    books = read_ledger(_log_records(flight_dir))
    return {cam: {**(books.get(cam) or _no_books()), "stored": _stored_frames(flight_dir, cam)}
            for cam in sorted(set(cameras) | set(books))}


def with_records(books: dict[str, dict], records: list[dict]) -> dict[str, dict]:
    """``books`` (:func:`flight_books`) with ledger ``records`` not on disk yet added (a resume's
    restart books), read as the ledger reads them: no second pass over the flight's files."""
    from camctl.common.ledger import add_books, read_ledger

    out = dict(books)
    for cam, more in read_ledger(records).items():
        out[cam] = add_books(out.get(cam) or _no_books(), more)
    return out
