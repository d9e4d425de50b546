"""A board forced to serve during flight keeps its capture rate while 8 clients fetch at full speed.

A real ``camctl run`` (2 sim cameras, 640x360 at 15 fps in every phase,
``publish.serve_during_flight``) has a finished earlier flight in its store (written here with
FlightStore: noisy JPEGs, so the files are big). It is armed and released; its per-camera
captured-frame rate is measured from ``status()`` (board clock) over a window without load, then
over a window while 8 threads run :func:`camctl.ground.fetch` in a loop. The assertion is a ratio
measured in the same run (loaded >= 0.8 x unloaded), plus no dropped frame.
"""

from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path

from serving_board import board_config, rates, write_old_flight
from waiting import wait_for

from camctl.demo import start_board
from camctl.ground import Client, fetch

CLIENTS = 8
WINDOW_S = 3.0


def test_capture_rate_holds_while_8_clients_fetch(tmp_path: Path) -> None:
    cfg = board_config(tmp_path / "board")
    store = tmp_path / "board" / "store"
    old = write_old_flight(store, "load-a")
    board = start_board(cfg, store, "load-a")
    stop = threading.Event()
    fetched = [0] * CLIENTS
    bytes_ = [0] * CLIENTS
    errors: list[str] = []

    def client_loop(i: int) -> None:
        n = 0
        while not stop.is_set():
            out = tmp_path / "ground" / f"c{i}-{n}"
            report = fetch([board.router], out, give_up_after_s=30, progress=False)
            br = report.boards[0]
            if not br.ok:
                errors.append(f"client {i} run {n}: {report.summary()}")
                return
            fetched[i] += 1
            bytes_[i] += br.bytes
            shutil.rmtree(out, ignore_errors=True)
            n += 1

    threads = [threading.Thread(target=client_loop, args=(i,), daemon=True) for i in range(CLIENTS)]
    try:
        with Client(board.router, timeout_s=30.0) as client:
            # serve_during_flight: already in SAFE and ARMED
            assert client.status()["serving"] is True
            client.command("arm")
            client.command("event", name="release")
            # past the pre-trigger flush and the rate change (start of the window, no check)
            time.sleep(0.5)
            quiet, _ = rates(client, WINDOW_S)
            for t in threads:
                t.start()
            # the clients are into their loops (as many full fetches as clients) before measuring
            wait_for(lambda: sum(fetched) >= CLIENTS or errors, "a full fetch per client")
            loaded, st = rates(client, WINDOW_S)
            stop.set()
            for t in threads:
                t.join(60)
            assert not errors, errors
            assert st["phase"] == "DESCENT" and st["serving"] is True
            dropped = {c: cs["dropped"] for c, cs in st["cameras"].items()}
            client.command("event", name="touchdown")
    finally:
        stop.set()
        board.stop()
    mb = sum(bytes_) / 1e6
    fmt = lambda r: ", ".join(f"{c} {v:.1f}" for c, v in sorted(r.items()))  # noqa: E731
    print(f"\nserving load: quiet {fmt(quiet)} fps, with {CLIENTS} fetch clients {fmt(loaded)} fps "
          f"(ratio {min(loaded[c] / quiet[c] for c in quiet):.2f}); {sum(fetched)} full fetches "
          f"of flight {old} and more, {mb:.0f} MB served")
    assert all(f >= 1 for f in fetched), fetched
    assert dropped == {"down": 0, "up": 0}, dropped
    for cam in quiet:
        assert quiet[cam] > 10, quiet  # 15 fps configured: the unloaded board keeps up
        assert loaded[cam] >= 0.8 * quiet[cam], (cam, quiet[cam], loaded[cam])
