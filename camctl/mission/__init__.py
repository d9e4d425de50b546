"""``camctl mission``: the test conductor's page in the browser, from go/no-go to the flight's videos.

Modules: :mod:`~camctl.mission.watcher` (the boards' PUB feeds and STATUS polls), :mod:`~.checks`
(go/no-go), :mod:`~.recovery` (downloads, previews, exports after touchdown), :mod:`~.session` (one
mission: messages for the page, operator commands), :mod:`~.server` (aiohttp: page, WebSocket, files),
:mod:`~.ground_link` (the only door into the ground and export code) and ``static/`` (the page).
Needs the ``ground`` extra (aiohttp).

Example::

    camctl mission --connect tcp://rig-a:5555 --connect tcp://rig-b:5555 --out drop-3
"""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path
from typing import Any

__all__ = ["serve"]


def serve(urls: list[str], out: Path | None = None, *, host: str = "127.0.0.1", port: int = 8080,
          operator: bool = False, limits: Any = None, curve: Any = None, token: str | None = None,
          command_timeout_s: float = 5.0) -> Any:
    """Start a mission and its page; returns the running :class:`~camctl.mission.server.MissionServer`."""
    from camctl.exc import ConfigError

    try:
        from camctl.mission.server import MissionServer
    except ImportError as exc:  # the server library is in the optional 'ground' extra
        raise ConfigError(f"camctl mission needs the ground extra (pip install 'camctl[ground]'): {exc}") from None
    from camctl.mission.session import Mission

    out = Path(out) if out is not None else Path("mission-out") / time.strftime("%Y%m%d-%H%M%S")
    mission = Mission(urls, out, operator=operator, limits=limits, curve=curve, command_timeout_s=command_timeout_s)
    server = MissionServer(mission, host=host, port=port, token=token)
    try:
        server.start()
    except BaseException:
        server.close()
        raise
    return server


def mission_main(args: Any) -> int:
    """``camctl mission``: serve until Ctrl-C or SIGTERM."""
    from camctl.mission.checks import Limits

    limits = Limits(rate_tolerance=args.rate_tolerance, min_record_min=args.min_record_min,
                    max_clock_ms=args.max_clock_ms)
    server = serve(args.connect, Path(args.out) if args.out else None, host=args.host, port=args.port,
                   operator=args.operator, limits=limits, curve=args.curve, command_timeout_s=args.timeout)
    stop = threading.Event()
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
    print(f"mission page: {server.url}", flush=True)
    if server.token:
        print(f"access token (needed off this machine): {server.token}", flush=True)
    print(f"downloads and exports in {server.mission.out}; operator actions "
          f"{'ON (arm/disarm)' if args.operator else 'off'}; Ctrl-C to stop", flush=True)
    try:
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        server.close()
    return 0
