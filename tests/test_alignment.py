"""Multi-board alignment says what it did: boards share a zero only on a GPIO edge every one of them
saw; a board without it is marked unaligned (with the reason) in export and ls, never shifted
silently."""

from __future__ import annotations

import json
from pathlib import Path

from camctl.board.config import StoreConfig
from camctl.ground.export import align_set, export_all
from camctl.ground.export.flightset import Flight, load_flight
from camctl.ground.flights import find_flights, summarize_flight
from camctl.store import FlightStore

NS = 1_000_000_000
WALL0 = 1_767_225_600 * NS
FLIGHT = "20260101T000000Z"


def board(root: Path, name: str, base_ns: int, edges: list[tuple[str, str, str, float]]) -> None:
    """A flight whose event log holds these phase changes: (phase entered, event, source, s)."""
    store = FlightStore(root / name, name, FLIGHT, StoreConfig(commit_interval_ms=50),
                        cameras=["down"])
    prev = "SAFE"
    for phase, event, source, t_s in edges:
        mono = base_ns + int(t_s * NS)
        store.log_event({"kind": "phase", "name": phase, "phase_from": prev, "phase_to": phase,
                         "event": event, "source": source, "mono_ns": mono,
                         "wall_ns": WALL0 + int(t_s * NS), "skipped": []})
        prev = phase
    store.close()


A = [("ARMED", "arm", "gpio", -5.0), ("DESCENT", "release", "gpio", 0.0),
     ("SEPARATION", "separation", "gpio", 3.0), ("TOUCHDOWN", "touchdown", "gpio", 8.0)]


def flights(root: Path) -> list[Flight]:
    return [load_flight(r) for r in find_flights(root)]


def fly_pair(root: Path, b_edges: list[tuple[str, str, str, float]]
             ) -> tuple[Flight, Flight, dict[str, dict]]:
    """rig-a flies ``A`` (release at 1000 s on its clock); rig-b (its clock at 9000 s), armed like
    it, goes on by ``b_edges``; both loaded and aligned."""
    board(root, "rig-a", 1_000 * NS, A)
    board(root, "rig-b", 9_000 * NS, [A[0], *b_edges])
    fa, fb = flights(root)
    return fa, fb, align_set([fa, fb])


def test_a_board_without_the_release_edge_is_unaligned_not_shifted(tmp_path: Path) -> None:
    # rig-b's release and separation lines both failed: it went on by a timer and an operator
    fa, fb, report = fly_pair(tmp_path, [("SEPARATION", "separation", "operator", 3.0),
                                         ("TOUCHDOWN", "timeout", "timer", 9.0)])
    assert report["rig-a"] == {"aligned": True, "edge": "release", "reason": ""}
    assert report["rig-b"]["aligned"] is False and report["rig-b"]["edge"] is None
    assert "no 'release' edge" in report["rig-b"]["reason"]
    assert fa.t0_ns == 1_000 * NS
    # its own first event, not its separation
    assert fb.t0_ns == 9_000 * NS - 5 * NS and not fb.tb.aligned
    # ls says it too (a board alone: no release edge there either)
    ls_b = summarize_flight(find_flights(tmp_path / "rig-b")[0])
    assert ls_b["aligned"] is False and "no 'release' edge" in ls_b["unaligned_reason"]
    assert summarize_flight(find_flights(tmp_path / "rig-a")[0])["aligned"] is True
    res = export_all(tmp_path, tmp_path / "export", mp4=False, contact_sheet=False, timeline=False)
    assert any("rig-b is UNALIGNED" in n and "release" in n for n in res.notes), res.notes
    written = json.loads((tmp_path / "export" / FLIGHT / "alignment.json").read_text())
    assert written["rig-b"]["aligned"] is False and written["rig-a"]["edge"] == "release"


def test_boards_align_on_the_edge_every_board_saw(tmp_path: Path) -> None:
    # rig-b missed release but saw separation on its own line at the same moment
    fa, fb, report = fly_pair(tmp_path, [("SEPARATION", "separation", "gpio", 3.0),
                                         ("TOUCHDOWN", "touchdown", "gpio", 8.0)])
    assert {b: (r["aligned"], r["edge"]) for b, r in report.items()} == {
        "rig-a": (True, "separation"), "rig-b": (True, "separation")}
    # on the common zero, the shared touchdown edge lands at the same relative time on both boards
    assert fa.rel(fa.tb.event_ns["touchdown"]) == fb.rel(fb.tb.event_ns["touchdown"]) == 5.0
    # both saw release: release wins over an earlier-listed shared edge
    board(tmp_path / "two", "rig-a", 1_000 * NS, A)
    board(tmp_path / "two", "rig-b", 5_000 * NS, A)
    assert {r["edge"] for r in align_set(flights(tmp_path / "two")).values()} == {"release"}
