"""The mission page's sensors (issue 29): live |a| and altitude on each board's card, and the
pre-drop NO-GO of a dead, stale, erring or tilted sensor.

The checks run on crafted STATUS dicts in the shape of ``SensorSampler.status()``
(camctl/board/sensors/sampler.py); the watcher's read-error base on the statuses it is handed; the
page in Debian's chromium against a board that answers STATUS with sensors (a real ROUTER, the
board's own Publisher), at desktop and phone size.
"""

from __future__ import annotations

import math
import threading
from pathlib import Path
from typing import Any

import pytest
from netfixtures import FakeBoard

from camctl.ground.mission.checks import Limits, evaluate, sensor_checks, tilt
from camctl.ground.mission.watcher import BoardView, Watcher
from camctl.ground.status import normalize_status

G = 9.80665


def _imu(x: float = 0.0, y: float = 0.0, z: float = 1.0, *, up: str = "+z", **kw: Any) -> dict:
    """An IMU's STATUS entry reading (x, y, z) g."""
    a = [v * G for v in (x, y, z)]
    last = {"accel_x_mps2": a[0], "accel_y_mps2": a[1], "accel_z_mps2": a[2],
            "gyro_x_dps": 0.1, "gyro_y_dps": -0.2, "gyro_z_dps": 0.0,
            "accel_g": math.sqrt(sum(v * v for v in a)) / G}
    return {"kind": "imu", "backend": "lsm6dsox", "ok": True, "error": None, "samples": 4160,
            "read_errors": 0, "last": last, "age_s": 0.004, "up_axis": up, "rate_hz": 416.0,
            **kw}


def _baro(pressure_pa: float = 100_000.0, altitude_m: float = 110.9, **kw: Any) -> dict:
    return {"kind": "baro", "backend": "bmp390", "ok": True, "error": None, "samples": 500,
            "read_errors": 0, "age_s": 0.02, "up_axis": "+z", "rate_hz": 50.0,
            "last": {"pressure_pa": pressure_pa, "temperature_c": 21.5,
                     "altitude_m": altitude_m}, **kw}


def _view(sensors: dict | None, *, phase: str = "ARMED", base: dict | None = None) -> dict:
    st: dict[str, Any] = {"board": "rig-a", "phase": phase, "disk_free_mb": 100_000,
                          "cameras": {"down": {"state": "running", "fps": 4.0,
                                               "target_fps": 4.0, "ring_frames": 8,
                                               "ring_bytes": 400_000, "dropped": 0, "faults": 0}}}
    if sensors is not None:
        st["sensors"] = sensors
    view = {"name": "rig-a", "url": "tcp://rig-a:5555", "reachable": True, "offset_ms": 0.0,
            "status": st}
    if base is not None:
        view["sensor_base"] = base
    return view


def _failing(view: dict) -> list[str]:
    return evaluate([view])["failing"]


# --- the checks on crafted STATUS dicts -----------------------------------------------------------
def test_a_level_board_at_1_g_with_a_plausible_barometer_is_go() -> None:
    res = evaluate([_view({"imu": _imu(0.02, -0.03, 1.01), "baro": _baro()})])
    assert res["go"] is True, res["failing"]
    mine = {c["check"]: c["detail"] for c in res["checks"]}
    assert mine["imu g"] == "imu |a| 1.01 g"
    assert mine["imu tilt"].startswith("imu up +z, tilt 2 deg")
    assert mine["baro pressure"] == "baro 100.0 kPa, 110.9 m"
    assert mine["imu sensor"] == "imu lsm6dsox reading at 416 Hz, 0 read errors"


