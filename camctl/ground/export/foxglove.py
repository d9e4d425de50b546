"""``camctl export --foxglove``: a flight set as one MCAP file and a Foxglove layout that shows it.

Every board writes the same topics (``/down/image``, ``/events``...), so segments of several boards
opened together in Foxglove would merge into one stream per camera. The export copies every message
of every board's segments into ``<set>/foxglove/<set>.mcap`` under board-prefixed topics
(``/rig-a/down/image``, ``/rig-a/log``...), keeping schemas, log_time (wall clock: boards line up)
and publish_time (each board's sensor time), and writes ``<set>/foxglove/<set>.layout.json`` beside
it (import it with Foxglove's "Import layout"):

- an Image panel per board and camera;
- a Log panel per board (its event log, ``/<board>/log``);
- a Plot of each camera's frame rate (``meta.seq.@derivative``: the frame counter's rate) and a
  State Transitions panel of each camera's phase (``meta.phase``), so the rates read by phase.

Layout format: Foxglove's ``configById`` / ``layout`` (a react-mosaic tree) / ``playbackConfig``
JSON, as exported by Foxglove (https://docs.foxglove.dev/docs/visualization/layouts); panel configs
use the keys of the Image (``imageMode.imageTopic``), Log (``topicToRender``), Plot (``paths``) and
State Transitions (``paths``) panels, titles in ``foxglovePanelTitle``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["FoxgloveExport", "layout_for", "write_foxglove"]


@dataclass
class FoxgloveExport:
    """The files written, the MCAP's topics and the messages copied (and segments not readable)."""

    mcap: Path
    layout: Path
    topics: list[str]
    messages: int
    unreadable: list[str]


def _pid(kind: str, key: str) -> str:
    """A stable panel id, ``Kind!xxxxxxx`` (Foxglove's form)."""
    return f"{kind}!{hashlib.sha1(key.encode()).hexdigest()[:7]}"


def _mosaic(ids: list[str], direction: str) -> Any:
    """A balanced react-mosaic tree of ``ids`` split along ``direction`` ("row" or "column")."""
    if len(ids) == 1:
        return ids[0]
    half = len(ids) // 2
    return {"first": _mosaic(ids[:half], direction), "second": _mosaic(ids[half:], direction),
            "direction": direction, "splitPercentage": round(100 * half / len(ids), 2)}


def layout_for(cameras: list[tuple[str, str]], boards: list[str]) -> dict:
    """A flight set's layout: images of every (board, camera) on top; rates, phases, logs below."""
    config: dict[str, dict] = {}
    images = []
    for board, cam in cameras:
        pid = _pid("Image", f"{board}/{cam}")
        config[pid] = {"foxglovePanelTitle": f"{board} {cam}",
                       "imageMode": {"imageTopic": f"/{board}/{cam}/image",
                                     "imageSchemaName": "foxglove.CompressedImage"}}
        images.append(pid)
    plot = _pid("Plot", "rates")
    config[plot] = {
        "foxglovePanelTitle": "frames/s per camera",
        "paths": [{"value": f"/{board}/{cam}/meta.seq.@derivative", "enabled": True,
                   "timestampMethod": "receiveTime", "label": f"{board} {cam}"}
                  for board, cam in cameras],
        "showLegend": True, "showXAxisLabels": True, "showYAxisLabels": True, "isSynced": True,
        "xAxisVal": "timestamp",
    }
    phases = _pid("StateTransitions", "phases")
    config[phases] = {
        "foxglovePanelTitle": "phase per camera",
        "paths": [{"value": f"/{board}/{cam}/meta.phase", "timestampMethod": "receiveTime",
                   "label": f"{board} {cam}"} for board, cam in cameras],
        "isSynced": True,
    }
    logs = []
    for board in boards:
        pid = _pid("RosOut", f"{board}/log")
        config[pid] = {"foxglovePanelTitle": f"{board} event log", "topicToRender": f"/{board}/log",
                       "minLogLevel": 1, "searchTerms": []}
        logs.append(pid)
    bottom = _mosaic([plot, phases, *logs], "row")
    return {
        "configById": config,
        "globalVariables": {},
        "userNodes": {},
        "playbackConfig": {"speed": 1},
        "layout": {"first": _mosaic(images, "row") if images else bottom, "second": bottom,
                   "direction": "column", "splitPercentage": 60} if images else bottom,
    }


def write_foxglove(flights: list[tuple[str, str, dict[str, list[Path]], list[Path]]], out_dir: Path,
                   name: str) -> FoxgloveExport:
    """Copy ``flights`` ((board, flight id, camera -> segments, event segments) each) into
    ``out_dir/name.mcap`` with board-prefixed topics, and write ``out_dir/name.layout.json``."""
    from camctl.store.merge import merge_segments

    out_dir.mkdir(parents=True, exist_ok=True)
    mcap_path, layout_path = out_dir / f"{name}.mcap", out_dir / f"{name}.layout.json"
    sources = [(board, [p for segs in cams.values() for p in segs] + list(events))
               for board, _flight, cams, events in flights]
    merged = merge_segments(sources, mcap_path, library="camctl export --foxglove")
    channels = set(merged.topics)
    cameras = [(board, cam) for board, _f, cams, _e in flights for cam in cams
               if f"/{board}/{cam}/image" in channels]
    layout = layout_for(cameras, [b for b, _f, _c, _e in flights if f"/{b}/log" in channels])
    layout_path.write_text(json.dumps(layout, indent=2), encoding="utf-8")
    return FoxgloveExport(mcap_path, layout_path, merged.topics, merged.messages, merged.unreadable)
