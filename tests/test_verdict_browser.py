"""The mission page in Debian's chromium when a board dies in flight: two ``camctl run`` sim boards,
one killed with SIGKILL in DESCENT, the other landed and downloaded. One page load, at a phone's
size (390x844): the dead board's card says LOST CONTACT in DESCENT at T+..., its clock stopped;
the banner never says LANDED but names it; each card shows its verdict; the export's badge says
how many boards it holds, not a bare "done"; the page still fits the phone.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from camctl.demo import _command, start_board, write_board_config
from camctl.ground.mission.browser import chromium, find_chromium

pytestmark = pytest.mark.skipif(find_chromium() is None,
                                reason="needs Debian's chromium "
                                       "(.ci/run installs it: apt-get install chromium)")


def _card(board: str) -> str:
    return f'section.card[data-board="{board}"]'


def test_a_board_killed_in_descent_is_lost_on_the_page(tmp_path: Path) -> None:
    from camctl.ground.mission import serve

    boards, server = [], None
    try:
        for i, name in enumerate(("vb-a", "vb-b")):
            cfg = write_board_config(tmp_path / name, name, i, size=(160, 120), descent_s=30,
                                     post_touchdown_s=0.3, reserve_mb=0)
            boards.append(start_board(cfg, tmp_path / name / "store", name))
        a, b = boards
        server = serve([a.router, b.router], tmp_path / "mission", port=0)
        with chromium(tmp_path / "chromium-profile", viewport=(390, 844)) as ctx:
            page = ctx.new_page()
            page.goto(server.url)
            for name in ("vb-a", "vb-b"):
                page.wait_for_selector(f"{_card(name)} .reach.ok", timeout=15_000)
            for x in boards:
                _command(x, "arm")
            time.sleep(0.5)  # pre-trigger frames (the scenario, not a wait)
            for x in boards:
                _command(x, "event", name="release")
            page.wait_for_function(
                "sel => /T\\+/.test(document.querySelector(sel).textContent)",
                arg=f"{_card('vb-b')} .clock", timeout=10_000)
            time.sleep(1.0)  # a second of descent
            b.kill9()
            _command(a, "event", name="touchdown")
            page.wait_for_selector(f"{_card('vb-b')}.lost", timeout=10_000)
            phase = page.inner_text(f"{_card('vb-b')} .phase-name")
            assert re.fullmatch(r"LOST CONTACT in DESCENT at T\+\d+\.\d\d s", phase), phase
            # its clock stopped: no T+ still counting beside the phase
            assert page.inner_text(f"{_card('vb-b')} .clock") == ""
            page.wait_for_selector(f"{_card('vb-a')}[data-verdict=RECORDED]", timeout=60_000)
            page.wait_for_selector(f"{_card('vb-b')}[data-verdict=LOST]", timeout=10_000)
            assert page.inner_text("#verdict") == "LOST CONTACT"
            first = page.locator("#failing li").first.inner_text()
            assert first.startswith("1 of 2 boards landed; vb-b: lost contact in DESCENT at T+")
            why = page.inner_text(f"{_card('vb-b')} .verdict-reason")
            assert why.startswith("LOST: lost contact in DESCENT at T+"), why
            assert page.inner_text(f"{_card('vb-a')} .verdict").strip() == "RECORDED"
            page.wait_for_function(
                "() => document.getElementById('export-state').textContent.startsWith('done')",
                timeout=90_000)
            badge = page.inner_text("#export-state")
            detail = page.inner_text("#export-detail")
            page.screenshot(path=tmp_path / "lost.png", full_page=True)
            wide = page.evaluate("document.scrollingElement.scrollWidth")
            time.sleep(0.3)  # three ticks of the page's clock (a negative check)
            assert page.inner_text(f"{_card('vb-b')} .clock") == ""
    finally:
        if server is not None:
            server.close()
        for x in boards:
            x.stop()
    assert badge == "done: 1 of 2 boards recorded", badge
    assert detail.startswith("vb-b: LOST: lost contact in DESCENT at T+"), detail
    assert wide <= 390, f"page {wide} px wide on a 390 px phone"
    print(f"screenshot: {tmp_path / 'lost.png'}")
