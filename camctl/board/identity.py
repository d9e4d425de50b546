"""The board's identity: a random id made once, at first boot, in the store root (``board-id``).

The ground tells boards apart by it (WELCOME ``board_id``), not by their configured name, so two
boards given one name, or a board renamed, can never mix their files on the ground. The file is
created atomically: written and fsync'd under a temporary name, then hard-linked to ``board-id``
(``link(2)`` fails if the name exists), so a power cut leaves either no id or a whole one, and two
processes starting at once agree on one id.

Example::

    >>> board_id(Path("/var/lib/camctl"))  # doctest: +SKIP
    '3f2a...'
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import uuid
from pathlib import Path

from camctl.common.fsutil import fsync_dir

__all__ = ["ID_FILE", "board_id"]

ID_FILE = "board-id"
_ID = re.compile(r"[0-9a-f]{32}")  # what this module writes (protocol allows 8..64 hex digits)

log = logging.getLogger(__name__)


def board_id(store_root: Path) -> str:
    """This board's id: read from ``<store_root>/board-id``, made there (a uuid4 in hex) the first
    time. A file that is not an id (edited by hand) is kept aside as ``board-id.bad`` and a new id
    made, with a warning: the ground then sees a new board."""
    root = Path(store_root)
    path = root / ID_FILE
    for _ in range(3):
        found = _read(path)
        if found:
            return found
        # one read says absent ("") or not an id (None): a second look could find the id another
        # process linked in between and set a whole one aside as bad
        if found is None:
            log.warning("board id: %s is not an id: kept as %s.bad, a new id is made", path,
                        ID_FILE)
            os.replace(path, root / f"{ID_FILE}.bad")
        made = uuid.uuid4().hex
        root.mkdir(parents=True, exist_ok=True)
        tmp = root / f".{ID_FILE}.{os.getpid()}.{made[:8]}.tmp"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            try:
                os.write(fd, f"{made}\n".encode())
                os.fsync(fd)
            finally:
                os.close(fd)
            try:
                os.link(tmp, path)  # atomic, and never over an id another process made first
            except FileExistsError:
                continue  # another process won: read its id
            except OSError as exc:  # no hard links here (FUSE, some network filesystems)
                if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK):
                    raise
                if path.exists():
                    continue
                os.rename(tmp, path)  # one daemon per store: nobody races this rename
            with contextlib.suppress(OSError):
                fsync_dir(root)
            return made
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
    raise OSError(f"{path}: could not read or make the board id")


def _read(path: Path) -> str | None:
    try:
        text = path.read_text(encoding="ascii", errors="replace").strip()
    except FileNotFoundError:
        return ""
    return text if _ID.fullmatch(text) else None
