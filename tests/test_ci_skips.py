"""A skipped test fails the run under CI, keeps its reason, and stays a skip elsewhere; an expected
failure stays what it is. A real pytest run in a subprocess on a made-up test file."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
SAMPLE = '''
import pytest

def test_runs():
    pass

def test_skips():
    pytest.skip("no frobnicator on this machine")

@pytest.mark.skipif(True, reason="no widget either")
def test_skipif():
    pass

@pytest.mark.xfail(reason="known", strict=True)
def test_xfails():
    assert False
'''


def _run(tmp_path: Path, ci: str | None) -> subprocess.CompletedProcess[str]:
    (tmp_path / "conftest.py").write_text("from ci_skips import pytest_runtest_makereport\n")
    (tmp_path / "test_sample.py").write_text(SAMPLE)
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env["PYTHONPATH"] = os.pathsep.join([str(TESTS), env.get("PYTHONPATH", "")])
    if ci is not None:
        env["CI"] = ci
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-rA", "-p", "no:cacheprovider",
                           "--rootdir", str(tmp_path), str(tmp_path)],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)


@pytest.mark.parametrize("ci", ["true", "1"])
def test_under_ci_a_skip_fails_and_says_why(tmp_path: Path, ci: str) -> None:
    out = _run(tmp_path, ci)
    assert out.returncode == 1, out.stdout
    # the call-time skip fails the test, the skipif errors its set-up: neither is a skip
    assert "1 failed, 1 passed, 1 xfailed, 1 error" in out.stdout.splitlines()[-1], out.stdout
    assert "skipped under CI, which must run every test: no frobnicator" in out.stdout
    assert "skipped under CI, which must run every test: no widget either" in out.stdout


@pytest.mark.parametrize("ci", [None, "", "false"])
def test_outside_ci_a_skip_stays_a_skip(tmp_path: Path, ci: str | None) -> None:
    out = _run(tmp_path, ci)
    assert out.returncode == 0, out.stdout
    assert "1 passed, 2 skipped, 1 xfailed" in out.stdout.splitlines()[-1], out.stdout
