"""Issue 29 on the ground: a flight's IMU and barometer in the export.

A flight is built through the real FlightStore (SampleBatch per 50 ms of samples, PhaseRecords
logged with ``source="imu"``): |a| 1 g on the hook, ~0 g in free fall, a one-sample canopy shock
after separation and a one-sample impact spike after touchdown. The tests check the peak g on the
verdict, the sheet and fetch-verdicts.json, the data the timeline's renderer gets, the CSV against
``load_samples``, and the Foxglove file and layout.
"""

from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from flights import Built
from store_helpers import jpeg, read_with_mcap_core

from camctl.cli import main
from camctl.common.frames import EncodedFrame, FrameValue
from camctl.common.records import PhaseRecord
from camctl.ground.export import export_all
from camctl.ground.export import timeline as tl
from camctl.ground.samples import flight_peak_g, load_samples
from camctl.store import FlightStore
from camctl.store.config import StoreConfig
from camctl.store.sources import BARO_FIELDS, IMU_FIELDS, G, SampleBatch, Source

NS = 1_000_000_000
R = 5_000 * NS  # the release edge, board monotonic ns
WALL0 = 1_767_225_600 * NS
BOARD, FLIGHT = "rig-s", "20260101T000000Z"
IMU_HZ, BARO_HZ = 200, 25
SHOCK_S, SHOCK_G = 1.050, 7.5  # the canopy opening: 50 ms after the separation edge (1.0 s)
IMPACT_S, IMPACT_G = 2.010, 14.0  # the impact: 10 ms after the touchdown edge (2.0 s)
EDGES = [("SAFE", "ARMED", "arm", "gpio", -1.2), ("ARMED", "DESCENT", "release", "imu", 0.0),
         ("DESCENT", "SEPARATION", "separation", "imu", 1.0),
         ("SEPARATION", "TOUCHDOWN", "touchdown", "imu", 2.0),
         ("TOUCHDOWN", "LANDED", "post_touchdown", "timer", 2.6)]


def accel_g(t: float) -> float:
    """|a| of the drop at ``t`` s from release (the spikes: one sample each)."""
    if abs(t - SHOCK_S) < 1e-9:
        return SHOCK_G
    if abs(t - IMPACT_S) < 1e-9:
        return IMPACT_G
    if 0.0 <= t < 1.0:
        return 0.04 + 0.01 * np.sin(40 * t)  # free fall, a little noise
    return 1.0 + 0.02 * np.sin(17 * t)


def altitude(t: float) -> float:
    """Metres above the landing point (the barometer adds 250 m of ground elevation)."""
    if t < 0:
        return 30.0
    if t < 1.0:
        return 30.0 - 0.5 * 9.81 * t * t
    return max(0.0, 25.095 - 25.095 * (t - 1.0))


def _batches(source: str, fields: tuple[str, ...], times: list[float], row) -> list[SampleBatch]:
    per = max(1, round(len(times) / ((times[-1] - times[0]) / 0.05)))  # ~50 ms batches
    out = []
    for seq, i in enumerate(range(0, len(times), per)):
        ts = times[i:i + per]
        out.append(SampleBatch(source, seq, fields, tuple(R + round(t * NS) for t in ts),
                               tuple(row(t) for t in ts)))
    return out


def build_flight(root: Path, *, imu: bool = True, baro: bool = True,
                 imu_hole: tuple[float, float] | None = None) -> Path:
    """One board's flight under ``root/<board>/<flight>``; ``imu_hole`` (s from release): IMU
    samples not stored there (a lost batch)."""
    sources = ([Source("imu", "imu")] if imu else []) + ([Source("baro", "baro")] if baro else [])
    store = FlightStore(root / BOARD, BOARD, FLIGHT, StoreConfig(commit_interval_ms=50),
                        cameras=["down"], sources=sources)
    for prev, to, event, source, at in EDGES:
        mono = R + round(at * NS)
        store.log_event(PhaseRecord(prev, to, event, source, mono_ns=mono,
                                    wall_ns=WALL0 + mono - R))
    for seq in range(40):  # 10 fps from -1 s to 3 s
        t = -1.0 + seq / 10
        phase = next((to for _p, to, _e, _s, at in reversed(EDGES) if at <= t), "ARMED")
        store.put(EncodedFrame("down", seq, R + round(t * NS), jpeg(seq), 32, 24, phase,
                               int(FrameValue.DESCENT)))
    if imu:
        times = [k / IMU_HZ for k in range(-200, 700)]
        if imu_hole is not None:
            times = [t for t in times if not imu_hole[0] <= t < imu_hole[1]]

        def imu_row(t: float) -> tuple[float, ...]:
            g = accel_g(t)
            return (0.0, 0.0, g * G, 0.1, -0.2, 0.3, g)

        for b in _batches("imu", IMU_FIELDS, times, imu_row):
            assert store.put(b)
    if baro:
        times = [k / BARO_HZ for k in range(-25, 88)]
        for b in _batches("baro", BARO_FIELDS, times,
                          lambda t: (101325.0 - 12 * altitude(t), 21.5, 250.0 + altitude(t))):
            assert store.put(b)
    store.close()
    return root / BOARD / FLIGHT


