"""The picamera2 backend: API conformance against the real picamera2 source (read with ast, never
imported: it needs libcamera), behaviour against tests/fake_picamera2.py, and one contract run over
sim + fake."""

from __future__ import annotations

import ast
import inspect
import itertools
import logging
import threading
import time
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import simplejpeg
from fake_picamera2 import RPI_IPA_AF_CONTROLS, RPI_IPA_CONTROLS, FakePicamera2, FakeRig
from fake_picamera2 import CameraManager as FakeCameraManager
from fake_picamera2 import CompletedRequest as FakeCompletedRequest
from fake_picamera2 import MappedArray as FakeMappedArray
from fake_picamera2 import MJPEGEncoder as FakeMJPEGEncoder
from fake_picamera2 import Output as FakeOutput
from fake_picamera2 import Quality as FakeQuality

import camctl.board.cameras.picamera2 as backend
from camctl.board.cameras import make_camera
from camctl.board.cameras.picamera2 import (
    CONTROLS_USED,
    HW_FORMAT,
    INSTALL_HINT,
    METADATA_USED,
    PICAMERA2_API_USED,
    QUEUE_FRAMES,
    Picamera2Camera,
)
from camctl.board.cameras.picamera2_formats import to_rgb
from camctl.board.cameras.picamera2_hardware import JpegQueue, quality_bucket
from camctl.board.cameras.sim import SimCamera
from camctl.board.capture import CameraRunner
from camctl.board.config import CameraConfig
from camctl.board.encode import EncoderPool, encode_jpeg
from camctl.common.frames import Frame
from camctl.exc import CameraError, CameraTimeout
from camctl.testing import realstack

# --- a) conformance with the installed picamera2 source -------------------------------------------


def _picamera2_dir() -> Path:
    # the pinned release's source, fetched once into the cache (camctl.testing.realstack): the
    # tests read it with ast and never import it, whatever picamera2 is installed (if any)
    return realstack.picamera2_source()


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
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                and node.value.id == "self" and isinstance(node.ctx, ast.Store)):
            found.add(node.attr)
    return found


def _class_attrs(cls: ast.ClassDef) -> set[str]:
    """Names assigned in the class body (enum members, class constants)."""
    return {t.id for node in cls.body if isinstance(node, ast.Assign) for t in node.targets
            if isinstance(t, ast.Name)}


def _params(fn: ast.FunctionDef) -> list[str]:
    a = fn.args
    return [p.arg for p in (*a.posonlyargs, *a.args, *a.kwonlyargs)]


def _signature(fn: ast.FunctionDef) -> tuple[list[str], list[str]]:
    """Parameter names and the source of their defaults: what an override must repeat exactly."""
    a = fn.args
    return _params(fn), [ast.unparse(d) for d in (*a.defaults, *(d for d in a.kw_defaults if d))]


# The picamera2 files whose classes the backend touches, and the module files its imports name.
API_FILES = ("picamera2.py", "request.py", "job.py", "encoders/encoder.py",
             "encoders/mjpeg_encoder.py", "outputs/output.py")
MODULE_FILES = {"module": "__init__.py", "module:encoders": "encoders/__init__.py",
                "module:encoders.mjpeg_encoder": "encoders/mjpeg_encoder.py",
                "module:outputs": "outputs/__init__.py"}


@pytest.fixture(scope="module")
def real_api() -> dict[str, ast.ClassDef]:
    root = _picamera2_dir()
    classes = {}
    for name in API_FILES:
        found = _classes(root / name)
        assert not set(found) & set(classes), f"class name clash in {name}"
        classes.update(found)
    return classes


