"""``camctl bench``: the performance ratios, each against a baseline measured in the same run on the same machine.

It owns the benchmark harness: a shared frame corpus (1080p sim scenes, JPEG-encoded the way the board does),
stored flights made with the real :class:`~camctl.store.FlightStore`, helper child processes (a real
:class:`~camctl.publish.Publisher`, a bare fileio3-style ROUTER, an imagezmq sender, a delaying TCP proxy) and
``camctl run`` boards. Every benchmark is independent: one that fails reports ``null`` and an error string and
the others still run; every child process is killed at the end.

Example::

    $ camctl bench --quick --json            # CI smoke (< 1 minute)
    $ camctl bench --only encode_scaling     # one benchmark, rich table

Children are this module run as a program: ``python -m camctl.bench publisher ROOT`` and friends (private).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import platform
import select
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["BENCHMARKS", "METRICS", "BenchResult", "Metric", "bench_main", "run_benchmarks"]

_SIZE = (1920, 1080)
_QUALITY = 85
_MB = 1e6


@dataclass(frozen=True)
class Metric:
    """One reported number: its key, target (``op`` and ``threshold``; none for informative ones), meaning."""

    key: str
    compares: str
    op: str = ""
    threshold: float = 0.0
    unit: str = ""

    @property
    def target(self) -> str:
        return f"{self.op} {self.threshold:g}" if self.op else ""

    def passes(self, value: float | None) -> bool | None:
        if value is None or not self.op:
            return None
        return {">=": value >= self.threshold, "<": value < self.threshold}[self.op]


METRICS: tuple[Metric, ...] = (
    Metric("store_vs_fdatasync", "FlightStore ingest MB/s / plain write()+fsync of the same JPEG bytes, "
           "same fsync count", ">=", 0.9),
    Metric("fetch_vs_raw_zmq", "camctl fetch MB/s / bare DEALER-ROUTER credit loop (fileio3), same files, "
           "chunk and window", ">=", 0.8),
    Metric("fetch_vs_imagezmq", "fetch frames/s / imagezmq send_jpg REQ-REP frames/s, via a 5 ms/direction "
           "proxy", ">=", 3),
    Metric("fetch_vs_imagezmq_loopback", "the same on plain loopback (no proxy)", ">=", 1),
    Metric("encode_scaling", "1080p JPEG frames/s, EncoderPool(2) / EncoderPool(1)", ">=", 1.6),
    Metric("capture_fps_1080p_2cams", "highest per-camera rate with zero drops, 2 sim cameras through "
           "CameraRunner+EncoderPool(2)+FlightStore", unit="fps"),
    Metric("capture_vs_encode_only", "2 x capture_fps / pure simplejpeg frames/s of the same frames on 2 "
           "threads", ">=", 0.85),
    Metric("trigger_latency_p50_ms", "mock GPIO edge -> CameraRunner.phase_changed_ns, Daemon wiring", "<", 2,
           "ms"),
    Metric("trigger_latency_p99_ms", "the same, 99th percentile", "<", 2, "ms"),
    Metric("rss_mb", "VmHWM of a `camctl run` board, 2x1080p sim @30 fps, 2 s pre-trigger, armed+descent",
           "<", 200, "MB"),
    Metric("first_look_s", "touchdown edge -> contact sheet of every board on the ground (2 boards, "
           "post_touchdown_s=1)", "<", 5, "s"),
    Metric("verify_mb_s", "camctl.store.verify scan rate of a stored flight, cold (evicted from the page "
           "cache)", unit="MB/s"),
    Metric("verify_vs_read", "verify MB/s / plain read() MB/s of the same files, both cold", ">=", 0.5),
    Metric("verify_mb_s_warm", "verify scan rate with the files in the page cache", unit="MB/s"),
    Metric("read_mb_s_warm", "plain read() of the same files from the page cache (memory speed)", unit="MB/s"),
)
_BY_KEY = {m.key: m for m in METRICS}


@dataclass
class BenchResult:
    """Values by metric key (None when it failed), errors and notes by key, the machine, elapsed time."""

    values: dict[str, float | None] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)
    machine: dict[str, Any] = field(default_factory=dict)
    quick: bool = False
    elapsed_s: float = 0.0

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = dict(self.values)
        out.update(machine=self.machine, quick=self.quick, elapsed_s=round(self.elapsed_s, 1),
                   errors=self.errors, notes=self.notes,
                   targets={k: _BY_KEY[k].target for k in self.values if _BY_KEY[k].target})
        return out


# --- the shared context -------------------------------------------------------------------------------
class _Ctx:
    """Temp dir, frame corpus, stored flights and child processes of one bench run."""

    def __init__(self, quick: bool) -> None:
        self.quick = quick
        self._tmp = tempfile.TemporaryDirectory(prefix="camctl-bench-")
        self.tmp = Path(self._tmp.name)
        self.children: list[subprocess.Popen] = []
        self.boards: list[Any] = []
        self._images: list[np.ndarray] = []
        self._jpegs: list[bytes] = []
        self._flights: dict[int, Path] = {}
        self._n = 0

    def name(self, prefix: str) -> str:
        self._n += 1
        return f"{prefix}-{self._n}"

    # corpus: distinct 1080p scenes, down and up roles alternating (as two cameras would produce)
    def corpus(self) -> tuple[list[np.ndarray], list[bytes]]:
        if not self._images:
            from camctl.cameras.sim import render_scene
            from camctl.encode import encode_jpeg

            n = 8 if self.quick else 16
            for i in range(n):
                role, seed = ("down", 1) if i % 2 == 0 else ("up", 2)
                img = render_scene(seed, role, _SIZE, i, i / 30)
                self._images.append(img)
                self._jpegs.append(encode_jpeg(img, _QUALITY))
        return self._images, self._jpegs

    def frames(self, n: int) -> list[Any]:
        """``n`` EncodedFrames alternating cameras down/up, each camera in sequence at 30 fps."""
        from camctl.frames import EncodedFrame

        _, jpegs = self.corpus()
        out = []
        for i in range(n):
            cam = "down" if i % 2 == 0 else "up"
            seq = i // 2
            out.append(EncodedFrame(camera=cam, seq=seq, timestamp_ns=10**9 + seq * 33_333_333,
                                    jpeg=jpegs[i % len(jpegs)], width=_SIZE[0], height=_SIZE[1], phase="DESCENT"))
        return out

    def flight(self, n_frames: int) -> Path:
        """A store root holding one finished flight of ``n_frames`` (cached by size). Written without fsync."""
        if n_frames not in self._flights:
            from camctl.config import StoreConfig
            from camctl.store import FlightStore

            root = self.tmp / f"store-{n_frames}"
            with FlightStore(root, "bench", f"F{n_frames}", StoreConfig(queue_frames=n_frames + 16, reserve_mb=0),
                             cameras=["down", "up"], fsync=lambda fd: None) as st:
                for fr in self.frames(n_frames):
                    if not st.put(fr):
                        raise RuntimeError("the store dropped a frame while making the bench flight")
            self._flights[n_frames] = root
        return self._flights[n_frames]

    def frames_for_mb(self, mb: float) -> int:
        _, jpegs = self.corpus()
        return max(4, int(mb * _MB / (sum(map(len, jpegs)) / len(jpegs))))

    # children
    def spawn(self, *args: str, module: str = "camctl.bench", timeout_s: float = 30.0) -> tuple[subprocess.Popen, dict]:
        """Start ``python -m module args``; return it and the JSON object it prints first."""
        log_path = self.tmp / f"{self.name('child')}.log"
        with log_path.open("wb") as log:
            proc = subprocess.Popen([sys.executable, "-m", module, *args], stdin=subprocess.PIPE,
                                    stdout=subprocess.PIPE, stderr=log, env=_child_env())
        self.children.append(proc)
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], timeout_s)
        line = proc.stdout.readline() if ready else b""
        if not line:
            self.kill(proc)
            raise RuntimeError(f"child {module} {' '.join(args)} did not start: "
                               f"{log_path.read_text(errors='replace')[-800:]}")
        return proc, json.loads(line)

    def kill(self, proc: subprocess.Popen) -> None:
        with contextlib.suppress(OSError, ValueError):
            if proc.stdin is not None:
                proc.stdin.close()  # children exit when their stdin closes
        try:
            proc.wait(3)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        for stream in (proc.stdout,):
            with contextlib.suppress(OSError):
                if stream is not None:
                    stream.close()

    def close(self) -> None:
        for b in self.boards:
            with contextlib.suppress(Exception):
                b.stop(timeout=10)
        self.boards.clear()
        for proc in self.children:
            if proc.poll() is None:
                self.kill(proc)
        self.children.clear()
        self._tmp.cleanup()


def _child_env() -> dict[str, str]:
    """Children import the same camctl as this process (not whatever ``-m`` would find from their cwd)."""
    here = str(Path(__file__).resolve().parent.parent)
    return {**os.environ, "PYTHONPATH": os.pathsep.join(x for x in (here, os.environ.get("PYTHONPATH")) if x)}


# --- store --------------------------------------------------------------------------------------------
def bench_store(ctx: _Ctx) -> dict[str, float]:
    """FlightStore ingest vs plain writes of the same JPEG bytes with the same number of fsyncs (unpaced)."""
    from camctl.config import StoreConfig
    from camctl.store import FlightStore

    n = 150 if ctx.quick else 600
    frames = ctx.frames(n)
    payload = sum(f.size for f in frames)
    fsyncs = [0]

    def counting_fsync(fd: int) -> None:
        fsyncs[0] += 1
        os.fsync(fd)

    cfg = StoreConfig(commit_interval_ms=200, queue_frames=n + 16, reserve_mb=0)
    store_times, base_times = [], []
    for _ in range(1 if ctx.quick else 2):
        fsyncs[0] = 0
        root = ctx.tmp / ctx.name("store-bench")
        st = FlightStore(root, "bench", "flight", cfg, cameras=["down", "up"], fsync=counting_fsync)
        try:
            t0 = time.perf_counter()
            for fr in frames:
                if not st.put(fr):
                    raise RuntimeError(f"FlightStore dropped frame {fr.camera}/{fr.seq} (queue_frames={n + 16})")
            st.commit(wait=True)
            store_times.append(time.perf_counter() - t0)
            n_fsync, commits = fsyncs[0], st.commits
        finally:
            st.close()
        shutil.rmtree(root, ignore_errors=True)
        base_times.append(_plain_writes(ctx.tmp / ctx.name("plain"), frames, n_fsync))
    ctx_note = (f"unpaced: {n} frames ({payload / _MB:.0f} MB JPEG) queued at once, timed until commit(wait) "
                f"returned; {commits} group commits, {n_fsync} fsyncs, matched by the baseline; best of "
                f"{len(store_times)}: store {payload / min(store_times) / _MB:.0f} MB/s, plain "
                f"{payload / min(base_times) / _MB:.0f} MB/s")
    return {"store_vs_fdatasync": min(base_times) / min(store_times), "_note": ctx_note}  # type: ignore[dict-item]


def _plain_writes(d: Path, frames: list[Any], n_fsync: int) -> float:
    """Write each frame's JPEG to its camera's file, fsyncing both files evenly ``n_fsync`` times in total."""
    d.mkdir(parents=True)
    files: dict[str, Any] = {}
    cams = sorted({f.camera for f in frames})
    points = max(1, n_fsync // len(cams))
    every = max(1, len(frames) // points)
    done = 0
    t0 = time.perf_counter()
    for cam in cams:
        files[cam] = (d / f"{cam}.bin").open("wb", buffering=0)
    for i, fr in enumerate(frames, 1):
        files[fr.camera].write(fr.jpeg)
        if i % every == 0 and done + len(cams) <= n_fsync:
            for f in files.values():
                os.fsync(f.fileno())
            done += len(cams)
    while done < n_fsync:
        for f in files.values():
            if done < n_fsync:
                os.fsync(f.fileno())
                done += 1
    dt = time.perf_counter() - t0
    for f in files.values():
        f.close()
    shutil.rmtree(d, ignore_errors=True)
    return dt


# --- fetch --------------------------------------------------------------------------------------------
class _ServedBoard:
    """A landed board over a store folder, as the Publisher sees it."""

    def __init__(self, root: Path) -> None:
        self.board = "bench"
        self.store_root = root

    def status(self) -> dict:
        return {"board": self.board, "phase": "LANDED", "flight": "", "serving": True, "cameras": {}}

    def serving(self) -> bool:
        return True

    def open_segments(self) -> set[Path]:
        return set()

    def command(self, name: str, args: dict) -> dict:
        from camctl.exc import CommandRefused

        raise CommandRefused(f"the bench board takes no commands (got {name!r})")


def _files_of(root: Path) -> list[tuple[str, int]]:
    return [(p.relative_to(root).as_posix(), p.stat().st_size) for p in sorted(root.rglob("*"))
            if p.is_file() and p.name != "daemon.json"]


def _raw_fetch(url: str, files: list[tuple[str, int]], out: Path, *, chunk: int, window: int) -> int:
    """The ZeroMQ Guide's fileio3 client: credit-based chunk requests over one DEALER; returns bytes."""
    import zmq

    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(url)
    total = 0
    try:
        out.mkdir(parents=True, exist_ok=True)
        for rel, size in files:
            with (out / rel.replace("/", "_")).open("wb") as f:
                credit, offset, got = window, 0, 0
                while got < size:
                    while credit and offset < size:
                        n = min(chunk, size - offset)
                        sock.send_multipart([rel.encode(), b"%d" % offset, b"%d" % n])
                        offset += n
                        credit -= 1
                    if not sock.poll(30_000):
                        raise TimeoutError(f"raw server silent for 30 s at {rel}:{got}")
                    data = sock.recv(copy=False)
                    f.write(data.buffer)
                    got += len(data.buffer)
                    credit += 1
                f.flush()
                os.fsync(f.fileno())
            total += size
    finally:
        sock.close(0)
        ctx.term()
    return total


