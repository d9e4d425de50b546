"""Power cuts, for real: the store writes through forgetfs (a FUSE filesystem that forgets what was
not fsync'd) and the power is cut at a random moment; then every frame the store had called durable
must be there.

Each trial runs a :class:`FlightStore` (two cameras, frames paced by a clock, random segment sizes
and commit intervals so segments rotate and chunks vary) on the forgetfs mount, in this process: its
writer thread uses the same write path as ``camctl run`` (the cut is instant at the filesystem, so
the writer need not be killed). At a random moment the test reads each camera's ``durable_seq`` (the
store's claim), then cuts the power: forgetfs writes the durable state out to a plain directory,
cleanly or torn (an in-order prefix of the unsynced writes, or any subset of the dirty pages). Then
``verify(repair=True)`` repairs the cut-out copy and the plain ``mcap`` reader must read, for every
camera, every frame seq up to its claimed watermark.

``CAMCTL_TORTURE_TRIALS`` raises the number of trials (default 30), ``CAMCTL_TORTURE_SEED`` changes
the seed, ``CAMCTL_TORTURE_BOARDS`` the real ``camctl run`` boards killed and cut on forgetfs
(default 1). ``CAMCTL_POWERCUT_BREAK_FSYNC=1`` runs the suite against a store whose
``os.fsync``/``os.fdatasync`` do nothing: it must fail (and
:func:`test_a_store_without_fsync_fails_this_suite` checks that it does).
``CAMCTL_POWERCUT_MUTANT=mutant_a|mutant_b`` runs the random cuts against an ordering mutant
(``tests/ordering_writer.py``: frames marked durable before the file fsync, or before a new
segment's directory fsync): how often random cuts catch it (``tests/test_ordering.py`` always
does). One summary line per run is printed at the end of the module (and kept in
``powercut-summary.txt``).

The last test kills a real ``camctl run`` with SIGKILL on an ordinary disk and restarts it: boot
recovery.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from forgetfs import Mounted, fuse_unavailable, mounted
from mcap.reader import make_reader
from store_helpers import frame, indexed_read, jpeg, printed_summary
from waiting import wait_for

from camctl.board.config import StoreConfig
from camctl.common.fsutil import fsync_dir
from camctl.demo import BoardProcess, start_board, write_board_config
from camctl.ground import Client
from camctl.store import FlightStore, iter_frames, list_flights, verify

TRIALS = int(os.environ.get("CAMCTL_TORTURE_TRIALS", "30"))
SEED = int(os.environ.get("CAMCTL_TORTURE_SEED", "20240604"))
BREAK_FSYNC = os.environ.get("CAMCTL_POWERCUT_BREAK_FSYNC") == "1"
MUTANT = os.environ.get("CAMCTL_POWERCUT_MUTANT", "")
CAMERAS = ("down", "up")
MODES = ("none", "prefix", "pages")
# frames per camera per second of the paced feed (the writer sees bursts and gaps like capture)
FPS = 120
JPEGS = [jpeg(i, 96, 72) for i in range(16)]

pytestmark = pytest.mark.timeout(600)
needs_fuse = pytest.mark.skipif(bool(fuse_unavailable()),
                                reason=fuse_unavailable() or "fuse available")


@dataclass
class Trial:
    index: int
    mode: str
    cut_after_s: float
    segment_mb: float
    commit_ms: int
    watermark: dict[str, int] = field(default_factory=dict)
    put: dict[str, int] = field(default_factory=dict)
    read: dict[str, set[int]] = field(default_factory=dict)
    verify_rc: int = -1
    torn_files: int = 0
    segments: int = 0
    # segments the plain reader read after repair
    readable: list[Path] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def fly_and_cut(fs: Mounted, out: Path, trial: Trial, rng: random.Random) -> None:
    """Feed a store on the mount, paced; at ``cut_after_s`` read the claims, then cut the power."""
    root = fs.mnt / f"trial-{trial.index:03d}"
    root.mkdir()
    fsync_dir(fs.mnt)  # the store dir exists before a flight (as /var/lib/camctl does on a board)
    cfg = StoreConfig(segment_mb=trial.segment_mb, commit_interval_ms=trial.commit_ms, reserve_mb=0,
                      queue_frames=100_000)
    store = FlightStore(root, "pc", "F", cfg, cameras=CAMERAS)
    try:
        store.log_event({"kind": "phase", "name": "open"})
        t0 = time.monotonic()
        seq = 0
        while True:
            now = time.monotonic() - t0
            if now >= trial.cut_after_s:
                break
            while seq < now * FPS:
                for cam in CAMERAS:
                    assert store.put(frame(cam, seq, data=JPEGS[(seq + len(cam)) % len(JPEGS)]))
                seq += 1
            if rng.random() < 0.02:  # a phase change asks for a commit at once
                store.log_event({"kind": "phase", "name": f"p{seq}"})
                store.commit()
            time.sleep(0.5 / FPS)
        # the claims, read before the cut: backed by fsyncs that returned before it
        stats = store.stats()
        trial.watermark = {c: stats[c]["durable_seq"] for c in CAMERAS}
        trial.put = {c: seq for c in CAMERAS}
        for c in CAMERAS:
            assert not stats[c]["dropped"], \
                f"trial {trial.index}: the store dropped frames: {stats[c]}"
        counts = fs.cut(out, seed=rng.randrange(1 << 30), mode=trial.mode)
        del counts
    finally:
        store.close()  # writes on after the cut do not matter: the cut is already out
        subprocess.run(["rm", "-rf", str(root)], check=False)


def read_plain(seg: Path) -> list[tuple[str, int]]:
    """(topic, sequence) of every message by the plain mcap reader (raises if it cannot read it)."""
    with seg.open("rb") as fh:
        return [(ch.topic, msg.sequence) for _, ch, msg in make_reader(fh).iter_messages()]


def check_cut(out: Path, trial: Trial) -> None:
    if max(trial.watermark.values()) >= 0:  # a durable frame implies a durable flight description
        try:
            cameras = json.loads((out / "F" / "flight.json").read_text())["cameras"]
        except (OSError, ValueError, KeyError) as exc:
            cameras = f"unreadable: {exc!r}"
        if cameras != list(CAMERAS):
            trial.problems.append(f"flight.json after the cut: cameras {cameras}")
    report = verify(out, repair=True)
    trial.verify_rc = report.exit_code
    bad = set(report.unrecoverable)
    for cam in CAMERAS:
        trial.read[cam] = set()
        for seg in sorted(out.glob(f"*/{cam}/*.mcap")):
            trial.segments += 1
            if str(seg) in bad:
                continue
            try:
                trial.read[cam] |= {s for topic, s in read_plain(seg) if topic == f"/{cam}/image"}
                trial.readable.append(seg)
            except Exception as exc:
                trial.problems.append(f"{seg}: the plain mcap reader fails after repair: {exc!r}")
        want = set(range(trial.watermark[cam] + 1))
        missing = sorted(want - trial.read[cam])
        if missing:
            trial.problems.append(f"{cam}: {len(missing)} frames at or below the durable watermark "
                                  f"{trial.watermark[cam]} are gone, e.g. seqs {missing[:8]}")
    for p in bad:  # only a file that never held a committed chunk may be beyond repair
        trial.problems.append(f"unrecoverable after a power cut: {p}: {report.errors[:3]}")


def run_trials(fs: Mounted, base: Path, n: int, seed: int) -> list[Trial]:
    trials = []
    for i in range(n):
        rng = random.Random(seed * 1000 + i)
        trial = Trial(index=i, mode=MODES[i % len(MODES)], cut_after_s=rng.uniform(0.05, 0.5),
                      segment_mb=rng.choice((0.02, 0.05, 0.2, 4.0)),
                      commit_ms=rng.choice((5, 20, 60)))
        out = base / f"cut-{i:03d}"
        fly_and_cut(fs, out, trial, rng)
        # the cut holds the whole mount: this trial's store root
        check_cut(out / f"trial-{i:03d}", trial)
        trials.append(trial)
    return trials


@pytest.fixture(scope="module")
def summary(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    yield from printed_summary(request, tmp_path_factory, "powercut-summary.txt")


@pytest.fixture(scope="module")
def fs(tmp_path_factory: pytest.TempPathFactory):
    if fuse_unavailable():
        pytest.skip(fuse_unavailable())
    with mounted(tmp_path_factory.mktemp("forgetfs") / "mnt") as m:
        yield m


def _no_fsync(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "fsync", lambda fd: None)
    monkeypatch.setattr(os, "fdatasync", lambda fd: None)


@needs_fuse
def test_power_cut_at_random_moments_keeps_every_durable_frame(
        fs: Mounted, tmp_path: Path, summary: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    if BREAK_FSYNC:
        _no_fsync(monkeypatch)
    if MUTANT:
        from ordering_writer import MUTANTS

        if MUTANT not in MUTANTS:
            pytest.fail(f"CAMCTL_POWERCUT_MUTANT must be one of {sorted(MUTANTS)}, not {MUTANT!r}")
        MUTANTS[MUTANT](monkeypatch.setattr)
    trials = run_trials(fs, tmp_path, TRIALS, SEED)
    durable = sum(t.watermark[c] + 1 for t in trials for c in CAMERAS)
    summary.append(
        f"powercut: seed={SEED} trials={len(trials)} "
        f"modes={ {m: sum(t.mode == m for t in trials) for m in MODES} } "
        f"repaired={sum(t.verify_rc == 1 for t in trials)} "
        f"clean={sum(t.verify_rc == 0 for t in trials)} "
        f"segments={sum(t.segments for t in trials)} "
        f"frames put={sum(sum(t.put.values()) for t in trials)} "
        f"durable-at-cut={durable} "
        f"read-after-repair={sum(len(v) for t in trials for v in t.read.values())}"
        + (" [fsync REMOVED]" if BREAK_FSYNC else "") + (f" [{MUTANT}]" if MUTANT else ""))
    problems = [f"trial {t.index} ({t.mode}, cut after {t.cut_after_s:.2f}s, "
                f"segment {t.segment_mb} MB, "
                f"commit {t.commit_ms} ms): {p}" for t in trials for p in t.problems]
    assert not problems, "\n".join(problems)
    # Foxglove's reader reads them all too: without node it skips here, after the cuts were
    # checked (a skip, never a silent pass: under CI a skip fails)
    js = indexed_read([seg for t in trials for seg in t.readable])
    assert not {p: v for p, v in js.items() if "error" in v}, js
    assert durable > 10 * len(trials), \
        "the stores claimed almost nothing durable: the harness cut too early"
    assert sum(t.verify_rc == 1 for t in trials) > len(trials) // 2, \
        "few cuts left a torn file to repair"
    assert any(t.segments > 2 * len(CAMERAS) for t in trials), "no trial rotated a segment"


@needs_fuse
def test_a_store_without_fsync_fails_this_suite(fs: Mounted, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    _no_fsync(monkeypatch)
    trials = run_trials(fs, tmp_path, 3, SEED + 1)
    assert all(t.problems for t in trials), [t.problems for t in trials]
    assert all(any("below the durable watermark" in p for p in t.problems) for t in trials)


# --- a real `camctl run`, killed -9 on an ordinary disk, then restarted ---------------------------
def board_config(directory: Path, name: str, index: int, *, post_touchdown_s: float = 1.0) -> Path:
    """Demo board config, heavier: 640x360, ARMED 10 / DESCENT 30 fps, rotating 0.5 MB segments."""
    rates = {"ARMED": 10, "DESCENT": 30, "SEPARATION": 30, "TOUCHDOWN": 20}
    return write_board_config(directory, name, index, size=(640, 360),
                              post_touchdown_s=post_touchdown_s,
                              fps={"down": rates, "up": rates}, segment_mb=0.5, reserve_mb=16,
                              stills=())


@dataclass
class KillTrial:
    """A real board killed with SIGKILL: its last polled durable counts per camera."""

    index: int
    phase: str
    kill_after_s: float
    durable: dict[str, int] = field(default_factory=dict)
    polls: int = 0
    phase_at_kill: str = ""


def _poll_until(client: Client, trial: KillTrial, deadline: float) -> None:
    """Poll status until ``deadline``, keeping the last durable count per camera, never lowered."""
    while True:
        st = client.status()
        trial.polls += 1
        trial.phase_at_kill = st["phase"]
        for cam, cs in st["cameras"].items():
            trial.durable[cam] = max(trial.durable.get(cam, 0), cs["durable_frames"])
        if time.monotonic() >= deadline:
            return
        time.sleep(min(0.02, max(0.0, deadline - time.monotonic())))


def fly_and_kill(board: BoardProcess, trial: KillTrial, rng: random.Random) -> None:
    """Arm, go to ``trial.phase``, poll durable counts, then SIGKILL at a random moment."""
    with Client(board.router, timeout_s=10.0) as client:
        client.command("arm")
        armed_dwell = rng.uniform(0.1, 0.6)
        if trial.phase == "ARMED":
            _poll_until(client, trial, time.monotonic() + trial.kill_after_s)
        else:
            _poll_until(client, trial, time.monotonic() + armed_dwell)
            client.command("event", name="release")
            t_release = time.monotonic()
            if trial.phase in ("SEPARATION", "TOUCHDOWN"):
                _poll_until(client, trial, t_release + rng.uniform(0.1, 0.6))
                client.command("event", name="separation")
            if trial.phase == "TOUCHDOWN":
                _poll_until(client, trial, time.monotonic() + rng.uniform(0.0, 0.4))
                client.command("event", name="touchdown")
            # kill within 0.3-2.5 s of release (TOUCHDOWN: inside post_touchdown_s, before LANDED)
            kill_at = max(time.monotonic(), t_release + trial.kill_after_s)
            if trial.phase == "TOUCHDOWN":
                kill_at = time.monotonic() + rng.uniform(0.0, 0.8)
            _poll_until(client, trial, kill_at)
    board.proc.kill()  # SIGKILL: no flush, no finish, no atexit
    board.proc.wait(10)




def test_restart_after_kill_recovers_the_store_and_flies_again(tmp_path: Path, summary: list[str],
                                                               camctl_cli) -> None:
    def run_verify(path: Path) -> subprocess.CompletedProcess:
        """``camctl verify PATH`` (conftest's camctl_cli: in this process, no Python start)."""
        return camctl_cli("verify", str(path))

    cfg = board_config(tmp_path / "board", "restart", 0, post_touchdown_s=0.3)
    store = tmp_path / "board" / "store"
    board = start_board(cfg, store, "restart")
    trial = KillTrial(index=-1, phase="DESCENT", kill_after_s=1.0)
    try:
        fly_and_kill(board, trial, random.Random(SEED))
    finally:
        board.kill9()
    assert run_verify(store).returncode == 1, "the kill left nothing to repair"
    (killed_flight,) = list_flights(store)
    # what the kill left, before the restart
    torn = sorted((store / killed_flight).glob("*/*.mcap"))
    board = start_board(cfg, store, "restart")  # Daemon.start runs recover_store before READY
    try:
        # the restarted daemon repaired what the kill tore, then resumed the killed flight: it
        # records on into new segments of the same flight, so only its pre-kill segments are
        # checked here
        for seg in torn:
            assert verify(seg).exit_code == 0, f"the restarted daemon did not recover {seg}"
        got = {c: sum(1 for s in torn if s.parent.name == c for _ in iter_frames(s))
               for c in CAMERAS}
        assert all(got[c] >= trial.durable.get(c, 0) for c in CAMERAS), (got, trial.durable)
        with Client(board.router, timeout_s=10.0) as client:
            assert ((client.status()["phase"], client.status()["flight"])
                    == ("DESCENT", killed_flight))

            def land() -> dict:
                return wait_for(lambda: (st := client.status())["phase"] == "LANDED"
                                and st["serving"] and st, "LANDED and serving")

            client.command("event", name="touchdown")
            # the killed flight, finished after its restart
            assert land()["flight"] == killed_flight
            client.command("disarm")
            for command, args in (("arm", {}), ("event", {"name": "release"}),
                                  ("event", {"name": "touchdown"})):
                client.command(command, **args)
                if command == "arm" or args.get("name") == "release":
                    # a few frames in each phase (the flight's length, not a wait for a result)
                    time.sleep(0.3)
            st = land()
            new_flight = st["flight"]
            assert new_flight != killed_flight
            assert all(st["cameras"][c]["durable_frames"] == st["cameras"][c]["frames_stored"] > 0
                       for c in CAMERAS), st["cameras"]
        final = run_verify(store)
        assert final.returncode == 0, final.stdout
        assert sorted(list_flights(store)) == sorted([killed_flight, new_flight])
    finally:
        assert board.stop() == 0
    summary.append(f"powercut restart: killed flight {killed_flight} recovered at start "
                   f"({got} frames, durable before kill {trial.durable}); "
                   f"new flight {new_flight} landed clean")


# --- a power cut during repair --------------------------------------------------------------------
def _damaged_segment(tmp: Path) -> tuple[bytes, set[int]]:
    """A torn segment with a flipped magic and a chunk hit mid-file; the seqs repair must keep."""
    cfg = StoreConfig(reserve_mb=0, commit_interval_ms=60_000)
    st = FlightStore(tmp, "b", "F", cfg, cameras=["cam"])
    for k in range(6):
        for j in range(3):
            assert st.put(frame("cam", k * 3 + j, data=JPEGS[j]))
        st.commit(wait=True)
    seg = tmp / "F" / "cam" / "000001.mcap"
    data = bytearray(seg.read_bytes())
    st.close()
    from camctl.store._salvage import scan_segment

    chunks = scan_segment(seg, bytes(data)).chunks
    hit = chunks[2]
    # bit rot inside chunk 3: its frames are lost, the rest kept
    data[(hit.start + hit.end) // 2] ^= 0x10
    data[1] ^= 0x01  # and in the magic
    data += data[chunks[-1].start:chunks[-1].start + 300]  # and an uncommitted chunk at the tail
    keep = {m.sequence for c in chunks if c is not hit for m in c.messages if m.channel_id == 1}
    return bytes(data), keep


@needs_fuse
@pytest.mark.parametrize("when", ["after_fix", "before_fsync"])
def test_power_cut_during_repair_keeps_every_chunk(fs: Mounted, tmp_path: Path, when: str,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from camctl.store import _repair, repair_segment
    from camctl.store._salvage import scan_segment

    data, keep = _damaged_segment(tmp_path / "build")
    d = fs.mnt / f"repair-{when}" / "cam"
    d.mkdir(parents=True)
    fsync_dir(d.parent)
    fsync_dir(fs.mnt)
    real_fsync = os.fsync
    for i in range(12):
        path = d / "000001.mcap"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.write(fd, data)
        real_fsync(fd)
        os.close(fd)
        fsync_dir(d)
        out = tmp_path / f"cut-{when}-{i}"
        mode = MODES[i % len(MODES)]

        def cut(out: Path = out, seed: int = i, mode: str = mode) -> None:
            fs.cut(out, seed=seed, mode=mode)

        if when == "after_fix":
            repair_segment(path, after_fix=cut)
        else:
            def fsync_after_cut(fd: int, cut=cut) -> None:
                cut()
                real_fsync(fd)
            monkeypatch.setattr(_repair.os, "fsync", fsync_after_cut)
            repair_segment(path)
            monkeypatch.setattr(_repair.os, "fsync", real_fsync)
        got = out / f"repair-{when}" / "cam" / "000001.mcap"
        scanned = {m.sequence for c in scan_segment(got).chunks for m in c.messages
                   if m.channel_id == 1}
        assert scanned == keep, f"cut {i} ({mode}) {when}: the half-repaired file lost chunks"
        report = verify(got, repair=True)
        assert report.exit_code in (0, 1), report.errors
        assert {s for t, s in read_plain(got) if t == "/cam/image"} == keep
        # chunk 3's frames were lost: a loss on record, never "clean" (issue 27)
        assert verify(got).status == "losses recorded"


@needs_fuse
def test_a_real_board_killed_then_cut_keeps_what_it_called_durable(fs: Mounted,
                                                                   tmp_path: Path) -> None:
    """A real ``camctl run`` writing to forgetfs, SIGKILLed mid-descent, then the power cut: every
    camera keeps at least the ``durable_frames`` its last status reported (the daemon's own write
    path)."""
    for i in range(int(os.environ.get("CAMCTL_TORTURE_BOARDS", "1"))):  # a board costs ~8 s
        store = fs.mnt / f"board-{i}"
        store.mkdir()
        fsync_dir(fs.mnt)
        cfg = board_config(tmp_path / f"board-{i}", f"cut-{i}", i)
        demo_store = (tmp_path / f"board-{i}" / "store").as_posix()
        cfg.write_text(cfg.read_text().replace(demo_store, store.as_posix()))
        board = start_board(cfg, store, f"cut-{i}")
        trial = KillTrial(index=i, phase="DESCENT",
                          kill_after_s=random.Random(SEED + i).uniform(0.8, 2.0))
        try:
            fly_and_kill(board, trial, random.Random(SEED + i))
        finally:
            board.kill9()
        out = fs.cut(tmp_path / f"cut-{i}", seed=i, mode=MODES[1 + i % 2])
        root = out / store.name
        report = verify(root, repair=True)
        assert report.exit_code in (0, 1), report.errors
        (flight,) = list_flights(root)
        for cam in CAMERAS:
            got = sum(1 for seg in sorted((root / flight / cam).glob("*.mcap"))
                      for t, _ in read_plain(seg) if t == f"/{cam}/image")
            assert got >= trial.durable.get(cam, 0) > 0, (i, cam, got, trial.durable)
