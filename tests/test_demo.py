"""``camctl demo`` end to end (subprocess, 2 boards, 3 s descent); ``camctl run``, broken config."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from camctl.demo import write_board_config

ROW_KEYS = {"board", "camera", "captured", "stored", "durable", "fetched", "pretrigger", "stills",
            "safe_frames", "first_s", "last_s", "checksum_ok", "bad_jpeg"}


def test_demo_two_boards(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    proc = subprocess.run([sys.executable, "-m", "camctl", "demo", "--boards", "2",
                           "--seconds", "1.5", "--out", str(out), "--quiet"],
                          capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "demo OK" in proc.stdout
    report = json.loads((out / "report.json").read_text())
    assert report["problems"] == []
    assert (report["first_look_png"] == str(out / "first-look.png")
            and (out / "first-look.png").stat().st_size)
    # the sheet stays beside the demo's outputs
    assert not (out / "ground" / "first-look.png").exists()
    rows = report["rows"]
    assert {(r["board"], r["camera"]) for r in rows} == {(b, c) for b in ("demo-a", "demo-b")
                                                         for c in ("down", "up")}
    for r in rows:
        assert set(r) >= ROW_KEYS, ROW_KEYS - set(r)
        assert r["stored"] == r["fetched"] == r["durable"] > 0, r
        # frames exist before the release edge
        assert r["pretrigger"] > 0 and r["first_s"] < 0 < r["last_s"], r
        assert r["safe_frames"] == 0 and r["bad_jpeg"] == 0 and r["checksum_ok"] is True, r
        # stills = ["touchdown"] on down only
        assert r["stills"] == (1 if r["camera"] == "down" else 0), r
    # sensors (issue 29): every board records its sim IMU and barometer; the last has no release
    # and no touchdown line, and its IMU fires them within 20 ms of the scene's true moments
    sensors = {r["board"]: r for r in report["sensors"]}
    assert set(sensors) == {"demo-a", "demo-b"}
    for r in sensors.values():
        assert r["samples"]["imu"] > 0 and r["samples"]["baro"] > 0, r
    assert sensors["demo-a"]["events"]["release"]["source"] == "gpio"
    for event in ("release", "touchdown"):
        fired = sensors["demo-b"]["events"][event]
        assert fired["source"] == "imu" and abs(fired["offset_ms"]) <= 20.0, (event, fired)
    # the downloads are on the ground; the boards' stores were cleaned up
    for b in ("demo-a", "demo-b"):
        assert list((out / "ground" / b).glob("*/down/*.mcap"))
        assert not (out / "boards" / b / "store").exists()


def test_run_with_a_broken_config_exits_2_with_one_line(tmp_path: Path) -> None:
    cfg = write_board_config(tmp_path / "bad", "bad-board", 0, extra="bogus_key = 1\n")
    text = cfg.read_text().replace("DESCENT = 12", "DESCENT = -3", 1)
    cfg.write_text(text)
    proc = subprocess.run([sys.executable, "-m", "camctl", "run", "--config", str(cfg)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and proc.stdout == "", proc.stderr
    assert (lines[0].startswith("camctl: error:") and "cameras[0].fps.DESCENT" in lines[0]
            and "-3" in lines[0])
    assert str(cfg) in lines[0]
    assert not (tmp_path / "bad" / "store").exists(), "a broken config must not touch the store"


def test_camctl_run_port_in_use_and_bad_store_are_one_line_errors(tmp_path):
    import socket

    import zmq

    from camctl.demo import write_board_config

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctx = zmq.Context()
    holder = ctx.socket(zmq.ROUTER)
    holder.bind(f"tcp://127.0.0.1:{port}")
    try:
        cfg = write_board_config(tmp_path / "busy", "busy-board", 0, size=(160, 120))
        cfg.write_text(cfg.read_text().replace('bind = "tcp://127.0.0.1:*"',
                                               f'bind = "tcp://127.0.0.1:{port}"'))
        r = subprocess.run([sys.executable, "-m", "camctl", "run", "--config", str(cfg)],
                           capture_output=True, text=True, timeout=60)
        assert (r.returncode == 2 and "cannot bind" in r.stderr
                and "Traceback" not in r.stderr), r.stderr
    finally:
        holder.close(0)
        ctx.term()
    cfg = write_board_config(tmp_path / "nostore", "nostore-board", 0, size=(160, 120))
    cfg.write_text(cfg.read_text().replace(str(tmp_path / "nostore" / "store"),
                                           "/proc/camctl-no-store"))
    r = subprocess.run([sys.executable, "-m", "camctl", "run", "--config", str(cfg)],
                       capture_output=True, text=True, timeout=60)
    assert (r.returncode == 2
            and "store.dir /proc/camctl-no-store: cannot create it" in r.stderr), r.stderr
    assert "Traceback" not in r.stderr
