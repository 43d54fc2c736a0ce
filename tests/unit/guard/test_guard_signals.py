"""The guard's rules, without a database: each fires past its threshold, says why in words
with the numbers, and stays quiet for ordinary work."""

from __future__ import annotations

import dataclasses

import pytest
from sqlalchemy import create_engine

from rempart.access.settings import PolicySettings, check_value
from rempart.access.tables import unit_membership
from rempart.audit.records import AuditRecord
from rempart.errors import InvalidResource
from rempart.guard import signals
from rempart.guard.baselines import PEER_MIN_DAYS, Baseline, Baselines, p99
from rempart.guard.counters import Counts
from rempart.guard.settings import SIGNALS, Level, Thresholds, guard_keys
from rempart.guard.tables import guard_daily
from rempart.store.tables import metadata

WHO = signals.Subject("acc-1", "dr.martin", "clinician", "sess-1")
DEFAULTS = Thresholds(PolicySettings({}))


def counts(**values: int) -> Counts:
    base = dict.fromkeys(Counts.__dataclass_fields__, 0)
    base.update(values)
    return Counts(**base)


def history(days: int = 20, p: int = 6, hours: tuple[int, ...] = tuple(range(8, 18))) -> Baseline:
    hour_days = tuple(days if h in hours else 0 for h in range(24))
    return Baseline(days=days, p99=p, hour_days=hour_days, peer_days=100, peer_p99=12)


def test_the_velocity_alert_explains_itself() -> None:
    (fired,) = signals.velocity(
        counts(session_short=61, account_short=61), DEFAULTS, WHO, history()
    )
    assert fired.signal == "session-velocity"
    assert fired.level == Level.SUSPEND
    assert fired.message == (
        "account dr.martin read 61 distinct patients in 5 min in one session; clinician "
        "threshold 50; own 30-day p99 6/day over 20 active days"
    )
    assert fired.details == {"count": 61, "threshold": 50}


def test_a_scrape_over_two_sessions_is_the_account_signal() -> None:
    fired = signals.velocity(counts(session_short=26, account_short=51), DEFAULTS, WHO, None)
    assert [f.signal for f in fired] == ["account-velocity"]


def test_day_quota_locks_by_default() -> None:
    (fired,) = signals.velocity(counts(account_day=251), DEFAULTS, WHO, None)
    assert fired.signal == "account-day"
    assert fired.level == Level.LOCK


def test_ordinary_counts_fire_nothing() -> None:
    ordinary = counts(
        session_short=8,
        account_short=8,
        account_hour=20,
        account_day=45,
        today=45,
        searches_minute=3,
    )
    base = history()
    assert signals.velocity(ordinary, DEFAULTS, WHO, base) == []
    assert signals.baseline(ordinary, DEFAULTS, WHO, base) == []
    assert signals.enumeration(ordinary, DEFAULTS, WHO) == []
    assert signals.searching(ordinary, DEFAULTS, WHO, widest=30) == []
    assert signals.outside_care(ordinary, DEFAULTS, WHO) == []
    assert signals.off_hours(DEFAULTS, WHO, base, hour=10) == []


def test_baseline_needs_both_own_and_peer_to_be_exceeded() -> None:
    base = history(p=6)  # own limit max(20, 4*6) = 24; peer limit 4*12 = 48
    assert signals.baseline(counts(today=40), DEFAULTS, WHO, base) == []
    (fired,) = signals.baseline(counts(today=49), DEFAULTS, WHO, base)
    assert fired.level == Level.STEP_UP
    assert "own 30-day p99 6/day" in fired.message
    assert "peer p99 12" in fired.message
    assert signals.baseline(counts(today=500), DEFAULTS, WHO, history(days=3)) == []


def test_off_hours_only_where_the_account_never_works() -> None:
    day_worker = history(hours=tuple(range(8, 18)))
    (fired,) = signals.off_hours(DEFAULTS, WHO, day_worker, hour=3)
    assert "03:00" in fired.message
    assert fired.level == Level.ALERT
    night_shift = history(hours=(*range(0, 7), 21, 22, 23))
    assert signals.off_hours(DEFAULTS, WHO, night_shift, hour=3) == []
    assert signals.off_hours(DEFAULTS, WHO, history(days=2, hours=()), hour=3) == []


def test_off_hours_are_usual_where_the_peer_group_works_them() -> None:
    day, evening, late = sum(1 << h for h in range(8, 18)), 1 << 20 | 1 << 21, 1 << 2
    # A ward whose doctors take the night in turn: 9 of its 45 account-days had night work,
    # in the evening mostly; its doctor's first night, at 03:00, is the ward's pattern.
    rota = dataclasses.replace(
        history(), peer_days=45, peer_hours=((day, 36), (evening, 7), (evening | late, 2))
    )
    assert rota.peer_days_within(1 << 3) == 0  # no peer at 03:00 itself
    assert signals.off_hours(DEFAULTS, WHO, rota, hour=3) == []  # 20% >= 5%: a rota night
    # A clinic whose doctors are almost never there out of hours: 1 of 45 days (2%).
    clinic = dataclasses.replace(rota, peer_hours=((day, 44), (day | evening, 1)))
    (fired,) = signals.off_hours(DEFAULTS, WHO, clinic, hour=3)
    assert fired.message.endswith(
        "its peer group worked outside them on 2% of its 45 days (usual from 5%)"
    )
    assert fired.details == {"hour": 3, "days": 20, "peer_percent": 2}
    # Working hours are a setting: with the day ending at 22:00, 20:00-21:00 is no night.
    late_day = Thresholds(PolicySettings({"guard.work_end_hour": 22}))
    (fired,) = signals.off_hours(late_day, WHO, rota, hour=3)
    assert fired.details["peer_percent"] == 4  # the 2 days that also worked at 02:00
    # Too few peer days to mean anything: the account's own history decides, as before.
    alone = dataclasses.replace(rota, peer_days=PEER_MIN_DAYS - 1)
    (fired,) = signals.off_hours(DEFAULTS, WHO, alone, hour=3)
    assert fired.message.endswith("it has no peer group to compare with")
    # The share is a policy setting: at 25%, the ward's 20% no longer makes 03:00 usual.
    strict = Thresholds(PolicySettings({"guard.off_hours_peer_percent": 25}))
    assert [f.signal for f in signals.off_hours(strict, WHO, rota, hour=3)] == ["off-hours"]


