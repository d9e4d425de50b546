"""``camctl mission`` in Debian's chromium (Playwright) against two ``camctl run`` sim boards.

One test walks the whole drop as the conductor sees it: no-go until both boards are armed (from the
page, with its confirmation), go after; the phases change live with their time from release;
previews from both boards arrive; every MP4 loads in its video element; a board killed with SIGKILL
shows unreachable within 2 s. Screenshots go to ``tmp_path`` (their paths are printed).
"""

from __future__ import annotations

import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from camctl.demo import _command, start_board, write_board_config
from camctl.ground.mission.browser import chromium, find_chromium

pytestmark = pytest.mark.skipif(find_chromium() is None,
                                reason="needs Debian's chromium "
                                       "(.ci/run installs it: apt-get install chromium)")
BOARDS = ("mb-a", "mb-b")


def _start_mission(urls: list[str], out: Path, log: Path) -> tuple[subprocess.Popen, str]:
    connects = [a for u in urls for a in ("--connect", u)]
    proc = subprocess.Popen([sys.executable, "-m", "camctl", "mission", *connects,
                             "--out", str(out), "--port", "0", "--operator"],
                            stdout=subprocess.PIPE, stderr=log.open("wb"), text=True)
    found: list[str] = []

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            if m := re.match(r"mission page: (http://\S+)", line):
                found.append(m.group(1))
                return

    t = threading.Thread(target=read, daemon=True)
    t.start()
    t.join(30)
    if not found:
        proc.kill()
        raise AssertionError(f"camctl mission printed no URL: {log.read_text()[-2000:]}")
    return proc, found[0]


def _card(board: str) -> str:
    return f'section.card[data-board="{board}"]'


def _wait_phase(page: object, board: str, phases: str | tuple[str, ...], timeout_ms: int) -> None:
    """Wait for the card to show one of ``phases`` (a function, not a string: CSP forbids eval)."""
    want = list((phases,) if isinstance(phases, str) else phases)
    page.wait_for_function("([sel, want]) => "
                           "want.includes(document.querySelector(sel).textContent)",
                           arg=[f"{_card(board)} .phase-name", want],
                           timeout=timeout_ms)


