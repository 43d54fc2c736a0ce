"""The guard's ledger: every account's sliding windows in memory, kept in step with
`guard_touch`, which every server process writes and reads.

Why: writing a touch and running the aggregate over the account's 24 h on the request path
cost more than the protected read itself (docs/benchmarks.md, Guard). Now a newly opened
patient costs an `insort` here, or under a grant (engine.py) an append that the flusher takes
into the window in its batch (`settle`); the rows reach the database in batches, off the
request path, and other processes' rows come back by a poll.

- Own touches apply to the window at once and queue; a flusher thread writes the queue
  `FLUSH_SECONDS` after the first touch (one transaction for all of them). When the batch's
  ids follow the last id merged, no other process wrote meanwhile (one id counter) and the
  windows are proven complete; otherwise the flusher polls the rows written since (by id; ids
  not yet visible are asked for again a while, `horizon.py`: PostgreSQL can commit out of order).
  `guard_reset` (releases) is polled too.
- A request refreshes the windows first when they were last proven complete more than
  `MAX_STALE_SECONDS` ago (a read on the reader connection: it never waits behind a batch that
  waits for SQLite's writer lock).
- An account seen for the first time (or again after a restart) is loaded from the database:
  its touches of the last 24 h since its last release. So counts survive a restart.
- Never more than `MAX_PENDING` unwritten touches per account in one process: the next touch
  waits for a flush.
- Fail closed: if the database cannot be written or read the request fails
  (`GuardStateUnavailable`, 503), until a batch goes through again; the queue is kept.

The guard counts in these windows only far from every threshold (engine.py, `MARGIN`); near
one it writes the touch and counts in the database, exactly, on the request path.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

from rempart import clock
from rempart.guard import counters
from rempart.guard.counters import Counts, Touch
from rempart.guard.daynotes import DayNotes, Rollups
from rempart.guard.horizon import Horizon
from rempart.guard.settings import DAY, MINUTE, Thresholds
from rempart.guard.signals import Subject
from rempart.guard.window import AccountWindow
from rempart.guard.wire import GuardStateUnavailable, Wire

log = logging.getLogger("rempart.guard")

FLUSH_SECONDS = 0.05  # the flusher gathers touches this long, then writes them in one batch
MAX_STALE_SECONDS = 0.1  # an older view is refreshed on the request thread first
MAX_PENDING = 16  # unwritten touches per account per process
POLL_ROWS = 5_000
ACCOUNTS = 20_000  # windows kept in memory (least recently used dropped, reloaded on demand)
RESET_POLL_SECONDS = 0.2
POLL_SECONDS = 0.02  # after a batch: a poll unless the windows were proven complete since
DAYS_SECONDS = 1.0


# A queued touch: (account, session, kind, patient, at), the row as written.
Pending = tuple[str, str, str, str | None, int]


# (conn, [(account, role, day, hour, patients today)]): the daily baseline rows of a batch.
DayWriter = Callable[[Connection, list[tuple[str, str, int, int, int]]], None]


class Ledger:
    def __init__(self, engine: Engine, day_writer: DayWriter) -> None:
        self.engine = engine
        self._day_writer = day_writer
        self._state = threading.Lock()  # windows, queue, ids: held for microseconds
        # One writer and one reader at a time, each on its own connection: a poll (a read)
        # never waits behind a batch that waits for SQLite's writer lock. A load takes both.
        self._writing = threading.Lock()
        self._reading = threading.Lock()
        self._accounts: OrderedDict[str, AccountWindow] = OrderedDict()
        self._pending: list[Pending] = []
        self._per_account: dict[str, int] = {}
        self._days = DayNotes()
        self._ids = Horizon()  # which guard_touch rows the windows hold
        # Monotonic time when the windows last held every row written before it (a poll, or
        # our own batch following the last id merged).
        self._synced = -MAX_STALE_SECONDS
        self._resets_at = -RESET_POLL_SECONDS
        self._days_at = 0.0  # daily rollups are written about once a second
        self._failed: BaseException | None = None
        self._out = Wire(engine)
        self._in = Wire(engine)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ---- the request side --------------------------------------------------------------

    def window(self, account: str) -> AccountWindow:
        """The up-to-date window of `account`, loaded from the database if needed."""
        if self._thread is None:
            self._start()
        if self._failed is not None:
            self.sync()  # raises while the database stays unwritable
        if time.monotonic() - self._synced > MAX_STALE_SECONDS:
            self.refresh()
        with self._state:
            found = self._accounts.get(account)
            if found is not None:
                self._accounts.move_to_end(account)
                return found
        with self._writing, self._reading:
            return self._load(account)

    def queue(self, account: str, session: str, touches: Iterable[Touch], now: int) -> None:
        """Touches already counted here, for the next batch."""
        with self._state:
            added = [(account, session, t.kind, t.patient, now) for t in touches]
            self._pending.extend(added)
            self._per_account[account] = self._per_account.get(account, 0) + len(added)
        if not self._wake.is_set():
            self._wake.set()

    def count_in(
        self,
        window: AccountWindow,
        session: str,
        touches: Iterable[Touch],
        now: int,
        short: int,
        midnight: int,
    ) -> tuple[Counts, int, int]:
        """Adds `touches` to the window (not to the queue); the counts, the account's pace
        (distinct patients in the last second) and the window's version they were taken at."""
        with self._state:
            for t in touches:
                window.add(session, t.kind, t.patient, now)
            window.prune(now)
            counts = window.counts(session, now, short, midnight)
            return counts, window.patients.since(now - 1_000_000), window.version

    def grant(
        self,
        window: AccountWindow,
        session: str,
        thresholds: Thresholds,
        version: int,
        left: int,
        now: int,
    ) -> None:
        """`left` more new patients for `session` without a count (`AccountWindow.give`),
        until the end of the minute of `now`, the time the counts were taken at (so a grant
        never outlives the hour those counts were judged in)."""
        until = (now // MINUTE + 1) * MINUTE
        with self._state:
            window.give(session, thresholds, version, left, until)

    def spend(
        self,
        window: AccountWindow,
        who: Subject,
        thresholds: Thresholds,
        patient: str,
        now: int,
        day: tuple[int, int, int],
    ) -> bool:
        """A new patient read, counted under the session's grant, queued, and today's row of
        the baseline noted (`day`: day, hour, local midnight). False, and nothing done,
        without a grant."""
        with self._state:
            if not window.spend(who.session, thresholds, patient, now):
                return False
            account = who.account
            self._pending.append((account, who.session, "read", patient, now))
            self._per_account[account] = self._per_account.get(account, 0) + 1
            # The read joins the window's sorted lists, and today's baseline row, when settled.
            self._days.spent(account, who.role, window, day, now)
        if not self._wake.is_set():
            self._wake.set()
        return True

    def note_day(self, account: str, role: str, day: int, hour: int, today: int) -> None:
        """Today's row of the account's baseline, written with the next batch."""
        with self._state:
            self._days.note(account, role, day, 1 << hour, today)

    def crowded(self, account: str) -> bool:
        return self._per_account.get(account, 0) >= MAX_PENDING

    def own(self, ids: Sequence[int], *, proof: bool = True) -> None:
        """Rows this process wrote itself (and already counted), before they are committed:
        the poll skips them. When they follow the last id merged with no gap, no other process
        wrote in between (ids come from one counter): the poll has nothing to ask until a
        later id (`proof`: only for a batch written alone in its transaction)."""
        with self._state:
            if self._ids.own(sorted(ids), proof):
                self._synced = time.monotonic()
            else:
                self._synced = -POLL_SECONDS  # someone else wrote: poll at the next exchange

    def loaded(self, account: str) -> AccountWindow | None:
        with self._state:
            return self._accounts.get(account)

    def released(self, account: str, since: int) -> None:
        with self._state:
            found = self._accounts.get(account)
            if found is not None:
                found.reset(since)

    # ---- the database side -------------------------------------------------------------

    def sync(self) -> None:
        """Writes the queue and merges what the other processes wrote, now. Any failure
        leaves the queue intact, marks the ledger failed (requests fail closed) and raises."""
        with self._writing:
            self.flush_only(days=time.monotonic() - self._days_at >= DAYS_SECONDS)
        self._failed = None
        if (
            self._ids.high is None
            or time.monotonic() - self._synced >= POLL_SECONDS
            or time.monotonic() - self._resets_at >= RESET_POLL_SECONDS  # releases elsewhere
        ):
            self.refresh(force=True)

    def refresh(self, *, force: bool = False) -> None:
        """Merges what the other processes wrote, now (a read: it does not wait for SQLite's
        writer lock, unlike a flush)."""
        with self._reading:
            if not force and time.monotonic() - self._synced <= MAX_STALE_SECONDS:
                return  # another thread just did
            try:
                started = time.monotonic()
                self._poll()
                self._synced = started
            except SQLAlchemyError as exc:
                raise GuardStateUnavailable(f"the guard's counts are unavailable: {exc}") from exc

    def writing(self) -> threading.Lock:
        """Held by the guard's exact path: its own rows are written after the queue."""
        return self._writing

    def flush_only(self, *, days: bool = True) -> None:
        """Under `writing()`: the queue written."""
        try:
            self._flush(days=days)
        except SQLAlchemyError as exc:
            self._failed = exc
            raise GuardStateUnavailable(f"the guard's counts are unavailable: {exc}") from exc

    def forget_all(self) -> None:
        """After a write whose ids were noted failed to commit: every window is reloaded from
        the database when next used (rather than reason about which ids will never come)."""
        with self._state:
            self._days.settle_all()  # today's baseline rows first: the windows go
            self._accounts.clear()
            self._ids.forget()
            self._synced = -MAX_STALE_SECONDS

    def _flush(self, *, days: bool = True) -> None:
        with self._state:
            self._days.settle_all()  # granted reads into their windows, off the request path
            batch, self._pending = self._pending, []
            self._per_account = {}
            rollups: Rollups = {}
            if days:
                rollups = self._days.take()
                self._days_at = time.monotonic()
        if not batch and not rollups:
            return
        try:
            if batch:
                self._out.insert(batch, self.own)
            if rollups:
                with self._out.gate.held(), self.engine.begin() as conn:
                    self._day_writer(
                        conn, [(a, r, d, bits, n) for (a, d), (r, bits, n) in rollups.items()]
                    )
        except BaseException:
            self.forget_all()  # its ids may have been noted as ours
            with self._state:  # put it back, ahead of what came meanwhile
                self._pending[:0] = batch
                for p in batch:
                    self._per_account[p[0]] = self._per_account.get(p[0], 0) + 1
                self._days.put_back(rollups)
            raise

    def _poll(self) -> None:
        if self._ids.high is None:
            self._ids.high = int(self._in.query("SELECT max(id) FROM guard_touch")[0][0] or 0)
        while True:
            rows = self._in.query(
                "SELECT id, account_id, session_id, kind, patient, at FROM guard_touch "
                "WHERE id > %s ORDER BY id LIMIT %s",
                (self._ids.floor(), POLL_ROWS),
            )
            self._merge(rows)
            if len(rows) < POLL_ROWS:
                break
        if time.monotonic() - self._resets_at >= RESET_POLL_SECONDS:
            self._resets_at = time.monotonic()
            resets = self._in.query(
                "SELECT account_id, since FROM guard_reset WHERE since >= %s",
                (clock.now_micros() - DAY,),
            )
            for account, since in resets:
                self.released(account, int(since))

    def _merge(self, rows: Sequence[tuple[Any, ...]]) -> None:
        """Rows (id, account, session, kind, patient, at) of the poll, in id order."""
        now = time.monotonic()
        with self._state:
            for _, account, session, kind, patient, at in self._ids.fresh(rows, now):
                found = self._accounts.get(account)
                if found is not None:
                    found.add(session, kind, patient, int(at))

    def _load(self, account: str) -> AccountWindow:
        """Under both locks (no batch half-written, no poll meanwhile): the account's last 24 h
        from the database, plus its queued touches."""
        try:
            with self.engine.connect() as conn:
                if self._ids.high is None:
                    self._ids.high = counters.highest(conn)
                floor, rows = counters.recent(conn, account, clock.now_micros())
        except SQLAlchemyError as exc:
            raise GuardStateUnavailable(f"the guard's counts are unavailable: {exc}") from exc
        window = AccountWindow(floor=floor)
        with self._state:
            present = self._accounts.get(account)
            if present is not None:  # loaded by another thread meanwhile
                return present
            self._ids.loaded(r.id for r in rows)  # a later poll must not count them again
            for r in rows:
                window.add(r.session_id, r.kind, r.patient, int(r.at))
            for queued, session, kind, patient, at in self._pending:
                if queued == account:
                    window.add(session, kind, patient, at)
            self._accounts[account] = window
            if len(self._accounts) > ACCOUNTS:
                self._accounts.popitem(last=False)
        return window

    # ---- the flusher ---------------------------------------------------------------------

    def _start(self) -> None:
        if self._thread is None:
            with self._state:
                if self._thread is None:
                    self._thread = threading.Thread(
                        target=self._run, name="guard-ledger", daemon=True
                    )
                    self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(1.0)  # set by queue()
            if self._stop.wait(FLUSH_SECONDS):  # gather the touches of the next few ms
                break
            self._wake.clear()
            if not self._pending and not self._days.rows and self._failed is None:
                continue  # nothing to write: a request refreshes its view when it needs to
            try:
                self.sync()
            except GuardStateUnavailable:
                log.critical("guard: touches could not be written; reads fail closed")
                self._stop.wait(0.5)
            except Exception:  # pragma: no cover - never let the flusher die silently
                log.exception("guard: ledger flusher failed")
                self._stop.wait(0.5)

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(2.0)
        try:
            with self._writing, self._reading:
                self._flush()
                self._out.close()
                self._in.close()
        except SQLAlchemyError:
            log.critical("guard: the last touches could not be written at shutdown")