@pytest.fixture(scope="module")
def sensed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("sensed")
    build_flight(root)
    return root


# --- the peak g -----------------------------------------------------------------------------------
def test_peak_g_within_one_sample_of_the_spikes(sensed: Path) -> None:
    found = flight_peak_g(sensed / BOARD / FLIGHT)
    assert found is not None
    peaks, zero = found
    assert zero == R
    sep, td = peaks
    step = NS // IMU_HZ
    assert (sep.event, td.event) == ("separation", "touchdown")
    assert sep.g == pytest.approx(SHOCK_G) and td.g == pytest.approx(IMPACT_G)
    assert abs(sep.t_ns - (R + round(SHOCK_S * NS))) <= step
    assert abs(td.t_ns - (R + round(IMPACT_S * NS))) <= step
    assert (sep.edge_ns, td.edge_ns) == (R + NS, R + 2 * NS)


def test_peak_g_says_why_when_it_cannot_be_known(tmp_path: Path) -> None:
    holed = flight_peak_g(build_flight(tmp_path / "holed", imu_hole=(2.0, 2.05)))
    assert holed is not None
    sep, td = holed[0]
    assert sep.g == pytest.approx(SHOCK_G)
    assert (td.g, td.why) == (None, "IMU samples missing around touchdown")
    no_imu = flight_peak_g(build_flight(tmp_path / "baro-only", imu=False))
    assert no_imu is not None and [p.why for p in no_imu[0]] == ["no IMU", "no IMU"]
    res = export_all(tmp_path / "baro-only", tmp_path / "out", mp4=False, contact_sheet=False,
                     timeline=False)
    assert res.verdicts[0].endswith("; peak g: no IMU"), res.verdicts
    assert flight_peak_g(build_flight(tmp_path / "bare", imu=False, baro=False)) is None


