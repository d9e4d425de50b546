"""A camera runner's stills: the requests the event path queues, the sequence numbers stills take
from the video, and each still's measured video gap.

Only the runner's thread (and its drain, under the drain lock) reads or writes a :class:`StillBook`,
except :meth:`StillBook.request`, a deque append from the event path.
"""

from __future__ import annotations

import collections

from camctl.common.frames import Frame
from camctl.common.ledger import STILL_GAP, STILL_MODE_SWITCH

__all__ = ["StillBook"]


class StillBook:
    """Still requests (at most four waiting) and the stills taken but not yet sent to the store.

    A still's ``video_gap_ms`` is measured, not assumed: the longest interval (sensor time) between
    consecutive video frames from the last one before the still to the first one after it. Its
    ``still_size`` says what it is: ``"full"`` (the camera switched mode for it, so the video
    paused) or ``"video"`` (a frame of the running stream).
    """

    def __init__(self) -> None:
        self._requests: collections.deque[str] = collections.deque(maxlen=4)
        self._meta: dict[int, dict] = {}  # meta of each still waiting to be sent, by frame id
        self._watches: list[dict] = []  # the video-gap measurement of each still
        self._last_video_ns: int | None = None
        self._seqs: list[int] = []  # seqs of stills taken since the last video frame
        # a still interrupted the video since the last video frame: None, STILL_GAP, or
        # STILL_MODE_SWITCH when one of them switched the sensor's mode
        self._since: str | None = None

    def request(self, event: str) -> None:
        """The event path: a still is owed for ``event`` (never blocks)."""
        self._requests.append(event)

    def next_request(self) -> str | None:
        return self._requests.popleft() if self._requests else None

    def drop_requests(self) -> int:
        """Forget the requests not served (before LANDED/SAFE); how many there were."""
        n = 0
        while self._requests:
            self._requests.popleft()
            n += 1
        return n

    def taken(self, frame: Frame, event: str, *, mode_switch: bool = False) -> None:
        """``frame`` is the still taken for ``event`` (by a mode switch: ``mode_switch``): it lives
        outside the video sequence (it makes no sensor gap), and its video gap is watched from now
        on."""
        frame.still = True
        self._seqs.append(frame.seq)
        if mode_switch or self._since is None:
            self._since = STILL_MODE_SWITCH if mode_switch else STILL_GAP
        meta: dict = {"event": event, "still_size": "full" if mode_switch else "video"}
        self._meta[id(frame)] = meta
        self._watches.append({"meta": meta, "still_ns": frame.timestamp_ns,
                              "prev_ns": self._last_video_ns, "worst_ns": 0})

    def video_frame(self, timestamp_ns: int, last_seq: int | None,
                    seq: int) -> tuple[int, str | None]:
        """Every video frame: close the video-gap measurement of each still before it. Returns the
        sequence numbers skipped since ``last_seq`` that no still took, and the ledger reason to
        book them under when a still interrupted the video meanwhile (``still_mode_switch`` if
        the still switched the sensor's mode, else ``still_gap``), None when none did (then the
        skip is a sensor gap)."""
        self._last_video_ns = timestamp_ns
        for watch in list(self._watches):
            if watch["prev_ns"] is not None:
                watch["worst_ns"] = max(watch["worst_ns"], timestamp_ns - watch["prev_ns"])
            watch["prev_ns"] = timestamp_ns
            if timestamp_ns > watch["still_ns"]:
                watch["meta"]["video_gap_ms"] = round(watch["worst_ns"] / 1e6, 3)
                self._watches.remove(watch)
        gap, interrupted = 0, self._since
        if last_seq is not None and seq > last_seq + 1:
            gap = seq - last_seq - 1
            # a still took a number (sim) or paused the video (picamera2 mode switch)
            if interrupted:
                gap -= sum(1 for s in self._seqs if last_seq < s < seq)
        if interrupted:
            self._since = None
            self._seqs.clear()
        return gap, interrupted

    def gap_unknown(self, frame: Frame) -> bool:
        """The still's video gap is known once the first video frame after it is captured."""
        return "video_gap_ms" not in self._meta.get(id(frame), {})

    def forget(self, frame: Frame) -> None:
        """A still that will never be sent (its encode was cancelled)."""
        self._meta.pop(id(frame), None)

    def meta_to_send(self, frame: Frame) -> dict:
        """The still's meta (event, video gap), once; a camera that stopped before a video frame
        followed gives what was seen."""
        meta = self._meta.pop(id(frame), {})
        if "video_gap_ms" not in meta:
            watch = next((w for w in self._watches if w["meta"] is meta), None)
            if watch is not None:
                self._watches.remove(watch)
            worst = watch["worst_ns"] if watch else 0
            meta["video_gap_ms"] = round(worst / 1e6, 3) if worst else None
        return meta

    def __len__(self) -> int:
        """Requests waiting."""
        return len(self._requests)
