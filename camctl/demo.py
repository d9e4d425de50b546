"""``camctl demo``: the whole simulated drop test, end to end, on loopback.

N boards run as separate ``camctl run`` processes (sim cameras ``up`` and ``down``, a sim IMU and
barometer, mock GPIO lines). A scripted flight toggles their lines through the operator port,
exactly as wiring would (arm, then release on every board at once as a shared release line does,
separation, touchdown), each moment marked first in every board's simulated world (the ``scene``
command: what the sim sensors feel). The last board has no release and no touchdown line: its IMU
fires them, scored against the scene's true moments (a problem beyond
:data:`SENSOR_TOLERANCE_MS`). The boards record, land, finish their files and serve them; the
ground fetches everything, verifies it, and prints a table per board and camera. The exit status
is 0 only when every stored frame arrived intact.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["BoardProcess", "DemoResult", "run_demo", "start_board", "write_board_config"]

BOARD_TEMPLATE = """\
# camctl demo board {board}: sim cameras, mock GPIO lines driven over the operator port
board = "{board}"

[store]
dir = "{store}"
commit_interval_ms = 200
segment_mb = {segment_mb}
reserve_mb = {reserve_mb}

[gpio]
backend = "mock"
bounce_ms = 5

[gpio.events]
{lines}

[phases]
post_touchdown_s = {post_touchdown_s}
descent_timeout_s = 120

[encode]
threads = {threads}
{cameras}{sensors}
[publish]
bind = "tcp://127.0.0.1:*"
events = "tcp://127.0.0.1:*"
"""

CAMERA_TEMPLATE = """
[[cameras]]
name = "{name}"
role = "{name}"
backend = "sim"
size = [{width}, {height}]
jpeg_quality = 85
pretrigger_s = 2.0
seed = {seed}
stills = [{stills}]
still_size = "{still_size}"
sim_descent_s = {descent_s}

[cameras.fps]
{fps}
"""

LINES = {"arm": 17, "release": 27, "separation": 22, "touchdown": 23}
# a sensor-fired event further than this from the scene's true moment is a problem (issue 29)
SENSOR_TOLERANCE_MS = 20.0

SENSORS_TEMPLATE = """
[[sensors]]
name = "imu"
backend = "sim"
kind = "imu"
rate_hz = 416
seed = {seed}

