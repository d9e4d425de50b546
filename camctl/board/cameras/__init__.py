"""Camera backends behind one abstract base (:class:`camctl.board.cameras.base.Camera`).

``sim`` is the synthetic descent scene; ``picamera2`` drives real Raspberry Pi cameras through the
picamera2 module passed in (``picamera2=``; imported at open by default, so this package works
where libcamera is absent). :func:`make_camera` builds the backend the config names, never falling
back silently. ``camctl.testing.picamera2_double`` is a simulated picamera2 module (the strict test
double) that tests and the bench pass in; no config can select it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from camctl.board.cameras.base import Camera

if TYPE_CHECKING:
    from camctl.board.cameras.picamera2 import Picamera2Source
    from camctl.board.config import CameraConfig

__all__ = ["Camera", "make_camera"]


def make_camera(cfg: CameraConfig, *, seed: int = 0,
                picamera2: Picamera2Source | None = None) -> Camera:
    """Build (not open) the backend ``cfg.backend`` names for one configured camera.

    ``seed`` seeds the sim's scene; ``picamera2`` is the module (or a function returning it) that
    the picamera2 backend drives, default: the installed one, imported at open.
    """
    if cfg.backend == "sim":
        from camctl.board.cameras.sim import SimCamera

        return SimCamera.from_config(cfg, seed=seed)
    if cfg.backend == "picamera2":
        from camctl.board.cameras.picamera2 import Picamera2Camera

        if picamera2 is None:
            return Picamera2Camera.from_config(cfg)
        return Picamera2Camera.from_config(cfg, picamera2=picamera2)
    from camctl.exc import ConfigError

    raise ConfigError(f"unknown camera backend {cfg.backend!r} (expected 'sim' or 'picamera2')",
                      key=f"cameras.{cfg.name}.backend")
