"""The trigger arbiter: GPIO edges and IMU events, first wins, the other confirms (or not); the IMU
believed only where its event makes sense. An injected clock: no real time anywhere."""

from __future__ import annotations

from typing import Any, NamedTuple

import pytest

from camctl.board.config import PhasesConfig
from camctl.board.config_sensors import MotionConfig, MotionRule, SensorConfig
from camctl.board.events import PhaseMachine
from camctl.board.triggers import TriggerArbiter
from camctl.common.records import CheckRecord, ConfirmRecord, EventRecord, Record

MS = 1_000_000


class Ev(NamedTuple):  # the shape of camctl.board.sensors.motion.MotionEvent
    event: str
    t_ns: int
    detect: str = ""
    peak_g: float = 0.0
    decided_ns: int = 0


class BaroEv(NamedTuple):
    what: str
    t_ns: int
    rate_mps: float


class FakeDetector:
    """Returns what a test queued for the next feed; counts resets."""

    def __init__(self) -> None:
        self.next: list[Any] = []
        self.resets = 0
        self.fed = 0

    def feed(self, samples: Any) -> list[Any]:
        self.fed += len(samples)
        out, self.next = self.next, []
        return out

    def reset(self) -> None:
        self.resets += 1


def rules(**sources: tuple[str, ...]) -> MotionConfig:
    detect = {"release": "freefall", "separation": "shock", "touchdown": "impact"}
    return MotionConfig(rules=tuple(MotionRule(e, s, detect[e], 1.5, 0.0)
                                    for e, s in sources.items()), confirm_s=3.0)


class Rig:
    def __init__(self, motion: MotionConfig) -> None:
        self.now = 1_000 * MS
        self.records: list[Record] = []
        self.machine = PhaseMachine(PhasesConfig(), clock_ns=lambda: self.now,
                                    wall_ns=lambda: 0, on_record=self.records.append,
                                    on_transition=self._on_transition)
        self.imu_det, self.baro_det = FakeDetector(), FakeDetector()
        sensors = (SensorConfig("imu", "imu", "sim"), SensorConfig("baro", "baro", "sim"))
        dets = iter([self.imu_det])
        self.arb = TriggerArbiter(self.machine, motion, sensors=sensors,
                                  on_record=self.records.append, clock_ns=lambda: self.now,
                                  wall_ns=lambda: 0, detector=lambda: next(dets),
                                  baro_check=lambda: self.baro_det)

    def _on_transition(self, tr: Any) -> None:
        if tr.phase_to == "ARMED":
            self.arb.armed()

    def arm(self) -> None:
        self.machine.handle("arm", source="operator")

    def imu(self, event: str, t_ns: int) -> None:
        self.imu_det.next = [Ev(event, t_ns)]
        self.arb.samples("imu", [(t_ns, ())])

    def confirms(self) -> list[ConfirmRecord]:
        return [r for r in self.records if isinstance(r, ConfirmRecord)]

    def ignored(self) -> list[tuple[str, str, str, str]]:
        return [(r.name, r.source, r.phase, r.outcome) for r in self.records
                if isinstance(r, EventRecord) and r.outcome != "transition"]

    def fired(self) -> list[tuple[str, str, str, int]]:
        return [(t.event, t.source, t.phase_to, t.mono_ns) for t in self.machine.history]


BOTH = rules(release=("gpio", "imu"), separation=("gpio", "imu"), touchdown=("gpio", "imu"))


def test_the_line_first_fires_and_the_imu_confirms_with_its_offset() -> None:
    rig = Rig(BOTH)
    rig.arm()
    rig.arb.edge("release", 2_000 * MS, "GPIO27")
    # the free fall's run started 7.5 ms before the edge (its t_ns is backdated)
    rig.imu("release", 2_000 * MS - 7_500_000)
    assert rig.fired()[-1] == ("release", "gpio", "DESCENT", 2_000 * MS)
    [c] = rig.confirms()
    assert (c.name, c.event, c.source, c.first_source, c.offset_ms) == (
        "confirmed", "release", "imu", "gpio", -7.5)
    assert rig.ignored() == []  # the confirmation is not a duplicate


def test_the_imu_first_fires_at_its_backdated_moment_and_the_line_confirms() -> None:
    rig = Rig(BOTH)
    rig.arm()
    rig.imu("release", 2_000 * MS)
    rig.arb.edge("release", 2_012 * MS, "GPIO27")
    assert rig.fired()[-1] == ("release", "imu", "DESCENT", 2_000 * MS)
    [c] = rig.confirms()
    assert (c.name, c.source, c.first_source, c.offset_ms) == ("confirmed", "gpio", "imu", 12.0)
    # later reports go to the machine as before: a duplicate
    rig.arb.edge("release", 2_020 * MS, "GPIO27")
    assert rig.ignored() == [("release", "gpio", "DESCENT", "duplicate")]


