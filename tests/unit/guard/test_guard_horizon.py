"""Which touch rows the windows hold (`guard/horizon.py`): each row is merged once, an id
committed late (PostgreSQL can commit ids out of order) is still merged, and our own batches
prove the windows complete only when nothing else was written in between."""

from __future__ import annotations

from rempart.guard import horizon
from rempart.guard.horizon import Horizon


def _rows(*ids: int) -> list[tuple[int, str]]:
    return [(i, f"row {i}") for i in ids]


def test_a_late_id_is_asked_for_again_and_merged_once() -> None:
    h = Horizon()
    h.high = 10
    assert [r[0] for r in h.fresh(_rows(11, 13, 14), now=0.0)] == [11, 13, 14]
    assert h.high == 14
    assert h.floor() == 11  # 12 is missing: the next poll asks from above 11
    # The next poll sees 13 and 14 again (they are above the floor): not merged twice.
    assert [r[0] for r in h.fresh(_rows(12, 13, 14, 15), now=1.0)] == [12, 15]
    assert h.floor() == 15


def test_a_gap_is_given_up_after_a_while() -> None:
    h = Horizon()
    h.high = 0
    h.fresh(_rows(2), now=0.0)
    assert h.floor() == 0
    h.fresh([], now=horizon.GAP_SECONDS + 1)
    assert h.floor() == 2


def test_our_own_batch_proves_the_windows_complete_only_when_it_follows() -> None:
    h = Horizon()
    h.high = 5
    assert h.own([6, 7, 8], proof=True)
    assert h.high == 8
    assert not h.own([10, 11], proof=True)  # 9 was someone else's: not proven
    assert h.high == 8
    # The poll then brings 9, 10 and 11: only 9 is new to the windows.
    assert [r[0] for r in h.fresh(_rows(9, 10, 11), now=0.0)] == [9]
    assert not h.own([12], proof=False)  # written beside other rows: never a proof


def test_rows_loaded_with_an_account_are_not_merged_again() -> None:
    h = Horizon()
    h.high = 3
    h.loaded([2, 4, 5])  # 2 is below the floor: the poll never asks for it
    assert [r[0] for r in h.fresh(_rows(4, 5, 6), now=0.0)] == [6]


def test_a_jump_of_the_sequence_is_not_a_gap() -> None:
    h = Horizon()
    h.high = 1
    h.fresh(_rows(2 + horizon.JUMP), now=0.0)
    assert h.floor() == 2 + horizon.JUMP
    h.forget()
    assert h.high is None
