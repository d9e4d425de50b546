"""A board serves its sensors' segments (kind ``samples``, with sample counts and times) and
``camctl fetch`` downloads them first among segments, resumably and sha256-checked; ``ls`` (local
and ``--connect``) shows each sensor's books; an older ground (a LIST without ``kinds``) is served
as before."""

from __future__ import annotations

import copy
import io
from pathlib import Path

import pytest
from netfixtures import FakeBoard
from rich.console import Console
from store_helpers import frame

from camctl.board.config import PublishConfig, StoreConfig
from camctl.board.publish import Catalog, Publisher
from camctl.common import protocol as p
from camctl.common.frames import FrameValue
from camctl.common.ledger import Ledger
from camctl.ground import Client, fetch
from camctl.ground.flights import FlightRef, camera_segments, list_board, summarize_flight
from camctl.ground.verdict import from_summary
from camctl.ground.views import render_ls, render_ls_remote
from camctl.store import FlightStore, SampleBatch, Source, verify
from camctl.store.sources import BARO_FIELDS, IMU_FIELDS

CFG = PublishConfig(bind="tcp://127.0.0.1:*", events="tcp://127.0.0.1:*", chunk_kb=4,
                    thumbs_every=4)
BATCHES = 40
IMU_N, BARO_N = 10, 2


def _batch(name: str, seq: int) -> SampleBatch:
    if name == "imu":
        t0 = 1_000_000_000 + seq * 10_000_000
        return SampleBatch("imu", seq, IMU_FIELDS, tuple(t0 + i * 1_000_000 for i in range(IMU_N)),
                           tuple((0.0, 0.1 * i, 9.8, 0.0, 0.0, 0.0, 1.0) for i in range(IMU_N)))
    t0 = 1_000_000_000 + seq * 40_000_000
    return SampleBatch("baro", seq, BARO_FIELDS, tuple(t0 + i * 20_000_000 for i in range(BARO_N)),
                       tuple((101_325.0 - i, 21.0, 50.0 - i) for i in range(BARO_N)))


def _flight(root: Path) -> None:
    """Flight F1 of board rig-s by the real FlightStore: camera ``down`` in three segments of
    rising value, an IMU and a barometer, with the board's ledger in the event log."""
    cfg = StoreConfig(reserve_mb=0, commit_interval_ms=60_000)
    st = FlightStore(root, "rig-s", "F1", cfg, cameras=["down"],
                     sources=[Source("imu", "imu"), Source("baro", "baro")])
    ledger = Ledger()
    for seq in range(BATCHES):
        for name, n in (("imu", IMU_N), ("baro", BARO_N)):
            ledger.captured(name, n)
            assert st.put(_batch(name, seq))
        if seq % 4 == 0:
            ledger.captured("down")
            assert st.put(frame("down", seq, value=FrameValue.DESCENT))
        if seq % 10 == 9:
            st.commit(wait=True)
    for rec in ledger.flush(close=True):
        st.log_event(rec)
    st.close()
    assert verify(root / "F1").exit_code == 0


@pytest.fixture()
def board(tmp_path: Path):
    root = tmp_path / "store"
    _flight(root)
    pub = Publisher(FakeBoard("rig-s", root), CFG)
    pub.start()
    try:
        yield root, pub
    finally:
        pub.close()


def _text(render, arg) -> str:
    buf = io.StringIO()
    render(arg, console=Console(file=buf, width=200, no_color=True))
    return buf.getvalue()


def test_sensors_are_fetched_first_verified_and_booked(board, tmp_path: Path) -> None:
    root, pub = board
    seen: list[str] = []
    orig = Client.start_file  # every download starts here

    def spy(self, seg, dest, **kw):
        seen.append(seg.path)
        return orig(self, seg, dest, **kw)

    listing = {s.path: s for s in Catalog(root).listing(None, set(), (p.SEGMENT_SAMPLES,))}
    imu = listing["F1/imu/000001.mcap"]
    assert (imu.kind, imu.camera, imu.samples, imu.frames) == ("samples", "imu", BATCHES * IMU_N, 0)
    assert (imu.first_ns, imu.last_ns) == (_batch("imu", 0).t_ns[0],
                                           _batch("imu", BATCHES - 1).t_ns[-1])
    out = tmp_path / "out"
    Client.start_file = spy  # type: ignore[method-assign]
    try:
        report = fetch([pub.router_endpoint], out, progress=False, give_up_after_s=20)
    finally:
        Client.start_file = orig  # type: ignore[method-assign]
    assert report.ok, report.summary()
    kinds = [listing[x].kind for x in seen]
    n_meta = sum(k in ("meta", "events") for k in kinds)
    # after the tiny meta and event files: the sensors' segments, then the cameras'
    assert kinds[n_meta:n_meta + 2] == ["samples", "samples"], seen
    assert set(kinds[n_meta + 2:]) == {"segment"}, seen
    flight = out / "rig-s" / "F1"
    for rel in ("imu/000001.mcap", "baro/000001.mcap"):
        assert (flight / rel).read_bytes() == (root / "F1" / rel).read_bytes()
    rep = verify(flight)
    assert rep.status == "clean", rep.errors
    assert rep.sources["imu"].samples == BATCHES * IMU_N
    fl = summarize_flight(FlightRef("rig-s", "F1", flight))
    assert set(fl["cameras"]) == {"down"} and set(fl["sensors"]) == {"imu", "baro"}
    assert fl["sensors"]["imu"]["ledger"]["balanced"] is True
    text = _text(render_ls, [fl])
    assert f"imu: {BATCHES * IMU_N:,} samples, 0 lost" in text
    assert f"baro: captured {BATCHES * BARO_N} = stored {BATCHES * BARO_N} + dropped 0" in text
    assert set(camera_segments(flight)) == {"down"}  # flight.json names imu and baro sensors
    assert from_summary(fl).unbalanced == () and "imu" not in from_summary(fl).unchecked
    off = copy.deepcopy(fl)
    off["sensors"]["imu"]["ledger"]["balanced"] = False
    assert from_summary(off).unbalanced == ("imu",)  # a sensor's books count in the verdict
    remote = list_board(pub.router_endpoint)
    assert remote["sensors"]["F1"]["imu"]["samples"] == BATCHES * IMU_N
    assert remote["sensors"]["F1"]["imu"]["ledger"]["balanced"] is True
    assert set(remote["flights"]["F1"]) == {"down"}  # a sensor is not listed as a camera
    assert f"F1 imu: {BATCHES * IMU_N:,} samples, 0 lost" in _text(render_ls_remote, [remote])


