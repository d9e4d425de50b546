"""The picamera2 backend: API conformance against the real picamera2 source (read with ast, never imported:
it needs libcamera), behaviour against tests/fake_picamera2.py, and one contract run over sim + fake."""

from __future__ import annotations

import ast
import importlib.util
import itertools
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import simplejpeg

import camctl.cameras.picamera2 as backend
from camctl.cameras.picamera2 import (
    CONTROLS_USED,
    INSTALL_HINT,
    METADATA_USED,
    PICAMERA2_API_USED,
    Picamera2Camera,
)
from camctl.cameras.sim import SimCamera
from camctl.config import CameraConfig
from camctl.exc import CameraDisconnected, CameraError, CameraTimeout

sys.path.insert(0, str(Path(__file__).parent))
from fake_picamera2 import FakePicamera2, FakeRig, make_fake_picamera2

# --- a) conformance with the installed picamera2 source ---------------------------------------------


def _picamera2_dir() -> Path:
    # find_spec on a top-level package locates it without executing it (checked below: the module is not
    # in sys.modules afterwards), which matters because importing picamera2 needs libcamera.
    spec = importlib.util.find_spec("picamera2")
    if spec is None or not spec.submodule_search_locations:
        reason = "picamera2 is not installed (pip install --no-deps picamera2)"
        if os.environ.get("CI"):
            pytest.fail(reason + ": required in CI")
        pytest.skip(reason)
    assert "picamera2" not in sys.modules or not hasattr(sys.modules["picamera2"], "__file__")
    return Path(next(iter(spec.submodule_search_locations)))


def _classes(path: Path) -> dict[str, ast.ClassDef]:
    return {n.name: n for n in ast.walk(ast.parse(path.read_text())) if isinstance(n, ast.ClassDef)}


def _methods(cls: ast.ClassDef) -> dict[str, ast.FunctionDef]:
    """The last definition of each method (after typing.overload stubs)."""
    out: dict[str, ast.FunctionDef] = {}
    for node in cls.body:
        if isinstance(node, ast.FunctionDef):
            out[node.name] = node
    return out


def _self_attrs(cls: ast.ClassDef) -> set[str]:
    found = set()
    for node in ast.walk(cls):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "self" \
                and isinstance(node.ctx, ast.Store):
            found.add(node.attr)
    return found


def _params(fn: ast.FunctionDef) -> list[str]:
    a = fn.args
    return [p.arg for p in (*a.posonlyargs, *a.args, *a.kwonlyargs)]


@pytest.fixture(scope="module")
def real_api() -> dict[str, ast.ClassDef]:
    root = _picamera2_dir()
    classes = {}
    for name in ("picamera2.py", "request.py", "job.py"):
        classes.update(_classes(root / name))
    return classes


def test_find_spec_does_not_import_picamera2():
    _picamera2_dir()
    assert "picamera2" not in sys.modules


def test_api_table_matches_picamera2_source(real_api):
    root = _picamera2_dir()
    init = ast.parse((root / "__init__.py").read_text())
    exported = {alias.asname or alias.name for node in ast.walk(init) if isinstance(node, ast.ImportFrom)
                for alias in node.names}
    for name in PICAMERA2_API_USED["module"]:
        assert name.removeprefix("attr:") in exported, f"picamera2 does not export {name}"
    for cls_name, used in PICAMERA2_API_USED.items():
        if cls_name == "module":
            continue
        cls = real_api[cls_name]
        methods = _methods(cls)
        for method, kwargs in used.items():
            if method.startswith("attr:"):
                assert method[5:] in _self_attrs(cls), f"{cls_name}.{method[5:]} is not set in the source"
                continue
            assert method in methods, f"{cls_name}.{method} does not exist in picamera2"
            params = _params(methods[method])
            for kw in kwargs:
                assert kw in params, f"{cls_name}.{method} has no parameter {kw!r} (has {params})"
    # Positional use: configure(config), set_controls(dict), make_array(name), switch_mode...(config).
    pc = _methods(real_api["Picamera2"])
    assert _params(pc["configure"])[1] == "camera_config"
    assert _params(pc["set_controls"])[1] == "controls"
    assert _params(pc["switch_mode_and_capture_request"])[1] == "camera_config"
    assert _params(_methods(real_api["CompletedRequest"])["make_array"])[1] == "name"