def _module_names(path: Path) -> set[str]:
    """What ``from <module> import X`` can give: names imported, defined (class, def), assigned."""
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            names |= {alias.asname or alias.name for alias in node.names}
        elif isinstance(node, ast.ClassDef | ast.FunctionDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names |= {t.id for t in node.targets if isinstance(t, ast.Name)}
    return names


def test_api_table_matches_picamera2_source(real_api):
    root = _picamera2_dir()
    for key, used in PICAMERA2_API_USED.items():
        if key.startswith("module"):
            exported = _module_names(root / MODULE_FILES[key])
            for name in used:
                assert name.removeprefix("attr:") in exported, (
                    f"picamera2 {key} does not provide {name}")
    for cls_name, used in PICAMERA2_API_USED.items():
        if cls_name.startswith("module"):
            continue
        cls = real_api[cls_name]
        methods = _methods(cls)
        for method, kwargs in used.items():
            if method.startswith("attr:"):
                assert method[5:] in _self_attrs(cls) | _class_attrs(cls), \
                    f"{cls_name}.{method[5:]} is not set in the source"
                continue
            assert method in methods, f"{cls_name}.{method} does not exist in picamera2"
            params = _params(methods[method])
            for kw in kwargs:
                assert kw in params, f"{cls_name}.{method} has no parameter {kw!r} (has {params})"
    # Positional: configure(config), set_controls(dict), make_array(name), switch_mode...(config).
    pc = _methods(real_api["Picamera2"])
    assert _params(pc["configure"])[1] == "camera_config"
    assert _params(pc["set_controls"])[1] == "controls"
    assert _params(pc["switch_mode_and_capture_request"])[1] == "camera_config"
    assert _params(_methods(real_api["CompletedRequest"])["make_array"])[1] == "name"
    # start_recording(encoder, output, quality=...): the first two positionally.
    assert _params(pc["start_recording"])[1:3] == ["encoder", "output"]


def test_hardware_encoder_facts_in_picamera2_source(real_api):
    """The facts the hardware path's design rests on (module docstring), pinned to the source."""
    root = _picamera2_dir()
    # The bare name is the software encoder off VC4: hence the import from mjpeg_encoder.
    init = (root / "encoders/__init__.py").read_text()
    assert "from .libav_mjpeg_encoder import LibavMjpegEncoder as MJPEGEncoder" in init
    assert "_hw_encoder_available = get_platform() == Platform.VC4" in init
    # The V4L2 class refuses to construct off VC4 (what "auto" relies on).
    init_fn = _methods(real_api["MJPEGEncoder"])["__init__"]
    raises = [ast.unparse(n.exc) for n in ast.walk(init_fn) if isinstance(n, ast.Raise)]
    assert raises == ["RuntimeError('Hardware MJPEG not available on this platform')"]
    assert [b.id for b in real_api["MJPEGEncoder"].bases] == ["V4L2Encoder"]
    # The main-stream format we give the hardware encoder is one V4L2Encoder maps.
    v4l2 = _classes(root / "encoders/v4l2_encoder.py")["V4L2Encoder"]
    fmt_fn = next(n for n in ast.walk(v4l2)
                  if isinstance(n, ast.FunctionDef) and n.name == "_v4l2_format")
    table = next(n.value for n in ast.walk(fmt_fn) if isinstance(n, ast.Assign))
    assert HW_FORMAT in {k.value for k in table.keys}
    # Output timestamps are µs relative to the first frame: ts(µs) - firsttimestamp.
    ts_src = ast.unparse(_methods(real_api["Encoder"])["_timestamp"])
    assert "/ 1000" in ts_src and "timestamp_us = ts - self.firsttimestamp" in ts_src
    assert "self.firsttimestamp = None" in ast.unparse(_methods(real_api["Encoder"])["start"])
    # Encoder.outputframe hands every output the five arguments positionally.
    out_src = ast.unparse(_methods(real_api["Encoder"])["outputframe"])
    assert "out.outputframe(frame, keyframe, timestamp, packet, audio)" in out_src
    # The Quality buckets exist (MJPEGEncoder maps them onto a bitrate table).
    setup_src = ast.unparse(_methods(real_api["MJPEGEncoder"])["_setup"])
    for member in PICAMERA2_API_USED["Quality"]:
        assert f"Quality.{member.removeprefix('attr:')}" in setup_src
    # A still needs recording stopped: process_requests hands each request to every encoder.
    pr_src = ast.unparse(_methods(real_api["Picamera2"])["process_requests"])
    assert "encoder.encode(encoder.name, req)" in pr_src


def test_lores_facts_in_picamera2_source(real_api):
    """What the lores path (module docstring) rests on, pinned to the source."""
    root = _picamera2_dir()
    pc = _methods(real_api["Picamera2"])
    # create_video_configuration takes lores=, defaults it to YUV420 and aligns its size to even.
    video = ast.unparse(pc["create_video_configuration"])
    assert "{'format': 'YUV420', 'size': main['size'], 'preserve_ar': False}, lores)" in video
    assert "self.align_stream(lores, optimal=False)" in video
    assert "align = 2" in ast.unparse(pc["align_stream"])
    # The default video colour spaces are the limited-range ones (hence the range expansion).
    assert "Smpte170m()" in video and "Rec709()" in video
    # Pi 4: the lores stream must be YUV, and never larger than main.
    check = ast.unparse(pc["check_camera_config"])
    assert ("lores stream must be YUV" in check
            and "lores stream dimensions may not exceed main stream" in check)
    # configure puts the real stride back into the stream config; stream_configuration returns it.
    assert ("stream_config['stride'] = libcamera_stream_config.stride"
            in ast.unparse(pc["_update_stream_config"]))
    assert ast.unparse(pc["stream_configuration"]).endswith("return self.camera_config[name]")
    # make_array of a YUV420 stream: (h * 3 // 2, stride), padding kept, a copy (safe after release)
    helpers = _classes(root / "request.py")["Helpers"]
    shared = ast.unparse(_methods(helpers)["_make_array_shared"])
    assert "image = array.reshape((h * 3 // 2, stride))" in shared
    assert "np.copy(array)" in ast.unparse(_methods(helpers)["make_array"])
    # picamera2's own YUV420 -> JPEG path splits the planes as split_i420 does (chroma stride / 2).
    save = ast.unparse(_methods(real_api["CompletedRequest"])["save"])
    assert "reshaped = m.array.reshape((m.array.shape[0] * 2, m.array.strides[0] // 2))" in save
    assert "U = reshaped[2 * height:2 * height + height // 2, :width // 2]" in save


def test_controls_and_metadata_names_exist_in_picamera2_source():
    root = _picamera2_dir()
    # "FrameRate" is not a libcamera control: picamera2 (controls.py) maps it to FrameDurationLimits
    controls = ast.parse((root / "controls.py").read_text())
    virtual = set()
    for node in ast.walk(controls):
        if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "_VIRTUAL_FIELDS_MAP_"
                                                 for t in node.targets):
            virtual = {k.value for k in node.value.keys}
    assert "FrameRate" in virtual
    # The other controls are libcamera's, advertised by the Raspberry Pi IPA (cited in the fake,
    # which refuses any name it does not advertise, as picamera2's Controls does); picamera2 itself
    # sets AfMode by name.
    for name in CONTROLS_USED:
        assert name in virtual or name in RPI_IPA_CONTROLS | RPI_IPA_AF_CONTROLS, name
    assert '"AfMode"' in (root / "picamera2.py").read_text()
    # Metadata keys are libcamera control names; libcamera is not installed here, so the honest
    # check is that picamera2 itself reads them (as strings or libcamera.controls attributes).
    # FrameDuration is not read by picamera2: it is libcamera core metadata, and the backend treats
    # every key as optional.
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
RECEIVERS = {"mod": "module", "_mod": "module", "Picamera2": "Picamera2", "_picam2": "Picamera2",
             "picam2": "Picamera2", "request": "CompletedRequest", "job": "Job",
             "encoder": "Encoder", "_hw_encoder": "Encoder", "Quality": "Quality",
             "mapped": "MappedArray", "_cm": "CameraManager",
             "encoders": "module:encoders", "mjpeg_encoder": "module:encoders.mjpeg_encoder",
             "outputs": "module:outputs"}


def _backend_tree() -> ast.Module:
    """The picamera2 backend's modules (``picamera2.py``, its ``picamera2_*.py`` parts) as one."""
    files = sorted(Path(backend.__file__).parent.glob("picamera2*.py"))
    assert Path(backend.__file__) in files
    body = [node for f in files for node in ast.parse(f.read_text()).body]
    return ast.Module(body=body, type_ignores=[])