def _timed_fetch(url: str, out: Path) -> tuple[float, Any]:
    from camctl.ground import fetch

    t0 = time.perf_counter()
    report = fetch([url], out, give_up_after_s=30, progress=False)
    dt = time.perf_counter() - t0
    if not report.ok:
        raise RuntimeError(f"fetch failed: {report.summary()}")
    return dt, report


def bench_fetch_raw(ctx: _Ctx) -> dict[str, Any]:
    """camctl fetch from a real Publisher (child process) vs a bare fileio3 loop from a bare ROUTER child."""
    mb = 40 if ctx.quick else 200
    root = ctx.flight(ctx.frames_for_mb(mb))
    files = _files_of(root)
    nbytes = sum(s for _, s in files)
    pub, info = ctx.spawn("publisher", str(root))
    raw, rinfo = ctx.spawn("raw-server", str(root))
    fetch_t, raw_t = [], []
    for _ in range(1 if ctx.quick else 2):
        dt, _report = _timed_fetch(info["url"], ctx.tmp / ctx.name("ground"))
        fetch_t.append(dt)
        t0 = time.perf_counter()
        got = _raw_fetch(rinfo["url"], files, ctx.tmp / ctx.name("raw"), chunk=256 * 1024, window=8)
        raw_t.append(time.perf_counter() - t0)
        if got != nbytes:
            raise RuntimeError(f"raw fetch moved {got} bytes, expected {nbytes}")
    ctx.kill(pub)
    ctx.kill(raw)
    return {"fetch_vs_raw_zmq": min(raw_t) / min(fetch_t),
            "_note": f"{nbytes / _MB:.0f} MB in {len(files)} files, servers in child processes, chunk 256 KiB, "
                     f"window 8; fetch {nbytes / min(fetch_t) / _MB:.0f} MB/s (with previews, sha256, writeback "
                     f"started every 4 MB, fsync per file), raw {nbytes / min(raw_t) / _MB:.0f} MB/s "
                     f"(fsync per file); best of {len(fetch_t)}"}


