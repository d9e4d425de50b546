"""A real Linux kernel's GPIO on a machine without GPIO: tests run in a small VM with gpio-sim.

Owns where the kernel tier's pieces live (``tools/kernelvm/setup.sh`` prepares Debian's kernel,
the gpio-sim modules and virtme-ng in a cache outside the checkout), how the VM is booted
(virtme-ng, one CPU, 512 MB, the host's root filesystem shared read-only) and how a pytest
selection runs in it: :func:`run_in_vm`. Inside, ``tools/kernelvm/guest.sh`` makes a gpio-sim chip
and an i2c-stub bus and sets ``CAMCTL_IN_KERNELVM=1`` with their names (see that script).
Facts behind it: ../shared/REALSTACK.md, "A real kernel's GPIO (and I2C) in a VM".

Command line (one VM boot; exit status is pytest's)::

    python -m camctl.testing.kernelvm [--setup] [PYTEST_ARG...]   (default: tests/kernelvm)
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shlex
import signal
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

from camctl.exc import StackUnavailable, VMError
from camctl.testing.tiers import REPO, cache_dir, debian_root_problem, recipe, run_setup

__all__ = ["BLACKLIST", "IN_VM_ENV", "can_build", "in_vm",
           "run_in_vm", "setup_hint", "tier_dir", "vm_command"]

IN_VM_ENV = "CAMCTL_IN_KERNELVM"
_SETUP = REPO / "tools" / "kernelvm" / "setup.sh"
_GUEST = REPO / "tools" / "kernelvm" / "guest.sh"
_EXIT = re.compile(r"^kernelvm: exit (\d+)\s*$", re.M)
# What udev would load for QEMU's emulated devices and nothing here uses: without them a boot under
# software emulation takes ~15 s instead of 80-100 s (REALSTACK.md). Module names, no wildcards.
BLACKLIST = (
    "kvm", "kvm_intel", "kvm_amd", "ahci", "libahci", "libata", "ata_piix", "ata_generic",
    "sr_mod", "cdrom", "scsi_mod", "i2c_i801", "lpc_ich", "bochs", "drm", "drm_kms_helper",
    "drm_vram_helper", "ttm", "watchdog", "iTCO_wdt", "iTCO_vendor_support", "i6300esb",
    "aesni_intel", "crc32_pclmul", "crc32c_intel", "ghash_clmulni_intel", "sha1_ssse3",
    "sha256_ssse3", "sha512_ssse3", "polyval_clmulni", "serio_raw", "pcspkr", "evdev", "joydev",
    "psmouse", "floppy", "parport_pc",
)
# Host variables the guest gets (virtme-ng starts the command with a bare environment): CI, so
# tests/ci_skips.py fails a skip inside the VM too, and where the caches are.
_PASS_ENV = ("CI", "CAMCTL_CACHE", "CAMCTL_KERNELVM_LINES", "CAMCTL_KERNELVM_I2C_ADDRS")
# pytest plugins the in-VM tests do not use: loading hypothesis's and pytest-benchmark's costs
# ~20 s under emulation (every file read crosses 9p). The cache would vanish with the VM anyway.
_GUEST_PYTEST = ("-p", "no:hypothesispytest", "-p", "no:benchmark", "-p", "no:cacheprovider")


def setup_hint() -> str:
    return (f"prepare it once with `bash {_SETUP.relative_to(REPO)}` "
            "(root, Debian 12, ~1 min, ~220 MB download)")


def in_vm() -> bool:
    """True inside the kernel tier's VM (``guest.sh`` sets ``CAMCTL_IN_KERNELVM=1``)."""
    return os.environ.get(IN_VM_ENV) == "1"


def can_build() -> str | None:
    """None when this machine can run ``setup.sh`` itself, else why not (one line)."""
    return debian_root_problem(
        platform="the kernel tier runs Debian's x86-64 kernel on Linux x86-64 only",
        debian="setup.sh fetches Debian 12's kernel with apt-get: not a Debian machine",
        root="setup.sh installs QEMU with apt-get: needs root")


def _recipe() -> str:
    found = recipe(_SETUP)
    if found is None:
        raise StackUnavailable(f"{_SETUP} names no RECIPE")
    return found


def tier_dir(*, build: bool = False) -> Path:
    """The prepared directory (``root/`` with the kernel and modules, ``vng/``); prepared first
    when ``build`` (a minute or so), else :class:`~camctl.exc.StackUnavailable` when missing."""
    if not _SETUP.exists():
        raise StackUnavailable(f"{_SETUP} is missing (camctl is not run from its checkout)")
    if not build:
        done = sorted((cache_dir() / "kernelvm").glob(f"*-r{_recipe()}/.complete"))
        if not done:
            raise StackUnavailable(f"the kernel VM is not prepared: {setup_hint()}")
        return done[-1].parent
    return run_setup(_SETUP, tail=600)