def test_backend_uses_only_what_the_table_declares():
    tree = _backend_tree()
    seen: set[tuple[str, str]] = set()
    calls = {id(n.func): n for n in ast.walk(tree) if isinstance(n, ast.Call)}
    for node in ast.walk(tree):
        if not isinstance(node, ast.Attribute):
            continue
        recv = node.value
        recv_name = (recv.id if isinstance(recv, ast.Name)
                     else recv.attr if isinstance(recv, ast.Attribute) else None)
        if recv_name not in RECEIVERS:
            continue
        cls = RECEIVERS[recv_name]
        table = PICAMERA2_API_USED[cls]
        call = calls.get(id(node))
        if call is None:  # plain attribute (or a method passed around, e.g. picam2.stop in a tuple)
            assert node.attr in table or f"attr:{node.attr}" in table, (
                f"{recv_name}.{node.attr} undeclared")
        else:
            assert node.attr in table, (
                f"{recv_name}.{node.attr}() is not in PICAMERA2_API_USED[{cls!r}]")
            # a class called through the module is its constructor: the keywords are its __init__'s
            ctor = cls == "module" and node.attr in PICAMERA2_API_USED
            allowed = PICAMERA2_API_USED[node.attr]["__init__"] if ctor else table[node.attr]
            for kw in call.keywords:
                assert kw.arg in allowed, f"{recv_name}.{node.attr}({kw.arg}=) undeclared"
            if ctor:
                seen.add((node.attr, "__init__"))
        seen.add((cls, node.attr))
    # picamera2 is passed in: nothing is imported from it by name; its submodules are read from
    # the module given (``submodule(mod, "<sub>")``, declared as "module:<sub>"), the names read
    # from them are declared there (checked above). Calling one is its constructor (keywords
    # checked against its __init__); subclassing Output overrides outputframe exactly.
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            assert not (node.module or "").startswith("picamera2"), f"import from {node.module}"
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "submodule":
            assert "module:" + node.args[1].value in PICAMERA2_API_USED, ast.unparse(node)
    imported = {name for key, name in seen if key.startswith("module:")}
    assert imported == {"MJPEGEncoder", "Quality", "Output"}
    subclasses = {n.name: n for n in ast.walk(tree) if isinstance(n, ast.ClassDef)
                  and any(isinstance(b, ast.Name) and b.id == "Output" for b in n.bases)}
    assert list(subclasses) == ["_JpegHandOff"]
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            ctors = {"MJPEGEncoder": "MJPEGEncoder", **{k: "Output" for k in subclasses}}
            cls = ctors.get(node.func.id)
            if cls is not None:
                for kw in node.keywords:
                    assert kw.arg in PICAMERA2_API_USED[cls]["__init__"], (
                        f"{node.func.id}({kw.arg}=) undeclared")
                seen.add((cls, "__init__"))
    for sub in subclasses.values():
        for name in _methods(sub):
            assert name in PICAMERA2_API_USED["Output"], f"override Output.{name} undeclared"
            seen.add(("Output", name))
    # And the table lists nothing the backend does not use (apart from the constructor entry).
    declared = {(c, m.removeprefix("attr:")) for c, t in PICAMERA2_API_USED.items() for m in t}
    assert declared - seen - {("Picamera2", "__init__")} == set()
    # Controls set: every dict literal key passed to set_controls / controls= is declared.
    for node in ast.walk(tree):
        if isinstance(node, ast.Dict):
            for key in node.keys:
                if (isinstance(key, ast.Constant)
                        and key.value in ("FrameRate", "FrameDurationLimits")):
                    assert key.value in CONTROLS_USED


def test_output_override_matches_the_real_signature_exactly(real_api):
    tree = _backend_tree()
    ours = next(n for n in ast.walk(tree)
                if isinstance(n, ast.ClassDef) and n.name == "_JpegHandOff")
    real = _methods(real_api["Output"])["outputframe"]
    assert _signature(_methods(ours)["outputframe"]) == _signature(real)
    assert _signature(real) == (["self", "frame", "keyframe", "timestamp", "packet", "audio"],
                                ["True", "None", "None", "False"])


def _fake_signature(fn) -> tuple[list[str], list[str]]:
    code = fn.__code__
    return list(code.co_varnames[:code.co_argcount]), [repr(d) for d in (fn.__defaults__ or ())]


def test_fake_follows_the_real_signatures(real_api):
    fakes = {"Picamera2": FakePicamera2, "MJPEGEncoder": FakeMJPEGEncoder, "Output": FakeOutput,
             "CompletedRequest": FakeCompletedRequest, "MappedArray": FakeMappedArray,
             "CameraManager": FakeCameraManager}
    for cls_name, fake_cls in fakes.items():
        real = _methods(real_api[cls_name])
        for name in PICAMERA2_API_USED[cls_name]:
            if (name in ("global_camera_info", "camera_controls", "array")
                    or name.startswith("attr:")):
                # staticmethod in picamera2, classmethod on the fake (it needs the rig); properties
                continue
            fake_params, fake_defaults = _fake_signature(getattr(fake_cls, name))
            real_params, real_defaults = _signature(real[name])
            assert fake_params == real_params, (cls_name, name, fake_params, real_params)
            # (the Picamera2 fake predates defaults checks; names suffice there)
            if cls_name != "Picamera2":
                assert fake_defaults == real_defaults, (
                    cls_name, name, fake_defaults, real_defaults)
    real_quality = {t.id: node.value.value for node in real_api["Quality"].body
                    if isinstance(node, ast.Assign) for t in node.targets}
    assert {m.name: m.value for m in FakeQuality} == real_quality


# --- b) behaviour with a fake picamera2 -----------------------------------------------------------

def cam(rig: FakeRig, **kw) -> Picamera2Camera:
    """A camera of ``rig``'s simulated picamera2."""
    kw.setdefault("picamera2", rig.module)
    kw.setdefault("size", (64, 48))
    kw.setdefault("fps", 10.0)
    return Picamera2Camera("pi", **kw)


def give_back(*frames: Frame) -> None:
    """What the capture runner does when done with a frame's pixels: release a lent frame, once."""
    for frame in frames:
        if frame.release is not None:
            frame.release()


def take(c: Picamera2Camera, still: bool = False, **kw) -> Frame:
    """The next frame (or still), given back at once: for tests of its fields, not its pixels."""
    frame = c.capture_still(**kw) if still else c.capture(**kw)
    give_back(frame)
    return frame


def _no_picamera2() -> ModuleType:
    raise ModuleNotFoundError("No module named 'picamera2'", name="picamera2")


