"""One board's daemon: wires config, GPIO lines, the phase machine, cameras, store and publisher.

It owns the process: build, start (store recovery, the resume, the camera check, READY), the main
loop (timers, capture watchdog, STATUS), signals, close, and a ``daemon.json`` beside the store that
names the bound endpoints (so tools and tests can use ``tcp://127.0.0.1:*``). Its parts: the cameras
(:mod:`camctl.board.cameras_fleet`), the flight (:mod:`camctl.board.flight`), the resume into a
flight after a restart (:mod:`camctl.board.rejoin`), what it reports (:mod:`camctl.board.status`)
and the operator's commands (:mod:`camctl.board.commands`).

Example (what ``camctl run`` does)::

    with Daemon(load_config("rig.toml")) as d:
        d.run_forever()          # until SIGTERM / SIGINT
"""

from __future__ import annotations

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
from camctl.board.armkey import KEY_OFF_HOLD_S, ArmKey
from camctl.board.cameras_fleet import CameraFleet
from camctl.board.capture import CameraRunner
from camctl.board.commands import OperatorCommands, read_mock_levels
from camctl.board.config import ARMED, LANDED, SAFE, Config
from camctl.board.events import PhaseMachine, Transition
from camctl.board.flight import FlightRecorder
from camctl.board.gpio import EventLines
from camctl.board.pin_env import env_pin_factory
from camctl.board.rejoin import apply_levels, resume_last_flight
from camctl.board.sdnotify import Notifier
from camctl.board.sensors import SensorError, open_sensor
from camctl.board.sensors.sampler import SensorSampler
from camctl.board.sensors.scene import DropScene
from camctl.board.status import board_status, status_line
from camctl.board.triggers import TriggerArbiter
from camctl.common.ledger import Ledger
from camctl.common.lifecycle import Startable
from camctl.common.records import EventRecord, FaultRecord, Record, SceneRecord
from camctl.exc import CommandRefused, ConfigError, PublisherStartError, StoreError

__all__ = ["Daemon", "read_daemon_info", "running_daemon", "sensor_restart_books",
           "stored_next_batch_seqs", "tune_malloc", "write_daemon_info"]

log = logging.getLogger("camctl.board.daemon")
DAEMON_INFO = "daemon.json"
# below this free on the store's filesystem, STATUS reports the disk full (a frame is ~0.1-1 MB)
DISK_FULL_MB = 1.0
# A GPIO edge reaches Python on lgpio's alert thread, which must take the GIL from whatever thread
# holds it; CPython makes a holder let go only every switch interval (default 5 ms), so with
# capture, encoder callbacks and the store's writer all running Python, an edge waited up to one
# interval (the pre-trigger ring flushed at release kept the store thread busy as the separation
# edge came: 4 ms p99 measured, 1.1 ms at 0.5 ms). Frames are filed by the kernel's edge time either
# way; this bounds how late the rate changes.
SWITCH_INTERVAL_S = 0.0005