def bench_imagezmq(ctx: _Ctx) -> dict[str, Any]:
    """Frames/s: our fetch of a stored flight vs imagezmq REQ/REP send_jpg of the same frames, via proxy and not."""
    try:
        import imagezmq
    except ImportError as exc:
        return {"fetch_vs_imagezmq": None, "fetch_vs_imagezmq_loopback": None,
                "_error": f"imagezmq is not installed ({exc}); pip install 'camctl[dev]'"}
    n = 60 if ctx.quick else 300
    root = ctx.flight(n)
    _, jpegs = ctx.corpus()
    fdir = ctx.tmp / "izmq-frames"
    fdir.mkdir(exist_ok=True)
    for i, j in enumerate(jpegs):
        (fdir / f"{i:03d}.jpg").write_bytes(j)
    pub, info = ctx.spawn("publisher", str(root))
    port = info["url"].rsplit(":", 1)[1]
    out: dict[str, Any] = {}
    notes = []
    for key, delay_ms in (("fetch_vs_imagezmq", 5), ("fetch_vs_imagezmq_loopback", 0)):
        url = info["url"]
        proxy = None
        if delay_ms:
            proxy, pinfo = ctx.spawn(f"127.0.0.1:{port}", str(delay_ms), module="camctl.netproxy")
            url = f"tcp://127.0.0.1:{pinfo['port']}"
        dt, _ = _timed_fetch(url, ctx.tmp / ctx.name("ground"))
        ours = n / dt
        hub_port = _free_port()
        hub = imagezmq.ImageHub(open_port=f"tcp://127.0.0.1:{hub_port}")
        try:
            target = hub_port
            hproxy = None
            if delay_ms:
                hproxy, hinfo = ctx.spawn(f"127.0.0.1:{hub_port}", str(delay_ms), module="camctl.netproxy")
                target = hinfo["port"]
            sender, _ = ctx.spawn("imagezmq-sender", f"tcp://127.0.0.1:{target}", str(n), str(fdir))
            sink = (ctx.tmp / ctx.name("izmq.bin")).open("wb")
            t_first = t_last = 0.0
            for i in range(n):
                if not hub.zmq_socket.poll(30_000):
                    raise RuntimeError(f"imagezmq sender silent for 30 s after {i} frames")
                _msg, jpg = hub.recv_jpg()
                t_last = time.perf_counter()
                t_first = t_first or t_last
                sink.write(jpg)
                hub.send_reply(b"OK")
            sink.flush()
            os.fsync(sink.fileno())  # our fetch's files are durable when it returns: the baseline's too
            t_last = time.perf_counter()
            sink.close()
            theirs = (n - 1) / (t_last - t_first)
            ctx.kill(sender)
            if hproxy is not None:
                ctx.kill(hproxy)
        finally:
            hub.close()
        if proxy is not None:
            ctx.kill(proxy)
        out[key] = ours / theirs
        notes.append(f"{'proxy 5 ms/direction' if delay_ms else 'loopback'}: fetch {ours:.0f} frames/s "
                     f"(whole fetch incl. hello/list/previews), imagezmq {theirs:.0f} frames/s "
                     f"(first frame to fsync of the last)")
    ctx.kill(pub)
    out["_note"] = f"{n} frames of 1080p JPEG; " + "; ".join(notes)
    return out


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- encode and capture -------------------------------------------------------------------------------
def _encode_rate(images: list[np.ndarray], threads: int, n: int) -> float:
    from camctl.encode import EncoderPool

    with EncoderPool(threads) as pool:
        t0 = time.perf_counter()
        futs = [pool.submit(images[i % len(images)], _QUALITY) for i in range(n)]
        for f in futs:
            f.result()
        return n / (time.perf_counter() - t0)


