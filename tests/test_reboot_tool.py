"""camctl.testing.reboot: a process started as after a reboot really has a new clock and boot id."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from camctl.testing.reboot import after_reboot, unavailable

pytestmark = pytest.mark.skipif(bool(unavailable()), reason=f"after_reboot: {unavailable()}")

PROBE = ("import time, os; print(time.monotonic(), time.clock_gettime(time.CLOCK_BOOTTIME), "
         "open('/proc/sys/kernel/random/boot_id').read().strip(), os.getpid())")


def test_the_process_sees_a_fresh_clock_and_a_new_boot_id_and_keeps_its_pid(tmp_path: Path) -> None:
    host_boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    argv = after_reboot([sys.executable, "-c", PROBE], state_dir=tmp_path, uptime_s=4.0,
                        boot_id="0000-reboot")
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
    out, _ = proc.communicate(timeout=30)
    mono, boottime, boot, pid = out.split()
    assert 3.0 <= float(mono) < 60 and 3.0 <= float(boottime) < 60
    assert time.monotonic() > 100 > float(mono)  # the host's clock is untouched (it ran > 100 s)
    assert boot == "0000-reboot" and int(pid) == proc.pid  # exec'd in place: kill -9 hits it
    assert Path("/proc/sys/kernel/random/boot_id").read_text().strip() == host_boot
