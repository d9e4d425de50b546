"""The flight torture run: a real board flown through seeded hangs, throws, stalls, kill -9s and
reboots, then fetched and checked (issue 26).

Per seed (:func:`run_seed`): a board config, a flight script and a schedule of disruptions, all from
the seed (:mod:`camctl.testing.torture_plan`); a real ``camctl run`` flies it
(:mod:`camctl.testing.torture_board`): arm with the key held, release, maybe separation, touchdown,
LANDED, maybe a disarm, each event a pulse or a held line, and kill -9 at random moments in ARMED,
a descent phase, TOUCHDOWN, LANDED's finish or right after a disarm, each followed by a plain
restart or a reboot (new boot id, monotonic clock near a few seconds). After every kill, before the
restart, the frames the store holds are read (they must all survive). Once the board is LANDED and
serving, ``camctl fetch`` downloads the flight and :mod:`camctl.testing.torture_checks` checks the
invariants: one flight, every durable frame present, frame identity, the ledger balanced in
STATUS, store and download, the timeline monotonic, the phases as driven.

Run it::

    python -m camctl.testing.torture --seeds 50 --jobs 2          # seeds 0..49
    python -m camctl.testing.torture --seeds 1 --first 17 --keep /tmp/t   # seed 17 again, kept

One line per seed (PASS/FAIL, seconds, the failed invariants); exit 1 when any seed failed, 2 when
the run cannot start (reboots need root for time namespaces). Needs Linux and root.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from camctl.testing.reboot import unavailable
from camctl.testing.torture_board import BoardError, TortureBoard
from camctl.testing.torture_checks import (
    CHECKS,
    Evidence,
    Failure,
    Restart,
    check_all,
    frame_keys,
)
from camctl.testing.torture_plan import Kill, Plan, board_toml, plan_for

__all__ = ["SeedResult", "main", "run_seed"]

# the phases a board may come up in after a kill in each stage (TOUCHDOWN's timer may have run out)
_ALLOWED = {"ARMED": ("ARMED",), "DESCENT": ("DESCENT",), "SEPARATION": ("SEPARATION",),
            "TOUCHDOWN": ("TOUCHDOWN", "LANDED"), "LANDED": ("LANDED",), "DISARM": ("SAFE",)}


@dataclass
class SeedResult:
    """One seed's verdict: its failures (none: PASS), how long it took, where its files are."""

    seed: int
    plan: Plan
    failures: list[Failure] = field(default_factory=list)
    elapsed_s: float = 0.0
    workdir: Path | None = None

    @property
    def ok(self) -> bool:
        return not self.failures

    def line(self) -> str:
        verdict = "PASS" if self.ok else "FAIL"
        names = sorted({f.invariant for f in self.failures})
        head = f"seed {self.seed:4d} {verdict} {self.elapsed_s:5.1f}s"
        if self.ok:
            return f"{head}  {self.plan.describe()}"
        return (f"{head}  [{' '.join(names)}]  {self.plan.describe()}\n"
                + "\n".join(f"    {f}" for f in self.failures))


