"""Ordering proved, not sampled: the power is cut inside every sync call of a store's run, before
the call applies, and every claim the store had made by then must hold in what the cut left.

A writer process (``tests/ordering_writer.py``: a :class:`FlightStore` with two cameras on the
forgetfs mount, frames at a steady pace, a group commit every few frames, a handful of segments per
camera, then landing: finished segments and ``index.json``) appends each claim it makes --
``durable_seq`` per camera from ``stats()`` -- to a file outside the mount. forgetfs is armed to
stop *every* fsync and fsyncdir call: it writes the durable tree as it is before the call, then
holds the call. While it is held the writer cannot learn that it succeeded, so each claim it made
until then must hold in that cut: the store's own repair (``verify(repair=True)``) runs on the
cut copy and every frame with a seq at or below a claimed ``durable_seq`` must read back with its
bytes intact. Then the call is let through and the next one is cut: one run walks every sync call
(file fsync of each segment, fsyncdir of each new segment's directory, of the flight's and the
store's directory, the event log, flight.json and index.json), and the test checks that the
number of cuts equals the number of sync calls forgetfs saw.

The same walk runs against the two ordering mutants of issue 27 (applied in the writer process,
:data:`ordering_writer.MUTANTS`): a store that marks frames durable before the segment's file fsync
(``mutant_a``) and one that does before a new segment's directory fsync (``mutant_b``). The walk
must catch each, at a cut before the call it misorders, every run. One summary line per walk is
printed at the end of the module (and kept in ``ordering-summary.txt``).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from forgetfs import Mounted, cut_dir, fuse_unavailable, mounted, release, trapped
from ordering_writer import CAMERAS, FLIGHT, VARIANTS, expected_jpeg
from store_helpers import printed_summary
from waiting import wait_for

from camctl.common.fsutil import fsync_dir
from camctl.store import iter_frames, verify

WRITER = Path(__file__).resolve().parent / "ordering_writer.py"

pytestmark = [pytest.mark.timeout(900),
              pytest.mark.skipif(bool(fuse_unavailable()),
                                 reason=fuse_unavailable() or "fuse available")]


@dataclass
class Cut:
    """One cut inside a sync call: the call, the claims made before it returned, what failed."""

    n: int
    call: str
    path: str
    claims: dict[str, int]
    problems: list[str] = field(default_factory=list)


@dataclass
class Walk:
    variant: str
    cuts: list[Cut] = field(default_factory=list)
    syncs: int = 0  # fsync + fsyncdir calls forgetfs saw during the run
    writer_rc: int | None = None
    files: list[str] = field(default_factory=list)  # the store's files once it landed

    @property
    def caught(self) -> list[Cut]:
        return [c for c in self.cuts if c.problems]


def claims_since(path: Path, t: float) -> dict[str, int] | None:
    """The highest ``durable_seq`` per camera the writer claimed, once it has reported after ``t``
    (None before): every claim it made before ``t``. A dropped frame makes the check unsound."""
    try:
        lines = [json.loads(s) for s in path.read_text().splitlines() if s.endswith("}")]
    except FileNotFoundError:
        return None
    if not lines or lines[-1]["t"] <= t:
        return None
    assert not any(n for line in lines for n in line["dropped"].values()), lines[-1]
    return {c: max((line["durable_seq"].get(c, -1) for line in lines), default=-1)
            for c in CAMERAS}


def check_cut(flight: Path, claims: dict[str, int]) -> list[str]:
    """What of ``claims`` does not hold in the cut flight ``flight``, after the store's repair."""
    if max(claims.values()) < 0:
        return []
    if not (flight / "flight.json").is_file():
        return [f"claims {claims} but no flight.json in the cut"]
    try:
        report = verify(flight, repair=True)
    except Exception as exc:
        return [f"verify --repair raised {exc!r}"]
    problems = [f"unrecoverable: {p}: {report.errors[:2]}" for p in report.unrecoverable]
    for cam in CAMERAS:
        got: dict[int, bytes] = {}
        for seg in sorted((flight / cam).glob("*.mcap")):
            try:
                got.update((f.seq, f.jpeg) for f in iter_frames(seg))
            except Exception as exc:
                problems.append(f"{seg.name}: unreadable after repair: {exc!r}")
        want = range(claims[cam] + 1)
        missing = [s for s in want if s not in got]
        wrong = [s for s in want if s in got and got[s] != expected_jpeg(cam, s)]
        if missing:
            problems.append(f"{cam}: claimed durable up to seq {claims[cam]}, {len(missing)} "
                            f"missing, e.g. {missing[:6]}")
        if wrong:
            problems.append(f"{cam}: frames {wrong[:6]} read back with other bytes")
    return problems


def _release_held(out: Path) -> bool:
    """Fail every held call of the trap writing to ``out`` (cleanup: the mount answers nothing
    else while it holds one)."""
    for info in out.glob("*.json"):
        go = info.with_suffix(".go")
        if not go.exists():
            release(out, int(info.stem), "eio")
    return False