def test_controls_and_metadata_names_exist_in_picamera2_source():
    root = _picamera2_dir()
    # "FrameRate" is not a libcamera control: picamera2 maps it onto FrameDurationLimits in controls.py.
    controls = ast.parse((root / "controls.py").read_text())
    virtual = set()
    for node in ast.walk(controls):
        if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "_VIRTUAL_FIELDS_MAP_"
                                                 for t in node.targets):
            virtual = {k.value for k in node.value.keys}
    for name in CONTROLS_USED:
        assert name in virtual, f"control {name!r} is not a picamera2 control"
    # Metadata keys are libcamera control names; libcamera is not installed here, so the honest check is
    # that picamera2 itself reads them (as strings or libcamera.controls attributes). FrameDuration is not
    # read by picamera2: it is libcamera core metadata, and the backend treats every key as optional.
    names = set()
    for path in root.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                names.add(node.value)
            elif isinstance(node, ast.Attribute):
                names.add(node.attr)
    for name in METADATA_USED:
        if name == "FrameDuration":
            assert "FrameDurationLimits" in names
            continue
        assert name in names, f"metadata {name!r} is not used anywhere in picamera2"


# Names the backend gives picamera2 objects, and the API class each stands for.
RECEIVERS = {"mod": "module", "_mod": "module", "Picamera2": "Picamera2", "_picam2": "Picamera2", "picam2": "Picamera2",
             "request": "CompletedRequest", "job": "Job"}


def test_backend_uses_only_what_the_table_declares():
    tree = ast.parse(Path(backend.__file__).read_text())
    seen: set[tuple[str, str]] = set()
    calls = {id(n.func): n for n in ast.walk(tree) if isinstance(n, ast.Call)}
    for node in ast.walk(tree):
        if not isinstance(node, ast.Attribute):
            continue
        recv = node.value
        recv_name = recv.id if isinstance(recv, ast.Name) else recv.attr if isinstance(recv, ast.Attribute) \
            else None
        if recv_name not in RECEIVERS:
            continue
        cls = RECEIVERS[recv_name]
        table = PICAMERA2_API_USED[cls]
        call = calls.get(id(node))
        if call is None:  # plain attribute (or a method passed around, e.g. picam2.stop in a tuple)
            assert node.attr in table or f"attr:{node.attr}" in table, f"{recv_name}.{node.attr} undeclared"
        else:
            assert node.attr in table, f"{recv_name}.{node.attr}() is not in PICAMERA2_API_USED[{cls!r}]"
            allowed = PICAMERA2_API_USED["Picamera2"]["__init__"] if node.attr == "Picamera2" \
                else table[node.attr]  # the constructor's keywords are Picamera2.__init__'s
            for kw in call.keywords:
                assert kw.arg in allowed, f"{recv_name}.{node.attr}({kw.arg}=) undeclared"
        seen.add((cls, node.attr))
    # And the table lists nothing the backend does not use (apart from the constructor entry).
    declared = {(c, m.removeprefix("attr:")) for c, t in PICAMERA2_API_USED.items() for m in t}
    assert declared - seen - {("Picamera2", "__init__")} == set()
    # Controls set: every dict literal key passed to set_controls / controls= is declared.
    for node in ast.walk(tree):
        if isinstance(node, ast.Dict):
            for key in node.keys:
                if isinstance(key, ast.Constant) and key.value in ("FrameRate", "FrameDurationLimits"):
                    assert key.value in CONTROLS_USED


