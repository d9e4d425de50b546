"""The index is evidence (issue 27, defects 1 and 6): frames lost from a segment the index recorded
as finished are a loss of durable frames, named by seq and reason, recorded beside the index's
evidence and never forgotten; ``verify`` says so in words and in its exit code, the same through
the real CLI."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from mcap.reader import make_reader
from store_helpers import frame, indexed_read

from camctl.board.config import StoreConfig
from camctl.common.losses import describe_loss
from camctl.common.records import LossRecord
from camctl.store import FlightStore, iter_events, load_index, render_report, verify
from camctl.store._records import OPEN_CHUNK
from camctl.store._salvage import scan_segment

NEVER_DURABLE = "torn tail: written after the last commit, never durable"
CHUNKS, PER_CHUNK = 6, 4
ALL = list(range(CHUNKS * PER_CHUNK))
_REPO = Path(__file__).resolve().parents[1]


def _landed(root: Path, *, keep_open: bool = False) -> Path:
    """A flight of one camera, CHUNKS commits of PER_CHUNK frames, landed (finished, indexed): its
    segment. ``keep_open``: the same cut before landing (no index.json), as a crash leaves it."""
    st = FlightStore(root, "rig", "F1", StoreConfig(reserve_mb=0, commit_interval_ms=60_000),
                     cameras=["down"])
    for k in range(CHUNKS):
        for j in range(PER_CHUNK):
            assert st.put(frame("down", k * PER_CHUNK + j))
        st.log_event({"kind": "phase", "name": f"p{k}"})
        st.commit(wait=True)
    seg = root / "F1" / "down" / "000001.mcap"
    events = root / "F1" / "events" / "000001.mcap"
    torn, torn_events = seg.read_bytes(), events.read_bytes()
    st.close()
    if keep_open:
        (root / "F1" / "index.json").unlink()
        seg.write_bytes(torn)
        events.write_bytes(torn_events)
    return seg


def _chunks(seg: Path) -> list[tuple[int, int, list[int]]]:
    return [(c.start, c.end, sorted({m.sequence for m in c.messages if m.channel_id == 1}))
            for c in scan_segment(seg).chunks]


def _plain_read(seg: Path) -> list[int]:
    with open(seg, "rb") as f:
        return [m.sequence for _, ch, m in make_reader(f).iter_messages()
                if ch.topic == "/down/image"]


def _logged_losses(flight: Path) -> list[dict]:
    return [e for s in sorted((flight / "events").glob("*.mcap")) for e in iter_events(s)
            if e["kind"] == "loss"]


def test_the_index_holds_each_finished_segments_seqs(tmp_path: Path) -> None:
    seg = _landed(tmp_path)
    index = json.loads((tmp_path / "F1" / "index.json").read_text())
    entry, = index["cameras"]["down"]["segments"]
    assert entry["seq_ranges"] == [[0, len(ALL) - 1]] and entry["finished"]
    assert entry["size"] == seg.stat().st_size


def test_a_finished_segment_cut_short_is_a_named_loss_of_durable_frames(tmp_path: Path) -> None:
    """Defect 1: truncate a landed flight's segment. It was 'lost ranges: 0 ... repairable', then
    'torn tail: never durable' with no seqs, and the rebuilt index.json forgot the frames."""
    seg = _landed(tmp_path)
    flight = tmp_path / "F1"
    size = seg.stat().st_size
    chunks = _chunks(seg)
    cut = (chunks[3][0] + chunks[3][1]) // 2  # inside the fourth chunk: chunks 0-2 stay whole
    os.truncate(seg, cut)
    kept = [q for _, _, seqs in chunks[:3] for q in seqs]
    gone = [q for q in ALL if q not in kept]

    rep = verify(flight)
    assert rep.status == "frames lost, repairable" and rep.exit_code == 1, rep.to_dict()
    loss, = (LossRecord.decode(d) for d in rep.losses)
    assert list(loss.seqs) == gone and loss.seqs is not None
    assert loss.reason == (f"finished segment cut short (indexed {size} bytes, now {cut} bytes)"
                           if size < 100_000 else loss.reason)
    assert loss.reason.startswith("finished segment cut short (indexed ")
    assert "never durable" not in render_report(rep, plain=True)
    assert f"LOST: {describe_loss(loss)}" in render_report(rep, plain=True, width=400)

    rep = verify(flight, repair=True)
    assert rep.status == "frames lost, recorded" and rep.repaired, rep.to_dict()
    assert _plain_read(seg) == kept
    logged, = _logged_losses(flight)  # durable in the flight's own event log
    assert logged["seqs"] == gone and logged["reason"] == loss.reason
    index = json.loads((flight / "index.json").read_text())
    # the evidence stays: the frames the segment held when it landed, and the loss beside them
    assert index["cameras"]["down"]["segments"][0]["seq_ranges"] == [[0, len(ALL) - 1]]
    assert [x["seqs"] for x in index["losses"]] == [gone]

    again = verify(flight)
    assert again.status == "losses recorded" and again.exit_code == 1, again.to_dict()
    assert not again.losses and not again.repairable
    text = render_report(again, plain=True, width=400)
    assert f"recorded earlier: {describe_loss(loss)}" in text and "clean" not in text
    # and nothing is recorded twice
    assert verify(flight, repair=True).status == "losses recorded"
    assert len(_logged_losses(flight)) == 1


def test_a_cut_on_a_chunk_boundary_still_names_the_frames_past_it(tmp_path: Path) -> None:
    seg = _landed(tmp_path)
    chunks = _chunks(seg)
    os.truncate(seg, chunks[2][0])  # exactly where the third commit began: no torn record at all
    gone = [q for _, _, seqs in chunks[2:] for q in seqs]
    rep = verify(tmp_path / "F1", repair=True)
    loss, = (LossRecord.decode(d) for d in rep.losses)
    assert list(loss.seqs) == gone and loss.reason.startswith("finished segment cut short")
    assert rep.status == "frames lost, recorded"
    # the repaired file says it too, in a LOST record where it was cut
    marked = [info for _, _, info in scan_segment(seg).marked]
    assert [m["seqs"] for m in marked] == [gone]
    assert verify(tmp_path / "F1").status == "losses recorded"


def test_a_zeroed_finished_segment_is_a_recorded_loss_with_its_seqs(tmp_path: Path) -> None:
    seg = _landed(tmp_path)
    seg.write_bytes(bytes(seg.stat().st_size))
    rep = verify(tmp_path / "F1")
    loss, = (LossRecord.decode(d) for d in rep.losses)
    assert loss.reason == "finished segment zeroed" and list(loss.seqs) == ALL
    assert rep.exit_code == 1 and rep.status == "frames lost, repairable"
    rep = verify(tmp_path / "F1", repair=True)
    assert rep.status == "frames lost, recorded", rep.to_dict()
    assert _plain_read(seg) == []  # a readable, empty segment again
    assert [x["seqs"] for x in _logged_losses(tmp_path / "F1")] == [ALL]
    again = verify(tmp_path / "F1")
    assert again.status == "losses recorded" and again.exit_code == 1


@pytest.mark.parametrize("first", ["verify", "ls"])
def test_a_finished_segment_deleted_is_a_recorded_loss(tmp_path: Path, first: str) -> None:
    seg = _landed(tmp_path)
    flight = tmp_path / "F1"
    seg.unlink()
    if first == "ls":  # a reader rebuilds the stale index first: the loss goes into it
        index = load_index(flight)
        assert [(x["segment"], x["seqs"]) for x in index["losses"]] == [("down/000001.mcap", ALL)]
        assert verify(flight).status == "losses recorded"
        return
    rep = verify(flight)
    loss, = (LossRecord.decode(d) for d in rep.losses)
    assert (loss.reason, list(loss.seqs)) == ("finished segment missing", ALL)
    assert rep.status == "frames lost, repairable"
    assert verify(flight, repair=True).status == "frames lost, recorded"
    assert [x["seqs"] for x in _logged_losses(flight)] == [ALL]
    assert verify(flight).status == "losses recorded"
    assert verify(flight, repair=True).status == "losses recorded"
    assert len(_logged_losses(flight)) == 1


def test_a_finished_segment_overwritten_beyond_salvage_still_records_its_loss(
        tmp_path: Path) -> None:
    seg = _landed(tmp_path)
    seg.write_bytes(b"not an mcap file at all" * 100)
    rep = verify(tmp_path / "F1", repair=True)
    assert rep.status == "UNRECOVERABLE" and rep.exit_code == 2
    assert {q for d in rep.losses for q in d["seqs"]} == set(ALL), rep.losses
    assert {q for x in _logged_losses(tmp_path / "F1") for q in x["seqs"]} == set(ALL)


def test_a_segment_cut_to_nothing_is_repaired_and_its_loss_recorded(tmp_path: Path) -> None:
    seg = _landed(tmp_path)
    first = _chunks(seg)[0]
    os.truncate(seg, (first[0] + first[1]) // 2)  # not one chunk left
    rep = verify(tmp_path / "F1", repair=True)
    assert rep.status == "frames lost, recorded" and not rep.unrecoverable, rep.to_dict()
    assert [list(LossRecord.decode(d).seqs) for d in rep.losses] == [ALL]
    assert _plain_read(seg) == []


def test_a_crash_mid_flight_still_cuts_a_tail_that_was_never_durable(tmp_path: Path) -> None:
    seg = _landed(tmp_path, keep_open=True)  # no index.json: the segment was still open
    data = seg.read_bytes()
    extra = frame("down", 99).jpeg
    seg.write_bytes(data + data[_chunks(seg)[0][0]:][:200] + extra[:50])  # an uncommitted start
    events = tmp_path / "F1" / "events" / "000001.mcap"
    with open(events, "ab") as f:  # the event log's open segment, cut too
        f.write(OPEN_CHUNK + bytes(30))  # a chunk's placeholder head, as a cut leaves it
    rep = verify(tmp_path / "F1", repair=True)
    loss, = (LossRecord.decode(d) for d in rep.losses if d["camera"] == "down")
    assert loss.reason == NEVER_DURABLE and rep.status == "repaired", rep.to_dict()
    # the event log's own cut is on record too (no frame in it)
    ev, = (LossRecord.decode(d) for d in rep.losses if d["camera"] == "events")
    assert ev.reason == NEVER_DURABLE and ev.seqs == ()
    assert verify(tmp_path / "F1").status == "clean"


def test_an_index_without_seq_ranges_still_loads_and_verify_falls_back(tmp_path: Path) -> None:
    seg = _landed(tmp_path)
    path = tmp_path / "F1" / "index.json"
    index = json.loads(path.read_text())
    for e in index["cameras"]["down"]["segments"]:
        del e["seq_ranges"]  # an index written before the evidence
    path.write_text(json.dumps(index))
    assert load_index(tmp_path / "F1", write=False)["cameras"]["down"]["frames"] == len(ALL)
    chunks = _chunks(seg)
    os.truncate(seg, chunks[4][0] + 100)  # the fifth chunk's first frame header still parses
    loss, = (LossRecord.decode(d) for d in verify(tmp_path / "F1").losses)
    # still a cut finished segment (its size was indexed); the seqs are what the scan can read
    assert loss.reason.startswith("finished segment cut short")
    assert set(loss.seqs) <= set(chunks[4][2]) and loss.seqs


def test_a_rebuilt_index_never_forgets_the_frames_it_recorded(tmp_path: Path) -> None:
    seg = _landed(tmp_path)
    os.truncate(seg, _chunks(seg)[2][0])
    # any reader that finds the index stale rebuilds it (ls, fetch, the board): the evidence stays
    index = load_index(tmp_path / "F1")
    assert index["cameras"]["down"]["segments"][0]["seq_ranges"] == [[0, len(ALL) - 1]]
    assert index["cameras"]["down"]["frames"] < len(ALL)
    rep = verify(tmp_path / "F1")
    assert rep.status == "frames lost, repairable", rep.to_dict()


def test_a_damaged_chunk_names_its_exact_seqs_without_an_index(tmp_path: Path) -> None:
    seg = _landed(tmp_path, keep_open=True)
    chunks = _chunks(seg)
    data = bytearray(seg.read_bytes())
    data[(chunks[1][0] + chunks[1][1]) // 2] ^= 0x10  # its CRC fails
    seg.write_bytes(bytes(data))
    loss, = (LossRecord.decode(d) for d in verify(tmp_path / "F1", repair=True).losses)
    assert list(loss.seqs) == chunks[1][2] and loss.reason == "damaged: fails its check"
    assert (loss.seq_after, loss.seq_before) == (chunks[0][2][-1], chunks[2][2][0])


# --- the exit code is what verify prints ---------------------------------------------------------
def _cli_verify(*args: str) -> tuple[int, str, str]:
    env = {**os.environ, "PYTHONPATH": str(_REPO)}
    proc = subprocess.run([sys.executable, "-m", "camctl", "verify", *args, "--quiet"],
                          capture_output=True, text=True, timeout=120, cwd=_REPO, env=env)
    return proc.returncode, proc.stdout, proc.stderr


def _printed(out: str) -> tuple[str, int]:
    m = re.search(r"result: (.+) \(exit (\d)\)", out)
    assert m, out
    return m.group(1), int(m.group(2))


@pytest.mark.parametrize("case", ["clean", "repaired", "losses recorded", "unrecoverable"])
def test_the_process_exits_with_the_code_it_prints(tmp_path: Path, case: str) -> None:
    """Defect 6: 'UNRECOVERABLE (exit 2)' was printed and the process exited 1."""
    seg = _landed(tmp_path / "store", keep_open=case == "repaired")
    flight = tmp_path / "store" / "F1"
    args = [str(flight)]
    if case == "repaired":
        with open(seg, "ab") as f:
            f.write(OPEN_CHUNK + bytes(60))  # an uncommitted tail
        args.append("--repair")
    elif case == "losses recorded":
        os.truncate(seg, _chunks(seg)[3][0])
        assert verify(flight, repair=True).exit_code == 1
    elif case == "unrecoverable":
        seg.write_bytes(b"not an mcap file at all" * 10)
    want = {"clean": ("clean", 0), "repaired": ("repaired", 1),
            "losses recorded": ("losses recorded", 1), "unrecoverable": ("UNRECOVERABLE", 2)}[case]
    rc, out, err = _cli_verify(*args)
    assert (_printed(out), rc) == (want, want[1]), out + err
    rc, out, _ = _cli_verify(str(flight), "--json")
    report = json.loads(out)
    assert rc == report["exit_code"] and report["status"] in (want[0], "clean")


def test_a_repaired_cut_segment_reads_in_foxglove(tmp_path: Path) -> None:
    """After the repair of a cut finished segment, Foxglove's reader reads what is left."""
    seg = _landed(tmp_path)
    chunks = _chunks(seg)
    os.truncate(seg, chunks[4][0] + 10)
    verify(tmp_path / "F1", repair=True)
    assert indexed_read([seg])[str(seg)]["/down/image"] == [q for _, _, s in chunks[:4] for q in s]


def test_the_index_keeps_a_loss_the_event_log_could_not_take(tmp_path: Path, monkeypatch) -> None:
    """On a full disk the event log's new segment may fail; index.json (rewritten in place of the
    old one) still records the loss, so it is never forgotten."""
    import errno

    import camctl.store.writer as writer

    seg = _landed(tmp_path)
    os.truncate(seg, _chunks(seg)[3][0])

    def full(*_a, **_k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(writer, "append_events", full)
    rep = verify(tmp_path / "F1", repair=True)
    assert any("cannot log what repair cut" in e for e in rep.errors), rep.errors
    monkeypatch.undo()
    assert not _logged_losses(tmp_path / "F1")
    index = json.loads((tmp_path / "F1" / "index.json").read_text())
    assert [x["seqs"] for x in index["losses"]] == [list(range(3 * PER_CHUNK, len(ALL)))]
    assert verify(tmp_path / "F1").status == "losses recorded"
