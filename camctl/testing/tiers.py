"""What the real-stack test tiers share (``realstack``: libcamera's virtual camera; ``kernelvm``: a
kernel in a VM): their cache, their setup scripts' RECIPE, running a setup script, and whether this
machine can run one itself."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from camctl.exc import StackUnavailable

__all__ = ["REPO", "cache_dir", "debian_root_problem", "recipe", "run_setup"]

REPO = Path(__file__).resolve().parents[2]


def cache_dir() -> Path:
    """``$CAMCTL_CACHE`` or ``~/.cache/camctl``: everything the real-stack tiers build or fetch."""
    return Path(os.environ.get("CAMCTL_CACHE") or Path.home() / ".cache" / "camctl")


def recipe(script: Path) -> str | None:
    """The ``RECIPE=N`` a setup script names (bumped when what it builds changes), or None."""
    found = re.search(r"(?m)^RECIPE=(\d+)$", script.read_text())
    return None if found is None else found.group(1)


def run_setup(script: Path, *, tail: int) -> Path:
    """Run a tier's setup script (idempotent: it prints where its result is, last line); a failure
    is StackUnavailable with the last ``tail`` characters of what it said."""
    done = subprocess.run(["bash", str(script)], capture_output=True, text=True, check=False)
    if done.returncode:
        raise StackUnavailable(f"{script.name} failed: {done.stderr.strip()[-tail:]}")
    return Path(done.stdout.strip().splitlines()[-1])


def debian_root_problem(*, platform: str, debian: str, root: str) -> str | None:
    """None where this machine can run a tier's setup (Linux x86-64, Debian with apt-get, root),
    else the one line of the first of the three that fails."""
    if sys.platform != "linux" or os.uname().machine != "x86_64":
        return platform
    if not Path("/etc/debian_version").exists() or shutil.which("apt-get") is None:
        return debian
    if os.geteuid() != 0:
        return root
    return None