[[sensors]]
name = "baro"
backend = "sim"
kind = "baro"
rate_hz = 50
seed = {seed}
"""


def motion_tables(lines: tuple[str, ...]) -> str:
    """``[motion.<event>]`` for a board with these event lines: each descent event from its line
    and the IMU (first wins), from the IMU alone where there is no line."""
    out = []
    for event in ("release", "separation", "touchdown"):
        sources = '"gpio", "imu"' if event in lines else '"imu"'
        out.append(f"\n[motion.{event}]\nsources = [{sources}]\n")
    return "".join(out)


# The demo's rates by camera and phase: the down camera speeds up most at separation, the up camera
# (the canopy) least after touchdown.
DEMO_FPS = {"down": {"ARMED": 4, "DESCENT": 12, "SEPARATION": 20, "TOUCHDOWN": 12},
            "up": {"ARMED": 4, "DESCENT": 12, "SEPARATION": 12, "TOUCHDOWN": 6}}


def write_board_config(directory: Path, board: str, index: int, *,
                       size: tuple[int, int] = (960, 540),
                       post_touchdown_s: float = 1.5, extra: str = "", descent_s: float = 12.0,
                       fps: dict[str, dict[str, float]] | None = None, segment_mb: float = 16,
                       reserve_mb: float = 64, threads: int = 1,
                       stills: tuple[str, ...] = ("touchdown",),
                       still_size: str = "video", sensors: bool = False,
                       lines: tuple[str, ...] = tuple(LINES)) -> Path:
    """Write a sim board's ``directory/rig.toml`` (cameras ``down``, ``up``); return its path.

    ``fps`` maps camera -> phase -> rate (default :data:`DEMO_FPS`); ``stills`` are the events at
    which the ``down`` camera takes a still, ``still_size`` what it is: ``"video"`` (the next frame
    at ``size``, no gap) or ``"full"`` (the sim's 4608x2592 sensor by a mode switch: the video
    pauses, its lost frames booked as ``still_mode_switch``). ``sensors``: a sim IMU (416 Hz) and
    barometer (50 Hz), and ``[motion]`` tables that fire each descent event from its line and the
    IMU (from the IMU alone for an event without a line in ``lines``, the events with a GPIO
    line). ``extra`` is appended (it lands in ``[publish]``)."""
    directory.mkdir(parents=True, exist_ok=True)
    rates = fps or DEMO_FPS
    cameras = "".join(
        CAMERA_TEMPLATE.format(name=name, width=size[0], height=size[1], seed=100 + 2 * index + i,
                               stills=", ".join(f'"{e}"'
                                                for e in (stills if name == "down" else ())),
                               still_size=still_size if name == "down" else "video",
                               descent_s=descent_s,
                               fps="\n".join(f"{ph} = {v:g}" for ph, v in rates[name].items()))
        for i, name in enumerate(("down", "up")))
    sensor_text = (SENSORS_TEMPLATE.format(seed=index) + motion_tables(lines)) if sensors else ""
    text = BOARD_TEMPLATE.format(board=board, store=(directory / "store").as_posix(),
                                 segment_mb=f"{segment_mb:g}", reserve_mb=f"{reserve_mb:g}",
                                 post_touchdown_s=post_touchdown_s, threads=threads,
                                 cameras=cameras, sensors=sensor_text,
                                 lines="\n".join(f"{e} = {LINES[e]}" for e in lines))
    path = directory / "rig.toml"
    path.write_text(text + extra)
    return path


@dataclass
class BoardProcess:
    """A ``camctl run`` child process and the endpoints it bound."""

    name: str
    config: Path
    store: Path
    proc: subprocess.Popen
    router: str = ""
    pub: str = ""
    log_path: Path | None = None
    # the events it has a GPIO line for (None: every one): fly() toggles only those
    lines: tuple[str, ...] | None = None
    # it has sim sensors: fly() marks each moment in its simulated world first
    sim_sensors: bool = False

    def stop(self, timeout: float = 15.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return self.proc.returncode

    def kill9(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


def start_board(config: Path, store: Path, name: str, *, timeout_s: float = 30.0,
                env: dict[str, str] | None = None) -> BoardProcess:
    """Start ``camctl run --config`` as a child process and wait until it has bound its sockets."""
    info_path = store / "daemon.json"
    with contextlib.suppress(FileNotFoundError):
        info_path.unlink()
    log_path = config.parent / "daemon.log"
    log = log_path.open("ab")
    proc = subprocess.Popen([sys.executable, "-m", "camctl", "run", "--config", str(config)],
                            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            env={**os.environ, **(env or {})})
    log.close()
    board = BoardProcess(name, config, store, proc, log_path=log_path)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log_path.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"board {name} exited with {proc.returncode} at start:\n{tail}")
        try:
            info = json.loads(info_path.read_text())
            if info.get("pid") == proc.pid:
                board.router, board.pub = info["router"], info["pub"]
                return board
        except (FileNotFoundError, json.JSONDecodeError, KeyError):
            pass
        time.sleep(0.05)
    board.kill9()
    raise RuntimeError(f"board {name} did not come up within {timeout_s:g} s (log: {log_path})")


@dataclass
class DemoResult:
    ok: bool
    out: Path
    rows: list[dict] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    first_look_s: float | None = None
    elapsed_s: float = 0.0
    exports: dict[str, list[str]] = field(default_factory=dict)
    sensors: list[dict] = field(default_factory=list)  # sensor_events' rows


def _all(boards: list[BoardProcess], fn: Callable[[BoardProcess], Any]) -> list[Any]:
    """Run fn on every board at the same moment (a shared line reaches every board together)."""
    results: list[Any] = [None] * len(boards)
    errors: list[BaseException] = []

    def one(i: int, b: BoardProcess) -> None:
        try:
            results[i] = fn(b)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=one, args=(i, b)) for i, b in enumerate(boards)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return results


def _command(board: BoardProcess, command: str, /, **args: Any) -> dict:
    from camctl.ground import Client

    with Client(board.router, timeout_s=10.0) as client:
        return client.command(command, **args)


def _status(board: BoardProcess) -> dict:
    from camctl.ground import Client

    with Client(board.router, timeout_s=10.0) as client:
        return client.status()


def _wait_landed(boards: list[BoardProcess], timeout_s: float) -> list[dict]:
    deadline = time.monotonic() + timeout_s
    while True:
        states = _all(boards, _status)
        if all(s["phase"] == "LANDED" and s["serving"] for s in states):
            return states
        if time.monotonic() > deadline:
            phases = ", ".join(f"{s['board']}={s['phase']}" for s in states)
            raise RuntimeError("boards did not land: " + phases)
        time.sleep(0.1)


def _say(quiet: bool, text: str) -> None:
    if not quiet:
        print(text, flush=True)


def fly(boards: list[BoardProcess], *, seconds: float, pretrigger_s: float = 2.0,
        quiet: bool = False) -> dict:
    """The scripted flight. Returns wall-clock marks (time.monotonic) of each event."""
    marks: dict[str, float] = {}
    _say(quiet, f"arming {len(boards)} boards")
    _all(boards, lambda b: _command(b, "arm"))
    time.sleep(pretrigger_s + 0.5)  # let the pre-trigger ring fill
    script = (("release", seconds * 0.45), ("separation", seconds * 0.55), ("touchdown", 0.0))

    def moment(b: BoardProcess, event: str) -> dict:
        if b.sim_sensors:  # the world first: the IMU feels it; then the line, where wired
            _command(b, "scene", event=event)
        if b.lines is None or event in b.lines:
            return _command(b, "event", name=event)
        return _status(b)

    for event, dwell in script:
        marks[event] = time.monotonic()
        replies = _all(boards, lambda b, e=event: moment(b, e))
        # a board without the line: its IMU decides a moment later (a free fall takes min_ms)
        phases = ", ".join(f"{b.name}: {r['phase']}"
                           + (" (no line: its IMU)" if b.lines is not None and event not in b.lines
                              else "")
                           for b, r in zip(boards, replies, strict=True))
        _say(quiet, f"t={marks[event] - marks['release']:5.2f}s  {event:<10s} -> " + phases)
        time.sleep(dwell)
    return marks


def sensor_events(ground: Path, states: list[dict], *, imu_only: set[str]) -> tuple[
        list[dict], list[str]]:
    """Per board: the events its IMU fired, each with its offset from the scene's true moment
    (``scene`` records), and its samples per sensor; the problems (an offset beyond
    :data:`SENSOR_TOLERANCE_MS`, a board in ``imu_only`` whose release or touchdown did not come
    from its IMU, a board with no samples of a sensor)."""
    from camctl.common.records import PhaseRecord, SceneRecord, read
    from camctl.store import iter_events, iter_samples

    rows: list[dict] = []
    problems: list[str] = []
    for st in states:
        board, flight = st["board"], st["flight"]
        fdir = ground / board / flight
        scene: dict[str, int] = {}
        fired: dict[str, PhaseRecord] = {}
        for seg in sorted((fdir / "events").glob("*.mcap")):
            for rec in read(iter_events(seg)):
                if isinstance(rec, SceneRecord) and rec.mono_ns is not None:
                    scene[rec.name] = rec.mono_ns
                elif isinstance(rec, PhaseRecord) and rec.event in ("release", "separation",
                                                                    "touchdown"):
                    fired.setdefault(rec.event, rec)
        samples = {name: sum(len(b.t_ns) for seg in sorted((fdir / name).glob("*.mcap"))
                             for b in iter_samples(seg))
                   for name in st.get("sensors", {})}
        for name, n in samples.items():
            if not n:
                problems.append(f"{board}/{name}: no samples in the downloaded flight")
        row: dict[str, Any] = {"board": board, "samples": samples, "events": {}}
        for event, rec in fired.items():
            offset = None
            if event in scene and rec.mono_ns is not None:
                offset = round((rec.mono_ns - scene[event]) / 1e6, 2)
            row["events"][event] = {"source": rec.source, "offset_ms": offset}
            if rec.source != "imu":
                continue
            if offset is None:
                problems.append(f"{board}: {event} fired by the IMU, no scene mark to score it")
            elif abs(offset) > SENSOR_TOLERANCE_MS:
                problems.append(f"{board}: {event} fired by the IMU {offset:+.1f} ms from the "
                                f"scene's true moment (more than {SENSOR_TOLERANCE_MS:g} ms)")
        if board in imu_only:
            for event in ("release", "touchdown"):
                got = row["events"].get(event, {}).get("source")
                if got != "imu":
                    problems.append(f"{board}: {event} should come from its IMU (no line), "
                                    f"came from {got or 'nowhere'}")
        rows.append(row)
    return rows, problems


def print_sensor_events(rows: list[dict]) -> None:
    """One short line per board: samples per sensor, and the IMU-fired events' offsets."""
    for r in rows:
        samples = " ".join(f"{n}={v}" for n, v in r["samples"].items())
        fired = ", ".join(f"{e} {v['offset_ms']:+.1f} ms" for e, v in r["events"].items()
                          if v["source"] == "imu" and v["offset_ms"] is not None)
        print(f"{r['board']}: samples {samples or '-'}; fired by the IMU (from the scene's "
              f"moment): {fired or 'none'}")