@pytest.mark.parametrize(("sensor", "line"), [
    # lying on its side: the board's +x points down, so the accelerometer reads -1 g on x
    (_imu(-1.0, 0.0, 0.0),
     "rig-a: imu board lying on its side: gravity along +x (up is -x), expected up +z; "
     "tilt 90 deg > 30"),
    (_imu(1.0, 0.0, 0.0),
     "rig-a: imu board lying on its side: gravity along -x (up is +x), expected up +z; "
     "tilt 90 deg > 30"),
    (_imu(0.0, 0.0, -1.0),
     "rig-a: imu board upside down: gravity along +z (up is -z), expected up +z; "
     "tilt 180 deg > 30"),
    (_imu(0.0, math.sin(math.radians(40)), math.cos(math.radians(40))),
     "rig-a: imu board tilted 40 deg: gravity along -z (up is +z), expected up +z; "
     "tilt 40 deg > 30"),
    # mounted with -y up (its up_axis) but hung with +z up: tilted by 90 degrees
    (_imu(0.0, 0.0, 1.0, up="-y"),
     "rig-a: imu board lying on its side: gravity along -z (up is +z), expected up -y; "
     "tilt 90 deg > 30"),
    (_imu(0.0, 0.0, 1.2), "rig-a: imu |a| 1.20 g at rest (want 1 \u00b1 0.15 g)"),
    (_imu(0.0, 0.0, 0.8), "rig-a: imu |a| 0.80 g at rest"),
    (_imu(ok=False, error="imu lsm6dsox on /dev/i2c-1 at 0x6A: [Errno 121] Remote I/O error"),
     "rig-a: imu not reading: imu lsm6dsox on /dev/i2c-1 at 0x6A: [Errno 121] Remote I/O error"),
    (_imu(ok=False, age_s=None, last={}), "rig-a: imu not reading: no sample yet"),
    (_imu(age_s=1.5), "rig-a: imu last sample 1.5 s old (limit 1 s): not reading"),
    (_baro(pressure_pa=12_000.0),
     "rig-a: baro 12.0 kPa implausible (want 30-110 kPa)"),
    (_baro(pressure_pa=0.0), "rig-a: baro 0.0 kPa implausible"),
    (_baro(age_s=2.0), "rig-a: baro last sample 2.0 s old"),
    (_imu(kind="imu", last={"gyro_x_dps": 0.0}), "rig-a: imu sample has no acceleration"),
])
def test_a_bad_sensor_is_no_go_in_one_line_naming_board_and_sensor(sensor: dict,
                                                                   line: str) -> None:
    name = sensor["kind"]
    failing = _failing(_view({name: sensor}))
    assert len(failing) == 1 and failing[0].startswith(line), failing


def test_values_inside_the_limits_pass_and_a_sensor_named_otherwise_says_its_kind() -> None:
    near = math.radians(29)
    assert _failing(_view({"imu": _imu(0.0, math.sin(near), math.cos(near))})) == []
    assert _failing(_view({"imu": _imu(z=1.14), "baro": _baro(age_s=1.0)})) == []
    assert _failing(_view({"baro": _baro(pressure_pa=30_500.0)})) == []
    assert _failing(_view({"baro": _baro(pressure_pa=109_900.0)})) == []
    assert _failing(_view({"nose": _imu(age_s=3.0)})) == [
        "rig-a: nose (imu) last sample 3.0 s old (limit 1 s): not reading"]
    strict = Limits(max_tilt_deg=10.0, g_tolerance=0.05, max_sensor_age_s=0.5)
    checks = sensor_checks("rig-a", _view({"imu": _imu(0.0, 0.35, 1.0, age_s=0.4)})["status"],
                           None, strict)
    assert [c["check"] for c in checks if not c["ok"]] == ["imu g", "imu tilt"]


def test_a_dead_sensor_gets_only_its_health_check() -> None:
    res = evaluate([_view({"imu": _imu(0.0, 0.0, -1.0, ok=False, error="gone")})])
    assert [c["check"] for c in res["checks"] if c["check"].startswith("imu")] == ["imu sensor"]


def test_read_errors_that_grow_since_arming_are_no_go() -> None:
    base = {"imu": {"read_errors": 2, "altitude_m": None, "at": "arming", "phase": "ARMED"}}
    assert _failing(_view({"imu": _imu(read_errors=2)}, base=base)) == []
    assert _failing(_view({"imu": _imu(read_errors=5, error="[Errno 5] EIO")}, base=base)) == [
        "rig-a: imu 3 read errors since arming ([Errno 5] EIO): a loose wire or a failing part"]


