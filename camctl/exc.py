"""Every camctl exception and warning, in one place.

One root (:class:`CamctlError`), one root per area, and specific errors that also inherit the builtin a
caller would naturally catch. Each exception formats its own message from its fields, so the CLI can print
``str(exc)`` as the single line a user sees.
"""

from __future__ import annotations

__all__ = [
    "CamctlError",
    "CamctlWarning",
    "CameraDisconnected",
    "CameraError",
    "CameraTimeout",
    "CommandRefused",
    "ConfigError",
    "ConfigValueError",
    "FetchError",
    "GpioError",
    "InstallError",
    "ProtocolError",
    "RecordError",
    "RemoteError",
    "ResumeError",
    "StoreCorruptError",
    "StoreError",
    "StoreFullError",
]


class CamctlError(Exception):
    """Root of every camctl error."""


# --- config -------------------------------------------------------------------------------------------
class ConfigError(CamctlError, ValueError):
    """A config file cannot be used. ``path`` is the file, ``key`` the dotted key path."""

    def __init__(self, message: str, *, key: str = "", path: str = "") -> None:
        self.message = message
        self.key = key
        self.path = path
        super().__init__(str(self))

    def __str__(self) -> str:
        where = f"{self.path}: " if self.path else ""
        key = f"{self.key}: " if self.key else ""
        return f"{where}{key}{self.message}"


class ConfigValueError(ConfigError):
    """A key has a value of the wrong type or out of range."""


# --- cameras ------------------------------------------------------------------------------------------
class CameraError(CamctlError, RuntimeError):
    """A camera backend failed; the capture thread restarts the camera with backoff."""

    def __init__(self, camera: str, message: str) -> None:
        self.camera = camera
        self.message = message
        super().__init__(str(self))

    def __str__(self) -> str:
        return f"camera {self.camera!r}: {self.message}"


class CameraTimeout(CameraError, TimeoutError):
    """No frame arrived within the capture timeout (a stalled sensor or pipeline)."""


class CameraDisconnected(CameraError, ConnectionError):
    """The camera vanished (unplugged ribbon, libcamera lost the device)."""


# --- gpio ---------------------------------------------------------------------------------------------
class GpioError(CamctlError, RuntimeError):
    """The GPIO backend cannot be opened or a line cannot be claimed."""


class ResumeError(CamctlError, RuntimeError):
    """A restarted daemon cannot re-enter the persisted phase (the machine already moved, or the phase is not
    one of this config's)."""


# --- store --------------------------------------------------------------------------------------------
class StoreError(CamctlError, OSError):
    """The flash store cannot do what was asked."""


class StoreFullError(StoreError):
    """The store has no room left above its reserve."""


class StoreCorruptError(StoreError):
    """A segment cannot be read back; ``path`` names it and ``offset`` the first bad byte."""

    def __init__(self, path: str, message: str, offset: int | None = None) -> None:
        self.path = path
        self.offset = offset
        self.message = message
        super().__init__(str(self))

    def __str__(self) -> str:
        at = f" at byte {self.offset}" if self.offset is not None else ""
        return f"{self.path}{at}: {self.message}"


class RecordError(CamctlError, ValueError):
    """An event-log record is malformed: ``kind`` is the record's kind, ``field`` the bad field."""

    def __init__(self, kind: str, field: str, message: str) -> None:
        self.kind = kind
        self.field = field
        self.message = message
        super().__init__(str(self))

    def __str__(self) -> str:
        return f"{self.kind or 'event-log'} record: field {self.field!r} {self.message}"


# --- protocol / network -------------------------------------------------------------------------------
class ProtocolError(CamctlError, ValueError):
    """A wire message is malformed, unknown or out of range."""

    def __init__(self, code: str, message: str) -> None:
        self.code = code
        self.message = message
        super().__init__(str(self))

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


class RemoteError(CamctlError, RuntimeError):
    """A board answered a request with an error reply."""

    def __init__(self, board: str, code: str, message: str) -> None:
        self.board = board
        self.code = code
        self.message = message
        super().__init__(str(self))

    def __str__(self) -> str:
        return f"board {self.board}: {self.code}: {self.message}"


class CommandRefused(CamctlError, ValueError):
    """A board will not carry out an operator command (the message says why)."""


class FetchError(CamctlError, RuntimeError):
    """A fetch could not complete (unreachable board, checksum mismatch after retries)."""


# --- deployment ---------------------------------------------------------------------------------------
class InstallError(CamctlError, RuntimeError):
    """`camctl install-service` cannot proceed (a config would be overwritten, a command failed)."""


# --- warnings -----------------------------------------------------------------------------------------
class CamctlWarning(Warning):
    """Root of camctl warnings (fallbacks that a user should know about)."""
