"""`GuardedSink`: the audit sink every service records through, with the guard in front.

Every access (reads, searches, bundles, writes, refusals, break-the-glass, logins) already ends
in `services.audit.record(*records)` before its data
leaves: that call is the one place the guard sees every decision, whatever the route. The
guard scores the records first; the records are then always written (with the guard's own
record when it acts). When the verdict contains the session, the records of data that was about
to be served are written as "denied" (the data does not leave) and the guard's error is raised
for the API to answer 401 or 403.

A write's records join the write's transaction (`rempart.audit.durable.joined`): the guard's
counting joins it too, and on a containment the error rolls that transaction back (nothing is
stored, nothing leaves), so the containment, the alerts and the trace are written outside it,
from a helper thread (`_outside`).

If the guard itself cannot work (its database is down), a request carrying patient data fails
closed (503), like a failed audit write; sign-ins and other events are recorded regardless.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Callable, Sequence

from sqlalchemy import Connection
from sqlalchemy.exc import SQLAlchemyError

from rempart.audit.durable import joined_connection
from rempart.audit.records import AuditRecord, AuditSink
from rempart.errors import ServiceUnavailable
from rempart.guard.engine import DATA_ACTIONS, READ_ACTIONS, Guard, Verdict

log = logging.getLogger("rempart.guard")
AFTER_WAIT_SECONDS = 2.0


class GuardedSink:
    def __init__(self, inner: AuditSink, guard: Guard) -> None:
        self.inner = inner
        self.guard = guard

    def record(self, *records: AuditRecord) -> None:
        conn = joined_connection()  # a write's open transaction, when the caller joined one
        verdict = self._observe(records, conn)
        if verdict is None or verdict.error is None:
            self.inner.record(*records)
            if verdict is not None and verdict.apply is not None:
                _outside(conn, verdict.apply)
            return
        traces = [*_withheld(records, verdict), *verdict.records]
        if conn is None:
            if verdict.apply is not None:
                verdict.apply()
            self.inner.record(*traces)
            raise verdict.error
        apply = verdict.apply

        def later() -> None:
            if apply is not None:
                apply()
            self.inner.record(*traces)  # a new thread: not joined to the rolled-back write

        _outside(conn, later)
        raise verdict.error

    def _observe(self, records: Sequence[AuditRecord], conn: Connection | None) -> Verdict | None:
        try:
            return self.guard.observe(records, conn)
        except SQLAlchemyError:
            log.critical("guard: could not score %d audit records", len(records), exc_info=True)
            if any(r.outcome == "success" and r.action in DATA_ACTIONS for r in records):
                raise ServiceUnavailable(
                    "the access guard is unavailable; no data was sent"
                ) from None
            return None


def _withheld(records: Sequence[AuditRecord], verdict: Verdict) -> list[AuditRecord]:
    note = f"withheld by the guard ({verdict.signal})"
    return [
        dataclasses.replace(r, outcome="denied", detail=f"{note}; {r.detail}" if r.detail else note)
        if r.outcome == "success" and r.action in READ_ACTIONS
        else r
        for r in records
    ]


def _outside(conn: Connection | None, work: Callable[[], None]) -> None:
    """Runs `work` outside the caller's transaction. Without one, now. On PostgreSQL in a
    helper thread that is waited for (row locks do not conflict); on SQLite the caller holds
    the only writer lock until it commits or rolls back, so the helper waits for that and the
    request does not wait for the helper."""
    if conn is None:
        work()
        return

    def run() -> None:
        try:
            work()
        except Exception:
            log.critical("guard: a containment or its alert could not be written", exc_info=True)

    helper = threading.Thread(target=run, name="guard-after", daemon=True)
    helper.start()
    if conn.dialect.name != "sqlite":
        helper.join(AFTER_WAIT_SECONDS)
