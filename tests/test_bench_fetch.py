"""``fetch_vs_raw_zmq``: the rounds alternate which side goes first, the figure is the median of
the round ratios, and the raw side's files are checked byte for byte (a wrong byte is noticed).

No test asserts a performance target (tests/test_bench.py runs the figure itself with --quick).
"""

from __future__ import annotations

import hashlib
import itertools
import os
from pathlib import Path

import pytest

from camctl.bench import fetch as bf
from camctl.bench.harness import Ctx


def _sides(calls: list[str]) -> tuple[bf.Side, bf.Side]:
    n = itertools.count(1)

    def first() -> tuple[float, float]:
        calls.append("F")
        return float(next(n)), 0.0

    def second() -> tuple[float, float]:
        calls.append("R")
        return float(next(n)), 0.0

    return first, second


def test_rounds_alternate_which_side_goes_first_and_pair_the_results() -> None:
    calls: list[str] = []
    first, second = _sides(calls)
    done = bf.interleave(first, second, rounds=4, min_rounds=4, budget_s=1e9)
    assert "".join(calls) == "FRRFFRRF"
    # each round pairs the first side's result with the second's, whichever ran first
    assert [(a[0], b[0]) for a, b in done] == [(1, 2), (4, 3), (5, 6), (8, 7)]


def test_past_the_budget_rounds_stop_in_pairs_but_not_before_the_minimum() -> None:
    calls: list[str] = []
    first, second = _sides(calls)
    # a clock where each side takes one second: 3 s are past after the second side of round 2
    done = bf.interleave(first, second, rounds=10, min_rounds=3, budget_s=3,
                         clock=lambda: float(len(calls)))
    assert len(done) == 4  # 3 rounds would leave one side first more often
    assert calls.count("F") == calls.count("R") == 4
    calls.clear()
    done = bf.interleave(first, second, rounds=10, min_rounds=6, budget_s=0,
                         clock=lambda: float(len(calls)))
    assert len(done) == 6
    calls.clear()
    done = bf.interleave(first, second, rounds=10, min_rounds=2, budget_s=1e9,
                         clock=lambda: float(len(calls)))
    assert len(done) == 10


def test_the_figure_is_raw_time_over_fetch_time_per_round() -> None:
    assert bf.round_ratios([2.0, 4.0], [1.0, 5.0]) == [0.5, 1.25]
    with pytest.raises(ValueError):
        bf.round_ratios([1.0], [1.0, 2.0])
    with pytest.raises(ValueError):
        bf.round_ratios([], [])


@pytest.fixture()
def served(tmp_path: Path) -> tuple[Path, list[tuple[str, int]], dict[str, str]]:
    """A folder of files as the raw server sees a flight, their sizes and sha256."""
    root = tmp_path / "store"
    (root / "F1" / "down").mkdir(parents=True)
    # not a multiple of the chunk: the last request is short
    (root / "F1" / "down" / "000001.mcap").write_bytes(os.urandom(3 * 65536 + 1234))
    (root / "F1" / "flight.json").write_bytes(b'{"flight": "F1"}')
    files = bf._files_of(root)
    digests = {rel: hashlib.sha256((root / rel).read_bytes()).hexdigest() for rel, _ in files}
    return root, files, digests


def test_the_raw_loop_moves_every_byte_and_a_changed_byte_is_noticed(served, tmp_path) -> None:
    root, files, digests = served
    ctx = Ctx(quick=True)
    try:
        _, info = ctx.spawn("raw-server", str(root))
        out = tmp_path / "raw"
        got = bf._raw_fetch(info["url"], files, out, chunk=65536, window=3)
        assert got == sum(s for _, s in files)
        bf.check_raw(out, files, digests)  # passes: the same bytes
        # the server now serves one changed byte: the check after the clock notices
        seg = root / "F1" / "down" / "000001.mcap"
        data = bytearray(seg.read_bytes())
        data[70000] ^= 0xFF
        seg.write_bytes(bytes(data))
        out2 = tmp_path / "raw2"
        assert bf._raw_fetch(info["url"], files, out2, chunk=65536, window=3) == got
        with pytest.raises(RuntimeError, match="sha256"):
            bf.check_raw(out2, files, digests)
    finally:
        ctx.close()


def test_a_short_or_missing_raw_file_is_noticed(served, tmp_path) -> None:
    root, files, digests = served
    out = tmp_path / "raw"
    out.mkdir()
    for rel, _ in files:
        (out / bf._raw_name(rel)).write_bytes((root / rel).read_bytes())
    bf.check_raw(out, files, digests)
    seg = out / bf._raw_name("F1/down/000001.mcap")
    seg.write_bytes(seg.read_bytes()[:-1])
    with pytest.raises(RuntimeError, match="bytes, expected"):
        bf.check_raw(out, files, digests)
    seg.unlink()
    with pytest.raises(RuntimeError, match="missing"):
        bf.check_raw(out, files, digests)
