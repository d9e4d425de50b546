"""Boot recovery: before READY only the last flight's unfinished segments are read and repaired;
every flight that existed at start is checked afterwards in the background; systemd is asked for
time when needed."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest
from store_helpers import frame
from waiting import wait_for

from camctl.board.config import StoreConfig
from camctl.store import FlightStore, iter_events, recover_store, verify, verify_later
from camctl.store import recovery as recovery_mod
from camctl.store._salvage import scan_segment

# the module (the package exports the function)
verify_mod = importlib.import_module("camctl.store.verify")


def _flight(root: Path, name: str, *, land: bool) -> Path:
    cfg = StoreConfig(reserve_mb=0, commit_interval_ms=60_000, segment_mb=0.02)
    st = FlightStore(root, "b", name, cfg, cameras=["a", "b"])
    for i in range(30):
        st.put(frame("a", i))
        st.put(frame("b", i))
        if i % 3 == 2:
            st.commit(wait=True)
    st.commit(wait=True)
    fdir = root / name
    if land:
        st.close()
        return fdir
    # a power cut: the open segments are copied as they are now (committed, never finished)
    snapshot = {p: p.read_bytes() for p in fdir.glob("*/*.mcap")}
    st.close()
    for p in fdir.glob("*/*.mcap"):
        if p not in snapshot:
            p.unlink()
    for p, data in snapshot.items():
        torn = not data.endswith(b"\x89MCAP0\r\n")  # a segment still open at the cut
        p.write_bytes(data + b"\x06" + bytes(60) if torn else data)  # gets a torn tail
    (fdir / "index.json").unlink()
    return fdir


@pytest.fixture()
def store(tmp_path: Path) -> Path:
    root = tmp_path / "store"
    landed = _flight(root, "F1", land=True)
    seg = sorted((landed / "a").glob("*.mcap"))[1]
    data = bytearray(seg.read_bytes())
    chunk = scan_segment(seg, bytes(data)).chunks[0]
    # bit rot in a landed flight: for the check after READY
    data[(chunk.start + chunk.end) // 2] ^= 4
    seg.write_bytes(bytes(data))
    _flight(root, "F2", land=True)
    _flight(root, "F3", land=False)
    return root


def test_before_ready_only_the_last_flights_unfinished_segments_are_read(store: Path,
                                                                         monkeypatch) -> None:
    scanned: list[Path] = []
    real = verify_mod.scan_segment

    def spy(path: Path, data=None):
        scanned.append(Path(path))
        return real(path, data)

    monkeypatch.setattr(verify_mod, "scan_segment", spy)
    f3 = store / "F3"
    unfinished = recovery_mod.unfinished_segments(f3)
    finished = [p for p in f3.glob("*/*.mcap") if p not in unfinished]
    assert unfinished and finished, "the cut left both finished (rotated) and open segments"
    report = recover_store(store)
    assert sorted(scanned) == sorted(unfinished)  # nothing else was read
    assert report.exit_code == 1 and sorted(map(Path, report.repaired)) == sorted(unfinished)
    assert not recovery_mod.unfinished_segments(f3)
    losses = [e for s in sorted((f3 / "events").glob("*.mcap")) for e in iter_events(s)
              if e["kind"] == "loss"]
    assert len(losses) == len(unfinished)  # each torn tail cut is in the flight's event log
    assert verify(store / "F1").exit_code == 1, \
        "the landed flight's bit rot is left for after READY"


def test_after_ready_every_flight_is_verified_in_the_background(store: Path) -> None:
    recover_store(store)
    reports = []
    verify_later(store, ["F1", "F2", "F3"], on_done=reports.append).join(120)
    assert [r.path for r in reports] == [str(store / f) for f in ("F1", "F2", "F3")]
    assert reports[0].exit_code == 1 and reports[0].lost_chunks  # F1's bit rot found and repaired
    after = verify(store)  # its frames stay lost: on record, never "clean" (issue 27)
    assert after.status == "losses recorded" and after.exit_code == 1, after.to_dict()


def test_a_flight_created_after_start_is_never_touched_by_the_background_check(store: Path) -> None:
    recover_store(store)
    new = _flight(store, "F4", land=False)  # being written (and torn) after start
    before = {p: p.read_bytes() for p in new.glob("*/*.mcap")}
    verify_later(store, ["F1", "F2", "F3"]).join(120)
    assert {p: p.read_bytes() for p in new.glob("*/*.mcap")} == before


def test_systemd_is_asked_for_more_time_when_the_repair_is_large(store: Path, monkeypatch) -> None:
    sent: list[dict] = []
    monkeypatch.setattr(recovery_mod, "_SLOW_READ_BPS", 1000)  # as if the card read 1 kB/s
    recover_store(store, notify=lambda **f: sent.append(f))
    assert len(sent) == 1 and sent[0]["EXTEND_TIMEOUT_USEC"] > 5_000_000
    sent.clear()
    monkeypatch.setattr(recovery_mod, "_SLOW_READ_BPS", 10 << 20)
    recover_store(store, notify=lambda **f: sent.append(f))
    assert sent == []


def test_a_landed_last_flight_needs_nothing_before_ready(tmp_path: Path, monkeypatch) -> None:
    root = tmp_path / "store"
    _flight(root, "F1", land=True)
    monkeypatch.setattr(verify_mod, "scan_segment",
                        lambda *a: pytest.fail("scanned a landed flight"))
    assert recover_store(root).exit_code == 0


def test_the_flight_under_the_check_after_ready_is_not_served_until_it_is_done(
        store: Path, monkeypatch) -> None:
    """A repair rewrites a file in place: a download meanwhile would mix old and new bytes (wrong
    sha256). The flight is held back while it is repaired, and only then."""
    import threading

    from camctl.board.config import parse_config
    from camctl.board.daemon import Daemon
    from camctl.board.sdnotify import Notifier
    from camctl.common import protocol as p
    from camctl.common.fsutil import sha256_file
    from camctl.exc import RemoteError
    from camctl.ground import Client

    gate, real = threading.Event(), recovery_mod.verify

    checked: list[tuple[str, bool]] = []

    def held(path, **kw):  # the repair of F1 (the bit-rotted flight) waits for the test
        checked.append((Path(path).name, bool(kw.get("repair"))))
        if Path(path).name == "F1" and kw.get("repair"):
            assert gate.wait(60)
        return real(path, **kw)

    monkeypatch.setattr(recovery_mod, "verify", held)
    cfg = parse_config({"board": "b", "store": {"dir": str(store), "reserve_mb": 0},
                        "gpio": {"backend": "mock", "events": {"arm": 17}},
                        "cameras": [{"name": "a", "backend": "sim", "size": [64, 48]}],
                        "publish": {"bind": "tcp://127.0.0.1:*", "events": "tcp://127.0.0.1:*"}})
    d = Daemon(cfg, notifier=Notifier(environ={}))
    try:
        d.start()
        with Client(d.publisher.router_endpoint, timeout_s=10) as c:
            # as a client sees it (the publisher is told what it may serve with the status)
            wait_for(lambda: c.status()["checking"] == "F1",
                     "the check after READY to start on F1")
            listed = {s.flight for s in c.list()}
            assert "F2" in listed and "F1" not in listed
            f1_seg = sorted((store / "F1" / "a").glob("*.mcap"))[1]
            with pytest.raises(RemoteError) as err:
                c.fetch_file(p.SegmentInfo(path=f"F1/a/{f1_seg.name}", size=f1_seg.stat().st_size,
                                           sha256="0" * 64, flight="F1", camera="a"),
                             store.parent / "dl")
            assert err.value.code == p.E_OPEN_SEGMENT
            gate.set()
            # as a client sees it: the board's STATUS (its publisher is another process, told of
            # what it may serve no later than of the status that says so)
            wait_for(lambda: c.status()["checking"] is None, "the check to finish")
            segs = {s.path: s for s in c.list("F1")}
            assert segs[f"F1/a/{f1_seg.name}"].sha256 == sha256_file(f1_seg)  # served as repaired
        assert verify(store / "F1").status == "losses recorded"  # repaired, its loss on record
        # read once each; only the damaged flight was repaired (and held back): a sound one never is
        wait_for(lambda: ("F2", False) in checked, "F2 to be checked")  # F2 comes after F1
        assert ("F1", True) in checked and ("F2", True) not in checked
    finally:
        gate.set()
        d.close()
