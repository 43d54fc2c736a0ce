"""The guard's in-memory windows and their ledger, on SQLite and PostgreSQL: the windows count
what the database aggregate counts, other processes' touches arrive within the staleness
bound, counts survive a restart, and when the touches cannot be written, data stops leaving."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator

import pytest
from sqlalchemy import func, select

from rempart import clock
from rempart.access.roles import Role
from rempart.audit.checkpoint import WRITER_PAGES
from rempart.config import Settings
from rempart.context import RequestContext
from rempart.errors import ServiceUnavailable
from rempart.guard import counters, ledger
from rempart.guard.counters import Touch
from rempart.guard.errors import GuardContained
from rempart.guard.settings import HOUR, MINUTE
from rempart.guard.tables import guard_touch
from rempart.guard.window import AccountWindow
from rempart.guard.wire import GuardStateUnavailable, Wire
from rempart.wiring import Services, open_services
from tests.unit.access.support import new_staff
from tests.unit.guard.support import ward

CTX = RequestContext("10.0.0.7", "test")
KINDS = ("read", "read", "read", "bg", "denied", "missing", "search")


def test_the_windows_count_what_the_database_aggregate_counts(services: Services) -> None:
    rng = random.Random(7)
    now = clock.now_micros()
    window = AccountWindow()
    with services.engine.begin() as conn:
        for _ in range(400):
            kind = rng.choice(KINDS)
            patient_id = f"p{rng.randrange(60)}" if kind in ("read", "bg") else None
            session = rng.choice(("s1", "s2"))
            at = now - rng.randrange(26 * HOUR)
            counters.write(conn, "acc", session, [Touch(kind, patient_id)], at)
            window.add(session, kind, patient_id, at)
    midnight = now - 5 * HOUR
    for session in ("s1", "s2"):
        for short in (5 * MINUTE, 60 * MINUTE):
            with services.engine.connect() as conn:
                exact = counters.count(conn, "acc", session, now, short, midnight)
            assert window.counts(session, now, short, midnight) == exact
    # A release restarts counting in both.
    with services.engine.begin() as conn:
        counters.reset(conn, "acc", now - 2 * HOUR)
    window.reset(now - 2 * HOUR)
    with services.engine.connect() as conn:
        exact = counters.count(conn, "acc", "s1", now, 5 * MINUTE, midnight)
    assert window.counts("s1", now, 5 * MINUTE, midnight) == exact
    assert exact.account_day < 60


def test_a_late_touch_slots_in_and_an_older_one_does_not_move_a_patient() -> None:
    window = AccountWindow()
    window.add("s", "read", "a", 1_000)
    window.add("s", "read", "a", 500)  # another process's older touch of the same patient
    window.add("s", "read", "b", 800)
    assert window.counts("s", 1_000, 300, 0).account_short == 2  # both at >= 700
    assert window.counts("s", 1_000, 150, 0).account_short == 1  # only a (1,000)


@pytest.fixture
def twin(settings: Settings, services: Services) -> Iterator[Services]:
    """A second server process on the same database."""
    other = open_services(settings, pool_size=2)
    yield other
    other.close()


def test_another_process_sees_the_touches_within_the_staleness_bound(
    services: Services, twin: Services
) -> None:
    doctor, ids = ward(services, 12)
    clinician = new_staff(services, Role.CLINICIAN, practitioner=doctor)
    who = clinician.principal()
    for pid in ids[:10]:
        services.records.read(who, CTX, "Patient", pid)
    # Written by the flusher within FLUSH_SECONDS, merged by the other process on its next
    # new patient when its view is older than MAX_STALE_SECONDS.
    time.sleep(ledger.FLUSH_SECONDS * 5 + ledger.MAX_STALE_SECONDS)
    twin.records.read(who, CTX, "Patient", ids[10])
    window = twin.guard.ledger.loaded(clinician.id)
    assert window is not None
    counts = window.counts(who.session_id or "", clock.now_micros(), 5 * MINUTE, 0)
    assert counts.account_short == 11
    assert counts.session_short == 11


def test_counts_survive_a_restart_including_the_queue(
    services: Services, settings: Settings
) -> None:
    doctor, ids = ward(services, 6)
    clinician = new_staff(services, Role.CLINICIAN, practitioner=doctor)
    who = clinician.principal()
    for pid in ids[:5]:
        services.records.read(who, CTX, "Patient", pid)
    services.close()  # the queue is written at shutdown, whatever the flusher had done
    with services.engine.connect() as conn:
        written = conn.execute(
            select(func.count())
            .select_from(guard_touch)
            .where(guard_touch.c.account_id == clinician.id)
        ).scalar()
    assert written == 5
    restarted = open_services(settings, pool_size=2)
    try:
        restarted.records.read(who, CTX, "Patient", ids[5])
        window = restarted.guard.ledger.loaded(clinician.id)
        assert window is not None
        assert window.counts("x", clock.now_micros(), 5 * MINUTE, 0).account_short == 6
    finally:
        restarted.close()


def test_when_touches_cannot_be_written_data_stops_leaving(
    services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    doctor, ids = ward(services, 4)
    clinician = new_staff(services, Role.CLINICIAN, practitioner=doctor)
    who = clinician.principal()
    services.records.read(who, CTX, "Patient", ids[0])
    services.guard.ledger.sync()  # written: the failure below is of the next batch only

    def broken(*_args: object, **_kwargs: object) -> list[int]:
        raise GuardStateUnavailable("disk full")

    with monkeypatch.context() as patch:
        patch.setattr(Wire, "insert", broken)
        services.records.read(who, CTX, "Patient", ids[1])  # queued; its batch fails
        deadline = time.monotonic() + 5
        while services.guard.ledger._failed is None and time.monotonic() < deadline:
            time.sleep(0.01)
        with pytest.raises(ServiceUnavailable):
            services.records.read(who, CTX, "Patient", ids[2])
    # The database is back: the queue (kept) is written and reads go on.
    services.records.read(who, CTX, "Patient", ids[3])
    services.guard.ledger.sync()
    with services.engine.connect() as conn:
        patients = set(
            conn.execute(
                select(guard_touch.c.patient).where(guard_touch.c.account_id == clinician.id)
            ).scalars()
        )
    assert {ids[0], ids[1], ids[3]} <= patients


SCRAPE = 50  # the clinician's 5-minute threshold
EXTRA = 4  # what a scrape spread over two processes may get beyond it (docs/security.md)


def test_a_concurrent_scrape_over_two_processes_gets_a_handful_at_most(
    services: Services, twin: Services
) -> None:
    doctor, ids = ward(services, SCRAPE + 30)
    clinician = new_staff(services, Role.CLINICIAN, practitioner=doctor)
    who = clinician.principal()
    served: list[str] = []
    lock = threading.Lock()

    def scrape(process: Services, mine: list[str]) -> None:
        for pid in mine:
            try:
                process.records.read(who, CTX, "Patient", pid)
            except GuardContained:
                return
            with lock:
                served.append(pid)

    threads = [
        threading.Thread(target=scrape, args=(services, ids[0::2])),
        threading.Thread(target=scrape, args=(twin, ids[1::2])),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert SCRAPE <= len(served) <= SCRAPE + EXTRA


def test_the_ledger_s_commits_are_relaxed_and_leave_checkpoints_to_the_audit_log(
    services: Services,
) -> None:
    """Touches are counters, not evidence: their commits do not wait for the disk, and on
    SQLite they leave copying the WAL back to the audit log's checkpointer (guard/factory.py)."""
    with services.guard.counting.connect() as conn:
        if conn.dialect.name == "sqlite":
            assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 1  # NORMAL
            assert conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar() == WRITER_PAGES
        else:
            assert conn.exec_driver_sql("SHOW synchronous_commit").scalar() == "off"
    with services.engine.connect() as conn:  # the store's own connections are not relaxed
        if conn.dialect.name == "sqlite":
            assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
        else:
            assert conn.exec_driver_sql("SHOW synchronous_commit").scalar() == "on"
