"""``camctl bench``: the performance ratios, each against a same-run, same-machine baseline.

The package is a shared harness (:mod:`camctl.bench.harness`: :class:`Metric`, :class:`Figure`,
:class:`BenchResult`, :func:`run_benchmarks`, :func:`bench_main`, the tables) and one module per
figure, registered in :mod:`camctl.bench.registry`. Every benchmark is independent: one that fails
reports ``null`` and an error string and the others still run; every child process is killed at
the end. How to add a figure: docs/bench.md; the figures: the README's Performance section.

Example::

    $ camctl bench --quick --json            # CI smoke (< 1 minute)
    $ camctl bench --markdown                # the README's performance table
"""

from __future__ import annotations

from camctl.bench.harness import (
    BenchResult,
    Figure,
    Metric,
    bench_main,
    markdown_table,
    print_table,
    run_benchmarks,
)
from camctl.bench.registry import benchmarks, metrics

__all__ = ["BENCHMARKS", "METRICS", "BenchResult", "Figure", "Metric", "bench_main",
           "markdown_table", "print_table", "run_benchmarks"]

METRICS: tuple[Metric, ...] = metrics()
BENCHMARKS = benchmarks()
