"""Which `guard_touch` rows this process's windows already hold (the ledger's bookkeeping).

Ids come from one counter, but PostgreSQL can commit them out of order: an id the poll does not
see yet may still come (a gap, asked for again for `GAP_SECONDS`). The poll asks from the
floor, the lowest gap or else the highest id merged; ids above it that the windows hold already
(this process's own batches, rows loaded with an account) are remembered so that no poll counts
them twice. Not thread-safe: the ledger calls it under its state lock.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

GAP_SECONDS = 5.0
JUMP = 50_000  # a step of the sequence larger than this is a jump, not gaps to wait for


class Horizon:
    def __init__(self) -> None:
        self.high: int | None = None  # highest guard_touch id merged (None: not known yet)
        self._gaps: dict[int, float] = {}  # ids not yet visible -> when first missed
        self._seen: set[int] = set()  # ids above the floor already in the windows

    def floor(self) -> int:
        assert self.high is not None
        return min(self._gaps) - 1 if self._gaps else self.high

    def own(self, ordered: list[int], proof: bool) -> bool:
        """Our own rows, in id order. True when they follow the last id merged with no gap:
        no other process wrote in between, and the windows are complete up to them."""
        if (
            proof
            and ordered
            and self.high is not None
            and not self._gaps
            and ordered[0] == self.high + 1
            and ordered[-1] - ordered[0] == len(ordered) - 1
        ):
            self.high = ordered[-1]
            return True
        self._seen.update(ordered)
        return False

    def loaded(self, ids: Iterable[int]) -> None:
        """Rows loaded with an account's window: a later poll must not count them again."""
        low = self.floor()
        self._seen.update(i for i in ids if i > low)

    def fresh(self, rows: Sequence[tuple[Any, ...]], now: float) -> list[tuple[Any, ...]]:
        """The poll's rows (id first, in id order) that the windows do not hold yet; notes the
        ids missing below the highest as gaps, and forgets gaps older than GAP_SECONDS."""
        assert self.high is not None
        top = self.high
        got = set()
        out = []
        for row in rows:
            row_id = row[0]
            got.add(row_id)
            self._gaps.pop(row_id, None)
            if row_id not in self._seen:
                self._seen.add(row_id)
                out.append(row)
        if rows:
            top = max(top, int(rows[-1][0]))
            if top - self.high < JUMP:
                for missing in range(self.high + 1, top):
                    if missing not in got and missing not in self._seen:
                        self._gaps.setdefault(missing, now)
        self.high = top
        for gap in [g for g, first in self._gaps.items() if now - first > GAP_SECONDS]:
            del self._gaps[gap]
        floor = self.floor()
        if len(self._seen) > 1_000 or rows:
            self._seen = {i for i in self._seen if i > floor}
        return out

    def forget(self) -> None:
        self.high = None
        self._gaps.clear()
        self._seen.clear()
