"""One board's daemon: wires config, GPIO lines, the phase machine, cameras, store and publisher.

It owns the flight lifecycle: ``arm`` opens a new flight in the store; every event and phase change goes
to the flight's event log and the PUB socket; LANDED (or a disarm) waits for every camera to hand over its
last frame, finishes the flight's files (immutable from then on) and starts serving them. It also owns the
process concerns: signals, sd_notify READY/STATUS/WATCHDOG, and a ``daemon.json`` beside the store that
names the bound endpoints (so tools and tests can use ``tcp://127.0.0.1:*``).

A restart is part of a flight (:meth:`Daemon.start`): the last flight's persisted phase (its event log, via
:mod:`camctl.board.resume`) and the lines' current levels decide where the board resumes; a flight still being
recorded goes on into the same folder, and the gap is logged with its length. Every camera is opened and
checked (one frame) before READY=1; one that cannot open is reported from boot on and retried at ARM. The
watchdog is petted only while every capture thread makes progress (or is a known, isolated fault): a thread
stuck in the backend is abandoned and its camera restarted on a fresh object, at most ``MAX_REPLACEMENTS``
times, then isolated.

With the mock GPIO backend the lines' levels live in ``mock-lines.json`` beside the store, as the wiring
would hold them across a restart of the daemon: ``camctl arm --hold`` / ``camctl event NAME --release``
(command arg ``line``: ``hold`` | ``release``) move a line and leave it there.

Example (what ``camctl run`` does)::

    with Daemon(load_config("rig.toml")) as d:
        d.run_forever()          # until SIGTERM / SIGINT
"""

from __future__ import annotations

import collections
import contextlib
import json
import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

from camctl import __version__
from camctl.board.cameras import make_camera
from camctl.board.capture import CameraRunner
from camctl.board.config import ARMED, LANDED, SAFE, Config
from camctl.board.encode import EncoderPool
from camctl.board.events import EventRecord, PhaseMachine, Transition
from camctl.board.gpio import EventLines
from camctl.board.sdnotify import Notifier
from camctl.common.frames import EncodedFrame
from camctl.common.ledger import Ledger, store_reason
from camctl.exc import CamctlError, CommandRefused, ConfigError, ResumeError, StoreError

__all__ = ["Daemon", "read_daemon_info", "read_mock_levels", "running_daemon", "tune_malloc"]

log = logging.getLogger("camctl.board.daemon")
DAEMON_INFO = "daemon.json"
MOCK_LINES = "mock-lines.json"  # the mock board's line levels (True: active), kept across daemon restarts
DISARMED = "disarmed.json"  # the landed flight that was then disarmed (its own log is finished: it cannot say so)
CHECK_TIMEOUT_S = 15.0  # the boot check of every camera (in parallel): open, one frame, close
MAX_REPLACEMENTS = 3  # a camera whose capture thread hangs is restarted this often, then isolated
# A GPIO edge reaches Python on lgpio's alert thread, which must take the GIL from whatever thread holds it;
# CPython makes a holder let go only every switch interval (default 5 ms), so with capture, encoder callbacks
# and the store's writer all running Python, an edge waited up to one interval (the pre-trigger ring flushed
# at release kept the store thread busy as the separation edge came: 4 ms p99 measured, 1.1 ms at 0.5 ms).
# Frames are filed by the kernel's edge time either way; this bounds how late the rate changes.
SWITCH_INTERVAL_S = 0.0005
# The encoder threads' nice value above the daemon's (camctl.board.encode): the edge's callback thread then waited
# for a core 1.8 ms at p99 instead of 4.2 ms (trigger bench, separation edges, 2 cores), capture unchanged.
ENCODER_NICE = 10


def tune_malloc(*, mmap_threshold: int = 1 << 20, arenas: int = 2) -> bool:
    """Keep a long-running board's memory flat (glibc only; a no-op elsewhere).

    Every frame is a multi-megabyte numpy buffer freed a few milliseconds later on another thread. glibc
    raises its mmap threshold after such frees, so later frames come from per-thread heap arenas that keep
    the memory resident after free: the daemon's RSS then grows to hundreds of MB. A fixed threshold sends
    every frame buffer straight back to the kernel, and two arenas bound the per-thread caches.
    """
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    if not name or not hasattr(os, "sched_getaffinity"):  # not Linux
        return False
    try:
        libc = ctypes.CDLL(name)
        m_mmap_threshold, m_arena_max = -3, -8  # from <malloc.h>
        ok = libc.mallopt(m_mmap_threshold, mmap_threshold) == 1 if mmap_threshold else True
        return bool(libc.mallopt(m_arena_max, arenas) == 1 and ok)
    except (OSError, AttributeError):  # musl has no mallopt
        return False


def read_daemon_info(store_dir: str | Path) -> dict[str, Any]:
    """What a running daemon wrote about itself (pid, endpoints) beside its store."""
    return json.loads((Path(store_dir) / DAEMON_INFO).read_text())