def summarize(ground: Path, states: list[dict], fetch_report: Any) -> tuple[list[dict], list[str]]:
    """Per board and camera: captured, stored, fetched, bytes, checksum, times vs release edge.

    ``captured`` is the downloaded flight's books, read as ``camctl ls`` reads them
    (:func:`camctl.ground.flights.summarize_flight`), so the table and ``ls`` of the download say
    the same number; the board's own count at LANDED (``states``) is checked against it."""
    from camctl.common.records import PhaseRecord, read
    from camctl.ground.flights import find_flights, summarize_flight
    from camctl.store import iter_events, iter_frames

    rows: list[dict] = []
    problems: list[str] = []
    for st in states:
        board, flight = st["board"], st["flight"]
        fdir = ground / board / flight
        release_ns = None
        for seg in sorted((fdir / "events").glob("*.mcap")):
            for ev in read(iter_events(seg)):
                if isinstance(ev, PhaseRecord) and ev.event == "release":
                    release_ns = ev.mono_ns
        if release_ns is None:
            problems.append(f"{board}: no release event in the downloaded event log")
        books = {r.flight: summarize_flight(r) for r in find_flights(fdir)}.get(flight)
        try:
            br = fetch_report.board(board)
            checksum_ok = br.checksum_ok and br.ok
        except KeyError:
            checksum_ok = False
        for cam, cs in st["cameras"].items():
            frames = []
            for seg in sorted((fdir / cam).glob("*.mcap")):
                frames.extend(iter_frames(seg))
            video = [f for f in frames if not f.still]
            nbytes = sum(p.stat().st_size for p in (fdir / cam).glob("*.mcap"))
            ts = [f.timestamp_ns for f in video]
            def rel(t: int, release_ns: int | None = release_ns) -> float:
                return (t - release_ns) / 1e9 if release_ns is not None else float("nan")

            ledger = (books or {}).get("cameras", {}).get(cam, {}).get("ledger", {})
            captured = ledger.get("captured")
            if captured is None:
                problems.append(f"{board}/{cam}: no ledger records in the downloaded event log")
            elif captured != cs["frames_captured"]:
                problems.append(f"{board}/{cam}: the board said captured {cs['frames_captured']} "
                                f"at LANDED, its flight's books say {captured}")
            row = {
                "board": board, "camera": cam,
                "captured": captured, "stored": cs["frames_stored"],
                "durable": cs["durable_frames"], "fetched": len(frames),
                "stills": len(frames) - len(video),
                "bytes": nbytes, "checksum_ok": checksum_ok,
                "bad_jpeg": sum(not f.jpeg_ok for f in frames),
                "first_s": rel(min(ts)) if ts else None, "last_s": rel(max(ts)) if ts else None,
                "pretrigger": sum(1 for f in video if f.phase == "ARMED"),
                "safe_frames": sum(1 for f in frames if f.phase == "SAFE"),
                "dropped": cs["dropped"], "faults": cs["faults"],
            }
            rows.append(row)
            if row["stored"] != row["fetched"]:
                problems.append(f"{board}/{cam}: stored {row['stored']} "
                                f"but fetched {row['fetched']}")
            if row["bad_jpeg"]:
                problems.append(f"{board}/{cam}: {row['bad_jpeg']} frames do not decode")
            if not row["pretrigger"] or (row["first_s"] is not None and row["first_s"] >= 0):
                problems.append(f"{board}/{cam}: no pre-trigger frames before the release edge")
            if row["safe_frames"]:
                problems.append(f"{board}/{cam}: {row['safe_frames']} frames recorded in SAFE")
            if not checksum_ok:
                problems.append(f"{board}: checksum or fetch failure")
    return rows, problems


