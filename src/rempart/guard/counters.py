"""The guard's counts, in the database so every server process sees the same ones.

A touch is written once per (session, patient) per `REWRITE_MICROS` per process (a clinician
re-reading the same record costs nothing here); denials, misses and searches are written each
time. Most touches are written in batches by the ledger (`ledger.py`) and counted in memory
(`window.py`); near a threshold, one aggregate query over the account's last 24 h of touches
answers every sliding window at once, exactly. Counting restarts where a security officer
released the account (`guard_reset`), so an account is not contained again for what it was
already released for.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

from sqlalchemy import (
    Connection,
    Engine,
    Select,
    and_,
    bindparam,
    case,
    delete,
    distinct,
    func,
    literal,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from rempart.guard.settings import DAY, HOUR, MINUTE
from rempart.guard.tables import guard_daily, guard_reset, guard_touch

REWRITE_MICROS = MINUTE  # the windows are exact to within this
SEEN_ENTRIES = 50_000  # (session, patient) pairs remembered per process
RETAIN_DAYS = 35  # touches older than this are pruned (baselines live in guard_daily)
PRUNE_EVERY = HOUR
READ_KINDS = ("read", "bg")


class Touch(NamedTuple):  # a tuple: built on every newly opened patient, the cheapest
    kind: str
    patient: str | None


@dataclass(frozen=True)
class Counts:
    session_short: int  # distinct patients, this session, short window
    account_short: int
    account_hour: int
    account_day: int  # distinct patients, 24 h
    break_glass_day: int  # distinct patients reached through break-the-glass, 24 h
    denied_short: int  # refusals, this session, short window
    missing_short: int
    denied_day: int
    searches_minute: int
    today: int  # distinct patients since local midnight (the daily baseline's unit)


class Seen:
    """(session, patient) pairs written recently by this process: a bounded LRU."""

    def __init__(self) -> None:
        self._at: OrderedDict[tuple[str, str], int] = OrderedDict()
        self._lock = threading.Lock()

    def fresh(self, session: str, patient: str, now: int) -> bool:
        key = (session, patient)
        with self._lock:
            last = self._at.get(key)
            if last is not None and now - last < REWRITE_MICROS:
                return False
            self._at[key] = now
            self._at.move_to_end(key)
            if len(self._at) > SEEN_ENTRIES:
                self._at.popitem(last=False)
            return True

    def forget(self, session: str, patient: str) -> None:
        with self._lock:
            self._at.pop((session, patient), None)


def local_day_and_hour(now: int, zone: ZoneInfo) -> tuple[int, int, int]:
    """(local day number, local hour, UTC micros of the local midnight)."""
    return _local_day_and_hour(now // MINUTE, zone)


@lru_cache(maxsize=64)
def _local_day_and_hour(minute: int, zone: ZoneInfo) -> tuple[int, int, int]:
    """Per minute (time zones move by whole quarter hours at least): one computation per
    minute instead of one per request."""
    now = minute * MINUTE
    local = datetime.fromtimestamp(now / 1_000_000, tz=zone)
    midnight = local.replace(hour=0, minute=0, second=0, microsecond=0)
    day = midnight.date().toordinal() - 719_163  # days since 1970-01-01
    return day, local.hour, int(midnight.timestamp() * 1_000_000)


def write(
    conn: Connection, account: str, session: str, touches: list[Touch], now: int
) -> list[int]:
    """Inserts the touches; returns their ids (the ledger's poll skips its own rows)."""
    return list(
        conn.execute(
            guard_touch.insert().returning(guard_touch.c.id),
            [
                {
                    "account_id": account,
                    "session_id": session,
                    "kind": t.kind,
                    "patient": t.patient,
                    "at": now,
                }
                for t in touches
            ],
        )
        .scalars()
        .all()
    )


def count(
    conn: Connection, account: str, session: str, now: int, short: int, midnight: int
) -> Counts:
    row = conn.execute(
        _count_statement(),
        {
            "g_account": account,
            "g_session": session,
            "g_short": now - short,
            "g_hour": now - HOUR,
            "g_minute": now - MINUTE,
            "g_day": now - DAY,
            "g_midnight": midnight,
        },
    ).one()
    return Counts(*(int(v or 0) for v in row))


@lru_cache(maxsize=1)
def _count_statement() -> Select[Any]:
    """Every window in one aggregate over the account's last 24 h (built once: building a
    statement of ten CASE expressions costs more than running it)."""
    t = guard_touch.c
    since = select(guard_reset.c.since).where(guard_reset.c.account_id == bindparam("g_account"))
    floor = func.coalesce(since.scalar_subquery(), literal(0))
    is_read = t.kind.in_(READ_KINDS)
    mine = t.session_id == bindparam("g_session")
    short: Any = bindparam("g_short")
    hour: Any = bindparam("g_hour")

    def patients(*conds: Any) -> Any:
        return func.count(distinct(case((and_(is_read, *conds), t.patient))))

    def events(*conds: Any) -> Any:
        return func.coalesce(func.sum(case((and_(*conds), 1), else_=0)), 0)

    return select(
        patients(mine, t.at >= short),
        patients(t.at >= short),
        patients(t.at >= hour),
        patients(),
        func.count(distinct(case((t.kind == "bg", t.patient)))),
        events(mine, t.kind == "denied", t.at >= short),
        events(mine, t.kind == "missing", t.at >= short),
        events(t.kind == "denied"),
        events(mine, t.kind == "search", t.at >= bindparam("g_minute")),
        patients(t.at >= bindparam("g_midnight")),
    ).where(t.account_id == bindparam("g_account"), t.at >= bindparam("g_day"), t.at >= floor)


def record_day(
    conn: Connection, account: str, peer: str, day: int, hour: int, patients: int
) -> None:
    """Upserts today's row of the account's baseline: distinct patients, hours active."""
    record_day_hours(conn, account, peer, day, 1 << hour, patients)


def record_day_hours(
    conn: Connection, account: str, peer: str, day: int, hours: int, patients: int
) -> None:
    """`record_day` with a mask of hours (a batch may span several)."""
    conn.execute(
        _day_statement(conn.dialect.name),
        {
            "d_account": account,
            "d_day": day,
            "d_peer": peer,
            "d_patients": patients,
            "d_bit": hours,
        },
    )


@lru_cache(maxsize=2)
def _day_statement(dialect: str) -> Any:
    d = guard_daily.c
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    stmt = insert(guard_daily).values(
        account_id=bindparam("d_account"),
        day=bindparam("d_day"),
        peer=bindparam("d_peer"),
        patients=bindparam("d_patients"),
        hours=bindparam("d_bit"),
    )
    larger = func.greatest if dialect == "postgresql" else func.max
    return stmt.on_conflict_do_update(
        index_elements=[d.account_id, d.day],
        set_={
            "patients": larger(d.patients, stmt.excluded.patients),
            "hours": d.hours.op("|")(stmt.excluded.hours),
            "peer": stmt.excluded.peer,
        },
    )


def reset(conn: Connection, account: str, now: int) -> None:
    """Counting for `account` restarts at `now` (after a security officer's release)."""
    if (
        conn.execute(
            update(guard_reset).where(guard_reset.c.account_id == account).values(since=now)
        ).rowcount
        == 0
    ):
        conn.execute(guard_reset.insert().values(account_id=account, since=now))


def prune(engine: Engine, now: int) -> int:
    with engine.begin() as conn:
        return int(
            conn.execute(
                delete(guard_touch).where(guard_touch.c.at < now - RETAIN_DAYS * DAY)
            ).rowcount
        )


def highest(conn: Connection) -> int:
    """The highest touch id written so far (0 for none)."""
    return int(conn.execute(select(func.max(guard_touch.c.id))).scalar() or 0)


def recent(conn: Connection, account: str, now: int) -> tuple[int, list[Any]]:
    """The account's floor (its last release) and its touches of the last 24 h since then:
    rows (id, session_id, kind, patient, at)."""
    t = guard_touch.c
    floor = int(
        conn.execute(
            select(guard_reset.c.since).where(guard_reset.c.account_id == account)
        ).scalar()
        or 0
    )
    rows = conn.execute(
        select(t.id, t.session_id, t.kind, t.patient, t.at).where(
            t.account_id == account, t.at >= max(now - DAY, floor)
        )
    ).all()
    return floor, list(rows)
