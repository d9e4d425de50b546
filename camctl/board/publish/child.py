"""The publisher process: the board's network side (ROUTER, PUB, previews, catalog) away from
capture.

The daemon starts it (:mod:`camctl.board.publish.process`) as ``python -m
camctl.board.publish.child FD``, FD one end of a Unix socket pair
(:mod:`camctl.board.publish.link`).
It first lowers its own limits (open files, data memory, CPU priority) so that whatever the network
does to it (a thousand idle connections, an unfinished multipart message that libzmq holds whole, a
flood of previews) it meets its own limits, never the capture process's; then it serves the store's
files with the ordinary :class:`~camctl.board.publish.server.Publisher` over a :class:`RemoteBoard`,
which answers the Board protocol from what the daemon pushes (its status, and what is being written
now, told within milliseconds of a change) and asks the daemon over the link only to run operator
commands. It exits when the
link closes: a daemon killed with -9 takes its publisher with it.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import resource
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

from camctl.board.publish.link import Link
from camctl.board.publish.memory import rss_bytes
from camctl.exc import CamctlError, CommandRefused, LinkClosed, ProtocolError

__all__ = ["RemoteBoard", "apply_limits", "main"]

log = logging.getLogger("camctl.board.publish.child")

COMMAND_TIMEOUT_S = 60.0  # an arm waits for the flight's files to open
STATUS_FRESH_S = 0.1  # a STATUS is answered from a snapshot at most this old
_STATUS_TIMEOUT_S = 2.0
_STATS_EVERY_S = 1.0


def apply_limits(*, nofile: int, nice: int, oom_score_adj: int = 1000) -> dict[str, Any]:
    """Lower this process's own limits: open files (RLIMIT_NOFILE, soft and hard), CPU priority
    and the OOM killer's preference. Returns what was set. (The memory limit comes once the
    publisher is up: :func:`limit_data`.)"""
    done: dict[str, Any] = {}
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = nofile if hard == resource.RLIM_INFINITY else min(nofile, hard)
    resource.setrlimit(resource.RLIMIT_NOFILE, (want, want))
    done["nofile"] = want
    if nice:
        done["nice"] = os.nice(nice)
    # first to go when memory runs out, whatever the daemon's own score (the unit's
    # OOMScoreAdjust=-500 is inherited); raising one's own score needs no privilege
    # (Documentation/filesystems/proc.rst, "oom_score_adj")
    try:
        with open("/proc/self/oom_score_adj", "w") as f:
            f.write(str(oom_score_adj))
        done["oom_score_adj"] = oom_score_adj
    except OSError:
        pass
    return done


def data_bytes() -> int:
    """This process's data size now (``/proc/self/statm``, sixth field: heap, private writable
    mappings, thread stacks; what RLIMIT_DATA counts), bytes; 0 when unknown."""
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[5]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def limit_data(budget_mb: int) -> int:
    """Cap this process's data memory (RLIMIT_DATA: heap and private writable mappings, Linux >=
    4.7) at what it uses now, idle and serving, plus ``publish.memory_mb``: the budget is what the
    network may add (the publisher's watchdog resets its sockets at 70% of it; past all of it an
    allocation fails and the process dies, to be restarted). Returns the limit in MB."""
    limit = data_bytes() + (budget_mb << 20)
    _, hard = resource.getrlimit(resource.RLIMIT_DATA)
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))
    return limit >> 20


class RemoteBoard:
    """The daemon as the publisher process sees it: the Board protocol of
    :class:`camctl.board.publish.server.Board` over the link."""

    def __init__(self, link: Link, init: dict[str, Any]) -> None:
        self._link = link
        self.board: str = init["board"]
        self.board_id: str = init.get("board_id", "")
        self.store_root = Path(init["store_root"])
        self.gpio_real: bool = bool(init.get("gpio_real", False))
        self._status: dict[str, Any] = dict(init.get("status") or {})
        self._status_at = time.monotonic_ns()
        self._status_lock = threading.Lock()
        self._serving = bool(init.get("serving", False))
        self._open: frozenset[Path] = frozenset(Path(x) for x in init.get("open", ()))
        self._rpc = itertools.count(1)
        self._pending: dict[int, list[Any]] = {}  # rpc -> [Event, reply]
        self._pending_lock = threading.Lock()
        self.closed = threading.Event()

    # -- pushed by the daemon ------------------------------------------------------------------
    def update(self, status: dict[str, Any], serve: dict[str, Any] | None = None) -> None:
        """A new status snapshot; with ``serve`` (``serving``, ``open``), what may be served."""
        if serve is not None:
            self._open = frozenset(Path(x) for x in serve.get("open") or ())
            self._serving = bool(serve.get("serving"))
        self._status = status
        self._status_at = time.monotonic_ns()

    def resolve(self, msg: dict[str, Any]) -> None:
        with self._pending_lock:
            slot = self._pending.pop(int(msg.get("rpc", -1)), None)
        if slot is not None:
            slot[1] = msg
            slot[0].set()

    def fail_all(self) -> None:
        self.closed.set()
        with self._pending_lock:
            slots, self._pending = list(self._pending.values()), {}
        for slot in slots:
            slot[0].set()

    # -- the Board protocol ----------------------------------------------------------------------
    def status(self) -> dict:
        """The daemon's status, at most :data:`STATUS_FRESH_S` old (asked anew when older: a STATUS
        flood costs the capture process at most a few status reads a second). ``mono_ns`` and
        ``wall_ns`` are sampled now, as a clock sample must be (the ground aligns clocks with
        them); ``status_mono_ns`` says when the counters were read."""
        now = time.monotonic_ns()
        if (now - self._status_at) / 1e9 > STATUS_FRESH_S and not self.closed.is_set():
            with self._status_lock:  # one asks, the others take its answer
                if (time.monotonic_ns() - self._status_at) / 1e9 > STATUS_FRESH_S:
                    try:
                        got = self._call("status", {}, _STATUS_TIMEOUT_S)
                        self.update(got["status"], got)
                    except (CamctlError, RuntimeError) as exc:
                        log.warning("board %s: STATUS from a snapshot %.1f s old: %s",
                                    self.board, (time.monotonic_ns() - self._status_at) / 1e9,
                                    exc)
        st = dict(self._status)
        st["status_mono_ns"] = st.get("mono_ns")
        st["mono_ns"], st["wall_ns"] = time.monotonic_ns(), time.time_ns()
        return st

    def serving(self) -> bool:
        return self._serving

    def open_segments(self) -> set[Path]:
        """The files being written now (never served), as the daemon last said: it says so within
        a few milliseconds of a change (camctl.board.publish.process)."""
        return set(self._open)

    def command(self, name: str, args: dict) -> dict:
        return self._call("command", {"name": name, "args": args}, COMMAND_TIMEOUT_S)

    def _call(self, call: str, body: dict[str, Any], timeout: float) -> Any:
        if self.closed.is_set():
            raise CamctlError("the daemon is gone")
        rpc = next(self._rpc)
        slot: list[Any] = [threading.Event(), None]
        with self._pending_lock:
            self._pending[rpc] = slot
        try:
            self._link.send({"op": "call", "rpc": rpc, "call": call, **body})
        except LinkClosed:
            self.fail_all()
        if not slot[0].wait(timeout):
            with self._pending_lock:
                self._pending.pop(rpc, None)
            raise CamctlError(f"the daemon did not answer {call} in {timeout:g} s")
        reply = slot[1]
        if reply is None:
            raise CamctlError("the daemon is gone")
        err = reply.get("error")
        if err:
            kind, message = err.get("kind"), str(err.get("message", ""))
            if kind == "protocol":
                raise ProtocolError(str(err.get("code", "INTERNAL")), message)
            if kind == "refused":
                raise CommandRefused(message)
            raise RuntimeError(message)
        return reply.get("ok")


def _stats(pub: Any) -> dict[str, Any]:
    return {"op": "stats", "pid": os.getpid(), "rss_mb": round(rss_bytes() / 1e6, 1),
            "requests": pub.requests, "errors": pub.errors, "dropped_events": pub.dropped_events}


def serve(link: Link) -> int:
    """Run the publisher process on ``link`` until the daemon says stop or goes away."""
    from camctl.board.config import PublishConfig
    from camctl.board.publish.server import Publisher

    init = link.recv()
    if init.get("op") != "init":
        return 2
    logcfg = init.get("log") or {}
    from camctl.common.logsetup import setup_logging

    setup_logging(str(logcfg.get("level", "info")), json_lines=bool(logcfg.get("json")))
    limits = init.get("limits") or {}
    try:
        applied = apply_limits(nofile=int(limits.get("nofile", 1024)),
                               nice=int(limits.get("nice", 0)))
    except (OSError, ValueError) as exc:
        link.send({"op": "failed", "error": f"cannot set the publisher's limits: {exc}"})
        return 1
    board = RemoteBoard(link, init)
    cfg = PublishConfig(**{**init["publish"], "bind": init["bind"], "events": init["events"]})
    pub = Publisher(board, cfg)
    # the daemon starts this process early, while it recovers its store and checks its cameras,
    # and says "bind" once it can answer for itself: no client is served before
    go = link.recv()
    if go.get("op") != "bind":
        return 0 if go.get("op") == "stop" else 2
    board.update(go.get("status") or {}, go)
    try:
        pub.start()
    except Exception as exc:  # bind failed (address in use, bad interface), bad CURVE keys
        link.send({"op": "failed", "error": str(exc) or type(exc).__name__,
                   "kind": "config" if isinstance(exc, CamctlError) else "bind"})
        return 1
    if int(limits.get("data_mb", 0)) > 0:
        applied["data_mb"] = limit_data(int(limits["data_mb"]))
    link.send({"op": "ready", "router": pub.router_endpoint, "pub": pub.pub_endpoint,
               "pid": os.getpid(), "limits": applied})
    try:
        _loop(link, board, pub)
    finally:
        board.fail_all()
        pub.close()
    return 0


_TERM = threading.Event()  # SIGTERM: stop serving and exit (the daemon restarts it if it lives)


def _loop(link: Link, board: RemoteBoard, pub: Any) -> None:
    next_stats = 0.0
    while not _TERM.is_set():
        now = time.monotonic()
        if now >= next_stats:
            with contextlib.suppress(LinkClosed):
                link.send(_stats(pub))
            next_stats = now + _STATS_EVERY_S
        if not link.poll(min(_STATS_EVERY_S, max(0.0, next_stats - time.monotonic()))):
            continue
        try:
            msg = link.recv()
        except LinkClosed:
            log.info("board %s: the daemon is gone; the publisher stops", board.board)
            return
        op = msg["op"]
        if op == "state":
            board.update(msg.get("status") or {}, msg)
        elif op == "event":
            pub.publish(str(msg.get("topic", "")), msg.get("body") or {})
            if msg.get("topic") == "status" and isinstance(msg.get("body"), dict):
                board.update(msg["body"])
        elif op == "reply":
            board.resolve(msg)
        elif op == "reload_keys":
            pub.reload_keys()
        elif op == "stop":
            return


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1 or not argv[0].isdigit():
        print("camctl: the publisher process is started by `camctl run`, not by hand",
              file=sys.stderr)
        return 2
    # The daemon owns shutdown: it says stop over the link, and its death closes the link. A ^C
    # in a terminal reaches the whole process group; the daemon handles it for both. A SIGTERM
    # (kill, or systemd's KillMode=control-group) ends this process within a second.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, lambda *_: _TERM.set())
    link = Link(int(argv[0]))
    try:
        return serve(link)
    except LinkClosed:
        return 0
    finally:
        link.close()


if __name__ == "__main__":
    sys.exit(main())