def test_no_confirmation_within_confirm_s_is_logged_unconfirmed_and_a_later_one_late() -> None:
    rig = Rig(BOTH)
    rig.arm()
    rig.arb.edge("separation", 5_000 * MS, "GPIO22")
    rig.arb.tick(5_000 * MS + 3_000 * MS - 1)
    assert rig.confirms() == []
    rig.arb.tick(8_000 * MS)
    [c] = rig.confirms()
    assert (c.name, c.event, c.source, c.first_source, c.offset_ms, c.mono_ns) == (
        "unconfirmed", "separation", "imu", "gpio", None, 8_000 * MS)
    rig.arb.tick(9_000 * MS)
    assert len(rig.confirms()) == 1  # said once
    rig.imu("separation", 9_500 * MS)
    assert (rig.confirms()[-1].name, rig.confirms()[-1].offset_ms) == ("late", 4500.0)


def test_a_confirmation_in_time_leaves_nothing_to_say_at_the_deadline() -> None:
    rig = Rig(BOTH)
    rig.arm()
    rig.arb.edge("release", 5_000 * MS, "GPIO27")
    rig.imu("release", 5_002 * MS)
    rig.arb.tick(9_000 * MS)
    assert [c.name for c in rig.confirms()] == ["confirmed"]


@pytest.mark.parametrize("event", ["touchdown", "separation"])
def test_a_bump_on_the_bench_never_fires_touchdown_or_separation(event: str) -> None:
    rig = Rig(BOTH)
    rig.imu(event, 1_500 * MS)  # SAFE
    rig.arm()
    rig.imu(event, 2_500 * MS)  # ARMED, before any release
    assert rig.machine.phase == "ARMED"
    assert rig.ignored() == [(event, "imu", "SAFE", "not_armed"),
                             (event, "imu", "ARMED", "before_release")]
    # a bump is no first report: the line still fires the event
    rig.arb.edge(event, 3_000 * MS, "GPIO23")
    assert rig.fired()[-1][:2] == (event, "gpio")


def test_imu_events_where_they_make_no_sense_are_ignored_with_why() -> None:
    rig = Rig(rules(release=("imu",), separation=("gpio", "imu"), touchdown=("imu",)))
    rig.arm()
    rig.arb.edge("separation", 2_000 * MS, "GPIO22")  # the line skips DESCENT
    rig.imu("release", 2_050 * MS)  # the free fall decided after the canopy's edge
    assert rig.ignored()[-1] == ("release", "imu", "SEPARATION", "after_release")
    rig.imu("touchdown", 4_000 * MS)
    assert rig.fired()[-1] == ("touchdown", "imu", "TOUCHDOWN", 4_000 * MS)
    rig.imu("separation", 4_100 * MS)  # the IMU's first report: a confirmation, whatever phase
    assert (rig.confirms()[-1].name, rig.confirms()[-1].offset_ms) == ("confirmed", 2100.0)
    rig.imu("separation", 4_200 * MS)  # a repeat, after the descent
    assert rig.ignored()[-1] == ("separation", "imu", "TOUCHDOWN", "after_descent")


def test_an_edge_of_a_line_that_is_not_a_source_is_ignored_and_changes_nothing() -> None:
    rig = Rig(rules(release=("imu",), touchdown=("gpio",)))
    rig.arm()
    rig.arb.edge("release", 2_000 * MS, "GPIO27")
    assert rig.machine.phase == "ARMED"
    assert rig.ignored() == [("release", "gpio", "ARMED", "not_a_source")]
    rig.imu("touchdown", 2_100 * MS)  # touchdown is the line's alone
    assert rig.ignored()[-1] == ("touchdown", "imu", "ARMED", "not_a_source")
    rig.imu("release", 2_200 * MS)
    assert rig.fired()[-1] == ("release", "imu", "DESCENT", 2_200 * MS)
    rig.arb.edge("touchdown", 3_000 * MS, "GPIO23")
    assert rig.fired()[-1] == ("touchdown", "gpio", "TOUCHDOWN", 3_000 * MS)
    rig.arb.tick(60_000 * MS)
    assert rig.confirms() == []  # one source each: nothing to confirm