def test_import_works_without_picamera2_and_open_says_how_to_install():
    # by default the installed picamera2 is imported at open, not at import or construction
    default = inspect.signature(Picamera2Camera).parameters["picamera2"].default
    assert default is backend.import_picamera2
    c = Picamera2Camera("pi", size=(64, 48), fps=10.0, picamera2=_no_picamera2)
    with pytest.raises(CameraError) as err:
        c.open()
    assert INSTALL_HINT in str(err.value)
    assert ("sudo apt install python3-picamera2" in str(err.value)
            and "--system-site-packages" in str(err.value))
    assert c.closed
    c.close()


def test_open_capture_set_fps_close(rig):
    c = cam(rig, fps=10.0, sensor_fps=50.0)
    with c:
        picam2 = rig.instances[0]
        main = picam2.camera_config["main"]
        assert main["format"] == "BGR888" and main["size"] == (64, 48)
        # the sensor runs at the flight's highest
        assert picam2.camera_config["controls"]["FrameRate"] == 50.0
        assert picam2.camera_config["queue"] is True  # picamera2_requests.QUEUE, measured
        frame = c.capture()
        assert frame.image.shape == (48, 64, 3) and (frame.width, frame.height) == (64, 48)
        assert (frame.exposure_us == 20000 and frame.analogue_gain == 6.0
                and frame.frame_duration_us == 20_000)
        c.set_fps(25.0)  # thinning only: nothing is sent to the sensor
        assert rig.controls == []
        a, b = c.capture(), c.capture()
        assert b.timestamp_ns - a.timestamp_ns == pytest.approx(40e6, abs=1e6)
        assert b.seq == a.seq + 1
        give_back(frame, a, b)
    assert not picam2.started and not picam2.is_open
    assert rig.outstanding == 0
    c.close()
def test_red_stays_red_through_jpeg(rig):
    rig.colour = (255, 0, 0)
    with cam(rig) as c:
        frame = c.capture()
        jpeg = simplejpeg.encode_jpeg(frame.image, quality=90, colorspace="RGB")
        give_back(frame)
    decoded = simplejpeg.decode_jpeg(jpeg)
    r, g, b = decoded.reshape(-1, 3).mean(axis=0)
    assert r > 200 and g < 40 and b < 40


@pytest.mark.parametrize("fmt", ["RGB888", "BGR888", "XBGR8888", "XRGB8888"])
def test_to_rgb_handles_each_memory_order(fmt):
    rgb = np.array([[[10, 20, 30]]], dtype=np.uint8)
    mem = {"BGR888": rgb, "RGB888": rgb[..., ::-1], "XBGR8888": np.dstack([rgb, [[255]]]),
           "XRGB8888": np.dstack([rgb[..., ::-1], [[255]]])}[fmt]
    assert to_rgb(np.ascontiguousarray(mem), fmt).tolist() == [[[10, 20, 30]]]


def test_seq_counts_lost_frames_not_thinned_ones_and_never_goes_back(rig):
    c = cam(rig, fps=100.0)
    with c:
        a = take(c)
        rig.drop_next = 3  # the sensor drops three frames
        b = take(c)
        assert b.seq == a.seq + 4
        assert b.timestamp_ns > a.timestamp_ns
        c.set_fps(25.0)  # thinned to every 4th sensor frame: no gaps
        seqs = [take(c).seq for _ in range(4)]
        assert seqs == list(range(b.seq + 1, b.seq + 5))
    c.set_fps(100.0)
    with c:  # a restarted sensor counts from scratch; seq does not
        d = take(c)
        assert d.seq == seqs[-1] + 1
        still = take(c, still=True)
        # the video's main stream, no mode switch
        assert still.still and still.image.shape == (48, 64, 3)
        after = take(c)  # the still's frame was due for the video: it comes again, as video
        assert (not after.still and after.seq == still.seq == d.seq + 1
                and after.timestamp_ns == still.timestamp_ns)
        assert take(c).seq == after.seq + 1
    assert rig.outstanding == 0 and rig.mode_switches == 0
def test_stall_times_out_and_leaks_no_request(rig):
    with cam(rig) as c:
        take(c)
        rig.stalled = True
        with pytest.raises(CameraTimeout, match=r"no frame within 0\.05 s"):
            c.capture(timeout_s=0.05)
        # the job finishes just as it is cancelled: its request must be released
        rig.complete_late = True
        with pytest.raises(CameraTimeout):
            c.capture(timeout_s=0.05)
        assert rig.outstanding == 0
        rig.stalled = rig.complete_late = False
        take(c)
        with pytest.raises(CameraTimeout):
            rig.stalled = True
            c.capture_still(timeout_s=0.05)
    assert rig.outstanding == 0


def test_libcamera_error_maps_to_camera_error_and_a_dead_sensor_times_out(rig):
    c = cam(rig)
    with c:
        rig.fail_with = RuntimeError("libcamera: dequeue failed")
        with pytest.raises(CameraError, match="dequeue failed") as err:
            c.capture()
        assert type(err.value) is CameraError
        rig.unplug()  # a loose CSI cable: the camera stays listed, nothing completes
        with pytest.raises(CameraTimeout, match="stays listed: check its cable"):
            c.capture(timeout_s=0.05)
    assert c.closed
    c.open()  # it opens (libcamera still lists it) and still delivers nothing
    with pytest.raises(CameraTimeout):
        c.capture(timeout_s=0.05)
    c.close()
    assert rig.outstanding == 0
def test_missing_index_is_a_clear_error(rig):
    c = cam(rig, index=3)
    with pytest.raises(CameraError, match=r"no camera at index 3 \(found 0: imx708\)"):
        c.open()
    assert c.closed and rig.instances == []


def test_failed_start_closes_the_device(rig):
    rig.fail_start = RuntimeError("Failed to start camera")
    c = cam(rig)
    with pytest.raises(CameraError, match="Failed to start camera"):
        c.open()
    assert c.closed and not rig.instances[0].is_open


def pi_model_file(tmp_path: Path, model: str) -> Path:
    path = tmp_path / "model"
    path.write_bytes(model.encode() + b"\0")
    return path


