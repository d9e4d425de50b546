"""``camctl export --foxglove``: one MCAP of all boards with board-prefixed topics, read back by
Foxglove's own @mcap/core, and a layout whose every panel points at a topic that is in it."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from flights import BOARDS, FLIGHT, Built
from store_helpers import read_with_mcap_core

from camctl.cli import main


def _topics(value: object) -> list[str]:
    """Every topic a layout config names (imageTopic, topicToRender, message paths)."""
    if isinstance(value, dict):
        return [t for k, v in value.items()
                for t in ([v] if k in ("imageTopic", "topicToRender") else _topics(v))]
    if isinstance(value, list):
        return [t for v in value for t in _topics(v)]
    if isinstance(value, str) and value.startswith("/") and "." in value:
        return [value.split(".", 1)[0]]
    return []


def _leaves(tree: object) -> list[str]:
    return (_leaves(tree["first"]) + _leaves(tree["second"])  # type: ignore[index]
            if isinstance(tree, dict) else [tree])


def test_export_foxglove(built: Built, tmp_path: Path, mcap_core: Path,
                         capsys: pytest.CaptureFixture) -> None:
    assert main(["export", str(built.root), "--foxglove", "--out", str(tmp_path), "--quiet"]) == 0
    assert "foxglove:" in capsys.readouterr().out
    fdir = tmp_path / FLIGHT / "foxglove"
    mcap, layout_path = fdir / f"{FLIGHT}.mcap", fdir / f"{FLIGHT}.layout.json"
    assert not (tmp_path / FLIGHT / "mp4").exists()  # only the kind asked for
    seen = read_with_mcap_core(mcap_core, [mcap])[str(mcap)]
    counts = Counter(topic for topic, *_ in seen["messages"])
    for (board, cam), frames in built.frames.items():
        video = sum(not f.still for f in frames)
        assert counts[f"/{board}/{cam}/image"] == video, (board, cam)
        assert counts[f"/{board}/{cam}/meta"] == len(frames)
        assert counts[f"/{board}/{cam}/still"] == len(frames) - video
    assert all(counts[f"/{b}/log"] > 0 and counts[f"/{b}/events"] == counts[f"/{b}/log"]
               for b in BOARDS)
    layout = json.loads(layout_path.read_text())
    panels = layout["configById"]
    assert sorted(_leaves(layout["layout"])) == sorted(panels)  # every panel placed, none dangling
    images = sorted(c["imageMode"]["imageTopic"] for k, c in panels.items()
                    if k.startswith("Image!") and c["imageMode"]["imageTopic"].endswith("/image"))
    assert images == sorted(f"/{b}/{c}/image" for b in BOARDS for c in ("down", "up"))
    logs = sorted(c["topicToRender"] for k, c in panels.items() if k.startswith("RosOut!"))
    assert logs == sorted(f"/{b}/log" for b in BOARDS)
    plot = next(c for k, c in panels.items() if k.startswith("Plot!"))
    assert {p["value"] for p in plot["paths"]} == {f"/{b}/{c}/meta.seq.@derivative" for b in BOARDS
                                                  for c in ("down", "up")}
    assert any(k.startswith("StateTransitions!") for k in panels)
    assert set(_topics(panels)) <= set(counts)  # the layout names only topics the file holds