def walk(fs: Mounted, tmp: Path, variant: str) -> Walk:
    """Run the writer on the mount with a cut inside each of its sync calls (see the module doc)."""
    name = f"{variant}-{tmp.name}"
    root = fs.mnt / name
    root.mkdir()
    fsync_dir(fs.mnt)
    out, claims = tmp / "cuts", tmp / "claims.jsonl"
    result = Walk(variant)
    before = fs.status()
    fs.arm(out, every=True, then="hold", mode="none")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [
        str(WRITER.parent.parent), os.environ.get("PYTHONPATH", "")]))}
    with open(tmp / "writer.log", "wb") as log:
        proc = subprocess.Popen([sys.executable, str(WRITER), str(root), str(claims), variant],
                                cwd=tmp, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        while True:
            n = len(result.cuts) + 1
            wait_for(lambda n=n: trapped(out, n) or proc.poll() is not None,
                     f"sync call {n} of the writer, or its exit", timeout_s=120)
            info = trapped(out, n)  # once the writer is gone, every call it made was cut
            if info is None:
                break
            claim = wait_for(lambda t=info["t"]: claims_since(claims, t),
                             f"the writer's claims while call {n} is held", timeout_s=120)
            cut = Cut(n, info["call"], info["path"].removeprefix(f"/{name}"), claim)
            cut.problems = check_cut(cut_dir(out, n) / name / FLIGHT, claim)
            result.cuts.append(cut)
            if not cut.problems or len(result.caught) > 1:
                shutil.rmtree(cut_dir(out, n))  # keep the first cut that failed, to look at
            release(out, n, "apply")
        result.writer_rc = proc.wait(60)
    finally:
        if proc.poll() is None:
            # SIGKILL does not end a call the filesystem holds (forgetfs.held): it dies once that
            # call is answered, so fail every held one until it is gone
            proc.kill()
            wait_for(lambda: _release_held(out) or proc.poll() is not None, "the writer to die")
        fs.disarm()
    after = fs.status()
    result.syncs = sum(after[k] - before[k] for k in ("fsync", "fsyncdir"))
    result.files = sorted("/" + p.relative_to(root).as_posix() for p in root.rglob("*"))
    subprocess.run(["rm", "-rf", str(root)], check=False)
    assert result.writer_rc == 0, (tmp / "writer.log").read_text()[-3000:]
    return result


@pytest.fixture(scope="module")
def fs(tmp_path_factory: pytest.TempPathFactory):
    if fuse_unavailable():
        pytest.skip(fuse_unavailable())
    with mounted(tmp_path_factory.mktemp("forgetfs") / "mnt") as m:
        yield m


@pytest.fixture(scope="module")
def summary(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    yield from printed_summary(request, tmp_path_factory, "ordering-summary.txt")


def _expected_calls(files: list[str]) -> set[tuple[str, str]]:
    """The sync calls a landed flight's files imply: each segment and JSON file fsync'd (JSON
    through its ``.tmp``), each directory fsync'd."""
    want = {("fsyncdir", "")}  # the store root, holding the new flight
    for f in files:
        if f.endswith(".mcap"):
            want |= {("fsync", f), ("fsyncdir", f.rsplit("/", 1)[0])}
        elif f.endswith(".json"):
            want |= {("fsync", f + ".tmp"), ("fsyncdir", f.rsplit("/", 1)[0])}
    return want


@pytest.mark.parametrize("variant", VARIANTS)
def test_a_cut_inside_every_sync_call_keeps_every_claim(fs: Mounted, tmp_path: Path, variant: str,
                                                        summary: list[str]) -> None:
    result = walk(fs, tmp_path, variant)
    caught = result.caught
    kinds = sorted({f"{c.call} {c.path.rsplit('/', 1)[0] if c.call == 'fsync' else c.path}"
                    for c in caught})
    summary.append(f"ordering {variant}: {len(result.cuts)} cuts for {result.syncs} sync calls, "
                   f"{len(caught)} caught" + (f" (at {', '.join(kinds)})" if caught else ""))
    # the walk is complete: every sync call of the run was cut, and they were the calls a landed
    # flight needs (each segment, the event log, flight.json, index.json, every directory)
    assert len(result.cuts) == result.syncs > 0
    segments = [f for f in result.files if f.endswith(".mcap")]
    assert all(sum(f"/{FLIGHT}/{c}/" in s for s in segments) >= 3 for c in CAMERAS), segments
    missed = _expected_calls(result.files) - {(c.call, c.path) for c in result.cuts}
    assert not missed, f"sync calls never cut: {sorted(missed)}"
    if variant == "correct":
        assert not caught, "\n".join(f"cut {c.n} before {c.call} {c.path} (claims {c.claims}): "
                                     f"{p}" for c in caught for p in c.problems)
        return
    # a mutant is caught, at a cut before the very call it claims ahead of
    call = {"mutant_a": "fsync", "mutant_b": "fsyncdir"}[variant]
    camera_dirs = {f"/{FLIGHT}/{c}" for c in CAMERAS}
    at = [c for c in caught if c.call == call
          and (c.path if call == "fsyncdir" else c.path.rsplit("/", 1)[0]) in camera_dirs]
    assert at, f"{variant} was not caught before a camera segment's {call}: " + \
        "; ".join(f"cut {c.n} {c.call} {c.path}: {c.problems}" for c in caught)
