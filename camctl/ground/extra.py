"""The ``ground`` extra's libraries: checked before a ground command writes anything.

The core install (a board's) has none of PyAV, Pillow, matplotlib or aiohttp; a ground command that
needs one calls :func:`require_ground` first, so a laptop without the extra gets one line naming
``pip install 'camctl[ground]'`` and the missing modules (exit 2), not a traceback halfway through.

Example::

    require_ground("camctl export --mp4", ["av"])  # ConfigError when PyAV cannot be imported
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable

from camctl.exc import ConfigError

__all__ = ["GROUND_MODULES", "INSTALL_HINT", "ground_module_of", "require_ground"]

INSTALL_HINT = "pip install 'camctl[ground]'"
# the import names of pyproject.toml's `ground` extra: av, pillow, matplotlib, aiohttp
GROUND_MODULES = ("av", "PIL", "matplotlib", "aiohttp")


def ground_module_of(exc: ImportError) -> str | None:
    """The ground-extra module an ImportError is about (``exc.name``'s top package), else None."""
    top = (exc.name or "").partition(".")[0]
    return top if top in GROUND_MODULES else None


def require_ground(command: str, modules: Iterable[str]) -> None:
    """Import each of ``modules``; raise one :class:`~camctl.exc.ConfigError` naming ``command``,
    the install line and every module that cannot be imported (a broken install says why)."""
    missing: list[str] = []
    for name in dict.fromkeys(modules):
        try:
            importlib.import_module(name)
        except ImportError as exc:
            absent = isinstance(exc, ModuleNotFoundError) and exc.name == name
            missing.append(name if absent else f"{name} ({exc})")
    if missing:
        raise ConfigError(f"{command} needs the ground extra ({INSTALL_HINT}): cannot import "
                          f"{', '.join(missing)}")
