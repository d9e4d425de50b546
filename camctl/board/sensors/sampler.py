"""One sensor's sampler thread: read what the part has ready, batch it, store it, feed the
detectors, keep its books and its live values.

It shares no lock with camera capture: the only calls out are ``sink`` (the store's non-blocking
``put``), ``on_samples`` (the motion detectors, O(samples)) and the ledger's counters. Samples are
recorded only while a flight's files are open (``recording()``); before that they feed the live
values (the mission page's g and altitude before the drop) and the detectors only.

Books, per sensor, in samples (:class:`~camctl.common.ledger.Ledger` under the sensor's name):
every sample read while recording is ``captured``; a batch the store refuses (no flight open
yet, or finished) is ``lost`` as ``store_refused``; the store's own drops (queue full, disk full)
are counted by the store. A read that fails is a fault (counted in :meth:`status`, logged once per
kind of error); after :data:`DEAD_AFTER` failures in a row the sensor is reported dead and
reopened every :data:`REOPEN_S` seconds.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from camctl.board.sensors.base import Sample, SensorDevice, SensorError
from camctl.common.frames import FrameValue
from camctl.common.ledger import STORE_REFUSED, Ledger
from camctl.store.sources import SampleBatch

__all__ = ["DEAD_AFTER", "REOPEN_S", "SensorSampler"]

log = logging.getLogger("camctl.board.sensors")
DEAD_AFTER = 20  # failed reads in a row before the sensor is reported dead
REOPEN_S = 1.0


class SensorSampler:
    """Runs ``device`` on its own thread: :meth:`start`, :meth:`stop`, :meth:`status`."""

    def __init__(
        self,
        device: SensorDevice,
        *,
        sink: Callable[[SampleBatch], bool],
        recording: Callable[[], bool],
        ledger: Callable[[], Ledger | None],
        phase: Callable[[], str] = lambda: "",
        on_samples: Callable[[str, Sequence[Sample]], None] | None = None,
        value: Callable[[str], int] = lambda phase: int(FrameValue.DESCENT),
        clock_ns: Callable[[], int] = time.monotonic_ns,
    ) -> None:
        self.device = device
        self.name = device.name
        self.kind = device.kind
        self._sink = sink
        self._recording = recording
        self._ledger = ledger
        self._phase = phase
        self._on_samples = on_samples
        self._value = value
        self._clock_ns = clock_ns
        self._batch_ns = int(device.cfg.batch_ms * 1e6)
        self._t: list[int] = []
        self._rows: list[tuple[float, ...]] = []
        self._seq = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        # live values and counters: written by the sampler thread, read by STATUS (a dict swap)
        self.opened = False
        self.error: str | None = None
        self.dead = False
        self.read_errors = 0
        self.samples_read = 0
        self.batches = 0
        self.last: dict[str, float] = {}
        self.last_ns = 0
        self._errors_in_row = 0
        self._logged: set[str] = set()

    # -- life ----------------------------------------------------------------------------------
    def start(self) -> None:
        """Open the part (a failure is reported, not raised: the board flies without it) and start
        the thread."""
        self._open()
        self._thread = threading.Thread(target=self._run, name=f"camctl-sensor-{self.name}",
                                         daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the thread, store what is batched (when recording) and close the part."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self.flush()
        try:
            self.device.close()
        except (OSError, SensorError) as exc:
            log.warning("%s: closing: %s", self.device.where, exc)

    def _open(self) -> bool:
        try:
            self.device.open()
        except (OSError, SensorError) as exc:
            self._fail(str(exc) if isinstance(exc, SensorError) else f"{self.device.where}: {exc}")
            self.dead = True
            return False
        self.opened, self.dead, self.error, self._errors_in_row = True, False, None, 0
        return True

    def _fail(self, text: str) -> None:
        self.error = text
        if text not in self._logged and len(self._logged) < 20:
            self._logged.add(text)
            log.error("sensor %s", text)

    # -- the loop --------------------------------------------------------------------------------
    def _run(self) -> None:
        next_reopen = 0.0
        while not self._stop.is_set():
            if self.dead:
                now = time.monotonic()
                if now >= next_reopen:
                    next_reopen = now + REOPEN_S
                    self._open()
                self._stop.wait(min(REOPEN_S, 0.1))
                continue
            started = time.monotonic()
            self.poll()
            self._stop.wait(max(0.0, self.device.poll_s - (time.monotonic() - started)))

    def poll(self) -> int:
        """One read: record, detect, update the live values. Returns the samples read (the thread
        calls it; tests may call it directly instead of :meth:`start`)."""
        try:
            got = self.device.read()
        except (OSError, SensorError) as exc:
            self.read_errors += 1
            self._errors_in_row += 1
            self._fail(str(exc) if isinstance(exc, SensorError) else f"{self.device.where}: {exc}")
            if self._errors_in_row >= DEAD_AFTER:
                self.dead = True
                self.opened = False
            return 0
        self._errors_in_row = 0
        if self.error is not None and not self.dead:
            self.error = None
        if not got:
            return 0
        self.samples_read += len(got)
        t_last, row_last = got[-1]
        self.last = dict(zip(self.device.fields, row_last, strict=True))
        self.last_ns = t_last
        if self._on_samples is not None:
            self._on_samples(self.name, got)
        if self._recording():
            ledger = self._ledger()
            if ledger is not None:
                ledger.captured(self.name, len(got))
            for t, row in got:
                self._t.append(t)
                self._rows.append(row)
            if self._t[-1] - self._t[0] >= self._batch_ns:
                self.flush()
        elif self._t:
            self.flush()  # the flight closed with samples batched: they are lost as refused
        return len(got)

    def continue_seq(self, next_seq: int) -> None:
        """Number batches from ``next_seq`` on (a resumed flight: a batch's seq is unique in its
        source, across the runs of the daemon). Before :meth:`start`."""
        self._seq = max(self._seq, int(next_seq))

    def flush(self) -> None:
        """Hand the batched samples to the store as one record."""
        if not self._t:
            return
        t, rows = tuple(self._t), tuple(self._rows)
        self._t, self._rows = [], []
        phase = self._phase()
        batch = SampleBatch(source=self.name, seq=self._seq, fields=self.device.fields, t_ns=t,
                            rows=rows, phase=phase, value=self._value(phase))
        self._seq += 1
        self.batches += 1
        if not self._sink(batch):
            ledger = self._ledger()
            if ledger is not None:
                ledger.lost(self.name, STORE_REFUSED, len(rows))

    def status(self) -> dict[str, Any]:
        """STATUS's ``sensors[<name>]``: ``kind``, ``backend``, ``ok`` (opened, reading, not
        dead), ``error`` (the last, or None), ``samples`` (read since start), ``read_errors``,
        ``last`` (the newest sample's fields by name, e.g. ``accel_g``, ``altitude_m``),
        ``age_s`` (how old that sample is; None before the first) and the config's
        ``up_axis``."""
        now = self._clock_ns()
        return {
            **self.device.describe(),
            "ok": self.opened and not self.dead and self.error is None and self.last_ns > 0,
            "error": self.error,
            "samples": self.samples_read,
            "read_errors": self.read_errors,
            "last": dict(self.last),
            "age_s": round((now - self.last_ns) / 1e9, 3) if self.last_ns else None,
            "up_axis": self.device.cfg.up_axis,
        }
