"""How a loss of stored frames is said, the same on the board and the ground.

A :class:`~camctl.common.records.LossRecord` names the frames it cost in ``seqs``: the exact seqs
of the records the lost byte range held, for every kind of loss (a torn tail, a damaged chunk, a
segment cut short or zeroed after it was finished). ``seqs == ()`` says the range held no frame;
``seqs is None`` only comes from a record written before seqs were exact (then ``seq_after`` /
``seq_before`` bound the gap). :func:`describe_loss` is the one line ``ls``, ``ls --connect``,
``verify``, the export's notes and the mission page print for a loss.

Example::

    >>> seq_ranges([3, 4, 5, 9])
    '3-5, 9'
    >>> describe_loss(LossRecord(camera="down", segment="down/000001.mcap", range=(10, 90),
    ...                          reason="damaged: fails its check", seqs=(3, 4, 5, 9)))
    'down: 4 frames lost (seqs 3-5, 9) in down/000001.mcap bytes 10..90: damaged: fails its check'
"""

from __future__ import annotations

from collections.abc import Iterable

from camctl.common.records import LossRecord

__all__ = ["describe_loss", "lost_seqs", "ranges_of_seqs", "seq_ranges"]


def ranges_of_seqs(seqs: Iterable[int]) -> list[list[int]]:
    """Seqs -> compact inclusive ``[[a, b], ...]`` runs (an index entry's ``seq_ranges``)."""
    runs: list[list[int]] = []
    for q in sorted(set(seqs)):
        if runs and q == runs[-1][1] + 1:
            runs[-1][1] = q
        else:
            runs.append([q, q])
    return runs


def seq_ranges(seqs: Iterable[int], *, limit: int = 12) -> str:
    """``[3, 4, 5, 9]`` -> ``"3-5, 9"``; after ``limit`` runs, ``", ... (+N more)"``."""
    runs = ranges_of_seqs(seqs)
    text = [f"{a}-{b}" if b > a else str(a) for a, b in runs[:limit]]
    if len(runs) > limit:
        text.append(f"... (+{sum(b - a + 1 for a, b in runs[limit:])} more)")
    return ", ".join(text)


def lost_seqs(loss: LossRecord) -> tuple[int, ...] | None:
    """The exact seqs a loss cost (None: an old record that does not say)."""
    return None if loss.seqs is None else tuple(sorted(set(loss.seqs)))


def describe_loss(loss: LossRecord) -> str:
    """One line for a loss: camera, how many frames and which seqs, where, why."""
    seqs = lost_seqs(loss)
    if seqs is None:
        after = "start" if loss.seq_after is None else f"seq {loss.seq_after}"
        before = "end" if loss.seq_before is None else f"seq {loss.seq_before}"
        what = f"frames lost between {after} and {before} (seqs not recorded)"
    elif not seqs:
        what = "no frame lost"
    else:
        n = len(seqs)
        what = f"{n} frame{'s' if n != 1 else ''} lost (seqs {seq_ranges(seqs)})"
        samples = loss.extra.get("samples")  # a sensor's loss: its seqs are sample batches
        if isinstance(samples, int) and not isinstance(samples, bool):
            least = "at least " if loss.extra.get("samples_at_least") else ""
            what = (f"{n} sample batch{'es' if n != 1 else ''} ({least}{samples:,} samples) lost "
                    f"(seqs {seq_ranges(seqs)})")
    where = f" in {loss.segment}" if loss.segment else ""
    if loss.range is not None:
        where += f" bytes {loss.range[0]}..{loss.range[1]}"
    why = f": {loss.reason}" if loss.reason else ""
    return f"{loss.camera}: {what}{where}{why}"
