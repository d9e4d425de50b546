"""The close-once lifecycle every camctl resource shares: :class:`Closeable` (``close()``, the
``closed`` property, the context manager) and :class:`Startable` (entering starts it).

Subclasses own what closing means; ``close()`` must be safe to call twice. ``closed`` reads
``self._closed`` (False until the subclass sets it, so a half-built object reads as open), and
a subclass whose state lives elsewhere overrides the property. As gpiozero's devices share
``GPIOBase``.

Example::

    class Link(Closeable):
        def close(self) -> None:
            self._closed = True

    with Link() as link:
        ...
    assert link.closed
"""

from __future__ import annotations

import abc
from typing import Self

__all__ = ["Closeable", "Startable"]


class Closeable(abc.ABC):
    """A resource released by :meth:`close`; ``with`` closes it on the way out."""

    _closed: bool = False

    @abc.abstractmethod
    def close(self) -> None:
        """Release the resource. Safe to call twice."""

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Startable(Closeable):
    """A :class:`Closeable` that ``with`` starts (:meth:`start`) on the way in."""

    @abc.abstractmethod
    def start(self) -> object:
        """Start serving (threads, sockets); ``close()`` stops it."""

    def __enter__(self) -> Self:
        self.start()
        return self
