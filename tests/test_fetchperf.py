"""The fast retrieval path: previews read through the MCAP index (same result as a full parse), made
off the server thread (THUMBS says "retry" meanwhile and the server keeps answering), zero-copy
CHUNK decoding, fds reused across FETCHes and re-opened when a file is replaced, resume hashing a
kept prefix."""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path

import pytest
import zmq
from netfixtures import FakeBoard, make_store, write_segment

from camctl.board.config import PublishConfig, StoreConfig
from camctl.board.publish import Catalog, Publisher, previews
from camctl.common import protocol as p
from camctl.common.frames import EncodedFrame
from camctl.exc import ProtocolError
from camctl.ground import Client
from camctl.store import FlightStore
from camctl.store.reader import iter_frames

CFG = PublishConfig(bind="tcp://127.0.0.1:*", events="tcp://127.0.0.1:*", chunk_kb=64,
                    thumbs_every=3)


def _store_flight(root: Path, n: int = 40) -> list[Path]:
    """A flight written by the real FlightStore (uncompressed chunks with message indexes)."""
    import numpy as np
    import simplejpeg

    rng = np.random.default_rng(1)
    jpegs = [simplejpeg.encode_jpeg(rng.integers(0, 255, size=(48, 64, 3), dtype=np.uint8),
                                    quality=80) for _ in range(4)]
    with FlightStore(root, "rig", "F1", StoreConfig(queue_frames=n + 8, reserve_mb=0),
                     cameras=["down"], fsync=lambda fd: None) as st:
        for i in range(n):
            assert st.put(EncodedFrame(camera="down", seq=100 + i,
                                       timestamp_ns=10**9 + i * 33_000_000, jpeg=jpegs[i % 4],
                                       width=64, height=48, phase="DESCENT"))
    return sorted((root / "F1" / "down").glob("*.mcap"))


def test_previews_are_every_nth_image_read_through_the_store_reader(tmp_path: Path) -> None:
    segs = _store_flight(tmp_path)
    assert segs
    images = [fr for seg in segs for fr in iter_frames(seg) if not fr.still]
    got = [t for seg in segs
           for t, _ in previews.make_previews(seg, f"F1/down/{seg.name}", "down", 3, 32)]
    per_seg = [fr for seg in segs
               for i, fr in enumerate(x for x in iter_frames(seg) if not x.still) if i % 3 == 0]
    assert [(t.seq, t.timestamp_ns, t.phase) for t in got] == [
        (f.seq, f.timestamp_ns, f.phase) for f in per_seg]
    assert [t.seq for t in got][:2] == [100, 103] and len(images) == 40
    assert all(t.width == 32 for t in got)


def _read_syscall_bytes() -> int:
    """Bytes this process has read through read(2) and friends so far (/proc/self/io ``rchar``)."""
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])
    raise AssertionError("no rchar in /proc/self/io")


def test_previews_of_a_large_segment_read_a_fraction_of_it(tmp_path: Path) -> None:
    seg = tmp_path / "F1" / "down" / "000001.mcap"
    write_segment(seg, "down", frames=300, pad_kb=30, width=96)  # ~9.5 MB in ~150 chunks of 64 KiB
    size = seg.stat().st_size
    before = _read_syscall_bytes()
    got = previews.make_previews(seg, "F1/down/000001.mcap", "down", 10, 32)
    read = _read_syscall_bytes() - before
    print(f"previews of every 10th image read {read} of {size} bytes")
    assert [t.seq for t, _ in got] == list(range(0, 300, 10)) and all(t.width == 32 for t, _ in got)
    assert [t.phase for t, _ in got] == ["DESCENT"] * 30  # each preview's metadata was found
    # the chosen images, their metadata records and the indexes; not the segment
    assert read < size * 0.15


