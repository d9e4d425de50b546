"""What an operator command's reply means, said the same way by ``camctl arm|disarm|event`` and the
mission page, and which commands can act in which phase.

The board answers every COMMAND it accepted with ``{"phase", "event", "changed", "outcome"}``
(:mod:`camctl.board.commands`); ``changed: false`` with an ``outcome`` is a command the phase
machine ignored (its rule table, :meth:`camctl.board.events.PhaseMachine._rule`: ``in_flight``,
``duplicate``, ``not_armed``, ``out_of_order``, ``bounce``). A disarm that changed the phase also
says ``saved``: False when the board could not make it durable (a restart may come up in the phase
it left). Neither is success, and neither is shown as one.

Example::

    >>> judge("disarm", {"phase": "DESCENT", "changed": False, "outcome": "in_flight"})
    Judged(level='ignored', text='disarm ignored: in flight (phase DESCENT)')
    >>> offered("SAFE"), offered("ARMED"), offered("DESCENT")
    (('arm',), ('disarm',), ())
"""

from __future__ import annotations

from typing import Any, NamedTuple

from camctl.common.phases import ARMED, LANDED, SAFE

__all__ = ["COMMANDS_BY_PHASE", "OUTCOMES", "Judged", "judge", "offered"]

# the phase machine's rules (camctl.board.events.PhaseMachine._rule): arm acts only in SAFE,
# disarm only in ARMED and LANDED; in every other phase the board records it and changes nothing
COMMANDS_BY_PHASE: dict[str, tuple[str, ...]] = {SAFE: ("arm",), ARMED: ("disarm",),
                                                 LANDED: ("disarm",)}
# the machine's outcome codes, as a person reads them
OUTCOMES = {"in_flight": "in flight", "duplicate": "already done", "not_armed": "not armed",
            "out_of_order": "out of order", "bounce": "taken for a contact bounce",
            "unknown_event": "unknown event"}


class Judged(NamedTuple):
    """``level``: ``ok``, ``ignored`` (the board changed nothing) or ``not_durable`` (a disarm the
    board could not save); ``text``: one line for a person."""

    level: str
    text: str


def offered(phase: str | None) -> tuple[str, ...]:
    """The operator commands (arm, disarm) that can act on a board in ``phase``."""
    return COMMANDS_BY_PHASE.get(phase or "", ())


def judge(name: str, reply: dict[str, Any]) -> Judged:
    """What the board's reply to command ``name`` (``arm``, ``disarm``, ``event release``...)
    says. Only ``changed: true`` is done; a line moved to rest (``--release``, no event) is done
    too."""
    phase = reply.get("phase", "?")
    outcome = str(reply.get("outcome") or "")
    if reply.get("changed") is not True:
        if reply.get("line") == "release" and not outcome:
            return Judged("ok", f"{name}: line released, phase {phase}")
        why = OUTCOMES.get(outcome, outcome.replace("_", " ") or "no effect")
        return Judged("ignored", f"{name} ignored: {why} (phase {phase})")
    if reply.get("event") == "disarm" and reply.get("saved") is False:
        return Judged("not_durable", f"{name} not durable: phase {phase} but not saved "
                                     "(a restart may come up in the phase it left)")
    return Judged("ok", f"{name}: done, phase {phase}")