def test_fake_follows_the_real_signatures(real_api):
    real = _methods(real_api["Picamera2"])
    for name in PICAMERA2_API_USED["Picamera2"]:
        fake_fn = getattr(FakePicamera2, name)
        fake_params = list(fake_fn.__code__.co_varnames[:fake_fn.__code__.co_argcount])
        real_params = _params(real[name])
        if name == "global_camera_info":
            continue  # staticmethod in picamera2, classmethod on the fake (it needs the rig)
        assert fake_params == real_params, (name, fake_params, real_params)


# --- b) behaviour with a fake picamera2 -------------------------------------------------------------
@pytest.fixture
def rig(monkeypatch) -> FakeRig:
    rig = FakeRig()
    monkeypatch.setitem(sys.modules, "picamera2", make_fake_picamera2(rig))
    return rig


def cam(**kw) -> Picamera2Camera:
    kw.setdefault("size", (64, 48))
    kw.setdefault("fps", 10.0)
    return Picamera2Camera("pi", **kw)


def test_import_works_without_picamera2_and_open_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "picamera2", None)  # import picamera2 -> ImportError
    c = cam()
    with pytest.raises(CameraError) as err:
        c.open()
    assert INSTALL_HINT in str(err.value)
    assert "sudo apt install python3-picamera2" in str(err.value) and "--system-site-packages" in str(err.value)
    assert c.closed
    c.close()


def test_open_capture_set_fps_close(rig):
    c = cam(fps=10.0)
    with c:
        picam2 = rig.instances[0]
        assert picam2.camera_config["main"] == {"format": "BGR888", "size": (64, 48)}
        assert picam2.camera_config["controls"] == {"FrameRate": 10.0}
        frame = c.capture()
        assert frame.image.shape == (48, 64, 3) and (frame.width, frame.height) == (64, 48)
        assert frame.exposure_us == 9000 and frame.analogue_gain == 2.0 and frame.frame_duration_us == 100_000
        c.set_fps(25.0)
        assert rig.controls[-1] == {"FrameRate": 25.0}
        assert c.capture().frame_duration_us == 40_000
    assert not picam2.started and not picam2.is_open
    assert rig.outstanding == 0
    c.close()


def test_red_stays_red_through_jpeg(rig):
    rig.colour = (255, 0, 0)
    with cam() as c:
        frame = c.capture()
    decoded = simplejpeg.decode_jpeg(simplejpeg.encode_jpeg(frame.image, quality=90, colorspace="RGB"))
    r, g, b = decoded.reshape(-1, 3).mean(axis=0)
    assert r > 200 and g < 40 and b < 40


@pytest.mark.parametrize("fmt", ["RGB888", "BGR888", "XBGR8888", "XRGB8888"])
def test_to_rgb_handles_each_memory_order(fmt):
    rgb = np.array([[[10, 20, 30]]], dtype=np.uint8)
    mem = {"BGR888": rgb, "RGB888": rgb[..., ::-1], "XBGR8888": np.dstack([rgb, [[255]]]),
           "XRGB8888": np.dstack([rgb[..., ::-1], [[255]]])}[fmt]
    assert backend._to_rgb(np.ascontiguousarray(mem), fmt).tolist() == [[[10, 20, 30]]]


def test_seq_follows_sensor_sequence_with_gaps_and_never_goes_back(rig):
    c = cam()
    with c:
        a = c.capture()
        rig.drop_next = 3
        b = c.capture()
        assert b.seq == a.seq + 4
        assert b.timestamp_ns > a.timestamp_ns
    rig.sequence = 0  # a restarted sensor counts from scratch
    with c:
        d = c.capture()
        assert d.seq == b.seq + 1
        still = c.capture_still()
        assert still.still and still.seq == d.seq + 1 and still.image.shape == (480, 640, 3)
        after = c.capture()
        assert after.seq == still.seq + 1 and after.image.shape == (48, 64, 3)
    assert rig.outstanding == 0


