"""Sensor segments (imu, baro) recorded like frames: a torn tail cut whole with its exact seqs and
samples, bit flips that never pass a damaged batch or name a seq that was not lost, verify's
per-source lines, and books in samples that balance with a store that drops."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import threading
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from store_helpers import frame

from camctl.board.config import StoreConfig
from camctl.common.ledger import Ledger, balance, read_ledger
from camctl.ground.flights import FlightRef, load_events, summarize_flight
from camctl.store import (
    FlightStore,
    SampleBatch,
    Source,
    iter_samples,
    recover_store,
    render_report,
    verify,
)
from camctl.store._records import CHUNK_HEADER_LEN, MSG_HEAD
from camctl.store._repair import NEVER_DURABLE, TORN_COMMIT
from camctl.store._salvage import scan_segment
from camctl.store.sources import BARO_FIELDS, IMU_FIELDS

COMMITS, PER_COMMIT = 4, 3
SOURCES = [Source("imu", "imu"), Source("baro", "baro")]


def imu(seq: int, n: int = 10) -> SampleBatch:
    t0 = 1_000_000_000 + seq * 10_000_000
    return SampleBatch("imu", seq, IMU_FIELDS, tuple(t0 + i * 1_000_000 for i in range(n)),
                       tuple((0.25 * i, -0.5, 9.8, 1.0, 0.0, -1.0, 1.0) for i in range(n)),
                       phase="DESCENT")


def baro(seq: int, n: int = 2) -> SampleBatch:
    t0 = 1_000_000_000 + seq * 40_000_000
    return SampleBatch("baro", seq, BARO_FIELDS, tuple(t0 + i * 20_000_000 for i in range(n)),
                       tuple((101_325.0 - i, 20.5, 100.0 - i) for i in range(n)), phase="DESCENT")


def _fly(root: Path) -> tuple[bytes, bytes]:
    """A flight of camera ``down``, ``imu`` and ``baro`` through the real FlightStore, one chunk
    per group commit; the imu segment's bytes after the last commit (what a power cut leaves) and
    once finished."""
    cfg = StoreConfig(reserve_mb=0, commit_interval_ms=60_000)
    st = FlightStore(root, "rig", "F", cfg, cameras=["down"], sources=SOURCES)
    for k in range(COMMITS):
        for j in range(PER_COMMIT):
            seq = k * PER_COMMIT + j
            assert st.put(imu(seq)) and st.put(baro(seq)) and st.put(frame("down", seq))
        st.commit(wait=True)
    seg = root / "F" / "imu" / "000001.mcap"
    torn = seg.read_bytes()
    st.close()
    return torn, seg.read_bytes()


@pytest.fixture(scope="module")
def flown(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, bytes, bytes]:
    root = tmp_path_factory.mktemp("sensors")
    torn, done = _fly(root)
    return root, torn, done


def _headed(data: bytes, cut: int) -> tuple[list[int], list[int]]:
    """(seqs of the chunks whole before ``cut``, seqs of the tail's records whose header is whole
    before it): what repair keeps and what it must name."""
    chunks = scan_segment(Path("imu/x.mcap"), data).chunks
    kept = sorted({m.sequence for c in chunks if c.end <= cut for m in c.messages})
    tail = sorted({m.sequence for c in chunks if c.end > cut
                   for m, off in zip(c.messages, c.offsets, strict=True)
                   if c.start + CHUNK_HEADER_LEN + off + MSG_HEAD.size <= cut})
    return kept, tail


def _first_sample_whole(data: bytes, cut: int, seq: int) -> bool:
    """Whether batch ``seq``'s first message (the one with ``batch.n``) is whole before ``cut``."""
    for c in scan_segment(Path("imu/x.mcap"), data).chunks:
        for m, off in zip(c.messages, c.offsets, strict=True):
            if m.sequence == seq:
                return c.start + CHUNK_HEADER_LEN + off + MSG_HEAD.size + len(m.data) <= cut
    raise AssertionError(seq)


