"""Bench figure ``realstack``: the capture path's CPU per frame on the real camera stack, at the
pi5-dropbox rig's camera settings, and the share of a core it needs at the rig's ARMED and DESCENT
rates.

Real picamera2 on libcamera's virtual camera (:mod:`camctl.testing.realstack`), driven by the
backend (:class:`~camctl.board.cameras.picamera2.Picamera2Camera`, software path) at the rig's size,
sensor rate and controls (``hardware/rigs/pi5-dropbox.toml``). CPU is counted per thread (each
thread's CPU clock, ns) over a run: every thread of this process except the virtual camera's frame
generator (libcamera names it ``VirtualCamera``), whose work a Pi's ISP does in hardware. What is
counted: the capturing thread (``capture()``: the request, its metadata, the thinning, the lend of
the buffer and its release), picamera2's listener thread (request completion, metadata conversion,
the hop to the capturing thread) and libcamera's ``CameraManager`` thread. Not counted: encoding
(``encode_scaling``), the store.

- ``real_frame_cpu_ms``: CPU ms per delivered frame, every sensor frame delivered (DESCENT rate).
- ``real_thinned_cpu_ms``: CPU ms per sensor frame the backend thins (ARMED rate on the sensor's
  DESCENT rate): (CPU - delivered x ``real_frame_cpu_ms``) / thinned frames.
- ``real_armed_core_share`` / ``real_descent_core_share``: the share of one core of this machine
  (0.12 = 12 %) the capture path needs at the rig's ARMED and DESCENT rates, from the two costs
  (:func:`core_share`).
- ``real_descent_keepup_quota``: frames delivered / frames due at DESCENT rate in a child process
  held by a cgroup v1 CPU quota to one Pi 5 core's worth of this machine (:data:`PI5_CORE_SHARE`);
  the frame generator is moved out of the quota.

The Pi assumption (:data:`PI5_CORE_SHARE`, docs/bench.md): one Raspberry Pi 5 core (Cortex-A76,
2.4 GHz) does the work of 0.77 of a core of the machine the README's figures come from, by 7-Zip's
single-thread benchmark rating.

``python -m camctl.bench.realstack quota CGROUP SECONDS``: the quota child (private).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import os
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from camctl.bench.harness import Ctx, Figure, Metric

__all__ = ["FIGURE", "FRAME_THREADS", "PI5_CORE_SHARE", "RIG", "core_share", "pi_share",
           "quota_us", "thread_cpu"]

RIG = Path(__file__).resolve().parents[2] / "hardware" / "rigs" / "pi5-dropbox.toml"
# libcamera's virtual pipeline generates each frame in its own thread (a libcamera Thread, named by
# the pipeline handler): a Pi's ISP does that work, so it is not the capture path's
FRAME_THREADS = ("VirtualCamera",)

# One Pi 5 core in cores of this machine, by 7-Zip's single-thread benchmark (LZMA, integer, branchy
# and memory-bound, as interpreter code is): Raspberry Pi 5 at 2.4 GHz 3160 MIPS (sbc-bench
# results collected at https://gist.github.com/arkadijs/117934b6a3f011dc7024193bcb0b82a8), this
# machine (Xeon, 2 KVM cores at 2.6 GHz) 4125 MIPS R/U (`7z b -mmt1`, p7zip 16.02: rating per CPU
# second actually given, so the shared machine's load drops out).
PI5_7ZIP_MIPS = 3160
HERE_7ZIP_MIPS = 4125
PI5_CORE_SHARE = PI5_7ZIP_MIPS / HERE_7ZIP_MIPS
QUOTA_PERIOD_US = 100_000
CGROUP_CPU = Path("/sys/fs/cgroup/cpu")


def core_share(delivered_fps: float, sensor_fps: float, frame_ms: float,
               thinned_ms: float) -> float:
    """The share of one core (1.0 = a whole core) the capture path needs delivering
    ``delivered_fps`` of a sensor at ``sensor_fps``: delivered frames at ``frame_ms`` each, the
    others (thinned) at ``thinned_ms``."""
    if not 0 < delivered_fps <= sensor_fps:
        raise ValueError(f"need 0 < delivered {delivered_fps:g} <= sensor {sensor_fps:g} fps")
    thinned_fps = sensor_fps - delivered_fps
    return (delivered_fps * frame_ms + thinned_fps * thinned_ms) / 1000.0


def pi_share(share_here: float, pi_core: float = PI5_CORE_SHARE) -> float:
    """The same work as a share of one Pi core, a Pi core doing ``pi_core`` of this machine's."""
    return share_here / pi_core