def test_after_the_release_free_fall_and_a_dead_sensor_are_no_fault() -> None:
    for phase in ("DESCENT", "SEPARATION", "TOUCHDOWN", "LANDED"):
        view = _view({"imu": _imu(0.0, 0.0, 0.02), "baro": _baro(ok=False, error="gone")},
                     phase=phase)
        assert not [c for c in evaluate([view])["checks"] if c["check"].startswith(
            ("imu", "baro"))], phase
    assert _failing(_view({"imu": _imu(0.0, 0.0, 0.02)}, phase="SAFE")) == [
        "rig-a: phase SAFE (needs ARMED)", "rig-a: imu |a| 0.02 g at rest (want 1 \u00b1 0.15 g): "
        "moving, or a wrong range or scale"]


def test_a_board_without_sensors_is_checked_as_before() -> None:
    old = evaluate([_view(None)])
    assert evaluate([_view({})]) == old
    assert old["go"] is True and {c["check"] for c in old["checks"]} == {
        "reachable", "armed", "down rate", "down faults", "down drops", "disk", "clock"}
    # a malformed sensors table from a board is ignored entry by entry, never a traceback
    junk = evaluate([_view({"imu": "broken", "baro": _baro(last={"pressure_pa": "x"})})])
    assert junk["failing"] == ["rig-a: baro sample has no pressure"]
    assert evaluate([_view("nonsense")]) == old  # type: ignore[arg-type]
    assert "sensors" not in normalize_status({"board": "a"})
    assert normalize_status({"sensors": {"imu": _imu(), "x": 1}})["sensors"]["imu"]["ok"] is True


def test_tilt_is_the_angle_to_the_up_axis_and_names_the_axis_up() -> None:
    assert tilt(_imu(0.0, 0.0, 1.0)["last"], "+z") == pytest.approx((0.0, "+z"))
    assert tilt(_imu(0.0, -1.0, 0.0)["last"], "-y") == pytest.approx((0.0, "-y"))
    deg, axis = tilt(_imu(0.0, 1.0, 1.0)["last"], "+z")  # type: ignore[misc]
    assert deg == pytest.approx(45.0) and axis in ("+y", "+z")
    assert tilt(_imu(0.0, 0.0, 0.05)["last"], "+z") is None  # free fall: no up to tell


# --- the board's own SensorSampler.status(), as it goes into STATUS ------------------------------
def test_the_samplers_own_status_is_checked() -> None:
    """The shape the checks read is the contract's: a real sampler over a scripted part, its
    status() through JSON as STATUS carries it."""
    import json

    from camctl.board.config_sensors import SensorConfig
    from camctl.board.sensors.base import SensorDevice, SensorError, imu_row
    from camctl.board.sensors.sampler import SensorSampler

    now = [10**9]

    class Part(SensorDevice):
        kind, part = "imu", "sim"

        def __init__(self, cfg: SensorConfig) -> None:
            super().__init__(cfg)
            self.reads: list = []

        def open(self) -> None:
            pass

        def identify(self):  # pragma: no cover - not used here
            raise NotImplementedError

        def read(self) -> list:
            r = self.reads.pop(0)
            if isinstance(r, Exception):
                raise r
            return [(now[0], r)]

    cfg = SensorConfig(name="imu", kind="imu", backend="sim", rate_hz=416.0, up_axis="-x")
    dev = Part(cfg)
    smp = SensorSampler(dev, sink=lambda b: True, recording=lambda: False, ledger=lambda: None,
                        clock_ns=lambda: now[0])
    smp._open()  # what start() does before its thread; the test polls by hand

    def failing() -> list[str]:
        return _failing(_view({"imu": json.loads(json.dumps(smp.status()))}))

    assert failing() == ["rig-a: imu not reading: no sample yet"]
    dev.reads = [imu_row(-G, 0.0, 0.0, 0.0, 0.0, 0.0)]  # hanging with -x up, as configured
    smp.poll()
    assert failing() == []
    dev.reads = [imu_row(0.0, 0.0, G, 0.0, 0.0, 0.0)]  # fell over onto its back
    smp.poll()
    assert failing() == ["rig-a: imu board lying on its side: gravity along -z (up is +z), "
                         "expected up -x; tilt 90 deg > 30"]
    now[0] += 2 * 10**9  # no sample for 2 s
    assert failing() == ["rig-a: imu last sample 2.0 s old (limit 1 s): not reading"]
    dev.reads = [SensorError("imu sim: [Errno 121] Remote I/O error")]
    smp.poll()
    assert failing() == ["rig-a: imu not reading: imu sim: [Errno 121] Remote I/O error"]


