"""Operator commands (``camctl arm|disarm|event``, ``scene``) and the mock board's held line levels.

With the mock GPIO backend the lines' levels live in ``mock-lines.json`` beside the store, as the
wiring would hold them across a restart of the daemon: ``camctl arm --hold`` / ``camctl event NAME
--release`` (command arg ``line``: ``hold`` | ``release``) move a line and leave it there. A pulse
goes through the real gpiozero edge path, as if the line had toggled.

The arm line is a key, not a pulse (docs/phases-and-gpio.md, "The arm key": turned off in ARMED it
disarms). So on a board with an arm line an operator's ``arm`` needs the key on: with it on, the
command arms; with a mock key off, the command turns the key on and leaves it on (its edge arms);
with a real key off, it is refused (the board would disarm as soon as it armed). ``disarm`` moves
the machine only, never the key, and is answered once it is durable (``saved``: a restart after
the reply comes up SAFE).

``scene`` (args ``event``: ``release`` | ``separation`` | ``touchdown``) is the simulated world's,
not the board's: the event happens now in the sim sensors' drop
(:class:`camctl.board.sensors.scene.DropScene`) and its true moment is logged as a ``scene``
record; the board learns of it only by what its sensors feel. Refused on a board with no sim
sensor.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from pathlib import Path

from camctl.board.config import Config
from camctl.board.events import PhaseMachine
from camctl.board.gpio import EventLines
from camctl.exc import CommandRefused

__all__ = ["MOCK_LINES", "OperatorCommands", "read_mock_levels"]

log = logging.getLogger("camctl.board.daemon")
MOCK_LINES = "mock-lines.json"  # the mock board's line levels (True: active), kept across restarts


def read_mock_levels(store_dir: str | Path) -> dict[str, bool]:
    """The mock board's held line levels (``mock-lines.json`` beside the store); {} when none are
    held."""
    path = Path(store_dir) / MOCK_LINES
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        log.warning("ignoring %s: %s (mock lines start at rest)", path, exc)
        return {}
    return {str(k): bool(v) for k, v in data.items()} if isinstance(data, dict) else {}


class OperatorCommands:
    """What an operator may do to a board: move the phase machine, or (mock lines) a line.

    ``wait_open`` waits for a flight being opened: an operator's arm returns with the flight open
    (GPIO edges never wait)."""

    def __init__(self, cfg: Config, machine: PhaseMachine, lines: EventLines | None, *,
                 wait_open: Callable[[float], None],
                 wait_saved: Callable[[float], bool] | None = None,
                 scene: Callable[[str], int] | None = None,
                 edges: Callable[[], tuple[int, str, str]] | None = None) -> None:
        self.cfg = cfg
        self.root = Path(cfg.store.dir)
        self.machine = machine
        self.lines = lines
        self._wait_open = wait_open
        self._wait_saved = wait_saved
        self._scene = scene
        # the edges the trigger arbiter decided, the last one's event and outcome
        # (camctl.board.triggers): an edge it logs as a confirmation or as not a source leaves no
        # record in the machine
        self._edges = edges

    def command(self, name: str, args: dict) -> dict:
        """``arm``, ``disarm``, ``event`` (``args``: ``name``, ``line``) or ``scene`` (``args``:
        ``event``); the phase after it."""
        if name == "scene":
            return self._mark_scene(args.get("event"))
        if name in ("arm", "disarm"):
            event = name
        elif name == "event":
            event = args.get("name")
            if not isinstance(event, str) or not event:
                raise CommandRefused("event needs a name (e.g. release, touchdown)")
        else:
            raise CommandRefused(f"unknown command {name!r} (arm, disarm, event, scene)")
        if event not in self.machine.events:
            known = ", ".join(self.machine.events)
            raise CommandRefused(f"unknown event {event!r} (known: {known})")
        before = len(self.machine.history)
        lines = self.lines
        hold = args.get("line")
        if hold is not None:
            return self._hold_line(event, hold, before)
        edge: str | None = None  # what the arbiter made of a mock pulse's edge
        if event == "arm" and lines is not None and "arm" in lines.events:
            self._arm_by_key(lines)
        elif lines is not None and self.cfg.gpio.backend == "mock" and event in lines.events:
            self._forget_bounces(lines, event)
            n = self._edges_seen()
            lines.pulse(event)  # the real gpiozero edge path, as if the line had toggled
            self._wait_for_record(event, n)
            if (self.root / MOCK_LINES).exists():  # a pulse on a held line leaves it at rest
                self._save_mock_levels()
            edge = self._edge_outcome(event, n)
        else:
            self.machine.handle(event, source="operator")
        # an operator's arm returns with the flight open (GPIO edges never wait)
        self._wait_open(30)
        rec = self.machine.records[-1] if self.machine.records else None
        changed = len(self.machine.history) > before
        outcome = edge if edge is not None else rec.outcome if rec is not None else ""
        return self._saved({"phase": self.machine.phase, "event": event, "changed": changed,
                            "outcome": outcome})

    def _mark_scene(self, event: object) -> dict:
        from camctl.board.sensors.scene import SCENE_EVENTS

        if self._scene is None:
            raise CommandRefused("scene needs a sim sensor ([[sensors]] backend = \"sim\"): this "
                                 "board's sensors feel the real world")
        if not isinstance(event, str) or event not in SCENE_EVENTS:
            raise CommandRefused(f"scene needs an event ({', '.join(SCENE_EVENTS)}), "
                                 f"got {event!r}")
        t = self._scene(event)
        return {"phase": self.machine.phase, "event": event, "changed": False, "outcome": "scene",
                "scene_ns": t}

    def _saved(self, reply: dict) -> dict:
        """A disarm is answered once it is durable (``saved``): a restart after the reply comes
        up SAFE, never in the phase it left (LANDED, or ARMED with the key left on)."""
        if reply["event"] == "disarm" and reply["changed"] and self._wait_saved is not None:
            reply["saved"] = self._wait_saved(10)
        return reply

    def _arm_by_key(self, lines: EventLines) -> None:
        """``arm`` on a board with an arm line (the module docstring): arm with the key on, turn a
        mock key on, refuse with a real key off."""
        if lines.is_active("arm"):
            self.machine.handle("arm", source="operator")
            return
        if self.cfg.gpio.backend != "mock":
            pin = next(line.pin for line in self.cfg.gpio.lines if line.event == "arm")
            raise CommandRefused(f"the arm key is off (arm, BCM{pin}): this board is ARMED only "
                                 "while its arm key is on; turn the key on (that arms it)")
        self._forget_bounces(lines, "arm")  # a command, not a contact: never debounced
        n = self._edges_seen()
        lines.drive("arm", True)  # the key turned on, and left on: its edge arms
        self._wait_for_record("arm", n)
        if (self.root / MOCK_LINES).exists():  # held levels are kept: keep this one too
            self._save_mock_levels()

    def _hold_line(self, event: str, hold: object, before: int) -> dict:
        """Mock lines only: move the line and leave it there (an arm key turned on, a break-wire
        broken); the level is saved beside the store, where a restarted daemon finds it as wiring
        would hold it."""
        lines = self.lines
        if hold not in ("hold", "release"):
            raise CommandRefused(f"line must be 'hold' or 'release', not {hold!r}")
        if lines is None or self.cfg.gpio.backend != "mock":
            raise CommandRefused("holding a line needs [gpio] backend = \"mock\"; a real line is "
                                 "moved by its wiring")
        if event not in lines.events:
            names = ", ".join(lines.events)
            raise CommandRefused(f"no GPIO line for event {event!r} (lines: {names})")
        n = len(self.machine.records)
        self._forget_bounces(lines, event)
        reported = self._edges_seen()
        lines.drive(event, hold == "hold")
        self._save_mock_levels()
        if hold == "hold":
            self._wait_for_record(event, reported)
        rec = self.machine.records[-1] if len(self.machine.records) > n else None
        changed = len(self.machine.history) > before
        edge = self._edge_outcome(event, reported)
        outcome = edge if edge is not None else rec.outcome if rec is not None else ""
        return self._saved({"phase": self.machine.phase, "event": event, "changed": changed,
                            "outcome": outcome, "line": hold})

    def _forget_bounces(self, lines: EventLines, event: str) -> None:
        """A command that moves a mock line is a command, not a contact: neither debounce (the
        lines' min_pulse bursts, the phase machine's bounce window) takes its edge for a bounce of
        the line's earlier edges."""
        lines.forget_touches(event)
        self.machine.forget_edges(lines.label(event))

    def _save_mock_levels(self) -> None:
        from camctl.store.index import write_json_atomic

        if self.lines is None:
            return
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            write_json_atomic(self.root / MOCK_LINES, self.lines.levels())
        except OSError as exc:
            log.warning("cannot save the mock line levels: %s", exc)

    def _edges_seen(self) -> int:
        return self._edges()[0] if self._edges is not None else 0

    def _edge_outcome(self, event: str, before: int) -> str | None:
        """What the arbiter made of the edge of ``event`` after ``before`` edges (None: no word;
        the machine's last record says it)."""
        if self._edges is None:
            return None
        n, last, outcome = self._edges()
        return outcome if n > before and last == event else None

    def _wait_for_record(self, event: str, reported: int = 0) -> None:
        """Until the machine records ``event``, or the arbiter decides on an edge it keeps from
        the machine (``reported``: its count before the line moved)."""
        # with min_pulse_ms the edge is confirmed on a timer thread; wait for it (bounded)
        deadline = time.monotonic() + 1.0 + self.cfg.gpio.min_pulse_ms / 1000
        while time.monotonic() < deadline:
            recs = self.machine.records
            if recs and recs[-1].name == event:
                return
            if self._edges is not None and self._edges()[0] > reported:
                return
            time.sleep(0.001)