def test_a_torn_imu_tail_is_cut_whole_with_its_exact_seqs_and_samples(flown, tmp_path) -> None:
    root, torn, _ = flown
    first = scan_segment(Path("imu/x.mcap"), torn).chunks[0].start
    cuts = [*range(first, len(torn) + 1, 300), len(torn)]
    named = set()
    for i, cut in enumerate(cuts):
        store = tmp_path / str(i)
        shutil.copytree(root, store)
        fdir = store / "F"
        (fdir / "index.json").unlink()  # the flight never landed
        seg = fdir / "imu" / "000001.mcap"
        seg.write_bytes(torn[:cut])
        recover_store(store)
        kept, tail = _headed(torn, cut)
        assert sorted(b.seq for b in iter_samples(seg)) == kept, cut
        rep = verify(fdir)
        assert not rep.errors and rep.sources["imu"].records == len(kept), (cut, rep.errors)
        assert rep.sources["imu"].samples == 10 * len(kept)
        assert rep.sources["baro"].samples == 2 * COMMITS * PER_COMMIT
        losses = [d for d in rep.losses_recorded if d["camera"] == "imu"]
        said = sorted(q for d in losses for q in d["seqs"])
        assert said == tail, (cut, losses)  # the exact seqs, a batch shared by ten messages once
        if tail:
            assert {d["reason"] for d in losses} <= {NEVER_DURABLE, TORN_COMMIT}
            # the samples they held, as each batch's first sample says (batch.n): the ledger's
            # unit; at least those whose records are there when the cut took that sample's body
            samples = sum(d["samples"] for d in losses)
            books = read_ledger(load_events(fdir))["imu"]
            assert books["dropped"] == {"recovery_cut": samples}
            first_whole = _first_sample_whole(torn, cut, max(tail))
            assert samples == 10 * len(tail) if first_whole else \
                10 * (len(tail) - 1) < samples < 10 * len(tail)
            assert any(d.get("samples_at_least") for d in losses) is not first_whole
            text = render_report(rep, plain=True, width=200)
            assert f"imu: {len(kept)} IMU sample batches, {10 * len(kept)} samples" in text
            n, least = len(tail), "" if first_whole else "at least "
            assert f"{n} sample batch{'es' if n != 1 else ''} ({least}{samples} samples) lost" \
                in text
        named.update(tail)
        shutil.rmtree(store)
    assert named == set(range(COMMITS * PER_COMMIT))  # every batch was a torn tail's once


def _flip(data: bytes, offset: int, bit: int) -> bytes:
    b = bytearray(data)
    b[offset] ^= 1 << bit
    return bytes(b)


def _batches(path: Path, data: bytes) -> dict[int, SampleBatch]:
    path.write_bytes(data)
    return {b.seq: b for b in iter_samples(path)}


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(where=st.floats(0, 1, exclude_max=True), bit=st.integers(0, 7), finished=st.booleans())
def test_a_bit_flip_in_an_imu_segment_names_exactly_the_batches_it_cost(flown, where, bit,
                                                                        finished) -> None:
    _, torn, done = flown
    data = done if finished else torn
    off = int(where * len(data))
    with tempfile.TemporaryDirectory() as d:
        (Path(d) / "flight.json").write_text(json.dumps({"sources": {"imu": "imu"}}))
        path = Path(d) / "imu" / "000001.mcap"
        path.parent.mkdir()
        originals = _batches(path, data)
        got = _batches(path, _flip(data, off, bit))
        assert all(originals[s] == b for s, b in got.items())  # never a damaged batch as good
        rep = verify(path, repair=True)
        assert rep.exit_code in (0, 1), rep.errors
        assert {b.seq for b in iter_samples(path)} == set(got)
        lost = set(originals) - set(got)
        assert {q for x in rep.losses for q in x.get("seqs") or ()} == lost, rep.losses
        torn_seqs = {q for x in rep.losses if x["reason"] in (TORN_COMMIT, NEVER_DURABLE)
                     for q in x["seqs"]}
        assert not torn_seqs or not finished
        assert verify(path).exit_code == (1 if lost - torn_seqs else 0)


def test_books_balance_in_samples_when_the_store_drops(tmp_path: Path) -> None:
    """A stalled writer fills the queue: the batches dropped count their samples, so the sampler's
    ``captured`` (samples) = stored + dropped, in the store's stats, the event log and ``ls``."""
    entered, release = threading.Event(), threading.Event()
    real = os.fsync

    def slow_fsync(fd: int) -> None:
        entered.set()
        assert release.wait(60)
        real(fd)

    cfg = StoreConfig(reserve_mb=0, commit_interval_ms=60_000, queue_frames=4)
    st = FlightStore(tmp_path, "rig", "F", cfg, cameras=["down"], sources=SOURCES,
                     fsync=slow_fsync)
    ledger = Ledger()
    sizes = [3, 7, 5, 9, 4, 6, 8, 2, 10, 5]

    def sample(seq: int, n: int) -> None:
        # what the SensorSampler does with a batch through the board's sink (FlightRecorder.sink:
        # a store that drops a record counts it under its own reason, so the sink says taken)
        ledger.captured("imu", n)
        st.put(imu(seq, n))

    sample(0, 4)
    st.commit()
    assert entered.wait(30)  # the writer is stuck in fsync: the queue fills
    for i, n in enumerate(sizes, start=1):
        sample(i, n)
    dropped = st.stats()["imu"]["dropped"]
    assert dropped["queue_full"] == sum(sizes[4:])  # samples, not the 6 batches
    release.set()
    for rec in ledger.flush(close=True):
        st.log_event(rec)
    st.close()
    stats = st.stats()["imu"]
    assert stats["samples_stored"] == 4 + sum(sizes[:4])
    books = read_ledger(load_events(tmp_path / "F"))
    assert books["imu"]["captured"] == 4 + sum(sizes)
    assert books["imu"]["dropped"] == {"store_queue_full": sum(sizes[4:])}
    assert balance(books["imu"], stats["samples_stored"])["balanced"] is True
    fl = summarize_flight(FlightRef("rig", "F", tmp_path / "F"))
    imu_books = fl["sensors"]["imu"]["ledger"]
    assert imu_books["balanced"] is True and imu_books["stored"] == stats["samples_stored"]
    assert set(fl["cameras"]) == {"down"} and fl["drops"] == 0  # a sensor is not a camera


