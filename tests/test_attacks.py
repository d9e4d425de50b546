"""Nothing on the network touches a flight: attacks on a real ``camctl run`` board during DESCENT,
and a hostile board against a real ``camctl fetch``.

The board attacks share one board (started once per module; started again only if an attack
killed it): two sim cameras (320x240, 10 fps in every phase), an earlier landed flight of big JPEGs
in its store and ``publish.serve_during_flight = true`` so the floods have files and previews to ask
for (a board that refuses everything in flight would pass them without proving any budget). The
board starts with the fd limit systemd gives a unit by default (soft RLIMIT_NOFILE 1024), so the
connection attack meets the same limit as on a Pi. Each attack flies its own flight: the board is
brought back to SAFE (a landed flight disarmed), armed and released; once DESCENT is steady, the
attack runs from its own process (tests/attackers.py) for ``ATTACK_S`` while the capture process's
and the publisher's RSS are sampled. Then:

- capture lost nothing: no drop of any reason was booked during the attack (STATUS
  ``dropped_by_reason`` before and after), and at the end every camera's ledger balances with 0
  dropped;
- the capture process's RSS grew by less than ``CAPTURE_RSS_SLACK`` over its quiet peak;
- the publisher's RSS stayed within ``publish.memory_mb`` (its default: the key is not set here);
- an honest client is served (a verified file of the old flight during DESCENT; after landing a
  ``fetch`` of every flight, every file's sha256 checked).

The ground's half: a hostile fake board (tests/attackers.py ``fake_board``) answers a real
``camctl fetch`` with a 500 MiB CHUNK, THUMBS pages with ``more`` forever, a 1 PiB listed file, or
an ERROR text full of escape codes; the fetch's peak RSS stays within ``GROUND_RSS_BUDGET``, it
writes at most 2 MiB, exits 1 or 2 with an error line, no traceback and no raw control character.

The publisher is the process named ``publisher_pid`` in the board's ``daemon.json``; a board that
runs it in its own process (issue 25) writes it there. Where it is absent, the publisher is the
daemon itself and both RSS checks are on one process.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from serving_board import write_old_flight
from waiting import wait_for

from camctl.board.config import load_config
from camctl.board.daemon import read_daemon_info
from camctl.common import protocol as p
from camctl.demo import BoardProcess, write_board_config
from camctl.ground import Client, fetch

ATTACKERS = Path(__file__).with_name("attackers.py")
ATTACK_S = 3.0  # how long each attack is held (not a limit on anything)
QUIET_S = 1.0  # RSS sampled this long before the attack: the capture process's quiet peak
# The capture process's RSS may grow this much over its quiet peak during an attack: the frames the
# encoder and the store hold in flight at 10 fps x 2 cameras of 320x240 are a few hundred KB, and
# glibc arenas move by a few MB; every attack here costs a process that buffers it 200 MB or more.
CAPTURE_RSS_SLACK = 16 << 20
DEFAULT_MEMORY_MB = 256  # publish.memory_mb when not set (issue 25)
SYSTEMD_NOFILE = 1024  # the soft RLIMIT_NOFILE systemd gives a unit that sets no LimitNOFILE
BOARD = "atk"
# small segments: each camera's store opens a new file about every second, as a Pi's does at
# 1080p with 16 MB segments; an attack that takes the board's last fd shows as drops
SEGMENT_MB = 0.25
RATES = dict.fromkeys(("ARMED", "DESCENT", "SEPARATION", "TOUCHDOWN"), 10)


# --- the board ------------------------------------------------------------------------------------
def _start_board(config: Path, store: Path) -> BoardProcess:
    """``camctl run`` as a child process with systemd's default soft fd limit; waits for its
    daemon.json."""
    log_path = config.parent / "daemon.log"
    info_path = store / "daemon.json"
    with contextlib.suppress(FileNotFoundError):
        info_path.unlink()

    def limits() -> None:
        _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (SYSTEMD_NOFILE, hard))

    with log_path.open("ab") as log:
        proc = subprocess.Popen([sys.executable, "-m", "camctl", "run", "--config", str(config)],
                                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=dict(os.environ), preexec_fn=limits)
    board = BoardProcess(BOARD, config, store, proc, log_path=log_path)

    def bound() -> dict | None:
        assert proc.poll() is None, log_path.read_text(errors="replace")[-2000:]
        try:
            info = read_daemon_info(store)
        except (OSError, ValueError):
            return None
        return info if info.get("pid") == proc.pid else None

    try:
        info = wait_for(bound, "the board's daemon.json", timeout_s=60)
    except BaseException:
        board.kill9()
        raise
    board.router, board.pub = info["router"], info["pub"]
    return board


def _rss(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except (FileNotFoundError, ProcessLookupError):
        pass
    return 0  # gone (a publisher restarted): its successor is sampled from then on


def _publisher_pid(board: BoardProcess) -> int:
    """The publisher's pid from daemon.json (issue 25), else the daemon's own."""
    try:
        return int(read_daemon_info(board.store).get("publisher_pid") or board.proc.pid)
    except (OSError, ValueError, TypeError):
        return board.proc.pid


@dataclass
class Peaks:
    """Peak RSS of the capture process and of the publisher (whichever pid it had) while
    sampling."""

    capture: int = 0
    publisher: int = 0
    capture_fds: int = 0
    publisher_pids: set[int] = field(default_factory=set)


@contextlib.contextmanager
def _sampling(board: BoardProcess) -> Iterator[Peaks]:
    peaks = Peaks()
    stop = threading.Event()

    def run() -> None:
        while True:
            pub = _publisher_pid(board)
            peaks.publisher_pids.add(pub)
            peaks.capture = max(peaks.capture, _rss(board.proc.pid))
            peaks.publisher = max(peaks.publisher, _rss(pub))
            with contextlib.suppress(OSError):
                peaks.capture_fds = max(peaks.capture_fds,
                                        len(os.listdir(f"/proc/{board.proc.pid}/fd")))
            if stop.wait(0.02):
                return

    t = threading.Thread(target=run, daemon=True)
    t.start()
    try:
        yield peaks
    finally:
        stop.set()
        t.join(10)


def _fds(board: BoardProcess) -> int:
    """Open fds of the capture process and the publisher (one count when they are one process)."""
    n = 0
    for pid in {board.proc.pid, _publisher_pid(board)}:
        with contextlib.suppress(OSError):
            n += len(os.listdir(f"/proc/{pid}/fd"))
    return n


def _until_fds_settle(board: BoardProcess) -> None:
    """Hold until the board has taken every connection it will: its fd count rose by nothing
    over the last second (libzmq accepts the backlog at its own pace; 60 s is a hang guard)."""
    seen = [_fds(board)]

    def settled() -> bool:
        time.sleep(0.25)  # the sampling period of the count (the wait itself is wait_for's)
        seen.append(_fds(board))
        return len(seen) > 4 and max(seen[-5:]) <= seen[-5]

    wait_for(settled, "the board's fd count to settle", timeout_s=60)


def _status(board: BoardProcess) -> dict:
    """STATUS from a fresh client, retried (a publisher that was reset or restarted comes back)."""
    def ask() -> dict | None:
        try:
            with Client(board.router, timeout_s=2.0) as c:
                return c.status()
        except Exception:
            return None

    return wait_for(ask, "a STATUS answer from the board", timeout_s=60, interval_s=0.2)


def _drops(st: dict) -> dict[str, dict[str, int]]:
    return {cam: dict(c["dropped_by_reason"]) for cam, c in st["cameras"].items()}


@dataclass
class Flying:
    board: BoardProcess
    old_flight: str
    segments: list[p.SegmentInfo]
    memory_mb: int


@dataclass
class SharedBoard:
    """The module's one board (``board`` is replaced if an attack killed it) and its old flight."""

    config: Path
    store: Path
    old_flight: str
    memory_mb: int
    board: BoardProcess | None = None
    segments: list[p.SegmentInfo] = field(default_factory=list)

    def alive(self) -> BoardProcess:
        if self.board is None or self.board.proc.poll() is not None:
            self.board = _start_board(self.config, self.store)
            with Client(self.board.router, timeout_s=30.0) as c:
                c.hello()
                self.segments = c.list(self.old_flight)
            assert [s for s in self.segments if s.kind == "segment"]
        return self.board


