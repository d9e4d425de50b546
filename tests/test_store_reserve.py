"""The full-disk reserve (camctl.store.reserve) and repair in place on a filesystem at 100%.

Real tmpfs mounts (CI runs as root; ``store_helpers.tmpfs`` skips only where mounting is not
allowed), real processes killed with SIGKILL, a filler file written until ENOSPC as another writer
on the same card would.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from mcap.reader import make_reader
from store_helpers import frame, tmpfs

from camctl.store import FlightStore, repair_segment, verify
from camctl.store._salvage import scan_segment
from camctl.store.config import StoreConfig
from camctl.store.reserve import RESERVE_NAME, Reserve, find_reserve, free_bytes, with_reserve

REPO = Path(__file__).resolve().parents[1]
CHUNKS = 60
JPEG_SIDE = 148  # a noise JPEG of ~55 kB: 60 chunks of one frame make a 3.3 MB segment

# records CHUNKS frames into a FlightStore (a commit each: one chunk each), then dies by SIGKILL:
# the segment is left unfinished, as a power cut leaves it
_RECORDER = """
import os, signal, sys
from pathlib import Path
import numpy as np, simplejpeg
from camctl.common.frames import EncodedFrame
from camctl.store import FlightStore
from camctl.store.config import StoreConfig
root, n, side = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
noise = np.random.default_rng(7).integers(0, 255, (side, side, 3), dtype=np.uint8)
data = simplejpeg.encode_jpeg(noise, quality=95)
st = FlightStore(root, "b", "F", StoreConfig(reserve_mb=0, commit_interval_ms=60_000),
                 cameras=["cam"])
for seq in range(n):
    st.put(EncodedFrame(camera="cam", seq=seq, timestamp_ns=(seq + 1) * 10**6, jpeg=data,
                        width=32, height=24, phase="DESCENT", value=3, meta={}))
    st.commit(wait=True)
assert st.stats()["cam"]["durable_frames"] == n, st.stats()
os.kill(os.getpid(), signal.SIGKILL)
"""


def _fill(path: Path) -> None:
    """Write ``path`` until its filesystem is full to the last byte (another writer on the card)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        for block in (1 << 16, 4096, 1):
            with contextlib.suppress(OSError):
                while True:
                    os.write(fd, b"\0" * block)
    finally:
        os.close(fd)


