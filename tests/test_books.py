"""One camera's books, the same in every view: ``captured`` counts the numbers the sensor skipped,
in the runner's stats, in status and in the ledger; a frame's seq is unique in a flight across a
replacement after a hang."""

from __future__ import annotations

from scripted import ScriptedCamera, Sink, first_frame_in_descent

from camctl.board.encode import EncoderPool
from camctl.board.status import camera_status
from camctl.common.ledger import balance


def test_captured_counts_the_sensors_skipped_numbers_in_status_as_in_the_ledger() -> None:
    cam, sink = ScriptedCamera("cam"), Sink()
    with EncoderPool(1) as pool, first_frame_in_descent(cam, pool, sink) as r:
        cam.skip_next = 5  # the sensor misses five slots before the next frame
        cam.gate.release()
        sink.wait_for(lambda fs: len(fs) >= 2)
    books = r.ledger.totals()["cam"]
    stored = len(sink.frames)
    assert books["dropped"] == {"sensor_gap": 5} and books["captured"] == stored + 5
    status = camera_status(r, {"frames_stored": stored}, books)
    # status said frames_captured 2 here (delivered only) while ls said 7 (issue 26, defect 10)
    assert status["frames_captured"] == r.stats.frames_captured == books["captured"]
    assert status["ledger"]["captured"] == books["captured"]
    assert balance(books, stored)["balanced"]


def test_a_resumed_flight_numbers_after_its_stored_seqs_and_its_loss_records(tmp_path) -> None:
    from camctl.board.cameras_fleet import stored_next_seqs
    from camctl.common.frames import EncodedFrame
    from camctl.common.records import LossRecord
    from camctl.store import FlightStore
    from camctl.store.config import StoreConfig

    with FlightStore(tmp_path, "b", "f1", StoreConfig(dir=str(tmp_path)),
                     cameras=["down", "up"]) as st:
        for seq in (3, 9, 4):
            assert st.put(EncodedFrame(camera="down", seq=seq, timestamp_ns=seq, jpeg=b"\xff\xd8",
                                       width=2, height=2, phase="DESCENT", value=2))
        # a torn tail cut seqs 10..12 after they were counted stored: never given again
        st.log_event(LossRecord(camera="down", seqs=[10, 11, 12]))
        st.commit(wait=True)
    assert stored_next_seqs(tmp_path / "f1", ["down", "up"]) == {"down": 13, "up": 0}
