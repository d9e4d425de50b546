"""``CAMCTL_PIN_FACTORY``: the gpiozero pin factory a non-mock GPIO backend uses, named by the
environment instead of made by :func:`camctl.board.gpio.make_pin_factory`.

For test rigs, not boards: the kernel tier runs ``camctl run``, ``camctl gpio watch`` and
``camctl doctor`` on its gpio-sim chip with
``CAMCTL_PIN_FACTORY=camctl.testing.kernel_gpio:sim_factory`` (gpiozero's own ``LGPIOFactory``
refuses a chip that is not a Pi's: :mod:`camctl.testing.kernel_gpio`). The value is
``module:callable``; the callable is called with no arguments and returns the factory. A config
with ``[gpio] backend = "mock"`` never uses it. Unset (as on every board), nothing changes.
docs/phases-and-gpio.md, section "GPIO", says the same.
"""

from __future__ import annotations

import importlib
import logging
import os
from typing import Any

from camctl.board.config import GpioConfig
from camctl.exc import GpioError

__all__ = ["PIN_FACTORY_ENV", "env_pin_factory"]

PIN_FACTORY_ENV = "CAMCTL_PIN_FACTORY"
log = logging.getLogger("camctl.board.gpio")


def env_pin_factory(gpio: GpioConfig) -> Any | None:
    """The factory ``$CAMCTL_PIN_FACTORY`` names, made now, for a non-mock backend; None when the
    variable is unset or the backend is ``mock``. GpioError when it names nothing callable or the
    call fails (the caller owns the factory and closes it)."""
    spec = os.environ.get(PIN_FACTORY_ENV, "").strip()
    if not spec or gpio.backend == "mock":
        return None
    where = f"{PIN_FACTORY_ENV}={spec!r}"
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise GpioError(f"{where}: expected module:callable "
                        "(e.g. camctl.testing.kernel_gpio:sim_factory)")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise GpioError(f"{where}: cannot import {module_name}: {exc}") from None
    make = getattr(module, attr, None)
    if not callable(make):
        raise GpioError(f"{where}: {module_name} has no {attr} to call")
    try:
        factory = make()
    except Exception as exc:  # lgpio.error, OSError, RuntimeError: one line, not a traceback
        raise GpioError(f"{where}: {exc}") from None
    log.warning("GPIO pin factory %s from %s (a test rig's, not a board's)",
                type(factory).__name__, where)
    return factory
