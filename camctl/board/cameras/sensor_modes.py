"""The Raspberry Pi camera sensors camctl knows: their modes, top rates, analogue gain and lens.

Pure data, for the config's cross-checks (:mod:`camctl.board.config`): a ``sensor_mode`` the
sensor does not have, a flight rate above its mode's, an ``analogue_gain_max`` above its range,
focus controls on a sensor without a focus lens, no focus on one with autofocus. A camera names
its sensor with ``sensor = "imx708"`` in ``[[cameras]]`` (the model libcamera reports,
``rpicam-hello --list-cameras``); the checks that need it apply only then.

Sources:

- Modes and top rates: the ``list-cameras`` output in Raspberry Pi's camera documentation
  (raspberrypi/documentation, ``computers/camera/rpicam_options_common.adoc``: IMX219 640x480
  206.65 fps, 1640x1232 41.85, 1920x1080 47.57, 3280x2464 21.19; IMX477 1332x990 120.05,
  2028x1080 50.03, 2028x1520 40.01, 4056x3040 10.00). For the IMX708 that page has the video
  modes (``accessories/camera/camera_hardware.adoc``, Hardware Specification: "2304 x 1296p56,
  2304 x 1296p30 HDR, 1536 x 864p120", sensor 4608 x 2592); the exact rates are those
  ``rpicam-hello --list-cameras`` and picamera2's ``sensor_modes`` print for a Camera Module 3
  (1536x864 120.13 fps, 2304x1296 56.03, 4608x2592 14.35; the HDR mode is a 2304x1296 mode too).
- Analogue gain: the largest gain code of the sensor's Linux driver (raspberrypi/linux
  ``drivers/media/i2c/imx708.c`` ``IMX708_ANA_GAIN_MAX 960``, ``imx477.c`` 978, ``imx219.c``
  232) through libcamera's gain law for it (raspberrypi/libcamera
  ``src/ipa/rpi/cam_helper/cam_helper_imx708.cpp`` and ``_imx477.cpp``: 1024 / (1024 - code);
  ``_imx219.cpp``: 256 / (256 - code)): 16.0, 22.26 and 10.67.
- Focus lens: only the Camera Module 3 (IMX708) has one ("Focus: Motorized" in the Hardware
  Specification; the Camera Module 2 and the HQ camera are "Adjustable" by hand).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["GAIN_MAX_ANY", "SENSORS", "Sensor", "SensorMode", "sensor_named"]


@dataclass(frozen=True)
class SensorMode:
    size: tuple[int, int]
    fps: float  # the mode's top rate


@dataclass(frozen=True)
class Sensor:
    model: str  # libcamera's name for it
    module: str  # the Raspberry Pi camera it is on
    modes: tuple[SensorMode, ...]
    gain_max: float  # the top of the analogue gain range (1.0 is the bottom)
    autofocus: bool  # a focus lens that AfMode/LensPosition move

    def mode(self, size: tuple[int, int]) -> SensorMode | None:
        return next((m for m in self.modes if m.size == tuple(size)), None)


_IMX708 = Sensor("imx708", "Camera Module 3",
                 (SensorMode((1536, 864), 120.13), SensorMode((2304, 1296), 56.03),
                  SensorMode((4608, 2592), 14.35)),
                 gain_max=1024 / (1024 - 960), autofocus=True)
_IMX477 = Sensor("imx477", "HQ Camera",
                 (SensorMode((1332, 990), 120.05), SensorMode((2028, 1080), 50.03),
                  SensorMode((2028, 1520), 40.01), SensorMode((4056, 3040), 10.0)),
                 gain_max=1024 / (1024 - 978), autofocus=False)
_IMX219 = Sensor("imx219", "Camera Module 2",
                 (SensorMode((640, 480), 206.65), SensorMode((1640, 1232), 41.85),
                  SensorMode((1920, 1080), 47.57), SensorMode((3280, 2464), 21.19)),
                 gain_max=256 / (256 - 232), autofocus=False)

# By the names libcamera gives them: the Camera Module 3's Wide and NoIR variants are the same
# sensor and modes (cam_helper_imx708.cpp registers all four names).
SENSORS: dict[str, Sensor] = {
    "imx708": _IMX708, "imx708_wide": _IMX708, "imx708_noir": _IMX708,
    "imx708_wide_noir": _IMX708, "imx477": _IMX477, "imx219": _IMX219,
}

# The largest analogue gain of any sensor above: a cap beyond it is a mistake whatever the camera.
GAIN_MAX_ANY: float = max(s.gain_max for s in SENSORS.values())


def sensor_named(name: str) -> Sensor | None:
    """The sensor libcamera calls ``name``, or None."""
    return SENSORS.get(name)
