"""The ``camctl`` console script: argument parsing, help with defaults, one-line errors, exit codes.

Each subcommand is a small function that imports what it needs (so ``camctl --help`` and ``camctl
config check`` stay fast and work without a camera stack). Every subcommand and flag has a help
text; ``--help`` shows each default. An error is one line on stderr, never a traceback for a user
mistake.

Exit codes, the same for every subcommand (:data:`EXIT_CODES`, :func:`exit_code_for`):

- **0** ok: the command did its job and found nothing wrong.
- **1** a problem found in the data: ``verify`` found damaged, repaired or lost frames (or frames
  lost earlier, recorded), or a download without every segment (``incomplete download``: segments
  not fetched, which the board still has; ``previews only``: a ``--thumbs-only`` download);
  ``fetch`` got a file whose checksum failed or a download that is incomplete; ``ls`` found a
  camera whose books do not balance (captured != stored + dropped + aged out, its segments all on
  the ground; books a download cannot check say "books not checked" and are not this);
  ``export`` found no frame to export; ``doctor`` found a failing check; ``demo`` lost a frame; a
  stored segment that cannot be read.
- **2** the command could not do its job: bad usage or arguments, a bad config, a path that cannot
  be used, a board that cannot be reached or refuses (connection, timeout, protocol error), a
  missing tool; ``verify``: a file beyond repair (its result says UNRECOVERABLE); an
  ``arm``/``disarm``/``event`` the board ignored (``changed: false``: in flight, already done, not
  armed...) or a disarm it could not save (``saved: false``), with a one-line warning
  (:mod:`camctl.ground.command_result`).
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import sys
import threading
from pathlib import Path
from typing import Any

from camctl import __version__
from camctl.common.logsetup import setup_logging
from camctl.exc import CamctlError, ConfigError

__all__ = ["EXIT_CODES", "build_parser", "exit_code_for", "main"]

EXIT_OK, EXIT_DATA, EXIT_USAGE = 0, 1, 2
EXIT_CODES = {EXIT_OK: "ok", EXIT_DATA: "a problem found in the data",
              EXIT_USAGE: "usage, config or connection error"}

log = logging.getLogger("camctl")


# --- subcommands ----------------------------------------------------------------------------------
def cmd_config_check(args: argparse.Namespace) -> int:
    from camctl.board.config import load_config

    cfg = load_config(args.file)
    for warning in cfg.warnings:
        print(f"camctl: warning: {warning}", file=sys.stderr)
    cams = ", ".join(f"{c.name} ({c.role}, {c.backend}, {c.size[0]}x{c.size[1]})"
                     for c in cfg.cameras)
    print(f"{args.file}: ok: board {cfg.board}; phases {' -> '.join(cfg.phases.order)}; "
          f"cameras: {cams or 'none'}; gpio {cfg.gpio.backend} "
          f"({', '.join(f'{ln.event}=BCM{ln.pin}' for ln in cfg.gpio.lines) or 'no lines'})")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from camctl.board.config import load_config
    from camctl.board.daemon import Daemon, tune_malloc

    cfg = load_config(args.config)
    for warning in cfg.warnings:
        log.warning("config: %s", warning)
    tune_malloc()
    daemon = Daemon(cfg)
    try:
        daemon.run_forever()
    finally:
        daemon.close()
    return 0


_ENDPOINT = re.compile(r"^(tcp://([^\s:/\[\]]+|\[[0-9A-Fa-f:.]+\]):\d{1,5}"
                       r"|ipc://\S+|inproc://\S+)$")


def _endpoints(urls: list[str] | None) -> None:
    for url in urls or []:
        if not _ENDPOINT.match(url):
            raise ConfigError(f"--connect {url!r}: not a ZeroMQ endpoint "
                              "(expected tcp://HOST:PORT, e.g. tcp://rig-a.local:5555)")


def _client(url: str, args: argparse.Namespace):
    from camctl.ground import Client

    return Client(url, timeout_s=args.timeout, curve=_curve(args))


def _curve(args: argparse.Namespace):
    """None (CURVE off), or a ClientCurve per --connect URL (each board has its own server key)."""
    keys = getattr(args, "curve_keys", None)
    server_keys = getattr(args, "curve_server_key", None) or []
    if isinstance(server_keys, str):
        server_keys = [server_keys]
    if not keys and not server_keys:
        return None
    from camctl.common.keys import client_curves

    urls = args.connect if isinstance(args.connect, list) else [args.connect]
    return client_curves(keys, urls, server_keys)


def cmd_status(args: argparse.Namespace) -> int:
    from camctl.ground.views import status_many

    return status_many(args.connect, json_out=args.json, watch=args.watch, timeout_s=args.timeout,
                       curve=_curve(args))


def _add_line_hold(s: argparse.ArgumentParser) -> None:
    g = s.add_mutually_exclusive_group()
    g.add_argument("--hold", dest="line", action="store_const", const="hold",
                   help="mock GPIO: move the line to active and leave it there "
                        "(kept across a daemon restart)")
    g.add_argument("--release", dest="line", action="store_const", const="release",
                   help="mock GPIO: move a held line back to rest")


def cmd_command(args: argparse.Namespace) -> int:
    name = args.cmd
    extra: dict[str, str] = {"name": args.name} if name == "event" else {}
    if getattr(args, "line", None):
        extra["line"] = args.line
    with _client(args.connect, args) as client:
        reply = client.command(name, **extra)
    from camctl.common.protocol import printable
    from camctl.ground.command_result import judge

    what = f"{name} {args.name}" if name == "event" else name
    verdict = judge(what, reply)
    if verdict.level != "ok":  # ignored, or a disarm not saved: the command did not do its job
        print(f"camctl: warning: {args.connect}: {printable(verdict.text, 500)}", file=sys.stderr)
        return EXIT_USAGE
    print(f"{args.connect}: {what} -> {reply.get('phase', '?')}")
    return EXIT_OK


def cmd_fetch(args: argparse.Namespace) -> int:
    if args.first_look:
        from camctl.ground.firstlook import first_look_main

        return first_look_main(args, curve=_curve(args))
    from camctl.ground import fetch, print_report

    report = fetch(args.connect, Path(args.out), give_up_after_s=args.give_up_after,
                   thumbs_only=args.thumbs_only, progress=not args.quiet, curve=_curve(args),
                   flight=args.flight,
                   timeout_s=max(0.1, min(args.timeout, args.give_up_after)))
    print_report(report)
    if report.ok:
        return EXIT_OK
    # a board unreachable, refusing our key or refused (its name taken, no room): exit 2
    return EXIT_USAGE if any(b.unreachable or b.refused for b in report.boards) else EXIT_DATA


def cmd_ls(args: argparse.Namespace) -> int:
    from camctl.ground.views import ls_local, ls_remote

    if args.connect:
        return ls_remote(args.connect, json_out=args.json, timeout_s=args.timeout,
                         curve=_curve(args))
    if not args.dir:
        raise ConfigError("camctl ls needs a DIR or --connect URL")
    return ls_local(Path(args.dir), json_out=args.json)


def cmd_verify(args: argparse.Namespace) -> int:
    from camctl.store import render_report, verify

    path = Path(args.path)
    if not path.exists():
        raise ConfigError(f"no such file or directory: {path}")
    if args.quiet or args.json or not sys.stderr.isatty():
        report = verify(path, repair=args.repair)
    else:
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
        )

        segments = [path] if path.is_file() else sorted(path.rglob("*.mcap"))
        sizes = {p: p.stat().st_size for p in segments}
        with Progress(TextColumn("verify"), BarColumn(), DownloadColumn(), TimeRemainingColumn(),
                      transient=True) as bar:
            task = bar.add_task("verify", total=sum(sizes.values()))
            report = verify(path, repair=args.repair,
                            on_segment=lambda p: bar.advance(task, sizes.get(p, 0)))
    if not report.cameras and not report.events and not report.errors and not path.is_file():
        raise ConfigError(f"{path}: no flight found (expected <flight>/<camera>/*.mcap "
                          "in a board's store, or <board>/<flight>/... in a download)")
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        print(render_report(report, plain=not sys.stdout.isatty()), end="")
    # the exit code the report printed beside its result (one source: VerifyReport.status)
    return report.exit_code


def cmd_keys(args: argparse.Namespace) -> int:
    from camctl.common.keys import create_keys, ground_folder

    made = create_keys(Path(args.dir), boards=args.board or ["board"], clients=args.clients)
    for line in made:
        print(line)
    for board in args.board or ["board"]:
        print(f"copy {Path(args.dir) / board} to board {board} only (publish.curve_keys)")
    print(f"copy {Path(args.dir) / ground_folder(1)} to the ground station only (--curve-keys): "
          "reads and commands")
    for i in range(2, args.clients + 1):
        print(f"copy {Path(args.dir) / ground_folder(i)} to ground machine {i} only "
              "(--curve-keys): reads")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from camctl.demo import run_demo

    return run_demo(boards=args.boards, seconds=args.seconds,
                    out=Path(args.out) if args.out else None, quiet=args.quiet, keep=args.keep,
                    mission_port=args.mission_port if args.mission else None)


def cmd_mission(args: argparse.Namespace) -> int:
    from camctl.ground.mission import mission_main

    args.curve = _curve(args)
    return mission_main(args)


def cmd_export(args: argparse.Namespace) -> int:
    from camctl.ground.export import export_main

    return export_main(args)


def cmd_bench(args: argparse.Namespace) -> int:
    from camctl.bench import bench_main

    return bench_main(args)


def cmd_gpio_watch(args: argparse.Namespace) -> int:
    from camctl.board.config import load_config
    from camctl.board.daemon import running_daemon
    from camctl.board.gpio import watch
    from camctl.board.pin_env import env_pin_factory

    cfg = load_config(args.config)
    held = running_daemon(cfg.store.dir)
    if held is not None:
        print(f"camctl: error: gpio watch: the lines of {args.config} are held by camctl run "
              f"(pid {held.get('pid')}, board {held.get('board')}); "
              "stop it first (sudo systemctl stop camctl) or follow its events with "
              f"camctl status --watch --connect {held.get('router')}", file=sys.stderr)
        return 2
    print(f"watching {len(cfg.gpio.lines)} lines on {cfg.gpio.backend}; Ctrl-C to stop", flush=True)
    stop = threading.Event()
    factory = env_pin_factory(cfg.gpio)  # None: watch makes the config's own
    try:
        watch(cfg.gpio, stop=stop, out=lambda s: print(s, flush=True), pin_factory=factory)
    except KeyboardInterrupt:
        stop.set()
    finally:
        if factory is not None:
            factory.close()
    return 0


# --- parser ---------------------------------------------------------------------------------------
class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """``(default: X)`` after every option that has a value by default; not after on/off flags (off
    unless given), required options or options whose help says what happens without them."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None or action.nargs == 0 or action.required:
            return action.help
        return super()._get_help_string(action)