def test_verdict_sheet_and_fetch_verdicts_carry_the_peaks(sensed: Path, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from camctl.ground.export import sheet
    from camctl.ground.fetch import VERDICTS, BoardReport, FetchReport, record_verdicts

    headers: list[str] = []
    real = sheet.draw_sheet
    monkeypatch.setattr(sheet, "draw_sheet",
                        lambda header, blocks, png: headers.append(header) or real(header, blocks,
                                                                                   png))
    res = export_all(sensed, tmp_path / "out", mp4=False, timeline=False)
    want = (f"peak g: separation {SHOCK_G:.1f} g at T+{SHOCK_S:.3f} s from release "
            f"(+0.050 s from its edge); touchdown {IMPACT_G:.1f} g at T+{IMPACT_S:.3f} s from "
            f"release (+0.010 s from its edge)")
    assert res.verdicts == [res.verdicts[0]] and res.verdicts[0].endswith("; " + want)
    assert headers and f"{BOARD}: {want}" in headers[0].splitlines()
    report = FetchReport([BoardReport("http://b", board=BOARD, segments_total=1, fetched=1,
                                      flights=[FLIGHT])], sensed)
    record_verdicts(report)
    rec = json.loads((sensed / VERDICTS).read_text())["boards"][0]
    assert [(p["event"], p["g"], p["t_s"]) for p in rec["peak_g"]] == [
        ("separation", SHOCK_G, pytest.approx(SHOCK_S)),
        ("touchdown", IMPACT_G, pytest.approx(IMPACT_S))]
    # the verdict line camctl fetch prints ends with the same peaks as the export's
    assert report.verdicts()[0].endswith("; " + want)
    (sensed / VERDICTS).unlink()


# --- the timeline ---------------------------------------------------------------------------------
def test_envelope_keeps_a_one_sample_spike_and_shows_holes() -> None:
    t = np.arange(0, 10, 0.001)  # 1 kHz for 10 s: 10000 samples, 7 per column of 1400
    v = np.ones_like(t)
    v[4318] = 15.0  # mid-column: neither the first nor the last sample of its column
    x, lo, hi = tl.envelope(t, v, 0.0, 10.0, 1400)
    assert x.size == 1400 and np.nanmax(hi) == 15.0 and np.nanmin(lo) == 1.0
    col = int(np.flatnonzero(hi == 15.0)[0])
    width = 10.0 / 1400
    assert lo[col] == 1.0 and x[col] == pytest.approx((int(t[4318] / width) + 0.5) * width)
    # a 100 ms hole (lost batches) is one gap in the line; a 25 Hz barometer's empty columns
    # between its samples are not
    holed = (t < 5.0) | (t >= 5.1)
    x2, lo2, _hi2 = tl.envelope(t[holed], v[holed], 0.0, 10.0, 1400)
    (gap,) = np.flatnonzero(np.isnan(lo2))
    assert x2[gap - 1] < 5.0 and x2[gap + 1] > 5.1 - width and np.isnan(x2[gap])
    slow = np.arange(0, 10, 0.04)
    _x3, lo3, _hi3 = tl.envelope(slow, np.ones_like(slow), 0.0, 10.0, 1400)
    assert lo3.size == slow.size and not np.isnan(lo3).any()


def test_timeline_draws_the_sensor_tracks(sensed: Path, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    drawn: list[tuple[tl.Track, np.ndarray, np.ndarray]] = []
    real = tl.envelope

    def spy(t_s, values, lo, hi, columns):  # type: ignore[no-untyped-def]
        out = real(t_s, values, lo, hi, columns)
        drawn.append((t_s, values, out[2]))
        return out

    labels: list[str] = []
    name_edges = tl._name_edges

    def texts(ax, *a):  # type: ignore[no-untyped-def]  # the edge labels as drawn on the panel
        name_edges(ax, *a)
        labels.extend(t.get_text() for t in ax.texts)

    monkeypatch.setattr(tl, "envelope", spy)
    monkeypatch.setattr(tl, "_name_edges", texts)
    res = export_all(sensed, tmp_path / "out", mp4=False, contact_sheet=False)
    assert {"arm · gpio", "release · imu", "separation · imu", "touchdown · imu"} <= set(labels)
    svg = res.timeline_svgs[0].read_text()
    series = load_samples(sensed / BOARD / FLIGHT)
    assert len(drawn) == 2  # |a| then altitude, under the frame-rate panel
    (t_a, a, a_max), (t_b, b, _b_max) = drawn
    np.testing.assert_array_equal(t_a, (series["imu"].t_ns - R) / 1e9)
    np.testing.assert_array_equal(a, series["imu"].column("accel_g"))
    assert np.nanmax(a_max) == IMPACT_G  # the impact reached the drawing
    np.testing.assert_array_equal(t_b, (series["baro"].t_ns - R) / 1e9)
    # metres above where it came to rest: 30 m on the hook, 0 after landing
    assert b[0] == pytest.approx(30.0, abs=1e-3) and b[-1] == pytest.approx(0.0, abs=1e-3)
    for gid in (f"track:{BOARD}:imu:accel_g", f"track:{BOARD}:baro:altitude",
                "edge:release:imu", "edge:touchdown:imu", "edge:arm:gpio"):
        assert f'id="{gid}"' in svg, gid


# --- CSV ------------------------------------------------------------------------------------------
def test_csv_round_trip_equals_load_samples(sensed: Path, tmp_path: Path,
                                            capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "csv"
    assert main(["export", str(sensed), "--csv", "--out", str(out), "--quiet"]) == 0
    assert "csv: " in capsys.readouterr().out
    series = load_samples(sensed / BOARD / FLIGHT)
    assert sorted(p.name for p in out.glob("*.csv")) == [f"{BOARD}_{FLIGHT}_baro.csv",
                                                        f"{BOARD}_{FLIGHT}_imu.csv"]
    for name, s in series.items():
        with (out / f"{BOARD}_{FLIGHT}_{name}.csv").open(newline="") as f:
            rows = list(csv.reader(f))
        assert rows[0] == ["t_s", "t_ns", *s.fields]
        got_t = np.array([int(r[1]) for r in rows[1:]], dtype=np.int64)
        got_v = np.array([[float(x) for x in r[2:]] for r in rows[1:]])
        np.testing.assert_array_equal(got_t, s.t_ns)
        np.testing.assert_array_equal(got_v, s.values)
        np.testing.assert_allclose([float(r[0]) for r in rows[1:]], (s.t_ns - R) / 1e9,
                                   atol=1e-9)


def test_csv_of_a_flight_without_sensors_says_so(built: Built, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture) -> None:
    assert main(["export", str(built.root), "--csv", "--out", str(tmp_path), "--quiet"]) == 1
    out = capsys.readouterr().out
    assert sum("no sensor samples: no CSV written" in line for line in out.splitlines()) == 2
    assert "export: nothing written (no frames or sensor samples under" in out
    assert not list(tmp_path.rglob("*.csv"))


def test_flight_without_sensors_has_no_tracks_nor_peaks(built: Built, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[object] = []
    monkeypatch.setattr(tl, "_draw_track", lambda *a: calls.append(a))
    res = export_all(built.root, tmp_path, mp4=False, contact_sheet=False)
    assert res.timelines and not calls
    assert not any("peak g" in v for v in res.verdicts)
    assert "id=\"edge:release:gpio\"" in res.timeline_svgs[0].read_text()


# --- Foxglove -------------------------------------------------------------------------------------
def test_foxglove_has_the_sensor_topics_and_plots(sensed: Path, tmp_path: Path) -> None:
    from mcap.reader import make_reader

    assert main(["export", str(sensed), "--foxglove", "--out", str(tmp_path), "--quiet"]) == 0
    fdir = tmp_path / FLIGHT / "foxglove"
    with (fdir / f"{FLIGHT}.mcap").open("rb") as f:
        msgs = [(c.topic, s.name, json.loads(m.data)) for s, c, m in
                make_reader(f).iter_messages() if c.topic.endswith(("/imu", "/baro"))]
    series = load_samples(sensed / BOARD / FLIGHT)
    counts = Counter(t for t, _s, _d in msgs)
    assert counts == {f"/{BOARD}/imu/imu": len(series["imu"]),
                      f"/{BOARD}/baro/baro": len(series["baro"])}
    assert {(t, s) for t, s, _d in msgs} == {(f"/{BOARD}/imu/imu", "camctl.Imu"),
                                            (f"/{BOARD}/baro/baro", "camctl.Barometer")}
    assert max(d["accel_g"] for t, _s, d in msgs if t.endswith("/imu")) == IMPACT_G
    panels = json.loads((fdir / f"{FLIGHT}.layout.json").read_text())["configById"]
    plots = {p["value"] for k, c in panels.items() if k.startswith("Plot!") for p in c["paths"]}
    assert {f"/{BOARD}/imu/imu.accel_g", f"/{BOARD}/baro/baro.altitude_m"} <= plots
    images = [c["imageMode"]["imageTopic"] for k, c in panels.items() if k.startswith("Image!")]
    assert images == [f"/{BOARD}/down/image"]  # a sensor's folder is not a camera


def test_foxglove_reader_reads_every_sample(sensed: Path, tmp_path: Path, mcap_core: Path) -> None:
    """Foxglove's own reader (@mcap/core) reads every sample of the export at its board time."""
    assert main(["export", str(sensed), "--foxglove", "--out", str(tmp_path), "--quiet"]) == 0
    mcap = tmp_path / FLIGHT / "foxglove" / f"{FLIGHT}.mcap"
    seen = read_with_mcap_core(mcap_core, [mcap])[str(mcap)]["messages"]
    series = load_samples(sensed / BOARD / FLIGHT)
    for name, kind in (("imu", "imu"), ("baro", "baro")):
        pubs = sorted(int(pub) for topic, _log, pub, _seq in seen
                      if topic == f"/{BOARD}/{name}/{kind}")
        assert pubs == series[name].t_ns.tolist(), name


def test_layout_puts_each_boards_plots_in_its_column() -> None:
    from camctl.ground.export.foxglove import layout_for

    layout = layout_for([("a", "down"), ("b", "down")], ["a", "b"], [],
                        [("a", "imu", "imu"), ("b", "imu", "imu"), ("b", "baro", "baro")])
    cfg = layout["configById"]

    def leaves(tree: object) -> list[str]:
        return (leaves(tree["first"]) + leaves(tree["second"])  # type: ignore[index]
                if isinstance(tree, dict) else [tree])  # type: ignore[list-item]

    col_a, col_b = layout["layout"]["first"]["first"], layout["layout"]["first"]["second"]
    paths = {b: [p["value"] for pid in leaves(col) if pid.startswith("Plot!")
                 for p in cfg[pid]["paths"]] for b, col in (("a", col_a), ("b", col_b))}
    assert paths == {"a": ["/a/imu/imu.accel_g"],
                     "b": ["/b/imu/imu.accel_g", "/b/baro/baro.altitude_m"]}