def bench_encode(ctx: _Ctx) -> dict[str, Any]:
    images, _ = ctx.corpus()
    n = 60 if ctx.quick else 240
    r1, r2 = [], []
    for _ in range(1 if ctx.quick else 2):
        r1.append(_encode_rate(images, 1, n))
        r2.append(_encode_rate(images, 2, n))
    return {"encode_scaling": max(r2) / max(r1),
            "_note": f"{n} frames each, best of {len(r1)}: 1 thread {max(r1):.0f} fps, 2 threads {max(r2):.0f} fps "
                     f"({os.cpu_count()} CPUs)"}


def _capture_run(ctx: _Ctx, fps: float, seconds: float) -> tuple[float, int]:
    """One run of two 1080p sim cameras at ``fps`` in DESCENT: (measured per-camera fps, drops)."""
    from camctl.cameras.sim import SimCamera
    from camctl.capture import CameraRunner
    from camctl.config import CameraConfig, StoreConfig
    from camctl.encode import EncoderPool
    from camctl.store import FlightStore

    root = ctx.tmp / ctx.name("capture")
    pool = EncoderPool(2)
    store = FlightStore(root, "bench", "flight", StoreConfig(reserve_mb=0), cameras=["down", "up"])
    runners: list[CameraRunner] = []
    try:
        for seed, (name, role) in enumerate((("down", "down"), ("up", "up")), 1):
            cfg = CameraConfig(name=name, role=role, backend="sim", size=_SIZE, pretrigger_s=0,
                               fps=tuple((ph, fps) for ph in ("ARMED", "DESCENT", "SEPARATION", "TOUCHDOWN")))
            # prerender: a frame costs what a Pi camera's does (a copy out of the ISP buffer), so the ratio
            # measures camctl's pipeline, not the simulator's scene renderer
            cam = SimCamera(name, size=_SIZE, fps=fps, role=role, seed=seed, prerender=16)
            cam.prepare()
            r = CameraRunner(cam, cfg, pool, store.put, max_inflight=8)
            runners.append(r)
            r.start()
            r.set_phase("DESCENT")
        warm = max(3, int(fps * 0.3))
        deadline = time.monotonic() + 20
        while any(r.stats.encoded < warm for r in runners):  # polling a condition, bounded
            if time.monotonic() > deadline:
                raise RuntimeError(f"cameras did not start within 20 s at {fps:g} fps")
            time.sleep(0.01)

        def counts() -> list[tuple[int, int]]:
            return [(r.stats.frames_captured, r.stats.sensor_gaps + sum(r.stats.dropped.values())) for r in runners]

        c0, t0 = counts(), time.monotonic()
        time.sleep(seconds)  # the measurement window
        c1, t1 = counts(), time.monotonic()
        for r in runners:
            r.set_phase("LANDED")
        for r in runners:
            r.wait_idle(30)
    finally:
        for r in runners:
            r.stop()
        store.close()
        pool.close()
    store_drops = sum(sum(s["dropped"].values()) for s in store.stats().values())
    shutil.rmtree(root, ignore_errors=True)
    rate = min((b[0] - a[0]) / (t1 - t0) for a, b in zip(c0, c1, strict=True))
    drops = sum(b[1] - a[1] for a, b in zip(c0, c1, strict=True)) + store_drops
    return rate, drops


