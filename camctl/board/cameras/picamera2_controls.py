"""Controls and tuning of the picamera2 backend: ``[cameras.controls]`` mapped onto picamera2.

The :class:`~camctl.board.config.CameraControls` are applied at every open: ``AfMode`` and
``LensPosition`` in the video configuration's controls, ``exposure_max_us``/``analogue_gain_max``
as a clipped tuning file (libcamera has no maximum-exposure control), ``sensor_mode`` as the output
size picamera2 picks the sensor mode by. Whatever could not be set is named in ``unset_controls``.

docs/cameras.md, section "picamera2_controls", says how each maps onto picamera2 and libcamera,
and what ``FrameRate`` does while streaming.
"""

from __future__ import annotations

from types import ModuleType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from camctl.board.config import CameraControls

__all__ = ["AF_MODE_VALUES", "CONTROLS_USED", "METADATA_USED", "capped_tuning", "clip_tuning",
           "sensor_mode", "video_controls"]

CONTROLS_USED = ("FrameRate", "AfMode", "LensPosition")
AF_MODE_VALUES = {"manual": 0, "auto": 1, "continuous": 2}  # libcamera controls::AfModeEnum
# Metadata keys read from ``get_metadata()``; all optional (``.get`` with a fallback).
METADATA_USED = ("SensorTimestamp", "ExposureTime", "AnalogueGain", "FrameDuration")


def clip_tuning(tuning: dict[str, Any], algo: dict[str, Any], exposure_max_us: int | None,
                gain_max: float | None) -> dict[str, Any]:
    """Clip every exposure mode of the ``rpi.agc`` parameters ``algo`` (found in ``tuning``), in
    place.

    The AGC walks the ``shutter``/``gain`` lists of its exposure mode; clipped lists stay
    non-decreasing, so it never chooses more than the caps. Tunings from libcamera 0.2 on keep the
    modes under ``channels``.
    """
    for channel in algo.get("channels") or [algo]:
        for mode in channel.get("exposure_modes", {}).values():
            if exposure_max_us is not None:
                mode["shutter"] = [min(int(v), exposure_max_us) for v in mode["shutter"]]
            if gain_max is not None:
                mode["gain"] = [min(float(v), gain_max) for v in mode["gain"]]
    return tuning


def capped_tuning(mod: ModuleType, model: str, controls: CameraControls | None,
                  unset: list[str]) -> dict[str, Any] | None:
    """The tuning of sensor ``model`` with the AGC capped, or None: no cap asked, or it cannot be
    loaded (noted in ``unset``)."""
    c = controls
    if c is None or (c.exposure_max_us is None and c.analogue_gain_max is None):
        return None
    try:
        tuning = mod.Picamera2.load_tuning_file(f"{model}.json")
        algo = mod.Picamera2.find_tuning_algo(tuning, "rpi.agc")
        return clip_tuning(tuning, algo, c.exposure_max_us, c.analogue_gain_max)
    except Exception as exc:
        unset.append(f"exposure_max_us/analogue_gain_max: no tuning for {model!r} ({exc})")
        return None


def video_controls(picam2: Any, sensor_fps: float, controls: CameraControls | None, index: int,
                   unset: list[str]) -> dict[str, Any]:
    """The configuration's controls: the sensor rate, and the lens where the camera has one (what
    camera ``index`` does not advertise is noted in ``unset``)."""
    out: dict[str, Any] = {"FrameRate": sensor_fps}
    c = controls
    if c is None:
        return out
    wanted: dict[str, Any] = {}
    if c.af_mode is not None:
        wanted["AfMode"] = AF_MODE_VALUES[c.af_mode]
    if c.lens_position is not None:
        wanted.setdefault("AfMode", AF_MODE_VALUES["manual"])
        wanted["LensPosition"] = float(c.lens_position)
    advertised = picam2.camera_controls
    for name, value in wanted.items():
        if name in advertised:
            out[name] = value
        else:
            unset.append(f"{name}: not advertised by camera {index} (no focus lens)")
    return out


def sensor_mode(picam2: Any, asked: tuple[int, int] | None,
                unset: list[str]) -> tuple[int, int] | None:
    """The sensor mode ``configure`` chose (picamera2 writes libcamera's choice back), None where
    there is none; a mode other than ``asked`` is noted in ``unset``."""
    try:
        w, h = picam2.camera_configuration()["sensor"]["output_size"]
        mode = (int(w), int(h))
    except Exception:  # not a Raspberry Pi camera (no sensor configuration): nothing to report
        return None
    if asked is not None and mode != tuple(asked):
        unset.append(f"sensor_mode: {asked[0]}x{asked[1]} asked, the sensor has no such mode and "
                     f"runs {w}x{h}")
    return mode