class _Parser(argparse.ArgumentParser):
    """Every camctl parser (and so every subcommand's: subparsers inherit the class) shows defaults
    in --help, and takes its description from its help line."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", _HelpFormatter)
        super().__init__(*args, **kwargs)
        self.register("action", "parsers", _SubParsers)


class _SubParsers(argparse._SubParsersAction):
    def add_parser(self, name: str, **kwargs: Any) -> argparse.ArgumentParser:
        kwargs.setdefault("description", kwargs.get("help"))
        return super().add_parser(name, **kwargs)


def _add_net(p: argparse.ArgumentParser, *, many: bool) -> None:
    if many:
        p.add_argument("--connect", action="append", required=True, metavar="URL",
                       help="a board's ROUTER endpoint, e.g. tcp://rig-a.local:5555 "
                            "(repeat for many boards)")
    else:
        p.add_argument("--connect", required=True, metavar="URL",
                       help="the board's ROUTER endpoint")
    p.add_argument("--timeout", type=float, default=5.0, metavar="S",
                   help="seconds to wait for a reply")
    p.add_argument("--curve-server-key", metavar="FILE", action="append" if many else "store",
                   help="the board's CURVE public key; with several --connect give it once per "
                        "board, in order (none: DIR/servers/<host>.key)")
    p.add_argument("--curve-keys", metavar="DIR",
                   help="the ground key folder made by 'camctl keys' (client.key_secret, servers/)")


def build_parser() -> argparse.ArgumentParser:
    """The ``camctl`` parser: global flags, then one ``_add_*`` function per subcommand group."""
    p = _Parser(prog="camctl", description="Best-effort EDL cameras for Raspberry Pi rigs.",
                epilog="exit codes: " + "; ".join(f"{k} {v}" for k, v in EXIT_CODES.items()))
    p.add_argument("--version", action="version", version=f"camctl {__version__}")
    p.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"),
                   help="lowest level of log lines written to stderr")
    p.add_argument("--log-json", action="store_true",
                   help="structured logs: one JSON object per line")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    for add in (_add_demo, _add_run, _add_status, _add_operator_commands, _add_fetch, _add_mission,
                _add_ls, _add_verify, _add_export, _add_keys, _add_bench, _add_tool_groups,
                _add_board_tools):
        add(sub)
    return p


# --- the subcommands' arguments, in the order --help lists them ---------------------------------
def _add_demo(sub: _SubParsers) -> None:
    s = sub.add_parser("demo", help="full simulated drop test on loopback, with report")
    s.add_argument("--boards", type=int, default=2, metavar="N", help="simulated boards to fly")
    s.add_argument("--seconds", type=float, default=6.0, metavar="S", help="length of the descent")
    s.add_argument("--out", metavar="DIR",
                   help="output folder (none: a new folder under ./demo-out)")
    s.add_argument("--keep", action="store_true", help="keep the boards' store folders")
    s.add_argument("--mission", action="store_true",
                   help="watch it on the mission page (its URL is printed)")
    s.add_argument("--mission-port", type=int, default=8080, metavar="P", help="the page's port")
    s.add_argument("--quiet", action="store_true", help="print only the final report")
    s.set_defaults(func=cmd_demo)


def _add_run(sub: _SubParsers) -> None:
    s = sub.add_parser("run", help="the board daemon (what systemd starts)")
    s.add_argument("--config", required=True, metavar="FILE", help="the board's TOML config")
    s.set_defaults(func=cmd_run)


def _add_status(sub: _SubParsers) -> None:
    s = sub.add_parser("status", help="phase, cameras, frames, disk, per board")
    _add_net(s, many=True)
    s.add_argument("--json", action="store_true",
                   help="JSON instead of tables (with --watch: one line per update)")
    s.add_argument("--watch", action="store_true",
                   help="refresh live from the boards' PUB sockets")
    s.set_defaults(func=cmd_status)


def _add_operator_commands(sub: _SubParsers) -> None:
    """arm, disarm, event: COMMANDs to one board."""
    for name, helptext in (("arm", "arm a board"), ("disarm", "disarm a board")):
        s = sub.add_parser(name, help=helptext)
        _add_net(s, many=False)
        s.set_defaults(func=cmd_command, cmd=name)
        if name == "arm":
            _add_line_hold(s)
    s = sub.add_parser("event", help="send a descent event to a board (bench and sim rigs)")
    s.add_argument("name", help="event name: release, separation, touchdown, ...")
    _add_net(s, many=False)
    _add_line_hold(s)
    s.set_defaults(func=cmd_command, cmd="event")


def _add_fetch(sub: _SubParsers) -> None:
    s = sub.add_parser("fetch", help="download every frame from one or many boards, resumably")
    _add_net(s, many=True)
    s.add_argument("--out", required=True, metavar="DIR",
                   help="download folder (<DIR>/<board>/<flight>/...)")
    s.add_argument("--thumbs-only", action="store_true",
                   help="fetch the previews and event logs only")
    s.add_argument("--first-look", action="store_true",
                   help="fetch the previews of every board, draw DIR/first-look.png and say how "
                        "long after touchdown it is ready")
    s.add_argument("--give-up-after", type=float, default=30.0, metavar="S",
                   help="seconds a board may stay unreachable before it is reported and skipped")
    s.add_argument("--flight", default="latest", metavar="latest|all|ID",
                   help="which flight to download from each board (latest: each board's newest)")
    s.add_argument("--quiet", action="store_true", help="no progress bars")
    s.set_defaults(func=cmd_fetch)


def _add_mission(sub: _SubParsers) -> None:
    s = sub.add_parser("mission",
                       help="the conductor's page: go/no-go, live phases, previews, videos")
    _add_net(s, many=True)
    s.add_argument("--out", metavar="DIR",
                   help="downloads and exports (none: a new folder under ./mission-out)")
    s.add_argument("--host", default="127.0.0.1",
                   help="address to serve on (any but loopback needs the access token printed at "
                        "start)")
    s.add_argument("--port", type=int, default=8080, help="HTTP port (0 = any free port)")
    s.add_argument("--operator-key", metavar="FILE",
                   help="the operator's CURVE secret key (e.g. DIR/client.key_secret; the boards "
                        "list its public key in operators/): arm/disarm buttons, with a "
                        "confirmation, never a descent event")
    s.add_argument("--operator", action="store_true",
                   help="arm/disarm buttons on boards WITHOUT CURVE (sim, bench: they take COMMAND "
                        "from anyone); with CURVE use --operator-key")
    s.add_argument("--previews-per-board", type=int, default=None, metavar="N",
                   help="previews shown per board (default 24: the first of each phase, the last, "
                        "evenly between; the page says how many are hidden)")
    s.add_argument("--min-record-min", type=float, default=10.0, metavar="MIN",
                   help="go needs disk room for this many minutes at the flight's schedule")
    s.add_argument("--max-clock-ms", type=float, default=50.0, metavar="MS",
                   help="go needs every board's clock within this of the others")
    s.add_argument("--rate-tolerance", type=float, default=0.2, metavar="F",
                   help="go needs each camera within this fraction of its scheduled rate")
    s.set_defaults(func=cmd_mission)


def _add_ls(sub: _SubParsers) -> None:
    s = sub.add_parser("ls", help="what is stored (DIR) or on a board (--connect)")
    s.add_argument("dir", nargs="?",
                   help="a board's store, a download, the demo's output: any folder")
    s.add_argument("--connect", action="append", metavar="URL",
                   help="a board's ROUTER endpoint (repeatable)")
    s.add_argument("--timeout", type=float, default=5.0, metavar="S",
                   help="seconds to wait for a reply")
    s.add_argument("--curve-server-key", metavar="FILE", action="append",
                   help="the board's CURVE public key, once per --connect in order (none: "
                        "DIR/servers/<host>.key)")
    s.add_argument("--curve-keys", metavar="DIR",
                   help="the ground key folder made by 'camctl keys'")
    s.add_argument("--json", action="store_true", help="JSON instead of tables")
    s.set_defaults(func=cmd_ls)


def _add_verify(sub: _SubParsers) -> None:
    s = sub.add_parser("verify", help="integrity check (and repair) of stored segments")
    s.add_argument("path", help="a segment, a flight, a board's store or a download")
    s.add_argument("--repair", action="store_true",
                   help="rewrite torn segments, keeping every complete chunk")
    s.add_argument("--json", action="store_true", help="the report as JSON")
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    s.set_defaults(func=cmd_verify)


def _add_export(sub: _SubParsers) -> None:
    s = sub.add_parser("export", help="MP4s, contact sheet, timeline, plain JPEGs, Foxglove files, "
                                      "sensor CSVs from a download; without a kind flag: --mp4 "
                                      "--contact-sheet --timeline")
    s.add_argument("dir", help="a download, a board's store or a flight folder")
    s.add_argument("--mp4", action="store_true",
                   help="one H.264 MP4 per board and camera, true timing")
    s.add_argument("--contact-sheet", action="store_true",
                   help="frames around every event, every camera")
    s.add_argument("--timeline", action="store_true",
                   help="frame rates of all boards on one axis (PNG, SVG)")
    s.add_argument("--frames", action="store_true",
                   help="every stored JPEG as a file (not part of the default: hundreds per "
                        "flight)")
    s.add_argument("--foxglove", action="store_true",
                   help="one MCAP of all boards (topics /<board>/...) and a Foxglove layout to "
                        "open it with (not part of the default: it copies the data)")
    s.add_argument("--csv", action="store_true",
                   help="each sensor's samples as OUT/<board>_<flight>_<sensor>.csv: t_s (from "
                        "release), t_ns (board monotonic), the fields, units in their names "
                        "(_mps2 m/s^2, _dps deg/s, _g, _pa, _c, _m); a flight without sensors "
                        "gets a note (not part of the default)")
    s.add_argument("--out", metavar="DIR", help="output folder (none: DIR/export)")
    s.add_argument("--quiet", action="store_true",
                   help="no progress bar (the summary lines, the frame count too, are printed)")
    s.set_defaults(func=cmd_export)


def _add_keys(sub: _SubParsers) -> None:
    s = sub.add_parser("keys", help="generate CURVE key pairs")
    s.add_argument("dir", help="folder for the key files")
    s.add_argument("--board", action="append", metavar="NAME",
                   help="make a key folder for this board (repeat for many; none: one folder "
                        "'board')")
    s.add_argument("--clients", type=int, default=1, metavar="N",
                   help="ground machines to make a key folder for: ground (an operator), then "
                        "ground-2... (readers)")
    s.set_defaults(func=cmd_keys)


def _add_bench(sub: _SubParsers) -> None:
    s = sub.add_parser("bench", help="the performance ratios")
    out = s.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="print the results as one JSON object")
    out.add_argument("--markdown", action="store_true",
                     help="print the README's performance table")
    s.add_argument("--quick", action="store_true",
                   help="smaller sizes, one repetition: a smoke run")
    s.add_argument("--only", action="append", metavar="NAME",
                   help="run only this benchmark (repeatable)")
    s.set_defaults(func=cmd_bench)


def _add_tool_groups(sub: _SubParsers) -> None:
    """``config check`` and ``gpio watch``: subcommands with actions of their own."""
    s = sub.add_parser("config", help="config tools")
    csub = s.add_subparsers(dest="config_command", metavar="ACTION")
    c = csub.add_parser("check", help="validate a config file")
    c.add_argument("file", help="the TOML config to check")
    c.set_defaults(func=cmd_config_check)

    s = sub.add_parser("gpio", help="GPIO tools")
    gsub = s.add_subparsers(dest="gpio_command", metavar="ACTION")
    g = gsub.add_parser("watch", help="print edges live, for wiring checks")
    g.add_argument("--config", required=True, metavar="FILE", help="the board's TOML config")
    g.set_defaults(func=cmd_gpio_watch)


def _add_board_tools(sub: _SubParsers) -> None:
    """doctor and install-service: their modules add their own arguments."""
    for modname, name, helptext in (
            ("camctl.board.doctor", "doctor", "check a board: cameras, GPIO, store, clock"),
            ("camctl.board.service", "install-service", "install the systemd unit")):
        s = sub.add_parser(name, help=helptext)
        try:
            mod = __import__(modname, fromlist=["add_arguments"])
        except ImportError:  # pragma: no cover - both ship with camctl
            continue
        mod.add_arguments(s)
        s.set_defaults(func=mod.main)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    setup_logging(args.log_level, json_lines=args.log_json, quiet=getattr(args, "quiet", False))
    try:
        connect = getattr(args, "connect", None)
        _endpoints([connect] if isinstance(connect, str) else connect)
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0
    except ImportError as exc:  # a ground library a command did not check for up front
        from camctl.ground.extra import INSTALL_HINT, ground_module_of

        module = ground_module_of(exc)
        if module is None:
            raise
        print(f"camctl: error: camctl {args.command} needs the ground extra ({INSTALL_HINT}): "
              f"cannot import {module}", file=sys.stderr)
        return EXIT_USAGE
    except (CamctlError, OSError) as exc:  # one line, never a traceback
        if isinstance(exc, OSError) and not isinstance(exc, CamctlError):
            where = f": {exc.filename}" if exc.filename else ""
            print(f"camctl: error: {exc.strerror or exc}{where}", file=sys.stderr)
        else:  # board text may be in it: no escape codes reach the terminal
            from camctl.common.protocol import printable

            print(f"camctl: error: {printable(exc, 2000)}", file=sys.stderr)
        return exit_code_for(exc)


def exit_code_for(exc: BaseException) -> int:
    """The exit code of a command that raised ``exc`` (the rule in this module's docstring): 1 for a
    stored segment that cannot be read (a problem in the data), 2 for everything else (usage,
    config, a path that cannot be used, a board unreachable, refusing or speaking nonsense)."""
    from camctl.exc import StoreCorruptError

    return EXIT_DATA if isinstance(exc, StoreCorruptError) else EXIT_USAGE


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
