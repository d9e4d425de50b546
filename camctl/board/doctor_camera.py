"""`camctl doctor`'s camera checks: picamera2 importable, the configured cameras detected, and each
one opened for a second at its size, flight rate, encoder and controls (the achieved rate and
whatever could not be set are reported). Results are :class:`camctl.board.doctor.Check` lines;
every contact with the machine goes through :class:`camctl.board.doctor.Probes`.
"""

from __future__ import annotations

import itertools
import re
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from camctl.board.config import CameraConfig, Config
    from camctl.board.doctor import Check, Probes
    from camctl.common.frames import Frame

__all__ = ["check_picamera2"]

_STILLS_FOR_METADATA = 3  # requests read for exposure and gain on the hardware (MJPEG) path

_APT_PICAMERA2 = ("sudo apt install python3-picamera2, "
                  "and make the venv with --system-site-packages "
                  "(python3 -m venv --system-site-packages /opt/camctl/venv)")


def _in_isolated_venv() -> bool:
    if sys.prefix == sys.base_prefix:
        return False
    cfg = Path(sys.prefix) / "pyvenv.cfg"
    try:
        text = cfg.read_text()
    except OSError:
        return False
    return re.search(r"(?m)^include-system-site-packages\s*=\s*true", text) is None


def check_picamera2(cfg: Config | None, probes: Probes) -> list[Check]:
    """picamera2 importable, the configured cameras detected, each one run as it will fly."""
    from camctl.board.doctor import FAIL, OK, Check

    indexes = sorted({c.index for c in cfg.cameras if c.backend == "picamera2"}) if cfg else [0]
    if cfg is not None and not indexes:
        return [Check("picamera2", OK, "not needed (no camera uses backend 'picamera2')")]
    try:
        module = probes.import_module("picamera2")
    except ImportError as exc:
        fix = _APT_PICAMERA2
        if _in_isolated_venv():
            fix += (f"; this venv ({sys.prefix}) does not see system packages: "
                    "recreate it with that flag")
        missing = getattr(exc, "name", None) or "picamera2"
        if missing == "libcamera":
            return [Check("picamera2", FAIL, "picamera2 is installed but libcamera's Python "
                                             f"bindings are not ({exc}); "
                                             "a pip-installed picamera2 cannot provide them",
                          f"{fix}; then `pip uninstall picamera2` inside the venv "
                          "so the apt one is used")]
        return [Check("picamera2", FAIL, f"cannot import picamera2 ({exc})", fix)]
    checks = [Check("picamera2", OK, f"importable from {getattr(module, '__file__', '?')}")]
    try:
        info = list(module.Picamera2.global_camera_info())
    except Exception as exc:  # libcamera errors are not a documented type
        checks.append(Check("cameras", FAIL, f"Picamera2.global_camera_info() failed: {exc}",
                            "check `rpicam-hello --list-cameras` and the ribbon; "
                            "see hardware/cameras.md"))
        return checks
    found = ", ".join(f"{i}: {c.get('Model', '?')}" for i, c in enumerate(info)) or "none"
    names = ({c.index: c.name for c in cfg.cameras if c.backend == "picamera2"} if cfg
             else {0: "(default)"})
    missing_idx = [i for i in indexes if i >= len(info)]
    if missing_idx:
        want = ", ".join(f"{i} ({names[i]})" for i in missing_idx)
        checks.append(Check("cameras", FAIL, f"configured camera index {want} not detected; "
                                             f"detected: {found}",
                            "re-seat the ribbon (contacts facing the right way), "
                            "check camera_auto_detect=1 "
                            "or the dtoverlay= line in /boot/firmware/config.txt, then "
                            "`rpicam-hello --list-cameras`"))
    else:
        checks.append(Check("cameras", OK,
                            f"detected {found}; configured indexes {indexes} present"))
    if cfg is not None:
        checks += [_probe_camera(c, probes) for c in cfg.cameras
                   if c.backend == "picamera2" and c.index < len(info)]
    return checks


