"""Rows built ahead of their commit (writer.Prepared, stage.Stager) and WAL checkpoints off the
commit path (checkpoint.py): positions, tree and durability stay exactly as without them."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import func, select
from tests.unit.audit.conftest import make_record, second_log

from rempart.audit.checkpoint import RECORDS
from rempart.audit.durable import AuditUnavailable, Ticket, joined
from rempart.audit.entry import COLUMNS, row_leaf
from rempart.audit.heads import HeadVerifier
from rempart.audit.log import AuditLog
from rempart.audit.merkle import mth
from rempart.audit.stage import CALL_RECORDS
from rempart.audit.tables import audit_event
from rempart.audit.verify import verify_log
from rempart.audit.writer import Prepared
from rempart.wiring import Services


def _rows(services: Services) -> list[Any]:
    with services.engine.connect() as conn:
        return conn.execute(select(audit_event).order_by(audit_event.c.seq)).all()


def _count(services: Services) -> int:
    with services.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(audit_event)).scalar_one())


def _intact(services: Services) -> None:
    """Contiguous positions, every leaf hash right, the writer's tree that of the rows, and
    `audit verify` agrees."""
    rows = _rows(services)
    assert [r.seq for r in rows] == list(range(len(rows)))
    for row in rows:
        assert row_leaf(tuple(row._mapping[c] for c in COLUMNS)) == row.leaf_hash
    services.audit.sign_now()
    assert services.audit._frontier is not None
    assert services.audit._frontier.root() == mth([r.leaf_hash for r in rows])
    report = verify_log(
        services.engine, HeadVerifier(services.audit.signer.public), services.audit.heads_file
    )
    assert report.ok, report.to_json()


def _steady(services: Services) -> None:
    """Two commits: the writer now knows where the log ends and builds batches ahead."""
    services.audit.record(make_record(0))
    services.audit.record(make_record(1))
    assert services.audit._writer.steady


def _wait(condition: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.005)


def test_rows_built_ahead_are_the_rows_stored(services: Services) -> None:
    _steady(services)
    writer = services.audit._writer
    records = [make_record(10 + i) for i in range(5)]
    prepared = writer.prepare(records)
    assert prepared is not None
    assert writer.append(records, prepared) is True
    stored = _rows(services)[2:]
    assert [r.seq for r in stored] == [2, 3, 4, 5, 6]
    assert [r.leaf_hash for r in stored] == [row[-1] for row in prepared.rows]
    assert [r.resource_id for r in stored] == [f"obs-{10 + i}" for i in range(5)]
    _intact(services)


@pytest.mark.parametrize("appender", ["another process", "a write's own transaction"])
def test_rows_built_ahead_are_rebuilt_when_the_log_moved(services: Services, appender: str) -> None:
    _steady(services)
    writer = services.audit._writer
    records = [make_record(20 + i) for i in range(4)]
    prepared = writer.prepare(records)
    assert prepared is not None
    assert prepared.size == 2
    if appender == "another process":
        other = second_log(services)
        try:
            other.record(make_record(90), make_record(91), make_record(92))
        finally:
            other.close()
    else:
        with services.engine.begin() as conn, joined(conn):
            services.audit.record(make_record(90), make_record(91), make_record(92))
    # Built for positions 2..5, but 2..4 are taken now: the writer builds them again.
    assert writer.append(records, prepared) is False
    rows = _rows(services)
    assert [r.resource_id for r in rows[2:5]] == ["obs-90", "obs-91", "obs-92"]
    assert [r.resource_id for r in rows[5:]] == [f"obs-{20 + i}" for i in range(4)]
    assert rows[5].leaf_hash != prepared.rows[0][-1]  # not the stale rows
    assert not writer.steady  # the next batch is built inside its transaction
    _intact(services)


def test_a_failure_to_build_ahead_leaves_the_building_to_the_transaction(
    services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    _steady(services)

    def broken(*args: Any, **kwargs: Any) -> Prepared:
        raise RuntimeError("injected")

    monkeypatch.setattr(services.audit._writer, "prepare", broken)
    services.audit.record(make_record(40), make_record(41))
    assert [r.resource_id for r in _rows(services)[2:]] == ["obs-40", "obs-41"]
    _intact(services)


def test_parts_join_only_when_consecutive(services: Services) -> None:
    _steady(services)
    writer = services.audit._writer
    first = writer.prepare([make_record(30)])
    assert first is not None
    second = writer.prepare([make_record(31), make_record(32)], after=first)
    assert second is not None
    assert second.size == first.frontier.size
    both = Prepared.joined([first, second])
    assert [row[0] for row in both.rows] == [2, 3, 4]
    assert both.frontier is second.frontier
    with pytest.raises(ValueError, match="consecutive"):
        Prepared.joined([second, first])
    assert writer.append([make_record(30), make_record(31), make_record(32)], both)
    _intact(services)


class _HeldCommit:
    """The writer's next commit waits at its start until `release()`; every commit notes the
    tickets settled when it began and whether its rows had been built ahead."""

    def __init__(self, log: AuditLog, monkeypatch: pytest.MonkeyPatch, fail: bool = False) -> None:
        self.started = threading.Event()
        self._gate = threading.Event()
        self._fail = fail
        self._held = False
        self.used: list[bool] = []
        self.watched: list[Ticket] = []
        self.settled_at_start: list[list[bool]] = []
        real = log._writer.append

        def append(records: list[Any], prepared: Prepared | None = None) -> bool:
            self.settled_at_start.append([t.settled for t in self.watched])
            if not self._held:
                self._held = True
                self.started.set()
                assert self._gate.wait(20)
                if self._fail:
                    raise OSError("injected audit failure")
            used = real(records, prepared)
            self.used.append(used)
            return used

        monkeypatch.setattr(log._writer, "append", append)

    def release(self) -> None:
        self._gate.set()


HELD = [f"obs-{100 + i}" for i in range(3)]


def _start_held_batch(services: Services) -> tuple[list[Ticket], threading.Thread]:
    """One caller leads a commit of three records, held; returns its ticket (in a list, once
    submitted) and its thread."""
    box: list[Ticket] = []

    def lead() -> None:
        box.append(services.audit.submit(*(make_record(100 + i) for i in range(3))))

    services.audit._last_commit = 0.0  # outside the commit window: the caller leads in place
    thread = threading.Thread(target=lead, daemon=True)
    thread.start()
    return box, thread


def test_staged_tickets_settle_only_after_their_own_commit(
    services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    _steady(services)
    held = _HeldCommit(services.audit, monkeypatch)
    box, leader = _start_held_batch(services)
    assert held.started.wait(10)
    # Queued while the first batch is in the database: the stager builds them meanwhile.
    queued = [services.audit.submit(make_record(200 + i)) for i in range(5)]
    held.watched = queued
    stager = services.audit._stager
    assert len(stager._tickets) == 5  # built by this thread as it queued them
    assert not any(t.settled for t in queued)  # staged, not settled
    assert _count(services) == 2  # and not stored yet
    held.release()
    leader.join(10)
    _wait(lambda: all(t.settled for t in queued), "the staged batch to commit")
    assert box[0].settled
    assert box[0].error is None
    assert all(t.error is None for t in queued)
    # The staged batch's commit began with none of its tickets settled, and used the rows
    # the stager built.
    assert held.settled_at_start[1] == [False] * 5
    assert held.used == [True, True]
    rows = _rows(services)
    assert [r.resource_id for r in rows[2:]] == HELD + [f"obs-{200 + i}" for i in range(5)]
    _intact(services)


def test_threads_waiting_in_place_and_large_calls_are_queued_not_staged(
    services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    _steady(services)
    held = _HeldCommit(services.audit, monkeypatch)
    _, leader = _start_held_batch(services)
    assert held.started.wait(10)
    staged = services.audit.submit(make_record(400))
    waiting = threading.Thread(target=services.audit.record, args=(make_record(401),))
    waiting.start()
    _wait(lambda: len(services.audit._queue) == 1, "the waiting thread's ticket")
    assert services.audit._queue[0].parked
    # A call of many records (a search page) is queued too, for the leader to build.
    page = services.audit.submit(*(make_record(500 + i) for i in range(CALL_RECORDS + 1)))
    assert services.audit._queue[-1] is page
    assert services.audit._stager._tickets == [staged]
    held.release()
    leader.join(10)
    waiting.join(10)
    assert not waiting.is_alive()
    _wait(lambda: staged.settled and page.settled, "the other tickets")
    rows = _rows(services)
    page_ids = [f"obs-{500 + i}" for i in range(CALL_RECORDS + 1)]
    assert [r.resource_id for r in rows[2:]] == [*HELD, "obs-400", "obs-401", *page_ids]
    _intact(services)


def test_a_failed_commit_sends_staged_tickets_back_and_they_commit_after(
    services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    _steady(services)
    held = _HeldCommit(services.audit, monkeypatch, fail=True)
    box, leader = _start_held_batch(services)
    assert held.started.wait(10)
    queued = [services.audit.submit(make_record(300 + i)) for i in range(4)]
    stager = services.audit._stager
    assert len(stager._tickets) == 4
    held.release()
    leader.join(10)
    _wait(lambda: all(t.settled for t in queued), "the queued tickets to commit")
    assert isinstance(box[0].error, OSError)  # the failed batch fails its own callers only
    with pytest.raises(AuditUnavailable):
        asyncio.run(box[0].wait(1))
    assert all(t.error is None for t in queued)
    # Built to follow the failed batch, the staged rows were dropped and built again.
    assert held.used == [False]
    rows = _rows(services)
    assert [r.resource_id for r in rows[2:]] == [f"obs-{300 + i}" for i in range(4)]
    _intact(services)


def test_many_concurrent_callers_keep_order_tree_and_every_record(services: Services) -> None:
    """The read routes' path under load: calls queued from worker threads, their tickets
    awaited on an event loop, batches built ahead while others commit."""
    total, per_hop = 3000, 50
    used: list[bool] = []
    writer = services.audit._writer
    real = writer.append

    def counting(records: list[Any], prepared: Prepared | None = None) -> bool:
        used.append(real(records, prepared))
        return used[-1]

    writer.append = counting  # type: ignore[method-assign]
    hops = [
        [make_record(1000 + h * per_hop + i) for i in range(per_hop)]
        for h in range(total // per_hop)
    ]

    async def run() -> None:
        loop = asyncio.get_running_loop()
        gate = asyncio.Semaphore(8)

        async def one(hop: list[Any]) -> None:
            async with gate:
                tickets = await loop.run_in_executor(
                    None, lambda: [services.audit.submit(r) for r in hop]
                )
                for ticket in tickets:
                    await ticket.wait(60)

        await asyncio.gather(*(one(h) for h in hops))

    asyncio.run(run())
    rows = _rows(services)
    assert len(rows) == total
    ids = sorted(r.resource_id for r in rows)
    assert ids == sorted(f"obs-{1000 + i}" for i in range(total))  # each exactly once
    assert len(used) < total  # group commit
    assert any(used)  # batches built ahead of their transaction were stored
    assert not services.audit._stager.busy
    _intact(services)


def test_wal_checkpoints_run_beside_the_commits_on_sqlite(services: Services) -> None:
    writer = services.audit._writer
    if services.engine.dialect.name != "sqlite":
        assert writer._checkpoints is None  # PostgreSQL checkpoints on its own
        return
    checkpoints = writer._checkpoints
    assert checkpoints is not None
    for i in range(RECORDS // 50 - 1):
        services.audit.record(*(make_record(i * 50 + k) for k in range(50)))
    # SQLite's own cadence (~1,000 WAL frames): not yet.
    assert checkpoints._thread is None
    services.audit.record(*(make_record(1000 + k) for k in range(50)))
    conn = writer._connection()
    # Durability of a commit is untouched (FULL); only SQLite's own checkpoint moves away.
    assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2
    assert conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar() == 8000
    _wait(lambda: checkpoints.runs > 0, "a background checkpoint")
    thread = checkpoints._thread
    assert thread is not None
    assert thread.is_alive()
    _intact(services)
    services.audit.close()
    assert not thread.is_alive()
