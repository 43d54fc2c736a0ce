"""Waiting for the audit commit on the event loop: the worker thread is free at once, the result
is released only once its records are committed, and a failure still fails the request."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from tests.unit.audit.conftest import make_record

from rempart.audit import log as audit_log
from rempart.audit.durable import AuditUnavailable, immediate, run_audited
from rempart.audit.settings import load_audit_settings
from rempart.audit.tables import audit_batch, audit_event
from rempart.errors import Forbidden
from rempart.wiring import Services


def _count(services: Services, table: Any = audit_event) -> int:
    with services.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def _hold_the_log(services: Services, monkeypatch: pytest.MonkeyPatch) -> threading.Event:
    """Another request's commit is in progress (stuck until the returned gate opens)."""
    gate, started = threading.Event(), threading.Event()
    real = services.audit._writer.append
    first = [True]

    def slow(records: list[Any], prepared: Any = None) -> bool:
        if first[0]:
            first[0] = False
            started.set()
            gate.wait(20)
        return real(records, prepared)

    monkeypatch.setattr(services.audit._writer, "append", slow)
    threading.Thread(target=services.audit.record, args=(make_record(0),), daemon=True).start()
    assert started.wait(10)
    return gate


def test_the_result_waits_for_the_commit_not_the_worker_thread(
    services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    gate = _hold_the_log(services, monkeypatch)
    returned = threading.Event()

    def read() -> str:
        services.audit.record(make_record(1))  # queued behind the commit in progress
        returned.set()
        return "patient data"

    async def serve() -> str:
        task = asyncio.create_task(run_audited(read))
        await asyncio.sleep(0.3)
        assert returned.is_set()  # the worker thread did not wait for the commit...
        assert not task.done()  # ...but the data does
        assert _count(services) == 0
        gate.set()
        result = await asyncio.wait_for(task, 20)
        assert _count(services) == 2  # committed before the result was released
        return result

    assert asyncio.run(serve()) == "patient data"


def test_a_failed_commit_fails_the_request(
    services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(records: list[Any], prepared: Any = None) -> bool:
        raise OSError("injected audit failure")

    monkeypatch.setattr(services.audit._writer, "append", broken)

    def read() -> str:
        services.audit.record(make_record(1))
        return "patient data"

    with pytest.raises(AuditUnavailable) as caught:
        asyncio.run(run_audited(read))
    assert caught.value.status == 503


def test_a_refusal_leaves_after_its_record_or_becomes_a_503(
    services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse() -> str:
        services.audit.record(make_record(1, outcome="denied"))
        raise Forbidden("not yours")

    with pytest.raises(Forbidden):
        asyncio.run(run_audited(refuse))
    assert _count(services) == 1

    def broken(records: list[Any], prepared: Any = None) -> bool:
        raise OSError("injected audit failure")

    monkeypatch.setattr(services.audit._writer, "append", broken)
    with pytest.raises(AuditUnavailable):
        asyncio.run(run_audited(refuse))


def test_immediate_waits_in_place_under_run_audited(services: Services) -> None:
    def act() -> int:
        with immediate():
            services.audit.record(make_record(1))
        return _count(services)  # durable before the act that follows it

    assert asyncio.run(run_audited(act)) == 1


def test_concurrent_requests_share_commits_and_each_waits_for_its_own(
    services: Services,
) -> None:
    requests = 200

    def read(i: int) -> int:
        services.audit.record(make_record(i))
        return i

    async def serve() -> list[int]:
        return list(await asyncio.gather(*(run_audited(read, i) for i in range(requests))))

    started = time.perf_counter()
    assert asyncio.run(serve()) == list(range(requests))
    assert time.perf_counter() - started < 60
    assert _count(services) == requests
    assert _count(services, audit_batch) < requests  # group commit
    services.audit.close()  # the drainer thread stops with the log
    assert services.audit._drainer is None or not services.audit._drainer.is_alive()


def test_records_from_worker_threads_are_committed_a_thread_window_apart(
    services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(audit_log, "THREAD_WINDOW", 0.3)  # exaggerated, to be visible

    def read(i: int) -> int:
        services.audit.record(make_record(i))
        return i

    async def serve() -> float:
        await run_audited(read, 0)  # a quiet log: committed at once, in the calling thread
        started = time.monotonic()
        await asyncio.gather(*(run_audited(read, i) for i in range(1, 6)))
        return time.monotonic() - started

    assert asyncio.run(serve()) >= 0.2  # the next commit waited for the window...
    assert _count(services) == 6
    assert _count(services, audit_batch) <= 3  # ...and carried the later reads together


def test_an_idle_loop_has_its_reads_committed_without_waiting_for_the_window(
    services: Services,
) -> None:
    services.audit._window = 5.0  # were it waited for, the test would take 5 s a commit

    def read(i: int) -> int:
        services.audit.record(make_record(i))
        return i

    async def serve() -> float:
        started = time.monotonic()
        for i in range(3):  # one client, one read after the other
            await run_audited(read, i, inline=True)
        await asyncio.gather(*(run_audited(read, i, inline=True) for i in range(3, 11)))
        return time.monotonic() - started

    assert asyncio.run(serve()) < 2.5
    assert _count(services) == 11
    assert _count(services, audit_batch) <= 5  # the 8 concurrent reads shared commits
    # ...committed by the loop itself once it had nothing else to do: no thread was woken.
    assert services.audit._drainer is None


def test_a_busy_loop_has_its_reads_committed_a_window_apart(services: Services) -> None:
    services.audit._window = 0.25

    def read(i: int) -> int:
        time.sleep(0.0002)  # a read's own database work, which lets other threads run
        services.audit.record(make_record(i))
        return i

    async def serve() -> tuple[int, int]:
        # A client that keeps the loop busy: a read queued on every turn of the loop, and
        # none of them waited for, for a second.
        stop, count, waits = time.monotonic() + 1.0, 0, []
        while time.monotonic() < stop:
            waits.append(asyncio.ensure_future(run_audited(read, count, inline=True)))
            count += 1
            await asyncio.sleep(0)
        served_while_busy = sum(1 for w in waits if w.done())
        await asyncio.gather(*waits)
        return count, served_while_busy

    reads, served_while_busy = asyncio.run(serve())
    assert reads > 100
    assert _count(services) == reads
    # Committed while the loop stayed busy (the loop never ran out of work), a window apart:
    # not one commit per read or per turn.
    assert served_while_busy > 0
    assert _count(services, audit_batch) <= 10


def test_the_commit_window_is_bounded(tmp_path: Path) -> None:
    assert load_audit_settings(tmp_path).commit_window_ms == 8
    (tmp_path / "config.toml").write_text("[audit]\ncommit_window_ms = 0\n")
    assert load_audit_settings(tmp_path).commit_window_ms == 0
    (tmp_path / "config.toml").write_text("[audit]\ncommit_window_ms = 50\n")
    with pytest.raises(ValueError, match="commit_window_ms"):
        load_audit_settings(tmp_path)


def test_a_commit_that_does_not_come_in_time_fails_the_request(
    services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    gate = _hold_the_log(services, monkeypatch)

    def read() -> str:
        services.audit.record(make_record(1))  # queued behind the stuck commit
        return "patient data"

    try:
        started = time.monotonic()
        with pytest.raises(AuditUnavailable, match="in time") as caught:
            asyncio.run(run_audited(read, timeout=0.3))
        assert caught.value.status == 503
        assert 0.25 <= time.monotonic() - started < 10
    finally:
        gate.set()  # the stuck commit ends; the late settle finds a future nobody awaits
    services.audit.close()
    assert _count(services) == 2


def test_many_waiters_on_several_loops_are_each_released_once_committed(
    services: Services,
) -> None:
    """Tickets of two event loops in one batch: each loop is woken for its own."""

    def read(i: int) -> int:
        services.audit.record(make_record(i))
        return i

    async def serve(base: int) -> list[int]:
        return list(await asyncio.gather(*(run_audited(read, base + i) for i in range(50))))

    results: list[list[int]] = []
    loops = [
        threading.Thread(target=lambda b=b: results.append(asyncio.run(serve(b)))) for b in (0, 100)
    ]
    for t in loops:
        t.start()
    for t in loops:
        t.join(60)
    assert sorted(map(sorted, results)) == [list(range(50)), list(range(100, 150))]
    assert _count(services) == 100