def test_hardware_on_a_pi5_is_a_clear_error_and_auto_uses_software(rig, tmp_path, caplog):
    pi5 = pi_model_file(tmp_path, "Raspberry Pi 5 Model B Rev 1.0")
    c = cam(rig, encoder="hardware", model_path=pi5)
    with pytest.raises(CameraError, match=r"this board \(Raspberry Pi 5 Model B Rev 1\.0\) has no "
                                          r"hardware JPEG encoder \(Hardware MJPEG not available "
                                          r"on this platform\); use encoder"):
        c.open()
    assert c.closed and rig.recordings_started == 0 and not rig.instances
    caplog.set_level(logging.INFO, logger=backend.__name__)
    c = cam(rig, encoder="auto", model_path=pi5)
    for _ in range(2):  # the choice is logged once, not at every reopen
        with c:
            frame = take(c, timeout_s=5.0)
            assert frame.image is not None and frame.jpeg is None
    assert c.encoder_in_use == "software" and rig.recordings_started == 0
    chosen = [r.getMessage() for r in caplog.records if "encoder 'auto'" in r.getMessage()]
    assert chosen == ["camera 'pi': encoder 'auto' uses software JPEG (simplejpeg): this board "
                      "(Raspberry Pi 5 Model B Rev 1.0) has no hardware JPEG encoder "
                      "(Hardware MJPEG not available on this platform)"]
    assert caplog.records[0].levelno == logging.INFO
    with pytest.raises(CameraError, match="'jpeg'"):
        cam(rig, encoder="jpeg")


def test_hardware_error_names_the_failure_off_a_pi5(rig, tmp_path):
    pi4 = pi_model_file(tmp_path, "Raspberry Pi 4 Model B Rev 1.5")
    with pytest.raises(CameraError, match=r"V4L2 MJPEGEncoder is unavailable: "
                                          r"RuntimeError\('Hardware MJPEG not"):
        cam(rig, encoder="hardware", model_path=pi4).open()


def test_auto_picks_hardware_when_it_constructs(hw_rig, caplog):
    caplog.set_level(logging.INFO, logger=backend.__name__)
    with cam(hw_rig, encoder="auto") as c:
        frame = c.capture(timeout_s=5.0)
        assert frame.jpeg is not None and frame.image is None
    assert c.encoder_in_use == "hardware"
    assert [r.getMessage() for r in caplog.records] == [
        "camera 'pi': encoder 'auto' uses the hardware JPEG encoder (picamera2 V4L2 MJPEGEncoder)"]


def test_full_stills_on_auto_resolved_to_hardware_are_video_size_and_said_once(hw_rig, caplog):
    """A mode switch would feed full-resolution buffers to the recording V4L2 encoder: 'auto' that
    chose it takes stills from the running stream, with one warning for the camera's life."""
    caplog.set_level(logging.WARNING, logger=backend.__name__)
    c = cam(hw_rig, encoder="auto", still_size="full")
    assert c.full_stills  # not resolved yet: the software path may run
    for _ in range(2):
        with c:
            still = c.capture_still(timeout_s=5.0)
            assert not c.full_stills
    assert not still.mode_switch and (still.width, still.height) == (64, 48)
    assert hw_rig.mode_switches == 0 and hw_rig.recordings_stopped == hw_rig.recordings_started
    assert [r.getMessage() for r in caplog.records] == [
        "camera 'pi': encoder 'auto' chose the hardware encoder, which cannot take a mode switch "
        "while it records: stills are video-size (64x48), not still_size 'full'"]


def test_full_stills_on_the_hardware_encoder_or_of_no_known_size_are_refused(rig):
    with pytest.raises(CameraError, match="still_size 'full' needs a mode switch, which the "
                                          "hardware encoder's recording cannot take"):
        cam(rig, encoder="hardware", still_size="full")
    with pytest.raises(CameraError, match="still_size must be 'video' or 'full', got 'max'"):
        cam(rig, still_size="max")


def test_auto_does_not_switch_encoder_between_opens(hw_rig):
    c = cam(hw_rig, encoder="auto")
    with c:
        assert c.capture(timeout_s=5.0).jpeg is not None
    # the codec went away (driver unloaded): refuse rather than change silently
    hw_rig.hardware_jpeg = False
    with pytest.raises(CameraError, match="'auto' chose hardware at the first open but now"):
        c.open()
    assert c.closed


def test_hardware_frame_size_is_what_the_codec_encoded(hw_rig):
    hw_rig.adjust_size = (96, 48)  # libcamera adjusted the requested 64x48
    with cam(hw_rig, encoder="hardware") as c:
        frame = c.capture(timeout_s=5.0)
    assert (frame.width, frame.height) == (96, 48)


def test_software_stays_software_on_a_hardware_board(hw_rig):
    with cam(hw_rig, encoder="software") as c:
        assert take(c, timeout_s=5.0).image is not None
    assert (hw_rig.recordings_started == 0
            and hw_rig.instances[0].camera_config["main"]["format"] == "BGR888")


def test_hardware_delivers_jpegs_with_absolute_monotonic_time_and_rising_seq(hw_rig):
    hw_rig.colour = (255, 0, 0)
    c = cam(hw_rig, encoder="hardware", fps=100.0, jpeg_quality=85)
    before = time.monotonic_ns()
    with c:
        picam2 = hw_rig.instances[0]
        main = picam2.camera_config["main"]
        assert main["format"] == "YUV420" and main["size"] == (64, 48)
        assert picam2.camera_config["controls"]["FrameRate"] == 100.0
        assert picam2.camera_config["buffer_count"] == backend.BUFFER_COUNT
        assert hw_rig.recording_quality is FakeQuality.HIGH  # 85 -> HIGH
        frames = [c.capture(timeout_s=5.0) for _ in range(5)]
        after = time.monotonic_ns()
    assert hw_rig.recordings_started == hw_rig.recordings_stopped == 1
    stamps = [f.timestamp_ns for f in frames]
    # firsttimestamp + relative µs, back in ns: monotonic clock, µs resolution, never going back.
    assert before - 1000 <= stamps[0] and stamps[-1] <= after
    assert all(b > a for a, b in itertools.pairwise(stamps)) and all(t % 1000 == 0 for t in stamps)
    seqs = [f.seq for f in frames]
    assert all(b > a for a, b in itertools.pairwise(seqs))
    # consecutive unless the queue overflowed (a slow machine)
    assert seqs[-1] - seqs[0] - 4 <= c.hw_dropped
    assert c.thinned == 0
    for f in frames:
        assert f.image is None and (f.width, f.height) == (64, 48) and not f.still
        assert f.frame_duration_us == 10000 and f.exposure_us == 0 and f.analogue_gain == 1.0
        rgb = simplejpeg.decode_jpeg(f.jpeg)
        assert rgb.shape == (48, 64, 3)
        r, g, b = rgb.reshape(-1, 3).mean(axis=0)
        assert r > 200 and g < 40 and b < 40
    with c:  # seq keeps increasing across reopen
        assert c.capture(timeout_s=5.0).seq > frames[-1].seq


