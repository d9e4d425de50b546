"""``camctl bench``: the performance ratios, each against a baseline measured in the same run on the
same machine.

The package is a shared harness (:mod:`camctl.bench.harness`: :class:`Metric`, :class:`Figure`,
:class:`BenchResult`, the per-run context :class:`~camctl.bench.harness.Ctx`,
:func:`run_benchmarks`, the rich and Markdown tables, :func:`bench_main`) and one module per figure
(``store``, ``fetch``, ``imagezmq``, ``encode``, ``capture``, ``trigger``, ``rss``, ``first_look``,
``verify``). Every benchmark is independent: one that fails reports ``null`` and an error string and
the others still run; every child process is killed at the end. Helper child processes are this
package run as a program: ``python -m camctl.bench publisher ROOT`` and friends (private,
:mod:`camctl.bench.children`).

Example::

    $ camctl bench --quick --json            # CI smoke (< 1 minute)
    $ camctl bench --only encode_scaling     # one benchmark, rich table
    $ camctl bench --markdown                # the README's performance table

Adding a figure (one new module and one line)
---------------------------------------------
1. Write ``camctl/bench/<name>.py``. Import heavy things inside the function, not at module level.
   It
   defines a function taking the run's context and returning the values by metric key, plus an
   optional ``"_note"`` saying what was measured (every key needs one: the JSON report and the
   README show it)::

       \"\"\"Bench figure: <what it measures, against which baseline>.\"\"\"
       from camctl.bench.harness import Ctx, Figure, Metric

       def bench_thing(ctx: Ctx) -> dict:
           ...                                   # ctx.tmp, ctx.quick, ctx.frames(n), ctx.flight(n), ctx.spawn(...)
           return {"thing_vs_baseline": ours / theirs, "_note": f"... {ours:.0f} vs {theirs:.0f} frames/s"}

       FIGURE = Figure("thing_vs_baseline", bench_thing, (
           Metric("thing_vs_baseline", "what / against what, same run", ">=", 1.0),
       ))

   ``Figure(name, run, metrics)``: ``name`` is what ``--only`` accepts (each metric key is accepted
   too); ``Metric(key, compares, op, threshold, unit)`` with ``op`` ``">="`` or ``"<"``, or no op
   for an informative number. Raise an exception (a clear message) when the measurement cannot be
   made.
2. Add ``"<name>"`` to ``FIGURE_MODULES`` in :mod:`camctl.bench.registry` (its position is the row
   order of
   the tables). ``tests/test_bench.py`` fails when a module of this package is not registered, and
   ``tests/test_bench_readme.py`` fails until the README table has a row for each new metric key
   (the integrator regenerates the table with ``camctl bench --markdown``).
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

__all__ = ["BENCHMARKS", "METRICS", "BenchResult", "Figure", "Metric", "bench_main", "markdown_table",
           "print_table", "run_benchmarks"]

METRICS: tuple[Metric, ...] = metrics()
BENCHMARKS = benchmarks()
