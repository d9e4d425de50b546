"""The bench harness: metrics and figures, the run context (corpus, flights, children), running and
reporting.

:class:`Ctx` holds what one ``camctl bench`` run shares between figures: a temp dir, a frame corpus
(1080p sim scenes, JPEG-encoded the way the board does), stored flights made with the real
:class:`~camctl.store.FlightStore`, helper child processes and ``camctl run`` boards.
:func:`run_benchmarks` runs the figures registered in :mod:`camctl.bench.registry`;
:func:`print_table` and :func:`markdown_table` report them; :func:`bench_main` is ``camctl bench``.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import logging
import os
import platform
import select
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from camctl.bench import registry

__all__ = ["MARKDOWN_HEADER", "MB", "QUALITY", "SIZE", "BenchResult", "Ctx", "Figure", "Metric",
           "bench_main", "child_env", "machine_info", "markdown_table", "print_table",
           "run_benchmarks"]

SIZE = (1920, 1080)
QUALITY = 85
MB = 1e6


@dataclass(frozen=True)
class Metric:
    """One reported number: its key, target (``op`` and ``threshold``; none for informative ones),
    meaning."""

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
        return {">=": value >= self.threshold, "<": value < self.threshold,
                "<=": value <= self.threshold}[self.op]



@dataclass(frozen=True)
class Figure:
    """One benchmark: its ``--only`` name, the function measuring it, the metrics it reports (table
    order)."""

    name: str
    run: Callable[[Ctx], dict[str, Any]]
    metrics: tuple[Metric, ...]

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(m.key for m in self.metrics)


def _by_key() -> dict[str, Metric]:
    return {m.key: m for m in registry.metrics()}



@dataclass
class BenchResult:
    """Values by metric key (None when it failed), errors and notes by key, the machine, elapsed
    time."""

    values: dict[str, float | None] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    # keys this machine cannot measure (their reason is in ``errors``): null, not a failed run
    unavailable: set[str] = field(default_factory=set)
    notes: dict[str, str] = field(default_factory=dict)
    machine: dict[str, Any] = field(default_factory=dict)
    quick: bool = False
    elapsed_s: float = 0.0

    def to_json(self) -> dict[str, Any]:
        by = _by_key()
        out: dict[str, Any] = dict(self.values)
        out.update(machine=self.machine, quick=self.quick, elapsed_s=round(self.elapsed_s, 1),
                   errors=self.errors, unavailable=sorted(self.unavailable), notes=self.notes,
                   targets={k: by[k].target for k in self.values if by[k].target})
        return out


# --- the shared context ---------------------------------------------------------------------------
class Ctx:
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
            from camctl.board.cameras.sim import render_scene
            from camctl.board.encode import encode_jpeg

            n = 8 if self.quick else 16
            for i in range(n):
                role, seed = ("down", 1) if i % 2 == 0 else ("up", 2)
                img = render_scene(seed, role, SIZE, i, i / 30)
                self._images.append(img)
                self._jpegs.append(encode_jpeg(img, QUALITY))
        return self._images, self._jpegs

    def frames(self, n: int) -> list[Any]:
        """``n`` EncodedFrames alternating cameras down/up, each camera in sequence at 30 fps."""
        from camctl.common.frames import EncodedFrame

        _, jpegs = self.corpus()
        out = []
        for i in range(n):
            cam = "down" if i % 2 == 0 else "up"
            seq = i // 2
            out.append(EncodedFrame(camera=cam, seq=seq, timestamp_ns=10**9 + seq * 33_333_333,
                                    jpeg=jpegs[i % len(jpegs)], width=SIZE[0], height=SIZE[1],
                                    phase="DESCENT"))
        return out

    def flight(self, n_frames: int) -> Path:
        """A store root holding one finished flight of ``n_frames`` (cached by size). Written
        without fsync."""
        if n_frames not in self._flights:
            from camctl.board.config import StoreConfig
            from camctl.store import FlightStore

            root = self.tmp / f"store-{n_frames}"
            with FlightStore(root, "bench", f"F{n_frames}",
                             StoreConfig(queue_frames=n_frames + 16, reserve_mb=0),
                             cameras=["down", "up"], fsync=lambda fd: None) as st:
                for fr in self.frames(n_frames):
                    if not st.put(fr):
                        raise RuntimeError("the store dropped a frame "
                                           "while making the bench flight")
            self._flights[n_frames] = root
        return self._flights[n_frames]

    def frames_for_mb(self, mb: float) -> int:
        _, jpegs = self.corpus()
        return max(4, int(mb * MB / (sum(map(len, jpegs)) / len(jpegs))))

    # children
    def spawn(self, *args: str, module: str = "camctl.bench",
              timeout_s: float = 30.0) -> tuple[subprocess.Popen, dict]:
        """Start ``python -m module args``; return it and the JSON object it prints first."""
        log_path = self.tmp / f"{self.name('child')}.log"
        with log_path.open("wb") as log:
            proc = subprocess.Popen([sys.executable, "-m", module, *args], stdin=subprocess.PIPE,
                                    stdout=subprocess.PIPE, stderr=log, env=child_env())
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


@contextlib.contextmanager
def board_interpreter() -> Any:
    """Run board code in-process under the interpreter settings ``camctl run`` gives a board (the
    GIL switch interval, see :data:`camctl.board.daemon.SWITCH_INTERVAL_S`), and restore the bench's
    own after."""
    from camctl.board.daemon import SWITCH_INTERVAL_S

    saved = sys.getswitchinterval()
    sys.setswitchinterval(min(saved, SWITCH_INTERVAL_S))
    try:
        yield
    finally:
        sys.setswitchinterval(saved)


def child_env() -> dict[str, str]:
    """Children import the same camctl as this process (not whatever ``-m`` would find from their
    cwd)."""
    here = str(Path(__file__).resolve().parents[2])
    pythonpath = os.pathsep.join(x for x in (here, os.environ.get("PYTHONPATH")) if x)
    return {**os.environ, "PYTHONPATH": pythonpath}


# --- harness --------------------------------------------------------------------------------------
def _selected(only: list[str] | None) -> list[str]:
    if not only:
        return [f.name for f in registry.figures()]
    names = []
    for want in only:
        hits = [f.name for f in registry.figures() if want == f.name or want in f.keys]
        if not hits:
            known = sorted({*(f.name for f in registry.figures()),
                            *(m.key for m in registry.metrics())})
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
            "platform": platform.platform(), "numpy": np.__version__,
            "simplejpeg": simplejpeg.__version__,
            "pyzmq": zmq.__version__, "libzmq": zmq.zmq_version()}


def run_benchmarks(*, quick: bool = False, only: list[str] | None = None,
                   on_done: Callable[[str, dict[str, Any]], None] | None = None) -> BenchResult:
    """Run the selected benchmarks (all by default); a failing one yields None values and an error
    string."""
    names = _selected(only)
    result = BenchResult(quick=quick, machine=machine_info())
    t0 = time.perf_counter()
    ctx = Ctx(quick)
    camlog = logging.getLogger("camctl")
    level = camlog.level
    # in-process daemons would log every phase change onto the report
    camlog.setLevel(logging.ERROR)
    figs = {f.name: f for f in registry.figures()}
    try:
        for name in names:
            fn, keys = figs[name].run, figs[name].keys
            try:
                out = fn(ctx)
            except Exception as exc:
                out = {k: None for k in keys}
                out["_error"] = f"{type(exc).__name__}: {exc}"
            # "_error"/"_note" speak for every key of the figure, "_errors"/"_notes" for one each;
            # "_unavailable" names keys this machine cannot measure, with the reason
            errors, notes = out.get("_errors") or {}, out.get("_notes") or {}
            unavailable = out.get("_unavailable") or {}
            for k in keys:
                v = out.get(k)
                result.values[k] = None if v is None else float(v)
                if unavailable.get(k):
                    result.errors[k] = unavailable[k]
                    result.unavailable.add(k)
                elif errors.get(k) or out.get("_error"):
                    result.errors[k] = errors.get(k) or out["_error"]
                if notes.get(k) or out.get("_note"):
                    result.notes[k] = notes.get(k) or out["_note"]
            if on_done is not None:
                on_done(name, out)
    finally:
        ctx.close()
        camlog.setLevel(level)
    result.elapsed_s = time.perf_counter() - t0
    return result


def _value(m: Metric, v: float | None) -> str:
    if v is None:
        return "null"
    text = f"{v:.0f}" if abs(v) >= 100 else f"{v:.3g}"
    return f"{text} {m.unit}" if m.unit else text


def _machine_line(result: BenchResult) -> str:
    mach = result.machine
    return (f"{mach.get('cpu')}, {mach.get('cores')} cores, Python {mach.get('python')}, "
            f"numpy {mach.get('numpy')}, simplejpeg {mach.get('simplejpeg')}, "
            f"libzmq {mach.get('libzmq')}")


def _commit() -> str:
    """``git describe --always --dirty`` of the camctl source tree, or ``unknown`` outside a
    checkout."""
    try:
        out = subprocess.run(["git", "describe", "--always", "--dirty"],
                             cwd=Path(__file__).resolve().parent,
                             capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip() if out.returncode == 0 and out.stdout.strip() else "unknown"


MARKDOWN_HEADER = "| metric | value | target | met | what it compares |"


def markdown_table(result: BenchResult, *, commit: str | None = None,
                   date: str | None = None) -> str:
    """The README's performance table: a line naming run, commit and machine, a row per metric."""
    by = _by_key()
    when = date or datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d")
    quick = " --quick" if result.quick else ""
    lines = [f"`camctl bench{quick} --markdown` at commit `{commit or _commit()}`, "
             f"{when}, on {_machine_line(result)}; {result.elapsed_s:.0f} s.", "",
             MARKDOWN_HEADER, "|---|---|---|---|---|"]
    for key, v in result.values.items():
        m = by[key]
        ok = m.passes(v)
        met = "error" if v is None else {True: "yes", False: "**no**", None: ""}[ok]
        compares = m.compares.replace("|", "\\|")
        lines.append(f"| `{key}` | {_value(m, v)} | {m.target} | {met} | {compares} |")
    for key, err in result.errors.items():
        lines.append(f"\n`{key}` {'not measured' if key in result.unavailable else 'failed'}: "
                     f"{err}")
    return "\n".join(lines) + "\n"


