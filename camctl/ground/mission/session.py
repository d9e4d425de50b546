"""One mission: the boards' watcher, go/no-go, downloads and exports, and who listens to them.

:class:`Mission` turns every board change into messages for the page (``board``, ``go``,
``download``, ``previews``, ``export``, ``command``; see ``static/app.js``) and hands them to each
listener. Operator commands are limited to arm and disarm, and only when the mission was started
with ``operator=True``: a descent event never comes from the page. They go with ``command_curve``
(the operator's key, one per board; see :mod:`camctl.ground.mission.access`) when CURVE is on; the
board's answer, a refusal with its code included, is sent to every page as a ``command`` message.

Example::

    m = Mission(["tcp://127.0.0.1:5555"], Path("drop-3"))
    m.listen(print); m.start(); ...; m.close()
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from camctl.common.lifecycle import Startable
from camctl.exc import ConfigError, RemoteError
from camctl.ground.command_result import COMMANDS_BY_PHASE, judge
from camctl.ground.mission import ground_link
from camctl.ground.mission.checks import FrameSizes, Limits, evaluate
from camctl.ground.mission.recovery import Recovery
from camctl.ground.mission.watcher import Watcher

__all__ = ["OPERATOR_COMMANDS", "Mission"]

OPERATOR_COMMANDS = ("arm", "disarm")


class Mission(Startable):
    """See the module docstring. ``close()`` is safe twice."""

    def __init__(self, urls: list[str], out: Path, *, operator: bool = False,
                 limits: Limits | None = None, curve: Any = None, command_curve: Any = None,
                 poll_s: float = 0.5, timeout_s: float = 1.0, command_timeout_s: float = 5.0,
                 retry_s: float = 10.0, previews_per_board: int = 24) -> None:
        if not urls:
            raise ConfigError("camctl mission needs at least one --connect URL")
        self.urls = list(urls)
        self.out = Path(out)
        self.operator = operator
        self.limits = limits or Limits()
        self.curve = curve
        self.command_curve = command_curve if command_curve is not None else curve
        # url -> the last command message (for a page that connects later)
        self.commands: dict[str, dict] = {}
        self.command_timeout_s = command_timeout_s
        self._listeners: list[Callable[[dict], None]] = []
        self._lock = threading.Lock()
        self.recovery = Recovery(self.out, emit=self._from_recovery, curve=curve, retry_s=retry_s,
                                 previews_per_board=previews_per_board)
        self.watcher = Watcher(self.urls, on_change=self._on_board, poll_s=poll_s,
                               timeout_s=timeout_s, curve=curve)
        # each camera's frame size by phase as recorded (the disk check's, where the board does
        # not report it)
        self.sizes = FrameSizes()
        self.go: dict = evaluate(self.watcher.snapshot(), self.limits, self.sizes)
        self._closed = False

    def __repr__(self) -> str:
        closed = " closed" if self._closed else ""
        return f"<Mission {len(self.urls)} boards out={str(self.out)!r}{closed}>"

    def start(self) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        self.watcher.start()

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self.watcher.close()
            self.recovery.close()

    def listen(self, fn: Callable[[dict], None]) -> Callable[[], None]:
        """Call ``fn(message)`` for every message from now on (from the mission's threads); returns
        an unsubscribe function."""
        with self._lock:
            self._listeners.append(fn)

        def stop() -> None:
            with self._lock:
                if fn in self._listeners:
                    self._listeners.remove(fn)
        return stop

    def snapshot(self) -> list[dict]:
        """The messages that bring a new page up to date."""
        boards = [{"type": "board", "view": v} for v in self.watcher.snapshot()]
        # which command can act in which phase: the page offers a button only there
        hello = {"type": "hello", "operator": self.operator, "urls": self.urls,
                 "commands_by_phase": {k: list(v) for k, v in COMMANDS_BY_PHASE.items()}}
        return [hello, *boards,
                {"type": "go", **self.go}, *self.recovery.messages(), *self.commands.values()]

    def command(self, url: str, name: str) -> dict:
        """An operator command to one board: arm/disarm, in operator mode only (else ConfigError).

        The board's DONE result, or its refusal (RemoteError with the board's code), is also sent to
        every page as ``{"type": "command", "url", "name", "ok", "code", "detail"}``; a DONE that
        changed nothing (``code`` IGNORED, with ``outcome``) or a disarm not saved (NOT_DURABLE) is
        not ``ok``, and its ``text`` says so in one line."""
        if not self.operator:
            raise ConfigError("operator actions are off (start camctl mission with --operator-key "
                              "FILE, or --operator for boards without CURVE)")
        if name not in OPERATOR_COMMANDS:
            raise ConfigError(f"command {name!r} is not allowed from the page "
                              f"(only {', '.join(OPERATOR_COMMANDS)})")
        if url not in self.urls:
            raise ConfigError(f"no such board URL in this mission: {url!r}")
        msg = {"type": "command", "url": url, "name": name, "ok": False, "code": "", "detail": ""}
        try:
            result = ground_link.command(url, name, curve=self.command_curve,
                                         timeout_s=self.command_timeout_s)
        except RemoteError as exc:
            # the board's own refusal: FORBIDDEN (not an operator key), REFUSED...
            msg.update(code=exc.code, detail=exc.message)
            raise
        except ground_link.LINK_ERRORS as exc:
            msg.update(code="NO_ANSWER", detail=str(exc))
            raise
        else:
            # only a change is done: an ignored command (changed: false, its outcome) or a disarm
            # the board could not save is shown as what it is (camctl.ground.command_result)
            verdict = judge(name, result)
            code = {"ok": "", "ignored": "IGNORED", "not_durable": "NOT_DURABLE"}[verdict.level]
            msg.update(ok=verdict.level == "ok", code=code, text=verdict.text,
                       outcome=str(result.get("outcome") or ""),
                       detail=f"phase {result.get('phase', '?')}")
            return result
        finally:
            with self._lock:
                self.commands[url] = msg
            self._emit(msg)

    def _emit(self, msg: dict) -> None:
        with self._lock:
            listeners = list(self._listeners)
        for fn in listeners:
            fn(msg)

    def _on_board(self, view: dict) -> None:
        self._emit({"type": "board", "view": view})
        self.sizes.update(view)
        views = self.watcher.snapshot()
        self._evaluate(views)
        self.recovery.update(views)

    def _from_recovery(self, msg: dict) -> None:
        """A download's end changes its board's verdict: the banner is evaluated again."""
        self._emit(msg)
        if msg.get("type") == "download" and msg.get("state") != "fetching":
            self._evaluate(self.watcher.snapshot())

    def _evaluate(self, views: list[dict]) -> None:
        go = evaluate(views, self.limits, self.sizes, self.recovery.download_states())
        with self._lock:
            changed = go != self.go
            self.go = go
        if changed:
            self._emit({"type": "go", **go})
