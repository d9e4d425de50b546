"""The segment writer's time ranges: each chunk index and the statistics span exactly the log
times written, in whatever order they came (a late frame can be earlier than the last one)."""

from __future__ import annotations

from pathlib import Path

from mcap.reader import make_reader
from store_helpers import jpeg

from camctl.store._records import CH_IMAGE, CH_META, camera_layout
from camctl.store._segment import SegmentWriter


def test_chunk_and_segment_ranges_hold_out_of_order_log_times(tmp_path: Path) -> None:
    path = tmp_path / "cam" / "000001.mcap"
    path.parent.mkdir()
    w = SegmentWriter(path, camera_layout("cam"))
    for chunk in ((50, 10, 90, 30), (120, 100, 110)):
        for seq, t_ns in enumerate(chunk):
            w.add_image(CH_IMAGE, t_ns, t_ns, seq, jpeg(seq), frame_id="cam", timestamp_ns=t_ns)
            w.add_message(CH_META, t_ns, t_ns, seq, b"{}")
        w.commit()
    w.finish()
    with path.open("rb") as f:
        summary = make_reader(f, validate_crcs=True).get_summary()
    assert summary is not None and summary.statistics is not None
    chunks = [(c.message_start_time, c.message_end_time) for c in summary.chunk_indexes]
    assert chunks == [(10, 90), (100, 120)]  # the second chunk starts afresh
    stats = summary.statistics
    assert (stats.message_start_time, stats.message_end_time) == (10, 120)