class _Flight:
    """Flies one plan on one board, collecting :class:`Evidence` as it goes."""

    def __init__(self, plan: Plan, board: TortureBoard, ev: Evidence,
                 say: Callable[[str], None]) -> None:
        self.plan, self.board, self.ev, self.say = plan, board, ev, say
        self.phase = "SAFE"  # the last phase the board reported
        self.mark = 0  # the board's log size before the last restart or event watched for

    def event(self, name: str, expect: str) -> None:
        hold = ["--hold"] if name in self.plan.held else []
        out = self.board.operator("event", name, *hold)
        self._expect(out, f"event {name}", expect)

    def _expect(self, out: str, what: str, expect: str) -> None:
        got = out.rsplit("-> ", 1)[-1].split()[0] if "-> " in out else out.strip()
        if got != expect:
            raise BoardError(f"{what}: the board answered {out.strip()!r}, expected {expect}")
        self.phase = got

    def kill_restart(self, kill: Kill) -> None:
        n = len(self.ev.restarts) + 1
        self.say(f"kill {n} in {kill.stage} (+{kill.after_s:.2f} s), {kill.restart} restart")
        self.board.kill9()
        self.mark = self.board.log_size()
        keys = frame_keys(self.ev.store / self.ev.flight)
        self.ev.snapshots.append((f"kill {n} ({kill.stage}, {len(keys)} frames)", keys))
        self.board.start(reboot_uptime_s=kill.uptime_s if kill.restart == "reboot" else None)
        st = self.board.status()
        self.phase = st["phase"]
        self.ev.restarts.append(Restart(kill.stage, kill.restart, _ALLOWED[kill.stage],
                                        st["phase"], st.get("flight") or "",
                                        tuple(st.get("flights") or ())))

    def dwell(self, stage: str) -> None:
        """Stay ``stage``'s time, with its kill (if any) in it."""
        seconds = self.plan.dwell_s[stage]
        kill = self.plan.kill_in(stage)
        if kill is None:
            time.sleep(seconds)
            return
        time.sleep(kill.after_s)
        self.kill_restart(kill)
        time.sleep(max(0.0, seconds - kill.after_s))

    def fly(self) -> None:
        b, plan = self.board, self.plan
        b.start()
        self._expect(b.operator("arm", "--hold"), "arm --hold", "ARMED")
        self.ev.flight = b.status()["flight"]
        self.say(f"flight {self.ev.flight}")
        self.dwell("ARMED")
        self.event("release", "DESCENT")
        self.dwell("DESCENT")
        if plan.separation:
            self.event("separation", "SEPARATION")
            self.dwell("SEPARATION")
        self.mark = b.log_size()
        self.event("touchdown", "TOUCHDOWN")
        kill = plan.kill_in("TOUCHDOWN")
        if kill is not None:
            time.sleep(kill.after_s)
            self.kill_restart(kill)
        kill = plan.kill_in("LANDED")
        if kill is not None:  # during LANDED's finish: at the transition, seen in the board's log
            if self.phase != "LANDED":
                b.wait_log("-> LANDED", since=self.mark)
            time.sleep(kill.after_s)
            self.kill_restart(kill)
        self.ev.status = b.wait_status(lambda s: s["phase"] == "LANDED" and s["serving"],
                                       "LANDED and serving")
        if plan.disarm:
            self._expect(b.operator_now("disarm"), "disarm", "SAFE")
            kill = plan.kill_in("DISARM")
            if kill is not None:
                time.sleep(kill.after_s)
                self.kill_restart(kill)
            b.wait_status(lambda s: s["serving"], "serving after the disarm")

    def fetch(self) -> list[Failure]:
        b, ev = self.board, self.ev
        assert ev.ground is not None
        out = b.cli("fetch", "--connect", b.router, "--out", str(ev.ground), "--flight", "all",
                    "--quiet", "--give-up-after", "60", check=False)
        failures = []
        if out.returncode:
            failures.append(Failure("fetch", f"camctl fetch exited {out.returncode}: "
                                             f"{(out.stdout + out.stderr).strip()[-300:]}"))
        for attr, where in (("ls_store", b.store), ("ls_ground", ev.ground)):
            ls = b.cli("ls", "--json", str(where), check=False)
            try:
                setattr(ev, attr, json.loads(ls.stdout))
            except ValueError:
                failures.append(Failure("ledger_balanced", f"camctl ls --json {where} exited "
                                                           f"{ls.returncode}: "
                                                           f"{ls.stderr.strip()[-300:]}"))
        return failures


# the checks that still mean something when the flight could not be finished
_PARTIAL = ("one_flight", "durable_kept", "frame_identity", "timeline")


