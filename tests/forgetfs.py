"""A FUSE filesystem that forgets what was not fsync'd: the power cut that kill -9 cannot give.

Every file keeps two contents: the *volatile* one that reads and writes see, and the *durable* one.
A write or truncate changes only the volatile content (and is logged); ``fsync``/``fdatasync`` of
the file makes its volatile content durable. Every directory keeps a volatile and a durable entry
table: a created, renamed or unlinked entry changes the volatile table, and ``fsync`` of the
directory makes it durable. This is the POSIX worst case (ext4 usually persists more, never less).

A **power cut** writes the durable tree out to a plain directory. With ``mode="prefix"`` every file
also gets a random prefix of its unsynced writes (the last one cut at a random byte: torn writeback
in order), with ``mode="pages"`` a random subset of its dirty 4 KiB pages and a random one of its
two sizes (writeback in any order), and every directory keeps its durable or its volatile table (a
coin flip each).

The filesystem runs in its own process (``python tests/forgetfs.py MOUNT``, mfusepy over libfuse3),
so a process writing through it can be killed -9 and its durable state still cut out afterwards. It
is controlled through a file that does not exist in the tree: writing ``{"out": DIR, "seed": N,
"mode": M}`` to ``MOUNT/.forgetfs-cut`` writes the cut to ``DIR`` before the write returns.

**A cut inside a sync call** (:meth:`Mounted.arm`): writing ``{"out": DIR, "at": "fsync" |
"fsyncdir" | "any", "nth": N, "every": false, "then": "hold" | "eio", "mode": M}`` arms a trap.
Counting the matching calls from then on, the N-th (with ``every``, the N-th and each one after it)
is stopped before it applies: the cut -- the durable tree as it is before that call -- is written to
``DIR/NNNN`` (NNNN the call's number since arming), then ``DIR/NNNN.json`` names the call
(``call``, ``path``, ``n``, the totals so far and ``t``, ``time.monotonic()`` once the cut is out).
``then="eio"`` fails the call with EIO; ``then="hold"`` holds it until ``DIR/NNNN.go`` exists
(outside the mount), whose text says how it ends: ``apply`` (it applies and returns 0) or ``eio``.
Either way the caller cannot have learned that the call succeeded when the cut was taken, so every
claim it made until then must hold in the cut. ``{"status": PATH}`` writes the counts of fsync and
fsyncdir calls seen and their log (kind, path) to ``PATH``; ``{"disarm": true}`` disarms.

Uses mfusepy's high-level ``Operations`` API (``mfusepy.py`` 3.1.1: ``fsync(path, datasync, fh)``,
``fsyncdir(path, datasync, fh)``, ``create(path, mode, fi)``, ``FuseOSError``; ``hard_remove`` so an
unlinked open file keeps its handle instead of a ``.fuse_hidden`` rename).

Example (tests use :func:`mounted`)::

    with mounted(tmp_path / "mnt") as fs:
        (fs.mnt / "a").write_bytes(b"x")  # never fsync'd
        fs.cut(tmp_path / "after")  # "after" is empty: the entry and its data are forgotten
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import random
import shutil
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from waiting import wait_for

CONTROL = ".forgetfs-cut"
PAGE = 4096
MODES = ("none", "prefix", "pages")
SYNCS = ("fsync", "fsyncdir")
AT = (*SYNCS, "any")
THEN = ("hold", "eio")
# a held call that nobody releases fails with EIO after this long (a test that died mid-walk must
# not leave the mount hung: umount waits for the held call)
HOLD_MAX_S = 600.0
# where forgetfs looks for the FUSE device; tests point it elsewhere to prove a missing FUSE fails
# under CI (``FORGETFS_FUSE_DEVICE=/nonexistent``)
FUSE_DEVICE_ENV = "FORGETFS_FUSE_DEVICE"


@dataclass
class Trap:
    """An armed cut inside a sync call: see the module doc."""

    out: Path
    at: str = "any"
    nth: int = 1
    every: bool = False
    then: str = "hold"
    mode: str = "none"
    seed: int = 0
    seen: int = 0  # matching calls since arming

    @classmethod
    def from_request(cls, req: dict) -> Trap:
        """The trap a control request asks for; OSError(EINVAL) naming the bad field."""
        try:
            trap = cls(out=Path(req["out"]), at=str(req.get("at", "any")),
                       nth=int(req.get("nth", 1)), every=bool(req.get("every", False)),
                       then=str(req.get("then", "hold")), mode=str(req.get("mode", "none")),
                       seed=int(req.get("seed", 0)))
        except (KeyError, TypeError, ValueError) as exc:
            raise OSError(errno.EINVAL, f"bad forgetfs trap request {req!r}: {exc!r}") from None
        for name, value, allowed in (("at", trap.at, AT), ("then", trap.then, THEN),
                                     ("mode", trap.mode, MODES)):
            if value not in allowed:
                raise OSError(errno.EINVAL, f"forgetfs trap: {name} must be one of {allowed}, "
                                            f"not {value!r}")
        if trap.nth < 1:
            raise OSError(errno.EINVAL, f"forgetfs trap: nth must be 1 or more, not {trap.nth}")
        return trap


def cut_dir(out: Path, n: int) -> Path:
    """Where an armed trap writes the cut of the ``n``-th matching call (``.json``: which call)."""
    return Path(out) / f"{n:04d}"


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


@dataclass
class Node:
    """A file or a directory; ``data``/``entries`` are volatile, ``durable*`` survives a cut."""

    ino: int
    is_dir: bool
    mode: int
    data: bytearray = field(default_factory=bytearray)
    durable: bytes = b""
    # (offset, bytes) write or (-1, n) trunc
    log: list[tuple[int, bytes | int]] = field(default_factory=list)
    entries: dict[str, Node] = field(default_factory=dict)
    durable_entries: dict[str, Node] = field(default_factory=dict)
    mtime_ns: int = field(default_factory=time.time_ns)


class ForgetState:
    """The two-content tree, independent of FUSE (unit-testable; the FUSE operations drive it)."""

    def __init__(self, capacity: int = 1 << 30) -> None:
        self.capacity = capacity
        self._next = 1
        self.root = self._new(True, 0o755)
        self.used = 0
        self.syncs = dict.fromkeys(SYNCS, 0)  # fsync / fsyncdir calls seen
        self.sync_log: list[tuple[str, str]] = []  # (kind, path) of each, in order
        self.trap: Trap | None = None

    def _new(self, is_dir: bool, mode: int) -> Node:
        node = Node(self._next, is_dir, mode)
        self._next += 1
        return node

    def lookup(self, path: str) -> Node:
        node = self.root
        for part in _parts(path):
            if not node.is_dir or part not in node.entries:
                raise OSError(errno.ENOENT, "no such entry", path)
            node = node.entries[part]
        return node

    def parent(self, path: str) -> tuple[Node, str]:
        parts = _parts(path)
        if not parts:
            raise OSError(errno.EINVAL, "the root has no parent", path)
        node = self.lookup("/".join(parts[:-1]))
        if not node.is_dir:
            raise OSError(errno.ENOTDIR, "not a directory", path)
        return node, parts[-1]

    def create(self, path: str, mode: int, *, is_dir: bool = False) -> Node:
        parent, name = self.parent(path)
        if name in parent.entries:
            raise OSError(errno.EEXIST, "entry exists", path)
        node = self._new(is_dir, mode)
        parent.entries[name] = node
        parent.mtime_ns = time.time_ns()
        return node

    def unlink(self, path: str, *, is_dir: bool = False) -> None:
        parent, name = self.parent(path)
        node = parent.entries.get(name)
        if node is None:
            raise OSError(errno.ENOENT, "no such entry", path)
        if is_dir and node.entries:
            raise OSError(errno.ENOTEMPTY, "directory not empty", path)
        del parent.entries[name]
        if not node.is_dir:
            self.used -= len(node.data)

    def rename(self, old: str, new: str) -> None:
        op, oname = self.parent(old)
        np, nname = self.parent(new)
        node = op.entries.get(oname)
        if node is None:
            raise OSError(errno.ENOENT, "no such entry", old)
        gone = np.entries.get(nname)
        if gone is not None and gone is not node and not gone.is_dir:
            self.used -= len(gone.data)
        del op.entries[oname]
        np.entries[nname] = node

    def write(self, node: Node, offset: int, data: bytes) -> int:
        grow = max(0, offset + len(data) - len(node.data))
        if grow and self.used + grow > self.capacity:
            raise OSError(errno.ENOSPC, "no space left on device")
        if offset > len(node.data):
            node.data.extend(bytes(offset - len(node.data)))
        node.data[offset:offset + len(data)] = data
        node.log.append((offset, bytes(data)))
        self.used += grow
        node.mtime_ns = time.time_ns()
        return len(data)

    def truncate(self, node: Node, length: int) -> None:
        if length > len(node.data) and self.used + length - len(node.data) > self.capacity:
            raise OSError(errno.ENOSPC, "no space left on device")
        self.used += length - len(node.data)
        if length < len(node.data):
            del node.data[length:]
        else:
            node.data.extend(bytes(length - len(node.data)))
        node.log.append((-1, length))
        node.mtime_ns = time.time_ns()

    def fsync(self, node: Node) -> None:
        if node.is_dir:
            node.durable_entries = dict(node.entries)
        else:
            node.durable = bytes(node.data)
            node.log = []

    # --- cuts inside sync calls ----------------------------------------------------------------
    def arm(self, trap: Trap | None) -> None:
        """Arm ``trap`` (None: disarm); its count starts now."""
        self.trap = trap

    def sync_call(self, kind: str, path: str) -> tuple[str, Path | None]:
        """Count a sync call about to apply; when the armed trap fires, write its cut first.

        Returns what to do with the call: ``("apply", None)``, or the trap's ``then`` and the cut's
        directory (``hold``: the caller waits for ``<cut>.go``)."""
        self.syncs[kind] += 1
        self.sync_log.append((kind, path))
        trap = self.trap
        if trap is None or trap.at not in (kind, "any"):
            return "apply", None
        trap.seen += 1
        if trap.seen < trap.nth:
            return "apply", None
        if not trap.every:
            self.trap = None
        out = cut_dir(trap.out, trap.seen)
        self.cut(out, seed=trap.seed + trap.seen, mode=trap.mode)
        _write_atomic(out.with_suffix(".json"), json.dumps({
            "call": kind, "path": path, "n": trap.seen, "syncs": dict(self.syncs),
            "t": time.monotonic()}))
        return trap.then, out

    def status(self) -> dict:
        """The counts of sync calls seen, their log, and whether a trap is armed."""
        return {**self.syncs, "log": self.sync_log, "armed": self.trap is not None}

    # --- the cut ----------------------------------------------------------------------------------
    def cut(self, out: Path, *, seed: int = 0, mode: str = "none") -> dict[str, int]:
        """Write what a power cut now would leave to ``out``; count files, dirs, torn files."""
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
        rng = random.Random(seed)
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        counts = {"files": 0, "dirs": 0, "torn": 0}
        self._cut_dir(self.root, out, rng, mode, counts)
        return counts

    def _cut_dir(self, node: Node, out: Path, rng: random.Random, mode: str,
                 counts: dict[str, int]) -> None:
        entries = node.durable_entries
        if mode != "none" and entries != node.entries and rng.random() < 0.5:
            entries = node.entries
        counts["dirs"] += 1
        for name, child in sorted(entries.items()):
            path = out / name
            if child.is_dir:
                path.mkdir()
                self._cut_dir(child, path, rng, mode, counts)
                continue
            content = _torn(child, rng, mode)
            counts["files"] += 1
            counts["torn"] += content != child.durable
            path.write_bytes(content)


def _torn(node: Node, rng: random.Random, mode: str) -> bytes:
    """The file's content after a cut: durable, plus (per mode) some of what was written after the
    last sync."""
    if mode == "none" or not node.log:
        return node.durable
    if mode == "prefix":
        data = bytearray(node.durable)
        k = rng.randint(0, len(node.log))
        for i, (off, what) in enumerate(node.log[:k + 1]):
            if off < 0:
                if i == k:
                    break
                del data[what:]
                data.extend(bytes(max(0, what - len(data))))
                continue
            piece = what if i < k else what[:rng.randint(0, len(what))]
            if off > len(data):
                data.extend(bytes(off - len(data)))
            data[off:off + len(piece)] = piece
        return bytes(data)
    size = rng.choice((len(node.durable), len(node.data)))
    old = node.durable.ljust(size, b"\0")[:size]
    new = bytes(node.data).ljust(size, b"\0")[:size]
    pages = [old[i:i + PAGE] if rng.random() < 0.5 else new[i:i + PAGE]
             for i in range(0, size, PAGE)]
    return b"".join(pages)


def _parts(path: str) -> list[str]:
    return [p for p in path.split("/") if p]


def held(cut: Path, *, max_s: float = HOLD_MAX_S) -> str:
    """Hold a trapped call until ``<cut>.go`` exists; how it ends: ``apply`` or ``eio``.

    The caller waits in the kernel all along, even when killed: once a request has been read by
    the daemon a fatal signal does not end the wait (linux fs/fuse/dev.c, request_wait_answer():
    "Either request is already in userspace, or it was forced. Wait it out."), so the writer can
    neither return from the call nor die until it is released."""
    go = cut.with_suffix(".go")
    deadline = time.monotonic() + max_s
    while time.monotonic() < deadline:
        try:
            how = go.read_text().strip()
        except FileNotFoundError:
            time.sleep(0.002)
            continue
        return how if how in ("apply", "eio") else "eio"
    print(f"forgetfs: nobody released {cut} in {max_s:g} s: failing the call", file=sys.stderr)
    return "eio"


def _operations(state: ForgetState) -> object:
    """The mfusepy Operations over ``state`` (imported here so the state above needs no libfuse)."""
    import mfusepy

    lock = threading.Lock()

    def guarded(fn):
        def call(*args):
            with lock:
                try:
                    return fn(*args)
                except OSError as exc:
                    if isinstance(exc, mfusepy.FuseOSError):
                        raise
                    raise mfusepy.FuseOSError(exc.errno or errno.EIO) from None
        return call

    class Ops(mfusepy.Operations):
        use_ns = True

        def __init__(self) -> None:
            self.handles: dict[int, Node] = {}
            self.next_fh = 1

        def _fh(self, node: Node) -> int:
            fh = self.next_fh
            self.next_fh += 1
            self.handles[fh] = node
            return fh

        def _node(self, path: str | None, fh: int | None) -> Node:
            if fh and fh in self.handles:
                return self.handles[fh]
            if path is None:
                raise OSError(errno.EBADF, "no handle")
            return state.lookup(path)

        @guarded
        def getattr(self, path, fh=None):
            if path == "/" + CONTROL:
                return {"st_mode": stat.S_IFREG | 0o600, "st_nlink": 1, "st_size": 0}
            node = self._node(path, fh)
            kind = stat.S_IFDIR if node.is_dir else stat.S_IFREG
            t = node.mtime_ns
            return {"st_mode": kind | node.mode, "st_nlink": 2 if node.is_dir else 1,
                    "st_ino": node.ino, "st_size": len(node.data),
                    "st_blocks": (len(node.data) + 511) // 512, "st_uid": os.getuid(),
                    "st_gid": os.getgid(), "st_atime": t, "st_mtime": t, "st_ctime": t}

        @guarded
        def readdir(self, path, fh):
            return [".", "..", *state.lookup(path).entries]

        @guarded
        def mkdir(self, path, mode):
            state.create(path, mode & 0o7777, is_dir=True)
            return 0

        @guarded
        def rmdir(self, path):
            state.unlink(path, is_dir=True)
            return 0

        @guarded
        def unlink(self, path):
            state.unlink(path)
            return 0

        @guarded
        def rename(self, old, new):
            state.rename(old, new)
            return 0

        @guarded
        def create(self, path, mode, fi=None):
            if path == "/" + CONTROL:
                return 0
            return self._fh(state.create(path, mode & 0o7777))

        @guarded
        def open(self, path, flags):
            if path == "/" + CONTROL:
                return 0
            node = state.lookup(path)
            if flags & os.O_TRUNC:
                state.truncate(node, 0)
            return self._fh(node)

        @guarded
        def opendir(self, path):
            return self._fh(state.lookup(path))

        @guarded
        def release(self, path, fh):
            self.handles.pop(fh, None)
            return 0

        @guarded
        def releasedir(self, path, fh):
            self.handles.pop(fh, None)
            return 0

        @guarded
        def read(self, path, size, offset, fh):
            return bytes(self._node(path, fh).data[offset:offset + size])

        @guarded
        def write(self, path, data, offset, fh):
            if path == "/" + CONTROL:
                _control(state, bytes(data))
                return len(data)
            return state.write(self._node(path, fh), offset, bytes(data))

        @guarded
        def truncate(self, path, length, fh=None):
            if path == "/" + CONTROL:
                return 0
            state.truncate(self._node(path, fh), length)
            return 0

        def _sync(self, kind: str, path: str | None, fh: int | None) -> int:
            node = self._node(path, fh)
            how, cut = state.sync_call(kind, path or "?")
            if how == "hold" and cut is not None:
                # single-threaded (nothreads): nothing else applies while the call is held
                how = held(cut)
            if how == "eio":
                raise OSError(errno.EIO, "forgetfs: the power was cut inside this sync call")
            state.fsync(node)
            return 0

        @guarded
        def fsync(self, path, datasync, fh):
            return self._sync("fsync", path, fh)

        @guarded
        def fsyncdir(self, path, datasync, fh):
            return self._sync("fsyncdir", path, fh)

        @guarded
        def flush(self, path, fh):
            return 0

        @guarded
        def statfs(self, path):
            blocks = state.capacity // PAGE
            free = max(0, state.capacity - state.used) // PAGE
            return {"f_bsize": PAGE, "f_frsize": PAGE, "f_blocks": blocks, "f_bfree": free,
                    "f_bavail": free, "f_files": 1 << 20, "f_ffree": 1 << 20, "f_favail": 1 << 20,
                    "f_namemax": 255}

        @guarded
        def chmod(self, path, mode):
            self._node(path, None).mode = mode & 0o7777
            return 0

        def chown(self, path, uid, gid):
            return 0

        def utimens(self, path, times=None):
            return 0

    return Ops()


def _control(state: ForgetState, data: bytes) -> None:
    """One request written to the control file (see the module doc)."""
    try:
        req = json.loads(data)
        if not isinstance(req, dict):
            raise ValueError("not a JSON object")
    except ValueError as exc:
        raise OSError(errno.EINVAL, f"forgetfs control: bad request {data[:200]!r}: {exc}") \
            from None
    if "status" in req:
        _write_atomic(Path(req["status"]), json.dumps(state.status()))
    elif req.get("disarm"):
        state.arm(None)
    elif {"at", "nth", "every", "then"} & req.keys():
        state.arm(Trap.from_request(req))
    else:
        state.cut(Path(req["out"]), seed=int(req.get("seed", 0)), mode=req.get("mode", "none"))


def serve(mountpoint: Path, capacity: int) -> None:
    """Mount the filesystem at ``mountpoint`` and serve it until unmounted (blocks)."""
    import mfusepy

    mfusepy.FUSE(_operations(ForgetState(capacity)), str(mountpoint), foreground=True,
                 nothreads=True, hard_remove=True, fsname="forgetfs")


@dataclass
class Mounted:
    """A running forgetfs: ``mnt`` is its mount point; :meth:`cut` writes a power cut out."""

    mnt: Path
    proc: subprocess.Popen

    def _request(self, req: dict) -> None:
        fd = os.open(self.mnt / CONTROL, os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            os.write(fd, json.dumps(req).encode())
        finally:
            os.close(fd)

    def cut(self, out: Path, *, seed: int = 0, mode: str = "none") -> Path:
        self._request({"out": str(out), "seed": seed, "mode": mode})
        return Path(out)

    def arm(self, out: Path, *, at: str = "any", nth: int = 1, every: bool = False,
            then: str = "hold", mode: str = "none", seed: int = 0) -> Path:
        """Arm a cut inside a sync call (see the module doc); returns ``out`` (created)."""
        Path(out).mkdir(parents=True, exist_ok=True)
        self._request({"out": str(out), "at": at, "nth": nth, "every": every, "then": then,
                       "mode": mode, "seed": seed})
        return Path(out)

    def disarm(self) -> None:
        """No more cuts in sync calls (a call held now must be released first: the filesystem
        answers nothing else while it holds one)."""
        self._request({"disarm": True})

    def status(self) -> dict:
        """``{"fsync": n, "fsyncdir": m, "log": [[kind, path], ...], "armed": bool}``."""
        path = self.mnt.with_name(self.mnt.name + ".status.json")
        self._request({"status": str(path)})
        return json.loads(path.read_text())


def trapped(out: Path, n: int) -> dict | None:
    """What the ``n``-th trapped call of a trap writing to ``out`` was, once its cut is out."""
    try:
        return json.loads(cut_dir(out, n).with_suffix(".json").read_text())
    except FileNotFoundError:
        return None


def release(out: Path, n: int, how: str = "apply") -> None:
    """End the held ``n``-th trapped call: ``apply`` it or fail it with ``eio``."""
    if how not in ("apply", "eio"):
        raise ValueError(f"how must be 'apply' or 'eio', not {how!r}")
    _write_atomic(cut_dir(out, n).with_suffix(".go"), how)


def fuse_unavailable() -> str:
    """Why forgetfs cannot mount here ("" when it can)."""
    device = os.environ.get(FUSE_DEVICE_ENV, "/dev/fuse")
    if not os.path.exists(device):
        return f"no {device}"
    try:
        import mfusepy  # noqa: F401
    except (ImportError, OSError) as exc:  # OSError: mfusepy found no libfuse
        return f"mfusepy/libfuse unavailable: {exc}"
    return ""


@contextlib.contextmanager
def mounted(mnt: Path, *, capacity: int = 1 << 30) -> Iterator[Mounted]:
    """Run forgetfs at ``mnt`` (created) in a child process; unmount and stop it on exit."""
    mnt = Path(mnt)
    mnt.mkdir(parents=True, exist_ok=True)
    log = mnt.with_name(mnt.name + ".log")
    with open(log, "wb") as err:
        proc = subprocess.Popen([sys.executable, __file__, str(mnt), str(capacity)], stderr=err,
                                stdout=subprocess.DEVNULL)
    try:
        wait_for(lambda: os.path.ismount(mnt) or proc.poll() is not None,
                 f"forgetfs to mount at {mnt} (its log: {log})", timeout_s=30, interval_s=0.02)
        if not os.path.ismount(mnt):
            raise RuntimeError(f"forgetfs did not mount at {mnt}: "
                               f"{log.read_text(errors='replace')[-2000:]}")
        yield Mounted(mnt, proc)
    finally:
        umount = shutil.which("fusermount3") or "umount"
        args = [umount, "-u", str(mnt)] if umount.endswith("fusermount3") else [umount, str(mnt)]
        if os.path.ismount(mnt):
            subprocess.run(args, capture_output=True, check=False)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
            subprocess.run(["umount", "-l", str(mnt)], capture_output=True, check=False)


if __name__ == "__main__":
    serve(Path(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else 1 << 30)
