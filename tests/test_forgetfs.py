"""The forgetting filesystem itself: what it keeps at a power cut is exactly what was fsync'd,
through real syscalls over FUSE; its torn-writeback modes only ever add bytes that were really
written."""

from __future__ import annotations

import errno
import os
import random
import threading
from pathlib import Path

import pytest
from forgetfs import ForgetState, Trap, cut_dir, fuse_unavailable, mounted, release, trapped
from waiting import wait_for

from camctl.common.fsutil import fsync_dir

pytestmark = pytest.mark.skipif(bool(fuse_unavailable()),
                                reason=fuse_unavailable() or "fuse available")


def _write(path: Path, data: bytes, *, sync: str = "") -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        os.write(fd, data)
        if sync == "fsync":
            os.fsync(fd)
        elif sync == "fdatasync":
            os.fdatasync(fd)
    finally:
        os.close(fd)


def test_only_fsynced_data_and_entries_survive_a_cut(tmp_path: Path) -> None:
    with mounted(tmp_path / "mnt") as fs:
        m = fs.mnt
        _write(m / "synced", b"kept", sync="fsync")
        _write(m / "datasynced", b"kept too", sync="fdatasync")
        _write(m / "unsynced", b"lost")
        os.mkdir(m / "sub")
        fsync_dir(m)  # the three names and sub/ are now durable entries
        _write(m / "synced", b"KEPT-and-more")  # overwritten after its fsync: the cut keeps "kept"
        _write(m / "sub" / "orphan", b"data", sync="fsync")  # sub/ itself never fsync'd: entry lost
        _write(m / "late", b"x", sync="fsync")  # its dir is not fsync'd again: entry lost
        assert sorted(os.listdir(m)) == ["datasynced", "late", "sub", "synced", "unsynced"]
        assert (m / "synced").read_bytes() == b"KEPT-and-more"  # reads see the volatile content
        out = fs.cut(tmp_path / "cut")
    assert sorted(p.name for p in out.iterdir()) == ["datasynced", "sub", "synced", "unsynced"]
    assert (out / "synced").read_bytes() == b"kept"
    assert (out / "datasynced").read_bytes() == b"kept too"
    assert (out / "unsynced").read_bytes() == b""  # the entry survived, its data did not
    assert list((out / "sub").iterdir()) == []


def test_rename_and_unlink_are_durable_only_after_the_dir_fsync(tmp_path: Path) -> None:
    with mounted(tmp_path / "mnt") as fs:
        m = fs.mnt
        _write(m / "old", b"old", sync="fsync")
        _write(m / "gone", b"gone", sync="fsync")
        _write(m / "tmp", b"new", sync="fsync")
        fsync_dir(m)
        os.replace(m / "tmp", m / "old")
        os.unlink(m / "gone")
        before = fs.cut(tmp_path / "before")
        fsync_dir(m)
        after = fs.cut(tmp_path / "after")
    assert {p.name: p.read_bytes() for p in before.iterdir()} == {"old": b"old", "gone": b"gone",
                                                                  "tmp": b"new"}
    assert {p.name: p.read_bytes() for p in after.iterdir()} == {"old": b"new"}


def test_truncate_and_pwrite_are_forgotten_until_fsync(tmp_path: Path) -> None:
    with mounted(tmp_path / "mnt") as fs:
        m = fs.mnt
        _write(m / "f", b"0123456789", sync="fsync")
        fsync_dir(m)
        fd = os.open(m / "f", os.O_RDWR)
        os.ftruncate(fd, 4)
        os.pwrite(fd, b"AB", 0)
        first = fs.cut(tmp_path / "c1")
        os.fsync(fd)
        os.close(fd)
        second = fs.cut(tmp_path / "c2")
    assert (first / "f").read_bytes() == b"0123456789"
    assert (second / "f").read_bytes() == b"AB23"


def test_full_filesystem_says_enospc_and_statvfs_agrees(tmp_path: Path) -> None:
    with mounted(tmp_path / "mnt", capacity=64 << 10) as fs:
        st = os.statvfs(fs.mnt)
        assert st.f_bavail * st.f_frsize == 64 << 10
        with pytest.raises(OSError) as exc:
            _write(fs.mnt / "big", b"x" * (65 << 10))
        assert exc.value.errno == errno.ENOSPC


WRITES = ((5000, b"b" * 3000), (100, b"c" * 50), (8000, b"d" * 9000))


def _state_with_history() -> tuple[ForgetState, list[bytes]]:
    """A file synced as ``durable``, then written at several offsets; returns each step's bytes."""
    s = ForgetState()
    node = s.create("/f", 0o644)
    s.write(node, 0, b"a" * 5000)
    s.fsync(node)
    s.fsync(s.root)
    states = [bytes(node.data)]
    for off, data in WRITES:
        s.write(node, off, data)
        states.append(bytes(node.data))
    return s, states