def quota_us(cores: float, period_us: int = QUOTA_PERIOD_US) -> int:
    """``cpu.cfs_quota_us`` holding a group to ``cores`` cores per ``period_us``."""
    return max(1000, round(cores * period_us))


# --- CPU per thread -------------------------------------------------------------------------------
def _thread_clock_ns(tid: int) -> int:
    """CPU time of thread ``tid`` of this process in ns: the kernel's per-thread CPU clock
    (``MAKE_THREAD_CPUCLOCK(tid, CPUCLOCK_SCHED)``; what ``pthread_getcpuclockid`` returns), exact
    to the ns where ``/proc/self/task/TID/stat`` counts 10 ms ticks."""
    return time.clock_gettime_ns((~tid << 3) | 6)


def _stat_ticks_ns(tid: int) -> int:
    text = Path(f"/proc/self/task/{tid}/stat").read_text()
    fields = text[text.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) * 1_000_000_000 // os.sysconf("SC_CLK_TCK")


def thread_cpu() -> dict[int, tuple[str, int]]:
    """``{tid: (comm, CPU ns)}`` of every thread of this process now."""
    out = {}
    for name in os.listdir("/proc/self/task"):
        tid = int(name)
        try:
            comm = Path(f"/proc/self/task/{tid}/comm").read_text().strip()
            try:
                cpu = _thread_clock_ns(tid)
            except OSError:  # a kernel without per-thread clocks for other threads
                cpu = _stat_ticks_ns(tid)
        except (OSError, ValueError):  # the thread ended meanwhile
            continue
        out[tid] = (comm, cpu)
    return out


@dataclass
class Run:
    """One measured run of the backend: frames delivered and thinned, CPU by role."""

    delivered: int = 0
    thinned: int = 0
    due: int = 0  # sensor slots from the first delivered frame to the last (seq span)
    seconds: float = 0.0
    cpu_ns: int = 0  # the process less the frame generator
    generator_ns: int = 0
    by_role: dict[str, int] = field(default_factory=dict)


def _rig() -> Any:
    from camctl.board.config import load_config

    if not RIG.exists():
        raise FileNotFoundError(f"{RIG} is missing (camctl is not run from its checkout)")
    cfg = load_config(RIG)
    cams = [c for c in cfg.cameras if c.backend == "picamera2"]
    if not cams:
        raise ValueError(f"{RIG.name} has no picamera2 camera")
    return cams[0]


def _camera(cfg: Any, mod: ModuleType) -> Any:
    import dataclasses

    from camctl.board.cameras.picamera2 import Picamera2Camera

    # the software path whatever the rig says (the virtual camera has no hardware encoder)
    return Picamera2Camera.from_config(dataclasses.replace(cfg, encoder="software"), picamera2=mod)


def _picamera2_threads(mod: ModuleType, cam: Any) -> dict[int, str]:
    """picamera2's own threads by tid: the CameraManager listener (libcamera's completed requests,
    for every camera) and the camera's event loop (the NullPreview thread: hands each request to
    ``capture_request``)."""
    out = {}
    with contextlib.suppress(AttributeError):
        out[mod.Picamera2._cm.thread.native_id] = "picamera2 listener"
    with contextlib.suppress(AttributeError):
        out[cam._picam2._preview.thread.native_id] = "picamera2 event loop"
    return out


def measure(mod: ModuleType, cfg: Any, fps: float, seconds: float) -> Run:
    """Open the rig's camera, deliver ``fps`` (the sensor at the rig's highest rate) for
    ``seconds`` after a warm-up, and count the CPU of every thread but the frame generator."""
    cam = _camera(cfg, mod)
    run = Run()
    with cam:
        cam.set_fps(fps)
        for _ in range(3):  # warm-up: the rate applies, first-frame costs are paid
            frame = cam.capture(timeout_s=5.0)
            if frame.release is not None:
                frame.release()
        roles = {threading.get_native_id(): "capture", **_picamera2_threads(mod, cam)}
        thinned0 = cam.thinned
        before = thread_cpu()
        p0 = time.process_time_ns()
        t0 = time.monotonic()
        first = last = None
        while time.monotonic() - t0 < seconds:
            frame = cam.capture(timeout_s=5.0)
            if frame.release is not None:
                frame.release()
            run.delivered += 1
            first = frame.seq if first is None else first
            last = frame.seq
        p1 = time.process_time_ns()
        after = thread_cpu()
        run.seconds = time.monotonic() - t0
        run.thinned = cam.thinned - thinned0
    assert first is not None and last is not None
    run.due = last - first + 1
    for tid, (comm, cpu) in after.items():
        delta = cpu - before.get(tid, (comm, 0))[1]
        if comm in FRAME_THREADS:
            run.generator_ns += delta
            continue
        role = roles.get(tid) or (f"libcamera {comm}" if comm == "CameraManager" else "other")
        run.by_role[role] = run.by_role.get(role, 0) + delta
    if not any(comm in FRAME_THREADS for comm, _ in after.values()):
        raise RuntimeError(f"no frame generator thread ({', '.join(FRAME_THREADS)}) among "
                           f"{sorted({c for c, _ in after.values()})}: libcamera renamed it?")
    run.cpu_ns = (p1 - p0) - run.generator_ns
    return run


