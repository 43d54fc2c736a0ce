"""The audit log: group commit into the Merkle log, and signed tree heads.

`AuditLog.record(*records)` returns only once the transaction holding the records has
committed (SQLite WAL with synchronous=FULL, or PostgreSQL), so the caller sends patient data
only after its trace is durable. If it cannot, it raises `AuditUnavailable` (503) and the data
does not leave. Under `durable.run_audited` (the read routes) the wait moves to the event loop:
`record` queues the records and returns a ticket the route awaits before sending.
Under `durable.joined(conn)` (writes), `record` appends inside the caller's own transaction
instead (`record_in`): a write and its trace commit together or not at all.

Group commit, leader/follower style (as databases do it): the first caller that finds no
commit in progress becomes the leader and commits every record queued so far, its own
included, in one transaction; callers arriving meanwhile queue up (a thread sleeps on its
ticket, a coroutine awaits it). When its batch is durable the leader settles its tickets and
hands leadership to the next parked thread, or, when the queue holds only awaited tickets, to
a drainer thread that keeps committing until the queue is empty. At one request the leader
commits its own record at once; at many, one fsync serves them all, and the event loop is woken
once per batch rather than a thread per request. An event loop does not commit at once (see
`submit`): its records are committed once the loop has run out of work, by the loop itself,
or a window later while it stays busy (`_watch`, COMMIT_WINDOW): on PostgreSQL by the loop,
awaited (loopwriter.py: it serves on meanwhile, and no thread fights it for the GIL), and
what its requests queue during that commit the loop commits next; on SQLite by the drainer.
While a batch commits, the records queued meanwhile have their rows and hashes built by the
threads that queue them (stage.py), so that only the database remains on the serial path.

Signed tree heads are issued by `issuer.py` (every `head_interval` seconds while the log grows,
and once more on `close()`, the end of a CLI batch).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from asyncio import AbstractEventLoop, _get_running_loop
from collections import deque
from collections.abc import Sequence

from sqlalchemy import Connection, Engine

from rempart.audit.batches import MAX_BATCH, Batches
from rempart.audit.durable import (
    AuditUnavailable,
    Ticket,
    deferred,
    joined_connection,
)
from rempart.audit.entry import Sealer
from rempart.audit.heads import HeadsFile, HeadSigner, SignedHead, Witness
from rempart.audit.issuer import HeadIssuer
from rempart.audit.loopwriter import LoopWriter
from rempart.audit.merkle import Frontier
from rempart.audit.records import AuditRecord
from rempart.audit.stage import Stager
from rempart.audit.writer import AlertFn, LogWriter, Prepared, Sql, TamperingDetected

log = logging.getLogger("rempart.audit")

# Under load, deferred records (reads) wait for company: on SQLite a commit costs the writer
# ~1 ms of CPU (a WAL frame per page it dirties, an fsync) and every reader connection its page
# cache (SQLite drops it when the file changed), about a read's own cost, so a commit per read
# would double a read's. Records queued from an event loop (reads on SQLite) are committed once
# that loop has run out of work (every request it holds is waiting for this commit), or a
# window after the first of them while it stays busy; records from worker threads, which the
# log cannot see coming, at most once per THREAD_WINDOW (docs/benchmarks.md).
COMMIT_WINDOW = 0.008  # seconds; `[audit] commit_window_ms` in config.toml
THREAD_WINDOW = 0.002

__all__ = ["AuditLog", "AuditUnavailable", "Sql", "TamperingDetected"]


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
        commit_window: float = COMMIT_WINDOW,
        alert: AlertFn | None = None,
        retention_days: int = 365,
    ) -> None:
        self.engine = engine
        self.sealer = sealer
        self.signer = signer
        self.heads_file = heads_file
        self.retention_days = retention_days
        self._writer = LogWriter(engine, sealer, alert)
        # PostgreSQL: the loop's records are committed by the loop, awaited (loopwriter.py).
        self._on_loop = LoopWriter(self._writer) if engine.dialect.name == "postgresql" else None
        self._loop_task: asyncio.Task[None] | None = None  # the loop's commit in flight
        self._timeout = wait_timeout
        self._window = commit_window
        self._last_commit = 0.0  # monotonic time the last commit started
        self._gathering = False  # the drainer waits for more records before committing
        self._from_loop = 0  # tickets queued from an event loop, ever (the watch compares)
        self._watched: AbstractEventLoop | None = None  # the loop a watch is scheduled on
        self._loop_idle = False  # the watched loop ran out of work since its last ticket
        self._loop_leads = False  # the lead is the loop's: its watch commits, or hands over
        self._loop_since = 0.0  # since when
        self._from_thread = False  # a waiting ticket was queued by a worker thread
        self._mutex = threading.Lock()
        self._queue: deque[Ticket] = deque()
        self._leading = False
        self._idle = threading.Condition(self._mutex)  # notified when leadership is released
        self._drain = threading.Condition(self._mutex)  # the drainer's wake-up
        self._drain_wanted = False
        self._drainer: threading.Thread | None = None
        self._stager = Stager(sealer, MAX_BATCH)
        self._batches = Batches(self._mutex, self._queue, self._stager, self._writer)
        self._closed = False
        self._heads = HeadIssuer(
            engine,
            signer,
            heads_file,
            witnesses,
            head_interval,
            ours=lambda: self._writer.frontier,
            stored=self._writer.stored_frontier,
        )

    # ---- AuditSink ---------------------------------------------------------------------------

    def record(self, *records: AuditRecord) -> None:
        """Durable on return; or, under `run_audited`, queued with a ticket its route awaits."""
        if not records:
            return
        conn = joined_connection()
        if conn is not None:
            self.record_in(conn, *records)
            return
        tickets = deferred()
        if tickets is not None:
            tickets.append(self.submit(*records))
            return
        ticket = self._enqueue(records, parked=True)
        if not ticket.lead and not ticket.sleep(self._timeout):
            self._timed_out(ticket)
        if ticket.lead:
            self._lead(ticket)
        if ticket.error is not None:
            raise AuditUnavailable(
                "the access could not be recorded in the audit log; no data was sent"
            ) from ticket.error

    def submit(self, *records: AuditRecord) -> Ticket:
        """Queue the records; the caller awaits `ticket.wait()` before sending anything. On a
        quiet log (no commit in progress, none in the last THREAD_WINDOW) a worker thread
        commits at once, with no thread switch; otherwise the records join the next batch,
        which the drainer commits, and the call returns. On an event loop (reads on SQLite
        run on it) the lead goes to the loop's `_watch` instead: committing at once there
        would hold every other request of the loop, so each batch would carry one read."""
        ticket = self._enqueue(records, parked=False)
        if ticket.lead:
            if time.monotonic() - self._last_commit >= THREAD_WINDOW:
                self._lead(ticket)
            else:
                with self._mutex:
                    self._hand_to_drainer()
        return ticket

    def record_in(self, conn: Connection, *records: AuditRecord) -> None:
        """The records join the caller's open transaction on `conn`: a write and its trace
        commit together or not at all."""
        if not records:
            return
        try:
            self._writer.append_in(conn, list(records))
        except Exception as exc:
            # The caller's transaction is rolled back by the exception: nothing is stored.
            log.critical("audit append in a write's transaction failed: %s", exc)
            raise AuditUnavailable(
                "the change could not be recorded in the audit log; nothing was stored"
            ) from exc

    def _enqueue(self, records: Sequence[AuditRecord], *, parked: bool) -> Ticket:
        ticket = Ticket(records, parked=parked)
        with self._mutex:
            if self._closed:
                raise AuditUnavailable("the audit log is closed; nothing can be recorded")
            self._heads.start()
            # Built now if a commit is in flight. Not for a thread waiting in place: its
            # leader would then be the drainer, which holds commits a window apart.
            if parked or not self._stager.stage(ticket):
                self._queue.append(ticket)
            loop = None if parked else _get_running_loop()
            if loop is not None:
                self._from_loop += 1
                self._loop_idle = False
                if self._watched is not loop:
                    self._watched = loop  # (a loop closed with its watch pending is replaced)
                    loop.call_soon(self._watch, loop, self._from_loop, 0)
            elif not parked:
                self._from_thread = True
            watched = self._watched
            if self._loop_leads and loop is None and (watched is None or watched.is_closed()):
                self._loop_leads = False  # its loop stopped before committing: lead instead
                self._leading = False
            ticket.lead = not self._leading
            self._leading = True
            if ticket.lead and loop is not None:
                ticket.lead, self._loop_leads = False, True
                self._loop_since = time.monotonic()
        return ticket

    def _timed_out(self, ticket: Ticket) -> None:
        with self._mutex:
            if ticket.lead:
                return  # woken to lead just as the wait ran out: lead (the caller does)
            if ticket in self._queue:
                self._queue.remove(ticket)
        log.critical("audit write did not complete within %.0f s", self._timeout)
        raise AuditUnavailable("the audit log did not answer in time; no data was sent")

    def _lead(self, mine: Ticket | None) -> None:
        """Commit everything queued (our records among them), settle its tickets, hand over:
        to the next parked thread if one heads the queue, else to the drainer thread (the
        callers of queued tickets are coroutines, nobody is there to lead).

        The batch starts with what was staged (built as it was queued, stage.py) during the
        previous commit; what is staged during this one is committed next, by the drainer."""
        batch, records, prepared = self._next()
        if batch:
            error: BaseException | None = None
            try:
                used = self._writer.append(records, prepared)
            except BaseException as exc:
                log.critical("audit commit of %d records failed: %s", len(records), exc)
                self._writer.drop()
                error, used = exc, False
            self._batches.done(batch, prepared, used, error, mine)
        self._hand_over(None)

    async def _lead_on_loop(self) -> None:
        """`_lead` on the event loop, on PostgreSQL (loopwriter.py): the commit is awaited,
        and the loop serves other requests meanwhile. What the loop's requests queue during
        it, the loop commits next (`_hand_over`)."""
        loop = asyncio.get_running_loop()
        on_loop = self._on_loop
        assert on_loop is not None, "only on PostgreSQL"
        cancelled: BaseException | None = None
        try:
            batch, records, prepared = self._next()
            if batch:
                error: BaseException | None = None
                try:
                    used = await on_loop.append(records, prepared)
                except BaseException as exc:
                    # (the loop writer has dropped its connection already)
                    log.critical("audit commit of %d records failed: %s", len(records), exc)
                    error, used = exc, False
                    if isinstance(exc, asyncio.CancelledError):
                        cancelled = exc  # the loop is stopping: settle, hand over, then go
                self._batches.done(batch, prepared, used, error, None)
        finally:
            self._loop_task = None
            self._hand_over(None if cancelled is not None else loop)
        if cancelled is not None:
            raise cancelled

    def _next(self) -> tuple[list[Ticket], list[AuditRecord], Prepared | None]:
        """The next batch, its records and its rows built; the commit starts now."""
        batch, staged, prepared, _ = self._batches.take()
        if not batch:
            return batch, [], None
        records, prepared = self._batches.ready(batch, staged, prepared)
        self._last_commit = time.monotonic()
        return batch, records, prepared

    def _hand_over(self, loop: AbstractEventLoop | None) -> None:
        """After a commit: who commits what is staged or queued. `loop`: the commit was the
        loop's; while only its requests wait, it leads the next one too (`_watch` commits once
        it is idle, or a window after this commit started)."""
        stager = self._stager
        with self._mutex:
            if (
                loop is not None
                and not self._from_thread
                and not self._closed
                and (stager.busy or (self._queue and not self._queue[0].parked))
            ):
                self._loop_leads, self._loop_since = True, self._last_commit
                if self._watched is not loop:
                    self._watched = loop
                    loop.call_soon(self._watch, loop, self._from_loop, 0)
                return
            if stager.busy:
                self._hand_to_drainer()  # what was staged commits next
                return
            stager.pause()  # nothing is staged: nobody stages without a leader
            if not self._queue:
                self._leading = False
                self._idle.notify_all()
            elif self._queue[0].parked:
                successor = self._queue[0]
                successor.lead = True
                successor.wake()
            else:
                self._hand_to_drainer()

    def _hand_to_drainer(self) -> None:
        """Leadership passes to the drainer thread (called holding the mutex)."""
        self._drain_wanted = True
        if self._drainer is None:
            self._drainer = threading.Thread(target=self._drain_loop, name="audit-drain")
            self._drainer.daemon = True
            self._drainer.start()
        self._drain.notify()

    def _drain_loop(self) -> None:
        while True:
            with self._mutex:
                while not self._drain_wanted:
                    if self._closed and not self._leading:
                        return
                    self._drain.wait()
                self._drain_wanted = False
                # Under load, wait for company (COMMIT_WINDOW above): each commit then
                # serves several reads (the wait is the drainer's, not a request thread's).
                self._gathering = True
                while self._gathering and not self._loop_idle and not self._closed:
                    window = THREAD_WINDOW if self._from_thread else self._window
                    left = self._last_commit + window - time.monotonic()
                    if left <= 0:
                        break
                    self._drain.wait(left)
                taken = not self._gathering  # the loop, idle, commits (`_watch`)
                self._gathering = False
                self._from_thread = False
            if not taken:
                self._lead(None)

    def _watch(self, loop: AbstractEventLoop, seen: int, quiet: int) -> None:
        """On the loop, once per turn while records queued from it wait. Once two turns have
        passed with no new record (two: a request that arrived during one turn runs in the
        next), every request of the loop waits for this commit: the loop commits itself, with
        no thread switch. While it stays busy, a window after the loop took the lead (or
        after its last commit started), the commit starts anyway: on PostgreSQL on the loop,
        awaited (loopwriter.py), elsewhere in the drainer, while the loop serves on."""
        if self._from_loop != seen:
            seen, quiet = self._from_loop, 0
        else:
            quiet += 1
        if quiet < 2:
            if self._loop_leads and time.monotonic() >= self._loop_since + self._window:
                with self._mutex:
                    due: bool = self._loop_leads
                    self._loop_leads = False
                    if due and self._on_loop is None:
                        due = False
                        self._hand_to_drainer()
                if due:
                    self._lead_here(loop)
            loop.call_soon(self._watch, loop, seen, quiet)
            return
        lead = False
        with self._mutex:
            self._watched = None
            self._loop_idle = True
            if self._loop_leads:
                self._loop_leads, lead = False, True
            elif self._gathering:
                if not self._from_thread:  # (a thread's records are not ours to wait for)
                    self._gathering, lead = False, True
                self._drain.notify()
        if lead:
            self._lead_here(loop)

    def _lead_here(self, loop: AbstractEventLoop) -> None:
        """The loop leads the commit now (it holds the lead)."""
        if self._on_loop is not None:
            self._loop_task = loop.create_task(self._lead_on_loop())
        else:
            self._lead(None)

    # ---- lifecycle ---------------------------------------------------------------------------

    async def settle_loop(self) -> None:
        """On the event loop, before `close()` (the app's shutdown): finish the loop's commit
        in flight and commit what its requests left queued. `close()` waits for commits
        without awaiting, so a commit the loop still owed would hold it up."""
        while True:
            task = self._loop_task
            if task is not None:
                await asyncio.shield(task)
                continue
            with self._mutex:
                owed = self._loop_leads and self._on_loop is not None
                if owed:
                    self._loop_leads = False
            if not owed:
                return
            await self._lead_on_loop()

    def close(self) -> None:
        """Let the last commit finish, sign a final head. Later `record` calls fail closed."""
        with self._mutex:
            if self._closed:
                return
            self._closed = True
            if self._loop_leads:  # its loop may never turn again
                self._loop_leads = False
                self._hand_to_drainer()
            while self._leading or self._queue:
                self._idle.wait(timeout=self._timeout)
                if self._leading or self._queue:
                    log.critical("audit log closing with a commit still in flight")
                    break
            self._drain.notify_all()
        if self._drainer is not None:
            self._drainer.join(timeout=self._timeout)
        self._heads.close(self._timeout)
        if self._on_loop is not None:
            self._on_loop.close()
        self._writer.close(self._timeout)

    def sign_now(self) -> SignedHead | None:
        """Sign the current tree head (done on its own every few seconds while it grows)."""
        return self._heads.issue(force=True)

    @property
    def size(self) -> int:
        frontier = self._writer.frontier
        return frontier.size if frontier is not None else 0

    @property
    def _frontier(self) -> Frontier | None:
        return self._writer.frontier