def _apply(content: bytes, off: int, data: bytes) -> bytes:
    buf = bytearray(content.ljust(off, b"\0"))
    buf[off:off + len(data)] = data
    return bytes(buf)


def test_prefix_mode_yields_an_in_order_prefix_of_the_writes(tmp_path: Path) -> None:
    s, states = _state_with_history()
    seen = set()
    for seed in range(60):
        s.cut(tmp_path / f"p{seed}", seed=seed, mode="prefix")
        got = (tmp_path / f"p{seed}" / "f").read_bytes()
        # writes 1..k applied whole, then a byte prefix of write k+1 (in the order they were made)
        ok = got in states
        for k, (off, data) in enumerate(WRITES):
            p = 0
            while p < len(data) and off + p < len(got) and got[off + p] == data[p]:
                p += 1
            ok |= got == _apply(states[k], off, data[:p])
        assert ok, f"seed {seed}: not a prefix of the write log"
        seen.add(got)
    assert states[-1] in seen and len(seen) > 4  # it does tear, and in many ways


def test_pages_mode_takes_each_page_from_old_or_new(tmp_path: Path) -> None:
    s, states = _state_with_history()
    old, new = states[0], states[-1]
    torn = 0
    for seed in range(30):
        s.cut(tmp_path / f"g{seed}", seed=seed, mode="pages")
        got = (tmp_path / f"g{seed}" / "f").read_bytes()
        assert len(got) in (len(old), len(new))
        o, n = old.ljust(len(got), b"\0")[:len(got)], new.ljust(len(got), b"\0")[:len(got)]
        for i in range(0, len(got), 4096):
            assert got[i:i + 4096] in (o[i:i + 4096], n[i:i + 4096])
        torn += got not in (old, new)
    assert torn > 0


def test_none_mode_is_exactly_the_durable_tree(tmp_path: Path) -> None:
    s, states = _state_with_history()
    rng = random.Random(1)
    out = s.cut(tmp_path / "n", seed=rng.randint(0, 99), mode="none")
    assert out["torn"] == 0 and (tmp_path / "n" / "f").read_bytes() == states[0]


# --- cuts inside a sync call, before it applies ---------------------------------------------------
def _tree(d: Path) -> dict[str, bytes | dict]:
    return {p.name: _tree(p) if p.is_dir() else p.read_bytes() for p in sorted(d.iterdir())}


def test_a_cut_before_an_fsync_loses_exactly_that_files_unsynced_writes(tmp_path: Path) -> None:
    with mounted(tmp_path / "mnt") as fs:
        m = fs.mnt
        _write(m / "a", b"a1", sync="fsync")
        _write(m / "b", b"b1", sync="fsync")
        fsync_dir(m)
        before = fs.status()
        out = fs.arm(tmp_path / "trap", at="fsync", nth=2, then="eio")
        fa, fb = os.open(m / "a", os.O_WRONLY), os.open(m / "b", os.O_WRONLY)
        try:
            os.pwrite(fa, b"+a2", 2)
            os.pwrite(fb, b"+b2", 2)
            fsync_dir(m)  # an fsyncdir: not counted by a trap at "fsync"
            os.fsync(fb)  # the 1st fsync: applies
            with pytest.raises(OSError) as exc:
                os.fsync(fa)  # the 2nd: the cut, then EIO (the writer never hears it succeed)
            assert exc.value.errno == errno.EIO
            failed = fs.cut(tmp_path / "failed")
            os.fsync(fa)  # the trap fired once (no "every"): this one applies
            final = fs.cut(tmp_path / "final")
        finally:
            os.close(fa)
            os.close(fb)
        after = fs.status()
    assert trapped(out, 2) is not None and trapped(out, 2)["call"] == "fsync"
    assert trapped(out, 2)["path"] == "/a"
    assert not cut_dir(out, 1).exists()  # the 1st fsync was counted, not cut
    assert _tree(cut_dir(out, 2)) == {"a": b"a1", "b": b"b1+b2"}  # a's unsynced write, only it
    assert _tree(failed) == {"a": b"a1", "b": b"b1+b2"}  # the failed call did not apply either
    assert _tree(final) == {"a": b"a1+a2", "b": b"b1+b2"}
    assert (after["fsync"] - before["fsync"], after["fsyncdir"] - before["fsyncdir"]) == (3, 1)
    assert [k for k, _ in after["log"][-4:]] == ["fsyncdir", "fsync", "fsync", "fsync"]
    assert not after["armed"]


