"""Bench figure ``trigger_latency_vm_ratio``: on a real kernel's GPIO, the kernel's edge time to
camctl's phase change, against a bare lgpio callback on the same line in the same VM run.

One boot of the kernel tier's VM (:mod:`camctl.testing.kernelvm`: Debian's kernel under QEMU, a
gpio-sim chip read through lgpio and gpiozero's LGPIOFactory) runs the measurement in
tests/kernelvm/test_in_vm_gpio.py (``test_trigger_latency_against_a_bare_lgpio_callback``), which
writes its p50/p99 as JSON to a host directory the guest writes through to. The ratio is camctl's
p50 over the bare callback's: what EventLines, the edge's time check and the phase machine add to
lgpio's own delivery, on the same stack and the same (emulated) CPU. Where the tier cannot run (not
prepared, not a checkout) and with ``--quick`` (a boot is ~45 s) the key is null with the reason,
and the run does not fail for it.
"""

from __future__ import annotations

import json
from typing import Any

from camctl.bench.harness import Ctx, Figure, Metric

KEY = "trigger_latency_vm_ratio"
TEST = "tests/kernelvm/test_in_vm_gpio.py::test_trigger_latency_against_a_bare_lgpio_callback"
LATENCY_JSON_ENV = "CAMCTL_KERNELVM_LATENCY_JSON"  # the in-VM test writes its figures there


def bench_trigger_vm(ctx: Ctx) -> dict[str, Any]:
    from camctl.exc import StackUnavailable
    from camctl.testing import kernelvm

    if ctx.quick:
        return {KEY: None, "_unavailable": {
            KEY: "not measured with --quick: it boots the kernel tier's VM (~45 s)"}}
    out_dir = ctx.tmp / "trigger-vm"
    out_dir.mkdir()
    out = out_dir / "latency.json"
    try:
        run = kernelvm.run_in_vm([TEST, "-q", "-rA"], env={LATENCY_JSON_ENV: str(out)},
                                 rwdirs=[out_dir])
    except StackUnavailable as exc:
        return {KEY: None, "_unavailable": {KEY: f"kernel tier unavailable: {exc}"}}
    if run.returncode != 0 or not out.exists():
        raise RuntimeError(f"the measurement in the VM failed (pytest exit {run.returncode}, "
                           f"{'no' if not out.exists() else 'a'} JSON):\n{run.stdout[-2000:]}")
    got = json.loads(out.read_text())
    kvm = "KVM" if "--disable-kvm" not in kernelvm.vm_command(kernelvm.tier_dir(), []) else "TCG"
    return {KEY: got["ratio_p50"],
            "_note": f"{got['edges']} edges each way, alternating rounds, one VM ({kvm}): camctl "
                     f"p50 {got['camctl_p50_ms']:.3f} / p99 {got['camctl_p99_ms']:.3f} ms, bare "
                     f"lgpio p50 {got['bare_p50_ms']:.3f} / p99 {got['bare_p99_ms']:.3f} ms "
                     f"(p99 ratio {got['ratio_p99']:.2f})"}


FIGURE = Figure("trigger_latency_vm", bench_trigger_vm, (
    Metric(KEY, "kernel edge time -> camctl phase change / the same to a bare lgpio callback, "
                "p50, gpio-sim in the kernel tier's VM, same run"),
))
