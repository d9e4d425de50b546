"""Headless Debian chromium via Playwright, for the mission page's browser test and bench figures.

Only the system browser is used (``/usr/bin/chromium``, from Debian's ``chromium`` package;
``.ci/run`` installs it): Playwright's own browser download is never needed. The flags keep it from
reaching out (no component updates, sync or background networking) and a fresh profile folder is
used every time. Playwright is a ``dev`` dependency, imported only here.

Example::

    with chromium(tmp_path / "profile") as ctx:
        page = ctx.new_page(); page.goto(url)
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = ["CHROMIUM", "CHROMIUM_ARGS", "chromium", "find_chromium"]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def find_chromium() -> str | None:
    """The system chromium's path, or None when it is not installed."""
    return CHROMIUM if Path(CHROMIUM).exists() else shutil.which("chromium")


@contextlib.contextmanager
def chromium(profile_dir: Path, *, viewport: tuple[int, int] = (1400, 1000)) -> Iterator[Any]:
    """A Playwright browser context on the system chromium, a fresh profile in ``profile_dir``."""
    from playwright.sync_api import sync_playwright

    exe = find_chromium()
    if exe is None:
        raise FileNotFoundError("chromium is not installed (apt-get install chromium)")
    profile_dir = Path(profile_dir)
    shutil.rmtree(profile_dir, ignore_errors=True)
    profile_dir.mkdir(parents=True)
    with sync_playwright() as pw:
        ctx = pw.chromium.launch_persistent_context(
            str(profile_dir), executable_path=exe, headless=True, args=CHROMIUM_ARGS,
            viewport={"width": viewport[0], "height": viewport[1]})
        try:
            yield ctx
        finally:
            ctx.close()
