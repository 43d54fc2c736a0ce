"""Today's row of each account's baseline (`guard_daily`), gathered in memory by the ledger and
written with its batches: distinct patients since local midnight and the hours active.

A new patient read under a grant (engine.py) is only noted here as spent (`spent`): its window
takes it into its sorted lists later, in a batch (`AccountWindow.settle`), and the count of
today's patients is taken then (`settle`). Not thread-safe: the ledger calls it under its
state lock.
"""

from __future__ import annotations

from rempart.guard.settings import DAY
from rempart.guard.window import AccountWindow

# (account, local day) -> (role, hours bits, most patients counted that day)
Rollups = dict[tuple[str, int], tuple[str, int, int]]


class DayNotes:
    def __init__(self) -> None:
        self.rows: Rollups = {}
        # account -> (window, role, day, hours bits, local midnight, latest spend): accounts
        # with granted reads not settled yet.
        self._unsettled: dict[str, tuple[AccountWindow, str, int, int, int, int]] = {}

    def note(self, account: str, role: str, day: int, hours: int, today: int) -> None:
        """`today` distinct patients for `account` on local `day`, active in `hours` (bits)."""
        if today:
            _, bits, most = self.rows.get((account, day), (role, 0, 0))
            self.rows[(account, day)] = (role, bits | hours, max(most, today))

    def spent(
        self, account: str, role: str, window: AccountWindow, day: tuple[int, int, int], now: int
    ) -> None:
        """A read granted to `account` at `now` (`day`: local day, hour, midnight)."""
        found = self._unsettled.get(account)
        if found is None or found[0] is not window or found[2] != day[0]:
            if found is not None:
                self.settle(account)  # another day (or window): the earlier one first
            self._unsettled[account] = (window, role, day[0], 1 << day[1], day[2], now)
        else:
            self._unsettled[account] = (*found[:3], found[3] | 1 << day[1], day[2], now)

    def settle(self, account: str) -> None:
        """The account's granted reads taken into its window, and today's row noted."""
        found = self._unsettled.pop(account, None)
        if found is None:
            return
        window, role, day, hours, midnight, latest = found
        window.settle()
        self.note(
            account,
            role,
            day,
            hours,
            window.patients.since(max(midnight, latest - DAY, window.floor)),
        )

    def settle_all(self) -> None:
        for account in list(self._unsettled):
            self.settle(account)

    def take(self) -> Rollups:
        """The rows to write (every granted read settled first); forgotten here."""
        self.settle_all()
        rows, self.rows = self.rows, {}
        return rows

    def put_back(self, rows: Rollups) -> None:
        """Rows that could not be written, kept (newer notes of the same day win)."""
        for key, value in rows.items():
            self.rows.setdefault(key, value)
