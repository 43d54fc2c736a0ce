"""The group commit's batches: which tickets go next, their rows built before the transaction,
and what is left to rebuild when the log did not end where they were built to follow.

Shared by the two ways a batch is committed (`AuditLog._lead` in a thread, `_lead_on_loop`
awaited on the event loop); the mutex and the queue are the log's.
"""

from __future__ import annotations

import logging
import threading
from collections import deque

from rempart.audit.durable import Ticket, settle
from rempart.audit.records import AuditRecord
from rempart.audit.stage import Stager
from rempart.audit.writer import LogWriter, Prepared

log = logging.getLogger("rempart.audit")

MAX_BATCH = 20_000  # records per transaction: bounds a commit's latency and memory


class Batches:
    def __init__(
        self,
        mutex: threading.Lock,
        queue: deque[Ticket],
        stager: Stager,
        writer: LogWriter,
    ) -> None:
        self._mutex = mutex
        self._queue = queue
        self._stager = stager
        self._writer = writer

    def take(self) -> tuple[list[Ticket], int, Prepared | None, int]:
        """The next batch: the staged tickets (built as `prepared`), then queued ones."""
        with self._mutex:
            batch, prepared, count = self._stager.take()
            staged = len(batch)
            while self._queue and count < MAX_BATCH:
                batch.append(self._queue.popleft())
                count += len(batch[-1].records)
        return batch, staged, prepared, count

    def ready(
        self, batch: list[Ticket], staged: int, prepared: Prepared | None
    ) -> tuple[list[AuditRecord], Prepared | None]:
        """The batch's records, and its rows built (the first `staged` tickets' already are,
        as `prepared`); the stager armed to build what is queued during the commit. The
        caller notes the commit's start (`AuditLog._last_commit`) next."""
        records = [r for t in batch for r in t.records]
        # The rows not built yet are built here, before the transaction: the writer lock
        # (SQLite's, and the cross-process gate) is then held for the database work only.
        tail = records[sum(len(t.records) for t in batch[:staged]) :]
        if tail:
            try:
                more = self._writer.prepare(tail, after=prepared)
            except Exception:
                # The writer builds every row inside its transaction, where a failure fails
                # this batch's callers like any other.
                log.exception("audit rows could not be built ahead")
                more = prepared = None
            prepared = (
                more if prepared is None or more is None else Prepared.joined([prepared, more])
            )
        if prepared is not None:
            with self._mutex:
                self._stager.arm(prepared, self._queue)  # the next batch is built during this one
        return records, prepared

    def done(
        self,
        batch: list[Ticket],
        prepared: Prepared | None,
        used: bool,
        error: BaseException | None,
        mine: Ticket | None,
    ) -> None:
        """The batch is durable (or failed, `error`): settle its tickets."""
        if prepared is not None and not used:
            # The log did not end where this batch was built to follow, so neither does what
            # was staged after it.
            with self._mutex:
                self._stager.reset(self._queue)
        settle(batch, error, skip=mine)
