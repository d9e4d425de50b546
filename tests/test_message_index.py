"""Message indexes checked against the chunk they point into (issue 27, defect 5).

MCAP has no CRC over MessageIndex records, and index-following readers (Foxglove's @mcap/core)
trust them: a bit flip in an entry must make ``verify`` flag the segment (naming the chunk), and
repair must rebuild the indexes so every reader reads every message again."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
from mcap.reader import make_reader
from store_helpers import frame, indexed_read

from camctl.board.config import StoreConfig
from camctl.store import FlightStore, verify
from camctl.store._salvage import scan_segment

CHUNKS, PER_CHUNK = 5, 3
ALL = list(range(CHUNKS * PER_CHUNK))
# where in a MessageIndex record (opcode u8, length u64, channel u16, entries length u32, then
# (log_time u64, offset u64) pairs; MCAP spec "Message Index (op=0x07)") each field of the second
# entry starts
_FIELD = {"offset": 9 + 6 + 16 + 8, "log_time": 9 + 6 + 16, "channel": 9}


def _segment(root: Path, finished: bool) -> Path:
    st = FlightStore(root, "rig", "F1", StoreConfig(reserve_mb=0, commit_interval_ms=60_000),
                     cameras=["down"])
    for k in range(CHUNKS):
        for j in range(PER_CHUNK):
            assert st.put(frame("down", k * PER_CHUNK + j))
        st.commit(wait=True)
    seg = root / "F1" / "down" / "000001.mcap"
    torn = seg.read_bytes()
    st.close()
    if not finished:  # a crash mid-flight: committed, never finished, no index
        (root / "F1" / "index.json").unlink()
        seg.write_bytes(torn)
    return seg


def _read_all(seg: Path) -> dict[str, list[int]]:
    """topic -> sequences, read by python-mcap's indexed reader (seekable: it follows the summary's
    chunk indexes)."""
    out: dict[str, list[int]] = {}
    with open(seg, "rb") as f:
        reader = make_reader(f, validate_crcs=True)
        assert reader.get_summary() is not None
        for _, ch, m in reader.iter_messages():
            out.setdefault(ch.topic, []).append(m.sequence)
    return out


@pytest.mark.parametrize("finished", [True, False], ids=["finished", "crashed"])
@pytest.mark.parametrize("field", ["offset", "log_time", "channel"])
def test_a_flipped_message_index_entry_is_flagged_and_rebuilt(tmp_path: Path, field: str,
                                                              finished: bool) -> None:
    seg = _segment(tmp_path, finished)
    chunk = scan_segment(seg).chunks[2]
    channel, at = sorted(chunk.index_offsets.items())[0]
    assert channel == 1  # /down/image
    data = bytearray(seg.read_bytes())
    data[at + _FIELD[field]] ^= 0x04
    seg.write_bytes(bytes(data))
    assert len(scan_segment(seg).chunks) == CHUNKS  # every chunk itself is intact (its CRC)

    rep = verify(seg)
    assert rep.exit_code == 1 and rep.repairable == [str(seg)], rep.to_dict()  # was: clean
    assert any(f"chunk at byte {chunk.start}: message index" in e for e in rep.errors), rep.errors
    rep = verify(seg, repair=True)
    assert rep.repaired == [str(seg)] and not rep.unrecoverable, rep.to_dict()
    assert not any(d["seqs"] for d in rep.losses), rep.losses  # nothing was lost
    after = verify(seg)
    assert after.status == "clean" and after.exit_code == 0, after.to_dict()
    # every chunk byte kept, in place
    assert seg.read_bytes()[:chunk.end] == bytes(data[:chunk.end])
    # Foxglove's reader and python-mcap's indexed reader read every message
    topics = indexed_read([seg])[str(seg)]
    assert topics["/down/image"] == ALL and topics["/down/meta"] == ALL, topics
    got = _read_all(seg)
    assert got["/down/image"] == ALL and got["/down/meta"] == ALL


def test_an_index_that_leaves_out_a_message_is_flagged(tmp_path: Path) -> None:
    """Entries that all point at real messages but do not cover the chunk's messages of their
    channel (a count changed, an entry duplicated): a reader following them skips a frame."""
    seg = _segment(tmp_path, True)
    chunk = scan_segment(seg).chunks[1]
    _, at = sorted(chunk.index_offsets.items())[0]
    data = bytearray(seg.read_bytes())
    first = data[at + 15:at + 31]
    data[at + 31:at + 47] = first  # the second entry now repeats the first
    seg.write_bytes(bytes(data))
    assert verify(seg).repairable == [str(seg)]
    assert verify(seg, repair=True).repaired
    assert indexed_read([seg])[str(seg)]["/down/image"] == ALL


def test_the_entry_check_names_each_field(tmp_path: Path) -> None:
    """The scan's own words: the chunk offset and the MessageIndex record offset."""
    seg = _segment(tmp_path, True)
    chunk = scan_segment(seg).chunks[0]
    _, at = sorted(chunk.index_offsets.items())[0]
    data = bytearray(seg.read_bytes())
    (n,) = struct.unpack_from("<I", data, at + 11)
    assert n == 16 * PER_CHUNK
    data[at + _FIELD["offset"]] ^= 0x01
    seg.write_bytes(bytes(data))
    assert scan_segment(seg).errors == [
        f"chunk at byte {chunk.start}: message index of channel 1 at byte {at} does not match "
        "the chunk"]
