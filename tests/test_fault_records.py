"""A fault says what failed in ``error`` (the exception's type) and ``message`` (its text), from
the board that publishes it to the ground that shows it -- including the store's faults written
before that rule, which put the text in ``error``."""

from __future__ import annotations

import errno
from pathlib import Path
from typing import Any

from boards import make_config

from camctl.board.flight import FlightRecorder
from camctl.common.records import FaultRecord, decode
from camctl.ground.export.timeline import _fault_label
from camctl.ground.mission.watcher import _fault_entry


class _ReadOnlyStore(FlightRecorder):
    def open_store(self, flight: str, *, resume: bool = False, drops: bool = True) -> Any:
        raise OSError(errno.EROFS, "Read-only file system")


def test_a_flight_that_cannot_be_opened_is_published_as_a_fault_with_type_and_text(
        tmp_path: Path) -> None:
    published: list[tuple[str, dict]] = []
    rec = _ReadOnlyStore(make_config(tmp_path), boot_id="b", phase=lambda: "ARMED",
                         publish=lambda topic, body: published.append((topic, body)),
                         wait_cameras=lambda: None, on_finished=lambda: None)
    rec.open_async({})
    rec.wait_open()
    ((topic, body),) = published
    assert topic == "fault" and body["board"] == "rig-t" and body["kind"] == "fault"
    fault = decode({k: v for k, v in body.items() if k != "board"})
    assert isinstance(fault, FaultRecord) and fault.name == "store_open_failed"
    assert (fault.error, fault.message) == ("OSError", "[Errno 30] Read-only file system")
    assert fault.mono_ns is not None and fault.wall_ns is not None


def test_the_mission_view_keeps_a_published_faults_type_and_text() -> None:
    body = {"board": "rig-t", **FaultRecord(camera="down", error="CameraTimeout",
                                            message="no frame in 2 s", mono_ns=1).encode()}
    assert _fault_entry(body) == {"camera": "down", "error": "CameraTimeout",
                                  "message": "no frame in 2 s"}
    # an older board said kind "store" for a flight it could not open
    old = {"board": "rig-t", "kind": "store", "message": "[Errno 30] Read-only file system"}
    assert _fault_entry(old) == {"name": "store", "message": "[Errno 30] Read-only file system"}


def test_the_timeline_marks_a_fault_with_what_failed_and_its_text() -> None:
    camera = FaultRecord(camera="down", error="CameraTimeout", message="stall")
    assert _fault_label(camera) == "CameraTimeout: stall"
    # the store's old form: the text was in error, behind its type name
    old = decode({"kind": "fault", "name": "index_write_failed",
                  "error": "OSError: [Errno 28] No space left on device"})
    label = _fault_label(old)
    assert label.startswith("index_write_failed OSError: [Errno 28] No")
    assert len(label) <= 48 and label.endswith("...")