def late_losses(mod: ModuleType, cfg: Any, *, queue: bool, frames: int) -> float:
    """Frames lost per 100 delivered at the rig's DESCENT rate when the capture thread works 0.3 of
    a frame period per frame and comes back 1.5 periods late every 10th (a GC pause, an encoder
    hand-off), with picamera2's ``queue`` on or off (picamera2_requests.QUEUE)."""
    cam = _camera(cfg, mod)
    cam.queue = queue
    period = 1.0 / cfg.fps_for("DESCENT")
    seqs = []
    with cam:
        cam.set_fps(cfg.fps_for("DESCENT"))
        for i in range(frames):
            frame = cam.capture(timeout_s=5.0)
            if frame.release is not None:
                frame.release()
            seqs.append(frame.seq)
            until = time.perf_counter() + period * (1.5 if i % 10 == 5 else 0.3)
            while time.perf_counter() < until:  # busy, as a capture thread at work is
                pass
    lost = sum(b - a - 1 for a, b in itertools.pairwise(seqs))
    return 100.0 * lost / len(seqs)


def _roles(run: Run) -> str:
    per = max(1, run.delivered + run.thinned)
    return ", ".join(f"{k} {v / 1e6 / per:.3f}" for k, v in sorted(run.by_role.items()) if v)


# --- the quota child ------------------------------------------------------------------------------
def _quota_child(cgroup: Path, seconds: float) -> dict[str, Any]:
    """In the quota group from the start (every thread made after inherits it); the frame
    generator is moved back to the parent group once it runs."""
    home = CGROUP_CPU / _cpu_cgroup_path().lstrip("/")
    (cgroup / "cgroup.procs").write_text(f"{os.getpid()}\n")
    from camctl.testing.realstack import load_picamera2

    mod = load_picamera2()
    cfg = _rig()
    descent = cfg.fps_for("DESCENT")
    cam = _camera(cfg, mod)
    with cam:
        cam.set_fps(descent)
        frame = cam.capture(timeout_s=10.0)  # streaming: the frame generator runs
        if frame.release is not None:
            frame.release()
        moved = 0
        for tid, (comm, _) in thread_cpu().items():
            if comm in FRAME_THREADS:
                (home / "tasks").write_text(f"{tid}\n")
                moved += 1
        for _ in range(3):
            frame = cam.capture(timeout_s=10.0)
            if frame.release is not None:
                frame.release()
        seqs = []
        stat0 = _cpu_stat(cgroup)
        before = thread_cpu()
        p0 = time.process_time_ns()
        t0 = time.monotonic()
        while time.monotonic() - t0 < seconds:
            frame = cam.capture(timeout_s=10.0)
            if frame.release is not None:
                frame.release()
            seqs.append(frame.seq)
        cpu_ns = time.process_time_ns() - p0
        wall_s = time.monotonic() - t0
        after = thread_cpu()
        stat1 = _cpu_stat(cgroup)
    generator_ns = sum(cpu - before.get(tid, (comm, 0))[1] for tid, (comm, cpu) in after.items()
                       if comm in FRAME_THREADS)
    cpu_s = (cpu_ns - generator_ns) / 1e9
    return {"delivered": len(seqs), "due": seqs[-1] - seqs[0] + 1, "moved": moved,
            "cpu_share": cpu_s / wall_s, "fps": descent,
            "periods": stat1.get("nr_periods", 0) - stat0.get("nr_periods", 0),
            "throttled": stat1.get("nr_throttled", 0) - stat0.get("nr_throttled", 0)}


def _cpu_stat(group: Path) -> dict[str, int]:
    return {k: int(v) for k, v in (line.split() for line in
                                   (group / "cpu.stat").read_text().splitlines() if line.strip())}


