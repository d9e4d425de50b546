"""After touchdown: the landed boards' download (previews first), its progress, then the exports.

Landed boards that serve are fetched with ``camctl fetch``'s code (through
:mod:`camctl.ground.mission.ground_link`: resumable, previews and event logs first, sha256 checked)
into ``<out>/ground``: one fetch at a time (it holds its folder), of every board ready then (see
:meth:`Recovery.update`). A scanner reports what is on disk: each board's previews (with their phase
and time from the release edge, from the fetch's ``thumbs/index.json``; the page gets at most
``previews_per_board`` of them per board, chosen by :func:`camctl.ground.mission.previews.pick`, and
the count of the others) and each board's bytes against its listing. When every reachable board has
been downloaded, the flight is exported (MP4 per camera, contact sheet, timeline) into
``<out>/export`` with the CLI's export code. Every report goes to ``emit(message)``.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from camctl.common.flightclock import frame_run
from camctl.ground.mission import ground_link
from camctl.ground.mission.previews import DEFAULT_LIMIT, pick

__all__ = ["Recovery"]

_SCAN_S = 0.25


class Recovery:
    """Downloads and exports for one mission (module docstring); ``close()`` is safe twice."""

    def __init__(self, out: Path, *, emit: Callable[[dict], None], curve: Any = None,
                 give_up_after_s: float = 30.0, retry_s: float = 10.0, settle_s: float = 5.0,
                 previews_per_board: int = DEFAULT_LIMIT) -> None:
        self.out = Path(out)
        self.ground = self.out / "ground"
        self.exports = self.out / "export"
        self._emit = emit
        self.curve = curve
        self.give_up_after_s = give_up_after_s
        # a failed download is tried again (resuming) this long after it failed
        self.retry_s = retry_s
        self.settle_s = settle_s  # after the first board lands, how long the others get to land too
        self._fetching = False
        self._first_ready: float | None = None
        self._lock = threading.Lock()
        self._scan_lock = threading.Lock()  # the scanner and a finishing fetch both scan
        self._stop = threading.Event()
        self.downloads: dict[str, dict] = {}  # board -> {url, flight, state, done, total, detail}
        # url path -> preview (every one on disk; metadata only)
        self.previews: dict[str, dict] = {}
        self.previews_per_board = previews_per_board
        # board -> its ``previews`` message (the ones the page shows)
        self.shown: dict[str, dict] = {}
        self.export: dict = {"type": "export", "state": "waiting"}
        self._threads: list[threading.Thread] = []
        self._scanner: threading.Thread | None = None
        self._exported_for: tuple = ()

    def close(self) -> None:
        self._stop.set()
        for t in [*self._threads, self._scanner]:
            if t is not None:
                t.join(timeout=5)  # daemon threads; a cut download resumes from its .part next time
        self._threads, self._scanner = [], None

    def download_states(self) -> dict[str, dict]:
        """board -> a copy of its download (state, done, total, detail, facts...)."""
        with self._lock:
            return {b: dict(d) for b, d in self.downloads.items()}

    def messages(self) -> list[dict]:
        """Everything a page that connects now needs to catch up."""
        with self._lock:
            out = [{"type": "download", "board": b, **d} for b, d in self.downloads.items()]
            out += list(self.shown.values())
            out.append(dict(self.export))
        return out

    def update(self, views: list[dict]) -> None:
        """On every board change: start a download of the newly landed boards, maybe the export.

        ``camctl fetch`` holds its output folder for the whole call, so one fetch runs at a time, of
        every board that is ready: once the first board lands, the others get ``settle_s`` to land
        too (they come down together), so their previews arrive together. A board that lands later,
        or whose download failed ``retry_s`` ago, goes in the next fetch."""
        now = time.monotonic()
        ready: list[tuple[str, str, str, int | None]] = []  # (name, url, flight, release_mono_ns)
        landing = False
        for v in views:
            st = v.get("status") or {}
            name, flight = v.get("name"), st.get("flight")
            if not v.get("reachable"):
                continue
            if not (st.get("phase") == "LANDED" and st.get("serving") and name and flight):
                landing = landing or st.get("phase") in ("DESCENT", "SEPARATION", "TOUCHDOWN",
                                                         "LANDED")
                continue
            with self._lock:
                d = self.downloads.get(name)
                if d is not None and d["flight"] == flight and (
                        d["state"] != "failed" or now - d["ended"] < self.retry_s):
                    continue
            release = v.get("release_mono_ns") or (d or {}).get("release_mono_ns")
            ready.append((name, v["url"], flight, release))
        with self._lock:
            if ready and self._first_ready is None:
                self._first_ready = now
            start = bool(ready) and not self._fetching and (
                not landing or now - (self._first_ready or now) >= self.settle_s)
            if start:
                self._fetching = True
                self._first_ready = None
                for name, url, flight, release in ready:
                    self.downloads[name] = {"url": url, "flight": flight, "state": "fetching",
                                            "done": 0, "total": 0, "detail": "",
                                            "release_mono_ns": release, "ended": 0.0}
                self.export = {"type": "export", "state": "waiting"}
                t = threading.Thread(target=self._fetch, args=([(n, u) for n, u, _f, _r in ready],),
                                     name="camctl-mission-fetch", daemon=True)
                self._threads.append(t)
                scanner = None
                if self._scanner is None:
                    scanner = self._scanner = threading.Thread(target=self._scan_loop,
                                                               name="camctl-mission-scan",
                                                               daemon=True)
        if start:
            t.start()
            if scanner is not None:
                scanner.start()
        self._maybe_export(views)

    # -- download ----------------------------------------------------------------------------------
    def _fetch(self, boards: list[tuple[str, str]]) -> None:
        """One ``camctl fetch`` of ``boards`` ([(name, url)]) into the ground folder."""
        results: dict[str, tuple[str, str]] = {}
        try:
            for name, url in boards:  # totals for the progress bars (a LIST each; tiny)
                try:
                    _board, total = ground_link.listing_total(url, curve=self.curve)
                except ground_link.LINK_ERRORS:
                    continue  # the fetch says what is wrong with this board
                with self._lock:
                    self.downloads[name]["total"] = total
            res = ground_link.fetch_boards([u for _n, u in boards], self.ground, curve=self.curve,
                                           give_up_after_s=self.give_up_after_s)
            for name, url in boards:
                r = res.get(url) or {"ok": False, "errors": ["not in the fetch report"]}
                results[name] = ("ok", "every file arrived, sha256 checked") if r["ok"] else \
                    ("failed", "; ".join(r["errors"][:3]) or "incomplete")
        except ground_link.LINK_ERRORS as exc:
            results = {name: ("failed", str(exc)) for name, _u in boards}
        self._scan()
        losses = {name: {**self._losses(name), "facts": self._facts(name, *results[name])}
                  for name in results}
        msgs = []
        with self._lock:
            for name, (state, detail) in results.items():
                self.downloads[name].update(state=state, detail=detail, ended=time.monotonic(),
                                            **losses[name])
                msgs.append({"type": "download", "board": name, **self.downloads[name]})
            self._fetching = False
        for msg in msgs:
            self._emit(msg)

    def _losses(self, board: str) -> dict:
        """What the board's downloaded event log says was lost (exact seqs, one line a loss; see
        :func:`ground_link.flight_losses`); nothing when its event log did not arrive or cannot be
        read (the download's state says why)."""
        with self._lock:
            flight = self.downloads[board]["flight"]
        root = self.ground / board / flight
        if not any((root / "events").glob("*.mcap")):
            return {}
        try:
            return ground_link.flight_losses(root)
        except Exception:  # a torn or odd event log: the download's report stands, without losses
            return {}

    def _facts(self, board: str, state: str, detail: str) -> dict | None:
        """What the downloaded flight says for the board's verdict (:func:`camctl.ground.verdict.
        from_summary`, as a dict); None when nothing of it is on the ground."""
        from dataclasses import asdict

        from camctl.ground.flights import find_flights, summarize_flight
        from camctl.ground.verdict import from_summary

        with self._lock:
            flight = self.downloads[board]["flight"]
        root = self.ground / board / flight
        try:
            refs = find_flights(root) if root.is_dir() else []
            if not refs:
                return None
            fl = summarize_flight(refs[0])
        except Exception:  # a torn download: the board's verdict waits for the next try
            return None
        return asdict(from_summary(fl, download_error="" if state == "ok" else detail))

    def _scan_loop(self) -> None:
        while not self._stop.wait(_SCAN_S):
            self._scan()

    def _scan(self) -> None:
        with self._scan_lock:
            self._scan_once()

    def _scan_once(self) -> None:
        with self._lock:
            jobs = {b: dict(d) for b, d in self.downloads.items()}
        for board, d in jobs.items():
            root = self.ground / board / d["flight"]
            done = 0
            if root.is_dir():
                for f in root.rglob("*"):
                    if (f.is_file() and f.parent.name != "thumbs"
                            and "thumbs" not in f.relative_to(root).parts):
                        done += f.stat().st_size
            release_ns = d.get("release_mono_ns")
            offsets = d.get("offsets")
            if (release_ns is None or offsets is None) and any((root / "events").glob("*.mcap")):
                # the event log, downloaded first, has the edge (the page came up after the
                # release) and how each run's clock maps onto the flight's (a reboot)
                try:
                    logged, offsets = ground_link.flight_time(root)
                except Exception:
                    # a torn or odd event log: previews go unlabelled, the download goes on
                    logged, offsets = None, None
                release_ns = release_ns if release_ns is not None else logged
                with self._lock:
                    self.downloads[board]["release_mono_ns"] = release_ns
                    self.downloads[board]["offsets"] = offsets
            if self._new_previews(board, root, release_ns, offsets or {0: 0}):
                self._emit(self._choose(board))
            with self._lock:
                cur = self.downloads[board]
                if cur["state"] == "fetching" and done != cur["done"]:
                    cur["done"] = done
                    msg = {"type": "download", "board": board, **cur}
                else:
                    msg = None
            if msg is not None:
                self._emit(msg)

    def _new_previews(self, board: str, root: Path, release_ns: int | None,
                      offsets: dict[int, int]) -> list[dict]:
        """The previews new on disk, each timed from the release on the flight's timeline (a
        preview's ``run`` in the index, 0 when absent, maps its time; an unknown run: no time)."""
        tdir = root / "thumbs"
        if not tdir.is_dir():
            return []
        try:
            index = json.loads((tdir / "index.json").read_text())
        except (OSError, ValueError):
            index = {}
        new = []
        for jpg in sorted(tdir.glob("*/*.jpg")):
            rel = jpg.relative_to(self.out).as_posix()
            if rel in self.previews:
                continue
            info = index.get(f"{jpg.parent.name}/{jpg.stem}") if isinstance(index, dict) else None
            if not isinstance(info, dict):
                continue  # its label is written right after the file: next scan
            ts = info.get("timestamp_ns")
            offset = offsets.get(frame_run(info))
            t_rel = (round((ts + offset - release_ns) / 1e9, 3)
                     if isinstance(ts, int) and release_ns is not None and offset is not None
                     else None)
            msg = {"board": board, "camera": jpg.parent.name, "seq": info.get("seq"),
                   "run": frame_run(info),
                   "phase": info.get("phase", ""), "t_rel_s": t_rel, "url": "/files/" + rel}
            with self._lock:
                self.previews[rel] = msg
            new.append(msg)
        return new

    def _choose(self, board: str) -> dict:
        """The board's ``previews`` message: the ones the page shows, and how many it does not."""
        with self._lock:
            mine = [m for m in self.previews.values() if m["board"] == board]
            shown = pick(mine, self.previews_per_board)
            msg = {"type": "previews", "board": board, "shown": shown, "total": len(mine),
                   "hidden": len(mine) - len(shown), "limit": self.previews_per_board}
            self.shown[board] = msg
        return msg

    # -- export ------------------------------------------------------------------------------------
    def _maybe_export(self, views: list[dict]) -> None:
        with self._lock:
            if (not self.downloads
                    or any(d["state"] == "fetching" for d in self.downloads.values())):
                return
            waiting = [v for v in views
                       if v.get("reachable") and v.get("name") not in self.downloads]
            key = tuple(sorted((b, d["flight"], d["state"]) for b, d in self.downloads.items()))
            if (waiting or key == self._exported_for
                    or not any(d["state"] == "ok" for d in self.downloads.values())):
                return
            self._exported_for = key
            self.export = {"type": "export", "state": "running"}
            msg = dict(self.export)
        self._emit(msg)
        t = threading.Thread(target=self._export, name="camctl-mission-export", daemon=True)
        self._threads.append(t)
        t.start()

    def _export(self) -> None:
        t0 = time.monotonic()
        try:
            res = ground_link.export_flights(self.ground, self.exports)
        except Exception as exc:  # an export failure is shown on the page; the downloads stay
            msg = {"type": "export", "state": "failed", "detail": f"{type(exc).__name__}: {exc}"}
        else:
            def url(p: Path) -> str:
                return "/files/" + p.resolve().relative_to(self.out.resolve()).as_posix()

            msg = {"type": "export", "state": "done", "seconds": round(time.monotonic() - t0, 2),
                   "contact_sheet": [url(p) for p in res["contact_sheet"]],
                   "timeline": [url(p) for p in res["timeline"]],
                   "mp4": [{"name": p.stem, "url": url(p)} for p in res["mp4"]]}
        with self._lock:
            self.export = msg
        self._emit(msg)
