"""``camctl export --csv``: each sensor's samples as a CSV file for a spreadsheet.

One file per sensor of each board's flight, ``<out>/<board>_<flight>_<sensor>.csv``: a header row,
then one row per sample in time order (:func:`camctl.ground.samples.load_samples`: duplicates of a
resent batch dropped). Columns:

- ``t_s``: seconds from the flight set's zero (the release edge; the board's first event when it
  logged no release: the export's notes say so), on the board's monotonic clock;
- ``t_ns``: the sample's CLOCK_MONOTONIC time in ns, as the board stored it (the clock of the
  frames' sensor times and the event records' ``mono_ns``);
- the sensor kind's fields in the store's order, units in their names
  (:data:`camctl.store.sources.IMU_FIELDS`: ``accel_x_mps2`` m/s^2, ``gyro_x_dps`` deg/s,
  ``accel_g`` |a| in g; :data:`camctl.store.sources.BARO_FIELDS`: ``pressure_pa`` Pa,
  ``temperature_c`` deg C, ``altitude_m`` m), each value as stored (Python's shortest repr of the
  float, so reading the file back gives the same numbers).

Example::

    >>> write_csv(flight, Path("export"))                       # doctest: +SKIP
    [PosixPath('export/rig-a_20261207T1219Z_imu.csv'), ...]
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from camctl.ground.export.flightset import Flight

__all__ = ["csv_name", "write_csv"]


def csv_name(board: str, flight: str, sensor: str) -> str:
    """``<board>_<flight>_<sensor>.csv``."""
    return f"{board}_{flight}_{sensor}.csv"


def write_csv(fl: Flight, out_dir: Path) -> list[Path]:
    """Write each sensor of ``fl`` with at least one sample to ``out_dir`` (the module docstring's
    format); the files written ([] for a flight without sensor samples)."""
    out: list[Path] = []
    zero = fl.t0_ns
    for name, series in sorted(fl.samples().items()):
        if not len(series):
            continue
        out_dir.mkdir(parents=True, exist_ok=True)
        path = out_dir / csv_name(fl.board, fl.ref.flight, name)
        with path.open("w", newline="", encoding="utf-8") as f:
            # the csv module's default dialect: comma-separated, \r\n rows (RFC 4180)
            w = csv.writer(f)
            w.writerow(["t_s", "t_ns", *series.fields])
            for t, row in zip(series.t_ns.tolist(), series.values.tolist(), strict=True):
                t_s = f"{(t - zero) / 1e9:.9f}" if zero is not None else ""
                w.writerow([t_s, t, *(repr(v) for v in row)])
        out.append(path)
    return out
