"""install-service: dry run, a real run into tmp dirs with a fake `run`, refusals, the CLI hooks."""

from __future__ import annotations

import argparse
import shutil
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest

from camctl.board.service import add_arguments, install_service, main
from camctl.exc import ConfigError, InstallError

CONFIG = """\
board = "rig-a"
[store]
dir = "{store}"
[[cameras]]
name = "down"
backend = "sim"
"""


class FakeRun:
    def __init__(self, fail_on: str = "") -> None:
        self.calls: list[list[str]] = []
        self.fail_on = fail_on

    def __call__(self, argv: list[str], check: bool = False) -> SimpleNamespace:
        self.calls.append(list(argv))
        return SimpleNamespace(returncode=1 if self.fail_on and self.fail_on in argv else 0)


@pytest.fixture
def env(tmp_path: Path) -> SimpleNamespace:
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    camctl = venv / "bin" / "camctl"
    camctl.write_text("#!/bin/sh\nexit 0\n")
    camctl.chmod(0o755)
    config = tmp_path / "rig.toml"
    config.write_text(CONFIG.format(store="/var/lib/camctl/flights"))
    return SimpleNamespace(tmp=tmp_path, venv=venv, config=config, units=tmp_path / "units",
                           dest=tmp_path / "etc" / "camctl.toml", run=FakeRun())


def _install(env: SimpleNamespace, **kw) -> list[str]:
    args = dict(unit_dir=env.units, config_src=env.config, config_dest=env.dest, venv=env.venv,
                run=env.run, user_exists=lambda user: False)
    args.update(kw)
    return install_service(**args)


def test_dry_run_lists_every_action_and_does_nothing(env: SimpleNamespace) -> None:
    actions = _install(env, dry_run=True)
    text = "\n".join(actions)
    assert f"write {env.units / 'camctl.service'}" in text
    assert f"ExecStart={env.venv / 'bin' / 'camctl'} run --config {env.dest}" in text
    assert f"copy {env.config} to {env.dest}" in text
    assert "useradd --system --user-group --groups video,gpio" in text and text.index("useradd") > 0
    assert actions[-2:] == ["systemctl daemon-reload", "systemctl enable camctl.service"]
    assert env.run.calls == []
    assert not env.units.exists() and not env.dest.exists()


def test_dry_run_needs_no_venv(env: SimpleNamespace) -> None:
    actions = _install(env, dry_run=True, venv=env.tmp / "nowhere")
    assert any("nowhere/bin/camctl" in a for a in actions)


def test_real_run_writes_unit_and_config_and_runs_commands_in_order(env: SimpleNamespace) -> None:
    _install(env)
    unit = (env.units / "camctl.service").read_text()
    assert f"ExecStart={env.venv / 'bin' / 'camctl'} run --config {env.dest}\n" in unit
    assert "User=camctl\n" in unit
    assert env.dest.read_text() == env.config.read_text()
    assert [c[0:2] for c in env.run.calls] == [["useradd", "--system"],
                                              ["systemctl", "daemon-reload"],
                                              ["systemctl", "enable"]]
    assert env.run.calls[0][-1] == "camctl"
    assert not (env.units / "camctl.service.d").exists()  # store is under /var/lib/camctl


@pytest.mark.skipif(shutil.which("systemd-analyze") is None,
                    reason="systemd-analyze is not installed")
