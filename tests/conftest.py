"""Shared fixtures of the test suite; shared helpers live in modules beside it.

pytest puts this directory on ``sys.path`` (a rootdir conftest, no ``__init__.py``), so tests
import helpers by module name:
  waiting        the one ``wait_for``
  flights        a two-board download built without network (the ``built`` fixture)
  boards         configs for in-process boards (``Daemon``)
  scripted       a scripted camera backend and a frame sink (capture threads)
  store_helpers  frames, a real tmpfs, Foxglove's JS readers
  netfixtures    fake boards, stores on disk, a link that cuts
  forgetfs       the filesystem that forgets what was not fsync'd (power cuts)
  ci_skips       the hook that fails a skipped test under CI (imported here)

The picamera2 double comes from one fixture, ``picamera2_rig``, at the end.
"""
from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from ci_skips import (  # noqa: F401 (hooks: pytest finds them here)
    pytest_make_collect_report,
    pytest_runtest_makereport,
)
from flights import Built, build_download

from camctl.board.encode import EncoderPool
from camctl.testing import kernelvm

if TYPE_CHECKING:
    from camctl.testing.picamera2_double import FakeRig

JS = Path(__file__).resolve().parent / "js"

# tests/kernelvm/ runs inside the kernel tier's VM only (tests/test_kernel_gpio.py boots it once):
# a host run does not collect it, so it is neither run twice nor reported as skipped
collect_ignore = [] if kernelvm.in_vm() else ["kernelvm"]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    """A two-board download (fetch layout) built without network, one per test module: modules
    write into it (an export under ``built.root``), so they do not share it."""
    return build_download(tmp_path_factory.mktemp("dl"))


@pytest.fixture
def pool() -> Iterator[EncoderPool]:
    """A two-thread JPEG encoder pool, closed after the test."""
    with EncoderPool(2) as p:
        yield p


@pytest.fixture(scope="module")
def mcap_core() -> Path:
    """The node script that reads segments with Foxglove's @mcap/core (installs it if missing)."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("node/npm are not installed (.ci/run installs them): "
                    "cannot run Foxglove's @mcap/core")
    if not (JS / "node_modules" / "@mcap" / "core").is_dir():
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--silent"], cwd=JS, check=True,
                       timeout=300)
    return JS / "mcap_times.mjs"


# --- the strict picamera2 double (camera backend tests; section owned by the cameras work) --------

@pytest.fixture(autouse=True)
def _libcamera_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test starts with libcamera's tuning variables unset and has them restored after: the
    double's managers read them as libcamera does, and picamera2 and the backend set them process
    wide (one test's tuning file must not be the next one's)."""
    monkeypatch.delenv("LIBCAMERA_RPI_TUNING_FILE", raising=False)
    monkeypatch.delenv("LIBCAMERA_IPA_CONFIG_PATH", raising=False)


@pytest.fixture
def picamera2_rig(request: pytest.FixtureRequest) -> FakeRig:
    """The strict picamera2 double: a :class:`~camctl.testing.picamera2_double.FakeRig` (one IMX708
    on a board without the hardware JPEG encoder), its simulated module ``picamera2_rig.module`` to
    pass as ``picamera2=``. Another board: parametrize indirectly with FakeRig's keyword arguments,
    e.g. ``@pytest.mark.parametrize("picamera2_rig", [{"lens": False}], indirect=True)``."""
    from camctl.testing.picamera2_double import FakeRig

    return FakeRig(**getattr(request, "param", {}))


@pytest.fixture
def rig(picamera2_rig: FakeRig) -> FakeRig:
    """The strict double of a board without the hardware JPEG encoder (Pi 5-like)."""
    return picamera2_rig


@pytest.fixture
def hw_rig(picamera2_rig: FakeRig) -> FakeRig:
    """The strict double of a VC4 board (Pi 4-like): picamera2's V4L2 MJPEGEncoder constructs."""
    picamera2_rig.hardware_jpeg = True
    return picamera2_rig


# --- daemons in this process ----------------------------------------------------------------------

@pytest.fixture
def daemon(tmp_path: Path) -> Iterator:
    """Start a :class:`~camctl.board.daemon.Daemon` in this process (``cfg``: default
    ``make_config(tmp_path)``; other keywords go to Daemon); every one started is closed after
    the test."""
    from boards import make_config

    from camctl.board.daemon import Daemon
    from camctl.board.sdnotify import Notifier

    made: list[Daemon] = []

    def start(cfg=None, **kw):
        d = Daemon(cfg or make_config(tmp_path), notifier=Notifier(environ={}), **kw)
        made.append(d)
        d.start()
        return d

    yield start
    for d in made:
        d.close()



# --- the CLI in this process ----------------------------------------------------------------------

@pytest.fixture
def camctl_cli() -> Callable[..., subprocess.CompletedProcess[str]]:
    """``camctl ARGS`` as ``python -m camctl`` runs it (``camctl.cli.main``), but in this process:
    returns the exit status and the captured stdout/stderr as a CompletedProcess. For a short
    command beside a board that is a process of its own (a Python start costs more than the
    command; ``python -m camctl`` itself is tests/test_cli.py's). ``env`` is set for the call only;
    the logging main() sets up for a process is undone after it."""
    import contextlib
    import io
    import logging
    import os

    from camctl.cli import main

    def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        out, err = io.StringIO(), io.StringIO()
        root = logging.getLogger()
        handlers, level = root.handlers[:], root.level
        saved = {k: os.environ.get(k) for k in env or {}}
        os.environ.update(env or {})
        try:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                rc = main(list(args))
        finally:
            root.handlers[:] = handlers
            root.setLevel(level)
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
        return subprocess.CompletedProcess(["camctl", *args], rc, out.getvalue(), err.getvalue())

    return run