def test_stall_times_out_and_leaks_no_request(rig):
    with cam() as c:
        c.capture()
        rig.stalled = True
        with pytest.raises(CameraTimeout, match=r"0\.05"):
            c.capture(timeout_s=0.05)
        rig.complete_late = True  # the job finishes just as it is cancelled: its request must be released
        with pytest.raises(CameraTimeout):
            c.capture(timeout_s=0.05)
        assert rig.outstanding == 0
        rig.stalled = rig.complete_late = False
        c.capture()
        with pytest.raises(CameraTimeout):
            rig.stalled = True
            c.capture_still(timeout_s=0.05)
    assert rig.outstanding == 0


def test_libcamera_error_maps_to_camera_error_and_unplug_to_disconnected(rig):
    c = cam()
    with c:
        rig.fail_with = RuntimeError("libcamera: dequeue failed")
        with pytest.raises(CameraError, match="dequeue failed") as err:
            c.capture()
        assert type(err.value) is CameraError
        rig.fail_with = RuntimeError("device lost")
        rig.unplug()
        with pytest.raises(CameraDisconnected):
            c.capture()
    assert c.closed
    with pytest.raises(CameraDisconnected, match="no camera at index 0"):
        c.open()
    assert rig.outstanding == 0


def test_missing_index_is_a_clear_error(rig):
    c = cam(index=3)
    with pytest.raises(CameraError, match=r"no camera at index 3 \(found 0: imx708\)"):
        c.open()
    assert c.closed and rig.instances == []


def test_failed_start_closes_the_device(rig):
    rig.fail_start = RuntimeError("Failed to start camera")
    c = cam()
    with pytest.raises(CameraError, match="Failed to start camera"):
        c.open()
    assert c.closed and not rig.instances[0].is_open


def test_hardware_encoder_is_refused_clearly(rig, tmp_path):
    pi5 = tmp_path / "model"
    pi5.write_bytes(b"Raspberry Pi 5 Model B Rev 1.0\0")
    with pytest.raises(CameraError, match="no hardware JPEG encoder"):
        cam(encoder="hardware", model_path=pi5).open()
    pi4 = tmp_path / "model4"
    pi4.write_bytes(b"Raspberry Pi 4 Model B Rev 1.5\0")
    with pytest.raises(CameraError, match="not supported yet"):
        cam(encoder="hardware", model_path=pi4).open()
    with cam(encoder="auto", model_path=pi5) as c:
        assert c.capture().image is not None
    with pytest.raises(CameraError, match="'jpeg'"):
        cam(encoder="jpeg")


def test_from_config_and_repr(rig):
    cfg = CameraConfig(name="side", role="side", index=0, size=(64, 48), fps=(("ARMED", 2.0),), encoder="software")
    c = Picamera2Camera.from_config(cfg)
    assert c.fps == 2.0 and c.index == 0 and c.encoder == "software"
    assert "closed" in repr(c) and "index=0" in repr(c)
    with c:
        assert "open" in repr(c)
        assert rig.instances[0].camera_config["controls"] == {"FrameRate": 2.0}


# --- contract over both backends --------------------------------------------------------------------
@pytest.fixture(params=["sim", "fake-picamera2"])
def any_camera(request, monkeypatch):
    if request.param == "sim":
        return SimCamera("c", size=(64, 48), fps=200.0, seed=1)
    rig = FakeRig()
    monkeypatch.setitem(sys.modules, "picamera2", make_fake_picamera2(rig))
    return Picamera2Camera("c", size=(64, 48), fps=200.0)


def test_contract(any_camera):
    c = any_camera
    assert c.closed
    c.open()
    assert not c.closed
    frames = [c.capture(timeout_s=2.0) for _ in range(5)]
    seqs = [f.seq for f in frames]
    stamps = [f.timestamp_ns for f in frames]
    assert seqs == sorted(set(seqs))
    assert all(b > a for a, b in itertools.pairwise(stamps))
    for f in frames:
        assert f.camera == "c" and f.image.shape == (48, 64, 3) and f.image.dtype == np.uint8
    c.set_fps(100.0)
    assert c.fps == 100.0
    assert c.capture(timeout_s=2.0).seq > seqs[-1]
    c.close()
    c.close()
    assert c.closed