def running_daemon(store_dir: str | Path) -> dict[str, Any] | None:
    """The ``daemon.json`` of a camctl that is running now on this store (its pid alive), else None."""
    try:
        info = read_daemon_info(store_dir)
        pid = int(info["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None  # a daemon killed with -9 leaves its daemon.json behind
    except PermissionError:
        pass  # alive, another user's (the service user)
    return info


def read_mock_levels(store_dir: str | Path) -> dict[str, bool]:
    """The mock board's held line levels (``mock-lines.json`` beside the store); {} when none are held."""
    path = Path(store_dir) / MOCK_LINES
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        log.warning("ignoring %s: %s (mock lines start at rest)", path, exc)
        return {}
    return {str(k): bool(v) for k, v in data.items()} if isinstance(data, dict) else {}


class Daemon:
    """A board. Build it, :meth:`start` it (or use it as a context manager), :meth:`close` it."""

    def __init__(self, cfg: Config, *, pin_factory: Any = None, notifier: Notifier | None = None,
                 cameras: dict[str, Any] | None = None) -> None:
        from camctl.board.publish import Publisher  # imported here: publish pulls in zmq and the thumbnailer
        from camctl.board.resume import boot_id

        self.cfg = cfg
        self.board = cfg.board
        self.boot_id = boot_id()  # stamped on flight, phase and resume records (see camctl.board.resume)
        self.store_root = Path(cfg.store.dir)
        self.started_ns = time.monotonic_ns()
        self.notifier = notifier if notifier is not None else Notifier()
        self.store: Any = None
        self.flight = ""
        self._flights_done: list[str] = []
        self._finishing: threading.Thread | None = None
        self._finished_store: Any = None  # the last store _finish_flight is done with (serving gate)
        self._checking: tuple[str | None, frozenset[Path]] = (None, frozenset())  # see open_segments
        self._disarming: threading.Thread | None = None  # writing the disarm marker (see _save_disarmed)
        self._lock = threading.RLock()
        self._unlogged: collections.deque[dict] = collections.deque(maxlen=1000)
        # hands the event log over from "no store yet" (_unlogged) to the opened store; never held over I/O
        self._log_lock = threading.Lock()
        self.ledger = Ledger()  # the current flight's frame accounting (a new one at every arm)
        self._store_ledger: Ledger | None = None  # the ledger whose records go to self.store's event log
        self._opening: threading.Thread | None = None
        self._finish_started: Any = None  # the store a finishing thread was started for
        self._stop = threading.Event()
        self._closed = False
        self._started = False
        self.resumed: dict[str, Any] | None = None  # the resume record, when this start resumed a flight
        self.unavailable: dict[str, str] = {}  # camera -> why its boot check failed (until it captures)
        self._replacements: dict[str, int] = {}
        self._injected = set(cameras or ())
        self._seeds = {c.name: c.seed or i for i, c in enumerate(cfg.cameras)}
        self.machine = PhaseMachine(cfg.phases, bounce_ms=cfg.gpio.bounce_ms,
                                    on_transition=self._on_transition, on_record=self._on_record)
        # one budget of waiting frames for the whole board, value-ordered across cameras (see encode.py); a
        # camera's own limit (waiting + encoding) is above it, so a TOUCHDOWN camera never drops at its own
        # cap while another camera's ARMED frames wait
        capacity = cfg.encode.max_inflight * max(1, len(cfg.cameras))
        self.pool = EncoderPool(cfg.encode.threads, capacity=capacity, nice=ENCODER_NICE)
        per_camera = capacity + cfg.encode.threads
        self.runners: dict[str, CameraRunner] = {}
        self.lines: EventLines | None = None
        self.publisher: Any = None
        try:
            for cam_cfg in cfg.cameras:
                camera = cameras[cam_cfg.name] if cameras and cam_cfg.name in cameras \
                    else make_camera(cam_cfg, seed=self._seeds[cam_cfg.name])
                self.runners[cam_cfg.name] = CameraRunner(
                    camera, cam_cfg, self.pool, self._sink, on_fault=self._on_fault,
                    max_inflight=per_camera, ledger=self.ledger)
            self.lines = EventLines(cfg.gpio, self._on_edge, pin_factory=pin_factory,
                                    initial=read_mock_levels(self.store_root) if cfg.gpio.backend == "mock" else None)
            self.publisher = Publisher(self, cfg.publish)
        except BaseException:
            self.close()
            raise

    # -- the Board interface the publisher serves --------------------------------------------------------
    @property
    def phase(self) -> str:
        return self.machine.phase

    @property
    def gpio_real(self) -> bool:
        """True when the event lines are real GPIO (the publisher then refuses remote events unless
        ``publish.remote_events``)."""
        return self.cfg.gpio.backend != "mock" and bool(self.cfg.gpio.lines)

    def serving(self) -> bool:
        if self.cfg.publish.serve_during_flight:
            return True
        # the phase turns LANDED before the finishing thread even exists: gate on the store being done with
        store = self.store
        return self.phase in (SAFE, LANDED) and (store is None or store is self._finished_store)

    def open_segments(self) -> set[Path]:
        """Files not to serve now: the open flight's segments, and the files of the flight the background
        check is on (a repair rewrites them in place: a download then would mix old and new bytes)."""
        store, checking = self.store, self._checking[1]
        if store is None or store.finished:
            return set(checking)
        return set(store.open_segments()) | checking

    def _checking_flight(self, flight: str | None) -> None:
        """The background check starts on ``flight`` (its files are held back) or is done with it (None)."""
        files: frozenset[Path] = frozenset()
        if flight is not None:
            with contextlib.suppress(OSError):
                files = frozenset(f for f in (self.store_root / flight).rglob("*") if f.is_file())
        self._checking = (flight, files)  # one tuple, replaced whole: the server thread reads it unlocked

    def flights(self) -> list[str]:
        from camctl.store import list_flights

        return list_flights(self.store_root)

    def disk_free_mb(self) -> float:
        try:
            st = os.statvfs(self.store_root)
        except OSError:
            return 0.0
        return st.f_bavail * st.f_frsize / 1e6

    def status(self) -> dict:
        store_stats = self.store.stats() if self.store is not None else {}
        totals = self.ledger.totals()
        cams = {}
        for name, runner in self.runners.items():
            snap = runner.snapshot()
            st = store_stats.get(name, {})
            led = totals.get(name) or {"captured": 0, "aged_out": 0, "dropped": {}, "stills_missed": 0}
            dropped = dict(led["dropped"])  # this flight's losses by reason: the runner's and the store's
            for reason, n in (st.get("dropped") or {}).items():
                key = store_reason(reason)
                dropped[key] = dropped.get(key, 0) + n
            stored = int(st.get("frames_stored", 0))
            pending = runner.in_pipeline + int(st.get("queued", 0))
            state, last_error = snap["state"], snap["last_error"]
            if runner.isolated:
                state = "isolated"
            elif name in self.unavailable and snap["frames_captured"] == 0:
                state, last_error = "unavailable", self.unavailable[name]
            cams[name] = {
                "state": state,
                "fps": snap["fps"],
                "frames_captured": snap["frames_captured"],
                "frames_stored": int(st.get("frames_stored", 0)),
                "durable_frames": int(st.get("durable_frames", 0)),
                "dropped": sum(dropped.values()),
                "faults": snap["faults"],
                "role": runner.cfg.role,
                "target_fps": snap["target_fps"],
                "schedule": dict(runner.cfg.fps),  # rate by phase: the mission page sizes the disk by it
                "frames_encoded": snap["frames_encoded"],
                "sensor_gaps": snap["sensor_gaps"],
                "pretrigger_flushed": snap["pretrigger_flushed"],
                "ring_frames": snap["ring_frames"],
                "ring_bytes": snap["ring_bytes"],  # with ring_frames: the frame size before anything is stored
                "stills": snap["stills"],
                "restarts": snap["restarts"],
                "bytes_stored": int(st.get("bytes", 0)),
                "dropped_by_reason": dropped,
                "last_error": last_error,
                "activity": runner.activity,
                # captured = stored + dropped + aged_out (+ pending while frames are on their way)
                "ledger": {"captured": led["captured"], "stored": stored, "dropped": sum(dropped.values()),
                           "aged_out": led["aged_out"], "pending": pending,
                           "stills_missed": led["stills_missed"]},
            }
        return {
            "board": self.board,
            "phase": self.phase,
            "flight": self.flight,
            "resumed": self.resumed,
            "disk_free_mb": round(self.disk_free_mb(), 1),
            "serving": self.serving(),
            "checking": self._checking[0],  # the older flight the check after boot is on (held back), or None
            "version": __version__,
            "pid": os.getpid(),
            "uptime_s": round((time.monotonic_ns() - self.started_ns) / 1e9, 3),
            "mono_ns": time.monotonic_ns(),
            "wall_ns": time.time_ns(),
            "events_port": self._events_port(),
            "lines": self._line_levels(),
            "flights": self._flights_done + ([self.flight] if self.flight and self.store is not None
                                             and not self.store.finished else []),
            "cameras": cams,
        }

    def _line_levels(self) -> dict[str, int]:
        """Each event line's level as the board reads it now (1 = active), for the mission page's checks."""
        lines = self.lines
        if lines is None:
            return {}
        levels = {}
        for event in lines.events:
            try:
                levels[event] = int(lines.is_active(event))
            except Exception:  # a line that cannot be read is left out, never a failed STATUS
                continue
        return levels

    def _events_port(self) -> int | None:
        endpoint = getattr(self.publisher, "pub_endpoint", "") or ""
        tail = endpoint.rsplit(":", 1)[-1]
        return int(tail) if endpoint.startswith("tcp://") and tail.isdigit() else None

    def command(self, name: str, args: dict) -> dict:
        """Operator commands from ``camctl arm|disarm|event``. Mock lines are toggled like wiring would."""
        if name in ("arm", "disarm"):
            event = name
        elif name == "event":
            event = args.get("name")
            if not isinstance(event, str) or not event:
                raise CommandRefused("event needs a name (e.g. release, touchdown)")
        else:
            raise CommandRefused(f"unknown command {name!r} (arm, disarm, event)")
        if event not in self.machine.events:
            raise CommandRefused(f"unknown event {event!r} (known: {', '.join(self.machine.events)})")
        before = len(self.machine.history)
        lines = self.lines
        hold = args.get("line")
        if hold is not None:
            return self._hold_line(event, hold, before)
        if lines is not None and self.cfg.gpio.backend == "mock" and event in lines.events:
            lines.pulse(event)  # the real gpiozero edge path, as if the line had toggled
            self._wait_for_record(event)
            if (self.store_root / MOCK_LINES).exists():  # a pulse on a held line leaves it at rest
                self._save_mock_levels()
        else:
            self.machine.handle(event, source="operator")
        opening = self._opening
        if opening is not None:  # an operator's arm returns with the flight open (GPIO edges never wait)
            opening.join(timeout=30)
        rec = self.machine.records[-1] if self.machine.records else None
        return {"phase": self.phase, "event": event, "changed": len(self.machine.history) > before,
                "outcome": rec.outcome if rec is not None else ""}

    def _hold_line(self, event: str, hold: object, before: int) -> dict:
        """Mock lines only: move the line and leave it there (an arm key turned on, a break-wire broken);
        the level is saved beside the store, where a restarted daemon finds it as wiring would hold it."""
        lines = self.lines
        if hold not in ("hold", "release"):
            raise CommandRefused(f"line must be 'hold' or 'release', not {hold!r}")
        if lines is None or self.cfg.gpio.backend != "mock":
            raise CommandRefused("holding a line needs [gpio] backend = \"mock\"; a real line is moved by "
                                 "its wiring")
        if event not in lines.events:
            raise CommandRefused(f"no GPIO line for event {event!r} (lines: {', '.join(lines.events)})")
        n = len(self.machine.records)
        lines.drive(event, hold == "hold")
        self._save_mock_levels()
        if hold == "hold":
            self._wait_for_record(event)
        rec = self.machine.records[-1] if len(self.machine.records) > n else None
        return {"phase": self.phase, "event": event, "changed": len(self.machine.history) > before,
                "outcome": rec.outcome if rec is not None else "", "line": hold}

    def _save_mock_levels(self) -> None:
        from camctl.store.index import write_json_atomic

        if self.lines is None:
            return
        try:
            self.store_root.mkdir(parents=True, exist_ok=True)
            write_json_atomic(self.store_root / MOCK_LINES, self.lines.levels())
        except OSError as exc:
            log.warning("cannot save the mock line levels: %s", exc)

    def _wait_for_record(self, event: str) -> None:
        # with min_pulse_ms the edge is confirmed on a timer thread; wait for it (bounded)
        deadline = time.monotonic() + 1.0 + self.cfg.gpio.min_pulse_ms / 1000
        while time.monotonic() < deadline:
            recs = self.machine.records
            if recs and recs[-1].name == event:
                return
            time.sleep(0.001)

    # -- event path ----------------------------------------------------------------------------------
    def _on_edge(self, event: str, t_ns: int, line: str) -> None:
        self.machine.handle(event, source="gpio", mono_ns=t_ns, line=line)

    def _on_record(self, rec: EventRecord) -> None:
        d = rec.encode()
        self._log_record(d)
        if rec.outcome != "transition":
            log.info("event=%s source=%s phase=%s outcome=%s", rec.name, rec.source, rec.phase, rec.outcome,
                     extra={"event": rec.name, "phase": rec.phase, "source": rec.source, "outcome": rec.outcome,
                            "board": self.board, "flight": self.flight})
        self._publish("event", d)

    def _on_transition(self, tr: Transition) -> None:
        # Runs under the phase machine's lock, on the GPIO (or timer, or operator) thread: no disk I/O here.
        # The capture schedule first: this is the trigger latency. Opening a flight (directories, fsyncs)
        # happens on its own thread, which is safe because ARMED frames only go to the RAM ring.
        if tr.phase_to == ARMED:
            self.ledger = Ledger()  # runners are idle in SAFE: nothing is counted between these lines
            for runner in self.runners.values():
                runner.set_ledger(self.ledger)
        for runner in self.runners.values():
            runner.set_phase(tr.phase_to)
            if tr.event in runner.cfg.stills:
                runner.request_still(tr.event)
        log.info("phase %s -> %s on %s (%s)", tr.phase_from, tr.phase_to, tr.event, tr.source,
                 extra={"event": tr.event, "phase": tr.phase_to, "phase_from": tr.phase_from, "source": tr.source,
                        "board": self.board, "flight": self.flight})
        if tr.phase_to == ARMED:
            t = threading.Thread(target=self._open_flight, args=(self.ledger,), name="camctl-open-flight",
                                 daemon=True)
            self._opening = t
            t.start()
        rec = {"kind": "phase", "name": tr.phase_to, "phase_from": tr.phase_from, "phase_to": tr.phase_to,
               "event": tr.event, "source": tr.source, "mono_ns": tr.mono_ns, "wall_ns": tr.wall_ns,
               "skipped": list(tr.skipped), "boot_id": self.boot_id}
        self._log_record(rec)
        store = self.store
        if store is not None and not store.finished:
            store.commit()
        self._publish("phase", {"board": self.board, "flight": self.flight, **rec})
        if tr.phase_from == LANDED and tr.phase_to == SAFE and self.flight:
            # a small atomic JSON write: on its own thread, never under the phase machine's lock
            t = threading.Thread(target=self._save_disarmed, args=(self.flight, tr.wall_ns), name="camctl-disarmed",
                                 daemon=True)
            self._disarming = t  # close() waits for it: a stop right after a disarm must not lose the marker
            t.start()
        if tr.phase_to in (LANDED, SAFE) and store is not None:
            self._start_finishing(store, self._store_ledger)

    def _start_finishing(self, store: Any, ledger: Ledger | None) -> None:
        """Finish ``store`` on its own thread, once (the transition and a late flight open may both ask)."""
        with self._log_lock:
            if store.finished or store is self._finish_started:
                return
            self._finish_started = store
        t = threading.Thread(target=self._finish_flight, args=(store, ledger), name="camctl-finish", daemon=True)
        self._finishing = t
        t.start()

    def _save_disarmed(self, flight: str, wall_ns: int) -> None:
        from camctl.store.index import write_json_atomic

        try:
            write_json_atomic(self.store_root / DISARMED, {"flight": flight, "wall_ns": wall_ns})
        except OSError as exc:  # a restart would then come up LANDED again: a nuisance, not a loss
            log.warning("cannot record the disarm of flight %s: %s", flight, exc)

    def _disarmed_flight(self) -> str:
        try:
            return str(json.loads((self.store_root / DISARMED).read_text()).get("flight", ""))
        except (OSError, ValueError, AttributeError):
            return ""

    def _sink(self, frame: EncodedFrame) -> bool:
        store = self.store
        if store is None or store.finished:
            return False  # the runner counts it: store_refused
        store.put(frame)  # False: the store dropped it and counted it under its own reason (its drop records)
        return True

    def _on_fault(self, rec: dict) -> None:
        self._log_record(rec)
        self._publish("fault", {"board": self.board, **rec})

    def _log_record(self, rec: dict) -> None:
        with self._log_lock:  # log_event only queues: this lock is never held over I/O
            store = self.store
            if store is not None and not store.finished:
                store.log_event(rec)
            else:
                self._unlogged.append(rec)

    def _flush_ledger(self) -> None:
        """Write what the ledger counted since its last flush to the open flight's event log."""
        with self._log_lock:
            store, ledger = self.store, self._store_ledger
            if store is None or ledger is None or store.finished:
                return
            for rec in ledger.flush():
                store.log_event(rec)

    def _publish(self, topic: str, body: dict) -> None:
        pub = self.publisher
        if pub is not None:
            pub.publish(topic, body)

    # -- flights -------------------------------------------------------------------------------------
    def _open_flight(self, ledger: Ledger) -> None:
        from camctl.store import FlightStore, new_flight_id

        with self._lock:
            flight = new_flight_id(root=self.store_root)
            try:
                store = FlightStore(self.store_root, self.board, flight, self.cfg.store,
                                    cameras=list(self.runners), on_drop=self._on_drop)
            except (OSError, StoreError) as exc:
                # best effort: the flight goes on (cameras still count), nothing is stored; say it loudly
                log.error("cannot open flight %s in %s: %s", flight, self.store_root, exc)
                self._publish("fault", {"board": self.board, "kind": "store", "message": str(exc)})
                return
            with self._log_lock:
                self.store, self.flight, self._store_ledger = store, flight, ledger
                while self._unlogged:
                    store.log_event(self._unlogged.popleft())
            store.log_event({"kind": "flight", "name": "open", "board": self.board, "flight": flight,
                             "mono_ns": time.monotonic_ns(), "wall_ns": time.time_ns(), "boot_id": self.boot_id,
                             "cameras": {n: {"role": r.cfg.role, "size": list(r.cfg.size),
                                             "fps": dict(r.cfg.fps)} for n, r in self.runners.items()}})
            store.commit()
        if self.machine.phase in (SAFE, LANDED):  # disarmed (or landed) while the files were being opened
            self._start_finishing(store, ledger)

    def _on_drop(self, rec: dict) -> None:
        self._publish("disk", {"board": self.board, **rec})

    def _finish_flight(self, store: Any, ledger: Ledger | None) -> None:
        for runner in self.runners.values():
            if runner.isolated:  # stuck in its backend: its last frames are not coming
                continue
            if not runner.wait_idle(timeout=30):
                log.warning("camera %s did not stop in time; finishing the flight without its last frames",
                            runner.name)
        if ledger is not None and not store.finished:  # the last interval, before the files close
            for rec in ledger.flush():
                store.log_event(rec)
        try:
            store.finish()
        except Exception as exc:  # never let a finish error kill the daemon; recovery repairs on restart
            log.error("finishing flight %s failed: %s", store, exc)
        with self._lock:
            if self.flight and self.flight not in self._flights_done:
                self._flights_done.append(self.flight)
            self._finishing = None
            self._finished_store = store
        st = self.status()
        log.info("flight %s finished: files closed, serving=%s", self.flight, self.serving(),
                 extra={"board": self.board, "flight": self.flight,
                        "frames_stored": sum(int(c.get("frames_stored", 0)) for c in st["cameras"].values())})
        self._publish("status", st)

    # -- lifecycle -----------------------------------------------------------------------------------
    def start(self) -> None:
        """Recover the store, start cameras (idle in SAFE) and the publisher; write daemon.json; READY."""
        from camctl.store import list_flights, recover_store, verify_later

        if self._started:
            return
        self._started = True
        if sys.getswitchinterval() > SWITCH_INTERVAL_S:  # the process is a board now (see SWITCH_INTERVAL_S)
            sys.setswitchinterval(SWITCH_INTERVAL_S)
        try:
            self.store_root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"store.dir {self.store_root}: cannot create it: {exc.strerror or exc}") from None
        # before READY only the last flight's unfinished segments (seconds); every flight after READY
        flights_at_boot = list_flights(self.store_root)
        report = recover_store(self.store_root, notify=self.notifier.notify)
        if getattr(report, "exit_code", 0):
            log.warning("store recovery: exit code %s (%s)", report.exit_code, self.store_root)
        self._resume()
        preparing = [threading.Thread(target=r.prepare, name=f"camctl-prepare-{r.name}")
                     for r in self.runners.values()]
        for t in preparing:
            t.start()
        for t in preparing:
            t.join()
        recording = self.phase not in (SAFE, LANDED)
        if not recording:
            self._check_cameras()  # in SAFE the cameras are closed: open each, take a frame, close it
        for runner in self.runners.values():
            runner.start()
        if recording:
            self._wait_first_frames()  # resumed mid-flight: the runners' own first frames are the check
        self._apply_levels()
        try:
            self.publisher.start()  # it says at start whether CURVE is on
        except Exception as exc:  # zmq.ZMQError: address in use, bad interface, no permission
            if isinstance(exc, CamctlError):
                raise
            raise ConfigError(f"cannot bind {self.cfg.publish.bind} and {self.cfg.publish.events}: {exc} "
                              f"(is another camctl running?)", key="publish") from None
        self._write_info()
        self.notifier.ready(self._status_line())
        # the full check of what existed at start, after READY; not the flight this start resumed recording
        # into: its open segments are being written (the torn ones were repaired before the resume)
        writing = self.flight if self.store is not None and not self.store.finished else None
        verify_later(self.store_root, [f for f in flights_at_boot if f != writing], on_start=self._checking_flight,
                     on_end=lambda _name: self._checking_flight(None))
        log.info("board %s ready: %d cameras, gpio %s, store %s, serving on %s", self.board,
                 len(self.runners), self.cfg.gpio.backend, self.store_root, self.publisher.router_endpoint)

    # -- restart: resume, camera check ---------------------------------------------------------------
    def _resume(self) -> None:
        """Re-enter the phase the last flight's event log ended in (see the module docstring)."""
        from camctl.board.resume import last_flight_state
        from camctl.store import FlightStore

        try:
            state = last_flight_state(self.store_root, self.cfg.phases)
        except Exception as exc:  # an unreadable log must not keep the board down: it starts SAFE
            log.error("cannot read the last flight's state in %s: %s; starting SAFE", self.store_root, exc)
            return
        if state is None or state.phase == SAFE:
            return
        if state.phase == LANDED and self._disarmed_flight() == state.flight:
            return  # landed, then disarmed: the board was SAFE when it stopped
        now_wall, now_mono = time.time_ns(), time.monotonic_ns()

        def mono(mono_ns: int | None, wall_ns: int | None) -> int | None:
            """A persisted time on this boot's monotonic clock: as stamped when it is this boot (the daemon
            alone restarted), else from the wall clock (a reboot restarted the monotonic clock)."""
            if state.same_boot:
                return None if mono_ns is None else min(mono_ns, now_mono)
            return None if wall_ns is None else now_mono - max(0, now_wall - wall_ns)

        entered = mono(state.entered_mono_ns, state.entered_wall_ns) or now_mono
        descent = mono(state.descent_mono_ns, state.descent_wall_ns)
        gap_s = state.gap_s(now_wall, now_mono)
        rec = {"kind": "resume", "name": state.phase, "flight": state.flight, "phase": state.phase,
               "gap_s": round(gap_s, 3), "clock": "monotonic" if state.same_boot else "wall (rebooted)",
               "last_seen_wall_ns": state.last_seen_wall_ns,
               "entered_wall_ns": state.entered_wall_ns, "entered_mono_ns": entered, "descent_mono_ns": descent,
               "resumes": state.resumes + 1, "pid": os.getpid(),
               "levels": self.lines.levels() if self.lines is not None else {},
               "mono_ns": now_mono, "wall_ns": now_wall, "boot_id": self.boot_id}
        if state.phase == LANDED:  # landed stays landed: serve it, record nothing, wait for a disarm
            try:
                self.machine.resume(LANDED, entered_ns=entered)
            except ResumeError as exc:
                log.error("not resuming flight %s: %s", state.flight, exc)
                return
            self.flight = state.flight
            self._flights_done.append(state.flight)
            self.resumed = rec
            self._close_landed_books(state.flight, now_mono, now_wall)
            log.info("flight %s had landed; resuming LANDED (disarm for the next flight)", state.flight)
            return
        try:
            store = FlightStore(self.store_root, self.board, state.flight, self.cfg.store,
                                cameras=list(self.runners), on_drop=self._on_drop, resume=True)
        except (OSError, StoreError) as exc:
            log.error("cannot resume flight %s in %s: %s; starting SAFE", state.flight, self.store_root, exc)
            return
        try:
            self.machine.resume(state.phase, entered_ns=entered, descent_started_ns=descent)
        except ResumeError as exc:  # an edge during start-up moved the machine first: that flight wins
            log.error("not resuming flight %s: %s", state.flight, exc)
            store.close()
            return
        self.ledger = Ledger()  # the books of this run of the flight (frames in flight at the crash are gone)
        with self._log_lock:
            self.store, self.flight, self._store_ledger = store, state.flight, self.ledger
        for runner in self.runners.values():
            runner.set_ledger(self.ledger)
            runner.set_phase(state.phase)
        self.resumed = rec
        store.log_event(rec)
        # what the dead process left in RAM, or stored without counting it, closes the books of the flight so far
        from camctl.board.resume import restart_books

        for books in restart_books(self.store_root / state.flight, list(self.runners), mono_ns=now_mono,
                                   wall_ns=now_wall):
            store.log_event(books)
        store.commit()
        self._publish("phase", {"board": self.board, "flight": self.flight, **rec})
        log.warning("resumed flight %s in %s after a gap of %.3f s (restart %d of this flight)",
                    state.flight, state.phase, gap_s, rec["resumes"])

    def _close_landed_books(self, flight: str, mono_ns: int, wall_ns: int) -> None:
        """A flight killed between LANDED and its finish lost its last ledger interval: write the records that
        close its books (:func:`camctl.board.resume.restart_books`) and finish it again. Nothing when they close."""
        from camctl.board.resume import restart_books
        from camctl.store import FlightStore

        books = restart_books(self.store_root / flight, list(self.runners), mono_ns=mono_ns, wall_ns=wall_ns)
        if not books:
            return
        try:
            store = FlightStore(self.store_root, self.board, flight, self.cfg.store, cameras=list(self.runners),
                                resume=True)
            try:
                for rec in books:
                    store.log_event(rec)
                store.finish()
            finally:
                store.close()
        except (OSError, StoreError) as exc:  # the books stay open (ls says so); the flight is still served
            log.warning("cannot close the books of landed flight %s: %s", flight, exc)

    def _apply_levels(self) -> None:
        """What the lines say now, after a resume: an edge that came while the daemon was down still
        counts (gpiozero calls nobody for a level that already holds)."""
        lines = self.lines
        if lines is None:
            return
        levels = lines.levels()
        if self.resumed is None:
            if levels.get("arm"):
                log.warning("the arm line is active at start: not arming (turn it off and on to arm)")
            return
        if self.phase == ARMED and "arm" in levels and not levels["arm"]:
            self.machine.handle("disarm", source="resume")  # the arm key was turned off while we were down
            return
        if self.phase in (SAFE, LANDED):
            return
        for event, active in levels.items():
            if active and event not in ("arm", "disarm"):
                self.machine.handle(event, source="resume")

    def _check_cameras(self) -> None:
        """Open every camera, take one frame, close it; all at once, bounded. A camera that fails is
        reported (status, STATUS line) and retried when the board arms; the others come up regardless."""
        from camctl.board.cameras import make_camera

        results: dict[str, str] = {}

        def check(name: str, runner: CameraRunner) -> None:
            # a fresh object for the check (the runner's own is opened at ARM), except an injected one
            cam = runner.camera if name in self._injected else make_camera(runner.cfg, seed=self._seeds[name])
            try:
                cam.open()
                frame = cam.capture(max(1.0, 3.0 / max(cam.fps, 0.1)))
                results[name] = "" if frame is not None else "no frame"
                if frame is not None and frame.release is not None:  # lent pixels: give the buffer back, or
                    frame.release()  # close waits for it and leaves the camera acquired (Frame.release)
            except Exception as exc:  # any backend error: this camera is unavailable, not the board
                results[name] = f"{type(exc).__name__}: {exc}"
            finally:
                with contextlib.suppress(Exception):
                    cam.close()

        threads = {name: threading.Thread(target=check, args=(name, r), name=f"camctl-check-{name}",
                                          daemon=True) for name, r in self.runners.items()}
        for t in threads.values():
            t.start()
        deadline = time.monotonic() + CHECK_TIMEOUT_S
        for name, t in threads.items():
            t.join(max(0.0, deadline - time.monotonic()))
            why = results.get(name, f"no answer within {CHECK_TIMEOUT_S:g} s")
            if why:
                self.unavailable[name] = why
                log.error("camera %s unavailable at boot: %s (retried at ARM)", name, why)
                self._log_record({"kind": "fault", "camera": name, "error": "CameraCheck", "message": why,
                                  "mono_ns": time.monotonic_ns(), "wall_ns": time.time_ns()})

    def _wait_first_frames(self) -> None:
        deadline = time.monotonic() + CHECK_TIMEOUT_S
        waiting = dict(self.runners)
        while waiting and time.monotonic() < deadline:
            for name, r in list(waiting.items()):
                if r.stats.frames_captured or r.stats.faults:
                    if not r.stats.frames_captured:
                        self.unavailable[name] = r.stats.last_error or "fault at resume"
                    del waiting[name]
            time.sleep(0.01)
        for name in waiting:
            self.unavailable[name] = f"no frame within {CHECK_TIMEOUT_S:g} s of the resume"

    # -- the capture watchdog -------------------------------------------------------------------------
    def capture_ok(self, now_ns: int | None = None) -> bool:
        """True when every capture thread is making progress or is isolated (the watchdog's condition)."""
        now = time.monotonic_ns() if now_ns is None else now_ns
        return all(r.isolated or r.overdue_s(now) == 0.0 for r in self.runners.values())

    def watch_capture(self) -> list[str]:
        """Restart (on a fresh camera object) or isolate every camera whose thread is stuck; never waits
        for the stuck thread. Returns the names handled."""
        from camctl.board.cameras import make_camera

        handled = []
        for name, runner in list(self.runners.items()):
            overdue = 0.0 if runner.isolated else runner.overdue_s()
            if not overdue:
                continue
            handled.append(name)
            n = self._replacements.get(name, 0)
            camera = None
            if n < MAX_REPLACEMENTS and name not in self._injected:  # an injected camera has no twin
                try:
                    camera = make_camera(runner.cfg, seed=self._seeds[name])
                except Exception as exc:  # the backend cannot even build a camera object: isolate it
                    log.error("camera %s: cannot build a fresh camera object: %s", name, exc)
            action = "isolated" if camera is None else "restarted"
            msg = (f"capture thread stuck in {runner.activity!r} for {overdue:.1f} s past its budget; "
                   f"camera {action}")
            log.error("camera %s: %s", name, msg)
            self._on_fault({"kind": "fault", "camera": name, "error": "CaptureHung", "message": msg,
                            "activity": runner.activity, "mono_ns": time.monotonic_ns(),
                            "wall_ns": time.time_ns()})
            if action == "isolated":
                runner.isolated = True
                runner.stats.last_error = msg
                continue
            runner.abandon()
            self._replacements[name] = n + 1
            fresh = CameraRunner(camera, runner.cfg, self.pool, self._sink, on_fault=self._on_fault,
                                 max_inflight=self.cfg.encode.max_inflight)
            fresh.stats.faults, fresh.stats.restarts = runner.stats.faults + 1, runner.stats.restarts + 1
            fresh.stats.last_error = msg
            fresh.set_phase(self.phase)
            self.runners[name] = fresh
            fresh.start()
        return handled

    def _write_info(self) -> None:
        info = {"pid": os.getpid(), "board": self.board, "router": self.publisher.router_endpoint,
                "pub": self.publisher.pub_endpoint, "config": self.cfg.source, "version": __version__}
        tmp = self.store_root / f".{DAEMON_INFO}.tmp"
        tmp.write_text(json.dumps(info))
        os.replace(tmp, self.store_root / DAEMON_INFO)

    def _status_line(self) -> str:
        st = self.status()
        frames = " ".join(f"{n}={c['frames_stored']}/{c['durable_frames']}" for n, c in st["cameras"].items())
        line = f"{st['phase']} flight={st['flight'] or '-'} stored/durable {frames} free={st['disk_free_mb']}MB"
        bad = [f"{n}={c['state']}" for n, c in st["cameras"].items() if c["state"] in ("unavailable", "isolated")]
        return line + (f" cameras down: {' '.join(bad)}" if bad else "")

    def request_stop(self, *_: Any) -> None:
        self._stop.set()

    def run_forever(self, *, install_signals: bool = True) -> None:
        """The main loop: timers, watchdog, status. Returns after SIGTERM/SIGINT or :meth:`request_stop`."""
        if install_signals and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, self.request_stop)
            signal.signal(signal.SIGINT, self.request_stop)
            if hasattr(signal, "SIGHUP"):  # re-read the CURVE allow-lists (camctl.common.keys.AllowList)
                signal.signal(signal.SIGHUP, lambda *_: self.publisher and self.publisher.reload_keys())
        self.start()
        wd = self.notifier.watchdog_interval_s
        next_wd = next_status = time.monotonic()
        while not self._stop.is_set():
            self.machine.tick()
            self.watch_capture()
            now = time.monotonic()
            if wd and now >= next_wd and self.capture_ok():  # withheld while a capture thread is stuck
                self.notifier.watchdog()
                next_wd = now + wd
            if now >= next_status:
                self._flush_ledger()
                self.notifier.status(self._status_line())
                self._publish("status", self.status())
                next_status = now + 1.0
            deadline = self.machine.deadline_ns()
            wait = 0.05
            if deadline is not None:
                wait = max(0.0, min(wait, (deadline[0] - time.monotonic_ns()) / 1e9))
            self._stop.wait(wait)
        self.notifier.stopping()
        log.info("stopping board %s", self.board)

    def close(self) -> None:
        """Stop cameras (their last frames go to the store), finish the flight's files, close sockets."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        for runner in self.runners.values():
            if runner.isolated:  # stuck in its backend: joining or closing it could hang the shutdown too
                runner.abandon()
            else:
                runner.stop()
        opening = self._opening
        if opening is not None:
            opening.join(timeout=30)
        finishing = self._finishing
        if finishing is not None:
            finishing.join(timeout=30)
        disarming = self._disarming
        if disarming is not None:
            disarming.join(timeout=10)
        if self.store is not None and not self.store.finished:
            self._flush_ledger()
            try:
                self.store.finish()
            except Exception as exc:
                log.error("finishing the store at shutdown: %s", exc)
        if self.lines is not None:
            self.lines.close()
        if self.publisher is not None:
            self.publisher.close()
        self.pool.close()
        with contextlib.suppress(OSError):
            (self.store_root / DAEMON_INFO).unlink(missing_ok=True)

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self) -> Daemon:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Daemon {self.board} {self.phase}{' closed' if self._closed else ''}>"

