"""The mission page offers arm and disarm only where they act, and shows an ignored one as ignored.

One ``camctl run`` sim board, ``camctl mission --operator``, Debian's chromium (Playwright), one
page load: arm only in SAFE, disarm only in ARMED, no button in DESCENT; a disarm that reaches the
board in DESCENT (a page that was a second late) is shown amber, "disarm ignored: in flight (phase
DESCENT)", never green "done" (issue 28, item 2).
"""

from __future__ import annotations

import http.client
import json
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from test_mission_browser import _card, _start_mission, _wait_phase

from camctl.demo import _command, start_board, write_board_config
from camctl.ground.mission.browser import chromium, find_chromium

pytestmark = pytest.mark.skipif(find_chromium() is None,
                                reason="needs Debian's chromium "
                                       "(.ci/run installs it: apt-get install chromium)")


def _buttons(page: object, board: str) -> list[str]:
    """The operator buttons shown on the board's card."""
    loc = page.locator(f"{_card(board)} .ops button")
    return [loc.nth(i).inner_text() for i in range(loc.count()) if loc.nth(i).is_visible()]


def _wait_buttons(page: object, board: str, want: list[str]) -> None:
    page.wait_for_function(
        "([sel, want]) => JSON.stringify([...document.querySelectorAll(sel)]"
        ".filter(b => !b.hidden).map(b => b.textContent)) === JSON.stringify(want)",
        arg=[f"{_card(board)} .ops button", want], timeout=10_000)


def _post_command(page_url: str, board_url: str, name: str) -> tuple[int, dict]:
    """POST /api/command as the page does (same origin, JSON)."""
    u = urlsplit(page_url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
    conn.request("POST", "/api/command", json.dumps({"url": board_url, "name": name}),
                 {"Content-Type": "application/json", "Origin": f"{u.scheme}://{u.netloc}"})
    r = conn.getresponse()
    return r.status, json.loads(r.read() or b"{}")


def test_buttons_follow_the_phase_and_an_ignored_disarm_is_amber(tmp_path: Path) -> None:
    cfg = write_board_config(tmp_path / "cb", "cb-a", 0, size=(160, 120), stills=(),
                             descent_s=30.0)
    board = start_board(cfg, tmp_path / "cb" / "store", "cb-a")
    mission = None
    try:
        mission, url = _start_mission([board.router], tmp_path / "mission",
                                      tmp_path / "mission.log")
        with chromium(tmp_path / "chromium-profile") as ctx:
            page = ctx.new_page()
            page.goto(url)
            page.wait_for_selector(f"{_card('cb-a')} .reach.ok", timeout=15_000)
            _wait_buttons(page, "cb-a", ["arm"])
            assert _buttons(page, "cb-a") == ["arm"]

            page.click(f"{_card('cb-a')} button.op-arm")
            page.click("#confirm-yes")
            _wait_phase(page, "cb-a", "ARMED", 10_000)
            page.wait_for_selector(f"{_card('cb-a')} .op-result.ok", timeout=5_000)
            assert page.inner_text(f"{_card('cb-a')} .op-result") == "arm: done, phase ARMED"
            _wait_buttons(page, "cb-a", ["disarm"])
            assert _buttons(page, "cb-a") == ["disarm"]

            _command(board, "event", name="release")
            _wait_phase(page, "cb-a", "DESCENT", 10_000)
            _wait_buttons(page, "cb-a", [])
            assert _buttons(page, "cb-a") == []

            # a disarm sent from a page a second late: the board ignores it, and the page says so
            status, body = _post_command(url, board.router, "disarm")
            assert status == 200 and body["result"]["changed"] is False, body
            page.wait_for_selector(f"{_card('cb-a')} .op-result.warn", timeout=10_000)
            res = page.locator(f"{_card('cb-a')} .op-result")
            assert res.inner_text() == "disarm ignored: in flight (phase DESCENT)"
            assert res.get_attribute("data-code") == "IGNORED"
            assert page.inner_text(f"{_card('cb-a')} .phase-name") == "DESCENT"
            page.screenshot(path=tmp_path / "ignored-disarm.png", full_page=True)
    finally:
        if mission is not None:
            mission.terminate()
            mission.wait(15)
        board.stop()