def _record_torn(root: Path) -> Path:
    """A 3.3 MB, 60-chunk camera segment killed mid-flight, with a torn tail (the start of a chunk
    whose commit never returned) -- what a power cut mid-commit leaves."""
    proc = subprocess.run([sys.executable, "-c", _RECORDER, str(root), str(CHUNKS),
                           str(JPEG_SIDE)], capture_output=True, text=True, timeout=300,
                          cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    seg = root / "F" / "cam" / "000001.mcap"
    scan = scan_segment(seg)
    assert len(scan.chunks) == CHUNKS and scan.torn_at is None and not scan.finished
    last = scan.chunks[-1]
    with open(seg, "rb") as f:
        f.seek(last.start)
        tail = f.read(300)
    with open(seg, "ab") as f:
        f.write(tail)
        os.fsync(f.fileno())
    return seg


def _plain_read(seg: Path) -> list[int]:
    with open(seg, "rb") as f:
        reader = make_reader(f, validate_crcs=True)
        assert reader.get_summary() is not None
        return [m.sequence for _, ch, m in reader.iter_messages() if ch.topic == "/cam/image"]


def test_posix_fallocate_really_allocates_on_tmpfs(tmp_path: Path) -> None:
    """The reserve's premise: statvfs counts a preallocated file as used, a truncate frees it."""
    with tmpfs(tmp_path / "mnt", "4m") as mnt:
        before = free_bytes(mnt)
        r = Reserve(mnt)
        assert r.grow(1 << 20) and r.size() == 1 << 20
        assert free_bytes(mnt) == before - (1 << 20)
        assert r.release(256 << 10) == 256 << 10 and r.size() == 768 << 10
        assert free_bytes(mnt) == before - (768 << 10)
        # more than the disk holds: refused, and nothing partial is kept
        assert not r.grow(16 << 20) and r.size() == 768 << 10
        assert free_bytes(mnt) == before - (768 << 10)
        assert find_reserve(mnt) is not None and find_reserve(mnt).path == mnt / RESERVE_NAME


def test_with_reserve_releases_and_retries_on_a_full_disk(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "mnt", "4m") as mnt:
        r = Reserve(mnt)
        assert r.grow(512 << 10)
        _fill(mnt / "filler")
        assert free_bytes(mnt) == 0

        def step() -> None:
            (mnt / "daemon.json").write_bytes(b"x" * 20_000)

        with pytest.raises(OSError) as exc:  # no reserve taken: ENOSPC, as without one
            with_reserve(None, 32 << 10, step)
        assert exc.value.errno == errno.ENOSPC
        with_reserve(r, 32 << 10, step)
        assert (mnt / "daemon.json").stat().st_size == 20_000
        assert 0 < r.released <= 64 << 10 and r.size() >= 448 << 10


@pytest.mark.parametrize("reserve", [True, False], ids=["with-reserve", "no-reserve"])
def test_repair_in_place_of_a_big_segment_on_a_full_tmpfs(tmp_path: Path, reserve: bool) -> None:
    """Issue 27, defect 2: cutting a small torn tail frees less than a 60-chunk summary needs. With
    the store's reserve, `verify --repair` finishes on a tmpfs filled by another writer and keeps
    every chunk; without one it fails cleanly: the file still scans as before, never a half-written
    summary."""
    with tmpfs(tmp_path / "mnt", "8m") as mnt:
        seg = _record_torn(mnt)
        assert 3_000_000 < seg.stat().st_size < 3_600_000
        r = Reserve(mnt)
        if reserve:
            assert r.size() > 0, "the store made no reserve"
        else:
            r.release(r.size() + 1)
            (mnt / RESERVE_NAME).unlink(missing_ok=True)  # an old store
        before, cut = seg.read_bytes(), scan_segment(seg).torn_at
        assert cut is not None and cut < len(before)
        held = r.size()
        _fill(mnt / "filler")
        assert free_bytes(mnt) == 0
        proc = subprocess.run([sys.executable, "-m", "camctl", "verify", "--repair", str(mnt)],
                              capture_output=True, text=True, timeout=300, cwd=REPO,
                              env={**os.environ, "PYTHONPATH": str(REPO)})
        out = proc.stdout + proc.stderr
        if reserve:
            assert "UNRECOVERABLE" not in out and proc.returncode == 1, out
            assert _plain_read(seg) == list(range(CHUNKS))
            assert verify(seg).exit_code == 0
            assert r.size() < held, "the summary's room came from the reserve"
        else:
            assert proc.returncode != 0, out
            assert "no room" in out, out
            # cut back to its last commit, nothing half-written: it scans to the same chunks
            assert seg.read_bytes() in (before, before[:cut])
            assert len(scan_segment(seg).chunks) == CHUNKS
            # freed space later: the next repair finishes it
            (mnt / "filler").unlink()
            assert verify(seg, repair=True).exit_code == 1
            assert _plain_read(seg) == list(range(CHUNKS))


def _small_torn(root: Path) -> tuple[Path, int]:
    """A few-chunk segment killed mid-flight plus a torn tail; (path, the size before the tail)."""
    proc = subprocess.run([sys.executable, "-c", _RECORDER, str(root), "6", "40"],
                          capture_output=True, text=True, timeout=300, cwd=REPO,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    seg = root / "F" / "cam" / "000001.mcap"
    size = seg.stat().st_size
    last = scan_segment(seg).chunks[-1]
    data = seg.read_bytes()
    with open(seg, "ab") as f:
        f.write(data[last.start:last.start + 200])
    return seg, size


def test_a_repair_cut_after_the_tail_is_allocated_scans_as_before(tmp_path: Path,
                                                                  monkeypatch) -> None:
    """The tail's room is allocated (zeros) before a byte of the summary is written: a repair that
    dies there leaves the same chunks and a torn tail, and the next repair finishes it."""
    import camctl.store._repair as rep

    seg, size = _small_torn(tmp_path)
    real = rep._pwrite_all

    def dies_at_the_tail(fd: int, data: bytes, offset: int) -> None:
        if offset >= size:
            raise OSError("power cut")
        real(fd, data, offset)

    monkeypatch.setattr(rep, "_pwrite_all", dies_at_the_tail)
    with pytest.raises(OSError, match="power cut"):
        repair_segment(seg)
    monkeypatch.setattr(rep, "_pwrite_all", real)
    data = seg.read_bytes()
    assert len(data) > size and data[size:] == bytes(len(data) - size)  # allocated, all zeros
    scan = scan_segment(seg)
    assert len(scan.chunks) == 6 and scan.torn_at == size
    assert verify(seg, repair=True).exit_code == 1
    assert _plain_read(seg) == list(range(6))


def test_the_reserve_is_grown_again_when_space_returns(tmp_path: Path) -> None:
    """A store whose reserve was used (a landing on a full disk) grows it back, from its writer's
    statvfs tick, once the disk has room."""
    with tmpfs(tmp_path / "mnt", "8m") as mnt:
        st = FlightStore(mnt, "b", "F", StoreConfig(reserve_mb=0, commit_interval_ms=20),
                         cameras=["cam"])
        try:
            r = Reserve(mnt)
            full = r.size()
            assert full >= 512 << 10
            r.release(full)
            assert r.size() == 0
            for i in range(50):
                st.put(frame("cam", i))
                st.commit(wait=True)
                if r.size() >= full:
                    break
            assert r.size() >= full, r
        finally:
            st.close()


def test_boot_recovery_on_a_full_disk_repairs_and_logs_what_it_cut(tmp_path: Path) -> None:
    """A board killed mid-flight, then the disk filled by another writer: the boot's repair of the
    last flight finishes its 60-chunk segment and logs what it cut into the flight's event log
    (a new events segment), both from the reserve."""
    from camctl.store import iter_events, recover_store

    with tmpfs(tmp_path / "mnt", "8m") as mnt:
        seg = _record_torn(mnt)
        _fill(mnt / "filler")
        assert free_bytes(mnt) == 0
        report = recover_store(mnt)
        assert report.repaired == [str(seg)] and not report.unrecoverable, report.errors
        assert not [e for e in report.errors if "cannot" in e], report.errors
        assert _plain_read(seg) == list(range(CHUNKS))
        logged = [e for p in sorted((mnt / "F" / "events").glob("*.mcap")) for e in iter_events(p)]
        assert [e["kind"] for e in logged] == ["loss"], logged


def test_append_events_takes_its_room_from_the_reserve(tmp_path: Path) -> None:
    from camctl.store._eventlog import append_events

    with tmpfs(tmp_path / "mnt", "4m") as mnt:
        flight = mnt / "F"
        flight.mkdir()
        r = Reserve(mnt)
        assert r.grow(256 << 10)
        _fill(mnt / "filler")
        recs = [{"kind": "fault", "name": "x", "message": "m" * 2000}] * 8
        path = append_events(flight, recs)
        assert path.is_file() and r.size() < 256 << 10
        r.release(r.size())
        _fill(mnt / "filler")  # the other writer takes what was left
        with pytest.raises(OSError) as exc:  # nothing left to take: ENOSPC, no file left behind
            append_events(flight, recs)
        assert exc.value.errno == errno.ENOSPC
        assert sorted(p.name for p in (flight / "events").iterdir()) == [path.name]


def test_verify_rebuilds_a_flights_index_on_a_full_disk_from_the_reserve(tmp_path: Path) -> None:
    """A landed flight whose index.json is gone (a crash between the last segment and the index),
    on a disk another writer filled: `verify --repair` rebuilds the index with room from the
    store's reserve, where without one it can only say "cannot rebuild"."""
    with tmpfs(tmp_path / "mnt", "6m") as mnt:
        with FlightStore(mnt, "b", "F", StoreConfig(reserve_mb=0), cameras=["cam"]) as st:
            for seq in range(40):
                st.put(frame("cam", seq))
        index = mnt / "F" / "index.json"
        assert index.is_file()
        index.unlink()
        r = Reserve(mnt)  # the store made it (FlightStore keeps one); grown to be sure
        assert r.grow(256 << 10)
        held = r.size()
        _fill(mnt / "filler")
        assert free_bytes(mnt) == 0
        report = verify(mnt / "F", repair=True)
        assert str(index) in report.repaired and not report.unrecoverable, report.errors
        assert index.is_file() and r.size() < held
        # the same without the reserve's room: the rebuild cannot be written
        index.unlink()
        r.release(r.size())
        _fill(mnt / "filler")
        report = verify(mnt / "F", repair=True)
        assert str(index) in report.unrecoverable, report.errors