def _cpu_cgroup_path() -> str:
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if "cpu" in controllers.split(","):
            return path
    raise OSError("no cgroup v1 cpu controller in /proc/self/cgroup")


def _keepup_under_quota(ctx: Ctx, seconds: float) -> tuple[float, str]:
    """Run the quota child; (delivered / due, what the note says). Raises OSError when the cgroup
    cannot be made (no cgroup v1 cpu controller, not root)."""
    parent = CGROUP_CPU / _cpu_cgroup_path().lstrip("/")
    group = parent / f"camctl-bench-{os.getpid()}"
    cores = PI5_CORE_SHARE
    group.mkdir()
    try:
        (group / "cpu.cfs_period_us").write_text(f"{QUOTA_PERIOD_US}\n")
        (group / "cpu.cfs_quota_us").write_text(f"{quota_us(cores)}\n")
        proc, out = ctx.spawn("quota", str(group), str(seconds), module="camctl.bench.realstack",
                              timeout_s=60 + 2 * seconds)
        ctx.kill(proc)
    finally:
        for _ in range(50):  # the child's threads leave the group as it exits
            try:
                group.rmdir()
                break
            except OSError:
                time.sleep(0.1)
    if "error" in out:
        raise RuntimeError(f"quota child: {out['error']}")
    keepup = out["delivered"] / out["due"]
    note = (f"child held to cpu.cfs_quota_us {quota_us(cores)} per {QUOTA_PERIOD_US} us "
            f"(one Pi 5 core = {cores:.2f} of this machine's, 7-Zip 1T {PI5_7ZIP_MIPS} vs "
            f"{HERE_7ZIP_MIPS} MIPS), the frame generator moved out ({out['moved']} thread); "
            f"{out['delivered']} of {out['due']} frames due at {out['fps']:g} fps over "
            f"{seconds:g} s, the capture path used {out['cpu_share']:.1%} of a core and the group "
            f"was throttled in {out['throttled']} of {out['periods']} quota periods meanwhile")
    return keepup, note


# --- the figure -----------------------------------------------------------------------------------
def bench_realstack(ctx: Ctx) -> dict[str, Any]:
    from camctl.exc import StackUnavailable
    from camctl.testing.realstack import load_picamera2

    try:
        mod = load_picamera2()
    except (StackUnavailable, ImportError, OSError) as exc:  # not built, or does not load
        raise RuntimeError(f"real camera stack unavailable: {exc}") from exc
    pilog = logging.getLogger("picamera2")
    level = pilog.level
    pilog.setLevel(logging.WARNING)  # "Camera now open." and friends at every open, on the report
    try:
        return _bench(ctx, mod)
    finally:
        pilog.setLevel(level)


