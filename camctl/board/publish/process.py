"""The daemon's side of the publisher process: start it, feed it, answer it, restart it.

:class:`PublisherProcess` has the interface the daemon used of the in-process
:class:`~camctl.board.publish.server.Publisher` (``start``, ``publish``, ``reload_keys``, ``close``,
``router_endpoint``, ``pub_endpoint``), but the sockets live in a child process
(:mod:`camctl.board.publish.child`) with its own open-file limit, data-memory budget and a lower
CPU priority. Capture never waits for it: :meth:`PublisherProcess.publish` only appends to a bounded
queue, and one link thread does everything else — it sends the queued events and status snapshots,
answers the child's calls (operator commands; what is being written now), and restarts the child on
the same endpoints when it dies (a crash, an OOM, a kill), with a growing delay. The flight does not
notice.

Example::

    pub = PublisherProcess(daemon, cfg.publish, on_restart=lambda: ...)
    pub.start()                     # raises PublisherStartError when the child cannot bind
    pub.publish("phase", {...})
    pub.close()
"""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

from camctl.board.config import PublishConfig
from camctl.board.publish.link import Link, wait
from camctl.common.lifecycle import Startable
from camctl.common.logsetup import JsonFormatter
from camctl.exc import CamctlError, LinkClosed, ProtocolError, PublisherStartError

__all__ = ["PublisherProcess", "PublisherStartError"]

log = logging.getLogger("camctl.board.publish")

_QUEUE_MAX = 1024  # events waiting for the link; past it they are dropped and counted
_START_TIMEOUT_S = 30.0  # a Pi's first start imports zmq, the store reader and the thumbnailer
_STATE_EVERY_S = 1.0  # a status snapshot at least this often (and after every change of phase)
# how often the link thread looks at what may be served (the open segments, serving): a change is
# told to the child within a tick, before the child can list a file the daemon has just opened
_TICK_S = 0.02
_STOP_TIMEOUT_S = 10.0
_EXIT_GRACE_S = 3.0  # a child whose link closed, to exit by itself before it is killed
_RESTART_DELAYS_S = (0.5, 1.0, 2.0, 5.0, 10.0, 30.0)
_STABLE_S = 60.0  # a child up this long resets the restart delay
_NOFILE = 1024  # the publisher's own open-file limit; the capture process keeps its own
_NICE = 10  # previews and hashing yield to capture and encoding


class _Child:
    """One running publisher process and its end of the link."""

    def __init__(self, proc: subprocess.Popen, link: Link, ready: dict[str, Any]) -> None:
        self.proc = proc
        self.link = link
        self.ready = ready
        self.started = time.monotonic()


