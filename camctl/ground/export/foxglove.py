"""``camctl export --foxglove``: a flight set as one MCAP file and a Foxglove layout that shows it.

Every board writes the same topics (``/down/image``, ``/events``...), so segments of several boards
opened together in Foxglove would merge into one stream per camera. The export copies every message
of every board's segments into ``<set>/foxglove/<set>.mcap`` under board-prefixed topics
(``/rig-a/down/image``, ``/rig-a/log``...), keeping schemas, log_time (wall clock: boards line up)
and publish_time (each board's sensor time), and writes ``<set>/foxglove/<set>.layout.json`` beside
it (import it with Foxglove's "Import layout"):

- a column per board (its name in every panel's title): an Image panel per camera
  (``/<board>/<camera>/image``), an Image panel of each camera's stills when it took any
  (``/<board>/<camera>/still``: a still is a message of its own topic, never on ``/image``, so the
  video panel never shows it; the still panel holds the last still up to the playhead), a Log
  panel (its event log, ``/<board>/log``) and, for a board that recorded sensors (their segments
  are copied like the cameras', ``/<board>/<imu>/imu``, ``/<board>/<baro>/baro``), a Plot of its
  IMU's |a| (``/<board>/<imu>/imu.accel_g``) and one of its barometer's altitude
  (``/<board>/<baro>/baro.altitude_m``): one JSON message per sample with a typed schema
  (:class:`camctl.store.sources.SensorKind`), which Foxglove's Plot panel plots as it is;
- below, across boards: a Plot of each camera's frame rate (``meta.seq.@derivative``: the frame
  counter's rate) and a State Transitions panel of each camera's phase (``meta.phase``), so the
  rates read by phase.

The stored segments themselves all use the same topics (``/down/image`` on every board: the store
format, docs/store.md), so several boards' segments opened together in Foxglove collide; this
export is the way to see several boards in one Foxglove window.

Layout format: Foxglove's ``configById`` / ``layout`` (a react-mosaic tree) / ``playbackConfig``
JSON, as exported by Foxglove (https://docs.foxglove.dev/docs/visualization/layouts); panel configs
use the keys of the Image (``imageMode.imageTopic``: foxglove/studio's
``panels/ThreeDeeRender/renderables/ImageMode.ts`` sets ``draft.imageMode.imageTopic``), Log
(``topicToRender``), Plot (``paths``) and State Transitions (``paths``) panels, titles in
``foxglovePanelTitle``.

A flight recorded across a reboot (its monotonic clock started again) is put on the flight's one
timeline (:class:`camctl.common.flightclock.FlightClock`): each message gets its publish_time
mapped by its run and its log_time from that and run 0's wall clock (every run's, run 0's too: the
wall stamps of two boots need not agree), so Foxglove plays the runs in order with the gap between
them; the resume record's log entry at the reboot reads ``REBOOT (down 8.1 s, run 1): ...`` at
WARNING. Flights of one run are copied exactly as they are.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from camctl.common.flightclock import FlightClock

__all__ = ["SENSOR_PLOTS", "FoxgloveExport", "Retimer", "layout_for", "sensor_plot",
           "write_foxglove"]


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


def _mosaic(ids: list[Any], direction: str) -> Any:
    """A balanced react-mosaic tree of ``ids`` (panel ids or trees) split along ``direction``
    ("row" or "column")."""
    if len(ids) == 1:
        return ids[0]
    half = len(ids) // 2
    return {"first": _mosaic(ids[:half], direction), "second": _mosaic(ids[half:], direction),
            "direction": direction, "splitPercentage": round(100 * half / len(ids), 2)}


# a sensor kind's plotted field, its panel's title and y unit (camctl.store.sources: IMU_FIELDS,
# BARO_FIELDS)
SENSOR_PLOTS = {"imu": ("accel_g", "|a| (g)"), "baro": ("altitude_m", "altitude (m)")}


def sensor_plot(board: str, sensor: str, kind: str) -> tuple[str, dict]:
    """A board's Plot panel of one sensor (id, config): |a| of an IMU, altitude of a barometer,
    over receive time (the sample's log_time: a sample has no header stamp)."""
    field_, what = SENSOR_PLOTS[kind]
    pid = _pid("Plot", f"{board}/{sensor}/{field_}")
    return pid, {
        "foxglovePanelTitle": f"{board} {sensor} {what}",
        "paths": [{"value": f"/{board}/{sensor}/{kind}.{field_}", "enabled": True,
                   "timestampMethod": "receiveTime", "label": f"{board} {sensor} {what}"}],
        "showLegend": False, "showXAxisLabels": True, "showYAxisLabels": True, "isSynced": True,
        "xAxisVal": "timestamp",
    }


def layout_for(cameras: list[tuple[str, str]], boards: list[str],
               stills: list[tuple[str, str]] | None = None,
               sensors: list[tuple[str, str, str]] | None = None) -> dict:
    """A flight set's layout: a column per board (its cameras' images, its cameras' ``stills``
    (board, camera), its event log, for each board in ``boards``, and a Plot per sensor of
    ``sensors`` (board, sensor, kind: imu | baro)) on top; every camera's rate and phase
    below."""
    config: dict[str, dict] = {}
    columns = []
    plotted = [(b, n, k) for b, n, k in sensors or () if k in SENSOR_PLOTS]
    for board in dict.fromkeys([b for b, _c in cameras] + list(boards)
                               + [b for b, _n, _k in plotted]):
        ids = []
        # an Image panel per camera's video, then per camera's stills (the topic's last part)
        for kind, title, of in (("image", "", cameras), ("still", " stills", stills or ())):
            for b, cam in of:
                if b != board:
                    continue
                pid = _pid("Image", f"{board}/{cam}" + ("/still" if kind == "still" else ""))
                config[pid] = {"foxglovePanelTitle": f"{board} {cam}{title}",
                               "imageMode": {"imageTopic": f"/{board}/{cam}/{kind}",
                                             "imageSchemaName": "foxglove.CompressedImage"}}
                ids.append(pid)
        if board in boards:
            pid = _pid("RosOut", f"{board}/log")
            config[pid] = {"foxglovePanelTitle": f"{board} event log",
                           "topicToRender": f"/{board}/log", "minLogLevel": 1, "searchTerms": []}
            ids.append(pid)
        for b, sensor, kind in plotted:
            if b == board:
                pid, config[pid] = sensor_plot(board, sensor, kind)
                ids.append(pid)
        if ids:
            columns.append(_mosaic(ids, "column"))
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
    bottom = _mosaic([plot, phases], "row")
    return {
        "configById": config,
        "globalVariables": {},
        "userNodes": {},
        "playbackConfig": {"speed": 1},
        "layout": {"first": _mosaic(columns, "row"), "second": bottom,
                   "direction": "column", "splitPercentage": 70} if columns else bottom,
    }


_SENSOR_TOPICS = tuple(f"/{k}" for k in SENSOR_PLOTS)  # a sensor segment's topic: /<sensor>/<kind>


class Retimer:
    """Maps a flight's messages onto its one timeline (see the module docstring): the
    ``retime`` of :func:`camctl.store.merge.merge_segments` for the boards whose clock is not
    trivial. ``clocks``: board -> (its FlightClock, run 0's wall - mono offset or None)."""

    def __init__(self, clocks: dict[str, tuple[FlightClock, int | None]]) -> None:
        self.clocks = {b: c for b, c in clocks.items() if not c[0].trivial}
        self._frame_runs: dict[Path, dict[tuple[int, int], int]] = {}
        self._events: dict[tuple[Path, int], dict] = {}  # (segment, sequence) -> its record

    def __bool__(self) -> bool:
        return bool(self.clocks)

    def _frame_run(self, seg: Path, msg: Any) -> int:
        runs = self._frame_runs.get(seg)
        if runs is None:
            from camctl.store.reader import scan_frames, scan_segment

            runs = self._frame_runs[seg] = {(fr.seq, fr.publish_ns): fr.run for fr in
                                            scan_frames(scan_segment(seg), check_jpeg=False)}
        return runs.get((msg.sequence, msg.publish_time), 0)

    def __call__(self, board: str, seg: Path, topic: str, msg: Any) -> tuple[int, int, bytes]:
        same = (msg.log_time, msg.publish_time, msg.data)
        entry = self.clocks.get(board)
        if entry is None:
            return same
        clock, wall_offset = entry
        rec = None
        if topic == "/events":
            try:
                rec = json.loads(msg.data)
            except ValueError:
                return same
            if not isinstance(rec, dict):
                return same
            self._events[(seg, msg.sequence)] = rec
            placed = clock.place(rec)
            pub = placed if placed is not None else msg.publish_time
        elif topic == "/log":  # the mirror of the /events record of the same sequence number
            rec = self._events.get((seg, msg.sequence))
            placed = clock.place(rec) if rec is not None else None
            pub = placed if placed is not None else msg.publish_time
        elif topic.endswith(_SENSOR_TOPICS):  # a sensor's sample: a batch does not say its run
            pub = clock.flight_ns(msg.publish_time, 0)
        else:  # a camera's /image, /still, /meta: its frame's run
            pub = clock.flight_ns(msg.publish_time, self._frame_run(seg, msg))
        # every run's log_time from the one timeline and run 0's wall clock: the boards' own wall
        # stamps of two boots need not agree (a Pi without an RTC sets its clock after boot)
        log_time = pub + wall_offset if wall_offset is not None else msg.log_time
        if topic == "/log":
            return log_time, pub, self._log(msg.data, rec, clock, log_time)
        return log_time, pub, msg.data

    @staticmethod
    def _log(data: bytes, rec: dict | None, clock: FlightClock, log_time: int) -> bytes:
        """A ``foxglove.Log`` message stamped ``log_time``; the resume record of a run that began
        after a reboot is the reboot's marker."""
        from foxglove_schemas_protobuf.Log_pb2 import Log

        run = None
        if rec is not None and rec.get("kind") == "resume":
            run = rec.get("run") if isinstance(rec.get("run"), int) else rec.get("resumes")
        info = clock.runs.get(run) if isinstance(run, int) else None
        log = Log()
        log.ParseFromString(data)
        log.timestamp.FromNanoseconds(log_time)
        if info is not None and info.rebooted:
            down = f"down {info.gap_s:.1f} s, " if info.gap_s is not None else ""
            log.message = f"REBOOT ({down}run {info.run}): {log.message}"
            log.level = Log.WARNING
        return log.SerializeToString()


def write_foxglove(flights: list[tuple[str, str, dict[str, list[Path]], list[Path]]], out_dir: Path,
                   name: str, *,
                   clocks: dict[str, tuple[FlightClock, int | None]] | None = None,
                   sensors: dict[str, dict[str, tuple[str, list[Path]]]] | None = None
                   ) -> FoxgloveExport:
    """Copy ``flights`` ((board, flight id, camera -> segments, event segments) each) into
    ``out_dir/name.mcap`` with board-prefixed topics, and write ``out_dir/name.layout.json``.
    ``clocks`` (board -> its flight clock and run 0's wall offset) puts a flight recorded across a
    reboot on its one timeline (:class:`Retimer`). ``sensors`` (board -> sensor -> (kind, its
    segments)) are copied too and get their Plot panels."""
    from camctl.store.merge import merge_segments

    out_dir.mkdir(parents=True, exist_ok=True)
    mcap_path, layout_path = out_dir / f"{name}.mcap", out_dir / f"{name}.layout.json"
    sensors = sensors or {}
    sources = [(board, [p for segs in cams.values() for p in segs]
                + [p for _kind, segs in sensors.get(board, {}).values() for p in segs]
                + list(events)) for board, _flight, cams, events in flights]
    retimer = Retimer(clocks or {})
    merged = merge_segments(sources, mcap_path, library="camctl export --foxglove",
                            retime=retimer if retimer else None)
    channels = set(merged.topics)
    cameras = [(board, cam) for board, _f, cams, _e in flights for cam in cams
               if f"/{board}/{cam}/image" in channels]
    stills = [(board, cam) for board, _f, cams, _e in flights for cam in cams
              if f"/{board}/{cam}/still" in channels]
    plots = [(board, name, kind) for board, _f, _c, _e in flights
             for name, (kind, _segs) in sorted(sensors.get(board, {}).items())
             if f"/{board}/{name}/{kind}" in channels]
    layout = layout_for(cameras, [b for b, _f, _c, _e in flights if f"/{b}/log" in channels],
                        stills, plots)
    layout_path.write_text(json.dumps(layout, indent=2), encoding="utf-8")
    return FoxgloveExport(mcap_path, layout_path, merged.topics, merged.messages, merged.unreadable)
