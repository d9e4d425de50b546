"""``camctl mission`` without a browser: the go/no-go checks, the server's rules over real HTTP.

The browser test (tests/test_mission_browser.py) flies real boards; here each rule is pinned on its
own.
"""

from __future__ import annotations

import http.client
import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from netfixtures import FakeBoard
from waiting import wait_for

from camctl.ground.mission.checks import Limits, evaluate, recording_minutes, stage
from camctl.ground.mission.server import MissionServer, is_loopback
from camctl.ground.mission.session import Mission


def _cam(**kw: object) -> dict:
    cam = {"state": "running", "fps": 4.0, "target_fps": 4.0, "frames_stored": 0, "bytes_stored": 0,
           "ring_frames": 8, "ring_bytes": 8 * 50_000, "dropped": 0, "faults": 0,
           "schedule": {"ARMED": 4, "DESCENT": 12, "SEPARATION": 20, "TOUCHDOWN": 12}}
    cam.update(kw)
    return cam


def _view(name: str, *, phase: str = "ARMED", offset_ms: float = 0.0, disk_mb: float = 100_000,
          lines: dict | None = None, **cams: dict) -> dict:
    return {"name": name, "url": f"tcp://{name}:5555", "reachable": True, "offset_ms": offset_ms,
            "status": {"board": name, "phase": phase, "disk_free_mb": disk_mb,
                       "lines": {"arm": 1, "release": 0} if lines is None else lines,
                       "cameras": cams or {"down": _cam(), "up": _cam()}}}


def test_go_only_when_every_check_of_every_board_passes() -> None:
    res = evaluate([_view("a"), _view("b", offset_ms=3.0)])
    assert res["go"] is True and res["failing"] == [] and res["stage"] == "pre-drop"
    assert {c["check"] for c in res["checks"] if c["board"] == "a"} == {
        "reachable", "armed", "down rate", "down faults", "down drops",
        "up rate", "up faults", "up drops", "lines", "disk", "clock"}


@pytest.mark.parametrize(("views", "needle"), [
    ([_view("a", phase="SAFE"), _view("b")], "a: phase SAFE (needs ARMED)"),
    ([_view("a"),
      {"name": "b", "url": "tcp://b:5555", "reachable": False, "error": "no answer in 1 s"}],
     "b: unreachable: no answer in 1 s"),
    ([_view("a", down=_cam(fps=2.5)), _view("b")], "a: down running at 2.5 fps, schedule 4 fps"),
    ([_view("a", down=_cam(state="failed", fps=0.0)), _view("b")], "a: down failed at 0.0 fps"),
    ([_view("a", up=_cam(faults=2, last_error="sensor timeout")), _view("b")],
     "a: up 2 faults (sensor timeout)"),
    ([_view("a", up=_cam(dropped=5)), _view("b")], "a: up 5 frames dropped"),
    ([_view("a"), _view("b"), _view("c", offset_ms=80.0)],
     "c: clock +80.0 ms against the other boards"),
    ([_view("a", disk_mb=500), _view("b")],
     "a: 500 MB free = 4.2 min at the flight's schedule (need 10)"),
    ([_view("a", down=_cam(ring_frames=0, ring_bytes=0)), _view("b")],
     "a: 100000 MB free; frame size unknown"),
    ([_view("a", lines={"arm": 1, "release": 1, "touchdown": 0}), _view("b")],
     "a: event lines arm=1 release=1 touchdown=0 (release already active)"),
])
def test_no_go_names_each_failing_check(views: list[dict], needle: str) -> None:
    res = evaluate(views)
    assert res["go"] is False
    assert any(f.startswith(needle) for f in res["failing"]), res["failing"]
    assert len(res["failing"]) == 1, res["failing"]  # only the broken check fails


def test_every_failing_check_is_named_and_no_boards_is_no_go() -> None:
    res = evaluate([_view("a", phase="SAFE", up=_cam(dropped=1)), _view("b", phase="SAFE")])
    assert res["failing"] == ["a: phase SAFE (needs ARMED)", "a: up 1 frames dropped",
                              "b: phase SAFE (needs ARMED)"]
    assert evaluate([])["failing"] == ["no boards"]