@pytest.mark.parametrize(("quality", "bucket"), [(1, "VERY_LOW"), (40, "VERY_LOW"), (41, "LOW"),
                                                 (60, "LOW"), (80, "MEDIUM"), (90, "HIGH"),
                                                 (91, "VERY_HIGH"), (100, "VERY_HIGH")])
def test_jpeg_quality_maps_onto_a_quality_bucket(quality, bucket):
    assert quality_bucket(FakeQuality, quality) is FakeQuality[bucket]


def test_full_queue_drops_the_oldest_and_leaves_a_seq_gap():
    q = JpegQueue(3, first_seq=10)
    for i in range(5):
        q.put(b"j%d" % i, 1000 + i)
    assert q.dropped == 2
    assert [q.get(1.0) for _ in range(3)] == [(12, 1002, b"j2"), (13, 1003, b"j3"),
                                              (14, 1004, b"j4")]


def test_hardware_slow_consumer_counts_drops_as_gaps(hw_rig):
    c = cam(hw_rig, encoder="hardware", fps=500.0)
    with c:
        first = c.capture(timeout_s=5.0)
        # the queue overflows meanwhile
        assert hw_rig.wait_fed(hw_rig.frames_fed + QUEUE_FRAMES + 3)
        nxt = c.capture(timeout_s=5.0)
    assert nxt.seq - first.seq - 1 >= 3 and c.hw_dropped >= 3


def test_hardware_stall_times_out_and_a_dead_sensor_too(hw_rig):
    c = cam(hw_rig, encoder="hardware", fps=100.0)
    with c:
        c.capture(timeout_s=5.0)
        hw_rig.stalled = True
        while True:  # drain what was encoded before the stall
            try:
                c.capture(timeout_s=0.05)
            except CameraTimeout as exc:
                assert "no MJPEG frame within 0.05 s" in str(exc)
                break
        hw_rig.stalled = False
        c.capture(timeout_s=5.0)
        hw_rig.unplug()
        with pytest.raises(CameraTimeout, match="no MJPEG frame"):
            while True:
                c.capture(timeout_s=0.05)
    assert c.closed and hw_rig.recordings_stopped == hw_rig.recordings_started == 1
    assert not hw_rig.instances[0].is_open
def test_close_stops_recording_then_closes(hw_rig):
    c = cam(hw_rig, encoder="hardware")
    c.open()
    picam2 = hw_rig.instances[0]
    assert picam2._encoders and picam2.started
    c.close()
    c.close()
    assert hw_rig.recordings_started == hw_rig.recordings_stopped == 1
    assert not picam2._encoders and not picam2.started and not picam2.is_open
    assert picam2._feeder is None


def test_failed_hardware_start_is_cleaned_up(hw_rig):
    hw_rig.fail_start = RuntimeError("Failed to start camera")
    c = cam(hw_rig, encoder="hardware")
    with pytest.raises(CameraError, match="Failed to start camera"):
        c.open()
    assert c.closed and not hw_rig.instances[0].is_open
    # stop_recording ran on the way out
    assert hw_rig.recordings_stopped == hw_rig.recordings_started == 1


def test_hardware_still_comes_from_the_running_stream_and_recording_goes_on(hw_rig):
    c = cam(hw_rig, encoder="hardware", fps=100.0)
    with c:
        before = c.capture(timeout_s=5.0)
        fed = hw_rig.frames_fed
        still = c.capture_still(timeout_s=5.0)
        assert still.still and still.jpeg is None and still.image is None
        y, u, v = still.yuv420
        assert y.shape == (48, 64) and u.shape == v.shape == (24, 32)
        assert (hw_rig.recordings_started == 1 and hw_rig.recordings_stopped == 0
                and hw_rig.mode_switches == 0)
        assert hw_rig.wait_fed(fed + 3)  # the encoder never stopped
        frames = []
        while not frames or frames[-1].timestamp_ns <= still.timestamp_ns:
            frames.append(c.capture(timeout_s=5.0))
        assert frames[-1].jpeg is not None and frames[-1].timestamp_ns > before.timestamp_ns
        stamps = [before.timestamp_ns] + [f.timestamp_ns for f in frames]
        # no hole in the video
        assert max(b - a for a, b in itertools.pairwise(stamps[-3:])) < 2 * 10e6 + 1e6
    assert hw_rig.recordings_stopped == 1 and hw_rig.outstanding == 0
def test_hardware_still_timeout_leaks_nothing(hw_rig):
    with cam(hw_rig, encoder="hardware", fps=100.0) as c:
        c.capture(timeout_s=5.0)
        hw_rig.stalled = True
        with pytest.raises(CameraTimeout):
            c.capture_still(timeout_s=0.05)
    assert hw_rig.recordings_started == hw_rig.recordings_stopped == 1 and hw_rig.outstanding == 0
def test_runner_stores_hardware_jpegs_without_the_encoder_pool(hw_rig):
    from camctl.board.capture import CameraRunner

    class NoPool:
        submitted = 0

        def submit(self, *a, **kw):
            NoPool.submitted += 1
            raise AssertionError("the encoder pool was used for a hardware JPEG")

    stored = []
    got = threading.Event()

    def sink(ef):
        stored.append(ef)
        if len(stored) >= 5:
            got.set()
        return True

    cfg = CameraConfig(name="pi", role="down", index=0, size=(64, 48), encoder="hardware",
                       fps=(("ARMED", 200.0), ("DESCENT", 200.0)), pretrigger_s=0.0,
                       lores_size=(32, 24), lores_phases=("DESCENT",))
    camera = Picamera2Camera.from_config(cfg, picamera2=hw_rig.module)
    runner = CameraRunner(camera, cfg, NoPool(), sink)  # type: ignore[arg-type]
    runner.start()
    try:
        runner.set_phase("DESCENT")
        assert got.wait(10.0), runner.snapshot()
    finally:
        runner.stop()
    assert NoPool.submitted == 0
    for ef in stored[:5]:
        # no lores decimation of a JPEG
        assert ef.phase == "DESCENT" and (ef.width, ef.height) == (64, 48)
        assert simplejpeg.decode_jpeg_header(ef.jpeg)[:2] == (48, 64)
    seqs = [ef.seq for ef in stored]
    assert seqs == sorted(seqs)
    assert hw_rig.recordings_started == hw_rig.recordings_stopped >= 1


