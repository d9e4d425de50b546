"""Durability: group commit and fsync accounting, ENOSPC (injected and on a real tmpfs), the quota
policy, queue overflow with a stalled writer."""

from __future__ import annotations

import errno
import json
import os
import shutil
import threading
import time
from pathlib import Path

from mcap.reader import make_reader
from store_helpers import frame, indexed_read, jpeg, tmpfs
from waiting import wait_for

from camctl.board.config import StoreConfig
from camctl.common.frames import FrameValue
from camctl.store import FlightStore, QuotaLevel, iter_events, iter_frames, recover_store, verify

MB = 1 << 20


def _frames_on_disk(fdir: Path, cam: str) -> list[int]:
    return [f.seq for s in sorted((fdir / cam).glob("*.mcap")) for f in iter_frames(s)]


def _events(fdir: Path) -> list[dict]:
    return [e for s in sorted((fdir / "events").glob("*.mcap")) for e in iter_events(s)]


def test_durable_lags_until_commit(tmp_path: Path) -> None:
    cfg = StoreConfig(reserve_mb=0, commit_interval_ms=60_000)  # no timed commit in this test
    with FlightStore(tmp_path, "b", "F", cfg, cameras=["c"]) as st:
        for i in range(10):
            assert st.put(frame("c", i))
        wait_for(lambda: st.stats()["c"]["frames_stored"] == 10, "10 frames stored")
        assert st.stats()["c"]["durable_frames"] == 0
        assert st.open_segments()
        st.commit(wait=True)
        s = st.stats()["c"]
        assert s["durable_frames"] == s["frames_stored"] == 10 and s["bytes"] > 0


def test_fsyncs_bounded_by_interval_and_phase_commits(tmp_path: Path, monkeypatch) -> None:
    calls = []
    real = os.fsync

    def counting(fd: int) -> None:
        calls.append(fd)
        real(fd)

    monkeypatch.setattr(os, "fsync", counting)
    cfg = StoreConfig(reserve_mb=0, commit_interval_ms=50)
    st = FlightStore(tmp_path, "b", "F", cfg, cameras=["a", "b"])
    calls.clear()
    t0 = time.monotonic()
    phase_commits = 0
    for i in range(200):
        st.put(frame("a", i))
        st.put(frame("b", i))
        if i % 50 == 0:
            st.log_event({"kind": "phase", "name": f"P{i}"})
            st.commit()
            phase_commits += 1
        if i % 20 == 0:
            time.sleep(0.01)  # paced like a camera, so timed commits happen too
    st.commit(wait=True)
    elapsed = time.monotonic() - t0
    n, commits = len(calls), st.commits
    st.close()
    segments = 3  # a, b, events: one dir fsync each when created
    assert commits <= elapsed / 0.05 + phase_commits + 2
    assert n <= commits * 3 + segments, (n, commits, elapsed)
    assert _frames_on_disk(tmp_path / "F", "a") == list(range(200))
    print(f"fsyncs={n} commits={commits} elapsed={elapsed:.3f}s")


class _FailingFile:
    """A segment file whose writes raise ENOSPC while ``full`` is set."""

    def __init__(self, path: Path, full: threading.Event) -> None:
        self._f = open(path, "xb", buffering=0)  # noqa: SIM115
        self._full = full

    def write(self, data) -> int:
        if self._full.is_set():
            raise OSError(errno.ENOSPC, "No space left on device (injected)")
        return self._f.write(data)

    def flush(self) -> None:
        pass

    def fileno(self) -> int:
        return self._f.fileno()

    def close(self) -> None:
        self._f.close()


def test_enospc_injected_never_raises_and_keeps_committed_frames(tmp_path: Path) -> None:
    full = threading.Event()
    free = [10_000 * MB]
    drops: list[dict] = []
    cfg = StoreConfig(reserve_mb=0, commit_interval_ms=60_000)
    st = FlightStore(tmp_path, "b", "F", cfg, cameras=["c"], on_drop=drops.append,
                     opener=lambda p: _FailingFile(p, full), free_bytes=lambda: free[0])
    for i in range(5):
        assert st.put(frame("c", i))
    st.commit(wait=True)
    assert st.stats()["c"]["durable_frames"] == 5
    for i in range(5, 8):
        st.put(frame("c", i))
    wait_for(lambda: st.stats()["c"]["frames_stored"] == 8, "8 frames stored")
    full.set()  # the disk fills: the next commit fails
    st.commit(wait=True)
    # queued (put never blocks, never raises), then dropped by the writer: disk full
    for i in range(8, 12):
        assert st.put(frame("c", i)) is True
    st.commit(wait=True)
    s = st.stats()["c"]
    assert s["durable_frames"] == 5 and s["frames_stored"] == 5
    assert s["dropped"]["disk_full"] == 7
    # a power cut now: the abandoned segment keeps its committed chunks
    snap = tmp_path / "snap"
    shutil.copytree(tmp_path / "F", snap / "F")
    rep = recover_store(snap)
    assert rep.exit_code in (0, 1) and rep.cameras["c"].frames >= 5
    assert _frames_on_disk(snap / "F", "c")[:5] == list(range(5))
    # space returns: writing resumes in a new segment
    full.clear()
    free[0] += 10 * MB
    wait_for(lambda: (st.put(frame("c", 100)), st.commit(wait=True),
                      st.stats()["c"]["durable_frames"])[2] > 5, "writing to resume")
    st.close()
    assert st.stats()["c"]["segments"] >= 2
    assert verify(tmp_path / "F", repair=True).exit_code in (0, 1)
    seqs = _frames_on_disk(tmp_path / "F", "c")
    assert seqs[:5] == list(range(5)) and 100 in seqs
    ev = _events(tmp_path / "F")
    faults = [e for e in ev if e["kind"] == "fault" and e["name"] == "disk_full"]
    # one meaning per field: the error's type, then its text
    assert faults and {(f["error"], f["message"]) for f in faults} == {
        ("OSError", "[Errno 28] No space left on device (injected)")}
    assert any(e["kind"] == "drop" and e["name"] == "disk_full" for e in ev)
    assert drops and drops[0]["camera"] == "c"


