"""Value-ordered overload in the encoder pool: across cameras a lower-value frame goes before a
higher-value one, and a TOUCHDOWN frame is never dropped while an ARMED frame waits."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from scripted import ScriptedCamera, Sink, cfg
from waiting import wait_for

from camctl.board.capture import CameraRunner
from camctl.board.encode import EncoderPool
from camctl.common.frames import FrameValue
from camctl.common.ledger import balance

IDLE, DESCENT, TOUCHDOWN = int(FrameValue.IDLE), int(FrameValue.DESCENT), int(FrameValue.TOUCHDOWN)


@pytest.fixture
def blocked():
    """A one-thread pool holding 3 waiting jobs, its thread held by a job until ``gate`` is set."""
    pool = EncoderPool(1, capacity=3)
    gate, started = threading.Event(), threading.Event()
    pool.run(lambda: (started.set(), gate.wait(30)), value=TOUCHDOWN)
    assert started.wait(10)
    yield pool, gate
    gate.set()
    pool.close()


def test_a_full_pool_pushes_out_the_oldest_lowest_value_frame(blocked):
    pool, gate = blocked
    idle = [pool.run(lambda i=i: ("idle", i), value=IDLE) for i in range(2)]
    descent = pool.run(lambda: "descent", value=DESCENT)
    assert pool.waiting == 3 and not any(f.cancelled() for f in (*idle, descent))
    td = [pool.run(lambda: ("td", 0), value=TOUCHDOWN)]
    # the oldest of the lowest value
    assert [f.cancelled() for f in (*idle, descent)] == [True, False, False]
    td += [pool.run(lambda i=i: ("td", i), value=TOUCHDOWN) for i in (1, 2)]
    # the two ARMED frames went first (oldest first), then the DESCENT one: never a TOUCHDOWN frame
    assert [f.cancelled() for f in idle] == [True, True] and descent.cancelled()
    assert not any(f.cancelled() for f in td) and pool.evicted == 3
    # nothing waiting is worth less: the newcomer is refused, whatever its value
    late_td, late_idle = pool.run(lambda: 0, value=TOUCHDOWN), pool.run(lambda: 0, value=IDLE)
    assert late_td.cancelled() and late_idle.cancelled() and pool.refused == 2
    gate.set()
    assert [f.result(10) for f in td] == [("td", 0), ("td", 1), ("td", 2)]
    assert pool.waiting == 0


def test_equal_values_do_not_push_each_other_out(blocked):
    pool, _gate = blocked
    first = [pool.run(lambda: 1, value=DESCENT) for _ in range(3)]
    assert pool.run(lambda: 1, value=DESCENT).cancelled()
    assert not any(f.cancelled() for f in first) and pool.evicted == 0


def test_an_unbounded_pool_never_drops():
    with EncoderPool(1) as pool:
        futs = [pool.submit(np.zeros((16, 16, 3), np.uint8), value=IDLE) for _ in range(50)]
        assert all(f.result(10)[:2] == b"\xff\xd8" for f in futs)


def test_across_cameras_the_touchdown_camera_keeps_its_frames(blocked):
    """Two runners on one blocked pool: the ARMED camera's waiting frames are pushed out (counted
    as its encoder_behind), the TOUCHDOWN camera loses nothing while any ARMED frame waits."""
    pool, gate = blocked
    armed_cam, td_cam = ScriptedCamera("armed"), ScriptedCamera("td")
    armed_cam.gated = td_cam.gated = True
    sa, st = Sink(), Sink()
    ra = CameraRunner(armed_cam, cfg("armed"), pool, sa, max_inflight=3)
    rt = CameraRunner(td_cam, cfg("td"), pool, st, max_inflight=3)
    for r in (ra, rt):
        r.start()
    try:
        ra.set_phase("ARMED")
        rt.set_phase("ARMED")
        rt.set_phase("TOUCHDOWN")
        for _ in range(3):
            armed_cam.gate.release()
        wait_for(lambda: pool.waiting == 3, "three ARMED frames waiting")
        for _ in range(3):
            td_cam.gate.release()
        wait_for(lambda: ra.stats.dropped.get("encoder_behind", 0) == 3,
                 "the ARMED frames pushed out")
        assert rt.stats.dropped == {}
        gate.set()
        st.wait_for(lambda fs: len(fs) == 3)
        assert [f.phase for f in st.frames] == ["TOUCHDOWN"] * 3
    finally:
        armed_cam.gated = td_cam.gated = False
        for r in (ra, rt):
            r.set_phase("SAFE")
            r.wait_idle(10)
            r.stop()
    books = ra.ledger.totals()["armed"]
    assert books["dropped"].get("encoder_behind", 0) >= 3
    assert balance(books, len(sa.frames), pending=0)["balanced"], books


def test_encoder_threads_run_below_the_callers_priority() -> None:
    import os

    def niceness() -> int:
        return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

    base = niceness()
    with EncoderPool(1, nice=5) as pool:
        assert pool.run(niceness).result() == min(19, base + 5)
    with EncoderPool(1) as pool:
        assert pool.run(niceness).result() == base
    assert niceness() == base  # the caller's own thread is left alone
    with pytest.raises(ValueError, match="nice"):
        EncoderPool(1, nice=-1)
