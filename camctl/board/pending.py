"""A camera runner's frames on their way to the store, handed on in capture order, and the one
place a frame's pixels are given back.

:class:`PendingFrames` holds each frame with its encode (a future, or none for a frame the camera
already gave as JPEG) and hands the head on once it is done. The runner's thread drains blocking;
encoder threads drain from done-callbacks and never wait for the lock.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future

from camctl.board.cameras.base import Camera
from camctl.common.frames import Frame

__all__ = ["PendingFrames", "give_back"]

log = logging.getLogger("camctl.board.capture")
Entry = tuple[Frame, str, "Future[bytes] | None"]  # (frame, the phase it belongs to, its encode)


class PendingFrames:
    """Frames waiting for or in the encoder, in capture order.

    ``hand_on(frame, phase, future)`` takes the head once its encode is done (every entry, exactly
    once, under :attr:`lock`); ``hold(frame)`` keeps a done head back in a non-blocking drain;
    ``on_drain()`` runs under the lock at the start of every drain.
    """

    def __init__(self, hand_on: Callable[[Frame, str, Future[bytes] | None], None], *,
                 hold: Callable[[Frame], bool], on_drain: Callable[[], None]) -> None:
        self._hand_on = hand_on
        self._hold = hold
        self._on_drain = on_drain
        self._items: collections.deque[Entry] = collections.deque()
        self.lock = threading.Lock()
        self._kick = False

    def add(self, frame: Frame, phase: str, fut: Future[bytes] | None) -> None:
        """Queue a frame (only the runner's thread adds); handed on as soon as it is encoded."""
        with self.lock:
            self._items.append((frame, phase, fut))
        if fut is not None:
            # route as soon as it is encoded (in order), not when the next frame comes: at 2 fps
            # that is 0.5 s
            fut.add_done_callback(self._on_encoded)

    def _on_encoded(self, _fut: Future[bytes]) -> None:
        self.drain(block=False)

    def drain(self, *, block: bool) -> None:
        """Hand on every done head; ``block`` (the runner's thread only) waits for every encode."""
        if block:  # only the runner thread blocks, and only it adds frames: this empties the queue
            with self.lock:
                self._drain_locked(True)
            if not self._kick:
                return
        # Encoder threads call this from done-callbacks: they must never wait for the lock (the
        # runner may hold it while it waits for a frame queued behind them). Whoever holds the lock
        # re-checks the kick.
        self._kick = True
        while self._kick and self.lock.acquire(blocking=False):
            try:
                self._kick = False
                self._drain_locked(False)
            finally:
                self.lock.release()

    def _drain_locked(self, block: bool) -> None:
        self._on_drain()
        items = self._items
        while items:
            frame, phase, fut = items[0]
            if not block and ((fut is not None and not fut.done()) or self._hold(frame)):
                return
            items.popleft()
            self._hand_on(frame, phase, fut)

    def __len__(self) -> int:
        return len(self._items)

    def live(self) -> int:
        """Entries still holding a frame's work: not pushed out of the encoder (a cancelled entry
        waits only for its turn to be counted and given back)."""
        return sum(1 for _f, _p, fut in list(self._items) if fut is None or not fut.cancelled())


def give_back(frame: Frame, camera: Camera, name: str) -> None:
    """Done with a frame's pixels (encoded, dropped or cancelled): every frame comes here once.

    Lent pixels (``frame.release``, see :class:`~camctl.common.frames.Frame`) go back to the
    camera's buffers; owned ones to its pool, except a still's: it may share its pixels with its
    video twin, which returns them."""
    frame.yuv420 = None  # lores planes are small copies out of the camera's buffer: let them go
    image, frame.image = frame.image, None
    release, frame.release = frame.release, None
    if release is not None:
        try:
            release()
        except Exception as exc:  # a backend bug must not cost the frames behind this one
            log.warning("camera %s: giving back a lent frame failed: %s", name, exc)
    elif image is not None and not frame.still:
        with contextlib.suppress(Exception):  # a pool is an optimisation; never let it cost a frame
            camera.recycle(image)
