"""The segment writer's hand-built bytes: CompressedImage protobuf equals protobuf's own, streamed
chunks carry the CRC the plain mcap reader checks, and a chunk still open at a kill is a torn tail,
not damage."""

from __future__ import annotations

import zlib
from pathlib import Path

from foxglove_schemas_protobuf.CompressedImage_pb2 import CompressedImage
from hypothesis import given, settings
from hypothesis import strategies as st
from mcap.reader import make_reader
from store_helpers import jpeg

from camctl.store import verify
from camctl.store._records import (
    CH_IMAGE,
    CH_META,
    CH_STILL,
    CHUNK_HEADER_LEN,
    camera_layout,
    compressed_image_parts,
)
from camctl.store._salvage import scan_segment
from camctl.store._segment import SegmentWriter


def _proto(ts: int, frame_id: str, data: bytes, fmt: str) -> bytes:
    img = CompressedImage(frame_id=frame_id, data=data, format=fmt)
    img.timestamp.FromNanoseconds(ts)
    return img.SerializeToString()


def _ours(ts: int, frame_id: str, data: bytes, fmt: str) -> bytes:
    prefix, suffix = compressed_image_parts(ts, frame_id, len(data), fmt)
    return prefix + data + suffix


def test_field_numbers_are_the_ones_we_encode() -> None:
    fields = {f.name: f.number for f in CompressedImage.DESCRIPTOR.fields}
    assert fields == {"timestamp": 1, "frame_id": 4, "data": 2, "format": 3}
    timestamp = CompressedImage.DESCRIPTOR.fields_by_name["timestamp"].message_type
    ts = {f.name: f.number for f in timestamp.fields}
    assert ts == {"seconds": 1, "nanos": 2}


@settings(max_examples=300, deadline=None)
@given(ts=st.one_of(st.integers(-(2**62), 2**63 - 1),
                    st.sampled_from([0, 1, 999_999_999, 10**9, -1])),
       frame_id=st.text(max_size=40), data=st.binary(max_size=600),
       fmt=st.sampled_from(["jpeg", "", "png", "ü"]))
def test_compressed_image_bytes_equal_protobuf(ts: int, frame_id: str, data: bytes,
                                               fmt: str) -> None:
    ours = _ours(ts, frame_id, data, fmt)
    assert ours == _proto(ts, frame_id, data, fmt)
    back = CompressedImage.FromString(ours)
    assert ((back.frame_id, back.data, back.format, back.timestamp.ToNanoseconds())
            == (frame_id, data, fmt, ts))


def test_zero_timestamp_is_present_and_empty() -> None:
    prefix, suffix = compressed_image_parts(0, "", 0, "jpeg")
    assert prefix == b"\x0a\x00" and suffix == b"\x1a\x04jpeg"
    assert CompressedImage.FromString(prefix + suffix).HasField("timestamp")


def _write(path: Path, n_chunks: int, per_chunk: int, *, big: bytes) -> list[int]:
    """A segment of image+meta messages in ``n_chunks`` commits; one in four carries ``big``."""
    w = SegmentWriter(path, camera_layout("cam"), writeback_bytes=64 << 10)
    seqs = []
    for k in range(n_chunks):
        for j in range(per_chunk):
            seq = k * per_chunk + j
            data = big if seq % 4 == 0 else jpeg(seq)
            w.add_image(CH_IMAGE, 1000 + seq, 2000 + seq, seq, data, frame_id="cam",
                        timestamp_ns=1000 + seq)
            w.add_message(CH_META, 1000 + seq, 2000 + seq, seq, b'{"seq":%d}' % seq)
            seqs.append(seq)
        w.commit()
    w.finish()
    return seqs


