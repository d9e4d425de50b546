"""systemd's sd_notify protocol, in a few lines of socket code (no libsystemd, no dependency).

Owns: reading ``NOTIFY_SOCKET`` / ``WATCHDOG_USEC`` / ``WATCHDOG_PID`` once, at construction, and
sending ``KEY=value`` datagrams to the service manager. Outside systemd (no ``NOTIFY_SOCKET``) every
call is a no-op, so the daemon calls it unconditionally. It never raises: a broken socket is logged
once, at debug, because a status line must never take down a flight.

Example::

    >>> n = Notifier(environ={})
    >>> n.enabled, n.watchdog_interval_s
    (False, None)
    >>> n.ready()          # no-op outside systemd
    False
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Mapping

__all__ = ["Notifier"]

log = logging.getLogger(__name__)


class Notifier:
    """Sends sd_notify messages to the ``NOTIFY_SOCKET`` socket (a path or an abstract ``@name``).

    ``watchdog_interval_s`` is half of ``WATCHDOG_USEC`` (the interval sd_watchdog_enabled(3)
    recommends), or None when no watchdog is set or ``WATCHDOG_PID`` names another process.
    """

    def __init__(self, *, environ: Mapping[str, str] | None = None, pid: int | None = None) -> None:
        env = os.environ if environ is None else environ
        self._pid = os.getpid() if pid is None else pid
        self._address = _address(env.get("NOTIFY_SOCKET", ""))
        self.watchdog_interval_s = _watchdog_interval(env, self._pid)
        self._sock: socket.socket | None = None
        self._failed = False
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        """True when a notify socket is configured (we run under systemd with Type=notify)."""
        return self._address is not None

    def __repr__(self) -> str:
        where = self._address if self._address is not None else "disabled"
        return f"<Notifier {where!r} watchdog_interval_s={self.watchdog_interval_s}>"

    # -- the messages ------------------------------------------------------------------------------
    def ready(self, status: str | None = None) -> bool:
        """Tell systemd start-up is complete (``READY=1``), optionally with a status line."""
        return self.notify(READY=1, STATUS=status) if status is not None else self.notify(READY=1)

    def status(self, text: str) -> bool:
        """Set the free-form status line ``systemctl status`` shows."""
        return self.notify(STATUS=text)

    def watchdog(self) -> bool:
        """Pet the watchdog (``WATCHDOG=1``); call at least every ``watchdog_interval_s``."""
        return self.notify(WATCHDOG=1)

    def stopping(self, status: str | None = None) -> bool:
        """Tell systemd we are shutting down (``STOPPING=1``)."""
        if status is not None:
            return self.notify(STOPPING=1, STATUS=status)
        return self.notify(STOPPING=1)

    def notify(self, **fields: object) -> bool:
        """Send ``KEY=value`` lines in one datagram; True if sent, False if disabled or failed."""
        if self._address is None or not fields:
            return False
        lines = []
        for key, value in fields.items():
            text = str(int(value)) if isinstance(value, bool) else str(value)
            lines.append(f"{key}={text.replace(chr(10), ' ')}")
        payload = "\n".join(lines).encode("utf-8", "replace")
        with self._lock:
            try:
                if self._sock is None:
                    self._sock = socket.socket(socket.AF_UNIX,
                                               socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                # never wait: a service manager slow to read (or a full queue:
                # net.unix.max_dgram_qlen is 10 by default) must not stall the daemon's main loop;
                # the message is dropped instead
                self._sock.sendto(payload, socket.MSG_DONTWAIT, self._address)
            except OSError as exc:
                if not self._failed:
                    self._failed = True
                    log.debug("sd_notify to %r failed (further failures not logged): %s",
                              self._address, exc)
                self._close_socket()
                return False
        return True

    def close(self) -> None:
        """Close the datagram socket (a later notify reopens it). Safe to call twice."""
        with self._lock:
            self._close_socket()

    def __enter__(self) -> Notifier:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _close_socket(self) -> None:
        if self._sock is not None:
            try:
                self._sock.close()
            finally:
                self._sock = None


def _address(value: str) -> str | bytes | None:
    """The sendto() address for NOTIFY_SOCKET: a filesystem path, or b'\\0name' for '@name'."""
    if not value:
        return None
    if value.startswith("@"):
        return b"\0" + value[1:].encode()
    if value.startswith("/"):
        return value
    log.debug("NOTIFY_SOCKET %r is neither a path nor an abstract '@name'; sd_notify disabled",
              value)
    return None


def _watchdog_interval(env: Mapping[str, str], pid: int) -> float | None:
    usec = env.get("WATCHDOG_USEC", "")
    if not usec:
        return None
    try:
        usec_i = int(usec)
    except ValueError:
        log.debug("WATCHDOG_USEC %r is not an integer; watchdog off", usec)
        return None
    if usec_i <= 0:
        return None
    wd_pid = env.get("WATCHDOG_PID", "")
    if wd_pid:
        try:
            if int(wd_pid) != pid:
                return None
        except ValueError:
            log.debug("WATCHDOG_PID %r is not an integer; watchdog off", wd_pid)
            return None
    return usec_i / 2e6