@pytest.fixture(scope="module")
def shared_board(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SharedBoard]:
    """One board for every attack of the module: a board start (two Python processes, the store's
    recovery) and the old flight are set up once, not once per attack."""
    root = tmp_path_factory.mktemp("atk") / "board"
    cfg = write_board_config(root, BOARD, 0, size=(320, 240),
                             fps={"down": RATES, "up": RATES}, stills=(), post_touchdown_s=0.5,
                             extra="serve_during_flight = true\n", reserve_mb=0,
                             segment_mb=SEGMENT_MB)
    memory_mb = int(getattr(load_config(cfg).publish, "memory_mb", DEFAULT_MEMORY_MB))
    store = root / "store"
    shared = SharedBoard(cfg, store, write_old_flight(store, BOARD), memory_mb)
    try:
        yield shared
    finally:
        if shared.board is not None:
            shared.board.stop()


def _back_to_safe(c: Client) -> None:
    """A board left in flight or landed by the attack before is brought back to SAFE."""
    phase = c.status()["phase"]
    if phase not in ("SAFE", "ARMED", "LANDED", "TOUCHDOWN"):
        c.command("event", name="touchdown")
    if phase != "SAFE":
        wait_for(lambda: c.status()["phase"] in ("LANDED", "ARMED"),
                 "the board landed (or armed) before the next flight", timeout_s=60)
        assert c.command("disarm")["phase"] == "SAFE"