def _use_kvm() -> bool:
    """KVM only where the CPU has vmx/svm: /dev/kvm without them (kvm_pvm here) hangs Debian's
    kernel at boot (REALSTACK.md)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return (re.search(r"^flags\s*:.*\b(vmx|svm)\b", flags, re.M) is not None
            and os.access("/dev/kvm", os.R_OK | os.W_OK))


@contextlib.contextmanager
def _one_vm_at_a_time() -> Iterator[None]:
    """Runs on this machine share its cores: a second VM waits for the first."""
    path = cache_dir() / "kernelvm" / ".vm.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def vm_command(tier: Path, guest_cmd: Sequence[str], *, env: dict[str, str] | None = None,
               rwdirs: Sequence[Path] = ()) -> list[str]:
    """The host command that boots the VM and runs ``guest.sh guest_cmd`` in the checkout;
    ``rwdirs`` are host directories the guest writes through to (the only writes the host
    sees)."""
    kernel = next(iter(sorted((tier / "root" / "boot").glob("vmlinuz-*"))), None)
    if kernel is None:
        raise StackUnavailable(f"no kernel image under {tier}/root/boot: {setup_hint()}")
    passed = {k: os.environ[k] for k in _PASS_ENV if k in os.environ} | (env or {})
    inner = " ".join(["env", *(shlex.quote(f"{k}={v}") for k, v in passed.items()),
                      "sh", shlex.quote(str(_GUEST)), *map(shlex.quote, guest_cmd)])
    cmd = [str(tier / "vng" / "bin" / "vng"), "--run", str(kernel), "--cpus", "1",
           "--memory", "512M", "--append", "module_blacklist=" + ",".join(BLACKLIST),
           # the checkout is writable inside (an overlay the host never sees): pytest's cache,
           # and lgpio's notification pipe, which it makes in its working directory at import
           "--overlay-rwdir", str(REPO), "--cwd", str(REPO)]
    for d in rwdirs:
        cmd += ["--rwdir", str(d)]
    if not _use_kvm():
        cmd.append("--disable-kvm")
    return [*cmd, "--exec", inner]


def run_in_vm(pytest_args: Sequence[str], *, build: bool = False, timeout_s: float = 1200,
              env: dict[str, str] | None = None, rwdirs: Sequence[Path] = ()
              ) -> subprocess.CompletedProcess[str]:
    """Boot the VM once and run ``python -m pytest pytest_args`` in it, from the checkout, with
    this interpreter (the guest shares the host's root filesystem). Returns pytest's exit status
    and the VM's whole output (stdout; stderr is merged into it). ``env`` is added to the guest's
    environment; what the guest writes under ``rwdirs`` (host directories) reaches the host.

    Raises :class:`~camctl.exc.StackUnavailable` when the tier is not prepared (and not
    ``build``), and :class:`~camctl.exc.VMError` when the VM did not finish the command (no exit
    line, or ``timeout_s``, a liveness bound and no speed claim, passed)."""
    tier = tier_dir(build=build)
    guest = [sys.executable, "-m", "pytest", *_GUEST_PYTEST, *pytest_args]
    cmd = vm_command(tier, guest, env=env, rwdirs=rwdirs)
    host_env = dict(os.environ, PATH=f"{tier / 'vng' / 'bin'}{os.pathsep}{os.environ['PATH']}")
    with _one_vm_at_a_time():
        # QEMU reopens /proc/self/fd/1 and 2 when they are files: a pipe keeps the output whole
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, env=host_env,
                                start_new_session=True)
        try:
            out, _ = proc.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, _ = proc.communicate()
            raise VMError(f"the VM did not finish within {timeout_s:g} s:\n{out[-3000:]}") from None
        finally:  # e.g. ^C: QEMU is in its own session and would not see it
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    found = _EXIT.findall(out)
    if not found:
        raise VMError(f"the VM ended (status {proc.returncode}) without running the command to "
                      f"its end:\n{out[-3000:]}")
    return subprocess.CompletedProcess(cmd, int(found[-1]), out, "")


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    build = "--setup" in args
    args = [a for a in args if a != "--setup"] or ["tests/kernelvm"]
    try:
        done = run_in_vm(args, build=build)
    except (StackUnavailable, VMError) as exc:
        print(f"kernelvm: {exc}", file=sys.stderr)
        return 2
    sys.stdout.write(done.stdout)
    return done.returncode


if __name__ == "__main__":
    sys.exit(main())
