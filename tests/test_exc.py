"""camctl.exc: the one home of camctl's exceptions, each formatting its own one-line message."""

from __future__ import annotations

import ast
import builtins
import pickle
from pathlib import Path

import pytest

import camctl
from camctl import exc
from camctl.ground import client

PKG = Path(camctl.__file__).parent
_EXCEPTION_NAMES = {n for n, v in vars(builtins).items()
                    if isinstance(v, type) and issubclass(v, BaseException)} | set(exc.__all__)


def _base_name(node: ast.expr) -> str:
    return node.attr if isinstance(node, ast.Attribute) else getattr(node, "id", "")


def test_every_public_exception_class_is_defined_in_exc():
    elsewhere = []
    for path in sorted(PKG.rglob("*.py")):
        if path == PKG / "exc.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (isinstance(node, ast.ClassDef) and not node.name.startswith("_")
                    and any(_base_name(b) in _EXCEPTION_NAMES for b in node.bases)):
                elsewhere.append(f"{path.relative_to(PKG.parent)}:{node.lineno} {node.name}")
    assert elsewhere == []


@pytest.mark.parametrize(("error", "line"), [
    (exc.ConfigError("bad", key="a.b", path="/x.toml"), "/x.toml: a.b: bad"),
    (exc.ConfigValueError("bad"), "bad"),
    (exc.CameraTimeout("cam0", "no frame"), "camera 'cam0': no frame"),
    (exc.StoreCorruptError("/s.mcap", "torn", 12), "/s.mcap at byte 12: torn"),
    (exc.StoreCorruptError("/s.mcap", "torn"), "/s.mcap: torn"),
    (exc.RecordError("phase", "t_ns", "is not an int"), "phase record: field 't_ns' is not an int"),
    (exc.ProtocolError("BAD_VERB", "x"), "BAD_VERB: x"),
    (exc.RemoteError("rig-a", "REFUSED", "armed"), "board rig-a: REFUSED: armed"),
    (exc.BoardTimeout("tcp://a:5555", "LIST", 5.0), "tcp://a:5555: no answer to LIST within 5 s"),
    (exc.LinkDropped("tcp://a:5555", "LIST", 5.0),
     "tcp://a:5555: link dropped while waiting for LIST"),
])
def test_an_error_with_fields_is_its_own_one_line_message(error: exc.CamctlError, line: str):
    assert (str(error), error.args) == (line, (line,))
    assert repr(error) == f"{type(error).__name__}({line!r})"
    assert error != type(error)(**vars(error))  # compared by identity, as exceptions are


def test_a_store_error_is_an_oserror_without_an_errno():
    err = exc.StoreCorruptError("/s.mcap", "torn", 3)
    assert isinstance(err, OSError)
    assert (err.errno, err.strerror, err.filename) == (None, None, None)


def test_a_config_error_survives_pickling_with_its_fields():
    err = pickle.loads(pickle.dumps(exc.ConfigError("bad", key="k", path="/p")))
    assert (err.message, err.key, err.path, str(err)) == ("bad", "k", "/p", "/p: k: bad")


def test_board_errors_keep_their_client_names_and_families():
    assert (client.BoardTimeout, client.LinkDropped, client.KeyRejected) == (
        exc.BoardTimeout, exc.LinkDropped, exc.KeyRejected)
    assert issubclass(exc.LinkDropped, TimeoutError) and issubclass(exc.KeyRejected, exc.FetchError)