@pytest.mark.parametrize("finished", [False, True])
def test_a_flipped_sample_seq_is_not_named_lost(flown, finished: bool) -> None:
    """Each sample of a batch carries the batch's seq in its header only (no meta record to vote
    with, as a camera frame has): a flip there makes a chunk fail its CRC, and the seq it made up
    (one record out of order among its batch's) must not be named among the losses."""
    _, torn, done = flown
    data = done if finished else torn
    chunks = scan_segment(Path("imu/x.mcap"), data).chunks
    wrong = []
    with tempfile.TemporaryDirectory() as d:
        (Path(d) / "flight.json").write_text(json.dumps({"sources": {"imu": "imu"}}))
        path = Path(d) / "imu" / "000001.mcap"
        path.parent.mkdir()
        for c in chunks:
            seqs = {m.sequence for m in c.messages}
            for i, off in enumerate(c.offsets):
                if i % 4:  # every fourth sample: a batch's first, middle and last ones among them
                    continue
                at = c.start + CHUNK_HEADER_LEN + off + 11  # opcode, length, channel: then seq
                path.write_bytes(_flip(data, at, 5))  # seq + or - 32: never a seq of this flight
                rep = verify(path, repair=True)
                said = {q for x in rep.losses for q in x.get("seqs") or ()}
                if said != seqs:
                    wrong.append((c.start, i, sorted(said)))
    assert not wrong


def test_a_finished_imu_segment_cut_short_costs_its_indexed_samples(flown, tmp_path) -> None:
    """A landed flight (index.json written) whose imu segment is cut short: the seqs the index
    recorded and the file no longer holds are lost durable batches, and their samples are what
    the index counted less what is left (the ledger's recovery_cut stays in samples)."""
    root, _, done = flown
    chunks = scan_segment(Path("imu/x.mcap"), done).chunks
    for i, cut in enumerate(c.start + 700 for c in chunks):
        store = tmp_path / str(i)
        shutil.copytree(root, store)
        fdir = store / "F"
        (fdir / "imu" / "000001.mcap").write_bytes(done[:cut])
        rep = verify(fdir, repair=True)
        gone = set(range(COMMITS * PER_COMMIT)) - {q for c in chunks if c.end <= cut
                                                    for q in {m.sequence for m in c.messages}}
        losses = [d for d in rep.losses if d["camera"] == "imu"]
        assert rep.status == "frames lost, recorded" and {q for d in losses
                                                          for q in d["seqs"]} == gone
        assert sum(d["samples"] for d in losses) == 10 * len(gone), losses
        assert not any(d.get("samples_at_least") for d in losses)
        books = read_ledger(load_events(fdir))["imu"]
        assert books["dropped"] == {"recovery_cut": 10 * len(gone)}
        # the rebuilt index keeps what the first one recorded (its seq_ranges), never less
        index = json.loads((fdir / "index.json").read_text())
        assert index["sources"]["imu"]["segments"][0]["seq_ranges"] == [[0, 11]]
        shutil.rmtree(store)


@pytest.mark.parametrize("finished", [False, True])
def test_a_damaged_message_index_of_an_imu_chunk_is_rebuilt(flown, tmp_path, finished) -> None:
    _, torn, done = flown
    data = done if finished else torn
    chunk = scan_segment(Path("imu/x.mcap"), data).chunks[1]
    (tmp_path / "flight.json").write_text(json.dumps({"sources": {"imu": "imu"}}))
    path = tmp_path / "imu" / "000001.mcap"
    path.parent.mkdir()
    # the offset of the 4th sample in the chunk's MessageIndex (opcode, length, channel, records
    # length: 15 bytes; then (log_time, offset) per message): no CRC covers it, readers that
    # follow it (Foxglove's) would read garbage
    path.write_bytes(_flip(data, chunk.end + 15 + 16 * 3 + 8, 1))
    assert scan_segment(path).chunks[1].index_bad
    rep = verify(path)
    assert rep.repairable == [str(path)] and not rep.lost_chunks
    assert verify(path, repair=True).exit_code == 1
    assert not any(c.index_bad for c in scan_segment(path).chunks)
    assert [b.seq for b in iter_samples(path)] == list(range(COMMITS * PER_COMMIT))
    rep = verify(path)
    assert rep.exit_code == 0 and rep.sources["imu"].samples == 10 * COMMITS * PER_COMMIT
