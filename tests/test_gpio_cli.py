"""`camctl gpio watch` against a running daemon: a real `camctl run` holds the lines, the watch
exits 2.

Kept out of tests/test_gpio.py on purpose: that module is in mutmut's scoped run (`[tool.mutmut]`
tests_dir), and a `camctl` subprocess started during mutmut's stats pass inherits
``MUTANT_UNDER_TEST=stats``, whose trampoline needs the mutmut runner's in-process config and dies
with an AttributeError ("failed to collect stats"). This test checks the CLI and daemon, not the
line filter.
"""

from __future__ import annotations

from pathlib import Path


def test_gpio_watch_on_lines_a_running_daemon_holds_is_a_one_line_error(tmp_path: Path,
                                                                        camctl_cli) -> None:
    from camctl.demo import start_board, write_board_config

    cfg = write_board_config(tmp_path / "b", "watch-b", 0, size=(160, 120), stills=())
    board = start_board(cfg, tmp_path / "b" / "store", "watch-b")
    try:
        # the watch in this process (conftest's camctl_cli); the daemon is a process of its own
        out = camctl_cli("gpio", "watch", "--config", str(cfg))
    finally:
        board.stop()
    assert out.returncode == 2, out
    assert out.stderr.count("\n") == 1 and "held by camctl run (pid" in out.stderr, out.stderr
    assert str(board.proc.pid) in out.stderr and out.stdout == ""
