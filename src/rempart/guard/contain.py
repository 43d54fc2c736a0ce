"""The guard's levers, as rows other processes read on the very next request: a revoked
session and a locked account are what `IdentityService.authenticate` checks (one indexed SELECT
per request, no cache), and a pending step-up is a `guard_containment` row."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Connection, Engine, select, update

from rempart.guard.tables import guard_containment
from rempart.identity.tables import account, session


def record(
    conn: Connection,
    *,
    account_id: str,
    session_id: str | None,
    level: str,
    signal: str,
    message: str,
    now: int,
) -> str:
    containment_id = str(uuid.uuid4())
    conn.execute(
        guard_containment.insert().values(
            id=containment_id,
            at=now,
            account_id=account_id,
            session_id=session_id,
            level=level,
            signal=signal[:32],
            message=message[:500],
        )
    )
    return containment_id


def suspend_session(conn: Connection, session_id: str, now: int) -> None:
    conn.execute(
        update(session)
        .where(session.c.id == session_id, ~session.c.revoked)
        .values(revoked=True, revoked_at=now, revoked_reason="guard")
    )


def lock_account(conn: Connection, account_id: str, now: int) -> None:
    conn.execute(
        update(account)
        .where(account.c.id == account_id, account.c.locked_at.is_(None))
        .values(locked_at=now)
    )
    conn.execute(
        update(session)
        .where(session.c.account_id == account_id, ~session.c.revoked)
        .values(revoked=True, revoked_at=now, revoked_reason="guard-lock")
    )


def factor_at(conn: Connection, session_id: str) -> int:
    value = conn.execute(select(session.c.factor_at).where(session.c.id == session_id)).scalar()
    return int(value or 0)


def pending_step_ups(conn: Connection) -> dict[str, int]:
    c = guard_containment.c
    rows = conn.execute(
        select(c.session_id, c.at).where(c.level == "step-up", c.released_at.is_(None))
    ).all()
    return {r.session_id: int(r.at) for r in rows if r.session_id}


def release_step_up(conn: Connection, session_id: str, now: int) -> None:
    c = guard_containment.c
    conn.execute(
        update(guard_containment)
        .where(c.session_id == session_id, c.level == "step-up", c.released_at.is_(None))
        .values(released_at=now, released_by="step-up", released_reason="second factor passed")
    )


def step_up_recently_passed(conn: Connection, session_id: str, since: int) -> bool:
    c = guard_containment.c
    return (
        conn.execute(
            select(c.id)
            .where(c.session_id == session_id, c.level == "step-up", c.released_at >= since)
            .limit(1)
        ).first()
        is not None
    )


STEP_UP_RELOAD_SECONDS = 1.0


class StepUps:
    """The sessions the guard asked for a fresh second factor (`guard_containment` rows), as
    this process knows them: reloaded once a second, so a request usually costs a dict
    lookup; a session found pending is checked against the database."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._pending: dict[str, int] = {}
        self._loaded = -STEP_UP_RELOAD_SECONDS
        self._lock = threading.Lock()

    def pending(self, session_id: str, now: int, outer: Connection | None) -> bool:
        """Whether `session_id` still owes its second factor (released once passed)."""
        if time.monotonic() - self._loaded >= STEP_UP_RELOAD_SECONDS:
            with self._lock:
                if time.monotonic() - self._loaded >= STEP_UP_RELOAD_SECONDS:
                    with self.engine.connect() as conn:
                        self._pending = pending_step_ups(conn)
                    self._loaded = time.monotonic()
        required = self._pending.get(session_id)
        if required is None:
            return False
        with self._transaction(outer) as conn:
            if factor_at(conn, session_id) <= required:
                return True
            release_step_up(conn, session_id, now)
        with self._lock:
            self._pending.pop(session_id, None)
        return False

    def asked(self, session_id: str, now: int) -> None:
        with self._lock:
            self._pending[session_id] = now

    def passed_since(self, session_id: str, since: int, outer: Connection | None) -> bool:
        with self._transaction(outer) as conn:
            return step_up_recently_passed(conn, session_id, since)

    @contextmanager
    def _transaction(self, outer: Connection | None) -> Iterator[Connection]:
        if outer is not None:
            yield outer
            return
        with self.engine.begin() as conn:
            yield conn


CONTAINED_ENTRIES = 10_000
HELD_SECONDS = 10.0


class Held:
    """Sessions and accounts this process just contained: refused here at once, even before
    the rows that tell every process are written (a write's containment is written after its
    transaction rolls back, see GuardedSink). Briefly: after HELD_SECONDS the rows decide, so
    a release by a security officer through another process is not overridden here."""

    def __init__(self) -> None:
        self._at: dict[str, tuple[str, float]] = {}
        self._lock = threading.Lock()

    def of(self, session_id: str, account_id: str) -> str | None:
        """The level this process holds the session or its account at, if any."""
        if not self._at:
            return None
        return self._one(session_id) or self._one(f"account:{account_id}")

    def hold_session(self, session_id: str, label: str) -> None:
        self._hold(session_id, label)

    def hold_account(self, account_id: str, label: str) -> None:
        self._hold(f"account:{account_id}", label)

    def release(self, account_id: str) -> None:
        with self._lock:
            self._at.pop(f"account:{account_id}", None)

    def _hold(self, key: str, label: str) -> None:
        with self._lock:
            if len(self._at) > CONTAINED_ENTRIES:
                self._at.clear()
            self._at[key] = (label, time.monotonic())

    def _one(self, key: str) -> str | None:
        found = self._at.get(key)
        if found is None or time.monotonic() - found[1] > HELD_SECONDS:
            return None
        return found[0]
