"""The guard's levers, as rows other processes read on the very next request: a revoked
session and a locked account are what `IdentityService.authenticate` checks (one indexed SELECT
per request, no cache), and a pending step-up is a `guard_containment` row."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from sqlalchemy import Connection, Engine, select, update

from rempart.audit.records import AuditRecord
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


UNCONFIRMED = "unconfirmed"  # the signal whose step-up holds the account (see StepUps)


def factor_at(conn: Connection, session_id: str) -> int:
    """When the session last passed a factor that counts: its security key, for a session of
    an account holding one (a TOTP code does not)."""
    row = conn.execute(
        select(session.c.factor_at, session.c.keyed, session.c.key_at).where(
            session.c.id == session_id
        )
    ).first()
    if row is None:
        return 0
    return int(row.key_at if row.keyed else row.factor_at)


def unconfirmed(conn: Connection, session_id: str) -> bool:
    """A session of an account holding a security key that never presented the key (signed
    in with a TOTP code): what a thief holding the password and the TOTP secret gets."""
    row = conn.execute(
        select(session.c.keyed, session.c.key_at).where(session.c.id == session_id)
    ).first()
    return row is not None and bool(row.keyed) and not row.key_at


def pending_step_ups(conn: Connection) -> tuple[dict[str, int], dict[str, set[str]]]:
    """Open step-ups by session, and the accounts held by `unconfirmed` ones (their sessions)."""
    c = guard_containment.c
    rows = conn.execute(
        select(c.session_id, c.account_id, c.signal, c.at).where(
            c.level == "step-up", c.released_at.is_(None)
        )
    ).all()
    sessions = {r.session_id: int(r.at) for r in rows if r.session_id}
    accounts: dict[str, set[str]] = {}
    for r in rows:
        if r.signal == UNCONFIRMED and r.session_id:
            accounts.setdefault(r.account_id, set()).add(r.session_id)
    return sessions, accounts


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


CONFIRMED_ENTRIES = 10_000


class StepUps:
    """The sessions the guard asked for a fresh second factor (`guard_containment` rows), as
    this process knows them: reloaded once a second, so a request usually costs a dict
    lookup; a session found pending is checked against the database.

    An `unconfirmed` step-up (a refusal to a session that signed in without the account's
    security key) holds the whole account: every session of it that has not presented the
    key gets no data until the key is presented where it was asked, or a security officer
    releases the account. A thief holding the password and the TOTP secret cannot escape it
    by signing in again; the holder's sessions opened with the key go on."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._pending: dict[str, int] = {}
        self._accounts: dict[str, set[str]] = {}  # held accounts: their asking sessions
        self._confirmed: dict[str, bool] = {}  # session -> presented the key (or needs none)
        self._loaded = -STEP_UP_RELOAD_SECONDS
        self._lock = threading.Lock()

    def pending(self, session_id: str, account_id: str, now: int, outer: Connection | None) -> bool:
        """Whether `session_id` still owes its second factor (released once passed)."""
        if time.monotonic() - self._loaded >= STEP_UP_RELOAD_SECONDS:
            with self._lock:
                if time.monotonic() - self._loaded >= STEP_UP_RELOAD_SECONDS:
                    with self.engine.connect() as conn:
                        self._pending, self._accounts = pending_step_ups(conn)
                    self._loaded = time.monotonic()
        required = self._pending.get(session_id)
        if required is None:
            return account_id in self._accounts and not self.confirmed(session_id, outer)
        with self._transaction(outer) as conn:
            if factor_at(conn, session_id) <= required:
                return True
            release_step_up(conn, session_id, now)
        with self._lock:
            self._pending.pop(session_id, None)
            asking = self._accounts.get(account_id)
            if asking is not None:
                asking.discard(session_id)
                if not asking:
                    del self._accounts[account_id]
        return account_id in self._accounts and not self.confirmed(session_id, outer)

    def confirmed(self, session_id: str, outer: Connection | None) -> bool:
        """Not an unconfirmed session (it presented the account's key, or there is none)."""
        known = self._confirmed.get(session_id)
        if known:
            return True
        with self._transaction(outer) as conn:
            answer = not unconfirmed(conn, session_id)
        if answer:  # only ever becomes true: a session does not un-present its key
            with self._lock:
                if len(self._confirmed) > CONFIRMED_ENTRIES:
                    self._confirmed.clear()
                self._confirmed[session_id] = True
        return answer

    def asked(self, session_id: str, now: int, account_id: str | None = None) -> None:
        """`account_id`: an unconfirmed step-up, which holds the account."""
        with self._lock:
            self._pending[session_id] = now
            if account_id is not None:
                self._accounts.setdefault(account_id, set()).add(session_id)

    def released(self, account_id: str) -> None:
        """A security officer closed the account's containments: reload at the next request
        (other processes do within STEP_UP_RELOAD_SECONDS)."""
        with self._lock:
            self._accounts.pop(account_id, None)
            self._loaded = -STEP_UP_RELOAD_SECONDS

    def refused_unconfirmed(
        self,
        records: Sequence[AuditRecord],
        session_id: str,
        data_actions: frozenset[str],
        outer: Connection | None,
    ) -> AuditRecord | None:
        """A refusal of patient data to an unconfirmed session not asked for its key yet (a
        query, on refusals only)."""
        for r in records:
            if r.outcome == "denied" and r.action in data_actions:
                if session_id in self._pending or self.confirmed(session_id, outer):
                    return None
                return r
        return None

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
