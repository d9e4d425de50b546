"""The list of bench figure modules: adding a figure is adding its module name here (see
:mod:`camctl.bench`). A module gives its ``FIGURE``, or ``FIGURES`` (a tuple, table order) when it
measures more than one figure.

Modules are imported on first use, so importing the harness stays cheap and free of cycles.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from camctl.bench.harness import Ctx, Figure, Metric

__all__ = ["FIGURE_MODULES", "benchmarks", "figures", "metrics"]

# One line per figure module of camctl/bench/, in the order of the tables' rows.
FIGURE_MODULES: tuple[str, ...] = (
    "store",
    "fetch",
    "imagezmq",
    "encode",
    "capture",
    "sensors",
    "trigger",
    "trigger_vm",
    "camera",
    "realstack",
    "rss",
    "first_look",
    "verify",
    "boot",
    "mission",
    "fleet",
)


@functools.cache
def figures() -> tuple[Figure, ...]:
    """Every registered figure (each module's ``FIGURES``, or its ``FIGURE``), in registry
    order."""
    out = []
    for name in FIGURE_MODULES:
        mod = importlib.import_module(f"camctl.bench.{name}")
        figs = getattr(mod, "FIGURES", None)
        if figs is None:
            fig = getattr(mod, "FIGURE", None)
            if fig is None:
                raise ImportError(f"camctl.bench.{name} is registered but defines no FIGURE")
            figs = (fig,)
        out.extend(figs)
    keys = [m.key for f in out for m in f.metrics]
    if len(set(keys)) != len(keys):
        twice = sorted({k for k in keys if keys.count(k) > 1})
        raise ImportError(f"bench metric keys registered twice: {twice}")
    return tuple(out)


def metrics() -> tuple[Metric, ...]:
    """Every metric of every figure, in table order."""
    return tuple(m for f in figures() for m in f.metrics)


def benchmarks() -> dict[str, tuple[Callable[[Ctx], dict[str, Any]], tuple[str, ...]]]:
    """``{figure name: (run function, metric keys)}``."""
    return {f.name: (f.run, f.keys) for f in figures()}
