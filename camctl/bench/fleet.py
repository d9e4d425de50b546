"""Bench figure ``fleet_goodput``: N sim boards in network namespaces behind one shared link of
40 Mbit/s with a 10 ms round trip, fetched by one ``camctl fetch``.

:func:`run_fleet` owns the whole run: a :class:`Fleet` of namespaces (a ground, a link, one per
board; every interface made inside them, so parallel runs never collide and deleting the namespaces
removes everything), a landed flight per board written with the real store, one ``camctl run``
per board, one ``camctl fetch`` of every board from the ground namespace, and what came of it: every
file byte-identical to its board's store, goodput as a fraction of the link, the order previews
and videos completed in, the ground's peak RSS. ``python -m camctl.bench.fleet run --boards 20`` is
the script (tools/netscale/run.sh); the topology and the delay line: docs/bench.md.

The link is shaped with ``tc`` (``tbf``) on the link namespace's side; the 10 ms round trip is 5 ms
each way held by :func:`delay_line`, a user-space forwarder on a TUN device, because netem is not
in every kernel (this one's ``/proc/config.gz`` has no ``CONFIG_NET_SCH_NETEM``).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import secrets
import select
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from camctl.bench.harness import Ctx, Figure, Metric
from camctl.testing.procs import stop_process

__all__ = ["FIGURE", "Fleet", "FleetResult", "delay_line", "fleet_unavailable", "run_fleet"]

LINK_MBIT = 40.0
RTT_MS = 10.0
FLIGHT = "20200101T000000Z"
ROUTER_PORT, EVENTS_PORT = 5555, 5556
GROUND_IP, LINK_GROUND_IP = "10.1.0.1", "10.1.0.2"
LINK_BOARDS_IP = "10.2.0.254"
# this module's main in a child (not -m: the package's registry imports it first)
_ME = [sys.executable, "-c", "import sys; from camctl.bench.fleet import main; "
                             "raise SystemExit(main(sys.argv[1:]))"]
_TUNSETIFF = 0x400454CA  # linux/if_tun.h
_IFF_TUN, _IFF_NO_PI = 0x0001, 0x1000


def board_ip(i: int) -> str:
    return f"10.2.0.{i + 1}"


def fleet_unavailable() -> str | None:
    """Why this machine cannot run the fleet (one line), or None."""
    if os.geteuid() != 0:
        return "needs root (network namespaces)"
    for tool in ("ip", "tc"):
        if shutil.which(tool) is None:
            return f"needs the {tool!r} command (iproute2)"
    if not os.path.exists("/dev/net/tun"):
        return "needs /dev/net/tun (the delay line)"
    return None


def _run(*cmd: str) -> None:
    got = subprocess.run(cmd, capture_output=True, text=True)
    if got.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: {got.stderr.strip() or got.returncode}")


# --- the delay line -------------------------------------------------------------------------------
def delay_line(dev: str, delay_ms: float) -> None:
    """Forward every packet routed into TUN ``dev`` back into it ``delay_ms`` later, in order (the
    link namespace's policy routes send both directions through it; a packet written to a TUN is
    received on it, then routed by the main table). Runs until killed; prints ``ready`` once
    attached."""
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
    fcntl.ioctl(fd, _TUNSETIFF, struct.pack("16sH", dev.encode(), _IFF_TUN | _IFF_NO_PI))
    delay_s = delay_ms / 1000.0
    held: deque[tuple[float, bytes]] = deque()
    print("ready", flush=True)
    while True:
        now = time.monotonic()
        while held and held[0][0] <= now:
            with contextlib.suppress(OSError):  # a packet the kernel refuses is a lost packet
                os.write(fd, held.popleft()[1])
        wait = max(0.0, held[0][0] - now) if held else None
        ready, _, _ = select.select([fd], [], [], wait)
        if ready:
            now = time.monotonic()
            with contextlib.suppress(BlockingIOError):
                for _ in range(256):
                    held.append((now + delay_s, os.read(fd, 65536)))


# --- the namespaces -------------------------------------------------------------------------------
@dataclass
class Fleet:
    """A ground namespace, a link namespace (bridge, shaping, delay line) and ``boards`` board
    namespaces, named ``cf<tag>-...``; :meth:`close` deletes them all (safe twice)."""

    boards: int
    tag: str = field(default_factory=lambda: secrets.token_hex(3))
    procs: list[subprocess.Popen] = field(default_factory=list)
    made: list[str] = field(default_factory=list)

    @property
    def ground(self) -> str:
        return f"cf{self.tag}-g"

    @property
    def link(self) -> str:
        return f"cf{self.tag}-l"

    def board(self, i: int) -> str:
        return f"cf{self.tag}-b{i}"

    def __enter__(self) -> Fleet:
        try:
            self._build()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _ns(self, name: str) -> None:
        _run("ip", "netns", "add", name)
        self.made.append(name)
        _run("ip", "-n", name, "link", "set", "lo", "up")

    def _build(self) -> None:
        g, ln = self.ground, self.link
        self._ns(g)
        self._ns(ln)
        _run("ip", "netns", "exec", ln, "sysctl", "-qw", "net.ipv4.ip_forward=1",
             "net.ipv4.conf.all.rp_filter=0", "net.ipv4.conf.default.rp_filter=0")
        _run("ip", "-n", ln, "link", "add", "name", "lg", "type", "veth", "peer", "name", "eth0",
             "netns", g)
        _run("ip", "-n", g, "addr", "add", f"{GROUND_IP}/24", "dev", "eth0")
        _run("ip", "-n", g, "link", "set", "eth0", "up")
        _run("ip", "-n", g, "route", "add", "default", "via", LINK_GROUND_IP)
        _run("ip", "-n", ln, "addr", "add", f"{LINK_GROUND_IP}/24", "dev", "lg")
        _run("ip", "-n", ln, "link", "add", "name", "lbr", "type", "bridge")
        _run("ip", "-n", ln, "addr", "add", f"{LINK_BOARDS_IP}/24", "dev", "lbr")
        for i in range(self.boards):
            b = self.board(i)
            self._ns(b)
            _run("ip", "-n", ln, "link", "add", "name", f"lb{i}", "type", "veth", "peer", "name",
                 "eth0", "netns", b)
            _run("ip", "-n", ln, "link", "set", f"lb{i}", "master", "lbr", "up")
            _run("ip", "-n", b, "addr", "add", f"{board_ip(i)}/24", "dev", "eth0")
            _run("ip", "-n", b, "link", "set", "eth0", "up")
            _run("ip", "-n", b, "route", "add", "default", "via", LINK_BOARDS_IP)
        # the delay line: both directions routed into TUN dl (table 100); what it writes back is
        # received on dl and routed by the main table (ip-rule(8): the local table, pref 0, still
        # delivers packets to the link namespace's own addresses first)
        _run("ip", "-n", ln, "tuntap", "add", "dev", "dl", "mode", "tun")
        _run("ip", "-n", ln, "link", "set", "dl", "txqueuelen", "10000", "up")
        _run("ip", "netns", "exec", ln, "sysctl", "-qw", "net.ipv4.conf.dl.rp_filter=0")
        _run("ip", "-n", ln, "route", "add", "default", "dev", "dl", "table", "100")
        _run("ip", "-n", ln, "rule", "add", "iif", "lg", "table", "100", "pref", "100")
        _run("ip", "-n", ln, "rule", "add", "iif", "lbr", "table", "100", "pref", "101")
        for dev in ("lg", "lbr"):
            _run("ip", "-n", ln, "link", "set", dev, "up")
            # the shared link, each way: tbf(8) at LINK_MBIT, a queue of 50 ms
            _run("ip", "netns", "exec", ln, "tc", "qdisc", "add", "dev", dev, "root", "tbf",
                 "rate", f"{LINK_MBIT:g}mbit", "burst", "16kb", "latency", "50ms")
        self.spawn(ln, [*_ME, "delay-line", "dl", f"{RTT_MS / 2:g}"], ready=True)

    def spawn(self, ns: str, cmd: list[str], *, ready: bool = False, **kw: Any) -> subprocess.Popen:
        """Start ``cmd`` in namespace ``ns`` (``ip netns exec`` execs it: the pid is the command's);
        owned by the fleet. ``ready``: wait for its first stdout line."""
        env = {**os.environ, "PYTHONPATH": _pythonpath()}
        if ready:
            kw.setdefault("stdout", subprocess.PIPE)
        proc = subprocess.Popen(["ip", "netns", "exec", ns, *cmd], env=env,
                                stdin=subprocess.DEVNULL, **kw)
        self.procs.append(proc)
        if ready:
            assert proc.stdout is not None
            got, _, _ = select.select([proc.stdout], [], [], 30)
            if not got or not proc.stdout.readline():
                raise RuntimeError(f"{' '.join(cmd[:4])} in {ns} did not start")
        return proc

    def close(self) -> None:
        for proc in reversed(self.procs):
            stop_process(proc, grace_s=15)
        self.procs.clear()
        for ns in reversed(self.made):
            with contextlib.suppress(RuntimeError):
                _run("ip", "netns", "del", ns)
        self.made.clear()


def _pythonpath() -> str:
    here = str(Path(__file__).resolve().parents[2])
    return os.pathsep.join(x for x in (here, os.environ.get("PYTHONPATH")) if x)


# --- boards and their flights ---------------------------------------------------------------------
def write_flight(root: Path, board: str, mb: float, *, seed: int) -> int:
    """A finished flight ``FLIGHT`` of about ``mb`` MB of noisy 640x360 JPEGs (cameras ``down``
    and ``up``) under store ``root``, written by the real store without fsync; its bytes."""
    import numpy as np
    import simplejpeg

    from camctl.board.config import StoreConfig
    from camctl.common.frames import EncodedFrame
    from camctl.store import FlightStore

    rng = np.random.default_rng(seed)
    jpegs = [simplejpeg.encode_jpeg(rng.integers(0, 256, (360, 640, 3), dtype=np.uint8),
                                    quality=85) for _ in range(4)]
    per = sum(map(len, jpegs)) / len(jpegs)
    n = max(2, int(mb * 1e6 / per / 2))
    with FlightStore(root, board, FLIGHT, StoreConfig(dir=root, segment_mb=2, reserve_mb=0,
                                                      queue_frames=2 * n + 16),
                     cameras=["down", "up"], fsync=lambda fd: None) as store:
        for i in range(n):
            for cam in ("down", "up"):
                if not store.put(EncodedFrame(camera=cam, seq=i,
                                              timestamp_ns=1_000_000_000 + i * 66_666_667,
                                              jpeg=jpegs[(i + (cam == "up")) % len(jpegs)],
                                              width=640, height=360, phase="DESCENT")):
                    raise RuntimeError("the store dropped a frame while making a fleet flight")
    return sum(f.stat().st_size for f in (root / FLIGHT).rglob("*") if f.is_file())


def _board_config(directory: Path, name: str, i: int) -> Path:
    from camctl.demo import write_board_config

    cfg = write_board_config(directory, name, i, size=(160, 120), stills=(), reserve_mb=0)
    text = cfg.read_text()
    text = text.replace('bind = "tcp://127.0.0.1:*"', f'bind = "tcp://{board_ip(i)}:{ROUTER_PORT}"')
    text = text.replace('events = "tcp://127.0.0.1:*"',
                        f'events = "tcp://{board_ip(i)}:{EVENTS_PORT}"')
    cfg.write_text(text)
    return cfg


def _wait_daemon(store: Path, proc: subprocess.Popen, log: Path, timeout_s: float) -> None:
    info = store / "daemon.json"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"a fleet board exited at start: {log.read_text()[-1500:]}")
        with contextlib.suppress(OSError, ValueError):
            if json.loads(info.read_text()).get("pid") == proc.pid:
                return
        time.sleep(0.1)
    raise RuntimeError(f"a fleet board did not come up in {timeout_s:g} s (log {log})")


# --- the ground -----------------------------------------------------------------------------------
def ground(out: str, urls: list[str], give_up_s: float) -> None:
    """In the ground namespace: wait until every board serves its flight (checked, nothing held
    back), then run ``camctl fetch`` (the CLI's own ``main``) and print one JSON line: exit code,
    seconds the fetch took, peak RSS."""
    from camctl.cli import main
    from camctl.ground import Client

    deadline = time.monotonic() + 300
    for url in urls:
        while True:
            with contextlib.suppress(Exception), Client(url, timeout_s=5) as c:
                st = c.status()
                if st.get("serving") and st.get("checking") is None:
                    break
            if time.monotonic() > deadline:
                raise SystemExit(f"board {url} not serving after 300 s")
            time.sleep(0.2)
    rtt_ms = min(_connect_ms(url) for url in urls[:1] * 5)
    t0 = time.monotonic()
    rc = main(["fetch", "--out", out, "--quiet", "--give-up-after", f"{give_up_s:g}",
               *[x for u in urls for x in ("--connect", u)]])
    seconds = time.monotonic() - t0
    hwm = 0
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            hwm = int(line.split()[1]) * 1024
    print(json.dumps({"rc": rc, "seconds": seconds, "rss_peak": hwm, "rtt_ms": rtt_ms}),
          flush=True)


def _connect_ms(url: str) -> float:
    """One TCP handshake to ``url``, ms: a round trip of the link (SYN out, SYN-ACK back)."""
    import socket

    host, port = url.removeprefix("tcp://").rsplit(":", 1)
    t0 = time.perf_counter()
    with socket.create_connection((host, int(port)), timeout=10):
        return (time.perf_counter() - t0) * 1000


# --- the run --------------------------------------------------------------------------------------
@dataclass
class FleetResult:
    """What one fleet fetch showed."""

    boards: int
    files: int
    bytes: int
    seconds: float
    goodput: float  # bytes / seconds / link bytes per second
    verified: bool
    problems: list[str]
    starved: list[str]  # boards with no preview on disk before the first video file completed
    previews_before_video: float  # fraction of all previews written before the first video
    ground_rss_mb: float
    rtt_ms: float
    rc: int

    def line(self) -> str:
        verified = "every file verified" if self.verified else "NOT verified"
        return (f"{self.boards} boards, {self.files} files, {self.bytes / 1e6:.1f} MB in "
                f"{self.seconds:.1f} s: goodput {self.goodput:.3f} of {LINK_MBIT:g} Mbit/s, "
                f"rtt {self.rtt_ms:.1f} ms, {verified}, starved {self.starved or 'none'}, "
                f"previews before the first video "
                f"{self.previews_before_video:.0%}, ground RSS {self.ground_rss_mb:.0f} MB, "
                f"fetch exit {self.rc}")


def _sha(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def run_fleet(boards: int, mb_per_board: float, work: Path, *,
              give_up_s: float = 60.0) -> FleetResult:
    """The whole run in ``work`` (see the module docstring); the namespaces are gone after."""
    why = fleet_unavailable()
    if why is not None:
        raise RuntimeError(f"fleet: {why}")
    names = [f"fleet-{i:02d}" for i in range(boards)]
    stores = [work / n / "store" for n in names]
    for i, (name, store) in enumerate(zip(names, stores, strict=True)):
        write_flight(store, name, mb_per_board, seed=i)
    out = work / "ground"
    with Fleet(boards) as fleet:
        procs = []
        for i, name in enumerate(names):
            cfg = _board_config(work / name, name, i)
            log = work / name / "daemon.log"
            with log.open("ab") as f:
                procs.append((fleet.spawn(fleet.board(i), [sys.executable, "-m", "camctl", "run",
                                                           "--config", str(cfg)],
                                          stdout=f, stderr=subprocess.STDOUT), log))
        for (proc, log), store in zip(procs, stores, strict=True):
            _wait_daemon(store, proc, log, 120)
        urls = [f"tcp://{board_ip(i)}:{ROUTER_PORT}" for i in range(boards)]
        g = fleet.spawn(fleet.ground, [*_ME, "ground", str(out), json.dumps(urls),
                                       f"{give_up_s:g}"],
                        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        stdout, stderr = g.communicate(timeout=1800)
        lines = stdout.decode().strip().splitlines()
        if g.returncode != 0 or not lines or not lines[-1].startswith("{"):
            raise RuntimeError(f"the ground failed ({g.returncode}): "
                               f"{(stdout + stderr).decode(errors='replace')[-2000:]}")
        got = json.loads(lines[-1])
    return _judge(names, stores, out, got)


def _judge(names: list[str], stores: list[Path], out: Path, got: dict) -> FleetResult:
    """Every board's stored flight against what arrived; the order things completed in."""
    problems: list[str] = []
    files = total = 0
    first_preview: dict[str, float] = {}
    previews: list[float] = []
    videos: list[float] = []
    for name, store in zip(names, stores, strict=True):
        src, dst = store / FLIGHT, out / name / FLIGHT
        for f in sorted(x for x in src.rglob("*") if x.is_file()):
            rel = f.relative_to(src)
            mine = dst / rel
            if not mine.is_file():
                problems.append(f"{name}: {rel} not fetched")
            elif _sha(mine) != _sha(f):
                problems.append(f"{name}: {rel} differs from the board's")
            else:
                files += 1
                total += mine.stat().st_size
                if mine.suffix == ".mcap" and rel.parts[0] in ("down", "up"):
                    videos.append(mine.stat().st_mtime)
        mine_previews = [x.stat().st_mtime for x in (dst / "thumbs").rglob("*.jpg")]
        total += sum(x.stat().st_size for x in (dst / "thumbs").rglob("*.jpg"))
        previews += mine_previews
        if mine_previews:
            first_preview[name] = min(mine_previews)
    first_video = min(videos) if videos else float("inf")
    starved = [n for n in names if first_preview.get(n, float("inf")) > first_video]
    before = sum(t <= first_video for t in previews) / len(previews) if previews else 0.0
    link_bps = LINK_MBIT * 1e6 / 8
    return FleetResult(boards=len(names), files=files, bytes=total, seconds=got["seconds"],
                       goodput=total / got["seconds"] / link_bps,
                       verified=not problems and got["rc"] == 0, problems=problems,
                       starved=starved, previews_before_video=before,
                       ground_rss_mb=got["rss_peak"] / 1e6, rtt_ms=got["rtt_ms"], rc=got["rc"])


# --- the bench figure -----------------------------------------------------------------------------
def bench_fleet(ctx: Ctx) -> dict[str, Any]:
    keys = ("fleet_goodput", "fleet_ground_rss_mb")
    why = fleet_unavailable()
    if why is not None:
        return {**dict.fromkeys(keys), "_unavailable": dict.fromkeys(keys, f"fleet: {why}")}
    if ctx.quick:
        return {**dict.fromkeys(keys), "_unavailable": dict.fromkeys(
            keys, "not measured with --quick: 20 boards in namespaces take ~2 min "
                  "(tests/test_fleet.py runs 4)")}
    res = run_fleet(20, 10.0, ctx.tmp / "fleet")
    if not res.verified or res.starved:
        raise RuntimeError(f"fleet: {res.line()}; problems: {res.problems[:5]}")
    return {"fleet_goodput": res.goodput, "fleet_ground_rss_mb": res.ground_rss_mb,
            "_note": res.line()}


FIGURE = Figure("fleet", bench_fleet, (
    Metric("fleet_goodput", f"bytes fetched / s / link, 20 boards behind one {LINK_MBIT:g} Mbit/s "
                            f"link, {RTT_MS:g} ms RTT, one camctl fetch", ">=", 0.9),
    Metric("fleet_ground_rss_mb", "the same fetch's peak RSS (VmHWM)", unit="MB"),
))


def main(argv: list[str] | None = None) -> int:
    """``python -m camctl.bench.fleet run [--boards N] [--mb MB]`` (tools/netscale/run.sh), and
    the helpers the run starts in its namespaces (``delay-line``, ``ground``)."""
    import argparse

    ap = argparse.ArgumentParser(prog="python -m camctl.bench.fleet")
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="the fleet fetch; prints its result line (and --json)")
    r.add_argument("--boards", type=int, default=20)
    r.add_argument("--mb", type=float, default=10.0, help="MB of flight per board")
    r.add_argument("--json", action="store_true")
    d = sub.add_parser("delay-line")
    d.add_argument("dev")
    d.add_argument("delay_ms", type=float)
    g = sub.add_parser("ground")
    g.add_argument("out")
    g.add_argument("urls")
    g.add_argument("give_up_s", type=float)
    args = ap.parse_args(argv)
    if args.cmd == "delay-line":
        delay_line(args.dev, args.delay_ms)
        return 0
    if args.cmd == "ground":
        ground(args.out, json.loads(args.urls), args.give_up_s)
        return 0
    why = fleet_unavailable()
    if why is not None:
        print(f"fleet: {why}", file=sys.stderr)
        return 2
    if not 1 <= args.boards <= 200 or args.mb <= 0:
        print(f"fleet: --boards {args.boards} --mb {args.mb:g}: want 1..200 boards and MB > 0",
              file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="camctl-fleet-") as tmp:
        res = run_fleet(args.boards, args.mb, Path(tmp))
    print(json.dumps(res.__dict__) if args.json else res.line())
    return 0 if res.verified and not res.starved else 1


if __name__ == "__main__":
    raise SystemExit(main())
