"""One real board for the torture run: ``camctl run`` as a child process, driven by the real CLI.

:class:`TortureBoard` starts the daemon (plainly, or as after a reboot:
:mod:`camctl.testing.reboot`), waits for its documented ready signal (``daemon.json`` naming its
pid, written just before READY), kills it with -9 (its publisher child too, as systemd kills the
unit's cgroup), and talks to it only as an operator would: ``camctl arm|event|disarm|status|fetch|
ls`` as subprocesses. Every child gets ``PYTHONPATH`` pointing at the camctl being tested, so a
worktree tests its own code.

A *boot* is what the board's clocks belong to: the machine's own (``None``), or a simulated one
after a reboot (a boot id and the monotonic shift of its time namespace); a plain restart after a
reboot stays in that boot, as a daemon restarted by systemd on a rebooted Pi does.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import camctl
from camctl.exc import TortureBoardError
from camctl.testing.reboot import after_reboot

__all__ = ["BoardError", "Boot", "TortureBoard", "camctl_env"]

_START_TIMEOUT_S = 120.0  # a liveness bound on a loaded machine, never a speed claim
_CLI_TIMEOUT_S = 180.0


# the run's name for it (camctl.exc keeps every exception class of the package)
BoardError = TortureBoardError


@dataclass(frozen=True)
class Boot:
    """A simulated boot: its id and its time namespace's monotonic shift (whole seconds)."""

    boot_id: str
    shift_s: int


def camctl_env() -> dict[str, str]:
    """The environment for every child: ``PYTHONPATH`` first names the camctl under test."""
    root = str(Path(camctl.__file__).resolve().parent.parent)
    rest = os.environ.get("PYTHONPATH", "")
    return {**os.environ, "PYTHONPATH": root + (os.pathsep + rest if rest else "")}


def _ppid(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[1])


