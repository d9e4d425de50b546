"""Durable-file helpers shared by the board's store and the ground's fetch: directory fsync, early
writeback, file checksums. One place, so both sides make the same durability promises the same
way."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path

__all__ = ["fsync_dir", "sha256_file", "start_writeback"]


def fsync_dir(path: Path) -> None:
    """fsync a directory so a new or renamed entry in it survives a power cut."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def sha256_file(path: Path) -> str:
    """The hex sha256 of a file, read in 1 MiB blocks (what the index records and fetch checks)."""
    h = hashlib.sha256()
    with Path(path).open("rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def _find_sync_file_range() -> Callable[[int, int, int], None] | None:
    """libc's ``sync_file_range(fd, offset, n, SYNC_FILE_RANGE_WRITE)`` (Linux), or None.

    It starts writeback of a byte range without waiting for it, so the disk works while the writer
    goes on and the fsync that follows has little left to do. Python's ``os`` module does not wrap
    it.
    """
    try:
        import ctypes

        fn = ctypes.CDLL(None, use_errno=True).sync_file_range
    except (OSError, AttributeError, ImportError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    fn.restype = ctypes.c_int

    def kick(fd: int, offset: int, n: int) -> None:
        fn(fd, offset, n, 2)  # SYNC_FILE_RANGE_WRITE; advisory: errors show up at the fsync
    return kick


# start_writeback(fd, offset, n), or None on systems without sync_file_range (then only fsync writes
# back)
start_writeback = _find_sync_file_range()