def bench_capture(ctx: _Ctx) -> dict[str, Any]:
    """Bisect the target fps for the highest rate two 1080p cameras sustain with zero drops."""
    seconds = 0.6 if ctx.quick else 1.5
    steps = 3 if ctx.quick else 8
    ok_fps, bad_fps, best = 0.0, 0.0, 0.0  # highest drop-free target, lowest target with drops
    tried = []
    target = 30.0
    for _ in range(steps):
        rate, drops = _capture_run(ctx, target, seconds)
        tried.append(f"{target:.0f}:{'ok' if drops == 0 else f'{drops} drops'}")
        if drops == 0:
            ok_fps, best = target, rate
        else:
            bad_fps = target
        if not bad_fps:
            if ok_fps >= 240:
                break
            target = min(240.0, target * 2)
        else:
            target = (ok_fps + bad_fps) / 2
            if bad_fps - ok_fps < 2:
                break
    if best <= 0:
        raise RuntimeError(f"no drop-free rate found (tried {', '.join(tried)})")
    images, _ = ctx.corpus()
    enc = _encode_rate(images, 2, 60 if ctx.quick else 200)
    return {"capture_fps_1080p_2cams": best, "capture_vs_encode_only": 2 * best / enc,
            "_note": f"paced sim cameras, {seconds:g} s windows, target fps tried {', '.join(tried)}; pure "
                     f"simplejpeg on 2 threads {enc:.0f} fps; the sim replays copies of 16 pre-rendered frames "
                     f"(a Pi's ISP renders off-CPU; camctl still copies, encodes and stores every frame)"}


# --- trigger latency ----------------------------------------------------------------------------------
def bench_trigger(ctx: _Ctx) -> dict[str, Any]:
    """GPIO edge (MockPin) -> EventLines -> PhaseMachine -> Daemon -> CameraRunner.set_phase, many phase walks."""
    from gpiozero.pins.mock import MockFactory

    from camctl.config import parse_config
    from camctl.daemon import Daemon

    fps = {"ARMED": 30, "DESCENT": 30, "SEPARATION": 30, "TOUCHDOWN": 30}
    cfg = parse_config({
        "board": "bench-trigger",
        "store": {"dir": str(ctx.tmp / "trigger-store"), "reserve_mb": 0},
        "gpio": {"backend": "mock", "bounce_ms": 5,
                 "events": {"arm": 17, "release": 27, "separation": 22, "touchdown": 23, "disarm": 24}},
        "phases": {"post_touchdown_s": 0},
        "encode": {"threads": 2},
        "cameras": [{"name": n, "role": n, "backend": "sim", "size": list(_SIZE), "fps": fps} for n in ("down", "up")],
        "publish": {"bind": "tcp://127.0.0.1:*", "events": "tcp://127.0.0.1:*"},
    })
    cycles = 6 if ctx.quick else 30
    lat: dict[str, list[float]] = {}
    factory = MockFactory()
    daemon = Daemon(cfg, pin_factory=factory)
    try:
        daemon.start()
        lines = daemon.lines
        assert lines is not None
        runners = list(daemon.runners.values())

        def edge(event: str, phase: str) -> None:
            t0 = time.monotonic_ns()
            lines.drive(event, True)
            if any(r.phase != phase for r in runners):
                raise RuntimeError(f"edge {event!r} did not move the cameras to {phase} "
                                   f"(phase {daemon.phase})")
            lat.setdefault(event, []).append((max(r.phase_changed_ns for r in runners) - t0) / 1e6)
            lines.drive(event, False)

        for _ in range(cycles):
            edge("arm", "ARMED")
            time.sleep(0.05)  # cameras running armed, as on a real pad
            for ev, ph in (("release", "DESCENT"), ("separation", "SEPARATION"), ("touchdown", "TOUCHDOWN")):
                edge(ev, ph)
                time.sleep(0.02)
            deadline = time.monotonic() + 30
            while not (daemon.phase == "LANDED" and daemon.serving()):  # polling a condition, bounded
                daemon.machine.tick()
                if time.monotonic() > deadline:
                    raise RuntimeError(f"board did not land and finish (phase {daemon.phase})")
                time.sleep(0.005)
            edge("disarm", "SAFE")
    finally:
        daemon.close()
        with contextlib.suppress(Exception):
            factory.close()
    allv = sorted(v for vs in lat.values() for v in vs)
    p99 = float(np.percentile(allv, 99))
    per = ", ".join(f"{ev} p50 {statistics.median(v):.2f}/max {max(v):.2f}" for ev, v in lat.items())
    return {"trigger_latency_p50_ms": float(np.percentile(allv, 50)), "trigger_latency_p99_ms": p99,
            "_note": f"{len(allv)} edges in {cycles} phase walks, 2x1080p sim cameras running; ms by event: {per}"}


