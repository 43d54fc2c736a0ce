"""Waiting for an audit commit on the event loop instead of in a thread-pool thread.

A read's records must be committed before its response is sent, not before its worker thread
returns. `run_audited(fn, ...)` runs the sync service in the thread pool with *deferral* on:
inside it, `AuditLog.record()` queues the records and hands back at once with a `Ticket`
collected here; the route then awaits every ticket on the event loop and only returns (and so
sends) once they are all durable, or raises `AuditUnavailable` (503) when any is not. No thread
is parked per request: the group commit resolves all the tickets of a batch with one wake-up of
the loop.

Deferral is for interactions whose only effect is their response (read, vread, history,
search). Anything with another effect must have its trace durable first: a write records
under `joined(conn)`, which appends the records inside the write's own transaction (they commit
together or not at all), and code that records and then acts (a lock, a grant) can wrap the
pair in `immediate()`.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TypeVar

from sqlalchemy import Connection
from starlette.concurrency import run_in_threadpool

from rempart.audit.records import AuditRecord
from rempart.errors import ServiceUnavailable

log = logging.getLogger("rempart.audit")
T = TypeVar("T")

# The tickets of the request being served, when its route awaits them (None: wait in place).
_DEFERRED: ContextVar[list[Ticket] | None] = ContextVar("rempart_audit_deferred", default=None)
# The open transaction the records must join (a write's), if any.
_JOINED: ContextVar[Connection | None] = ContextVar("rempart_audit_joined", default=None)


class AuditUnavailable(ServiceUnavailable):
    """The audit record could not be made durable; the request fails without its data."""


# Orders a coroutine registering its future (`Ticket.wait`) against the leader settling the
# batch (`settle`): one lock for all tickets, taken once per wait and once per batch, rather
# than a lock made, taken and released for every ticket.
_WAITING = threading.Lock()


class Ticket:
    """One caller's records on their way into the log. A thread waiting in place holds `done`
    (a lock taken at birth, released once: cheaper than an Event); a coroutine registers a
    future in `waiter` instead. `lead` says the waiting thread was woken to lead the next
    commit."""

    __slots__ = ("done", "error", "lead", "parked", "records", "settled", "waiter")

    def __init__(self, records: Sequence[AuditRecord], *, parked: bool) -> None:
        self.records = records
        self.parked = parked  # a thread waits on `done`
        self.done: threading.Lock | None = None
        if parked:
            self.done = threading.Lock()
            self.done.acquire()
        self.error: BaseException | None = None
        self.lead = False
        self.settled = False
        self.waiter: tuple[asyncio.AbstractEventLoop, asyncio.Future[bool]] | None = None

    def sleep(self, timeout: float) -> bool:
        """Parked: wait for `wake` (settled, or asked to lead); False when `timeout` ran out."""
        assert self.done is not None, "only a parked ticket sleeps"
        return self.done.acquire(timeout=timeout)

    def wake(self) -> None:
        assert self.done is not None, "only a parked ticket is woken"
        self.done.release()

    async def wait(self, timeout: float) -> None:
        """Return once the records are committed; AuditUnavailable if they are not."""
        if not self.settled:
            loop = asyncio.get_running_loop()
            future: asyncio.Future[bool] = loop.create_future()
            with _WAITING:  # against `settle` running in the leader's thread right now
                registered = not self.settled
                if registered:
                    self.waiter = (loop, future)
            if registered:
                # A timer rather than `asyncio.wait_for`, which wraps the future in another
                # one and costs about as much as the rest of the wait.
                timer = loop.call_later(timeout, _expire, future)
                try:
                    settled = await future
                finally:
                    timer.cancel()
                if not settled:
                    log.critical("audit write did not complete within %.0f s", timeout)
                    raise AuditUnavailable("the audit log did not answer in time; no data was sent")
        if self.error is not None:
            raise AuditUnavailable(
                "the access could not be recorded in the audit log; no data was sent"
            ) from self.error


def settle(batch: Sequence[Ticket], error: BaseException | None, skip: Ticket | None) -> None:
    """Mark a committed (or failed) batch: wake parked threads, and each event loop once."""
    wake: dict[asyncio.AbstractEventLoop, list[asyncio.Future[bool]]] = {}
    parked: list[Ticket] = []
    with _WAITING:
        for ticket in batch:
            ticket.error = error
            ticket.settled = True
            if ticket.parked:
                if ticket is not skip:
                    parked.append(ticket)
                continue
            waiter = ticket.waiter
            if waiter is not None:
                ticket.waiter = None
                loop, future = waiter
                found = wake.get(loop)
                if found is None:
                    wake[loop] = [future]
                else:
                    found.append(future)
    for ticket in parked:
        ticket.wake()
    running = asyncio._get_running_loop()
    for loop, ready in wake.items():
        try:
            if loop is running:
                _resolve(ready)  # the loop's own commit (loopwriter.py): no wake-up needed
            else:
                loop.call_soon_threadsafe(_resolve, ready)
        except RuntimeError:
            log.debug("an event loop closed before its audit tickets were settled")


def _resolve(futures: list[asyncio.Future[bool]]) -> None:
    for future in futures:
        if not future.done():  # a cancelled request (client gone) has nobody to tell
            future.set_result(True)


def _expire(future: asyncio.Future[bool]) -> None:
    if not future.done():
        future.set_result(False)


def deferred() -> list[Ticket] | None:
    """The current request's ticket list when its route awaits the commit, else None."""
    return _DEFERRED.get()


def joined_connection() -> Connection | None:
    return _JOINED.get()


@contextmanager
def joined(conn: Connection) -> Iterator[None]:
    """Inside, `record()` appends to the log within `conn`'s open transaction: the records
    commit when it commits, and vanish with it if it rolls back (then nothing was written)."""
    token = _JOINED.set(conn)
    try:
        yield
    finally:
        _JOINED.reset(token)


@contextmanager
def immediate() -> Iterator[None]:
    """Inside, `record()` waits for the commit in place even under `run_audited`: for code
    that records an act and then performs it."""
    token = _DEFERRED.set(None)
    try:
        yield
    finally:
        _DEFERRED.reset(token)


async def run_audited(
    fn: Callable[..., T], *args: object, timeout: float = 30.0, inline: bool = False
) -> T:
    """`fn(*args)` in the thread pool (on the event loop itself with `inline`); return only
    when every audit record it made is durable.

    `inline` is for short calls on a database on this machine (a read on SQLite, or on
    PostgreSQL over loopback or a Unix socket: `store.db.reads_on_loop`): their work is Python
    and short queries, which a thread would run under the same GIL anyway, and the hand-off to
    a thread and back cost a third of a read's CPU (docs/benchmarks.md). The loop then waits
    whenever the call does, so never for a call that waits on a network.

    A refusal raised by `fn` (403, 404) leaves only after its record is durable too; if that
    record cannot be committed, the 503 replaces it, as when the thread waits in place."""
    tickets: list[Ticket] = []
    token = _DEFERRED.set(tickets)
    try:
        result = fn(*args) if inline else await run_in_threadpool(fn, *args)
    except Exception:
        await _all(tickets, timeout)
        raise
    finally:
        _DEFERRED.reset(token)
    await _all(tickets, timeout)
    return result


async def _all(tickets: list[Ticket], timeout: float) -> None:
    for ticket in tickets:
        await ticket.wait(timeout)
