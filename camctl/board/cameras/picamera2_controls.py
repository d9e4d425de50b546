"""Controls and tuning of the picamera2 backend: ``[cameras.controls]`` mapped onto picamera2.

The :class:`~camctl.board.config.CameraControls` are applied at every open: ``AfMode`` and
``LensPosition`` in the video configuration's controls, ``exposure_max_us``/``analogue_gain_max``
as a clipped tuning file (libcamera has no maximum-exposure control) that libcamera reads when its
camera manager is made (:class:`Tunings`), ``sensor_mode`` as the output size picamera2 picks the
sensor mode by. Whatever could not be set is named in ``unset_controls``.

docs/cameras.md, section "picamera2_controls", says how each maps onto picamera2 and libcamera,
and what ``FrameRate`` does while streaming.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import shutil
import tempfile
import threading
import weakref
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from camctl.board.cameras.picamera2 import Picamera2Camera
    from camctl.board.config import CameraControls

__all__ = ["AF_MODE_VALUES", "CONFIG_PATH_ENV", "CONTROLS_USED", "IPA_DIRS", "METADATA_USED",
           "TUNINGS", "TUNING_FILE_ENV", "Caps", "Tunings", "capped_tuning", "clip_tuning",
           "sensor_mode", "video_controls"]

_log = logging.getLogger("camctl.board.cameras.picamera2")  # the backend's one logger

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


Caps = tuple[int | None, float | None]
"""``(exposure_max_us, analogue_gain_max)``; None: not capped."""


def _caps(controls: CameraControls | None) -> Caps | None:
    c = controls
    if c is None or (c.exposure_max_us is None and c.analogue_gain_max is None):
        return None
    return c.exposure_max_us, c.analogue_gain_max


def _stricter(a: Caps, b: Caps) -> Caps:
    def low(x: Any, y: Any) -> Any:
        return y if x is None else x if y is None else min(x, y)

    return low(a[0], b[0]), low(a[1], b[1])


def capped_tuning(mod: ModuleType, model: str, caps: Caps) -> dict[str, Any]:
    """The system tuning of sensor ``model`` with the AGC capped to ``caps``; raises where picamera2
    finds no tuning for it."""
    tuning = mod.Picamera2.load_tuning_file(f"{model}.json")
    algo = mod.Picamera2.find_tuning_algo(tuning, "rpi.agc")
    return clip_tuning(tuning, algo, caps[0], caps[1])


# libcamera ipa_proxy.cpp ipaConfigurationFile: "LIBCAMERA_" + the IPA name up to its first '/'
# + "_TUNING_FILE" (one variable for every Raspberry Pi camera), then each directory of
# LIBCAMERA_IPA_CONFIG_PATH (global_configuration.cpp) + "/" + the IPA name + "/<model>.json".
TUNING_FILE_ENV = "LIBCAMERA_RPI_TUNING_FILE"
CONFIG_PATH_ENV = "LIBCAMERA_IPA_CONFIG_PATH"
IPA_DIRS = ("rpi/vc4", "rpi/pisp")  # the Raspberry Pi IPA names (Pi 4 and older, Pi 5)


class Tunings:
    """The process's capped tunings, where libcamera finds them (one instance: :data:`TUNINGS`).

    libcamera reads a camera's tuning file once, when its CameraManager registers the camera
    (pipeline_base.cpp ``registerCamera`` -> ``CameraData::loadIPA`` -> ``configurationFile``), and
    picamera2 keeps one manager per process (``Picamera2._cm``: made on first use, kept by
    ``global_camera_info()``, dropped when the last open camera closes). A ``tuning=`` given to
    ``Picamera2`` after the manager exists is never read, and its temporary file is gone by the next
    manager, which then fails to register the camera. So the caps are files that live as long as
    the process, in a directory of its own (under ``$RUNTIME_DIRECTORY`` when systemd gives one),
    written before the manager that opens a camera is made.

    They are found through ``LIBCAMERA_IPA_CONFIG_PATH``, laid out as libcamera looks there
    (ipa_proxy.cpp ``ipaConfigurationFile``: ``<dir>/<IPA name>/<model>.json``, IPA names
    ``rpi/vc4`` and ``rpi/pisp``), not through ``LIBCAMERA_RPI_TUNING_FILE``: that one variable is
    built from the IPA name up to its first '/' ("RPI"), so it names one file for every Raspberry Pi
    camera of the process whatever its sensor, while the config path is searched per model, and a
    model camctl does not cap falls through to the system directories (its own tuning). The file is
    written under both IPA names: a board has one platform, ``load_tuning_file`` read that
    platform's tuning, and the other name is never looked up. ``LIBCAMERA_RPI_TUNING_FILE`` is
    removed (``Picamera2(tuning=None)`` does so too), since it would win over the path; a config
    path the user set stays, after camctl's directory.

    Every :class:`~camctl.board.cameras.picamera2.Picamera2Camera` registers at construction
    (weakly: a camera nobody holds is forgotten); an open writes the files for every registered
    camera of its picamera2 module whose model the listing shows, so the first open of the flight
    already has them all. Two cameras of one model share one tuning in a process: both get the
    stricter caps, with a warning naming both. Then, if no picamera2 camera is open in the process,
    picamera2's manager is made anew (``Picamera2._cm.reset()``: the listing made one before the
    files were written); with one open it cannot be (libcamera's singleton lives while an open
    camera holds it), and caps that manager did not read are named in ``unset_controls`` until
    every camera has closed. Opens are serialised by :attr:`lock` from the files to the
    ``Picamera2()``.
    """

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self._cameras: weakref.WeakSet[Picamera2Camera] = weakref.WeakSet()
        self._dir: Path | None = None
        # picamera2 module -> the caps its current manager read (known when camctl made it)
        self._read: weakref.WeakKeyDictionary[ModuleType, dict[str, Caps]] = \
            weakref.WeakKeyDictionary()

    def register(self, camera: Picamera2Camera) -> None:
        with self.lock:
            self._cameras.add(camera)

    def cameras(self) -> list[Picamera2Camera]:
        with self.lock:
            return list(self._cameras)

    def directory(self) -> Path:
        """The process's tuning directory (made on first use, removed at exit)."""
        with self.lock:
            if self._dir is None:
                runtime = (os.environ.get("RUNTIME_DIRECTORY") or "").split(":")[0] or None
                self._dir = Path(tempfile.mkdtemp(prefix="camctl-tuning-", dir=runtime))
                atexit.register(shutil.rmtree, self._dir, True)
            return self._dir

    def _wanted(self, camera: Picamera2Camera, listed: list[dict[str, Any]]) -> dict[str, Caps]:
        """Caps per model for every registered camera of ``camera``'s picamera2 module; two cameras
        of one model with different caps are warned about."""
        by_model: dict[str, tuple[Caps, list[Picamera2Camera]]] = {}
        peers = [c for c in self.cameras() if c._source is camera._source and c.index < len(listed)]
        for peer in sorted(peers, key=lambda c: (c.index, c.name)):
            model = str(listed[peer.index].get("Model", ""))
            caps = _caps(peer.controls)
            if model not in by_model:
                by_model[model] = (caps, [peer])  # type: ignore[assignment]
                continue
            have, who = by_model[model]
            who.append(peer)
            if caps != have:
                strict = _stricter(have or (None, None), caps or (None, None))
                by_model[model] = (strict, who)
                _log.warning("cameras %s are all %s and libcamera loads one tuning per sensor "
                             "model in a process: all run with the stricter caps (exposure_max_us "
                             "%s, analogue_gain_max %s)", ", ".join(repr(c.name) for c in who),
                             model, strict[0], strict[1])
        return {model: caps for model, (caps, _) in by_model.items() if caps is not None}

    def prepare(self, camera: Picamera2Camera, mod: ModuleType,
                listed: list[dict[str, Any]]) -> list[str]:
        """Before ``camera`` (of picamera2 module ``mod``, ``listed`` its listing) is opened, with
        :attr:`lock` held until the ``Picamera2()`` is made: the files written, the environment
        set, picamera2's manager made anew where none is open. What could not be set, one line
        each."""
        unset: list[str] = []
        wanted = self._wanted(camera, listed)
        root = self.directory()
        written: dict[str, Caps] = {}
        for model, caps in wanted.items():
            try:
                text = json.dumps(capped_tuning(mod, model, caps))
            except Exception as exc:
                unset.append(f"exposure_max_us/analogue_gain_max: no tuning for {model!r} ({exc})")
                continue
            for ipa in IPA_DIRS:
                path = root / ipa / f"{model}.json"
                path.parent.mkdir(parents=True, exist_ok=True)
                tmp = path.with_suffix(".tmp")
                tmp.write_text(text)
                tmp.replace(path)
            written[model] = caps
        for ipa in IPA_DIRS:  # a model no longer capped: its system tuning again
            for path in (root / ipa).glob("*.json"):
                if path.stem not in written:
                    path.unlink()
        ours = (os.environ.get(CONFIG_PATH_ENV, "").split(":")[0] == str(root)
                and not os.environ.get(TUNING_FILE_ENV))
        os.environ.pop(TUNING_FILE_ENV, None)
        paths = [p for p in os.environ.get(CONFIG_PATH_ENV, "").split(":") if p and p != str(root)]
        os.environ[CONFIG_PATH_ENV] = ":".join([str(root), *paths])
        _cm = mod.Picamera2._cm
        read = self._read.get(mod)
        if not _cm.cameras:
            # None open. The manager there (if any) was made by a listing: since the environment
            # and files were as now, or before (then the next Picamera2() must get a new one).
            if not ours or read != written:
                _cm.reset()
            self._read[mod] = written
        elif read != written:
            mine = str(listed[camera.index].get("Model", ""))
            if (read or {}).get(mine) != written.get(mine):
                unset.append("exposure_max_us/analogue_gain_max: not in effect until every camera "
                             "has closed (libcamera reads the tuning when its camera manager is "
                             "made, and another camera is open on the current one)")
        return unset


TUNINGS = Tunings()
"""The process's capped tunings (libcamera's tuning is per process)."""


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