def test_from_config_and_repr(rig):
    cfg = CameraConfig(name="side", role="side", index=0, size=(64, 48), fps=(("ARMED", 2.0),),
                       encoder="software")
    c = Picamera2Camera.from_config(cfg, picamera2=rig.module)
    assert c.fps == 2.0 and c.index == 0 and c.encoder == "software"
    assert "closed" in repr(c) and "index=0" in repr(c)
    with c:
        assert "open" in repr(c)
        assert rig.instances[0].camera_config["controls"]["FrameRate"] == 2.0


def test_make_camera_drives_the_picamera2_module_passed_in(rig):
    cfg = CameraConfig(name="pi", backend="picamera2", size=(64, 48), encoder="software")
    with make_camera(cfg, picamera2=rig.module) as c:
        take(c)
    assert len(rig.instances) == 1 and not rig.instances[0].is_open
    opened: list[ModuleType] = []

    def factory() -> ModuleType:
        opened.append(rig.module)
        return rig.module

    c = make_camera(cfg, picamera2=factory)
    assert opened == []  # a function is called at open, not when the camera is built
    with c:
        take(c)
    assert opened == [rig.module] and len(rig.instances) == 2


# --- contract over both backends ------------------------------------------------------------------
@pytest.fixture(params=["sim", "fake-picamera2"])
def any_camera(request):
    if request.param == "sim":
        return SimCamera("c", size=(64, 48), fps=200.0, seed=1)
    rig = request.getfixturevalue("picamera2_rig")
    return Picamera2Camera("c", size=(64, 48), fps=200.0, picamera2=rig.module)


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
    frames.append(c.capture(timeout_s=2.0))
    assert frames[-1].seq > seqs[-1]
    # lent pixels (Frame.release) only while the camera has buffers to spare: the rest are copies
    lent = sum(f.release is not None for f in frames)
    assert lent <= getattr(c, "lend_limit", 0) < len(frames)
    assert not isinstance(c, Picamera2Camera) or lent == c.lend_limit
    give_back(*frames)
    c.close()
    c.close()
    assert c.closed


# --- c) lent frames: the request buffer itself, given back by Frame.release -----------------------
# The lending tests run at 50 fps in the 120 fps sensor mode: the vertical blanking outlasts the
# ISP, so the one request capture() itself holds for a moment never costs a frame. (At the mode's
# top rate a capture thread late by more than a few ms would: tests/test_picamera2_strict.py.)
LEND_FPS = 50.0


def test_lends_at_most_buffer_count_minus_three_and_copies_beyond(rig):
    c = cam(rig, fps=LEND_FPS)
    with c:
        # a consumer that gives nothing back
        frames = [c.capture() for _ in range(backend.BUFFER_COUNT)]
        lent = [f for f in frames if f.release is not None]
        assert len(lent) == c.lend_limit == backend.BUFFER_COUNT - 3 and frames[:len(lent)] == lent
        assert c.lent == c.lend_limit and rig.arrays_mapped == c.lend_limit
        assert (c.frames_lent, c.frames_copied) == (c.lend_limit, 3)
        assert rig.outstanding == c.lend_limit  # the copies gave their requests back at once
        assert rig.starved == 0 and [f.seq for f in frames] == sorted({f.seq for f in frames})
        lent[0].release()
        assert c.lent == c.lend_limit - 1 and rig.released == rig.created - c.lend_limit + 1
        lent[0].release()  # a second call gives back nothing more (never a double request.release)
        assert rig.released == rig.created - c.lend_limit + 1
        nxt = c.capture()  # a buffer came back: lending resumes
        assert nxt.release is not None
        give_back(nxt, *lent[1:])
        assert c.lent == 0 and rig.outstanding == 0
    assert rig.closed_while_held == 0 and rig.starved == 0


def test_a_consumer_holding_frames_costs_copies_not_sensor_frames(rig):
    held: list[Frame] = []
    with cam(rig, fps=LEND_FPS) as c:
        # keeps the last 8 frames (more than the camera has buffers), reads each once
        for _ in range(30):
            held.append(c.capture())
            if len(held) > 8:
                give_back(held.pop(0))
        assert c.frames_lent >= c.lend_limit and c.frames_copied > 0
        give_back(*held)
    assert rig.starved == 0 and rig.outstanding == 0


def test_a_lent_frame_is_a_read_only_view_of_the_request_buffer(rig):
    rig.colour = (10, 200, 30)
    with cam(rig) as c:
        frame = c.capture()
        assert frame.image.shape == (48, 64, 3) and frame.image[5, 7].tolist() == [10, 200, 30]
        with pytest.raises(ValueError, match="read-only"):
            frame.image[0, 0] = 0
        assert not frame.image.flags.owndata and frame.release is not None
        frame.release()
        # the request went back to libcamera, which refills its buffer: a view, not a copy, saw that
        assert rig.recycled == rig.created and frame.image[5, 7].tolist() == [rig.pad_value] * 3


def test_still_and_its_video_twin_each_release_their_own_reference(rig):
    with cam(rig, fps=100.0) as c:
        still = c.capture_still()
        # the still's frame was due for the video: the same buffer, another reference
        twin = c.capture()
        assert still.still and not twin.still and twin.seq == still.seq
        assert (still.release is not None and twin.release is not None
                and still.release is not twin.release)
        assert c.lent == 1 and np.shares_memory(still.image, twin.image)  # one buffer, one loan
        still.release()
        # still the twin's
        assert rig.outstanding == 1 and twin.image[0, 0].tolist() == list(rig.colour)
        twin.release()
        assert rig.outstanding == 0 and c.lent == 0
        pending = c.capture_still()  # a twin nobody takes before close is given back by close
        pending.release()
    assert rig.outstanding == 0 and rig.closed_while_held == 0