def test_a_download_without_a_sensor_segment_cannot_check_its_books(board, tmp_path) -> None:
    _root, pub = board
    out = tmp_path / "out"
    assert fetch([pub.router_endpoint], out, progress=False, give_up_after_s=20).ok
    flight = out / "rig-s" / "F1"
    (flight / "imu" / "000001.mcap").unlink()  # as if not fetched: the board still has it
    fl = summarize_flight(FlightRef("rig-s", "F1", flight))
    books = fl["sensors"]["imu"]["ledger"]
    assert books["balanced"] is None and books["not_checked"] == \
        "1 of 1 segments not downloaded (imu/000001.mcap)"
    assert fl["sensors"]["baro"]["ledger"]["balanced"] is True
    assert verify(flight).status == "incomplete download"
    assert "imu: books not checked: 1 of 1 segments" in _text(render_ls, [fl])


def test_a_sensor_segment_resumes_and_is_checked(board, tmp_path: Path) -> None:
    _root, pub = board
    out = tmp_path / "out"
    assert fetch([pub.router_endpoint], out, progress=False, give_up_after_s=20).ok
    seg = out / "rig-s" / "F1" / "imu" / "000001.mcap"
    data = seg.read_bytes()
    seg.unlink()
    half = len(data) // 2
    seg.with_name(seg.name + ".part").write_bytes(data[:half])  # a fetch cut halfway
    again = fetch([pub.router_endpoint], out, progress=False, give_up_after_s=20)
    b = again.board("rig-s")
    assert again.ok and b.fetched == 1 and b.bytes == len(data) - half, again.summary()
    assert seg.read_bytes() == data
    seg.unlink()  # a part with other bytes: its sha256 fails, it is fetched whole once more
    seg.with_name(seg.name + ".part").write_bytes(bytes(half))
    third = fetch([pub.router_endpoint], out, progress=False, give_up_after_s=20)
    assert third.ok and seg.read_bytes() == data, third.summary()


def test_an_older_ground_is_listed_what_it_knows(board, tmp_path: Path) -> None:
    root, pub = board
    with Client(pub.router_endpoint) as c:
        c.hello()
        old = c.request(p.List(id=c.next_id(), flight=None), p.Listing)  # no kinds: as before
        new = c.listing(None)
    assert not old.rejected and not new.rejected
    assert {s.kind for s in old.segments} == {"meta", "events", "segment"}
    imu = next(s for s in old.segments if s.camera == "imu")
    assert (imu.frames, imu.samples) == (0, 0) and "samples" not in imu.to_json()
    assert {s.path for s in old.segments} == {s.path for s in new.segments}
    # a LIST naming a kind this board does not know asks for nothing more, and is no error
    wire = [f.replace(b'"samples"', b'"future"')
            for f in p.List(id=7, kinds=(p.SEGMENT_SAMPLES,)).encode()]
    req = p.decode(wire)
    assert isinstance(req, p.List) and req.kinds == ()
    assert p.decode(p.List(id=8, kinds=(p.SEGMENT_SAMPLES,)).encode()).kinds == ("samples",)
    # a new ground fetching from a board that lists sensors as segments (an older board) still
    # gets every file, bit-exact
    orig = Client.listing

    def old_list(self, flight=None):
        return self.request(p.List(id=self.next_id(), flight=flight), p.Listing)

    Client.listing = old_list  # type: ignore[method-assign]
    try:
        report = fetch([pub.router_endpoint], tmp_path / "out", progress=False,
                       give_up_after_s=20)
    finally:
        Client.listing = orig  # type: ignore[method-assign]
    assert report.ok, report.summary()
    got = tmp_path / "out" / "rig-s" / "F1" / "imu" / "000001.mcap"
    assert got.read_bytes() == (root / "F1" / "imu" / "000001.mcap").read_bytes()
