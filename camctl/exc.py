"""Every camctl exception and warning, in one place.

One root (:class:`CamctlError`), one root per area, and specific errors that also inherit the
builtin a caller would naturally catch. Each exception formats its own message from its fields, so
the CLI can print ``str(exc)`` as the single line a user sees.
"""

from __future__ import annotations

from dataclasses import KW_ONLY, dataclass

__all__ = [
    "BoardTimeout",
    "CamctlError",
    "CamctlWarning",
    "CameraDisconnected",
    "CameraError",
    "CameraTimeout",
    "CommandRefused",
    "ConfigError",
    "ConfigValueError",
    "FetchError",
    "FileConflict",
    "GpioError",
    "InstallError",
    "KeyRejected",
    "LinkDropped",
    "ProtocolError",
    "RecordError",
    "RemoteError",
    "ResumeError",
    "SensorError",
    "StoreCorruptError",
    "StoreError",
    "StoreFullError",
    "UnsafeReply",
]


class CamctlError(Exception):
    """Root of every camctl error.

    An error that carries fields is a ``@dataclass(eq=False, repr=False)`` below this root with its
    own ``__str__``; :meth:`__post_init__` makes that line its message (``args``).
    """

    def __post_init__(self) -> None:
        super().__init__(str(self))


# --- config ---------------------------------------------------------------------------------------
@dataclass(eq=False, repr=False)
class ConfigError(CamctlError, ValueError):
    """A config file cannot be used. ``path`` is the file, ``key`` the dotted key path."""

    message: str
    _: KW_ONLY
    key: str = ""
    path: str = ""

    def __str__(self) -> str:
        where = f"{self.path}: " if self.path else ""
        key = f"{self.key}: " if self.key else ""
        return f"{where}{key}{self.message}"


class ConfigValueError(ConfigError):
    """A key has a value of the wrong type or out of range."""


# --- cameras --------------------------------------------------------------------------------------
@dataclass(eq=False, repr=False)
class CameraError(CamctlError, RuntimeError):
    """A camera backend failed; the capture thread restarts the camera with backoff."""

    camera: str
    message: str

    def __str__(self) -> str:
        return f"camera {self.camera!r}: {self.message}"


class CameraTimeout(CameraError, TimeoutError):
    """No frame arrived within the capture timeout (a stalled sensor or pipeline)."""


class CameraDisconnected(CameraError, ConnectionError):
    """The camera vanished (unplugged ribbon, libcamera lost the device)."""


# --- gpio -----------------------------------------------------------------------------------------
class GpioError(CamctlError, RuntimeError):
    """The GPIO backend cannot be opened or a line cannot be claimed."""


class SensorError(CamctlError, RuntimeError):
    """A sensor (IMU, barometer) cannot be used: absent, the wrong part, an I/O error. One line,
    naming the sensor and what is wrong (``imu lsm6dsox on /dev/i2c-1 at 0x6A: WHO_AM_I 0x00,
    want 0x6C``); the sampler counts it and the board flies on."""


class ResumeError(CamctlError, RuntimeError):
    """A restarted daemon cannot re-enter the persisted phase (the machine already moved, or the
    phase is not one of this config's)."""


# --- store ----------------------------------------------------------------------------------------
class StoreError(CamctlError, OSError):
    """The flash store cannot do what was asked."""


class StoreFullError(StoreError):
    """The store has no room left above its reserve."""


@dataclass(eq=False, repr=False)
class StoreCorruptError(StoreError):
    """A segment cannot be read back; ``path`` names it and ``offset`` the first bad byte."""

    path: str
    message: str
    offset: int | None = None

    def __str__(self) -> str:
        at = f" at byte {self.offset}" if self.offset is not None else ""
        return f"{self.path}{at}: {self.message}"


@dataclass(eq=False, repr=False)
class RecordError(CamctlError, ValueError):
    """An event-log record is malformed: ``kind`` is the record's kind, ``field`` the bad field."""

    kind: str
    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.kind or 'event-log'} record: field {self.field!r} {self.message}"


# --- protocol / network ---------------------------------------------------------------------------
@dataclass(eq=False, repr=False)
class ProtocolError(CamctlError, ValueError):
    """A wire message is malformed, unknown or out of range."""

    code: str
    message: str

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


@dataclass(eq=False, repr=False)
class RemoteError(CamctlError, RuntimeError):
    """A board answered a request with an error reply."""

    board: str
    code: str
    message: str

    def __str__(self) -> str:
        return f"board {self.board}: {self.code}: {self.message}"


class CommandRefused(CamctlError, ValueError):
    """A board will not carry out an operator command (the message says why)."""


class FetchError(CamctlError, RuntimeError):
    """A fetch could not complete (unreachable board, checksum mismatch after retries)."""


class KeyRejected(FetchError):
    """The board's authenticator refused our CURVE key: retrying cannot help."""


class UnsafeReply(FetchError):
    """A board's reply passed a limit of the protocol (too many previews, a page too big): the
    request is given up, the board named."""


class FileConflict(FetchError):
    """A verified file is already where a listed file goes, with other bytes: it is kept."""


@dataclass(eq=False, repr=False)
class BoardTimeout(FetchError, TimeoutError):
    """A board did not answer a request within the client's timeout (the DEALER has been
    recreated)."""

    url: str
    what: str
    timeout_s: float

    def __str__(self) -> str:
        return f"{self.url}: no answer to {self.what} within {self.timeout_s:g} s"


class LinkDropped(BoardTimeout):
    """The TCP link to a board dropped while a request was in flight (the DEALER has been
    recreated)."""

    def __str__(self) -> str:
        return f"{self.url}: link dropped while waiting for {self.what}"


# --- deployment -----------------------------------------------------------------------------------
class PublisherStartError(CamctlError, RuntimeError):
    """The board's publisher process could not start (the text says why: a bind error, bad
    keys...). ``kind`` is ``"bind"`` (the endpoints), ``"config"`` (the publish config, e.g. its
    keys) or ``"process"`` (the child itself failed)."""

    def __init__(self, message: str, kind: str = "process") -> None:
        super().__init__(message)
        self.kind = kind


class LinkClosed(CamctlError, ConnectionError):
    """The other end of the daemon-publisher link is gone (EOF, reset, or it sent something that is
    not a link message)."""


class InstallError(CamctlError, RuntimeError):
    """`camctl install-service` cannot proceed (a config would be overwritten, a command failed)."""


# --- warnings -------------------------------------------------------------------------------------
class StackUnavailable(CamctlError, RuntimeError):
    """A real-stack test tier (real picamera2 on libcamera, a kernel in a VM) cannot run on this
    machine; the message says why and which setup command would enable it."""


class VMError(CamctlError, RuntimeError):
    """The kernel tier's VM booted but did not run its command to the end (its output is in the
    message)."""


class TortureBoardError(CamctlError, RuntimeError):
    """The torture run's board did something the run cannot go on from (did not start, refused a
    command, never logged what the run waits for): the seed fails as the board's
    (:mod:`camctl.testing.torture`)."""


class CamctlWarning(Warning):
    """Root of camctl warnings (fallbacks that a user should know about)."""
