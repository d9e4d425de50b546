"""The mission page's layout at desktop size and on a phone (390x844), in Debian's chromium.

Two ``camctl run`` sim boards and a mission page in this process; one page per viewport, each
loaded once and kept live through a short drop (plus a card with a long flight's widest values,
drawn by the page's own renderer). Before the drop (every check shown) and after the
export (download bars, previews, sheets, videos), each page must fit its viewport with no
horizontal scroll and every card's field, camera cell and check inside it. A preview opens larger
on a tap and closes with Escape; no request of either page fails, and ``/favicon.ico`` answers.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from camctl.demo import _command, start_board, write_board_config
from camctl.ground.mission.browser import chromium, find_chromium

pytestmark = pytest.mark.skipif(find_chromium() is None,
                                reason="needs Debian's chromium "
                                       "(.ci/run installs it: apt-get install chromium)")
BOARDS = ("ph-a", "ph-b")
DESKTOP, PHONE = (1400, 1000), (390, 844)

# every element a conductor reads on a card; each must be inside the viewport's width
CARD = [".card .head > *", ".card .phase", ".card .facts > span:not(:empty)", ".card tbody td"]
BEFORE = [*CARD, ".card .checks li", "#banner li", ".card .sensors > span"]
FLOWN = ".card[data-board^=ph-]"  # the boards that flew (not the long-flight card)
AFTER = [*CARD, f"{FLOWN} .download progress", f"{FLOWN} .download .dim",
         f"{FLOWN} .previews figure", "#flight h2", "#flight img", "#flight video"]

# problems of the page's layout, as text: wider than the viewport, or an element cut off / not shown
_LAYOUT = """(sels) => {
  const W = window.innerWidth, out = [];
  const sw = document.scrollingElement.scrollWidth;
  if (sw > W) out.push(`page is ${sw} px wide in a ${W} px viewport`);
  for (const sel of sels) {
    const els = [...document.querySelectorAll(sel)];
    if (!els.length) out.push(`${sel}: none on the page`);
    for (const e of els) {
      const r = e.getBoundingClientRect();
      const what = `${sel} "${(e.textContent || "").trim().slice(0, 30)}"`;
      if (r.width <= 0 || r.height <= 0) out.push(`${what}: not shown`);
      else if (r.left < -0.5 || r.right > W + 0.5)
        out.push(`${what}: x ${r.left.toFixed(0)}..${r.right.toFixed(0)} outside 0..${W}`);
    }
  }
  // a camera's cell reads on one line (not squeezed into a word a line)
  for (const td of document.querySelectorAll(".card tbody td")) {
    const em = parseFloat(getComputedStyle(td).fontSize);
    const lines = td.getBoundingClientRect().height / (em * 1.6);
    if (lines > 1) out.push(`cell "${td.textContent}" wraps over ${Math.ceil(lines)} lines`);
  }
  // a camera's cell says its column: by the column's header or, the header hidden, a label of its
  // own (the first cell, the camera's name, heads its row)
  for (const td of document.querySelectorAll(".card tbody td:not(:first-child)")) {
    const head = td.closest("table").tHead, th = head && head.rows[0].cells[td.cellIndex];
    const box = head && head.getBoundingClientRect();
    if (!th || (box.width > 1 && box.height > 1 && th.getBoundingClientRect().width > 1)) continue;
    const label = getComputedStyle(td, "::before").content;
    if (!label.includes(th.textContent))
      out.push(`cell "${td.textContent}" of ${th.textContent}: no header shown, label ${label}`);
  }
  return out;
}"""


# a third card through the page's own renderer: a real board's view with the widest values a long
# flight shows (a camera restarting, six-digit counts), which must fit a phone too
_LONG_FLIGHT = """() => {
  const view = JSON.parse(JSON.stringify([...state.boards.values()][0].view));
  Object.assign(view, { url: "tcp://long-flight.example:5555", name: "long-flight" });
  for (const cam of Object.values(view.status.cameras))
    Object.assign(cam, { state: "restarting", fps: 29.9, target_fps: 30, frames_captured: 108000,
                         durable_frames: 107999, dropped: 12345, faults: 321 });
  // sensors (issue 29): a high site's altitude that changed by kilometres, a dead IMU
  view.status.sensors = {
    "nose-imu": { kind: "imu", ok: false, error: "nose-imu lsm6dsox on /dev/i2c-1 at 0x6A: gone",
                  last: { accel_g: 15.9876 } },
    "tail-imu": { kind: "imu", ok: true, last: { accel_g: 15.9876 } },
    "baro-main": { kind: "baro", ok: true, last: { pressure_pa: 35000, altitude_m: 8123.4 } } };
  view.sensor_base = { "baro-main": { at: "arming", altitude_m: -412.3 } };
  handle({ type: "board", view });
}"""


def _card(board: str) -> str:
    return f'section.card[data-board="{board}"]'


def _layout(page: Any, sels: list[str], label: str, shots: Path) -> list[str]:
    page.screenshot(path=shots / f"{label}.png", full_page=True)
    return [f"{label}: {p}" for p in page.evaluate(_LAYOUT, sels)]


def _wait_all(page: Any, board_sel: str, timeout_ms: int) -> None:
    for b in BOARDS:
        page.wait_for_selector(f"{_card(b)} {board_sel}", timeout=timeout_ms)


def _preview_opens_larger(page: Any, label: str, shots: Path) -> list[str]:
    """Tap the first preview: it must open larger inside the viewport and close with Escape."""
    thumb = page.locator(".card .previews figure.preview img").first
    small = thumb.bounding_box()
    thumb.click()
    try:
        page.wait_for_selector("dialog#lightbox[open] img", timeout=3_000)
    except Exception:  # the check's answer, not an error of the test
        return [f"{label}: a tapped preview opened nothing"]
    page.wait_for_function("() => document.querySelector('#lightbox img').complete")
    page.screenshot(path=shots / f"{label}-larger.png")
    big = page.locator("dialog#lightbox[open] img").bounding_box()
    problems = []
    width = page.evaluate("window.innerWidth")
    if big is None or big["width"] < 1.5 * small["width"]:
        problems.append(f"{label}: preview {small} opened at {big}")
    elif big["x"] < 0 or big["x"] + big["width"] > width + 0.5:
        problems.append(f"{label}: the opened preview is outside the viewport: {big}")
    page.keyboard.press("Escape")
    try:
        page.wait_for_selector("dialog#lightbox[open]", state="detached", timeout=3_000)
    except Exception:
        problems.append(f"{label}: Escape did not close the opened preview")
    return problems


def test_mission_page_fits_a_phone_and_the_desktop(tmp_path: Path) -> None:
    from camctl.ground.mission import serve

    boards, server, problems = [], None, []
    failed: list[str] = []  # every request of the pages that did not succeed
    try:
        for i, name in enumerate(BOARDS):
            cfg = write_board_config(tmp_path / name, name, i, size=(320, 240), descent_s=4.0,
                                     post_touchdown_s=0.3, reserve_mb=0)
            boards.append(start_board(cfg, tmp_path / name / "store", name))
        server = serve([b.router for b in boards], tmp_path / "mission", port=0)
        with chromium(tmp_path / "chromium-profile", viewport=DESKTOP) as ctx:
            pages = {"desktop": ctx.new_page(), "phone": ctx.new_page()}
            pages["phone"].set_viewport_size({"width": PHONE[0], "height": PHONE[1]})
            for label, page in pages.items():
                page.on("response", lambda r, label=label: r.status >= 400 and failed.append(
                    f"{label}: {r.status} {r.url}"))
                page.on("requestfailed", lambda r, label=label: failed.append(
                    f"{label}: failed {r.url}"))
                page.goto(server.url)
            for label, page in pages.items():  # before the drop: every check is shown
                _wait_all(page, ".reach.ok", 15_000)
                _wait_all(page, ".checks li", 10_000)
                _wait_all(page, "tbody td", 10_000)
                page.evaluate(_LONG_FLIGHT)
                problems += _layout(page, BEFORE + (["th"] if label == "desktop" else []),
                                    f"{label}-before", tmp_path)

            for verb, args, pause in (("arm", {}, 0.6), ("event", {"name": "release"}, 1.2),
                                      ("event", {"name": "touchdown"}, 0.0)):
                for b in boards:
                    _command(b, verb, **args)
                time.sleep(pause)  # the phase's length (the scenario, not a wait)
            for label, page in pages.items():  # after the export: downloads, previews, videos
                _wait_all(page, ".download[data-state=ok]", 60_000)
                _wait_all(page, ".previews figure.preview img", 30_000)
                page.wait_for_selector("#flight video", timeout=90_000)
                page.wait_for_function(
                    "() => [...document.querySelectorAll('#flight img, .previews img')]"
                    ".every(i => i.complete && i.naturalWidth > 0)", timeout=20_000)
                problems += _layout(page, AFTER + (["th"] if label == "desktop" else []),
                                    f"{label}-after", tmp_path)
                problems += _preview_opens_larger(page, label, tmp_path)
            favicon = pages["desktop"].request.get(server.url.rstrip("/") + "/favicon.ico")
            if favicon.status != 200 or "image/" not in favicon.headers.get("content-type", ""):
                problems.append(f"/favicon.ico: {favicon.status} "
                                f"{favicon.headers.get('content-type')}")
            icon = pages["phone"].evaluate(
                "() => document.querySelector('link[rel~=icon]')?.getAttribute('href')")
            if icon is None:
                problems.append("the page names no icon (<link rel=icon>)")
    finally:
        if server is not None:
            server.close()
        for b in boards:
            b.stop()
    print(f"screenshots in {tmp_path}")
    assert not problems + failed, "\n".join(problems + failed)