def test_enospc_real_tmpfs(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "mnt", "8m") as mnt:
        filler = mnt / "filler"
        filler.write_bytes(b"\0" * (2 * MB))
        big = [jpeg(i, 320, 240) for i in range(8)]  # noise JPEGs, ~60-70 kB each
        cfg = StoreConfig(reserve_mb=0, commit_interval_ms=20, segment_mb=1)
        # statvfs reads 64 MB more than there is (as if another writer raced us): the real tmpfs
        # answers ENOSPC

        def free() -> int:
            s = os.statvfs(mnt)
            return s.f_bavail * s.f_frsize + 64 * MB

        st = FlightStore(mnt, "b", "F", cfg, cameras=["c"], free_bytes=free)
        i = 0
        while "disk_full" not in st.stats()["c"]["dropped"]:
            assert i < 5000, "tmpfs never filled"
            st.put(frame("c", i, data=big[i % 8]))
            i += 1
            if i % 10 == 0:
                st.commit(wait=True)
        st.commit(wait=True)
        durable = st.stats()["c"]["durable_frames"]
        filler.unlink()  # space returns
        wait_for(lambda: (st.put(frame("c", 10_000, data=big[0])), st.commit(wait=True),
                          st.stats()["c"]["durable_frames"])[2] > durable, "writing to resume")
        st.close()
        stats = st.stats()["c"]
        # the segment abandoned at ENOSPC was finished at landing: nothing left to repair
        rep = verify(mnt)
        assert rep.exit_code == 0, rep.errors
        assert rep.cameras["c"].frames >= stats["durable_frames"] > durable > 0
        assert stats["dropped"]["disk_full"] > 0
        assert any(e["kind"] == "drop" and e["name"] == "disk_full" for e in _events(mnt / "F"))
        print(f"tmpfs: {durable} durable before full, drops {stats['dropped']}")


def _plain_read_all(seg: Path) -> int:
    """Messages the plain mcap reader reads through the summary (raises if the file is not
    finished)."""
    with seg.open("rb") as fh:
        reader = make_reader(fh)
        assert reader.get_summary() is not None, f"{seg}: no summary"
        return sum(1 for _ in reader.iter_messages())


def test_landing_on_a_full_tmpfs_finishes_every_file(tmp_path: Path) -> None:
    """A small real tmpfs fills at two cameras of big frames: the store stops taking frames while
    what finishing needs is still free, then lands with every segment finished, index.json written
    and the drops in the event log on disk."""
    with tmpfs(tmp_path / "mnt", "6m") as mnt:
        big = [jpeg(i, 320, 240) for i in range(8)]  # noise JPEGs, ~60-70 kB each
        cfg = StoreConfig(reserve_mb=1, commit_interval_ms=20, segment_mb=0.5)
        st = FlightStore(mnt, "b", "F", cfg, cameras=["a", "b"])
        st.log_event({"kind": "phase", "name": "DESCENT"})
        i = dropping = 0
        while dropping < 150:  # well past the moment the store stopped taking frames
            assert i < 5000, "tmpfs never filled"
            for cam in ("a", "b"):
                st.put(frame(cam, i, data=big[i % 8]))
            i += 1
            if i % 5 == 0:
                st.commit(wait=True)
            dropping += any(st.stats()[c]["dropped"] for c in ("a", "b"))
        st.log_event({"kind": "phase", "name": "LANDED"})
        st.close()
        stats = st.stats()
        fdir = mnt / "F"
        segs = sorted(fdir.glob("*/*.mcap"))
        assert len(segs) > 4
        for seg in segs:
            _plain_read_all(seg)
        js = indexed_read(segs)  # and Foxglove's indexed reader (@mcap/core)
        assert not [v for v in js.values() if "error" in v], js
        index = json.loads((fdir / "index.json").read_text())
        assert index and not list(fdir.glob("*.tmp"))
        assert verify(mnt).exit_code == 0
        events = _events(fdir)
        assert events[-1].get("name") == "LANDED" or any(e.get("name") == "LANDED" for e in events)
        for cam in ("a", "b"):
            dropped = stats[cam]["dropped"]
            assert set(dropped) <= {"store_full", "quota"} and sum(dropped.values()) > 0, dropped
            logged = {}
            for e in events:
                if e["kind"] == "drop" and e["camera"] == cam:
                    logged[e["name"]] = logged.get(e["name"], 0) + e["count"]
            assert logged == dropped, (cam, logged, dropped)
            assert _frames_on_disk(fdir, cam) == list(range(stats[cam]["durable_frames"]))
            assert [s for seg in segs if seg.parent.name == cam
                    for s in js[str(seg)].get(f"/{cam}/image", [])] == _frames_on_disk(fdir, cam)
        print(f"full tmpfs: {i} frames per camera offered, stats {stats}, free at landing "
              f"{os.statvfs(mnt).f_bavail * os.statvfs(mnt).f_frsize} bytes")


