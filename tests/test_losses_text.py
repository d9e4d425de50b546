"""The one line a loss is said in (camctl.common.losses), everywhere it is shown."""

from __future__ import annotations

from camctl.common.losses import describe_loss, lost_seqs, seq_ranges
from camctl.common.records import LossRecord


def test_seq_ranges_folds_runs_and_caps_the_text() -> None:
    assert seq_ranges([9, 3, 4, 5, 4]) == "3-5, 9"
    assert seq_ranges([]) == ""
    assert seq_ranges([1, 3, 5, 7], limit=2) == "1, 3, ... (+2 more)"


def test_a_loss_names_its_exact_seqs_where_and_why() -> None:
    loss = LossRecord(camera="down", segment="down/000002.mcap", range=(100, 900),
                      reason="finished segment cut short", seqs=(12, 10, 11))
    assert lost_seqs(loss) == (10, 11, 12)
    assert describe_loss(loss) == ("down: 3 frames lost (seqs 10-12) in down/000002.mcap "
                                   "bytes 100..900: finished segment cut short")
    one = LossRecord(camera="up", seqs=(4,))
    assert describe_loss(one) == "up: 1 frame lost (seqs 4)"
    assert describe_loss(LossRecord(camera="up", seqs=())) == "up: no frame lost"


def test_an_old_record_without_seqs_says_so_and_never_prints_none() -> None:
    text = describe_loss(LossRecord(camera="down", seq_after=None, seq_before=7))
    assert "None" not in text
    assert text == "down: frames lost between start and seq 7 (seqs not recorded)"
