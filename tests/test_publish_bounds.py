"""The publisher's bounds and defaults against real sockets: state-changing COMMANDs on real GPIO
lines need operator keys or an explicit unsafe opt-in, socket options that bound each connection,
the connection cap, the reply memory budget, the memory watchdog, and the boards' flight order."""

from __future__ import annotations

from pathlib import Path

import pytest
from netfixtures import FakeBoard, make_store

from camctl.board.config import PublishConfig
from camctl.board.publish import Publisher
from camctl.common import protocol as p
from camctl.common.keys import create_keys, load_client_curve
from camctl.exc import RemoteError
from camctl.ground import Client
from camctl.store.config import StoreConfig
from camctl.store.writer import FlightStore, flight_seq, list_flights


def _cfg(keys: Path | None = None, **kw: object) -> PublishConfig:
    return PublishConfig(bind="tcp://127.0.0.1:*", events="tcp://127.0.0.1:*",
                         curve_keys=str(keys) if keys else "", **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize("name,args", [("arm", {}), ("disarm", {}),
                                       ("event", {"name": "release"})])
def test_real_gpio_without_operator_keys_refuses_state_commands(tmp_path: Path, name: str,
                                                                args: dict) -> None:
    board = FakeBoard("rig-r", tmp_path, serving=False)
    board.phase = "SAFE"
    board.gpio_real = True  # type: ignore[attr-defined]
    with Publisher(board, _cfg(remote_events=True)) as pub, \
            Client(pub.router_endpoint, timeout_s=10) as c:
        with pytest.raises(RemoteError) as err:
            c.command(name, **args)
        assert err.value.code == p.E_FORBIDDEN
        assert "unsafe_remote_commands" in str(err.value) and "\n" not in str(err.value)
        assert c.status()["board"] == "rig-r"  # STATUS still works
    assert board.commands == []


def test_unsafe_opt_in_or_mock_lines_take_commands(tmp_path: Path) -> None:
    board = FakeBoard("rig-u", tmp_path, serving=False)
    board.phase = "SAFE"
    board.gpio_real = True  # type: ignore[attr-defined]
    with Publisher(board, _cfg(unsafe_remote_commands=True)) as pub, \
            Client(pub.router_endpoint, timeout_s=10) as c:
        c.command("arm")
        c.command("disarm")
    assert [n for n, _ in board.commands] == ["arm", "disarm"]
    board.gpio_real = False  # type: ignore[attr-defined]  # sim rig, demo, bench
    board.phase = "SAFE"
    with Publisher(board, _cfg()) as pub, Client(pub.router_endpoint, timeout_s=10) as c:
        c.command("arm")
    assert [n for n, _ in board.commands] == ["arm", "disarm", "arm"]


def test_real_gpio_with_operator_key_takes_commands(tmp_path: Path) -> None:
    k = tmp_path / "k"
    create_keys(k, boards=["rig-k"])
    board = FakeBoard("rig-k", tmp_path / "store", serving=False)
    board.phase = "SAFE"
    board.gpio_real = True  # type: ignore[attr-defined]
    curve = load_client_curve(k / "ground", server_key=k / "ground" / "servers" / "rig-k.key")
    with Publisher(board, _cfg(k / "rig-k")) as pub, \
            Client(pub.router_endpoint, timeout_s=10, curve=curve) as c:
        c.command("arm")
    assert [n for n, _ in board.commands] == ["arm"]


def test_flights_listed_in_recording_order_not_by_clock(tmp_path: Path) -> None:
    """A Pi whose clock went back after a power cut gives its next flight a smaller id: WELCOME's
    ``flights`` (and the store's list) still end with the flight recorded last."""
    root = tmp_path / "store"
    make_store(root, flights=("20200101T000000Z",), cameras=("down",), segments=1, frames=2)
    # written before flights had a seq: comes first, whatever its id
    for flight in ("20261201T120000Z", "20250101T000000Z", "20260101T000000Z"):  # clock jumps
        FlightStore(root, "rig-o", flight, StoreConfig(dir=root), cameras=["down"]).close()
    order = ["20200101T000000Z", "20261201T120000Z", "20250101T000000Z", "20260101T000000Z"]
    assert [flight_seq(root / f) for f in order] == [None, 1, 2, 3]
    assert list_flights(root) == order
    with Publisher(FakeBoard("rig-o", root), _cfg()) as pub, \
            Client(pub.router_endpoint, timeout_s=10) as c:
        assert c.hello().flights == order