class PublisherProcess(Startable):
    """The board's publisher in a child process (see the module docstring).

    ``board`` is the daemon (the Board protocol of :mod:`camctl.board.publish.server`);
    ``on_restart`` is called on the link thread after a replacement child is serving (the daemon
    rewrites ``daemon.json`` with its pid).
    """

    def __init__(self, board: Any, config: PublishConfig, *,
                 on_restart: Callable[[], None] | None = None) -> None:
        self.board = board
        self.config = config
        self.on_restart = on_restart
        self.router_endpoint = ""
        self.pub_endpoint = ""
        self.restarts = 0
        self.dropped_events = 0
        self.stats: dict[str, Any] = {}
        self.last_exit = ""
        self._child: _Child | None = None
        self._launched: tuple[subprocess.Popen, Link] | None = None  # launch()ed, not bound
        self._events: collections.deque[tuple[str, Any]] = collections.deque()
        self._events_lock = threading.Lock()
        self._fresh = threading.Event()  # a status snapshot is owed (phase changed, command done)
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._closed = False
        self._served: tuple[bool, list[str]] | None = None  # as the child was last told
        self._failures = 0  # restarts in a row of a child that did not stay up _STABLE_S

    def __repr__(self) -> str:
        pid = self.pid or "-"
        return f"<PublisherProcess board={self.board.board!r} pid={pid} restarts={self.restarts}>"

    @property
    def pid(self) -> int | None:
        child = self._child
        return child.proc.pid if child is not None else None

    @property
    def limits(self) -> dict[str, int]:
        """The child's own limits: open files, the data memory the network may add (MB,
        ``publish.memory_mb``: RLIMIT_DATA is its idle size plus this), nice."""
        return {"nofile": _NOFILE, "data_mb": int(getattr(self.config, "memory_mb", 256)),
                "nice": _NICE}

    def info(self) -> dict[str, Any]:
        """For STATUS: the publisher process's pid, RSS (MB, as it last said), restarts."""
        child = self._child
        return {"pid": child.proc.pid if child else None,
                "rss_mb": self.stats.get("rss_mb"), "restarts": self.restarts,
                "memory_mb": self.limits["data_mb"],
                "dropped_events": self.dropped_events + int(self.stats.get("dropped_events", 0)),
                "last_exit": self.last_exit or None}

    # -- lifecycle -------------------------------------------------------------------------------
    def launch(self) -> None:
        """Start the child process now (it imports and sets its limits while the daemon gets
        ready) but serve nothing yet: :meth:`start` binds. Optional; :meth:`start` launches when
        this was not called."""
        if self._launched is None and self._thread is None and not self._closed:
            self._launched = self._launch(self.config.bind, self.config.events)

    def start(self) -> None:
        """Bind the child's sockets on ``config.bind``/``config.events`` and wait until it serves.
        PublisherStartError when it cannot."""
        if self._thread is not None or self._closed:
            raise CamctlError(f"publisher for {self.board.board!r} already started or closed")
        launched, self._launched = self._launched, None
        child = self._bind(*(launched or self._launch(self.config.bind, self.config.events)))
        self._child = child
        self.router_endpoint = child.ready["router"]
        self.pub_endpoint = child.ready["pub"]
        self._thread = threading.Thread(target=self._run, name=f"camctl-link-{self.board.board}",
                                        daemon=True)
        self._thread.start()
        log.info("board %s: publisher process %d serving on %s, events on %s (limits %s)",
                 self.board.board, child.proc.pid, self.router_endpoint, self.pub_endpoint,
                 child.ready.get("limits"))

    def _spawn(self, bind: str, events: str) -> _Child:
        return self._bind(*self._launch(bind, events))

    def _launch(self, bind: str, events: str) -> tuple[subprocess.Popen, Link]:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        env = dict(os.environ)
        # two malloc arenas: per-thread arenas would count against RLIMIT_DATA for nothing
        env.setdefault("MALLOC_ARENA_MAX", "2")
        try:
            proc = subprocess.Popen(
                [sys.executable, "-m", "camctl.board.publish.child", str(theirs.fileno())],
                pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL, env=env, close_fds=True)
        finally:
            theirs.close()
        link = Link(ours.detach())
        with contextlib.suppress(LinkClosed):  # it died at once: _bind says how
            link.send(self._init_message(bind, events))
        return proc, link

    def _bind(self, proc: subprocess.Popen, link: Link) -> _Child:
        try:
            snapshot = self._snapshot()
        except Exception:  # a snapshot follows within a second; never fail a start on a status
            snapshot = {"status": {}, "serving": False, "open": []}
        try:
            link.send({"op": "bind", **snapshot})
            if not link.poll(_START_TIMEOUT_S):
                raise PublisherStartError(f"the publisher process did not start in "
                                          f"{_START_TIMEOUT_S:g} s")
            reply = link.recv()
            while reply.get("op") == "stats":
                reply = link.recv()
            if reply.get("op") != "ready":
                raise PublisherStartError(str(reply.get("error", reply)),
                                          str(reply.get("kind", "process")))
        except PublisherStartError:
            self._reap(proc, link)
            raise
        except LinkClosed:
            self._reap(proc, link)
            raise PublisherStartError(f"the publisher process exited with "
                                      f"{_exit_text(proc.returncode)}") from None
        return _Child(proc, link, reply)

    def _init_message(self, bind: str, events: str) -> dict[str, Any]:
        root = logging.getLogger()
        json_lines = any(isinstance(h.formatter, JsonFormatter) for h in root.handlers)
        publish = {k: v for k, v in asdict(self.config).items() if k not in ("bind", "events")}
        return {"op": "init", "board": self.board.board,
                "board_id": str(getattr(self.board, "board_id", "") or ""),
                "store_root": str(self.board.store_root),
                "gpio_real": bool(getattr(self.board, "gpio_real", False)),
                "publish": publish, "bind": bind, "events": events, "limits": self.limits,
                "log": {"level": logging.getLevelName(root.getEffectiveLevel()).lower(),
                        "json": json_lines}}

    def publish(self, topic: str, body: dict) -> bool:
        """Queue a PUB event for the child; never blocks. False when dropped (queue full)."""
        if self._closed:
            return False
        with self._events_lock:
            if len(self._events) >= _QUEUE_MAX:
                self.dropped_events += 1
                return False
            self._events.append((topic, body))
        if topic in ("phase", "event", "fault"):
            self._fresh.set()
        self._wake()
        return True

    def reload_keys(self) -> None:
        """Ask the child to re-read the CURVE allow-lists (the daemon's SIGHUP)."""
        self._send_soon("reload_keys")

    def _send_soon(self, topic: str) -> None:
        with self._events_lock:
            self._events.append((f"\0{topic}", None))
        self._wake()

    def _wake(self) -> None:
        with contextlib.suppress(BlockingIOError, OSError):
            os.write(self._wake_w, b"\x01")

    def close(self) -> None:
        """Tell the child to stop, wait for it (kill after a while), stop the link thread."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        self._wake()
        if self._thread is not None:
            self._thread.join(timeout=_STOP_TIMEOUT_S + 5)
        launched, self._launched = self._launched, None
        if launched is not None:
            with contextlib.suppress(LinkClosed):
                launched[1].send({"op": "stop"})
            self._reap(*launched)
        child, self._child = self._child, None
        if child is not None:
            with contextlib.suppress(LinkClosed):
                child.link.send({"op": "stop"})
            self._reap(child.proc, child.link)
        for fd in (self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):
                os.close(fd)

    @staticmethod
    def _reap(proc: subprocess.Popen, link: Link) -> None:
        try:
            proc.wait(timeout=_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            log.warning("publisher process %d did not stop in %g s: killed", proc.pid,
                        _STOP_TIMEOUT_S)
            proc.kill()
            proc.wait()
        link.close()

    # -- the link thread -------------------------------------------------------------------------
    def _run(self) -> None:
        next_state = 0.0
        while not self._stop.is_set():
            child = self._child
            if child is None or child.proc.poll() is not None:
                if not self._restart():
                    continue
                self._served = None
                next_state = 0.0
                continue
            ready = wait([child.link.conn, self._wake_r], timeout=_TICK_S)
            if self._wake_r in ready:
                with contextlib.suppress(BlockingIOError, OSError):
                    os.read(self._wake_r, 4096)
            try:
                if child.link.conn in ready:
                    self._read(child)
                self._send_events(child)
                now = time.monotonic()
                if self._fresh.is_set() or now >= next_state or self._serve_changed():
                    self._fresh.clear()
                    self._push_state(child)
                    next_state = now + _STATE_EVERY_S
            except LinkClosed:
                self._gone(child)

    def _serve_state(self) -> tuple[bool, list[str]]:
        return bool(self.board.serving()), sorted(str(p) for p in self.board.open_segments())

    def _serve_changed(self) -> bool:
        """True when what may be served changed since the child was last told (a flight opened or
        finished, a segment rotated, the check after boot moved on)."""
        try:
            return self._serve_state() != self._served
        except Exception:
            return False

    def _read(self, child: _Child) -> None:
        while child.link.poll(0):
            msg = child.link.recv()
            op = msg["op"]
            if op == "call":
                reply = self._call(msg)
                if msg.get("call") == "command":
                    self._push_state(child)  # the command's effect is in STATUS before DONE
                child.link.send(reply)
            elif op == "stats":
                self.stats = msg

    def _call(self, msg: dict[str, Any]) -> dict[str, Any]:
        rpc = msg.get("rpc")
        try:
            if msg.get("call") == "status":
                ok: Any = self._snapshot()
            elif msg.get("call") == "command":
                args = msg.get("args")
                ok = self.board.command(str(msg.get("name", "")),
                                        dict(args) if isinstance(args, dict) else {})
            else:
                raise RuntimeError(f"unknown call {msg.get('call')!r}")
        except ProtocolError as exc:
            return {"op": "reply", "rpc": rpc,
                    "error": {"kind": "protocol", "code": exc.code, "message": exc.message}}
        except CamctlError as exc:
            return {"op": "reply", "rpc": rpc, "error": {"kind": "refused", "message": str(exc)}}
        except Exception as exc:  # the board's own bug: the child answers INTERNAL
            log.exception("board %s: %s from the publisher failed", self.board.board,
                          msg.get("call"))
            return {"op": "reply", "rpc": rpc,
                    "error": {"kind": "internal", "message": f"{type(exc).__name__}: {exc}"}}
        return {"op": "reply", "rpc": rpc, "ok": ok}

    def _send_events(self, child: _Child) -> None:
        while True:
            with self._events_lock:
                if not self._events:
                    return
                topic, body = self._events.popleft()
            if topic.startswith("\0"):
                child.link.send({"op": topic[1:]})
            else:
                child.link.send({"op": "event", "topic": topic, "body": body})

    def _snapshot(self) -> dict[str, Any]:
        """The status and what may be served now, the latter read after the former: a STATUS the
        child answers (``checking`` done, ``serving``) is never ahead of what it serves. What may
        be served is remembered as what the child was last told."""
        status = self.board.status()
        serving, opened = self._served = self._serve_state()
        return {"status": status, "serving": serving, "open": opened}

    def _push_state(self, child: _Child) -> None:
        try:
            snapshot = self._snapshot()
        except Exception:
            log.exception("board %s: status for the publisher failed", self.board.board)
            return
        child.link.send({"op": "state", **snapshot})

    def _gone(self, child: _Child) -> None:
        """The link broke: make sure the child is gone too (the loop restarts it). A child that
        is stopping (SIGTERM) closes its link first: it gets a few seconds to exit on its own."""
        try:
            child.proc.wait(timeout=_EXIT_GRACE_S)
        except subprocess.TimeoutExpired:
            child.proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.proc.wait(timeout=_STOP_TIMEOUT_S)

    def _restart(self) -> bool:
        """Replace a dead child on the same endpoints, after a delay that grows while it keeps
        dying. False while waiting or when the start failed (the loop tries again)."""
        child = self._child
        if child is not None:
            code = child.proc.poll()
            if code is None:  # the link broke but the process lives: make it go
                self._gone(child)
                code = child.proc.returncode
            child.link.close()
            self.last_exit = _exit_text(code)
            stable = time.monotonic() - child.started >= _STABLE_S
            self._failures = 1 if stable else self._failures + 1
            self._child = None
            delay = _RESTART_DELAYS_S[min(self._failures - 1, len(_RESTART_DELAYS_S) - 1)]
            log.warning("board %s: the publisher process %d exited with %s; restarting it in "
                        "%g s (capture and the flight are not affected)", self.board.board,
                        child.proc.pid, self.last_exit, delay)
            if self._stop.wait(delay):
                return False
        try:
            new = self._spawn(self.router_endpoint, self.pub_endpoint)
        except PublisherStartError as exc:
            self._failures = self._failures + 1
            delay = _RESTART_DELAYS_S[min(self._failures, len(_RESTART_DELAYS_S) - 1)]
            log.warning("board %s: the publisher process could not restart: %s; trying again in "
                        "%g s", self.board.board, exc, delay)
            self._stop.wait(delay)
            return False
        self._child = new
        self.restarts += 1
        log.warning("board %s: publisher process %d serving again on %s (restart %d)",
                    self.board.board, new.proc.pid, self.router_endpoint, self.restarts)
        if self.on_restart is not None:
            try:
                self.on_restart()
            except Exception:
                log.exception("board %s: after the publisher's restart", self.board.board)
        return True


def _exit_text(code: int | None) -> str:
    if code is None:
        return "no exit status"
    if code < 0:
        try:
            return f"signal {signal.Signals(-code).name}"
        except ValueError:
            return f"signal {-code}"
    return f"exit code {code}"
