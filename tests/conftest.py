# --- the strict picamera2 double (camera backend tests; section owned by the cameras work) ---------
import pytest


@pytest.fixture
def picamera2_rig(request: pytest.FixtureRequest) -> "FakeRig":  # noqa: F821 (imported when used)
    """The strict picamera2 double: a :class:`~camctl.testing.picamera2_double.FakeRig` (one IMX708 on a
    board without the hardware JPEG encoder), its simulated module ``picamera2_rig.module`` to pass as
    ``picamera2=``. Another board: parametrize indirectly with FakeRig's keyword arguments, e.g.
    ``@pytest.mark.parametrize("picamera2_rig", [{"lens": False}], indirect=True)``."""
    from camctl.testing.picamera2_double import FakeRig

    return FakeRig(**getattr(request, "param", {}))
