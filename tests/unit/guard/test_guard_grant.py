"""The session's grant (engine.py, `grantable`; ledger.py, `spend`): after a count that finds
every threshold far, the next new patients are counted with an insort and no count, and only
while nothing could have moved a count more than they do."""

from __future__ import annotations

import dataclasses
import random

import pytest
from sqlalchemy import select

from rempart import clock
from rempart.access.roles import Role
from rempart.access.settings import PolicySettings
from rempart.context import RequestContext
from rempart.guard import counters, signals
from rempart.guard.baselines import Baseline
from rempart.guard.counters import Counts
from rempart.guard.engine import LAG_MICROS, MARGIN, RATE_MICROS, grantable
from rempart.guard.ledger import Ledger
from rempart.guard.settings import MINUTE, ROLE_LIMITS, Thresholds
from rempart.guard.tables import guard_daily
from rempart.guard.window import AccountWindow
from rempart.wiring import Services
from tests.unit.access.support import new_staff
from tests.unit.guard.support import scrape, ward
from tests.unit.guard.test_guard_signals import DEFAULTS, WHO, counts

CTX = RequestContext("10.0.0.9", "test")


def _margin(pace: int) -> int:
    return MARGIN + pace * LAG_MICROS // RATE_MICROS


def _after(c: Counts, k: int) -> Counts:
    """The counts after k more new patients: each raises every patient count by one."""
    return dataclasses.replace(
        c,
        session_short=c.session_short + k,
        account_short=c.account_short + k,
        account_hour=c.account_hour + k,
        account_day=c.account_day + k,
        today=c.today + k,
    )


HIGH = Thresholds(
    PolicySettings({d.key: d.high for limits in ROLE_LIMITS.values() for d in limits})
)


@pytest.mark.parametrize(("seed", "thresholds"), [(0, DEFAULTS), (1, DEFAULTS), (2, HIGH)])
def test_every_granted_read_would_have_found_the_headroom(
    seed: int, thresholds: Thresholds
) -> None:
    """For any counts with headroom, any pace and any baseline: each of the `grantable` reads
    that follow, whatever pace they read at, still has the headroom the full path needs."""
    rng = random.Random(seed)
    short, hour, day = thresholds.role_limits(WHO.role)
    granted = 0
    for _ in range(3_000):
        c = counts(account_short=rng.randrange(0, short))
        c = dataclasses.replace(
            c,
            session_short=rng.randrange(0, c.account_short + 1),
            account_hour=rng.randrange(c.account_short, hour + 1),
        )
        c = dataclasses.replace(c, account_day=rng.randrange(c.account_hour, day + 1))
        c = dataclasses.replace(c, today=rng.randrange(0, c.account_day + 1))
        base = None
        if rng.random() < 0.5:
            base = Baseline(
                days=rng.randrange(0, 30),
                p99=rng.randrange(0, 40),
                hour_days=(0,) * 24,
                peer_days=rng.randrange(0, 40),
                peer_p99=rng.randrange(0, 40),
            )
        pace = rng.randrange(0, 40)
        if not signals.headroom(c, thresholds, WHO, base, 2 * _margin(pace), 0):
            assert signals.slack(c, thresholds, WHO, base, 2 * _margin(pace)) < 0
            continue
        left = grantable(signals.slack(c, thresholds, WHO, base, 2 * _margin(pace)))
        granted += left
        for k in range(1, left + 1):
            worst = pace + k  # every granted read within the same second
            assert signals.headroom(_after(c, k), thresholds, WHO, base, 2 * _margin(worst), 0)
    assert granted > 300  # the loop above checked hundreds of granted reads


def test_no_grant_without_room() -> None:
    assert grantable(0) == 0
    assert grantable(2) == 0
    assert grantable(-5) == 0
    assert grantable(100) > 50