def test_mission_page_from_no_go_to_videos(tmp_path: Path) -> None:
    boards = []
    mission = None
    try:
        for i, name in enumerate(BOARDS):
            cfg = write_board_config(tmp_path / name, name, i, size=(320, 240), descent_s=4.0,
                                     post_touchdown_s=1.0)
            boards.append(start_board(cfg, tmp_path / name / "store", name))
        mission, url = _start_mission([b.router for b in boards], tmp_path / "mission",
                                      tmp_path / "mission.log")
        with chromium(tmp_path / "chromium-profile") as ctx:
            page = ctx.new_page()
            page.goto(url)
            for b in BOARDS:
                page.wait_for_selector(f"{_card(b)} .reach.ok", timeout=15_000)
            assert page.inner_text("#verdict") == "NO-GO"
            failing = page.inner_text("#failing")
            assert ("mb-a: phase SAFE (needs ARMED)" in failing
                    and "mb-b: phase SAFE (needs ARMED)" in failing)
            page.screenshot(path=tmp_path / "1-safe.png", full_page=True)
            # the page offers arm and disarm, never an event
            assert set(page.locator("button[class^=op-]").all_inner_texts()) == {"arm", "disarm"}

            # arm mb-a from the page: cancelling the confirmation sends nothing
            page.click(f"{_card('mb-a')} button.op-arm")
            statuses = page.evaluate("window.camctlLatency.length")
            page.click("#confirm-no")
            # a negative check: the dialog closed (the page has decided), then two more PUB statuses
            # came (a second of both boards), by which an arm sent would show its answer
            page.wait_for_function("() => !document.getElementById('confirm').open", timeout=5_000)
            page.wait_for_function("n => window.camctlLatency.length >= n + 2", arg=statuses,
                                   timeout=10_000)
            assert page.inner_text(f"{_card('mb-a')} .phase-name") == "SAFE"
            assert page.get_attribute(f"{_card('mb-a')} .op-result", "class") == "op-result"
            for b in BOARDS:
                page.click(f"{_card(b)} button.op-arm")
                page.click("#confirm-yes")
                _wait_phase(page, b, "ARMED", 10_000)
                # the board's answer, shown
                page.wait_for_selector(f"{_card(b)} .op-result.ok", timeout=5_000)
                result = page.inner_text(f"{_card(b)} .op-result")
                assert result.startswith("arm: done, phase ARMED")
                if b == "mb-a":  # one armed, one not: still no-go, naming the other board only
                    failing = page.inner_text("#failing")
                    assert "mb-b: phase SAFE" in failing and "mb-a: phase" not in failing
                    assert page.inner_text("#verdict") == "NO-GO"
            page.wait_for_function("() => document.getElementById('verdict').textContent === 'GO'",
                                   timeout=20_000)
            assert page.get_attribute("#banner", "class") == "banner go"
            # the event line levels the boards read, and the disk in minutes at the schedule
            for b in BOARDS:
                assert "release=0" in page.inner_text(f"{_card(b)} .lines")
                disk = page.inner_text(f"{_card(b)} .disk")
                assert re.search(r"MB free = \d+\.\d min at the flight's schedule", disk), disk
            page.screenshot(path=tmp_path / "2-go.png", full_page=True)

            # the drop: each phase shows on every board before the next event is sent
            for event, phase in (("release", "DESCENT"), ("separation", "SEPARATION"),
                                 ("touchdown", "TOUCHDOWN")):
                for b in boards:
                    _command(b, "event", name=event)
                for b in BOARDS:
                    _wait_phase(page, b, (phase, "LANDED"), 5_000)
                if event == "release":
                    assert page.inner_text("#verdict") == "IN FLIGHT"
                    page.screenshot(path=tmp_path / "3-descent.png", full_page=True)
                time.sleep(0.8)  # the flight's length in each phase (the scenario, not a wait)
            for b in BOARDS:
                _wait_phase(page, b, "LANDED", 20_000)
                phases = page.inner_text(f"{_card(b)} .phases")
                assert re.search(r"DESCENT on release\s+T\+0\.00 s", phases), phases
                t_sep = float(re.search(r"SEPARATION on separation\s+T\+(\d+\.\d+) s",
                                        phases).group(1))
                t_td = float(re.search(r"TOUCHDOWN on touchdown\s+T\+(\d+\.\d+) s",
                                       phases).group(1))
                assert 0.5 < t_sep < t_td, phases  # board times of the edges, from its release edge

            # first look: previews from both boards, labelled with time from release
            for b in BOARDS:
                page.wait_for_selector(f"{_card(b)} .previews figure.preview img", timeout=30_000)
                assert re.search(r"T[+-]\d+\.\d+ s", page.inner_text(f"{_card(b)} .previews"))
            page.screenshot(path=tmp_path / "4-previews.png", full_page=True)

            # the download completes, then the flight's exports: every MP4 plays
            for b in BOARDS:
                page.wait_for_selector(f"{_card(b)} .download[data-state=ok]", timeout=60_000)
                # nothing lost: no losses list (tests/test_loss_views.py shows one with losses)
                assert page.locator(f"{_card(b)} ul.losses").is_hidden()
                assert page.locator(f"{_card(b)} ul.losses li").count() == 0
            page.wait_for_selector("#flight video", timeout=90_000)
            names = page.eval_on_selector_all("#flight video", "vs => vs.map(v => v.dataset.name)")
            assert sorted(names) == [f"{b}_{c}" for b in BOARDS for c in ("down", "up")]
            page.wait_for_function(
                "() => [...document.querySelectorAll('#flight video')]"
                ".every(v => v.readyState >= 2)",
                timeout=20_000)
            assert page.locator("#flight img.contact-sheet").count() == 1
            assert page.locator("#flight img.timeline").count() == 1
            page.screenshot(path=tmp_path / "5-flight.png", full_page=True)
            latencies = page.evaluate("window.camctlLatency")
            assert latencies, "no PUB status reached the page"

            # a board killed with SIGKILL shows unreachable within 2 s
            boards[1].kill9()
            t0 = time.monotonic()
            page.wait_for_selector(f"{_card('mb-b')}.unreachable", timeout=2_000)
            print(f"unreachable after {time.monotonic() - t0:.2f} s; screenshots in {tmp_path}")
            assert page.inner_text(f"{_card('mb-b')} .reach") == "UNREACHABLE"
            page.screenshot(path=tmp_path / "6-unreachable.png", full_page=True)
    finally:
        if mission is not None:
            mission.terminate()
            mission.wait(15)
        for b in boards:
            b.stop()
