"""What one torture seed does: a board, a flight script and the disruptions, all from the seed.

:func:`plan_for` turns a seed into a :class:`Plan` with :class:`random.Random` only, so a seed names
the same run on every machine: 1-3 sim cameras at small sizes with sim faults (``hang``,
``exception``, ``stall``, ``disconnect``) at random times, how long each phase lasts, which events
are pulses and which held lines, and the kill -9s (each in one stage: ARMED, a descent phase,
TOUCHDOWN, LANDED's finish, right after a disarm), each followed by a plain restart or a reboot (a
fresh monotonic clock and boot id, :mod:`camctl.testing.reboot`). :func:`board_toml` writes the
board's config. :mod:`camctl.testing.torture` flies it.

Example::

    >>> plan = plan_for(7)
    >>> plan == plan_for(7) and plan.seed == 7
    True
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

__all__ = ["CAMERA_NAMES", "STAGES", "CameraPlan", "Fault", "Kill", "Plan", "board_toml",
           "plan_for"]

CAMERA_NAMES = ("down", "up", "side")
# where a kill -9 may land, in flight order; LANDED is "during LANDED's finish", DISARM "right
# after a disarm was acknowledged"
STAGES = ("ARMED", "DESCENT", "SEPARATION", "TOUCHDOWN", "LANDED", "DISARM")
_SIZES = ((160, 120), (192, 144), (240, 160))


@dataclass(frozen=True)
class Fault:
    """One sim fault: ``kind`` at ``at_s`` after the camera object's first open, ``duration_s``."""

    kind: str
    at_s: float
    duration_s: float


@dataclass(frozen=True)
class CameraPlan:
    name: str
    size: tuple[int, int]
    fps: dict[str, float]
    pretrigger_s: float
    seed: int
    stills: tuple[str, ...] = ()
    faults: tuple[Fault, ...] = ()


@dataclass(frozen=True)
class Kill:
    """kill -9 ``after_s`` into ``stage``, then a ``restart`` (``"plain"`` or ``"reboot"``; a
    reboot's monotonic clock starts near ``uptime_s``)."""

    stage: str
    after_s: float
    restart: str = "plain"
    uptime_s: float = 4.0


@dataclass(frozen=True)
class Plan:
    """One seed's board, flight script and disruptions (see the module doc)."""

    seed: int
    cameras: tuple[CameraPlan, ...]
    commit_interval_ms: int = 100
    segment_mb: float = 0.5
    post_touchdown_s: float = 2.0
    # seconds in each stage before the next event (0 for SEPARATION: no separation event)
    dwell_s: dict[str, float] = field(default_factory=dict)
    held: tuple[str, ...] = ()  # events given as held lines (the rest are pulses)
    disarm: bool = False  # disarm once LANDED and serving
    kills: tuple[Kill, ...] = ()

    @property
    def separation(self) -> bool:
        return self.dwell_s.get("SEPARATION", 0.0) > 0

    def kill_in(self, stage: str) -> Kill | None:
        return next((k for k in self.kills if k.stage == stage), None)

    def expected_phases(self) -> list[str]:
        """The phases the flight's log must show, in order (a disarm after LANDED is kept beside
        the store, not in the landed flight's finished log)."""
        return ["ARMED", "DESCENT", *(["SEPARATION"] if self.separation else []), "TOUCHDOWN",
                "LANDED"]

    def faults(self) -> list[tuple[str, str]]:
        return [(c.name, f.kind) for c in self.cameras for f in c.faults]

    def describe(self) -> str:
        """One line: cameras, faults, kills."""
        cams = ",".join(f"{c.name}{c.size[0]}x{c.size[1]}" for c in self.cameras)
        faults = ",".join(f"{c}:{k}" for c, k in self.faults()) or "none"
        kills = ",".join(f"{k.stage}+{k.after_s:.2f}s/{k.restart}" for k in self.kills) or "none"
        return f"cameras={cams} faults={faults} kills={kills}"


def _fault(rng: random.Random) -> Fault:
    kind = rng.choice(("hang", "exception", "stall", "disconnect"))
    at_s = round(rng.uniform(0.5, 7.0), 2)  # from each camera object's first open
    duration = {"hang": rng.uniform(1.0, 7.0), "stall": rng.uniform(0.3, 3.0),
                "disconnect": rng.uniform(0.3, 3.0), "exception": 0.0}[kind]
    return Fault(kind, at_s, round(duration, 2))