class Spy:
    """Counts the full counts (`Ledger.count_in`) the guard makes."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.full = 0
        original = Ledger.count_in

        def count_in(ledger: Ledger, *args: object, **kwargs: object) -> object:
            self.full += 1
            return original(ledger, *args, **kwargs)  # type: ignore[arg-type]

        monkeypatch.setattr(Ledger, "count_in", count_in)


def test_a_grant_counts_without_a_count_until_something_else_moves_the_window(
    services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    doctor, ids = ward(services, 12)
    clinician = new_staff(services, Role.CLINICIAN, practitioner=doctor)
    who = clinician.principal()
    session = who.session_id or ""
    spy = Spy(monkeypatch)
    services.records.read(who, CTX, "Patient", ids[0])
    assert spy.full == 1  # the first new patient is counted: the count grants the next ones
    for pid in ids[1:4]:
        services.records.read(who, CTX, "Patient", pid)
    assert spy.full == 1
    window = services.guard.ledger.loaded(clinician.id)
    assert window is not None
    now = clock.now_micros()
    assert window.counts(session, now, 5 * MINUTE, 0).session_short == 4  # all counted

    # Another process's touch of the same account (as the poll merges it): counted again.
    window.add("elsewhere", "read", "Patient/remote", now)
    services.records.read(who, CTX, "Patient", ids[4])
    assert spy.full == 2
    services.records.read(who, CTX, "Patient", ids[5])
    assert spy.full == 2  # and granted again

    # Another session of the account: its own counts, its own grant.
    second = clinician.principal()  # a new session id
    services.records.read(second, CTX, "Patient", ids[6])
    assert spy.full == 3

    # The first session's grant ended: the second session's touch moved the window.
    services.records.read(who, CTX, "Patient", ids[7])
    assert spy.full == 4

    # The end of the minute ends a grant.
    grant = window.grant
    assert grant is not None
    grant.until = clock.now_micros()
    services.records.read(who, CTX, "Patient", ids[8])
    assert spy.full == 5

    # A release (the window restarts) ends it too.
    window.reset(clock.now_micros() - 1)
    assert window.grant is None
    services.records.read(who, CTX, "Patient", ids[9])
    assert spy.full == 6


def test_a_grant_never_outlasts_a_change_of_thresholds(
    services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    doctor, ids = ward(services, 4)
    clinician = new_staff(services, Role.CLINICIAN, practitioner=doctor)
    who = clinician.principal()
    spy = Spy(monkeypatch)
    services.records.read(who, CTX, "Patient", ids[0])
    services.records.read(who, CTX, "Patient", ids[1])
    assert spy.full == 1
    before = services.guard.thresholds()
    services.policy.settings.invalidate()  # a new snapshot of the settings: new Thresholds
    assert services.guard.thresholds() is not before
    services.records.read(who, CTX, "Patient", ids[2])
    assert spy.full == 2


def test_a_scrape_under_grants_is_suspended_at_the_threshold_exactly(
    services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The grant changes no decision: a clinician reading new patients as fast as it can is
    suspended on the read past its short threshold (50), as the full count would do."""
    doctor, ids = ward(services, 60)
    clinician = new_staff(services, Role.CLINICIAN, practitioner=doctor)
    spy = Spy(monkeypatch)
    served = scrape(services, clinician, ids, CTX)
    assert served == 50
    assert spy.full < served  # some reads were granted: the grant was in play


def test_a_grant_ends_with_the_minute_its_counts_were_taken_in(services: Services) -> None:
    """Granted just before an hour turns (counts taken at 19:59:59.999 say, judged as working
    hours), the grant ends at 20:00, whenever the grant itself was written."""
    window = AccountWindow()
    window.add("s", "read", "Patient/a", 1)
    t = services.guard.thresholds()
    taken = 7 * 60 * MINUTE - 1  # one microsecond before a whole hour
    services.guard.ledger.grant(window, "s", t, window.version, 10, taken)
    assert window.grant is not None
    assert window.grant.until == 7 * 60 * MINUTE
    assert window.spend("s", t, "Patient/b", taken)
    assert not window.spend("s", t, "Patient/c", 7 * 60 * MINUTE)  # the next hour: recount


def test_granted_reads_are_taken_into_the_window_in_a_batch(services: Services) -> None:
    """A granted read is an append (`AccountWindow.unsettled`): the sorted lists and the
    version do not move until it is settled, and every count settles first."""
    window = AccountWindow()
    window.add("s", "read", "Patient/a", 1_000)
    t = services.guard.thresholds()
    services.guard.ledger.grant(window, "s", t, window.version, 10, 1_000)
    version = window.version
    assert window.spend("s", t, "Patient/b", 2_000)
    assert window.spend("s", t, "Patient/a", 3_000)  # a re-read after the minute
    assert window.version == version  # still this grant's: nothing else moved the window
    assert window.patients.times == [1_000]  # not in the lists yet
    counts = window.counts("s", 4_000, 5 * MINUTE, 0)  # settles first
    assert (counts.session_short, counts.account_short) == (2, 2)
    assert window.patients.at == {"Patient/a": 3_000, "Patient/b": 2_000}
    assert window.unsettled == []
    # A read granted before a release and settled after it is not counted.
    assert window.spend("s", t, "Patient/c", 5_000)
    window.reset(6_000)
    assert window.counts("s", 7_000, 5 * MINUTE, 0).account_short == 0


def test_granted_reads_reach_today_s_baseline_row(services: Services) -> None:
    doctor, ids = ward(services, 8)
    clinician = new_staff(services, Role.CLINICIAN, practitioner=doctor)
    who = clinician.principal()
    zone = services.guard.config.zone
    day, hour, _ = counters.local_day_and_hour(clock.now_micros(), zone)
    for pid in ids:
        services.records.read(who, CTX, "Patient", pid)
    ledger = services.guard.ledger
    with ledger.writing():
        ledger.flush_only()  # daily rows included (`sync` writes them once a second at most)
    hours = 1 << hour | 1 << counters.local_day_and_hour(clock.now_micros(), zone)[1]
    with services.engine.connect() as conn:
        row = conn.execute(
            select(guard_daily.c.patients, guard_daily.c.hours).where(
                guard_daily.c.account_id == clinician.id, guard_daily.c.day == day
            )
        ).one()
    assert row.patients == len(ids)
    assert row.hours & hours  # (the hour may have turned during the reads)
