"""``CAMCTL_PIN_FACTORY``: the lgpio backend on a pin factory named by the environment (the kernel
tier points ``camctl run`` at its gpio-sim chip with it: tests/kernelvm/test_in_vm_flight.py). Here
it names gpiozero's MockFactory, so a board whose config says ``backend = "lgpio"`` runs on a
machine without GPIO."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest
from boards import make_config

from camctl.board.config import GpioConfig, GpioLine
from camctl.board.daemon import Daemon
from camctl.board.pin_env import PIN_FACTORY_ENV, env_pin_factory
from camctl.board.sdnotify import Notifier
from camctl.exc import GpioError

MOCK = "gpiozero.pins.mock:MockFactory"


def test_a_named_factory_serves_the_lgpio_backend_and_never_the_mock(monkeypatch) -> None:
    monkeypatch.setenv(PIN_FACTORY_ENV, MOCK)
    real = GpioConfig(backend="lgpio", lines=(GpioLine("arm", 17),))
    factory = env_pin_factory(real)
    assert type(factory).__name__ == "MockFactory"
    factory.close()
    assert env_pin_factory(GpioConfig(backend="mock")) is None
    monkeypatch.delenv(PIN_FACTORY_ENV)
    assert env_pin_factory(real) is None


@pytest.mark.parametrize(("spec", "why"), [
    ("gpiozero.pins.mock", "module:callable"), ("camctl.nothing_here:F", "cannot import"),
    ("gpiozero.pins.mock:NoSuchFactory", "no NoSuchFactory")])
def test_a_bad_name_is_a_gpio_error_naming_the_variable(monkeypatch, spec: str, why: str) -> None:
    monkeypatch.setenv(PIN_FACTORY_ENV, spec)
    with pytest.raises(GpioError, match=f"{PIN_FACTORY_ENV}=.*{why}"):
        env_pin_factory(GpioConfig(backend="lgpio"))


def test_the_daemon_claims_its_lines_on_the_named_factory(tmp_path: Path, monkeypatch) -> None:
    import dataclasses

    monkeypatch.setenv(PIN_FACTORY_ENV, MOCK)
    cfg = make_config(tmp_path)
    cfg = dataclasses.replace(cfg, gpio=dataclasses.replace(cfg.gpio, backend="lgpio"))
    d = Daemon(cfg, notifier=Notifier(environ={}))
    try:
        assert type(d.lines.factory).__name__ == "MockFactory" and d.gpio_real
        assert d.lines.levels() == dict.fromkeys(("arm", "release", "separation", "touchdown"),
                                                 False)
    finally:
        d.close()


def test_gpio_watch_and_doctor_use_the_named_factory(tmp_path: Path) -> None:
    import os

    store = tmp_path / "store"
    store.mkdir()
    cfg = tmp_path / "rig.toml"
    cfg.write_text(f'board = "rig-e"\n[store]\ndir = "{store}"\n[gpio]\nbackend = "lgpio"\n'
                   '[gpio.events]\narm = 17\nrelease = 27\n')
    env = {**os.environ, PIN_FACTORY_ENV: MOCK}
    watch = subprocess.Popen([sys.executable, "-m", "camctl", "gpio", "watch", "--config",
                              str(cfg)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, env=env)
    try:
        seen = [watch.stdout.readline() for _ in range(3)]
    finally:
        watch.send_signal(signal.SIGINT)
        # a liveness bound for a hung child, never a speed claim
        _out, err = watch.communicate(timeout=60)
    assert seen[0].startswith("watching 2 lines on lgpio"), (seen, err)
    assert "gpio17" in seen[1] and "(at start)" in seen[1] and "gpio27" in seen[2], seen
    assert watch.returncode == 0, err
    doctor = subprocess.run([sys.executable, "-m", "camctl", "doctor", "--config", str(cfg)],
                            capture_output=True, text=True, env=env, timeout=300, check=False)
    lines = [row for row in doctor.stdout.splitlines() if row[6:].startswith("lines:")]
    assert lines == ["OK    lines: every event line at rest (arm=BCM17 off release=BCM27 at rest), "
                     "read from the lines"], doctor.stdout
