"""The capture schedule's pure rules (camctl.board.schedule): frame phase by sensor time, frame
value, rates by phase. Fast and thread-free, so mutation testing (see README) can run them for every
mutant."""

from __future__ import annotations

import pytest

from camctl.board.config import CameraConfig
from camctl.board.schedule import RECLASSIFY_NS, frame_phase, value_of
from camctl.common.frames import FrameValue

EDGE = 5_000_000_000


@pytest.mark.parametrize(("state", "t", "asked", "want"), [
    (("DESCENT", "ARMED", EDGE), EDGE - 1, "DESCENT", "ARMED"),  # exposed just before the edge
    (("DESCENT", "ARMED", EDGE), EDGE, "DESCENT", "DESCENT"),  # at the edge: the new phase
    (("DESCENT", "ARMED", EDGE), EDGE + 1, "DESCENT", "DESCENT"),
    # just inside the window
    (("DESCENT", "ARMED", EDGE), EDGE - RECLASSIFY_NS + 1, "DESCENT", "ARMED"),
    # another clock: not moved
    (("DESCENT", "ARMED", EDGE), EDGE - RECLASSIFY_NS, "DESCENT", "DESCENT"),
    (("TOUCHDOWN", "SEPARATION", EDGE), EDGE - 10, "TOUCHDOWN", "SEPARATION"),
    (("ARMED", "SAFE", EDGE), EDGE - 10, "ARMED", "ARMED"),  # nothing before ARMED to file it under
    (("DESCENT", "LANDED", EDGE), EDGE - 10, "DESCENT", "DESCENT"),
    # stopping: the phase it was asked in
    (("LANDED", "TOUCHDOWN", EDGE), EDGE - 10, "TOUCHDOWN", "TOUCHDOWN"),
    (("SAFE", "ARMED", EDGE), EDGE + 10, "ARMED", "ARMED"),
    (("SAFE", "ARMED", EDGE), EDGE - 10, "ARMED", "ARMED"),
])
def test_frame_phase(state, t, asked, want):
    assert frame_phase(state, t, asked) == want


def test_reclassify_window_is_one_second():
    assert RECLASSIFY_NS == 1_000_000_000


@pytest.mark.parametrize(("phase", "value"), [
    ("ARMED", FrameValue.IDLE), ("DESCENT", FrameValue.DESCENT), ("SEPARATION", FrameValue.DESCENT),
    ("CHUTE", FrameValue.DESCENT), ("TOUCHDOWN", FrameValue.TOUCHDOWN),
])
def test_value_of(phase, value):
    assert value_of(phase) == int(value) and isinstance(value_of(phase), int)


def test_rates_quality_and_lores_by_phase():
    cam = CameraConfig("c", fps=(("ARMED", 3.0), ("DESCENT", 30.0)), quality=(("ARMED", 40),),
                       jpeg_quality=85, lores_size=(320, 240), lores_phases=("ARMED",))
    fps = (cam.fps_for("DESCENT"), cam.fps_for("ARMED"), cam.fps_for("SEPARATION"))
    assert fps == (30.0, 3.0, 3.0)
    assert CameraConfig("d").fps_for("DESCENT") == 2.0  # an empty table: the ARMED default
    assert (cam.quality_for("ARMED"), cam.quality_for("DESCENT")) == (40, 85)
    assert (cam.lores_in("ARMED"), cam.lores_in("DESCENT")) == (True, False)
    # no lores size: never
    assert CameraConfig("e", lores_phases=("ARMED",)).lores_in("ARMED") is False
