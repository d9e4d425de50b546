"""The real camera stack on a machine without a camera: picamera2 on libcamera's virtual camera.

Owns where the real-stack tier's pieces live (a cache outside the checkout), how they are made
(``tools/realstack/libcamera.sh`` builds libcamera; picamera2 and what it imports are installed with
pip into the cache, never into the environment) and how real picamera2 is then imported in this
process: :func:`load_picamera2`. The stand-ins it needs, and only those (facts found by trying,
../shared/REALSTACK.md):

- ``pykms``: picamera2's DRM preview imports it unguarded (previews only, never used here). A
  module with nothing in it but ``PixelFormat`` is enough. PyPI's ``kms`` is another project.
- ``/dev/dma_heap``: absent here, and ``Picamera2()`` always makes a ``DmaAllocator``.
  :class:`MemfdAllocator` is picamera2's own allocator with its buffers from ``memfd_create``
  instead of a DMA heap (one fd and one plane per buffer, as DmaAllocator gives), and its sync
  without the DMA_BUF_IOCTL_SYNC ioctl a memfd does not have.

Also used for the pin tests: :func:`picamera2_source` is picamera2's source directory (cached), so
those tests read the pinned release whatever is installed.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
import sys
import types
from pathlib import Path

from camctl.exc import StackUnavailable
from camctl.testing.tiers import REPO, cache_dir, debian_root_problem, recipe, run_setup

__all__ = ["PICAMERA2_VERSION", "can_build", "libcamera_prefix", "load_picamera2",
           "picamera2_site", "picamera2_source", "setup_hint"]

PICAMERA2_VERSION = "0.3.38"
# What `import picamera2` needs beyond the project's own dependencies (numpy, Pillow, simplejpeg,
# PyAV): picamera2 0.3.38's install_requires less those, and less jsonschema/OpenEXR/tqdm users that
# are imported lazily. python-prctl compiles (gcc, libcap-dev).
_PICAMERA2_EXTRAS = ["PiDNG==4.0.9", "piexif==1.1.3", "videodev2==0.0.4", "python-prctl==1.8.1",
                     "libarchive-c==5.3", "tqdm"]

_SCRIPT = REPO / "tools" / "realstack" / "libcamera.sh"


def setup_hint() -> str:
    return f"build it once with `bash {_SCRIPT.relative_to(REPO)}` (root, Debian 12, ~7 min)"


def _pip_target(target: Path, packages: list[str]) -> None:
    tmp = target.with_name(target.name + f".tmp{os.getpid()}")
    cmd = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
           "--no-deps", "--target", str(tmp), *packages]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode:
        raise StackUnavailable(f"pip could not install {' '.join(packages)} into {tmp}: "
                          f"{done.stderr.strip().splitlines()[-1:]}")
    (tmp / ".complete").touch()
    try:
        tmp.rename(target)
    except OSError:  # another process finished first
        shutil.rmtree(tmp, ignore_errors=True)


def can_build() -> str | None:
    """None when this machine can build the tier itself (``libcamera.sh``), else why not."""
    return debian_root_problem(
        platform="libcamera.sh builds Debian's libcamera on Linux x86-64 only",
        debian="libcamera.sh fetches Debian's libcamera source with apt-get: not a Debian machine",
        root="libcamera.sh installs its build dependencies with apt-get: needs root")


def picamera2_source() -> Path:
    """picamera2's package directory, release :data:`PICAMERA2_VERSION`, downloaded once (pure
    Python: read by the pin tests, never imported from here without :func:`load_picamera2`)."""
    target = cache_dir() / "picamera2" / PICAMERA2_VERSION / "source"
    if not (target / ".complete").exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        _pip_target(target, [f"picamera2=={PICAMERA2_VERSION}"])
    return target / "picamera2"


def picamera2_site() -> Path:
    """A directory with picamera2 and what it imports, installed once (``_PICAMERA2_EXTRAS``)."""
    target = cache_dir() / "picamera2" / PICAMERA2_VERSION / "site"
    if not (target / ".complete").exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        _pip_target(target, [f"picamera2=={PICAMERA2_VERSION}", *_PICAMERA2_EXTRAS])
    return target


def libcamera_prefix(*, build: bool = False) -> Path:
    """The patched libcamera's install prefix; built first when ``build`` (else StackUnavailable).

    ``$CAMCTL_LIBCAMERA_PREFIX`` names another build of the same patch (e.g. an incremental one
    while working on the patch) and is used as it is."""
    override = os.environ.get("CAMCTL_LIBCAMERA_PREFIX")
    if override:
        return Path(override)
    if not _SCRIPT.exists():
        raise StackUnavailable(f"{_SCRIPT} is missing (camctl is not run from its checkout)")
    if not build:
        stamps = sorted((cache_dir() / "libcamera").glob("*/.complete"))
        current = _current_prefix()
        if current is None or not (current / ".complete").exists():
            older = " (an older build exists)" if stamps else ""
            raise StackUnavailable(
                f"libcamera's virtual camera is not built{older}: {setup_hint()}")
        return current
    return run_setup(_SCRIPT, tail=400)


def _current_prefix() -> Path | None:
    """The prefix the script would build now (named by a hash of the patch and its RECIPE)."""
    import hashlib

    found = recipe(_SCRIPT)
    if found is None:
        return None
    patch = _SCRIPT.with_name("libcamera-virtual.patch").read_bytes()
    key = hashlib.sha256(patch + f"recipe={found}\n".encode()).hexdigest()[:12]
    version = os.environ.get("LIBCAMERA_VERSION", "0.7.2")
    return cache_dir() / "libcamera" / f"{version}-{key}"


_loaded: types.ModuleType | None = None


def load_picamera2(*, build: bool = False) -> types.ModuleType:
    """Real picamera2 on the patched libcamera, importable in this process (once per process).

    ``build`` builds what is missing first (minutes); otherwise a missing piece raises
    :class:`~camctl.exc.StackUnavailable` naming the setup command."""
    global _loaded
    if _loaded is not None:
        return _loaded
    if sys.platform != "linux":
        raise StackUnavailable("libcamera's virtual camera runs on Linux only")
    prefix = libcamera_prefix(build=build)
    site = picamera2_site()
    # libcamera's own allocator finds no dma-buf heap here and says so at every manager start;
    # picamera2 never uses it (it allocates its own buffers)
    os.environ.setdefault("LIBCAMERA_LOG_LEVELS", "DmaBufAllocator:FATAL,*:ERROR")
    libdir = prefix / "lib" / "x86_64-linux-gnu"
    for name in ("libcamera-base.so", "libcamera.so"):
        # loaded by path first, so the bindings' DT_NEEDED sonames resolve to them (no
        # LD_LIBRARY_PATH, which the dynamic linker reads only at process start)
        ctypes.CDLL(str(libdir / name), mode=ctypes.RTLD_GLOBAL)
    for path in (str(site), str(prefix / "lib" / "python3" / "dist-packages")):
        if path not in sys.path:
            sys.path.insert(0, path)
    sys.modules.setdefault("pykms", _pykms_stand_in())
    for name in [m for m in sys.modules if m == "picamera2" or m.startswith("picamera2.")]:
        del sys.modules[name]  # a copy imported from elsewhere (e.g. the source for pins)
    import libcamera  # noqa: F401  (fails here if the bindings do not load)
    import picamera2
    import picamera2.picamera2 as core

    if not str(Path(picamera2.__file__)).startswith(str(site)):
        raise StackUnavailable(f"picamera2 was imported from {picamera2.__file__}, not {site}")
    core.DmaAllocator = _memfd_allocator(core.DmaAllocator)  # type: ignore[attr-defined]
    _loaded = picamera2
    return picamera2


def _pykms_stand_in() -> types.ModuleType:
    class PixelFormat:  # the DRM preview's class body reads its formats as attributes
        def __class_getitem__(cls, name: str) -> str:
            return name

    class _Formats(type):
        def __getattr__(cls, name: str) -> str:
            return name

    mod = types.ModuleType("pykms", "stand-in for picamera2's DRM preview import (never used)")
    mod.PixelFormat = _Formats("PixelFormat", (PixelFormat,), {})  # type: ignore[attr-defined]
    return mod


class _MemfdHeap:
    """DmaHeap's ``alloc``/``close`` with anonymous memory files (``memfd_create``)."""

    def alloc(self, name: str, size: int):
        from picamera2.dma_heap import UniqueFD

        fd = os.memfd_create(name, os.MFD_CLOEXEC)
        os.ftruncate(fd, size)
        return UniqueFD(fd)

    def close(self) -> None:
        pass


def _memfd_allocator(dma_allocator: type) -> type:
    """picamera2's DmaAllocator (``picamera2/allocators/dmaallocator.py``, 0.3.38) with memfd
    buffers: only ``__init__`` (no /dev/dma_heap) and the sync (no dma-buf ioctl) differ."""
    from picamera2.allocators.allocator import Allocator, Sync

    class MemfdSync(Sync):
        def __init__(self, allocator, fb, write) -> None:
            self.allocator, self._fb = allocator, fb

        def __enter__(self):
            return self.get_buffer()

        def __exit__(self, *exc: object) -> None:
            pass

        def get_buffer(self):
            buf = self.allocator.mapped_buffers.get(self._fb)
            if buf is None:
                raise RuntimeError("failed to find buffer in MemfdSync")
            return buf

    class MemfdAllocator(dma_allocator):  # type: ignore[misc, valid-type]
        def __init__(self) -> None:
            Allocator.__init__(self)
            self.dmaHeap = _MemfdHeap()
            self.mapped_buffers = {}
            self.mapped_buffers_used = {}
            self.frame_buffers = {}
            self.open_fds = []
            self.libcamera_fds = []
            self.sync = MemfdSync

    return MemfdAllocator
