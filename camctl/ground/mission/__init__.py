"""``camctl mission``: the test conductor's browser page, from go/no-go to the flight's videos.

Modules: :mod:`~camctl.ground.mission.watcher` (the boards' PUB feeds and STATUS polls),
:mod:`~.checks` (go/no-go), :mod:`~.recovery` (downloads, previews, exports after touchdown),
:mod:`~.session` (one mission: messages for the page, operator commands), :mod:`~.server` (aiohttp:
page, WebSocket, files), :mod:`~.ground_link` (the only door into the ground and export code),
:mod:`~.access` (the reading and operator keys), :mod:`~.previews` (which previews the page shows)
and ``static/`` (the page). Needs the ``ground`` extra (aiohttp).

Keys are the other ground commands' (``--curve-keys DIR``, ``--curve-server-key FILE``): STATUS
polls, the PUB feed and the download all use them. Arm/disarm buttons appear only with the
operator's secret key (``--operator-key FILE``) on CURVE boards, or with an explicit ``--operator``
on boards without CURVE (sim, bench); see :mod:`camctl.ground.mission.access`.

Example::

    camctl mission --connect tcp://rig-a:5555 --connect tcp://rig-b:5555 --out drop-3 \
        --curve-keys keys/ground --operator-key keys/ground/client.key_secret
"""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path
from typing import Any

__all__ = ["serve"]


def serve(urls: list[str], out: Path | None = None, *, host: str = "127.0.0.1", port: int = 8080,
          operator: bool = False, operator_key: str | Path | None = None, limits: Any = None,
          curve: Any = None, token: str | None = None, command_timeout_s: float = 5.0,
          previews_per_board: int | None = None) -> Any:
    """Start a mission and its page; returns the running :class:`~.server.MissionServer`.

    ``curve``: None (CURVE off) or the reading keys (a ClientCurve, or one per URL);
    ``operator_key``: the operator's secret key file (CURVE only); ``operator``: arm/disarm on
    boards without CURVE."""
    from camctl.exc import ConfigError
    from camctl.ground.mission.access import operator_curves, operator_mode
    from camctl.ground.mission.previews import DEFAULT_LIMIT

    operator = operator_mode(operator=operator, operator_key=operator_key, curve=curve)
    command_curve = (operator_curves(operator_key, curve, list(urls))
                     if operator_key is not None else None)
    if previews_per_board is None:
        previews_per_board = DEFAULT_LIMIT
    if previews_per_board < 1:
        raise ConfigError(f"--previews-per-board {previews_per_board}: must be at least 1")

    from camctl.ground.extra import require_ground

    require_ground("camctl mission", ["aiohttp"])  # the server library is in the 'ground' extra
    from camctl.ground.mission.server import MissionServer
    from camctl.ground.mission.session import Mission

    out = Path(out) if out is not None else Path("mission-out") / time.strftime("%Y%m%d-%H%M%S")
    mission = Mission(urls, out, operator=operator, limits=limits, curve=curve,
                      command_curve=command_curve, command_timeout_s=command_timeout_s,
                      previews_per_board=previews_per_board)
    server = MissionServer(mission, host=host, port=port, token=token)
    try:
        server.start()
    except BaseException:
        server.close()
        raise
    return server


def mission_main(args: Any) -> int:
    """``camctl mission``: serve until Ctrl-C or SIGTERM."""
    from camctl.ground.mission.checks import Limits

    limits = Limits(rate_tolerance=args.rate_tolerance, min_record_min=args.min_record_min,
                    max_clock_ms=args.max_clock_ms)
    server = serve(args.connect, Path(args.out) if args.out else None, host=args.host,
                   port=args.port, operator=args.operator, operator_key=args.operator_key,
                   limits=limits, curve=args.curve, command_timeout_s=args.timeout,
                   previews_per_board=args.previews_per_board)
    stop = threading.Event()
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
    print(f"mission page: {server.url}", flush=True)
    if server.token:
        print(f"access token (needed off this machine): {server.token}", flush=True)
    ops = "off"
    if args.operator_key:
        ops = f"ON (arm/disarm with the key {args.operator_key}; the boards check it)"
    elif args.operator:
        ops = "ON (arm/disarm; CURVE is off: the boards take COMMAND from anyone)"
    print(f"downloads and exports in {server.mission.out}; operator actions {ops}; Ctrl-C to stop",
          flush=True)
    try:
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        server.close()
    return 0
