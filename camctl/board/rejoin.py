"""Rejoining a flight after a restart: the acting side of :mod:`camctl.board.resume`.

The last flight's persisted phase and the lines' current levels decide where the board resumes: a
flight still being recorded goes on into the same folder (the gap is logged with its length, and the
books of the run that died are closed); a landed one is served again; a landed, then disarmed one
leaves the board SAFE.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable

from camctl.board.cameras_fleet import CameraFleet, stored_next_seqs
from camctl.board.config import LANDED, SAFE
from camctl.board.events import PhaseMachine
from camctl.board.flight import FlightRecorder
from camctl.board.flight_cameras import flight_cameras, record_camera_change
from camctl.board.resume import FlightState
from camctl.common.records import ResumeRecord
from camctl.exc import ResumeError, StoreError

__all__ = ["apply_levels", "resume_last_flight"]

log = logging.getLogger("camctl.board.daemon")


def resume_last_flight(recorder: FlightRecorder, machine: PhaseMachine, fleet: CameraFleet, *,
                       levels: Callable[[], dict[str, bool]],
                       publish: Callable[[str, dict], None]) -> dict | None:
    """Re-enter the phase the last flight's event log ended in; the resume record, or None (SAFE).
    """
    from camctl.board.resume import last_flight_state

    root = recorder.root
    try:
        state = last_flight_state(root, recorder.cfg.phases)
    except Exception as exc:  # an unreadable log must not keep the board down: it starts SAFE
        log.error("cannot read the last flight's state in %s: %s; starting SAFE", root, exc)
        return None
    if state is None or state.phase == SAFE:
        return None
    if state.phase == LANDED and recorder.disarmed_flight() == state.flight:
        return None  # landed, then disarmed: the board was SAFE when it stopped
    now_wall, now_mono = time.time_ns(), time.monotonic_ns()
    rec = _resume_record(state, now_wall, now_mono, levels(), recorder.boot_id)
    entered, descent = rec.entered_mono_ns, rec.descent_mono_ns
    if state.phase == LANDED:  # landed stays landed: serve it, record nothing, wait for a disarm
        try:
            machine.resume(LANDED, entered_ns=entered)
        except ResumeError as exc:
            log.error("not resuming flight %s: %s", state.flight, exc)
            return None
        recorder.landed(state.flight)
        # its books as its files hold them, closed: STATUS says them (this run records nothing)
        recorder.before = close_landed_books(recorder, state.flight, now_mono, now_wall,
                                             resume=rec)
        log.info("flight %s had landed; resuming LANDED (disarm for the next flight)", state.flight)
        return rec.encode()
    # every camera the flight had and this config's (a camera renamed between runs is both)
    cameras = _with(flight_cameras(root / state.flight).every, recorder.cameras)
    try:
        store = recorder.open_store(state.flight, resume=True, run=rec.run or 0,
                                   cameras=cameras)
    except (OSError, StoreError) as exc:
        log.error("cannot resume flight %s in %s: %s; starting SAFE", state.flight, root, exc)
        return None
    try:
        machine.resume(state.phase, entered_ns=entered, descent_started_ns=descent)
    except ResumeError as exc:  # an edge during start-up moved the machine first: that flight wins
        log.error("not resuming flight %s: %s", state.flight, exc)
        store.close()
        return None
    fleet.set_ledger(recorder.adopt(store, state.flight))
    fleet.continue_seqs(stored_next_seqs(root / state.flight, recorder.cameras))  # seqs unique
    fleet.set_phase(state.phase)
    store.log_event(rec)
    changed = record_camera_change(root / state.flight, fleet.describe(),
                                   run=rec.run or rec.resumes, mono_ns=now_mono,
                                   wall_ns=now_wall, boot_id=recorder.boot_id)
    if changed is not None:  # the config's cameras are not the last run's
        store.log_event(changed)
    # what the dead process left in RAM, or stored without counting it, closes the books of the
    # flight so far (a camera removed since included: its books close as they stood)
    from camctl.board.resume import flight_books, restart_books, with_records

    # the flight's books so far, read once (before this run logs anything): they give the
    # records that close them, and STATUS counts on from both
    prior = flight_books(root / state.flight, cameras)
    closing = restart_books(root / state.flight, cameras, mono_ns=now_mono, wall_ns=now_wall,
                            books=prior)
    recorder.before = with_records(prior, closing)
    for books in closing:
        store.log_event(books)
    store.commit()
    publish("phase", {"board": recorder.board, "flight": state.flight, **rec.encode()})
    log.warning("resumed flight %s in %s after a gap of %.3f s (restart %d of this flight)",
                state.flight, state.phase, rec.gap_s, rec.resumes)
    return rec.encode()


def _resume_record(state: FlightState, now_wall: int, now_mono: int, levels: dict[str, bool],
                   boot_id: str) -> ResumeRecord:
    """The record of this resume: this run (the ``resumes``-th), its clock's offset onto the
    flight's timeline and the gap (:func:`camctl.board.resume.clock_offset`), and the phase's and
    the descent's start on this boot's monotonic clock (before this boot began: negative)."""
    from camctl.board.resume import clock_offset

    rc = clock_offset(state, now_wall_ns=now_wall, now_mono_ns=now_mono, boot=boot_id)

    def mono(flight_ns: int | None, wall_ns: int | None) -> int | None:
        """A persisted time on this boot's monotonic clock: from the flight's timeline when both
        the time and this run's offset are known there, else from the wall clock (its span before
        the last-seen time, then the gap)."""
        if flight_ns is not None and rc.offset_ns is not None:
            return min(flight_ns - rc.offset_ns, now_mono)
        if wall_ns is None:
            return None
        return now_mono - rc.gap_ns - max(0, state.last_seen_wall_ns - wall_ns)

    entered = mono(state.entered_flight_ns, state.entered_wall_ns)
    descent = mono(state.descent_flight_ns, state.descent_wall_ns)
    if state.descent_wall_ns is not None and descent is None:
        entered = None  # never half a picture on one clock
    if entered is None:
        entered = mono(None, state.entered_wall_ns) or now_mono
        descent = mono(None, state.descent_wall_ns)
    # a run whose resume record was torn off the log still wrote records under its number
    run = max(state.resumes, state.run) + 1
    return ResumeRecord(flight=state.flight, phase=state.phase, gap_s=round(rc.gap_ns / 1e9, 3),
                        clock=rc.how, last_seen_wall_ns=state.last_seen_wall_ns,
                        entered_wall_ns=state.entered_wall_ns, entered_mono_ns=entered,
                        descent_mono_ns=descent, resumes=state.resumes + 1, pid=os.getpid(),
                        levels=levels, mono_ns=now_mono, wall_ns=now_wall, boot_id=boot_id,
                        run=run, clock_offset_ns=rc.offset_ns)


def close_landed_books(recorder: FlightRecorder, flight: str, mono_ns: int, wall_ns: int, *,
                       resume: ResumeRecord | None = None) -> dict[str, dict]:
    """A flight killed between LANDED and its finish lost its last ledger interval: write the
    records that close its books (:func:`camctl.board.resume.restart_books`) and finish it again.
    Nothing when they close. ``resume``: this run's resume record, logged first when anything is
    (the books' times are on this run's clock, which only it maps onto the flight's timeline).
    Returns the flight's books (:func:`camctl.board.resume.flight_books`), closed when written."""
    from camctl.board.resume import flight_books, restart_books, with_records

    # the flight's cameras, not this config's: a camera renamed since never recorded into it
    cameras = flight_cameras(recorder.root / flight).every or recorder.cameras
    prior = flight_books(recorder.root / flight, cameras)
    books = restart_books(recorder.root / flight, cameras, mono_ns=mono_ns, wall_ns=wall_ns,
                          books=prior)
    if not books:
        return prior
    try:
        run = (resume.run or 0) if resume is not None else 0
        store = recorder.open_store(flight, resume=True, drops=False, run=run,
                                   cameras=cameras)
        try:
            if resume is not None:
                store.log_event(resume)
            for rec in books:
                store.log_event(rec)
            store.finish()
        finally:
            store.close()
    # the books stay open (ls says so); the flight is still served
    except (OSError, StoreError) as exc:
        log.warning("cannot close the books of landed flight %s: %s", flight, exc)
        return prior
    return with_records(prior, books)


def _with(cameras: list[str], more: list[str]) -> list[str]:
    return cameras + [c for c in more if c not in cameras]


def apply_levels(machine: PhaseMachine, levels: dict[str, bool], *, resumed: bool) -> None:
    """What the lines say now, after a resume: an edge that came while the daemon was down still
    counts (gpiozero calls nobody for a level that already holds). The arm key found off is the
    key turned off while the daemon was down: the same rule as a key-off while it runs
    (:meth:`PhaseMachine.arm_key_off`: ARMED disarms, a descent goes on)."""
    if not resumed:
        if levels.get("arm"):
            log.warning("the arm line is active at start: not arming (turn it off and on to arm)")
        return
    if "arm" in levels and not levels["arm"]:
        machine.arm_key_off(source="resume")
    phase = machine.phase
    if phase in (SAFE, LANDED):
        return
    for event, active in levels.items():
        if active and event not in ("arm", "disarm"):
            machine.handle(event, source="resume")