# --- the watcher's base: read errors and altitude at arming -------------------------------------
def _status(phase: str, errors: int, altitude_m: float) -> dict:
    return {"board": "rig-a", "phase": phase, "flight": "f1",
            "sensors": {"imu": _imu(read_errors=errors), "baro": _baro(altitude_m=altitude_m)}}


def test_the_watcher_counts_read_errors_and_altitude_from_arming() -> None:
    v = BoardView(url="tcp://rig-a:5555", name="rig-a", reachable=True)
    seen = []
    for phase, errors, alt in (("SAFE", 4, 100.0), ("SAFE", 6, 100.5), ("ARMED", 6, 101.0),
                               ("ARMED", 6, 101.2), ("ARMED", 9, 101.4), ("DESCENT", 11, 60.0),
                               ("SAFE", 11, 99.0), ("SAFE", 0, 99.0)):
        Watcher._set_status(v, _status(phase, errors, alt))
        b = v.to_json()["sensor_base"]
        seen.append((b["imu"]["at"], b["imu"]["read_errors"], b["baro"]["altitude_m"]))
    assert seen == [("first seen", 4, 100.0), ("first seen", 4, 100.0), ("arming", 6, 101.0),
                    ("arming", 6, 101.0), ("arming", 6, 101.0), ("arming", 6, 101.0),
                    ("disarm", 11, 99.0), ("restart", 0, 99.0)]
    # a barometer with no sample yet at arming: its first altitude is the base
    empty = {**_status("ARMED", 0, 0.0), "phase": "SAFE"}
    empty["sensors"]["baro"] = _baro(last={}, age_s=None, ok=False)
    Watcher._set_status(v, empty)
    Watcher._set_status(v, {**empty, "phase": "ARMED"})
    assert v.sensor_base["baro"]["altitude_m"] is None
    Watcher._set_status(v, _status("ARMED", 0, 98.5))
    Watcher._set_status(v, _status("ARMED", 0, 97.0))
    assert v.sensor_base["baro"] == {"read_errors": 0, "altitude_m": 98.5, "at": "arming",
                                     "phase": "ARMED"}
    # the errors while armed are the watcher's view's NO-GO
    Watcher._set_status(v, _status("ARMED", 0, 99.0))
    Watcher._set_status(v, _status("ARMED", 2, 99.0))
    view = {**v.to_json(), "offset_ms": 0.0}
    assert "rig-a: imu 2 read errors since arming" in " ".join(evaluate([view])["failing"])


# --- the page: live values on the card, the NO-GO on the banner ---------------------------------
class _SensorBoard(FakeBoard):
    """A board whose STATUS carries sensors; ``set`` changes them (thread-safe). ``disk_free_mb``
    is a marker: the page's disk check shows it once the go/no-go of that status arrived."""

    def __init__(self, name: str, root: Path) -> None:
        super().__init__(name, root, serving=False)
        self.phase = "SAFE"
        self._lock = threading.Lock()
        self.sensors: dict = {}
        self.disk = 1000

    def set(self, *, phase: str | None = None, **sensors: dict) -> int:
        with self._lock:
            self.phase = phase or self.phase
            self.sensors = {**self.sensors, **sensors}
            self.disk += 1
            return self.disk

    def status(self) -> dict:
        with self._lock:
            return {**super().status(), "disk_free_mb": self.disk, "flight": "",
                    "sensors": dict(self.sensors)}