def test_streamed_chunks_read_by_plain_mcap_with_crcs(tmp_path: Path) -> None:
    big = jpeg(99, 640, 480)
    assert len(big) > 16 << 10  # written straight from its buffer, not gathered
    path = tmp_path / "cam" / "000001.mcap"
    path.parent.mkdir()
    seqs = _write(path, 5, 7, big=big)
    with path.open("rb") as f:
        reader = make_reader(f, validate_crcs=True)
        summary = reader.get_summary()
        assert summary is not None and len(summary.chunk_indexes) == 5
        got = [(m.sequence, CompressedImage.FromString(m.data))
               for _, ch, m in reader.iter_messages() if ch.topic == "/cam/image"]
    assert [s for s, _ in got] == seqs
    for seq, img in got:
        assert (img.data == (big if seq % 4 == 0 else jpeg(seq))
                and img.timestamp.ToNanoseconds() == 1000 + seq)
    data = path.read_bytes()
    for ci in summary.chunk_indexes:  # the CRC is over exactly the records bytes of each chunk
        start = ci.chunk_start_offset
        body = data[start + CHUNK_HEADER_LEN:start + ci.chunk_length]
        chunk_crc = int.from_bytes(data[start + 33:start + 37], "little")
        assert chunk_crc == zlib.crc32(body) and len(body) == ci.uncompressed_size
    assert verify(path).exit_code == 0


def test_open_chunk_at_a_kill_is_a_torn_tail(tmp_path: Path) -> None:
    path = tmp_path / "cam" / "000001.mcap"
    path.parent.mkdir()
    w = SegmentWriter(path, camera_layout("cam"))
    big = jpeg(7, 640, 480)
    for seq in range(3):
        w.add_image(CH_IMAGE, seq, seq, seq, big, frame_id="cam", timestamp_ns=seq)
    w.commit()
    committed = w.committed_size
    for seq in range(3, 6):  # streamed to the file, never committed
        w.add_image(CH_IMAGE, seq, seq, seq, big, frame_id="cam", timestamp_ns=seq)
    assert w.size > committed
    cut = path.read_bytes()  # what a kill -9 leaves in the page cache
    w.close()
    path.write_bytes(cut)
    scan = scan_segment(path)
    assert scan.torn_at == committed and not scan.tail_damaged and not scan.lost[:-1]
    assert sum(len(c.messages) for c in scan.chunks) == 3
    rep = verify(path)
    assert rep.exit_code == 1 and not rep.lost_chunks and rep.cameras["cam"].frames == 3
    rep = verify(path, repair=True)
    assert rep.repaired == [str(path)]
    assert verify(path).exit_code == 0
    with path.open("rb") as f:
        messages = make_reader(f, validate_crcs=True).iter_messages()
        assert [m.sequence for *_, m in messages] == [0, 1, 2]


def test_frame_checks_agree_with_scan_frames(tmp_path: Path) -> None:
    from camctl.store.reader import scan_frame_checks, scan_frames

    path = tmp_path / "cam" / "000001.mcap"
    path.parent.mkdir()
    w = SegmentWriter(path, camera_layout("cam"))
    w.add_image(CH_IMAGE, 1, 1, 1, jpeg(1), frame_id="cam", timestamp_ns=1)
    w.add_image(CH_STILL, 2, 2, 2, jpeg(2), frame_id="cam", timestamp_ns=2)  # a still
    w.add_image(CH_IMAGE, 3, 3, 3, b"not a jpeg", frame_id="cam", timestamp_ns=3)
    w.add_message(CH_IMAGE, 4, 4, 4, b"\xff\xff\xff")  # not protobuf: skipped by both
    twice = _proto(5, "cam", b"junk", "jpeg") + _proto(5, "cam", jpeg(5), "jpeg")  # last data wins
    w.add_message(CH_IMAGE, 5, 5, 5, twice)
    w.add_message(CH_META, 1, 1, 1, b'{"seq":1}')
    w.commit()
    w.close()
    scan = scan_segment(path)
    checks = [(c.seq, c.still, c.jpeg_ok) for c in scan_frame_checks(scan)]
    frames = [(f.seq, f.still, f.jpeg_ok) for f in scan_frames(scan)]
    assert checks == frames == [(1, False, True), (2, True, True), (3, False, False),
                                (5, False, True)]


def test_jpeg_ok_needs_a_header_and_an_end_of_image_marker():
    import numpy as np

    from camctl.board.encode import encode_jpeg
    from camctl.store.reader import jpeg_ok

    whole = encode_jpeg(np.random.default_rng(1).integers(0, 255, (48, 64, 3), dtype=np.uint8))
    # V4L2 padding
    assert jpeg_ok(whole) and jpeg_ok(memoryview(whole)) and jpeg_ok(whole + b"\0" * 16)
    # a truncated frame: the header decodes, the EOI is gone
    assert not jpeg_ok(whole[: len(whole) // 2])
    assert not jpeg_ok(b"\xff\xd8not a jpeg")
