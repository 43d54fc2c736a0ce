"""The audit log: group commit into the Merkle log, and signed tree heads.

`AuditLog.record(*records)` returns only once the transaction holding the records has
committed (SQLite WAL with synchronous=FULL, or PostgreSQL), so the caller sends patient data
only after its trace is durable. If it cannot, it raises `AuditUnavailable` (503) and the data
does not leave.

Group commit, leader/follower style (as databases do it): the first caller that finds no
commit in progress becomes the leader and commits every record queued so far, its own
included, in one transaction; callers arriving meanwhile queue up and sleep. When its batch is
durable the leader wakes them, hands leadership to the first of the next queue, and returns.
There is no writer thread to wake: at one request the leader commits its own record at once;
at many, one fsync serves them all. (A dedicated writer thread costs two more thread switches
per request under CPython's GIL, measured at a third of a protected read's CPU.)

A small thread signs a tree head every `head_interval` seconds while the log grows, and one
more is signed on `close()` (the end of a CLI batch).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Engine, insert, select
from sqlalchemy.exc import IntegrityError as DbIntegrityError

from rempart.audit.entry import Sealer
from rempart.audit.heads import HeadsFile, HeadSigner, SignedHead, Witness
from rempart.audit.merkle import Frontier
from rempart.audit.records import AuditRecord
from rempart.audit.tables import audit_head
from rempart.audit.writer import AlertFn, LogWriter, Sql, TamperingDetected
from rempart.clock import now_micros
from rempart.errors import ServiceUnavailable

log = logging.getLogger("rempart.audit")

MAX_BATCH = 20_000  # records per transaction: bounds a commit's latency and memory

__all__ = ["AuditLog", "AuditUnavailable", "Sql", "TamperingDetected"]


class AuditUnavailable(ServiceUnavailable):
    """The audit record could not be made durable; the request fails without its data."""


class _Pending:
    """One caller's records. `done` is a lock taken at birth and released once: a one-shot
    signal cheaper than a threading.Event. `lead` says the caller was woken to lead."""

    __slots__ = ("done", "error", "lead", "records")

    def __init__(self, records: Sequence[AuditRecord]) -> None:
        self.records = records
        self.done = threading.Lock()
        self.done.acquire()
        self.error: BaseException | None = None
        self.lead = False


class AuditLog:
    """The `AuditSink` every package records through (`services.audit`)."""

    def __init__(
        self,
        engine: Engine,
        sealer: Sealer,
        signer: HeadSigner,
        heads_file: HeadsFile,
        *,
        witnesses: Sequence[Witness] = (),
        head_interval: float = 5.0,
        wait_timeout: float = 30.0,
        alert: AlertFn | None = None,
        retention_days: int = 365,
    ) -> None:
        self.engine = engine
        self.sealer = sealer
        self.signer = signer
        self.heads_file = heads_file
        self.retention_days = retention_days
        self._writer = LogWriter(engine, sealer, alert)
        self._witnesses = list(witnesses)
        self._interval = head_interval
        self._timeout = wait_timeout
        self._mutex = threading.Lock()
        self._queue: list[_Pending] = []
        self._leading = False
        self._idle = threading.Condition(self._mutex)  # notified when leadership is released
        self._closed = False
        self._head_lock = threading.Lock()
        self._signed = -1  # the largest tree size this process has signed
        self._stop = threading.Event()
        self._heads: threading.Thread | None = None

    # ---- AuditSink ---------------------------------------------------------------------------

    def record(self, *records: AuditRecord) -> None:
        if not records:
            return
        pending = _Pending(records)
        with self._mutex:
            if self._closed:
                raise AuditUnavailable("the audit log is closed; nothing can be recorded")
            if self._heads is None:
                self._heads = threading.Thread(target=self._sign_loop, name="audit-heads")
                self._heads.daemon = True
                self._heads.start()
            self._queue.append(pending)
            pending.lead = not self._leading
            self._leading = True
        if not pending.lead and not pending.done.acquire(timeout=self._timeout):
            self._timed_out(pending)
        if pending.lead:
            self._lead(pending)
        if pending.error is not None:
            raise AuditUnavailable(
                "the access could not be recorded in the audit log; no data was sent"
            ) from pending.error

    def _timed_out(self, pending: _Pending) -> None:
        with self._mutex:
            if pending.lead:
                return  # woken to lead just as the wait ran out: lead (the caller does)
            if pending in self._queue:
                self._queue.remove(pending)
        log.critical("audit write did not complete within %.0f s", self._timeout)
        raise AuditUnavailable("the audit log did not answer in time; no data was sent")

    def _lead(self, mine: _Pending) -> None:
        """Commit everything queued (our records among them), wake its callers, hand over."""
        with self._mutex:
            batch, count = [], 0
            while self._queue and count < MAX_BATCH:
                batch.append(self._queue.pop(0))
                count += len(batch[-1].records)
        try:
            self._writer.append([r for p in batch for r in p.records])
        except BaseException as exc:
            log.critical("audit commit of %d records failed: %s", count, exc)
            self._writer.drop()
            for pending in batch:
                pending.error = exc
        for pending in batch:
            if pending is not mine:
                pending.done.release()
        with self._mutex:
            if self._queue:
                successor = self._queue[0]
                successor.lead = True
                successor.done.release()
            else:
                self._leading = False
                self._idle.notify_all()

    # ---- lifecycle ---------------------------------------------------------------------------

    def close(self) -> None:
        """Let the last commit finish, sign a final head. Later `record` calls fail closed."""
        with self._mutex:
            if self._closed:
                return
            self._closed = True
            while self._leading or self._queue:
                self._idle.wait(timeout=self._timeout)
                if self._leading or self._queue:
                    log.critical("audit log closing with a commit still in flight")
                    break
        self._stop.set()
        if self._heads is not None:
            self._heads.join(timeout=self._timeout)
            self._issue_head(force=False)
        self._writer.close()
        for witness in self._witnesses:
            witness.close()

    def sign_now(self) -> SignedHead | None:
        """Sign the current tree head (done on its own every few seconds while it grows)."""
        return self._issue_head(force=True)

    @property
    def size(self) -> int:
        frontier = self._writer.frontier
        return frontier.size if frontier is not None else 0

    @property
    def _frontier(self) -> Frontier | None:
        return self._writer.frontier

    # ---- signed tree heads -------------------------------------------------------------------

    def _sign_loop(self) -> None:
        while not self._stop.wait(self._interval):
            self._issue_head(force=False)

    def _issue_head(self, *, force: bool) -> SignedHead | None:
        with self._head_lock:
            frontier = self._writer.frontier
            if frontier is None:
                try:
                    frontier = self._writer.stored_frontier()
                except Exception as exc:
                    log.critical("cannot read the audit log to sign a head: %s", exc)
                    return None
            if frontier.size == 0 or (frontier.size <= self._signed and not force):
                return None
            head = self.signer.sign_head(frontier.size, now_micros(), frontier.root())
            self._store_head(head)
            self._signed = head.tree_size
            return head

    def _store_head(self, head: SignedHead) -> None:
        try:
            with self.engine.begin() as conn:
                exists = conn.execute(
                    select(audit_head.c.tree_size).where(audit_head.c.tree_size == head.tree_size)
                ).first()
                if exists is None:
                    conn.execute(insert(audit_head).values(**head_row(head)))
        except DbIntegrityError:
            pass  # another process signed this very size a moment ago: its head stands
        except Exception as exc:
            log.critical("cannot store signed audit head %d: %s", head.tree_size, exc)
        try:
            self.heads_file.append(head)
        except OSError as exc:
            log.critical("cannot append to %s: %s", self.heads_file.path, exc)
        for witness in self._witnesses:
            try:
                witness.publish(head)
            except OSError as exc:
                log.error("audit witness failed: %s", exc)


def head_row(head: SignedHead) -> dict[str, Any]:
    return {
        "tree_size": head.tree_size,
        "at": head.at,
        "root": head.root,
        "key_id": head.key_id,
        "signature": head.signature,
    }
