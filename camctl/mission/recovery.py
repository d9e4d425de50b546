"""After touchdown: each landed board's download (previews first), its progress, then the exports.

A board that is LANDED and serving gets a fetch of its own (``camctl fetch``'s code through
:mod:`camctl.mission.ground_link`: resumable, previews and event log first, sha256 checked) into
``<out>/ground``. A scanner reports what is on disk: each new preview (with its phase and time from the
release edge, from the fetch's ``thumbs/index.json``) and the bytes received against the board's listing.
When every board has either downloaded or is unreachable, the flight is exported (MP4 per camera, contact
sheet, timeline) into ``<out>/export`` with the CLI's export code. Every report goes to ``emit(message)``.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from camctl.mission import ground_link

__all__ = ["Recovery"]

_SCAN_S = 0.25


class Recovery:
    """Downloads and exports for one mission; see the module docstring. ``close()`` is safe twice."""

    def __init__(self, out: Path, *, emit: Callable[[dict], None], curve: Any = None,
                 give_up_after_s: float = 30.0) -> None:
        self.out = Path(out)
        self.ground = self.out / "ground"
        self.exports = self.out / "export"
        self._emit = emit
        self.curve = curve
        self.give_up_after_s = give_up_after_s
        self._lock = threading.Lock()
        self._scan_lock = threading.Lock()  # the scanner and a finishing fetch both scan
        # camctl fetch locks its folder (one fetch per --out, camctl.ground.download.lock_folder): boards that
        # land together take turns instead of the second failing at once
        self._fetch_turn = threading.Lock()
        self._stop = threading.Event()
        self.downloads: dict[str, dict] = {}  # board -> {url, flight, state, done, total, detail}
        self.previews: dict[str, dict] = {}  # url path -> preview message
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

    def messages(self) -> list[dict]:
        """Everything a page that connects now needs to catch up."""
        with self._lock:
            out = [{"type": "download", "board": b, **d} for b, d in self.downloads.items()]
            out += list(self.previews.values())
            out.append(dict(self.export))
        return out

    def update(self, views: list[dict]) -> None:
        """Called on every board change: start downloads of newly landed boards, maybe the export."""
        for v in views:
            st = v.get("status") or {}
            name, flight = v.get("name"), st.get("flight")
            if not (v.get("reachable") and st.get("phase") == "LANDED" and st.get("serving") and name and flight):
                continue
            with self._lock:
                d = self.downloads.get(name)
                if d is not None and d["flight"] == flight:
                    continue
                self.downloads[name] = {"url": v["url"], "flight": flight, "state": "fetching", "done": 0,
                                        "total": 0, "detail": "", "release_mono_ns": v.get("release_mono_ns")}
                self.export = {"type": "export", "state": "waiting"}
                t = threading.Thread(target=self._fetch, args=(name, v["url"]), name=f"camctl-mission-fetch-{name}",
                                     daemon=True)
                self._threads.append(t)
                scanner = None
                if self._scanner is None:
                    scanner = self._scanner = threading.Thread(target=self._scan_loop, name="camctl-mission-scan",
                                                               daemon=True)
            t.start()
            if scanner is not None:
                scanner.start()
        self._maybe_export(views)

    # -- download ------------------------------------------------------------------------------------
    def _fetch(self, name: str, url: str) -> None:
        try:
            _board, total = ground_link.listing_total(url, curve=self.curve)
            with self._lock:
                self.downloads[name]["total"] = total
            with self._fetch_turn:
                res = ground_link.fetch_board(url, self.ground, curve=self.curve,
                                              give_up_after_s=self.give_up_after_s)
            state, detail = ("ok", "every file arrived, sha256 checked") if res["ok"] else \
                ("failed", "; ".join(res["errors"][:3]) or res["summary"])
        except ground_link.LINK_ERRORS as exc:
            state, detail = "failed", str(exc)
        self._scan()
        with self._lock:
            self.downloads[name].update(state=state, detail=detail)
            msg = {"type": "download", "board": name, **self.downloads[name]}
        self._emit(msg)

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
                    if f.is_file() and f.parent.name != "thumbs" and "thumbs" not in f.relative_to(root).parts:
                        done += f.stat().st_size
            release_ns = d.get("release_mono_ns")
            if release_ns is None and any((root / "events").glob("*.mcap")):
                # the page came up after the release: the downloaded event log (fetched first) has the edge
                try:
                    release_ns = ground_link.release_mono_ns(root)
                except Exception:  # a torn or odd event log: previews go unlabelled, the download goes on
                    release_ns = None
                if release_ns is not None:
                    with self._lock:
                        self.downloads[board]["release_mono_ns"] = release_ns
            for msg in self._new_previews(board, root, release_ns):
                self._emit(msg)
            with self._lock:
                cur = self.downloads[board]
                if cur["state"] == "fetching" and done != cur["done"]:
                    cur["done"] = done
                    msg = {"type": "download", "board": board, **cur}
                else:
                    msg = None
            if msg is not None:
                self._emit(msg)

    def _new_previews(self, board: str, root: Path, release_ns: int | None) -> list[dict]:
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
            t_rel = round((ts - release_ns) / 1e9, 3) if isinstance(ts, int) and release_ns is not None else None
            msg = {"type": "preview", "board": board, "camera": jpg.parent.name, "seq": info.get("seq"),
                   "phase": info.get("phase", ""), "t_rel_s": t_rel, "url": "/files/" + rel}
            with self._lock:
                self.previews[rel] = msg
            new.append(msg)
        return new

    # -- export --------------------------------------------------------------------------------------
    def _maybe_export(self, views: list[dict]) -> None:
        with self._lock:
            if not self.downloads or any(d["state"] == "fetching" for d in self.downloads.values()):
                return
            waiting = [v for v in views if v.get("reachable") and v.get("name") not in self.downloads]
            key = tuple(sorted((b, d["flight"]) for b, d in self.downloads.items()))
            if waiting or key == self._exported_for or not any(d["state"] == "ok" for d in self.downloads.values()):
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
