"""gpiozero's LGPIOFactory on the kernel's GPIO simulator, and the simulated lines to drive.

For the kernel tier (``camctl.testing.kernelvm``): inside its VM a gpio-sim chip stands where a
Pi's header chip would, and camctl reads it through the same stack as on a Pi (the GPIO character
device, lgpio's alert thread with the kernel's edge time, gpiozero's ``LGPIOFactory``).

- :class:`GpioSimFactory`: gpiozero's ``LGPIOFactory``, but on a board that says it is a Pi 4B.
  gpiozero 2.0.1's factory opens any chip, then refuses a non-Pi when the first pin is made (it
  reads the board revision for the header's pin table: ``PinUnknownPi``). camctl trusts its ticks
  as on a Pi, by checking them against the clock (``camctl.board.gpio.edge_time_ns``), whatever
  the factory is called. It also keeps every edge as lgpio delivered it
  (:attr:`GpioSimFactory.kernel_edges`), so a test can compare camctl's edge time with the
  kernel's.
- :class:`GpioSim`: the chip ``tools/kernelvm/guest.sh`` made; :meth:`GpioSim.pull` moves a line
  as wiring would (gpio-sim's sysfs ``pull``). A consumer's bias request sets the same pull, so a
  line claimed with a pull-up reads high until it is pulled down here.
- :func:`sim_factory`: that chip's factory for a ``camctl`` process
  (``CAMCTL_PIN_FACTORY=camctl.testing.kernel_gpio:sim_factory``, :mod:`camctl.board.pin_env`), so
  ``camctl run``, ``gpio watch`` and ``doctor`` with ``[gpio] backend = "lgpio"`` use it.

Importing lgpio makes a named pipe (``.lgd-nfyN``) in ``$LG_WD`` and changes the process's
working directory to it (default: the working directory, which then stays as it is).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from gpiozero.pins.lgpio import LGPIOFactory, LGPIOPin

__all__ = ["PI4B_REVISION", "GpioSim", "GpioSimFactory", "sim_factory"]

PI4B_REVISION = 0xC03111  # Raspberry Pi 4 Model B 4GB, rev 1.1 (new-style revision code)


class _KernelEdgePin(LGPIOPin):
    """gpiozero's lgpio pin that first notes each edge as lgpio's alert thread hands it over."""

    def _call_when_changed(self, chip: int, gpio: int, level: int, ticks: int) -> None:
        self.factory.kernel_edges.append((gpio, level, ticks))
        super()._call_when_changed(chip, gpio, level, ticks)


class GpioSimFactory(LGPIOFactory):
    """gpiozero's ``LGPIOFactory(chip)`` on a chip that is not a Pi's (see the module docstring).

    ``kernel_edges``: every edge delivered, oldest first, as ``(line, level, kernel_time_ns)``
    (CLOCK_MONOTONIC, stamped by the kernel when the line changed)."""

    def __init__(self, chip: int) -> None:
        super().__init__(chip=chip)
        self.pin_class = _KernelEdgePin
        self.kernel_edges: list[tuple[int, int, int]] = []

    def _get_revision(self) -> int:
        return PI4B_REVISION


@dataclass(frozen=True)
class GpioSim:
    """One gpio-sim chip: ``chip`` as ``/dev/gpiochip<chip>``, its sysfs directory, line count."""

    chip: int
    sysfs: Path
    lines: int

    @classmethod
    def from_env(cls) -> GpioSim:
        """The chip ``guest.sh`` made (its ``CAMCTL_KERNELVM_*`` variables)."""
        try:
            return cls(int(os.environ["CAMCTL_KERNELVM_CHIP_NUM"]),
                       Path(os.environ["CAMCTL_KERNELVM_SIM"]),
                       int(os.environ["CAMCTL_KERNELVM_LINES"]))
        except KeyError as exc:
            raise RuntimeError(f"no gpio-sim chip: {exc.args[0]} is not set (outside the kernel "
                               "tier's VM? see camctl.testing.kernelvm)") from None

    def pull(self, line: int, high: bool) -> None:
        """Pull ``line`` up or down, as a switch or a break-wire would move it."""
        (self.sysfs / f"sim_gpio{line}" / "pull").write_text("pull-up" if high else "pull-down")

    def value(self, line: int) -> bool:
        """The line's level as the chip sees it."""
        return (self.sysfs / f"sim_gpio{line}" / "value").read_text().strip() == "1"

    def factory(self) -> GpioSimFactory:
        """A pin factory on this chip (close it when done)."""
        return GpioSimFactory(self.chip)


def sim_factory() -> GpioSimFactory:
    """A pin factory on the chip ``guest.sh`` made, for ``$CAMCTL_PIN_FACTORY`` (no arguments: the
    chip comes from the environment, as :meth:`GpioSim.from_env` reads it)."""
    return GpioSim.from_env().factory()
