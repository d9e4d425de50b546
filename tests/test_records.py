"""The event log's typed records: every kind round-trips, the old flight and today's writers' dicts
decode and encode back unchanged, bad fields are named, unknown kinds and fields survive."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from camctl.common.records import (
    KINDS,
    CamerasRecord,
    CheckRecord,
    ConfirmRecord,
    DropRecord,
    EventRecord,
    FaultRecord,
    FlightRecord,
    LedgerRecord,
    LossRecord,
    OpaqueRecord,
    PhaseRecord,
    QuotaRecord,
    Record,
    ResumeRecord,
    SceneRecord,
    decode,
    read,
)
from camctl.exc import RecordError
from camctl.store import iter_events

OLD_STORE = Path(__file__).parent / "fixtures" / "old-store"

text = st.text(max_size=12)
ints = st.integers(min_value=-(2**63), max_value=2**64)
times = st.none() | st.integers(min_value=0, max_value=2**63)
nums = st.floats(allow_nan=False, allow_infinity=False) | ints
json_values = st.recursive(
    st.none() | st.booleans() | ints | st.floats(allow_nan=False, allow_infinity=False) | text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(text, inner, max_size=3),
    max_leaves=6)
objects = st.dictionaries(text, json_values, max_size=3)
runs = st.none() | st.integers(min_value=0, max_value=2**31)


def extras(cls: type[Record]) -> st.SearchStrategy[dict[str, Any]]:
    """Fields a newer writer might add: anything the class does not know."""
    return st.dictionaries(text.filter(lambda k: k not in cls.FIELDS), json_values, max_size=3)


STRATEGIES: dict[type[Record], st.SearchStrategy[Record]] = {
    PhaseRecord: st.builds(
        PhaseRecord, phase_from=text, phase_to=text, event=text, source=text, mono_ns=times,
        wall_ns=times, skipped=st.lists(text, max_size=3).map(tuple),
        boot_id=st.none() | text, run=runs, extra=extras(PhaseRecord)),
    EventRecord: st.builds(
        EventRecord, name=text, source=text, phase=text, outcome=text, mono_ns=times,
        wall_ns=times, phase_to=text, run=runs, extra=extras(EventRecord)),
    FlightRecord: st.builds(
        FlightRecord, board=text, flight=text, mono_ns=times, wall_ns=times,
        boot_id=st.none() | text, cameras=objects, name=text, run=runs, extra=extras(FlightRecord)),
    ResumeRecord: st.builds(
        ResumeRecord, flight=text, phase=text, gap_s=nums, clock=text, last_seen_wall_ns=ints,
        entered_wall_ns=ints, entered_mono_ns=ints, descent_mono_ns=st.none() | ints,
        resumes=ints, pid=ints, levels=objects, mono_ns=times, wall_ns=times,
        boot_id=st.none() | text, clock_offset_ns=st.none() | ints, run=runs,
        extra=extras(ResumeRecord)),
    CamerasRecord: st.builds(
        CamerasRecord, flight=text, added=st.lists(text, max_size=3).map(tuple),
        removed=st.lists(text, max_size=3).map(tuple), cameras=objects, mono_ns=times,
        wall_ns=times, boot_id=st.none() | text, name=text, run=runs,
        extra=extras(CamerasRecord)),
    FaultRecord: st.builds(
        FaultRecord, error=text, message=text, camera=text, name=text,
        activity=st.none() | text, segment=st.none() | text, mono_ns=times, wall_ns=times,
        run=runs, extra=extras(FaultRecord)),
    LedgerRecord: st.builds(
        LedgerRecord, camera=text, captured=ints, aged_out=ints,
        dropped=st.dictionaries(text, ints, max_size=3), stills_missed=ints, name=text,
        since_ns=times, mono_ns=times, wall_ns=times, run=runs, extra=extras(LedgerRecord)),
    DropRecord: st.builds(
        DropRecord, name=text, camera=text, count=ints, total=st.none() | ints, mono_ns=times,
        wall_ns=times, run=runs, extra=extras(DropRecord)),
    QuotaRecord: st.builds(
        QuotaRecord, name=text, free_mb=nums, from_level=st.none() | text,
        finish_need_mb=st.none() | nums, reserve_mb=st.none() | nums, mono_ns=times,
        wall_ns=times, run=runs, extra=extras(QuotaRecord)),
    LossRecord: st.builds(
        LossRecord, camera=text, segment=st.none() | text,
        range=st.none() | st.tuples(ints, ints).map(lambda t: (min(t), max(t))),
        reason=st.none() | text,
        seq_after=st.none() | ints, seq_before=st.none() | ints,
        seqs=st.none() | st.lists(ints, max_size=4).map(tuple), name=text, mono_ns=times,
        wall_ns=times, run=runs, extra=extras(LossRecord)),
    ConfirmRecord: st.builds(
        ConfirmRecord, event=text, source=text, first_source=text, offset_ms=st.none() | nums,
        name=text, mono_ns=times, wall_ns=times, run=runs, extra=extras(ConfirmRecord)),
    SceneRecord: st.builds(
        SceneRecord, name=text, mono_ns=times, wall_ns=times, run=runs,
        extra=extras(SceneRecord)),
    CheckRecord: st.builds(
        CheckRecord, name=text, source=text, rate_mps=st.none() | nums, mono_ns=times,
        wall_ns=times, run=runs, extra=extras(CheckRecord)),
    OpaqueRecord: st.builds(
        OpaqueRecord, kind=text.filter(lambda k: k not in KINDS),
        fields=st.dictionaries(text.filter(lambda k: k != "kind"), json_values, max_size=4)),
}


def test_every_kind_has_a_round_trip_strategy() -> None:
    assert {c.KIND for c in STRATEGIES if c is not OpaqueRecord} == set(KINDS)


@given(st.one_of(*STRATEGIES.values()))
def test_every_kind_round_trips_through_json(rec: Record) -> None:
    encoded = rec.encode()
    on_flash = json.loads(json.dumps(encoded))
    back = decode(on_flash)
    assert type(back) is type(rec) and back == rec
    assert back.encode() == encoded


def _old_records() -> list[dict]:
    segs = sorted(OLD_STORE.glob("*/events/*.mcap"))
    assert segs, "the old-store fixture has no event log"
    return [r for seg in segs for r in iter_events(seg)]


def test_the_old_flight_decodes_and_encodes_back_as_written() -> None:
    records = _old_records()
    kinds = set()
    for raw in records:
        rec = decode(raw)
        assert not isinstance(rec, OpaqueRecord), raw
        assert rec.extra == {}, raw  # every field written by the old code is a known one
        assert list(rec.encode().items()) == list(raw.items())  # same fields, values and order
        kinds.add(rec.KIND)
    assert kinds == {"phase", "event", "flight", "ledger"}


# What each writer puts in the event log today (the writers build them with the record classes,
# but what is on flash must stay as it was written before them, faults of the store aside).
WRITTEN_TODAY = [
    # board/capture.py CameraRunner._fault
    {"kind": "fault", "camera": "down", "error": "CameraTimeout", "message": "no frame in 2 s",
     "mono_ns": 5, "wall_ns": 6},
    # board/cameras_fleet.py, the hung-capture fault (daemon.py watch_capture)
    {"kind": "fault", "camera": "down", "error": "CaptureHung", "message": "stuck", "activity":
     "capture_request", "mono_ns": 5, "wall_ns": 6},
    # board/rejoin.py _resume_record
    {"kind": "resume", "name": "DESCENT", "flight": "F1", "phase": "DESCENT", "gap_s": 1.25,
     "clock": "wall (rebooted)", "last_seen_wall_ns": 10, "entered_wall_ns": 9,
     "entered_mono_ns": 3, "descent_mono_ns": None, "resumes": 1, "pid": 42,
     "levels": {"release": True}, "mono_ns": 4, "wall_ns": 11, "boot_id": "b"},
    # board/resume.py restart_books
    {"kind": "ledger", "name": "restart", "camera": "up", "since_ns": 7, "mono_ns": 7, "wall_ns": 8,
     "captured": 0, "aged_out": 0, "dropped": {"restart": 3}, "stills_missed": 0},
    # store/_space.py SpaceBudget.tick
    {"kind": "quota", "name": "LOW", "from": "OK", "free_mb": 300.5, "finish_need_mb": 1.25,
     "reserve_mb": 512.0, "mono_ns": 1, "wall_ns": 2},
    {"kind": "quota", "name": "disk_space_returned", "free_mb": 900.0, "mono_ns": 1, "wall_ns": 2},
    # store/_committer.py _io_failure (the store's faults since error became the type name)
    {"kind": "fault", "name": "disk_full", "error": "OSError", "message": "[Errno 28] No space",
     "segment": "/f/down/000002.mcap", "mono_ns": 1, "wall_ns": 2},
    # store/_committer.py _report_drops
    {"kind": "drop", "name": "quota", "camera": "down", "count": 2, "total": 5, "mono_ns": 1,
     "wall_ns": 2},
    # store/_repair.py describe_losses (times are stamped by append_events)
    {"kind": "loss", "name": "recovery", "camera": "a", "segment": "a/000001.mcap",
     "range": [100, 250], "bytes": 150, "reason": "torn tail: written after the last commit, never "
     "durable", "seq_after": 11, "seq_before": None, "seqs": [12], "mono_ns": 1, "wall_ns": 2},
    {"kind": "loss", "name": "recovery", "camera": "a", "segment": "a/000001.mcap",
     "range": [8, 40], "bytes": 32, "reason": "damaged: fails its check", "seq_after": None,
     "seq_before": 0},
]


@pytest.mark.parametrize("raw", WRITTEN_TODAY, ids=lambda r: f"{r['kind']}-{r['name']}"
                         if "name" in r else r["kind"])
def test_records_written_today_encode_back_unchanged(raw: dict) -> None:
    rec = decode(raw)
    assert type(rec) is KINDS[raw["kind"]] and rec.extra == {}
    assert list(rec.encode().items()) == list(raw.items())


def test_a_fault_in_the_stores_old_form_reads_error_as_its_type_and_message_as_its_text() -> None:
    # the old store/writer.py _fault: error = f"{type(exc).__name__}: {exc}", no message
    rec = decode({"kind": "fault", "name": "index_write_failed",
                  "error": "OSError: [Errno 28] No space left on device", "mono_ns": 1})
    assert (rec.error, rec.message) == ("OSError", "[Errno 28] No space left on device")
    assert rec.name == "index_write_failed" and rec.camera == ""
    # the old store/writer.py disk_full / store_io_error: error = str(exc), the text alone
    rec = decode({"kind": "fault", "name": "disk_full", "segment": "down/000002.mcap",
                  "error": "[Errno 28] No space left on device"})
    assert (rec.error, rec.message, rec.segment) == ("", "[Errno 28] No space left on device",
                                                      "down/000002.mcap")
    # one meaning from here on: written back, both fields say what they mean
    assert rec.encode()["error"] == "" and rec.encode()["message"].startswith("[Errno 28]")
    # a record with a message is never reinterpreted, whatever its error says
    rec = decode({"kind": "fault", "camera": "down", "error": "Odd: name", "message": "text"})
    assert (rec.error, rec.message) == ("Odd: name", "text")


@pytest.mark.parametrize(("raw", "field"), [
    ({"kind": "ledger", "camera": "down", "captured": True}, "captured"),  # a bool is not an int
    ({"kind": "ledger", "camera": "down", "dropped": {"encoder_behind": "2"}}, "dropped"),
    ({"kind": "ledger", "captured": 1}, "camera"),
    ({"kind": "phase", "phase_from": "SAFE", "event": "arm", "source": "gpio", "mono_ns": 1,
      "wall_ns": 2}, "phase_to"),
    ({"kind": "phase", "name": "LANDED", "phase_from": "SAFE", "phase_to": "ARMED",
      "event": "arm", "source": "gpio", "mono_ns": 1, "wall_ns": 2}, "name"),
    ({"kind": "event", "name": "arm", "source": "gpio", "phase": "SAFE", "outcome": "transition",
      "mono_ns": "1", "wall_ns": 2}, "mono_ns"),
    ({"kind": "fault", "camera": 3, "error": "X", "message": "y"}, "camera"),
    ({"kind": "drop", "name": "quota", "camera": "down", "count": False}, "count"),
    ({"kind": "quota", "name": "LOW", "free_mb": True}, "free_mb"),
    ({"kind": "loss", "camera": "a", "segment": "a/1.mcap", "range": [9, 3], "reason": "r"},
     "range"),
    ({"kind": "loss", "camera": "a", "segment": "a/1.mcap", "range": [3, 9], "bytes": 7,
      "reason": "r"}, "bytes"),
    ({"kind": "loss", "camera": "a", "segment": "a/1.mcap", "range": [3, 9], "reason": "r",
      "seqs": [1, True]}, "seqs"),
    ({"kind": "loss", "camera": "a", "bytes": 7}, "bytes"),
    ({"kind": "resume", "name": "DESCENT", "flight": "F", "phase": "DESCENT", "gap_s": 1.0,
      "clock": "monotonic", "last_seen_wall_ns": 1, "entered_wall_ns": 1, "entered_mono_ns": 1,
      "descent_mono_ns": 1, "resumes": 1, "levels": {}}, "pid"),
    ({"kind": "ledger", "camera": "a", "run": -1}, "run"),
    ({"kind": "ledger", "camera": "a", "run": True}, "run"),
    ({"kind": "drop", "name": "quota", "camera": "a", "run": "1"}, "run"),
    ({"kind": "confirm", "event": "release", "source": "imu", "first_source": "gpio",
      "offset_ms": "3"}, "offset_ms"),
    ({"kind": "confirm", "event": "release", "first_source": "gpio"}, "source"),
    ({"kind": "scene", "mono_ns": 1}, "name"),
    ({"kind": "check", "name": "descending", "rate_mps": True}, "rate_mps"),
    ({"name": "arm"}, "kind"),
    ({"kind": 7}, "kind"),
    (["kind", "phase"], "kind"),
])
def test_a_bad_field_is_named(raw: Any, field: str) -> None:
    with pytest.raises(RecordError) as info:
        decode(raw)
    assert info.value.field == field
    assert repr(field) in str(info.value)


def test_an_unknown_kind_is_kept_as_it_came() -> None:
    raw = {"kind": "imu", "name": "free_fall", "g": 0.1, "mono_ns": 5, "wall_ns": 6}
    rec = decode(raw)
    assert rec == OpaqueRecord("imu", {"name": "free_fall", "g": 0.1, "mono_ns": 5, "wall_ns": 6})
    assert (rec.mono_ns, rec.wall_ns) == (5, 6)
    assert list(rec.encode().items()) == list(raw.items())


def test_fields_a_newer_board_added_are_kept_and_written_back() -> None:
    raw = {**WRITTEN_TODAY[0], "confidence": 0.9, "line": {"pin": 27}}
    rec = decode(raw)
    assert rec.extra == {"confidence": 0.9, "line": {"pin": 27}}
    assert rec.encode() == raw
    # an extra field never overwrites a known one
    made = FaultRecord(error="X", message="y", extra={"error": "shadow", "z": 1})
    assert made.encode()["error"] == "X" and made.encode()["z"] == 1


def test_a_phase_record_with_only_its_name_or_only_its_phase_to_has_both() -> None:
    # what tests and older tools log by hand: the phase entered under one of its two names
    assert decode({"kind": "phase", "name": "DESCENT"}).phase_to == "DESCENT"
    rec = decode({"kind": "phase", "phase_to": "DESCENT", "event": "release"})
    assert rec.encode()["name"] == "DESCENT" and rec.event == "release"


def test_a_class_decodes_only_its_own_kind() -> None:
    with pytest.raises(RecordError) as info:
        PhaseRecord.decode(WRITTEN_TODAY[0])
    assert info.value.field == "kind" and "'fault'" in str(info.value)
    assert FaultRecord.decode(WRITTEN_TODAY[0]) == decode(WRITTEN_TODAY[0])


def test_the_lenient_reader_keeps_a_bad_record_opaque_and_says_why() -> None:
    good = WRITTEN_TODAY[-1]
    bad = {"kind": "ledger", "camera": "down", "captured": True, "wall_ns": 9}
    got = list(read([good, bad, {"no": "kind"}, 5]))
    assert got[0] == decode(good)
    assert isinstance(got[1], OpaqueRecord) and got[1].kind == "ledger"
    assert "'captured'" in got[1].problem and got[1].wall_ns == 9
    assert got[1].encode() == bad
    assert got[2].kind == "" and "'kind'" in got[2].problem
    assert got[3].fields == {"value": 5}


def test_the_phase_machine_emits_event_log_records() -> None:
    from camctl.board.config import PhasesConfig
    from camctl.board.events import PhaseMachine

    seen: list[Any] = []
    m = PhaseMachine(PhasesConfig(), clock_ns=lambda: 5, wall_ns=lambda: 7, on_record=seen.append)
    m.handle("release")
    m.handle("arm")
    assert [type(r) for r in seen] == [EventRecord, EventRecord]
    assert seen[0].encode() == {"kind": "event", "name": "release", "source": "operator",
                                "phase": "SAFE", "outcome": "not_armed", "mono_ns": 5,
                                "wall_ns": 7, "phase_to": ""}
    assert decode(seen[1].encode()) == seen[1]


def test_the_sensor_event_records_round_trip_every_field() -> None:
    recs = [ConfirmRecord("release", "imu", "gpio", -3.25, mono_ns=5, wall_ns=6, run=1),
            ConfirmRecord("touchdown", "gpio", "imu", None, name="unconfirmed", mono_ns=7),
            SceneRecord("separation", mono_ns=8, wall_ns=9),
            CheckRecord("descending", source="baro", rate_mps=6.5, mono_ns=10)]
    for rec in recs:
        on_flash = json.loads(json.dumps(rec.encode()))
        assert decode(on_flash) == rec, on_flash
    assert recs[0].encode()["offset_ms"] == -3.25 and recs[3].encode()["rate_mps"] == 6.5