def test_the_card_shows_live_g_and_altitude_and_the_banner_a_tilted_board(
        tmp_path: Path) -> None:
    from camctl.board.config import PublishConfig
    from camctl.board.publish.server import Publisher
    from camctl.ground.mission import serve
    from camctl.ground.mission.browser import chromium, find_chromium

    if find_chromium() is None:
        pytest.skip("needs Debian's chromium (.ci/run installs it: apt-get install chromium)")
    from test_mission_phone import _LAYOUT

    board = _SensorBoard("rig-s", tmp_path / "store")
    marker = board.set(imu=_imu(0.01, 0.0, 1.0), baro=_baro(altitude_m=123.4))
    pub = Publisher(board, PublishConfig(bind="tcp://127.0.0.1:*", events="tcp://127.0.0.1:*"))
    pub.start()
    server = None
    try:
        server = serve([pub.router_endpoint], tmp_path / "mission", port=0)
        with chromium(tmp_path / "chromium-profile") as ctx:
            pages = {"desktop": ctx.new_page(), "phone": ctx.new_page()}
            pages["phone"].set_viewport_size({"width": 390, "height": 844})
            for page in pages.values():
                page.goto(server.url)

            def shown(m: int) -> dict[str, dict]:
                """Each page once it drew the go/no-go of the status with marker ``m``: the
                sensors' text and classes, the banner's lines."""
                out = {}
                for label, page in pages.items():
                    page.wait_for_function(
                        "(m) => [...document.querySelectorAll('.checks li[data-check=disk]')]"
                        ".some(li => li.textContent.startsWith(m + ' MB free'))",
                        arg=m, timeout=0)
                    out[label] = page.evaluate("""() => ({
                      sensors: Object.fromEntries([...document.querySelectorAll(
                        '.card .sensors .sensor')].map(s => [s.dataset.sensor,
                        [s.textContent, s.classList.contains('bad')]])),
                      failing: [...document.querySelectorAll('#banner li')].map(
                        li => li.textContent)})""")
                return out

            for label, got in shown(marker).items():
                assert got["sensors"] == {"imu": ["imu |a| 1.00 g", False],
                                          "baro": ["baro 123.4 m (+0.0 m since page load)",
                                                   False]}, label
            # refreshed with STATUS: the altitude's change since the page loaded
            marker = board.set(baro=_baro(altitude_m=121.9))
            for label, got in shown(marker).items():
                assert got["sensors"]["baro"] == ["baro 121.9 m (-1.5 m since page load)",
                                                  False], label
            # armed: the change is counted from the altitude at arming
            marker = board.set(phase="ARMED", baro=_baro(altitude_m=122.0))
            shown(marker)
            marker = board.set(baro=_baro(altitude_m=124.5), imu=_imu(1.0, 0.0, 0.0))
            for label, got in shown(marker).items():
                assert got["sensors"] == {"imu": ["imu |a| 1.00 g", True],
                                          "baro": ["baro 124.5 m (+2.5 m since arming)",
                                                   False]}, label
                assert [f for f in got["failing"] if "imu" in f or "baro" in f] == [
                    "rig-s: imu board lying on its side: gravity along -x (up is +x), "
                    "expected up +z; tilt 90 deg > 30"], label
                problems = pages[label].evaluate(_LAYOUT, [".card .sensors > span",
                                                           ".card .head > *", "#banner li"])
                assert problems == [], (label, problems)
            # a dead sensor: red on the card, its reason on the banner
            marker = board.set(imu=_imu(1.0, 0.0, 0.0), baro=_baro(ok=False, error="baro gone"))
            for label, got in shown(marker).items():
                assert got["sensors"]["baro"] == ["baro not reading", True], label
                assert "rig-s: baro not reading: baro gone" in got["failing"], label
            pages["phone"].screenshot(path=tmp_path / "phone-sensors.png", full_page=True)
    finally:
        if server is not None:
            server.close()
        pub.close()
    print(f"screenshots in {tmp_path}")