# --- real boards --------------------------------------------------------------------------------------
def _start_board(ctx: _Ctx, name: str, *, armed: float, fps: float, seed: int) -> Any:
    from camctl.demo import start_board, write_board_config

    d = ctx.tmp / name
    rates = {"ARMED": armed, "DESCENT": fps, "SEPARATION": fps, "TOUCHDOWN": fps}
    cfg = write_board_config(d, name, seed, size=(1920, 1080), post_touchdown_s=1.0, reserve_mb=0, threads=2,
                             fps={"down": rates, "up": rates}, stills=(), segment_mb=64, descent_s=90)
    board = start_board(cfg, d / "store", name, env={"PYTHONPATH": _child_env()["PYTHONPATH"]})
    ctx.boards.append(board)
    return board


def _command(url: str, verb: str, /, **args: Any) -> dict:
    from camctl.ground import Client

    with Client(url, timeout_s=10) as c:
        return c.command(verb, **args)


def _vm_mb(pid: int, field: str = "VmHWM") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) * 1024 / _MB
    raise RuntimeError(f"no {field} in /proc/{pid}/status")


def bench_rss(ctx: _Ctx) -> dict[str, Any]:
    board = _start_board(ctx, "bench-rss", armed=30, fps=30, seed=1)
    descent = 1.5 if ctx.quick else 4.0
    _command(board.router, "arm")
    time.sleep(2.3)  # the pre-trigger ring fills (2 s)
    _command(board.router, "event", name="release")
    time.sleep(descent)
    hwm, rss = _vm_mb(board.proc.pid), _vm_mb(board.proc.pid, "VmRSS")
    _command(board.router, "event", name="touchdown")
    board.stop()
    ctx.boards.remove(board)
    return {"rss_mb": hwm, "_note": f"armed 2.3 s then {descent:g} s of DESCENT at 30 fps on 2 cameras; VmHWM "
                                    f"of the `camctl run` process (MB = 10^6 bytes); VmRSS at that moment "
                                    f"{rss:.0f} MB (the peak is the sim's ground-texture build at start)"}


def _all(fns: list[Callable[[], Any]]) -> list[Any]:
    with ThreadPoolExecutor(len(fns)) as ex:
        return [f.result() for f in [ex.submit(fn) for fn in fns]]


def bench_first_look(ctx: _Ctx) -> dict[str, Any]:
    from camctl.ground import Client, fetch

    boards = _all([lambda i=i: _start_board(ctx, f"bench-look-{'ab'[i]}", armed=5, fps=15, seed=10 + 2 * i)
                   for i in range(2)])
    urls = [b.router for b in boards]
    descent = 1.0 if ctx.quick else 3.0
    _all([lambda u=u: _command(u, "arm") for u in urls])
    time.sleep(0.5 if ctx.quick else 2.2)
    _all([lambda u=u: _command(u, "event", name="release") for u in urls])
    time.sleep(descent)
    t0 = time.perf_counter()
    _all([lambda u=u: _command(u, "event", name="touchdown") for u in urls])
    deadline = time.monotonic() + 60
    while True:  # polling a condition (each board LANDED and serving), bounded
        states = []
        for u in urls:
            with Client(u, timeout_s=10) as c:
                states.append(c.status())
        if all(s["phase"] == "LANDED" and s["serving"] for s in states):
            break
        if time.monotonic() > deadline:
            raise RuntimeError("boards did not land: " + ", ".join(f"{s['board']}={s['phase']}" for s in states))
        time.sleep(0.02)
    t_landed = time.perf_counter()
    ground = ctx.tmp / "first-look"
    report = fetch(urls, ground, give_up_after_s=30, thumbs_only=True, progress=False)
    if not report.ok:
        raise RuntimeError(f"thumbnail fetch failed: {report.summary()}")
    t_thumbs = time.perf_counter()
    sheet, how = _contact_sheet(ground)
    t1 = time.perf_counter()
    for b in boards:
        b.stop()
        ctx.boards.remove(b)
    return {"first_look_s": t1 - t0,
            "_note": f"2 boards, 2x1080p at 15 fps, {descent:g} s descent; touchdown->LANDED+serving "
                     f"{t_landed - t0:.2f} s (post_touchdown_s=1), previews {t_thumbs - t_landed:.2f} s "
                     f"({sum(b.thumbs for b in report.boards)} thumbs), contact sheet ({how}) {t1 - t_thumbs:.2f} s "
                     f"-> {sheet.name}"}


