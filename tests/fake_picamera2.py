"""The strict picamera2 double for tests: it lives in :mod:`camctl.testing.picamera2_double` (the
bench uses it too); this module keeps the tests' imports short."""

from camctl.testing.picamera2_double import (  # noqa: F401
    CODEC_MAX,
    CODEC_MIN,
    RPI_IPA_AF_CONTROLS,
    RPI_IPA_CONTROLS,
    CameraManager,
    CompletedRequest,
    FakePicamera2,
    FakeRig,
    MappedArray,
    MJPEGEncoder,
    Output,
    Quality,
    video_yuv,
)