def _caps_broken(cfg: CameraConfig, exposures: list[tuple[int, float]]) -> list[str]:
    """Exposure and gain caps checked against request metadata ``(exposure_us, gain)``."""
    out = []
    cap_us, cap_gain = cfg.controls.exposure_max_us, cfg.controls.analogue_gain_max
    seen_us = max((e for e, _ in exposures), default=0)
    seen_gain = max((g for e, g in exposures if e > 0), default=0.0)
    if cap_us is not None and seen_us > cap_us * 1.05:
        out.append(f"exposures up to {seen_us} us, over exposure_max_us = {cap_us}")
    if cap_gain is not None and seen_gain > cap_gain * 1.05:
        out.append(f"analogue gain up to {seen_gain:g}, over analogue_gain_max = {cap_gain:g}")
    return out


def _exposure(frame: Frame) -> tuple[int, float]:
    """A frame's exposure (µs) and gain; its lent pixels are given back (only metadata is read)."""
    if frame.release is not None:
        frame.release()
    return frame.exposure_us, frame.analogue_gain


def _probe_camera(cfg: CameraConfig, probes: Probes) -> Check:
    """Open one camera as the flight will (size, encoder, controls) at its highest rate for
    ``probes.camera_seconds``; report the rate the sensor achieved and what could not be set."""
    from camctl.board.doctor import FAIL, OK, WARN, Check

    name = f"camera {cfg.name}"
    target = cfg.sensor_fps()
    what = f"{cfg.size[0]}x{cfg.size[1]} at {target:g} fps"
    stamps: list[int] = []
    durations: list[int] = []
    exposures: list[tuple[int, float]] = []
    try:
        camera = probes.make_camera(cfg)
        camera.set_fps(target)  # every sensor frame: the sensor's own rate is what is measured
        with camera:
            hardware = getattr(camera, "encoder_in_use", "") == "hardware"
            wait_s = max(1.0, 3.0 / target)
            deadline = time.monotonic() + probes.camera_seconds
            while time.monotonic() < deadline or len(stamps) < 2:
                frame = camera.capture(timeout_s=wait_s)
                stamps.append(frame.timestamp_ns)
                durations.append(frame.frame_duration_us)
                exposure = _exposure(frame)
                if not hardware:
                    exposures.append(exposure)
            # An MJPEG frame carries no exposure or gain (the encoder output has timestamps only):
            # read them from requests (stills of the running stream), after the AGC settled.
            for _ in range(_STILLS_FOR_METADATA if hardware else 0):
                exposures.append(_exposure(camera.capture_still(timeout_s=max(2.0, wait_s))))
    except Exception as exc:  # CameraError or a backend bug: either way this camera cannot fly
        return Check(name, FAIL, f"{what}: {exc}",
                     "see hardware/cameras.md; `rpicam-hello --list-cameras`")
    span_s = (stamps[-1] - stamps[0]) / 1e9
    delivered = (len(stamps) - 1) / span_s if span_s > 0 else 0.0
    encoder = getattr(camera, "encoder_in_use", "") or cfg.encoder
    mode = getattr(camera, "sensor_mode_in_use", None)
    if mode is not None:
        encoder += f", sensor mode {mode[0]}x{mode[1]}"
    # The sensor's rate is its frame duration (libcamera metadata). MJPEG frames carry only the
    # nominal one: there it is the median step between their sensor timestamps (every sensor frame
    # is encoded). A delivered rate below the sensor's is this process being late.
    median = sorted(durations)[len(durations) // 2]
    steps = sorted(b - a for a, b in itertools.pairwise(stamps))
    step = steps[len(steps) // 2]
    if hardware:
        achieved = 1e9 / step if step > 0 else 0.0
    else:
        achieved = delivered if median <= 0 else 1e6 / median
    detail = (f"{what}, encoder {encoder}: sensor {achieved:.1f} fps achieved, "
              f"{delivered:.1f} fps delivered over {len(stamps)} frames")
    problems = [f"could not set {line}" for line in getattr(camera, "unset_controls", [])]
    problems += _caps_broken(cfg, exposures)
    if achieved < 0.9 * target:
        problems.append(f"only {achieved:.1f} of {target:g} fps "
                        "(the sensor mode's limit or a busy CPU)")
    if not problems:
        return Check(name, OK, detail)
    return Check(name, WARN, f"{detail}; {'; '.join(problems)}",
                 "lower [cameras.fps] or pick a faster [cameras.controls] sensor_mode; "
                 "drop controls this camera does not have")
