"""The kernel GPIO tier, from the host: one VM boot runs every test in tests/kernelvm/ against a
real kernel's GPIO (gpio-sim through lgpio and gpiozero's LGPIOFactory) and I2C (the sensor
drivers on i2c-stub through i2c-dev and smbus2), and each must pass there;
the one measurement among them (trigger latency) must reach the host.

The VM and its kernel come from ``tools/kernelvm/setup.sh`` (camctl.testing.kernelvm); a machine
that can run it (root, Debian 12) prepares them here on first use, any other skips in one line
naming the script (and under CI a skip fails: tests/ci_skips.py).
"""

from __future__ import annotations

import ast
import json
import re
import subprocess
from pathlib import Path

import pytest

from camctl.exc import StackUnavailable
from camctl.testing import kernelvm

# the first run here prepares the tier (~1 min, ~220 MB download) and every run boots a VM under
# software emulation (~1 min on a shared core): the tier's own budget, not a unit test's
pytestmark = pytest.mark.timeout(1800)

IN_VM = Path(__file__).resolve().parent / "kernelvm"
LATENCY_JSON_ENV = "CAMCTL_KERNELVM_LATENCY_JSON"  # tests/kernelvm/test_in_vm_gpio.py writes it


@pytest.fixture(scope="module")
def out_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A host directory the guest writes through to (the latency measurement's JSON)."""
    return tmp_path_factory.mktemp("kernelvm-out")


@pytest.fixture(scope="module")
def vm_run(out_dir: Path) -> subprocess.CompletedProcess[str]:
    """tests/kernelvm/ run once in the VM, every outcome listed (``-rA``)."""
    cannot = kernelvm.can_build()
    try:
        kernelvm.tier_dir(build=cannot is None)
    except StackUnavailable as exc:
        # under CI this skip is a failure (tests/ci_skips.py)
        pytest.skip(f"kernel tier unavailable: {exc}" + (f"; here: {cannot}" if cannot else ""))
    return kernelvm.run_in_vm([str(IN_VM.relative_to(IN_VM.parent.parent)), "-q", "-rA"],
                              env={LATENCY_JSON_ENV: str(out_dir / "latency.json")},
                              rwdirs=[out_dir])


def _in_vm_tests() -> set[str]:
    """Every test function in tests/kernelvm/, as pytest names it."""
    names = set()
    for path in sorted(IN_VM.glob("test_*.py")):
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.FunctionDef) and node.name.startswith("test_"):
                names.add(f"tests/kernelvm/{path.name}::{node.name}")
    return names


def test_every_kernel_gpio_test_passes_in_the_vm(vm_run: subprocess.CompletedProcess[str]):
    passed = set(re.findall(r"^PASSED (\S+)", vm_run.stdout, re.M))
    expected = _in_vm_tests()
    assert expected, "tests/kernelvm/ has no tests"
    # the sensor drivers on i2c-stub are among them (issue 29: they must pass on a real kernel)
    assert {n for n in expected if n.startswith("tests/kernelvm/test_in_vm_i2c.py::")}
    assert vm_run.returncode == 0 and passed == expected, (
        f"in the VM: pytest exit {vm_run.returncode}; not passed: "
        f"{sorted(expected - passed)}\n{vm_run.stdout[-6000:]}")


def test_the_vm_latency_measurement_is_printed_and_reaches_the_host_as_json(
        vm_run: subprocess.CompletedProcess[str], out_dir: Path):
    assert re.search(r"^trigger_latency in the VM \(60 edges each, .* ratio p50 [\d.]+ p99 [\d.]+$",
                     vm_run.stdout, re.M), vm_run.stdout[-6000:]
    got = json.loads((out_dir / "latency.json").read_text())
    assert got["edges"] == 60
    for path in ("camctl", "bare"):
        assert 0 < got[f"{path}_p50_ms"] <= got[f"{path}_p99_ms"]
    assert got["ratio_p50"] == got["camctl_p50_ms"] / got["bare_p50_ms"]


def test_the_vm_boots_one_cpu_with_the_checkout_and_ci_passed_in(tmp_path: Path, monkeypatch):
    (tmp_path / "root" / "boot").mkdir(parents=True)
    (tmp_path / "root" / "boot" / "vmlinuz-6.1.0-99-amd64").touch()
    monkeypatch.setenv("CI", "true")
    cmd = kernelvm.vm_command(tmp_path, ["python3", "-m", "pytest", "a b"],
                              rwdirs=[tmp_path / "out"])
    args = dict(zip(cmd[1::2], cmd[2::2], strict=False))
    assert args["--run"] == str(tmp_path / "root" / "boot" / "vmlinuz-6.1.0-99-amd64")
    assert (args["--cpus"], args["--memory"]) == ("1", "512M")
    assert "module_blacklist=" in cmd[cmd.index("--append") + 1]
    repo = str(IN_VM.parent.parent)
    assert cmd[cmd.index("--overlay-rwdir") + 1] == repo and cmd[cmd.index("--cwd") + 1] == repo
    assert cmd[cmd.index("--rwdir") + 1] == str(tmp_path / "out")  # the guest writes through
    inner = cmd[cmd.index("--exec") + 1]
    assert inner.startswith("env CI=true ") and inner.endswith(
        "tools/kernelvm/guest.sh python3 -m pytest 'a b'")
    kvm = re.search(r"^flags\s*:.*\b(vmx|svm)\b", Path("/proc/cpuinfo").read_text(), re.M)
    assert ("--disable-kvm" in cmd) == (kvm is None or not Path("/dev/kvm").exists())
