"""A process started as if the machine had just rebooted: a fresh monotonic clock, a new boot id.

A brown-out reboot restarts the kernel's monotonic clock near zero and gives the kernel a new boot
id (``/proc/sys/kernel/random/boot_id``). Both can be made real for one process tree without
rebooting: Linux time namespaces (time_namespaces(7), Linux 5.6+) shift ``CLOCK_MONOTONIC`` and
``CLOCK_BOOTTIME`` for the processes in them, and a private mount namespace can bind-mount a file
over the boot id. util-linux's ``unshare`` sets up both (``--time --monotonic=<s> --boottime=<s>
--mount``); the wrapped command is exec'd in place, so its pid is the one a test kills with -9.
Needs root (CI runs as root). Tests and the torture run (``tools/torture``) use it.

Example::

    argv = after_reboot(["camctl", "run", "--config", "rig.toml"], state_dir=tmp, uptime_s=4.0)
    proc = subprocess.Popen(argv)        # its time.monotonic() starts near 4.0
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import time
import uuid
from pathlib import Path

__all__ = ["BOOT_ID_PATH", "after_reboot", "unavailable"]

BOOT_ID_PATH = "/proc/sys/kernel/random/boot_id"


@functools.cache
def unavailable() -> str:
    """Why :func:`after_reboot` cannot work on this machine ("" when it can)."""
    if os.name != "posix" or not hasattr(os, "geteuid"):
        return "not Linux"
    if os.geteuid() != 0:
        return "needs root for time and mount namespaces (CI runs as root)"
    if shutil.which("unshare") is None:
        return "no unshare (util-linux) on PATH"
    probe = ["unshare", "--mount", "--time", "--monotonic=-1", "true"]
    try:
        res = subprocess.run(probe, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"unshare failed: {exc}"
    if res.returncode:
        return f"this kernel or unshare has no time namespaces: {res.stderr.strip()[:120]}"
    return ""


def after_reboot(argv: list[str], *, state_dir: Path, uptime_s: float = 5.0,
                 boot_id: str | None = None) -> list[str]:
    """``argv`` wrapped to run as on a machine booted ``uptime_s`` ago with boot id ``boot_id``
    (a new random one by default; written under ``state_dir``). The monotonic and boot-time clocks
    of the process read ``uptime_s`` (within a second) at its start and run at the real rate; the
    wall clock is the machine's."""
    bid = boot_id or str(uuid.uuid4())
    state_dir.mkdir(parents=True, exist_ok=True)
    fake = state_dir / f"boot_id.{bid}"
    fake.write_text(bid + "\n")
    # the shift that makes the clocks read about uptime_s now (unshare takes whole seconds: the
    # clock starts within a second of uptime_s)
    shift = round(uptime_s - time.clock_gettime(time.CLOCK_MONOTONIC))
    boot_shift = round(uptime_s - time.clock_gettime(time.CLOCK_BOOTTIME))
    script = f'mount --bind "{fake}" {BOOT_ID_PATH} && exec "$@"'
    return ["unshare", "--mount", "--time", f"--monotonic={shift}",
            f"--boottime={boot_shift}", "sh", "-c", script, "camctl-rebooted", *argv]