@pytest.fixture
def flying(shared_board: SharedBoard) -> Iterator[Flying]:
    """The module's board in steady DESCENT of a new flight, with an older landed flight it
    serves."""
    board = shared_board.alive()
    with Client(board.router, timeout_s=30.0) as c:
        _back_to_safe(c)
        c.command("arm")
        c.command("event", name="release")
        # steady DESCENT: the pre-trigger ring is flushed and frames are being stored
        first = c.status()
        wait_for(lambda: all(c.status()["cameras"][n]["frames_stored"]
                             > first["cameras"][n]["frames_stored"] + 10
                             for n in first["cameras"]), "frames stored in DESCENT")
    yield Flying(board, shared_board.old_flight, shared_board.segments, shared_board.memory_mb)


# --- running an attacker --------------------------------------------------------------------------
@contextlib.contextmanager
def _attacker(kind: str, /, **args: Any) -> Iterator[dict]:
    """The attack in its own process: yields its ``ready`` line while it holds; the summary line is
    put in the dict under ``"summary"`` after."""
    proc = subprocess.Popen([sys.executable, str(ATTACKERS), kind, json.dumps(args)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=dict(os.environ))
    assert proc.stdout is not None and proc.stdin is not None
    got: dict[str, Any] = {}
    try:
        line = proc.stdout.readline()
        assert line, f"attacker {kind} exited with {proc.wait()} before it was ready"
        got.update(json.loads(line))
        yield got
    finally:
        try:
            out, _ = proc.communicate(timeout=60)  # closes its stdin: the attack ends
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
        lines = out.decode().strip().splitlines()
        got["summary"] = json.loads(lines[-1]) if lines else None


def _run_attack(f: Flying, attack: str) -> dict:
    url = f.board.router
    segs = [s.to_json() for s in f.segments if s.kind == "segment"]
    return {
        "connections": lambda: _attacker("connections", url=url, n=1100),
        "multipart": lambda: _attacker("multipart", url=url, total_mb=300, frame_kb=1),
        "thumbs_flood": lambda: _attacker("flood", url=url, kind="thumbs", identities=40,
                                          segments=segs),
        "fetch_flood": lambda: _attacker("flood", url=url, kind="fetch", identities=40,
                                         segments=segs),
        "hostile_names": lambda: _attacker("names", url=url, flight=f.old_flight,
                                           seg=segs[0]["path"].rsplit("/", 1)[1]),
    }[attack]()


ATTACKS = ("connections", "multipart", "thumbs_flood", "fetch_flood", "hostile_names")


@pytest.mark.parametrize("attack", ATTACKS)
def test_an_attack_during_descent_costs_capture_nothing(flying: Flying, attack: str,
                                                        tmp_path: Path) -> None:
    f = flying
    before = _status(f.board)
    with _sampling(f.board) as quiet:
        time.sleep(QUIET_S)  # the window the quiet peak is sampled over (nothing waits on it)
    with _sampling(f.board) as peaks, _run_attack(f, attack) as attacker:
        time.sleep(ATTACK_S)  # the attack is held this long while RSS is sampled
        if attack == "connections":
            _until_fds_settle(f.board)
    after = _status(f.board)
    grew = peaks.capture - quiet.capture
    served = _honest_client_during_descent(f, tmp_path / "honest")
    shown = {k: v for k, v in attacker.items() if k != "answers"}
    if "answers" in attacker:
        codes = [a.get("code") or a.get("verb") for a in attacker["answers"]]
        shown["answers"] = {c: codes.count(c) for c in sorted(set(map(str, codes)))}
    print(f"\n{attack}: attacker {shown}; capture RSS {quiet.capture / 2**20:.1f} MiB quiet, "
          f"+{grew / 2**20:.1f} MiB in the attack, fds {quiet.capture_fds} -> {peaks.capture_fds}; "
          f"publisher pids {sorted(peaks.publisher_pids)} "
          f"peak {peaks.publisher / 2**20:.1f} MiB (budget {f.memory_mb}); drops before "
          f"{_drops(before)} after {_drops(after)}; honest client: {served}")
    assert after["phase"] == "DESCENT", after["phase"]
    for cam, c in after["cameras"].items():
        assert c["frames_captured"] > before["cameras"][cam]["frames_captured"], cam
    assert _drops(after) == _drops(before), f"frames dropped during the {attack} attack"
    assert grew < CAPTURE_RSS_SLACK, (
        f"capture process RSS grew {grew / 2**20:.1f} MiB during the {attack} attack")
    assert peaks.publisher <= f.memory_mb << 20, (
        f"publisher RSS {peaks.publisher / 2**20:.1f} MiB over its {f.memory_mb} MiB budget")
    if attack == "hostile_names":
        _check_hostile_answers(attacker["answers"])
    assert served == "verified", served
    _land_and_fetch_everything(f, tmp_path / "ground")


def _honest_client_during_descent(f: Flying, out: Path) -> str:
    """A new client fetches the old flight's biggest segment; "verified" when its sha256 checks."""
    biggest = max((s for s in f.segments if s.kind == "segment"), key=lambda s: s.size)
    try:
        with Client(f.board.router, timeout_s=10.0) as c:
            c.hello()
            how = c.fetch_file(biggest, out / biggest.path)
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    return "verified" if how == "fetched" else str(how)


def _land_and_fetch_everything(f: Flying, out: Path) -> None:
    with Client(f.board.router, timeout_s=30.0) as c:
        c.command("event", name="touchdown")
        wait_for(lambda: (st := c.status())["phase"] == "LANDED" and st["serving"]
                 and st["checking"] is None, "the board landed and serving", timeout_s=60)

        def balanced() -> dict | None:  # the store's counts follow the ledger's by a commit
            st = c.status()
            return st if all(x["ledger"]["captured"] == x["ledger"]["stored"]
                             + x["ledger"]["dropped"] + x["ledger"]["aged_out"]
                             for x in st["cameras"].values()) else None

        st = wait_for(balanced, "every camera's ledger balanced after landing", timeout_s=30)
    report = fetch([f.board.router], out, give_up_after_s=30, progress=False, flight="all")
    assert report.ok, report.summary()
    for cam, c in st["cameras"].items():
        assert c["ledger"]["dropped"] == 0, (cam, c["dropped_by_reason"])


# what a hostile request may be answered with: a name in LIST or THUMBS is refused as malformed
# when it is decoded; NOT_FOUND there means the board took a malformed name for a name and looked it
# up (a newline-ended name passes ``re.match(r"...$")``: ``$`` matches before a final "\n",
# https://docs.python.org/3/library/re.html#regular-expression-syntax). A FETCH path only has to
# serve nothing (the board may refuse its form or find no such file); a COMMAND event naming no
# line is REFUSED.
REFUSALS = {"LIST": {p.E_BAD_FIELD, p.E_TOO_LARGE},
            "THUMBS": {p.E_BAD_FIELD, p.E_TOO_LARGE, p.E_BAD_PATH},
            "FETCH": {p.E_BAD_PATH, p.E_BAD_FIELD, p.E_NOT_FOUND},
            "COMMAND": {p.E_REFUSED, p.E_BAD_FIELD}}


def _check_hostile_answers(answers: list[dict]) -> None:
    """Every hostile request was refused with an ERROR as malformed: nothing served, nothing done,
    nothing looked up."""
    wrong = [a for a in answers if a.get("verb") != "ERROR"
             or a.get("code") not in REFUSALS[a["request"].split()[0]]]
    assert not wrong, f"{len(wrong)} of {len(answers)} hostile requests not refused: {wrong[:6]}"


# --- a hostile board against a real `camctl fetch` ------------------------------------------------
GROUND_RSS_BUDGET = 256 << 20  # a one-board fetch peaks near 50-70 MiB here
GROUND_KILL = 1536 << 20  # the guards: a ground this big is killed (and fails the test),
GROUND_DISK_KILL = 64 << 20  # and one that has written this much for a 1 PiB listing


def _written(out: Path) -> int:
    if not out.exists():
        return 0
    total = 0
    for x in out.rglob("*"):
        with contextlib.suppress(OSError):
            total += x.stat().st_size if x.is_file() else 0
    return total


@pytest.mark.parametrize("mode", ("huge_chunk", "endless_thumbs", "absurd_size", "escape_text"))
def test_the_ground_stays_bounded_against_a_hostile_board(mode: str, tmp_path: Path) -> None:
    out = tmp_path / "ground"
    with _attacker("fake_board", mode=mode) as board:
        proc = subprocess.Popen(
            [sys.executable, "-m", "camctl", "fetch", "--connect", board["url"], "--out", str(out),
             # a board that keeps dropping the link (huge_chunk) is given up on after 4 s: the
             # ground has been sent a 500 MiB CHUNK 1000-3000 times by then (on this machine)
             "--give-up-after", "4", "--timeout", "2", "--quiet"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
            env=dict(os.environ))
        peak, killed, n = 0, "", 0
        deadline = time.monotonic() + 120  # a hang guard, not a speed claim
        while proc.poll() is None:
            peak = max(peak, _rss(proc.pid))
            n += 1
            disk = _written(out) if n % 5 == 0 else 0
            if peak > GROUND_KILL:
                killed = f"killed at {peak / 2**20:.0f} MiB RSS"
            elif disk > GROUND_DISK_KILL:
                killed = f"killed with {disk / 2**20:.0f} MiB on disk"
            elif time.monotonic() > deadline:
                killed = "hung"
            if killed:
                proc.kill()
                break
            time.sleep(0.02)
        stdout, stderr = proc.communicate(timeout=30)
    text = (stdout + stderr).decode(errors="replace")
    written = _written(out)
    print(f"\n{mode}: ground exit {proc.returncode} {killed}, peak RSS {peak / 2**20:.1f} MiB, "
          f"{written} bytes on disk, board {board.get('summary')}; output:\n"
          + "".join(c if c == "\n" or c.isprintable() else repr(c)[1:-1] for c in text[-1500:]))
    assert not killed, killed
    assert peak <= GROUND_RSS_BUDGET, f"ground RSS {peak / 2**20:.1f} MiB"
    assert proc.returncode in (1, 2), proc.returncode
    assert "Traceback" not in text
    assert not set(text) & {"\x1b", "\x07"}, "board text reached the terminal raw"
    errors = [ln for ln in text.splitlines() if "error" in ln.lower()]
    assert errors, text
    assert written <= 2 << 20, f"{written} bytes written for a hostile board"