def print_table(rows: list[dict]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="camctl demo: every frame from every board")
    for col in ("board", "camera", "captured", "stored", "durable", "fetched", "pre-trig", "stills",
                "MB", "sha256", "first", "last", "dropped"):
        justify = "left" if col in ("board", "camera") else "right"
        table.add_column(col, justify=justify, no_wrap=True)
    for r in rows:
        def t(v: float | None) -> str:
            return "-" if v is None else f"{v:+.2f}s"

        table.add_row(r["board"], r["camera"], str(r["captured"]), str(r["stored"]),
                      str(r["durable"]), str(r["fetched"]), str(r["pretrigger"]), str(r["stills"]),
                      f"{r['bytes'] / 1e6:.1f}", "OK" if r["checksum_ok"] else "FAIL",
                      t(r["first_s"]), t(r["last_s"]), str(r["dropped"]))
    console = Console()
    Console(width=max(140, console.width) if not console.is_terminal else None).print(table)
    print("first/last: frame times relative to each board's release edge "
          "(pre-trig: frames from the RAM ring);\n"
          "captured: sensor frames, including ARMED frames that aged out of the ring; "
          "stored includes stills")


def run_demo(*, boards: int = 2, seconds: float = 6.0, out: Path | None = None, quiet: bool = False,
             keep: bool = False, size: tuple[int, int] = (960, 540),
             mission_port: int | None = None) -> int:
    """Run the simulated drop test; return the exit status (0 = every stored frame arrived intact).

    With ``mission_port`` the mission page (``camctl mission``) watches the boards from the start;
    its URL is printed (see :class:`camctl.ground.mission.demo_hook.DemoMission`)."""
    hook = None
    if mission_port is not None:
        from camctl.ground.mission.demo_hook import DemoMission

        hook = DemoMission(port=mission_port)
    try:
        result = demo(boards=boards, seconds=seconds, out=out, quiet=quiet, keep=keep, size=size,
                      hook=hook)
    finally:
        if hook is not None:
            hook.close()
    if not quiet:
        print_table(result.rows)
        print_sensor_events(result.sensors)
        if result.first_look_s is not None:
            print(f"time to first look: {result.first_look_s:.2f} s from the touchdown edge "
                  "to a contact sheet of every board's previews "
                  f"({result.out / 'first-look.png'})")
        for kind, paths in result.exports.items():
            for path in paths:
                print(f"{kind:>14s}: {path}")
    for p in result.problems:
        print(f"PROBLEM: {p}", file=sys.stderr)
    verdict = "OK" if result.ok else "FAILED"
    print(f"demo {verdict} in {result.elapsed_s:.1f} s; output in {result.out}")
    return 0 if result.ok else 1


