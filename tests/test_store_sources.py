"""A second kind of source (batched numeric samples) beside a camera: the same queue, group commit,
durable counts, recovery of a torn tail, verify and index as frames, with the camera's files
unchanged."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from mcap.reader import make_reader
from store_helpers import frame

from camctl.board.config import StoreConfig
from camctl.store import (
    FlightStore,
    SampleBatch,
    Source,
    build_index,
    iter_events,
    iter_frames,
    iter_samples,
    recover_store,
    verify,
)
from camctl.store._salvage import scan_segment

FIELDS = ("pressure_pa", "temp_c")
COMMITS = 4
PER_COMMIT = 3


def batch(seq: int, n: int = 5) -> SampleBatch:
    t0 = 1_000_000_000 + seq * 50_000_000
    return SampleBatch(
        source="baro",
        seq=seq,
        fields=FIELDS,
        t_ns=tuple(t0 + i * 10_000_000 for i in range(n)),
        rows=tuple((101_325.0 - seq - i / 4, 20 + i) for i in range(n)),
        phase="DESCENT",
    )


def _fly(root: Path, *, finish: bool = True) -> tuple[FlightStore, bytes]:
    """A flight of camera ``down`` and samples source ``baro``, committed in COMMITS groups; the
    baro segment's bytes after the last commit (fsync'd, never finished: what a power cut
    leaves)."""
    cfg = StoreConfig(reserve_mb=0, commit_interval_ms=60_000)
    st = FlightStore(root, "rig", "F", cfg, cameras=["down"], sources=[Source("baro", "samples")])
    for k in range(COMMITS):
        for j in range(PER_COMMIT):
            seq = k * PER_COMMIT + j
            assert st.put(batch(seq)) and st.put(frame("down", seq))
        st.commit(wait=True)
    torn = (root / "F" / "baro" / "000001.mcap").read_bytes()
    if finish:
        st.close()
    return st, torn


def test_samples_beside_a_camera_round_trip(tmp_path: Path) -> None:
    st, _ = _fly(tmp_path, finish=False)
    n = COMMITS * PER_COMMIT
    stats = st.stats()
    assert stats["baro"] == {
        "records_stored": n,
        "durable_records": n,
        "durable_seq": n - 1,
        "samples_stored": 5 * n,
        "bytes": stats["baro"]["bytes"],
        "segments": 1,
        "dropped": {},
        "queued": 0,
    }
    assert stats["down"]["durable_frames"] == n and stats["baro"]["bytes"] > 0
    assert not st.put(
        SampleBatch("nobody", 0, FIELDS, (1,), ((1.0, 2.0),))
    )  # not a source of this flight
    assert not st.put(
        SampleBatch("down", 0, FIELDS, (1,), ((1.0, 2.0),))
    )  # a camera takes frames only
    st.close()
    fdir = tmp_path / "F"
    seg = fdir / "baro" / "000001.mcap"
    assert list(iter_samples(seg)) == [batch(i) for i in range(n)]
    assert [f.seq for f in iter_frames(fdir / "down" / "000001.mcap")] == list(range(n))
    with open(seg, "rb") as f:  # a finished, standard MCAP: any reader sees typed JSON samples
        reader = make_reader(f, validate_crcs=True)
        msgs = [
            (sch.encoding, ch.topic, json.loads(m.data)) for sch, ch, m in reader.iter_messages()
        ]
    assert {(e, t) for e, t, _ in msgs} == {("jsonschema", "/baro/samples")}
    assert msgs[3][2]["rows"][1] == [101_325.0 - 3 - 0.25, 21]
    rep = verify(fdir)
    assert rep.exit_code == 0 and set(rep.cameras) == {"down"} and rep.sources["baro"].records == n
    flight = json.loads((fdir / "flight.json").read_text())
    assert flight["cameras"] == ["down"] and flight["sources"] == {"baro": "samples"}
    index = json.loads((fdir / "index.json").read_text())
    assert set(index["cameras"]) == {"down"} and index["cameras"]["down"]["frames"] == n
    baro = index["sources"]["baro"]
    assert (baro["kind"], baro["records"], baro["samples"], baro["fields"]) == (
        "samples",
        n,
        5 * n,
        list(FIELDS),
    )
    assert baro["first_ns"] == batch(0).t_ns[0] and baro["last_ns"] == batch(n - 1).t_ns[-1]
    assert build_index(fdir) == index  # rebuilt from the segments alone: the same


def test_a_camera_only_flight_has_no_sources_section(tmp_path: Path) -> None:
    with FlightStore(tmp_path, "rig", "F", StoreConfig(reserve_mb=0), cameras=["down"]) as st:
        st.put(frame("down", 0))
    assert "sources" not in json.loads((tmp_path / "F" / "index.json").read_text())
    assert "sources" not in json.loads((tmp_path / "F" / "flight.json").read_text())


def test_a_torn_samples_tail_is_cut_logged_and_indexed(tmp_path: Path) -> None:
    _, torn = _fly(tmp_path / "fly")
    chunks = scan_segment(Path("baro/x.mcap"), torn).chunks
    assert len(chunks) == COMMITS  # one chunk per group commit
    cut = (
        chunks[-1].start + (chunks[-1].end - chunks[-1].start) // 2
    )  # a power cut inside the last commit
    root = tmp_path / "store"
    shutil.copytree(tmp_path / "fly", root)
    fdir = root / "F"
    (fdir / "index.json").unlink()  # the flight never landed
    seg = fdir / "baro" / "000001.mcap"
    seg.write_bytes(torn[:cut])
    report = recover_store(root)
    assert report.repaired == [str(seg)] and report.exit_code == 1
    kept = (COMMITS - 1) * PER_COMMIT
    assert list(iter_samples(seg)) == [batch(i) for i in range(kept)]
    rep = verify(
        fdir
    )  # the repaired file is a finished MCAP; only the index (never written) is missing
    assert rep.repairable == [str(fdir / "index.json")] and not rep.lost_chunks and not rep.errors
    assert (
        rep.sources["baro"].records == kept and rep.cameras["down"].frames == COMMITS * PER_COMMIT
    )
    losses = [
        r
        for p in sorted((fdir / "events").glob("*.mcap"))
        for r in iter_events(p)
        if r["kind"] == "loss"
    ]
    assert [(r["segment"], r["seq_after"], r["range"][0]) for r in losses] == [
        ("baro/000001.mcap", kept - 1, chunks[-1].start)
    ]
    index = build_index(fdir)
    assert (
        index["sources"]["baro"]["records"] == kept
        and index["cameras"]["down"]["frames"] == COMMITS * PER_COMMIT
    )
    assert [loss["segment"] for loss in index["losses"]] == ["baro/000001.mcap"]
