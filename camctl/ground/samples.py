"""A downloaded flight's sensor samples as arrays: the IMU's |a| and the barometer's altitude, on
the board's monotonic clock, for the timeline, the sheet, the verdict, the Foxglove export and
``export --csv``.

A flight's sensors are the sources ``flight.json`` lists with kind ``imu`` or ``baro``
(:func:`camctl.store.sources.source_kinds`); each is read through the store's reader
(:func:`camctl.store.reader.iter_samples`), so a torn or damaged segment gives what survives.

Example::

    >>> series = load_samples(Path("out/rig-a/F0001"))                # doctest: +SKIP
    >>> imu = series["imu"]; imu.column("accel_g").max()              # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from camctl.ground.verdict import PeakG, peak_g
from camctl.store.reader import iter_samples
from camctl.store.sources import SENSOR_KINDS, source_kinds

__all__ = ["SampleSeries", "altitude_above_landing", "flight_peak_g", "imu_of", "load_samples",
           "peak", "peaks_of", "sensor_segments"]


@dataclass(frozen=True)
class SampleSeries:
    """One sensor's samples in time order: ``t_ns`` (int64, CLOCK_MONOTONIC ns, duplicates
    dropped) and ``values`` (float64, one column per field)."""

    name: str
    kind: str  # imu | baro
    fields: tuple[str, ...]
    t_ns: np.ndarray
    values: np.ndarray

    def column(self, field: str) -> np.ndarray:
        """One field's values (KeyError naming the fields there are)."""
        try:
            return self.values[:, self.fields.index(field)]
        except ValueError:
            raise KeyError(f"{self.name} has no field {field!r} (fields: "
                           f"{', '.join(self.fields)})") from None

    def __len__(self) -> int:
        return len(self.t_ns)


def sensor_segments(flight_dir: Path) -> dict[str, tuple[str, list[Path]]]:
    """Sensor name -> (kind, its ``*.mcap`` segments in order), for the sensors ``flight.json``
    names that have a segment here."""
    out: dict[str, tuple[str, list[Path]]] = {}
    for name, kind in sorted(source_kinds(Path(flight_dir)).items()):
        if kind in SENSOR_KINDS:
            segs = sorted((Path(flight_dir) / name).glob("*.mcap"))
            if segs:
                out[name] = (kind, segs)
    return out


def load_samples(flight_dir: Path) -> dict[str, SampleSeries]:
    """Every sensor's samples of a flight folder (``{}`` for a flight without sensors)."""
    out: dict[str, SampleSeries] = {}
    for name, (kind, segs) in sensor_segments(flight_dir).items():
        fields = SENSOR_KINDS[kind].fields
        times: list[int] = []
        rows: list[tuple[float, ...]] = []
        for seg in segs:
            for batch in iter_samples(seg):
                times.extend(batch.t_ns)
                rows.extend(batch.rows)
        t = np.asarray(times, dtype=np.int64)
        v = np.asarray(rows, dtype=np.float64).reshape(len(rows), len(fields))
        order = np.argsort(t, kind="stable")
        t, v = t[order], v[order]
        if len(t):
            keep = np.concatenate(([True], np.diff(t) > 0))  # a resent batch is one sample
            t, v = t[keep], v[keep]
        out[name] = SampleSeries(name, kind, fields, t, v)
    return out


def peak(series: SampleSeries, field: str, start_ns: int | None = None,
         end_ns: int | None = None) -> tuple[float, int] | None:
    """The largest ``field`` value in [start_ns, end_ns) and its time; None when no sample is in
    the window."""
    t = series.t_ns
    lo = 0 if start_ns is None else int(np.searchsorted(t, start_ns, side="left"))
    hi = len(t) if end_ns is None else int(np.searchsorted(t, end_ns, side="left"))
    if hi <= lo:
        return None
    col = series.column(field)[lo:hi]
    i = int(np.argmax(col))
    return float(col[i]), int(t[lo + i])


def altitude_above_landing(series: SampleSeries, landed_ns: int | None = None) -> np.ndarray:
    """Altitude relative to where the board came to rest: the median altitude after
    ``landed_ns`` (or of the last second of samples) is 0. A barometer knows pressure, not the
    ground's elevation; the landing point is the one height every drop shares."""
    alt = series.column("altitude_m")
    if not len(alt):
        return alt
    t = series.t_ns
    start = landed_ns if landed_ns is not None else int(t[-1]) - 1_000_000_000
    after = alt[t >= start]
    ref = float(np.median(after if len(after) else alt[-1:]))
    return alt - ref


def imu_of(series: dict[str, SampleSeries]) -> SampleSeries | None:
    """The flight's IMU (the first by name) with at least one sample, or None."""
    return next((s for _n, s in sorted(series.items()) if s.kind == "imu" and len(s)), None)


def peaks_of(series: dict[str, SampleSeries], event_ns: dict[str, int]) -> list[PeakG] | None:
    """The peak g at separation and touchdown (:func:`camctl.ground.verdict.peak_g`) of a flight's
    samples; None for a flight without sensors (it has no peak line)."""
    if not series:
        return None
    imu = imu_of(series)
    return peak_g(imu.t_ns if imu else None, imu.column("accel_g") if imu else None, event_ns)


def flight_peak_g(flight_dir: Path) -> tuple[list[PeakG], int | None] | None:
    """A flight folder's peaks and its zero (the release edge, None without one); None for a
    flight without sensors."""
    from camctl.ground.flights import TimeBase, load_events

    series = load_samples(flight_dir)
    if not series:
        return None
    tb = TimeBase.from_events(load_events(Path(flight_dir)))
    peaks = peaks_of(series, tb.event_ns)
    return (peaks, tb.t0_ns if tb.aligned else None) if peaks is not None else None
