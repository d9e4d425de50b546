"""Round trip: FlightStore -> segments -> iter_frames and plain mcap readers; index; flight ids."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from mcap.reader import make_reader
from store_helpers import frame

from camctl.board.config import StoreConfig
from camctl.exc import StoreError
from camctl.store import (
    FlightStore,
    iter_events,
    iter_frames,
    list_flights,
    load_index,
    new_flight_id,
    render_report,
    verify,
)
from camctl.store.index import build_index, index_is_stale

CFG = StoreConfig(reserve_mb=0, segment_mb=0.05, commit_interval_ms=50)  # ~50 kB segments: several


def _message_class(schema):
    fds = descriptor_pb2.FileDescriptorSet.FromString(schema.data)
    pool = descriptor_pool.DescriptorPool()
    for fd in fds.file:
        pool.Add(fd)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName(schema.name))


@pytest.fixture
def flight(tmp_path: Path):
    frames = {cam: [frame(cam, i, still=(i == 5)) for i in range(40)] for cam in ("down", "up")}
    with FlightStore(tmp_path, "rig-a", "F1", CFG, cameras=["down", "up"]) as st:
        st.log_event({"kind": "phase", "name": "DESCENT"})
        for i in range(40):
            for cam in ("down", "up"):
                assert st.put(frames[cam][i])
            if i == 20:
                st.commit(wait=True)
                st.log_event({"kind": "event", "name": "separation", "pin": 22})
        st.finish()
        assert st.finished and not st.open_segments()
        stats = st.stats()
    return tmp_path / "F1", frames, stats


def test_round_trip_iter_frames(flight) -> None:
    fdir, frames, stats = flight
    for cam, sent in frames.items():
        segs = sorted((fdir / cam).glob("*.mcap"))
        assert len(segs) > 1, "segment_mb should have rotated"
        got = [f for s in segs for f in iter_frames(s)]
        assert [(f.seq, f.jpeg, f.still) for f in got] == [(f.seq, f.jpeg, f.still) for f in sent]
        assert all(f.camera == cam and f.phase == "DESCENT" and f.jpeg_ok for f in got)
        assert got[3].meta == {"note": "n3"} and got[3].timestamp_ns == sent[3].timestamp_ns
        assert stats[cam]["frames_stored"] == stats[cam]["durable_frames"] == 40
        assert stats[cam]["segments"] == len(segs) and stats[cam]["dropped"] == {}
    events = [e for s in sorted((fdir / "events").glob("*.mcap")) for e in iter_events(s)]
    assert [e["name"] for e in events] == ["DESCENT", "separation"]


def test_plain_mcap_reader_with_embedded_schema(flight) -> None:
    fdir, frames, _ = flight
    seen: dict[str, list] = {"down": [], "up": []}
    for cam in seen:
        for seg in sorted((fdir / cam).glob("*.mcap")):
            with open(seg, "rb") as f:
                reader = make_reader(f, validate_crcs=True)
                assert reader.get_summary() is not None
                for schema, channel, msg in reader.iter_messages():
                    if channel.topic in (f"/{cam}/image", f"/{cam}/still"):
                        assert (schema.name == "foxglove.CompressedImage"
                                and schema.encoding == "protobuf")
                        img = _message_class(schema).FromString(msg.data)
                        assert img.format == "jpeg" and img.frame_id == cam
                        # sensor time; log_time is wall
                        assert img.timestamp.ToNanoseconds() == msg.publish_time
                        seen[cam].append((msg.sequence, bytes(img.data),
                                          channel.topic.endswith("still")))
                    else:
                        assert (channel.topic == f"/{cam}/meta"
                                and channel.message_encoding == "json")
                        assert schema.encoding == "jsonschema"
                        meta = json.loads(msg.data)
                        assert meta["seq"] == msg.sequence and meta["size"] > 0
        assert seen[cam] == [(f.seq, f.jpeg, f.still) for f in frames[cam]]
    logs = []
    with open(sorted((fdir / "events").glob("*.mcap"))[0], "rb") as f:
        for schema, _channel, msg in make_reader(f).iter_messages(topics=["/log"]):
            logs.append(_message_class(schema).FromString(msg.data).message)
    assert any("DESCENT" in m for m in logs)


def test_index_written_rebuilt_when_missing_or_stale(flight) -> None:
    fdir, _, _ = flight
    index = json.loads((fdir / "index.json").read_text())
    assert index["board"] == "rig-a" and index["flight"] == "F1"
    down = index["cameras"]["down"]
    assert down["frames"] == 40 and down["phases"] == {"DESCENT": 40} and down["stills"] == 1
    assert down["first_ns"] == 1_000_000 and down["last_ns"] == 40_000_000
    assert all(s["finished"] and len(s["sha256"]) == 64 for s in down["segments"])
    assert index["events"]["count"] == 2
    assert load_index(fdir) == index and not index_is_stale(fdir, index)
    (fdir / "index.json").unlink()
    assert load_index(fdir) == index and (fdir / "index.json").exists()
    seg = fdir / down["segments"][0]["path"]
    with open(seg, "ab") as f:  # a segment changed behind the index's back
        f.write(b"x")
    assert index_is_stale(fdir, index)
    rebuilt = load_index(fdir)
    assert rebuilt["cameras"]["down"]["segments"][0]["size"] == down["segments"][0]["size"] + 1
    assert rebuilt["cameras"]["down"]["segments"][0]["sha256"] != down["segments"][0]["sha256"]
    assert rebuilt == build_index(fdir)


def test_verify_clean_and_report(flight) -> None:
    fdir, _, _ = flight
    rep = verify(fdir.parent)
    assert rep.exit_code == 0, rep.errors
    assert (rep.cameras["down"].frames == 40 and rep.cameras["down"].lost_bytes == 0
            and rep.events == 2)
    json.dumps(rep.to_dict())
    text = render_report(rep, plain=True)
    assert "down" in text and "clean" in text
    assert verify(fdir / "down").exit_code == 0
    assert verify(sorted((fdir / "up").glob("*.mcap"))[0]).exit_code == 0


def test_flight_ids_and_no_reuse(tmp_path: Path) -> None:
    assert new_flight_id(0) == "19700101T000000Z"
    fid = new_flight_id(1_800_000_000, root=tmp_path)
    FlightStore(tmp_path, "b", fid, CFG, cameras=["c"]).close()
    assert new_flight_id(1_800_000_000, root=tmp_path) == fid + "-2"
    with pytest.raises(StoreError, match=fid):
        FlightStore(tmp_path, "b", fid, CFG, cameras=["c"])
    with pytest.raises(StoreError, match="events"):
        FlightStore(tmp_path, "b", "x", CFG, cameras=["events"])
    assert list_flights(tmp_path) == [fid]
    info = json.loads((tmp_path / fid / "flight.json").read_text())
    assert info["board"] == "b" and info["cameras"] == ["c"]


def test_events_after_finish_go_to_a_new_segment(tmp_path: Path) -> None:
    st = FlightStore(tmp_path, "b", "F", CFG, cameras=["c"])
    st.put(frame("c", 1))
    st.finish()
    before = {p: os.stat(p).st_mtime_ns for p in (tmp_path / "F").rglob("*.mcap")}
    assert not st.put(frame("c", 2)) and st.stats()["c"]["dropped"] == {"finished": 1}
    st.log_event({"kind": "event", "name": "late"})
    st.commit(wait=True)
    assert len(st.open_segments()) == 1
    st.close()
    st.close()
    after = {p: os.stat(p).st_mtime_ns for p in (tmp_path / "F").rglob("*.mcap")}
    assert {p: after[p] for p in before} == before and len(after) == len(before) + 1
    assert verify(tmp_path / "F").exit_code == 0
    assert load_index(tmp_path / "F")["events"]["count"] == 1