def test_recording_minutes_at_the_flight_schedule() -> None:
    # 50 kB frames at the fastest in-flight rate (SEPARATION 20 fps) on two cameras: 2 MB/s
    st = {"disk_free_mb": 1200.0, "cameras": {"down": _cam(), "up": _cam()}}
    assert recording_minutes(st) == pytest.approx(1200e6 / 2e6 / 60)
    # stored frames, when there are, tell the size better than the ring
    st["cameras"]["down"] = _cam(frames_stored=10, bytes_stored=10 * 100_000)
    assert recording_minutes(st) == pytest.approx(1200e6 / (100_000 * 20 + 50_000 * 20) / 60)
    # a tighter limit is honoured
    assert evaluate([_view("a", disk_mb=1200)], Limits(min_record_min=5))["go"] is True
    assert evaluate([_view("a", disk_mb=1200)], Limits(min_record_min=15))["go"] is False


def test_stage_follows_the_boards() -> None:
    assert stage([_view("a"), _view("b", phase="DESCENT")]) == "in flight"
    # a silent board is not down: never LANDED (issue 28 item 1; tests/test_verdict.py)
    assert stage([_view("a", phase="LANDED"), {"reachable": False}]) == "lost contact"
    assert stage([_view("a", phase="LANDED"), _view("b")]) == "pre-drop"


# --- the server's rules, over real HTTP -----------------------------------------------------------
@pytest.fixture
def server(tmp_path: Path, request: pytest.FixtureRequest):
    kw = getattr(request, "param", {})
    mission = Mission(["tcp://127.0.0.1:9"], tmp_path / "out", operator=kw.get("operator", False))
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "ok.txt").write_text("fine")
    (tmp_path / "secret.txt").write_text("outside")
    (tmp_path / "out" / "link.txt").symlink_to(tmp_path / "secret.txt")
    srv = MissionServer(mission, host="127.0.0.1", port=0, token=kw.get("token"))
    srv.start()
    yield srv
    srv.close()


def _get(url: str) -> tuple[int, bytes, dict]:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, r.read(), dict(r.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), dict(exc.headers)


def _post(srv: MissionServer, body: dict, *, origin: str | None = "self",
          ctype: str = "application/json") -> tuple:
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10)
    headers = {"Content-Type": ctype}
    if origin is not None:
        headers["Origin"] = f"http://127.0.0.1:{srv.port}" if origin == "self" else origin
    conn.request("POST", "/api/command", json.dumps(body), headers)
    r = conn.getresponse()
    return r.status, json.loads(r.read() or b"{}")


def test_page_and_assets_are_served_from_the_package_with_a_strict_csp(
        server: MissionServer) -> None:
    status, body, headers = _get(server.url)
    assert status == 200 and b'<script src="/static/app.js"' in body
    assert "default-src 'self'" in headers["Content-Security-Policy"]
    for name in ("app.js", "app.css"):
        status, body, _ = _get(f"http://127.0.0.1:{server.port}/static/{name}")
        assert status == 200 and body
        assert b"http://" not in body and b"https://" not in body  # nothing from the internet
    assert _get(f"http://127.0.0.1:{server.port}/static/index.py")[0] == 404


def test_files_stay_inside_the_output_folder(server: MissionServer) -> None:
    base = f"http://127.0.0.1:{server.port}/files/"
    assert _get(base + "ok.txt")[:2] == (200, b"fine")
    assert _get(base + "link.txt")[0] == 404  # a symlink out of the folder
    assert _get(base + "..%2Fsecret.txt")[0] == 404
    assert _get(base + "missing.txt")[0] == 404


def test_commands_refused_without_operator_keys(server: MissionServer) -> None:
    status, body = _post(server, {"url": "tcp://127.0.0.1:9", "name": "arm"})
    assert status == 403 and "operator actions are off" in body["error"]


