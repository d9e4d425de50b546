"""systemd/camctl.service: `systemd-analyze verify` accepts it, and would reject a broken copy.

`systemd-analyze verify` exits 0 on unknown keys and unparsable values (it logs "Unknown key ..." /
"Failed to parse ..., ignoring" and goes on), so a clean result here means: exit 0 AND nothing
logged about the unit file. It does fail on a missing ExecStart binary, so the copy under test
points ExecStart at a binary that exists here (this Python), keeping every other line as shipped.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from camctl.board.service import render_unit

REPO = Path(__file__).resolve().parent.parent
UNIT = REPO / "systemd" / "camctl.service"
ANALYZE = shutil.which("systemd-analyze") or ("/usr/bin/systemd-analyze"
                                              if Path("/usr/bin/systemd-analyze").exists()
                                              else None)
needs_analyze = pytest.mark.skipif(ANALYZE is None,
                                   reason="systemd-analyze is not installed on this machine")


def _verify(text: str, tmp_path: Path) -> tuple[int, str]:
    unit = tmp_path / "camctl.service"
    unit.write_text(text)
    proc = subprocess.run([ANALYZE, "verify", "--man=no", "--recursive-errors=no", str(unit)],
                          capture_output=True, text=True, timeout=120, check=False)
    # Only complaints about our file count (the host's other units are not under test).
    ours = [line for line in (proc.stdout + proc.stderr).splitlines() if str(unit) in line
            or "camctl.service" in line]
    return proc.returncode, "\n".join(ours)


def _testable(text: str) -> str:
    """The shipped unit with ExecStart pointed at a binary that exists here."""
    out, n = re.subn(r"(?m)^ExecStart=\S+", f"ExecStart={sys.executable}", text)
    assert n == 1
    return out


def test_repo_unit_is_render_unit_with_defaults() -> None:
    assert UNIT.read_text() == render_unit(), \
        "regenerate systemd/camctl.service from service.render_unit()"


def test_unit_has_the_agreed_settings() -> None:
    text = UNIT.read_text()
    settings = {}
    for line in text.splitlines():
        if line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            settings.setdefault(key, []).append(value)
    one = {k: v[-1] for k, v in settings.items()}
    assert one["Type"] == "notify" and one["NotifyAccess"] == "main"
    assert one["ExecStart"] == "/opt/camctl/venv/bin/camctl run --config /etc/camctl/camctl.toml"
    assert (one["WatchdogSec"] == "10s" and one["Restart"] == "on-failure"
            and one["RestartSec"] == "2s")
    assert one["User"] == "camctl" and one["SupplementaryGroups"] == "video gpio"
    assert one["WorkingDirectory"] == "/var/lib/camctl" and one["StateDirectory"] == "camctl"
    assert one["ProtectSystem"] == "strict" and one["ReadWritePaths"] == "/var/lib/camctl"
    for flag in ("NoNewPrivileges", "PrivateTmp", "ProtectHome", "ProtectKernelTunables",
                 "ProtectControlGroups", "LockPersonality"):
        assert one[flag] == "yes", flag
    assert one["RestrictAddressFamilies"].split() == ["AF_UNIX", "AF_INET", "AF_INET6",
                                                      "AF_NETLINK"]
    assert one["KillSignal"] == "SIGTERM" and "TimeoutStopSec" in one
    assert one["DevicePolicy"] == "closed"
    assert sorted(settings["DeviceAllow"]) == sorted(
        ["char-video4linux rw", "char-media rw", "char-dma_heap rw", "char-gpiochip rw"])
    # every hardening line is explained by a comment right above it (or above its group)
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if line.startswith(("ProtectSystem=", "NoNewPrivileges=", "PrivateTmp=", "ProtectHome=",
                            "RestrictAddressFamilies=", "MemoryDenyWriteExecute=",
                            "DevicePolicy=")):
            assert lines[i - 1].startswith("#"), f"no comment above {line!r}"


@needs_analyze
def test_systemd_analyze_verify_accepts_the_unit(tmp_path: Path) -> None:
    code, complaints = _verify(_testable(UNIT.read_text()), tmp_path)
    assert code == 0 and not complaints, complaints


@needs_analyze
@pytest.mark.parametrize("breakage", [
    # shipped ExecStart: /opt/camctl/venv/bin/camctl does not exist here
    ("ExecStart", lambda t: t),
    ("unknown key", lambda t: _testable(t).replace("PrivateTmp=yes", "PrivateTemp=yes")),
    ("bad value", lambda t: _testable(t).replace("ProtectSystem=strict", "ProtectSystem=stricter")),
    ("bad type", lambda t: _testable(t).replace("Type=notify", "Type=notfy")),
])
def test_systemd_analyze_verify_rejects_a_broken_copy(tmp_path: Path, breakage) -> None:
    name, mangle = breakage
    text = mangle(UNIT.read_text())
    if name != "ExecStart":
        assert text != _testable(UNIT.read_text())
    elif Path("/opt/camctl/venv/bin/camctl").exists():
        pytest.skip("this machine has camctl installed at the production path")
    code, complaints = _verify(text, tmp_path)
    assert code != 0 or complaints, f"{name}: systemd-analyze found nothing wrong"
