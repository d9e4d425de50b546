"""Ground-station exports of downloaded flights: MP4 per camera, contact sheet, timeline, JPEGs.

The package's public API: one module per kind of export, the run in :mod:`.pipeline`
(``camctl export``, :func:`export_all`; each camera's segments are read once). Flights of
different boards flown together (release within :data:`SET_WINDOW_S`, one flight per board) form
a *flight set*, aligned on a shared trigger edge and written to ``<out>/<set>/``: ``mp4/``,
``contact_sheet.png``, ``timeline.png`` and ``.svg``, ``frames/`` and (``--foxglove``)
``foxglove/``; ``--csv`` writes each sensor's samples to ``<out>/<board>_<flight>_<sensor>.csv``
(:mod:`.csv`). :func:`contact_sheet_from_thumbs` is the first look from the previews alone.

The output layout in full and what each module owns: ``docs/export.md``.

Example::

    >>> res = export_all(Path("drop-3"), Path("drop-3/export"), frames=True)     # doctest: +SKIP
    >>> res.paths()["mp4"]
"""

from camctl.ground.export.flightset import SET_WINDOW_S, align_set
from camctl.ground.export.frames import frame_file_name
from camctl.ground.export.mp4 import MP4_TIME_BASE, pts_of
from camctl.ground.export.pipeline import ExportResult, export_all, export_main
from camctl.ground.export.sheet import BG, contact_sheet_from_thumbs

__all__ = [
    "BG",
    "MP4_TIME_BASE",
    "SET_WINDOW_S",
    "ExportResult",
    "align_set",
    "contact_sheet_from_thumbs",
    "export_all",
    "export_main",
    "frame_file_name",
    "pts_of",
]