def print_table(result: BenchResult) -> None:
    from rich.console import Console
    from rich.table import Table

    quick = " --quick" if result.quick else ""
    table = Table(title=f"camctl bench{quick}: ratios against same-run baselines")
    for col in ("metric", "value", "target", "", "compares"):
        table.add_column(col, justify="right" if col in ("value", "target") else "left",
                         no_wrap=col != "compares")
    by = _by_key()
    for key, v in result.values.items():
        m = by[key]
        ok = m.passes(v)
        mark = "[green]PASS[/]" if ok else "[red]FAIL[/]" if ok is False else ""
        if v is None:
            mark = "[red]ERROR[/]"
        table.add_row(key, _value(m, v), m.target, mark, m.compares)
    console = Console(width=max(140, Console().width))
    console.print(table)
    for key, note in result.notes.items():
        console.print(f"[dim]{key}: {note}[/]", highlight=False)
    for key, err in result.errors.items():
        console.print(f"[red]{key}: {err}[/]", highlight=False)
    console.print(f"machine: {_machine_line(result)}; {result.elapsed_s:.0f} s", highlight=False)


def bench_main(args: argparse.Namespace) -> int:
    """``camctl bench [--json | --markdown] [--quick] [--only NAME]``: 0 when every benchmark ran.

    Targets do not count in the exit code: 2 when a benchmark could not measure or a name is
    unknown.
    """
    only = getattr(args, "only", None)
    try:
        _selected(only)
    except ValueError as exc:
        print(f"camctl bench: {exc}", file=sys.stderr)
        return 2
    as_json = bool(getattr(args, "json", False))
    as_markdown = bool(getattr(args, "markdown", False))

    def progress(name: str, out: dict[str, Any]) -> None:
        if not (as_json or as_markdown):
            state = "error" if out.get("_error") or out.get("_errors") else "done"
            print(f"  {name}: {state}", file=sys.stderr, flush=True)

    result = run_benchmarks(quick=bool(getattr(args, "quick", False)), only=only, on_done=progress)
    if as_json:
        print(json.dumps(result.to_json(), indent=2))
    elif as_markdown:
        print(markdown_table(result), end="")
    else:
        print_table(result)
    # a benchmark that could not measure is the command failing at its job, not a finding in data:
    # 2 (a key this machine cannot measure, with its reason, is not)
    failed = [k for k, v in result.values.items() if v is None and k not in result.unavailable]
    return 2 if result.errors and failed else 0

