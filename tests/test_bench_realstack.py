"""The ``realstack`` bench figure: registered, its arithmetic (a core's share from per-frame costs
and rates, the Pi scaling, the quota), and the harness's per-key notes and errors it relies on.

No camera runs here: the measurement itself is ``camctl bench --only realstack``.
"""

from __future__ import annotations

import threading

import pytest

from camctl.bench import harness, registry
from camctl.bench.harness import Figure, Metric, run_benchmarks
from camctl.bench.realstack import (
    FRAME_THREADS,
    PI5_CORE_SHARE,
    RIG,
    core_share,
    pi_share,
    quota_us,
    thread_cpu,
)

KEYS = {"real_frame_cpu_ms", "real_thinned_cpu_ms", "real_armed_core_share",
        "real_descent_core_share", "real_descent_keepup_quota", "real_late_lost_queue_off",
        "real_late_lost_queue_on"}


def test_the_figure_is_registered_with_informative_metrics() -> None:
    fig = {f.name: f for f in registry.figures()}["realstack"]
    assert set(fig.keys) == KEYS
    assert all(not m.op for m in fig.metrics)  # no target: a Pi owner's figure, not a gate
    assert "realstack" in registry.FIGURE_MODULES


def test_a_core_share_counts_delivered_and_thinned_frames_at_their_own_cost() -> None:
    # ARMED 2 of a 50 fps sensor: 2 delivered at 0.8 ms, 48 thinned at 0.5 ms = 25.6 ms per second
    assert core_share(2, 50, 0.8, 0.5) == pytest.approx(0.0256)
    # DESCENT: every sensor frame delivered, the thinned cost does not count
    assert core_share(50, 50, 0.8, 123.0) == pytest.approx(0.04)
    # one frame per second costing a whole second is one core
    assert core_share(1, 1, 1000.0, 0.0) == pytest.approx(1.0)


@pytest.mark.parametrize("delivered, sensor", [(0, 50), (60, 50), (-1, 50)])
def test_a_rate_above_the_sensor_or_none_at_all_is_refused(delivered: float,
                                                          sensor: float) -> None:
    with pytest.raises(ValueError):
        core_share(delivered, sensor, 1.0, 1.0)


def test_the_pi_share_and_the_quota_follow_the_stated_core_ratio() -> None:
    assert 0 < PI5_CORE_SHARE < 1  # a Pi 5 core does less than one of the bench machine's
    assert pi_share(0.077) == pytest.approx(0.077 / PI5_CORE_SHARE)
    assert pi_share(0.5, pi_core=0.5) == pytest.approx(1.0)
    assert quota_us(PI5_CORE_SHARE) == round(PI5_CORE_SHARE * 100_000)
    assert quota_us(0.25, period_us=200_000) == 50_000
    assert quota_us(0.0) == 1000  # the kernel's minimum quota


def test_the_rig_the_figure_reads_is_in_the_checkout() -> None:
    assert RIG.exists(), RIG


def test_thread_cpu_sees_a_busy_thread_by_its_name() -> None:
    done = threading.Event()
    started = threading.Event()

    def spin() -> None:
        started.set()
        n = 0
        while not done.is_set():
            n += 1

    worker = threading.Thread(target=spin)
    worker.start()
    started.wait()
    try:
        tid = worker.native_id
        assert tid is not None
        first = thread_cpu()[tid][1]
        while thread_cpu()[tid][1] <= first:  # the counter moves once the thread has run
            pass
    finally:
        done.set()
        worker.join()
    assert "VirtualCamera" in FRAME_THREADS


def test_per_key_notes_and_errors_reach_the_report(monkeypatch: pytest.MonkeyPatch) -> None:
    def run(ctx: harness.Ctx) -> dict:
        return {"a": 1.0, "b": None, "_note": "for both", "_notes": {"a": "for a"},
                "_errors": {"b": "no cgroup"}}

    fig = Figure("fake", run, (Metric("a", "a"), Metric("b", "b")))
    monkeypatch.setattr(registry, "figures", lambda: (fig,))
    result = run_benchmarks(quick=True)
    assert result.values == {"a": 1.0, "b": None}
    assert result.notes == {"a": "for a", "b": "for both"}
    assert result.errors == {"b": "no cgroup"}