@pytest.mark.parametrize("server", [{"operator": True}], indirect=True)
def test_operator_mode_never_sends_a_descent_event_nor_takes_foreign_requests(
        server: MissionServer) -> None:
    status, body = _post(server, {"url": "tcp://127.0.0.1:9", "name": "event"})
    assert status == 403 and "not allowed from the page" in body["error"]
    status, body = _post(server, {"url": "tcp://other:5555", "name": "arm"})
    assert status == 403 and "no such board" in body["error"]
    evil = "http://evil.example"
    assert _post(server, {"url": "tcp://127.0.0.1:9", "name": "arm"}, origin=evil)[0] == 403
    assert _post(server, {"url": "tcp://127.0.0.1:9", "name": "arm"}, origin=None)[0] == 403
    assert _post(server, {"url": "tcp://127.0.0.1:9", "name": "arm"}, ctype="text/plain")[0] == 403
    assert _post(server, {"name": "arm"})[0] == 400


@pytest.mark.parametrize("server", [{"token": "s3cret-token"}], indirect=True)
def test_a_token_guards_every_route_and_is_kept_in_a_cookie(server: MissionServer) -> None:
    base = f"http://127.0.0.1:{server.port}"
    assert server.url.endswith("?token=s3cret-token")
    for path in ("/", "/static/app.js", "/files/ok.txt", "/ws"):
        assert _get(base + path)[0] == 401, path
    assert _get(base + "/?token=wrong")[0] == 401
    status, _body, headers = _get(server.url)
    assert status == 200 and "camctl_mission=s3cret-token" in headers["Set-Cookie"]
    req = urllib.request.Request(base + "/files/ok.txt",
                                 headers={"Cookie": "camctl_mission=s3cret-token"})
    with urllib.request.urlopen(req, timeout=10) as r:
        assert r.read() == b"fine"


def test_only_loopback_goes_without_a_token(tmp_path: Path) -> None:
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.20")
    srv = MissionServer(Mission(["tcp://127.0.0.1:9"], tmp_path), host="0.0.0.0", port=0)
    assert srv.token and len(srv.token) >= 20
    assert MissionServer(Mission(["tcp://127.0.0.1:9"], tmp_path), host="127.0.0.1").token is None


