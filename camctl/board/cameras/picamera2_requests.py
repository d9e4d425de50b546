"""The picamera2 backend's requests: wait for one, lend its buffer as a frame, give it back.

A timed-out wait cancels and flushes (:func:`cancel_timed_out`), so no request leaks. At most
:data:`LEND_LIMIT` requests are lent at once (beyond that a frame is a copy and the request goes
back at once), so a slow encoder costs copies, never sensor frames. Close stops the camera, waits
up to :data:`LOAN_WAIT_S` for every loan and leaves ``Picamera2.close`` to the last loan still
out (``deferred_closes``): a leak, never a read of freed memory.

docs/cameras.md, section "picamera2_requests", has the picamera2 facts this relies on, with their
sources (pinned by tests/test_picamera2_strict.py and tests/test_cameras_picamera2.py).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Any

import numpy as np

from camctl.board.cameras.picamera2_formats import to_rgb
from camctl.exc import CameraDisconnected, CameraError, CameraTimeout

__all__ = ["BUFFER_COUNT", "LEND_LIMIT", "LOAN_WAIT_S", "QUEUE", "Loans", "Requests",
           "cancel_timed_out",
           "close_after_loans", "close_quietly", "lend", "quietly"]

_log = logging.getLogger("camctl.board.cameras.picamera2")  # the backend's one logger

BUFFER_COUNT = 6  # picamera2's video default. They keep the ISP fed; each is a frame of
# set_controls latency.
LEND_LIMIT = BUFFER_COUNT - 3  # requests lent out as frames at once (beyond: a copy). One being
# written, one queued for the next frame, one kept by picamera2's queue (QUEUE) or still in the
# ISP near the mode's top rate: a conservative margin, now that the backend's requests carry no raw
# stream (raw=None); the contract suite checks no frame is lost at the limit on both stacks.
QUEUE = True  # picamera2 keeps the newest completed request (_max_queue_len = 1), so a capture
# thread that is late by up to a frame period (a GC pause, an encoder hand-off) takes that frame
# instead of losing it. Chosen by measurement on the real stack (real picamera2 on libcamera's
# virtual camera, 1536x864 at 50 fps, the consumer 1.5 periods late every 10th frame, 200
# frames): 23 frames lost with queue=False, 2 with queue=True; `camctl bench --only realstack`
# measures it again (real_late_lost_queue_off / _on).
LOAN_WAIT_S = 3.0  # how long close() waits for lent frames before it leaves the camera open


def cancel_timed_out(picam2: Any, job: Any) -> None:
    """A ``job`` that timed out is still queued and would take (and leak) the next request: cancel
    it; if it completed in the meantime, give its request back."""
    try:
        picam2.cancel_all_and_flush()
        late = job.get_result(timeout=1.0)
    except Exception:  # cancelled (the usual case), or never finished
        late = None
    if late is not None:
        late.release()


class Requests:
    """One open's completed requests: ``capture_request`` with a bounded wait, each read inside
    :meth:`reading` (the request always given back), failures mapped to camctl camera errors that
    name ``camera`` and its ``index``."""

    def __init__(self, camera: str, index: int, mod: ModuleType, picam2: Any) -> None:
        self.camera = camera
        self.index = index
        self._mod = mod
        self._picam2 = picam2

    def listed(self) -> bool:
        """Whether libcamera still lists the camera."""
        try:
            return self.index < len(self._mod.Picamera2.global_camera_info())
        except Exception:
            return False

    def failure(self, exc: BaseException, what: str) -> CameraError:
        """Map a libcamera/picamera2 failure: CameraDisconnected if the camera is no longer listed
        (a USB camera can leave the CameraManager's list; a CSI one never does)."""
        if not self.listed():
            return CameraDisconnected(self.camera, f"camera {self.index} disappeared during "
                                                   f"{what}: {exc!r}")
        return CameraError(self.camera, f"{what} failed: {exc!r}")

    def next(self, deadline: float, timeout_s: float, what: str) -> Any:
        """The next completed request (the next frame to complete: ``queue=False``), before
        ``deadline`` (``time.monotonic``); ``timeout_s`` is the caller's whole timeout."""
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise CameraTimeout(self.camera, f"no frame due within {timeout_s:g} s ({what}) from "
                                             f"camera {self.index}")
        try:
            job = self._picam2.capture_request(wait=False)
        except Exception as exc:
            raise self.failure(exc, "capture_request") from exc
        return self._wait(job, remaining, what, timeout_s)

    def wait(self, job: Any, timeout_s: float, what: str) -> Any:
        """The request ``job`` produces within ``timeout_s`` (a ``switch_mode_and_capture_request``
        made with ``wait=False``), or CameraTimeout leaving nothing queued."""
        return self._wait(job, timeout_s, what, timeout_s)

    def _wait(self, job: Any, timeout_s: float, what: str, asked_s: float) -> Any:
        """The request a Job produced within ``timeout_s``, or CameraTimeout (leaving nothing
        queued); the message names ``asked_s``, the caller's whole timeout."""
        mod = self._mod
        try:
            return job.get_result(timeout=timeout_s)
        except mod.TimeoutError:
            pass
        except mod.CancelledError as exc:
            raise CameraError(self.camera, f"{what} was cancelled") from exc
        except Exception as exc:
            raise self.failure(exc, what) from exc
        cancel_timed_out(self._picam2, job)
        raise CameraTimeout(self.camera, f"no frame within {asked_s:g} s ({what}) from camera "
                                         f"{self.index}; a CSI camera that stops delivering stays "
                                         "listed: check its cable")

    @contextlib.contextmanager
    def reading(self, request: Any, what: str) -> Iterator[None]:
        """Read a completed request inside the block: failures mapped to camera errors, the request
        always given back."""
        try:
            yield
        except CameraError:
            raise
        except Exception as exc:
            raise self.failure(exc, f"reading the {what} request") from exc
        finally:
            request.release()


class Loans:
    """The requests of one ``Picamera2`` object lent out as frames (``Frame.release``), and its
    close.

    At most ``limit`` requests are lent at once; a request already lent lends again without counting
    (a still and its video twin share one buffer). :meth:`wait` blocks until every loan is back; a
    close that cannot wait any longer is :meth:`defer`-red to the last loan's return. Thread-safe:
    loans come back on encoder threads.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._cond = threading.Condition()  # an RLock: a view may die on a thread holding it
        self._held: dict[int, int] = {}  # id(request) -> frames lent from it
        self._deferred: Callable[[], None] | None = None
        # arrays made on a mapped buffer (``np.array(mmap)``) that a lent frame's pixels view:
        # alive, they keep the mapping exported, so picamera2 cannot unmap it (see wait_views)
        self._views: dict[int, weakref.ref] = {}  # id(the weak reference) -> it

    def watch(self, root: np.ndarray) -> None:
        """Watch the array a lent frame's pixels view (and every view of it keeps alive)."""
        def gone(ref: weakref.ref) -> None:
            with self._cond:
                self._views.pop(id(ref), None)
                self._cond.notify_all()

        with self._cond:
            ref = weakref.ref(root, gone)  # an array is unhashable, and so is a reference to one
            self._views[id(ref)] = ref

    def wait_views(self, timeout_s: float) -> bool:
        """Wait until no request is lent and no array views a lent buffer any more; False if some
        still do after ``timeout_s``.

        A reconfigure (a mode switch) unmaps every buffer not in use (``DmaAllocator.allocate`` ->
        ``cleanup``: ``mmap.close``), which raises ``BufferError: cannot close exported pointers
        exist`` while an array still views it: a frame given back but still referenced (the
        encoder thread drops it only after its done-callbacks ran)."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._held and not self._views, timeout_s)

    @property
    def requests(self) -> int:
        """Requests (buffers) lent out now."""
        with self._cond:
            return len(self._held)

    def take(self, key: int) -> bool:
        with self._cond:
            if key in self._held:
                self._held[key] += 1
                return True
            if len(self._held) >= self.limit or self._deferred is not None:
                return False
            self._held[key] = 1
            return True

    def give(self, key: int) -> None:
        with self._cond:
            self._held[key] -= 1
            if self._held[key]:
                return
            del self._held[key]
            self._cond.notify_all()
            run = None
            if not self._held:
                run, self._deferred = self._deferred, None
        if run is not None:
            run()

    def wait(self, timeout_s: float) -> bool:
        """Wait until no request is lent; False if some still are after ``timeout_s``."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._held, timeout_s)

    def defer(self, close: Callable[[], None]) -> bool:
        """Run ``close`` when the last loan comes back (now if none is out); True if it was
        deferred."""
        with self._cond:
            if self._held:
                self._deferred = close
                return True
        close()
        return False


def lend(mod: ModuleType, request: Any, fmt: str,
         loans: Loans) -> tuple[np.ndarray, Callable[[], None] | None] | None:
    """The main stream of ``request`` as RGB: a read-only view of its buffer and the view's one-shot
    ``release``; None when no loan is to spare. A format :func:`to_rgb` must convert comes back as a
    copy with the request given back at once (``release`` None).

    The buffer is mapped as picamera2's own JpegEncoder does (``encoders/jpeg_encoder.py``
    ``encode_func``: ``with MappedArray(request, name)``, the request held with
    ``request.acquire()`` in ``encoders/multi_encoder.py`` ``_encode`` and released after the encode
    in ``do_encode``). ``MappedArray.array`` is the buffer itself (``request.py``:
    ``_make_array_shared`` "never makes a copy").
    """
    key = id(request)
    if not loans.take(key):
        return None
    try:
        mapped, image, view = _map(mod, request, fmt)
    except BaseException:
        loans.give(key)
        raise
    root = view
    while isinstance(root.base, np.ndarray):  # numpy collapses views onto this array
        root = root.base
    if root.base is not None:  # made on a mapped buffer (not an array that owns its memory)
        loans.watch(root)
    del root
    given = threading.Lock()

    def release() -> None:
        if not given.acquire(blocking=False):
            return  # given back already: never a second request.release()
        try:
            mapped.__exit__(None, None, None)
        finally:
            try:
                request.release()
            finally:
                loans.give(key)

    if not np.may_share_memory(image, view):  # converted: a copy already, nothing to lend
        del view
        release()
        return image, None
    del view
    image = image.view()
    image.flags.writeable = False  # the camera's buffer: read it, never write it
    return image, release


def _map(mod: ModuleType, request: Any, fmt: str) -> tuple[Any, np.ndarray, np.ndarray]:
    """``(mapped, image, view)``: the entered ``MappedArray`` of the main stream, its pixels as
    RGB and the buffer's own view, the request holding one more reference; on failure nothing is
    held."""
    request.acquire()  # this frame's own reference: the capture path releases its one as always
    try:
        mapped = mod.MappedArray(request, "main", write=False)
        mapped.__enter__()
    except BaseException:
        request.release()
        raise
    try:
        view = mapped.array
        return mapped, to_rgb(view, fmt), view
    except BaseException:
        mapped.__exit__(None, None, None)
        request.release()
        raise


def quietly(step: Callable[[], Any]) -> None:
    """Run one closing step; a failure is logged, never raised (closing must always complete)."""
    try:
        step()
    except Exception as exc:  # closing must always complete
        _log.warning("picamera2 %s failed while closing: %r", step.__name__, exc)


def close_quietly(picam2: Any, recording: bool) -> None:
    """Stop (``stop_recording`` when ``recording``) and close ``picam2``, whatever fails."""
    steps = (picam2.stop_recording, picam2.close) if recording else (picam2.stop, picam2.close)
    for step in steps:
        quietly(step)


def close_after_loans(picam2: Any, loans: Loans, wait_s: float, recording: bool) -> bool:
    """Close ``picam2`` once no lent frame reads its buffers any more; True if the close was left
    to the last loan's return.

    ``Picamera2.close`` releases the libcamera camera and drops the allocator that holds the buffers
    (``picamera2.py`` ``close``: ``self.camera.release()``, ``del self.allocator``), which an
    encoder thread may still be reading through a lent frame. ``stop`` first is safe (``stop_``
    stops libcamera and releases only requests picamera2 itself holds; the allocator keeps every
    buffer mapped), then wait up to ``wait_s``; if frames are still out, leave the camera open (a
    leak, not a crash) and close it when the last one comes back (a reopen meanwhile fails and is
    retried).
    """
    if loans.requests:
        if not recording:
            quietly(picam2.stop)
        if not loans.wait(wait_s):
            return loans.defer(lambda: close_quietly(picam2, recording))
    close_quietly(picam2, recording)
    return False
