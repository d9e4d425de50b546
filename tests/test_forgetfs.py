"""The forgetting filesystem itself: what it keeps at a power cut is exactly what was fsync'd,
through real syscalls over FUSE; its torn-writeback modes only ever add bytes that were really
written."""

from __future__ import annotations

import errno
import os
import random
from pathlib import Path

import pytest
from forgetfs import ForgetState, fuse_unavailable, mounted

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