def test_thumbs_retry_while_worker_busy_server_keeps_answering(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_store(tmp_path, cameras=("down",), segments=2, frames=7)
    gate, started = threading.Event(), threading.Event()
    real = previews.make_previews

    def slow(*args):
        started.set()
        assert gate.wait(30)
        return real(*args)

    monkeypatch.setattr(previews, "make_previews", slow)
    # No warm-up: THUMBS is the first ask. (Patched out rather than timed: a warm-up firing between
    # the two THUMBS calls below made previews of other keys, so 'made' moved: a flake under load.)
    monkeypatch.setattr(Publisher, "_maybe_warm", lambda self: None)
    board = FakeBoard("rig-a", tmp_path)
    with Publisher(board, CFG) as pub, Client(pub.router_endpoint, timeout_s=10) as c:
        reply = c.request(p.Thumbs(id=c.next_id(), flight="f1", camera="down"), p.Thumbnails)
        assert reply.more and reply.retry_ms > 0 and reply.thumbs == []
        assert started.wait(30)
        assert c.ping() > 0  # the server thread is not the one making previews
        assert c.list("f1")
        gate.set()
        thumbs = c.thumbs("f1", camera="down")
        assert [(t.segment[-11:], t.seq) for t, _ in thumbs] == [
            ("000000.mcap", 0), ("000000.mcap", 3), ("000000.mcap", 6),
            ("000001.mcap", 7), ("000001.mcap", 10), ("000001.mcap", 13)]
        assert all(j[:2] == b"\xff\xd8" for _, j in thumbs)
        made = pub.previews.made
        # cached, not remade
        assert c.thumbs("f1", camera="down") == thumbs and pub.previews.made == made


def test_previews_cache_is_bounded(tmp_path: Path) -> None:
    make_store(tmp_path, cameras=("down",), segments=3, frames=4)
    pv = previews.Previews(max_bytes=1)
    try:
        segs = sorted((tmp_path / "f1" / "down").glob("*.mcap"))
        pv.warm([(s, f"f1/down/{s.name}", "down", 1, 32) for s in segs])
        with pv._cond:
            assert pv._cond.wait_for(lambda: pv.made == 3, timeout=30)
            assert len(pv._cache) == 1  # only the newest survives a 1-byte budget
    finally:
        pv.close()


def test_chunk_decodes_zero_copy_from_frames() -> None:
    msg = p.Chunk(id=3, path="f1/down/000000.mcap", offset=8, data=bytes(range(256)) * 1000)
    frames = [zmq.Frame(f) for f in msg.encode()]
    got = p.decode(frames)
    assert isinstance(got, p.Chunk) and isinstance(got.data, memoryview)
    assert got == msg and bytes(got.data) == msg.data
    bad = msg.encode()
    bad[4] = bad[4][:-1]
    with pytest.raises(ProtocolError, match="CHUNK size"):
        p.decode([zmq.Frame(f) for f in bad])


def test_fds_reused_and_reopened_when_file_replaced(tmp_path: Path) -> None:
    files = make_store(tmp_path, cameras=("down",), segments=1, frames=3)
    seg = next(f for f in files if f.suffix == ".mcap")
    rel = seg.relative_to(tmp_path).as_posix()
    cat = Catalog(tmp_path)
    try:
        fd = cat.open_fd(rel, set())
        assert cat.open_fd(rel, set()) == fd  # kept open
        new = seg.with_name("new.tmp")
        new.write_bytes(b"replaced by repair")
        new.replace(seg)
        fd2 = cat.open_fd(rel, set())
        assert os.pread(fd2, 100, 0) == b"replaced by repair"
        with pytest.raises(Exception, match="still being written or checked"):
            cat.open_fd(rel, {seg})
    finally:
        cat.close()


def test_resume_hashes_kept_prefix(tmp_path: Path) -> None:
    make_store(tmp_path / "store", cameras=("down",), segments=1, frames=30, pad_kb=8)
    with Publisher(FakeBoard("rig-a", tmp_path / "store"), CFG) as pub, \
            Client(pub.router_endpoint, timeout_s=10) as c:
        c.hello()
        seg = next(s for s in c.list("f1") if s.kind == "segment")
        src = (tmp_path / "store" / seg.path).read_bytes()
        dest = tmp_path / "g" / "seg.mcap"
        dest.parent.mkdir()
        dest.with_name("seg.mcap.part").write_bytes(src[:100_001])  # an earlier, cut download
        assert c.fetch_file(seg, dest, window=3, chunk_kb=16) == "fetched"
        assert dest.read_bytes() == src and hashlib.sha256(src).hexdigest() == seg.sha256
        assert c.bytes_received == len(src) - 100_001  # nothing re-sent


def test_previews_still_being_made_do_not_hold_the_download_back(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A fetch started right after landing: the board's preview worker is busy, so THUMBS says
    "retry"; the segments come down meanwhile and the previews are picked up between files, all of
    them in the end."""
    from camctl.ground import fetch

    make_store(tmp_path / "board", cameras=("down",), segments=3, frames=9)
    out = tmp_path / "out"
    seen: list[bool] = []
    real = previews.make_previews

    def after_a_segment_is_down(*args):
        # hold previews back until the fetch has a segment on disk (give up after 10 s: the old
        # fetch waited for every preview before the first segment, so it never had one)
        for _ in range(200):
            if list(out.rglob("down/*.mcap")):
                break
            threading.Event().wait(0.05)
        seen.append(bool(list(out.rglob("down/*.mcap"))))
        return real(*args)

    monkeypatch.setattr(previews, "make_previews", after_a_segment_is_down)
    board = FakeBoard("rig-a", tmp_path / "board")
    with Publisher(board, CFG) as pub:
        report = fetch([pub.router_endpoint], out, progress=False, give_up_after_s=60)
    assert report.ok, report.summary()
    assert seen and seen[0], "the first preview was made before any segment came down"
    thumbs = sorted(x.relative_to(out).as_posix() for x in out.rglob("*.jpg"))
    # every 3rd of 9 frames in each of 3 segments
    assert len(thumbs) == report.board("rig-a").thumbs == 9
    assert report.board("rig-a").fetched == 5  # 3 segments, flight.json and the events log


def _resident_fraction(path: Path) -> float:
    """The share of ``path``'s pages in the page cache (mincore(2) over a read-only map of it)."""
    import ctypes
    import mmap

    size = path.stat().st_size
    page = mmap.PAGESIZE
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                          ctypes.c_int, ctypes.c_long]
    libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_char_p]
    fd = os.open(path, os.O_RDONLY)
    try:
        addr = libc.mmap(None, size, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
        assert addr not in (None, ctypes.c_void_p(-1).value), os.strerror(ctypes.get_errno())
        pages = (size + page - 1) // page
        vec = ctypes.create_string_buffer(pages)
        try:
            assert libc.mincore(ctypes.c_void_p(addr), size, vec) == 0, (
                os.strerror(ctypes.get_errno()))
        finally:
            libc.munmap(ctypes.c_void_p(addr), size)
    finally:
        os.close(fd)
    return sum(b & 1 for b in vec.raw) / pages


def test_downloaded_pages_leave_the_page_cache(tmp_path: Path) -> None:
    """A download fsyncs what it wrote and lets the kernel drop those pages: a flight of gigabytes
    does not evict the ground station's page cache (writes stay cheap: download._drop_behind)."""
    import subprocess

    fs = subprocess.run(["stat", "-f", "-c", "%T", str(tmp_path)], capture_output=True,
                        text=True).stdout.strip()
    if fs in ("tmpfs", "ramfs"):
        pytest.skip(f"{tmp_path} is on {fs}: "
                    "its pages are the file itself and can never be dropped")
    seg = tmp_path / "board" / "F1" / "down" / "000001.mcap"
    write_segment(seg, "down", frames=120, pad_kb=64)  # ~8 MB: two writeback steps and the tail
    board = FakeBoard("rig-a", tmp_path / "board")
    with Publisher(board, CFG) as pub, Client(pub.router_endpoint, timeout_s=10) as c:
        c.hello()
        info = next(s for s in c.list("F1") if s.path.endswith("000001.mcap"))
        dest = tmp_path / "out" / "000001.mcap"
        assert c.fetch_file(info, dest, window=8, chunk_kb=64) == "fetched"
    dropped = _resident_fraction(dest)  # before anything reads it back
    # the board's copy, just written and read: cached (mincore works)
    assert _resident_fraction(seg) > 0.9
    assert dropped < 0.1, f"{dropped:.0%} of the downloaded file is still in the page cache"
    assert hashlib.sha256(dest.read_bytes()).hexdigest() == info.sha256


def test_sink_reports_a_write_error_and_hashes_what_it_wrote(tmp_path: Path) -> None:
    """The sink's one thread writes then hashes each chunk: a full disk reaches the receiving thread
    as a FetchError naming the file (never a hang on the bounded queue), and a good run hashes
    exactly the file."""
    import errno
    import io

    from camctl.exc import FetchError
    from camctl.ground.download import Sink

    class Full(io.FileIO):
        def write(self, b) -> int:
            if self.tell() >= 1 << 20:
                raise OSError(errno.ENOSPC, "No space left on device")
            return super().write(b)

    chunks = [os.urandom(256 << 10) for _ in range(80)]  # more than the queue holds
    h = hashlib.sha256()
    sink = Sink(Full(tmp_path / "x.part", "ab"), h, threads=True)
    with pytest.raises(FetchError, match=r"writing .*x\.part: .*No space left"):
        for c in chunks:
            sink.put(c)
        sink.close()
    with pytest.raises(FetchError):
        sink.close()  # safe twice, still says why
    h = hashlib.sha256()
    sink = Sink(open(tmp_path / "y.part", "ab", buffering=0), h, threads=True)  # noqa: SIM115
    for c in chunks:
        sink.put(c)
    sink.close()
    assert h.hexdigest() == hashlib.sha256((tmp_path / "y.part").read_bytes()).hexdigest()


def test_no_preview_work_while_the_board_records_a_flight(tmp_path: Path) -> None:
    """Previews queued at a landing are held while the next flight is recorded (their CPU belongs to
    the cameras, encoders and GPIO callbacks then) and made once the board serves again."""
    make_store(tmp_path, cameras=("down",), segments=3, frames=4)
    # landed: serving, so the publisher warms previews of every segment
    board = FakeBoard("rig-a", tmp_path)
    with Publisher(board, CFG) as pub:
        pv = pub.previews
        with pv._cond:
            assert pv._cond.wait_for(lambda: pv.made >= 1, timeout=30)
        # the next flight arms before all previews are made: they are held from the next check on
        board.is_serving, board.phase = False, "ARMED"
        with pv._cond:
            assert pv._cond.wait_for(lambda: pv.held, timeout=30)
        segs = sorted((tmp_path / "f1" / "down").glob("*.mcap"))
        made = pv.made
        # new jobs queued while held
        pv.warm([(s, f"f1/down/{s.name}", "down", 1, 48) for s in segs])
        with pv._cond:
            assert not pv._cond.wait_for(lambda: pv.made > made + 1, timeout=1.0), (
                "previews made during a flight")
        board.is_serving, board.phase = True, "LANDED"  # landed again: the held work goes on
        with pv._cond:
            assert pv._cond.wait_for(lambda: not pv.held and pv.made >= made + len(segs),
                                     timeout=30)