def test_events_without_a_motion_table_keep_todays_behaviour() -> None:
    rig = Rig(MotionConfig())
    rig.arb.edge("arm", 1_500 * MS, "GPIO17")
    rig.arb.edge("release", 2_000 * MS, "GPIO27")
    rig.arb.edge("release", 2_001 * MS, "GPIO27")
    assert [f[:3] for f in rig.fired()] == [("arm", "gpio", "ARMED"),
                                            ("release", "gpio", "DESCENT")]
    assert rig.ignored() == [("release", "gpio", "DESCENT", "duplicate")]
    rig.imu("release", 2_100 * MS)
    assert rig.ignored()[-1] == ("release", "imu", "DESCENT", "not_a_source")


def test_a_new_arm_is_a_new_descent_and_resets_the_detectors() -> None:
    rig = Rig(BOTH)
    rig.arb.samples("baro", [(1, ())])
    assert (rig.imu_det.resets, rig.baro_det.resets) == (0, 0)
    rig.arm()
    rig.imu("release", 2_000 * MS)
    rig.arb.samples("baro", [(1, ())])
    assert (rig.imu_det.resets, rig.baro_det.resets) == (1, 1)
    rig.imu("touchdown", 2_500 * MS)
    rig.machine.tick(2_500 * MS + 4_000 * MS)  # post_touchdown_s: LANDED
    rig.machine.handle("disarm", source="operator")
    rig.arm()
    # the last descent's release is no first report of this one: the line fires it
    rig.arb.edge("release", 9_000 * MS, "GPIO27")
    assert rig.fired()[-1][:2] == ("release", "gpio")
    rig.imu("release", 9_001 * MS)
    assert (rig.confirms()[-1].first_source, rig.confirms()[-1].offset_ms) == ("gpio", 1.0)
    assert rig.imu_det.resets == 2


def test_the_barometers_check_is_logged_and_moves_nothing() -> None:
    rig = Rig(BOTH)
    rig.arm()
    rig.baro_det.next = [BaroEv("descending", 3_000 * MS, 6.4321)]
    rig.arb.samples("baro", [(3_000 * MS, ())])
    [c] = [r for r in rig.records if isinstance(r, CheckRecord)]
    assert (c.name, c.source, c.rate_mps, c.mono_ns) == ("descending", "baro", 6.43, 3_000 * MS)
    assert rig.machine.phase == "ARMED"


# docs/phases-and-gpio.md, "Sensor and line events": the IMU's rows, every phase
IMU_RULES = [(e, ph, want) for e, row in {
    "release": {"SAFE": "not_armed", "ARMED": "", "DESCENT": "after_release",
                "SEPARATION": "after_release", "TOUCHDOWN": "after_release",
                "LANDED": "after_release"},
    "separation": {"SAFE": "not_armed", "ARMED": "before_release", "DESCENT": "",
                   "SEPARATION": "", "TOUCHDOWN": "after_descent", "LANDED": "after_descent"},
    "touchdown": {"SAFE": "not_armed", "ARMED": "before_release", "DESCENT": "",
                  "SEPARATION": "", "TOUCHDOWN": "after_descent", "LANDED": "after_descent"},
}.items() for ph, want in row.items()]


@pytest.mark.parametrize(("event", "phase", "refused"), IMU_RULES)
def test_the_imu_rows_of_the_rule_table(event: str, phase: str, refused: str) -> None:
    rig = Rig(rules(release=("imu",), separation=("imu",), touchdown=("imu",)))
    if phase != "SAFE":
        rig.machine.resume(phase, entered_ns=rig.now)
    rig.imu(event, 2_000 * MS)
    if refused:
        assert rig.ignored() == [(event, "imu", phase, refused)]
        assert rig.machine.phase == phase
    else:  # believed: the phase rules decide (SEPARATION's separation is their duplicate)
        assert [r.outcome for r in rig.records if isinstance(r, EventRecord)] == [
            "duplicate" if phase == "SEPARATION" and event == "separation" else "transition"]


def test_the_last_edge_says_what_became_of_it() -> None:
    rig = Rig(rules(release=("gpio", "imu"), touchdown=("imu",)))
    assert rig.arb.last_edge() == (0, "", "")
    rig.arb.edge("arm", 1_500 * MS, "GPIO17")
    assert rig.arb.last_edge() == (1, "arm", "transition")
    rig.imu("release", 2_000 * MS)
    assert rig.arb.last_edge()[0] == 1  # the IMU's reports are not edges
    rig.arb.edge("release", 2_010 * MS, "GPIO27")
    assert rig.arb.last_edge() == (2, "release", "confirmed")
    rig.arb.edge("release", 2_020 * MS, "GPIO27")
    assert rig.arb.last_edge() == (3, "release", "duplicate")
    rig.arb.edge("touchdown", 2_030 * MS, "GPIO23")
    assert rig.arb.last_edge() == (4, "touchdown", "not_a_source")