def test_installed_unit_passes_systemd_analyze_verify(env: SimpleNamespace) -> None:
    _install(env)  # ExecStart points at the fake venv's executable camctl, so verify can check it
    proc = subprocess.run(["systemd-analyze", "verify", "--man=no", "--recursive-errors=no",
                           str(env.units / "camctl.service")],
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0 and "camctl.service" not in proc.stderr, proc.stderr


def test_existing_user_is_kept(env: SimpleNamespace) -> None:
    actions = _install(env, user_exists=lambda user: user == "camctl")
    assert "keep existing user camctl" in actions
    assert not any(c[0] == "useradd" for c in env.run.calls)


def test_existing_different_config_is_never_overwritten_without_force(env: SimpleNamespace) -> None:
    env.dest.parent.mkdir(parents=True)
    tuned = "# the flight config someone tuned on the rig\n"
    env.dest.write_text(tuned)
    with pytest.raises(InstallError, match="--force") as info:
        _install(env)
    assert str(env.dest) in str(info.value)
    assert env.dest.read_text() == tuned
    assert not env.units.exists() and env.run.calls == []  # refused before touching anything
    with pytest.raises(InstallError):
        _install(env, dry_run=True)

    _install(env, force=True)
    assert env.dest.read_text() == env.config.read_text()
    assert (env.dest.parent / "camctl.toml.bak").read_text() == tuned


def test_identical_config_is_kept(env: SimpleNamespace) -> None:
    env.dest.parent.mkdir(parents=True)
    shutil.copy(env.config, env.dest)
    actions = _install(env)
    assert any(a.startswith(f"keep {env.dest}") for a in actions)


def test_invalid_config_is_refused_before_anything_happens(env: SimpleNamespace) -> None:
    env.config.write_text('board = "rig-a"\n[store]\ncommit_interval_ms = -5\n')
    with pytest.raises(ConfigError, match="commit_interval_ms"):
        _install(env)
    assert not env.units.exists() and not env.dest.exists() and env.run.calls == []


def test_failed_command_raises_naming_it(env: SimpleNamespace) -> None:
    env.run = FakeRun(fail_on="daemon-reload")
    with pytest.raises(InstallError, match="systemctl daemon-reload"):
        _install(env)
    assert ["systemctl", "enable", "camctl.service"] not in env.run.calls


def test_missing_camctl_in_venv_is_refused(env: SimpleNamespace) -> None:
    with pytest.raises(InstallError, match="no executable camctl"):
        _install(env, venv=env.tmp / "not-a-venv")


def test_store_outside_state_directory_gets_a_dropin(env: SimpleNamespace) -> None:
    env.config.write_text(CONFIG.format(store="/mnt/ssd/camctl"))
    _install(env, user_exists=lambda user: True)
    dropin = (env.units / "camctl.service.d" / "10-store.conf").read_text()
    assert ("ReadWritePaths=/mnt/ssd/camctl\n" in dropin
            and "RequiresMountsFor=/mnt/ssd/camctl\n" in dropin)
    assert (["install", "-d", "-o", "camctl", "-g", "camctl", "-m", "0750", "/mnt/ssd/camctl"]
            in env.run.calls)

    env.config.write_text(CONFIG.format(store="/mnt/my ssd"))
    with pytest.raises(InstallError, match="whitespace"):
        _install(env, force=True)


def test_no_config_warns(env: SimpleNamespace) -> None:
    actions = _install(env, config_src=None, dry_run=True)
    assert actions[0].startswith("warning: no config")


def _parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="camctl install-service")
    add_arguments(parser)
    return parser.parse_args(list(argv))


def test_main_dry_run_prints_actions(env: SimpleNamespace,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    args = _parse("--config", str(env.config), "--venv", str(env.venv), "--dry-run",
                  "--unit-dir", str(env.units), "--config-dest", str(env.dest))
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "would: systemctl daemon-reload" in out
    assert not env.units.exists()


def test_main_bad_config_exits_2(env: SimpleNamespace, capsys: pytest.CaptureFixture[str]) -> None:
    env.config.write_text("board = \n")
    args = _parse("--config", str(env.config), "--dry-run", "--unit-dir", str(env.units))
    assert main(args) == 2
    assert str(env.config) in capsys.readouterr().err


SENSORS = """
[[sensors]]
name = "imu"
backend = "lsm6dsox"
"""


def test_real_sensors_get_the_i2c_group_and_device(env: SimpleNamespace) -> None:
    """A config with an I2C sensor: the drop-in adds group i2c and DeviceAllow=char-i2c (the unit's
    DevicePolicy=closed would refuse /dev/i2c-1 otherwise), and the user joins group i2c."""
    env.config.write_text(CONFIG.format(store="/var/lib/camctl/flights") + SENSORS)
    _install(env)
    dropin = (env.units / "camctl.service.d" / "20-i2c.conf").read_text()
    assert "SupplementaryGroups=i2c\n" in dropin and "DeviceAllow=char-i2c rw\n" in dropin
    assert "After=modprobe@i2c_dev.service\n" in dropin
    assert env.run.calls[0][:5] == ["useradd", "--system", "--user-group", "--groups",
                                    "video,gpio,i2c"]
    env.run.calls.clear()
    _install(env, user_exists=lambda user: True)  # an existing user is added to the group
    assert ["usermod", "--append", "--groups", "i2c", "camctl"] in env.run.calls
    env.config.write_text(CONFIG.format(store="/var/lib/camctl/flights"))  # sensors removed
    _install(env, user_exists=lambda user: True, force=True)
    assert not (env.units / "camctl.service.d" / "20-i2c.conf").exists()


def test_sim_sensors_need_no_i2c(env: SimpleNamespace) -> None:
    env.config.write_text(CONFIG.format(store="/var/lib/camctl/flights")
                          + '[[sensors]]\nname = "imu"\nbackend = "sim"\nkind = "imu"\n')
    _install(env)
    assert not (env.units / "camctl.service.d").exists()
    assert env.run.calls[0][4] == "video,gpio"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None,
                    reason="systemd-analyze is not installed")
def test_i2c_dropin_passes_systemd_analyze_verify(env: SimpleNamespace) -> None:
    env.config.write_text(CONFIG.format(store="/var/lib/camctl/flights") + SENSORS)
    _install(env)
    proc = subprocess.run(["systemd-analyze", "verify", "--man=no", "--recursive-errors=no",
                           str(env.units / "camctl.service")],
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0 and "camctl.service" not in proc.stderr, proc.stderr
