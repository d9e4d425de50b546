"""``camctl demo --mission``: the mission page watching the demo's boards, on a printed URL.

:class:`DemoMission` is the demo's hook: when the boards serve it starts the page (downloads and
exports in ``<demo out>/mission``), prints the URL and gives a viewer a moment to open it; before
the boards stop it waits for the page's export, then, on a terminal, keeps the page up until Enter.
"""

from __future__ import annotations

import contextlib
import sys
import time
from pathlib import Path
from typing import Any

__all__ = ["DemoMission"]


class DemoMission:
    """See the module docstring. ``close()`` is safe twice."""

    def __init__(self, *, port: int = 8080, open_wait_s: float = 2.0,
                 export_wait_s: float = 120.0) -> None:
        self.port = port
        self.open_wait_s = open_wait_s
        self.export_wait_s = export_wait_s
        self.server: Any = None

    def started(self, boards: list[Any], out: Path) -> None:
        from camctl.ground.mission import serve

        self.server = serve([b.router for b in boards], Path(out) / "mission", port=self.port)
        print(f"mission page: {self.server.url}", flush=True)
        time.sleep(self.open_wait_s)  # time to open the page before the boards are armed

    def finished(self) -> None:
        if self.server is None:
            return
        deadline = time.monotonic() + self.export_wait_s
        recovery = self.server.mission.recovery
        while (time.monotonic() < deadline
               and recovery.export.get("state") not in ("done", "failed")):
            time.sleep(0.2)
        print(f"mission page export: {recovery.export.get('state')}", flush=True)
        if sys.stdin is not None and sys.stdin.isatty():
            with contextlib.suppress(EOFError, KeyboardInterrupt):
                input(f"the mission page stays up at {self.server.url}; "
                      "press Enter to stop the boards and it ")

    def close(self) -> None:
        if self.server is not None:
            self.server.close()
            self.server = None