def test_a_copied_still_shares_its_copy_with_the_twin(rig):
    c = cam(rig, fps=100.0)
    c.lend_limit = 0  # no buffer to spare: every frame is a copy
    with c:
        still = c.capture_still()
        twin = c.capture()
        assert still.release is None and twin.release is None and twin.seq == still.seq
        assert rig.outstanding == 0 and c.frames_copied == 1 and rig.arrays_mapped == 0


def test_formats_that_need_a_conversion_give_the_request_back_at_once(rig, monkeypatch):
    monkeypatch.setattr(backend, "MAIN_FORMAT", "RGB888")  # B, G, R in memory: to_rgb must copy
    rig.colour = (10, 200, 30)
    with cam(rig) as c:
        frame = c.capture()
        assert frame.release is None and rig.outstanding == 0 and rig.arrays_mapped == 1
        assert (frame.image[0, 0].tolist() == [10, 200, 30] and c.frames_copied == 1
                and c.frames_lent == 0)


def test_close_waits_for_lent_frames_before_freeing_their_buffers(rig):
    c = cam(rig, fps=100.0)
    c.open()
    picam2 = rig.instances[0]
    frame = c.capture()
    threading.Timer(0.2, frame.release).start()  # an encoder thread finishing
    t0 = time.monotonic()
    c.close()
    assert time.monotonic() - t0 >= 0.15  # it waited for the frame
    assert (not picam2.is_open and rig.closed_while_held == 0 and rig.outstanding == 0
            and c.deferred_closes == 0)


def test_close_leaves_the_camera_open_while_lent_frames_are_out(rig, caplog):
    c = cam(rig, fps=100.0)
    c.loan_wait_s = 0.05
    c.open()
    picam2 = rig.instances[0]
    frame = c.capture()
    with caplog.at_level(logging.WARNING, logger=backend.__name__):
        c.close()
    assert c.closed and picam2.is_open and not picam2.started  # stopped, not freed under the reader
    assert c.deferred_closes == 1 and "1 lent frame(s) not given back within 0.05 s" in caplog.text
    assert frame.image[0, 0].tolist() == list(rig.colour)  # still its frame
    # still acquired: a reopen fails (the runner retries)
    with pytest.raises(CameraError, match="in use"):
        c.open()
    frame.release()  # the last loan back: now the camera is closed
    assert not picam2.is_open and rig.closed_while_held == 0 and rig.outstanding == 0
    with c:  # and it opens again
        take(c)
    assert rig.outstanding == 0


class SlowPool(EncoderPool):
    """The real pool with a slow encode: frames wait in the pool, holding their pixels."""

    def __init__(self, delay_s: float) -> None:
        super().__init__(1)
        self.delay_s = delay_s

    def submit(self, image, quality=85, *, colorspace="RGB", value=2):
        def slow(*args, **kw):
            time.sleep(self.delay_s)
            return encode_jpeg(*args, **kw)

        return self.run(slow, image, quality, colorspace=colorspace, value=value)


def test_a_slow_encoder_costs_copies_never_sensor_frames_and_every_loan_comes_back(rig):
    rig.colour = (0, 0, 255)
    cfg = CameraConfig(name="pi", size=(64, 48), encoder="software", pretrigger_s=0.0,
                       fps=(("ARMED", LEND_FPS), ("DESCENT", LEND_FPS)), stills=("separation",))
    camera = Picamera2Camera.from_config(cfg, picamera2=rig.module)
    pool, stored = SlowPool(0.03), []
    runner = CameraRunner(camera, cfg, pool, lambda f: stored.append(f) or True)
    runner.start()
    try:
        runner.set_phase("DESCENT")
        runner.request_still("separation")  # a still and its video twin: two frames of one request
        deadline = time.monotonic() + 30
        while (camera.frames_copied < 3 or len(stored) < 10 or not any(f.still for f in stored)) \
                and time.monotonic() < deadline:
            assert camera.lent <= camera.lend_limit
            time.sleep(0.01)
    finally:
        runner.stop()
        pool.close()
    assert (camera.frames_lent >= camera.lend_limit and camera.frames_copied >= 3
            and any(f.still for f in stored))
    assert rig.starved == 0  # the sensor always had buffers: a slow encoder cost copies, not frames
    # every loan given back once
    assert rig.outstanding == 0 and camera.lent == 0 and rig.closed_while_held == 0
    # lent pixels were encoded before their buffer went back (a recycled one reads 0xEE grey)
    for f in stored:
        r, g, b = simplejpeg.decode_jpeg(f.jpeg).reshape(-1, 3).mean(axis=0)
        assert b > 200 and r < 40 and g < 40, (f.seq, r, g, b)


def test_boot_camera_check_gives_its_lent_frame_back(rig, tmp_path):
    """The daemon's boot check takes one frame and closes the camera: a frame it kept would leave
    the camera acquired (close defers), and the runner could not open it at ARM."""
    from camctl.board.config import parse_config
    from camctl.board.daemon import Daemon
    from camctl.board.sdnotify import Notifier

    cfg = parse_config({
        "board": "rig-p", "store": {"dir": str(tmp_path / "store")}, "gpio": {"backend": "mock"},
        "cameras": [{"name": "down", "role": "down", "backend": "picamera2", "size": [64, 48],
                     "encoder": "software", "fps": {"ARMED": 10, "DESCENT": 30}}],
        "publish": {"bind": "tcp://127.0.0.1:*", "events": "tcp://127.0.0.1:*"}})
    camera = Picamera2Camera.from_config(cfg.cameras[0], picamera2=rig.module)
    camera.loan_wait_s = 0.05
    d = Daemon(cfg, notifier=Notifier(environ={}), cameras={"down": camera})
    try:
        d.fleet.check(d.recorder.log_record)
        assert d.unavailable == {} and camera.frames_lent == 1 and camera.deferred_closes == 0
        assert not rig.instances[0].is_open and rig.outstanding == 0
    finally:
        d.close()


def test_a_failed_mapping_is_a_camera_error_and_lends_nothing(rig, monkeypatch):
    picamera2 = rig.module

    class Unmappable(picamera2.MappedArray):
        def __enter__(self):
            raise RuntimeError("failed to find buffer in DmaSync")

    with cam(rig) as c:
        monkeypatch.setattr(picamera2, "MappedArray", Unmappable)
        with pytest.raises(CameraError, match="failed to find buffer"):
            c.capture()
        assert c.lent == 0 and rig.outstanding == 0
        monkeypatch.undo()
        take(c)
    assert rig.outstanding == 0
