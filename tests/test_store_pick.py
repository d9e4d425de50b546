"""store.reader.pick_frames: chosen frames of a finished segment read through its summary and
message indexes (same frames as a full scan, a fraction of the bytes read), and the fallbacks for
torn and damaged segments."""

from __future__ import annotations

from pathlib import Path

import pytest
from netfixtures import write_segment

from camctl.store._records import MSG_HEAD, compressed_image_parts
from camctl.store.reader import iter_frames, pick_frames


class Counting:
    """A read-only file that counts the bytes read through it (no ``fileno``: nothing bypasses the
    count, not even the memory map of the scan fallback)."""

    def __init__(self, path: Path) -> None:
        self._f = open(path, "rb", buffering=0)  # noqa: SIM115
        self.read_bytes = 0
        opened.append(self)

    def read(self, n: int = -1) -> bytes:
        b = self._f.read(n)
        self.read_bytes += len(b)
        return b

    def seek(self, pos: int, whence: int = 0) -> int:
        return self._f.seek(pos, whence)

    def __enter__(self) -> Counting:
        return self

    def __exit__(self, *exc: object) -> None:
        self._f.close()


opened: list[Counting] = []


def _key(frames) -> list[tuple]:
    return [(f.seq, f.timestamp_ns, f.phase, f.value, f.jpeg, f.chunk_offset, f.still, f.meta)
            for f in frames]


@pytest.mark.parametrize("every", [1, 3, 10])
def test_same_frames_as_a_scan_reading_a_fraction(tmp_path: Path, every: int) -> None:
    seg = tmp_path / "F1" / "down" / "000001.mcap"
    # 64 KiB chunks: ~60 of them
    write_segment(seg, "down", frames=120, pad_kb=30, phase="ASCENT", value=7)
    opened.clear()
    got = _key(pick_frames(seg, every=every, opener=Counting))
    assert got == _key(iter_frames(seg, every=every)) and len(got) == -(-120 // every)
    size = seg.stat().st_size
    read = opened[0].read_bytes
    print(f"every {every}: read {read} of {size} bytes")
    # the chosen images (each ~31 KiB), their metas, the indexes
    assert read <= size / every + 64 * 1024
    if every == 10:
        assert read < size * 0.15


def test_torn_segment_is_scanned(tmp_path: Path) -> None:
    seg = tmp_path / "F1" / "down" / "000001.mcap"
    write_segment(seg, "down", frames=40, pad_kb=20, torn=True)
    opened.clear()
    got = _key(pick_frames(seg, every=4, opener=Counting))
    assert got == _key(iter_frames(seg, every=4)) and len(got) == 10
    # no summary to seek with: the whole file is read
    assert opened[0].read_bytes >= seg.stat().st_size


def test_a_flipped_bit_in_a_chunk_costs_that_chunk_only(tmp_path: Path) -> None:
    seg = tmp_path / "F1" / "down" / "000001.mcap"
    write_segment(seg, "down", frames=60, pad_kb=20)
    frames = list(iter_frames(seg))
    # bit rot in the record head of frame 30: the index points at a record that is not it
    hit = frames[30]
    data = bytearray(seg.read_bytes())
    prefix, _ = compressed_image_parts(hit.timestamp_ns, "down", len(hit.jpeg))
    at = data.index(hit.jpeg) - len(prefix) - MSG_HEAD.size
    assert data[at] == 0x05  # the Message opcode of that image record
    data[at] ^= 0xFF
    seg.write_bytes(bytes(data))
    got = _key(pick_frames(seg, every=1))
    want = _key(f for f in iter_frames(seg) if f.chunk_offset != hit.chunk_offset)
    assert got == want  # the chunk fails its CRC when read whole, exactly as in a scan
    assert hit.seq not in [g[0] for g in got] and len(got) < 60 and len(got) >= 55


def test_damaged_summary_falls_back_to_a_scan(tmp_path: Path) -> None:
    seg = tmp_path / "F1" / "down" / "000001.mcap"
    write_segment(seg, "down", frames=30, pad_kb=20)
    data = bytearray(seg.read_bytes())
    data[-40] ^= 0x01  # inside the summary (just before the footer): its CRC no longer checks
    seg.write_bytes(bytes(data))
    opened.clear()
    assert _key(pick_frames(seg, every=2, opener=Counting)) == _key(iter_frames(seg, every=2))
    assert opened[0].read_bytes >= seg.stat().st_size


def test_stills_left_out_on_request(tmp_path: Path) -> None:
    import numpy as np
    from netfixtures import _jpeg

    from camctl.board.config import StoreConfig
    from camctl.common.frames import EncodedFrame
    from camctl.store import FlightStore

    jpeg = _jpeg(np.random.default_rng(0))
    with FlightStore(tmp_path, "rig", "F1", StoreConfig(queue_frames=64, reserve_mb=0),
                     cameras=["down"], fsync=lambda fd: None) as st:
        for i in range(20):
            assert st.put(EncodedFrame(camera="down", seq=i, timestamp_ns=10**9 + i, jpeg=jpeg,
                                       width=64, height=48, phase="DESCENT", still=i % 7 == 0))
    segs = sorted((tmp_path / "F1" / "down").glob("*.mcap"))
    for seg in segs:
        assert _key(pick_frames(seg, every=3)) == _key(iter_frames(seg, every=3))
        assert (_key(pick_frames(seg, every=3, stills=False))
                == _key(f for f in iter_frames(seg, every=3) if not f.still))
    assert any(f.still for seg in segs for f in pick_frames(seg))
