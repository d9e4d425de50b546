"""camctl: best-effort EDL cameras for Raspberry Pi drop-test rigs.

The package owns nothing at import time: no camera, GPIO or network library is touched until a
backend is built, so ``import camctl`` works anywhere (no libcamera, no GPIO chip).
"""

__version__ = "0.1.0"
