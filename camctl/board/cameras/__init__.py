"""Camera backends behind one abstract base (:class:`camctl.board.cameras.base.Camera`).

``sim`` is the synthetic descent scene; ``picamera2`` drives real Raspberry Pi cameras and is imported
lazily, so this package works where libcamera is absent. :func:`open_camera` picks the backend the config
names and never falls back silently. ``picamera2_double`` is a simulated picamera2 (the strict test double,
shipped because ``camctl bench`` measures the camera path on it); no config can select it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from camctl.board.cameras.base import Camera

if TYPE_CHECKING:
    from camctl.board.config import CameraConfig

__all__ = ["Camera", "make_camera"]


def make_camera(cfg: CameraConfig, *, seed: int = 0) -> Camera:
    """Build (not open) the backend ``cfg.backend`` names for one configured camera."""
    if cfg.backend == "sim":
        from camctl.board.cameras.sim import SimCamera

        return SimCamera.from_config(cfg, seed=seed)
    if cfg.backend == "picamera2":
        from camctl.board.cameras.picamera2 import Picamera2Camera

        return Picamera2Camera.from_config(cfg)
    from camctl.exc import ConfigError

    raise ConfigError(f"unknown camera backend {cfg.backend!r} (expected 'sim' or 'picamera2')",
                      key=f"cameras.{cfg.name}.backend")