def tune_malloc(*, mmap_threshold: int = 1 << 20, arenas: int = 2) -> bool:
    """Keep a long-running board's memory flat (glibc only; a no-op elsewhere).

    Every frame is a multi-megabyte numpy buffer freed a few milliseconds later on another thread.
    glibc raises its mmap threshold after such frees, so later frames come from per-thread heap
    arenas that keep the memory resident after free: the daemon's RSS then grows to hundreds of MB.
    A fixed threshold sends every frame buffer straight back to the kernel, and two arenas bound the
    per-thread caches.
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


def write_daemon_info(store_dir: Path, info: dict[str, Any]) -> None:
    """Say, beside the store, which process serves it on which endpoints (atomically). On a full
    disk the few bytes come from the store's full-disk reserve (:mod:`camctl.store.reserve`);
    OSError when even that fails."""
    from camctl.store.reserve import DAEMON_INFO_ROOM, find_reserve, with_reserve

    tmp = store_dir / f".{DAEMON_INFO}.tmp"

    def write() -> None:
        try:
            tmp.write_text(json.dumps(info))
        except OSError:
            tmp.unlink(missing_ok=True)  # no half-written file left holding the room
            raise
        os.replace(tmp, store_dir / DAEMON_INFO)

    with_reserve(find_reserve(store_dir), DAEMON_INFO_ROOM, write)


def read_daemon_info(store_dir: str | Path) -> dict[str, Any]:
    """What a running daemon wrote about itself (pid, endpoints) beside its store."""
    return json.loads((Path(store_dir) / DAEMON_INFO).read_text())


def running_daemon(store_dir: str | Path) -> dict[str, Any] | None:
    """The ``daemon.json`` of a camctl that is running now on this store (its pid alive), else None.
    """
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


def stored_next_batch_seqs(flight_dir: Path, sensors: list[str]) -> dict[str, int]:
    """Per sensor, the first batch seq above every one its segments in ``flight_dir`` hold (seqs
    only grow in a flight: its newest segment with a batch says it); 0 for none. A resumed
    flight's samplers number from there, as its cameras do
    (:func:`camctl.board.cameras_fleet.stored_next_seqs`)."""
    from camctl.store import iter_samples

    out = dict.fromkeys(sensors, 0)
    for name in sensors:
        for seg in sorted((flight_dir / name).glob("*.mcap"), reverse=True):
            try:
                top = max((b.seq for b in iter_samples(seg)), default=None)
            except Exception as exc:  # never let a damaged segment stop a resume
                log.warning("reading batch seqs of %s: %s", seg, exc)
                continue
            if top is not None:
                out[name] = top + 1
                break
    return out


def sensor_restart_books(flight_dir: Path, sensors: list[str], *, mono_ns: int,
                         wall_ns: int) -> list[dict]:
    """Ledger records that close each sensor's books of the runs before a restart, as
    :func:`camctl.board.resume.restart_books` does for cameras (whose stored count is frames):
    the ledger is flushed once a second and batches are stored as they come, so a killed run's
    last interval never adds up. ``captured - (stored + dropped)`` samples were lost in the
    restart (reason ``restart``) when positive; when negative, that many stored samples are
    counted as captured (their count died with the process)."""
    from camctl.common.ledger import RESTART, read_ledger
    from camctl.common.records import LedgerRecord
    from camctl.store import iter_events, iter_samples

    events: list[dict] = []
    for seg in sorted((flight_dir / "events").glob("*.mcap")):
        try:
            events.extend(iter_events(seg))
        except Exception as exc:  # never let a damaged segment stop a resume
            log.warning("reading %s: %s", seg, exc)
    books = read_ledger(events)
    out = []
    for name in sensors:
        b = books.get(name) or {"captured": 0, "aged_out": 0, "dropped": {}}
        stored = 0
        for seg in sorted((flight_dir / name).glob("*.mcap")):
            try:
                stored += sum(len(batch.t_ns) for batch in iter_samples(seg))
            except Exception as exc:
                log.warning("reading samples of %s: %s", seg, exc)
        diff = b["captured"] - (stored + sum(b["dropped"].values()) + b["aged_out"])
        if diff:
            out.append(LedgerRecord(camera=name, captured=max(0, -diff),
                                    dropped={RESTART: diff} if diff > 0 else {}, name="restart",
                                    since_ns=mono_ns, mono_ns=mono_ns, wall_ns=wall_ns).encode())
    return out


class Daemon(Startable):
    """A board. Build it, :meth:`start` it (or use it as a context manager), :meth:`close` it."""

    def __init__(self, cfg: Config, *, pin_factory: Any = None, notifier: Notifier | None = None,
                 cameras: dict[str, Any] | None = None) -> None:
        from camctl.board.publish.process import PublisherProcess
        from camctl.board.resume import boot_id

        self.cfg = cfg
        self.board = cfg.board
        # stamped on flight, phase and resume records (camctl.board.resume)
        self.boot_id = boot_id()
        self.store_root = Path(cfg.store.dir)
        # made once in the store root at first boot; the ground tells boards apart by it
        # (camctl.board.identity), set by start()
        self.board_id = ""
        self.started_ns = time.monotonic_ns()
        self.notifier = notifier if notifier is not None else Notifier()
        # see open_segments
        self._checking: tuple[str | None, frozenset[Path]] = (None, frozenset())
        self._stop = threading.Event()
        self._start_timers = threading.Event()  # set: the start's timer thread stops
        self._closed = False
        self._started = False
        # the resume record, when this start resumed a flight
        self.resumed: dict[str, Any] | None = None
        self.fleet: CameraFleet | None = None
        self.lines: EventLines | None = None
        self._env_factory: Any = None  # $CAMCTL_PIN_FACTORY's, ours to close (camctl.board.pin_env)
        self.publisher: Any = None
        self.operator: OperatorCommands | None = None
        self.machine = PhaseMachine(cfg.phases, bounce_ms=cfg.gpio.bounce_ms,
                                    on_transition=self._on_transition, on_record=self._on_record)
        # the phase as the sensor samplers see it: written on every transition, read with no lock
        # (a sampler never takes the machine's lock but through the arbiter)
        self._sensor_phase = self.machine.phase
        # the simulated drop's true moments, for the sim sensors (marked by the scene command)
        self.scene = DropScene()
        self.sim_sensors = any(s.backend == "sim" for s in cfg.sensors)
        # GPIO edges and IMU events, first wins (camctl.board.triggers)
        self.triggers = TriggerArbiter(self.machine, cfg.motion, sensors=cfg.sensors,
                                       on_record=self._on_trigger_record)
        self.samplers: dict[str, SensorSampler] = {}
        # a sensor whose device cannot even be built (its driver does not load): name -> why
        self.sensor_errors: dict[str, str] = {}
        # the arm key turned off while running: the main loop reads it (camctl.board.armkey)
        self.arm_key = ArmKey(self.machine, self._arm_key_on,
                              hold_s=max(KEY_OFF_HOLD_S, cfg.gpio.bounce_ms / 1000,
                                         cfg.gpio.min_pulse_ms / 1000))
        self.recorder = FlightRecorder(cfg, boot_id=self.boot_id, phase=lambda: self.machine.phase,
                                       publish=self._publish, wait_cameras=self._wait_cameras,
                                       on_finished=self._on_finished)
        try:
            self.fleet = CameraFleet(cfg, sink=self.recorder.sink,
                                     ledger=lambda: self.recorder.ledger,
                                     on_fault=self._on_fault, cameras=cameras)
            initial = read_mock_levels(self.store_root) if cfg.gpio.backend == "mock" else None
            if pin_factory is None:
                pin_factory = self._env_factory = env_pin_factory(cfg.gpio)
            self.lines = EventLines(cfg.gpio, self._on_edge, pin_factory=pin_factory,
                                    initial=initial)
            self.operator = OperatorCommands(cfg, self.machine, self.lines,
                                             wait_open=self.recorder.wait_open,
                                             wait_saved=self.recorder.wait_disarm_saved,
                                             scene=self.mark_scene if self.sim_sensors else None,
                                             edges=self.triggers.last_edge)
            for scfg in cfg.sensors:
                try:
                    device = open_sensor(scfg, scene=self.scene)
                except (ImportError, OSError, SensorError) as exc:  # the board flies without it
                    self.sensor_errors[scfg.name] = f"{scfg.name} {scfg.backend}: {exc}"
                    continue
                self.samplers[scfg.name] = SensorSampler(
                    device, sink=self.recorder.sink_samples,
                    recording=self._sensors_recording, ledger=lambda: self.recorder.ledger,
                    phase=lambda: self._sensor_phase, on_samples=self.triggers.samples)
            # the network side runs in its own process (camctl.board.publish.process)
            self.publisher = PublisherProcess(self, cfg.publish, on_restart=self._write_info)
        except BaseException:
            self.close()
            raise

    # -- the parts, as tests and the bench see them ------------------------------------------------
    @property
    def runners(self) -> dict[str, CameraRunner]:
        return self.fleet.runners if self.fleet is not None else {}

    @property
    def unavailable(self) -> dict[str, str]:
        """Camera -> why its boot check failed (until it captures)."""
        return self.fleet.unavailable if self.fleet is not None else {}

    @property
    def pool(self) -> Any:
        """The encoder pool every camera shares."""
        return self.fleet.pool if self.fleet is not None else None

    @property
    def store(self) -> Any:
        return self.recorder.store

    @property
    def flight(self) -> str:
        return self.recorder.flight

    @property
    def ledger(self) -> Ledger:
        return self.recorder.ledger

    @property
    def checking(self) -> str | None:
        """The older flight the check after boot is on (its files are held back), or None."""
        return self.recorder.checking

    # -- the Board interface the publisher serves --------------------------------------------------
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
        # the phase turns LANDED before the finishing thread even exists: gate on the store being
        # done
        return self.phase in (SAFE, LANDED) and self.recorder.settled()

    def open_segments(self) -> set[Path]:
        """Files not to serve now: the open flight's segments, and the files of the flight the
        background check is on (a repair rewrites them in place: a download then would mix old and
        new bytes)."""
        return self.recorder.held_back()

    def flights(self) -> list[str]:
        from camctl.store import list_flights

        return list_flights(self.store_root)

    def disk_free_mb(self) -> float:
        try:
            st = os.statvfs(self.store_root)
        except OSError:
            return 0.0
        return st.f_bavail * st.f_frsize / 1e6

    def disk_full(self) -> bool:
        """True when the store's filesystem has less than :data:`DISK_FULL_MB` free (whoever filled
        it): STATUS says so, the board serves on."""
        return self.disk_free_mb() < DISK_FULL_MB

    def status(self) -> dict:
        return board_status(self)

    def command(self, name: str, args: dict) -> dict:
        """Operator commands from ``camctl arm|disarm|event`` (:mod:`camctl.board.commands`)."""
        if self.operator is None:
            raise CommandRefused("the board is not built")
        return self.operator.command(name, args)

    # -- event path --------------------------------------------------------------------------------
    def _on_edge(self, event: str, t_ns: int, line: str) -> None:
        if event == "arm":
            self.arm_key.key_on()  # first: a key-off being applied now comes before this edge
        self.triggers.edge(event, t_ns, line)  # first wins over the IMU (camctl.board.triggers)

    def _on_trigger_record(self, rec: Record) -> None:
        """What the arbiter decided beside the machine: an ignored event, a confirmation, a
        barometric check."""
        if isinstance(rec, EventRecord):
            self._on_record(rec)
            return
        d = rec.encode()
        self.recorder.log_record(d)
        log.info("%s %s: %s", d["kind"], d.get("name"), d,
                 extra={"board": self.board, "flight": self.flight})

    def _sensors_recording(self) -> bool:
        """Samples go to the flight while its files are open and it is not landing: from LANDED
        (and SAFE) on the finish closes the books, so the samplers hand over what they batched
        and count no more."""
        return self._sensor_phase not in (SAFE, LANDED) and self.recorder.recording()

    def mark_scene(self, event: str) -> int:
        """The scene command: ``event`` happens now in the simulated world (the sim sensors feel
        it); its true moment goes to the event log as a ``scene`` record. ValueError for an event
        the scene does not know."""
        t = self.scene.mark(event)
        self.recorder.log_record(SceneRecord(event, mono_ns=t, wall_ns=time.time_ns()).encode())
        return t

    def _arm_key_on(self) -> bool | None:
        """The arm line's level now (True: the key is on), or None without an arm line."""
        lines = self.lines
        if lines is None or "arm" not in lines.events:
            return None
        return lines.is_active("arm")

    def _on_record(self, rec: EventRecord) -> None:
        d = rec.encode()
        self.recorder.log_record(d)
        if rec.outcome != "transition":
            log.info("event=%s source=%s phase=%s outcome=%s", rec.name, rec.source, rec.phase,
                     rec.outcome, extra={"event": rec.name, "phase": rec.phase,
                                         "source": rec.source, "outcome": rec.outcome,
                                         "board": self.board, "flight": self.flight})
        self._publish("event", d)

    def _on_transition(self, tr: Transition) -> None:
        # Runs under the phase machine's lock, on the GPIO (or timer, or operator) thread: no disk
        # I/O here. The capture schedule first: this is the trigger latency. Opening a flight
        # (directories, fsyncs) happens on its own thread, which is safe because ARMED frames only
        # go to the RAM ring.
        fleet, recorder = self.fleet, self.recorder
        assert fleet is not None  # built in __init__, before the lines that move the machine
        self._sensor_phase = tr.phase_to
        if tr.phase_to == ARMED:  # runners are idle in SAFE: nothing is counted between these lines
            fleet.set_ledger(recorder.new_ledger())
            self.triggers.armed()  # a new descent: the detectors reset (takes no lock)
        fleet.set_phase(tr.phase_to, tr.event)
        log.info("phase %s -> %s on %s (%s)", tr.phase_from, tr.phase_to, tr.event, tr.source,
                 extra={"event": tr.event, "phase": tr.phase_to, "phase_from": tr.phase_from,
                        "source": tr.source, "board": self.board, "flight": self.flight})
        if tr.phase_to == ARMED:
            recorder.open_async(fleet.describe())
        rec = tr.record(self.boot_id).encode()
        recorder.log_record(rec)
        recorder.commit()
        self._publish("phase", {"board": self.board, "flight": self.flight, **rec})
        if tr.phase_from == LANDED and tr.phase_to == SAFE:
            recorder.mark_disarmed(tr.wall_ns)
        if tr.phase_to in (LANDED, SAFE):
            recorder.finish_current()

    def _on_fault(self, rec: dict) -> None:
        self.recorder.log_record(rec)
        self._publish("fault", {"board": self.board, **rec})

    def _publish(self, topic: str, body: dict) -> None:
        pub = self.publisher
        if pub is not None:
            pub.publish(topic, body)

    def _wait_cameras(self) -> None:
        if self.fleet is not None:
            # armed again while the last flight closes: its cameras run for the next one
            self.fleet.wait_idle(until=lambda: self.phase not in (SAFE, LANDED))
        # the samplers hand their last batch over at their next read once not recording
        # (_sensors_recording); bounded: a dead sensor reads nothing. The sampler has no public
        # word for "samples batched" (camctl.board.sensors.sampler): its batch list, read only
        deadline = time.monotonic() + 1.0
        while (any(s._t for s in self.samplers.values())
               and time.monotonic() < deadline):
            time.sleep(0.005)

    def _on_finished(self) -> None:
        store = self.recorder.finished_store
        st = self.status()
        stored = sum(int(c.get("frames_stored", 0)) for c in st["cameras"].values())
        flight = getattr(store, "flight", "") or self.flight
        extra = {"board": self.board, "flight": flight, "frames_stored": stored}
        # what the landing could not finish (a disk full beyond the reserve, an I/O error)
        unfinished = list(getattr(store, "unfinished", None) or [])
        if unfinished:
            log.warning("flight %s finished, but NOT every file was closed: %s; serving=%s",
                        flight, "; ".join(unfinished), self.serving(),
                        extra={**extra, "unfinished": unfinished})
        else:
            log.info("flight %s finished: files closed, serving=%s", flight, self.serving(),
                     extra=extra)
        self._publish("status", st)

    # -- lifecycle ---------------------------------------------------------------------------------
    def start(self) -> None:
        """Recover the store, start cameras (idle in SAFE) and the publisher; write daemon.json;
        READY."""
        from camctl.board.identity import board_id
        from camctl.store import list_flights, recover_store, verify_later

        if self._started:
            return
        self._started = True
        fleet = self.fleet
        assert fleet is not None  # __init__ raised otherwise
        # the process is a board now (SWITCH_INTERVAL_S)
        if sys.getswitchinterval() > SWITCH_INTERVAL_S:
            sys.setswitchinterval(SWITCH_INTERVAL_S)
        try:
            self.store_root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            why = exc.strerror or exc
            raise StoreError(f"store.dir {self.store_root}: cannot create it: {why}") from None
        self.board_id = board_id(self.store_root)
        # the publisher process imports while the store recovers and the cameras are checked; it
        # binds at the end (_start_publisher)
        self.publisher.launch()
        # before READY only the last flight's unfinished segments (seconds); every flight after
        # READY
        flights_at_boot = list_flights(self.store_root)
        report = recover_store(self.store_root, notify=self.notifier.notify)
        self._hold_reserve()
        if self.disk_full():
            log.warning("store.dir %s: the disk is full (%.1f MB free): the board starts and "
                        "serves, but records nothing until space is freed", self.store_root,
                        self.disk_free_mb())
        if getattr(report, "exit_code", 0):
            log.warning("store recovery: exit code %s (%s)", report.exit_code, self.store_root)
        self.resumed = resume_last_flight(self.recorder, self.machine, fleet, levels=self._levels,
                                          publish=self._publish)
        # the timers run from the resume, not from READY: the rest of the start (cameras,
        # publisher) takes seconds, and a resumed TOUCHDOWN may have less left than that
        threading.Thread(target=self.machine.tick_until, args=(self._start_timers,),
                         name="camctl-start-timers", daemon=True).start()
        fleet.prepare()
        recording = self.phase not in (SAFE, LANDED)
        if not recording:
            # in SAFE the cameras are closed: open, frame, close
            fleet.check(self.recorder.log_record)
        fleet.start()
        if recording:
            # resumed mid-flight: the runners' own first frames are the check
            fleet.wait_first_frames()
        self._sensor_phase = self.machine.phase  # a resume moved it without callbacks
        if self.recorder.recording():  # resumed into a flight: its batches' seqs and books
            flight_dir = self.store_root / self.flight
            for name, seq in stored_next_batch_seqs(flight_dir, list(self.samplers)).items():
                self.samplers[name].continue_seq(seq)
            for rec in sensor_restart_books(flight_dir, [s.name for s in self.cfg.sensors],
                                            mono_ns=time.monotonic_ns(), wall_ns=time.time_ns()):
                self.recorder.log_record(rec)
        self._start_sensors()
        levels = self._levels()
        apply_levels(self.machine, levels, resumed=self.resumed is not None)
        self.arm_key.start(levels.get("arm"))  # from here on, a key-off is the main loop's
        self._start_publisher()
        self._write_info()
        self._start_timers.set()  # the main loop ticks from here on
        self.notifier.ready(status_line(self.status()))
        # the full check of what existed at start, after READY; not the flight this start resumed
        # recording into: its open segments are being written (the torn ones were repaired before)
        writing = self.flight if self.recorder.recording() else None
        verify_later(self.store_root, [f for f in flights_at_boot if f != writing],
                     on_start=self.recorder.check_started,
                     on_end=lambda _name: self.recorder.check_started(None))
        log.info("board %s ready: %d cameras, gpio %s, store %s, serving on %s", self.board,
                 len(self.runners), self.cfg.gpio.backend, self.store_root,
                 self.publisher.router_endpoint)

    def _start_sensors(self) -> None:
        """Start every sampler; a sensor that does not open is reported (STATUS, a fault record)
        and the board flies on without it (its sampler retries)."""
        failed = dict(self.sensor_errors)
        for name, sampler in self.samplers.items():
            sampler.start()
            if sampler.error is not None:
                failed[name] = sampler.error
        for name, error in failed.items():
            log.error("sensor %s did not open: %s; flying without it", name, error)
            fault = FaultRecord(error="SensorError", message=error, name="sensor_open_failed",
                                mono_ns=time.monotonic_ns(), wall_ns=time.time_ns(),
                                extra={"sensor": name})
            self._on_fault(fault.encode())

    def _hold_reserve(self) -> None:
        """Make sure the store has its full-disk reserve before the first flight (an old store, a
        new card): room for daemon.json and a landing if the OS fills the card before any flight.
        A full disk keeps what it has (a flight grows it later)."""
        from camctl.store.reserve import BASE, Reserve

        if not Reserve(self.store_root).grow(BASE):
            log.warning("store.dir %s: cannot make the full-disk reserve (%d kB): a disk filled "
                        "by another writer may keep a landing from finishing", self.store_root,
                        BASE >> 10)

    def _levels(self) -> dict[str, bool]:
        return self.lines.levels() if self.lines is not None else {}

    def _start_publisher(self) -> None:
        try:
            self.publisher.start()  # it says at start whether CURVE is on
        except PublisherStartError as exc:  # address in use, bad interface, no permission, keys
            if exc.kind == "bind":
                raise ConfigError(f"cannot bind {self.cfg.publish.bind} and "
                                  f"{self.cfg.publish.events}: {exc} (is another camctl running?)",
                                  key="publish") from None
            raise ConfigError(f"the publisher cannot start: {exc}", key="publish") from None

    def _write_info(self) -> None:
        try:
            write_daemon_info(self.store_root, {
                "pid": os.getpid(), "board": self.board,
                "router": self.publisher.router_endpoint, "pub": self.publisher.pub_endpoint,
                "publisher_pid": self.publisher.pid, "config": self.cfg.source,
                "version": __version__})
        except OSError as exc:  # a full disk must not keep the board from serving what it holds
            log.error("cannot write %s in %s (%s): serving anyway; tools that read it (camctl "
                      "status/arm without --connect) will not find this board", DAEMON_INFO,
                      self.store_root, exc.strerror or exc)

    # -- the capture watchdog ----------------------------------------------------------------------
    def capture_ok(self, now_ns: int | None = None) -> bool:
        """True when every capture thread is making progress or is isolated (the watchdog's
        condition)."""
        return self.fleet is None or self.fleet.capture_ok(now_ns)

    def watch_capture(self) -> list[str]:
        """Restart (on a fresh camera object) or isolate every camera whose thread is stuck; never
        waits for the stuck thread. Returns the names handled."""
        return self.fleet.watch(self.phase) if self.fleet is not None else []

    def request_stop(self, *_: Any) -> None:
        self._stop.set()

    def run_forever(self, *, install_signals: bool = True) -> None:
        """The main loop: timers, watchdog, status. Returns after SIGTERM/SIGINT or
        :meth:`request_stop`."""
        if install_signals and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, self.request_stop)
            signal.signal(signal.SIGINT, self.request_stop)
            # re-read the CURVE allow-lists (camctl.common.keys.AllowList)
            if hasattr(signal, "SIGHUP"):
                signal.signal(signal.SIGHUP,
                              lambda *_: self.publisher and self.publisher.reload_keys())
        self.start()
        wd = self.notifier.watchdog_interval_s
        next_wd = next_status = time.monotonic()
        while not self._stop.is_set():
            self.machine.tick()
            self.triggers.tick()  # unconfirmed events
            self.arm_key.poll()
            self.watch_capture()
            now = time.monotonic()
            # withheld while a capture thread is stuck
            if wd and now >= next_wd and self.capture_ok():
                self.notifier.watchdog()
                next_wd = now + wd
            if now >= next_status:
                self.recorder.flush_ledger()
                st = self.status()
                self.notifier.status(status_line(st))
                self._publish("status", st)
                next_status = now + 1.0
            deadline = self.machine.deadline_ns()
            wait = 0.05
            if deadline is not None:
                wait = max(0.0, min(wait, (deadline[0] - time.monotonic_ns()) / 1e9))
            self._stop.wait(wait)
        self.notifier.stopping()
        log.info("stopping board %s", self.board)

    def close(self) -> None:
        """Stop cameras (their last frames go to the store), finish the flight's files, close
        sockets."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        self._start_timers.set()
        if self.fleet is not None:
            self.fleet.stop()
        for sampler in self.samplers.values():  # their last batches go to the store
            sampler.stop()
        self.recorder.close()
        if self.lines is not None:
            self.lines.close()
        if self._env_factory is not None:
            with contextlib.suppress(Exception):  # closing must never raise during shutdown
                self._env_factory.close()
        if self.publisher is not None:
            self.publisher.close()
        if self.fleet is not None:
            self.fleet.close()
        with contextlib.suppress(OSError):
            (self.store_root / DAEMON_INFO).unlink(missing_ok=True)

    def __repr__(self) -> str:
        return f"<Daemon {self.board} {self.phase}{' closed' if self._closed else ''}>"
