"""Which previews of a board the page shows: at most N, the most useful, and how many are hidden.

A long flight brings thousands of previews; the page keeps a board's strip to ``limit`` images so it
stays light. The budget is shared between the board's cameras (a camera with few previews leaves its
share to the others); within a camera the first preview of each phase (the moment of release,
separation, touchdown...) and the last one are kept first, and the rest of the share is spread
evenly over the flight between them.

Example::

    >>> ps = [{"camera": "down", "seq": i, "phase": "DESCENT" if i > 5 else "ARMED"}
    ...       for i in range(100)]
    >>> shown = pick(ps, 4)
    >>> [p["seq"] for p in shown]
    [0, 6, 50, 99]
"""

from __future__ import annotations

__all__ = ["DEFAULT_LIMIT", "pick"]

DEFAULT_LIMIT = 24


def _key(p: dict) -> tuple:
    """Flight order within a camera: by run of the board's daemon (a resumed flight's sensor seqs
    start at 0 again; 0 when not given), then seq."""
    seq, run = p.get("seq"), p.get("run")
    return (p.get("camera") or "", run if isinstance(run, int) else 0,
            seq if isinstance(seq, int) else -1, p.get("url") or "")


def _spread(items: list, k: int) -> list:
    """``k`` items spread evenly over ``items`` (the ends included when k >= 2)."""
    if k <= 0:
        return []
    if k >= len(items):
        return list(items)
    if k == 1:
        return [items[len(items) // 2]]
    return [items[round(i * (len(items) - 1) / (k - 1))] for i in range(k)]


def _pick_camera(items: list[dict], k: int) -> list[dict]:
    if len(items) <= k:
        return items
    must = [i for i, p in enumerate(items) if i == 0 or p.get("phase") != items[i - 1].get("phase")]
    if len(items) - 1 not in must:
        must.append(len(items) - 1)
    if len(must) >= k:
        chosen = set(_spread(must, k))
    else:
        rest = [i for i in range(len(items)) if i not in set(must)]
        gaps = k - len(must)  # evenly between, away from the ends the must-list already holds
        chosen = set(must) | {rest[min(len(rest) - 1, int((j + 0.5) * len(rest) / gaps))]
                              for j in range(gaps)}
    return [items[i] for i in sorted(chosen)]


def pick(previews: list[dict], limit: int = DEFAULT_LIMIT) -> list[dict]:
    """At most ``limit`` of one board's preview messages (``camera``, ``run``, ``seq``,
    ``phase``), in camera and flight order (run, then sequence); see the module docstring."""
    by_cam: dict[str, list[dict]] = {}
    for p in sorted(previews, key=_key):
        by_cam.setdefault(p.get("camera") or "", []).append(p)
    quotas: dict[str, int] = {}
    left = max(0, limit)
    for i, (cam, items) in enumerate(sorted(by_cam.items(), key=lambda kv: len(kv[1]))):
        share = left // (len(by_cam) - i)
        quotas[cam] = min(len(items), share)
        left -= quotas[cam]
    return [p for cam in sorted(by_cam) for p in _pick_camera(by_cam[cam], quotas[cam])]