def plan_for(seed: int) -> Plan:
    """The plan of ``seed`` (deterministic: :class:`random.Random` seeded with it)."""
    rng = random.Random(seed)
    cameras = []
    for i, name in enumerate(CAMERA_NAMES[:rng.randint(1, 3)]):
        armed = rng.choice((4, 5, 8))
        fps = {"ARMED": armed, "DESCENT": rng.choice((8, 10, 12)),
               "SEPARATION": rng.choice((8, 12, 15)), "TOUCHDOWN": rng.choice((5, 8, 10))}
        stills = ("touchdown",) if name == "down" and rng.random() < 0.3 else ()
        faults = tuple(sorted((_fault(rng) for _ in range(rng.choice((0, 1, 1, 2)))),
                              key=lambda f: f.at_s))
        cameras.append(CameraPlan(name, rng.choice(_SIZES), fps,
                                  round(rng.uniform(1.0, 2.0), 2), 100 + 7 * seed + i,
                                  stills, faults))
    post_td = round(rng.uniform(1.5, 3.0), 2)
    dwell = {"ARMED": round(rng.uniform(1.5, 3.5), 2), "DESCENT": round(rng.uniform(2.0, 5.0), 2),
             "SEPARATION": round(rng.uniform(2.0, 4.0), 2) if rng.random() < 0.6 else 0.0,
             "TOUCHDOWN": post_td}
    held = tuple(e for e in ("release", "separation", "touchdown") if rng.random() < 0.4)
    disarm = rng.random() < 0.4
    kills = []
    for stage in STAGES:
        if stage == "SEPARATION" and not dwell["SEPARATION"]:
            continue
        if stage == "DISARM" and not disarm:
            continue
        if rng.random() >= 0.45:
            continue
        if stage == "LANDED":
            after = rng.uniform(0.0, 0.2)
        elif stage == "DISARM":  # half of them at once: the reply must come after the save
            after = max(0.0, rng.uniform(-0.02, 0.02))
        else:
            after = rng.uniform(0.15, 0.85) * dwell[stage]
        restart = "reboot" if rng.random() < 0.4 else "plain"
        kills.append(Kill(stage, round(after, 3), restart, round(rng.uniform(2.0, 9.0), 1)))
    if not kills:  # every seed kills at least once
        stage = rng.choice(("ARMED", "DESCENT", "TOUCHDOWN"))
        kills.append(Kill(stage, round(rng.uniform(0.2, 0.8) * dwell[stage], 3),
                          rng.choice(("plain", "reboot")), round(rng.uniform(2.0, 9.0), 1)))
    return Plan(seed=seed, cameras=tuple(cameras),
                commit_interval_ms=rng.choice((50, 100, 200)),
                segment_mb=rng.choice((0.1, 0.3, 1.0)), post_touchdown_s=post_td, dwell_s=dwell,
                held=held, disarm=disarm, kills=tuple(sorted(kills,
                                                             key=lambda k: STAGES.index(k.stage))))


def board_toml(plan: Plan, *, board: str, store: str) -> str:
    """The board's ``rig.toml`` for ``plan``: mock GPIO lines, sim cameras, loopback ports."""
    lines = [f'board = "{board}"', "", "[store]", f'dir = "{store}"',
             f"commit_interval_ms = {plan.commit_interval_ms}", f"segment_mb = {plan.segment_mb}",
             "reserve_mb = 1", "", "[gpio]", 'backend = "mock"', "bounce_ms = 5", "",
             "[gpio.events]", "arm = 17", "release = 27", "separation = 22", "touchdown = 23", "",
             "[phases]", f"post_touchdown_s = {plan.post_touchdown_s}",
             "descent_timeout_s = 300", "", "[encode]", "threads = 1", ""]
    for cam in plan.cameras:
        lines += ["[[cameras]]", f'name = "{cam.name}"', f'role = "{cam.name}"',
                  'backend = "sim"', f"size = [{cam.size[0]}, {cam.size[1]}]",
                  "jpeg_quality = 80", f"pretrigger_s = {cam.pretrigger_s}", f"seed = {cam.seed}",
                  "stills = [" + ", ".join(f'"{s}"' for s in cam.stills) + "]",
                  "sim_descent_s = 20", ""]
        for f in cam.faults:
            lines += ["[[cameras.faults]]", f'kind = "{f.kind}"', f"at_s = {f.at_s}",
                      f"duration_s = {f.duration_s}", ""]
        lines += ["[cameras.fps]", *(f"{ph} = {v}" for ph, v in cam.fps.items()), ""]
    lines += ["[publish]", 'bind = "tcp://127.0.0.1:*"', 'events = "tcp://127.0.0.1:*"', ""]
    return "\n".join(lines)
