"""The store's full-disk reserve: a preallocated file whose room finishing steps can take back.

``<store>/.camctl-reserve`` holds space, allocated in advance with ``posix_fallocate``, for the
steps that must finish even when the disk is full -- whoever filled it (the store, the OS on the
same card, a log): every open segment's summary and footer, the flight's closing records, its
``index.json``, ``daemon.json``, boot repair. :class:`FlightStore` grows it (in steps, on its
writer thread) as segments open and chunks accumulate; a finishing step that meets ``ENOSPC`` (or
finds less free space than it needs) releases just what it needs by truncating the file, then
tries again. ``statvfs`` counts the file as used, so the quota never sees its room as free space.

A store without a reserve (an old store, a laptop running ``verify``) works as before: every helper
here is a no-op when there is no file.

That the room is really allocated: posix_fallocate(3) -- "After a successful call to
posix_fallocate(), subsequent writes to bytes in the specified range are guaranteed not to fail
because of lack of disk space" (man-pages, http://man.he.net/man3/posix_fallocate); tmpfs
allocates the pages at once (``shmem_fallocate`` in the kernel's ``mm/shmem.c``) and ext4 allocates
(unwritten) extents (``ext4_fallocate`` in ``fs/ext4/extents.c``). Both checked here with statvfs:
a 1 MiB posix_fallocate lowers ``f_bavail`` by 1 MiB on tmpfs and on a loop-mounted ext4, and a
truncate gives it back (``tests/test_store_reserve.py`` checks it on a real tmpfs). A failed
posix_fallocate on ext4 keeps what it allocated and the larger size, so :meth:`Reserve.grow` cuts
the file back on failure. Freed ext4 blocks may wait for the journal commit, but an allocation that
meets ENOSPC forces that commit and retries (``ext4_should_retry_alloc`` in ``fs/ext4/balloc.c``).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from camctl.common.fsutil import fsync_dir

__all__ = ["RESERVE_NAME", "Reserve", "find_reserve", "free_bytes", "is_full", "with_reserve"]

log = logging.getLogger(__name__)

RESERVE_NAME = ".camctl-reserve"
STEP = 256 << 10  # the reserve grows in steps of this (never per frame)
# what a store's reserve holds beyond its open segments' finishing (_files.finish_need): the
# flight's closing records (phase, drop, quota, fault, books records held in RAM), daemon.json and
# a margin for boot repair's summaries and filesystem metadata
CLOSING_ROOM = 256 << 10
DAEMON_INFO_ROOM = 16 << 10
MARGIN = 128 << 10
BASE = CLOSING_ROOM + DAEMON_INFO_ROOM + MARGIN
_FULL = (errno.ENOSPC, errno.EDQUOT)
# one lock per reserve file in this process: the store's writer, repair and the daemon share it
_locks: dict[str, threading.Lock] = {}
_locks_lock = threading.Lock()

T = TypeVar("T")


def _lock_for(path: Path) -> threading.Lock:
    key = os.path.abspath(path)
    with _locks_lock:
        return _locks.setdefault(key, threading.Lock())


def free_bytes(path: Path) -> int:
    """Bytes a writer may still put on the filesystem of ``path`` (``statvfs``)."""
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def is_full(exc: BaseException) -> bool:
    """True for an ``ENOSPC`` or ``EDQUOT`` error."""
    return isinstance(exc, OSError) and exc.errno in _FULL


class Reserve:
    """The reserve file of the store at ``root`` (it may not exist yet). Thread-safe."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.path = self.root / RESERVE_NAME
        self._lock = _lock_for(self.path)
        self.released = 0  # bytes released by this object (what finishing took)

    def __repr__(self) -> str:
        return f"<Reserve {self.path} {self.size()} bytes>"

    def size(self) -> int:
        """Bytes held now (0: no reserve)."""
        try:
            return os.stat(self.path).st_size
        except OSError:
            return 0

    def grow(self, target: int) -> bool:
        """Hold at least ``target`` bytes (rounded up to a :data:`STEP`): allocate, fsync the file
        and, when created, its directory. False (the file as it was) when the disk has no room or
        cannot preallocate."""
        want = -(-max(0, target) // STEP) * STEP
        with self._lock:
            try:
                old = os.stat(self.path).st_size
            except FileNotFoundError:
                old = -1
            except OSError:
                return False
            if want <= max(old, 0):
                return True
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
            except OSError:
                return False
            try:
                try:
                    os.posix_fallocate(fd, 0, want)
                    os.fsync(fd)
                except OSError:
                    # ext4 keeps a partial allocation and the larger size: give it back
                    with contextlib.suppress(OSError):
                        os.ftruncate(fd, max(old, 0))
                    return False
            finally:
                os.close(fd)
            if old < 0:
                with contextlib.suppress(OSError):
                    fsync_dir(self.root)
            return True

    def release(self, nbytes: int) -> int:
        """Give back ``nbytes`` (or all the reserve holds, if less) by truncating the file; the
        bytes released. Never raises."""
        if nbytes <= 0:
            return 0
        with self._lock:
            try:
                old = os.stat(self.path).st_size
                new = max(0, old - nbytes)
                os.truncate(self.path, new)
            except OSError:
                return 0
            self.released += old - new
            if old > new:
                log.info("full-disk reserve %s: released %d bytes (%d left)", self.path,
                         old - new, new)
            return old - new

    def make_room(self, need: int, *, free: Callable[[], int] | None = None) -> int:
        """Release what is missing for ``need`` free bytes now (statvfs of the store, or
        ``free()``); the bytes released."""
        try:
            have = free() if free is not None else free_bytes(self.root)
        except OSError:
            have = 0
        return self.release(need - have) if have < need else 0


def find_reserve(path: Path, *, levels: int = 4) -> Reserve | None:
    """The reserve of the store holding ``path`` (a segment, a flight dir, the store itself, or a
    file not yet there): the nearest ``.camctl-reserve`` in ``path``'s directory or up to
    ``levels`` above, on the same filesystem; None when there is none."""
    path = Path(path)
    try:
        dev = os.stat(path).st_dev
    except FileNotFoundError:  # a file about to be written (index.json rebuilt): its directory's
        return find_reserve(path.parent, levels=levels) if path.parent != path else None
    except OSError:
        return None
    d = path if path.is_dir() else path.parent
    for _ in range(levels + 1):
        candidate = d / RESERVE_NAME
        try:
            st = os.stat(candidate)
        except OSError:
            st = None
        if st is not None and st.st_dev == dev:
            return Reserve(d)
        if d.parent == d:
            break
        d = d.parent
    return None


def with_reserve(reserve: Reserve | None, need: int, step: Callable[[], T]) -> T:
    """Run ``step`` (retryable: it must leave nothing half-done when it raises) with ``need`` bytes
    of room: released from ``reserve`` first when the disk has less free, and again, all of
    ``need``, when the step meets ENOSPC anyway; then it runs once more. Without a reserve it just
    runs."""
    if reserve is not None:
        reserve.make_room(need)
    try:
        return step()
    except OSError as exc:
        if reserve is None or not is_full(exc) or not reserve.release(need):
            raise
    return step()