def _contact_sheet(ground: Path) -> tuple[Path, str]:
    """A contact sheet of every preview under ``ground``: camctl.export's when it exists, else Pillow here."""
    import importlib.util

    if importlib.util.find_spec("camctl.export") is not None:
        from camctl import export

        fn = getattr(export, "contact_sheet_from_thumbs", None)
        if callable(fn):
            return Path(fn(ground, ground / "contact-sheet.png")), "camctl.export.contact_sheet_from_thumbs"
    from PIL import Image

    thumbs = sorted(ground.rglob("thumbs/*/*.jpg"))
    if not thumbs:
        raise RuntimeError(f"no previews under {ground}")
    first = Image.open(thumbs[0])
    tw, th = first.size
    cols = min(8, len(thumbs))
    rows = -(-len(thumbs) // cols)
    sheet = Image.new("RGB", (cols * tw, rows * th))
    for i, t in enumerate(thumbs):
        with Image.open(t) as im:
            sheet.paste(im.convert("RGB").resize((tw, th)), ((i % cols) * tw, (i // cols) * th))
    out = ground / "contact-sheet.jpg"
    sheet.save(out, quality=85)
    return out, f"Pillow in bench, {len(thumbs)} thumbs"


# --- verify -------------------------------------------------------------------------------------------
def _plain_read(files: list[Path]) -> int:
    n = 0
    for p in files:
        with p.open("rb", buffering=0) as f:
            while block := f.read(1 << 20):
                n += len(block)
    return n


def _evict(files: list[Path]) -> None:
    """Drop the files from the page cache (fsync first: only clean pages go), so the next read is cold."""
    for p in files:
        fd = os.open(p, os.O_RDONLY)
        try:
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def bench_verify(ctx: _Ctx) -> dict[str, Any]:
    """verify vs plain read() of the same flight, both cold (evicted before each run) and both warm."""
    from camctl.store import verify

    mb = 40 if ctx.quick else 200
    root = ctx.flight(ctx.frames_for_mb(mb))
    flight = root / f"F{ctx.frames_for_mb(mb)}"
    files = [p for p in sorted(flight.rglob("*")) if p.is_file()]
    nbytes = sum(p.stat().st_size for p in files)

    def timed_verify() -> float:
        t0 = time.perf_counter()
        report = verify(flight)
        dt = time.perf_counter() - t0
        if report.exit_code != 0:
            raise RuntimeError(f"verify of the bench flight exited {report.exit_code}")
        return dt

    def timed_read() -> float:
        t0 = time.perf_counter()
        if _plain_read(files) != nbytes:
            raise RuntimeError("plain read of the bench flight came up short")
        return time.perf_counter() - t0

    cold_v, cold_r, warm_v, warm_r = [], [], [], []
    for _ in range(1 if ctx.quick else 2):
        _evict(files)
        cold_v.append(timed_verify())
        warm_v.append(timed_verify())
        _evict(files)
        cold_r.append(timed_read())
        warm_r.append(timed_read())
    v, r = nbytes / min(cold_v) / _MB, nbytes / min(cold_r) / _MB
    vw, rw = nbytes / min(warm_v) / _MB, nbytes / min(warm_r) / _MB
    return {"verify_mb_s": v, "verify_vs_read": v / r, "verify_mb_s_warm": vw, "read_mb_s_warm": rw,
            "_note": f"{nbytes / _MB:.0f} MB in {len(files)} files, best of {len(cold_v)}; cold (fsync + "
                     f"posix_fadvise DONTNEED before each run): verify {v:.0f} MB/s, plain read {r:.0f} MB/s; "
                     f"warm (page cache): verify {vw:.0f} MB/s, plain read {rw:.0f} MB/s"}


# --- harness ------------------------------------------------------------------------------------------
BENCHMARKS: dict[str, tuple[Callable[[_Ctx], dict[str, Any]], tuple[str, ...]]] = {
    "store_vs_fdatasync": (bench_store, ("store_vs_fdatasync",)),
    "fetch_vs_raw_zmq": (bench_fetch_raw, ("fetch_vs_raw_zmq",)),
    "fetch_vs_imagezmq": (bench_imagezmq, ("fetch_vs_imagezmq", "fetch_vs_imagezmq_loopback")),
    "encode_scaling": (bench_encode, ("encode_scaling",)),
    "capture_fps_1080p_2cams": (bench_capture, ("capture_fps_1080p_2cams", "capture_vs_encode_only")),
    "trigger_latency": (bench_trigger, ("trigger_latency_p50_ms", "trigger_latency_p99_ms")),
    "rss_mb": (bench_rss, ("rss_mb",)),
    "first_look_s": (bench_first_look, ("first_look_s",)),
    "verify": (bench_verify, ("verify_mb_s", "verify_vs_read", "verify_mb_s_warm", "read_mb_s_warm")),
}


def _selected(only: list[str] | None) -> list[str]:
    if not only:
        return list(BENCHMARKS)
    names = []
    for want in only:
        hits = [n for n, (_, keys) in BENCHMARKS.items() if want == n or want in keys]
        if not hits:
            known = sorted({*BENCHMARKS, *(k for _, ks in BENCHMARKS.values() for k in ks)})
            raise ValueError(f"unknown benchmark {want!r} (known: {', '.join(known)})")
        names.extend(h for h in hits if h not in names)
    return names


def machine_info() -> dict[str, Any]:
    """CPU model, cores, Python and the versions of the libraries the numbers depend on."""
    import simplejpeg
    import zmq

    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith(("model name", "hardware")):
                cpu = line.split(":", 1)[1].strip()
                break
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
            "platform": platform.platform(), "numpy": np.__version__, "simplejpeg": simplejpeg.__version__,
            "pyzmq": zmq.__version__, "libzmq": zmq.zmq_version()}


def run_benchmarks(*, quick: bool = False, only: list[str] | None = None,
                   on_done: Callable[[str, dict[str, Any]], None] | None = None) -> BenchResult:
    """Run the selected benchmarks (all by default); a failing one yields None values and an error string."""
    names = _selected(only)
    result = BenchResult(quick=quick, machine=machine_info())
    t0 = time.perf_counter()
    ctx = _Ctx(quick)
    camlog = logging.getLogger("camctl")
    level = camlog.level
    camlog.setLevel(logging.ERROR)  # in-process daemons would log every phase change onto the report
    try:
        for name in names:
            fn, keys = BENCHMARKS[name]
            try:
                out = fn(ctx)
            except Exception as exc:
                out = {k: None for k in keys}
                out["_error"] = f"{type(exc).__name__}: {exc}"
            for k in keys:
                v = out.get(k)
                result.values[k] = None if v is None else float(v)
                if out.get("_error"):
                    result.errors[k] = out["_error"]
                if out.get("_note"):
                    result.notes[k] = out["_note"]
            if on_done is not None:
                on_done(name, out)
    finally:
        ctx.close()
        camlog.setLevel(level)
    result.elapsed_s = time.perf_counter() - t0
    return result


def print_table(result: BenchResult) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"camctl bench{' --quick' if result.quick else ''}: ratios against same-run baselines")
    for col in ("metric", "value", "target", "", "compares"):
        table.add_column(col, justify="right" if col in ("value", "target") else "left",
                         no_wrap=col != "compares")
    for key, v in result.values.items():
        m = _BY_KEY[key]
        ok = m.passes(v)
        mark = "[green]PASS[/]" if ok else "[red]FAIL[/]" if ok is False else ""
        if v is None:
            mark = "[red]ERROR[/]"
        value = "null" if v is None else f"{v:.3g}{' ' + m.unit if m.unit else ''}"
        table.add_row(key, value, m.target, mark, m.compares)
    console = Console(width=max(140, Console().width))
    console.print(table)
    for key, note in result.notes.items():
        console.print(f"[dim]{key}: {note}[/]", highlight=False)
    for key, err in result.errors.items():
        console.print(f"[red]{key}: {err}[/]", highlight=False)
    mach = result.machine
    console.print(f"machine: {mach.get('cpu')}, {mach.get('cores')} cores, Python {mach.get('python')}, numpy "
                  f"{mach.get('numpy')}, simplejpeg {mach.get('simplejpeg')}, libzmq {mach.get('libzmq')}; "
                  f"{result.elapsed_s:.0f} s", highlight=False)


def bench_main(args: argparse.Namespace) -> int:
    """``camctl bench [--json] [--quick] [--only NAME]``: 0 when every benchmark ran (targets do not count)."""
    only = getattr(args, "only", None)
    try:
        _selected(only)
    except ValueError as exc:
        print(f"camctl bench: {exc}", file=sys.stderr)
        return 2
    as_json = bool(getattr(args, "json", False))

    def progress(name: str, out: dict[str, Any]) -> None:
        if not as_json:
            print(f"  {name}: {'error' if out.get('_error') else 'done'}", file=sys.stderr, flush=True)

    result = run_benchmarks(quick=bool(getattr(args, "quick", False)), only=only, on_done=progress)
    if as_json:
        print(json.dumps(result.to_json(), indent=2))
    else:
        print_table(result)
    return 1 if result.errors and any(v is None for v in result.values.values()) else 0


# --- children (private) -------------------------------------------------------------------------------
def _exit_on_stdin_eof() -> None:
    def watch() -> None:
        with contextlib.suppress(Exception):
            sys.stdin.buffer.read()
        os._exit(0)

    threading.Thread(target=watch, daemon=True).start()


def _child_main(argv: list[str]) -> int:
    kind, *rest = argv
    if kind == "publisher":
        from camctl.config import PublishConfig
        from camctl.publish import Publisher

        pub = Publisher(_ServedBoard(Path(rest[0])), PublishConfig(bind="tcp://127.0.0.1:*",
                                                                   events="tcp://127.0.0.1:*"))
        pub.start()
        print(json.dumps({"url": pub.router_endpoint}), flush=True)
        _exit_on_stdin_eof()
        threading.Event().wait()
    if kind == "raw-server":  # the ZeroMQ Guide's fileio3 server: ROUTER, [path, offset, size] -> chunk
        import zmq

        root = Path(rest[0])
        sock = zmq.Context().socket(zmq.ROUTER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.bind("tcp://127.0.0.1:*")
        print(json.dumps({"url": sock.getsockopt(zmq.LAST_ENDPOINT).decode()}), flush=True)
        _exit_on_stdin_eof()
        files: dict[bytes, Any] = {}
        while True:
            ident, path, offset, size = sock.recv_multipart()
            f = files.get(path)
            if f is None:
                f = files[path] = (root / path.decode()).open("rb")
            f.seek(int(offset))
            sock.send_multipart([ident, f.read(int(size))], copy=False)
    if kind == "imagezmq-sender":  # the board side of imagezmq: ImageSender connects to the hub
        import imagezmq

        url, n, fdir = rest[0], int(rest[1]), Path(rest[2])
        jpegs = [p.read_bytes() for p in sorted(fdir.glob("*.jpg"))]
        sender = imagezmq.ImageSender(connect_to=url)
        print(json.dumps({"frames": len(jpegs)}), flush=True)
        _exit_on_stdin_eof()
        for i in range(n):
            sender.send_jpg(f"frame {i}", jpegs[i % len(jpegs)])
        threading.Event().wait()
    print(f"unknown child kind {kind!r}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(_child_main(sys.argv[1:]))
