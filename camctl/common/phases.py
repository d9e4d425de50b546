"""The phases every flight goes through and the events always there, as both sides name them.

The board's phase machine (:mod:`camctl.board.events`) and its config own the rules; the ground
reads the same names back from event logs, so they live here, where neither side has to import the
other.
"""

from __future__ import annotations

__all__ = ["ARMED", "DEFAULT_TRIGGERS", "FIXED_PHASES", "LANDED", "RESERVED_EVENTS", "SAFE",
           "TOUCHDOWN"]

SAFE, ARMED, TOUCHDOWN, LANDED = "SAFE", "ARMED", "TOUCHDOWN", "LANDED"
FIXED_PHASES = (SAFE, ARMED, TOUCHDOWN, LANDED)
# event -> descent phase it starts
DEFAULT_TRIGGERS = {"release": "DESCENT", "separation": "SEPARATION"}
RESERVED_EVENTS = ("arm", "disarm", "touchdown")