def demo(*, boards: int = 2, seconds: float = 6.0, out: Path | None = None, quiet: bool = False,
         keep: bool = False, size: tuple[int, int] = (960, 540), hook: Any = None) -> DemoResult:
    """The demo itself; ``hook`` (optional) gets ``started(boards, out)`` once every board serves
    and ``finished()`` before the boards stop."""
    _check_demo_args(boards, seconds)
    t0 = time.monotonic()
    out = out or Path("demo-out") / time.strftime("%Y%m%d-%H%M%S")
    out = out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    procs: list[BoardProcess] = []
    try:
        _start_boards(procs, out, boards, size=size, seconds=seconds, quiet=quiet)
        if hook is not None:
            hook.started(procs, out)
        marks = fly(procs, seconds=seconds, quiet=quiet)
        states = _wait_landed(procs, timeout_s=60)
        ground = out / "ground"
        urls = [b.router for b in procs]
        problems: list[str] = []
        first_look_png = out / "first-look.png"
        first_look_s = _first_look(urls, ground, first_look_png, problems,
                                   touchdown=marks["touchdown"], quiet=quiet)
        _say(quiet, "all boards LANDED; fetching every segment")
        rows = _fetch_and_verify(urls, ground, states, problems, quiet=quiet)
        sensors, more = sensor_events(ground, states,
                                      imu_only={b.name for b in procs if b.lines is not None
                                                and "release" not in b.lines})
        problems += more
        exports = {} if problems else _export(ground, out / "export", quiet=quiet)
        with contextlib.suppress(OSError):
            (out / "report.json").write_text(json.dumps(
                {"rows": rows, "problems": problems, "first_look_s": first_look_s,
                 "exports": exports, "first_look_png": str(first_look_png),
                 "sensors": sensors}, indent=2))
        return DemoResult(ok=not problems, out=out, rows=rows, problems=problems,
                          first_look_s=first_look_s, elapsed_s=time.monotonic() - t0,
                          exports=exports, sensors=sensors)
    finally:
        if hook is not None:
            hook.finished()
        _stop_boards(procs, keep=keep)


