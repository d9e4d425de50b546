"""Ground-station exports of downloaded flights: MP4 per camera, contact sheet, timeline, JPEGs.

The package's public API; one module per kind of export, the run in :mod:`.pipeline`
(``camctl export``, :func:`export_all`). Boards are aligned on a shared trigger edge
(:mod:`.flightset`); flights of different boards flown together (release within
:data:`SET_WINDOW_S`, one flight per board) form a *flight set*, written to ``<out>/<set>/``::

    <set>/mp4/<board>_<camera>.mp4     H.264, frames at their sensor times (VFR), phases as
                                       subtitles; a camera that changes frame size gets one video
                                       at its largest size, smaller frames scaled up, never
                                       cropped (.mp4)
    <set>/contact_sheet.png            frames at -1 .. +1 s around each event, every camera of every
                                       board, and the stills; from the previews when no segment was
                                       downloaded (.sheet)
    <set>/timeline.png, .svg           frame rate per camera from release, phases, faults, drops by
                                       reason, still gaps (.timeline, matplotlib)
    <set>/frames/<board>_<camera>_<seq:06d>_<+t.ttt>s.jpg   the stored JPEG bytes (.frames)
    <set>/foxglove/<set>.mcap, .layout.json   every board in one MCAP, and a Foxglove layout
                                       (.foxglove; only with --foxglove)

Every camera's segments are read once, in order; each export kind takes what it needs from that
pass. :func:`contact_sheet_from_thumbs` is the first look from the previews alone.

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
