"""``camctl doctor`` beside a running ``camctl run`` (sim cameras, mock lines): the lines are the
daemon's, so doctor reads their levels from its STATUS, not from the lines or from
``mock-lines.json``, and warns about an arm key left on while the board is SAFE."""

from __future__ import annotations

from pathlib import Path

import pytest

from camctl.demo import start_board, write_board_config

pytestmark = pytest.mark.slow


def _lines(out: str) -> list[str]:
    """doctor's ``lines`` check, one string per line it printed (with its fix line)."""
    rows = out.splitlines()
    return [row + (f" | {rows[i + 1].strip()}" if i + 1 < len(rows)
                   and rows[i + 1].startswith("      fix:") else "")
            for i, row in enumerate(rows) if row[6:].startswith("lines:")]


def test_doctor_reads_the_line_levels_from_the_running_daemon(tmp_path: Path, camctl_cli) -> None:
    # the CLI in this process (conftest's camctl_cli); the board is the other process
    _camctl = camctl_cli
    cfg = write_board_config(tmp_path / "b", "doc-a", 0, size=(160, 120), stills=())
    board = start_board(cfg, tmp_path / "b" / "store", "doc-a")
    try:
        # the key turned on (it arms), then a disarm over the network: SAFE with the key still on,
        # a level only the daemon knows (no --hold: nothing in mock-lines.json)
        assert "ARMED" in _camctl("arm", "--connect", board.router).stdout
        armed = _lines(_camctl("doctor", "--config", str(cfg)).stdout)
        assert "SAFE" in _camctl("disarm", "--connect", board.router).stdout
        safe = _lines(_camctl("doctor", "--config", str(cfg)).stdout)
    finally:
        board.stop()
    pid = f"pid {board.proc.pid}"
    # ARMED with the key on is as it should be
    assert len(armed) == 1 and armed[0].startswith("OK"), armed
    assert pid in armed[0] and "ARMED" in armed[0] and "arm=BCM17 on" in armed[0], armed
    assert "release=BCM27 at rest" in armed[0], armed
    # SAFE with the key on: the board armed nothing, and doctor says so
    assert safe[0].startswith("OK") and pid in safe[0] and "SAFE" in safe[0], safe
    assert "arm=BCM17 on" in safe[0], safe
    [warn] = [row for row in safe if row.startswith("WARN")]
    assert "arm key is ON" in warn and "SAFE" in warn, safe