def test_quota_levels_drop_idle_then_thin_then_all_but_descent(tmp_path: Path) -> None:
    free = [1000 * MB]
    cfg = StoreConfig(reserve_mb=100, commit_interval_ms=60_000)
    st = FlightStore(tmp_path, "b", "F", cfg, cameras=["fast", "slow"], free_bytes=lambda: free[0])

    def level(mb: float, want: QuotaLevel) -> None:
        free[0] = int(mb * MB)
        wait_for(lambda: (st.commit(wait=True), st.quota_level)[1] == want, f"quota {want}")

    assert st.put(frame("fast", 0, value=FrameValue.IDLE))
    level(80, QuotaLevel.LOW)
    assert not st.put(frame("fast", 1, value=FrameValue.IDLE))
    assert st.put(frame("fast", 2, value=FrameValue.PRETRIGGER))
    for i in range(10, 30):  # "fast" has the higher rate
        st.put(frame("fast", i))
    st.put(frame("slow", 10))
    level(40, QuotaLevel.THIN)
    kept = [st.put(frame("fast", i)) for i in range(100, 120)]
    assert sum(kept) == 10
    assert all(st.put(frame("slow", i)) for i in range(100, 105))
    assert st.put(frame("fast", 130, still=True, value=FrameValue.STILL))
    level(20, QuotaLevel.CRITICAL)
    assert not st.put(frame("slow", 200, value=FrameValue.PRETRIGGER))
    assert st.put(frame("slow", 201, value=FrameValue.DESCENT))
    assert st.put(frame("slow", 202, value=FrameValue.TOUCHDOWN))
    level(0.5, QuotaLevel.FLOOR)  # below what finishing needs (the event log's 1 MB room included)
    assert not st.put(frame("slow", 300, value=FrameValue.STILL))
    level(1000, QuotaLevel.OK)
    assert st.put(frame("slow", 400, value=FrameValue.IDLE))
    st.close()
    stats = st.stats()
    assert stats["fast"]["dropped"] == {"quota": 11} and stats["slow"]["dropped"] == {"quota": 2}
    changes = [e["name"] for e in _events(tmp_path / "F") if e["kind"] == "quota"]
    assert changes == ["LOW", "THIN", "CRITICAL", "FLOOR", "OK"]


def test_queue_overflow_with_stalled_writer_evicts_low_value(tmp_path: Path) -> None:
    entered, release = threading.Event(), threading.Event()
    real = os.fsync

    def slow_fsync(fd: int) -> None:
        entered.set()
        assert release.wait(60)
        real(fd)

    cfg = StoreConfig(reserve_mb=0, commit_interval_ms=60_000, queue_frames=8)
    st = FlightStore(tmp_path, "b", "F", cfg, cameras=["c"], fsync=slow_fsync)
    st.put(frame("c", 0))
    st.commit()
    assert entered.wait(30)  # the writer is stuck in fsync
    results = [st.put(frame("c", i, value=FrameValue.IDLE)) for i in range(1, 9)]
    assert all(results) and st.stats()["c"]["queued"] == 8
    assert st.put(frame("c", 9, value=FrameValue.DESCENT))  # evicts the oldest IDLE frame
    assert st.put(frame("c", 10, value=FrameValue.TOUCHDOWN))
    assert not st.put(frame("c", 11, value=FrameValue.IDLE))  # nothing less valuable to evict
    n = sum(st.put(frame("c", 1000 + i, value=FrameValue.PRETRIGGER)) for i in range(100))
    assert n == 6  # replaces the six remaining IDLE frames, then drops
    assert st.stats()["c"]["queued"] == 8
    release.set()
    st.close()
    s = st.stats()["c"]
    assert s["dropped"]["queue_full"] == 2 + 1 + 94 + 6
    seqs = _frames_on_disk(tmp_path / "F", "c")
    assert seqs == [0, 9, 10, *range(1000, 1006)]
    assert any(e["name"] == "queue_full" for e in _events(tmp_path / "F"))
