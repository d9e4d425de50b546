"""``camctl bench``: the quick run reports every metric as a positive number; --only runs one; the
proxy is honest; every figure module is registered; --markdown prints one row per metric.

The quick bench runs ONCE as a real subprocess (module-scoped fixture). No test asserts a
performance target.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from ci_skips import in_ci

from camctl.bench import METRICS, BenchResult, markdown_table
from camctl.bench.harness import MARKDOWN_HEADER
from camctl.bench.registry import FIGURE_MODULES
from camctl.testing.netproxy import DelayProxy

ROOT = Path(__file__).resolve().parent.parent
IMAGEZMQ_KEYS = {"fetch_vs_imagezmq", "fetch_vs_imagezmq_loopback"}
REALSTACK_KEYS = {m.key for m in METRICS if m.key.startswith("real_")}
REALSTACK_MISSING = "real camera stack unavailable"


def _realstack_missing(quick: dict) -> bool:
    """Outside CI the real stack may not be built (its contract tests skip then); under CI it must
    be, as for them (tests/ci_skips.py)."""
    errors = quick["errors"]
    return (not in_ci() and bool(errors) and set(errors) <= REALSTACK_KEYS | IMAGEZMQ_KEYS
            and any(REALSTACK_MISSING in errors.get(k, "") for k in REALSTACK_KEYS))


def _bench(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "camctl", "bench", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def quick() -> dict:
    proc = _bench("--quick", "--json")
    out = json.loads(proc.stdout) if proc.stdout.strip() else {}
    assert proc.returncode == 0 or (out and _realstack_missing(out)), proc.stderr[-3000:]
    return out


ZERO_OK = {"real_late_lost_queue_off", "real_late_lost_queue_on"}


def test_every_metric_is_a_positive_number(quick: dict) -> None:
    have_imagezmq = importlib.util.find_spec("imagezmq") is not None
    no_realstack = _realstack_missing(quick)
    for m in METRICS:
        assert m.key in quick, f"{m.key} missing from {sorted(quick)}"
        v = quick[m.key]
        if v is None and m.key in IMAGEZMQ_KEYS and not have_imagezmq:
            assert "imagezmq" in quick["errors"][m.key]
            continue
        if v is None and m.key in REALSTACK_KEYS and no_realstack:
            continue
        if v is None and m.key in quick["unavailable"]:  # e.g. the kernel VM's, with --quick
            assert quick["errors"][m.key]
            continue
        assert isinstance(v, int | float) and not isinstance(v, bool), (
            f"{m.key}: {v!r} ({quick['errors']})")
        # a count of lost frames may honestly be zero; every other figure is a positive number
        assert v > 0 or (m.key in ZERO_OK and v == 0), f"{m.key}: {v}"
    assert quick["errors"] == {} or set(quick["errors"]) <= IMAGEZMQ_KEYS | (
        REALSTACK_KEYS if no_realstack else set()) | set(quick["unavailable"])


def test_report_names_the_machine_and_targets(quick: dict) -> None:
    mach = quick["machine"]
    assert mach["cores"] >= 1 and mach["cpu"] and mach["python"].count(".") == 2
    assert mach["numpy"] and mach["simplejpeg"]
    assert quick["quick"] is True
    assert quick["targets"]["store_commit_p50_x"] == "<= 1.2"
    assert quick["targets"]["trigger_latency_p99_ms"] == "< 2"
    # every number says what it measured (a key this machine cannot measure says why, in errors)
    assert all(quick["notes"].get(m.key) for m in METRICS
               if not (m.key in REALSTACK_KEYS and _realstack_missing(quick))
               and m.key not in quick["unavailable"])


def test_only_runs_just_that_benchmark(camctl_cli) -> None:
    # the one-figure runs go through camctl.cli.main in this process (conftest's camctl_cli): the
    # command is the same; the subprocess entry is the quick run's above
    proc = camctl_cli("bench", "--quick", "--json", "--only", "encode_scaling")
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout)
    ran = {m.key for m in METRICS if m.key in out}
    assert ran == {"encode_scaling"}
    assert out["encode_scaling"] > 0


def test_the_vm_trigger_ratio_is_null_with_its_reason_where_it_cannot_run(tmp_path,
                                                                         camctl_cli) -> None:
    """A key this machine cannot measure (the kernel VM's: not with --quick, not without the tier)
    is null with the reason, and the run does not fail for it."""
    proc = camctl_cli("bench", "--quick", "--json", "--only", "trigger_latency_vm")
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout)
    assert out["trigger_latency_vm_ratio"] is None
    assert out["unavailable"] == ["trigger_latency_vm_ratio"]
    assert out["errors"] == {"trigger_latency_vm_ratio": "not measured with --quick: it boots "
                                                         "the kernel tier's VM (~45 s)"}


def test_the_vm_trigger_ratio_without_the_kernel_tier(tmp_path, monkeypatch) -> None:
    from types import SimpleNamespace

    from camctl.bench.trigger_vm import bench_trigger_vm
    from camctl.exc import StackUnavailable
    from camctl.testing import kernelvm

    def unprepared(*_a, **_k):
        raise StackUnavailable("the kernel VM is not prepared: prepare it once with ...")

    monkeypatch.setattr(kernelvm, "run_in_vm", unprepared)
    assert bench_trigger_vm(SimpleNamespace(quick=False, tmp=tmp_path)) == {
        "trigger_latency_vm_ratio": None, "_unavailable": {"trigger_latency_vm_ratio": (
            "kernel tier unavailable: the kernel VM is not prepared: prepare it once with ...")}}


def test_unknown_benchmark_is_refused_by_name(camctl_cli) -> None:
    proc = camctl_cli("bench", "--only", "warp_speed")
    assert proc.returncode == 2
    assert "warp_speed" in proc.stderr


def test_delay_proxy_forwards_every_byte_both_ways() -> None:
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]

    def echo() -> None:
        conn, _ = server.accept()
        with conn:
            while data := conn.recv(65536):
                conn.sendall(data)

    t = threading.Thread(target=echo, daemon=True)
    t.start()
    payload = os.urandom(3 << 20)
    with DelayProxy(("127.0.0.1", port), delay_s=0.005) as proxy, \
            socket.create_connection(("127.0.0.1", proxy.port), timeout=30) as c:
        sender = threading.Thread(target=lambda: (c.sendall(payload), c.shutdown(socket.SHUT_WR)))
        sender.start()
        got = bytearray()
        while chunk := c.recv(1 << 20):
            got += chunk
        sender.join(30)
    t.join(30)
    server.close()
    assert bytes(got) == payload


def test_every_figure_module_is_registered() -> None:
    """A camctl/bench/ module that defines FIGURE but is not in FIGURE_MODULES would never run."""
    names = sorted(p.stem for p in (ROOT / "camctl" / "bench").glob("*.py") if p.stem != "__main__")
    with_figure = [n for n in names
                   if hasattr(importlib.import_module(f"camctl.bench.{n}"), "FIGURE")]
    assert sorted(FIGURE_MODULES) == with_figure
    assert len(METRICS) == len({m.key for m in METRICS})


def test_markdown_table_has_a_row_per_metric_and_marks_misses() -> None:
    values: dict[str, float | None] = {m.key: 1.0 for m in METRICS}
    values["rss_mb"] = None
    values["store_commit_p50_x"] = 1.2  # the goal itself meets "<= 1.2"
    values["store_commit_p99_x"] = 1.25
    res = BenchResult(values=values, errors={"rss_mb": "RuntimeError: board did not start"},
                      machine={"cpu": "Test CPU", "cores": 2, "python": "3.11.7"}, elapsed_s=42)
    md = markdown_table(res, commit="abc1234", date="2026-11-30")
    lines = md.splitlines()
    assert "abc1234" in lines[0] and "2026-11-30" in lines[0] and "Test CPU" in lines[0]
    assert lines[2] == MARKDOWN_HEADER
    rows = {ln.split("`")[1]: [c.strip() for c in ln.split("|")[1:-1]]
            for ln in lines if ln.startswith("| `")}
    assert list(rows) == [m.key for m in METRICS]
    assert rows["store_commit_p50_x"][1:4] == ["1.2", "<= 1.2", "yes"]
    assert rows["store_commit_p99_x"][1:4] == ["1.25", "<= 1.2", "**no**"]
    assert rows["fetch_vs_imagezmq"][1:4] == ["1", ">= 3", "**no**"]
    assert rows["capture_fps_1080p_2cams"][1:4] == ["1 fps", "", ""]
    assert rows["rss_mb"][1:4] == ["null", "< 200", "error"]
    assert "`rss_mb` failed: RuntimeError: board did not start" in md


def test_markdown_flag_prints_the_table(camctl_cli) -> None:
    proc = camctl_cli("bench", "--quick", "--markdown", "--only", "encode_scaling")
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    assert MARKDOWN_HEADER in lines
    assert [ln.split("`")[1] for ln in lines if ln.startswith("| `")] == ["encode_scaling"]
