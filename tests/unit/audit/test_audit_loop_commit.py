"""PostgreSQL: the records of reads served on the event loop are committed by the loop itself,
awaited (audit/loopwriter.py): the loop serves on while PostgreSQL answers, a failed commit
still fails its reads, and tampering is still caught."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import psycopg
import pytest
from sqlalchemy import func, select
from tests.unit.audit.conftest import make_record

from rempart.audit.durable import AuditUnavailable, run_audited
from rempart.audit.loopwriter import conninfo
from rempart.audit.tables import audit_batch, audit_event
from rempart.audit.writer import PG_LOCK
from rempart.wiring import Services


def _postgresql(services: Services) -> None:
    if services.engine.dialect.name != "postgresql":
        pytest.skip("the loop's own audit connection is PostgreSQL's (SQLite commits in place)")


def _count(services: Services, table: Any = audit_event) -> int:
    with services.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def _reader(services: Services) -> Any:
    def read(*numbers: int) -> int:
        services.audit.record(*(make_record(i) for i in numbers))
        return numbers[0]

    return read


def test_the_loop_serves_on_while_its_commit_waits_on_the_database(services: Services) -> None:
    _postgresql(services)
    read = _reader(services)
    # Another appender holds the log's lock for a second: the loop's commit waits on it.
    holder = psycopg.connect(conninfo(services.engine), autocommit=True)
    holder.execute("BEGIN")
    holder.execute("SELECT pg_advisory_xact_lock(%s)", (PG_LOCK,))
    release = threading.Timer(1.0, lambda: holder.execute("COMMIT"))
    release.start()

    async def serve() -> tuple[int, bool, int]:
        task = asyncio.ensure_future(run_audited(read, 1, inline=True))
        ticks, until = 0, time.monotonic() + 0.5
        while time.monotonic() < until:
            await asyncio.sleep(0.01)
            ticks += 1
        waiting = not task.done() and _count(services) == 0
        return await asyncio.wait_for(task, 20), waiting, ticks

    try:
        result, waiting, ticks = asyncio.run(serve())
    finally:
        release.join()
        holder.close()
    assert result == 1
    assert waiting  # the read's data waited for its commit...
    assert ticks >= 20  # ...while the loop went on turning (a loop blocked in it: 1 tick)
    assert _count(services) == 1
    assert services.audit._drainer is None  # no thread committed


def test_a_failed_loop_commit_fails_its_reads_and_the_next_one_reconnects(
    services: Services,
) -> None:
    _postgresql(services)
    read = _reader(services)

    async def serve() -> None:
        assert await run_audited(read, 0, inline=True) == 0
        on_loop = services.audit._on_loop
        assert on_loop is not None
        assert on_loop._conn is not None
        pid = on_loop._conn.info.backend_pid
        with psycopg.connect(conninfo(services.engine), autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
            for _ in range(100):  # until the backend is gone
                gone = admin.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE pid = %s", (pid,)
                ).fetchone()
                if gone == (0,):
                    break
                await asyncio.sleep(0.05)
        with pytest.raises(AuditUnavailable) as caught:
            await run_audited(read, 1, inline=True)
        assert caught.value.status == 503
        assert await run_audited(read, 2, inline=True) == 2

    asyncio.run(serve())
    with services.engine.connect() as conn:
        stored = conn.execute(
            select(audit_event.c.seq, audit_event.c.resource_id).order_by(audit_event.c.seq)
        ).all()
    assert [tuple(r) for r in stored] == [(0, "obs-0"), (1, "obs-2")]


def test_a_row_written_behind_the_loop_writer_fails_its_batch_and_raises_an_alert(
    services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    _postgresql(services)
    read = _reader(services)
    alerts: list[tuple[str, dict[str, Any]]] = []
    monkeypatch.setattr(
        services.audit._writer, "_alert", lambda kind, _msg, details: alerts.append((kind, details))
    )
    asyncio.run(run_audited(read, 0, inline=True))
    with services.engine.begin() as conn:
        forged = conn.execute(select(audit_event).where(audit_event.c.seq == 0)).one()._asdict()
        conn.execute(audit_event.insert().values({**forged, "seq": 1}))
    with pytest.raises(AuditUnavailable):
        asyncio.run(run_audited(read, 1, 2, inline=True))
    assert alerts == [("audit-log-foreign-row", {"position": 1})]
    assert _count(services, audit_batch) == 1  # nothing of the failed batch
    assert _count(services) == 2  # the first record and the forged one


def test_records_the_loop_still_owes_are_committed_before_the_log_closes(
    services: Services,
) -> None:
    _postgresql(services)

    async def shut_down() -> bool:
        ticket = services.audit.submit(make_record(0))  # the loop leads; it has not committed
        owed = not ticket.settled
        await services.audit.settle_loop()  # as the app's shutdown does
        return owed and ticket.settled and ticket.error is None

    assert asyncio.run(shut_down())
    assert _count(services) == 1
    started = time.monotonic()
    services.audit.close()
    assert time.monotonic() - started < 5  # nothing left for close() to wait for