def run_seed(seed: int, workdir: Path, *, plan: Plan | None = None,
             say: Callable[[str], None] | None = None) -> SeedResult:
    """Fly seed ``seed`` (or ``plan``) in ``workdir/seed-<seed>`` and check it."""
    plan = plan or plan_for(seed)
    d = workdir / f"seed-{seed}"
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)
    config = d / "rig.toml"
    config.write_text(board_toml(plan, board=f"torture-{seed}", store=(d / "store").as_posix()))
    (d / "plan.txt").write_text(f"{plan}\n")
    board = TortureBoard(d, config)
    ev = Evidence(store=board.store, flight="", ground=d / "ground",
                  expected_phases=plan.expected_phases())
    result = SeedResult(seed, plan, workdir=d)
    flight = _Flight(plan, board, ev, say or (lambda _m: None))
    t0 = time.monotonic()
    try:
        flight.fly()
        result.failures += flight.fetch()
    except BoardError as exc:
        result.failures.append(Failure("board", str(exc)))
    except subprocess.TimeoutExpired as exc:  # a CLI call the board never answered
        result.failures.append(Failure("board", f"no answer: {exc}"))
    except Exception as exc:  # the harness's own fault: said apart from the board's
        result.failures.append(Failure("harness", f"{type(exc).__name__}: {exc}"))
    finally:
        board.stop()
    if ev.flight:
        if result.failures and result.failures[0].invariant in ("board", "harness"):
            ev.ground = None
            for name in _PARTIAL:
                result.failures += CHECKS[name](ev)
        else:
            result.failures += check_all(ev)
    result.elapsed_s = time.monotonic() - t0
    return result


def main(argv: list[str] | None = None) -> int:
    """``python -m camctl.testing.torture``: the module doc."""
    p = argparse.ArgumentParser(prog="python -m camctl.testing.torture",
                                description="fly real sim boards through seeded hangs, faults, "
                                            "kill -9s and reboots; fetch and check each flight")
    p.add_argument("--seeds", type=int, default=1, metavar="N", help="how many seeds (default: 1)")
    p.add_argument("--first", type=int, default=0, metavar="S",
                   help="the first seed (default: 0); seeds S..S+N-1 run")
    p.add_argument("--jobs", type=int, default=1, metavar="J",
                   help="seeds flown at once (default: 1; each board takes about one core)")
    p.add_argument("--keep", metavar="DIR", default=None,
                   help="keep every seed's board, store, log and download under DIR/seed-<S> "
                        "(default: a temporary folder, removed at the end)")
    p.add_argument("--verbose", action="store_true", help="say each kill as it happens")
    args = p.parse_args(argv)
    if args.seeds < 1 or args.jobs < 1:
        p.error("--seeds and --jobs must be at least 1")
    why = unavailable()
    if why:
        print(f"the torture run needs reboots: {why}", file=sys.stderr)
        return 2
    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="camctl-torture-"))
    work.mkdir(parents=True, exist_ok=True)
    seeds = list(range(args.first, args.first + args.seeds))
    results: list[SeedResult] = []
    t0 = time.monotonic()

    def one(seed: int) -> SeedResult:
        say = (lambda m: print(f"seed {seed}: {m}", flush=True)) if args.verbose else None
        return run_seed(seed, work, say=say)

    try:
        with concurrent.futures.ThreadPoolExecutor(max_workers=args.jobs) as pool:
            for done in concurrent.futures.as_completed([pool.submit(one, s) for s in seeds]):
                res = done.result()
                results.append(res)
                print(res.line(), flush=True)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    failed = sorted(r.seed for r in results if not r.ok)
    print(f"{len(results) - len(failed)}/{len(results)} seeds passed in "
          f"{time.monotonic() - t0:.0f} s" + (f"; failed: {failed}" if failed else ""))
    if failed:
        print(f"reproduce one: python -m camctl.testing.torture --seeds 1 --first {failed[0]} "
              "--keep DIR --verbose", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
