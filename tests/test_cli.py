"""The CLI explains itself and keeps one exit-code rule.

Every subcommand and flag has a help text and ``--help`` shows each default. Exit codes everywhere:
0 ok, 1 a problem found in the data, 2 usage, config or connection error (camctl.cli's docstring).
"""

from __future__ import annotations

import argparse
import socket
from pathlib import Path

import pytest
from store_helpers import frame

from camctl.board.config import StoreConfig
from camctl.cli import EXIT_CODES, build_parser, exit_code_for, main
from camctl.exc import (
    CameraError,
    CommandRefused,
    ConfigError,
    FetchError,
    GpioError,
    InstallError,
    ProtocolError,
    RemoteError,
    StoreCorruptError,
    StoreError,
)
from camctl.store import FlightStore


def _parsers() -> list[tuple[str, argparse.ArgumentParser]]:
    """The top-level parser and every subcommand's, nested ones too, with their command lines."""
    out = [("camctl", build_parser())]
    i = 0
    while i < len(out):
        name, p = out[i]
        for a in p._actions:
            if isinstance(a, argparse._SubParsersAction):
                out.extend((f"{name} {n}", sp) for n, sp in a.choices.items())
        i += 1
    return out


def test_every_subcommand_and_flag_has_help() -> None:
    parsers = _parsers()
    assert len(parsers) > 15
    missing = []
    for name, p in parsers:
        if name != "camctl" and not p.description:
            missing.append(f"{name}: no description")
        for a in p._actions:
            if isinstance(a, argparse._HelpAction) or a.help == argparse.SUPPRESS:
                continue  # SUPPRESS: deliberately hidden test knobs (install-service --unit-dir)
            if isinstance(a, argparse._SubParsersAction):
                missing += [f"{name} {c.dest}" for c in a._choices_actions if not c.help]
                continue
            if not (a.help or "").strip():
                missing.append(f"{name} {'/'.join(a.option_strings) or a.dest}")
    assert not missing, f"no help text: {missing}"


def test_help_shows_every_default() -> None:
    for name, p in _parsers():
        text = " ".join(p.format_help().split())
        for a in p._actions:
            if (a.help == argparse.SUPPRESS or a.nargs == 0 or a.required
                    or a.default in (None, argparse.SUPPRESS)):
                continue
            assert f"(default: {a.default})" in text, (
                f"{name} {a.option_strings}: default {a.default!r} not shown")
    fetch = dict(_parsers())["camctl fetch"].format_help()
    assert "(default: 30.0)" in " ".join(fetch.split())
    # flags and unset options: no noise
    assert "(default: False)" not in fetch and "(default: None)" not in fetch


@pytest.mark.parametrize(("exc", "code"), [
    (ConfigError("bad key"), 2), (ProtocolError("bad_frame", "x"), 2),
    (RemoteError("rig", "busy", "x"), 2), (FetchError("unreachable"), 2),
    (CommandRefused("disarm in DESCENT"), 2), (CameraError("down", "gone"), 2),
    (GpioError("no chip"), 2), (InstallError("exists"), 2), (StoreError("cannot create"), 2),
    (FileNotFoundError(2, "No such file", "x"), 2), (StoreCorruptError("a.mcap", "bad crc", 10), 1),
])
def test_exit_code_rule(exc: BaseException, code: int) -> None:
    assert exit_code_for(exc) == code
    assert set(EXIT_CODES) == {0, 1, 2}


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture) -> None:
    for argv in (["warp"], ["fetch"], ["verify"], ["bench", "--json", "--markdown"],
                 ["status", "--connect", "x"]):
        with pytest.raises(SystemExit) as e:
            rc = main(argv)
            raise SystemExit(rc)
        assert e.value.code == 2, argv
    capsys.readouterr()


def _dead_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"tcp://127.0.0.1:{s.getsockname()[1]}"


def test_unreachable_board_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    url = _dead_url()
    assert main(["status", "--connect", url, "--timeout", "0.3", "--json"]) == 2
    assert main(["ls", "--connect", url, "--timeout", "0.3", "--json"]) == 2
    assert main(["fetch", "--connect", url, "--out", str(tmp_path / "dl"), "--give-up-after", "0.5",
                 "--timeout", "0.3", "--quiet"]) == 2
    assert main(["event", "release", "--connect", url, "--timeout", "0.3"]) == 2
    capsys.readouterr()


def _flight(root: Path) -> Path:
    with FlightStore(root, "rig", "F1", StoreConfig(reserve_mb=0), cameras=["down"]) as st:
        for i in range(12):
            assert st.put(frame("down", i))
    return root / "F1"


def test_data_problems_exit_1_and_clean_data_0(tmp_path: Path,
                                               capsys: pytest.CaptureFixture) -> None:
    fdir = _flight(tmp_path / "store")
    assert main(["verify", str(tmp_path / "store"), "--quiet"]) == 0
    seg = sorted((fdir / "down").glob("*.mcap"))[0]
    data = bytearray(seg.read_bytes())
    data[len(data) // 3] ^= 0xFF  # a flipped bit inside a chunk: its CRC fails
    seg.write_bytes(bytes(data))
    assert main(["verify", str(tmp_path / "store"), "--quiet"]) == 1
    seg.write_bytes(b"not an mcap file at all" * 10)  # unrecoverable: exit 2, as it prints
    assert main(["verify", str(tmp_path / "store"), "--quiet", "--json"]) == 2
    capsys.readouterr()


def test_bad_paths_and_configs_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["verify", str(tmp_path / "missing")]) == 2
    assert main(["ls", str(tmp_path)]) == 2
    bad = tmp_path / "bad.toml"
    bad.write_text("board = 3\n")
    assert main(["config", "check", str(bad)]) == 2
    (tmp_path / "file").write_text("x")
    assert main(["keys", str(tmp_path / "file" / "sub")]) == 2  # a path that cannot be used
    err = capsys.readouterr().err
    assert "Traceback" not in err and all(line.startswith("camctl") for line in err.splitlines())


def test_install_service_that_cannot_proceed_exits_2(tmp_path: Path,
                                                     capsys: pytest.CaptureFixture) -> None:
    cfg = tmp_path / "rig.toml"
    cfg.write_text('board = "rig"\n')
    dest = tmp_path / "etc" / "camctl.toml"
    dest.parent.mkdir()
    dest.write_text('board = "other"\n')  # a different config is installed: refused without --force
    assert main(["install-service", "--config", str(cfg), "--config-dest", str(dest), "--unit-dir",
                 str(tmp_path / "units"), "--venv", str(tmp_path / "venv"), "--dry-run"]) == 2
    assert "--force" in capsys.readouterr().err


def test_export_of_flights_without_frames_exits_1(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture) -> None:
    with FlightStore(tmp_path / "store", "rig", "F1", StoreConfig(reserve_mb=0),
                     cameras=["down"]) as st:
        st.log_event({"kind": "phase", "event": "release", "phase_from": "ARMED",
                      "phase_to": "DESCENT"})
    assert main(["export", str(tmp_path / "store"), "--quiet"]) == 1
    assert "nothing written" in capsys.readouterr().out