class TortureBoard:
    """The board of one seed, in ``directory`` (its ``rig.toml``, ``store/``, ``daemon.log``)."""

    def __init__(self, directory: Path, config: Path) -> None:
        self.dir = directory
        self.config = config
        self.store = directory / "store"
        self.log_path = directory / "daemon.log"
        self.env = camctl_env()
        self.proc: subprocess.Popen | None = None
        self.router = ""
        self.boot: Boot | None = None  # None: the machine's own boot
        self.starts = 0
        self._reap: list[subprocess.Popen] = []

    # -- process -----------------------------------------------------------------------------------
    def start(self, *, reboot_uptime_s: float | None = None) -> None:
        """Start ``camctl run``; with ``reboot_uptime_s`` as after a reboot (a new boot whose
        monotonic clock reads about that much). Returns once the board is ready."""
        argv = [sys.executable, "-m", "camctl", "run", "--config", str(self.config)]
        state = self.dir / "boots"
        if reboot_uptime_s is not None:
            bid = str(uuid.uuid4())
            shift = round(reboot_uptime_s - time.clock_gettime(time.CLOCK_MONOTONIC))
            self.boot = Boot(bid, shift)
        if self.boot is not None:  # a restart inside a simulated boot keeps its clock and id
            now = time.clock_gettime(time.CLOCK_MONOTONIC)
            argv = after_reboot(argv, state_dir=state, uptime_s=now + self.boot.shift_s,
                                boot_id=self.boot.boot_id)
        info = self.store / "daemon.json"
        with contextlib.suppress(FileNotFoundError):
            info.unlink()
        with self.log_path.open("ab") as log:
            log.write(f"--- start {self.starts} boot={self.boot} ---\n".encode())
            log.flush()
            self.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, env=self.env)
        self.starts += 1
        deadline = time.monotonic() + _START_TIMEOUT_S
        while True:
            if self.proc.poll() is not None:
                raise BoardError(f"camctl run exited with {self.proc.returncode} at start: "
                                 + self.log_tail(600))
            try:
                data = json.loads(info.read_text())
                if data.get("pid") == self.proc.pid:
                    self.router = data["router"]
                    return
            except (OSError, ValueError, KeyError):
                pass
            if time.monotonic() > deadline:
                self.kill9()
                raise BoardError(f"not ready within {_START_TIMEOUT_S:g} s: {self.log_tail(600)}")
            time.sleep(0.02)

    def kill9(self) -> None:
        """kill -9 the daemon and then its publisher child (the unit's cgroup, as systemd does)."""
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        pub = None
        with contextlib.suppress(OSError, ValueError, KeyError):
            pub = int(json.loads((self.store / "daemon.json").read_text())["publisher_pid"])
        if pub is not None and _ppid(pub) != proc.pid:
            pub = None  # not our child (a stale daemon.json): never kill what we did not start
        proc.kill()
        proc.wait()
        if pub is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pub, signal.SIGKILL)

    def stop(self) -> int | None:
        """SIGTERM and wait (the daemon closes its flight's files); kill -9 if it will not go."""
        self.reap()
        proc = self.proc
        if proc is None:
            return None
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                self.kill9()
        return proc.returncode

    def log_tail(self, n: int = 2000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-n:]
        except OSError:
            return ""

    def log_size(self) -> int:
        try:
            return self.log_path.stat().st_size
        except OSError:
            return 0

    def wait_log(self, text: str, *, since: int, timeout_s: float = _START_TIMEOUT_S) -> None:
        """Wait until ``text`` appears in the board's log after byte ``since`` (how the run sees a
        moment too short to poll over the network, e.g. LANDED's finish)."""
        deadline = time.monotonic() + timeout_s
        while True:
            with contextlib.suppress(OSError), self.log_path.open("rb") as f:
                f.seek(since)
                if text.encode() in f.read():
                    return
            if self.proc is not None and self.proc.poll() is not None:
                raise BoardError(f"the board exited waiting for {text!r}: {self.log_tail(600)}")
            if time.monotonic() > deadline:
                raise BoardError(f"no {text!r} in the board's log within {timeout_s:g} s")
            time.sleep(0.005)

    # -- the operator's CLI ------------------------------------------------------------------------
    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        """``camctl <args>`` with the camctl under test; BoardError on a non-zero exit when
        ``check``."""
        out = subprocess.run([sys.executable, "-m", "camctl", *args], capture_output=True,
                             text=True, env=self.env, timeout=_CLI_TIMEOUT_S)
        if check and out.returncode:
            raise BoardError(f"camctl {' '.join(args)} exited {out.returncode}: "
                             f"{(out.stderr or out.stdout).strip()[-600:]}")
        return out

    def status(self) -> dict[str, Any]:
        out = self.cli("status", "--connect", self.router, "--json", "--timeout", "20")
        data = json.loads(out.stdout)
        return data[0] if isinstance(data, list) else data

    def operator(self, command: str, *args: str) -> str:
        """``camctl arm|disarm|event ...`` against this board; its output."""
        return self.cli(command, *args, "--connect", self.router, "--timeout", "20").stdout

    def operator_now(self, command: str, *args: str) -> str:
        """Like :meth:`operator`, but returns the moment the reply is printed, before the CLI
        process has even exited (a kill "right after a disarm" must land within milliseconds of
        the board's answer); the process is reaped later."""
        proc = subprocess.Popen([sys.executable, "-m", "camctl", command, *args, "--connect",
                                 self.router, "--timeout", "20"], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True,
                                env={**self.env, "PYTHONUNBUFFERED": "1"})
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line:
            _, err = proc.communicate(timeout=_CLI_TIMEOUT_S)
            raise BoardError(f"camctl {command} exited {proc.returncode}: {err.strip()[-600:]}")
        self._reap.append(proc)
        return line

    def reap(self) -> None:
        """Wait for the CLI processes :meth:`operator_now` left running."""
        for proc in self._reap:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.communicate(timeout=_CLI_TIMEOUT_S)
        self._reap.clear()

    def wait_status(self, pred: Any, what: str, *, timeout_s: float = _START_TIMEOUT_S,
                    interval_s: float = 0.3) -> dict[str, Any]:
        """Poll STATUS until ``pred(status)``; BoardError naming ``what`` after ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while True:
            st = self.status()
            if pred(st):
                return st
            if time.monotonic() > deadline:
                raise BoardError(f"{what}: not within {timeout_s:g} s (phase {st.get('phase')}, "
                                 f"serving {st.get('serving')})")
            time.sleep(interval_s)
