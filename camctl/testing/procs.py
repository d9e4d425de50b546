"""Stopping a child process the way a service manager does: SIGTERM, a grace period, then SIGKILL.

The benchmarks start real ``camctl`` processes (boards, the ground) and must never leave one
behind, whatever a measurement did.
"""

from __future__ import annotations

import subprocess

__all__ = ["stop_process"]


def stop_process(proc: subprocess.Popen, *, grace_s: float, kill_wait_s: float = 5.0) -> None:
    """End ``proc``: SIGTERM, up to ``grace_s`` for it to exit, then SIGKILL and reap it."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(grace_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(kill_wait_s)