def test_a_cut_before_an_fsyncdir_loses_exactly_that_dirs_new_entries(tmp_path: Path) -> None:
    with mounted(tmp_path / "mnt") as fs:
        m = fs.mnt
        for d in ("d1", "d2"):
            os.mkdir(m / d)
        fsync_dir(m)
        _write(m / "d1" / "x", b"x", sync="fsync")  # the data is durable, the entries are not
        _write(m / "d2" / "y", b"y", sync="fsync")
        before = fs.status()
        out = fs.arm(tmp_path / "trap", at="fsyncdir", every=True)  # then="hold"
        failed: list[BaseException] = []

        def sync_dirs() -> None:
            fsync_dir(m / "d2")
            try:
                fsync_dir(m / "d1")
            except OSError as exc:
                failed.append(exc)

        t = threading.Thread(target=sync_dirs)
        t.start()
        try:
            first = wait_for(lambda: trapped(out, 1), "the cut before the 1st fsyncdir")
            assert t.is_alive()  # held: the caller has not heard back
            cut1 = _tree(cut_dir(out, 1))
            release(out, 1, "apply")
            second = wait_for(lambda: trapped(out, 2), "the cut before the 2nd fsyncdir")
            cut2 = _tree(cut_dir(out, 2))
        finally:
            release(out, 2, "eio")
            t.join()
        fs.disarm()
        final = _tree(fs.cut(tmp_path / "final"))
        after = fs.status()
    assert (first["call"], first["path"], second["call"], second["path"]) == \
        ("fsyncdir", "/d2", "fsyncdir", "/d1")
    assert cut1 == {"d1": {}, "d2": {}}  # before d2's fsyncdir: its new entry is not there yet
    assert cut2 == {"d1": {}, "d2": {"y": b"y"}}  # d2's applied; d1's entry waits on its own
    assert [e.errno for e in failed] == [errno.EIO]  # released with "eio": the call failed ...
    assert final == {"d1": {}, "d2": {"y": b"y"}}  # ... and did not apply
    assert (after["fsync"] - before["fsync"], after["fsyncdir"] - before["fsyncdir"]) == (0, 2)


def _workload(d: Path) -> None:
    """A small writer: two files (one rewritten atomically), a subdir, each synced in its order."""
    os.mkdir(d / "sub")
    fsync_dir(d)
    _write(d / "sub" / "seg", b"chunk1", sync="fsync")
    fsync_dir(d / "sub")
    fd = os.open(d / "sub" / "seg", os.O_WRONLY)
    try:
        os.pwrite(fd, b"chunk2", 6)
        os.fdatasync(fd)
    finally:
        os.close(fd)
    _write(d / "index.tmp", b"{}", sync="fsync")
    os.replace(d / "index.tmp", d / "index")
    fsync_dir(d)


def test_a_counted_workload_is_cut_before_each_of_its_sync_calls_in_turn(tmp_path: Path) -> None:
    """Run once to count the sync calls, then once per call with the cut before it: every call is
    cut, each the one the count saw there, and each cut keeps only what the calls before it made
    durable (the workload stops at the failed call, as a writer that hears EIO)."""
    with mounted(tmp_path / "mnt") as fs:
        (fs.mnt / "count").mkdir()
        fsync_dir(fs.mnt)
        before = fs.status()
        _workload(fs.mnt / "count")
        log = [(k, p.removeprefix("/count")) for k, p in fs.status()["log"][len(before["log"]):]]
        cuts = []
        for n in range(1, len(log) + 1):
            d = fs.mnt / f"run{n}"
            d.mkdir()
            fsync_dir(fs.mnt)
            out = fs.arm(tmp_path / f"trap{n}", nth=n, then="eio")
            with pytest.raises(OSError) as exc:
                _workload(d)
            assert exc.value.errno == errno.EIO
            info = trapped(out, n)
            assert info is not None, f"call {n} was not cut"
            assert (info["call"], info["path"].removeprefix(f"/run{n}")) == log[n - 1]
            cuts.append(_tree(cut_dir(out, n))[f"run{n}"])
    assert [k for k, _ in log] == ["fsyncdir", "fsync", "fsyncdir", "fsync", "fsync", "fsyncdir"]
    assert cuts == [
        {},  # before d's fsyncdir: sub/ is not there
        {"sub": {}},  # before seg's fsync
        {"sub": {}},  # before sub's fsyncdir: seg's data is durable, its entry is not
        {"sub": {"seg": b"chunk1"}},  # before the fdatasync: chunk2 is not durable
        {"sub": {"seg": b"chunk1chunk2"}},  # before index.tmp's fsync: not even its entry
        {"sub": {"seg": b"chunk1chunk2"}},  # before d's fsyncdir: neither the tmp nor the rename
    ]


def test_a_bad_trap_request_is_refused_with_einval(tmp_path: Path) -> None:
    with pytest.raises(OSError, match="at must be one of"):
        Trap.from_request({"out": "x", "at": "close"})
    with mounted(tmp_path / "mnt") as fs:
        for req in ({"out": str(tmp_path), "then": "later"}, {"at": "fsync"}, {"nth": 0,
                                                                               "out": "x"}):
            with pytest.raises(OSError) as exc:
                fs._request(req)
            assert exc.value.errno == errno.EINVAL, req
        assert not fs.status()["armed"]