def _check_demo_args(boards: int, seconds: float) -> None:
    from camctl.exc import ConfigError

    if not 1 <= boards <= 26:
        raise ConfigError(f"--boards must be from 1 to 26, got {boards}")
    if not 1.0 <= seconds <= 600:
        raise ConfigError(f"--seconds must be from 1 to 600, got {seconds:g}")


def _start_boards(procs: list[BoardProcess], out: Path, boards: int, *, size: tuple[int, int],
                  seconds: float, quiet: bool) -> None:
    """Start ``boards`` demo boards under ``out/boards``, each appended to ``procs`` as it serves
    (so the caller stops those that started when a later one fails)."""
    for i in range(boards):
        name = f"demo-{chr(ord('a') + i)}"
        # the last board has no release and no touchdown line: its IMU fires them
        lines = ("arm", "separation") if i == boards - 1 else tuple(LINES)
        # the sim's ground comes up over the whole flight (arm, ring, descent): the approach shows
        cfg = write_board_config(out / "boards" / name, name, i, size=size, descent_s=seconds + 4.0,
                                 sensors=True, lines=lines)
        procs.append(start_board(cfg, out / "boards" / name / "store", name))
        procs[-1].lines, procs[-1].sim_sensors = lines, True
        _say(quiet, f"board {name}: pid {procs[-1].proc.pid}, serving {procs[-1].router}, "
                    f"lines {' '.join(lines)}")


def _first_look(urls: list[str], ground: Path, png: Path, problems: list[str], *,
                touchdown: float, quiet: bool) -> float:
    """Previews from every board and a contact sheet of them (``png``), before the full download:
    the same path as ``camctl fetch --first-look``. What goes wrong is added to ``problems``.
    Returns the seconds from ``touchdown`` (the edge, monotonic) to the sheet."""
    from camctl.ground import fetch
    from camctl.ground.firstlook import first_look

    try:
        look = first_look(urls, ground, give_up_after_s=30, sheet=png)
        first = look.report
        if look.sheet is None:
            problems.append(f"first-look contact sheet: no previews under {ground}")
    except Exception as exc:  # reported, and the full download still runs; the previews' report
        # comes from fetching them again (what arrived is not sent twice)
        first = fetch(urls, ground, give_up_after_s=30, thumbs_only=True, progress=False)
        problems.append(f"first-look contact sheet: {exc}")
    first_look_s = time.monotonic() - touchdown
    previews = sum(b.thumbs for b in first.boards)
    _say(quiet, f"first look {first_look_s:.2f} s after the touchdown edge: {previews} previews "
                f"from {sum(b.ok for b in first.boards)}/{len(first.boards)} boards -> {png}")
    if not first.ok:
        problems.append(f"previews: {first.summary()}")
    return first_look_s


def _fetch_and_verify(urls: list[str], ground: Path, states: list[dict], problems: list[str], *,
                      quiet: bool) -> list[dict]:
    """Fetch every segment of every board into ``ground`` and verify the download: the table's
    rows; what is wrong is added to ``problems``."""
    from camctl.ground import fetch
    from camctl.store import verify

    report = fetch(urls, ground, give_up_after_s=30, progress=not quiet)
    vr = verify(ground)
    rows, more = summarize(ground, states, report)
    problems += more
    if vr.exit_code != 0:
        errors = "; ".join(vr.errors[:3])
        problems.append(f"verify of the download: exit {vr.exit_code}: {errors}")
    if not report.ok:
        problems.append(f"fetch: {report.summary()}")
    return rows


def _export(ground: Path, out: Path, *, quiet: bool) -> dict[str, list[str]]:
    """MP4s, contact sheet and timeline of the download, by kind."""
    from camctl.ground.export import export_all

    _say(quiet, "exporting MP4s, contact sheet and timeline")
    result = export_all(ground, out, mp4=True, contact_sheet=True, timeline=True,
                        progress=not quiet)
    return {"mp4": [str(p) for p in result.mp4],
            "contact sheet": [str(p) for p in result.contact_sheets],
            "timeline": [str(p) for p in result.timelines]}


def _stop_boards(procs: list[BoardProcess], *, keep: bool) -> None:
    """Stop every board; remove their store folders unless ``keep``."""
    for b in procs:
        b.stop()
    if not keep:
        import shutil

        for b in procs:
            shutil.rmtree(b.store, ignore_errors=True)