def _bench(ctx: Ctx, mod: ModuleType) -> dict[str, Any]:
    cfg = _rig()
    armed, descent, sensor = cfg.fps_for("ARMED"), cfg.fps_for("DESCENT"), cfg.sensor_fps()
    if descent != sensor:
        raise ValueError(f"{RIG.name}: DESCENT {descent:g} fps is not the sensor's {sensor:g}")
    seconds = (1.5, 2.0, 2.0) if ctx.quick else (4.0, 6.0, 5.0)
    full = measure(mod, cfg, descent, seconds[0])
    frame_ms = full.cpu_ns / 1e6 / full.delivered
    thin = measure(mod, cfg, armed, seconds[1])
    if thin.thinned == 0:
        raise RuntimeError(f"no frame thinned delivering {armed:g} of {sensor:g} fps")
    thinned_ms = (thin.cpu_ns / 1e6 - thin.delivered * frame_ms) / thin.thinned
    armed_share = core_share(armed, sensor, frame_ms, thinned_ms)
    descent_share = core_share(descent, sensor, frame_ms, thinned_ms)
    size = f"{cfg.size[0]}x{cfg.size[1]}"
    lores = "no lores stream" if cfg.lores_size is None else \
        f"lores {cfg.lores_size[0]}x{cfg.lores_size[1]} in {', '.join(cfg.lores_phases)}"
    rig = (f"real picamera2 on libcamera's virtual camera, {RIG.name}: {size} software path, "
           f"{lores}, sensor {sensor:g} fps, ARMED {armed:g}, DESCENT {descent:g} fps")
    pi = (f"on a Pi 5 (one A76 core = {PI5_CORE_SHARE:.2f} of this machine's core by 7-Zip's "
          f"1T rating, {PI5_7ZIP_MIPS} vs {HERE_7ZIP_MIPS} MIPS; docs/bench.md)")
    notes = {
        "real_frame_cpu_ms": (
            f"{rig}; {full.delivered} frames delivered of {full.due} due in {full.seconds:.1f} s, "
            f"CPU of every thread but the frame generator ({', '.join(FRAME_THREADS)}: "
            f"{full.generator_ns / 1e6 / max(1, full.delivered):.2f} ms/frame, not counted), "
            f"ms/frame by thread: {_roles(full)}; {pi} ~{frame_ms / PI5_CORE_SHARE:.2f} ms"),
        "real_thinned_cpu_ms": (
            f"{thin.thinned} sensor frames thinned and {thin.delivered} delivered in "
            f"{thin.seconds:.1f} s at {armed:g} of {sensor:g} fps: (CPU {thin.cpu_ns / 1e6:.0f} ms "
            f"- delivered x real_frame_cpu_ms) / thinned; ms per sensor frame by thread: "
            f"{_roles(thin)}; {pi} ~{thinned_ms / PI5_CORE_SHARE:.2f} ms"),
        "real_armed_core_share": (
            f"({armed:g} x real_frame_cpu_ms + {sensor - armed:g} x real_thinned_cpu_ms) / 1000 "
            f"of this machine's core; {pi} {pi_share(armed_share):.1%} of one Pi 5 core"),
        "real_descent_core_share": (
            f"{descent:g} x real_frame_cpu_ms / 1000 of this machine's core (every sensor frame "
            f"delivered); {pi} {pi_share(descent_share):.1%} of one Pi 5 core"),
    }
    out: dict[str, Any] = {"real_frame_cpu_ms": frame_ms, "real_thinned_cpu_ms": thinned_ms,
                           "real_armed_core_share": armed_share,
                           "real_descent_core_share": descent_share, "_notes": notes,
                           "_errors": {}}
    late = 100 if ctx.quick else 300
    for key, queue in (("real_late_lost_queue_off", False), ("real_late_lost_queue_on", True)):
        out[key] = late_losses(mod, cfg, queue=queue, frames=late)
        notes[key] = (f"frames lost per 100 delivered at DESCENT {descent:g} fps over {late} "
                      f"frames, the capture thread busy 0.3 of a period per frame and 1.5 periods "
                      f"late every 10th, picamera2 queue={queue} (the backend flies "
                      f"picamera2_requests.QUEUE)")
    try:
        out["real_descent_keepup_quota"], notes["real_descent_keepup_quota"] = \
            _keepup_under_quota(ctx, seconds[2])
    except Exception as exc:  # no cgroup v1, not root, a child that failed: this key only
        out["real_descent_keepup_quota"] = None
        out["_errors"]["real_descent_keepup_quota"] = f"{type(exc).__name__}: {exc}"
    return out


FIGURE = Figure("realstack", bench_realstack, (
    Metric("real_frame_cpu_ms", "CPU ms per delivered frame, capture path on the real stack "
           "(pi5-dropbox camera, software path; the frame generator not counted)", unit="ms"),
    Metric("real_thinned_cpu_ms", "CPU ms per sensor frame thinned (ARMED rate on the DESCENT "
           "sensor rate), same threads", unit="ms"),
    Metric("real_armed_core_share", "share of one core of this machine for the capture path at "
           "the rig's ARMED rate (0.01 = 1 %), from the two per-frame costs"),
    Metric("real_descent_core_share", "the same at the rig's DESCENT rate"),
    Metric("real_late_lost_queue_off", "frames lost per 100 at DESCENT when the capture thread is "
           "1.5 periods late every 10th frame, picamera2 queue=False", unit="%"),
    Metric("real_late_lost_queue_on", "the same with queue=True (what the backend flies)",
           unit="%"),
    Metric("real_descent_keepup_quota", "frames delivered / due at DESCENT rate, child held by a "
           "cgroup CPU quota to one Pi 5 core's worth of this machine"),
))


def _main(argv: list[str]) -> int:
    """``quota CGROUP SECONDS``: the quota child; prints one JSON line (its result or error)."""
    if len(argv) != 3 or argv[0] != "quota":
        print("usage: python -m camctl.bench.realstack quota CGROUP SECONDS", file=sys.stderr)
        return 2
    try:
        out = _quota_child(Path(argv[1]), float(argv[2]))
    except Exception as exc:
        out = {"error": f"{type(exc).__name__}: {exc}"}
    print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(_main(sys.argv[1:]))
