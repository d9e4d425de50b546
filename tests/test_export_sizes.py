"""camctl export: a camera whose frame size changes mid-flight gets one MP4 at its largest size,
never cropped.

ARMED frames are 320x240 (4:3: red top half, green bottom half), DESCENT frames 960x540 (16:9: blue
with a white square in the bottom-right corner). The video must be 960x540, hold every frame at its
time, show the corner square of the large frames and the small frames whole, scaled up with their
aspect (black side bars).
"""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np

from camctl.board.config import StoreConfig
from camctl.board.encode import encode_jpeg
from camctl.common.frames import EncodedFrame, FrameValue
from camctl.ground.export import export_all
from camctl.store import FlightStore

NS = 1_000_000_000
RELEASE = 500 * NS


def _small() -> np.ndarray:
    img = np.zeros((240, 320, 3), np.uint8)
    img[:120] = (220, 30, 30)
    img[120:] = (30, 200, 30)
    return img


def _large() -> np.ndarray:
    img = np.zeros((540, 960, 3), np.uint8)
    img[:] = (30, 30, 200)
    img[-120:, -160:] = 255
    return img


def _build(root: Path) -> None:
    with FlightStore(root, "rig", "F1", StoreConfig(reserve_mb=0), cameras=["cam"]) as st:
        st.log_event({"kind": "phase", "name": "DESCENT", "phase_from": "ARMED",
                      "phase_to": "DESCENT", "event": "release", "mono_ns": RELEASE,
                      "wall_ns": 1_767_225_600 * NS})
        small, large = encode_jpeg(_small(), 90), encode_jpeg(_large(), 90)
        for i in range(4):
            assert st.put(EncodedFrame("cam", i, RELEASE - (4 - i) * NS // 4, small, 320, 240,
                                       "ARMED", int(FrameValue.PRETRIGGER)))
        for i in range(4, 10):
            assert st.put(EncodedFrame("cam", i, RELEASE + (i - 4) * NS // 10, large, 960, 540,
                                       "DESCENT", int(FrameValue.DESCENT)))


def test_two_sizes_one_video_scaled_not_cropped(tmp_path: Path) -> None:
    _build(tmp_path / "store")
    res = export_all(tmp_path / "store", tmp_path / "out", contact_sheet=False, timeline=False)
    assert len(res.mp4) == 1
    assert any("4 smaller frames scaled up to 960x540" in n for n in res.notes), res.notes
    with av.open(str(res.mp4[0])) as c:
        vs = c.streams.video[0]
        assert (vs.width, vs.height) == (960, 540)
        frames = [f.to_ndarray(format="rgb24").astype(int) for f in c.decode(video=0)]
    assert len(frames) == 10
    for big in frames[4:]:
        # the white corner square of the large frames is in the video
        assert big[-60, -80].min() > 200
        assert big[100, 100][2] > 150 and big[100, 100][:2].max() < 90  # blue elsewhere
    for small in frames[:4]:
        # 320x240 scaled by 540/240 = 2.25 -> 720x540, centred: black bars 120 px wide each side
        assert small[270, 40].max() < 40 and small[270, 920].max() < 40
        assert small[100, 480][0] > 150 and small[100, 480][1] < 90  # red top half, whole
        assert small[440, 480][1] > 150 and small[440, 480][0] < 90  # green bottom half, whole
        # left and right edges of the frame kept
        assert small[100, 140][0] > 150 and small[440, 820][1] > 150