def test_demo_mission_prints_a_live_page_that_exports_the_flight(tmp_path: Path) -> None:
    import subprocess
    import sys

    out = tmp_path / "demo"
    proc = subprocess.Popen([sys.executable, "-m", "camctl", "demo", "--boards", "1",
                             "--seconds", "1.5", "--quiet",
                             "--out", str(out), "--mission", "--mission-port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, text=True)
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert first.startswith("mission page: http://127.0.0.1:"), first
        url = first.split(": ", 1)[1].strip()
        status, body, _ = _get(url)  # the page is up while the demo flies
        assert status == 200 and b"camctl mission" in body
        rest = proc.stdout.read()
        assert proc.wait(120) == 0, first + rest
    finally:
        proc.kill()
        proc.wait()
    assert "mission page export: done" in rest and "demo OK" in rest, rest
    mp4s = sorted(out.glob("mission/export/*/mp4/*.mp4"))
    assert [p.name for p in mp4s] == ["demo-a_down.mp4", "demo-a_up.mp4"]
    # the page's own download, previews first
    assert list(out.glob("mission/ground/demo-a/*/thumbs/down/*.jpg"))


def test_mission_cli_port_in_use_is_one_line_and_exit_2(tmp_path: Path) -> None:
    import socket
    import subprocess
    import sys

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        proc = subprocess.run([sys.executable, "-m", "camctl", "mission",
                               "--connect", "tcp://127.0.0.1:9",
                               "--port", str(port), "--out", str(tmp_path / "m")],
                              capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    refused = "camctl: error: camctl mission cannot listen on 127.0.0.1:"
    assert len(lines) == 1 and lines[0].startswith(refused), lines
    assert str(port) in lines[0]


def test_a_mission_started_after_the_flight_retries_a_failed_download_and_labels_previews(
        tmp_path: Path) -> None:
    import queue

    from camctl.demo import _command, start_board, write_board_config

    cfg = write_board_config(tmp_path / "late", "late", 0, size=(320, 240), descent_s=3,
                             post_touchdown_s=0.5)
    board = start_board(cfg, tmp_path / "late" / "store", "late")
    mission = None
    try:
        _command(board, "arm")
        # a second of pre-trigger ring, then a second of descent: frames on both sides
        time.sleep(1.0)
        _command(board, "event", name="release")
        time.sleep(1.0)
        _command(board, "event", name="touchdown")
        got: queue.Queue[dict] = queue.Queue()
        # a file where the board's folder goes: the fetch fails
        blocker = tmp_path / "out" / "ground" / "late"
        blocker.parent.mkdir(parents=True)
        blocker.write_text("in the way")
        mission = Mission([board.router], tmp_path / "out", retry_s=0.5, previews_per_board=3)
        mission.listen(got.put)
        mission.start()
        previews, export, failed, picked = [], None, [], {}

        def take_one() -> dict | None:
            """The next message of the mission, noted; the export's end when it comes."""
            nonlocal previews, export, picked
            msg = got.get(timeout=60)
            if msg["type"] == "download" and msg["state"] == "failed":
                failed.append(msg["detail"])
                # the way is clear: the next try (after retry_s) must get everything
                blocker.unlink()
            elif msg["type"] == "previews":
                # the board's latest pick (at most previews_per_board), and how many are hidden
                picked = msg
                previews = msg["shown"]
            elif msg["type"] == "export" and msg["state"] in ("done", "failed"):
                export = msg
            return export

        wait_for(take_one, "the flight's export to end", timeout_s=120, interval_s=0)
    finally:
        if mission is not None:
            mission.close()
        board.stop()
    assert export is not None and export["state"] == "done", (export, failed)
    assert sorted(v["name"] for v in export["mp4"]) == ["late_down", "late_up"]
    assert previews and all(p["t_rel_s"] is not None for p in previews), previews[:3]
    # ring, descent
    assert any(p["t_rel_s"] < 0 for p in previews) and any(p["t_rel_s"] > 0 for p in previews)
    assert {p["board"] for p in previews} == {"late"}
    # capped: 3 of them, both sides of the release among them, the others counted as hidden
    assert len(previews) == 3 and picked["hidden"] == picked["total"] - 3 > 0, picked
    assert picked in mission.snapshot()  # a page that connects later gets the same pick
    assert len(failed) == 1, failed  # failed once, then the retry brought the flight home


def test_mission_cli_off_loopback_prints_the_url_with_its_token(tmp_path: Path) -> None:
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-m", "camctl", "mission",
                             "--connect", "tcp://127.0.0.1:9",
                             "--host", "0.0.0.0", "--port", "0", "--out", str(tmp_path / "m")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        url, token_line = proc.stdout.readline().strip(), proc.stdout.readline().strip()
        token = token_line.rsplit(" ", 1)[-1]
        assert (token_line.startswith("access token (needed off this machine): ")
                and len(token) >= 20)
        assert (url.startswith("mission page: http://127.0.0.1:")
                and url.endswith(f"/?token={token}"))
        page = url.split(": ", 1)[1]
        assert _get(page.split("?")[0])[0] == 401
        assert _get(page)[0] == 200
    finally:
        proc.terminate()
        assert proc.wait(20) == 0


def test_the_live_feed_refuses_a_foreign_origin_and_opens_for_the_page(
        server: MissionServer) -> None:
    def handshake(origin: str) -> tuple[int, bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        conn.request("GET", "/ws", headers={"Upgrade": "websocket", "Connection": "Upgrade",
                                            "Origin": origin,
                                            "Sec-WebSocket-Version": "13",
                                            "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="})
        r = conn.getresponse()
        # a 101 leaves the socket open: the snapshot follows
        first = r.fp.read(2) if r.status == 101 else r.read()
        conn.close()
        return r.status, first

    assert handshake("http://evil.example")[0] == 403
    status, first = handshake(f"http://127.0.0.1:{server.port}")
    assert status == 101 and first[:1] == b"\x81"  # a text frame: the snapshot's first message


# --- keys: the page reads with the ground key, arms only with the operator's key ------------------
class _KeyedBoard(FakeBoard):
    """A board that is SAFE (not serving) and says where its PUB is, as the daemon's STATUS does."""

    def __init__(self, name: str, root: Path) -> None:
        super().__init__(name, root, serving=False)
        self.phase = "SAFE"
        self.events_port: int | None = None

    def status(self) -> dict:
        return {**super().status(), "events_port": self.events_port, "wall_ns": time.time_ns()}


@pytest.fixture
def curve_boards(tmp_path: Path):
    """Two boards with CURVE on, each with its own server key; an operator folder (ground/) and a
    reader laptop's folder (ground-2/). Yields (boards, publishers, urls, keys folder, reader
    curves)."""
    from camctl.board.config import PublishConfig
    from camctl.board.publish import Publisher
    from camctl.common.keys import client_curves, create_keys

    k = tmp_path / "keys"
    create_keys(k, boards=["rig-a", "rig-b"], clients=2)
    boards, pubs = [], []
    try:
        for name in ("rig-a", "rig-b"):
            board = _KeyedBoard(name, tmp_path / name)
            pub = Publisher(board, PublishConfig(bind="tcp://127.0.0.1:*",
                                                 events="tcp://127.0.0.1:*",
                                                 curve_keys=str(k / name)))
            pub.start()
            board.events_port = int(pub.pub_endpoint.rsplit(":", 1)[1])
            boards.append(board)
            pubs.append(pub)
        urls = [pub.router_endpoint for pub in pubs]
        servers = [str(k / "ground" / "servers" / f"{n}.key") for n in ("rig-a", "rig-b")]
        # the second laptop's folder, as camctl keys made it
        yield boards, pubs, urls, k, client_curves(k / "ground-2", urls, servers)
    finally:
        for pub in pubs:
            pub.close()


def _hello(srv: MissionServer) -> dict:
    """The page's first WebSocket message (it draws arm/disarm only when operator is true)."""
    import asyncio

    import aiohttp

    async def first() -> dict:
        page = f"http://127.0.0.1:{srv.port}"
        async with aiohttp.ClientSession() as s, s.ws_connect(f"{page}/ws", origin=page) as ws:
            return json.loads((await ws.receive(timeout=10)).data)

    return asyncio.run(first())


def _serve_curve(tmp_path: Path, urls: list[str], curve: object, **kw: object) -> MissionServer:
    from camctl.ground.mission import serve

    return serve(urls, tmp_path / "out", port=0, curve=curve, **kw)


def test_over_curve_the_operator_key_arms_a_board_and_the_feeds_use_each_boards_key(
        tmp_path: Path, curve_boards) -> None:
    boards, pubs, urls, k, reader = curve_boards
    # reads (STATUS, PUB) use the reader key, commands the operator key: the board tells them apart
    srv = _serve_curve(tmp_path, urls, reader, operator_key=k / "ground" / "client.key_secret")
    try:
        views = lambda: srv.mission.watcher.snapshot()  # noqa: E731
        wait_for(lambda: all(v["reachable"] for v in views()), "both boards reachable over CURVE")
        assert {v["name"] for v in views()} == {"rig-a", "rig-b"}

        # the SUB is a CURVE client of each board's PUB, each with its own server key
        def pub_seen() -> bool:
            for board, pub in zip(boards, pubs, strict=True):
                pub.publish("status", board.status())
            return all(v["via"] == "pub:status" for v in views())
        wait_for(pub_seen, "a status over each board's CURVE PUB")
        assert _hello(srv)["operator"] is True
        status, body = _post(srv, {"url": urls[0], "name": "arm"})
        assert (status, body["ok"]) == (200, True), body
        assert boards[0].phase == "ARMED" and boards[0].commands == [("arm", {})]
        assert boards[1].commands == []
        done = [m for m in srv.mission.snapshot() if m["type"] == "command"]
        assert done == [{"type": "command", "url": urls[0], "name": "arm", "ok": True, "code": "",
                         "detail": "phase ARMED", "outcome": "",
                         "text": "arm: done, phase ARMED"}]
    finally:
        srv.close()


def test_with_a_reader_key_no_buttons_and_a_forged_post_is_refused_by_the_page(
        tmp_path: Path, curve_boards) -> None:
    boards, _pubs, urls, _k, reader = curve_boards
    srv = _serve_curve(tmp_path, urls, reader)
    try:
        wait_for(lambda: all(v["reachable"] for v in srv.mission.watcher.snapshot()),
                 "both boards reachable")
        assert _hello(srv)["operator"] is False  # the page draws no arm/disarm buttons
        status, body = _post(srv, {"url": urls[0], "name": "arm"})
        assert status == 403 and "operator actions are off" in body["error"]
        assert boards[0].commands == [] and boards[0].phase == "SAFE"
    finally:
        srv.close()


def test_a_reader_key_posing_as_operator_is_refused_by_the_board_and_the_page_shows_its_code(
        tmp_path: Path, curve_boards) -> None:
    boards, _pubs, urls, k, reader = curve_boards
    srv = _serve_curve(tmp_path, urls, reader, operator_key=k / "ground-2" / "client.key_secret")
    try:
        wait_for(lambda: all(v["reachable"] for v in srv.mission.watcher.snapshot()),
                 "both boards reachable")
        status, body = _post(srv, {"url": urls[1], "name": "arm"})
        assert (status == 502 and body["code"] == "FORBIDDEN"
                and "operator key" in body["error"]), body
        assert boards[1].commands == [] and boards[1].phase == "SAFE"
        shown = [m for m in srv.mission.snapshot() if m["type"] == "command"]
        assert len(shown) == 1 and shown[0]["code"] == "FORBIDDEN" and not shown[0]["ok"], shown
    finally:
        srv.close()


def _cli(tmp_path: Path, *argv: str) -> subprocess.CompletedProcess:
    # a subprocess with a timeout: a rule that stopped refusing would serve on, not hang the suite
    return subprocess.run([sys.executable, "-m", "camctl", "mission",
                           "--connect", "tcp://rig-a:5555",
                           "--port", "0", "--out", str(tmp_path / "m"), *argv],
                          capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize(("argv", "needle"), [
    (["--operator", "--curve-keys", "KEYS"],
     "with CURVE on, operator actions need the operator's secret key"),
    (["--operator-key", "KEYS/client.key_secret"], "is a CURVE key, but CURVE is off"),
    (["--operator", "--operator-key", "KEYS/client.key_secret", "--curve-keys", "KEYS"],
     "not both"),
    (["--operator-key", "KEYS/client.key", "--curve-keys", "KEYS"], "holds no secret key"),
    (["--operator-key", "KEYS/nope.key_secret", "--curve-keys", "KEYS"],
     "cannot read it as a CURVE key"),
    (["--previews-per-board", "0"], "--previews-per-board 0: must be at least 1"),
])
def test_mission_operator_options_are_checked_in_one_line(tmp_path: Path, argv: list[str],
                                                          needle: str) -> None:
    from camctl.common.keys import create_keys

    create_keys(tmp_path / "k", boards=["rig-a"])
    keys = str(tmp_path / "k" / "ground")
    proc = _cli(tmp_path, *[a.replace("KEYS", keys) for a in argv])
    err = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(err) == 1 and needle in err[0], err
    assert not (tmp_path / "m").exists()  # refused before anything started


# --- previews: capped per board -------------------------------------------------------------------
def test_a_long_flight_shows_at_most_n_previews_per_board_the_most_useful_ones() -> None:
    from camctl.ground.mission.previews import pick

    phases = [("ARMED", 300), ("DESCENT", 2000), ("SEPARATION", 40), ("TOUCHDOWN", 900),
              ("LANDED", 200)]
    flight = []
    for cam in ("down", "up"):
        seq = 0
        for phase, n in phases:
            flight += [{"camera": cam, "seq": (seq := seq + 1), "phase": phase,
                        "url": f"/{cam}/{seq}"}
                       for _ in range(n)]
    shown = pick(flight, 24)
    assert len(shown) == 24
    # the budget is shared; each camera keeps its phase starts and its last
    for cam in ("down", "up"):
        mine = [p for p in shown if p["camera"] == cam]
        assert len(mine) == 12
        starts = [next(p["seq"] for p in flight if p["camera"] == cam and p["phase"] == ph)
                  for ph, _ in phases]
        assert set(starts) | {3440} <= {p["seq"] for p in mine}
        assert [p["seq"] for p in mine] == sorted(p["seq"] for p in mine)
    # a camera with few previews leaves its share to the other; a short flight shows everything
    few = ([p for p in flight if p["camera"] == "down"]
           + [p for p in flight if p["camera"] == "up"][:3])
    assert sum(p["camera"] == "up" for p in pick(few, 24)) == 3 and len(pick(few, 24)) == 24
    assert pick(flight[:10], 24) == flight[:10]
