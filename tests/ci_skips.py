"""Under CI a skipped test is a failed test: the hook ``tests/conftest.py`` installs.

A test may skip where its tool truly cannot exist (no FUSE, no chromium, no root) and says why in
one line; CI (``CI`` set, as ``.ci/run`` runs) installs every such tool, so a skip there means an
install step is missing and would hide a whole tier. The report keeps the skip's reason. A module
skipped whole at collection (``pytest.skip(..., allow_module_level=True)``, a module-level
``pytest.importorskip``) fails too: its tests would otherwise vanish from the count.
"""

from __future__ import annotations

import os
from collections.abc import Generator
from typing import Any

import pytest

__all__ = ["in_ci", "pytest_make_collect_report", "pytest_runtest_makereport"]


def in_ci() -> bool:
    """True when the run is CI's (``CI`` set to anything but empty, ``0`` or ``false``)."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false")


def _fail_skip(report: pytest.TestReport | pytest.CollectReport) -> None:
    """Turn a skip report into a failure that keeps the skip's reason (under CI only)."""
    if report.skipped and not hasattr(report, "wasxfail") and in_ci():
        longrepr = report.longrepr
        reason = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
        reason = reason.removeprefix("Skipped: ")
        report.outcome = "failed"
        report.longrepr = f"skipped under CI, which must run every test: {reason}"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]) -> Generator:
    outcome = yield
    _fail_skip(outcome.get_result())


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector: pytest.Collector) -> Generator:
    """A module skipped at collection (see the module doc) is a failed collection under CI: changed
    where the report is made, before the session counts it as a failure or not."""
    outcome = yield
    _fail_skip(outcome.get_result())