def test_the_peer_group_s_hours_come_from_its_daily_rows() -> None:
    columns = ("account_id", "day", "peer", "patients", "hours")
    engine = create_engine("sqlite://")
    metadata.create_all(engine, tables=[guard_daily, unit_membership])
    today = 20_000
    night, day = 1 << 3, sum(1 << h for h in range(8, 18))
    rows = [("own", today - 1, "clinician:icu", 10, day)]
    rows += [(f"peer{i}", today - 1 - i, "clinician:icu", 12, day) for i in range(20)]
    rows += [(f"peer{i}", today - 1 - i, "clinician:icu", 3, night) for i in range(20, 25)]
    rows += [("old", today - 40, "clinician:icu", 3, night)]  # past the 30-day history
    rows += [("other", today - 1, "clinician:er", 3, night)]  # another group
    with engine.begin() as conn:
        conn.execute(guard_daily.insert(), [dict(zip(columns, r, strict=True)) for r in rows])
        base = Baselines().of(conn, "own", "clinician:icu", today)
    assert base.peer_days == 26
    assert base.peer_hours == ((night, 5), (day, 21))
    assert base.peer_days_within(1 << 3) == 5
    assert base.peer_days_within(1 << 9 | 1 << 3) == 26
    assert (base.hour_days[3], base.hour_days[9]) == (0, 1)


def test_enumeration_breadth_and_break_glass() -> None:
    fired = signals.enumeration(counts(denied_short=11, missing_short=21), DEFAULTS, WHO)
    assert [f.signal for f in fired] == ["denials", "not-found"]
    assert "refused 11 times in 5 min; threshold 10" in fired[0].message
    wide = signals.searching(counts(searches_minute=31), DEFAULTS, WHO, widest=150)
    assert [f.signal for f in wide] == ["search-rate", "search-breadth"]
    care = signals.outside_care(counts(break_glass_day=4, account_day=6), DEFAULTS, WHO)
    assert [f.signal for f in care] == ["break-glass"]
    share = signals.outside_care(counts(account_day=4, denied_day=8), DEFAULTS, WHO)
    assert share[0].signal == "no-care"
    assert "66% of the 12 accesses" in share[0].message


def test_decoy_is_at_least_a_suspension_and_nothing_turns_the_guard_off() -> None:
    fired = signals.decoy(DEFAULTS, WHO, "p-1", "read", "denied")
    assert fired.level == Level.LOCK
    assert fired.details == {"patient": "Patient/p-1"}
    assert len(guard_keys()) >= 20
    with pytest.raises(InvalidResource):
        check_value("guard.response.decoy", 1)  # below suspend
    with pytest.raises(InvalidResource):
        check_value("guard.clinician.patients_short", 1_000_000)
    with pytest.raises(InvalidResource):
        check_value("guard.off_hours_peer_percent", 0)  # 0% would make every night usual
    assert set(SIGNALS) >= {"decoy", "session-velocity", "denials", "off-hours", "baseline"}


def test_a_refusal_without_the_key_asks_for_it_and_cannot_be_made_an_alert() -> None:
    refused = AuditRecord(
        action="read",
        outcome="denied",
        ip="127.0.0.1",
        user_agent="t",
        resource_type="Patient",
        resource_id="p-9",
    )
    fired = signals.unconfirmed(DEFAULTS, WHO, refused)
    assert fired.level == Level.STEP_UP
    assert "signed in without its security key" in fired.message
    assert "refused Patient/p-9 (read)" in fired.message
    with pytest.raises(InvalidResource):
        check_value("guard.response.unconfirmed", 0)  # an alert would let the thief go on
    check_value("guard.response.unconfirmed", 3)  # a lock is allowed


def test_p99() -> None:
    assert p99([]) == 0
    assert p99([5]) == 5
    assert p99(list(range(1, 101))) == 100
    assert p99(list(range(1, 201))) == 199


def test_slow_probing_locks_on_refusals_per_day() -> None:
    # One refusal every few minutes never reaches the per-session window; the day count does.
    assert signals.enumeration(counts(denied_short=1, denied_day=5), DEFAULTS, WHO) == []
    (fired,) = signals.enumeration(counts(denied_short=1, denied_day=6), DEFAULTS, WHO)
    assert fired.signal == "denials-day"
    assert fired.level == Level.LOCK
    assert fired.message == "account dr.martin was refused 6 times in 24 h; threshold 5"


def test_break_glass_beyond_three_a_day_suspends_the_session() -> None:
    fired = signals.outside_care(counts(break_glass_day=4, account_day=20), DEFAULTS, WHO)
    assert [(f.signal, f.level) for f in fired] == [("break-glass", Level.SUSPEND)]
